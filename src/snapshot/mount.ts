// mount(8)/umount(8) through execFile, and the mount table, for overlay and bind mounts.
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import { BuilderError } from '../util/errors.js';

export class MountError extends BuilderError {
  constructor(message: string, options?: { cause?: unknown }) { super('MOUNT_FAILED', message, options); }
}

function run(cmd: string, args: string[], cwd?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd }, (err, _stdout, stderr) => {
      if (err) reject(new MountError(`${cmd} ${args.join(' ')}: ${String(stderr).trim() || err.message}`, { cause: err }));
      else resolve();
    });
  });
}

/** `mount -t overlay`; `cwd` lets the options name layers by short relative paths (they must fit one page). */
export function mountOverlay(target: string, options: string, cwd: string): Promise<void> {
  if (Buffer.byteLength(options) >= 4096) {
    throw new MountError(`overlay mount options too long (${Buffer.byteLength(options)} bytes)`);
  }
  return run('mount', ['-t', 'overlay', 'overlay', '-o', options, target], cwd);
}

/** A read-only bind mount (util-linux remounts it read-only after binding). */
export function mountBindReadOnly(source: string, target: string): Promise<void> {
  return run('mount', ['--bind', '-o', 'ro', source, target]);
}

export function unmount(target: string, opts: { lazy?: boolean } = {}): Promise<void> {
  return run('umount', opts.lazy ? ['-l', target] : [target]);
}

/** Mount points at or under `dir`, deepest first (the order to unmount them in). */
export async function mountsUnder(dir: string): Promise<string[]> {
  const table = await fs.readFile('/proc/self/mountinfo', 'utf8');
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  const points = table.split('\n').filter(Boolean)
    .map((line) => unescapeMountPath(line.split(' ')[4]))
    .filter((p) => p === dir || p.startsWith(prefix));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

/** mountinfo escapes space, tab, newline and backslash as octal. */
function unescapeMountPath(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** A tmpfs at `target` (for files that must never reach the disk, such as secrets). */
export function mountTmpfs(target: string, options: string): Promise<void> {
  return run('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', target]);
}
