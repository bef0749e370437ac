// Real git servers for tests, on 127.0.0.1 only: `git daemon` (git://, read-only, every repository under
// its base path exported) and `git http-backend` behind a small Node HTTP server that asks for basic auth
// (smart HTTP, as a private repository on a forge). Repositories are made with the system git.
import { spawn, execFile } from 'node:child_process';
import { promisify } from 'node:util';
import http from 'node:http';
import net from 'node:net';
import fs from 'node:fs/promises';
import path from 'node:path';
import os from 'node:os';

const exec = promisify(execFile);

const GIT_ENV = {
  ...process.env,
  GIT_AUTHOR_NAME: 'test', GIT_AUTHOR_EMAIL: 'test@example.invalid', GIT_COMMITTER_NAME: 'test', GIT_COMMITTER_EMAIL: 'test@example.invalid',
  GIT_CONFIG_NOSYSTEM: '1', GIT_TERMINAL_PROMPT: '0',
};

/** Runs git in `cwd`; resolves with its trimmed stdout. */
export async function git(cwd: string, ...args: string[]): Promise<string> {
  const { stdout } = await exec('git', ['-c', 'protocol.file.allow=always', '-c', 'init.defaultBranch=main', ...args], { cwd, env: GIT_ENV, maxBuffer: 16 << 20 });
  return stdout.trim();
}

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

async function waitForPort(port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => { s.end(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`git daemon did not listen on ${port}`);
}

export interface GitServers {
  /** Where the bare repositories live: `<base>/NAME.git`. */
  base: string;
  /** `git://127.0.0.1:PORT` */
  daemonUrl: string;
  /** `http://127.0.0.1:PORT` (basic auth: `user` / `password` below, or `x-access-token` / `token`) */
  httpUrl: string;
  user: string;
  password: string;
  token: string;
  /** Makes bare repository NAME.git from a work tree built by `fill` (called in an initialized work dir). */
  repo(name: string, fill: (work: string) => Promise<void>): Promise<string>;
  close(): Promise<void>;
}

export async function startGitServers(): Promise<GitServers> {
  const base = await fs.mkdtemp(path.join(os.tmpdir(), 'builder-git-srv-'));
  const port = await freePort();
  const daemon = spawn('git', ['daemon', '--listen=127.0.0.1', `--port=${port}`, '--export-all', '--reuseaddr', `--base-path=${base}`, base], {
    stdio: ['ignore', 'ignore', 'pipe'], env: GIT_ENV,
  });
  let daemonErr = '';
  daemon.stderr!.on('data', (d) => { daemonErr += d; });
  await waitForPort(port).catch((e) => { throw new Error(`${(e as Error).message}: ${daemonErr}`); });

  const user = 'builder';
  const password = 's3cret';
  const token = 't0ken';
  const accepted = [`${user}:${password}`, `x-access-token:${token}`].map((c) => `basic ${Buffer.from(c).toString('base64')}`);
  const server = http.createServer((req, res) => {
    if (!accepted.includes((req.headers.authorization ?? '').replace(/^basic /i, 'basic '))) {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="git"' }).end();
      req.resume();
      return;
    }
    const u = new URL(req.url ?? '/', 'http://127.0.0.1');
    const cgi = spawn('git', ['http-backend'], {
      env: {
        ...GIT_ENV, GIT_PROJECT_ROOT: base, GIT_HTTP_EXPORT_ALL: '1', PATH_INFO: decodeURIComponent(u.pathname), QUERY_STRING: u.search.slice(1),
        REQUEST_METHOD: req.method ?? 'GET', CONTENT_TYPE: req.headers['content-type'] ?? '', REMOTE_USER: user, REMOTE_ADDR: '127.0.0.1',
        HTTP_CONTENT_ENCODING: req.headers['content-encoding'] ?? '', GIT_PROTOCOL: req.headers['git-protocol'] as string ?? '',
        ...(req.headers['content-length'] ? { CONTENT_LENGTH: req.headers['content-length'] } : {}),
      },
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    req.pipe(cgi.stdin);
    cgi.stdin.on('error', () => undefined);
    // CGI output: headers (with `Status:`), a blank line, the body.
    let head = Buffer.alloc(0);
    let started = false;
    cgi.stdout.on('data', (chunk: Buffer) => {
      if (started) { res.write(chunk); return; }
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n') >= 0 ? head.indexOf('\r\n\r\n') : head.indexOf('\n\n');
      if (end < 0) return;
      const sep = head[end] === 13 ? 4 : 2;
      const headers: Record<string, string> = {};
      let status = 200;
      for (const line of head.subarray(0, end).toString().split(/\r?\n/)) {
        const colon = line.indexOf(':');
        if (colon < 0) continue;
        const k = line.slice(0, colon).trim();
        const v = line.slice(colon + 1).trim();
        if (k.toLowerCase() === 'status') status = parseInt(v, 10);
        else headers[k] = v;
      }
      res.writeHead(status, headers);
      started = true;
      res.write(head.subarray(end + sep));
    });
    cgi.on('close', () => { if (!started) res.writeHead(500); res.end(); });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const httpPort = (server.address() as net.AddressInfo).port;

  return {
    base, daemonUrl: `git://127.0.0.1:${port}`, httpUrl: `http://127.0.0.1:${httpPort}`, user, password, token,
    async repo(name, fill) {
      const work = await fs.mkdtemp(path.join(os.tmpdir(), 'builder-git-work-'));
      await git(work, 'init', '-q');
      await fill(work);
      const bare = path.join(base, `${name}.git`);
      await git(base, 'init', '-q', '--bare', bare);
      await git(work, 'push', '-q', '--tags', bare, 'HEAD:refs/heads/main', ...(await git(work, 'branch', '--format=%(refname:short)')).split('\n').filter((b) => b && b !== 'main').map((b) => `refs/heads/${b}:refs/heads/${b}`));
      await git(bare, 'symbolic-ref', 'HEAD', 'refs/heads/main');
      return work;
    },
    async close() {
      daemon.kill();
      await new Promise<void>((r) => server.close(() => r()));
      await fs.rm(base, { recursive: true, force: true });
    },
  };
}
