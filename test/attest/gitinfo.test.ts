// buildx's Git info for provenance: found from any directory of a work tree (a `.git` directory, or a
// linked worktree's `.git` file), nothing outside one (where no git process is started).
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gitInfo } from '../../src/attest/index.js';

const run = promisify(execFile);

describe('gitInfo', () => {
  let tmp: string;
  beforeAll(async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'gitinfo-'));
  });
  afterAll(async () => {
    await fs.rm(tmp, { recursive: true, force: true });
  });

  it('is nothing outside a work tree', async () => {
    await fs.mkdir(path.join(tmp, 'plain/sub'), { recursive: true });
    expect(await gitInfo(path.join(tmp, 'plain/sub'))).toBeUndefined();
  });

  it('names HEAD and the origin (without credentials) from a subdirectory and from a linked worktree', async () => {
    const repo = path.join(tmp, 'repo');
    await fs.mkdir(path.join(repo, 'ctx'), { recursive: true });
    await fs.writeFile(path.join(repo, 'ctx/Dockerfile'), 'FROM scratch\n');
    const git = (args: string[]) => run('git', ['-C', repo, '-c', 'user.name=t', '-c', 'user.email=t@example.com', ...args]);
    await git(['init', '-q']);
    await git(['add', '.']);
    await git(['commit', '-q', '-m', 'x']);
    await git(['remote', 'add', 'origin', 'https://user:secret@example.com/org/app.git']);
    const commit = (await git(['rev-parse', 'HEAD'])).stdout.trim();
    expect(await gitInfo(path.join(repo, 'ctx'))).toEqual({ revision: commit, source: 'https://example.com/org/app.git' });
    const linked = path.join(tmp, 'linked');
    await git(['worktree', 'add', '-q', '--detach', linked]);
    expect((await fs.lstat(path.join(linked, '.git'))).isFile()).toBe(true);
    expect((await gitInfo(path.join(linked, 'ctx')))?.revision).toBe(commit);
  });
});
