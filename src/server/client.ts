// `builder build --builder ADDR`: the build runs in a `builder serve` process. The context goes up as a tar
// stream (.dockerignore'd files included: the server applies it, as BuildKit's daemon does), progress comes
// back and is printed here; Ctrl-C closes the connection, which cancels the build on the server.
import fs from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { BuildError, type BuildResult } from '../client/build.js';
import { parseSecretSpec, loadSession } from '../client/session.js';
import { replay, type ProgressEvent } from '../progress/events.js';
import type { ProgressWriter } from '../progress/printer.js';
import { UserError } from '../util/errors.js';
import { isRemoteContext } from '../client/remote.js';
import { redactRemote } from '../util/gitaddress.js';
import { parseCacheFrom, parseCacheTo } from '../client/remotecache.js';
import { OPTIONS_HEADER, parseAddress, type RemoteBuildOptions, type WireError } from './protocol.js';

/** How a client reaches a mutual-TLS `builder serve`: PEM text (not paths) of the CA that signed the
 * server's certificate, and the client's own certificate and key; `servername` when the certificate's
 * name is not the address's host. */
export interface ClientTLS {
  ca?: string;
  cert?: string;
  key?: string;
  servername?: string;
}

export interface RemoteBuildRequest extends Omit<RemoteBuildOptions, 'secrets' | 'file'> {
  addr: string;
  token?: string;
  /** Speak TLS to a tcp:// address. */
  tls?: ClientTLS;
  context: string;
  /** Dockerfile path on this machine; it must be inside the context. Default `<context>/Dockerfile`. */
  file?: string;
  /** `--secret` specs, read here and sent with the request. */
  secrets?: string[];
  progress: ProgressWriter;
  signal?: AbortSignal;
}

export class RemoteError extends UserError {}

/** A build result; `fetch` when the request had fetchOutput: the ID to pass to fetchOutput(). */
export type RemoteBuildResult = BuildResult & { fetch?: string };

export async function remoteBuild(req: RemoteBuildRequest): Promise<RemoteBuildResult> {
  parseAddress(req.addr); // a bad address is a one-line error before anything is read
  if (isRemoteContext(req.context) && !(await fs.stat(req.context).catch(() => null))?.isDirectory()) {
    throw new UserError('USAGE', `a remote context (${redactRemote(req.context)}) is not supported with --builder yet`);
  }
  const context = path.resolve(req.context);
  const dockerfile = path.resolve(req.file ?? path.join(context, 'Dockerfile'));
  const rel = path.relative(context, dockerfile);
  if (rel.startsWith('..') || path.isAbsolute(rel)) {
    throw new UserError('DOCKERFILE_OUTSIDE_CONTEXT', `with --builder the Dockerfile must be inside the context: ${dockerfile}`);
  }
  if (!(await fs.stat(context).catch(() => null))?.isDirectory()) {
    throw new BuildError(`unable to prepare context: path "${req.context}" not found`);
  }
  for (const [flag, specs, parse] of [['--cache-to', req.cacheTo, parseCacheTo], ['--cache-from', req.cacheFrom, parseCacheFrom]] as const) {
    for (const spec of specs ?? []) {
      if (parse(spec).type === 'local') throw new UserError('UNSUPPORTED_CACHE', `${flag} "${spec}": type=local is not supported with --builder (the directory would be the builder's): use type=registry`);
    }
  }
  const session = await loadSession((req.secrets ?? []).map(parseSecretSpec), []);
  const options: RemoteBuildOptions = {
    file: rel.split(path.sep).join('/'), tags: req.tags, buildArgs: req.buildArgs, labels: req.labels, target: req.target,
    platform: req.platform, outputs: req.outputs, noCache: req.noCache, allow: req.allow,
    network: req.network, addHosts: req.addHosts, shmSize: req.shmSize, ulimits: req.ulimits, cgroupParent: req.cgroupParent, call: req.call,
    ...(req.attest?.length ? { attest: req.attest } : {}),
    ...(req.fetchOutput ? { fetchOutput: true } : {}),
    ...(req.cacheTo?.length ? { cacheTo: req.cacheTo } : {}), ...(req.cacheFrom?.length ? { cacheFrom: req.cacheFrom } : {}),
    secrets: [...(session.secrets ?? new Map())].map(([id, value]) => ({ id, value: value.toString('base64') })),
  };
  const headers: http.OutgoingHttpHeaders = {
    'content-type': 'application/x-tar',
    [OPTIONS_HEADER]: Buffer.from(JSON.stringify(options)).toString('base64'),
    ...(req.token ? { authorization: `Bearer ${req.token}` } : {}),
  };
  const canceled = () => (req.signal?.aborted ? Object.assign(new Error('build canceled'), { code: 'CANCELED' }) : undefined);
  return new Promise<RemoteBuildResult>((resolve, reject) => {
    const tar = spawn('tar', ['-c', '-f', '-', '-C', context, '.'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const httpReq = request(req.addr, req.tls, { method: 'POST', path: '/v1/build', headers }, (res) => {
      let buffer = '';
      let settled = false;
      const finish = (fn: () => void) => { if (!settled) { settled = true; fn(); } };
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffer += chunk;
        let nl;
        while ((nl = buffer.indexOf('\n')) >= 0) {
          const line = buffer.slice(0, nl);
          buffer = buffer.slice(nl + 1);
          if (!line.trim()) continue;
          const msg = JSON.parse(line) as { progress?: ProgressEvent; result?: BuildResult; error?: WireError };
          if (msg.progress) replay(msg.progress, req.progress);
          else if (msg.result) finish(() => resolve(msg.result!));
          else if (msg.error) finish(() => reject(fromWire(msg.error!)));
        }
      });
      res.on('end', () => finish(() => reject(canceled() ?? new RemoteError('REMOTE_FAILED', `the builder at ${req.addr} ended the build without a result (HTTP ${res.statusCode})`))));
      res.on('error', (e) => finish(() => reject(canceled() ?? new RemoteError('REMOTE_FAILED', `the builder at ${req.addr} went away during the build: ${(e as NodeJS.ErrnoException).code ?? e.message}`))));
    });
    let responded = false;
    httpReq.on('response', () => { responded = true; });
    httpReq.on('error', (e) => {
      if (req.signal?.aborted) return reject(canceled());
      if (responded) return reject(new RemoteError('REMOTE_FAILED', `the builder at ${req.addr} went away during the build: ${(e as NodeJS.ErrnoException).code ?? e.message}`));
      reject(unreachable(req.addr, e, req.tls));
    });
    const onAbort = () => { httpReq.destroy(); tar.kill(); };
    req.signal?.addEventListener('abort', onAbort, { once: true });
    tar.stdout.pipe(httpReq);
  });
}

/** A request to a `builder serve` at `addr` (unix, plain TCP, or TLS with `tls`). */
export function request(addr: string, tls: ClientTLS | undefined, opts: http.RequestOptions, onResponse?: (res: http.IncomingMessage) => void): http.ClientRequest {
  const address = parseAddress(addr);
  if (address.kind === 'unix') return http.request({ ...opts, socketPath: address.path }, onResponse);
  const target = { ...opts, host: address.host, port: address.port };
  if (!tls) return http.request(target, onResponse);
  return https.request({
    ...target, ca: tls.ca, cert: tls.cert, key: tls.key, agent: false,
    ...(tls.servername ? { servername: tls.servername } : {}),
  }, onResponse);
}

/** Writes a fetchOutput build's output (GET /v1/outputs/ID) to `dest`: a directory is unpacked into it, a
 * file written beside it and renamed over it. */
export async function fetchOutput(addr: string, tls: ClientTLS | undefined, id: string, dest: string, opts: { token?: string } = {}): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const headers = opts.token ? { authorization: `Bearer ${opts.token}` } : undefined;
    const req = request(addr, tls, { method: 'GET', path: `/v1/outputs/${id}`, headers }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        return reject(new RemoteError('REMOTE_FAILED', `the builder at ${addr} has no output ${id} (HTTP ${res.statusCode})`));
      }
      const cut = (e: Error) => new RemoteError('REMOTE_FAILED', `the builder at ${addr} went away while sending the output: ${(e as NodeJS.ErrnoException).code ?? e.message}`);
      if (res.headers['x-builder-output'] === 'file') {
        const tmp = `${dest}.builder-${process.pid}-${Date.now()}.tmp`;
        void fs.mkdir(path.dirname(dest), { recursive: true }).then(async () => {
          const file = await fs.open(tmp, 'w');
          const out = file.createWriteStream();
          res.on('error', (e) => { out.destroy(); void fs.rm(tmp, { force: true }); reject(cut(e)); });
          out.on('error', (e) => { void fs.rm(tmp, { force: true }); reject(new RemoteError('OUTPUT_FAILED', `failed to write output ${dest}: ${e.message}`)); });
          out.on('finish', () => { void fs.rename(tmp, dest).then(resolve, (e: Error) => reject(new RemoteError('OUTPUT_FAILED', `failed to write output ${dest}: ${e.message}`))); });
          res.pipe(out);
        }, reject);
        return;
      }
      void fs.mkdir(dest, { recursive: true }).then(() => {
        const tar = spawn('tar', ['-x', '-f', '-', '-C', dest], { stdio: ['pipe', 'ignore', 'pipe'] });
        let err = '';
        tar.stderr.on('data', (d) => { err += d; });
        tar.stdin.on('error', () => undefined);
        res.on('error', (e) => { tar.kill(); reject(cut(e)); });
        res.pipe(tar.stdin);
        tar.on('close', (code) => (code === 0 ? resolve() : reject(new RemoteError('REMOTE_FAILED', `unpacking the output from ${addr} into ${dest} failed: ${err.trim() || `tar exited ${code}`}`))));
      }, reject);
    });
    req.on('error', (e) => reject(unreachable(addr, e, tls)));
    req.end();
  });
}

/** GET a small JSON endpoint (`/v1/version`) of a `builder serve`. */
export function getJSON<T>(addr: string, tls: ClientTLS | undefined, urlPath: string, opts: { token?: string; timeoutMs?: number } = {}): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const headers = opts.token ? { authorization: `Bearer ${opts.token}` } : undefined;
    const req = request(addr, tls, { method: 'GET', path: urlPath, headers }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { data += d; });
      res.on('end', () => {
        try {
          const json = JSON.parse(data) as T & { error?: WireError };
          if (res.statusCode !== 200) return reject(new RemoteError('REMOTE_FAILED', `the builder at ${addr}: ${json.error?.message ?? `HTTP ${res.statusCode}`}`));
          resolve(json);
        } catch {
          reject(new RemoteError('REMOTE_FAILED', `the builder at ${addr} answered ${urlPath} with something that is not JSON (HTTP ${res.statusCode})`));
        }
      });
      res.on('error', reject);
    });
    req.setTimeout(opts.timeoutMs ?? 10_000, () => req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
    req.on('error', (e) => reject(unreachable(addr, e, tls)));
    req.end();
  });
}

function unreachable(addr: string, e: Error, tls?: ClientTLS): RemoteError {
  const code = (e as NodeJS.ErrnoException).code ?? '';
  const what = `${code} ${e.message}`;
  // TLS failures say which side refused whom, and what to change.
  let hint = '';
  const closed = /^tcp:/.test(addr) && /ECONNRESET|socket hang up|EPROTO/i.test(what);
  // A server that refuses the client's certificate may say so (an alert) or just close the connection.
  if (/CERTIFICATE_REQUIRED/.test(what) || (closed && tls && !tls.cert)) hint = ' (TLS: the builder requires a client certificate: --driver-opt cert=FILE,key=FILE)';
  else if (/UNKNOWN_CA|BAD_CERTIFICATE|CERTIFICATE_UNKNOWN|DECRYPT_ERROR/.test(what) || (closed && tls?.cert)) hint = ' (TLS: the builder refused the client certificate: is it signed by the CA the builder trusts, --tlscacert?)';
  else if (/SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|CERT_/.test(what)) hint = ` (TLS: the builder's certificate is not trusted for this address: check --driver-opt cacert= and servername=)`;
  else if (closed && !tls) hint = ' (does the builder speak TLS? then the instance needs --driver-opt cacert=,cert=,key=)';
  return new RemoteError('REMOTE_UNREACHABLE', `cannot reach the builder at ${addr}: ${code || e.message}${hint}`);
}

function fromWire(e: WireError): Error {
  if (e.code === 'CANCELED') return Object.assign(new Error(e.message), { code: 'CANCELED' });
  const err = new BuildError(e.message, e.outputTail ?? []);
  err.details.push(...(e.details ?? []));
  return err;
}
