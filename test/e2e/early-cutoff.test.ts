// Early cutoff: a step whose inputs re-ran but hold what they held before is reused (by its content key),
// and any change in what it reads (content, mode, owner, a new or removed file, a link target) misses. Real builds with runc against the test registry's busybox.
import { describe, it, expect, inject, beforeAll } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { runCli, makeContext, tempDir, type CliResult } from '../helpers/cli.js';
import { stepOutcomes } from '../helpers/rawjson.js';

const registry = inject('registry');
const base = `${registry}/busybox:1.35`;

/** Instruction text (without the `[stage n/m]` tag) of the steps that ran and of those reused. */
function steps(r: CliResult) {
  const all = stepOutcomes(r.stderr);
  const step = (name: string) => /^\[[^\]]*\] ((?:RUN|COPY|ADD) .*)$/.exec(name)?.[1];
  const pick = (names: string[]) => [...new Set(names.map(step).filter((n): n is string => !!n))].sort();
  return { ran: pick(all.ran), cached: pick(all.cached) };
}

async function build(root: string, ctx: string, extra: string[] = [], progress = 'rawjson'): Promise<CliResult> {
  const out = await tempDir('builder-cutoff-out-');
  const r = await runCli(['build', '--root', root, '--progress', progress, '--output', `type=local,dest=${out}`, ...extra, ctx]);
  expect(r.code, r.stderr).toBe(0);
  return r;
}

describe('early cutoff', () => {
  it('COPY --from after an upstream re-run with identical output is reused, and so is the step after it', async () => {
    const root = await tempDir('builder-cutoff-root-');
    const dockerfile = [
      `FROM ${base} AS build`,
      'COPY src.txt /src.txt',
      `RUN grep -v '^#' /src.txt > /out.txt`,
      `FROM ${base}`,
      'COPY --from=build /out.txt /out.txt',
      'RUN cat /out.txt > /final && echo ran >> /log',
    ].join('\n');
    const ctx = await makeContext({ Dockerfile: dockerfile, 'src.txt': 'one\ntwo\n' });
    const first = steps(await build(root, ctx));
    expect(first.ran).toEqual(['COPY --from=build /out.txt /out.txt', 'COPY src.txt /src.txt', `RUN cat /out.txt > /final && echo ran >> /log`, `RUN grep -v '^#' /src.txt > /out.txt`]);

    // A comment: the build stage re-runs, its artifact is the same, the rest is reused.
    await fs.writeFile(path.join(ctx, 'src.txt'), '# a comment\none\ntwo\n');
    const r = await build(root, ctx, [], 'plain');
    expect(r.stderr).toMatch(/#\d+ reused: input unchanged after \[build 3\/3\] re-ran/);
    const again = await build(root, ctx); // the next build of the same context hits by the pre-run keys
    expect(steps(again).ran).toEqual([]);

    // A real change of the artifact misses.
    await fs.writeFile(path.join(ctx, 'src.txt'), '# a comment\none\nthree\n');
    const changed = steps(await build(root, ctx));
    expect(changed.ran).toContain('COPY --from=build /out.txt /out.txt');
    expect(changed.ran).toContain('RUN cat /out.txt > /final && echo ran >> /log');
  });

  it('reports the reuse in rawjson and reuses through a COPY --from after an identical re-run', async () => {
    const root = await tempDir('builder-cutoff-root-');
    const dockerfile = [
      `FROM ${base} AS build`,
      'COPY src.txt /src.txt',
      `RUN grep -v '^#' /src.txt > /out.txt`,
      `FROM ${base}`,
      'COPY --from=build /out.txt /out.txt',
      'RUN cat /out.txt > /final',
    ].join('\n');
    const ctx = await makeContext({ Dockerfile: dockerfile, 'src.txt': 'one\n' });
    await build(root, ctx);
    await fs.writeFile(path.join(ctx, 'src.txt'), '# c\none\n');
    const r = await build(root, ctx);
    const s = steps(r);
    expect(s.ran).toEqual(['COPY src.txt /src.txt', `RUN grep -v '^#' /src.txt > /out.txt`]);
    expect(s.cached).toEqual(['COPY --from=build /out.txt /out.txt', 'RUN cat /out.txt > /final']);
    expect(r.stderr).toContain('"cacheReused":"input unchanged after [build 3/3] re-ran"');
  });

  it('a RUN after a RUN that re-ran with an identical layer is reused', async () => {
    const root = await tempDir('builder-cutoff-root-');
    const dockerfile = [
      `FROM ${base}`,
      `RUN --mount=type=bind,source=src.txt,target=/src.txt grep -v '^#' /src.txt > /out.txt`,
      'RUN cat /out.txt > /final && echo ran >> /log',
    ].join('\n');
    const ctx = await makeContext({ Dockerfile: dockerfile, 'src.txt': 'one\n' });
    await build(root, ctx);
    await fs.writeFile(path.join(ctx, 'src.txt'), '# c\none\n');
    const r = await build(root, ctx);
    const s = steps(r);
    expect(s.ran).toEqual([`RUN --mount=type=bind,source=src.txt,target=/src.txt grep -v '^#' /src.txt > /out.txt`]);
    // The miss names the changed file.
    const misses = Object.entries(stepOutcomes(r.stderr).misses).filter(([name]) => name.includes('RUN --mount'));
    expect(misses.map(([, reason]) => reason)).toEqual(['context changed: src.txt']);
    expect(s.cached).toEqual(['RUN cat /out.txt > /final && echo ran >> /log']);

    await fs.writeFile(path.join(ctx, 'src.txt'), '# c\ntwo\n');
    const changed = steps(await build(root, ctx));
    expect(changed.ran).toContain('RUN cat /out.txt > /final && echo ran >> /log');
  });

  it('every real change in what a later step selects misses; times and unselected files do not', async () => {
    const root = await tempDir('builder-cutoff-root-');
    const dockerfile = [
      `FROM ${base} AS build`,
      'COPY gen.sh /gen.sh',
      'COPY x /x',
      'RUN sh /gen.sh',
      `FROM ${base}`,
      'COPY --from=build /out/ /out/',
      'RUN ls -lR /out > /listing',
    ].join('\n');
    const gen = (lines: string[]) => ['set -e', 'mkdir -p /out /other', 'echo a > /out/f', 'ln -s f /out/l', 'cp /x /out/x', ...lines, ''].join('\n');
    const ctx = await makeContext({ Dockerfile: dockerfile, 'gen.sh': gen([]), x: 'x\n' });
    await build(root, ctx);
    const copy = 'COPY --from=build /out/ /out/';
    const expectBuild = async (script: string[], copied: boolean, reason?: string) => {
      await fs.writeFile(path.join(ctx, 'gen.sh'), gen(script));
      const r = await build(root, ctx);
      const s = steps(r);
      expect(s.ran, JSON.stringify(script)).toContain('RUN sh /gen.sh');
      if (copied) expect(s.ran, JSON.stringify(script)).toContain(copy);
      else expect(s.cached, JSON.stringify(script)).toContain(copy);
      // The miss names the files that changed in what the COPY selects.
      if (reason) expect(Object.entries(stepOutcomes(r.stderr).misses).find(([n]) => n.endsWith(copy))?.[1]).toBe(reason);
    };
    // Not a change of what is selected: a comment, another mtime, a file outside /out.
    await expectBuild(['# a comment'], false);
    await expectBuild(['# a comment', 'touch -d 2001-01-01 /out/f'], false);
    await expectBuild(['echo elsewhere > /other/y'], false);
    // Real changes, each against the build before it.
    await expectBuild(['echo b > /out/f'], true, 'COPY /out/: changed out/f'); // content
    await expectBuild(['echo b > /out/f', 'chmod 600 /out/f'], true); // mode
    await expectBuild(['echo b > /out/f', 'chmod 600 /out/f', 'chown 1:2 /out/f'], true); // owner
    await expectBuild(['echo b > /out/f', 'chmod 600 /out/f', 'chown 1:2 /out/f', 'touch /out/new'], true, 'COPY /out/: changed out/new'); // new file
    await expectBuild(['echo b > /out/f', 'chmod 600 /out/f', 'chown 1:2 /out/f', 'touch /out/new', 'rm /out/x'], true, 'COPY /out/: changed out/x'); // removed file
    await expectBuild(['echo b > /out/f', 'chmod 600 /out/f', 'chown 1:2 /out/f', 'touch /out/new', 'rm /out/x', 'rm /out/l', 'ln -s elsewhere /out/l'], true, 'COPY /out/: changed out/l'); // link target
    await expectBuild(['echo b > /out/f', 'chmod 600 /out/f', 'chown 1:2 /out/f', 'touch /out/new', 'rm /out/x', 'rm /out/l', 'ln -s elsewhere /out/l', '# same'], false);
    // An xattr change is in test/cache/snapshothash.test.ts (busybox has no setfattr).
  });

  it('a COPY through a symlink in the context is keyed by what it selects, not by the whole context', async () => {
    const root = await tempDir('builder-cutoff-root-');
    const ctx = await makeContext({
      Dockerfile: `FROM ${base}\nCOPY alias/a.txt /a.txt\nCOPY file-link /f.txt\nRUN cat /a.txt /f.txt > /both\n`,
      'src/a.txt': 'a\n', 'src/f.txt': 'f\n', 'other.txt': 'o\n',
    });
    await fs.symlink('src', path.join(ctx, 'alias'));
    await fs.symlink('src/f.txt', path.join(ctx, 'file-link'));
    await build(root, ctx);
    await fs.writeFile(path.join(ctx, 'other.txt'), 'o2\n');
    expect(steps(await build(root, ctx)).ran).toEqual([]);
    // What a link leads to changes: the copy through it misses (and what is built on it).
    await fs.writeFile(path.join(ctx, 'src/a.txt'), 'a2\n');
    expect(steps(await build(root, ctx)).ran).toContain('COPY alias/a.txt /a.txt');
    await fs.writeFile(path.join(ctx, 'src/f.txt'), 'f2\n');
    const s = steps(await build(root, ctx));
    expect(s.ran).toEqual(['COPY file-link /f.txt', 'RUN cat /a.txt /f.txt > /both']);
    expect(s.cached).toEqual(['COPY alias/a.txt /a.txt']);
  });

  it('a COPY from the context and the RUN after it cost no hashing of layers when they miss', async () => {
    const root = await tempDir('builder-cutoff-root-');
    const ctx = await makeContext({ Dockerfile: `FROM ${base}\nCOPY src/ /app/\nRUN cat /app/* > /all\n`, 'src/a.txt': 'a\n' });
    await build(root, ctx);
    await fs.writeFile(path.join(ctx, 'src/a.txt'), 'a2\n');
    expect(steps(await build(root, ctx)).ran).toEqual(['COPY src/ /app/', 'RUN cat /app/* > /all']);
    // The COPY's key stands for its content (made from the image and the context only): no snapshot was
    // hashed, so none records a content digest.
    const hashed: string[] = [];
    for (const id of await fs.readdir(path.join(root, 'snapshots'))) {
      const info = await fs.readFile(path.join(root, 'snapshots', id, 'committed.json'), 'utf8').catch(() => '{}');
      if ('content' in JSON.parse(info)) hashed.push(id);
    }
    expect(hashed).toEqual([]);
  });

  it('an imported cache (--cache-from type=local) cuts off on a fresh state directory', async () => {
    const cacheDir = await tempDir('builder-cutoff-cache-');
    const dockerfile = [
      `FROM ${base} AS build`,
      'COPY src.txt /src.txt',
      `RUN grep -v '^#' /src.txt > /out.txt`,
      `FROM ${base}`,
      'COPY --from=build /out.txt /out.txt',
      'RUN cat /out.txt > /final',
    ].join('\n');
    const ctx = await makeContext({ Dockerfile: dockerfile, 'src.txt': 'one\n' });
    await build(await tempDir('builder-cutoff-root-'), ctx, ['--cache-to', `type=local,dest=${cacheDir},mode=max`]);
    // A second runner hits everything by the first keys and exports to a new place: the content keys
    // travel with the records it hit.
    const second = await tempDir('builder-cutoff-cache-');
    const hit = await build(await tempDir('builder-cutoff-root-'), ctx, ['--cache-from', `type=local,src=${cacheDir}`, '--cache-to', `type=local,dest=${second},mode=max`]);
    expect(steps(hit).ran).toEqual([]);
    await fs.writeFile(path.join(ctx, 'src.txt'), '# c\none\n');
    const r = await build(await tempDir('builder-cutoff-root-'), ctx, ['--cache-from', `type=local,src=${second}`]);
    const s = steps(r);
    expect(s.ran).toEqual(['COPY src.txt /src.txt', `RUN grep -v '^#' /src.txt > /out.txt`]);
    expect(s.cached).toEqual(['COPY --from=build /out.txt /out.txt', 'RUN cat /out.txt > /final']);
  });
});
