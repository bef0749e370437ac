// Real TLS for tests: a CA and certificates made with the openssl CLI, hostnames that resolve to 127.0.0.1
// through /etc/hosts lines the tests add and remove, and Docker's /etc/docker/certs.d/HOST:PORT/ dirs.
// Other test files may edit /etc/hosts at the same time: names are unique, the file is rewritten whole
// (written beside it and renamed) under a lock file, and only our own lines are ever removed.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const OPENSSL = '/usr/bin/openssl';
const HOSTS = '/etc/hosts';
const HOSTS_LOCK = '/etc/hosts.builder-test.lock';
export const CERTS_D = '/etc/docker/certs.d';

export interface CA {
  cert: string;
  key: string;
}

export interface Cert {
  cert: string;
  key: string;
}

/** A name no other test uses: `<random>.builder-test`. */
export function uniqueHostname(prefix = 't'): string {
  return `${prefix}${randomBytes(5).toString('hex')}.builder-test`;
}

/** A CA (EC P-256 keys: quick to make) in `dir`. */
export async function makeCA(dir: string, name = 'builder test CA'): Promise<CA> {
  await fs.mkdir(dir, { recursive: true });
  const slug = name.replace(/\W+/g, '-');
  const ca = { cert: path.join(dir, `${slug}.pem`), key: path.join(dir, `${slug}.key`) };
  await run(OPENSSL, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-subj', `/CN=${name}`, '-keyout', ca.key, '-out', ca.cert,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  return ca;
}

/** A certificate signed by `ca`: for a server with these DNS names, or (`client`) for a client. */
export async function makeCert(ca: CA, dir: string, name: string, opts: { dnsNames?: string[]; client?: boolean } = {}): Promise<Cert> {
  const base = path.join(dir, name.replace(/[^\w.-]+/g, '-'));
  const out = { cert: `${base}.crt.pem`, key: `${base}.key.pem` };
  const csr = `${base}.csr`;
  const ext = `${base}.ext`;
  await run(OPENSSL, ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', `/CN=${name}`, '-keyout', out.key, '-out', csr]);
  const lines = opts.client
    ? ['extendedKeyUsage=clientAuth', 'keyUsage=critical,digitalSignature']
    : [`subjectAltName=${(opts.dnsNames ?? [name]).map((n) => `DNS:${n}`).join(',')}`, 'extendedKeyUsage=serverAuth', 'keyUsage=critical,digitalSignature'];
  await fs.writeFile(ext, lines.join('\n') + '\n');
  // A random serial per certificate: -CAcreateserial shares one .srl file, which certificates made in parallel
  // read half-written ("Unable to load number").
  const serial = '0x' + randomBytes(16).toString('hex').replace(/^[89a-f]/, '1');
  await run(OPENSSL, ['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-set_serial', serial, '-days', '2', '-extfile', ext, '-out', out.cert]);
  return out;
}

async function withHostsLock<T>(fn: () => Promise<T>): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      const h = await fs.open(HOSTS_LOCK, 'wx');
      await h.close();
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      // A lock left by a killed run is stale after a few seconds: nothing holds it that long.
      const st = await fs.stat(HOSTS_LOCK).catch(() => null);
      if (st && Date.now() - st.mtimeMs > 10_000) await fs.rm(HOSTS_LOCK, { force: true });
      await new Promise((r) => setTimeout(r, 20 + Math.random() * 30));
    }
  }
  try {
    return await fn();
  } finally {
    await fs.rm(HOSTS_LOCK, { force: true });
  }
}

/** Rewrites /etc/hosts through `edit`, atomically, and checks the result survived (another writer that
 * does not take our lock may have replaced the file meanwhile). */
async function editHosts(edit: (lines: string[]) => string[], holds: (lines: string[]) => boolean): Promise<void> {
  for (let attempt = 0; attempt < 20; attempt++) {
    await withHostsLock(async () => {
      const lines = (await fs.readFile(HOSTS, 'utf8')).split('\n');
      if (lines[lines.length - 1] === '') lines.pop();
      const tmp = `${HOSTS}.builder-test.${process.pid}.${randomBytes(3).toString('hex')}`;
      const st = await fs.stat(HOSTS);
      await fs.writeFile(tmp, edit(lines).join('\n') + '\n', { mode: st.mode & 0o7777 });
      await fs.rename(tmp, HOSTS);
    });
    if (holds((await fs.readFile(HOSTS, 'utf8')).split('\n'))) return;
  }
  throw new Error('could not edit /etc/hosts');
}

/** Makes `names` resolve to 127.0.0.1; the returned function removes exactly those lines again. */
export async function addHostsEntries(names: string[]): Promise<() => Promise<void>> {
  const mine = names.map((n) => `127.0.0.1 ${n} # builder-test`);
  await editHosts((lines) => [...lines, ...mine.filter((l) => !lines.includes(l))], (lines) => mine.every((l) => lines.includes(l)));
  return () => editHosts((lines) => lines.filter((l) => !mine.includes(l)), (lines) => !mine.some((l) => lines.includes(l)));
}

/** Docker's certs.d directory for `host` (`name:port`) with these files (name -> source path); the returned
 * function removes it. */
export async function certsDir(host: string, files: Record<string, string>): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = path.join(CERTS_D, host);
  await fs.mkdir(dir, { recursive: true });
  for (const [name, src] of Object.entries(files)) await fs.copyFile(src, path.join(dir, name));
  return { dir, remove: () => fs.rm(dir, { recursive: true, force: true }) };
}
