// `--output` specs, parsed as buildx does: CSV `type=oci,dest=out.tar`, or a bare path meaning type=local.
import { UserError } from '../util/errors.js';

export type OutputType = 'oci' | 'docker' | 'local' | 'image' | 'registry' | 'tar';

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

const KNOWN: OutputType[] = ['oci', 'docker', 'local', 'image', 'registry', 'tar'];

/** Splits a CSV line, honouring double quotes like Go's encoding/csv (buildx parses outputs with it). */
function splitCSV(s: string): string[] {
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
  if (quoted) throw new InvalidOutputError(`invalid output "${s}": unterminated quote`);
  fields.push(cur);
  return fields;
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
    attrs[field.slice(0, eq).trim().toLowerCase()] = field.slice(eq + 1);
  }
  const type = (attrs.type ?? '') as OutputType;
  if (!attrs.type) throw new InvalidOutputError(`invalid output "${spec}": type is required`);
  if (!KNOWN.includes(type)) throw new InvalidOutputError(`invalid output "${spec}": unknown type "${attrs.type}"`);
  const { type: _t, dest, name, ...rest } = attrs;
  const out: OutputSpec = { type, dest, attrs: rest };
  if (name) out.names = name.split(',').map((n) => n.trim()).filter(Boolean);
  if ((type === 'oci' || type === 'docker' || type === 'local' || type === 'tar') && !dest && type !== 'docker') {
    throw new InvalidOutputError(`invalid output "${spec}": dest is required for type=${type}`);
  }
  return out;
}
