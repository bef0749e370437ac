// Layers between their two forms: a snapshot directory in overlayfs's format (whiteouts are char devices
// 0/0, opaque directories carry trusted.overlay.opaque=y) and an OCI layer tar (`.wh.NAME` and
// `.wh..wh..opq` entries), plus the compressed blobs in the content store.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import { Duplex, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import type { Digest } from '../../solver/llb/ops.js';
import type { ContentStore } from '../content/store.js';
import { nameBytes, osPath, readlinkName } from '../util/names.js';
import { getXattr, listXattrs, mknod, scanDir, Scan, setXattr, S_IFBLK, S_IFCHR, S_IFIFO } from '../native/fsx.js';
import { UserError } from '../util/errors.js';
import { resolveInRoot } from './rootpath.js';
import { encodeHeader, readTar, TarFormatError, writeUstarHeader, type TarHeader } from './tar.js';
import { MemberSource, SegmentedGzipWriter, type LayerEntrySink } from './segmented.js';

export const MEDIA_TYPE_LAYER_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';

export interface LayerBlob {
  /** Digest of the gzip blob. */
  digest: Digest;
  size: number;
  /** sha256 of the uncompressed tar. */
  diffID: Digest;
  mediaType: string;
  /** The layer has no entries (the tar is just its end marker). */
  empty: boolean;
  /** What Docker shows as the layer's size (see entrySize; also kept in the store). */
  unpackedSize: number;
}

export interface LayerTarOptions {
  /** Unix seconds: later mtimes are clamped to it (SOURCE_DATE_EPOCH). */
  sourceDateEpoch?: number;
  /** Stops the walk, rejecting with the signal's reason (an interrupted build's blob is not finished). */
  signal?: AbortSignal;
}

export class UnsupportedMediaTypeError extends UserError {
  constructor(readonly mediaType: string) {
    super('UNSUPPORTED_MEDIA_TYPE', mediaType.endsWith('+zstd')
      ? `zstd-compressed layers are not supported (${mediaType}); use gzip layers`
      : `unsupported layer media type ${mediaType}`);
  }
}

export class UnsafeLayerPathError extends UserError {
  constructor(name: string) { super('UNSAFE_LAYER_PATH', `layer entry ${JSON.stringify(name)} points outside the layer`); }
}

export class HardlinkTargetError extends UserError {
  constructor(name: string, linkname: string) {
    super('HARDLINK_TARGET_NOT_FOUND', `layer entry ${JSON.stringify(name)} is a hard link to ${JSON.stringify(linkname)}, which is not found in the layer`);
  }
}

const WHITEOUT_PREFIX = '.wh.';
const OPAQUE_MARKER = '.wh..wh..opq';
const OVERLAY_XATTR = 'trusted.overlay.';
const OPAQUE_XATTR = 'trusted.overlay.opaque';
const { S_IFMT, S_IFDIR, S_IFREG, S_IFLNK, S_IFSOCK } = fs.constants;

// ------------------------------------------------------------------ directory -> tar

/**
 * Writes the OCI layer tar of an overlay upperdir (or any layer directory) to `out`, which is left open.
 * Entries come parents first, siblings sorted bytewise by their tar names; ownership is numeric only.
 * Returns the number of entries.
 */
export async function writeLayerTar(dir: string, out: NodeJS.WritableStream, opts: LayerTarOptions = {}): Promise<number> {
  const sink = new BufferedTarSink(out);
  const { count } = await walkLayer(dir, sink, opts);
  await sink.finish();
  return count;
}

const TAR_CHUNK = 1 << 20;
const TAR_BLOCK = 512;

/**
 * Entries packed into 1 MiB writes, file data read straight into them: far fewer stream hops than a
 * read stream per file. Each descriptor is closed before the next entry, so a mount being archived is
 * not busy when the caller unmounts it.
 */
class BufferedTarSink implements LayerEntrySink {
  private buf = Buffer.allocUnsafe(TAR_CHUNK);
  private len = 0;
  private readonly scratch = Buffer.allocUnsafe(1);

  constructor(private readonly out: NodeJS.WritableStream) {}

  async add(header: TarHeader, file?: string): Promise<void> {
    if (this.len + TAR_BLOCK > this.buf.length) await this.flush();
    const written = writeUstarHeader(header, this.buf, this.len);
    if (written > 0) this.len += written;
    else await this.put(encodeHeader(header));
    const size = header.type === 'file' ? header.size : 0;
    if (size === 0) return;
    const fd = fs.openSync(osPath(file!), 'r');
    try {
      for (let off = 0; off < size;) {
        if (this.len === this.buf.length) await this.flush();
        const n = fs.readSync(fd, this.buf, this.len, Math.min(size - off, this.buf.length - this.len), off);
        if (n === 0) throw new TarFormatError(`${header.name} shrank while being archived`);
        this.len += n;
        off += n;
      }
      if (fs.readSync(fd, this.scratch, 0, 1, size) > 0) throw new TarFormatError(`${header.name} grew while being archived`);
    } finally {
      fs.closeSync(fd);
    }
    await this.zeros((TAR_BLOCK - (size % TAR_BLOCK)) % TAR_BLOCK);
  }

  private async zeros(n: number): Promise<void> {
    while (n > 0) {
      if (this.len === this.buf.length) await this.flush();
      const k = Math.min(n, this.buf.length - this.len);
      this.buf.fill(0, this.len, this.len + k);
      this.len += k;
      n -= k;
    }
  }

  /** The end-of-archive marker (two zero blocks), and what is left in the buffer. */
  async finish(): Promise<void> {
    await this.put(Buffer.alloc(TAR_BLOCK * 2));
    await this.flush();
  }

  private async put(b: Buffer): Promise<void> {
    if (this.len + b.length > this.buf.length) {
      await this.flush();
      if (b.length > this.buf.length) return this.write(b);
    }
    this.len += b.copy(this.buf, this.len);
  }

  private async flush(): Promise<void> {
    if (this.len === 0) return;
    // The stream keeps the chunk until it is consumed: the next entries go to a new buffer.
    const chunk = this.buf.subarray(0, this.len);
    this.buf = Buffer.allocUnsafe(TAR_CHUNK);
    this.len = 0;
    await this.write(chunk);
  }

  private write(chunk: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.out.write(chunk)) return resolve();
      const done = (e?: Error) => { this.out.off('drain', done); this.out.off('error', done); e ? reject(e) : resolve(); };
      this.out.once('drain', done);
      this.out.once('error', done);
    });
  }
}

/** The layer's entries in tar order, handed to `sink` (which reads regular files from the given path). */
/**
 * What an entry adds to a layer's size as Docker's overlay2 layer store counts it (the size of the layer's
 * directory once extracted, pkg/directory.Size): a regular file's bytes, a symlink's target length; nothing
 * for a directory, a hard link (its inode is counted once), a whiteout or a device.
 */
export function entrySize(header: TarHeader): number {
  if (header.type === 'file') return header.size;
  if (header.type === 'symlink') return nameBytes(header.linkname ?? '').length;
  return 0;
}

/** Walks a layer directory into `sink`; the entries written and the layer's size as Docker counts it (entrySize). */
async function walkLayer(dir: string, sink: LayerEntrySink, opts: LayerTarOptions): Promise<{ count: number; unpacked: number }> {
  const links = new Map<string, string>();
  const clamp = (t: number) => (opts.sourceDateEpoch !== undefined ? Math.min(t, opts.sourceDateEpoch) : t);
  let count = 0;
  let unpacked = 0;

  // One native call per directory for its entries' lstat and xattr presence: synchronous (a local tree's
  // metadata takes microseconds, far less than a trip through the threadpool, which the compressions keep
  // busy), and no Stats objects.
  // Few objects per entry: a big layer's walk otherwise leaves tens of MB of garbage for the collector while
  // its segments compress (peak memory of a build).
  const walk = async (abs: string, rel: string): Promise<void> => {
    const { names, stats } = scanDir(abs);
    let ascii = true;
    const children = names.map((name, i) => {
      const o = i * Scan.fields;
      const type = stats[o + Scan.mode] & S_IFMT;
      const whiteout = type === S_IFCHR && stats[o + Scan.rdevMajor] === 0 && stats[o + Scan.rdevMinor] === 0;
      const tarName = rel + (whiteout ? WHITEOUT_PREFIX + name : name);
      if (ascii && !/^[\x00-\x7f]*$/.test(tarName)) ascii = false;
      return { name, o, type, whiteout, tarName };
    });
    // Bytewise order; for ASCII names that is the strings' own order (no buffer per name).
    if (ascii) children.sort((a, b) => (a.tarName < b.tarName ? -1 : a.tarName > b.tarName ? 1 : 0));
    else {
      const order = new Map(children.map((c) => [c, nameBytes(c.tarName)]));
      children.sort((a, b) => Buffer.compare(order.get(a)!, order.get(b)!));
    }
    const dirPrefix = abs.endsWith('/') ? abs : `${abs}/`;
    for (const { name, o, type, whiteout, tarName } of children) {
      opts.signal?.throwIfAborted();
      const p = dirPrefix + name;
      const mtime = clamp(stats[o + Scan.mtime]);
      if (whiteout) {
        // Checked before hardlinks: overlayfs shares one whiteout inode among many names.
        await sink.add({ name: tarName, type: 'file', mode: 0, uid: 0, gid: 0, size: 0, mtime });
        count++;
        continue;
      }
      if (type === S_IFSOCK) continue; // tar cannot hold sockets; they are runtime artifacts
      const xattrs = stats[o + Scan.xattrs] !== 0 ? readXattrs(p) : undefined;
      const base = { mode: stats[o + Scan.mode] & 0o7777, uid: stats[o + Scan.uid], gid: stats[o + Scan.gid], mtime, xattrs };
      const nlink = stats[o + Scan.nlink];
      const key = nlink > 1 ? `${stats[o + Scan.dev]}:${stats[o + Scan.ino]}` : '';
      const first = type !== S_IFDIR && nlink > 1 ? links.get(key) : undefined;
      if (first !== undefined) {
        await sink.add({ ...base, name: tarName, type: 'link', size: 0, linkname: first });
      } else if (type === S_IFDIR) {
        await sink.add({ ...base, name: `${tarName}/`, type: 'dir', size: 0 });
        count++;
        const opaque = stats[o + Scan.xattrs] === 2 ? getXattr(p, OPAQUE_XATTR)?.toString() === 'y' : stats[o + Scan.opaque] === 1;
        if (opaque) {
          await sink.add({ name: `${tarName}/${OPAQUE_MARKER}`, type: 'file', mode: 0, uid: 0, gid: 0, size: 0, mtime });
          count++;
        }
        await walk(p, `${tarName}/`);
        continue;
      } else if (type === S_IFREG) {
        unpacked += stats[o + Scan.size];
        await sink.add({ name: tarName, type: 'file', mode: base.mode, uid: base.uid, gid: base.gid, size: stats[o + Scan.size], mtime, xattrs }, p);
      } else if (type === S_IFLNK) {
        unpacked += stats[o + Scan.size];
        await sink.add({ ...base, name: tarName, type: 'symlink', size: 0, linkname: readlinkName(p) });
      } else if (type === S_IFCHR || type === S_IFBLK) {
        const dev = { devmajor: stats[o + Scan.rdevMajor], devminor: stats[o + Scan.rdevMinor] };
        await sink.add({ ...base, name: tarName, type: type === S_IFCHR ? 'char' : 'block', size: 0, ...dev });
      } else if (type === S_IFIFO) {
        await sink.add({ ...base, name: tarName, type: 'fifo', size: 0 });
      }
      if (nlink > 1 && !links.has(key)) links.set(key, tarName);
      count++;
    }
  };

  await walk(path.normalize(dir), '');
  return { count, unpacked };
}

function readXattrs(p: string): Map<string, Buffer> | undefined {
  const names = listXattrs(p).filter((n) => !n.startsWith(OVERLAY_XATTR));
  if (names.length === 0) return undefined;
  const out = new Map<string, Buffer>();
  for (const n of names) {
    const v = getXattr(p, n);
    if (v !== null) out.set(n, v);
  }
  return out;
}

// ------------------------------------------------------------------ tar -> directory

/**
 * Extracts an uncompressed OCI layer tar into an empty snapshot directory in overlay format, so it can
 * be a lowerdir. Reads `input` to its end.
 */
export async function applyLayerTar(input: NodeJS.ReadableStream, dir: string): Promise<{ unpacked: number }> {
  // Directories this extraction made (or checked) as real directories: their children need no resolving.
  const realDirs = new Set<string>(['']);
  const dirTimes = new Map<string, number>();
  // The layer's size as Docker counts it (entrySize).
  let unpacked = 0;

  const parentOf = async (rel: string): Promise<string> => {
    const parentRel = path.posix.dirname(rel) === '.' ? '' : path.posix.dirname(rel);
    if (realDirs.has(parentRel)) return path.join(dir, parentRel);
    // Unknown parent (implicit, or through a symlink of this layer): resolve it as a chroot would.
    const parent = await resolveInRoot(dir, parentRel);
    await fsp.mkdir(osPath(parent), { recursive: true, mode: 0o755 });
    if (parent === path.join(dir, parentRel)) realDirs.add(parentRel);
    return parent;
  };

  for await (const { header, body } of readTar(input)) {
    unpacked += entrySize(header);
    const rel = layerRelPath(header.name);
    if (rel === '') {
      applyMetadata(dir, header);
      dirTimes.set(dir, header.mtime);
      continue;
    }
    const parent = await parentOf(rel);
    const base = path.posix.basename(rel);
    if (base === OPAQUE_MARKER) {
      setXattr(parent, OPAQUE_XATTR, Buffer.from('y'));
      continue;
    }
    if (base.startsWith(WHITEOUT_PREFIX)) {
      const name = base.slice(WHITEOUT_PREFIX.length);
      if (name === '' || name === '.' || name === '..') throw new UnsafeLayerPathError(header.name);
      // A whiteout hides lower layers only: an entry of this same layer stays.
      if (!lstatOrNull(path.join(parent, name))) mknod(path.join(parent, name), S_IFCHR, 0, 0);
      continue;
    }
    const target = path.join(parent, base);
    const existing = lstatOrNull(target);
    if (existing && !(existing.isDirectory() && header.type === 'dir')) {
      fs.rmSync(osPath(target), { recursive: true, force: true });
      for (const d of realDirs) if (d === rel || d.startsWith(`${rel}/`)) realDirs.delete(d);
    }
    switch (header.type) {
      case 'dir':
        if (!existing?.isDirectory()) fs.mkdirSync(osPath(target), { mode: 0o700 });
        if (target === path.join(dir, rel)) realDirs.add(rel);
        break;
      case 'file':
        await writeBody(target, body);
        break;
      case 'link': {
        const linkRel = layerRelPath(header.linkname ?? '');
        if (linkRel === '') throw new UnsafeLayerPathError(header.linkname ?? '');
        const source = await resolveInRoot(dir, linkRel, false);
        if (!lstatOrNull(source)) throw new HardlinkTargetError(header.name, header.linkname ?? '');
        fs.linkSync(osPath(source), osPath(target));
        // As containerd's archive: the link entry's own owner, mode, xattrs and times then go to the inode
        // it shares with its target (the last entry naming an inode decides; ours name it alike).
        break;
      }
      case 'symlink':
        fs.symlinkSync(osPath(header.linkname ?? ''), osPath(target));
        break;
      case 'char':
      case 'block':
      case 'fifo': {
        const kind = header.type === 'char' ? S_IFCHR : header.type === 'block' ? S_IFBLK : S_IFIFO;
        mknod(target, kind | 0o600, header.devmajor ?? 0, header.devminor ?? 0);
        break;
      }
    }
    applyMetadata(target, header, header.type === 'symlink' || (header.type === 'link' && fs.lstatSync(osPath(target)).isSymbolicLink()));
    if (header.type === 'dir') dirTimes.set(target, header.mtime);
    else fs.lutimesSync(osPath(target), header.mtime, header.mtime);
  }
  // Directory mtimes last: creating their entries changed them.
  for (const [p, t] of dirTimes) fs.lutimesSync(osPath(p), t, t);
  return { unpacked };
}

/** Owner, then mode (chown clears setuid/setgid), then xattrs (chown clears security.capability). */
function applyMetadata(target: string, h: TarHeader, isSymlink = h.type === 'symlink'): void {
  fs.lchownSync(osPath(target), h.uid, h.gid);
  if (!isSymlink) fs.chmodSync(osPath(target), h.mode);
  for (const [name, value] of h.xattrs ?? []) {
    // Overlay's own attributes would let a layer forge redirects; opacity comes from .wh..wh..opq.
    if (!name.startsWith(OVERLAY_XATTR)) setXattr(target, name, value);
  }
}

async function writeBody(target: string, body: AsyncIterable<Buffer>): Promise<void> {
  const fd = fs.openSync(osPath(target), 'wx', 0o600);
  try {
    for await (const chunk of body) {
      let off = 0;
      while (off < chunk.length) off += fs.writeSync(fd, chunk, off, chunk.length - off);
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** The entry's path relative to the layer root ('' for the root itself); rejects `..` escapes. */
function layerRelPath(name: string): string {
  const parts: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part !== '..') parts.push(part);
    else if (parts.pop() === undefined) throw new UnsafeLayerPathError(name);
  }
  return parts.join('/');
}

function lstatOrNull(p: string): fs.Stats | null {
  try {
    return fs.lstatSync(osPath(p));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

// ------------------------------------------------------------------ blobs

export type Compression = 'gzip' | 'zstd' | 'uncompressed';

export interface LayerBlobOptions extends LayerTarOptions {
  compression?: Compression;
  /** gzip 0-9 (default 6, zlib's), zstd 1-19 (default 3). */
  level?: number;
  /** gzip: earlier blobs whose members (by uncompressed sha256) may be copied instead of compressed. */
  reuseFrom?: Digest[];
  /** gzip: how many members the blob got and how many were copied. */
  /** Members made, members copied from earlier blobs, and segments known by fingerprint (not hashed). */
  onStats?: (s: { members: number; reused: number; known: number }) => void;
}

const MEDIA_TYPES: Record<Compression, string> = {
  gzip: MEDIA_TYPE_LAYER_GZIP,
  zstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  uncompressed: 'application/vnd.oci.image.layer.v1.tar',
};

export class CompressionError extends UserError {
  constructor(message: string) { super('COMPRESSION', message); }
}

/** The compressor as a duplex stream (gzip: see segmented.ts). zstd is Debian's `zstd` program: Node 20's zlib has no zstd. */
function compressor(c: Exclude<Compression, 'gzip'>, level: number | undefined): NodeJS.ReadWriteStream {
  if (c === 'uncompressed') return new Transform({ transform(chunk, _e, cb) { cb(null, chunk); } });
  const lvl = Math.max(1, level ?? 3);
  // Levels above 19 need --ultra; BuildKit allows up to 22.
  const child = spawn('zstd', ['-q', '-c', ...(lvl > 19 ? ['--ultra'] : []), `-${lvl}`, '--no-progress'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const out = Duplex.from({ writable: child.stdin, readable: child.stdout });
  child.on('error', (e) => out.destroy(new CompressionError(`compression=zstd needs the zstd program: ${e.message}`)));
  child.on('exit', (code) => { if (code) out.destroy(new CompressionError(`zstd exited with ${code}: ${stderr.trim()}`)); });
  return out;
}

/** Tars, hashes (diff id) and compresses a layer directory into the store in one pass. */
export async function createLayerBlob(store: ContentStore, dir: string, opts: LayerBlobOptions = {}): Promise<LayerBlob> {
  const compression = opts.compression ?? 'gzip';
  if (compression === 'gzip') return createSegmentedGzipBlob(store, dir, opts);
  const hash = createHash('sha256');
  const tarOut = new Transform({ transform(chunk: Buffer, _enc, cb) { hash.update(chunk); cb(null, chunk); } });
  const writer = await store.openWriter();
  // A fixed level: equal trees give equal blobs.
  const piped = pipeline(tarOut, compressor(compression, opts.level), writer);
  try {
    const sink = new BufferedTarSink(tarOut);
    const { count, unpacked } = await walkLayer(dir, sink, opts);
    await sink.finish();
    tarOut.end();
    await piped;
    const { digest, size } = await writer.commit();
    await store.writeUnpackedSize(digest, unpacked);
    return { digest, size, diffID: `sha256:${hash.digest('hex')}`, mediaType: MEDIA_TYPES[compression], empty: count === 0, unpackedSize: unpacked };
  } catch (e) {
    tarOut.destroy();
    await piped.catch(() => undefined);
    await writer.abort();
    throw e;
  }
}

/** gzip as independent members of segments (src/archive/segmented.ts), copying those `reuseFrom` has. */
async function createSegmentedGzipBlob(store: ContentStore, dir: string, opts: LayerBlobOptions): Promise<LayerBlob> {
  // zlib's default level is 6; the level is spelled out so the index records what made the members.
  const level = opts.level === undefined || opts.level < 0 ? 6 : opts.level;
  const reuse = opts.reuseFrom?.length ? await MemberSource.load(store, opts.reuseFrom, level) : undefined;
  const writer = await store.openWriter();
  const seg = new SegmentedGzipWriter(writer, level, reuse);
  try {
    const { count, unpacked } = await walkLayer(dir, seg, opts);
    const { diffID, index, reused, known } = await seg.finish();
    const { digest, size } = await writer.commit();
    // After its blob: an index only ever names a blob that exists.
    await store.writeMemberIndex(digest, index);
    await store.writeUnpackedSize(digest, unpacked);
    opts.onStats?.({ members: index.members.length, reused, known });
    return { digest, size, diffID, mediaType: MEDIA_TYPE_LAYER_GZIP, empty: count === 0, unpackedSize: unpacked };
  } catch (e) {
    await seg.abandon();
    await writer.abort();
    throw e;
  } finally {
    await reuse?.close();
  }
}

const GZIP_TYPES = new Set([
  MEDIA_TYPE_LAYER_GZIP,
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  'application/vnd.docker.image.rootfs.diff.tar.gzip',
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
]);
const PLAIN_TYPES = new Set([
  'application/vnd.oci.image.layer.v1.tar',
  'application/vnd.oci.image.layer.nondistributable.v1.tar',
  'application/vnd.docker.image.rootfs.diff.tar',
]);

const ZSTD_TYPES = new Set([
  'application/vnd.oci.image.layer.v1.tar+zstd',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
  'application/vnd.docker.image.rootfs.diff.tar.zstd',
]);

/** `zstd -d` as a duplex stream (Node 20's zlib has no zstd). */
function zstdDecompressor(): NodeJS.ReadWriteStream {
  const child = spawn('zstd', ['-q', '-d', '-c'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const out = Duplex.from({ writable: child.stdin, readable: child.stdout });
  child.on('error', (e) => out.destroy(new CompressionError(`zstd layers need the zstd program: ${e.message}`)));
  child.on('exit', (code) => { if (code) out.destroy(new CompressionError(`zstd -d exited with ${code}: ${stderr.trim()}`)); });
  return out;
}

/**
 * A stored layer blob's unpacked size (see ContentStore.readUnpackedSize): recorded when the layer was made
 * or extracted here; otherwise (a loaded archive, a blob from a cache import) read through once and recorded.
 */
export async function layerUnpackedSize(store: ContentStore, blob: { digest: Digest; mediaType: string }): Promise<number> {
  const known = await store.readUnpackedSize(blob.digest);
  if (known !== undefined) return known;
  const gzip = GZIP_TYPES.has(blob.mediaType);
  const zstd = ZSTD_TYPES.has(blob.mediaType);
  if (!gzip && !zstd && !PLAIN_TYPES.has(blob.mediaType)) throw new UnsupportedMediaTypeError(blob.mediaType);
  await store.ensureSound(blob.digest, 'layer');
  const source = store.createReadStream(blob.digest);
  const tar = gzip ? source.pipe(createGunzip()) : zstd ? source.pipe(zstdDecompressor()) : source;
  source.on('error', (e) => (tar as NodeJS.ReadableStream & { destroy(e?: Error): void }).destroy(e));
  let n = 0;
  try {
    for await (const { header } of readTar(tar)) n += entrySize(header);
  } finally {
    source.destroy();
  }
  await store.writeUnpackedSize(blob.digest, n);
  return n;
}

/** Extracts a layer blob from the store into an empty directory; returns the diff id it hashed. */
export async function applyLayerBlob(store: ContentStore, blob: { digest: Digest; mediaType: string }, dir: string): Promise<{ diffID: Digest; unpackedSize: number }> {
  const gzip = GZIP_TYPES.has(blob.mediaType);
  const zstd = ZSTD_TYPES.has(blob.mediaType);
  if (!gzip && !zstd && !PLAIN_TYPES.has(blob.mediaType)) throw new UnsupportedMediaTypeError(blob.mediaType);
  // Before the decompressor and the tar parser see a byte: the blob hashes to its name (free for a blob
  // this process just fetched).
  await store.ensureSound(blob.digest, 'layer');
  const hash = createHash('sha256');
  const tarIn = new Transform({ transform(chunk: Buffer, _enc, cb) { hash.update(chunk); cb(null, chunk); } });
  const source = store.createReadStream(blob.digest);
  const piped = gzip ? pipeline(source, createGunzip(), tarIn) : zstd ? pipeline(source, zstdDecompressor(), tarIn) : pipeline(source, tarIn);
  let unpacked: number;
  try {
    ({ unpacked } = await applyLayerTar(tarIn, dir));
    await piped;
  } catch (e) {
    tarIn.destroy();
    await piped.catch(() => undefined);
    throw e;
  }
  if ((await store.readUnpackedSize(blob.digest)) === undefined) await store.writeUnpackedSize(blob.digest, unpacked);
  return { diffID: `sha256:${hash.digest('hex')}`, unpackedSize: unpacked };
}
