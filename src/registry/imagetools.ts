// `imagetools inspect` (what a reference points at: manifest or index, platforms, digests, sizes) and
// `imagetools create` (one index joining the platforms of several images, pushed under new tags).
import type { Digest } from '../../solver/llb/ops.js';
import type { ContentStore } from '../content/store.js';
import { MediaType, isIndexType, platformString, type Descriptor, type ImageConfigFile, type Index, type Manifest } from '../image/types.js';
import type { RegistryClient } from './client.js';
import { pushImage } from './push.js';
import type { Reference } from './reference.js';
import { UserError } from '../util/errors.js';

export async function imagetoolsInspect(client: RegistryClient, ref: Reference, opts: { raw?: boolean } = {}): Promise<string> {
  const top = await client.getManifest(ref);
  if (opts.raw) return top.bytes.toString('utf8') + (top.bytes.toString('utf8').endsWith('\n') ? '' : '\n');
  const lines = [
    `Name:      ${ref.toString()}`,
    `MediaType: ${top.mediaType}`,
    `Digest:    ${top.digest}`,
    `Size:      ${top.bytes.length}`,
  ];
  if (isIndexType(top.mediaType)) {
    lines.push('', 'Manifests:');
    for (const m of (top.json as Index).manifests) {
      lines.push(
        `  Name:        ${ref.name}@${m.digest}`,
        `  MediaType:   ${m.mediaType}`,
        `  Size:        ${m.size}`,
        `  Platform:    ${m.platform ? platformString(m.platform) : 'unknown'}`,
        '',
      );
    }
  } else {
    const m = top.json as Manifest;
    const config = JSON.parse((await client.getBlob(ref, m.config)).toString('utf8')) as ImageConfigFile;
    lines.push(`Platform:  ${platformString(config)}`, '', 'Layers:');
    for (const l of m.layers) lines.push(`  ${l.digest}  ${l.size}  ${l.mediaType}`);
    lines.push('');
  }
  return lines.join('\n') + '\n';
}

/**
 * Joins the sources' platform manifests into one index (sources that are indexes contribute all their
 * entries) and pushes it under each tag. Blobs pass through the local content store, so sources may
 * live in other repositories or registries.
 */
export async function imagetoolsCreate(
  client: RegistryClient,
  store: ContentStore,
  sources: Reference[],
  tags: Reference[],
  opts: { dryRun?: boolean } = {},
): Promise<string> {
  if (sources.length === 0) throw new UserError('USAGE', 'imagetools create: no source images');
  const entries: Descriptor[] = [];
  const copy = async (ref: Reference, d: Descriptor): Promise<void> => {
    const m = await client.getManifest(ref, d.digest);
    await store.write(m.bytes, { digest: d.digest });
    const manifest = m.json as Manifest;
    for (const b of [manifest.config, ...manifest.layers]) await client.fetchBlob(ref, b, store);
  };
  for (const src of sources) {
    const top = await client.getManifest(src);
    if (isIndexType(top.mediaType)) {
      for (const d of (top.json as Index).manifests) {
        if (!opts.dryRun) await copy(src, d);
        entries.push(d);
      }
    } else {
      const m = top.json as Manifest;
      const config = JSON.parse((await client.getBlob(src, m.config)).toString('utf8')) as ImageConfigFile;
      const desc: Descriptor = {
        mediaType: top.mediaType, digest: top.digest, size: top.bytes.length,
        platform: { os: config.os, architecture: config.architecture, ...(config.variant ? { variant: config.variant } : {}) },
      };
      if (!opts.dryRun) await copy(src, desc);
      entries.push(desc);
    }
  }
  // Docker types stay Docker (a manifest list) unless any entry is OCI.
  const oci = entries.some((e) => e.mediaType === MediaType.ociManifest || e.mediaType === MediaType.ociIndex);
  const mediaType = oci ? MediaType.ociIndex : MediaType.dockerManifestList;
  const index: Index = { schemaVersion: 2, mediaType, manifests: entries };
  const bytes = Buffer.from(JSON.stringify(index, null, 2));
  if (opts.dryRun) return bytes.toString('utf8') + '\n';
  const written = await store.write(bytes);
  await pushImage(client, store, { mediaType, digest: written.digest as Digest, size: written.size }, tags);
  return `${written.digest}\n`;
}
