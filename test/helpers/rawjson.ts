// Reads `--progress rawjson` output (BuildKit SolveStatus lines) for tests: every line must be one JSON
// object; vertices are folded into their last state, in the order they first appeared.
import type { RawLog, RawStatus, RawVertex, RawWarning, SolveStatus } from '../../src/progress/rawjson.js';

export interface Folded {
  /** Each vertex's last update, in order of first appearance. */
  vertices: RawVertex[];
  /** Every update of every vertex, in order: how a step went (started, then completed). */
  updates: RawVertex[];
  statuses: RawStatus[];
  logs: RawLog[];
  warnings: RawWarning[];
}

/** Parses every non-empty line; throws on a line that is not a SolveStatus object. */
export function parseRawJson(text: string): SolveStatus[] {
  return text.split('\n').filter((l) => l.length > 0).map((l, i) => {
    let v: unknown;
    try {
      v = JSON.parse(l);
    } catch {
      throw new Error(`line ${i + 1} is not JSON: ${l}`);
    }
    if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error(`line ${i + 1} is not an object: ${l}`);
    return v as SolveStatus;
  });
}

export function foldRawJson(text: string): Folded {
  const byDigest = new Map<string, RawVertex>();
  const out: Folded = { vertices: [], updates: [], statuses: [], logs: [], warnings: [] };
  for (const ss of parseRawJson(text)) {
    for (const v of ss.vertexes ?? []) {
      byDigest.set(v.digest, v);
      out.updates.push(v);
    }
    out.statuses.push(...(ss.statuses ?? []));
    out.logs.push(...(ss.logs ?? []));
    out.warnings.push(...(ss.warnings ?? []));
  }
  out.vertices = [...byDigest.values()];
  return out;
}

/** Steps that ran (completed, not cached), those reused, and the miss reasons, by vertex name. */
export function stepOutcomes(text: string): { ran: string[]; cached: string[]; misses: Record<string, string> } {
  const { vertices } = foldRawJson(text);
  const misses: Record<string, string> = {};
  for (const v of vertices) if (v.cacheMiss && v.name) misses[v.name] = v.cacheMiss;
  return {
    ran: vertices.filter((v) => v.completed && !v.cached && !v.error).map((v) => v.name!),
    cached: vertices.filter((v) => v.cached).map((v) => v.name!),
    misses,
  };
}
