// Writes images from blobs in a ContentStore (the busybox fixture's layers) and reads the archives back
// with independent tools: skopeo, umoci and GNU tar.
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Digest } from '../../solver/llb/ops.js';
import { ContentStore } from '../../src/content/store.js';
import { writeImage, type LayerDesc } from '../../src/exporter/image.js';
import { exportOCITar } from '../../src/exporter/oci.js';
import { exportDockerTar } from '../../src/exporter/docker.js';
import type { ImageConfigFile, Index, Manifest } from '../../src/image/types.js';
import { busyboxLayout, ensureBusybox } from '../helpers/fixtures.js';

const run = promisify(execFile);
const sh = async (cmd: string, args: string[]) => (await run(cmd, args, { maxBuffer: 64 << 20 })).stdout;

interface FixtureImage {
  layers: LayerDesc[];
  config: ImageConfigFile;
}

async function layoutJSON<T>(digest: string): Promise<T> {
  return JSON.parse(await fs.readFile(path.join(busyboxLayout, 'blobs/sha256', digest.slice(7)), 'utf8')) as T;
}

/** The fixture's image for an architecture, its layer blobs copied into the store. */
async function loadFixture(store: ContentStore, arch: string): Promise<FixtureImage> {
  const top = JSON.parse(await fs.readFile(path.join(busyboxLayout, 'index.json'), 'utf8')) as Index;
  const index = await layoutJSON<Index>(top.manifests[0].digest);
  const manifest = await layoutJSON<Manifest>(index.manifests.find((m) => m.platform?.architecture === arch)!.digest);
  const config = await layoutJSON<ImageConfigFile>(manifest.config.digest);
  const layers: LayerDesc[] = [];
  for (const [i, l] of manifest.layers.entries()) {
    await store.write(await fs.readFile(path.join(busyboxLayout, 'blobs/sha256', l.digest.slice(7))), { digest: l.digest, size: l.size });
    layers.push({ digest: l.digest, size: l.size, mediaType: l.mediaType, diffID: config.rootfs!.diff_ids[i] });
  }
  return { layers, config };
}

describe('image exporters', () => {
  let tmp: string;
  let store: ContentStore;
  let amd64: FixtureImage;
  let arm64: FixtureImage;

  beforeAll(async () => {
    await ensureBusybox();
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'exporter-test-'));
    store = new ContentStore(path.join(tmp, 'content'));
    amd64 = await loadFixture(store, 'amd64');
    arm64 = await loadFixture(store, 'arm64');
  });
  afterAll(async () => {
    await fs.rm(tmp, { recursive: true, force: true });
  });

  const appConfig = (base: FixtureImage): ImageConfigFile => ({
    ...base.config,
    config: { ...base.config.config, Cmd: ['echo', 'hello'], WorkingDir: '/home/app', User: 'app', Labels: { 'org.example': 'yes' } },
    rootfs: undefined,
  });

  it('writeImage stores config and OCI manifest with diff_ids from the layers', async () => {
    const written = await writeImage(store, { config: appConfig(amd64), layers: amd64.layers });
    expect(written.manifest.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
    const manifest = JSON.parse((await store.readBuffer(written.manifest.digest)).toString()) as Manifest;
    expect(manifest).toMatchObject({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: written.config.digest, size: written.config.size },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: amd64.layers[0].digest, size: amd64.layers[0].size }],
    });
    const config = JSON.parse((await store.readBuffer(written.config.digest)).toString()) as ImageConfigFile;
    expect(config.rootfs).toEqual({ type: 'layers', diff_ids: amd64.layers.map((l) => l.diffID) });
  });

  it('writeImage gives Docker layer media types their OCI names', async () => {
    const layers = amd64.layers.map((l) => ({ ...l, mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip' }));
    const written = await writeImage(store, { config: appConfig(amd64), layers });
    const manifest = JSON.parse((await store.readBuffer(written.manifest.digest)).toString()) as Manifest;
    expect(manifest.layers[0].mediaType).toBe('application/vnd.oci.image.layer.v1.tar+gzip');
  });

  it('exports an OCI layout tar that skopeo and umoci read', async () => {
    const written = await writeImage(store, { config: appConfig(amd64), layers: amd64.layers });
    const dest = path.join(tmp, 'app-oci.tar');
    await exportOCITar(store, [{ manifest: written.manifest, platform: { os: 'linux', architecture: 'amd64' } }], {
      dest,
      names: ['docker.io/library/app:1'],
    });

    const inspected = JSON.parse(await sh('skopeo', ['inspect', `oci-archive:${dest}`]));
    expect(inspected).toMatchObject({ Digest: written.manifest.digest, Architecture: 'amd64', Os: 'linux', Labels: { 'org.example': 'yes' } });
    expect(inspected.Layers).toEqual(amd64.layers.map((l) => l.digest));
    const config = JSON.parse(await sh('skopeo', ['inspect', '--config', `oci-archive:${dest}:1`]));
    expect(config.config).toMatchObject({ Cmd: ['echo', 'hello'], WorkingDir: '/home/app', User: 'app' });

    const layoutDir = path.join(tmp, 'oci-layout');
    await fs.mkdir(layoutDir);
    await sh('tar', ['-xf', dest, '-C', layoutDir]);
    expect(JSON.parse(await fs.readFile(path.join(layoutDir, 'oci-layout'), 'utf8'))).toEqual({ imageLayoutVersion: '1.0.0' });
    const index = JSON.parse(await fs.readFile(path.join(layoutDir, 'index.json'), 'utf8')) as Index;
    expect(index.manifests).toEqual([
      {
        ...written.manifest,
        annotations: { 'io.containerd.image.name': 'docker.io/library/app:1', 'org.opencontainers.image.ref.name': '1' },
      },
    ]);

    const bundle = path.join(tmp, 'bundle');
    await sh('umoci', ['unpack', '--image', `${layoutDir}:1`, bundle]);
    const rootfs = path.join(bundle, 'rootfs');
    expect((await fs.lstat(path.join(rootfs, 'bin/busybox'))).isFile()).toBe(true);
    expect(await fs.readlink(path.join(rootfs, 'bin/sh'))).toBe('/bin/busybox');
    expect(await fs.readFile(path.join(rootfs, 'etc/passwd'), 'utf8')).toContain('app:x:1000:1000:app:/home/app:/bin/sh');
    expect((await fs.stat(path.join(rootfs, 'tmp'))).mode & 0o7777).toBe(0o1777);
    expect((await fs.stat(path.join(rootfs, 'home/app'))).uid).toBe(1000);
    const runtime = JSON.parse(await fs.readFile(path.join(bundle, 'config.json'), 'utf8'));
    expect(runtime.process.args).toEqual(['echo', 'hello']);
    expect(runtime.process.cwd).toBe('/home/app');
    await fs.rm(bundle, { recursive: true, force: true });
  });

  it('exports several platforms under a nested index', async () => {
    const a = await writeImage(store, { config: appConfig(amd64), layers: amd64.layers });
    const b = await writeImage(store, { config: appConfig(arm64), layers: arm64.layers });
    const dest = path.join(tmp, 'multi-oci.tar');
    await exportOCITar(
      store,
      [
        { manifest: a.manifest, platform: { os: 'linux', architecture: 'amd64' } },
        { manifest: b.manifest, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
      ],
      { dest, names: ['127.0.0.1:5000/team/app:2', 'docker.io/library/app:latest'] },
    );
    const raw = JSON.parse(await sh('skopeo', ['inspect', '--raw', `oci-archive:${dest}:2`])) as Index;
    expect(raw.mediaType).toBe('application/vnd.oci.image.index.v1+json');
    expect(raw.manifests.map((m) => [m.digest, m.platform])).toEqual([
      [a.manifest.digest, { os: 'linux', architecture: 'amd64' }],
      [b.manifest.digest, { os: 'linux', architecture: 'arm64', variant: 'v8' }],
    ]);
    const listing = (await sh('tar', ['-tf', dest])).trim().split('\n');
    const index = JSON.parse(await sh('tar', ['-xOf', dest, 'index.json'])) as Index;
    const arm = JSON.parse(await sh('skopeo', ['inspect', '--override-arch', 'arm64', '--override-variant', 'v8', `oci-archive:${dest}:latest`]));
    expect(arm).toMatchObject({ Digest: index.manifests[0].digest, Architecture: 'arm64', Layers: arm64.layers.map((l) => l.digest) });

    expect(index.manifests.map((m) => m.annotations)).toEqual([
      { 'io.containerd.image.name': '127.0.0.1:5000/team/app:2', 'org.opencontainers.image.ref.name': '2' },
      { 'io.containerd.image.name': 'docker.io/library/app:latest', 'org.opencontainers.image.ref.name': 'latest' },
    ]);
    expect(new Set(index.manifests.map((m) => m.digest)).size).toBe(1);
    expect(listing).toContain(`blobs/sha256/${index.manifests[0].digest.slice(7)}`);
    // Each blob once, even when referenced twice.
    expect(listing.length).toBe(new Set(listing).size);
  });

  it('exports a tar docker load accepts', async () => {
    const written = await writeImage(store, { config: appConfig(amd64), layers: amd64.layers });
    const dest = path.join(tmp, 'app-docker.tar');
    await exportDockerTar(store, { manifest: written.manifest }, { dest, names: ['docker.io/library/app:1', '127.0.0.1:5000/x:dev'] });

    const inspected = JSON.parse(await sh('skopeo', ['inspect', `docker-archive:${dest}`]));
    expect(inspected).toMatchObject({ Architecture: 'amd64', Os: 'linux', Labels: { 'org.example': 'yes' } });
    // skopeo finds the image by each of its RepoTags.
    for (const tag of ['app:1', '127.0.0.1:5000/x:dev']) {
      expect(JSON.parse(await sh('skopeo', ['inspect', `docker-archive:${dest}:${tag}`])).Architecture).toBe('amd64');
    }
    const config = JSON.parse(await sh('skopeo', ['inspect', '--config', `docker-archive:${dest}`]));
    expect(config.config.Cmd).toEqual(['echo', 'hello']);
    expect(config.rootfs.diff_ids).toEqual(amd64.layers.map((l) => l.diffID));

    const manifestJSON = JSON.parse(await sh('tar', ['-xOf', dest, 'manifest.json']));
    expect(manifestJSON).toEqual([
      {
        Config: `blobs/sha256/${written.config.digest.slice(7)}`,
        RepoTags: ['app:1', '127.0.0.1:5000/x:dev'],
        Layers: amd64.layers.map((l) => `blobs/sha256/${l.digest.slice(7)}`),
      },
    ]);
    const repositories = JSON.parse(await sh('tar', ['-xOf', dest, 'repositories']));
    expect(repositories).toEqual({ app: { '1': written.config.digest.slice(7) }, '127.0.0.1:5000/x': { dev: written.config.digest.slice(7) } });
    // It is an OCI layout as well, as BuildKit's docker exporter writes.
    const viaOCI = JSON.parse(await sh('skopeo', ['inspect', `oci-archive:${dest}:1`]));
    expect(viaOCI.Digest).toBe(written.manifest.digest);
  });

  it('writes nothing at dest when a blob is missing', async () => {
    const missing = { digest: `sha256:${'0'.repeat(64)}` as Digest, size: 3, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffID: `sha256:${'1'.repeat(64)}` as Digest };
    const written = await writeImage(store, { config: appConfig(amd64), layers: [missing] });
    const dest = path.join(tmp, 'broken.tar');
    await expect(exportOCITar(store, [{ manifest: written.manifest }], { dest, names: [] })).rejects.toMatchObject({ code: 'BLOB_NOT_FOUND' });
    expect((await fs.readdir(tmp)).filter((f) => f.includes('broken'))).toEqual([]);
  });
});
