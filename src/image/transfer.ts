// Moving stored images in and out of the local image store: `save` (through the docker and OCI exporters'
// archive writer), `load` (docker-archive, legacy `docker save` and OCI layout tars), `pull` and `push`
// (the registry client and pusher). Store changes run under the state directory's lock.
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import type { Digest, Platform } from '../../solver/llb/ops.js';
import { readTar } from '../archive/tar.js';
import type { ContentStore } from '../content/store.js';
import { exportDockerArchive } from '../exporter/docker.js';
import { exportLayoutImages } from '../exporter/oci.js';
import { writeImage } from '../exporter/image.js';
import { RegistryClient, choosePlatform } from '../registry/client.js';
import { pushImage } from '../registry/push.js';
import { parseReference, type Reference } from '../registry/reference.js';
import { UserError } from '../util/errors.js';
import { findImage, imageID, openStores, platformImages, withImageLock } from './images.js';
import { Annotation, MediaType, isIndexType, isManifestType, type Descriptor, type ImageConfigFile, type Index, type Manifest } from './types.js';

// ------------------------------------------------------------------ save

export interface SaveOptions {
  /** `docker` (default: OCI layout plus Docker's manifest.json, what `docker load` reads) or `oci`. */
  format?: 'docker' | 'oci';
  /** A file, or `-` for standard output. */
  output: string;
  /** Only this platform of a multi-platform image. */
  platform?: Platform;
}

/** Writes the named stored images (several, each under the names it was given by) into one archive. */
export async function saveImages(root: string, args: string[], opts: SaveOptions): Promise<void> {
  const { content, images } = openStores(root);
  const entries: { target: Descriptor; names: string[]; dockerManifest?: Descriptor }[] = [];
  for (const arg of args) {
    const rec = await findImage(images, content, arg);
    let target = rec.target;
    if (opts.platform && isIndexType(target.mediaType)) {
      const chosen = choosePlatform((await platformImages(content, target)).map((p) => ({ ...p.manifestDesc, platform: p.platform })), opts.platform);
      if (!chosen) throw new UserError('NO_MATCHING_PLATFORM', `${arg}: image has no platform ${opts.platform.os}/${opts.platform.architecture}`);
      target = { mediaType: chosen.mediaType, digest: chosen.digest, size: chosen.size };
    }
    // The name as given when it is one of the image's (`app:1`), else all of its names (an id was given).
    let names: string[];
    try {
      const full = parseReference(arg).toString();
      names = rec.names.some((n) => n.toString() === full) ? [full] : rec.names.map(String);
    } catch {
      names = rec.names.map(String);
    }
    const plats = await platformImages(content, target);
    if (plats.length === 0) throw new UserError('BAD_IMAGE', `${arg}: no platform of the image is in the store`);
    // docker load reads one manifest per image: this machine's platform, else the first stored.
    const arch = process.arch === 'x64' ? 'amd64' : process.arch;
    const docker = plats.find((p) => p.platform.architecture === arch) ?? plats[0];
    const existing = entries.find((e) => e.target.digest === target.digest);
    if (existing) existing.names.push(...names.filter((n) => !existing.names.includes(n)));
    else entries.push({ target, names, dockerManifest: docker.manifestDesc });
  }
  if (opts.output !== '-') await fs.promises.mkdir(path.dirname(path.resolve(opts.output)), { recursive: true });
  if ((opts.format ?? 'docker') === 'oci') {
    await exportLayoutImages(content, entries.map((e) => ({ root: e.target, names: e.names })), opts.output);
  } else {
    await exportDockerArchive(content, entries.map((e) => ({ root: e.target, manifest: e.dockerManifest!, names: e.names })), opts.output);
  }
}

// ------------------------------------------------------------------ load

export interface LoadedImage {
  /** Full names it was stored under (none: kept dangling, shown by id). */
  names: string[];
  /** Names that named another image before, with that image's id (now dangling unless otherwise named). */
  replaced: { name: string; id: Digest }[];
  target: Descriptor;
  id: Digest;
}

export class LoadError extends UserError {
  constructor(message: string) { super('LOAD_FAILED', `load: ${message}`); }
}

const SMALL_FILE = 4 << 20;

/**
 * Reads an image archive (plain or gzip): an OCI layout (index.json; names from its containerd or OCI
 * ref-name annotations), a docker-archive (manifest.json's RepoTags; the layout inside when there is one,
 * else the legacy `<id>/layer.tar` form, turned into a Docker schema2 image). Every image in it is stored.
 */
export async function loadImages(root: string, input: string | NodeJS.ReadableStream): Promise<LoadedImage[]> {
  const { content, images } = openStores(root);
  await fs.promises.mkdir(root, { recursive: true, mode: 0o700 });
  const stream = typeof input === 'string' ? fs.createReadStream(input) : input;
  const files = new Map<string, Buffer>();
  const stored = new Map<string, { digest: Digest; size: number }>();
  try {
    for await (const { header, body } of readTar(await maybeGunzip(stream))) {
      const name = header.name.replace(/^\.\//, '').replace(/\/+$/, '');
      if (header.type !== 'file') continue;
      const blob = /^blobs\/sha256\/([0-9a-f]{64})$/.exec(name);
      if (blob) {
        // Verified against its name as it is written: a tampered archive stores nothing under a wrong digest.
        const info = await content.write(body as AsyncIterable<Uint8Array>, { digest: `sha256:${blob[1]}` as Digest, size: header.size });
        stored.set(name, info);
      } else if (header.size <= SMALL_FILE && !name.endsWith('.tar')) {
        const chunks: Buffer[] = [];
        for await (const c of body) chunks.push(c);
        files.set(name, Buffer.concat(chunks));
      } else {
        stored.set(name, await content.write(body as AsyncIterable<Uint8Array>));
      }
    }
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new LoadError(`not a readable image archive: ${(e as Error).message}`);
  }
  const json = <T>(name: string): T | undefined => {
    const b = files.get(name);
    if (!b) return undefined;
    try {
      return JSON.parse(b.toString('utf8')) as T;
    } catch {
      throw new LoadError(`${name} is not valid JSON`);
    }
  };
  const dockerManifest = json<{ Config: string; RepoTags?: string[] | null; Layers: string[] }[]>('manifest.json');
  const index = json<Index>('index.json');
  const loaded: { names: string[]; target: Descriptor }[] = [];
  if (index) {
    if (!Array.isArray(index.manifests)) throw new LoadError('index.json has no manifests');
    // The docker archive's tags name the layout's images by config: matched to manifests below.
    const tagsByConfig = new Map<string, string[]>();
    for (const m of dockerManifest ?? []) tagsByConfig.set(m.Config.replace(/^blobs\/sha256\//, 'sha256:'), m.RepoTags ?? []);
    for (const d of index.manifests) {
      if (!(await content.has(d.digest))) throw new LoadError(`index.json names ${d.digest}, which the archive lacks`);
      const target: Descriptor = { mediaType: d.mediaType, digest: d.digest, size: d.size };
      const names = new Set<string>();
      const full = d.annotations?.[Annotation.containerdImageName];
      const refName = d.annotations?.[Annotation.refName];
      if (full) names.add(full);
      else if (refName && /[/:]/.test(refName) && !/^[\w][\w.-]*$/.test(refName)) names.add(refName);
      if (!full) for (const t of await dockerTagsFor(content, target, tagsByConfig)) names.add(t);
      const prior = loaded.find((l) => l.target.digest === target.digest);
      if (prior) prior.names.push(...[...names].filter((n) => !prior.names.includes(n)));
      else loaded.push({ names: [...names], target });
    }
  } else if (dockerManifest) {
    for (const m of dockerManifest) {
      const configBlob = stored.get(m.Config) ?? (files.has(m.Config) ? await content.write(files.get(m.Config)!) : undefined);
      if (!configBlob) throw new LoadError(`manifest.json names ${m.Config}, which the archive lacks`);
      const config = JSON.parse((await content.readBuffer(configBlob.digest)).toString('utf8')) as ImageConfigFile;
      const diffIDs = config.rootfs?.diff_ids ?? [];
      const layers = m.Layers.map((l, i) => {
        const b = stored.get(l);
        if (!b) throw new LoadError(`manifest.json names ${l}, which the archive lacks`);
        // Legacy archives hold uncompressed layer tars: the blob is the diff.
        return { digest: b.digest, size: b.size, mediaType: 'application/vnd.docker.image.rootfs.diff.tar', diffID: (diffIDs[i] ?? b.digest) as Digest };
      });
      const written = await writeImage(content, { config, layers }, { oci: false });
      loaded.push({ names: m.RepoTags ?? [], target: written.manifest });
    }
  } else {
    throw new LoadError('the archive has neither index.json (OCI layout) nor manifest.json (docker-archive)');
  }
  const out: LoadedImage[] = [];
  await withImageLock(root, async () => {
    // Nothing named the blobs while the archive was read: a prune meanwhile may have removed some (those
    // unused for its grace period: a load that long). Checked here, under the lock that keeps prune out.
    if (await missingBlobs(content, [...stored.values()].map((b) => b.digest))) {
      throw new LoadError('blobs of the archive were removed while it was read (a prune ran meanwhile): load it again');
    }
    for (const l of loaded) {
      const names = l.names.map((n) => parseReference(n).toString());
      const replaced: LoadedImage['replaced'] = [];
      for (const n of names) {
        const before = await images.get(n);
        if (before && before.target.digest !== l.target.digest) replaced.push({ name: n, id: await imageID(content, before.target).catch(() => before.target.digest) });
      }
      if (names.length) await images.put(names, l.target);
      else await images.putDangling(l.target);
      out.push({ names, replaced, target: l.target, id: await imageID(content, l.target) });
    }
  });
  return out;
}

/** Whether any of these blobs is not in the store. */
async function missingBlobs(content: ContentStore, digests: string[]): Promise<boolean> {
  for (const d of new Set(digests)) if (!(await content.has(d as Digest))) return true;
  return false;
}

/** The docker archive's RepoTags of the image(s) a layout entry holds (matched by config digest). */
async function dockerTagsFor(content: ContentStore, target: Descriptor, tagsByConfig: Map<string, string[]>): Promise<string[]> {
  if (tagsByConfig.size === 0) return [];
  const plats = await platformImages(content, target).catch(() => []);
  return plats.flatMap((p) => tagsByConfig.get(p.configDesc.digest) ?? []);
}

async function maybeGunzip(stream: NodeJS.ReadableStream): Promise<Readable> {
  const it = (stream as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  const first = await it.next();
  const head = first.done ? Buffer.alloc(0) : first.value;
  async function* rest(): AsyncGenerator<Buffer> {
    if (head.length) yield head;
    for (let r = await it.next(); !r.done; r = await it.next()) yield r.value;
  }
  const plain = Readable.from(rest());
  if (head[0] === 0x1f && head[1] === 0x8b) return plain.pipe(createGunzip());
  return plain;
}

// ------------------------------------------------------------------ pull, push

export interface RegistryOptions {
  insecureRegistries?: string[];
}

function registryClient(root: string, content: ContentStore, opts: RegistryOptions): RegistryClient {
  return new RegistryClient({ insecureRegistries: opts.insecureRegistries, cache: content, schemesFile: path.join(root, 'registry-schemes.json') });
}

export interface PullResult {
  ref: Reference;
  digest: Digest;
  /** False when the store already had this image under that name. */
  changed: boolean;
  layers: { digest: Digest; fetched: boolean }[];
}

/**
 * Pulls an image for one platform (default this machine's) into the store under its name: the index (when
 * it is one), the platform's manifest, config and layers. A later `FROM` of that name and platform needs
 * no registry; other platforms of the index are fetched when asked for.
 */
export async function pullImage(root: string, name: string, platform: Platform, opts: RegistryOptions = {}): Promise<PullResult> {
  const { content, images } = openStores(root);
  await fs.promises.mkdir(root, { recursive: true, mode: 0o700 });
  let ref = parseReference(name);
  if (!ref.tag && !ref.digest) ref = parseReference(`${ref.name}:latest`);
  const client = registryClient(root, content, opts);
  const resolved = await client.resolve(ref, platform);
  const topDigest = resolved.ref.digest!;
  const top = await client.getManifest(ref, topDigest);
  const target: Descriptor = { mediaType: top.mediaType, digest: top.digest, size: top.bytes.length };
  const layers: PullResult['layers'] = [];
  let changed = false;
  // Nothing names the blobs until the image is recorded: a prune meanwhile may remove those unused for its
  // grace period (a pull that long). They are checked under the lock that keeps prune out, fetched again if gone.
  for (let attempt = 0; ; attempt++) {
    await content.write(top.bytes, { digest: top.digest });
    if (top.digest !== resolved.manifestDigest) await content.write(resolved.manifestBytes, { digest: resolved.manifestDigest });
    await content.write(resolved.configBytes, { digest: resolved.configDescriptor.digest });
    for (const l of resolved.layers) {
      const had = await content.has(l.digest);
      await client.fetchBlob(resolved.ref, l, content);
      if (attempt === 0) layers.push({ digest: l.digest, fetched: !had });
    }
    const digests = [top.digest, resolved.manifestDigest, resolved.configDescriptor.digest, ...resolved.layers.map((l) => l.digest)];
    const recorded = await withImageLock(root, async () => {
      if (await missingBlobs(content, digests)) {
        if (attempt > 0) throw new UserError('PULL_FAILED', `${ref.toString()}: blobs were removed while pulling (a prune ran meanwhile): pull again`);
        return false;
      }
      const before = await images.get(ref.toString());
      changed = before?.target.digest !== target.digest;
      // Pulled: the repository's digest is known (Docker's RepoDigests).
      await images.put([ref.toString()], target, { repoDigests: [ref.toString()] });
      return true;
    });
    if (recorded) break;
  }
  return { ref, digest: top.digest, changed, layers };
}

/**
 * Pushes a stored image to the registry its name (or `as`) names. Every blob it references must be in
 * the store (a pulled index has only its pulled platforms: such an image cannot be pushed whole). With
 * `platform`, that platform's manifest alone is pushed as a single-platform image, as `docker push --platform`.
 */
export async function pushStoredImage(root: string, name: string, opts: RegistryOptions & { as?: string; platform?: Platform; onBlob?: (d: Descriptor, how: string) => void } = {}): Promise<{ ref: Reference; digest: Digest; size: number }> {
  const { content, images } = openStores(root);
  const rec = await findImage(images, content, name);
  let ref = parseReference(opts.as ?? name);
  if (!ref.tag && !ref.digest) ref = parseReference(`${ref.name}:latest`);
  let target = rec.target;
  if (opts.platform && isIndexType(target.mediaType)) {
    const chosen = choosePlatform((await platformImages(content, target)).map((p) => ({ ...p.manifestDesc, platform: p.platform })), opts.platform);
    if (!chosen) throw new UserError('NO_MATCHING_PLATFORM', `${name}: no platform ${opts.platform.os}/${opts.platform.architecture} of the image is in the local store`);
    target = chosen;
  } else if (isIndexType(target.mediaType)) {
    const idx = JSON.parse((await content.readBuffer(target.digest)).toString('utf8')) as Index;
    const missing = [];
    for (const m of idx.manifests) if (!(await content.has(m.digest))) missing.push(m.platform ? `${m.platform.os}/${m.platform.architecture}` : m.digest);
    if (missing.length) throw new UserError('INCOMPLETE_IMAGE', `${name}: platforms ${missing.join(', ')} of the image are not in the local store (pulled for one platform only; --platform pushes one platform)`);
  } else if (!isManifestType(target.mediaType)) {
    throw new UserError('BAD_IMAGE', `${name}: unsupported media type ${target.mediaType}`);
  }
  const client = registryClient(root, content, opts);
  await pushImage(client, content, target, [ref], { onBlob: opts.onBlob });
  // The repository now holds the image by this digest: a whole image's, or one platform's manifest.
  if (target === rec.target) await withImageLock(root, () => images.addRepoDigests(rec.target.digest, [ref.toString()]));
  return { ref, digest: target.digest, size: target.size };
}

export type { Manifest };
export { MediaType };
