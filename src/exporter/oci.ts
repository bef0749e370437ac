// The OCI exporter: an image layout tarball, as `docker buildx build --output type=oci` writes it. Several
// platforms are gathered under one nested index blob, which index.json then names.
import type { Platform } from '../../solver/llb/ops.js';
import type { ContentStore } from '../content/store.js';
import { MediaType, type Descriptor, type Index } from '../image/types.js';
import { parseReference } from '../registry/reference.js';
import { layoutIndex, reachableBlobs, writeLayoutDir, writeLayoutTar } from './layout.js';

export interface TarExportOptions {
  /** A file path, or `-` for standard output. */
  dest: string;
  /** Full image names (`docker.io/library/app:1`) to annotate the image with. */
  names: string[];
}

export async function exportOCITar(
  store: ContentStore,
  images: { manifest: Descriptor; platform?: Platform }[],
  opts: TarExportOptions,
): Promise<void> {
  const root = images.length === 1 ? images[0].manifest : await writeIndex(store, images);
  const blobs = await reachableBlobs(store, [root]);
  const index = layoutIndex(root, opts.names.map(parseReference));
  await writeLayoutTar(store, { blobs, index }, opts.dest);
}

/** The same layout as a directory (`tar=false`), as umoci and skopeo's `oci:` transport read it. */
export async function exportOCIDir(
  store: ContentStore,
  images: { manifest: Descriptor; platform?: Platform }[],
  opts: TarExportOptions,
): Promise<void> {
  const root = images.length === 1 ? images[0].manifest : await writeIndex(store, images);
  const blobs = await reachableBlobs(store, [root]);
  await writeLayoutDir(store, { blobs, index: layoutIndex(root, opts.names.map(parseReference)) }, opts.dest);
}

/** The multi-platform index, stored like any other blob so it is exported as one. */
async function writeIndex(store: ContentStore, images: { manifest: Descriptor; platform?: Platform }[]): Promise<Descriptor> {
  const index: Index = {
    schemaVersion: 2,
    mediaType: MediaType.ociIndex,
    manifests: images.map(({ manifest, platform }) => ({
      mediaType: manifest.mediaType,
      digest: manifest.digest,
      size: manifest.size,
      ...(platform ? { platform: { ...platform } } : {}),
    })),
  };
  const written = await store.write(Buffer.from(JSON.stringify(index)));
  return { mediaType: MediaType.ociIndex, digest: written.digest, size: written.size };
}
