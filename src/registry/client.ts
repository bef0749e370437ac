// Pulls from registries over the OCI distribution API: resolve a reference to the manifest and config for
// a platform, and stream blobs into the content store, verifying every digest. Requests go through
// `request()`, which handles scheme, auth and network errors, so push can be added beside pull.
// Manifests and configs are kept in the content store by digest: resolving a tag that still names the same
// image is one HEAD request (as containerd's resolver), the rest is read locally.
import { sha256 } from '../../solver/llb/digest.js';
import type { Digest, Platform } from '../../solver/llb/ops.js';
import { DigestMismatchError, type BlobWriter, type ContentStore } from '../content/store.js';
import {
  MediaType,
  isIndexType,
  isManifestType,
  normalizePlatform,
  platformString,
  platformsEqual,
  type Descriptor,
  type ImageConfigFile,
  type Index,
  type Manifest,
} from '../image/types.js';
import { Authorizer, TokenFetchError, type Credentials } from './auth.js';
import { httpRequest, type HttpResponse, type RequestBody, type RequestOptions } from './http.js';
import {
  ImageNotFoundError,
  NoMatchingPlatformError,
  RegistryCertificateError,
  RegistryResponseError,
  LoginError,
  UnauthorizedError,
  DownloadCutError,
  certificateError,
  networkError,
} from './errors.js';
import type { RegistryHostConfig } from './config.js';
import { RegistryHosts, type Endpoint, type HostTLS } from './hosts.js';
import type { Reference } from './reference.js';

export interface RegistryClientOptions {
  /** Insecure registries (`host:port` as in references): HTTPS without verifying the certificate, falling
   * back to plain HTTP, as Docker's `insecure-registries`. Loopback hosts are insecure without being listed. */
  insecureRegistries?: string[];
  /** Per-registry settings (mirrors, CAs, client certificates, http, insecure); default: the builder config
   * file's (see config.ts). */
  registries?: Record<string, RegistryHostConfig>;
  /** Retries after a network failure, 5xx or 429 (default 4). */
  retries?: number;
  /** Where credentials come from (default: the Docker config file and its helpers). */
  credentials?: (host: string) => Credentials | undefined;
  /** A file remembering which insecure hosts speak plain HTTP, shared by the processes using it (the
   * worker keeps it in the state directory). */
  schemesFile?: string;
  /** Where manifests and configs are kept by digest, so a tag whose digest did not change is not fetched
   * again (without it, every resolve fetches them). */
  cache?: ContentStore;
}

export interface ResolvedImage {
  /** The reference pinned with the digest its tag resolved to (the index for multi-platform images). */
  ref: Reference;
  /** Digest of the platform's image manifest. */
  manifestDigest: Digest;
  manifest: Manifest;
  manifestBytes: Buffer;
  config: ImageConfigFile;
  configBytes: Buffer;
  configDescriptor: Descriptor;
  layers: Descriptor[];
}

const MANIFEST_ACCEPT = [MediaType.ociIndex, MediaType.dockerManifestList, MediaType.ociManifest, MediaType.dockerManifest].join(', ');
/** Manifests and configs are read into memory; containerd caps manifests at 4 MiB too. */
const MAX_DOCUMENT_BYTES = 4 << 20;
/** An index may point at another index; a bound keeps a malicious registry from looping us. */
const MAX_INDEX_DEPTH = 4;
const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;

export class RegistryClient {
  private readonly hosts: RegistryHosts;
  private readonly tls: (host: string) => HostTLS;
  private readonly auth: Authorizer;
  private readonly retries: number;
  private readonly cache?: ContentStore;
  /** Concurrent pulls of images sharing a layer download it once. */
  private readonly inflight = new WeakMap<ContentStore, Map<string, Promise<void>>>();

  constructor(opts: RegistryClientOptions = {}) {
    this.hosts = new RegistryHosts({ insecureRegistries: opts.insecureRegistries, registries: opts.registries, schemesFile: opts.schemesFile });
    this.tls = (host) => this.hosts.tls(host);
    this.auth = new Authorizer(opts.credentials, this.tls);
    this.retries = opts.retries ?? 4;
    this.cache = opts.cache;
  }

  async resolve(ref: Reference, platform: Platform): Promise<ResolvedImage> {
    const top = ref.digest ? await this.fetchManifest(ref, ref.digest, ref.digest) : await this.manifestByTag(ref, ref.tag ?? 'latest');
    const pinned = ref.withDigest(top.digest);
    let doc = top;
    for (let depth = 0; isIndexType(doc.mediaType); depth++) {
      if (depth >= MAX_INDEX_DEPTH) throw new RegistryResponseError(ref.toString(), 'image indexes nested too deeply');
      const chosen = choosePlatform((doc.json as Index).manifests ?? [], platform);
      if (!chosen) throw new NoMatchingPlatformError(ref.toString(), platformString(platform));
      doc = await this.fetchManifest(ref, chosen.digest, chosen.digest, chosen.size);
    }
    if (!isManifestType(doc.mediaType)) {
      throw new RegistryResponseError(ref.toString(), `unsupported manifest media type ${JSON.stringify(doc.mediaType)}`);
    }
    const manifest = doc.json as Manifest;
    if (!manifest.config?.digest || !Array.isArray(manifest.layers)) {
      throw new RegistryResponseError(ref.toString(), `malformed manifest ${doc.digest}`);
    }
    const configBytes = await this.cached(manifest.config.digest, manifest.config.size,
      () => this.fetchDocument(ref, `blobs/${manifest.config.digest}`, '*/*', manifest.config.digest, manifest.config.size));
    const config = parseJSON(ref, configBytes, `config ${manifest.config.digest}`) as ImageConfigFile;
    // A single-platform image must itself be for the platform (containerd checks the config the same way).
    if (top === doc && config.os && config.architecture && !platformsEqual(config, platform)) {
      throw new NoMatchingPlatformError(ref.toString(), platformString(platform));
    }
    return {
      ref: pinned,
      manifestDigest: doc.digest,
      manifest,
      manifestBytes: doc.bytes,
      config,
      configBytes,
      configDescriptor: manifest.config,
      layers: manifest.layers,
    };
  }

  /** The manifest or index a reference names, as the registry serves it (verified when pinned). */
  async getManifest(ref: Reference, reference?: string): Promise<{ digest: Digest; bytes: Buffer; mediaType: string; json: Manifest | Index }> {
    const r = reference ?? ref.digest ?? ref.tag ?? 'latest';
    const m = await this.fetchManifest(ref, r, r.startsWith('sha256:') ? (r as Digest) : undefined);
    return { digest: m.digest as Digest, bytes: m.bytes, mediaType: m.mediaType, json: m.json };
  }

  /** A small blob (a config) into memory, verified. */
  getBlob(ref: Reference, desc: Descriptor): Promise<Buffer> {
    return this.fetchDocument(ref, `blobs/${desc.digest}`, '*/*', desc.digest, desc.size);
  }

  /** Streams a blob into the store, verified against the descriptor; nothing to do if it is there. */
  fetchBlob(ref: Reference, desc: Descriptor, store: ContentStore): Promise<void> {
    let pending = this.inflight.get(store);
    if (!pending) this.inflight.set(store, (pending = new Map()));
    let p = pending.get(desc.digest);
    if (!p) {
      p = this.downloadBlob(ref, desc, store).finally(() => pending.delete(desc.digest));
      pending.set(desc.digest, p);
    }
    return p;
  }

  /**
   * Streams a blob into the store. A connection cut part way (or a body that ends short) is asked for again
   * from where it stopped (`Range: bytes=N-`), keeping the bytes so far: the writer hashes all it is given,
   * so the digest is still checked over the whole blob. A registry that answers with the whole blob (200),
   * or with a range that does not start there, starts it over, as does a pieced blob that fails its digest.
   * Bounded as send()'s retries, then one line.
   */
  private async downloadBlob(ref: Reference, desc: Descriptor, store: ContentStore): Promise<void> {
    // Held already: marked as used now (see ContentStore.touch), the caller records it next.
    if (await store.touch(desc.digest)) return;
    const path = `blobs/${desc.digest}`;
    const total = Number.isSafeInteger(desc.size) && desc.size >= 0 ? desc.size : undefined;
    const attempts = this.retries + 1;
    let w = await store.openWriter();
    let received = 0;
    /** Whether the bytes held came in more than one piece. */
    let resumed = false;
    const restart = async () => {
      await w.abort();
      w = await store.openWriter();
      received = 0;
      resumed = false;
    };
    try {
      for (let attempt = 1; ; attempt++) {
        const resumeAt = received;
        const res = await this.request(ref, 'GET', path, resumeAt > 0 ? { range: `bytes=${resumeAt}-` } : {});
        const host = new URL(res.url).host;
        let cut: unknown;
        try {
          if (resumeAt > 0 && !(res.status === 206 && rangeStartsAt(res.headers.get('content-range'), resumeAt, total))) {
            if (res.status === 200) await restart();
            else {
              // A range we cannot place: the next attempt asks for the whole blob.
              await res.discard();
              await restart();
              cut = new Error(`unusable range response ${res.status} ${res.headers.get('content-range') ?? ''}`);
            }
          }
          if (!cut) {
            resumed ||= received > 0;
            cut = await this.receive(desc, res, w, received, (n) => { received = n; });
          }
        } finally {
          await res.discard();
        }
        const short = cut === undefined && total !== undefined && received < total;
        if (cut === undefined && !short) {
          try {
            await w.commit({ digest: desc.digest, size: desc.size });
            return;
          } catch (err) {
            // Pieces that do not add up to the blob (a registry whose ranges are wrong): the whole blob once
            // more, in one piece, is the registry's last chance.
            if (!(err instanceof DigestMismatchError) || !resumed || attempt >= attempts) throw err;
            w = await store.openWriter();
            received = 0;
            resumed = false;
            continue;
          }
        }
        if (attempt >= attempts) throw new DownloadCutError(`blob ${desc.digest}`, host, received, total, attempts, short, cut);
        await backoff(attempt);
      }
    } catch (err) {
      await w.abort();
      // Name the image: the store only knows the blob.
      if (err instanceof DigestMismatchError) throw new DigestMismatchError(`${ref.name}@${desc.digest}: ${err.message}`);
      throw err;
    }
  }

  /**
   * Appends a response body to the writer from `offset`, reporting progress as it goes. Resolves with the
   * network error that cut the body (undefined when it ended); a failing write rejects (not retried).
   */
  private async receive(desc: Descriptor, res: HttpResponse, w: BlobWriter, offset: number, progress: (n: number) => void): Promise<unknown> {
    const it = res.body[Symbol.asyncIterator]();
    // A few writes in flight: the writer hashes and writes them in order, in parallel with the download.
    const pending: Promise<void>[] = [];
    let n = offset;
    let cut: unknown;
    try {
      for (;;) {
        let next: IteratorResult<Uint8Array>;
        try {
          next = await it.next();
        } catch (err) {
          cut = err;
          break;
        }
        if (next.done) break;
        const chunk = Buffer.from(next.value.buffer, next.value.byteOffset, next.value.byteLength);
        n += chunk.length;
        if (Number.isSafeInteger(desc.size) && n > desc.size) {
          throw new DigestMismatchError(`unexpected size: the registry sent more than ${desc.size} bytes`);
        }
        pending.push(w.append(chunk));
        progress(n);
        if (pending.length >= 8) await pending.shift();
      }
    } finally {
      const settled = await Promise.allSettled(pending);
      const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
    }
    return cut;
  }

  /**
   * The manifest a tag names now. With a cache, a HEAD asks for its digest (one round trip, no body) and
   * a manifest already held is read locally; a registry that sends no digest gets the GET.
   */
  private async manifestByTag(ref: Reference, tag: string) {
    if (this.cache) {
      const res = await this.request(ref, 'HEAD', `manifests/${tag}`, { accept: MANIFEST_ACCEPT });
      await res.discard();
      const digest = res.headers.get('docker-content-digest');
      if (digest && DIGEST_RE.test(digest)) return this.fetchManifest(ref, digest, digest as Digest);
    }
    return this.fetchManifest(ref, tag);
  }

  /** A manifest by tag or digest; verified when `expected` is given, typed by its mediaType (or its shape). */
  private async fetchManifest(ref: Reference, reference: string, expected?: Digest, expectedSize?: number) {
    const get = () => this.fetchDocument(ref, `manifests/${reference}`, MANIFEST_ACCEPT, expected, expectedSize);
    const bytes = expected ? await this.cached(expected, expectedSize, get) : await get();
    const json = parseJSON(ref, bytes, `manifest ${reference}`) as (Manifest | Index) & { mediaType?: string };
    const mediaType = json.mediaType ?? ('manifests' in json ? MediaType.ociIndex : MediaType.ociManifest);
    if (!expected) await this.remember(bytes);
    return { digest: sha256(bytes), bytes, json, mediaType };
  }

  /** A document by digest: from the cache when held there (the store checked it when it was written). */
  private async cached(digest: Digest, size: number | undefined, get: () => Promise<Buffer>): Promise<Buffer> {
    const local = this.cache && (await this.cache.stat(digest));
    if (local && (size === undefined || local.size === size) && local.size <= MAX_DOCUMENT_BYTES) {
      const bytes = await this.cache!.readBuffer(digest).catch(() => null);
      if (bytes) return bytes;
    }
    const bytes = await get();
    await this.remember(bytes);
    return bytes;
  }

  /** Keeps a fetched document by digest; a cache that cannot be written only costs a fetch next time. */
  private async remember(bytes: Buffer): Promise<void> {
    await this.cache?.write(bytes).catch(() => undefined);
  }

  private async fetchDocument(ref: Reference, path: string, accept: string, expected?: Digest, expectedSize?: number): Promise<Buffer> {
    let bytes: Buffer;
    // A document is small: a body cut part way is asked for again whole, up to the retries' bound.
    for (let attempt = 1; ; attempt++) {
      const res = await this.request(ref, 'GET', path, { accept });
      const length = Number(res.headers.get('content-length') ?? 0);
      if (length > MAX_DOCUMENT_BYTES) {
        await res.discard();
        throw new RegistryResponseError(ref.toString(), `${path} is too large (${length} bytes)`);
      }
      const chunks: Buffer[] = [];
      let received = 0;
      try {
        for await (const c of res.body) {
          received += c.length;
          if (received > MAX_DOCUMENT_BYTES) {
            await res.discard();
            throw new RegistryResponseError(ref.toString(), `${path} is too large (more than ${MAX_DOCUMENT_BYTES} bytes)`);
          }
          chunks.push(Buffer.from(c.buffer, c.byteOffset, c.byteLength));
        }
      } catch (err) {
        if (err instanceof RegistryResponseError) throw err;
        if (attempt > this.retries) {
          throw new DownloadCutError(path, new URL(res.url).host, received, Number.isFinite(length) && length > 0 ? length : expectedSize, attempt, false, err);
        }
        await backoff(attempt);
        continue;
      }
      bytes = Buffer.concat(chunks);
      break;
    }
    if (expected) {
      const actual = sha256(bytes);
      if (actual !== expected) throw new DigestMismatchError(`${ref.name} ${path}: unexpected digest ${actual}, expected ${expected}`);
      if (expectedSize !== undefined && bytes.length !== expectedSize) {
        throw new DigestMismatchError(`${ref.name} ${path}: unexpected size ${bytes.length}, expected ${expectedSize}`);
      }
    }
    return bytes;
  }

  private baseURL(ref: Reference, ep: Endpoint = this.hosts.endpoint(ref)): string {
    return `${this.hosts.scheme(ep.host)}://${ep.host}${ep.root}/${ref.path}/`;
  }

  /**
   * One pull request, authorized (answering a 401 challenge once), with errors mapped to user errors.
   * The registry's mirrors are asked first; whatever a mirror fails with (unreachable, missing, refused),
   * the next one is asked and finally the registry itself, whose answer counts (as containerd's resolver).
   */
  private async request(ref: Reference, method: string, path: string, headers: Record<string, string>): Promise<HttpResponse> {
    const endpoints = this.hosts.pullEndpoints(ref);
    for (const ep of endpoints.slice(0, -1)) {
      try {
        return await this.send(ref, method, this.baseURL(ref, ep) + path, { headers, access: 'pull', what: path, retries: 0 });
      } catch (err) {
        if (err instanceof RegistryCertificateError || (err as { code?: string }).code === 'REGISTRY_UNREACHABLE') this.hosts.mirrorUnreachable(ep.host);
      }
    }
    return this.send(ref, method, this.baseURL(ref) + path, { headers, access: 'pull', what: path });
  }

  /**
   * A request to a host whose scheme may not be known yet: an insecure host is tried over HTTPS (without
   * verification) and, when that fails to connect or handshake, over plain HTTP; the answer is remembered.
   */
  private async exchange(url: string, opts: RequestOptions): Promise<HttpResponse> {
    const u = new URL(url);
    const host = u.host;
    const replayable = opts.body === undefined || opts.body instanceof Uint8Array || typeof opts.body === 'function';
    // The host decides, whatever URL was built (or sent as an upload location) before it was known.
    u.protocol = `${this.hosts.scheme(host)}:`;
    if (replayable && this.hosts.rememberedPlain(host)) {
      // Plain HTTP because it answered there before. If it no longer does, or answers a read with 400 (what
      // a TLS server says to plain HTTP), it may have moved to HTTPS: ask again.
      try {
        const res = await httpRequest(u, opts);
        if (res.status !== 400 || (opts.method !== 'GET' && opts.method !== 'HEAD')) {
          this.hosts.confirm(host);
          return res;
        }
        await res.discard();
      } catch {
        // tried again below
      }
      this.hosts.forget(host);
      u.protocol = 'https:';
    }
    if (u.protocol !== 'https:' || !replayable || !this.hosts.mayFallBack(host)) return httpRequest(u, { ...opts, tls: this.tls });
    let res: HttpResponse;
    try {
      res = await httpRequest(u, { ...opts, tls: this.tls });
    } catch (err) {
      // A server that refused our certificate (or sent its own we cannot use) speaks TLS: plain HTTP would
      // only earn a 400 that hides the real problem.
      if (certificateError(host, err)) throw err;
      u.protocol = 'http:';
      res = await httpRequest(u, opts);
      this.hosts.learned(host, 'http');
      return res;
    }
    this.hosts.learned(host, 'https');
    return res;
  }

  /**
   * A request to a repository URL (relative paths join the repository's base URL; upload locations may be
   * absolute). Network failures, 5xx and 429 are retried with backoff when the body can be made again;
   * a 401 is answered once with credentials for the scope.
   */
  async send(ref: Reference, method: string, url: string, opts: SendOptions): Promise<HttpResponse> {
    // The registry, or the mirror the URL names.
    const host = new URL(url).host;
    const scope = [`repository:${ref.path}:${opts.access === 'push' ? 'pull,push' : 'pull'}`, ...(opts.extraScopes ?? [])].join(' ');
    const attempts = opts.body && typeof opts.body !== 'function' && !(opts.body instanceof Uint8Array) ? 1 : (opts.retries ?? this.retries) + 1;
    let authorized = false;
    for (let attempt = 1; ; attempt++) {
      const authorization = this.auth.header(host, scope);
      const headers: Record<string, string> = { ...(opts.headers ?? {}), ...(authorization ? { authorization } : {}) };
      let res: HttpResponse;
      try {
        res = await this.exchange(url, { method, headers, body: opts.body });
      } catch (err) {
        const error = networkError(ref.toString(), host, err);
        if (attempt < attempts && transient(err) && !(error instanceof RegistryCertificateError)) { await backoff(attempt); continue; }
        throw error;
      }
      if (res.status === 401 && !authorized) {
        const challenge = res.headers.get('www-authenticate');
        await res.discard();
        let retry: boolean;
        try {
          retry = await this.auth.authorize(host, scope, challenge);
        } catch (err) {
          if (err instanceof TokenFetchError) throw new UnauthorizedError(ref.toString(), host, opts.access, err.message);
          throw networkError(ref.toString(), realmHost(challenge) ?? host, err);
        }
        if (!retry) throw new UnauthorizedError(ref.toString(), host, opts.access, '401 Unauthorized: authentication required');
        authorized = true;
        attempt--; // answering the challenge is not a failed attempt
        continue;
      }
      if ((res.status >= 500 || res.status === 429) && attempt < attempts) {
        await res.discard();
        await backoff(attempt);
        continue;
      }
      if (res.ok || opts.okStatus?.includes(res.status)) return res;
      const detail = await errorDetail(res);
      const what = opts.what ?? url;
      if (res.status === 404 && !opts.access.startsWith('push')) {
        throw new ImageNotFoundError(what.startsWith('blobs/') ? `${ref.name}@${what.slice(6)}` : ref.toString());
      }
      if (res.status === 401 || res.status === 403) throw new UnauthorizedError(ref.toString(), host, opts.access, detail);
      throw new RegistryResponseError(ref.toString(), `${method} ${what}: ${detail}`);
    }
  }

  /** Checks that the registry accepts our credentials (`GET /v2/`, as `docker login` does). */
  async ping(host: string): Promise<void> {
    const get = async () => {
      const authorization = this.auth.header(host, '');
      try {
        return await this.exchange(`${this.hosts.scheme(host)}://${host}/v2/`, { method: 'GET', headers: authorization ? { authorization } : {} });
      } catch (err) {
        throw networkError(host, host, err);
      }
    };
    let res = await get();
    if (res.status === 401) {
      await res.discard();
      let ok: boolean;
      try {
        ok = await this.auth.authorize(host, '', res.headers.get('www-authenticate'));
      } catch (err) {
        const challenge = res.headers.get('www-authenticate');
        throw certificateError(realmHost(challenge) ?? host, err) ?? new LoginError(host, err instanceof Error ? err.message : String(err));
      }
      if (!ok) throw new LoginError(host, '401 Unauthorized');
      res = await get();
    }
    if (!res.ok) throw new LoginError(host, await errorDetail(res));
    await res.discard();
  }

  /** The repository's base URL, `http(s)://host/v2/path/`. */
  repositoryURL(ref: Reference): string {
    return this.baseURL(ref);
  }
}

export interface SendOptions {
  headers?: Record<string, string>;
  /** A buffer, or a function making the body anew for each attempt (streams cannot be replayed). */
  body?: RequestBody | (() => RequestBody);
  access: 'pull' | 'push';
  /** More token scopes (a cross-repository mount needs pull on the source). */
  extraScopes?: string[];
  /** Statuses that are answers, not errors (HEAD's 404). */
  okStatus?: number[];
  /** How the request is named in errors. */
  what?: string;
  /** Retries after a network failure, 5xx or 429 (default: the client's). */
  retries?: number;
}

/** The token realm's host in a Bearer challenge, which a failed token request is reported against. */
function realmHost(challenge: string | null): string | undefined {
  const m = challenge ? /realm="([^"]+)"/i.exec(challenge) : null;
  try { return m ? new URL(m[1]).host : undefined; } catch { return undefined; }
}

/** A network failure worth retrying: not an unknown host or a URL that cannot be requested. */
function transient(err: unknown): boolean {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    const code = (e as { code?: string }).code;
    if (code === 'ENOTFOUND' || e instanceof TypeError) return false;
  }
  return true;
}

/** The longest wait between attempts, however many retries are configured. */
const MAX_BACKOFF_MS = 10_000;

/** 200 ms, 400 ms, 800 ms... (capped): a registry restarting or a dropped connection gets a moment. */
function backoff(attempt: number): Promise<void> {
  return new Promise((r) => setTimeout(r, Math.min(100 * 2 ** attempt, MAX_BACKOFF_MS)));
}

/**
 * A 206's `Content-Range: bytes N-M/T` continues a download at `offset` (and, when the blob's size is
 * known, runs to its end): anything else cannot be appended to the bytes held.
 */
function rangeStartsAt(header: string | null, offset: number, total: number | undefined): boolean {
  const m = header ? /^bytes (\d+)-(\d+)\/(\d+|\*)$/i.exec(header.trim()) : null;
  if (!m || Number(m[1]) !== offset) return false;
  if (total === undefined) return true;
  return Number(m[2]) === total - 1 && (m[3] === '*' || Number(m[3]) === total);
}

/**
 * The entry for the platform, comparing normalized platforms (`arm64` equals `arm64/v8`); failing an exact
 * match, an older variant the platform also runs (arm/v7 takes arm/v6, then arm/v5), as containerd's matcher.
 */
export function choosePlatform(manifests: Descriptor[], platform: Platform): Descriptor | undefined {
  const want = normalizePlatform(platform);
  const candidates = [want];
  const armVersion = want.architecture === 'arm' ? /^v(\d+)$/.exec(want.variant ?? '')?.[1] : undefined;
  if (armVersion) for (let v = Number(armVersion) - 1; v >= 5; v--) candidates.push({ ...want, variant: `v${v}` });
  for (const c of candidates) {
    const found = manifests.find((d) => d.platform && (isManifestType(d.mediaType) || isIndexType(d.mediaType)) && platformsEqual(d.platform, c));
    if (found) return found;
  }
  return undefined;
}

function parseJSON(ref: Reference, bytes: Buffer, what: string): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new RegistryResponseError(ref.toString(), `${what} is not valid JSON`);
  }
}

/** `404 Not Found: manifest unknown`, from the registry's `{errors: [{code, message}]}` when it sends one. */
async function errorDetail(res: HttpResponse): Promise<string> {
  let text = '';
  try {
    text = await res.text();
    const body = JSON.parse(text) as { errors?: { code?: string; message?: string }[] };
    const messages = (body.errors ?? []).map((e) => e.message ?? e.code).filter(Boolean);
    if (messages.length) return `${res.status} ${res.statusText}: ${messages.join('; ')}`;
  } catch {
    // Not JSON: the status line says enough.
  }
  return `${res.status} ${res.statusText}`;
}
