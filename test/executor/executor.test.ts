import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ExecMeta } from '../../solver/llb/ops.js';
import { AbortError, RuntimeNotFoundError } from '../../src/executor/errors.js';
import { OciRuntimeExecutor } from '../../src/executor/runc.js';
import { addUsers, makeRootfs } from './rootfs.js';

let dir: string;
let rootfs: string;

beforeEach(async () => {
  ({ dir, rootfs } = await makeRootfs());
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

function meta(script: string, more: Partial<ExecMeta> = {}): ExecMeta {
  return { args: ['/bin/sh', '-c', script], env: [], cwd: '/', user: '', network: 'host', ...more };
}

async function run(ex: OciRuntimeExecutor, m: ExecMeta, signal?: AbortSignal) {
  const out: Record<'stdout' | 'stderr', string> = { stdout: '', stderr: '' };
  const { exitCode } = await ex.run({ rootfs, meta: m, signal, onOutput: (s, c) => { out[s] += c.toString(); } });
  return { exitCode, ...out };
}

function listContainers(ex: OciRuntimeExecutor): string {
  return execFileSync(ex.runtime, ['--root', ex.runtimeRoot, 'list', '-q'], { encoding: 'utf8' }).trim();
}

/** cgroup directories of a container id that still exist on the host (v1 controllers or v2). */
async function leftoverCgroups(id: string): Promise<string[]> {
  const roots = ['/sys/fs/cgroup', ...(await fs.readdir('/sys/fs/cgroup')).map((c) => path.join('/sys/fs/cgroup', c))];
  const left: string[] = [];
  for (const r of roots) {
    const p = path.join(r, 'builder', id);
    if (await fs.access(p).then(() => true, () => false)) left.push(p);
  }
  return left;
}

async function executor(runtime?: string): Promise<OciRuntimeExecutor> {
  const ex = new OciRuntimeExecutor({ runtime, stateDir: path.join(dir, 'executor') });
  await ex.init();
  return ex;
}

describe('OciRuntimeExecutor with runc', () => {
  it('captures stdout and stderr separately', async () => {
    const r = await run(await executor(), meta('echo hello; echo oops >&2'));
    expect(r).toEqual({ exitCode: 0, stdout: 'hello\n', stderr: 'oops\n' });
  });

  it('propagates the exit code', async () => {
    const ex = await executor();
    expect((await run(ex, meta('exit 3'))).exitCode).toBe(3);
    expect((await run(ex, { ...meta(''), args: ['false'] })).exitCode).toBe(1);
  });

  it('reports a missing executable on stderr', async () => {
    const r = await run(await executor(), { ...meta(''), args: ['nope'] });
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain('executable file not found in $PATH');
  });

  it('sets env with the default PATH, and HOME from passwd', async () => {
    await addUsers(rootfs);
    const r = await run(await executor(), meta('env', { env: ['FOO=bar baz'], user: 'app' }));
    const env = r.stdout.trim().split('\n').sort();
    expect(env).toContain('FOO=bar baz');
    expect(env).toContain('PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
    expect(env).toContain('HOME=/home/app');
    expect(env.some((e) => e.startsWith('HOSTNAME='))).toBe(false);
  });

  it('runs under the hostname buildkitsandbox', async () => {
    expect((await run(await executor(), meta('hostname'))).stdout).toBe('buildkitsandbox\n');
  });

  it('keeps a PATH from meta.env', async () => {
    const r = await run(await executor(), meta('echo $PATH', { env: ['PATH=/bin'] }));
    expect(r.stdout).toBe('/bin\n');
  });

  it('creates a missing cwd owned by the user, 0755', async () => {
    await addUsers(rootfs);
    const r = await run(await executor(), meta('pwd; touch f', { cwd: '/work/dir', user: 'app' }));
    expect(r).toMatchObject({ exitCode: 0, stdout: '/work/dir\n' });
    for (const d of ['work', 'work/dir']) {
      const st = await fs.stat(path.join(rootfs, d));
      expect([st.uid, st.gid, st.mode & 0o7777]).toEqual([1000, 1000, 0o755]);
    }
    expect((await fs.stat(path.join(rootfs, 'work/dir/f'))).uid).toBe(1000);
  });

  it('runs as a named user with supplementary groups', async () => {
    await addUsers(rootfs);
    const r = await run(await executor(), meta('id', { user: 'app' }));
    expect(r.stdout.trim()).toBe('uid=1000(app) gid=1000(app) groups=50(staff),1000(app)');
  });

  it('runs as uid:gid without supplementary groups', async () => {
    await addUsers(rootfs);
    const ex = await executor();
    expect((await run(ex, meta('id', { user: '1000:50' }))).stdout.trim()).toBe('uid=1000(app) gid=50(staff) groups=50(staff)');
    // A uid alone takes its passwd entry's group.
    expect((await run(ex, meta('id', { user: '1000' }))).stdout.trim()).toBe('uid=1000(app) gid=1000(app) groups=50(staff),1000(app)');
  });

  it('runs as root without an /etc/passwd', async () => {
    const r = await run(await executor(), meta('id'));
    expect(r.stdout.trim()).toBe('uid=0 gid=0 groups=0');
  });

  it('runs as root with the default capabilities', async () => {
    const r = await run(await executor(), meta('id -u; cat /proc/self/status; cat /proc/self/limits'));
    expect(r.stdout).toMatch(/Max open files\s+(\d+)\s+\1\s+files/);
    expect(r.stdout.split('\n')[0]).toBe('0');
    // CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD
    // AUDIT_WRITE SETFCAP
    expect(r.stdout).toMatch(/CapEff:\s+00000000a80425fb/);
    expect(r.stdout).toMatch(/CapBnd:\s+00000000a80425fb/);
    expect(r.stdout).toMatch(/CapInh:\s+0000000000000000/);
  });

  it('filters syscalls like Docker: no new namespaces for root without CAP_SYS_ADMIN', async () => {
    const r = await run(await executor(), meta(
      'grep Seccomp: /proc/self/status; unshare -U true && echo user-ns || echo no-user-ns; ' +
      'unshare -m true && echo mount-ns || echo no-mount-ns; ls / > /dev/null && echo ok'));
    expect(r.stdout).toMatch(/^Seccomp:\s+2$/m);
    expect(r.stdout).toContain('no-user-ns');
    expect(r.stdout).toContain('no-mount-ns');
    expect(r.stdout).toContain('ok');
    expect(r.stderr).toMatch(/unshare.*Operation not permitted/);
  });

  it('security insecure: every capability, no syscall filter, no masked paths, writable sysfs and cgroupfs', async () => {
    const r = await run(await executor(), meta(
      'grep -E "^(Seccomp|CapEff):" /proc/self/status; mkdir -p /mnt && mount -t tmpfs none /mnt && echo mounted; ' +
      'unshare -U true && echo user-ns; cat /proc/kcore > /dev/null 2>&1; head -c 4 /proc/kcore | wc -c; ' +
      'grep -E " /sys(/fs/cgroup)? " /proc/mounts',
      { security: 'insecure' }));
    const sys = r.stdout.split('\n').filter((l) => / \/sys(\/fs\/cgroup)? /.test(l));
    expect(sys.length, r.stdout).toBeGreaterThanOrEqual(2);
    for (const line of sys) expect(line.split(' ')[3].split(','), line).toContain('rw');
    expect(r.stdout, r.stderr).toMatch(/^Seccomp:\s+0$/m);
    const hostBounding = /^CapBnd:\s+(\S+)$/m.exec(await fs.readFile('/proc/self/status', 'utf8'))![1];
    expect(r.stdout).toMatch(new RegExp(`^CapEff:\\s+${hostBounding}$`, 'm'));
    expect(r.stdout).toContain('mounted');
    expect(r.stdout).toContain('user-ns');
  });

  it('writes land in the rootfs; runtime stubs of /etc/hosts and /etc/resolv.conf do not', async () => {
    const r = await run(await executor(), meta('echo data > /out.txt; cat /etc/hosts; test -s /etc/resolv.conf && echo resolv'));
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain('127.0.0.1\tlocalhost buildkitsandbox');
    expect(r.stdout).toContain('::1\tlocalhost ip6-localhost ip6-loopback');
    expect(r.stdout).toContain('resolv');
    expect(await fs.readFile(path.join(rootfs, 'out.txt'), 'utf8')).toBe('data\n');
    // runc creates the mount points of /proc, /dev and /sys in the rootfs, as under BuildKit.
    expect((await fs.readdir(rootfs)).sort()).toEqual(['bin', 'dev', 'out.txt', 'proc', 'sys']);
  });

  it('removes the stub files but keeps an existing /etc and its mtime', async () => {
    await addUsers(rootfs);
    const etc = path.join(rootfs, 'etc');
    await fs.utimes(etc, 1_000_000, 1_000_000);
    await run(await executor(), meta('true'));
    expect((await fs.readdir(etc)).sort()).toEqual(['group', 'passwd']);
    expect((await fs.stat(etc)).mtimeMs).toBe(1_000_000_000);
  });

  it('keeps an /etc the command wrote into, without the stubs', async () => {
    await run(await executor(), meta('echo x > /etc/motd'));
    expect(await fs.readdir(path.join(rootfs, 'etc'))).toEqual(['motd']);
  });

  it('keeps existing /etc/hosts and /etc/resolv.conf untouched', async () => {
    await addUsers(rootfs);
    await fs.writeFile(path.join(rootfs, 'etc/hosts'), 'image hosts\n');
    await fs.writeFile(path.join(rootfs, 'etc/resolv.conf'), '');
    const r = await run(await executor(), meta('cat /etc/hosts'));
    expect(r.stdout).toContain('buildkitsandbox');
    expect(await fs.readFile(path.join(rootfs, 'etc/hosts'), 'utf8')).toBe('image hosts\n');
    expect(await fs.readFile(path.join(rootfs, 'etc/resolv.conf'), 'utf8')).toBe('');
  });

  it('adds extra hosts', async () => {
    const r = await run(await executor(), meta('cat /etc/hosts', { extraHosts: ['db:10.0.0.5', 'v6:fd00::1'] }));
    expect(r.stdout).toContain('10.0.0.5\tdb\n');
    expect(r.stdout).toContain('fd00::1\tv6\n');
  });

  it('mounts /etc/hosts read-only', async () => {
    const r = await run(await executor(), meta('echo x >> /etc/hosts'));
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(/Read-only file system/i);
  });

  it('abort kills a long command quickly and leaves no container or bundle', async () => {
    const ex = await executor();
    const ac = new AbortController();
    const p = run(ex, meta('echo started; sleep 100'), ac.signal);
    // Abort as soon as the command has started, and once more before it could have.
    await new Promise((r) => setTimeout(r, 500));
    ac.abort();
    await expect(p).rejects.toBeInstanceOf(AbortError);
    expect(listContainers(ex)).toBe('');
    expect((await fs.readdir(ex.stateDir)).sort()).toEqual(['runc-state']);
  });

  it('abort right after start still kills the container', async () => {
    const ex = await executor();
    const ac = new AbortController();
    const p = run(ex, meta('sleep 100'), ac.signal);
    queueMicrotask(() => ac.abort());
    await expect(p).rejects.toBeInstanceOf(AbortError);
    expect(listContainers(ex)).toBe('');
  });

  it('an already aborted signal runs nothing', async () => {
    const ex = await executor();
    await expect(run(ex, meta('touch /ran'), AbortSignal.abort())).rejects.toBeInstanceOf(AbortError);
    await expect(fs.access(path.join(rootfs, 'ran'))).rejects.toThrow();
  });

  it("network 'none' has only the loopback interface, 'host' sees the host's", async () => {
    const ex = await executor();
    const none = await run(ex, meta('ls /sys/class/net', { network: 'none' }));
    expect(none.stdout.split(/\s+/).filter(Boolean)).toEqual(['lo']);
    const host = await run(ex, meta('ls /sys/class/net'));
    expect(host.stdout.split(/\s+/).filter(Boolean).sort())
      .toEqual((await fs.readdir('/sys/class/net')).sort());
  });

  it('runs in its own cgroup, which is gone afterwards', async () => {
    const ex = await executor();
    const { stdout } = await run(ex, meta('cat /proc/self/cgroup'));
    const ids = new Set([...stdout.matchAll(/\/builder\/([0-9a-f]+)$/gm)].map((m) => m[1]));
    expect(ids.size).toBe(1);
    expect(await leftoverCgroups([...ids][0])).toEqual([]);
  });

  it('init removes containers and bundles left by a crashed process', async () => {
    const ex = await executor();
    const bundle = path.join(ex.stateDir, 'leftover');
    await fs.mkdir(bundle);
    execFileSync('runc', ['spec', '--bundle', bundle]);
    const spec = JSON.parse(await fs.readFile(path.join(bundle, 'config.json'), 'utf8'));
    spec.root.path = rootfs;
    spec.process.terminal = false;
    spec.process.args = ['sleep', '100'];
    await fs.writeFile(path.join(bundle, 'config.json'), JSON.stringify(spec));
    execFileSync('runc', ['--root', ex.runtimeRoot, 'run', '--detach', '--bundle', bundle, 'leftover'], { stdio: 'ignore' });
    expect(listContainers(ex)).toBe('leftover');
    await executor();
    expect(listContainers(ex)).toBe('');
    expect((await fs.readdir(ex.stateDir)).sort()).toEqual(['runc-state']);
  });

  it('a missing runtime is a RUNTIME_NOT_FOUND user error', async () => {
    const ex = new OciRuntimeExecutor({ runtime: 'no-such-runtime', stateDir: path.join(dir, 'executor') });
    await expect(ex.init()).rejects.toBeInstanceOf(RuntimeNotFoundError);
    await expect(ex.run({ rootfs, meta: meta('true') })).rejects.toMatchObject({ code: 'RUNTIME_NOT_FOUND' });
    const byPath = new OciRuntimeExecutor({ runtime: path.join(dir, 'runc'), stateDir: path.join(dir, 'executor') });
    await expect(byPath.init()).rejects.toMatchObject({ code: 'RUNTIME_NOT_FOUND' });
  });
});

describe('OciRuntimeExecutor with crun', () => {
  it('runs commands as a user with env, cwd and exit code', async () => {
    await addUsers(rootfs);
    const ex = await executor('crun');
    const r = await run(ex, meta('id; pwd; echo $FOO $HOME; exit 4', { env: ['FOO=x'], cwd: '/w', user: 'app' }));
    expect(r).toMatchObject({
      exitCode: 4,
      stdout: 'uid=1000(app) gid=1000(app) groups=50(staff),1000(app)\n/w\nx /home/app\n',
    });
    expect((await fs.readdir(rootfs)).sort()).toEqual(['bin', 'dev', 'etc', 'proc', 'sys', 'w']);
    expect((await fs.readdir(path.join(rootfs, 'etc'))).sort()).toEqual(['group', 'passwd']);
  });

  it("network 'none' and abort", async () => {
    const ex = await executor('crun');
    const none = await run(ex, meta('ls /sys/class/net', { network: 'none' }));
    expect(none.stdout.trim()).toBe('lo');
    const ac = new AbortController();
    const p = run(ex, meta('sleep 100'), ac.signal);
    setTimeout(() => ac.abort(), 300);
    await expect(p).rejects.toBeInstanceOf(AbortError);
    expect(listContainers(ex)).toBe('');
    expect((await fs.readdir(ex.stateDir)).sort()).toEqual(['crun-state']);
    const { stdout } = await run(ex, meta('cat /proc/self/cgroup'));
    const id = /\/builder\/([0-9a-f]+)$/m.exec(stdout)?.[1];
    expect(id).toBeDefined();
    expect(await leftoverCgroups(id!)).toEqual([]);
  });
});

describe.each(['runc', 'crun'])('--ulimit and --cgroup-parent with %s', (runtime) => {
  it('sets the rlimits (-1 unlimited) and places the container under the parent cgroup', async () => {
    const ex = await executor(runtime);
    const parent = `builder-exec-test-${process.pid}-${runtime}`;
    try {
      const r = await run(ex, meta('cat /proc/self/limits; cat /proc/self/cgroup', {
        ulimit: [{ name: 'nproc', soft: 100, hard: 200 }, { name: 'core', soft: -1, hard: -1 }], cgroupParent: parent,
      }));
      expect(r.exitCode, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^Max processes\s+100\s+200\s+processes\s*$/m);
      expect(r.stdout).toMatch(/^Max core file size\s+unlimited\s+unlimited\s+bytes\s*$/m);
      expect(r.stdout).toMatch(new RegExp(`:/${parent}/builder/[0-9a-f]+$`, 'm'));
    } finally {
      for (const h of ['', ...await fs.readdir('/sys/fs/cgroup')]) {
        await fs.rmdir(path.join('/sys/fs/cgroup', h, parent, 'builder')).catch(() => undefined);
        await fs.rmdir(path.join('/sys/fs/cgroup', h, parent)).catch(() => undefined);
      }
    }
  });
});
