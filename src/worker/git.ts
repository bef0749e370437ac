// Git sources, as BuildKit's: a remote address with an optional `#REF:SUBDIR` fragment (or the newer
// `?ref=REF&subdir=DIR` query form), fetched with the system `git` into a cache under the state directory,
// one bare repository per remote, and checked out by the commit the reference resolves to. What a source
// holds depends only on that commit (and the subdirectory), so the commit is its cache key.
//
// Credentials are git's own: its credential helpers, `user:token@` in an https address, an SSH agent (the
// build's `--ssh default`, else $SSH_AUTH_SOCK). git never prompts: a build has no terminal to answer it.
import fs from 'node:fs/promises';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { PidLock, isAlive } from '../util/pidlock.js';
import { GitSourceError, redactRemote, stripCredentials, type GitRef } from '../util/gitaddress.js';

export { GitSourceError, isGitAddress, parseGitAddress, redactRemote, type GitRef } from '../util/gitaddress.js';

/** What a git command may use beyond the environment: an SSH agent socket, the build's secrets. */
export interface GitAuth {
  sshAuthSock?: string;
  /**
   * BuildKit's git secrets: `GIT_AUTH_TOKEN.<host>` (sent as basic auth `x-access-token:TOKEN`) and
   * `GIT_AUTH_HEADER.<host>` (the whole Authorization value) for that host; without `.<host>`, for the
   * source's own host. Given to git in its environment (GIT_CONFIG_*), never on its command line.
   */
  secrets?: Map<string, Buffer>;
}

/** `http.<url>.extraHeader` settings for the git secrets that apply to `remote` (and to hosts they name). */
function authHeaders(remote: string | undefined, secrets: Map<string, Buffer> | undefined): [string, string][] {
  if (!secrets) return [];
  let own: string | undefined;
  try {
    if (remote && /^https?:\/\//.test(remote)) own = new URL(remote).host;
  } catch { /* not a URL: no host of its own */ }
  const byHost = new Map<string, string>();
  for (const kind of ['GIT_AUTH_TOKEN', 'GIT_AUTH_HEADER'] as const) {
    for (const [id, value] of secrets) {
      const host = id === kind ? own : id.startsWith(`${kind}.`) ? id.slice(kind.length + 1) : undefined;
      if (!host || (id === kind && byHost.has(host))) continue;
      const v = value.toString('utf8').trim();
      byHost.set(host, kind === 'GIT_AUTH_TOKEN' ? `basic ${Buffer.from(`x-access-token:${v}`).toString('base64')}` : v);
    }
  }
  return [...byHost].flatMap(([host, auth]) => [`http://${host}/`, `https://${host}/`].map((u) => [`http.${u}.extraHeader`, `Authorization: ${auth}`] as [string, string]));
}

const FULL_SHA = /^[0-9a-f]{40}$|^[0-9a-f]{64}$/;

function gitEnv(auth: GitAuth | undefined, remote?: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    GIT_TERMINAL_PROMPT: '0',
    // No editor, no pager, no system-wide hooks in our own repositories' config.
    GIT_PAGER: 'cat', GIT_EDITOR: 'true', LC_ALL: 'C',
  };
  if (!env.GIT_SSH_COMMAND && !env.GIT_SSH) env.GIT_SSH_COMMAND = 'ssh -o BatchMode=yes';
  if (auth?.sshAuthSock) env.SSH_AUTH_SOCK = auth.sshAuthSock;
  // After any GIT_CONFIG_* entries of the user's own.
  let n = Number(env.GIT_CONFIG_COUNT) || 0;
  for (const [key, value] of authHeaders(remote, auth?.secrets)) {
    env[`GIT_CONFIG_KEY_${n}`] = key;
    env[`GIT_CONFIG_VALUE_${n}`] = value;
    n++;
  }
  if (n > 0) env.GIT_CONFIG_COUNT = String(n);
  return env;
}

/** Runs git; resolves with its stdout, rejects with its last stderr lines. */
function git(args: string[], opts: { cwd?: string; auth?: GitAuth; signal?: AbortSignal; remote?: string } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('git', ['-c', 'protocol.file.allow=user', ...args], {
      cwd: opts.cwd, env: gitEnv(opts.auth, opts.remote), stdio: ['ignore', 'pipe', 'pipe'], signal: opts.signal,
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => { if (out.length < 16 << 20) out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { err = (err + d.toString()).slice(-8192); });
    child.on('error', (e) => reject((e as NodeJS.ErrnoException).code === 'ENOENT'
      ? new GitSourceError('GIT_NOT_FOUND', 'git is not installed: git sources need the `git` program')
      : e));
    child.on('close', (code) => {
      if (code === 0) return resolve(out);
      // git's advice lines say nothing of the cause (`Please make sure you have the correct access rights`).
      const lines = err.trim().split('\n').filter((l) => l.trim() && !l.startsWith('hint:') && !/^(Please make sure you have the correct access rights|and the repository exists\.)$/.test(l.trim()));
      reject(new GitCommandError(lines.slice(-2).join('; ') || `git ${args[0]} exited with ${code}`));
    });
  });
}

class GitCommandError extends Error {}

/** Fetches and checks out git sources, with one bare repository per remote under `<root>/git`. */
export class GitCache {
  private readonly dir: string;
  /** One fetch at a time per remote in this process (the lock file covers other processes). */
  private readonly busy = new Map<string, Promise<unknown>>();

  constructor(root: string) {
    this.dir = path.join(root, 'git');
  }

  /**
   * Removes what killed runs left: half-made repositories and checkouts whose process is gone (a live one may
   * be fetching a context before it takes the state directory's lock).
   */
  async cleanup(): Promise<void> {
    const names = await fs.readdir(this.dir).catch(() => [] as string[]);
    await Promise.all(names.filter((n) => tempOwner(n) !== undefined && !isAlive(tempOwner(n)!))
      .map((n) => fs.rm(path.join(this.dir, n), { recursive: true, force: true })));
  }

  /** A temporary directory beside the cache, named for its owner process (see cleanup). */
  private tempDir(): Promise<string> {
    return fs.mkdtemp(path.join(this.dir, `checkout-${process.pid}-`));
  }

  /** The repositories and kept checkouts: how many, and their bytes. */
  async usage(): Promise<{ count: number; size: number }> {
    let count = 0;
    let size = 0;
    for (const name of await fs.readdir(this.dir).catch(() => [] as string[])) {
      const p = path.join(this.dir, name);
      if (!(await fs.stat(p).catch(() => null))?.isDirectory()) continue;
      count++;
      size += await treeSize(p);
    }
    return { count, size };
  }

  /**
   * Removes the repositories not used for `olderThanMs` (all without it); the caller holds the state
   * directory exclusively. Returns how many and their bytes.
   */
  async prune(olderThanMs?: number): Promise<{ removed: number; freed: number }> {
    let removed = 0;
    let freed = 0;
    const names = await fs.readdir(this.dir).catch(() => [] as string[]);
    for (const name of names) {
      const p = path.join(this.dir, name);
      const owner = tempOwner(name);
      if (owner !== undefined && isAlive(owner)) continue;
      const st = await fs.stat(p).catch(() => null);
      if (!st) continue;
      if (st.isDirectory() && olderThanMs !== undefined && Date.now() - st.mtimeMs < olderThanMs) continue;
      freed += await treeSize(p);
      await fs.rm(p, { recursive: true, force: true });
      if (st.isDirectory()) removed++;
    }
    return { removed, freed };
  }

  private repoDir(remote: string): string {
    return path.join(this.dir, createHash('sha256').update(stripCredentials(remote)).digest('hex').slice(0, 32));
  }

  private async locked<T>(remote: string, signal: AbortSignal | undefined, fn: (repo: string) => Promise<T>): Promise<T> {
    const repo = this.repoDir(remote);
    const before = this.busy.get(repo) ?? Promise.resolve();
    const run = before.catch(() => undefined).then(async () => {
      await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
      const lock = await PidLock.acquire(`${repo}.lock`, { signal });
      try {
        await this.initRepo(repo, remote);
        return await fn(repo);
      } finally {
        await lock.release();
      }
    });
    this.busy.set(repo, run);
    run.finally(() => { if (this.busy.get(repo) === run) this.busy.delete(repo); }).catch(() => undefined);
    return run;
  }

  /** The bare repository, made atomically (made in a temp directory, renamed into place). */
  private async initRepo(repo: string, remote: string): Promise<void> {
    if (await fs.stat(path.join(repo, 'HEAD')).then(() => true, () => false)) return;
    const tmp = `${repo}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    await git(['init', '-q', '--bare', tmp]);
    // Credentials in the address are used for each fetch, never written down.
    await git(['--git-dir', tmp, 'remote', 'add', 'origin', stripCredentials(remote)]);
    // A checkout fetches single commits from here by id.
    await git(['--git-dir', tmp, 'config', 'uploadpack.allowAnySHA1InWant', 'true']);
    await fs.rm(repo, { recursive: true, force: true });
    await fs.rename(tmp, repo);
  }

  /**
   * The commit `ref` names at `remote` now (a branch, tag, full or abbreviated commit; the remote's HEAD when
   * undefined), fetched into the cache: shallow where the server allows it, else in full.
   */
  async resolve(g: GitRef, opts: { auth?: GitAuth; signal?: AbortSignal } = {}): Promise<string> {
    const where = `${redactRemote(g.remote)}${g.ref ? `#${g.ref}` : ''}`;
    return this.locked(g.remote, opts.signal, async (repo) => {
      // Its mtime is when it was last used (prune keeps recently used ones).
      const now = new Date();
      await fs.utimes(repo, now, now).catch(() => undefined);
      const run = (args: string[]) => git(['--git-dir', repo, ...args], { auth: opts.auth, signal: opts.signal, remote: g.remote });
      const has = (commit: string) => run(['cat-file', '-e', `${commit}^{commit}`]).then(() => true, () => false);
      let commit: string | undefined;
      let fetchRef: string | undefined;
      const ref = g.ref ?? 'HEAD';
      if (FULL_SHA.test(ref)) {
        commit = ref;
      } else {
        let listed: string;
        try {
          listed = await run(['ls-remote', g.remote, ref, ...(ref === 'HEAD' ? [] : [`${ref}^{}`])]);
        } catch (e) {
          throw new GitSourceError('GIT_FAILED', `failed to fetch ${where}: ${(e as Error).message}`, { cause: e });
        }
        const found = pickRef(listed, ref);
        if (found) {
          commit = found.commit;
          fetchRef = found.name;
        }
      }
      if (commit && await has(commit)) return commit;
      if (commit) {
        // Shallow by ref name (every server allows it), else by commit id (servers that allow it), else all.
        const attempts = [...(fetchRef ? [fetchRef] : []), commit];
        for (const want of attempts) {
          const ok = await run(['fetch', '-q', '--no-tags', '--depth', '1', g.remote, want]).then(() => true, () => false);
          if (ok && await has(commit)) return commit;
        }
      }
      // A commit not at a branch or tag tip, or an abbreviated one: the whole history.
      try {
        const shallow = await fs.stat(path.join(repo, 'shallow')).then(() => true, () => false);
        await run(['fetch', '-q', ...(shallow ? ['--unshallow'] : []), '--tags', g.remote, '+refs/heads/*:refs/remotes/origin/*']);
      } catch (e) {
        throw new GitSourceError('GIT_FAILED', `failed to fetch ${where}: ${(e as Error).message}`, { cause: e });
      }
      if (commit && await has(commit)) return commit;
      if (!commit && /^[0-9a-f]{4,63}$/.test(ref)) {
        const full = await run(['rev-parse', '--verify', '-q', `${ref}^{commit}`]).then((s) => s.trim(), () => '');
        if (full) return full;
      }
      throw new GitSourceError('GIT_REF_NOT_FOUND', `failed to fetch ${where}: reference "${ref}" not found`);
    });
  }

  /**
   * Checks `commit` out into `dest` (an empty or missing directory) with its submodules; the `.git`
   * directory is left out unless `keepGitDir`. Files get git's modes: 0644, 0755 when executable.
   */
  async checkout(g: GitRef, commit: string, dest: string, opts: { keepGitDir?: boolean; auth?: GitAuth; signal?: AbortSignal } = {}): Promise<void> {
    const where = `${redactRemote(g.remote)}${g.ref ? `#${g.ref}` : ''}`;
    const repo = this.repoDir(g.remote);
    await fs.mkdir(dest, { recursive: true });
    const run = (args: string[]) => git(args, { cwd: dest, auth: opts.auth, signal: opts.signal, remote: g.remote });
    try {
      await run(['init', '-q']);
      await run(['remote', 'add', 'origin', g.remote]);
      // From the cache (held locked so no fetch changes it meanwhile): a local fetch of one commit.
      await this.locked(g.remote, opts.signal, () => run(['fetch', '-q', '--no-tags', '--depth', '1', repo, commit]));
      await run(['-c', 'advice.detachedHead=false', 'checkout', '-q', commit]);
      if (await fs.stat(path.join(dest, '.gitmodules')).then(() => true, () => false)) {
        await run(['submodule', 'update', '--init', '--recursive', '--depth', '1']).catch(async () => {
          // A submodule commit off its branch tip: servers that refuse it by id need the full fetch.
          await run(['submodule', 'update', '--init', '--recursive']);
        });
      }
    } catch (e) {
      if (opts.signal?.aborted) throw e;
      if (e instanceof GitSourceError) throw e;
      throw new GitSourceError('GIT_FAILED', `failed to check out ${where} (${commit}): ${(e as Error).message}`, { cause: e });
    }
    if (!opts.keepGitDir) {
      await removeGitDirs(dest);
    } else {
      await run(['remote', 'set-url', 'origin', stripCredentials(g.remote)]);
      // The kept repository names its real remote and the checked-out ref, as BuildKit's does.
      if (g.ref && !FULL_SHA.test(g.ref)) await run(['update-ref', `refs/heads/${g.ref.replace(/^refs\/(heads|tags)\//, '')}`, commit]).catch(() => undefined);
    }
  }

  /**
   * Checks `commit` out into `dest` (an empty directory): the repository's root, or what its subdir holds
   * (checked out beside the cache, on the same filesystem, and moved in).
   */
  async checkoutInto(g: GitRef, commit: string, dest: string, opts: { keepGitDir?: boolean; auth?: GitAuth; signal?: AbortSignal } = {}): Promise<void> {
    if (!g.subdir) return this.checkout(g, commit, dest, opts);
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    const tmp = await this.tempDir();
    try {
      await this.checkout(g, commit, tmp, { ...opts, keepGitDir: false });
      const sub = await subdirOf(tmp, g);
      for (const name of await fs.readdir(sub)) await fs.rename(path.join(sub, name), path.join(dest, name));
    } finally {
      await fs.rm(tmp, { recursive: true, force: true });
    }
  }

  /**
   * Resolves `g` and checks the commit out once into `<root>/git/co-<key>` (made in a temp directory and
   * renamed: complete or absent), kept for later builds of the same commit; its context indexes stay valid
   * from build to build. Returns the directory its subdir names. Read only: builds never write to it.
   */
  async fetchCheckout(g: GitRef, opts: { keepGitDir?: boolean; auth?: GitAuth; signal?: AbortSignal } = {}): Promise<{ commit: string; dir: string }> {
    const commit = await this.resolve(g, opts);
    checkCommit(g, commit);
    const key = createHash('sha256').update(`${stripCredentials(g.remote)}\0${commit}\0${opts.keepGitDir ? 'keep' : ''}`).digest('hex').slice(0, 32);
    const top = path.join(this.dir, `co-${key}`);
    if (!(await fs.stat(top).catch(() => null))?.isDirectory()) {
      const tmp = await this.tempDir();
      try {
        await this.checkout(g, commit, tmp, opts);
        await fs.rename(tmp, top).catch(async (e: NodeJS.ErrnoException) => {
          // Another build made it meanwhile: theirs is the same.
          if (e.code !== 'ENOTEMPTY' && e.code !== 'EEXIST') throw e;
        });
      } finally {
        await fs.rm(tmp, { recursive: true, force: true });
      }
    }
    return { commit, dir: await subdirOf(top, g) };
  }

}

/** `ADD --checksum` / `?checksum=` on a git source: the commit must start with it. */
export function checkCommit(g: GitRef, commit: string): void {
  if (g.checksum && !commit.startsWith(g.checksum)) {
    throw new GitSourceError('DIGEST_MISMATCH', `expected checksum to match ${g.checksum}, got ${commit}`);
  }
}

/** The checked-out directory `g.subdir` names, which must stay inside the checkout (symlinks too). */
export async function subdirOf(top: string, g: GitRef): Promise<string> {
  if (!g.subdir) return top;
  const dir = path.join(top, g.subdir);
  const real = await fs.realpath(dir).catch(() => '');
  const realTop = await fs.realpath(top);
  const st = real ? await fs.stat(real).catch(() => null) : null;
  if (!real || !st?.isDirectory() || (real !== realTop && !real.startsWith(`${realTop}/`))) {
    throw new GitSourceError('GIT_SUBDIR_NOT_FOUND', `${redactRemote(g.remote)}: subdirectory "${g.subdir}" not found in the repository`);
  }
  return real;
}

/** The best match for `ref` in `git ls-remote` output: the name itself, then a branch, then a tag (peeled). */
function pickRef(listed: string, ref: string): { commit: string; name: string } | undefined {
  const byName = new Map<string, string>();
  for (const line of listed.split('\n')) {
    const [sha, name] = line.split('\t');
    if (sha && name) byName.set(name, sha);
  }
  const candidates = ref === 'HEAD' ? ['HEAD'] : [ref, `refs/heads/${ref}`, `refs/tags/${ref}`, ...(ref.startsWith('refs/') ? [] : [`refs/${ref}`])];
  for (const name of candidates) {
    const sha = byName.get(`${name}^{}`) ?? byName.get(name);
    if (sha) return { commit: sha, name };
  }
  return undefined;
}

/** The pid in a temporary name (`checkout-PID-...`, `REPO.PID.RAND.tmp`), if it is one. */
function tempOwner(name: string): number | undefined {
  const m = /^checkout-(\d+)-/.exec(name) ?? /\.(\d+)\.[0-9a-f]+\.tmp$/.exec(name);
  return m ? Number(m[1]) : undefined;
}

/** Bytes of the files under `p` (on an explicit stack). */
async function treeSize(p: string): Promise<number> {
  let total = 0;
  const stack = [p];
  for (let cur = stack.pop(); cur !== undefined; cur = stack.pop()) {
    const st = await fs.lstat(cur).catch(() => null);
    if (!st) continue;
    if (st.isDirectory()) for (const n of await fs.readdir(cur).catch(() => [] as string[])) stack.push(path.join(cur, n));
    else total += st.size;
  }
  return total;
}

/** Removes `.git` (the checkout's and its submodules' `.git` files). */
async function removeGitDirs(dir: string): Promise<void> {
  await fs.rm(path.join(dir, '.git'), { recursive: true, force: true });
  const modules = await fs.readFile(path.join(dir, '.gitmodules'), 'utf8').catch(() => '');
  for (const m of modules.matchAll(/^\s*path\s*=\s*(.+?)\s*$/gm)) {
    const sub = path.join(dir, m[1]);
    if (!sub.startsWith(`${dir}/`)) continue;
    await removeGitDirs(sub);
  }
}
