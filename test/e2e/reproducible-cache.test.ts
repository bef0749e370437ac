// Reproducible through caches: with rewrite-timestamp=true and SOURCE_DATE_EPOCH, the same Dockerfile and
// context give the same image digest from a cold build, a warm one, and a build that takes its layers
// from a cache import (local directory or registry), whose layers were exported with their real times.
import { describe, it, expect, inject } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Index } from '../../src/image/types.js';
import { makeContext, runCli, tempDir } from '../helpers/cli.js';

const registry = inject('registry');

async function manifestDigest(layoutTar: string): Promise<string> {
  const dir = await tempDir('builder-repro-x-');
  const { execFile } = await import('node:child_process');
  await new Promise<void>((resolve, reject) => execFile('tar', ['-xf', layoutTar, '-C', dir], (e) => (e ? reject(e) : resolve())));
  const index = JSON.parse(await fs.readFile(path.join(dir, 'index.json'), 'utf8')) as Index;
  return index.manifests[0].digest;
}

describe('reproducible builds through caches', () => {
  it('rewrite-timestamp gives one digest cold, warm and from --cache-from', async () => {
    const ctx = await makeContext({
      Dockerfile: `FROM ${registry}/busybox:1.35\nCOPY app /app\nRUN echo built > /app/built.txt && mkdir /made\n`,
      'app/a.txt': 'a\n',
    });
    const env = { SOURCE_DATE_EPOCH: '1700000000' };
    const cacheDir = await tempDir('builder-repro-cache-');
    const cacheRef = `${registry}/repro-cache:1`;
    const build = async (root: string, extra: string[]) => {
      const dest = path.join(await tempDir('builder-repro-out-'), 'image.tar');
      const r = await runCli(['build', '--root', root, '--progress', 'plain', '--output', `type=oci,dest=${dest},rewrite-timestamp=true`, ...extra, ctx], { env });
      expect(r.code, r.stderr).toBe(0);
      return { digest: await manifestDigest(dest), stderr: r.stderr };
    };
    const coldRoot = await tempDir('builder-repro-cold-');
    const cold = await build(coldRoot, ['--cache-to', `type=local,dest=${cacheDir},mode=max`, '--cache-to', `type=registry,ref=${cacheRef},mode=max`]);
    const warm = await build(coldRoot, []);
    expect(warm.digest).toBe(cold.digest);
    const importRoot = await tempDir('builder-repro-imp-');
    const fromLocal = await build(importRoot, ['--cache-from', `type=local,src=${cacheDir}`]);
    expect(fromLocal.stderr).toMatch(/CACHED/);
    expect(fromLocal.digest).toBe(cold.digest);
    // The imported layers are local now: a warm build there gives the digest too.
    expect((await build(importRoot, [])).digest).toBe(cold.digest);
    const fromRegistry = await build(await tempDir('builder-repro-reg-'), ['--cache-from', `type=registry,ref=${cacheRef}`]);
    expect(fromRegistry.digest).toBe(cold.digest);
  });
});
