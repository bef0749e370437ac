// Persistent cache records under `<root>/cache/records/`: cache key -> result (a chain of committed
// snapshot ids). A record is written (temp + rename) only after every snapshot it names is committed, and
// a lookup checks they still exist, so a killed build or a pruned snapshot never yields a broken hit.
// A record cannot name the wrong chain either: it holds its key and each snapshot's uid, and the top
// snapshot knows the keys whose records name it (Snapshotter.addKey); a record that disagrees with the
// snapshots (a damaged or rewritten file, an id taken by a newer snapshot) is a miss.
// A record's mtime is its last use (for least-recently-used GC).
import fs from 'node:fs/promises';
import fsSync from 'node:fs';
import path from 'node:path';
import type { Digest } from '../../solver/llb/ops.js';
import type { Snapshotter } from '../snapshot/snapshotter.js';
import { writeFileAtomic } from '../util/fs.js';

export interface CacheRecord {
  key: Digest;
  layers: string[];
  /** The uid of each snapshot in `layers`, when the record was written. */
  uids: string[];
  /** When the result was made (ISO time). */
  created: string;
  /** The step's content key when it had one (early cutoff): a hit exports it too (--cache-to). */
  contentKey?: Digest;
}

export class CacheRecords {
  readonly dir: string;
  /**
   * With `memo`: the uid of each committed snapshot seen, read once. Only for a build's records: while a
   * build is live no snapshot is removed (prune and GC wait for no other build) and a snapshot's uid never
   * changes, so a chain of n steps costs n marker reads instead of n^2/2 (every record names its whole
   * chain). Only found snapshots are kept: one made later under a free id is read when asked.
   */
  private readonly uids: Map<string, Promise<string | undefined>> | undefined;

  constructor(root: string, private readonly snapshots: Snapshotter, opts: { memo?: boolean } = {}) {
    this.dir = path.join(root, 'cache', 'records');
    if (opts.memo) this.uids = new Map();
  }

  /** The uid recorded for a committed snapshot; undefined when it is not committed (or has none). */
  private snapshotUid(id: string): Promise<string | undefined> {
    const read = () => this.snapshots.info(id).then((info) => info?.uid, () => undefined);
    if (!this.uids) return read();
    let p = this.uids.get(id);
    if (!p) {
      p = read();
      this.uids.set(id, p);
      p.then((uid) => { if (uid === undefined && this.uids!.get(id) === p) this.uids!.delete(id); }, () => undefined);
    }
    return p;
  }

  private file(key: Digest): string {
    return path.join(this.dir, key.replace('sha256:', ''));
  }

  async get(key: Digest): Promise<CacheRecord | null> {
    let rec: CacheRecord;
    try {
      // Records are small and a no-op build reads one per step: read at once (see Snapshotter.info).
      rec = JSON.parse(fsSync.readFileSync(this.file(key), 'utf8')) as CacheRecord;
    } catch {
      return null;
    }
    if (!(await this.matches(key, rec))) return null;
    const now = new Date();
    try { fsSync.utimesSync(this.file(key), now, now); } catch { /* removed meanwhile: still the hit it was */ }
    return rec;
  }

  /** Whether the record for `key` is readable and matches its snapshots (its last use is not touched). */
  async valid(key: Digest): Promise<boolean> {
    try {
      return await this.matches(key, JSON.parse(fsSync.readFileSync(this.file(key), 'utf8')) as CacheRecord);
    } catch {
      return false;
    }
  }

  /** The keys of every record file, readable or not. */
  async listFiles(): Promise<{ key: Digest }[]> {
    const names = await fs.readdir(this.dir).catch(() => [] as string[]);
    return names.filter((n) => /^[0-9a-f]{64}$/.test(n)).map((n) => ({ key: `sha256:${n}` as Digest }));
  }

  /** Whether the record is one written for `key` and its snapshots are still the ones it named. */
  private async matches(key: Digest, rec: CacheRecord): Promise<boolean> {
    // No empty chains: with no snapshot to vouch for them, a damaged record could claim any step made nothing.
    if (typeof rec !== 'object' || rec === null || rec.key !== key || !Array.isArray(rec.layers) || rec.layers.length === 0 ||
      !Array.isArray(rec.uids) || rec.uids.length !== rec.layers.length) return false;
    for (const [i, id] of rec.layers.entries()) {
      if (typeof id !== 'string') return false;
      const uid = await this.snapshotUid(id);
      if (uid === undefined || uid !== rec.uids[i]) return false;
    }
    return this.snapshots.hasKey(rec.layers.at(-1)!, key);
  }

  /**
   * Records `key` -> `layers`; nothing is written when a snapshot is gone meanwhile (the next run makes it),
   * nor for an empty chain (scratch: nothing to save by recording it).
   */
  async put(key: Digest, layers: string[], contentKey?: Digest): Promise<void> {
    if (layers.length === 0) return;
    const uids: string[] = [];
    for (const id of layers) {
      // A snapshot committed before uids is given one by uid().
      const uid = (await this.snapshotUid(id)) ?? (await this.snapshots.uid(id));
      if (uid === null) return;
      uids.push(uid);
    }
    // The snapshot learns the key first: a record is never there without it.
    await this.snapshots.addKey(layers.at(-1)!, key);
    const rec: CacheRecord = { key, layers, uids, created: new Date().toISOString(), ...(contentKey ? { contentKey } : {}) };
    await writeFileAtomic(this.file(key), JSON.stringify(rec));
  }

  async remove(key: Digest): Promise<void> {
    await fs.rm(this.file(key), { force: true });
  }

  /** All records with their last-use time; unreadable ones (never complete: writes are atomic) are skipped. */
  async list(): Promise<(CacheRecord & { lastUsed: number })[]> {
    const names = await fs.readdir(this.dir).catch(() => [] as string[]);
    const out: (CacheRecord & { lastUsed: number })[] = [];
    for (const name of names) {
      const file = path.join(this.dir, name);
      if (name.includes('.tmp-')) continue;
      try {
        const [text, st] = await Promise.all([fs.readFile(file, 'utf8'), fs.stat(file)]);
        const rec = JSON.parse(text) as CacheRecord;
        // A damaged file is no record: the next build writes it again.
        if (typeof rec?.key !== 'string' || !Array.isArray(rec.layers) || !rec.layers.every((l) => typeof l === 'string')) continue;
        out.push({ ...rec, lastUsed: st.mtimeMs });
      } catch {
        // removed meanwhile
      }
    }
    return out;
  }

  /** Temp files of writes a killed build never finished, here and in the other cache directories. */
  async cleanup(): Promise<void> {
    const cacheDir = path.dirname(this.dir);
    const dirs = [cacheDir, this.dir, ...['history', 'history/files', 'contexts', 'selections', '../outputs'].map((d) => path.join(cacheDir, d))];
    await Promise.all(dirs.map(async (dir) => {
      const names = await fs.readdir(dir).catch(() => [] as string[]);
      await Promise.all(names.filter((n) => n.includes('.tmp-')).map((n) => fs.rm(path.join(dir, n), { force: true })));
    }));
  }
}
