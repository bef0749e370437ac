// The built-in SBOM scanner: what an image's filesystem says is installed. OS packages from their package
// managers' databases (dpkg's status file and status.d, apk's installed file; the rpm database when an `rpm`
// binary on the host can read it), language packages from what their tools leave (npm lockfiles and
// node_modules package.json files, Python .dist-info/.egg-info metadata, the build info Go links into its
// binaries). The tree is the image's and untrusted: it is walked without following symlinks, and a file
// named by a fixed path is resolved inside the tree.
import fs from 'node:fs/promises';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { resolveInRoot } from '../archive/rootpath.js';

export interface FoundPackage {
  /** `deb`, `apk`, `rpm`, `npm`, `python`, `go-module`. */
  type: string;
  name: string;
  version: string;
  purl?: string;
  /** Path in the tree of the file that said so. */
  location: string;
  /** The package database or manifest kind, as in the SPDX sourceInfo. */
  source: string;
  supplier?: string;
  license?: string;
  arch?: string;
}

export interface Distro {
  id: string;
  versionId?: string;
  prettyName?: string;
}

export interface ScanResult {
  packages: FoundPackage[];
  distro?: Distro;
}

const SKIP_DIRS = new Set(['/proc', '/sys', '/dev']);
/** A language manifest bigger than this is not a manifest (and is not read into memory). */
const MAX_MANIFEST = 64 << 20;
/** Executables larger than this are not opened. */
const MAX_BINARY = 4 * 2 ** 30;

/** Reads a file inside the tree by its path there (symlinks resolved inside it); undefined when absent. */
async function readInRoot(root: string, p: string): Promise<string | undefined> {
  try {
    const host = await resolveInRoot(root, p);
    const st = await fs.stat(host);
    if (!st.isFile() || st.size > MAX_MANIFEST) return undefined;
    return await fs.readFile(host, 'utf8');
  } catch {
    return undefined;
  }
}

export function parseOsRelease(text: string): Distro | undefined {
  const vals: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (m) vals[m[1]] = m[2].replace(/^"(.*)"$/, '$1').replace(/^'(.*)'$/, '$1');
  }
  if (!vals.ID) return undefined;
  return { id: vals.ID, ...(vals.VERSION_ID ? { versionId: vals.VERSION_ID } : {}), ...(vals.PRETTY_NAME ? { prettyName: vals.PRETTY_NAME } : {}) };
}

/** dpkg's status file: one paragraph per package; those dpkg-query lists (all but not-installed ones). */
export function parseDpkgStatus(text: string): { name: string; version: string; arch?: string; maintainer?: string; source?: string }[] {
  const out: { name: string; version: string; arch?: string; maintainer?: string; source?: string }[] = [];
  for (const para of text.split(/\n\s*\n/)) {
    const fields: Record<string, string> = {};
    let last = '';
    for (const line of para.split('\n')) {
      if (/^\s/.test(line)) continue; // continuation lines (descriptions, conffiles)
      const i = line.indexOf(':');
      if (i <= 0) continue;
      last = line.slice(0, i);
      fields[last] = line.slice(i + 1).trim();
    }
    if (!fields.Package) continue;
    const status = (fields.Status ?? 'install ok installed').split(/\s+/);
    if (status[2] === 'not-installed') continue;
    out.push({ name: fields.Package, version: fields.Version ?? '', arch: fields.Architecture, maintainer: fields.Maintainer, source: fields.Source });
  }
  return out;
}

/** apk's installed database: `P:` name, `V:` version, `A:` arch, `L:` license, `m:` maintainer. */
export function parseApkInstalled(text: string): { name: string; version: string; arch?: string; license?: string; maintainer?: string }[] {
  const out: { name: string; version: string; arch?: string; license?: string; maintainer?: string }[] = [];
  for (const para of text.split(/\n\s*\n/)) {
    const f: Record<string, string> = {};
    for (const line of para.split('\n')) if (line.length > 2 && line[1] === ':') f[line[0]] ??= line.slice(2);
    if (f.P) out.push({ name: f.P, version: f.V ?? '', arch: f.A, license: f.L, maintainer: f.m });
  }
  return out;
}

const encodePurlSegment = (s: string) => encodeURIComponent(s).replace(/%2F/gi, '/');

function osPackages(root: string, distro: Distro | undefined): Promise<FoundPackage[]> {
  return (async () => {
    const found: FoundPackage[] = [];
    const distroQ = distro ? `&distro=${encodeURIComponent(`${distro.id}-${distro.versionId ?? ''}`)}` : '';
    const debFiles = ['/var/lib/dpkg/status'];
    try {
      const d = await resolveInRoot(root, '/var/lib/dpkg/status.d');
      for (const e of await fs.readdir(d, { withFileTypes: true })) if (e.isFile() && !e.name.endsWith('.md5sums')) debFiles.push(`/var/lib/dpkg/status.d/${e.name}`);
    } catch { /* none */ }
    for (const f of debFiles) {
      const text = await readInRoot(root, f);
      if (text === undefined) continue;
      for (const p of parseDpkgStatus(text)) {
        found.push({
          type: 'deb', name: p.name, version: p.version, location: f, source: 'DPKG DB', arch: p.arch,
          ...(p.maintainer ? { supplier: `Person: ${p.maintainer}` } : {}),
          purl: `pkg:deb/${encodePurlSegment(distro?.id ?? 'debian')}/${encodeURIComponent(p.name)}@${encodeURIComponent(p.version)}?arch=${encodeURIComponent(p.arch ?? '')}${p.source ? `&upstream=${encodeURIComponent(p.source)}` : ''}${distroQ}`,
        });
      }
    }
    const apk = await readInRoot(root, '/lib/apk/db/installed');
    if (apk !== undefined) {
      for (const p of parseApkInstalled(apk)) {
        found.push({
          type: 'apk', name: p.name, version: p.version, location: '/lib/apk/db/installed', source: 'APK DB', arch: p.arch, license: p.license,
          ...(p.maintainer ? { supplier: `Person: ${p.maintainer}` } : {}),
          purl: `pkg:apk/${encodePurlSegment(distro?.id ?? 'alpine')}/${encodeURIComponent(p.name)}@${encodeURIComponent(p.version)}?arch=${encodeURIComponent(p.arch ?? '')}${distroQ}`,
        });
      }
    }
    found.push(...await rpmPackages(root, distro));
    return found;
  })();
}

/**
 * The rpm database (sqlite or Berkeley DB) has no reader here: when the tree has one and the host has an
 * `rpm` binary, that reads it (`--dbpath` inside the tree, no scripts run); otherwise rpm packages are
 * not listed.
 */
async function rpmPackages(root: string, distro: Distro | undefined): Promise<FoundPackage[]> {
  for (const dbdir of ['/var/lib/rpm', '/usr/lib/sysimage/rpm']) {
    let host: string;
    try {
      host = await resolveInRoot(root, dbdir);
      if (!(await fs.stat(host)).isDirectory()) continue;
      const names = await fs.readdir(host);
      if (!names.some((n) => n === 'rpmdb.sqlite' || n === 'Packages' || n === 'Packages.db')) continue;
    } catch {
      continue;
    }
    const out = await new Promise<string | undefined>((resolve) => {
      execFile('rpm', ['--dbpath', host, '-qa', '--qf', '%{NAME}\\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}\\t%{ARCH}\\t%{LICENSE}\\n'], { maxBuffer: 64 << 20 }, (err, stdout) => resolve(err ? undefined : stdout));
    });
    if (out === undefined) return [];
    return out.split('\n').filter(Boolean).map((line) => {
      const [name, evr, arch, license] = line.split('\t');
      const version = evr.startsWith('0:') ? evr.slice(2) : evr;
      return {
        type: 'rpm', name, version, arch, license, location: dbdir, source: 'RPM DB',
        purl: `pkg:rpm/${encodePurlSegment(distro?.id ?? 'redhat')}/${encodeURIComponent(name)}@${encodeURIComponent(version)}?arch=${encodeURIComponent(arch)}`,
      };
    });
  }
  return [];
}

const npmPurl = (name: string, version: string) => `pkg:npm/${name.startsWith('@') ? `%40${encodePurlSegment(name.slice(1))}` : encodeURIComponent(name)}@${encodeURIComponent(version)}`;

/** package-lock.json (lockfileVersion 1, 2, 3) and npm-shrinkwrap.json: every package it pins. */
export function parseNpmLock(text: string): { name: string; version: string; license?: string }[] {
  let lock: { packages?: Record<string, { version?: string; name?: string; license?: string; link?: boolean }>; dependencies?: Record<string, unknown> };
  try {
    lock = JSON.parse(text) as typeof lock;
  } catch {
    return [];
  }
  const out: { name: string; version: string; license?: string }[] = [];
  if (lock.packages) {
    for (const [key, p] of Object.entries(lock.packages)) {
      if (key === '' || p.link || !p.version) continue;
      const i = key.lastIndexOf('node_modules/');
      const name = p.name ?? (i >= 0 ? key.slice(i + 'node_modules/'.length) : key);
      out.push({ name, version: p.version, ...(typeof p.license === 'string' ? { license: p.license } : {}) });
    }
    return out;
  }
  const walk = (deps: Record<string, unknown> | undefined) => {
    for (const [name, d] of Object.entries(deps ?? {})) {
      const dep = d as { version?: string; dependencies?: Record<string, unknown> };
      if (dep.version) out.push({ name, version: dep.version });
      walk(dep.dependencies);
    }
  };
  walk(lock.dependencies);
  return out;
}

/** The key: value headers of a Python METADATA / PKG-INFO file. */
export function parsePythonMetadata(text: string): { name: string; version: string; license?: string } | undefined {
  const f: Record<string, string> = {};
  for (const line of text.split('\n')) {
    if (line.trim() === '') break;
    const m = /^([A-Za-z-]+):\s*(.*)$/.exec(line);
    if (m && f[m[1]] === undefined) f[m[1]] = m[2].trim();
  }
  if (!f.Name || !f.Version) return undefined;
  return { name: f.Name, version: f.Version, ...(f.License && f.License !== 'UNKNOWN' ? { license: f.License } : {}) };
}

export interface GoBuildInfo {
  goVersion: string;
  main?: { path: string; version: string };
  deps: { path: string; version: string }[];
}

/** Reads `length` bytes at `offset` (fewer at the end of the file). */
type ReadAt = (offset: number, length: number) => Promise<Buffer>;

/**
 * Go's build info from an ELF binary's `.go.buildinfo` section (Go 1.18+: inline varint strings): the main
 * module and each dependency with their versions. Only the ELF header, the section headers, their names
 * and that section are read, however big the binary.
 */
export async function readGoBuildInfo(readAt: ReadAt, size: number): Promise<GoBuildInfo | undefined> {
  const head = await readAt(0, 64);
  if (head.length < 64 || head.readUInt32BE(0) !== 0x7f454c46 || head[5] !== 1) return undefined;
  const is64 = head[4] === 2;
  const shoff = is64 ? Number(head.readBigUInt64LE(0x28)) : head.readUInt32LE(0x20);
  const shentsize = head.readUInt16LE(is64 ? 0x3a : 0x2e);
  const shnum = head.readUInt16LE(is64 ? 0x3c : 0x30);
  const shstrndx = head.readUInt16LE(is64 ? 0x3e : 0x32);
  if (!shoff || shentsize < (is64 ? 64 : 40) || shoff + shnum * shentsize > size || shstrndx >= shnum) return undefined;
  const table = await readAt(shoff, shnum * shentsize);
  const section = (i: number) => {
    const o = i * shentsize;
    return is64
      ? { name: table.readUInt32LE(o), offset: Number(table.readBigUInt64LE(o + 0x18)), size: Number(table.readBigUInt64LE(o + 0x20)) }
      : { name: table.readUInt32LE(o), offset: table.readUInt32LE(o + 0x10), size: table.readUInt32LE(o + 0x14) };
  };
  const strtab = section(shstrndx);
  if (strtab.offset + strtab.size > size || strtab.size > 1 << 20) return undefined;
  const names = await readAt(strtab.offset, strtab.size);
  let info: { offset: number; size: number } | undefined;
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    const end = names.indexOf(0, s.name);
    if (end > s.name && names.toString('latin1', s.name, end) === '.go.buildinfo') { info = s; break; }
  }
  if (!info || info.offset + 32 > size) return undefined;
  const data = await readAt(info.offset, Math.min(info.size, MAX_BUILDINFO, size - info.offset));
  return decodeBuildInfo(data);
}

/** The same, from a whole file in memory. */
export function parseGoBuildInfo(buf: Buffer): Promise<GoBuildInfo | undefined> {
  return readGoBuildInfo(async (offset, length) => buf.subarray(offset, offset + length), buf.length);
}

/** Module info bigger than this is not module info. */
const MAX_BUILDINFO = 16 << 20;

function decodeBuildInfo(data: Buffer): GoBuildInfo | undefined {
  if (data.length < 32 || data.toString('latin1', 0, 14) !== '\xff Go buildinf:') return undefined;
  const flags = data[15];
  if (!(flags & 2)) return undefined; // pre-1.18 pointer format: not read
  let pos = 32;
  const readString = (): string | undefined => {
    let n = 0;
    let shift = 0;
    for (;;) {
      if (pos >= data.length || shift > 28) return undefined;
      const b = data[pos++];
      n += (b & 0x7f) * 2 ** shift;
      if (!(b & 0x80)) break;
      shift += 7;
    }
    if (pos + n > data.length) return undefined;
    const s = data.toString('utf8', pos, pos + n);
    pos += n;
    return s;
  };
  const goVersion = readString();
  let mod = readString();
  if (goVersion === undefined || mod === undefined) return undefined;
  // The module info is framed by 16-byte sentinels.
  if (mod.length >= 33 && mod[mod.length - 17] === '\n') mod = mod.slice(16, -16);
  let main: { path: string; version: string } | undefined;
  const deps: { path: string; version: string }[] = [];
  for (const line of mod.split('\n')) {
    const f = line.split('\t');
    if (f[0] === 'mod' && f[1]) main = { path: f[1], version: f[2] ?? '' };
    else if (f[0] === 'dep' && f[1]) deps.push({ path: f[1], version: f[2] ?? '' });
    else if (f[0] === '=>' && f[1] && deps.length) deps[deps.length - 1] = { path: f[1], version: f[2] ?? '' };
  }
  return { goVersion, main, deps };
}

/** Scans a tree (an image's root filesystem, or a context directory). */
export async function scanTree(root: string, opts: { os?: boolean } = {}): Promise<ScanResult> {
  const osRelease = opts.os === false ? undefined : (await readInRoot(root, '/etc/os-release')) ?? (await readInRoot(root, '/usr/lib/os-release'));
  const distro = osRelease ? parseOsRelease(osRelease) : undefined;
  const packages: FoundPackage[] = opts.os === false ? [] : await osPackages(root, distro);
  const seenNpm = new Set<string>();
  const addNpm = (name: string, version: string, location: string, source: string, license?: string) => {
    const key = `${name}@${version}`;
    if (seenNpm.has(key)) return;
    seenNpm.add(key);
    packages.push({ type: 'npm', name, version, location, source, purl: npmPurl(name, version), ...(license ? { license } : {}) });
  };
  const lockfiles: string[] = [];
  const nodeModules: string[] = [];
  // Depth-first over directories (a stack: no queue that shifts).
  const stack: string[] = ['/'];
  while (stack.length) {
    const dir = stack.pop()!;
    let entries;
    try {
      entries = await fs.readdir(path.join(root, dir), { withFileTypes: true });
    } catch {
      continue;
    }
    const inNodeModules = dir.split('/').includes('node_modules');
    for (const e of entries) {
      const rel = path.posix.join(dir, e.name);
      if (e.isDirectory()) {
        if (SKIP_DIRS.has(rel)) continue;
        if (e.name.endsWith('.dist-info') || e.name.endsWith('.egg-info')) {
          const meta = await readInRoot(root, path.posix.join(rel, e.name.endsWith('.dist-info') ? 'METADATA' : 'PKG-INFO'));
          const p = meta === undefined ? undefined : parsePythonMetadata(meta);
          if (p) {
            packages.push({
              type: 'python', name: p.name, version: p.version, location: rel, source: 'installed python package metadata',
              purl: `pkg:pypi/${encodeURIComponent(p.name.toLowerCase().replace(/[-_.]+/g, '-'))}@${encodeURIComponent(p.version)}`, ...(p.license ? { license: p.license } : {}),
            });
          }
          continue;
        }
        stack.push(rel);
      } else if (e.isFile()) {
        if (e.name === 'package-lock.json' || e.name === 'npm-shrinkwrap.json') {
          if (!inNodeModules) lockfiles.push(rel);
        } else if (e.name === 'package.json' && inNodeModules && isPackageDir(dir)) {
          nodeModules.push(rel);
        } else if (e.name.endsWith('.egg-info')) {
          const meta = await readInRoot(root, rel);
          const p = meta === undefined ? undefined : parsePythonMetadata(meta);
          if (p) packages.push({ type: 'python', name: p.name, version: p.version, location: rel, source: 'installed python package metadata', purl: `pkg:pypi/${encodeURIComponent(p.name.toLowerCase())}@${encodeURIComponent(p.version)}` });
        } else if (opts.os !== false) {
          await maybeGoBinary(root, rel, packages);
        }
      }
    }
  }
  for (const f of lockfiles.sort()) {
    const text = await readInRoot(root, f);
    if (text !== undefined) for (const p of parseNpmLock(text)) addNpm(p.name, p.version, f, 'javascript npm package-lock', p.license);
  }
  for (const f of nodeModules.sort()) {
    const text = await readInRoot(root, f);
    if (text === undefined) continue;
    try {
      const pkg = JSON.parse(text) as { name?: string; version?: string; license?: string };
      if (typeof pkg.name === 'string' && typeof pkg.version === 'string') addNpm(pkg.name, pkg.version, f, 'javascript npm package', typeof pkg.license === 'string' ? pkg.license : undefined);
    } catch { /* not a package manifest */ }
  }
  return { packages, ...(distro ? { distro } : {}) };
}

/** `.../node_modules/name` or `.../node_modules/@scope/name`: a package's own directory. */
function isPackageDir(dir: string): boolean {
  const parent = path.posix.dirname(dir);
  if (path.posix.basename(parent) === 'node_modules') return !path.posix.basename(dir).startsWith('@');
  return path.posix.basename(parent).startsWith('@') && path.posix.basename(path.posix.dirname(parent)) === 'node_modules';
}

async function maybeGoBinary(root: string, rel: string, packages: FoundPackage[]): Promise<void> {
  const host = path.join(root, rel);
  let fh;
  try {
    const st = await fs.lstat(host);
    if (!st.isFile() || !(st.mode & 0o111) || st.size < 64 || st.size > MAX_BINARY) return;
    fh = await fs.open(host, 'r');
    const file = fh;
    const readAt: ReadAt = async (offset, length) => {
      const buf = Buffer.alloc(length);
      const { bytesRead } = await file.read(buf, 0, length, offset);
      return buf.subarray(0, bytesRead);
    };
    const info = await readGoBuildInfo(readAt, st.size);
    if (!info) return;
    const mods = [...(info.main && info.main.version && info.main.version !== '(devel)' ? [info.main] : []), ...info.deps];
    for (const m of mods) {
      packages.push({ type: 'go-module', name: m.path, version: m.version, location: rel, source: 'go module information', purl: `pkg:golang/${encodePurlSegment(m.path)}@${encodeURIComponent(m.version)}` });
    }
    packages.push({ type: 'go-module', name: 'stdlib', version: info.goVersion, location: rel, source: 'go module information', purl: `pkg:golang/stdlib@${encodeURIComponent(info.goVersion)}` });
  } catch {
    /* unreadable: not listed */
  } finally {
    await fh?.close();
  }
}
