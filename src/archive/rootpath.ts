// Resolving a path inside a directory as if that directory were `/` (what a chroot would see): symlinks
// are followed, absolute targets restart at the root, and `..` never climbs above it.
import fs from 'node:fs/promises';
import path from 'node:path';
import { UserError } from '../util/errors.js';
import { osPath, readlinkNameAsync } from '../util/names.js';

export class SymlinkLoopError extends UserError {
  constructor(p: string) { super('ELOOP', `${p}: too many levels of symbolic links`); }
}

const MAX_LINKS = 255;

/**
 * Host path of `p` inside `root`. With `followFinal` false a symlink in the last component is kept (the
 * path names the link itself). Missing components are appended as they are.
 */
export async function resolveInRoot(root: string, p: string, followFinal = true): Promise<string> {
  const resolved: string[] = [];
  let pending = split(p);
  let links = 0;
  let missing = false;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === '..') {
      resolved.pop();
      continue;
    }
    if (missing || (pending.length === 0 && !followFinal)) {
      resolved.push(part);
      continue;
    }
    const host = path.join(root, ...resolved, part);
    let st;
    try {
      st = await fs.lstat(osPath(host));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw e;
      missing = true;
      resolved.push(part);
      continue;
    }
    if (!st.isSymbolicLink()) {
      resolved.push(part);
      continue;
    }
    if (++links > MAX_LINKS) throw new SymlinkLoopError(p);
    const target = await readlinkNameAsync(host);
    if (target.startsWith('/')) resolved.length = 0;
    pending = [...split(target), ...pending];
  }
  return path.join(root, ...resolved);
}

/** Slash path components without empty and `.` parts. */
function split(p: string): string[] {
  return p.split('/').filter((s) => s !== '' && s !== '.');
}

/** The path relative to root, with a leading `/` (for messages and in-root bookkeeping). */
export function inRootPath(root: string, host: string): string {
  const rel = path.relative(root, host);
  return rel === '' ? '/' : `/${rel}`;
}
