// The local exporter: the final filesystem copied into a client directory, as `--output type=local` does.
// Modes, symlinks, hard links within the tree, mtimes and xattrs are kept; owners only when running as
// root (an unprivileged client gets its own files, as with buildx). Device nodes are never made: an image's
// /dev entries would become working nodes with the image's modes in a client directory (a 0666 node for a
// host disk); they are skipped and reported. A tar output keeps them as entries.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { S_IFIFO, getXattr, listXattrs, mknod, setXattr } from '../native/fsx.js';
import { osPath, readdirNamesAsync, readlinkNameAsync } from '../util/names.js';

const isRoot = process.getuid?.() === 0;

/** Copies the tree; returns the device nodes it skipped (paths from the tree's root). */
export async function exportLocalDir(sourceDir: string, dest: string): Promise<{ skipped: string[] }> {
  await fsp.mkdir(dest, { recursive: true });
  const links = new Map<string, string>();
  const skipped: string[] = [];
  await copyEntry(sourceDir, dest, await fsp.lstat(sourceDir), links, { root: sourceDir, skipped });
  return { skipped };
}

async function copyEntry(src: string, dst: string, st: fs.Stats, links: Map<string, string>, walk: { root: string; skipped: string[] }): Promise<void> {
  if (st.isDirectory()) {
    // An existing destination directory is merged into; anything else in the way is replaced.
    const existing = await fsp.lstat(osPath(dst)).catch(() => null);
    if (existing && !existing.isDirectory()) await fsp.rm(osPath(dst), { recursive: true, force: true });
    if (!existing?.isDirectory()) await fsp.mkdir(osPath(dst));
    for (const name of await readdirNamesAsync(src)) {
      const child = path.join(src, name);
      await copyEntry(child, path.join(dst, name), await fsp.lstat(osPath(child)), links, walk);
    }
    await applyMetadata(src, dst, st);
    return;
  }
  await fsp.rm(osPath(dst), { recursive: true, force: true });
  const inode = `${st.dev}:${st.ino}`;
  const linked = st.nlink > 1 ? links.get(inode) : undefined;
  if (linked) {
    await fsp.link(osPath(linked), osPath(dst));
    return;
  }
  if (st.isFile()) {
    await fsp.copyFile(osPath(src), osPath(dst));
  } else if (st.isSymbolicLink()) {
    await fsp.symlink(osPath(await readlinkNameAsync(src)), osPath(dst));
  } else if (st.isFIFO()) {
    mknod(dst, S_IFIFO | (st.mode & 0o7777), 0, 0);
  } else {
    if (st.isCharacterDevice() || st.isBlockDevice()) walk.skipped.push(`/${path.relative(walk.root, src)}`);
    // Sockets have no content; device nodes are not made (see above).
    return;
  }
  if (st.nlink > 1) links.set(inode, dst);
  await applyMetadata(src, dst, st);
}

/** Owner first: chown clears setuid/setgid bits, so the mode must come after it. */
async function applyMetadata(src: string, dst: string, st: fs.Stats): Promise<void> {
  if (isRoot) await fsp.lchown(osPath(dst), st.uid, st.gid);
  if (!st.isSymbolicLink()) await fsp.chmod(osPath(dst), st.mode & 0o7777);
  for (const name of listXattrs(src)) {
    // Only root may set trusted.* and security.*; an unprivileged copy keeps what it can.
    if (!isRoot && !name.startsWith('user.')) continue;
    const value = getXattr(src, name);
    if (value) setXattr(dst, name, value);
  }
  await fsp.lutimes(osPath(dst), st.atime, st.mtime);
}
