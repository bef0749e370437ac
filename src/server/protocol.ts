// The wire protocol of `builder serve`: HTTP/1.1 on a unix socket or loopback TCP.
//
//   POST /v1/build   X-Builder-Options: base64(JSON RemoteBuildOptions)   body: the context as a tar stream
//     -> 200, application/x-ndjson: {"progress": ProgressEvent} lines, then {"result": ...} or {"error": ...}
//   GET /v1/health   -> {"ok": true}
//   GET /v1/outputs/ID -> what a `fetchOutput` build wrote: a file, or a directory as a tar (x-builder-output:
//                      file|dir; once; kept 10 minutes)
//   GET /v1/version  -> ServerInfo: version, platforms offered, build limit, builds running and queued
//
// TCP is mutual TLS (the client's certificate must be signed by the server's --tlscacert), or plain HTTP
// with `Authorization: Bearer <token>` (also checked over TLS when the server has a token). A request the server cannot take gets a 4xx with
// {"error": {"code", "message"}} and the server goes on serving.
import { UserError } from '../util/errors.js';
import type { CallName } from '../client/subrequests.js';
import type { ExecFlagOptions } from '../client/execflags.js';

/** What a remote build takes: the serializable part of BuildOptions (RUN containers' settings as ExecFlagOptions). Paths in outputs are the server's. */
export interface RemoteBuildOptions extends ExecFlagOptions {
  /** The Dockerfile's path inside the context; default `Dockerfile`. */
  file?: string;
  tags?: string[];
  buildArgs?: Record<string, string>;
  labels?: Record<string, string>;
  target?: string;
  platform?: string;
  outputs?: string[];
  noCache?: boolean;
  allow?: string[];
  /** As BuildOptions: what the build is asked for (its answer comes in the result). */
  call?: CallName;
  /** `--attest` specs (the shorthands canonicalized); the server applies buildx's default provenance. */
  attest?: string[];
  /** `outputs` is one output with a dest (type=local, tar, oci, docker) that is the client's: the server
   * writes it to a temp place of its own and answers `fetch: ID` in the result, for the client to
   * GET /v1/outputs/ID (a directory comes as a tar). */
  fetchOutput?: boolean;
  /** `--cache-to`/`--cache-from` specs of registry (and inline) caches, besides the server's own defaults:
   * a local cache's path would be the server's. */
  cacheTo?: string[];
  cacheFrom?: string[];
  /** Secret values travel with the request (base64), never to disk on the server. */
  secrets?: { id: string; value: string }[];
}

export interface ServerInfo {
  version: string;
  /** Platforms the node builds for (`linux/amd64`), as `builder serve --platform` set them. */
  platforms: string[];
  /** Other platforms it can build through QEMU (binfmt_misc): used only when no node lists a platform. */
  emulated?: string[];
  /** 0: no limit. */
  maxConcurrentBuilds: number;
  running: number;
  queued: number;
}

export interface WireError {
  code: string;
  message: string;
  details?: string[];
  outputTail?: string[];
}

export const OPTIONS_HEADER = 'x-builder-options';

export type Address = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

export class AddressError extends UserError {
  constructor(message: string) { super('INVALID_ADDRESS', message); }
}

/** `unix:///run/builder.sock` or `tcp://127.0.0.1:1234`. */
export function parseAddress(addr: string): Address {
  if (addr.startsWith('unix://')) {
    const p = addr.slice('unix://'.length);
    if (!p.startsWith('/')) throw new AddressError(`invalid address "${addr}": a unix socket path must be absolute (unix:///path)`);
    return { kind: 'unix', path: p };
  }
  const m = /^tcp:\/\/(\[[^\]]+\]|[^:/]+):(\d+)$/.exec(addr);
  if (m) return { kind: 'tcp', host: m[1].replace(/^\[|\]$/g, ''), port: Number(m[2]) };
  throw new AddressError(`invalid address "${addr}": expected unix:///path or tcp://host:port`);
}

/** 127.0.0.0/8, ::1 and localhost: addresses only this machine reaches. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}
