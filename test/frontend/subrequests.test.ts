// The frontend's side of `--call outline` / `--call targets` (BuildKit's Dockerfile2Outline and ListTargets)
// and of the build-wide RUN settings (--network, --add-host, --shm-size, --ulimit, --cgroup-parent) that
// the frontend puts into every exec op. A fixed resolver: no registry.
import { describe, it, expect } from 'vitest';
import { dockerfileToLLB, type ImageMetaResolver } from '../../frontend/index.js';
import { listTargets } from '../../frontend/dockerfile/subrequests.js';
import type { ExecOp, Platform } from '../../solver/llb/ops.js';

const amd64: Platform = { os: 'linux', architecture: 'amd64' };
const resolver: ImageMetaResolver = {
  async resolveImageConfig(ref, platform) {
    return {
      ref: `docker.io/library/${ref}@sha256:${'a'.repeat(64)}`,
      config: { architecture: platform.architecture, os: platform.os, config: { Env: ['PATH=/bin'] }, rootfs: { type: 'layers', diff_ids: ['sha256:' + 'b'.repeat(64)] }, history: [] },
    };
  },
};

const at = (line: number, end = line) => ({ ranges: [{ start: { line }, end: { line: end } }] });

async function outline(dockerfile: string, extra: { target?: string; buildArgs?: Record<string, string> } = {}) {
  const r = await dockerfileToLLB({ dockerfile, targetPlatform: amd64, buildPlatform: amd64, resolver, outline: true, ...extra });
  const { sources, ...rest } = r.outline!;
  expect(sources).toEqual([Buffer.from(dockerfile).toString('base64')]);
  return rest;
}

const dockerfile = [
  '# GO_VERSION the Go version',
  'ARG GO_VERSION=1.21',
  'ARG DEBIAN=bookworm',
  'ARG IMAGE=debian:${DEBIAN}',
  'ARG UNUSED=1',
  '',
  '# base Shared setup',
  'FROM ${IMAGE} AS base',
  '# PORT where it listens',
  'ARG PORT=8080 MODE',
  'RUN --mount=type=secret,id=npmrc,required true',
  '',
  'FROM golang:${GO_VERSION} AS tools',
  'RUN --mount=type=ssh,id=gitlab,required true',
  '',
  '# app The application',
  'FROM base AS app',
  'ARG GO_VERSION',
  'COPY --from=tools /go /go',
  'RUN --mount=type=secret,id=token --mount=type=ssh --mount=type=secret,id=npmrc true',
  '',
  'FROM scratch',
  'COPY --from=app / /',
].join('\n') + '\n';

describe('outline', () => {
  it("lists the target's used args (its own, its base's, its sources', and the global ones FROM used), secrets and agents, by line", async () => {
    expect(await outline(dockerfile, { target: 'app' })).toEqual({
      name: 'app',
      description: 'The application',
      args: [
        { name: 'GO_VERSION', description: 'the Go version', value: '1.21', location: at(2) },
        // IMAGE's default refers to DEBIAN: using IMAGE uses it.
        { name: 'DEBIAN', value: 'bookworm', location: at(3) },
        { name: 'IMAGE', value: 'debian:bookworm', location: at(4) },
        { name: 'PORT', description: 'where it listens', value: '8080', location: at(10) },
        { name: 'MODE', location: at(10) },
      ],
      // npmrc as the target uses it (optional), not as its base does: the target's own uses come first.
      secrets: [{ name: 'token', location: at(20) }, { name: 'npmrc', location: at(20) }],
      ssh: [{ name: 'gitlab', required: true, location: at(14) }, { name: 'default', location: at(20) }],
    });
  });

  it('takes --build-arg values; an unnamed target has no name, and an empty part is left out', async () => {
    const o = await outline(dockerfile, { buildArgs: { PORT: '9000', DEBIAN: 'trixie' } });
    expect(o.name).toBeUndefined();
    expect(o.description).toBeUndefined();
    expect(o.args!.map((a) => [a.name, a.value])).toEqual([
      ['GO_VERSION', '1.21'], ['DEBIAN', 'trixie'], ['IMAGE', 'debian:trixie'], ['PORT', '9000'], ['MODE', undefined],
    ]);
    expect(await outline('FROM scratch\nCOPY a /\n')).toEqual({});
  });

  it("a stage's own ARG of a global name takes its place; a bare one keeps the global's description", async () => {
    const o = await outline('# V global v\nARG V=1\nFROM scratch AS a\nARG V\nFROM scratch\n# V own v\nARG V=2\nCOPY --from=a / /\n');
    expect(o.args).toEqual([{ name: 'V', description: 'own v', value: '2', location: at(7) }]);
    const inherited = await outline('# V global v\nARG V=1\nFROM scratch\nARG V\n');
    expect(inherited.args).toEqual([{ name: 'V', description: 'global v', value: '1', location: at(2) }]);
  });
});

describe('targets', () => {
  it('lists every stage with its doc comment, base and platform; the last is the default', () => {
    const l = listTargets('# a first\nFROM busybox AS a\n# not a description\nFROM --platform=$BUILDPLATFORM a AS b\nFROM b\n');
    expect(l).toEqual({
      targets: [
        { name: 'a', description: 'first', base: 'busybox', location: at(2) },
        { name: 'b', base: 'a', platform: '$BUILDPLATFORM', location: at(4) },
        { default: true, base: 'b', location: at(5) },
      ],
      sources: [Buffer.from('# a first\nFROM busybox AS a\n# not a description\nFROM --platform=$BUILDPLATFORM a AS b\nFROM b\n').toString('base64')],
    });
  });
});

describe('build-wide RUN settings', () => {
  async function runs(dockerfile: string, extra: Record<string, unknown>) {
    const { definition } = await dockerfileToLLB({ dockerfile, targetPlatform: amd64, buildPlatform: amd64, resolver, ...extra });
    return Object.values(definition.ops).filter((op): op is ExecOp => op.kind === 'exec');
  }

  it('go into every RUN: network (RUN --network overrides, default follows it), hosts, limits, cgroup parent, /dev/shm', async () => {
    const ops = await runs('FROM busybox AS a\nRUN one\nFROM busybox\nCOPY --from=a / /a\nRUN two\nRUN --network=default three\nRUN --network=host four\n', {
      network: 'none', extraHosts: ['db:10.0.0.5'], shmSize: 1 << 27, ulimits: [{ name: 'nofile', soft: 1024, hard: 2048 }], cgroupParent: 'ci',
    });
    expect(ops).toHaveLength(4);
    const byCmd = (w: string) => ops.find((o) => o.meta.args.at(-1) === w)!;
    expect(['one', 'two', 'three', 'four'].map((w) => byCmd(w).meta.network)).toEqual(['none', 'none', 'none', 'host']);
    for (const op of ops) {
      expect(op.meta).toMatchObject({ extraHosts: ['db:10.0.0.5'], ulimit: [{ name: 'nofile', soft: 1024, hard: 2048 }], cgroupParent: 'ci' });
      expect(op.mounts.filter((m) => m.dest === '/dev/shm')).toEqual([{ input: -1, dest: '/dev/shm', type: 'tmpfs', tmpfs: { size: 1 << 27 } }]);
    }
  });

  it('leave the ops as they were when not given', async () => {
    const [op] = await runs('FROM busybox\nRUN one\n', {});
    expect(op.meta.network).toBe('sandbox');
    expect(Object.keys(op.meta).sort()).toEqual(['args', 'cwd', 'env', 'network', 'user']);
    expect(op.mounts).toEqual([{ input: 0, dest: '/' }]);
  });
});
