// The persistent build cache, end to end through the CLI: which steps run is read from rawjson progress
// (a step that runs completes, a reused one completes `cached`), images are compared by digest.
import { describe, it, expect, inject, beforeAll } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs/promises';
import path from 'node:path';
import { runCli, makeContext, tempDir, type CliResult } from '../helpers/cli.js';
import { foldRawJson, stepOutcomes } from '../helpers/rawjson.js';


const exec = promisify(execFile);
const registry = inject('registry');
const base = `${registry}/busybox:1.35`;

const dockerfile = `
ARG BASE
FROM \${BASE} AS a
ARG FOO=1
COPY src/ /app/
RUN echo $FOO > /foo && cat /app/a.txt > /seen

FROM \${BASE} AS b
COPY other.txt /o
RUN cat /o > /o2

FROM \${BASE}
COPY --from=a /seen /seen
COPY --from=b /o2 /o2
RUN cat /seen /o2 > /all
`;

/** Names (without the `[stage i/n]` prefix) of the RUN/COPY steps that ran, and of those reused. */
function steps(r: CliResult): { ran: string[]; cached: string[]; misses: Record<string, string> } {
  const all = stepOutcomes(r.stderr);
  const step = (name: string) => /^\[[^\]]*\] ((?:RUN|COPY|ADD) .*)$/.exec(name)?.[1];
  const pick = (names: string[]) => names.map(step).filter((n): n is string => !!n).sort();
  const misses: Record<string, string> = {};
  for (const [name, reason] of Object.entries(all.misses)) if (step(name)) misses[step(name)!] = reason;
  return { ran: pick(all.ran), cached: pick(all.cached), misses };
}

/** The image manifest's digest (inside the index the default provenance makes: that index also says when
 * the build ran, so a cached rebuild's differs, as with buildx). */
async function manifestDigest(tar: string): Promise<string> {
  const raw = (await exec('skopeo', ['inspect', '--raw', `oci-archive:${tar}`])).stdout;
  const doc = JSON.parse(raw);
  if (doc.manifests) return doc.manifests.find((m: any) => m.annotations?.['vnd.docker.reference.type'] !== 'attestation-manifest').digest;
  const { createHash } = await import('node:crypto');
  return `sha256:${createHash('sha256').update(raw).digest('hex')}`;
}

describe('build cache (end to end)', () => {
  let root: string;
  let ctx: string;
  let out: string;
  const build = (extra: string[] = [], dest?: string) =>
    runCli(['build', '--root', root, '--progress', 'rawjson', '--build-arg', `BASE=${base}`,
      ...(dest ? ['--output', `type=oci,dest=${dest}`] : []), ...extra, ctx]);

  beforeAll(async () => {
    root = await tempDir('builder-cache-root-');
    out = await tempDir('builder-cache-out-');
    ctx = await makeContext({
      'Dockerfile': dockerfile, 'src/a.txt': 'a1\n', 'src/b.txt': 'b1\n', 'other.txt': 'o1\n', 'unselected.txt': 'u1\n',
    });
  });

  it('a second identical build runs no RUN or COPY and gives the same image', async () => {
    const first = await build([], `${out}/1.tar`);
    expect(first.code, first.stderr).toBe(0);
    expect(steps(first).ran).toHaveLength(7);
    const second = await build([], `${out}/2.tar`);
    expect(second.code, second.stderr).toBe(0);
    const s = steps(second);
    expect(s.ran).toEqual([]);
    expect(s.cached).toHaveLength(7);
    expect(await manifestDigest(`${out}/2.tar`)).toBe(await manifestDigest(`${out}/1.tar`));
  });

  it('editing an unselected file re-runs nothing', async () => {
    await fs.writeFile(path.join(ctx, 'unselected.txt'), 'u2\n');
    const r = await build();
    expect(r.code, r.stderr).toBe(0);
    expect(steps(r).ran).toEqual([]);
  });

  it('editing one file re-runs exactly the steps that depend on it, and says why', async () => {
    await fs.writeFile(path.join(ctx, 'src/b.txt'), 'b2\n');
    const r = await build([], `${out}/3.tar`);
    expect(r.code, r.stderr).toBe(0);
    const s = steps(r);
    expect(s.ran).toEqual(['COPY src/ /app/', 'RUN echo 1 > /foo && cat /app/a.txt > /seen']);
    // /seen is what it was (a.txt did not change): the final stage is reused (early cutoff).
    expect(s.cached).toEqual(['COPY --from=a /seen /seen', 'COPY --from=b /o2 /o2', 'COPY other.txt /o', 'RUN cat /o > /o2', 'RUN cat /seen /o2 > /all']);
    expect(s.misses['COPY src/ /app/']).toBe('COPY src/: changed src/b.txt');
    expect(s.misses['RUN echo 1 > /foo && cat /app/a.txt > /seen']).toBe('parent step missed: [a 2/3] COPY src/ /app/');
  });

  it('explains a changed build arg and --no-cache', async () => {
    const r = await build(['--build-arg', 'FOO=2']);
    expect(r.code, r.stderr).toBe(0);
    const s = steps(r);
    expect(s.ran).toContain('RUN echo 2 > /foo && cat /app/a.txt > /seen');
    expect(s.misses['RUN echo 2 > /foo && cat /app/a.txt > /seen']).toBe('build arg FOO changed');

    const nc = await build(['--build-arg', 'FOO=4', '--no-cache']);
    expect(nc.code, nc.stderr).toBe(0);
    const n = steps(nc);
    expect(n.ran).toHaveLength(7);
    // Told not to use the cache, a step has nothing to explain (BuildKit says nothing either).
    expect(n.misses).toEqual({});
  });

  it('--no-cache-filter re-runs only that stage; --pull keeps an unchanged image\'s dependants cached', async () => {
    const warm = await build(['--build-arg', 'FOO=4']);
    expect(steps(warm).ran).toEqual([]);
    const r = await build(['--build-arg', 'FOO=4', '--no-cache-filter', 'b']);
    expect(r.code, r.stderr).toBe(0);
    const s = steps(r);
    expect(s.ran).toEqual(['COPY other.txt /o', 'RUN cat /o > /o2']);
    expect(s.misses).toEqual({});
    const p = await build(['--build-arg', 'FOO=4', '--pull']);
    expect(p.code, p.stderr).toBe(0);
    expect(steps(p).ran).toEqual([]);
    // The tag was resolved at the registry again (it always is: a moved tag is never missed).
    expect(foldRawJson(p.stderr).vertices.some((v) => v.completed && v.name?.startsWith('[internal] load metadata'))).toBe(true);
  });

  it('explains a new base image digest', async () => {
    const moving = `${registry}/cache-moving:1`;
    await exec('skopeo', ['copy', '-q', '--all', '--src-tls-verify=false', '--dest-tls-verify=false', `docker://${base}`, `docker://${moving}`]);
    const c = await makeContext({ 'Dockerfile': `FROM ${moving}\nRUN echo hi > /hi\n` });
    const b = (extra: string[] = []) => runCli(['build', '--root', root, '--progress', 'rawjson', ...extra, c]);
    expect((await b(['--output', `type=oci,dest=${out}/moving.tar`])).code).toBe(0);
    // Re-tag: the image just built becomes the new `cache-moving:1`.
    await exec('skopeo', ['copy', '-q', '--dest-tls-verify=false', `oci-archive:${out}/moving.tar`, `docker://${moving}`]);
    const r = await b();
    expect(r.code, r.stderr).toBe(0);
    const from = foldRawJson(r.stderr).vertices.find((v) => v.name?.includes('FROM') && v.cacheMiss);
    expect(from?.cacheMiss).toMatch(/^base image digest changed/);
    expect(steps(r).misses['RUN echo hi > /hi']).toMatch(/^parent step missed: .*FROM/);
  });

  it('honours .dockerignore in COPY and in its cache key', async () => {
    const c = await makeContext({
      'Dockerfile': `FROM ${base}\nCOPY . /all/\nCOPY src/ /src/\nRUN ls -a /all /src > /listing\n`,
      '.dockerignore': 'ignored.txt\nsrc/*.log\n',
      'ignored.txt': 'i1\n', 'keep.txt': 'k\n', 'src/a.txt': 'a\n', 'src/x.log': 'log\n',
    });
    const dest = await tempDir('builder-cache-ignore-');
    const b = () => runCli(['build', '--root', root, '--progress', 'rawjson', '--output', `type=local,dest=${dest}`, c]);
    const first = await b();
    expect(first.code, first.stderr).toBe(0);
    const all = (await fs.readdir(path.join(dest, 'all'))).sort();
    expect(all).toContain('keep.txt');
    expect(all).not.toContain('ignored.txt');
    expect(await fs.readdir(path.join(dest, 'all', 'src'))).toEqual(['a.txt']);
    expect(await fs.readdir(path.join(dest, 'src'))).toEqual(['a.txt']);
    // Ignored files are not part of any key.
    await fs.writeFile(path.join(c, 'ignored.txt'), 'i2\n');
    await fs.writeFile(path.join(c, 'src/x.log'), 'log2\n');
    const second = await b();
    expect(second.code, second.stderr).toBe(0);
    expect(steps(second).ran).toEqual([]);
  });

  it('names removed and added files in a copy\'s miss (previous records compared one at a time)', async () => {
    const ok = await build();
    expect(ok.code, ok.stderr).toBe(0);
    await fs.rm(path.join(ctx, 'src/b.txt'));
    await fs.writeFile(path.join(ctx, 'src/c.txt'), 'c1\n');
    const r = await build();
    expect(r.code, r.stderr).toBe(0);
    expect(steps(r).misses['COPY src/ /app/']).toBe('COPY src/: changed src/b.txt, src/c.txt');
  });
});
