// Progress output in BuildKit's plain format: `#N <name>`, log lines `#N 0.123 text`, `#N DONE 0.3s`,
// `#N ERROR: msg`. One vertex per op or per client step (`[internal] load build definition`).
// tty mode prints the same stream for now (a redrawn view is future work); quiet prints nothing.
import type { Writable } from 'node:stream';

export type ProgressMode = 'auto' | 'plain' | 'tty' | 'quiet' | 'rawjson';

export interface Vertex {
  id: string;
  name: string;
  /** The op's cache key, when the solver computed one. */
  cacheKey?: string;
  /** Why a step that hit the cache in the previous build of this Dockerfile misses now. */
  cacheMiss?: string;
}

export interface ProgressWriter {
  start(v: Vertex): void;
  log(id: string, stream: 'stdout' | 'stderr', chunk: Buffer): void;
  done(id: string, opts?: { cached?: boolean }): void;
  error(id: string, message: string): void;
  canceled(id: string): void;
  /** The last lines a vertex printed (for the error summary of a failed RUN). */
  tail(id: string, lines: number): string[];
}

interface VertexState {
  n: number;
  name: string;
  started: number;
  partial: Record<'stdout' | 'stderr', string>;
  lines: string[];
}

const TAIL_KEEP = 20;

export class PlainProgress implements ProgressWriter {
  private next = 1;
  private readonly vertices = new Map<string, VertexState>();

  constructor(private readonly out: Writable | null, private readonly mode: ProgressMode = 'plain') {}

  private write(line: string): void {
    if (!this.out) return;
    if (this.mode === 'rawjson') return;
    this.out.write(line + '\n');
  }

  private json(obj: object): void {
    if (this.out && this.mode === 'rawjson') this.out.write(JSON.stringify(obj) + '\n');
  }

  start(v: Vertex): void {
    const state: VertexState = { n: this.next++, name: v.name, started: performance.now(), partial: { stdout: '', stderr: '' }, lines: [] };
    this.vertices.set(v.id, state);
    this.write('');
    this.write(`#${state.n} ${v.name}`);
    if (v.cacheMiss) this.write(`#${state.n} cache miss: ${v.cacheMiss}`);
    this.json({
      event: 'started', vertex: v.id, name: v.name, started: new Date().toISOString(),
      ...(v.cacheKey ? { cacheKey: v.cacheKey } : {}), ...(v.cacheMiss ? { cacheMiss: v.cacheMiss } : {}),
    });
  }

  log(id: string, stream: 'stdout' | 'stderr', chunk: Buffer): void {
    const v = this.vertices.get(id);
    if (!v) return;
    const text = v.partial[stream] + chunk.toString('utf8');
    const parts = text.split('\n');
    v.partial[stream] = parts.pop() ?? '';
    for (const line of parts) this.emitLine(id, v, stream, line);
  }

  private emitLine(id: string, v: VertexState, stream: 'stdout' | 'stderr', line: string): void {
    v.lines.push(line);
    if (v.lines.length > TAIL_KEEP) v.lines.shift();
    const t = ((performance.now() - v.started) / 1000).toFixed(3);
    this.write(`#${v.n} ${t} ${line}`);
    this.json({ event: 'log', vertex: id, stream, data: line });
  }

  private flush(id: string, v: VertexState): void {
    for (const stream of ['stdout', 'stderr'] as const) {
      if (v.partial[stream]) this.emitLine(id, v, stream, v.partial[stream]);
      v.partial[stream] = '';
    }
  }

  done(id: string, opts?: { cached?: boolean }): void {
    const v = this.vertices.get(id);
    if (!v) return;
    this.flush(id, v);
    if (opts?.cached) this.write(`#${v.n} CACHED`);
    else this.write(`#${v.n} DONE ${((performance.now() - v.started) / 1000).toFixed(1)}s`);
    this.json({ event: opts?.cached ? 'cached' : 'completed', vertex: id, completed: new Date().toISOString(), cached: !!opts?.cached });
  }

  error(id: string, message: string): void {
    const v = this.vertices.get(id);
    if (!v) return;
    this.flush(id, v);
    this.write(`#${v.n} ERROR: ${message}`);
    this.json({ event: 'error', vertex: id, error: message });
  }

  canceled(id: string): void {
    const v = this.vertices.get(id);
    if (!v) return;
    this.flush(id, v);
    this.write(`#${v.n} CANCELED`);
    this.json({ event: 'canceled', vertex: id, canceled: true });
  }

  tail(id: string, lines: number): string[] {
    return this.vertices.get(id)?.lines.slice(-lines) ?? [];
  }
}

/** A writer for callers that want no output but still need error tails. */
export function quietProgress(): ProgressWriter {
  return new PlainProgress(null);
}
