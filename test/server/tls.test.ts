// `builder serve` over mutual TLS (buildkitd's --tlscacert/--tlscert/--tlskey), its version endpoint, and
// --max-concurrent-builds with its first-come, first-served queue.
import { describe, it, expect, inject, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import path from 'node:path';
import { serve, type Server } from '../../src/server/server.js';
import { remoteBuild, getJSON, fetchOutput, type ClientTLS } from '../../src/server/client.js';
import type { ServerInfo } from '../../src/server/protocol.js';
import { EventProgress, type ProgressEvent } from '../../src/progress/events.js';
import { makeCA, makeCert } from '../helpers/tls.js';
import { makeContext, runCli, tempDir } from '../helpers/cli.js';

const exec = promisify(execFile);
const registry = inject('registry');
const base = `${registry}/busybox:1.35`;
const SERVER_NAME = 'builder-node.test';

describe('builder serve over mutual TLS', () => {
  let server: Server;
  let addr: string;
  let good: ClientTLS;
  let noCert: ClientTLS;
  let otherCA: ClientTLS;

  beforeAll(async () => {
    const dir = await tempDir('builder-mtls-');
    const ca = await makeCA(path.join(dir, 'ca'));
    const rogue = await makeCA(path.join(dir, 'rogue'), 'rogue CA');
    const [srv, client, rogueClient] = await Promise.all([
      makeCert(ca, dir, 'server', { dnsNames: [SERVER_NAME] }),
      makeCert(ca, dir, 'client', { client: true }),
      makeCert(rogue, dir, 'rogue-client', { client: true }),
    ]);
    server = await serve({
      addr: 'tcp://127.0.0.1:0', root: await tempDir('builder-mtls-root-'),
      tlsCACert: ca.cert, tlsCert: srv.cert, tlsKey: srv.key, platforms: 'linux/amd64,linux/arm64', version: '9.9.9',
    });
    addr = `tcp://127.0.0.1:${server.address.kind === 'tcp' ? server.address.port : 0}`;
    const caPEM = await fs.readFile(ca.cert, 'utf8');
    good = { ca: caPEM, cert: await fs.readFile(client.cert, 'utf8'), key: await fs.readFile(client.key, 'utf8'), servername: SERVER_NAME };
    noCert = { ca: caPEM, servername: SERVER_NAME };
    otherCA = { ca: caPEM, cert: await fs.readFile(rogueClient.cert, 'utf8'), key: await fs.readFile(rogueClient.key, 'utf8'), servername: SERVER_NAME };
  });
  afterAll(() => server?.close());

  it('answers /v1/version to a client with a certificate its CA signed', async () => {
    const info = await getJSON<ServerInfo>(addr, good, '/v1/version');
    expect(info).toEqual({ version: '9.9.9', platforms: ['linux/amd64', 'linux/arm64'], emulated: expect.any(Array), maxConcurrentBuilds: 0, running: 0, queued: 0 });
    // What QEMU adds is reported apart, never a listed platform again.
    expect(info.emulated).not.toContain('linux/arm64');
    expect(await getJSON(addr, good, '/v1/health')).toEqual({ ok: true });
  });

  it('refuses a client without a certificate, or with one another CA signed', async () => {
    await expect(getJSON(addr, noCert, '/v1/version')).rejects.toThrow(/^cannot reach the builder at tcp:\/\/127\.0\.0\.1:\d+: \S+ \(TLS: the builder requires a client certificate: --driver-opt cert=FILE,key=FILE\)$/);
    await expect(getJSON(addr, otherCA, '/v1/version')).rejects.toThrow(/^cannot reach the builder at tcp:\/\/127\.0\.0\.1:\d+: \S+ \(TLS: the builder refused the client certificate/);
    // A client that does not trust the server's CA, or checks another name, refuses the server.
    await expect(getJSON(addr, { ...good, ca: undefined }, '/v1/version')).rejects.toThrow(/\(TLS: the builder's certificate is not trusted for this address/);
    await expect(getJSON(addr, { ...good, servername: 'other.test' }, '/v1/version')).rejects.toThrow(/ERR_TLS_CERT_ALTNAME_INVALID \(TLS: the builder's certificate is not trusted/);
    // Plain HTTP to a TLS port gets nothing either.
    await expect(getJSON(addr, undefined, '/v1/version')).rejects.toThrow(/^(cannot reach the builder|the builder at)/);
  });

  it('builds for a client with a good certificate', async () => {
    const ctx = await makeContext({ Dockerfile: `FROM ${base}\nRUN echo over tls > /out\n` });
    const dest = await tempDir('builder-mtls-out-');
    await remoteBuild({ addr, tls: good, context: ctx, outputs: [`type=local,dest=${dest}`], progress: new EventProgress(() => undefined) });
    expect(await fs.readFile(path.join(dest, 'out'), 'utf8')).toBe('over tls\n');
  });
});

describe('builder serve: an output the client fetches', () => {
  it('keeps a fetchOutput build\'s output for one GET /v1/outputs/ID: a directory as a tar, a file as it is', async () => {
    const addr = `unix://${path.join(await tempDir('builder-fetch-sock-'), 'f.sock')}`;
    const server = await serve({ addr, root: await tempDir('builder-fetch-root-') });
    try {
      const ctx = await makeContext({ Dockerfile: `FROM ${base}\nRUN mkdir -p /a/b && echo fetched > /a/b/c\n` });
      const clientOnly = path.join(await tempDir('builder-fetch-client-'), 'never-on-the-server');
      const result = await remoteBuild({ addr, context: ctx, fetchOutput: true, outputs: [`type=local,dest=${clientOnly}`], progress: new EventProgress(() => undefined) });
      expect(result.fetch).toMatch(/^[0-9a-f]{32}$/);
      // The server wrote to a temp dir of its own, not to the client's path.
      await expect(fs.stat(clientOnly)).rejects.toThrow();
      const dest = path.join(await tempDir('builder-fetch-out-'), 'x');
      await fetchOutput(addr, undefined, result.fetch!, dest);
      expect(await fs.readFile(path.join(dest, 'a/b/c'), 'utf8')).toBe('fetched\n');
      await expect(fetchOutput(addr, undefined, result.fetch!, dest)).rejects.toThrow(`the builder at ${addr} has no output ${result.fetch} (HTTP 404)`);

      const tar = await remoteBuild({ addr, context: ctx, fetchOutput: true, outputs: [`type=tar,dest=${clientOnly}.tar`], progress: new EventProgress(() => undefined) });
      const file = path.join(await tempDir('builder-fetch-out-'), 'sub', 'fs.tar');
      await fetchOutput(addr, undefined, tar.fetch!, file);
      const { stdout } = await exec('tar', ['-tf', file]);
      expect(stdout.split('\n')).toContain('a/b/c');
      expect(await fs.readdir(path.dirname(file))).toEqual(['fs.tar']);

      // The CLI with --builder ADDR: a relative dest is the client's, resolved in its working directory.
      const cwd = await tempDir('builder-fetch-cwd-');
      const cli = await runCli(['build', '--builder', addr, '--progress', 'plain', '-o', 'type=tar,dest=rel/fs.tar', ctx], { cwd });
      expect(cli.code, cli.stderr).toBe(0);
      expect(cli.stderr).toContain(`fetching the result into ${path.join(cwd, 'rel/fs.tar')}`);
      expect((await exec('tar', ['-tf', path.join(cwd, 'rel/fs.tar')])).stdout.split('\n')).toContain('a/b/c');

      const bad = remoteBuild({ addr, context: ctx, fetchOutput: true, outputs: ['type=image,name=x/y'], progress: new EventProgress(() => undefined) });
      await expect(bad).rejects.toThrow('fetchOutput takes exactly one output with a dest: type=local, tar, oci or docker');
    } finally {
      await server.close();
    }
  });
});

describe('builder serve refuses unsafe or incomplete settings', () => {
  it('wants all three TLS files, and a token (and --allow-insecure-tcp off loopback) for plain TCP', async () => {
    const root = await tempDir('builder-mtls-root-');
    await expect(serve({ addr: 'tcp://127.0.0.1:0', root, tlsCACert: '/x', tlsCert: '/y' })).rejects.toThrow('mutual TLS needs all of --tlscacert, --tlscert and --tlskey');
    await expect(serve({ addr: 'tcp://127.0.0.1:0', root })).rejects.toThrow(/needs mutual TLS \(--tlscacert, --tlscert, --tlskey\) or a token/);
    await expect(serve({ addr: 'tcp://0.0.0.0:0', root, token: 't' })).rejects.toThrow(/plain TCP on 0\.0\.0\.0 \(not loopback\).*--allow-insecure-tcp$/);
    await expect(serve({ addr: 'tcp://127.0.0.1:0', root, maxConcurrentBuilds: -1 })).rejects.toThrow(/invalid --max-concurrent-builds -1/);
  });
});

describe('builder serve --max-concurrent-builds', () => {
  let server: Server;
  const sockDir = tempDir('builder-queue-sock-');
  let addr: string;

  beforeAll(async () => {
    addr = `unix://${path.join(await sockDir, 'b.sock')}`;
    server = await serve({ addr, root: await tempDir('builder-queue-root-'), maxConcurrentBuilds: 1 });
  });
  afterAll(() => server?.close());

  it('queues the build past the limit, shows it waiting, and runs it when the slot frees', async () => {
    const marker = `${7000 + Math.floor(Math.random() * 1000)}`;
    const first = await makeContext({ Dockerfile: `FROM ${base}\nRUN echo started && sleep ${marker}\n` });
    const second = await makeContext({ Dockerfile: `FROM ${base}\nRUN echo second > /out\n` });
    const firstEvents: ProgressEvent[] = [];
    let started!: () => void;
    const firstStarted = new Promise<void>((r) => { started = r; });
    const abort = new AbortController();
    const firstBuild = remoteBuild({
      addr, context: first, signal: abort.signal,
      progress: new EventProgress((e) => { firstEvents.push(e); if (e.type === 'log' && e.data.includes('started')) started(); }),
    }).catch((e: Error) => e);
    await firstStarted;

    const secondEvents: ProgressEvent[] = [];
    const dest = await tempDir('builder-queue-out-');
    const secondBuild = remoteBuild({ addr, context: second, outputs: [`type=local,dest=${dest}`], progress: new EventProgress((e) => secondEvents.push(e)) });
    let info = await getJSON<ServerInfo>(addr, undefined, '/v1/version');
    for (let i = 0; i < 200 && info.queued === 0; i++) {
      await new Promise((r) => setTimeout(r, 50));
      info = await getJSON<ServerInfo>(addr, undefined, '/v1/version');
    }
    expect(info).toMatchObject({ maxConcurrentBuilds: 1, running: 1, queued: 1 });
    expect(secondEvents.find((e) => e.type === 'start' && e.name.includes('waiting for a build slot'))).toMatchObject({
      name: '[internal] waiting for a build slot (at most 1 at once; 0 others waiting)',
    });
    // Nothing of the second build ran yet: only its queue step.
    expect(secondEvents.filter((e) => e.type === 'start').length).toBe(1);

    abort.abort();
    expect(await firstBuild).toMatchObject({ code: 'CANCELED' });
    await secondBuild;
    expect(await fs.readFile(path.join(dest, 'out'), 'utf8')).toBe('second\n');
    expect(await getJSON<ServerInfo>(addr, undefined, '/v1/version')).toMatchObject({ running: 0, queued: 0 });
  });
});
