import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import v8 from 'node:v8';
import vm from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ContentStore } from '../../src/content/store.js';
import { OrderedSha256, writeAt } from '../../src/native/fsx.js';
import type { Digest } from '../../solver/llb/ops.js';

describe('ContentStore', () => {
  let tmp: string;
  beforeAll(async () => { tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'builder-store-')); });
  afterAll(async () => { await fs.rm(tmp, { recursive: true, force: true }); });

  it('does not rewrite bytes it already holds, and still refuses bytes that are not what was expected', async () => {
    const store = new ContentStore(tmp);
    const data = Buffer.from('{"schemaVersion":2}');
    const digest: Digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
    expect(await store.write(data)).toEqual({ digest, size: data.length });
    const first = await fs.stat(store.blobPath(digest));
    const old = new Date(first.mtimeMs - 60_000);
    await fs.utimes(store.blobPath(digest), old, old);
    expect(await store.write(data, { digest: digest })).toEqual({ digest, size: data.length });
    const second = await fs.stat(store.blobPath(digest));
    // Not written again (a write is a new file renamed into place), only marked as used now (GC's grace).
    expect(second.ino).toBe(first.ino);
    expect(second.mtimeMs).toBeGreaterThan(old.getTime());
    const wrong: Digest = `sha256:${'0'.repeat(64)}`;
    await expect(store.write(data, { digest: wrong })).rejects.toMatchObject({ code: 'DIGEST_MISMATCH' });
    await expect(store.write(data, { size: 1 })).rejects.toMatchObject({ code: 'DIGEST_MISMATCH' });
    expect(await store.has(wrong)).toBe(false);
  });

  it('replaces a damaged copy of a document it is asked to store, and says so', async () => {
    const data = Buffer.from('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}');
    const digest: Digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
    await new ContentStore(tmp).write(data);
    // Same size, one byte flipped: only its content tells.
    const damaged = Buffer.from(data);
    damaged[5] ^= 1;
    await fs.writeFile(path.join(tmp, 'blobs/sha256', digest.slice(7)), damaged);
    const store = new ContentStore(tmp);
    const corrupt: Digest[] = [];
    store.onCorrupt = (d) => corrupt.push(d);
    expect(await store.write(data)).toEqual({ digest, size: data.length });
    expect(corrupt).toEqual([digest]);
    expect((await fs.readFile(store.blobPath(digest))).equals(data)).toBe(true);
    expect(await new ContentStore(tmp).verify(digest)).toBe(true);
  });

  it('writes appended pieces in order while several are in flight, hashing them in order', async () => {
    const store = new ContentStore(tmp);
    // Pieces of varied sizes, so the jobs end out of order.
    const pieces = Array.from({ length: 300 }, (_, i) => Buffer.alloc(((i * 7919) % 97) * 1024 + 1, i % 251));
    const w = await store.openWriter();
    await Promise.all(pieces.map((p) => w.append(p)));
    const whole = Buffer.concat(pieces);
    const digest: Digest = `sha256:${createHash('sha256').update(whole).digest('hex')}`;
    expect(await w.commit()).toEqual({ digest, size: whole.length });
    expect((await store.readBuffer(digest)).equals(whole)).toBe(true);
  });

  it('hashes pieces in ticket order however late the first ones come', async () => {
    // The jobs run in the order they are queued: the last pieces arrive first, far more than the
    // native ring of waiting pieces starts with.
    const file = path.join(tmp, 'reversed.bin');
    const fd = (await fs.open(file, 'w'));
    const hash = new OrderedSha256();
    const pieces = Array.from({ length: 500 }, (_, i) => Buffer.alloc(100 + (i % 13), i % 256));
    const tickets = pieces.map(() => hash.ticket());
    const offsets = pieces.map((_, i) => pieces.slice(0, i).reduce((n, p) => n + p.length, 0));
    const jobs = [...pieces.keys()].reverse().map((i) => writeAt(fd.fd, pieces[i], offsets[i], { hash, ticket: tickets[i] }));
    await Promise.all(jobs);
    await fd.close();
    const whole = Buffer.concat(pieces);
    expect((await hash.digest()).toString('hex')).toBe(createHash('sha256').update(whole).digest('hex'));
    expect((await fs.readFile(file)).equals(whole)).toBe(true);
  });

  it('hashes a piece that waited for an earlier one as it was, even after its write ended and its caller let it go', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const file = path.join(tmp, 'late.bin');
    const fd = await fs.open(file, 'w');
    const hash = new OrderedSha256();
    const first = hash.ticket();
    const second = hash.ticket();
    const size = 1 << 20;
    // The second piece is written first and then only the native side's pointer names it.
    await writeAt(fd.fd, Buffer.alloc(size, 'a'), size, { hash, ticket: second });
    gc();
    // Memory freed by a collection goes to the next buffers of its size.
    const others = Array.from({ length: 64 }, () => Buffer.alloc(size, 'z'));
    await writeAt(fd.fd, Buffer.alloc(size, 'b'), 0, { hash, ticket: first });
    await fd.close();
    const whole = Buffer.concat([Buffer.alloc(size, 'b'), Buffer.alloc(size, 'a')]);
    expect((await fs.readFile(file)).equals(whole)).toBe(true);
    expect((await hash.digest()).toString('hex')).toBe(createHash('sha256').update(whole).digest('hex'));
    expect(others.length).toBe(64);
  });

  it('leaves nothing behind when a writer is dropped with pieces in flight', async () => {
    const root = path.join(tmp, 'dropped');
    const store = new ContentStore(root);
    const w = await store.openWriter();
    const pending = Array.from({ length: 20 }, () => w.append(Buffer.alloc(1 << 20, 1)).catch(() => undefined));
    await w.abort();
    await Promise.all(pending);
    expect(await fs.readdir(path.join(root, 'blobs', 'tmp'))).toEqual([]);
  });
});
