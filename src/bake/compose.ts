// Compose files as bake definitions, as buildx reads them: each service with a `build` section is a
// target (named after the service), all of them in the "default" group; `image` is its tag. Variables
// (`${VAR}`, `${VAR:-default}`, `$$`) come from the environment and the `.env` file beside the compose file.
import fs from 'node:fs/promises';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { BakeError } from './hcl.js';
import type { BakeGroup, BakeTarget, Entry } from './config.js';
import { mergeTarget, parseEntry, toSecrets, toSsh } from './config.js';

export function isComposeFile(text: string): boolean {
  try {
    const doc = parseYaml(text) as unknown;
    return !!doc && typeof doc === 'object' && 'services' in doc;
  } catch {
    return false;
  }
}

/** Compose's interpolation: `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?err}`, `$$`. */
function interpolate(s: string, env: Record<string, string | undefined>, file: string): string {
  return s.replace(/\$(\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))/g, (m, dollar: string, name?: string, op?: string, arg?: string, bare?: string) => {
    if (dollar === '$') return '$';
    const key = name ?? bare!;
    const v = env[key];
    const unset = v === undefined || (op?.startsWith(':') && v === '');
    if (op?.endsWith('-')) return unset ? arg ?? '' : v!;
    if (op?.endsWith('?')) { if (unset) throw new BakeError(`${file}: required variable ${key} is missing a value${arg ? `: ${arg}` : ''}`); return v!; }
    if (op?.endsWith('+')) return unset ? '' : arg ?? '';
    return v ?? '';
  });
}

function walk(v: unknown, f: (s: string) => string): unknown {
  if (typeof v === 'string') return f(v);
  if (Array.isArray(v)) return v.map((x) => walk(x, f));
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x, f)]));
  return v;
}

async function dotEnv(dir: string): Promise<Record<string, string>> {
  const text = await fs.readFile(path.join(dir, '.env'), 'utf8').catch(() => '');
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*=\s*(.*?)\s*$/.exec(line);
    if (!m || line.trimStart().startsWith('#')) continue;
    out[m[1]] = m[2].replace(/^(['"])(.*)\1$/, '$2');
  }
  return out;
}

/** A list (`["K=V"]`) or map (`{K: V}`) of compose as a map; a bare `K` in a list takes the environment's value. */
function kvMap(v: unknown, env: Record<string, string | undefined>): Record<string, string | null> {
  if (v === undefined || v === null) return {};
  if (Array.isArray(v)) {
    const out: Record<string, string | null> = {};
    for (const item of v.map(String)) {
      const eq = item.indexOf('=');
      if (eq < 0) { const e = env[item]; if (e !== undefined) out[item] = e; } else out[item.slice(0, eq)] = item.slice(eq + 1);
    }
    return out;
  }
  return Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, x === null ? env[k] ?? null : String(x)]));
}

const strings = (v: unknown): string[] => (v === undefined || v === null ? [] : (Array.isArray(v) ? v : [v]).map(String));

/** buildx's `x-bake` extension of a service's build section: bake attributes compose has no field for. */
function xbake(t: BakeTarget, ext: unknown, file: string, svc: string): BakeTarget {
  if (ext === undefined || ext === null) return t;
  if (typeof ext !== 'object' || Array.isArray(ext)) throw new BakeError(`${file}: service "${svc}": x-bake must be a map`);
  const x = ext as Record<string, unknown>;
  const add: BakeTarget = {};
  const out: BakeTarget = { ...t };
  if (x.tags !== undefined) out.tags = [...new Set([...(t.tags ?? []), ...strings(x.tags)])];
  if (x.platforms !== undefined) out.platforms = [...new Set([...(t.platforms ?? []), ...strings(x.platforms)])];
  if (x['cache-from'] !== undefined) add['cache-from'] = strings(x['cache-from']).map((s) => parseEntry(s, 'ref'));
  if (x['cache-to'] !== undefined) out['cache-to'] = [...(t['cache-to'] ?? []), ...strings(x['cache-to']).map((s) => parseEntry(s))];
  if (x.secret !== undefined) add.secret = toSecrets(strings(x.secret));
  if (x.ssh !== undefined) add.ssh = toSsh(strings(x.ssh));
  if (x.output !== undefined) out.output = [...(t.output ?? []), ...strings(x.output).map((s) => parseEntry(s, 'type'))];
  if (x.pull !== undefined) out.pull = x.pull === true || x.pull === 'true';
  if (x['no-cache'] !== undefined) out['no-cache'] = x['no-cache'] === true || x['no-cache'] === 'true';
  if (x['no-cache-filter'] !== undefined) out['no-cache-filter'] = strings(x['no-cache-filter']);
  if (x.contexts !== undefined) add.contexts = Object.fromEntries(Object.entries(x.contexts as Record<string, unknown>).map(([k, v]) => [k, String(v)]));
  return mergeTarget(out, add);
}

export async function composeToBake(text: string, name: string, opts: { cwd: string; dir: string; env: Record<string, string | undefined> }): Promise<{ groups: Map<string, BakeGroup>; targets: Map<string, BakeTarget> }> {
  let doc: Record<string, unknown>;
  try {
    doc = parseYaml(text) as Record<string, unknown>;
  } catch (e) {
    throw new BakeError(`${name}: invalid YAML: ${(e as Error).message.split('\n')[0]}`);
  }
  if (!doc || typeof doc !== 'object' || !doc.services || typeof doc.services !== 'object') {
    throw new BakeError(`${name}: not a compose file (no "services")`);
  }
  const env = { ...(await dotEnv(opts.dir)), ...opts.env };
  doc = walk(doc, (s) => interpolate(s, env, name)) as Record<string, unknown>;
  // Relative paths of the compose file are relative to its directory; bake's contexts to the working directory.
  const rel = (p: string) => (/^[a-z][a-z0-9+.-]*:\/\//i.test(p) || p.startsWith('git@') || path.isAbsolute(p) ? p : path.relative(opts.cwd, path.resolve(opts.dir, p)) || '.');
  const secretsDef = (doc.secrets ?? {}) as Record<string, { file?: string; environment?: string }>;
  const targets = new Map<string, BakeTarget>();
  for (const [svc, body] of Object.entries(doc.services as Record<string, Record<string, unknown>>)) {
    const b = body?.build;
    if (b === undefined || b === null) continue;
    const build = (typeof b === 'string' ? { context: b } : b) as Record<string, unknown>;
    const tname = svc.replace(/[^a-zA-Z0-9_-]/g, '_');
    const t: BakeTarget = {};
    t.context = rel(String(build.context ?? '.'));
    if (build.dockerfile !== undefined) t.dockerfile = String(build.dockerfile);
    if (build.dockerfile_inline !== undefined) t['dockerfile-inline'] = String(build.dockerfile_inline);
    if (build.additional_contexts !== undefined) {
      t.contexts = Object.fromEntries(Object.entries(kvMap(build.additional_contexts, env)).map(([k, v]) => [k, v && !v.includes('://') && !v.startsWith('target:') ? rel(v) : v ?? '']));
    }
    const args = kvMap(build.args, env);
    if (Object.keys(args).length) t.args = args;
    const labels = kvMap(build.labels, env);
    if (Object.keys(labels).length) t.labels = labels;
    const tags = [...(body.image ? [String(body.image)] : []), ...strings(build.tags)];
    if (tags.length) t.tags = tags;
    if (build.target !== undefined) t.target = String(build.target);
    const cacheFrom: Entry[] = strings(build.cache_from).map((s) => parseEntry(s, 'ref'));
    if (cacheFrom.length) t['cache-from'] = cacheFrom;
    const cacheTo: Entry[] = strings(build.cache_to).map((s) => parseEntry(s));
    if (cacheTo.length) t['cache-to'] = cacheTo;
    const platforms = strings(build.platforms);
    if (platforms.length) t.platforms = platforms;
    if (build.network !== undefined) t.network = String(build.network);
    if (build.no_cache !== undefined) t['no-cache'] = build.no_cache === true || build.no_cache === 'true';
    if (build.pull !== undefined) t.pull = build.pull === true || build.pull === 'true';
    if (build.shm_size !== undefined) t['shm-size'] = String(build.shm_size);
    if (build.extra_hosts !== undefined) t['extra-hosts'] = kvMap(Array.isArray(build.extra_hosts) ? (build.extra_hosts as string[]).map((h) => h.replace(/^([^:=]+)[:=]/, '$1=')) : build.extra_hosts, env);
    if (build.ssh !== undefined) {
      t.ssh = (Array.isArray(build.ssh) ? build.ssh.map(String) : Object.entries(build.ssh as Record<string, string>).map(([k, v]) => `${k}=${v}`))
        .map((s) => { const eq = s.indexOf('='); return eq < 0 ? { id: s } : { id: s.slice(0, eq), paths: [s.slice(eq + 1)] }; });
    }
    if (build.secrets !== undefined) {
      t.secret = (build.secrets as unknown[]).map((s) => {
        const src = typeof s === 'string' ? s : String((s as { source: string }).source);
        const id = typeof s === 'string' ? s : String((s as { target?: string }).target ?? src);
        const def = secretsDef[src];
        if (!def) throw new BakeError(`${name}: service "${svc}" uses undefined secret "${src}"`);
        return def.environment ? { id, env: def.environment } : { id, src: path.resolve(opts.dir, String(def.file)) };
      });
    }
    targets.set(tname, xbake(t, build['x-bake'], name, svc));
  }
  const groups = new Map<string, BakeGroup>();
  if (targets.size) groups.set('default', { targets: [...targets.keys()] });
  return { groups, targets };
}
