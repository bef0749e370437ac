// The terminal table and bench/RESULTS.md of a run.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';

const PEERS = ['buildkit', 'buildah', 'skopeo'];
const LABEL = { builder: 'builder', buildkit: 'BuildKit', buildah: 'Buildah', skopeo: 'skopeo' };
const MB = 2 ** 20;

function firstLine(cmd, args) {
  try {
    return execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim().split('\n')[0];
  } catch {
    return undefined;
  }
}

export async function machineInfo(versions) {
  const cpuinfo = fs.readFileSync('/proc/cpuinfo', 'utf8');
  return {
    cpu: /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1] ?? os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    memory: `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    kernel: `${os.type()} ${os.release()}`,
    os: fs.existsSync('/etc/debian_version') ? `Debian ${fs.readFileSync('/etc/debian_version', 'utf8').trim()}` : os.platform(),
    load: os.loadavg()[0].toFixed(2),
    versions: {
      node: process.version,
      ...versions,
      runc: firstLine('runc', ['--version']),
      qemu: firstLine('qemu-aarch64-static', ['--version']),
    },
  };
}

function median(xs) {
  if (!xs.length) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** One cell per scenario, phase and builder: medians of the successful runs, or why there are none. */
function cells(run) {
  const out = new Map();
  for (const r of run.results) {
    const key = `${r.scenario}/${r.phase}/${r.builder}`;
    if (!out.has(key)) out.set(key, { ok: [], bad: [] });
    (r.status === 'ok' ? out.get(key).ok : out.get(key).bad).push(r);
  }
  const agg = new Map();
  for (const [key, { ok, bad }] of out) {
    if (!ok.length) {
      agg.set(key, { status: bad[0].status, error: bad[0].error, feature: bad[0].feature });
      continue;
    }
    const med = (k) => median(ok.map((r) => r[k]));
    agg.set(key, {
      status: 'ok', n: ok.length, failed: bad.length,
      wall: med('wall'), cpu: med('cpu'), rss: med('rss'),
      clientCpu: med('clientCpu'), daemonCpu: med('daemonCpu'), clientRss: med('clientRss'), daemonRss: med('daemonRss'), daemonIdleRss: med('daemonIdleRss'),
      walls: ok.map((r) => r.wall),
      exportSeconds: median(ok.map((r) => r.exportSeconds).filter((x) => x !== undefined)),
      cacheExportSeconds: median(ok.map((r) => r.cacheExportSeconds).filter((x) => x !== undefined)),
    });
  }
  return agg;
}

function rows(run) {
  const agg = cells(run);
  const names = ['builder', ...PEERS].filter((b) => run.results.some((r) => r.builder === b));
  const list = [];
  for (const sc of run.scenarios) {
    for (const phase of sc.phases) {
      if (!names.some((b) => agg.has(`${sc.id}/${phase}/${b}`))) continue;
      const c = Object.fromEntries(names.map((b) => [b, agg.get(`${sc.id}/${phase}/${b}`)]));
      list.push({ scenario: sc.id, phase, cells: c });
    }
  }
  return { names, list };
}

const fmtCell = (c) => {
  if (!c) return '-';
  if (c.status !== 'ok') return c.status;
  return `${c.wall.toFixed(2)}s ${c.cpu.toFixed(1)}c ${Math.round(c.rss / MB)}M${c.failed ? ` (${c.failed} failed)` : ''}`;
};
const ratio = (a, b) => (a?.status === 'ok' && b?.status === 'ok' ? `${(a.wall / b.wall).toFixed(2)}x` : '-');
const ratioCpu = (a, b) => (a?.status === 'ok' && b?.status === 'ok' ? `${(a.cpu / b.cpu).toFixed(2)}x` : '-');

export function renderTerminal(run) {
  const { names, list } = rows(run);
  const peers = names.filter((n) => n !== 'builder' && n !== 'skopeo');
  const head = ['scenario', ...names.map((n) => LABEL[n]), ...peers.map((p) => `wall÷${LABEL[p]}`)];
  const body = list.map((r) => [`${r.scenario} ${r.phase}`, ...names.map((n) => fmtCell(r.cells[n])), ...peers.map((p) => ratio(r.cells.builder, r.cells[p]))]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cols) => cols.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd();
  const out = [
    '',
    `medians (repetitions: ${Object.entries(run.reps).map(([k, v]) => `${k} ${v}`).join(', ')}): wall time, CPU seconds (c: user+sys, including dockerd's for BuildKit), peak RSS (M: MiB)`,
    line(head),
    line(widths.map((w) => '-'.repeat(w))),
    ...body.map(line),
  ];
  const why = unsupportedNotes(run);
  if (why.length) out.push('', ...why.map((w) => `  ${w}`));
  const conc = concurrentRuns(run);
  if (conc.length) {
    out.push('', 'builds through one server (each: its wall time as its client saw it, waiting included):');
    for (const r of conc) out.push(`  ${concurrentLine(r)}`);
  }
  const cacheExp = list.filter((r) => r.cells.builder?.cacheExportSeconds !== undefined);
  if (cacheExp.length) out.push('', 'builder cache export step:', ...cacheExp.map((r) => `  ${r.scenario} ${r.phase}: ${r.cells.builder.cacheExportSeconds.toFixed(2)}s of ${r.cells.builder.wall.toFixed(2)}s`));
  return out.join('\n') + '\n';
}

/** The runs of scenarios with many builds through one server (B11), in the order run. */
function concurrentRuns(run) {
  return run.results.filter((r) => r.builds);
}

function concurrentLine(r) {
  const x = r.builds;
  return `${r.scenario} ${r.phase} ${r.builder} rep ${r.rep + 1}: ${x.n} builds, ${x.failed} failed, median ${x.median.toFixed(2)} s, max ${x.max.toFixed(2)} s ` +
    `(${(x.max / x.median).toFixed(2)}x the median), ${x.starved} over twice the median; ${(x.throughput * 60).toFixed(1)} builds/min; ` +
    `server peak RSS ${Math.round(r.daemonRss / MB)} MiB, server CPU ${r.daemonCpu.toFixed(1)} s, clients' CPU ${r.clientCpu.toFixed(1)} s`;
}

function unsupportedNotes(run) {
  const notes = [];
  const agg = cells(run);
  for (const [key, c] of agg) {
    if (c.status === 'ok') continue;
    const [scenario, phase, b] = key.split('/');
    // An unsupported cell's error usually is its feature's reason already: say it once.
    const feature = c.status === 'unsupported' && c.feature && !String(c.error ?? '').includes(c.feature) ? ` (${c.feature})` : '';
    notes.push(`${scenario} ${phase} ${LABEL[b]}: ${c.status}${feature}: ${c.error ?? c.feature}`);
  }
  for (const [id, n] of Object.entries(run.notes)) notes.push(`${id}: ${n}`);
  return notes;
}

export function renderMarkdown(run) {
  const { names, list } = rows(run);
  const peers = names.filter((n) => n !== 'builder' && n !== 'skopeo');
  const m = run.machine;
  const md = [];
  md.push('# Benchmark results', '');
  md.push('Written by `npm run bench` (bench/run.mjs); rerun it to replace this file. See [bench/README.md](README.md) for the scenarios and how each number is measured.', '');
  if (run.note) md.push(`> ${run.note}`, '');
  md.push(`Run: ${run.started.toISOString().replace(/\.\d+Z$/, 'Z')} to ${run.finished.toISOString().replace(/\.\d+Z$/, 'Z')}, repetitions per builder: ${Object.entries(run.reps).map(([k, v]) => `${k} ${v}`).join(', ')}, alternating builders; builder's output: ${run.builderOutput === 'oci' ? 'an OCI tarball (`--output type=oci,dest=...`)' : 'none (state directory only)'}.`, '');
  md.push('## Machine', '');
  md.push('| | |', '| --- | --- |');
  md.push(`| CPU | ${m.cpu}, ${m.cores} cores |`, `| memory | ${m.memory} |`, `| kernel | ${m.kernel} (${m.os}) |`, `| load average (1 min) at the start, at the end | ${m.loadStart}, ${m.load} |`);
  if (m.extraCa) md.push(`| NODE_EXTRA_CA_CERTS | ${m.extraCa} |`);
  if (m.daemonBackground !== undefined) md.push(`| dockerd's own CPU use before the run (other users, housekeeping) | ${(m.daemonBackground * 100).toFixed(1)}% of a core |`);
  for (const [k, v] of Object.entries(m.versions)) if (v) md.push(`| ${k} | ${String(v).replace(/\|/g, '\\|')} |`);
  md.push('');
  md.push('## Medians', '');
  md.push('Each cell: wall time / CPU time (user+sys) / peak RSS; medians over the successful repetitions. For BuildKit, CPU and RSS include the docker daemon (dockerd and its children), where BuildKit does the work. Ratios are builder ÷ peer: below 1 means builder is faster or cheaper.', '');
  const mdRow = (cols) => `| ${cols.join(' | ')} |`;
  md.push(mdRow(['scenario', ...names.map((n) => LABEL[n]), ...peers.map((p) => `builder ÷ ${LABEL[p]} (wall, CPU)`)]));
  md.push(mdRow(['---', ...names.map(() => '---'), ...peers.map(() => '---')]));
  const mdCell = (c) => {
    if (!c) return '-';
    if (c.status !== 'ok') return `*${c.status}*`;
    return `${c.wall.toFixed(2)} s / ${c.cpu.toFixed(2)} s / ${Math.round(c.rss / MB)} MiB${c.failed ? ` (${c.failed} failed)` : ''}`;
  };
  for (const r of list) {
    md.push(mdRow([`${r.scenario} ${r.phase}`, ...names.map((n) => mdCell(r.cells[n])), ...peers.map((p) => `${ratio(r.cells.builder, r.cells[p])}, ${ratioCpu(r.cells.builder, r.cells[p])}`)]));
  }
  md.push('');
  md.push('Scenarios:', '');
  for (const sc of run.scenarios) md.push(`- **${sc.id}** ${sc.title}: ${sc.phases.join(', ')}.`);
  md.push('');
  const why = unsupportedNotes(run);
  if (why.length || Object.keys(run.missing).length) {
    md.push('## Not measured', '');
    for (const w of why) md.push(`- ${w.replace(/\|/g, '\\|')}`);
    for (const [b, reason] of Object.entries(run.missing)) md.push(`- ${LABEL[b] ?? b} not used: ${reason}`);
    md.push('');
  }
  const exp = list.filter((r) => r.cells.builder?.exportSeconds !== undefined);
  if (exp.length) {
    md.push('## builder: time in the export step', '');
    md.push('Part of builder\'s wall time spent writing its output (gzip of every layer, OCI tarball), from its progress output. BuildKit (into dockerd\'s image store) and Buildah (into containers-storage) keep layers uncompressed and compress on push.', '');
    md.push('| scenario | wall | export step |', '| --- | --- | --- |');
    for (const r of exp) md.push(`| ${r.scenario} ${r.phase} | ${r.cells.builder.wall.toFixed(2)} s | ${r.cells.builder.exportSeconds.toFixed(2)} s |`);
    md.push('');
  }
  const cacheExp = list.filter((r) => r.cells.builder?.cacheExportSeconds !== undefined);
  if (cacheExp.length) {
    md.push('## builder: time in the cache export step', '');
    md.push('Part of builder\'s wall time spent in `--cache-to` ("exporting cache to ..."), from its progress output: compressing layers not compressed before and writing blobs the destination lacks.', '');
    md.push('| scenario | wall | cache export step |', '| --- | --- | --- |');
    for (const r of cacheExp) md.push(`| ${r.scenario} ${r.phase} | ${r.cells.builder.wall.toFixed(2)} s | ${r.cells.builder.cacheExportSeconds.toFixed(2)} s |`);
    md.push('');
  }
  const conc = concurrentRuns(run);
  if (conc.length) {
    md.push('## Builds through one server', '');
    md.push('Each build\'s wall time as its client saw it (submitted to done, waiting for a slot included); "over 2x" counts builds slower than twice the median (issue 20: none may be); throughput is builds over the whole phase\'s wall time; RSS and CPU of the server\'s process tree (builder serve or dockerd, runc and containers included), the clients apart.', '');
    md.push('| scenario | builder | builds | failed | median | max (÷ median) | over 2x median | builds/min | server peak RSS | server CPU | clients\' CPU |');
    md.push('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
    for (const r of conc) {
      const x = r.builds;
      md.push(`| ${r.scenario} ${r.phase} (rep ${r.rep + 1}) | ${r.builder} | ${x.n} | ${x.failed} | ${x.median.toFixed(2)} s | ${x.max.toFixed(2)} s (${(x.max / x.median).toFixed(2)}x) | ${x.starved} | ${(x.throughput * 60).toFixed(1)} | ${Math.round(r.daemonRss / MB)} MiB | ${r.daemonCpu.toFixed(1)} s | ${r.clientCpu.toFixed(1)} s |`);
    }
    md.push('');
  }
  if (peers.includes('buildkit')) {
    md.push('## BuildKit: client and daemon', '');
    md.push('The docker client only streams the context and progress; BuildKit runs inside dockerd. Medians of the client\'s CPU, the daemon tree\'s CPU, and the daemon tree\'s RSS (idle before the step, peak during it).', '');
    md.push('| scenario | client CPU | dockerd CPU | dockerd RSS idle | dockerd RSS peak |', '| --- | --- | --- | --- | --- |');
    for (const r of list) {
      const c = r.cells.buildkit;
      if (c?.status !== 'ok') continue;
      md.push(`| ${r.scenario} ${r.phase} | ${c.clientCpu.toFixed(2)} s | ${c.daemonCpu.toFixed(2)} s | ${Math.round(c.daemonIdleRss / MB)} MiB | ${Math.round(c.daemonRss / MB)} MiB |`);
    }
    md.push('');
  }
  md.push('## Every run', '');
  md.push('Wall seconds of each repetition, in the order run.', '');
  md.push(`| scenario | ${names.map((n) => LABEL[n]).join(' | ')} |`, `| --- | ${names.map(() => '---').join(' | ')} |`);
  for (const r of list) {
    const each = (n) => run.results.filter((x) => x.scenario === r.scenario && x.phase === r.phase && x.builder === n)
      .map((x) => (x.status === 'ok' ? x.wall.toFixed(2) : x.status)).join(', ') || '-';
    md.push(`| ${r.scenario} ${r.phase} | ${names.map(each).join(' | ')} |`);
  }
  md.push('');
  return md.join('\n');
}
