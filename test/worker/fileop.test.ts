import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { CopyAction, FileAction } from '../../solver/llb/ops.js';
import { applyFileActions, FileOpError } from '../../src/worker/fileop.js';
import { goMatch, PatternMatcher } from '../../src/util/patterns.js';
import { Snapshotter } from '../../src/snapshot/snapshotter.js';
import { mountsUnder, unmount } from '../../src/snapshot/mount.js';
import { getXattr, setXattr } from '../../src/native/fsx.js';

const copy = (src: string, dest: string, extra: Partial<CopyAction> = {}): CopyAction => ({
  action: 'copy', sourceInput: 0, src, dest, followSymlinks: true, dirCopyContents: true,
  createDestPath: true, allowWildcard: true, allowEmptyWildcard: false, ...extra,
});

async function tree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (abs: string, rel: string) => {
    for (const name of (await fs.readdir(abs)).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const st = await fs.lstat(path.join(abs, name));
      out.push(st.isDirectory() ? `${r}/` : st.isSymbolicLink() ? `${r} -> ${await fs.readlink(path.join(abs, name))}` : r);
      if (st.isDirectory()) await walk(path.join(abs, name), r);
    }
  };
  await walk(dir, '');
  return out;
}

describe('applyFileActions', () => {
  let tmp: string;
  let src: string;
  let root: string;
  const S = (p: string) => path.join(src, p);
  const R = (p: string) => path.join(root, p);
  const run = (...actions: FileAction[]) => applyFileActions(root, actions, [src]);

  beforeEach(async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'fileop-'));
    src = path.join(tmp, 'src');
    root = path.join(tmp, 'root');
    await fs.mkdir(root);
    await fs.mkdir(path.join(src, 'dir/sub'), { recursive: true });
    await fs.writeFile(S('a.txt'), 'A');
    await fs.writeFile(S('b.txt'), 'B');
    await fs.writeFile(S('c.md'), 'C');
    await fs.writeFile(S('dir/one'), '1');
    await fs.writeFile(S('dir/sub/two'), '2');
    await fs.chown(S('dir/sub/two'), 7, 8);
    await fs.chmod(S('dir/sub/two'), 0o4750);
    await fs.symlink('sub/two', S('dir/rel-link'));
    await fs.link(S('dir/one'), S('dir/one-hard'));
    await fs.utimes(S('a.txt'), 1_234_567_890, 1_234_567_890);
    setXattr(S('b.txt'), 'user.tag', Buffer.from('blue'));
  });
  afterEach(async () => {
    for (const m of await mountsUnder(tmp)) await unmount(m, { lazy: true });
    await fs.rm(tmp, { recursive: true, force: true });
  });

  it('copies a file into a directory, to a new name, and into an existing directory', async () => {
    await fs.mkdir(R('existing'));
    await run(copy('a.txt', '/dest/'), copy('/a.txt', '/renamed.txt'), copy('b.txt', '/existing'), copy('c.md', '/multi', { destIsDir: true }));
    expect(await fs.readFile(R('dest/a.txt'), 'utf8')).toBe('A');
    expect(await fs.readFile(R('renamed.txt'), 'utf8')).toBe('A');
    expect(await fs.readFile(R('existing/b.txt'), 'utf8')).toBe('B');
    expect(await fs.readFile(R('multi/c.md'), 'utf8')).toBe('C');
    const st = await fs.stat(R('dest/a.txt'));
    expect(st.mtimeMs).toBe(1_234_567_890_000);
    expect(getXattr(R('existing/b.txt'), 'user.tag')?.toString()).toBe('blue');
    expect((await fs.stat(R('dest'))).mode & 0o7777).toBe(0o755);
  });

  it('copies directory contents (or the directory itself), keeping owners, modes, symlinks and hardlinks', async () => {
    await run(copy('dir', '/app'), copy('dir', '/whole/', { dirCopyContents: false }));
    expect(await tree(R('app'))).toEqual(['one', 'one-hard', 'rel-link -> sub/two', 'sub/', 'sub/two']);
    expect(await tree(R('whole'))).toEqual(['dir/', 'dir/one', 'dir/one-hard', 'dir/rel-link -> sub/two', 'dir/sub/', 'dir/sub/two']);
    const two = await fs.stat(R('app/sub/two'));
    expect([two.uid, two.gid, two.mode & 0o7777]).toEqual([7, 8, 0o4750]);
    expect((await fs.stat(R('app/one'))).ino).toBe((await fs.stat(R('app/one-hard'))).ino);
    expect((await fs.stat(R('app/one'))).nlink).toBe(2);
  });

  it('expands wildcards with Go filepath.Match semantics', async () => {
    await run(copy('*.txt', '/out/'), copy('dir/s?b', '/q/'), copy('[ab].txt', '/cls/'));
    expect(await tree(R('out'))).toEqual(['a.txt', 'b.txt']);
    expect(await tree(R('q'))).toEqual(['two']);
    expect(await tree(R('cls'))).toEqual(['a.txt', 'b.txt']);
    await expect(run(copy('*.none', '/x/'))).rejects.toThrow('"/*.none": not found');
    await run(copy('*.none', '/x/', { allowEmptyWildcard: true }));
    expect(goMatch('a\\*b', 'a*b')).toBe(true);
    expect(goMatch('a\\*b', 'axb')).toBe(false);
    expect(goMatch('[^a-c]x', 'dx')).toBe(true);
    expect(goMatch('*', 'a/b')).toBe(false);
    expect(() => goMatch('[a', 'a')).toThrow(/syntax error in pattern/);
  });

  it('reports a missing source as BuildKit does', async () => {
    const err = await run(copy('missing.txt', '/'), copy('a.txt', '/never')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FileOpError);
    expect(err).toMatchObject({ code: 'NOT_FOUND', message: '"/missing.txt": not found' });
    await expect(fs.access(R('never'))).rejects.toThrow();
  });

  it('resolves --chown names in the destination passwd/group and applies --chmod to files and dirs', async () => {
    await fs.mkdir(R('etc'));
    await fs.writeFile(R('etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n');
    await fs.writeFile(R('etc/group'), 'root:x:0:\nstaff:x:50:app\n');
    await run(copy('dir', '/srv/new/', { owner: { user: 'app', group: 'staff' }, mode: 0o640 }));
    // As fsutil: the destination of a contents copy is made like mkdir -p (0755, owner), not from the source.
    for (const p of ['srv', 'srv/new']) {
      const st = await fs.stat(R(p));
      expect([p, st.mode & 0o7777, st.uid, st.gid]).toEqual([p, 0o755, 1000, 50]);
    }
    for (const p of ['srv/new/one', 'srv/new/sub', 'srv/new/sub/two']) {
      const st = await fs.lstat(R(p));
      expect([p, st.uid, st.gid]).toEqual([p, 1000, 50]);
      expect([p, st.mode & 0o7777]).toEqual([p, 0o640]);
    }
  });

  it('resolves --chown as BuildKit\'s readUser: primary group, numeric ids, unknown names as 0 with a warning', async () => {
    await fs.mkdir(R('etc'));
    // `app` has primary group 1001, which /etc/group does not even name; ids that are not numbers read as 0.
    await fs.writeFile(R('etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n  app:x:1000:1001::/home/app:/bin/sh  \nodd:x:7:x\napp:x:5:5\n');
    await fs.writeFile(R('etc/group'), 'root:x:0:\nstaff:x:50:app\n');
    const warnings: string[] = [];
    const owned = async (owner: { user?: string | number; group?: string | number }) => {
      const dest = `/o${warnings.length}-${Math.random().toString(36).slice(2)}`;
      await applyFileActions(root, [copy('a.txt', dest, { owner })], [src], { warn: (m) => warnings.push(m) });
      const st = await fs.lstat(R(dest));
      return [st.uid, st.gid];
    };
    expect(await owned({ user: 'app' })).toEqual([1000, 1001]);
    expect(await owned({ user: 'odd' })).toEqual([7, 0]);
    expect(await owned({ user: 1234 })).toEqual([1234, 1234]);
    expect(await owned({ user: 1234, group: 'staff' })).toEqual([1234, 50]);
    expect(await owned({ user: 'app', group: 0 })).toEqual([1000, 0]);
    expect(warnings).toEqual([]);
    expect(await owned({ user: 'nobody-here' })).toEqual([0, 0]);
    expect(await owned({ user: 1234, group: 'nogroup-here' })).toEqual([1234, 1234]);
    expect(await owned({ user: 'app', group: 'nogroup-here' })).toEqual([1000, 1001]);
    expect(await owned({ user: 'nobody-here', group: 'staff' })).toEqual([0, 50]);
    expect(warnings).toEqual([
      'no user "nobody-here" in /etc/passwd: owner set to 0:0',
      'no group "nogroup-here" in /etc/group: owner set to 1234:1234',
      'no group "nogroup-here" in /etc/group: owner set to 1000:1001',
      'no user "nobody-here" in /etc/passwd: owner set to 0:50',
    ]);
    // mkdir and mkfile owners (WORKDIR under USER) resolve the same way; one warning per op for one name.
    warnings.length = 0;
    await applyFileActions(root, [
      { action: 'mkdir', path: '/made', mode: 0o755, makeParents: true, owner: { user: 'ghost' } },
      { action: 'mkfile', path: '/made/f', mode: 0o644, data: '', owner: { user: 'ghost' } },
    ], [src], { warn: (m) => warnings.push(m) });
    expect([(await fs.lstat(R('made/f'))).uid, (await fs.lstat(R('made'))).gid]).toEqual([0, 0]);
    expect(warnings).toEqual(['no user "ghost" in /etc/passwd: owner set to 0:0']);
  });

  it('reads /etc/passwd through symlinks inside the root only, and refuses one that is not a regular file', async () => {
    await fs.mkdir(R('private/etc'), { recursive: true });
    await fs.symlink('/private/etc', R('etc'));
    await fs.writeFile(R('private/etc/passwd'), 'app:x:1000:1001::/:/bin/sh\n');
    await run(copy('a.txt', '/via-link', { owner: { user: 'app' } }));
    expect([(await fs.lstat(R('via-link'))).uid, (await fs.lstat(R('via-link'))).gid]).toEqual([1000, 1001]);
    // An absolute link out of the root resolves inside it: the host's /etc/passwd is never read.
    await fs.rm(R('etc'));
    await fs.symlink('/', R('etc'));
    const hostUser = (await fs.readFile('/etc/passwd', 'utf8')).split('\n').map((l) => l.split(':')).find((f) => Number(f[2]) > 0)!;
    await run(copy('a.txt', '/not-host', { owner: { user: hostUser[0] } }));
    expect((await fs.lstat(R('not-host'))).uid).toBe(0);
    await fs.rm(R('etc'));
    await fs.mkdir(R('etc/passwd'), { recursive: true });
    await expect(run(copy('a.txt', '/x', { owner: { user: 'app' } }))).rejects.toMatchObject({ code: 'INVALID_USER_FILE', message: '/etc/passwd is not a regular file' });
  });

  it('refuses to replace a directory with a file, or to copy a directory over a file', async () => {
    await fs.mkdir(R('d/a.txt'), { recursive: true });
    await expect(run(copy('a.txt', '/d/'))).rejects.toMatchObject({ code: 'IS_A_DIRECTORY' });
    await fs.mkdir(R('e'));
    await fs.writeFile(R('e/sub'), 'file');
    await expect(run(copy('dir', '/e/'))).rejects.toMatchObject({ code: 'NOT_A_DIRECTORY', message: 'cannot copy to non-directory: /e/sub' });
  });

  it('creates the destination path only when asked', async () => {
    await expect(run(copy('a.txt', '/no/such/dir/f', { createDestPath: false }))).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await run(copy('a.txt', '/no/such/dir/f'));
    expect(await fs.readFile(R('no/such/dir/f'), 'utf8')).toBe('A');
    for (const p of ['no', 'no/such', 'no/such/dir']) expect((await fs.stat(R(p))).mode & 0o7777).toBe(0o755);
  });

  it('follows a source symlink inside the source root only when asked', async () => {
    await fs.mkdir(S('real'));
    await fs.writeFile(S('real/file'), 'R');
    await fs.symlink('/real/file', S('abs-link'));
    await fs.symlink('../../../../real', S('dir/up-link'));
    await run(copy('abs-link', '/followed'), copy('abs-link', '/kept', { followSymlinks: false }), copy('dir/up-link', '/viaup/'));
    expect(await fs.readFile(R('followed'), 'utf8')).toBe('R');
    expect(await fs.readlink(R('kept'))).toBe('/real/file');
    expect(await tree(R('viaup'))).toEqual(['file']);
  });

  it('keeps destination symlinks inside the root', async () => {
    const outside = path.join(tmp, 'outside');
    await fs.mkdir(outside);
    await fs.symlink(outside, R('escape'));
    await fs.symlink('../../..', R('up'));
    await run(copy('a.txt', '/escape/'), copy('b.txt', '/up/b.txt'));
    expect(await fs.readdir(outside)).toEqual([]);
    expect(await fs.readFile(path.join(root, outside, 'a.txt'), 'utf8')).toBe('A');
    expect(await fs.readFile(R('b.txt'), 'utf8')).toBe('B');
  });

  it('filters with include and exclude patterns (.dockerignore syntax)', async () => {
    await fs.mkdir(S('node_modules/pkg'), { recursive: true });
    await fs.writeFile(S('node_modules/pkg/index.js'), '');
    await fs.writeFile(S('debug.log'), '');
    await fs.writeFile(S('keep.log'), '');
    await fs.mkdir(S('logs/deep'), { recursive: true });
    await fs.writeFile(S('logs/deep/x.log'), '');
    await fs.writeFile(S('logs/deep/important.log'), '');
    await run(copy('/', '/ctx/', { allowWildcard: false, excludePatterns: ['*.log', 'node_modules', '!keep.log', 'logs', '!logs/**/important.log'] }));
    expect(await tree(R('ctx'))).toEqual([
      'a.txt', 'b.txt', 'c.md', 'dir/', 'dir/one', 'dir/one-hard', 'dir/rel-link -> sub/two', 'dir/sub/', 'dir/sub/two',
      'keep.log', 'logs/', 'logs/deep/', 'logs/deep/important.log',
    ]);
    await run(copy('/', '/inc/', { allowWildcard: false, includePatterns: ['dir/sub', '*.md'] }));
    expect(await tree(R('inc'))).toEqual(['c.md', 'dir/', 'dir/sub/', 'dir/sub/two']);
    const m = new PatternMatcher(['**/*.go', '!vendor/**']);
    expect(m.matches('a/b/c.go')).toBe(true);
    expect(m.matches('c.go')).toBe(true);
    expect(m.matches('vendor/x.go')).toBe(false);
  });

  it('runs mkdir, mkfile and rm', async () => {
    await run(
      { action: 'mkdir', path: '/w/x/y', mode: 0o750, makeParents: true, owner: { user: 3, group: 4 }, timestamp: 1_000_000 },
      { action: 'mkdir', path: '/w', mode: 0o700, makeParents: false },
      { action: 'mkfile', path: '/w/x/file', data: Buffer.from('content').toString('base64'), mode: 0o600, owner: { user: 9 } },
      { action: 'mkfile', path: '/w/x/rm1.tmp', data: '', mode: 0o644 },
      { action: 'mkfile', path: '/w/x/rm2.tmp', data: '', mode: 0o644 },
      { action: 'rm', path: '/w/x/*.tmp', allowNotFound: false, allowWildcard: true },
      { action: 'rm', path: '/nothing', allowNotFound: true, allowWildcard: false },
    );
    const y = await fs.stat(R('w/x/y'));
    expect([y.mode & 0o7777, y.uid, y.gid, y.mtimeMs]).toEqual([0o750, 3, 4, 1_000_000_000]);
    expect((await fs.stat(R('w'))).mode & 0o7777).toBe(0o750);
    const f = await fs.stat(R('w/x/file'));
    expect([f.mode & 0o7777, f.uid, f.gid]).toEqual([0o600, 9, 9]);
    expect(await fs.readFile(R('w/x/file'), 'utf8')).toBe('content');
    expect(await tree(R('w'))).toEqual(['x/', 'x/file', 'x/y/']);
    await expect(run({ action: 'rm', path: '/nothing', allowNotFound: false, allowWildcard: false })).rejects.toThrow('"/nothing": not found');
    await expect(run({ action: 'mkfile', path: '/no/dir/f', data: '', mode: 0o644 })).rejects.toBeInstanceOf(FileOpError);
  });

  it('writes only changes into the upper of an overlay mount', async () => {
    const snaps = new Snapshotter(path.join(tmp, 'state'));
    await snaps.init();
    const base = await snaps.prepare();
    await applyFileActions(snaps.fsPath(base), [copy('dir', '/app')], [src]);
    await snaps.commit(base);
    const upper = await snaps.prepare();
    const m = await snaps.mount([base], upper);
    try {
      await applyFileActions(m.target, [
        copy('a.txt', '/app/'),
        { action: 'rm', path: '/app/sub', allowNotFound: false, allowWildcard: false },
      ], [src]);
    } finally {
      await m.unmount();
    }
    expect(await tree(snaps.fsPath(upper))).toEqual(['app/', 'app/a.txt', 'app/sub']);
    expect((await fs.lstat(path.join(snaps.fsPath(upper), 'app/sub'))).isCharacterDevice()).toBe(true);
  });

  it('copies a large context', async () => {
    const big = path.join(tmp, 'big');
    for (let d = 0; d < 40; d++) {
      await fs.mkdir(path.join(big, `d${d}`), { recursive: true });
      await Promise.all(Array.from({ length: 100 }, (_, i) => fs.writeFile(path.join(big, `d${d}`, `f${i}`), `${d}-${i}`)));
    }
    await applyFileActions(root, [copy('/', '/ctx', { allowWildcard: false })], [big]);
    expect((await tree(R('ctx'))).length).toBe(40 * 101);
    expect(await fs.readFile(R('ctx/d39/f99'), 'utf8')).toBe('39-99');
  });

  it('copies small plain files the fast way and the rest the general way, with the same metadata', async () => {
    // Plain (fast path), setuid with an owner (fchown before fchmod), xattr, hardlink, empty, over 1 MiB.
    await fs.writeFile(S('dir/empty'), '');
    await fs.writeFile(S('dir/big'), Buffer.alloc((1 << 20) + 5, 7));
    await fs.utimes(S('dir/big'), 1_000_000_000, 1_000_000_000);
    // An existing file at the destination is replaced (the fast path's exclusive create falls back).
    await fs.mkdir(R('out/dir'), { recursive: true });
    await fs.writeFile(R('out/a.txt'), 'old');
    await run(copy('/', '/out', { allowWildcard: false }));
    const st = async (p: string) => fs.lstat(R(`out/${p}`));
    expect(await fs.readFile(R('out/a.txt'), 'utf8')).toBe('A');
    expect((await st('a.txt')).mtimeMs).toBe(1_234_567_890_000);
    const two = await st('dir/sub/two');
    expect([two.uid, two.gid, two.mode & 0o7777]).toEqual([7, 8, 0o4750]);
    expect(getXattr(R('out/b.txt'), 'user.tag')?.toString()).toBe('blue');
    expect((await st('dir/one')).ino).toBe((await st('dir/one-hard')).ino);
    expect((await st('dir/empty')).size).toBe(0);
    expect((await fs.readFile(R('out/dir/big'))).equals(Buffer.alloc((1 << 20) + 5, 7))).toBe(true);
    expect((await st('dir/big')).mtimeMs).toBe(1_000_000_000_000);
    // --chown and --chmod on the fast path (a directory's files).
    await run(copy('/dir/sub', '/owned/', { owner: { user: 5, group: 6 }, mode: 0o640 }));
    const owned = await fs.lstat(R('owned/two'));
    expect([owned.uid, owned.gid, owned.mode & 0o7777]).toEqual([5, 6, 0o640]);
  });
});
