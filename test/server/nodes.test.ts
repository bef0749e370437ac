// A builder instance of three `builder serve` nodes on 127.0.0.1 over mutual TLS, each with its own state
// dir: one lists linux/amd64, one linux/arm64, a third linux/amd64. Platform fan-out with one pushed index,
// failover when an amd64 node dies mid-build, refusal of a client without a certificate, and `builder ls`.
import { describe, it, expect, inject, beforeAll, afterAll } from 'vitest';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs/promises';
import path from 'node:path';
import { makeCA, makeCert } from '../helpers/tls.js';
import { cliPath, makeContext, runCli, tempDir, lastLine } from '../helpers/cli.js';

const exec = promisify(execFile);
const registry = inject('registry');
const base = `${registry}/busybox:1.35`;
const SERVER_NAME = 'node.builder-test';

interface Node { name: string; platform: string; root: string; addr: string; child: ChildProcess }

function startNode(name: string, platform: string, root: string, tls: string[]): Promise<Node> {
  const child = spawn(process.execPath, [cliPath, 'serve', '--root', root, '--addr', 'tcp://127.0.0.1:0', '--platform', platform, ...tls], { stdio: ['ignore', 'ignore', 'pipe'] });
  return new Promise((resolve, reject) => {
    let err = '';
    child.stderr!.on('data', (d) => {
      err += d;
      const m = /builder serving on (tcp:\/\/127\.0\.0\.1:\d+)/.exec(err);
      if (m) resolve({ name, platform, root, addr: m[1], child });
    });
    child.on('exit', (code) => reject(new Error(`node ${name} exited (${code}): ${err}`)));
  });
}

async function hasBlob(root: string, digest: string): Promise<boolean> {
  return fs.stat(path.join(root, 'content', 'blobs', 'sha256', digest.replace('sha256:', ''))).then(() => true, () => false);
}

async function getJSON(url: string, accept: string): Promise<{ digest: string; json: { manifests: { digest: string; platform: { architecture: string }; annotations?: Record<string, string> }[] } }> {
  const res = await fetch(url, { headers: { accept } });
  expect(res.status).toBe(200);
  return { digest: res.headers.get('docker-content-digest')!, json: await res.json() as never };
}

describe('a builder instance of three nodes', () => {
  const nodes: Node[] = [];
  const env: Record<string, string> = {};
  let files: { ca: string; cert: string; key: string };

  beforeAll(async () => {
    const dir = await tempDir('builder-nodes-');
    env.XDG_CONFIG_HOME = path.join(dir, 'config');
    env.BUILDER_CONFIG = '';
    const ca = await makeCA(path.join(dir, 'ca'));
    const [srv, client] = await Promise.all([makeCert(ca, dir, 'server', { dnsNames: [SERVER_NAME] }), makeCert(ca, dir, 'client', { client: true })]);
    files = { ca: ca.cert, cert: client.cert, key: client.key };
    const tls = ['--tlscacert', ca.cert, '--tlscert', srv.cert, '--tlskey', srv.key];
    const specs = [['amd1', 'linux/amd64'], ['arm1', 'linux/arm64'], ['amd2', 'linux/amd64']];
    nodes.push(...await Promise.all(specs.map(async ([name, platform]) => startNode(name, platform, await tempDir(`builder-node-${name}-`), tls))));
    const opt = `cacert=${ca.cert},cert=${client.cert},key=${client.key},servername=${SERVER_NAME}`;
    for (const [i, n] of nodes.entries()) {
      const res = await runCli(['create', '--name', 'fleet', ...(i ? ['--append'] : ['--use']), '--node', n.name, '--driver-opt', opt, n.addr], { env });
      expect(res.code, res.stderr).toBe(0);
      expect(res.stdout).toBe('fleet\n');
    }
  });
  afterAll(async () => {
    for (const n of nodes) n.child.kill('SIGTERM');
  });

  it('builder ls shows the three nodes running with their platforms; inspect shows one', async () => {
    const ls = await runCli(['ls'], { env });
    expect(ls.code, ls.stderr).toBe(0);
    const lines = ls.stdout.split('\n');
    expect(lines[0]).toMatch(/^NAME\/NODE\s+DRIVER\/ENDPOINT\s+STATUS\s+BUILDER\s+PLATFORMS$/);
    expect(lines).toContainEqual(expect.stringMatching(/^fleet\*\s+remote$/));
    for (const n of nodes) {
      expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^ \\\\_ ${n.name}\\s+ \\\\_ ${n.addr.replace(/\./g, '\\.')}\\s+running\\s+\\S+\\s+${n.platform}(, \\(linux/[^)]+\\))*$`)));
    }
    const inspect = await runCli(['builder', 'inspect', '--bootstrap', 'fleet'], { env });
    expect(inspect.code, inspect.stderr).toBe(0);
    expect(inspect.stdout).toContain(`Name:                  arm1\nEndpoint:              ${nodes[1].addr}\n`);
    expect(inspect.stdout).toMatch(/Status:\s+running\n/);
  });

  it('a two-platform --push build sends each platform to a node listing it and pushes one index', async () => {
    const mark = Math.random().toString(36).slice(2);
    const ctx = await makeContext({ Dockerfile: `FROM ${base}\nARG TARGETARCH\nRUN echo "${mark} $TARGETARCH $(uname -m)" > /arch\n` });
    const ref = `${registry}/fleet/app:${mark}`;
    const res = await runCli(['build', '--builder', 'fleet', '--platform', 'linux/amd64,linux/arm64', '--push', '-t', ref, '--progress', 'plain', ctx], { env });
    expect(res.code, res.stderr).toBe(0);
    // Progress lines name the node and the platform.
    expect(res.stderr).toMatch(/\[arm1 linux\/arm64\] \[2\/2\] RUN echo/);
    const amd = /\[(amd[12]) linux\/amd64\] \[2\/2\] RUN echo/.exec(res.stderr)?.[1];
    expect(amd).toBeDefined();
    expect(res.stderr).not.toMatch(/\[\w+ linux\/amd64,linux\/arm64\]/);

    const index = await getJSON(`http://${registry}/v2/fleet/app/manifests/${mark}`, 'application/vnd.docker.distribution.manifest.list.v2+json,application/vnd.oci.image.index.v1+json');
    // The images, then each one's provenance (buildx's default on a push), as BuildKit orders them.
    expect(index.json.manifests.map((m) => m.platform.architecture)).toEqual(['amd64', 'arm64', 'unknown', 'unknown']);
    expect(index.json.manifests.slice(2).map((m) => m.annotations?.['vnd.docker.reference.digest'])).toEqual(index.json.manifests.slice(0, 2).map((m) => m.digest));
    const [amdManifest, armManifest] = index.json.manifests.map((m) => m.digest);
    const arm = nodes.find((n) => n.name === 'arm1')!;
    const amdNode = nodes.find((n) => n.name === amd)!;
    const otherAmd = nodes.find((n) => n.name !== amd && n.name !== 'arm1')!;
    // Each platform's work stayed in the state of the node that built it.
    expect(await hasBlob(arm.root, armManifest)).toBe(true);
    expect(await hasBlob(arm.root, amdManifest)).toBe(false);
    expect(await hasBlob(amdNode.root, amdManifest)).toBe(true);
    expect(await hasBlob(amdNode.root, armManifest)).toBe(false);
    expect(await hasBlob(otherAmd.root, amdManifest)).toBe(false);
    expect(await hasBlob(otherAmd.root, armManifest)).toBe(false);
    // No node tagged anything: the tag is the client's index.
    expect(index.digest).toMatch(/^sha256:/);
    expect(await hasBlob(amdNode.root, index.digest)).toBe(false);
  });

  it('a two-platform build to a local directory: each node builds its platform, the client fetches both', async () => {
    const mark = Math.random().toString(36).slice(2);
    const ctx = await makeContext({ Dockerfile: `FROM ${base}\nARG TARGETARCH\nRUN echo "${mark} $TARGETARCH" > /arch\n` });
    const dest = path.join(await tempDir('builder-nodes-local-'), 'out');
    const res = await runCli(['build', '--builder', 'fleet', '--platform', 'linux/amd64,linux/arm64', '-o', `type=local,dest=${dest}`, '--progress', 'plain', ctx], { env });
    expect(res.code, res.stderr).toBe(0);
    expect(await fs.readFile(path.join(dest, 'linux_amd64/arch'), 'utf8')).toBe(`${mark} amd64\n`);
    expect(await fs.readFile(path.join(dest, 'linux_arm64/arch'), 'utf8')).toBe(`${mark} arm64\n`);
    expect(res.stderr).toMatch(new RegExp(`\\[arm1 linux/arm64\\] fetching the result into ${dest.replace(/[.]/g, '\\.')}/linux_arm64`));
    // An OCI layout: each node's part joined into one index by the client.
    const oci = await runCli(['build', '--builder', 'fleet', '--platform', 'linux/amd64,linux/arm64', '-t', 'fleet/app:oci', '-o', `type=oci,dest=${dest}.tar`, '--progress', 'plain', ctx], { env });
    expect(oci.code, oci.stderr).toBe(0);
    expect(oci.stderr).toContain(`joining 2 nodes' parts into ${dest}.tar`);
    const layout = `${dest}-layout`;
    await fs.mkdir(layout);
    await exec('tar', ['-xf', `${dest}.tar`, '-C', layout]);
    const top = JSON.parse(await fs.readFile(path.join(layout, 'index.json'), 'utf8'));
    expect(top.manifests).toHaveLength(1);
    expect(top.manifests[0].annotations['io.containerd.image.name']).toBe('docker.io/fleet/app:oci');
    const nested = JSON.parse(await fs.readFile(path.join(layout, 'blobs', top.manifests[0].digest.replace(':', '/')), 'utf8'));
    expect(nested.manifests.map((m: { platform: { architecture: string } }) => m.platform.architecture)).toEqual(['amd64', 'arm64', 'unknown', 'unknown']);
    // skopeo reads each platform's image, with its own file.
    for (const arch of ['amd64', 'arm64']) {
      const { stdout } = await exec('skopeo', ['--override-arch', arch, 'inspect', '--config', `oci:${layout}`]);
      expect(JSON.parse(stdout).architecture).toBe(arch);
    }
    // Other outputs of a spread build are refused with one line.
    const tarOut = await runCli(['build', '--builder', 'fleet', '--platform', 'linux/amd64,linux/arm64', '-o', `type=tar,dest=${dest}.fs.tar`, ctx], { env });
    expect(tarOut.code).toBe(1);
    expect(lastLine(tarOut.stderr)).toBe('ERROR: a build spread over several nodes can only push (--push or type=image,push=true), or write one type=local or type=oci output, yet; other outputs need all its platforms on one node');
  });

  it('a platform no node lists goes to a node that emulates it, with a line saying so', async () => {
    const ls = await runCli(['builder', 'inspect', 'fleet'], { env });
    const emulating = [...ls.stdout.matchAll(/^Name:\s+(\S+)\n(?:.*\n)*?Emulated platforms:\s+(.*)$/gm)].filter((m) => m[2].split(', ').includes('linux/riscv64'));
    expect(emulating.length, ls.stdout).toBeGreaterThan(0);
    const ctx = await makeContext({ Dockerfile: 'FROM scratch\nCOPY f /f\n', f: 'x\n' });
    const dest = await tempDir('builder-nodes-emu-');
    const res = await runCli(['build', '--builder', 'fleet', '--platform', 'linux/riscv64', '-o', `type=local,dest=${dest}`, '--progress', 'plain', ctx], { env });
    expect(res.code, res.stderr).toBe(0);
    const node = /builder fleet: no node lists linux\/riscv64; building it on (\w+) under emulation/.exec(res.stderr)?.[1];
    expect(node).toBeDefined();
    expect(res.stderr).toContain(`[${node} linux/riscv64] [1/1] COPY f /f`);
    expect(await fs.readFile(path.join(dest, 'f'), 'utf8')).toBe('x\n');
  });

  it('a build one node does whole writes its file output where the client asked', async () => {
    const ctx = await makeContext({ Dockerfile: `FROM ${base}\nRUN echo whole > /w\n` });
    const dest = path.join(await tempDir('builder-nodes-oci-'), 'img.tar');
    const res = await runCli(['build', '--builder', 'fleet', '--platform', 'linux/arm64', '-o', `type=oci,dest=${dest}`, ctx], { env });
    expect(res.code, res.stderr).toBe(0);
    const { stdout } = await exec('tar', ['-tf', dest]);
    expect(stdout.split('\n')).toEqual(expect.arrayContaining(['index.json', 'oci-layout']));
    expect(res.stderr).toContain(`[arm1 linux/arm64] fetching the result into ${dest}`);
  });

  it('a client without a certificate signed by the CA is refused', async () => {
    const res = await runCli(['create', '--name', 'nocert', '--driver-opt', `cacert=${files.ca},servername=${SERVER_NAME}`, nodes[0].addr], { env });
    expect(res.code, res.stderr).toBe(0);
    const ctx = await makeContext({ Dockerfile: `FROM ${base}\n` });
    const build = await runCli(['build', '--builder', 'nocert', ctx], { env });
    expect(build.code).toBe(1);
    expect(lastLine(build.stderr)).toMatch(/^ERROR: builder nocert: node nocert0 \(tcp:\/\/127\.0\.0\.1:\d+\) does not answer: cannot reach the builder at tcp:\/\/127\.0\.0\.1:\d+: .*\(TLS: the builder requires a client certificate: --driver-opt cert=FILE,key=FILE\)$/);
    const ls = await runCli(['ls'], { env });
    expect(ls.stdout).toMatch(/^ \\_ nocert0\s+ \\_ tcp:\/\/127\.0\.0\.1:\d+\s+inactive\s*$/m);
    expect((await runCli(['builder', 'rm', 'nocert'], { env })).code).toBe(0);
  });

  it('an amd64 node stopped mid-build: the build finishes on the other amd64 node', async () => {
    const mark = Math.random().toString(36).slice(2);
    const ctx = await makeContext({ Dockerfile: `FROM ${base}\nRUN echo started-${mark} && sleep 6 && echo ${mark} > /done\n` });
    const dest = await tempDir('builder-nodes-out-');
    const child = spawn(process.execPath, [cliPath, 'build', '--builder', 'fleet', '--platform', 'linux/amd64', '--progress', 'plain', '-o', `type=local,dest=${dest}`, ctx], {
      env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    let killed: string | undefined;
    const done = new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? -1)));
    child.stderr!.on('data', (d) => {
      stderr += d;
      const m = new RegExp(`\\[(amd[12]) linux/amd64\\] .*started-${mark}`).exec(stderr);
      if (m && !killed) {
        killed = m[1];
        nodes.find((n) => n.name === killed)!.child.kill('SIGKILL');
      }
    });
    expect(await done, stderr).toBe(0);
    expect(killed).toBeDefined();
    const other = killed === 'amd1' ? 'amd2' : 'amd1';
    expect(stderr).toContain(`builder fleet: node ${killed} failed (`);
    expect(stderr).toMatch(new RegExp(`\\[${other} linux/amd64\\] .*started-${mark}`));
    expect(await fs.readFile(path.join(dest, 'done'), 'utf8')).toBe(`${mark}\n`);
    // The next build skips the dead node with one line naming it.
    const again = await runCli(['build', '--builder', 'fleet', '--platform', 'linux/amd64', ctx], { env });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(new RegExp(`builder fleet: skipping node ${killed}: cannot reach the builder at tcp://127\\.0\\.0\\.1:\\d+: ECONNREFUSED`));
  });
});
