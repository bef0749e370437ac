// The solver runs a Definition: each op once (memoized by digest), an op as soon as its inputs are done,
// up to `maxParallelism` at a time, only what the root needs. The first failure aborts everything still
// running (through the AbortSignal handed to each op) and is the error the solve reports.
import os from 'node:os';
import PQueue from 'p-queue';
import type { Definition } from './llb/definition.js';
import { opInputs, type Digest, type Op, type OpMetadata } from './llb/ops.js';

export interface OpContext<R> {
  digest: Digest;
  op: Op;
  metadata: OpMetadata;
  inputs: R[];
  signal: AbortSignal;
}

/** Executes one op given its inputs' results; supplied by the worker. */
export type OpExecutor<R> = (ctx: OpContext<R>) => Promise<R>;

export type SolveEvent =
  | { type: 'start'; digest: Digest; metadata: OpMetadata }
  | { type: 'done'; digest: Digest; metadata: OpMetadata; durationMs: number }
  | { type: 'error'; digest: Digest; metadata: OpMetadata; durationMs: number; error: unknown }
  | { type: 'canceled'; digest: Digest; metadata: OpMetadata; durationMs: number };

export interface SolveOptions<R> {
  execute: OpExecutor<R>;
  maxParallelism?: number;
  signal?: AbortSignal;
  onEvent?: (event: SolveEvent) => void;
}

/** An op failed: carries the op's metadata (description and source location) for the error message. */
export class SolveError extends Error {
  readonly code = 'SOLVE_FAILED';
  constructor(readonly digest: Digest, readonly metadata: OpMetadata, readonly cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause), { cause });
    this.name = 'SolveError';
  }
}

export class CanceledError extends Error {
  readonly code = 'CANCELED';
  constructor(message = 'build canceled') {
    super(message);
    this.name = 'CanceledError';
  }
}

export function defaultParallelism(): number {
  return Math.max(2, os.availableParallelism());
}

export async function solve<R>(def: Definition, opts: SolveOptions<R>): Promise<R> {
  return (await solveRoots(def, [def.root], opts))[0];
}

/**
 * Solves several results of one definition together (one per target platform, say): an op they share
 * runs once, and the first failure stops them all.
 */
export async function solveRoots<R>(def: Definition, roots: Digest[], opts: SolveOptions<R>): Promise<R[]> {
  const queue = new PQueue({ concurrency: opts.maxParallelism ?? defaultParallelism() });
  const abort = new AbortController();
  const onOuterAbort = () => abort.abort(new CanceledError());
  if (opts.signal?.aborted) onOuterAbort();
  opts.signal?.addEventListener('abort', onOuterAbort, { once: true });

  const results = new Map<Digest, Promise<R>>();
  const all: Promise<unknown>[] = [];
  let firstError: SolveError | undefined;

  const run = (digest: Digest): Promise<R> => {
    let p = results.get(digest);
    if (p) return p;
    const op = def.ops[digest];
    if (!op) throw new Error(`solver: op ${digest} is not in the definition`);
    const metadata = def.metadata[digest] ?? {};
    p = (async () => {
      const inputs = await Promise.all(opInputs(op).map((i) => run(i.digest)));
      return queue.add(
        async () => {
          abort.signal.throwIfAborted();
          const started = performance.now();
          opts.onEvent?.({ type: 'start', digest, metadata });
          try {
            const result = await opts.execute({ digest, op, metadata, inputs, signal: abort.signal });
            opts.onEvent?.({ type: 'done', digest, metadata, durationMs: performance.now() - started });
            return result;
          } catch (error) {
            const durationMs = performance.now() - started;
            if (abort.signal.aborted && !firstError) {
              opts.onEvent?.({ type: 'canceled', digest, metadata, durationMs });
              throw error;
            }
            if (!firstError) {
              firstError = error instanceof SolveError ? error : new SolveError(digest, metadata, error);
              opts.onEvent?.({ type: 'error', digest, metadata, durationMs, error });
              abort.abort(firstError);
            } else {
              opts.onEvent?.({ type: 'canceled', digest, metadata, durationMs });
            }
            throw error;
          }
        },
        { throwOnTimeout: true },
      ) as Promise<R>;
    })();
    results.set(digest, p);
    all.push(p);
    return p;
  };

  try {
    return await Promise.all(roots.map((r) => run(r)));
  } catch (error) {
    // Wait for everything already started to stop, so no container or mount outlives the solve.
    let settledCount = 0;
    while (settledCount < all.length) {
      const batch = all.slice(settledCount);
      settledCount = all.length;
      await Promise.allSettled(batch);
    }
    if (firstError) throw firstError;
    if (abort.signal.aborted) throw abort.signal.reason instanceof Error ? abort.signal.reason : new CanceledError();
    throw error;
  } finally {
    opts.signal?.removeEventListener('abort', onOuterAbort);
  }
}
