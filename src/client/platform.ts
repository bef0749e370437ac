// Platform strings (`linux/arm64/v8`) as buildx's --platform takes them.
import type { Platform } from '../../solver/llb/ops.js';
import { UserError } from '../util/errors.js';

const ARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };

export function hostPlatform(): Platform {
  const architecture = ARCH[process.arch] ?? process.arch;
  return architecture === 'arm' ? { os: 'linux', architecture, variant: 'v7' } : { os: 'linux', architecture };
}

// The operating systems and architectures Go knows (containerd's platforms package checks against them): a
// platform outside them cannot run anywhere, so it is refused when parsed rather than at the first FROM.
const KNOWN_OS = new Set(['aix', 'android', 'darwin', 'dragonfly', 'freebsd', 'hurd', 'illumos', 'ios', 'js', 'linux', 'nacl', 'netbsd', 'openbsd', 'plan9', 'solaris', 'wasip1', 'windows', 'zos']);
const KNOWN_ARCH = new Set(['386', 'amd64', 'amd64p32', 'arm', 'armbe', 'arm64', 'arm64be', 'loong64', 'mips', 'mipsle', 'mips64', 'mips64le', 'mips64p32', 'mips64p32le', 'ppc', 'ppc64', 'ppc64le', 'riscv', 'riscv64', 's390', 's390x', 'sparc', 'sparc64', 'wasm']);
const ARCH_ALIASES: Record<string, string> = { x86_64: 'amd64', 'x86-64': 'amd64', x86: '386', i386: '386', aarch64: 'arm64', armhf: 'arm', armel: 'arm' };

export class InvalidPlatformError extends UserError {
  constructor(s: string, why: string) { super('INVALID_PLATFORM', `invalid platform "${s}": ${why}`); }
}

export function parsePlatform(s: string): Platform {
  // buildx: `local` is the platform of the machine building.
  if (s.trim().toLowerCase() === 'local') return hostPlatform();
  const parts = s.trim().toLowerCase().split('/');
  if (parts.length > 3 || parts.some((p) => !p)) throw new InvalidPlatformError(s, 'expected os/arch[/variant]');
  const bad = parts.find((p) => !/^[a-z0-9_.-]+$/.test(p));
  if (bad !== undefined) throw new InvalidPlatformError(s, `"${bad}" is not a valid component`);
  if (parts.length === 1) {
    // As containerd: a lone OS takes the host's architecture, a lone architecture (`arm64`) means linux.
    if (KNOWN_OS.has(parts[0])) parts.push(hostPlatform().architecture);
    else if (KNOWN_ARCH.has(ARCH_ALIASES[parts[0]] ?? parts[0])) parts.unshift('linux');
    else throw new InvalidPlatformError(s, 'unknown operating system or architecture');
  }
  const [os, arch, variant] = parts;
  const architecture = ARCH_ALIASES[arch] ?? arch;
  if (!KNOWN_OS.has(os)) throw new InvalidPlatformError(s, `unknown operating system "${os}"`);
  if (!KNOWN_ARCH.has(architecture)) throw new InvalidPlatformError(s, `unknown architecture "${arch}"`);
  // Normalized as containerd (and so BuildKit) does: arm64/v8 is plain arm64, arm without a variant is v7.
  if (architecture === 'arm64' && (!variant || variant === 'v8' || variant === '8')) return { os, architecture };
  if (architecture === 'arm') return { os, architecture, variant: !variant ? 'v7' : /^\d+$/.test(variant) ? `v${variant}` : variant };
  return variant ? { os, architecture, variant } : { os, architecture };
}

export function formatPlatform(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/');
}

/** `--platform linux/amd64,linux/arm64`: distinct platforms, in the order given. */
export function parsePlatforms(s: string): Platform[] {
  const out: Platform[] = [];
  for (const part of s.split(',').map((x) => x.trim()).filter(Boolean)) {
    const p = parsePlatform(part);
    if (!out.some((q) => formatPlatform(q) === formatPlatform(p))) out.push(p);
  }
  if (out.length === 0) throw new InvalidPlatformError(s, 'expected os/arch[/variant]');
  return out;
}
