// Device nodes and modes: a layer's device nodes stay inside a state directory only root can enter, a
// `type=local` output never makes them (a 0666 node for a host disk in a client directory), and a tar
// output keeps them as entries.
import { describe, it, expect, inject } from 'vitest';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { makeContext, runCli, tempDir } from '../helpers/cli.js';

const run = promisify(execFile);
const registry = inject('registry');

describe('device nodes and state modes', () => {
  it('type=local skips device nodes with a warning, type=tar keeps them; root, snapshots and mounts are 0700', async () => {
    const root = path.join(await tempDir('builder-dev-'), 'state');
    const ctx = await makeContext({
      Dockerfile: `FROM ${registry}/busybox:1.35\nRUN mknod /disk b 8 0 && chmod 666 /disk && mknod /null2 c 1 3 && echo ok > /file\n`,
    });
    const out = path.join(await tempDir('builder-dev-out-'), 'out');
    const local = await runCli(['build', '--root', root, '--progress', 'plain', '--output', `type=local,dest=${out}`, ctx]);
    expect(local.code, local.stderr).toBe(0);
    expect(await fs.readFile(path.join(out, 'file'), 'utf8')).toBe('ok\n');
    await expect(fs.lstat(path.join(out, 'disk'))).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(fs.lstat(path.join(out, 'null2'))).rejects.toMatchObject({ code: 'ENOENT' });
    expect(local.stderr).toMatch(/WARNING: \d+ device nodes not written to .*\/disk/);

    const tarFile = path.join(await tempDir('builder-dev-tar-'), 'fs.tar');
    const tar = await runCli(['build', '--root', root, '--progress', 'plain', '--output', `type=tar,dest=${tarFile}`, ctx]);
    expect(tar.code, tar.stderr).toBe(0);
    const listing = (await run('tar', ['-tvf', tarFile])).stdout.split('\n');
    expect(listing.find((l) => / disk$/.test(l))).toMatch(/^brw-rw-rw- /);
    expect(listing.find((l) => / null2$/.test(l))).toMatch(/^c/);

    for (const dir of [root, path.join(root, 'snapshots'), path.join(root, 'mounts')]) {
      expect(((await fs.stat(dir)).mode & 0o777).toString(8), dir).toBe('700');
    }
  });

  it('an existing state directory made with open modes gets 0700 snapshots and mounts', async () => {
    const root = await tempDir('builder-dev-old-');
    for (const d of ['snapshots', 'mounts']) await fs.mkdir(path.join(root, d), { mode: 0o755 });
    await fs.chmod(path.join(root, 'snapshots'), 0o755);
    const ctx = await makeContext({ Dockerfile: `FROM ${registry}/busybox:1.35\n` });
    const r = await runCli(['build', '--root', root, '--progress', 'plain', ctx]);
    expect(r.code, r.stderr).toBe(0);
    for (const d of ['snapshots', 'mounts']) expect(((await fs.stat(path.join(root, d))).mode & 0o777).toString(8)).toBe('700');
  });
});
