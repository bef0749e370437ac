// Platform strings (`linux/arm64/v8`) as buildx's --platform takes them.
import type { Platform } from '../../solver/llb/ops.js';
import { UserError } from '../util/errors.js';

const ARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };

export function hostPlatform(): Platform {
  const architecture = ARCH[process.arch] ?? process.arch;
  return architecture === 'arm' ? { os: 'linux', architecture, variant: 'v7' } : { os: 'linux', architecture };
}

export function parsePlatform(s: string): Platform {
  const parts = s.trim().toLowerCase().split('/');
  if (parts.length < 1 || parts.length > 3 || parts.some((p) => !p)) {
    throw new UserError('INVALID_PLATFORM', `invalid platform "${s}": expected os/arch[/variant]`);
  }
  if (parts.length === 1) {
    // buildx accepts a bare architecture (`arm64`) and assumes linux.
    parts.unshift('linux');
  }
  const [os, arch, variant] = parts;
  const architecture = ({ x86_64: 'amd64', x86: '386', aarch64: 'arm64', armhf: 'arm', armel: 'arm' } as Record<string, string>)[arch] ?? arch;
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
  if (out.length === 0) throw new UserError('INVALID_PLATFORM', `invalid platform "${s}"`);
  return out;
}
