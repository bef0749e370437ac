// Clean failure on a full disk and after kills: writing an output onto a full filesystem (a small tmpfs
// this test mounts) is one line and exit 1, leaving no temp file; temp files a killed export left next to a
// destination are removed by the next run that writes there (a live writer's are not).
import { describe, it, expect, inject, beforeAll, afterAll } from 'vitest';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { makeContext, runCli, tempDir, type CliResult } from '../helpers/cli.js';

const run = promisify(execFile);
const registry = inject('registry');

function expectOneLine(r: CliResult, text: string): void {
  expect(r.code, r.stderr).toBe(1);
  expect(r.stderr).not.toContain('internal error');
  expect(r.stderr).not.toMatch(/\n\s+at /);
  const errors = r.stderr.split('\n').filter((l) => l.startsWith('ERROR'));
  expect(errors.length, r.stderr).toBe(1);
  expect(errors[0]).toContain(text);
}

describe('disk full and killed exports', () => {
  let root: string;
  let ctx: string;
  let full: string;

  beforeAll(async () => {
    root = await tempDir('builder-full-root-');
    ctx = await makeContext({ Dockerfile: `FROM ${registry}/busybox:1.35\nRUN echo hi > /hi\n` });
    full = await tempDir('builder-full-mnt-');
    await run('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', full]);
  });
  afterAll(async () => {
    await run('umount', [full]).catch(() => run('umount', ['-l', full]));
    await fs.rmdir(full).catch(() => undefined);
  });

  for (const [type, name] of [['oci', 'image.tar'], ['docker', 'image.tar'], ['tar', 'fs.tar'], ['local', 'out']] as const) {
    it(`type=${type} onto a full filesystem fails with one line and leaves no temp file`, async () => {
      const dest = path.join(full, `${type}-${name}`);
      const r = await runCli(['build', '--root', root, '--progress', 'plain', '--output', `type=${type},dest=${dest}`, ctx]);
      expectOneLine(r, 'no space left on device');
      expect(r.stderr).toContain(`ERROR: exporting to ${dest}`);
      expect((await fs.readdir(full)).filter((n) => n.endsWith('.tmp'))).toEqual([]);
      await fs.rm(dest, { recursive: true, force: true });
    });
  }

  it('the next build removes the temp files a killed export left beside its destination', async () => {
    const dir = await tempDir('builder-full-dest-');
    // A writer that is gone: a process that has exited.
    const child = spawn('true');
    await new Promise((r) => child.once('exit', r));
    const dead = child.pid!.toString(16).padStart(8, '0');
    const live = process.pid.toString(16).padStart(8, '0');
    const stale = [`.image.tar.${dead}0123456789ab.tmp`, '.image.tar.a1b2c3d4e5f6.tmp'];
    const kept = [`.image.tar.${live}0123456789ab.tmp`, '.other.tar.a1b2c3d4e5f6.tmp', 'image.tar.tmp'];
    for (const n of [...stale, ...kept]) await fs.writeFile(path.join(dir, n), 'partial');
    // And a blob a killed build was downloading or compressing into the content store.
    const blobTmp = path.join(root, 'content', 'blobs', 'tmp');
    await fs.mkdir(blobTmp, { recursive: true });
    await fs.writeFile(path.join(blobTmp, `${child.pid}-0123456789abcdef`), 'partial');
    const r = await runCli(['build', '--root', root, '--progress', 'plain', '--output', `type=oci,dest=${path.join(dir, 'image.tar')}`, ctx]);
    expect(r.code, r.stderr).toBe(0);
    expect((await fs.readdir(dir)).sort()).toEqual(['image.tar', ...kept].sort());
    expect(await fs.readdir(blobTmp)).toEqual([]);

    // The same for a filesystem tar.
    await fs.writeFile(path.join(dir, `.fs.tar.${dead}0123456789ab.tmp`), 'partial');
    const t = await runCli(['build', '--root', root, '--progress', 'plain', '--output', `type=tar,dest=${path.join(dir, 'fs.tar')}`, ctx]);
    expect(t.code, t.stderr).toBe(0);
    expect((await fs.readdir(dir)).sort()).toEqual(['fs.tar', 'image.tar', ...kept].sort());
  });
});
