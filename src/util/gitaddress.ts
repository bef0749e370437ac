// Git addresses as BuildKit reads them (gitutil.ParseGitRef and the URL fragment / query syntax): shared by
// the frontend (ADD <git>), the client (git contexts) and the worker (fetching).
import path from 'node:path';
import { UserError } from './errors.js';

export class GitSourceError extends UserError {}

/** A parsed git address. */
export interface GitRef {
  /** What `git fetch` is given: the address without the fragment or the ref/subdir query. */
  remote: string;
  /** Branch, tag, full or abbreviated commit, or any ref; undefined means the remote's HEAD. */
  ref?: string;
  /** A directory inside the repository to use instead of its root. */
  subdir?: string;
  /** The commit the ref must resolve to (a prefix is enough), as `ADD --checksum`. */
  checksum?: string;
}

/**
 * Whether `s` is a git address, as BuildKit's ParseGitRef tells them: `git://`, `ssh://`, `git@host:path`
 * (scp-like), and http(s) addresses whose path ends in `.git`. `github.com/...` without a scheme only with
 * `bareGithub` (buildx takes it as a remote context when no such directory exists).
 */
export function isGitAddress(s: string, opts: { bareGithub?: boolean } = {}): boolean {
  if (/^(git|ssh):\/\//.test(s) || /^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:/.test(s)) return true;
  if (opts.bareGithub && /^github\.com\/[^/]+\/[^/]+/.test(s)) return true;
  if (!/^https?:\/\//.test(s)) return false;
  try {
    return new URL(s.split('#')[0]).pathname.endsWith('.git');
  } catch {
    return false;
  }
}

/** Splits `REMOTE#REF:SUBDIR` (or `REMOTE?ref=REF&subdir=SUBDIR`) into its parts. */
export function parseGitAddress(s: string): GitRef {
  let remote = s;
  let ref: string | undefined;
  let subdir: string | undefined;
  let checksum: string | undefined;
  const hash = remote.indexOf('#');
  let fragment: string | undefined;
  if (hash >= 0) {
    fragment = remote.slice(hash + 1);
    remote = remote.slice(0, hash);
  }
  // The query form: only for URLs (an scp-like address has no query), and only these keys.
  if (/^[a-z+]+:\/\//.test(remote)) {
    const q = remote.indexOf('?');
    if (q >= 0) {
      const params = new URLSearchParams(remote.slice(q + 1));
      const known = ['ref', 'branch', 'tag', 'subdir', 'checksum'];
      if ([...params.keys()].some((k) => known.includes(k))) {
        for (const k of params.keys()) {
          if (!known.includes(k)) throw new GitSourceError('BAD_GIT_URL', `invalid git URL ${s}: unexpected query key "${k}"`);
        }
        if (fragment !== undefined) throw new GitSourceError('BAD_GIT_URL', `invalid git URL ${s}: a fragment and a ref query cannot be combined`);
        const refs = ['ref', 'branch', 'tag'].map((k) => params.get(k)).filter((v): v is string => !!v);
        if (new Set(refs).size > 1) throw new GitSourceError('BAD_GIT_URL', `invalid git URL ${s}: ref, branch and tag disagree`);
        const tag = params.get('tag');
        const branch = params.get('branch');
        ref = tag ? `refs/tags/${tag}` : branch ? `refs/heads/${branch}` : params.get('ref') || undefined;
        subdir = params.get('subdir') || undefined;
        checksum = params.get('checksum') || undefined;
        remote = remote.slice(0, q);
      }
    }
  }
  if (fragment !== undefined) {
    const colon = fragment.indexOf(':');
    ref = (colon < 0 ? fragment : fragment.slice(0, colon)) || undefined;
    subdir = (colon < 0 ? '' : fragment.slice(colon + 1)) || undefined;
  }
  if (/^github\.com\//.test(remote)) remote = `https://${remote}`;
  if (ref !== undefined && (ref.startsWith('-') || /[\s\0]/.test(ref))) throw new GitSourceError('BAD_GIT_URL', `invalid git reference "${ref}"`);
  if (remote.startsWith('-')) throw new GitSourceError('BAD_GIT_URL', `invalid git URL ${s}`);
  if (subdir !== undefined) {
    const clean = path.posix.normalize(`/${subdir}`);
    subdir = clean === '/' ? undefined : clean.slice(1).replace(/\/+$/, '');
  }
  return { remote, ...(ref ? { ref } : {}), ...(subdir ? { subdir } : {}), ...(checksum ? { checksum } : {}) };
}

/** The address with any password (and an http(s) user name, often a token) masked, for messages. */
export function redactRemote(remote: string): string {
  try {
    const u = new URL(remote);
    if (u.password) u.password = 'xxxxx';
    if (u.username && /^https?:$/.test(u.protocol)) u.username = u.password ? u.username : 'xxxxx';
    return u.toString();
  } catch {
    return remote;
  }
}

/** The address without credentials (an http(s) user and password): what is kept on disk. */
export function stripCredentials(remote: string): string {
  try {
    const u = new URL(remote);
    if (!/^https?:$/.test(u.protocol) && !u.password) return remote;
    u.username = '';
    u.password = '';
    return u.toString();
  } catch {
    return remote;
  }
}

