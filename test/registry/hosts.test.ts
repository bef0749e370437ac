// Per-registry routing and trust decided before any connection: the builder config file, mirrors, which
// hosts are insecure (HTTPS unverified, then plain HTTP), and what Docker's certs.d directories hold.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { tempDir } from '../helpers/cli.js';
import { builderConfigPath, loadBuilderConfig, parseBuilderConfig } from '../../src/registry/config.js';
import { RegistryHosts } from '../../src/registry/hosts.js';
import { parseReference } from '../../src/registry/reference.js';

let dir: string;
beforeAll(async () => { dir = await tempDir('builder-hosts-'); });
afterAll(async () => { await fs.rm(dir, { recursive: true, force: true }); });

describe('builder config file', () => {
  it('is $BUILDER_CONFIG, else builder/config.json in the XDG config directory', () => {
    expect(builderConfigPath({ BUILDER_CONFIG: '/x/c.json', XDG_CONFIG_HOME: '/xdg' })).toBe('/x/c.json');
    expect(builderConfigPath({ XDG_CONFIG_HOME: '/xdg' })).toBe('/xdg/builder/config.json');
    expect(builderConfigPath({})).toMatch(/\/\.config\/builder\/config\.json$/);
  });

  it('is optional; its paths are relative to it', async () => {
    expect(loadBuilderConfig(path.join(dir, 'missing.json'))).toEqual({});
    const file = path.join(dir, 'c.json');
    await fs.writeFile(file, JSON.stringify({ registry: { 'r.test:5000': { ca: ['certs/ca.pem'], keypair: [{ cert: 'c.pem', key: '/abs/k.pem' }], http: false } } }));
    expect(loadBuilderConfig(file).registry).toEqual({
      'r.test:5000': { ca: [path.join(dir, 'certs/ca.pem')], keypair: [{ cert: path.join(dir, 'c.pem'), key: '/abs/k.pem' }], http: false },
    });
  });

  it('names the file and the wrong key on one line', async () => {
    const bad = (json: unknown) => () => parseBuilderConfig(json, '/etc/c.json');
    expect(bad([])).toThrow('builder config /etc/c.json: expected a JSON object');
    expect(bad({ registries: {} })).toThrow('builder config /etc/c.json: unknown key "registries" (valid: registry)');
    expect(bad({ registry: { 'a.test': { mirror: [] } } })).toThrow('registry."a.test": unknown key "mirror" (valid: mirrors, http, insecure, ca, keypair)');
    expect(bad({ registry: { 'a.test': { insecure: 'yes' } } })).toThrow('registry."a.test".insecure must be true or false');
    expect(bad({ registry: { 'a.test': { keypair: [{ cert: 'c' }] } } })).toThrow('registry."a.test".keypair must be a list of {"cert": FILE, "key": FILE}');
    const file = path.join(dir, 'broken.json');
    await fs.writeFile(file, '{"registry": ');
    expect(() => loadBuilderConfig(file)).toThrow(`builder config ${file}: not valid JSON`);
  });
});

describe('RegistryHosts', () => {
  it('asks mirrors first (with their path under /v2, as BuildKit), then the registry', () => {
    const hosts = new RegistryHosts({ registries: { 'docker.io': { mirrors: ['mirror.test:5000', 'https://harbor.test/proxy.docker.io/', 'http://plain.test'] } }, certsDirs: [] });
    expect(hosts.pullEndpoints(parseReference('busybox'))).toEqual([
      { host: 'mirror.test:5000', root: '/v2', mirror: true },
      { host: 'harbor.test', root: '/v2/proxy.docker.io', mirror: true },
      { host: 'plain.test', root: '/v2', mirror: true },
      { host: 'registry-1.docker.io', root: '/v2', mirror: false },
    ]);
    expect(hosts.scheme('plain.test')).toBe('http');
    expect(hosts.scheme('harbor.test')).toBe('https');
    // Pushes never go to a mirror; other registries have none.
    expect(hosts.endpoint(parseReference('busybox'))).toEqual({ host: 'registry-1.docker.io', root: '/v2', mirror: false });
    expect(hosts.pullEndpoints(parseReference('quay.io/x/y'))).toHaveLength(1);
  });

  it('tries HTTPS first and may fall back to HTTP only for insecure hosts', () => {
    const hosts = new RegistryHosts({
      insecureRegistries: ['flag.test:5000'],
      registries: { 'cfg.test': { insecure: true }, 'plain.test': { http: true }, '127.0.0.1:6000': { http: false }, 'secure.test': {} },
      certsDirs: [],
    });
    for (const h of ['localhost:5000', '127.0.0.5:5000', '[::1]:5000', 'flag.test:5000', 'cfg.test']) {
      expect(hosts.scheme(h), h).toBe('https');
      expect(hosts.mayFallBack(h), h).toBe(true);
      expect(hosts.tls(h).insecure, h).toBe(true);
    }
    expect(hosts.scheme('plain.test')).toBe('http');
    expect(hosts.mayFallBack('127.0.0.1:6000')).toBe(false);
    expect(hosts.mayFallBack('secure.test')).toBe(false);
    expect(hosts.tls('secure.test').insecure).toBe(false);
    expect(hosts.mayFallBack('flag.test:5001')).toBe(false);
    // Learned once per process.
    hosts.learned('flag.test:5000', 'http');
    expect(hosts.scheme('flag.test:5000')).toBe('http');
    expect(hosts.mayFallBack('flag.test:5000')).toBe(false);
  });

  it('reads Docker certs.d: *.crt CAs and a client.cert with its client.key', async () => {
    const certs = path.join(dir, 'certs.d');
    await fs.mkdir(path.join(certs, 'r.test:5443'), { recursive: true });
    await fs.writeFile(path.join(certs, 'r.test:5443', 'ca.crt'), 'CA1');
    await fs.writeFile(path.join(certs, 'r.test:5443', 'other.crt'), 'CA2');
    await fs.writeFile(path.join(certs, 'r.test:5443', 'client.cert'), 'CERT');
    await fs.writeFile(path.join(certs, 'r.test:5443', 'client.key'), 'KEY');
    await fs.mkdir(path.join(certs, 'half.test'), { recursive: true });
    await fs.writeFile(path.join(certs, 'half.test', 'client.cert'), 'CERT');
    const hosts = new RegistryHosts({ registries: { 'r.test:5443': { ca: [path.join(certs, 'r.test:5443', 'ca.crt')] } }, certsDirs: [certs] });
    expect(hosts.tls('r.test:5443')).toEqual({ insecure: false, ca: ['CA1', 'CA1', 'CA2'], cert: 'CERT', key: 'KEY' });
    expect(hosts.tls('none.test')).toEqual({ insecure: false, ca: [] });
    expect(() => hosts.tls('half.test')).toThrow(`registry half.test: client certificate ${path.join(certs, 'half.test', 'client.cert')} has no key client.key beside it`);
    const missing = new RegistryHosts({ registries: { 'x.test': { ca: ['/nonexistent/ca.pem'] } }, certsDirs: [] });
    expect(() => missing.tls('x.test')).toThrow('registry x.test: cannot read CA /nonexistent/ca.pem: ENOENT');
  });
});
