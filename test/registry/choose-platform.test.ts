import { describe, expect, it } from 'vitest';
import { choosePlatform } from '../../src/registry/client.js';
import type { Descriptor } from '../../src/image/types.js';

const m = (architecture: string, variant?: string): Descriptor => ({
  mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${architecture}${variant ?? ''}`, size: 1,
  platform: { os: 'linux', architecture, ...(variant ? { variant } : {}) },
});

describe('choosing a platform from an index (containerd rules)', () => {
  it('arm64 and arm64/v8 are the same platform', () => {
    expect(choosePlatform([m('amd64'), m('arm64', 'v8')], { os: 'linux', architecture: 'arm64' })?.digest).toBe('sha256:arm64v8');
    expect(choosePlatform([m('arm64')], { os: 'linux', architecture: 'arm64', variant: 'v8' })?.digest).toBe('sha256:arm64');
  });
  it('arm/v7 prefers v7, falls back to v6 then v5, never to a newer one', () => {
    expect(choosePlatform([m('arm', 'v6'), m('arm', 'v7')], { os: 'linux', architecture: 'arm', variant: 'v7' })?.digest).toBe('sha256:armv7');
    expect(choosePlatform([m('arm', 'v5'), m('arm', 'v6')], { os: 'linux', architecture: 'arm', variant: 'v7' })?.digest).toBe('sha256:armv6');
    expect(choosePlatform([m('arm', 'v7')], { os: 'linux', architecture: 'arm', variant: 'v6' })).toBeUndefined();
  });
});
