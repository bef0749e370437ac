#!/usr/bin/env node
// Benchmark runner: builds each scenario with this engine (its CLI, dist/src/cli/main.js, as a user runs
// it) and with the peers that are installed (BuildKit in dockerd, Buildah; skopeo as B7's transfer
// baseline), alternating builders within each repetition, and reports medians and ratios.
//
//   npm run bench [-- --reps N] [--scenarios B1,B3,B5,B6,B7,B8,B9,B10,B11,C1,C3] [--builders builder,buildkit,buildah]
//                 [--builder-output oci|none] [--install-peers] [--results FILE|-] [--cache DIR]
//                 [--note TEXT] [--timeout SECONDS-PER-STEP] [--keep-extra-ca-certs]
//
// Needs root (builds run containers). Inputs are generated once into --cache (default
// $TMPDIR/builder-bench-cache); everything else lives in a temp dir removed at the end.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as data from './lib/data.mjs';
import { builder, buildkit, buildah, skopeo, removeTree } from './lib/builders.mjs';
import { measure, killAll } from './lib/measure.mjs';
import { startRegistry, pushLayout } from './lib/registry.mjs';
import { installPeers, ensureBinfmt } from './lib/peers.mjs';
import { machineInfo, renderTerminal, renderMarkdown } from './lib/report.mjs';
import { cachePhase, cacheNames, cacheExportSeconds } from './lib/cache.mjs';
import { startServer, runConcurrent, builderClient } from './lib/concurrent.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..');

const { values: opt } = parseArgs({
  options: {
    reps: { type: 'string' },
    scenarios: { type: 'string', default: 'B1,B1S,B3,B5,B6,B7,B8,B9,B10,B11,C1,C3' },
    builders: { type: 'string', default: 'builder,buildkit,buildah' },
    'builder-output': { type: 'string', default: 'oci' },
    'install-peers': { type: 'boolean', default: false },
    results: { type: 'string', default: path.join(HERE, 'RESULTS.md') },
    cache: { type: 'string', default: path.join(os.tmpdir(), 'builder-bench-cache') },
    note: { type: 'string', default: '' },
    timeout: { type: 'string', default: '900' },
    'keep-extra-ca-certs': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opt.help) {
  console.log(fs.readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1, 10).map((l) => l.replace(/^\/\/ ?/, '')).join('\n'));
  process.exit(0);
}
// NODE_EXTRA_CA_CERTS makes every Node process parse that bundle as it starts, before any of our code
// (~0.1 s of CPU per start with Debian's 140 certificates on a 2-core VM whose environment sets it
// machine-wide). The bench's registry is plain HTTP on loopback: builder runs without it unless asked,
// and the report says which.
const extraCa = process.env.NODE_EXTRA_CA_CERTS;
if (extraCa && !opt['keep-extra-ca-certs']) delete process.env.NODE_EXTRA_CA_CERTS;
// Default repetitions keep a full run near 15 minutes on 2 cores: 3 for the light scenarios, 2 for the
// ones moving hundreds of MB. --reps N sets all.
const repsFor = (sc) => Math.max(1, Number(opt.reps) || sc.reps || 3);
const say = (s) => process.stderr.write(`bench: ${s}\n`);

const PLATFORMS = ['linux/amd64', 'linux/arm64'];
const SCENARIOS = {
  B1: { title: 'two CPU-bound stages gathered into one', ctx: data.b1Context, phases: ['cold', 'warm'] },
  B1S: { title: 'one of B1\'s stages alone (the yardstick for B1 cold)', ctx: data.b1SoloContext, phases: ['cold'] },
  B3: { title: '20,000 files / 320 MB context: COPY . /app, then RUN', ctx: data.b3Context, phases: ['cold', 'warm', 'edit'], edit: data.b3Edit, reps: 2 },
  B5: { title: `two platforms (${PLATFORMS.join(', ')}) with RUN under QEMU emulation`, ctx: data.b5Context, phases: ['cold'], platforms: PLATFORMS, feature: 'multi-platform builds', prepare: ensureBinfmt },
  B6: { title: 'multi-stage build of a small Node-style program (deps, bundle, test, runtime stages)', ctx: data.b6Context, phases: ['cold', 'warm', 'edit'], edit: data.b6Edit },
  B8: { title: 'compile-style build, comment-only edit: the artifact is the same, heavy steps after it (early cutoff)', ctx: data.b8Context, phases: ['cold', 'warm', 'edit'], edit: data.b8Edit },
  B7: { title: 'pull, then push to an empty registry, of a 500 MB, 10-layer image', transfer: true, phases: ['pull', 'push'], reps: 2 },
  B9: { title: '100,000 files / 100 MB context (1 KiB each, 5,000 dirs): COPY . /app, then RUN', ctx: data.b9Context, phases: ['cold', 'warm', 'edit'], edit: data.b9Edit, reps: 2 },
  B10: { title: '100 stages: a common one, 98 from it at once, gathered by COPY --from into the last', ctx: data.b10Context, phases: ['cold', 'warm'] },
  B11: { title: `${data.B11_BUILDS} different small projects (FROM, COPY, RUN) built at once through one server (\`builder serve\`; dockerd for BuildKit): no limit, cold and warm; then at most 4 at once (cold-max4, builder only)`, ctx: data.b11Projects, phases: ['cold', 'warm', 'cold-max4'], concurrent: true, reps: 2 },
  C1: { title: 'B1 on an empty state with its exported cache', ctx: data.b1Context, cache: true, phases: ['from-local', 'from-registry'] },
  C3: { title: 'B3 with --cache-to mode=max (first export, export after a one-file edit), then on an empty state with its cache', ctx: data.b3Context, edit: data.b3Edit, cache: true, phases: ['export', 'export-edit', 'from-local', 'from-registry'], reps: 2 },
};
const PHASE_FEATURE = { push: 'push to a registry' };

let interrupted = false;
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    say(`${sig}: stopping the running build and cleaning up (again to quit at once)`);
    killAll();
  });
}

async function main() {
  if (process.getuid?.() !== 0) throw new Error('run as root: builds run containers');
  const scenarioIds = opt.scenarios.split(',').map((s) => s.trim().toUpperCase()).filter(Boolean);
  for (const id of scenarioIds) if (!SCENARIOS[id]) throw new Error(`unknown scenario ${id} (have ${Object.keys(SCENARIOS).join(', ')})`);
  if (!['oci', 'none'].includes(opt['builder-output'])) throw new Error('--builder-output is oci or none');
  if (opt['install-peers']) await installPeers(say);

  const started = new Date();
  const cli = path.join(REPO, 'dist/src/cli/main.js');
  const busybox = path.join(REPO, 'testdata/images/busybox');
  if (!fs.existsSync(path.join(busybox, 'index.json'))) execFileSync('bash', [path.join(REPO, 'testdata/make-busybox.sh')], { stdio: 'inherit' });
  fs.mkdirSync(opt.cache, { recursive: true });
  const logs = path.join(os.tmpdir(), 'builder-bench-logs');
  removeTree(logs);
  fs.mkdirSync(logs, { recursive: true });
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'builder-bench-'));

  let b7 = null;
  const all = [
    builder({ work, cli, output: opt['builder-output'] }),
    buildkit({ work }),
    buildah({ work }),
    skopeo({ work, layout: () => b7, tag: data.B7_TAG }),
  ];
  const wanted = new Set([...opt.builders.split(',').map((s) => s.trim()), 'skopeo']);
  const builders = [];
  const versions = {};
  const missing = {};
  for (const b of all.filter((x) => wanted.has(x.name))) {
    const p = await b.probe();
    if (p.ok) { builders.push(b); versions[b.name] = p.version; } else { missing[b.name] = p.reason; say(`${b.name}: not used: ${p.reason}`); }
  }
  if (!builders.some((b) => b.name === 'builder') && wanted.has('builder')) throw new Error(`builder: ${missing.builder}`);

  // What dockerd does with nobody of ours using it (other users of a shared daemon, housekeeping).
  const bk = builders.find((b) => b.name === 'buildkit');
  const background = bk ? await daemonBackground(bk.daemonPid) : undefined;
  const loadStart = os.loadavg()[0];

  const registry = await startRegistry(path.join(work, 'registry'));
  const results = [];
  const notes = {};
  try {
    const base = `${registry.host}/busybox:1.35`;
    await pushLayout(busybox, '1.35', base);
    say(`registry ${registry.host}, base image ${base}; logs in ${logs}`);
    for (const id of scenarioIds) {
      const sc = SCENARIOS[id];
      try {
        await sc.prepare?.();
      } catch (e) {
        notes[id] = `not run: ${e.message}`;
        say(`${id}: ${notes[id]}`);
        continue;
      }
      const t0 = Date.now();
      const ctx = sc.transfer ? null : sc.ctx(opt.cache);
      sc.edit?.(ctx, false); // undo an edit a killed run left behind
      let pullCtx = null;
      let bigRef = null;
      if (sc.transfer) {
        b7 = data.b7Layout(opt.cache);
        pullCtx = data.pullContext(opt.cache);
        bigRef = `${registry.host}/bench/big:${data.B7_TAG}`;
        await pushLayout(b7, data.B7_TAG, bigRef);
      }
      if (Date.now() - t0 > 1000) say(`${id}: inputs ready in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
      // Many builds at once need a server: builder serve, or dockerd for BuildKit (Buildah has none).
      const runners = builders.filter((b) => (sc.transfer ? true : !b.pullPushOnly) && (!sc.concurrent || b.name === 'builder' || b.name === 'buildkit'));
      if (sc.concurrent && builders.some((b) => b.name === 'buildah')) notes[id] = 'Buildah not run: it has no server to send builds to';
      const blocked = new Map(); // builder -> Set of phases that failed (not retried)
      const reps = repsFor(sc);
      for (let rep = 0; rep < reps; rep++) {
        // Alternate: each repetition starts with the next builder.
        const order = runners.map((_, i) => runners[(i + rep) % runners.length]);
        for (const b of order) {
          if (interrupted) throw new Error('interrupted');
          const bl = blocked.get(b.name) ?? new Set();
          blocked.set(b.name, bl);
          if (sc.phases.every((p) => bl.has(p))) continue;
          const log = path.join(logs, `${id}-${b.name}.log`);
          try {
            await b.fresh();
          } catch (e) {
            say(`${id} ${b.name}: could not empty its state, not run: ${String(e.stderr || e.message).trim().split('\n')[0]}`);
            results.push({ scenario: id, phase: sc.phases[0], builder: b.name, rep, status: 'failed', ok: false, error: `emptying its state failed: ${e.message}` });
            for (const p of sc.phases) bl.add(p);
            continue;
          }
          const timed = async (cmds) => {
            const from = fs.existsSync(log) ? fs.statSync(log).size : 0;
            const m = await measure(cmds, { log, daemonPid: b.daemonPid, timeoutSec: Number(opt.timeout) || 900 });
            if (interrupted) throw new Error('interrupted');
            if (b.name === 'builder') {
              const text = fs.readFileSync(log, 'utf8').slice(from);
              m.exportSeconds = exportSeconds(text);
              m.cacheExportSeconds = cacheExportSeconds(text);
            }
            return m;
          };
          const record = (phase, m) => {
            const feature = sc.feature ?? PHASE_FEATURE[phase];
            const status = m.ok ? 'ok' : b.name === 'builder' && feature ? 'unsupported' : 'failed';
            results.push({ scenario: id, phase, builder: b.name, rep, status, feature, ...m });
            const line = m.ok
              ? `wall ${m.wall.toFixed(2)}s  cpu ${m.cpu.toFixed(2)}s  rss ${(m.rss / 2 ** 20).toFixed(0)} MB`
              : `${status.toUpperCase()}: ${m.error}`;
            say(`${id} ${phase.padEnd(4)} ${b.name.padEnd(8)} rep ${rep + 1}/${reps}  ${line}`);
            if (!m.ok) bl.add(phase);
            return m.ok;
          };
          if (sc.transfer) {
            if (!bl.has('pull')) {
              const pulled = record('pull', await timed(b.pull(bigRef, pullCtx)));
              if (!pulled) { bl.add('push'); continue; }
            }
            if (!bl.has('push')) {
              const dest = await startRegistry(path.join(work, `registry-push-${rep}-${b.name}`));
              try {
                const p = b.push(bigRef, `${dest.host}/bench/big:${data.B7_TAG}`, pullCtx);
                await p.setup?.();
                record('push', await timed(p.cmds));
              } finally {
                await dest.stop();
                removeTree(path.join(work, `registry-push-${rep}-${b.name}`));
              }
            }
            continue;
          }
          if (sc.concurrent) {
            const projects = fs.readdirSync(ctx).filter((n) => /^p\d+$/.test(n)).sort().map((n) => path.join(ctx, n));
            const timeoutSec = Number(opt.timeout) || 900;
            const report = (phase, m) => {
              record(phase, m);
              const x = m.builds;
              say(`${id} ${phase} ${b.name}: ${x.n} builds, ${x.failed} failed, median ${x.median.toFixed(2)}s, max ${x.max.toFixed(2)}s (${(x.max / x.median).toFixed(2)}x), ` +
                `${x.starved} over twice the median, ${(x.throughput * 60).toFixed(1)} builds/min, server peak RSS ${(m.daemonRss / 2 ** 20).toFixed(0)} MB`);
            };
            if (b.name !== 'builder') {
              // dockerd is the server: the same builds through `docker build`, cold then warm (it has no
              // limit on builds at once to set, so no cold-max4).
              for (const phase of sc.phases.filter((p) => p === 'cold' || p === 'warm')) {
                if (bl.has(phase)) continue;
                if (phase === 'cold') await b.fresh();
                const client = (c, name) => b.build({ ctx: c, args: { BASE: base }, tag: `bench/b11-${name}` })[0];
                const m = await runConcurrent({ client, serverPid: b.daemonPid, projects, log, timeoutSec });
                if (interrupted) throw new Error('interrupted');
                report(phase, m);
              }
              continue;
            }
            // One server per cold phase (a fresh state), kept for the warm phase after it.
            let server = null;
            try {
              for (const phase of sc.phases) {
                if (bl.has(phase)) continue;
                if (phase !== 'warm' || !server) {
                  await server?.stop();
                  server = null;
                  await b.fresh();
                  const limit = Number(/-max(\d+)$/.exec(phase)?.[1]) || 0;
                  server = await startServer({ cli, dir: work, root: b.stateDir(), log, maxConcurrent: limit });
                }
                const m = await runConcurrent({ client: builderClient({ cli, sock: server.sock, base }), serverPid: server.pid, projects, log, timeoutSec });
                if (interrupted) throw new Error('interrupted');
                report(phase, m);
              }
            } finally {
              await server?.stop();
            }
            continue;
          }
          const spec = { ctx, platforms: sc.platforms, args: { BASE: base }, tag: `bench/${id.toLowerCase()}` };
          if (sc.cache) {
            const names = cacheNames(work, registry.host, id, b.name, rep);
            const build = (extra, tag) => b.build({ ...spec, extra, ...(tag ? { tag } : {}) });
            const have = new Set();
            for (const phase of sc.phases) {
              const plan = cachePhase(b, phase, { ...names, build });
              if (plan.unsupported) {
                results.push({ scenario: id, phase, builder: b.name, rep, status: 'unsupported', feature: plan.unsupported, ok: false, error: plan.unsupported });
                bl.add(phase);
                continue;
              }
              if (bl.has(phase)) continue;
              for (const step of plan.needs && have.has(plan.needs) ? [] : plan.setup ?? []) {
                if (step.fresh) await b.fresh();
                const m = await measure(step.cmds, { log, daemonPid: b.daemonPid, timeoutSec: Number(opt.timeout) || 900 });
                if (!m.ok) { say(`${id} ${phase} ${b.name}: setup failed: ${m.error}`); break; }
                for (const w of step.writes ?? []) have.add(w);
              }
              if (plan.fresh) await b.fresh();
              if (plan.edit) sc.edit(ctx, true);
              try {
                if (!record(phase, await timed(plan.cmds))) break;
              } finally {
                if (plan.edit) sc.edit(ctx, false);
              }
              for (const w of plan.writes ?? []) have.add(w);
            }
            continue;
          }
          for (const phase of sc.phases) {
            if (phase === 'edit') sc.edit(ctx, true);
            let ok;
            try {
              ok = record(phase, await timed(b.build(spec)));
            } finally {
              if (phase === 'edit') sc.edit(ctx, false);
            }
            if (!ok) { for (const p of sc.phases) bl.add(p); break; }
          }
        }
      }
    }
  } finally {
    for (const b of builders) await b.cleanup?.();
    await registry.stop();
    removeTree(work);
  }

  const machine = await machineInfo(versions);
  machine.loadStart = loadStart.toFixed(2);
  machine.daemonBackground = background;
  if (extraCa) machine.extraCa = opt['keep-extra-ca-certs'] ? `${extraCa} (kept: every Node start parses it)` : `${extraCa} in the environment, removed for the run (--keep-extra-ca-certs keeps it)`;
  const run = {
    started, finished: new Date(), reps: Object.fromEntries(scenarioIds.map((id) => [id, repsFor(SCENARIOS[id])])), builderOutput: opt['builder-output'], scenarios: scenarioIds.map((id) => ({ id, ...SCENARIOS[id] })),
    results, notes, missing, machine, note: opt.note,
  };
  process.stdout.write(renderTerminal(run));
  fs.writeFileSync(path.join(logs, 'results.json'), JSON.stringify(run, null, 2));
  if (opt.results !== '-') {
    const tmp = `${opt.results}.tmp`;
    fs.writeFileSync(tmp, renderMarkdown(run));
    fs.renameSync(tmp, opt.results);
    say(`wrote ${path.relative(process.cwd(), opt.results) || opt.results}`);
  }
}

/** The seconds of builder's "exporting to ..." step in its plain progress output, summed. */
function exportSeconds(text) {
  let total = 0;
  let found = false;
  for (const m of text.matchAll(/^#(\d+) exporting to [^\n]*\n(?:[^\n]*\n)*?#\1 DONE ([\d.]+)s/gm)) { total += Number(m[2]); found = true; }
  return found ? total : undefined;
}

/** dockerd's CPU use over 3 s while this run does not use it, as a share of one core. */
async function daemonBackground(pid) {
  const { scan, tree, sum } = await import('./lib/proc.mjs');
  const a = scan();
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, 3000));
  const b = scan();
  const cpu = sum(b, tree(b, [pid]), 'cpu') - sum(a, tree(a, [pid]), 'cpu');
  return Math.max(0, cpu / ((performance.now() - t0) / 1000));
}

main().catch((e) => {
  process.stderr.write(`bench: ERROR: ${e.message}\n`);
  process.exit(1);
});
