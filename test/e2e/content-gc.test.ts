// The content store does not grow with every rebuild: the default provenance's statement, attestation
// manifest and index (new each time), and an OCI output's documents, are held by nothing and collected (by
// prune, and by the collection a build runs when due) once unused for the grace period. What is held stays:
// a stored image exports, pushes and runs after `prune -a`, attestations included, and an OCI tar rebuilt
// after a collection is sound (skopeo checks every blob's digest) and still keeps the common start.
// "Time passing" is every blob's mtime set back past the grace period.
import { describe, it, expect, inject } from 'vitest';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import fs from 'node:fs/promises';
import path from 'node:path';
import { runCli, makeContext, tempDir } from '../helpers/cli.js';
import { CONTENT_GRACE_MS, GarbageCollector } from '../../src/cache/gc.js';
import { ContentStore } from '../../src/content/store.js';
import { reachableContent } from '../../src/image/records.js';
import type { Index } from '../../src/image/types.js';

const exec = promisify(execFile);
const registry = inject('registry');
const base = `${registry}/busybox:1.35`;

const blobsDir = (root: string) => path.join(root, 'content', 'blobs', 'sha256');
const blobCount = async (root: string) => (await fs.readdir(blobsDir(root))).length;
async function age(root: string): Promise<void> {
  const then = new Date(Date.now() - 2 * CONTENT_GRACE_MS);
  for (const name of await fs.readdir(blobsDir(root))) await fs.utimes(path.join(blobsDir(root), name), then, then);
}
async function cli(args: string[]): Promise<string> {
  const r = await runCli(args);
  expect(r.code, `${args.join(' ')}\n${r.stderr}`).toBe(0);
  return r.stdout + r.stderr;
}

describe('content store GC (end to end)', () => {
  it('warm OCI rebuilds leave a bounded number of blobs after each collection, and the archive rebuilt after one is sound', async () => {
    const root = await tempDir('builder-cgc-root-');
    const out = await tempDir('builder-cgc-out-');
    // 2 MB of layer that does not compress: an archive whose common start a rebuild keeps.
    const ctx = await makeContext({ Dockerfile: `FROM ${base}\nCOPY big.bin /big.bin\n` });
    await fs.writeFile(path.join(ctx, 'big.bin'), randomBytes(2 << 20));
    const dest = path.join(out, 'x.tar');
    const build = () => cli(['build', '--root', root, '--progress', 'plain', '--output', `type=oci,dest=${dest}`, ctx]);
    const rounds = async () => {
      const counts: number[] = [];
      for (let i = 0; i < 5; i++) {
        await build();
        counts.push(await blobCount(root));
      }
      return counts;
    };

    const first = await rounds();
    // Each warm rebuild adds the provenance, its attestation manifest (and config) and the index.
    expect(first[4] - first[0]).toBeGreaterThanOrEqual(4 * 3);
    const du = await cli(['du', '--root', root]);
    expect(du).toMatch(/unreferenced blobs\s+\d+\s+\S+\s+0B\n/);
    // Young: even `prune -a` would keep them; an hour later the collection a build runs removes them.
    await age(root);
    expect((await cli(['du', '--root', root]))).not.toMatch(/unreferenced blobs\s+\d+\s+\S+\s+0B\n/);
    await new GarbageCollector(root).collectContent();
    const collected = await blobCount(root);
    expect(collected).toBeLessThan(first[0]);
    // Warm: the layers are still there, and the archive keeps its start.
    const warm = await build();
    expect(warm).toMatch(/#\d+ CACHED/);
    expect(warm).toMatch(/x\.tar: kept the first [3-9]\.\d+MB/);
    await exec('skopeo', ['copy', '--all', `oci-archive:${dest}`, `dir:${out}/copied`]);

    // Again, with prune: the same number of blobs left each time (the base image's, held by its layers).
    const afterPrune: number[] = [];
    for (let round = 0; round < 2; round++) {
      await rounds();
      await age(root);
      await cli(['prune', '--root', root]);
      afterPrune.push(await blobCount(root));
    }
    expect(afterPrune[1]).toBe(afterPrune[0]);
    expect(afterPrune[0]).toBeLessThan(collected);
    // The build cache is gone, not the archive's start: the layer made again is the same blob.
    const rebuilt = await build();
    expect(rebuilt).toMatch(/x\.tar: kept the first [3-9]\.\d+MB/);
    const raw = JSON.parse((await exec('skopeo', ['inspect', '--raw', `oci-archive:${dest}`])).stdout) as Index;
    expect(raw.manifests.some((m) => m.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest')).toBe(true);
    await exec('skopeo', ['copy', '--all', `oci-archive:${dest}`, `dir:${out}/copied-again`]);
    const listing = (await exec('tar', ['-tf', dest])).stdout.trim().split('\n');
    expect(listing.at(-1)).toBe('index.json');
  });

  it('a stored image keeps every blob through prune -a: it runs, saves and pushes, attestations included', async () => {
    const root = await tempDir('builder-cgc-root-');
    const out = await tempDir('builder-cgc-out-');
    const ctx = await makeContext({ Dockerfile: `FROM ${base}\nCOPY hello.txt /hello.txt\nCMD ["cat", "/hello.txt"]\n`, 'hello.txt': 'hello\n' });
    await cli(['build', '--root', root, '-q', '--provenance=true', '-t', 'gc/app:1', ctx]);
    // Leftovers of other builds beside it.
    await cli(['build', '--root', root, '-q', '--output', `type=oci,dest=${out}/other.tar`, ctx]);
    const before = await blobCount(root);
    await age(root);
    await cli(['prune', '--all', '--root', root]);
    expect(await blobCount(root)).toBeLessThan(before);

    const { target } = (JSON.parse(await fs.readFile(path.join(root, 'images.json'), 'utf8')) as { images: { target: { digest: string } }[] }).images[0];
    const store = new ContentStore(path.join(root, 'content'));
    const index = JSON.parse((await store.readBuffer(target.digest as `sha256:${string}`)).toString()) as Index;
    expect(index.manifests.map((m) => m.platform?.os)).toContain('unknown');
    const reached = await reachableContent(store, [target.digest]);
    expect(reached.size).toBeGreaterThanOrEqual(1 + 2 * 2 + 2);
    for (const d of reached) expect(await store.has(d as `sha256:${string}`), d).toBe(true);

    expect(await cli(['run', '--root', root, '--rm', 'gc/app:1'])).toBe('hello\n');
    await cli(['save', '--root', root, '--format', 'oci', '-o', `${out}/saved.tar`, 'gc/app:1']);
    await exec('skopeo', ['copy', '--all', `oci-archive:${out}/saved.tar`, `dir:${out}/saved`]);
    const ref = `${registry}/content-gc/app:1`;
    await cli(['tag', '--root', root, 'gc/app:1', ref]);
    await cli(['push', '--root', root, ref]);
    const pushed = (await exec('skopeo', ['inspect', '--tls-verify=false', '--raw', `docker://${ref}`])).stdout;
    expect(JSON.parse(pushed)).toEqual(index);
  });
});
