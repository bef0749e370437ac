// GC and the exporter's step hints (cache/layer-steps, src/client/export.ts): a hint keeps the blobs that
// still exist and goes when none is left.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GarbageCollector } from '../../src/cache/gc.js';
import { ContentStore } from '../../src/content/store.js';

describe('GC of layer step hints', () => {
  let root: string;
  beforeEach(async () => { root = await fs.mkdtemp(path.join(os.tmpdir(), 'gc-steps-')); });
  afterEach(async () => { await fs.rm(root, { recursive: true, force: true }); });

  it('drops hinted blobs that are gone, and hints with none left', async () => {
    const store = new ContentStore(path.join(root, 'content'));
    const kept = (await store.write(Buffer.from('a layer'))).digest;
    const gone = `sha256:${'1'.repeat(64)}`;
    const dir = path.join(root, 'cache/layer-steps');
    await fs.mkdir(dir, { recursive: true });
    await fs.writeFile(path.join(dir, 'both'), JSON.stringify({ blobs: [gone, kept] }));
    await fs.writeFile(path.join(dir, 'none'), JSON.stringify({ blobs: [gone] }));
    await fs.writeFile(path.join(dir, 'torn'), '{"blo');
    await new GarbageCollector(root).prune({});
    expect((await fs.readdir(dir)).sort()).toEqual(['both']);
    expect(JSON.parse(await fs.readFile(path.join(dir, 'both'), 'utf8'))).toEqual({ blobs: [kept] });
  });
});
