// HTTP for the registry client on node:http/https with keep-alive agents. The global fetch would do, but its
// first use loads and starts undici, about 30 ms of a no-op rebuild that only asks the registry what a tag
// points at. Only what the distribution API needs: a method, headers, a body (bytes or a stream), and
// redirects followed where the body can be sent again (blob downloads are often redirected to storage).
import http from 'node:http';
import type https from 'node:https';
import { Readable } from 'node:stream';

export type RequestBody = Uint8Array | AsyncIterable<Uint8Array>;

export interface RequestOptions {
  method: string;
  headers?: Record<string, string>;
  /** Bytes, or a stream; a function makes the body anew for a redirect (streams cannot be replayed). */
  body?: RequestBody | (() => RequestBody);
  /** Idle time on the connection before the request fails (default 5 minutes, as fetch's). */
  timeoutMs?: number;
}

const MAX_REDIRECTS = 10;
const DEFAULT_TIMEOUT_MS = 300_000;
/** An unread body this small is drained so the connection can be reused; a larger one closes it. */
const DRAIN_LIMIT = 64 << 10;

const httpAgent = new http.Agent({ keepAlive: true });
let httpsModule: Promise<{ https: typeof https; agent: https.Agent }> | undefined;

/** node:https (and TLS) only when a registry needs it: local registries and the tests speak plain HTTP. */
function httpsAgent(): Promise<{ https: typeof https; agent: https.Agent }> {
  httpsModule ??= import('node:https').then((m) => ({ https: m.default, agent: new m.default.Agent({ keepAlive: true }) }));
  return httpsModule;
}

/** A response, with the subset of fetch's Response the registry code uses. */
export class HttpResponse {
  readonly headers: { get(name: string): string | null };

  constructor(private readonly msg: http.IncomingMessage, readonly url: string, private readonly method: string) {
    this.headers = {
      get: (name: string) => {
        const v = msg.headers[name.toLowerCase()];
        return v === undefined ? null : Array.isArray(v) ? v.join(', ') : v;
      },
    };
  }

  get status(): number { return this.msg.statusCode ?? 0; }
  get statusText(): string { return this.msg.statusMessage ?? ''; }
  get ok(): boolean { return this.status >= 200 && this.status < 300; }

  /** The body as chunks, to stream somewhere; `body.cancel()` drops it, as with fetch (see discard()). */
  get body(): AsyncIterable<Uint8Array> & { cancel(): Promise<void> } {
    return { [Symbol.asyncIterator]: () => this.msg[Symbol.asyncIterator](), cancel: () => this.discard() };
  }

  async buffer(): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const c of this.msg) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  }

  async text(): Promise<string> { return (await this.buffer()).toString('utf8'); }

  async json(): Promise<unknown> { return JSON.parse(await this.text()); }

  /**
   * Drops the body: a small or complete one is read to the end, which returns the connection to the pool
   * (until then it holds the process open); a large one closes the connection.
   */
  async discard(): Promise<void> {
    const msg = this.msg;
    if (msg.readableEnded || msg.destroyed) return;
    // A HEAD's content-length is what a GET would send: there is nothing to read.
    const length = this.method === 'HEAD' ? 0 : Number(msg.headers['content-length'] ?? Number.NaN);
    if (msg.complete || (Number.isFinite(length) && length <= DRAIN_LIMIT)) {
      await new Promise<void>((resolve) => {
        msg.once('end', resolve).once('error', () => resolve()).once('close', resolve);
        msg.resume();
      });
      return;
    }
    msg.destroy();
  }
}

/** One HTTP request, following redirects; rejects on network errors only (any status is a response). */
export async function httpRequest(url: string | URL, opts: RequestOptions): Promise<HttpResponse> {
  let target = new URL(url);
  let method = opts.method.toUpperCase();
  let headers = { ...(opts.headers ?? {}) };
  let body = opts.body;
  for (let redirects = 0; ; redirects++) {
    const sent = typeof body === 'function' ? body() : body;
    const msg = await send(target, method, headers, sent, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    const status = msg.statusCode ?? 0;
    const location = msg.headers.location;
    if (!location || ![301, 302, 303, 307, 308].includes(status) || redirects >= MAX_REDIRECTS) return new HttpResponse(msg, target.toString(), method);
    // As fetch: 303 (and 301/302 after a POST) become a GET without a body; 307/308 repeat the request,
    // which needs a body that can be made again.
    const toGet = status === 303 || ((status === 301 || status === 302) && method === 'POST');
    const replayable = body === undefined || body instanceof Uint8Array || typeof body === 'function';
    if (!toGet && !replayable) return new HttpResponse(msg, target.toString(), method);
    msg.resume();
    const next = new URL(location, target);
    if (toGet) {
      method = method === 'HEAD' ? 'HEAD' : 'GET';
      body = undefined;
      headers = Object.fromEntries(Object.entries(headers).filter(([k]) => !/^content-/i.test(k)));
    }
    // Credentials are for the registry, not for the storage it redirects to.
    if (next.origin !== target.origin) headers = Object.fromEntries(Object.entries(headers).filter(([k]) => k.toLowerCase() !== 'authorization'));
    target = next;
  }
}

async function send(url: URL, method: string, headers: Record<string, string>, body: RequestBody | undefined, timeoutMs: number): Promise<http.IncomingMessage> {
  let request: typeof http.request;
  let agent: http.Agent;
  if (url.protocol === 'https:') {
    const m = await httpsAgent();
    request = m.https.request;
    agent = m.agent;
  } else if (url.protocol === 'http:') {
    request = http.request;
    agent = httpAgent;
  } else {
    throw new TypeError(`unsupported URL scheme ${url.protocol}`);
  }
  const outHeaders: Record<string, string> = { 'user-agent': 'builder', ...headers };
  if (body instanceof Uint8Array) outHeaders['content-length'] = String(body.length);
  return new Promise<http.IncomingMessage>((resolve, reject) => {
    const req = request(url, { method, headers: outHeaders, agent }, resolve);
    req.on('error', reject);
    req.setTimeout(timeoutMs, () => req.destroy(Object.assign(new Error(`no response from ${url.host} in ${timeoutMs / 1000}s`), { code: 'ETIMEDOUT' })));
    if (body === undefined) req.end();
    else if (body instanceof Uint8Array) req.end(body);
    else {
      const src = Readable.from(body);
      src.on('error', (e) => req.destroy(e));
      src.pipe(req);
    }
  });
}
