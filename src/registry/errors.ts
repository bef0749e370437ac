// What can go wrong talking to a registry, as one-line user errors: the reference names what was wanted.
import { UserError } from '../util/errors.js';
import { DOCKER_CERTS_DIR } from './hosts.js';

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
    super('REGISTRY_UNREACHABLE', `${ref}: cannot reach registry ${host}: ${describeNetworkError(cause, host)}`, { cause });
  }
}

/**
 * The registry's TLS certificate was refused (or it wants ours): one line naming the host, the problem in
 * Go's words (what Docker users search for) with Node's detail, and how to fix it.
 */
export class RegistryCertificateError extends UserError {
  constructor(readonly host: string, problem: string, detail: string, remedy: string, cause: unknown) {
    // OpenSSL's messages may span lines.
    super('REGISTRY_CERTIFICATE', `registry ${host}: ${problem} (${detail.replace(/\s+/g, ' ').trim()}); ${remedy}`, { cause });
  }
}

/** Node's certificate verification codes that mean "no trusted CA signed this". */
const UNKNOWN_AUTHORITY = new Set([
  'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'CERT_UNTRUSTED', 'CERT_SIGNATURE_FAILURE',
]);

/** A failed request as the user error it is: a certificate problem, or a registry that cannot be reached. */
export function networkError(ref: string, host: string, err: unknown): UserError {
  return certificateError(host, err) ?? new RegistryUnreachableError(ref, host, err);
}

/** The certificate problem behind a failed request, if that is what it is. */
export function certificateError(host: string, err: unknown): RegistryCertificateError | undefined {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    const code = String((e as { code?: unknown }).code ?? '');
    const certDir = `${DOCKER_CERTS_DIR}/${host}`;
    const insecure = `or use --insecure-registry ${host}`;
    if (UNKNOWN_AUTHORITY.has(code)) {
      return new RegistryCertificateError(host, 'certificate signed by unknown authority', `x509: ${e.message}`,
        `trust its CA in ${certDir}/ca.crt or NODE_EXTRA_CA_CERTS, ${insecure}`, err);
    }
    if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
      const names = (e as { cert?: { subjectaltname?: string } }).cert?.subjectaltname;
      const name = host.replace(/:\d+$/, '');
      return new RegistryCertificateError(host, `certificate is not valid for ${name}`, names ? `x509: certificate is valid for ${names}, not ${name}` : `x509: ${e.message}`,
        `the registry must present a certificate for ${name}, ${insecure}`, err);
    }
    if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') {
      return new RegistryCertificateError(host, code === 'CERT_HAS_EXPIRED' ? 'certificate has expired' : 'certificate is not yet valid',
        `x509: ${e.message}`, `renew the registry's certificate (or check the clock), ${insecure}`, err);
    }
    if (/^ERR_SSL_.*ALERT_(CERTIFICATE_REQUIRED|BAD_CERTIFICATE|UNKNOWN_CA|CERTIFICATE_UNKNOWN)$/.test(code)) {
      // OpenSSL's message is its whole error stack; its reason is the alert the registry sent.
      const reason = (e as { reason?: unknown }).reason;
      return new RegistryCertificateError(host, 'the registry did not accept a client certificate', `TLS: ${typeof reason === 'string' ? reason : e.message}`,
        `put the client certificate it trusts in ${certDir}/client.cert and its key in client.key, or "keypair" in the builder config`, err);
    }
    if (/^(CERT_|ERR_TLS_CERT|UNABLE_TO_)/.test(code)) {
      return new RegistryCertificateError(host, 'certificate refused', `x509: ${e.message}`, `check the registry's certificate, ${insecure}`, err);
    }
  }
  return undefined;
}

/** Anything else the registry answered that we cannot use (5xx, malformed JSON, unknown media type). */
export class RegistryResponseError extends UserError {
  constructor(ref: string, detail: string) {
    super('REGISTRY_ERROR', `${ref}: ${detail}`);
  }
}

/**
 * A download whose connection kept being cut (or whose body kept ending short) until the retries ran out:
 * what was being pulled, from where, how far it got.
 */
export class DownloadCutError extends UserError {
  constructor(what: string, host: string, received: number, total: number | undefined, attempts: number, ended: boolean, cause?: unknown) {
    const progress = `${humanSize(received)}${total === undefined ? '' : ` of ${humanSize(total)}`}`;
    super('DOWNLOAD_CUT', `pulling ${what} from ${host}: ${ended ? 'response ended' : 'connection cut'} after ${progress} (${attempts} attempt${attempts === 1 ? '' : 's'})`, { cause });
  }
}

/** Decimal units with one decimal, as Docker's progress (`1.2 MB`). */
export function humanSize(n: number): string {
  if (n < 1000) return `${n} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let v = n / 1000;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return `${v.toFixed(1)} ${units[i]}`;
}

/** undici's `fetch failed` hides the useful part (`connect ECONNREFUSED 127.0.0.1:5000`) in its cause. */
function describeNetworkError(err: unknown, host: string): string {
  let e: unknown = err;
  for (let c: unknown = err; c instanceof Error; c = c.cause) {
    // What Go (and so Docker) says when an HTTPS request meets a plain HTTP server.
    if ((c as { code?: string }).code === 'ERR_SSL_WRONG_VERSION_NUMBER' || /:wrong version number:/.test(c.message)) {
      return `server gave HTTP response to HTTPS client (TLS: wrong version number); for a plain HTTP registry use --insecure-registry ${host} or "http": true in the builder config`;
    }
  }
  while (e instanceof Error && e.cause instanceof Error) e = e.cause;
  if (e instanceof AggregateError && e.errors.length > 0 && e.errors[0] instanceof Error) e = e.errors[0];
  // OpenSSL's messages (a plain HTTP server answering a TLS hello) span lines.
  return (e instanceof Error ? e.message : String(e)).replace(/\s+/g, ' ').trim();
}
