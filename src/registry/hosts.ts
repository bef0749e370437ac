// How each registry host is reached, decided as Docker's daemon and buildkitd.toml decide it:
// - scheme: HTTPS; an insecure host (--insecure-registry, `insecure` in the builder config, or a loopback
//   name: localhost, 127.0.0.0/8, [::1]) is tried over HTTPS without verifying its certificate and falls back
//   to plain HTTP, remembered per host for 10 minutes (in the state directory, so the next build skips the
//   HTTPS attempt); `http: true` in the config is plain HTTP only.
// - trust: the system's CAs (added in http.ts), plus the host's own from /etc/docker/certs.d/HOST[:PORT]/
//   (`*.crt` CAs, `*.cert` + `*.key` client certificates, as Docker reads it) and the config's `ca`/`keypair`.
// - mirrors: pulls try the config's mirrors for the registry first, then the registry itself.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { UserError } from '../util/errors.js';
import { loadBuilderConfig, type RegistryHostConfig } from './config.js';
import type { Reference } from './reference.js';

/** What a TLS connection to a host trusts and presents. Objects are shared: http.ts keys its agents by them. */
export interface HostTLS {
  /** Do not verify the server's certificate (insecure registries). */
  readonly insecure: boolean;
  /** PEM CAs trusted for this host besides the system's. */
  readonly ca: readonly string[];
  /** A client certificate and its key (PEM) for registries that require one. */
  readonly cert?: string;
  readonly key?: string;
}

/** Where requests for a repository go: `https://HOST/v2/REPO/...`, or under a mirror's path. */
export interface Endpoint {
  host: string;
  /** The API root: `/v2`, or `/v2/PREFIX` for a mirror given as `host/PREFIX` (as BuildKit). */
  root: string;
  mirror: boolean;
}

export interface RegistryHostsOptions {
  /** Hosts (`host:port` as in references, or `docker.io`) treated as insecure registries. */
  insecureRegistries?: string[];
  /** Per-registry settings; without them, the builder config file's (config.ts). */
  registries?: Record<string, RegistryHostConfig>;
  /** Where per-host certificate directories are looked for (default: Docker's). */
  certsDirs?: string[];
  /** A file (in the state directory) remembering which insecure hosts answered on plain HTTP, so the
   * processes sharing it skip the HTTPS attempt too. */
  schemesFile?: string;
}

/** Docker's per-registry certificate directories. */
export const DOCKER_CERTS_DIR = '/etc/docker/certs.d';

const VERIFY: HostTLS = Object.freeze({ insecure: false, ca: [] });
const SKIP_VERIFY: HostTLS = Object.freeze({ insecure: true, ca: [] });
const DOCKER_HUB_HOST = 'registry-1.docker.io';

/** How long what was learned about a host holds: a build pays the HTTPS attempt once, and a long-running
 * server (`builder serve`) notices a registry that changed or a mirror that came back. */
const REMEMBER_MS = 10 * 60_000;
/** Which scheme answered an insecure host, and when; `confirmed` once this process saw it answer. */
const learnedSchemes = new Map<string, { scheme: 'http' | 'https'; at: number; confirmed: boolean }>();
/** Mirrors that could not be reached, and when: skipped meanwhile. */
const unreachableMirrors = new Map<string, number>();

/** Schemes files already read by this process. */
const schemesFilesRead = new Set<string>();

function learnedScheme(host: string): 'http' | 'https' | undefined {
  const l = learnedSchemes.get(host);
  if (l && Date.now() - l.at < REMEMBER_MS) return l.scheme;
  learnedSchemes.delete(host);
  return undefined;
}

type SchemesFile = Record<string, { scheme: 'http'; at: number }>;

function readSchemesFile(file: string): SchemesFile {
  try {
    const json = JSON.parse(fs.readFileSync(file, 'utf8')) as unknown;
    const out: SchemesFile = {};
    if (typeof json !== 'object' || json === null) return out;
    for (const [host, v] of Object.entries(json as Record<string, { scheme?: unknown; at?: unknown }>)) {
      if (v?.scheme === 'http' && typeof v.at === 'number' && Date.now() - v.at < REMEMBER_MS) out[host] = { scheme: 'http', at: v.at };
    }
    return out;
  } catch {
    return {}; // none yet, or torn by a crash: only a hint
  }
}

/** Loopback by name, as Docker's default insecure range 127.0.0.0/8 and containerd's MatchLocalhost. */
export function isLoopback(host: string): boolean {
  const hostname = host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.replace(/:\d+$/, '');
  return hostname === 'localhost' || hostname === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

export function defaultCertsDirs(): string[] {
  // Rootless Docker reads its own config directory's certs.d.
  if (process.getuid?.() === 0) return [DOCKER_CERTS_DIR];
  return [DOCKER_CERTS_DIR, path.join(process.env.XDG_CONFIG_HOME || path.join(os.homedir(), '.config'), 'docker', 'certs.d')];
}

export class RegistryHosts {
  private config?: Record<string, RegistryHostConfig>;
  private readonly insecure: Set<string>;
  private readonly tlsByHost = new Map<string, HostTLS>();
  /** Mirrors written with `http://`: plain HTTP whatever their own settings. */
  private readonly plainMirrors = new Set<string>();

  constructor(private readonly opts: RegistryHostsOptions = {}) {
    this.insecure = new Set(opts.insecureRegistries ?? []);
  }

  /** The settings for a host; Docker Hub's are under `docker.io`. The config file is read at first need. */
  settings(host: string): RegistryHostConfig {
    const all = (this.config ??= this.opts.registries ?? loadBuilderConfig().registry ?? {});
    return all[host] ?? (host === DOCKER_HUB_HOST ? all['docker.io'] : undefined) ?? {};
  }

  /** The registry a reference names. */
  endpoint(ref: Reference): Endpoint {
    return { host: ref.registryHost, root: '/v2', mirror: false };
  }

  /** Where pulls of a reference go, in order: the registry's mirrors (not known to be down), then itself. */
  pullEndpoints(ref: Reference): Endpoint[] {
    const mirrors: Endpoint[] = [];
    for (const m of this.settings(ref.domain).mirrors ?? []) {
      const plain = /^http:\/\//i.test(m);
      const rest = m.replace(/^https?:\/\//i, '').replace(/\/+$/, '');
      const slash = rest.indexOf('/');
      const host = slash < 0 ? rest : rest.slice(0, slash);
      if (!host || host === ref.registryHost || Date.now() - (unreachableMirrors.get(host) ?? -Infinity) < REMEMBER_MS) continue;
      if (plain) this.plainMirrors.add(host);
      mirrors.push({ host, root: slash < 0 ? '/v2' : `/v2/${rest.slice(slash + 1)}`, mirror: true });
    }
    return [...mirrors, this.endpoint(ref)];
  }

  /** A mirror that failed at the network level is not asked again for a while. */
  mirrorUnreachable(host: string): void {
    unreachableMirrors.set(host, Date.now());
  }

  private isInsecure(host: string): boolean {
    return this.insecure.has(host) || (host === DOCKER_HUB_HOST && this.insecure.has('docker.io')) || this.settings(host).insecure === true || isLoopback(host);
  }

  private plainOnly(host: string): boolean {
    return this.settings(host).http === true || this.plainMirrors.has(host);
  }

  /** Hosts answered on plain HTTP as other processes sharing the state directory found. */
  private readSchemes(): void {
    const file = this.opts.schemesFile;
    if (!file || schemesFilesRead.has(file)) return;
    schemesFilesRead.add(file);
    for (const [host, v] of Object.entries(readSchemesFile(file))) if (!learnedSchemes.has(host)) learnedSchemes.set(host, { ...v, confirmed: false });
  }

  private writeSchemes(host: string, scheme: 'http' | 'https' | undefined): void {
    const file = this.opts.schemesFile;
    if (!file) return;
    const all = readSchemesFile(file);
    if (scheme === 'http') all[host] = { scheme, at: Date.now() };
    else if (all[host]) delete all[host];
    else return;
    const tmp = `${file}.${process.pid}.tmp`;
    try {
      fs.writeFileSync(tmp, JSON.stringify(all));
      fs.renameSync(tmp, file);
    } catch {
      try { fs.rmSync(tmp, { force: true }); } catch { /* nothing to clean */ }
    }
  }

  /** Whether the host is on plain HTTP because another process found it there (it may have changed since). */
  rememberedPlain(host: string): boolean {
    return !this.plainOnly(host) && this.scheme(host) === 'http' && learnedSchemes.get(host)?.confirmed === false;
  }

  /** The remembered scheme answered in this process. */
  confirm(host: string): void {
    const l = learnedSchemes.get(host);
    if (l) l.confirmed = true;
  }

  /** Drops what was learned about the host's scheme: the next request tries HTTPS first again. */
  forget(host: string): void {
    learnedSchemes.delete(host);
    this.writeSchemes(host, undefined);
  }

  /** The scheme a request to the host uses now. */
  scheme(host: string): 'http' | 'https' {
    this.readSchemes();
    if (this.plainOnly(host)) return 'http';
    if (this.settings(host).http === false) return 'https';
    return learnedScheme(host) === 'http' && this.isInsecure(host) ? 'http' : 'https';
  }

  /** Whether a failed HTTPS request to the host is tried again over plain HTTP: an insecure host whose
   * scheme is not known yet (`http: false` in its settings keeps it on HTTPS). */
  mayFallBack(host: string): boolean {
    this.readSchemes();
    return !learnedScheme(host) && this.isInsecure(host) && this.settings(host).http !== false && !this.plainOnly(host);
  }

  /** Records the scheme an insecure host answered on. */
  learned(host: string, scheme: 'http' | 'https'): void {
    if (!this.isInsecure(host)) return;
    const before = learnedSchemes.get(host)?.scheme;
    learnedSchemes.set(host, { scheme, at: Date.now(), confirmed: true });
    if (scheme === 'http' || before === 'http') this.writeSchemes(host, scheme);
  }

  /** TLS settings for a host (any host a request reaches, redirects included). */
  tls(host: string): HostTLS {
    let t = this.tlsByHost.get(host);
    if (!t) {
      t = this.loadTLS(host);
      this.tlsByHost.set(host, t);
    }
    return t;
  }

  private loadTLS(host: string): HostTLS {
    const insecure = this.isInsecure(host);
    const ca: string[] = [];
    let pair: { cert: string; key: string } | undefined;
    const s = this.settings(host);
    for (const file of s.ca ?? []) ca.push(readPEM(host, file, 'CA'));
    if (s.keypair?.length) pair = { cert: readPEM(host, s.keypair[0].cert, 'client certificate'), key: readPEM(host, s.keypair[0].key, 'client key') };
    for (const dir of this.opts.certsDirs ?? defaultCertsDirs()) {
      const found = readCertsDir(host, path.join(dir, host));
      ca.push(...found.ca);
      pair ??= found.pair;
    }
    if (!ca.length && !pair) return insecure ? SKIP_VERIFY : VERIFY;
    return Object.freeze({ insecure, ca, ...(pair ?? {}) });
  }
}

function readPEM(host: string, file: string, what: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new UserError('REGISTRY_TLS', `registry ${host}: cannot read ${what} ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** Docker's certs.d layout: every `*.crt` is a CA; `NAME.cert` with `NAME.key` is a client certificate. */
function readCertsDir(host: string, dir: string): { ca: string[]; pair?: { cert: string; key: string } } {
  let names: string[];
  try {
    names = fs.readdirSync(dir).sort();
  } catch {
    return { ca: [] };
  }
  const ca: string[] = [];
  let pair: { cert: string; key: string } | undefined;
  for (const name of names) {
    const file = path.join(dir, name);
    if (name.endsWith('.crt')) ca.push(readPEM(host, file, 'CA'));
    else if (name.endsWith('.cert')) {
      const key = `${name.slice(0, -'.cert'.length)}.key`;
      if (!names.includes(key)) throw new UserError('REGISTRY_TLS', `registry ${host}: client certificate ${file} has no key ${key} beside it`);
      pair ??= { cert: readPEM(host, file, 'client certificate'), key: readPEM(host, path.join(dir, key), 'client key') };
    } else if (name.endsWith('.key') && !names.includes(`${name.slice(0, -'.key'.length)}.cert`)) {
      throw new UserError('REGISTRY_TLS', `registry ${host}: client key ${file} has no certificate ${name.slice(0, -'.key'.length)}.cert beside it`);
    }
  }
  return { ca, pair };
}
