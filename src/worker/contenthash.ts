// Content checksums of what a local source (the build context) and each COPY from it select, as BuildKit's
// contenthash: every path has a record (type, mode, uid/gid, content digest or link target) and a
// directory's digest folds in its children's names and digests. Nothing host-specific (path of the
// context, inode, times) enters a digest. A persistent metadata index (path, size, mtime, ctime, inode ->
// content digest) lets a rebuild stat files instead of reading them.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { createHash } from 'node:crypto';
import type { CopyAction, Digest } from '../../solver/llb/ops.js';
import { sha256 } from '../../solver/llb/digest.js';
import { writeFileAtomic } from '../util/fs.js';
import { goMatch, hasWildcard, PatternMatcher } from '../util/patterns.js';
import { Limiter } from '../util/limiter.js';
import { scanDir, scannedStats, type ScannedStats } from '../native/fsx.js';
import { nameBytes, osPath, readlinkName } from '../util/names.js';

interface Node {
  type: 'file' | 'dir' | 'symlink' | 'other';
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  ino: number;
  /** Sorted child names (directories). */
  children?: string[];
}

interface IndexEntry { size: number; mtimeMs: number; ctimeMs: number; ino: number; digest: Digest }

/** The copy reads through a symlink or selects something the tree cannot describe: checksum everything. */
const WHOLE = Symbol('whole');

export class ContextChecksummer {
  private tree: Promise<Map<string, Node>> | null = null;
  private readonly digests = new Map<string, Digest>();
  private readonly hashing = new Map<string, Promise<void>>();
  private index: Map<string, IndexEntry> | null = null;
  private indexLoad: Promise<Map<string, IndexEntry>> | null = null;
  private dirty = false;
  private readonly exclude?: PatternMatcher;
  /** Paths whose content changed since the index was written (for cache-miss explanations). */
  readonly changed = new Set<string>();
  /** Bytes of the files read (hashed) so far: what this build took of the context (progress shows it). */
  bytesRead = 0;

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
      let node = tree.get(r);
      if (!node) throw new Error(`${r}: not found`);
      // A symlink the copy follows: keyed by where it leads (and that path), not by the whole context.
      let to = r;
      if (node.type === 'symlink' && a.followSymlinks) {
        const resolved = this.resolveLinks(tree, r, true);
        if (resolved === null) return { digest: await this.digestOf(''), paths: [''] };
        to = resolved;
        node = tree.get(to);
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
    const tree = await this.loadTree();
    const index = await this.loadIndex();
    const out: Record<string, string> = {};
    const visit = (rel: string) => {
      const node = tree.get(rel);
      if (!node) return;
      if (node.type === 'dir') {
        for (const c of node.children ?? []) visit(rel ? `${rel}/${c}` : c);
      } else {
        out[rel] = this.leafRecord(node, index, rel);
      }
    };
    for (const r of roots) {
      if (tree.has(r)) await this.hashMissing(tree, index, r);
      visit(r);
    }
    return out;
  }

  /** Writes the metadata index if it changed. */
  async flush(): Promise<void> {
    if (!this.indexFile || !this.dirty || !this.index) return;
    const obj: Record<string, IndexEntry> = {};
    for (const [k, v] of this.index) obj[k] = v;
    await writeFileAtomic(this.indexFile, JSON.stringify(obj));
    this.dirty = false;
  }

  private select(tree: Map<string, Node>, a: CopyAction): string[] | typeof WHOLE {
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
    const walk = (rel: string, sub: string, level: number) => {
      const node = tree.get(rel);
      if (!node || node.type !== 'dir') return;
      for (const name of node.children ?? []) {
        const r = sub ? `${sub}/${name}` : name;
        const full = rel ? `${rel}/${name}` : name;
        if (goMatch(pattern, r)) out.push(full);
        else if (level < depth && tree.get(full)?.type === 'dir') walk(full, r, level + 1);
      }
    };
    walk(base, '', 1);
    return out;
  }

  /**
   * `rel` with the symlinks on its way resolved inside the context (an absolute target from its root, `..`
   * stopping there), the last one only with `followFinal`. Null when that cannot be told from the tree:
   * too many links (a loop, which the copy reports).
   */
  private resolveLinks(tree: Map<string, Node>, rel: string, followFinal: boolean): string | null {
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
      const node = tree.get(cur);
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

  private loadTree(): Promise<Map<string, Node>> {
    this.tree ??= Promise.resolve().then(() => this.walk());
    return this.tree;
  }

  /**
   * Synchronous on purpose: tens of thousands of lstat calls through promises cost several times more
   * than the calls themselves, and nothing else runs while the keys are computed.
   */
  private walk(): Map<string, Node> {
    const tree = new Map<string, Node>();
    const visit = (rel: string, node: Node): void => {
      tree.set(rel, node);
      if (node.type !== 'dir') return;
      const host = rel ? path.join(this.dir, rel) : this.dir;
      const kept: string[] = [];
      // One native scan per directory: no Stats object per entry.
      const { names, stats } = scanDir(host, { xattrs: false }); // records hold no xattrs
      const order = names.map((name, i) => ({ name, i })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      for (const { name, i } of order) {
        const r = rel ? `${rel}/${name}` : name;
        const child = toNode(scannedStats(stats, i));
        if (this.exclude?.matches(r)) {
          // An excluded directory is still searched when a `!` exception may re-include something below.
          if (!(child.type === 'dir' && this.exclude.hasExclusions && this.exclude.mayMatchBelow(r, true))) continue;
        }
        kept.push(name);
        visit(r, child);
      }
      node.children = kept;
    };
    visit('', toNode(fs.lstatSync(osPath(this.dir))));
    return tree;
  }

  private async digestOf(rel: string): Promise<Digest> {
    const tree = await this.loadTree();
    const index = await this.loadIndex();
    await this.hashMissing(tree, index, rel);
    return this.digestSync(tree, index, rel);
  }

  /** Reads the files under `rel` whose metadata the index does not vouch for. */
  private async hashMissing(tree: Map<string, Node>, index: Map<string, IndexEntry>, rel: string): Promise<void> {
    const todo: [string, Node][] = [];
    const visit = (r: string) => {
      const node = tree.get(r);
      if (!node) return;
      if (node.type === 'dir') {
        for (const c of node.children ?? []) visit(r ? `${r}/${c}` : c);
      } else if (node.type === 'file') {
        const known = index.get(r);
        if (!(known && known.size === node.size && known.mtimeMs === node.mtimeMs && known.ctimeMs === node.ctimeMs && known.ino === node.ino)) {
          todo.push([r, node]);
        }
      }
    };
    visit(rel);
    await Promise.all(todo.map(async ([r, node]) => {
      let p = this.hashing.get(r);
      if (!p) {
        this.bytesRead += node.size;
        p = hashLimit.run(() => hashFile(path.join(this.dir, r))).then((digest) => {
          const known = index.get(r);
          if (known && known.digest !== digest) this.changed.add(r);
          index.set(r, { size: node.size, mtimeMs: node.mtimeMs, ctimeMs: node.ctimeMs, ino: node.ino, digest });
          this.dirty = true;
        });
        this.hashing.set(r, p);
      }
      await p;
    }));
  }

  private digestSync(tree: Map<string, Node>, index: Map<string, IndexEntry>, rel: string): Digest {
    const memo = this.digests.get(rel);
    if (memo) return memo;
    const node = tree.get(rel);
    if (!node) throw new Error(`${rel}: not found`);
    let d: Digest;
    if (node.type === 'dir') {
      // A child that is not a directory enters as its record, not as a digest of it: one hash per
      // directory instead of one per file (tens of thousands of them in a big context).
      const kids = (node.children ?? []).map((c) => {
        const r = rel ? `${rel}/${c}` : c;
        const child = tree.get(r)!;
        return `${c}\0${child.type === 'dir' ? this.digestSync(tree, index, r) : this.leafRecord(child, index, r)}`;
      });
      d = sha256(nameBytes(`${recordHeader(node)}\n${kids.join('\n')}`));
    } else {
      d = sha256(nameBytes(this.leafRecord(node, index, rel)));
    }
    this.digests.set(rel, d);
    return d;
  }

  /** What identifies a file, symlink or other non-directory: its header and content, link target or kind. */
  private leafRecord(node: Node, index: Map<string, IndexEntry>, rel: string): string {
    const header = recordHeader(node);
    switch (node.type) {
      case 'symlink':
        return `${header}\n${readlinkName(path.join(this.dir, rel))}`;
      case 'file': {
        const known = index.get(rel);
        if (!known) throw new Error(`${rel}: not hashed`);
        return `${header}\n${known.digest}`;
      }
      default:
        return `${header}\n${node.mode >>> 12}`;
    }
  }

  /** Loaded once, however many files ask at the same time. */
  private loadIndex(): Promise<Map<string, IndexEntry>> {
    this.indexLoad ??= (async () => {
      let entries: Record<string, IndexEntry> = {};
      if (this.indexFile) {
        try {
          entries = JSON.parse(await fsp.readFile(this.indexFile, 'utf8')) as Record<string, IndexEntry>;
          if (typeof entries !== 'object' || entries === null || Array.isArray(entries)) entries = {};
        } catch {
          entries = {};
        }
      }
      this.index = new Map(Object.entries(entries));
      return this.index;
    })();
    return this.indexLoad;
  }
}

const recordHeader = (node: Node) => `${node.type} ${(node.mode & 0o7777).toString(8)} ${node.uid}:${node.gid}`;

function toNode(st: ScannedStats): Node {
  const type = st.isDirectory() ? 'dir' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : 'other';
  return { type, mode: st.mode, uid: st.uid, gid: st.gid, size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, ino: st.ino };
}

async function hashFile(name: string): Promise<Digest> {
  const file = osPath(name);
  const h = createHash('sha256');
  const st = await fsp.stat(file);
  if (st.size <= 1 << 20) {
    h.update(await fsp.readFile(file));
  } else {
    for await (const chunk of fs.createReadStream(file, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  }
  return `sha256:${h.digest('hex')}`;
}

const hashLimit = new Limiter(8);
