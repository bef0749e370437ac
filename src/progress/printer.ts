// Progress output in BuildKit's plain format (progressui's printer): a vertex's lines follow its header
// `#N <name>`, a blank line between vertices (none before the first); log lines `#N 0.123 text`, sub-steps
// `#N exporting layers 0.1s done`, warnings `#N WARN: ...`, and the end `#N DONE 0.3s`, `#N CACHED`,
// `#N ERROR: msg`, `#N CANCELED`. Switching away from a vertex still running prints `#N ...`.
// Also the reason a step misses the cache, `#N cache miss: ...`, which BuildKit does not have.
import type { Writable } from 'node:stream';
import type { ProgressWarning, Clock, DoneOptions, ProgressWriter, Vertex, VertexStatus } from './writer.js';
import { LogTails } from './writer.js';

export type { Vertex, VertexStatus, ProgressWarning, DoneOptions, ProgressWriter, FullProgressWriter, Clock } from './writer.js';
export { completeWriter } from './writer.js';

export type ProgressMode = 'auto' | 'plain' | 'tty' | 'quiet' | 'rawjson';

interface VertexState {
  n: number;
  started: number;
  partial: Record<'stdout' | 'stderr', string>;
  statuses: Map<string, { current: number; timestamp: number }>;
}

/** Below this progress (of the total) and this time, an unfinished status update is not printed again. */
const MIN_PROGRESS_DELTA = 0.05;
const MIN_TIME_DELTA_MS = 5000;

export class PlainProgress implements ProgressWriter {
  private next = 1;
  private readonly vertices = new Map<string, VertexState>();
  private readonly tails = new LogTails();
  private readonly now: Clock;
  /** The vertex whose lines are being printed: another's lines need a header first. */
  private current: string | null = null;
  private first = true;

  constructor(private readonly out: Writable | null, opts: { now?: Clock } = {}) {
    this.now = opts.now ?? Date.now;
  }

  private write(line: string): void {
    this.out?.write(line + '\n');
  }

  /** Makes `id` the current vertex, printing its header (and closing the previous one with `#N ...`). */
  private focus(id: string, v: VertexState, name?: string): void {
    if (this.current === id) return;
    if (this.current !== null) {
      const old = this.vertices.get(this.current);
      if (old) this.write(`#${old.n} ...`);
    }
    if (!this.first) this.write('');
    this.first = false;
    this.write(`#${v.n} ${name ?? this.names.get(id) ?? id}`);
    this.current = id;
  }

  private readonly names = new Map<string, string>();

  start(v: Vertex): void {
    const state: VertexState = { n: this.next++, started: v.started ?? this.now(), partial: { stdout: '', stderr: '' }, statuses: new Map() };
    this.vertices.set(v.id, state);
    this.names.set(v.id, v.name);
    this.focus(v.id, state, v.name);
    if (v.cacheMiss) this.write(`#${state.n} cache miss: ${v.cacheMiss}`);
    if (v.cacheReused) this.write(`#${state.n} reused: ${v.cacheReused}`);
  }

  log(id: string, stream: 'stdout' | 'stderr', chunk: Buffer, timestamp?: number): void {
    const v = this.vertices.get(id);
    if (!v) return;
    this.tails.add(id, chunk);
    const parts = (v.partial[stream] + chunk.toString('utf8')).split('\n');
    v.partial[stream] = parts.pop() ?? '';
    if (parts.length === 0) return;
    this.focus(id, v);
    const t = (((timestamp ?? this.now()) - v.started) / 1000).toFixed(3);
    for (const line of parts) this.write(`#${v.n} ${t} ${line}`);
  }

  status(s: VertexStatus): void {
    const v = this.vertices.get(s.vertex);
    if (!v) return;
    const timestamp = s.timestamp ?? this.now();
    const current = s.current ?? 0;
    const last = v.statuses.get(s.id);
    if (last && s.completed === undefined) {
      const progressed = s.total ? (current - last.current) / s.total : 0;
      if (progressed < MIN_PROGRESS_DELTA && timestamp - last.timestamp < MIN_TIME_DELTA_MS) return;
    }
    v.statuses.set(s.id, { current, timestamp });
    this.focus(s.vertex, v);
    this.write(`#${v.n} ${statusLine(s, timestamp)}`);
  }

  warning(w: ProgressWarning): void {
    const v = this.vertices.get(w.vertex);
    if (!v) return;
    this.focus(w.vertex, v);
    this.write(`#${v.n} WARN: ${w.short}`);
  }

  private finish(id: string, line: (v: VertexState) => string): void {
    const v = this.vertices.get(id);
    if (!v) return;
    const rest = (['stdout', 'stderr'] as const).filter((s) => v.partial[s]);
    this.focus(id, v);
    for (const s of rest) {
      this.write(`#${v.n} ${((this.now() - v.started) / 1000).toFixed(3)} ${v.partial[s]}`);
      v.partial[s] = '';
    }
    this.write(line(v));
    this.current = null;
  }

  done(id: string, opts?: DoneOptions): void {
    this.finish(id, (v) => (opts?.cached ? `#${v.n} CACHED` : `#${v.n} DONE ${seconds((opts?.completed ?? this.now()) - v.started)}`));
  }

  error(id: string, message: string): void {
    this.finish(id, (v) => `#${v.n} ERROR: ${message}`);
  }

  canceled(id: string): void {
    this.finish(id, (v) => `#${v.n} CANCELED`);
  }

  tail(id: string, lines: number): string[] {
    return this.tails.tail(id, lines);
  }
}

/** A writer for callers that want no output. */
export function quietProgress(): ProgressWriter {
  return new PlainProgress(null);
}

function seconds(ms: number): string {
  return `${(Math.max(0, ms) / 1000).toFixed(1)}s`;
}

/** A status as BuildKit prints it: its id, bytes (`1.20MB / 3.40MB`), time when over 0.01 s, `done`. */
export function statusLine(s: VertexStatus, now: number): string {
  let bytes = '';
  if (s.total) bytes = ` ${formatBytes(s.current ?? 0)} / ${formatBytes(s.total)}`;
  else if (s.current) bytes = ` ${formatBytes(s.current)}`;
  let tm = '';
  if (s.started !== undefined) {
    const dt = ((s.completed ?? now) - s.started) / 1000;
    if (dt > 0.01) tm = ` ${dt.toFixed(1)}s`;
  }
  return `${s.id}${bytes}${tm}${s.completed !== undefined ? ' done' : ''}`;
}

/** Decimal units with two decimals as BuildKit's progress (go-units): `30B`, `1.23kB`, `4.56MB`. */
export function formatBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return i === 0 ? `${v}B` : `${v.toFixed(2)}${units[i]}`;
}
