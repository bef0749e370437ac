// The public build entry point: Dockerfile -> frontend (LLB + image config) -> solver on the worker ->
// exporters. The CLI is a thin layer over `build()`; embedders call it directly.
import fs from 'node:fs/promises';
import path from 'node:path';
import os from 'node:os';
import { dockerfileToLLB, type ImageMetaResolver } from '../../frontend/index.js';
import { solve, SolveError, CanceledError } from '../../solver/solver.js';
import type { Digest, OpMetadata, Platform } from '../../solver/llb/ops.js';
import { Worker, ExecError, type WorkerRef } from '../worker/worker.js';
import { PlainProgress, type ProgressWriter } from '../progress/printer.js';
import { UserError, BuilderError } from '../util/errors.js';
import { parseOutput, type OutputSpec } from './outputs.js';
import { exportImage, type ExportResult } from './export.js';
import { parsePlatform, hostPlatform } from './platform.js';
import { BuildSession } from './lock.js';
import { CacheRecords } from '../cache/records.js';
import { BuildCache } from '../cache/solvecache.js';
import { applyCacheFilters } from '../cache/filters.js';
import { parseSize } from '../cache/gc.js';
import { autoGC } from './prune.js';

export interface BuildOptions {
  /** The build context directory. */
  context: string;
  /** Path of the Dockerfile; default `<context>/Dockerfile`. */
  file?: string;
  tags?: string[];
  buildArgs?: Record<string, string>;
  labels?: Record<string, string>;
  target?: string;
  /** `os/arch[/variant]`; default the host's. */
  platform?: string;
  /** `--output` specs (strings as on the command line, or parsed). */
  outputs?: (string | OutputSpec)[];
  /** State directory. */
  root?: string;
  /** OCI runtime binary: `runc` (default), `crun`, or a path. */
  ociRuntime?: string;
  insecureRegistries?: string[];
  noCache?: boolean;
  /** Stages whose steps ignore the cache (`--no-cache-filter`). */
  noCacheFilter?: string[];
  /** Re-resolve and re-check base images instead of reusing a cached FROM (`--pull`). */
  pull?: boolean;
  /** After the build, evict least recently used cache while the state exceeds this many bytes
   * (default: env BUILDER_GC_KEEP_STORAGE, e.g. `20GB`; unset means no automatic GC). */
  gcKeepStorage?: number;
  maxParallelism?: number;
  progress?: ProgressWriter;
  signal?: AbortSignal;
}

export interface BuildResult {
  /** Digest of the image manifest, when an image was exported. */
  manifestDigest?: Digest;
  /** Digest of the image config (the "image ID" Docker shows). */
  configDigest?: Digest;
  exports: ExportResult[];
}

/** A failed build, with a one-line message naming the Dockerfile line: `Dockerfile:7: COPY failed: ...`. */
export class BuildError extends UserError {
  constructor(message: string, readonly outputTail: string[] = [], options?: { cause?: unknown }) {
    super('BUILD_FAILED', message, options);
  }
}

export function defaultRoot(): string {
  if (process.env.BUILDER_ROOT) return process.env.BUILDER_ROOT;
  if (process.getuid?.() === 0) return '/var/lib/builder';
  const data = process.env.XDG_DATA_HOME || path.join(os.homedir(), '.local', 'share');
  return path.join(data, 'builder');
}

export async function build(opts: BuildOptions): Promise<BuildResult> {
  const root = path.resolve(opts.root ?? defaultRoot());
  const progress = opts.progress ?? new PlainProgress(process.stderr);
  const contextDir = path.resolve(opts.context);
  const dockerfilePath = path.resolve(opts.file ?? path.join(contextDir, 'Dockerfile'));
  const filename = path.basename(dockerfilePath);
  const outputs = (opts.outputs ?? []).map((o) => (typeof o === 'string' ? parseOutput(o) : o));
  const targetPlatform = opts.platform ? parsePlatform(opts.platform) : hostPlatform();

  const ctxStat = await fs.stat(contextDir).catch(() => null);
  if (!ctxStat?.isDirectory()) throw new BuildError(`unable to prepare context: path "${opts.context}" not found`);

  await fs.mkdir(root, { recursive: true });
  const worker = new Worker({ root, runtime: opts.ociRuntime, insecureRegistries: opts.insecureRegistries });
  // Builds run side by side; what killed builds left is cleared only by a build that is alone.
  const session = await BuildSession.start(root, async (alone) => {
    await worker.init({ recover: alone });
    if (alone) await new CacheRecords(root, worker.snapshots).cleanup();
  }, opts.signal);
  try {

    const loadId = 'internal:dockerfile';
    progress.start({ id: loadId, name: `[internal] load build definition from ${filename}` });
    const dockerfile = await fs.readFile(dockerfilePath, 'utf8').catch(() => {
      progress.error(loadId, 'not found');
      throw new BuildError(`failed to read dockerfile: open ${dockerfilePath}: no such file or directory`);
    });
    progress.done(loadId);
    const contextExcludes = await readDockerignore(contextDir, dockerfilePath);

    const metaShown = new Set<string>();
    const resolver: ImageMetaResolver = {
      resolveImageConfig: async (ref: string, platform: Platform) => {
        const id = `internal:meta:${ref}:${platform.architecture}`;
        // One progress step per image, however many stages use it (the worker memoizes the resolve).
        if (metaShown.has(id)) {
          const image = await worker.resolveImage(ref, platform);
          return { ref: image.ref.toString(), config: image.config };
        }
        metaShown.add(id);
        progress.start({ id, name: `[internal] load metadata for ${ref}` });
        try {
          const image = await worker.resolveImage(ref, platform);
          progress.done(id);
          return { ref: image.ref.toString(), config: image.config };
        } catch (e) {
          progress.error(id, (e as Error).message);
          throw e;
        }
      },
    };

    let converted;
    try {
      converted = await dockerfileToLLB({
        dockerfile, filename, target: opts.target, buildArgs: opts.buildArgs, labels: opts.labels,
        targetPlatform, buildPlatform: hostPlatform(), resolver, contextExcludes, noCache: opts.noCache,
      });
    } catch (e) {
      throw toBuildError(e, filename);
    }

    applyCacheFilters(converted.definition, { noCacheFilter: opts.noCacheFilter, pull: opts.pull });
    const names = new Map<Digest, string>();
    const locals = { context: { dir: contextDir } };
    const cache = new BuildCache({
      root, worker, locals, buildArgs: Object.keys(opts.buildArgs ?? {}), noCacheFilter: opts.noCacheFilter,
      scope: `${dockerfilePath}\0${opts.target ?? ''}\0${opts.platform ?? ''}`,
    });
    const ref = await solve<WorkerRef>(converted.definition, {
      maxParallelism: opts.maxParallelism,
      signal: opts.signal,
      cache,
      needsInput: (op, i, inputOp) => worker.needsInput(op, i, inputOp),
      execute: worker.opExecutor(locals, (digest, stream, chunk) => progress.log(digest, stream, chunk)),
      onEvent: (ev) => {
        if (ev.type === 'start') {
          progress.start({ id: ev.digest, name: vertexName(ev.metadata, names, ev.digest), cacheKey: ev.cacheKey, cacheMiss: ev.cacheMiss });
        } else if (ev.type === 'cached') progress.done(ev.digest, { cached: true });
        else if (ev.type === 'done') progress.done(ev.digest);
        else if (ev.type === 'error') progress.error(ev.digest, errorMessage(ev.error));
        else progress.canceled(ev.digest);
      },
    }).catch((e) => {
      throw toBuildError(e, filename, progress);
    }).finally(() => cache.finish().catch(() => undefined));

    const exports: ExportResult[] = [];
    for (const output of outputs) {
      exports.push(await exportImage(worker, ref, converted.image, output, { tags: opts.tags ?? [], platform: targetPlatform, progress }));
    }
    const gcLimit = opts.gcKeepStorage ?? (process.env.BUILDER_GC_KEEP_STORAGE ? parseSize(process.env.BUILDER_GC_KEEP_STORAGE) : undefined);
    if (gcLimit !== undefined) await session.ifAlone(root, () => autoGC(root, gcLimit));
    const image = exports.find((e) => e.manifestDigest);
    return { manifestDigest: image?.manifestDigest, configDigest: image?.configDigest, exports };
  } finally {
    await session.end();
  }
}

function vertexName(meta: OpMetadata, names: Map<Digest, string>, digest: Digest): string {
  const name = meta.description ?? digest;
  names.set(digest, name);
  return name;
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** The instruction keyword of an op, from its description `[stage 2/3] RUN make`. */
function instructionOf(meta: OpMetadata): string | undefined {
  return /\]\s+([A-Z]+)\b/.exec(meta.description ?? '')?.[1];
}

/** Renders any failure of the frontend or the solve as a one-line BuildError. */
function toBuildError(e: unknown, filename: string, progress?: ProgressWriter): Error {
  if (e instanceof BuildError) return e;
  if (e instanceof SolveError) {
    const loc = e.metadata.location;
    const where = loc ? `${loc.file || filename}:${loc.startLine}: ` : '';
    const instruction = instructionOf(e.metadata);
    const cause = e.cause;
    if (cause instanceof UserError || cause instanceof BuilderError) {
      const tail = cause instanceof ExecError && progress ? progress.tail(e.digest, 5) : [];
      return new BuildError(`${where}${instruction ? `${instruction} failed: ` : ''}${cause.message}`, tail, { cause });
    }
    if (cause instanceof CanceledError) return cause;
    // An unexpected error inside an op: still name the line, keep the cause for debugging.
    return new BuildError(`${where}${instruction ? `${instruction} failed: ` : ''}${errorMessage(cause)}`, [], { cause });
  }
  const loc = (e as { location?: { file?: string; startLine: number } }).location;
  if (e instanceof UserError) {
    return new BuildError(loc ? `${loc.file || filename}:${loc.startLine}: ${e.message}` : e.message, [], { cause: e });
  }
  return e as Error;
}

/** `.dockerignore` patterns: `<Dockerfile>.dockerignore` beside the Dockerfile wins over the context's. */
async function readDockerignore(contextDir: string, dockerfilePath: string): Promise<string[]> {
  for (const candidate of [`${dockerfilePath}.dockerignore`, path.join(contextDir, '.dockerignore')]) {
    const text = await fs.readFile(candidate, 'utf8').catch(() => null);
    if (text !== null) {
      return text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    }
  }
  return [];
}
