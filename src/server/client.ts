// `builder build --builder ADDR`: the build runs in a `builder serve` process. The context goes up as a tar
// stream (.dockerignore'd files included: the server applies it, as BuildKit's daemon does), progress comes
// back and is printed here; Ctrl-C closes the connection, which cancels the build on the server.
import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { BuildError, type BuildResult } from '../client/build.js';
import { parseSecretSpec, loadSession } from '../client/session.js';
import { replay, type ProgressEvent } from '../progress/events.js';
import type { ProgressWriter } from '../progress/printer.js';
import { UserError } from '../util/errors.js';
import { isRemoteContext } from '../client/remote.js';
import { redactRemote } from '../util/gitaddress.js';
import { OPTIONS_HEADER, parseAddress, type RemoteBuildOptions, type WireError } from './protocol.js';

export interface RemoteBuildRequest extends Omit<RemoteBuildOptions, 'secrets' | 'file'> {
  addr: string;
  token?: string;
  context: string;
  /** Dockerfile path on this machine; it must be inside the context. Default `<context>/Dockerfile`. */
  file?: string;
  /** `--secret` specs, read here and sent with the request. */
  secrets?: string[];
  progress: ProgressWriter;
  signal?: AbortSignal;
}

export class RemoteError extends UserError {}

export async function remoteBuild(req: RemoteBuildRequest): Promise<BuildResult> {
  const address = parseAddress(req.addr);
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
  const session = await loadSession((req.secrets ?? []).map(parseSecretSpec), []);
  const options: RemoteBuildOptions = {
    file: rel.split(path.sep).join('/'), tags: req.tags, buildArgs: req.buildArgs, labels: req.labels, target: req.target,
    platform: req.platform, outputs: req.outputs, noCache: req.noCache, allow: req.allow,
    network: req.network, addHosts: req.addHosts, shmSize: req.shmSize, ulimits: req.ulimits, cgroupParent: req.cgroupParent, call: req.call,
    ...(req.attest?.length ? { attest: req.attest } : {}),
    secrets: [...(session.secrets ?? new Map())].map(([id, value]) => ({ id, value: value.toString('base64') })),
  };
  const headers: http.OutgoingHttpHeaders = {
    'content-type': 'application/x-tar',
    [OPTIONS_HEADER]: Buffer.from(JSON.stringify(options)).toString('base64'),
    ...(req.token ? { authorization: `Bearer ${req.token}` } : {}),
  };
  const target = address.kind === 'unix' ? { socketPath: address.path } : { host: address.host, port: address.port };

  return new Promise<BuildResult>((resolve, reject) => {
    const tar = spawn('tar', ['-c', '-f', '-', '-C', context, '.'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const httpReq = http.request({ ...target, method: 'POST', path: '/v1/build', headers }, (res) => {
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
      res.on('end', () => finish(() => reject(new RemoteError('REMOTE_FAILED', `the builder at ${req.addr} ended the build without a result (HTTP ${res.statusCode})`))));
      res.on('error', (e) => finish(() => reject(e)));
    });
    httpReq.on('error', (e) => {
      if (req.signal?.aborted) return reject(Object.assign(new Error('build canceled'), { code: 'CANCELED' }));
      reject(new RemoteError('REMOTE_UNREACHABLE', `cannot reach the builder at ${req.addr}: ${(e as NodeJS.ErrnoException).code ?? e.message}`));
    });
    const onAbort = () => { httpReq.destroy(); tar.kill(); };
    req.signal?.addEventListener('abort', onAbort, { once: true });
    tar.stdout.pipe(httpReq);
  });
}

function fromWire(e: WireError): Error {
  if (e.code === 'CANCELED') return Object.assign(new Error(e.message), { code: 'CANCELED' });
  const err = new BuildError(e.message, e.outputTail ?? []);
  err.details.push(...(e.details ?? []));
  return err;
}
