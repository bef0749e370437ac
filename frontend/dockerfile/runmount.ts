// `RUN --mount=...` values, parsed as BuildKit's instructions package does (commands_runmount.go): a CSV
// line of key=value fields, bare `ro`/`rw`/`required`, values expanded with the stage's variables, and
// BuildKit's defaults and error messages.
import { DockerfileError } from './errors.js';

export type MountType = 'bind' | 'cache' | 'tmpfs' | 'secret' | 'ssh';
export type CacheSharing = 'shared' | 'private' | 'locked';

const MOUNT_TYPES: MountType[] = ['bind', 'cache', 'tmpfs', 'secret', 'ssh'];
const SHARING: CacheSharing[] = ['shared', 'private', 'locked'];

export interface MountSpec {
  type: MountType;
  /** Stage name, stage index or image for bind and cache mounts; '' is the build context. */
  from: string;
  source: string;
  target: string;
  readonly: boolean;
  /** Cache id, secret id or ssh id as given ('' when not set). */
  id: string;
  sharing?: CacheSharing;
  required: boolean;
  /** tmpfs size in bytes. */
  size?: number;
  mode?: number;
  uid?: number;
  gid?: number;
  /** Secret exposed as this environment variable. */
  env?: string;
}

/** The `from=` of a mount before expansion, to find the stages a RUN depends on. */
export function mountFrom(raw: string): string | undefined {
  for (const field of splitCSV(raw)) {
    const eq = field.indexOf('=');
    if (eq > 0 && field.slice(0, eq).toLowerCase() === 'from') return field.slice(eq + 1);
  }
  return undefined;
}

export function parseMount(raw: string, expand: (word: string) => string): MountSpec {
  const m: MountSpec = { type: 'bind', from: '', source: '', target: '', readonly: true, id: '', required: false };
  let roAuto = true;
  const fileInfo = (key: string) => {
    if (m.type !== 'secret' && m.type !== 'ssh' && m.type !== 'cache') {
      throw new DockerfileError(`unexpected key '${key}' for mount type '${m.type}'`);
    }
  };
  for (const field of splitCSV(raw)) {
    const eq = field.indexOf('=');
    const key = (eq < 0 ? field : field.slice(0, eq)).toLowerCase();
    if (eq < 0) {
      if (key === 'readonly' || key === 'ro') { m.readonly = true; roAuto = false; continue; }
      if (key === 'readwrite' || key === 'rw') { m.readonly = false; roAuto = false; continue; }
      if (key === 'required' && (m.type === 'secret' || m.type === 'ssh')) { m.required = true; continue; }
      if (key === 'required') throw new DockerfileError(`unexpected key '${key}' for mount type '${m.type}'`);
      throw new DockerfileError(`invalid field '${field}' must be a key=value pair`);
    }
    const value = expand(field.slice(eq + 1));
    switch (key) {
      case 'type': {
        const t = value.toLowerCase() as MountType;
        if (!MOUNT_TYPES.includes(t)) throw new DockerfileError(`unsupported mount type "${value}"`);
        m.type = t;
        break;
      }
      case 'from': m.from = value; break;
      case 'source': case 'src': m.source = value; break;
      case 'target': case 'dst': case 'destination': m.target = value; break;
      case 'readonly': case 'ro': m.readonly = parseBool(value, field); roAuto = false; break;
      case 'readwrite': case 'rw': m.readonly = !parseBool(value, field); roAuto = false; break;
      case 'required':
        if (m.type !== 'secret' && m.type !== 'ssh') throw new DockerfileError(`unexpected key '${key}' for mount type '${m.type}'`);
        m.required = parseBool(value, field);
        break;
      case 'sharing': {
        if (value !== '' && m.type !== 'cache') throw new DockerfileError(`invalid cache sharing set for ${m.type} mount`);
        const s = value.toLowerCase() as CacheSharing;
        if (!SHARING.includes(s)) throw new DockerfileError(`unsupported sharing value "${value}"`);
        m.sharing = s;
        break;
      }
      case 'id': m.id = value; break;
      case 'size':
        if (m.type !== 'tmpfs') throw new DockerfileError(`unexpected key 'size' for mount type '${m.type}'`);
        m.size = parseSize(value);
        break;
      case 'mode':
        fileInfo(key);
        if (!/^[0-7]+$/.test(value)) throw new DockerfileError(`invalid mode "${value}": must be octal`);
        m.mode = parseInt(value, 8);
        break;
      case 'uid': case 'gid': {
        fileInfo(key);
        if (!/^\d+$/.test(value)) throw new DockerfileError(`invalid ${key} "${value}": must be a number`);
        m[key] = Number(value);
        break;
      }
      case 'env':
        if (m.type !== 'secret') throw new DockerfileError(`unexpected key 'env' for mount type '${m.type}'`);
        m.env = value;
        break;
      default:
        throw new DockerfileError(`unexpected key '${key}' in '${field}'`);
    }
  }
  if (roAuto) m.readonly = !(m.type === 'cache' || m.type === 'tmpfs');
  if (m.type === 'secret') {
    if (m.from) throw new DockerfileError('secret mount should not have a from');
    if (!m.source && !m.target && !m.id && m.env === undefined) throw new DockerfileError('one of source, target required');
    if (m.source && m.id) throw new DockerfileError("both source and id can't be set");
  }
  if (m.type === 'cache') m.sharing ??= 'shared';
  return m;
}

/** Go's encoding/csv for one record: commas separate, double quotes group and `""` escapes a quote. */
function splitCSV(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    const ch = s[i];
    if (quoted) {
      if (ch === '"' && s[i + 1] === '"') { cur += '"'; i++; }
      else if (ch === '"') quoted = false;
      else cur += ch;
    } else if (ch === '"' && cur === '') quoted = true;
    else if (ch === ',') { out.push(cur); cur = ''; }
    else cur += ch;
  }
  if (quoted) throw new DockerfileError(`invalid mount "${s}": unterminated quote`);
  out.push(cur);
  return out;
}

function parseBool(v: string, field: string): boolean {
  // Go's strconv.ParseBool.
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(v)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(v)) return false;
  throw new DockerfileError(`invalid value for ${field}: not a boolean`);
}

/** docker/go-units RAMInBytes: `64m`, `1g`, `512k`, bytes; binary multiples. */
function parseSize(v: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgtp]?)i?b?$/i.exec(v.trim());
  if (!m) throw new DockerfileError(`invalid size: '${v}'`);
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 }[m[2].toLowerCase() as '' | 'k'];
  return Math.floor(Number(m[1]) * mult);
}
