// Locking of the state directory. The exclusive lock (`lock`) is short: a build holds it while it starts
// (and recovers, when alone), prune and GC while they run. Builds themselves run side by side, each
// registered in `locks/` (see BuildSession). A lock left by a dead process is taken over.
import fs from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { writeFileAtomic } from '../util/fs.js';
import { PidLock, isAlive } from '../util/pidlock.js';

/** The state directory's exclusive lock (`<root>/lock`). */
export class StateLock {
  static acquire(root: string, signal?: AbortSignal): Promise<PidLock> {
    return PidLock.acquire(path.join(root, 'lock'), { signal, pollMs: 200 });
  }
}

/**
 * Builds share the state directory: each registers itself (`locks/<pid>`) for its whole run, and takes
 * the exclusive lock only for its start. A build that finds no other live build recovers what killed
 * ones left (their mounts, containers, uncommitted snapshots, temp files); otherwise it leaves that to a
 * later lone build, since those could be another build's work in progress. Prune and GC need no live
 * build besides the caller, and keep the exclusive lock while they run so none starts.
 */
export class BuildSession {
  private constructor(private readonly file: string, private readonly dir: string, readonly alone: boolean, private readonly name: string) {}

  /** Registers a build; `recover` runs under the exclusive lock, told whether this build is alone. */
  static async start(root: string, recover: (alone: boolean) => Promise<void>, signal?: AbortSignal): Promise<BuildSession> {
    const dir = path.join(root, 'locks');
    await fs.mkdir(dir, { recursive: true });
    const gate = await StateLock.acquire(root, signal);
    // One entry per build, not per process: a server or an embedder runs several builds in one process.
    const name = `${process.pid}-${++sessionCounter}`;
    const file = path.join(dir, name);
    try {
      // Not synced: after a crash of the machine every registered process is gone anyway.
      await writeFileAtomic(file, await processStamp(process.pid), { sync: false });
      const alone = (await liveOthers(dir, name)).length === 0;
      await recover(alone);
      return new BuildSession(file, dir, alone, name);
    } catch (e) {
      await fs.rm(file, { force: true });
      throw e;
    } finally {
      await gate.release();
    }
  }

  /**
   * Runs `fn` under the exclusive lock if no other build is live now; false when it was skipped. A lock
   * held now is skipped too, not waited for: its holder may be a prune waiting for this very build to end.
   */
  async ifAlone(root: string, fn: () => Promise<void>): Promise<boolean> {
    const gate = await PidLock.tryAcquire(path.join(root, 'lock'));
    if (!gate) return false;
    try {
      if ((await liveOthers(this.dir, this.name)).length > 0) return false;
      await fn();
      return true;
    } finally {
      await gate.release();
    }
  }

  async end(): Promise<void> {
    await fs.rm(this.file, { force: true });
  }
}

/** Holds the exclusive lock until no build is live (for prune and du), then runs `fn`. */
export async function withStateExclusive<T>(root: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  const dir = path.join(root, 'locks');
  const gate = await StateLock.acquire(root, signal);
  try {
    while ((await liveOthers(dir)).length > 0) await sleep(200, undefined, { signal });
    return await fn();
  } finally {
    await gate.release();
  }
}

let sessionCounter = 0;

/** Entries (`<pid>-<n>`) of other live builds, `self` excepted; entries of dead ones are removed. */
async function liveOthers(dir: string, self?: string): Promise<string[]> {
  const out: string[] = [];
  for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
    if (name === self || name.startsWith('.') || name.includes('.tmp-')) continue;
    const pid = Number(name.split('-')[0]);
    if (!Number.isInteger(pid)) continue;
    // Another build of this very process is live as long as its entry is there.
    if (pid === process.pid) { out.push(name); continue; }
    const recorded = await fs.readFile(path.join(dir, name), 'utf8').catch(() => null);
    if (recorded === null) continue;
    // The same pid with another start time is an unrelated process that reused a dead build's pid.
    if (isAlive(pid) && (await processStamp(pid)) === recorded) out.push(name);
    else await fs.rm(path.join(dir, name), { force: true });
  }
  return out;
}

/** `pid starttime` (from /proc, in clock ticks since boot): names one process, even after pid reuse. */
async function processStamp(pid: number): Promise<string> {
  const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  // The command name (field 2) may hold spaces and parentheses; fields after its closing one are plain.
  const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '';
  return `${pid} ${start}`;
}
