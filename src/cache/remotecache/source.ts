// What an import backend provides: the records it holds, and per blob a check (is it there and intact?)
// and a way to bring it into the content store. `RemoteCacheImporter` matches cache keys against the
// records of every source, in the order given, and hands out lazy results.
import type { Digest } from '../../../solver/llb/ops.js';
import type { ContentStore } from '../../content/store.js';
import type { RemoteLayer } from '../../worker/worker.js';
import type { CacheLayer, ResolvedRecord } from './format.js';

export interface CacheSource {
  /** How warnings name it: `cache dir /ci/cache`, `cache ref host/repo:tag`. */
  readonly name: string;
  readonly records: Map<Digest, ResolvedRecord>;
  /** Null when the blob is usable; otherwise what is wrong with it (missing, corrupt). */
  check(layer: CacheLayer): Promise<string | null>;
  fetch(layer: CacheLayer, store: ContentStore): Promise<void>;
}

export class RemoteCacheImporter {
  /** Per source and blob: the check's answer, computed once per build. */
  private readonly checked = new Map<string, Promise<string | null>>();
  private readonly warned = new Set<string>();

  constructor(readonly sources: CacheSource[], private readonly warn: (source: CacheSource, message: string) => void) {}

  get size(): number {
    return this.sources.reduce((n, s) => n + s.records.size, 0);
  }

  /**
   * The chain for a cache key from the first source whose record is whole; a record with a missing or
   * corrupt blob is a miss (with a warning), never a result that would fail later.
   */
  async lookup(key: Digest): Promise<RemoteLayer[] | null> {
    for (const source of this.sources) {
      const rec = source.records.get(key);
      if (!rec) continue;
      const problems = await Promise.all(rec.layers.map((l) => this.check(source, l)));
      const bad = problems.findIndex((p) => p !== null);
      if (bad >= 0) {
        const id = `${source.name}\0${rec.layers[bad].blob.digest}`;
        if (!this.warned.has(id)) {
          this.warned.add(id);
          this.warn(source, `${source.name}: blob ${rec.layers[bad].blob.digest} ${problems[bad]}: its records are not used`);
        }
        continue;
      }
      return rec.layers.map((l) => ({
        blob: l.blob, diffID: l.diffID, ...(l.created ? { created: l.created } : {}), ...(l.content ? { content: l.content } : {}),
        fetch: (store: ContentStore) => source.fetch(l, store),
      }));
    }
    return null;
  }

  /** The content key the first source holding `key` recorded with it, if any. */
  contentKey(key: Digest): Digest | undefined {
    for (const source of this.sources) {
      const rec = source.records.get(key);
      if (rec) return rec.contentKey;
    }
    return undefined;
  }

  private check(source: CacheSource, layer: CacheLayer): Promise<string | null> {
    const id = `${source.name}\0${layer.blob.digest}`;
    let p = this.checked.get(id);
    if (!p) {
      p = source.check(layer).catch((e: Error) => e.message);
      this.checked.set(id, p);
    }
    return p;
  }
}
