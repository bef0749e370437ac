import { describe, it, expect } from 'vitest';
import { Writable } from 'node:stream';
import { TtyProgress } from '../../src/progress/tty.js';

/** A terminal stand-in: collects writes; `frame()` is the last full redraw, control sequences removed. */
function terminal(columns = 60, rows = 0) {
  let text = '';
  const out = Object.assign(new Writable({ write(c, _e, cb) { text += c; cb(); } }), { columns, rows });
  const frame = () => {
    const last = text.split(/\x1b\[\d+F/).pop()!;
    return last.replace(/\x1b\[(2K|J)/g, '').split('\n').filter(Boolean).map((l) => l.trimEnd());
  };
  return { out, frame, raw: () => text };
}

describe('tty progress', () => {
  it('redraws one block: header, steps with status, cache-miss reasons, logs of running steps', () => {
    const t = terminal();
    const p = new TtyProgress(t.out);
    p.start({ id: 'a', name: '[1/3] FROM busybox' });
    p.done('a', { cached: true });
    p.start({ id: 'b', name: '[2/3] COPY . /app', cacheMiss: 'COPY .: changed a.txt' });
    p.done('b');
    p.start({ id: 'c', name: '[3/3] RUN make' });
    p.log('c', 'stdout', Buffer.from('compiling 1\ncompiling 2\npartial'));
    p.start({ id: 'd', name: 'exporting' });
    const f = t.frame();
    expect(f[0]).toMatch(/^\[\+\] Building \d+\.\ds \(2\/4\)$/);
    expect(f[1]).toMatch(/^ => \[1\/3\] FROM busybox +CACHED$/);
    expect(f[2]).toMatch(/^ => \[2\/3\] COPY \. \/app +\d+\.\ds$/);
    expect(f[3]).toBe(' => => cache miss: COPY .: changed a.txt');
    expect(f[4]).toMatch(/^ => \[3\/3\] RUN make +\d+\.\ds$/);
    expect(f.slice(5, 8)).toEqual([' => => # compiling 1', ' => => # compiling 2', ' => => # partial']);
    // Each redraw moves back over the previous block.
    expect(t.raw()).toMatch(/\x1b\[\d+F/);
    p.done('c');
    expect(t.frame().some((l) => l.includes('compiling'))).toBe(false);
    expect(p.tail('c', 2)).toEqual(['compiling 2', 'partial']);
  });

  it('fits lines to the terminal width and the block to its height', () => {
    const t = terminal(40, 5);
    const p = new TtyProgress(t.out);
    for (let i = 0; i < 10; i++) { p.start({ id: `v${i}`, name: `[${i}/10] RUN ${'x'.repeat(60)}` }); p.done(`v${i}`); }
    const f = t.frame();
    expect(f).toHaveLength(4);
    expect(f[0]).toContain('(10/10)');
    for (const l of f) expect(l.length).toBeLessThanOrEqual(39);
    expect(f[3]).toContain('[9/10]');
  });
});
