// Overlay and bind mounts and the mount table: mount(2)/umount2(2) through the native addon (on the
// threadpool), else mount(8)/umount(8) through execFile. A build mounts and unmounts several times per
// step; a fork and exec apiece cost some milliseconds of CPU each, most of a tiny COPY's time.
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import { BuilderError } from '../util/errors.js';
import { MNT_DETACH, MS_BIND, MS_RDONLY, MS_REMOUNT, nativeMount } from '../native/fsx.js';

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

/** A failed mount(2)/umount2(2), worded as mount(8) would be: what was asked, then why. */
function native(what: string, p: Promise<void>): Promise<void> {
  return p.catch((e: Error & { errno?: number }) => {
    throw new MountError(`${what}: ${e.message.replace(/^[a-z0-9]+: /, '')}`, { cause: e });
  });
}

/** `mount -t overlay`; `cwd` lets the options name layers by short relative paths (they must fit one page). */
export async function mountOverlay(target: string, options: string, cwd?: string): Promise<void> {
  if (Buffer.byteLength(options) >= 4096) {
    throw new MountError(`overlay mount options too long (${Buffer.byteLength(options)} bytes)`);
  }
  const n = nativeMount();
  if (n) return native(`mount -t overlay overlay ${target}`, n.mount('overlay', target, 'overlay', 0, options, cwd ?? null));
  return run('mount', ['-t', 'overlay', 'overlay', '-o', options, target], cwd);
}

/** A read-only bind mount: bound, then remounted read-only (as util-linux does). */
export async function mountBindReadOnly(source: string, target: string): Promise<void> {
  const n = nativeMount();
  if (!n) return run('mount', ['--bind', '-o', 'ro', source, target]);
  await native(`mount --bind ${source} ${target}`, n.mount(source, target, null, MS_BIND, null, null));
  try {
    await native(`mount -o remount,ro ${target}`, n.mount(null, target, null, MS_REMOUNT | MS_BIND | MS_RDONLY, null, null));
  } catch (e) {
    await n.umount(target, MNT_DETACH).catch(() => undefined);
    throw e;
  }
}

export async function unmount(target: string, opts: { lazy?: boolean } = {}): Promise<void> {
  const n = nativeMount();
  if (n) return native(`umount ${opts.lazy ? '-l ' : ''}${target}`, n.umount(target, opts.lazy ? MNT_DETACH : 0));
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

/**
 * A tmpfs at `target` (for files that must never reach the disk, such as secrets). `options` are tmpfs's
 * own (`mode=`, `size=`), handed to the kernel as they are: not mount(8)'s generic flags (`ro`, `nosuid`).
 */
export async function mountTmpfs(target: string, options: string): Promise<void> {
  const n = nativeMount();
  if (n) return native(`mount -t tmpfs tmpfs ${target}`, n.mount('tmpfs', target, 'tmpfs', 0, options, null));
  return run('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', target]);
}
