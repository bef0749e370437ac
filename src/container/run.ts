// The container workflow on stored images: `run` (the image's layer snapshots, as FROM gives a build, under
// a writable snapshot, run by the same OCI runtime executor as RUN), `rm`, `diff` (the writable layer read
// as `docker diff` prints it) and `commit` (that layer as a new image layer, through the exporter's layer
// blobs, with Docker's `--change` instructions). The process registers as a build session, so that builds
// running meanwhile leave its container alone and it leaves theirs.
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Digest, ExecMeta, Platform } from '../../solver/llb/ops.js';
import { parseInstructions } from '../../frontend/dockerfile/instructions.js';
import { BuildSession } from '../client/lock.js';
import { layerBlobs } from '../client/export.js';
import { hostPlatform } from '../client/platform.js';
import { writeImage } from '../exporter/image.js';
import { findImage, imageID, openStores, platformImages, type PlatformImage } from '../image/images.js';
import { isIndexType, platformString, platformsEqual, type HistoryEntry, type ImageConfig, type ImageConfigFile } from '../image/types.js';
import type { OciMount } from '../executor/spec.js';
import { parseReference } from '../registry/reference.js';
import { UserError } from '../util/errors.js';
import { Worker } from '../worker/worker.js';
import {
  deleteContainerRecord, findContainer, listContainers, newContainerID, saveContainer, type ContainerRecord,
} from './containers.js';

export interface RunOptions {
  root: string;
  image: string;
  /** Replaces the image's CMD (the ENTRYPOINT stays, unless `entrypoint` is given). */
  cmd?: string[];
  entrypoint?: string;
  name?: string;
  /** Remove the container when it exits. */
  rm?: boolean;
  env?: string[];
  workdir?: string;
  user?: string;
  platform?: Platform;
  /** `type=bind,source=S,target=T[,readonly]` or `type=tmpfs,target=T`. */
  mounts?: string[];
  network?: 'sandbox' | 'host' | 'none';
  /** As `docker run --privileged`: `RUN --security=insecure`'s sandbox (all capabilities, no seccomp filter,
   * writable /sys and cgroups, the device cgroup open), e.g. for a container that runs containers itself. */
  privileged?: boolean;
  /** The process's standard input (`-i`). */
  stdin?: NodeJS.ReadableStream;
  /** A pseudo-terminal on this process's terminal (`-t`): stdio goes through it, not `stdin`/`onOutput`. */
  tty?: boolean;
  onOutput?: (stream: 'stdout' | 'stderr', chunk: Buffer) => void;
  signal?: AbortSignal;
  runtime?: string;
  /** Called once the container exists (its id), before the process starts. */
  onCreated?: (id: string) => void;
}

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const ADJECTIVES = ['brave', 'calm', 'eager', 'fond', 'happy', 'jolly', 'keen', 'lucid', 'nifty', 'quirky', 'sharp', 'vivid'];
const NOUNS = ['babbage', 'curie', 'darwin', 'euler', 'hopper', 'lovelace', 'noether', 'pascal', 'ritchie', 'turing'];

/** Opens a worker on the state directory as one more build session (see src/client/lock.ts). */
async function openSession(root: string, runtime?: string): Promise<{ worker: Worker; end: () => Promise<void> }> {
  await fs.mkdir(root, { recursive: true, mode: 0o700 });
  const worker = new Worker({ root, runtime });
  const session = await BuildSession.start(root, (alone) => worker.init({ recover: alone }));
  return { worker, end: () => session.end() };
}

/** The platform's image of a stored image (an index: the asked platform, default this machine's). */
async function choose(root: string, arg: string, platform?: Platform): Promise<{ p: PlatformImage; id: Digest; target: Digest; name?: string }> {
  const { content, images } = openStores(root);
  const rec = await findImage(images, content, arg);
  const plats = await platformImages(content, rec.target);
  const want = platform ?? hostPlatform();
  const p = plats.find((x) => platformsEqual(x.platform, want)) ?? (platform || isIndexType(rec.target.mediaType) ? undefined : plats[0]);
  if (!p) throw new UserError('NO_MATCHING_PLATFORM', `${arg}: image has no platform ${platformString(want)} in the local store`);
  return { p, id: await imageID(content, rec.target), target: rec.target.digest, name: rec.names[0]?.toString() };
}

/** Creates a container from a stored image, runs its process to the end and returns the exit code. */
export async function runContainer(opts: RunOptions): Promise<{ id: string; exitCode: number }> {
  const root = path.resolve(opts.root);
  const { p, id: imageId, target, name: imageName } = await choose(root, opts.image, opts.platform);
  const cfg: ImageConfig = p.config.config ?? {};
  const existing = await listContainers(root);
  const name = opts.name ?? randomName(existing.map((c) => c.Name));
  if (!NAME_RE.test(name)) throw new UserError('INVALID_NAME', `Invalid container name (${name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`);
  if (existing.some((c) => c.Name === name)) {
    throw new UserError('NAME_IN_USE', `Conflict. The container name "/${name}" is already in use by container "${existing.find((c) => c.Name === name)!.Id}". You have to remove (or rename) that container to be able to reuse that name.`);
  }
  const entrypoint = opts.entrypoint !== undefined ? (opts.entrypoint === '' ? [] : [opts.entrypoint]) : cfg.Entrypoint ?? [];
  const cmd = opts.cmd?.length ? opts.cmd : opts.entrypoint !== undefined ? [] : cfg.Cmd ?? [];
  const args = [...entrypoint, ...cmd];
  if (args.length === 0) throw new UserError('NO_COMMAND', 'no command specified');
  // As docker run -t: TERM for the terminal, unless the image or -e sets one.
  const env = mergeEnv([...(cfg.Env ?? []), ...(opts.tty && !(cfg.Env ?? []).some((e) => e.startsWith('TERM=')) ? ['TERM=xterm'] : [])], opts.env ?? []);
  const mounts = (opts.mounts ?? []).map(parseMount);
  const meta: ExecMeta = {
    args, env, cwd: opts.workdir ?? (cfg.WorkingDir || '/'), user: opts.user ?? cfg.User ?? '', network: opts.network ?? 'sandbox',
    ...(opts.privileged ? { security: 'insecure' as const } : {}),
  };
  const { worker, end } = await openSession(root, opts.runtime);
  const id = newContainerID();
  try {
    const resolved = {
      ref: parseReference(imageName ?? `docker.io/library/local@${target}`), manifestDigest: p.manifestDesc.digest, manifest: p.manifest,
      manifestBytes: Buffer.alloc(0), config: p.config, configBytes: Buffer.alloc(0), configDescriptor: p.configDesc, layers: p.manifest.layers,
    };
    const { layers } = await worker.imageSnapshots(resolved, opts.signal);
    const upper = await worker.snapshots.prepare();
    const now = new Date().toISOString();
    const rec: ContainerRecord = {
      Id: id, Name: name, Created: now, Image: opts.image, ImageID: imageId, ImageTarget: target, Platform: p.platform,
      Path: args[0], Args: args.slice(1),
      Config: { ...cfg, Env: env, Cmd: cmd, Entrypoint: entrypoint.length ? entrypoint : null, WorkingDir: meta.cwd === '/' && !cfg.WorkingDir ? '' : meta.cwd, User: meta.user, Image: opts.image, ...(opts.stdin ? { OpenStdin: true } : {}), ...(opts.tty ? { Tty: true } : {}) },
      BaseConfig: p.config, Layers: layers, Upper: upper,
      State: { Status: 'running', Running: true, Pid: process.pid, ExitCode: 0, StartedAt: now, FinishedAt: '0001-01-01T00:00:00Z' },
      AutoRemove: Boolean(opts.rm), ...(opts.privileged ? { Privileged: true } : {}),
      Mounts: mounts.map((m) => ({ Type: m.type, Source: m.source, Destination: m.destination, RW: !m.options.includes('ro') })),
    };
    await saveContainer(root, rec);
    opts.onCreated?.(id);
    let exitCode: number;
    try {
      const mounted = await worker.snapshots.mount(layers, upper);
      try {
        ({ exitCode } = await worker.executor.run({
          rootfs: mounted.target, meta, mounts, id: id.slice(0, 32), signal: opts.signal, stdin: opts.stdin, terminal: opts.tty,
          onOutput: opts.onOutput ?? ((s, chunk) => (s === 'stdout' ? process.stdout : process.stderr).write(chunk)),
        }));
      } finally {
        await mounted.unmount();
      }
    } catch (e) {
      await worker.snapshots.commit(upper, { container: id }).catch(() => undefined);
      rec.State = { ...rec.State, Status: 'exited', Running: false, Pid: 0, ExitCode: 128, FinishedAt: new Date().toISOString() };
      if (opts.rm) await removeContainerState(root, worker, rec);
      else await saveContainer(root, rec);
      throw e;
    }
    // The writable layer is kept as a committed snapshot (never changed again): diff and commit read it.
    await worker.snapshots.commit(upper, { container: id });
    rec.State = { ...rec.State, Status: 'exited', Running: false, Pid: 0, ExitCode: exitCode, FinishedAt: new Date().toISOString() };
    if (opts.rm) await removeContainerState(root, worker, rec);
    else await saveContainer(root, rec);
    return { id, exitCode };
  } finally {
    await end();
  }
}

async function removeContainerState(root: string, worker: { snapshots: { remove(id: string): Promise<void> } }, rec: ContainerRecord): Promise<void> {
  await deleteContainerRecord(root, rec.Id);
  await worker.snapshots.remove(rec.Upper).catch(() => undefined);
}

function randomName(taken: string[]): string {
  for (;;) {
    const n = `${ADJECTIVES[Math.floor(Math.random() * ADJECTIVES.length)]}_${NOUNS[Math.floor(Math.random() * NOUNS.length)]}`;
    if (!taken.includes(n)) return n;
    taken = [...taken, n];
    if (taken.length > ADJECTIVES.length * NOUNS.length) return `${n}_${Date.now()}`;
  }
}

/** The image's environment with `-e` entries: `K=V` replaces K, a bare `K` takes this process's value. */
export function mergeEnv(base: string[], extra: string[]): string[] {
  const out = [...base];
  for (const e of extra) {
    const eq = e.indexOf('=');
    const entry = eq < 0 ? (process.env[e] !== undefined ? `${e}=${process.env[e]}` : undefined) : e;
    if (!entry) continue;
    const key = entry.slice(0, entry.indexOf('='));
    const i = out.findIndex((x) => x.startsWith(`${key}=`));
    if (i >= 0) out[i] = entry;
    else out.push(entry);
  }
  return out;
}

/** `--mount type=bind,source=S,target=T[,readonly]` / `type=tmpfs,target=T[,tmpfs-size=N]`, as docker run. */
export function parseMount(spec: string): OciMount {
  const kv: Record<string, string> = {};
  for (const part of spec.split(',')) {
    const eq = part.indexOf('=');
    kv[(eq < 0 ? part : part.slice(0, eq)).trim()] = eq < 0 ? 'true' : part.slice(eq + 1);
  }
  const type = kv.type ?? 'volume';
  const target = kv.target ?? kv.destination ?? kv.dst;
  if (!target) throw new UserError('INVALID_MOUNT', `invalid argument "${spec}" for "--mount" flag: target is required`);
  const ro = ['readonly', 'ro'].some((k) => kv[k] !== undefined && kv[k] !== 'false' && kv[k] !== '0');
  if (type === 'bind') {
    const source = kv.source ?? kv.src;
    if (!source) throw new UserError('INVALID_MOUNT', `invalid argument "${spec}" for "--mount" flag: source is required for bind mounts`);
    return { destination: target, type: 'bind', source: path.resolve(source), options: ['rbind', ro ? 'ro' : 'rw'] };
  }
  if (type === 'tmpfs') {
    return { destination: target, type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', ...(kv['tmpfs-size'] ? [`size=${kv['tmpfs-size']}`] : []), ...(ro ? ['ro'] : [])] };
  }
  throw new UserError('INVALID_MOUNT', `invalid argument "${spec}" for "--mount" flag: mount type "${type}" is not supported (bind, tmpfs)`);
}

// ------------------------------------------------------------------ ps, rm

export interface ContainerRow {
  ID: string;
  Image: string;
  Command: string;
  CreatedAt: string;
  RunningFor: string;
  Status: string;
  State: string;
  Ports: string;
  Names: string;
  Mounts: string;
  Labels: string;
  Networks: string;
  LocalVolumes: string;
  Size: string;
  fullID: string;
  fullCommand: string;
}

export async function listContainerRows(root: string, opts: { all?: boolean } = {}): Promise<ContainerRow[]> {
  const { since, goTime, humanDuration } = await import('../image/format.js');
  const rows: ContainerRow[] = [];
  for (const c of await listContainers(root)) {
    const running = c.State.Running && isAlive(c.State.Pid);
    if (!opts.all && !running) continue;
    const status = running ? `Up ${humanDuration(Date.now() - Date.parse(c.State.StartedAt))}`
      : c.State.Status === 'created' ? 'Created' : `Exited (${c.State.ExitCode}) ${since(c.State.FinishedAt)}`;
    const command = [c.Path, ...c.Args].join(' ');
    rows.push({
      ID: c.Id.slice(0, 12), Image: c.Image, Command: command, CreatedAt: goTime(c.Created), RunningFor: since(c.Created),
      Status: status, State: running ? 'running' : c.State.Status === 'running' ? 'exited' : c.State.Status, Ports: '', Names: c.Name,
      Mounts: (c.Mounts ?? []).map((m) => m.Source).join(','), Labels: Object.entries(c.Config.Labels ?? {}).map(([k, v]) => `${k}=${v}`).join(','), Networks: '', LocalVolumes: '0', Size: 'N/A',
      fullID: c.Id, fullCommand: command,
    });
  }
  return rows;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** `rm`: removes stopped containers (a running one only with `force`: its process is killed) and their layer. */
export async function removeContainers(root: string, args: string[], opts: { force?: boolean } = {}): Promise<string[]> {
  const removed: string[] = [];
  const errors: string[] = [];
  const { Snapshotter } = await import('../snapshot/snapshotter.js');
  const { StateLock } = await import('../client/lock.js');
  const snapshots = new Snapshotter(root);
  for (const arg of args) {
    try {
      const c = await findContainer(root, arg);
      if (c.State.Running && isAlive(c.State.Pid)) {
        if (!opts.force) throw new UserError('CONTAINER_RUNNING', `cannot remove container "/${c.Name}": container is running: stop the container before removing or force remove`);
        // Its `builder run` kills the container and records the end; then the container goes.
        await stopProcess(c.State.Pid);
      }
      const lock = await StateLock.acquire(path.resolve(root));
      try {
        await removeContainerState(root, { snapshots }, c);
      } finally {
        await lock.release();
      }
      removed.push(arg);
    } catch (e) {
      if (!(e instanceof UserError)) throw e;
      errors.push(e.message);
    }
  }
  if (errors.length) {
    const err = new UserError('RM_FAILED', errors.join('\n'));
    (err as UserError & { removed?: string[] }).removed = removed;
    throw err;
  }
  return removed;
}

/** SIGTERM, and SIGKILL if it is still there after 10 seconds; resolves once the process is gone. */
async function stopProcess(pid: number): Promise<void> {
  const { setTimeout: sleep } = await import('node:timers/promises');
  process.kill(pid, 'SIGTERM');
  for (let waited = 0; isAlive(pid); waited += 100) {
    if (waited === 10_000) process.kill(pid, 'SIGKILL');
    await sleep(100);
  }
}

// ------------------------------------------------------------------ diff

export interface Change {
  kind: 'A' | 'C' | 'D';
  path: string;
}

/**
 * What the container changed, as `docker diff` prints it: every path its writable layer holds, `A` when the
 * image had nothing there, `C` when it had (directories holding changes included), `D` for overlay whiteouts
 * (and what an opaque directory hides); sorted by path.
 */
export async function diffContainer(root: string, arg: string): Promise<Change[]> {
  const c = await findContainer(root, arg);
  const { Snapshotter } = await import('../snapshot/snapshotter.js');
  const { getXattr } = await import('../native/fsx.js');
  const snapshots = new Snapshotter(root);
  // A run killed outright never committed its layer, and a later build recovering the state removed it.
  if (!(await snapshots.exists(c.Upper))) throw new UserError('CONTAINER_GONE', `container ${c.Name}: its writable layer is gone (its run was killed)`);
  const upperDir = snapshots.fsPath(c.Upper);
  const lower = c.Layers.length ? await snapshots.mount(c.Layers) : null;
  const lowerRoot = lower?.target;
  const changes: Change[] = [];
  const inLower = async (rel: string) => (lowerRoot ? fs.lstat(path.join(lowerRoot, rel)).then(() => true, () => false) : false);
  const walk = async (rel: string, hidden: boolean): Promise<void> => {
    const dir = path.join(upperDir, rel);
    const names = (await fs.readdir(dir)).sort();
    for (const name of names) {
      const childRel = path.posix.join(rel, name);
      const st = await fs.lstat(path.join(upperDir, childRel));
      // A whiteout: a 0/0 character device.
      if (st.isCharacterDevice() && st.rdev === 0) {
        if (!hidden && (await inLower(childRel))) changes.push({ kind: 'D', path: `/${childRel}` });
        continue;
      }
      const existed = !hidden && (await inLower(childRel));
      const opaque = st.isDirectory() && getXattr(path.join(upperDir, childRel), 'trusted.overlay.opaque')?.toString() === 'y';
      // A directory copied up and left as it was (the runtime's mount points made and removed in it): no change.
      if (existed && st.isDirectory() && !opaque && (await fs.readdir(path.join(upperDir, childRel))).length === 0) {
        const was = await fs.lstat(path.join(lowerRoot!, childRel));
        if (was.isDirectory() && was.mode === st.mode && was.uid === st.uid && was.gid === st.gid) continue;
      }
      changes.push({ kind: existed ? 'C' : 'A', path: `/${childRel}` });
      if (st.isDirectory()) {
        if (opaque && existed && lowerRoot) {
          // What the lower layers had there is gone, unless the upper has it again.
          const upperNames = new Set(await fs.readdir(path.join(upperDir, childRel)));
          for (const n of (await fs.readdir(path.join(lowerRoot, childRel)).catch(() => [] as string[])).sort()) {
            if (!upperNames.has(n)) changes.push({ kind: 'D', path: `/${path.posix.join(childRel, n)}` });
          }
        }
        await walk(childRel, hidden || opaque);
      }
    }
  };
  try {
    await walk('', false);
  } finally {
    await lower?.unmount();
  }
  return changes.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

// ------------------------------------------------------------------ commit

export interface CommitOptions {
  author?: string;
  message?: string;
  /** Dockerfile instructions applied to the config: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, WORKDIR, VOLUME, ONBUILD, STOPSIGNAL. */
  changes?: string[];
  /** Full name (`app:2`); none keeps the image without a name (dangling). */
  name?: string;
  runtime?: string;
}

/**
 * `commit`: a new image of the container's image plus its writable layer (compressed as the exporter makes
 * any layer) and a history entry (its command, `-a` and `-m`), with `-c` applied to the config. Returns the
 * new image id (its config digest).
 */
export async function commitContainer(root: string, arg: string, opts: CommitOptions = {}): Promise<Digest> {
  root = path.resolve(root);
  const c = await findContainer(root, arg);
  if (c.State.Running && isAlive(c.State.Pid)) throw new UserError('CONTAINER_RUNNING', `container ${c.Name} is running: commit a stopped container`);
  const changes = parseChanges(opts.changes ?? []);
  const { worker, end } = await openSession(root, opts.runtime);
  try {
    if (!(await worker.snapshots.exists(c.Upper))) throw new UserError('CONTAINER_GONE', `container ${c.Name}: its writable layer is gone`);
    const layers = await layerBlobs(worker, { layers: [...c.Layers, c.Upper] });
    const base = c.BaseConfig;
    const created = new Date().toISOString();
    const config: ImageConfig = applyChanges({ ...(base.config ?? {}) }, changes);
    const entry: HistoryEntry = {
      // Docker's: the container's CMD, without the ENTRYPOINT it ran under (moby's CommitImage joins ContainerConfig.Cmd).
      created, created_by: (c.Config.Cmd ?? []).join(' '),
      ...(opts.author ? { author: opts.author } : {}), ...(opts.message ? { comment: opts.message } : {}),
    };
    const file: ImageConfigFile = {
      ...base, created, ...(opts.author ? { author: opts.author } : {}), config, history: [...(base.history ?? []), entry],
    };
    delete file.rootfs;
    const written = await writeImage(worker.store, { config: file, layers }, { oci: false });
    // Not under the state directory's lock: this session already keeps prune out, and a prune that holds
    // the lock waits for this session to end (a deadlock). The image store locks its own updates.
    const { images } = openStores(root);
    if (opts.name) await images.put([parseReference(opts.name).toString()], written.manifest);
    else await images.putDangling(written.manifest);
    return written.config.digest;
  } finally {
    await end();
  }
}

type ParsedChange = { kind: string; [k: string]: unknown };

const CHANGE_KINDS = ['cmd', 'entrypoint', 'env', 'expose', 'label', 'user', 'workdir', 'volume', 'onbuild', 'stopsignal'];

/** Parses `-c` instructions with the Dockerfile parser; others than docker commit accepts are refused. */
export function parseChanges(changes: string[]): ParsedChange[] {
  const out: ParsedChange[] = [];
  for (const change of changes) {
    const word = change.trim().split(/\s+/)[0]?.toLowerCase() ?? '';
    if (!CHANGE_KINDS.includes(word)) throw new UserError('INVALID_CHANGE', `${word.toUpperCase() || change} is not a valid change command`);
    let parsed;
    try {
      parsed = parseInstructions(`FROM scratch\n${change}\n`);
    } catch (e) {
      throw new UserError('INVALID_CHANGE', `invalid change "${change}": ${(e as Error).message}`);
    }
    const inst = (parsed.stages[0]?.instructions[0] as unknown as ParsedChange | undefined);
    if (!inst) throw new UserError('INVALID_CHANGE', `invalid change "${change}"`);
    out.push(inst);
  }
  return out;
}

export function applyChanges(config: ImageConfig, changes: ParsedChange[]): ImageConfig {
  const shellOf = () => config.Shell ?? ['/bin/sh', '-c'];
  const command = (i: ParsedChange) => {
    const c = i as unknown as { cmdLine: string[]; prependShell: boolean };
    return c.prependShell ? [...shellOf(), c.cmdLine.join(' ')] : c.cmdLine;
  };
  for (const ch of changes) {
    switch (ch.kind) {
      // ArgsEscaped describes the command the Dockerfile gave (Windows only): not this one.
      case 'cmd': config.Cmd = command(ch); delete config.ArgsEscaped; break;
      case 'entrypoint': config.Entrypoint = command(ch); delete config.ArgsEscaped; break;
      case 'env': config.Env = mergeEnv(config.Env ?? [], (ch.pairs as { key: string; value: string }[]).map((p) => `${p.key}=${p.value}`)); break;
      case 'label': config.Labels = { ...(config.Labels ?? {}), ...Object.fromEntries((ch.pairs as { key: string; value: string }[]).map((p) => [p.key, p.value])) }; break;
      case 'user': config.User = ch.user as string; break;
      case 'workdir': config.WorkingDir = path.posix.resolve(config.WorkingDir || '/', ch.path as string); break;
      case 'expose': {
        const ports = { ...(config.ExposedPorts ?? {}) };
        for (const p of ch.ports as string[]) ports[p.includes('/') ? p : `${p}/tcp`] = {};
        config.ExposedPorts = ports;
        break;
      }
      case 'volume': {
        const vols = { ...(config.Volumes ?? {}) };
        for (const v of ch.volumes as string[]) vols[v] = {};
        config.Volumes = vols;
        break;
      }
      case 'onbuild': config.OnBuild = [...(config.OnBuild ?? []), ch.expression as string]; break;
      case 'stopsignal': config.StopSignal = ch.signal as string; break;
    }
  }
  return config;
}
