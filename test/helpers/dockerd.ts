// A private Docker daemon for tests that compare with what Docker itself prints: Debian's dockerd (docker.io,
// installed by scripts/setup.sh) with its own containerd, everything under one temp dir — data root, exec
// root, unix sockets, pid files, its config file and trust key — and no networking (its own network
// namespace, no bridge, no iptables, no ip_forward or masquerading). It never touches a system daemon, /var/run/docker.sock, /etc/docker or a
// containerd at /run/containerd, so it runs beside any other dockerd on the machine. The client is Debian's
// /usr/bin/docker, pointed at the private socket through DOCKER_HOST.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import { openSync, closeSync, readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const dockerClient = '/usr/bin/docker';
const dockerdBin = '/usr/sbin/dockerd';
const containerdBin = '/usr/bin/containerd';

export interface TestDockerd {
  /** `unix:///tmp/builder-dockerd-XXXX/docker.sock`, for DOCKER_HOST. */
  host: string;
  /** The temp dir everything of this daemon lives in. */
  dir: string;
  /** Runs Debian's docker client against this daemon; rejects with its stderr on a non-zero exit. */
  docker(args: string[], opts?: { maxBuffer?: number }): Promise<{ stdout: string; stderr: string }>;
  /** Stops dockerd, then containerd, unmounts what they left and removes the temp dir. */
  stop(): Promise<void>;
}

function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
  });
}

/** Waits for a child's exit, SIGKILLing it after `ms`. */
async function stopChild(child: ChildProcess, ms: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([exited(child), new Promise<void>((r) => { timer = setTimeout(r, ms); })]);
  clearTimeout(timer);
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGKILL');
    await exited(child);
  }
}

function ping(socketPath: string, urlPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ socketPath, path: urlPath, timeout: 2000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200));
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => { req.destroy(); resolve(false); });
  });
}

async function fileExists(p: string): Promise<boolean> {
  return fs.stat(p).then(() => true, () => false);
}

async function waitFor(what: string, ok: () => Promise<boolean>, children: { child: ChildProcess; log: string }[]): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    for (const c of children) {
      if (c.child.exitCode !== null || c.child.signalCode !== null) {
        throw new Error(`${what}: ${path.basename(c.log, '.log')} exited (${c.child.exitCode ?? c.child.signalCode}): ${readFileSync(c.log, 'utf8').slice(-2000)}`);
      }
    }
    if (await ok()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what} did not come up within 60s: ${children.map((c) => readFileSync(c.log, 'utf8').slice(-1000)).join('\n')}`);
}

/** Mount points at or under `dir`, deepest first (what a killed daemon may leave). */
function mountsUnder(dir: string): string[] {
  const out: string[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const mp = line.split(' ')[4];
    if (!mp) continue;
    const decoded = mp.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (decoded === dir || decoded.startsWith(dir + '/')) out.push(decoded);
  }
  return out.sort((a, b) => b.length - a.length);
}

function run(file: string, args: string[], env: NodeJS.ProcessEnv, maxBuffer: number): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { env, maxBuffer }, (err, stdout, stderr) => {
      if (err) reject(Object.assign(new Error(`docker ${args.join(' ')}: ${stderr.trim() || err.message}`), { stdout, stderr }));
      else resolve({ stdout, stderr });
    });
  });
}

/**
 * `reach`: host loopback addresses (`127.0.0.1:PORT`, a test registry) the daemon can connect to from its
 * network namespace, at the same address: a listener there hands each connection over a unix socket (which
 * crosses namespaces) to the host side.
 */
export async function startDockerd(opts: { storageDriver?: 'overlay2' | 'vfs'; reach?: string[] } = {}): Promise<TestDockerd> {
  for (const bin of [dockerdBin, containerdBin, dockerClient]) {
    if (!(await fileExists(bin))) throw new Error(`${bin} is missing: run scripts/setup.sh (it installs Debian's docker.io)`);
  }
  // Short: unix socket paths are limited to 108 bytes.
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'builder-dockerd-'));
  const ctdSock = path.join(dir, 'containerd.sock');
  const sock = path.join(dir, 'docker.sock');
  await fs.writeFile(path.join(dir, 'containerd.toml'), [
    'version = 2',
    `root = "${dir}/containerd-root"`,
    `state = "${dir}/containerd-state"`,
    // Only what dockerd needs: no CRI (it would look for CNI), no debug or metrics listeners.
    'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
    '[grpc]',
    `  address = "${ctdSock}"`,
    '[ttrpc]',
    `  address = "${ctdSock}.ttrpc"`,
    '[debug]',
    '  address = ""',
    '[metrics]',
    '  address = ""',
    '',
  ].join('\n'));
  // The trust key dockerd 20.10 makes goes here, not to /etc/docker/key.json.
  await fs.writeFile(path.join(dir, 'daemon.json'), JSON.stringify({ 'deprecated-key-path': path.join(dir, 'key.json') }));

  const started: { child: ChildProcess; log: string }[] = [];
  const servers: net.Server[] = [];
  const spawnLogged = (bin: string, args: string[], name: string) => {
    const log = path.join(dir, `${name}.log`);
    const fd = openSync(log, 'a');
    try {
      const child = spawn(bin, args, { stdio: ['ignore', fd, fd] });
      started.push({ child, log });
      return child;
    } finally {
      closeSync(fd);
    }
  };
  const stopAll = async () => {
    for (const { child } of [...started].reverse()) await stopChild(child, 30_000);
    for (const server of servers) server.close();
    for (const mp of mountsUnder(dir)) {
      await new Promise<void>((r) => execFile('umount', ['-l', mp], () => r()));
    }
    await fs.rm(dir, { recursive: true, force: true });
  };

  try {
    // Its own containerd: dockerd 20.10 would otherwise use a system containerd at /run/containerd.
    spawnLogged(containerdBin, ['--config', path.join(dir, 'containerd.toml'), '--log-level', 'warn'], 'containerd');
    await waitFor('containerd', () => fileExists(ctdSock), started);
    // In a network namespace of its own: a dockerd started with --bridge=none deletes the host's docker0
    // (moby's removeDefaultBridgeInterface), which would cut a system daemon's containers off.
    spawnLogged('unshare', ['--net', '--', dockerdBin,
      '--config-file', path.join(dir, 'daemon.json'),
      '--data-root', path.join(dir, 'data'),
      '--exec-root', path.join(dir, 'exec'),
      '--pidfile', path.join(dir, 'docker.pid'),
      '-H', `unix://${sock}`,
      '--containerd', ctdSock,
      '--storage-driver', opts.storageDriver ?? 'overlay2',
      '--bridge=none', '--iptables=false', '--ip6tables=false', '--ip-forward=false', '--ip-masq=false',
      '--log-level', 'warn',
    ], 'dockerd');
    const dockerd = started[started.length - 1].child;
    const inNetns = (args: string[]) => new Promise<void>((resolve, reject) => execFile('nsenter', [`--net=/proc/${dockerd.pid}/ns/net`, ...args], (err, _o, stderr) => (err ? reject(new Error(`nsenter ${args.join(' ')}: ${stderr || err.message}`)) : resolve())));
    await inNetns(['ip', 'link', 'set', 'lo', 'up']);
    for (const address of opts.reach ?? []) {
      const [hostname, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))];
      const bridge = path.join(dir, `reach-${port}.sock`);
      const server = net.createServer((c) => {
        const up = net.connect(port, hostname);
        c.pipe(up).pipe(c);
        c.on('error', () => up.destroy());
        up.on('error', () => c.destroy());
      });
      await new Promise<void>((resolve) => server.listen(bridge, resolve));
      servers.push(server);
      const relay = `const net=require('net');net.createServer((c)=>{const u=net.connect(${JSON.stringify(bridge)});c.pipe(u).pipe(c);c.on('error',()=>u.destroy());u.on('error',()=>c.destroy())}).listen(${port},${JSON.stringify(hostname)},()=>console.log('ready'))`;
      spawnLogged('nsenter', [`--net=/proc/${dockerd.pid}/ns/net`, process.execPath, '-e', relay], `reach-${port}`);
      await waitFor(`relay to ${address}`, async () => (await fs.readFile(path.join(dir, `reach-${port}.log`), 'utf8').catch(() => '')).includes('ready'), started);
    }
    await waitFor('dockerd', () => ping(sock, '/_ping'), started);
  } catch (e) {
    await stopAll();
    throw e;
  }

  const host = `unix://${sock}`;
  // Only DOCKER_HOST chooses the daemon: no context, config or TLS settings of the machine's user. The client
  // prints times in its local zone; ours prints UTC (a known difference), so the client runs in UTC.
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: dir, TZ: 'UTC', DOCKER_HOST: host, DOCKER_CONFIG: path.join(dir, 'client') };
  return {
    host,
    dir,
    docker: (args, o = {}) => run(dockerClient, args, env, o.maxBuffer ?? 16 << 20),
    stop: stopAll,
  };
}
