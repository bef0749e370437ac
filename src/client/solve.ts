// `solve()`: runs an LLB definition that another frontend made (not a Dockerfile) on this engine, with the
// same worker, state directory and exporters as `build()`.
import path from 'node:path';
import { solve as solveGraph } from '../../solver/solver.js';
import type { Definition } from '../../solver/llb/definition.js';
import type { ImageConfigFile } from '../image/types.js';
import type { WorkerRef } from '../worker/worker.js';
import { PlainProgress, completeWriter, type ProgressWriter } from '../progress/printer.js';
import { exportImage, type ExportResult } from './export.js';
import { parseOutput } from './outputs.js';
import { parsePlatform, hostPlatform } from './platform.js';
import { BuildSession } from './lock.js';
import { defaultRoot, diskFullError, openWorker } from './build.js';

export interface SolveOptions {
  definition: Definition;
  /** Directories for the definition's local sources, by name (a Dockerfile build calls its context `context`). */
  locals?: Record<string, string>;
  /** The image config of the result (config fields and history); default an empty one. */
  image?: ImageConfigFile;
  platform?: string;
  outputs?: string[];
  tags?: string[];
  root?: string;
  ociRuntime?: string;
  progress?: ProgressWriter;
  signal?: AbortSignal;
}

export async function solve(opts: SolveOptions): Promise<{ exports: ExportResult[]; manifestDigest?: string }> {
  try {
    return await solveIn(opts);
  } catch (e) {
    // As build(): a full disk is one line, not a crash.
    throw diskFullError(e, 'writing the state directory or an output') ?? e;
  }
}

async function solveIn(opts: SolveOptions): Promise<{ exports: ExportResult[]; manifestDigest?: string }> {
  const root = path.resolve(opts.root ?? defaultRoot());
  const progress = completeWriter(opts.progress ?? new PlainProgress(process.stderr));
  const platform = opts.platform ? parsePlatform(opts.platform) : hostPlatform();
  const worker = await openWorker(root, { runtime: opts.ociRuntime }, progress);
  // As build(): runs beside other builds; leftovers of killed builds are cleared only when alone.
  const session = await BuildSession.start(root, (alone) => worker.init({ recover: alone }), opts.signal);
  try {
    const locals = Object.fromEntries(Object.entries(opts.locals ?? {}).map(([k, dir]) => [k, { dir: path.resolve(dir) }]));
    const ref = await solveGraph<WorkerRef>(opts.definition, {
      signal: opts.signal,
      execute: worker.opExecutor(locals, (digest, stream, chunk) => progress.log(digest, stream, chunk), {},
        (digest, message) => progress.warning({ vertex: digest, level: 1, short: message })),
      onEvent: (ev) => {
        if (ev.type === 'start') progress.start({ id: ev.digest, name: ev.metadata.description ?? ev.digest });
        else if (ev.type === 'cached') progress.done(ev.digest, { cached: true });
        else if (ev.type === 'done') progress.done(ev.digest);
        else if (ev.type === 'error') progress.error(ev.digest, (ev.error as Error)?.message ?? String(ev.error));
        else progress.canceled(ev.digest);
      },
    });
    const image: ImageConfigFile = opts.image ?? { architecture: platform.architecture, os: platform.os, config: {} };
    const exports: ExportResult[] = [];
    for (const o of opts.outputs ?? []) {
      exports.push(await exportImage(worker, [{ ref, image, platform }], parseOutput(o), { tags: opts.tags ?? [], progress }));
    }
    return { exports, manifestDigest: exports.find((e) => e.manifestDigest)?.manifestDigest };
  } finally {
    await session.end();
  }
}
