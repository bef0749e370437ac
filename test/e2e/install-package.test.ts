// A stranger's install: the package is packed, the tarball installed into a new project without install
// scripts and with no C compiler, make or python on PATH, and then used as a user would: the installed bin
// (`--help`, and a real build whose RUN goes through runc) and the library imported by its name.
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { makeContext, projectRoot, tempDir } from '../helpers/cli.js';

const exec = promisify(execFile);
const registry = inject('registry');
const pkg = JSON.parse(await fs.readFile(path.join(projectRoot, 'package.json'), 'utf8')) as { name: string };

/** A PATH holding only what a machine without build tools has, and what a build itself runs. */
async function bareBin(dir: string): Promise<string> {
  const bin = path.join(dir, 'bin');
  await fs.mkdir(bin, { recursive: true });
  for (const tool of ['node', 'npm', 'npx', 'sh', 'bash', 'env', 'tar', 'gzip', 'runc', 'mount', 'umount']) {
    const { stdout } = await exec('sh', ['-c', `command -v ${tool}`]);
    await fs.symlink(stdout.trim(), path.join(bin, tool));
  }
  return bin;
}

describe('the packed package, installed elsewhere', () => {
  let work: string;
  let app: string;
  let env: NodeJS.ProcessEnv;
  let tarball: string;

  beforeAll(async () => {
    work = await tempDir('builder-install-');
    // --ignore-scripts: packing must not rebuild dist/ under the other test files that run it.
    const { stdout } = await exec('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', work], { cwd: projectRoot });
    tarball = path.join(work, stdout.trim().split('\n').pop()!);
    app = path.join(work, 'app');
    await fs.mkdir(app);
    // npm's own cache (that of the checkout's install) serves the dependencies when it has them.
    env = { ...process.env, PATH: await bareBin(work), XDG_CACHE_HOME: path.join(work, 'cache') };
    await exec('npm', ['init', '-y'], { cwd: app, env });
    await exec('npm', ['install', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline', tarball], { cwd: app, env });
  }, 300_000);
  afterAll(async () => {
    await fs.rm(work, { recursive: true, force: true });
  });

  it('ships no tests, bench or fixtures, and nothing that cannot run without a compiler', async () => {
    const { stdout } = await exec('tar', ['-tzf', tarball]);
    const entries = stdout.trim().split('\n');
    expect(entries.filter((e) => /^package\/(test|bench|testdata|\.ci)\//.test(e))).toEqual([]);
    expect(entries.filter((e) => e.endsWith('.map') || (e.endsWith('.ts') && !e.endsWith('.d.ts')))).toEqual([]);
    expect(entries).toContain('package/LICENSE');
    expect(entries.some((e) => /^package\/prebuilds\/linux-x64\/.+\.node$/.test(e))).toBe(true);
    expect(entries.some((e) => /^package\/prebuilds\/linux-arm64\/.+\.node$/.test(e))).toBe(true);
  });

  it('runs the installed bin: --help, and a build with RUN in a container', async () => {
    const bin = path.join(app, 'node_modules/.bin/builder');
    const help = await exec(bin, ['--help'], { env });
    expect(help.stdout).toMatch(/builder build/);
    const ctx = await makeContext({ Dockerfile: `FROM ${registry}/busybox:1.35\nRUN echo installed > /hello.txt\n` });
    const out = path.join(work, 'out');
    const root = await tempDir('builder-root-');
    await exec(bin, ['build', '--root', root, '--progress', 'plain', '-o', `type=local,dest=${out}`, ctx], { env });
    expect(await fs.readFile(path.join(out, 'hello.txt'), 'utf8')).toBe('installed\n');
    // Nothing written into the install directory (the code cache goes to the user's cache directory).
    const cliDir = path.join(app, 'node_modules', pkg.name, 'dist/src/cli');
    expect((await fs.readdir(cliDir)).filter((f) => f.endsWith('.cache'))).toEqual([]);
  });

  it('imports the library by its name and builds with build()', async () => {
    const ctx = await makeContext({ Dockerfile: `FROM ${registry}/busybox:1.35\nRUN echo library > /lib.txt\n` });
    const out = path.join(work, 'lib-out');
    const root = await tempDir('builder-root-');
    const script = path.join(app, 'use.mjs');
    await fs.writeFile(script, [
      `import { build } from '${pkg.name}';`,
      `const r = await build({ context: ${JSON.stringify(ctx)}, outputs: [${JSON.stringify(`type=local,dest=${out}`)}], root: ${JSON.stringify(root)} });`,
      'console.log(r.exports.length);',
    ].join('\n'));
    await exec('node', [script], { cwd: app, env });
    expect(await fs.readFile(path.join(out, 'lib.txt'), 'utf8')).toBe('library\n');
  });
});
