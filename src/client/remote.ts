// Remote build contexts and named contexts, as buildx takes them: a git repository
// (`https://host/org/repo.git#REF:SUBDIR`, `git@host:org/repo.git`, `git://`, `ssh://`), an http(s) URL of a
// context tarball (plain, gzip, bzip2, xz, zstd) or of a bare Dockerfile, and `--build-context NAME=...`:
// a directory, `docker-image://REF`, `oci-layout://PATH[@DIGEST|:TAG]`, an http(s) URL or a git address.
// Each is made a directory on this machine (a checkout, an unpacked archive, a downloaded file) that the
// build reads as a local source, or an image the frontend resolves.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable, Transform } from 'node:stream';
import { UserError } from '../util/errors.js';
import { GitCache, isGitAddress, parseGitAddress, redactRemote, type GitAuth } from '../worker/git.js';
import { httpRequest } from '../registry/http.js';
import { RegistryHosts } from '../registry/hosts.js';
import type { RegistryHostConfig } from '../registry/config.js';
import { detectCompression, isTarHeader } from '../worker/unpack.js';
import { unpackContext } from './context.js';
import { readDockerignore } from './dockerignore.js';
import { familiarContextName, type NamedContext } from '../../frontend/dockerfile/dockerfile2llb.js';
import type { FullProgressWriter } from '../progress/printer.js';
import { createHash } from 'node:crypto';
import type { Worker } from '../worker/worker.js';
import type { Digest, Platform } from '../../solver/llb/ops.js';
import { parseReference } from '../registry/reference.js';
import { MediaType, isIndexType, normalizePlatform, platformString, platformsEqual, type Descriptor, type ImageConfigFile, type Index, type Manifest } from '../image/types.js';

export class RemoteContextError extends UserError {}

/** The most a context URL may download (env BUILDER_CONTEXT_MAX_BYTES overrides). */
const MAX_BYTES = Number(process.env.BUILDER_CONTEXT_MAX_BYTES) || 8 * 2 ** 30;

/** buildx's remote contexts: an http(s) URL or a Git repository address (`github.com/...` too). */
export function isRemoteContext(s: string): boolean {
  return /^https?:\/\//.test(s) || isGitAddress(s, { bareGithub: true });
}

/** What reaching remote sources needs: the state directory (git cache), TLS settings, credentials. */
export interface RemoteOptions {
  root: string;
  insecureRegistries?: string[];
  registries?: Record<string, RegistryHostConfig>;
  auth?: GitAuth;
  signal?: AbortSignal;
  progress: FullProgressWriter;
}

/** A fetched context: its directory, removed by `remove()`; `dockerfile` when the URL served a bare Dockerfile. */
export interface FetchedContext {
  dir: string;
  dockerfile?: string;
  remove(): Promise<void>;
}

/** A step in the progress output around `fn`, failed with its error's message. */
async function step<T>(progress: FullProgressWriter, id: string, name: string, fn: () => Promise<T>): Promise<T> {
  progress.start({ id, name });
  try {
    const out = await fn();
    progress.done(id);
    return out;
  } catch (e) {
    progress.error(id, (e as Error).message);
    throw e;
  }
}

/** Checks out a git context: the `.git` directory kept only with `keepGitDir` (BUILDKIT_CONTEXT_KEEP_GIT_DIR). */
export async function fetchGitContext(address: string, opts: RemoteOptions & { keepGitDir?: boolean; label?: string }): Promise<FetchedContext & { commit: string }> {
  const g = parseGitAddress(address);
  const cache = new GitCache(opts.root);
  const shown = `${redactRemote(g.remote)}${g.ref || g.subdir ? `#${g.ref ?? ''}${g.subdir ? `:${g.subdir}` : ''}` : ''}`;
  const got = await step(opts.progress, `internal:git:${createHash('sha256').update(`${opts.label ?? ''}\0${address}`).digest('hex').slice(0, 16)}`, `[${opts.label ?? 'internal'}] load git source ${shown}`,
    () => cache.fetchCheckout(g, { keepGitDir: opts.keepGitDir, auth: opts.auth, signal: opts.signal }));
  // Kept in the git cache for the next build of this commit (prune removes it).
  return { dir: got.dir, commit: got.commit, remove: async () => undefined };
}

/** Downloads `url` into a new file in `dir` (named `name`), with the registries' TLS settings; bounded. */
async function download(url: string, file: string, opts: RemoteOptions): Promise<void> {
  const hosts = new RegistryHosts({ insecureRegistries: opts.insecureRegistries, registries: opts.registries });
  let res;
  try {
    res = await httpRequest(url, { method: 'GET', tls: (host) => hosts.tls(host) });
  } catch (e) {
    throw new RemoteContextError('HTTP_FAILED', `failed to load ${redactRemote(url)}: ${(e as Error).message}`, { cause: e });
  }
  if (!res.ok) {
    await res.discard();
    throw new RemoteContextError('HTTP_FAILED', `failed to load ${redactRemote(url)}: invalid response status ${res.status}`);
  }
  let received = 0;
  const limit = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      received += chunk.length;
      if (received > MAX_BYTES) return cb(new RemoteContextError('HTTP_TOO_LARGE', `${redactRemote(url)} is larger than the limit for a context (${MAX_BYTES} bytes)`));
      cb(null, chunk);
    },
  });
  await pipeline(Readable.from(res.body), limit, fs.createWriteStream(file, { mode: 0o600 }), { signal: opts.signal });
}

/**
 * An http(s) context: a tar archive (plain or compressed, told by its first bytes) is unpacked as the
 * context; anything else is the Dockerfile, with an empty context (as BuildKit).
 */
export async function fetchUrlContext(url: string, opts: RemoteOptions): Promise<FetchedContext> {
  return step(opts.progress, `internal:url:${createHash('sha256').update(url).digest('hex').slice(0, 16)}`, `[internal] load remote build context ${redactRemote(url)}`, async () => {
    const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'builder-url-'));
    try {
      const file = path.join(tmp, 'download');
      await download(url, file, opts);
      const handle = await fsp.open(file, 'r');
      const head = Buffer.alloc(512);
      const { bytesRead } = await handle.read(head, 0, 512, 0).finally(() => handle.close());
      const start = head.subarray(0, bytesRead);
      if (detectCompression(start) !== 'none' || (bytesRead === 512 && isTarHeader(start))) {
        const unpacked = await unpackContext(fs.createReadStream(file)).catch((e: Error) => {
          throw new RemoteContextError('BAD_CONTEXT', `unable to prepare context: ${redactRemote(url)} is not a readable tar archive: ${e.message}`);
        });
        await fsp.rm(tmp, { recursive: true, force: true });
        return unpacked;
      }
      const dockerfile = await fsp.readFile(file, 'utf8');
      await fsp.rm(file);
      return { dir: tmp, dockerfile, remove: () => fsp.rm(tmp, { recursive: true, force: true }) };
    } catch (e) {
      await fsp.rm(tmp, { recursive: true, force: true });
      throw e;
    }
  });
}

/** The local source name a named context's directory is supplied under (never `context` or `dockerfile`). */
export function namedLocalName(name: string): string {
  return `named-context:${name}`;
}

/** Named contexts made ready for a build: what the frontend resolves names to, and the directories. */
export interface PreparedContexts {
  contexts: Record<string, NamedContext>;
  locals: Record<string, { dir: string; ephemeral?: boolean }>;
  /** OCI layouts to import into the worker before the frontend resolves the refs standing for them. */
  layouts: { ref: string; dir: string; selector?: { digest?: string; tag?: string } }[];
  remove(): Promise<void>;
}

/** Parses `NAME=VALUE` specs, as `--build-context`. */
export function parseBuildContexts(specs: string[] | Record<string, string>): Record<string, string> {
  if (!Array.isArray(specs)) return { ...specs };
  const out: Record<string, string> = {};
  for (const spec of specs) {
    const eq = spec.indexOf('=');
    if (eq <= 0 || eq === spec.length - 1) throw new RemoteContextError('INVALID_FLAG', `invalid --build-context "${spec}": expected NAME=VALUE`);
    out[spec.slice(0, eq)] = spec.slice(eq + 1);
  }
  return out;
}

/** Turns each `NAME=VALUE` into what the frontend replaces NAME by; fetches git and URL ones. */
export async function prepareNamedContexts(specs: Record<string, string>, opts: RemoteOptions & { cwd?: string }): Promise<PreparedContexts> {
  const contexts: Record<string, NamedContext> = {};
  const locals: Record<string, { dir: string; ephemeral?: boolean }> = {};
  const layouts: PreparedContexts['layouts'] = [];
  const removers: (() => Promise<void>)[] = [];
  const remove = async () => { for (const r of removers.splice(0)) await r().catch(() => undefined); };
  try {
    for (const [rawName, value] of Object.entries(specs)) {
      const [base, platform] = rawName.split('::');
      if (!/^[a-z0-9][a-z0-9._/:@-]*$/i.test(base) || /^(scratch|context)$/i.test(base)) {
        throw new RemoteContextError('INVALID_FLAG', `invalid --build-context name "${rawName}"${/^(scratch|context)$/i.test(base) ? ': the name is reserved' : ''}`);
      }
      const name = familiarContextName(base) + (platform ? `::${platform}` : '');
      const local = namedLocalName(name);
      if (value.startsWith('docker-image://')) {
        const ref = value.slice('docker-image://'.length);
        if (!ref) throw new RemoteContextError('INVALID_FLAG', `invalid --build-context ${rawName}: docker-image:// needs an image reference`);
        contexts[name] = { type: 'image', ref };
      } else if (value.startsWith('oci-layout://')) {
        const rest = value.slice('oci-layout://'.length);
        const at = rest.lastIndexOf('@');
        const colon = rest.lastIndexOf(':');
        let dir = rest;
        let selector: { digest?: string; tag?: string } | undefined;
        if (at >= 0 && /^sha256:[0-9a-f]{64}$/.test(rest.slice(at + 1))) {
          dir = rest.slice(0, at);
          selector = { digest: rest.slice(at + 1) };
        } else if (colon > rest.lastIndexOf('/') && colon >= 0) {
          dir = rest.slice(0, colon);
          selector = { tag: rest.slice(colon + 1) };
        }
        const ref = `oci-layout.invalid/${familiarContextName(base).replace(/[^a-z0-9._-]+/g, '-')}:${selector?.tag?.replace(/[^A-Za-z0-9._-]/g, '-') || 'latest'}`;
        layouts.push({ ref, dir: path.resolve(opts.cwd ?? '.', dir), selector });
        contexts[name] = { type: 'image', ref };
      } else if (isGitAddress(value)) {
        const got = await fetchGitContext(value, { ...opts, label: `context ${name}` });
        removers.push(got.remove);
        locals[local] = { dir: got.dir };
        contexts[name] = { type: 'local', name: local };
      } else if (/^https?:\/\//.test(value)) {
        // As BuildKit's http named context: the one downloaded file, named by the URL's last path part.
        const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'builder-named-'));
        removers.push(() => fsp.rm(tmp, { recursive: true, force: true }));
        let filename = '__unnamed__';
        try {
          const b = path.posix.basename(new URL(value).pathname);
          if (b && b !== '.' && b !== '/') filename = decodeURIComponent(b).replace(/\//g, '_');
        } catch { /* keep the default */ }
        await step(opts.progress, `internal:named:${name}`, `[context ${name}] ${redactRemote(value)}`, () => download(value, path.join(tmp, filename), opts));
        await fsp.chmod(path.join(tmp, filename), 0o600);
        locals[local] = { dir: tmp, ephemeral: true };
        contexts[name] = { type: 'local', name: local };
      } else if (/^[a-z][a-z0-9+.-]*:\/\//.test(value) && !value.startsWith('local:')) {
        throw new RemoteContextError('INVALID_FLAG', `invalid --build-context ${rawName}: unsupported context source ${value.slice(0, value.indexOf(':'))}`);
      } else {
        const dir = path.resolve(opts.cwd ?? '.', value.replace(/^local:/, ''));
        const st = await fsp.stat(dir).catch(() => null);
        if (!st?.isDirectory()) throw new RemoteContextError('INVALID_FLAG', `invalid --build-context ${rawName}: ${value} is not a directory`);
        locals[local] = { dir };
        const excludes = await readDockerignore(dir, undefined);
        contexts[name] = { type: 'local', name: local, ...(excludes.length > 0 ? { excludes } : {}) };
      }
    }
  } catch (e) {
    await remove();
    throw e;
  }
  return { contexts, locals, layouts, remove };
}

const REF_NAME = 'org.opencontainers.image.ref.name';

/** Reads a blob of an OCI layout, checking its digest (a layout is the user's files, not trusted content). */
async function layoutBlob(dir: string, digest: string): Promise<Buffer> {
  if (!/^sha256:[0-9a-f]{64}$/.test(digest)) throw new RemoteContextError('BAD_LAYOUT', `OCI layout ${dir}: invalid digest ${digest}`);
  const data = await fsp.readFile(path.join(dir, 'blobs', 'sha256', digest.slice(7))).catch(() => {
    throw new RemoteContextError('BAD_LAYOUT', `OCI layout ${dir}: blob ${digest} not found`);
  });
  if (`sha256:${createHash('sha256').update(data).digest('hex')}` !== digest) throw new RemoteContextError('BAD_LAYOUT', `OCI layout ${dir}: blob ${digest} does not match its digest`);
  return data;
}

/**
 * Makes each `oci-layout://` named context resolvable by the worker: the chosen image's blobs are copied into
 * the content store and its ref answers with that image for each target platform, without a registry.
 */
export async function importLayouts(worker: Worker, layouts: PreparedContexts['layouts'], platforms: Platform[]): Promise<void> {
  for (const layout of layouts) {
    const where = `oci-layout://${layout.dir}`;
    const indexText = await fsp.readFile(path.join(layout.dir, 'index.json'), 'utf8').catch(() => {
      throw new RemoteContextError('BAD_LAYOUT', `${where}: not an OCI layout (no index.json)`);
    });
    let index: Index;
    try {
      index = JSON.parse(indexText) as Index;
    } catch {
      throw new RemoteContextError('BAD_LAYOUT', `${where}: index.json is not valid JSON`);
    }
    const manifests = index.manifests ?? [];
    const sel = layout.selector;
    let top: Descriptor | undefined;
    if (sel?.digest) {
      top = manifests.find((m) => m.digest === sel.digest);
      if (!top) {
        // A digest not listed in index.json: a blob of the layout, read to learn what it is.
        const data = await layoutBlob(layout.dir, sel.digest);
        const doc = JSON.parse(data.toString('utf8')) as { mediaType?: string; manifests?: unknown };
        top = { mediaType: doc.mediaType ?? (doc.manifests ? MediaType.ociIndex : MediaType.ociManifest), digest: sel.digest as Digest, size: data.length };
      }
    } else {
      const tag = sel?.tag ?? 'latest';
      top = manifests.find((m) => m.annotations?.[REF_NAME] === tag || m.annotations?.[REF_NAME]?.endsWith(`:${tag}`))
        ?? (!sel?.tag && manifests.length === 1 ? manifests[0] : undefined);
    }
    if (!top) throw new RemoteContextError('BAD_LAYOUT', `${where}: no image ${sel?.digest ? `with digest ${sel.digest}` : `tagged ${sel?.tag ?? 'latest'}`} in the layout`);
    const store = worker.store;
    const copy = async (d: Descriptor): Promise<Buffer> => {
      const data = await layoutBlob(layout.dir, d.digest);
      if (!(await store.has(d.digest))) await store.write(data, { digest: d.digest, size: data.length });
      return data;
    };
    // Layers are streamed in (the store checks their digest), never held in memory whole.
    const copyLayer = async (d: Descriptor): Promise<void> => {
      if (!/^sha256:[0-9a-f]{64}$/.test(d.digest)) throw new RemoteContextError('BAD_LAYOUT', `${where}: invalid digest ${d.digest}`);
      if (await store.has(d.digest)) return;
      const file = path.join(layout.dir, 'blobs', 'sha256', d.digest.slice(7));
      if (!(await fsp.stat(file).catch(() => null))) throw new RemoteContextError('BAD_LAYOUT', `${where}: blob ${d.digest} not found`);
      await store.write(fs.createReadStream(file), { digest: d.digest, size: d.size }).catch((e: Error) => {
        throw new RemoteContextError('BAD_LAYOUT', `${where}: blob ${d.digest}: ${e.message}`);
      });
    };
    const topBytes = await copy(top);
    for (const platform of platforms) {
      let desc = top;
      let bytes = topBytes;
      if (isIndexType(desc.mediaType)) {
        const idx = JSON.parse(bytes.toString('utf8')) as Index;
        const want = normalizePlatform(platform);
        const chosen = (idx.manifests ?? []).find((m) => m.platform && platformsEqual(normalizePlatform(m.platform), want))
          ?? (idx.manifests ?? []).find((m) => m.platform && m.platform.os === want.os && m.platform.architecture === want.architecture);
        if (!chosen) throw new RemoteContextError('NO_MATCHING_PLATFORM', `${where}: no image for platform ${platformString(platform)}`);
        desc = chosen;
        bytes = await copy(desc);
      }
      const manifest = JSON.parse(bytes.toString('utf8')) as Manifest;
      const configBytes = await copy(manifest.config);
      for (const l of manifest.layers) await copyLayer(l);
      const ref = parseReference(layout.ref);
      worker.provideImage(layout.ref, platform, {
        ref: ref.withDigest(top.digest), manifestDigest: desc.digest, manifest, manifestBytes: bytes,
        config: JSON.parse(configBytes.toString('utf8')) as ImageConfigFile, configBytes, configDescriptor: manifest.config, layers: manifest.layers,
      });
    }
  }
}
