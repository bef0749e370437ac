// Segmented gzip layer blobs (src/archive/segmented.ts): many gzip members that GNU gzip, skopeo and umoci
// read as one stream, identical for identical trees with or without reuse, and a one-file edit copying
// every member but the changed one from the previous blob.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { PassThrough } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Digest } from '../../solver/llb/ops.js';
import { ContentStore } from '../../src/content/store.js';
import { applyLayerBlob, createLayerBlob, writeLayerTar, type LayerBlob } from '../../src/archive/layer.js';
import { SEGMENT_MIN, SEGMENT_SPLIT, SegmentedGzipWriter } from '../../src/archive/segmented.js';
import { TarFormatError } from '../../src/archive/tar.js';
import { writeImage } from '../../src/exporter/image.js';
import { exportLayoutDir } from '../../src/exporter/oci.js';

const run = promisify(execFile);
const sh = async (cmd: string, args: string[]) => (await run(cmd, args, { maxBuffer: 64 << 20 })).stdout;

/** Deterministic incompressible-ish text: hex of a sha256 chain. */
function text(seed: string, size: number): Buffer {
  const out = Buffer.alloc(size);
  let h = createHash('sha256').update(seed).digest();
  for (let off = 0; off < size; off += 64) {
    out.write(h.toString('hex'), off, Math.min(64, size - off), 'latin1');
    h = createHash('sha256').update(h).digest();
  }
  return out;
}

/** ~12 MB of small files in 30 directories, a 9.5 MiB file, an empty file, a symlink. */
async function makeTree(dir: string): Promise<void> {
  for (let d = 0; d < 30; d++) {
    await fs.mkdir(path.join(dir, `d${d}`), { recursive: true });
    for (let f = 0; f < 50; f++) {
      await fs.writeFile(path.join(dir, `d${d}`, `f${f}.txt`), text(`${d}/${f}`, 4096 + ((d * 50 + f) * 97) % 8192));
    }
  }
  await fs.writeFile(path.join(dir, 'big.bin'), text('big', 2 * SEGMENT_SPLIT + 1536 * 1024));
  await fs.writeFile(path.join(dir, 'empty'), '');
  await fs.symlink('d1/f1.txt', path.join(dir, 'link'));
  await settleTimes(dir);
}

/** One mtime for everything: a copy of the tree (or an edit in it) changes only what it writes. */
async function settleTimes(dir: string): Promise<void> {
  const t = new Date('2020-01-01T00:00:00Z');
  for (const p of await fs.readdir(dir, { recursive: true })) await fs.lutimes(path.join(dir, p), t, t);
  await fs.utimes(dir, t, t);
}

/** Buffer.equals: vitest's deep equality walks a Buffer byte by byte, minutes for megabytes. */
async function sameFile(a: string, b: string): Promise<boolean> {
  return (await fs.readFile(a)).equals(await fs.readFile(b));
}

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

describe('segmented gzip layer blobs', () => {
  let tmp: string;
  let tree: string;
  let store: ContentStore;
  let first: LayerBlob;

  beforeAll(async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'segmented-'));
    tree = path.join(tmp, 'tree');
    await makeTree(tree);
    store = new ContentStore(path.join(tmp, 'content'));
    first = await createLayerBlob(store, tree);
  });
  afterAll(async () => {
    await fs.rm(tmp, { recursive: true, force: true });
  });

  it('writes several members with an index that describes the blob', async () => {
    const index = (await store.readMemberIndex(first.digest))!;
    expect(index).toMatchObject({ version: 1, level: 6, zlib: process.versions.zlib });
    // 12 MB of small files in >= 1 MiB segments, and the big file in three of its own.
    expect(index.members.length).toBeGreaterThanOrEqual(5);
    const blob = await store.readBuffer(first.digest);
    let offset = 0;
    const tar: Buffer[] = [];
    for (const m of index.members) {
      expect(m.offset).toBe(offset);
      const data = gunzipSync(blob.subarray(m.offset, m.offset + m.csize));
      expect(data.length).toBe(m.size);
      expect(sha(data)).toBe(`sha256:${m.sha256}`);
      tar.push(data);
      offset += m.csize;
    }
    expect(offset).toBe(blob.length);
    expect(sha(Buffer.concat(tar))).toBe(first.diffID);
    // The plain tar writer (uncompressed and zstd layers, type=tar) gives the same tar.
    const plain = new PassThrough();
    const chunks: Buffer[] = [];
    plain.on('data', (c: Buffer) => chunks.push(c));
    await writeLayerTar(tree, plain);
    expect(sha(Buffer.concat(chunks))).toBe(first.diffID);
    // Small-file segments hold at least 1 MiB; the big file's data is cut every 4 MiB.
    expect(index.members.slice(0, 2).every((m) => m.size >= SEGMENT_MIN)).toBe(true);
    expect(index.members.some((m) => m.size === SEGMENT_SPLIT)).toBe(true);
  });

  it('reads back as one gzip stream: gzip -t, gzip -d, applyLayerBlob', async () => {
    const file = store.blobPath(first.digest);
    await sh('gzip', ['-t', file]);
    const { stdout } = await run('sh', ['-c', `gzip -dc < ${file} | sha256sum`]);
    expect(`sha256:${stdout.split(' ')[0]}`).toBe(first.diffID);
    const out = path.join(tmp, 'applied');
    await fs.mkdir(out);
    expect((await applyLayerBlob(store, first, out)).diffID).toBe(first.diffID);
    expect(await sameFile(path.join(out, 'big.bin'), path.join(tree, 'big.bin'))).toBe(true);
    expect(await sameFile(path.join(out, 'd29/f49.txt'), path.join(tree, 'd29/f49.txt'))).toBe(true);
    expect(await fs.readlink(path.join(out, 'link'))).toBe('d1/f1.txt');
  });

  it('is read by skopeo and umoci (Go gzip readers)', async () => {
    const written = await writeImage(store, {
      config: { architecture: 'amd64', os: 'linux', config: {} } as never,
      layers: [{ digest: first.digest, size: first.size, mediaType: first.mediaType, diffID: first.diffID }],
    });
    const layout = path.join(tmp, 'layout');
    await exportLayoutDir(store, written.manifest, { dest: layout, names: ['docker.io/library/seg:1'] });
    // umoci checks every layer's diff id while unpacking.
    const bundle = path.join(tmp, 'bundle');
    await sh('umoci', ['unpack', '--image', `${layout}:1`, bundle]);
    expect(await sameFile(path.join(bundle, 'rootfs/big.bin'), path.join(tree, 'big.bin'))).toBe(true);
    expect(await sameFile(path.join(bundle, 'rootfs/d7/f3.txt'), path.join(tree, 'd7/f3.txt'))).toBe(true);
    const dirOut = path.join(tmp, 'skopeo-dir');
    await sh('skopeo', ['copy', '--dest-decompress', `oci:${layout}:1`, `dir:${dirOut}`]);
    const manifest = JSON.parse(await fs.readFile(path.join(dirOut, 'manifest.json'), 'utf8')) as { layers: { digest: string }[] };
    expect(manifest.layers[0].digest).toBe(first.diffID);
    expect(sha(await fs.readFile(path.join(dirOut, first.diffID.slice(7))))).toBe(first.diffID);
  });

  it('gives the same blob for the same tree, with or without reuse', async () => {
    const other = new ContentStore(path.join(tmp, 'content-other'));
    const fresh = await createLayerBlob(other, tree);
    expect(fresh.digest).toBe(first.digest);
    let stats = { members: 0, reused: 0, known: 0 };
    const reused = await createLayerBlob(store, tree, { reuseFrom: [first.digest], onStats: (s) => (stats = s) });
    expect(reused.digest).toBe(first.digest);
    expect(stats.reused).toBe(stats.members);
  });

  it('after a one-file edit copies every other member from the previous blob', async () => {
    const edited = path.join(tmp, 'edited');
    await fs.cp(tree, edited, { recursive: true, verbatimSymlinks: true });
    // A different size too: the cut points around it still fall where they did.
    await fs.writeFile(path.join(edited, 'd12/f20.txt'), text('changed', 5000));
    await settleTimes(edited);
    let stats = { members: 0, reused: 0, known: 0 };
    const blob = await createLayerBlob(store, edited, { reuseFrom: [first.digest], onStats: (s) => (stats = s) });
    expect(blob.digest).not.toBe(first.digest);
    expect(stats.members).toBeGreaterThanOrEqual(5);
    expect(stats.reused).toBe(stats.members - 1);
    // Copied members give exactly what compressing everything would.
    const fresh = await createLayerBlob(new ContentStore(path.join(tmp, 'content-fresh')), edited);
    expect(fresh).toEqual(blob);
    await sh('gzip', ['-t', store.blobPath(blob.digest)]);
  });

  it('ignores a candidate whose index does not fit its blob, and one made at another level', async () => {
    const other = new ContentStore(path.join(tmp, 'content-bad'));
    const base = await createLayerBlob(other, tree);
    const index = (await other.readMemberIndex(base.digest))!;
    // Offsets shifted by one member: every lookup lands on the wrong bytes.
    const shifted = index.members.map((m, i) => ({ ...m, offset: index.members[(i + 1) % index.members.length].offset, csize: index.members[(i + 1) % index.members.length].csize }));
    await other.writeMemberIndex(base.digest, { ...index, members: shifted });
    let stats = { members: 0, reused: 0, known: 0 };
    const again = await createLayerBlob(other, tree, { reuseFrom: [base.digest, 'sha256:' + '0'.repeat(64) as Digest], onStats: (s) => (stats = s) });
    expect(again.digest).toBe(first.digest);
    expect(stats.reused).toBe(0);
    const level1 = await createLayerBlob(other, tree, { level: 1, reuseFrom: [first.digest], onStats: (s) => (stats = s) });
    expect(stats.reused).toBe(0);
    await sh('gzip', ['-t', other.blobPath(level1.digest)]);
  });

  it('does not hash the segments of a hard-linked tree it has fingerprints for, and still gives a fresh blob', async () => {
    // As a refreshed COPY: the previous snapshot's files hard-linked, one file written anew.
    const other = new ContentStore(path.join(tmp, 'content-linked'));
    const base = await createLayerBlob(other, tree);
    expect((await other.readMemberIndex(base.digest))!.members.every((m) => typeof m.fp === 'string')).toBe(true);
    const linked = path.join(tmp, 'linked');
    await fs.cp(tree, linked, { recursive: true, verbatimSymlinks: true });
    for (const p of await fs.readdir(tree, { recursive: true })) {
      const from = path.join(tree, p);
      if (!(await fs.lstat(from)).isFile()) continue;
      await fs.rm(path.join(linked, p));
      await fs.link(from, path.join(linked, p));
    }
    // The same size and mtime as before, other bytes, in a new inode: its segment must be hashed.
    const edited = path.join(linked, 'd12/f20.txt');
    const size = (await fs.stat(edited)).size;
    await fs.rm(edited);
    await fs.writeFile(edited, text('same size, other bytes', size));
    await settleTimes(linked);
    let stats = { members: 0, reused: 0, known: 0 };
    const blob = await createLayerBlob(other, linked, { reuseFrom: [base.digest], onStats: (x) => (stats = x) });
    expect(stats.known).toBe(stats.members - 1); // all but the edited file's segment
    expect(stats.reused).toBe(stats.members - 1);
    const fresh = await createLayerBlob(new ContentStore(path.join(tmp, 'content-linked-fresh')), linked);
    expect(blob).toEqual(fresh);
    expect(blob.digest).not.toBe(base.digest);
  });

  it('reuses the members of an index recorded before it held CRCs', async () => {
    const other = new ContentStore(path.join(tmp, 'content-old-index'));
    const base = await createLayerBlob(other, tree);
    const index = (await other.readMemberIndex(base.digest))!;
    expect(index.members.every((m) => typeof m.crc === 'number')).toBe(true);
    await other.writeMemberIndex(base.digest, { ...index, members: index.members.map(({ crc: _crc, ...m }) => m) });
    let stats = { members: 0, reused: 0, known: 0 };
    const again = await createLayerBlob(other, tree, { reuseFrom: [base.digest], onStats: (s) => (stats = s) });
    expect(again.digest).toBe(first.digest);
    expect(stats.reused).toBe(stats.members);
  });

  it('never copies a member whose bytes were damaged since it was written', async () => {
    const dir = path.join(tmp, 'content-damaged');
    const base = await createLayerBlob(new ContentStore(dir), tree);
    const index = (await new ContentStore(dir).readMemberIndex(base.digest))!;
    expect(index.members.every((m) => typeof m.csha === 'string')).toBe(true);
    // Bits flipped inside one member's deflate data; its gzip trailer (CRC, length) is untouched.
    const m = index.members[1];
    const h = await fs.open(new ContentStore(dir).blobPath(base.digest), 'r+');
    const b = Buffer.alloc(16);
    await h.read(b, 0, b.length, m.offset + Math.floor(m.csize / 2));
    for (let i = 0; i < b.length; i++) b[i] ^= 0x5a;
    await h.write(b, 0, b.length, m.offset + Math.floor(m.csize / 2));
    await h.close();
    // A later process: it knows nothing of the blob but what the store and the index say.
    let stats = { members: 0, reused: 0, known: 0 };
    const again = await createLayerBlob(new ContentStore(dir), tree, { reuseFrom: [base.digest], onStats: (s) => (stats = s) });
    expect(again.digest).toBe(first.digest);
    expect(stats.reused).toBe(stats.members - 1);
    await sh('gzip', ['-t', new ContentStore(dir).blobPath(again.digest)]);
  });

  it('reuses members of an index without compressed digests only from a blob that hashes to its name', async () => {
    const dir = path.join(tmp, 'content-damaged-old');
    const base = await createLayerBlob(new ContentStore(dir), tree);
    const store1 = new ContentStore(dir);
    const index = (await store1.readMemberIndex(base.digest))!;
    await store1.writeMemberIndex(base.digest, { ...index, members: index.members.map(({ csha: _csha, ...m }) => m) });
    let stats = { members: 0, reused: 0, known: 0 };
    // Sound: reused as before.
    await createLayerBlob(new ContentStore(dir), tree, { reuseFrom: [base.digest], onStats: (s) => (stats = s) });
    expect(stats.reused).toBe(stats.members);
    // (That blob's index was written anew, with compressed digests: without them again.)
    await store1.writeMemberIndex(base.digest, { ...index, members: index.members.map(({ csha: _csha, ...m }) => m) });
    const m = index.members[1];
    const h = await fs.open(store1.blobPath(base.digest), 'r+');
    await h.write(Buffer.from('damage'), 0, 6, m.offset + Math.floor(m.csize / 2));
    await h.close();
    const again = await createLayerBlob(new ContentStore(dir), tree, { reuseFrom: [base.digest], onStats: (s) => (stats = s) });
    expect(again.digest).toBe(first.digest);
    expect(stats.reused).toBe(0);
  });

  it('fails naming the entry when a file changes size or goes away while archived', async () => {
    const other = new ContentStore(path.join(tmp, 'content-changing'));
    const file = path.join(tmp, 'fifty');
    await fs.writeFile(file, 'x'.repeat(50));
    const archive = async (size: number, from: string) => {
      const writer = await other.openWriter();
      const seg = new SegmentedGzipWriter(writer, 6);
      try {
        await seg.add({ name: 'app/data', type: 'file', mode: 0o644, uid: 0, gid: 0, size, mtime: 0 }, from);
        await seg.finish();
      } catch (e) {
        await seg.abandon();
        throw e;
      } finally {
        await writer.abort();
      }
    };
    await expect(archive(80, file)).rejects.toThrow(new TarFormatError('app/data shrank while being archived'));
    await expect(archive(20, file)).rejects.toThrow(new TarFormatError('app/data grew while being archived'));
    await expect(archive(SEGMENT_SPLIT + 10, file)).rejects.toThrow(/shrank/);
    await expect(archive(50, path.join(tmp, 'missing'))).rejects.toMatchObject({ code: 'ENOENT', syscall: 'open', path: path.join(tmp, 'missing') });
    // Nothing half-written stays behind.
    expect(await fs.readdir(path.join(tmp, 'content-changing', 'blobs', 'tmp')).catch(() => [])).toEqual([]);
  });

  it('fails cleanly when a file goes missing while earlier segments are still in flight', async () => {
    const root = path.join(tmp, 'content-missing-late');
    const other = new ContentStore(root);
    const file = path.join(tmp, 'sixty-four-k');
    await fs.writeFile(file, text('64k', 64 << 10));
    const writer = await other.openWriter();
    const seg = new SegmentedGzipWriter(writer, 6);
    const entry = (i: number) => ({ name: `f${i}`, type: 'file' as const, mode: 0o644, uid: 0, gid: 0, size: 64 << 10, mtime: 0 });
    const run = async () => {
      // ~13 MB before the missing file: several segments are being filled, hashed and written when it fails.
      for (let i = 0; i < 200; i++) await seg.add(entry(i), file);
      await seg.add(entry(200), path.join(tmp, 'gone'));
      for (let i = 201; i < 260; i++) await seg.add(entry(i), file);
      await seg.finish();
    };
    try {
      await expect(run()).rejects.toMatchObject({ code: 'ENOENT', path: path.join(tmp, 'gone') });
    } finally {
      await seg.abandon();
      await writer.abort();
    }
    expect(await fs.readdir(path.join(root, 'blobs', 'tmp'))).toEqual([]);
  });

  it('stops when its signal is aborted, leaving no blob or temp file', async () => {
    const root = path.join(tmp, 'content-aborted');
    const other = new ContentStore(root);
    const controller = new AbortController();
    controller.abort(new Error('interrupted'));
    await expect(createLayerBlob(other, tree, { signal: controller.signal })).rejects.toThrow('interrupted');
    expect(await fs.readdir(path.join(root, 'blobs', 'tmp'))).toEqual([]);
    expect((await fs.readdir(path.join(root, 'blobs', 'sha256')).catch(() => [])).length).toBe(0);
  });

  it('removes the index with its blob', async () => {
    const other = new ContentStore(path.join(tmp, 'content-rm'));
    const blob = await createLayerBlob(other, tree);
    expect(await other.readMemberIndex(blob.digest)).not.toBeNull();
    await other.remove(blob.digest);
    expect(await other.has(blob.digest)).toBe(false);
    await expect(fs.access(other.memberIndexPath(blob.digest))).rejects.toThrow();
  });
});
