// `builder serve`: the same engine behind a socket, for teams and tools that share one builder and its
// cache. Each request streams its context in as a tar and gets its progress back as it happens; a client
// that goes away cancels its build (containers killed, mounts undone). Builds on one --root take turns
// through the state lock, so many clients can be connected at once; past --max-concurrent-builds builds
// wait, clients taking turns (slots.ts).
//
// TCP is mutual TLS (buildkitd's --tlscacert/--tlscert/--tlskey: only clients with a certificate signed
// by that CA get in), or plain HTTP with a token, which off loopback needs --allow-insecure-tcp.
import fs from 'node:fs/promises';
import { createReadStream, readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import path from 'node:path';
import os from 'node:os';
import { spawn } from 'node:child_process';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { build, BuildError } from '../client/build.js';
import { unpackContext } from '../client/context.js';
import { EventProgress, type ProgressEvent } from '../progress/events.js';
import { BuilderError, UserError } from '../util/errors.js';
import { OPTIONS_HEADER, parseAddress, isLoopback, type Address, type RemoteBuildOptions, type ServerInfo, type WireError } from './protocol.js';
import type { RegistryHostConfig } from '../registry/config.js';
import { BuildSlots } from './slots.js';
import { parseCacheFrom, parseCacheTo } from '../client/remotecache.js';
import { parseOutput, type OutputSpec } from '../client/outputs.js';
import { formatPlatform, hostPlatform, parsePlatforms } from '../client/platform.js';
import { emulatedPlatforms } from '../executor/emulation.js';

export interface ServeOptions {
  addr: string;
  /** Required for plain TCP, optional with TLS: clients send it as `Authorization: Bearer <token>`. */
  token?: string;
  /** PEM files: the CA client certificates must be signed by, and the server's certificate and key. All
   * three or none; with them a tcp:// address speaks mutual TLS. */
  tlsCACert?: string;
  tlsCert?: string;
  tlsKey?: string;
  /** Plain (token-only) TCP on an address that is not loopback. */
  allowInsecureTcp?: boolean;
  /** Most builds run at once; the rest wait, clients taking turns. 0 or undefined: no limit. */
  maxConcurrentBuilds?: number;
  /** The platforms this node offers (`linux/amd64,linux/arm64`); default the host's. */
  platforms?: string;
  /** Reported by /v1/version. */
  version?: string;
  /** Cache every build imports and exports (`--cache-from`/`--cache-to` specs, e.g. a registry ref that
   * nodes share): a node with an empty state dir starts from what the others exported. */
  cacheFrom?: string[];
  cacheTo?: string[];
  root: string;
  ociRuntime?: string;
  insecureRegistries?: string[];
  /** Per-registry settings for every build (as BuildOptions.registries); default: the config file's. */
  registries?: Record<string, RegistryHostConfig>;
  /** Where to report requests and failures; default nowhere. */
  log?: (line: string) => void;
}

export interface Server {
  address: Address;
  /** Builds running and waiting now. */
  stats(): { running: number; queued: number; max: number };
  close(): Promise<void>;
}

interface State {
  opts: ServeOptions;
  address: Address;
  slots: BuildSlots;
  info: Omit<ServerInfo, 'running' | 'queued'>;
  /** Outputs of fetchOutput builds waiting for their client's GET /v1/outputs/ID. */
  fetches: Map<string, { dir: string; timer: NodeJS.Timeout }>;
}

/** How long a fetchOutput result waits for its client. */
const FETCH_KEEP_MS = 10 * 60_000;

function readTLSFile(flag: string, file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new UserError('TLS_FILE', `--${flag} ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

export async function serve(opts: ServeOptions): Promise<Server> {
  const address = parseAddress(opts.addr);
  if (opts.maxConcurrentBuilds !== undefined && (!Number.isInteger(opts.maxConcurrentBuilds) || opts.maxConcurrentBuilds < 0)) {
    throw new UserError('INVALID_FLAG', `invalid --max-concurrent-builds ${opts.maxConcurrentBuilds}: expected a whole number (0: no limit)`);
  }
  const tlsFiles = [opts.tlsCACert, opts.tlsCert, opts.tlsKey].filter((x) => x !== undefined).length;
  if (tlsFiles !== 0 && tlsFiles !== 3) throw new UserError('TLS_INCOMPLETE', 'mutual TLS needs all of --tlscacert, --tlscert and --tlskey');
  const useTLS = tlsFiles === 3;
  if (useTLS && address.kind !== 'tcp') throw new UserError('TLS_UNIX', 'TLS is for tcp:// addresses; a unix socket is guarded by its file mode');
  if (address.kind === 'tcp' && !useTLS) {
    if (!opts.token) {
      throw new UserError('TOKEN_REQUIRED', 'a tcp:// address needs mutual TLS (--tlscacert, --tlscert, --tlskey) or a token (--token or BUILDER_TOKEN): anyone who can connect could run builds');
    }
    if (!isLoopback(address.host) && !opts.allowInsecureTcp) {
      throw new UserError('INSECURE_TCP', `plain TCP on ${address.host} (not loopback) sends the token and the build in clear: use mutual TLS (--tlscacert, --tlscert, --tlskey), or --allow-insecure-tcp`);
    }
  }
  // Bad cache specs fail at start, not at the first build.
  for (const c of opts.cacheFrom ?? []) parseCacheFrom(c);
  for (const c of opts.cacheTo ?? []) parseCacheTo(c);
  const platforms = opts.platforms ? parsePlatforms(opts.platforms).map(formatPlatform) : [formatPlatform(hostPlatform())];
  const emulated = (await emulatedPlatforms()).map(formatPlatform).filter((p) => !platforms.includes(p));
  const state: State = {
    opts, address, slots: new BuildSlots(opts.maxConcurrentBuilds ?? 0), fetches: new Map(),
    info: { version: opts.version ?? 'unknown', platforms, emulated, maxConcurrentBuilds: opts.maxConcurrentBuilds ?? 0 },
  };
  const log = opts.log ?? (() => undefined);
  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse) => {
    handle(req, res, state).catch((e) => {
      log(`request failed: ${(e as Error).message}`);
      if (!res.headersSent) sendError(res, 500, { code: 'INTERNAL', message: (e as Error).message });
      else res.end();
    });
  };
  const server: http.Server = useTLS
    ? https.createServer({
      ca: readTLSFile('tlscacert', opts.tlsCACert!), cert: readTLSFile('tlscert', opts.tlsCert!), key: readTLSFile('tlskey', opts.tlsKey!),
      // Mutual TLS: no certificate signed by the CA, no connection.
      requestCert: true, rejectUnauthorized: true,
    }, onRequest)
    : http.createServer(onRequest);
  if (useTLS) {
    server.on('tlsClientError', (e: Error, socket: Socket) => {
      log(`refused a TLS client${socket.remoteAddress ? ` from ${socket.remoteAddress}` : ''}: ${(e as { reason?: string }).reason ?? e.message}`);
    });
  }
  if (address.kind === 'unix') {
    // A socket left by a server that died is stale; one still answering belongs to a live server.
    if (await fs.stat(address.path).then((s) => s.isSocket(), () => false)) {
      const live = await new Promise<boolean>((resolve) => {
        const probe = http.get({ socketPath: address.path, path: '/v1/health' }, () => resolve(true)).on('error', () => resolve(false));
        probe.setTimeout(1000, () => probe.destroy());
      });
      if (live) throw new UserError('ADDRESS_IN_USE', `another builder is serving on ${opts.addr}`);
      await fs.rm(address.path, { force: true });
    }
    await fs.mkdir(path.dirname(address.path), { recursive: true });
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(address.path, () => resolve())).catch((e) => { throw listenError(opts.addr, e); });
    await fs.chmod(address.path, 0o660);
  } else {
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(address.port, address.host, () => resolve())).catch((e) => { throw listenError(opts.addr, e); });
    const actual = server.address();
    if (actual && typeof actual === 'object') address.port = actual.port;
  }
  return {
    address,
    stats: () => state.slots.stats,
    close: async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      for (const [id, f] of state.fetches) {
        clearTimeout(f.timer);
        state.fetches.delete(id);
        await fs.rm(f.dir, { recursive: true, force: true });
      }
    },
  };
}

async function handle(req: http.IncomingMessage, res: http.ServerResponse, state: State): Promise<void> {
  const { opts, address } = state;
  if (address.kind === 'tcp' && opts.token && !authorized(req, opts.token)) {
    req.resume();
    return sendError(res, 401, { code: 'UNAUTHORIZED', message: 'missing or wrong token' });
  }
  const url = new URL(req.url ?? '/', 'http://builder');
  if (req.method === 'GET' && url.pathname === '/v1/health') {
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}\n');
    return;
  }
  if (req.method === 'GET' && url.pathname === '/v1/version') {
    const info: ServerInfo = { ...state.info, running: state.slots.stats.running, queued: state.slots.stats.queued };
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(info) + '\n');
    return;
  }
  const fetchID = /^\/v1\/outputs\/([0-9a-f]{32})$/.exec(url.pathname)?.[1];
  if (req.method === 'GET' && fetchID) return sendFetched(res, state, fetchID);
  if (req.method !== 'POST' || url.pathname !== '/v1/build') {
    req.resume();
    return sendError(res, 404, { code: 'NOT_FOUND', message: `no such endpoint: ${req.method} ${url.pathname}` });
  }
  let options: RemoteBuildOptions;
  try {
    options = parseOptions(req.headers[OPTIONS_HEADER]);
  } catch (e) {
    req.resume();
    return sendError(res, 400, { code: 'BAD_REQUEST', message: (e as Error).message });
  }

  let fetched: OutputSpec | undefined;
  if (options.fetchOutput) {
    try {
      fetched = fetchableOutput(options.outputs ?? []);
    } catch (e) {
      req.resume();
      return sendError(res, 400, { code: 'BAD_REQUEST', message: (e as Error).message });
    }
  }
  const controller = new AbortController();
  // The client went away before the build ended: cancel it.
  res.on('close', () => { if (!res.writableFinished) controller.abort(); });
  let unpacked;
  try {
    unpacked = await unpackContext(req);
  } catch (e) {
    return sendError(res, 400, { code: 'BAD_CONTEXT', message: `the request body is not a readable tar of the context: ${(e as Error).message}` });
  }
  const context = unpacked.dir;
  let release: (() => void) | undefined;
  let fetchDir: string | undefined;
  try {
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    const send = (obj: object) => { if (!res.destroyed) res.write(JSON.stringify(obj) + '\n'); };
    const progress = new EventProgress((e: ProgressEvent) => send({ progress: e }));
    try {
      // Past --max-concurrent-builds the build waits its turn; the client sees it as a step of its own.
      const queueStep = `queue-${process.hrtime.bigint()}`;
      let queued = false;
      release = await state.slots.acquire(controller.signal, (waiting) => {
        queued = true;
        progress.start({ id: queueStep, name: `[internal] waiting for a build slot (at most ${state.info.maxConcurrentBuilds} at once; ${waiting} other${waiting === 1 ? '' : 's'} waiting)`, started: Date.now() });
      }, clientKey(req));
      if (queued) progress.done(queueStep);
      let outputs: (string | OutputSpec)[] | undefined = options.outputs;
      if (fetched) {
        fetchDir = await fs.mkdtemp(path.join(os.tmpdir(), 'builder-fetch-'));
        outputs = [{ ...fetched, dest: path.join(fetchDir, 'out') }];
      }
      const result = await build({
        context,
        file: path.join(context, safeRelative(options.file ?? 'Dockerfile')),
        tags: options.tags, buildArgs: options.buildArgs, labels: options.labels, target: options.target,
        platform: options.platform, outputs, noCache: options.noCache, allow: options.allow,
        network: options.network, addHosts: options.addHosts, shmSize: options.shmSize, ulimits: options.ulimits,
        cgroupParent: options.cgroupParent, call: options.call, attest: options.attest,
        secrets: (options.secrets ?? []).map((x) => ({ id: x.id, value: Buffer.from(x.value, 'base64') })),
        root: opts.root, ociRuntime: opts.ociRuntime, insecureRegistries: opts.insecureRegistries, registries: opts.registries,
        cacheFrom: [...(opts.cacheFrom ?? []), ...remoteCaches(options.cacheFrom, parseCacheFrom, '--cache-from')], cacheTo: [...(opts.cacheTo ?? []), ...remoteCaches(options.cacheTo, parseCacheTo, '--cache-to')],
        progress, signal: controller.signal,
      });
      if (fetchDir) {
        const id = randomBytes(16).toString('hex');
        const dir = fetchDir;
        const timer = setTimeout(() => { state.fetches.delete(id); void fs.rm(dir, { recursive: true, force: true }); }, FETCH_KEEP_MS);
        timer.unref();
        state.fetches.set(id, { dir, timer });
        fetchDir = undefined;
        send({ result: { ...result, fetch: id } });
      } else send({ result });
    } catch (e) {
      send({ error: wireError(e) });
    }
    res.end();
  } finally {
    release?.();
    if (fetchDir) await fs.rm(fetchDir, { recursive: true, force: true });
    await unpacked.remove();
  }
}

/** A client's cache specs: registry (and inline) ones only, a local directory would be the server's. */
function remoteCaches(specs: string[] | undefined, parse: (s: string) => { type: string }, flag: string): string[] {
  for (const spec of specs ?? []) {
    if (parse(spec).type === 'local') throw new UserError('UNSUPPORTED_CACHE', `${flag} "${spec}": type=local is not supported with --builder (the directory would be the builder's): use type=registry`);
  }
  return specs ?? [];
}

/** The one output a fetchOutput request may have: one with a dest the server can write for the client. */
function fetchableOutput(outputs: string[]): OutputSpec {
  const specs = outputs.map(parseOutput);
  const o = specs[0];
  if (specs.length !== 1 || !o.dest || o.dest === '-' || !['local', 'tar', 'oci', 'docker'].includes(o.type)) {
    throw new Error('fetchOutput takes exactly one output with a dest: type=local, tar, oci or docker');
  }
  return o;
}

/** Streams a fetchOutput build's output (a file as it is, a directory as a tar), once, then removes it. */
async function sendFetched(res: http.ServerResponse, state: State, id: string): Promise<void> {
  const f = state.fetches.get(id);
  if (!f) return sendError(res, 404, { code: 'NOT_FOUND', message: `no output ${id} (fetched already, or expired)` });
  state.fetches.delete(id);
  clearTimeout(f.timer);
  try {
    const out = path.join(f.dir, 'out');
    const dir = (await fs.stat(out)).isDirectory();
    res.writeHead(200, { 'content-type': dir ? 'application/x-tar' : 'application/octet-stream', 'x-builder-output': dir ? 'dir' : 'file' });
    const source = dir ? spawn('tar', ['-c', '-f', '-', '-C', out, '.'], { stdio: ['ignore', 'pipe', 'ignore'] }) : undefined;
    const stream = source ? source.stdout : createReadStream(out);
    res.on('close', () => { source?.kill(); stream.destroy(); });
    stream.pipe(res);
    await new Promise<void>((resolve) => { stream.on('close', () => resolve()); stream.on('error', () => resolve()); });
  } finally {
    await fs.rm(f.dir, { recursive: true, force: true });
  }
}

/** Who asks, for taking turns in the queue: the TLS client certificate, else the TCP peer's address;
 * everyone on a unix socket is one client. */
function clientKey(req: http.IncomingMessage): string {
  const socket = req.socket as Partial<TLSSocket>;
  const cert = typeof socket.getPeerCertificate === 'function' ? socket.getPeerCertificate() : undefined;
  if (cert?.fingerprint256) return `cert:${cert.fingerprint256}`;
  return req.socket.remoteAddress ? `addr:${req.socket.remoteAddress}` : 'local';
}

function authorized(req: http.IncomingMessage, token: string): boolean {
  const got = Buffer.from(/^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '');
  const want = Buffer.from(token);
  return got.length === want.length && timingSafeEqual(got, want);
}

function parseOptions(header: string | string[] | undefined): RemoteBuildOptions {
  if (typeof header !== 'string') throw new Error(`missing ${OPTIONS_HEADER} header`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(header, 'base64').toString('utf8'));
  } catch {
    throw new Error(`${OPTIONS_HEADER} is not base64-encoded JSON`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error(`${OPTIONS_HEADER} must be a JSON object`);
  const o = parsed as Record<string, unknown>;
  const strings = (k: string) => {
    if (o[k] !== undefined && (!Array.isArray(o[k]) || !(o[k] as unknown[]).every((x) => typeof x === 'string'))) throw new Error(`option ${k} must be a list of strings`);
  };
  const str = (k: string) => { if (o[k] !== undefined && typeof o[k] !== 'string') throw new Error(`option ${k} must be a string`); };
  strings('tags'); strings('outputs'); strings('allow'); strings('addHosts'); strings('ulimits'); strings('cacheTo'); strings('cacheFrom');
  str('file'); str('target'); str('platform'); str('network'); str('cgroupParent'); str('call');
  if (o.shmSize !== undefined && typeof o.shmSize !== 'string' && typeof o.shmSize !== 'number') throw new Error('option shmSize must be a string or a number');
  return o as RemoteBuildOptions;
}

/** The Dockerfile path must stay inside the context. */
function safeRelative(p: string): string {
  const clean = path.posix.normalize(`/${p}`).slice(1);
  return clean || 'Dockerfile';
}

function wireError(e: unknown): WireError {
  if (e instanceof BuildError) return { code: e.code, message: e.message, details: e.details, outputTail: e.outputTail };
  if (e instanceof UserError || e instanceof BuilderError) return { code: e.code, message: e.message };
  if ((e as { code?: string })?.code === 'CANCELED') return { code: 'CANCELED', message: 'build canceled' };
  return { code: 'INTERNAL', message: (e as Error)?.message ?? String(e) };
}

function sendError(res: http.ServerResponse, status: number, error: WireError): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ error }) + '\n');
}

/** An address that cannot be listened on (in use, not this machine's, a privileged port) is the user's to
 * change: one line, as buildkitd's "listen tcp ...: bind: address already in use". */
function listenError(addr: string, e: unknown): unknown {
  const code = (e as NodeJS.ErrnoException)?.code;
  const why: Record<string, string> = { EADDRINUSE: 'address already in use', EADDRNOTAVAIL: 'cannot assign requested address', EACCES: 'permission denied' };
  return code && why[code] ? new UserError(code === 'EADDRINUSE' ? 'ADDRESS_IN_USE' : 'LISTEN_FAILED', `cannot serve on ${addr}: ${why[code]}`) : e;
}
