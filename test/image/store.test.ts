// The local image store's names and dangling images, and the lookups the image commands share.
import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ContentStore } from '../../src/content/store.js';
import { ImageStore } from '../../src/image/store.js';
import { findImage, imageRecords, referenceMatches } from '../../src/image/images.js';
import { writeImage } from '../../src/exporter/image.js';
import { parseReference } from '../../src/registry/reference.js';
import { projectRoot } from '../helpers/cli.js';

const run = promisify(execFile);

async function setup() {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'builder-images-'));
  const content = new ContentStore(path.join(root, 'content'));
  const images = new ImageStore(root, content);
  const image = async (n: number) => writeImage(content, { config: { architecture: 'amd64', os: 'linux', created: `2024-01-0${n}T00:00:00Z` }, layers: [] });
  return { root, content, images, image };
}

describe('image store', () => {
  it('a name moved to another image leaves the old one dangling, unless another name keeps it', async () => {
    const { images, image } = await setup();
    const a = await image(1);
    const b = await image(2);
    await images.put(['app:1'], a.manifest);
    await images.put(['app:1'], b.manifest);
    expect((await images.dangling()).map((d) => d.target.digest)).toEqual([a.manifest.digest]);
    // Named again: not dangling any more.
    await images.put(['app:old'], a.manifest);
    expect(await images.dangling()).toEqual([]);
    await images.put(['other:1'], b.manifest);
    await images.put(['app:1'], a.manifest);
    expect(await images.dangling()).toEqual([]); // other:1 still names b
    expect(await images.removeDangling(a.manifest.digest)).toBe(false);
  });

  it('updates from several writers at once (builds, commit, pull side by side) all land', async () => {
    const { root, content, image } = await setup();
    const a = await image(1);
    // Separate stores, as separate processes have: each reads the file, changes it and writes it back.
    const writers = Array.from({ length: 6 }, () => new ImageStore(root, content));
    await Promise.all(writers.map((w, i) => (i % 3 === 2 ? w.addRepoDigests(a.manifest.digest, ['reg.test/app']) : w.put([`app:${i}`], a.manifest))));
    expect((await new ImageStore(root, content).list()).map((i) => i.name).sort()).toEqual(['app:0', 'app:1', 'app:3', 'app:4'].map((n) => `docker.io/library/${n}`));
    expect(await new ImageStore(root, content).repoDigests(a.manifest.digest)).toEqual(['reg.test/app']);
    expect((await fs.readdir(root)).filter((n) => n.includes('lock'))).toEqual([]);
  });

  it('updates from several processes at once all land', async () => {
    const { root, image } = await setup();
    const a = await image(1);
    // Each process (the built library, as the bin runs it) names the image ten times over.
    const script = `
      import { ContentStore } from ${JSON.stringify(path.join(projectRoot, 'dist/src/content/store.js'))};
      import { ImageStore } from ${JSON.stringify(path.join(projectRoot, 'dist/src/image/store.js'))};
      const [root, n, target] = process.argv.slice(1);
      const images = new ImageStore(root, new ContentStore(root + '/content'));
      for (let i = 0; i < 10; i++) await images.put(['p' + n + ':' + i], JSON.parse(target));`;
    await Promise.all([0, 1, 2, 3].map((n) => run(process.execPath, ['--input-type=module', '-e', script, root, String(n), JSON.stringify(a.manifest)])));
    const names = (await new ImageStore(root, new ContentStore(path.join(root, 'content'))).list()).map((i) => i.name);
    expect(names.length).toBe(40);
  });

  it('repository digests only from a push or pull; they stay while the image does (dangling too) and go with it', async () => {
    const { images, image } = await setup();
    const a = await image(1);
    const b = await image(2);
    await images.put(['app:1'], a.manifest);
    expect(await images.repoDigests(a.manifest.digest)).toEqual([]);
    await images.put(['reg.example/team/app:1'], a.manifest, { repoDigests: ['reg.example/team/app:1'] });
    await images.addRepoDigests(a.manifest.digest, ['other.example/app:2', 'reg.example/team/app:9']);
    expect(await images.repoDigests(a.manifest.digest)).toEqual(['other.example/app', 'reg.example/team/app']);
    // Both names move away: dangling, still known by digest.
    await images.put(['app:1', 'reg.example/team/app:1'], b.manifest);
    expect(await images.repoDigests(a.manifest.digest)).toEqual(['other.example/app', 'reg.example/team/app']);
    expect(await images.repoDigests(b.manifest.digest)).toEqual([]);
    expect(await images.removeDangling(a.manifest.digest)).toBe(true);
    expect(await images.repoDigests(a.manifest.digest)).toEqual([]);
    // The last name removed: gone with the image.
    await images.addRepoDigests(b.manifest.digest, ['reg.example/team/app:1']);
    await images.remove('app:1');
    expect(await images.repoDigests(b.manifest.digest)).toEqual(['reg.example/team/app']);
    await images.remove('reg.example/team/app:1');
    expect(await images.repoDigests(b.manifest.digest)).toEqual([]);
  });

  it('finds an image by name, image id (config digest) prefix, or manifest digest', async () => {
    const { images, content, image } = await setup();
    const a = await image(1);
    await images.put(['registry.example/team/app:1', 'app:latest'], a.manifest);
    const byName = await findImage(images, content, 'app');
    expect(byName.names.map(String).sort()).toEqual(['docker.io/library/app:latest', 'registry.example/team/app:1']);
    expect((await findImage(images, content, a.config.digest.slice(7, 19))).target.digest).toBe(a.manifest.digest);
    expect((await findImage(images, content, a.manifest.digest)).target.digest).toBe(a.manifest.digest);
    await expect(findImage(images, content, 'nope:1')).rejects.toThrow('no such image: nope:1');
    expect((await imageRecords(images)).length).toBe(1);
  });

  it('reference filters glob the familiar name, with or without the tag', () => {
    const ref = parseReference('registry.example/team/app:1');
    expect(referenceMatches('registry.example/team/*', ref)).toBe(true);
    expect(referenceMatches('*/app:1', ref)).toBe(false); // * does not cross /
    expect(referenceMatches('registry.example/*/app:1', ref)).toBe(true);
    expect(referenceMatches('app*', parseReference('app:2'))).toBe(true);
    expect(referenceMatches('app', parseReference('app:2'))).toBe(true);
  });
});
