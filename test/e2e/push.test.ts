// Pushing built images to real registries (Debian's docker-registry), read back with skopeo and umoci:
// several tags, basic auth with credentials from a docker config, wrong credentials, a connection cut in
// the middle of an upload.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs/promises';
import path from 'node:path';
import { lastLine, makeContext, runCli, tempDir } from '../helpers/cli.js';
import { cuttingProxy, startRegistry, type TestRegistry } from '../helpers/registry.js';

const exec = promisify(execFile);
const registry = inject('registry');
const base = `${registry}/busybox:1.35`;

const dockerfile = `ARG BASE
FROM \${BASE}
COPY hello.txt /hello.txt
RUN echo built > /built.txt
`;

async function skopeoInspect(ref: string, extra: string[] = []): Promise<any> {
  return JSON.parse((await exec('skopeo', ['inspect', '--tls-verify=false', ...extra, `docker://${ref}`])).stdout);
}

/** Copies a pushed image into an OCI layout with skopeo and unpacks it with umoci; returns the rootfs. */
async function pullAndUnpack(ref: string, creds?: string): Promise<string> {
  const dir = await tempDir('builder-pull-');
  await exec('skopeo', ['copy', '-q', '--src-tls-verify=false', ...(creds ? ['--src-creds', creds] : []), `docker://${ref}`, `oci:${dir}/layout:x`]);
  await exec('umoci', ['unpack', '--image', `${dir}/layout:x`, `${dir}/bundle`]);
  return path.join(dir, 'bundle', 'rootfs');
}

describe('push to a registry', () => {
  let ctx: string;
  beforeAll(async () => {
    ctx = await makeContext({ Dockerfile: dockerfile, 'hello.txt': 'hello\n' });
  });

  it('pushes one image under several tags with type=image,push=true; skopeo and umoci read it back', async () => {
    const root = await tempDir('builder-root-');
    const out = await tempDir('builder-out-');
    const r = await runCli(['build', '--root', root, '--progress', 'plain', '--build-arg', `BASE=${base}`,
      '--output', `type=image,name=${registry}/pushed/app:1,name=${registry}/pushed/app:latest,push=true`,
      '--metadata-file', `${out}/meta.json`, '--iidfile', `${out}/iid`, ctx]);
    expect(r.code, r.stderr).toBe(0);
    const a = await skopeoInspect(`${registry}/pushed/app:1`, ['--raw']);
    const b = await skopeoInspect(`${registry}/pushed/app:latest`, ['--raw']);
    expect(b).toEqual(a);
    // As buildx: the default provenance makes it an OCI index of the image and its attestation manifest
    // (attestations switch the image to OCI types, as BuildKit's exporter).
    expect(a.mediaType).toBe('application/vnd.oci.image.index.v1+json');
    expect(a.manifests.map((m: any) => `${m.platform.os}/${m.platform.architecture}`)).toEqual([`linux/${a.manifests[0].platform.architecture}`, 'unknown/unknown']);
    const image = await skopeoInspect(`${registry}/pushed/app@${a.manifests[0].digest}`, ['--raw']);
    expect(image.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
    const meta = JSON.parse(await fs.readFile(`${out}/meta.json`, 'utf8'));
    const digest = (await exec('skopeo', ['inspect', '--tls-verify=false', '--format', '{{.Digest}}', `docker://${registry}/pushed/app:1`])).stdout.trim();
    expect(meta['containerimage.digest']).toBe(digest);
    expect(meta['containerimage.descriptor'].digest).toBe(digest);
    expect(meta['containerimage.config.digest']).toBe(image.config.digest);
    expect(meta['image.name']).toBe(`${registry}/pushed/app:1,${registry}/pushed/app:latest`);
    expect(await fs.readFile(`${out}/iid`, 'utf8')).toBe(digest);
    const rootfs = await pullAndUnpack(`${registry}/pushed/app:1`);
    expect(await fs.readFile(path.join(rootfs, 'hello.txt'), 'utf8')).toBe('hello\n');
    expect(await fs.readFile(path.join(rootfs, 'built.txt'), 'utf8')).toBe('built\n');
  });

  it('--push pushes the -t tags; type=registry too, with OCI media types when asked', async () => {
    const root = await tempDir('builder-root-');
    const r = await runCli(['build', '--root', root, '--progress', 'plain', '--build-arg', `BASE=${base}`,
      '-t', `${registry}/pushed/flag:1`, '--push', ctx]);
    expect(r.code, r.stderr).toBe(0);
    expect((await skopeoInspect(`${registry}/pushed/flag:1`)).Layers.length).toBe(3);
    // Docker schema2 unless oci-mediatypes=true, as BuildKit's image exporter (without attestations).
    const r1 = await runCli(['build', '--root', root, '--progress', 'plain', '--build-arg', `BASE=${base}`, '--provenance=false',
      '--output', `type=registry,name=${registry}/pushed/reg:0`, ctx]);
    expect(r1.code, r1.stderr).toBe(0);
    expect((await skopeoInspect(`${registry}/pushed/reg:0`, ['--raw'])).mediaType).toBe('application/vnd.docker.distribution.manifest.v2+json');
    const r2 = await runCli(['build', '--root', root, '--progress', 'plain', '--build-arg', `BASE=${base}`, '--provenance=false',
      '--annotation', 'org.opencontainers.image.title=demo',
      '--output', `type=registry,name=${registry}/pushed/reg:1,oci-mediatypes=true`, ctx]);
    expect(r2.code, r2.stderr).toBe(0);
    const raw = await skopeoInspect(`${registry}/pushed/reg:1`, ['--raw']);
    expect(raw.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
    expect(raw.annotations).toEqual({ 'org.opencontainers.image.title': 'demo' });
  });

  it('pushes several platforms as one manifest list, each platform\'s image under it', async () => {
    const root = await tempDir('builder-root-');
    const copyOnly = await makeContext({ Dockerfile: `FROM ${base}\nCOPY hello.txt /hello.txt\n`, 'hello.txt': 'hello\n' });
    const r = await runCli(['build', '--root', root, '--progress', 'plain', '--platform', 'linux/amd64,linux/arm64',
      '-t', `${registry}/pushed/multi:1`, '--push', copyOnly]);
    expect(r.code, r.stderr).toBe(0);
    const raw = await skopeoInspect(`${registry}/pushed/multi:1`, ['--raw']);
    // An OCI index: the default provenance adds an attestation manifest per platform (as buildx).
    expect(raw.mediaType).toBe('application/vnd.oci.image.index.v1+json');
    expect(raw.manifests.map((m: any) => `${m.platform.os}/${m.platform.architecture}`)).toEqual(['linux/amd64', 'linux/arm64', 'unknown/unknown', 'unknown/unknown']);
    const arm = await skopeoInspect(`${registry}/pushed/multi:1`, ['--override-arch', 'arm64', '--config']);
    expect(arm.architecture).toBe('arm64');
  });

  it('imagetools inspect shows an index\'s platforms and a manifest\'s layers; --raw the JSON', async () => {
    const idx = await runCli(['imagetools', 'inspect', base]);
    expect(idx.code, idx.stderr).toBe(0);
    expect(idx.stdout).toMatch(/MediaType: application\/vnd\.oci\.image\.index\.v1\+json/);
    expect(idx.stdout).toContain('Platform:    linux/amd64');
    expect(idx.stdout).toContain('Platform:    linux/arm64');
    const raw = await runCli(['imagetools', 'inspect', '--raw', base]);
    const skopeoRaw = (await exec('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${base}`])).stdout;
    expect(JSON.parse(raw.stdout)).toEqual(JSON.parse(skopeoRaw));
    const missing = await runCli(['imagetools', 'inspect', `${registry}/nothing/here:1`]);
    expect(missing.code).toBe(1);
    expect(lastLine(missing.stderr)).toBe(`ERROR: ${registry}/nothing/here:1: not found`);
  });

  describe('with basic auth', () => {
    let reg: TestRegistry;
    let dockerConfig: string;
    beforeAll(async () => {
      reg = await startRegistry({ htpasswd: { username: 'alice', password: 's3cret' } });
      dockerConfig = await tempDir('builder-dockercfg-');
    });
    afterAll(async () => reg?.stop());

    it('logs in (writing the docker config), pushes with those credentials, logs out', async () => {
      const env = { DOCKER_CONFIG: dockerConfig };
      const login = await runCli(['login', reg.host, '-u', 'alice', '-p', 's3cret'], { env });
      expect(login.code, login.stderr).toBe(0);
      const cfg = JSON.parse(await fs.readFile(path.join(dockerConfig, 'config.json'), 'utf8'));
      expect(Buffer.from(cfg.auths[reg.host].auth, 'base64').toString()).toBe('alice:s3cret');
      const root = await tempDir('builder-root-');
      const r = await runCli(['build', '--root', root, '--progress', 'plain', '--build-arg', `BASE=${base}`,
        '--output', `type=image,name=${reg.host}/private/app:1,push=true`, ctx], { env });
      expect(r.code, r.stderr).toBe(0);
      const rootfs = await pullAndUnpack(`${reg.host}/private/app:1`, 'alice:s3cret');
      expect(await fs.readFile(path.join(rootfs, 'built.txt'), 'utf8')).toBe('built\n');
      const logout = await runCli(['logout', reg.host], { env });
      expect(logout.code, logout.stderr).toBe(0);
      expect(JSON.parse(await fs.readFile(path.join(dockerConfig, 'config.json'), 'utf8')).auths[reg.host]).toBeUndefined();
    });

    it('refuses a wrong password at login and at push, naming the registry and the 401', async () => {
      const env = { DOCKER_CONFIG: await tempDir('builder-dockercfg-') };
      const login = await runCli(['login', reg.host, '-u', 'alice', '-p', 'wrong'], { env });
      expect(login.code).toBe(1);
      expect(lastLine(login.stderr)).toMatch(new RegExp(`^ERROR: login to registry ${reg.host} failed: 401`));
      await fs.writeFile(path.join(env.DOCKER_CONFIG, 'config.json'), JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from('alice:wrong').toString('base64') } } }));
      const root = await tempDir('builder-root-');
      const r = await runCli(['build', '--root', root, '--progress', 'plain', '--build-arg', `BASE=${base}`,
        '--output', `type=image,name=${reg.host}/private/app:2,push=true`, ctx], { env });
      expect(r.code).toBe(1);
      const line = lastLine(r.stderr);
      expect(line).toMatch(/^ERROR: /);
      expect(line).toContain(`registry ${reg.host}`);
      expect(line).toContain('401');
      expect(r.stderr).not.toMatch(/\n\s+at /);
    });
  });

  it('retries an upload whose connection is cut in the middle', async () => {
    const reg = await startRegistry();
    const proxy = await cuttingProxy(reg.host, 200_000, 1);
    const host = proxy.host;
    try {
      const big = await makeContext({ Dockerfile: 'FROM scratch\nCOPY big.bin /big.bin\n' });
      // Incompressible, so the layer blob is large enough to be cut.
      await fs.writeFile(path.join(big, 'big.bin'), (await import('node:crypto')).randomBytes(1 << 20));
      const root = await tempDir('builder-root-');
      const r = await runCli(['build', '--root', root, '--progress', 'plain',
        '--output', `type=image,name=${host}/cut/app:1,push=true`, big]);
      expect(r.code, r.stderr).toBe(0);
      expect(proxy.cuts()).toBe(1);
      const rootfs = await pullAndUnpack(`${reg.host}/cut/app:1`);
      expect((await fs.stat(path.join(rootfs, 'big.bin'))).size).toBe(1 << 20);
    } finally {
      await proxy.close();
      await reg.stop();
    }
  });
});
