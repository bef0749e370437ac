// Credentials as the docker CLI keeps them in `$DOCKER_CONFIG/config.json` (default ~/.docker): inline in
// `auths` (base64 user:password), or in a credential helper program (`credHelpers` per registry, else
// `credsStore`) speaking the docker-credential-helpers protocol (get/store/erase, JSON on stdin/stdout).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { UserError } from '../util/errors.js';
import { writeFileAtomic } from '../util/fs.js';
import type { Credentials } from './auth.js';

interface DockerConfig {
  auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string }>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
  [key: string]: unknown;
}

export class CredentialHelperError extends UserError {
  constructor(helper: string, detail: string) { super('CREDENTIAL_HELPER', `credential helper docker-credential-${helper}: ${detail}`); }
}

export function dockerConfigPath(): string {
  return path.join(process.env.DOCKER_CONFIG ?? path.join(os.homedir(), '.docker'), 'config.json');
}

function readConfig(file: string): DockerConfig {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as DockerConfig;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new UserError('DOCKER_CONFIG', `cannot read ${file}: ${(e as Error).message}`);
  }
}

/** The key docker uses for a registry in `auths` and helpers: Docker Hub keeps its legacy URL. */
export function configKey(host: string): string {
  return host === 'docker.io' || host === 'registry-1.docker.io' || host === 'index.docker.io' ? 'https://index.docker.io/v1/' : host;
}

/** Keys under which `docker login` may have stored a host's credentials. */
function lookupKeys(host: string): string[] {
  if (configKey(host) !== host) return ['https://index.docker.io/v1/', 'index.docker.io', 'docker.io', 'registry-1.docker.io'];
  return [host, `https://${host}`, `http://${host}`, `https://${host}/v1/`, `https://${host}/v2/`];
}

function runHelper(helper: string, action: 'get' | 'store' | 'erase', input: string): string | undefined {
  const r = spawnSync(`docker-credential-${helper}`, [action], { input, encoding: 'utf8', timeout: 30_000 });
  if (r.error) throw new CredentialHelperError(helper, r.error.message);
  if (r.status !== 0) {
    const msg = (r.stdout || r.stderr || '').trim();
    // The protocol's "not found" is not an error: there are simply no credentials.
    if (action !== 'store' && /credentials not found/i.test(msg)) return undefined;
    throw new CredentialHelperError(helper, msg || `exit status ${r.status}`);
  }
  return r.stdout;
}

/** The credentials for a registry host, or undefined (anonymous). */
export function lookupCredentials(host: string, file = dockerConfigPath()): Credentials | undefined {
  const cfg = readConfig(file);
  const helper = cfg.credHelpers?.[configKey(host)] ?? cfg.credHelpers?.[host] ?? cfg.credsStore;
  if (helper) {
    for (const key of [configKey(host), ...lookupKeys(host)]) {
      const out = runHelper(helper, 'get', key);
      if (!out) continue;
      const parsed = JSON.parse(out) as { Username?: string; Secret?: string };
      if (parsed.Secret) return { username: parsed.Username ?? '', password: parsed.Secret };
    }
    // docker falls back to `auths` when a helper has nothing.
  }
  for (const key of lookupKeys(host)) {
    const entry = cfg.auths?.[key];
    if (!entry) continue;
    if (entry.username && entry.password) return { username: entry.username, password: entry.password };
    if (entry.auth) {
      const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon > 0) return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
    }
  }
  return undefined;
}

/** Saves credentials as `docker login` does: into the helper when one is configured, else inline. */
export async function storeCredentials(host: string, creds: Credentials, file = dockerConfigPath()): Promise<void> {
  const cfg = readConfig(file);
  const key = configKey(host);
  const helper = cfg.credHelpers?.[key] ?? cfg.credsStore;
  cfg.auths ??= {};
  if (helper) {
    runHelper(helper, 'store', JSON.stringify({ ServerURL: key, Username: creds.username, Secret: creds.password }));
    cfg.auths[key] = {};
  } else {
    cfg.auths[key] = { auth: Buffer.from(`${creds.username}:${creds.password}`).toString('base64') };
  }
  await writeConfig(file, cfg);
}

/** Removes a registry's credentials; false when there were none. */
export async function eraseCredentials(host: string, file = dockerConfigPath()): Promise<boolean> {
  const cfg = readConfig(file);
  const key = configKey(host);
  const helper = cfg.credHelpers?.[key] ?? cfg.credsStore;
  let found = false;
  if (helper) {
    try {
      runHelper(helper, 'erase', key);
      found = true;
    } catch {
      // Nothing stored there.
    }
  }
  for (const k of lookupKeys(host)) {
    if (cfg.auths && k in cfg.auths) {
      delete cfg.auths[k];
      found = true;
    }
  }
  await writeConfig(file, cfg);
  return found;
}

async function writeConfig(file: string, cfg: DockerConfig): Promise<void> {
  await writeFileAtomic(file, JSON.stringify(cfg, null, '\t') + '\n');
  fs.chmodSync(file, 0o600);
}
