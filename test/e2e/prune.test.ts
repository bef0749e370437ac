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
  it('counts the files a refreshed COPY shares with the previous one once, and in full once that one is gone', async () => {
    const root = await tempDir('builder-prune-root-');
    const out = await tempDir('builder-prune-out-');
    const ctx = await makeContext({ 'Dockerfile': `FROM ${base}\nCOPY . /app\n`, 'big.bin': 'x'.repeat(400_000), 'small.txt': 'a\n' });
    // Files changed less than two seconds before a copy starts are never trusted unchanged by the next one.
    await new Promise((r) => setTimeout(r, 2100));
    const build = () => runCli(['build', '--root', root, '--progress', 'plain', '--output', `type=local,dest=${out}`, ctx]);
    const buildCache = async () => bytes(sizeOf((await runCli(['du', '--root', root])).stdout, 'build cache')[2]);
    expect((await build()).code).toBe(0);
    const one = await buildCache();
    expect(one).toBeGreaterThan(400_000);
    await fs.writeFile(path.join(ctx, 'small.txt'), 'b\n');
    expect((await build()).code).toBe(0);
    // The second COPY hard-links big.bin from the first: counted once.
    const two = await buildCache();
    expect(two).toBeLessThan(one * 1.3);

    // Drop the first build's records: prune then removes its COPY snapshot, and big.bin is the second's alone.
    const snapshots = path.join(root, 'snapshots');
    const infos = await Promise.all((await fs.readdir(snapshots)).map(async (id) =>
      JSON.parse(await fs.readFile(path.join(snapshots, id, 'committed.json'), 'utf8').catch(() => '{}')) as { clonedFrom?: string }));
    const first = infos.find((i) => i.clonedFrom)?.clonedFrom;
    expect(first).toBeDefined();
    const records = path.join(root, 'cache', 'records');
    for (const name of await fs.readdir(records)) {
      const rec = JSON.parse(await fs.readFile(path.join(records, name), 'utf8')) as { layers: string[] };
      if (rec.layers.includes(first!)) await fs.rm(path.join(records, name));
    }
    const pruned = await runCli(['prune', '--root', root, '--filter', 'until=1h']);
    expect(pruned.code, pruned.stderr).toBe(0);
    await expect(fs.access(path.join(snapshots, first!))).rejects.toThrow();
    const three = await buildCache();
    expect(three).toBeGreaterThan(400_000);
    expect(three).toBeLessThan(one * 1.3);
  });

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

  it('counts cache mount files whose names are not UTF-8', async () => {
    const root = await tempDir('builder-prune-root-');
    const ctx = await makeContext({ Dockerfile: `FROM ${base}\nRUN --mount=type=cache,target=/c mkdir -p /c/sub && head -c 60000 /dev/zero > "/c/sub/$(printf 'a\\377')"\n` });
    const r = await runCli(['build', '--root', root, ctx]);
    expect(r.code, r.stderr).toBe(0);
    const [, count, size] = sizeOf((await runCli(['du', '--root', root])).stdout, 'cache mounts');
    expect(count).toBe('1');
    expect(bytes(size)).toBeGreaterThanOrEqual(60_000);
  });

  it('rejects a bad filter with a one-line error', async () => {
    const r = await runCli(['prune', '--root', await tempDir('builder-prune-bad-'), '--filter', 'type=regular']);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe('ERROR: invalid --filter "type=regular": only until=DURATION is supported');
  });
});
