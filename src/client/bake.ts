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
 * One display for all targets: a step they share is shown once (the build that runs it reports it; the
 * others' reports of the same step, a cache hit or a base image they both load, are dropped).
 */
function sharedDisplay(w: FullProgressWriter): FullProgressWriter {
  const started = new Set<string>();
  const finished = new Set<string>();
  const finish = (id: string): boolean => {
    if (finished.has(id)) return false;
    finished.add(id);
    return true;
  };
  return {
    start: (v) => { if (!started.has(v.id)) { started.add(v.id); w.start(v); } },
    done: (id, o) => { if (finish(id)) w.done(id, o); },
    error: (id, m, c) => { if (finish(id)) w.error(id, m, c); },
    canceled: (id, c) => { if (finish(id)) w.canceled(id, c); },
    log: (id, s, chunk, ts) => w.log(id, s, chunk, ts),
    status: (s) => w.status(s),
    warning: (x) => w.warning(x),
    tail: (id, n) => w.tail(id, n),
  };
}

/**
 * A target's view of the shared display: its own internal steps (loading its Dockerfile, the metadata of
 * its base images, ...) are named after it, as buildx names them (`[one internal] load build definition`).
 */
function targetDisplay(target: string, w: FullProgressWriter): FullProgressWriter {
  const id = (x: string) => (x.startsWith('internal:') ? `${target}/${x}` : x);
  return {
    start: (v) => w.start({ ...v, id: id(v.id), name: v.id.startsWith('internal:') ? v.name.replace(/^\[([^\]]*\b)?internal\]/, (_m, p: string | undefined) => `[${target} ${p ?? ''}internal]`) : v.name }),
    done: (x, o) => w.done(id(x), o),
    error: (x, m, c) => w.error(id(x), m, c),
    canceled: (x, c) => w.canceled(id(x), c),
    log: (x, s, chunk, ts) => w.log(id(x), s, chunk, ts),
    status: (st) => w.status({ ...st, vertex: id(st.vertex) }),
    warning: (x) => w.warning({ ...x, vertex: id(x.vertex) }),
    tail: (x, n) => w.tail(id(x), n),
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
  const progress = sharedDisplay(completeWriter(opts.progress ?? new PlainProgress(process.stderr)));
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
        return await build({ ...b, group, progress: names.length > 1 ? targetDisplay(name, progress) : progress, signal: abort.signal, onConverted: (c) => converted.get(name)!.resolve(c) });
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
