// `builder serve` with real clients (the CLI with --builder): concurrent builds, cancellation when a client
// goes away, token auth on TCP, and malformed requests that leave the server up.
import { describe, it, expect, inject, beforeAll, afterAll } from 'vitest';
import { spawn, execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { serve, type Server } from '../../src/server/server.js';
import { cliPath, makeContext, runCli, tempDir, lastLine } from '../helpers/cli.js';

const exec = promisify(execFile);
const registry = inject('registry');
const base = `${registry}/busybox:1.35`;

function request(opts: http.RequestOptions, body?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(opts, (res) => {
      let data = '';
      res.on('data', (d) => (data += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: data }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('builder serve on a unix socket', () => {
  let server: Server;
  let root: string;
  let sock: string;

  beforeAll(async () => {
    root = await tempDir('builder-serve-root-');
    sock = path.join(await tempDir('builder-serve-sock-'), 'builder.sock');
    server = await serve({ addr: `unix://${sock}`, root });
  });
  afterAll(() => server.close());

  it('runs two clients\' builds at once; each gets its own progress and result', async () => {
    const builds = [1, 2].map(async (n) => {
      const ctx = await makeContext({ Dockerfile: `FROM ${base}\nCOPY f /f\nRUN cat /f > /out-${n}\n`, f: `client ${n}\n` });
      const dest = await tempDir('builder-serve-out-');
      const res = await runCli(['build', '--builder', `unix://${sock}`, '--progress', 'plain', '--output', `type=local,dest=${dest}`, ctx]);
      return { n, res, dest };
    });
    for (const { n, res, dest } of await Promise.all(builds)) {
      expect(res.code, res.stderr).toBe(0);
      expect(res.stderr).toMatch(/#\d+ \[3\/3\] RUN cat \/f/);
      expect(await fs.readFile(path.join(dest, `out-${n}`), 'utf8')).toBe(`client ${n}\n`);
    }
  });

  it('takes the RUN container settings and --call as a local build does', async () => {
    const ctx = await makeContext({ Dockerfile: `# base the base\nFROM ${base} AS base\nRUN cat /etc/hosts > /hosts && cat /proc/self/limits > /limits && ls /sys/class/net > /nets\n` });
    const dest = await tempDir('builder-serve-out-');
    const res = await runCli(['build', '--builder', `unix://${sock}`, '--add-host', 'db:10.0.0.5', '--ulimit', 'nproc=100:200',
      '--network', 'none', '--shm-size', '1m', '--output', `type=local,dest=${dest}`, ctx]);
    expect(res.code, res.stderr).toBe(0);
    expect(await fs.readFile(path.join(dest, 'hosts'), 'utf8')).toContain('10.0.0.5\tdb\n');
    expect(await fs.readFile(path.join(dest, 'limits'), 'utf8')).toMatch(/^Max processes\s+100\s+200\s/m);
    expect((await fs.readFile(path.join(dest, 'nets'), 'utf8')).trim()).toBe('lo');
    const targets = await runCli(['build', '--builder', `unix://${sock}`, '--call', 'targets', ctx]);
    expect(targets.code, targets.stderr).toBe(0);
    expect(targets.stdout).toBe('TARGET         DESCRIPTION\nbase (default) the base\n');
    const bad = await runCli(['build', '--builder', `unix://${sock}`, '--ulimit', 'bogus=1', ctx]);
    expect(bad.code).toBe(1);
    expect(lastLine(bad.stderr)).toMatch(/^ERROR: invalid --ulimit "bogus=1": invalid ulimit type: bogus/);
  });

  it('takes the attestation flags as a local build does (the server applies the default provenance)', async () => {
    const ctx = await makeContext({ Dockerfile: `FROM ${base}\nRUN echo x > /x\n` });
    const dest = await tempDir('builder-serve-out-');
    const typesOf = async (layout: string) => {
      const blob = async (d: string) => JSON.parse(await fs.readFile(path.join(layout, 'blobs', d.replace(':', '/')), 'utf8'));
      const top = JSON.parse(await fs.readFile(path.join(layout, 'index.json'), 'utf8')).manifests[0];
      if (!top.mediaType.includes('index')) return [];
      const att = (await blob(top.digest)).manifests.find((m: any) => m.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest');
      return (await blob(att.digest)).layers.map((l: any) => l.annotations['in-toto.io/predicate-type']);
    };
    const res = await runCli(['build', '--builder', `unix://${sock}`, '--sbom=true', '--output', `type=oci,dest=${dest}/a,tar=false`, ctx]);
    expect(res.code, res.stderr).toBe(0);
    expect(await typesOf(`${dest}/a`)).toEqual(['https://spdx.dev/Document', 'https://slsa.dev/provenance/v0.2']);
    const off = await runCli(['build', '--builder', `unix://${sock}`, '--output', `type=oci,dest=${dest}/b,tar=false`, ctx], { env: { BUILDX_NO_DEFAULT_ATTESTATIONS: '1' } });
    expect(off.code, off.stderr).toBe(0);
    expect(await typesOf(`${dest}/b`)).toEqual([]);
  });

  it('a failing build comes back as the same one-line error, with the output tail', async () => {
    const ctx = await makeContext({ Dockerfile: `FROM ${base}\nRUN echo last words && exit 3\n` });
    const res = await runCli(['build', '--builder', `unix://${sock}`, ctx]);
    expect(res.code).toBe(1);
    expect(lastLine(res.stderr)).toBe('ERROR: Dockerfile:2: RUN failed: process "/bin/sh -c echo last words && exit 3" did not complete successfully: exit code: 3');
    expect(res.stderr).toContain('last words');
  });

  it('a client that goes away cancels its build: no container, process or mount is left', async () => {
    const marker = `${5000 + Math.floor(Math.random() * 1000)}`;
    const ctx = await makeContext({ Dockerfile: `FROM ${base}\nRUN echo started && sleep ${marker}\n` });
    const child = spawn(process.execPath, [cliPath, 'build', '--builder', `unix://${sock}`, '--progress', 'plain', ctx], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    await new Promise<void>((resolve, reject) => {
      child.stderr.on('data', (d) => { stderr += d; if (stderr.includes('started')) resolve(); });
      child.on('close', () => reject(new Error(stderr)));
    });
    child.kill('SIGKILL');
    const gone = async () => !(await exec('ps', ['-eo', 'args'])).stdout.includes(`sleep ${marker}`);
    for (let i = 0; i < 100 && !(await gone()); i++) await new Promise((r) => setTimeout(r, 100));
    expect(await gone()).toBe(true);
    for (let i = 0; i < 50 && (await fs.readFile('/proc/mounts', 'utf8')).includes(root); i++) await new Promise((r) => setTimeout(r, 100));
    expect(await fs.readFile('/proc/mounts', 'utf8')).not.toContain(root);
    expect((await request({ socketPath: sock, path: '/v1/health' })).body).toBe('{"ok":true}\n');
  });

  it('a malformed request gets a clear error and the server stays up', async () => {
    const noHeader = await request({ socketPath: sock, method: 'POST', path: '/v1/build' }, 'x');
    expect(noHeader.status).toBe(400);
    expect(JSON.parse(noHeader.body).error.message).toBe('missing x-builder-options header');
    const badJSON = await request({ socketPath: sock, method: 'POST', path: '/v1/build', headers: { 'x-builder-options': 'not-json!' } }, 'x');
    expect(badJSON.status).toBe(400);
    expect(JSON.parse(badJSON.body).error.message).toMatch(/not base64-encoded JSON/);
    const badTar = await request({
      socketPath: sock, method: 'POST', path: '/v1/build', headers: { 'x-builder-options': Buffer.from('{}').toString('base64') },
    }, 'this is not a tar archive'.repeat(40));
    expect(badTar.status).toBe(400);
    expect(JSON.parse(badTar.body).error.code).toBe('BAD_CONTEXT');
    const unknown = await request({ socketPath: sock, method: 'GET', path: '/v2/whatever' });
    expect(unknown.status).toBe(404);
    expect((await request({ socketPath: sock, path: '/v1/health' })).status).toBe(200);
  });
});

describe('builder serve on tcp', () => {
  it('an address in use is one line, exit 1 (no stack trace)', async () => {
    const root = await tempDir('builder-serve-root-');
    const server = await serve({ addr: 'tcp://127.0.0.1:0', root, token: 't' });
    try {
      const addr = `tcp://127.0.0.1:${server.address.kind === 'tcp' ? server.address.port : 0}`;
      const res = await runCli(['serve', '--root', root, '--addr', addr, '--token', 't']);
      expect(res.code).toBe(1);
      expect(res.stderr).toBe(`ERROR: cannot serve on ${addr}: address already in use\n`);
    } finally {
      await server.close();
    }
  });

  it('refuses to start without a token, and refuses requests without the right one', async () => {
    const root = await tempDir('builder-serve-root-');
    await expect(serve({ addr: 'tcp://127.0.0.1:0', root })).rejects.toThrow(/needs mutual TLS \(--tlscacert, --tlscert, --tlskey\) or a token/);
    const server = await serve({ addr: 'tcp://127.0.0.1:0', root, token: 's3cret-token' });
    try {
      const addr = server.address.kind === 'tcp' ? `tcp://127.0.0.1:${server.address.port}` : '';
      const ctx = await makeContext({ Dockerfile: `FROM ${base}\nRUN echo ok > /ok\n` });
      const denied = await runCli(['build', '--builder', addr, ctx], { env: { BUILDER_TOKEN: 'wrong' } });
      expect(denied.code).toBe(1);
      expect(lastLine(denied.stderr)).toBe('ERROR: missing or wrong token');
      const dest = await tempDir('builder-serve-out-');
      const ok = await runCli(['build', '--builder', addr, '--output', `type=local,dest=${dest}`, ctx], { env: { BUILDER_TOKEN: 's3cret-token' } });
      expect(ok.code, ok.stderr).toBe(0);
      expect(await fs.readFile(path.join(dest, 'ok'), 'utf8')).toBe('ok\n');
    } finally {
      await server.close();
    }
  });
});
