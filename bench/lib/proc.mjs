// Process-tree accounting from /proc: CPU ticks and resident memory of a process and all its descendants.
// Used for the docker daemon (BuildKit runs inside dockerd, its RUN containers are dockerd's descendants) and
// to sample the peak RSS of each builder's own process tree while it runs.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
const PAGE = Number(execFileSync('getconf', ['PAGESIZE']).toString().trim()) || 4096;

/** One scan of /proc: pid -> { ppid, cpu (utime+stime+cutime+cstime, seconds), rss (bytes) }. */
export function scan() {
  const procs = new Map();
  for (const name of fs.readdirSync('/proc')) {
    if (name.charCodeAt(0) < 48 || name.charCodeAt(0) > 57) continue;
    let stat;
    try {
      stat = fs.readFileSync(`/proc/${name}/stat`, 'latin1');
    } catch {
      continue; // exited meanwhile
    }
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // f[0] is field 3 (state): ppid=4, utime=14, stime=15, cutime=16, cstime=17, rss=24.
    procs.set(Number(name), {
      ppid: Number(f[1]),
      cpu: (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / CLK_TCK,
      rss: Number(f[21]) * PAGE,
      // vsize, startcode, endcode, startstack: equal in a child that shares its parent's memory (a vfork
      // or CLONE_VM child, such as the one builder's native mount makes), whose RSS is the parent's.
      mm: `${f[20]}:${f[23]}:${f[24]}:${f[25]}`,
    });
  }
  return procs;
}

/** The pids of `roots` and all their descendants in a scan. */
export function tree(procs, roots, { includeRoots = true } = {}) {
  const children = new Map();
  for (const [pid, p] of procs) {
    if (!children.has(p.ppid)) children.set(p.ppid, []);
    children.get(p.ppid).push(pid);
  }
  const out = new Set();
  const stack = [...roots];
  while (stack.length) {
    const pid = stack.pop();
    if (out.has(pid)) continue;
    out.add(pid);
    for (const c of children.get(pid) ?? []) stack.push(c);
  }
  if (!includeRoots) for (const r of roots) out.delete(r);
  for (const pid of out) if (!procs.has(pid)) out.delete(pid);
  return out;
}

export function sum(procs, pids, key) {
  let total = 0;
  for (const pid of pids) {
    const p = procs.get(pid);
    // Memory shared with the parent (same address space) is counted once, with the parent.
    if (key === 'rss' && p && pids.has(p.ppid) && procs.get(p.ppid)?.mm === p.mm) continue;
    total += p?.[key] ?? 0;
  }
  return total;
}

/** The pid of a running process by its exact command name (comm), or undefined. */
export function pidOf(comm) {
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (fs.readFileSync(`/proc/${name}/comm`, 'utf8').trim() === comm) return Number(name);
    } catch {
      // exited meanwhile
    }
  }
  return undefined;
}
