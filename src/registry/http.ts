// HTTP for the registry client on node:http/https with keep-alive agents. The global fetch would do, but its
// first use loads and starts undici, about 30 ms of a no-op rebuild that only asks the registry what a tag
// points at. Only what the distribution API needs: a method, headers, a body (bytes or a stream), and
// redirects followed where the body can be sent again (blob downloads are often redirected to storage).
import fs from 'node:fs';
import http from 'node:http';
import type https from 'node:https';
import type tls from 'node:tls';
import { Readable } from 'node:stream';
import type { HostTLS } from './hosts.js';

export type RequestBody = Uint8Array | AsyncIterable<Uint8Array>;

export interface RequestOptions {
  method: string;
  headers?: Record<string, string>;
  /** Bytes, or a stream; a function makes the body anew for a redirect (streams cannot be replayed). */
  body?: RequestBody | (() => RequestBody);
  /** Idle time on the connection before the request fails (default 5 minutes, as fetch's). */
  timeoutMs?: number;
  /** What TLS connections to a host trust and present (redirects may lead to other hosts); default: the
   * system's CAs, verified. */
  tls?: (host: string) => HostTLS | undefined;
}

const MAX_REDIRECTS = 10;
const DEFAULT_TIMEOUT_MS = 300_000;
/** As Go's http.Transport: a server that accepts the connection but never finishes the handshake (a plain
 * HTTP server that waits for more of the request) fails the request instead of holding it for minutes. */
const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;
/** An unread body this small is drained so the connection can be reused; a larger one closes it. */
const DRAIN_LIMIT = 64 << 10;

const httpAgent = new http.Agent({ keepAlive: true });

interface TLSModules { https: typeof https; tls: typeof tls; agents: WeakMap<HostTLS, https.Agent>; defaultAgent?: https.Agent; systemCAs?: string[] }
let tlsModules: Promise<TLSModules> | undefined;

/** node:https (and TLS) only when a registry needs it: a plain HTTP registry costs one HTTPS attempt per
 * process (hosts.ts) but not this at every CLI start. */
function loadTLS(): Promise<TLSModules> {
  tlsModules ??= Promise.all([import('node:https'), import('node:tls')]).then(([h, t]) => ({ https: h.default, tls: t.default, agents: new WeakMap() }));
  return tlsModules;
}

/** System CA bundles, where Go (and so Docker) looks for them; SSL_CERT_FILE first. */
const SYSTEM_CA_FILES = [
  '/etc/ssl/certs/ca-certificates.crt', // Debian, Ubuntu, Arch, Gentoo
  '/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem', // Fedora, RHEL 7+
  '/etc/pki/tls/certs/ca-bundle.crt', // older Fedora, RHEL
  '/etc/ssl/ca-bundle.pem', // openSUSE
  '/etc/ssl/cert.pem', // Alpine
];

const PEM_CERT = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g;

/**
 * The CAs Node's own (Mozilla) store lacks that Docker would trust: the system bundle's others (a CA an
 * administrator added with update-ca-certificates) and NODE_EXTRA_CA_CERTS. Only those few are added to a
 * context: parsing the whole bundle again would cost tens of milliseconds per process.
 */
function systemExtraCAs(m: TLSModules): string[] {
  if (m.systemCAs) return m.systemCAs;
  const body = (pem: string) => pem.replace(/-----[A-Z ]+-----|\s/g, '');
  const known = new Set(m.tls.rootCertificates.map(body));
  const extra: string[] = [];
  const files = [...(process.env.SSL_CERT_FILE ? [process.env.SSL_CERT_FILE] : SYSTEM_CA_FILES)];
  for (const file of files) {
    let text: string;
    try { text = fs.readFileSync(file, 'utf8'); } catch { continue; }
    for (const pem of text.match(PEM_CERT) ?? []) if (!known.has(body(pem))) extra.push(pem);
    break;
  }
  if (process.env.NODE_EXTRA_CA_CERTS) {
    try { extra.push(...(fs.readFileSync(process.env.NODE_EXTRA_CA_CERTS, 'utf8').match(PEM_CERT) ?? [])); } catch { /* Node warns about it at start */ }
  }
  return (m.systemCAs = extra);
}

/** One keep-alive agent per TLS setting: the system's trust plus the host's CAs and client certificate. */
function httpsAgent(m: TLSModules, t: HostTLS | undefined): https.Agent {
  const cached = t ? m.agents.get(t) : m.defaultAgent;
  if (cached) return cached;
  const ca = t?.insecure ? [] : [...systemExtraCAs(m), ...(t?.ca ?? [])];
  let secureContext: tls.SecureContext | undefined;
  if (t?.insecure) {
    // Nothing is verified: an empty CA list spares loading Node's root store (~10 ms) for a loopback
    // registry that may not even speak TLS.
    secureContext = m.tls.createSecureContext({ ca: [], ...(t.cert ? { cert: t.cert, key: t.key } : {}) });
  } else if (ca.length || t?.cert) {
    secureContext = m.tls.createSecureContext(t?.cert ? { cert: t.cert, key: t.key } : {});
    // Added to the default store (Node's CAs and NODE_EXTRA_CA_CERTS), not replacing it as `ca` would.
    const native = (secureContext as unknown as { context?: { addCACert?: (pem: string) => void } }).context;
    if (typeof native?.addCACert === 'function') for (const pem of ca) native.addCACert(pem);
    else if (ca.length) secureContext = m.tls.createSecureContext({ ca: [...m.tls.rootCertificates, ...ca], ...(t?.cert ? { cert: t.cert, key: t.key } : {}) });
  }
  const agent = new m.https.Agent({ keepAlive: true, rejectUnauthorized: !t?.insecure, ...(secureContext ? { secureContext } : {}) });
  if (t) m.agents.set(t, agent);
  else m.defaultAgent = agent;
  return agent;
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
    const msg = await send(target, method, headers, sent, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, opts.tls?.(target.host));
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

async function send(
  url: URL, method: string, headers: Record<string, string>, body: RequestBody | undefined, timeoutMs: number, tlsSettings: HostTLS | undefined,
): Promise<http.IncomingMessage> {
  let request: typeof http.request;
  let agent: http.Agent;
  if (url.protocol === 'https:') {
    const m = await loadTLS();
    request = m.https.request;
    agent = httpsAgent(m, tlsSettings);
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
    if (url.protocol === 'https:') {
      req.once('socket', (socket) => {
        if (!socket.connecting) return; // a kept-alive connection finished its handshake long ago
        const timer = setTimeout(() => req.destroy(Object.assign(new Error(`TLS handshake with ${url.host} timed out`), { code: 'ETIMEDOUT' })), TLS_HANDSHAKE_TIMEOUT_MS);
        const done = () => clearTimeout(timer);
        socket.once('secureConnect', done).once('close', done);
      });
    }
    if (body === undefined) req.end();
    else if (body instanceof Uint8Array) req.end(body);
    else {
      const src = Readable.from(body);
      src.on('error', (e) => req.destroy(e));
      src.pipe(req);
    }
  });
}
