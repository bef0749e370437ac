// Typed access to the native addon in fsx.c (xattrs, mknod and in-kernel copies, which Node's fs lacks) and
// segment.c (layer segments read and hashed on the threadpool) and clone.c (a snapshot tree hard-linked on
// the threadpool).
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import fs from 'node:fs';
import { getSystemErrorName } from 'node:util';

interface FsxBinding {
  list(path: string): string[];
  get(path: string, name: string): Buffer | null;
  set(path: string, name: string, value: Buffer): void;
  remove(path: string, name: string): void;
  mknod(path: string, mode: number, major: number, minor: number): void;
  copyRange(inFd: number, outFd: number, length: number): number;
  exchange(a: string, b: string): void;
  scanDir(dir: string, xattrs?: boolean): { names: string[]; stats: Float64Array };
  cloneTree(from: string, to: string): Promise<boolean>;
  fillSegment(buf: Buffer, paths: string[], spans: Float64Array, hash: boolean, fingerprint: boolean, diff?: OrderedHashHandle, ticket?: number): Promise<{ sha256?: Buffer; fingerprint?: Buffer; hashed?: number }>;
  orderedHashCreate(): OrderedHashHandle;
  orderedHashDigest(h: OrderedHashHandle, pieces: number): Buffer;
  writeAt(fd: number, buf: Buffer, offset: number, hash?: OrderedHashHandle, ticket?: number): Promise<number>;
}

declare const orderedHash: unique symbol;
type OrderedHashHandle = { [orderedHash]: true };

function locateAddon(): string {
  // Compiled JS lives in dist/src/native (the bundled CLI in dist/src/cli, as deep); the addon is built in
  // src/native/build by `npm ci`.
  const here = path.dirname(fileURLToPath(import.meta.url));
  const candidates = [
    path.join(here, 'build/Release/fsx.node'),
    path.resolve(here, '../../../src/native/build/Release/fsx.node'),
  ];
  const found = candidates.find((p) => fs.existsSync(p));
  if (!found) throw new Error(`native addon fsx.node not built (run npm ci); looked in ${candidates.join(', ')}`);
  return found;
}

const binding = createRequire(import.meta.url)(locateAddon()) as FsxBinding;

/** Names of the extended attributes of a path (not following symlinks). */
export const listXattrs = (p: string): string[] => binding.list(p);
/** Value of one extended attribute, or null when it is not set. */
export const getXattr = (p: string, name: string): Buffer | null => binding.get(p, name);
export const setXattr = (p: string, name: string, value: Buffer): void => binding.set(p, name, value);
export const removeXattr = (p: string, name: string): void => binding.remove(p, name);

export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;
export const S_IFIFO = 0o010000;
/** mknod(2); `mode` carries the file type bits. */
export const mknod = (p: string, mode: number, major: number, minor: number): void =>
  binding.mknod(p, mode, major, minor);

/**
 * Copies up to `length` bytes from `inFd`'s position to `outFd`'s inside the kernel (both positions
 * advance); returns the bytes copied, fewer only at the end of the input.
 */
export const copyRange = (inFd: number, outFd: number, length: number): number => {
  try {
    return binding.copyRange(inFd, outFd, length);
  } catch (e) {
    throw withErrnoCode(e);
  }
};

/**
 * The addon names only a few errnos and calls the rest EIO: the code from the errno it carries, so that
 * callers can tell ENOSPC (a full disk) from an I/O error.
 */
function withErrnoCode(e: unknown): unknown {
  const errno = (e as { errno?: unknown })?.errno;
  if (typeof errno === 'number' && errno !== 0) {
    try {
      (e as { code?: string }).code = getSystemErrorName(-Math.abs(errno));
    } catch {
      // not an errno this system knows
    }
  }
  return e;
}

/** Numbers scanDir gives per entry, at these offsets. */
export const Scan = {
  mode: 0, uid: 1, gid: 2, size: 3, mtime: 4, nlink: 5, dev: 6, ino: 7, rdevMajor: 8, rdevMinor: 9, xattrs: 10, opaque: 11,
  mtimeNsec: 12, ctime: 13, ctimeNsec: 14, blocks: 15, fields: 16,
} as const;

/**
 * A directory's entries (in readdir order) with, per entry, `Scan.fields` numbers from lstat (times in
 * seconds and nanoseconds) and its extended attributes: `xattrs` is 1 when it has some beside overlay's
 * trusted.overlay.*, 2 when it has too many names to tell (read them, and the opaque mark, directly);
 * `opaque` is 1 for a directory overlay marks opaque (both 0 with `xattrs: false`, which skips asking).
 * One call per directory.
 */
export const scanDir = (dir: string, opts: { xattrs?: boolean } = {}): { names: string[]; stats: Float64Array } =>
  binding.scanDir(dir, opts.xattrs ?? true);

/** The part of fs.Stats a directory scan gives, for code that takes either. */
export type ScannedStats = Pick<fs.Stats,
  'isFile' | 'isDirectory' | 'isSymbolicLink' | 'mode' | 'uid' | 'gid' | 'size' | 'nlink' | 'ino' | 'mtimeMs' | 'ctimeMs'>;

/** Entry `i` of a scan as stats; times in milliseconds computed as fs.Stats computes `mtimeMs`/`ctimeMs`. */
export function scannedStats(stats: Float64Array, i: number): ScannedStats {
  const o = i * Scan.fields;
  const mode = stats[o + Scan.mode];
  const kind = mode & fs.constants.S_IFMT;
  const ms = (sec: number, nsec: number) => sec * 1e3 + nsec / 1e6;
  return {
    isFile: () => kind === fs.constants.S_IFREG,
    isDirectory: () => kind === fs.constants.S_IFDIR,
    isSymbolicLink: () => kind === fs.constants.S_IFLNK,
    mode, uid: stats[o + Scan.uid], gid: stats[o + Scan.gid], size: stats[o + Scan.size], nlink: stats[o + Scan.nlink],
    ino: stats[o + Scan.ino],
    mtimeMs: ms(stats[o + Scan.mtime], stats[o + Scan.mtimeNsec]), ctimeMs: ms(stats[o + Scan.ctime], stats[o + Scan.ctimeNsec]),
  };
}

/**
 * Swaps two paths atomically (renameat2 RENAME_EXCHANGE). Throws (code ENOENT, EINVAL, ENOSYS, ...) when a
 * path is missing or the filesystem cannot.
 */
export const exchange = (a: string, b: string): void => binding.exchange(a, b);

/**
 * Rebuilds the tree `from` in the existing empty directory `to` on the threadpool: directories made with
 * the same owner, mode, extended attributes (not overlay's) and times, everything else hard-linked.
 * False when the tree has an overlay whiteout or opaque directory (`to` is then left part-made).
 */
export const cloneTree = (from: string, to: string): Promise<boolean> => binding.cloneTree(from, to);

/** A file span to read into a segment buffer: `length` bytes from `fileOffset` to `bufOffset`. */
export interface SegmentSpan {
  path: string;
  bufOffset: number;
  fileOffset: number;
  length: number;
  /** The span ends the file: a byte past it means the file grew. */
  end: boolean;
}

/** Why fillSegment failed: a call's errno, or a file that no longer has the size it was listed with. */
export interface SegmentFillError extends Error {
  syscall: 'open' | 'read' | 'shrank' | 'grew' | 'sha256';
  errno: number;
  /** Index of the span it failed on. */
  item: number;
}

/**
 * Reads the spans (in buffer order) into `buf` on the threadpool, then returns, as asked, the sha256 of
 * the whole of `buf` and its fingerprint: a sha256 of the bytes between the spans and of each span's
 * inode (device, number, birth time, size, mtime) and place in it, which stands for the bytes of files
 * never written again (a committed snapshot's). No fingerprint where the filesystem keeps no birth time.
 * `buf` must not be touched until the promise settles.
 */
export function fillSegment(
  buf: Buffer, spans: SegmentSpan[], opts: { hash: boolean; fingerprint?: boolean; diff?: OrderedPiece },
): Promise<{ sha256?: Buffer; fingerprint?: Buffer }> {
  const nums = new Float64Array(spans.length * 4);
  spans.forEach((s, i) => nums.set([s.bufOffset, s.fileOffset, s.length, s.end ? 1 : 0], i * 4));
  const { diff } = opts;
  const job = binding.fillSegment(buf, spans.map((s) => s.path), nums, opts.hash, opts.fingerprint ?? false, diff?.hash.handle, diff?.ticket);
  return diff ? diff.hash.track(job, diff.ticket) : job;
}

/** Writes all of `buf` at `offset` of `fd` on the threadpool, then hands it to `piece`'s ordered hash. */
export function writeAt(fd: number, buf: Buffer, offset: number, piece?: OrderedPiece): Promise<void> {
  const job = binding.writeAt(fd, buf, offset, piece?.hash.handle, piece?.ticket).then((hashed) => ({ hashed }), (e: unknown) => { throw withErrnoCode(e); });
  return (piece ? piece.hash.track(job, piece.ticket) : job).then(() => undefined);
}

/** One piece of an ordered hash: the hash, and the piece's place in it. */
export interface OrderedPiece { hash: OrderedSha256; ticket: number }

/**
 * A sha256 over pieces that threadpool jobs (fillSegment, writeAt) hand in out of order: each piece has a
 * ticket, and the native side hashes pieces in ticket order as they arrive, with no round trip through
 * the main thread. A piece's memory must stay untouched until `passed(ticket)` settles.
 */
export class OrderedSha256 {
  /** @internal */
  readonly handle = binding.orderedHashCreate();
  private issued = 0;
  private hashed = 0;
  /** The first piece that will never be hashed, and why. */
  private failedAt = Infinity;
  private failure: Error | null = null;
  private waiters: { ticket: number; resolve: () => void; reject: (e: Error) => void }[] = [];

  /** The place of the next piece. */
  ticket(): number {
    return this.issued++;
  }

  /** Settles once the hash has taken in piece `ticket`; rejects if that piece or one before it never comes. */
  passed(ticket: number): Promise<void> {
    if (ticket < this.hashed) return Promise.resolve();
    if (ticket >= this.failedAt) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => this.waiters.push({ ticket, resolve, reject }));
  }

  /** The digest of every piece handed out, once they are all hashed. */
  async digest(): Promise<Buffer> {
    if (this.issued > 0) await this.passed(this.issued - 1);
    return binding.orderedHashDigest(this.handle, this.issued);
  }

  /**
   * @internal Follows the job carrying piece `ticket`: its end says how far the hash got; if it fails, the
   * pieces from it on are never hashed (those before it still are).
   */
  track<T extends { hashed?: number }>(job: Promise<T>, ticket: number): Promise<T> {
    return job.then((r) => {
      if (r.hashed === -1) {
        // The native side could not keep a piece waiting for its turn (out of memory): nothing more is hashed.
        const e = new Error('sha256: a piece could not be taken in');
        this.fail(this.hashed, e);
        throw e;
      }
      if (r.hashed !== undefined && r.hashed > this.hashed) {
        this.hashed = r.hashed;
        const ready = this.waiters.filter((w) => w.ticket < r.hashed!);
        this.waiters = this.waiters.filter((w) => w.ticket >= r.hashed!);
        for (const w of ready) w.resolve();
      }
      return r;
    }, (e: Error) => {
      this.fail(ticket, e);
      throw e;
    });
  }

  private fail(at: number, e: Error): void {
    if (at < this.failedAt) {
      this.failedAt = at;
      this.failure = e;
    }
    const lost = this.waiters.filter((w) => w.ticket >= this.failedAt);
    this.waiters = this.waiters.filter((w) => w.ticket < this.failedAt);
    for (const w of lost) w.reject(this.failure!);
  }
}
