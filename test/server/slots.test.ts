import { describe, it, expect } from 'vitest';
import { BuildSlots } from '../../src/server/slots.js';

describe('BuildSlots', () => {
  it('grants in arrival order past the limit; a canceled waiter leaves the queue', async () => {
    const slots = new BuildSlots(2);
    const order: string[] = [];
    const r1 = await slots.acquire();
    const r2 = await slots.acquire();
    const waiting: number[] = [];
    const take = (name: string, signal?: AbortSignal) => slots.acquire(signal, (n) => waiting.push(n)).then((release) => { order.push(name); return release; });
    const c = new AbortController();
    const p3 = take('3');
    const p4 = take('4', c.signal);
    const p5 = take('5');
    expect(waiting).toEqual([0, 1, 2]);
    expect(slots.stats).toEqual({ running: 2, queued: 3, max: 2 });
    c.abort();
    await expect(p4).rejects.toMatchObject({ code: 'CANCELED' });
    expect(slots.stats.queued).toBe(2);
    r1();
    r1(); // a second release is a no-op
    const r3 = await p3;
    expect(order).toEqual(['3']);
    r2();
    await p5;
    expect(order).toEqual(['3', '5']);
    r3();
    expect(slots.stats).toEqual({ running: 1, queued: 0, max: 2 });
  });

  it('clients take turns: one client\'s many queued builds do not hold another\'s back', async () => {
    const slots = new BuildSlots(1);
    const order: string[] = [];
    const names = ['a1', 'a2', 'a3', 'b1', 'c1', 'b2'];
    const releases = new Map<string, () => void>();
    let current = await slots.acquire(undefined, undefined, 'a');
    const all = names.map((name) => slots.acquire(undefined, undefined, name[0]).then((r) => { order.push(name); releases.set(name, r); }));
    for (let i = 0; i < names.length; i++) {
      current();
      await new Promise((r) => setImmediate(r));
      current = releases.get(order[order.length - 1])!;
    }
    // Round robin from the first client that waited: a, b, c, a, b, a.
    await Promise.all(all);
    expect(order).toEqual(['a1', 'b1', 'c1', 'a2', 'b2', 'a3']);
  });

  it('0 is no limit', async () => {
    const slots = new BuildSlots(0);
    for (let i = 0; i < 50; i++) await slots.acquire();
    expect(slots.stats).toEqual({ running: 50, queued: 0, max: 0 });
  });
});
