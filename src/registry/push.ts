// Pushes an image (a manifest or an index, and everything it references) from the content store to a
// registry under one or more tags, per the OCI distribution spec: children before parents, each blob only
// when the registry lacks it (HEAD), mounted from another repository of the same registry when one is
// known to hold it, otherwise uploaded in one PUT or, when large, in PATCH chunks. Blobs go in parallel.
import PQueue from 'p-queue';
import type { Digest } from '../../solver/llb/ops.js';
import type { ContentStore } from '../content/store.js';
import { isIndexType, isManifestType, type Descriptor, type Index, type Manifest } from '../image/types.js';
import type { RegistryClient } from './client.js';
import type { HttpResponse } from './http.js';
import { RegistryResponseError } from './errors.js';
import type { Reference } from './reference.js';

export interface PushOptions {
  /** Blobs uploaded at once (default 4, as containerd's push). */
  concurrency?: number;
  /** Blobs larger than this go in PATCH chunks of this size (default 32 MiB). */
  chunkSize?: number;
  /** Repositories (`host/path`) that may hold the blobs already: tried as cross-repository mounts. */
  mountFrom?: Reference[];
  onBlob?: (desc: Descriptor, how: 'exists' | 'mounted' | 'uploaded') => void;
  /** Called before a blob the registry lacks is uploaded: brings it into the store if it is not there. */
  provide?: (desc: Descriptor) => Promise<void>;
}

const DEFAULT_CHUNK = 32 << 20;

/** Pushes `root` and its references; then tags it with each reference's tag (or pins it by digest). */
export async function pushImage(
  client: RegistryClient,
  store: ContentStore,
  root: Descriptor,
  refs: Reference[],
  opts: PushOptions = {},
): Promise<void> {
  // Repositories already done on the same registry become mount sources for the next ones.
  const done: Reference[] = [];
  const repos = new Map<string, Reference[]>();
  for (const r of refs) {
    const list = repos.get(r.name) ?? [];
    list.push(r);
    repos.set(r.name, list);
  }
  for (const group of repos.values()) {
    const repo = group[0];
    const mountFrom = [...(opts.mountFrom ?? []), ...done].filter((m) => m.registryHost === repo.registryHost && m.path !== repo.path);
    await pushTree(client, store, root, repo, { ...opts, mountFrom });
    for (const r of group) {
      const bytes = await store.readBuffer(root.digest);
      const tag = r.tag ?? r.digest ?? root.digest;
      const res = await client.send(r, 'PUT', `${client.repositoryURL(r)}manifests/${tag}`, {
        access: 'push', headers: { 'content-type': root.mediaType }, body: bytes, what: `manifests/${tag}`,
      });
      await res.discard();
      // The registry names what it stored; anything else means it rewrote our manifest.
      const stored = res.headers.get('docker-content-digest');
      if (stored && stored !== root.digest) {
        throw new RegistryResponseError(r.toString(), `registry stored manifest ${stored}, expected ${root.digest}`);
      }
    }
    done.push(repo);
  }
}

/** Blobs first (in parallel), then manifests bottom-up by digest, so every reference exists when pushed. */
async function pushTree(client: RegistryClient, store: ContentStore, root: Descriptor, repo: Reference, opts: PushOptions): Promise<void> {
  const blobs = new Map<string, Descriptor>();
  const manifests: Descriptor[] = [];
  const visit = async (d: Descriptor): Promise<void> => {
    if (isManifestType(d.mediaType)) {
      const m = JSON.parse((await store.readBuffer(d.digest)).toString('utf8')) as Manifest;
      for (const b of [m.config, ...m.layers]) blobs.set(b.digest, b);
      manifests.push(d);
    } else if (isIndexType(d.mediaType)) {
      const idx = JSON.parse((await store.readBuffer(d.digest)).toString('utf8')) as Index;
      for (const child of idx.manifests) await visit(child);
      manifests.push(d);
    } else {
      blobs.set(d.digest, d);
    }
  };
  await visit(root);
  const queue = new PQueue({ concurrency: opts.concurrency ?? 4 });
  await Promise.all([...blobs.values()].map((b) => queue.add(() => pushBlob(client, store, repo, b, opts))));
  // The root is tagged by the caller; the children are put by digest.
  for (const m of manifests) {
    if (m.digest === root.digest) continue;
    const res = await client.send(repo, 'PUT', `${client.repositoryURL(repo)}manifests/${m.digest}`, {
      access: 'push', headers: { 'content-type': m.mediaType }, body: await store.readBuffer(m.digest), what: `manifests/${m.digest}`,
    });
    await res.discard();
  }
}

async function pushBlob(client: RegistryClient, store: ContentStore, repo: Reference, desc: Descriptor, opts: PushOptions): Promise<void> {
  const base = client.repositoryURL(repo);
  const head = await client.send(repo, 'HEAD', `${base}blobs/${desc.digest}`, { access: 'push', okStatus: [404], what: `blobs/${desc.digest}` });
  await head.discard();
  if (head.status === 200) {
    opts.onBlob?.(desc, 'exists');
    return;
  }
  let location: string | undefined;
  for (const from of opts.mountFrom ?? []) {
    const res = await client.send(repo, 'POST', `${base}blobs/uploads/?mount=${desc.digest}&from=${encodeURIComponent(from.path)}`, {
      access: 'push', extraScopes: [`repository:${from.path}:pull`], what: 'blob mount',
    });
    await res.discard();
    if (res.status === 201) {
      opts.onBlob?.(desc, 'mounted');
      return;
    }
    // 202: the registry opened an upload instead; use it.
    location = uploadLocation(repo, base, res);
    break;
  }
  await opts.provide?.(desc);
  // A dropped connection or a 5xx during the upload restarts it in a new session: a half-written upload
  // cannot be trusted, and the registry discards abandoned sessions itself.
  for (let attempt = 1; ; attempt++) {
    try {
      location ??= await startUpload(client, repo, base);
      await upload(client, store, repo, desc, location, opts.chunkSize ?? DEFAULT_CHUNK);
      opts.onBlob?.(desc, 'uploaded');
      return;
    } catch (err) {
      location = undefined;
      if (attempt >= 3 || !retriable(err)) throw err;
      await new Promise((r) => setTimeout(r, 200 * attempt));
    }
  }
}

function retriable(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return code === 'REGISTRY_UNREACHABLE' || code === 'REGISTRY_ERROR';
}

async function startUpload(client: RegistryClient, repo: Reference, base: string): Promise<string> {
  const res = await client.send(repo, 'POST', `${base}blobs/uploads/`, { access: 'push', what: 'blob upload' });
  await res.discard();
  return uploadLocation(repo, base, res);
}

function uploadLocation(repo: Reference, base: string, res: HttpResponse): string {
  const loc = res.headers.get('location');
  if (!loc) throw new RegistryResponseError(repo.toString(), 'upload response has no Location');
  return new URL(loc, base).toString();
}

function withDigest(location: string, digest: Digest): string {
  const u = new URL(location);
  u.searchParams.set('digest', digest);
  return u.toString();
}

async function upload(client: RegistryClient, store: ContentStore, repo: Reference, desc: Descriptor, location: string, chunkSize: number): Promise<void> {
  const what = `blobs/${desc.digest}`;
  if (desc.size <= chunkSize) {
    const res = await client.send(repo, 'PUT', withDigest(location, desc.digest), {
      access: 'push', what,
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(desc.size) },
      body: () => store.createReadStream(desc.digest),
    });
    await res.discard();
    return;
  }
  let url = location;
  for (let offset = 0; offset < desc.size; offset += chunkSize) {
    const end = Math.min(desc.size, offset + chunkSize) - 1;
    const res = await client.send(repo, 'PATCH', url, {
      access: 'push', what,
      headers: { 'content-type': 'application/octet-stream', 'content-range': `${offset}-${end}`, 'content-length': String(end - offset + 1) },
      body: () => store.createReadStream(desc.digest, { start: offset, end }),
    });
    await res.discard();
    url = uploadLocation(repo, url, res);
  }
  const res = await client.send(repo, 'PUT', withDigest(url, desc.digest), { access: 'push', what, headers: { 'content-length': '0' } });
  await res.discard();
}
