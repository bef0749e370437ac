// Inline cache (`--cache-to type=inline`): the cache config rides in the image config under
// INLINE_CACHE_FIELD, naming only the image's own layers, so pushing the image pushes the cache. It holds
// the records of the steps whose results are prefixes of the image's layer chain (mode=min by nature), and
// no export times: equal builds still give equal image digests. Read back with --cache-from type=registry.
import type { Descriptor, Manifest } from '../../image/types.js';
import { INLINE_CACHE_FIELD, InvalidCacheError, buildCacheConfig, parseCacheConfig, resolveRecords, type CacheConfig, type ResolvedRecord } from './format.js';

/** The inline cache for an image with `layers`: the records whose chains are prefixes of them. */
export function inlineConfig(records: ResolvedRecord[], layers: Descriptor[]): CacheConfig | undefined {
  const fits = records.filter((r) => r.layers.length > 0 && r.layers.length <= layers.length &&
    r.layers.every((l, i) => l.blob.digest === layers[i].digest));
  if (fits.length === 0) return undefined;
  return buildCacheConfig(fits.map(({ exported: _e, ...r }) => r));
}

/** Records an image config carries inline (none when it has no inline cache); blobs must be the image's layers. */
export function inlineRecords(configBytes: Buffer, manifest: Manifest, where: string): ResolvedRecord[] {
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(configBytes.toString('utf8')) as Record<string, unknown>;
  } catch {
    throw new InvalidCacheError(`${where}: image config is not valid JSON`);
  }
  const inline = config[INLINE_CACHE_FIELD];
  if (inline === undefined) return [];
  const layers = new Set(manifest.layers.map((l) => l.digest as string));
  return resolveRecords(parseCacheConfig(JSON.stringify(inline), where)).filter((r) => r.layers.every((l) => layers.has(l.blob.digest)));
}
