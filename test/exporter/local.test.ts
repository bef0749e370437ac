import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { exportLocalDir } from '../../src/exporter/local.js';
import { S_IFCHR, S_IFIFO, getXattr, mknod, setXattr } from '../../src/native/fsx.js';

describe('exportLocalDir', () => {
  let tmp: string;
  let src: string;
  let dest: string;
  const old = new Date('2020-01-02T03:04:05Z');

  beforeEach(async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'local-export-'));
    src = path.join(tmp, 'src');
    dest = path.join(tmp, 'out');
    await fs.mkdir(path.join(src, 'dir/sub'), { recursive: true });
    await fs.writeFile(path.join(src, 'dir/file.txt'), 'hello\n');
    await fs.chmod(path.join(src, 'dir/file.txt'), 0o640);
    await fs.writeFile(path.join(src, 'suid'), '#!/bin/sh\n');
    await fs.chown(path.join(src, 'suid'), 1000, 50);
    await fs.chmod(path.join(src, 'suid'), 0o4755);
    await fs.link(path.join(src, 'dir/file.txt'), path.join(src, 'hardlink'));
    await fs.symlink('dir/file.txt', path.join(src, 'link'));
    await fs.symlink('/nowhere', path.join(src, 'dangling'));
    mknod(path.join(src, 'fifo'), S_IFIFO | 0o600, 0, 0);
    mknod(path.join(src, 'null'), S_IFCHR | 0o666, 1, 3);
    setXattr(path.join(src, 'dir/file.txt'), 'user.note', Buffer.from('kept'));
    await fs.chmod(path.join(src, 'dir/sub'), 0o700);
    await fs.chown(path.join(src, 'dir/sub'), 1000, 1000);
    for (const p of ['dir/file.txt', 'suid', 'dir/sub', 'dir', 'fifo']) await fs.utimes(path.join(src, p), old, old);
    await fs.lutimes(path.join(src, 'link'), old, old);
  });
  afterEach(async () => {
    await fs.rm(tmp, { recursive: true, force: true });
  });

  it('copies files, modes, owners, links, fifos, xattrs and mtimes; device nodes are skipped and reported', async () => {
    expect(await exportLocalDir(src, dest)).toEqual({ skipped: ['/null'] });
    const st = (p: string) => fs.lstat(path.join(dest, p));

    expect(await fs.readFile(path.join(dest, 'dir/file.txt'), 'utf8')).toBe('hello\n');
    expect((await st('dir/file.txt')).mode & 0o7777).toBe(0o640);
    expect((await st('dir/file.txt')).mtime).toEqual(old);
    expect((await st('suid')).mode & 0o7777).toBe(0o4755);
    expect(await st('suid')).toMatchObject({ uid: 1000, gid: 50 });
    expect(await st('dir/sub')).toMatchObject({ uid: 1000, gid: 1000 });
    expect((await st('dir/sub')).mode & 0o7777).toBe(0o700);
    expect((await st('dir')).mtime).toEqual(old);
    expect((await st('dir/sub')).mtime).toEqual(old);
    expect((await st('hardlink')).ino).toBe((await st('dir/file.txt')).ino);
    expect(await fs.readlink(path.join(dest, 'link'))).toBe('dir/file.txt');
    expect((await st('link')).mtime).toEqual(old);
    expect(await fs.readlink(path.join(dest, 'dangling'))).toBe('/nowhere');
    expect((await st('fifo')).isFIFO()).toBe(true);
    await expect(st('null')).rejects.toMatchObject({ code: 'ENOENT' });
    expect(getXattr(path.join(dest, 'dir/file.txt'), 'user.note')?.toString()).toBe('kept');
  });

  it('merges into an existing directory, replacing what is in the way', async () => {
    await fs.mkdir(path.join(dest, 'dir/file.txt'), { recursive: true });
    await fs.writeFile(path.join(dest, 'keep.txt'), 'mine');
    await fs.writeFile(path.join(dest, 'link'), 'not a link');
    await exportLocalDir(src, dest);
    expect(await fs.readFile(path.join(dest, 'dir/file.txt'), 'utf8')).toBe('hello\n');
    expect(await fs.readFile(path.join(dest, 'keep.txt'), 'utf8')).toBe('mine');
    expect(await fs.readlink(path.join(dest, 'link'))).toBe('dir/file.txt');
  });
});
