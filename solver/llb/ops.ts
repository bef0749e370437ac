// LLB: the low-level build graph. Every op is a plain JSON value; its digest is the sha256 of its canonical
// serialization, which includes the digests of its inputs, so equal ops have equal digests (see digest.ts).
// The solver knows nothing of Dockerfiles: frontends produce these ops, workers execute them.

export type Digest = `sha256:${string}`;

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

/** A reference to another op's output (every op has a single output, its root filesystem). */
export interface Input {
  digest: Digest;
}

/** Where a human-readable description of an op came from; not part of the digest. */
export interface OpMetadata {
  /** e.g. `[stage-1 2/4] RUN make` */
  description?: string;
  /** Source file and 1-based line range of the instruction that produced the op. */
  location?: { file: string; startLine: number; endLine: number };
  /** Name of the stage this op belongs to, for progress output and errors. */
  stage?: string;
  /** Skip cache lookups for this op (`--no-cache`). Not part of the digest. */
  ignoreCache?: boolean;
}

// ---------------------------------------------------------------- sources

export interface ImageSource {
  type: 'image';
  /** Fully normalized reference, pinned by digest: `docker.io/library/busybox:latest@sha256:...`. */
  ref: string;
  platform: Platform;
}

export interface LocalSource {
  type: 'local';
  /** Name of the local directory the client supplies (`context`, `dockerfile`). */
  name: string;
  /** Patterns (.dockerignore syntax) of paths to include; empty means everything. */
  includePatterns?: string[];
  /** Patterns (.dockerignore syntax, `!` exceptions allowed) of paths to leave out. */
  excludePatterns?: string[];
  /** Only these paths (and their parents) are needed; a hint for transfer and checksums. */
  followPaths?: string[];
  /** Distinguishes otherwise identical local sources of different builds; not content. */
  sharedKeyHint?: string;
}

export interface ScratchSource {
  type: 'scratch';
}

/** A file downloaded over HTTP(S) (ADD <url>): the output holds it alone, as `/<filename>`, mode 0600. */
export interface HttpSource {
  type: 'http';
  url: string;
  filename: string;
  /** `sha256:...` the content must have (`ADD --checksum`). */
  checksum?: string;
}

/** A git repository checked out at the commit `ref` names when the build runs (ADD <git address>): the
 * output holds the checkout (or its `subdir`), without `.git` unless `keepGitDir`. */
export interface GitSource {
  type: 'git';
  /** What git fetches from: the address without fragment or ref query. */
  remote: string;
  /** Branch, tag, commit; absent: the remote's HEAD. */
  ref?: string;
  subdir?: string;
  keepGitDir?: boolean;
  /** A prefix the resolved commit must have (`ADD --checksum`). */
  checksum?: string;
}

export interface SourceOp {
  kind: 'source';
  source: ImageSource | LocalSource | ScratchSource | HttpSource | GitSource;
}

// ---------------------------------------------------------------- exec

export type NetworkMode = 'host' | 'none' | 'sandbox';

export interface ExecMount {
  /** Index into the op's inputs, or -1 for an empty (scratch) mount. */
  input: number;
  /** Absolute path inside the container. mounts[0] is always the root filesystem at `/`. */
  dest: string;
  /** Path inside the input to mount (default `/`). */
  selector?: string;
  readonly?: boolean;
  /** What is mounted; absent means a bind mount of the input (writes to a read-write one are discarded). */
  type?: 'bind' | 'cache' | 'tmpfs' | 'secret' | 'ssh';
  /** A persistent directory shared by id across builds; its contents are in no cache key. The input, if
   * any, seeds it when it is first created. */
  cache?: { id: string; sharing: 'shared' | 'private' | 'locked'; mode?: number; uid?: number; gid?: number };
  tmpfs?: { size?: number };
  /** Provided by the client at run time; only the id is part of the LLB. */
  secret?: SecretRef;
  ssh?: SecretRef;
}

export interface SecretRef {
  id: string;
  optional: boolean;
  mode: number;
  uid: number;
  gid: number;
}

export interface ExecMeta {
  args: string[];
  /** `KEY=VALUE` entries, in order. */
  env: string[];
  cwd: string;
  /** `user`, `uid`, `user:group`, `uid:gid`; resolved against the rootfs at run time. */
  user: string;
  network: NetworkMode;
  /** Extra /etc/hosts entries `host:ip` (`--add-host`); only the names enter the cache key, as in BuildKit. */
  extraHosts?: string[];
  /** Resource limits of the process (`--ulimit`), replacing the default of the same name; -1 is unlimited. */
  ulimit?: Ulimit[];
  /** Parent cgroup of the container (`--cgroup-parent`). */
  cgroupParent?: string;
  /** Secrets exposed as environment variables (`RUN --mount=type=secret,env=NAME`); values come at run time. */
  secretEnv?: { name: string; id: string; optional: boolean }[];
  /** `insecure`: all capabilities, no seccomp filter, no masked paths (`RUN --security=insecure`). */
  security?: 'sandbox' | 'insecure';
  /** `HTTP_PROXY=...` entries from the predefined proxy build args, added to the process environment
   * after `env`. BuildKit keeps them out of the cache key (a proxy does not change what a step does). */
  proxyEnv?: string[];
}

/** An rlimit as BuildKit's pb.Ulimit: `name` without the RLIMIT_ prefix, lower case (`nofile`). */
export interface Ulimit {
  name: string;
  soft: number;
  hard: number;
}

export interface ExecOp {
  kind: 'exec';
  inputs: Input[];
  meta: ExecMeta;
  mounts: ExecMount[];
  platform: Platform;
}

// ---------------------------------------------------------------- file

export interface ChownOpt {
  /** A name (resolved in the destination's /etc/passwd and /etc/group) or a numeric id. */
  user?: string | number;
  group?: string | number;
}

export interface MkdirAction {
  action: 'mkdir';
  path: string;
  mode: number;
  makeParents: boolean;
  owner?: ChownOpt;
  /** Unix seconds; omitted means now. */
  timestamp?: number;
}

export interface MkfileAction {
  action: 'mkfile';
  path: string;
  /** File content, base64. */
  data: string;
  mode: number;
  owner?: ChownOpt;
  timestamp?: number;
}

export interface RmAction {
  action: 'rm';
  path: string;
  allowNotFound: boolean;
  allowWildcard: boolean;
}

export interface CopyAction {
  action: 'copy';
  /** Index into the op's inputs of the source filesystem, or -1 for scratch. */
  sourceInput: number;
  /** Path (or wildcard pattern) inside the source. */
  src: string;
  /** Path inside the destination; a trailing `/` means "into this directory". */
  dest: string;
  owner?: ChownOpt;
  /** Octal permission bits applied to every copied file and directory. */
  mode?: number;
  /** A symbolic chmod (`u+x,go-w`) applied to each copied entry's own mode; instead of `mode`. */
  modeStr?: string;
  /** A source file that is a tar archive (plain, gzip, bzip2, xz; detected by content) is extracted
   * into `dest` instead of copied (ADD). */
  attemptUnpack?: boolean;
  /** Paths (in the source) that must exist even though the copy selects by include patterns (COPY --parents). */
  requiredPaths?: string[];
  followSymlinks: boolean;
  /** Copy the contents of a source directory, not the directory itself (Dockerfile COPY semantics). */
  dirCopyContents: boolean;
  /** Treat `dest` as a directory even without a trailing `/` (several sources, or wildcard). */
  destIsDir?: boolean;
  createDestPath: boolean;
  allowWildcard: boolean;
  allowEmptyWildcard: boolean;
  includePatterns?: string[];
  excludePatterns?: string[];
  timestamp?: number;
}

export type FileAction = MkdirAction | MkfileAction | RmAction | CopyAction;

export interface FileOp {
  kind: 'file';
  inputs: Input[];
  /** Index into inputs of the filesystem the actions change, or -1 to start from scratch. */
  base: number;
  /** Applied in order; the op's output is `base` after all actions. */
  actions: FileAction[];
}

// ---------------------------------------------------------------- merge

/** Stacks its inputs' layers in order, later inputs on top (COPY --link, merged stages). */
export interface MergeOp {
  kind: 'merge';
  inputs: Input[];
}

export type Op = SourceOp | ExecOp | FileOp | MergeOp;

/** The inputs an op depends on, whatever its kind. */
export function opInputs(op: Op): Input[] {
  return op.kind === 'source' ? [] : op.inputs;
}
