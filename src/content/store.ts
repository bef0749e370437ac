// Content-addressed blob store: `<root>/blobs/sha256/<hex>`. A blob is hashed while it streams to a temp
// file in `<root>/blobs/tmp/`, synced, verified, then renamed into place, so a path under sha256/ always
// holds complete content matching its name. A gzip layer blob made here may have a member index beside it,
// `<root>/members/<hex>.json` (see src/archive/segmented.ts), written after its blob and removed before it.
// A layer blob's unpacked size (what its files hold, as Docker counts a layer's size) is kept in
// `<root>/unpacked/<hex>` the same way, once known.
// A blob's mtime is when it was last written or reused (touch): the garbage collector keeps a blob nothing
// references for a while after that (src/cache/gc.ts), so a writer that has not recorded it yet keeps it.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Digest } from '../../solver/llb/ops.js';
import { BuilderError, UserError } from '../util/errors.js';
import { SMALL_WRITE, publishSmall, writeFileAtomic } from '../util/fs.js';
import { isAlive } from '../util/pidlock.js';
import { OrderedSha256, writeAt } from '../native/fsx.js';

export interface Expected {
  digest?: Digest;
  size?: number;
}

export interface BlobInfo {
  digest: Digest;
  size: number;
}

/** Content did not hash or measure to what its descriptor promised (a corrupt download, a tampered blob). */
export class DigestMismatchError extends UserError {
  constructor(message: string) { super('DIGEST_MISMATCH', message); }
}

export class InvalidDigestError extends BuilderError {
  constructor(d: string) { super('INVALID_DIGEST', `invalid digest ${JSON.stringify(d)}`); }
}

export class BlobNotFoundError extends BuilderError {
  constructor(d: Digest) { super('BLOB_NOT_FOUND', `content ${d} not found`); }
}

/** A stored blob no longer hashes to its name (damaged on disk); it has been removed from the store. */
export class CorruptBlobError extends UserError {
  constructor(readonly digest: Digest, what = 'content') {
    super('CORRUPT_BLOB', `${what} ${digest} in the state directory is corrupt (does not hash to its digest); it was removed, run the build again`);
  }
}

/** One gzip member of a blob: sha256 and length of its uncompressed data, where it lies in the blob. */
export interface MemberRecord {
  sha256: string;
  size: number;
  offset: number;
  csize: number;
  /** CRC-32 of the uncompressed segment, as in the member's trailer (absent in indexes made before it). */
  crc?: number;
  /** The segment's fingerprint (see fillSegment in src/native/fsx.ts), where the filesystem allowed one. */
  fp?: string;
  /** sha256 of the compressed member: a member is copied into a new blob only if its bytes still have it. */
  csha?: string;
}

/** The members of a segmented gzip blob, and what made them (members are reusable only under the same). */
export interface MemberIndex {
  version: 1;
  level: number;
  zlib: string;
  members: MemberRecord[];
}

const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;

/** Blobs up to this size are hashed from one synchronous read (see hashFile). */
const HASH_AT_ONCE = 4 << 20;

/**
 * A sink for one blob. Write (or pipe) into it, then `commit()` to verify and publish it; `abort()` drops
 * the temp file. Nothing becomes visible under the blob's name unless `commit` succeeds.
 */
export class BlobWriter extends Writable {
  // Written and hashed on the threadpool, several pieces at once (append): a layer's megabytes through
  // the main thread one chunk at a time held the layer's making back.
  private readonly hash = new OrderedSha256();
  private size = 0;
  private handle: fsp.FileHandle | null = null;
  private readonly opened: Promise<fsp.FileHandle>;
  private readonly inFlight = new Set<Promise<void>>();
  private failed: Error | null = null;
  private committed = false;

  constructor(private readonly store: ContentStore, private readonly tmp: string) {
    // Not auto-destroyed on finish: commit() still needs the temp file after the stream ends.
    super({ autoDestroy: false });
    this.opened = fsp.open(this.tmp, 'wx');
    this.opened.catch(() => undefined); // met by _construct
  }

  override _construct(cb: (err?: Error | null) => void): void {
    this.opened.then((h) => { this.handle = h; cb(); }, cb);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.append(chunk).then(() => cb(), cb);
  }

  /**
   * Writes `chunk` after everything written or appended before it, without waiting for those: pieces go
   * to the file and the hash in parallel. `chunk` must not change until the returned promise settles.
   */
  append(chunk: Buffer): Promise<void> {
    const offset = this.size;
    this.size += chunk.length;
    const piece = { hash: this.hash, ticket: this.hash.ticket() };
    const p = this.opened.then((h) => writeAt(h.fd, chunk, offset, piece)).catch((e: Error) => {
      this.failed ??= e;
      throw e;
    });
    this.inFlight.add(p);
    const done = () => this.inFlight.delete(p);
    p.then(done, done);
    return p;
  }

  /** Settles when no write is running (they hold the file's descriptor); the first failure, if any. */
  private async drained(): Promise<void> {
    while (this.inFlight.size) await Promise.allSettled([...this.inFlight]);
    if (this.failed) throw this.failed;
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.drained().then(() => {
      const h = this.handle!;
      this.handle = null;
      return h.sync().then(() => h.close(), (e: Error) => { h.close().catch(() => undefined); throw e; });
    }).then(() => cb(), (e: Error) => cb(e));
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.drained().catch(() => undefined).then(() => {
      const h = this.handle;
      this.handle = null;
      return h?.close().catch(() => undefined);
    }).then(() => cb(err));
  }

  /** Ends the stream if needed, verifies against `expected` and moves the blob into place. */
  async commit(expected?: Expected): Promise<BlobInfo> {
    try {
      if (!this.writableEnded) this.end();
      await new Promise<void>((resolve, reject) => {
        if (this.writableFinished) return resolve();
        this.once('finish', resolve);
        this.once('error', reject);
      });
      const digest = `sha256:${(await this.hash.digest()).toString('hex')}` as Digest;
      if (expected?.digest !== undefined && expected.digest !== digest) {
        throw new DigestMismatchError(`unexpected commit digest ${digest}, expected ${expected.digest}: failed precondition`);
      }
      if (expected?.size !== undefined && expected.size !== this.size) {
        throw new DigestMismatchError(`unexpected commit size ${this.size}, expected ${expected.size}: failed precondition`);
      }
      const final = this.store.blobPath(digest);
      // The bytes were synced before the rename (_final), so the name never points at a torn blob; the
      // directory is not synced after (as containerd's store): a rename a power cut loses leaves the blob
      // missing, which check() reports and the build makes or fetches again. A warm build writes a few
      // small blobs (provenance), each of which would otherwise wait for a journal commit.
      await fsp.rename(this.tmp, final);
      this.committed = true;
      this.store.written++;
      this.store.trust(digest);
      return { digest, size: this.size };
    } finally {
      if (!this.committed) await this.abort();
    }
  }

  async abort(): Promise<void> {
    if (!this.destroyed) {
      const closed = new Promise<void>((resolve) => this.once('close', () => resolve()));
      this.destroy();
      await closed;
    }
    await fsp.rm(this.tmp, { force: true });
  }
}

export class ContentStore {
  private ready: Promise<void> | null = null;
  /** Blobs this process wrote or hashed: their bytes matched their name (checking again costs a read). */
  private readonly verified = new Set<Digest>();
  private readonly verifying = new Map<Digest, Promise<'ok' | 'missing' | 'corrupt'>>();

  /** Told when a blob fails its check and is removed (so the build can say what it repaired). */
  onCorrupt?: (digest: Digest) => void;

  /** Blobs this instance committed (a build asks whether it added any: see contentCollectionDue). */
  written = 0;

  constructor(readonly root: string) {}

  /** @internal Marks a blob just written through a BlobWriter (hashed on its way in). */
  trust(d: Digest): void {
    this.verified.add(d);
  }

  /**
   * Whether the blob is here and hashes to its name. A blob that does not (a flipped byte, a truncated
   * file) is removed, with its member index, and reported as corrupt: whoever needs it makes or fetches it
   * again. Each blob is hashed at most once per process; blobs written by this process are not re-read.
   */
  check(d: Digest): Promise<'ok' | 'missing' | 'corrupt'> {
    if (this.verified.has(d)) return Promise.resolve('ok');
    let p = this.verifying.get(d);
    if (!p) {
      p = this.hashFile(d).then(async (actual) => {
        if (actual === null) return 'missing';
        if (actual === d) {
          this.verified.add(d);
          return 'ok';
        }
        await this.remove(d);
        this.onCorrupt?.(d);
        return 'corrupt';
      });
      const done = () => this.verifying.delete(d);
      p.then(done, done);
      this.verifying.set(d, p);
    }
    return p;
  }

  /** True when the blob is here and sound (see check). */
  async verify(d: Digest): Promise<boolean> {
    return (await this.check(d)) === 'ok';
  }

  /** Throws CorruptBlobError or BlobNotFoundError unless the blob is here and sound. */
  async ensureSound(d: Digest, what?: string): Promise<void> {
    const state = await this.check(d);
    if (state === 'corrupt') throw new CorruptBlobError(d, what);
    if (state === 'missing') throw new BlobNotFoundError(d);
  }

  private async hashFile(d: Digest): Promise<Digest | null> {
    let fd: number;
    try {
      fd = fs.openSync(this.blobPath(d), 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
    let size: number;
    try {
      size = fs.fstatSync(fd).size;
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
    const hash = createHash('sha256');
    // Documents and small layers in one read: a stream's turns and buffers cost more than the hashing
    // (a 1 MB layer: 3 ms read and hashed at once, 12 ms through a stream here).
    if (size <= HASH_AT_ONCE) {
      try {
        return `sha256:${hash.update(fs.readFileSync(fd)).digest('hex')}` as Digest;
      } finally {
        fs.closeSync(fd);
      }
    }
    await pipeline(fs.createReadStream('', { fd, highWaterMark: 1 << 20 }), hash);
    return `sha256:${hash.digest('hex')}` as Digest;
  }

  blobPath(d: Digest): string {
    if (!DIGEST_RE.test(d)) throw new InvalidDigestError(d);
    return path.join(this.root, 'blobs', 'sha256', d.slice('sha256:'.length));
  }

  async has(d: Digest): Promise<boolean> {
    return (await this.stat(d)) !== null;
  }

  async stat(d: Digest): Promise<{ size: number } | null> {
    try {
      const st = await fsp.stat(this.blobPath(d));
      return { size: st.size };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
  }

  /**
   * Marks a held blob as just used (its mtime: the garbage collector keeps unreferenced blobs for a while
   * after their last use, so one a writer found here and will record stays); false when it is not here.
   */
  async touch(d: Digest): Promise<boolean> {
    const now = new Date();
    try {
      await fsp.utimes(this.blobPath(d), now, now);
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      // A store this process may read but not change (another owner, read-only): held is all it can say.
      return this.has(d);
    }
  }

  /** The blob's bytes, checked against its digest (documents are small: the check is free). */
  async readBuffer(d: Digest): Promise<Buffer> {
    let data: Buffer;
    try {
      // One synchronous read: readFile's trips through the threadpool cost more than a document's bytes.
      data = fs.readFileSync(this.blobPath(d));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new BlobNotFoundError(d);
      throw e;
    }
    if (!this.verified.has(d)) {
      if (`sha256:${createHash('sha256').update(data).digest('hex')}` !== d) {
        await this.remove(d);
        this.onCorrupt?.(d);
        throw new CorruptBlobError(d);
      }
      this.verified.add(d);
    }
    return data;
  }

  /** Removes a blob and its member index (index first: an index never names a missing blob). */
  async remove(d: Digest): Promise<void> {
    this.verified.delete(d);
    await fsp.rm(this.memberIndexPath(d), { force: true });
    await fsp.rm(this.unpackedSizePath(d), { force: true });
    await fsp.rm(this.blobPath(d), { force: true });
  }

  unpackedSizePath(d: Digest): string {
    return path.join(this.root, 'unpacked', this.blobPath(d).slice(-64));
  }

  /**
   * A layer blob's unpacked size: the bytes of its files and symlinks (src/archive/layer.ts entrySize), as
   * Docker's layer store counts a layer (`docker history` SIZE, `inspect` Size). Undefined when not recorded.
   */
  async readUnpackedSize(d: Digest): Promise<number | undefined> {
    try {
      const n = Number((await fsp.readFile(this.unpackedSizePath(d), 'utf8')).trim());
      return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
    } catch {
      return undefined;
    }
  }

  /** Records a stored layer blob's unpacked size (see readUnpackedSize). */
  async writeUnpackedSize(d: Digest, size: number): Promise<void> {
    await writeFileAtomic(this.unpackedSizePath(d), String(size));
  }

  memberIndexPath(d: Digest): string {
    return path.join(this.root, 'members', `${this.blobPath(d).slice(-64)}.json`);
  }

  /** The blob's member index, or null when there is none (or it is unreadable, or its blob is gone). */
  async readMemberIndex(d: Digest): Promise<MemberIndex | null> {
    try {
      const index = JSON.parse(await fsp.readFile(this.memberIndexPath(d), 'utf8')) as MemberIndex;
      if (index.version !== 1 || !Array.isArray(index.members) || !(await this.has(d))) return null;
      return index;
    } catch {
      return null;
    }
  }

  /** Records a committed blob's member index. */
  async writeMemberIndex(d: Digest, index: MemberIndex): Promise<void> {
    await writeFileAtomic(this.memberIndexPath(d), JSON.stringify(index));
  }

  /** The blob's bytes, or the inclusive range `start..end` of them. */
  createReadStream(d: Digest, range?: { start: number; end: number }): fs.ReadStream {
    return fs.createReadStream(this.blobPath(d), range);
  }

  /**
   * Removes the temp files of writes a killed process never finished (named `<pid>-<hex>`: a live writer's,
   * such as an `imagetools create` beside a build, stay).
   */
  async cleanup(): Promise<void> {
    const dir = path.join(this.root, 'blobs', 'tmp');
    for (const name of await fsp.readdir(dir).catch(() => [] as string[])) {
      const pid = Number(/^(\d+)-/.exec(name)?.[1]);
      if (pid && pid !== process.pid && isAlive(pid)) continue;
      if (pid !== process.pid) await fsp.rm(path.join(dir, name), { force: true });
    }
  }

  /** A writer for a new blob; see BlobWriter. */
  async openWriter(): Promise<BlobWriter> {
    await this.ensureDirs();
    const tmp = path.join(this.root, 'blobs', 'tmp', `${process.pid}-${randomBytes(8).toString('hex')}`);
    return new BlobWriter(this, tmp);
  }

  /** Stores `data`, verifying it against `expected`; on mismatch nothing is stored. */
  async write(data: AsyncIterable<Uint8Array> | Uint8Array, expected?: Expected): Promise<BlobInfo> {
    if (expected?.digest !== undefined && !DIGEST_RE.test(expected.digest)) throw new InvalidDigestError(expected.digest);
    if (data instanceof Uint8Array && data.length <= SMALL_WRITE) return this.writeSmall(data, expected);
    const w = await this.openWriter();
    try {
      if (data instanceof Uint8Array) {
        await new Promise<void>((resolve, reject) => w.end(data, () => resolve()).once('error', reject));
      } else {
        await pipeline(data, w, { end: false });
      }
    } catch (e) {
      await w.abort();
      throw e;
    }
    return w.commit(expected);
  }

  /**
   * A document (manifest, config, index, provenance) already in memory: compared with the copy held under
   * its digest, else written, with synchronous calls but the fsync (see SMALL_WRITE). A no-op build stores
   * a handful of these, and each went through half a dozen threadpool round trips before.
   */
  private async writeSmall(data: Uint8Array, expected?: Expected): Promise<BlobInfo> {
    const digest = `sha256:${createHash('sha256').update(data).digest('hex')}` as Digest;
    if (expected?.digest !== undefined && expected.digest !== digest) {
      throw new DigestMismatchError(`unexpected commit digest ${digest}, expected ${expected.digest}: failed precondition`);
    }
    if (expected?.size !== undefined && expected.size !== data.length) {
      throw new DigestMismatchError(`unexpected commit size ${data.length}, expected ${expected.size}: failed precondition`);
    }
    const file = this.blobPath(digest);
    if (this.holdsSync(file, digest, data)) return { digest, size: data.length };
    await this.ensureDirs();
    await publishSmall(path.join(this.root, 'blobs', 'tmp', `${process.pid}-${randomBytes(8).toString('hex')}`), file, data);
    this.written++;
    this.verified.add(digest);
    return { digest, size: data.length };
  }

  /**
   * Whether `file` holds exactly `data` (then marked as just used, see touch). A same-size copy that
   * differs is damaged: reported, and replaced by the caller's write.
   */
  private holdsSync(file: string, digest: Digest, data: Uint8Array): boolean {
    let held: Buffer;
    try {
      const fd = fs.openSync(file, 'r');
      try {
        if (fs.fstatSync(fd).size !== data.length) return false;
        held = fs.readFileSync(fd);
      } finally {
        fs.closeSync(fd);
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw e;
    }
    if (!held.equals(data)) {
      this.verified.delete(digest);
      this.onCorrupt?.(digest);
      return false;
    }
    this.verified.add(digest);
    const now = new Date();
    try {
      fs.utimesSync(file, now, now);
    } catch (e) {
      // Removed since (a collection): written again. A store this process may only read: held is all it can say.
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    }
    return true;
  }

  private ensureDirs(): Promise<void> {
    this.ready ??= Promise.all([
      fsp.mkdir(path.join(this.root, 'blobs', 'sha256'), { recursive: true }),
      fsp.mkdir(path.join(this.root, 'blobs', 'tmp'), { recursive: true }),
    ]).then(() => undefined);
    return this.ready;
  }
}
