// B11: one `builder serve` and many clients building different projects through it at once. Measures each
// build's wall time as its client sees it (submission to exit, so time waiting for a slot counts), the
// total (throughput), CPU of the server's and the clients' process trees, and the server's peak RSS
// (sampled from /proc, its whole tree: runc and the containers included).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { scan, tree, sum } from './proc.mjs';

const SAMPLE_MS = 100;

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

function healthy(sock) {
  return new Promise((resolve) => {
    http.get({ socketPath: sock, path: '/v1/health' }, (res) => { res.resume(); resolve(res.statusCode === 200); }).on('error', () => resolve(false));
  });
}

/**
 * Starts `builder serve` on a unix socket under `dir` with state in `root`; resolves to
 * { sock, pid, stop() } once it answers /v1/health.
 */
export async function startServer({ cli, dir, root, log, maxConcurrent }) {
  fs.mkdirSync(dir, { recursive: true });
  const sock = path.join(dir, `serve-${process.pid}-${Date.now()}.sock`);
  const logFd = fs.openSync(log, 'a');
  const args = [cli, '--root', root, 'serve', '--addr', `unix://${sock}`, ...(maxConcurrent ? ['--max-concurrent-builds', String(maxConcurrent)] : [])];
  fs.writeSync(logFd, `\n$ ${process.execPath} ${args.join(' ')}\n`);
  const child = spawn(process.execPath, args, { stdio: ['ignore', logFd, logFd], detached: true });
  fs.closeSync(logFd);
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const t = setTimeout(() => { try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ } }, 20_000);
      await exited;
      clearTimeout(t);
    }
    fs.rmSync(sock, { force: true });
  };
  for (let i = 0; i < 300; i++) {
    if (child.exitCode !== null) break;
    if (await healthy(sock)) return { sock, pid: child.pid, stop };
    await new Promise((r) => setTimeout(r, 100));
  }
  await stop();
  throw new Error(`builder serve did not start (see ${log})`);
}

/** The command of one client build through `builder serve` at `sock`. */
export const builderClient = ({ cli, sock, base }) => (ctx, name) => ({
  argv: [process.execPath, cli, 'build', '--builder', `unix://${sock}`, '--progress', 'plain', '--build-arg', `BASE=${base}`, '-t', `bench/b11-${name}`, ctx],
});

/**
 * Runs one build per project at once, each the command `client(ctx, name)` gives ({ argv, env }), all
 * served by the process tree of `serverPid` (builder serve, or dockerd for BuildKit); each client's output
 * goes to its own log beside `log`. Returns the measure (ok, wall, cpu, rss, ...) with `builds`: per build
 * its wall seconds and exit code, and the summary the report prints.
 */
export async function runConcurrent({ client, serverPid, projects, log, timeoutSec = 900 }) {
  const logDir = `${log.replace(/\.log$/, '')}-clients`;
  fs.mkdirSync(logDir, { recursive: true });
  const procs0 = scan();
  const serverCpu0 = sum(procs0, tree(procs0, [serverPid]), 'cpu');
  let serverPeak = sum(procs0, tree(procs0, [serverPid]), 'rss');
  const serverIdle = serverPeak;
  let clientPeak = 0;
  const t0 = performance.now();
  const builds = projects.map((ctx, i) => {
    const name = path.basename(ctx);
    const timeFile = path.join(os.tmpdir(), `bench-b11-${process.pid}-${i}`);
    const out = fs.openSync(path.join(logDir, `${name}.log`), 'w');
    const { argv, env } = client(ctx, name);
    const child = spawn('/usr/bin/time', ['-f', '%e %U %S %M', '-o', timeFile, ...argv], { stdio: ['ignore', out, out], detached: true, env: { ...process.env, ...env } });
    fs.closeSync(out);
    const started = performance.now();
    const done = new Promise((resolve) => {
      child.once('error', () => resolve({ code: 127 }));
      child.once('exit', (code) => resolve({ code: code ?? 128 }));
    }).then(({ code }) => {
      const wall = (performance.now() - started) / 1000;
      let cpu = 0;
      let rss = 0;
      const m = /([\d.]+) ([\d.]+) ([\d.]+) (\d+)\s*$/.exec(fs.existsSync(timeFile) ? fs.readFileSync(timeFile, 'utf8') : '');
      fs.rmSync(timeFile, { force: true });
      if (m) { cpu = Number(m[2]) + Number(m[3]); rss = Number(m[4]) * 1024; }
      return { name, code, wall, cpu, rss };
    });
    return { child, done };
  });
  const sample = () => {
    const procs = scan();
    serverPeak = Math.max(serverPeak, sum(procs, tree(procs, [serverPid]), 'rss'));
    clientPeak = Math.max(clientPeak, sum(procs, tree(procs, builds.map((b) => b.child.pid).filter(Boolean), { includeRoots: false }), 'rss'));
  };
  const timer = setInterval(sample, SAMPLE_MS);
  const deadline = setTimeout(() => {
    for (const b of builds) { try { process.kill(-b.child.pid, 'SIGKILL'); } catch { /* gone */ } }
  }, timeoutSec * 1000);
  const results = await Promise.all(builds.map((b) => b.done));
  const wall = (performance.now() - t0) / 1000;
  clearInterval(timer);
  clearTimeout(deadline);
  const procs1 = scan();
  const serverCpu = Math.max(0, sum(procs1, tree(procs1, [serverPid]), 'cpu') - serverCpu0);
  const clientCpu = results.reduce((n, r) => n + r.cpu, 0);
  const walls = results.map((r) => r.wall);
  const med = median(walls);
  const failed = results.filter((r) => r.code !== 0);
  const starved = results.filter((r) => r.wall > 2 * med);
  const error = failed.length
    ? `${failed.length} of ${results.length} builds failed (${failed.slice(0, 3).map((r) => `${r.name}: exit ${r.code}, see ${path.join(logDir, `${r.name}.log`)}`).join('; ')})`
    : undefined;
  return {
    ok: failed.length === 0,
    code: failed[0]?.code ?? 0,
    wall,
    cpu: serverCpu + clientCpu,
    clientCpu,
    daemonCpu: serverCpu,
    rss: serverPeak + clientPeak,
    clientRss: clientPeak,
    daemonRss: serverPeak,
    daemonIdleRss: serverIdle,
    error,
    builds: {
      n: results.length,
      failed: failed.length,
      median: med,
      min: Math.min(...walls),
      max: Math.max(...walls),
      starved: starved.length,
      throughput: results.length / wall, // builds per second
      walls: results.map((r) => ({ name: r.name, wall: r.wall, code: r.code })),
    },
  };
}
