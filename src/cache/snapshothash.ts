// Content digests of committed snapshots, for early cutoff (content keys, see BuildCache.contentKey and
// docs/cache.md "Equal in content"). A layer's digest is a tree hash over its diff directory: per entry
// its path, type, permission bits, owner, size and content digest (files), link target (symlinks), device
// numbers (devices, overlay whiteouts) and extended attributes (overlay's opaque/redirect marks included,
// its per-machine bookkeeping not); no times, no inode numbers. A chain's digest folds its layers' digests
// in order. A selection's digest is the same tree hash over exactly what a copy reads from a chain.
// Committed snapshots never change, so each digest is computed once: a layer's is kept in its snapshot's
// info (it goes when the snapshot goes), a selection's in a small file under cache/selections/.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { createHash } from 'node:crypto';
import type { CopyAction, Digest } from '../../solver/llb/ops.js';
import { canonicalJSON, sha256 } from '../../solver/llb/digest.js';
import type { Snapshotter } from '../snapshot/snapshotter.js';
import { getXattr, listXattrs, Scan, scanDir } from '../native/fsx.js';
import { nameBytes, osPath, readdirNames, readlinkName } from '../util/names.js';
import { goMatch, hasWildcard } from '../util/patterns.js';
import { resolveInRoot } from '../archive/rootpath.js';
import { writeFileAtomic } from '../util/fs.js';
import { Limiter } from '../util/limiter.js';

/** Bump when what a digest covers changes: digests of another version never compare equal. */
const VERSION = 'builder.content.v1';

/** overlay's xattrs that say something about the content; the others (origin, impure, nlink, ...) are bookkeeping. */
const OVERLAY_MEANINGFUL = new Set(['trusted.overlay.opaque', 'trusted.overlay.redirect', 'trusted.overlay.metacopy']);

const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;

interface LayerInfo { diffID?: Digest; source?: string; content?: Digest; uid?: string }

export class SnapshotHasher {
  private readonly layers = new Map<string, Promise<Digest>>();
  private readonly selections = new Map<string, Promise<{ id: string; digest: Digest; files: Record<string, string> }>>();
  private readonly dir: string;
  /** Bytes of files read to compute digests (what the cutoff cost). */
  bytesRead = 0;

  constructor(private readonly snapshots: Snapshotter, root: string) {
    this.dir = path.join(root, 'cache', 'selections');
  }

  /**
   * A committed snapshot's content digest. A layer pulled from a registry is named by its diff id (the
   * digest of its tar, so equal diff ids are equal content; a layer that differs only in times is then
   * not recognised as equal, which only costs a cutoff): base images are never read for this.
   */
  layerDigest(id: string): Promise<Digest> {
    let p = this.layers.get(id);
    if (!p) {
      p = (async () => {
        const info = await this.snapshots.info<LayerInfo>(id);
        if (!info) throw new Error(`snapshot ${id} is not committed`);
        if (typeof info.content === 'string' && DIGEST_RE.test(info.content)) return info.content;
        const digest = info.source && info.diffID
          ? sha256(canonicalJSON([VERSION, 'diff', info.diffID]))
          : sha256(canonicalJSON([VERSION, 'tree', (await this.treeDigest(this.snapshots.fsPath(id), [''])).digest]));
        await this.snapshots.updateInfo<LayerInfo>(id, (cur) => ({ ...cur, content: digest })).catch(() => undefined);
        return digest;
      })();
      p.catch(() => this.layers.delete(id));
      this.layers.set(id, p);
    }
    return p;
  }

  /** The digest of a chain of layer content digests, bottom to top. */
  static chain(layerDigests: Digest[]): Digest {
    return sha256(canonicalJSON([VERSION, 'chain', layerDigests]));
  }

  async chainDigest(layers: string[]): Promise<Digest> {
    return SnapshotHasher.chain(await Promise.all(layers.map((id) => this.layerDigest(id))));
  }

  /**
   * The digest of what copy action `a` reads from the chain `layers`: the source path resolved as the copy
   * resolves it (symlinks on the way, in the root), and everything below it. A wildcard source covers the
   * whole directory it searches (a superset of the matches: safe), and what its matches that are symlinks
   * lead to when the copy follows them. Throws when the source is missing.
   */
  selectionDigest(layers: string[], a: CopyAction): Promise<Digest> {
    return this.selection(layers, a).then((s) => s.digest);
  }

  /**
   * What identifies each entry of a selection (path -> its record), for explaining which files changed,
   * and the id under which it is kept (`selectionFiles` reads it back in a later build); null when the
   * selection cannot be computed.
   */
  async selectionRecord(layers: string[], a: CopyAction): Promise<{ id: string; files: Record<string, string> } | null> {
    return this.selection(layers, a).then((s) => ({ id: s.id, files: s.files }), () => null);
  }

  /** The files of a selection kept under `id` by an earlier build, if still there. */
  async selectionFiles(id: string): Promise<Record<string, string> | null> {
    if (!/^[0-9a-f]{64}$/.test(id)) return null;
    const kept = await this.readSelection(path.join(this.dir, id));
    return kept?.files ?? null;
  }

  private async readSelection(file: string): Promise<{ digest: Digest; files: Record<string, string> } | null> {
    try {
      const v = JSON.parse(await fsp.readFile(file, 'utf8')) as { digest?: unknown; files?: unknown };
      if (typeof v.digest === 'string' && DIGEST_RE.test(v.digest) && typeof v.files === 'object' && v.files !== null && !Array.isArray(v.files)) {
        return { digest: v.digest as Digest, files: v.files as Record<string, string> };
      }
    } catch {
      // none, or unreadable: computed again
    }
    return null;
  }

  private selection(layers: string[], a: CopyAction): Promise<{ id: string; digest: Digest; files: Record<string, string> }> {
    const id = JSON.stringify([layers, a.src, a.followSymlinks, a.allowWildcard, a.requiredPaths ?? []]);
    let p = this.selections.get(id);
    if (!p) {
      p = this.computeSelection(layers, a);
      p.catch(() => this.selections.delete(id));
      this.selections.set(id, p);
    }
    return p;
  }

  private async computeSelection(layers: string[], a: CopyAction): Promise<{ id: string; digest: Digest; files: Record<string, string> }> {
    const uids = await Promise.all(layers.map((l) => this.snapshots.uid(l)));
    if (uids.some((u) => u === null)) throw new Error('snapshot is not committed');
    const id = sha256(JSON.stringify([VERSION, layers, uids, a.src, a.followSymlinks, a.allowWildcard, a.requiredPaths ?? []])).slice(7);
    const file = path.join(this.dir, id);
    const known = await this.readSelection(file);
    if (known) return { id, ...known };
    const mounted = await this.snapshots.mount(layers);
    let digest: Digest;
    let files: Record<string, string>;
    try {
      const root = mounted.target;
      const src = path.posix.join('/', a.src);
      const parts = src.split('/').filter(Boolean);
      const wild = a.allowWildcard ? parts.findIndex(hasWildcard) : -1;
      const fixed = `/${(wild === -1 ? parts : parts.slice(0, wild)).join('/')}`;
      const resolved = await resolveInRoot(root, fixed, wild === -1 ? a.followSymlinks : true);
      const rels = [path.relative(root, resolved)];
      for (const r of a.requiredPaths ?? []) rels.push(path.relative(root, await resolveInRoot(root, path.posix.join('/', r), a.followSymlinks)));
      for (const r of rels) if (r.startsWith('..')) throw new Error(`${a.src}: outside the root`);
      if (wild === -1 && !fs.lstatSync(osPath(resolved), { throwIfNoEntry: false })) throw new Error(`${a.src}: not found`);
      // A wildcard match that is a symlink is followed by the copy, possibly out of the searched directory:
      // what it leads to is selected too.
      if (wild !== -1 && a.followSymlinks) {
        for (const link of linkMatches(resolved, parts.slice(wild).join('/'))) {
          const to = path.relative(root, await resolveInRoot(root, `/${path.relative(root, link)}`, true));
          if (to.startsWith('..')) throw new Error(`${a.src}: outside the root`);
          rels.push(to);
        }
      }
      const tree = await this.treeDigest(root, rels);
      digest = sha256(canonicalJSON([VERSION, 'selection', rels, tree.digest]));
      files = tree.files;
    } finally {
      await mounted.unmount();
    }
    await writeFileAtomic(file, JSON.stringify({ digest, files })).catch(() => undefined);
    return { id, digest, files };
  }

  /**
   * The tree hash of `roots` (paths relative to `dir`; '' is all of it) and everything below them, and
   * each entry's record.
   */
  private async treeDigest(dir: string, roots: string[]): Promise<{ digest: Digest; files: Record<string, string> }> {
    const entries: { rel: string; header: string; file?: string }[] = [];
    const visitDir = (rel: string) => {
      const host = rel ? path.join(dir, rel) : dir;
      const { names, stats } = scanDir(host, { xattrs: true });
      const order = names.map((name, i) => ({ name, i })).sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
      for (const { name, i } of order) visit(rel ? `${rel}/${name}` : name, stats, i);
    };
    const visit = (rel: string, stats: Float64Array, i: number) => {
      const o = i * Scan.fields;
      const mode = stats[o + Scan.mode];
      const kind = mode & fs.constants.S_IFMT;
      const host = path.join(dir, rel);
      let header = `${(kind >>> 12).toString(8)} ${(mode & 0o7777).toString(8)} ${stats[o + Scan.uid]}:${stats[o + Scan.gid]}`;
      if (stats[o + Scan.xattrs] !== 0 || stats[o + Scan.opaque] !== 0) header += ` ${xattrRecord(host)}`;
      if (kind === fs.constants.S_IFLNK) {
        entries.push({ rel, header: `${header} -> ${readlinkName(host)}` });
      } else if (kind === fs.constants.S_IFREG) {
        entries.push({ rel, header: `${header} ${stats[o + Scan.size]}`, file: host });
      } else if (kind === fs.constants.S_IFDIR) {
        entries.push({ rel, header });
        visitDir(rel);
      } else {
        entries.push({ rel, header: `${header} ${stats[o + Scan.rdevMajor]},${stats[o + Scan.rdevMinor]}` });
      }
    };
    for (const r of roots) {
      const host = r ? path.join(dir, r) : dir;
      const st = fs.lstatSync(osPath(host), { throwIfNoEntry: false });
      if (!st) {
        entries.push({ rel: r, header: 'absent' });
        continue;
      }
      if (st.isDirectory()) {
        entries.push({ rel: r, header: `dir ${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid} ${xattrRecord(host)}` });
        visitDir(r);
      } else {
        // One entry, through a scan of its directory (the record is made the same way as below a directory).
        const parent = path.dirname(host);
        const { names, stats } = scanDir(parent, { xattrs: true });
        const i = names.indexOf(path.basename(host));
        if (i < 0) throw new Error(`${r}: not found`);
        visit(r, stats, i);
      }
    }
    const h = createHash('sha256');
    const digests = await Promise.all(entries.map((e) => (e.file ? this.fileDigest(e.file) : Promise.resolve(''))));
    const files: Record<string, string> = {};
    for (const [i, e] of entries.entries()) {
      const record = `${e.header}${digests[i] ? ` ${digests[i]}` : ''}`;
      h.update(nameBytes(e.rel));
      h.update(`\0${record}\n`);
      files[e.rel] = record;
    }
    return { digest: `sha256:${h.digest('hex')}`, files };
  }

  private fileDigest(file: string): Promise<string> {
    return hashLimit.run(async () => {
      const h = createHash('sha256');
      const name = osPath(file);
      const st = await fsp.stat(name);
      this.bytesRead += st.size;
      if (st.size <= 1 << 20) h.update(await fsp.readFile(name));
      else for await (const chunk of fs.createReadStream(name, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
      return h.digest('hex');
    });
  }
}

/**
 * The entries under `base` a wildcard `pattern` matches (as the copy walks: a matched directory is not
 * searched further) that are symlinks.
 */
function linkMatches(base: string, pattern: string): string[] {
  const depth = pattern.split('/').length;
  const out: string[] = [];
  const walk = (dir: string, rel: string, level: number) => {
    let names: string[];
    try {
      names = readdirNames(dir);
    } catch {
      return;
    }
    for (const name of names) {
      const r = rel ? `${rel}/${name}` : name;
      const host = path.join(dir, name);
      const st = fs.lstatSync(osPath(host), { throwIfNoEntry: false });
      if (!st) continue;
      if (goMatch(pattern, r)) {
        if (st.isSymbolicLink()) out.push(host);
      } else if (level < depth && st.isDirectory()) {
        walk(host, r, level + 1);
      }
    }
  };
  walk(base, '', 1);
  return out;
}

/** The extended attributes that count, sorted, values in hex: `{name=hex,...}`. */
function xattrRecord(host: string): string {
  const names = listXattrs(host).filter((n) => !n.startsWith('trusted.overlay.') || OVERLAY_MEANINGFUL.has(n)).sort();
  return `{${names.map((n) => `${n}=${getXattr(host, n)?.toString('hex') ?? ''}`).join(',')}}`;
}

const hashLimit = new Limiter(8);
