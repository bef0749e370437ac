// Hostile Dockerfiles through the CLI: each ends with exit code 1 and one line naming the Dockerfile line,
// never a heap abort, a stack overflow or a raw mount error. The CLI runs with a 1 GiB heap, so a build
// that needed more would abort instead of failing cleanly; the test timeouts bound the time.
import { describe, it, expect, inject, beforeAll } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { runCli, makeContext, tempDir, lastLine } from '../helpers/cli.js';

const registry = inject('registry');
const env = { NODE_OPTIONS: '--max-old-space-size=1024' };

/** Exit code 1, the last line `ERROR: Dockerfile:N: ...` matching `message`, no stack trace. */
function expectOneLine(res: { code: number; stderr: string }, line: number, message: RegExp) {
  expect(res.code, res.stderr.slice(-2000)).toBe(1);
  const last = lastLine(res.stderr);
  expect(last).toMatch(new RegExp(`^ERROR: Dockerfile:${line}: `));
  expect(last.slice(`ERROR: Dockerfile:${line}: `.length)).toMatch(message);
  expect(last.length).toBeLessThan(400);
  expect(res.stderr).not.toMatch(/internal error|\n\s+at /);
}

describe('hostile Dockerfiles', () => {
  let root: string;
  beforeAll(async () => {
    root = await tempDir('builder-root-hostile-df-');
  });

  const build = async (dockerfile: string, args: string[] = []) => {
    const ctx = await makeContext({ Dockerfile: dockerfile });
    try {
      return await runCli(['build', '--root', root, ...args, ctx], { env });
    } finally {
      await fs.rm(ctx, { recursive: true, force: true });
    }
  };

  it('an ARG doubled 32 times fails at the doubling past 1 MiB', { timeout: 60_000 }, async () => {
    // 1.3 KB that once ran for minutes to a 4 GB heap abort.
    const lines = ['FROM scratch', 'ARG A=xx', ...Array.from({ length: 32 }, () => 'ARG A=$A$A'), 'ENV B=$A'];
    const res = await build(`${lines.join('\n')}\n`);
    expectOneLine(res, 22, /^failed to process "\$A\$A": variable expansion makes the word more than 1 MiB longer than written$/);
  });

  it('100,000 nested ${A:-...} fail with the nesting bound', { timeout: 60_000 }, async () => {
    const n = 100_000;
    const word = '${A:-'.repeat(n) + 'x' + '}'.repeat(n);
    const res = await build(`FROM scratch\nENV X=${word.match(/.{1,60000}/g)!.join('\\\n')}\n`);
    expectOneLine(res, 2, /more than 100 nested \$\{\.\.\.\} expansions$/);
  });

  it('a 10 MB line fails with the line bound', { timeout: 60_000 }, async () => {
    const res = await build(`FROM scratch\nLABEL a=${'a'.repeat(10_000_000)}\n`);
    expectOneLine(res, 2, /^dockerfile line greater than max allowed size of 65535$/);
  });

  it('a 17 MB Dockerfile fails with the size bound', { timeout: 60_000 }, async () => {
    const line = `LABEL a=${'a'.repeat(60_000)}\n`;
    const res = await build(`FROM scratch\n${line.repeat(290)}`);
    // 16 MiB is crossed on the 280th LABEL.
    expectOneLine(res, 281, /^Dockerfile is larger than the limit of 16 MiB$/);
  });

  it('3,000 layer instructions are solved without overflowing the stack', { timeout: 120_000 }, async () => {
    // The first step fails, so the whole chain is walked (keys, starts) and the build ends quickly.
    const lines = ['FROM scratch', 'RUN ["/nonexistent"]', ...Array.from({ length: 3000 }, (_, i) => `WORKDIR /w${i}`)];
    const res = await build(`${lines.join('\n')}\n`);
    expectOneLine(res, 2, /^RUN failed: /);
  });

  it('a step on the kernel\'s 500 layers runs; one more is refused in one line', { timeout: 900_000 }, async () => {
    // 1 + 498 layers under the RUN, 500 with it for the local output: more than a page of mount options
    // (a raw `mount -t overlay` error once).
    const workdirs = (n: number) => Array.from({ length: n }, (_, i) => `WORKDIR /w${i}`);
    const run = 'RUN ls -d /w* | wc -l > /count && ls /bin/busybox >> /count';
    const ctx = await makeContext({ Dockerfile: [`FROM ${registry}/busybox:1.35`, ...workdirs(498), run, ''].join('\n') });
    const dest = await tempDir('builder-hostile-df-out-');
    const res = await runCli(['build', '--root', root, '--output', `type=local,dest=${dest}`, ctx], { env });
    expect(res.code, res.stderr.slice(-3000)).toBe(0);
    expect((await fs.readFile(path.join(dest, 'count'), 'utf8')).split(/\s+/).filter(Boolean)).toEqual(['498', '/bin/busybox']);
    // Nothing stays mounted under the state directory.
    expect((await fs.readFile('/proc/self/mountinfo', 'utf8')).includes(root)).toBe(false);

    // 3,000 WORKDIRs: the 501st (line 502) would stand on 501 layers (the first 498 are cached).
    const deeper = await build([`FROM ${registry}/busybox:1.35`, ...workdirs(3000), run, ''].join('\n'));
    expectOneLine(deeper, 502, /^WORKDIR failed: max depth exceeded: 501 layers, overlayfs stacks at most 500$/);
  });
});

describe('hostile Dockerfiles that are valid', () => {
  it('4,000 stages, each built on the one before with one more variable, convert within the heap', { timeout: 300_000 }, async () => {
    // Each stage's image config is one variable longer than its base's: a copy per stage was quadratic
    // (5,000 such stages took 4 GB).
    const lines = ['FROM scratch AS s0'];
    for (let i = 1; i < 4000; i++) lines.push(`FROM s${i - 1} AS s${i}`, `ENV V${i}=${i}`);
    const ctx = await makeContext({ Dockerfile: `${lines.join('\n')}\n` });
    const root = await tempDir('builder-root-hostile-df-');
    const res = await runCli(['build', '--root', root, ctx], { env });
    expect(res.code, res.stderr.slice(-2000)).toBe(0);
  });
});
