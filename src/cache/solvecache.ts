// The solver's cache for one build: keys from the worker's key function (content checksums of the
// context), results from the persistent records, and per-step history of the previous build of the same
// Dockerfile/target so a step that hit then and misses now can say why in one line.
import fs from 'node:fs/promises';
import fsSync from 'node:fs';
import path from 'node:path';
import type { CacheLookup, ContentKeyContext, KeyContext, SolveCache } from '../../solver/solver.js';
import type { CopyAction, Digest, Op, OpMetadata } from '../../solver/llb/ops.js';
import { sha256 } from '../../solver/llb/digest.js';
import type { Worker, WorkerRef, LocalDir } from '../worker/worker.js';
import { ContextChecksummer } from '../worker/contenthash.js';
import { contentCacheKey, opCacheKey, type KeyInputs } from '../worker/cachekey.js';
import { SnapshotHasher } from './snapshothash.js';
import { CacheRecords } from './records.js';
import { writeFileAtomic, writeFileAtomicWith } from '../util/fs.js';
import type { RemoteCacheImporter } from './remotecache/source.js';

interface StepHistory {
  key: Digest;
  inputs: KeyInputs;
  /** Copies from built inputs: per copy, its source and the id of its kept selection (SnapshotHasher). */
  selections?: { src: string; id: string }[];
}

interface History { steps: Record<string, StepHistory> }

export interface BuildCacheOptions {
  root: string;
  worker: Worker;
  locals: Record<string, LocalDir>;
  /** Names the previous build whose steps explain misses (Dockerfile path and target). */
  scope: string;
  /** Build arg names given on the command line, to word env changes as build arg changes. */
  buildArgs?: string[];
  noCacheFilter?: string[];
  /** Records imported with --cache-from, consulted after the local records; hits are lazy results. */
  remote?: RemoteCacheImporter;
}

const MAX_PATHS = 3;

export interface ContextStats { files: number; filesRead: number; bytes: number }

export class BuildCache implements SolveCache<WorkerRef> {
  readonly records: CacheRecords;
  private readonly sums = new Map<string, ContextChecksummer>();
  private readonly computed = new Map<Digest, { key: Digest; inputs: KeyInputs; metadata: OpMetadata; hit: boolean; source: boolean; byContent: boolean }>();
  private readonly keyOwner = new Map<Digest, Digest>();
  private history: Promise<History> | null = null;
  /** Every op's result this build, run or reused, by op digest: what --cache-to exports. */
  readonly results = new Map<Digest, { key: Digest; ref: WorkerRef; contentKey?: Digest }>();
  private readonly remoteHits = new Map<Digest, Promise<WorkerRef | null>>();
  /** Per op digest, the selections its content key took from built inputs (for history and explanations). */
  private readonly selected = new Map<Digest, { src: string; id: string; files: Record<string, string> }[]>();
  private readonly historyFile: string;

  constructor(private readonly opts: BuildCacheOptions) {
    this.records = new CacheRecords(opts.root, opts.worker.snapshots, { memo: true });
    this.historyFile = path.join(opts.root, 'cache', 'history', sha256(opts.scope).slice(7));
  }

  private checksummer(name: string, excludes: string[] | undefined): ContextChecksummer {
    const id = `${name}\0${JSON.stringify(excludes ?? [])}`;
    let s = this.sums.get(id);
    if (!s) {
      const local = this.opts.locals[name];
      if (!local) throw new Error(`local source "${name}" was not provided`);
      const indexFile = local.ephemeral ? undefined : path.join(this.opts.root, 'cache', 'contexts', sha256(`${path.resolve(local.dir)}\0${id}`).slice(7));
      s = new ContextChecksummer(local.dir, excludes, indexFile);
      this.sums.set(id, s);
    }
    return s;
  }

  /** Files of the contexts, files read and bytes read so far (the context step's progress). */
  contextStats(): ContextStats {
    const out = { files: 0, filesRead: 0, bytes: 0 };
    for (const s of this.sums.values()) {
      out.files += s.files;
      out.filesRead += s.filesRead;
      out.bytes += s.bytesRead;
    }
    return out;
  }

  async key(ctx: KeyContext): Promise<Digest> {
    const { key, inputs } = await opCacheKey(ctx, (n, e) => this.checksummer(n, e),
      (digest, source, fresh) => this.opts.worker.httpForKey(this.opts.locals, digest, source, fresh),
      (digest, source) => this.opts.worker.gitForKey(this.opts.locals, digest, source));
    // A source's key is a content digest already; so is the key of a file or merge op whose inputs' keys all
    // are (such an op makes the same files from the same files): its key stands for its content.
    const op = ctx.op;
    const byContent = op.kind === 'source' || ((op.kind === 'file' || op.kind === 'merge') &&
      op.inputs.every((input, i) => this.computed.get(input.digest)?.byContent ?? ctx.inputOp(i).kind === 'source'));
    this.computed.set(ctx.digest, { key, inputs, metadata: ctx.metadata, hit: false, source: op.kind === 'source', byContent });
    this.keyOwner.set(key, ctx.digest);
    return key;
  }

  async load(key: Digest, ctx: { digest: Digest; op: Op; metadata: OpMetadata; ignoreCache: boolean }): Promise<CacheLookup<WorkerRef>> {
    if (!ctx.ignoreCache) {
      const found = await this.lookup(key);
      if (found) {
        const c = this.computed.get(ctx.digest);
        if (c) c.hit = true;
        this.results.set(ctx.digest, { key, ref: found.ref, ...(found.contentKey ? { contentKey: found.contentKey } : {}) });
        return { hit: true, result: found.ref };
      }
    }
    const reason = await this.explain(key, ctx).catch(() => undefined);
    const previous = ctx.op.kind === 'file' && !ctx.ignoreCache ? await this.previousResult(ctx.metadata).catch(() => undefined) : undefined;
    return { hit: false, reason, ...(previous ? { previous } : {}) };
  }

  /** The result recorded for a key: here, else in the imported caches (lazy). */
  private async lookup(key: Digest): Promise<{ ref: WorkerRef; contentKey?: Digest } | null> {
    const rec = await this.records.get(key);
    const recorded = (k: unknown) => (typeof k === 'string' && /^sha256:[0-9a-f]{64}$/.test(k) ? { contentKey: k as Digest } : {});
    if (rec) return { ref: { layers: rec.layers }, ...recorded(rec.contentKey) };
    const remote = this.opts.remote;
    if (!remote) return null;
    // One ref per key, however often it is looked up: it is extracted at most once.
    let p = this.remoteHits.get(key);
    if (!p) {
      p = remote.lookup(key).then((layers) => (layers ? { layers: [], remote: layers } : null));
      this.remoteHits.set(key, p);
    }
    const ref = await p;
    return ref ? { ref, ...recorded(remote.contentKey(key)) } : null;
  }

  /**
   * The op's content key (early cutoff, see docs/cache.md): its definition, and per input what the input
   * holds instead of how it was made. A source input (image, context, download), or a file op made only
   * from such inputs (a COPY from the context onto a FROM image), enters by its cache key, which stands
   * for its content already. A copy's source enters by the digest of exactly what the copy selects from it
   * (the context's by its checksummer, a result's by SnapshotHasher.selectionDigest); any other input by
   * its layer chain's content digest.
   */
  async contentKey(ctx: ContentKeyContext<WorkerRef>): Promise<Digest | undefined> {
    const op = ctx.op;
    if (op.kind !== 'exec' && op.kind !== 'file' && op.kind !== 'merge') return undefined;
    const hasher = this.opts.worker.contentHash;
    // Whether any input enters by what it holds rather than by its key: with none, the content key would
    // say no more than the first key (it would hit exactly when that one does), so there is none.
    let byHolding = false;
    const whole = async (i: number): Promise<unknown> => {
      // A key that stands for content (sources; copies of them) is used as is: nothing to hash.
      const c = this.computed.get(op.inputs[i].digest);
      if (ctx.inputOps[i].kind === 'source' || c?.byContent) return { key: await ctx.inputKey(i) };
      const ref = ctx.inputs[i];
      if (!ref) throw new Error('input has no result');
      byHolding = true;
      return { chain: await this.chainContent(ref) };
    };
    const parts: unknown[] = [];
    for (let i = 0; i < ctx.inputOps.length; i++) {
      const inputOp = ctx.inputOps[i];
      const copies = op.kind === 'file' && i !== op.base
        ? op.actions.filter((a): a is CopyAction => a.action === 'copy' && a.sourceInput === i) : [];
      if (copies.length === 0) {
        parts.push(await whole(i));
      } else if (inputOp.kind === 'source' && inputOp.source.type === 'local') {
        const sum = this.checksummer(inputOp.source.name, inputOp.source.excludePatterns);
        const sel: Digest[] = [];
        for (const a of copies) sel.push((await sum.selectionDigest(a)).digest);
        parts.push({ local: sel, include: inputOp.source.includePatterns ?? [] });
      } else if (inputOp.kind === 'source') {
        parts.push(await whole(i));
      } else {
        const ref = ctx.inputs[i];
        if (!ref) throw new Error('input has no result');
        const layers = (await this.opts.worker.materialize(ref)).layers;
        byHolding = true;
        parts.push({ selected: await Promise.all(copies.map((a) => hasher.selectionDigest(layers, a))) });
        const records = await Promise.all(copies.map(async (a) => ({ src: a.src, rec: await hasher.selectionRecord(layers, a) })));
        const list = this.selected.get(ctx.digest) ?? [];
        for (const { src, rec } of records) if (rec) list.push({ src, id: rec.id, files: rec.files });
        this.selected.set(ctx.digest, list);
      }
    }
    return byHolding ? contentCacheKey(op, parts) : undefined;
  }

  /** A result's content digest: from the layers' recorded digests (imported), else by hashing its snapshots. */
  private async chainContent(ref: WorkerRef): Promise<Digest> {
    if (ref.remote && ref.remote.every((l) => l.content)) return SnapshotHasher.chain(ref.remote.map((l) => l.content!));
    const local = ref.remote ? await this.opts.worker.materialize(ref) : ref;
    return this.opts.worker.contentHash.chainDigest(local.layers);
  }

  /**
   * After the content key missed too: for a copy from a built input, which of the files it selects changed
   * since the previous build of the step (`COPY /out/: changed out/app`). Undefined: the first key's reason stands.
   */
  async explainContent(ctx: { digest: Digest; op: Op; metadata: OpMetadata }): Promise<string | undefined> {
    const cur = this.selected.get(ctx.digest);
    const id = stepId(ctx.metadata, false);
    if (!cur?.length || !id) return undefined;
    const prev = (await this.loadHistory()).steps[id]?.selections;
    if (!prev?.length) return undefined;
    for (const [i, c] of cur.entries()) {
      const p = prev[i];
      if (!p || p.src !== c.src || p.id === c.id) continue;
      const prevFiles = await this.opts.worker.contentHash.selectionFiles(p.id);
      if (!prevFiles) return undefined;
      const diff = diffFiles(prevFiles, c.files, ['']);
      if (diff.length === 0) continue;
      return `${instruction(ctx.metadata)} ${c.src}: changed ${listPaths(diff)}`;
    }
    return undefined;
  }

  async loadContent(key: Digest, ctx: { digest: Digest }): Promise<WorkerRef | undefined> {
    const found = await this.lookup(key);
    if (!found) return undefined;
    const c = this.computed.get(ctx.digest);
    if (c) c.hit = true;
    return found.ref;
  }

  /** The result this step had in the previous build of the same Dockerfile, if its record still exists. */
  private async previousResult(metadata: OpMetadata): Promise<WorkerRef | undefined> {
    const id = stepId(metadata, false);
    const prev = id ? (await this.loadHistory()).steps[id] : undefined;
    const rec = prev ? await this.records.get(prev.key) : null;
    return rec ? { layers: rec.layers } : undefined;
  }

  async save(key: Digest, result: WorkerRef, ctx: { digest: Digest; contentKey?: Digest }): Promise<void> {
    this.results.set(ctx.digest, { key, ref: result, ...(ctx.contentKey ? { contentKey: ctx.contentKey } : {}) });
    await this.records.put(key, result.layers, ctx.contentKey);
    if (ctx.contentKey) await this.records.put(ctx.contentKey, result.layers);
  }

  /** Persists the context indexes and this build's step history. Call after the solve. */
  async finish(): Promise<void> {
    await Promise.all([...this.sums.values()].map((s) => s.flush()));
    // Imported results this build had to extract are local now: later builds here hit without the import.
    for (const { key, ref, contentKey } of this.results.values()) {
      const local = await this.opts.worker.extracted(ref)?.catch(() => undefined);
      if (local) await this.records.put(key, local.layers, contentKey);
      if (local && contentKey) await this.records.put(contentKey, local.layers);
    }
    const prev = await this.loadHistory();
    const steps: Record<string, StepHistory> = { ...prev.steps };
    let changed = false;
    for (const [digest, c] of this.computed) {
      const id = stepId(c.metadata, c.source);
      if (!id) continue;
      const old = prev.steps[id];
      if (old?.key === c.key) continue;
      const sel = this.selected.get(digest);
      steps[id] = { key: c.key, inputs: c.inputs, ...(sel?.length ? { selections: sel.map((s) => ({ src: s.src, id: s.id })) } : {}) };
      // Copy steps: content digest per selected file, kept apart so a no-op build never reads them. Written
      // as it is walked (a JSON object, a piece at a time): no map or string of the whole selection.
      if (c.inputs.copies?.length) await writeFileAtomicWith(this.filesFile(c.key), (h) => this.writeCopyFiles(h, c.inputs)).catch(() => undefined);
      changed = true;
    }
    if (changed) await writeFileAtomic(this.historyFile, JSON.stringify({ steps }));
  }

  /**
   * Writes the per-file records of what copies select (path -> record, see ContextChecksummer.fileDigests)
   * as the JSON text of one object, in pieces of about 64 KiB as the checksummer walks them.
   */
  private async writeCopyFiles(handle: fs.FileHandle, inputs: KeyInputs): Promise<void> {
    let chunk = '{';
    let first = true;
    const sums = this.contextSums();
    if (sums) {
      await sums.eachFileRecord((inputs.copies ?? []).flatMap((c) => c.paths), (rel, record) => {
        chunk += `${first ? '' : ','}${JSON.stringify(rel)}:${JSON.stringify(record)}`;
        first = false;
        if (chunk.length < 1 << 16) return;
        const piece = chunk;
        chunk = '';
        return handle.write(piece).then(() => undefined);
      });
    }
    await handle.write(`${chunk}}`);
  }

  /**
   * Which of the files a copy selects (under `roots`) changed since `prev` (the previous build's records):
   * compared one at a time as the checksummer walks them, no map of the current ones.
   */
  private async changedFiles(prev: Record<string, string>, roots: string[]): Promise<string[]> {
    const out = new Set<string>();
    const sums = this.contextSums();
    if (sums) {
      await sums.eachFileRecord(roots, (rel, record) => {
        if (!Object.hasOwn(prev, rel)) {
          out.add(rel);
          return;
        }
        if (prev[rel] !== record) out.add(rel);
        delete prev[rel]; // what is left of prev under the roots is gone now
      });
    }
    const under = (p: string) => roots.some((r) => r === '' || p === r || p.startsWith(`${r}/`));
    for (const p of Object.keys(prev)) if (under(p)) out.add(p);
    return [...out].sort();
  }

  /** The context checksummer copies are recorded from: the default one (named "context", excludes from the local source). */
  private contextSums(): ContextChecksummer | undefined {
    return this.sums.values().next().value;
  }

  private filesFile(key: Digest): string {
    return path.join(path.dirname(this.historyFile), 'files', key.slice(7));
  }

  private loadHistory(): Promise<History> {
    // Unreadable or of another shape: no history (this build writes it afresh).
    this.history ??= new Promise<string>((resolve) => resolve(fsSync.readFileSync(this.historyFile, 'utf8'))).then((t) => JSON.parse(t) as History).then(
      (h) => (typeof h?.steps === 'object' && h.steps !== null && !Array.isArray(h.steps) ? h : { steps: {} }),
      () => ({ steps: {} }),
    );
    return this.history;
  }

  /** One line on why a step that hit (or ran) in the previous build of this Dockerfile misses now. */
  private async explain(key: Digest, ctx: { digest: Digest; op: Op; metadata: OpMetadata; ignoreCache: boolean }): Promise<string | undefined> {
    // Told not to use the cache (--no-cache, --no-cache-filter, --pull): nothing to explain, and BuildKit
    // says nothing either.
    if (ctx.ignoreCache) return undefined;
    if (ctx.op.kind === 'source' && ctx.op.source.type === 'scratch') return undefined;
    const id = stepId(ctx.metadata, ctx.op.kind === 'source');
    if (!id) return undefined;
    const prev = (await this.loadHistory()).steps[id];
    const cur = this.computed.get(ctx.digest)?.inputs;
    if (!prev || !cur) return undefined;
    if (prev.key === key) return 'cache record was removed (pruned)';
    if (cur.kind === 'image' && prev.inputs.image !== cur.image) return `base image digest changed (${cur.image})`;
    if (cur.http && prev.inputs.http?.url === cur.http.url && prev.inputs.http.digest !== cur.http.digest) return `content of ${cur.http.url} changed`;
    if (cur.kind === 'local') {
      const changed = [...this.sums.values()].flatMap((s) => [...s.changed]).sort();
      return changed.length ? `context changed: ${listPaths(changed)}` : 'context changed';
    }
    if (cur.copies?.length) {
      const prevCopies = prev.inputs.copies ?? [];
      for (let i = 0; i < cur.copies.length; i++) {
        const c = cur.copies[i];
        if (prevCopies[i]?.digest === c.digest) continue;
        const prevFiles = await fs.readFile(this.filesFile(prev.key), 'utf8').then((t) => JSON.parse(t) as Record<string, string>, () => null);
        const diff = prevFiles && typeof prevFiles === 'object' && !Array.isArray(prevFiles) ? await this.changedFiles(prevFiles, c.paths) : [];
        return `${instruction(ctx.metadata)} ${c.src === '/' ? '.' : c.src.replace(/^\//, '')}: ${diff.length ? `changed ${listPaths(diff)}` : 'selected files changed'}`;
      }
    }
    if (cur.kind === 'exec') {
      const changedEnv = diffEnv(prev.inputs.env ?? [], cur.env ?? []);
      if (changedEnv.length) {
        const name = changedEnv[0];
        return `${this.opts.buildArgs?.includes(name) ? 'build arg' : 'env'} ${name} changed`;
      }
      if (JSON.stringify(prev.inputs.args) !== JSON.stringify(cur.args)) return 'command changed';
    }
    const parents = cur.inputs;
    for (let i = 0; i < parents.length; i++) {
      const p = parents[i];
      if (p && p !== prev.inputs.inputs[i]) {
        const owner = this.keyOwner.get(p);
        const url = owner ? this.computed.get(owner)?.inputs.http?.url : undefined;
        if (url) return `content of ${url} changed`;
        // The context as a whole (RUN --mount=type=bind from it): the files that changed.
        if (owner && this.computed.get(owner)?.inputs.kind === 'local') {
          const changed = [...this.sums.values()].flatMap((s) => [...s.changed]).sort();
          return changed.length ? `context changed: ${listPaths(changed)}` : 'context changed';
        }
        const name = owner ? this.computed.get(owner)?.metadata.description : undefined;
        return name ? `parent step missed: ${name}` : 'parent step missed';
      }
    }
    return 'step definition changed';
  }
}

function listPaths(paths: string[]): string {
  return paths.slice(0, MAX_PATHS).join(', ') + (paths.length > MAX_PATHS ? `, and ${paths.length - MAX_PATHS} more` : '');
}

/**
 * A step's identity across builds of the same Dockerfile: its stage, line and instruction, so an edited
 * command or a new build arg value is the same step with a reason; ops without a line by description.
 * A source op made for an instruction (ADD <url>'s download) is told apart from the instruction's own op.
 */
function stepId(meta: OpMetadata, source: boolean): string | undefined {
  const id = meta.location ? `${meta.stage ?? ''}\0${meta.location.file}:${meta.location.startLine}\0${instruction(meta)}` : meta.description;
  return id && source && meta.location ? `${id}\0source` : id;
}

function instruction(meta: OpMetadata): string {
  return /\]\s+((?:ONBUILD\s+)?[A-Z]+)\b/.exec(meta.description ?? '')?.[1] ?? 'COPY';
}

function diffFiles(prev: Record<string, string>, cur: Record<string, string>, roots: string[]): string[] {
  const under = (p: string) => roots.some((r) => r === '' || p === r || p.startsWith(`${r}/`));
  const out = new Set<string>();
  for (const [p, d] of Object.entries(cur)) if (prev[p] !== d) out.add(p);
  for (const p of Object.keys(prev)) if (under(p) && !(p in cur)) out.add(p);
  return [...out].sort();
}

function diffEnv(prev: string[], cur: string[]): string[] {
  const toMap = (l: string[]) => new Map(l.map((e) => { const i = e.indexOf('='); return [i < 0 ? e : e.slice(0, i), i < 0 ? '' : e.slice(i + 1)]; }));
  const a = toMap(prev);
  const b = toMap(cur);
  const names = new Set([...a.keys(), ...b.keys()]);
  return [...names].filter((n) => a.get(n) !== b.get(n)).sort();
}
