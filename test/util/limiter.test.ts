import { describe, expect, it } from 'vitest';
import { Fifo, Limiter } from '../../src/util/limiter.js';

describe('Fifo', () => {
  it('gives values back in the order they were pushed, and undefined when empty', () => {
    const q = new Fifo<number>();
    expect(q.shift()).toBeUndefined();
    q.push(1); q.push(2);
    expect(q.shift()).toBe(1);
    q.push(3);
    expect([q.shift(), q.shift(), q.shift()]).toEqual([2, 3, undefined]);
    expect(q.size).toBe(0);
    q.push(4);
    expect(q.size).toBe(1);
    expect(q.shift()).toBe(4);
  });
});

describe('Limiter', () => {
  it('runs at most `max` calls at once and starts them in call order', async () => {
    const limiter = new Limiter(3);
    let running = 0;
    let most = 0;
    const started: number[] = [];
    const gates: (() => void)[] = [];
    const calls = Array.from({ length: 10 }, (_, i) => limiter.run(async () => {
      started.push(i);
      running++;
      most = Math.max(most, running);
      await new Promise<void>((r) => gates.push(r));
      running--;
      return i * 2;
    }));
    // Release one at a time: each release lets exactly the next waiter in.
    for (let released = 0; released < 10; released++) {
      while (gates.length === 0) await new Promise((r) => setImmediate(r));
      expect(running).toBeLessThanOrEqual(3);
      gates.shift()!();
      await new Promise((r) => setImmediate(r));
    }
    expect(await Promise.all(calls)).toEqual(Array.from({ length: 10 }, (_, i) => i * 2));
    expect(most).toBe(3);
    expect(started).toEqual([...Array(10).keys()]);
    expect(limiter.pending).toBe(0);
  });

  it('frees the slot of a call that fails', async () => {
    const limiter = new Limiter(1);
    const failed = limiter.run(async () => { throw new Error('boom'); });
    const next = limiter.run(async () => 'ran');
    await expect(failed).rejects.toThrow('boom');
    expect(await next).toBe('ran');
    expect(await limiter.run(async () => 'again')).toBe('again');
  });

  it('takes 200,000 waiting calls (one per file of a big context) and completes them all in order', async () => {
    const limiter = new Limiter(8);
    const n = 200_000;
    const order: number[] = [];
    const calls: Promise<void>[] = [];
    for (let i = 0; i < n; i++) calls.push(limiter.run(async () => { order.push(i); }));
    expect(limiter.pending).toBe(n - 8);
    await Promise.all(calls);
    expect(order.length).toBe(n);
    expect(order.every((v, i) => v === i)).toBe(true);
    expect(limiter.pending).toBe(0);
  });
});
