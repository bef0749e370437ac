// The extra mounts of a RUN step (`RUN --mount`): binds of other snapshots (read-only, or with writes
// discarded), persistent cache directories shared by id, tmpfs, secrets and SSH agent sockets. Secrets are
// written only to a private tmpfs and removed with it; they never touch a snapshot or the disk.
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import type { ExecMount, ExecOp, SecretRef } from '../../solver/llb/ops.js';
import type { OciMount } from '../executor/spec.js';
import { PidLock } from '../util/pidlock.js';
import { resolveInRoot } from '../archive/rootpath.js';
import { applyFileActions } from './fileop.js';
import type { Snapshotter, Mounted } from '../snapshot/snapshotter.js';
import { mountTmpfs, unmount } from '../snapshot/mount.js';
import { UserError } from '../util/errors.js';

/** What the client provides for one build: secret values and SSH agent sockets, by id. */
export interface BuildSession {
  secrets?: Map<string, Buffer>;
  ssh?: Map<string, string>;
  /**
   * Called when a RUN step's process fails, while its container state (the layers below, the failed step's
   * writable layer, its mounts) is still there: `run` runs another command in it (`build --on-error=shell`).
   */
  onExecError?: (failed: { args: string[]; exitCode: number; run: (args: string[]) => Promise<number> }) => Promise<void>;
}

export class MissingSecretError extends UserError {
  constructor(kind: 'secret' | 'ssh', id: string) {
    super(kind === 'secret' ? 'SECRET_NOT_FOUND' : 'SSH_NOT_FOUND', kind === 'secret'
      ? `secret ${id}: not found (provide it with --secret id=${id},src=FILE or --secret id=${id},env=VAR)`
      : `no SSH agent "${id}" forwarded (provide it with --ssh ${id}=$SSH_AUTH_SOCK)`);
  }
}

export class MountSourceError extends UserError {
  constructor(selector: string) { super('MOUNT_SOURCE_NOT_FOUND', `mount source "${selector}": not found`); }
}

export interface PreparedMounts {
  mounts: OciMount[];
  /** `NAME=value` of secrets exposed as environment variables. */
  env: string[];
  release(): Promise<void>;
}

export interface MountContext {
  root: string;
  snapshots: Snapshotter;
  session: BuildSession;
  /** Committed snapshot chains of the op's inputs. */
  inputs: { layers: string[] }[];
}

const cacheLocks = new Map<string, Promise<void>>();
const cacheInUse = new Map<string, number>();

export async function prepareMounts(op: ExecOp, ctx: MountContext): Promise<PreparedMounts> {
  const mounts: OciMount[] = [];
  const cleanups: (() => Promise<void>)[] = [];
  const release = async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    cleanups.length = 0;
  };
  let secretDir: string | undefined;
  // One private tmpfs per RUN for its secret files and agent sockets.
  const privateDir = async () => {
    if (!secretDir) {
      const dir = path.join(ctx.root, 'executor', `secrets-${randomBytes(8).toString('hex')}`);
      await fs.mkdir(dir, { recursive: true, mode: 0o700 });
      await mountTmpfs(dir, 'mode=0711,size=16m');
      cleanups.push(async () => {
        await unmount(dir, { lazy: true });
        await fs.rmdir(dir);
      });
      secretDir = dir;
    }
    return secretDir;
  };
  try {
    const env: string[] = [];
    for (const s of op.meta.secretEnv ?? []) {
      const value = ctx.session.secrets?.get(s.id);
      if (value === undefined) {
        if (s.optional) continue;
        throw new MissingSecretError('secret', s.id);
      }
      env.push(`${s.name}=${value.toString('utf8')}`);
    }
    for (const m of op.mounts) {
      if (m.dest === '/') continue;
      switch (m.type ?? 'bind') {
        case 'bind':
          mounts.push(await bindMount(m, ctx, cleanups));
          break;
        case 'cache':
          mounts.push(await cacheMount(m, ctx, cleanups));
          break;
        case 'tmpfs':
          mounts.push({
            destination: m.dest, type: 'tmpfs', source: 'tmpfs',
            options: ['nosuid', 'nodev', 'mode=1777', ...(m.tmpfs?.size ? [`size=${m.tmpfs.size}`] : [])],
          });
          break;
        case 'secret': {
          const ref = m.secret!;
          const value = ctx.session.secrets?.get(ref.id);
          if (value === undefined) {
            if (ref.optional) continue;
            throw new MissingSecretError('secret', ref.id);
          }
          const file = path.join(await privateDir(), randomBytes(8).toString('hex'));
          await fs.writeFile(file, value, { mode: 0o600 });
          await fs.chown(file, ref.uid, ref.gid);
          await fs.chmod(file, ref.mode);
          mounts.push({ destination: m.dest, type: 'bind', source: file, options: ['rbind', 'ro', 'nosuid', 'nodev', 'noexec'] });
          break;
        }
        case 'ssh': {
          const ref = m.ssh!;
          const agent = ctx.session.ssh?.get(ref.id);
          if (agent === undefined) {
            if (ref.optional) continue;
            throw new MissingSecretError('ssh', ref.id);
          }
          const sock = path.join(await privateDir(), `${randomBytes(8).toString('hex')}.sock`);
          cleanups.push(await agentProxy(agent, sock, ref));
          mounts.push({ destination: m.dest, type: 'bind', source: sock, options: ['rbind', 'ro'] });
          break;
        }
      }
    }
    // Parents before children, so a mount inside another one is not hidden by it.
    mounts.sort((a, b) => a.destination.split('/').length - b.destination.split('/').length);
    return { mounts, env, release };
  } catch (e) {
    await release();
    throw e;
  }
}

/** A snapshot (or the context) mounted at the target: read-only, or over a throwaway upper layer. */
async function bindMount(m: ExecMount, ctx: MountContext, cleanups: (() => Promise<void>)[]): Promise<OciMount> {
  const layers = m.input >= 0 ? ctx.inputs[m.input].layers : [];
  let upper: string | undefined;
  if (!m.readonly) {
    upper = await ctx.snapshots.prepare();
    const u = upper;
    cleanups.push(() => ctx.snapshots.remove(u));
  }
  const mounted: Mounted = await ctx.snapshots.mount(layers, upper);
  cleanups.push(() => mounted.unmount());
  const source = await resolveInRoot(mounted.target, m.selector ?? '/');
  if (!(await fs.lstat(source).catch(() => null))) throw new MountSourceError(m.selector ?? '/');
  return { destination: m.dest, type: 'bind', source, options: ['rbind', m.readonly ? 'ro' : 'rw'] };
}

/**
 * `<root>/cache-mounts/<sha256(id)>`, created on first use (seeded from the input when there is one).
 * `locked` waits for other users of the id, in this process and in other builds on the same state
 * directory (a pid lock file beside the directory); `private` gets a fresh directory when the id is in use
 * there or here.
 */
async function cacheMount(m: ExecMount, ctx: MountContext, cleanups: (() => Promise<void>)[]): Promise<OciMount> {
  const cache = m.cache!;
  const base = path.join(ctx.root, 'cache-mounts');
  await fs.mkdir(base, { recursive: true, mode: 0o700 });
  const key = createHash('sha256').update(cache.id).digest('hex');
  let dir = path.join(base, key);
  const lockFile = `${dir}.lock`;
  if (cache.sharing === 'locked') {
    // Turns in this process first, so only one of its ops polls the lock file.
    const previous = cacheLocks.get(key) ?? Promise.resolve();
    let unlock!: () => void;
    const mine = new Promise<void>((r) => (unlock = r));
    const chained = previous.then(() => mine);
    cacheLocks.set(key, chained);
    await previous;
    let held: PidLock | null = null;
    cleanups.push(async () => {
      await held?.release();
      unlock();
      if (cacheLocks.get(key) === chained) cacheLocks.delete(key);
    });
    held = await PidLock.acquire(lockFile);
  } else if (cache.sharing === 'private') {
    const held = (cacheInUse.get(key) ?? 0) > 0 ? null : await PidLock.tryAcquire(lockFile);
    if (held) {
      cleanups.push(() => held.release());
    } else {
      dir = path.join(base, `${key}.private-${randomBytes(6).toString('hex')}`);
      const d = dir;
      cleanups.push(() => fs.rm(d, { recursive: true, force: true }));
    }
  }
  cacheInUse.set(key, (cacheInUse.get(key) ?? 0) + 1);
  cleanups.push(async () => { cacheInUse.set(key, (cacheInUse.get(key) ?? 1) - 1); });
  if (!(await fs.stat(dir).catch(() => null))) await createCacheDir(dir, m, ctx);
  // Its mtime says when a RUN last used it, for `builder prune --filter until=`.
  const now = new Date();
  await fs.utimes(dir, now, now).catch(() => undefined);
  return { destination: m.dest, type: 'bind', source: dir, options: ['rbind', m.readonly ? 'ro' : 'rw'] };
}

async function createCacheDir(dir: string, m: ExecMount, ctx: MountContext): Promise<void> {
  const tmp = `${dir}.tmp-${randomBytes(6).toString('hex')}`;
  try {
    if (m.input >= 0) {
      const mounted = await ctx.snapshots.mount(ctx.inputs[m.input].layers);
      try {
        await fs.mkdir(tmp, { mode: 0o755 });
        await applyFileActions(tmp, [{
          action: 'copy', sourceInput: 0, src: m.selector ?? '/', dest: '/', followSymlinks: true, dirCopyContents: true,
          createDestPath: true, allowWildcard: false, allowEmptyWildcard: false,
        }], [mounted.target]);
      } finally {
        await mounted.unmount();
      }
    } else {
      await fs.mkdir(tmp);
    }
    await fs.chown(tmp, m.cache!.uid ?? 0, m.cache!.gid ?? 0);
    await fs.chmod(tmp, m.cache!.mode ?? 0o755);
    await fs.rename(tmp, dir).catch(async (e: NodeJS.ErrnoException) => {
      // Another build created it first: use theirs.
      if (e.code !== 'ENOTEMPTY' && e.code !== 'EEXIST') throw e;
      await fs.rm(tmp, { recursive: true, force: true });
    });
  } catch (e) {
    await fs.rm(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** A socket owned by the container's user that relays each connection to the client's SSH agent. */
async function agentProxy(agent: string, sock: string, ref: SecretRef): Promise<() => Promise<void>> {
  const server = net.createServer((conn) => {
    const upstream = net.connect(agent);
    conn.pipe(upstream).pipe(conn);
    const close = () => { conn.destroy(); upstream.destroy(); };
    conn.on('error', close);
    upstream.on('error', close);
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(sock, () => resolve()));
  await fs.chown(sock, ref.uid, ref.gid);
  await fs.chmod(sock, ref.mode);
  return () => new Promise<void>((resolve) => server.close(() => resolve()));
}
