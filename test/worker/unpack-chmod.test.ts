// ADD's archive detection and extraction, and COPY --chmod's symbolic modes, against independent
// references: GNU tar, gzip, bzip2, xz and zstd make the archives; GNU chmod (umask 0, as BuildKit
// applies modes) computes the expected permission bits.
import { describe, it, expect } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { isArchive, unpackArchive } from '../../src/worker/unpack.js';
import { applySymbolicMode, parseSymbolicMode } from '../../solver/llb/chmod.js';
import { rawTar, type RawEntry } from '../helpers/rawtar.js';

const exec = promisify(execFile);

describe('archive detection and extraction', () => {
  it('detects tar archives by content, whatever their names, and extracts them', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'builder-unpack-'));
    const src = path.join(dir, 'src');
    await fs.mkdir(path.join(src, 'd'), { recursive: true });
    await fs.writeFile(path.join(src, 'd/f.txt'), 'f\n');
    await fs.symlink('d/f.txt', path.join(src, 'link'));
    await exec('tar', ['--owner=7', '--group=8', '-cf', path.join(dir, 'plain.bin'), '-C', src, 'd', 'link']);
    for (const [tool, name] of [['gzip', 'a.gz'], ['bzip2', 'a.bz2'], ['xz', 'a.xz'], ['zstd', 'a.zst']]) {
      await exec('sh', ['-c', `${tool} -c < ${path.join(dir, 'plain.bin')} > ${path.join(dir, name)}`]);
    }
    await fs.writeFile(path.join(dir, 'notar.tar'), 'just text, not a tar header\n'.repeat(40));
    await exec('sh', ['-c', `gzip -c < ${path.join(dir, 'notar.tar')} > ${path.join(dir, 'notar.tar.gz')}`]);
    await fs.writeFile(path.join(dir, 'empty.tar'), '');

    for (const name of ['plain.bin', 'a.gz', 'a.bz2', 'a.xz', 'a.zst']) {
      expect(await isArchive(path.join(dir, name)), name).toBe(true);
      const dest = path.join(dir, `out-${name}`);
      await fs.mkdir(dest);
      await unpackArchive(path.join(dir, name), dest);
      expect(await fs.readFile(path.join(dest, 'd/f.txt'), 'utf8')).toBe('f\n');
      expect(await fs.readlink(path.join(dest, 'link'))).toBe('d/f.txt');
      const st = await fs.lstat(path.join(dest, 'd/f.txt'));
      expect([st.uid, st.gid]).toEqual([7, 8]);
    }
    for (const name of ['notar.tar', 'notar.tar.gz', 'empty.tar']) expect(await isArchive(path.join(dir, name)), name).toBe(false);
  });

  it('keeps entries inside the destination (.. and absolute symlinks)', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'builder-unpack-evil-'));
    const src = path.join(dir, 'src');
    await fs.mkdir(src);
    await fs.symlink('/', path.join(src, 'root'));
    await fs.writeFile(path.join(dir, 'victim'), 'x');
    await fs.writeFile(path.join(dir, 'payload'), 'pwned');
    // An entry through an absolute symlink, and one climbing with .., must land inside the destination.
    await exec('tar', ['-cf', path.join(dir, 'evil.tar'), '-C', src, 'root']);
    await exec('tar', ['-rf', path.join(dir, 'evil.tar'), '--transform', `s|.*|root${dir}/victim|`, '-C', dir, 'payload']);
    await exec('tar', ['-rf', path.join(dir, 'evil.tar'), '-P', '--transform', 's|.*|../../victim|', '-C', dir, 'payload']);
    const dest = path.join(dir, 'dest');
    await fs.mkdir(dest);
    await unpackArchive(path.join(dir, 'evil.tar'), dest);
    expect(await fs.readFile(path.join(dir, 'victim'), 'utf8')).toBe('x');
    expect(await fs.readFile(path.join(dest, dir, 'victim'), 'utf8')).toBe('pwned');
    expect(await fs.readFile(path.join(dest, 'victim'), 'utf8')).toBe('pwned');
  });

  it('gives a hard link entry\'s own mode, owner and time to the inode it shares, as moby\'s archive does', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'builder-unpack-hardlink-'));
    const entries: RawEntry[] = [
      { name: 'bin/', type: 'dir' },
      { name: 'bin/suid', type: 'file', content: 'x', mode: 0o4755, uid: 0, gid: 0, mtime: 1_600_000_000 },
      { name: 'bin/plain', type: 'link', linkname: 'bin/suid', mode: 0o644, uid: 1000, gid: 1001, mtime: 1_650_000_000 },
      { name: 'sl', type: 'symlink', linkname: 'bin/suid', uid: 3, gid: 3, mtime: 1_600_000_000 },
      // A link to a symlink shares the symlink's inode: it takes the owner, but no mode or time (they would follow it).
      { name: 'sl2', type: 'link', linkname: 'sl', mode: 0o600, uid: 5, gid: 6, mtime: 1_650_000_000 },
    ];
    await fs.writeFile(path.join(dir, 'a.tar'), rawTar(entries));
    const dest = path.join(dir, 'dest');
    await fs.mkdir(dest);
    await unpackArchive(path.join(dir, 'a.tar'), dest);
    const st = async (p: string) => {
      const s = await fs.lstat(path.join(dest, p));
      return { mode: s.mode & 0o7777, uid: s.uid, gid: s.gid, mtime: s.mtimeMs / 1000, ino: s.ino };
    };
    const [suid, plain] = [await st('bin/suid'), await st('bin/plain')];
    expect(plain.ino).toBe(suid.ino);
    expect(suid).toMatchObject({ mode: 0o644, uid: 1000, gid: 1001, mtime: 1_650_000_000 });
    const [sl, sl2] = [await st('sl'), await st('sl2')];
    expect(sl2.ino).toBe(sl.ino);
    expect(sl).toMatchObject({ uid: 5, gid: 6, mtime: 1_600_000_000 });
    // ADD --chown: the owner given wins for the link too; the link's mode still applies.
    const owned = path.join(dir, 'owned');
    await fs.mkdir(owned);
    await unpackArchive(path.join(dir, 'a.tar'), owned, { owner: { uid: 7, gid: 8 } });
    const o = await fs.lstat(path.join(owned, 'bin/suid'));
    expect([o.mode & 0o7777, o.uid, o.gid]).toEqual([0o644, 7, 8]);
  });
});

describe('symbolic chmod', () => {
  const specs = ['u+x', 'g-w', 'o=', 'a+r', '+x', '-w', 'u=rwx,go=rx', 'ug+s', 'o+t', '+t', 'a=X', 'u+X', 'go-rwx', 'g=u', 'o=g-w',
    'u-x+w', '=r', 'a+rwx,o-x', 'u=,g=,o=', 'u+s,g+s', 'g+X', 'o=u'];
  const modes = [0o644, 0o755, 0o600, 0o4711, 0o1777, 0o000, 0o070];

  it('matches GNU chmod (umask 0) on files and directories', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'builder-chmod-'));
    const file = path.join(dir, 'f');
    const sub = path.join(dir, 'd');
    await fs.writeFile(file, '');
    await fs.mkdir(sub);
    for (const spec of specs) {
      const set = parseSymbolicMode(spec);
      for (const mode of modes) {
        for (const [p, isDir] of [[file, false], [sub, true]] as const) {
          await fs.chmod(p, mode);
          await exec('sh', ['-c', `umask 0; chmod ${spec} ${p}`]);
          // The permission bits; GNU treats setuid, setgid and sticky differently from BSD's setmode
          // (which BuildKit uses), so those are checked by hand below.
          const want = (await fs.stat(p)).mode & 0o777;
          const got = applySymbolicMode(set, mode, isDir) & 0o777;
          expect(got.toString(8), `${spec} on ${mode.toString(8)} ${isDir ? 'dir' : 'file'}`).toBe(want.toString(8));
        }
      }
    }
  });

  it('treats setuid, setgid and sticky as BSD setmode does', () => {
    const cases: [string, number, number][] = [
      ['+t', 0o644, 0o1644], ['o+t', 0o644, 0o644], ['a=', 0o1777, 0o1000], ['ug+s', 0o755, 0o6755], ['o+s', 0o755, 0o755],
      ['g=u', 0o6755, 0o6775], ['u-s', 0o4755, 0o755], ['a-t', 0o1777, 0o777],
    ];
    for (const [spec, mode, want] of cases) expect(applySymbolicMode(parseSymbolicMode(spec), mode, false).toString(8), spec).toBe(want.toString(8));
  });

  it('rejects what is not a mode', () => {
    for (const bad of ['u+q', 'x+u', 'u', 'u+x,', '', '9', 'a=rw,']) expect(() => parseSymbolicMode(bad), bad).toThrow();
  });
});
