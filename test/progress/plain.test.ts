import { describe, it, expect } from 'vitest';
import { Writable } from 'node:stream';
import { PlainProgress, formatBytes, statusLine } from '../../src/progress/printer.js';

function sink() {
  let text = '';
  const out = new Writable({ write(c, _e, cb) { text += c; cb(); } });
  return { out, text: () => text, lines: () => text.split('\n') };
}

/** A clock the test moves by hand. */
function clock(start = Date.UTC(2026, 0, 1)) {
  let t = start;
  return { now: () => t, advance: (ms: number) => { t += ms; } };
}

describe('plain progress (BuildKit format)', () => {
  it('does not start with a blank line; separates vertices with one', () => {
    const s = sink();
    const c = clock();
    const p = new PlainProgress(s.out, { now: c.now });
    p.start({ id: 'a', name: '[internal] load build definition from Dockerfile' });
    p.status({ vertex: 'a', id: 'transferring dockerfile:', current: 97, started: c.now(), completed: c.now() });
    p.done('a');
    p.start({ id: 'b', name: '[1/2] FROM busybox' });
    p.done('b', { cached: true });
    expect(s.text()).toBe([
      '#1 [internal] load build definition from Dockerfile',
      '#1 transferring dockerfile: 97B done',
      '#1 DONE 0.0s',
      '',
      '#2 [1/2] FROM busybox',
      '#2 CACHED',
      '',
    ].join('\n'));
  });

  it('says why a step whose input re-ran was reused (early cutoff)', () => {
    const s = sink();
    const p = new PlainProgress(s.out, { now: clock().now });
    p.start({ id: 'a', name: '[stage-1 2/3] COPY --from=build /out.txt /out.txt', cacheReused: 'input unchanged after [build 3/3] re-ran' });
    p.done('a', { cached: true });
    expect(s.lines().slice(0, 3)).toEqual([
      '#1 [stage-1 2/3] COPY --from=build /out.txt /out.txt',
      '#1 reused: input unchanged after [build 3/3] re-ran',
      '#1 CACHED',
    ]);
  });

  it('prints logs with their time since the step started, the miss reason, DONE with the duration', () => {
    const s = sink();
    const c = clock();
    const p = new PlainProgress(s.out, { now: c.now });
    p.start({ id: 'r', name: '[2/2] RUN make', cacheMiss: 'command changed' });
    c.advance(70);
    p.log('r', 'stdout', Buffer.from('one\ntw'));
    c.advance(30);
    p.log('r', 'stdout', Buffer.from('o\n'));
    p.log('r', 'stderr', Buffer.from('no newline'));
    c.advance(1200);
    p.done('r');
    expect(s.lines()).toEqual([
      '#1 [2/2] RUN make',
      '#1 cache miss: command changed',
      '#1 0.070 one',
      '#1 0.100 two',
      '#1 1.300 no newline',
      '#1 DONE 1.3s',
      '',
    ]);
    expect(p.tail('r', 2)).toEqual(['two', 'no newline']);
  });

  it('interleaved steps: `#N ...` when leaving one still running, its header again when it returns', () => {
    const s = sink();
    const c = clock();
    const p = new PlainProgress(s.out, { now: c.now });
    p.start({ id: 'a', name: '[a 1/1] RUN x' });
    p.start({ id: 'b', name: '[b 1/1] RUN y' });
    p.log('a', 'stdout', Buffer.from('from a\n'));
    p.error('b', 'exit code: 1');
    p.canceled('a');
    expect(s.lines()).toEqual([
      '#1 [a 1/1] RUN x',
      '#1 ...',
      '',
      '#2 [b 1/1] RUN y',
      '#2 ...',
      '',
      '#1 [a 1/1] RUN x',
      '#1 0.000 from a',
      '#1 ...',
      '',
      '#2 [b 1/1] RUN y',
      '#2 ERROR: exit code: 1',
      '',
      '#1 [a 1/1] RUN x',
      '#1 CANCELED',
      '',
    ]);
  });

  it('prints sub-steps with bytes and time, warnings as WARN', () => {
    const s = sink();
    const c = clock();
    const p = new PlainProgress(s.out, { now: c.now });
    p.start({ id: 'e', name: 'exporting to image' });
    const started = c.now();
    p.status({ vertex: 'e', id: 'pushing layers', current: 0, total: 3_400_000, started });
    c.advance(100);
    // Under 5% more and under 5 s later: not printed again.
    p.status({ vertex: 'e', id: 'pushing layers', current: 100_000, total: 3_400_000, started });
    p.status({ vertex: 'e', id: 'pushing layers', current: 1_200_000, total: 3_400_000, started });
    c.advance(200);
    p.status({ vertex: 'e', id: 'pushing layers', current: 3_400_000, total: 3_400_000, started, completed: c.now() });
    p.warning({ vertex: 'e', short: 'FromAsCasing: casing (line 1)' });
    p.done('e');
    expect(s.lines()).toEqual([
      '#1 exporting to image',
      '#1 pushing layers 0B / 3.40MB',
      '#1 pushing layers 1.20MB / 3.40MB 0.1s',
      '#1 pushing layers 3.40MB / 3.40MB 0.3s done',
      '#1 WARN: FromAsCasing: casing (line 1)',
      '#1 DONE 0.3s',
      '',
    ]);
  });

  it('formats bytes and status lines as BuildKit', () => {
    expect(formatBytes(30)).toBe('30B');
    expect(formatBytes(1234)).toBe('1.23kB');
    expect(formatBytes(28_290_000)).toBe('28.29MB');
    expect(statusLine({ vertex: 'v', id: 'naming to docker.io/library/x:1', started: 0, completed: 5 }, 5)).toBe('naming to docker.io/library/x:1 done');
    expect(statusLine({ vertex: 'v', id: 'exporting layers', started: 0 }, 2500)).toBe('exporting layers 2.5s');
  });
});
