// Public API for the state directory's disk usage (`builder du`) and cleanup (`builder prune`), and the
// automatic GC a build runs when the state grows past a configured size or its content store by enough
// blobs nothing may reference (each build's provenance, attestation manifest and index are new).
import fs from 'node:fs/promises';
import path from 'node:path';
import { GarbageCollector, contentCollectionDue, type PruneOptions, type Usage } from '../cache/gc.js';
import { withStateExclusive } from './lock.js';
import { verifyState, type VerifyReport } from '../cache/verify.js';
import { defaultRoot } from './build.js';
import { pruneLocalCache, type LocalPruneOptions } from '../cache/remotecache/local.js';
import { GitCache } from '../worker/git.js';

export type { PruneOptions, Usage, VerifyReport };

export async function diskUsage(opts: { root?: string } = {}): Promise<Usage> {
  const root = path.resolve(opts.root ?? defaultRoot());
  await fs.mkdir(root, { recursive: true });
  return withStateExclusive(root, async () => {
    const usage = await new GarbageCollector(root).usage();
    const git = await new GitCache(root).usage();
    usage.kinds.push({ kind: 'git sources', count: git.count, size: git.size, reclaimable: git.size });
    usage.total += git.size;
    usage.reclaimable += git.size;
    return usage;
  });
}

/**
 * Checks the state directory and repairs it (`builder du --verify`): damaged blobs and unreadable metadata
 * are removed or set aside, records that do not match their snapshots dropped. See src/cache/verify.ts.
 */
export async function verifyStateDir(opts: { root?: string } = {}): Promise<VerifyReport> {
  const root = path.resolve(opts.root ?? defaultRoot());
  await fs.mkdir(root, { recursive: true });
  return withStateExclusive(root, () => verifyState(root));
}

export async function prune(opts: PruneOptions & { root?: string }): Promise<{ freed: number; removed: number }> {
  const root = path.resolve(opts.root ?? defaultRoot());
  await fs.mkdir(root, { recursive: true });
  return withStateExclusive(root, async () => {
    const gc = new GarbageCollector(root);
    // The snapshotter's recovery first, so leftovers of a killed build are not counted or kept.
    await gc.snapshots.init();
    const result = await gc.prune(opts);
    // Git sources' repositories: all of them, or those unused for --filter until (a size bound leaves them).
    if (opts.keepStorage === undefined) {
      const git = await new GitCache(root).prune(opts.olderThanMs);
      result.freed += git.freed;
      result.removed += git.removed;
    }
    return result;
  });
}

/**
 * After a build, holding the exclusive lock with no other build running: evicts least recently used cache
 * when the state exceeds `limit` (a prune, which collects unreferenced content too), else collects
 * unreferenced content when due (see contentCollectionDue).
 */
export async function autoGC(root: string, limit: number | undefined): Promise<void> {
  const gc = new GarbageCollector(root);
  if (limit !== undefined) {
    const meta = await gc.snapshotMeta();
    let total = 0;
    for (const m of Object.values(meta)) total += m.size;
    if (total > limit) {
      await gc.prune({ keepStorage: limit });
      return;
    }
  }
  if (await contentCollectionDue(root)) await gc.collectContent();
}

/**
 * Prunes a cache directory (a `--cache-to type=local` destination): records last exported longer ago than
 * `olderThanMs`, then the oldest until the blobs fit in `keepStorage`; blobs no record names are removed.
 */
export async function pruneCacheDir(dir: string, opts: LocalPruneOptions): Promise<{ records: number; removed: number; freed: number }> {
  return pruneLocalCache(path.resolve(dir), opts);
}
