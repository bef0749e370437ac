// Content digests of snapshots (early cutoff): equal content is equal whatever the times; every change a
// later step can read (content, mode, owner, new or removed file, link target, xattr, whiteout) differs;
// a selection covers exactly what a copy reads, through symlinks on the way.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Snapshotter } from '../../src/snapshot/snapshotter.js';
import { mountsUnder, unmount } from '../../src/snapshot/mount.js';
import { SnapshotHasher } from '../../src/cache/snapshothash.js';
import { mknod, S_IFCHR, setXattr } from '../../src/native/fsx.js';
import type { CopyAction } from '../../solver/llb/ops.js';

type Setup = (dir: string) => Promise<void>;

describe('SnapshotHasher', () => {
  let root: string;
  let snaps: Snapshotter;
  beforeEach(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'snaphash-'));
    snaps = new Snapshotter(root);
    await snaps.init();
  });
  afterEach(async () => {
    for (const m of await mountsUnder(root)) await unmount(m, { lazy: true });
    await fs.rm(root, { recursive: true, force: true });
  });

  async function layer(setup: Setup): Promise<string> {
    const id = await snaps.prepare();
    await setup(snaps.fsPath(id));
    await snaps.commit(id, {});
    return id;
  }
  const hasher = () => new SnapshotHasher(snaps, root);
  const copy = (src: string, extra: Partial<CopyAction> = {}): CopyAction => ({
    action: 'copy', sourceInput: 1, src, dest: '/', followSymlinks: true, dirCopyContents: true, createDestPath: true,
    allowWildcard: false, allowEmptyWildcard: false, ...extra,
  });

  const baseTree: Setup = async (d) => {
    await fs.mkdir(path.join(d, 'out'));
    await fs.writeFile(path.join(d, 'out/f'), 'a\n');
    await fs.symlink('f', path.join(d, 'out/l'));
    await fs.writeFile(path.join(d, 'other'), 'o\n');
  };

  it('a layer digest ignores times and sees every other change', async () => {
    const a = await hasher().layerDigest(await layer(baseTree));
    const same = await hasher().layerDigest(await layer(async (d) => {
      await baseTree(d);
      await fs.utimes(path.join(d, 'out/f'), new Date(1e9), new Date(1e9));
    }));
    expect(same).toBe(a);
    const changes: Record<string, Setup> = {
      content: async (d) => fs.writeFile(path.join(d, 'out/f'), 'b\n'),
      mode: async (d) => fs.chmod(path.join(d, 'out/f'), 0o600),
      owner: async (d) => fs.chown(path.join(d, 'out/f'), 1, 2),
      'new file': async (d) => fs.writeFile(path.join(d, 'out/g'), ''),
      'removed file': async (d) => fs.rm(path.join(d, 'other')),
      'link target': async (d) => { await fs.rm(path.join(d, 'out/l')); await fs.symlink('g', path.join(d, 'out/l')); },
      xattr: async (d) => setXattr(path.join(d, 'out/f'), 'user.test', Buffer.from('1')),
      'dir xattr': async (d) => setXattr(path.join(d, 'out'), 'user.test', Buffer.from('1')),
      whiteout: async (d) => mknod(path.join(d, 'gone'), S_IFCHR | 0o000, 0, 0),
      opaque: async (d) => setXattr(path.join(d, 'out'), 'trusted.overlay.opaque', Buffer.from('y')),
    };
    const seen = new Set([a]);
    for (const [name, change] of Object.entries(changes)) {
      const d = await hasher().layerDigest(await layer(async (dir) => { await baseTree(dir); await change(dir); }));
      expect(seen.has(d), name).toBe(false);
      seen.add(d);
    }
  });

  it('a layer digest is computed once per snapshot and kept with it', async () => {
    const id = await layer(baseTree);
    const h = hasher();
    const d = await h.layerDigest(id);
    expect(h.bytesRead).toBeGreaterThan(0);
    const again = hasher();
    expect(await again.layerDigest(id)).toBe(d);
    expect(again.bytesRead).toBe(0);
    expect((await snaps.info<{ content?: string }>(id))?.content).toBe(d);
  });

  it('a selection digest covers what the copy reads and nothing else', async () => {
    const lower = await layer(baseTree);
    const sel = (layers: string[], a = copy('/out')) => hasher().selectionDigest(layers, a);
    const d = await sel([lower]);
    // Something beside the selection changes: same digest.
    expect(await sel([lower, await layer(async (dir) => fs.writeFile(path.join(dir, 'other'), 'changed'))])).toBe(d);
    // Something in it changes, in a layer above: another digest.
    expect(await sel([lower, await layer(async (dir) => {
      await fs.mkdir(path.join(dir, 'out'));
      await fs.writeFile(path.join(dir, 'out/f'), 'b\n');
    })])).not.toBe(d);
    // An xattr of a selected file.
    expect(await sel([lower, await layer(async (dir) => {
      await fs.mkdir(path.join(dir, 'out'));
      await fs.writeFile(path.join(dir, 'out/f'), 'a\n');
      setXattr(path.join(dir, 'out/f'), 'user.test', Buffer.from('1'));
    })])).not.toBe(d);
    // Removed by a whiteout above.
    expect(await sel([lower, await layer(async (dir) => {
      await fs.mkdir(path.join(dir, 'out'));
      await mknod(path.join(dir, 'out/f'), S_IFCHR, 0, 0);
    })])).not.toBe(d);
  });

  it('a selection through a symlink is keyed by what the link leads to, not by the whole tree', async () => {
    const lower = await layer(async (d) => {
      await baseTree(d);
      await fs.symlink('out', path.join(d, 'link'));
    });
    const a = copy('/link/f');
    const d = await hasher().selectionDigest([lower], a);
    expect(await hasher().selectionDigest([lower, await layer(async (dir) => fs.writeFile(path.join(dir, 'other'), 'x'))], a)).toBe(d);
    expect(await hasher().selectionDigest([lower, await layer(async (dir) => {
      await fs.mkdir(path.join(dir, 'out'));
      await fs.writeFile(path.join(dir, 'out/f'), 'changed');
    })], a)).not.toBe(d);
    // A wildcard match that is a followed symlink: what it leads to is selected, the rest of the tree not.
    const wild = copy('/out/*.so', { allowWildcard: true });
    const lib = await layer(async (dir) => {
      await fs.mkdir(path.join(dir, 'out'));
      await fs.mkdir(path.join(dir, 'lib'));
      await fs.writeFile(path.join(dir, 'lib/real.so'), 'v1');
      await fs.symlink('/lib/real.so', path.join(dir, 'out/x.so'));
    });
    const w = await hasher().selectionDigest([lower, lib], wild);
    expect(await hasher().selectionDigest([lower, lib, await layer(async (dir) => fs.writeFile(path.join(dir, 'other'), 'y'))], wild)).toBe(w);
    expect(await hasher().selectionDigest([lower, lib, await layer(async (dir) => {
      await fs.mkdir(path.join(dir, 'lib'));
      await fs.writeFile(path.join(dir, 'lib/real.so'), 'v2');
    })], wild)).not.toBe(w);
    // A missing source throws (the copy reports it).
    await expect(hasher().selectionDigest([lower], copy('/nope'))).rejects.toThrow();
  });
});
