// One build at a time per state directory: start-up recovery (removing what a killed build left) must not
// touch a running build's snapshots. A lock left by a dead process is taken over.
import fs from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export class StateLock {
  private constructor(private readonly file: string) {}

  static async acquire(root: string, signal?: AbortSignal): Promise<StateLock> {
    const file = path.join(root, 'lock');
    for (;;) {
      try {
        const handle = await fs.open(file, 'wx');
        await handle.writeFile(String(process.pid));
        await handle.close();
        return new StateLock(file);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      const owner = Number(await fs.readFile(file, 'utf8').catch(() => ''));
      if (!owner || !isAlive(owner)) {
        // Stale: its owner died. Rename first so two waiters cannot both delete a fresh lock.
        await fs.rename(file, `${file}.stale-${process.pid}`).then(() => fs.rm(`${file}.stale-${process.pid}`, { force: true }), () => undefined);
        continue;
      }
      await sleep(200, undefined, { signal });
    }
  }

  async release(): Promise<void> {
    await fs.rm(this.file, { force: true });
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
