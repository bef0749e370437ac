// Reading the local image store: its records (one per target, with every name), the platform images of a
// target, the blobs it holds, and what all stored images take. Kept apart from images.ts (the commands) so the
// garbage collector can ask which blobs images hold without importing the commands that call it.
import fs from 'node:fs/promises';
import path from 'node:path';
import { ContentStore } from '../content/store.js';
import { parseReference, type Reference } from '../registry/reference.js';
import { UserError } from '../util/errors.js';
import type { Digest, Platform } from '../../solver/llb/ops.js';
import { ImageStore } from './store.js';
import { isIndexType, isManifestType, type Descriptor, type ImageConfigFile, type Index, type Manifest } from './types.js';

export function openStores(root: string): { content: ContentStore; images: ImageStore } {
  const content = new ContentStore(path.join(root, 'content'));
  return { content, images: new ImageStore(root, content) };
}

/** One platform's image: its manifest, config, and where in an index it sits. */
export interface PlatformImage {
  manifestDesc: Descriptor;
  manifest: Manifest;
  config: ImageConfigFile;
  configDesc: Descriptor;
  platform: Platform;
}

/** A stored image (one target), with every name that points at it. */
export interface ImageRecord {
  target: Descriptor;
  names: Reference[];
  /** When it was stored (the latest of its names). */
  stored: string;
  dangling: boolean;
}

/** Every stored image, named ones first (by name), then dangling ones. */
export async function imageRecords(images: ImageStore): Promise<ImageRecord[]> {
  const byDigest = new Map<string, ImageRecord>();
  for (const i of await images.list()) {
    const r = byDigest.get(i.target.digest);
    if (r) {
      r.names.push(parseReference(i.name));
      if (i.created > r.stored) r.stored = i.created;
    } else byDigest.set(i.target.digest, { target: i.target, names: [parseReference(i.name)], stored: i.created, dangling: false });
  }
  for (const d of await images.dangling()) {
    if (!byDigest.has(d.target.digest)) byDigest.set(d.target.digest, { target: d.target, names: [], stored: d.created, dangling: true });
  }
  return [...byDigest.values()];
}

/** The platform images of a target (one for a manifest; each stored platform of an index, attestations left out). */
export async function platformImages(content: ContentStore, target: Descriptor): Promise<PlatformImage[]> {
  const read = async <T>(d: Digest) => JSON.parse((await content.readBuffer(d)).toString('utf8')) as T;
  const one = async (desc: Descriptor): Promise<PlatformImage> => {
    const manifest = await read<Manifest>(desc.digest);
    const config = await read<ImageConfigFile>(manifest.config.digest);
    const platform: Platform = desc.platform ?? { os: config.os, architecture: config.architecture, ...(config.variant ? { variant: config.variant } : {}) };
    return { manifestDesc: desc, manifest, config, configDesc: manifest.config, platform };
  };
  if (isManifestType(target.mediaType)) return [await one(target)];
  if (!isIndexType(target.mediaType)) throw new UserError('BAD_IMAGE', `unsupported image media type ${target.mediaType}`);
  const idx = await read<Index>(target.digest);
  const out: PlatformImage[] = [];
  for (const m of idx.manifests) {
    if (m.platform?.os === 'unknown' || !isManifestType(m.mediaType) || !(await content.has(m.digest))) continue;
    out.push(await one(m));
  }
  return out;
}

/** The blobs of a target that are in the store, each once. */
export async function imageBlobs(content: ContentStore, target: Descriptor): Promise<Descriptor[]> {
  const seen = new Map<string, Descriptor>([[target.digest, target]]);
  for (const p of await platformImages(content, target).catch(() => [] as PlatformImage[])) {
    for (const d of [p.manifestDesc, p.configDesc, ...p.manifest.layers]) if (!seen.has(d.digest)) seen.set(d.digest, d);
  }
  return [...seen.values()];
}

/** Stored images and the bytes of every blob of theirs in the store (attestation manifests included), each once. */
export async function imagesUsage(root: string): Promise<{ count: number; blobs: Map<string, number> }> {
  const { content, images } = openStores(root);
  const blobs = new Map<string, number>();
  const records = await imageRecords(images);
  for (const d of await reachableContent(content, records.map((r) => r.target.digest))) {
    const st = await content.stat(d as Digest);
    if (st) blobs.set(d, st.size);
  }
  return { count: records.length, blobs };
}

const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;
/** Documents larger than this are not image JSON: not read (a layer named where a manifest was expected). */
const MAX_DOCUMENT = 4 << 20;

/**
 * Every blob the documents `roots` (indexes or manifests, by digest) reach, held here or not: each root,
 * and through the JSON of indexes and manifests their manifests (attestation manifests included), configs,
 * layers and subjects, nested indexes too. Each document is read once however many roots share it, so the
 * cost is linear in the documents reached. One not here, too large or not JSON reaches only itself.
 * Added to `into` when given.
 */
export async function reachableContent(content: ContentStore, roots: Iterable<string>, into = new Set<string>()): Promise<Set<string>> {
  const walked = new Set<string>();
  const queue: string[] = [];
  const add = (d: unknown, walk: boolean) => {
    if (typeof d !== 'string' || !DIGEST_RE.test(d)) return;
    into.add(d);
    if (walk && !walked.has(d)) {
      walked.add(d);
      queue.push(d);
    }
  };
  for (const r of roots) add(r, true);
  for (let d = queue.pop(); d !== undefined; d = queue.pop()) {
    const doc = await readDocument(content, d as Digest);
    if (!doc) continue;
    for (const m of Array.isArray(doc.manifests) ? doc.manifests : []) add((m as Descriptor)?.digest, true);
    const manifest = doc as Partial<Manifest> & { blobs?: unknown };
    add(manifest.config?.digest, false);
    for (const list of [manifest.layers, manifest.blobs]) for (const l of Array.isArray(list) ? list : []) add((l as Descriptor)?.digest, false);
    add(manifest.subject?.digest, true);
  }
  return into;
}

/** A stored document's JSON object, or null (not here, too large, not a JSON object). */
async function readDocument(content: ContentStore, d: Digest): Promise<(Partial<Index> & Record<string, unknown>) | null> {
  try {
    const st = await content.stat(d);
    if (!st || st.size > MAX_DOCUMENT) return null;
    const doc = JSON.parse(await fs.readFile(content.blobPath(d), 'utf8')) as unknown;
    return doc && typeof doc === 'object' && !Array.isArray(doc) ? (doc as Partial<Index> & Record<string, unknown>) : null;
  } catch {
    return null;
  }
}
