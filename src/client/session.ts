// What a build borrows from the client: secrets (`--secret`), SSH agents (`--ssh`) and the entitlements it
// grants (`--allow`), with buildx's spec formats. Secret values are read once here and live only in memory.
import fs from 'node:fs/promises';
import type { Definition } from '../../solver/llb/definition.js';
import type { BuildSession } from '../worker/mounts.js';
import { UserError } from '../util/errors.js';

export type Entitlement = 'network.host' | 'security.insecure';
const ENTITLEMENTS: Entitlement[] = ['network.host', 'security.insecure'];

export interface SecretSpec {
  id: string;
  /** File holding the value. */
  src?: string;
  /** Environment variable holding the value. */
  env?: string;
  /** The value itself (an embedder or a remote client that already has it). */
  value?: Buffer;
}

export interface SshSpec {
  id: string;
  /** Agent socket; default `$SSH_AUTH_SOCK`. */
  path?: string;
}

class InvalidSpecError extends UserError {
  constructor(flag: string, message: string) { super('INVALID_FLAG', `invalid --${flag}: ${message}`); }
}

/** `id=ID[,src=FILE|,env=VAR][,type=file|env]`, as `docker buildx build --secret`. */
export function parseSecretSpec(spec: string): SecretSpec {
  const out: SecretSpec = { id: '' };
  let type = '';
  for (const field of spec.split(',')) {
    const eq = field.indexOf('=');
    const key = (eq < 0 ? field : field.slice(0, eq)).toLowerCase();
    const value = eq < 0 ? '' : field.slice(eq + 1);
    switch (key) {
      case 'type':
        if (value !== 'file' && value !== 'env') throw new InvalidSpecError('secret', `unsupported secret type "${value}"`);
        type = value;
        break;
      case 'id': out.id = value; break;
      case 'src': case 'source': out.src = value; break;
      case 'env': out.env = value; break;
      default: throw new InvalidSpecError('secret', `unexpected key '${key}' in '${field}'`);
    }
  }
  if (type === 'env' && !out.env) {
    out.env = out.src || out.id;
    delete out.src;
  }
  if (!out.id) throw new InvalidSpecError('secret', `"${spec}" has no id=`);
  return out;
}

/** `ID[=SOCKET]`, as `docker buildx build --ssh`. */
export function parseSshSpec(spec: string): SshSpec {
  const eq = spec.indexOf('=');
  const id = eq < 0 ? spec : spec.slice(0, eq);
  if (!id) throw new InvalidSpecError('ssh', `"${spec}" has no id`);
  return eq < 0 ? { id } : { id, path: spec.slice(eq + 1) };
}

export function parseEntitlements(list: string[]): Set<Entitlement> {
  const out = new Set<Entitlement>();
  for (const item of list.flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean)) {
    if (!ENTITLEMENTS.includes(item as Entitlement)) {
      throw new InvalidSpecError('allow', `unknown entitlement "${item}" (valid: ${ENTITLEMENTS.join(', ')})`);
    }
    out.add(item as Entitlement);
  }
  return out;
}

/** Reads the secret values and checks the agent sockets. */
export async function loadSession(secrets: SecretSpec[], ssh: SshSpec[]): Promise<BuildSession> {
  const session: BuildSession = { secrets: new Map(), ssh: new Map() };
  for (const s of secrets) {
    let value: Buffer;
    if (s.value) {
      value = s.value;
    } else if (s.src) {
      value = await fs.readFile(s.src).catch(() => {
        throw new UserError('SECRET_NOT_FOUND', `secret ${s.id}: cannot read ${s.src}: no such file`);
      });
    } else {
      const name = s.env ?? s.id;
      const v = process.env[name];
      if (v === undefined) throw new UserError('SECRET_NOT_FOUND', `secret ${s.id}: environment variable ${name} is not set`);
      value = Buffer.from(v);
    }
    session.secrets!.set(s.id, value);
  }
  for (const s of ssh) {
    const sock = s.path ?? process.env.SSH_AUTH_SOCK;
    if (!sock) throw new UserError('SSH_NOT_FOUND', `--ssh ${s.id}: SSH_AUTH_SOCK is not set; give the agent socket as --ssh ${s.id}=PATH`);
    const st = await fs.stat(sock).catch(() => null);
    if (!st?.isSocket()) throw new UserError('SSH_NOT_FOUND', `--ssh ${s.id}: ${sock} is not a socket`);
    session.ssh!.set(s.id, sock);
  }
  return session;
}

/** An op that needs an entitlement the client did not grant; carries the op's Dockerfile location. */
export class EntitlementError extends UserError {
  constructor(message: string, readonly location?: { file?: string; startLine: number }) {
    super('ENTITLEMENT_DENIED', message);
  }
}

/** Refuses a definition whose RUN steps use `--network=host` or `--security=insecure` without `--allow`. */
export function checkEntitlements(def: Definition, allowed: Set<Entitlement>): void {
  for (const [digest, op] of Object.entries(def.ops)) {
    if (op.kind !== 'exec') continue;
    const location = def.metadata[digest as keyof typeof def.metadata]?.location;
    if (op.meta.network === 'host' && !allowed.has('network.host')) {
      throw new EntitlementError('RUN --network=host needs the network.host entitlement: add --allow network.host', location);
    }
    if (op.meta.security === 'insecure' && !allowed.has('security.insecure')) {
      throw new EntitlementError('RUN --security=insecure needs the security.insecure entitlement: add --allow security.insecure', location);
    }
  }
}
