// ADD <url> without --checksum, keyed by what it downloads (as BuildKit's http source): the key phase
// fetches the URL, conditionally when an earlier download of it is kept (If-None-Match /
// If-Modified-Since), and the op then uses that same download. Per URL, the state directory keeps the
// validators, the content digest and the snapshot holding the file, so an unchanged remote file costs one
// request and no body.
import fs from 'node:fs/promises';
import path from 'node:path';
import type { HttpSource } from '../../solver/llb/ops.js';
import { sha256 } from '../../solver/llb/digest.js';
import type { Snapshotter } from '../snapshot/snapshotter.js';
import { writeFileAtomic } from '../util/fs.js';
import { fetchHttpSource } from './http.js';

/** A download of a URL: the snapshot with its file, and what the file's content and mtime came from. */
export interface HttpDownload {
  snapshot: string;
  digest: string;
  etag?: string;
  lastModified?: string;
}

interface Kept extends HttpDownload {
  url: string;
  filename: string;
  uid: string;
}

export class HttpDownloads {
  private readonly dir: string;

  constructor(root: string, private readonly snapshots: Snapshotter) {
    this.dir = path.join(root, 'http');
  }

  private file(source: HttpSource): string {
    return path.join(this.dir, sha256(`${source.url}\0${source.filename}`).slice(7));
  }

  /** The kept download of this URL and filename, if its snapshot is still the one it was. */
  private async kept(source: HttpSource): Promise<Kept | null> {
    const k = await fs.readFile(this.file(source), 'utf8').then((t) => JSON.parse(t) as Kept, () => null);
    if (!k || k.url !== source.url || k.filename !== source.filename || typeof k.snapshot !== 'string' || typeof k.digest !== 'string') return null;
    if (!(await this.snapshots.exists(k.snapshot))) return null;
    return (await this.snapshots.uid(k.snapshot)) === k.uid ? k : null;
  }

  /**
   * The current content of the URL: the kept download when the server says it has not changed (304), else a
   * new download. `fresh` (a step told not to use the cache) always downloads anew.
   */
  async current(source: HttpSource, opts: { fresh?: boolean; signal?: AbortSignal } = {}): Promise<HttpDownload> {
    const kept = opts.fresh ? null : await this.kept(source);
    const validators = kept && (kept.etag || kept.lastModified) ? { etag: kept.etag, lastModified: kept.lastModified } : undefined;
    const id = await this.snapshots.prepare();
    let got;
    try {
      got = await fetchHttpSource(source, this.snapshots.fsPath(id), opts.signal, undefined, validators);
      if (got) await this.snapshots.commit(id, {});
    } catch (e) {
      await this.snapshots.remove(id).catch(() => undefined);
      throw e;
    }
    if (!got) {
      await this.snapshots.remove(id).catch(() => undefined);
      return { snapshot: kept!.snapshot, digest: kept!.digest, etag: kept!.etag, lastModified: kept!.lastModified };
    }
    // The same body again (a server without validators): the kept snapshot serves, the new one goes.
    if (kept && kept.digest === got.digest && kept.lastModified === got.lastModified) {
      await this.snapshots.remove(id).catch(() => undefined);
      const same = { ...kept, etag: got.etag };
      await this.keep(source, same);
      return same;
    }
    const download = { snapshot: id, ...got };
    await this.keep(source, { ...download, url: source.url, filename: source.filename, uid: (await this.snapshots.uid(id)) ?? '' });
    return download;
  }

  private async keep(source: HttpSource, k: Kept): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(this.file(source), JSON.stringify(k));
  }
}
