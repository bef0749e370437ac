// The builder config file: per-registry settings as buildkitd.toml's `[registry."HOST"]` tables, in JSON.
//   {"registry": {"docker.io": {"mirrors": ["mirror.example:5000"]},
//                 "reg.example:5443": {"ca": ["/etc/ssl/reg-ca.pem"], "keypair": [{"cert": "c.pem", "key": "k.pem"}]},
//                 "build-cache.lan:5000": {"http": true}}}
// Found at $BUILDER_CONFIG, else $XDG_CONFIG_HOME/builder/config.json (~/.config/builder/config.json). A
// missing file is no settings; a malformed one is a one-line error naming the file and the key.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { UserError } from '../util/errors.js';

export interface RegistryHostConfig {
  /** Hosts (`host[:port][/path]`) pulls from this registry try first, in order; push never uses them. */
  mirrors?: string[];
  /** Plain HTTP only (true), or HTTPS only even for a loopback host (false). */
  http?: boolean;
  /** HTTPS without verifying the certificate, falling back to plain HTTP: Docker's insecure registry. */
  insecure?: boolean;
  /** PEM files of CAs trusted for this registry, besides the system's. */
  ca?: string[];
  /** Client certificates for registries that require one (mutual TLS). */
  keypair?: { cert: string; key: string }[];
}

export interface BuilderConfig {
  /** Keyed by the registry as references name it: `docker.io`, `reg.example:5443`. */
  registry?: Record<string, RegistryHostConfig>;
}

export class ConfigError extends UserError {
  constructor(file: string, detail: string) {
    super('INVALID_CONFIG', `builder config ${file}: ${detail}`);
  }
}

/** Where the config file is: $BUILDER_CONFIG, else the XDG config directory's builder/config.json. */
export function builderConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.BUILDER_CONFIG) return env.BUILDER_CONFIG;
  const base = env.XDG_CONFIG_HOME || path.join(os.homedir(), '.config');
  return path.join(base, 'builder', 'config.json');
}

/** The config file's settings; none when it does not exist. */
export function loadBuilderConfig(file = builderConfigPath()): BuilderConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new ConfigError(file, (e as Error).message);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(file, `not valid JSON: ${(e as Error).message}`);
  }
  // Relative paths in the file are relative to it, as buildkitd's.
  return parseBuilderConfig(json, file, path.dirname(path.resolve(file)));
}

const HOST_KEYS = ['mirrors', 'http', 'insecure', 'ca', 'keypair'];

/** Checks the shape, naming the first key that is wrong; paths are resolved against `baseDir`. */
export function parseBuilderConfig(json: unknown, where = 'registries', baseDir = process.cwd()): BuilderConfig {
  const fail = (detail: string): never => { throw new ConfigError(where, detail); };
  if (!isObject(json)) fail('expected a JSON object');
  const top = json as Record<string, unknown>;
  for (const k of Object.keys(top)) if (k !== 'registry') fail(`unknown key "${k}" (valid: registry)`);
  if (top.registry === undefined) return {};
  if (!isObject(top.registry)) fail('"registry" must be an object keyed by registry host');
  const registry: Record<string, RegistryHostConfig> = {};
  for (const [host, value] of Object.entries(top.registry as Record<string, unknown>)) {
    const at = `registry."${host}"`;
    if (!isObject(value)) fail(`${at} must be an object`);
    const v = value as Record<string, unknown>;
    for (const k of Object.keys(v)) if (!HOST_KEYS.includes(k)) fail(`${at}: unknown key "${k}" (valid: ${HOST_KEYS.join(', ')})`);
    const out: RegistryHostConfig = {};
    for (const k of ['http', 'insecure'] as const) {
      if (v[k] === undefined) continue;
      if (typeof v[k] !== 'boolean') fail(`${at}.${k} must be true or false`);
      out[k] = v[k] as boolean;
    }
    for (const k of ['mirrors', 'ca'] as const) {
      if (v[k] === undefined) continue;
      if (!Array.isArray(v[k]) || !(v[k] as unknown[]).every((s) => typeof s === 'string' && s !== '')) fail(`${at}.${k} must be a list of strings`);
      out[k] = k === 'ca' ? (v[k] as string[]).map((p) => path.resolve(baseDir, p)) : (v[k] as string[]);
    }
    if (v.keypair !== undefined) {
      const pairs = v.keypair;
      if (!Array.isArray(pairs) || !pairs.every((p) => isObject(p) && typeof p.cert === 'string' && typeof p.key === 'string')) {
        fail(`${at}.keypair must be a list of {"cert": FILE, "key": FILE}`);
      }
      out.keypair = (pairs as { cert: string; key: string }[]).map((p) => ({ cert: path.resolve(baseDir, p.cert), key: path.resolve(baseDir, p.key) }));
    }
    registry[host] = out;
  }
  return { registry };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
