// End to end: the compiled CLI builds multi-stage Dockerfiles from a real registry with real runc on
// overlayfs; the outputs are read back with independent tools (umoci, skopeo, GNU tar), not our code.
import { describe, it, expect, inject, beforeAll } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs/promises';
import path from 'node:path';
import { runCli, makeContext, tempDir, lastLine } from '../helpers/cli.js';
import { readImageManifest, umociUnpack } from '../helpers/layout.js';

const exec = promisify(execFile);

const registry = inject('registry');
const base = `${registry}/busybox:1.35`;

const multiStage = `
ARG BASE
FROM \${BASE} AS builder
WORKDIR /src
COPY app.txt ./
RUN echo built > out.txt \\
 && mkdir -p sub && echo nested > sub/f \\
 && ln -s out.txt link \\
 && chmod 4755 out.txt

FROM \${BASE} AS other
RUN echo from-other > /other.txt

FROM \${BASE} AS unused
RUN exit 42

FROM \${BASE}
ENV APP_ENV=prod
COPY --from=builder /src/ /app/
COPY --from=other /other.txt /other.txt
COPY --chown=app:staff owned.txt /app/owned.txt
RUN rm /app/app.txt && mkdir -p /data && echo old > /data/keep
RUN rm -rf /data && mkdir /data && echo new > /data/new
WORKDIR /app
USER app
RUN id -u > /tmp/whoami
CMD ["cat", "/app/out.txt"]
`;

async function unpackOCI(tarFile: string, tag: string): Promise<string> {
  const dir = await tempDir('builder-unpack-');
  await fs.mkdir(path.join(dir, 'layout'));
  await exec('tar', ['-xf', tarFile, '-C', path.join(dir, 'layout')]);
  await umociUnpack(path.join(dir, 'layout'), tag, path.join(dir, 'bundle'));
  return path.join(dir, 'bundle', 'rootfs');
}

describe('builder build (end to end)', () => {
  let root: string;
  let out: string;
  let rootfs: string;
  let config: any;
  let manifest: any;
  let first: Awaited<ReturnType<typeof runCli>>;

  beforeAll(async () => {
    root = await tempDir('builder-root-');
    out = await tempDir('builder-out-');
    const ctx = await makeContext({ 'Dockerfile': multiStage, 'app.txt': 'app\n', 'owned.txt': 'mine\n' });
    first = await runCli(['build', '--root', root, '--progress', 'plain', '--build-arg', `BASE=${base}`,
      '-t', 'example.com/test/app:1', '--output', `type=oci,dest=${out}/image.tar`, ctx]);
    if (first.code === 0) {
      rootfs = await unpackOCI(`${out}/image.tar`, '1');
      config = JSON.parse((await exec('skopeo', ['inspect', '--config', `oci-archive:${out}/image.tar`])).stdout);
      const layout = await tempDir('builder-layout-');
      await exec('tar', ['-xf', `${out}/image.tar`, '-C', layout]);
      manifest = await readImageManifest(layout);
    }
  });

  it('succeeds and shows BuildKit-style progress', () => {
    expect(first.stderr).toContain('RUN echo built');
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toMatch(/#\d+ DONE \d+\.\ds/);
    // The stage the target does not need never runs.
    expect(first.stderr).not.toContain('exit 42');
  });

  it('writes files from RUN, COPY from context and from other stages', async () => {
    expect(await fs.readFile(path.join(rootfs, 'app/out.txt'), 'utf8')).toBe('built\n');
    expect(await fs.readFile(path.join(rootfs, 'app/sub/f'), 'utf8')).toBe('nested\n');
    expect(await fs.readFile(path.join(rootfs, 'other.txt'), 'utf8')).toBe('from-other\n');
    expect(await fs.readFile(path.join(rootfs, 'app/owned.txt'), 'utf8')).toBe('mine\n');
  });

  it('keeps modes (setuid), owners and symlinks', async () => {
    const st = await fs.lstat(path.join(rootfs, 'app/out.txt'));
    expect(st.mode & 0o7777).toBe(0o4755);
    const owned = await fs.lstat(path.join(rootfs, 'app/owned.txt'));
    expect([owned.uid, owned.gid]).toEqual([1000, 50]);
    const copied = await fs.lstat(path.join(rootfs, 'other.txt'));
    expect([copied.uid, copied.gid]).toEqual([0, 0]);
    expect(await fs.readlink(path.join(rootfs, 'app/link'))).toBe('out.txt');
    const who = await fs.lstat(path.join(rootfs, 'tmp/whoami'));
    expect(who.uid).toBe(1000);
    expect(await fs.readFile(path.join(rootfs, 'tmp/whoami'), 'utf8')).toBe('1000\n');
  });

  it('deletes across layers with whiteouts and opaque directories', async () => {
    await expect(fs.access(path.join(rootfs, 'app/app.txt'))).rejects.toThrow();
    await expect(fs.access(path.join(rootfs, 'data/keep'))).rejects.toThrow();
    expect(await fs.readFile(path.join(rootfs, 'data/new'), 'utf8')).toBe('new\n');
    // The layer that removed /app/app.txt carries an OCI whiteout, as GNU tar lists it.
    const layout = path.join(out, 'layout-list');
    await fs.mkdir(layout);
    await exec('tar', ['-xf', `${out}/image.tar`, '-C', layout]);
    const listings = await Promise.all(manifest.layers.map(async (l: { digest: string }) =>
      (await exec('tar', ['-tzf', path.join(layout, 'blobs/sha256', l.digest.slice(7))])).stdout));
    expect(listings.some((t: string) => t.split('\n').includes('app/.wh.app.txt'))).toBe(true);
    expect(listings.some((t: string) => t.split('\n').includes('data/.wh..wh..opq'))).toBe(true);
  });

  it('writes the image config the instructions set', () => {
    expect(config.architecture).toBe('amd64');
    expect(config.os).toBe('linux');
    expect(config.config.Env).toContain('APP_ENV=prod');
    expect(config.config.Env.some((e: string) => e.startsWith('PATH='))).toBe(true);
    expect(config.config.WorkingDir).toBe('/app');
    expect(config.config.User).toBe('app');
    expect(config.config.Cmd).toEqual(['cat', '/app/out.txt']);
    expect(config.rootfs.diff_ids).toHaveLength(manifest.layers.length);
    expect(config.history.filter((h: any) => !h.empty_layer)).toHaveLength(manifest.layers.length);
    expect(config.history.some((h: any) => h.created_by?.includes('ENV APP_ENV=prod'))).toBe(true);
  });

  it('exports a docker-load tar that skopeo reads', async () => {
    const res = await runCli(['build', '--root', root, '--progress', 'plain', '--build-arg', `BASE=${base}`,
      '-t', 'test/app:2', '--output', `type=docker,dest=${out}/docker.tar`,
      await makeContext({ 'Dockerfile': 'ARG BASE\nFROM ${BASE}\nRUN echo hi > /hi\n' })]);
    expect(res.code, res.stderr).toBe(0);
    const inspected = JSON.parse((await exec('skopeo', ['inspect', `docker-archive:${out}/docker.tar`])).stdout);
    expect(inspected.Architecture).toBe('amd64');
    expect(inspected.Layers.length).toBe(2);
    const hasDaemon = await exec('docker', ['info']).then(() => true, () => false);
    if (hasDaemon) {
      const loaded = await exec('docker', ['load', '-i', `${out}/docker.tar`]);
      expect(loaded.stdout).toContain('test/app:2');
      const ran = await exec('docker', ['run', '--rm', 'test/app:2', 'cat', '/hi']);
      expect(ran.stdout).toBe('hi\n');
    }
  });

  it('exports the final filesystem to a local directory', async () => {
    const dest = path.join(out, 'local');
    const res = await runCli(['build', '--root', root, '--build-arg', `BASE=${base}`, '-o', dest,
      await makeContext({ 'Dockerfile': 'ARG BASE\nFROM ${BASE} AS b\nRUN echo one > /one\nFROM scratch\nCOPY --from=b /one /bin/busybox /\n' })]);
    expect(res.code, res.stderr).toBe(0);
    expect((await fs.readdir(dest)).sort()).toEqual(['busybox', 'one']);
    expect(await fs.readFile(path.join(dest, 'one'), 'utf8')).toBe('one\n');
  });
});

describe('bad input', () => {
  let root: string;
  beforeAll(async () => {
    root = await tempDir('builder-root-bad-');
  });

  const cases: { name: string; dockerfile: string; files?: Record<string, string>; line: number; message: RegExp; tail?: string }[] = [
    { name: 'a syntax error', dockerfile: 'ARG BASE\nFROM ${BASE}\nRUN true\nENV\n', line: 4, message: /ENV/ },
    { name: 'an unknown instruction', dockerfile: 'ARG BASE\nFROM ${BASE}\nFOO bar\n', line: 3, message: /unknown instruction: FOO/i },
    { name: 'a base image that does not exist', dockerfile: 'ARG BASE\nFROM ${BASE}-nope\nRUN true\n', line: 2, message: /not found/ },
    { name: 'a failing RUN', dockerfile: 'ARG BASE\nFROM ${BASE}\nRUN echo first line && echo "last words" && exit 7\n', line: 3,
      message: /RUN failed: process "\/bin\/sh -c echo first line && echo \\"last words\\" && exit 7" did not complete successfully: exit code: 7|exit code: 7/, tail: 'last words' },
    { name: 'a missing COPY source', dockerfile: 'ARG BASE\nFROM ${BASE}\n\nCOPY missing.txt /x\n', line: 4, message: /COPY failed: .*missing\.txt.*not found/ },
  ];

  for (const c of cases) {
    it(`reports ${c.name} on one line naming the Dockerfile line, exit code 1`, async () => {
      const ctx = await makeContext({ Dockerfile: c.dockerfile, ...(c.files ?? {}) });
      const res = await runCli(['build', '--root', root, '--progress', 'plain', '--build-arg', `BASE=${base}`, ctx]);
      expect(res.code, res.stderr).toBe(1);
      const line = lastLine(res.stderr);
      expect(line).toMatch(new RegExp(`^ERROR: Dockerfile:${c.line}: `));
      expect(line).toMatch(c.message);
      expect(res.stderr).not.toMatch(/\n\s+at .*\(.*:\d+:\d+\)/); // no stack trace
      if (c.tail) expect(res.stderr).toContain(c.tail);
    });
  }

  it('leaves the state directory usable for the next build', async () => {
    const ctx = await makeContext({ Dockerfile: 'ARG BASE\nFROM ${BASE}\nRUN echo ok > /ok\n' });
    const dest = await tempDir('builder-after-');
    const res = await runCli(['build', '--root', root, '--build-arg', `BASE=${base}`, '-o', dest, ctx]);
    expect(res.code, res.stderr).toBe(0);
    expect(await fs.readFile(path.join(dest, 'ok'), 'utf8')).toBe('ok\n');
    // Nothing left mounted under the state directory.
    const mounts = await fs.readFile('/proc/self/mountinfo', 'utf8');
    expect(mounts).not.toContain(root);
  });
});
