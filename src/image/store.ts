// The local image store: names (`docker.io/library/app:1`) pointing at manifests or indexes in the state
// directory's content store, as `docker build -t` keeps an image. One JSON file, `<root>/images.json`,
// rewritten atomically; the blobs it names are in `<root>/content`.
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Platform } from '../../solver/llb/ops.js';
import type { ContentStore } from '../content/store.js';
import { writeFileAtomic } from '../util/fs.js';
import { UserError } from '../util/errors.js';
import { parseReference, type Reference } from '../registry/reference.js';
import { isIndexType, normalizePlatform, platformString, platformsEqual, type Descriptor, type ImageConfigFile, type Index, type Manifest } from './types.js';
import type { ResolvedImage } from '../registry/client.js';

export interface StoredImage {
  /** Full normalized name with tag. */
  name: string;
  target: Descriptor;
  /** RFC 3339, when it was stored. */
  created: string;
}

export class ImageNotInStoreError extends UserError {
  constructor(name: string) { super('IMAGE_NOT_FOUND', `no such image: ${name}`); }
}

export class ImageStore {
  private readonly file: string;

  constructor(root: string, private readonly content: ContentStore) {
    this.file = path.join(root, 'images.json');
  }

  async list(): Promise<StoredImage[]> {
    let text: string;
    try {
      text = await fs.readFile(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
    let images: unknown;
    try {
      images = (JSON.parse(text) as { images?: unknown })?.images ?? [];
    } catch {
      images = null;
    }
    if (!Array.isArray(images)) {
      // Unreadable: set aside (kept for inspection), never an error on every later build.
      await fs.rename(this.file, `${this.file}.corrupt`).catch(() => undefined);
      return [];
    }
    return images.filter((i): i is StoredImage =>
      typeof i?.name === 'string' && typeof i.target?.digest === 'string' && typeof i.target.mediaType === 'string');
  }

  async get(name: string): Promise<StoredImage | undefined> {
    const full = normalizeName(name);
    return (await this.list()).find((i) => i.name === full);
  }

  /** Points each name at `target` (replacing what they named before). */
  async put(names: string[], target: Descriptor): Promise<void> {
    const full = names.map(normalizeName);
    const created = new Date().toISOString();
    const images = (await this.list()).filter((i) => !full.includes(i.name));
    for (const name of full) {
      images.push({ name, target: { mediaType: target.mediaType, digest: target.digest, size: target.size }, created });
    }
    images.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    await writeFileAtomic(this.file, JSON.stringify({ images }, null, 1));
  }

  /** Removes a name; the blobs stay in the content store. */
  async remove(name: string): Promise<StoredImage> {
    const full = normalizeName(name);
    const images = await this.list();
    const found = images.find((i) => i.name === full);
    if (!found) throw new ImageNotInStoreError(name);
    await writeFileAtomic(this.file, JSON.stringify({ images: images.filter((i) => i !== found) }, null, 1));
    return found;
  }

  /**
   * The stored image for a platform, shaped as a registry resolution: manifest, config and layer
   * descriptors, all read from the content store. Undefined when the name is not stored.
   */
  async resolve(ref: Reference, platform: Platform): Promise<LocalImage | undefined> {
    // A pinned reference (the frontend pins what it resolved) matches the stored name with that digest.
    const stored = (await this.list()).find((i) => {
      const r = parseReference(i.name);
      return r.name === ref.name && (ref.tag === undefined || r.tag === ref.tag) && (ref.digest === undefined || i.target.digest === ref.digest);
    });
    if (!stored || (ref.tag === undefined && ref.digest === undefined)) return undefined;
    let desc = stored.target;
    if (isIndexType(desc.mediaType)) {
      const idx = JSON.parse((await this.content.readBuffer(desc.digest)).toString('utf8')) as Index;
      const want = normalizePlatform(platform);
      const chosen = idx.manifests.find((m) => m.platform && platformsEqual(m.platform, want));
      if (!chosen) throw new UserError('NO_MATCHING_PLATFORM', `${ref.toString()} for ${platformString(platform)}: no match for platform in manifest: not found`);
      desc = chosen;
    }
    const manifestBytes = await this.content.readBuffer(desc.digest);
    const manifest = JSON.parse(manifestBytes.toString('utf8')) as Manifest;
    const configBytes = await this.content.readBuffer(manifest.config.digest);
    return {
      ref: ref.withDigest(stored.target.digest),
      manifestDigest: desc.digest,
      manifest,
      manifestBytes,
      config: JSON.parse(configBytes.toString('utf8')) as ImageConfigFile,
      configBytes,
      configDescriptor: manifest.config,
      layers: manifest.layers,
    };
  }
}

/** What the store resolves: the same shape the registry client resolves, so the worker takes either. */
export type LocalImage = ResolvedImage;

function normalizeName(name: string): string {
  return parseReference(name).toString();
}
