// The functions a bake file can call: buildx's stdlib (go-cty's function library plus a few of its own),
// as far as this module has them. Values are JSON-like (see hcl.ts).
import crypto from 'node:crypto';
import os from 'node:os';
import type { Fn, Value } from './hcl.js';
import { asBool, asNumber, asString, equal, typeName } from './hcl.js';

const list = (v: Value, what = 'argument'): Value[] => {
  if (Array.isArray(v)) return v;
  throw new Error(`${what} must be a list, not a ${typeName(v)}`);
};
const obj = (v: Value): Record<string, Value> => {
  if (v && typeof v === 'object' && !Array.isArray(v)) return v;
  throw new Error(`argument must be a map or object, not a ${typeName(v)}`);
};
const hash = (alg: string) => (s: Value) => crypto.createHash(alg).update(asString(s)).digest('hex');

/** Go's fmt verbs that format() takes: %s %d %v %q %f %t %%. */
function format(fmt: Value, ...args: Value[]): Value {
  let i = 0;
  return asString(fmt).replace(/%([-0]*)(\d*)(?:\.(\d+))?([sdvqftx%])/g, (_m, flags: string, width: string, prec: string | undefined, verb: string) => {
    if (verb === '%') return '%';
    if (i >= args.length) throw new Error('not enough arguments for format string');
    const a = args[i++];
    let s: string;
    switch (verb) {
      case 'd': s = String(Math.trunc(asNumber(a))); break;
      case 'f': s = asNumber(a).toFixed(prec === undefined ? 6 : Number(prec)); break;
      case 'q': s = JSON.stringify(asString(a)); break;
      case 't': s = String(asBool(a)); break;
      case 'x': s = typeof a === 'number' ? a.toString(16) : Buffer.from(asString(a)).toString('hex'); break;
      case 'v': s = typeof a === 'string' || typeof a === 'number' || typeof a === 'boolean' ? asString(a) : JSON.stringify(a); break;
      default: s = asString(a);
    }
    const w = Number(width || 0);
    if (flags.includes('-')) return s.padEnd(w);
    // Go's 0 flag pads numbers with zeros after the sign.
    if (flags.includes('0') && /^-?[\d.]+$/.test(s)) return s.startsWith('-') ? '-' + s.slice(1).padStart(w - 1, '0') : s.padStart(w, '0');
    return s.padStart(w);
  });
}

/** Go's time layout from formatdate's spec (YYYY-MM-DD'T'hh:mm:ssZ). */
function formatdate(spec: Value, ts: Value): Value {
  const d = new Date(asString(ts));
  if (Number.isNaN(d.getTime())) throw new Error(`invalid timestamp ${JSON.stringify(ts)}`);
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  const months = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];
  const days = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
  const tokens: Record<string, () => string> = {
    YYYY: () => String(d.getUTCFullYear()), YY: () => p(d.getUTCFullYear() % 100), MMMM: () => months[d.getUTCMonth()],
    MMM: () => months[d.getUTCMonth()].slice(0, 3), MM: () => p(d.getUTCMonth() + 1), M: () => String(d.getUTCMonth() + 1),
    DD: () => p(d.getUTCDate()), D: () => String(d.getUTCDate()), EEEE: () => days[d.getUTCDay()], EEE: () => days[d.getUTCDay()].slice(0, 3),
    hh: () => p(d.getUTCHours()), h: () => String(d.getUTCHours()), mm: () => p(d.getUTCMinutes()), m: () => String(d.getUTCMinutes()),
    ss: () => p(d.getUTCSeconds()), s: () => String(d.getUTCSeconds()), ZZZZZ: () => '+00:00', ZZZZ: () => '+0000', ZZZ: () => 'UTC', Z: () => 'Z',
    AA: () => (d.getUTCHours() < 12 ? 'AM' : 'PM'), aa: () => (d.getUTCHours() < 12 ? 'am' : 'pm'),
  };
  return asString(spec).replace(/'([^']*)'|YYYY|YY|MMMM|MMM|MM|M|DD|D|EEEE|EEE|hh|h|mm|m|ss|s|ZZZZZ|ZZZZ|ZZZ|Z|AA|aa/g, (m, lit: string | undefined) => (lit !== undefined ? lit : tokens[m]()));
}

/** Go's regexp replacement (`$1`, `${1}`, `$name`, `${name}`, `$$`) as a JavaScript one. */
function goReplacement(r: string): string {
  return r.replace(/\$(\$|\{(\w+)\}|(\w+))/g, (_m, all: string, braced?: string, bare?: string) => {
    if (all === '$') return '$$';
    const name = braced ?? bare!;
    return /^\d+$/.test(name) ? `$${name}` : `$<${name}>`;
  });
}

function flatten(v: Value): Value[] {
  return list(v).flatMap((x) => (Array.isArray(x) ? flatten(x) : [x]));
}

function uniq(values: Value[]): Value[] {
  const out: Value[] = [];
  for (const v of values) if (!out.some((o) => equal(o, v))) out.push(v);
  return out;
}

export const STDLIB: Record<string, Fn> = {
  // Strings
  upper: (s) => asString(s).toUpperCase(),
  lower: (s) => asString(s).toLowerCase(),
  title: (s) => asString(s).replace(/\b\w/g, (c) => c.toUpperCase()),
  chomp: (s) => asString(s).replace(/(\r\n|\n|\r)+$/, ''),
  trimspace: (s) => asString(s).trim(),
  trim: (s, cut) => { const c = [...asString(cut)]; let t = asString(s); while (t && c.includes(t[0])) t = t.slice(1); while (t && c.includes(t[t.length - 1])) t = t.slice(0, -1); return t; },
  trimprefix: (s, p) => (asString(s).startsWith(asString(p)) ? asString(s).slice(asString(p).length) : asString(s)),
  trimsuffix: (s, p) => (asString(p) && asString(s).endsWith(asString(p)) ? asString(s).slice(0, -asString(p).length) : asString(s)),
  strlen: (s) => [...asString(s)].length,
  substr: (s, off, len) => { const c = [...asString(s)]; let o = asNumber(off); if (o < 0) o += c.length; const l = asNumber(len); return c.slice(o, l < 0 ? undefined : o + l).join(''); },
  replace: (s, a, b) => { const from = asString(a); if (/^\/.*\/$/.test(from)) return asString(s).replace(new RegExp(from.slice(1, -1), 'g'), goReplacement(asString(b))); return asString(s).split(from).join(asString(b)); },
  regex_replace: (s, re, b) => asString(s).replace(new RegExp(asString(re), 'g'), goReplacement(asString(b))),
  regex: (re, s) => { const m = new RegExp(asString(re)).exec(asString(s)); if (!m) throw new Error('pattern did not match'); if (m.groups) return m.groups as Value; return m.length > 1 ? m.slice(1) : m[0]; },
  regexall: (re, s) => [...asString(s).matchAll(new RegExp(asString(re), 'g'))].map((m) => (m.length > 1 ? m.slice(1) : m[0])),
  split: (sep, s) => asString(s).split(asString(sep)),
  join: (sep, ...lists) => lists.flatMap((l) => list(l)).map(asString).join(asString(sep)),
  format,
  formatlist: (fmt, ...args) => {
    const n = Math.max(0, ...args.filter(Array.isArray).map((a) => (a as Value[]).length));
    return Array.from({ length: n }, (_, i) => format(fmt, ...args.map((a) => (Array.isArray(a) ? a[i] : a))));
  },
  indent: (n, s) => asString(s).split('\n').map((l, i) => (i === 0 ? l : ' '.repeat(asNumber(n)) + l)).join('\n'),
  strrev: (s) => [...asString(s)].reverse().join(''),
  // Numbers
  abs: (n) => Math.abs(asNumber(n)),
  ceil: (n) => Math.ceil(asNumber(n)),
  floor: (n) => Math.floor(asNumber(n)),
  log: (n, b) => Math.log(asNumber(n)) / Math.log(asNumber(b)),
  pow: (a, b) => asNumber(a) ** asNumber(b),
  signum: (n) => Math.sign(asNumber(n)),
  min: (...n) => Math.min(...n.map(asNumber)),
  max: (...n) => Math.max(...n.map(asNumber)),
  parseint: (s, base) => { const v = parseInt(asString(s), asNumber(base)); if (Number.isNaN(v)) throw new Error(`cannot parse ${JSON.stringify(s)} as a base ${asNumber(base)} integer`); return v; },
  add: (a, b) => asNumber(a) + asNumber(b),
  subtract: (a, b) => asNumber(a) - asNumber(b),
  multiply: (a, b) => asNumber(a) * asNumber(b),
  divide: (a, b) => asNumber(a) / asNumber(b),
  modulo: (a, b) => asNumber(a) % asNumber(b),
  negate: (a) => -asNumber(a),
  int: (a) => Math.trunc(asNumber(a)),
  // Logic
  and: (a, b) => asBool(a) && asBool(b),
  or: (a, b) => asBool(a) || asBool(b),
  not: (a) => !asBool(a),
  equal: (a, b) => equal(a, b),
  notequal: (a, b) => !equal(a, b),
  greaterthan: (a, b) => asNumber(a) > asNumber(b),
  greaterthanorequalto: (a, b) => asNumber(a) >= asNumber(b),
  lessthan: (a, b) => asNumber(a) < asNumber(b),
  lessthanorequalto: (a, b) => asNumber(a) <= asNumber(b),
  coalesce: (...v) => { const f = v.find((x) => x !== null && x !== ''); if (f === undefined) throw new Error('no non-null arguments'); return f; },
  coalescelist: (...v) => v.find((x) => Array.isArray(x) && x.length > 0) ?? [],
  // Collections
  length: (v) => (typeof v === 'string' ? [...v].length : Array.isArray(v) ? v.length : Object.keys(obj(v)).length),
  concat: (...l) => l.flatMap((x) => list(x)),
  contains: (l, v) => list(l).some((x) => equal(x, v)),
  index: (l, v) => { const i = list(l).findIndex((x) => equal(x, v)); if (i < 0) throw new Error('item not found'); return i; },
  indexof: (l, v) => { const i = list(l).findIndex((x) => equal(x, v)); if (i < 0) throw new Error('item not found'); return i; },
  element: (l, i) => { const a = list(l); if (a.length === 0) throw new Error('cannot use element function with an empty list'); return a[((asNumber(i) % a.length) + a.length) % a.length]; },
  distinct: (l) => uniq(list(l)),
  flatten,
  reverse: (l) => [...list(l)].reverse(),
  slice: (l, a, b) => list(l).slice(asNumber(a), asNumber(b)),
  sort: (l) => list(l).map(asString).sort(),
  keys: (m) => Object.keys(obj(m)).sort(),
  values: (m) => Object.keys(obj(m)).sort().map((k) => obj(m)[k]),
  lookup: (m, k, ...d) => { const o = obj(m); const key = asString(k); if (Object.prototype.hasOwnProperty.call(o, key)) return o[key]; if (d.length) return d[0]; throw new Error(`the given key "${key}" does not exist`); },
  merge: (...ms) => Object.assign({}, ...ms.filter((m) => m !== null).map(obj)) as Value,
  zipmap: (k, v) => Object.fromEntries(list(k).map((x, i) => [asString(x), list(v)[i]])),
  range: (...a) => { const [start, end, step] = a.length === 1 ? [0, asNumber(a[0]), 1] : [asNumber(a[0]), asNumber(a[1]), a.length > 2 ? asNumber(a[2]) : 1]; const out: number[] = []; for (let i = start; step > 0 ? i < end : i > end; i += step) out.push(i); return out; },
  chunklist: (l, n) => { const a = list(l); const s = asNumber(n); const out: Value[] = []; for (let i = 0; i < a.length; i += s) out.push(a.slice(i, i + s)); return out; },
  compact: (l) => list(l).filter((x) => x !== null && x !== ''),
  setunion: (...ls) => uniq(ls.flatMap((l) => list(l))),
  setintersection: (first, ...ls) => uniq(list(first).filter((x) => ls.every((l) => list(l).some((y) => equal(x, y))))),
  setsubtract: (a, b) => uniq(list(a).filter((x) => !list(b).some((y) => equal(x, y)))),
  sethaskey: (m, k) => Object.prototype.hasOwnProperty.call(obj(m), asString(k)),
  tolist: (l) => list(l),
  toset: (l) => uniq(list(l)),
  tomap: (m) => obj(m),
  tostring: (v) => (v === null ? null : asString(v)),
  tonumber: (v) => (v === null ? null : asNumber(v)),
  tobool: (v) => (v === null ? null : asBool(v)),
  // Encoding, hashes, time, ids
  jsonencode: (v) => JSON.stringify(v),
  jsondecode: (s) => JSON.parse(asString(s)) as Value,
  csvdecode: (s) => { const [head, ...rows] = asString(s).trim().split(/\r?\n/).map((l) => l.split(',')); return rows.map((r) => Object.fromEntries(head.map((h, i) => [h, r[i] ?? '']))); },
  base64encode: (s) => Buffer.from(asString(s)).toString('base64'),
  base64decode: (s) => Buffer.from(asString(s), 'base64').toString('utf8'),
  urlencode: (s) => encodeURIComponent(asString(s)),
  md5: hash('md5'),
  sha1: hash('sha1'),
  sha256: hash('sha256'),
  sha512: hash('sha512'),
  uuidv4: () => crypto.randomUUID(),
  timestamp: () => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
  formatdate,
  timeadd: (ts, dur) => {
    const units: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60000, h: 3600000 };
    let ms = 0;
    const sign = asString(dur).startsWith('-') ? -1 : 1;
    for (const m of asString(dur).replace(/^[-+]/, '').matchAll(/([\d.]+)(ns|us|µs|ms|s|m|h)/g)) ms += Number(m[1]) * units[m[2]];
    return new Date(new Date(asString(ts)).getTime() + sign * ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
  },
  homedir: () => os.homedir(),
};
