// `imagetools inspect` (what a reference points at: manifest or index, platforms, digests, sizes) and
// `imagetools create` (one index joining the platforms of several images, pushed under new tags).
import type { Digest } from '../../solver/llb/ops.js';
import type { ContentStore } from '../content/store.js';
import { MediaType, isIndexType, platformString, type Descriptor, type ImageConfigFile, type Index, type Manifest } from '../image/types.js';
import type { RegistryClient } from './client.js';
import { pushImage } from './push.js';
import type { Reference } from './reference.js';
import { UserError } from '../util/errors.js';

export async function imagetoolsInspect(client: RegistryClient, ref: Reference, opts: { raw?: boolean; format?: string } = {}): Promise<string> {
  const top = await client.getManifest(ref);
  if (opts.raw) return top.bytes.toString('utf8') + (top.bytes.toString('utf8').endsWith('\n') ? '' : '\n');
  if (opts.format !== undefined) return formatInspect(client, ref, top, opts.format);
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
      );
      // As buildx: annotations (an attestation manifest's reference to its image), keys aligned.
      const keys = Object.keys(m.annotations ?? {}).sort();
      if (keys.length) {
        const width = Math.max(...keys.map((k) => k.length)) + 1;
        lines.push('  Annotations:', ...keys.map((k) => `    ${`${k}:`.padEnd(width)} ${m.annotations![k]}`));
      }
      lines.push('');
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

/** The fields `--format` templates read, as buildx names them. */
const FORMAT_FIELDS = ['Name', 'Manifest', 'Image', 'Provenance', 'SBOM'] as const;
type FormatField = typeof FORMAT_FIELDS[number];

export class FormatError extends UserError {
  constructor(message: string) { super('INVALID_FORMAT', message); }
}

/**
 * `--format` with buildx's template data: `.Name`, `.Manifest`, `.Image` (the config), `.Provenance`
 * (`{"SLSA": predicate}`) and `.SBOM` (`{"SPDX": document, "AdditionalSPDXs": [...]}`), per platform keyed by
 * `os/arch` when the index has several. The template language is the subset these are read with:
 * `{{json .Field}}` and `{{.Field}}` amid text.
 */
async function formatInspect(client: RegistryClient, ref: Reference, top: Awaited<ReturnType<RegistryClient['getManifest']>>, format: string): Promise<string> {
  const actions = [...format.matchAll(/\{\{-?\s*(json\s+)?\.(\w+)\s*-?\}\}/g)];
  const rest = format.replace(/\{\{-?\s*(json\s+)?\.(\w+)\s*-?\}\}/g, '');
  if (rest.includes('{{')) throw new FormatError(`unsupported format ${JSON.stringify(format)}: only {{json .Field}} and {{.Field}} are supported`);
  for (const a of actions) {
    if (!FORMAT_FIELDS.includes(a[2] as FormatField)) throw new FormatError(`template: :1: can't evaluate field ${a[2]} (valid: ${FORMAT_FIELDS.join(', ')})`);
  }
  const needed = new Set(actions.map((a) => a[2] as FormatField));
  const perPlatform = new Map<string, { Image?: unknown; Provenance?: unknown; SBOM?: unknown }>();
  const images: { desc: Descriptor; platform: string }[] = [];
  const attestations = new Map<string, Descriptor>();
  if (isIndexType(top.mediaType)) {
    for (const m of (top.json as Index).manifests) {
      if (m.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest') {
        const target = m.annotations['vnd.docker.reference.digest'];
        if (target) attestations.set(target, m);
      } else images.push({ desc: m, platform: m.platform ? platformString(m.platform) : 'unknown' });
    }
  } else {
    images.push({ desc: { mediaType: top.mediaType, digest: top.digest, size: top.bytes.length }, platform: '' });
  }
  for (const img of images) {
    const entry: { Image?: unknown; Provenance?: unknown; SBOM?: unknown } = {};
    if (needed.has('Image')) {
      const m = img.desc.digest === top.digest ? top : await client.getManifest(ref, img.desc.digest);
      const config = JSON.parse((await client.getBlob(ref, (m.json as Manifest).config)).toString('utf8')) as ImageConfigFile;
      entry.Image = config;
      if (!img.platform) img.platform = platformString(config);
    }
    const att = attestations.get(img.desc.digest);
    if (att && (needed.has('Provenance') || needed.has('SBOM'))) {
      const m = (await client.getManifest(ref, att.digest)).json as Manifest;
      const spdx: unknown[] = [];
      for (const layer of m.layers) {
        const type = layer.annotations?.['in-toto.io/predicate-type'] ?? '';
        const isSlsa = type.startsWith('https://slsa.dev/provenance/');
        const isSpdx = type === 'https://spdx.dev/Document';
        if ((!isSlsa || !needed.has('Provenance')) && (!isSpdx || !needed.has('SBOM'))) continue;
        const statement = JSON.parse((await client.getBlob(ref, layer)).toString('utf8')) as { predicate?: unknown };
        if (isSlsa) entry.Provenance = { SLSA: statement.predicate };
        else spdx.push(statement.predicate);
      }
      if (spdx.length) entry.SBOM = { SPDX: spdx[0], ...(spdx.length > 1 ? { AdditionalSPDXs: spdx.slice(1) } : {}) };
    }
    perPlatform.set(img.platform, entry);
  }
  const multi = images.length > 1;
  const value = (field: FormatField): unknown => {
    if (field === 'Name') return ref.toString();
    if (field === 'Manifest') return top.json;
    const pick = (e: { Image?: unknown; Provenance?: unknown; SBOM?: unknown }) => e[field];
    if (!multi) return pick([...perPlatform.values()][0] ?? {}) ?? {};
    return Object.fromEntries([...perPlatform].map(([p, e]) => [p, pick(e) ?? {}]));
  };
  let out = format;
  for (const a of actions) {
    const v = value(a[2] as FormatField);
    out = out.replace(a[0], () => (a[1] ? JSON.stringify(v, null, 2) : typeof v === 'string' ? v : JSON.stringify(v)));
  }
  return out.endsWith('\n') ? out : out + '\n';
}
