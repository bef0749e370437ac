// `--output` specs, parsed as buildx does: CSV `type=oci,dest=out.tar`, or a bare path meaning type=local.
import { UserError } from '../util/errors.js';

export type OutputType = 'oci' | 'docker' | 'local' | 'image' | 'registry' | 'tar' | 'cacheonly';

export interface OutputSpec {
  type: OutputType;
  dest?: string;
  /** Image names, from `name=` (comma separated, quoted in CSV) or the build's tags. */
  names?: string[];
  attrs: Record<string, string>;
}

export class InvalidOutputError extends UserError {
  constructor(message: string) { super('INVALID_OUTPUT', message); }
}

const KNOWN: OutputType[] = ['oci', 'docker', 'local', 'image', 'registry', 'tar', 'cacheonly'];

/** Splits a CSV line, honouring double quotes like Go's encoding/csv (buildx parses outputs with it). */
export function splitCSV(s: string, what = 'output'): string[] {
  const fields: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (quoted) {
      if (c === '"' && s[i + 1] === '"') { cur += '"'; i++; } else if (c === '"') quoted = false; else cur += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') { fields.push(cur); cur = ''; } else cur += c;
  }
  if (quoted) throw new InvalidOutputError(`invalid ${what} "${s}": unterminated quote`);
  fields.push(cur);
  return fields;
}

/** Options common to the image-producing exporters (BuildKit's image, oci and docker exporters). */
const IMAGE_OPTIONS = ['name', 'compression', 'compression-level', 'force-compression', 'oci-mediatypes', 'rewrite-timestamp', 'annotation.*', 'annotation-manifest.*'];
/** Options each type accepts, as BuildKit names them. */
export const OUTPUT_OPTIONS: Record<OutputType, string[]> = {
  image: [...IMAGE_OPTIONS, 'push', 'push-by-digest', 'store', 'registry.insecure', 'insecure'],
  registry: [...IMAGE_OPTIONS, 'push', 'push-by-digest', 'registry.insecure', 'insecure'],
  oci: [...IMAGE_OPTIONS, 'dest', 'tar'],
  docker: [...IMAGE_OPTIONS, 'dest'],
  local: ['dest'],
  tar: ['dest'],
  // The build runs and fills the cache; nothing is exported (BuildKit's cacheonly exporter).
  cacheonly: [],
};

const BOOLEAN_OPTIONS = ['push', 'push-by-digest', 'store', 'registry.insecure', 'insecure', 'force-compression', 'oci-mediatypes', 'rewrite-timestamp', 'tar'];

function checkOption(spec: string, type: OutputType, key: string, value: string): void {
  const valid = OUTPUT_OPTIONS[type];
  if (valid.length === 0) throw new InvalidOutputError(`invalid output "${spec}": type=${type} takes no options`);
  const known = valid.includes(key) || valid.some((v) => v.endsWith('.*') && key.startsWith(v.slice(0, -1)) && key.length > v.length - 1);
  if (!known) throw new InvalidOutputError(`invalid output "${spec}": unknown option "${key}" for type=${type} (valid: ${valid.join(', ')})`);
  if (BOOLEAN_OPTIONS.includes(key) && !['true', 'false', ''].includes(value.toLowerCase())) {
    throw new InvalidOutputError(`invalid output "${spec}": ${key} must be true or false, not "${value}"`);
  }
  if (key === 'compression' && !['gzip', 'zstd', 'uncompressed', 'estargz'].includes(value)) {
    throw new InvalidOutputError(`invalid output "${spec}": unknown compression "${value}" (valid: gzip, zstd, uncompressed)`);
  }
  if (key === 'compression' && value === 'estargz') throw new InvalidOutputError(`invalid output "${spec}": compression=estargz is not supported yet (valid: gzip, zstd, uncompressed)`);
  if (key === 'compression-level' && !/^\d+$/.test(value)) {
    throw new InvalidOutputError(`invalid output "${spec}": compression-level must be a number, not "${value}"`);
  }
}

/** A boolean option: present with no value or `true` is true. */
export function boolAttr(o: OutputSpec, key: string, dflt = false): boolean {
  const v = o.attrs[key];
  if (v === undefined) return dflt;
  return v === '' || v.toLowerCase() === 'true';
}

export function parseOutput(spec: string): OutputSpec {
  if (!spec.includes('=')) {
    // buildx: `-o DIR` is type=local, `-o -` is a tar of the filesystem on stdout.
    return spec === '-' ? { type: 'tar', dest: '-', attrs: {} } : { type: 'local', dest: spec, attrs: {} };
  }
  const attrs: Record<string, string> = {};
  for (const field of splitCSV(spec)) {
    const eq = field.indexOf('=');
    if (eq < 0) throw new InvalidOutputError(`invalid output "${spec}": field "${field}" must be key=value`);
    const raw = field.slice(0, eq).trim();
    // Annotation keys keep their case; `name` may repeat (`name=a,name=b`), as buildx allows.
    const key = raw.toLowerCase().startsWith('annotation') ? raw.replace(/^annotation/i, 'annotation') : raw.toLowerCase();
    const value = field.slice(eq + 1);
    attrs[key] = key === 'name' && attrs.name ? `${attrs.name},${value}` : value;
  }
  const type = (attrs.type ?? '') as OutputType;
  if (!attrs.type) throw new InvalidOutputError(`invalid output "${spec}": type is required (valid: ${KNOWN.join(', ')})`);
  if (!KNOWN.includes(type)) throw new InvalidOutputError(`invalid output "${spec}": unknown type "${attrs.type}" (valid: ${KNOWN.join(', ')})`);
  const { type: _t, ...given } = attrs;
  for (const [k, v] of Object.entries(given)) checkOption(spec, type, k, v);
  if (given['compression-level'] !== undefined) {
    // Checked before the build runs: gzip takes 0-9, zstd 1-22 (as BuildKit).
    const compression = given.compression ?? 'gzip';
    const max = compression === 'gzip' ? 9 : compression === 'zstd' ? 22 : 0;
    if (Number(given['compression-level']) > max) {
      throw new InvalidOutputError(`invalid output "${spec}": compression-level=${given['compression-level']} is out of range for compression=${compression} (0-${max})`);
    }
  }
  const { dest, name, ...rest } = given;
  const out: OutputSpec = { type, dest, attrs: rest };
  if (name) out.names = name.split(',').map((n) => n.trim()).filter(Boolean);
  if ((type === 'local' || type === 'tar' || type === 'oci') && !dest) {
    throw new InvalidOutputError(`invalid output "${spec}": dest is required for type=${type}`);
  }
  return out;
}

/**
 * The outputs a build exports to, as buildx derives them: `--push` adds (or turns on) an image output
 * pushing the tags, `--load` a docker output into the daemon, and `-t` alone keeps the image in the
 * local image store (as `docker build -t` does).
 */
export function resolveOutputs(outputs: OutputSpec[], opts: { tags?: string[]; push?: boolean; load?: boolean }): OutputSpec[] {
  const out = outputs.map((o) => ({ ...o, attrs: { ...o.attrs } }));
  if (opts.push) {
    const image = out.find((o) => o.type === 'image');
    if (image) image.attrs.push = 'true';
    else out.push({ type: 'image', attrs: { push: 'true' } });
  }
  if (opts.load && !out.some((o) => o.type === 'docker' && !o.dest)) out.push({ type: 'docker', attrs: {} });
  if (out.length === 0 && opts.tags?.length) out.push({ type: 'image', attrs: {} });
  return out;
}

export class InvalidSourceDateEpochError extends UserError {
  constructor(value: string) { super('INVALID_SOURCE_DATE_EPOCH', `invalid SOURCE_DATE_EPOCH "${value}": expected Unix seconds`); }
}

/** SOURCE_DATE_EPOCH (Unix seconds), from the environment or `--build-arg`. */
export function parseSourceDateEpoch(value: string | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  if (!/^\d+$/.test(value)) throw new InvalidSourceDateEpochError(value);
  return Number(value);
}
