// GC of the content store: blobs nothing holds (stored images walked through their index and manifest JSON,
// attestation manifests included; snapshots' layer blobs and the documents of the image a pulled layer came
// from; the images of `builder run` containers) are removed once unused for the grace period, with their
// member indexes and unpacked sizes; younger ones stay. `builder du` shows them under their own kind.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Digest } from '../../solver/llb/ops.js';
import { CONTENT_GRACE_MS, GarbageCollector, contentCollectionDue } from '../../src/cache/gc.js';
import { ContentStore } from '../../src/content/store.js';
import { ImageStore } from '../../src/image/store.js';
import { Snapshotter } from '../../src/snapshot/snapshotter.js';
import { MediaType, type Descriptor } from '../../src/image/types.js';

describe('GC of unreferenced content', () => {
  let root: string;
  let store: ContentStore;
  beforeEach(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'gc-content-'));
    store = new ContentStore(path.join(root, 'content'));
  });
  afterEach(async () => { await fs.rm(root, { recursive: true, force: true }); });

  let n = 0;
  const blob = async (text = `blob ${n++}`, mediaType = 'application/octet-stream'): Promise<Descriptor> => {
    const b = await store.write(Buffer.from(text));
    return { mediaType, digest: b.digest, size: b.size };
  };
  const json = (doc: object, mediaType: string) => blob(JSON.stringify(doc), mediaType);
  /** An image manifest with a config and one layer; `extra` adds fields (an attestation's layers). */
  const manifest = async (layers: Descriptor[] = [], mediaType: string = MediaType.ociManifest) =>
    json({ schemaVersion: 2, mediaType, config: await json({ os: 'linux', n: n++ }, MediaType.ociConfig), layers: layers.length ? layers : [await blob()] }, mediaType);
  const has = (d: Descriptor | string) => store.has((typeof d === 'string' ? d : d.digest) as Digest);
  /** Every blob in the store last used `ms` ago (as if that much time had passed since the writes). */
  const age = async (ms: number) => {
    const dir = path.join(root, 'content/blobs/sha256');
    const then = new Date(Date.now() - ms);
    for (const name of await fs.readdir(dir)) await fs.utimes(path.join(dir, name), then, then);
  };
  const children = async (d: Descriptor) => {
    const doc = JSON.parse((await store.readBuffer(d.digest)).toString()) as { config: Descriptor; layers: Descriptor[] };
    return [doc.config, ...doc.layers];
  };

  it('keeps what images, snapshots and containers hold and removes the rest once unused for the grace period', async () => {
    // A stored image: an index of an image manifest and its attestation manifest (a provenance statement).
    const image = await manifest();
    const statement = await blob('{"_type":"https://in-toto.io/Statement/v0.1"}', 'application/vnd.in-toto+json');
    const attestation = await manifest([statement]);
    const index = await json({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [
      { ...image, platform: { os: 'linux', architecture: 'amd64' } },
      { ...attestation, platform: { os: 'unknown', architecture: 'unknown' } },
    ] }, MediaType.ociIndex);
    await new ImageStore(root, store).put(['app:1'], index);
    // A dangling one (a Docker manifest).
    const dangling = await manifest([], MediaType.dockerManifest);
    await new ImageStore(root, store).putDangling(dangling);
    // A `builder run` container's image, no longer in the image store.
    const containerImage = await manifest();
    await fs.mkdir(path.join(root, 'containers'));
    await fs.writeFile(path.join(root, 'containers/c1.json'), JSON.stringify({ Layers: [], Upper: '999', ImageTarget: containerImage.digest }));
    // A pulled base layer: its snapshot names its blob and the image it came from (kept by its layers/ record).
    const base = await manifest();
    const baseLayer = (await children(base))[1];
    const snapshots = new Snapshotter(root);
    await snapshots.init();
    const id = await snapshots.prepare();
    await snapshots.commit(id, { diffID: `sha256:${'a'.repeat(64)}`, blob: baseLayer, source: `registry.test/base@${base.digest}` });
    await fs.mkdir(path.join(root, 'layers'));
    await fs.writeFile(path.join(root, 'layers', 'b'.repeat(64)), JSON.stringify({ snapshot: id }));

    // Nothing holds these: an old one with a member index and an unpacked size beside it, and a young one.
    const old = await blob('an old leftover provenance statement');
    await store.writeMemberIndex(old.digest, { version: 1, level: 6, zlib: 'x', members: [] });
    await store.writeUnpackedSize(old.digest, 10);
    const held = [index, image, attestation, statement, ...await children(image), ...await children(attestation), dangling, ...await children(dangling),
      containerImage, ...await children(containerImage), base, ...await children(base)];
    await age(2 * CONTENT_GRACE_MS);
    const young = await blob('a statement a build just wrote');

    const gc = new GarbageCollector(root);
    const loose = (await gc.usage()).kinds.find((k) => k.kind === 'unreferenced blobs')!;
    expect(loose).toEqual({ kind: 'unreferenced blobs', count: 2, size: old.size + young.size, reclaimable: old.size });

    const r = await gc.prune({});
    expect(r.freed).toBe(old.size);
    for (const d of held) expect(await has(d), d.digest).toBe(true);
    expect(await has(young)).toBe(true);
    expect(await has(old)).toBe(false);
    await expect(fs.access(store.memberIndexPath(old.digest))).rejects.toThrow();
    await expect(fs.access(store.unpackedSizePath(old.digest))).rejects.toThrow();
    // Even a prune of everything leaves a blob younger than the grace period.
    await new GarbageCollector(root).prune({ all: true });
    expect(await has(young)).toBe(true);
  });

  it('a prune that removes the last pulled layer of an image removes its documents with its blob', async () => {
    const base = await manifest();
    const [config, layer] = await children(base);
    const snapshots = new Snapshotter(root);
    await snapshots.init();
    const id = await snapshots.prepare();
    await snapshots.commit(id, { diffID: `sha256:${'a'.repeat(64)}`, blob: layer, source: `registry.test/base:1@${base.digest}` });
    await fs.mkdir(path.join(root, 'layers'));
    await fs.writeFile(path.join(root, 'layers', 'b'.repeat(64)), JSON.stringify({ snapshot: id }));
    await new GarbageCollector(root).prune({});
    expect(await has(base)).toBe(true);
    // Written just now, but held until the prune: no grace to wait for.
    await new GarbageCollector(root).prune({ all: true });
    for (const d of [base, config, layer]) expect(await has(d)).toBe(false);
  });

  it('a writer that reuses a blob makes it young again', async () => {
    const b = await blob('reused');
    await age(2 * CONTENT_GRACE_MS);
    await store.write(Buffer.from('reused'));
    await new GarbageCollector(root).prune({ all: true });
    expect(await has(b)).toBe(true);
    await age(2 * CONTENT_GRACE_MS);
    expect(await store.touch(b.digest)).toBe(true);
    await new GarbageCollector(root).prune({ all: true });
    expect(await has(b)).toBe(true);
    expect(await store.touch(`sha256:${'0'.repeat(64)}`)).toBe(false);
  });

  it('after builds, collection is due once enough blobs came since the last one', async () => {
    expect(await contentCollectionDue(root)).toBe(false);
    const kept = await manifest();
    await new ImageStore(root, store).put(['app:1'], kept);
    for (let i = 0; i < 256; i++) await blob();
    expect(await contentCollectionDue(root)).toBe(true);
    const gc = new GarbageCollector(root);
    // All young: nothing goes, and the next collection waits for as many again.
    expect(await gc.collectContent()).toEqual({ freed: 0, removed: 0 });
    expect(await contentCollectionDue(root)).toBe(false);
    await age(2 * CONTENT_GRACE_MS);
    expect((await gc.collectContent()).removed).toBe(256);
    expect((await fs.readdir(path.join(root, 'content/blobs/sha256'))).length).toBe(3);
    for (const d of [kept, ...await children(kept)]) expect(await has(d)).toBe(true);
    expect(await contentCollectionDue(root)).toBe(false);
  });
});
