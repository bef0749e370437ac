// `builder du` and `builder prune` on a real state directory: pruning frees space, keeps the state usable,
// and honours --filter until= and --keep-storage; a build past BUILDER_GC_KEEP_STORAGE collects itself.
import { describe, it, expect, inject } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { runCli, makeContext, tempDir } from '../helpers/cli.js';

const registry = inject('registry');
const base = `${registry}/busybox:1.35`;

const sizeOf = (du: string, kind: string) => {
  const line = du.split('\n').find((l) => l.startsWith(kind))!;
  return line.trim().split(/\s{2,}/);
};
const bytes = (s: string) => {
  const m = /^([\d.]+)(B|kB|MB|GB)$/.exec(s)!;
  return Number(m[1]) * { B: 1, kB: 1e3, MB: 1e6, GB: 1e9 }[m[2] as 'B']!;
};

describe('builder du / prune (end to end)', () => {
  it('prune frees space and later builds still work', async () => {
    const root = await tempDir('builder-prune-root-');
    const out = await tempDir('builder-prune-out-');
    const ctx = await makeContext({ 'Dockerfile': `FROM ${base}\nCOPY big.bin /big.bin\nRUN cp /big.bin /copy.bin\n`, 'big.bin': 'x'.repeat(300_000) });
    const build = (env: Record<string, string> = {}) =>
      runCli(['build', '--root', root, '--progress', 'rawjson', '--output', `type=local,dest=${out}`, ctx], { env });
    expect((await build()).code).toBe(0);

    const du = await runCli(['du', '--root', root]);
    expect(du.code, du.stderr).toBe(0);
    const [, count, size] = sizeOf(du.stdout, 'build cache');
    expect(Number(count)).toBeGreaterThan(0);
    expect(bytes(size)).toBeGreaterThan(600_000);

    // Everything was used just now: an age filter keeps it all.
    const kept = await runCli(['prune', '--root', root, '--filter', 'until=1h']);
    expect(kept.code, kept.stderr).toBe(0);
    expect(kept.stdout).toBe('Total:\t0B\n');

    const pr = await runCli(['prune', '--root', root]);
    expect(pr.code, pr.stderr).toBe(0);
    expect(bytes(pr.stdout.replace('Total:\t', '').trim())).toBeGreaterThan(600_000);
    const after = await runCli(['du', '--root', root]);
    expect(sizeOf(after.stdout, 'build cache')[1]).toBe('0');
    expect(Number(sizeOf(after.stdout, 'base image layers')[1])).toBeGreaterThan(0);

    const again = await build();
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toContain('cache record was removed (pruned)');
    expect((await fs.readFile(path.join(out, 'copy.bin'))).length).toBe(300_000);

    const all = await runCli(['prune', '--all', '--root', root]);
    expect(all.code, all.stderr).toBe(0);
    const empty = await runCli(['du', '--root', root]);
    expect(empty.stdout).toMatch(/Total:\s+0B/);
    expect((await build()).code).toBe(0);

    // Automatic GC: past the limit, the build leaves at most that much cache behind (base layers stay).
    const gc = await build({ BUILDER_GC_KEEP_STORAGE: '1kB' });
    expect(gc.code, gc.stderr).toBe(0);
    expect(sizeOf((await runCli(['du', '--root', root])).stdout, 'build cache')[1]).toBe('0');
    expect((await build()).code).toBe(0);
  });

  it('RUN cache mounts are counted by du and removed by prune, honouring until=', async () => {
    const root = await tempDir('builder-prune-root-');
    const out = await tempDir('builder-prune-out-');
    const run = (cmd: string) => makeContext({ Dockerfile: `FROM ${base}\nRUN --mount=type=cache,target=/c ${cmd}\n` })
      .then((ctx) => runCli(['build', '--root', root, '--output', `type=local,dest=${out}`, ctx]));
    expect((await run('head -c 50000 /dev/zero > /c/data && ls /c > /seen')).code).toBe(0);
    const [, count, size] = sizeOf((await runCli(['du', '--root', root])).stdout, 'cache mounts');
    expect(count).toBe('1');
    expect(bytes(size)).toBeGreaterThanOrEqual(50_000);
    expect((await runCli(['prune', '--root', root, '--filter', 'until=1h'])).code).toBe(0);
    expect(sizeOf((await runCli(['du', '--root', root])).stdout, 'cache mounts')[1]).toBe('1');
    expect((await runCli(['prune', '--root', root])).code).toBe(0);
    expect(sizeOf((await runCli(['du', '--root', root])).stdout, 'cache mounts')[1]).toBe('0');
    // The next RUN starts with an empty cache directory.
    expect((await run('ls /c > /seen-after')).code).toBe(0);
    expect(await fs.readFile(path.join(out, 'seen-after'), 'utf8')).toBe('');
  });

  it('rejects a bad filter with a one-line error', async () => {
    const r = await runCli(['prune', '--root', await tempDir('builder-prune-bad-'), '--filter', 'type=regular']);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe('ERROR: invalid --filter "type=regular": only until=DURATION is supported');
  });
});
