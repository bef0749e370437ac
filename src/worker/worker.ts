// The worker executes LLB ops on this machine: image sources become stacks of extracted layer snapshots,
// local sources a snapshot of the selected context files, exec and file ops a new snapshot on top of their
// input (the overlay upperdir). A result is the chain of snapshot ids, bottom to top.
import fs from 'node:fs/promises';
import path from 'node:path';
import type { OpContext, OpExecutor } from '../../solver/solver.js';
import type { CopyAction, Digest, ExecOp, FileOp, HttpSource, ImageSource, LocalSource, MergeOp, Op } from '../../solver/llb/ops.js';
import { sha256 } from '../../solver/llb/digest.js';
import { ContentStore } from '../content/store.js';
import { Snapshotter, type Mounted } from '../snapshot/snapshotter.js';
import { applyLayerBlob } from '../archive/layer.js';
import { applyFileActions } from './fileop.js';
import { prepareMounts, type BuildSession } from './mounts.js';
import { fetchHttpSource } from './http.js';
import { OciRuntimeExecutor } from '../executor/runc.js';
import { ensureEmulator } from '../executor/emulation.js';
import { RegistryClient, type ResolvedImage } from '../registry/client.js';
import { ImageStore } from '../image/store.js';
import { parseReference } from '../registry/reference.js';
import type { Descriptor } from '../image/types.js';
import { UserError } from '../util/errors.js';
import { writeFileAtomic } from '../util/fs.js';

export interface WorkerRef {
  /** Committed snapshot ids, bottom to top. */
  layers: string[];
}

/** What a committed snapshot records about itself (in the snapshotter's committed.json). */
export interface SnapshotInfo {
  diffID?: Digest;
  /** The compressed blob of this layer, when known (pulled, or exported before). */
  blob?: { digest: Digest; size: number; mediaType: string };
}

export interface LocalDir {
  dir: string;
}

export interface WorkerOptions {
  root: string;
  runtime?: string;
  insecureRegistries?: string[];
}

export type LogSink = (digest: Digest, stream: 'stdout' | 'stderr', chunk: Buffer) => void;

export class ExecError extends UserError {
  constructor(readonly args: string[], readonly exitCode: number, readonly shell: boolean) {
    super('EXEC_FAILED', `process "${args.join(' ')}" did not complete successfully: exit code: ${exitCode}`);
  }
}

export class Worker {
  readonly store: ContentStore;
  readonly snapshots: Snapshotter;
  readonly registry: RegistryClient;
  readonly executor: OciRuntimeExecutor;
  /** Images kept under names in the state directory (`-t` without `--output`); FROM finds them first. */
  readonly images: ImageStore;
  /** In-process dedup of image resolution and layer extraction shared by concurrent ops. */
  private readonly resolving = new Map<string, Promise<ResolvedImage>>();
  private readonly extracting = new Map<string, Promise<string>>();

  constructor(readonly opts: WorkerOptions) {
    this.store = new ContentStore(path.join(opts.root, 'content'));
    this.snapshots = new Snapshotter(opts.root);
    this.registry = new RegistryClient({ insecureRegistries: opts.insecureRegistries, cache: this.store });
    this.images = new ImageStore(opts.root, this.store);
    this.executor = new OciRuntimeExecutor({ runtime: opts.runtime, stateDir: path.join(opts.root, 'executor') });
  }

  /** `recover: false` when other builds share the state directory: their work in progress is left alone. */
  async init(opts: { recover?: boolean } = {}): Promise<void> {
    const recover = opts.recover ?? true;
    await fs.mkdir(path.join(this.opts.root, 'layers'), { recursive: true });
    await this.snapshots.init({ recover });
    await this.executor.init({ recover });
  }

  /** Resolves an image reference for a platform; memoized for the worker's lifetime. */
  resolveImage(ref: string, platform: ImageSource['platform']): Promise<ResolvedImage> {
    const key = `${ref}|${platform.os}/${platform.architecture}/${platform.variant ?? ''}`;
    const cached = this.resolving.get(key);
    if (cached) return cached;
    const parsed = parseReference(ref);
    const p = this.images.resolve(parsed, platform).then((local) => local ?? this.registry.resolve(parsed, platform));
    p.catch(() => this.resolving.delete(key));
    this.resolving.set(key, p);
    return p;
  }

  /**
   * Whether executing `op` needs input `index` as a snapshot. A COPY from the context reads the context
   * directory directly (see directLocalCopy) instead of a snapshot of all of it.
   */
  needsInput(op: Op, index: number, inputOp: Op): boolean {
    return !(op.kind === 'file' && directLocalCopy(op, index, inputOp));
  }

  /** The images this worker resolved: where a push may mount their blobs from. */
  async resolvedImages(): Promise<ResolvedImage[]> {
    const settled = await Promise.allSettled(this.resolving.values());
    return settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  }

  /** The op executor the solver calls; `locals` names the client's directories (context, ...). */
  opExecutor(locals: Record<string, LocalDir>, onLog?: LogSink, session: BuildSession = {}): OpExecutor<WorkerRef> {
    return (ctx) => this.execute(ctx, locals, onLog, session);
  }

  private async execute(ctx: OpContext<WorkerRef>, locals: Record<string, LocalDir>, onLog: LogSink | undefined, session: BuildSession): Promise<WorkerRef> {
    const op: Op = ctx.op;
    switch (op.kind) {
      case 'source':
        switch (op.source.type) {
          case 'scratch':
            return { layers: [] };
          case 'image':
            return this.pullImage(op.source, ctx.signal);
          case 'local':
            return this.snapshotLocal(op.source, locals);
          case 'http':
            return this.httpSource(op.source, ctx.signal);
        }
        break;
      case 'exec':
        return this.exec(op, ctx, session, onLog);
      case 'file':
        return this.file(op, ctx.inputs, ctx.inputOps, locals);
      case 'merge':
        return this.merge(op, ctx.inputs);
    }
    throw new Error(`worker: unsupported op ${(op as { kind: string }).kind}`);
  }

  private async pullImage(source: ImageSource, signal: AbortSignal): Promise<WorkerRef> {
    const image = await this.resolveImage(source.ref, source.platform);
    const diffIDs = image.config.rootfs?.diff_ids ?? [];
    if (diffIDs.length !== image.layers.length) {
      throw new UserError('BAD_IMAGE', `${source.ref}: config has ${diffIDs.length} diff_ids for ${image.layers.length} layers`);
    }
    // Blobs download in parallel; extraction goes bottom-up as each parent is ready.
    const fetched = image.layers.map((desc) => this.registry.fetchBlob(image.ref, desc, this.store));
    fetched.forEach((p) => p.catch(() => undefined));
    const layers: string[] = [];
    let chainID: Digest | undefined;
    for (let i = 0; i < image.layers.length; i++) {
      signal.throwIfAborted();
      chainID = chainID ? sha256(`${chainID} ${diffIDs[i]}`) : (diffIDs[i] as Digest);
      const parent = layers.slice();
      const id = await this.extractLayer(chainID, parent, image.layers[i], diffIDs[i] as Digest, fetched[i]);
      layers.push(id);
    }
    return { layers };
  }

  /** The snapshot for a layer chain, extracting it once per state directory (recorded by chain id). */
  private extractLayer(chainID: Digest, parent: string[], desc: Descriptor, diffID: Digest, fetched: Promise<void>): Promise<string> {
    let p = this.extracting.get(chainID);
    if (p) return p;
    p = (async () => {
      const recordPath = path.join(this.opts.root, 'layers', chainID.replace('sha256:', ''));
      const existing = await readJSON<{ snapshot: string }>(recordPath);
      if (existing && (await this.snapshots.exists(existing.snapshot))) return existing.snapshot;
      await fetched;
      const id = await this.snapshots.prepare();
      try {
        const { diffID: actual } = await applyLayerBlob(this.store, desc as { digest: Digest; mediaType: string }, this.snapshots.fsPath(id));
        if (actual !== diffID) throw new UserError('DIFFID_MISMATCH', `layer ${desc.digest}: diff id ${actual} does not match config ${diffID}`);
        const info: SnapshotInfo = { diffID, blob: { digest: desc.digest as Digest, size: desc.size, mediaType: desc.mediaType } };
        await this.snapshots.commit(id, info);
      } catch (e) {
        await this.snapshots.remove(id).catch(() => undefined);
        throw e;
      }
      await writeFileAtomic(recordPath, JSON.stringify({ snapshot: id, parent }));
      return id;
    })();
    p.catch(() => this.extracting.delete(chainID));
    this.extracting.set(chainID, p);
    return p;
  }

  private async snapshotLocal(source: LocalSource, locals: Record<string, LocalDir>): Promise<WorkerRef> {
    const local = locals[source.name];
    if (!local) throw new UserError('NO_LOCAL', `local source "${source.name}" was not provided`);
    const id = await this.snapshots.prepare();
    try {
      const copy: CopyAction = {
        // Owned by root as BuildKit's context transfer leaves them; archives inside keep their own owners.
        action: 'copy', sourceInput: 0, src: '/', dest: '/', owner: { user: 0, group: 0 }, followSymlinks: false, dirCopyContents: true,
        createDestPath: true, allowWildcard: false, allowEmptyWildcard: false,
        includePatterns: source.includePatterns, excludePatterns: source.excludePatterns,
      };
      await applyFileActions(this.snapshots.fsPath(id), [copy], [local.dir]);
      await this.snapshots.commit(id, {});
    } catch (e) {
      await this.snapshots.remove(id).catch(() => undefined);
      throw e;
    }
    return { layers: [id] };
  }

  private async httpSource(source: HttpSource, signal: AbortSignal): Promise<WorkerRef> {
    const id = await this.snapshots.prepare();
    try {
      await fetchHttpSource(source, this.snapshots.fsPath(id), signal);
      await this.snapshots.commit(id, {});
    } catch (e) {
      await this.snapshots.remove(id).catch(() => undefined);
      throw e;
    }
    return { layers: [id] };
  }

  private async exec(op: ExecOp, ctx: OpContext<WorkerRef>, session: BuildSession, onLog?: LogSink): Promise<WorkerRef> {
    const rootMount = op.mounts.find((m) => m.dest === '/');
    if (!rootMount) throw new Error('exec op without a root mount');
    const base = rootMount.input >= 0 ? ctx.inputs[rootMount.input] : { layers: [] };
    // Before anything is made: a missing emulator must leave nothing behind.
    await ensureEmulator(op.platform);
    const upper = await this.snapshots.prepare();
    try {
      const extra = await prepareMounts(op, { root: this.opts.root, snapshots: this.snapshots, session, inputs: ctx.inputs });
      let exitCode: number;
      try {
        const mounted = await this.snapshots.mount(base.layers, upper);
        try {
          ({ exitCode } = await this.executor.run({
            rootfs: mounted.target,
            meta: op.meta,
            mounts: extra.mounts,
            env: [...(op.meta.proxyEnv ?? []), ...extra.env],
            signal: ctx.signal,
            onOutput: (stream: 'stdout' | 'stderr', chunk: Buffer) => onLog?.(ctx.digest, stream, chunk),
          }));
        } finally {
          await mounted.unmount();
        }
      } finally {
        await extra.release();
      }
      if (exitCode !== 0) throw new ExecError(op.meta.args, exitCode, true);
      await this.snapshots.commit(upper, {});
    } catch (e) {
      await this.snapshots.remove(upper).catch(() => undefined);
      throw e;
    }
    return { layers: [...base.layers, upper] };
  }

  private async file(op: FileOp, inputs: WorkerRef[], inputOps: Op[], locals: Record<string, LocalDir>): Promise<WorkerRef> {
    const base = op.base >= 0 ? inputs[op.base] : { layers: [] };
    const upper = await this.snapshots.prepare();
    const mounts: Mounted[] = [];
    try {
      let target = this.snapshots.fsPath(upper);
      if (base.layers.length) {
        const m = await this.snapshots.mount(base.layers, upper);
        mounts.push(m);
        target = m.target;
      }
      const sources: (string | null)[] = [];
      let actions = op.actions;
      const rootOwned = new Set<number>();
      for (let i = 0; i < inputs.length; i++) {
        if (i === op.base || !op.actions.some((a) => a.action === 'copy' && a.sourceInput === i)) {
          sources.push(i === op.base ? target : null);
          continue;
        }
        const direct = directLocalCopy(op, i, inputOps[i]);
        if (direct) {
          const local = locals[direct.name];
          if (!local) throw new UserError('NO_LOCAL', `local source "${direct.name}" was not provided`);
          sources.push(local.dir);
          rootOwned.add(i);
          if (direct.excludePatterns) {
            const excludePatterns = direct.excludePatterns;
            actions = actions.map((a) => (a.action === 'copy' && a.sourceInput === i ? { ...a, excludePatterns } : a));
          }
          continue;
        }
        const m = await this.snapshots.mount(inputs[i].layers);
        mounts.push(m);
        sources.push(m.target);
      }
      await applyFileActions(target, actions, sources, { rootOwned });
    } catch (e) {
      await unmountAll(mounts);
      await this.snapshots.remove(upper).catch(() => undefined);
      throw e;
    }
    await unmountAll(mounts);
    await this.snapshots.commit(upper, {});
    return { layers: [...base.layers, upper] };
  }

  private merge(_op: MergeOp, inputs: WorkerRef[]): WorkerRef {
    const layers: string[] = [];
    for (const input of inputs) for (const id of input.layers) if (!layers.includes(id)) layers.push(id);
    return { layers };
  }
}

/**
 * The local source a file op's input `index` can be copied from directly (no snapshot of the whole
 * context): when the source selects with excludes only, and every copy reading it either has no
 * .dockerignore to honour or copies the whole context (where those excludes apply to the copy as is).
 */
function directLocalCopy(op: FileOp, index: number, inputOp: Op | undefined): LocalSource | null {
  if (!inputOp || index === op.base || inputOp.kind !== 'source' || inputOp.source.type !== 'local') return null;
  const src = inputOp.source;
  if (src.includePatterns?.length || src.followPaths?.length) return null;
  if (!src.excludePatterns?.length) return src;
  const whole = op.actions.every((a) => a.action !== 'copy' || a.sourceInput !== index ||
    (path.posix.join('/', a.src) === '/' && !a.includePatterns?.length && !a.excludePatterns?.length));
  return whole ? src : null;
}

async function unmountAll(mounts: Mounted[]): Promise<void> {
  for (const m of mounts.reverse()) await m.unmount();
  mounts.length = 0;
}

async function readJSON<T>(file: string): Promise<T | null> {
  try {
    return JSON.parse(await fs.readFile(file, 'utf8')) as T;
  } catch {
    return null;
  }
}
