// `build --on-error=shell`: a failed RUN opens a shell in that step's container state, on a terminal (a
// pseudo-terminal from util-linux's `script` here); without one it is a one-line error.
import { describe, expect, inject, it } from 'vitest';
import { spawn } from 'node:child_process';
import { cliPath, lastLine, makeContext, runCli, tempDir } from '../helpers/cli.js';

const registry = inject('registry');

const dockerfile = `FROM ${registry}/busybox:1.35
RUN echo before > /before.txt
ENV STEP=third
RUN echo partial > /partial.txt && exit 7
`;

/** Runs the CLI on a pseudo-terminal; `input` is typed once `marker` shows. */
function onTerminal(args: string[], marker: string, input: string): Promise<{ code: number; out: string }> {
  return new Promise((resolve, reject) => {
    const cmd = [process.execPath, cliPath, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
    const child = spawn('script', ['-qec', cmd, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let typed = false;
    const onData = (d: Buffer) => {
      out += d.toString();
      if (!typed && out.includes(marker)) {
        typed = true;
        child.stdin.write(input);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, out }));
  });
}

describe('build --on-error=shell', () => {
  it('opens /bin/sh in the failed step\'s state on a terminal; the build then fails as usual', async () => {
    const root = await tempDir('builder-root-');
    const ctx = await makeContext({ Dockerfile: dockerfile });
    const r = await onTerminal(['build', '--root', root, '--on-error=shell', ctx], 'exit to end the build',
      'cat /before.txt /partial.txt; echo "step=$STEP"; echo marker-$((6*7))\nexit\n');
    expect(r.out).toMatch(/before\r?\npartial\r?\nstep=third\r?\nmarker-42/);
    expect(r.out).toMatch(/Debug shell exited \(0\)/);
    expect(r.out).toMatch(/ERROR: Dockerfile:4: RUN failed: .*exit code: 7/);
    expect(r.code).toBe(1);
  });

  it('needs a terminal', async () => {
    const ctx = await makeContext({ Dockerfile: dockerfile });
    const r = await runCli(['build', '--root', await tempDir('builder-root-'), '--on-error=shell', ctx]);
    expect(r.code).toBe(1);
    expect(lastLine(r.stderr)).toBe('ERROR: --on-error=shell needs a terminal (stdin is not one)');
  });
});
