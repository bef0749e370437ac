import { describe, it, expect } from 'vitest';
import { DefinitionBuilder, parseDefinition, serializeDefinition } from '../../solver/llb/definition.js';
import { opDigest, sha256 } from '../../solver/llb/digest.js';
import type { Digest, ExecOp, Op } from '../../solver/llb/ops.js';
import { solve, SolveError, type SolveCache } from '../../solver/solver.js';

const platform = { os: 'linux', architecture: 'amd64' };
const exec = (input: Digest, cmd: string): ExecOp => ({
  kind: 'exec',
  inputs: [{ digest: input }],
  meta: { args: ['/bin/sh', '-c', cmd], env: [], cwd: '/', user: '', network: 'host' },
  mounts: [{ input: 0, dest: '/' }],
  platform,
});

/** Two stages sharing a base and a common first step, merged at the end. */
function graph() {
  const b = new DefinitionBuilder();
  const base = b.add({ kind: 'source', source: { type: 'image', ref: 'docker.io/library/busybox:1@sha256:00', platform } });
  const shared = b.add(exec(base, 'shared'), { description: 'shared' });
  const left = b.add(exec(shared, 'left'), { description: 'left', location: { file: 'Dockerfile', startLine: 3, endLine: 3 } });
  const right = b.add(exec(shared, 'right'), { description: 'right' });
  const unused = b.add(exec(base, 'unused'));
  const root = b.add({ kind: 'merge', inputs: [{ digest: left }, { digest: right }] });
  return { b, base, shared, left, right, unused, root };
}

describe('LLB digests', () => {
  it('are stable under key order and change with inputs', () => {
    const a: Op = { kind: 'source', source: { type: 'scratch' } };
    expect(opDigest(a)).toBe(opDigest(JSON.parse(JSON.stringify(a))));
    const { base } = graph();
    const x = exec(base, 'x');
    const reordered = { platform: x.platform, mounts: x.mounts, meta: x.meta, inputs: x.inputs, kind: x.kind } as ExecOp;
    expect(opDigest(reordered)).toBe(opDigest(x));
    expect(opDigest(exec(base, 'y'))).not.toBe(opDigest(x));
  });

  it('round-trip a definition through JSON and reject tampering', () => {
    const { b, root } = graph();
    const def = b.build(root);
    const json = serializeDefinition(def);
    expect(parseDefinition(json)).toEqual(def);
    const tampered = json.replaceAll('"left"', '"evil"');
    expect(() => parseDefinition(tampered)).toThrow(/does not match/);
  });

  it('keep only what the root needs', () => {
    const { b, root, unused } = graph();
    const def = b.build(root);
    expect(Object.keys(def.ops)).toHaveLength(5);
    expect(def.ops[unused]).toBeUndefined();
  });
});

describe('solve', () => {
  it('runs each op once, inputs first, independent ops in parallel', async () => {
    const { b, root, shared, left, right } = graph();
    const runs: string[] = [];
    let running = 0;
    let maxRunning = 0;
    const result = await solve<string>(b.build(root), {
      maxParallelism: 4,
      execute: async ({ digest, inputs }) => {
        runs.push(digest);
        running++;
        maxRunning = Math.max(maxRunning, running);
        await new Promise((r) => setTimeout(r, 20));
        running--;
        return `${digest.slice(7, 11)}(${inputs.join(',')})`;
      },
    });
    expect(runs.filter((d) => d === shared)).toHaveLength(1);
    expect(runs.indexOf(shared)).toBeLessThan(runs.indexOf(left));
    expect(maxRunning).toBe(2); // left and right together
    expect(result).toContain(left.slice(7, 11));
    expect(result).toContain(right.slice(7, 11));
  });

  it('runs file ops in a wider queue of their own unless one limit is given for all', async () => {
    // Ten RUNs and ten file ops from one base, merged: each op waits until released, and the counts of
    // those running are read once nothing more can start.
    const b = new DefinitionBuilder();
    const base = b.add({ kind: 'source', source: { type: 'scratch' } });
    const leaves: Digest[] = [];
    for (let i = 0; i < 10; i++) {
      leaves.push(b.add(exec(base, `run ${i}`)));
      leaves.push(b.add({ kind: 'file', inputs: [{ digest: base }], base: 0, actions: [{ action: 'mkdir', path: `/d${i}`, mode: 0o755, makeParents: false }] }));
    }
    const root = b.add({ kind: 'merge', inputs: leaves.map((digest) => ({ digest })) });
    const def = b.build(root);
    const settle = async () => { for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r)); };
    const peaks = async (limits: { maxParallelism?: number; maxFileParallelism?: number }) => {
      const running = { exec: 0, file: 0 };
      const waiting: (() => void)[] = [];
      const done = solve<string>(def, {
        ...limits,
        execute: async ({ op }) => {
          if (op.kind === 'exec' || op.kind === 'file') {
            running[op.kind]++;
            await new Promise<void>((r) => waiting.push(r));
            running[op.kind]--;
          }
          return op.kind;
        },
      });
      await settle();
      const seen = { ...running };
      while (running.exec + running.file > 0 || waiting.length > 0) {
        for (const release of waiting.splice(0)) release();
        await settle();
      }
      await done;
      return seen;
    };
    expect(await peaks({ maxParallelism: 2, maxFileParallelism: 6 })).toEqual({ exec: 2, file: 6 });
    // One number bounds all ops together.
    const one = await peaks({ maxParallelism: 3 });
    expect(one.exec + one.file).toBe(3);
  });

  it('reports the first failure with its metadata and cancels the rest', async () => {
    const { b, root, left, right } = graph();
    let rightAborted = false;
    const err = await solve(b.build(root), {
      execute: async ({ digest, signal }) => {
        if (digest === left) {
          await new Promise((r) => setTimeout(r, 10));
          throw new Error('boom');
        }
        if (digest === right) {
          await new Promise<void>((resolve, reject) => {
            const t = setTimeout(resolve, 5000);
            signal.addEventListener('abort', () => { clearTimeout(t); rightAborted = true; reject(signal.reason); });
          });
        }
        return 'ok';
      },
    }).catch((e) => e);
    expect(err).toBeInstanceOf(SolveError);
    expect(err.message).toBe('boom');
    expect(err.metadata.location.startLine).toBe(3);
    expect(rightAborted).toBe(true);
  });

  it('stops when the caller aborts', async () => {
    const { b, root } = graph();
    const controller = new AbortController();
    const p = solve(b.build(root), {
      signal: controller.signal,
      execute: ({ signal }) => new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason))),
    });
    setTimeout(() => controller.abort(), 10);
    await expect(p).rejects.toThrow(/cancel/);
  });
});

describe('solver with a cache', () => {
  /** A cache keyed like the worker's: a hash of the op's digest; `stored` holds results by key. */
  function memoryCache(stored: Map<string, string>) {
    const loads: string[] = [];
    const cache: SolveCache<string> = {
      key: async ({ digest }) => `sha256:k${digest.slice(7, 15)}` as Digest,
      load: async (key, { ignoreCache }) => {
        loads.push(key);
        const r = stored.get(key);
        return r !== undefined && !ignoreCache ? { hit: true, result: r } : { hit: false, reason: ignoreCache ? 'ignored' : undefined };
      },
      save: async (key, result) => { stored.set(key, result); },
    };
    return { cache, loads };
  }

  it('solves side by side with a shared table run an op with the same key once, and only one reports it', async () => {
    // Two definitions (two bake targets) with the base and the shared step in common.
    const one = new DefinitionBuilder();
    const two = new DefinitionBuilder();
    const { base: b1, shared: s1 } = (() => { const base = one.add({ kind: 'source', source: { type: 'image', ref: 'docker.io/library/busybox:1@sha256:00', platform } }); return { base, shared: one.add(exec(base, 'shared'), { description: 'shared' }) }; })();
    const rootOne = one.add(exec(s1, 'one'));
    const b2 = two.add({ kind: 'source', source: { type: 'image', ref: 'docker.io/library/busybox:1@sha256:00', platform } });
    const s2 = two.add(exec(b2, 'shared'), { description: 'shared' });
    const rootTwo = two.add(exec(s2, 'two'));
    expect(s2).toBe(s1);
    expect(b2).toBe(b1);
    const stored = new Map<string, string>();
    const shared = new Map<Digest, Promise<string>>();
    const ran: Digest[] = [];
    const started: Digest[] = [];
    const execute = async ({ digest }: { digest: Digest }) => {
      ran.push(digest);
      await new Promise((r) => setTimeout(r, 20));
      return `result-${digest}-${ran.length}`;
    };
    const onEvent = (ev: { type: string; digest: Digest }) => { if (ev.type === 'start') started.push(ev.digest); };
    const [r1, r2] = await Promise.all([
      solve(one.build(rootOne), { cache: memoryCache(stored).cache, execute, shared, onEvent }),
      solve(two.build(rootTwo), { cache: memoryCache(stored).cache, execute, shared, onEvent }),
    ]);
    expect(r1).toMatch(/^result-/);
    expect(r2).toMatch(/^result-/);
    expect(ran.filter((d) => d === s1)).toHaveLength(1);
    expect(ran.filter((d) => d === b1)).toHaveLength(1);
    expect(ran).toHaveLength(4);
    expect(started.filter((d) => d === s1)).toHaveLength(1);
  });

  it('a hit skips the op and everything below it; cached inputs are reported inputs first', async () => {
    const { b, root, left, shared, base } = graph();
    const def = b.build(root);
    const stored = new Map<string, string>();
    const first = memoryCache(stored);
    const ran: Digest[] = [];
    await solve(def, { cache: first.cache, execute: async ({ digest }) => { ran.push(digest); return digest; } });
    expect(ran).toHaveLength(5);

    const second: Digest[] = [];
    const events: string[] = [];
    const names: Record<string, string> = { [base]: 'base', [shared]: 'shared', [left]: 'left', [root]: 'root' };
    const result = await solve(def, {
      cache: memoryCache(stored).cache,
      execute: async ({ digest }) => { second.push(digest); return digest; },
      onEvent: (e) => { if (e.type === 'cached') events.push(names[e.digest] ?? 'right'); },
    });
    expect(result).toBe(root);
    expect(second).toEqual([]);
    expect(events[events.length - 1], events.join()).toBe('root');
    expect(events.indexOf('base'), events.join()).toBeLessThan(events.indexOf('shared'));
    expect(events.indexOf('shared')).toBeLessThan(events.indexOf('left'));
  });

  it('startEarly: a base image runs while the keys above it wait (a context checksum), not after', async () => {
    const { b, root, base, shared } = graph();
    const def = b.build(root);
    const stored = new Map<string, string>();
    const { cache } = memoryCache(stored);
    // The key of `shared` (all that is above the image needs it) waits until the image op has run.
    let imageRan!: () => void;
    const ranImage = new Promise<void>((r) => (imageRan = r));
    const slow: SolveCache<string> = { ...cache, key: async (ctx) => { if (ctx.digest === shared) await ranImage; return cache.key(ctx); } };
    const order: string[] = [];
    const execute = async ({ digest }: { digest: Digest }) => {
      order.push(digest === base ? 'base' : digest);
      if (digest === base) imageRan();
      return digest;
    };
    const early = await solve(def, { cache: slow, execute, startEarly: (op) => op.kind === 'source' && op.source.type === 'image' });
    expect(early).toBe(root);
    expect(order[0]).toBe('base');
    expect(order).toHaveLength(5);
    // Once everything is cached, an early start is a lookup: nothing runs.
    const again: string[] = [];
    await solve(def, { cache: memoryCache(stored).cache, execute: async ({ digest }) => { again.push(digest); return digest; }, startEarly: () => true });
    expect(again).toEqual([]);
  });

  it('an ignore-cache op runs even when a dependant hits, and reports why its dependants may still hit', async () => {
    const { b, root, left } = graph();
    const def = b.build(root);
    const stored = new Map<string, string>();
    await solve(def, { cache: memoryCache(stored).cache, execute: async ({ digest }) => digest });
    def.metadata[left] = { ...def.metadata[left], ignoreCache: true };
    const ran: Digest[] = [];
    const misses: (string | undefined)[] = [];
    await solve(def, {
      cache: memoryCache(stored).cache,
      execute: async ({ digest }) => { ran.push(digest); return digest; },
      onEvent: (e) => { if (e.type === 'start' && e.digest === left) misses.push(e.cacheMiss); },
    });
    expect(ran).toEqual([left]);
    expect(misses).toEqual(['ignored']);
  });

  it('needsInput leaves an input unexecuted', async () => {
    const { b, root, right } = graph();
    const def = b.build(root);
    const ran: Digest[] = [];
    await solve(def, {
      needsInput: (op, i) => !(op.kind === 'merge' && i === 1),
      execute: async ({ digest, inputs }) => { ran.push(digest); return digest + inputs.length; },
    });
    expect(ran).not.toContain(right);
  });
});

describe('deep graphs', () => {
  /** A chain of `n` exec ops on a scratch source; the bottom one ignores the cache when `forced`. */
  function deepChain(n: number, forced = false) {
    const b = new DefinitionBuilder();
    let d = b.add({ kind: 'source', source: { type: 'scratch' } });
    const bottom: Digest[] = [];
    for (let i = 0; i < n; i++) {
      d = b.add(exec(d, `step ${i}`), { description: `step ${i}`, ...(forced && i === 0 ? { ignoreCache: true } : {}) });
      bottom.push(d);
    }
    return { def: b.build(d), first: bottom[0] };
  }

  /** Keys from the inputs' keys, as the worker computes them: each key awaits the ones below. */
  const chainedCache = (stored: Map<string, string>): SolveCache<string> => ({
    key: async ({ digest, op, inputKey }) => {
      const inputs = op.kind === 'exec' ? await Promise.all(op.inputs.map((_, i) => inputKey(i))) : [];
      return sha256(`${digest}${inputs.join('')}`);
    },
    load: async (key, { ignoreCache }) => (stored.has(key) && !ignoreCache ? { hit: true, result: stored.get(key)! } : { hit: false }),
    save: async (key, result) => { stored.set(key, result); },
  });

  it('a chain of 20,000 ops is built, solved and cached without recursion as deep as the chain', async () => {
    const { def } = deepChain(20_000);
    expect(Object.keys(def.ops)).toHaveLength(20_001);
    let ran = 0;
    const execute = async ({ inputs }: { inputs: (string | undefined)[] }) => { ran++; return `${(inputs[0] ?? '').length}`; };
    await expect(solve(def, { execute })).resolves.toBeDefined();
    expect(ran).toBe(20_001);

    const stored = new Map<string, string>();
    ran = 0;
    await solve(def, { execute, cache: (chainedCache(stored)) });
    expect(ran).toBe(20_001);
    ran = 0;
    await solve(def, { execute, cache: (chainedCache(stored)) });
    expect(ran).toBe(0);
  });

  it('a cache-ignoring op at the bottom of a deep chain runs first, the rest hit', async () => {
    const { def, first } = deepChain(5_000, true);
    const stored = new Map<string, string>();
    await solve(def, { execute: async ({ digest }) => digest, cache: (chainedCache(stored)) });
    const ran: Digest[] = [];
    await solve(def, { execute: async ({ digest }) => { ran.push(digest); return digest; }, cache: (chainedCache(stored)) });
    expect(ran).toEqual([first]);
  });

  it('a failure at the bottom of a deep chain is the solve\'s error', async () => {
    const { def, first } = deepChain(5_000);
    const err = await solve(def, {
      execute: async ({ digest }) => { if (digest === first) throw new Error('bottom failed'); return digest; },
      cache: (chainedCache(new Map())),
    }).catch((e) => e);
    expect(err).toBeInstanceOf(SolveError);
    expect(err.message).toBe('bottom failed');
    expect(err.digest).toBe(first);
  });
});

describe('early cutoff (content keys)', () => {
  /**
   * A chain base -> a -> b -> c whose pre-run keys chain the inputs' keys, and whose content keys are the
   * op's digest with its inputs' results; a's keys carry `version` (an edited step): what `a` makes is
   * the same whatever its version.
   */
  function setup() {
    const b = new DefinitionBuilder();
    const base = b.add({ kind: 'source', source: { type: 'image', ref: 'docker.io/library/busybox:1@sha256:00', platform } });
    const a = b.add(exec(base, 'a'), { description: '[build 2/4] RUN a' });
    const bb = b.add(exec(a, 'b'), { description: '[build 3/4] RUN b' });
    const c = b.add(exec(bb, 'c'), { description: '[build 4/4] RUN c' });
    return { def: b.build(c), a, bb, c };
  }
  const cache = (stored: Map<string, string>, version: string, out: { contentKeys: number }): SolveCache<string> => ({
    key: async ({ digest, op, inputKey }) => {
      const inputs = op.kind === 'exec' ? await Promise.all(op.inputs.map((_, i) => inputKey(i))) : [];
      return sha256(`${digest}${inputs.join('')}${op.kind === 'exec' && op.meta.args[2] === 'a' ? version : ''}`);
    },
    load: async (key) => (stored.has(key) ? { hit: true, result: stored.get(key)! } : { hit: false }),
    save: async (key, result, { contentKey }) => {
      stored.set(key, result);
      if (contentKey) stored.set(contentKey, result);
    },
    contentKey: async ({ digest, op, inputs }) => {
      out.contentKeys++;
      return sha256(`content${digest}${inputs.join('')}${op.kind === 'exec' && op.meta.args[2] === 'a' ? version : ''}`);
    },
    loadContent: async (key) => stored.get(key),
  });

  it('an op whose input re-ran with the same result is reused, and so are the ops after it, with the reason', async () => {
    const { def, a } = setup();
    const stored = new Map<string, string>();
    const execute = async ({ digest }: { digest: Digest }) => `result of ${digest}`;
    await solve(def, { cache: cache(stored, 'v1', { contentKeys: 0 }), execute });

    const ran: Digest[] = [];
    const reused: Record<string, string> = {};
    await solve(def, {
      cache: cache(stored, 'v2', { contentKeys: 0 }),
      execute: async (ctx) => { ran.push(ctx.digest); return execute(ctx); },
      onEvent: (e) => { if (e.type === 'cached' && e.reused) reused[e.metadata.description!] = e.reused; },
    });
    expect(ran).toEqual([a]);
    expect(reused).toEqual({
      '[build 3/4] RUN b': 'input unchanged after [build 2/4] re-ran',
      '[build 4/4] RUN c': 'input unchanged after [build 2/4] re-ran',
    });

    // A no-op solve hits by the pre-run keys: no content key is computed.
    const counter = { contentKeys: 0 };
    const again: Digest[] = [];
    await solve(def, { cache: cache(stored, 'v2', counter), execute: async (ctx) => { again.push(ctx.digest); return execute(ctx); } });
    expect(again).toEqual([]);
    expect(counter.contentKeys).toBe(0);
  });

  it('an input that re-ran with another result misses; the first op after it to make the same is the cutoff', async () => {
    const { def, a, bb } = setup();
    const stored = new Map<string, string>();
    await solve(def, { cache: cache(stored, 'v1', { contentKeys: 0 }), execute: async ({ digest }) => digest });
    const ran: Digest[] = [];
    const reused: Record<string, string> = {};
    await solve(def, {
      cache: cache(stored, 'v2', { contentKeys: 0 }),
      execute: async ({ digest }) => { ran.push(digest); return digest === a ? 'other' : digest; },
      onEvent: (e) => { if (e.type === 'cached' && e.reused) reused[e.metadata.description!] = e.reused; },
    });
    expect(ran).toEqual([a, bb]);
    expect(reused).toEqual({ '[build 4/4] RUN c': 'input unchanged after [build 3/4] re-ran' });
  });
});
