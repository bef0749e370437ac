// Archive outputs this state directory wrote: an OCI or docker tarball destination that still holds exactly
// the archive a build would write again (same image, names and format; the file not replaced or changed
// since, by inode, size, mtime and ctime, which no tool can set back) is left as it is, as an image store
// leaves an unchanged image. A fully cached rebuild then costs no copy of every layer.
import fs from 'node:fs/promises';
import path from 'node:path';
import { sha256 } from '../../solver/llb/digest.js';
import { writeFileAtomic } from '../util/fs.js';

interface OutputRecord {
  fingerprint: string;
  dev: string;
  ino: string;
  size: string;
  mtimeNs: string;
  ctimeNs: string;
}

export class ArchiveOutputs {
  private readonly dir: string;

  constructor(root: string) {
    this.dir = path.join(root, 'outputs');
  }

  /** True when `dest` is the archive recorded for `fingerprint` and unchanged since. */
  async upToDate(dest: string, fingerprint: string): Promise<boolean> {
    if (dest === '-') return false;
    const [rec, st] = await Promise.all([
      fs.readFile(this.file(dest), 'utf8').then((t) => JSON.parse(t) as OutputRecord, () => null),
      fs.lstat(dest, { bigint: true }).catch(() => null),
    ]);
    return !!rec && !!st && st.isFile() && rec.fingerprint === fingerprint && rec.dev === String(st.dev) && rec.ino === String(st.ino) &&
      rec.size === String(st.size) && rec.mtimeNs === String(st.mtimeNs) && rec.ctimeNs === String(st.ctimeNs);
  }

  /** Remembers that `dest` was just written for `fingerprint`. */
  async record(dest: string, fingerprint: string): Promise<void> {
    if (dest === '-') return;
    const st = await fs.lstat(dest, { bigint: true });
    const rec: OutputRecord = {
      fingerprint, dev: String(st.dev), ino: String(st.ino), size: String(st.size), mtimeNs: String(st.mtimeNs), ctimeNs: String(st.ctimeNs),
    };
    await fs.mkdir(this.dir, { recursive: true });
    await writeFileAtomic(this.file(dest), JSON.stringify(rec));
  }

  private file(dest: string): string {
    return path.join(this.dir, sha256(path.resolve(dest)).slice(7));
  }
}
