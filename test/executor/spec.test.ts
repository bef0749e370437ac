import { describe, expect, it } from 'vitest';
import type { ExecMeta } from '../../solver/llb/ops.js';
import { hostsFile } from '../../src/executor/etcfiles.js';
import { DEFAULT_CAPABILITIES, generateSpec, serializeSpec, type OciSpec } from '../../src/executor/spec.js';
import { cgroupsPath } from '../../src/executor/runc.js';

const meta: ExecMeta = { args: ['/bin/sh', '-c', 'true'], env: ['A=1'], cwd: '/src', user: 'app', network: 'host' };
const user = { uid: 1000, gid: 1000, additionalGids: [50], home: '/home/app' };

function spec(m: Partial<ExecMeta> = {}): OciSpec {
  return generateSpec({
    rootfs: '/r', meta: { ...meta, ...m }, user, hostsPath: '/b/hosts', resolvConfPath: '/b/resolv.conf',
    nofile: 4096, cgroupsPath: '/builder/x',
  });
}

describe('generateSpec', () => {
  it('describes the process like BuildKit', () => {
    const s = spec();
    expect(s.process).toMatchObject({
      terminal: false,
      args: ['/bin/sh', '-c', 'true'],
      env: ['A=1', 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      cwd: '/src',
      user: { uid: 1000, gid: 1000, additionalGids: [1000, 50] },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 4096, soft: 4096 }],
      noNewPrivileges: false,
    });
    expect(s.process.capabilities).toEqual({
      bounding: DEFAULT_CAPABILITIES, effective: DEFAULT_CAPABILITIES, permitted: DEFAULT_CAPABILITIES,
    });
    expect(DEFAULT_CAPABILITIES).toHaveLength(14);
    expect(s.root).toEqual({ path: '/r', readonly: false });
    expect(s.hostname).toBe('buildkitsandbox');
    expect(s.linux.cgroupsPath).toBe('/builder/x');
  });

  it('mounts the kernel filesystems and the generated /etc files, but no /run', () => {
    const { mounts } = spec();
    expect(mounts.map((m) => m.destination)).toEqual([
      '/proc', '/dev', '/dev/pts', '/dev/shm', '/dev/mqueue', '/sys', '/etc/resolv.conf', '/etc/hosts', '/sys/fs/cgroup',
    ]);
    expect(mounts.find((m) => m.destination === '/etc/hosts')).toMatchObject({ type: 'bind', source: '/b/hosts' });
    expect(mounts.find((m) => m.destination === '/etc/hosts')!.options).toContain('ro');
    expect(mounts.find((m) => m.destination === '/sys')!.options).toContain('ro');
  });

  it("adds a network namespace only for network 'none'", () => {
    const types = (s: OciSpec) => s.linux.namespaces.map((n) => n.type);
    expect(types(spec())).toEqual(['pid', 'ipc', 'uts', 'mount']);
    expect(types(spec({ network: 'none' }))).toEqual(['pid', 'ipc', 'uts', 'mount', 'network']);
  });

  it('--ulimit limits replace the default of their name only; -1 is written as RLIM_INFINITY', () => {
    const s = spec({ ulimit: [{ name: 'nproc', soft: 100, hard: 200 }, { name: 'core', soft: -1, hard: -1 }] });
    expect(s.process.rlimits).toEqual([
      { type: 'RLIMIT_NOFILE', hard: 4096, soft: 4096 },
      { type: 'RLIMIT_NPROC', hard: 200, soft: 100 },
      { type: 'RLIMIT_CORE', hard: -1, soft: -1 },
    ]);
    expect(spec({ ulimit: [{ name: 'nofile', soft: 10, hard: 20 }] }).process.rlimits).toEqual([{ type: 'RLIMIT_NOFILE', hard: 20, soft: 10 }]);
    const text = serializeSpec(s);
    expect(text).toContain('{"type":"RLIMIT_CORE","hard":18446744073709551615,"soft":18446744073709551615}');
    expect(text).toContain('{"type":"RLIMIT_NPROC","hard":200,"soft":100}');
    // Everything else is plain JSON.
    expect(JSON.parse(text.replace(/18446744073709551615/g, '-1'))).toEqual(s);
  });

  it('a RUN mount at a default destination (--shm-size at /dev/shm) replaces it in place', () => {
    const shm = { destination: '/dev/shm', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777', 'size=134217728'] };
    const s = generateSpec({
      rootfs: '/r', meta, user, hostsPath: '/b/hosts', resolvConfPath: '/b/resolv.conf', extraMounts: [shm, { ...shm, destination: '/tmp/x' }],
    });
    expect(s.mounts.map((m) => m.destination)).toEqual([
      '/proc', '/dev', '/dev/pts', '/dev/shm', '/dev/mqueue', '/sys', '/etc/resolv.conf', '/etc/hosts', '/sys/fs/cgroup', '/tmp/x',
    ]);
    expect(s.mounts[3]).toEqual(shm);
  });

  it('masks kernel interfaces like containerd', () => {
    const s = spec();
    expect(s.linux.maskedPaths).toContain('/proc/kcore');
    expect(s.linux.readonlyPaths).toContain('/proc/sys');
  });
});

describe('hostsFile', () => {
  it('has localhost, the sandbox name and extra hosts', () => {
    expect(hostsFile(['db:10.0.0.5', 'v6:fd00::1'])).toBe(
      '127.0.0.1\tlocalhost buildkitsandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n10.0.0.5\tdb\nfd00::1\tv6\n',
    );
  });
});

describe('cgroupsPath', () => {
  it('is /builder/<id>, under --cgroup-parent as BuildKit puts it (a systemd slice takes the id directly)', () => {
    expect(cgroupsPath('abc')).toBe('/builder/abc');
    expect(cgroupsPath('abc', 'ci')).toBe('/ci/builder/abc');
    expect(cgroupsPath('abc', '/ci/jobs/')).toBe('/ci/jobs/builder/abc');
    expect(cgroupsPath('abc', '../../escape')).toBe('/escape/builder/abc');
    expect(cgroupsPath('abc', 'ci.slice:builder:')).toBe('ci.slice:builder:abc');
  });
});
