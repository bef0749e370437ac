// The push half of the registry client against real docker-registry instances: chunked uploads,
// blob-exists checks, cross-repository mounts, Bearer token auth from a token server written here, and
// imagetools create/inspect. Results are read back with skopeo, which verifies every digest.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createSign, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { ContentStore } from '../../src/content/store.js';
import { writeImage } from '../../src/exporter/image.js';
import type { Descriptor } from '../../src/image/types.js';
import { RegistryClient } from '../../src/registry/client.js';
import { pushImage } from '../../src/registry/push.js';
import { imagetoolsCreate, imagetoolsInspect } from '../../src/registry/imagetools.js';
import { parseReference } from '../../src/registry/reference.js';
import { cuttingProxy, freePort, startRegistry, type TestRegistry } from '../helpers/registry.js';

const exec = promisify(execFile);
const registry = inject('registry');

/** An image with one random (incompressible) 300 KiB "layer" and a config for the platform. */
async function makeImage(store: ContentStore, architecture = 'amd64'): Promise<{ manifest: Descriptor; layer: Buffer }> {
  // Real gzip (skopeo would compress a plain tar on copy), of random bytes so it stays large.
  const layer = gzipSync(randomBytes(300 * 1024));
  const blob = await store.write(layer);
  const written = await writeImage(store, {
    config: { architecture, os: 'linux', config: {} },
    layers: [{ digest: blob.digest, size: blob.size, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffID: blob.digest }],
  });
  return { manifest: written.manifest, layer };
}

async function skopeoLayer(ref: string, creds?: string): Promise<Buffer> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'push-read-'));
  await exec('skopeo', ['copy', '-q', '--src-tls-verify=false', ...(creds ? ['--src-creds', creds] : []), `docker://${ref}`, `oci:${dir}:x`]);
  try {
    const index = JSON.parse(await fs.readFile(path.join(dir, 'index.json'), 'utf8'));
    const manifest = JSON.parse(await fs.readFile(path.join(dir, 'blobs/sha256', index.manifests[0].digest.slice(7)), 'utf8'));
    return await fs.readFile(path.join(dir, 'blobs/sha256', manifest.layers[0].digest.slice(7)));
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

describe('pushImage', () => {
  let tmp: string;
  let store: ContentStore;
  beforeAll(async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'push-test-'));
    store = new ContentStore(path.join(tmp, 'content'));
  });
  afterAll(() => fs.rm(tmp, { recursive: true, force: true }));

  it('uploads in chunks, skips blobs the registry has, mounts across repositories', async () => {
    const client = new RegistryClient();
    const { manifest, layer } = await makeImage(store);
    const events: string[] = [];
    const onBlob = (d: Descriptor, how: string) => events.push(`${d.size > 1000 ? 'layer' : 'config'}:${how}`);
    const a = parseReference(`${registry}/chunked/a:1`);
    await pushImage(client, store, manifest, [a], { chunkSize: 64 * 1024, onBlob });
    expect(events.sort()).toEqual(['config:uploaded', 'layer:uploaded']);
    expect((await skopeoLayer(a.toString())).equals(layer)).toBe(true);

    events.length = 0;
    await pushImage(client, store, manifest, [parseReference(`${registry}/chunked/a:2`)], { onBlob });
    expect(events.sort()).toEqual(['config:exists', 'layer:exists']);

    events.length = 0;
    const b = parseReference(`${registry}/chunked/b:1`);
    await pushImage(client, store, manifest, [b], { mountFrom: [a], onBlob });
    expect(events.sort()).toEqual(['config:mounted', 'layer:mounted']);
    expect((await skopeoLayer(b.toString())).equals(layer)).toBe(true);
  });

  it('fails on one line when every upload is cut, and a rerun completes the push', async () => {
    const proxy = await cuttingProxy(registry, 100_000, Infinity);
    try {
      const { manifest, layer } = await makeImage(store);
      const ref = parseReference(`${proxy.host}/faults/app:1`);
      const err = await pushImage(new RegistryClient({ retries: 1 }), store, manifest, [ref]).then(() => null, (e: Error & { code?: string }) => e);
      expect(err?.code).toBe('REGISTRY_UNREACHABLE');
      expect(err?.message).toMatch(new RegExp(`^${proxy.host}/faults/app:1: cannot reach registry ${proxy.host}: [^\\n]+$`));
      expect(proxy.cuts()).toBeGreaterThan(1);
      proxy.setRemaining(0);
      await pushImage(new RegistryClient({ retries: 1 }), store, manifest, [ref]);
      expect((await skopeoLayer(`${registry}/faults/app:1`)).equals(layer)).toBe(true);
    } finally {
      await proxy.close();
    }
  });

  it('joins per-platform images into one index with imagetools create, and inspects it', async () => {
    const client = new RegistryClient();
    const amd = await makeImage(store, 'amd64');
    const arm = await makeImage(store, 'arm64');
    await pushImage(client, store, amd.manifest, [parseReference(`${registry}/tools/app:amd64`)]);
    await pushImage(client, store, arm.manifest, [parseReference(`${registry}/tools/app:arm64`)]);
    const scratch = new ContentStore(path.join(tmp, 'scratch'));
    const out = await imagetoolsCreate(client, scratch,
      [parseReference(`${registry}/tools/app:amd64`), parseReference(`${registry}/tools/app:arm64`)],
      [parseReference(`${registry}/tools/joined:1`)]);
    expect(out).toMatch(/^sha256:[0-9a-f]{64}\n$/);
    const raw = JSON.parse((await exec('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${registry}/tools/joined:1`])).stdout);
    expect(raw.mediaType).toBe('application/vnd.oci.image.index.v1+json');
    expect(raw.manifests.map((m: Descriptor) => m.platform!.architecture)).toEqual(['amd64', 'arm64']);
    expect(raw.manifests[1].digest).toBe(arm.manifest.digest);
    const text = await imagetoolsInspect(client, parseReference(`${registry}/tools/joined:1`));
    expect(text).toContain(`Digest:    ${out.trim()}`);
    expect(text).toContain('Platform:    linux/arm64');
  });
});

/** A JWT signed RS256 with the key, carrying its certificate in x5c (which the registry checks against its bundle). */
function jwt(key: string, certDer: Buffer, claims: object): string {
  const b64 = (o: object | Buffer) => (Buffer.isBuffer(o) ? o : Buffer.from(JSON.stringify(o))).toString('base64url');
  const head = b64({ alg: 'RS256', typ: 'JWT', x5c: [certDer.toString('base64')] });
  const body = b64(claims);
  const sig = createSign('RSA-SHA256').update(`${head}.${body}`).sign(key);
  return `${head}.${body}.${sig.toString('base64url')}`;
}

describe('Bearer token auth', () => {
  let reg: TestRegistry;
  let server: http.Server;
  const scopes: string[] = [];
  let dir: string;

  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'token-auth-'));
    await exec('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${dir}/key.pem`, '-out', `${dir}/cert.pem`,
      '-days', '2', '-subj', '/CN=token-test']);
    const key = await fs.readFile(`${dir}/key.pem`, 'utf8');
    const pem = await fs.readFile(`${dir}/cert.pem`, 'utf8');
    const der = Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
    const port = await freePort();
    server = http.createServer((req, res) => {
      const url = new URL(req.url!, 'http://x');
      const auth = req.headers.authorization;
      if (auth !== `Basic ${Buffer.from('bob:hunter2').toString('base64')}`) {
        res.writeHead(401).end('{"details":"wrong credentials"}');
        return;
      }
      const access = url.searchParams.getAll('scope').map((s) => {
        scopes.push(s);
        const [type, name, actions] = s.split(':');
        return { type, name, actions: actions.split(',') };
      });
      const now = Math.floor(Date.now() / 1000);
      const token = jwt(key, der, { iss: 'test-issuer', sub: 'bob', aud: 'test-registry', exp: now + 300, nbf: now - 10, iat: now, jti: randomBytes(8).toString('hex'), access });
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token, expires_in: 300 }));
    });
    await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
    reg = await startRegistry({ token: { realm: `http://127.0.0.1:${port}/token`, service: 'test-registry', issuer: 'test-issuer', certFile: `${dir}/cert.pem` } });
  });
  afterAll(async () => {
    await reg?.stop();
    server?.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('gets a push token with the user\'s credentials and pushes; wrong credentials fail naming the registry', async () => {
    const store = new ContentStore(path.join(dir, 'content'));
    const { manifest, layer } = await makeImage(store);
    const ref = parseReference(`${reg.host}/secure/app:1`);
    const client = new RegistryClient({ credentials: () => ({ username: 'bob', password: 'hunter2' }) });
    await pushImage(client, store, manifest, [ref]);
    expect(scopes).toContain('repository:secure/app:pull,push');
    expect((await skopeoLayer(ref.toString(), 'bob:hunter2')).equals(layer)).toBe(true);

    const wrong = new RegistryClient({ credentials: () => ({ username: 'bob', password: 'nope' }) });
    const err = await pushImage(wrong, store, manifest, [parseReference(`${reg.host}/secure/app:2`)]).then(() => null, (e: Error) => e);
    expect(err?.message).toMatch(new RegExp(`push access denied by registry ${reg.host}: .*401`));
  });
});
