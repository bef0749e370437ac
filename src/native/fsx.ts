// Typed access to the native addon in fsx.c (xattrs, mknod and in-kernel copies, which Node's fs lacks) and
// segment.c (layer segments read and hashed on the threadpool) and clone.c (a snapshot tree hard-linked on
// the threadpool). The addon is a prebuilt binary (prebuilds/, scripts/prebuild.sh) or the package's own
// build, loaded on first use (loadAddon).
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import fs from 'node:fs';
import { UserError } from '../util/errors.js';
import { getSystemErrorName } from 'node:util';
import type { Digest } from '../../solver/llb/ops.js';

export interface FsxBinding {
  list(path: string): string[];
  get(path: string, name: string): Buffer | null;
  set(path: string, name: string, value: Buffer): void;
  remove(path: string, name: string): void;
  mknod(path: string, mode: number, major: number, minor: number): void;
  copyRange(inFd: number, outFd: number, length: number): number;
  exchange(a: string, b: string): void;
  scanDir(dir: string, xattrs?: boolean): { names: string[]; stats: Float64Array };
  /** Absent from builds older than scan.c: scanDirs and loadScanIndex then do without (below). */
  scanDirs?(root: string, rels: string[], xattrs: boolean, index: ScanIndexHandle | null, headers?: string[]): Promise<NativeScanBatch>;
  loadScanIndex?(file: string): { index: ScanIndexHandle; loaded: Promise<ScanIndexKind> };
  releaseScanIndex?(index: ScanIndexHandle): void;
  cloneTree(from: string, to: string): Promise<boolean>;
  /** Absent from prebuilds older than mount.c: callers fall back to mount(8) (nativeMount). */
  mount?(source: string | null, target: string, fstype: string | null, flags: number, data: string | null, cwd: string | null): Promise<void>;
  umount?(target: string, flags: number): Promise<void>;
  fillSegment(buf: Buffer, paths: string[], spans: Float64Array, hash: boolean, fingerprint: boolean, diff?: OrderedHashHandle, ticket?: number): Promise<{ sha256?: Buffer; fingerprint?: Buffer; hashed?: number }>;
  orderedHashCreate(): OrderedHashHandle;
  orderedHashDigest(h: OrderedHashHandle, pieces: number): Buffer;
  writeAt(fd: number, buf: Buffer, offset: number, hash?: OrderedHashHandle, ticket?: number): Promise<number>;
  sha256Backend(): 'openssl' | 'portable';
  /** Prebuilds only (scripts/prebuild.sh): the digest of the sources they were compiled from. */
  sourceDigest?: string;
}

declare const orderedHash: unique symbol;
type OrderedHashHandle = { [orderedHash]: true };
declare const scanIndex: unique symbol;
type ScanIndexHandle = { [scanIndex]: true };
interface NativeScanBatch { counts: Uint32Array; names: string; stats: Float64Array; known?: Uint8Array; digests?: string; dirDigests?: string }

/** The addon cannot be loaded here: reported as one line naming the platform, the ABI and the fix. */
export class NativeAddonError extends UserError {
  constructor(message: string) {
    super('NATIVE_ADDON', message);
  }
}

/** What a prebuild has to fit: the values node-gyp-build matches prebuild tags against. */
export interface AddonTarget {
  platform: string;
  arch: string;
  /** 'glibc' or 'musl' on Linux. */
  libc: string;
}

function hostLibc(): string {
  if (process.platform !== 'linux') return '';
  try {
    // As detect-libc tells them apart cheaply (a process report costs ~5 ms of every CLI start): glibc's
    // ldd is a script naming it, musl's a link to musl's loader.
    const ldd = fs.readFileSync('/usr/bin/ldd', 'latin1');
    if (ldd.includes('musl')) return 'musl';
    if (ldd.includes('GNU C Library')) return 'glibc';
  } catch { /* no ldd: ask the process */ }
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
  return header?.glibcVersionRuntime ? 'glibc' : 'musl';
}

/**
 * The files the addon is loaded from, in order, as node-gyp-build looks (prebuildify's layout): the
 * package's own build (`node-gyp rebuild --directory src/native`, scripts/install-native.mjs), then the
 * prebuilds in `prebuilds/<platform>-<arch>/` whose tags fit — Node-API ones (`napi`) for the `node`
 * runtime, of this libc when tagged with one (scripts/prebuild.sh makes `node.napi.glibc.node`), the most
 * specific first. Only files that exist.
 */
export function addonCandidates(root: string, target: AddonTarget): string[] {
  const found: string[] = [];
  const build = path.join(root, 'src/native/build/Release/fsx.node');
  if (fs.existsSync(build)) found.push(build);
  const dirs = readdir(path.join(root, 'prebuilds'))
    .map((name) => ({ name, parts: name.split('-') }))
    .filter(({ parts }) => parts.length === 2 && parts[0] === target.platform && parts[1].split('+').includes(target.arch))
    // A single-arch directory before a universal one.
    .sort((a, b) => a.parts[1].split('+').length - b.parts[1].split('+').length);
  for (const { name } of dirs) {
    const fits = readdir(path.join(root, 'prebuilds', name)).flatMap((file) => {
      const tags = file.split('.');
      if (tags.pop() !== 'node') return [];
      let specificity = 0;
      let napi = false;
      for (const tag of tags) {
        if (tag === 'napi') napi = true;
        else if (tag === 'node' || tag === 'electron' || tag === 'node-webkit') { if (tag !== 'node') return []; }
        else if (tag === 'glibc' || tag === 'musl') { if (tag !== target.libc) return []; }
        // ABI-specific (abiNN), libuv (uvN) and ARM-version (armvN) builds are not made for this addon.
        else if (/^(abi|uv|armv)\d+$/.test(tag)) return [];
        else continue;
        specificity++;
      }
      return napi ? [{ file, specificity }] : [];
    });
    fits.sort((a, b) => b.specificity - a.specificity);
    found.push(...fits.map((f) => path.join(root, 'prebuilds', name, f.file)));
  }
  return found;
}

function readdir(dir: string): string[] {
  try {
    return fs.readdirSync(dir).sort();
  } catch {
    return [];
  }
}

/** The package's root: the nearest directory above this module with a package.json (dist/src/native, the
 * bundled CLI's dist/src/cli, or src/native when run from source). */
function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!fs.existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
    dir = up;
  }
  return dir;
}

/** Loads the first candidate that loads; else a NativeAddonError saying why, and what to do. */
export function loadAddon(root = packageRoot(), target: AddonTarget = { platform: process.platform, arch: process.arch, libc: hostLibc() }): FsxBinding {
  const require = createRequire(import.meta.url);
  const failures: string[] = [];
  for (const file of addonCandidates(root, target)) {
    try {
      return require(file) as FsxBinding;
    } catch (e) {
      // dlopen's reason is on the first line (e.g. a missing symbol version); the rest is a stack.
      failures.push(`${path.relative(root, file)}: ${String((e as Error).message).split('\n')[0]}`);
    }
  }
  let name = 'builder';
  try {
    name = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).name ?? name;
  } catch { /* the default */ }
  const where = `${target.platform}-${target.arch}${target.libc ? ` (${target.libc})` : ''}`;
  const why = failures.length ? failures.join('; ') : `no prebuild in prebuilds/${target.platform}-${target.arch} fits and src/native is not built`;
  throw new NativeAddonError(
    `the native addon (fsx.node) cannot be loaded on ${where}, Node ${process.versions.node}, Node-API ${process.versions.napi}: ${why}; ` +
    `to compile it, install a C compiler, make and python3, then run \`npm rebuild ${name}\``,
  );
}

let loaded: FsxBinding | undefined;
/** The addon, loaded on first use: commands that never touch files (--help, imagetools, login) run without it. */
function addon(): FsxBinding {
  return (loaded ??= loadAddon());
}

/** Loads the addon now (a NativeAddonError if it cannot be), for code about to depend on it. */
export function ensureAddon(): void {
  addon();
}

/** Which SHA-256 the addon hashes with: OpenSSL's from the Node process, or its portable one (sha256.c). */
export const sha256Backend = (): 'openssl' | 'portable' => addon().sha256Backend();

/** Names of the extended attributes of a path (not following symlinks). */
export const listXattrs = (p: string): string[] => addon().list(p);
/** Value of one extended attribute, or null when it is not set. */
export const getXattr = (p: string, name: string): Buffer | null => addon().get(p, name);
export const setXattr = (p: string, name: string, value: Buffer): void => addon().set(p, name, value);
export const removeXattr = (p: string, name: string): void => addon().remove(p, name);

export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;
export const S_IFIFO = 0o010000;
/** mknod(2); `mode` carries the file type bits. */
export const mknod = (p: string, mode: number, major: number, minor: number): void =>
  addon().mknod(p, mode, major, minor);

/**
 * Copies up to `length` bytes from `inFd`'s position to `outFd`'s inside the kernel (both positions
 * advance); returns the bytes copied, fewer only at the end of the input.
 */
export const copyRange = (inFd: number, outFd: number, length: number): number => {
  try {
    return addon().copyRange(inFd, outFd, length);
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
 * A directory's entries (in readdir order; names that are not UTF-8 as src/util/names.ts carries them) with, per entry, `Scan.fields` numbers from lstat (times in
 * seconds and nanoseconds) and its extended attributes: `xattrs` is 1 when it has some beside overlay's
 * trusted.overlay.*, 2 when it has too many names to tell (read them, and the opaque mark, directly);
 * `opaque` is 1 for a directory overlay marks opaque (both 0 with `xattrs: false`, which skips asking).
 * One call per directory.
 */
export const scanDir = (dir: string, opts: { xattrs?: boolean } = {}): { names: string[]; stats: Float64Array } =>
  addon().scanDir(dir, opts.xattrs ?? true);

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
 * Directories scanned as scanDir scans one, in one job on the threadpool: `root` joined with each of `rels`
 * ('' for root itself). Entries come directory by directory, `counts[k]` of them for `rels[k]`, each
 * directory's in the order of their name bytes (which is JavaScript's string order unless a name has
 * characters past U+FFFF or bytes that are not UTF-8); `names[i]` and `Scan.fields` numbers from `stats`
 * at `i * Scan.fields` per entry. With an index (openScanIndex) of rows, `known[i]` is 1 when it has a row
 * for the file at rel/name with its size, mtimeMs, ctimeMs and ino, 2 when it has one with other values,
 * else 0; each entry with `known` set takes the next 64 characters of `digests` (the row's hex digest).
 * With the index and `headers` (each directory's own record header, src/worker/contenthash.ts),
 * `dirDigests[k]` is the digest of directory k's record (its header, then a line per entry) when all its
 * entries are files the index knows (1), as contenthash makes it: a leaf directory's digest off the main
 * thread. Rejects with the first directory that cannot be read.
 */
export async function scanDirs(root: string, rels: string[], opts: { xattrs?: boolean; index?: ScanIndex | null; headers?: string[] } = {}): Promise<ScanBatch> {
  const a = addon();
  const xattrs = opts.xattrs ?? true;
  if (!a.scanDirs) {
    // An addon built before scan.c: one synchronous scan per directory.
    const counts = new Uint32Array(rels.length);
    const names: string[] = [];
    const parts: Float64Array[] = [];
    rels.forEach((rel, k) => {
      const scan = a.scanDir(rel ? `${root}/${rel}` : root, xattrs);
      counts[k] = scan.names.length;
      names.push(...scan.names);
      parts.push(scan.stats);
    });
    const stats = new Float64Array(names.length * Scan.fields);
    let at = 0;
    for (const p of parts) {
      stats.set(p, at);
      at += p.length;
    }
    return { counts, names, stats };
  }
  let batch: NativeScanBatch;
  try {
    const index = opts.index?.handle() ?? null;
    batch = await (index && opts.headers ? a.scanDirs(root, rels, xattrs, index, opts.headers) : a.scanDirs(root, rels, xattrs, index));
  } catch (e) {
    throw withErrnoCode(e);
  }
  const dirDigests = batch.dirDigests === undefined ? undefined
    : rels.map((_, k) => (batch.dirDigests!.charCodeAt(k * 71) === 0x2d ? undefined : batch.dirDigests!.slice(k * 71, (k + 1) * 71) as Digest));
  return { counts: batch.counts, names: batch.names.split('/'), stats: batch.stats, known: batch.known, digests: batch.digests, dirDigests };
}

export interface ScanBatch {
  counts: Uint32Array;
  names: string[];
  stats: Float64Array;
  known?: Uint8Array;
  digests?: string;
  dirDigests?: (Digest | undefined)[];
}

/** A context's metadata index parsed on the threadpool, for scanDirs to look files up in. */
export class ScanIndex {
  private h: ScanIndexHandle | null;
  constructor(h: ScanIndexHandle) {
    this.h = h;
  }

  /** @internal */
  handle(): ScanIndexHandle | null {
    return this.h;
  }

  /** Frees it now (once the scans using it end) instead of when collected. */
  release(): void {
    if (this.h) addon().releaseScanIndex!(this.h);
    this.h = null;
  }
}

/** What an index file held: rows to look up, nothing (no file, or an empty one), or another format. */
export type ScanIndexKind = 'lines' | 'none' | 'other';

/**
 * The index file of src/worker/contenthash.ts, loaded on the threadpool meanwhile: scans queued after
 * this call wait for it before their first lookup. `loaded` says what it held ('other': read it
 * yourself; a line it cannot parse is left out, and that file is read again). Null when this addon
 * cannot.
 */
export function openScanIndex(file: string): { index: ScanIndex; loaded: Promise<ScanIndexKind> } | null {
  const a = addon();
  if (!a.loadScanIndex || !a.scanDirs) return null;
  const { index, loaded } = a.loadScanIndex(file);
  return { index: new ScanIndex(index), loaded };
}

/**
 * Swaps two paths atomically (renameat2 RENAME_EXCHANGE). Throws (code ENOENT, EINVAL, ENOSYS, ...) when a
 * path is missing or the filesystem cannot.
 */
export const exchange = (a: string, b: string): void => addon().exchange(a, b);

/**
 * Rebuilds the tree `from` in the existing empty directory `to` on the threadpool: directories made with
 * the same owner, mode, extended attributes (not overlay's) and times, everything else hard-linked.
 * False when the tree has an overlay whiteout or opaque directory (`to` is then left part-made).
 */
export const cloneTree = (from: string, to: string): Promise<boolean> => addon().cloneTree(from, to);

/** mount(2)'s flags that src/snapshot/mount.ts uses, and umount2(2)'s MNT_DETACH. */
export const MS_RDONLY = 1;
export const MS_REMOUNT = 32;
export const MS_BIND = 4096;
export const MNT_DETACH = 2;

/**
 * mount(2) and umount2(2) on the threadpool (mount.c); `cwd` is the directory relative paths in `data`
 * are resolved from (for this one call: the process's own working directory does not change). Null when
 * the addon cannot be loaded or predates them: the caller runs mount(8)/umount(8) instead.
 */
export function nativeMount(): Pick<Required<FsxBinding>, 'mount' | 'umount'> | null {
  let a: FsxBinding;
  try {
    a = addon();
  } catch {
    return null;
  }
  return typeof a.mount === 'function' && typeof a.umount === 'function' ? (a as Required<FsxBinding>) : null;
}

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
  if (diff) diff.hash.keep(diff.ticket, buf);
  const job = addon().fillSegment(buf, spans.map((s) => s.path), nums, opts.hash, opts.fingerprint ?? false, diff?.hash.handle, diff?.ticket);
  return diff ? diff.hash.track(job, diff.ticket) : job;
}

/** Writes all of `buf` at `offset` of `fd` on the threadpool, then hands it to `piece`'s ordered hash. */
export function writeAt(fd: number, buf: Buffer, offset: number, piece?: OrderedPiece): Promise<void> {
  if (piece) piece.hash.keep(piece.ticket, buf);
  const job = addon().writeAt(fd, buf, offset, piece?.hash.handle, piece?.ticket).then((hashed) => ({ hashed }), (e: unknown) => { throw withErrnoCode(e); });
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
  readonly handle = addon().orderedHashCreate();
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

  /**
   * Keeps piece `ticket`'s buffer alive until the hash has passed it. The native side holds only a pointer
   * to a piece that waits for an earlier one, and its job (which held the buffer) may end first: a buffer
   * collected meanwhile was hashed as whatever took its memory, and the blob was named for bytes it did
   * not hold (seen under load: a layer blob that did not hash to its name).
   */
  keep(ticket: number, buf: Buffer): void {
    this.passed(ticket).then(() => buf, () => buf);
  }

  /** The digest of every piece handed out, once they are all hashed. */
  async digest(): Promise<Buffer> {
    if (this.issued > 0) await this.passed(this.issued - 1);
    return addon().orderedHashDigest(this.handle, this.issued);
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
