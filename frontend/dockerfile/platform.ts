// Platform strings (`linux/arm64`, `linux/arm/v7`) as FROM --platform and the TARGET*/BUILD* args use them.
import type { Platform } from '../../solver/llb/ops.js';

const ARCH_ALIASES: Record<string, Platform['architecture']> = {
  x86_64: 'amd64', 'x86-64': 'amd64', aarch64: 'arm64', i386: '386', i686: '386', armhf: 'arm', armel: 'arm',
};

/** `os/arch[/variant]` normalized like containerd (aarch64 -> arm64, arm defaults to v7); undefined if malformed. */
export function parsePlatform(spec: string): Platform | undefined {
  const parts = spec.toLowerCase().split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !/^[a-z0-9_.-]+$/.test(p))) return undefined;
  const [os, rawArch, rawVariant] = parts;
  const architecture = ARCH_ALIASES[rawArch] ?? rawArch;
  let variant: string | undefined = rawVariant;
  if (rawArch === 'armel') variant = 'v6';
  if (architecture === 'arm' && !variant) variant = 'v7';
  if (architecture === 'arm64' && variant === 'v8') variant = undefined;
  if (architecture === 'arm' && variant && /^\d+$/.test(variant)) variant = `v${variant}`;
  return { os, architecture, ...(variant ? { variant } : {}) };
}

export function formatPlatform(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/');
}
