// RUN --mount (cache, bind, tmpfs, secret, ssh), RUN --network and --security with buildx's --allow, on
// the real CLI, registry and runc. Secrets are checked absent from every byte the build produced.
import { describe, it, expect, inject, beforeAll } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { runCli, makeContext, tempDir, lastLine } from '../helpers/cli.js';
import { umociUnpack } from '../helpers/layout.js';

const exec = promisify(execFile);
const registry = inject('registry');
const base = `${registry}/busybox:1.35`;

async function buildLocal(root: string, files: Record<string, string>, extra: string[] = []) {
  const ctx = await makeContext(files);
  const dest = await tempDir('builder-mounts-out-');
  const res = await runCli(['build', '--root', root, '--progress', 'plain', ...extra, '--output', `type=local,dest=${dest}`, ctx]);
  return { res, dest, ctx };
}

const read = (dir: string, p: string) => fs.readFile(path.join(dir, p), 'utf8');
const exists = (dir: string, p: string) => fs.lstat(path.join(dir, p)).then(() => true, () => false);

describe('RUN --mount=type=cache', () => {
  let root: string;
  beforeAll(async () => { root = await tempDir('builder-root-'); });

  it('keeps its contents across builds, by target or by id, and never in the image', async () => {
    const first = await buildLocal(root, {
      Dockerfile: `FROM ${base}\nRUN --mount=type=cache,target=/var/cache/app echo one >> /var/cache/app/log && cat /var/cache/app/log > /out1\n` +
        'RUN --mount=type=cache,id=shared,target=/a echo from-a > /a/f\n',
    });
    expect(first.res.code, first.res.stderr).toBe(0);
    expect(await read(first.dest, 'out1')).toBe('one\n');
    const second = await buildLocal(root, {
      Dockerfile: `FROM ${base}\nRUN --mount=type=cache,target=/var/cache/app echo two >> /var/cache/app/log && cat /var/cache/app/log > /out2\n` +
        'RUN --mount=type=cache,id=shared,target=/b cat /b/f > /out3\n',
    });
    expect(second.res.code, second.res.stderr).toBe(0);
    expect(await read(second.dest, 'out2')).toBe('one\ntwo\n');
    expect(await read(second.dest, 'out3')).toBe('from-a\n');
    // The mount points the runtime made are not part of the layer; the base's /var/cache stays empty.
    expect(await exists(second.dest, 'var/cache/app')).toBe(false);
    expect(await exists(second.dest, 'b')).toBe(false);
  });

  it('creates the directory with mode, uid and gid, and can be seeded from a stage', async () => {
    const { res, dest } = await buildLocal(root, {
      Dockerfile: `FROM ${base} AS seed\nRUN mkdir /seed && echo seeded > /seed/s\n` +
        `FROM ${base}\nRUN --mount=type=cache,id=perm-${Date.now()},target=/c,uid=1000,gid=1001,mode=0710 stat -c '%u %g %a' /c > /perm\n` +
        `RUN --mount=type=cache,id=seeded-${Date.now()},target=/s,from=seed,source=/seed cat /s/s > /seeded\n`,
    });
    expect(res.code, res.stderr).toBe(0);
    expect(await read(dest, 'perm')).toBe('1000 1001 710\n');
    expect(await read(dest, 'seeded')).toBe('seeded\n');
  });
});

describe('RUN --mount=type=cache sharing', () => {
  it('locked: two stages using one cache id at the same time take turns', async () => {
    const root = await tempDir('builder-root-');
    const id = `locked-${Date.now()}`;
    const step = (n: string) => `RUN --mount=type=cache,id=${id},target=/c,sharing=locked ` +
      `echo ${n}-start >> /c/log && sleep 1 && echo ${n}-end >> /c/log && cp /c/log /log-${n}\n`;
    const { res, dest } = await buildLocal(root, {
      Dockerfile: `FROM ${base} AS a\n${step('a')}FROM ${base} AS b\n${step('b')}` +
        `FROM ${base}\nCOPY --from=a /log-a /\nCOPY --from=b /log-b /\n`,
    });
    expect(res.code, res.stderr).toBe(0);
    const last = [await read(dest, 'log-a'), await read(dest, 'log-b')].sort((x, y) => x.length - y.length)[1];
    const lines = last.trim().split('\n');
    expect(lines).toHaveLength(4);
    // Each start is directly followed by its own end: never interleaved.
    expect(lines[1]).toBe(lines[0].replace('start', 'end'));
    expect(lines[3]).toBe(lines[2].replace('start', 'end'));
  });
});

describe('RUN --mount=type=cache sharing across builds', () => {
  it('locked: two builds on one state directory take turns', async () => {
    const root = await tempDir('builder-root-');
    const id = `locked-x-${Date.now()}`;
    const build = (n: string) => buildLocal(root, {
      Dockerfile: `FROM ${base}\nRUN --mount=type=cache,id=${id},target=/c,sharing=locked ` +
        `echo ${n}-start >> /c/log && sleep 1 && echo ${n}-end >> /c/log\n`,
    });
    const [a, b] = await Promise.all([build('a'), build('b')]);
    expect(a.res.code, a.res.stderr).toBe(0);
    expect(b.res.code, b.res.stderr).toBe(0);
    const key = createHash('sha256').update(id).digest('hex');
    const lines = (await read(path.join(root, 'cache-mounts', key), 'log')).trim().split('\n');
    expect(lines).toHaveLength(4);
    // Each start is directly followed by its own end: never interleaved.
    expect(lines[1]).toBe(lines[0].replace('start', 'end'));
    expect(lines[3]).toBe(lines[2].replace('start', 'end'));
    // The lock is released: nothing but the cache directory is left.
    expect(await fs.readdir(path.join(root, 'cache-mounts'))).toEqual([key]);
  });
});

describe('RUN --mount=type=bind and tmpfs', () => {
  let root: string;
  beforeAll(async () => { root = await tempDir('builder-root-'); });

  it('binds the context read-only by default, a stage read-write with writes discarded', async () => {
    const { res, dest, ctx } = await buildLocal(root, {
      Dockerfile: `FROM ${base} AS other\nRUN mkdir -p /out && echo staged > /out/f\n` +
        `FROM ${base}\nRUN --mount=type=bind,source=data,target=/mnt/data cat /mnt/data/f > /ctx; touch /mnt/data/x 2> /ro-err || true\n` +
        'RUN --mount=type=bind,from=other,source=/out,target=/o,rw cat /o/f > /staged && echo more > /o/new && ls /o > /listing\n' +
        'RUN --mount=type=tmpfs,target=/t,size=1m grep " /t " /proc/mounts > /tmpfs && echo x > /t/x\n',
      'data/f': 'from-context\n',
    });
    expect(res.code, res.stderr).toBe(0);
    expect(await read(dest, 'ctx')).toBe('from-context\n');
    expect(await read(dest, 'ro-err')).toMatch(/Read-only file system/);
    expect(await fs.readdir(path.join(ctx, 'data'))).toEqual(['f']);
    expect(await read(dest, 'staged')).toBe('staged\n');
    expect((await read(dest, 'listing')).split('\n')).toContain('new');
    expect(await read(dest, 'tmpfs')).toMatch(/^tmpfs \/t tmpfs .*size=1024k/);
    for (const p of ['o', 't', 'mnt/data']) expect(await exists(dest, p), p).toBe(false);
  });

  it('a missing bind source names the Dockerfile line', async () => {
    const { res } = await buildLocal(root, { Dockerfile: `FROM ${base}\n\nRUN --mount=type=bind,source=nope,target=/n true\n` });
    expect(res.code).toBe(1);
    expect(lastLine(res.stderr)).toMatch(/^ERROR: Dockerfile:3: RUN failed: mount source "\/nope": not found$/);
  });

  it('a bad mount flag is a one-line error naming the line', async () => {
    const { res } = await buildLocal(root, { Dockerfile: `FROM ${base}\nRUN --mount=type=cache,target=/c,size=1m true\n` });
    expect(res.code).toBe(1);
    expect(lastLine(res.stderr)).toMatch(/^ERROR: Dockerfile:2: .*unexpected key 'size' for mount type 'cache'/);
  });
});

describe('RUN --mount=type=secret', () => {
  const value = `s3cr3t-${process.pid}-${Date.now()}`;
  let root: string;
  let secretFile: string;
  beforeAll(async () => {
    root = await tempDir('builder-root-');
    secretFile = path.join(await tempDir('builder-secret-'), 'token');
    await fs.writeFile(secretFile, value);
  });

  it('is checked, then absent from every layer, config, log and the state directory', async () => {
    const ctx = await makeContext({
      Dockerfile: `FROM ${base}\n` +
        'RUN --mount=type=secret,id=tok wc -c < /run/secrets/tok > /len && stat -c "%a %u" /run/secrets/tok > /file-mode\n' +
        'RUN --mount=type=secret,id=tok,env=TOKEN,target=/etc/tok,uid=1000,mode=0440 echo ${#TOKEN} > /env-len && stat -c "%a %u" /etc/tok > /env-file-mode\n' +
        'RUN --mount=type=secret,id=absent true && echo optional > /optional-ok\n',
    });
    const out = await tempDir('builder-secret-out-');
    const res = await runCli(['build', '--root', root, '--progress', 'plain', '--secret', `id=tok,src=${secretFile}`,
      '-t', 'secret/test:1', '--output', `type=oci,dest=${out}/image.tar`, ctx]);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stderr + res.stdout).not.toContain(value);
    const layout = path.join(out, 'layout');
    await fs.mkdir(layout);
    await exec('tar', ['-xf', path.join(out, 'image.tar'), '-C', layout]);
    const rootfs = path.join(out, 'bundle');
    await umociUnpack(layout, '1', rootfs);
    const fsroot = path.join(rootfs, 'rootfs');
    expect(await read(fsroot, 'len')).toBe(`${value.length}\n`);
    expect(await read(fsroot, 'file-mode')).toBe('400 0\n');
    expect(await read(fsroot, 'env-len')).toBe(`${value.length}\n`);
    expect(await read(fsroot, 'env-file-mode')).toBe('440 1000\n');
    expect(await read(fsroot, 'optional-ok')).toBe('optional\n');
    expect(await exists(fsroot, 'run/secrets')).toBe(false);
    // Every blob, decompressed when it is a layer.
    for (const blob of await fs.readdir(path.join(layout, 'blobs/sha256'))) {
      let data = await fs.readFile(path.join(layout, 'blobs/sha256', blob));
      if (data[0] === 0x1f && data[1] === 0x8b) data = gunzipSync(data);
      expect(data.includes(value), blob).toBe(false);
    }
    const grep = await exec('grep', ['-rl', '--', value, root]).catch((e) => ({ stdout: String(e.stdout ?? '') }));
    expect(grep.stdout).toBe('');
  });

  it('a required secret that was not given is a one-line error', async () => {
    const ctx = await makeContext({ Dockerfile: `FROM ${base}\nRUN --mount=type=secret,id=missing,required true\n` });
    const res = await runCli(['build', '--root', root, ctx]);
    expect(res.code).toBe(1);
    expect(lastLine(res.stderr)).toMatch(/^ERROR: Dockerfile:2: RUN failed: secret missing: not found/);
  });
});

describe('RUN --mount=type=ssh', () => {
  it('exposes the agent as a socket owned by the user, with SSH_AUTH_SOCK', async () => {
    const root = await tempDir('builder-root-');
    const agentDir = await tempDir('builder-agent-');
    const sock = path.join(agentDir, 'agent.sock');
    const server = net.createServer((c) => c.end('agent-hello\n'));
    await new Promise<void>((r) => server.listen(sock, () => r()));
    try {
      const { res, dest } = await buildLocal(root, {
        Dockerfile: `FROM ${base}\nRUN --mount=type=ssh,uid=1000 test -S "$SSH_AUTH_SOCK" && echo "$SSH_AUTH_SOCK" > /sock && stat -c "%u %a" "$SSH_AUTH_SOCK" > /perm\n`,
      }, ['--ssh', `default=${sock}`]);
      expect(res.code, res.stderr).toBe(0);
      expect(await read(dest, 'sock')).toBe('/run/buildkit/ssh_agent.0\n');
      expect(await read(dest, 'perm')).toBe('1000 600\n');
    } finally {
      server.close();
    }
  });
});

describe('RUN --mount=type=ssh, not forwarded', () => {
  it('required: a one-line error saying how to forward it; optional: the RUN goes on without it', async () => {
    const root = await tempDir('builder-root-');
    const req = await buildLocal(root, { Dockerfile: `FROM ${base}\nRUN --mount=type=ssh,required true\n` });
    expect(req.res.code).toBe(1);
    expect(lastLine(req.res.stderr)).toBe('ERROR: Dockerfile:2: RUN failed: no SSH agent "default" forwarded (provide it with --ssh default=$SSH_AUTH_SOCK)');
    const opt = await buildLocal(root, { Dockerfile: `FROM ${base}\nRUN --mount=type=ssh test ! -e /run/buildkit/ssh_agent.0 && echo none > /r\n` });
    expect(opt.res.code, opt.res.stderr).toBe(0);
    expect(await read(opt.dest, 'r')).toBe('none\n');
  });
});

describe('RUN --mount=type=bind from an image', () => {
  it('binds a directory of an image that is not a stage', async () => {
    const root = await tempDir('builder-root-');
    const { res, dest } = await buildLocal(root, { Dockerfile: `FROM ${base}\nRUN --mount=from=${base},source=/etc,target=/img-etc cat /img-etc/group | head -1 > /g\n` });
    expect(res.code, res.stderr).toBe(0);
    expect(await read(dest, 'g')).toMatch(/^root:x:0:/);
  });
});

describe('RUN --network and --security', () => {
  let root: string;
  beforeAll(async () => { root = await tempDir('builder-root-'); });

  it('--network=none has only loopback', async () => {
    const { res, dest } = await buildLocal(root, { Dockerfile: `FROM ${base}\nRUN --network=none ls /sys/class/net > /nets\n` });
    expect(res.code, res.stderr).toBe(0);
    expect((await read(dest, 'nets')).trim()).toBe('lo');
  });

  it('--network=host and --security=insecure need --allow, as in buildx', async () => {
    const host = await buildLocal(root, { Dockerfile: `FROM ${base}\n\nRUN --network=host true\n` });
    expect(host.res.code).toBe(1);
    expect(lastLine(host.res.stderr)).toBe('ERROR: Dockerfile:3: RUN --network=host needs the network.host entitlement: add --allow network.host');
    const insecure = await buildLocal(root, { Dockerfile: `FROM ${base}\nRUN --security=insecure true\n` });
    expect(insecure.res.code).toBe(1);
    expect(lastLine(insecure.res.stderr)).toMatch(/^ERROR: Dockerfile:2: RUN --security=insecure needs .*--allow security\.insecure$/);
    const allowed = await buildLocal(root, {
      Dockerfile: `FROM ${base}\nRUN --network=host --security=insecure grep Seccomp: /proc/self/status > /seccomp && ls /sys/class/net > /nets\n`,
    }, ['--allow', 'network.host,security.insecure']);
    expect(allowed.res.code, allowed.res.stderr).toBe(0);
    expect(await read(allowed.dest, 'seccomp')).toMatch(/Seccomp:\s+0/);
    expect((await read(allowed.dest, 'nets')).trim().split('\n').length).toBeGreaterThan(1);
  });

  it('an unknown entitlement lists the valid ones', async () => {
    const { res } = await buildLocal(root, { Dockerfile: `FROM ${base}\n` }, ['--allow', 'network.everything']);
    expect(res.code).toBe(1);
    expect(lastLine(res.stderr)).toBe('ERROR: invalid --allow: unknown entitlement "network.everything" (valid: network.host, security.insecure)');
  });
});
