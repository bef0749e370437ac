// File names are bytes: a context file whose name is not valid UTF-8 (at the top and in a subdirectory) is
// copied with its exact name into the snapshot (a RUN reads it), the local output and the OCI layer tar (a
// PAX path record holding the raw bytes, as Go's archive/tar writes it); a wildcard COPY matches such a name
// and ADD extracts one from an archive. The context checksum tells such names apart by their bytes: a second
// build is a cache hit, an edit or a rename to other bytes is a miss.
import { describe, it, expect, inject, beforeAll } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs/promises';
import path from 'node:path';
import { runCli, tempDir } from '../helpers/cli.js';
import { readImageManifest } from '../helpers/layout.js';

const exec = promisify(execFile);
const registry = inject('registry');

const bytes = (...parts: (string | number[])[]) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p))));
/** A path below `dir` ending in raw name bytes. */
const under = (dir: string, ...name: (string | number[])[]) => bytes(`${dir}/`, ...name);

const TOP = [0x61, 0xff]; // "a" then a byte no UTF-8 has
const SUB = [0x62, 0xfe, 0xc3]; // "b", an invalid byte, a lead byte without its continuation
const RENAMED = [0x61, 0xfe];

async function names(dir: string): Promise<Buffer[]> {
  return fs.readdir(dir, { encoding: 'buffer' });
}

const has = (list: Buffer[], name: number[] | Buffer) => list.some((b) => b.equals(Buffer.from(name)));

describe('context file names that are not UTF-8', () => {
  let ctx: string;
  let root: string;

  beforeAll(async () => {
    ctx = await tempDir('builder-bytenames-ctx-');
    root = await tempDir('builder-root-');
    await fs.writeFile(path.join(ctx, 'Dockerfile'), [
      `FROM ${registry}/busybox:1.35`, 'COPY . /app', 'RUN cat /app/a* /app/sub/b* > /seen', 'COPY sub/b* /wild/', 'ADD sub.tar /unpacked/', '',
    ].join('\n'));
    await fs.writeFile(path.join(ctx, 'ok.txt'), 'ok\n');
    await fs.writeFile(under(ctx, TOP), 'top\n');
    await fs.mkdir(path.join(ctx, 'sub'));
    await fs.writeFile(under(ctx, 'sub/', SUB), 'sub\n');
    await exec('tar', ['-cf', 'sub.tar', 'sub'], { cwd: ctx });
  });

  const build = (output: string) => runCli(['build', '--root', root, '--progress', 'plain', '--output', output, ctx]);
  const copyCached = (stderr: string) => /#(\d+) \[\d+\/\d+\] COPY \. \/app\n#\1 CACHED/.test(stderr);

  it('are copied with their bytes to a local output, a RUN and an OCI layer; cached, and invalidated by edits', async () => {
    const out = await tempDir('builder-bytenames-out-');
    const first = await build(`type=local,dest=${out}/local`);
    expect(first.code, first.stderr).toBe(0);
    expect(has(await names(`${out}/local/app`), TOP)).toBe(true);
    expect(await fs.readFile(under(`${out}/local/app`, TOP), 'utf8')).toBe('top\n');
    expect(has(await names(`${out}/local/app/sub`), SUB)).toBe(true);
    expect(await fs.readFile(under(`${out}/local/app/sub`, SUB), 'utf8')).toBe('sub\n');
    // Inside the container the names are the files the context had.
    expect(await fs.readFile(`${out}/local/seen`, 'utf8')).toBe('top\nsub\n');
    expect(await fs.readFile(under(`${out}/local/wild`, SUB), 'utf8')).toBe('sub\n');
    expect(await fs.readFile(under(`${out}/local/unpacked/sub`, SUB), 'utf8')).toBe('sub\n');

    // The same context again: the COPY is a cache hit, and the OCI layer holds the exact names.
    const second = await build(`type=oci,dest=${out}/img.tar`);
    expect(second.code, second.stderr).toBe(0);
    expect(copyCached(second.stderr), second.stderr).toBe(true);
    const layout = `${out}/layout`;
    await fs.mkdir(layout);
    await exec('tar', ['-xf', `${out}/img.tar`, '-C', layout]);
    const manifest = await readImageManifest(layout);
    let found = 0;
    for (const layer of manifest.layers as { digest: string }[]) {
      const blob = `${layout}/blobs/sha256/${layer.digest.slice(7)}`;
      const listing = (await exec('tar', ['--quoting-style=literal', '-tzf', blob], { encoding: 'buffer' })).stdout;
      const entries: Buffer[] = [];
      for (let start = 0; start < listing.length;) {
        const end = listing.indexOf(0x0a, start);
        entries.push(listing.subarray(start, end));
        start = end + 1;
      }
      if (!entries.some((e) => e.toString() === 'app/ok.txt')) continue;
      found++;
      expect(has(entries, bytes('app/', TOP))).toBe(true);
      expect(has(entries, bytes('app/sub/', SUB))).toBe(true);
      // GNU tar extracts them to the same bytes with the same content.
      const x = `${out}/layer`;
      await fs.mkdir(x);
      await exec('tar', ['-xzf', blob, '-C', x]);
      expect(await fs.readFile(under(`${x}/app`, TOP), 'utf8')).toBe('top\n');
      expect(await fs.readFile(under(`${x}/app/sub`, SUB), 'utf8')).toBe('sub\n');
    }
    expect(found).toBe(1);

    // Editing the file with the odd name is a miss, and the new content is what is copied.
    await fs.writeFile(under(ctx, 'sub/', SUB), 'edited\n');
    const edited = await build(`type=local,dest=${out}/edited`);
    expect(edited.code, edited.stderr).toBe(0);
    expect(copyCached(edited.stderr)).toBe(false);
    expect(await fs.readFile(under(`${out}/edited/app/sub`, SUB), 'utf8')).toBe('edited\n');
    expect(await fs.readFile(`${out}/edited/seen`, 'utf8')).toBe('top\nedited\n');
    expect(await fs.readFile(under(`${out}/edited/wild`, SUB), 'utf8')).toBe('edited\n');

    // A rename to other bytes that are not UTF-8 either is a miss too (the names are not all one U+FFFD).
    await fs.rename(under(ctx, TOP), under(ctx, RENAMED));
    const renamed = await build(`type=local,dest=${out}/renamed`);
    expect(renamed.code, renamed.stderr).toBe(0);
    expect(copyCached(renamed.stderr)).toBe(false);
    const app = await names(`${out}/renamed/app`);
    expect(has(app, RENAMED)).toBe(true);
    expect(has(app, TOP)).toBe(false);
  });
});
