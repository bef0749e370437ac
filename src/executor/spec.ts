// The OCI runtime spec (config.json) of a RUN step: containerd's default Linux spec as BuildKit adjusts it
// (executor/oci/spec*.go): no /run tmpfs, read-only bind mounts of generated /etc/hosts and
// /etc/resolv.conf, a read-only cgroup mount, new privileges allowed, hostname `buildkitsandbox`.
import { readFileSync } from 'node:fs';
import type { ExecMeta, Ulimit } from '../../solver/llb/ops.js';
import type { ResolvedUser } from '../worker/users.js';
import { DEFAULT_NOFILE } from './limits.js';
import { defaultSeccompProfile, type LinuxSeccomp } from './seccomp.js';

export const DEFAULT_HOSTNAME = 'buildkitsandbox';

/** What BuildKit's exec op adds when the image config sets no PATH. */
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Docker's (and containerd's) default capability set. */
export const DEFAULT_CAPABILITIES = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID',
  'CAP_SETUID', 'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

// containerd's defaults: kernel interfaces that leak host information or allow host changes.
const MASKED_PATHS = [
  '/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list',
  '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware', '/sys/devices/virtual/powercap',
];
const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

/** Every capability, in bit order. */
const ALL_CAPABILITIES = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_SETGID',
  'CAP_SETUID', 'CAP_SETPCAP', 'CAP_LINUX_IMMUTABLE', 'CAP_NET_BIND_SERVICE', 'CAP_NET_BROADCAST', 'CAP_NET_ADMIN',
  'CAP_NET_RAW', 'CAP_IPC_LOCK', 'CAP_IPC_OWNER', 'CAP_SYS_MODULE', 'CAP_SYS_RAWIO', 'CAP_SYS_CHROOT',
  'CAP_SYS_PTRACE', 'CAP_SYS_PACCT', 'CAP_SYS_ADMIN', 'CAP_SYS_BOOT', 'CAP_SYS_NICE', 'CAP_SYS_RESOURCE',
  'CAP_SYS_TIME', 'CAP_SYS_TTY_CONFIG', 'CAP_MKNOD', 'CAP_LEASE', 'CAP_AUDIT_WRITE', 'CAP_AUDIT_CONTROL',
  'CAP_SETFCAP', 'CAP_MAC_OVERRIDE', 'CAP_MAC_ADMIN', 'CAP_SYSLOG', 'CAP_WAKE_ALARM', 'CAP_BLOCK_SUSPEND',
  'CAP_AUDIT_READ', 'CAP_PERFMON', 'CAP_BPF', 'CAP_CHECKPOINT_RESTORE',
];

let hostCaps: string[] | undefined;

/**
 * What `--security=insecure` grants (Docker's --privileged): every capability this process may pass on,
 * i.e. its bounding set; asking the runtime for more fails.
 */
export function privilegedCapabilities(): string[] {
  if (!hostCaps) {
    const m = /^CapBnd:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    const bits = m ? BigInt('0x' + m[1]) : 0n;
    hostCaps = ALL_CAPABILITIES.filter((_, i) => (bits >> BigInt(i)) & 1n);
  }
  return hostCaps;
}

export interface SpecOptions {
  /** Host path of the container's root filesystem. */
  rootfs: string;
  meta: ExecMeta;
  /** `meta.user` resolved against the rootfs. */
  user: ResolvedUser;
  /** Host paths of the files bind-mounted read-only at /etc/hosts and /etc/resolv.conf. */
  hostsPath: string;
  resolvConfPath: string;
  /** RLIMIT_NOFILE (soft and hard); Docker's 1048576 by default. */
  nofile?: number;
  /** cgroup the runtime creates for the container and removes on delete. */
  cgroupsPath?: string;
  /** `RUN --mount` mounts, after the default ones. */
  extraMounts?: OciMount[];
  /** More `KEY=VALUE` entries for the process only (secrets exposed as env), not part of `meta`. */
  extraEnv?: string[];
  /** Give the process a pseudo-terminal (`builder run -t`, the debug shell). */
  terminal?: boolean;
}

export interface OciMount {
  destination: string;
  type: string;
  source: string;
  options: string[];
}

/** Environment of the process: `meta.env` plus the default PATH when none is set; HOME is left to the runtime. */
export function processEnv(env: string[]): string[] {
  return env.some((e) => e.startsWith('PATH=')) ? [...env] : [...env, `PATH=${DEFAULT_PATH}`];
}

export function defaultMounts(hostsPath: string, resolvConfPath: string): OciMount[] {
  const roBind = (source: string, destination: string): OciMount =>
    ({ destination, type: 'bind', source, options: ['nosuid', 'noexec', 'nodev', 'rbind', 'ro'] });
  return [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    {
      destination: '/dev/pts', type: 'devpts', source: 'devpts',
      options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
    },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    roBind(resolvConfPath, '/etc/resolv.conf'),
    roBind(hostsPath, '/etc/hosts'),
    { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['ro', 'nosuid', 'noexec', 'nodev'] },
  ];
}

/** Insecure mode mounts sysfs and the cgroup filesystem writable, as BuildKit (WithWriteableSysfs/Cgroupfs). */
function writableSysfs(mounts: OciMount[]): OciMount[] {
  return mounts.map((m) => (m.type === 'sysfs' || m.type === 'cgroup' ? { ...m, options: m.options.filter((o) => o !== 'ro') } : m));
}

/** A limit as the spec takes it; -1 is RLIM_INFINITY (uint64 max in the file, see serializeSpec). */
export interface Rlimit {
  type: string;
  hard: number;
  soft: number;
}

/**
 * `--ulimit` limits over the default ones: a name given replaces the default of that name. (BuildKit then
 * drops every default; ours are what any RUN gets without --ulimit, and stay so for the names not given.)
 */
export function processRlimits(nofile: number, ulimits: Ulimit[] = []): Rlimit[] {
  const given = ulimits.map((u) => ({ type: `RLIMIT_${u.name.toUpperCase()}`, hard: u.hard, soft: u.soft }));
  const defaults = [{ type: 'RLIMIT_NOFILE', hard: nofile, soft: nofile }];
  return [...defaults.filter((d) => !given.some((g) => g.type === d.type)), ...given];
}

/** A later mount at the same destination replaces an earlier one in its place (BuildKit's dedupMounts). */
function dedupMounts(mounts: OciMount[]): OciMount[] {
  const out: OciMount[] = [];
  const at = new Map<string, number>();
  for (const m of mounts) {
    const i = at.get(m.destination);
    if (i === undefined) at.set(m.destination, out.push(m) - 1);
    else out[i] = m;
  }
  return out;
}

/** config.json text: an unlimited rlimit (-1) becomes the uint64 RLIM_INFINITY, which JSON numbers in JS cannot hold. */
export function serializeSpec(spec: OciSpec): string {
  // A NUL cannot be in any string of a spec (paths, arguments, environment are C strings): a safe marker.
  const marker = '\u0000unlimited';
  const text = JSON.stringify(spec, (key, value: unknown) => (value === -1 && (key === 'soft' || key === 'hard') ? marker : value));
  return text.split(JSON.stringify(marker)).join('18446744073709551615');
}

/** The part of the OCI runtime spec this executor writes. */
export interface OciSpec {
  ociVersion: string;
  process: {
    terminal: boolean;
    user: { uid: number; gid: number; additionalGids: number[] };
    args: string[];
    env: string[];
    cwd: string;
    capabilities: { bounding: string[]; effective: string[]; permitted: string[] };
    rlimits: Rlimit[];
    noNewPrivileges: boolean;
  };
  root: { path: string; readonly: boolean };
  hostname: string;
  mounts: OciMount[];
  linux: {
    cgroupsPath?: string;
    resources: { devices: { allow: boolean; access: string }[] };
    namespaces: { type: string }[];
    maskedPaths: string[];
    readonlyPaths: string[];
    seccomp?: LinuxSeccomp;
  };
}

export function generateSpec(opts: SpecOptions): OciSpec {
  const { meta, user } = opts;
  const nofile = opts.nofile ?? DEFAULT_NOFILE;
  // The primary group is a supplementary one too, as containerd (since its CVE-2023-25173 fix) and
  // BuildKit set it.
  const additionalGids = user.additionalGids.includes(user.gid)
    ? user.additionalGids
    : [user.gid, ...user.additionalGids];
  const namespaces = [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }];
  // 'none' gets a fresh network namespace, in which the runtime brings up only the loopback interface.
  // 'sandbox' (a CNI network in BuildKit) has no provider here, so it shares the host's like 'host'.
  if (meta.network === 'none') namespaces.push({ type: 'network' });
  const insecure = meta.security === 'insecure';
  const caps = insecure ? privilegedCapabilities() : DEFAULT_CAPABILITIES;
  const systemMounts = defaultMounts(opts.hostsPath, opts.resolvConfPath);
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: opts.terminal ?? false,
      user: { uid: user.uid, gid: user.gid, additionalGids },
      args: meta.args,
      env: [...processEnv(meta.env), ...(opts.extraEnv ?? [])],
      cwd: meta.cwd || '/',
      capabilities: {
        bounding: caps,
        effective: caps,
        permitted: caps,
      },
      rlimits: processRlimits(nofile, meta.ulimit),
      noNewPrivileges: false,
    },
    root: { path: opts.rootfs, readonly: false },
    hostname: DEFAULT_HOSTNAME,
    mounts: dedupMounts([...(insecure ? writableSysfs(systemMounts) : systemMounts), ...(opts.extraMounts ?? [])]),
    linux: {
      ...(opts.cgroupsPath ? { cgroupsPath: opts.cgroupsPath } : {}),
      // Deny all device access; the runtime then allows its default devices (null, zero, tty, ...).
      resources: { devices: [{ allow: insecure, access: 'rwm' }] },
      namespaces,
      maskedPaths: insecure ? [] : MASKED_PATHS,
      readonlyPaths: insecure ? [] : READONLY_PATHS,
      ...(insecure ? {} : { seccomp: defaultSeccompProfile(caps) }),
    },
  };
}
