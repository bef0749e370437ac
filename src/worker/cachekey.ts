// Cache keys: what went into an op, by content, so equal inputs give equal keys on any machine. Images by
// their pinned digest, the context by the checksum of exactly what each COPY selects, exec and file ops by
// their definition with input digests replaced by the inputs' cache keys.
import type { KeyContext } from '../../solver/solver.js';
import type { Digest, ExecOp, GitSource, HttpSource, Op } from '../../solver/llb/ops.js';
import { canonicalJSON, sha256 } from '../../solver/llb/digest.js';
import type { ContextChecksummer } from './contenthash.js';
import { redactRemote, stripCredentials } from '../util/gitaddress.js';

/** Bump when the meaning of a key changes, so old records are never reused. */
const KEY_VERSION = 'builder.cache.v1';

export type ChecksummerFor = (localName: string, excludes: string[] | undefined) => ContextChecksummer;
/** The current content of an unpinned ADD <url> (downloaded, or found unchanged by a conditional request). */
export type HttpContentFor = (digest: Digest, source: HttpSource, fresh: boolean) => Promise<{ digest: string; lastModified?: string }>;
/** The commit an ADD <git> source's ref names now (fetched into the git cache on the way). */
export type GitCommitFor = (digest: Digest, source: GitSource) => Promise<string>;

/** What a key was computed from, kept beside the record to explain a later miss. */
export interface KeyInputs {
  kind: string;
  /** Cache keys of the inputs that entered the key (undefined where a content selection was used). */
  inputs: (Digest | null)[];
  /** exec: environment and command. */
  env?: string[];
  args?: string[];
  /** image source: the pinned reference. */
  image?: string;
  /** Copy sources from the context: source path -> content digest of the selection. */
  copies?: { src: string; digest: Digest; paths: string[] }[];
  /** ADD <url> without a checksum: the URL and the digest of what it served. */
  http?: { url: string; digest: string };
  /** ADD <git>: the remote and the commit its ref resolved to. */
  git?: { remote: string; commit: string };
}

/** The name of an `/etc/hosts` entry `host:ip`. */
function hostName(entry: string): string {
  const sep = entry.indexOf(':');
  return sep < 0 ? entry : entry.slice(0, sep);
}

/**
 * What of an exec op enters its keys. A proxy changes where traffic goes, not what a step does, and so does
 * the address an --add-host name resolves to: BuildKit keeps both out of the key too (the host names stay in).
 */
function execDefinition(op: ExecOp): unknown {
  return { meta: { ...op.meta, proxyEnv: undefined, extraHosts: op.meta.extraHosts?.map(hostName) }, mounts: op.mounts, platform: op.platform };
}

/** Bump when the meaning of a content key changes. */
const CONTENT_KEY_VERSION = 'builder.content-key.v1';

/**
 * An op's content key (early cutoff): its definition as in its cache key, with each input's part given by
 * the caller from what the input contains (a content digest) instead of the input's cache key.
 */
export function contentCacheKey(op: Op, inputs: unknown[]): Digest {
  const hash = (v: unknown) => sha256(canonicalJSON([CONTENT_KEY_VERSION, v]));
  switch (op.kind) {
    case 'exec': return hash({ exec: execDefinition(op), inputs });
    case 'file': return hash({ file: { base: op.base, actions: op.actions }, inputs });
    case 'merge': return hash({ merge: inputs });
  }
  throw new Error(`no content key for ${op.kind} ops`);
}

export async function opCacheKey(ctx: KeyContext, checksummer: ChecksummerFor, httpContent?: HttpContentFor, gitCommit?: GitCommitFor): Promise<{ key: Digest; inputs: KeyInputs }> {
  const op: Op = ctx.op;
  const hash = (v: unknown) => sha256(canonicalJSON([KEY_VERSION, v]));
  switch (op.kind) {
    case 'source': {
      const s = op.source;
      if (s.type === 'scratch') return { key: hash({ scratch: true }), inputs: { kind: 'scratch', inputs: [] } };
      if (s.type === 'image') {
        // The pinned digest names the content; the registry host does not.
        const at = s.ref.lastIndexOf('@');
        // A tag alone names no content (it can move): such an op, and all that depends on it, is not cached.
        if (at < 0) throw new Error(`image ${s.ref} is not pinned by digest`);
        const id = s.ref.slice(at + 1);
        return { key: hash({ image: id, platform: s.platform }), inputs: { kind: 'image', inputs: [], image: s.ref } };
      }
      if (s.type === 'http') {
        // Pinned by --checksum, the content is known without a request.
        if (s.checksum) return { key: hash({ http: s.url, filename: s.filename, checksum: s.checksum }), inputs: { kind: 'http', inputs: [] } };
        // Otherwise by what the URL serves now, as BuildKit: the file's name, content and mtime (from
        // Last-Modified) are all the op makes, so the URL itself stays out and a moved file still hits.
        if (!httpContent) throw new Error('no cache key for an unpinned ADD <url> here');
        const got = await httpContent(ctx.digest, s, !!ctx.metadata.ignoreCache);
        return {
          key: hash({ httpContent: got.digest, filename: s.filename, lastModified: got.lastModified ?? null }),
          inputs: { kind: 'http', inputs: [], http: { url: s.url, digest: got.digest } },
        };
      }
      if (s.type === 'git') {
        // The commit names the content, as BuildKit keys a git source; the remote only where `.git` (which
        // records it) is kept.
        if (!gitCommit) throw new Error('no cache key for a git source here');
        const commit = await gitCommit(ctx.digest, s);
        return {
          key: hash({ git: commit, subdir: s.subdir ?? '', keepGitDir: s.keepGitDir ? stripCredentials(s.remote) : false }),
          inputs: { kind: 'git', inputs: [], git: { remote: redactRemote(s.remote), commit } },
        };
      }
      // A source kind without a content key here (a new one) is never cached, rather than cached wrongly.
      if ((s as { type: string }).type !== 'local') throw new Error(`no cache key for ${(s as { type: string }).type} sources`);
      const sum = checksummer(s.name, s.excludePatterns);
      const d = await sum.rootDigest();
      return { key: hash({ local: d, include: s.includePatterns ?? [] }), inputs: { kind: 'local', inputs: [] } };
    }
    case 'exec': {
      const inputs = await Promise.all(op.inputs.map((_, i) => ctx.inputKey(i)));
      return {
        key: hash({ exec: execDefinition(op), inputs }),
        inputs: { kind: 'exec', inputs, env: op.meta.env, args: op.meta.args },
      };
    }
    case 'file': {
      const inputs: (Digest | null)[] = [];
      const copies: NonNullable<KeyInputs['copies']> = [];
      const parts: unknown[] = [];
      for (let i = 0; i < op.inputs.length; i++) {
        const inputOp = ctx.inputOp(i);
        if (i !== op.base && inputOp.kind === 'source' && inputOp.source.type === 'local') {
          // Only what the copies select from the context matters, not the rest of it.
          const sum = checksummer(inputOp.source.name, inputOp.source.excludePatterns);
          const sel: Digest[] = [];
          for (const a of op.actions) {
            if (a.action !== 'copy' || a.sourceInput !== i) continue;
            const s = await sum.selectionDigest(a);
            sel.push(s.digest);
            copies.push({ src: a.src, digest: s.digest, paths: s.paths });
          }
          parts.push({ local: sel, include: inputOp.source.includePatterns ?? [] });
          inputs.push(null);
        } else {
          const k = await ctx.inputKey(i);
          parts.push(k);
          inputs.push(k);
        }
      }
      return { key: hash({ file: { base: op.base, actions: op.actions }, inputs: parts }), inputs: { kind: 'file', inputs, copies } };
    }
    case 'merge': {
      const inputs = await Promise.all(op.inputs.map((_, i) => ctx.inputKey(i)));
      return { key: hash({ merge: inputs }), inputs: { kind: 'merge', inputs } };
    }
  }
  throw new Error(`no cache key for ${(op as { kind: string }).kind} ops`);
}
