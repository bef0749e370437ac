// Layer snapshots as plain directories: `<root>/snapshots/<id>/fs` is a layer (an overlay upperdir while
// active, a lowerdir once committed), `work/` its overlay workdir, `committed.json` the atomic marker that
// makes it permanent and records what is known about it. Ids are short decimal numbers because every
// lowerdir is named in the mount options, which must fit in one page.
import fs from 'node:fs/promises';
import path from 'node:path';
import { BuilderError } from '../util/errors.js';
import { writeFileAtomic } from '../util/fs.js';
import { mountBindReadOnly, mountOverlay, mountsUnder, unmount } from './mount.js';

export interface Mounted {
  target: string;
  unmount(): Promise<void>;
}

export class SnapshotError extends BuilderError {
  constructor(message: string) { super('SNAPSHOT', message); }
}

const ID_RE = /^[1-9][0-9]*$/;
const MARKER = 'committed.json';

/**
 * Lower directories per overlay mount. The kernel takes at most 500 and the options must fit one page;
 * a longer chain is mounted as read-only overlays of up to this many layers each, stacked as the lowers of
 * the mount (overlayfs allows one such level), so up to MAX_LOWER² layers.
 */
export const MAX_LOWER = 128;

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
      await fs.rmdir(path.join(this.mountsDir, name)).catch(() => undefined);
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
    // A deep chain: its layers in groups, each group one read-only overlay, unmounted after the mount.
    const groups: Mounted[] = [];
    const releaseGroups = async () => {
      for (const g of groups.reverse()) await g.unmount();
    };
    let lowerdir: string[];
    let target: string;
    try {
      lowerdir = (await this.groupLayers(lower, groups)).reverse();
      target = await this.newMountPoint();
    } catch (e) {
      await releaseGroups();
      throw e;
    }
    try {
      if (upper !== undefined) {
        // The empty dir is relative to snapshots/ like the layers, keeping the options short.
        if (lowerdir.length === 0) lowerdir.push(`../${path.basename(this.emptyDir)}`);
        await fs.mkdir(this.emptyDir, { recursive: true });
        await mountOverlay(target, overlayOptions(lowerdir, upper), this.dir);
      } else if (lowerdir.length === 1) {
        await mountBindReadOnly(this.fsPath(lower[0]), target);
      } else if (lowerdir.length > 1) {
        await mountOverlay(target, overlayOptions(lowerdir), this.dir);
      } else {
        // Nothing to mount: the empty mount point is the (empty) view.
        return { target, unmount: once(() => fs.rmdir(target)) };
      }
    } catch (e) {
      await fs.rmdir(target).catch(() => undefined);
      await releaseGroups();
      throw e;
    }
    return {
      target,
      unmount: once(async () => {
        await unmount(target);
        await fs.rmdir(target);
        await releaseGroups();
      }),
    };
  }

  /**
   * The lower directories (bottom first, relative to snapshots/) for a chain: the layers themselves when
   * they fit one mount, else read-only overlays of MAX_LOWER layers each (mounted here, into `groups`).
   */
  private async groupLayers(lower: string[], groups: Mounted[]): Promise<string[]> {
    if (lower.length <= MAX_LOWER) return lower.map((id) => `${id}/fs`);
    const count = Math.ceil(lower.length / MAX_LOWER);
    if (count > MAX_LOWER) {
      throw new SnapshotError(`a chain of ${lower.length} layers cannot be mounted: the limit is ${MAX_LOWER * MAX_LOWER} layers`);
    }
    const dirs: string[] = [];
    for (let i = 0; i < lower.length; i += MAX_LOWER) {
      const chunk = lower.slice(i, i + MAX_LOWER);
      if (chunk.length === 1) {
        dirs.push(`${chunk[0]}/fs`);
        continue;
      }
      const m = await this.mount(chunk);
      groups.push(m);
      dirs.push(path.relative(this.dir, m.target));
    }
    return dirs;
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
  opts.push('index=off', 'redirect_dir=off', 'metacopy=off');
  return opts.join(',');
}

function once(fn: () => Promise<void>): () => Promise<void> {
  let p: Promise<void> | null = null;
  return () => (p ??= fn());
}
