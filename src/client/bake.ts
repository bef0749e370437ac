// `bake()`: builds the targets of bake files (docker-bake.hcl/.json, compose) as one solve. Each target is
// converted and exported as `build()` would, on one shared worker and session (a BuildGroup): an op that
// several targets have in common (same cache key) runs once, independent targets run side by side, each
// target gets its own outputs.
import path from 'node:path';
import { build, BuildError, defaultRoot, openBuildGroup, type BuildOptions, type BuildResult, type LinkedContext } from './build.js';
import { isRemoteContext } from './remote.js';
import { PlainProgress, completeWriter, type FullProgressWriter } from '../progress/printer.js';
import type { ProgressWriter } from '../progress/writer.js';
import type { RegistryHostConfig } from '../registry/config.js';
import { resolveBake, type BakeDefinition, type BakeTarget, type Entry, type ResolveOptions } from '../bake/config.js';
import { BakeError } from '../bake/hcl.js';

export { resolveBake, formatBake, DEFAULT_FILES, type BakeDefinition, type BakeTarget, type BakeGroup } from '../bake/config.js';

export interface BakeOptions extends ResolveOptions {
  /** `--push`: image outputs pushed; a target without outputs gets `type=image,push=true`. */
  push?: boolean;
  /** `--load`: a target without outputs gets `type=docker`. */
  load?: boolean;
  /** `--no-cache` for every target. */
  noCache?: boolean;
  /** `--pull` for every target. */
  pull?: boolean;
  /** `--provenance` / `--sbom` for every target (as build()'s). */
  provenance?: boolean | string;
  sbom?: boolean | string;
  root?: string;
  ociRuntime?: string;
  insecureRegistries?: string[];
  registries?: Record<string, RegistryHostConfig>;
  maxParallelism?: number;
  progress?: ProgressWriter;
  signal?: AbortSignal;
}

export interface BakeResult {
  definition: BakeDefinition;
  /** Each target's build result, by target name. */
  targets: Record<string, BuildResult>;
}

const csv = (e: Entry, first = 'type'): string => {
  const keys = Object.keys(e).sort((a, b) => (a === first ? -1 : b === first ? 1 : 0));
  return keys.map((k) => {
    const v = e[k];
    return /[,"]/.test(v) ? `${k}="${v.replace(/"/g, '""')}"` : `${k}=${v}`;
  }).join(',');
};

/** The build() options of one resolved target; relative paths are relative to `cwd` (as buildx's to its working directory). */
export function targetBuildOptions(name: string, t: BakeTarget, opts: BakeOptions): BuildOptions {
  const cwd = path.resolve(opts.cwd ?? '.');
  const ctx = t.context ?? '.';
  const remote = isRemoteContext(ctx) && !ctx.startsWith('.') && !ctx.startsWith('/');
  const context = remote ? ctx : path.resolve(cwd, ctx);
  const local = (p: string | undefined) => (p === undefined || p === '-' || path.isAbsolute(p) ? p : path.resolve(cwd, p));
  const withPath = (e: Entry, key: string): Entry => (e[key] !== undefined && (e.type === 'local' || e.type === 'tar' || e.type === 'oci' || e.type === 'docker') ? { ...e, [key]: local(e[key])! } : e);
  let outputs = (t.output ?? []).map((e) => withPath(e, 'dest'));
  if (opts.push && outputs.length) outputs = outputs.map((e) => (e.type === 'image' || e.type === 'registry' ? { ...e, push: 'true' } : e));
  const contexts: Record<string, string> = {};
  for (const [k, v] of Object.entries(t.contexts ?? {})) {
    if (v.startsWith('target:')) continue; // bake() links the other target's build (linkedContexts)
    contexts[k] = /^[a-z][a-z0-9+.-]*:\/\//i.test(v) || isRemoteContext(v) ? v : path.resolve(cwd, v);
  }
  const kv = (m: Record<string, string | null> | undefined) => (m ? Object.fromEntries(Object.entries(m).filter(([, v]) => v !== null)) as Record<string, string> : undefined);
  const dockerfile = t.dockerfile ?? 'Dockerfile';
  return {
    context,
    ...(t['dockerfile-inline'] !== undefined ? { dockerfile: t['dockerfile-inline'] } : { file: remote || path.isAbsolute(dockerfile) ? dockerfile : path.resolve(context, dockerfile) }),
    buildContexts: contexts,
    buildArgs: kv(t.args),
    labels: kv(t.labels),
    tags: t.tags,
    target: t.target,
    platform: t.platforms?.length ? t.platforms.join(',') : undefined,
    outputs: outputs.map((e) => csv(e)),
    push: opts.push && !t.output?.length ? true : undefined,
    load: opts.load && !t.output?.length ? true : undefined,
    cacheFrom: t['cache-from']?.map((e) => csv(withPath(e, 'src'))),
    cacheTo: t['cache-to']?.map((e) => csv(withPath(e, 'dest'))),
    secrets: t.secret?.map((s) => [s.id ? `id=${s.id}` : '', s.src ? `src=${local(s.src)}` : '', s.env ? `env=${s.env}` : ''].filter(Boolean).join(',')),
    ssh: t.ssh?.map((s) => (s.paths?.length ? `${s.id ?? 'default'}=${s.paths.map((p) => local(p)).join(',')}` : s.id ?? 'default')),
    noCache: opts.noCache || t['no-cache'] || undefined,
    pull: opts.pull || t.pull || undefined,
    noCacheFilter: t['no-cache-filter'],
    network: t.network,
    shmSize: t['shm-size'],
    ulimits: t.ulimits,
    addHosts: t['extra-hosts'] ? Object.entries(t['extra-hosts']).filter(([, v]) => v !== null).map(([h, ip]) => `${h}=${ip}`) : undefined,
    allow: t.entitlements,
    annotations: t.annotations ? Object.fromEntries(t.annotations.map((a) => [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)])) : undefined,
    attest: t.attest?.map((e) => csv(e)),
    provenance: opts.provenance,
    sbom: opts.sbom,
    call: t.call as BuildOptions['call'],
    root: opts.root,
    ociRuntime: opts.ociRuntime,
    insecureRegistries: opts.insecureRegistries,
    registries: opts.registries,
    maxParallelism: opts.maxParallelism,
  };
}

/**
 * One display for all targets, and each target's writer into it. A step several targets share (the same op
 * with the same cache key: it runs once) is shown once, by the target that reported it first; the others'
 * reports of it are dropped. The same op with another key in another target (the same COPY over another
 * context) is a different step: it gets an id of its own. Each target's internal steps (loading its
 * Dockerfile, its base images' metadata) are named after it, as buildx names them
 * (`[one internal] load build definition from Dockerfile`).
 */
function groupDisplay(w: FullProgressWriter): (target: string | undefined) => FullProgressWriter {
  const owners = new Map<string, { target?: string; cacheKey?: string }>();
  return (target) => {
    // This target's vertex ids as shown; undefined: another target shows that step, drop it here.
    const ids = new Map<string, string | undefined>();
    const shown = (x: string) => (ids.has(x) ? ids.get(x) : x);
    const forward = (x: string, f: (id: string) => void) => {
      const id = shown(x);
      if (id !== undefined) f(id);
    };
    return {
      start: (v) => {
        const internal = target !== undefined && v.id.startsWith('internal:');
        let id = internal ? `${target}/${v.id}` : v.id;
        const owner = owners.get(id);
        if (owner && owner.target !== target) {
          if (owner.cacheKey === v.cacheKey) { ids.set(v.id, undefined); return; }
          id = `${target}/${v.id}`;
        }
        owners.set(id, { target, cacheKey: v.cacheKey });
        ids.set(v.id, id);
        const name = internal ? v.name.replace(/^\[([^\]]*\b)?internal\]/, (_m, p: string | undefined) => `[${target} ${p ?? ''}internal]`) : v.name;
        w.start({ ...v, id, name });
      },
      done: (x, o) => forward(x, (id) => w.done(id, o)),
      error: (x, m, c) => forward(x, (id) => w.error(id, m, c)),
      canceled: (x, c) => forward(x, (id) => w.canceled(id, c)),
      log: (x, st, chunk, ts) => forward(x, (id) => w.log(id, st, chunk, ts)),
      status: (st) => forward(st.vertex, (id) => w.status({ ...st, vertex: id })),
      warning: (x) => forward(x.vertex, (id) => w.warning({ ...x, vertex: id })),
      tail: (x, n) => w.tail(shown(x) ?? x, n),
    };
  };
}

export async function bake(opts: BakeOptions): Promise<BakeResult> {
  const definition = await resolveBake(opts);
  const names = Object.keys(definition.target);
  const builds = names.map((n) => [n, targetBuildOptions(n, definition.target[n], opts)] as [string, BuildOptions]);
  // `target:NAME` contexts: each target's converted graph, for the targets that build on it.
  const converted = new Map<string, { promise: Promise<LinkedContext>; resolve(c: LinkedContext): void; reject(e: unknown): void }>();
  for (const n of names) {
    let resolve!: (c: LinkedContext) => void;
    let reject!: (e: unknown) => void;
    const promise = new Promise<LinkedContext>((res, rej) => { resolve = res; reject = rej; });
    promise.catch(() => undefined); // a failed target fails the bake; the targets waiting on it stop with it
    converted.set(n, { promise, resolve, reject });
  }
  for (const [n, b] of builds) {
    const links = Object.entries(definition.target[n].contexts ?? {}).filter(([, v]) => v.startsWith('target:'));
    if (links.length === 0) continue;
    b.linkedContexts = {};
    for (const [k, v] of links) {
      const other = v.slice('target:'.length);
      const ob = builds.find(([x]) => x === other)?.[1];
      // The other target's graph reads its context and named directories by their names in this build.
      if (!ob || ob.context !== b.context || Object.values(definition.target[other].contexts ?? {}).some((c) => !/^(docker-image|target):/.test(c))) {
        throw new BakeError(`target "${n}": context "${k}" from target "${other}" needs both targets to share one context directory and "${other}" to have no other local contexts (not supported yet)`);
      }
      b.linkedContexts[k] = converted.get(other)!.promise;
    }
  }
  const display = groupDisplay(completeWriter(opts.progress ?? new PlainProgress(process.stderr)));
  const progress = display(undefined);
  const root = path.resolve(opts.root ?? defaultRoot());
  const { group, end } = await openBuildGroup(root, opts, progress);
  // The first failure stops the other targets, as one solve would.
  const abort = new AbortController();
  const onOuter = () => abort.abort(opts.signal?.reason);
  opts.signal?.addEventListener('abort', onOuter, { once: true });
  let firstError: unknown;
  try {
    const results = await Promise.allSettled(builds.map(async ([name, b]) => {
      try {
        return await build({ ...b, group, progress: names.length > 1 ? display(name) : progress, signal: abort.signal, onConverted: (c) => converted.get(name)!.resolve(c) });
      } catch (e) {
        converted.get(name)!.reject(e);
        if (firstError === undefined) {
          // As buildx bake: the error names the target whose build failed.
          firstError = e instanceof BuildError && names.length > 1 ? Object.assign(new BuildError(`target ${name}: ${e.message}`, e.outputTail, { cause: e }), { details: e.details }) : e;
          abort.abort(e);
        }
        throw e;
      }
    }));
    if (firstError !== undefined) throw firstError;
    return { definition, targets: Object.fromEntries(results.map((r, i) => [names[i], (r as PromiseFulfilledResult<BuildResult>).value])) };
  } finally {
    opts.signal?.removeEventListener('abort', onOuter);
    await end();
  }
}
