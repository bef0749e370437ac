// The docker exporter: what `docker load` reads. Like BuildKit's, it is the OCI layout tarball plus Docker's
// manifest.json (config and layer paths into blobs/, tags), so OCI-aware tools read it too. The legacy
// `repositories` file is added for older loaders.
import type { ContentStore } from '../content/store.js';
import type { Descriptor, Manifest } from '../image/types.js';
import { parseReference, type Reference } from '../registry/reference.js';
import { blobName, layoutIndex, reachableBlobs, writeLayoutTar } from './layout.js';
import type { TarExportOptions } from './oci.js';

export async function exportDockerTar(store: ContentStore, image: { manifest: Descriptor }, opts: TarExportOptions): Promise<void> {
  const names = opts.names.map(parseReference);
  const manifest = JSON.parse((await store.readBuffer(image.manifest.digest)).toString('utf8')) as Manifest;
  // docker load tags what it loads from RepoTags, in Docker's short form (`app:1`), tagged names only.
  const tagged = names.filter((n): n is Reference & { tag: string } => n.tag !== undefined);
  const dockerManifest = [
    {
      Config: blobName(manifest.config),
      RepoTags: tagged.map((n) => `${n.familiarName}:${n.tag}`),
      Layers: manifest.layers.map(blobName),
    },
  ];
  const repositories: Record<string, Record<string, string>> = {};
  for (const n of tagged) (repositories[n.familiarName] ??= {})[n.tag] = manifest.config.digest.slice('sha256:'.length);
  await writeLayoutTar(
    store,
    {
      blobs: await reachableBlobs(store, [image.manifest]),
      index: layoutIndex(image.manifest, names),
      extraFiles: [
        { name: 'manifest.json', data: Buffer.from(JSON.stringify(dockerManifest)) },
        ...(tagged.length ? [{ name: 'repositories', data: Buffer.from(JSON.stringify(repositories)) }] : []),
      ],
    },
    opts.dest,
  );
}
