import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { MAX_LAYERS, Snapshotter } from '../../src/snapshot/snapshotter.js';
import { mountOverlay, mountsUnder, unmount } from '../../src/snapshot/mount.js';
import { nativeMount } from '../../src/native/fsx.js';

const exec = promisify(execFile);

describe('Snapshotter', () => {
  let root: string;
  let snaps: Snapshotter;
  beforeEach(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'snap-'));
    snaps = new Snapshotter(root);
    await snaps.init();
  });
  afterEach(async () => {
    for (const m of await mountsUnder(root)) await unmount(m, { lazy: true });
    await fs.rm(root, { recursive: true, force: true });
  });

  async function layer(files: Record<string, string>): Promise<string> {
    const id = await snaps.prepare();
    for (const [name, content] of Object.entries(files)) {
      await fs.mkdir(path.dirname(path.join(snaps.fsPath(id), name)), { recursive: true });
      await fs.writeFile(path.join(snaps.fsPath(id), name), content);
    }
    await snaps.commit(id, { note: name(files) });
    return id;
  }
  const name = (files: Record<string, string>) => Object.keys(files).join(',');

  it('prepares short numeric ids and commits with info', async () => {
    const a = await snaps.prepare();
    const b = await snaps.prepare();
    expect(a).toMatch(/^[0-9]+$/);
    expect(Number(b)).toBeGreaterThan(Number(a));
    expect(await snaps.exists(a)).toBe(false);
    expect(await snaps.info(a)).toBeNull();
    await snaps.commit(a, { diffID: 'sha256:x' });
    expect(await snaps.exists(a)).toBe(true);
    const { uid } = (await snaps.info(a))!;
    expect(uid).toMatch(/^[0-9a-f]{24}$/);
    expect(await snaps.info(a)).toEqual({ diffID: 'sha256:x', created: expect.any(String), uid });
    // The uid stays with the snapshot whatever is recorded later.
    await snaps.setInfo(a, { diffID: 'sha256:y', blob: { size: 1 } });
    expect(await snaps.info(a)).toEqual({ diffID: 'sha256:y', blob: { size: 1 }, uid });
    await snaps.remove(a);
    expect(await snaps.exists(a)).toBe(false);
    await expect(fs.access(path.join(root, 'snapshots', a))).rejects.toThrow();
    await expect(snaps.setInfo(a, {})).rejects.toMatchObject({ code: 'SNAPSHOT' });
  });

  it('a marker that does not parse uncommits its snapshot (set aside, swept by recovery)', async () => {
    const a = await snaps.prepare();
    await snaps.commit(a, { diffID: 'sha256:x' });
    await fs.writeFile(path.join(root, 'snapshots', a, 'committed.json'), '{"diffID":"sha');
    expect(await snaps.info(a)).toBeNull();
    expect(await snaps.exists(a)).toBe(false);
    expect(await fs.readFile(path.join(root, 'snapshots', a, 'committed.json.corrupt'), 'utf8')).toBe('{"diffID":"sha');
    await new Snapshotter(root).init();
    await expect(fs.access(path.join(root, 'snapshots', a))).rejects.toThrow();
  });

  it('applies concurrent info updates one after another, none lost', async () => {
    const a = await snaps.prepare();
    await snaps.commit(a, {});
    await Promise.all([
      snaps.updateInfo<{ x?: number }>(a, (cur) => ({ ...cur, x: 1 })),
      snaps.updateInfo<{ y?: number }>(a, (cur) => ({ ...cur, y: 2 })),
    ]);
    expect(await snaps.info(a)).toMatchObject({ x: 1, y: 2 });
  });

  it('mounts read-only views of 0, 1 and several layers, newest on top', async () => {
    const l1 = await layer({ 'a': 'a1', 'b': 'b1' });
    const l2 = await layer({ 'b': 'b2', 'c': 'c2' });
    const empty = await snaps.mount([]);
    expect(await fs.readdir(empty.target)).toEqual([]);
    await empty.unmount();
    const one = await snaps.mount([l1]);
    expect((await fs.readdir(one.target)).sort()).toEqual(['a', 'b']);
    await expect(fs.writeFile(path.join(one.target, 'x'), 'x')).rejects.toMatchObject({ code: 'EROFS' });
    await one.unmount();
    const two = await snaps.mount([l1, l2]);
    expect((await fs.readdir(two.target)).sort()).toEqual(['a', 'b', 'c']);
    expect(await fs.readFile(path.join(two.target, 'b'), 'utf8')).toBe('b2');
    await expect(fs.writeFile(path.join(two.target, 'x'), 'x')).rejects.toMatchObject({ code: 'EROFS' });
    await two.unmount();
    await two.unmount(); // idempotent
    await expect(fs.access(two.target)).rejects.toThrow();
  });

  it('mounts read-write over an upper (with and without lowers); changes land in the upper', async () => {
    const up0 = await snaps.prepare();
    const m0 = await snaps.mount([], up0);
    await fs.writeFile(path.join(m0.target, 'new'), 'n');
    await m0.unmount();
    expect(await fs.readFile(path.join(snaps.fsPath(up0), 'new'), 'utf8')).toBe('n');

    const l1 = await layer({ 'keep': 'k', 'gone': 'g' });
    const up = await snaps.prepare();
    const m = await snaps.mount([l1], up);
    await fs.rm(path.join(m.target, 'gone'));
    await fs.writeFile(path.join(m.target, 'added'), 'x');
    await m.unmount();
    const st = await fs.lstat(path.join(snaps.fsPath(up), 'gone'));
    expect(st.isCharacterDevice() && st.rdev === 0).toBe(true);
    expect((await fs.readdir(snaps.fsPath(up))).sort()).toEqual(['added', 'gone']);
  });

  it('keeps mount options short with many layers', async () => {
    // 40 layers fit one page with absolute paths; 200 only relative to snapshots/ (the mount's own cwd).
    const ids: string[] = [];
    for (let i = 0; i < 200; i++) ids.push(await layer({ [`f${i}`]: String(i) }));
    for (const n of [40, 200]) {
      const m = await snaps.mount(ids.slice(0, n));
      expect((await fs.readdir(m.target)).length).toBe(n);
      await m.unmount();
    }
  });

  it('mounts the kernel\'s 500 layers with long ids through short links; whiteouts and opaque dirs hold', { timeout: 300_000 }, async () => {
    // Six-digit ids: 500 of them are more than a page of options, which once failed in mount(8).
    await fs.mkdir(path.join(root, 'snapshots', '100000', 'fs'), { recursive: true });
    await fs.writeFile(path.join(root, 'snapshots', '100000', 'committed.json'), '{}');
    await snaps.init();
    const ids: string[] = [await layer({ 'gone': 'g', 'd/old': 'o', 'keep': 'k' })];
    expect(ids[0]).toMatch(/^\d{6}$/);
    for (let i = 1; i < MAX_LAYERS; i++) {
      const id = await snaps.prepare();
      const fsDir = snaps.fsPath(id);
      await fs.writeFile(path.join(fsDir, `f${i}`), String(i));
      if (i === 300) {
        // A whiteout for `gone` and an opaque `d`, hiding what the bottom layer holds.
        await exec('mknod', [path.join(fsDir, 'gone'), 'c', '0', '0']);
        await fs.mkdir(path.join(fsDir, 'd'));
        await exec('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', path.join(fsDir, 'd')]);
        await fs.writeFile(path.join(fsDir, 'd/new'), 'n');
      }
      if (i === MAX_LAYERS - 1) await fs.writeFile(path.join(fsDir, 'keep'), 'top');
      await snaps.commit(id, {});
      ids.push(id);
    }
    const view = await snaps.mount(ids);
    const names = await fs.readdir(view.target);
    expect(names.filter((n) => !/^f\d+$/.test(n)).sort()).toEqual(['d', 'keep']);
    expect(names).toHaveLength(MAX_LAYERS - 1 + 2);
    expect(await fs.readdir(path.join(view.target, 'd'))).toEqual(['new']);
    expect(await fs.readFile(path.join(view.target, 'keep'), 'utf8')).toBe('top');
    await view.unmount();

    const up = await snaps.prepare();
    const rw = await snaps.mount(ids, up);
    await fs.rm(path.join(rw.target, 'f1'));
    await fs.writeFile(path.join(rw.target, 'f2'), 'changed');
    await rw.unmount();
    const st = await fs.lstat(path.join(snaps.fsPath(up), 'f1'));
    expect(st.isCharacterDevice() && st.rdev === 0).toBe(true);
    expect(await fs.readFile(path.join(snaps.fsPath(up), 'f2'), 'utf8')).toBe('changed');
    // Nothing left: no mount, no links directory.
    expect(await mountsUnder(root)).toEqual([]);
    expect(await fs.readdir(path.join(root, 'mounts'))).toEqual([]);

    // One more layer is refused in one line, mounting nothing.
    const more = await layer({ 'x': 'x' });
    await expect(snaps.mount([...ids, more])).rejects.toThrow(`max depth exceeded: ${MAX_LAYERS + 1} layers, overlayfs stacks at most ${MAX_LAYERS}`);
    expect(await fs.readdir(path.join(root, 'mounts'))).toEqual([]);
  });

  it('init() clears what a killed process left: mounts and uncommitted snapshots', async () => {
    const l1 = await layer({ 'a': 'a' });
    const active = await snaps.prepare();
    const m = await snaps.mount([l1], active);
    await fs.writeFile(path.join(m.target, 'half'), 'written');
    // A new process on the same root (the old one "died" without unmounting).
    const again = new Snapshotter(root);
    await again.init();
    expect(await mountsUnder(path.join(root, 'mounts'))).toEqual([]);
    expect(await fs.readdir(path.join(root, 'mounts'))).toEqual([]);
    expect(await again.exists(l1)).toBe(true);
    await expect(fs.access(path.join(root, 'snapshots', active))).rejects.toThrow();
    const next = await again.prepare();
    expect(next).not.toBe(l1);
  });

  it('mounts through the addon (no mount(8)): relative overlay options from a directory of their own, the process\'s cwd untouched', async () => {
    expect(nativeMount()).not.toBeNull();
    const l1 = await layer({ 'a': 'a1' });
    const l2 = await layer({ 'b': 'b2' });
    const cwd = process.cwd();
    const target = path.join(root, 'view');
    await fs.mkdir(target);
    // Relative to snapshots/, as Snapshotter names layers: resolved there, not in the process's cwd.
    await mountOverlay(target, `lowerdir=${l2}/fs:${l1}/fs`, path.join(root, 'snapshots'));
    expect(process.cwd()).toBe(cwd);
    expect((await fs.readdir(target)).sort()).toEqual(['a', 'b']);
    expect((await mountsUnder(root))).toEqual([target]);
    await unmount(target);
    expect(await mountsUnder(root)).toEqual([]);
    // Failures are MountErrors naming the mount, with the reason.
    await expect(mountOverlay(target, 'lowerdir=no-such-layer/fs', path.join(root, 'snapshots'))).rejects.toMatchObject({
      code: 'MOUNT_FAILED', message: expect.stringMatching(/^mount -t overlay overlay .*view: No such file or directory/),
    });
    await expect(unmount(target)).rejects.toMatchObject({ code: 'MOUNT_FAILED', message: expect.stringMatching(/^umount .*view: Invalid argument/) });
  });
});
