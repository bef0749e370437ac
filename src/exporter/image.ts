// An image's config and OCI manifest, written to the content store beside its (already stored) layers.
import type { Digest } from '../../solver/llb/ops.js';
import type { ContentStore } from '../content/store.js';
import { MediaType, type Descriptor, type ImageConfigFile, type Manifest } from '../image/types.js';

export interface LayerDesc {
  digest: Digest;
  size: number;
  mediaType: string;
  /** Digest of the uncompressed tar. */
  diffID: Digest;
}

/** Docker layer types have OCI twins; an OCI manifest must use those. */
const OCI_LAYER_TYPE: Record<string, string> = {
  [MediaType.dockerLayerGzip]: MediaType.ociLayerGzip,
  'application/vnd.docker.image.rootfs.diff.tar': MediaType.ociLayer,
};

export async function writeImage(
  store: ContentStore,
  image: { config: ImageConfigFile; layers: LayerDesc[] },
): Promise<{ manifest: Descriptor; config: Descriptor }> {
  const config: ImageConfigFile = { ...image.config, rootfs: { type: 'layers', diff_ids: image.layers.map((l) => l.diffID) } };
  const configBlob = await store.write(Buffer.from(JSON.stringify(config)));
  const configDesc: Descriptor = { mediaType: MediaType.ociConfig, digest: configBlob.digest, size: configBlob.size };
  const manifest: Manifest = {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: configDesc,
    layers: image.layers.map((l) => ({ mediaType: OCI_LAYER_TYPE[l.mediaType] ?? l.mediaType, digest: l.digest, size: l.size })),
  };
  const manifestBlob = await store.write(Buffer.from(JSON.stringify(manifest)));
  return {
    manifest: { mediaType: MediaType.ociManifest, digest: manifestBlob.digest, size: manifestBlob.size },
    config: configDesc,
  };
}
