// The file op's actions (mkdir, mkfile, rm, copy) on a mounted root filesystem, with the semantics of
// BuildKit's file op backend and fsutil's copy: every path resolves inside its root as a chroot would,
// copies keep modes, times, symlinks, hardlinks and xattrs, and owners come from --chown or the source.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { ChownOpt, CopyAction, FileAction, MkdirAction, MkfileAction, RmAction } from '../../solver/llb/ops.js';
import { BuilderError, UserError } from '../util/errors.js';
import { copyRange, getXattr, listXattrs, mknod, scanDir, Scan, setXattr, S_IFBLK, S_IFCHR, S_IFIFO } from '../native/fsx.js';
import { inRootPath, resolveInRoot } from '../archive/rootpath.js';
import { goMatch, hasWildcard, PatternMatcher } from '../util/patterns.js';
import { resolveOwner } from './users.js';
import { isArchive, unpackArchive } from './unpack.js';
import { applySymbolicMode, parseSymbolicMode, type ModeSet } from '../../solver/llb/chmod.js';
import { Limiter } from '../util/limiter.js';
import { osPath, readdirNames, readdirNamesAsync, readlinkName } from '../util/names.js';

export class FileOpError extends UserError {}

interface Owner { uid: number; gid: number }

const notFound = (p: string) => new FileOpError('NOT_FOUND', `"${p}": not found`);

export interface ApplyOptions {
  rootOwned?: Set<number>;
  /** Where `--chown` names resolve (/etc/passwd, /etc/group) when `root` is not the whole filesystem. */
  ownerRoot?: string;
  /**
   * `root` already holds an earlier result of the same copy (hard links to a committed snapshot): files that
   * did not change since `unchangedBefore` (ms; by ctime, which no tool can set back) and whose size, time,
   * mode and owner already match are kept, anything else is replaced (never modified in place: the inode is
   * shared), and entries the source no longer has are removed. With `previous` (the snapshot `root` is being
   * cloned from) and `cloned` (settled when the clone is done), comparisons read `previous` while the clone
   * goes on, and every write to `root` waits for the clone.
   */
  refresh?: { unchangedBefore: number; previous?: string; cloned?: Promise<void> };
  /** Told about what the op did differently from what was asked (an owner name the image does not have). */
  warn?: (message: string) => void;
}

/**
 * Applies `actions` in order to `root` (a mounted writable rootfs). `sources[i]` is the directory of op
 * input i, which copy actions read from (`sourceInput` -1 is an empty filesystem).
 */
/**
 * `rootOwned`: source inputs whose files count as root's (a build context read in place: BuildKit's context
 * transfer gives every file 0:0), unless the copy sets an owner; archives extracted from them keep theirs.
 */
export async function applyFileActions(
  root: string, actions: FileAction[], sources: (string | null)[], opts: ApplyOptions = {},
): Promise<void> {
  if (opts.warn) {
    // Once per op: several actions may name the same owner.
    const warn = opts.warn;
    const said = new Set<string>();
    opts = { ...opts, warn: (m) => { if (!said.has(m)) { said.add(m); warn(m); } } };
  }
  for (const action of actions) {
    try {
      switch (action.action) {
        case 'mkdir': await mkdirAction(root, action, opts); break;
        case 'mkfile': await mkfileAction(root, action, opts); break;
        case 'rm': await rmAction(root, action); break;
        case 'copy': await copyAction(root, action, sources, opts.rootOwned?.has(action.sourceInput) ?? false, opts); break;
      }
    } catch (e) {
      throw asFileOpError(e, [root, ...sources.filter((s): s is string => s !== null)]);
    }
  }
}

/** System errors become one-line user errors naming paths as the build sees them, not host paths. */
function asFileOpError(e: unknown, roots: string[]): unknown {
  if (e instanceof BuilderError) return e;
  const err = e as NodeJS.ErrnoException;
  if (typeof err?.code !== 'string') return e;
  let message = err.message;
  for (const r of [...roots].sort((a, b) => b.length - a.length)) message = message.split(r).join('');
  return new FileOpError(err.code, message.replace(/^[A-Z]+: /, ''));
}

/** The ids an owner spec resolves to in `root`; names the image lacks resolve as BuildKit's do, with a warning. */
async function ownerOf(root: string, owner: ChownOpt | undefined, opts: ApplyOptions): Promise<Owner | undefined> {
  if (!owner || (owner.user === undefined && owner.group === undefined)) return undefined;
  const { uid, gid, unknown } = await resolveOwner(root, owner.user, owner.group);
  if (unknown.length > 0) {
    opts.warn?.(`${unknown.join(', ')}: owner set to ${uid}:${gid}`);
  }
  return { uid, gid };
}

// ------------------------------------------------------------------ mkdir, mkfile, rm

async function mkdirAction(root: string, a: MkdirAction, opts: ApplyOptions): Promise<void> {
  const p = await resolveInRoot(root, a.path);
  const owner = await ownerOf(root, a.owner, opts);
  if (a.makeParents) {
    await mkdirAll(root, p, a.mode & 0o7777, owner, a.timestamp);
    return;
  }
  try {
    await fsp.mkdir(p);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return;
    if (code === 'ENOENT') throw new FileOpError('NOT_FOUND', `mkdir ${a.path}: parent directory does not exist`);
    throw e;
  }
  await setCreatedMeta(p, a.mode & 0o7777, owner, a.timestamp);
}

async function mkfileAction(root: string, a: MkfileAction, opts: ApplyOptions): Promise<void> {
  const p = await resolveInRoot(root, a.path);
  const owner = await ownerOf(root, a.owner, opts);
  try {
    await fsp.writeFile(p, Buffer.from(a.data, 'base64'), { mode: a.mode & 0o7777 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new FileOpError('NOT_FOUND', `mkfile ${a.path}: parent directory does not exist`);
    throw e;
  }
  await setCreatedMeta(p, a.mode & 0o7777, owner, a.timestamp);
}

async function rmAction(root: string, a: RmAction): Promise<void> {
  const targets = a.allowWildcard ? await resolveWildcards(root, cleanPath(a.path), false) : [a.path];
  for (const t of targets) {
    const clean = path.posix.join('/', t);
    if (clean === '/') throw new FileOpError('INVALID_PATH', 'cannot remove the root directory');
    const p = await resolveInRoot(root, clean, false);
    if (!a.allowNotFound && !(await lstatOrNull(p))) throw notFound(clean);
    await fsp.rm(p, { recursive: true, force: true });
  }
}

/** Creates `p` and its missing parents (all inside root) with `mode`, owner and time; existing ones stay. */
async function mkdirAll(root: string, p: string, mode: number, owner?: Owner, timestamp?: number): Promise<void> {
  const st = await statOrNull(p);
  if (st) {
    if (st.isDirectory()) return;
    throw new FileOpError('NOT_A_DIRECTORY', `mkdir ${inRootPath(root, p)}: not a directory`);
  }
  if (p !== root) await mkdirAll(root, path.dirname(p), mode, owner, timestamp);
  try {
    await fsp.mkdir(p);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST' && (await statOrNull(p))?.isDirectory()) return;
    throw e;
  }
  await setCreatedMeta(p, mode, owner, timestamp);
}

/** Explicit chmod: the op's mode, not the process umask, decides. */
async function setCreatedMeta(p: string, mode: number, owner?: Owner, timestamp?: number): Promise<void> {
  if (owner) await fsp.lchown(p, owner.uid, owner.gid);
  await fsp.chmod(p, mode);
  if (timestamp !== undefined) await fsp.lutimes(p, timestamp, timestamp);
}

// ------------------------------------------------------------------ copy

/** BuildKit's cleanPath: absolute and clean, but a trailing `/` or `/.` is kept (it means "directory"). */
function cleanPath(s: string): string {
  let c = path.posix.join('/', s);
  if (c.length > 1 && c.endsWith('/')) c = c.slice(0, -1);
  if (s.endsWith('/.')) return c === '/' ? '/.' : `${c}/.`;
  if (s.endsWith('/') && c !== '/') return `${c}/`;
  return c;
}

const isDirPath = (p: string) => p.endsWith('/') || p.endsWith('/.');

/** Host path of an in-root source path; the last component's symlink is followed only on request. */
function sourcePath(srcRoot: string, p: string, followLinks: boolean): Promise<string> {
  return resolveInRoot(srcRoot, path.posix.join('/', p), followLinks);
}

async function copyAction(root: string, a: CopyAction, sources: (string | null)[], rootOwned: boolean, opts: ApplyOptions): Promise<void> {
  if (a.sourceInput >= 0 && typeof sources[a.sourceInput] !== 'string') {
    throw new FileOpError('INVALID_INPUT', `copy source input ${a.sourceInput} is not available`);
  }
  const scratch = a.sourceInput < 0 ? await fsp.mkdtemp(path.join(os.tmpdir(), 'builder-scratch-')) : null;
  try {
    await copyFrom(root, scratch ?? sources[a.sourceInput]!, a, rootOwned, opts);
  } finally {
    if (scratch) await fsp.rmdir(scratch);
  }
}

async function copyFrom(root: string, srcRoot: string, a: CopyAction, rootOwned = false, opts: ApplyOptions = {}): Promise<void> {
  const srcPath = cleanPath(a.src);
  const destPath = cleanPath(a.dest);
  const owner = await ownerOf(opts.ownerRoot ?? root, a.owner, opts);
  const destDir = a.destIsDir === true || isDirPath(destPath);
  const destClean = path.posix.join('/', destPath);

  if (!a.createDestPath) {
    const parent = path.dirname(await resolveInRoot(root, destClean));
    if (!(await statOrNull(parent))?.isDirectory()) {
      throw new FileOpError('NOT_FOUND', `"${path.posix.dirname(destClean)}": destination directory not found`);
    }
  }
  // A destination named as a directory is created; otherwise only its parent is.
  await mkdirAll(root, await resolveInRoot(root, destDir ? destClean : path.posix.dirname(destClean)), 0o755, owner, a.timestamp);
  const dest = await resolveInRoot(root, destClean);

  let srcs = [srcPath];
  if (a.allowWildcard) {
    srcs = await resolveWildcards(srcRoot, srcPath, a.followSymlinks);
    if (srcs.length === 0) {
      if (a.allowEmptyWildcard) return;
      throw notFound(path.posix.join('/', srcPath));
    }
  }
  for (const required of a.requiredPaths ?? []) {
    if (!(await lstatOrNull(await sourcePath(srcRoot, required, a.followSymlinks)))) throw notFound(path.posix.join('/', required));
  }
  let modeSet: ModeSet | undefined;
  try {
    modeSet = a.modeStr ? parseSymbolicMode(a.modeStr) : undefined;
  } catch (e) {
    throw new FileOpError('INVALID_MODE', (e as Error).message);
  }
  const copier = new Copier(root, {
    owner: owner ?? (rootOwned ? { uid: 0, gid: 0 } : undefined),
    mode: a.mode,
    modeSet,
    timestamp: a.timestamp,
    include: a.includePatterns?.length ? new PatternMatcher(a.includePatterns) : undefined,
    exclude: a.excludePatterns?.length ? new PatternMatcher(a.excludePatterns) : undefined,
    refresh: opts.refresh,
  });
  for (const s of srcs) {
    const src = await sourcePath(srcRoot, s, a.followSymlinks);
    const st = await lstatOrNull(src);
    if (!st) throw notFound(path.posix.join('/', s));
    if (a.attemptUnpack && st.isFile() && (await isArchive(src))) {
      // ADD of a local archive: extracted into the destination, which is a directory.
      await mkdirAll(root, dest, 0o755, owner, a.timestamp);
      await unpackArchive(src, dest, { owner });
      continue;
    }
    const destSt = await statOrNull(dest);
    let target = dest;
    if ((!a.dirCopyContents && st.isDirectory() && destSt) || (!st.isDirectory() && destSt?.isDirectory())) {
      target = path.join(dest, path.posix.basename(path.posix.join('/', s)));
    }
    await mkdirAll(root, a.dirCopyContents && st.isDirectory() && !destSt ? target : path.dirname(target), 0o755, owner, a.timestamp);
    await copier.copyTop(src, st, target);
    // A fresh copy adds entries to the directory it copies into, which sets its time to now; a refreshed
    // one may add none, so it sets the time itself.
    if (opts.refresh) {
      const now = Date.now() / 1000;
      await fsp.lutimes(osPath(st.isDirectory() ? target : path.dirname(target)), now, now);
    }
  }
}

/** fsutil's splitWildcards: the path up to the first component with a wildcard, and the rest. */
function splitWildcards(p: string): [string, string] {
  const parts = path.posix.join('/', p).split('/').filter(Boolean);
  const i = parts.findIndex(hasWildcard);
  if (i === -1) return [`/${parts.join('/')}`, ''];
  return [`/${parts.slice(0, i).join('/')}`, parts.slice(i).join('/')];
}

/** In-root paths matching a wildcard path, in walk order; a matched directory is not searched further. */
async function resolveWildcards(root: string, p: string, followLinks: boolean): Promise<string[]> {
  const [fixed, pattern] = splitWildcards(p);
  if (pattern === '') return [fixed];
  const base = await sourcePath(root, fixed, followLinks);
  const depth = pattern.split('/').length;
  const out: string[] = [];
  const walk = async (dir: string, rel: string, level: number): Promise<void> => {
    let names: string[];
    try {
      names = (await readdirNamesAsync(dir)).sort();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return;
      throw e;
    }
    for (const name of names) {
      const r = rel ? `${rel}/${name}` : name;
      const host = path.join(dir, name);
      if (goMatch(pattern, r)) {
        out.push(inRootPath(root, host));
      } else if (level < depth && (await fsp.lstat(osPath(host))).isDirectory()) {
        await walk(host, r, level + 1);
      }
    }
  };
  await walk(base, '', 1);
  return out;
}

/** Files up to this size are copied synchronously (the fast path); bigger ones on the threadpool. */
const SMALL_FILE = 1 << 20;
/** Synchronous copying runs in slices this long (ms), then lets the event loop run. */
const SLICE_MS = 10;

/** One scan of a directory, or null when it cannot be scanned (the per-entry path then meets the error). */
function scanOrNull(dir: string): ReturnType<typeof scanDir> | null {
  try {
    return scanDir(dir);
  } catch {
    return null;
  }
}

interface CopyOptions {
  owner?: Owner;
  mode?: number;
  modeSet?: ModeSet;
  timestamp?: number;
  include?: PatternMatcher;
  exclude?: PatternMatcher;
  refresh?: ApplyOptions['refresh'];
}

/**
 * A destination directory of a recursive copy, made on first use: a directory traversed only because
 * include patterns may select something below it exists in the result only if something was selected.
 */
class DirNode {
  private made: Promise<void> | null = null;
  /** Made by this copy, so known to be empty: its entries need no existence checks. */
  created = false;

  constructor(readonly path: string, private readonly parent: DirNode | null, private readonly make: (parentCreated: boolean) => Promise<boolean>) {}

  ensure(): Promise<void> {
    return (this.made ??= (async () => {
      if (this.parent) await this.parent.ensure();
      this.created = await this.make(this.parent?.created ?? false);
    })());
  }

  get used(): boolean {
    return this.made !== null;
  }
}

/** One copy action's recursive copy: hardlinks are kept among the files it copies. */
class Copier {
  private readonly inodes = new Map<string, Promise<string>>();
  private readonly limiter = new Limiter(16);
  /** Refreshing beside a clone: writes that may wait until it is done (directory metadata), in order. */
  private readonly deferred: (() => void)[] = [];
  private cloneDone = false;

  constructor(private readonly root: string, private readonly opts: CopyOptions) {
    opts.refresh?.cloned?.then(() => (this.cloneDone = true), () => undefined);
  }

  async copyTop(src: string, st: fs.Stats, target: string): Promise<void> {
    try {
      if (!st.isDirectory()) {
        await this.copyNonDir(src, st, target, false);
        return;
      }
      const top = new DirNode(target, null, () => this.makeDir(target, false));
      await top.ensure();
      await this.copyChildren(src, '', top, false);
      // An existing top-level directory keeps its own metadata (fsutil's overwriteTargetMetadata=false).
      if (top.created) this.applyInfo(src, st, target);
    } finally {
      // Even after a failure: the caller may remove `root` next, which the clone must be done with.
      await this.opts.refresh?.cloned?.catch(() => undefined);
    }
    for (const write of this.deferred.splice(0)) write();
  }

  /** Waits, when refreshing beside a clone, until writing to `root` is safe. */
  private async writable(): Promise<void> {
    await this.opts.refresh?.cloned;
  }

  /** Where an earlier result keeps what `target` held: the clone's source while it runs, else `target`. */
  private earlier(target: string): string {
    const previous = this.opts.refresh?.previous;
    return previous ? path.join(previous, path.relative(this.root, target)) : target;
  }

  private afterClone(write: () => void): void {
    if (this.opts.refresh?.cloned && !this.cloneDone) this.deferred.push(write);
    else write();
  }

  /** Copies the entries of `src` (at `relDir` below the copy root) into `dst`. */
  private async copyChildren(src: string, relDir: string, dst: DirNode, included: boolean): Promise<void> {
    const { include, exclude } = this.opts;
    const tasks: Promise<void>[] = [];
    const kept = this.opts.refresh ? new Set<string>() : null;
    const quick = kept && !dst.created ? this.unchangedFiles(src, dst.path) : null;
    // One native scan of the directory tells kind, links and extended attributes of every entry, so the
    // common file (regular, one link, no attributes) is copied without a per-entry lstat.
    const scan = quick?.scan ?? scanOrNull(src);
    const names = scan?.names ?? readdirNames(src);
    // Entries in name order, by their index in the scan (no map from names).
    const order = names.map((_, i) => i).sort((a, b) => (names[a] < names[b] ? -1 : names[a] > names[b] ? 1 : 0));
    let slice = performance.now();
    try {
      for (const i of order) {
        const name = names[i];
        const rel = relDir ? `${relDir}/${name}` : name;
        // An included directory includes everything below it (patterns match parent directories).
        const inc = included || !include || include.matches(rel);
        const exc = exclude?.matches(rel) ?? false;
        const selected = inc && !exc;
        if (quick?.keep.has(i)) {
          if (selected) kept!.add(name);
          continue;
        }
        const s = path.join(src, name);
        const t = path.join(dst.path, name);
        if (selected && scan && this.plainFile(scan.stats, i) && (!this.opts.refresh || dst.created)) {
          await dst.ensure();
          if (this.copySmallSync(s, t)) {
            kept?.add(name);
            // Synchronous copies in slices: other steps (a pull, a RUN's output) keep moving meanwhile.
            if (performance.now() - slice > SLICE_MS) {
              await new Promise<void>((r) => setImmediate(r));
              slice = performance.now();
            }
            continue;
          }
        }
        // Synchronous metadata calls: a local lstat takes microseconds, less than a trip through the threadpool
        // (which the copies keep busy).
        const st = fs.lstatSync(osPath(s));
        if (st.isSocket()) continue; // runtime artifacts; tar and BuildKit skip them too
        if (!st.isDirectory()) {
          if (!selected) continue;
          kept?.add(name);
          // Refreshing: most files are unchanged, and a synchronous check is far cheaper than a task.
          if (kept && !dst.created && this.keepSync(s, st, t)) continue;
          await dst.ensure();
          const task = this.limiter.run(() => this.copyNonDir(s, st, t, dst.created));
          task.catch(() => undefined); // handled by the awaits below; this avoids an interim unhandled rejection
          tasks.push(task);
          continue;
        }
        // An unselected directory is still walked when a pattern may select something below it.
        if (!selected) {
          const mayInclude = inc || include!.mayMatchBelow(rel, false);
          const mayKeep = !exc || (exclude!.hasExclusions && exclude!.mayMatchBelow(rel, true));
          if (!mayInclude || !mayKeep) continue;
        }
        const node = new DirNode(t, dst, (parentCreated) => this.makeDir(t, parentCreated));
        if (selected) await node.ensure();
        await this.copyChildren(s, rel, node, inc && include !== undefined);
        if (node.used) {
          kept?.add(name);
          this.afterClone(() => this.applyInfo(s, st, t));
        }
      }
      // Refreshing an earlier copy: what the source no longer has (or no longer selects) goes.
      if (kept && dst.used && !dst.created) {
        for (const name of quick?.earlierNames ?? readdirNames(this.earlier(dst.path))) {
          if (kept.has(name)) continue;
          await this.writable();
          await fsp.rm(osPath(path.join(dst.path, name)), { recursive: true, force: true });
        }
      }
    } finally {
      // Never return (or fail) with copies still running into a mount the caller may remove next.
      await Promise.allSettled(tasks);
    }
    await Promise.all(tasks);
  }

  /** Entry `i` of a scan is a regular file small enough to copy synchronously, with one link and no xattrs. */
  private plainFile(stats: Float64Array, i: number): boolean {
    const o = i * Scan.fields;
    return (stats[o + Scan.mode] & fs.constants.S_IFMT) === fs.constants.S_IFREG && stats[o + Scan.nlink] === 1 &&
      stats[o + Scan.xattrs] === 0 && stats[o + Scan.size] <= SMALL_FILE;
  }

  /**
   * The fast path of a big COPY (most files are small): one file copied synchronously through its
   * descriptors, open, an in-kernel copy, owner, mode and times set on the descriptor, close. No trip
   * through the threadpool and no path lookup beyond the two opens: on ext4 (and overlayfs over it) this
   * copies small files 2-3 times faster than copyFile on the threadpool followed by path-based chown,
   * chmod and utimes (bench figures in docs/architecture.md). False, having done nothing, when the target
   * exists or the source is no longer such a file: the general path then deals with it.
   */
  private copySmallSync(src: string, target: string): boolean {
    const { owner, mode, modeSet, timestamp } = this.opts;
    const { O_RDONLY, O_NOFOLLOW, O_WRONLY, O_CREAT, O_EXCL } = fs.constants;
    let input: number;
    try {
      input = fs.openSync(osPath(src), O_RDONLY | O_NOFOLLOW);
    } catch {
      return false; // gone or replaced by a symlink since the scan: the general path reports or copies it
    }
    try {
      const st = fs.fstatSync(input);
      if (!st.isFile() || st.nlink > 1) return false;
      let output: number;
      try {
        output = fs.openSync(osPath(target), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
        throw e;
      }
      try {
        if (st.size > 0) copyRange(input, output, st.size);
        // Owner, then mode (chown clears setuid), then times, as applyInfo.
        fs.fchownSync(output, owner?.uid ?? st.uid, owner?.gid ?? st.gid);
        fs.fchmodSync(output, modeSet ? applySymbolicMode(modeSet, st.mode, false) : mode ?? st.mode & 0o7777);
        if (timestamp !== undefined) fs.futimesSync(output, timestamp, timestamp);
        else fs.futimesSync(output, st.atimeMs / 1000, st.mtimeMs / 1000);
      } finally {
        fs.closeSync(output);
      }
      return true;
    } finally {
      fs.closeSync(input);
    }
  }

  /** Creates a directory target; true when it did not exist. An existing non-directory is an error. */
  private async makeDir(target: string, parentCreated: boolean): Promise<boolean> {
    const existing = parentCreated ? null : lstatOrNullSync(this.earlier(target));
    // A directory the earlier result has is (or will be, once cloned) there already.
    if (existing?.isDirectory()) return false;
    await this.writable();
    if (existing) {
      if (!this.opts.refresh) throw new FileOpError('NOT_A_DIRECTORY', `cannot copy to non-directory: ${inRootPath(this.root, target)}`);
      fs.unlinkSync(osPath(target));
    }
    fs.mkdirSync(osPath(target), { mode: 0o700 });
    return true;
  }

  private async copyNonDir(src: string, st: fs.Stats, target: string, fresh: boolean): Promise<void> {
    await this.writable();
    if (!fresh) {
      const existing = lstatOrNullSync(target);
      if (existing && this.opts.refresh) {
        if (this.unchanged(src, st, existing) && (await this.sameLinks(st, target, existing))) return;
        if (existing.isDirectory()) await fsp.rm(osPath(target), { recursive: true });
        else fs.unlinkSync(osPath(target));
      } else if (existing?.isDirectory()) {
        throw new FileOpError('IS_A_DIRECTORY', `cannot replace to directory ${inRootPath(this.root, target)} with file`);
      } else if (existing) {
        fs.unlinkSync(osPath(target));
      }
    }
    if (st.isFile() && st.nlink > 1) {
      const key = `${st.dev}:${st.ino}`;
      const first = this.inodes.get(key);
      if (first) {
        await fsp.link(osPath(await first), osPath(target));
        return;
      }
      const copied = this.copyRegular(src, st, target).then(() => target);
      this.inodes.set(key, copied);
      await copied;
      return;
    }
    if (st.isFile()) {
      await this.copyRegular(src, st, target);
    } else if (st.isSymbolicLink()) {
      fs.symlinkSync(osPath(readlinkName(src)), osPath(target));
      this.applyInfo(src, st, target);
    } else if (st.isCharacterDevice() || st.isBlockDevice() || st.isFIFO()) {
      const kind = st.isCharacterDevice() ? S_IFCHR : st.isBlockDevice() ? S_IFBLK : S_IFIFO;
      mknod(target, kind | 0o600, major(st.rdev), minor(st.rdev));
      this.applyInfo(src, st, target);
    }
  }

  /**
   * Refreshing: the regular files of `src` that `target`'s earlier result holds as copying them now would
   * make them, told from one scan of each directory (the common case: most files did not change). Files
   * hard-linked in the source, or with extended attributes, are left to the per-file checks. Null where a
   * scan fails (the per-file path then meets whatever is wrong).
   */
  private unchangedFiles(src: string, target: string): { keep: Set<number>; scan: ReturnType<typeof scanDir>; earlierNames: string[] } | null {
    let now: ReturnType<typeof scanDir>;
    let before: ReturnType<typeof scanDir>;
    try {
      now = scanDir(src);
      before = scanDir(this.earlier(target), { xattrs: false });
    } catch {
      return null;
    }
    const earlier = new Map<string, number>();
    for (let e = 0; e < before.names.length; e++) earlier.set(before.names[e], e);
    // Indexes (into the scan) of the entries kept; compared on the scans' numbers, no stats object per entry.
    const keep = new Set<number>();
    for (let i = 0; i < now.names.length; i++) {
      const e = earlier.get(now.names[i]);
      const o = i * Scan.fields;
      if (e === undefined || now.stats[o + Scan.nlink] > 1 || now.stats[o + Scan.xattrs] !== 0) continue;
      if (this.keepable(scanView(now.stats, i), scanView(before.stats, e))) keep.add(i);
    }
    return { keep, scan: now, earlierNames: before.names };
  }

  /** Refreshing: `existing` (an earlier copy of `src`) is what copying `src` now would make. */
  private unchanged(src: string, st: fs.Stats, existing: fs.Stats): boolean {
    return this.keepable(st, existing) && listXattrs(src).length === 0;
  }

  /**
   * Refreshing: `existing`, the earlier copy of a source file with metadata `st`, is what copying it now
   * would make, extended attributes aside: the source has not changed since before the earlier copy began
   * (by ctime, which no tool can set back), and size, mtime, mode and owner come out the same.
   */
  private keepable(st: KeepView, existing: KeepView): boolean {
    const { owner, mode, modeSet, timestamp, refresh } = this.opts;
    if (!refresh || !isRegular(st) || !isRegular(existing)) return false;
    if (st.ctimeMs >= refresh.unchangedBefore || st.size !== existing.size) return false;
    const mtime = timestamp !== undefined ? timestamp * 1000 : st.mtimeMs;
    if (Math.abs(existing.mtimeMs - mtime) >= 1) return false;
    const wantMode = modeSet ? applySymbolicMode(modeSet, st.mode, false) : mode ?? st.mode & 0o7777;
    if ((existing.mode & 0o7777) !== wantMode) return false;
    return existing.uid === (owner?.uid ?? st.uid) && existing.gid === (owner?.gid ?? st.gid);
  }

  /** Refreshing: the synchronous form of copyNonDir's check that `target` can stay as it is. */
  private keepSync(src: string, st: fs.Stats, target: string): boolean {
    let existing: fs.Stats;
    try {
      existing = fs.lstatSync(osPath(this.earlier(target)));
    } catch {
      return false;
    }
    if (!this.unchanged(src, st, existing)) return false;
    if (st.nlink <= 1) return true;
    const key = `${st.dev}:${st.ino}`;
    if (this.inodes.has(key)) return false; // the async path compares with the first name's inode
    this.inodes.set(key, Promise.resolve(target));
    return true;
  }

  /**
   * Refreshing a file the source hard-links elsewhere: kept only if it is still linked to what this copy
   * made (or kept) for the first of those names, as a fresh copy would link it.
   */
  private async sameLinks(st: fs.Stats, target: string, existing: fs.Stats): Promise<boolean> {
    if (st.nlink <= 1) return true;
    const key = `${st.dev}:${st.ino}`;
    const first = this.inodes.get(key);
    if (!first) {
      this.inodes.set(key, Promise.resolve(target));
      return true;
    }
    return (await fsp.lstat(osPath(await first))).ino === existing.ino;
  }

  private async copyRegular(src: string, st: fs.Stats, target: string): Promise<void> {
    // Reflink where the filesystem can (btrfs, xfs), an in-kernel copy otherwise.
    await fsp.copyFile(osPath(src), osPath(target), fs.constants.COPYFILE_FICLONE);
    this.applyInfo(src, st, target);
  }

  /**
   * Owner, then mode (chown clears setuid), times, then xattrs (chown clears security.capability).
   * Synchronous: each call takes microseconds, a quarter of what a trip through the threadpool costs.
   */
  private applyInfo(src: string, st: fs.Stats, targetName: string): void {
    const { owner, mode, modeSet, timestamp } = this.opts;
    const target = osPath(targetName);
    fs.lchownSync(target, owner?.uid ?? st.uid, owner?.gid ?? st.gid);
    if (!st.isSymbolicLink()) {
      fs.chmodSync(target, modeSet ? applySymbolicMode(modeSet, st.mode, st.isDirectory()) : mode ?? st.mode & 0o7777);
    }
    for (const name of listXattrs(src)) {
      if (name.startsWith('trusted.overlay.')) continue;
      const value = getXattr(src, name);
      // As BuildKit: an attribute the destination refuses (a filesystem without user xattrs) is skipped.
      if (value !== null) try { setXattr(targetName, name, value); } catch { /* skipped */ }
    }
    if (timestamp !== undefined) fs.lutimesSync(target, timestamp, timestamp);
    else fs.lutimesSync(target, st.atimeMs / 1000, st.mtimeMs / 1000);
  }
}

/** What keepable compares of a file: fs.Stats or a scan's entry (scanView). */
type KeepView = Pick<fs.Stats, 'mode' | 'uid' | 'gid' | 'size' | 'mtimeMs' | 'ctimeMs'>;

const isRegular = (v: KeepView) => (v.mode & fs.constants.S_IFMT) === fs.constants.S_IFREG;

/** Entry `i` of a scan as a KeepView; times in milliseconds as scannedStats (and fs.Stats) compute them. */
function scanView(stats: Float64Array, i: number): KeepView {
  const o = i * Scan.fields;
  return {
    mode: stats[o + Scan.mode], uid: stats[o + Scan.uid], gid: stats[o + Scan.gid], size: stats[o + Scan.size],
    mtimeMs: stats[o + Scan.mtime] * 1e3 + stats[o + Scan.mtimeNsec] / 1e6,
    ctimeMs: stats[o + Scan.ctime] * 1e3 + stats[o + Scan.ctimeNsec] / 1e6,
  };
}

const major = (rdev: number) => Number((BigInt(rdev) >> 8n) & 0xfffn | ((BigInt(rdev) >> 32n) & ~0xfffn));
const minor = (rdev: number) => Number((BigInt(rdev) & 0xffn) | ((BigInt(rdev) >> 12n) & ~0xffn));

async function lstatOrNull(p: string): Promise<fs.Stats | null> {
  try {
    return await fsp.lstat(osPath(p));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw e;
  }
}

function lstatOrNullSync(p: string): fs.Stats | null {
  try {
    return fs.lstatSync(osPath(p));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw e;
  }
}

async function statOrNull(p: string): Promise<fs.Stats | null> {
  try {
    return await fsp.stat(osPath(p));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw e;
  }
}
