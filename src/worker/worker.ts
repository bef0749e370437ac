// The worker executes LLB ops on this machine: image sources become stacks of extracted layer snapshots,
// local sources a snapshot of the selected context files, exec and file ops a new snapshot on top of their
// input (the overlay upperdir). A result is the chain of snapshot ids, bottom to top.
import fs from 'node:fs/promises';
import fsSync from 'node:fs';
import path from 'node:path';
import type { OpContext, OpExecutor } from '../../solver/solver.js';
import type { CopyAction, Digest, ExecOp, FileOp, GitSource, HttpSource, ImageSource, LocalSource, MergeOp, Op, OpMetadata } from '../../solver/llb/ops.js';
import { sha256 } from '../../solver/llb/digest.js';
import { ContentStore } from '../content/store.js';
import { Snapshotter, type Mounted } from '../snapshot/snapshotter.js';
import { applyLayerBlob } from '../archive/layer.js';
import { applyFileActions } from './fileop.js';
import { cloneTree, ensureAddon, getXattr, listXattrs, setXattr } from '../native/fsx.js';
import { prepareMounts, type BuildSession } from './mounts.js';
import { GitCache, checkCommit, type GitAuth } from './git.js';
import { fetchHttpSource } from './http.js';
import { HttpDownloads, type HttpDownload } from './httpcache.js';
import { OciRuntimeExecutor } from '../executor/runc.js';
import { ensureEmulator } from '../executor/emulation.js';
import type { RegistryHostConfig } from '../registry/config.js';
import { RegistryClient, type ResolvedImage } from '../registry/client.js';
import { ImageStore } from '../image/store.js';
import { parseReference } from '../registry/reference.js';
import type { Descriptor } from '../image/types.js';
import { UserError } from '../util/errors.js';
import { writeFileAtomic } from '../util/fs.js';
import { SnapshotHasher } from '../cache/snapshothash.js';

export interface WorkerRef {
  /** Committed snapshot ids, bottom to top. */
  layers: string[];
  /**
   * A result imported from a remote cache and not extracted yet: its whole chain, bottom to top (then
   * `layers` is empty). `Worker.materialize` extracts it when an op needs it as input; an exporter can
   * use the blobs as they are.
   */
  remote?: RemoteLayer[];
}

/** A layer known by its blob only (from a remote cache). */
export interface RemoteLayer {
  blob: Descriptor;
  diffID: Digest;
  /** When the layer was first made (ISO time), kept so image times reproduce. */
  created?: string;
  /** The layer's content digest (SnapshotHasher.layerDigest), when the cache recorded it: early cutoff without extracting. */
  content?: Digest;
  /** Brings the blob into the content store, verified by digest. */
  fetch(store: ContentStore): Promise<void>;
}

/** What a committed snapshot records about itself (in the snapshotter's committed.json). */
export interface SnapshotInfo {
  diffID?: Digest;
  /** The compressed blob of this layer, when known (pulled, or exported before). */
  blob?: { digest: Digest; size: number; mediaType: string };
  /**
   * Which build step made this layer (see stepIdentity): the exporter compresses a new layer of a step
   * reusing what it can of that step's previous blob.
   */
  step?: string;
  /** A pulled layer: the image it came from, where its blob is fetched again if the stored one is damaged. */
  source?: string;
  /**
   * Extracted from a cache import and made by a build step, not a base image's: its blob is the step's
   * default one, and other variants (rewrite-timestamp) are made from the snapshot as for a built layer.
   */
  imported?: boolean;
}

/**
 * A build step's identity across builds, whatever its inputs: the instruction as the frontend described it
 * and its stage and platform, without its position (`[build 2/5]` -> `[build]`) or source lines, so that
 * inserting a line into the Dockerfile keeps the steps after it. Two steps sharing one is harmless.
 */
export function stepIdentity(metadata: OpMetadata, platform?: { os: string; architecture: string; variant?: string }): string | undefined {
  if (!metadata.description) return undefined;
  const text = metadata.description.replace(/^(\[[^\]]*?)\s*\d+\/\d+\]/, '$1]');
  return sha256(JSON.stringify([text, metadata.stage ?? '', platform ?? null]));
}

export interface LocalDir {
  dir: string;
  /** Made for this build alone and removed after it (an unpacked tar or a downloaded context): no
   * checksum index is kept for it, since no later build reads the same directory. */
  ephemeral?: boolean;
}

export interface WorkerOptions {
  root: string;
  runtime?: string;
  insecureRegistries?: string[];
  /** Per-registry settings (mirrors, CAs, ...); default: the builder config file's. */
  registries?: Record<string, RegistryHostConfig>;
}

export type LogSink = (digest: Digest, stream: 'stdout' | 'stderr', chunk: Buffer) => void;
/** Hears what an op did other than asked without failing (an owner name the image lacks). */
export type WarningSink = (digest: Digest, message: string) => void;

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
  /** Content digests of committed snapshots (early cutoff). */
  readonly contentHash: SnapshotHasher;
  /** In-process dedup of image resolution and layer extraction shared by concurrent ops. */
  private readonly resolving = new Map<string, Promise<ResolvedImage>>();
  private readonly extracting = new Map<string, Promise<string>>();
  private readonly materializing = new WeakMap<WorkerRef, Promise<WorkerRef>>();
  private readonly httpDownloads: HttpDownloads;
  /**
   * Downloads made to compute an ADD <url> key, per build (its locals) and op digest: the op, when it runs
   * in that build, uses them (another build at the same time may have seen other content).
   */
  private readonly httpKeyed = new WeakMap<object, Map<Digest, Promise<HttpDownload>>>();
  /** Git sources: the bare repositories under the state directory. */
  private readonly git: GitCache;
  /** Commits resolved for ADD <git> keys, per build (its locals) and op digest: the op checks out that one. */
  private readonly gitKeyed = new WeakMap<object, Map<Digest, Promise<string>>>();
  /** Each build's session (its SSH agents reach private git remotes), by its locals. */
  private readonly sessions = new WeakMap<object, BuildSession>();

  constructor(readonly opts: WorkerOptions) {
    // Every build reads and writes files through the native addon: one that cannot load is reported now,
    // as itself, rather than as the first step that fails on it.
    ensureAddon();
    this.store = new ContentStore(path.join(opts.root, 'content'));
    this.snapshots = new Snapshotter(opts.root);
    this.registry = new RegistryClient({
      insecureRegistries: opts.insecureRegistries, registries: opts.registries, cache: this.store,
      schemesFile: path.join(opts.root, 'registry-schemes.json'),
    });
    this.images = new ImageStore(opts.root, this.store);
    this.executor = new OciRuntimeExecutor({ runtime: opts.runtime, stateDir: path.join(opts.root, 'executor') });
    this.httpDownloads = new HttpDownloads(opts.root, this.snapshots);
    this.contentHash = new SnapshotHasher(this.snapshots, opts.root);
    this.git = new GitCache(opts.root);
  }

  /** The commit an ADD <git> source names now, for its cache key; the op of this build checks out that one. */
  gitForKey(locals: Record<string, LocalDir>, digest: Digest, source: GitSource): Promise<string> {
    let build = this.gitKeyed.get(locals);
    if (!build) this.gitKeyed.set(locals, (build = new Map()));
    let p = build.get(digest);
    if (!p) {
      p = this.git.resolve(source, { auth: this.gitAuth(locals) });
      p.catch(() => undefined);
      build.set(digest, p);
    }
    return p;
  }

  private gitAuth(locals: object): GitAuth {
    const ssh = this.sessions.get(locals)?.ssh;
    const sock = ssh?.get('default') ?? ssh?.values().next().value;
    const secrets = this.sessions.get(locals)?.secrets;
    return { ...(sock ? { sshAuthSock: sock } : {}), ...(secrets?.size ? { secrets } : {}) };
  }

  private async gitSource(locals: Record<string, LocalDir>, digest: Digest, source: GitSource, signal: AbortSignal): Promise<WorkerRef> {
    const commit = await (this.gitKeyed.get(locals)?.get(digest) ?? this.gitForKey(locals, digest, source));
    checkCommit(source, commit);
    const id = await this.snapshots.prepare();
    try {
      await this.git.checkoutInto(source, commit, this.snapshots.fsPath(id), { keepGitDir: source.keepGitDir, auth: this.gitAuth(locals), signal });
      await this.snapshots.commit(id, {});
    } catch (e) {
      await this.snapshots.remove(id).catch(() => undefined);
      throw e;
    }
    return { layers: [id] };
  }

  /**
   * The current content of an unpinned ADD <url> for its cache key (one conditional request when a kept
   * download is still current); op `digest` of the build with these `locals` uses this download when it
   * runs. `fresh`: download anew.
   */
  httpForKey(locals: Record<string, LocalDir>, digest: Digest, source: HttpSource, fresh: boolean): Promise<HttpDownload> {
    const p = this.httpDownloads.current(source, { fresh });
    // The op reports a failure when it runs (with its Dockerfile line); unhandled here it would crash.
    p.catch(() => undefined);
    let build = this.httpKeyed.get(locals);
    if (!build) this.httpKeyed.set(locals, (build = new Map()));
    build.set(digest, p);
    return p;
  }

  /** The digest of what op `digest` of the build with these `locals` downloaded for its key (ADD <url>), if it did. */
  async httpDownloadDigest(locals: Record<string, LocalDir>, digest: Digest): Promise<string | undefined> {
    const p = this.httpKeyed.get(locals)?.get(digest);
    return p ? (await p.catch(() => undefined))?.digest : undefined;
  }

  /** `recover: false` when other builds share the state directory: their work in progress is left alone. */
  async init(opts: { recover?: boolean } = {}): Promise<void> {
    const recover = opts.recover ?? true;
    await fs.mkdir(path.join(this.opts.root, 'layers'), { recursive: true });
    await this.snapshots.init({ recover });
    await this.executor.init({ recover });
    if (recover) await this.store.cleanup();
    if (recover) await this.git.cleanup();
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
   * Makes `ref` (and the pinned ref of `image`) resolve to `image` for `platform` in this worker without a
   * registry: an image the client supplies, as an `oci-layout://` named context's, whose blobs it stored.
   */
  provideImage(ref: string, platform: ImageSource['platform'], image: ResolvedImage): void {
    for (const r of [ref, image.ref.toString()]) {
      this.resolving.set(`${r}|${platform.os}/${platform.architecture}/${platform.variant ?? ''}`, Promise.resolve(image));
    }
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
  opExecutor(locals: Record<string, LocalDir>, onLog?: LogSink, session: BuildSession = {}, onWarning?: WarningSink): OpExecutor<WorkerRef> {
    this.sessions.set(locals, session);
    return (ctx) => this.execute(ctx, locals, onLog, session, onWarning);
  }

  /**
   * The ref with its layers as snapshots: a remote chain's blobs are fetched (only those not in the store)
   * and extracted once per chain id, through the same path as pulled image layers.
   */
  materialize(ref: WorkerRef): Promise<WorkerRef> {
    const remote = ref.remote;
    if (!remote) return Promise.resolve(ref);
    let p = this.materializing.get(ref);
    if (p) return p;
    p = (async () => {
      const layers: string[] = [];
      let chainID: Digest | undefined;
      // The chain's bottom layers that are a base image's this build resolved are that image's (kept as
      // pulled); the rest were made by build steps.
      let bases = await this.resolvedImages();
      for (const [i, l] of remote.entries()) {
        chainID = chainID ? sha256(`${chainID} ${l.diffID}`) : l.diffID;
        bases = bases.filter((b) => b.config.rootfs?.diff_ids?.[i] === l.diffID);
        const extra = bases.length ? { source: bases[0].ref.toString() } : { imported: true };
        layers.push(await this.extractLayer(chainID, layers.slice(), l.blob, l.diffID, () => this.ensureBlob(l), { created: l.created, ...extra }));
      }
      return { layers };
    })();
    p.catch(() => this.materializing.delete(ref));
    this.materializing.set(ref, p);
    return p;
  }

  /** The snapshots a remote ref was extracted into, if something needed it extracted (never extracts). */
  extracted(ref: WorkerRef): Promise<WorkerRef> | undefined {
    return ref.remote ? this.materializing.get(ref) : undefined;
  }

  /** A remote layer's blob in the content store (fetched when missing; checked where it is used). */
  async ensureBlob(layer: RemoteLayer): Promise<void> {
    // Touched when held: a blob only this use holds (a remote cache's layer) counts as recently used.
    if (!(await this.store.touch(layer.blob.digest))) await layer.fetch(this.store);
  }

  /**
   * Fetches a pulled layer's blob again from the image it came from (after the stored one failed its
   * check). False when the snapshot does not say where it came from or the fetch fails.
   */
  async refetchPulledBlob(info: SnapshotInfo): Promise<boolean> {
    if (!info.source || !info.blob) return false;
    try {
      await this.registry.fetchBlob(parseReference(info.source), info.blob, this.store);
      return await this.store.verify(info.blob.digest);
    } catch {
      return false;
    }
  }

  private async execute(
    ctx: OpContext<WorkerRef>, locals: Record<string, LocalDir>, onLog: LogSink | undefined, session: BuildSession, onWarning?: WarningSink,
  ): Promise<WorkerRef> {
    // Inputs imported from a remote cache become snapshots only now, when an op that runs needs them.
    if (ctx.inputs.some((r) => r?.remote)) ctx = { ...ctx, inputs: await Promise.all(ctx.inputs.map((r) => (r ? this.materialize(r) : r))) };
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
            return this.httpSource(this.httpKeyed.get(locals)?.get(ctx.digest), op.source, ctx.signal);
          case 'git':
            return this.gitSource(locals, ctx.digest, op.source, ctx.signal);
        }
        break;
      case 'exec':
        return this.exec(op, ctx, session, onLog);
      case 'file':
        return this.file(op, ctx.inputs, ctx.inputOps, locals, stepIdentity(ctx.metadata), ctx.previous,
          onWarning && ((message: string) => onWarning(ctx.digest, message)));
      case 'merge':
        return this.merge(op, ctx.inputs);
    }
    throw new Error(`worker: unsupported op ${(op as { kind: string }).kind}`);
  }

  private async pullImage(source: ImageSource, signal: AbortSignal): Promise<WorkerRef> {
    return this.imageSnapshots(await this.resolveImage(source.ref, source.platform), signal);
  }

  /**
   * An image's layers as extracted snapshots, bottom to top (each chain extracted once per state
   * directory): what FROM gives a build, and what `builder run` starts a container on.
   */
  async imageSnapshots(image: ResolvedImage, signal?: AbortSignal): Promise<WorkerRef> {
    const source = { ref: image.ref.toString() };
    const diffIDs = image.config.rootfs?.diff_ids ?? [];
    if (diffIDs.length !== image.layers.length) {
      throw new UserError('BAD_IMAGE', `${source.ref}: config has ${diffIDs.length} diff_ids for ${image.layers.length} layers`);
    }
    // Blobs download in parallel; extraction goes bottom-up as each parent is ready. A stored blob that
    // fails its check before extraction is fetched again.
    const fetched = image.layers.map((desc) => this.registry.fetchBlob(image.ref, desc, this.store));
    fetched.forEach((p) => p.catch(() => undefined));
    const from = image.ref.toString();
    const layers: string[] = [];
    let chainID: Digest | undefined;
    for (let i = 0; i < image.layers.length; i++) {
      signal?.throwIfAborted();
      chainID = chainID ? sha256(`${chainID} ${diffIDs[i]}`) : (diffIDs[i] as Digest);
      const parent = layers.slice();
      const desc = image.layers[i];
      const fetch = (again?: boolean) => (again ? this.registry.fetchBlob(image.ref, desc, this.store) : fetched[i]);
      const id = await this.extractLayer(chainID, parent, desc, diffIDs[i] as Digest, fetch, { source: from });
      layers.push(id);
    }
    return { layers };
  }

  /**
   * The snapshot for a layer chain, extracting it once per state directory (recorded by chain id, checked
   * against the snapshot: the record of another chain, or of an id a newer snapshot took, is not used).
   * `fetch(true)` fetches the blob again after the stored one failed its check.
   */
  private extractLayer(
    chainID: Digest, parent: string[], desc: Descriptor, diffID: Digest, fetch: (again?: boolean) => Promise<void>,
    extra: { created?: string; source?: string; imported?: boolean } = {},
  ): Promise<string> {
    let p = this.extracting.get(chainID);
    if (p) return p;
    p = (async () => {
      const recordPath = path.join(this.opts.root, 'layers', chainID.replace('sha256:', ''));
      const existing = await readJSON<{ snapshot?: unknown; parent?: unknown; uid?: unknown }>(recordPath);
      if (existing && typeof existing.snapshot === 'string' && JSON.stringify(existing.parent ?? []) === JSON.stringify(parent)) {
        const info = await this.snapshots.info<SnapshotInfo>(existing.snapshot).catch(() => null);
        if (info && info.diffID === diffID && (existing.uid === undefined || existing.uid === info.uid)) return existing.snapshot;
      }
      await fetch();
      // The tar parser only ever sees a blob that hashes to its name.
      if (!(await this.store.verify(desc.digest as Digest))) await fetch(true);
      const id = await this.snapshots.prepare();
      try {
        const { diffID: actual } = await applyLayerBlob(this.store, desc as { digest: Digest; mediaType: string }, this.snapshots.fsPath(id));
        if (actual !== diffID) throw new UserError('DIFFID_MISMATCH', `layer ${desc.digest}: diff id ${actual} does not match config ${diffID}`);
        const info: SnapshotInfo & { created?: string } = {
          diffID, blob: { digest: desc.digest as Digest, size: desc.size, mediaType: desc.mediaType },
          ...(extra.created ? { created: extra.created } : {}), ...(extra.source ? { source: extra.source } : {}),
          ...(extra.imported ? { imported: true } : {}),
        };
        await this.snapshots.commit(id, info);
      } catch (e) {
        await this.snapshots.remove(id).catch(() => undefined);
        throw e;
      }
      await writeFileAtomic(recordPath, JSON.stringify({ snapshot: id, parent, uid: await this.snapshots.uid(id) }));
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

  private async httpSource(keyed: Promise<HttpDownload> | undefined, source: HttpSource, signal: AbortSignal): Promise<WorkerRef> {
    if (keyed) return { layers: [(await keyed).snapshot] };
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
          if (exitCode !== 0 && session.onExecError) {
            // The same container state, another process: the terminal's stdio, the step's settings.
            await session.onExecError({
              args: op.meta.args, exitCode,
              run: (args) => this.executor.run({
                rootfs: mounted.target, meta: { ...op.meta, args }, mounts: extra.mounts,
                env: [...(op.meta.proxyEnv ?? []), ...extra.env, ...(op.meta.env.some((e) => e.startsWith('TERM=')) ? [] : ['TERM=xterm'])],
                signal: ctx.signal, terminal: true,
              }).then((r) => r.exitCode),
            });
          }
        } finally {
          await mounted.unmount();
        }
      } finally {
        await extra.release();
      }
      if (exitCode !== 0) throw new ExecError(op.meta.args, exitCode, true);
      const info: SnapshotInfo = { step: stepIdentity(ctx.metadata, op.platform) };
      await this.snapshots.commit(upper, info);
    } catch (e) {
      await this.snapshots.remove(upper).catch(() => undefined);
      throw e;
    }
    return { layers: [...base.layers, upper] };
  }

  private async file(
    op: FileOp, inputs: WorkerRef[], inputOps: Op[], locals: Record<string, LocalDir>, step: string | undefined, previous?: WorkerRef,
    warn?: (message: string) => void,
  ): Promise<WorkerRef> {
    const base = op.base >= 0 ? inputs[op.base] : { layers: [] };
    const copy = await singleLocalCopy(op, inputOps, locals);
    if (previous && copy) {
      const refreshed = await this.refreshCopy(copy, base, previous, step, warn);
      if (refreshed) return refreshed;
    }
    const started = Date.now();
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
      await applyFileActions(target, actions, sources, { rootOwned, warn });
    } catch (e) {
      await unmountAll(mounts);
      await this.snapshots.remove(upper).catch(() => undefined);
      throw e;
    }
    await unmountAll(mounts);
    const info: FileSnapshotInfo = { step, started, ...(copy ? { copy: copy.identity } : {}) };
    await this.snapshots.commit(upper, info);
    return { layers: [...base.layers, upper] };
  }

  /**
   * A COPY from the context redone after an edit, built from the previous build's result of the same step
   * instead of from nothing: its files are hard-linked into a new snapshot (committed snapshots never
   * change, so sharing inodes is safe) and the copy then rewrites only what differs from the context and
   * removes what is gone. Creating inodes is what a big COPY spends its time on; links are cheap.
   * Only when the result is certain to equal a fresh copy: one copy action from the context, the same
   * context directory, source and destination as before, the same layers below, and a destination that
   * the layers below do not have (or have as an empty directory, through no symlink). Null otherwise.
   */
  private async refreshCopy(
    copy: LocalCopy, base: WorkerRef, previous: WorkerRef, step: string | undefined, warn?: (message: string) => void,
  ): Promise<WorkerRef | null> {
    const prevTop = previous.layers.at(-1);
    if (!prevTop || previous.layers.length !== base.layers.length + 1 || base.layers.some((id, i) => previous.layers[i] !== id)) return null;
    const prevInfo = await this.snapshots.info<FileSnapshotInfo>(prevTop).catch(() => null);
    if (prevInfo?.copy !== copy.identity || prevInfo.started === undefined) return null;
    const started = Date.now();
    const lower = await this.snapshots.mount(base.layers);
    let upper: string | null = null;
    let cloned: Promise<void> | undefined;
    try {
      if ((await destBelow(lower.target, copy.action.dest)) === 'unusable') return null;
      upper = await this.snapshots.prepare();
      const previousFs = this.snapshots.fsPath(prevTop);
      const clone = startClone(previousFs, this.snapshots.fsPath(upper), copy.action.dest);
      const { destReady } = clone;
      cloned = clone.cloned;
      cloned.catch(() => undefined); // met by the copy, which waits for it even when it fails first
      // The copy resolves its destination first: unless the clone made the way there, it waits for all of it.
      if (!destReady) await cloned;
      await applyFileActions(this.snapshots.fsPath(upper), [copy.action], copy.sources, {
        rootOwned: new Set([copy.action.sourceInput]),
        ownerRoot: lower.target,
        warn,
        // Two seconds of slack: a file's ctime can trail the clock that stamped `started`.
        refresh: { unchangedBefore: prevInfo.started - 2000, previous: previousFs, cloned },
      });
      const info: FileSnapshotInfo = { step, started, copy: copy.identity, clonedFrom: prevTop };
      await this.snapshots.commit(upper, info);
      return { layers: [...base.layers, upper] };
    } catch {
      // The ordinary copy redoes the work and reports any error as it always does.
      await cloned?.catch(() => undefined);
      if (upper) await this.snapshots.remove(upper).catch(() => undefined);
      return null;
    } finally {
      await lower.unmount();
    }
  }

  private merge(_op: MergeOp, inputs: WorkerRef[]): WorkerRef {
    const layers: string[] = [];
    for (const input of inputs) for (const id of input.layers) if (!layers.includes(id)) layers.push(id);
    return { layers };
  }
}

/**
 * What a file op's snapshot records: when its copy started and what it copied (for refreshCopy), and the
 * snapshot a refreshed copy hard-linked its files from (GC counts shared files once).
 */
interface FileSnapshotInfo extends SnapshotInfo {
  started?: number;
  copy?: string;
  clonedFrom?: string;
}

/** A file op that is one copy straight from a context directory, with what identifies it across builds. */
interface LocalCopy { action: CopyAction; sources: (string | null)[]; identity: string }

async function singleLocalCopy(op: FileOp, inputOps: Op[], locals: Record<string, LocalDir>): Promise<LocalCopy | null> {
  if (op.actions.length !== 1) return null;
  const a = op.actions[0];
  if (a.action !== 'copy' || a.attemptUnpack || a.sourceInput < 0) return null;
  const src = directLocalCopy(op, a.sourceInput, inputOps[a.sourceInput]);
  const local = src ? locals[src.name] : undefined;
  if (!src || !local) return null;
  const action: CopyAction = src.excludePatterns ? { ...a, excludePatterns: src.excludePatterns } : a;
  const sources: (string | null)[] = inputOps.map(() => null);
  sources[a.sourceInput] = local.dir;
  const dir = await fs.realpath(local.dir).catch(() => path.resolve(local.dir));
  return { action, sources, identity: JSON.stringify([dir, a.src, a.dest, a.dirCopyContents ?? false, a.destIsDir ?? false, a.followSymlinks ?? false]) };
}

/**
 * Whether a copy's destination is new to the layers below (`absent`), an empty directory there (`empty`),
 * or anything else (`unusable`: then only a copy through the mounted stack resolves it right).
 */
async function destBelow(root: string, dest: string): Promise<'absent' | 'empty' | 'unusable'> {
  const clean = path.posix.join('/', dest);
  if (clean === '/') return 'unusable';
  const parts = clean.split('/').filter(Boolean);
  let p = root;
  for (const [i, part] of parts.entries()) {
    p = path.join(p, part);
    let st: import('node:fs').Stats;
    try {
      st = await fs.lstat(p);
    } catch (e) {
      return (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'absent' : 'unusable';
    }
    if (!st.isDirectory()) return 'unusable';
    if (i === parts.length - 1) return (await fs.readdir(p)).length === 0 ? 'empty' : 'unusable';
  }
  return 'unusable';
}

/** The clone refused the tree: it holds overlay whiteouts or opaque directories. */
class NotClonableError extends Error {}

/**
 * Starts rebuilding a committed snapshot's tree in an empty snapshot: directories made with the same
 * metadata, everything else hard-linked (native cloneTree, on the threadpool). When the snapshot holds just
 * the directories down to `dest` and what is below it, those directories are made before it returns
 * (`destReady`), so a copy can resolve its destination at once; the rest is done when `cloned` settles.
 * `cloned` rejects when the tree has overlay whiteouts or opaque directories (a copy over lower layers,
 * which refreshCopy does not take on).
 */
function startClone(from: string, to: string, dest: string): { cloned: Promise<void>; destReady: boolean } {
  const parts = path.posix.join('/', dest).split('/').filter(Boolean);
  // The directories from the root down to `dest`, when the snapshot holds nothing else beside them.
  const chain: string[] = [];
  let rel = '';
  for (const part of parts) {
    const names = fsSync.readdirSync(path.join(from, rel));
    const next = rel ? `${rel}/${part}` : part;
    if (names.length !== 1 || names[0] !== part || !fsSync.lstatSync(path.join(from, next)).isDirectory()) break;
    chain.push(next);
    rel = next;
  }
  const rootSt = fsSync.lstatSync(from);
  const stats = chain.map((c) => fsSync.lstatSync(path.join(from, c)));
  const refused = () => ({ cloned: Promise.reject(new NotClonableError()), destReady: true });
  if (!copyDirMeta(from, to, rootSt)) return refused();
  for (const [i, c] of chain.entries()) {
    fsSync.mkdirSync(path.join(to, c));
    if (!copyDirMeta(path.join(from, c), path.join(to, c), stats[i])) return refused();
  }
  const cloned = cloneTree(path.join(from, rel), path.join(to, rel)).then((ok) => {
    if (!ok) throw new NotClonableError();
    // Times last, deepest first: making the children changed them (cloneTree set `rel`'s own).
    for (let i = chain.length - 2; i >= 0; i--) fsSync.utimesSync(path.join(to, chain[i]), stats[i].atime, stats[i].mtime);
    if (rel) fsSync.utimesSync(to, rootSt.atime, rootSt.mtime);
  });
  return { cloned, destReady: chain.length === parts.length };
}

function copyDirMeta(src: string, dst: string, st: import('node:fs').Stats): boolean {
  fsSync.lchownSync(dst, st.uid, st.gid);
  fsSync.chmodSync(dst, st.mode & 0o7777);
  for (const name of listXattrs(src)) {
    if (name === 'trusted.overlay.opaque') return false;
    if (name.startsWith('trusted.overlay.')) continue; // overlay's bookkeeping (origin, impure)
    const v = getXattr(src, name);
    if (v !== null) setXattr(dst, name, v);
  }
  return true;
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
    return JSON.parse(fsSync.readFileSync(file, 'utf8')) as T;
  } catch {
    return null;
  }
}
