// Progress as data: typed events a ProgressWriter call becomes, so that progress can cross a process or
// network boundary (`builder serve`) or be consumed as an async iterable by embedders, and be replayed
// into any ProgressWriter on the other side. Events carry what `--progress rawjson` carries: times
// (ISO 8601), inputs, the cache key and the reason of a miss, whether a step was cached, sub-steps and
// warnings.
import { completeWriter, LogTails, type ProgressWarning, type Clock, type DoneOptions, type FullProgressWriter, type ProgressWriter, type Vertex, type VertexStatus } from './writer.js';

type Time = string;

export type ProgressEvent =
  | { type: 'start'; id: string; name: string; started: Time; inputs?: string[]; cacheKey?: string; cacheMiss?: string; cacheReused?: string }
  | { type: 'log'; id: string; stream: 'stdout' | 'stderr'; data: string; timestamp: Time }
  | { type: 'done'; id: string; completed: Time; cached?: boolean }
  | { type: 'error'; id: string; message: string; completed: Time }
  | { type: 'canceled'; id: string; completed: Time }
  | { type: 'status'; vertex: string; id: string; name?: string; current?: number; total?: number; started?: Time; completed?: Time; timestamp: Time }
  | { type: 'warning'; vertex: string; level?: number; short: string; detail?: string[]; url?: string; sourceInfo?: ProgressWarning['sourceInfo']; range?: ProgressWarning['range'] };

/** A ProgressWriter that hands every call to `emit` as an event (log data as UTF-8 text). */
export class EventProgress implements FullProgressWriter {
  private readonly tails = new LogTails();
  private readonly now: Clock;

  constructor(private readonly emit: (e: ProgressEvent) => void, opts: { now?: Clock } = {}) {
    this.now = opts.now ?? Date.now;
  }

  private time(ms?: number): Time {
    return new Date(ms ?? this.now()).toISOString();
  }

  start(v: Vertex): void {
    this.emit({
      type: 'start', id: v.id, name: v.name, started: this.time(v.started),
      ...(v.inputs?.length ? { inputs: v.inputs } : {}),
      ...(v.cacheKey ? { cacheKey: v.cacheKey } : {}),
      ...(v.cacheMiss ? { cacheMiss: v.cacheMiss } : {}),
      ...(v.cacheReused ? { cacheReused: v.cacheReused } : {}),
    });
  }

  log(id: string, stream: 'stdout' | 'stderr', chunk: Buffer, timestamp?: number): void {
    this.tails.add(id, chunk);
    this.emit({ type: 'log', id, stream, data: chunk.toString('utf8'), timestamp: this.time(timestamp) });
  }

  done(id: string, opts?: DoneOptions): void {
    this.emit({ type: 'done', id, completed: this.time(opts?.completed), ...(opts?.cached ? { cached: true } : {}) });
  }

  error(id: string, message: string, completed?: number): void { this.emit({ type: 'error', id, message, completed: this.time(completed) }); }
  canceled(id: string, completed?: number): void { this.emit({ type: 'canceled', id, completed: this.time(completed) }); }

  status(s: VertexStatus): void {
    this.emit({
      type: 'status', vertex: s.vertex, id: s.id,
      ...(s.name ? { name: s.name } : {}),
      ...(s.current !== undefined ? { current: s.current } : {}),
      ...(s.total !== undefined ? { total: s.total } : {}),
      ...(s.started !== undefined ? { started: this.time(s.started) } : {}),
      ...(s.completed !== undefined ? { completed: this.time(s.completed) } : {}),
      timestamp: this.time(s.timestamp),
    });
  }

  warning(w: ProgressWarning): void { this.emit({ type: 'warning', ...w }); }
  tail(id: string, lines: number): string[] { return this.tails.tail(id, lines); }
}

const ms = (t: Time | undefined): number | undefined => (t === undefined ? undefined : Date.parse(t));

/** Replays an event into a writer (e.g. the terminal printer of a remote build's client), times kept. */
export function replay(e: ProgressEvent, to: ProgressWriter): void {
  switch (e.type) {
    case 'start': return to.start({ id: e.id, name: e.name, started: ms(e.started), inputs: e.inputs, cacheKey: e.cacheKey, cacheMiss: e.cacheMiss, cacheReused: e.cacheReused });
    case 'log': return to.log?.(e.id, e.stream, Buffer.from(e.data, 'utf8'), ms(e.timestamp));
    case 'done': return to.done(e.id, { ...(e.cached ? { cached: true } : {}), completed: ms(e.completed) });
    case 'error': return to.error?.(e.id, e.message, ms(e.completed));
    case 'canceled': return to.canceled?.(e.id, ms(e.completed));
    case 'status': {
      const { type: _t, started, completed, timestamp, ...rest } = e;
      return to.status?.({ ...rest, started: ms(started), completed: ms(completed), timestamp: ms(timestamp) });
    }
    case 'warning': {
      const { type: _t, ...w } = e;
      return to.warning?.(w);
    }
  }
}

/** Several writers as one: every call goes to each (each as `completeWriter` makes it). */
export function teeProgress(...writers: ProgressWriter[]): FullProgressWriter {
  const all = writers.map(completeWriter);
  const first = all[0] ? all[0] : completeWriter({ start: () => undefined, done: () => undefined });
  return {
    start: (v) => all.forEach((w) => w.start(v)),
    log: (id, s, c, t) => all.forEach((w) => w.log(id, s, c, t)),
    done: (id, o) => all.forEach((w) => w.done(id, o)),
    error: (id, m, c) => all.forEach((w) => w.error(id, m, c)),
    canceled: (id, c) => all.forEach((w) => w.canceled(id, c)),
    status: (s) => all.forEach((w) => w.status(s)),
    warning: (x) => all.forEach((w) => w.warning(x)),
    tail: (id, n) => first.tail(id, n),
  };
}

/**
 * Runs `fn` with a progress writer and yields its events as they happen; the iterator ends when `fn`
 * settles, and throws its error. The result is available from `result` once iteration is done.
 */
export function progressStream<T>(fn: (progress: ProgressWriter) => Promise<T>): AsyncIterable<ProgressEvent> & { result: Promise<T> } {
  const queue: ProgressEvent[] = [];
  let wake: (() => void) | undefined;
  let finished = false;
  const result = fn(new EventProgress((e) => { queue.push(e); wake?.(); })).finally(() => { finished = true; wake?.(); });
  result.catch(() => undefined);
  return {
    result,
    async *[Symbol.asyncIterator]() {
      for (;;) {
        while (queue.length > 0) yield queue.shift()!;
        if (finished) break;
        await new Promise<void>((r) => (wake = r));
        wake = undefined;
      }
      await result;
    },
  };
}
