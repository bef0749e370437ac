// The remote cache's pieces without a build: --cache-to/--cache-from spec parsing, the local directory
// format (merging writers, pruning), and record lookup with damaged blobs.
import { describe, it, expect } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { ContentStore } from '../../src/content/store.js';
import { sha256 } from '../../solver/llb/digest.js';
import type { Digest } from '../../solver/llb/ops.js';
import { parseCacheFrom, parseCacheTo } from '../../src/cache/remotecache/spec.js';
import { openLocalCache, pruneLocalCache, readLocalCache, writeLocalCache } from '../../src/cache/remotecache/local.js';
import { RemoteCacheImporter } from '../../src/cache/remotecache/source.js';
import type { ResolvedRecord } from '../../src/cache/remotecache/format.js';
import { tempDir } from '../helpers/cli.js';

describe('--cache-to / --cache-from specs', () => {
  it('parses buildx forms', () => {
    expect(parseCacheTo('type=local,dest=/c,mode=max')).toEqual({ type: 'local', dest: '/c', mode: 'max', ignoreError: false });
    expect(parseCacheTo('type=registry,ref=r.example/app:cache,compression=zstd,ignore-error=true,image-manifest=true'))
      .toEqual({ type: 'registry', ref: 'r.example/app:cache', mode: 'min', compression: 'zstd', ignoreError: true });
    expect(parseCacheTo('type=inline')).toEqual({ type: 'inline', mode: 'min', ignoreError: false });
    expect(parseCacheFrom('type=local,src=/c')).toEqual({ type: 'local', src: '/c' });
    expect(parseCacheFrom('r.example/app:cache')).toEqual({ type: 'registry', ref: 'r.example/app:cache' });
    expect(parseCacheTo('r.example/app:cache')).toMatchObject({ type: 'registry', ref: 'r.example/app:cache' });
  });

  it('rejects what buildx would, naming the valid choices', () => {
    expect(() => parseCacheTo('type=gha')).toThrow(/unknown cache type "gha" \(valid: local, registry, inline\)/);
    expect(() => parseCacheTo('type=local,dest=/c,mode=all')).toThrow(/mode must be min or max/);
    expect(() => parseCacheTo('type=local')).toThrow(/dest is required/);
    expect(() => parseCacheTo('type=local,dest=/c,src=/d')).toThrow(/unknown option "src" for type=local \(valid: dest, mode/);
    expect(() => parseCacheTo('type=inline,mode=max')).toThrow(/unknown option "mode" for type=inline/);
    expect(() => parseCacheTo('type=local,dest=/c,compression-level=12')).toThrow(/out of range/);
    expect(() => parseCacheFrom('type=inline')).toThrow(/use type=registry,ref=IMAGE/);
    expect(() => parseCacheFrom('type=registry')).toThrow(/ref is required/);
  });
});

async function blob(store: ContentStore, text: string): Promise<ResolvedRecord['layers'][number]> {
  const data = Buffer.from(text);
  const { digest, size } = await store.write(data);
  return { blob: { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest, size }, diffID: digest, created: '2024-01-01T00:00:00Z' };
}

const key = (s: string) => sha256(s) as Digest;

describe('local cache directory', () => {
  it('concurrent writers merge their records; blobs already there are not written again', async () => {
    const store = new ContentStore(await tempDir('builder-rc-store-'));
    const dir = await tempDir('builder-rc-dir-');
    const base = await blob(store, 'base');
    const a = await blob(store, 'a');
    const b = await blob(store, 'b');
    const provide = async () => { throw new Error('all blobs are in the store'); };
    const [ra, rb] = await Promise.all([
      writeLocalCache(store, dir, [{ key: key('A'), layers: [base, a] }], { provide }),
      writeLocalCache(store, dir, [{ key: key('B'), layers: [base, b] }], { provide }),
    ]);
    // The lock serializes them: the second finds the shared base blob there.
    expect([ra.written + rb.written, ra.present + rb.present]).toEqual([3, 1]);
    const records = await readLocalCache(dir);
    expect(records.map((r) => r.key).sort()).toEqual([key('A'), key('B')].sort());
    const again = await writeLocalCache(store, dir, [{ key: key('A'), layers: [base, a] }], { provide });
    expect(again).toMatchObject({ written: 0, present: 2, records: 2 });
    expect((await fs.readdir(dir)).filter((n) => n.includes('.tmp') || n === '.lock')).toEqual([]);
  });

  it('prunes records by age and by size, and the blobs only they named', async () => {
    const store = new ContentStore(await tempDir('builder-rc-store-'));
    const dir = await tempDir('builder-rc-dir-');
    const provide = async () => undefined;
    const base = await blob(store, 'base'.repeat(100));
    const old = await blob(store, 'old'.repeat(100));
    const mid = await blob(store, 'mid'.repeat(100));
    const fresh = await blob(store, 'new'.repeat(100));
    const day = (n: number) => new Date(Date.UTC(2026, 0, n));
    await writeLocalCache(store, dir, [{ key: key('old'), layers: [base, old] }], { provide, now: day(1) });
    await writeLocalCache(store, dir, [{ key: key('mid'), layers: [base, mid] }], { provide, now: day(5) });
    await writeLocalCache(store, dir, [{ key: key('new'), layers: [base, fresh] }], { provide, now: day(6) });
    const has = (d: Digest) => fs.stat(path.join(dir, 'blobs', 'sha256', d.slice(7))).then(() => true, () => false);

    const byAge = await pruneLocalCache(dir, { olderThanMs: 3 * 86_400_000, now: day(7) });
    expect(byAge.removed).toBe(1);
    expect((await readLocalCache(dir)).map((r) => r.key).sort()).toEqual([key('mid'), key('new')].sort());
    expect(await has(old.blob.digest)).toBe(false);
    expect(await has(base.blob.digest)).toBe(true);

    // base (400) + new (300) fit in 700; mid is the older of the two.
    const bySize = await pruneLocalCache(dir, { keepStorage: 700 });
    expect(bySize.removed).toBe(1);
    expect((await readLocalCache(dir)).map((r) => r.key)).toEqual([key('new')]);
    expect(await has(mid.blob.digest)).toBe(false);
    expect(await has(fresh.blob.digest)).toBe(true);
  });

  it('a record with a missing or corrupt blob is a miss with one warning; the others still hit', async () => {
    const store = new ContentStore(await tempDir('builder-rc-store-'));
    const dir = await tempDir('builder-rc-dir-');
    const base = await blob(store, 'base');
    const a = await blob(store, 'a');
    const b = await blob(store, 'b');
    await writeLocalCache(store, dir, [{ key: key('A'), layers: [base, a] }, { key: key('B'), layers: [base, b] }, { key: key('base'), layers: [base] }], { provide: async () => undefined });
    await fs.writeFile(path.join(dir, 'blobs', 'sha256', a.blob.digest.slice(7)), 'A');
    await fs.rm(path.join(dir, 'blobs', 'sha256', b.blob.digest.slice(7)));
    const warnings: string[] = [];
    const importer = new RemoteCacheImporter([await openLocalCache(dir)], (_s, m) => warnings.push(m));
    expect(await importer.lookup(key('A'))).toBeNull();
    expect(await importer.lookup(key('A'))).toBeNull();
    expect(await importer.lookup(key('B'))).toBeNull();
    const hit = await importer.lookup(key('base'));
    expect(hit?.map((l) => l.blob.digest)).toEqual([base.blob.digest]);
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toMatch(/is corrupt \(digest mismatch\)/);
    expect(warnings[1]).toMatch(/is missing/);
    // The blob comes into a fresh store verified.
    const other = new ContentStore(await tempDir('builder-rc-store-'));
    await hit![0].fetch(other);
    expect(await other.has(base.blob.digest)).toBe(true);
  });
});

describe('content digests in the cache config (early cutoff)', () => {
  it('a layer\'s content digest and a record\'s content key round-trip; malformed ones are dropped, the rest kept', async () => {
    const { buildCacheConfig, parseCacheConfig, resolveRecords } = await import('../../src/cache/remotecache/format.js');
    const d = (s: string) => sha256(s) as Digest;
    const layer = { blob: { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: d('blob'), size: 3 }, diffID: d('diff'), content: d('content') };
    const config = buildCacheConfig([{ key: d('k1'), layers: [layer], contentKey: d('k2') }, { key: d('k2'), layers: [layer] }]);
    const back = resolveRecords(parseCacheConfig(JSON.stringify(config), 'test'));
    expect(back.find((r) => r.key === d('k1'))).toEqual({ key: d('k1'), layers: [layer], exported: undefined, contentKey: d('k2') });
    expect(back.find((r) => r.key === d('k2'))?.contentKey).toBeUndefined();
    // A cache written before content digests: no such fields, still valid.
    const old = JSON.parse(JSON.stringify(config));
    delete old.layers[0].content;
    for (const r of old.records) delete r.contentKey;
    expect(resolveRecords(parseCacheConfig(JSON.stringify(old), 'test'))[0].layers[0].content).toBeUndefined();
    // Malformed: dropped, the records kept.
    const bad = JSON.parse(JSON.stringify(config));
    bad.layers[0].content = 'nope';
    for (const r of bad.records) if (r.contentKey) r.contentKey = 42;
    const parsed = resolveRecords(parseCacheConfig(JSON.stringify(bad), 'test'));
    expect(parsed).toHaveLength(2);
    expect(parsed[0].layers[0].content).toBeUndefined();
    expect(parsed.every((r) => r.contentKey === undefined)).toBe(true);
  });
});
