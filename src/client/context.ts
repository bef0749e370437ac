// A build context given as a tar stream (an embedder's, `builder build -`, or a `builder serve` request body),
// unpacked into a private temporary directory. Compressed streams (gzip, bzip2, xz, zstd) are recognized by
// their magic bytes, as BuildKit does. GNU tar refuses `..` members and strips leading slashes, so nothing
// lands outside the directory.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { Readable } from 'node:stream';
import { detectCompression, isTarHeader } from '../worker/unpack.js';
import { UserError } from '../util/errors.js';
import { MAX_DOCKERFILE_BYTES } from '../../frontend/index.js';

export class ContextTarError extends Error {
  readonly code = 'BAD_CONTEXT';
}

/** GNU tar's flag for each compression: it only guesses by content when reading a file, not a pipe. */
const TAR_FLAG = { none: [], gzip: ['-z'], bzip2: ['-j'], xz: ['-J'], zstd: ['--zstd'] } as const;

/** Reads up to `n` bytes from the start of a stream; returns them and a stream that replays them, then the rest. */
async function peek(input: NodeJS.ReadableStream, n: number): Promise<{ head: Buffer; stream: Readable }> {
  const source = input instanceof Readable ? input : new Readable().wrap(input);
  const chunks: Buffer[] = [];
  let have = 0;
  const iterator = source[Symbol.asyncIterator]();
  let done = false;
  while (have < n) {
    const next = await iterator.next();
    if (next.done) { done = true; break; }
    const chunk = Buffer.isBuffer(next.value) ? next.value : Buffer.from(next.value as string);
    chunks.push(chunk);
    have += chunk.length;
  }
  const head = Buffer.concat(chunks);
  async function* replay(): AsyncGenerator<Buffer> {
    try {
      yield head;
      if (done) return;
      for (let next = await iterator.next(); !next.done; next = await iterator.next()) yield next.value as Buffer;
    } finally {
      // A reader that stops early lets go of the source too.
      await iterator.return?.();
    }
  }
  return { head: head.subarray(0, n), stream: Readable.from(replay(), { objectMode: false }) };
}

export async function unpackContext(input: NodeJS.ReadableStream): Promise<{ dir: string; remove(): Promise<void> }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'builder-ctx-'));
  const remove = () => fs.rm(dir, { recursive: true, force: true });
  try {
    const { head, stream } = await peek(input, 8);
    const compression = detectCompression(head);
    await new Promise<void>((resolve, reject) => {
      const tar = spawn('tar', ['-x', ...TAR_FLAG[compression], '-f', '-', '-C', dir, '--no-same-owner', '--no-overwrite-dir'], { stdio: ['pipe', 'ignore', 'pipe'] });
      let stderr = '';
      tar.stderr.on('data', (d) => (stderr += d));
      tar.on('error', reject);
      tar.on('close', (code) => (code === 0 ? resolve() : reject(new ContextTarError(stderr.trim().split('\n').slice(0, 2).join('; ') || `tar exited with ${code}`))));
      stream.on('error', (e) => { tar.stdin.destroy(); reject(e); });
      stream.pipe(tar.stdin);
      tar.stdin.on('error', () => undefined);
    });
  } catch (e) {
    await remove();
    throw e;
  }
  return { dir, remove };
}

/** What `builder build -` read from standard input: a context archive, or a Dockerfile (with an empty context). */
export type StdinSource = { context: Readable; dockerfile?: undefined } | { context?: undefined; dockerfile: string };

/**
 * Standard input as buildx reads it for the context `-`: a tar (plain or compressed, told by its first bytes) is
 * the context, with its Dockerfile inside; anything else is the Dockerfile, built with an empty context.
 */
export async function readStdinSource(input: NodeJS.ReadableStream): Promise<StdinSource> {
  // buildx peeks two tar blocks: a compression magic, or a valid first tar header.
  const { head, stream } = await peek(input, 1024);
  if (head.length === 0) throw new UserError('EMPTY_STDIN', 'unable to prepare context: standard input is empty (expected a Dockerfile or a context tar)');
  if (detectCompression(head) !== 'none' || isTarHeader(head.subarray(0, 512))) return { context: stream };
  return { dockerfile: await readDockerfileStream(stream) };
}

/**
 * A Dockerfile from a stream (`-` or `-f -`), read as from a file: one byte over the frontend's limit at most,
 * enough for it to name the line past the limit; an endless stream is not read on until memory runs out.
 */
export async function readDockerfileStream(input: NodeJS.ReadableStream): Promise<string> {
  const max = MAX_DOCKERFILE_BYTES + 1;
  const chunks: Buffer[] = [];
  let total = 0;
  // Leaving the loop early destroys the stream: nothing more is read.
  for await (const chunk of input) {
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string);
    chunks.push(buf.subarray(0, max - total));
    total += Math.min(buf.length, max - total);
    if (total >= max) break;
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** An empty context: the tar of an empty directory (two zero blocks). */
export function emptyContext(): Readable {
  return Readable.from([Buffer.alloc(1024)]);
}
