// Content checksums of what a local source (the build context) and each COPY from it select, as BuildKit's
// contenthash: every path has a record (type, mode, uid/gid, content digest or link target) and a
// directory's digest folds in its children's names and digests. Nothing host-specific (path of the
// context, inode, times) enters a digest. A persistent metadata index (path, size, mtime, ctime, inode ->
// content digest) lets a rebuild stat files instead of reading them.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import type { CopyAction, Digest } from '../../solver/llb/ops.js';
import { sha256 } from '../../solver/llb/digest.js';
import { goMatch, hasWildcard, PatternMatcher } from '../util/patterns.js';
import { getXattr, listXattrs, openScanIndex, Scan, scanDirs, type ScanBatch, type ScanIndex } from '../native/fsx.js';
import { hasEscapedBytes, nameBytes, osPath, readlinkName } from '../util/names.js';

/**
 * One entry of the context, as small as it can be: a big context has hundreds of thousands of them, and
 * this is most of what the checksummer keeps per file (docs/limits.md). No path is stored: a node is found
 * from the root through its parents' sorted children.
 */
interface Node {
  name: string;
  type: 'file' | 'dir' | 'symlink' | 'other';
  /**
   * Its lstat numbers: `Scan.fields` of them from `at` (mode, owner, size, times, inode; read through
   * the functions below). The array is its scan batch's, shared by the batch's entries: numbers that are
   * not small integers would each be an object of their own in a field.
   */
  stats: Float64Array;
  at: number;
  /** Sorted by name (directories). */
  children: Node[] | undefined;
  /**
   * A file's content digest in hex (no `sha256:`: a string of its own, not a join of two), known for its
   * current metadata (read this build, or the index's once asked for: fileDigest); a directory's digest
   * once computed.
   */
  digest: string | undefined;
}

/**
 * The persistent index: per file, the metadata its content digest was read with. On disk a first line
 * `{"v":2}`, then a line per file, `[path, size, mtimeMs, ctimeMs, ino, hex digest]` (JSON), read and
 * written a piece at a time (v1 was one JSON object of all paths, parsed and written whole).
 */
type IndexRow = [string, number, number, number, number, string];
const INDEX_V2 = '{"v":2}';

/** The copy reads through a symlink or selects something the tree cannot describe: checksum everything. */
const WHOLE = Symbol('whole');

/** Files up to this size are read synchronously, in one go (most of a source tree). */
const SMALL_FILE = 1 << 20;
/** Synchronous work runs in slices this long (ms), then lets the event loop run (pulls, progress). */
const SLICE_MS = 10;
/** Context scans on the threadpool at once, and directories per scan at most. */
const SCANS_AT_ONCE = 3;
const SCAN_BATCH_DIRS = 32;

let readBuffer: Buffer | null = null;

export class ContextChecksummer {
  private tree: Promise<Node> | null = null;
  /** Index digests of files whose metadata changed since (for `changed`), until they are read again. */
  private stale = new Map<string, string>();
  private dirty = false;
  /** Hashing runs one request at a time: a file asked for twice is read once. */
  private hashing: Promise<void> = Promise.resolve();
  private readonly exclude?: PatternMatcher;
  /** Per scan batch (by its stats), the index's digests of the files it vouched for, and where each one's is. */
  private readonly vouched = new WeakMap<Float64Array, { digests: string; at: Int32Array }>();
  /** Paths whose content changed since the index was written (for cache-miss explanations). */
  readonly changed = new Set<string>();
  /** Bytes of the files read (hashed) so far: what this build took of the context (progress shows it). */
  bytesRead = 0;
  /** Files read (hashed) so far, and files the (filtered) context has, once walked. */
  filesRead = 0;
  files = 0;

  constructor(readonly dir: string, excludePatterns: string[] | undefined, private readonly indexFile?: string) {
    if (excludePatterns?.length) this.exclude = new PatternMatcher(excludePatterns);
  }

  /** Digest of the whole (filtered) context. */
  async rootDigest(): Promise<Digest> {
    return this.digestOf('');
  }

  /**
   * Digest of what a copy action selects from the context: the matched paths' names and subtree digests.
   * Throws when a non-wildcard source is missing (the copy itself will report it).
   */
  async selectionDigest(a: CopyAction): Promise<{ digest: Digest; paths: string[] }> {
    const tree = await this.loadTree();
    const roots = this.select(tree, a);
    if (roots === WHOLE) return { digest: await this.digestOf(''), paths: [''] };
    const parts: string[] = [];
    const paths: string[] = [];
    for (const r of roots) {
      let node = lookup(tree, r);
      if (!node) throw new Error(`${r}: not found`);
      // A symlink the copy follows: keyed by where it leads (and that path), not by the whole context.
      let to = r;
      if (node.type === 'symlink' && a.followSymlinks) {
        const resolved = this.resolveLinks(tree, r, true);
        if (resolved === null) return { digest: await this.digestOf(''), paths: [''] };
        to = resolved;
        node = lookup(tree, to);
        if (!node) throw new Error(`${r}: not found`);
      }
      parts.push(to === r ? `${r}\0${await this.digestOf(r)}` : `${r}\0${to}\0${await this.digestOf(to)}`);
      paths.push(to);
    }
    return { digest: sha256(nameBytes(parts.join('\n'))), paths };
  }

  /**
   * What identifies each file under `roots` (for explaining which files changed): its record (type, mode,
   * owner and content digest or link target), unhashed, since only equality matters.
   */
  async fileDigests(roots: string[]): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    await this.eachFileRecord(roots, (rel, record) => { out[rel] = record; });
    return out;
  }

  /**
   * fileDigests one file at a time, for callers that stream them (a context of 100,000 files makes a map of
   * tens of MB): each path once, even when one root is below another.
   */
  async eachFileRecord(roots: string[], fn: (rel: string, record: string) => void | Promise<void>): Promise<void> {
    const tree = await this.loadTree();
    const covered = (r: string, o: string) => o === '' || r === o || r.startsWith(`${o}/`);
    const tops = roots.filter((r, i) => !roots.some((o, j) => (o === r ? j < i : covered(r, o))));
    for (const r of tops) {
      const top = lookup(tree, r);
      if (!top) continue;
      await this.hashMissing(r);
      const stack: [Node, string][] = [[top, r]];
      while (stack.length > 0) {
        const [node, rel] = stack.pop()!;
        if (node.type !== 'dir') {
          const wait = fn(rel, this.leafRecord(node, rel));
          if (wait) await wait;
        }
        for (const c of node.children ?? []) stack.push([c, rel ? `${rel}/${c.name}` : c.name]);
      }
    }
  }

  /** Writes the metadata index if it changed: a line per file, in pieces, then renamed over the old one. */
  async flush(): Promise<void> {
    if (!this.indexFile || !this.dirty || !this.tree) return;
    const tree = await this.tree;
    await fsp.mkdir(path.dirname(this.indexFile), { recursive: true });
    const tmp = `${this.indexFile}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    const out = await fsp.open(tmp, 'w');
    try {
      let chunk = `${INDEX_V2}\n`;
      // Written 64 KiB at a time as the tree is walked: no string or list of the whole index is made.
      const stack: [Node, string][] = [[tree, '']];
      while (stack.length > 0) {
        const [node, rel] = stack.pop()!;
        const digest = node.type === 'file' ? this.fileDigest(node) : undefined;
        if (digest) {
          chunk += `[${JSON.stringify(rel)},${sizeOf(node)},${mtimeMs(node)},${ctimeMs(node)},${inoOf(node)},"${digest}"]\n`;
          if (chunk.length >= 1 << 16) {
            await out.write(chunk);
            chunk = '';
          }
        }
        for (const c of node.children ?? []) stack.push([c, rel ? `${rel}/${c.name}` : c.name]);
      }
      await out.write(chunk);
      await out.sync();
    } catch (e) {
      await out.close();
      await fsp.rm(tmp, { force: true });
      throw e;
    }
    await out.close();
    await fsp.rename(tmp, this.indexFile).catch(async (e: unknown) => {
      await fsp.rm(tmp, { force: true });
      throw e;
    });
    this.dirty = false;
  }

  private select(tree: Node, a: CopyAction): string[] | typeof WHOLE {
    let src = path.posix.join('/', a.src).replace(/\/\.?$/, '');
    src = src.replace(/^\/+/, '').replace(/\/+$/, '');
    if (src === '.') src = '';
    const parts = src ? src.split('/') : [];
    const wild = a.allowWildcard ? parts.findIndex(hasWildcard) : -1;
    const fixed = wild === -1 ? parts : parts.slice(0, wild);
    // Symlinks on the way to the source are resolved as the copy resolves them (inside the context).
    const base = this.resolveLinks(tree, fixed.join('/'), wild !== -1);
    if (base === null) return WHOLE;
    if (wild === -1) return [base];
    const pattern = parts.slice(wild).join('/');
    const depth = pattern.split('/').length;
    const out: string[] = [];
    const walk = (node: Node | undefined, rel: string, sub: string, level: number) => {
      if (!node || node.type !== 'dir') return;
      for (const child of node.children ?? []) {
        const r = sub ? `${sub}/${child.name}` : child.name;
        const full = rel ? `${rel}/${child.name}` : child.name;
        if (goMatch(pattern, r)) out.push(full);
        else if (level < depth && child.type === 'dir') walk(child, full, r, level + 1);
      }
    };
    walk(lookup(tree, base), base, '', 1);
    return out;
  }

  /**
   * `rel` with the symlinks on its way resolved inside the context (an absolute target from its root, `..`
   * stopping there), the last one only with `followFinal`. Null when that cannot be told from the tree:
   * too many links (a loop, which the copy reports).
   */
  private resolveLinks(tree: Node, rel: string, followFinal: boolean): string | null {
    let todo = rel ? rel.split('/') : [];
    let i = 0;
    let hops = 0;
    const out: string[] = [];
    while (i < todo.length) {
      const part = todo[i++];
      if (part === '' || part === '.') continue;
      if (part === '..') {
        out.pop();
        continue;
      }
      out.push(part);
      const cur = out.join('/');
      const node = lookup(tree, cur);
      // Missing (or excluded): what follows is not in the tree either; the lookup reports it.
      if (!node) return [...out, ...todo.slice(i)].join('/');
      if (node.type !== 'symlink' || (i >= todo.length && !followFinal)) continue;
      if (++hops > 40) return null;
      const target = readlinkName(path.join(this.dir, cur));
      out.pop();
      if (target.startsWith('/')) out.length = 0;
      todo = [...target.split('/'), ...todo.slice(i)];
      i = 0;
    }
    return out.join('/');
  }

  private loadTree(): Promise<Node> {
    this.tree ??= this.walk();
    return this.tree;
  }

  /**
   * The tree, from native scans of batches of directories on the threadpool (scanDirs), several at once,
   * breadth first: each batch's entries become nodes as it arrives, and its directories (those not
   * excluded) the next batches. No Stats object per entry, and the lstat calls, most of a rebuild's time,
   * off the main thread. Each file takes its digest from the index when its metadata still matches: the
   * index is parsed and looked up on the threadpool too (loadScanIndex), unless it is of an older format,
   * which is read into a map here; it is dropped after.
   */
  private async walk(): Promise<Node> {
    let native: ScanIndex | null = null;
    let index: Map<string, IndexRow> | null = null;
    // Batches are taken once the index's kind is known (it loads while the first ones scan).
    let loaded: Promise<unknown> = Promise.resolve();
    const opened = this.indexFile ? openScanIndex(this.indexFile) : null;
    if (opened) {
      native = opened.index;
      loaded = opened.loaded.then(async (kind) => {
        if (kind === 'other') index = await this.loadIndex();
      });
    } else if (this.indexFile) {
      loaded = this.loadIndex().then((rows) => { index = rows; });
    }
    try {
      const root = toNode('', fs.lstatSync(osPath(this.dir), { bigint: true }));
      const queue: [Node, string][] = [[root, '']];
      let head = 0;
      await new Promise<void>((resolve, reject) => {
        let running = 0;
        let failed = false;
        const pump = () => {
          while (!failed && running < SCANS_AT_ONCE && head < queue.length) {
            // Batches small enough that several go at once, large enough that a wide tree takes few.
            const take = Math.min(SCAN_BATCH_DIRS, Math.ceil((queue.length - head) / SCANS_AT_ONCE));
            const batch = queue.slice(head, head + take);
            head += take;
            running++;
            // Records hold no xattrs. With the index, leaf directories' digests come made (dirDigests).
            const headers = native ? batch.map(([dir]) => recordHeader(dir)) : undefined;
            scanDirs(this.dir, batch.map(([, rel]) => rel), { xattrs: false, index: native, headers }).then(async (scan) => {
              await loaded;
              running--;
              if (failed) return;
              this.takeScan(batch, scan, queue, index);
              pump();
              if (running === 0 && head === queue.length) resolve();
            }).catch((e: unknown) => {
              failed = true;
              reject(e);
            });
          }
          if (head > 4096 && head * 2 > queue.length) {
            queue.splice(0, head);
            head = 0;
          }
        };
        pump();
      });
      return root;
    } finally {
      native?.release();
    }
  }

  /** A batch of scanned directories into the tree: children sorted by name, directories to scan queued. */
  private takeScan(batch: [Node, string][], scan: ScanBatch, queue: [Node, string][], index: Map<string, IndexRow> | null): void {
    const { counts, names, stats, known, digests, dirDigests } = scan;
    const exclude = this.exclude;
    // Where in `digests` each entry's vouched digest is, made into a string only if asked for (fileDigest).
    const vouched = known ? new Int32Array(names.length).fill(-1) : undefined;
    if (vouched) this.vouched.set(stats, { digests: digests!, at: vouched });
    let i = 0;
    let at = 0; // in digests
    for (let k = 0; k < batch.length; k++) {
      const [node, rel] = batch[k];
      const end = i + counts[k];
      // Without `!` exceptions, an entry can be excluded only by a pattern that may match at its depth
      // (its parents matched nothing): then no path need be made for it.
      const depth = rel ? countSlashes(rel) + 2 : 1;
      const check = exclude !== undefined && (exclude.hasExclusions || exclude.mayMatchAtDepth(depth));
      const kept: Node[] = [];
      let sorted = true;
      for (; i < end; i++) {
        const name = names[i];
        const o = i * Scan.fields;
        const kind = stats[o + Scan.mode] & fs.constants.S_IFMT;
        const type = kind === fs.constants.S_IFDIR ? 'dir' : kind === fs.constants.S_IFREG ? 'file' : kind === fs.constants.S_IFLNK ? 'symlink' : 'other';
        // Every field from the start: one shape for all nodes, fields in the object itself.
        const child: Node = { name, type, stats, at: o, children: undefined, digest: undefined };
        const row = known ? known[i] : 0;
        if (row === 1) vouched![i] = at;
        const stale = row === 2 ? digests!.slice(at, at + 64) : undefined;
        if (row) at += 64;
        let r: string | undefined;
        if (check) {
          r = rel ? `${rel}/${name}` : name;
          // An excluded directory is still searched when a `!` exception may re-include something below.
          if (exclude.matches(r) && !(type === 'dir' && exclude.hasExclusions && exclude.mayMatchBelow(r, true))) continue;
        }
        if (sorted && kept.length > 0 && !(kept[kept.length - 1].name < name)) sorted = false;
        kept.push(child);
        if (type === 'dir') {
          queue.push([child, r ?? (rel ? `${rel}/${name}` : name)]);
        } else if (type === 'file') {
          this.files++;
          if (row === 2) {
            this.stale.set(r ?? (rel ? `${rel}/${name}` : name), stale!);
          } else if (row === 0 && index) {
            r ??= rel ? `${rel}/${name}` : name;
            const entry = index.get(r);
            if (entry && entry[1] === sizeOf(child) && entry[2] === mtimeMs(child) && entry[3] === ctimeMs(child) && entry[4] === inoOf(child)) {
              child.digest = entry[5];
            } else if (entry) {
              this.stale.set(r, entry[5]);
            }
          }
        }
      }
      // Scans sort by name bytes, which is string order but for names past U+FFFF or not UTF-8.
      if (!sorted) kept.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      node.children = kept;
      // The scan's digest of the directory's record holds for it when the record has what it read: every
      // entry kept (none may be excluded), in the same order.
      if (dirDigests?.[k] && sorted && !check) node.digest = dirDigests[k];
    }
  }

  private async digestOf(rel: string): Promise<Digest> {
    const tree = await this.loadTree();
    await this.hashMissing(rel);
    const node = lookup(tree, rel);
    if (!node) throw new Error(`${rel}: not found`);
    return this.digestSync(node, rel);
  }

  /** Reads the files under `rel` whose metadata the index does not vouch for. */
  private hashMissing(rel: string): Promise<void> {
    const run = this.hashing.then(() => this.hashUnder(rel));
    this.hashing = run.catch(() => undefined);
    return run;
  }

  private async hashUnder(rel: string): Promise<void> {
    const top = lookup(await this.loadTree(), rel);
    if (!top) return;
    const todo: [Node, string][] = [[top, rel]];
    let slice = performance.now();
    while (todo.length > 0) {
      const [node, r] = todo.pop()!;
      if (node.type === 'dir') {
        for (const c of node.children ?? []) {
          if (c.type === 'dir' || (c.type === 'file' && !this.hasDigest(c))) todo.push([c, r ? `${r}/${c.name}` : c.name]);
        }
        continue;
      }
      if (node.type !== 'file' || this.hasDigest(node)) continue;
      const file = path.join(this.dir, r);
      const digest = sizeOf(node) <= SMALL_FILE ? hashSmallFile(file) : await hashFile(file);
      this.bytesRead += digest.size;
      this.filesRead++;
      // A COPY copies xattrs, so they are part of what it selects. Read only here, for files being hashed:
      // setting or removing one changes the file's ctime, so the index never vouches for a changed set.
      const xattrs = xattrRecord(file);
      const hex = xattrs ? sha256(nameBytes(`${digest.hex}\n${xattrs}`)).slice(7) : digest.hex;
      const before = this.stale.get(r);
      if (before !== undefined) {
        this.stale.delete(r);
        if (before !== hex) this.changed.add(r);
      }
      node.digest = hex;
      this.dirty = true;
      if (performance.now() - slice > SLICE_MS) {
        await nextTurn();
        slice = performance.now();
      }
    }
  }

  /** A file's content digest: read this build, or the index's when it vouched for the file's metadata. */
  private fileDigest(node: Node): string | undefined {
    if (node.digest === undefined) {
      const o = this.vouchedAt(node);
      if (o >= 0) node.digest = this.vouched.get(node.stats)!.digests.slice(o, o + 64);
    }
    return node.digest;
  }

  /** fileDigest would give one (without making it). */
  private hasDigest(node: Node): boolean {
    return node.digest !== undefined || this.vouchedAt(node) >= 0;
  }

  private vouchedAt(node: Node): number {
    const v = this.vouched.get(node.stats);
    return v ? v.at[node.at / Scan.fields] : -1;
  }

  private digestSync(node: Node, rel: string): Digest {
    if (node.type === 'dir') {
      if (node.digest) return node.digest as Digest;
      // A child that is not a directory enters as its record, not as a digest of it: one hash per
      // directory instead of one per file (tens of thousands of them in a big context).
      let record = recordHeader(node);
      for (const child of node.children ?? []) {
        // A file's record made here: no path for it (the common case of a big tree).
        const digest = child.type === 'file' ? this.fileDigest(child) : undefined;
        const leaf = digest ? `${recordHeader(child)}\nsha256:${digest}` : undefined;
        const r = leaf === undefined ? (rel ? `${rel}/${child.name}` : child.name) : '';
        record += `\n${child.name}\0${leaf ?? (child.type === 'dir' ? this.digestSync(child, r) : this.leafRecord(child, r))}`;
      }
      const d = hashRecord(record);
      node.digest = d;
      return d;
    }
    return hashRecord(this.leafRecord(node, rel));
  }

  /** What identifies a file, symlink or other non-directory: its header and content, link target or kind. */
  private leafRecord(node: Node, rel: string): string {
    const header = recordHeader(node);
    switch (node.type) {
      case 'symlink':
        return `${header}\n${readlinkName(path.join(this.dir, rel))}`;
      case 'file': {
        const digest = this.fileDigest(node);
        if (!digest) throw new Error(`${rel}: not hashed`);
        return `${header}\nsha256:${digest}`;
      }
      default:
        return `${header}\n${modeOf(node) >>> 12}`;
    }
  }

  /** The persistent index as a map for the walk (which drops it), read a line at a time; v1 files are read too. */
  private async loadIndex(): Promise<Map<string, IndexRow>> {
    const index = new Map<string, IndexRow>();
    if (!this.indexFile) return index;
    try {
      let rest = '';
      let first = true;
      const take = (line: string) => {
        if (first) {
          first = false;
          if (line !== INDEX_V2) throw new OldIndex(line);
          return;
        }
        let row: unknown;
        try {
          row = JSON.parse(line);
        } catch {
          return; // a damaged line: that file is read again
        }
        if (Array.isArray(row) && row.length === 6 && typeof row[0] === 'string' && typeof row[5] === 'string') index.set(row[0], row as IndexRow);
      };
      for await (const chunk of fs.createReadStream(this.indexFile, { encoding: 'utf8', highWaterMark: 1 << 20 })) {
        const lines = (rest + (chunk as string)).split('\n');
        rest = lines.pop()!;
        for (const line of lines) take(line);
        if (first && rest.length > 64) take(rest); // not a line-per-file index
      }
      if (rest) take(rest);
    } catch (e) {
      if (e instanceof OldIndex) return this.loadIndexV1();
      index.clear();
    }
    return index;
  }

  /** An index written by an earlier version: one JSON object, path -> entry. */
  private async loadIndexV1(): Promise<Map<string, IndexRow>> {
    const index = new Map<string, IndexRow>();
    try {
      const parsed = JSON.parse(await fsp.readFile(this.indexFile!, 'utf8')) as Record<string, { size: number; mtimeMs: number; ctimeMs: number; ino: number; digest: string }>;
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return index;
      for (const [k, e] of Object.entries(parsed)) {
        if (typeof e?.digest === 'string') index.set(k, [k, e.size, e.mtimeMs, e.ctimeMs, e.ino, e.digest.replace(/^sha256:/, '')]);
      }
    } catch {
      index.clear();
    }
    return index;
  }
}

/** The index file is not of this version (a v1 file, or anything else). */
class OldIndex extends Error {}

/** The node at `rel` (slash-separated, '' for the root): a binary search in each directory on the way. */
function lookup(root: Node, rel: string): Node | undefined {
  if (!rel) return root;
  let node: Node = root;
  for (const name of rel.split('/')) {
    const kids = node.children;
    if (!kids) return undefined;
    let lo = 0;
    let hi = kids.length - 1;
    let found: Node | undefined;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const n = kids[mid].name;
      if (n === name) { found = kids[mid]; break; }
      if (n < name) lo = mid + 1;
      else hi = mid - 1;
    }
    if (!found) return undefined;
    node = found;
  }
  return node;
}

/** Calls `fn` for `top` and everything below it, in no particular order; no recursion. */
function forEachUnder(top: Node, rel: string, fn: (node: Node, rel: string) => void): void {
  const stack: [Node, string][] = [[top, rel]];
  while (stack.length > 0) {
    const [node, r] = stack.pop()!;
    fn(node, r);
    for (const c of node.children ?? []) stack.push([c, r ? `${r}/${c.name}` : c.name]);
  }
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** sha256 of a record's bytes (names that are not UTF-8 as the bytes they stand for). */
const hashRecord = (record: string): Digest => sha256(hasEscapedBytes(record) ? nameBytes(record) : record);

const modeOf = (n: Node) => n.stats[n.at + Scan.mode];
const sizeOf = (n: Node) => n.stats[n.at + Scan.size];
const inoOf = (n: Node) => n.stats[n.at + Scan.ino];
/** Milliseconds as fs.Stats' mtimeMs and ctimeMs (and so the index) have them. */
const mtimeMs = (n: Node) => n.stats[n.at + Scan.mtime] * 1e3 + n.stats[n.at + Scan.mtimeNsec] / 1e6;
const ctimeMs = (n: Node) => n.stats[n.at + Scan.ctime] * 1e3 + n.stats[n.at + Scan.ctimeNsec] / 1e6;

/** The last header made, and what from: the entries of a tree mostly share one. */
let header = { type: '', mode: -1, uid: -1, gid: -1, text: '' };

function recordHeader(node: Node): string {
  const { stats, at } = node;
  const mode = stats[at + Scan.mode] & 0o7777;
  const uid = stats[at + Scan.uid];
  const gid = stats[at + Scan.gid];
  if (node.type !== header.type || mode !== header.mode || uid !== header.uid || gid !== header.gid) {
    header = { type: node.type, mode, uid, gid, text: `${node.type} ${mode.toString(8)} ${uid}:${gid}` };
  }
  return header.text;
}

function countSlashes(s: string): number {
  let n = 0;
  for (let i = s.indexOf('/'); i !== -1; i = s.indexOf('/', i + 1)) n++;
  return n;
}

function toNode(name: string, st: fs.BigIntStats): Node {
  const type = st.isDirectory() ? 'dir' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : 'other';
  const stats = new Float64Array(Scan.fields);
  stats[Scan.mode] = Number(st.mode);
  stats[Scan.uid] = Number(st.uid);
  stats[Scan.gid] = Number(st.gid);
  stats[Scan.size] = Number(st.size);
  stats[Scan.ino] = Number(st.ino);
  stats[Scan.mtime] = Number(st.mtimeNs / 1_000_000_000n);
  stats[Scan.mtimeNsec] = Number(st.mtimeNs % 1_000_000_000n);
  stats[Scan.ctime] = Number(st.ctimeNs / 1_000_000_000n);
  stats[Scan.ctimeNsec] = Number(st.ctimeNs % 1_000_000_000n);
  return { name, type, stats, at: 0, children: undefined, digest: undefined };
}

/**
 * A small file read and hashed synchronously: through promises, each of its open, read and close would
 * cost more than the call (a 1 KiB file reads in microseconds from the page cache).
 */
function hashSmallFile(name: string): { hex: string; size: number } {
  readBuffer ??= Buffer.allocUnsafe(SMALL_FILE);
  const h = createHash('sha256');
  const fd = fs.openSync(osPath(name), 'r');
  let size = 0;
  try {
    for (let n = fs.readSync(fd, readBuffer, 0, readBuffer.length, null); n > 0; n = fs.readSync(fd, readBuffer, 0, readBuffer.length, null)) {
      h.update(readBuffer.subarray(0, n));
      size += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  return { hex: h.digest('hex'), size };
}

/** A big file read through the threadpool, a chunk at a time, so the event loop keeps turning. */
/** A file's xattrs as `name=hexvalue` lines in name order; '' when it has none (or they cannot be read). */
function xattrRecord(file: string): string {
  try {
    const names = listXattrs(file).filter((n) => !n.startsWith('trusted.overlay.')).sort();
    return names.map((n) => `${n}=${getXattr(file, n)?.toString('hex') ?? ''}`).join('\n');
  } catch {
    return '';
  }
}

async function hashFile(name: string): Promise<{ hex: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  for await (const chunk of fs.createReadStream(osPath(name), { highWaterMark: 1 << 20 })) {
    h.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { hex: h.digest('hex'), size };
}
