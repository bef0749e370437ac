// Contexts whose COPY sources try to leave the context: `../`, and symlinks (absolute, relative, to a
// directory) that point out of it. Each is a one-line "not found" error naming the Dockerfile line (as in
// BuildKit, a context path resolves inside the context), and nothing from outside reaches the output.
import { describe, it, expect, inject, beforeAll } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { runCli, tempDir, lastLine } from '../helpers/cli.js';

const registry = inject('registry');

describe('COPY sources that leave the context', () => {
  let outside: string;
  let ctx: string;
  let root: string;
  const secret = `outside-secret-${process.pid}`;

  beforeAll(async () => {
    outside = await tempDir('builder-outside-');
    await fs.writeFile(path.join(outside, 'secret.txt'), `${secret}\n`);
    ctx = await tempDir('builder-hostile-ctx-');
    await fs.mkdir(path.join(ctx, 'sub'));
    await fs.symlink(path.join(outside, 'secret.txt'), path.join(ctx, 'sub/abs-link'));
    await fs.symlink(path.relative(path.join(ctx, 'sub'), path.join(outside, 'secret.txt')), path.join(ctx, 'sub/rel-link'));
    await fs.symlink(outside, path.join(ctx, 'sub/dir-link'));
    root = await tempDir('builder-root-');
  });

  const cases = [
    { copy: () => `COPY ${path.relative(ctx, outside)}/secret.txt /x`, name: 'a ../ path' },
    { copy: () => 'COPY sub/abs-link /x', name: 'an absolute symlink' },
    { copy: () => 'COPY sub/rel-link /x', name: 'a relative symlink climbing out' },
    { copy: () => 'COPY sub/dir-link/secret.txt /x', name: 'a path through a symlinked directory' },
  ];
  for (const c of cases) {
    it(`${c.name} is not found, with the Dockerfile line`, async () => {
      await fs.writeFile(path.join(ctx, 'Dockerfile'), `FROM ${registry}/busybox:1.35\n${c.copy()}\n`);
      const dest = await tempDir('builder-hostile-out-');
      const res = await runCli(['build', '--root', root, '--output', `type=local,dest=${dest}`, ctx]);
      expect(res.code, res.stderr).toBe(1);
      expect(lastLine(res.stderr)).toMatch(/^ERROR: Dockerfile:2: COPY failed: ".*": not found$/);
      expect(res.stderr).not.toContain(secret);
      await expect(fs.access(path.join(dest, 'x'))).rejects.toThrow();
    });
  }

  it('copying a directory keeps its symlinks as links: the target outside is not read', async () => {
    await fs.writeFile(path.join(ctx, 'Dockerfile'), `FROM ${registry}/busybox:1.35\nCOPY sub/ /s/\n`);
    const dest = await tempDir('builder-hostile-out-');
    const res = await runCli(['build', '--root', root, '--output', `type=local,dest=${dest}`, ctx]);
    expect(res.code, res.stderr).toBe(0);
    expect(await fs.readlink(path.join(dest, 's/abs-link'))).toBe(path.join(outside, 'secret.txt'));
    expect((await fs.lstat(path.join(dest, 's/dir-link'))).isSymbolicLink()).toBe(true);
    // The exported files hold nothing of the secret's content.
    for (const f of await fs.readdir(path.join(dest, 's'))) {
      const st = await fs.lstat(path.join(dest, 's', f));
      if (st.isFile()) expect(await fs.readFile(path.join(dest, 's', f), 'utf8')).not.toContain(secret);
    }
  });
});
