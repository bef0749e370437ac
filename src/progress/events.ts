// Progress as data: typed events a ProgressWriter call becomes, so that progress can cross a process or
// network boundary (`builder serve`) or be consumed as an async iterable by embedders, and be replayed
// into any ProgressWriter on the other side.
import type { ProgressWriter, Vertex } from './printer.js';

export type ProgressEvent =
  | { type: 'start'; id: string; name: string }
  | { type: 'log'; id: string; stream: 'stdout' | 'stderr'; data: string }
  | { type: 'done'; id: string; cached?: boolean }
  | { type: 'error'; id: string; message: string }
  | { type: 'canceled'; id: string };

/** A ProgressWriter that hands every call to `emit` as an event (log data as UTF-8 text). */
export class EventProgress implements ProgressWriter {
  private readonly logs = new Map<string, string[]>();

  constructor(private readonly emit: (e: ProgressEvent) => void) {}

  start(v: Vertex): void { this.emit({ type: 'start', id: v.id, name: v.name }); }

  log(id: string, stream: 'stdout' | 'stderr', chunk: Buffer): void {
    const text = chunk.toString('utf8');
    const lines = this.logs.get(id) ?? [];
    lines.push(...text.split('\n').filter(Boolean));
    this.logs.set(id, lines.slice(-20));
    this.emit({ type: 'log', id, stream, data: text });
  }

  done(id: string, opts?: { cached?: boolean }): void { this.emit({ type: 'done', id, ...(opts?.cached ? { cached: true } : {}) }); }
  error(id: string, message: string): void { this.emit({ type: 'error', id, message }); }
  canceled(id: string): void { this.emit({ type: 'canceled', id }); }
  tail(id: string, lines: number): string[] { return (this.logs.get(id) ?? []).slice(-lines); }
}

/** Replays an event into a writer (e.g. the terminal printer of a remote build's client). */
export function replay(e: ProgressEvent, to: ProgressWriter): void {
  switch (e.type) {
    case 'start': return to.start({ id: e.id, name: e.name });
    case 'log': return to.log(e.id, e.stream, Buffer.from(e.data, 'utf8'));
    case 'done': return to.done(e.id, e.cached ? { cached: true } : undefined);
    case 'error': return to.error(e.id, e.message);
    case 'canceled': return to.canceled(e.id);
  }
}

/** Several writers as one: every call goes to each. */
export function teeProgress(...writers: ProgressWriter[]): ProgressWriter {
  return {
    start: (v) => writers.forEach((w) => w.start(v)),
    log: (id, s, c) => writers.forEach((w) => w.log(id, s, c)),
    done: (id, o) => writers.forEach((w) => w.done(id, o)),
    error: (id, m) => writers.forEach((w) => w.error(id, m)),
    canceled: (id) => writers.forEach((w) => w.canceled(id)),
    tail: (id, n) => writers[0]?.tail(id, n) ?? [],
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
