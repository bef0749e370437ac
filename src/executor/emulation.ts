// QEMU user-mode emulation for RUN steps of another architecture: the kernel's binfmt_misc runs foreign ELF
// binaries through a registered QEMU interpreter. With the fix-binary flag (F) the kernel opens the
// interpreter at registration, so nothing is needed inside the image, as with tonistiigi/binfmt.
import fs from 'node:fs/promises';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Platform } from '../../solver/llb/ops.js';
import { UserError } from '../util/errors.js';

// Made when first used: child_process is not loaded by a build that runs no container (see scripts/build-cli.mjs).
const run = (file: string, args: string[]) => promisify(execFile)(file, args);

export const BINFMT_DIR = '/proc/sys/fs/binfmt_misc';
/** Debian's binfmt-support formats (qemu-user-static installs one per emulator). */
export const BINFMTS_DIR = '/usr/share/binfmts';

/** QEMU's name for an OCI architecture. */
const QEMU_ARCH: Record<string, string> = {
  amd64: 'x86_64', '386': 'i386', arm64: 'aarch64', arm: 'arm', ppc64le: 'ppc64le', s390x: 's390x',
  riscv64: 'riscv64', mips64le: 'mips64el', mips64: 'mips64', loong64: 'loongarch64',
};

/** Architectures a host runs without emulation. */
const NATIVE: Record<string, string[]> = { amd64: ['amd64', '386'], arm64: ['arm64'], '386': ['386'] };

export class EmulatorMissingError extends UserError {
  constructor(message: string) { super('EMULATOR_MISSING', message); }
}

/** This machine's platform, in OCI terms. */
export function nativePlatform(): Platform {
  const architecture = ({ x64: 'amd64', ia32: '386', ppc64: 'ppc64le' } as Record<string, string>)[process.arch] ?? process.arch;
  return { os: 'linux', architecture };
}

export function needsEmulation(platform: Platform, host: Platform): boolean {
  return !(NATIVE[host.architecture] ?? [host.architecture]).includes(platform.architecture);
}

interface BinfmtEntry { name: string; enabled: boolean; interpreter: string; flags: string }

async function readEntries(dir: string): Promise<BinfmtEntry[]> {
  const names = await fs.readdir(dir).catch(() => [] as string[]);
  const out: BinfmtEntry[] = [];
  for (const name of names) {
    if (name === 'register' || name === 'status') continue;
    const text = await fs.readFile(path.join(dir, name), 'utf8').catch(() => '');
    out.push({
      name,
      enabled: /^enabled$/m.test(text),
      interpreter: /^interpreter (.*)$/m.exec(text)?.[1] ?? '',
      flags: /^flags: ?(.*)$/m.exec(text)?.[1] ?? '',
    });
  }
  return out;
}

/**
 * Checks that `platform` binaries can run on this host; throws an error that says how to fix it when not.
 * Memoized per platform for the process: registrations do not change during a build.
 */
const checked = new Map<string, Promise<void>>();
export function ensureEmulator(platform: Platform, host: Platform = nativePlatform(), binfmtDir = BINFMT_DIR): Promise<void> {
  if (!needsEmulation(platform, host)) return Promise.resolve();
  const key = `${binfmtDir}|${platform.architecture}`;
  let p = checked.get(key);
  if (!p) {
    p = checkEmulator(platform, host, binfmtDir);
    p.catch(() => checked.delete(key));
    checked.set(key, p);
  }
  return p;
}

async function checkEmulator(platform: Platform, host: Platform, binfmtDir: string): Promise<void> {
  const qemu = QEMU_ARCH[platform.architecture] ?? platform.architecture;
  const want = `${platform.os}/${platform.architecture}${platform.variant ? `/${platform.variant}` : ''}`;
  const fix = 'install QEMU user emulation with "apt-get install qemu-user-static binfmt-support", then run "builder install-emulators" as root';
  const entries = await readEntries(binfmtDir);
  const entry = entries.find((e) => e.name === `qemu-${qemu}` || path.basename(e.interpreter).startsWith(`qemu-${qemu}`)
    || path.basename(e.interpreter).startsWith(`${qemu}-binfmt`));
  const prefix = `cannot run ${want} binaries on this ${host.os}/${host.architecture} host`;
  if (!entry) throw new EmulatorMissingError(`${prefix}: no QEMU emulator for ${qemu} is registered in binfmt_misc; ${fix}`);
  if (!entry.enabled) throw new EmulatorMissingError(`${prefix}: the binfmt_misc entry ${entry.name} is disabled; run "builder install-emulators" as root`);
  if (!entry.flags.includes('F')) {
    throw new EmulatorMissingError(`${prefix}: the binfmt_misc entry ${entry.name} lacks the fix-binary (F) flag, so its interpreter would have to exist inside the image; run "builder install-emulators" as root`);
  }
}

/**
 * The linux platforms this host runs through a usable QEMU registration (enabled, fix-binary), among the
 * architectures OCI names; what `builder serve` reports as emulated besides its native platforms.
 */
export async function emulatedPlatforms(host: Platform = nativePlatform(), binfmtDir = BINFMT_DIR): Promise<Platform[]> {
  const out: Platform[] = [];
  for (const architecture of Object.keys(QEMU_ARCH)) {
    const platform: Platform = { os: 'linux', architecture, ...(architecture === 'arm' ? { variant: 'v7' } : {}) };
    if (!needsEmulation(platform, host)) continue;
    if (await checkEmulator(platform, host, binfmtDir).then(() => true, () => false)) out.push(platform);
  }
  return out;
}

export interface InstalledEmulator { name: string; status: 'registered' | 'already registered' | 'failed'; message?: string }

/**
 * Registers (with the fix-binary flag) every QEMU emulator Debian's qemu-user-static installed, using
 * binfmt-support's own formats; mounts binfmt_misc first when needed. Needs root.
 */
export async function installEmulators(): Promise<InstalledEmulator[]> {
  if (process.getuid?.() !== 0) throw new UserError('NOT_ROOT', 'install-emulators must run as root (it registers binfmt_misc handlers)');
  await fs.access(path.join(BINFMT_DIR, 'register')).catch(async () => {
    await run('mount', ['-t', 'binfmt_misc', 'binfmt_misc', BINFMT_DIR]).catch((e) => {
      throw new UserError('BINFMT_UNAVAILABLE', `binfmt_misc is not available: ${String(e.stderr || e.message).trim()}`);
    });
  });
  const formats = (await fs.readdir(BINFMTS_DIR).catch(() => [] as string[])).filter((n) => n.startsWith('qemu-'));
  if (formats.length === 0) {
    throw new UserError('EMULATOR_MISSING', 'no QEMU emulators are installed: apt-get install qemu-user-static binfmt-support');
  }
  const entries = new Map((await readEntries(BINFMT_DIR)).map((e) => [e.name, e]));
  const host = QEMU_ARCH[nativePlatform().architecture];
  const results: InstalledEmulator[] = [];
  for (const name of formats.sort()) {
    if (name === `qemu-${host}`) continue;
    const e = entries.get(name);
    if (e?.enabled && e.flags.includes('F')) {
      results.push({ name, status: 'already registered' });
      continue;
    }
    try {
      // --import (re)reads the format file; --enable writes it into the kernel's register.
      await run('update-binfmts', ['--import', name]).catch(() => undefined);
      await run('update-binfmts', ['--enable', name]);
      results.push({ name, status: 'registered' });
    } catch (err) {
      results.push({ name, status: 'failed', message: String((err as { stderr?: string }).stderr || (err as Error).message).trim() });
    }
  }
  return results;
}
