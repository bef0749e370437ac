// ADD's archive extraction, as BuildKit's file backend does it: a source file is an archive when, after
// decompression (gzip, bzip2, xz, zstd, recognized by their magic bytes, not by the file name), it starts
// with a valid tar header. It is then extracted into the destination directory as a chroot would see it:
// no entry, link or symlink can reach outside that directory.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import { constants as zlibConstants, createGunzip, gunzipSync } from 'node:zlib';
import { readTar } from '../archive/tar.js';
import { resolveInRoot } from '../archive/rootpath.js';
import { mknod, setXattr, S_IFBLK, S_IFCHR, S_IFIFO } from '../native/fsx.js';
import { UserError } from '../util/errors.js';
import { osPath } from '../util/names.js';

type Compression = 'none' | 'gzip' | 'bzip2' | 'xz' | 'zstd';

const MAGIC: [Compression, number[]][] = [
  ['gzip', [0x1f, 0x8b, 0x08]],
  ['bzip2', [0x42, 0x5a, 0x68]],
  ['xz', [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]],
  ['zstd', [0x28, 0xb5, 0x2f, 0xfd]],
];

export function detectCompression(head: Buffer): Compression {
  for (const [kind, magic] of MAGIC) {
    if (head.length >= magic.length && magic.every((b, i) => head[i] === b)) return kind;
  }
  return 'none';
}

/** The file's content, decompressed. External decompressors for what zlib lacks (bzip2, xz, zstd). */
function decompressed(input: fs.ReadStream, kind: Compression): Readable {
  if (kind === 'none') return input;
  if (kind === 'gzip') {
    const gunzip = createGunzip();
    input.on('error', (e) => gunzip.destroy(e));
    return input.pipe(gunzip);
  }
  const child = spawn(kind, ['-dc'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  input.pipe(child.stdin);
  child.stdin.on('error', () => undefined); // the reader may stop early (detection reads one block)
  input.on('error', (e) => child.stdout.destroy(e));
  child.on('error', (e) => child.stdout.destroy(e));
  child.on('close', (code, signal) => {
    if (code !== 0 && signal === null) child.stdout.destroy(new UserError('UNPACK_FAILED', `${kind}: ${stderr.trim() || `exit code ${code}`}`));
  });
  const out = child.stdout;
  out.on('close', () => { if (child.exitCode === null) child.kill(); });
  return out;
}

async function readHead(file: string, n: number): Promise<Buffer> {
  const h = await fsp.open(osPath(file), 'r');
  try {
    const buf = Buffer.alloc(n);
    const { bytesRead } = await h.read(buf, 0, n, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await h.close();
  }
}

/** Whether a 512-byte block is a tar header: its checksum (unsigned or signed, as Go's reader accepts) matches. */
export function isTarHeader(block: Buffer): boolean {
  if (block.length < 512) return false;
  const field = block.subarray(148, 156).toString('latin1').replace(/[\0 ]+$/, '').trim();
  if (!/^[0-7]+$/.test(field)) return false;
  const want = parseInt(field, 8);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < 512; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i];
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  return want === unsigned || want === signed;
}

/** Whether a regular file is a (possibly compressed) tar archive. Unreadable or corrupt input is not. */
export async function isArchive(file: string): Promise<boolean> {
  const st = await fsp.lstat(osPath(file)).catch(() => null);
  if (!st?.isFile()) return false;
  // The head only: enough for the first tar header of any of these formats (a bzip2 block is at most
  // 900k before compression). Truncated input is fine: decompressors emit what they could decode.
  const head = await readHead(file, 1100 * 1024);
  const kind = detectCompression(head);
  let data: Buffer;
  try {
    if (kind === 'none') data = head;
    else if (kind === 'gzip') data = gunzipSync(head, { finishFlush: zlibConstants.Z_SYNC_FLUSH });
    else data = spawnSync(kind, ['-dc'], { input: head, maxBuffer: 64 << 20 }).stdout ?? Buffer.alloc(0);
  } catch {
    return false;
  }
  return isTarHeader(data.subarray(0, 512));
}

export interface UnpackOptions {
  /** Owner of every extracted entry (ADD --chown); the archive's own ids otherwise. */
  owner?: { uid: number; gid: number };
}

/** Extracts the archive `file` into directory `dest` (a host path that exists), chrooted there. */
export async function unpackArchive(file: string, dest: string, opts: UnpackOptions = {}): Promise<void> {
  const kind = detectCompression(await readHead(file, 8));
  const input = fs.createReadStream(osPath(file));
  try {
    await extract(decompressed(input, kind), dest, opts);
  } finally {
    // The source is on a mount the caller unmounts next: its descriptor must be closed first.
    if (!input.closed) {
      input.destroy();
      await once(input, 'close');
    }
  }
}

async function extract(stream: Readable, dest: string, opts: UnpackOptions): Promise<void> {
  const dirTimes: [string, number][] = [];
  for await (const { header, body } of readTar(stream)) {
    const rel = relPath(header.name);
    if (rel === '') continue;
    // Parents as a chroot at `dest` sees them (symlinks of earlier entries stay inside).
    const parent = await resolveInRoot(dest, path.posix.dirname(rel));
    await fsp.mkdir(osPath(parent), { recursive: true, mode: 0o755 });
    const target = path.join(parent, path.posix.basename(rel));
    const existing = await fsp.lstat(osPath(target)).catch(() => null);
    if (existing && !(existing.isDirectory() && header.type === 'dir')) await fsp.rm(osPath(target), { recursive: true, force: true });
    // A hard link to a symlink is the symlink's inode: its mode and times stay (chmod and utimes would follow it).
    let linkToSymlink = false;
    switch (header.type) {
      case 'dir':
        if (!existing?.isDirectory()) await fsp.mkdir(osPath(target), { mode: 0o700 });
        break;
      case 'file': {
        const h = await fsp.open(osPath(target), 'wx', 0o600);
        try {
          for await (const chunk of body) await h.write(chunk);
        } finally {
          await h.close();
        }
        break;
      }
      case 'link': {
        // As moby's archive (createTarFile): the link entry's own owner, mode, xattrs and times then go to
        // the inode it shares with its target, so the last entry naming an inode decides its metadata.
        const existingTarget = await resolveInRoot(dest, relPath(header.linkname ?? ''), false);
        await fsp.link(osPath(existingTarget), osPath(target));
        linkToSymlink = (await fsp.lstat(osPath(target))).isSymbolicLink();
        break;
      }
      case 'symlink':
        await fsp.symlink(osPath(header.linkname ?? ''), osPath(target));
        break;
      default: {
        const type = header.type === 'char' ? S_IFCHR : header.type === 'block' ? S_IFBLK : S_IFIFO;
        mknod(target, type | 0o600, header.devmajor ?? 0, header.devminor ?? 0);
      }
    }
    await fsp.lchown(osPath(target), opts.owner?.uid ?? header.uid, opts.owner?.gid ?? header.gid);
    const isLink = header.type === 'symlink' || linkToSymlink;
    if (!isLink) await fsp.chmod(osPath(target), header.mode & 0o7777);
    for (const [name, value] of header.xattrs ?? []) {
      // Best effort, as BuildKit's BestEffortXattrs; overlay's own attributes never.
      if (!name.startsWith('trusted.overlay.')) try { setXattr(target, name, value); } catch { /* skipped */ }
    }
    if (header.type === 'dir') dirTimes.push([target, header.mtime]);
    else if (header.type === 'symlink' || !linkToSymlink) await fsp.lutimes(osPath(target), header.mtime, header.mtime);
  }
  // Directory times last: creating their entries changed them.
  for (const [p, t] of dirTimes.reverse()) await fsp.lutimes(osPath(p), t, t);
}

/** An entry name relative to the archive root; `..` cannot climb above it. */
function relPath(name: string): string {
  const parts: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') parts.pop();
    else parts.push(part);
  }
  return parts.join('/');
}
