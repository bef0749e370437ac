// Registry authentication as the distribution token spec describes it: a 401 names a Bearer realm (or Basic),
// we get a token (anonymous, or with the user's credentials from the Docker config) for the host and scope,
// and retry. Tokens are cached per host and scope until they expire. Credentials come from ./credentials.ts.
import { lookupCredentials } from './credentials.js';
import type { HostTLS } from './hosts.js';
import { httpRequest } from './http.js';

export interface Credentials {
  username: string;
  password: string;
}

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** Parses `Bearer realm="https://auth",service="registry",scope="repository:x:pull"`. */
export function parseChallenge(header: string): Challenge | undefined {
  const m = /^\s*(\w+)\s*(.*)$/s.exec(header);
  if (!m) return undefined;
  const params: Record<string, string> = {};
  for (const p of m[2].matchAll(/(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g)) {
    params[p[1].toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : p[3];
  }
  return { scheme: m[1].toLowerCase(), params };
}

export class TokenFetchError extends Error {}

const DEFAULT_TOKEN_SECONDS = 60;

export class Authorizer {
  private readonly cache = new Map<string, { header: string; expires: number }>();

  constructor(
    private readonly credentials: (host: string) => Credentials | undefined = (h) => lookupCredentials(h),
    /** TLS for the token server, which is often the registry's own host with its own CA. */
    private readonly tls?: (host: string) => HostTLS,
  ) {}

  /** The Authorization header cached for this host and scope, if any. */
  header(host: string, scope: string): string | undefined {
    const key = `${host}|${scope}`;
    const hit = this.cache.get(key);
    if (hit && hit.expires > Date.now()) return hit.header;
    this.cache.delete(key);
    return undefined;
  }

  /**
   * Answers a 401's challenge; true when a retry may now succeed. Bearer tokens are anonymous unless the
   * Docker config has credentials for the host; Basic needs credentials.
   */
  async authorize(host: string, scope: string, wwwAuthenticate: string | null): Promise<boolean> {
    const challenge = wwwAuthenticate ? parseChallenge(wwwAuthenticate) : undefined;
    const creds = this.credentials(host);
    const key = `${host}|${scope}`;
    if (challenge?.scheme === 'basic') {
      if (!creds) return false;
      const header = `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
      this.cache.set(key, { header, expires: Number.POSITIVE_INFINITY });
      return true;
    }
    if (challenge?.scheme !== 'bearer' || !challenge.params.realm) return false;
    const url = new URL(challenge.params.realm);
    if (challenge.params.service) url.searchParams.set('service', challenge.params.service);
    // One scope parameter per repository, as distribution's token clients send them.
    for (const sc of scope.split(' ').filter(Boolean)) url.searchParams.append('scope', sc);
    const headers: Record<string, string> = {};
    if (creds) headers.authorization = `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
    const res = await httpRequest(url, { method: 'GET', headers, tls: this.tls });
    if (!res.ok) throw new TokenFetchError(`token request to ${url.origin} failed: ${res.status} ${res.statusText}`);
    const body = (await res.json()) as { token?: string; access_token?: string; expires_in?: number };
    const token = body.token ?? body.access_token;
    if (!token) throw new TokenFetchError(`token response from ${url.origin} has no token`);
    const seconds = body.expires_in && body.expires_in > 0 ? body.expires_in : DEFAULT_TOKEN_SECONDS;
    // Renew a little early so a token never expires between the check and the request.
    this.cache.set(key, { header: `Bearer ${token}`, expires: Date.now() + (seconds - 5) * 1000 });
    return true;
  }
}
