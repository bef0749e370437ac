// Typed access to the native addon in fsx.c (xattrs, mknod and in-kernel copies, which Node's fs lacks).
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import fs from 'node:fs';

interface FsxBinding {
  list(path: string): string[];
  get(path: string, name: string): Buffer | null;
  set(path: string, name: string, value: Buffer): void;
  remove(path: string, name: string): void;
  mknod(path: string, mode: number, major: number, minor: number): void;
  copyRange(inFd: number, outFd: number, length: number): number;
}

function locateAddon(): string {
  // Compiled JS lives in dist/src/native (the bundled CLI in dist/src/cli, as deep); the addon is built in
  // src/native/build by `npm ci`.
  const here = path.dirname(fileURLToPath(import.meta.url));
  const candidates = [
    path.join(here, 'build/Release/fsx.node'),
    path.resolve(here, '../../../src/native/build/Release/fsx.node'),
  ];
  const found = candidates.find((p) => fs.existsSync(p));
  if (!found) throw new Error(`native addon fsx.node not built (run npm ci); looked in ${candidates.join(', ')}`);
  return found;
}

const binding = createRequire(import.meta.url)(locateAddon()) as FsxBinding;

/** Names of the extended attributes of a path (not following symlinks). */
export const listXattrs = (p: string): string[] => binding.list(p);
/** Value of one extended attribute, or null when it is not set. */
export const getXattr = (p: string, name: string): Buffer | null => binding.get(p, name);
export const setXattr = (p: string, name: string, value: Buffer): void => binding.set(p, name, value);
export const removeXattr = (p: string, name: string): void => binding.remove(p, name);

export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;
export const S_IFIFO = 0o010000;
/** mknod(2); `mode` carries the file type bits. */
export const mknod = (p: string, mode: number, major: number, minor: number): void =>
  binding.mknod(p, mode, major, minor);

/**
 * Copies up to `length` bytes from `inFd`'s position to `outFd`'s inside the kernel (both positions
 * advance); returns the bytes copied, fewer only at the end of the input.
 */
export const copyRange = (inFd: number, outFd: number, length: number): number => binding.copyRange(inFd, outFd, length);
