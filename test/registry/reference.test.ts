import { describe, expect, it } from 'vitest';
import { InvalidReferenceError, parseReference } from '../../src/registry/reference.js';

const DIGEST = `sha256:${'a'.repeat(64)}`;

describe('parseReference', () => {
  it.each([
    ['busybox', 'docker.io/library/busybox:latest', 'busybox'],
    ['busybox:1.35', 'docker.io/library/busybox:1.35', 'busybox'],
    ['user/app', 'docker.io/user/app:latest', 'user/app'],
    ['docker.io/library/busybox', 'docker.io/library/busybox:latest', 'busybox'],
    ['index.docker.io/library/busybox:1', 'docker.io/library/busybox:1', 'busybox'],
    ['127.0.0.1:5000/busybox:1.35', '127.0.0.1:5000/busybox:1.35', '127.0.0.1:5000/busybox'],
    ['localhost/x', 'localhost/x:latest', 'localhost/x'],
    ['localhost:5000/a/b/c:v1.0-rc_1', 'localhost:5000/a/b/c:v1.0-rc_1', 'localhost:5000/a/b/c'],
    ['ghcr.io/owner/repo', 'ghcr.io/owner/repo:latest', 'ghcr.io/owner/repo'],
    ['[::1]:5000/x:2', '[::1]:5000/x:2', '[::1]:5000/x'],
    [`busybox@${DIGEST}`, `docker.io/library/busybox@${DIGEST}`, 'busybox'],
    [`busybox:1.35@${DIGEST}`, `docker.io/library/busybox:1.35@${DIGEST}`, 'busybox'],
    ['my_org/my-app__x.y', 'docker.io/my_org/my-app__x.y:latest', 'my_org/my-app__x.y'],
  ])('%s -> %s', (input, full, familiar) => {
    const ref = parseReference(input);
    expect(ref.toString()).toBe(full);
    expect(ref.familiarName).toBe(familiar);
  });

  it('splits domain, path, tag and digest', () => {
    const ref = parseReference(`127.0.0.1:5000/team/app:1@${DIGEST}`);
    expect(ref).toMatchObject({ domain: '127.0.0.1:5000', path: 'team/app', tag: '1', digest: DIGEST });
    expect(ref.name).toBe('127.0.0.1:5000/team/app');
    expect(ref.registryHost).toBe('127.0.0.1:5000');
  });

  it('talks to registry-1.docker.io for docker.io', () => {
    expect(parseReference('busybox').registryHost).toBe('registry-1.docker.io');
  });

  it('pins with withDigest, keeping the tag', () => {
    const ref = parseReference('busybox:1.35').withDigest(DIGEST);
    expect(ref.toString()).toBe(`docker.io/library/busybox:1.35@${DIGEST}`);
    expect(parseReference(ref.toString()).toString()).toBe(ref.toString());
  });

  it.each([
    ['', /invalid reference format/],
    ['Busybox', /must be lowercase/],
    ['docker.io/Library/busybox', /must be lowercase/],
    ['busybox:', /invalid tag/],
    ['busybox:bad tag', /invalid tag/],
    [`busybox:${'x'.repeat(129)}`, /invalid tag/],
    ['busybox@sha256:abc', /invalid digest/],
    ['a'.repeat(64), /64-byte hexadecimal/],
    ['-bad/x', /invalid reference format/],
    ['bad..name/x', /invalid registry name/],
    ['registry:notaport/x', /invalid registry name/],
    ['x//y', /invalid reference format/],
    ['foo/bar-', /invalid reference format/],
  ])('rejects %j', (input, message) => {
    let err: unknown;
    try {
      parseReference(input);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InvalidReferenceError);
    expect((err as InvalidReferenceError).code).toBe('INVALID_REFERENCE');
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message).not.toContain('\n');
  });
});
