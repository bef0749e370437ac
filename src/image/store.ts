// The local image store: names (`docker.io/library/app:1`) pointing at manifests or indexes in the state
// directory's content store, as `docker build -t` keeps an image. One JSON file, `<root>/images.json`,
// rewritten atomically; the blobs it names are in `<root>/content`.
import fs from 'node:fs/promises';
import fsSync from 'node:fs';
import path from 'node:path';
import type { Platform } from '../../solver/llb/ops.js';
import type { ContentStore } from '../content/store.js';
import { writeFileAtomic } from '../util/fs.js';
import { PidLock } from '../util/pidlock.js';
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

/** An image without a name (see ImageStore.dangling). */
export interface DanglingImage {
  target: Descriptor;
  created: string;
}

/** What images.json holds. */
interface StoreState {
  images: StoredImage[];
  dangling: DanglingImage[];
  /**
   * Repositories an image was pushed to or pulled from, by its target digest (full names, no tag): Docker's
   * RepoDigests (`name@digest`), which a build or tag alone does not give an image.
   */
  repoDigests: Record<string, string[]>;
}

export class ImageNotInStoreError extends UserError {
  constructor(name: string) { super('IMAGE_NOT_FOUND', `no such image: ${name}`); }
}

/** The update of each images.json running or queued last in this process (see ImageStore.locked). */
const updating = new Map<string, Promise<void>>();

export class ImageStore {
  private readonly file: string;

  constructor(root: string, private readonly content: ContentStore) {
    this.file = path.join(root, 'images.json');
  }

  /** The named images. */
  async list(): Promise<StoredImage[]> {
    return (await this.read()).images;
  }

  /**
   * Images that lost their last name to a newer image of that name (`docker images` shows them as
   * `<none>`): kept, with their blobs, until `rmi` or `image prune` removes them.
   */
  async dangling(): Promise<DanglingImage[]> {
    return (await this.read()).dangling;
  }

  /** The repositories (full names) the image with this target digest was pushed to or pulled from. */
  async repoDigests(digest: string): Promise<string[]> {
    return (await this.read()).repoDigests[digest] ?? [];
  }

  /** Records that the image was pushed to (or pulled from) these repositories (names; tags are dropped). */
  async addRepoDigests(digest: string, names: string[]): Promise<void> {
    return this.locked(async () => {
      const state = await this.read();
      const repos = new Set(state.repoDigests[digest] ?? []);
      for (const n of names) repos.add(parseReference(n).name);
      state.repoDigests[digest] = [...repos].sort();
      await this.save(state);
    });
  }

  /**
   * Runs a read-modify-write of the file with no other writer (builds, commit, pull, load, rmi and prune
   * may update it side by side: two at once lost one's names). Its own lock, held for the update only and
   * taken last: never the state directory's lock, which a prune holds while it waits for builds to end.
   */
  private locked<T>(fn: () => Promise<T>): Promise<T> {
    // Writers in this process (a server's builds) queue here, in order, instead of polling the lock file.
    const prev = updating.get(this.file) ?? Promise.resolve();
    const run = prev.then(async () => {
      fsSync.mkdirSync(path.dirname(this.file), { recursive: true, mode: 0o700 });
      const lock = await PidLock.acquire(`${this.file}.lock`, { pollMs: 20 });
      try {
        return await fn();
      } finally {
        await lock.release();
      }
    });
    const settled = run.then(() => undefined, () => undefined);
    updating.set(this.file, settled);
    void settled.then(() => { if (updating.get(this.file) === settled) updating.delete(this.file); });
    return run;
  }

  private async read(): Promise<StoreState> {
    let text: string;
    try {
      text = fsSync.readFileSync(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { images: [], dangling: [], repoDigests: {} };
      throw e;
    }
    let parsed: { images?: unknown; dangling?: unknown; repoDigests?: unknown } | null;
    try {
      parsed = JSON.parse(text) as { images?: unknown; dangling?: unknown; repoDigests?: unknown };
    } catch {
      parsed = null;
    }
    const images = parsed?.images ?? [];
    if (!Array.isArray(images)) {
      // Unreadable: set aside (kept for inspection), never an error on every later build.
      await fs.rename(this.file, `${this.file}.corrupt`).catch(() => undefined);
      return { images: [], dangling: [], repoDigests: {} };
    }
    const validTarget = (t: unknown) => typeof (t as Descriptor)?.digest === 'string' && typeof (t as Descriptor).mediaType === 'string';
    const repoDigests: Record<string, string[]> = {};
    const rd = parsed?.repoDigests;
    if (rd && typeof rd === 'object' && !Array.isArray(rd)) {
      for (const [d, names] of Object.entries(rd as Record<string, unknown>)) {
        if (Array.isArray(names)) repoDigests[d] = names.filter((n): n is string => typeof n === 'string');
      }
    }
    return {
      images: images.filter((i): i is StoredImage => typeof i?.name === 'string' && validTarget(i.target)),
      dangling: (Array.isArray(parsed?.dangling) ? parsed.dangling : []).filter((d): d is DanglingImage => validTarget(d?.target)),
      repoDigests,
    };
  }

  private async save({ images, dangling, repoDigests }: StoreState): Promise<void> {
    images.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    // An image with a name again is not dangling; each dangling image once.
    const named = new Set(images.map((i) => i.target.digest));
    const seen = new Set<string>();
    dangling = dangling.filter((d) => !named.has(d.target.digest) && !seen.has(d.target.digest) && seen.add(d.target.digest));
    // Repository digests go with their image.
    const kept = new Set<string>([...named, ...dangling.map((d) => d.target.digest)]);
    const digests = Object.fromEntries(Object.entries(repoDigests).filter(([d, n]) => kept.has(d) && n.length).sort(([a], [b]) => (a < b ? -1 : 1)));
    await writeFileAtomic(this.file, JSON.stringify({ images, ...(dangling.length ? { dangling } : {}), ...(Object.keys(digests).length ? { repoDigests: digests } : {}) }, null, 1));
  }

  async get(name: string): Promise<StoredImage | undefined> {
    const full = normalizeName(name);
    return (await this.list()).find((i) => i.name === full);
  }

  /**
   * Points each name at `target` (replacing what they named before). An image that loses its last name
   * this way is kept as dangling, as Docker keeps the image a rebuild took the tag from.
   */
  async put(names: string[], target: Descriptor, opts: { created?: string; repoDigests?: string[] } = {}): Promise<void> {
    return this.locked(async () => {
      const full = names.map(normalizeName);
      const created = opts.created ?? new Date().toISOString();
      const state = await this.read();
      const { images: all, dangling } = state;
      const images = all.filter((i) => !full.includes(i.name));
      for (const name of full) {
        images.push({ name, target: { mediaType: target.mediaType, digest: target.digest, size: target.size }, created });
      }
      for (const old of all) {
        if (!full.includes(old.name) || old.target.digest === target.digest) continue;
        if (!images.some((i) => i.target.digest === old.target.digest)) dangling.push({ target: old.target, created: old.created });
      }
      if (opts.repoDigests?.length) {
        state.repoDigests[target.digest] = [...new Set([...(state.repoDigests[target.digest] ?? []), ...opts.repoDigests.map((n) => parseReference(n).name)])].sort();
      }
      await this.save({ ...state, images, dangling });
    });
  }

  /** Removes a name; the blobs stay in the content store. */
  async remove(name: string): Promise<StoredImage> {
    return this.locked(async () => {
      const full = normalizeName(name);
      const state = await this.read();
      const found = state.images.find((i) => i.name === full);
      if (!found) throw new ImageNotInStoreError(name);
      await this.save({ ...state, images: state.images.filter((i) => i !== found) });
      return found;
    });
  }

  /** Keeps an image without a name (a loaded archive that named none); nothing when it has a name. */
  async putDangling(target: Descriptor): Promise<void> {
    return this.locked(async () => {
      const state = await this.read();
      state.dangling.push({ target: { mediaType: target.mediaType, digest: target.digest, size: target.size }, created: new Date().toISOString() });
      await this.save(state);
    });
  }

  /** Forgets a dangling image (by its target digest); true when there was one. */
  async removeDangling(digest: string): Promise<boolean> {
    return this.locked(async () => {
      const state = await this.read();
      const left = state.dangling.filter((d) => d.target.digest !== digest);
      if (left.length === state.dangling.length) return false;
      await this.save({ ...state, dangling: left });
      return true;
    });
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
      // A pull keeps the index and only the platforms it fetched: the others come from the registry.
      if (!(await this.content.has(chosen.digest))) return undefined;
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
