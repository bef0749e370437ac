// Tar headers (src/archive/tar.ts): a header written in place into a segment (writeUstarHeader) is the
// block encodeHeader gives, byte for byte, and the bytes are those the encoder always wrote (layer digests
// must not move).
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { encodeHeader, readTar, writeUstarHeader, type TarHeader } from '../../src/archive/tar.js';

const short = (b: Buffer) => createHash('sha256').update(b).digest('hex').slice(0, 16);

// Headers and the sha256 prefix of their encoding as the encoder wrote them before writeUstarHeader existed.
const GOLDEN: [TarHeader, string][] = [
  [{ name: 'app/src/d0001/f0002.txt', type: 'file', mode: 0o644, uid: 0, gid: 0, size: 1024, mtime: 1700000000 }, 'b35c70c066201a09'],
  [{ name: 'app/', type: 'dir', mode: 0o755, uid: 1000, gid: 1000, size: 0, mtime: 1700000000.9 }, '18a5f570e812a0e9'],
  [{ name: 'bin/sh', type: 'link', mode: 0o755, uid: 0, gid: 0, size: 0, mtime: 5, linkname: 'bin/busybox' }, '766edd00f29458fc'],
  [{ name: 'l', type: 'symlink', mode: 0o777, uid: 0, gid: 0, size: 0, mtime: 5, linkname: '../target' }, '17ab9910bbd3b902'],
  [{ name: 'dev/null', type: 'char', mode: 0o666, uid: 0, gid: 0, size: 0, mtime: 5, devmajor: 1, devminor: 3 }, '22875a329b076146'],
  [{ name: `${'d'.repeat(120)}/${'f'.repeat(90)}`, type: 'file', mode: 0o4755, uid: 8 ** 7 - 1, gid: 0, size: 8 ** 11 - 1, mtime: 0 }, '027466767a61d60d'],
];

describe('tar headers', () => {
  it('encodes as it always did', () => {
    for (const [h, digest] of GOLDEN) expect(short(encodeHeader(h)), h.name).toBe(digest);
  });

  it('writes a single-block header in place exactly as encodeHeader, and nothing around it', () => {
    for (const [h] of GOLDEN) {
      const buf = Buffer.alloc(2048, 0xee);
      expect(writeUstarHeader(h, buf, 700)).toBe(512);
      expect(buf.subarray(700, 1212).equals(encodeHeader(h))).toBe(true);
      expect(buf[699]).toBe(0xee);
      expect(buf[1212]).toBe(0xee);
    }
  });

  it('leaves headers that need PAX records to encodeHeader', () => {
    const base: TarHeader = { name: 'f', type: 'file', mode: 0o644, uid: 0, gid: 0, size: 1, mtime: 0 };
    const needPax: TarHeader[] = [
      { ...base, name: 'é' },
      { ...base, name: 'x'.repeat(101) },
      { ...base, uid: 8 ** 7 },
      { ...base, size: 8 ** 11 },
      { ...base, type: 'symlink', size: 0, linkname: 'l'.repeat(101) },
      { ...base, xattrs: new Map([['user.a', Buffer.from('v')]]) },
    ];
    for (const h of needPax) {
      const buf = Buffer.alloc(512, 0xee);
      expect(writeUstarHeader(h, buf, 0)).toBe(0);
      expect(buf.every((b) => b === 0xee)).toBe(true);
      expect(encodeHeader(h).length).toBeGreaterThan(512);
    }
  });

  it('reads back what it writes (checksums hold)', async () => {
    const parts: Buffer[] = [];
    for (const [h] of GOLDEN.slice(0, 5)) { // not the last: no body of 8^11 - 1 bytes to give
      const block = Buffer.alloc(512);
      writeUstarHeader(h, block, 0);
      parts.push(block);
      if (h.type === 'file') parts.push(Buffer.alloc(h.size, 0x61));
    }
    parts.push(Buffer.alloc(1024));
    const names: string[] = [];
    for await (const e of readTar(Readable.from([Buffer.concat(parts)]))) {
      names.push(e.header.name);
      for await (const _ of e.body) { /* drained */ }
    }
    expect(names).toEqual(GOLDEN.slice(0, 5).map(([h]) => h.name));
  });
});
