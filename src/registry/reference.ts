// Image references normalized as Docker's distribution/reference does (ParseNormalizedNamed + TagNameOnly):
// `busybox` is `docker.io/library/busybox:latest`, a first component is a registry only when it looks like
// a host (has `.` or `:`, or is `localhost`), and a name without tag or digest gets `latest`.
import type { Digest } from '../../solver/llb/ops.js';
import { UserError } from '../util/errors.js';

export class InvalidReferenceError extends UserError {
  constructor(readonly input: string, detail?: string) {
    super('INVALID_REFERENCE', `invalid reference format: ${JSON.stringify(input)}${detail ? `: ${detail}` : ''}`);
  }
}

export const DEFAULT_DOMAIN = 'docker.io';
const LEGACY_DEFAULT_DOMAIN = 'index.docker.io';
const DOCKER_HUB_HOST = 'registry-1.docker.io';
const OFFICIAL_REPO_PREFIX = 'library/';

const DOMAIN_COMPONENT = /^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])$/;
const IPV6 = /^\[[a-fA-F0-9:]+\]$/;
const PORT = /^[0-9]+$/;
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const SHA256 = /^sha256:[0-9a-f]{64}$/;
const NAME_MAX = 255;

export class Reference {
  constructor(
    /** Registry name as users write it: `docker.io`, `127.0.0.1:5000`. */
    readonly domain: string,
    /** Repository path inside the registry: `library/busybox`. */
    readonly path: string,
    readonly tag?: string,
    readonly digest?: Digest,
  ) {}

  /** `docker.io/library/busybox`, without tag or digest. */
  get name(): string {
    return `${this.domain}/${this.path}`;
  }

  /** The shortest form Docker shows: `busybox`, `user/app`, `127.0.0.1:5000/x`. */
  get familiarName(): string {
    if (this.domain !== DEFAULT_DOMAIN) return this.name;
    return this.path.startsWith(OFFICIAL_REPO_PREFIX) ? this.path.slice(OFFICIAL_REPO_PREFIX.length) : this.path;
  }

  /** The host the distribution API is served from (Docker Hub's name differs from its API host). */
  get registryHost(): string {
    return this.domain === DEFAULT_DOMAIN ? DOCKER_HUB_HOST : this.domain;
  }

  withDigest(digest: Digest): Reference {
    if (!SHA256.test(digest)) throw new InvalidReferenceError(`${this.name}@${digest}`, 'invalid digest');
    return new Reference(this.domain, this.path, this.tag, digest);
  }

  toString(): string {
    return `${this.name}${this.tag ? `:${this.tag}` : ''}${this.digest ? `@${this.digest}` : ''}`;
  }
}

function validDomain(domain: string): boolean {
  let host = domain;
  const portAt = domain.lastIndexOf(':');
  if (portAt > domain.lastIndexOf(']')) {
    if (!PORT.test(domain.slice(portAt + 1))) return false;
    host = domain.slice(0, portAt);
  }
  return IPV6.test(host) || host.split('.').every((c) => DOMAIN_COMPONENT.test(c));
}

export function parseReference(input: string): Reference {
  let rest = input;
  let digest: Digest | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    // Content is only ever addressed by sha256 here, so other algorithms are refused up front.
    const d = rest.slice(at + 1);
    if (!SHA256.test(d)) throw new InvalidReferenceError(input, 'invalid digest (expected sha256:<64 hex digits>)');
    digest = d as Digest;
    rest = rest.slice(0, at);
  }
  // A tag is after the last `:` that follows the last `/` (an earlier `:` is a registry port).
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw new InvalidReferenceError(input, 'invalid tag');
  }
  if (!rest) throw new InvalidReferenceError(input);
  if (/^[a-f0-9]{64}$/.test(rest)) {
    throw new InvalidReferenceError(input, 'cannot specify 64-byte hexadecimal strings as a repository name');
  }

  let domain = DEFAULT_DOMAIN;
  let path = rest;
  const slash = rest.indexOf('/');
  if (slash >= 0) {
    const first = rest.slice(0, slash);
    if (/[.:]/.test(first) || first === 'localhost' || first.toLowerCase() !== first) {
      domain = first;
      path = rest.slice(slash + 1);
    }
  }
  if (!validDomain(domain)) throw new InvalidReferenceError(input, 'invalid registry name');
  if (domain === LEGACY_DEFAULT_DOMAIN) domain = DEFAULT_DOMAIN;
  if (domain === DEFAULT_DOMAIN && !path.includes('/')) path = OFFICIAL_REPO_PREFIX + path;
  if (path.toLowerCase() !== path) throw new InvalidReferenceError(input, `repository name (${path}) must be lowercase`);
  if (!path.split('/').every((c) => PATH_COMPONENT.test(c))) throw new InvalidReferenceError(input);
  if (domain.length + 1 + path.length > NAME_MAX) throw new InvalidReferenceError(input, `repository name must not be more than ${NAME_MAX} characters`);

  return new Reference(domain, path, tag ?? (digest ? undefined : 'latest'), digest);
}
