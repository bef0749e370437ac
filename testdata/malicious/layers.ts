// Hostile image layers: each case is one layer whose entries try to reach a canary directory on the host
// (an absolute path outside the state directory). A case either fails with a clear error, or succeeds with
// everything it wrote confined to the image's own filesystem (`confined` lists where it must land there).
import type { RawEntry } from '../../test/helpers/rawtar.js';

export interface HostileLayer {
  name: string;
  entries: RawEntry[];
  /** Error expected: a regular expression the one-line error must match. */
  error?: RegExp;
  /** Success expected: paths (image-absolute) that must exist in the built filesystem. */
  confined?: string[];
  /** Paths that a `type=local` output must not hold (device nodes are never made there). */
  absent?: string[];
}

/** `canary` is an absolute host directory, e.g. /tmp/builder-canary-x1y2. */
export function hostileLayers(canary: string): HostileLayer[] {
  const rel = canary.replace(/^\//, '');
  const up = '../'.repeat(12);
  return [
    { name: 'dotdot-file', entries: [{ name: `${up}${rel}/pwned`, type: 'file', content: 'x' }], error: /points outside the layer/ },
    { name: 'absolute-file', entries: [{ name: `${canary}/pwned`, type: 'file', content: 'x' }], confined: [`${canary}/pwned`] },
    {
      name: 'symlink-absolute-then-write',
      entries: [{ name: 'evil', type: 'symlink', linkname: canary }, { name: 'evil/pwned', type: 'file', content: 'x' }],
      confined: [`${canary}/pwned`],
    },
    {
      name: 'symlink-relative-then-write',
      entries: [{ name: 'a/b/up', type: 'symlink', linkname: `${up}${rel}` }, { name: 'a/b/up/pwned', type: 'file', content: 'x' }],
      confined: [`${canary}/pwned`],
    },
    {
      name: 'symlink-chain',
      entries: [
        { name: 'l1', type: 'symlink', linkname: 'l2' },
        { name: 'l2', type: 'symlink', linkname: 'sub/l3' },
        { name: 'sub/l3', type: 'symlink', linkname: `../${up}${rel}` },
        { name: 'l1/pwned', type: 'file', content: 'x' },
      ],
      confined: [`${canary}/pwned`],
    },
    {
      name: 'symlink-then-dir-replaces-link',
      entries: [{ name: 'x', type: 'symlink', linkname: canary }, { name: 'x', type: 'dir' }, { name: 'x/pwned', type: 'file', content: 'x' }],
      confined: ['/x/pwned'],
    },
    { name: 'hardlink-dotdot', entries: [{ name: 'h', type: 'link', linkname: `${up}${rel}/canary.txt` }], error: /points outside the layer/ },
    {
      name: 'hardlink-through-symlink',
      entries: [{ name: 's', type: 'symlink', linkname: canary }, { name: 'h', type: 'link', linkname: 's/canary.txt' }],
      error: /hard ?link.*canary\.txt.*not found|not found.*canary\.txt/i,
    },
    {
      name: 'symlink-loop',
      entries: [{ name: 'a', type: 'symlink', linkname: 'b' }, { name: 'b', type: 'symlink', linkname: 'a' }, { name: 'a/x', type: 'file', content: 'x' }],
      error: /too many levels of symbolic links/,
    },
    { name: 'whiteout-dotdot', entries: [{ name: `${up}${rel}/.wh.canary.txt`, type: 'file' }], error: /points outside the layer/ },
    { name: 'whiteout-of-parent', entries: [{ name: 'd/.wh..', type: 'file' }], error: /points outside the layer/ },
    {
      name: 'whiteout-through-symlink',
      entries: [{ name: 'w', type: 'symlink', linkname: canary }, { name: 'w/.wh.canary.txt', type: 'file' }],
      confined: ['/w'],
    },
    {
      name: 'device-and-setuid',
      entries: [
        { name: 'dev/', type: 'dir' },
        { name: 'dev/evil-mem', type: 'char', devmajor: 1, devminor: 1, mode: 0o666 },
        { name: 'suid', type: 'file', content: '#!/bin/sh\n', mode: 0o4755 },
      ],
      confined: ['/suid'],
      absent: ['/dev/evil-mem'],
    },
    {
      name: 'overlay-xattr-forgery',
      entries: [
        { name: 'redir/', type: 'dir', pax: { 'SCHILY.xattr.trusted.overlay.redirect': canary } },
        { name: 'redir/f', type: 'file', content: 'x', pax: { 'SCHILY.xattr.trusted.overlay.metacopy': '' } },
      ],
      confined: ['/redir/f'],
    },
    {
      name: 'many-entries',
      entries: Array.from({ length: 10_000 }, (_, i) => ({ name: `many/${i % 100}/f${i}`, type: 'file' as const, content: '' })),
      confined: ['/many/99/f9999'],
    },
  ];
}
