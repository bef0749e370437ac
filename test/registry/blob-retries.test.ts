// A registry connection cut in the middle of a layer's body (F5 of issue 17): the pull asks again from
// where it stopped (Range) with backoff, up to a bound, and then fails with one line saying what was cut.
// A TCP proxy in front of the test registry does the cutting; builds go through the CLI. Small HTTP servers
// play registries whose ranges are wrong, and ones that answer 5xx/429 for a while (retried before this
// change too: kept here so the bound stays the same for bodies and answers).
import { describe, it, expect, inject, afterEach } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { ContentStore } from '../../src/content/store.js';
import type { Digest } from '../../solver/llb/ops.js';
import { RegistryClient } from '../../src/registry/client.js';
import { parseReference } from '../../src/registry/reference.js';
import { lastLine, makeContext, runCli, tempDir } from '../helpers/cli.js';
import { bodyCuttingProxy, type BodyCuttingProxy } from '../helpers/registry.js';

const registry = inject('registry');

describe('blob downloads cut part way', () => {
  let proxy: BodyCuttingProxy | undefined;
  afterEach(async () => { await proxy?.close(); proxy = undefined; });

  async function build(host: string, root?: string) {
    const ctx = await makeContext({ Dockerfile: `FROM ${host}/busybox:1.35\n` });
    root ??= await tempDir('builder-root-');
    const out = await tempDir('builder-out-');
    const r = await runCli(['build', '--root', root, '--progress', 'plain', '-o', `type=local,dest=${out}`, ctx]);
    return { ...r, out, root };
  }

  it('resumes with a Range request after each cut and verifies the whole layer', async () => {
    // The busybox layer is about 0.9 MB: two cuts at 300 kB leave it resumed twice.
    proxy = await bodyCuttingProxy(registry, 300_000, 2);
    const r = await build(proxy.host);
    expect(r.code, r.stderr).toBe(0);
    expect(proxy.cuts()).toBe(2);
    const resumed = proxy.blobRanges().filter((h): h is string => h !== undefined);
    expect(resumed.length).toBeGreaterThanOrEqual(2);
    for (const h of resumed) expect(h).toMatch(/^bytes=[1-9]\d*-$/);
    // The registry answered them with the rest, not the whole blob again.
    expect(proxy.blobStatuses().filter((s) => s === 206).length).toBeGreaterThanOrEqual(2);
    expect((await fs.stat(path.join(r.out, 'bin/busybox'))).isFile()).toBe(true);
  });

  it('starts over when the registry answers a Range request with the whole blob', async () => {
    proxy = await bodyCuttingProxy(registry, 300_000, 1, { stripRange: true });
    const r = await build(proxy.host);
    expect(r.code, r.stderr).toBe(0);
    expect(proxy.cuts()).toBe(1);
    expect(proxy.blobRanges().some((h) => h !== undefined)).toBe(true);
    expect(proxy.blobStatuses()).not.toContain(206);
    expect((await fs.stat(path.join(r.out, 'bin/busybox'))).isFile()).toBe(true);
  });

  it('gives up after the bound with one line naming the blob, the host and how far it got', async () => {
    // Every blob response is cut at 100 kB: five attempts get about half the layer.
    proxy = await bodyCuttingProxy(registry, 100_000, Infinity);
    const r = await build(proxy.host);
    expect(r.code).toBe(1);
    expect(lastLine(r.stderr)).toMatch(new RegExp(
      `^ERROR: .*FROM failed: pulling blob sha256:[0-9a-f]{64} from ${proxy.host.replace(/\./g, '\\.')}: connection cut after [\\d.]+ kB of [\\d.]+ [kM]B \\(5 attempts\\)$`));
    expect(r.stderr).not.toMatch(/\n\s+at /);
    // What the cut downloads left in the state does not spoil the next pull of the same blob.
    const again = await build(registry, r.root);
    expect(again.code, again.stderr).toBe(0);
    expect((await fs.stat(path.join(again.out, 'bin/busybox'))).isFile()).toBe(true);
  });

  it('fetches a config again whose body was cut (documents are read whole into memory)', async () => {
    // 300 bytes into the config's JSON.
    proxy = await bodyCuttingProxy(registry, 300, 1);
    const img = await new RegistryClient({}).resolve(parseReference(`${proxy.host}/busybox:1.35`), { os: 'linux', architecture: 'amd64' });
    expect(proxy.cuts()).toBe(1);
    expect(img.config.rootfs?.diff_ids?.length).toBe(1);
  });
});

describe('what a resumed download accepts', () => {
  const blob = randomBytes(200_000);
  const digest = `sha256:${createHash('sha256').update(blob).digest('hex')}` as Digest;
  const desc = { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest, size: blob.length };

  /**
   * A registry whose first blob response is cut after 50 kB; later ones are what `answer` makes of the
   * request's Range header. Records the Range of every blob request.
   */
  async function serve(answer: (range: string | undefined, res: http.ServerResponse) => void) {
    const ranges: (string | undefined)[] = [];
    const server = http.createServer((req, res) => {
      if (!req.url?.includes('/blobs/')) return void res.writeHead(200).end('{}');
      ranges.push(req.headers.range);
      if (ranges.length === 1) {
        res.writeHead(200, { 'content-length': String(blob.length) });
        res.write(blob.subarray(0, 50_000), () => res.socket?.destroy());
        return;
      }
      answer(req.headers.range, res);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
    const store = new ContentStore(await tempDir('builder-content-'));
    const pull = () => new RegistryClient({ registries: { [host]: { http: true } } }).fetchBlob(parseReference(`${host}/app:1`), desc, store);
    return { ranges, store, pull, close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }) };
  }

  it('a 206 whose Content-Range starts elsewhere is not appended: the blob is fetched again whole', async () => {
    const s = await serve((range, res) => {
      if (range) {
        // Claims the range asked for but sends the blob from its start.
        res.writeHead(206, { 'content-range': `bytes 0-${blob.length - 1}/${blob.length}`, 'content-length': String(blob.length) }).end(blob);
      } else {
        res.writeHead(200, { 'content-length': String(blob.length) }).end(blob);
      }
    });
    try {
      await s.pull();
      expect(s.ranges).toEqual([undefined, 'bytes=50000-', undefined]);
      expect(await s.store.verify(digest)).toBe(true);
    } finally {
      await s.close();
    }
  });

  it('the digest is checked over the whole resumed blob: wrong bytes in the rest start it over whole', async () => {
    const s = await serve((range, res) => {
      if (!range) return void res.writeHead(200, { 'content-length': String(blob.length) }).end(blob);
      const rest = Buffer.from(blob.subarray(50_000));
      rest[1000] ^= 1;
      res.writeHead(206, { 'content-range': `bytes 50000-${blob.length - 1}/${blob.length}`, 'content-length': String(rest.length) }).end(rest);
    });
    try {
      await s.pull();
      expect(s.ranges).toEqual([undefined, 'bytes=50000-', undefined]);
      expect(await s.store.verify(digest)).toBe(true);
    } finally {
      await s.close();
    }
  });

  it('a registry whose whole blob is wrong fails the pull with the digest mismatch, not a retry', async () => {
    const s = await serve((range, res) => {
      const wrong = Buffer.from(blob);
      wrong[60_000] ^= 1;
      if (!range) return void res.writeHead(200, { 'content-length': String(wrong.length) }).end(wrong);
      res.writeHead(206, { 'content-range': `bytes 50000-${blob.length - 1}/${blob.length}`, 'content-length': String(wrong.length - 50_000) }).end(wrong.subarray(50_000));
    });
    try {
      await expect(s.pull()).rejects.toThrow(/app@sha256:[0-9a-f]{64}: unexpected commit digest/);
      expect(s.ranges).toEqual([undefined, 'bytes=50000-', undefined]);
      expect(await s.store.has(digest)).toBe(false);
    } finally {
      await s.close();
    }
  });
});

describe('transient answers to pull requests', () => {
  const blob = randomBytes(20_000);
  const digest = `sha256:${createHash('sha256').update(blob).digest('hex')}` as Digest;
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest, size: blob.length }, layers: [],
  }));

  /** A registry answering each path's first requests with `failures` (statuses, in turn), then properly. */
  async function serve(failures: number[]) {
    const seen = new Map<string, number>();
    const server = http.createServer((req, res) => {
      const path = new URL(req.url!, 'http://x').pathname;
      const n = seen.get(path) ?? 0;
      seen.set(path, n + 1);
      if (path === '/v2/') return void res.writeHead(200).end('{}');
      if (n < failures.length) return void res.writeHead(failures[n], { 'retry-after': '0' }).end('{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}');
      if (path.includes('/manifests/')) return void res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' }).end(manifest);
      res.writeHead(200, { 'content-length': String(blob.length) }).end(blob);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
    const client = new RegistryClient({ registries: { [host]: { http: true } } });
    const ref = parseReference(`${host}/app:1`);
    return { seen, client, ref, close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }) };
  }

  it('5xx and 429 on manifest and blob GETs are retried', async () => {
    const s = await serve([503, 429, 502]);
    try {
      const m = await s.client.getManifest(s.ref);
      expect(m.bytes.equals(manifest)).toBe(true);
      const store = new ContentStore(await tempDir('builder-content-'));
      await s.client.fetchBlob(s.ref, { mediaType: 'application/octet-stream', digest, size: blob.length }, store);
      expect(await store.verify(digest)).toBe(true);
      expect(s.seen.get('/v2/app/manifests/1')).toBe(4);
      expect(s.seen.get(`/v2/app/blobs/${digest}`)).toBe(4);
    } finally {
      await s.close();
    }
  });

  it('a registry that keeps answering 503 fails the pull after 5 attempts with its message', async () => {
    const s = await serve(Array(10).fill(503));
    try {
      await expect(s.client.getManifest(s.ref)).rejects.toThrow(/^.*app:1: GET manifests\/1: 503 Service Unavailable: try later$/);
      expect(s.seen.get('/v2/app/manifests/1')).toBe(5);
    } finally {
      await s.close();
    }
  });
});
