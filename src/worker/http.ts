// The HTTP source (ADD <url>): the response body becomes one file, as BuildKit's http source writes it:
// mode 0600, owned by root, its mtime the Last-Modified header (else the Unix epoch), its sha256 checked
// against a pinned `--checksum` before the build goes on.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { HttpSource } from '../../solver/llb/ops.js';
import { UserError } from '../util/errors.js';

export class HttpSourceError extends UserError {}

const MAX_REDIRECTS = 10;
/** The most ADD downloads from one URL (env BUILDER_ADD_MAX_BYTES overrides), so a hostile server cannot fill the disk. */
const MAX_BYTES = Number(process.env.BUILDER_ADD_MAX_BYTES) || 8 * 2 ** 30;

/** What a download found: the content's digest and the validators a later conditional request sends. */
export interface HttpFetched {
  digest: string;
  etag?: string;
  lastModified?: string;
}

/** Validators of an earlier download: sent as If-None-Match / If-Modified-Since. */
export interface HttpValidators {
  etag?: string;
  lastModified?: string;
}

/**
 * Downloads `source.url` into `dir/<filename>`. With `validators`, the request is conditional and a 304
 * answer returns null (nothing written): the earlier download is still current.
 */
export async function fetchHttpSource(
  source: HttpSource, dir: string, signal?: AbortSignal, limits = { maxBytes: MAX_BYTES, maxRedirects: MAX_REDIRECTS },
  validators?: HttpValidators,
): Promise<HttpFetched | null> {
  const headers: Record<string, string> = {};
  if (validators?.etag) headers['if-none-match'] = validators.etag;
  if (validators?.lastModified) headers['if-modified-since'] = validators.lastModified;
  const name = path.posix.basename(path.posix.join('/', source.filename)) || '__unnamed__';
  let resp: Response | undefined;
  let url = source.url;
  // Redirects are followed by hand: a bounded number, and only to http(s) (never file: or other schemes).
  for (let hops = 0; ; hops++) {
    if (!/^https?:\/\//i.test(url)) throw new HttpSourceError('HTTP_FAILED', `refusing to load ${url}: only http and https URLs are allowed`);
    try {
      resp = await fetch(url, { signal, redirect: 'manual', headers });
    } catch (e) {
      if (signal?.aborted) throw e;
      const cause = (e as { cause?: { message?: string } }).cause?.message ?? (e as Error).message;
      throw new HttpSourceError('HTTP_FAILED', `failed to load ${source.url}: ${cause}`);
    }
    const location = resp.headers.get('location');
    if (resp.status < 300 || resp.status >= 400 || !location) break;
    await resp.body?.cancel();
    if (hops >= limits.maxRedirects) throw new HttpSourceError('HTTP_FAILED', `failed to load ${source.url}: more than ${limits.maxRedirects} redirects`);
    url = new URL(location, url).toString();
  }
  if (resp.status === 304 && validators) {
    await resp.body?.cancel();
    return null;
  }
  if (resp.status < 200 || resp.status >= 300 || !resp.body) {
    await resp.body?.cancel();
    throw new HttpSourceError('HTTP_FAILED', `invalid response status ${resp.status}`);
  }
  const tooLarge = () => new HttpSourceError('HTTP_TOO_LARGE', `${source.url} is larger than the limit for ADD (${limits.maxBytes} bytes)`);
  if (Number(resp.headers.get('content-length') ?? 0) > limits.maxBytes) {
    await resp.body.cancel();
    throw tooLarge();
  }
  const file = path.join(dir, name);
  const hash = createHash('sha256');
  let received = 0;
  const hasher = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      received += chunk.length;
      if (received > limits.maxBytes) return cb(tooLarge());
      hash.update(chunk);
      cb(null, chunk);
    },
  });
  await pipeline(Readable.fromWeb(resp.body as import('node:stream/web').ReadableStream), hasher, fs.createWriteStream(file, { mode: 0o600 }), { signal });
  const digest = `sha256:${hash.digest('hex')}`;
  if (source.checksum && source.checksum !== digest) {
    throw new HttpSourceError('DIGEST_MISMATCH', `digest mismatch for ${source.url}: ${digest} (expected: ${source.checksum})`);
  }
  await fsp.chmod(file, 0o600);
  const lastModifiedHeader = resp.headers.get('last-modified') ?? undefined;
  const lastModified = Date.parse(lastModifiedHeader ?? '');
  const mtime = Number.isNaN(lastModified) ? 0 : lastModified / 1000;
  await fsp.utimes(file, mtime, mtime);
  const etag = resp.headers.get('etag') ?? undefined;
  return { digest, ...(etag ? { etag } : {}), ...(lastModifiedHeader ? { lastModified: lastModifiedHeader } : {}) };
}
