// The context phase's progress in plain output: BuildKit's `[internal] load build context` step with its
// `transferring context: N` line (bytes read of the context), then how many files the context has and how
// many were read (new or changed since the last build), before the first step that copies from it.
import { describe, it, expect, inject, beforeAll } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { runCli, makeContext, tempDir } from '../helpers/cli.js';
import { formatBytes } from '../../src/progress/printer.js';

const registry = inject('registry');
const base = `${registry}/busybox:1.35`;

describe('context progress (plain)', () => {
  let root: string;
  let ctx: string;
  const files: Record<string, string> = {};
  const build = () => runCli(['build', '--root', root, '--progress', 'plain', '--output', 'type=cacheonly', ctx]);
  const dockerfile = `FROM ${base}\nCOPY . /app\nRUN ls /app/src/d1 | wc -l\n`;
  const ignore = 'skip/\n';

  beforeAll(async () => {
    root = await tempDir('builder-ctxprogress-root-');
    for (let d = 0; d < 4; d++) for (let f = 0; f < 50; f++) files[`src/d${d}/f${f}.txt`] = `file ${d}/${f}\n`.repeat(d + 1);
    files['skip/big.bin'] = 'x'.repeat(10_000); // excluded: neither counted nor read
    ctx = await makeContext({ Dockerfile: dockerfile, '.dockerignore': ignore, ...files });
  });

  /** The context step's lines, and where its DONE and the COPY's header fall in the output. */
  const contextLines = (out: string) => {
    const lines = out.split('\n');
    const header = lines.find((l) => / \[internal\] load build context$/.test(l));
    expect(header, out).toBeDefined();
    const n = header!.split(' ')[0];
    const mine = lines.filter((l) => l.startsWith(`${n} `));
    const done = lines.findIndex((l) => l.startsWith(`${n} DONE`) || l.startsWith(`${n} CACHED`));
    const copy = lines.findIndex((l) => / \[2\/3\] COPY \. \/app$/.test(l));
    return { mine, done, copy };
  };

  it('shows the bytes read, the files counted and read, and ends before the COPY starts', async () => {
    const r = await build();
    expect(r.code, r.stderr).toBe(0);
    const { mine, done, copy } = contextLines(r.stderr);
    const counted = Object.keys(files).filter((f) => !f.startsWith('skip/')).length + 2; // + Dockerfile, .dockerignore
    const bytes = Object.entries(files).filter(([f]) => !f.startsWith('skip/')).reduce((a, [, c]) => a + c.length, 0)
      + dockerfile.length + ignore.length;
    expect(mine).toContainEqual(expect.stringMatching(new RegExp(`^#\\d+ transferring context: ${formatBytes(bytes).replace('.', '\\.')}( [\\d.]+s)? done$`)));
    expect(mine).toContainEqual(expect.stringMatching(new RegExp(`^#\\d+ context: ${counted} files, ${counted} read( [\\d.]+s)? done$`)));
    expect(done).toBeGreaterThan(-1);
    expect(copy).toBeGreaterThan(done);
  });

  it('a rebuild reads nothing, an edit reads the file edited', async () => {
    const counted = Object.keys(files).filter((f) => !f.startsWith('skip/')).length + 2;
    const again = await build();
    expect(again.code, again.stderr).toBe(0);
    expect(contextLines(again.stderr).mine).toContainEqual(expect.stringMatching(new RegExp(`^#\\d+ context: ${counted} files, 0 read( [\\d.]+s)? done$`)));
    await fs.writeFile(path.join(ctx, 'src/d2/f7.txt'), 'edited\n');
    const edited = await build();
    expect(edited.code, edited.stderr).toBe(0);
    const { mine } = contextLines(edited.stderr);
    expect(mine).toContainEqual(expect.stringMatching(/^#\d+ transferring context: 7B( [\d.]+s)? done$/));
    expect(mine).toContainEqual(expect.stringMatching(new RegExp(`^#\\d+ context: ${counted} files, 1 read( [\\d.]+s)? done$`)));
  });
});
