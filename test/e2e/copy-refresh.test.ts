// A COPY from the context redone after an edit starts from the previous build's result of the same step
// (hard links to its unchanged files) instead of copying everything again. What it makes must be exactly what
// a fresh copy makes: compared here by image digest against a build on an empty state directory, with
// SOURCE_DATE_EPOCH and rewrite-timestamp so the digests are reproducible.
import { describe, it, expect, inject, beforeAll } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { runCli, makeContext, tempDir } from '../helpers/cli.js';

const exec = promisify(execFile);
const registry = inject('registry');
const base = `${registry}/busybox:1.35`;
const env = { SOURCE_DATE_EPOCH: '1700000000' };

async function manifestDigest(tar: string): Promise<string> {
  const raw = (await exec('skopeo', ['inspect', '--raw', `oci-archive:${tar}`])).stdout;
  return `sha256:${createHash('sha256').update(raw).digest('hex')}`;
}

/** Committed snapshots made by a copy from the context, oldest first. */
async function copySnapshots(root: string): Promise<string[]> {
  const dir = path.join(root, 'snapshots');
  const ids = (await fs.readdir(dir)).filter((n) => /^\d+$/.test(n)).sort((a, b) => Number(a) - Number(b));
  const out: string[] = [];
  for (const id of ids) {
    const info = await fs.readFile(path.join(dir, id, 'committed.json'), 'utf8').then(JSON.parse, () => null);
    if (info?.copy) out.push(path.join(dir, id, 'fs'));
  }
  return out;
}

const ino = async (p: string) => (await fs.lstat(p)).ino;

describe('COPY after an edit (refreshing the previous result)', () => {
  let ctx: string;
  let out: string;

  const build = (root: string, dockerfile: string, dest: string) =>
    runCli(['build', '--root', root, '--progress', 'plain', '--build-arg', `BASE=${base}`, '-f', path.join(ctx, dockerfile),
      '--output', `type=oci,dest=${dest},rewrite-timestamp=true`, ctx], { env });

  beforeAll(async () => {
    out = await tempDir('builder-refresh-out-');
    ctx = await makeContext({
      'Dockerfile': 'ARG BASE\nFROM ${BASE}\nCOPY . /app\nRUN cat /app/keep.txt > /seen\n',
      'Dockerfile.etc': 'ARG BASE\nFROM ${BASE}\nCOPY . /etc/\n',
      '.dockerignore': 'ignored.txt\n',
      'keep.txt': 'keep\n',
      'edit.txt': 'before\n',
      'gone.txt': 'gone\n',
      'gone-dir/x.txt': 'x\n',
      'becomes-dir': 'a file\n',
      'mode.sh': 'echo hi\n',
      'linked-a.txt': 'shared\n',
      'sub/deep/file.txt': 'deep\n',
      'same-size.txt': 'aaaa\n',
      'later-ignored.txt': 'soon ignored\n',
      'ignored.txt': 'never copied\n',
    });
    await fs.link(path.join(ctx, 'linked-a.txt'), path.join(ctx, 'linked-b.txt'));
    await fs.symlink('keep.txt', path.join(ctx, 'link'));
    // Files changed less than two seconds before the previous copy started are never trusted unchanged.
    await new Promise((r) => setTimeout(r, 2100));
  });

  it('rewrites only what changed and gives the image a fresh build gives', async () => {
    const root = await tempDir('builder-refresh-root-');
    const first = await build(root, 'Dockerfile', `${out}/1.tar`);
    expect(first.code, first.stderr).toBe(0);

    await fs.writeFile(path.join(ctx, 'edit.txt'), 'after, longer\n');
    await fs.rm(path.join(ctx, 'gone.txt'));
    await fs.rm(path.join(ctx, 'gone-dir'), { recursive: true });
    await fs.rm(path.join(ctx, 'becomes-dir'));
    await fs.mkdir(path.join(ctx, 'becomes-dir'));
    await fs.writeFile(path.join(ctx, 'becomes-dir/inside.txt'), 'now a directory\n');
    await fs.chmod(path.join(ctx, 'mode.sh'), 0o755);
    await fs.writeFile(path.join(ctx, 'linked-b.txt'), 'shared, edited through the other name\n');
    await fs.rm(path.join(ctx, 'link'));
    await fs.symlink('edit.txt', path.join(ctx, 'link'));
    await fs.writeFile(path.join(ctx, 'new.txt'), 'new\n');
    // Other bytes of the same size, the old mtime put back: only its ctime tells.
    const sameSize = await fs.stat(path.join(ctx, 'same-size.txt'));
    await fs.writeFile(path.join(ctx, 'same-size.txt'), 'bbbb\n');
    await fs.utimes(path.join(ctx, 'same-size.txt'), sameSize.atime, sameSize.mtime);
    await fs.writeFile(path.join(ctx, '.dockerignore'), 'ignored.txt\nlater-ignored.txt\n');

    const second = await build(root, 'Dockerfile', `${out}/2.tar`);
    expect(second.code, second.stderr).toBe(0);
    const fresh = await build(await tempDir('builder-refresh-fresh-'), 'Dockerfile', `${out}/3.tar`);
    expect(fresh.code, fresh.stderr).toBe(0);
    expect(await manifestDigest(`${out}/2.tar`)).toBe(await manifestDigest(`${out}/3.tar`));

    // The refreshed snapshot shares the unchanged file with the previous one and has its own edited file;
    // the previous snapshot is as it was.
    const [prev, cur] = await copySnapshots(root);
    expect(await ino(path.join(cur, 'app/keep.txt'))).toBe(await ino(path.join(prev, 'app/keep.txt')));
    expect(await ino(path.join(cur, 'app/sub/deep/file.txt'))).toBe(await ino(path.join(prev, 'app/sub/deep/file.txt')));
    expect(await ino(path.join(cur, 'app/edit.txt'))).not.toBe(await ino(path.join(prev, 'app/edit.txt')));
    expect(await fs.readFile(path.join(prev, 'app/edit.txt'), 'utf8')).toBe('before\n');
    expect(await fs.readFile(path.join(cur, 'app/same-size.txt'), 'utf8')).toBe('bbbb\n');
    expect(await fs.readFile(path.join(prev, 'app/same-size.txt'), 'utf8')).toBe('aaaa\n');
    expect((await fs.stat(path.join(prev, 'app/mode.sh'))).mode & 0o777).toBe(0o644);
    expect(await fs.readFile(path.join(prev, 'app/linked-a.txt'), 'utf8')).toBe('shared\n');
    await expect(fs.access(path.join(cur, 'app/gone-dir'))).rejects.toThrow();
    await expect(fs.access(path.join(cur, 'app/later-ignored.txt'))).rejects.toThrow();
    // The hard-linked pair stays one file, as a fresh copy makes it.
    expect(await ino(path.join(cur, 'app/linked-a.txt'))).toBe(await ino(path.join(cur, 'app/linked-b.txt')));
  });

  it('copies in full where the destination already has files below (and still matches a fresh build)', async () => {
    const root = await tempDir('builder-refresh-root-');
    const first = await build(root, 'Dockerfile.etc', `${out}/e1.tar`);
    expect(first.code, first.stderr).toBe(0);
    await fs.writeFile(path.join(ctx, 'edit.txt'), 'edited again\n');
    const second = await build(root, 'Dockerfile.etc', `${out}/e2.tar`);
    expect(second.code, second.stderr).toBe(0);
    const fresh = await build(await tempDir('builder-refresh-fresh-'), 'Dockerfile.etc', `${out}/e3.tar`);
    expect(await manifestDigest(`${out}/e2.tar`)).toBe(await manifestDigest(`${out}/e3.tar`));
    const [prev, cur] = await copySnapshots(root);
    expect(await ino(path.join(cur, 'etc/keep.txt'))).not.toBe(await ino(path.join(prev, 'etc/keep.txt')));
  });

  it('applies a changed --chmod to files whose content did not change', async () => {
    const root = await tempDir('builder-refresh-root-');
    await fs.writeFile(path.join(ctx, 'Dockerfile.mode'), 'ARG BASE\nFROM ${BASE}\nCOPY . /app\n');
    // The Dockerfile itself is in the context: old enough files other than it keep the test meaningful.
    const first = await build(root, 'Dockerfile.mode', `${out}/m1.tar`);
    expect(first.code, first.stderr).toBe(0);
    await fs.writeFile(path.join(ctx, 'Dockerfile.mode'), 'ARG BASE\nFROM ${BASE}\nCOPY --chmod=600 . /app\n');
    const second = await build(root, 'Dockerfile.mode', `${out}/m2.tar`);
    expect(second.code, second.stderr).toBe(0);
    const fresh = await build(await tempDir('builder-refresh-fresh-'), 'Dockerfile.mode', `${out}/m3.tar`);
    expect(await manifestDigest(`${out}/m2.tar`)).toBe(await manifestDigest(`${out}/m3.tar`));
    const [, cur] = await copySnapshots(root);
    expect((await fs.stat(path.join(cur, 'app/keep.txt'))).mode & 0o777).toBe(0o600);
  });
});
