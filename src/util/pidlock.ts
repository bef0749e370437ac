// An exclusive lock as a file holding its owner's pid, created with O_EXCL. A lock whose owner died (or
// that stayed empty too long: its writer died between creating and filling it) is taken over.
import fs from 'node:fs/promises';
import fsSync from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/** How long a lock file may stay empty before it counts as abandoned. */
const EMPTY_GRACE_MS = 2000;

export class PidLock {
  private constructor(readonly file: string) {}

  static async acquire(file: string, opts: { signal?: AbortSignal; pollMs?: number } = {}): Promise<PidLock> {
    for (;;) {
      opts.signal?.throwIfAborted();
      const lock = await PidLock.tryAcquire(file);
      if (lock) return lock;
      await sleep(opts.pollMs ?? 100, undefined, { signal: opts.signal });
    }
  }

  /** The lock if it is free (or its owner is gone), else null: no waiting. */
  static async tryAcquire(file: string): Promise<PidLock | null> {
    for (;;) {
      try {
        // Synchronous: a few bytes, and every build takes locks (each trip through the threadpool is a turn).
        const fd = fsSync.openSync(file, 'wx');
        try {
          fsSync.writeSync(fd, String(process.pid));
        } finally {
          fsSync.closeSync(fd);
        }
        return new PidLock(file);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      const owner = Number(await fs.readFile(file, 'utf8').catch(() => ''));
      const abandoned = !owner && Date.now() - ((await fs.stat(file).catch(() => null))?.mtimeMs ?? 0) > EMPTY_GRACE_MS;
      if (!abandoned && !(owner && !isAlive(owner))) return null;
      // Renamed first, so two waiters cannot both delete a lock someone just took.
      const stale = `${file}.stale-${process.pid}`;
      await fs.rename(file, stale).then(() => fs.rm(stale, { force: true }), () => undefined);
    }
  }

  async release(): Promise<void> {
    fsSync.rmSync(this.file, { force: true });
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
