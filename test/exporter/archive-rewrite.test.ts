// A layout tarball written again to a destination this state directory wrote: the start both archives
// share (the layers) is kept, the rest (the provenance, the index naming it) written, and the result is
// byte for byte what a full write gives. Read back with skopeo (which checks every blob's digest) and GNU tar.
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Digest } from '../../solver/llb/ops.js';
import { ContentStore } from '../../src/content/store.js';
import { writeImage, type LayerDesc } from '../../src/exporter/image.js';
import { exportLayoutTar, writeImageIndex } from '../../src/exporter/oci.js';
import { exportDockerTar } from '../../src/exporter/docker.js';
import { reachableBlobs } from '../../src/exporter/layout.js';
import { ArchiveOutputs } from '../../src/exporter/uptodate.js';
import { writeAttestationManifest } from '../../src/attest/manifest.js';
import type { Descriptor, ImageConfigFile, Index, Manifest } from '../../src/image/types.js';
import { busyboxLayout, ensureBusybox } from '../helpers/fixtures.js';

const run = promisify(execFile);
const sh = async (cmd: string, args: string[]) => (await run(cmd, args, { maxBuffer: 64 << 20 })).stdout;

async function layoutJSON<T>(digest: string): Promise<T> {
  return JSON.parse(await fs.readFile(path.join(busyboxLayout, 'blobs/sha256', digest.slice(7)), 'utf8')) as T;
}

describe('layout tarball rewritten from what changed', () => {
  let tmp: string;
  let store: ContentStore;
  let outputs: ArchiveOutputs;
  const platforms: { manifest: Descriptor; platform: { os: string; architecture: string } }[] = [];

  beforeAll(async () => {
    await ensureBusybox();
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'archive-rewrite-'));
    store = new ContentStore(path.join(tmp, 'content'));
    outputs = new ArchiveOutputs(path.join(tmp, 'state'));
    // Both of the fixture's platforms: 2 MB of layers to keep.
    const top = JSON.parse(await fs.readFile(path.join(busyboxLayout, 'index.json'), 'utf8')) as Index;
    const index = await layoutJSON<Index>(top.manifests[0].digest);
    for (const arch of ['amd64', 'arm64']) {
      const manifest = await layoutJSON<Manifest>(index.manifests.find((m) => m.platform?.architecture === arch)!.digest);
      const config = await layoutJSON<ImageConfigFile>(manifest.config.digest);
      const layers: LayerDesc[] = [];
      for (const [i, l] of manifest.layers.entries()) {
        await store.write(await fs.readFile(path.join(busyboxLayout, 'blobs/sha256', l.digest.slice(7))), { digest: l.digest, size: l.size });
        layers.push({ digest: l.digest, size: l.size, mediaType: l.mediaType, diffID: config.rootfs!.diff_ids[i] });
      }
      const written = await writeImage(store, { config: { ...config, rootfs: undefined }, layers });
      platforms.push({ manifest: written.manifest, platform: { os: 'linux', architecture: arch } });
    }
  });
  afterAll(async () => {
    await fs.rm(tmp, { recursive: true, force: true });
  });

  /** The images with a provenance statement saying when the build ran: a new one for each `when`. */
  async function build(when: string): Promise<Descriptor> {
    const attestations = [];
    for (const p of platforms) {
      attestations.push(await writeAttestationManifest(store, p.manifest, p.platform, ['docker.io/library/app:1'], [
        { predicateType: 'https://slsa.dev/provenance/v0.2', predicate: { metadata: { buildStartedOn: when, buildFinishedOn: when } } },
      ]));
    }
    return writeImageIndex(store, platforms, attestations);
  }

  const names = ['docker.io/library/app:1'];
  const fingerprint = (root: Descriptor, kind = 'oci') => JSON.stringify([kind, root.digest, names]);

  it('orders every blob after the blobs it names, layers first', async () => {
    const root = await build('2026-01-01T00:00:00Z');
    const blobs = await reachableBlobs(store, [root]);
    expect(blobs.at(-1)!.digest).toBe(root.digest);
    const position = new Map(blobs.map((b, i) => [b.digest, i]));
    for (const b of blobs) {
      if (!b.mediaType.includes('manifest.v1')) continue;
      const m = JSON.parse((await store.readBuffer(b.digest)).toString()) as Manifest;
      const after = [...m.layers, m.config].map((c) => position.get(c.digest)!);
      expect(after).toEqual([...after].sort((x, y) => x - y));
      expect(Math.max(...after)).toBeLessThan(position.get(b.digest)!);
    }
    // The first image's layers come first; the attestations after both images.
    expect(blobs[0].mediaType).toContain('image.layer');
    const lastImage = Math.max(...platforms.map((p) => position.get(p.manifest.digest)!));
    expect(blobs.findIndex((b) => b.mediaType === 'application/vnd.in-toto+json')).toBeGreaterThan(lastImage);
  });

  it('keeps the layers and writes only the new provenance and index, equal to a full write', async () => {
    const dest = path.join(tmp, 'img.tar');
    const first = await build('2026-01-01T00:00:01Z');
    const w1 = await exportLayoutTar(store, first, { dest, names, record: { outputs, fingerprint: fingerprint(first) } });
    expect(w1.kept).toBe(0);
    const before = await fs.stat(dest);

    const second = await build('2026-01-01T00:00:02Z');
    const w2 = await exportLayoutTar(store, second, { dest, names, record: { outputs, fingerprint: fingerprint(second) } });
    const layerBytes = platforms.length * 900_000;
    expect(w2.kept).toBeGreaterThan(layerBytes);
    expect(w2.written).toBeLessThan(16 * 1024);
    const after = await fs.stat(dest);
    // On ext4 and XFS in place (same file); elsewhere a new file that started as a copy of the old one.
    const collapsing = [0xef53, 0x58465342].includes(Number((await fs.statfs(dest)).type));
    expect(w2.inPlace).toBe(collapsing);
    if (collapsing) expect(after.ino).toBe(before.ino);

    const fresh = path.join(tmp, 'fresh.tar');
    const w3 = await exportLayoutTar(store, second, { dest: fresh, names });
    expect(w3.kept).toBe(0);
    expect(Buffer.compare(await fs.readFile(dest), await fs.readFile(fresh))).toBe(0);
    expect(await outputs.upToDate(dest, fingerprint(second))).toBe(true);

    // Every blob there and sound (skopeo checks digests while it copies), the index naming the new provenance.
    const raw = JSON.parse(await sh('skopeo', ['inspect', '--raw', `oci-archive:${dest}:1`])) as Index;
    expect(raw.manifests.map((m) => m.digest)).toEqual(JSON.parse((await store.readBuffer(second.digest)).toString()).manifests.map((m: Descriptor) => m.digest));
    await sh('skopeo', ['copy', '--all', `oci-archive:${dest}:1`, `dir:${path.join(tmp, 'copied')}`]);
    const listing = (await sh('tar', ['-tf', dest])).trim().split('\n');
    expect(listing.at(-1)).toBe('index.json');
  });

  it('reads an archive followed by what a killed rewrite appended as the old archive', async () => {
    // What a kill between the append and the cut leaves: the old archive, zeros to a block boundary, new bytes.
    const old = await fs.readFile(path.join(tmp, 'fresh.tar'));
    const killed = path.join(tmp, 'killed.tar');
    const gap = (4096 - (old.length % 4096)) % 4096;
    await fs.writeFile(killed, Buffer.concat([old, Buffer.alloc(gap), Buffer.from('x'.repeat(512)), Buffer.alloc(3000, 7)]));
    const a = JSON.parse(await sh('skopeo', ['inspect', '--raw', `oci-archive:${killed}:1`]));
    const b = JSON.parse(await sh('skopeo', ['inspect', '--raw', `oci-archive:${path.join(tmp, 'fresh.tar')}:1`]));
    expect(a).toEqual(b);
    expect((await sh('tar', ['-tf', killed])).trim().split('\n').at(-1)).toBe('index.json');
  });

  it('cuts back to the old archive when a new blob is damaged, and still rewrites from it after', async () => {
    const dest = path.join(tmp, 'damaged.tar');
    const first = await build('2026-01-01T00:00:03Z');
    await exportLayoutTar(store, first, { dest, names, record: { outputs, fingerprint: fingerprint(first) } });
    const old = await fs.readFile(dest);
    const oldStat = await fs.stat(dest);
    const second = await build('2026-01-01T00:00:04Z');
    // Damage the new provenance statement in the store (in the part that is written; nothing parses it before).
    const rootIndex = JSON.parse((await store.readBuffer(second.digest)).toString()) as Index;
    const attestation = JSON.parse((await store.readBuffer(rootIndex.manifests.at(-1)!.digest)).toString()) as Manifest;
    const statementPath = store.blobPath(attestation.layers[0].digest as Digest);
    const good = await fs.readFile(statementPath);
    await fs.writeFile(statementPath, Buffer.concat([good.subarray(0, good.length - 1), Buffer.from(' ')]));
    const fresh = new ContentStore(store.root);
    await expect(exportLayoutTar(fresh, second, { dest, names, record: { outputs, fingerprint: fingerprint(second) } })).rejects.toMatchObject({ code: 'CORRUPT_BLOB' });
    expect(Buffer.compare(await fs.readFile(dest), old)).toBe(0);
    // Where it was written in place (and cut back), the file changed in between: recorded again as it is.
    const collapsing = [0xef53, 0x58465342].includes(Number((await fs.statfs(dest)).type));
    if (collapsing) expect((await fs.stat(dest)).ctimeMs).not.toBe(oldStat.ctimeMs);
    expect(await outputs.upToDate(dest, fingerprint(first))).toBe(true);
    // Made again (as the exporter's retry does), then written from the kept start.
    const again = await build('2026-01-01T00:00:04Z');
    expect(again.digest).toBe(second.digest);
    const w = await exportLayoutTar(fresh, again, { dest, names, record: { outputs, fingerprint: fingerprint(again) } });
    expect(w.kept).toBeGreaterThan(0);
    await exportLayoutTar(fresh, again, { dest: path.join(tmp, 'damaged-fresh.tar'), names });
    expect(Buffer.compare(await fs.readFile(dest), await fs.readFile(path.join(tmp, 'damaged-fresh.tar')))).toBe(0);
  });

  it('takes one writer at a time per destination: two at once leave one whole archive, recorded as it is', async () => {
    const dest = path.join(tmp, 'raced.tar');
    const start = await build('2026-01-01T00:00:10Z');
    await exportLayoutTar(store, start, { dest, names, record: { outputs, fingerprint: fingerprint(start) } });
    const a = await build('2026-01-01T00:00:11Z');
    const b = await build('2026-01-01T00:00:12Z');
    const [wa, wb] = await Promise.all([a, b].map((root) => exportLayoutTar(store, root, { dest, names, record: { outputs, fingerprint: fingerprint(root) } })));
    // The second kept what the first wrote, whichever came first.
    expect(wa.kept).toBeGreaterThan(0);
    expect(wb.kept).toBeGreaterThan(0);
    const got = await fs.readFile(dest);
    const fresh: Buffer[] = [];
    for (const [i, root] of [a, b].entries()) {
      await exportLayoutTar(store, root, { dest: path.join(tmp, `raced-${i}.tar`), names });
      fresh.push(await fs.readFile(path.join(tmp, `raced-${i}.tar`)));
    }
    const winner = fresh.findIndex((f) => Buffer.compare(f, got) === 0);
    expect(winner).toBeGreaterThanOrEqual(0);
    expect(await outputs.upToDate(dest, fingerprint([a, b][winner]))).toBe(true);
  });

  it('writes a destination changed by someone else whole', async () => {
    const dest = path.join(tmp, 'img.tar');
    await fs.appendFile(dest, Buffer.alloc(1024));
    const third = await build('2026-01-01T00:00:05Z');
    const w = await exportLayoutTar(store, third, { dest, names, record: { outputs, fingerprint: fingerprint(third) } });
    expect(w.kept).toBe(0);
    expect((await fs.stat(dest)).size % 512).toBe(0);
    JSON.parse(await sh('skopeo', ['inspect', '--raw', `oci-archive:${dest}:1`]));
  });

  it('starts a new file from a copy of the kept bytes where the filesystem cannot cut (tmpfs)', async () => {
    const shm = await fs.mkdtemp('/dev/shm/archive-rewrite-').catch(() => null);
    expect(shm, '/dev/shm (tmpfs) is needed for this test').not.toBeNull();
    try {
      const dest = path.join(shm!, 'img.tar');
      const first = await build('2026-01-01T00:00:06Z');
      await exportLayoutTar(store, first, { dest, names, record: { outputs, fingerprint: fingerprint(first) } });
      const before = await fs.stat(dest);
      const second = await build('2026-01-01T00:00:07Z');
      const w = await exportLayoutTar(store, second, { dest, names, record: { outputs, fingerprint: fingerprint(second) } });
      expect(w).toMatchObject({ inPlace: false });
      expect(w.kept).toBeGreaterThan(platforms.length * 900_000);
      expect((await fs.stat(dest)).ino).not.toBe(before.ino);
      await exportLayoutTar(store, second, { dest: path.join(shm!, 'fresh.tar'), names });
      expect(Buffer.compare(await fs.readFile(dest), await fs.readFile(path.join(shm!, 'fresh.tar')))).toBe(0);
    } finally {
      await fs.rm(shm!, { recursive: true, force: true });
    }
  });

  it('keeps the start of a small archive too, copied rather than cut in place', async () => {
    // One platform: about 1 MB of layer, under what is worth a cut in place.
    const one = async (when: string) => {
      const p = platforms[0];
      const att = await writeAttestationManifest(store, p.manifest, p.platform, names, [
        { predicateType: 'https://slsa.dev/provenance/v0.2', predicate: { metadata: { buildStartedOn: when, buildFinishedOn: when } } },
      ]);
      return writeImageIndex(store, [p], [att]);
    };
    const dest = path.join(tmp, 'small.tar');
    const first = await one('2026-01-01T00:00:08Z');
    await exportLayoutTar(store, first, { dest, names, record: { outputs, fingerprint: fingerprint(first) } });
    const before = await fs.stat(dest);
    expect(before.size).toBeLessThan(1 << 20);
    const second = await one('2026-01-01T00:00:09Z');
    const w = await exportLayoutTar(store, second, { dest, names, record: { outputs, fingerprint: fingerprint(second) } });
    expect(w).toMatchObject({ inPlace: false });
    expect(w.kept).toBeGreaterThan(900_000);
    expect(w.written).toBeLessThan(16 * 1024);
    expect((await fs.stat(dest)).ino).not.toBe(before.ino);
    await exportLayoutTar(store, second, { dest: path.join(tmp, 'small-fresh.tar'), names });
    expect(Buffer.compare(await fs.readFile(dest), await fs.readFile(path.join(tmp, 'small-fresh.tar')))).toBe(0);
    JSON.parse(await sh('skopeo', ['inspect', '--raw', `oci-archive:${dest}:1`]));
  });

  it('rewrites a docker archive from what changed too', async () => {
    const dest = path.join(tmp, 'docker.tar');
    // One image with both platforms' layers: 2 MB to keep.
    const layers: LayerDesc[] = [];
    for (const p of platforms) {
      const m = JSON.parse((await store.readBuffer(p.manifest.digest)).toString()) as Manifest;
      const c = JSON.parse((await store.readBuffer(m.config.digest)).toString()) as ImageConfigFile;
      m.layers.forEach((l, i) => layers.push({ digest: l.digest as Digest, size: l.size, mediaType: l.mediaType, diffID: c.rootfs!.diff_ids[i] as Digest }));
    }
    const config = JSON.parse((await store.readBuffer((JSON.parse((await store.readBuffer(platforms[0].manifest.digest)).toString()) as Manifest).config.digest)).toString()) as ImageConfigFile;
    const image = (await writeImage(store, { config: { ...config, rootfs: undefined }, layers })).manifest;
    await exportDockerTar(store, { manifest: image }, { dest, names, record: { outputs, fingerprint: fingerprint(image, 'docker') } });
    // Another name: index.json, manifest.json and repositories change, the blobs do not.
    const other = ['docker.io/library/app:2'];
    const w = await exportDockerTar(store, { manifest: image }, { dest, names: other, record: { outputs, fingerprint: JSON.stringify(['docker', image.digest, other]) } });
    expect(w.kept).toBeGreaterThan(platforms.length * 900_000);
    await exportDockerTar(store, { manifest: image }, { dest: path.join(tmp, 'docker-fresh.tar'), names: other });
    expect(Buffer.compare(await fs.readFile(dest), await fs.readFile(path.join(tmp, 'docker-fresh.tar')))).toBe(0);
    expect(JSON.parse(await sh('skopeo', ['inspect', `docker-archive:${dest}:app:2`])).Architecture).toBe('amd64');
  });
});
