import { describe, it, expect } from 'vitest';
import { EventProgress, replay, teeProgress, type ProgressEvent } from '../../src/progress/events.js';
import { completeWriter, type ProgressWriter } from '../../src/progress/writer.js';

const T0 = Date.UTC(2026, 0, 1, 12);
const iso = (ms: number) => new Date(ms).toISOString();

/** A writer that records every call with its arguments. */
function recorder(): ProgressWriter & { calls: unknown[][] } {
  const calls: unknown[][] = [];
  return {
    calls,
    start: (v) => calls.push(['start', v]),
    done: (id, o) => calls.push(['done', id, o]),
    log: (id, s, c, t) => calls.push(['log', id, s, c.toString(), t]),
    error: (id, m, c) => calls.push(['error', id, m, c]),
    canceled: (id, c) => calls.push(['canceled', id, c]),
    status: (s) => calls.push(['status', s]),
    warning: (w) => calls.push(['warning', w]),
  };
}

describe('progress events', () => {
  it('carry what rawjson carries: times, inputs, cache key, miss reason, cached, sub-steps, warnings', () => {
    const events: ProgressEvent[] = [];
    let t = T0;
    const p = new EventProgress((e) => events.push(e), { now: () => t });
    p.start({ id: 'b', name: '[2/2] RUN make', inputs: ['a'], cacheKey: 'sha256:k', cacheMiss: 'command changed' });
    t += 100;
    p.log('b', 'stdout', Buffer.from('hi\n'));
    p.status({ vertex: 'b', id: 'pushing layers', current: 5, total: 10, started: T0 });
    p.warning({ vertex: 'b', level: 1, short: 'Rule: x (line 2)', url: 'https://example.invalid/rule' });
    t += 100;
    p.done('b');
    p.start({ id: 'a', name: '[1/2] FROM x' });
    p.done('a', { cached: true });
    p.error('c', 'boom');
    p.canceled('d');
    expect(events).toEqual([
      { type: 'start', id: 'b', name: '[2/2] RUN make', started: iso(T0), inputs: ['a'], cacheKey: 'sha256:k', cacheMiss: 'command changed' },
      { type: 'log', id: 'b', stream: 'stdout', data: 'hi\n', timestamp: iso(T0 + 100) },
      { type: 'status', vertex: 'b', id: 'pushing layers', current: 5, total: 10, started: iso(T0), timestamp: iso(T0 + 100) },
      { type: 'warning', vertex: 'b', level: 1, short: 'Rule: x (line 2)', url: 'https://example.invalid/rule' },
      { type: 'done', id: 'b', completed: iso(T0 + 200) },
      { type: 'start', id: 'a', name: '[1/2] FROM x', started: iso(T0 + 200) },
      { type: 'done', id: 'a', completed: iso(T0 + 200), cached: true },
      { type: 'error', id: 'c', message: 'boom', completed: iso(T0 + 200) },
      { type: 'canceled', id: 'd', completed: iso(T0 + 200) },
    ]);
  });

  it('replay keeps the times, so a remote build prints the server\'s durations', () => {
    const events: ProgressEvent[] = [];
    let t = T0;
    const p = new EventProgress((e) => events.push(e), { now: () => t });
    p.start({ id: 'b', name: 'RUN x', cacheMiss: 'env FOO changed' });
    t += 1500;
    p.log('b', 'stderr', Buffer.from('err\n'));
    p.done('b');
    const to = recorder();
    // Sent as JSON, as the server does.
    for (const e of events) replay(JSON.parse(JSON.stringify(e)) as ProgressEvent, to);
    expect(to.calls).toEqual([
      ['start', { id: 'b', name: 'RUN x', started: T0, inputs: undefined, cacheKey: undefined, cacheMiss: 'env FOO changed' }],
      ['log', 'b', 'stderr', 'err\n', T0 + 1500],
      ['done', 'b', { completed: T0 + 1500 }],
    ]);
  });

  it('replay into a writer with only start and done', () => {
    const seen: string[] = [];
    const minimal: ProgressWriter = { start: (v) => seen.push(`start ${v.id}`), done: (id) => seen.push(`done ${id}`) };
    const all: ProgressEvent[] = [
      { type: 'start', id: 'a', name: 'x', started: iso(T0) },
      { type: 'log', id: 'a', stream: 'stdout', data: 'x', timestamp: iso(T0) },
      { type: 'status', vertex: 'a', id: 's', timestamp: iso(T0) },
      { type: 'warning', vertex: 'a', short: 'w' },
      { type: 'error', id: 'a', message: 'm', completed: iso(T0) },
      { type: 'canceled', id: 'a', completed: iso(T0) },
      { type: 'done', id: 'a', completed: iso(T0) },
    ];
    for (const e of all) replay(e, minimal);
    expect(seen).toEqual(['start a', 'done a']);
  });

  it('tee writes to each writer, skipping what one lacks', () => {
    const a = recorder();
    const seen: string[] = [];
    const t = teeProgress(a, { start: (v) => seen.push(v.id), done: (id) => seen.push(`${id} done`) });
    t.start({ id: 'x', name: 'X' });
    t.log('x', 'stdout', Buffer.from('one\n'));
    t.status({ vertex: 'x', id: 's' });
    t.done('x');
    expect(a.calls.map((c) => c[0])).toEqual(['start', 'log', 'status', 'done']);
    expect(seen).toEqual(['x', 'x done']);
    expect(t.tail('x', 1)).toEqual(['one']);
  });
});

describe('completeWriter', () => {
  it('fills in what a writer lacks, keeps output tails itself, and ignores a writer that throws', () => {
    const w = completeWriter({ start: () => undefined, done: () => { throw new Error('display broke'); } });
    w.start({ id: 'a', name: 'A' });
    w.log('a', 'stdout', Buffer.from('1\n2\n3'));
    w.status({ vertex: 'a', id: 's' });
    w.warning({ vertex: 'a', short: 'w' });
    w.error('a', 'failed');
    w.canceled('a');
    expect(() => w.done('a')).not.toThrow();
    expect(w.tail('a', 2)).toEqual(['2', '3']);
    expect(completeWriter(w)).toBe(w);
  });
});
