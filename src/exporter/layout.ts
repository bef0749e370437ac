// OCI image layout tarballs (oci-layout, index.json, blobs/sha256/...), the container for both the OCI and
// the docker exporter. Blobs go from the content store into the archive file inside the kernel; a file
// destination is written to a temp file and renamed, so a reader never sees half an archive, or, when it
// holds the archive this state directory wrote there and only the end changed, completed in place
// (writeLayoutTar).
import fs, { type BigIntStats } from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import type { ContentStore } from '../content/store.js';
import type { Digest } from '../../solver/llb/ops.js';
import { UserError } from '../util/errors.js';
import { Annotation, MediaType, isIndexType, isManifestType, type Descriptor, type Index, type Manifest } from '../image/types.js';
import type { Reference } from '../registry/reference.js';
import { encodeHeader } from '../archive/tar.js';
import { copyFileAtomic, removeStaleTemps, tempBeside, writeAllSync } from '../util/fs.js';
import { copyRange, exchange } from '../native/fsx.js';
import type { ArchiveParts, RecordedOutput } from './uptodate.js';

export interface ArchiveFile {
  name: string;
  data: Buffer;
}

/** `blobs/sha256/<hex>`, the path of a blob inside a layout. */
export const blobName = (d: Descriptor): string => `blobs/${d.digest.replace(':', '/')}`;

/**
 * The descriptors and everything they reference (manifests, configs, layers, nested indexes), each once,
 * every blob after the blobs it names and a manifest's layers before its config: an archive in this order
 * starts with what changes least (the layers), so a rebuild that changes only the last, small entries
 * (its provenance, the index naming it) rewrites only those (see writeLayoutTar).
 */
export async function reachableBlobs(store: ContentStore, roots: Descriptor[]): Promise<Descriptor[]> {
  const seen = new Set<string>();
  const order: Descriptor[] = [];
  const visit = async (d: Descriptor): Promise<void> => {
    if (seen.has(d.digest)) return;
    seen.add(d.digest);
    if (isManifestType(d.mediaType)) {
      const m = JSON.parse((await store.readBuffer(d.digest)).toString('utf8')) as Manifest;
      for (const child of [...m.layers, m.config]) await visit(child);
    } else if (isIndexType(d.mediaType)) {
      const idx = JSON.parse((await store.readBuffer(d.digest)).toString('utf8')) as Index;
      for (const child of idx.manifests) await visit(child);
    }
    order.push(d);
  };
  for (const d of roots) await visit(d);
  return order;
}

/**
 * index.json entries for `desc` under each name, annotated as containerd's archive exporter (which
 * BuildKit uses) does: the OCI ref name is the tag only, the containerd annotation the full name.
 */
export function layoutIndex(desc: Descriptor, names: Reference[]): Index {
  const plain: Descriptor = { mediaType: desc.mediaType, digest: desc.digest, size: desc.size };
  const manifests = names.length === 0
    ? [plain]
    : names.map((ref) => ({
        ...plain,
        annotations: { [Annotation.containerdImageName]: ref.toString(), [Annotation.refName]: ref.tag ?? ref.digest! },
      }));
  return { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests };
}

/** How a layout tarball reached its destination: bytes kept from the archive there (a common start), bytes written, and whether in place. */
export interface LayoutTarWrite {
  kept: number;
  written: number;
  inPlace: boolean;
}

/**
 * Writes the layout tarball to `dest` (a file, or `-` for standard output). With `record`, a destination
 * holding the archive this state directory last wrote there keeps the start the new archive shares with
 * it (each part compared by content; see uptodate.ts) and only the rest is written:
 * - in place, where the filesystem can cut a range out of a file (ext4, XFS): the new rest goes after the
 *   old archive's end (readers stop at its end-of-archive blocks: still the old archive), then one
 *   fallocate(FALLOC_FL_COLLAPSE_RANGE) takes out the old rest. A kill leaves either the old archive
 *   (followed by bytes no reader reaches) or the new one; a failure before the cut truncates back.
 * - else into a temp file that starts with the kept bytes copied from the old archive (shared, not copied,
 *   where copy_file_range reflinks: Btrfs, XFS), renamed into place like a full write.
 * Either way the file is byte for byte the archive a full write gives.
 */
export async function writeLayoutTar(
  store: ContentStore,
  contents: { blobs: Descriptor[]; index: Index; extraFiles?: ArchiveFile[] },
  dest: string,
  opts: { record?: RecordedOutput } = {},
): Promise<LayoutTarWrite> {
  const parts = [...archiveParts(contents)];
  const size = partsSize(parts);
  if (dest === '-') {
    // Nothing damaged leaves the store: each blob hashes to its name (what this process wrote is known to).
    await verifyBlobs(store, contents.blobs);
    await writeArchiveToStream(store, parts, process.stdout);
    return { kept: 0, written: size, inPlace: false };
  }
  // A run killed while writing here left its temp file: gone now, as this run writes the same place.
  await removeStaleTemps(dest);
  if (!opts.record) {
    await writeArchiveFile(store, parts, dest, null);
    return { kept: 0, written: size, inPlace: false };
  }
  const { outputs, fingerprint } = opts.record;
  const ids = partIds(parts);
  const lock = await outputs.lock(dest);
  let old: number | null = null;
  try {
    try {
      old = fs.openSync(dest, fs.constants.O_RDWR | fs.constants.O_NOFOLLOW);
    } catch {
      // Nothing there yet, or nothing this run may change in place (a symlink, a directory, no permission):
      // written whole.
    }
    const st = old === null ? null : fs.fstatSync(old, { bigint: true });
    // A file with other names stays as it is for them: replaced, not changed.
    const prev = st && st.nlink === 1n ? await outputs.previous(dest, st) : null;
    let keep = 0;
    if (prev) while (keep < ids.ids.length && prev.parts.ids[keep] === ids.ids[keep] && prev.parts.ends[keep] === ids.ends[keep]) keep++;
    const kept = keep === 0 ? 0 : ids.ends[keep - 1];
    if (prev && st && keep === parts.length && st.size === BigInt(size)) {
      await outputs.record(dest, fingerprint, st, ids);
      return { kept, written: 0, inPlace: true };
    }
    const block = old !== null && st && kept >= MIN_IN_PLACE && size - kept <= kept ? await collapseBlock(dest) : 0;
    if (old !== null && st && block > 0) {
      const after = await rewriteInPlace(store, parts, keep, kept, old, st, block, async (restored) => {
        // Cut back to the old archive, unchanged but for its times: still the one recorded.
        if (prev) await outputs.record(dest, prev.fingerprint, restored, prev.parts);
      });
      if (after) {
        await outputs.record(dest, fingerprint, after, ids);
        return { kept, written: size - kept, inPlace: true };
      }
    }
    const start = old !== null && kept >= MIN_KEEP ? { fd: old, length: kept, parts: keep } : null;
    const ino = await writeArchiveFile(store, parts, dest, start);
    const now = await fsp.lstat(dest, { bigint: true });
    // Another writer's file since (another state directory's build): not ours to describe.
    if (now.ino === ino) await outputs.record(dest, fingerprint, now, ids);
    else await outputs.forget(dest);
    return { kept: start ? kept : 0, written: size - (start ? kept : 0), inPlace: false };
  } finally {
    if (old !== null) fs.closeSync(old);
    await lock.release();
  }
}

/**
 * A start shorter than this is written again rather than kept (the difference would not show). A kept
 * start is copied from the old archive without checking its blobs again: a small image's no-op rebuild
 * (a new provenance) hashed its layers once more for nothing.
 */
const MIN_KEEP = 64 << 10;
/** Kept starts shorter than this are copied: cutting in place costs a process (fallocate), copying 1 MiB less. */
const MIN_IN_PLACE = 1 << 20;

type ArchivePart = Buffer | Descriptor;

const partLength = (p: ArchivePart): number => (Buffer.isBuffer(p) ? p.length : p.size);
const partsSize = (parts: ArchivePart[]): number => parts.reduce((n, p) => n + partLength(p), 0);

/** Each part by content (a blob by its digest, header bytes by their hash) and where it ends. */
function partIds(parts: ArchivePart[]): ArchiveParts {
  const ids: string[] = [];
  const ends: number[] = [];
  let end = 0;
  for (const p of parts) {
    ids.push(Buffer.isBuffer(p) ? `h:${createHash('sha256').update(p).digest('hex').slice(0, 32)}` : p.digest);
    ends.push((end += partLength(p)));
  }
  return { ids, ends };
}

/**
 * The archive into a temp file renamed to `dest`, starting with `start.length` bytes of `start.fd` (the
 * old archive there, whose first `start.parts` parts are this one's) when given. Blobs are checked while
 * they are copied (from the page cache the check and the copy share), and the archive only takes the
 * destination's place once every blob passed. Returns the new file's inode.
 */
async function writeArchiveFile(
  store: ContentStore, parts: ArchivePart[], dest: string, start: { fd: number; length: number; parts: number } | null,
): Promise<bigint> {
  const rest = start ? parts.slice(start.parts) : parts;
  const checked = verifyBlobs(store, rest.filter((p): p is Descriptor => !Buffer.isBuffer(p)));
  let failed = false;
  checked.catch(() => { failed = true; });
  const tmp = tempBeside(dest);
  const fd = fs.openSync(tmp, 'w', 0o644);
  try {
    if (start) await copyChunks(start.fd, fd, start.length, () => new Error(`${dest} changed while it was read`));
    for (const part of rest) {
      if (failed) break;
      if (Buffer.isBuffer(part)) {
        writeAllSync(fd, part);
        continue;
      }
      // Blob bodies are copied inside the kernel, in chunks so the event loop gets a turn between them.
      const input = fs.openSync(store.blobPath(part.digest), 'r');
      try {
        // Shorter than its descriptor says: it hashed to its name, so the descriptor lies.
        await copyChunks(input, fd, part.size, () => new BlobSizeError(part));
      } finally {
        fs.closeSync(input);
      }
    }
    const st = fs.fstatSync(fd, { bigint: true });
    // The next rebuild keeps this archive's start and cuts its old end out in place, and ext4's
    // collapse-range first waits for the whole file's pending writeback (a tenth of a second for 180 MB
    // written just before): written out here, by the export that wrote it, not in the next build's.
    if (!failed && st.size >= BigInt(MIN_IN_PLACE)) await new Promise<void>((resolve, reject) => fs.fdatasync(fd, (e) => (e ? reject(e) : resolve())));
    fs.closeSync(fd);
    await checked;
    await replaceFile(tmp, dest);
    return st.ino;
  } catch (err) {
    try { fs.closeSync(fd); } catch { /* closed already */ }
    await fsp.rm(tmp, { force: true });
    // A damaged blob explains a short copy too: its error comes first.
    await checked;
    throw err;
  }
}

/** `length` bytes from `input`'s position to `output`'s, inside the kernel, in chunks. */
async function copyChunks(input: number, output: number, length: number, short: () => Error): Promise<void> {
  for (let left = length; left > 0;) {
    const n = copyRange(input, output, Math.min(left, COPY_CHUNK));
    if (n === 0) throw short();
    left -= n;
    await new Promise((r) => setImmediate(r));
  }
}

/**
 * The archive from part `keep` on (its first `kept` bytes already the old archive's) written into `fd`
 * in place; the file's stat after, or null (nothing changed but the times, reported to `restored`) when
 * the filesystem would not cut the old rest out.
 */
async function rewriteInPlace(
  store: ContentStore, parts: ArchivePart[], keep: number, kept: number, fd: number, st: BigIntStats, block: number,
  restored: (st: BigIntStats) => Promise<void>,
): Promise<BigIntStats | null> {
  const oldSize = Number(st.size);
  // The cut starts and ends on block boundaries: from the kept bytes' last block start to past the old end.
  const cutFrom = kept - (kept % block);
  const appendAt = Math.ceil(oldSize / block) * block;
  const rest = parts.slice(keep);
  const checked = verifyBlobs(store, rest.filter((p): p is Descriptor => !Buffer.isBuffer(p)));
  checked.catch(() => undefined);
  let cut = false;
  try {
    const head = Buffer.alloc(kept - cutFrom);
    for (let off = 0; off < head.length;) {
      const n = fs.readSync(fd, head, off, head.length - off, cutFrom + off);
      if (n === 0) throw new Error('archive shorter than recorded');
      off += n;
    }
    let pos = appendAt;
    writeAllSync(fd, head, pos);
    pos += head.length;
    const chunk = Buffer.allocUnsafe(1 << 20);
    for (const part of rest) {
      if (Buffer.isBuffer(part)) {
        writeAllSync(fd, part, pos);
        pos += part.length;
        continue;
      }
      const input = fs.openSync(store.blobPath(part.digest), 'r');
      try {
        for (let left = part.size; left > 0;) {
          const n = fs.readSync(input, chunk, 0, Math.min(left, chunk.length), null);
          if (n === 0) throw new BlobSizeError(part);
          writeAllSync(fd, chunk.subarray(0, n), pos);
          pos += n;
          left -= n;
          if (left > 0 && (part.size - left) % COPY_CHUNK < n) await new Promise((r) => setImmediate(r));
        }
      } finally {
        fs.closeSync(input);
      }
    }
    await checked;
    const size = partsSize(parts);
    // Nothing to cut when the old archive ended, on a block boundary, where the kept bytes end.
    // A refusal is told by the size too (a child killed right after its call says nothing).
    if (appendAt > cutFrom && !(await collapseRange(fd, cutFrom, appendAt - cutFrom)) && fs.fstatSync(fd).size !== size) {
      fs.ftruncateSync(fd, oldSize);
      await restored(fs.fstatSync(fd, { bigint: true }));
      return null;
    }
    cut = true;
    const after = fs.fstatSync(fd, { bigint: true });
    if (after.size !== BigInt(size)) throw new Error(`${after.size} bytes after the cut, not ${size}`);
    return after;
  } catch (err) {
    // Before the cut the old archive is all there, followed by what was appended: cut back to it.
    if (!cut) {
      try {
        fs.ftruncateSync(fd, oldSize);
        await restored(fs.fstatSync(fd, { bigint: true }));
      } catch { /* the record no longer matches: a full write next time */ }
    }
    await checked;
    throw err;
  }
}

// Filesystems whose fallocate cuts a range out of a file (FALLOC_FL_COLLAPSE_RANGE): ext4, XFS.
const COLLAPSING_FS = new Set([0xef53, 0x58465342]);
let fallocateMissing = false;

/** The block size ranges to cut must be multiples of, where `dest`'s filesystem cuts ranges; else 0. */
async function collapseBlock(dest: string): Promise<number> {
  if (fallocateMissing || process.platform !== 'linux') return 0;
  const sfs = await fsp.statfs(dest).catch(() => null);
  return sfs && COLLAPSING_FS.has(Number(sfs.type)) ? Number(sfs.bsize) : 0;
}

/**
 * Cuts [offset, offset+length) out of the open file (the rest moves down), in one fallocate call made by
 * util-linux's fallocate (Node has no fallocate) on the same open file (/proc/self/fd/3 in the child is
 * this `fd`, whatever is at the path by then). False when it cannot: no fallocate binary, or refused.
 */
async function collapseRange(fd: number, offset: number, length: number): Promise<boolean> {
  const child = spawn('fallocate', ['--collapse-range', '--offset', String(offset), '--length', String(length), '/proc/self/fd/3'], {
    stdio: ['ignore', 'ignore', 'pipe', fd],
  });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const code = await new Promise<number>((resolve) => {
    child.once('error', (e) => {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') fallocateMissing = true;
      resolve(-1);
    });
    child.once('close', (c) => resolve(c ?? -1));
  });
  return code === 0 && stderr === '';
}

const COPY_CHUNK = 16 << 20;

/** A descriptor whose size is not its blob's. */
export class BlobSizeError extends UserError {
  constructor(d: Descriptor) { super('BLOB_SIZE', `content ${d.digest} is shorter than the ${d.size} bytes its descriptor says`); }
}

/**
 * Checks every blob against its digest, several at a time. Damaged ones are all removed (so that one more
 * attempt makes them all again), and the first is named in the error.
 */
export async function verifyBlobs(store: ContentStore, blobs: Descriptor[]): Promise<void> {
  const queue = [...blobs];
  const errors: unknown[] = [];
  const worker = async () => {
    for (let d = queue.shift(); d; d = queue.shift()) await store.ensureSound(d.digest as Digest).catch((e: unknown) => errors.push(e));
  };
  await Promise.all([worker(), worker(), worker()]);
  if (errors.length) throw errors[0];
}

/**
 * Moves `tmp` to `dest` atomically. An archive already at `dest` is swapped out and then removed: renaming
 * over it would make ext4 write the new file out at once (its replace-by-rename safeguard) and free the old
 * one's blocks inside the rename, a tenth of a second for a big image.
 */
async function replaceFile(tmp: string, dest: string): Promise<void> {
  const existing = await fsp.lstat(dest).catch(() => null);
  try {
    if (!existing?.isFile()) throw new Error('nothing to swap with');
    exchange(tmp, dest);
  } catch {
    // No archive there yet, something that is not a file (rename says what is wrong with it), or a
    // filesystem without the swap.
    await fsp.rename(tmp, dest);
    return;
  }
  await fsp.rm(tmp, { force: true });
}

/**
 * The archive in order: header blocks and small files as buffers, blob bodies as descriptors (to be
 * copied, then padded by the next buffer). Every entry has fixed metadata: equal images give equal archives.
 */
function* archiveParts(contents: { blobs: Descriptor[]; index: Index; extraFiles?: ArchiveFile[] }): Generator<ArchivePart> {
  const file = (name: string, data: Buffer) => Buffer.concat([entryHeader(name, 'file', data.length), data, pad(data.length)]);
  yield file('oci-layout', Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' })));
  yield entryHeader('blobs/', 'dir', 0);
  yield entryHeader('blobs/sha256/', 'dir', 0);
  let prevSize = 0;
  for (const blob of contents.blobs) {
    yield Buffer.concat([pad(prevSize), entryHeader(blobName(blob), 'file', blob.size)]);
    yield blob;
    prevSize = blob.size;
  }
  yield Buffer.concat([pad(prevSize), file('index.json', Buffer.from(JSON.stringify(contents.index)))]);
  for (const f of contents.extraFiles ?? []) yield file(f.name, f.data);
  yield Buffer.alloc(1024); // end of archive: two zero blocks
}

function entryHeader(name: string, type: 'file' | 'dir', size: number): Buffer {
  return encodeHeader({ name, type, size, mode: type === 'dir' ? 0o755 : 0o444, uid: 0, gid: 0, mtime: 0 });
}

const pad = (size: number) => Buffer.alloc((512 - (size % 512)) % 512);

/** The same archive onto a stream (standard output), respecting its backpressure. */
async function writeArchiveToStream(store: ContentStore, parts: ArchivePart[], out: NodeJS.WritableStream): Promise<void> {
  const write = async (buf: Buffer) => {
    if (!out.write(buf)) await once(out as unknown as NodeJS.EventEmitter, 'drain');
  };
  for (const part of parts) {
    if (Buffer.isBuffer(part)) await write(part);
    else for await (const chunk of store.createReadStream(part.digest)) await write(chunk as Buffer);
  }
}

/**
 * Writes a layout directory: blobs first (each copied to a temp name and renamed), then oci-layout and
 * index.json, replaced atomically, so the index never names a missing blob. Blobs already there stay.
 */
export async function writeLayoutDir(store: ContentStore, contents: { blobs: Descriptor[]; index: Index }, dest: string): Promise<void> {
  const blobDir = path.join(dest, 'blobs', 'sha256');
  await fsp.mkdir(blobDir, { recursive: true });
  await Promise.all([removeStaleTemps(blobDir, { anyName: true }), removeStaleTemps(path.join(dest, 'index.json')), removeStaleTemps(path.join(dest, 'oci-layout'))]);
  for (const blob of contents.blobs) {
    const target = path.join(dest, blobName(blob));
    if (await fsp.stat(target).then((s) => s.size === blob.size, () => false)) continue;
    await store.ensureSound(blob.digest as Digest);
    await copyFileAtomic(store.blobPath(blob.digest), target);
  }
  const put = async (name: string, data: string) => {
    const tmp = tempBeside(path.join(dest, name));
    await fsp.writeFile(tmp, data, { mode: 0o644 });
    await fsp.rename(tmp, path.join(dest, name));
  };
  await put('oci-layout', JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await put('index.json', JSON.stringify(contents.index));
}
