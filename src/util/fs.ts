// Small filesystem helpers for the state directory: everything there is written, then renamed.
import fs from 'node:fs/promises';
import fsSync from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { isAlive } from './pidlock.js';

/**
 * Writes `data` to `file` so that readers see either the old content or the whole new one. `sync: false`
 * skips the fsync for what a crash of the machine may lose (markers and hints that are checked on use).
 */
export async function writeFileAtomic(file: string, data: string | Uint8Array, opts: { sync?: boolean } = {}): Promise<void> {
  const bytes = typeof data === 'string' ? Buffer.from(data) : data;
  if (bytes.length <= SMALL_WRITE) return writeSmallAtomic(file, bytes, opts);
  await writeFileAtomicWith(file, (handle) => handle.writeFile(bytes), opts);
}

/**
 * Records, registrations and documents are this small: written with synchronous calls (each takes
 * microseconds) but the fsync, which goes to the threadpool. Through the threadpool every call is a turn
 * of the event loop: half a dozen of them per record were a visible part of a no-op build.
 */
export const SMALL_WRITE = 64 << 10;

async function writeSmallAtomic(file: string, data: Uint8Array, opts: { sync?: boolean }): Promise<void> {
  await publishSmall(`${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`, file, data, opts);
}

/**
 * `data` (SMALL_WRITE at most) into the new file `tmp`, synced unless `sync: false`, then renamed to
 * `file`; the temp file is removed when anything fails. Synchronous calls but the fsync.
 */
export async function publishSmall(tmp: string, file: string, data: Uint8Array, opts: { sync?: boolean } = {}): Promise<void> {
  const fd = openCreating(tmp, 'wx');
  try {
    writeAllSync(fd, data);
    if (opts.sync !== false) await fsyncAsync(fd);
  } catch (e) {
    fsSync.closeSync(fd);
    fsSync.rmSync(tmp, { force: true });
    throw e;
  }
  fsSync.closeSync(fd);
  try {
    fsSync.renameSync(tmp, file);
  } catch (e) {
    fsSync.rmSync(tmp, { force: true });
    throw e;
  }
}

/** Opens `file` with `flags`, making its directory first when it is missing. */
function openCreating(file: string, flags: string, mode?: number): number {
  try {
    return fsSync.openSync(file, flags, mode);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    fsSync.mkdirSync(path.dirname(file), { recursive: true });
    return fsSync.openSync(file, flags, mode);
  }
}

/** All of `data` to `fd`, at its position or at `position` when given. */
export function writeAllSync(fd: number, data: Uint8Array, position?: number): void {
  for (let off = 0; off < data.length;) {
    off += position === undefined ? fsSync.writeSync(fd, data, off) : fsSync.writeSync(fd, data, off, data.length - off, position + off);
  }
}

function fsyncAsync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fsSync.fsync(fd, (e) => (e ? reject(e) : resolve())));
}

/** writeFileAtomic with the content written by `fill` (a piece at a time); nothing is left behind when it fails. */
export async function writeFileAtomicWith(file: string, fill: (handle: fs.FileHandle) => Promise<void>, opts: { sync?: boolean } = {}): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  const handle = await fs.open(tmp, 'w');
  try {
    await fill(handle);
    if (opts.sync !== false) await handle.sync();
  } catch (e) {
    await handle.close();
    await fs.rm(tmp, { force: true });
    throw e;
  }
  await handle.close();
  try {
    await fs.rename(tmp, file);
  } catch (e) {
    await fs.rm(tmp, { force: true });
    throw e;
  }
}

/** Copies `src` to `target` (mode 0644) so that readers never see a partial file. */
export async function copyFileAtomic(src: string, target: string): Promise<void> {
  const tmp = tempBeside(target);
  try {
    await fs.copyFile(src, tmp);
    await fs.chmod(tmp, 0o644);
    await fs.rename(tmp, target);
  } catch (e) {
    await fs.rm(tmp, { force: true });
    throw e;
  }
}

/**
 * A temp file name beside a destination, `.NAME.<hex>.tmp`, where the hex starts with the writer's pid (8
 * hex digits): a later run removes the ones whose writer is gone (removeStaleTemps), never a live one's.
 */
export function tempBeside(dest: string): string {
  const abs = path.resolve(dest);
  return path.join(path.dirname(abs), `.${path.basename(abs)}.${process.pid.toString(16).padStart(8, '0')}${randomBytes(6).toString('hex')}.tmp`);
}

const TEMP_RE = /^\.(.+)\.([0-9a-f]+)\.tmp$/;

/**
 * Removes what a killed run left beside `dest` (temp files of tempBeside, and of the random-only names
 * earlier versions used); with `anyName`, every such temp file in `dest`'s directory (one this program owns).
 */
export async function removeStaleTemps(dest: string, opts: { anyName?: boolean } = {}): Promise<void> {
  const abs = path.resolve(dest);
  const dir = opts.anyName ? abs : path.dirname(abs);
  const names = await fs.readdir(dir).catch(() => [] as string[]);
  await Promise.all(names.map(async (name) => {
    // Inside a directory of ours, also the `NAME.<hex>.tmp` of copies by earlier versions.
    const m = TEMP_RE.exec(name) ?? (opts.anyName ? /^(.+)\.([0-9a-f]+)\.tmp$/.exec(name) : null);
    if (!m || (!opts.anyName && m[1] !== path.basename(abs))) return;
    if (m[2].length === 20) {
      const pid = parseInt(m[2].slice(0, 8), 16);
      if (pid === process.pid || isAlive(pid)) return;
    }
    await fs.rm(path.join(dir, name), { force: true });
  }));
}

/**
 * The first `max` bytes of a file as UTF-8 text: a file larger than what its reader accepts is not read
 * whole (the reader then sees more than `max` bytes and reports its limit).
 */
export async function readFileHead(file: string, max: number): Promise<string> {
  const handle = await fs.open(file, 'r');
  try {
    // In chunks until the end, not by the size stat reports: a pipe (`-f /dev/stdin`) has none.
    const chunks: Buffer[] = [];
    let total = 0;
    while (total < max) {
      const buf = Buffer.alloc(Math.min(1 << 20, max - total));
      const { bytesRead } = await handle.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      chunks.push(buf.subarray(0, bytesRead));
      total += bytesRead;
    }
    return Buffer.concat(chunks).toString('utf8');
  } finally {
    await handle.close();
  }
}
