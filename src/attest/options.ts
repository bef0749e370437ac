// `--attest`, `--provenance`, `--sbom` as buildx reads them: each names an attestation type and its options
// (`type=provenance,mode=max`); `--provenance=VALUE`/`--sbom=VALUE` are shorthands where a Go boolean turns
// the attestation on or off and anything else is its options. Without any provenance request a build asks
// for min-mode provenance, attached only where the output carries attestations inline (buildx's default,
// `BUILDX_NO_DEFAULT_ATTESTATIONS` turns it off).
import { UserError } from '../util/errors.js';

export type ProvenanceMode = 'min' | 'max';
export type ProvenanceVersion = 'v0.2' | 'v1';

export interface ProvenanceRequest {
  mode: ProvenanceMode;
  version: ProvenanceVersion;
  /** `builder-id=`: the builder's id in the statement (a CI run's URL); default none. */
  builderId?: string;
  /** The default request: only attached to outputs that carry attestations inline (image, oci). */
  inlineOnly?: boolean;
  /** Asked for by no flag (buildx's default): not attached to an image kept only in the local image store. */
  byDefault?: boolean;
  /** `reproducible=true`: the statement says the build is reproducible (BuildKit's option). */
  reproducible?: boolean;
  /** `filename=`: the file a local output writes it to (default `provenance.json`). */
  filename?: string;
}

export interface SbomRequest {
  /** `generator=IMAGE`: a scanner image run under BuildKit's scanner contract instead of the built-in scanner. */
  generator?: string;
  /** Scan every stage the target depends on too (`BUILDKIT_SBOM_SCAN_STAGE` / `scan-stage=true`). */
  scanStage?: boolean;
  /** Scan the build context too (`BUILDKIT_SBOM_SCAN_CONTEXT` / `scan-context=true`). */
  scanContext?: boolean;
  /** The spec's other options (`type` included), passed to a generator as `BUILDKIT_SCAN_<key>`, as BuildKit does. */
  params?: Record<string, string>;
}

/** What a build attaches. */
export interface AttestRequest {
  provenance?: ProvenanceRequest;
  sbom?: SbomRequest;
}

/** The attestation options of BuildOptions (the library's `--attest`, `--provenance`, `--sbom`). */
export interface AttestOptions {
  /** `--attest` specs: `type=provenance,mode=max`, `type=sbom,generator=IMAGE`, `type=sbom,disabled=true`. */
  attest?: string[];
  /** `--provenance`: `true`/`false` (or a Go boolean string), or options `mode=max,version=v1`. */
  provenance?: boolean | string;
  /** `--sbom`: `true`/`false`, or options `generator=IMAGE`. */
  sbom?: boolean | string;
}

export class InvalidAttestError extends UserError {
  /** What is wrong, without the spec (the CLI names the flag as given). */
  readonly detail: string;
  constructor(message: string) {
    super('INVALID_ATTEST', message);
    this.detail = message.replace(/^invalid attest "[^"]*": /, '');
  }
}

/** Go's strconv.ParseBool, which buildx uses for `--provenance`/`--sbom` values. */
export function parseBool(v: string): boolean | undefined {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(v)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(v)) return false;
  return undefined;
}

/** buildx's CanonicalizeAttest: the shorthand as an `--attest` spec. */
export function canonicalizeAttest(type: 'provenance' | 'sbom', value: boolean | string): string {
  const b = typeof value === 'boolean' ? value : parseBool(value);
  if (b !== undefined) return `type=${type},disabled=${!b}`;
  return `type=${type},${value}`;
}

/** The attestation specs of options, as `--attest` strings (the shorthands first, as buildx adds them). */
export function attestSpecs(opts: AttestOptions): string[] {
  const specs: string[] = [];
  if (opts.provenance !== undefined && opts.provenance !== '') specs.push(canonicalizeAttest('provenance', opts.provenance));
  if (opts.sbom !== undefined && opts.sbom !== '') specs.push(canonicalizeAttest('sbom', opts.sbom));
  specs.push(...(opts.attest ?? []));
  return specs;
}

/**
 * The specs a client sends (to the library or a server): the shorthands canonicalized, and with
 * `BUILDX_NO_DEFAULT_ATTESTATIONS` set, the default provenance turned off first (an explicit one still wins).
 */
export function clientAttestSpecs(opts: AttestOptions, env: NodeJS.ProcessEnv = process.env): string[] {
  const specs = attestSpecs(opts);
  return isTrue(env.BUILDX_NO_DEFAULT_ATTESTATIONS) ? ['type=provenance,disabled=true', ...specs] : specs;
}

const PROVENANCE_KEYS = ['type', 'disabled', 'mode', 'version', 'builder-id', 'inline-only', 'filename', 'reproducible'];


function splitSpec(spec: string): Record<string, string> {
  const attrs: Record<string, string> = {};
  for (const field of spec.split(',')) {
    if (field.trim() === '') continue;
    const eq = field.indexOf('=');
    if (eq < 0) throw new InvalidAttestError(`invalid attest "${spec}": invalid value ${field}`);
    const key = field.slice(0, eq).trim().toLowerCase();
    attrs[key] = field.slice(eq + 1);
  }
  return attrs;
}

function boolOption(spec: string, key: string, value: string | undefined): boolean | undefined {
  if (value === undefined) return undefined;
  const b = parseBool(value);
  if (b === undefined) throw new InvalidAttestError(`invalid attest "${spec}": ${key} must be a boolean, not "${value}"`);
  return b;
}

/**
 * The attestations a build asks for. Later specs of one type replace earlier ones (the shorthands come
 * first, so `--attest` wins). Provenance is on (min, inline only) unless asked otherwise or
 * `BUILDX_NO_DEFAULT_ATTESTATIONS` is set; the build args `BUILDKIT_SBOM_SCAN_STAGE`/`_CONTEXT` set the
 * scanner's defaults as BuildKit reads them.
 */
export function resolveAttest(opts: AttestOptions, env: { buildArgs?: Record<string, string>; noDefault?: boolean } = {}): AttestRequest {
  const byType = new Map<string, { spec: string; attrs: Record<string, string> }>();
  for (const spec of attestSpecs(opts)) {
    const attrs = splitSpec(spec);
    const type = attrs.type;
    if (!type) throw new InvalidAttestError(`invalid attest "${spec}": attestation type not specified`);
    if (type !== 'provenance' && type !== 'sbom') throw new InvalidAttestError(`invalid attest "${spec}": unknown attestation type "${type}" (valid: provenance, sbom)`);
    // An SBOM's options are the scanner's (a generator gets them all); provenance's are BuildKit's own.
    if (type === 'provenance') {
      for (const key of Object.keys(attrs)) {
        if (!PROVENANCE_KEYS.includes(key)) throw new InvalidAttestError(`invalid attest "${spec}": unknown option "${key}" for type=${type} (valid: ${PROVENANCE_KEYS.filter((k) => k !== 'type').join(', ')})`);
      }
    }
    boolOption(spec, 'disabled', attrs.disabled);
    byType.set(type, { spec, attrs });
  }
  const out: AttestRequest = {};
  const prov = byType.get('provenance');
  const noDefault = env.noDefault ?? isTrue(process.env.BUILDX_NO_DEFAULT_ATTESTATIONS);
  if (prov) {
    const { spec, attrs } = prov;
    if (!boolOption(spec, 'disabled', attrs.disabled)) {
      const mode = (attrs.mode ?? 'min').toLowerCase();
      if (mode !== 'min' && mode !== 'max') throw new InvalidAttestError(`invalid attest "${spec}": mode must be min or max, not "${attrs.mode}"`);
      const version = attrs.version ?? 'v0.2';
      if (version !== 'v0.2' && version !== 'v1') throw new InvalidAttestError(`invalid attest "${spec}": version must be v0.2 or v1, not "${attrs.version}"`);
      out.provenance = {
        mode, version,
        ...(attrs['builder-id'] ? { builderId: attrs['builder-id'] } : {}),
        ...(boolOption(spec, 'reproducible', attrs.reproducible) ? { reproducible: true } : {}),
        ...(attrs.filename ? { filename: attrs.filename } : {}),
        ...(boolOption(spec, 'inline-only', attrs['inline-only']) ? { inlineOnly: true } : {}),
      };
    }
  } else if (!noDefault) {
    out.provenance = { mode: 'min', version: 'v0.2', inlineOnly: true, byDefault: true };
  }
  const sbom = byType.get('sbom');
  if (sbom && !boolOption(sbom.spec, 'disabled', sbom.attrs.disabled)) {
    const { spec, attrs } = sbom;
    const argBool = (name: string) => {
      const v = env.buildArgs?.[name];
      return v === undefined ? undefined : v === '' ? true : boolOption(`--build-arg ${name}=${v}`, name, v);
    };
    const scanStage = boolOption(spec, 'scan-stage', attrs['scan-stage']) ?? argBool('BUILDKIT_SBOM_SCAN_STAGE');
    const scanContext = boolOption(spec, 'scan-context', attrs['scan-context']) ?? argBool('BUILDKIT_SBOM_SCAN_CONTEXT');
    const { generator: _g, disabled: _d, ...params } = attrs;
    out.sbom = {
      ...(attrs.generator ? { generator: attrs.generator, params } : {}),
      ...(scanStage ? { scanStage } : {}),
      ...(scanContext ? { scanContext } : {}),
    };
  }
  return out;
}

function isTrue(v: string | undefined): boolean {
  if (v === undefined || v === '') return false;
  return parseBool(v) ?? true;
}

/**
 * Whether an output carries attestations, and which: image, registry and oci ones all (inline, in the
 * index); `local` those asked for (as files beside the result; not the default provenance, which is inline
 * only, as buildx's); `docker` (the daemon's classic store) and `tar` none.
 */
export function attestationsFor(request: AttestRequest, output: { type: string; attrs?: Record<string, string> }): AttestRequest {
  // An image only stored locally (`-t` alone) is what `--load` gives with buildx: the default provenance
  // stays out of it, as out of the docker image store; asked for, it is attached.
  if (output.type === 'image' && request.provenance?.byDefault && output.attrs?.push !== 'true') {
    const { provenance: _omitted, ...rest } = request;
    return rest;
  }
  if (output.type === 'image' || output.type === 'registry' || output.type === 'oci') return request;
  if (output.type !== 'local') return {};
  return {
    ...(request.provenance && !request.provenance.inlineOnly ? { provenance: request.provenance } : {}),
    ...(request.sbom ? { sbom: request.sbom } : {}),
  };
}

export function hasAttestations(r: AttestRequest): boolean {
  return r.provenance !== undefined || r.sbom !== undefined;
}
