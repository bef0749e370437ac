// The remote cache format shared by every backend (local directory, registry, inline): a cache config
// blob lists layer blobs (descriptor, diff id, creation time) and records (cache key -> chain of those
// layers, bottom to top). Keys are the solver's content-based cache keys, so they match on any machine.
// The config travels as the config of an OCI image manifest whose layers are the blobs (see docs/cache.md).
import type { Digest } from '../../../solver/llb/ops.js';
import { MediaType, type Descriptor, type Manifest } from '../../image/types.js';
import { UserError } from '../../util/errors.js';

export const CACHE_CONFIG_MEDIA_TYPE = 'application/vnd.builder.cache.config.v1+json';
/** The image config field holding inline cache (records naming the image's own layers by index). */
export const INLINE_CACHE_FIELD = 'builder.cache.v1';

export interface CacheLayer {
  blob: Descriptor;
  diffID: Digest;
  /** When the layer was made (ISO time): an image exported from a cache hit keeps the first build's times. */
  created?: string;
  /** The layer's content digest (early cutoff: an import compares contents without pulling); optional. */
  content?: Digest;
}

export interface CacheRecordEntry {
  key: Digest;
  /** Indexes into `layers`, bottom to top. */
  layers: number[];
  /** Last export of this record (ISO time): what pruning by age looks at. */
  exported?: string;
  /** The step's content key (early cutoff), so an import that hits by `key` exports it again. */
  contentKey?: Digest;
}

export interface CacheConfig {
  version: 1;
  layers: CacheLayer[];
  records: CacheRecordEntry[];
}

/** One record resolved: the chain of layers a cache key stands for. */
export interface ResolvedRecord {
  key: Digest;
  layers: CacheLayer[];
  exported?: string;
  contentKey?: Digest;
}

export class InvalidCacheError extends UserError {
  constructor(message: string) { super('INVALID_CACHE', message); }
}

const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;

/** Parses and checks a cache config; anything malformed is an InvalidCacheError (the import warns and skips). */
export function parseCacheConfig(bytes: Buffer | string, where: string): CacheConfig {
  let doc: CacheConfig;
  try {
    doc = JSON.parse(bytes.toString()) as CacheConfig;
  } catch {
    throw new InvalidCacheError(`${where}: cache config is not valid JSON`);
  }
  if (doc?.version !== 1 || !Array.isArray(doc.layers) || !Array.isArray(doc.records)) {
    throw new InvalidCacheError(`${where}: not a cache config of version 1`);
  }
  for (const l of doc.layers) {
    if (!DIGEST_RE.test(l?.blob?.digest ?? '') || !DIGEST_RE.test(l.diffID ?? '') || typeof l.blob.size !== 'number' || typeof l.blob.mediaType !== 'string') {
      throw new InvalidCacheError(`${where}: malformed layer entry`);
    }
    // Only a well-formed content digest is trusted; anything else is dropped (the layer is hashed when needed).
    if (l.content !== undefined && !DIGEST_RE.test(l.content)) delete l.content;
  }
  for (const r of doc.records) {
    if (!DIGEST_RE.test(r?.key ?? '') || !Array.isArray(r.layers) || r.layers.some((i) => !Number.isInteger(i) || i < 0 || i >= doc.layers.length)) {
      throw new InvalidCacheError(`${where}: malformed record`);
    }
    if (r.contentKey !== undefined && !DIGEST_RE.test(r.contentKey)) delete r.contentKey;
  }
  return doc;
}

export function resolveRecords(config: CacheConfig): ResolvedRecord[] {
  return config.records.map((r) => ({
    key: r.key, layers: r.layers.map((i) => config.layers[i]), exported: r.exported, ...(r.contentKey ? { contentKey: r.contentKey } : {}),
  }));
}

/** A config from resolved records: layers deduplicated by blob digest, records sorted by key (stable output). */
export function buildCacheConfig(records: Iterable<ResolvedRecord>): CacheConfig {
  const layers: CacheLayer[] = [];
  const index = new Map<string, number>();
  const byKey = new Map<string, ResolvedRecord>();
  for (const r of records) byKey.set(r.key, r);
  const out: CacheRecordEntry[] = [];
  for (const r of [...byKey.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))) {
    const idx = r.layers.map((l) => {
      let i = index.get(l.blob.digest);
      if (i === undefined) {
        i = layers.length;
        index.set(l.blob.digest, i);
        layers.push({ blob: { mediaType: l.blob.mediaType, digest: l.blob.digest, size: l.blob.size }, diffID: l.diffID, ...(l.created ? { created: l.created } : {}), ...(l.content ? { content: l.content } : {}) });
      }
      return i;
    });
    out.push({ key: r.key, layers: idx, ...(r.exported ? { exported: r.exported } : {}), ...(r.contentKey ? { contentKey: r.contentKey } : {}) });
  }
  return { version: 1, layers, records: out };
}

/** The manifest carrying a cache config: the config as its config, every layer blob as a layer. */
export function cacheManifest(config: CacheConfig, configDesc: Descriptor): Manifest {
  return {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: configDesc,
    layers: config.layers.map((l) => ({ mediaType: l.blob.mediaType, digest: l.blob.digest, size: l.blob.size })),
  };
}
