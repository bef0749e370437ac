// Layer snapshots as plain directories: `<root>/snapshots/<id>/fs` is a layer (an overlay upperdir while
// active, a lowerdir once committed), `work/` its overlay workdir, `committed.json` the atomic marker that
// makes it permanent and records what is known about it. Ids are short decimal numbers because every
// lowerdir is named in the mount options, which must fit in one page.
import fs from 'node:fs/promises';
import path from 'node:path';
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
    await fs.mkdir(this.dir, { recursive: true });
    await fs.mkdir(this.mountsDir, { recursive: true });
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
      await fs.mkdir(this.dir, { recursive: true });
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
    await writeFileAtomic(path.join(this.dir, id, MARKER), JSON.stringify({ created: new Date().toISOString(), ...info }));
  }

  /** What `commit`/`setInfo` recorded, or null when the snapshot is not committed. */
  async info<T extends object = Record<string, unknown>>(id: string): Promise<T | null> {
    this.check(id);
    try {
      return JSON.parse(await fs.readFile(path.join(this.dir, id, MARKER), 'utf8')) as T;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
  }

  async setInfo(id: string, info: object): Promise<void> {
    if (!(await this.exists(id))) throw new SnapshotError(`snapshot ${id} is not committed`);
    await writeFileAtomic(path.join(this.dir, id, MARKER), JSON.stringify(info));
  }

  /** True for a committed snapshot. */
  async exists(id: string): Promise<boolean> {
    if (!ID_RE.test(id)) return false;
    try {
      await fs.access(path.join(this.dir, id, MARKER));
      return true;
    } catch {
      return false;
    }
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
    for (const id of lower) {
      if (!(await this.exists(id))) throw new SnapshotError(`snapshot ${id} is not committed`);
    }
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
