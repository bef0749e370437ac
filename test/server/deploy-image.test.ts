// builder's own image: deploy/Dockerfile built by builder itself (its two base stages, `node` and `runtime`,
// replaced by named contexts with the Node.js on Debian image that scripts/make-node-image.sh makes from
// the npm and Debian package registries; its `npm ci` fetches from the npm registry), then run with
// `builder run --privileged` on the host's network: `builder serve` over mutual TLS in the container
// answers /v1/version, and builds a Dockerfile through an instance, RUN step and all, in runc containers of
// its own (nested in the outer one) with its state on a volume.
import { describe, it, expect, inject, beforeAll, afterAll } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { makeCA, makeCert } from '../helpers/tls.js';
import { cliPath, makeContext, projectRoot, runCli, tempDir } from '../helpers/cli.js';
import { ensureNodeImage, nodeTag } from '../helpers/fixtures.js';
import { getJSON, type ClientTLS } from '../../src/server/client.js';
import type { ServerInfo } from '../../src/server/protocol.js';

const registry = inject('registry');
const SERVER_NAME = 'builder-image.builder-test';
const IMAGE = 'builder-image:test';
const TLS_DIR = '/etc/builder/tls'; // where deploy/Dockerfile's CMD and deploy/k8s/builder.yaml put the files

describe('builder image (deploy/Dockerfile)', () => {
  let root: string;
  let runDir: string | undefined;
  let layout: string;
  let server: ChildProcess | undefined;
  let serverLog = '';

  beforeAll(async () => {
    // setup.sh makes it; made here when missing (mmdebstrap: a few minutes the first time).
    layout = await ensureNodeImage();
    root = await tempDir('builder-image-root-');
  }, 900_000);
  afterAll(async () => {
    const running = () => server !== undefined && server.exitCode === null && server.signalCode === null;
    if (running()) {
      const exited = new Promise((resolve) => server!.once('exit', resolve));
      server!.kill('SIGTERM');
      await exited;
    }
    // About a gigabyte of snapshots (Debian, Node.js, node_modules): nothing is mounted once the container
    // has exited.
    if (!running()) {
      await Promise.all([root, runDir].map((d) => d && fs.rm(d, { recursive: true, force: true })));
    }
  });

  it('builds with builder from the Node.js base image', async () => {
    const base = `oci-layout://${layout}:${nodeTag}`;
    const res = await runCli(['build', '--root', root, '-f', 'deploy/Dockerfile', '--build-context', `node=${base}`, '--build-context', `runtime=${base}`,
      '-t', IMAGE, '--progress', 'plain', '.'], { cwd: projectRoot });
    expect(res.code, res.stderr).toBe(0);
    // The two base stages were replaced, not run (their apt-get needs a Debian mirror).
    expect(res.stderr).not.toContain('apt-get');
    const inspect = await runCli(['inspect', '--root', root, '--type', 'image', IMAGE]);
    expect(inspect.code, inspect.stderr).toBe(0);
    const [img] = JSON.parse(inspect.stdout) as { Config: { Entrypoint: string[]; Cmd: string[]; Env: string[]; Volumes: Record<string, object>; ExposedPorts: Record<string, object> } }[];
    expect(img.Config.Entrypoint).toEqual(['builder']);
    expect(img.Config.Cmd).toEqual(['serve', '--addr', 'tcp://0.0.0.0:1234', '--tlscacert', `${TLS_DIR}/ca.crt`, '--tlscert', `${TLS_DIR}/tls.crt`, '--tlskey', `${TLS_DIR}/tls.key`]);
    expect(img.Config.Env).toContain('BUILDER_ROOT=/var/lib/builder');
    expect(Object.keys(img.Config.Volumes)).toEqual(['/var/lib/builder']);
    expect(Object.keys(img.Config.ExposedPorts)).toEqual(['1234/tcp']);
  }, 900_000);

  it('runs builder serve over mutual TLS, which answers /v1/version and builds through an instance', async () => {
    const dir = runDir = await tempDir('builder-image-run-');
    const ca = await makeCA(path.join(dir, 'ca'));
    const [srv, client] = await Promise.all([makeCert(ca, dir, 'server', { dnsNames: [SERVER_NAME] }), makeCert(ca, dir, 'client', { client: true })]);
    // The files as a Kubernetes TLS secret mounts them.
    const tls = path.join(dir, 'tls');
    await fs.mkdir(tls);
    await Promise.all([fs.copyFile(ca.cert, path.join(tls, 'ca.crt')), fs.copyFile(srv.cert, path.join(tls, 'tls.crt')), fs.copyFile(srv.key, path.join(tls, 'tls.key'))]);
    const state = path.join(dir, 'state');
    await fs.mkdir(state);

    // The image's ENTRYPOINT (builder) and CMD's TLS files; only the address differs: a free port on
    // loopback, since the container shares the host's network.
    server = spawn(process.execPath, [cliPath, 'run', '--root', root, '--rm', '--privileged', '--network', 'host',
      '--mount', `type=bind,source=${tls},target=${TLS_DIR},readonly`, '--mount', `type=bind,source=${state},target=/var/lib/builder`,
      IMAGE, 'serve', '--addr', 'tcp://127.0.0.1:0', '--tlscacert', `${TLS_DIR}/ca.crt`, '--tlscert', `${TLS_DIR}/tls.crt`, '--tlskey', `${TLS_DIR}/tls.key`],
    { stdio: ['ignore', 'pipe', 'pipe'] });
    const addr = await new Promise<string>((resolve, reject) => {
      const seen = (d: Buffer) => {
        serverLog += d;
        const m = /builder serving on (tcp:\/\/127\.0\.0\.1:\d+)/.exec(serverLog);
        if (m) resolve(m[1]);
      };
      server!.stdout!.on('data', seen);
      server!.stderr!.on('data', seen);
      server!.once('exit', (code) => reject(new Error(`builder run exited (${code}): ${serverLog}`)));
    });

    const good: ClientTLS = {
      ca: await fs.readFile(ca.cert, 'utf8'), cert: await fs.readFile(client.cert, 'utf8'), key: await fs.readFile(client.key, 'utf8'), servername: SERVER_NAME,
    };
    const pkg = JSON.parse(await fs.readFile(path.join(projectRoot, 'package.json'), 'utf8')) as { version: string };
    const info = await getJSON<ServerInfo>(addr, good, '/v1/version');
    expect(info.version).toBe(pkg.version);
    expect(info.platforms).toEqual(['linux/amd64']);
    expect(await getJSON(addr, good, '/v1/health')).toEqual({ ok: true });
    await expect(getJSON(addr, { ca: good.ca, servername: SERVER_NAME }, '/v1/version')).rejects.toThrow(/requires a client certificate/);

    // A build through it: the RUN step runs in a runc container the containerized builder starts.
    const env = { XDG_CONFIG_HOME: path.join(dir, 'config'), BUILDER_CONFIG: '' };
    const create = await runCli(['create', '--name', 'image', '--driver-opt', `cacert=${ca.cert},cert=${client.cert},key=${client.key},servername=${SERVER_NAME}`, addr], { env });
    expect(create.code, create.stderr).toBe(0);
    const mark = Math.random().toString(36).slice(2);
    const ctx = await makeContext({ Dockerfile: `FROM ${registry}/busybox:1.35 AS run\nRUN echo "${mark} $(id -u) $$" > /out\nFROM scratch\nCOPY --from=run /out /\n` });
    const dest = path.join(dir, 'out');
    const res = await runCli(['build', '--builder', 'image', '-o', `type=local,dest=${dest}`, '--progress', 'plain', ctx], { env });
    expect(res.code, res.stderr + serverLog).toBe(0);
    expect((await fs.readFile(path.join(dest, 'out'), 'utf8')).trim()).toBe(`${mark} 0 1`); // root, as pid 1 of its own pid namespace
    // The work is in the container's state directory (the volume), not in the client's.
    const layers = await fs.readdir(path.join(state, 'content', 'blobs', 'sha256'));
    expect(layers.length).toBeGreaterThan(0);
  }, 600_000);
});
