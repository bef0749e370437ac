// Progress from real builds: `--progress rawjson` through the CLI (every stderr line a SolveStatus object),
// plain output's first line, miss reasons under --no-cache, and library writers without optional methods.
import { describe, it, expect, inject, beforeAll, afterAll } from 'vitest';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { build, BuildError, type ProgressWriter } from '../../src/index.js';
import { runCli, makeContext, tempDir, lastLine } from '../helpers/cli.js';
import { foldRawJson, parseRawJson } from '../helpers/rawjson.js';

const registry = inject('registry');
const base = `${registry}/busybox:1.35`;

describe('--progress rawjson (CLI)', () => {
  let root: string;
  let ctx: string;
  const rawjson = (extra: string[] = [], dir = ctx) =>
    runCli(['build', '--root', root, '--progress', 'rawjson', '-t', 'progress/rawjson:1', ...extra, dir]);

  beforeAll(async () => {
    root = await tempDir('builder-progress-root-');
    // `as` in lower case: a build check warning (FromAsCasing) that must come as a SolveStatus warning.
    ctx = await makeContext({
      Dockerfile: `FROM ${base} as base\nCOPY a.txt /a.txt\nRUN echo hello-raw && cat /a.txt >&2\n`,
      'a.txt': 'from-the-context\n',
    });
  });

  it('prints only SolveStatus lines: vertices started and completed, logs in base64, sub-steps, the warning', async () => {
    const r = await rawjson();
    expect(r.code, r.stderr).toBe(0);
    // Every line parses (parseRawJson throws otherwise): no summary, no "image config" line.
    const lines = parseRawJson(r.stderr);
    expect(lines.length).toBeGreaterThan(5);
    for (const l of lines) {
      expect(Object.keys(l).length).toBeGreaterThan(0);
      for (const k of Object.keys(l)) expect(['vertexes', 'statuses', 'logs', 'warnings']).toContain(k);
    }
    const f = foldRawJson(r.stderr);
    for (const v of f.vertices) {
      expect(v.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
      expect(typeof v.name).toBe('string');
      expect(Date.parse(v.started!)).not.toBeNaN();
      expect(Date.parse(v.completed!)).toBeGreaterThanOrEqual(Date.parse(v.started!));
      expect(v.error).toBeUndefined();
    }
    const run = f.vertices.find((v) => v.name === '[3/3] RUN echo hello-raw && cat /a.txt >&2')!;
    expect(run.cached).toBeUndefined();
    expect(run.inputs).toEqual([f.vertices.find((v) => v.name === '[2/3] COPY a.txt /a.txt')!.digest]);
    const logs = f.logs.filter((l) => l.vertex === run.digest);
    const text = (stream: number) => logs.filter((l) => l.stream === stream).map((l) => Buffer.from(l.data, 'base64').toString()).join('');
    expect(text(1)).toBe('hello-raw\n');
    expect(text(2)).toBe('from-the-context\n');
    for (const l of logs) expect(Date.parse(l.timestamp)).not.toBeNaN();
    // The context transfer and the export's sub-steps, each on its step.
    const ctxStep = f.vertices.find((v) => v.name === '[internal] load build context')!;
    expect(f.statuses.some((s) => s.vertex === ctxStep.digest && s.id === 'transferring context:' && s.completed && s.current > 0)).toBe(true);
    const exp = f.vertices.find((v) => v.name === 'exporting to image')!;
    const subs = f.statuses.filter((s) => s.vertex === exp.digest && s.completed).map((s) => s.id);
    expect(subs).toEqual(expect.arrayContaining(['exporting layers', expect.stringMatching(/^exporting manifest sha256:/),
      expect.stringMatching(/^exporting config sha256:/), 'naming to docker.io/progress/rawjson:1']));
    // The build check warning, on the step that loaded the Dockerfile, as BuildKit sends it.
    const def = f.vertices.find((v) => v.name === '[internal] load build definition from Dockerfile')!;
    expect(f.warnings).toHaveLength(1);
    const w = f.warnings[0];
    expect(w.vertex).toBe(def.digest);
    expect(w.level).toBe(1);
    expect(Buffer.from(w.short!, 'base64').toString()).toMatch(/^FromAsCasing: .* \(line 1\)$/);
    expect(w.url).toMatch(/^https:\/\/docs\.docker\.com\//);
    expect(w.range).toEqual([{ start: { line: 1 }, end: { line: 1 } }]);
  });

  it('a second build reports cached vertices', async () => {
    const r = await rawjson();
    expect(r.code, r.stderr).toBe(0);
    const f = foldRawJson(r.stderr);
    const run = f.vertices.find((v) => v.name?.includes('RUN echo hello-raw'))!;
    expect(run.cached).toBe(true);
    expect(run.started).toBeTruthy();
    expect(run.completed).toBeTruthy();
    expect(f.logs.filter((l) => l.vertex === run.digest)).toEqual([]);
    // Nothing in the context changed: once every file was read, none is read again (as BuildKit sends only
    // what changed). The second build may still read files the first had no need for.
    const again = await rawjson();
    const transfer = foldRawJson(again.stderr).statuses.filter((s) => s.id === 'transferring context:' && s.completed);
    expect(transfer.map((s) => s.current)).toEqual([0]);
  });

  it('--push: pushing layers with bytes up to the total, then the manifest, on the export step', async () => {
    const ref = `${registry}/progress/pushed:1`;
    const r = await runCli(['build', '--root', root, '--progress', 'rawjson', '-t', ref, '--push', ctx]);
    expect(r.code, r.stderr).toBe(0);
    const f = foldRawJson(r.stderr);
    const exp = f.vertices.find((v) => v.name === 'exporting to image')!;
    const pushing = f.statuses.filter((s) => s.vertex === exp.digest && s.id === 'pushing layers');
    const last = pushing.at(-1)!;
    expect(last.total).toBeGreaterThan(0);
    expect(last.current).toBe(last.total);
    expect(last.completed).toBeTruthy();
    expect(pushing[0].current).toBe(0);
    expect(f.statuses.some((s) => s.vertex === exp.digest && s.id.startsWith(`pushing manifest for ${ref}@sha256:`) && s.completed)).toBe(true);
  });

  it('a failed build: SolveStatus lines, the vertex error, then only the ERROR line (as buildx)', async () => {
    const bad = await makeContext({ Dockerfile: `FROM ${base}\nRUN echo doomed && exit 3\n` });
    const r = await rawjson([], bad);
    expect(r.code).toBe(1);
    const lines = r.stderr.trimEnd().split('\n');
    const last = lines.pop()!;
    expect(last).toMatch(/^ERROR: Dockerfile:2: RUN failed: .*exit code: 3/);
    const f = foldRawJson(lines.join('\n'));
    expect(f.vertices.find((v) => v.name?.includes('RUN echo doomed'))?.error).toMatch(/exit code: 3/);
  });
});

describe('cache miss reasons and plain output', () => {
  let server: http.Server;
  let url: string;
  beforeAll(async () => {
    server = http.createServer((_req, res) => res.end('downloaded\n'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/f.txt`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('--no-cache and --no-cache-filter steps claim no reason (BuildKit gives none); plain output starts with its first step', async () => {
    const root = await tempDir('builder-progress-nc-');
    const ctx = await makeContext({ Dockerfile: `FROM ${base} AS a\nADD ${url} /f\nRUN cat /f\nFROM a\nRUN echo two\n`, 'x.txt': 'x' });
    const plain = (extra: string[]) => runCli(['build', '--root', root, '--progress', 'plain', ...extra, ctx]);
    const first = await plain([]);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr.startsWith('#1 [internal] load build definition from Dockerfile\n')).toBe(true);
    for (const extra of [['--no-cache'], ['--no-cache-filter', 'a']]) {
      const r = await runCli(['build', '--root', root, '--progress', 'rawjson', ...extra, ctx]);
      expect(r.code, r.stderr).toBe(0);
      const f = foldRawJson(r.stderr);
      // The filtered stage's steps (all steps with --no-cache) say nothing; a step after them may say its
      // parent missed, never that its definition changed.
      expect(f.vertices.filter((v) => v.cacheMiss && (extra[0] === '--no-cache' || v.name?.startsWith('[a ')))).toEqual([]);
      expect(r.stderr).not.toContain('step definition changed');
      expect(f.vertices.some((v) => v.name?.includes('RUN cat /f') && v.completed && !v.cached)).toBe(true);
      const p = await plain(extra);
      expect(p.stderr).not.toMatch(/#\d+ cache miss: (--no-cache|step definition changed)/);
      if (extra[0] === '--no-cache') expect(p.stderr).not.toContain('cache miss');
    }
  });
});

describe('library: a ProgressWriter without optional methods', () => {
  const failing = `FROM ${base}\nRUN echo "last words" && exit 5\n`;

  it('a failing build gives its real error, with the output tail', async () => {
    const root = await tempDir('builder-progress-lib-');
    const seen: string[] = [];
    const minimal: ProgressWriter = { start: (v) => seen.push(v.name), done: () => undefined };
    const err = await build({ context: await makeContext({}), dockerfile: failing, root, progress: minimal }).catch((e) => e);
    expect(err).toBeInstanceOf(BuildError);
    expect(err.message).toMatch(/^Dockerfile:2: RUN failed: .*exit code: 5$/);
    expect(err.outputTail).toEqual(['last words']);
    expect(seen.some((n) => n.includes('RUN echo'))).toBe(true);
  });

  it('a writer that throws changes neither the outcome nor the error', async () => {
    const root = await tempDir('builder-progress-lib-');
    const broken: ProgressWriter = {
      start: () => { throw new Error('display broke'); },
      done: () => { throw new Error('display broke'); },
      error: () => { throw new Error('display broke'); },
      log: () => { throw new Error('display broke'); },
    };
    const err = await build({ context: await makeContext({}), dockerfile: failing, root, progress: broken }).catch((e) => e);
    expect(err).toBeInstanceOf(BuildError);
    expect(err.message).toMatch(/exit code: 5$/);
    expect(lastLine(err.outputTail.join('\n'))).toBe('last words');
  });
});
