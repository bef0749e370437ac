// Pulls from a real docker-registry holding the busybox fixture (pushed with skopeo by the global setup).
import fs from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { ContentStore } from '../../src/content/store.js';
import type { Descriptor, Index } from '../../src/image/types.js';
import { RegistryClient } from '../../src/registry/client.js';
import { parseReference } from '../../src/registry/reference.js';
import { busyboxLayout, busyboxPath, busyboxTag } from '../helpers/fixtures.js';
import { freePort, pushBusybox, pushLayout, startRegistry, type TestRegistry } from '../helpers/registry.js';

const amd64 = { os: 'linux', architecture: 'amd64' };
const arm64 = { os: 'linux', architecture: 'arm64', variant: 'v8' };

async function readLayoutJSON<T>(digest: string): Promise<T> {
  return JSON.parse(await fs.readFile(path.join(busyboxLayout, 'blobs/sha256', digest.slice(7)), 'utf8')) as T;
}

/** The fixture's own digests, read from the layout skopeo pushed. */
async function fixtureDigests(): Promise<{ index: string; amd64: Descriptor; arm64: Descriptor }> {
  const top = JSON.parse(await fs.readFile(path.join(busyboxLayout, 'index.json'), 'utf8')) as Index;
  const index = top.manifests[0].digest;
  const { manifests } = await readLayoutJSON<Index>(index);
  return {
    index,
    amd64: manifests.find((m) => m.platform?.architecture === 'amd64')!,
    arm64: manifests.find((m) => m.platform?.architecture === 'arm64')!,
  };
}

async function errorOf(p: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await p;
  } catch (e) {
    return e as Error & { code?: string };
  }
  throw new Error('expected a rejection');
}

const sha256File = async (file: string) => `sha256:${createHash('sha256').update(await fs.readFile(file)).digest('hex')}`;

describe('RegistryClient', () => {
  const host = inject('registry');
  const client = new RegistryClient({});
  let tmp: string;
  let store: ContentStore;

  beforeAll(async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'registry-test-'));
    store = new ContentStore(path.join(tmp, 'content'));
  });
  afterAll(async () => {
    await fs.rm(tmp, { recursive: true, force: true });
  });

  it('resolves a multi-platform tag for amd64 and pins it with the index digest', async () => {
    const fx = await fixtureDigests();
    const ref = parseReference(`${host}/busybox:${busyboxTag}`);
    const img = await client.resolve(ref, amd64);
    expect(img.ref.toString()).toBe(`${host}/busybox:${busyboxTag}@${fx.index}`);
    expect(img.manifestDigest).toBe(fx.amd64.digest);
    expect(`sha256:${createHash('sha256').update(img.manifestBytes).digest('hex')}`).toBe(fx.amd64.digest);
    expect(img.config).toMatchObject({ os: 'linux', architecture: 'amd64', config: { Env: [busyboxPath], Cmd: ['sh'] } });
    expect(img.config.rootfs?.diff_ids).toHaveLength(1);
    expect(img.layers).toHaveLength(1);
    expect(img.layers[0].mediaType).toBe('application/vnd.oci.image.layer.v1.tar+gzip');
    expect(img.configDescriptor.digest).toBe(img.manifest.config.digest);
    expect(`sha256:${createHash('sha256').update(img.configBytes).digest('hex')}`).toBe(img.configDescriptor.digest);
  });

  it('resolves arm64 with or without the v8 variant to the same manifest', async () => {
    const fx = await fixtureDigests();
    const ref = parseReference(`${host}/busybox:${busyboxTag}`);
    const withVariant = await client.resolve(ref, arm64);
    const without = await client.resolve(ref, { os: 'linux', architecture: 'arm64' });
    expect(withVariant.manifestDigest).toBe(fx.arm64.digest);
    expect(without.manifestDigest).toBe(fx.arm64.digest);
    expect(withVariant.config).toMatchObject({ architecture: 'arm64', variant: 'v8' });
  });

  it('resolves by index digest and by platform manifest digest', async () => {
    const fx = await fixtureDigests();
    const byIndex = await client.resolve(parseReference(`${host}/busybox@${fx.index}`), arm64);
    expect(byIndex.manifestDigest).toBe(fx.arm64.digest);
    expect(byIndex.ref.toString()).toBe(`${host}/busybox@${fx.index}`);
    const byManifest = await client.resolve(parseReference(`${host}/busybox:${busyboxTag}@${fx.amd64.digest}`), amd64);
    expect(byManifest.manifestDigest).toBe(fx.amd64.digest);
    expect(byManifest.ref.digest).toBe(fx.amd64.digest);
  });

  it('fetches layers into the content store, verified, once', async () => {
    const img = await client.resolve(parseReference(`${host}/busybox:${busyboxTag}`), amd64);
    const layer = img.layers[0];
    await Promise.all([client.fetchBlob(img.ref, layer, store), client.fetchBlob(img.ref, layer, store)]);
    expect(await store.stat(layer.digest)).toEqual({ size: layer.size });
    expect(await sha256File(store.blobPath(layer.digest))).toBe(layer.digest);
    const before = await fs.stat(store.blobPath(layer.digest));
    const old = new Date(before.mtimeMs - 60_000);
    await fs.utimes(store.blobPath(layer.digest), old, old);
    await client.fetchBlob(img.ref, layer, store);
    // Not fetched again (a fetch is a new file renamed into place), only marked as used now (GC's grace).
    const after = await fs.stat(store.blobPath(layer.digest));
    expect(after.ino).toBe(before.ino);
    expect(after.mtimeMs).toBeGreaterThan(old.getTime());
  });

  it('rejects a blob that does not match its descriptor and stores nothing', async () => {
    const img = await client.resolve(parseReference(`${host}/busybox:${busyboxTag}`), arm64);
    const other = new ContentStore(path.join(tmp, 'other'));
    const wrongSize = { ...img.layers[0], size: img.layers[0].size - 1 };
    const err = await errorOf(client.fetchBlob(img.ref, wrongSize, other));
    expect(err.code).toBe('DIGEST_MISMATCH');
    expect(err.message).toContain(img.layers[0].digest);
    expect(await other.has(img.layers[0].digest)).toBe(false);
  });

  it('reports an unknown repository or tag as not found', async () => {
    const err = await errorOf(client.resolve(parseReference(`${host}/nope`), amd64));
    expect(err.code).toBe('NOT_FOUND');
    expect(err.message).toBe(`${host}/nope:latest: not found`);
    const tag = await errorOf(client.resolve(parseReference(`${host}/busybox:9.99`), amd64));
    expect(tag.code).toBe('NOT_FOUND');
    expect(tag.message).toBe(`${host}/busybox:9.99: not found`);
  });

  it('reports a platform the index lacks like BuildKit', async () => {
    const err = await errorOf(client.resolve(parseReference(`${host}/busybox:${busyboxTag}`), { os: 'linux', architecture: 's390x' }));
    expect(err.code).toBe('NO_MATCHING_PLATFORM');
    expect(err.message).toContain('no match for platform in manifest: not found');
    expect(err.message).toContain('linux/s390x');
  });

  it('checks the platform of a single-platform image against its config', async () => {
    // skopeo without --all copies just the manifest for the chosen platform.
    await pushLayout(`${busyboxLayout}:${busyboxTag}`, `${host}/busybox-arm64:1`, ['--override-arch', 'arm64', '--override-variant', 'v8']);
    const ref = parseReference(`${host}/busybox-arm64:1`);
    const img = await client.resolve(ref, arm64);
    expect(img.ref.digest).toBe(img.manifestDigest);
    const err = await errorOf(client.resolve(ref, amd64));
    expect(err.code).toBe('NO_MATCHING_PLATFORM');
  });

  it('reports a refused connection on one line', async () => {
    const closed = `127.0.0.1:${await freePort()}`;
    const err = await errorOf(client.resolve(parseReference(`${closed}/busybox`), amd64));
    expect(err.code).toBe('REGISTRY_UNREACHABLE');
    expect(err.message).toBe(`${closed}/busybox:latest: cannot reach registry ${closed}: connect ECONNREFUSED ${closed}`);
    expect(err.message).not.toContain('\n');
  });
});

describe('RegistryClient against tampered registry storage', () => {
  let registry: TestRegistry;
  let tmp: string;
  const client = new RegistryClient({});

  beforeAll(async () => {
    registry = await startRegistry();
    await pushBusybox(registry.host);
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'registry-tamper-'));
  });
  afterAll(async () => {
    await registry?.stop();
    await fs.rm(tmp, { recursive: true, force: true });
  });

  /** Flips bytes of a blob in the registry's filesystem storage, keeping its length. */
  async function tamper(digest: string): Promise<void> {
    const hex = digest.slice(7);
    const file = path.join(registry.dataDir, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
    const data = await fs.readFile(file);
    data[data.length - 1] ^= 0xff;
    await fs.writeFile(file, data);
  }

  it('rejects a layer whose content does not hash to its digest', async () => {
    const ref = parseReference(`${registry.host}/busybox:${busyboxTag}`);
    const img = await client.resolve(ref, amd64);
    await tamper(img.layers[0].digest);
    const store = new ContentStore(path.join(tmp, 'content'));
    const err = await errorOf(client.fetchBlob(img.ref, img.layers[0], store));
    expect(err.code).toBe('DIGEST_MISMATCH');
    expect(await store.has(img.layers[0].digest)).toBe(false);
  });

  it('rejects a config whose content does not hash to its digest', async () => {
    const ref = parseReference(`${registry.host}/busybox:${busyboxTag}`);
    const img = await client.resolve(ref, arm64);
    await tamper(img.configDescriptor.digest);
    const err = await errorOf(new RegistryClient({}).resolve(ref, arm64));
    expect(err.code).toBe('DIGEST_MISMATCH');
    expect(err.message).toContain(img.configDescriptor.digest);
  });
});

describe('RegistryClient bearer token auth', () => {
  // A token-protected front for the real registry: answers 401 with a Bearer challenge unless the request
  // carries the token its realm hands out, then proxies to docker-registry.
  const TOKEN = 'test-token-123';
  let server: http.Server;
  let front: string;
  const tokenRequests: URLSearchParams[] = [];

  beforeAll(async () => {
    const upstream = inject('registry');
    server = http.createServer((req, res) => {
      const url = new URL(req.url!, 'http://x');
      if (url.pathname === '/token') {
        tokenRequests.push(url.searchParams);
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ token: TOKEN, expires_in: 300 }));
        return;
      }
      if (req.headers.authorization !== `Bearer ${TOKEN}`) {
        res.statusCode = 401;
        res.setHeader('www-authenticate', `Bearer realm="http://${front}/token",service="test-registry",scope="repository:busybox:pull"`);
        res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }));
        return;
      }
      const proxied = http.request(`http://${upstream}${req.url}`, { method: req.method, headers: { accept: req.headers.accept ?? '*/*' } }, (up) => {
        res.writeHead(up.statusCode!, up.headers);
        up.pipe(res);
      });
      proxied.end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    front = `127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  it('gets an anonymous token for the repository scope and reuses it', async () => {
    const client = new RegistryClient({});
    const ref = parseReference(`${front}/busybox:${busyboxTag}`);
    const img = await client.resolve(ref, amd64);
    expect(img.config.architecture).toBe('amd64');
    await client.resolve(ref, arm64);
    expect(tokenRequests).toHaveLength(1);
    expect(tokenRequests[0].get('service')).toBe('test-registry');
    expect(tokenRequests[0].get('scope')).toBe('repository:busybox:pull');
  });
});

describe('RegistryClient with a manifest cache', () => {
  // A front for the real registry that records each request and can hide HEAD's digest header.
  let server: http.Server;
  let front: string;
  let hideDigest = false;
  const requests: string[] = [];
  let tmp: string;

  beforeAll(async () => {
    const upstream = inject('registry');
    server = http.createServer((req, res) => {
      requests.push(`${req.method} ${req.url}`);
      const proxied = http.request(`http://${upstream}${req.url}`, { method: req.method, headers: { accept: req.headers.accept ?? '*/*' } }, (up) => {
        const headers = { ...up.headers };
        if (hideDigest && req.method === 'HEAD') delete headers['docker-content-digest'];
        res.writeHead(up.statusCode!, headers);
        up.pipe(res);
      });
      proxied.end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    front = `127.0.0.1:${(server.address() as { port: number }).port}`;
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'registry-cache-'));
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
    await fs.rm(tmp, { recursive: true, force: true });
  });

  it('re-resolves a tag with one HEAD and reads what it already holds from the store', async () => {
    const store = new ContentStore(path.join(tmp, 'a'));
    const ref = parseReference(`${front}/busybox:${busyboxTag}`);
    requests.length = 0;
    const first = await new RegistryClient({ cache: store }).resolve(ref, amd64);
    expect(requests.map((r) => r.split(' ')[0])).toEqual(['HEAD', 'GET', 'GET', 'GET']);
    requests.length = 0;
    const again = await new RegistryClient({ cache: store }).resolve(ref, amd64);
    expect(requests).toEqual([`HEAD /v2/busybox/manifests/${busyboxTag}`]);
    expect(again.ref.toString()).toBe(first.ref.toString());
    expect(again.manifestBytes.equals(first.manifestBytes)).toBe(true);
    expect(again.configBytes.equals(first.configBytes)).toBe(true);
    // Another platform of the same index: only its manifest and config are fetched.
    requests.length = 0;
    await new RegistryClient({ cache: store }).resolve(ref, arm64);
    expect(requests.map((r) => r.split(' ')[0])).toEqual(['HEAD', 'GET', 'GET']);
  });

  it('follows a tag that moved to another image', async () => {
    const store = new ContentStore(path.join(tmp, 'b'));
    const host = inject('registry');
    await pushLayout(`${busyboxLayout}:${busyboxTag}`, `${host}/moving:1`, ['--override-arch', 'arm64', '--override-variant', 'v8']);
    const ref = parseReference(`${front}/moving:1`);
    const before = await new RegistryClient({ cache: store }).resolve(ref, arm64);
    await pushLayout(`${busyboxLayout}:${busyboxTag}`, `${host}/moving:1`, ['--override-arch', 'amd64']);
    const after = await new RegistryClient({ cache: store }).resolve(ref, amd64);
    expect(after.ref.digest).not.toBe(before.ref.digest);
    expect(after.config.architecture).toBe('amd64');
  });

  it('gets the manifest when HEAD names no digest', async () => {
    const store = new ContentStore(path.join(tmp, 'c'));
    const ref = parseReference(`${front}/busybox:${busyboxTag}`);
    await new RegistryClient({ cache: store }).resolve(ref, amd64);
    hideDigest = true;
    try {
      requests.length = 0;
      const img = await new RegistryClient({ cache: store }).resolve(ref, amd64);
      expect(requests).toEqual([`HEAD /v2/busybox/manifests/${busyboxTag}`, `GET /v2/busybox/manifests/${busyboxTag}`]);
      expect(img.config.architecture).toBe('amd64');
    } finally {
      hideDigest = false;
    }
  });
});
