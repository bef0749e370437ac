// Runs a RUN step's command in a container through an OCI runtime (runc by default, crun, or any
// runc-compatible binary), like BuildKit's runc executor: one bundle directory per run with config.json and
// the generated /etc files, `<runtime> run` in the foreground with piped stdio, and the container deleted
// and the bundle removed whatever happens.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ExecMeta } from '../../solver/llb/ops.js';
import { resolveInRoot } from '../archive/rootpath.js';
import { resolveUser, type ResolvedUser } from '../worker/users.js';
import { AbortError, InvalidContainerIdError, RuntimeNotFoundError } from './errors.js';
import { hostsFile, resolvConf } from './etcfiles.js';
import { nofileLimit } from './limits.js';
import { findRuntime, hybridCgroupsWrapper, RuntimeCli } from './runtime.js';
import { generateSpec, serializeSpec, type OciMount } from './spec.js';
import { mountStubsCleaner } from './stubs.js';
import { mountsUnder, unmount } from '../snapshot/mount.js';

export interface OciRuntimeExecutorOptions {
  /** `runc` (default), `crun`, or a path to a runc-compatible binary. */
  runtime?: string;
  /** Directory for bundles and the runtime's state, e.g. `<root>/executor`. */
  stateDir: string;
}

export interface RunOptions {
  /** Host path of the mounted, writable root filesystem. */
  rootfs: string;
  meta: ExecMeta;
  signal?: AbortSignal;
  onOutput?: (stream: 'stdout' | 'stderr', chunk: Buffer) => void;
  /** Container id; random when omitted. */
  id?: string;
  /** Extra mounts (`RUN --mount`); their targets are created as needed and removed after if left empty. */
  mounts?: OciMount[];
  /** Extra environment for the process only, e.g. secrets; never part of the op. */
  env?: string[];
  /** The process's standard input (`builder run -i`); none (/dev/null) when omitted, as for RUN. */
  stdin?: NodeJS.ReadableStream;
  /**
   * A pseudo-terminal for the process: the runtime, run in the foreground on this process's own stdio (a
   * terminal), makes it and relays between the two; `stdin` and `onOutput` are then unused.
   */
  terminal?: boolean;
}

const VALID_ID = /^[A-Za-z0-9_+\-.]+$/;
const KILL_RETRY_MS = 50;
const ROOT: ResolvedUser = { uid: 0, gid: 0, additionalGids: [], home: '/' };

export class OciRuntimeExecutor {
  readonly runtime: string;
  readonly stateDir: string;
  private cli?: Promise<RuntimeCli>;

  constructor(opts: OciRuntimeExecutorOptions) {
    this.runtime = opts.runtime || 'runc';
    this.stateDir = path.resolve(opts.stateDir);
  }

  /** The runtime's `--root`; one per runtime, since runc and crun keep state in different formats. */
  get runtimeRoot(): string {
    return path.join(this.stateDir, `${path.basename(this.runtime)}-state`);
  }

  /** Creates the state directory and removes what a crashed earlier process left behind. */
  async init(opts: { recover?: boolean } = {}): Promise<void> {
    await fs.mkdir(this.stateDir, { recursive: true, mode: 0o711 });
    const cli = await this.resolve();
    // Other builds are running: their containers and bundles are not leftovers.
    if (opts.recover === false) return;
    // Nothing left behind (no bundle, no runtime state): skip spawning `runc list` on every build.
    const entries = await fs.readdir(this.stateDir);
    const state = await fs.readdir(this.runtimeRoot).catch(() => [] as string[]);
    if (state.length === 0 && entries.every((e) => e.endsWith('-state'))) return;
    await OciRuntimeExecutor.cleanup(cli, this.stateDir);
  }

  /**
   * Force-deletes every container the runtime knows and every bundle directory in `stateDir`. Only safe
   * while no other process uses this state directory (the client holds the root's lock).
   */
  static async cleanup(cli: RuntimeCli, stateDir: string): Promise<void> {
    for (const id of await cli.list()) await cli.delete(id);
    // A crashed run may have left its private tmpfs (secrets) mounted.
    for (const m of await mountsUnder(stateDir)) if (m !== stateDir) await unmount(m, { lazy: true });
    for (const entry of await fs.readdir(stateDir, { withFileTypes: true })) {
      const p = path.join(stateDir, entry.name);
      if (entry.isDirectory() && !entry.name.endsWith('-state')) await fs.rm(p, { recursive: true, force: true });
    }
  }

  /** Runs `meta.args` in a container on `rootfs`; resolves with the process's exit code. */
  async run(opts: RunOptions): Promise<{ exitCode: number }> {
    const { rootfs, meta, signal } = opts;
    if (signal?.aborted) throw new AbortError(signal.reason);
    const id = opts.id ?? randomBytes(16).toString('hex');
    if (!VALID_ID.test(id)) throw new InvalidContainerIdError(id);
    const cli = await this.resolve();
    const bundle = path.join(this.stateDir, id);
    await fs.mkdir(this.stateDir, { recursive: true, mode: 0o711 });
    await fs.mkdir(bundle, { mode: 0o711 });
    let failed = true;
    try {
      // No USER means root without any lookup, as in BuildKit: the image need not have an /etc/passwd.
      const user = meta.user ? await resolveUser(rootfs, meta.user) : ROOT;
      const hostsPath = path.join(bundle, 'hosts');
      const resolvConfPath = path.join(bundle, 'resolv.conf');
      await fs.writeFile(hostsPath, hostsFile(meta.extraHosts), { mode: 0o644 });
      await fs.writeFile(resolvConfPath, await resolvConf(), { mode: 0o644 });
      await makeWorkdir(rootfs, meta.cwd || '/', user.uid, user.gid);
      const spec = generateSpec({
        rootfs, meta, user, hostsPath, resolvConfPath, nofile: await nofileLimit(),
        cgroupsPath: cgroupsPath(id, meta.cgroupParent), extraMounts: opts.mounts, extraEnv: opts.env, terminal: opts.terminal,
      });
      await fs.writeFile(path.join(bundle, 'config.json'), serializeSpec(spec));
      const removeStubs = await mountStubsCleaner(rootfs, ['/etc/resolv.conf', '/etc/hosts', ...(opts.mounts ?? []).map((m) => m.destination)]);
      let result;
      try {
        result = await this.runContainer(cli, bundle, id, opts);
      } finally {
        await removeStubs();
      }
      failed = false;
      return result;
    } finally {
      // A failed delete must not hide the error that brought us here.
      const deleted = cli.delete(id);
      await (failed ? deleted.catch(() => undefined) : deleted);
      await fs.rm(bundle, { recursive: true, force: true });
    }
  }

  private resolve(): Promise<RuntimeCli> {
    this.cli ??= (async () => {
      const bin = await findRuntime(this.runtime);
      return new RuntimeCli(bin, this.runtimeRoot, await hybridCgroupsWrapper(bin));
    })();
    return this.cli;
  }

  private runContainer(cli: RuntimeCli, bundle: string, id: string, opts: RunOptions): Promise<{ exitCode: number }> {
    const { signal, onOutput } = opts;
    return new Promise((resolve, reject) => {
      // Own session (BuildKit sets a process group): a terminal's Ctrl-C reaches only us and becomes an
      // abort that kills the container; sent to runc, it would be forwarded to an init that ignores it.
      const child = spawn(...cli.command(['run', '--bundle', bundle, id]), {
        stdio: opts.terminal ? 'inherit' : [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
        detached: true,
      });
      if (opts.stdin && child.stdin && !opts.terminal) {
        child.stdin.on('error', () => undefined); // the process may exit without reading it all
        opts.stdin.pipe(child.stdin);
      }
      let exited = false;
      let aborted = false;
      child.stdout?.on('data', (chunk: Buffer) => onOutput?.('stdout', chunk));
      child.stderr?.on('data', (chunk: Buffer) => onOutput?.('stderr', chunk));
      // The container may not exist yet when the abort comes: retry until `run` has exited.
      const onAbort = async () => {
        aborted = true;
        while (!exited) {
          if (await cli.kill(id)) return;
          await sleep(KILL_RETRY_MS);
        }
      };
      const settle = () => {
        exited = true;
        signal?.removeEventListener('abort', onAbort);
      };
      child.on('error', (err: NodeJS.ErrnoException) => {
        settle();
        reject(err.code === 'ENOENT' ? new RuntimeNotFoundError(this.runtime) : err);
      });
      child.on('close', (code, sig) => {
        settle();
        if (opts.stdin && child.stdin) opts.stdin.unpipe(child.stdin);
        if (aborted) return reject(new AbortError(signal?.reason));
        // runc reports a signalled process as 128+signal itself; this covers the runtime being signalled.
        resolve({ exitCode: code ?? 128 + signalNumber(sig) });
      });
      if (signal?.aborted) void onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

/**
 * The container's cgroup: `/builder/<id>`, under `--cgroup-parent` when given; a systemd slice written
 * `name.slice:` takes the id directly (`name.slice:<id>`), as BuildKit builds it.
 */
export function cgroupsPath(id: string, parent?: string): string {
  if (!parent) return `/builder/${id}`;
  if (parent.includes('.slice') && parent.endsWith(':')) return parent + id;
  return path.posix.join('/', parent, 'builder', id);
}

/** Creates a missing working directory 0755, owned by the user who runs the command (as BuildKit does). */
async function makeWorkdir(rootfs: string, cwd: string, uid: number, gid: number): Promise<void> {
  const target = await resolveInRoot(rootfs, cwd);
  const missing: string[] = [];
  for (let p = target; p.startsWith(rootfs + path.sep); p = path.dirname(p)) {
    try {
      await fs.stat(p);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      missing.unshift(p);
    }
  }
  for (const dir of missing) {
    await fs.mkdir(dir);
    await fs.chmod(dir, 0o755);
    await fs.chown(dir, uid, gid);
  }
}

function signalNumber(sig: NodeJS.Signals | null): number {
  return (sig && os.constants.signals[sig]) || 0;
}
