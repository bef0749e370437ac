// One build for three platforms: an OCI index with a manifest per platform, RUN under QEMU for the foreign
// ones, and a stage pinned to $BUILDPLATFORM built once for all of them. Read back with skopeo and umoci.
import { describe, it, expect, inject, beforeAll } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs/promises';
import path from 'node:path';
import { runCli, makeContext, tempDir, lastLine } from '../helpers/cli.js';
import { foldRawJson } from '../helpers/rawjson.js';

const exec = promisify(execFile);
const registry = inject('registry');
const base = `${registry}/busybox:1.35`;

const dockerfile = `
FROM --platform=$BUILDPLATFORM ${base} AS tool
ARG BUILDPLATFORM
RUN echo "tool built on $(uname -m) for all" > /tool && cat /proc/sys/kernel/random/uuid > /once
FROM ${base}
ARG TARGETPLATFORM TARGETOS TARGETARCH TARGETVARIANT
COPY --from=tool /tool /once /
RUN echo "$(uname -m) $TARGETPLATFORM $TARGETOS $TARGETARCH $TARGETVARIANT" > /arch
`;

const platforms = [
  { p: 'linux/amd64', arch: 'amd64', variant: undefined, line: 'x86_64 linux/amd64 linux amd64 ' },
  { p: 'linux/arm64', arch: 'arm64', variant: undefined, line: 'aarch64 linux/arm64 linux arm64 ' },
  { p: 'linux/arm/v7', arch: 'arm', variant: 'v7', line: 'armv7l linux/arm/v7 linux arm v7' },
];

describe('builder build --platform linux/amd64,linux/arm64,linux/arm/v7', () => {
  let out: string;
  let res: Awaited<ReturnType<typeof runCli>>;
  let index: any;
  const onces = new Set<string>();

  beforeAll(async () => {
    const root = await tempDir('builder-root-');
    out = await tempDir('builder-multi-');
    const ctx = await makeContext({ Dockerfile: dockerfile });
    res = await runCli(['build', '--root', root, '--progress', 'plain', '--platform', platforms.map((x) => x.p).join(','),
      '-t', 'multi/app:1', '--output', `type=oci,dest=${out}/img.tar`, ctx]);
    if (res.code === 0) index = JSON.parse((await exec('skopeo', ['inspect', '--raw', `oci-archive:${out}/img.tar`])).stdout);
  });

  it('exports one OCI index with a manifest per platform', () => {
    expect(res.code, res.stderr).toBe(0);
    expect(index.mediaType).toBe('application/vnd.oci.image.index.v1+json');
    const images = index.manifests.filter((m: any) => m.annotations?.['vnd.docker.reference.type'] !== 'attestation-manifest');
    expect(images.map((m: any) => m.platform)).toEqual(platforms.map((x) => ({ os: 'linux', architecture: x.arch, ...(x.variant ? { variant: x.variant } : {}) })));
    // Then, as buildx's default provenance adds them, an attestation manifest for each platform's image.
    const attestations = index.manifests.slice(images.length);
    expect(attestations.map((m: any) => m.annotations['vnd.docker.reference.digest'])).toEqual(images.map((m: any) => m.digest));
    expect(attestations.map((m: any) => m.platform)).toEqual(platforms.map(() => ({ architecture: 'unknown', os: 'unknown' })));
  });

  it('runs the $BUILDPLATFORM stage once, named with its platform', () => {
    // One step number: its header is printed again when its lines resume after another step's (as BuildKit).
    const runs = new Set(res.stderr.split('\n').filter((l) => /^#\d+ \[linux\/amd64 tool 2\/2\] RUN echo "tool built/.test(l)).map((l) => l.split(' ')[0]));
    expect(runs.size).toBe(1);
    expect(res.stderr).toMatch(/#\d+ \[linux\/arm\/v7 stage-1 3\/3\] RUN echo/);
  });

  for (const x of platforms) {
    it(`${x.p}: config and files are that platform's`, async () => {
      const dir = path.join(out, x.p.replace(/\//g, '_'));
      const args = ['--override-os', 'linux', '--override-arch', x.arch, ...(x.variant ? ['--override-variant', x.variant] : [])];
      const config = JSON.parse((await exec('skopeo', [...args, 'inspect', '--config', `oci-archive:${out}/img.tar`])).stdout);
      expect([config.os, config.architecture, config.variant]).toEqual(['linux', x.arch, x.variant]);
      await fs.mkdir(dir, { recursive: true });
      await exec('skopeo', [...args, 'copy', '--quiet', `oci-archive:${out}/img.tar`, `oci:${dir}/layout:img`]);
      await exec('umoci', ['unpack', '--image', `${dir}/layout:img`, `${dir}/bundle`]);
      const rootfs = path.join(dir, 'bundle/rootfs');
      expect(await fs.readFile(path.join(rootfs, 'arch'), 'utf8')).toBe(`${x.line}\n`);
      expect(await fs.readFile(path.join(rootfs, 'tool'), 'utf8')).toBe('tool built on x86_64 for all\n');
      // The tool stage's random output is the same in every platform's image: it ran once.
      onces.add(await fs.readFile(path.join(rootfs, 'once'), 'utf8'));
      expect(onces.size).toBe(1);
    });
  }

  it('each platform runs under docker run --platform (where a docker daemon runs)', async () => {
    const hasDaemon = await exec('docker', ['info']).then(() => true, () => false);
    if (!hasDaemon) return; // No daemon on this machine: the skopeo/umoci checks above stand.
    for (const x of platforms) {
      const args = ['--override-os', 'linux', '--override-arch', x.arch, ...(x.variant ? ['--override-variant', x.variant] : [])];
      const tag = `builder-multi-test:${x.arch}${x.variant ?? ''}`;
      const tar = path.join(out, `${x.arch}${x.variant ?? ''}.docker.tar`);
      await exec('skopeo', [...args, 'copy', '--quiet', `oci-archive:${out}/img.tar`, `docker-archive:${tar}:${tag}`]);
      await exec('docker', ['load', '-i', tar]);
      try {
        const ran = await exec('docker', ['run', '--rm', '--network', 'none', '--platform', x.p, tag, 'cat', '/arch']);
        expect(ran.stdout).toBe(`${x.line}\n`);
      } finally {
        await exec('docker', ['rmi', '-f', tag]).catch(() => undefined);
      }
    }
  });

  it('cross-compilation: the $BUILDPLATFORM stage runs once for two targets (rawjson events)', async () => {
    const root = await tempDir('builder-root-');
    const ctx = await makeContext({ Dockerfile: dockerfile });
    const res = await runCli(['build', '--root', root, '--progress', 'rawjson', '--platform', 'linux/arm64,linux/arm/v7', ctx]);
    expect(res.code, res.stderr).toBe(0);
    const started = foldRawJson(res.stderr).vertices.filter((v) => v.started);
    expect(started.filter((v) => / tool 2\/2\] RUN /.test(v.name!)).map((v) => v.name)).toEqual([expect.stringMatching(/^\[linux\/amd64 tool/)]);
    // Each target runs its own RUN under emulation.
    expect(started.filter((v) => /stage-1 3\/3\] RUN /.test(v.name!))).toHaveLength(2);
    // Each target platform's base image is resolved under its own name, as BuildKit names them.
    expect(started.filter((v) => /^\[linux\/(arm64|arm\/v7) internal\] load metadata for /.test(v.name!))).toHaveLength(2);
  });

  it('--push sends one index to the registry; skopeo copies each platform from it', async () => {
    const root = await tempDir('builder-root-');
    const ctx = await makeContext({ Dockerfile: dockerfile });
    const ref = `${registry}/multi/pushed:1`;
    const pushed = await runCli(['build', '--root', root, '--platform', platforms.map((x) => x.p).join(','), '-t', ref, '--push', ctx]);
    expect(pushed.code, pushed.stderr).toBe(0);
    const remote = JSON.parse((await exec('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${ref}`])).stdout);
    expect(remote.manifests.map((m: any) => [m.platform.architecture, m.platform.variant])).toEqual([...platforms.map((x) => [x.arch, x.variant]), ...platforms.map(() => ['unknown', undefined])]);
    for (const x of platforms) {
      const dir = path.join(out, `pulled-${x.arch}${x.variant ?? ''}`);
      await fs.mkdir(dir, { recursive: true });
      const args = ['--override-os', 'linux', '--override-arch', x.arch, ...(x.variant ? ['--override-variant', x.variant] : [])];
      await exec('skopeo', [...args, 'copy', '--quiet', '--src-tls-verify=false', `docker://${ref}`, `oci:${dir}/layout:img`]);
      await exec('umoci', ['unpack', '--image', `${dir}/layout:img`, `${dir}/bundle`]);
      expect(await fs.readFile(path.join(dir, 'bundle/rootfs/arch'), 'utf8')).toBe(`${x.line}\n`);
    }
  });

  it('type=local writes one directory per platform; type=docker refuses several platforms', async () => {
    const root = await tempDir('builder-root-');
    const ctx = await makeContext({ Dockerfile: `FROM ${base}\nRUN uname -m > /m\n` });
    const dest = await tempDir('builder-multi-local-');
    const local = await runCli(['build', '--root', root, '--platform', 'linux/amd64,linux/arm64', '--output', `type=local,dest=${dest}`, ctx]);
    expect(local.code, local.stderr).toBe(0);
    expect((await fs.readdir(dest)).sort()).toEqual(['linux_amd64', 'linux_arm64']);
    expect(await fs.readFile(path.join(dest, 'linux_arm64/m'), 'utf8')).toBe('aarch64\n');
    const docker = await runCli(['build', '--root', root, '--platform', 'linux/amd64,linux/arm64', '--output', `type=docker,dest=${dest}/d.tar`, ctx]);
    expect(docker.code).toBe(1);
    expect(lastLine(docker.stderr)).toMatch(/^ERROR: docker exporter does not currently support exporting manifest lists/);
  });
});
