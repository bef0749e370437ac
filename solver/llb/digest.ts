// Canonical serialization and content digests of ops.
import { createHash } from 'node:crypto';
import type { Digest, Op } from './ops.js';

/** JSON with object keys sorted at every level and no whitespace: equal values give equal bytes. */
export function canonicalJSON(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    if (value === undefined) return 'null';
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJSON).join(',')}]`;
  const entries = Object.keys(value as object)
    .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonicalJSON((value as Record<string, unknown>)[k])}`);
  return `{${entries.join(',')}}`;
}

export function sha256(data: string | Uint8Array): Digest {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** The op's identity: what to do, including its inputs' digests (which name what they do). */
export function opDigest(op: Op): Digest {
  return sha256(canonicalJSON(op));
}
