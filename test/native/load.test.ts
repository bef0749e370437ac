// Finding and loading the native addon (src/native/fsx.ts), the one-line error where it cannot be loaded,
// the commands that run without it, and the install script that compiles only where no prebuild loads.
import { spawn } from 'node:child_process';

/** Runs a command to its end without blocking the test worker (a blocked worker misses vitest's RPC deadline). */
function spawnAsync(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv } = {}): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addonCandidates, loadAddon, NativeAddonError } from '../../src/native/fsx.js';
import { UserError } from '../../src/util/errors.js';
import { makeContext, projectRoot, tempDir } from '../helpers/cli.js';
import { busyboxLayout, busyboxTag, ensureBusybox } from '../helpers/fixtures.js';
import { pushLayout, startRegistry, type TestRegistry } from '../helpers/registry.js';

const x64 = { platform: 'linux', arch: 'x64', libc: 'glibc' };
const prebuilt = path.join(projectRoot, 'prebuilds/linux-x64/node.napi.glibc.node');

async function tree(files: Record<string, string | Buffer>): Promise<string> {
  const root = await tempDir('builder-addon-');
  for (const [name, content] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(root, name)), { recursive: true });
    await fs.writeFile(path.join(root, name), content);
  }
  return root;
}

describe('native addon lookup', () => {
  const made: string[] = [];
  const root = async (files: Record<string, string | Buffer>) => {
    const r = await tree(files);
    made.push(r);
    return r;
  };
  afterAll(async () => {
    for (const r of made) await fs.rm(r, { recursive: true, force: true });
  });

  it('takes the package build first, then the prebuilds whose tags fit, most specific first, as node-gyp-build', async () => {
    const files = [
      'prebuilds/linux-x64/node.napi.node', 'prebuilds/linux-x64/node.napi.glibc.node', 'prebuilds/linux-x64/node.napi.musl.node',
      'prebuilds/linux-x64/node.abi115.node', 'prebuilds/linux-x64/electron.napi.node', 'prebuilds/linux-x64/fsx.node',
      'prebuilds/linux-x64/README', 'prebuilds/linux-arm64/node.napi.glibc.node', 'prebuilds/linux-arm64+x64/node.napi.node',
      'prebuilds/darwin-x64/node.napi.node',
    ];
    const r = await root(Object.fromEntries(files.map((f) => [f, ''])));
    expect(addonCandidates(r, x64).map((f) => path.relative(r, f))).toEqual([
      'prebuilds/linux-x64/node.napi.glibc.node', 'prebuilds/linux-x64/node.napi.node', 'prebuilds/linux-arm64+x64/node.napi.node',
    ]);
    expect(addonCandidates(r, { ...x64, libc: 'musl' }).map((f) => path.relative(r, f))).toEqual([
      'prebuilds/linux-x64/node.napi.musl.node', 'prebuilds/linux-x64/node.napi.node', 'prebuilds/linux-arm64+x64/node.napi.node',
    ]);
    await fs.mkdir(path.join(r, 'src/native/build/Release'), { recursive: true });
    await fs.writeFile(path.join(r, 'src/native/build/Release/fsx.node'), '');
    expect(addonCandidates(r, { platform: 'linux', arch: 'riscv64', libc: 'glibc' }).map((f) => path.relative(r, f))).toEqual([
      'src/native/build/Release/fsx.node',
    ]);
  });

  it('loads a prebuild where nothing else is built', async () => {
    const r = await root({ 'package.json': '{"name":"pkg"}', 'prebuilds/linux-x64/node.napi.glibc.node': await fs.readFile(prebuilt) });
    const binding = loadAddon(r, x64);
    expect(binding.sha256Backend()).toBe('openssl');
    expect(binding.scanDir(r, false).names.sort()).toEqual(['package.json', 'prebuilds']);
  });

  it('where nothing loads, says so in one line: the platform, the ABI, why and the fix', async () => {
    const r = await root({ 'package.json': '{"name":"some-pkg"}' });
    const err = (() => { try { loadAddon(r, { platform: 'linux', arch: 'riscv64', libc: 'glibc' }); } catch (e) { return e; } })();
    expect(err).toBeInstanceOf(NativeAddonError);
    expect(err).toBeInstanceOf(UserError);
    expect(err).toMatchObject({ code: 'NATIVE_ADDON' });
    const msg = (err as Error).message;
    expect(msg).not.toContain('\n');
    expect(msg).toContain(`linux-riscv64 (glibc), Node ${process.versions.node}, Node-API ${process.versions.napi}`);
    expect(msg).toContain('no prebuild in prebuilds/linux-riscv64 fits and src/native is not built');
    expect(msg).toContain('`npm rebuild some-pkg`');

    // A file that is there but does not load: dlopen's reason, still on one line.
    const bad = await root({ 'package.json': '{"name":"some-pkg"}', 'prebuilds/linux-x64/node.napi.glibc.node': 'not an ELF file\n'.repeat(100) });
    const msg2 = (() => { try { loadAddon(bad, x64); } catch (e) { return (e as Error).message; } })()!;
    expect(msg2).not.toContain('\n');
    expect(msg2).toMatch(/prebuilds\/linux-x64\/node\.napi\.glibc\.node: .*(invalid ELF header|too short)/);
  });
});

describe('CLI without a loadable addon', () => {
  let pkg: string;
  const cli = (args: string[]) => spawnAsync(process.execPath, [path.join(pkg, 'dist/src/cli/main.js'), ...args]);
  beforeAll(async () => {
    // The bundled CLI with its package.json, and no prebuilds or build beside it.
    pkg = await tempDir('builder-noaddon-');
    await fs.mkdir(path.join(pkg, 'dist/src/cli'), { recursive: true });
    for (const f of ['main.js', 'builder.cjs']) await fs.copyFile(path.join(projectRoot, 'dist/src/cli', f), path.join(pkg, 'dist/src/cli', f));
    await fs.copyFile(path.join(projectRoot, 'package.json'), path.join(pkg, 'package.json'));
  });
  afterAll(async () => {
    await fs.rm(pkg, { recursive: true, force: true });
  });

  it('runs the commands that do not touch files', async () => {
    for (const args of [['--help'], ['imagetools', '--help'], ['imagetools', 'inspect', '--help'], ['login', '--help'], ['serve', '--help']]) {
      const r = await cli(args);
      expect({ args, code: r.status, stderr: r.stderr }).toEqual({ args, code: 0, stderr: '' });
    }
  });

  // The registry asks for the credentials login stored: imagetools used them.
  it('logs in to a registry and inspects and joins images there', async () => {
    let reg: TestRegistry | undefined;
    const dockerConfig = await tempDir('builder-dockercfg-');
    try {
      reg = await startRegistry({ htpasswd: { username: 'alice', password: 's3cret' } });
      const env = { ...process.env, DOCKER_CONFIG: dockerConfig };
      const run = (args: string[]) => spawnAsync(process.execPath, [path.join(pkg, 'dist/src/cli/main.js'), ...args], { env });
      let r = await run(['login', reg.host, '-u', 'alice', '-p', 's3cret']);
      expect(r.status, r.stderr).toBe(0);
      await ensureBusybox();
      await pushLayout(`${busyboxLayout}:${busyboxTag}`, `${reg.host}/busybox:${busyboxTag}`, ['--all', '--dest-creds', 'alice:s3cret']);
      r = await run(['imagetools', 'inspect', `${reg.host}/busybox:${busyboxTag}`]);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toContain('linux/arm64');
      r = await run(['imagetools', 'create', '-t', `${reg.host}/joined:1`, `${reg.host}/busybox:${busyboxTag}`]);
      expect(r.status, r.stderr).toBe(0);
      r = await run(['imagetools', 'inspect', `${reg.host}/joined:1`]);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toContain('linux/amd64');
    } finally {
      await reg?.stop();
      await fs.rm(dockerConfig, { recursive: true, force: true });
    }
  });

  it('fails a build with one line naming the platform, the ABI and the fix', async () => {
    const ctx = await makeContext({ Dockerfile: 'FROM scratch\nCOPY a /a\n', a: 'a\n' });
    const state = await tempDir('builder-root-');
    try {
      const r = await cli(['build', '--root', state, '--output', `type=local,dest=${path.join(state, 'out')}`, ctx]);
      expect(r.status).toBe(1);
      const { name } = JSON.parse(await fs.readFile(path.join(projectRoot, 'package.json'), 'utf8'));
      expect(r.stderr).toMatch(/^ERROR: the native addon \(fsx\.node\) cannot be loaded on linux-x64 \(glibc\), Node [\d.]+, Node-API \d+: [^\n]+\n$/);
      expect(r.stderr).toContain(`; to compile it, install a C compiler, make and python3, then run \`npm rebuild ${name}\`\n`);
    } finally {
      await fs.rm(ctx, { recursive: true, force: true });
      await fs.rm(state, { recursive: true, force: true });
    }
  });
});

describe('install script', () => {
  // A PATH with node and nothing else: no compiler, make, python or node-gyp.
  const env = { ...process.env, PATH: path.dirname(process.execPath) === '/usr/bin' ? '/nonexistent' : path.dirname(process.execPath) };
  const install = (pkg: string) => spawnAsync(process.execPath, [path.join(pkg, 'scripts/install-native.mjs')], { env });
  const script = () => fs.readFile(path.join(projectRoot, 'scripts/install-native.mjs'));

  it('compiles nothing where the prebuild loads', async () => {
    const pkg = await tree({ 'scripts/install-native.mjs': await script(), 'prebuilds/linux-x64/node.napi.glibc.node': await fs.readFile(prebuilt) });
    try {
      const r = await install(pkg);
      expect({ code: r.status, stderr: r.stderr, stdout: r.stdout }).toEqual({ code: 0, stderr: '', stdout: '' });
      await expect(fs.access(path.join(pkg, 'src/native/build'))).rejects.toThrow();
    } finally {
      await fs.rm(pkg, { recursive: true, force: true });
    }
  });

  it('compiles where none loads, and says in one line what is missing when it cannot', async () => {
    const pkg = await tree({ 'scripts/install-native.mjs': await script() });
    try {
      const r = await install(pkg);
      expect(r.status).toBe(1);
      expect(r.stderr).toBe('native addon: no prebuild loads on linux-x64 (glibc), and compiling it failed: node-gyp: spawnSync node-gyp ENOENT; it needs a C compiler, make and python3\n');
    } finally {
      await fs.rm(pkg, { recursive: true, force: true });
    }
  });
});
