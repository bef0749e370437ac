// RUN for a foreign platform goes through QEMU user emulation registered in binfmt_misc.
import { describe, it, expect, inject } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs/promises';
import path from 'node:path';
import { runCli, makeContext, tempDir } from '../helpers/cli.js';
import { umociUnpack } from '../helpers/layout.js';

const exec = promisify(execFile);
const registry = inject('registry');

describe('a build for linux/arm64 on this host', () => {
  it('runs RUN under emulation and exports an arm64 image', async () => {
    const root = await tempDir('builder-root-');
    const out = await tempDir('builder-arm64-');
    const ctx = await makeContext({ Dockerfile: `FROM ${registry}/busybox:1.35\nARG TARGETARCH\nRUN echo "$(uname -m) $TARGETARCH" > /arch\n` });
    const res = await runCli(['build', '--root', root, '--platform', 'linux/arm64', '-t', 'x/arm:1', '--output', `type=oci,dest=${out}/img.tar`, ctx]);
    expect(res.code, res.stderr).toBe(0);
    const config = JSON.parse((await exec('skopeo', ['inspect', '--override-arch', 'arm64', '--config', `oci-archive:${out}/img.tar`])).stdout);
    expect(config.architecture).toBe('arm64');
    expect(config.variant).toBeUndefined(); // arm64/v8 is plain arm64, as BuildKit writes it
    await fs.mkdir(path.join(out, 'layout'));
    await exec('tar', ['-xf', `${out}/img.tar`, '-C', path.join(out, 'layout')]);
    await umociUnpack(path.join(out, 'layout'), '1', path.join(out, 'bundle'), { arch: 'arm64' });
    expect(await fs.readFile(path.join(out, 'bundle/rootfs/arch'), 'utf8')).toBe('aarch64 arm64\n');
  });
});
