// The progress interface a build reports to, shaped after BuildKit's SolveStatus (client/graph.go): vertices
// (steps) that start and complete, statuses (sub-steps of a vertex with optional byte counts), logs and
// warnings. Embedders implement `ProgressWriter`; the build completes it with `completeWriter` so that a
// writer lacking an optional method, or one that throws, never changes what the build does or reports.

/** Wall-clock milliseconds since the epoch; writers take one so that tests can fix time. */
export type Clock = () => number;

export interface Vertex {
  id: string;
  name: string;
  /** Ids of the vertices whose results this one takes (BuildKit's `inputs`). */
  inputs?: string[];
  /** When it started (ms since the epoch); default: when the writer hears of it. */
  started?: number;
  /** The op's cache key, when the solver computed one. */
  cacheKey?: string;
  /** Why a step that hit the cache in the previous build of this Dockerfile misses now. */
  cacheMiss?: string;
  /** Why a step whose inputs re-ran was reused all the same (early cutoff): `input unchanged after [build 3/3] re-ran`. */
  cacheReused?: string;
}

export interface DoneOptions {
  /** The result came from the cache: the step did not run. */
  cached?: boolean;
  /** When it completed (ms since the epoch); default: when the writer hears of it. */
  completed?: number;
}

/**
 * A sub-step of a vertex (BuildKit's VertexStatus): `exporting layers`, `naming to ...`, `pushing layers`
 * with bytes. Sent again whenever it changes; `completed` set when it is over. `id` is what is shown.
 */
export interface VertexStatus {
  vertex: string;
  id: string;
  name?: string;
  /** Bytes (or items) done so far, and in all when known. */
  current?: number;
  total?: number;
  started?: number;
  completed?: number;
  /** When this update was made; default: when the writer hears of it. */
  timestamp?: number;
}

/** A build warning attached to a vertex (BuildKit's VertexWarning): lint rules, ignored options. */
export interface ProgressWarning {
  vertex: string;
  /** BuildKit's level: 1 for build check (lint) warnings. */
  level?: number;
  /** One line: `RuleName: message (line N)`. */
  short: string;
  detail?: string[];
  url?: string;
  /** The Dockerfile the range points into. */
  sourceInfo?: { filename: string; data?: string; language?: string };
  range?: { start: { line: number; character?: number }; end: { line: number; character?: number } }[];
}

/**
 * What a build reports progress to. `start` and `done` are required; every other method is optional and
 * the build works (and fails with its real error) without it.
 */
export interface ProgressWriter {
  start(v: Vertex): void;
  done(id: string, opts?: DoneOptions): void;
  /** Output of a step (RUN's stdout and stderr), in chunks as they come. */
  log?(id: string, stream: 'stdout' | 'stderr', chunk: Buffer, timestamp?: number): void;
  /** The step failed with this message (the build's error says the rest). */
  error?(id: string, message: string, completed?: number): void;
  /** The step was stopped because another failed or the build was canceled. */
  canceled?(id: string, completed?: number): void;
  status?(s: VertexStatus): void;
  warning?(w: ProgressWarning): void;
  /** The last lines a vertex printed. The build does not ask a writer (it keeps each step's last lines itself). */
  tail?(id: string, lines: number): string[];
}

/** A writer with every method: what the build's internals call. */
export type FullProgressWriter = Required<ProgressWriter>;

const TAIL_KEEP = 20;
const COMPLETE = Symbol('completeWriter');

/** Keeps the last lines of each vertex's output, split at newlines (a partial last line included). */
export class LogTails {
  private readonly lines = new Map<string, { done: string[]; partial: string }>();

  add(id: string, chunk: Buffer | string): void {
    const t = this.lines.get(id) ?? { done: [], partial: '' };
    const parts = (t.partial + chunk.toString()).split('\n');
    t.partial = parts.pop() ?? '';
    t.done.push(...parts);
    if (t.done.length > TAIL_KEEP) t.done.splice(0, t.done.length - TAIL_KEEP);
    this.lines.set(id, t);
  }

  tail(id: string, n: number): string[] {
    const t = this.lines.get(id);
    if (!t) return [];
    return (t.partial ? [...t.done, t.partial] : t.done).slice(-n);
  }
}

/**
 * The writer the build uses: calls the methods `w` has and skips those it lacks; a method that throws is
 * ignored (progress is a display: it must not change the build's outcome or replace its error); `tail`
 * answers from the output kept here.
 */
export function completeWriter(w: ProgressWriter): FullProgressWriter {
  if ((w as { [COMPLETE]?: true })[COMPLETE]) return w as FullProgressWriter;
  const tails = new LogTails();
  const call = <A extends unknown[]>(fn: ((...a: A) => void) | undefined, ...args: A): void => {
    if (!fn) return;
    try {
      fn.apply(w, args);
    } catch {
      // See above: a display failure is not a build failure.
    }
  };
  const full: FullProgressWriter & { [COMPLETE]: true } = {
    [COMPLETE]: true,
    start: (v) => call(w.start, v),
    done: (id, o) => call(w.done, id, o),
    log: (id, stream, chunk, ts) => { tails.add(id, chunk); call(w.log, id, stream, chunk, ts); },
    error: (id, m, c) => call(w.error, id, m, c),
    canceled: (id, c) => call(w.canceled, id, c),
    status: (s) => call(w.status, s),
    warning: (x) => call(w.warning, x),
    // Every log passes here, so the lines kept here are the writer's own; its `tail` is not needed.
    tail: (id, n) => tails.tail(id, n),
  };
  return full;
}

/** A sub-step of `vertex` reported as it starts, as its count changes and as it ends. */
export function subStep(progress: FullProgressWriter, vertex: string, id: string, total?: number): { update(current: number): void; done(current?: number): void } {
  const started = Date.now();
  let last = 0;
  progress.status({ vertex, id, started, total, current: 0 });
  return {
    update: (current) => { last = current; progress.status({ vertex, id, started, total, current }); },
    done: (current = last) => progress.status({ vertex, id, started, total, current, completed: Date.now() }),
  };
}

/** A sub-step over as soon as it starts (writing a manifest): one update, as BuildKit sends it. */
export function instantStep(progress: FullProgressWriter, vertex: string, id: string, current = 0): void {
  const now = Date.now();
  progress.status({ vertex, id, started: now, completed: now, current });
}
