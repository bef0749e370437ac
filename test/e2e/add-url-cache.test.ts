// ADD <url> is keyed by what the URL serves: an unchanged file costs one conditional request (answered
// 304, no body) and the steps after it hit; a changed one misses; a server without validators sends the
// body each build, and an identical body still hits.
import { describe, it, expect, inject, beforeAll, afterAll } from 'vitest';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import fs from 'node:fs/promises';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { runCli, makeContext, tempDir, type CliResult } from '../helpers/cli.js';
import { stepOutcomes } from '../helpers/rawjson.js';

const registry = inject('registry');
const base = `${registry}/busybox:1.35`;

/** What the server serves and saw: per path, its body; counts of requests, 304s and bodies sent. */
const served: Record<string, { body: string; validators: boolean; mtime: string }> = {};
const seen = { requests: 0, notModified: 0, bodies: 0, conditional: 0 };
let server: http.Server;
let url: string;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    seen.requests++;
    const f = served[req.url ?? ''];
    if (!f) return res.writeHead(404).end();
    const etag = `"${createHash('sha256').update(f.body).digest('hex').slice(0, 16)}"`;
    if (req.headers['if-none-match'] || req.headers['if-modified-since']) seen.conditional++;
    if (f.validators && req.headers['if-none-match'] === etag) {
      seen.notModified++;
      return res.writeHead(304, { etag, 'last-modified': f.mtime }).end();
    }
    seen.bodies++;
    res.writeHead(200, f.validators ? { etag, 'last-modified': f.mtime } : {});
    res.end(f.body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

function steps(r: CliResult) {
  const all = stepOutcomes(r.stderr);
  const step = (name: string) => /^\[[^\]]*\] ((?:RUN|ADD) .*)$/.exec(name)?.[1];
  // The download and the copy of an ADD <url> are two vertices of one name.
  const pick = (names: string[]) => [...new Set(names.map(step).filter((n): n is string => !!n))].sort();
  const misses: Record<string, string> = {};
  for (const [name, reason] of Object.entries(all.misses)) if (step(name)) misses[step(name)!] = reason;
  return { ran: pick(all.ran), cached: pick(all.cached), misses };
}

describe('ADD <url> cache', () => {
  let root: string;
  beforeAll(async () => { root = await tempDir('builder-addurl-root-'); });

  // One context per Dockerfile: the previous build of the same one explains a miss.
  const contexts = new Map<string, string>();
  const build = async (dockerfile: string, extra: string[] = []) => {
    const ctx = contexts.get(dockerfile) ?? await makeContext({ Dockerfile: dockerfile });
    contexts.set(dockerfile, ctx);
    const out = await tempDir('builder-addurl-out-');
    const r = await runCli(['build', '--root', root, '--progress', 'rawjson', '--output', `type=local,dest=${out}`, ...extra, ctx]);
    expect(r.code, r.stderr).toBe(0);
    return { r, s: steps(r), g: await fs.readFile(path.join(out, 'g'), 'utf8') };
  };
  const snap = () => ({ ...seen });

  it('an unchanged file is answered 304 and everything after the ADD hits; a changed one misses', async () => {
    served['/f'] = { body: 'one\n', validators: true, mtime: 'Wed, 21 Oct 2015 07:28:00 GMT' };
    const df = `FROM ${base}\nADD ${url}/f /f\nRUN cat /f > /g\n`;
    const first = await build(df);
    expect(first.s.ran).toEqual([`ADD ${url}/f /f`, 'RUN cat /f > /g']);
    expect(first.g).toBe('one\n');

    const before = snap();
    const second = await build(df);
    expect(second.s.ran).toEqual([]);
    expect(second.s.cached).toEqual([`ADD ${url}/f /f`, 'RUN cat /f > /g']);
    expect(second.g).toBe('one\n');
    expect(seen.requests - before.requests).toBe(1);
    expect(seen.notModified - before.notModified).toBe(1);
    expect(seen.bodies - before.bodies).toBe(0);

    served['/f'] = { body: 'two\n', validators: true, mtime: 'Thu, 22 Oct 2015 07:28:00 GMT' };
    const mid = snap();
    const third = await build(df);
    expect(third.s.ran).toEqual([`ADD ${url}/f /f`, 'RUN cat /f > /g']);
    expect(third.s.misses[`ADD ${url}/f /f`]).toBe(`content of ${url}/f changed`);
    expect(third.g).toBe('two\n');
    // Downloaded once: the key's download is the one the step uses.
    expect(seen.requests - mid.requests).toBe(1);
    expect(seen.bodies - mid.bodies).toBe(1);

    // --no-cache downloads anew, unconditionally.
    const nc = snap();
    const fourth = await build(df, ['--no-cache']);
    expect(fourth.s.ran).toEqual([`ADD ${url}/f /f`, 'RUN cat /f > /g']);
    expect(seen.bodies - nc.bodies).toBe(1);
    expect(seen.conditional - nc.conditional).toBe(0);

    // So does --no-cache-filter naming the ADD's stage.
    const staged = `FROM ${base} AS s\nADD ${url}/f /f\nRUN cat /f > /g\n`;
    await build(staged);
    const ncf = snap();
    const filtered = await build(staged, ['--no-cache-filter', 's']);
    expect(filtered.s.ran).toEqual([`ADD ${url}/f /f`, 'RUN cat /f > /g']);
    expect(filtered.g).toBe('two\n');
    expect(seen.bodies - ncf.bodies).toBe(1);
    expect(seen.conditional - ncf.conditional).toBe(0);
  });

  it('without validators the body comes each build, and an identical one still hits', async () => {
    served['/plain'] = { body: 'plain\n', validators: false, mtime: '' };
    const df = `FROM ${base}\nADD ${url}/plain /p\nRUN cat /p > /g\n`;
    await build(df);
    const before = snap();
    const again = await build(df);
    expect(again.s.ran).toEqual([]);
    expect(again.s.cached).toEqual([`ADD ${url}/plain /p`, 'RUN cat /p > /g']);
    expect(seen.bodies - before.bodies).toBe(1);
    expect(seen.conditional - before.conditional).toBe(0);

    served['/plain'] = { body: 'changed\n', validators: false, mtime: '' };
    const changed = await build(df);
    expect(changed.s.ran).toEqual([`ADD ${url}/plain /p`, 'RUN cat /p > /g']);
    expect(changed.g).toBe('changed\n');
  });

  it('--checksum still pins the content', async () => {
    served['/pinned'] = { body: 'pinned\n', validators: true, mtime: 'Wed, 21 Oct 2015 07:28:00 GMT' };
    const sum = `sha256:${createHash('sha256').update('pinned\n').digest('hex')}`;
    const df = `FROM ${base}\nADD --checksum=${sum} ${url}/pinned /p\nRUN cat /p > /g\n`;
    const first = await build(df);
    expect(first.g).toBe('pinned\n');
    const before = snap();
    const again = await build(df);
    expect(again.s.ran).toEqual([]);
    // Pinned: the key needs no request at all.
    expect(seen.requests - before.requests).toBe(0);

    const bad = `FROM ${base}\nADD --checksum=sha256:${'0'.repeat(64)} ${url}/pinned /p\n`;
    const ctx = await makeContext({ Dockerfile: bad });
    const r = await runCli(['build', '--root', root, '--progress', 'plain', ctx]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Dockerfile:2: .*digest mismatch/);
  });

  it('a failing request fails the build naming the ADD line', async () => {
    const ctx = await makeContext({ Dockerfile: `FROM ${base}\nADD ${url}/missing /m\n` });
    const r = await runCli(['build', '--root', root, '--progress', 'plain', ctx]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Dockerfile:2: .*invalid response status 404/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});
