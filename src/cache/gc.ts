// Disk usage and garbage collection of the state directory. GC walks from the roots (cache records and
// pulled-layer records) to the snapshots they name, never the other way round: what no root reaches is
// removed, records first so no record ever names a missing snapshot. Eviction is least recently used
// first (a record's mtime is its last use). Then the content store is swept as containerd's GC does: every
// blob something holds is marked (heldContent: the layer blobs of the snapshots kept, the image documents
// their pulled layers came from, stored images and the images of `builder run` containers, each walked
// through its index and manifest JSON), and the rest is removed with its member index once unused for
// CONTENT_GRACE_MS: the provenance, attestation manifests and indexes every build writes anew, configs and
// manifests of archive outputs, blobs of images removed or never stored (push, imagetools create).
// Archive outputs' records (src/exporter/uptodate.ts) hold nothing: a rebuild keeps the common start from
// the archive file itself, never from the store. Cache records name snapshots only.
// Callers hold the state directory's lock.
import fs from 'node:fs/promises';
import { constants as fsConstants } from 'node:fs';
import path from 'node:path';
import type { Digest } from '../../solver/llb/ops.js';
import { Snapshotter } from '../snapshot/snapshotter.js';
import { ContentStore } from '../content/store.js';
import { scanDir, Scan } from '../native/fsx.js';
import { writeFileAtomic } from '../util/fs.js';
import { Limiter } from '../util/limiter.js';
import { osPath, readdirNamesAsync } from '../util/names.js';
import { CacheRecords } from './records.js';
import { imageRecords, imagesUsage, openStores, reachableContent } from '../image/records.js';

/**
 * How long a blob nothing references is kept after it was last written or reused (its mtime; see
 * ContentStore.touch). Builds, `builder run`, `commit` and `imagetools create` register in `locks/` and GC
 * runs only when none is live (withStateExclusive, BuildSession.ifAlone), so the blobs they have not
 * recorded yet are safe anyway. The grace covers what runs outside that: `pull` and `load` (which record
 * under the state lock, and check their blobs again there first), the GC caller's own layer blobs still
 * settling, and any other writer of the store. An hour is longer than any of those plausibly takes between
 * writing a blob and recording it, and costs only the small documents of the last hour's builds.
 */
export const CONTENT_GRACE_MS = 60 * 60 * 1000;

/**
 * A build that added blobs collects unreferenced content once the store has this many more blobs than the
 * last collection left, or a quarter more: the mark costs as much as the state is large, so collections
 * are that far apart (amortized, constant per blob written).
 */
const CONTENT_DUE_MIN = 256;

export interface PruneOptions {
  /** Remove everything, pulled base layers included. */
  all?: boolean;
  /** Evict least recently used entries until the state is at most this many bytes. */
  keepStorage?: number;
  /** Only entries not used for this long (ms). */
  olderThanMs?: number;
}

export interface Usage {
  kinds: { kind: string; count: number; size: number; reclaimable: number }[];
  total: number;
  reclaimable: number;
}

interface Root {
  /** `container`: a `builder run` container's layers, kept until `builder rm`. */
  kind: 'cache' | 'layer' | 'container';
  file: string;
  lastUsed: number;
  layers: string[];
}

/**
 * A snapshot's size on disk and the layer blobs it remembers (its default gzip blob and other variants).
 * A refreshed COPY's snapshot hard-links the files of the one it was cloned from (`sharedWith`): its size
 * counts only what it does not share with it, so the two are not counted twice.
 */
interface SnapshotMeta { size: number; blobs?: Digest[]; sharedWith?: string; image?: Digest }

/** What a snapshot's info holds of the content store: its layer blobs, and (pulled) its image's top document. */
type SnapshotRefs = Pick<SnapshotMeta, 'blobs' | 'image'>;

export class GarbageCollector {
  readonly snapshots: Snapshotter;
  readonly store: ContentStore;
  private readonly records: CacheRecords;
  private readonly sizesFile: string;
  private sizes: Record<string, SnapshotMeta> | null = null;

  constructor(private readonly root: string) {
    this.snapshots = new Snapshotter(root);
    this.store = new ContentStore(path.join(root, 'content'));
    this.records = new CacheRecords(root, this.snapshots);
    this.sizesFile = path.join(root, 'cache', 'sizes.json');
  }

  /** Usage by kind; nothing is in use between builds (callers hold the lock), so all of it is reclaimable. */
  async usage(): Promise<Usage> {
    const roots = await this.roots();
    const meta = await this.snapshotMeta();
    const layerSnaps = reachable(roots.filter((r) => r.kind === 'layer'));
    const all = Object.keys(meta);
    const sum = (ids: Iterable<string>) => [...ids].reduce((n, id) => n + (meta[id]?.size ?? 0), 0);
    const built = all.filter((id) => !layerSnaps.has(id));
    const base = all.filter((id) => layerSnaps.has(id));
    const builtSize = sum(built);
    const baseSize = sum(base);
    const blobDigests = blobsOf(all, meta);
    const blobs = await this.blobSize(blobDigests);
    const mounts = await this.cacheMounts();
    const mountSize = mounts.reduce((n, m) => n + m.size, 0);
    // Stored images' blobs, each once however many images share it; those already counted as layer blobs
    // are not added to the total again. Not reclaimable by prune (rmi and image prune remove images).
    const images = await imagesUsage(this.root);
    let imageSize = 0;
    let imageOnly = 0;
    for (const [d, size] of images.blobs) {
      imageSize += size;
      if (!blobDigests.has(d as Digest)) imageOnly += size;
    }
    // Blobs nothing holds: reclaimable once unused for the grace period.
    const now = Date.now();
    const loose = await this.unreferenced(await this.heldContent(meta));
    const looseSize = loose.reduce((n, b) => n + b.size, 0);
    const looseOld = loose.reduce((n, b) => n + (now - b.lastUsed >= CONTENT_GRACE_MS ? b.size : 0), 0);
    const kinds = [
      { kind: 'build cache', count: built.length, size: builtSize, reclaimable: builtSize },
      { kind: 'cache mounts', count: mounts.length, size: mountSize, reclaimable: mountSize },
      { kind: 'base image layers', count: base.length, size: baseSize, reclaimable: baseSize },
      { kind: 'layer blobs', count: blobDigests.size, size: blobs, reclaimable: blobs },
      { kind: 'unreferenced blobs', count: loose.length, size: looseSize, reclaimable: looseOld },
      { kind: 'images', count: images.count, size: imageSize, reclaimable: 0 },
    ];
    const total = builtSize + baseSize + blobs + mountSize + imageOnly + looseSize;
    return { kinds, total, reclaimable: total - imageOnly - (looseSize - looseOld) };
  }

  /** Removes entries as asked, then everything no remaining root reaches; returns the bytes freed. */
  async prune(opts: PruneOptions): Promise<{ freed: number; removed: number }> {
    const now = Date.now();
    let roots = await this.roots();
    const meta = await this.snapshotMeta();
    const before = await this.totalSize(meta);
    const eligible = (r: Root) => r.kind !== 'container' &&
      (opts.all || r.kind === 'cache') && (opts.olderThanMs === undefined || now - r.lastUsed >= opts.olderThanMs);
    let removed = 0;
    const drop = async (r: Root) => {
      await fs.rm(r.file, { force: true });
      roots = roots.filter((x) => x !== r);
      removed++;
    };
    if (opts.keepStorage !== undefined) {
      // Least recently used first; cache records before base layers (those are cheap to pull again only
      // when the registry is reachable).
      const order = roots.filter((r) => eligible(r))
        .sort((a, b) => (a.kind === b.kind ? a.lastUsed - b.lastUsed : a.kind === 'cache' ? -1 : 1));
      for (const r of order) {
        if (sizeOf(reachable(roots), meta) <= opts.keepStorage) break;
        await drop(r);
      }
    } else {
      for (const r of [...roots]) if (eligible(r)) await drop(r);
    }
    const content = await this.sweep(reachable(roots), meta, Math.max(CONTENT_GRACE_MS, opts.olderThanMs ?? 0));
    removed += content.removed;
    const after = await this.totalSize(meta);
    // RUN cache mounts are build cache too (BuildKit prunes them with the rest); a size limit keeps them.
    let mountsFreed = 0;
    if (opts.keepStorage === undefined) {
      for (const m of await this.cacheMounts()) {
        if (opts.olderThanMs !== undefined && now - m.lastUsed < opts.olderThanMs) continue;
        await fs.rm(m.dir, { recursive: true, force: true });
        // Its sharing lock (src/worker/mounts.ts), left by a build that died holding it: no build runs now.
        await fs.rm(`${m.dir}.lock`, { force: true });
        mountsFreed += m.size;
        removed++;
      }
    }
    return { freed: Math.max(0, before - after) + mountsFreed + content.freed, removed };
  }

  /**
   * Removes the blobs nothing holds, unused for the grace period, and nothing else (after a build: see
   * contentCollectionDue). Snapshot sizes are not measured for it.
   */
  async collectContent(): Promise<{ freed: number; removed: number }> {
    const refs: Record<string, SnapshotRefs> = {};
    const dir = path.join(this.root, 'snapshots');
    for (const id of await fs.readdir(dir).catch(() => [] as string[])) {
      const info = await this.snapshots.info(id).catch(() => null);
      if (info) refs[id] = refsOf(info);
    }
    return this.sweepContent(await this.heldContent(refs), CONTENT_GRACE_MS);
  }

  /** `<root>/cache-mounts/*`: their sizes, and when a RUN last used each (the directory's mtime). */
  private async cacheMounts(): Promise<{ dir: string; size: number; lastUsed: number }[]> {
    const base = path.join(this.root, 'cache-mounts');
    const names = await fs.readdir(base).catch(() => [] as string[]);
    const out: { dir: string; size: number; lastUsed: number }[] = [];
    for (const name of names) {
      const dir = path.join(base, name);
      const st = await fs.lstat(dir).catch(() => null);
      if (!st?.isDirectory()) continue;
      out.push({ dir, size: await treeSize(dir), lastUsed: st.mtimeMs });
    }
    return out;
  }

  /**
   * Deletes snapshots no root reaches and the layer blobs only they remembered, then the blobs nothing holds
   * unused for `minAgeMs` (see sweepContent); returns what the latter freed.
   */
  private async sweep(keep: Set<string>, meta: Record<string, SnapshotMeta>, minAgeMs: number): Promise<{ freed: number; removed: number }> {
    // What the snapshots kept, stored images and containers hold stays whatever happens to the other snapshots.
    const keptBlobs = await this.heldContent(Object.fromEntries(Object.entries(meta).filter(([id]) => keep.has(id))));
    let removedAny = false;
    const goneImages = new Set<string>();
    for (const id of Object.keys(meta)) {
      if (keep.has(id)) continue;
      removedAny = true;
      const { blobs = [], sharedWith, image } = meta[id];
      await this.snapshots.remove(id);
      delete meta[id];
      for (const blob of blobs) if (!keptBlobs.has(blob as string)) await this.store.remove(blob);
      if (image) goneImages.add(image);
      // What a snapshot shared with this one is now its own (or shared with this one's own source).
      for (const [other, m] of Object.entries(meta)) {
        if (m.sharedWith !== id) continue;
        const source = sharedWith && meta[sharedWith] ? sharedWith : undefined;
        meta[other] = { ...m, sharedWith: source, size: await diskUsage(this.snapshots.fsPath(other), source && this.snapshots.fsPath(source)) };
      }
    }
    await this.saveSizes(meta);
    // Selection digests (early cutoff, src/cache/snapshothash.ts) are a cache keyed by snapshot ids and
    // uids: those of removed snapshots can never be used again, and the rest are made again when needed.
    if (removedAny) await fs.rm(path.join(this.root, 'cache', 'selections'), { recursive: true, force: true });
    // The documents of base images whose last pulled layer went go with it, as its blob did (held until
    // now: no grace to wait for).
    let docsFreed = 0;
    let docsRemoved = 0;
    for (const d of await reachableContent(this.store, goneImages)) {
      if (keptBlobs.has(d)) continue;
      const st = await this.store.stat(d as Digest);
      if (!st) continue;
      await this.store.remove(d as Digest);
      docsFreed += st.size;
      docsRemoved++;
    }
    const content = await this.sweepContent(keptBlobs, minAgeMs);
    content.freed += docsFreed;
    content.removed += docsRemoved;
    // Step hints (src/client/export.ts) keep the blobs that still exist; with none left they go.
    const stepsDir = path.join(this.root, 'cache', 'layer-steps');
    for (const name of await fs.readdir(stepsDir).catch(() => [] as string[])) {
      const file = path.join(stepsDir, name);
      const blobs = await fs.readFile(file, 'utf8').then((t) => (JSON.parse(t) as { blobs?: Digest[] }).blobs).catch(() => undefined);
      const left: Digest[] = [];
      for (const b of Array.isArray(blobs) ? blobs : []) if (await this.store.has(b).catch(() => false)) left.push(b);
      if (left.length === 0) await fs.rm(file, { force: true });
      else if (left.length !== blobs!.length) await writeFileAtomic(file, JSON.stringify({ blobs: left }));
    }
    return content;
  }

  /**
   * The mark: every blob something in the state directory holds. The layer blobs of the snapshots in `refs`,
   * the documents of the images their pulled layers came from, stored images (named and dangling) and the
   * images `builder run` containers were made from, each walked through its index and manifest JSON
   * (attestation manifests and their statements included). Linear in snapshots, images and documents.
   */
  private async heldContent(refs: Record<string, SnapshotRefs>): Promise<Set<string>> {
    const held = new Set<string>();
    const docs = new Set<string>();
    for (const r of Object.values(refs)) {
      for (const b of r.blobs ?? []) held.add(b);
      if (r.image) docs.add(r.image);
    }
    const { images } = openStores(this.root);
    for (const r of await imageRecords(images)) docs.add(r.target.digest);
    const containersDir = path.join(this.root, 'containers');
    for (const name of await fs.readdir(containersDir).catch(() => [] as string[])) {
      if (!name.endsWith('.json')) continue;
      const rec = await fs.readFile(path.join(containersDir, name), 'utf8').then((t) => JSON.parse(t) as { ImageTarget?: unknown }, () => null);
      if (typeof rec?.ImageTarget === 'string') docs.add(rec.ImageTarget);
    }
    return reachableContent(this.store, docs, held);
  }

  /** The blobs in the store that `held` lacks, with their size and last use (mtime: written or touched). */
  private async unreferenced(held: Set<string>): Promise<{ digest: Digest; size: number; lastUsed: number }[]> {
    const out: { digest: Digest; size: number; lastUsed: number }[] = [];
    const limiter = new Limiter(16);
    const names = await fs.readdir(path.join(this.store.root, 'blobs', 'sha256')).catch(() => [] as string[]);
    await Promise.all(names.filter((n) => HEX_RE.test(n) && !held.has(`sha256:${n}`)).map((name) => limiter.run(async () => {
      const st = await fs.lstat(path.join(this.store.root, 'blobs', 'sha256', name)).catch(() => null);
      if (st?.isFile()) out.push({ digest: `sha256:${name}` as Digest, size: st.size, lastUsed: st.mtimeMs });
    })));
    return out;
  }

  /**
   * Removes the blobs `held` lacks that were not used for `minAgeMs` (never less than the grace period),
   * each with its member index and unpacked size, then member indexes and unpacked sizes whose blob is gone.
   * Remembers how many blobs are left (contentCollectionDue).
   */
  private async sweepContent(held: Set<string>, minAgeMs: number): Promise<{ freed: number; removed: number }> {
    const now = Date.now();
    const old = (await this.unreferenced(held)).filter((b) => now - b.lastUsed >= Math.max(minAgeMs, CONTENT_GRACE_MS));
    // Side files by listing (most blobs have none), each removed before its blob (an index never names a
    // missing blob); several removals at once, as each waits for the thread pool.
    const sides = (['members', 'unpacked'] as const).map((dir) => ({ dir, names: new Set<string>() }));
    for (const side of sides) for (const name of await fs.readdir(path.join(this.store.root, side.dir)).catch(() => [] as string[])) side.names.add(name);
    const sideName = (dir: string, hex: string) => (dir === 'members' ? `${hex}.json` : hex);
    const limiter = new Limiter(16);
    await Promise.all(old.map((b) => limiter.run(async () => {
      const hex = b.digest.slice('sha256:'.length);
      for (const side of sides) {
        if (side.names.delete(sideName(side.dir, hex))) await fs.rm(path.join(this.store.root, side.dir, sideName(side.dir, hex)), { force: true });
      }
      await fs.rm(this.store.blobPath(b.digest), { force: true });
    })));
    // And those whose blob went some other way.
    const left = new Set(await fs.readdir(path.join(this.store.root, 'blobs', 'sha256')).catch(() => [] as string[]));
    for (const side of sides) {
      for (const name of side.names) {
        const hex = side.dir === 'members' ? name.replace(/\.json$/, '') : name;
        if (HEX_RE.test(hex) && !left.has(hex)) await fs.rm(path.join(this.store.root, side.dir, name), { force: true });
      }
    }
    await writeFileAtomic(contentStamp(this.root), String(left.size), { sync: false }).catch(() => undefined);
    return { freed: old.reduce((n, b) => n + b.size, 0), removed: old.length };
  }

  private async totalSize(meta: Record<string, SnapshotMeta>): Promise<number> {
    const ids = new Set(Object.keys(meta));
    return sizeOf(ids, meta) + (await this.blobSize(blobsOf(ids, meta)));
  }

  private async blobSize(digests: Set<Digest>): Promise<number> {
    let n = 0;
    for (const d of digests) n += (await this.store.stat(d))?.size ?? 0;
    return n;
  }

  private async roots(): Promise<Root[]> {
    const out: Root[] = [];
    for (const r of await this.records.list()) {
      out.push({ kind: 'cache', file: path.join(this.records.dir, r.key.replace('sha256:', '')), lastUsed: r.lastUsed, layers: r.layers });
    }
    const layersDir = path.join(this.root, 'layers');
    for (const name of await fs.readdir(layersDir).catch(() => [] as string[])) {
      const file = path.join(layersDir, name);
      try {
        const [text, st] = await Promise.all([fs.readFile(file, 'utf8'), fs.stat(file)]);
        const rec = JSON.parse(text) as { snapshot: string; parent?: string[] };
        if (typeof rec?.snapshot !== 'string' || !(rec.parent === undefined || Array.isArray(rec.parent))) continue;
        out.push({ kind: 'layer', file, lastUsed: st.mtimeMs, layers: [...(rec.parent ?? []), rec.snapshot] });
      } catch {
        // a temp file or a record removed meanwhile
      }
    }
    const containersDir = path.join(this.root, 'containers');
    for (const name of await fs.readdir(containersDir).catch(() => [] as string[])) {
      if (!name.endsWith('.json')) continue;
      const file = path.join(containersDir, name);
      const rec = await fs.readFile(file, 'utf8').then((t) => JSON.parse(t) as { Layers?: unknown; Upper?: unknown }, () => null);
      if (!rec || !Array.isArray(rec.Layers) || typeof rec.Upper !== 'string') continue;
      out.push({ kind: 'container', file, lastUsed: Date.now(), layers: [...(rec.Layers as string[]), rec.Upper] });
    }
    return out;
  }

  /** Size (and remembered blobs) per committed snapshot; sizes are measured once and kept in sizes.json. */
  async snapshotMeta(): Promise<Record<string, SnapshotMeta>> {
    if (!this.sizes) {
      this.sizes = await fs.readFile(this.sizesFile, 'utf8').then((t) => JSON.parse(t) as Record<string, SnapshotMeta>, () => ({}));
      if (typeof this.sizes !== 'object' || this.sizes === null || Array.isArray(this.sizes)) this.sizes = {};
    }
    const dir = path.join(this.root, 'snapshots');
    const out: Record<string, SnapshotMeta> = {};
    let changed = false;
    for (const id of await fs.readdir(dir).catch(() => [] as string[])) {
      if (!(await this.snapshots.exists(id))) continue;
      const info = ((await this.snapshots.info(id)) ?? {}) as { clonedFrom?: string };
      let known = this.sizes[id];
      if (!known) {
        const sharedWith = info.clonedFrom && (await this.snapshots.exists(info.clonedFrom)) ? info.clonedFrom : undefined;
        known = { size: await diskUsage(this.snapshots.fsPath(id), sharedWith && this.snapshots.fsPath(sharedWith)), sharedWith };
        changed = true;
      }
      out[id] = { size: known.size, ...(known.sharedWith ? { sharedWith: known.sharedWith } : {}), ...refsOf(info) };
    }
    if (changed || Object.keys(out).length !== Object.keys(this.sizes).length) await this.saveSizes(out);
    return out;
  }

  private async saveSizes(meta: Record<string, SnapshotMeta>): Promise<void> {
    this.sizes = { ...meta };
    await writeFileAtomic(this.sizesFile, JSON.stringify(meta));
  }
}

const HEX_RE = /^[0-9a-f]{64}$/;

/** `<root>/cache/content-gc`: how many blobs the last collection of unreferenced ones left. */
const contentStamp = (root: string) => path.join(root, 'cache', 'content-gc');

/**
 * Whether unreferenced content is due for collection: the store holds CONTENT_DUE_MIN more blobs than the
 * last collection left, or a quarter more (one directory listing: cheap enough after every build that
 * added blobs).
 */
export async function contentCollectionDue(root: string): Promise<boolean> {
  const [names, stamp] = await Promise.all([
    fs.readdir(path.join(root, 'content', 'blobs', 'sha256')).catch(() => [] as string[]),
    fs.readFile(contentStamp(root), 'utf8').catch(() => ''),
  ]);
  const last = Number(stamp) >= 0 ? Number(stamp) : 0;
  return names.length >= last + Math.max(CONTENT_DUE_MIN, last / 4);
}

/** A snapshot info's blobs (default and variants) and, for a pulled layer, the digest of its image (`source`). */
function refsOf(info: object): SnapshotRefs {
  const i = info as { blob?: { digest?: unknown }; variants?: Record<string, { digest?: unknown } | null>; source?: unknown };
  const blobs = [i.blob?.digest, ...Object.values(i.variants ?? {}).map((v) => v?.digest)].filter((d): d is Digest => typeof d === 'string');
  const image = typeof i.source === 'string' ? /@(sha256:[0-9a-f]{64})$/.exec(i.source)?.[1] as Digest | undefined : undefined;
  return { ...(blobs.length ? { blobs } : {}), ...(image ? { image } : {}) };
}

function reachable(roots: Root[]): Set<string> {
  const out = new Set<string>();
  for (const r of roots) for (const id of r.layers) out.add(id);
  return out;
}

function blobsOf(ids: Iterable<string>, meta: Record<string, SnapshotMeta>): Set<Digest> {
  const out = new Set<Digest>();
  for (const id of ids) for (const d of meta[id]?.blobs ?? []) out.add(d);
  return out;
}

function sizeOf(ids: Set<string>, meta: Record<string, SnapshotMeta>): number {
  let n = 0;
  for (const id of ids) n += meta[id]?.size ?? 0;
  return n;
}

/**
 * Bytes a directory tree occupies on disk (allocated blocks), not following symlinks; with `sharedWith`
 * (the tree it was hard-link cloned from), the files that are the same inode there are left out.
 */
async function diskUsage(dir: string, sharedWith?: string): Promise<number> {
  let total = 0;
  const walk = (d: string, other: string | undefined): void => {
    let scan: ReturnType<typeof scanDir>;
    try {
      scan = scanDir(d, { xattrs: false });
    } catch {
      return;
    }
    const twins = other ? sameNames(other) : null;
    for (const [i, name] of scan.names.entries()) {
      const o = i * Scan.fields;
      const kind = scan.stats[o + Scan.mode] & fsConstants.S_IFMT;
      if (kind === fsConstants.S_IFDIR) {
        total += scan.stats[o + Scan.blocks] * 512;
        walk(path.join(d, name), twins?.has(name) ? path.join(other!, name) : undefined);
        continue;
      }
      const twin = twins?.get(name);
      if (twin !== undefined && scan.stats[o + Scan.nlink] > 1 && twin === scan.stats[o + Scan.ino]) continue;
      total += scan.stats[o + Scan.blocks] * 512;
    }
  };
  walk(dir, sharedWith);
  return total;
}

/** A directory's entries' inode numbers by name (empty when it cannot be read). */
function sameNames(dir: string): Map<string, number> {
  try {
    const { names, stats } = scanDir(dir, { xattrs: false });
    return new Map(names.map((n, i) => [n, stats[i * Scan.fields + Scan.ino]]));
  } catch {
    return new Map();
  }
}

/** `10GB`, `512MB`, `1.5g`, `1024` (bytes), as buildx's --keep-storage. */
export function parseSize(s: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$/i.exec(s);
  if (!m) throw new Error(`invalid size ${JSON.stringify(s)}`);
  const unit = (m[2] ?? '').toLowerCase().replace(/i?b$/, '');
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[unit] ?? 1;
  return Math.round(Number(m[1]) * mult);
}

/** Go-style durations as buildx's `until=`: `24h`, `90m`, `1h30m`, `10s`. */
export function parseDuration(s: string): number {
  const re = /(\d+(?:\.\d+)?)(ms|h|m|s)/g;
  let total = 0;
  let consumed = 0;
  for (const m of s.matchAll(re)) {
    total += Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
    consumed += m[0].length;
  }
  if (consumed !== s.length || consumed === 0) throw new Error(`invalid duration ${JSON.stringify(s)}`);
  return total;
}

export function formatSize(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return `${i === 0 ? v : v.toFixed(2)}${units[i]}`;
}

async function treeSize(dir: string): Promise<number> {
  // Names as bytes (a RUN may write names that are not UTF-8: fs.readdir's strings would not find them).
  let n = 0;
  const dirs = [dir];
  for (let d = dirs.pop(); d !== undefined; d = dirs.pop()) {
    for (const name of await readdirNamesAsync(d).catch(() => [] as string[])) {
      const p = path.join(d, name);
      const st = await fs.lstat(osPath(p)).catch(() => null);
      if (st?.isDirectory()) dirs.push(p);
      else if (st?.isFile()) n += st.size;
    }
  }
  return n;
}
