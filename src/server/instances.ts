// Builder instances, as buildx's: a name for one or more `builder serve` nodes (their addresses, TLS files
// and platforms), stored in the config directory beside config.json:
//   <dir>/instances/NAME.json   one instance
//   <dir>/instances/current     the name `builder use` chose (builds go there when no --builder is given)
// where <dir> is $BUILDER_CONFIG's directory, else $XDG_CONFIG_HOME/builder (~/.config/builder). Every
// write is a temp file renamed over the old one.
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { builderConfigPath } from '../registry/config.js';
import { UserError } from '../util/errors.js';
import { parseAddress } from './protocol.js';
import type { ClientTLS } from './client.js';

export interface NodeSpec {
  name: string;
  /** `tcp://host:port` or `unix:///path`. */
  endpoint: string;
  /** Platforms given with `create --platform`: the node is sent these whatever it reports. */
  platforms?: string[];
  /** buildx remote driver options: cacert, cert, key (absolute paths), servername. */
  driverOpts?: Record<string, string>;
}

export interface Instance {
  name: string;
  driver: 'remote';
  nodes: NodeSpec[];
}

/** The instance a build uses when none is named: `builder use default` (or none chosen) is the local engine. */
export const DEFAULT_INSTANCE = 'default';
export const DRIVER_OPTS = ['cacert', 'cert', 'key', 'servername'];

export class InstanceError extends UserError {}

export function instancesDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(path.dirname(builderConfigPath(env)), 'instances');
}

export function checkName(name: string, what = 'builder'): void {
  if (!/^[a-zA-Z0-9][a-zA-Z0-9._-]*$/.test(name)) {
    throw new InstanceError('INVALID_NAME', `invalid ${what} name "${name}": use letters, digits, ".", "_" and "-", starting with a letter or digit`);
  }
}

function writeAtomic(file: string, data: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  fs.writeFileSync(tmp, data, { mode: 0o600 });
  fs.renameSync(tmp, file);
}

export function loadInstance(name: string, env: NodeJS.ProcessEnv = process.env): Instance | undefined {
  checkName(name);
  const file = path.join(instancesDir(env), `${name}.json`);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new InstanceError('INSTANCE_UNREADABLE', `builder ${name}: cannot read ${file}: ${(e as Error).message}`);
  }
  try {
    const json = JSON.parse(text) as Instance;
    if (!json || !Array.isArray(json.nodes)) throw new Error('no nodes');
    return json;
  } catch (e) {
    throw new InstanceError('INSTANCE_UNREADABLE', `builder ${name}: ${file} is damaged: ${(e as Error).message}`);
  }
}

/** The instance or a one-line error naming it. */
export function getInstance(name: string, env: NodeJS.ProcessEnv = process.env): Instance {
  const inst = loadInstance(name, env);
  if (!inst) throw new InstanceError('NO_SUCH_BUILDER', `no builder "${name}" found`);
  return inst;
}

export function saveInstance(inst: Instance, env: NodeJS.ProcessEnv = process.env): void {
  checkName(inst.name);
  writeAtomic(path.join(instancesDir(env), `${inst.name}.json`), JSON.stringify(inst, null, 2) + '\n');
}

export function removeInstance(name: string, env: NodeJS.ProcessEnv = process.env): void {
  getInstance(name, env);
  fs.rmSync(path.join(instancesDir(env), `${name}.json`), { force: true });
  if (currentInstance(env) === name) setCurrent(undefined, env);
}

export function listInstances(env: NodeJS.ProcessEnv = process.env): Instance[] {
  let names: string[];
  try {
    names = fs.readdirSync(instancesDir(env)).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5)).sort();
  } catch {
    return [];
  }
  return names.flatMap((n) => { const i = loadInstance(n, env); return i ? [i] : []; });
}

/** The name `builder use` chose; undefined: the local engine. Cheap: every local build asks. */
export function currentInstance(env: NodeJS.ProcessEnv = process.env): string | undefined {
  try {
    const name = fs.readFileSync(path.join(instancesDir(env), 'current'), 'utf8').trim();
    return name && name !== DEFAULT_INSTANCE ? name : undefined;
  } catch {
    return undefined;
  }
}

export function setCurrent(name: string | undefined, env: NodeJS.ProcessEnv = process.env): void {
  const file = path.join(instancesDir(env), 'current');
  if (name === undefined || name === DEFAULT_INSTANCE) fs.rmSync(file, { force: true });
  else writeAtomic(file, name + '\n');
}

/** `cacert=FILE,cert=FILE,key=FILE,servername=NAME` (repeatable); paths made absolute. */
export function parseDriverOpts(specs: string[], cwd = process.cwd()): Record<string, string> {
  const out: Record<string, string> = {};
  for (const spec of specs) {
    for (const field of spec.split(',').filter(Boolean)) {
      const eq = field.indexOf('=');
      const key = eq > 0 ? field.slice(0, eq) : field;
      if (eq <= 0) throw new InstanceError('INVALID_FLAG', `invalid --driver-opt "${field}": expected KEY=VALUE`);
      if (!DRIVER_OPTS.includes(key)) throw new InstanceError('INVALID_FLAG', `invalid --driver-opt "${field}": unknown option "${key}" for driver remote (valid: ${DRIVER_OPTS.join(', ')})`);
      const value = field.slice(eq + 1);
      out[key] = key === 'servername' ? value : path.resolve(cwd, value);
    }
  }
  if ((out.cert || out.key) && !(out.cert && out.key)) throw new InstanceError('INVALID_FLAG', 'invalid --driver-opt: cert and key go together');
  return out;
}

/** The node's TLS settings, files read now; undefined for a node without TLS options. */
export function nodeTLS(node: NodeSpec): ClientTLS | undefined {
  const o = node.driverOpts ?? {};
  if (!o.cacert && !o.cert && !o.key) return undefined;
  const read = (k: string) => {
    if (!o[k]) return undefined;
    try {
      return fs.readFileSync(o[k], 'utf8');
    } catch (e) {
      throw new InstanceError('TLS_FILE', `node ${node.name}: cannot read ${k} ${o[k]}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  };
  return { ca: read('cacert'), cert: read('cert'), key: read('key'), ...(o.servername ? { servername: o.servername } : {}) };
}

export function checkEndpoint(endpoint: string): void {
  parseAddress(endpoint);
}

export type BuilderChoice = { kind: 'local' } | { kind: 'address'; addr: string } | { kind: 'instance'; name: string };

/**
 * Where a build runs: `--builder` (an address with `://`, else an instance name; `default` is the local
 * engine), else $BUILDER_BUILDER (buildx's BUILDX_BUILDER), else $BUILDER_HOST (an address), else the
 * instance `builder use` chose, else the local engine.
 */
export function chooseBuilder(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): BuilderChoice {
  const named = flag || env.BUILDER_BUILDER;
  if (named) {
    if (named.includes('://')) return { kind: 'address', addr: named };
    return named === DEFAULT_INSTANCE ? { kind: 'local' } : { kind: 'instance', name: named };
  }
  if (env.BUILDER_HOST) return { kind: 'address', addr: env.BUILDER_HOST };
  const current = currentInstance(env);
  return current ? { kind: 'instance', name: current } : { kind: 'local' };
}
