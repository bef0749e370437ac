// The docker exporter: what `docker load` reads. Like BuildKit's, it is the OCI layout tarball plus Docker's
// manifest.json (config and layer paths into blobs/, tags), so OCI-aware tools read it too. The legacy
// `repositories` file is added for older loaders. `builder save` writes several images into one.
import type { ContentStore } from '../content/store.js';
import type { Descriptor, Index, Manifest } from '../image/types.js';
import { parseReference, type Reference } from '../registry/reference.js';
import { blobName, layoutIndex, reachableBlobs, writeLayoutTar, type LayoutTarWrite } from './layout.js';
import type { TarExportOptions } from './oci.js';
import type { RecordedOutput } from './uptodate.js';

export async function exportDockerTar(store: ContentStore, image: { manifest: Descriptor }, opts: TarExportOptions): Promise<LayoutTarWrite> {
  return exportDockerArchive(store, [{ root: image.manifest, manifest: image.manifest, names: opts.names }], opts.dest, { record: opts.record });
}

/**
 * A docker archive of several images: each `root` (a manifest or an index) in the layout under its names,
 * and in manifest.json its `manifest` (the root, or the platform of an index docker load should take).
 */
export async function exportDockerArchive(
  store: ContentStore, images: { root: Descriptor; manifest: Descriptor; names: string[] }[], dest: string,
  opts: { record?: RecordedOutput } = {},
): Promise<LayoutTarWrite> {
  const dockerManifest = [];
  const repositories: Record<string, Record<string, string>> = {};
  const index: Index = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] };
  for (const image of images) {
    const names = image.names.map(parseReference);
    const manifest = JSON.parse((await store.readBuffer(image.manifest.digest)).toString('utf8')) as Manifest;
    // docker load tags what it loads from RepoTags, in Docker's short form (`app:1`), tagged names only.
    const tagged = names.filter((n): n is Reference & { tag: string } => n.tag !== undefined);
    dockerManifest.push({
      Config: blobName(manifest.config),
      RepoTags: tagged.map((n) => `${n.familiarName}:${n.tag}`),
      Layers: manifest.layers.map(blobName),
    });
    for (const n of tagged) (repositories[n.familiarName] ??= {})[n.tag] = manifest.config.digest.slice('sha256:'.length);
    index.manifests.push(...layoutIndex(image.root, names).manifests);
  }
  const tagged = Object.keys(repositories).length > 0;
  return writeLayoutTar(
    store,
    {
      blobs: await reachableBlobs(store, images.map((i) => i.root)),
      index,
      extraFiles: [
        { name: 'manifest.json', data: Buffer.from(JSON.stringify(dockerManifest)) },
        ...(tagged ? [{ name: 'repositories', data: Buffer.from(JSON.stringify(repositories)) }] : []),
      ],
    },
    dest,
    opts,
  );
}
