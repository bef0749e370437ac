// Mount targets the runtime had to create (an empty /etc/hosts, /etc itself) are not part of what RUN
// produced: remember which were missing before the run and remove them after it if still empty (BuildKit's
// MountStubsCleaner). BuildKit restores only the mtime the removal changed; we also undo the creation's
// change to the nearest existing directory when the run left its entries as they were.
import fs from 'node:fs/promises';
import path from 'node:path';
import { resolveInRoot } from '../archive/rootpath.js';

interface DirState {
  entries: string;
  atimeNs: bigint;
  mtimeNs: bigint;
}

/** Records which of `targets` (container paths) and their parents are missing; returns the cleaner. */
export async function mountStubsCleaner(rootfs: string, targets: string[]): Promise<() => Promise<void>> {
  const missing = new Set<string>();
  const anchors = new Map<string, DirState>();
  for (const target of targets) {
    let p = await resolveInRoot(rootfs, target);
    if (!p.startsWith(rootfs + path.sep) || (await exists(p))) continue;
    while (p.startsWith(rootfs + path.sep) && !(await exists(p))) {
      missing.add(p);
      p = path.dirname(p);
    }
    if (!anchors.has(p)) anchors.set(p, await dirState(p));
  }
  // Deepest first, so a created directory is empty by the time it is checked.
  const ordered = [...missing].sort((a, b) => b.length - a.length);
  return async () => {
    for (const p of ordered) await removeStub(p);
    for (const [dir, before] of anchors) {
      const now = await dirState(dir).catch(() => undefined);
      if (now?.entries === before.entries) await setTimes(dir, before);
    }
  };
}

async function exists(p: string): Promise<boolean> {
  try {
    await fs.lstat(p);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return false;
    throw e;
  }
}

async function dirState(dir: string): Promise<DirState> {
  const st = await fs.lstat(dir, { bigint: true });
  const entries = st.isDirectory() ? (await fs.readdir(dir)).sort().join('\0') : '';
  return { entries, atimeNs: st.atimeNs, mtimeNs: st.mtimeNs };
}

// Seconds as a double keep sub-microsecond precision; a Date would round to milliseconds.
function setTimes(p: string, t: { atimeNs: bigint; mtimeNs: bigint }): Promise<void> {
  return fs.utimes(p, Number(t.atimeNs) / 1e9, Number(t.mtimeNs) / 1e9);
}

async function removeStub(p: string): Promise<void> {
  let st;
  try { st = await fs.lstat(p); } catch { return; }
  // Anything the command put there is its output and stays.
  if (st.isDirectory() ? (await fs.readdir(p)).length > 0 : st.size !== 0) return;
  const parent = path.dirname(p);
  const before = await fs.lstat(parent, { bigint: true });
  if (st.isDirectory()) await fs.rmdir(p);
  else await fs.unlink(p);
  await setTimes(parent, before);
}
