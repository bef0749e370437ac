// What can go wrong talking to a registry, as one-line user errors: the reference names what was wanted.
import { UserError } from '../util/errors.js';

export class ImageNotFoundError extends UserError {
  constructor(ref: string) {
    super('NOT_FOUND', `${ref}: not found`);
  }
}

/** Worded as containerd/BuildKit word it, so users can search for it. */
export class NoMatchingPlatformError extends UserError {
  constructor(ref: string, readonly platform: string) {
    super('NO_MATCHING_PLATFORM', `${ref} for ${platform}: no match for platform in manifest: not found`);
  }
}

export class UnauthorizedError extends UserError {
  constructor(ref: string, readonly host: string, access: 'pull' | 'push', detail: string) {
    super('UNAUTHORIZED', access === 'push'
      ? `${ref}: push access denied by registry ${host}: ${detail}`
      : `${ref}: pull access denied by registry ${host}, repository does not exist or may require authorization: ${detail}`);
  }
}

export class LoginError extends UserError {
  constructor(readonly host: string, detail: string) {
    super('LOGIN_FAILED', `login to registry ${host} failed: ${detail}`);
  }
}

export class RegistryUnreachableError extends UserError {
  constructor(ref: string, host: string, cause: unknown) {
    super('REGISTRY_UNREACHABLE', `${ref}: cannot reach registry ${host}: ${describeNetworkError(cause)}`, { cause });
  }
}

/** Anything else the registry answered that we cannot use (5xx, malformed JSON, unknown media type). */
export class RegistryResponseError extends UserError {
  constructor(ref: string, detail: string) {
    super('REGISTRY_ERROR', `${ref}: ${detail}`);
  }
}

/** undici's `fetch failed` hides the useful part (`connect ECONNREFUSED 127.0.0.1:5000`) in its cause. */
function describeNetworkError(err: unknown): string {
  let e: unknown = err;
  while (e instanceof Error && e.cause instanceof Error) e = e.cause;
  if (e instanceof AggregateError && e.errors.length > 0 && e.errors[0] instanceof Error) e = e.errors[0];
  return e instanceof Error ? e.message : String(e);
}
