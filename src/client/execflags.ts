// The build-wide settings of RUN containers, parsed as buildx parses its flags: --network, --add-host,
// --shm-size, --ulimit (docker's formats, github.com/docker/go-units) and --cgroup-parent. The frontend puts
// them into every exec op, as BuildKit's Dockerfile frontend does with the attributes buildx sends.
import net from 'node:net';
import type { NetworkMode, Ulimit } from '../../solver/llb/ops.js';
import type { ConvertOptions } from '../../frontend/dockerfile/dockerfile2llb.js';
import { UserError } from '../util/errors.js';

/** The frontend's fields for them, parsed. */
export type ExecFlags = Pick<ConvertOptions, 'network' | 'extraHosts' | 'shmSize' | 'ulimits' | 'cgroupParent'>;

export interface ExecFlagOptions {
  /** `default` (the sandbox), `none` or `host` (needs no --allow: asking for it is allowing it, as in buildx). */
  network?: string;
  /** `host:ip` or `host=ip`; the ip may be a comma-separated list, `[v6]`, or `host-gateway`. */
  addHosts?: string[];
  /** Bytes, or a size with a binary unit as docker takes it (`128m`, `1g`). */
  shmSize?: number | string;
  /** `name=soft[:hard]`, e.g. `nofile=1024:2048`; -1 is unlimited. */
  ulimits?: string[];
  cgroupParent?: string;
}

/**
 * What `host-gateway` stands for: the address at which a RUN step reaches the host. Steps share the
 * host's network namespace (there is no bridge, unlike Docker's), so that is the loopback address.
 */
export const HOST_GATEWAY_IP = '127.0.0.1';

export function parseExecFlags(opts: ExecFlagOptions): ExecFlags {
  const out: ExecFlags = {};
  const network = parseNetworkMode(opts.network);
  if (network) out.network = network;
  const hosts = (opts.addHosts ?? []).flatMap(parseExtraHost);
  if (hosts.length) out.extraHosts = hosts;
  const shm = opts.shmSize === undefined ? 0 : parseShmSize(opts.shmSize);
  if (shm > 0) out.shmSize = shm;
  const ulimits = parseUlimits(opts.ulimits ?? []);
  if (ulimits.length) out.ulimits = ulimits;
  if (opts.cgroupParent) out.cgroupParent = opts.cgroupParent;
  return out;
}

/** `default` (or nothing) is the sandbox, which the frontend uses when no mode is set. */
export function parseNetworkMode(v: string | undefined): NetworkMode | undefined {
  if (v === undefined || v === '' || v === 'default') return undefined;
  if (v === 'none' || v === 'host') return v;
  throw new UserError('INVALID_FLAG', `invalid --network "${v}": network mode not supported (use default, none or host)`);
}

/** One `--add-host` as `host:ip` entries (BuildKit lower-cases them); several when the ip is a list. */
export function parseExtraHost(entry: string): string[] {
  const bad = () => new UserError('INVALID_FLAG', `invalid --add-host "${entry}": expected host:ip or host=ip`);
  let sep = entry.indexOf('=');
  if (sep < 0) sep = entry.indexOf(':');
  const host = sep < 0 ? '' : entry.slice(0, sep);
  const ip = sep < 0 ? '' : entry.slice(sep + 1);
  if (!host || !ip) throw bad();
  if (ip === 'host-gateway') return [`${host}:${HOST_GATEWAY_IP}`.toLowerCase()];
  return ip.split(',').map((v) => {
    // Brackets are allowed around any address (meant for IPv6).
    if (v.length > 2 && v.startsWith('[') && v.endsWith(']')) v = v.slice(1, -1);
    if (net.isIP(v) === 0) throw bad();
    return `${host}:${v}`.toLowerCase();
  });
}

const BINARY_UNITS: Record<string, number> = { k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 };

/** Docker's RAMInBytes: a number with an optional unit k, m, g, t or p (binary, case-insensitive, `b`/`ib` optional). */
export function parseShmSize(v: number | string): number {
  const bad = (why = `invalid size: '${v}'`) => new UserError('INVALID_FLAG', `invalid --shm-size "${v}": ${why}`);
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) throw bad();
    return v;
  }
  const m = /^(\d+(?:\.\d+)?) ?([a-zA-Z]*)$/.exec(v);
  if (!m) throw bad();
  const sfx = m[2].toLowerCase();
  let mul = 1;
  if (sfx !== '' && sfx !== 'b') {
    mul = BINARY_UNITS[sfx[0]];
    if (!mul || (sfx.length === 2 && sfx[1] !== 'b') || (sfx.length === 3 && sfx.slice(1) !== 'ib') || sfx.length > 3) {
      throw bad(`invalid suffix: '${sfx}'`);
    }
  }
  const bytes = Math.trunc(Number(m[1]) * mul);
  if (!Number.isSafeInteger(bytes)) throw bad();
  return bytes;
}

const ULIMIT_NAMES = ['core', 'cpu', 'data', 'fsize', 'locks', 'memlock', 'msgqueue', 'nice', 'nofile', 'nproc', 'rss', 'rtprio', 'rttime', 'sigpending', 'stack'];

/** `--ulimit` values (go-units' ParseUlimit); a later one of the same name replaces an earlier one. */
export function parseUlimits(list: string[]): Ulimit[] {
  const byName = new Map<string, Ulimit>();
  for (const v of list) {
    const u = parseUlimit(v);
    byName.set(u.name, u);
  }
  return [...byName.values()];
}

export function parseUlimit(v: string): Ulimit {
  const bad = (why: string) => new UserError('INVALID_FLAG', `invalid --ulimit "${v}": ${why}`);
  const eq = v.indexOf('=');
  if (eq < 0) throw bad('expected type=soft[:hard], e.g. nofile=1024:2048');
  const name = v.slice(0, eq);
  if (!ULIMIT_NAMES.includes(name)) throw bad(`invalid ulimit type: ${name} (one of ${ULIMIT_NAMES.join(', ')})`);
  const values = v.slice(eq + 1).split(':');
  if (values.length > 2) throw bad('too many limit values: can only have up to two, soft[:hard]');
  const [soft, hard] = values.map((x) => {
    if (!/^-?\d+$/.test(x) || !Number.isSafeInteger(Number(x)) || Number(x) < -1) throw bad(`invalid limit value "${x}"`);
    return Number(x);
  });
  const h = hard ?? soft;
  if (h !== -1 && soft === -1) throw bad(`soft limit must be less than or equal to hard limit: soft: -1 (unlimited), hard: ${h}`);
  if (h !== -1 && soft > h) throw bad(`soft limit must be less than or equal to hard limit: ${soft} > ${h}`);
  return { name, soft, hard: h };
}
