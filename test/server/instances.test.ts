// Builder instances as buildx's: create/use/ls/inspect/rm, stored in the config directory, and
// `build --builder NAME` / BUILDER_BUILDER choosing one.
import { describe, it, expect, inject, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { serve, type Server } from '../../src/server/server.js';
import { chooseBuilder, instancesDir } from '../../src/server/instances.js';
import { makeContext, runCli, tempDir, lastLine } from '../helpers/cli.js';

const registry = inject('registry');
const base = `${registry}/busybox:1.35`;

describe('chooseBuilder', () => {
  it('takes --builder, then BUILDER_BUILDER, then BUILDER_HOST, then the current instance', async () => {
    const config = await tempDir('builder-inst-choose-');
    const env = { XDG_CONFIG_HOME: config };
    expect(chooseBuilder(undefined, env)).toEqual({ kind: 'local' });
    await fs.mkdir(instancesDir(env), { recursive: true });
    await fs.writeFile(path.join(instancesDir(env), 'current'), 'fleet\n');
    expect(chooseBuilder(undefined, env)).toEqual({ kind: 'instance', name: 'fleet' });
    expect(chooseBuilder(undefined, { ...env, BUILDER_HOST: 'unix:///s' })).toEqual({ kind: 'address', addr: 'unix:///s' });
    expect(chooseBuilder(undefined, { ...env, BUILDER_HOST: 'unix:///s', BUILDER_BUILDER: 'other' })).toEqual({ kind: 'instance', name: 'other' });
    expect(chooseBuilder('tcp://127.0.0.1:1', { ...env, BUILDER_BUILDER: 'other' })).toEqual({ kind: 'address', addr: 'tcp://127.0.0.1:1' });
    expect(chooseBuilder('default', env)).toEqual({ kind: 'local' });
    expect(instancesDir({ BUILDER_CONFIG: '/etc/builder/config.json' })).toBe('/etc/builder/instances');
  });
});

describe('builder create/use/ls/inspect/rm', () => {
  let server: Server;
  let sock: string;
  const env: Record<string, string> = {};

  beforeAll(async () => {
    env.XDG_CONFIG_HOME = await tempDir('builder-inst-config-');
    env.BUILDER_CONFIG = '';
    sock = path.join(await tempDir('builder-inst-sock-'), 'b.sock');
    server = await serve({ addr: `unix://${sock}`, root: await tempDir('builder-inst-root-'), platforms: 'linux/amd64,linux/riscv64', version: '1.2.3' });
  });
  afterAll(() => server?.close());

  it('creates an instance, appends a node, lists and inspects it, uses it for builds, removes it', async () => {
    expect((await runCli(['create', '--name', 'team', '--platform', 'linux/arm64', `unix://${sock}`], { env })).stdout).toBe('team\n');
    const stored = JSON.parse(await fs.readFile(path.join(env.XDG_CONFIG_HOME, 'builder/instances/team.json'), 'utf8'));
    expect(stored).toEqual({ name: 'team', driver: 'remote', nodes: [{ name: 'team0', endpoint: `unix://${sock}`, platforms: ['linux/arm64'] }] });
    // No temp files left beside it.
    expect((await fs.readdir(path.join(env.XDG_CONFIG_HOME, 'builder/instances'))).sort()).toEqual(['team.json']);

    const again = await runCli(['create', '--name', 'team', `unix://${sock}`], { env });
    expect(again.code).toBe(1);
    expect(lastLine(again.stderr)).toBe('ERROR: existing instance for "team" but no append mode, specify the node name to make changes for existing instances');
    const added = await runCli(['create', '--name', 'team', '--append', '--node', 'far', 'tcp://127.0.0.1:9'], { env });
    expect(added.code, added.stderr).toBe(0);

    const ls = await runCli(['ls'], { env });
    expect(ls.code, ls.stderr).toBe(0);
    expect(ls.stdout).toMatch(/^default\*\s+local\n \\_ default\s+ \\_ \(local engine\)\s+running\s+\S+\s+linux\/\w+\n/m);
    expect(ls.stdout).toMatch(/^team\s+remote\n \\_ team0\s+ \\_ unix:\/\/\S+\s+running\s+1\.2\.3\s+linux\/arm64\*, linux\/amd64, linux\/riscv64(, \(linux\/[^)]+\))*\n \\_ far\s+ \\_ tcp:\/\/127\.0\.0\.1:9\s+inactive\n/m);
    expect(ls.stdout).toContain('Cannot load builder team/far: cannot reach the builder at tcp://127.0.0.1:9: ECONNREFUSED');

    const inspect = await runCli(['builder', 'inspect', 'team'], { env });
    expect(inspect.code, inspect.stderr).toBe(0);
    expect(inspect.stdout).toContain('Name:   team\nDriver: remote\n\nNodes:\nName:                  team0\n');
    expect(inspect.stdout).toContain('Builds:                0 running, 0 queued\nPlatforms:             linux/arm64*, linux/amd64, linux/riscv64\n');
    const boot = await runCli(['builder', 'inspect', '--bootstrap', 'team'], { env });
    expect(boot.code).toBe(1);
    expect(lastLine(boot.stderr)).toMatch(/^ERROR: builder team: node far is inactive: cannot reach the builder at tcp:\/\/127\.0\.0\.1:9: ECONNREFUSED$/);

    // `use` makes builds go there; the dead node is skipped with one line naming it.
    expect((await runCli(['use', 'team'], { env })).code).toBe(0);
    expect((await runCli(['ls'], { env })).stdout).toMatch(/^team\*\s+remote$/m);
    const ctx = await makeContext({ Dockerfile: `FROM ${base}\nRUN echo on-the-server > /where\n` });
    const dest = await tempDir('builder-inst-out-');
    const built = await runCli(['build', '--progress', 'plain', '-o', `type=local,dest=${dest}`, ctx], { env });
    expect(built.code, built.stderr).toBe(0);
    expect(await fs.readFile(path.join(dest, 'where'), 'utf8')).toBe('on-the-server\n');
    // BUILDER_BUILDER and --builder pick another; `default` is the local engine.
    const missing = await runCli(['build', ctx], { env: { ...env, BUILDER_BUILDER: 'nope' } });
    expect(lastLine(missing.stderr)).toBe('ERROR: no builder "nope" found');
    const local = await runCli(['build', '--builder', 'default', '--root', await tempDir('builder-inst-local-'), '--progress', 'plain', ctx], { env });
    expect(local.code, local.stderr).toBe(0);
    expect(local.stderr).not.toContain('skipping node');

    const leave = await runCli(['create', '--name', 'team', '--leave', '--node', 'far'], { env });
    expect(leave.code, leave.stderr).toBe(0);
    expect(JSON.parse(await fs.readFile(path.join(env.XDG_CONFIG_HOME, 'builder/instances/team.json'), 'utf8')).nodes.map((n: { name: string }) => n.name)).toEqual(['team0']);

    expect((await runCli(['builder', 'rm', 'team'], { env })).code).toBe(0);
    expect((await runCli(['ls'], { env })).stdout).toMatch(/^default\*\s+local$/m);
    const gone = await runCli(['builder', 'rm', 'team'], { env });
    expect(lastLine(gone.stderr)).toBe('ERROR: no builder "team" found');
  });

  it('checks names, endpoints and driver options before saving anything', async () => {
    const cases: [string[], string][] = [
      [['create', '--name', '../x', `unix://${sock}`], 'ERROR: invalid builder name "../x": use letters, digits, ".", "_" and "-", starting with a letter or digit'],
      [['create', '--name', 'x', 'http://h:1'], 'ERROR: invalid address "http://h:1": expected unix:///path or tcp://host:port'],
      [['create', '--name', 'x', '--driver', 'docker-container', 'tcp://h:1'], 'ERROR: driver "docker-container" is not supported: only "remote" (builder serve nodes)'],
      [['create', '--name', 'x', '--driver-opt', 'bogus=1', 'tcp://h:1'], 'ERROR: invalid --driver-opt "bogus=1": unknown option "bogus" for driver remote (valid: cacert, cert, key, servername)'],
      [['create', '--name', 'x', '--driver-opt', 'cert=/c.pem', 'tcp://h:1'], 'ERROR: invalid --driver-opt: cert and key go together'],
      [['create', '--name', 'x', '--driver-opt', 'cacert=/does/not/exist', 'tcp://h:1'], 'ERROR: node x0: cannot read cacert /does/not/exist: ENOENT'],
      [['create', '--append', 'tcp://h:1'], 'ERROR: create --append needs --name of the builder to append to'],
      [['use', 'nothing'], 'ERROR: no builder "nothing" found'],
    ];
    for (const [args, error] of cases) {
      const res = await runCli(args, { env });
      expect(res.code, args.join(' ')).toBe(1);
      expect(lastLine(res.stderr)).toBe(error);
    }
    await expect(fs.stat(path.join(env.XDG_CONFIG_HOME, 'builder/instances/x.json'))).rejects.toThrow();
  });
});
