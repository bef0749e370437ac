// From a solved result to an output: layer blobs for the result's snapshots (compressed once per variant and
// remembered per snapshot), an image config and manifest, then the exporter the output names.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { spawn } from 'node:child_process';
import type { Digest, Platform } from '../../solver/llb/ops.js';
import type { Worker, WorkerRef, SnapshotInfo } from '../worker/worker.js';
import { INLINE_CACHE_FIELD } from '../cache/remotecache/format.js';
import type { ImageConfigFile, HistoryEntry, Descriptor } from '../image/types.js';
import { createLayerBlob, writeLayerTar, type Compression } from '../archive/layer.js';
import { writeImage, type LayerDesc } from '../exporter/image.js';
import { exportLayoutDir, exportLayoutTar, writeImageIndex } from '../exporter/oci.js';
import { reachableBlobs, verifyBlobs } from '../exporter/layout.js';
import { exportDockerTar } from '../exporter/docker.js';
import { exportLocalDir } from '../exporter/local.js';
import { parseReference, Reference } from '../registry/reference.js';
import { RegistryClient } from '../registry/client.js';
import type { RegistryHostConfig } from '../registry/config.js';
import { pushImage } from '../registry/push.js';
import { formatBytes, type FullProgressWriter as ProgressWriter } from '../progress/printer.js';
import { instantStep, subStep } from '../progress/writer.js';
import { boolAttr, type OutputSpec } from './outputs.js';
import { UserError } from '../util/errors.js';
import { CorruptBlobError } from '../content/store.js';
import { removeStaleTemps, tempBeside, writeFileAtomic } from '../util/fs.js';
import { sha256 } from '../../solver/llb/digest.js';
import { ArchiveOutputs } from '../exporter/uptodate.js';
import { attestationsFor, hasAttestations, type AttestRequest } from '../attest/options.js';
import { statementOf, writeAttestationManifest, type Predicate, type Statement } from '../attest/manifest.js';
import { createHash } from 'node:crypto';
import { osPath, readdirNamesAsync } from '../util/names.js';

export interface ExportResult {
  type: string;
  dest?: string;
  manifestDigest?: Digest;
  configDigest?: Digest;
  /** The manifest's descriptor (buildx's containerimage.descriptor). */
  descriptor?: Descriptor;
  /** Full image names it was exported under. */
  names?: string[];
  /** The image was pushed to the registries its names point at. */
  pushed?: boolean;
}

export class UnsupportedOutputError extends UserError {
  constructor(message: string) { super('UNSUPPORTED_OUTPUT', message); }
}

export interface LayerVariant {
  compression?: Compression;
  level?: number;
  /** Clamp file mtimes to this (rewrite-timestamp with SOURCE_DATE_EPOCH). */
  sourceDateEpoch?: number;
  /** Recompress layers that already have a blob in another compression. */
  force?: boolean;
}

type BlobRecord = { digest: Digest; size: number; mediaType: string; diffID: Digest };
/** What the exporter adds to a snapshot's record: blobs per variant, and whether it made the layer's blob. */
type ExportInfo = SnapshotInfo & { built?: boolean; variants?: Record<string, BlobRecord> };

/** Compressed blobs for each layer of a result, creating those not made before. */
export async function layerBlobs(worker: Worker, ref: WorkerRef, variant: LayerVariant = {}): Promise<LayerDesc[]> {
  const out: LayerDesc[] = [];
  for (const id of ref.layers) out.push(await layerBlob(worker, id, variant));
  return out;
}

/** Blobs being made in this process, by snapshot and variant: an early start (prepareLayerBlob) is joined. */
const making = new WeakMap<Worker, Map<string, Promise<LayerDesc>>>();

/**
 * Starts making the blob of a result's top layer while the build goes on (a layer of the exported image, made
 * as soon as its step is done rather than when the export asks). Errors are left to the export to meet again.
 */
export function prepareLayerBlob(worker: Worker, ref: WorkerRef, variant: LayerVariant = {}, signal?: AbortSignal): void {
  const id = ref.layers.at(-1);
  if (id !== undefined && !ref.remote) layerBlob(worker, id, variant, signal).catch(() => undefined);
}

/** Waits for the blobs started early; call before the build lets go of the state directory. */
export async function settleLayerBlobs(worker: Worker): Promise<void> {
  await Promise.allSettled([...(making.get(worker)?.values() ?? [])]);
}

function layerBlob(worker: Worker, id: string, variant: LayerVariant, signal?: AbortSignal): Promise<LayerDesc> {
  const key = `${id}|${variantKey(variant)}|${variant.force ? 'force' : ''}`;
  let inFlight = making.get(worker);
  if (!inFlight) making.set(worker, (inFlight = new Map()));
  let p = inFlight.get(key);
  if (!p) {
    p = makeLayerBlob(worker, id, variant, signal);
    inFlight.set(key, p);
    // Once settled, the snapshot's record remembers the blob; a failure may be retried.
    p.then(() => inFlight!.delete(key), () => inFlight!.delete(key));
  }
  return p;
}

/** Whether a layer media type already has the compression a variant asks for. */
const isCompressedAs = (mediaType: string, compression: Compression) => mediaType.endsWith(compression === 'uncompressed' ? '.tar' : compression);

const variantKey = (variant: LayerVariant) => `${variant.compression ?? 'gzip'}:${variant.level ?? ''}:${variant.sourceDateEpoch ?? ''}`;

async function makeLayerBlob(worker: Worker, id: string, variant: LayerVariant, signal?: AbortSignal): Promise<LayerDesc> {
  const compression = variant.compression ?? 'gzip';
  const key = variantKey(variant);
  const isDefault = key === 'gzip::';
  const info = ((await worker.snapshots.info(id)) ?? {}) as ExportInfo;
  // Pulled from an image; a layer a cache import brought is a built one (it had its step's default blob).
  const pulled = info.blob && !info.built && !info.imported;
  // A pulled layer keeps its blob (its digest is what the base image says) unless recompression is forced.
  const reuse = info.blob && info.diffID && (isDefault || (pulled && (!variant.force || isCompressedAs(info.blob.mediaType, compression))))
    ? { ...info.blob, diffID: info.diffID }
    : info.variants?.[key];
  if (reuse && (await worker.store.has(reuse.digest))) return reuse;
  // Gone (a damaged blob is removed when it fails its check on its way out): a pulled layer's is fetched
  // again, anything else made again from the snapshot below (the same bytes: a blob depends only on its tree).
  if (reuse && pulled && reuse.digest === info.blob!.digest && (await worker.refetchPulledBlob(info))) return reuse;
  // The blobs this step made last: their members for unchanged parts of the tree are copied.
  const stepFile = compression === 'gzip' && info.step ? path.join(worker.opts.root, LAYER_STEPS_DIR, sha256(`${info.step} ${key}`).slice(7)) : undefined;
  const previous = stepFile ? await readStepBlobs(stepFile) : [];
  const blob = await createLayerBlob(worker.store, worker.snapshots.fsPath(id), { ...variant, reuseFrom: previous, signal });
  if (stepFile) {
    const blobs = [blob.digest, ...previous.filter((d) => d !== blob.digest)].slice(0, STEP_BLOBS);
    await writeFileAtomic(stepFile, JSON.stringify({ blobs }));
  }
  const rec: BlobRecord = { digest: blob.digest, size: blob.size, mediaType: blob.mediaType, diffID: blob.diffID };
  // Applied to the info as it is now: the cache may have written to it meanwhile.
  await worker.snapshots.updateInfo<ExportInfo>(id, (cur): ExportInfo => (isDefault
    ? { ...cur, built: true, diffID: blob.diffID, blob: { digest: blob.digest, size: blob.size, mediaType: blob.mediaType } }
    : { ...cur, variants: { ...(cur.variants ?? {}), [key]: rec } }));
  return rec;
}

/**
 * Blobs for a result: a chain imported from a remote cache keeps its blobs as they are (fetched into the
 * store if missing; the same digests give the first build's image digest) unless the variant asks for
 * rewritten timestamps or forced recompression, which needs the layers extracted; everything else goes
 * through layerBlobs.
 */
export async function resultBlobs(worker: Worker, ref: WorkerRef, variant: LayerVariant = {}): Promise<LayerDesc[]> {
  if (ref.remote) {
    const compression = variant.compression ?? 'gzip';
    const keep = variant.sourceDateEpoch === undefined &&
      (!variant.force || ref.remote.every((l) => isCompressedAs(l.blob.mediaType, compression)));
    if (keep) {
      await Promise.all(ref.remote.map((l) => worker.ensureBlob(l)));
      return ref.remote.map((l) => ({ digest: l.blob.digest, size: l.blob.size, mediaType: l.blob.mediaType, diffID: l.diffID }));
    }
    ref = await worker.materialize(ref);
  }
  return layerBlobs(worker, ref, variant);
}

/** When each layer of a result was made (its snapshot's commit, or what a remote cache recorded). */
export async function layerTimes(worker: Worker, ref: WorkerRef): Promise<(string | undefined)[]> {
  if (ref.remote) return ref.remote.map((l) => l.created);
  return Promise.all(ref.layers.map(async (id) => ((await worker.snapshots.info(id)) as { created?: string } | null)?.created));
}

/**
 * `<root>/cache/layer-steps/<hash of step and variant>`: `{ blobs }`, the step's last blobs, newest first
 * (a hint only). A few rather than one: builds of two branches or projects that share a step alternate.
 */
export const LAYER_STEPS_DIR = path.join('cache', 'layer-steps');
const STEP_BLOBS = 3;

async function readStepBlobs(file: string): Promise<Digest[]> {
  try {
    const rec = JSON.parse(await fsp.readFile(file, 'utf8')) as { blobs?: unknown };
    if (!Array.isArray(rec.blobs)) return [];
    return rec.blobs.filter((d): d is Digest => typeof d === 'string' && /^sha256:[0-9a-f]{64}$/.test(d)).slice(0, STEP_BLOBS);
  } catch {
    return [];
  }
}

/** When the newest layer was made (its snapshot's commit): cached rebuilds keep the same image times. */
async function newestLayerTime(worker: Worker, ref: WorkerRef): Promise<string | undefined> {
  let newest: string | undefined;
  for (const created of await layerTimes(worker, ref)) if (created && (!newest || created > newest)) newest = created;
  return newest;
}

/**
 * Fills in what the frontend cannot know: rootfs from the actual layers, platform, and a history aligned
 * with the layers (one non-empty entry per layer, as BuildKit's exporter normalizes it).
 */
export function finalizeConfig(
  image: ImageConfigFile, layers: LayerDesc[], platform: Platform, sourceDateEpoch?: number, createdAt?: string,
): ImageConfigFile {
  // RFC 3339 without fractional seconds, as Go prints a whole-second time (BuildKit's output).
  const epoch = sourceDateEpoch !== undefined ? new Date(sourceDateEpoch * 1000).toISOString().replace('.000Z', 'Z') : undefined;
  // Without SOURCE_DATE_EPOCH: the time the newest layer was made, so a fully cached rebuild gives the same image.
  const created = epoch ?? createdAt ?? new Date().toISOString();
  const history: HistoryEntry[] = (image.history ?? []).map((h: HistoryEntry) => ({ ...h }));
  let nonEmpty = history.filter((h) => !h.empty_layer).length;
  // More layers than history entries: describe the extra (oldest) ones, as BuildKit does.
  while (nonEmpty < layers.length) {
    history.unshift({ created, created_by: '', comment: 'loaded layer' });
    nonEmpty++;
  }
  // Fewer layers than entries claiming one: the surplus entries become empty, newest first.
  for (let i = history.length - 1; i >= 0 && nonEmpty > layers.length; i--) {
    if (!history[i].empty_layer) { history[i].empty_layer = true; nonEmpty--; }
  }
  for (const h of history) {
    if (!h.created) h.created = created;
    // SOURCE_DATE_EPOCH: nothing may claim to be newer than it (BuildKit clamps base history the same way).
    else if (epoch && Date.parse(h.created) > Date.parse(epoch)) h.created = epoch;
  }
  const { variant: _baseVariant, ...rest } = image;
  return {
    ...rest,
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    // As BuildKit: an explicit earlier creation time stays, anything later is clamped to the epoch.
    created: epoch && !(image.created && Date.parse(image.created) < Date.parse(epoch)) ? epoch : image.created ?? created,
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffID) },
    history,
  };
}

function imageNames(output: OutputSpec, tags: string[]): string[] {
  return (output.names ?? tags).map((n) => parseReference(n).toString());
}

export interface ExportOptions {
  tags: string[];
  progress: ProgressWriter;
  /** SOURCE_DATE_EPOCH, Unix seconds. */
  sourceDateEpoch?: number;
  /** `--annotation` values (manifest annotations). */
  annotations?: Record<string, string>;
  insecureRegistries?: string[];
  registries?: Record<string, RegistryHostConfig>;
  /** `--cache-to type=inline`: cache metadata for result `index`, given the layers its image uses. */
  inlineCache?: (index: number, layers: LayerDesc[]) => Promise<object | undefined>;
  /**
   * Where a `type=image` output leaves the names it would record in the local image store, for the caller to
   * record once every output succeeded. Without it they are recorded when this output succeeded (pushed).
   */
  keep?: { names: string[]; target: Descriptor; pushed?: boolean }[];
  /**
   * The build's attestations: what it asks for, and the predicates of result `index` for a request (as an
   * output takes it: image, registry and oci outputs carry them inline, local ones as files, docker and tar
   * ones not at all).
   */
  attest?: { request: AttestRequest; predicates(index: number, request: AttestRequest): Promise<Predicate[]> };
}

/** One platform's result: its snapshot chain, the image config the frontend made, its platform. */
export interface PlatformResult {
  ref: WorkerRef;
  image: ImageConfigFile;
  platform: Platform;
}

/** The layer blobs an image output (oci, docker, image, registry) asks for. */
export function imageLayerVariant(output: OutputSpec, sourceDateEpoch?: number): LayerVariant {
  return {
    compression: (output.attrs.compression ?? 'gzip') as Compression,
    level: output.attrs['compression-level'] !== undefined ? Number(output.attrs['compression-level']) : undefined,
    sourceDateEpoch: boolAttr(output, 'rewrite-timestamp') ? sourceDateEpoch : undefined,
    force: boolAttr(output, 'force-compression'),
  };
}

/** The progress vertex of an output's export (the build marks it failed when the export throws). */
export function exportVertex(output: OutputSpec): string {
  return `export:${output.type}:${output.dest ?? ''}`;
}

export async function exportImage(
  worker: Worker,
  results: PlatformResult[],
  output: OutputSpec,
  opts: ExportOptions,
): Promise<ExportResult> {
  if (output.type === 'cacheonly') return { type: output.type };
  const vertex = exportVertex(output);
  const progress = opts.progress;
  const multi = results.length > 1;
  if (output.type === 'local' || output.type === 'tar') {
    progress.start({ id: vertex, name: output.type === 'local' ? 'exporting to client directory' : 'exporting to client tarball' });
    if (output.type === 'tar' && multi) throw new UnsupportedOutputError('type=tar takes one platform; use type=local or type=oci for several');
    const attest = opts.attest && output.type === 'local' ? attestationsFor(opts.attest.request, output) : {};
    // Several platforms: one subdirectory each (`linux_arm64`), as buildx writes them.
    for (const [index, r] of results.entries()) {
      const dest = multi ? path.join(output.dest!, platformDirName(r.platform)) : output.dest!;
      const mounted = await worker.snapshots.mount((await worker.materialize(r.ref)).layers);
      try {
        if (output.type === 'local') {
          const { skipped } = await writingTo(dest, () => exportLocalDir(mounted.target, dest));
          if (skipped.length) {
            const list = skipped.slice(0, 3).join(', ') + (skipped.length > 3 ? `, and ${skipped.length - 3} more` : '');
            progress.log(vertex, 'stderr', Buffer.from(`WARNING: ${skipped.length} device node${skipped.length > 1 ? 's' : ''} not written to ${dest}: ${list}\n`));
          }
          if (hasAttestations(attest)) await writingTo(dest, async () => writeAttestationFiles(dest, mounted.target, await opts.attest!.predicates(index, attest)));
        } else await writingTo(dest, () => exportFilesystemTar(mounted.target, dest));
      } finally {
        await mounted.unmount();
      }
    }
    progress.done(vertex);
    return { type: output.type, dest: output.dest };
  }

  const variant = imageLayerVariant(output, opts.sourceDateEpoch);
  const compression = variant.compression!;
  const rewrite = boolAttr(output, 'rewrite-timestamp');
  if (rewrite && opts.sourceDateEpoch === undefined) {
    throw new UnsupportedOutputError('rewrite-timestamp=true needs SOURCE_DATE_EPOCH (environment or --build-arg)');
  }
  const attest = opts.attest ? attestationsFor(opts.attest.request, output) : {};
  // zstd layers have no Docker media type that every runtime reads, and attestation manifests live in an
  // OCI index: BuildKit switches to OCI types for both.
  const oci = boolAttr(output, 'oci-mediatypes', output.type === 'oci') || compression === 'zstd' || hasAttestations(attest);
  const annotations: Record<string, string> = { ...(opts.annotations ?? {}) };
  for (const [k, v] of Object.entries(output.attrs)) {
    const m = /^annotation(?:-manifest)?\.(.+)$/.exec(k);
    if (m) annotations[m[1]] = v;
  }
  if (Object.keys(annotations).length && !oci) {
    throw new UnsupportedOutputError(`annotations need OCI media types: add oci-mediatypes=true to type=${output.type}`);
  }
  if (output.type === 'docker' && multi) {
    throw new UnsupportedOutputError('docker exporter does not currently support exporting manifest lists: use --output type=oci for several platforms');
  }
  const names = imageNames(output, opts.tags);
  const push = output.type === 'registry' || boolAttr(output, 'push');
  if (push && names.length === 0) throw new UnsupportedOutputError(`type=${output.type} with push needs a name (name=REF or -t REF)`);

  progress.start({ id: vertex, name: `exporting to ${output.type === 'oci' ? 'oci image format' : output.type === 'docker' ? 'docker image format' : 'image'}` });
  // Blobs are checked against their digests on their way out; one that fails is removed, and the image is
  // made once more, its layers' blobs fetched or made again.
  for (let attempt = 0; ; attempt++) {
    try {
      return await writeAndExport(worker, results, output, opts, { vertex, variant, oci, annotations, names, push, attest });
    } catch (e) {
      if (!(e instanceof CorruptBlobError) || attempt > 0) throw e;
    }
  }
}

async function writeAndExport(
  worker: Worker, results: PlatformResult[], output: OutputSpec, opts: ExportOptions,
  o: { vertex: string; variant: LayerVariant; oci: boolean; annotations: Record<string, string>; names: string[]; push: boolean; attest: AttestRequest },
): Promise<ExportResult> {
  const { vertex, variant, oci, annotations, names, push, attest } = o;
  const progress = opts.progress;
  const multi = results.length > 1;
  const images: { manifest: Descriptor; config: Descriptor; platform: Platform }[] = [];
  // Sub-steps as BuildKit's image exporter names them: exporting layers, manifest, config, naming, pushing.
  const exportingLayers = subStep(progress, vertex, 'exporting layers');
  const layersOf: LayerDesc[][] = [];
  for (const r of results) layersOf.push(await resultBlobs(worker, r.ref, variant));
  exportingLayers.done();
  for (const [index, r] of results.entries()) {
    const layers = layersOf[index];
    const config = finalizeConfig(r.image, layers, r.platform, opts.sourceDateEpoch, await newestLayerTime(worker, r.ref));
    const inline = await opts.inlineCache?.(index, layers);
    if (inline) (config as unknown as Record<string, unknown>)[INLINE_CACHE_FIELD] = inline;
    const written = await writeImage(worker.store, { config, layers }, { oci, annotations });
    images.push({ manifest: written.manifest, config: written.config, platform: r.platform });
    instantStep(progress, vertex, `exporting manifest ${written.manifest.digest}`);
    instantStep(progress, vertex, `exporting config ${written.config.digest}`);
  }
  // Per image manifest, an attestation manifest naming it (BuildKit's attestation storage).
  const attestations: Descriptor[] = [];
  if (hasAttestations(attest)) {
    for (const [index, image] of images.entries()) {
      const predicates = await opts.attest!.predicates(index, attest);
      if (predicates.length === 0) continue;
      const d = await writeAttestationManifest(worker.store, image.manifest, image.platform, names, predicates);
      attestations.push(d);
      instantStep(progress, vertex, `exporting attestation manifest ${d.digest}`);
    }
  }
  // One platform: the manifest itself; several, or attestations: an index (a Docker manifest list with Docker types).
  const indexed = multi || attestations.length > 0;
  const root = indexed ? await writeImageIndex(worker.store, images, attestations) : images[0].manifest;
  if (indexed) instantStep(progress, vertex, `exporting manifest list ${root.digest}`);

  if (output.type === 'oci' && !boolAttr(output, 'tar', true)) {
    await writingTo(output.dest!, () => exportLayoutDir(worker.store, root, { dest: output.dest!, names }));
  } else if (output.type === 'oci' || (output.type === 'docker' && output.dest)) {
    const dest = output.dest!;
    const outputs = new ArchiveOutputs(worker.opts.root);
    const fingerprint = sha256(JSON.stringify([output.type, root.digest, names]));
    if (await outputs.upToDate(dest, fingerprint)) {
      progress.log(vertex, 'stderr', Buffer.from(`${dest} already holds this image\n`));
    } else {
      const sending = subStep(progress, vertex, 'sending tarball');
      const record = { outputs, fingerprint };
      const w = await writingTo(dest, () => (output.type === 'oci' ? exportLayoutTar(worker.store, root, { dest, names, record }) : exportDockerTar(worker.store, { manifest: root }, { dest, names, record })));
      sending.done();
      // A rebuild that changed only the archive's last entries (the default provenance's times) rewrote those.
      if (w.kept > 0) progress.log(vertex, 'stderr', Buffer.from(`${dest}: kept the first ${formatBytes(w.kept)}, wrote ${formatBytes(w.written)}${w.inPlace ? ' in place' : ''}\n`));
    }
  } else if (output.type === 'docker') {
    await loadIntoDocker(worker, root, names);
  } else {
    if (push) {
      const insecure = [...(opts.insecureRegistries ?? [])];
      if (boolAttr(output, 'registry.insecure') || boolAttr(output, 'insecure')) insecure.push(...names.map((n) => parseReference(n).domain));
      const client = insecure.length > (opts.insecureRegistries?.length ?? 0) ? new RegistryClient({ insecureRegistries: insecure, registries: opts.registries }) : worker.registry;
      // Sub-steps of the export, as BuildKit's: `pushing layers` (bytes the registry has: sent, mounted or
      // already there), then the manifest.
      // Nothing damaged is pushed.
      await verifyBlobs(worker.store, await reachableBlobs(worker.store, [root]));
      // Base layers pushed to the registry they came from are mounted, not uploaded again.
      const mountFrom = (await worker.resolvedImages()).map((i) => i.ref);
      const sizes = new Map(layersOf.flat().map((l) => [l.digest as string, l.size]));
      const pushing = subStep(progress, vertex, 'pushing layers', [...sizes.values()].reduce((a, b) => a + b, 0));
      let pushed = 0;
      const onBlob = (d: Descriptor) => {
        const size = sizes.get(d.digest);
        if (size === undefined) return;
        sizes.delete(d.digest);
        pushing.update((pushed += size));
      };
      // push-by-digest (BuildKit's): the manifest goes to the names' repositories by digest, no tag moves;
      // what joins such images into one index (an instance's platform fan-out) tags that.
      const byDigest = boolAttr(output, 'push-by-digest');
      const refs = names.map(parseReference).map((r) => (byDigest ? new Reference(r.domain, r.path) : r));
      await pushImage(client, worker.store, root, refs, { mountFrom, onBlob });
      pushing.done();
      instantStep(progress, vertex, `pushing manifest for ${byDigest ? [...new Set(refs.map((r) => r.name))].join(', ') : names.join(', ')}@${root.digest}`);
    }
    // A name is recorded only for an image that was built and, when pushing, pushed: a failed push leaves
    // the store as it was (a FROM of that name must not find an image its registry does not have).
    if (names.length && boolAttr(output, 'store', true) && !boolAttr(output, 'push-by-digest')) {
      if (opts.keep) {
        // Recorded by the build once every output succeeded (moments later); shown here, in the export step, as BuildKit shows it.
        opts.keep.push({ names, target: root, pushed: push });
        instantStep(progress, vertex, `naming to ${names.join(', ')}`);
      } else {
        const naming = subStep(progress, vertex, `naming to ${names.join(', ')}`);
        await worker.images.put(names, root, { repoDigests: push ? names : [] });
        naming.done();
      }
    }
  }
  progress.done(vertex);
  return {
    type: output.type,
    dest: output.dest,
    manifestDigest: root.digest as Digest,
    ...(multi ? {} : { configDigest: images[0].config.digest as Digest }),
    descriptor: root,
    names,
    ...(push ? { pushed: true } : {}),
  };
}

export class OutputWriteError extends UserError {
  constructor(dest: string, cause: Error) { super('OUTPUT_FAILED', `failed to write output ${dest}: ${cause.message}`, { cause }); }
}

/** An output destination the user named that cannot be written (a file in the way, no permission, a full
 * disk) is their error to fix, not a crash. */
async function writingTo<T>(dest: string, write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    // A full disk is told as such by the build (diskFullError), wherever it happens.
    if (e instanceof UserError || typeof code !== 'string' || !/^E[A-Z]+$/.test(code) || code === 'ENOSPC' || code === 'EDQUOT') throw e;
    throw new OutputWriteError(dest, e as Error);
  }
}

/** A tar of the final filesystem (`type=tar`, `-o -`), numeric owners and sorted entries like a layer. */
async function exportFilesystemTar(dir: string, dest: string): Promise<void> {
  if (dest === '-') {
    await writeLayerTar(dir, process.stdout);
    return;
  }
  await removeStaleTemps(dest);
  const tmp = tempBeside(dest);
  const out = fs.createWriteStream(tmp, { mode: 0o644 });
  try {
    await writeLayerTar(dir, out);
    out.end();
    await new Promise<void>((resolve, reject) => out.once('close', resolve).once('error', reject));
    await fsp.rename(tmp, dest);
  } catch (e) {
    out.destroy();
    await fsp.rm(tmp, { force: true });
    throw e;
  }
}

/** `--load`: the docker tarball streamed into `docker load`; a missing daemon is a user error. */
async function loadIntoDocker(worker: Worker, manifest: Descriptor, names: string[]): Promise<void> {
  const tmp = path.join(worker.opts.root, `load-${process.pid}-${Date.now()}.tar`);
  try {
    await exportDockerTar(worker.store, { manifest }, { dest: tmp, names });
    const docker = process.env.BUILDER_DOCKER ?? 'docker';
    const child = spawn(docker, ['load', '-i', tmp], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const code = await new Promise<number>((resolve) => {
      child.once('error', (e) => { stderr = e.message; resolve(-1); });
      child.once('close', (c) => resolve(c ?? -1));
    });
    if (code !== 0) throw new UnsupportedOutputError(`loading into docker failed (is a docker daemon running?): ${stderr.trim().split('\n').pop()}`);
  } finally {
    await fsp.rm(tmp, { force: true });
  }
}

/**
 * BuildKit's local exporter's attestations: each statement as a file beside the result (`provenance.json`,
 * `sbom.spdx.json`), its subjects every regular file of the result with its sha256.
 */
async function writeAttestationFiles(dest: string, tree: string, predicates: Predicate[]): Promise<void> {
  if (predicates.length === 0) return;
  const subject: Statement['subject'] = [];
  const stack = [''];
  while (stack.length) {
    const rel = stack.pop()!;
    // Names that are not UTF-8 go through their bytes (util/names.ts), as the local exporter copies them.
    for (const name of await readdirNamesAsync(path.join(tree, rel))) {
      const p = rel ? `${rel}/${name}` : name;
      const st = await fsp.lstat(osPath(path.join(tree, p)));
      if (st.isDirectory()) stack.push(p);
      else if (st.isFile()) {
        const hash = createHash('sha256');
        for await (const chunk of fs.createReadStream(osPath(path.join(tree, p)))) hash.update(chunk as Buffer);
        subject.push({ name: p, digest: { sha256: hash.digest('hex') } });
      }
    }
  }
  subject.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const names = new Set<string>();
  for (const p of predicates) {
    const name = path.basename(p.path ?? 'attestation.json');
    if (names.has(name)) throw new UnsupportedOutputError(`duplicate attestation path name ${name}`);
    names.add(name);
    const file = path.join(dest, name);
    const tmp = tempBeside(file);
    await fsp.writeFile(tmp, JSON.stringify(statementOf(p, subject), null, 2), { mode: 0o600 });
    await fsp.rename(tmp, file);
  }
}

/** `linux/arm/v7` -> `linux_arm_v7`. */
function platformDirName(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join('_');
}
