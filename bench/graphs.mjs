#!/usr/bin/env node
// Solver overhead on big graphs, without containers or disks: the generated Dockerfiles of B10 (100 stages,
// fan-out then fan-in with COPY --from) and of one stage of 1,000 instructions are converted to LLB by the
// frontend and solved by the solver with an executor that does nothing and an in-memory cache whose keys
// are computed as the real ones are (each op's key from its inputs' keys). Prints, per graph: ops, the
// conversion's time, a cold solve (every op runs) and a warm one (the root's key hits), time per op, and
// the heap the solve keeps.
//
//   npm run --silent build && node --expose-gc bench/graphs.mjs [--reps N]
//
// Unlike run.mjs this imports the compiled engine (dist/): it measures the solver, not the CLI.
import { createHash } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { b10Dockerfile, longStageDockerfile } from './lib/data.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const dist = (p) => import(path.join(HERE, '..', 'dist', p));
const { dockerfileToLLB } = await dist('frontend/dockerfile/dockerfile2llb.js');
const { solve } = await dist('solver/solver.js');

const { values: opt } = parseArgs({ options: { reps: { type: 'string', default: '5' } } });
const reps = Math.max(1, Number(opt.reps) || 5);
const platform = { os: 'linux', architecture: 'amd64' };
const BASE = '127.0.0.1:5000/busybox:1.35';
const resolver = {
  async resolveImageConfig(ref) {
    return { ref: `${ref}@sha256:${'0'.repeat(64)}`, config: { architecture: 'amd64', os: 'linux', config: { Env: ['PATH=/bin'] }, rootfs: { type: 'layers', diff_ids: [] } } };
  },
};

/** Keys as the real cache makes them: the op's digest with its inputs' keys, hashed; a map of records. */
function memoryCache(records) {
  return {
    async key(ctx) {
      const inputs = [];
      const n = ctx.op.kind === 'source' ? 0 : (ctx.op.inputs?.length ?? 0);
      for (let i = 0; i < n; i++) inputs.push(await ctx.inputKey(i));
      return `sha256:${createHash('sha256').update(`${ctx.digest}\0${inputs.join(',')}`).digest('hex')}`;
    },
    async load(key) {
      const r = records.get(key);
      return r ? { hit: true, result: r } : { hit: false };
    },
    async save(key, result) {
      records.set(key, result);
    },
  };
}

const heap = () => {
  globalThis.gc?.();
  return process.memoryUsage().heapUsed;
};
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function measure(name, dockerfile) {
  const convertMs = [];
  let def;
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    ({ definition: def } = await dockerfileToLLB({ dockerfile, buildArgs: { BASE }, targetPlatform: platform, buildPlatform: platform, resolver }));
    convertMs.push(performance.now() - t0);
  }
  const ops = Object.keys(def.ops).length;
  const execute = async (ctx) => ({ op: ctx.digest });
  const cold = [];
  const warm = [];
  let kept = 0;
  for (let r = 0; r < reps; r++) {
    const records = new Map();
    const before = heap();
    let t0 = performance.now();
    const result = await solve(def, { execute, cache: memoryCache(records), maxParallelism: 2 });
    cold.push(performance.now() - t0);
    kept = Math.max(kept, heap() - before);
    t0 = performance.now();
    await solve(def, { execute, cache: memoryCache(records), maxParallelism: 2 });
    warm.push(performance.now() - t0);
    if (!result) throw new Error('no result');
  }
  const c = median(cold);
  const w = median(warm);
  console.log(`${name.padEnd(26)} ops ${String(ops).padStart(5)}  convert ${median(convertMs).toFixed(1).padStart(7)} ms  ` +
    `cold ${c.toFixed(1).padStart(7)} ms (${(1000 * c / ops).toFixed(0).padStart(4)} µs/op)  ` +
    `warm ${w.toFixed(1).padStart(6)} ms (${(1000 * w / ops).toFixed(0).padStart(4)} µs/op)  ` +
    `heap kept ${(kept / 2 ** 20).toFixed(1)} MiB (${(kept / ops / 1024).toFixed(1)} KiB/op)`);
}

if (!globalThis.gc) console.log('(run with node --expose-gc for the heap figures)');
await measure('B10: 100 stages', b10Dockerfile(100));
await measure('1,000 instructions', longStageDockerfile(1000));
await measure('1,000 stages (fan-out/in)', b10Dockerfile(1000));
