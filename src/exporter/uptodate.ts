// Archive outputs this state directory wrote: an OCI or docker tarball destination that still holds exactly
// the archive a build would write again (same image, names and format; the file not replaced or changed
// since, by inode, size, mtime and ctime, which no tool can set back) is left as it is, as an image store
// leaves an unchanged image. A fully cached rebuild then costs no copy of every layer.
// The record also lists the archive's parts (layout.ts: each entry's header and body, by content, and
// where it ends), so that a rebuild whose archive starts the same (the layers; the default provenance's
// times change only the last small entries) writes only what follows the common start.
import fs from 'node:fs/promises';
import fsSync from 'node:fs';
import path from 'node:path';
import type { BigIntStats } from 'node:fs';
import { sha256 } from '../../solver/llb/digest.js';
import { writeFileAtomic } from '../util/fs.js';
import { PidLock } from '../util/pidlock.js';

/** An archive's parts in order: what each holds (a blob digest, or a hash of header bytes) and where it ends. */
export interface ArchiveParts {
  ids: string[];
  ends: number[];
}

interface OutputRecord {
  fingerprint: string;
  dev: string;
  ino: string;
  size: string;
  mtimeNs: string;
  ctimeNs: string;
  parts?: ArchiveParts;
}

/** A destination this state directory may have written, and what it wrote there. */
export interface RecordedOutput {
  outputs: ArchiveOutputs;
  /** What the build writes (format, image, names): equal fingerprints, equal archives. */
  fingerprint: string;
}

export class ArchiveOutputs {
  private readonly dir: string;

  constructor(root: string) {
    this.dir = path.join(root, 'outputs');
  }

  /** True when `dest` is the archive recorded for `fingerprint` and unchanged since. */
  async upToDate(dest: string, fingerprint: string): Promise<boolean> {
    if (dest === '-') return false;
    const [rec, st] = await Promise.all([this.read(dest), fs.lstat(dest, { bigint: true }).catch(() => null)]);
    return !!rec && !!st && st.isFile() && rec.fingerprint === fingerprint && sameFile(rec, st);
  }

  /**
   * The parts of the archive recorded for `dest` when `st` (the file as opened now) is still that archive,
   * untouched since; else null.
   */
  async previous(dest: string, st: BigIntStats): Promise<{ fingerprint: string; parts: ArchiveParts } | null> {
    const rec = await this.read(dest);
    if (!rec?.parts || !st.isFile() || !sameFile(rec, st)) return null;
    return { fingerprint: rec.fingerprint, parts: rec.parts };
  }

  /** Remembers that the file `st` describes, now at `dest`, was just written for `fingerprint` with these parts. */
  async record(dest: string, fingerprint: string, st: BigIntStats, parts?: ArchiveParts): Promise<void> {
    if (dest === '-') return;
    const rec: OutputRecord = {
      fingerprint, dev: String(st.dev), ino: String(st.ino), size: String(st.size), mtimeNs: String(st.mtimeNs), ctimeNs: String(st.ctimeNs),
      ...(parts ? { parts } : {}),
    };
    // Not synced: a record lost with the machine only costs one full write (its file will not match).
    await writeFileAtomic(this.file(dest), JSON.stringify(rec), { sync: false });
  }

  /** Drops what is known about `dest` (its next write is a full one). */
  async forget(dest: string): Promise<void> {
    await fs.rm(this.file(dest), { force: true });
  }

  /**
   * One writer per destination at a time (builds of this state directory): a rewrite in place, or from
   * the recorded parts, must not race another build's. Waits for a build writing there now.
   */
  async lock(dest: string): Promise<PidLock> {
    fsSync.mkdirSync(this.dir, { recursive: true });
    return PidLock.acquire(`${this.file(dest)}.lock`);
  }

  private async read(dest: string): Promise<OutputRecord | null> {
    try {
      return JSON.parse(fsSync.readFileSync(this.file(dest), 'utf8')) as OutputRecord;
    } catch {
      return null;
    }
  }

  private file(dest: string): string {
    return path.join(this.dir, sha256(path.resolve(dest)).slice(7));
  }
}

function sameFile(rec: OutputRecord, st: BigIntStats): boolean {
  return rec.dev === String(st.dev) && rec.ino === String(st.ino) && rec.size === String(st.size) &&
    rec.mtimeNs === String(st.mtimeNs) && rec.ctimeNs === String(st.ctimeNs);
}
