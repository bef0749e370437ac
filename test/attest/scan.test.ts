// The built-in SBOM scanner's readers, against what the package tools themselves say: dpkg's status file
// compared with dpkg-query on this machine's own database, npm lockfiles of each version, Go build info
// of a Go binary on this machine (skopeo).
import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs/promises';
import path from 'node:path';
import os from 'node:os';
import { parseApkInstalled, parseDpkgStatus, parseGoBuildInfo, parseNpmLock, parseOsRelease, parsePythonMetadata, scanTree } from '../../src/attest/scan.js';
import { attestationsFor, resolveAttest } from '../../src/attest/options.js';

const exec = promisify(execFile);

describe('SBOM scanner readers', () => {
  it('reads every package dpkg-query -W lists from this machine\'s dpkg status, with its version', async () => {
    const text = await fs.readFile('/var/lib/dpkg/status', 'utf8');
    const ours = parseDpkgStatus(text).map((p) => `${p.name}\t${p.version}`).sort();
    const { stdout } = await exec('dpkg-query', ['-W', '-f', '${Package}\\t${Version}\\n'], { maxBuffer: 64 << 20 });
    const theirs = stdout.split('\n').filter(Boolean).sort();
    expect(ours.length).toBeGreaterThan(10);
    expect(ours).toEqual(theirs);
  });

  it('reads npm lockfiles v1 (nested dependencies) and v2/v3 (packages, scoped names, links left out)', () => {
    const v1 = JSON.stringify({ lockfileVersion: 1, dependencies: { a: { version: '1.0.0', dependencies: { b: { version: '2.0.0' } } } } });
    expect(parseNpmLock(v1)).toEqual([{ name: 'a', version: '1.0.0' }, { name: 'b', version: '2.0.0' }]);
    const v3 = JSON.stringify({
      lockfileVersion: 3,
      packages: {
        '': { name: 'app', version: '0.0.1' },
        'node_modules/@scope/x': { version: '3.1.4', license: 'MIT' },
        'node_modules/@scope/x/node_modules/y': { version: '0.2.0' },
        'node_modules/local': { link: true, resolved: 'packages/local' },
      },
    });
    expect(parseNpmLock(v3)).toEqual([{ name: '@scope/x', version: '3.1.4', license: 'MIT' }, { name: 'y', version: '0.2.0' }]);
  });

  it('reads apk\'s installed database', () => {
    const db = 'C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\nL:MIT\nm:Maintainer <m@example.org>\n\nC:Q1def=\nP:busybox\nV:1.36.1-r5\nA:x86_64\nL:GPL-2.0-only\n';
    expect(parseApkInstalled(db)).toEqual([
      { name: 'musl', version: '1.2.4-r2', arch: 'x86_64', license: 'MIT', maintainer: 'Maintainer <m@example.org>' },
      { name: 'busybox', version: '1.36.1-r5', arch: 'x86_64', license: 'GPL-2.0-only', maintainer: undefined },
    ]);
  });

  it('reads os-release and Python metadata headers', () => {
    expect(parseOsRelease('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n')).toEqual({ id: 'debian', versionId: '12', prettyName: 'Debian GNU/Linux 12 (bookworm)' });
    expect(parsePythonMetadata('Metadata-Version: 2.1\nName: requests\nVersion: 2.31.0\nLicense: Apache-2.0\n\nName: not-a-header\n')).toEqual({ name: 'requests', version: '2.31.0', license: 'Apache-2.0' });
  });

  it('reads the build info Go links into a binary: its Go version (skopeo here), modules from .go.buildinfo', async () => {
    // Debian builds its Go tools without modules: the version is all skopeo's build info has.
    expect((await parseGoBuildInfo(await fs.readFile('/usr/bin/skopeo')))?.goVersion).toMatch(/^go1\.\d+/);
    const mod = 'path\texample.com/app\nmod\texample.com/app\tv1.2.3\th1:x=\ndep\tgolang.org/x/sys\tv0.5.0\th1:y=\ndep\tgithub.com/a/b\tv1.0.0\n=>\tgithub.com/a/fork\tv1.0.1\th1:z=\n';
    const info = await parseGoBuildInfo(goBinary('go1.22.1', mod));
    expect(info).toEqual({
      goVersion: 'go1.22.1', main: { path: 'example.com/app', version: 'v1.2.3' },
      deps: [{ path: 'golang.org/x/sys', version: 'v0.5.0' }, { path: 'github.com/a/fork', version: 'v1.0.1' }],
    });
  });

  it('walks a tree without following symlinks out of it: a status file linked to a host file is not read', async () => {
    const root = await fs.mkdtemp(path.join(os.tmpdir(), 'scan-'));
    await fs.mkdir(path.join(root, 'var/lib/dpkg'), { recursive: true });
    const outside = path.join(os.tmpdir(), `scan-outside-${process.pid}`);
    await fs.writeFile(outside, 'Package: hostonly\nStatus: install ok installed\nVersion: 1\n');
    await fs.symlink(outside, path.join(root, 'var/lib/dpkg/status'));
    await fs.mkdir(path.join(root, 'app/node_modules/@s/p'), { recursive: true });
    await fs.writeFile(path.join(root, 'app/node_modules/@s/p/package.json'), JSON.stringify({ name: '@s/p', version: '1.2.3' }));
    await fs.mkdir(path.join(root, 'usr/lib/python3/dist-packages/six-1.16.0.dist-info'), { recursive: true });
    await fs.writeFile(path.join(root, 'usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA'), 'Name: six\nVersion: 1.16.0\n');
    await fs.mkdir(path.join(root, 'usr/local/bin'), { recursive: true });
    await fs.writeFile(path.join(root, 'usr/local/bin/app'), goBinary('go1.22.1', 'path\tex.com/app\nmod\tex.com/app\tv0.1.0\t\ndep\tgolang.org/x/text\tv0.14.0\th1:x=\n'), { mode: 0o755 });
    const scan = await scanTree(root);
    expect(scan.packages.map((p) => `${p.type} ${p.name} ${p.version}`).sort()).toEqual([
      'go-module ex.com/app v0.1.0', 'go-module golang.org/x/text v0.14.0', 'go-module stdlib go1.22.1', 'npm @s/p 1.2.3', 'python six 1.16.0',
    ]);
    expect(scan.packages.find((p) => p.type === 'npm')!.purl).toBe('pkg:npm/%40s/p@1.2.3');
    await fs.rm(root, { recursive: true, force: true });
    await fs.rm(outside, { force: true });
  });
});

describe('attestation options', () => {
  it('defaults to min provenance (inline only), as buildx; --provenance=false and BUILDX_NO_DEFAULT_ATTESTATIONS turn it off', () => {
    const byDefault = resolveAttest({}, { noDefault: false });
    expect(byDefault).toEqual({ provenance: { mode: 'min', version: 'v0.2', inlineOnly: true, byDefault: true } });
    // An image kept only in the local store (`-t` alone) is like buildx's --load: no default provenance;
    // pushed, or asked for, it has one.
    expect(attestationsFor(byDefault, { type: 'image', attrs: {} })).toEqual({});
    expect(attestationsFor(byDefault, { type: 'image', attrs: { push: 'true' } })).toEqual(byDefault);
    const asked = resolveAttest({ provenance: 'true' }, { noDefault: false });
    expect(attestationsFor(asked, { type: 'image', attrs: {} })).toEqual(asked);
    expect(resolveAttest({ provenance: false }, { noDefault: false })).toEqual({});
    expect(resolveAttest({}, { noDefault: true })).toEqual({});
    expect(resolveAttest({ provenance: 'mode=max,version=v1', sbom: 'true' }, { noDefault: false }))
      .toEqual({ provenance: { mode: 'max', version: 'v1' }, sbom: {} });
    // --attest wins over the shorthand.
    expect(resolveAttest({ sbom: true, attest: ['type=sbom,disabled=true'] }, { noDefault: true })).toEqual({});
    expect(resolveAttest({ attest: ['type=sbom'] }, { noDefault: true, buildArgs: { BUILDKIT_SBOM_SCAN_CONTEXT: 'true', BUILDKIT_SBOM_SCAN_STAGE: '1' } }))
      .toEqual({ sbom: { scanStage: true, scanContext: true } });
  });

  it('refuses what buildx refuses, in one line', () => {
    expect(() => resolveAttest({ attest: ['mode=max'] })).toThrow('attestation type not specified');
    expect(() => resolveAttest({ provenance: 'mode=full' })).toThrow('mode must be min or max');
    expect(() => resolveAttest({ attest: ['type=vex'] })).toThrow('unknown attestation type "vex"');
    expect(() => resolveAttest({ attest: ['type=provenance,colour=blue'] })).toThrow('unknown option "colour"');
  });
});

/** A minimal ELF64 file with a Go 1.18+ `.go.buildinfo` section (inline strings, module info in sentinels). */
function goBinary(goVersion: string, mod: string): Buffer {
  const varString = (str: string) => {
    const b = Buffer.from(str);
    const len: number[] = [];
    let n = b.length;
    do { len.push((n & 0x7f) | (n > 0x7f ? 0x80 : 0)); n >>= 7; } while (n > 0);
    return Buffer.concat([Buffer.from(len), b]);
  };
  const header = Buffer.alloc(32);
  header.write('\xff Go buildinf:', 0, 'latin1');
  header[14] = 8;
  header[15] = 2;
  const sentinel = Buffer.alloc(16, 0x30);
  const info = Buffer.concat([header, varString(goVersion), varString(`${sentinel.toString('latin1')}${mod}${sentinel.toString('latin1')}`)]);
  const strtab = Buffer.from('\0.go.buildinfo\0.shstrtab\0');
  const infoOff = 64;
  const strOff = infoOff + info.length;
  const shoff = strOff + strtab.length;
  const elf = Buffer.alloc(64);
  elf.writeUInt32BE(0x7f454c46, 0);
  elf[4] = 2; elf[5] = 1; elf[6] = 1;
  elf.writeBigUInt64LE(BigInt(shoff), 0x28);
  elf.writeUInt16LE(64, 0x3a);
  elf.writeUInt16LE(3, 0x3c);
  elf.writeUInt16LE(2, 0x3e);
  const section = (name: number, offset: number, size: number) => {
    const sh = Buffer.alloc(64);
    sh.writeUInt32LE(name, 0);
    sh.writeBigUInt64LE(BigInt(offset), 0x18);
    sh.writeBigUInt64LE(BigInt(size), 0x20);
    return sh;
  };
  return Buffer.concat([elf, info, strtab, section(0, 0, 0), section(1, infoOff, info.length), section(15, strOff, strtab.length)]);
}
