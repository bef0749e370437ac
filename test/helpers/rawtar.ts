// A deliberately naive tar writer for hostile test inputs: it writes exactly the names, link targets,
// types and PAX records it is given, with none of the checks a real archiver makes.
import { gzipSync } from 'node:zlib';

export interface RawEntry {
  name: string;
  type: 'file' | 'dir' | 'symlink' | 'link' | 'char' | 'block' | 'fifo';
  content?: string;
  linkname?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  devmajor?: number;
  devminor?: number;
  /** Seconds since the epoch; 1_700_000_000 by default. */
  mtime?: number;
  /** PAX records (e.g. `SCHILY.xattr.trusted.overlay.redirect`), written in an `x` header before the entry. */
  pax?: Record<string, string>;
}

const TYPEFLAG: Record<RawEntry['type'], string> = {
  file: '0', link: '1', symlink: '2', char: '3', block: '4', dir: '5', fifo: '6',
};

function octal(n: number, width: number): string {
  return n.toString(8).padStart(width - 1, '0') + '\0';
}

function header(name: string, typeflag: string, size: number, e: Partial<RawEntry> = {}): Buffer {
  const b = Buffer.alloc(512);
  const put = (s: string, off: number, len: number) => b.write(s, off, len, 'binary');
  put(name, 0, 100);
  put(octal(e.mode ?? (typeflag === '5' ? 0o755 : 0o644), 8), 100, 8);
  put(octal(e.uid ?? 0, 8), 108, 8);
  put(octal(e.gid ?? 0, 8), 116, 8);
  put(octal(size, 12), 124, 12);
  put(octal(e.mtime ?? 1_700_000_000, 12), 136, 12);
  put('        ', 148, 8);
  put(typeflag, 156, 1);
  put(e.linkname ?? '', 157, 100);
  put('ustar\0', 257, 6);
  put('00', 263, 2);
  put(octal(e.devmajor ?? 0, 8), 329, 8);
  put(octal(e.devminor ?? 0, 8), 337, 8);
  let sum = 0;
  for (const byte of b) sum += byte;
  put(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8);
  return b;
}

function padded(data: Buffer): Buffer[] {
  const pad = (512 - (data.length % 512)) % 512;
  return [data, Buffer.alloc(pad)];
}

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return `${len}${body}`;
}

/** Names longer than 100 bytes are not supported: hostile names here are short on purpose. */
export function rawTar(entries: RawEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    if (Buffer.byteLength(e.name) > 100 || Buffer.byteLength(e.linkname ?? '') > 100) throw new Error(`name too long: ${e.name}`);
    if (e.pax) {
      const data = Buffer.from(Object.entries(e.pax).map(([k, v]) => paxRecord(k, v)).join(''));
      parts.push(header('PaxHeaders/x', 'x', data.length), ...padded(data));
    }
    const data = Buffer.from(e.type === 'file' ? e.content ?? '' : '');
    parts.push(header(e.name, TYPEFLAG[e.type], data.length, e), ...padded(data));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

export const gzipTar = (entries: RawEntry[]) => gzipSync(rawTar(entries));
