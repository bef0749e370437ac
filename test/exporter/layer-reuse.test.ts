// Layer blobs of an edited build reuse the previous build's gzip members (src/client/export.ts layerBlobs
// with src/archive/segmented.ts): the COPY step's new blob copies every member but the changed ones, the
// image is the one a fresh state directory makes, and prune takes member indexes and step hints along.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { describe, expect, inject, it } from 'vitest';
import type { MemberIndex } from '../../src/content/store.js';
import { makeContext, runCli, tempDir } from '../helpers/cli.js';

const exec = promisify(execFile);
const registry = inject('registry');
const base = `${registry}/busybox:1.35`;

const dockerfile = `ARG BASE
FROM \${BASE}
COPY . /app
RUN wc -c /app/d3/f7.txt > /size.txt
`;

/** 480 files of 16 KB of hex text (~8 MB): several gzip members. */
function contextFiles(): Record<string, string> {
  const files: Record<string, string> = { Dockerfile: dockerfile };
  for (let d = 0; d < 12; d++) {
    for (let f = 0; f < 40; f++) {
      let s = '';
      let h = createHash('sha256').update(`${d}/${f}`).digest();
      while (s.length < 16384) { s += h.toString('hex'); h = createHash('sha256').update(h).digest(); }
      files[`d${d}/f${f}.txt`] = s.slice(0, 16384);
    }
  }
  return files;
}

async function imageLayers(tarball: string): Promise<string[]> {
  return JSON.parse((await exec('skopeo', ['inspect', `oci-archive:${tarball}`])).stdout).Layers as string[];
}

async function memberIndex(root: string, digest: string): Promise<MemberIndex> {
  return JSON.parse(await fs.readFile(path.join(root, 'content/members', `${digest.slice(7)}.json`), 'utf8')) as MemberIndex;
}

describe('layer blob reuse across builds', () => {
  it('an edited COPY layer copies all members but the changed ones, and prune removes indexes with blobs', async () => {
    const ctx = await makeContext(contextFiles());
    const root = await tempDir('builder-reuse-root-');
    const out = await tempDir('builder-reuse-out-');
    const build = (n: number) => runCli(['build', '--root', root, '--progress', 'plain', '--build-arg', `BASE=${base}`,
      '--output', `type=oci,dest=${out}/img${n}.tar`, ctx]);
    const first = await build(1);
    expect(first.code, first.stderr).toBe(0);
    const hints = async () => {
      const dir = path.join(root, 'cache/layer-steps');
      return Promise.all((await fs.readdir(dir)).map(async (f) => JSON.parse(await fs.readFile(path.join(dir, f), 'utf8')).blobs as string[]));
    };
    const hints1 = await hints();
    // Same size, other content: only this file's segment differs. A line inserted above the COPY moves
    // it (`[2/3]` becomes `[3/4]`), and it is still the same step.
    await fs.writeFile(path.join(ctx, 'd3/f7.txt'), 'z'.repeat(16384));
    await fs.writeFile(path.join(ctx, 'Dockerfile'), dockerfile.replace('COPY', 'ENV X=1\nCOPY'));
    const second = await build(2);
    expect(second.code, second.stderr).toBe(0);

    const [layers1, layers2] = [await imageLayers(`${out}/img1.tar`), await imageLayers(`${out}/img2.tar`)];
    const copy1 = layers1[layers1.length - 2];
    const copy2 = layers2[layers2.length - 2];
    expect(copy2).not.toBe(copy1);
    // The COPY step is the same step in both builds: its hint, which named the first blob (the candidate
    // the second build copied members from), names the second first now.
    expect(hints1).toContainEqual([copy1]);
    const hints2 = await hints();
    expect(hints2).toHaveLength(hints1.length);
    expect(hints2).toContainEqual([copy2, copy1]);
    const [index1, index2] = [await memberIndex(root, copy1), await memberIndex(root, copy2)];
    expect(index2.members.length).toBeGreaterThanOrEqual(4);
    const old = new Set(index1.members.map((m) => m.sha256));
    // Changed: the edited file's segment, and the first one (the `app/` entry has the time of the copy, and
    // app/Dockerfile changed).
    const blob2 = await fs.readFile(path.join(root, 'content/blobs/sha256', copy2.slice(7)));
    const changed = index2.members.filter((m) => !old.has(m.sha256));
    expect(changed.length).toBeGreaterThanOrEqual(1);
    expect(changed.length).toBeLessThanOrEqual(2);
    for (const m of changed) {
      const tar = gunzipSync(blob2.subarray(m.offset, m.offset + m.csize));
      expect(m === index2.members[0] || tar.includes('app/d3/f7.txt\0')).toBe(true);
    }
    expect(changed.some((m) => gunzipSync(blob2.subarray(m.offset, m.offset + m.csize)).includes('app/d3/f7.txt\0'))).toBe(true);
    await exec('gzip', ['-t', path.join(root, 'content/blobs/sha256', copy2.slice(7))]);

    const pruned = await runCli(['prune', '--all', '--root', root]);
    expect(pruned.code, pruned.stderr).toBe(0);
    expect(await fs.readdir(path.join(root, 'content/members'))).toEqual([]);
    expect(await fs.readdir(path.join(root, 'cache/layer-steps'))).toEqual([]);
  });

  it('gives the image a fresh state directory gives (SOURCE_DATE_EPOCH, rewrite-timestamp)', async () => {
    const ctx = await makeContext(contextFiles());
    const out = await tempDir('builder-reuse-out-');
    const env = { SOURCE_DATE_EPOCH: '1700000000' };
    const build = (root: string, n: string) => runCli(['build', '--root', root, '--progress', 'plain', '--build-arg', `BASE=${base}`,
      '--output', `type=oci,dest=${out}/img${n}.tar,rewrite-timestamp=true`, '--metadata-file', `${out}/meta${n}.json`, ctx], { env });
    const root = await tempDir('builder-reuse-root-');
    expect((await build(root, 'a')).code).toBe(0);
    await fs.writeFile(path.join(ctx, 'd9/f1.txt'), 'edited\n');
    const reused = await build(root, 'b');
    expect(reused.code, reused.stderr).toBe(0);
    const fresh = await build(await tempDir('builder-reuse-root-'), 'c');
    expect(fresh.code, fresh.stderr).toBe(0);
    const digest = async (n: string) => JSON.parse(await fs.readFile(`${out}/meta${n}.json`, 'utf8'))['containerimage.digest'];
    expect(await digest('b')).toBe(await digest('c'));
    expect(await digest('b')).not.toBe(await digest('a'));
    // The rewritten-timestamp blobs are a variant beside each layer's default blob: prune takes them along.
    expect((await fs.readdir(path.join(root, 'content/members'))).length).toBeGreaterThan(0);
    const pruned = await runCli(['prune', '--all', '--root', root]);
    expect(pruned.code, pruned.stderr).toBe(0);
    expect(await fs.readdir(path.join(root, 'content/members'))).toEqual([]);
  });
});
