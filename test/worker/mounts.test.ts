// RUN cache mounts' sharing modes, on the mount preparation itself (no container needed to see them).
import { describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { ExecOp } from '../../solver/llb/ops.js';
import { prepareMounts, type MountContext } from '../../src/worker/mounts.js';

function op(sharing: 'shared' | 'private' | 'locked', id: string, readonly = false): ExecOp {
  return {
    kind: 'exec', inputs: [], platform: { os: 'linux', architecture: 'amd64' },
    meta: { args: ['true'], env: [], cwd: '/', user: '', network: 'sandbox' },
    mounts: [{ input: -1, dest: '/' }, { input: -1, dest: '/cache', type: 'cache', readonly, cache: { id, sharing } }],
  };
}

async function context(): Promise<MountContext> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'builder-mounts-'));
  return { root, snapshots: undefined as never, session: {}, inputs: [] };
}

describe('RUN cache mount sharing', () => {
  it('shared: every user gets the same directory', async () => {
    const ctx = await context();
    const a = await prepareMounts(op('shared', 's'), ctx);
    const b = await prepareMounts(op('shared', 's'), ctx);
    expect(b.mounts[0].source).toBe(a.mounts[0].source);
    await a.release();
    await b.release();
  });

  it('private: a user while the id is in use gets a fresh directory, removed afterwards', async () => {
    const ctx = await context();
    const a = await prepareMounts(op('private', 'p'), ctx);
    await fs.writeFile(path.join(a.mounts[0].source, 'mine'), 'a');
    const b = await prepareMounts(op('private', 'p'), ctx);
    expect(b.mounts[0].source).not.toBe(a.mounts[0].source);
    expect(await fs.readdir(b.mounts[0].source)).toEqual([]);
    await b.release();
    await expect(fs.access(b.mounts[0].source)).rejects.toThrow();
    await a.release();
    const c = await prepareMounts(op('private', 'p'), ctx);
    expect(c.mounts[0].source).toBe(a.mounts[0].source);
    expect(await fs.readdir(c.mounts[0].source)).toEqual(['mine']);
    await c.release();
  });

  it('locked: a second user waits until the first releases', async () => {
    const ctx = await context();
    const a = await prepareMounts(op('locked', 'l'), ctx);
    let bReady = false;
    const b = prepareMounts(op('locked', 'l'), ctx).then((m) => { bReady = true; return m; });
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    expect(bReady).toBe(false);
    await a.release();
    const mb = await b;
    expect(mb.mounts[0].source).toBe(a.mounts[0].source);
    await mb.release();
  });

  it('readonly: mounted ro', async () => {
    const ctx = await context();
    const m = await prepareMounts(op('shared', 'r', true), ctx);
    expect(m.mounts[0].options).toContain('ro');
    await m.release();
  });
});
