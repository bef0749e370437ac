// Gzip layer blobs as a series of independent gzip members (RFC 1952 allows concatenation; Go's
// compress/gzip, containerd, docker, skopeo, umoci and GNU gzip read them), so that compressing an edited
// layer costs about what changed:
// - the tar stream is cut into segments at entry boundaries chosen by content: after an entry once the
//   segment holds >= 1 MiB and a hash of the entry's name has its low 4 bits zero, or once it holds 8 MiB;
//   a file larger than 4 MiB gets segments of its own, cut every 4 MiB of its data. A changed file thus
//   changes only its own segment (or, when its size moves a cut, the few up to the next common cut);
// - each segment is filled with its files' data, hashed and compressed on libuv's threadpool, several at
//   once, members written in order (the main thread only walks the tree and writes the tar headers);
// - a member index (uncompressed sha256, length, CRC-32 and fingerprint, compressed offset and length) is
//   kept per blob, and a segment whose sha256 matches a member of a candidate blob (made with the same level
//   and zlib) is copied from that blob instead of compressed again, once its compressed bytes still hash to
//   what the index says (a damaged blob's members are never copied). A segment whose fingerprint (the inodes
//   it reads: see fillSegment) matches a member's is not even hashed: an edited tree made of hard links to
//   the previous one hashes only what changed (and its diff id, which covers every byte).
// The blob's bytes depend only on the tar bytes, the level and zlib's version: with or without reuse, the
// same tree gives the same blob.
import fsp from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { getSystemErrorName, promisify } from 'node:util';
import { crc32, gzip } from 'node:zlib';
import type { Digest } from '../../solver/llb/ops.js';
import type { BlobWriter, ContentStore, MemberIndex, MemberRecord } from '../content/store.js';
import { nameBytes } from '../util/names.js';
import { fillSegment, OrderedSha256, type SegmentFillError, type SegmentSpan } from '../native/fsx.js';
import { encodeHeader, TarFormatError, writeUstarHeader, type TarHeader } from './tar.js';

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
  /** Uncompressed sha256 by fingerprint: segments known without hashing them. */
  private readonly byFingerprint = new Map<string, string>();
  private readonly handles = new Map<Digest, Promise<fsp.FileHandle | null>>();
  private readonly verified = new Map<Digest, Promise<boolean>>();

  private constructor(private readonly store: ContentStore) {}

  /** The members of those `candidates` whose index exists and whose blob was made with this level and zlib. */
  static async load(store: ContentStore, candidates: Digest[], level: number): Promise<MemberSource> {
    const src = new MemberSource(store);
    for (const digest of candidates) {
      const index = await store.readMemberIndex(digest);
      if (!index || index.level !== level || index.zlib !== process.versions.zlib) continue;
      for (const member of index.members) {
        if (!src.byHash.has(member.sha256)) src.byHash.set(member.sha256, { digest, member });
        if (member.fp !== undefined) src.byFingerprint.set(member.fp, member.sha256);
      }
    }
    return src;
  }

  get size(): number { return this.byHash.size; }

  /** Whether segments can be looked up by fingerprint (their own hashing is then skipped on a match). */
  get fingerprinted(): boolean { return this.byFingerprint.size > 0; }

  /** The sha256 of a segment with this fingerprint, if one was seen. */
  sha256Of(fingerprint: string): string | undefined { return this.byFingerprint.get(fingerprint); }

  /**
   * The compressed member for this segment (of this sha256), or null (no match, blob gone, or the member
   * does not check out).
   */
  async read(sha256: string, segment: Buffer): Promise<{ data: Buffer; csha: string } | null> {
    const size = segment.length;
    const hit = this.byHash.get(sha256);
    if (!hit || hit.member.size !== size) return null;
    let h = this.handles.get(hit.digest);
    if (!h) {
      h = fsp.open(this.store.blobPath(hit.digest), 'r').catch(() => null);
      this.handles.set(hit.digest, h);
    }
    const handle = await h;
    if (!handle) return null;
    // Indexes made before members carried their compressed sha256: the whole blob is checked instead.
    if (hit.member.csha === undefined && !(await this.verifiedBlob(hit.digest))) return null;
    const buf = Buffer.allocUnsafe(hit.member.csize);
    const bytesRead = await handle.read(buf, 0, buf.length, hit.member.offset).then((r) => r.bytesRead, () => -1);
    // The trailer (CRC-32 and length of the data) guards against an index that does not fit its blob. The
    // index's CRC was taken from the same data as its sha256; older indexes lack it.
    if (bytesRead !== buf.length || buf.length < 18 || buf[0] !== 0x1f || buf[1] !== 0x8b ||
      buf.readUInt32LE(buf.length - 8) !== (hit.member.crc ?? crc32(segment)) || buf.readUInt32LE(buf.length - 4) !== size % 2 ** 32) {
      return null;
    }
    // The bytes as they were written: a flipped bit inside the member's deflate data fails here.
    if (hit.member.csha !== undefined && (await compressedSha256(buf)) !== hit.member.csha) return null;
    return { data: buf, csha: hit.member.csha ?? (await compressedSha256(buf)) };
  }

  private verifiedBlob(digest: Digest): Promise<boolean> {
    let p = this.verified.get(digest);
    if (!p) {
      p = this.store.verify(digest).catch(() => false);
      this.verified.set(digest, p);
    }
    return p;
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
  /** Segments whose sha256 came from a fingerprint match instead of hashing. */
  known: number;
}

/** FNV-1a of the name's bytes: a cheap, stable choice of cut points. */
function nameHash(name: string): number {
  let h = 0x811c9dc5;
  // An ASCII name's bytes are its char codes: no buffer per entry.
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c >= 0x80) return nameHashBytes(name);
    h = Math.imul(h ^ c, 0x01000193) >>> 0;
  }
  return h;
}

function nameHashBytes(name: string): number {
  let h = 0x811c9dc5;
  for (const b of nameBytes(name)) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h;
}

type Member = { sha256: string; fp?: string; size: number; data: Buffer; csha: string; reused: boolean; segment: Buffer; hashed: Promise<void> };

/** sha256 (hex) of a compressed member, on the threadpool. */
async function compressedSha256(data: Buffer): Promise<string> {
  return (await fillSegment(data, [], { hash: true })).sha256!.toString('hex');
}

/** Segment buffers: the largest segment is 8 MiB of entries plus one entry of up to 4 MiB and its header. */
const SEGMENT_CAPACITY = SEGMENT_MAX + SEGMENT_SPLIT + (64 << 10);
/**
 * A segment buffer starts this big and grows (doubling, to SEGMENT_CAPACITY) when a segment needs more: a
 * layer of small files cuts at about SEGMENT_MIN, and its buffers stay small; grown ones are kept for reuse.
 */
const SEGMENT_INITIAL = 2 * SEGMENT_MIN;

/**
 * Receives a layer's entries, cuts the tar into segments, and writes their gzip members to `out` in order.
 * The main thread only lays out headers and where each file's data goes; reading the files into the
 * segment, its fingerprint, its sha256 (unless the fingerprint gives it) and the diff id (an ordered hash
 * over the segments) run on the threadpool, several segments at once, beside their compression.
 */
export class SegmentedGzipWriter implements LayerEntrySink {
  private buf: Buffer;
  private len = 0;
  /** Where the current segment's file data comes from, and the tar names of those files. */
  private spans: SegmentSpan[] = [];
  private names: string[] = [];
  /** Segment buffers whose members are written, ready for the next segments. */
  private readonly free: Buffer[] = [];
  private readonly diff = new OrderedSha256();
  /** Members being written to the blob, oldest first. */
  private readonly writes: Promise<void>[] = [];
  private readonly queue: Promise<Member>[] = [];
  private readonly members: MemberRecord[] = [];
  private offset = 0;
  private reused = 0;
  private known = 0;
  /** Segments in flight beyond the one being written: enough to keep every core reading or compressing. */
  private readonly depth = Math.max(3, availableParallelism() + 1);

  constructor(private readonly out: BlobWriter, private readonly level: number, private readonly reuse?: MemberSource) {
    this.buf = Buffer.allocUnsafe(SEGMENT_INITIAL);
  }

  async add(header: TarHeader, file?: string): Promise<void> {
    const size = header.type === 'file' ? header.size : 0;
    if (size > SEGMENT_SPLIT) {
      await this.addLarge(encodeHeader(header), header.name, size, file!);
      return;
    }
    // Most headers are one USTAR block, written in place; one with PAX records is made apart.
    this.reserve(BLOCK + size + padding(size));
    const written = writeUstarHeader(header, this.buf, this.len);
    if (written > 0) {
      this.len += written;
    } else {
      const head = encodeHeader(header);
      this.reserve(head.length + size + padding(size));
      this.len += head.copy(this.buf, this.len);
    }
    if (size > 0) {
      // Read later, straight into the segment, when the segment is complete.
      this.spans.push({ path: file!, bufOffset: this.len, fileOffset: 0, length: size, end: true });
      this.names.push(header.name);
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
    for (let off = 0; off < size;) {
      const n = Math.min(SEGMENT_SPLIT, size - off);
      this.reserve(n + padding(size));
      this.spans.push({ path: file, bufOffset: this.len, fileOffset: off, length: n, end: off + n === size });
      this.names.push(name);
      this.len += n;
      off += n;
      if (off < size) await this.cut();
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
    for (const w of this.writes.splice(0)) await w;
    return {
      diffID: `sha256:${(await this.diff.digest()).toString('hex')}`,
      index: { version: 1, level: this.level, zlib: process.versions.zlib, members: this.members },
      reused: this.reused,
      known: this.known,
    };
  }

  /** Waits for what is in flight (after a failure, so nothing runs on unobserved, or into a freed buffer). */
  async abandon(): Promise<void> {
    const members = this.queue.splice(0);
    await Promise.allSettled(members);
    await Promise.allSettled(members.map((m) => m.then((x) => x.hashed)));
    await Promise.allSettled(this.writes.splice(0));
  }

  /** Room for `n` more bytes in the segment: a bigger buffer (what is laid out so far copied) when it needs one. */
  private reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.len + n, Math.min(this.buf.length * 2, SEGMENT_CAPACITY)));
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
    const { spans, names } = this;
    this.buf = this.free.pop() ?? Buffer.allocUnsafe(SEGMENT_INITIAL);
    this.len = 0;
    this.spans = [];
    this.names = [];
    // With fingerprints to match, a segment is hashed only when its fingerprint is new.
    const hash = !this.reuse?.fingerprinted;
    const ticket = this.diff.ticket();
    const filled = fillSegment(segment, spans, { hash, fingerprint: true, diff: { hash: this.diff, ticket } })
      .catch((e: SegmentFillError) => { throw fillError(e, spans, names); });
    const hashed = this.diff.passed(ticket);
    const job = this.member(segment, filled, hashed);
    job.catch(() => undefined); // observed when written, or by abandon()
    hashed.catch(() => undefined);
    this.queue.push(job);
    while (this.queue.length > this.depth) await this.writeNext();
  }

  private async member(segment: Buffer, filled: Promise<{ sha256?: Buffer; fingerprint?: Buffer }>, hashed: Promise<void>): Promise<Member> {
    const { sha256: digest, fingerprint } = await filled;
    const fp = fingerprint?.toString('hex');
    const known = digest === undefined && fp !== undefined ? this.reuse?.sha256Of(fp) : undefined;
    if (known !== undefined) this.known++;
    const sha256 = digest?.toString('hex') ?? known ?? (await fillSegment(segment, [], { hash: true })).sha256!.toString('hex');
    const copied = this.reuse ? await this.reuse.read(sha256, segment) : null;
    const data = copied?.data ?? (await gzipAsync(segment, { level: this.level, chunkSize: GZIP_CHUNK }));
    const csha = copied?.csha ?? (await compressedSha256(data));
    return { sha256, fp, size: segment.length, data, csha, reused: copied !== null, segment, hashed };
  }

  private async writeNext(): Promise<void> {
    const m = await this.queue[0];
    this.queue.shift();
    // Nothing reads the segment any more once the diff id has taken it in: its buffer takes a later one.
    await m.hashed;
    // (Only a buffer of its own: allocUnsafe gives segment buffers one each, never a slice of its pool.)
    const backing = m.segment.buffer;
    if (m.segment.byteOffset === 0 && backing.byteLength >= SEGMENT_INITIAL) this.free.push(Buffer.from(backing, 0, backing.byteLength));
    // A gzip member ends with the CRC-32 of its data and the data's length.
    this.members.push({ sha256: m.sha256, size: m.size, offset: this.offset, csize: m.data.length, crc: m.data.readUInt32LE(m.data.length - 8), fp: m.fp, csha: m.csha });
    this.offset += m.data.length;
    if (m.reused) this.reused++;
    // Several members are written (and hashed into the blob's digest) at once; a few in flight are enough.
    const write = this.out.append(m.data);
    write.catch(() => undefined); // met below, or by finish()/abandon()
    this.writes.push(write);
    while (this.writes.length > WRITES_IN_FLIGHT) await this.writes.shift();
  }
}

/** Member writes in flight at once. */
const WRITES_IN_FLIGHT = 8;

/** The error a failed fill stands for: a file that changed size while archived, or the failed call's. */
function fillError(e: SegmentFillError, spans: SegmentSpan[], names: string[]): Error {
  const name = names[e.item] ?? '?';
  if (e.syscall === 'shrank' || e.syscall === 'grew') return new TarFormatError(`${name} ${e.syscall} while being archived`);
  if (e.syscall === 'sha256' || spans[e.item] === undefined) return e;
  const code = getSystemErrorName(-e.errno);
  const path = spans[e.item].path;
  return Object.assign(new Error(`${code}: ${e.message.replace(/^\w+: /, '')}, ${e.syscall} '${path}'`), { code, errno: -e.errno, syscall: e.syscall, path });
}

const padding = (size: number) => (BLOCK - (size % BLOCK)) % BLOCK;
