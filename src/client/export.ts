// From a solved result to an output: layer blobs for the result's snapshots (compressed once and remembered
// per snapshot), an image config and manifest, then the exporter the output names.
import type { Digest, Platform } from '../../solver/llb/ops.js';
import type { Worker, WorkerRef, SnapshotInfo } from '../worker/worker.js';
import path from 'node:path';
import type { ImageConfigFile, HistoryEntry, Descriptor } from '../image/types.js';
import { createLayerBlob } from '../archive/layer.js';
import { writeImage, type LayerDesc } from '../exporter/image.js';
import { exportOCITar } from '../exporter/oci.js';
import { exportDockerTar } from '../exporter/docker.js';
import { exportLocalDir } from '../exporter/local.js';
import { parseReference } from '../registry/reference.js';
import type { ProgressWriter } from '../progress/printer.js';
import type { OutputSpec } from './outputs.js';
import { UserError } from '../util/errors.js';

export interface ExportResult {
  type: string;
  dest?: string;
  manifestDigest?: Digest;
  configDigest?: Digest;
}

export class UnsupportedOutputError extends UserError {
  constructor(message: string) { super('UNSUPPORTED_OUTPUT', message); }
}

/** Compressed blobs for each layer of a result, creating those not made before. */
export async function layerBlobs(worker: Worker, ref: WorkerRef): Promise<LayerDesc[]> {
  const out: LayerDesc[] = [];
  for (const id of ref.layers) {
    const info = ((await worker.snapshots.info(id)) ?? {}) as SnapshotInfo;
    if (info.blob && info.diffID && (await worker.store.has(info.blob.digest))) {
      out.push({ ...info.blob, diffID: info.diffID });
      continue;
    }
    const blob = await createLayerBlob(worker.store, worker.snapshots.fsPath(id));
    const updated: SnapshotInfo = { ...info, diffID: blob.diffID, blob: { digest: blob.digest, size: blob.size, mediaType: blob.mediaType } };
    await worker.snapshots.setInfo(id, updated);
    out.push({ digest: blob.digest, size: blob.size, mediaType: blob.mediaType, diffID: blob.diffID });
  }
  return out;
}

/** When the newest layer was made (its snapshot's commit): cached rebuilds keep the same image times. */
async function newestLayerTime(worker: Worker, ref: WorkerRef): Promise<string | undefined> {
  let newest: string | undefined;
  for (const id of ref.layers) {
    const created = ((await worker.snapshots.info(id)) as { created?: string } | null)?.created;
    if (created && (!newest || created > newest)) newest = created;
  }
  return newest;
}

/**
 * Fills in what the frontend cannot know: rootfs from the actual layers, platform, and a history aligned
 * with the layers (one non-empty entry per layer, as BuildKit's exporter normalizes it).
 */
export function finalizeConfig(image: ImageConfigFile, layers: LayerDesc[], platform: Platform, createdAt?: string): ImageConfigFile {
  const created = createdAt ?? new Date().toISOString();
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
  for (const h of history) if (!h.created) h.created = created;
  const { variant: _baseVariant, ...rest } = image;
  return {
    ...rest,
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    created: image.created ?? created,
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffID) },
    history,
  };
}

function imageNames(output: OutputSpec, tags: string[]): string[] {
  return (output.names ?? tags).map((n) => parseReference(n).toString());
}

/** One platform's result: its snapshot chain, the image config the frontend made, its platform. */
export interface PlatformResult {
  ref: WorkerRef;
  image: ImageConfigFile;
  platform: Platform;
}

export async function exportImage(
  worker: Worker,
  results: PlatformResult[],
  output: OutputSpec,
  opts: { tags: string[]; progress: ProgressWriter },
): Promise<ExportResult> {
  const vertex = `export:${output.type}:${output.dest ?? ''}`;
  const progress = opts.progress;
  const multi = results.length > 1;
  if (output.type === 'local') {
    progress.start({ id: vertex, name: 'exporting to client directory' });
    // Several platforms: one subdirectory each (`linux_arm64`), as buildx writes them.
    for (const r of results) {
      const dest = multi ? path.join(output.dest!, platformDirName(r.platform)) : output.dest!;
      const mounted = await worker.snapshots.mount(r.ref.layers);
      try {
        await exportLocalDir(mounted.target, dest);
      } finally {
        await mounted.unmount();
      }
    }
    progress.done(vertex);
    return { type: 'local', dest: output.dest };
  }
  if (output.type !== 'oci' && output.type !== 'docker') {
    throw new UnsupportedOutputError(`output type "${output.type}" is not supported yet (use oci, docker or local)`);
  }
  if (!output.dest) {
    throw new UnsupportedOutputError(`type=${output.type} needs dest=FILE (loading into a docker daemon is not supported yet)`);
  }
  if (output.type === 'docker' && multi) {
    throw new UnsupportedOutputError('docker exporter does not currently support exporting manifest lists: use --output type=oci for several platforms');
  }
  progress.start({ id: vertex, name: output.type === 'oci' ? 'exporting to oci image format' : 'exporting to docker image format' });
  const images: { manifest: Descriptor; config: Descriptor; platform: Platform }[] = [];
  for (const r of results) {
    const layers = await layerBlobs(worker, r.ref);
    const config = finalizeConfig(r.image, layers, r.platform, await newestLayerTime(worker, r.ref));
    const written = await writeImage(worker.store, { config, layers });
    images.push({ manifest: written.manifest, config: written.config, platform: r.platform });
  }
  const names = imageNames(output, opts.tags);
  let root: Descriptor;
  if (output.type === 'oci') {
    root = await exportOCITar(worker.store, images, { dest: output.dest, names });
  } else {
    await exportDockerTar(worker.store, { manifest: images[0].manifest }, { dest: output.dest, names });
    root = images[0].manifest;
  }
  progress.done(vertex);
  return {
    type: output.type,
    dest: output.dest,
    manifestDigest: root.digest as Digest,
    ...(multi ? {} : { configDigest: images[0].config.digest as Digest }),
  };
}

/** `linux/arm/v7` -> `linux_arm_v7`. */
function platformDirName(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join('_');
}
