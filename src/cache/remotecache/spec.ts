// `--cache-to` / `--cache-from` specs, parsed as buildx does: CSV `type=local,dest=DIR,mode=max`, and a bare
// reference meaning `type=registry,ref=REF`. Unknown types and options are errors listing the valid ones.
import { splitCSV } from '../../client/outputs.js';
import type { Compression } from '../../archive/layer.js';
import { UserError } from '../../util/errors.js';

export type CacheMode = 'min' | 'max';

export interface CacheToSpec {
  type: 'local' | 'registry' | 'inline';
  /** type=local: the directory. */
  dest?: string;
  /** type=registry: the reference the cache manifest is pushed to. */
  ref?: string;
  mode: CacheMode;
  compression?: Compression;
  compressionLevel?: number;
  forceCompression?: boolean;
  /** Export failures are warnings, not a failed build. */
  ignoreError: boolean;
}

export interface CacheFromSpec {
  type: 'local' | 'registry';
  /** type=local: the directory. */
  src?: string;
  /** type=registry: a cache manifest, or an image carrying inline cache. */
  ref?: string;
}

export class InvalidCacheSpecError extends UserError {
  constructor(message: string) { super('INVALID_CACHE_SPEC', message); }
}

const EXPORT_COMMON = ['mode', 'compression', 'compression-level', 'force-compression', 'ignore-error', 'oci-mediatypes', 'image-manifest'];
const TO_OPTIONS: Record<CacheToSpec['type'], string[]> = {
  local: ['dest', ...EXPORT_COMMON],
  registry: ['ref', ...EXPORT_COMMON],
  inline: [],
};
const FROM_OPTIONS: Record<CacheFromSpec['type'], string[]> = { local: ['src'], registry: ['ref'] };
const BOOLEANS = ['force-compression', 'ignore-error', 'oci-mediatypes', 'image-manifest'];

function fields(spec: string, flag: string): Record<string, string> {
  // buildx: a value without `=` is a registry reference.
  if (!spec.includes('=')) return { type: 'registry', ref: spec };
  const attrs: Record<string, string> = {};
  for (const field of splitCSV(spec, flag)) {
    const eq = field.indexOf('=');
    if (eq < 0) throw new InvalidCacheSpecError(`invalid ${flag} "${spec}": field "${field}" must be key=value`);
    attrs[field.slice(0, eq).trim().toLowerCase()] = field.slice(eq + 1);
  }
  return attrs;
}

function check(spec: string, flag: string, type: string, valid: string[], attrs: Record<string, string>): void {
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'type') continue;
    if (!valid.includes(k)) {
      throw new InvalidCacheSpecError(`invalid ${flag} "${spec}": unknown option "${k}" for type=${type}${valid.length ? ` (valid: ${valid.join(', ')})` : ' (it takes none)'}`);
    }
    if (BOOLEANS.includes(k) && !['true', 'false', ''].includes(v.toLowerCase())) {
      throw new InvalidCacheSpecError(`invalid ${flag} "${spec}": ${k} must be true or false, not "${v}"`);
    }
  }
}

const bool = (v: string | undefined) => v !== undefined && (v === '' || v.toLowerCase() === 'true');

export function parseCacheTo(spec: string): CacheToSpec {
  const flag = '--cache-to';
  const a = fields(spec, flag);
  const type = a.type as CacheToSpec['type'];
  if (!a.type) throw new InvalidCacheSpecError(`invalid ${flag} "${spec}": type is required (valid: local, registry, inline)`);
  if (!(type in TO_OPTIONS)) throw new InvalidCacheSpecError(`invalid ${flag} "${spec}": unknown cache type "${a.type}" (valid: local, registry, inline)`);
  check(spec, flag, type, TO_OPTIONS[type], a);
  const mode = (a.mode ?? 'min') as CacheMode;
  if (mode !== 'min' && mode !== 'max') throw new InvalidCacheSpecError(`invalid ${flag} "${spec}": mode must be min or max, not "${a.mode}"`);
  // Always an OCI image manifest with the layers as its layers; the buildx switches for that can only be on.
  for (const k of ['oci-mediatypes', 'image-manifest']) {
    if (a[k] !== undefined && !bool(a[k])) throw new InvalidCacheSpecError(`invalid ${flag} "${spec}": ${k}=false is not supported (the cache is always an OCI image manifest)`);
  }
  const compression = a.compression as Compression | undefined;
  if (compression !== undefined && !['gzip', 'zstd', 'uncompressed'].includes(compression)) {
    throw new InvalidCacheSpecError(`invalid ${flag} "${spec}": unknown compression "${compression}" (valid: gzip, zstd, uncompressed)`);
  }
  let compressionLevel: number | undefined;
  if (a['compression-level'] !== undefined) {
    if (!/^\d+$/.test(a['compression-level'])) throw new InvalidCacheSpecError(`invalid ${flag} "${spec}": compression-level must be a number`);
    compressionLevel = Number(a['compression-level']);
    const max = (compression ?? 'gzip') === 'gzip' ? 9 : compression === 'zstd' ? 22 : 0;
    if (compressionLevel > max) throw new InvalidCacheSpecError(`invalid ${flag} "${spec}": compression-level=${compressionLevel} is out of range for compression=${compression ?? 'gzip'} (0-${max})`);
  }
  if (type === 'local' && !a.dest) throw new InvalidCacheSpecError(`invalid ${flag} "${spec}": dest is required for type=local`);
  if (type === 'registry' && !a.ref) throw new InvalidCacheSpecError(`invalid ${flag} "${spec}": ref is required for type=registry`);
  return {
    type, mode, ignoreError: bool(a['ignore-error']),
    ...(a.dest ? { dest: a.dest } : {}), ...(a.ref ? { ref: a.ref } : {}),
    ...(compression ? { compression } : {}), ...(compressionLevel !== undefined ? { compressionLevel } : {}),
    ...(bool(a['force-compression']) ? { forceCompression: true } : {}),
  };
}

export function parseCacheFrom(spec: string): CacheFromSpec {
  const flag = '--cache-from';
  const a = fields(spec, flag);
  const type = a.type as CacheFromSpec['type'];
  if (!a.type) throw new InvalidCacheSpecError(`invalid ${flag} "${spec}": type is required (valid: local, registry)`);
  if (a.type === 'inline') throw new InvalidCacheSpecError(`invalid ${flag} "${spec}": inline cache is read from the image: use type=registry,ref=IMAGE`);
  if (!(type in FROM_OPTIONS)) throw new InvalidCacheSpecError(`invalid ${flag} "${spec}": unknown cache type "${a.type}" (valid: local, registry)`);
  check(spec, flag, type, FROM_OPTIONS[type], a);
  if (type === 'local' && !a.src) throw new InvalidCacheSpecError(`invalid ${flag} "${spec}": src is required for type=local`);
  if (type === 'registry' && !a.ref) throw new InvalidCacheSpecError(`invalid ${flag} "${spec}": ref is required for type=registry`);
  return type === 'local' ? { type, src: a.src } : { type, ref: a.ref };
}
