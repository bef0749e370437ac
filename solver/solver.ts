// The solver runs a Definition: each op once (memoized by digest), an op as soon as its inputs are done,
// up to `maxParallelism` at a time, only what the root needs. The first failure aborts everything still
// running (through the AbortSignal handed to each op) and is the error the solve reports.
// With a cache, each op's cache key (what went in, by content) is computed before anything runs, from its
// inputs' keys only; a hit skips the op and, since its inputs are not needed, everything below it. On a
// miss the inputs run, and the cache may give a second, content key (the op's definition with what its
// inputs hold): a hit there reuses the op's earlier result after all (early cutoff: an input re-ran and
// made what it made before).
import os from 'node:os';
import PQueue from 'p-queue';
import type { Definition } from './llb/definition.js';
import { opInputs, type Digest, type Op, type OpMetadata } from './llb/ops.js';

export interface OpContext<R> {
  digest: Digest;
  op: Op;
  metadata: OpMetadata;
  /** Input results; an input the executor said it does not need (`needsInput`) is undefined. */
  inputs: R[];
  inputOps: Op[];
  signal: AbortSignal;
  /**
   * The result of an earlier version of this op (the same step in the previous build), when the cache
   * knows one: an executor may build on it to do less work. The result must not depend on it.
   */
  previous?: R;
}

/** Executes one op given its inputs' results; supplied by the worker. */
export type OpExecutor<R> = (ctx: OpContext<R>) => Promise<R>;

/** What a cache-key function sees: the op and lazy access to its inputs' keys and ops. */
export interface KeyContext {
  digest: Digest;
  op: Op;
  metadata: OpMetadata;
  /** Input i's cache key; computed on first use (a key may not need every input's key). */
  inputKey(i: number): Promise<Digest>;
  inputOp(i: number): Op;
}

export type CacheLookup<R> = { hit: true; result: R } | { hit: false; reason?: string; previous?: R };

/** What a content-key function sees: the op once its inputs have results (see SolveCache.contentKey). */
export interface ContentKeyContext<R> {
  digest: Digest;
  op: Op;
  metadata: OpMetadata;
  /** Input results; an input the executor does not need (`needsInput`) is undefined. */
  inputs: (R | undefined)[];
  inputOps: Op[];
  /** Input i's cache key (the pre-run one). */
  inputKey(i: number): Promise<Digest>;
}

/** Cross-solve reuse of results by cache key; supplied by the client (persistent cache + worker). */
export interface SolveCache<R> {
  key(ctx: KeyContext): Promise<Digest>;
  load(key: Digest, ctx: { digest: Digest; op: Op; metadata: OpMetadata; ignoreCache: boolean }): Promise<CacheLookup<R>>;
  /** `contentKey`: the op's content key, when it has one; the result is recorded under it too. */
  save(key: Digest, result: R, ctx: { digest: Digest; op: Op; metadata: OpMetadata; contentKey?: Digest }): Promise<void>;
  /**
   * Early cutoff: a second key, computed once the inputs have results, from the op's definition and what
   * its inputs contain (not how they were made). When the pre-run key misses but this one hits, an input
   * re-ran and made what it made before: the op's earlier result is reused. Undefined: no content key.
   */
  contentKey?(ctx: ContentKeyContext<R>): Promise<Digest | undefined>;
  /** The result recorded under a content key, if any. */
  loadContent?(key: Digest, ctx: { digest: Digest; op: Op; metadata: OpMetadata }): Promise<R | undefined>;
  /** After the content key missed too: a sharper reason than the first key's (which files changed), if any. */
  explainContent?(ctx: { digest: Digest; op: Op; metadata: OpMetadata }): Promise<string | undefined>;
}

export type SolveEvent =
  | { type: 'start'; digest: Digest; metadata: OpMetadata; cacheKey?: Digest; cacheMiss?: string; reused?: string }
  | { type: 'cached'; digest: Digest; metadata: OpMetadata; cacheKey: Digest; reused?: string }
  | { type: 'done'; digest: Digest; metadata: OpMetadata; durationMs: number }
  | { type: 'error'; digest: Digest; metadata: OpMetadata; durationMs: number; error: unknown }
  | { type: 'canceled'; digest: Digest; metadata: OpMetadata; durationMs: number };

export interface SolveOptions<R> {
  execute: OpExecutor<R>;
  /** Most ops running at once (default: defaultParallelism()); when given, it bounds file ops too. */
  maxParallelism?: number;
  /**
   * Most file and merge ops running at once, apart from the others: they move files and wait on the disk
   * and the kernel, not the CPU, so many small ones (a fan-out of COPY stages) run better wider. Default:
   * maxParallelism when that is given, else fileParallelism(). The two limits are separate queues.
   */
  maxFileParallelism?: number;
  signal?: AbortSignal;
  onEvent?: (event: SolveEvent) => void;
  cache?: SolveCache<R>;
  /** False when the executor reads an input some other way (a COPY straight from the context directory). */
  needsInput?: (op: Op, index: number, inputOp: Op) => boolean;
  /**
   * With a cache: ops (of those the roots need) to start at once, before the ops above them have their
   * keys (a base image's pull, while the context is checksummed for the key of the COPY over it). Only
   * for ops that are needed whenever what is above them is not a cache hit: a hit above makes their
   * work wasted.
   */
  startEarly?: (op: Op) => boolean;
  /**
   * Results of several solves that run side by side (a bake's targets), by cache key: an op whose key
   * another solve of the group has already started is not run again; this solve takes that result and
   * reports nothing for it (the other solve does). Only with a cache (the key says the work is the same).
   */
  shared?: Map<Digest, Promise<R>>;
  /** The queue ops run through, shared by solves that run side by side (one `maxParallelism` for all). */
  queue?: PQueue;
  /** The same for file and merge ops (see maxFileParallelism). */
  fileQueue?: PQueue;
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

/** The default limit of file and merge ops at once (see SolveOptions.maxFileParallelism). */
export function fileParallelism(): number {
  return Math.max(8, 4 * defaultParallelism());
}

export async function solve<R>(def: Definition, opts: SolveOptions<R>): Promise<R> {
  return (await solveRoots(def, [def.root], opts))[0];
}

/**
 * Solves several results of one definition together (one per target platform, say): an op they share
 * runs once, and the first failure stops them all.
 */
export async function solveRoots<R>(def: Definition, roots: Digest[], opts: SolveOptions<R>): Promise<R[]> {
  const queue = opts.queue ?? new PQueue({ concurrency: opts.maxParallelism ?? defaultParallelism() });
  const fileLimit = opts.maxFileParallelism ?? opts.maxParallelism ?? fileParallelism();
  // One queue for all when the caller bounds everything with one number.
  const fileQueue = opts.fileQueue ?? (opts.maxFileParallelism === undefined && opts.maxParallelism !== undefined ? queue : new PQueue({ concurrency: fileLimit }));
  const queueFor = (op: Op) => (op.kind === 'file' || op.kind === 'merge' ? fileQueue : queue);
  const abort = new AbortController();
  const onOuterAbort = () => abort.abort(new CanceledError());
  if (opts.signal?.aborted) onOuterAbort();
  opts.signal?.addEventListener('abort', onOuterAbort, { once: true });

  const results = new Map<Digest, Promise<R>>();
  const keys = new Map<Digest, Promise<Digest>>();
  const reported = new Set<Digest>();
  const all: Promise<unknown>[] = [];
  let firstError: SolveError | undefined;
  const cache = opts.cache;
  const getOp = (digest: Digest): Op => {
    const op = def.ops[digest];
    if (!op) throw new Error(`solver: op ${digest} is not in the definition`);
    return op;
  };

  const keyOf = (digest: Digest): Promise<Digest> => {
    let k = keys.get(digest);
    if (k) return k;
    const op = getOp(digest);
    const inputs = opInputs(op);
    k = cache!.key({
      digest, op, metadata: def.metadata[digest] ?? {},
      // Through the microtask queue, not the stack: a chain of thousands of ops is as deep as it is long.
      inputKey: (i) => Promise.resolve().then(() => keyOf(inputs[i].digest)),
      inputOp: (i) => getOp(inputs[i].digest),
    });
    keys.set(digest, k);
    return k;
  };

  /**
   * Inputs of a cache hit are not needed; those that also hit are reported as cached (as BuildKit shows),
   * inputs first, so progress reads in build order.
   */
  const reportCachedInputs = async (op: Op): Promise<void> => {
    await Promise.all(opInputs(op).map(async (input) => {
      if (reported.has(input.digest) || results.has(input.digest)) return;
      reported.add(input.digest);
      const inputOp = getOp(input.digest);
      const metadata = def.metadata[input.digest] ?? {};
      const key = await keyOf(input.digest);
      const found = await cache!.load(key, { digest: input.digest, op: inputOp, metadata, ignoreCache: !!metadata.ignoreCache });
      if (!found.hit) return;
      await reportCachedInputs(inputOp);
      emitCached(input.digest, metadata, key);
    }));
  };

  const emitted = new Set<Digest>();
  const emitCached = (digest: Digest, metadata: OpMetadata, key: Digest, reused?: string) => {
    if (emitted.has(digest)) return;
    emitted.add(digest);
    opts.onEvent?.({ type: 'start', digest, metadata, cacheKey: key, ...(reused ? { reused } : {}) });
    opts.onEvent?.({ type: 'cached', digest, metadata, cacheKey: key, ...(reused ? { reused } : {}) });
  };

  /**
   * Per op that ran this solve, or was reused by content after something below it ran: the step that ran
   * (its description), for the reason of a reuse by content.
   */
  const ranBelow = new Map<Digest, string>();
  const ranInput = (op: Op): string | undefined => {
    for (const i of opInputs(op)) {
      const d = ranBelow.get(i.digest);
      if (d) return d;
    }
    return undefined;
  };

  /** Ops with a cache-ignoring op below them (`--no-cache-filter`): those must run, so they run first. */
  const forcedMemo = new Map<Digest, boolean>();
  const forced = (digest: Digest): boolean => {
    // Inputs before the ops that use them, on an explicit stack: no recursion as deep as the graph.
    const stack: Digest[] = [digest];
    while (stack.length > 0) {
      const d = stack[stack.length - 1];
      if (forcedMemo.has(d)) {
        stack.pop();
        continue;
      }
      const inputs = opInputs(getOp(d));
      const pending = inputs.filter((i) => !forcedMemo.has(i.digest));
      if (pending.length > 0) {
        for (const i of pending) stack.push(i.digest);
        continue;
      }
      stack.pop();
      forcedMemo.set(d, inputs.some((i) => {
        const ignores = !!def.metadata[i.digest]?.ignoreCache && getOp(i.digest).kind !== 'source';
        return ignores || forcedMemo.get(i.digest)!;
      }));
    }
    return forcedMemo.get(digest)!;
  };

  const runInputs = (op: Op): Promise<R[]> =>
    Promise.all(opInputs(op).map((i, idx) =>
      opts.needsInput && !opts.needsInput(op, idx, getOp(i.digest)) ? (undefined as R) : run(i.digest)));

  const run = (digest: Digest): Promise<R> => {
    let p = results.get(digest);
    if (p) return p;
    const op = getOp(digest);
    const metadata = def.metadata[digest] ?? {};
    p = (async () => {
      // Start in a microtask: an op starting its inputs then never nests their starts on the stack.
      await undefined;
      let key: Digest | undefined;
      let cacheMiss: string | undefined;
      let previous: R | undefined;
      let ran: Promise<R[]> | undefined;
      if (cache && forced(digest)) ran = runInputs(op);
      if (ran) await ran;
      if (cache) {
        // A key that cannot be computed (a COPY source that is missing, ...) means no caching: running the
        // op reports the real error with its location.
        key = await keyOf(digest).catch(() => undefined);
        abort.signal.throwIfAborted();
        if (key && opts.shared) {
          const mine = results.get(digest)!;
          const other = opts.shared.get(key);
          if (other && other !== mine) {
            reported.add(digest);
            return other;
          }
          opts.shared.set(key, mine);
        }
        const found: CacheLookup<R> = key
          ? await cache.load(key, { digest, op, metadata, ignoreCache: !!metadata.ignoreCache })
          : { hit: false };
        if (found.hit) {
          reported.add(digest);
          // Lookups only (no execution), so progress lists the cached steps in build order.
          await reportCachedInputs(op).catch(() => undefined);
          emitCached(digest, metadata, key!);
          return found.result;
        }
        cacheMiss = found.reason;
        previous = found.previous;
      }
      const inputs = await (ran ?? runInputs(op));
      let contentKey: Digest | undefined;
      if (cache?.contentKey && key && !metadata.ignoreCache && opInputs(op).length > 0) {
        // Early cutoff: the inputs re-ran (or came from elsewhere) but may hold what they held before.
        const inputOps = opInputs(op).map((i) => getOp(i.digest));
        contentKey = await cache.contentKey({
          digest, op, metadata, inputs, inputOps,
          inputKey: (i) => keyOf(opInputs(op)[i].digest),
        }).catch(() => undefined);
        abort.signal.throwIfAborted();
        const reused = contentKey && cache.loadContent ? await cache.loadContent(contentKey, { digest, op, metadata }).catch(() => undefined) : undefined;
        if (reused !== undefined) {
          reported.add(digest);
          const ranStep = ranInput(op);
          if (ranStep) ranBelow.set(digest, ranStep);
          const reason = ranStep ? `input unchanged after ${ranStep} re-ran` : 'input unchanged';
          // Recorded under the pre-run key too: the next build with these inputs hits at once.
          await cache.save(key, reused, { digest, op, metadata, contentKey });
          emitCached(digest, metadata, key, reason);
          return reused;
        }
        if (contentKey && cacheMiss !== undefined) cacheMiss = (await cache.explainContent?.({ digest, op, metadata }).catch(() => undefined)) ?? cacheMiss;
      }
      return queueFor(op).add(
        async () => {
          abort.signal.throwIfAborted();
          const started = performance.now();
          reported.add(digest);
          opts.onEvent?.({ type: 'start', digest, metadata, cacheKey: key, cacheMiss });
          try {
            const inputOps = opInputs(op).map((i) => getOp(i.digest));
            const result = await opts.execute({ digest, op, metadata, inputs, inputOps, signal: abort.signal, previous });
            if (cache && key) await cache.save(key, result, { digest, op, metadata, ...(contentKey ? { contentKey } : {}) });
            // A description's leading `[tag]` names the step well enough (`[build 3/3]`).
            ranBelow.set(digest, /^\[[^\]]*\]/.exec(metadata.description ?? '')?.[0] ?? metadata.description ?? digest);
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

  const startEarly = (): void => {
    if (!cache || !opts.startEarly) return;
    // Everything the roots reach through inputs they need, on an explicit stack (graphs can be deep).
    const seen = new Set<Digest>(roots);
    const stack = [...roots];
    while (stack.length > 0) {
      const digest = stack.pop()!;
      const op = getOp(digest);
      if (opts.startEarly(op)) run(digest).catch(() => undefined); // its failure is the solve's, reported there
      opInputs(op).forEach((input, idx) => {
        if (seen.has(input.digest) || (opts.needsInput && !opts.needsInput(op, idx, getOp(input.digest)))) return;
        seen.add(input.digest);
        stack.push(input.digest);
      });
    }
  };

  try {
    startEarly();
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
