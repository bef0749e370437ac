// The public build entry point: Dockerfile -> frontend (LLB + image config) -> solver on the worker ->
// exporters. The CLI is a thin layer over `build()`; embedders call it directly.
import fs from 'node:fs/promises';
import path from 'node:path';
import os from 'node:os';
import { dockerfileToLLB, MAX_DOCKERFILE_BYTES, type ImageMetaResolver } from '../../frontend/index.js';
import type { NamedContext } from '../../frontend/dockerfile/dockerfile2llb.js';
import type { ImageConfigFile } from '../../frontend/dockerfile/image.js';
import PQueue from 'p-queue';
import { solveRoots, SolveError, CanceledError, defaultParallelism, fileParallelism, type OpExecutor } from '../../solver/solver.js';
import { mergeDefinitions, type Definition } from '../../solver/llb/definition.js';
import { opInputs, type Digest, type Op, type OpMetadata, type Platform } from '../../solver/llb/ops.js';
import { Worker, ExecError, type WorkerRef } from '../worker/worker.js';
import type { RegistryHostConfig } from '../registry/config.js';
import { PlainProgress, completeWriter, type FullProgressWriter } from '../progress/printer.js';
import { instantStep, subStep, type ProgressWarning, type ProgressWriter } from '../progress/writer.js';
import { UserError, BuilderError } from '../util/errors.js';
import { readFileHead } from '../util/fs.js';
import { parseOutput, parseSourceDateEpoch, resolveOutputs, type OutputSpec } from './outputs.js';
import { exportImage, exportVertex, imageLayerVariant, prepareLayerBlob, settleLayerBlobs, type ExportOptions, type ExportResult } from './export.js';
import { parsePlatforms, hostPlatform, formatPlatform } from './platform.js';
import { BuildSession } from './lock.js';
import { CacheRecords } from '../cache/records.js';
import { unpackContext } from './context.js';
import { fetchGitContext, fetchUrlContext, importLayouts, isRemoteContext, parseBuildContexts, prepareNamedContexts, type PreparedContexts, type RemoteOptions } from './remote.js';
import { isGitAddress, parseGitAddress, type GitAuth } from '../worker/git.js';
import { checkEntitlements, loadSession, parseEntitlements, parseSecretSpec, parseSshSpec, type SecretSpec, type SshSpec } from './session.js';
import { readDockerignore } from './dockerignore.js';
import { checkReport, sourceExcerpt, warningSummary, type BuildWarning, type StepWarning } from './checks.js';
import type { LintWarning } from '../../frontend/dockerfile/linter.js';
import { BuildCache, type ContextStats } from '../cache/solvecache.js';
import { applyCacheFilters } from '../cache/filters.js';
import { contentCollectionDue, parseSize } from '../cache/gc.js';
import { autoGC } from './prune.js';
import { exportCache, importCaches, inlineCacheFor, parseCacheFrom, parseCacheTo, type BuildResults, type CacheFromSpec, type CacheToSpec } from './remotecache.js';
import type { LayerDesc } from '../exporter/image.js';
import { parseExecFlags, type ExecFlagOptions } from './execflags.js';
import { CALL_NAMES, type CallName } from './subrequests.js';
import { listTargets, type Outline, type TargetList } from '../../frontend/dockerfile/subrequests.js';
import { attestationsFor, hasAttestations, resolveAttest, type AttestOptions } from '../attest/options.js';
import { Attestor, builderVersion, gitInfo, type AttestTarget } from '../attest/index.js';
import type { VcsInfo } from '../attest/provenance.js';
import { addScannerSteps } from '../attest/generator.js';
import { parseReference } from '../registry/reference.js';

/**
 * The RUN containers' settings (`--network`, `--add-host`, `--shm-size`, `--ulimit`, `--cgroup-parent`) come
 * from ExecFlagOptions. Attestations (`attest`, `provenance`, `sbom`, AttestOptions) as buildx takes them:
 * min-mode provenance is attached to image, registry and oci outputs unless `provenance: false` (or
 * BUILDX_NO_DEFAULT_ATTESTATIONS); `sbom: true` adds an SPDX SBOM of the image.
 */
export interface BuildOptions extends ExecFlagOptions, AttestOptions {
  /** The build context: a directory, or a tar stream of one, or (when no such directory exists) a remote
   * context: a git address (`https://host/repo.git#REF:SUBDIR`, `git@host:repo.git`, `git://`, `ssh://`)
   * or an http(s) URL of a context tarball or of a Dockerfile. */
  context: string | NodeJS.ReadableStream;
  /** Named contexts (`--build-context`): `NAME=VALUE` specs, or NAME -> VALUE, where VALUE is a directory,
   * `docker-image://REF`, `oci-layout://PATH[@DIGEST|:TAG]`, an http(s) URL, or a git address. */
  buildContexts?: string[] | Record<string, string>;
  /** Path of the Dockerfile; default `<context>/Dockerfile`. With a tar stream context, a relative path is
   * inside the archive. With `dockerfile`, only its name is used. */
  file?: string;
  /** The Dockerfile's text, instead of reading `file`. */
  dockerfile?: string;
  tags?: string[];
  buildArgs?: Record<string, string>;
  labels?: Record<string, string>;
  target?: string;
  /** `os/arch[/variant]`, or several separated by commas (one image index); default the host's. */
  platform?: string;
  /** `--output` specs (strings as on the command line, or parsed). */
  outputs?: (string | OutputSpec)[];
  /** State directory. */
  root?: string;
  /** `shell`: a failed RUN step opens /bin/sh in its container state, on a pseudo-terminal relayed to this process's terminal. */
  onError?: 'error' | 'shell';
  /** OCI runtime binary: `runc` (default), `crun`, or a path. */
  ociRuntime?: string;
  /** Insecure registries (`host:port`): HTTPS without verifying the certificate, then plain HTTP. */
  insecureRegistries?: string[];
  /**
   * Per-registry settings as in the builder config file (`mirrors`, `ca`, `keypair`, `http`, `insecure`,
   * keyed by registry host); when omitted, the config file's ($BUILDER_CONFIG, else
   * $XDG_CONFIG_HOME/builder/config.json), so the library and the CLI reach registries alike.
   */
  registries?: Record<string, RegistryHostConfig>;
  /** `--push`: shorthand for `--output type=image,push=true` (with the tags). */
  push?: boolean;
  /** `--load`: shorthand for `--output type=docker` (into the docker daemon). */
  load?: boolean;
  /** `--annotation`: manifest annotations for every image output. */
  annotations?: Record<string, string>;
  noCache?: boolean;
  /** Stages whose steps ignore the cache (`--no-cache-filter`). */
  noCacheFilter?: string[];
  /** Re-resolve and re-check base images instead of reusing a cached FROM (`--pull`). */
  pull?: boolean;
  /** After the build, evict least recently used cache while the state exceeds this many bytes
   * (default: env BUILDER_GC_KEEP_STORAGE, e.g. `20GB`; unset means no automatic GC). */
  gcKeepStorage?: number;
  maxParallelism?: number;
  progress?: ProgressWriter;
  signal?: AbortSignal;
  /** `--secret` specs: values for `RUN --mount=type=secret`. */
  secrets?: (string | SecretSpec)[];
  /** `--ssh` specs: agents for `RUN --mount=type=ssh`. */
  ssh?: (string | SshSpec)[];
  /** `--allow` entitlements: `network.host`, `security.insecure`. */
  allow?: string[];
  /** Only run the build checks over every stage (`--check`): nothing is built or exported. */
  check?: boolean;
  /** `--call`: `build` (default); `check` (as `check: true`); `outline` (the target's build args, secrets
   * and SSH agents: `BuildResult.outline`); `targets` (the stages: `BuildResult.targets`). Only `build` builds. */
  call?: CallName;
  /** `--cache-to` specs: `type=local,dest=DIR[,mode=max]`, `type=registry,ref=REF`, `type=inline`. */
  cacheTo?: (string | CacheToSpec)[];
  /** `--cache-from` specs: `type=local,src=DIR`, `type=registry,ref=REF` (or just `REF`). */
  cacheFrom?: (string | CacheFromSpec)[];
  /** Builds run together as one (bake): see BuildGroup. */
  group?: BuildGroup;
  /** Bake's `contexts = { NAME = "target:OTHER" }`: another build's graph and image config as named context
   * NAME, ready once that build has converted its Dockerfile. */
  linkedContexts?: Record<string, Promise<LinkedContext>>;
  /** Told this build's converted graph and image config (first platform), for the builds that link to it. */
  onConverted?: (c: LinkedContext) => void;
}

/**
 * Several builds solved as one (`bake`): they share one worker and one state-directory session, opened and
 * ended by whoever made the group, and an op with the same cache key runs once for all of them (the solver's
 * `shared`), its result handed to every build that needs it.
 */
export interface BuildGroup {
  worker: Worker;
  shared: Map<Digest, Promise<WorkerRef>>;
  /** One queue for the group's ops: `maxParallelism` bounds all its builds together; file and merge ops
   * have their own (the solver's maxFileParallelism), the same one when `maxParallelism` is given. */
  queue: PQueue;
  fileQueue: PQueue;
}

export interface LinkedContext {
  definition: Definition;
  config: ImageConfigFile;
}

export interface BuildResult {
  /** Digest of the image manifest, when an image was exported. */
  manifestDigest?: Digest;
  /** Digest of the image config (the "image ID" Docker shows). */
  configDigest?: Digest;
  exports: ExportResult[];
  /**
   * Build check warnings (BuildKit's lint rules), then the steps' own (an owner name the image does not
   * have; only from steps that ran, not from cache hits). A build prints them, they do not fail it.
   */
  warnings: BuildWarning[];
  /** With `check`: the report to print (rules, descriptions, Dockerfile excerpts). */
  checkReport?: string[];
  /** With `call: 'outline'`: the target's parameters (print with `formatOutline`). */
  outline?: Outline;
  /** With `call: 'targets'`: the Dockerfile's stages (print with `formatTargets`). */
  targets?: TargetList;
}

/** A failed build, with a one-line message naming the Dockerfile line: `Dockerfile:7: COPY failed: ...`. */
export class BuildError extends UserError {
  /** Lines to show before the error: the Dockerfile around the line at fault, check warnings. */
  details: string[] = [];

  constructor(message: string, readonly outputTail: string[] = [], options?: { cause?: unknown }) {
    super('BUILD_FAILED', message, options);
  }
}

export function defaultRoot(): string {
  if (process.env.BUILDER_ROOT) return process.env.BUILDER_ROOT;
  if (process.getuid?.() === 0) return '/var/lib/builder';
  const data = process.env.XDG_DATA_HOME || path.join(os.homedir(), '.local', 'share');
  return path.join(data, 'builder');
}

/**
 * `--on-error=shell`: a failed RUN step opens a shell in its container state on this terminal, one at a
 * time; the build fails as it would once the shell exits.
 */
function debugShell(): NonNullable<import('../worker/mounts.js').BuildSession['onExecError']> {
  let queue = Promise.resolve();
  return (failed) => {
    const turn = queue.then(async () => {
      process.stderr.write(`\nERROR: process "${failed.args.join(' ')}" did not complete successfully: exit code: ${failed.exitCode}\n`
        + 'Debug shell in the failed step\'s container state (its changes so far included); exit to end the build.\n');
      const code = await failed.run(['/bin/sh']);
      process.stderr.write(`Debug shell exited (${code}).\n`);
    });
    queue = turn.catch(() => undefined);
    return turn;
  };
}

export async function build(opts: BuildOptions): Promise<BuildResult> {
  try {
    return await buildFrom(opts);
  } catch (e) {
    // A full disk (the state directory's, a destination's) is the machine's state, not a bug: one line.
    throw diskFullError(e, 'writing the state directory or an output') ?? e;
  }
}

const DISK_FULL = new Set(['ENOSPC', 'EDQUOT']);

/** A BuildError for a disk-full errno, naming what was being written; undefined for anything else. */
export function diskFullError(e: unknown, what: string): BuildError | undefined {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (e instanceof BuildError || !code || !DISK_FULL.has(code)) return undefined;
  const file = (e as NodeJS.ErrnoException).path;
  return new BuildError(`${what}${file ? ` (${file})` : ''}: ${code === 'EDQUOT' ? 'disk quota exceeded' : 'no space left on device'}`, [], { cause: e });
}

/** The state directory (made 0700, as BuildKit's root: layers below hold device nodes and setuid files with
 * their image's modes) and a worker on it that reports damaged blobs it meets (removed, then made or
 * fetched again) as a step of the build. What build() and solve() share. */
export async function openWorker(root: string, opts: Omit<ConstructorParameters<typeof Worker>[0], 'root'>, progress: FullProgressWriter): Promise<Worker> {
  await fs.mkdir(root, { recursive: true, mode: 0o700 });
  const worker = new Worker({ root, ...opts });
  worker.store.onCorrupt = (digest) => {
    const id = `internal:corrupt:${digest}`;
    progress.start({ id, name: `[internal] WARNING: stored content ${digest} did not hash to its digest: removed, making it again` });
    progress.done(id);
  };
  return worker;
}

async function buildFrom(opts: BuildOptions): Promise<BuildResult> {
  if (typeof opts.context === 'string') {
    const ctx = opts.context;
    if (ctx === '' || !isRemoteContext(ctx) || (await fs.stat(ctx).catch(() => null))?.isDirectory()) return buildDir({ ...opts, context: ctx });
    // As buildx: a local directory wins; otherwise the URL or git address is fetched into a directory.
    const progress = completeWriter(opts.progress ?? new PlainProgress(process.stderr));
    const remote: RemoteOptions = {
      root: path.resolve(opts.root ?? defaultRoot()), insecureRegistries: opts.insecureRegistries, registries: opts.registries,
      auth: await gitAuth(opts), signal: opts.signal, progress,
    };
    const fetched = isGitAddress(ctx, { bareGithub: true })
      ? await fetchGitContext(ctx, { ...remote, keepGitDir: truthy(opts.buildArgs?.BUILDKIT_CONTEXT_KEEP_GIT_DIR) })
      : await fetchUrlContext(ctx, remote);
    try {
      // As BuildKit reads `-f` for a remote context: a relative path names a file inside it.
      const file = opts.file !== undefined && !path.isAbsolute(opts.file) ? path.join(fetched.dir, opts.file) : opts.file;
      // The checkout has no .git (unless kept): provenance takes the repository and commit from the fetch.
      const vcs = 'commit' in fetched && !/^(0|false)$/i.test(process.env.BUILDX_GIT_INFO ?? '') ? { source: parseGitAddress(ctx).remote.replace(/^(https?:\/\/)[^@/]*@/, '$1'), revision: fetched.commit as string } : undefined;
      return await buildDir({ ...opts, progress, context: fetched.dir, file, temporary: true, ephemeral: !('commit' in fetched), vcs, ...(fetched.dockerfile !== undefined && opts.dockerfile === undefined ? { dockerfile: fetched.dockerfile } : {}) });
    } finally {
      await fetched.remove();
    }
  }
  const unpacked = await unpackContext(opts.context).catch((e: Error) => {
    throw new BuildError(`unable to prepare context: not a readable tar stream: ${e.message}`);
  });
  try {
    // As BuildKit reads `-f` for a tar context: a relative path names a file inside the archive.
    const file = opts.file !== undefined && !path.isAbsolute(opts.file) ? path.join(unpacked.dir, opts.file) : opts.file;
    return await buildDir({ ...opts, context: unpacked.dir, file, temporary: true, ephemeral: true });
  } finally {
    await unpacked.remove();
  }
}

/** A build arg's boolean value as BuildKit reads it (strconv.ParseBool). */
function truthy(v: string | undefined): boolean {
  return v !== undefined && /^(1|t|true)$/i.test(v);
}

/** What git may use to reach a private repository: the `--ssh default` agent (else $SSH_AUTH_SOCK, as git
 * itself would) and the GIT_AUTH_TOKEN / GIT_AUTH_HEADER secrets. Credential helpers and tokens in the
 * address need nothing here. */
async function gitAuth(opts: BuildOptions): Promise<GitAuth> {
  const specs = (opts.ssh ?? []).map((x) => (typeof x === 'string' ? parseSshSpec(x) : x));
  const agent = specs.find((s) => s.id === 'default') ?? specs[0];
  const sock = agent ? agent.path ?? process.env.SSH_AUTH_SOCK : undefined;
  const gitSecrets = (opts.secrets ?? []).map((x) => (typeof x === 'string' ? parseSecretSpec(x) : x)).filter((s) => /^GIT_AUTH_(TOKEN|HEADER)(\.|$)/.test(s.id));
  const secrets = gitSecrets.length ? (await loadSession(gitSecrets, [])).secrets : undefined;
  return { ...(sock ? { sshAuthSock: sock } : {}), ...(secrets?.size ? { secrets } : {}) };
}

/** `temporary`: the context is a directory the build unpacked or fetched; what is in it is named by its path
 * inside the context, as BuildKit names it, not by a temporary path the user never saw. `ephemeral`: it is
 * removed after the build (a kept git checkout is not), so no checksum index is kept for it. */
async function buildDir(opts: BuildOptions & { context: string; temporary?: boolean; ephemeral?: boolean; vcs?: VcsInfo }): Promise<BuildResult> {
  // path.resolve('') is the working directory: nothing is built from a place the caller did not name.
  if (opts.context === '') throw new UserError('NO_CONTEXT', 'please specify build context (e.g. "." for the current directory)');
  const root = path.resolve(opts.root ?? defaultRoot());
  // Whatever writer the caller gave, the build calls a complete one (see completeWriter).
  const progress = completeWriter(opts.progress ?? new PlainProgress(process.stderr));
  const contextDir = path.resolve(opts.context);
  const dockerfilePath = path.resolve(opts.file ?? path.join(contextDir, 'Dockerfile'));
  const filename = path.basename(dockerfilePath);
  const inContext = path.relative(contextDir, dockerfilePath);
  const dockerfileShown = opts.temporary && !inContext.startsWith('..') && !path.isAbsolute(inContext) ? inContext : dockerfilePath;
  const outputs = resolveOutputs((opts.outputs ?? []).map((o) => (typeof o === 'string' ? parseOutput(o) : o)), opts);
  const sourceDateEpoch = parseSourceDateEpoch(opts.buildArgs?.SOURCE_DATE_EPOCH ?? process.env.SOURCE_DATE_EPOCH);
  const platforms = opts.platform ? parsePlatforms(opts.platform) : [hostPlatform()];
  const cacheTo = (opts.cacheTo ?? []).map((c) => (typeof c === 'string' ? parseCacheTo(c) : c));
  const cacheFrom = (opts.cacheFrom ?? []).map((c) => (typeof c === 'string' ? parseCacheFrom(c) : c));
  const startedOn = new Date();

  const call = opts.call ?? (opts.check ? 'check' : 'build');
  if (!CALL_NAMES.includes(call)) throw new UserError('INVALID_OPTION', `unknown call "${call}": use ${CALL_NAMES.join(', ')}`);
  const check = call === 'check';
  const exec = parseExecFlags(opts);
  // As buildx: asking for the host network is allowing it.
  const allowed = parseEntitlements([...(opts.allow ?? []), ...(exec.network === 'host' ? ['network.host'] : [])]);
  const clientSession = await loadSession(
    (opts.secrets ?? []).map((x) => (typeof x === 'string' ? parseSecretSpec(x) : x)),
    (opts.ssh ?? []).map((x) => (typeof x === 'string' ? parseSshSpec(x) : x)),
  );
  if (opts.onError === 'shell') clientSession.onExecError = debugShell();

  const ctxStat = await fs.stat(contextDir).catch(() => null);
  if (!ctxStat?.isDirectory()) throw new BuildError(`unable to prepare context: path "${opts.context}" not found`);

  const named = await prepareNamedContexts(parseBuildContexts(opts.buildContexts ?? []), {
    root, insecureRegistries: opts.insecureRegistries, registries: opts.registries, auth: await gitAuth(opts), signal: opts.signal, progress,
  });
  try {
    return await buildWithContexts(opts, { root, progress, contextDir, dockerfilePath, dockerfileShown, filename, outputs, sourceDateEpoch, platforms, cacheTo, cacheFrom, call, check, exec, allowed, clientSession, named, startedOn });
  } finally {
    await named.remove();
  }
}

async function buildWithContexts(opts: BuildOptions & { context: string; ephemeral?: boolean; vcs?: VcsInfo }, prep: {
  root: string; progress: FullProgressWriter; contextDir: string; dockerfilePath: string; dockerfileShown: string; filename: string; outputs: OutputSpec[];
  sourceDateEpoch: number | undefined; platforms: Platform[]; cacheTo: CacheToSpec[]; cacheFrom: CacheFromSpec[]; call: CallName; check: boolean;
  exec: ReturnType<typeof parseExecFlags>; allowed: ReturnType<typeof parseEntitlements>; clientSession: Awaited<ReturnType<typeof loadSession>>; named: PreparedContexts; startedOn: Date;
}): Promise<BuildResult> {
  const { root, progress, contextDir, dockerfilePath, dockerfileShown, filename, outputs, sourceDateEpoch, platforms, cacheTo, cacheFrom, call, check, exec, allowed, clientSession, named, startedOn } = prep;
  const attestRequest = resolveAttest(opts, { buildArgs: opts.buildArgs });
  const attesting = outputs.some((o) => hasAttestations(attestationsFor(attestRequest, o)));
  const group = opts.group;
  const worker = group?.worker ?? await openWorker(root, { runtime: opts.ociRuntime, insecureRegistries: opts.insecureRegistries, registries: opts.registries }, progress);
  // Builds run side by side; what killed builds left is cleared only by a build that is alone.
  const session = group ? undefined : await BuildSession.start(root, async (alone) => {
    await worker.init({ recover: alone });
    if (alone) await new CacheRecords(root, worker.snapshots).cleanup();
  }, opts.signal);
  try {
    await importLayouts(worker, named.layouts, platforms);

    const loadId = 'internal:dockerfile';
    progress.start({ id: loadId, name: `[internal] load build definition from ${filename}` });
    // One byte over the frontend's limit is enough for it to say so, naming the line.
    const dockerfile = opts.dockerfile ?? await readFileHead(dockerfilePath, MAX_DOCKERFILE_BYTES + 1).catch(() => {
      progress.error(loadId, 'not found');
      throw new BuildError(`failed to read dockerfile: open ${dockerfileShown}: no such file or directory`);
    });
    instantStep(progress, loadId, 'transferring dockerfile:', Buffer.byteLength(dockerfile));
    progress.done(loadId);
    if (call === 'targets') {
      try {
        return { exports: [], warnings: [], targets: listTargets(dockerfile, filename) };
      } catch (e) {
        throw withDetails(toBuildError(e, filename), e, filename, dockerfile);
      }
    }
    const contextExcludes = await readDockerignore(contextDir, opts.dockerfile !== undefined && opts.file === undefined ? undefined : dockerfilePath);

    const metaShown = new Set<string>();
    const resolver: ImageMetaResolver = {
      resolveImageConfig: async (ref: string, platform: Platform) => {
        const id = `internal:meta:${ref}:${formatPlatform(platform)}`;
        // One progress step per image, however many stages use it (the worker memoizes the resolve).
        if (metaShown.has(id)) {
          const image = await worker.resolveImage(ref, platform);
          return { ref: image.ref.toString(), config: image.config };
        }
        metaShown.add(id);
        // Several target platforms: each platform's resolve is named by it, as BuildKit does.
        const internal = platforms.length > 1 ? `[${formatPlatform(platform)} internal]` : '[internal]';
        progress.start({ id, name: `${internal} load metadata for ${ref}` });
        try {
          const image = await worker.resolveImage(ref, platform);
          progress.done(id);
          return { ref: image.ref.toString(), config: image.config };
        } catch (e) {
          progress.error(id, (e as Error).message);
          throw e;
        }
      },
    };

    // One conversion per target platform; their graphs are solved together, sharing what they have in common
    // (a stage pinned to $BUILDPLATFORM runs once for all of them).
    const linked: Record<string, NamedContext> = {};
    for (const [k, p] of Object.entries(opts.linkedContexts ?? {})) linked[k] = { type: 'definition', name: k, ...(await p) };
    let perPlatform;
    try {
      perPlatform = await Promise.all(platforms.map((targetPlatform, i) => dockerfileToLLB({
        dockerfile, filename, target: opts.target, buildArgs: opts.buildArgs, labels: opts.labels,
        targetPlatform, buildPlatform: hostPlatform(), resolver, contextExcludes, noCache: opts.noCache, allStages: check,
        platformPrefix: platforms.length > 1, ...exec, outline: call === 'outline' && i === 0, namedContexts: { ...named.contexts, ...linked },
      })));
      for (const c of perPlatform) checkEntitlements(c.definition, allowed);
    } catch (e) {
      throw withDetails(toBuildError(e, filename), e, filename, dockerfile);
    }
    const converted = perPlatform[0];
    opts.onConverted?.({ definition: converted.definition, config: converted.image });
    if (converted.syntax) {
      // Shown, as BuildKit shows the frontend image it resolves; this builder always uses its own frontend.
      const id = 'internal:syntax';
      progress.start({ id, name: `[internal] syntax ${converted.syntax}: using the built-in Dockerfile frontend` });
      progress.done(id);
    }
    if (check) {
      return { exports: [], warnings: converted.warnings, checkReport: checkReport(converted.warnings, filename, dockerfile) };
    }
    // As BuildKit: build check warnings belong to the step that loaded the Dockerfile.
    for (const w of converted.warnings) progress.warning(lintWarning(loadId, w, filename, dockerfile));
    if (call === 'outline') return { exports: [], warnings: converted.warnings, outline: converted.outline };

    const names = new Map<Digest, string>();
    const definition = mergeDefinitions(perPlatform.map((c) => c.definition));
    const stepWarnings: StepWarning[] = [];
    const warned = new Set<string>();
    const onWarning = (digest: Digest, message: string) => {
      // A step retried another way (a refreshed COPY falling back to a fresh one) says it once.
      if (warned.has(`${digest} ${message}`)) return;
      warned.add(`${digest} ${message}`);
      const location = definition.metadata[digest]?.location;
      stepWarnings.push({ message, ...(location ? { location } : {}) });
      // A warning event, as BuildKit reports a step's warnings (plain and tty print `WARN:`, rawjson a warning).
      progress.warning({
        vertex: digest, level: 1, short: message,
        ...(location ? { sourceInfo: { filename, data: dockerfile, language: 'Dockerfile' }, range: [{ start: { line: location.startLine }, end: { line: location.endLine ?? location.startLine } }] } : {}),
      });
    };
    applyCacheFilters(definition, { noCacheFilter: opts.noCacheFilter, pull: opts.pull });
    const locals = { ...named.locals, context: { dir: contextDir, ...(opts.ephemeral ? { ephemeral: true } : {}) } };
    const remote = await importCaches(worker, cacheFrom, { platforms, progress });
    const cache = new BuildCache({
      root, worker, locals, buildArgs: Object.keys(opts.buildArgs ?? {}), noCacheFilter: opts.noCacheFilter,
      scope: `${dockerfilePath}\0${opts.target ?? ''}\0${opts.platform ?? ''}`, remote,
    });
    const roots = perPlatform.map((c) => c.definition.root);
    // An SBOM of other stages (scan-stage, or a stage's ARG BUILDKIT_SBOM_SCAN_STAGE=true) needs their results too.
    const sbom = attesting ? attestRequest.sbom : undefined;
    const scanned = perPlatform.map((c) => (sbom ? c.stages.filter((st) => sbom.scanStage || st.scan) : []));
    // `generator=IMAGE`: the scanner runs as one more step per platform (BuildKit's scanner protocol).
    const generator = sbom?.generator;
    let scanners: Digest[] = [];
    if (generator) {
      const id = `internal:scanner:${generator}`;
      progress.start({ id, name: `[internal] load metadata for ${generator}` });
      const image = await worker.resolveImage(parseReference(generator).toString(), hostPlatform()).catch((e: Error) => {
        progress.error(id, e.message);
        throw new BuildError(`failed to resolve SBOM scanner ${generator}: ${e.message}`, [], { cause: e });
      });
      progress.done(id);
      const contextOp = sbom.scanContext ? contextOpOf(definition) : undefined;
      scanners = perPlatform.map((_c, i) => addScannerSteps(definition,
        { ref: image.ref.toString(), platform: hostPlatform(), config: image.config.config ?? {} }, generator, roots[i],
        [...scanned[i].map((st) => ({ name: `sbom-${st.name}`, digest: st.digest })), ...(contextOp ? [{ name: 'sbom-context', digest: contextOp }] : [])],
        formatPlatform(platforms[i]), sbom.params));
    }
    const solveList = [...roots, ...scanned.flat().map((st) => st.digest), ...scanners];
    // Reported here: the solver's events for it (when an op reads the context through it) are not shown.
    const context = contextStep(definition, progress, () => cache.contextStats());
    const solved = await solveRoots<WorkerRef>(definition, solveList, {
      maxParallelism: opts.maxParallelism,
      signal: opts.signal,
      cache,
      needsInput: (op, i, inputOp) => worker.needsInput(op, i, inputOp),
      // Base images pull while the context is checksummed. Not with imported caches: a remote hit above
      // an image needs no pull at all, and the pull would be wasted.
      startEarly: remote ? undefined : (op) => op.kind === 'source' && op.source.type === 'image',
      shared: opts.group?.shared,
      queue: opts.group?.queue,
      fileQueue: opts.group?.fileQueue,
      execute: compressEarly(worker.opExecutor(locals, (digest, stream, chunk) => progress.log(digest, stream, chunk), clientSession, onWarning),
        worker, definition, roots, outputs, sourceDateEpoch),
      onEvent: (ev) => {
        if (context?.readers.has(ev.digest)) context.finish(cache.contextStats());
        if (ev.digest === context?.id) return;
        if (ev.type === 'start') {
          progress.start({
            id: ev.digest, name: vertexName(ev.metadata, names, ev.digest), cacheKey: ev.cacheKey, cacheMiss: ev.cacheMiss, cacheReused: ev.reused,
            inputs: opInputs(definition.ops[ev.digest]).map((i) => i.digest),
          });
        } else if (ev.type === 'cached') progress.done(ev.digest, { cached: true });
        else if (ev.type === 'done') progress.done(ev.digest);
        else if (ev.type === 'error') progress.error(ev.digest, errorMessage(ev.error));
        else progress.canceled(ev.digest);
      },
    }).catch((e) => {
      throw withDetails(toBuildError(e, filename, progress), e, filename, dockerfile);
    }).finally(() => {
      context?.finish(cache.contextStats());
      return cache.finish().catch(() => undefined);
    });

    const refs = solved.slice(0, roots.length);
    const stageRefs = new Map(scanned.flat().map((st, i) => [st.digest, solved[roots.length + i]]));
    const scannerRefs = solved.slice(solveList.length - scanners.length);

    const built: BuildResults = { definition, roots, results: cache.results };
    let attest: ExportOptions['attest'];
    if (attesting) {
      const httpDigests = new Map<Digest, string>();
      for (const [d, op] of Object.entries(definition.ops) as [Digest, Op][]) {
        if (op.kind !== 'source' || op.source.type !== 'http') continue;
        const got = await worker.httpDownloadDigest(locals, d);
        if (got) httpDigests.set(d, got);
      }
      const targets: AttestTarget[] = perPlatform.map((c, i) => ({
        ref: refs[i], root: roots[i], platform: platforms[i],
        stages: scanned[i].map((st) => ({ name: st.name, ref: stageRefs.get(st.digest)!, scan: st.scan })),
        ...(generator ? { scanner: scannerRefs[i], scannerRoot: scanners[i] } : {}),
      }));
      const attestor = new Attestor(worker, attestRequest, {
        definition, filename, buildArgs: opts.buildArgs ?? {}, labels: opts.labels, target: opts.target,
        platforms, noCache: opts.noCache, httpDigests, vcs: attestRequest.provenance ? opts.vcs ?? await gitInfo(contextDir) : undefined,
        startedOn, sourceDateEpoch, builderVersion: builderVersion(),
      }, targets, contextDir);
      attest = { request: attestRequest, predicates: (i, req) => attestor.predicates(i, req) };
    }
    const inline = cacheTo.some((c) => c.type === 'inline');
    const exports: ExportResult[] = [];
    // Local image store names wait for every output: a build whose push or other export failed records none.
    const keep: NonNullable<ExportOptions['keep']> = [];
    for (const output of outputs) {
      const results = perPlatform.map((c, i) => ({ ref: refs[i], image: c.image, platform: platforms[i] }));
      exports.push(await exportImage(worker, results, output, {
        tags: opts.tags ?? [], progress, sourceDateEpoch, annotations: opts.annotations, insecureRegistries: opts.insecureRegistries, registries: opts.registries, keep, attest,
        ...(inline ? { inlineCache: (i: number, layers: LayerDesc[]) => inlineCacheFor(worker, built, i, layers) } : {}),
      }).catch((e: unknown) => {
        progress.error(exportVertex(output), errorMessage(e));
        throw diskFullError(e, `exporting to ${output.dest ?? output.type}`) ?? e;
      }));
    }
    for (const k of keep) await worker.images.put(k.names, k.target, { repoDigests: k.pushed ? k.names : [] });
    for (const spec of cacheTo) await exportCache(worker, spec, built, { progress });
    const gcLimit = opts.gcKeepStorage ?? (process.env.BUILDER_GC_KEEP_STORAGE ? parseSize(process.env.BUILDER_GC_KEEP_STORAGE) : undefined);
    // A build that added blobs may have left some nothing references (the default provenance's are new
    // every time): collected when enough have come since the last collection (one directory listing here).
    if (session && gcLimit !== undefined) await session.ifAlone(root, () => autoGC(root, gcLimit));
    else if (session && worker.store.written > 0 && await contentCollectionDue(root)) {
      await session.ifAlone(root, () => autoGC(root, undefined)).catch(() => undefined);
    }
    const image = exports.find((e) => e.manifestDigest);
    return { manifestDigest: image?.manifestDigest, configDigest: image?.configDigest, exports, warnings: [...converted.warnings, ...stepWarnings] };
  } finally {
    // A group's worker and session outlive each of its builds: the group's maker settles and ends them.
    if (session) {
      await settleLayerBlobs(worker).catch(() => undefined);
      await session.end();
    }
  }
}

/** The build context's local source op, if the build reads the context. */
function contextOpOf(definition: Definition): Digest | undefined {
  return (Object.keys(definition.ops) as Digest[]).find((d) => {
    const op = definition.ops[d];
    return op.kind === 'source' && op.source.type === 'local' && op.source.name === 'context';
  });
}

/**
 * BuildKit's `[internal] load build context` step with its `transferring context: N` sub-step. The context
 * is read in place here, not sent: the step lasts while the context is checksummed for the keys of the
 * steps that copy from it (nothing else waits for that: base images pull meanwhile), N is what was read
 * of it, the files new or changed since the last build, as BuildKit's transfer sends only those, and
 * grows as they are read. At the end a line says how many files the context has and how many were read.
 * Over when the first step that reads the context starts (or is found cached), or at the solve's end.
 */
function contextStep(definition: Definition, progress: FullProgressWriter, stats: () => ContextStats): { id: Digest; readers: Set<Digest>; finish(s: ContextStats): void } | undefined {
  // The step is the local source op's vertex: the steps that copy from the context name it as an input.
  const id = contextOpOf(definition);
  if (!id) return undefined;
  const readers = new Set((Object.keys(definition.ops) as Digest[]).filter((d) => opInputs(definition.ops[d]).some((i) => i.digest === id)));
  const started = Date.now();
  progress.start({ id, name: '[internal] load build context' });
  const transfer = subStep(progress, id, 'transferring context:');
  // The printers decide what to show of these (plain: every few seconds; tty: each).
  const ticker = setInterval(() => transfer.update(stats().bytes), 1000);
  ticker.unref();
  let over = false;
  return {
    id,
    readers,
    finish(s) {
      if (over) return;
      over = true;
      clearInterval(ticker);
      transfer.done(s.bytes);
      progress.status({ vertex: id, id: contextFilesLine(s), started, completed: Date.now() });
      progress.done(id);
    },
  };
}

/** The context step's last line: `context: 100000 files, 12 read` (read: new or changed since the last build). */
function contextFilesLine(s: ContextStats): string {
  return `context: ${s.files} ${s.files === 1 ? 'file' : 'files'}, ${s.filesRead} read`;
}

/**
 * With an image output, a layer of the exported image is compressed as soon as its step is done, while the
 * steps after it run (a big COPY's layer while the RUN over it runs), not when the export gets to it.
 * Only the ops whose result is a layer of a root's chain: an intermediate stage's layers are never exported.
 */
function compressEarly(
  execute: OpExecutor<WorkerRef>, worker: Worker, definition: Definition, roots: Digest[], outputs: OutputSpec[], sourceDateEpoch?: number,
): OpExecutor<WorkerRef> {
  const image = outputs.find((o) => o.type === 'oci' || o.type === 'docker' || o.type === 'image' || o.type === 'registry');
  if (!image) return execute;
  const variant = imageLayerVariant(image, sourceDateEpoch);
  const chain = new Set<Digest>();
  for (const root of roots) {
    let digest: Digest | undefined = root;
    while (digest && !chain.has(digest)) {
      const op: Op | undefined = definition.ops[digest];
      if (!op || (op.kind !== 'exec' && op.kind !== 'file')) break;
      chain.add(digest);
      const below: { digest: Digest } | undefined = op.kind === 'file'
        ? op.inputs[op.base]
        : op.inputs[op.mounts.find((m) => m.dest === '/')?.input ?? -1];
      digest = below?.digest;
    }
  }
  return async (ctx) => {
    const result = await execute(ctx);
    // Stopped with the solve: a failed or interrupted build does not wait for a blob it will not export.
    if (chain.has(ctx.digest)) prepareLayerBlob(worker, result, variant, ctx.signal);
    return result;
  };
}

function vertexName(meta: OpMetadata, names: Map<Digest, string>, digest: Digest): string {
  const name = meta.description ?? digest;
  names.set(digest, name);
  return name;
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** The instruction keyword of an op, from its description `[stage 2/3] RUN make` (`ONBUILD RUN` for a trigger's). */
function instructionOf(meta: OpMetadata): string | undefined {
  return /\]\s+((?:ONBUILD\s+)?[A-Z]+)\b/.exec(meta.description ?? '')?.[1];
}

/** A build check warning as a progress warning: BuildKit's short form, the rule's description and URL, the lines. */
function lintWarning(vertex: string, w: LintWarning, filename: string, dockerfile: string): ProgressWarning {
  const loc = w.location;
  return {
    vertex, level: 1,
    short: `${w.rule}: ${w.message}${loc ? ` (line ${loc.startLine})` : ''}`,
    detail: [w.description], url: w.url,
    ...(loc ? {
      sourceInfo: { filename, data: dockerfile, language: 'Dockerfile' },
      range: [{ start: { line: loc.startLine }, end: { line: loc.endLine ?? loc.startLine } }],
    } : {}),
  };
}

/** Adds what BuildKit shows above an error: the failed check warnings, the Dockerfile lines at fault. */
function withDetails(err: Error, cause: unknown, filename: string, dockerfile: string): Error {
  if (!(err instanceof BuildError)) return err;
  const warnings = (cause as { warnings?: LintWarning[] }).warnings;
  if (warnings) err.details.push(...warningSummary(warnings));
  const loc = cause instanceof SolveError ? cause.metadata.location : (cause as { location?: { file?: string; startLine: number; endLine?: number } }).location;
  if (loc && (!loc.file || loc.file === filename)) err.details.push(...sourceExcerpt(filename, dockerfile, loc.startLine, loc.endLine ?? loc.startLine));
  return err;
}

/** Renders any failure of the frontend or the solve as a one-line BuildError. */
function toBuildError(e: unknown, filename: string, progress?: FullProgressWriter): Error {
  if (e instanceof BuildError) return e;
  if (e instanceof SolveError) {
    const loc = e.metadata.location;
    const where = loc ? `${loc.file || filename}:${loc.startLine}: ` : '';
    const instruction = instructionOf(e.metadata);
    const cause = e.cause;
    if (cause instanceof UserError || cause instanceof BuilderError) {
      const tail = cause instanceof ExecError && progress ? progress.tail(e.digest, 5) : [];
      return new BuildError(`${where}${instruction ? `${instruction} failed: ` : ''}${cause.message}`, tail, { cause });
    }
    if (cause instanceof CanceledError) return cause;
    // An unexpected error inside an op: still name the line, keep the cause for debugging.
    return new BuildError(`${where}${instruction ? `${instruction} failed: ` : ''}${errorMessage(cause)}`, [], { cause });
  }
  const loc = (e as { location?: { file?: string; startLine: number } }).location;
  if (e instanceof UserError) {
    return new BuildError(loc ? `${loc.file || filename}:${loc.startLine}: ${e.message}` : e.message, [], { cause: e });
  }
  return e as Error;
}

/** Opens a BuildGroup on the state directory `root` (a worker and its session), for builds run as one. */
export async function openBuildGroup(root: string, opts: Pick<BuildOptions, 'ociRuntime' | 'insecureRegistries' | 'registries' | 'signal' | 'maxParallelism'>, progress: FullProgressWriter): Promise<{ group: BuildGroup; end(): Promise<void> }> {
  const worker = await openWorker(root, { runtime: opts.ociRuntime, insecureRegistries: opts.insecureRegistries, registries: opts.registries }, progress);
  const session = await BuildSession.start(root, async (alone) => {
    await worker.init({ recover: alone });
    if (alone) await new CacheRecords(root, worker.snapshots).cleanup();
  }, opts.signal);
  const queue = new PQueue({ concurrency: opts.maxParallelism ?? defaultParallelism() });
  const fileQueue = opts.maxParallelism !== undefined ? queue : new PQueue({ concurrency: fileParallelism() });
  return {
    group: { worker, shared: new Map(), queue, fileQueue },
    async end() {
      await settleLayerBlobs(worker).catch(() => undefined);
      // As a lone build's end: the group's blobs nothing references are collected when due.
      if (worker.store.written > 0 && await contentCollectionDue(root)) await session.ifAlone(root, () => autoGC(root, undefined)).catch(() => undefined);
      await session.end();
    },
  };
}
