// A local registry for the run: Debian's docker-registry on a free 127.0.0.1 port, storing into a temp dir.
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Starts a registry storing under `dir`; resolves to { host, stop() }. */
export async function startRegistry(dir) {
  fs.mkdirSync(dir, { recursive: true });
  for (let attempt = 0; attempt < 5; attempt++) {
    const host = `127.0.0.1:${await freePort()}`;
    const config = path.join(dir, 'config.yml');
    fs.writeFileSync(config, [
      'version: 0.1',
      'log:', '  level: error', '  accesslog:', '    disabled: true',
      'storage:', '  filesystem:', `    rootdirectory: ${path.join(dir, 'data')}`,
      'http:', `  addr: ${host}`, '',
    ].join('\n'));
    const child = spawn('docker-registry', ['serve', config], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => { stderr += d; });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    const stop = async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    };
    for (let i = 0; i < 100; i++) {
      if (child.exitCode !== null) break;
      try {
        if ((await fetch(`http://${host}/v2/`)).ok) return { host, stop };
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    await stop();
    if (!/address already in use/.test(stderr)) throw new Error(`docker-registry did not start: ${stderr.trim()}`);
  }
  throw new Error('docker-registry: no free port');
}

/** Copies an OCI layout's tag (all platforms) into the registry with skopeo. */
export async function pushLayout(layout, tag, dest) {
  await run('skopeo', ['copy', '--quiet', '--all', '--dest-tls-verify=false', `oci:${layout}:${tag}`, `docker://${dest}`], { maxBuffer: 16 << 20 });
}
