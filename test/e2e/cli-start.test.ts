// The bin (dist/src/cli/main.js) runs the bundled CLI with V8's code cache: written after a build into the
// user's cache directory (never the install directory), reused, replaced when bad or when the bundle changed.
// Run from a copy of the CLI with its own XDG_CACHE_HOME, so no other test file's cache is touched.
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeContext, projectRoot, tempDir } from '../helpers/cli.js';

function run(cli: string, args: string[], cacheHome: string): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, XDG_CACHE_HOME: cacheHome } });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stderr }));
  });
}

describe('CLI start', () => {
  let tree: string;
  let cliDir: string;
  let ctx: string;
  let root: string;
  let cacheDir: string;
  const caches = async () => (await fs.readdir(cacheDir).catch(() => [] as string[])).filter((f) => f.endsWith('.cache'));
  const build = () => run(path.join(cliDir, 'main.js'), ['build', '--root', root, '--progress', 'plain', '--output', `type=local,dest=${path.join(tree, 'out')}`, ctx], path.join(tree, 'cache'));

  beforeAll(async () => {
    // The layout the bundle expects around it: package.json and the native addon's prebuilds three levels up.
    tree = await tempDir('builder-cli-copy-');
    cliDir = path.join(tree, 'dist/src/cli');
    cacheDir = path.join(tree, 'cache/builder/v8');
    await fs.mkdir(cliDir, { recursive: true });
    for (const f of ['main.js', 'builder.cjs']) await fs.copyFile(path.join(projectRoot, 'dist/src/cli', f), path.join(cliDir, f));
    await fs.cp(path.join(projectRoot, 'prebuilds'), path.join(tree, 'prebuilds'), { recursive: true });
    await fs.copyFile(path.join(projectRoot, 'package.json'), path.join(tree, 'package.json'));
    ctx = await makeContext({ Dockerfile: 'FROM scratch\nCOPY a.txt /a.txt\n', 'a.txt': 'a\n' });
    root = await tempDir('builder-root-');
  });
  afterAll(async () => {
    await fs.rm(tree, { recursive: true, force: true });
  });

  it('the bundle is ASCII: the bin reads it as Latin-1', async () => {
    const bundle = await fs.readFile(path.join(projectRoot, 'dist/src/cli/builder.cjs'));
    expect(bundle.findIndex((b) => b > 0x7f)).toBe(-1);
  });

  it('writes the code cache after a build, reuses it, and replaces a bad or outdated one', async () => {
    expect((await run(path.join(cliDir, 'main.js'), ['--version'], path.join(tree, 'cache'))).code).toBe(0);
    expect(await caches()).toEqual([]);

    let r = await build();
    expect(r.code, r.stderr).toBe(0);
    const [first] = await caches();
    expect(first).toMatch(/^builder\.cjs\..+\.cache$/);
    const written = await fs.stat(path.join(cacheDir, first));

    r = await build();
    expect(r.code, r.stderr).toBe(0);
    expect((await fs.stat(path.join(cacheDir, first))).mtimeMs).toBe(written.mtimeMs);

    // A cache V8 cannot use is ignored and replaced.
    await fs.writeFile(path.join(cacheDir, first), Buffer.alloc(written.size, 7));
    r = await build();
    expect(r.code, r.stderr).toBe(0);
    expect((await fs.readFile(path.join(cacheDir, first))).equals(Buffer.alloc(written.size, 7))).toBe(false);

    // A rebuilt bundle (here: the same bytes written again) never meets the old cache.
    const bundle = path.join(cliDir, 'builder.cjs');
    const bytes = await fs.readFile(bundle);
    await fs.rm(bundle);
    await fs.writeFile(bundle, bytes);
    r = await build();
    expect(r.code, r.stderr).toBe(0);
    const after = await caches();
    expect(after).toHaveLength(1);
    expect(after[0]).not.toBe(first);
    expect(await fs.readFile(path.join(tree, 'out/a.txt'), 'utf8')).toBe('a\n');
    // Nothing is written beside the installed files.
    expect((await fs.readdir(cliDir)).sort()).toEqual(['builder.cjs', 'main.js']);
  });
});
