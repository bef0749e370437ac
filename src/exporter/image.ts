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

/** And back: Docker schema2 names for `oci-mediatypes=false` (what `docker push` has always sent). */
const DOCKER_LAYER_TYPE: Record<string, string> = {
  [MediaType.ociLayerGzip]: MediaType.dockerLayerGzip,
  [MediaType.ociLayer]: 'application/vnd.docker.image.rootfs.diff.tar',
  [MediaType.ociLayerZstd]: 'application/vnd.docker.image.rootfs.diff.tar.zstd',
};

export interface WriteImageOptions {
  /** OCI media types (default) or Docker schema2 ones. */
  oci?: boolean;
  /** Annotations on the manifest (OCI only; schema2 has none). */
  annotations?: Record<string, string>;
}

export async function writeImage(
  store: ContentStore,
  image: { config: ImageConfigFile; layers: LayerDesc[] },
  opts: WriteImageOptions = {},
): Promise<{ manifest: Descriptor; config: Descriptor }> {
  const oci = opts.oci ?? true;
  const config: ImageConfigFile = { ...image.config, rootfs: { type: 'layers', diff_ids: image.layers.map((l) => l.diffID) } };
  const configBlob = await store.write(Buffer.from(JSON.stringify(config)));
  const configDesc: Descriptor = { mediaType: oci ? MediaType.ociConfig : MediaType.dockerConfig, digest: configBlob.digest, size: configBlob.size };
  const layerType = (t: string) => (oci ? OCI_LAYER_TYPE[t] ?? t : DOCKER_LAYER_TYPE[t] ?? t);
  const mediaType = oci ? MediaType.ociManifest : MediaType.dockerManifest;
  const annotations = oci && opts.annotations && Object.keys(opts.annotations).length ? opts.annotations : undefined;
  const manifest: Manifest = {
    schemaVersion: 2,
    mediaType,
    config: configDesc,
    layers: image.layers.map((l) => ({ mediaType: layerType(l.mediaType), digest: l.digest, size: l.size })),
    ...(annotations ? { annotations } : {}),
  };
  const manifestBlob = await store.write(Buffer.from(JSON.stringify(manifest)));
  return {
    manifest: { mediaType, digest: manifestBlob.digest, size: manifestBlob.size },
    config: configDesc,
  };
}
