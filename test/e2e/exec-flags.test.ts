// buildx's build-wide settings of RUN containers, on the real CLI, registry and runc: --network, --add-host,
// --shm-size, --ulimit, --cgroup-parent; what each does inside the container, what enters the cache key
// (as in BuildKit: host names but not their addresses, the network, limits, the parent cgroup, the /dev/shm
// mount), and one-line errors for bad values.
import { describe, it, expect, inject, beforeAll } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { runCli, makeContext, tempDir, lastLine, type CliResult } from '../helpers/cli.js';

const registry = inject('registry');
const base = `${registry}/busybox:1.35`;

async function buildLocal(root: string, dockerfile: string, extra: string[] = []) {
  const ctx = await makeContext({ Dockerfile: dockerfile });
  const dest = await tempDir('builder-execflags-out-');
  const res = await runCli(['build', '--root', root, '--progress', 'plain', ...extra, '--output', `type=local,dest=${dest}`, ctx]);
  return { res, dest };
}

const read = (dir: string, p: string) => fs.readFile(path.join(dir, p), 'utf8');

/** Whether the plain progress shows the step whose name contains `step` as CACHED. */
function cached(res: CliResult, step: string): boolean {
  const line = res.stderr.split('\n').find((l) => /^#\d+ \[/.test(l) && l.includes(step));
  if (!line) throw new Error(`no step "${step}" in:\n${res.stderr}`);
  const n = line.split(' ')[0];
  return res.stderr.split('\n').includes(`${n} CACHED`);
}

describe('--add-host', () => {
  let root: string;
  beforeAll(async () => { root = await tempDir('builder-root-'); });

  it('adds /etc/hosts entries in host:ip, host=ip, [v6], list and host-gateway forms to every RUN', async () => {
    const { res, dest } = await buildLocal(root, `FROM ${base} AS a\nRUN cat /etc/hosts > /hosts-a\nFROM ${base}\nCOPY --from=a /hosts-a /\nRUN cat /etc/hosts > /hosts\n`, [
      '--add-host', 'db:10.0.0.5', '--add-host', 'Web=10.0.0.6', '--add-host', 'v6:[fd00::1]', '--add-host', 'multi=10.0.0.7,10.0.0.8',
      '--add-host', 'gw:host-gateway',
    ]);
    expect(res.code, res.stderr).toBe(0);
    const hosts = await read(dest, 'hosts');
    expect(hosts).toBe('127.0.0.1\tlocalhost buildkitsandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n' +
      '10.0.0.5\tdb\n10.0.0.6\tweb\nfd00::1\tv6\n10.0.0.7\tmulti\n10.0.0.8\tmulti\n127.0.0.1\tgw\n');
    expect(await read(dest, 'hosts-a')).toBe(hosts);
  });

  it('a changed address reuses the step (BuildKit keeps addresses out of the key); a new name runs it', async () => {
    const df = `FROM ${base}\nRUN cat /etc/hosts > /hosts\n`;
    const first = await buildLocal(root, df, ['--add-host', 'cachehost:10.1.1.1']);
    expect(first.res.code, first.res.stderr).toBe(0);
    expect(cached(first.res, 'RUN cat /etc/hosts')).toBe(false);
    const moved = await buildLocal(root, df, ['--add-host', 'cachehost:10.2.2.2']);
    expect(moved.res.code, moved.res.stderr).toBe(0);
    expect(cached(moved.res, 'RUN cat /etc/hosts')).toBe(true);
    const renamed = await buildLocal(root, df, ['--add-host', 'otherhost:10.2.2.2']);
    expect(renamed.res.code, renamed.res.stderr).toBe(0);
    expect(cached(renamed.res, 'RUN cat /etc/hosts')).toBe(false);
    expect(await read(renamed.dest, 'hosts')).toContain('10.2.2.2\totherhost\n');
  });

  it('a bad entry is a one-line error', async () => {
    for (const [arg, msg] of [
      ['nohost', 'ERROR: invalid --add-host "nohost": expected host:ip or host=ip'],
      ['db:not-an-ip', 'ERROR: invalid --add-host "db:not-an-ip": expected host:ip or host=ip'],
    ]) {
      const { res } = await buildLocal(root, `FROM ${base}\n`, ['--add-host', arg]);
      expect(res.code).toBe(1);
      expect(res.stderr.trim()).toBe(msg);
    }
  });
});

describe('--network', () => {
  let root: string;
  beforeAll(async () => { root = await tempDir('builder-root-'); });

  it('none: RUN (and RUN --network=default) get only loopback; RUN --network=host still overrides', async () => {
    const { res, dest } = await buildLocal(root,
      `FROM ${base}\nRUN ls /sys/class/net > /plain\nRUN --network=default ls /sys/class/net > /default\nRUN --network=host ls /sys/class/net > /host\n`,
      ['--network', 'none', '--allow', 'network.host']);
    expect(res.code, res.stderr).toBe(0);
    expect((await read(dest, 'plain')).trim()).toBe('lo');
    expect((await read(dest, 'default')).trim()).toBe('lo');
    expect((await read(dest, 'host')).trim().split('\n').length).toBeGreaterThan(1);
  });

  it('host needs no --allow (asking for it allows it, as in buildx), also for RUN --network=host', async () => {
    const { res, dest } = await buildLocal(root, `FROM ${base}\nRUN ls /sys/class/net > /a\nRUN --network=host ls /sys/class/net > /b\n`, ['--network', 'host']);
    expect(res.code, res.stderr).toBe(0);
    expect((await read(dest, 'a')).trim().split('\n').length).toBeGreaterThan(1);
    expect(await read(dest, 'b')).toBe(await read(dest, 'a'));
  });

  it('the network mode is part of the cache key', async () => {
    const df = `FROM ${base}\nRUN ls /sys/class/net > /nets\n`;
    const a = await buildLocal(root, df, ['--network', 'default']);
    expect(a.res.code, a.res.stderr).toBe(0);
    const again = await buildLocal(root, df);
    expect(cached(again.res, 'RUN ls /sys/class/net')).toBe(true);
    const none = await buildLocal(root, df, ['--network', 'none']);
    expect(none.res.code, none.res.stderr).toBe(0);
    expect(cached(none.res, 'RUN ls /sys/class/net')).toBe(false);
    expect((await read(none.dest, 'nets')).trim()).toBe('lo');
  });

  it('another mode is a one-line error', async () => {
    const { res } = await buildLocal(root, `FROM ${base}\n`, ['--network', 'bridge']);
    expect(res.code).toBe(1);
    expect(res.stderr.trim()).toBe('ERROR: invalid --network "bridge": network mode not supported (use default, none or host)');
  });
});

describe('--shm-size', () => {
  let root: string;
  beforeAll(async () => { root = await tempDir('builder-root-'); });

  it('sizes /dev/shm (docker units; 64m without it), a writable tmpfs in every RUN', async () => {
    const df = `FROM ${base}\nRUN grep ' /dev/shm ' /proc/mounts > /shm && echo x > /dev/shm/f && stat -c %a /dev/shm > /mode\n`;
    const sized = await buildLocal(root, df, ['--shm-size', '128m']);
    expect(sized.res.code, sized.res.stderr).toBe(0);
    expect(await read(sized.dest, 'shm')).toMatch(/^\S+ \/dev\/shm tmpfs \S*size=131072k/);
    expect((await read(sized.dest, 'mode')).trim()).toBe('1777');
    const bytes = await buildLocal(root, df, ['--shm-size', '33554432']);
    expect(bytes.res.code, bytes.res.stderr).toBe(0);
    expect(await read(bytes.dest, 'shm')).toMatch(/size=32768k/);
    expect(cached(bytes.res, 'RUN grep')).toBe(false);
    const plain = await buildLocal(root, df);
    expect(plain.res.code, plain.res.stderr).toBe(0);
    expect(await read(plain.dest, 'shm')).toMatch(/size=65536k/);
    // The mount point leaves the layer as the default one does.
    const listing = async (d: string) => fs.readdir(path.join(d, 'dev')).catch(() => null);
    expect(await listing(sized.dest)).toEqual(await listing(plain.dest));
  });

  it('a bad size is a one-line error', async () => {
    const { res } = await buildLocal(root, `FROM ${base}\n`, ['--shm-size', '12x']);
    expect(res.code).toBe(1);
    expect(res.stderr.trim()).toBe(`ERROR: invalid --shm-size "12x": invalid suffix: 'x'`);
  });
});

describe('--ulimit', () => {
  let root: string;
  beforeAll(async () => { root = await tempDir('builder-root-'); });

  it('sets the limits of RUN processes; -1 is unlimited; other limits keep their defaults', async () => {
    const df = `FROM ${base}\nRUN cat /proc/self/limits > /limits\n`;
    const { res, dest } = await buildLocal(root, df, ['--ulimit', 'nproc=100:200', '--ulimit', 'core=-1', '--ulimit', 'stack=8388608']);
    expect(res.code, res.stderr).toBe(0);
    const limits = await read(dest, 'limits');
    expect(limits).toMatch(/^Max processes\s+100\s+200\s+processes\s*$/m);
    expect(limits).toMatch(/^Max core file size\s+unlimited\s+unlimited\s+bytes\s*$/m);
    expect(limits).toMatch(/^Max stack size\s+8388608\s+8388608\s+bytes\s*$/m);
    const plain = await buildLocal(root, df);
    expect(cached(plain.res, 'RUN cat /proc/self/limits')).toBe(false);
    // The default open-files limit stays when --ulimit does not name it.
    const nofile = (t: string) => /^Max open files\s+(\d+)\s+(\d+)/m.exec(t)?.slice(1);
    expect(nofile(limits)).toEqual(nofile(await read(plain.dest, 'limits')));
    const files = await buildLocal(root, df, ['--ulimit', 'nofile=1024:2048']);
    expect(files.res.code, files.res.stderr).toBe(0);
    expect(nofile(await read(files.dest, 'limits'))).toEqual(['1024', '2048']);
  });

  it('a bad limit is a one-line error', async () => {
    for (const [arg, msg] of [
      ['nofiles=1', 'invalid --ulimit "nofiles=1": invalid ulimit type: nofiles (one of core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack)'],
      ['nofile=2048:1024', 'invalid --ulimit "nofile=2048:1024": soft limit must be less than or equal to hard limit: 2048 > 1024'],
      ['nofile', 'invalid --ulimit "nofile": expected type=soft[:hard], e.g. nofile=1024:2048'],
    ]) {
      const { res } = await buildLocal(root, `FROM ${base}\n`, ['--ulimit', arg]);
      expect(res.code).toBe(1);
      expect(res.stderr.trim()).toBe(`ERROR: ${msg}`);
    }
  });
});

describe('--cgroup-parent', () => {
  it('puts RUN containers under the parent cgroup, and is part of the cache key', async () => {
    const root = await tempDir('builder-root-');
    const parent = `builder-test-${process.pid}`;
    const df = `FROM ${base}\nRUN cat /proc/self/cgroup > /cgroup\n`;
    try {
      const { res, dest } = await buildLocal(root, df, ['--cgroup-parent', parent]);
      expect(res.code, res.stderr).toBe(0);
      const lines = (await read(dest, 'cgroup')).trim().split('\n');
      // Every hierarchy the runtime placed it in: /<parent>/builder/<container id>.
      expect(lines.filter((l) => new RegExp(`:/${parent}/builder/[0-9a-f]+$`).test(l)).length).toBeGreaterThan(0);
      const plain = await buildLocal(root, df);
      expect(cached(plain.res, 'RUN cat /proc/self/cgroup')).toBe(false);
      expect(await read(plain.dest, 'cgroup')).not.toContain(parent);
    } finally {
      // The runtime removes the container's cgroup, not the parents it created.
      for (const h of await fs.readdir('/sys/fs/cgroup').catch(() => [] as string[])) {
        for (const dir of [`/sys/fs/cgroup/${h}/${parent}/builder`, `/sys/fs/cgroup/${h}/${parent}`, `/sys/fs/cgroup/${parent}/builder`, `/sys/fs/cgroup/${parent}`]) {
          await fs.rmdir(dir).catch(() => undefined);
        }
      }
    }
  });
});
