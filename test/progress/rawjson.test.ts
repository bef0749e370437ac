import { describe, it, expect } from 'vitest';
import { Writable } from 'node:stream';
import { RawJsonProgress, vertexDigest } from '../../src/progress/rawjson.js';
import { parseRawJson } from '../helpers/rawjson.js';

function sink() {
  let text = '';
  const out = new Writable({ write(c, _e, cb) { text += c; cb(); } });
  return { out, text: () => text };
}

const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);
const iso = (ms: number) => new Date(ms).toISOString();
const D = (c: string) => `sha256:${c.repeat(64)}`;

describe('rawjson progress (BuildKit SolveStatus lines)', () => {
  it('sends each vertex whole as it starts and completes, with inputs, cached and error as Go encodes them', () => {
    const s = sink();
    let t = T0;
    const p = new RawJsonProgress(s.out, { now: () => t });
    p.start({ id: D('a'), name: '[1/2] FROM busybox' });
    p.done(D('a'), { cached: true });
    p.start({ id: D('b'), name: '[2/2] RUN false', inputs: [D('a')], cacheKey: D('k'), cacheMiss: 'command changed' });
    t += 500;
    p.error(D('b'), 'exit code: 1');
    p.start({ id: D('c'), name: '[x 1/1] RUN sleep 9' });
    p.canceled(D('c'));
    expect(parseRawJson(s.text())).toEqual([
      { vertexes: [{ digest: D('a'), name: '[1/2] FROM busybox', started: iso(T0) }] },
      { vertexes: [{ digest: D('a'), name: '[1/2] FROM busybox', started: iso(T0), completed: iso(T0), cached: true }] },
      { vertexes: [{ digest: D('b'), inputs: [D('a')], name: '[2/2] RUN false', started: iso(T0), cacheKey: D('k'), cacheMiss: 'command changed' }] },
      { vertexes: [{ digest: D('b'), inputs: [D('a')], name: '[2/2] RUN false', started: iso(T0), cacheKey: D('k'), cacheMiss: 'command changed', completed: iso(T0 + 500), error: 'exit code: 1' }] },
      { vertexes: [{ digest: D('c'), name: '[x 1/1] RUN sleep 9', started: iso(T0 + 500) }] },
      // BuildKit's canceled vertex: an error ending in "context canceled" (displays show CANCELED).
      { vertexes: [{ digest: D('c'), name: '[x 1/1] RUN sleep 9', started: iso(T0 + 500), completed: iso(T0 + 500), error: 'context canceled' }] },
    ]);
  });

  it('logs as base64 with stream 1/2, statuses with current always and total when known, warnings with base64 short', () => {
    const s = sink();
    const p = new RawJsonProgress(s.out, { now: () => T0 });
    p.start({ id: 'internal:dockerfile', name: '[internal] load build definition from Dockerfile' });
    const v = vertexDigest('internal:dockerfile');
    expect(v).toMatch(/^sha256:[0-9a-f]{64}$/);
    p.log('internal:dockerfile', 'stdout', Buffer.from('hello\n'));
    p.log('internal:dockerfile', 'stderr', Buffer.from([0xff, 0x00]));
    p.status({ vertex: 'internal:dockerfile', id: 'transferring dockerfile:', started: T0, completed: T0 });
    p.status({ vertex: 'internal:dockerfile', id: 'pushing layers', current: 10, total: 20, started: T0 });
    p.warning({
      vertex: 'internal:dockerfile', level: 1, short: 'FromAsCasing: x (line 1)', detail: ['The casing...'], url: 'https://docs.docker.com/go/dockerfile/rule/from-as-casing/',
      sourceInfo: { filename: 'Dockerfile', data: 'FROM a as b\n', language: 'Dockerfile' }, range: [{ start: { line: 1 }, end: { line: 1 } }],
    });
    const [, log1, log2, st1, st2, warn] = parseRawJson(s.text());
    expect(log1).toEqual({ logs: [{ vertex: v, stream: 1, data: Buffer.from('hello\n').toString('base64'), timestamp: iso(T0) }] });
    expect(Buffer.from(log2.logs![0].data, 'base64')).toEqual(Buffer.from([0xff, 0x00]));
    expect(log2.logs![0].stream).toBe(2);
    expect(st1).toEqual({ statuses: [{ id: 'transferring dockerfile:', vertex: v, current: 0, timestamp: iso(T0), started: iso(T0), completed: iso(T0) }] });
    expect(st2.statuses![0]).toEqual({ id: 'pushing layers', vertex: v, total: 20, current: 10, timestamp: iso(T0), started: iso(T0) });
    expect(warn.warnings![0]).toEqual({
      vertex: v, level: 1, short: Buffer.from('FromAsCasing: x (line 1)').toString('base64'),
      detail: [Buffer.from('The casing...').toString('base64')], url: 'https://docs.docker.com/go/dockerfile/rule/from-as-casing/',
      sourceInfo: { filename: 'Dockerfile', data: Buffer.from('FROM a as b\n').toString('base64'), language: 'Dockerfile' },
      range: [{ start: { line: 1 }, end: { line: 1 } }],
    });
  });

  it('every line is one JSON object and nothing else', () => {
    const s = sink();
    const p = new RawJsonProgress(s.out);
    p.start({ id: 'x', name: 'a "quoted"\nname' });
    p.log('x', 'stdout', Buffer.from('line1\nline2\n'));
    p.done('x');
    const lines = s.text().split('\n');
    expect(lines.pop()).toBe('');
    expect(lines).toHaveLength(3);
    for (const l of lines) expect(typeof JSON.parse(l)).toBe('object');
  });
});
