// solve(): an LLB definition made without a Dockerfile runs on the same worker and exporters as build(),
// as docs/api.md shows it; a full disk under its output is one line, as for build().
import { describe, it, expect, inject, beforeAll, afterAll } from 'vitest';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { solve, DefinitionBuilder, BuildError } from '../../src/index.js';
import { tempDir } from '../helpers/cli.js';

const run = promisify(execFile);
const registry = inject('registry');
const amd64 = { os: 'linux', architecture: 'amd64' };

function definition(): ReturnType<DefinitionBuilder['build']> {
  const b = new DefinitionBuilder();
  const base = b.add({ kind: 'source', source: { type: 'image', ref: `${registry}/busybox:1.35`, platform: amd64 } });
  const step = b.add({
    kind: 'exec', inputs: [{ digest: base }], mounts: [{ input: 0, dest: '/' }],
    meta: { args: ['/bin/sh', '-c', 'echo hi > /hi'], env: ['PATH=/bin'], cwd: '/', user: '', network: 'sandbox' },
    platform: amd64,
  }, { description: 'RUN echo hi' });
  return b.build(step);
}

const quiet = { start: () => undefined, done: () => undefined };

describe('solve()', () => {
  let full: string;
  beforeAll(async () => {
    full = await tempDir('builder-solve-full-');
    await run('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', full]);
  });
  afterAll(async () => {
    await run('umount', [full]).catch(() => run('umount', ['-l', full]));
    await fs.rmdir(full).catch(() => undefined);
  });

  it('runs a definition built with DefinitionBuilder and exports its filesystem', async () => {
    const out = path.join(await tempDir('builder-solve-out-'), 'out');
    // Not there yet: solve() makes it.
    const root = path.join(await tempDir('builder-solve-root-'), 'state');
    await solve({ definition: definition(), outputs: [`type=local,dest=${out}`], root, progress: quiet });
    expect(await fs.readFile(path.join(out, 'hi'), 'utf8')).toBe('hi\n');
    // The state directory is private, as build() makes it.
    expect((await fs.stat(root)).mode & 0o777).toBe(0o700);
  });

  it('reports a full disk under its output as one line', async () => {
    const root = await tempDir('builder-solve-root-');
    const err = await solve({ definition: definition(), outputs: [`type=local,dest=${path.join(full, 'out')}`], root, progress: quiet }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BuildError);
    expect((err as Error).message).toMatch(/no space left on device$/);
    expect((err as Error).message).not.toContain('\n');
  });
});
