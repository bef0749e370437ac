import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { ContentStore, DigestMismatchError } from '../../src/content/store.js';
import type { Digest } from '../../solver/llb/ops.js';

const sha = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}` as Digest;

describe('ContentStore', () => {
  let dir: string;
  let store: ContentStore;
  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'store-'));
    store = new ContentStore(dir);
  });
  afterEach(() => fs.rm(dir, { recursive: true, force: true }));

  it('stores a buffer under its digest and reads it back', async () => {
    const data = Buffer.from('hello world');
    const info = await store.write(data, { digest: sha(data), size: data.length });
    expect(info).toEqual({ digest: sha(data), size: 11 });
    expect(store.blobPath(info.digest)).toBe(path.join(dir, 'blobs/sha256', info.digest.slice(7)));
    expect(await store.has(info.digest)).toBe(true);
    expect(await store.stat(info.digest)).toEqual({ size: 11 });
    expect((await store.readBuffer(info.digest)).toString()).toBe('hello world');
    const chunks: Buffer[] = [];
    for await (const c of store.createReadStream(info.digest)) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe('hello world');
  });

  it('hashes a stream while writing it', async () => {
    const parts = Array.from({ length: 50 }, (_, i) => Buffer.alloc(100_000, i));
    const info = await store.write(Readable.from(parts));
    expect(info.digest).toBe(sha(Buffer.concat(parts)));
    expect(info.size).toBe(5_000_000);
  });

  it('rejects content that does not match, storing nothing', async () => {
    const data = Buffer.from('tampered');
    const wrong = sha('original');
    await expect(store.write(data, { digest: wrong })).rejects.toBeInstanceOf(DigestMismatchError);
    await expect(store.write(data, { size: 3 })).rejects.toMatchObject({ code: 'DIGEST_MISMATCH' });
    // Streamed content is checked at its commit.
    await expect(store.write((async function* () { yield data; })(), { digest: wrong })).rejects.toBeInstanceOf(DigestMismatchError);
    expect(await store.has(wrong)).toBe(false);
    expect(await store.has(sha(data))).toBe(false);
    // A document in memory is checked before anything is made for it: the directories may not exist.
    expect(await fs.readdir(path.join(dir, 'blobs/tmp')).catch(() => [])).toEqual([]);
    expect(await fs.readdir(path.join(dir, 'blobs/sha256')).catch(() => [])).toEqual([]);
  });

  it('takes piped gzip output through a writer and publishes only on commit', async () => {
    const w = await store.openWriter();
    await pipeline(Readable.from([Buffer.from('a'.repeat(10000))]), createGzip(), w);
    expect(await fs.readdir(path.join(dir, 'blobs/sha256'))).toEqual([]);
    const info = await w.commit();
    expect(await store.has(info.digest)).toBe(true);
    expect(info.digest).toBe(sha(await store.readBuffer(info.digest)));
    expect(await fs.readdir(path.join(dir, 'blobs/tmp'))).toEqual([]);
  });

  it('drops an aborted writer', async () => {
    const w = await store.openWriter();
    w.write(Buffer.from('partial'));
    await w.abort();
    expect(await fs.readdir(path.join(dir, 'blobs/tmp'))).toEqual([]);
  });

  it('refuses malformed digests', () => {
    expect(() => store.blobPath('sha256:../../etc/passwd' as Digest)).toThrow(/invalid digest/);
  });
});
