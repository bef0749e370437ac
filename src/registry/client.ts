// Pulls from registries over the OCI distribution API: resolve a reference to the manifest and config for
// a platform, and stream blobs into the content store, verifying every digest. Requests go through
// `request()`, which handles scheme, auth and network errors, so push can be added beside pull.
import { sha256 } from '../../solver/llb/digest.js';
import type { Digest, Platform } from '../../solver/llb/ops.js';
import { DigestMismatchError, type ContentStore } from '../content/store.js';
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
import { Authorizer, TokenFetchError } from './auth.js';
import {
  ImageNotFoundError,
  NoMatchingPlatformError,
  RegistryResponseError,
  RegistryUnreachableError,
  UnauthorizedError,
} from './errors.js';
import type { Reference } from './reference.js';

export interface RegistryClientOptions {
  /** Hosts (`host:port` as in references) reached over plain HTTP. */
  insecureRegistries?: string[];
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

/** Docker's convention: loopback registries are plain HTTP without being listed as insecure. */
function isLoopback(host: string): boolean {
  const hostname = host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.replace(/:\d+$/, '');
  return hostname === 'localhost' || hostname === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

export class RegistryClient {
  private readonly insecure: Set<string>;
  private readonly auth = new Authorizer();
  /** Concurrent pulls of images sharing a layer download it once. */
  private readonly inflight = new WeakMap<ContentStore, Map<string, Promise<void>>>();

  constructor(opts: RegistryClientOptions = {}) {
    this.insecure = new Set(opts.insecureRegistries ?? []);
  }

  async resolve(ref: Reference, platform: Platform): Promise<ResolvedImage> {
    const top = await this.fetchManifest(ref, ref.digest ?? ref.tag ?? 'latest', ref.digest);
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
    const configBytes = await this.fetchDocument(ref, `blobs/${manifest.config.digest}`, '*/*', manifest.config.digest, manifest.config.size);
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

  private async downloadBlob(ref: Reference, desc: Descriptor, store: ContentStore): Promise<void> {
    if (await store.has(desc.digest)) return;
    const res = await this.request(ref, 'GET', `blobs/${desc.digest}`, {});
    if (!res.body) throw new RegistryResponseError(ref.toString(), `empty response for blob ${desc.digest}`);
    try {
      await store.write(res.body as unknown as AsyncIterable<Uint8Array>, { digest: desc.digest, size: desc.size });
    } catch (err) {
      // Name the image: the store only knows the blob.
      if (err instanceof DigestMismatchError) throw new DigestMismatchError(`${ref.name}@${desc.digest}: ${err.message}`);
      throw err;
    }
  }

  /** A manifest by tag or digest; verified when `expected` is given, typed by its mediaType (or its shape). */
  private async fetchManifest(ref: Reference, reference: string, expected?: Digest, expectedSize?: number) {
    const bytes = await this.fetchDocument(ref, `manifests/${reference}`, MANIFEST_ACCEPT, expected, expectedSize);
    const json = parseJSON(ref, bytes, `manifest ${reference}`) as (Manifest | Index) & { mediaType?: string };
    const mediaType = json.mediaType ?? ('manifests' in json ? MediaType.ociIndex : MediaType.ociManifest);
    return { digest: sha256(bytes), bytes, json, mediaType };
  }

  private async fetchDocument(ref: Reference, path: string, accept: string, expected?: Digest, expectedSize?: number): Promise<Buffer> {
    const res = await this.request(ref, 'GET', path, { accept });
    const length = Number(res.headers.get('content-length') ?? 0);
    if (length > MAX_DOCUMENT_BYTES) {
      await res.body?.cancel();
      throw new RegistryResponseError(ref.toString(), `${path} is too large (${length} bytes)`);
    }
    const bytes = Buffer.from(await res.arrayBuffer());
    if (expected) {
      const actual = sha256(bytes);
      if (actual !== expected) throw new DigestMismatchError(`${ref.name} ${path}: unexpected digest ${actual}, expected ${expected}`);
      if (expectedSize !== undefined && bytes.length !== expectedSize) {
        throw new DigestMismatchError(`${ref.name} ${path}: unexpected size ${bytes.length}, expected ${expectedSize}`);
      }
    }
    return bytes;
  }

  private baseURL(ref: Reference): string {
    const host = ref.registryHost;
    const scheme = isLoopback(host) || this.insecure.has(host) || this.insecure.has(ref.domain) ? 'http' : 'https';
    return `${scheme}://${host}/v2/${ref.path}/`;
  }

  /** One API request, authorized (answering a 401 challenge once), with errors mapped to user errors. */
  private async request(ref: Reference, method: string, path: string, headers: Record<string, string>): Promise<Response> {
    const host = ref.registryHost;
    const scope = `repository:${ref.path}:pull`;
    const url = this.baseURL(ref) + path;
    const send = async (): Promise<Response> => {
      const authorization = this.auth.header(host, scope);
      try {
        return await fetch(url, { method, headers: authorization ? { ...headers, authorization } : headers });
      } catch (err) {
        throw new RegistryUnreachableError(ref.toString(), host, err);
      }
    };
    let res = await send();
    if (res.status === 401) {
      const challenge = res.headers.get('www-authenticate');
      await res.body?.cancel();
      let retry: boolean;
      try {
        retry = await this.auth.authorize(host, scope, challenge);
      } catch (err) {
        if (err instanceof TokenFetchError) throw new UnauthorizedError(ref.toString(), err.message);
        throw new RegistryUnreachableError(ref.toString(), host, err);
      }
      if (!retry) throw new UnauthorizedError(ref.toString(), 'authentication required');
      res = await send();
    }
    if (res.ok) return res;
    const detail = await errorDetail(res);
    if (res.status === 404) throw new ImageNotFoundError(path.startsWith('blobs/') ? `${ref.name}@${path.slice(6)}` : ref.toString());
    if (res.status === 401 || res.status === 403) throw new UnauthorizedError(ref.toString(), detail);
    throw new RegistryResponseError(ref.toString(), `${method} ${path}: ${detail}`);
  }
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
async function errorDetail(res: Response): Promise<string> {
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
