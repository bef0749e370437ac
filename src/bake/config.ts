// Bake definitions: docker-bake.hcl / .json and compose files read into buildx's model (groups and
// targets), evaluated (variables with environment overrides, functions, matrix), then resolved for the
// requested targets as `docker buildx bake` resolves them (inherits, --set overrides, defaults).
import fs from 'node:fs/promises';
import path from 'node:path';
import { BakeError, Expressions, asString, childScope, parseHcl, stdlibScope, typeName, type Fn, type Scope, type Value } from './hcl.js';
import { composeToBake, isComposeFile } from './compose.js';

/** A key/value entry of `output`, `cache-from`, `cache-to` (buildx prints them as objects). */
export type Entry = Record<string, string>;

/** One target as buildx's `--print` shows it (same field names and order). */
export interface BakeTarget {
  description?: string;
  inherits?: string[];
  annotations?: string[];
  attest?: Entry[];
  context?: string;
  contexts?: Record<string, string>;
  dockerfile?: string;
  'dockerfile-inline'?: string;
  args?: Record<string, string | null>;
  labels?: Record<string, string | null>;
  tags?: string[];
  'cache-from'?: Entry[];
  'cache-to'?: Entry[];
  target?: string;
  secret?: { id?: string; src?: string; env?: string }[];
  ssh?: { id?: string; paths?: string[] }[];
  platforms?: string[];
  output?: Entry[];
  pull?: boolean;
  'no-cache'?: boolean;
  network?: string;
  'no-cache-filter'?: string[];
  'shm-size'?: string;
  ulimits?: string[];
  call?: string;
  entitlements?: string[];
  'extra-hosts'?: Record<string, string | null>;
}

export interface BakeGroup {
  description?: string;
  targets: string[];
}

/** The resolved definition: what `--print` prints and what bake builds. */
export interface BakeDefinition {
  group: Record<string, BakeGroup>;
  target: Record<string, BakeTarget>;
}

interface Config {
  groups: Map<string, BakeGroup>;
  targets: Map<string, BakeTarget>;
}

/** buildx's default files, in the order read (a later file's blocks override an earlier one's). */
export const DEFAULT_FILES = [
  'compose.yaml', 'compose.yml', 'docker-compose.yml', 'docker-compose.yaml',
  'docker-bake.json', 'docker-bake.hcl', 'docker-bake.override.json', 'docker-bake.override.hcl',
];

export interface LoadOptions {
  /** Bake files (`-f`); default: those of DEFAULT_FILES that exist in `cwd`. */
  files?: string[];
  cwd?: string;
  /** Variables' overrides (default process.env). */
  env?: Record<string, string | undefined>;
  /** `--var NAME=VALUE`: variables' values, over the environment's. */
  vars?: Record<string, string>;
}

export interface ResolveOptions extends LoadOptions {
  /** Targets or groups (glob patterns allowed); default `default`. */
  targets?: string[];
  /** `--set` overrides: `pattern.key[.subkey]=value`, `pattern.key+=value`. */
  set?: string[];
}

const KEY_ORDER: (keyof BakeTarget)[] = [
  'description', 'inherits', 'annotations', 'attest', 'context', 'contexts', 'dockerfile', 'dockerfile-inline', 'args', 'labels',
  'tags', 'cache-from', 'cache-to', 'target', 'secret', 'ssh', 'platforms', 'output', 'pull', 'no-cache', 'network',
  'no-cache-filter', 'shm-size', 'ulimits', 'call', 'entitlements', 'extra-hosts',
];
const LIST_KEYS = new Set(['inherits', 'annotations', 'tags', 'platforms', 'no-cache-filter', 'ulimits', 'entitlements']);
const MAP_KEYS = new Set(['args', 'labels', 'contexts', 'extra-hosts']);
const ENTRY_KEYS = new Set(['cache-from', 'cache-to', 'output', 'attest']);
const STRING_KEYS = new Set(['description', 'context', 'dockerfile', 'dockerfile-inline', 'target', 'network', 'shm-size', 'call']);
const BOOL_KEYS = new Set(['pull', 'no-cache']);
const NAME_RE = /^[a-zA-Z0-9_-]+$/;

/** `type=local,dest=out` (CSV, as buildx reads these flags) as an entry; a bare word is `defaultKey`'s value. */
export function parseEntry(s: string, defaultKey?: string): Entry {
  const out: Entry = {};
  for (const field of csvFields(s)) {
    const eq = field.indexOf('=');
    if (eq < 0) {
      if (!defaultKey) throw new BakeError(`invalid value "${s}": expected key=value`);
      Object.assign(out, defaultKey === 'ref' ? { type: 'registry', ref: field } : defaultKey === 'type' && field === '-' ? { type: 'tar', dest: '-' } : { [defaultKey]: field });
      continue;
    }
    out[field.slice(0, eq).trim().toLowerCase()] = field.slice(eq + 1);
  }
  return out;
}

function csvFields(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (const c of s) {
    if (c === '"') quoted = !quoted;
    else if (c === ',' && !quoted) { out.push(cur); cur = ''; } else cur += c;
  }
  out.push(cur);
  return out.filter((f) => f !== '');
}

/** Entries as JSON objects (sorted keys, string values), from strings or objects. */
function toEntries(v: Value, key: string): Entry[] {
  const items = Array.isArray(v) ? v : [v];
  return items.filter((x) => x !== null && x !== '').map((x) => {
    if (typeof x === 'string') return parseEntry(x, key === 'cache-from' ? 'ref' : key === 'output' ? 'type' : undefined);
    if (x && typeof x === 'object' && !Array.isArray(x)) return Object.fromEntries(Object.entries(x).filter(([, y]) => y !== null).map(([k, y]) => [k, asString(y)]));
    throw new BakeError(`invalid ${key} entry ${JSON.stringify(x)}`);
  });
}

export function toSecrets(v: Value): NonNullable<BakeTarget['secret']> {
  return (Array.isArray(v) ? v : [v]).filter((x) => x !== null).map((x) => {
    const e = typeof x === 'string' ? parseEntry(x) : Object.fromEntries(Object.entries(x as Record<string, Value>).map(([k, y]) => [k, asString(y)]));
    const s: { id?: string; src?: string; env?: string } = {};
    if (e.id) s.id = e.id;
    if (e.src ?? e.source) s.src = e.src ?? e.source;
    if (e.env) s.env = e.env;
    return s;
  });
}

export function toSsh(v: Value): NonNullable<BakeTarget['ssh']> {
  return (Array.isArray(v) ? v : [v]).filter((x) => x !== null).map((x) => {
    if (typeof x === 'string') {
      const eq = x.indexOf('=');
      return eq < 0 ? { id: x } : { id: x.slice(0, eq), paths: x.slice(eq + 1).split(',') };
    }
    const o = x as Record<string, Value>;
    return { ...(o.id ? { id: asString(o.id) } : {}), ...(o.paths ? { paths: (o.paths as Value[]).map(asString) } : {}) };
  });
}

/** An evaluated target block as a BakeTarget, checking each attribute's type. */
function toTarget(name: string, body: Record<string, Value>): BakeTarget {
  const t: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(body)) {
    if (k === 'matrix' || k === 'name') continue;
    if (v === null) continue;
    const bad = () => new BakeError(`target "${name}": ${k} cannot be a ${typeName(v)}`);
    if (LIST_KEYS.has(k)) {
      if (!Array.isArray(v)) throw bad();
      t[k] = v.map(asString);
    } else if (MAP_KEYS.has(k)) {
      if (typeof v !== 'object' || Array.isArray(v)) throw bad();
      t[k] = Object.fromEntries(Object.entries(v).map(([a, b]) => [a, b === null ? null : asString(b)]));
    } else if (ENTRY_KEYS.has(k)) t[k] = toEntries(v, k);
    else if (k === 'secret') t[k] = toSecrets(v);
    else if (k === 'ssh') t[k] = toSsh(v);
    else if (STRING_KEYS.has(k)) {
      if (typeof v === 'object') throw bad();
      t[k] = asString(v);
    } else if (BOOL_KEYS.has(k)) {
      if (typeof v !== 'boolean' && v !== 'true' && v !== 'false') throw bad();
      t[k] = v === true || v === 'true';
    } else throw new BakeError(`target "${name}": unsupported attribute "${k}"`);
  }
  return t as BakeTarget;
}

/** buildx's Target.Merge: `b` over `a` (maps merged key by key, most lists replaced, some appended). */
export function mergeTarget(a: BakeTarget, b: BakeTarget): BakeTarget {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b) as [keyof BakeTarget, unknown][]) {
    if (v === undefined) continue;
    if (MAP_KEYS.has(k)) {
      const merged = { ...(a[k] as Record<string, unknown> | undefined) };
      for (const [mk, mv] of Object.entries(v as Record<string, unknown>)) if (mv !== null || k === 'contexts') merged[mk] = mv;
      out[k] = merged;
    } else if (k === 'annotations' || k === 'no-cache-filter' || k === 'ulimits' || k === 'entitlements' || k === 'attest') {
      out[k] = [...((a[k] as unknown[]) ?? []), ...(v as unknown[])];
    } else if (k === 'secret' || k === 'ssh' || k === 'cache-from') {
      // Merged by identity: a later entry with the same id (or the same attributes) replaces the earlier.
      const ident = (x: unknown) => (k === 'cache-from' ? JSON.stringify(x) : (x as { id?: string }).id ?? 'default');
      const list = [...((a[k] as unknown[]) ?? [])];
      for (const x of v as unknown[]) {
        const i = list.findIndex((y) => ident(y) === ident(x));
        if (i >= 0) list[i] = x; else list.push(x);
      }
      out[k] = list;
    } else if (k === 'inherits') {
      out[k] = [...((a.inherits) ?? []), ...(v as string[])];
    } else out[k] = v;
  }
  return out as BakeTarget;
}

/** A file's blocks, whatever its format: HCL via hcl2json (`{type: {name: [body]}}`), JSON as written. */
function blocksOf(doc: Record<string, unknown>, type: string): [string, Record<string, unknown>][] {
  const section = doc[type];
  if (section === undefined) return [];
  if (!section || typeof section !== 'object' || Array.isArray(section)) throw new BakeError(`invalid "${type}" section`);
  const out: [string, Record<string, unknown>][] = [];
  for (const [name, bodies] of Object.entries(section as Record<string, unknown>)) {
    for (const body of Array.isArray(bodies) ? bodies : [bodies]) out.push([name, (body ?? {}) as Record<string, unknown>]);
  }
  return out;
}

interface ParsedFile {
  name: string;
  exprs: Expressions;
  doc: Record<string, unknown>;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(Buffer.from(c as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

async function readFiles(opts: LoadOptions): Promise<{ hcl: ParsedFile[]; compose: Config[] }> {
  const cwd = path.resolve(opts.cwd ?? '.');
  let names = opts.files ?? [];
  if (names.length === 0) {
    for (const f of DEFAULT_FILES) if (await fs.stat(path.join(cwd, f)).then((s) => s.isFile(), () => false)) names.push(f);
    if (names.length === 0) throw new BakeError(`couldn't find a bake definition file (${DEFAULT_FILES.join(', ')}) in ${cwd}`);
  } else names = [...names];
  const hcl: ParsedFile[] = [];
  const compose: Config[] = [];
  for (const name of names) {
    const file = path.resolve(cwd, name);
    const text = await (name === '-' ? readStdin() : fs.readFile(file, 'utf8')).catch((e: NodeJS.ErrnoException) => {
      throw new BakeError(`failed to read ${name}: ${e.code === 'ENOENT' ? 'no such file or directory' : e.message}`);
    });
    const base = path.basename(name);
    if (/\.ya?ml$/i.test(base) || (!/\.(json|hcl)$/i.test(base) && isComposeFile(text))) {
      compose.push(await composeToBake(text, name, { cwd, env: opts.env ?? process.env, dir: path.dirname(file) }));
      continue;
    }
    let doc: Record<string, unknown>;
    if (/\.json$/i.test(base) || (!/\.hcl$/i.test(base) && /^\s*\{/.test(text))) {
      try {
        doc = JSON.parse(text) as Record<string, unknown>;
      } catch (e) {
        throw new BakeError(`${name}: invalid JSON: ${(e as Error).message}`);
      }
    } else doc = await parseHcl(base, text);
    const exprs = new Expressions(name);
    await exprs.prepare(doc);
    hcl.push({ name, exprs, doc });
  }
  return { hcl, compose };
}

/** Variables, functions and blocks of the HCL/JSON files, evaluated. */
function evaluate(files: ParsedFile[], env: Record<string, string | undefined>): Config {
  // Variables: declared defaults (a later file's declaration wins), overridden by the environment.
  const vars = new Map<string, { file: ParsedFile; raw: unknown; hasDefault: boolean; validation: Record<string, unknown>[] }>();
  const fns = new Map<string, { file: ParsedFile; params: string[]; variadic?: string; result: unknown }>();
  const attrs = new Map<string, { file: ParsedFile; raw: unknown }>();
  const BLOCKS = new Set(['variable', 'function', 'target', 'group']);
  for (const file of files) {
    for (const [name, body] of blocksOf(file.doc, 'variable')) {
      const validation = (Array.isArray(body.validation) ? body.validation : body.validation ? [body.validation] : []) as Record<string, unknown>[];
      vars.set(name, { file, raw: body.default ?? null, hasDefault: 'default' in body, validation });
    }
    for (const [name, body] of blocksOf(file.doc, 'function')) {
      const names = (v: unknown) => (Array.isArray(v) ? v : v === undefined ? [] : [v]).map((p) => String(p).replace(/^\$\{(.*)\}$/, '$1'));
      fns.set(name, { file, params: names(body.params), variadic: names(body.variadic_params)[0], result: body.result });
    }
    for (const [k, v] of Object.entries(file.doc)) if (!BLOCKS.has(k)) attrs.set(k, { file, raw: v });
  }

  const values = new Map<string, Value>();
  const evaluating = new Set<string>();
  // `target.NAME.ATTR`: a target block's own attributes (as written, before inherits), evaluated when used.
  const targetBodies = new Map<string, { file: ParsedFile; body: Record<string, unknown> }[]>();
  for (const file of files) {
    for (const [name, body] of blocksOf(file.doc, 'target')) {
      if (body.matrix === undefined) targetBodies.set(name, [...(targetBodies.get(name) ?? []), { file, body }]);
    }
  }
  const targetRefs: Record<string, Value> = {};
  const targetValues = new Map<string, Value>();
  for (const name of targetBodies.keys()) {
    Object.defineProperty(targetRefs, name, {
      enumerable: true,
      get: () => {
        if (targetValues.has(name)) return targetValues.get(name);
        const key = `target.${name}`;
        if (evaluating.has(key)) throw new BakeError(`target "${name}" refers to itself`);
        evaluating.add(key);
        try {
          const out: Record<string, Value> = {};
          for (const { file, body } of targetBodies.get(name)!) Object.assign(out, file.exprs.value(body, scope) as Record<string, Value>);
          targetValues.set(name, out);
          return out;
        } finally {
          evaluating.delete(key);
        }
      },
    });
  }
  const scope: Scope = {
    lookup(name) {
      if (values.has(name)) return values.get(name);
      if (name === 'target' && !vars.has(name) && !attrs.has(name)) return targetRefs;
      const v = vars.get(name);
      const a = attrs.get(name);
      if (!v && !a) return undefined;
      if (evaluating.has(name)) throw new BakeError(`variable "${name}" refers to itself`);
      evaluating.add(name);
      try {
        let value: Value;
        if (v) {
          const def = v.file.exprs.value(v.raw, scope);
          const fromEnv = env[name];
          value = fromEnv !== undefined ? fromEnvValue(name, fromEnv, def) : def;
        } else value = a!.file.exprs.value(a!.raw, scope);
        values.set(name, value);
        // buildx's validation blocks: a condition that does not hold fails with its error_message.
        for (const rule of v?.validation ?? []) {
          if (v!.file.exprs.value(rule.condition, scope) === false) {
            throw new BakeError(`variable "${name}": ${rule.error_message !== undefined ? asString(v!.file.exprs.value(rule.error_message, scope)) : 'validation failed'}`);
          }
        }
        return value;
      } finally {
        evaluating.delete(name);
      }
    },
    fn(name) {
      const f = fns.get(name);
      if (!f) return stdlibScope.fn(name);
      const call: Fn = (...args) => {
        if (args.length < f.params.length || (!f.variadic && args.length > f.params.length)) {
          throw new Error(`expected ${f.params.length} arguments, got ${args.length}`);
        }
        const bound: Record<string, Value> = Object.fromEntries(f.params.map((p, i) => [p, args[i]]));
        if (f.variadic) bound[f.variadic] = args.slice(f.params.length);
        return f.file.exprs.value(f.result, childScope(scope, bound));
      };
      return call;
    },
  };

  const config: Config = { groups: new Map(), targets: new Map() };
  for (const file of files) {
    for (const [name, body] of blocksOf(file.doc, 'group')) {
      const g = file.exprs.value(body, scope) as Record<string, Value>;
      const targets = (Array.isArray(g.targets) ? g.targets : []).map(asString);
      const prev = config.groups.get(name);
      config.groups.set(name, { ...(g.description ? { description: asString(g.description) } : prev?.description ? { description: prev.description } : {}), targets: prev ? [...new Set([...prev.targets, ...targets])] : targets });
    }
    for (const [name, body] of blocksOf(file.doc, 'target')) {
      const expanded = expandMatrix(name, body, file, scope);
      // As buildx: a block whose targets have other names (a matrix) is also a group of them, by its name.
      const renamed = [...new Set(expanded.map(([n]) => n))];
      if (renamed.length !== 1 || renamed[0] !== name) {
        const prev = config.groups.get(name);
        config.groups.set(name, { targets: prev ? [...new Set([...prev.targets, ...renamed])] : renamed });
      }
      for (const [tname, t] of expanded) {
        if (!NAME_RE.test(tname)) throw new BakeError(`invalid target name "${tname}": only letters, digits, "_" and "-"`);
        const prev = config.targets.get(tname);
        config.targets.set(tname, prev ? mergeTarget(prev, t) : t);
      }
    }
  }
  return config;
}

/** A variable's value from the environment, typed as its default (buildx parses numbers and bools). */
function fromEnvValue(name: string, s: string, def: Value): Value {
  if (typeof def === 'number') {
    if (s.trim() === '' || Number.isNaN(Number(s))) throw new BakeError(`variable "${name}": "${s}" from the environment is not a number`);
    return Number(s);
  }
  if (typeof def === 'boolean') {
    if (!/^(1|0|t|f|true|false)$/i.test(s)) throw new BakeError(`variable "${name}": "${s}" from the environment is not a bool`);
    return /^(1|t|true)$/i.test(s);
  }
  if (def !== null && typeof def === 'object') {
    try {
      return JSON.parse(s) as Value;
    } catch {
      throw new BakeError(`variable "${name}": "${s}" from the environment is not JSON`);
    }
  }
  return s;
}

/** A target block, once per combination of its `matrix` values (named by its `name`), or once. */
function expandMatrix(name: string, body: Record<string, unknown>, file: ParsedFile, scope: Scope): [string, BakeTarget][] {
  if (body.matrix === undefined) {
    const v = file.exprs.value(body, scope) as Record<string, Value>;
    return [[name, toTarget(name, v)]];
  }
  const matrix = file.exprs.value(body.matrix, scope);
  if (!matrix || typeof matrix !== 'object' || Array.isArray(matrix)) throw new BakeError(`target "${name}": matrix must be a map of lists`);
  let combos: Record<string, Value>[] = [{}];
  for (const [k, vals] of Object.entries(matrix)) {
    if (!Array.isArray(vals)) throw new BakeError(`target "${name}": matrix value "${k}" must be a list`);
    combos = combos.flatMap((c) => vals.map((v) => ({ ...c, [k]: v })));
  }
  if (body.name === undefined && combos.length > 1) throw new BakeError(`target "${name}": a matrix needs a "name" to tell its targets apart`);
  return combos.map((c) => {
    const s = childScope(scope, c);
    const tname = body.name === undefined ? name : asString(file.exprs.value(body.name, s));
    const { matrix: _m, name: _n, ...rest } = body;
    return [tname, toTarget(tname, file.exprs.value(rest, s) as Record<string, Value>)] as [string, BakeTarget];
  });
}

/** Reads the bake files into groups and targets, before any target is resolved. */
async function loadConfig(opts: LoadOptions): Promise<Config> {
  const { hcl, compose } = await readFiles(opts);
  const config: Config = { groups: new Map(), targets: new Map() };
  // Compose files first, as buildx merges them before the HCL/JSON ones.
  for (const c of compose) mergeConfig(config, c);
  mergeConfig(config, evaluate(hcl, { ...(opts.env ?? process.env), ...opts.vars }));
  return config;
}

function mergeConfig(into: Config, from: Config): void {
  for (const [k, g] of from.groups) {
    const prev = into.groups.get(k);
    into.groups.set(k, prev ? { ...prev, ...g, targets: [...new Set([...prev.targets, ...g.targets])] } : g);
  }
  for (const [k, t] of from.targets) into.targets.set(k, into.targets.has(k) ? mergeTarget(into.targets.get(k)!, t) : t);
}

/** Go's path.Match for target patterns (`*`, `?`, `[...]`). */
function globMatch(pattern: string, name: string): boolean {
  const re = pattern.replace(/[.+^${}()|\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]');
  return new RegExp(`^${re}$`).test(name);
}

interface Override { value?: string; list: string[]; append: boolean }

function parseOverrides(set: string[], config: Config): Map<string, Map<string, Override>> {
  const out = new Map<string, Map<string, Override>>();
  for (const s of set) {
    const eq = s.indexOf('=');
    const lhs = eq < 0 ? s : s.slice(0, eq);
    const append = lhs.endsWith('+');
    const keys = lhs.replace(/\+$/, '').split('.');
    if (keys.length < 2) throw new BakeError(`invalid override key ${lhs}, expected target.name`);
    const [pattern, key] = keys;
    const sub = keys.slice(2).join('.');
    if (eq < 0 && key !== 'args') throw new BakeError(`invalid override ${s}, expected target.name=value`);
    if ((key === 'args' || key === 'labels' || key === 'contexts') && !sub) throw new BakeError(`invalid key ${lhs}, ${key} requires name`);
    let value = eq < 0 ? undefined : s.slice(eq + 1);
    if (value === undefined && key === 'args') value = process.env[sub];
    if (value === undefined) continue;
    const names = [...config.targets.keys()].filter((n) => globMatch(pattern, n));
    // A group's name stands for its targets.
    for (const g of [...config.groups.keys()].filter((n) => globMatch(pattern, n))) names.push(...resolveGroup(config, g).targets);
    if (names.length === 0 && !/[*?[]/.test(pattern)) throw new BakeError(`could not find any target matching '${pattern}'`);
    for (const name of new Set(names)) {
      const m = out.get(name) ?? new Map<string, Override>();
      out.set(name, m);
      const okey = sub ? `${key}.${sub}` : key;
      const o = m.get(okey) ?? { list: [], append: false };
      o.value = value;
      o.list.push(value);
      o.append = append;
      m.set(okey, o);
    }
  }
  return out;
}

function applyOverrides(name: string, t: BakeTarget, overrides: Map<string, Override> | undefined): BakeTarget {
  if (!overrides) return t;
  const out: Record<string, unknown> = { ...t };
  for (const [okey, o] of overrides) {
    const [key, sub] = [okey.split('.')[0], okey.split('.').slice(1).join('.')];
    const value = o.value!;
    const listOf = (field: string, items: unknown[]) => { out[field] = o.append ? [...((out[field] as unknown[]) ?? []), ...items] : items; };
    switch (key) {
      case 'args': case 'labels': case 'contexts':
        out[key] = { ...(out[key] as Record<string, string>), [sub]: value };
        break;
      case 'tags': case 'no-cache-filter': case 'annotations': case 'entitlements': case 'ulimits':
        listOf(key, o.list.flatMap((v) => (key === 'no-cache-filter' ? v.split(',') : [v])));
        break;
      case 'platform':
        listOf('platforms', o.list.flatMap((v) => v.split(',')));
        break;
      case 'output': case 'cache-to': case 'cache-from': case 'attest':
        listOf(key, o.list.map((v) => parseEntry(v, key === 'cache-from' ? 'ref' : key === 'output' ? 'type' : undefined)));
        break;
      case 'secrets':
        listOf('secret', toSecrets(o.list));
        break;
      case 'ssh':
        listOf('ssh', toSsh(o.list));
        break;
      case 'no-cache': case 'pull':
        if (!/^(1|0|t|f|true|false)$/i.test(value)) throw new BakeError(`invalid value ${value} for boolean key ${key}`);
        out[key] = /^(1|t|true)$/i.test(value);
        break;
      case 'context': case 'dockerfile': case 'target': case 'network': case 'shm-size': case 'call': case 'description': case 'dockerfile-inline':
        out[key] = value;
        break;
      default:
        throw new BakeError(`target "${name}": unknown key: ${key}`);
    }
  }
  return out as BakeTarget;
}

function resolveGroup(config: Config, name: string, seen = new Set<string>()): { targets: string[]; groups: string[] } {
  const g = config.groups.get(name);
  if (!g) return { targets: [name], groups: [] };
  if (seen.has(name)) return { targets: [], groups: [] };
  seen.add(name);
  const targets: string[] = [];
  const groups = [name];
  for (const t of g.targets) {
    const r = resolveGroup(config, t, seen);
    targets.push(...r.targets);
    groups.push(...r.groups);
  }
  return { targets: [...new Set(targets)], groups: [...new Set(groups)] };
}

function resolveTarget(config: Config, name: string, overrides: Map<string, Map<string, Override>>, chain: string[] = []): BakeTarget {
  const t = config.targets.get(name);
  if (!t) throw new BakeError(`failed to find target ${name}`);
  if (chain.includes(name)) throw new BakeError(`target ${name}: inherits loop (${[...chain, name].join(' -> ')})`);
  let base: BakeTarget = {};
  for (const parent of t.inherits ?? []) base = mergeTarget(base, resolveTarget(config, parent, overrides, [...chain, name]));
  const { inherits: _i, ...own } = t;
  let merged = mergeTarget(base, own);
  merged = applyOverrides(name, merged, overrides.get(name));
  return normalize(merged);
}

function normalize(t: BakeTarget): BakeTarget {
  const out: Record<string, unknown> = {};
  for (const k of KEY_ORDER) {
    let v = t[k] as unknown;
    if (v === undefined) continue;
    if (k === 'inherits') continue;
    if (Array.isArray(v) && LIST_KEYS.has(k)) v = [...new Set(v as string[])];
    if (k === 'contexts') {
      v = Object.fromEntries(Object.entries(v as Record<string, string>).filter(([, x]) => x !== '' && x !== null));
      if (Object.keys(v as object).length === 0) continue;
    }
    if (k === 'network' && v === 'host') out.entitlements = [...new Set([...((t.entitlements) ?? []), 'network.host'])];
    out[k] = v;
  }
  return out as BakeTarget;
}

/** Reads the bake files and resolves the requested targets (buildx's ReadTargets). */
export async function resolveBake(opts: ResolveOptions): Promise<BakeDefinition> {
  const config = await loadConfig(opts);
  const requested = opts.targets?.length ? opts.targets : ['default'];
  const names: string[] = [];
  for (const r of requested) {
    if (!/[*?[]/.test(r)) { names.push(r); continue; }
    const matched = [...config.groups.keys(), ...config.targets.keys()].filter((n) => globMatch(r, n));
    if (matched.length === 0) throw new BakeError(`could not find any target matching '${r}'`);
    names.push(...matched);
  }
  const overrides = parseOverrides(opts.set ?? [], config);
  const target: Record<string, BakeTarget> = {};
  const group: Record<string, BakeGroup> = {};
  for (const n of new Set(names)) {
    const { targets, groups } = resolveGroup(config, n);
    if (n === 'default' && !config.groups.has('default') && !config.targets.has('default')) {
      throw new BakeError('failed to find target default');
    }
    for (const t of targets) {
      const resolved = resolveTarget(config, t, overrides);
      target[t] = { ...resolved, context: resolved.context ?? '.', dockerfile: resolved.dockerfile || 'Dockerfile' };
      target[t] = normalize(target[t]);
    }
    for (const g of groups) group[g] = config.groups.get(g)!;
  }
  // Targets other targets use as a context (`target:NAME`) are built too, exporting nothing unless asked for
  // (buildx's loadLinks).
  const link = (name: string, chain: string[]): void => {
    for (const v of Object.values(target[name].contexts ?? {})) {
      if (!v.startsWith('target:')) continue;
      const other = v.slice('target:'.length);
      if (other === name) throw new BakeError(`target ${other} cannot link to itself`);
      if (chain.includes(other)) throw new BakeError(`infinite loop from ${name} to ${other}`);
      if (!target[other]) {
        const resolved = resolveTarget(config, other, overrides);
        target[other] = normalize({ ...resolved, context: resolved.context ?? '.', dockerfile: resolved.dockerfile || 'Dockerfile', output: [{ type: 'cacheonly' }] });
      }
      link(other, [...chain, name]);
    }
  };
  for (const n of Object.keys(target)) link(n, []);
  // As buildx: the requested names make up the "default" group unless it was asked for itself.
  for (const n of new Set(names)) {
    if (n === 'default') continue;
    group.default ??= { targets: [] };
    group.default = { ...group.default, targets: [...new Set([...group.default.targets, n])].sort() };
  }
  return { group: sortKeys(group), target: sortKeys(target) };
}

function sortKeys<T>(o: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.keys(o).sort().map((k) => [k, o[k]]));
}

/** `--list targets`: the file's targets and groups (not `_private` ones), as buildx lists them. */
export async function listBake(opts: LoadOptions, format: 'table' | 'json' = 'table'): Promise<string> {
  const config = await loadConfig(opts);
  const rows: { name: string; description?: string; group?: boolean }[] = [];
  for (const [name, t] of config.targets) rows.push({ name, ...(t.description ? { description: t.description } : {}) });
  for (const [name, g] of config.groups) {
    const names = [...g.targets].sort().join(', ');
    const description = g.description ? (names ? `${g.description} (${names})` : g.description) : names;
    rows.push({ name, ...(description ? { description } : {}), group: true });
  }
  const shown = rows.filter((r) => !r.name.startsWith('_')).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  if (format === 'json') return JSON.stringify(shown, null, 2) + '\n';
  // Go's tabwriter (minwidth 1, tabwidth 8, padding 1, padded with tabs).
  const cells = [['TARGET', 'DESCRIPTION'], ...shown.map((r) => [r.name, r.description ?? ''])];
  const width = Math.ceil((Math.max(...cells.map((c) => c[0].length)) + 1) / 8) * 8;
  return cells.map(([a, b]) => a + '\t'.repeat(Math.ceil((width - a.length) / 8)) + b + '\n').join('');
}

/** `--print`: the resolved definition as buildx prints it (Go's JSON: map keys sorted, two-space indent). */
export function formatBake(def: BakeDefinition): string {
  const sortDeep = (v: unknown, top = false): unknown => {
    if (Array.isArray(v)) return v.map((x) => sortDeep(x));
    if (v && typeof v === 'object') {
      const keys = top ? Object.keys(v) : Object.keys(v).sort();
      return Object.fromEntries(keys.map((k) => [k, sortDeep((v as Record<string, unknown>)[k])]));
    }
    return v;
  };
  // As buildx's Target.MarshalJSON: values that may hold `${` are escaped, so the output reads back as written.
  const esc = (x: unknown): unknown => (typeof x === 'string' ? x.replace(/\$\{/g, () => '$${').replace(/%\{/g, () => '%%{') : x);
  const escaped = (k: string, v: unknown): unknown => {
    if (k === 'annotations') return (v as string[]).map(esc);
    if (k === 'dockerfile-inline') return esc(v);
    if (k === 'args' || k === 'labels' || k === 'extra-hosts') return Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([a, b]) => [a, esc(b)]));
    return v;
  };
  const target = Object.fromEntries(Object.entries(def.target).map(([n, t]) => [n, Object.fromEntries(Object.entries(t).map(([k, v]) => [k, sortDeep(escaped(k, v))]))]));
  const group = Object.fromEntries(Object.entries(def.group).map(([n, g]) => [n, { ...(g.description ? { description: g.description } : {}), targets: g.targets }]));
  // Go's omitempty: no "group" key when there is no group.
  return JSON.stringify(Object.keys(group).length ? { group, target } : { target }, null, 2).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
