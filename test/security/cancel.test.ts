// Cancellation: SIGINT or SIGTERM in the middle of a RUN stops the build at once, and leaves no container,
// no process and no mount of it behind; the next build on the same --root works.
import { describe, it, expect, inject, onTestFinished } from 'vitest';
import { spawn, execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs/promises';
import path from 'node:path';
import { cliPath, makeContext, tempDir, runCli } from '../helpers/cli.js';

const exec = promisify(execFile);
const registry = inject('registry');

async function processesWith(marker: string): Promise<string[]> {
  const { stdout } = await exec('ps', ['-eo', 'pid,args']);
  return stdout.split('\n').filter((l) => l.includes(marker) && !l.includes('ps -eo'));
}

describe('cancelling a build', () => {
  for (const [signal, closeOutput] of [['SIGINT', false], ['SIGTERM', false], ['SIGTERM', true]] as const) {
    it(`${signal} during a RUN kills its container and unmounts everything${closeOutput ? ', even when its output pipe was closed' : ''}`, async () => {
      const root = await tempDir('builder-root-');
      const marker = `${4000 + Math.floor(Math.random() * 1000)}`;
      const ctx = await makeContext({ Dockerfile: `FROM ${registry}/busybox:1.35\nRUN echo started && sleep ${marker}\n` });
      const child = spawn(process.execPath, [cliPath, 'build', '--root', root, '--progress', 'plain', ctx], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      onTestFinished(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
      const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
      await new Promise<void>((resolve, reject) => {
        child.stderr.on('data', (d) => {
          stderr += d;
          if (stderr.includes('started')) resolve();
        });
        child.on('close', () => reject(new Error(`build ended before the RUN started:\n${stderr}`)));
      });
      for (let i = 0; i < 50 && (await processesWith(`sleep ${marker}`)).length === 0; i++) await new Promise((r) => setTimeout(r, 100));
      expect(await processesWith(`sleep ${marker}`)).not.toEqual([]);
      // The reader of its output goes away (a CI log collector dying, `| head`): the build must still clean up.
      if (closeOutput) child.stderr.destroy();
      child.kill(signal);
      const code = await exited;
      expect(code, stderr).toBe(signal === 'SIGINT' ? 130 : 143);
      if (!closeOutput) expect(stderr.trimEnd().split('\n').pop()).toMatch(/^ERROR: .*cancel/);
      expect(await processesWith(`sleep ${marker}`)).toEqual([]);
      expect(await fs.readFile('/proc/mounts', 'utf8')).not.toContain(root);
      const runtimeRoot = path.join(root, 'executor', 'runc-state');
      const { stdout } = await exec('runc', ['--root', runtimeRoot, 'list', '-q']).catch(() => ({ stdout: '' }));
      expect(stdout.trim()).toBe('');
      // The state directory is usable.
      const ok = await makeContext({ Dockerfile: `FROM ${registry}/busybox:1.35\nRUN echo fine > /f\n` });
      const dest = await tempDir('builder-after-cancel-');
      const res = await runCli(['build', '--root', root, '--output', `type=local,dest=${dest}`, ok]);
      expect(res.code, res.stderr).toBe(0);
      expect(await fs.readFile(path.join(dest, 'f'), 'utf8')).toBe('fine\n');
    });
  }
});
