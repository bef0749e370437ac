// What `builder images`, `tag`, `rmi`, `image prune`, `inspect`, `history` and `image layers` do with the
// local image store (src/image/store.ts), shaped as Docker's CLI prints it. Every change runs under the
// state directory's lock; blobs an image no longer needs are freed when nothing else holds them.
import fs from 'node:fs/promises';
import { createGunzip } from 'node:zlib';
import { layerUnpackedSize } from '../archive/layer.js';
import type { Digest, Platform } from '../../solver/llb/ops.js';
import { ContentStore } from '../content/store.js';
import { StateLock } from '../client/lock.js';
import { goRFC3339, humanSize, goTime, since } from './format.js';
import { openStores, imageRecords, platformImages, imageBlobs, imagesUsage, type ImageRecord, type PlatformImage } from './records.js';
import { GarbageCollector, parseDuration } from '../cache/gc.js';
import { parseReference, type Reference } from '../registry/reference.js';
import { UserError } from '../util/errors.js';
import { ImageStore, ImageNotInStoreError, type StoredImage } from './store.js';
import {
  isIndexType, platformString, platformsEqual, type Descriptor, type HistoryEntry, type ImageConfig, type Manifest,
} from './types.js';

/** Runs `fn` holding the state directory's lock (image store changes are read-modify-write). */
export async function withImageLock<T>(root: string, fn: () => Promise<T>): Promise<T> {
  await fs.mkdir(root, { recursive: true, mode: 0o700 });
  const lock = await StateLock.acquire(root);
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}

/** Docker's image id: the config digest of a single-platform image, the index digest of a multi-platform one. */
export async function imageID(content: ContentStore, target: Descriptor): Promise<Digest> {
  if (isIndexType(target.mediaType)) return target.digest;
  const m = JSON.parse((await content.readBuffer(target.digest)).toString('utf8')) as Manifest;
  return m.config.digest;
}

export const shortID = (id: string): string => id.replace(/^sha256:/, '').slice(0, 12);

/**
 * A layer's size as Docker shows it (`inspect` Size, `history` SIZE, `images` SIZE): what its files hold
 * unpacked, not its compressed blob. 0 for a layer whose blob is not here (a platform never pulled).
 */
export async function layerSize(content: ContentStore, l: Descriptor): Promise<number> {
  if (!(await content.has(l.digest))) return 0;
  return layerUnpackedSize(content, l);
}

/** A platform image's size as Docker's: its layers unpacked. */
export async function platformSize(content: ContentStore, p: PlatformImage): Promise<number> {
  let n = 0;
  for (const l of p.manifest.layers) n += await layerSize(content, l);
  return n;
}

/** An image's size as `docker images` shows it: every stored platform's layers unpacked, each layer once. */
export async function unpackedImageSize(content: ContentStore, plats: PlatformImage[]): Promise<number> {
  const seen = new Set<string>();
  let n = 0;
  for (const p of plats) {
    for (const l of p.manifest.layers) {
      if (seen.has(l.digest)) continue;
      seen.add(l.digest);
      n += await layerSize(content, l);
    }
  }
  return n;
}

/** Bytes of a target's blobs (index, manifests, configs, layers), each blob once. */
export async function imageSize(content: ContentStore, target: Descriptor): Promise<number> {
  let n = 0;
  for (const d of await imageBlobs(content, target)) n += d.size;
  return n;
}

/**
 * The stored image an argument names, as Docker resolves one: a name (`app`, `app:1`, `reg/app@sha256:...`),
 * a full or abbreviated image id, or a manifest/index digest.
 */
export async function findImage(images: ImageStore, content: ContentStore, arg: string): Promise<ImageRecord> {
  const records = await imageRecords(images);
  const hex = /^(sha256:)?([0-9a-f]{4,64})$/.exec(arg);
  if (hex) {
    const matches: ImageRecord[] = [];
    for (const r of records) {
      const id = await imageID(content, r.target).catch(() => r.target.digest);
      if ([id, r.target.digest].some((d) => d.slice('sha256:'.length).startsWith(hex[2]))) matches.push(r);
    }
    if (matches.length === 1) return matches[0];
    if (matches.length > 1) throw new UserError('AMBIGUOUS_IMAGE', `${arg}: image id prefix matches several images`);
    if (hex[1]) throw new ImageNotInStoreError(arg);
  }
  let ref: Reference;
  try {
    ref = parseReference(arg);
  } catch {
    throw new ImageNotInStoreError(arg);
  }
  if (ref.digest) {
    const found = records.find((r) => r.target.digest === ref.digest && (r.names.length === 0 || r.names.some((n) => n.name === ref.name)));
    if (found) return found;
  } else {
    const full = ref.toString();
    const found = records.find((r) => r.names.some((n) => n.toString() === full));
    if (found) return found;
  }
  throw new ImageNotInStoreError(arg);
}

// ------------------------------------------------------------------ images

export interface ImageListOptions {
  all?: boolean;
  /** `dangling=true|false`, `reference=PATTERN`, `before=IMAGE`, `since=IMAGE`, `label=KEY[=VALUE]`. */
  filters?: string[];
}

/** A row of `builder images`, with Docker's `--format` field names. */
export interface ImageRow {
  Containers: string;
  CreatedAt: string;
  CreatedSince: string;
  Digest: string;
  ID: string;
  Repository: string;
  SharedSize: string;
  Size: string;
  Tag: string;
  UniqueSize: string;
  VirtualSize: string;
  /** `os/arch[/variant]` of each platform (one for a single-platform image). */
  Platforms: string[];
  /** Not printed: full values for the CLI. */
  fullID: Digest;
  created: string | undefined;
  sizeBytes: number;
  platformRows: { platform: string; id: Digest; size: number }[];
}

export async function listImages(root: string, opts: ImageListOptions = {}): Promise<ImageRow[]> {
  const { content, images } = openStores(root);
  const filters = parseFilters(opts.filters ?? [], ['dangling', 'reference', 'before', 'since', 'label']);
  const records = await imageRecords(images);
  const rows: ImageRow[] = [];
  const createdOf = new Map<ImageRecord, string | undefined>();
  const platsOf = new Map<ImageRecord, PlatformImage[]>();
  for (const r of records) {
    const plats = await platformImages(content, r.target).catch(() => [] as PlatformImage[]);
    platsOf.set(r, plats);
    createdOf.set(r, plats.map((p) => p.config.created).filter(Boolean).sort().at(-1) ?? r.stored);
  }
  const refTime = async (arg: string) => createdOf.get(await findImage(images, content, arg)) ?? '';
  const before = filters.before ? await refTime(filters.before[0]) : undefined;
  const after = filters.since ? await refTime(filters.since[0]) : undefined;
  for (const r of records) {
    const plats = platsOf.get(r)!;
    const created = createdOf.get(r);
    if (filters.dangling && filters.dangling.some((v) => parseBool(v, 'dangling') !== r.dangling)) continue;
    if (before !== undefined && !((created ?? '') < before)) continue;
    if (after !== undefined && !((created ?? '') > after)) continue;
    if (filters.label && !filters.label.every((l) => plats.some((p) => labelMatches(p.config.config?.Labels, l)))) continue;
    const fullID = await imageID(content, r.target).catch(() => r.target.digest);
    const size = await unpackedImageSize(content, plats).catch(() => 0); // a damaged layer: listed all the same
    const platformRows = [];
    if (isIndexType(r.target.mediaType)) {
      for (const p of plats) {
        platformRows.push({ platform: platformString(p.platform), id: p.configDesc.digest, size: await platformSize(content, p).catch(() => 0) });
      }
    }
    // Docker's DIGEST column: the digest the row's repository knows the image by (pushed or pulled).
    const repos = new Set(await images.repoDigests(r.target.digest));
    const base = {
      Containers: 'N/A', CreatedAt: goTime(created), CreatedSince: since(created), ID: shortID(fullID), SharedSize: 'N/A',
      Size: humanSize(size), UniqueSize: 'N/A', VirtualSize: humanSize(size), Platforms: plats.map((p) => platformString(p.platform)),
      fullID, created, sizeBytes: size, platformRows,
    };
    const names = r.names.length ? r.names : [null];
    for (const n of names) {
      if (n && filters.reference && !filters.reference.some((pat) => referenceMatches(pat, n))) continue;
      if (!n && filters.reference) continue;
      rows.push({
        ...base,
        Repository: n ? n.familiarName : '<none>',
        Tag: n?.tag ?? '<none>',
        Digest: n && repos.has(n.name) ? r.target.digest : '<none>',
      });
    }
  }
  // Newest first, as Docker lists them.
  rows.sort((a, b) => ((b.created ?? '') < (a.created ?? '') ? -1 : (b.created ?? '') > (a.created ?? '') ? 1 : a.Repository < b.Repository ? -1 : a.Repository > b.Repository ? 1 : a.Tag < b.Tag ? -1 : 1));
  return rows;
}

export function parseFilters(filters: string[], allowed: string[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const f of filters) {
    const eq = f.indexOf('=');
    const key = eq < 0 ? f : f.slice(0, eq);
    if (eq < 0 || !allowed.includes(key)) throw new UserError('INVALID_FILTER', `invalid filter '${key}'`);
    (out[key] ??= []).push(f.slice(eq + 1));
  }
  return out;
}

function parseBool(v: string, key: string): boolean {
  if (/^(1|true|t|TRUE|True)$/.test(v)) return true;
  if (/^(0|false|f|FALSE|False)$/.test(v)) return false;
  throw new UserError('INVALID_FILTER', `invalid filter '${key}=${v}'`);
}

function labelMatches(labels: Record<string, string> | undefined, filter: string): boolean {
  const eq = filter.indexOf('=');
  if (eq < 0) return labels !== undefined && filter in labels;
  return labels?.[filter.slice(0, eq)] === filter.slice(eq + 1);
}

/** Docker's reference filter: a glob (`*`, `?`, `[...]`, not across `/`) against the familiar name, with or without its tag. */
export function referenceMatches(pattern: string, ref: Reference): boolean {
  const re = new RegExp('^' + pattern.replace(/[.+^${}()|\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]') + '$');
  const candidates = [ref.familiarName, ref.toString(), ref.name];
  if (ref.tag) candidates.push(`${ref.familiarName}:${ref.tag}`, `${ref.name}:${ref.tag}`);
  return candidates.some((c) => re.test(c));
}

// ------------------------------------------------------------------ tag, rmi, prune

export async function tagImage(root: string, source: string, target: string): Promise<void> {
  await withImageLock(root, async () => {
    const { content, images } = openStores(root);
    const found = await findImage(images, content, source);
    const ref = parseReference(target);
    if (ref.digest) throw new UserError('INVALID_REFERENCE', `refusing to create a tag with a digest reference: ${target}`);
    await images.put([ref.toString()], found.target);
  });
}

export interface RemoveResult {
  untagged: string[];
  deleted: Digest[];
  freed: number;
}

/**
 * `rmi`: removes a name, or with an image id every name of it (several only with `force`). An image left
 * with no name is deleted, and its blobs that no other image or snapshot needs are freed. `inUse` names
 * the images containers were made from (removing those needs `force`).
 */
export async function removeImages(root: string, args: string[], opts: { force?: boolean; inUse?: (target: Digest, id: Digest) => Promise<string | undefined> } = {}): Promise<RemoveResult> {
  return withImageLock(root, async () => {
    const { content, images } = openStores(root);
    const result: RemoveResult = { untagged: [], deleted: [], freed: 0 };
    const errors: string[] = [];
    for (const arg of args) {
      try {
        const rec = await findImage(images, content, arg);
        const id = await imageID(content, rec.target).catch(() => rec.target.digest);
        const byName = rec.names.find((n) => n.toString() === tryNormalize(arg));
        const user = await opts.inUse?.(rec.target.digest, id);
        if (byName && rec.names.length > 1) {
          // Another name keeps the image: only the name goes.
          await images.remove(byName.toString());
          result.untagged.push(familiar(byName));
          continue;
        }
        if (user && !opts.force) {
          throw new UserError('IMAGE_IN_USE', byName
            ? `conflict: unable to remove repository reference "${arg}" (must force) - container ${user.slice(0, 12)} is using its referenced image ${shortID(id)}`
            : `conflict: unable to delete ${shortID(id)} (must be forced) - image is being used by stopped container ${user.slice(0, 12)}`);
        }
        if (!byName && rec.names.length > 1 && !opts.force) {
          throw new UserError('IMAGE_CONFLICT', `conflict: unable to delete ${shortID(id)} (must be forced) - image is referenced in multiple repositories`);
        }
        for (const n of rec.names) {
          await images.remove(n.toString());
          result.untagged.push(familiar(n));
        }
        await images.removeDangling(rec.target.digest);
        if (user) continue; // forced: the names go, the content stays for the container
        result.freed += await freeBlobs(root, content, images, rec.target);
        result.deleted.push(id);
      } catch (e) {
        if (!(e instanceof UserError)) throw e;
        errors.push(e.message);
      }
    }
    if (errors.length) {
      const err = new UserError('RMI_FAILED', errors.join('\n'));
      (err as UserError & { partial?: RemoveResult }).partial = result;
      throw err;
    }
    return result;
  });
}

function tryNormalize(arg: string): string | undefined {
  try {
    return parseReference(arg).toString();
  } catch {
    return undefined;
  }
}

const familiar = (n: Reference) => (n.tag ? `${n.familiarName}:${n.tag}` : n.digest ? `${n.familiarName}@${n.digest}` : n.familiarName);

/**
 * Removes the blobs of a (no longer stored) target that no stored image reaches and no layer snapshot
 * remembers (the build cache exports those again); returns the bytes freed. Caller holds the lock.
 */
export async function freeBlobs(root: string, content: ContentStore, images: ImageStore, target: Descriptor): Promise<number> {
  const candidates = await imageBlobs(content, target);
  const kept = await referencedBlobs(root, content, images);
  let freed = 0;
  for (const d of candidates) {
    if (kept.has(d.digest)) continue;
    const st = await content.stat(d.digest);
    if (!st) continue;
    await content.remove(d.digest);
    freed += st.size;
  }
  return freed;
}

/** Blobs stored images reach, and those layer snapshots remember. */
export async function referencedBlobs(root: string, content: ContentStore, images: ImageStore): Promise<Set<string>> {
  const kept = new Set<string>();
  for (const r of await imageRecords(images)) for (const d of await imageBlobs(content, r.target)) kept.add(d.digest);
  const meta = await new GarbageCollector(root).snapshotMeta();
  for (const m of Object.values(meta)) for (const b of m.blobs ?? []) kept.add(b);
  return kept;
}

/**
 * `image prune`: dangling images, or with `all` every image no container uses; `until` keeps images created
 * more recently than that many milliseconds ago.
 */
export async function pruneImages(root: string, opts: { all?: boolean; untilMs?: number; filters?: string[]; inUse?: (target: Digest, id: Digest) => Promise<string | undefined> } = {}): Promise<RemoveResult> {
  const filters = parseFilters(opts.filters ?? [], ['until', 'label']);
  let untilMs = opts.untilMs;
  if (filters.until) {
    const v = filters.until[0];
    const ts = Date.parse(v);
    try {
      untilMs = !Number.isNaN(ts) && /\d{4}-/.test(v) ? Date.now() - ts : parseDuration(v);
    } catch (e) {
      throw new UserError('INVALID_FILTER', `invalid filter 'until=${v}': ${(e as Error).message}`);
    }
  }
  return withImageLock(root, async () => {
    const { content, images } = openStores(root);
    const result: RemoveResult = { untagged: [], deleted: [], freed: 0 };
    const now = Date.now();
    const removed: Descriptor[] = [];
    for (const rec of await imageRecords(images)) {
      if (!opts.all && !rec.dangling) continue;
      const id = await imageID(content, rec.target).catch(() => rec.target.digest);
      if (await opts.inUse?.(rec.target.digest, id)) continue;
      const plats = await platformImages(content, rec.target).catch(() => [] as PlatformImage[]);
      const created = Date.parse(plats.map((p) => p.config.created).filter(Boolean).sort().at(-1) ?? rec.stored);
      if (untilMs !== undefined && !(now - created >= untilMs)) continue;
      if (filters.label && !filters.label.every((l) => plats.some((p) => l.startsWith('!') ? !labelMatches(p.config.config?.Labels, l.slice(1)) : labelMatches(p.config.config?.Labels, l)))) continue;
      for (const n of rec.names) {
        await images.remove(n.toString());
        result.untagged.push(familiar(n));
      }
      await images.removeDangling(rec.target.digest);
      removed.push(rec.target);
      result.deleted.push(id);
    }
    for (const t of removed) result.freed += await freeBlobs(root, content, images, t);
    return result;
  });
}

// ------------------------------------------------------------------ inspect, history, layers

/** `docker image inspect` JSON for each platform of an image (one object for a single-platform image). */
export async function inspectImage(root: string, arg: string, opts: { platform?: Platform } = {}): Promise<Record<string, unknown>[]> {
  const { content, images } = openStores(root);
  const rec = await findImage(images, content, arg);
  let plats = await platformImages(content, rec.target);
  if (opts.platform) {
    plats = plats.filter((p) => platformsEqual(p.platform, opts.platform!));
    if (plats.length === 0) throw new UserError('NO_MATCHING_PLATFORM', `${arg}: image has no platform ${platformString(opts.platform)}`);
  }
  const index = isIndexType(rec.target.mediaType);
  const repoDigests = await images.repoDigests(rec.target.digest);
  const out: Record<string, unknown>[] = [];
  for (const p of plats) {
    const c = p.config;
    const history = c.history ?? [];
    const size = await platformSize(content, p);
    out.push({
      Id: index ? rec.target.digest : p.configDesc.digest,
      RepoTags: rec.names.filter((n) => n.tag).map((n) => `${n.familiarName}:${n.tag}`),
      // Only where the image was pushed to or pulled from: a built or loaded image has none (as Docker).
      RepoDigests: repoDigests.map((n) => `${parseReference(n).familiarName}@${rec.target.digest}`),
      Parent: '',
      Comment: history.at(-1)?.comment ?? '',
      Created: goRFC3339(c.created ?? '0001-01-01T00:00:00Z'),
      DockerVersion: '',
      Author: c.author ?? '',
      Config: dockerConfig(c.config ?? {}),
      Architecture: c.architecture,
      ...(c.variant ? { Variant: c.variant } : {}),
      Os: c.os,
      ...(c['os.version'] ? { OsVersion: c['os.version'] } : {}),
      Size: size,
      RootFS: { Type: 'layers', Layers: c.rootfs?.diff_ids ?? [] },
      Metadata: { LastTagTime: goRFC3339(rec.stored) },
      Descriptor: { mediaType: p.manifestDesc.mediaType, digest: p.manifestDesc.digest, size: p.manifestDesc.size, ...(index ? { platform: p.platform } : {}) },
    });
  }
  return out;
}

/** An image config as Docker's container.Config prints it in `docker inspect` (every field, Docker's order). */
export function dockerConfig(c: ImageConfig): Record<string, unknown> {
  return {
    Hostname: '', Domainname: '', User: c.User ?? '', AttachStdin: false, AttachStdout: false, AttachStderr: false,
    ...(c.ExposedPorts && Object.keys(c.ExposedPorts).length ? { ExposedPorts: c.ExposedPorts } : {}),
    Tty: false, OpenStdin: false, StdinOnce: false,
    Env: c.Env ?? null,
    Cmd: c.Cmd ?? null,
    ...(c.Healthcheck ? { Healthcheck: c.Healthcheck } : {}),
    ...(c.ArgsEscaped ? { ArgsEscaped: true } : {}),
    Image: '',
    Volumes: c.Volumes && Object.keys(c.Volumes).length ? c.Volumes : null,
    WorkingDir: c.WorkingDir ?? '',
    Entrypoint: c.Entrypoint ?? null,
    OnBuild: c.OnBuild ?? null,
    Labels: c.Labels && Object.keys(c.Labels).length ? c.Labels : null,
    ...(c.StopSignal ? { StopSignal: c.StopSignal } : {}),
    ...(c.Shell ? { Shell: c.Shell } : {}),
  };
}

export interface HistoryRow {
  /** Full image id on the newest entry, `<missing>` on the others (as Docker for built images). */
  id: string;
  created: string | undefined;
  createdBy: string;
  /** Bytes of the entry's layer unpacked (as Docker's SIZE), 0 for a metadata-only entry. */
  size: number;
  comment: string;
  emptyLayer: boolean;
}

/** `docker history`: the config's history, newest first, each layer-making entry with its layer's size. */
export async function imageHistory(root: string, arg: string, opts: { platform?: Platform } = {}): Promise<HistoryRow[]> {
  const { content, images } = openStores(root);
  const rec = await findImage(images, content, arg);
  const plats = await platformImages(content, rec.target);
  const p = (opts.platform ? plats.find((x) => platformsEqual(x.platform, opts.platform!)) : plats.find((x) => platformsEqual(x.platform, hostPlatformOf(plats)))) ?? plats[0];
  if (!p) throw new ImageNotInStoreError(arg);
  const id = isIndexType(rec.target.mediaType) ? rec.target.digest : p.configDesc.digest;
  const rows: HistoryRow[] = [];
  let layer = 0;
  const history: HistoryEntry[] = p.config.history ?? [];
  for (const h of history) {
    const empty = Boolean(h.empty_layer);
    const l = empty ? undefined : p.manifest.layers[layer++];
    const size = l ? await layerSize(content, l) : 0;
    rows.push({ id: '<missing>', created: h.created, createdBy: h.created_by ?? '', size, comment: h.comment ?? '', emptyLayer: empty });
  }
  rows.reverse();
  if (rows.length) rows[0].id = id;
  return rows;
}

function hostPlatformOf(plats: PlatformImage[]): Platform {
  const arch = process.arch === 'x64' ? 'amd64' : process.arch === 'ia32' ? '386' : process.arch;
  return plats.find((p) => p.platform.architecture === arch)?.platform ?? plats[0]?.platform ?? { os: 'linux', architecture: arch };
}

export interface LayerRow {
  platform: string;
  diffID: Digest;
  digest: Digest;
  mediaType: string;
  /** Compressed (blob) size. */
  size: number;
  /** Size of the uncompressed tar (read through once). */
  uncompressedSize: number | null;
  /** Familiar names (or short ids) of the other stored images with this layer. */
  sharedWith: string[];
}

/** Every layer of an image: diff id, blob, sizes, and the other stored images that share it. */
export async function imageLayers(root: string, arg: string): Promise<LayerRow[]> {
  const { content, images } = openStores(root);
  const rec = await findImage(images, content, arg);
  const others: { label: string; layers: Set<string> }[] = [];
  for (const r of await imageRecords(images)) {
    if (r.target.digest === rec.target.digest) continue;
    const layers = new Set<string>();
    for (const p of await platformImages(content, r.target).catch(() => [] as PlatformImage[])) for (const l of p.manifest.layers) layers.add(l.digest);
    const id = await imageID(content, r.target).catch(() => r.target.digest);
    others.push({ label: r.names.length ? r.names.map(familiar).join(',') : shortID(id), layers });
  }
  const rows: LayerRow[] = [];
  for (const p of await platformImages(content, rec.target)) {
    for (const [i, l] of p.manifest.layers.entries()) {
      rows.push({
        platform: platformString(p.platform),
        diffID: (p.config.rootfs?.diff_ids?.[i] ?? '') as Digest,
        digest: l.digest, mediaType: l.mediaType, size: l.size,
        uncompressedSize: await uncompressedSize(content, l).catch(() => null),
        sharedWith: others.filter((o) => o.layers.has(l.digest)).map((o) => o.label),
      });
    }
  }
  return rows;
}

async function uncompressedSize(content: ContentStore, l: Descriptor): Promise<number | null> {
  if (!(await content.has(l.digest))) return null;
  if (/tar$/.test(l.mediaType)) return l.size;
  if (!/gzip/.test(l.mediaType)) return null;
  let n = 0;
  const gunzip = createGunzip();
  content.createReadStream(l.digest).pipe(gunzip);
  for await (const chunk of gunzip) n += (chunk as Buffer).length;
  return n;
}

/** For `du`: the stored images' blobs, each once (shared layers counted once), and how many images. */

export type { StoredImage };
export { openStores, imageRecords, platformImages, imageBlobs, imagesUsage, type ImageRecord, type PlatformImage };
