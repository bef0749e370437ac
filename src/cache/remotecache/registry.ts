// A cache in a registry (`--cache-to type=registry,ref=REF`, `--cache-from type=registry,ref=REF`): an OCI
// image manifest whose config is the cache config (its own media type) and whose layers are the blobs,
// pushed under REF's tag. Pushing HEADs each blob first and mounts from the build's base repositories, so
// only new blobs travel. Reading REF also accepts an image that carries inline cache (see inline.ts).
import type { Digest, Platform } from '../../../solver/llb/ops.js';
import type { ContentStore } from '../../content/store.js';
import type { RegistryClient } from '../../registry/client.js';
import { choosePlatform } from '../../registry/client.js';
import { pushImage } from '../../registry/push.js';
import type { Reference } from '../../registry/reference.js';
import { MediaType, isIndexType, type Descriptor, type Index, type Manifest } from '../../image/types.js';
import {
  CACHE_CONFIG_MEDIA_TYPE, buildCacheConfig, cacheManifest, parseCacheConfig, resolveRecords,
  type CacheLayer, type ResolvedRecord,
} from './format.js';
import { inlineRecords } from './inline.js';
import type { CacheSource } from './source.js';

/** `--cache-from type=registry,ref=REF`: a cache manifest, or an image (or index of images) with inline cache. */
export async function openRegistryCache(client: RegistryClient, ref: Reference, platforms: Platform[]): Promise<CacheSource> {
  const top = await client.getManifest(ref);
  const manifests: Manifest[] = [];
  if (isIndexType(top.mediaType)) {
    // An image index: the images of the build's platforms (their inline cache).
    const index = top.json as Index;
    for (const p of platforms) {
      const d = choosePlatform(index.manifests ?? [], p);
      if (d) manifests.push((await client.getManifest(ref, d.digest)).json as Manifest);
    }
  } else {
    manifests.push(top.json as Manifest);
  }
  const where = `cache ref ${ref.toString()}`;
  const records: ResolvedRecord[] = [];
  for (const m of manifests) {
    const configBytes = await client.getBlob(ref, m.config);
    if (m.config.mediaType === CACHE_CONFIG_MEDIA_TYPE) records.push(...resolveRecords(parseCacheConfig(configBytes, where)));
    else records.push(...inlineRecords(configBytes, m, where));
  }
  return {
    name: where,
    records: new Map(records.map((r) => [r.key, r] as const)),
    check: async (layer) => {
      const res = await client.send(ref, 'HEAD', `${client.repositoryURL(ref)}blobs/${layer.blob.digest}`, { access: 'pull', okStatus: [404], what: `blobs/${layer.blob.digest}` });
      await res.body?.cancel();
      return res.status === 404 ? 'is missing' : null;
    },
    fetch: (layer, store) => client.fetchBlob(ref, layer.blob, store),
  };
}

export interface RegistryExportOptions {
  /** Brings a layer's blob into the content store, when the registry lacks it and it is not there. */
  provide(layer: CacheLayer): Promise<void>;
  /** Repositories that may hold the blobs already (the build's base images): tried as mounts. */
  mountFrom: Reference[];
}

/** Pushes the records as a cache manifest under `ref` (replacing what the tag named). */
export async function writeRegistryCache(
  client: RegistryClient, store: ContentStore, ref: Reference, records: ResolvedRecord[], opts: RegistryExportOptions,
): Promise<{ uploaded: number; present: number; manifest: Digest }> {
  const now = new Date().toISOString();
  const config = buildCacheConfig(records.map((r) => ({ ...r, exported: now })));
  const configBlob = await store.write(Buffer.from(JSON.stringify(config)));
  const configDesc: Descriptor = { mediaType: CACHE_CONFIG_MEDIA_TYPE, digest: configBlob.digest, size: configBlob.size };
  const manifestBlob = await store.write(Buffer.from(JSON.stringify(cacheManifest(config, configDesc))));
  const root: Descriptor = { mediaType: MediaType.ociManifest, digest: manifestBlob.digest, size: manifestBlob.size };
  const byDigest = new Map(config.layers.map((l) => [l.blob.digest as string, l] as const));
  let uploaded = 0;
  let present = 0;
  await pushImage(client, store, root, [ref], {
    mountFrom: opts.mountFrom,
    // Layer blobs only: the config is new whenever a record's export time is.
    onBlob: (d, how) => { if (!byDigest.has(d.digest)) return; if (how === 'uploaded') uploaded++; else present++; },
    provide: async (d) => {
      const l = byDigest.get(d.digest);
      if (l && !(await store.verify(d.digest as Digest))) await opts.provide(l);
    },
  });
  return { uploaded, present, manifest: root.digest };
}
