// `--progress rawjson`: each change as one line of BuildKit's SolveStatus JSON (client/graph.go, what
// buildx's rawjson display encodes): `{"vertexes":[...]}`, `{"statuses":[...]}`, `{"logs":[...]}`,
// `{"warnings":[...]}`, field names and omitted empty fields as Go's encoding of those structs. A vertex
// is sent whole each time it changes (started, then completed with `cached` or `error`), as BuildKit does.
// Vertex ids that are not digests (internal steps) become the sha256 of the id. Two fields BuildKit does
// not have ride on a missed step's vertex: `cacheKey`, `cacheMiss` and `cacheReused` (decoders ignore unknown fields).
import { createHash } from 'node:crypto';
import type { Writable } from 'node:stream';
import { LogTails, type ProgressWarning, type Clock, type DoneOptions, type ProgressWriter, type Vertex, type VertexStatus } from './writer.js';

export interface RawVertex {
  digest: string;
  inputs?: string[];
  name?: string;
  started?: string;
  completed?: string;
  cached?: boolean;
  error?: string;
  cacheKey?: string;
  cacheMiss?: string;
  cacheReused?: string;
}

export interface RawStatus {
  id: string;
  vertex?: string;
  name?: string;
  total?: number;
  current: number;
  timestamp: string;
  started?: string;
  completed?: string;
}

export interface RawLog {
  vertex?: string;
  /** 1 stdout, 2 stderr. */
  stream?: number;
  /** Base64, as Go encodes []byte. */
  data: string;
  timestamp: string;
}

export interface RawWarning {
  vertex?: string;
  level?: number;
  short?: string;
  detail?: string[];
  url?: string;
  sourceInfo?: { filename?: string; data?: string; language?: string };
  range?: { start?: { line?: number; character?: number }; end?: { line?: number; character?: number } }[];
}

export interface SolveStatus {
  vertexes?: RawVertex[];
  statuses?: RawStatus[];
  logs?: RawLog[];
  warnings?: RawWarning[];
}

/** The error text BuildKit gives a vertex stopped by cancellation (progress displays show CANCELED). */
export const CANCELED_ERROR = 'context canceled';

export class RawJsonProgress implements ProgressWriter {
  private readonly vertices = new Map<string, RawVertex>();
  private readonly tails = new LogTails();
  private readonly now: Clock;

  constructor(private readonly out: Writable, opts: { now?: Clock } = {}) {
    this.now = opts.now ?? Date.now;
  }

  private emit(ss: SolveStatus): void {
    this.out.write(JSON.stringify(ss) + '\n');
  }

  private time(ms?: number): string {
    return new Date(ms ?? this.now()).toISOString();
  }

  start(v: Vertex): void {
    const raw: RawVertex = {
      digest: vertexDigest(v.id),
      ...(v.inputs?.length ? { inputs: v.inputs.map(vertexDigest) } : {}),
      name: v.name,
      started: this.time(v.started),
      ...(v.cacheKey ? { cacheKey: v.cacheKey } : {}),
      ...(v.cacheMiss ? { cacheMiss: v.cacheMiss } : {}),
      ...(v.cacheReused ? { cacheReused: v.cacheReused } : {}),
    };
    this.vertices.set(v.id, raw);
    this.emit({ vertexes: [raw] });
  }

  private complete(id: string, completed: number | undefined, extra: Partial<RawVertex>): void {
    const v = this.vertices.get(id);
    if (!v) return;
    const raw = goOrder({ ...v, completed: this.time(completed), ...extra });
    this.vertices.set(id, raw);
    this.emit({ vertexes: [raw] });
  }

  done(id: string, opts?: DoneOptions): void {
    this.complete(id, opts?.completed, opts?.cached ? { cached: true } : {});
  }

  error(id: string, message: string, completed?: number): void {
    this.complete(id, completed, { error: message });
  }

  canceled(id: string, completed?: number): void {
    this.complete(id, completed, { error: CANCELED_ERROR });
  }

  log(id: string, stream: 'stdout' | 'stderr', chunk: Buffer, timestamp?: number): void {
    if (!this.vertices.has(id)) return;
    this.tails.add(id, chunk);
    this.emit({ logs: [{ vertex: vertexDigest(id), stream: stream === 'stdout' ? 1 : 2, data: chunk.toString('base64'), timestamp: this.time(timestamp) }] });
  }

  status(s: VertexStatus): void {
    this.emit({
      statuses: [{
        id: s.id,
        vertex: vertexDigest(s.vertex),
        ...(s.name ? { name: s.name } : {}),
        ...(s.total ? { total: s.total } : {}),
        current: s.current ?? 0,
        timestamp: this.time(s.timestamp),
        ...(s.started !== undefined ? { started: this.time(s.started) } : {}),
        ...(s.completed !== undefined ? { completed: this.time(s.completed) } : {}),
      }],
    });
  }

  warning(w: ProgressWarning): void {
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    this.emit({
      warnings: [{
        vertex: vertexDigest(w.vertex),
        level: w.level ?? 1,
        short: b64(w.short),
        ...(w.detail?.length ? { detail: w.detail.map(b64) } : {}),
        ...(w.url ? { url: w.url } : {}),
        ...(w.sourceInfo ? {
          sourceInfo: {
            filename: w.sourceInfo.filename,
            ...(w.sourceInfo.data !== undefined ? { data: b64(w.sourceInfo.data) } : {}),
            ...(w.sourceInfo.language ? { language: w.sourceInfo.language } : {}),
          },
        } : {}),
        ...(w.range?.length ? { range: w.range } : {}),
      }],
    });
  }

  tail(id: string, lines: number): string[] {
    return this.tails.tail(id, lines);
  }
}

/** The fields in the order Go encodes client.Vertex, this builder's two after them. */
function goOrder(v: RawVertex): RawVertex {
  const { digest, inputs, name, started, completed, cached, error, cacheKey, cacheMiss, cacheReused } = v;
  return Object.fromEntries(Object.entries({ digest, inputs, name, started, completed, cached, error, cacheKey, cacheMiss, cacheReused })
    .filter(([, x]) => x !== undefined)) as unknown as RawVertex;
}

/** A vertex id as a digest: op digests stay, internal ids (`internal:dockerfile`) are hashed. */
export function vertexDigest(id: string): string {
  return /^sha256:[0-9a-f]{64}$/.test(id) ? id : `sha256:${createHash('sha256').update(id).digest('hex')}`;
}
