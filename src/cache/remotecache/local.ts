// A cache in a local directory (`--cache-to type=local,dest=DIR`, `--cache-from type=local,src=DIR`), an
// OCI image layout as buildx writes one: `blobs/sha256/<hex>` and `index.json` naming the cache manifest.
// Writers put blobs first (temp + rename, skipping those present), then the config and manifest, then
// index.json last by temp + rename, so a reader never sees a record whose blobs are not there. Many builds
// may share a directory: a writer holds `DIR/.lock` while it merges its records with those present.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import type { Digest } from '../../../solver/llb/ops.js';
import type { ContentStore } from '../../content/store.js';
import { MediaType, type Descriptor, type Index, type Manifest } from '../../image/types.js';
import { sha256 } from '../../../solver/llb/digest.js';
import { PidLock } from '../../util/pidlock.js';
import { copyFileAtomic, removeStaleTemps, writeFileAtomic } from '../../util/fs.js';
import {
  CACHE_CONFIG_MEDIA_TYPE, InvalidCacheError, buildCacheConfig, cacheManifest, parseCacheConfig, resolveRecords,
  type CacheLayer, type ResolvedRecord,
} from './format.js';
import type { CacheSource } from './source.js';

const REF_NAME = 'org.opencontainers.image.ref.name';
const TAG = 'latest';

const blobPath = (dir: string, digest: string) => path.join(dir, 'blobs', 'sha256', digest.replace(/^sha256:/, ''));

/** The records in a cache directory (none when it has no cache yet). Malformed content is an InvalidCacheError. */
export async function readLocalCache(dir: string): Promise<ResolvedRecord[]> {
  let indexText: string;
  try {
    indexText = await fsp.readFile(path.join(dir, 'index.json'), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const where = `cache dir ${dir}`;
  let index: Index;
  try {
    index = JSON.parse(indexText) as Index;
  } catch {
    throw new InvalidCacheError(`${where}: index.json is not valid JSON`);
  }
  const desc = (index.manifests ?? []).find((d) => d.annotations?.[REF_NAME] === TAG) ?? index.manifests?.[0];
  if (!desc) return [];
  const manifest = JSON.parse((await readVerified(dir, desc, where)).toString('utf8')) as Manifest;
  if (manifest.config?.mediaType !== CACHE_CONFIG_MEDIA_TYPE) throw new InvalidCacheError(`${where}: index.json does not name a cache manifest`);
  return resolveRecords(parseCacheConfig(await readVerified(dir, manifest.config, where), where));
}

async function readVerified(dir: string, desc: Descriptor, where: string): Promise<Buffer> {
  const bytes = await fsp.readFile(blobPath(dir, desc.digest)).catch(() => {
    throw new InvalidCacheError(`${where}: blob ${desc.digest} is missing`);
  });
  if (sha256(bytes) !== desc.digest) throw new InvalidCacheError(`${where}: blob ${desc.digest} is corrupt (digest mismatch)`);
  return bytes;
}

/** `--cache-from type=local,src=DIR`. */
export async function openLocalCache(dir: string): Promise<CacheSource> {
  const records = new Map((await readLocalCache(dir)).map((r) => [r.key, r] as const));
  return {
    name: `cache dir ${dir}`,
    records,
    // Reading the blob once is the price of never handing out a record that fails when used.
    check: async (layer) => {
      const file = blobPath(dir, layer.blob.digest);
      const st = await fsp.stat(file).catch(() => null);
      if (!st) return 'is missing';
      if (st.size !== layer.blob.size) return `is corrupt (size ${st.size}, expected ${layer.blob.size})`;
      const hash = createHash('sha256');
      await pipeline(fs.createReadStream(file), hash);
      return `sha256:${hash.digest('hex')}` === layer.blob.digest ? null : 'is corrupt (digest mismatch)';
    },
    fetch: async (layer, store) => {
      await store.write(fs.createReadStream(blobPath(dir, layer.blob.digest)), { digest: layer.blob.digest, size: layer.blob.size });
    },
  };
}

export interface LocalExportOptions {
  /** Brings a layer's blob into the content store when the directory lacks it (imported, not yet fetched). */
  provide(layer: CacheLayer): Promise<void>;
  /** Keep records in the directory that this export does not name (default true). */
  merge?: boolean;
  /** The export time recorded (default now). */
  now?: Date;
}

/** Writes records into a cache directory, merged with those there; returns the counts of blobs written and kept. */
export async function writeLocalCache(
  store: ContentStore, dir: string, records: ResolvedRecord[], opts: LocalExportOptions,
): Promise<{ written: number; present: number; records: number }> {
  await fsp.mkdir(path.join(dir, 'blobs', 'sha256'), { recursive: true });
  const lock = await PidLock.acquire(path.join(dir, '.lock'));
  try {
    const now = (opts.now ?? new Date()).toISOString();
    const merged = new Map<string, ResolvedRecord>();
    if (opts.merge ?? true) {
      // What others wrote stays, unless unreadable (then this export starts the directory afresh).
      const existing = await readLocalCache(dir).catch(() => [] as ResolvedRecord[]);
      for (const r of existing) merged.set(r.key, r);
    }
    for (const r of records) merged.set(r.key, { ...r, exported: now });
    let written = 0;
    let present = 0;
    const blobs = new Map<string, CacheLayer>();
    for (const r of records) for (const l of r.layers) blobs.set(l.blob.digest, l);
    await removeStaleTemps(path.join(dir, 'blobs', 'sha256'), { anyName: true });
    for (const l of blobs.values()) {
      const target = blobPath(dir, l.blob.digest);
      if (await fsp.stat(target).then((s) => s.size === l.blob.size, () => false)) { present++; continue; }
      if (!(await store.verify(l.blob.digest as Digest))) await opts.provide(l);
      await store.ensureSound(l.blob.digest as Digest);
      await copyFileAtomic(store.blobPath(l.blob.digest), target);
      written++;
    }
    // Records kept from before must still have their blobs (a pruned or damaged directory): drop the others.
    const ours = new Set(records.map((r) => r.key));
    const stated = new Map<string, Promise<boolean>>();
    const there = (l: CacheLayer) => {
      let p = stated.get(l.blob.digest);
      if (!p) {
        p = fsp.stat(blobPath(dir, l.blob.digest)).then((s) => s.size === l.blob.size, () => false);
        stated.set(l.blob.digest, p);
      }
      return p;
    };
    for (const [key, r] of merged) {
      if (ours.has(key as Digest)) continue;
      if ((await Promise.all(r.layers.map(there))).includes(false)) merged.delete(key);
    }
    await writeIndex(dir, [...merged.values()]);
    return { written, present, records: merged.size };
  } finally {
    await lock.release();
  }
}

/** Config and manifest blobs, then index.json by temp + rename. */
async function writeIndex(dir: string, records: ResolvedRecord[]): Promise<void> {
  const config = buildCacheConfig(records);
  const configBytes = Buffer.from(JSON.stringify(config));
  const configDesc: Descriptor = { mediaType: CACHE_CONFIG_MEDIA_TYPE, digest: sha256(configBytes) as Digest, size: configBytes.length };
  const manifestBytes = Buffer.from(JSON.stringify(cacheManifest(config, configDesc)));
  const manifestDesc: Descriptor = { mediaType: MediaType.ociManifest, digest: sha256(manifestBytes) as Digest, size: manifestBytes.length };
  await writeBlob(dir, configDesc.digest, configBytes);
  await writeBlob(dir, manifestDesc.digest, manifestBytes);
  const index: Index = { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [{ ...manifestDesc, annotations: { [REF_NAME]: TAG } }] };
  await writeFileAtomic(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFileAtomic(path.join(dir, 'index.json'), JSON.stringify(index));
}

export interface LocalPruneOptions {
  /** Drop records not exported for this long (ms). */
  olderThanMs?: number;
  /** Drop the least recently exported records until the blobs take at most this many bytes. */
  keepStorage?: number;
  /** What `olderThanMs` counts from (default now). */
  now?: Date;
}

/** Prunes a cache directory: records by age or size, then every blob no record (or the index) names. */
export async function pruneLocalCache(dir: string, opts: LocalPruneOptions): Promise<{ records: number; removed: number; freed: number }> {
  if (!(await fsp.stat(path.join(dir, 'index.json')).catch(() => null))) throw new InvalidCacheError(`${dir}: not a cache directory (no index.json)`);
  const lock = await PidLock.acquire(path.join(dir, '.lock'));
  try {
    let records = await readLocalCache(dir);
    const now = (opts.now ?? new Date()).getTime();
    const before = records.length;
    if (opts.olderThanMs !== undefined) {
      records = records.filter((r) => !r.exported || now - Date.parse(r.exported) < opts.olderThanMs!);
    }
    if (opts.keepStorage !== undefined) {
      const size = (rs: ResolvedRecord[]) => {
        const seen = new Map<string, number>();
        for (const r of rs) for (const l of r.layers) seen.set(l.blob.digest, l.blob.size);
        return [...seen.values()].reduce((a, b) => a + b, 0);
      };
      // Oldest export first.
      records.sort((a, b) => Date.parse(a.exported ?? '1970-01-01T00:00:00Z') - Date.parse(b.exported ?? '1970-01-01T00:00:00Z'));
      while (records.length && size(records) > opts.keepStorage) records.shift();
    }
    await writeIndex(dir, records);
    const keep = new Set<string>();
    const index = JSON.parse(await fsp.readFile(path.join(dir, 'index.json'), 'utf8')) as Index;
    for (const m of index.manifests) {
      keep.add(m.digest);
      const manifest = JSON.parse(await fsp.readFile(blobPath(dir, m.digest), 'utf8')) as Manifest;
      keep.add(manifest.config.digest);
      for (const l of manifest.layers) keep.add(l.digest);
    }
    let freed = 0;
    const blobDir = path.join(dir, 'blobs', 'sha256');
    for (const name of await fsp.readdir(blobDir)) {
      if (keep.has(`sha256:${name}`)) continue;
      const file = path.join(blobDir, name);
      freed += (await fsp.stat(file).catch(() => null))?.size ?? 0;
      await fsp.rm(file, { force: true });
    }
    return { records: records.length, removed: before - records.length, freed };
  } finally {
    await lock.release();
  }
}

async function writeBlob(dir: string, digest: Digest, data: Buffer): Promise<void> {
  const target = blobPath(dir, digest);
  if (await fsp.stat(target).then((s) => s.size === data.length, () => false)) return;
  await writeFileAtomic(target, data);
}



