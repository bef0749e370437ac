// The library API: a context given as a tar stream and a Dockerfile given as text, progress as events.
import { describe, it, expect, inject } from 'vitest';
import { spawn } from 'node:child_process';
import { PassThrough, Readable } from 'node:stream';
import fs from 'node:fs/promises';
import path from 'node:path';
import { build, progressStream, BuildError, type ProgressEvent } from '../../src/index.js';
import { makeContext, tempDir } from '../helpers/cli.js';

const registry = inject('registry');

describe('build() from a tar stream and Dockerfile text', () => {
  it('builds, streaming typed progress events', async () => {
    const ctx = await makeContext({ 'data/f.txt': 'from the tar\n' });
    // Read into a PassThrough at once: Node discards a child's unread stdout when the child exits.
    const tar = spawn('tar', ['-c', '-f', '-', '-C', ctx, '.'], { stdio: ['ignore', 'pipe', 'inherit'] }).stdout.pipe(new PassThrough());
    const dest = await tempDir('builder-api-out-');
    const stream = progressStream((progress) => build({
      context: tar,
      dockerfile: `FROM ${registry}/busybox:1.35\nCOPY data/f.txt /f.txt\nRUN echo ran && cat /f.txt > /copy\n`,
      outputs: [`type=local,dest=${dest}`],
      root: ctx + '-root',
      progress,
    }));
    const events: ProgressEvent[] = [];
    for await (const e of stream) events.push(e);
    await stream.result;
    expect(await fs.readFile(path.join(dest, 'copy'), 'utf8')).toBe('from the tar\n');
    const runStart = events.find((e) => e.type === 'start' && /RUN echo ran/.test(e.name));
    expect(runStart).toBeTruthy();
    expect(events.some((e) => e.type === 'log' && e.id === (runStart as { id: string }).id && e.data.includes('ran'))).toBe(true);
    expect(events.some((e) => e.type === 'done' && e.id === (runStart as { id: string }).id)).toBe(true);
  });

  it('a stream that is not a tar is a clear error', async () => {
    const err = await build({ context: Readable.from([Buffer.from('not a tar'.repeat(100))]), dockerfile: 'FROM scratch\n', root: await tempDir('builder-root-') })
      .catch((e) => e);
    expect(err).toBeInstanceOf(BuildError);
    expect(err.message).toMatch(/^unable to prepare context: not a readable tar stream/);
  });
});
