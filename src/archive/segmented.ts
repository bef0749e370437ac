// Gzip layer blobs as a series of independent gzip members (RFC 1952 allows concatenation; Go's
// compress/gzip, containerd, docker, skopeo, umoci and GNU gzip read them), so that compressing an edited
// layer costs about what changed:
// - the tar stream is cut into segments at entry boundaries chosen by content: after an entry once the
//   segment holds >= 1 MiB and a hash of the entry's name has its low 4 bits zero, or once it holds 8 MiB;
//   a file larger than 4 MiB gets segments of its own, cut every 4 MiB of its data. A changed file thus
//   changes only its own segment (or, when its size moves a cut, the few up to the next common cut);
// - each segment is compressed on libuv's threadpool, several at once, members written in order;
// - a member index (uncompressed sha256 and length, compressed offset and length) is kept per blob, and a
//   segment whose sha256 matches a member of a candidate blob (made with the same level and zlib) is copied
//   from that blob instead of compressed again.
// The blob's bytes depend only on the tar bytes, the level and zlib's version: with or without reuse, the
// same tree gives the same blob.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { createHash, webcrypto } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { promisify } from 'node:util';
import { crc32, gzip } from 'node:zlib';
import type { Digest } from '../../solver/llb/ops.js';
import type { BlobWriter, ContentStore, MemberIndex, MemberRecord } from '../content/store.js';
import { encodeHeader, TarFormatError, type TarHeader } from './tar.js';

const gzipAsync = promisify(gzip) as (buf: Buffer, opts: { level: number; chunkSize: number }) => Promise<Buffer>;
// Output is delivered in pieces of this size: few callbacks on the main thread per segment.
const GZIP_CHUNK = 1 << 20;

export const SEGMENT_MIN = 1 << 20;
export const SEGMENT_MAX = 8 << 20;
/** Files larger than this are split at multiples of it (offsets into their data). */
export const SEGMENT_SPLIT = 4 << 20;
const BLOCK = 512;

/** What the layer walk hands its entries to; `file` is the path to read a regular file's data from. */
export interface LayerEntrySink {
  add(header: TarHeader, file?: string): Promise<void>;
}

/** Members of earlier blobs that a new blob may copy instead of compressing, by uncompressed sha256. */
export class MemberSource {
  private readonly byHash = new Map<string, { digest: Digest; member: MemberRecord }>();
  private readonly handles = new Map<Digest, Promise<fsp.FileHandle | null>>();

  private constructor(private readonly store: ContentStore) {}

  /** The members of those `candidates` whose index exists and whose blob was made with this level and zlib. */
  static async load(store: ContentStore, candidates: Digest[], level: number): Promise<MemberSource> {
    const src = new MemberSource(store);
    for (const digest of candidates) {
      const index = await store.readMemberIndex(digest);
      if (!index || index.level !== level || index.zlib !== process.versions.zlib) continue;
      for (const member of index.members) if (!src.byHash.has(member.sha256)) src.byHash.set(member.sha256, { digest, member });
    }
    return src;
  }

  get size(): number { return this.byHash.size; }

  /** The compressed member for this segment, or null (no match, blob gone, or the member does not check out). */
  async read(sha256: string, segment: Buffer): Promise<Buffer | null> {
    const hit = this.byHash.get(sha256);
    if (!hit || hit.member.size !== segment.length) return null;
    let h = this.handles.get(hit.digest);
    if (!h) {
      h = fsp.open(this.store.blobPath(hit.digest), 'r').catch(() => null);
      this.handles.set(hit.digest, h);
    }
    const handle = await h;
    if (!handle) return null;
    const buf = Buffer.allocUnsafe(hit.member.csize);
    const bytesRead = await handle.read(buf, 0, buf.length, hit.member.offset).then((r) => r.bytesRead, () => -1);
    // The trailer (CRC-32 and length of the data) guards against an index that does not fit its blob.
    if (bytesRead !== buf.length || buf.length < 18 || buf[0] !== 0x1f || buf[1] !== 0x8b ||
      buf.readUInt32LE(buf.length - 8) !== crc32(segment) || buf.readUInt32LE(buf.length - 4) !== segment.length % 2 ** 32) {
      return null;
    }
    return buf;
  }

  async close(): Promise<void> {
    for (const h of this.handles.values()) await (await h)?.close().catch(() => undefined);
    this.handles.clear();
  }
}

export interface SegmentedResult {
  diffID: Digest;
  index: MemberIndex;
  /** Members copied from earlier blobs. */
  reused: number;
}

/** FNV-1a of the name's UTF-8 bytes: a cheap, stable choice of cut points. */
function nameHash(name: string): number {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(name)) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h;
}

type Member = { sha256: string; size: number; data: Buffer; reused: boolean; segment: Buffer };

/** Segment buffers: the largest segment is 8 MiB of entries plus one entry of up to 4 MiB and its header. */
const SEGMENT_CAPACITY = SEGMENT_MAX + SEGMENT_SPLIT + (64 << 10);

/** Receives a layer's entries, cuts the tar into segments, and writes their gzip members to `out` in order. */
export class SegmentedGzipWriter implements LayerEntrySink {
  private buf: Buffer;
  private len = 0;
  /** Segment buffers whose members are written, ready for the next segments. */
  private readonly free: Buffer[] = [];
  private readonly diff = createHash('sha256');
  private readonly queue: Promise<Member>[] = [];
  private readonly members: MemberRecord[] = [];
  private offset = 0;
  private reused = 0;
  /** Segments in flight beyond the one being written: enough to keep every core compressing. */
  private readonly depth = Math.max(2, availableParallelism());
  private readonly scratch = Buffer.allocUnsafe(1);

  constructor(private readonly out: BlobWriter, private readonly level: number, private readonly reuse?: MemberSource) {
    this.buf = Buffer.allocUnsafe(SEGMENT_CAPACITY);
  }

  async add(header: TarHeader, file?: string): Promise<void> {
    const size = header.type === 'file' ? header.size : 0;
    const head = encodeHeader(header);
    if (size > SEGMENT_SPLIT) {
      await this.addLarge(head, header.name, size, file!);
      return;
    }
    // Files are read straight into the segment: no buffer per file, no copy.
    // One byte of room past the data: a read that fills it means the file grew.
    this.reserve(head.length + size + padding(size) + 1);
    this.len += head.copy(this.buf, this.len);
    if (size > 0) {
      const fd = fs.openSync(file!, 'r');
      try {
        if (readUpTo(fd, this.buf, this.len, size + 1) !== size) {
          this.checkEnd(fd, size, header.name);
          readExact(fd, this.buf, this.len, size, 0, header.name);
        }
      } finally {
        fs.closeSync(fd);
      }
      this.len += size;
      this.zeros(padding(size));
    }
    if (this.len >= SEGMENT_MAX || (this.len >= SEGMENT_MIN && (nameHash(header.name) & 15) === 0)) await this.cut();
  }

  /** A file larger than SEGMENT_SPLIT: segments of its own, cut every SEGMENT_SPLIT bytes of its data. */
  private async addLarge(head: Buffer, name: string, size: number, file: string): Promise<void> {
    await this.cut();
    this.reserve(head.length);
    this.len += head.copy(this.buf, this.len);
    const h = await fsp.open(file, 'r');
    try {
      for (let off = 0; off < size;) {
        const n = Math.min(SEGMENT_SPLIT, size - off);
        this.reserve(n + padding(size));
        for (let got = 0; got < n;) {
          const { bytesRead } = await h.read(this.buf, this.len + got, n - got, off + got);
          if (bytesRead === 0) throw new TarFormatError(`${name} shrank while being archived`);
          got += bytesRead;
        }
        this.len += n;
        off += n;
        if (off < size) await this.cut();
      }
      this.checkEnd(h.fd, size, name);
    } finally {
      await h.close();
    }
    this.zeros(padding(size));
    await this.cut();
  }

  /** The end-of-archive marker, the last members, and the index. */
  async finish(): Promise<SegmentedResult> {
    this.reserve(BLOCK * 2);
    this.zeros(BLOCK * 2);
    await this.cut();
    while (this.queue.length) await this.writeNext();
    return {
      diffID: `sha256:${this.diff.digest('hex')}`,
      index: { version: 1, level: this.level, zlib: process.versions.zlib, members: this.members },
      reused: this.reused,
    };
  }

  /** Waits for what is in flight (after a failure, so nothing runs on unobserved). */
  async abandon(): Promise<void> {
    await Promise.allSettled(this.queue.splice(0));
  }

  private checkEnd(fd: number, size: number, name: string): void {
    if (fs.readSync(fd, this.scratch, 0, 1, size) > 0) throw new TarFormatError(`${name} grew while being archived`);
  }

  /** Room for `n` more bytes in the segment (a bigger buffer only for outsized headers). */
  private reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(this.len + n);
    this.buf.copy(bigger, 0, 0, this.len);
    this.buf = bigger;
  }

  private zeros(n: number): void {
    this.buf.fill(0, this.len, this.len + n);
    this.len += n;
  }

  private async cut(): Promise<void> {
    if (this.len === 0) return;
    const segment = this.buf.subarray(0, this.len);
    this.diff.update(segment);
    this.buf = this.free.pop() ?? Buffer.allocUnsafe(SEGMENT_CAPACITY);
    this.len = 0;
    const job = this.member(segment);
    job.catch(() => undefined); // observed when written, or by abandon()
    this.queue.push(job);
    while (this.queue.length > this.depth) await this.writeNext();
  }

  private async member(segment: Buffer): Promise<Member> {
    // WebCrypto's digest runs on the threadpool too, beside the compressions.
    const sha256 = Buffer.from(await webcrypto.subtle.digest('SHA-256', segment)).toString('hex');
    const copied = this.reuse ? await this.reuse.read(sha256, segment) : null;
    const data = copied ?? (await gzipAsync(segment, { level: this.level, chunkSize: GZIP_CHUNK }));
    return { sha256, size: segment.length, data, reused: copied !== null, segment };
  }

  private async writeNext(): Promise<void> {
    const m = await this.queue[0];
    this.queue.shift();
    // Nothing reads the segment any more: its buffer takes a later one.
    if (m.segment.buffer.byteLength === SEGMENT_CAPACITY) this.free.push(Buffer.from(m.segment.buffer, m.segment.byteOffset, SEGMENT_CAPACITY));
    this.members.push({ sha256: m.sha256, size: m.size, offset: this.offset, csize: m.data.length });
    this.offset += m.data.length;
    if (m.reused) this.reused++;
    if (!this.out.write(m.data)) {
      await new Promise<void>((resolve, reject) => {
        const done = (e?: Error) => { this.out.off('drain', done); this.out.off('error', done); e ? reject(e) : resolve(); };
        this.out.once('drain', done);
        this.out.once('error', done);
      });
    }
  }
}

const padding = (size: number) => (BLOCK - (size % BLOCK)) % BLOCK;

/** Reads from the start of the file until `n` bytes or its end; returns how many came. */
function readUpTo(fd: number, buf: Buffer, off: number, n: number): number {
  let got = 0;
  for (let r = -1; got < n && r !== 0; got += r) r = fs.readSync(fd, buf, off + got, n - got, got);
  return got;
}

function readExact(fd: number, buf: Buffer, off: number, n: number, pos: number, name: string): void {
  let got = 0;
  while (got < n) {
    const r = fs.readSync(fd, buf, off + got, n - got, pos + got);
    if (r === 0) throw new TarFormatError(`${name} shrank while being archived`);
    got += r;
  }
}
