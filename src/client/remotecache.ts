// --cache-from / --cache-to for a build: opens the import sources before the solve (an unreadable or
// unreachable one is a warning), and after the exports turns this build's results into records (mode=min:
// the steps whose results are the exported images' layer chains; mode=max: every step) and writes them to
// each destination. The formats and backends are in src/cache/remotecache/.
import type { Definition } from '../../solver/llb/definition.js';
import type { Digest, Op, Platform } from '../../solver/llb/ops.js';
import type { Worker, WorkerRef } from '../worker/worker.js';
import type { FullProgressWriter as ProgressWriter } from '../progress/printer.js';
import { parseReference } from '../registry/reference.js';
import type { LayerDesc } from '../exporter/image.js';
import { BlobNotFoundError, CorruptBlobError } from '../content/store.js';
import { RemoteCacheImporter, type CacheSource } from '../cache/remotecache/source.js';
import { openLocalCache, writeLocalCache } from '../cache/remotecache/local.js';
import { openRegistryCache, writeRegistryCache } from '../cache/remotecache/registry.js';
import { inlineConfig } from '../cache/remotecache/inline.js';
import type { CacheLayer, ResolvedRecord } from '../cache/remotecache/format.js';
import type { CacheFromSpec, CacheMode, CacheToSpec } from '../cache/remotecache/spec.js';
import { layerTimes, resultBlobs, type LayerVariant } from './export.js';

export type { CacheFromSpec, CacheToSpec } from '../cache/remotecache/spec.js';
export { parseCacheFrom, parseCacheTo } from '../cache/remotecache/spec.js';

const describeFrom = (s: CacheFromSpec) => (s.type === 'local' ? s.src! : s.ref!);

/** Network failures (as opposed to refusals) of a cache registry are warnings in either direction. */
function unreachable(e: unknown): boolean {
  return (e as { code?: string })?.code === 'REGISTRY_UNREACHABLE';
}

function warnLine(progress: ProgressWriter, id: string, message: string): void {
  progress.log(id, 'stderr', Buffer.from(`WARNING: ${message}\n`));
}

/** Opens every --cache-from source; each that cannot be read is a warning and contributes nothing. */
export async function importCaches(
  worker: Worker, specs: CacheFromSpec[], opts: { platforms: Platform[]; progress: ProgressWriter },
): Promise<RemoteCacheImporter | undefined> {
  if (specs.length === 0) return undefined;
  const vertexOf = new Map<CacheSource, string>();
  const sources: CacheSource[] = [];
  // In order: the first source holding a key wins.
  const opened = await Promise.all(specs.map(async (spec, i) => {
    const id = `cache-import:${i}:${describeFrom(spec)}`;
    opts.progress.start({ id, name: `importing cache manifest from ${describeFrom(spec)}` });
    try {
      const source = spec.type === 'local'
        ? await openLocalCache(spec.src!)
        : await openRegistryCache(worker.registry, parseReference(spec.ref!), opts.platforms);
      if (source.records.size === 0) warnLine(opts.progress, id, `${source.name}: no cache records found`);
      opts.progress.done(id);
      return { source, id };
    } catch (e) {
      const what = (e as { code?: string }).code === 'NOT_FOUND' ? 'not found' : (e as Error).message;
      warnLine(opts.progress, id, `failed to import cache from ${describeFrom(spec)}: ${what}`);
      opts.progress.done(id);
      return null;
    }
  }));
  for (const o of opened) {
    if (!o) continue;
    sources.push(o.source);
    vertexOf.set(o.source, o.id);
  }
  return new RemoteCacheImporter(sources, (source, message) => warnLine(opts.progress, vertexOf.get(source)!, message));
}

/** Op digests whose results are layer chains the roots' results are built on (exec root, file base, merge). */
export function resultChainOps(def: Definition, root: Digest): Set<Digest> {
  const out = new Set<Digest>();
  const walk = (d: Digest) => {
    if (out.has(d)) return;
    out.add(d);
    const op: Op | undefined = def.ops[d];
    if (!op) return;
    if (op.kind === 'exec') {
      const m = op.mounts.find((x) => x.dest === '/');
      if (m && m.input >= 0) walk(op.inputs[m.input].digest);
    } else if (op.kind === 'file') {
      if (op.base >= 0) walk(op.inputs[op.base].digest);
    } else if (op.kind === 'merge') {
      for (const i of op.inputs) walk(i.digest);
    }
  };
  walk(root);
  return out;
}

export interface BuildResults {
  definition: Definition;
  roots: Digest[];
  /** Each op's result this build, by op digest (BuildCache.results). */
  results: Map<Digest, { key: Digest; ref: WorkerRef; contentKey?: Digest }>;
}

/** The results a mode exports: never sources (pulling or copying them again is as cheap), never empty chains. */
function selectResults(b: BuildResults, mode: CacheMode): { key: Digest; ref: WorkerRef }[] {
  const wanted = mode === 'max' ? null : new Set(b.roots.flatMap((r) => [...resultChainOps(b.definition, r)]));
  const out: { key: Digest; ref: WorkerRef }[] = [];
  for (const [digest, r] of b.results) {
    if (wanted && !wanted.has(digest)) continue;
    if (b.definition.ops[digest]?.kind === 'source') continue;
    if (r.ref.layers.length === 0 && !r.ref.remote?.length) continue;
    out.push(r);
    // Under its content key too: an import cuts off where this build did (or would).
    if (r.contentKey) out.push({ key: r.contentKey, ref: r.ref });
  }
  return out;
}

async function toRecord(worker: Worker, r: { key: Digest; ref: WorkerRef; contentKey?: Digest }, variant: LayerVariant): Promise<ResolvedRecord> {
  const [blobs, times, contents] = await Promise.all([resultBlobs(worker, r.ref, variant), layerTimes(worker, r.ref), layerContents(worker, r.ref)]);
  return {
    key: r.key,
    ...(r.contentKey ? { contentKey: r.contentKey } : {}),
    layers: blobs.map((b, i) => ({
      blob: { mediaType: b.mediaType, digest: b.digest, size: b.size }, diffID: b.diffID,
      ...(times[i] ? { created: times[i] } : {}), ...(contents[i] ? { content: contents[i] } : {}),
    })),
  };
}

/** Each layer's content digest where known or computable (a failure only leaves it out). */
async function layerContents(worker: Worker, ref: WorkerRef): Promise<(Digest | undefined)[]> {
  if (ref.remote) return ref.remote.map((l) => l.content);
  return Promise.all(ref.layers.map((id) => worker.contentHash.layerDigest(id).catch(() => undefined)));
}

/** Where a layer's blob comes from when a destination lacks it: the store, else the source it was imported from. */
function provider(worker: Worker, results: { ref: WorkerRef }[]): (l: CacheLayer) => Promise<void> {
  const remote = new Map<string, NonNullable<WorkerRef['remote']>[number]>();
  for (const r of results) for (const l of r.ref.remote ?? []) remote.set(l.blob.digest, l);
  return async (l) => {
    if (await worker.store.has(l.blob.digest)) return;
    const from = remote.get(l.blob.digest);
    // Made for this export and gone since (removed as damaged when checked): exportCache makes it again.
    if (!from) throw new BlobNotFoundError(l.blob.digest);
    await worker.ensureBlob(from);
  };
}

/** The inline cache (`--cache-to type=inline`) for root `index`, given the layers its image uses. */
export async function inlineCacheFor(worker: Worker, b: BuildResults, index: number, layers: LayerDesc[]): Promise<object | undefined> {
  const chain = resultChainOps(b.definition, b.roots[index]);
  const root = b.results.get(b.roots[index]);
  if (!root) return undefined;
  const times = await layerTimes(worker, root.ref);
  const rootIds = root.ref.remote ? root.ref.remote.map((l) => l.blob.digest as string) : root.ref.layers;
  const records: ResolvedRecord[] = [];
  for (const [digest, r] of b.results) {
    if (!chain.has(digest) || b.definition.ops[digest]?.kind === 'source') continue;
    // Its chain is a prefix of the image's: the image's own blobs stand for it.
    const ids = r.ref.remote ? r.ref.remote.map((l) => l.blob.digest as string) : r.ref.layers;
    if (ids.length === 0 || !!r.ref.remote !== !!root.ref.remote || ids.some((id, i) => rootIds[i] !== id)) continue;
    records.push({
      key: r.key,
      layers: layers.slice(0, ids.length).map((l, i) => ({ blob: { mediaType: l.mediaType, digest: l.digest, size: l.size }, diffID: l.diffID, ...(times[i] ? { created: times[i] } : {}) })),
    });
  }
  return inlineConfig(records, layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })));
}

/** Writes this build's records to one --cache-to destination (inline is done by the image exporter). */
export async function exportCache(
  worker: Worker, spec: CacheToSpec, b: BuildResults,
  opts: { progress: ProgressWriter },
): Promise<void> {
  if (spec.type === 'inline') return;
  const where = spec.type === 'local' ? spec.dest! : spec.ref!;
  const id = `cache-export:${spec.type}:${where}`;
  opts.progress.start({ id, name: `exporting cache to ${spec.type === 'local' ? 'client directory' : 'registry'} ${where}` });
  try {
    const selected = selectResults(b, spec.mode);
    const variant: LayerVariant = { compression: spec.compression, level: spec.compressionLevel, force: spec.forceCompression };
    // A blob that fails its check on its way out is removed; the export is made once more, its blob anew.
    for (let attempt = 0; ; attempt++) {
      try {
        await writeCache(worker, spec, selected, variant, id, opts.progress);
        break;
      } catch (e) {
        if (!(e instanceof CorruptBlobError || e instanceof BlobNotFoundError) || attempt > 0) throw e;
      }
    }
    opts.progress.done(id);
  } catch (e) {
    if (spec.ignoreError || unreachable(e)) {
      warnLine(opts.progress, id, `failed to export cache to ${where}: ${(e as Error).message}`);
      opts.progress.done(id);
      return;
    }
    opts.progress.error(id, (e as Error).message);
    throw e;
  }
}

/** Resolves the records' blobs and writes them and the records to the destination. */
async function writeCache(
  worker: Worker, spec: CacheToSpec, selected: { key: Digest; ref: WorkerRef }[], variant: LayerVariant, id: string, progress: ProgressWriter,
): Promise<void> {
  const records: ResolvedRecord[] = [];
  // One at a time: layers shared by records are compressed once (layerBlobs remembers them).
  for (const r of selected) records.push(await toRecord(worker, r, variant));
  const provide = provider(worker, selected);
  if (spec.type === 'local') {
    const res = await writeLocalCache(worker.store, spec.dest!, records, { provide });
    progress.log(id, 'stdout', Buffer.from(`${records.length} records, ${res.written} blobs written, ${res.present} already there\n`));
  } else {
    const ref = parseReference(spec.ref!);
    const mountFrom = (await worker.resolvedImages()).map((i) => i.ref);
    const res = await writeRegistryCache(worker.registry, worker.store, ref, records, { provide, mountFrom });
    progress.log(id, 'stdout', Buffer.from(`${records.length} records, ${res.uploaded} blobs uploaded, ${res.present} already there\n`));
  }
}
