// Cache export and import for CI (--cache-to / --cache-from), end to end through the CLI: a build on state
// dir A exports its cache; A is deleted; a build on an empty state dir B imports it. Which steps run comes
// from rawjson progress events; images are compared by manifest digest (SOURCE_DATE_EPOCH set).
import { describe, it, expect, inject, beforeAll } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { foldRawJson, stepOutcomes } from '../helpers/rawjson.js';
import { runCli, makeContext, tempDir, type CliResult } from '../helpers/cli.js';

const exec = promisify(execFile);
const registry = inject('registry');
const base = `${registry}/busybox:1.35`;
const env = { SOURCE_DATE_EPOCH: '1700000000' };

const dockerfile = `
ARG BASE
FROM \${BASE} AS dep
COPY dep.txt /dep.txt
RUN cat /dep.txt > /dep.out

FROM \${BASE}
COPY --from=dep /dep.out /dep.out
COPY app.txt /app.txt
RUN cat /app.txt /dep.out > /all
`;
const ALL_STEPS = ['COPY --from=dep /dep.out /dep.out', 'COPY app.txt /app.txt', 'COPY dep.txt /dep.txt', 'RUN cat /app.txt /dep.out > /all', 'RUN cat /dep.txt > /dep.out'];

/** The RUN/COPY steps that ran (without the `[stage i/n]` prefix). */
function ran(r: CliResult): string[] {
  return stepOutcomes(r.stderr).ran.map((n) => /^\[[^\]]*\] ((?:RUN|COPY) .*)$/.exec(n)?.[1]).filter((n): n is string => !!n).sort();
}

/** Every line the steps logged. */
function logs(r: CliResult): string[] {
  return foldRawJson(r.stderr).logs.flatMap((l) => Buffer.from(l.data, 'base64').toString().split('\n').filter(Boolean));
}

function warnings(r: CliResult): string[] {
  return logs(r).filter((l) => l.startsWith('WARNING:'));
}

async function manifestDigest(tar: string): Promise<string> {
  const raw = (await exec('skopeo', ['inspect', '--raw', `oci-archive:${tar}`])).stdout;
  return `sha256:${createHash('sha256').update(raw).digest('hex')}`;
}

/** A whole, readable image: skopeo copies it (verifying every blob) and umoci unpacks it. */
async function unpack(tar: string): Promise<string> {
  const dir = await tempDir('builder-rc-unpack-');
  await exec('skopeo', ['copy', '-q', `oci-archive:${tar}`, `oci:${dir}/layout:x`]);
  await exec('umoci', ['unpack', '--image', `${dir}/layout:x`, `${dir}/bundle`]);
  return path.join(dir, 'bundle', 'rootfs');
}

async function countSnapshots(root: string): Promise<number> {
  return (await fs.readdir(path.join(root, 'snapshots')).catch(() => [] as string[])).filter((n) => /^\d+$/.test(n)).length;
}

describe('remote cache (--cache-to / --cache-from)', () => {
  let ctx: string;
  let out: string;
  const build = (root: string, extra: string[], dest?: string) =>
    runCli(['build', '--root', root, '--progress', 'rawjson', '--build-arg', `BASE=${base}`,
      ...(dest ? ['--output', `type=oci,dest=${dest}`] : []), ...extra, ctx], { env });

  beforeAll(async () => {
    out = await tempDir('builder-rc-out-');
    ctx = await makeContext({ Dockerfile: dockerfile, 'dep.txt': 'dep1\n', 'app.txt': 'app1\n' });
  });

  /** The CI story for one cache backend: export from A, delete A, import on empty B; then a one-file edit. */
  async function ciStory(name: string, to: string, from: string): Promise<void> {
    await fs.writeFile(path.join(ctx, 'app.txt'), 'app1\n');
    const a = await tempDir('builder-rc-a-');
    const first = await build(a, ['--cache-to', to], `${out}/${name}-1.tar`);
    expect(first.code, first.stderr).toBe(0);
    expect(ran(first)).toEqual(ALL_STEPS);
    await fs.rm(a, { recursive: true, force: true });

    const b = await tempDir('builder-rc-b-');
    // As CI does: import and export the same cache. Nothing new: no blob is written or uploaded again.
    const second = await build(b, ['--cache-from', from, '--cache-to', to], `${out}/${name}-2.tar`);
    expect(second.code, second.stderr).toBe(0);
    expect(ran(second)).toEqual([]);
    expect(warnings(second)).toEqual([]);
    // Five steps under their keys, and the three that take a built input under their content keys too
    // (early cutoff; the dep stage's steps are made from sources only, their keys are content keys already).
    expect(logs(second).join('\n')).toMatch(/^8 records, 0 blobs (written|uploaded), 6 already there$/m);
    expect(await manifestDigest(`${out}/${name}-2.tar`)).toBe(await manifestDigest(`${out}/${name}-1.tar`));
    // Lazy: nothing was extracted (the exporter used the blobs as they are).
    expect(await countSnapshots(b)).toBe(0);

    await fs.writeFile(path.join(ctx, 'app.txt'), 'app2\n');
    const c = await tempDir('builder-rc-c-');
    const third = await build(c, ['--cache-from', from], `${out}/${name}-3.tar`);
    expect(third.code, third.stderr).toBe(0);
    expect(ran(third)).toEqual(['COPY app.txt /app.txt', 'RUN cat /app.txt /dep.out > /all']);
    const rootfs = await unpack(`${out}/${name}-3.tar`);
    expect(await fs.readFile(path.join(rootfs, 'all'), 'utf8')).toBe('app2\ndep1\n');
    // What the import had to extract is recorded locally: the same state needs no --cache-from again.
    const fourth = await build(c, []);
    expect(fourth.code, fourth.stderr).toBe(0);
    expect(ran(fourth)).toEqual([]);
  }

  it('local: a CI runner with an empty state dir runs nothing and makes the same image; an edit runs only its dependants', async () => {
    const dir = await tempDir('builder-rc-local-');
    await ciStory('local', `type=local,dest=${dir},mode=max`, `type=local,src=${dir}`);
    // An OCI image layout, as buildx writes one.
    const index = JSON.parse(await fs.readFile(path.join(dir, 'index.json'), 'utf8'));
    expect(index.manifests).toHaveLength(1);
  });

  it('registry: the same story with the cache in a registry', async () => {
    const ref = `${registry}/rc-cache:ci`;
    await ciStory('registry', `type=registry,ref=${ref},mode=max`, `type=registry,ref=${ref}`);
    const raw = JSON.parse((await exec('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${ref}`])).stdout);
    expect(raw.config.mediaType).toBe('application/vnd.builder.cache.config.v1+json');
  });

  it('mode=min exports the final stage only: an intermediate stage is a hit only with mode=max', async () => {
    await fs.writeFile(path.join(ctx, 'app.txt'), 'app1\n');
    const min = await tempDir('builder-rc-min-');
    const max = await tempDir('builder-rc-max-');
    const a = await tempDir('builder-rc-a-');
    const first = await build(a, ['--cache-to', `type=local,dest=${min}`, '--cache-to', `type=local,dest=${max},mode=max`]);
    expect(first.code, first.stderr).toBe(0);
    // The final image: a hit from either.
    for (const dir of [min, max]) {
      const r = await build(await tempDir('builder-rc-b-'), ['--cache-from', `type=local,src=${dir}`]);
      expect(r.code, r.stderr).toBe(0);
      expect(ran(r)).toEqual([]);
    }
    // The intermediate stage as a target: only max has it.
    const fromMin = await build(await tempDir('builder-rc-b-'), ['--target', 'dep', '--cache-from', `type=local,src=${min}`]);
    expect(fromMin.code, fromMin.stderr).toBe(0);
    expect(ran(fromMin)).toEqual(['COPY dep.txt /dep.txt', 'RUN cat /dep.txt > /dep.out']);
    const fromMax = await build(await tempDir('builder-rc-b-'), ['--target', 'dep', '--cache-from', `type=local,src=${max}`]);
    expect(fromMax.code, fromMax.stderr).toBe(0);
    expect(ran(fromMax)).toEqual([]);

    // Pruning a cache directory down to nothing leaves only the (empty) cache's config and manifest.
    const pruned = await runCli(['prune', '--cache-dir', max, '--keep-storage', '0']);
    expect(pruned.code, pruned.stderr).toBe(0);
    expect(pruned.stdout).toMatch(/Records:\t0 kept, [1-9]\d* removed/);
    expect(await fs.readdir(path.join(max, 'blobs', 'sha256'))).toHaveLength(2);
    const after = await build(await tempDir('builder-rc-b-'), ['--target', 'dep', '--cache-from', `type=local,src=${max}`]);
    expect(after.code, after.stderr).toBe(0);
    expect(ran(after)).toEqual(['COPY dep.txt /dep.txt', 'RUN cat /dep.txt > /dep.out']);
  });

  it('a missing or corrupt blob in a cache dir makes its records misses, with a warning; the image is whole', async () => {
    await fs.writeFile(path.join(ctx, 'app.txt'), 'app1\n');
    const dir = await tempDir('builder-rc-fault-');
    const a = await tempDir('builder-rc-a-');
    const first = await build(a, ['--cache-to', `type=local,dest=${dir},mode=max`]);
    expect(first.code, first.stderr).toBe(0);
    // The top layer of the longest chain is the final RUN's own layer.
    const index = JSON.parse(await fs.readFile(path.join(dir, 'index.json'), 'utf8'));
    const blob = (d: string) => path.join(dir, 'blobs', 'sha256', d.slice(7));
    const manifest = JSON.parse(await fs.readFile(blob(index.manifests[0].digest), 'utf8'));
    const config = JSON.parse(await fs.readFile(blob(manifest.config.digest), 'utf8'));
    const longest = config.records.reduce((x: { layers: number[] }, y: { layers: number[] }) => (y.layers.length > x.layers.length ? y : x));
    const top = config.layers[longest.layers[longest.layers.length - 1]].blob.digest as string;

    const original = await fs.readFile(blob(top));
    const corrupt = Buffer.from(original);
    corrupt[corrupt.length - 1] ^= 0xff;
    await fs.writeFile(blob(top), corrupt);
    const r1 = await build(await tempDir('builder-rc-b-'), ['--cache-from', `type=local,src=${dir}`], `${out}/fault-1.tar`);
    expect(r1.code, r1.stderr).toBe(0);
    expect(ran(r1)).toEqual(['RUN cat /app.txt /dep.out > /all']);
    expect(warnings(r1).join('\n')).toMatch(new RegExp(`${top}.*corrupt`));
    expect(await fs.readFile(path.join(await unpack(`${out}/fault-1.tar`), 'all'), 'utf8')).toBe('app1\ndep1\n');

    await fs.rm(blob(top));
    const r2 = await build(await tempDir('builder-rc-b-'), ['--cache-from', `type=local,src=${dir}`], `${out}/fault-2.tar`);
    expect(r2.code, r2.stderr).toBe(0);
    expect(ran(r2)).toEqual(['RUN cat /app.txt /dep.out > /all']);
    expect(warnings(r2).join('\n')).toMatch(new RegExp(`${top}.*missing`));
    expect(await fs.readFile(path.join(await unpack(`${out}/fault-2.tar`), 'all'), 'utf8')).toBe('app1\ndep1\n');
  });

  it('an unreachable cache registry is a warning both ways; the build succeeds', async () => {
    const r = await build(await tempDir('builder-rc-b-'), [
      '--cache-from', 'type=registry,ref=127.0.0.1:9/nothing:here', '--cache-to', 'type=registry,ref=127.0.0.1:9/nothing:here',
    ], `${out}/unreachable.tar`);
    expect(r.code, r.stderr).toBe(0);
    const w = warnings(r).join('\n');
    expect(w).toMatch(/failed to import cache from 127\.0\.0\.1:9\/nothing:here/);
    expect(w).toMatch(/failed to export cache to 127\.0\.0\.1:9\/nothing:here/);
    expect(ran(r)).toEqual(ALL_STEPS);
  });

  it('inline: the cache rides in the pushed image and is read back with --cache-from REF', async () => {
    await fs.writeFile(path.join(ctx, 'app.txt'), 'app1\n');
    const image = `${registry}/rc-inline:1`;
    const first = await runCli(['build', '--root', await tempDir('builder-rc-a-'), '--progress', 'rawjson', '--build-arg', `BASE=${base}`,
      '--cache-to', 'type=inline', '--output', `type=image,name=${image},push=true`, ctx], { env });
    expect(first.code, first.stderr).toBe(0);
    const b = await tempDir('builder-rc-b-');
    const second = await runCli(['build', '--root', b, '--progress', 'rawjson', '--build-arg', `BASE=${base}`,
      '--cache-from', image, '--cache-to', 'type=inline', '--output', `type=image,name=${registry}/rc-inline:2,push=true`, ctx], { env });
    expect(second.code, second.stderr).toBe(0);
    expect(ran(second)).toEqual([]);
    // The same image manifest (the index around it also holds the default provenance, which says when each build ran).
    const digest = async (ref: string) => {
      const doc = JSON.parse((await exec('skopeo', ['inspect', '--tls-verify=false', '--raw', `docker://${ref}`])).stdout);
      return doc.manifests.find((m: any) => m.annotations?.['vnd.docker.reference.type'] !== 'attestation-manifest').digest;
    };
    expect(await digest(`${registry}/rc-inline:2`)).toBe(await digest(image));
  });
});
