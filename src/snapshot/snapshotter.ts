// Layer snapshots as plain directories: `<root>/snapshots/<id>/fs` is a layer (an overlay upperdir while
// active, a lowerdir once committed), `work/` its overlay workdir, `committed.json` the atomic marker that
// makes it permanent and records what is known about it, including a random `uid` that tells this
// snapshot from whatever may later take its id, and `keys/<hex>`, the cache keys whose records name it as
// their top layer. A marker that does not parse is renamed aside (`committed.json.corrupt`): the
// snapshot is then uncommitted and swept, and whatever named it is made again. Ids are short decimal
// numbers because every lowerdir is named in the mount options, which must fit in one page. The
// directory is 0700: layers hold device nodes and setuid files with their image's modes.
import fs from 'node:fs/promises';
import fsSync from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { BuilderError, UserError } from '../util/errors.js';
import { writeFileAtomic } from '../util/fs.js';
import { mountBindReadOnly, mountOverlay, mountsUnder, unmount } from './mount.js';

export interface Mounted {
  target: string;
  unmount(): Promise<void>;
}

export class SnapshotError extends BuilderError {
  constructor(message: string) { super('SNAPSHOT', message); }
}

/** Too many layers for one mount: the Dockerfile's doing (too many steps), reported in one line. */
export class LayerDepthError extends UserError {
  constructor(message: string) { super('MAX_DEPTH', message); }
}

const ID_RE = /^[1-9][0-9]*$/;
const MARKER = 'committed.json';
const KEYS = 'keys';
const KEY_RE = /^sha256:([0-9a-f]{64})$/;

/**
 * Layers one step may stand on: overlayfs stacks at most 500 lower directories (the kernel's
 * OVL_MAX_STACK). Past it a mount is refused in one line, as Docker's "max depth exceeded" (at 125).
 */
export const MAX_LAYERS = 500;

/** Mount options must fit one page: past it, the layers are named through a directory of short links. */
const PAGE = 4096;
const LINKS_SUFFIX = '.links';

export class Snapshotter {
  private readonly dir: string;
  private readonly mountsDir: string;
  private readonly emptyDir: string;
  private nextId = 0;
  private nextMount = 1;
  /** Marker updates per snapshot, one after another (each reads what the one before wrote). */
  private readonly updates = new Map<string, Promise<unknown>>();

  constructor(readonly root: string) {
    this.dir = path.join(root, 'snapshots');
    this.mountsDir = path.join(root, 'mounts');
    this.emptyDir = path.join(root, 'empty');
  }

  /**
   * Creates the directories and clears what a killed process left: its mounts (unmounted), its mount
   * points, and snapshots it never committed. Call once, holding the state directory's lock; with
   * `recover: false` (other builds are running) nothing is removed.
   */
  async init(opts: { recover?: boolean } = {}): Promise<void> {
    // Made before 0700 was the rule: closed now (mkdir's mode does not apply to an existing directory).
    for (const dir of [this.dir, this.mountsDir]) {
      await fs.mkdir(dir, { recursive: true, mode: 0o700 });
      await fs.chmod(dir, 0o700);
    }
    await fs.mkdir(this.emptyDir, { recursive: true });
    if (opts.recover === false) {
      await this.scanIds();
      return;
    }
    for (const m of [...(await mountsUnder(this.mountsDir)), ...(await mountsUnder(this.dir))]) {
      await unmount(m).catch(() => unmount(m, { lazy: true }));
    }
    // rmdir, never a recursive delete: a mount point we failed to unmount must not be deleted through.
    for (const name of await fs.readdir(this.mountsDir)) {
      // A links directory holds only symlinks (never a mount point), so it may go recursively.
      if (name.endsWith(LINKS_SUFFIX)) await fs.rm(path.join(this.mountsDir, name), { recursive: true, force: true });
      else await fs.rmdir(path.join(this.mountsDir, name)).catch(() => undefined);
    }
    for (const name of await fs.readdir(this.dir)) {
      if (ID_RE.test(name) && (await this.exists(name))) continue;
      await fs.rm(path.join(this.dir, name), { recursive: true, force: true });
    }
    await this.scanIds();
  }

  /** A new, empty, active snapshot. */
  async prepare(): Promise<string> {
    if (this.nextId === 0) {
      await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
      await this.scanIds();
    }
    for (;;) {
      const id = String(this.nextId++);
      try {
        await fs.mkdir(path.join(this.dir, id));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EEXIST') continue;
        throw e;
      }
      await fs.mkdir(path.join(this.dir, id, 'fs'), { mode: 0o755 });
      await fs.mkdir(path.join(this.dir, id, 'work'), { mode: 0o700 });
      return id;
    }
  }

  /** Makes an active snapshot permanent, recording `info` (any JSON object) with it. */
  async commit(id: string, info: object = {}): Promise<void> {
    this.check(id);
    await fs.access(path.join(this.dir, id, 'fs'));
    // The workdir only matters while mounted; an empty one keeps committed layers lean.
    await fs.rm(path.join(this.dir, id, 'work'), { recursive: true, force: true });
    await fs.mkdir(path.join(this.dir, id, 'work'), { mode: 0o700 });
    // The commit time becomes the layer's history time, so a cached rebuild reproduces the image digest.
    const marker = { created: new Date().toISOString(), ...info, uid: randomBytes(12).toString('hex') };
    await writeFileAtomic(path.join(this.dir, id, MARKER), JSON.stringify(marker));
  }

  /**
   * What `commit`/`setInfo` recorded, or null when the snapshot is not committed. An unreadable marker
   * uncommits the snapshot (see above): null too, never an error on every later build.
   */
  async info<T extends object = Record<string, unknown>>(id: string): Promise<(T & { uid?: string }) | null> {
    this.check(id);
    const file = path.join(this.dir, id, MARKER);
    let text: string;
    try {
      // A marker is a few hundred bytes, read for every step of every build: one synchronous read costs
      // less than readFile's four trips through the threadpool.
      text = fsSync.readFileSync(file, 'utf8');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return null;
      throw e;
    }
    let info: unknown;
    try {
      info = JSON.parse(text);
    } catch {
      info = null;
    }
    if (typeof info !== 'object' || info === null || Array.isArray(info)) {
      await fs.rename(file, `${file}.corrupt`).catch(() => undefined);
      return null;
    }
    return info as T & { uid?: string };
  }

  /** Replaces the recorded info (its uid is kept). Prefer updateInfo, which cannot lose a concurrent update. */
  async setInfo(id: string, info: object): Promise<void> {
    await this.updateInfo(id, () => info);
  }

  /**
   * Rewrites the recorded info as `fn` makes it from the current one; updates of one snapshot in this
   * process run one after another. The snapshot's uid stays (one is given to a snapshot made before uids).
   */
  updateInfo<T extends object>(id: string, fn: (current: T & { uid?: string }) => object): Promise<void> {
    const prev = this.updates.get(id) ?? Promise.resolve();
    const p = prev.catch(() => undefined).then(async () => {
      const current = await this.info<T>(id);
      if (!current) throw new SnapshotError(`snapshot ${id} is not committed`);
      const next = { ...fn(current), uid: current.uid ?? randomBytes(12).toString('hex') };
      await writeFileAtomic(path.join(this.dir, id, MARKER), JSON.stringify(next));
    });
    this.updates.set(id, p);
    const done = () => { if (this.updates.get(id) === p) this.updates.delete(id); };
    p.then(done, done);
    return p;
  }

  /** The snapshot's uid (given one if it was committed before uids), or null when it is not committed. */
  async uid(id: string): Promise<string | null> {
    const info = await this.info(id);
    if (!info) return null;
    if (typeof info.uid === 'string') return info.uid;
    await this.updateInfo(id, (cur) => cur);
    return (await this.info(id))?.uid ?? null;
  }

  /** Notes that the cache record for `key` names this snapshot as its top layer. */
  async addKey(id: string, key: string): Promise<void> {
    const hex = KEY_RE.exec(key)?.[1];
    if (!hex) throw new SnapshotError(`invalid cache key ${JSON.stringify(key)}`);
    const dir = path.join(this.dir, id, KEYS);
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    await fs.writeFile(path.join(dir, hex), '');
  }

  /** Whether a record for `key` was written naming this snapshot as its top layer. */
  async hasKey(id: string, key: string): Promise<boolean> {
    const hex = KEY_RE.exec(key)?.[1];
    if (!hex || !ID_RE.test(id)) return false;
    return fsSync.existsSync(path.join(this.dir, id, KEYS, hex));
  }

  /** True for a committed snapshot (whose marker is readable). */
  async exists(id: string): Promise<boolean> {
    if (!ID_RE.test(id)) return false;
    return (await this.info(id)) !== null;
  }

  /** Whether the snapshot's commit marker is there (exists() also reads it, and uncommits a corrupt one). */
  private committed(id: string): Promise<boolean> {
    if (!ID_RE.test(id)) return Promise.resolve(false);
    return fs.access(path.join(this.dir, id, MARKER)).then(() => true, () => false);
  }

  async remove(id: string): Promise<void> {
    this.check(id);
    // Uncommit first: if we die halfway, init() sweeps the remains.
    await fs.rm(path.join(this.dir, id, MARKER), { force: true });
    await fs.rm(path.join(this.dir, id), { recursive: true, force: true });
  }

  fsPath(id: string): string {
    this.check(id);
    return path.join(this.dir, id, 'fs');
  }

  /**
   * Mounts a stack of committed snapshots (bottom to top): read-write over `upper` (an active snapshot,
   * which receives the changes), else a read-only view.
   */
  async mount(lower: string[], upper?: string): Promise<Mounted> {
    // Checked at once, not one after another: a step deep in a long stage stands on hundreds of layers.
    // The marker's presence is what commits a snapshot (it is renamed into place); what it says is read
    // where it is used, so one access each, not a read and parse.
    const committed = await Promise.all(lower.map((id) => this.committed(id)));
    const missing = lower.find((_, i) => !committed[i]);
    if (missing !== undefined) throw new SnapshotError(`snapshot ${missing} is not committed`);
    if (upper !== undefined) this.check(upper);
    if (lower.length > MAX_LAYERS) {
      throw new LayerDepthError(`max depth exceeded: ${lower.length} layers, overlayfs stacks at most ${MAX_LAYERS}`);
    }
    const target = await this.newMountPoint();
    let links: string | undefined;
    const lowerdir = lower.map((id) => `${id}/fs`).reverse();
    try {
      if (upper !== undefined) {
        // The empty dir is relative to snapshots/ like the layers, keeping the options short.
        if (lowerdir.length === 0) lowerdir.push(`../${path.basename(this.emptyDir)}`);
        await fs.mkdir(this.emptyDir, { recursive: true });
        links = await this.mountOverlay(target, lowerdir, upper);
      } else if (lowerdir.length === 1) {
        await mountBindReadOnly(this.fsPath(lower[0]), target);
      } else if (lowerdir.length > 1) {
        links = await this.mountOverlay(target, lowerdir);
      } else {
        // Nothing to mount: the empty mount point is the (empty) view.
        return { target, unmount: once(() => fs.rmdir(target)) };
      }
    } catch (e) {
      await fs.rmdir(target).catch(() => undefined);
      throw e;
    }
    return {
      target,
      unmount: once(async () => {
        await unmount(target);
        await fs.rmdir(target);
        if (links) await fs.rm(links, { recursive: true, force: true });
      }),
    };
  }

  /**
   * Mounts with options naming directories relative to snapshots/; when those do not fit one page (some
   * hundreds of layers), through a directory of one- and two-character links to them, which is returned.
   */
  private async mountOverlay(target: string, lowerdir: string[], upper?: string): Promise<string | undefined> {
    // Absolute paths when they fit (and the state directory's path has none of overlay's separators): the
    // mount then needs no working directory of its own (see src/native/mount.c).
    if (!/[,:\\]/.test(this.dir)) {
      const abs = overlayOptions(lowerdir.map((l) => path.resolve(this.dir, l)), upper === undefined ? undefined : path.join(this.dir, upper));
      if (Buffer.byteLength(abs) < PAGE) {
        await mountOverlay(target, abs);
        return undefined;
      }
    }
    const options = overlayOptions(lowerdir, upper);
    if (Buffer.byteLength(options) < PAGE) {
      await mountOverlay(target, options, this.dir);
      return undefined;
    }
    const links = `${target}${LINKS_SUFFIX}`;
    await fs.rm(links, { recursive: true, force: true });
    await fs.mkdir(links, { mode: 0o700 });
    try {
      const short: string[] = [];
      for (let i = 0; i < lowerdir.length; i++) {
        const name = i.toString(36);
        await fs.symlink(path.resolve(this.dir, lowerdir[i]), path.join(links, name));
        short.push(name);
      }
      let upperOpts: string[] = [];
      if (upper !== undefined) {
        // Upper and work dirs by link too; uppercase never collides with the base-36 names.
        await fs.symlink(path.join(this.dir, upper, 'fs'), path.join(links, 'U'));
        await fs.symlink(path.join(this.dir, upper, 'work'), path.join(links, 'W'));
        upperOpts = ['upperdir=U', 'workdir=W'];
      }
      await mountOverlay(target, [`lowerdir=${short.join(':')}`, ...upperOpts, ...OVERLAY_FLAGS].join(','), links);
      return links;
    } catch (e) {
      await fs.rm(links, { recursive: true, force: true });
      throw e;
    }
  }

  private async newMountPoint(): Promise<string> {
    await fs.mkdir(this.mountsDir, { recursive: true });
    for (;;) {
      const target = path.join(this.mountsDir, String(this.nextMount++));
      try {
        await fs.mkdir(target, { mode: 0o755 });
        return target;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
    }
  }

  private async scanIds(): Promise<void> {
    const ids = (await fs.readdir(this.dir)).filter((n) => ID_RE.test(n)).map(Number);
    this.nextId = Math.max(this.nextId, 0, ...ids) + 1;
  }

  private check(id: string): void {
    if (!ID_RE.test(id)) throw new SnapshotError(`invalid snapshot id ${JSON.stringify(id)}`);
  }
}

/**
 * index=off, redirect_dir=off and metacopy=off keep the upperdir self-contained: every changed file is
 * fully copied up and a renamed directory is a real copy, so the upperdir alone is the layer's diff.
 */
function overlayOptions(lowerdir: string[], upper?: string): string {
  const opts = [`lowerdir=${lowerdir.join(':')}`];
  if (upper !== undefined) opts.push(`upperdir=${upper}/fs`, `workdir=${upper}/work`);
  opts.push(...OVERLAY_FLAGS);
  return opts.join(',');
}

const OVERLAY_FLAGS = ['index=off', 'redirect_dir=off', 'metacopy=off'];

function once(fn: () => Promise<void>): () => Promise<void> {
  let p: Promise<void> | null = null;
  return () => (p ??= fn());
}
