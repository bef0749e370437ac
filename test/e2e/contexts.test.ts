// Remote and named build contexts against real servers on 127.0.0.1: `git daemon` (git://) and
// `git http-backend` behind basic auth (a private repository), a plain HTTP server for tarball and
// Dockerfile URLs, the test registry for images. A git context by tag and subdir, branch, commit, with a
// submodule, over credentials; named contexts of each kind, replacing a stage, a base image, pinning one.
import { describe, it, expect, inject, beforeAll, afterAll } from 'vitest';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import fs from 'node:fs/promises';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { runCli, makeContext, tempDir, lastLine } from '../helpers/cli.js';
import { startGitServers, git, type GitServers } from '../helpers/gitserver.js';
import { addHostsEntries, makeCA, makeCert, uniqueHostname } from '../helpers/tls.js';

const exec = promisify(execFile);
const registry = inject('registry');
const base = `${registry}/busybox:1.35`;

let srv: GitServers;
let httpServer: http.Server;
let httpUrl: string;
const served: Record<string, Buffer> = {};
let root: string;
/** Commits of app.git: v1 (tagged, annotated) and the main branch's tip. */
let c1: string;
let c2: string;

const SCRATCH_DF = 'FROM scratch\nCOPY . /ctx/\n';

beforeAll(async () => {
  root = await tempDir('builder-contexts-root-');
  srv = await startGitServers();
  const sub = await srv.repo('sub', async (w) => {
    await fs.writeFile(path.join(w, 'subfile'), 'from the submodule\n');
    await git(w, 'add', '.');
    await git(w, 'commit', '-qm', 'sub');
  });
  void sub;
  await srv.repo('app', async (w) => {
    await fs.mkdir(path.join(w, 'app'));
    await fs.writeFile(path.join(w, 'Dockerfile'), SCRATCH_DF);
    await fs.writeFile(path.join(w, 'app', 'Dockerfile'), 'FROM scratch\nCOPY hello.txt /hello.txt\n');
    await fs.writeFile(path.join(w, 'app', 'hello.txt'), 'v1\n');
    await fs.writeFile(path.join(w, 'run.sh'), '#!/bin/sh\n');
    await fs.chmod(path.join(w, 'run.sh'), 0o755);
    await git(w, 'add', '.');
    await git(w, 'commit', '-qm', 'one');
    c1 = await git(w, 'rev-parse', 'HEAD');
    await git(w, 'tag', '-a', '-m', 'version 1', 'v1');
    await git(w, 'checkout', '-q', '-b', 'feature');
    await fs.writeFile(path.join(w, 'app', 'hello.txt'), 'feature\n');
    await git(w, 'commit', '-qam', 'feature');
    await git(w, 'checkout', '-q', 'main');
    await fs.writeFile(path.join(w, 'app', 'hello.txt'), 'v2\n');
    await git(w, 'submodule', '-q', 'add', `${srv.daemonUrl}/sub.git`, 'mod');
    await git(w, 'add', '.');
    await git(w, 'commit', '-qm', 'two');
    c2 = await git(w, 'rev-parse', 'HEAD');
  });
  await srv.repo('private', async (w) => {
    await fs.writeFile(path.join(w, 'Dockerfile'), SCRATCH_DF);
    await fs.writeFile(path.join(w, 'secret.txt'), 'private\n');
    await git(w, 'add', '.');
    await git(w, 'commit', '-qm', 'private');
  });

  httpServer = http.createServer((req, res) => {
    const body = served[req.url ?? ''];
    if (!body) return res.writeHead(404).end();
    res.writeHead(200).end(body);
  });
  await new Promise<void>((r) => httpServer.listen(0, '127.0.0.1', () => r()));
  httpUrl = `http://127.0.0.1:${(httpServer.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await srv?.close();
  await new Promise<void>((r) => (httpServer ? httpServer.close(() => r()) : r()));
});

/** Builds into a local directory; returns the CLI result and the directory. */
async function build(args: string[], env: Record<string, string> = {}) {
  const out = await tempDir('builder-contexts-out-');
  const r = await runCli(['build', '--root', root, '--progress', 'plain', '--output', `type=local,dest=${out}`, ...args], { env });
  return { r, out, read: (p: string) => fs.readFile(path.join(out, p), 'utf8') };
}

describe('git contexts', () => {
  it('builds a tag and a subdirectory (#v1:app)', async () => {
    const { r, read } = await build([`${srv.daemonUrl}/app.git#v1:app`]);
    expect(r.code, r.stderr).toBe(0);
    expect(await read('hello.txt')).toBe('v1\n');
    expect(r.stderr).toContain('load git source');
    // The commit's checkout is kept: a second build reads the same files and its COPY hits.
    const again = await build([`${srv.daemonUrl}/app.git#v1:app`]);
    expect(again.r.code, again.r.stderr).toBe(0);
    expect(again.r.stderr).toMatch(/COPY hello\.txt \/hello\.txt\n#\d+ CACHED/);
  });

  it('takes the query form (?ref=&subdir=) and a branch', async () => {
    const q = await build([`${srv.daemonUrl}/app.git?ref=feature&subdir=app`]);
    expect(q.r.code, q.r.stderr).toBe(0);
    expect(await q.read('hello.txt')).toBe('feature\n');
    const f = await build([`${srv.daemonUrl}/app.git#feature:app`]);
    expect(f.r.code, f.r.stderr).toBe(0);
    expect(await f.read('hello.txt')).toBe('feature\n');
  });

  it('builds a commit by its id, full or abbreviated', async () => {
    const full = await build([`${srv.daemonUrl}/app.git#${c1}:app`]);
    expect(full.r.code, full.r.stderr).toBe(0);
    expect(await full.read('hello.txt')).toBe('v1\n');
    const short = await build([`${srv.daemonUrl}/app.git#${c1.slice(0, 10)}:app`]);
    expect(short.r.code, short.r.stderr).toBe(0);
    expect(await short.read('hello.txt')).toBe('v1\n');
  });

  it('names the repository and the fetched commit in provenance, though the checkout has no .git', async () => {
    const root = await tempDir('builder-contexts-root-');
    const layout = await tempDir('builder-contexts-oci-');
    const r = await runCli(['build', '--root', root, '--progress', 'plain', '--provenance', 'mode=max', '--output', `type=oci,dest=${layout},tar=false`, `${srv.daemonUrl}/app.git#v1:app`]);
    expect(r.code, r.stderr).toBe(0);
    const blob = async (d: string) => JSON.parse(await fs.readFile(path.join(layout, 'blobs', d.replace(':', '/')), 'utf8'));
    const index = await blob(JSON.parse(await fs.readFile(path.join(layout, 'index.json'), 'utf8')).manifests[0].digest);
    const att = index.manifests.find((m: { annotations?: Record<string, string> }) => m.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest');
    const statement = await blob((await blob(att.digest)).layers[0].digest);
    expect(statement.predicate.invocation.configSource).toMatchObject({ uri: `${srv.daemonUrl}/app.git#${c1}`, digest: { sha1: c1 } });
  });

  it('checks out submodules, keeps file modes, and leaves .git out unless BUILDKIT_CONTEXT_KEEP_GIT_DIR', async () => {
    const { r, out, read } = await build([`${srv.daemonUrl}/app.git`]);
    expect(r.code, r.stderr).toBe(0);
    expect(await read('ctx/app/hello.txt')).toBe('v2\n');
    expect(await read('ctx/mod/subfile')).toBe('from the submodule\n');
    expect((await fs.stat(path.join(out, 'ctx/run.sh'))).mode & 0o777).toBe(0o755);
    await expect(fs.stat(path.join(out, 'ctx/.git'))).rejects.toThrow();
    await expect(fs.stat(path.join(out, 'ctx/mod/.git'))).rejects.toThrow();

    const kept = await build(['--build-arg', 'BUILDKIT_CONTEXT_KEEP_GIT_DIR=1', `${srv.daemonUrl}/app.git#main`]);
    expect(kept.r.code, kept.r.stderr).toBe(0);
    const { stdout } = await exec('git', ['--git-dir', path.join(kept.out, 'ctx/.git'), 'rev-parse', 'HEAD']);
    expect(stdout.trim()).toBe(c2);
  });

  it('reads a private repository over HTTP with git credential helpers; without them, one line', async () => {
    const url = `${srv.httpUrl}/private.git`;
    const denied = await build([url]);
    expect(denied.r.code).toBe(1);
    expect(lastLine(denied.r.stderr)).toMatch(/^ERROR: failed to fetch http:\/\/127\.0\.0\.1:\d+\/private\.git: .+/);
    expect(denied.r.stderr).not.toMatch(/\n\s+at /);

    const creds = await tempDir('builder-git-creds-');
    const store = path.join(creds, 'store');
    await fs.writeFile(store, `http://${srv.user}:${srv.password}@127.0.0.1:${new URL(srv.httpUrl).port}\n`, { mode: 0o600 });
    const env = { GIT_CONFIG_COUNT: '1', GIT_CONFIG_KEY_0: 'credential.helper', GIT_CONFIG_VALUE_0: `store --file=${store}` };
    const ok = await build([url], env);
    expect(ok.r.code, ok.r.stderr).toBe(0);
    expect(await ok.read('ctx/secret.txt')).toBe('private\n');
    // The password never shows in the output.
    expect(ok.r.stderr).not.toContain(srv.password);
  });

  it('uses credentials in the address for each fetch without writing them to the state directory', async () => {
    const u = new URL(`${srv.httpUrl}/private.git`);
    u.username = srv.user;
    u.password = srv.password;
    const b = await build([u.toString()]);
    expect(b.r.code, b.r.stderr).toBe(0);
    expect(await b.read('ctx/secret.txt')).toBe('private\n');
    expect(b.r.stderr).not.toContain(srv.password);
    const { stdout } = await exec('grep', ['-rl', srv.password, path.join(root, 'git')]).catch((e: { stdout: string }) => e);
    expect(stdout).toBe('');
  });

  it('sends the GIT_AUTH_TOKEN.<host> and GIT_AUTH_HEADER.<host> secrets to that host, for a context and ADD', async () => {
    const host = new URL(srv.httpUrl).host;
    const env = { GITTOK: srv.token, GITHDR: `basic ${Buffer.from(`${srv.user}:${srv.password}`).toString('base64')}` };
    const tok = await build(['--secret', `id=GIT_AUTH_TOKEN.${host},env=GITTOK`, `${srv.httpUrl}/private.git`], env);
    expect(tok.r.code, tok.r.stderr).toBe(0);
    expect(await tok.read('ctx/secret.txt')).toBe('private\n');
    const ctx = await makeContext({ Dockerfile: `FROM scratch\nADD ${srv.httpUrl}/private.git /p\n` });
    const hdr = await build(['--secret', `id=GIT_AUTH_HEADER.${host},env=GITHDR`, ctx], env);
    expect(hdr.r.code, hdr.r.stderr).toBe(0);
    expect(await hdr.read('p/secret.txt')).toBe('private\n');
    // For another host, the secret is not sent.
    const other = await build(['--secret', 'id=GIT_AUTH_TOKEN.example.invalid,env=GITTOK', `${srv.httpUrl}/private.git#main`], env);
    expect(other.r.code).toBe(1);
  });

  it('two builds of one repository at once, on a fresh state directory, share its cache safely', async () => {
    const fresh = await tempDir('builder-contexts-root2-');
    const one = async (ref: string) => {
      const out = await tempDir('builder-contexts-out-');
      const r = await runCli(['build', '--root', fresh, '--progress', 'plain', '--output', `type=local,dest=${out}`, `${srv.daemonUrl}/app.git#${ref}:app`]);
      expect(r.code, r.stderr).toBe(0);
      return fs.readFile(path.join(out, 'hello.txt'), 'utf8');
    };
    expect(await Promise.all([one('v1'), one('feature'), one('v1')])).toEqual(['v1\n', 'feature\n', 'v1\n']);
    const names = await fs.readdir(path.join(fresh, 'git'));
    expect(names.filter((n) => n.endsWith('.tmp') || n.startsWith('checkout-'))).toEqual([]);
  });

  it('a missing ref or subdirectory is one line', async () => {
    const ref = await build([`${srv.daemonUrl}/app.git#nosuchref`]);
    expect(ref.r.code).toBe(1);
    expect(lastLine(ref.r.stderr)).toContain('reference "nosuchref" not found');
    const sub = await build([`${srv.daemonUrl}/app.git#v1:nosuchdir`]);
    expect(sub.r.code).toBe(1);
    expect(lastLine(sub.r.stderr)).toContain('subdirectory "nosuchdir" not found');
  });
});

describe('git over ssh with the --ssh agent', () => {
  // No sshd here: GIT_SSH_COMMAND is a stand-in that refuses unless the agent it is handed (SSH_AUTH_SOCK)
  // holds the test key, then runs the remote git command locally. What is tested is ours: the ssh address
  // forms, and the --ssh agent reaching git's ssh for a context and for ADD.
  let dir: string;
  let sock: string;
  let agent: ReturnType<typeof import('node:child_process').spawn>;
  let env: Record<string, string>;
  beforeAll(async () => {
    const { spawn } = await import('node:child_process');
    dir = await tempDir('builder-ssh-');
    await exec('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'builder-test', '-f', path.join(dir, 'key')]);
    sock = path.join(dir, 'agent.sock');
    agent = spawn('ssh-agent', ['-D', '-a', sock], { stdio: 'ignore' });
    for (let i = 0; i < 100 && !(await fs.stat(sock).catch(() => null)); i++) await new Promise((r) => setTimeout(r, 50));
    await exec('ssh-add', ['-q', path.join(dir, 'key')], { env: { ...process.env, SSH_AUTH_SOCK: sock } });
    const pub = (await fs.readFile(path.join(dir, 'key.pub'), 'utf8')).split(' ')[1];
    const fake = path.join(dir, 'fakessh');
    await fs.writeFile(fake, `#!/bin/sh\nssh-add -L 2>/dev/null | grep -qF '${pub}' || { echo "Permission denied (publickey)." >&2; exit 255; }\nfor last; do :; done\nexec sh -c "$last"\n`, { mode: 0o755 });
    env = { GIT_SSH_COMMAND: fake, GIT_SSH_VARIANT: 'simple', SSH_AUTH_SOCK: path.join(dir, 'no-agent') };
  });
  afterAll(() => { agent?.kill(); });

  it('builds a git@host:path context and ADDs an ssh:// repository through the agent; without it, one line', async () => {
    const ok = await build(['--ssh', `default=${sock}`, `git@127.0.0.1:${srv.base}/private.git`], env);
    expect(ok.r.code, ok.r.stderr).toBe(0);
    expect(await ok.read('ctx/secret.txt')).toBe('private\n');

    const ctx = await makeContext({ Dockerfile: `FROM scratch\nADD ssh://git@127.0.0.1${srv.base}/app.git#v1:app /src\n` });
    const add = await build(['--ssh', `default=${sock}`, ctx], env);
    expect(add.r.code, add.r.stderr).toBe(0);
    expect(await add.read('src/hello.txt')).toBe('v1\n');

    const denied = await build([`git@127.0.0.1:${srv.base}/private.git#main`], env);
    expect(denied.r.code).toBe(1);
    expect(lastLine(denied.r.stderr)).toMatch(/^ERROR: failed to fetch git@127\.0\.0\.1:\S+#main: .*Permission denied \(publickey\)/);
  });
});

describe('URL contexts', () => {
  it('unpacks a compressed tarball as the context, and builds a bare Dockerfile with an empty context', async () => {
    const dir = await makeContext({ Dockerfile: 'FROM scratch\nCOPY a.txt /a.txt\n', 'a.txt': 'from the tarball\n' });
    const tgz = path.join(await tempDir('builder-tgz-'), 'ctx.tar.xz');
    await exec('tar', ['-cJf', tgz, '-C', dir, '.']);
    served['/ctx.tar.xz'] = await fs.readFile(tgz);
    const indexes = async () => (await fs.readdir(path.join(root, 'cache', 'contexts')).catch(() => [])).length;
    const before = await indexes();
    const t = await build([`${httpUrl}/ctx.tar.xz`]);
    expect(t.r.code, t.r.stderr).toBe(0);
    expect(await t.read('a.txt')).toBe('from the tarball\n');
    // The unpacked directory is gone after the build: no checksum index is kept for it.
    expect(await indexes()).toBe(before);

    served['/Dockerfile'] = Buffer.from(`FROM scratch\nCOPY --from=${base} /bin/busybox /busybox\n`);
    const d = await build([`${httpUrl}/Dockerfile`]);
    expect(d.r.code, d.r.stderr).toBe(0);
    expect((await fs.stat(path.join(d.out, 'busybox'))).isFile()).toBe(true);
  });
});

describe('https URL contexts', () => {
  it('trust the CAs the registries trust (the builder config); an untrusted certificate is one line', async () => {
    const dir = await tempDir('builder-ctx-tls-');
    const name = uniqueHostname('ctx');
    const removeHosts = await addHostsEntries([name]);
    try {
      const ca = await makeCA(dir);
      const cert = await makeCert(ca, dir, name);
      const tlsServer = https.createServer({ cert: await fs.readFile(cert.cert), key: await fs.readFile(cert.key) }, (req, res) => {
        res.writeHead(200).end('FROM scratch\nCOPY --from=tls-note n.txt /n.txt\n');
      });
      await new Promise<void>((r) => tlsServer.listen(0, '127.0.0.1', () => r()));
      const host = `${name}:${(tlsServer.address() as AddressInfo).port}`;
      try {
        served['/n.txt'] = Buffer.from('note\n');
        const config = path.join(dir, 'config.json');
        await fs.writeFile(config, JSON.stringify({ registry: { [host]: { ca: [ca.cert] } } }));
        const ok = await build(['--build-context', `tls-note=${httpUrl}/n.txt`, `https://${host}/Dockerfile`], { BUILDER_CONFIG: config });
        expect(ok.r.code, ok.r.stderr).toBe(0);
        expect(await ok.read('n.txt')).toBe('note\n');
        const untrusted = await build([`https://${host}/Dockerfile`], { BUILDER_CONFIG: path.join(dir, 'none.json') });
        expect(untrusted.r.code).toBe(1);
        expect(lastLine(untrusted.r.stderr)).toMatch(new RegExp(`^ERROR: failed to load https://${host.replace(/\./g, '\\.')}/Dockerfile: .*certificate`));
      } finally {
        await new Promise<void>((r) => tlsServer.close(() => r()));
      }
    } finally {
      await removeHosts();
    }
  });
});

describe('named contexts', () => {
  it('a directory replaces a FROM image, and a stage of that name whole', async () => {
    const files = await makeContext({ 'base.txt': 'from the directory\n' });
    const ctx = await makeContext({
      Dockerfile: 'FROM nosuchimage-for-contexts\nCOPY f.txt /f.txt\n',
      'f.txt': 'own\n',
    });
    const b = await build(['--build-context', `nosuchimage-for-contexts=${files}`, ctx]);
    expect(b.r.code, b.r.stderr).toBe(0);
    expect(await b.read('base.txt')).toBe('from the directory\n');
    expect(await b.read('f.txt')).toBe('own\n');

    // The stage `build` never runs (its RUN would fail): the directory stands for it.
    const staged = await makeContext({ Dockerfile: `FROM ${base} AS build\nRUN exit 1\nFROM scratch\nCOPY --from=build /base.txt /copied.txt\n` });
    const s = await build(['--build-context', `build=${files}`, staged]);
    expect(s.r.code, s.r.stderr).toBe(0);
    expect(await s.read('copied.txt')).toBe('from the directory\n');
  });

  it('docker-image:// pins or replaces an image; the replacement keeps its config', async () => {
    const res = await fetch(`http://${registry}/v2/busybox/manifests/1.35`, {
      headers: { accept: 'application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' },
    });
    const digest = res.headers.get('docker-content-digest');
    expect(digest).toMatch(/^sha256:/);
    const ctx = await makeContext({ Dockerfile: 'FROM alpine\nRUN echo "$PATH" > /path.txt\nFROM scratch\nCOPY --from=0 /path.txt /bin/busybox /\n' });
    const b = await build(['--build-context', `alpine=docker-image://${registry}/busybox:1.35@${digest}`, ctx]);
    expect(b.r.code, b.r.stderr).toBe(0);
    expect((await b.read('path.txt')).trim()).toContain('/bin');
    expect(b.r.stderr).toContain(`${registry}/busybox:1.35@${digest}`);
  });

  it('a git address and an http URL serve COPY --from and RUN --mount=from', async () => {
    served['/note.txt'] = Buffer.from('a downloaded note\n');
    const ctx = await makeContext({
      Dockerfile: `FROM ${base}\nRUN --mount=from=src,target=/src cat /src/hello.txt > /mounted.txt\n`
        + 'FROM scratch\nCOPY --from=src hello.txt /hello.txt\nCOPY --from=note note.txt /note.txt\nCOPY --from=0 /mounted.txt /mounted.txt\n',
    });
    const b = await build(['--build-context', `src=${srv.daemonUrl}/app.git#v1:app`, '--build-context', `note=${httpUrl}/note.txt`, ctx]);
    expect(b.r.code, b.r.stderr).toBe(0);
    expect(await b.read('hello.txt')).toBe('v1\n');
    expect(await b.read('mounted.txt')).toBe('v1\n');
    expect(await b.read('note.txt')).toBe('a downloaded note\n');
  });

  it('oci-layout:// uses an image from a local OCI layout, without a registry', async () => {
    const layout = await tempDir('builder-layout-');
    const img = await makeContext({ Dockerfile: 'FROM scratch\nCOPY layer.txt /layer.txt\nENV FROM_LAYOUT=yes\n', 'layer.txt': 'in the layout\n' });
    const made = await runCli(['build', '--root', root, '--progress', 'plain', '--output', `type=oci,dest=${layout},tar=false`, img]);
    expect(made.code, made.stderr).toBe(0);
    const ctx = await makeContext({ Dockerfile: 'FROM base\nCOPY own.txt /own.txt\n', 'own.txt': 'own\n' });
    const b = await build(['--build-context', `base=oci-layout://${layout}`, ctx]);
    expect(b.r.code, b.r.stderr).toBe(0);
    expect(await b.read('layer.txt')).toBe('in the layout\n');
    expect(await b.read('own.txt')).toBe('own\n');
  });

  it('refuses reserved names and unknown sources in one line', async () => {
    const ctx = await makeContext({ Dockerfile: SCRATCH_DF });
    const reserved = await build(['--build-context', `context=${ctx}`, ctx]);
    expect(reserved.r.code).toBe(1);
    expect(lastLine(reserved.r.stderr)).toContain('invalid --build-context name "context"');
    const unknown = await build(['--build-context', 'x=ftp://example.invalid/x', ctx]);
    expect(unknown.r.code).toBe(1);
    expect(lastLine(unknown.r.stderr)).toContain('unsupported context source ftp');
  });
});

describe('ADD <git>', () => {
  it('adds a tag and subdirectory, keyed by the commit: a second build hits', async () => {
    const ctx = await makeContext({ Dockerfile: `FROM scratch\nADD ${srv.daemonUrl}/app.git#v1:app /src\n` });
    const first = await build([ctx]);
    expect(first.r.code, first.r.stderr).toBe(0);
    expect(await first.read('src/hello.txt')).toBe('v1\n');
    await expect(fs.stat(path.join(first.out, 'src/.git'))).rejects.toThrow();
    const second = await build([ctx]);
    expect(second.r.code, second.r.stderr).toBe(0);
    expect(second.r.stderr).toMatch(/ADD git:\/\/\S+ \/src\n#\d+ CACHED/);
  });

  it('keeps .git with --keep-git-dir, checks submodules out, and checks --checksum against the commit', async () => {
    const ctx = await makeContext({ Dockerfile: `FROM scratch\nADD --keep-git-dir=true --checksum=${c2.slice(0, 8)} ${srv.daemonUrl}/app.git#main /repo\n` });
    const b = await build([ctx]);
    expect(b.r.code, b.r.stderr).toBe(0);
    expect(await b.read('repo/mod/subfile')).toBe('from the submodule\n');
    const { stdout } = await exec('git', ['--git-dir', path.join(b.out, 'repo/.git'), 'rev-parse', 'HEAD']);
    expect(stdout.trim()).toBe(c2);

    const bad = await makeContext({ Dockerfile: `FROM scratch\nADD --checksum=${c1.slice(0, 8)} ${srv.daemonUrl}/app.git#main /repo\n` });
    const r = await build([bad]);
    expect(r.r.code).toBe(1);
    expect(lastLine(r.r.stderr)).toBe(`ERROR: Dockerfile:2: ADD failed: expected checksum to match ${c1.slice(0, 8)}, got ${c2}`);
  });

  it('adds a private repository over HTTP with credentials from git', async () => {
    const creds = await tempDir('builder-git-creds-');
    const store = path.join(creds, 'store');
    await fs.writeFile(store, `http://${srv.user}:${srv.password}@127.0.0.1:${new URL(srv.httpUrl).port}\n`, { mode: 0o600 });
    const env = { GIT_CONFIG_COUNT: '1', GIT_CONFIG_KEY_0: 'credential.helper', GIT_CONFIG_VALUE_0: `store --file=${store}` };
    const ctx = await makeContext({ Dockerfile: `FROM scratch\nADD ${srv.httpUrl}/private.git /p\n` });
    const b = await build([ctx], env);
    expect(b.r.code, b.r.stderr).toBe(0);
    expect(await b.read('p/secret.txt')).toBe('private\n');
  });
});

describe('the library', () => {
  it('takes named contexts as an object, beside a git context', async () => {
    const { build: libBuild } = await import('../../src/index.js');
    const files = await makeContext({ 'lib.txt': 'from the library\n' });
    const dest = await tempDir('builder-contexts-lib-');
    await libBuild({
      context: `${srv.daemonUrl}/app.git#v1`,
      dockerfile: 'FROM scratch\nCOPY app/hello.txt /hello.txt\nCOPY --from=extra lib.txt /lib.txt\n',
      buildContexts: { extra: files },
      outputs: [`type=local,dest=${dest}`],
      root,
      progress: { start() {}, done() {} },
    });
    expect(await fs.readFile(path.join(dest, 'hello.txt'), 'utf8')).toBe('v1\n');
    expect(await fs.readFile(path.join(dest, 'lib.txt'), 'utf8')).toBe('from the library\n');
  });
});

describe('prune', () => {
  it('removes the git repositories kept for git sources (all, or those unused for --filter until)', async () => {
    const before = await fs.readdir(path.join(root, 'git'));
    expect(before.length).toBeGreaterThan(0);
    const du = await runCli(['du', '--root', root]);
    expect(du.code, du.stderr).toBe(0);
    expect(Number(/git sources\s+(\d+)/.exec(du.stdout)?.[1])).toBeGreaterThan(0);
    const recent = await runCli(['prune', '--root', root, '--filter', 'until=24h']);
    expect(recent.code, recent.stderr).toBe(0);
    expect((await fs.readdir(path.join(root, 'git'))).filter((n) => !n.endsWith('.lock')).length).toBeGreaterThan(0);
    const all = await runCli(['prune', '--root', root]);
    expect(all.code, all.stderr).toBe(0);
    expect(await fs.readdir(path.join(root, 'git'))).toEqual([]);
    expect((await runCli(['du', '--root', root])).stdout).toMatch(/git sources\s+0\s/);
  });
});
