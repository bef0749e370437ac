// A small tar codec for layers: USTAR headers with PAX records for what USTAR cannot hold (long or
// non-ASCII names, large ids and sizes, xattrs). Written here rather than with tar-stream because PAX
// values must be raw bytes: tar-stream decodes and encodes them as UTF-8, which corrupts binary xattrs
// such as security.capability. A name that is not UTF-8 goes into the PAX `path` record as its raw bytes, as
// Go's archive/tar (BuildKit's) writes it (src/util/names.ts).
import type { Readable } from 'node:stream';
import { UserError } from '../util/errors.js';
import { nameBytes, nameString } from '../util/names.js';

export type EntryType = 'file' | 'link' | 'symlink' | 'char' | 'block' | 'dir' | 'fifo';

export interface TarHeader {
  /** Slash path; directories end with `/`. */
  name: string;
  type: EntryType;
  /** Permission bits including setuid/setgid/sticky. */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Unix seconds. */
  mtime: number;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  xattrs?: Map<string, Buffer>;
}

export class TarFormatError extends UserError {
  constructor(message: string) { super('TAR_FORMAT', `invalid tar: ${message}`); }
}

const BLOCK = 512;
const TYPEFLAGS: Record<EntryType, string> = { file: '0', link: '1', symlink: '2', char: '3', block: '4', dir: '5', fifo: '6' };
const XATTR_PREFIX = 'SCHILY.xattr.';

// ------------------------------------------------------------------ writing

/** Writes tar entries to a stream, respecting backpressure. */
export class TarWriter {
  constructor(private readonly out: NodeJS.WritableStream) {}

  /** Adds an entry; `content` must deliver exactly `header.size` bytes for files. */
  async add(header: TarHeader, content?: AsyncIterable<Buffer>): Promise<void> {
    await this.write(encodeHeader(header));
    if (header.type !== 'file' || header.size === 0) return;
    let written = 0;
    for await (const chunk of content ?? []) {
      if (written + chunk.length > header.size) throw new TarFormatError(`${header.name} grew while being archived`);
      written += chunk.length;
      await this.write(chunk);
    }
    if (written !== header.size) throw new TarFormatError(`${header.name} shrank while being archived`);
    const pad = padding(header.size);
    if (pad) await this.write(Buffer.alloc(pad));
  }

  /** The end-of-archive marker: two zero blocks. */
  async finish(): Promise<void> {
    await this.write(Buffer.alloc(BLOCK * 2));
  }

  private write(buf: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.out.write(buf)) return resolve();
      const onDrain = () => { cleanup(); resolve(); };
      const onError = (e: Error) => { cleanup(); reject(e); };
      const cleanup = () => { this.out.removeListener('drain', onDrain); this.out.removeListener('error', onError); };
      this.out.once('drain', onDrain);
      this.out.once('error', onError);
    });
  }
}

const padding = (size: number) => (BLOCK - (size % BLOCK)) % BLOCK;

/** The header block(s) of an entry: a PAX extended header first when USTAR cannot hold everything. */
export function encodeHeader(h: TarHeader): Buffer {
  const pax: [string, Buffer][] = [];
  const split = splitUstarName(h.name);
  if (!split) pax.push(['path', nameBytes(h.name)]);
  const linkname = h.linkname ?? '';
  if (!fitsAscii(linkname, 100)) pax.push(['linkpath', nameBytes(linkname)]);
  for (const [key, value, width] of [['uid', h.uid, 8], ['gid', h.gid, 8], ['size', h.size, 12]] as const) {
    if (value >= 8 ** (width - 1)) pax.push([key, Buffer.from(String(value))]);
  }
  for (const [name, value] of [...(h.xattrs ?? [])].sort(([a], [b]) => Buffer.compare(Buffer.from(a), Buffer.from(b)))) {
    pax.push([XATTR_PREFIX + name, value]);
  }
  const main = ustarBlock({
    ...h,
    prefix: split?.prefix ?? '',
    shortName: split?.name ?? asciiTail(h.name, 100),
    linkname: fitsAscii(linkname, 100) ? linkname : asciiTail(linkname, 100),
  });
  if (pax.length === 0) return main;
  pax.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const body = Buffer.concat(pax.map(([k, v]) => paxRecord(k, v)));
  const base = h.name.replace(/\/$/, '').split('/').pop() ?? '';
  const paxHeader = ustarBlock({
    name: '', type: 'file', mode: 0o644, uid: 0, gid: 0, size: body.length, mtime: 0,
    prefix: '', shortName: asciiTail(`PaxHeaders.0/${base}`, 100), linkname: '', typeflag: 'x',
  });
  return Buffer.concat([paxHeader, body, Buffer.alloc(padding(body.length)), main]);
}

function paxRecord(key: string, value: Buffer): Buffer {
  const rest = Buffer.concat([Buffer.from(` ${key}=`), value, Buffer.from('\n')]);
  // The length prefix counts itself.
  let len = rest.length + 1;
  while (String(len).length + rest.length > len) len++;
  return Buffer.concat([Buffer.from(String(len)), rest]);
}

const isAscii = (s: string) => /^[\x01-\x7f]*$/.test(s);
const fitsAscii = (s: string, n: number) => isAscii(s) && s.length <= n;

/** A stand-in for the USTAR name field when the real name travels in a PAX record. */
function asciiTail(s: string, n: number): string {
  return s.replace(/[^\x01-\x7f]/g, '_').slice(-n);
}

/** USTAR's name (100 bytes) and prefix (155 bytes) split at a slash, or null when it cannot fit. */
function splitUstarName(name: string): { prefix: string; name: string } | null {
  if (!isAscii(name)) return null;
  if (name.length <= 100) return { prefix: '', name };
  for (let i = name.length - 1; i > 0; i--) {
    if (name[i] !== '/') continue;
    const prefix = name.slice(0, i);
    const rest = name.slice(i + 1);
    if (rest.length > 100 || rest.length === 0) return null;
    if (prefix.length <= 155) return { prefix, name: rest };
  }
  return null;
}

interface BlockFields extends TarHeader {
  prefix: string;
  shortName: string;
  typeflag?: string;
}

function ustarBlock(f: BlockFields): Buffer {
  const b = Buffer.alloc(BLOCK);
  ustarInto(b, 0, f);
  return b;
}

/**
 * The entry's header as one USTAR block written into `buf` at `off` (BLOCK bytes), when it needs no PAX
 * records; returns BLOCK then, else 0 (use encodeHeader). Nothing is allocated: a layer of 100,000 small
 * files would otherwise make as many 512-byte buffers and field strings. The bytes are encodeHeader's.
 */
export function writeUstarHeader(h: TarHeader, buf: Buffer, off: number): number {
  if (h.xattrs !== undefined && h.xattrs.size > 0) return 0;
  if (h.uid >= 8 ** 7 || h.gid >= 8 ** 7 || h.size >= 8 ** 11) return 0;
  const linkname = h.linkname ?? '';
  if (!fitsAscii(linkname, 100)) return 0;
  let prefix = '';
  let shortName = h.name;
  if (h.name.length > 100 || !isAscii(h.name)) {
    const split = splitUstarName(h.name);
    if (!split) return 0;
    prefix = split.prefix;
    shortName = split.name;
  }
  buf.fill(0, off, off + BLOCK);
  ustarInto(buf, off, { name: h.name, type: h.type, mode: h.mode, uid: h.uid, gid: h.gid, size: h.size, mtime: h.mtime,
    linkname, devmajor: h.devmajor, devminor: h.devminor, prefix, shortName });
  return BLOCK;
}

const MAX_OCTAL_7 = 8 ** 7;
const MAX_OCTAL_11 = 8 ** 11;

/** Fills the USTAR block at `off` of `b` (which must be zeros there). */
function ustarInto(b: Buffer, off: number, f: BlockFields): void {
  // The checksum is the sum of the block's bytes: what is written is summed as it goes (the rest is zeros).
  let sum = 0;
  if (f.shortName) sum += sumBytes(b, off, b.write(f.shortName, off, 100, 'ascii'));
  sum += octal(b, off + 100, 8, f.mode & 0o7777);
  sum += octal(b, off + 108, 8, f.uid < MAX_OCTAL_7 ? f.uid : 0);
  sum += octal(b, off + 116, 8, f.gid < MAX_OCTAL_7 ? f.gid : 0);
  sum += octal(b, off + 124, 12, f.size < MAX_OCTAL_11 && f.type === 'file' ? f.size : 0);
  sum += octal(b, off + 136, 12, Math.max(0, Math.min(Math.floor(f.mtime), MAX_OCTAL_11 - 1)));
  const flag = f.typeflag ?? TYPEFLAGS[f.type];
  if (flag) sum += sumBytes(b, off + 156, b.write(flag, off + 156, 1, 'ascii'));
  if (f.linkname) sum += sumBytes(b, off + 157, b.write(f.linkname, off + 157, 100, 'ascii'));
  sum += sumBytes(b, off + 257, b.write('ustar\x0000', off + 257, 8, 'ascii'));
  sum += octal(b, off + 329, 8, f.devmajor ?? 0);
  sum += octal(b, off + 337, 8, f.devminor ?? 0);
  if (f.prefix) sum += sumBytes(b, off + 345, b.write(f.prefix, off + 345, 155, 'ascii'));
  // The checksum field counts as spaces: six octal digits (a block sums to at most 0o377000), NUL, space.
  octal(b, off + 148, 7, sum + 8 * 0x20);
  b[off + 155] = 0x20;
}

function sumBytes(b: Buffer, off: number, n: number): number {
  let sum = 0;
  for (let i = off; i < off + n; i++) sum += b[i];
  return sum;
}

const OCTAL_LIMIT = [1, 8, 8 ** 2, 8 ** 3, 8 ** 4, 8 ** 5, 8 ** 6, 8 ** 7, 8 ** 8, 8 ** 9, 8 ** 10, 8 ** 11];

/** Zero-padded octal, NUL-terminated, as Go's archive/tar writes numeric fields; returns the sum of the bytes written. */
function octal(b: Buffer, off: number, len: number, value: number): number {
  if (!(Number.isInteger(value) && value >= 0 && value < OCTAL_LIMIT[len - 1])) {
    return sumBytes(b, off, b.write(`${value.toString(8).padStart(len - 1, '0')}\x00`, off, len, 'ascii'));
  }
  // Digits written as bytes, last first: no string per field.
  let sum = 0;
  b[off + len - 1] = 0;
  for (let i = off + len - 2; i >= off; i--) {
    const d = 0x30 + (value % 8);
    b[i] = d;
    sum += d;
    value = Math.floor(value / 8);
  }
  return sum;
}

// ------------------------------------------------------------------ reading

export interface TarEntry {
  header: TarHeader;
  /** The entry's content; must be consumed (or left, and it is skipped) before the next entry. */
  body: AsyncIterable<Buffer>;
}

/**
 * Reads a tar stream entry by entry (USTAR, PAX and GNU long names). After the end-of-archive marker
 * the rest of the input is drained, so whoever hashes the input sees all of it.
 */
export async function* readTar(input: NodeJS.ReadableStream | Readable): AsyncGenerator<TarEntry> {
  const r = new ByteReader((input as AsyncIterable<Buffer>)[Symbol.asyncIterator]());
  let globalPax = new Map<string, Buffer>();
  let pax: Map<string, Buffer> | null = null;
  let longName: string | null = null;
  let longLink: string | null = null;
  for (;;) {
    const block = await r.read(BLOCK);
    if (!block) throw new TarFormatError('unexpected end of archive');
    if (block.every((x) => x === 0)) break;
    verifyChecksum(block);
    const flag = String.fromCharCode(block[156]);
    const size = parseNumber(block, 124, 12);
    if (flag === 'x' || flag === 'g' || flag === 'L' || flag === 'K') {
      if (size > 16 << 20) throw new TarFormatError('extended header too large');
      const data = await r.read(size);
      if (!data) throw new TarFormatError('unexpected end of archive');
      await r.skip(padding(size));
      if (flag === 'x') pax = parsePax(data);
      else if (flag === 'g') globalPax = new Map([...globalPax, ...parsePax(data)]);
      else if (flag === 'L') longName = cString(data);
      else longLink = cString(data);
      continue;
    }
    const records = new Map([...globalPax, ...(pax ?? [])]);
    const header = decodeHeader(block, flag, records, longName, longLink);
    pax = null; longName = null; longLink = null;
    // What the consumer leaves of the body is skipped, however far it read.
    const left = { n: header.type === 'file' ? header.size : 0 };
    const dataSize = left.n;
    const body: AsyncIterable<Buffer> = {
      async *[Symbol.asyncIterator]() {
        while (left.n > 0) {
          const chunk = await r.chunk(left.n);
          left.n -= chunk.length;
          yield chunk;
        }
      },
    };
    yield { header, body };
    await r.skip(left.n);
    await r.skip(padding(dataSize));
  }
  await r.drain();
}

function decodeHeader(b: Buffer, flag: string, pax: Map<string, Buffer>, longName: string | null, longLink: string | null): TarHeader {
  const magic = b.toString('latin1', 257, 263);
  let name = cString(b.subarray(0, 100));
  if (magic === 'ustar\x00') {
    const prefix = cString(b.subarray(345, 500));
    if (prefix) name = `${prefix}/${name}`;
  }
  name = pax.has('path') ? nameString(pax.get('path')!) : longName ?? name;
  const linkname = pax.has('linkpath') ? nameString(pax.get('linkpath')!) : longLink ?? cString(b.subarray(157, 257));
  const num = (key: string, off: number, len: number) => {
    const v = pax.get(key);
    return v !== undefined ? Number(v.toString()) : parseNumber(b, off, len);
  };
  const xattrs = new Map<string, Buffer>();
  for (const [k, v] of pax) if (k.startsWith(XATTR_PREFIX)) xattrs.set(k.slice(XATTR_PREFIX.length), v);
  let type: EntryType;
  switch (flag) {
    case '0': case '\x00': case '7': type = name.endsWith('/') ? 'dir' : 'file'; break;
    case '1': type = 'link'; break;
    case '2': type = 'symlink'; break;
    case '3': type = 'char'; break;
    case '4': type = 'block'; break;
    case '5': type = 'dir'; break;
    case '6': type = 'fifo'; break;
    default: throw new TarFormatError(`unsupported entry type ${JSON.stringify(flag)} for ${name}`);
  }
  const size = num('size', 124, 12);
  if (!Number.isSafeInteger(size) || size < 0) throw new TarFormatError(`bad size for ${name}`);
  return {
    name,
    type,
    mode: parseNumber(b, 100, 8) & 0o7777,
    uid: num('uid', 108, 8),
    gid: num('gid', 116, 8),
    size,
    mtime: Math.floor(pax.has('mtime') ? Number(pax.get('mtime')!.toString()) : parseNumber(b, 136, 12)),
    linkname,
    devmajor: parseNumber(b, 329, 8),
    devminor: parseNumber(b, 337, 8),
    xattrs,
  };
}

function verifyChecksum(b: Buffer): void {
  const stored = parseNumber(b, 148, 8);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const byte = i >= 148 && i < 156 ? 0x20 : b[i];
    unsigned += byte;
    signed += byte > 127 ? byte - 256 : byte;
  }
  if (stored !== unsigned && stored !== signed) throw new TarFormatError('header checksum mismatch');
}

/** Octal, or base-256 when the high bit of the first byte is set (GNU extension for large values). */
function parseNumber(b: Buffer, off: number, len: number): number {
  if (b[off] & 0x80) {
    let v = b[off] & 0x7f;
    for (let i = 1; i < len; i++) v = v * 256 + b[off + i];
    return v;
  }
  const s = b.toString('latin1', off, off + len).replace(/\0.*$/s, '').trim();
  return s === '' ? 0 : parseInt(s, 8);
}

function cString(b: Buffer): string {
  const end = b.indexOf(0);
  return nameString(b.subarray(0, end === -1 ? b.length : end));
}

function parsePax(data: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let off = 0;
  while (off < data.length) {
    const sp = data.indexOf(0x20, off);
    if (sp === -1) break;
    const len = parseInt(data.toString('latin1', off, sp), 10);
    if (!(len > 0) || off + len > data.length) throw new TarFormatError('bad PAX record');
    const rec = data.subarray(sp + 1, off + len - 1);
    const eq = rec.indexOf(0x3d);
    if (eq === -1) throw new TarFormatError('bad PAX record');
    out.set(rec.subarray(0, eq).toString(), Buffer.from(rec.subarray(eq + 1)));
    off += len;
  }
  return out;
}

/** Exact-size reads over an async iterator of chunks. */
class ByteReader {
  private buf: Buffer = Buffer.alloc(0);
  private done = false;

  constructor(private readonly it: AsyncIterator<Buffer>) {}

  private async fill(): Promise<boolean> {
    if (this.done) return false;
    const next = await this.it.next();
    if (next.done) { this.done = true; return false; }
    const chunk = Buffer.isBuffer(next.value) ? next.value : Buffer.from(next.value);
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    return true;
  }

  async read(n: number): Promise<Buffer | null> {
    while (this.buf.length < n) if (!(await this.fill())) return null;
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** Up to `max` bytes (at least one). */
  async chunk(max: number): Promise<Buffer> {
    if (this.buf.length === 0 && !(await this.fill())) throw new TarFormatError('unexpected end of archive');
    const out = this.buf.subarray(0, Math.min(max, this.buf.length));
    this.buf = this.buf.subarray(out.length);
    return out;
  }

  async skip(n: number): Promise<void> {
    while (n > 0) n -= (await this.chunk(n)).length;
  }

  async drain(): Promise<void> {
    this.buf = Buffer.alloc(0);
    while (await this.fill()) this.buf = Buffer.alloc(0);
  }
}
