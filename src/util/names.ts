// File names are bytes on Linux; here they are strings. A name that is valid UTF-8 is its ordinary string;
// each byte of a name that is not valid UTF-8 is carried as a lone surrogate U+DC80..U+DCFF (Python's
// "surrogateescape", PEP 383), which no valid UTF-8 decodes to, so the mapping is lossless both ways and
// leaves every ordinary name (and every cache key made from one) as it was. Node's fs encodes strings as
// UTF-8 and would turn those surrogates into U+FFFD: a path that may hold one goes through `osPath` on its
// way to fs, a directory is read through `readdirNames`, and bytes written for a name (tar headers, hashes)
// come from `nameBytes`. The native addon (src/native/names.h) converts alike.
import fs from 'node:fs';
import { isUtf8 } from 'node:buffer';

/** A lone low surrogate standing for a byte (not the second half of a pair). */
const ESCAPED = /(?<![\uD800-\uDBFF])[\uDC80-\uDCFF]/;

/** Whether the string carries bytes that are not UTF-8 (then `osPath` gives a Buffer). A string without lone
 * surrogates (nearly every one) is told at once. */
export const hasEscapedBytes = (s: string): boolean => !wellFormed(s) && ESCAPED.test(s);

/** String.prototype.isWellFormed (Node 20+, beyond this project's TypeScript lib): false for lone surrogates. */
const wellFormed = (s: string): boolean => (s as string & { isWellFormed(): boolean }).isWellFormed();

/** The name's bytes: UTF-8, with escaped bytes as themselves. */
export function nameBytes(s: string): Buffer {
  if (!hasEscapedBytes(s)) return Buffer.from(s);
  const parts: Buffer[] = [];
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xdc80 && c <= 0xdcff && !(i > 0 && s.charCodeAt(i - 1) >= 0xd800 && s.charCodeAt(i - 1) <= 0xdbff)) {
      parts.push(Buffer.from(s.slice(start, i)), Buffer.of(c - 0xdc00));
      start = i + 1;
    }
  }
  parts.push(Buffer.from(s.slice(start)));
  return Buffer.concat(parts);
}

/** What to hand fs for a path: the string itself, or its bytes when it carries escaped ones. */
export const osPath = (p: string): string | Buffer => (hasEscapedBytes(p) ? nameBytes(p) : p);

/** A name's string from its bytes (see above). */
export function nameString(b: Buffer): string {
  if (isUtf8(b)) return b.toString('utf8');
  let out = '';
  let i = 0;
  while (i < b.length) {
    const n = validSequence(b, i);
    if (n) {
      out += b.toString('utf8', i, i + n);
      i += n;
    } else {
      out += String.fromCharCode(0xdc00 + b[i]);
      i++;
    }
  }
  return out;
}

/** Length of the valid UTF-8 sequence starting at `i`, or 0 (overlong forms and surrogates are not valid). */
function validSequence(b: Buffer, i: number): number {
  const c = b[i];
  if (c < 0x80) return 1;
  const cont = (k: number) => i + k < b.length && (b[i + k] & 0xc0) === 0x80;
  if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
  if (c >= 0xe0 && c <= 0xef) {
    if (!cont(1) || !cont(2)) return 0;
    const c1 = b[i + 1];
    if ((c === 0xe0 && c1 < 0xa0) || (c === 0xed && c1 >= 0xa0)) return 0;
    return 3;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    const c1 = b[i + 1];
    if ((c === 0xf0 && c1 < 0x90) || (c === 0xf4 && c1 >= 0x90)) return 0;
    return 4;
  }
  return 0;
}

/** A directory's entry names, bytes kept (fs.readdir's strings replace what is not UTF-8). */
export function readdirNames(dir: string): string[] {
  return fs.readdirSync(osPath(dir), { encoding: 'buffer' }).map(nameString);
}

/** readdirNames on the threadpool. */
export async function readdirNamesAsync(dir: string): Promise<string[]> {
  return (await fs.promises.readdir(osPath(dir), { encoding: 'buffer' })).map(nameString);
}

/** A symlink's target, bytes kept. */
export function readlinkName(p: string): string {
  return nameString(fs.readlinkSync(osPath(p), { encoding: 'buffer' }));
}

export async function readlinkNameAsync(p: string): Promise<string> {
  return nameString(await fs.promises.readlink(osPath(p), { encoding: 'buffer' }));
}
