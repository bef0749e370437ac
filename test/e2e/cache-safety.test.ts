// The cache under stress: a build killed with SIGKILL in the middle of a RUN leaves no record pointing at
// missing data and the next build succeeds; two builds on one --root at the same time both succeed and
// leave a cache both can reuse.
import { describe, it, expect, inject } from 'vitest';
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { runCli, makeContext, tempDir, cliPath, type CliResult } from '../helpers/cli.js';
import { stepOutcomes } from '../helpers/rawjson.js';

const registry = inject('registry');
const base = `${registry}/busybox:1.35`;

function ranSteps(r: CliResult): string[] {
  return stepOutcomes(r.stderr).ran.filter((name) => /\] (RUN|COPY) /.test(name));
}

/** Every cache record names only committed snapshots. */
async function checkRecords(root: string): Promise<number> {
  const dir = path.join(root, 'cache', 'records');
  let n = 0;
  for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
    expect(name).not.toContain('.tmp-');
    const rec = JSON.parse(await fs.readFile(path.join(dir, name), 'utf8')) as { layers: string[] };
    for (const id of rec.layers) await fs.access(path.join(root, 'snapshots', id, 'committed.json'));
    n++;
  }
  return n;
}

describe('build cache safety (end to end)', () => {
  it('a build killed mid-RUN leaves a usable state; the next build succeeds and is then cached', async () => {
    const root = await tempDir('builder-kill-root-');
    const ctx = await makeContext({
      'Dockerfile': `FROM ${base}\nCOPY a.txt /a.txt\nRUN echo started && sleep 30 && echo done > /x\nRUN cat /a.txt\n`,
      'a.txt': 'a\n',
    });
    const args = ['build', '--root', root, '--progress', 'rawjson', ctx];
    const child = spawn(process.execPath, [cliPath, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    await new Promise<void>((resolve, reject) => {
      let err = '';
      child.stderr.on('data', (d) => {
        err += d;
        if (err.includes(`"data":"${Buffer.from('started\n').toString('base64')}"`)) resolve();
      });
      child.on('exit', () => reject(new Error(`build exited before the RUN started: ${err}`)));
    });
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    // The COPY finished before the kill: its record is complete; the RUN has none.
    expect(await checkRecords(root)).toBeGreaterThan(0);

    const fast = await makeContext({
      'Dockerfile': `FROM ${base}\nCOPY a.txt /a.txt\nRUN echo done > /x\nRUN cat /a.txt\n`,
      'a.txt': 'a\n',
    });
    const next = await runCli(['build', '--root', root, '--progress', 'rawjson', fast]);
    expect(next.code, next.stderr).toBe(0);
    // The killed build's leftovers are gone: no uncommitted snapshot, no mount, no temp record.
    for (const name of await fs.readdir(path.join(root, 'snapshots'))) {
      await fs.access(path.join(root, 'snapshots', name, 'committed.json'));
    }
    expect(await fs.readdir(path.join(root, 'mounts'))).toEqual([]);
    await checkRecords(root);
    const again = await runCli(['build', '--root', root, '--progress', 'rawjson', fast]);
    expect(again.code, again.stderr).toBe(0);
    expect(ranSteps(again)).toEqual([]);
  });

  it('two builds on the same root at the same time both succeed and leave a consistent cache', async () => {
    const root = await tempDir('builder-conc-root-');
    const mk = (n: number) => makeContext({
      'Dockerfile': `FROM ${base}\nCOPY f.txt /f.txt\nRUN cat /f.txt > /g && sleep 1\nRUN echo shared > /s\n`,
      'f.txt': `build ${n}\n`,
    });
    const [c1, c2] = await Promise.all([mk(1), mk(2)]);
    const build = (c: string) => runCli(['build', '--root', root, '--progress', 'rawjson', c]);
    const [r1, r2] = await Promise.all([build(c1), build(c2)]);
    expect(r1.code, r1.stderr).toBe(0);
    expect(r2.code, r2.stderr).toBe(0);
    await checkRecords(root);
    const [a1, a2] = await Promise.all([build(c1), build(c2)]);
    expect(a1.code, a1.stderr).toBe(0);
    expect(a2.code, a2.stderr).toBe(0);
    expect(ranSteps(a1)).toEqual([]);
    expect(ranSteps(a2)).toEqual([]);
  });

  it('a build started while another runs leaves its container and snapshots alone; a lone build recovers', async () => {
    const root = await tempDir('builder-side-root-');
    const slow = await makeContext({ 'Dockerfile': `FROM ${base}\nRUN echo started && sleep 3 && echo slow > /slow\n` });
    const quick = await makeContext({ 'Dockerfile': `FROM ${base}\nRUN echo quick > /quick\n` });
    // Warm the base image so both builds reach their RUN quickly.
    expect((await runCli(['build', '--root', root, quick])).code).toBe(0);
    const child = spawn(process.execPath, [cliPath, 'build', '--root', root, '--progress', 'rawjson', slow], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    await new Promise<void>((resolve, reject) => {
      child.stderr.on('data', (d) => { err += d; if (err.includes(`"data":"${Buffer.from('started\n').toString('base64')}"`)) resolve(); });
      void exited.then(() => reject(new Error(`slow build ended early: ${err}`)));
    });
    // What a killed build would have left: an uncommitted snapshot.
    await fs.mkdir(path.join(root, 'snapshots', '999999', 'fs'), { recursive: true });
    const side = await runCli(['build', '--root', root, '--no-cache', quick]);
    expect(side.code, side.stderr).toBe(0);
    expect(await exited, err).toBe(0);
    await fs.access(path.join(root, 'snapshots', '999999'));
    const alone = await runCli(['build', '--root', root, quick]);
    expect(alone.code, alone.stderr).toBe(0);
    await expect(fs.access(path.join(root, 'snapshots', '999999'))).rejects.toThrow();
    await checkRecords(root);
  });
});
