import { describe, it, expect, beforeEach } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import os from 'node:os';
import { createHash } from 'node:crypto';
import type { CopyAction } from '../../solver/llb/ops.js';
import { ContextChecksummer } from '../../src/worker/contenthash.js';
import { removeXattr, setXattr } from '../../src/native/fsx.js';

const copy = (src: string, extra: Partial<CopyAction> = {}): CopyAction => ({
  action: 'copy', sourceInput: 1, src, dest: '/dst/', followSymlinks: false, dirCopyContents: true,
  createDestPath: true, allowWildcard: true, allowEmptyWildcard: false, ...extra,
});

let dir: string;
let state: string;
const write = async (rel: string, data: string) => {
  await fs.mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
  await fs.writeFile(path.join(dir, rel), data);
};
/** A fresh checksummer per "build", sharing the persistent index, as the client does. */
const sum = (excludes?: string[]) => new ContextChecksummer(dir, excludes, path.join(state, 'index'));
const sel = async (src: string, excludes?: string[], extra?: Partial<CopyAction>) => {
  const s = sum(excludes);
  const d = (await s.selectionDigest(copy(src, extra))).digest;
  await s.flush();
  return d;
};

beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'builder-ch-'));
  state = await fs.mkdtemp(path.join(os.tmpdir(), 'builder-ch-state-'));
  await write('src/a.txt', 'a');
  await write('src/sub/b.txt', 'b');
  await write('other.txt', 'o');
  await write('x.go', 'x');
  await write('y.go', 'y');
});

describe('context checksums', () => {
  it('follow a file\'s xattrs (a COPY copies them), through the persistent index too', async () => {
    const before = await sel('src');
    const file = path.join(dir, 'src/a.txt');
    setXattr(file, 'user.origin', Buffer.from('one'));
    const one = await sel('src');
    expect(one).not.toBe(before);
    // Read back from the index by a new checksummer: the same digest, the file not read again.
    const again = sum();
    expect((await again.selectionDigest(copy('src'))).digest).toBe(one);
    expect(again.bytesRead).toBe(0);
    setXattr(file, 'user.origin', Buffer.from('two'));
    const two = await sel('src');
    expect(two).not.toBe(one);
    removeXattr(file, 'user.origin');
    expect(await sel('src')).toBe(before);
  });

  it('depend only on what a copy selects', async () => {
    const before = await sel('src/');
    await write('other.txt', 'changed');
    expect(await sel('src/')).toBe(before);
    await write('src/sub/b.txt', 'changed');
    expect(await sel('src/')).not.toBe(before);
  });

  it('follow content, mode, names and symlink targets, not times or the context path', async () => {
    const before = await sel('src');
    const later = new Date(Date.now() + 100_000);
    await fs.utimes(path.join(dir, 'src/a.txt'), later, later);
    expect(await sel('src')).toBe(before);
    await fs.chmod(path.join(dir, 'src/a.txt'), 0o600);
    const chmodded = await sel('src');
    expect(chmodded).not.toBe(before);
    await fs.rename(path.join(dir, 'src/a.txt'), path.join(dir, 'src/c.txt'));
    expect(await sel('src')).not.toBe(chmodded);
    await fs.symlink('c.txt', path.join(dir, 'src/link'));
    const linked = await sel('src');
    await fs.rm(path.join(dir, 'src/link'));
    await fs.symlink('sub', path.join(dir, 'src/link'));
    expect(await sel('src')).not.toBe(linked);
    // The same tree elsewhere has the same checksum.
    const copyDir = await fs.mkdtemp(path.join(os.tmpdir(), 'builder-ch-copy-'));
    await fs.cp(dir, copyDir, { recursive: true, preserveTimestamps: false, verbatimSymlinks: true });
    const elsewhere = new ContextChecksummer(copyDir, undefined);
    expect((await elsewhere.selectionDigest(copy('src'))).digest).toBe(await sel('src'));
  });

  it('select wildcards and honour excludes', async () => {
    const go = await sel('*.go');
    await write('other.txt', 'changed');
    expect(await sel('*.go')).toBe(go);
    await write('z.go', 'z');
    expect(await sel('*.go')).not.toBe(go);
    const all = await sel('/', ['other.txt']);
    await write('other.txt', 'again');
    expect(await sel('/', ['other.txt'])).toBe(all);
  });

  it('exclude as removing the files would, at any depth and with exceptions', async () => {
    await write('src/sub/deeper/c.txt', 'c');
    const without = async (...gone: string[]) => {
      const other = await fs.mkdtemp(path.join(os.tmpdir(), 'builder-ch-without-'));
      await fs.cp(dir, other, { recursive: true, verbatimSymlinks: true });
      for (const g of gone) await fs.rm(path.join(other, g), { recursive: true });
      return new ContextChecksummer(other, undefined).rootDigest();
    };
    const cases: [string[], string[]][] = [
      [['src/sub/b.txt'], ['src/sub/b.txt']],
      [['*/sub/b.txt'], ['src/sub/b.txt']],
      [['*/*/deeper'], ['src/sub/deeper']],
      [['**/c.txt'], ['src/sub/deeper/c.txt']],
      [['src/sub'], ['src/sub']],
      [['src', '!src/sub/b.txt'], ['src/a.txt', 'src/sub/deeper']],
      [['s[r]c/a.txt'], ['src/a.txt']],
    ];
    for (const [excludes, gone] of cases) {
      // Cold, then through the index: the same.
      expect({ excludes, digest: await sum(excludes).rootDigest() }).toEqual({ excludes, digest: await without(...gone) });
      const s = sum(excludes);
      await s.rootDigest();
      await s.flush();
      expect({ excludes, digest: await sum(excludes).rootDigest() }).toEqual({ excludes, digest: await without(...gone) });
    }
  });

  it('reads a file again only when its metadata changed (persistent index)', async () => {
    await sel('/');
    const st1 = await fs.stat(path.join(state, 'index'));
    await sel('/');
    // Nothing new was hashed, so the index was not rewritten.
    expect((await fs.stat(path.join(state, 'index'))).mtimeMs).toBe(st1.mtimeMs);
    await write('x.go', 'x2');
    const s = sum();
    await s.selectionDigest(copy('/'));
    expect([...s.changed]).toEqual(['x.go']);
  });

  it('a missing source fails (the copy reports it); a symlinked path checksums what it leads to', async () => {
    await expect(sum().selectionDigest(copy('nope.txt', { allowWildcard: false }))).rejects.toThrow();
    await fs.symlink('src', path.join(dir, 'alias'));
    await fs.symlink('/src/a.txt', path.join(dir, 'abs'));
    const r = await sum().selectionDigest(copy('alias/a.txt'));
    expect(r.paths).toEqual(['src/a.txt']);
    const viaFinal = await sum().selectionDigest(copy('abs', { allowWildcard: false, followSymlinks: true }));
    expect(viaFinal.paths).toEqual(['src/a.txt']);
    // Another file of the context changes: neither digest does.
    await fs.writeFile(path.join(dir, 'unrelated.txt'), 'u');
    expect((await sum().selectionDigest(copy('alias/a.txt'))).digest).toBe(r.digest);
    expect((await sum().selectionDigest(copy('abs', { allowWildcard: false, followSymlinks: true }))).digest).toBe(viaFinal.digest);
    // The file it leads to changes, or the link leads elsewhere: both do.
    await fs.writeFile(path.join(dir, 'src/a.txt'), 'changed');
    expect((await sum().selectionDigest(copy('alias/a.txt'))).digest).not.toBe(r.digest);
    await fs.rm(path.join(dir, 'abs'));
    await fs.symlink('unrelated.txt', path.join(dir, 'abs'));
    expect((await sum().selectionDigest(copy('abs', { allowWildcard: false, followSymlinks: true }))).paths).toEqual(['unrelated.txt']);
    // A loop cannot be resolved: the whole context.
    await fs.symlink('loop', path.join(dir, 'loop'));
    expect((await sum().selectionDigest(copy('loop/x'))).paths).toEqual(['']);
  });

  it('counts files and reads; an index of the earlier format (one JSON object) is used; a damaged line costs one read', async () => {
    const fresh = sum();
    const whole = (await fresh.selectionDigest(copy('/'))).digest;
    expect([fresh.files, fresh.filesRead]).toEqual([5, 5]);
    expect(fresh.bytesRead).toBe(5);
    // The earlier format: path -> { size, mtimeMs, ctimeMs, ino, digest }.
    const v1: Record<string, unknown> = {};
    for (const rel of ['src/a.txt', 'src/sub/b.txt', 'other.txt', 'x.go', 'y.go']) {
      const st = await fs.stat(path.join(dir, rel));
      const digest = `sha256:${createHash('sha256').update(await fs.readFile(path.join(dir, rel))).digest('hex')}`;
      v1[rel] = { size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, ino: st.ino, digest };
    }
    await fs.writeFile(path.join(state, 'index'), JSON.stringify(v1));
    const old = sum();
    expect((await old.selectionDigest(copy('/'))).digest).toBe(whole);
    expect(old.filesRead).toBe(0);
    // Rewritten in the current format once something is read; one damaged line: that file is read again.
    await write('y.go', 'y2');
    const again = sum();
    await again.selectionDigest(copy('/'));
    await again.flush();
    expect(again.filesRead).toBe(1);
    const lines = (await fs.readFile(path.join(state, 'index'), 'utf8')).split('\n');
    expect(lines[0]).toBe('{"v":2}');
    const i = lines.findIndex((l) => l.startsWith('["x.go"'));
    lines[i] = lines[i].slice(0, 10);
    await fs.writeFile(path.join(state, 'index'), lines.join('\n'));
    const damaged = sum();
    await damaged.selectionDigest(copy('/'));
    expect([damaged.files, damaged.filesRead]).toEqual([5, 1]);
  });

  it('come out the same through the index (looked up, leaf directories summed by the scan) as from reading every file', async () => {
    // Leaf directories of files only, one with an excluded file, a mixed one, an empty one; names that are
    // escaped in the index, not UTF-8, or in another order as bytes than as strings; modes and owners.
    await write('leaf/plain.txt', 'p');
    await write('leaf/quote"and\\back', 'q');
    await write('leaf/new\nline', 'n');
    await write('leaf/\u00e9t\u00e9', 'e');
    await write('order/\u{1F600}', 'emoji');
    await write('order/\uE000', 'private use');
    await write('deep/skip/kept.txt', 'k');
    await write('deep/skip/dropped.txt', 'd');
    await write('mixed/file.txt', 'm');
    await fs.symlink('file.txt', path.join(dir, 'mixed/link'));
    await fs.mkdir(path.join(dir, 'mixed/empty'));
    await fs.mkdir(path.join(dir, 'odd'));
    await fs.writeFile(Buffer.concat([Buffer.from(`${dir}/odd/`), Buffer.from([0x61, 0xff])]), 'not utf-8');
    await fs.chmod(path.join(dir, 'leaf/plain.txt'), 0o600);
    await fs.chown(path.join(dir, 'leaf/new\nline'), 1234, 5678);
    const excludes = ['deep/skip/dropped.txt'];
    const cold = new ContextChecksummer(dir, excludes);
    const whole = await cold.rootDigest();
    const parts: Record<string, string> = {};
    for (const p of ['leaf', 'order', 'deep', 'mixed', 'odd']) parts[p] = (await cold.selectionDigest(copy(p))).digest;
    // The index written without the exclusion: it has the excluded file too.
    const first = sum();
    const unfiltered = await first.rootDigest();
    expect(unfiltered).not.toBe(whole);
    await first.flush();
    const warm = sum(excludes);
    expect(await warm.rootDigest()).toBe(whole);
    expect(warm.filesRead).toBe(0);
    for (const p of Object.keys(parts)) expect({ p, digest: (await sum(excludes).selectionDigest(copy(p))).digest }).toEqual({ p, digest: parts[p] });
    expect(await sum().rootDigest()).toBe(unfiltered);
  });

  it('takes a directory of 20,000 files', async () => {
    const flat = path.join(dir, 'flat');
    await fs.mkdir(flat);
    for (let i = 0; i < 20_000; i += 1000) {
      await Promise.all(Array.from({ length: 1000 }, (_, j) => fs.writeFile(path.join(flat, `f${i + j}`), String(i + j))));
    }
    const s = sum();
    const d = (await s.selectionDigest(copy('flat'))).digest;
    expect(s.filesRead).toBe(20_000);
    await s.flush();
    const again = sum();
    expect((await again.selectionDigest(copy('flat'))).digest).toBe(d);
    expect(again.filesRead).toBe(0);
  });
});
