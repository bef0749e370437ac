import { describe, it, expect } from 'vitest';
import { Writable } from 'node:stream';
import { TtyProgress } from '../../src/progress/tty.js';

/**
 * A terminal stand-in that applies what the display sends: `ESC[nF` (up n lines), `ESC[2K` (clear the
 * line), `ESC[J` (clear to the end of the screen), text and newlines. `screen()` is what a user sees.
 */
function terminal(columns = 60, rows = 0) {
  const screen: string[] = [];
  let row = 0;
  let raw = '';
  const apply = (s: string) => {
    raw += s;
    // eslint-disable-next-line no-control-regex
    const re = /\x1b\[(\d*)([FKJ])|\n|[^\x1b\n]+/g;
    for (let m = re.exec(s); m; m = re.exec(s)) {
      if (m[0] === '\n') { row++; continue; }
      if (m[2] === 'F') { row = Math.max(0, row - Number(m[1] || 1)); continue; }
      if (m[2] === 'K') { screen[row] = ''; continue; }
      if (m[2] === 'J') { screen.length = Math.min(screen.length, row + 1); screen[row] = ''; continue; }
      screen[row] = (screen[row] ?? '') + m[0];
    }
  };
  const out = Object.assign(new Writable({ write(c, _e, cb) { apply(String(c)); cb(); } }), { columns, rows });
  return { out, screen: () => screen.map((l) => (l ?? '').trimEnd()).filter((l, i, a) => l !== '' || i < a.length - 1), raw: () => raw };
}

function clock() {
  let t = Date.UTC(2026, 0, 1);
  return { now: () => t, advance: (ms: number) => { t += ms; } };
}

describe('tty progress', () => {
  it('one block redrawn in place: state before the name as BuildKit (CACHED, ERROR), time on the right', () => {
    const t = terminal();
    const c = clock();
    const p = new TtyProgress(t.out, { now: c.now });
    p.start({ id: 'a', name: '[1/3] FROM busybox' });
    p.done('a', { cached: true });
    p.start({ id: 'b', name: '[2/3] COPY . /app', cacheMiss: 'COPY .: changed a.txt' });
    c.advance(1200);
    p.done('b');
    p.start({ id: 'c', name: '[3/3] RUN make' });
    p.log('c', 'stdout', Buffer.from('compiling 1\ncompiling 2\npartial'));
    c.advance(300);
    p.start({ id: 'd', name: 'exporting' });
    const f = t.screen();
    expect(f[0]).toBe('[+] Building 1.5s (2/4)');
    expect(f[1]).toMatch(/^ => CACHED \[1\/3\] FROM busybox +0\.0s$/);
    expect(f[2]).toMatch(/^ => \[2\/3\] COPY \. \/app +1\.2s$/);
    expect(f[3]).toBe(' => => cache miss: COPY .: changed a.txt');
    expect(f[4]).toMatch(/^ => \[3\/3\] RUN make +0\.3s$/);
    expect(f.slice(5, 8)).toEqual([' => => # compiling 1', ' => => # compiling 2', ' => => # partial']);
    expect(f[8]).toMatch(/^ => exporting +0\.0s$/);
    expect(f).toHaveLength(9);
    // Each redraw moves back over the previous block.
    expect(t.raw()).toMatch(/\x1b\[\d+F/);
    p.error('c', 'exit code: 2');
    expect(t.screen()[4]).toMatch(/^ => ERROR \[3\/3\] RUN make +0\.3s$/);
    expect(p.tail('c', 2)).toEqual(['compiling 2', 'partial']);
  });

  it('shows sub-steps (context transfer, export steps, pushed bytes) under their step', () => {
    const t = terminal(80);
    const c = clock();
    const p = new TtyProgress(t.out, { now: c.now });
    p.start({ id: 'ctx', name: '[internal] load build context' });
    p.status({ vertex: 'ctx', id: 'transferring context:', current: 2048, started: c.now(), completed: c.now() });
    p.done('ctx');
    p.start({ id: 'x', name: 'exporting to image' });
    p.status({ vertex: 'x', id: 'exporting layers', started: c.now() });
    c.advance(400);
    p.status({ vertex: 'x', id: 'exporting layers', started: c.now() - 400, completed: c.now() });
    p.status({ vertex: 'x', id: 'naming to docker.io/library/app:1', started: c.now(), completed: c.now() });
    p.start({ id: 'push', name: 'pushing docker.io/library/app:1' });
    p.status({ vertex: 'push', id: 'pushing layers', current: 1_200_000, total: 3_400_000, started: c.now() });
    const f = t.screen();
    expect(f).toContainEqual(expect.stringMatching(/^ => => transferring context: 2\.05kB +0\.0s$/));
    expect(f).toContainEqual(expect.stringMatching(/^ => => exporting layers +0\.4s$/));
    expect(f).toContainEqual(expect.stringMatching(/^ => => naming to docker\.io\/library\/app:1 +0\.0s$/));
    expect(f).toContainEqual(expect.stringMatching(/^ => => pushing layers 1\.20MB \/ 3\.40MB +0\.0s$/));
    // Sub-steps follow their own step.
    expect(f.findIndex((l) => l.includes('exporting layers'))).toBeGreaterThan(f.findIndex((l) => l.includes('exporting to image')));
  });

  it('shows platform-prefixed step names of multi-platform builds as they are, and warnings', () => {
    const t = terminal(80);
    const p = new TtyProgress(t.out, { now: clock().now });
    p.start({ id: 'l', name: '[internal] load build definition from Dockerfile' });
    p.warning({ vertex: 'l', short: 'FromAsCasing: casing (line 1)' });
    p.done('l');
    p.start({ id: 'a', name: '[linux/arm64 2/3] RUN make' });
    p.start({ id: 'b', name: '[linux/amd64 2/3] RUN make' });
    const f = t.screen();
    expect(f).toContain(' => WARN: FromAsCasing: casing (line 1)');
    expect(f).toContainEqual(expect.stringMatching(/^ => \[linux\/arm64 2\/3\] RUN make +0\.0s$/));
    expect(f).toContainEqual(expect.stringMatching(/^ => \[linux\/amd64 2\/3\] RUN make +0\.0s$/));
  });

  it('fits lines to the terminal width and the block to its height; the final block is whole', () => {
    const t = terminal(40, 5);
    const p = new TtyProgress(t.out, { now: clock().now });
    for (let i = 0; i < 10; i++) { p.start({ id: `v${i}`, name: `[${i}/10] RUN ${'x'.repeat(60)}` }); p.done(`v${i}`); }
    const f = t.screen();
    expect(f).toHaveLength(4);
    expect(f[0]).toContain('(10/10)');
    for (const l of f) expect(l.length).toBeLessThanOrEqual(39);
    expect(f[3]).toContain('[9/10]');
    p.stop();
    const last = t.screen();
    expect(last[0]).toMatch(/^\[\+\] Building 0\.0s \(10\/10\) FINISHED$/);
    expect(last).toHaveLength(11);
  });

  it('a running step\'s time moves with no event; nothing is redrawn once every step is over', async () => {
    const t = terminal();
    const c = clock();
    const p = new TtyProgress(t.out, { now: c.now });
    p.start({ id: 'a', name: '[1/1] RUN sleep 5' });
    c.advance(2000);
    for (let i = 0; i < 100 && !t.screen()[1]?.endsWith('2.0s'); i++) await new Promise((r) => setTimeout(r, 50));
    expect(t.screen()[1]).toMatch(/^ => \[1\/1\] RUN sleep 5 +2\.0s$/);
    p.done('a');
    const written = t.raw().length;
    await new Promise((r) => setTimeout(r, 600));
    expect(t.raw().length).toBe(written);
  });

  it('cancel: the note goes above the block, no stale copy of the block stays, nothing is drawn after stop', async () => {
    const t = terminal(60);
    const c = clock();
    const p = new TtyProgress(t.out, { now: c.now });
    p.start({ id: 'a', name: '[1/2] RUN sleep 100' });
    p.log('a', 'stdout', Buffer.from('working\n'));
    p.start({ id: 'b', name: '[2/2] RUN sleep 100' });
    p.note('received SIGINT, canceling build');
    p.canceled('a');
    p.canceled('b');
    // A log arriving late schedules a redraw; stop() comes first and nothing may be drawn after it.
    p.log('a', 'stdout', Buffer.from('late\n'));
    p.stop();
    const written = t.raw().length;
    await new Promise((r) => setTimeout(r, 250));
    expect(t.raw().length).toBe(written);
    const f = t.screen();
    expect(f[0]).toBe('received SIGINT, canceling build');
    expect(f.filter((l) => l.startsWith('[+] Building'))).toHaveLength(1);
    expect(f.filter((l) => l.includes('RUN sleep 100'))).toEqual([
      expect.stringMatching(/^ => CANCELED \[1\/2\] RUN sleep 100 +0\.0s$/),
      expect.stringMatching(/^ => CANCELED \[2\/2\] RUN sleep 100 +0\.0s$/),
    ]);
    // Output after the display stopped (the CLI's error line) goes below the final block.
    t.out.write('ERROR: build canceled\n');
    expect(t.screen().at(-1)).toBe('ERROR: build canceled');
  });
});
