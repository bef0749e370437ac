// A real registry for tests: Debian's docker-registry (distribution 2.8) on a free 127.0.0.1 port, storing
// into a temp dir, and skopeo to push the busybox fixture into it.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { busyboxLayout, busyboxTag, ensureBusybox } from './fixtures.js';

const run = promisify(execFile);

export interface TestRegistry {
  /** `127.0.0.1:PORT` */
  host: string;
  port: number;
  /** The registry's filesystem storage (`docker/registry/v2/...` inside). */
  dataDir: string;
  stop(): Promise<void>;
}

/** A port nothing listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
  });
}

/** A TCP connection is accepted (a TLS registry may want a client certificate before it answers). */
function accepts(host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(Number(host.split(':')[1]), '127.0.0.1');
    s.once('connect', () => { s.destroy(); resolve(true); }).once('error', () => resolve(false));
  });
}

async function waitReady(host: string, child: ChildProcess, stderr: () => string, tls: boolean): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited with ${child.exitCode}: ${stderr()}`);
    try {
      if (tls) {
        if (await accepts(host)) return;
      } else {
        const res = await fetch(`http://${host}/v2/`);
        if (res.ok || res.status === 401) return;
      }
    } catch {
      // Not listening yet.
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`docker-registry on ${host} did not answer /v2/ within 30s: ${stderr()}`);
}

export interface RegistryOptions {
  /** Basic auth: an htpasswd file (bcrypt, made with Apache's htpasswd) with this user. */
  htpasswd?: { username: string; password: string };
  /** Bearer auth: a token server's realm and the PEM certificate whose key signs its tokens. */
  token?: { realm: string; service: string; issuer: string; certFile: string };
  /** HTTPS with this certificate and key (PEM files); `clientCAs`: require a client certificate they signed. */
  tls?: { cert: string; key: string; clientCAs?: string[] };
}

export async function startRegistry(opts: RegistryOptions = {}): Promise<TestRegistry> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'builder-registry-'));
  const auth: string[] = [];
  if (opts.htpasswd) {
    await run('htpasswd', ['-Bbc', path.join(dir, 'htpasswd'), opts.htpasswd.username, opts.htpasswd.password]);
    auth.push('auth:', '  htpasswd:', '    realm: test-registry', `    path: ${path.join(dir, 'htpasswd')}`);
  } else if (opts.token) {
    auth.push('auth:', '  token:', `    realm: ${opts.token.realm}`, `    service: ${opts.token.service}`,
      `    issuer: ${opts.token.issuer}`, `    rootcertbundle: ${opts.token.certFile}`);
  }
  // The free port may be taken between probing and listening; another port fixes that.
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const host = `127.0.0.1:${port}`;
    const config = path.join(dir, 'config.yml');
    await fs.writeFile(
      config,
      [
        'version: 0.1',
        'log:',
        '  level: error',
        '  accesslog:',
        '    disabled: true',
        'storage:',
        '  filesystem:',
        `    rootdirectory: ${path.join(dir, 'data')}`,
        '  delete:',
        '    enabled: true',
        'http:',
        `  addr: ${host}`,
        ...(opts.tls ? ['  tls:', `    certificate: ${opts.tls.cert}`, `    key: ${opts.tls.key}`,
          ...(opts.tls.clientCAs ? ['    clientcas:', ...opts.tls.clientCAs.map((c) => `      - ${c}`)] : [])] : []),
        ...auth,
        '',
      ].join('\n'),
    );
    const child = spawn('/usr/bin/docker-registry', ['serve', config], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += d));
    try {
      await waitReady(host, child, () => stderr, Boolean(opts.tls));
    } catch (err) {
      child.kill('SIGKILL');
      await exited(child);
      if (attempt < 3 && /address already in use/.test(stderr)) continue;
      await fs.rm(dir, { recursive: true, force: true });
      throw err;
    }
    return {
      host,
      port,
      dataDir: path.join(dir, 'data'),
      async stop() {
        child.kill('SIGTERM');
        await exited(child);
        await fs.rm(dir, { recursive: true, force: true });
      },
    };
  }
}

/** Copies an image from an OCI layout into the registry with skopeo (`--all` keeps every platform). */
export async function pushLayout(layoutRef: string, dest: string, extraArgs: string[] = ['--all']): Promise<void> {
  await run('skopeo', ['copy', '-q', ...extraArgs, '--dest-tls-verify=false', `oci:${layoutRef}`, `docker://${dest}`], { maxBuffer: 16 << 20 });
}

/** Pushes the busybox fixture (both platforms) as `HOST/busybox:1.35` (or `repo`), making the fixture if
 * needed; `skopeoArgs` e.g. `--dest-cert-dir DIR` for a registry that wants a client certificate. */
export async function pushBusybox(host: string, opts: { repo?: string; skopeoArgs?: string[] } = {}): Promise<void> {
  await ensureBusybox();
  await pushLayout(`${busyboxLayout}:${busyboxTag}`, `${host}/${opts.repo ?? 'busybox'}:${busyboxTag}`, ['--all', ...(opts.skopeoArgs ?? [])]);
}

/**
 * A TCP proxy server on 127.0.0.1 to `target`: `pair` wires each client connection to its upstream (what
 * passes, what is cut); closing either side closes the other, and `close` ends every connection.
 */
async function listenProxy(target: string, pair: (client: net.Socket, upstream: net.Socket) => void): Promise<{ host: string; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.split(':')[1]), '127.0.0.1');
    sockets.add(client);
    sockets.add(upstream);
    pair(client, upstream);
    for (const [a, b] of [[client, upstream], [upstream, client]]) {
      a.on('error', () => b.destroy());
      a.on('close', () => { b.destroy(); sockets.delete(a); });
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    host: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

export interface CuttingProxy {
  /** `127.0.0.1:PORT`, to use as the registry host. */
  host: string;
  /** Connections cut so far. */
  cuts(): number;
  /** How many more connections to cut (Infinity: all). */
  setRemaining(n: number): void;
  close(): Promise<void>;
}

/**
 * A TCP proxy to `target` that cuts a connection once the client has sent more than `afterBytes` on it
 * (in the middle of an upload), for the next `remaining` such connections.
 */
export async function cuttingProxy(target: string, afterBytes: number, remaining = 1): Promise<CuttingProxy> {
  let cuts = 0;
  const proxy = await listenProxy(target, (client, upstream) => {
    let seen = 0;
    client.on('data', (d) => {
      seen += d.length;
      if (remaining > 0 && seen > afterBytes) {
        remaining--;
        cuts++;
        client.destroy();
        upstream.destroy();
        return;
      }
      upstream.write(d);
    });
    upstream.on('data', (d) => client.write(d));
  });
  return { ...proxy, cuts: () => cuts, setRemaining: (n) => { remaining = n; } };
}

export interface BodyCuttingProxy {
  /** `127.0.0.1:PORT`, to use as the registry host. */
  host: string;
  /** Blob responses cut so far. */
  cuts(): number;
  /** The `Range` header of every blob GET seen (undefined for one without). */
  blobRanges(): (string | undefined)[];
  /** The status of every blob response seen (206 for a resumed one). */
  blobStatuses(): number[];
  /** How many more blob responses to cut (Infinity: all). */
  setRemaining(n: number): void;
  close(): Promise<void>;
}

/**
 * A TCP proxy to `target` for pulls that cuts the connection once `afterBytes` of the body of a response to
 * a blob GET have passed (in the middle of a layer), for the next `remaining` such responses; shorter
 * responses pass whole. `stripRange` drops Range headers, as a registry that cannot resume would ignore
 * them. Requests are read as header blocks (a pull's GETs and HEADs have no body); anything that is not
 * HTTP (a TLS hello) passes through untouched.
 */
export async function bodyCuttingProxy(target: string, afterBytes: number, remaining = 1, opts: { stripRange?: boolean } = {}): Promise<BodyCuttingProxy> {
  let cuts = 0;
  const ranges: (string | undefined)[] = [];
  const statuses: number[] = [];
  const proxy = await listenProxy(target, (client, upstream) => {
    let pending = Buffer.alloc(0);
    let passthrough = false;
    // The client sends a request only after the previous response ended: a request starts a response.
    let blobResponse = false;
    let responseBytes = 0;
    /** Where the response's body starts (its headers' end), once seen. */
    let bodyStart = Infinity;
    let headSeen = Buffer.alloc(0);
    let cut = false;
    client.on('data', (d: Buffer) => {
      if (passthrough) return void upstream.write(d);
      pending = Buffer.concat([pending, d]);
      if (!/^[A-Z]+ /.test(pending.subarray(0, 8).toString('latin1')) && (pending.length >= 8 || !/^[A-Z]*$/.test(pending.toString('latin1')))) {
        passthrough = true;
        upstream.write(pending);
        return;
      }
      for (let end = pending.indexOf('\r\n\r\n'); end >= 0; end = pending.indexOf('\r\n\r\n')) {
        let head = pending.subarray(0, end + 4).toString('latin1');
        pending = pending.subarray(end + 4);
        blobResponse = /^GET \S*\/blobs\/sha256:/.test(head);
        responseBytes = 0;
        bodyStart = Infinity;
        headSeen = Buffer.alloc(0);
        if (blobResponse) ranges.push(/\r\nrange: *([^\r]*)/i.exec(head)?.[1]);
        if (opts.stripRange) head = head.replace(/\r\nrange:[^\r]*/i, '');
        upstream.write(Buffer.from(head, 'latin1'));
      }
    });
    upstream.on('data', (d: Buffer) => {
      if (cut) return;
      if (blobResponse && bodyStart === Infinity) {
        headSeen = Buffer.concat([headSeen, d]);
        const end = headSeen.indexOf('\r\n\r\n');
        if (end >= 0) {
          bodyStart = end + 4;
          statuses.push(Number(/^HTTP\/1\.\d (\d{3})/.exec(headSeen.toString('latin1'))?.[1]));
        }
      }
      if (blobResponse && remaining > 0 && responseBytes + d.length > bodyStart + afterBytes) {
        remaining--;
        cuts++;
        cut = true;
        // The part up to the cut reaches the client, then the connection drops without an end.
        client.write(d.subarray(0, bodyStart + afterBytes - responseBytes), () => {
          client.destroy();
          upstream.destroy();
        });
        return;
      }
      responseBytes += d.length;
      client.write(d);
    });
  });
  return {
    ...proxy,
    cuts: () => cuts,
    blobRanges: () => [...ranges],
    blobStatuses: () => [...statuses],
    setRemaining: (n) => { remaining = n; },
  };
}
