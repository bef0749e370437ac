// The OCI exporter: an image layout tarball, as `docker buildx build --output type=oci` writes it. Several
// platforms are gathered under one nested index blob, which index.json then names.
import type { Platform } from '../../solver/llb/ops.js';
import type { ContentStore } from '../content/store.js';
import { MediaType, type Descriptor, type Index } from '../image/types.js';
import { parseReference } from '../registry/reference.js';
import { layoutIndex, reachableBlobs, writeLayoutDir, writeLayoutTar, type LayoutTarWrite } from './layout.js';
import type { RecordedOutput } from './uptodate.js';

export interface TarExportOptions {
  /** A file path, or `-` for standard output. */
  dest: string;
  /** Full image names (`docker.io/library/app:1`) to annotate the image with. */
  names: string[];
  /** A destination this state directory records (uptodate.ts): only what changed since is written. */
  record?: RecordedOutput;
}

export async function exportOCITar(
  store: ContentStore,
  images: { manifest: Descriptor; platform?: Platform }[],
  opts: TarExportOptions,
): Promise<Descriptor> {
  const root = images.length === 1 ? images[0].manifest : await writeImageIndex(store, images);
  const blobs = await reachableBlobs(store, [root]);
  const index = layoutIndex(root, opts.names.map(parseReference));
  await writeLayoutTar(store, { blobs, index }, opts.dest, { record: opts.record });
  return root;
}

/** The layout tarball of an image already in the store (a manifest or an index). */
export async function exportLayoutTar(store: ContentStore, root: Descriptor, opts: TarExportOptions): Promise<LayoutTarWrite> {
  const blobs = await reachableBlobs(store, [root]);
  return writeLayoutTar(store, { blobs, index: layoutIndex(root, opts.names.map(parseReference)) }, opts.dest, { record: opts.record });
}

/** One layout tarball holding several stored images (`builder save --format oci`), each under its names. */
export async function exportLayoutImages(store: ContentStore, images: { root: Descriptor; names: string[] }[], dest: string): Promise<void> {
  const blobs = await reachableBlobs(store, images.map((i) => i.root));
  const index: Index = { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: images.flatMap((i) => layoutIndex(i.root, i.names.map(parseReference)).manifests) };
  await writeLayoutTar(store, { blobs, index }, dest);
}

/** The same layout as a directory (`tar=false`), as umoci and skopeo's `oci:` transport read it. */
export async function exportLayoutDir(store: ContentStore, root: Descriptor, opts: TarExportOptions): Promise<void> {
  const blobs = await reachableBlobs(store, [root]);
  await writeLayoutDir(store, { blobs, index: layoutIndex(root, opts.names.map(parseReference)) }, opts.dest);
}

/** The multi-platform index (a Docker manifest list for Docker manifests), stored like any other blob. */
export async function writeImageIndex(
  store: ContentStore, images: { manifest: Descriptor; platform?: Platform }[], attestations: Descriptor[] = [],
): Promise<Descriptor> {
  const mediaType = attestations.length === 0 && images.every((i) => i.manifest.mediaType === MediaType.dockerManifest) ? MediaType.dockerManifestList : MediaType.ociIndex;
  const index: Index = {
    schemaVersion: 2,
    mediaType,
    manifests: images.map(({ manifest, platform }) => ({
      mediaType: manifest.mediaType,
      digest: manifest.digest,
      size: manifest.size,
      ...(platform ? { platform: { ...platform } } : {}),
    })).concat(attestations),
  };
  const written = await store.write(Buffer.from(JSON.stringify(index)));
  return { mediaType, digest: written.digest, size: written.size };
}
