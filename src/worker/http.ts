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

/** Downloads `source.url` into `dir/<filename>`; returns the content's digest. */
export async function fetchHttpSource(source: HttpSource, dir: string, signal?: AbortSignal): Promise<string> {
  const name = path.posix.basename(path.posix.join('/', source.filename)) || '__unnamed__';
  let resp: Response;
  try {
    resp = await fetch(source.url, { signal, redirect: 'follow' });
  } catch (e) {
    if (signal?.aborted) throw e;
    const cause = (e as { cause?: { message?: string } }).cause?.message ?? (e as Error).message;
    throw new HttpSourceError('HTTP_FAILED', `failed to load ${source.url}: ${cause}`);
  }
  if (resp.status < 200 || resp.status >= 400 || !resp.body) {
    await resp.body?.cancel();
    throw new HttpSourceError('HTTP_FAILED', `invalid response status ${resp.status}`);
  }
  const file = path.join(dir, name);
  const hash = createHash('sha256');
  const hasher = new Transform({ transform(chunk, _enc, cb) { hash.update(chunk); cb(null, chunk); } });
  await pipeline(Readable.fromWeb(resp.body as import('node:stream/web').ReadableStream), hasher, fs.createWriteStream(file, { mode: 0o600 }), { signal });
  const digest = `sha256:${hash.digest('hex')}`;
  if (source.checksum && source.checksum !== digest) {
    throw new HttpSourceError('DIGEST_MISMATCH', `digest mismatch for ${source.url}: ${digest} (expected: ${source.checksum})`);
  }
  await fsp.chmod(file, 0o600);
  const lastModified = Date.parse(resp.headers.get('last-modified') ?? '');
  const mtime = Number.isNaN(lastModified) ? 0 : lastModified / 1000;
  await fsp.utimes(file, mtime, mtime);
  return digest;
}
