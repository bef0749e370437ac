// Platform strings (`linux/arm64/v8`) as buildx's --platform takes them.
import type { Platform } from '../../solver/llb/ops.js';
import { UserError } from '../util/errors.js';

const ARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };

export function hostPlatform(): Platform {
  const architecture = ARCH[process.arch] ?? process.arch;
  return architecture === 'arm64' ? { os: 'linux', architecture, variant: 'v8' } : { os: 'linux', architecture };
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
  if (architecture === 'arm64') return { os, architecture, variant: variant ?? 'v8' };
  return variant ? { os, architecture, variant } : { os, architecture };
}

export function formatPlatform(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/');
}
