// Runs one timed step (one or more commands at once) and measures it: wall time, CPU time of the
// commands' process trees (GNU time: user+sys of each command and every descendant it waited for), the
// docker daemon's CPU (/proc deltas of dockerd's whole tree, because BuildKit works there, not in the client),
// and peak resident memory sampled from /proc every SAMPLE_MS.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { scan, tree, sum } from './proc.mjs';

const SAMPLE_MS = 100;
let seq = 0;
const running = new Set();

/** Kills every command still running (their whole process groups): on Ctrl-C, or a step over its time. */
export function killAll() {
  for (const child of running) killGroup(child);
}

function killGroup(child) {
  try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ }
}

/**
 * @param {{argv: string[], env?: Record<string,string>}[]} cmds commands started together
 * @param {{log: string, daemonPid?: number, cwd?: string, timeoutSec?: number}} opts
 */
export async function measure(cmds, opts) {
  const logFd = fs.openSync(opts.log, 'a');
  const timeFiles = cmds.map(() => path.join(os.tmpdir(), `bench-time-${process.pid}-${++seq}`));
  const daemonRoots = opts.daemonPid ? [opts.daemonPid] : [];
  const before = scan();
  const daemonCpu0 = daemonRoots.length ? sum(before, tree(before, daemonRoots), 'cpu') : 0;
  const daemonIdleRss = daemonRoots.length ? sum(before, tree(before, daemonRoots), 'rss') : 0;

  const t0 = performance.now();
  fs.writeSync(logFd, `\n$ ${cmds.map((c) => c.argv.join(' ')).join('  &  ')}\n`);
  const children = cmds.map((c, i) => spawn('/usr/bin/time', ['-f', '%e %U %S %M', '-o', timeFiles[i], ...c.argv], {
    stdio: ['ignore', logFd, logFd],
    env: { ...process.env, ...(c.env ?? {}) },
    cwd: opts.cwd,
    detached: true, // its own process group, so a timeout or Ctrl-C can end the whole tree
  }));
  for (const ch of children) running.add(ch);
  let timedOut = false;
  const deadline = setTimeout(() => {
    timedOut = true;
    for (const ch of children) killGroup(ch);
  }, (opts.timeoutSec ?? 900) * 1000);
  const exits = children.map((ch) => new Promise((resolve) => {
    ch.once('error', (e) => resolve({ code: 127, error: e }));
    ch.once('exit', (code, signal) => resolve({ code: code ?? 128, signal }));
  }));

  let clientPeak = 0;
  let daemonPeak = daemonIdleRss;
  let totalPeak = daemonIdleRss;
  const sample = () => {
    const procs = scan();
    const client = sum(procs, tree(procs, children.map((c) => c.pid).filter(Boolean), { includeRoots: false }), 'rss');
    const daemon = daemonRoots.length ? sum(procs, tree(procs, daemonRoots), 'rss') : 0;
    clientPeak = Math.max(clientPeak, client);
    daemonPeak = Math.max(daemonPeak, daemon);
    totalPeak = Math.max(totalPeak, client + daemon);
  };
  const timer = setInterval(sample, SAMPLE_MS);
  setTimeout(sample, 20);
  const results = await Promise.all(exits);
  const wall = (performance.now() - t0) / 1000;
  clearInterval(timer);
  clearTimeout(deadline);
  for (const ch of children) running.delete(ch);

  const after = scan();
  const daemonCpu = daemonRoots.length ? Math.max(0, sum(after, tree(after, daemonRoots), 'cpu') - daemonCpu0) : 0;
  let clientCpu = 0;
  let maxProcRss = 0;
  for (const f of timeFiles) {
    const lines = fs.existsSync(f) ? fs.readFileSync(f, 'utf8').trim().split('\n') : [];
    fs.rmSync(f, { force: true });
    const m = /^([\d.]+) ([\d.]+) ([\d.]+) (\d+)$/.exec(lines.at(-1) ?? '');
    if (m) {
      clientCpu += Number(m[2]) + Number(m[3]);
      maxProcRss = Math.max(maxProcRss, Number(m[4]) * 1024);
    }
  }
  fs.closeSync(logFd);
  // A process shorter than one sample interval is seen by GNU time's max RSS only.
  clientPeak = Math.max(clientPeak, maxProcRss);
  totalPeak = Math.max(totalPeak, clientPeak + (daemonRoots.length ? daemonIdleRss : 0));
  const failed = results.find((r) => r.code !== 0);
  return {
    ok: !failed,
    code: failed?.code ?? 0,
    wall,
    cpu: clientCpu + daemonCpu,
    clientCpu,
    daemonCpu,
    rss: totalPeak,
    clientRss: clientPeak,
    daemonRss: daemonPeak,
    daemonIdleRss,
    error: timedOut ? `timed out after ${opts.timeoutSec ?? 900}s` : failed ? lastError(opts.log) : undefined,
  };
}

/** The most telling line of a failed command's output: its last ERROR/Error line, else its last line. */
export function lastError(log) {
  const lines = fs.readFileSync(log, 'utf8').trim().split('\n').map((l) => l.trim()).filter(Boolean);
  const tail = lines.slice(-40);
  const err = [...tail].reverse().find((l) => /\berror\b/i.test(l) && !/^\$ /.test(l));
  return (err ?? tail.at(-1) ?? '').replace(/^#\d+ /, '').slice(0, 200);
}
