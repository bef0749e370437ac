import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import { ContentStore } from '../../src/content/store.js';
import { Snapshotter } from '../../src/snapshot/snapshotter.js';
import { mountsUnder, unmount } from '../../src/snapshot/mount.js';
import { applyLayerBlob, applyLayerTar, createLayerBlob, layerUnpackedSize, UnsupportedMediaTypeError, writeLayerTar } from '../../src/archive/layer.js';
import { readTar, TarWriter, type TarHeader } from '../../src/archive/tar.js';
import { rawTar } from '../helpers/rawtar.js';
import { getXattr, listXattrs, mknod, setXattr, S_IFCHR, S_IFIFO } from '../../src/native/fsx.js';

/** A v2 file capability: cap_net_raw in the permitted set, effective bit on. */
const CAP_NET_RAW = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

async function tarBuffer(dir: string, opts?: { sourceDateEpoch?: number }): Promise<Buffer> {
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (c: Buffer) => chunks.push(c));
  await writeLayerTar(dir, out, opts);
  out.end();
  return Buffer.concat(chunks);
}

async function entries(tar: Buffer): Promise<TarHeader[]> {
  const out: TarHeader[] = [];
  for await (const e of readTar(Readable.from([tar]))) out.push(e.header);
  return out;
}

/** Everything observable about a tree: type, mode, owner, mtime (files), content, link target, xattrs. */
async function describeTree(dir: string, opts: { mtimes?: boolean } = {}): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (abs: string, rel: string) => {
    for (const name of (await fs.readdir(abs)).sort()) {
      const p = path.join(abs, name);
      const r = rel ? `${rel}/${name}` : name;
      const st = await fs.lstat(p);
      let d = `${(st.mode >>> 0).toString(8)} ${st.uid}:${st.gid}`;
      if (opts.mtimes && !st.isSymbolicLink()) d += ` t=${Math.floor(st.mtimeMs / 1000)}`;
      if (st.isFile()) d += ` ${(await fs.readFile(p)).toString('hex')}`;
      if (st.isSymbolicLink()) d += ` -> ${await fs.readlink(p)}`;
      if (st.isCharacterDevice() || st.isBlockDevice()) d += ` rdev=${st.rdev}`;
      for (const x of listXattrs(p).sort()) d += ` ${x}=${getXattr(p, x)!.toString('hex')}`;
      out[r] = d;
      if (st.isDirectory()) await walk(p, r);
    }
  };
  await walk(dir, '');
  return out;
}

describe('layer archives', () => {
  let tmp: string;
  let snaps: Snapshotter;
  let store: ContentStore;
  beforeEach(async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'layer-'));
    snaps = new Snapshotter(path.join(tmp, 'state'));
    await snaps.init();
    store = new ContentStore(path.join(tmp, 'content'));
  });
  afterEach(async () => {
    for (const m of await mountsUnder(tmp)) await unmount(m, { lazy: true });
    await fs.rm(tmp, { recursive: true, force: true });
  });

  it('turns overlay whiteouts and opaque dirs into OCI entries and back, giving the same view', async () => {
    const lower = await snaps.prepare();
    const lp = snaps.fsPath(lower);
    await fs.mkdir(path.join(lp, 'd'));
    await fs.writeFile(path.join(lp, 'd/old1'), '1');
    await fs.writeFile(path.join(lp, 'd/old2'), '2');
    await fs.writeFile(path.join(lp, 'x'), 'x');
    await fs.writeFile(path.join(lp, 'keep'), 'k');
    await snaps.commit(lower);

    const upper = await snaps.prepare();
    const m = await snaps.mount([lower], upper);
    await fs.rm(path.join(m.target, 'x'));
    await fs.rm(path.join(m.target, 'd'), { recursive: true });
    await fs.mkdir(path.join(m.target, 'd'));
    await fs.writeFile(path.join(m.target, 'd/new'), 'n');
    await fs.writeFile(path.join(m.target, 'added'), 'a');
    await m.unmount();
    await snaps.commit(upper);

    const tar = await tarBuffer(snaps.fsPath(upper));
    const names = (await entries(tar)).map((h) => h.name);
    expect(names).toEqual(['.wh.x', 'added', 'd/', 'd/.wh..wh..opq', 'd/new']);

    // GNU tar, an independent reader, agrees.
    const tarFile = path.join(tmp, 'upper.tar');
    await fs.writeFile(tarFile, tar);
    const listing = execFileSync('tar', ['-tvf', tarFile, '--numeric-owner'], { encoding: 'utf8' });
    expect(listing).toMatch(/^-+ 0\/0\s+0 .* \.wh\.x$/m);
    expect(listing).toMatch(/^d.* d\/$/m);
    expect(listing).toMatch(/ d\/\.wh\.\.wh\.\.opq$/m);

    const applied = await snaps.prepare();
    await applyLayerTar(Readable.from([tar]), snaps.fsPath(applied));
    await snaps.commit(applied);
    const w = await fs.lstat(path.join(snaps.fsPath(applied), 'x'));
    expect(w.isCharacterDevice() && w.rdev === 0).toBe(true);
    expect(getXattr(path.join(snaps.fsPath(applied), 'd'), 'trusted.overlay.opaque')?.toString()).toBe('y');

    const viewA = await snaps.mount([lower, upper]);
    const viewB = await snaps.mount([lower, applied]);
    const [a, b] = [await describeTree(viewA.target), await describeTree(viewB.target)];
    expect(Object.keys(b)).toEqual(['added', 'd', 'd/new', 'keep']);
    expect(b).toEqual(a);
    await viewA.unmount();
    await viewB.unmount();
  });

  it('keeps modes, owners, times, links, devices and xattrs through write -> apply', async () => {
    const src = path.join(tmp, 'src');
    await fs.mkdir(src);
    const f = (p: string) => path.join(src, p);
    await fs.writeFile(f('suid'), 'binary');
    await fs.chown(f('suid'), 1000, 1000);
    await fs.chmod(f('suid'), 0o4755);
    await fs.mkdir(f('tmp'));
    await fs.chown(f('tmp'), 2, 3);
    await fs.chmod(f('tmp'), 0o1777);
    await fs.writeFile(f('ping'), 'ping');
    await fs.chmod(f('ping'), 0o755);
    setXattr(f('ping'), 'security.capability', CAP_NET_RAW);
    setXattr(f('ping'), 'user.note', Buffer.from([0xff, 0x00, 0x80, 0x0a]));
    await fs.symlink('/etc/target/' + 'x'.repeat(150), f('longlink'));
    await fs.lchown(f('longlink'), 5, 6);
    await fs.writeFile(f('hard1'), 'shared');
    await fs.link(f('hard1'), f('hard2'));
    mknod(f('null'), S_IFCHR | 0o666, 1, 3);
    mknod(f('fifo'), S_IFIFO | 0o600, 0, 0);
    const deep = ['a'.repeat(60), 'b'.repeat(60), 'c'.repeat(60), 'ünïcödé-name.txt'].join('/');
    await fs.mkdir(path.dirname(f(deep)), { recursive: true });
    await fs.writeFile(f(deep), 'deep');
    await fs.writeFile(f('big'), Buffer.alloc(1_500_000, 7));
    for (const p of ['suid', 'ping', 'hard1', 'null', 'fifo', deep, 'big']) await fs.utimes(f(p), 1_600_000_000, 1_600_000_000);
    for (const p of ['tmp', path.dirname(deep), '.']) await fs.utimes(f(p), 1_500_000_000, 1_500_000_000);

    const tar = await tarBuffer(src);
    const headers = await entries(tar);
    expect(headers.find((h) => h.name === 'hard2')).toMatchObject({ type: 'link', linkname: 'hard1' });
    expect(headers.find((h) => h.name === 'ping')!.xattrs!.get('security.capability')).toEqual(CAP_NET_RAW);

    const dst = path.join(tmp, 'dst');
    await fs.mkdir(dst);
    await applyLayerTar(Readable.from([tar]), dst);
    const [a, b] = [await describeTree(src, { mtimes: true }), await describeTree(dst, { mtimes: true })];
    expect(b).toEqual(a);
    expect(b.suid).toMatch(/^104755 1000:1000 t=1600000000/);
    expect(b.ping).toContain(`security.capability=${CAP_NET_RAW.toString('hex')}`);
    expect((await fs.stat(path.join(dst, 'hard1'))).ino).toBe((await fs.stat(path.join(dst, 'hard2'))).ino);

    // GNU tar reads our PAX records (long names, xattrs) the same way.
    const tarFile = path.join(tmp, 'meta.tar');
    await fs.writeFile(tarFile, tar);
    const listing = execFileSync('tar', ['-tvf', tarFile, '--numeric-owner'], { encoding: 'utf8' });
    expect(listing).toMatch(/^-rwsr-xr-x 1000\/1000\s+6 2020-09-13 \d\d:\d\d suid$/m);
    expect(listing).toMatch(/^hrw-r--r-- .* hard2 link to hard1$/m);
    expect(listing).toContain(`longlink -> /etc/target/${'x'.repeat(150)}`);
    expect(listing).toContain(deep);
    const gnu = path.join(tmp, 'gnu');
    await fs.mkdir(gnu);
    execFileSync('tar', ['--xattrs', '--xattrs-include=*', '--numeric-owner', '-xpf', tarFile, '-C', gnu]);
    expect(getXattr(path.join(gnu, 'ping'), 'security.capability')).toEqual(CAP_NET_RAW);
    expect(getXattr(path.join(gnu, 'ping'), 'user.note')).toEqual(Buffer.from([0xff, 0x00, 0x80, 0x0a]));
    expect(await fs.readFile(path.join(gnu, deep), 'utf8')).toBe('deep');
  });

  it('extracts what GNU tar writes (pax format, xattrs)', async () => {
    const src = path.join(tmp, 'src');
    await fs.mkdir(path.join(src, 'dir/sub'), { recursive: true });
    await fs.writeFile(path.join(src, 'dir/sub/' + 'n'.repeat(120)), 'long');
    await fs.writeFile(path.join(src, 'cap'), 'c');
    setXattr(path.join(src, 'cap'), 'security.capability', CAP_NET_RAW);
    await fs.symlink('dir/sub', path.join(src, 'ln'));
    const tarFile = path.join(tmp, 'gnu.tar');
    execFileSync('tar', ['--format=posix', '--xattrs', '--xattrs-include=*', '--numeric-owner', '-cf', tarFile, '-C', src, '.']);
    const dst = path.join(tmp, 'dst');
    await fs.mkdir(dst);
    await applyLayerTar(Readable.from([await fs.readFile(tarFile)]), dst);
    const [a, b] = [await describeTree(src), await describeTree(dst)];
    expect(b).toEqual(a);
  });

  it('makes reproducible gzip blobs whose diff id is the tar digest, and extracts them', async () => {
    const src = path.join(tmp, 'src');
    await fs.mkdir(path.join(src, 'etc'), { recursive: true });
    await fs.writeFile(path.join(src, 'etc/hello'), 'hello\n');
    const blob = await createLayerBlob(store, src, { sourceDateEpoch: 1_000_000_000 });
    expect(blob.mediaType).toBe('application/vnd.oci.image.layer.v1.tar+gzip');
    expect(blob.empty).toBe(false);
    const gz = await store.readBuffer(blob.digest);
    expect(blob.size).toBe(gz.length);
    const tar = execFileSync('gzip', ['-dc'], { input: gz });
    expect(blob.diffID).toBe(`sha256:${createHash('sha256').update(tar).digest('hex')}`);
    expect((await entries(tar)).every((h) => h.mtime === 1_000_000_000)).toBe(true);
    // Same tree, same bytes.
    expect((await createLayerBlob(store, src, { sourceDateEpoch: 1_000_000_000 })).digest).toBe(blob.digest);

    const dst = path.join(tmp, 'dst');
    await fs.mkdir(dst);
    const { diffID } = await applyLayerBlob(store, { digest: blob.digest, mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip' }, dst);
    expect(diffID).toBe(blob.diffID);
    expect(await fs.readFile(path.join(dst, 'etc/hello'), 'utf8')).toBe('hello\n');

    const raw = await store.write(tar);
    const dst2 = path.join(tmp, 'dst2');
    await fs.mkdir(dst2);
    expect((await applyLayerBlob(store, { digest: raw.digest, mediaType: 'application/vnd.oci.image.layer.v1.tar' }, dst2)).diffID).toBe(blob.diffID);

    await expect(applyLayerBlob(store, { digest: blob.digest, mediaType: 'application/vnd.oci.image.layer.v1.tar+bzip2' }, dst2))
      .rejects.toBeInstanceOf(UnsupportedMediaTypeError);

    // zstd (through the zstd program) and uncompressed blobs of the same tree have the same diff id.
    const z = await createLayerBlob(store, src, { sourceDateEpoch: 1_000_000_000, compression: 'zstd' });
    expect(z.mediaType).toBe('application/vnd.oci.image.layer.v1.tar+zstd');
    expect(z.diffID).toBe(blob.diffID);
    expect(execFileSync('zstd', ['-dc'], { input: await store.readBuffer(z.digest) }).equals(tar)).toBe(true);
    const dst3 = path.join(tmp, 'dst3');
    await fs.mkdir(dst3);
    expect((await applyLayerBlob(store, z, dst3)).diffID).toBe(blob.diffID);
    const u = await createLayerBlob(store, src, { sourceDateEpoch: 1_000_000_000, compression: 'uncompressed' });
    expect(u.digest).toBe(blob.diffID);
  });

  it('measures a layer as Docker\'s overlay2 layer store does: files\' bytes and symlink targets, each inode once', async () => {
    const src = path.join(tmp, 'sized');
    await fs.mkdir(path.join(src, 'd/e'), { recursive: true });
    await fs.writeFile(path.join(src, 'd/file'), 'hello'); // 5
    await fs.link(path.join(src, 'd/file'), path.join(src, 'again')); // the same inode: 0
    await fs.symlink('/target/longer', path.join(src, 'lnk')); // 14
    await fs.writeFile(path.join(src, 'empty'), '');
    mknod(path.join(src, 'gone'), S_IFCHR | 0o600, 0, 0); // a whiteout: 0
    mknod(path.join(src, 'pipe'), S_IFIFO | 0o644, 0, 0);
    // Docker's pkg/directory.Size over the extracted layer: lstat sizes of non-directories, inodes once.
    const dockerSize = async (dir: string) => {
      const seen = new Set<number>();
      let n = 0;
      const walk = async (d: string): Promise<void> => {
        for (const name of await fs.readdir(d)) {
          const st = await fs.lstat(path.join(d, name));
          if (st.isDirectory()) { await walk(path.join(d, name)); continue; }
          if (st.size === 0 || seen.has(st.ino)) continue;
          seen.add(st.ino);
          n += st.size;
        }
      };
      await walk(dir);
      return n;
    };
    expect(await dockerSize(src)).toBe(19);
    for (const compression of ['gzip', 'zstd', 'uncompressed'] as const) {
      const blob = await createLayerBlob(store, src, { compression });
      expect(blob.unpackedSize, compression).toBe(19);
      expect(await store.readUnpackedSize(blob.digest)).toBe(19);
      // Not recorded (a loaded archive's layer): read through once, then recorded.
      await fs.rm(store.unpackedSizePath(blob.digest));
      expect(await layerUnpackedSize(store, blob)).toBe(19);
      expect(await store.readUnpackedSize(blob.digest)).toBe(19);
      // Extracting measures it too; the extracted tree measures the same the way Docker does.
      await fs.rm(store.unpackedSizePath(blob.digest));
      const dst = path.join(tmp, `dst-${compression}`);
      await fs.mkdir(dst);
      expect((await applyLayerBlob(store, blob, dst)).unpackedSize).toBe(19);
      expect(await store.readUnpackedSize(blob.digest)).toBe(19);
      expect(await dockerSize(dst)).toBe(19);
      // Removed with its blob.
      await store.remove(blob.digest);
      expect(await store.readUnpackedSize(blob.digest)).toBeUndefined();
    }
  });

  it('marks an empty layer', async () => {
    const src = path.join(tmp, 'empty');
    await fs.mkdir(src);
    const blob = await createLayerBlob(store, src);
    expect(blob.empty).toBe(true);
    const tar = execFileSync('gzip', ['-dc'], { input: await store.readBuffer(blob.digest) });
    expect(tar.equals(Buffer.alloc(1024))).toBe(true);
  });

  it('gives a hard link entry\'s own mode, owner and time to the inode it shares, as containerd\'s archive does', async () => {
    const tar = rawTar([
      { name: 'suid', type: 'file', content: 'x', mode: 0o4755, mtime: 1_600_000_000 },
      { name: 'plain', type: 'link', linkname: 'suid', mode: 0o644, uid: 1000, gid: 1001, mtime: 1_650_000_000 },
      { name: 'sl', type: 'symlink', linkname: 'suid', mtime: 1_600_000_000 },
      { name: 'sl2', type: 'link', linkname: 'sl', mode: 0o600, uid: 5, gid: 6, mtime: 1_650_000_000 },
    ]);
    const dst = path.join(tmp, 'dst');
    await fs.mkdir(dst);
    await applyLayerTar(Readable.from([tar]), dst);
    const suid = await fs.lstat(path.join(dst, 'suid'));
    expect(suid.ino).toBe((await fs.lstat(path.join(dst, 'plain'))).ino);
    expect([suid.mode & 0o7777, suid.uid, suid.gid, suid.mtimeMs / 1000]).toEqual([0o644, 1000, 1001, 1_650_000_000]);
    // Through a link to a symlink: owner and (no-follow) times, never a chmod through it.
    const sl = await fs.lstat(path.join(dst, 'sl'));
    expect([sl.isSymbolicLink(), sl.uid, sl.gid, sl.mtimeMs / 1000]).toEqual([true, 5, 6, 1_650_000_000]);
  });

  it('never writes outside the target directory', async () => {
    const evil = async (headers: [TarHeader, string?][]) => {
      const out = new PassThrough();
      const chunks: Buffer[] = [];
      out.on('data', (c: Buffer) => chunks.push(c));
      const w = new TarWriter(out);
      for (const [h, body] of headers) await w.add(h, body === undefined ? undefined : [Buffer.from(body)]);
      await w.finish();
      return Buffer.concat(chunks);
    };
    const base = { mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 0 };
    const dst = path.join(tmp, 'dst');
    await fs.mkdir(dst);
    await expect(applyLayerTar(Readable.from([await evil([[{ ...base, name: '../escape', type: 'file', size: 1 }, 'x']])]), dst))
      .rejects.toMatchObject({ code: 'UNSAFE_LAYER_PATH' });
    const outside = path.join(tmp, 'outside');
    await fs.mkdir(outside);
    const tar = await evil([
      [{ ...base, name: 'abs', type: 'symlink', linkname: outside }],
      [{ ...base, name: 'abs/owned', type: 'file', size: 2 }, 'hi'],
      [{ ...base, name: 'rel', type: 'symlink', linkname: '../../../..' + outside }],
      [{ ...base, name: 'rel/owned2', type: 'file', size: 2 }, 'hi'],
    ]);
    const dst2 = path.join(tmp, 'dst2');
    await fs.mkdir(dst2);
    await applyLayerTar(Readable.from([tar]), dst2);
    expect(await fs.readdir(outside)).toEqual([]);
    expect(await fs.readFile(path.join(dst2, outside, 'owned'), 'utf8')).toBe('hi');
    expect(await fs.readFile(path.join(dst2, outside, 'owned2'), 'utf8')).toBe('hi');
  });
});
