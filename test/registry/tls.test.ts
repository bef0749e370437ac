// Registries over real TLS, through the CLI bin as users run it: Debian's docker-registry serving HTTPS with a
// certificate from a CA the test makes, under hostnames that resolve to 127.0.0.1 through /etc/hosts. Trust
// comes from /etc/docker/certs.d/HOST:PORT/, NODE_EXTRA_CA_CERTS or the builder config; an untrusted or
// wrong-host certificate fails on one line naming the host and the fix.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { runCli, makeContext, tempDir, lastLine, projectRoot, type CliResult } from '../helpers/cli.js';
import { freePort, pushBusybox, startRegistry, type TestRegistry } from '../helpers/registry.js';
import { addHostsEntries, CERTS_D, certsDir, makeCA, makeCert, uniqueHostname, type CA, type Cert } from '../helpers/tls.js';
import { RegistryClient } from '../../src/registry/client.js';
import { parseReference } from '../../src/registry/reference.js';
import { RegistryCertificateError } from '../../src/registry/errors.js';

const exec = promisify(execFile);

/** In the server certificate and trusted through certs.d. */
const trusted = uniqueHostname('reg');
/** In the server certificate, trusted nowhere. */
const untrusted = uniqueHostname('untrusted');
/** Not in the server certificate, its CA trusted through certs.d. */
const wrongName = uniqueHostname('wrong');

let dir: string;
let ca: CA;
let server: Cert;
let client: Cert;
let open: TestRegistry;
let authed: TestRegistry;
let mtls: TestRegistry;
let plain: TestRegistry;
const cleanups: (() => Promise<void>)[] = [];
let env: Record<string, string>;

const at = (name: string, reg: TestRegistry) => `${name}:${reg.port}`;

function cli(args: string[], extraEnv: Record<string, string> = {}): Promise<CliResult> {
  return runCli(args, { env: { ...env, ...extraEnv } });
}

async function build(dockerfile: string, args: string[], extraEnv: Record<string, string> = {}): Promise<CliResult> {
  const ctx = await makeContext({ Dockerfile: dockerfile });
  cleanups.push(() => fs.rm(ctx, { recursive: true, force: true }));
  const root = await tempDir('builder-tls-root-');
  cleanups.push(() => fs.rm(root, { recursive: true, force: true }));
  return cli(['build', '--root', root, '--progress', 'plain', ...args, ctx], extraEnv);
}

async function writeConfig(config: object): Promise<string> {
  const file = path.join(dir, `config-${Math.random().toString(36).slice(2)}.json`);
  await fs.writeFile(file, JSON.stringify(config));
  return file;
}

function noStack(r: CliResult): void {
  expect(r.stderr).not.toMatch(/^\s+at /m);
  expect(r.stderr).not.toContain('internal error');
}

beforeAll(async () => {
  dir = await tempDir('builder-tls-');
  cleanups.push(() => fs.rm(dir, { recursive: true, force: true }));
  ca = await makeCA(dir);
  [server, client] = await Promise.all([
    makeCert(ca, dir, trusted, { dnsNames: [trusted, untrusted] }),
    makeCert(ca, dir, 'builder-test-client', { client: true }),
  ]);
  cleanups.push(await addHostsEntries([trusted, untrusted, wrongName]));
  [open, authed, mtls, plain] = await Promise.all([
    startRegistry({ tls: server }),
    startRegistry({ tls: server, htpasswd: { username: 'alice', password: 's3cret' } }),
    startRegistry({ tls: { ...server, clientCAs: [ca.cert] } }),
    startRegistry(),
  ]);
  for (const r of [open, authed, mtls, plain]) cleanups.push(() => r.stop());
  const dirs = await Promise.all([
    certsDir(at(trusted, open), { 'ca.crt': ca.cert }),
    certsDir(at(wrongName, open), { 'ca.crt': ca.cert }),
    certsDir(at(trusted, authed), { 'ca.crt': ca.cert }),
    certsDir(at(trusted, mtls), { 'ca.crt': ca.cert, 'client.cert': client.cert, 'client.key': client.key }),
    // Trusted, but without the client certificate the registry wants.
    certsDir(at(untrusted, mtls), { 'ca.crt': ca.cert }),
  ]);
  for (const d of dirs) cleanups.push(d.remove);
  const [openDir, , authedDir, mtlsDir] = dirs.map((d) => d.dir);
  await Promise.all([
    pushBusybox(at(trusted, open), { skopeoArgs: ['--dest-cert-dir', openDir] }),
    pushBusybox(at(trusted, authed), { repo: 'private', skopeoArgs: ['--dest-cert-dir', authedDir, '--dest-creds', 'alice:s3cret'] }),
    pushBusybox(at(trusted, mtls), { skopeoArgs: ['--dest-cert-dir', mtlsDir] }),
  ]);
  // No credentials or builder config of the machine's own.
  env = { DOCKER_CONFIG: await tempDir('builder-tls-docker-'), BUILDER_CONFIG: path.join(dir, 'no-config.json') };
  cleanups.push(() => fs.rm(env.DOCKER_CONFIG, { recursive: true, force: true }));
}, 180_000);

afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

describe('TLS registries through the CLI', () => {
  it('builds FROM an image on a registry trusted through /etc/docker/certs.d and pushes back to it', async () => {
    const host = at(trusted, open);
    const r = await build(`FROM ${host}/busybox:1.35\nRUN echo built > /built\n`, ['--push', '-t', `${host}/app:1`]);
    expect(r.stderr).toContain('pushing');
    expect(r.code, r.stderr).toBe(0);
    const inspect = await cli(['imagetools', 'inspect', `${host}/app:1`]);
    expect(inspect.code, inspect.stderr).toBe(0);
    expect(inspect.stdout).toMatch(/Digest:\s+sha256:[0-9a-f]{64}/);
    // The same registry, the same build, with the CA no longer in certs.d: one line naming the host and the
    // certificate problem, from the FROM and from a push alone.
    await fs.rm(path.join(CERTS_D, host), { recursive: true });
    try {
      const fromIt = await build(`FROM ${host}/busybox:1.35\nRUN echo built > /built\n`, ['--push', '-t', `${host}/app:2`]);
      expect(fromIt.code).toBe(1);
      noStack(fromIt);
      expect(fromIt.stderr.split('\n').filter((l) => l.startsWith('ERROR: '))).toEqual([lastLine(fromIt.stderr)]);
      expect(lastLine(fromIt.stderr)).toMatch(new RegExp(`^ERROR: Dockerfile:1: .*registry ${host}: certificate signed by unknown authority \\(x509: [^)]+\\); trust its CA in /etc/docker/certs.d/${host}/ca.crt`));
      const pushIt = await build('FROM scratch\nLABEL a=b\n', ['--progress', 'none', '--push', '-t', `${host}/app:2`]);
      expect(pushIt.code).toBe(1);
      expect(pushIt.stderr).toMatch(new RegExp(`^ERROR: registry ${host}: certificate signed by unknown authority \\(x509: [^)]+\\); trust its CA in /etc/docker/certs.d/${host}/ca.crt[^\n]*\n$`));
    } finally {
      await certsDir(host, { 'ca.crt': ca.cert });
    }
  });

  it('exports a cache to the TLS registry and a fresh state directory builds from it', async () => {
    const host = at(trusted, open);
    const dockerfile = `FROM ${host}/busybox:1.35\nRUN cat /proc/sys/kernel/random/uuid > /id\n`;
    const out1 = await tempDir('builder-tls-out-');
    const out2 = await tempDir('builder-tls-out-');
    cleanups.push(() => fs.rm(out1, { recursive: true, force: true }), () => fs.rm(out2, { recursive: true, force: true }));
    const first = await build(dockerfile, ['--cache-to', `type=registry,ref=${host}/cache:1,mode=max`, '-o', `type=local,dest=${out1}`]);
    expect(first.code, first.stderr).toBe(0);
    const second = await build(dockerfile, ['--cache-from', `type=registry,ref=${host}/cache:1`, '-o', `type=local,dest=${out2}`]);
    expect(second.code, second.stderr).toBe(0);
    // The RUN did not run again: its random output came from the cache.
    expect(await fs.readFile(path.join(out2, 'id'), 'utf8')).toBe(await fs.readFile(path.join(out1, 'id'), 'utf8'));
  });

  it('imagetools create joins images on the TLS registry, and inspect reads the index', async () => {
    const host = at(trusted, open);
    const created = await cli(['imagetools', 'create', '-t', `${host}/joined:1`, `${host}/busybox:1.35`]);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toMatch(/^sha256:[0-9a-f]{64}$/m);
    const inspect = await cli(['imagetools', 'inspect', `${host}/joined:1`]);
    expect(inspect.code, inspect.stderr).toBe(0);
    expect(inspect.stdout).toContain('linux/amd64');
    expect(inspect.stdout).toContain('linux/arm64');
  });

  it('logs in over TLS (htpasswd), refusing a wrong password, then pulls the private image', async () => {
    const host = at(trusted, authed);
    const wrong = await cli(['login', host, '-u', 'alice', '-p', 'nope']);
    expect(wrong.code).toBe(1);
    expect(lastLine(wrong.stderr)).toMatch(new RegExp(`^ERROR: login to registry ${host} failed: 401`));
    const ok = await cli(['login', host, '-u', 'alice', '-p', 's3cret']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain('Login Succeeded');
    const r = await build(`FROM ${host}/private:1.35\nRUN true\n`, []);
    expect(r.code, r.stderr).toBe(0);
    await cli(['logout', host]);
    // The same registry under a name whose CA is not trusted: the certificate, not the password, is named.
    const untrustedHost = at(untrusted, authed);
    const refused = await cli(['login', untrustedHost, '-u', 'alice', '-p', 's3cret']);
    expect(refused.code).toBe(1);
    expect(refused.stderr.trim()).toMatch(new RegExp(`^ERROR: registry ${untrustedHost}: certificate signed by unknown authority \\(x509: [^)]+\\); trust its CA in /etc/docker/certs.d/${untrustedHost}/ca.crt`));
  });

  it('presents the client certificate from certs.d to a registry that requires one', async () => {
    const r = await build(`FROM ${at(trusted, mtls)}/busybox:1.35\nRUN true\n`, []);
    expect(r.code, r.stderr).toBe(0);
    const without = await cli(['imagetools', 'inspect', `${at(untrusted, mtls)}/busybox:1.35`]);
    expect(without.code).toBe(1);
    noStack(without);
    expect(lastLine(without.stderr)).toContain(`registry ${at(untrusted, mtls)}: the registry did not accept a client certificate`);
    expect(lastLine(without.stderr)).toContain(`/etc/docker/certs.d/${at(untrusted, mtls)}/client.cert`);
    // A loopback host is insecure, but a registry that wants a client certificate speaks TLS: no fallback
    // to plain HTTP hides that.
    const loopback = `localhost:${mtls.port}`;
    const refused = await cli(['imagetools', 'inspect', `${loopback}/busybox:1.35`]);
    expect(refused.code).toBe(1);
    expect(lastLine(refused.stderr)).toContain(`registry ${loopback}: the registry did not accept a client certificate`);
    const d = await certsDir(loopback, { 'client.cert': client.cert, 'client.key': client.key });
    cleanups.push(d.remove);
    const accepted = await cli(['imagetools', 'inspect', `${loopback}/busybox:1.35`]);
    expect(accepted.code, accepted.stderr).toBe(0);
  });

  it('fails on one line naming the host and how to trust it when the CA is not trusted', async () => {
    const host = at(untrusted, open);
    const r = await build(`FROM ${host}/busybox:1.35\nRUN true\n`, []);
    expect(r.code).toBe(1);
    noStack(r);
    const line = lastLine(r.stderr);
    expect(line).toMatch(/^ERROR: Dockerfile:1: /);
    expect(line).toContain(`registry ${host}: certificate signed by unknown authority (x509: `);
    expect(line).toContain(`trust its CA in /etc/docker/certs.d/${host}/ca.crt or NODE_EXTRA_CA_CERTS, or use --insecure-registry ${host}`);
    // Not retried as if the network had failed: one line, and the same from imagetools and --push.
    const inspect = await cli(['imagetools', 'inspect', `${host}/busybox:1.35`]);
    expect(inspect.code).toBe(1);
    expect(inspect.stderr.trim().split('\n')).toHaveLength(1);
    expect(inspect.stderr).toContain(`registry ${host}: certificate signed by unknown authority`);
    const push = await build('FROM scratch\nLABEL a=b\n', ['--push', '-t', `${host}/pushed:1`]);
    expect(push.code).toBe(1);
    expect(lastLine(push.stderr)).toContain(`registry ${host}: certificate signed by unknown authority`);
  });

  it('fails on one line when the certificate is for another name', async () => {
    const host = at(wrongName, open);
    const r = await build(`FROM ${host}/busybox:1.35\nRUN true\n`, []);
    expect(r.code).toBe(1);
    noStack(r);
    const line = lastLine(r.stderr);
    expect(line).toContain(`registry ${host}: certificate is not valid for ${wrongName} (x509: certificate is valid for DNS:${trusted}, DNS:${untrusted}, not ${wrongName});`);
    expect(line).toContain(`or use --insecure-registry ${host}`);
  });

  it('trusts a CA from the system bundle, NODE_EXTRA_CA_CERTS, the builder config or --insecure-registry', async () => {
    const host = at(untrusted, open);
    const ref = `${host}/busybox:1.35`;
    const extra = await cli(['imagetools', 'inspect', ref], { NODE_EXTRA_CA_CERTS: ca.cert });
    expect(extra.code, extra.stderr).toBe(0);
    // The system bundle, where Go looks first: SSL_CERT_FILE (update-ca-certificates' file otherwise).
    const system = await cli(['imagetools', 'inspect', ref], { SSL_CERT_FILE: ca.cert });
    expect(system.code, system.stderr).toBe(0);
    const viaCA = await cli(['imagetools', 'inspect', ref], { BUILDER_CONFIG: await writeConfig({ registry: { [host]: { ca: [ca.cert] } } }) });
    expect(viaCA.code, viaCA.stderr).toBe(0);
    const viaInsecure = await cli(['imagetools', 'inspect', ref], { BUILDER_CONFIG: await writeConfig({ registry: { [host]: { insecure: true } } }) });
    expect(viaInsecure.code, viaInsecure.stderr).toBe(0);
    const flag = await build(`FROM ${ref}\nRUN true\n`, ['--insecure-registry', host]);
    expect(flag.code, flag.stderr).toBe(0);
  });

  it('pulls through a configured mirror first, then the registry itself', async () => {
    const host = at(trusted, open);
    // Only the mirror has this image; the first mirror listed is down and is skipped.
    await pushBusybox(plain.host, { repo: 'pfx/mirrored/only' });
    const down = `127.0.0.1:${await freePort()}`;
    const config = await writeConfig({ registry: { [host]: { mirrors: [down, `${plain.host}/pfx`] } } });
    const viaMirror = await build(`FROM ${host}/mirrored/only:1.35\nRUN true\n`, [], { BUILDER_CONFIG: config });
    expect(viaMirror.code, viaMirror.stderr).toBe(0);
    // Without the mirror, the registry has no such image.
    const direct = await cli(['imagetools', 'inspect', `${host}/mirrored/only:1.35`]);
    expect(direct.code).toBe(1);
    expect(direct.stderr).toContain('not found');
    // The mirror lacks busybox: the registry serves it.
    const fallback = await build(`FROM ${host}/busybox:1.35\nRUN true\n`, [], { BUILDER_CONFIG: config });
    expect(fallback.code, fallback.stderr).toBe(0);
  });

  it('rejects a malformed builder config on one line naming the file', async () => {
    const file = await writeConfig({ registry: { 'x.test': { mirrors: 'not-a-list' } } });
    const r = await cli(['imagetools', 'inspect', `${at(trusted, open)}/busybox:1.35`], { BUILDER_CONFIG: file });
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe(`ERROR: builder config ${file}: registry."x.test".mirrors must be a list of strings`);
  });
});

describe('TLS registries through the library', () => {
  it('takes per-registry settings as an option, like the config file', async () => {
    const host = at(untrusted, open);
    const ref = parseReference(`${host}/busybox:1.35`);
    await expect(new RegistryClient({ retries: 0 }).getManifest(ref)).rejects.toBeInstanceOf(RegistryCertificateError);
    const m = await new RegistryClient({ registries: { [host]: { ca: [ca.cert] } } }).getManifest(ref);
    expect(m.digest).toMatch(/^sha256:/);
  });

  it('reaches an insecure registry that speaks plain HTTP by falling back from HTTPS', async () => {
    await pushBusybox(plain.host);
    const host = at(trusted, plain);
    const ref = parseReference(`${host}/busybox:1.35`);
    await expect(new RegistryClient({ retries: 0 }).getManifest(ref)).rejects.toThrow(`cannot reach registry ${host}: server gave HTTP response to HTTPS client`);
    const m = await new RegistryClient({ insecureRegistries: [host] }).getManifest(ref);
    expect(m.digest).toMatch(/^sha256:/);
  });
});

describe('plain HTTP remembered in the state directory', () => {
  it('skips the HTTPS attempt for a host that answered on HTTP, and notices when it moved to HTTPS', async () => {
    const file = path.join(dir, 'registry-schemes.json');
    // A loopback registry on TLS that an earlier build (the file says) found on plain HTTP.
    const host = `localhost:${open.port}`;
    await fs.writeFile(file, JSON.stringify({ [host]: { scheme: 'http', at: Date.now() } }));
    const m = await new RegistryClient({ schemesFile: file, retries: 0 }).getManifest(parseReference(`${host}/busybox:1.35`));
    expect(m.digest).toMatch(/^sha256:/);
    expect(JSON.parse(await fs.readFile(file, 'utf8'))).toEqual({});
    // A plain HTTP one is written down for the next process.
    const plainHost = `localhost:${plain.port}`;
    await pushBusybox(plain.host);
    await new RegistryClient({ schemesFile: file }).getManifest(parseReference(`${plainHost}/busybox:1.35`));
    expect(JSON.parse(await fs.readFile(file, 'utf8'))).toEqual({ [plainHost]: { scheme: 'http', at: expect.any(Number) } });
  });
});

describe('the installed bin', () => {
  it('holds no dynamic import() the vm.Script it runs in could not make', async () => {
    const bundle = await fs.readFile(path.join(projectRoot, 'dist/src/cli/builder.cjs'), 'utf8');
    expect(bundle.match(/(?<![\w$.])import\s*\(/g)).toBeNull();
    // And the bin reaches an HTTPS registry (node:https is loaded lazily).
    const { stdout } = await exec(process.execPath, [path.join(projectRoot, 'dist/src/cli/main.js'), 'imagetools', 'inspect', '--raw', `${at(trusted, open)}/busybox:1.35`], { env: { ...process.env, ...env } });
    expect(JSON.parse(stdout)).toMatchObject({ mediaType: 'application/vnd.oci.image.index.v1+json' });
    // Commands whose modules load lazily.
    const root = await tempDir('builder-tls-root-');
    cleanups.push(() => fs.rm(root, { recursive: true, force: true }));
    for (const args of [['du', '--root', root], ['prune', '--root', root]]) {
      const r = await cli(args);
      expect(r.code, r.stderr).toBe(0);
    }
  });
});
