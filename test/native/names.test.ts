// File names as bytes: src/util/names.ts and the addon (src/native/names.h) turn the same bytes into the same
// strings and back, names that are UTF-8 stay the strings they always were, and a layer tar keeps names,
// symlink targets and hard links that are not UTF-8 through writing and extracting.
import { describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { nameBytes, nameString, osPath, readdirNames } from '../../src/util/names.js';
import { listXattrs, scanDir } from '../../src/native/fsx.js';
import { applyLayerTar, writeLayerTar } from '../../src/archive/layer.js';

const samples: Buffer[] = [
  Buffer.from('plain.txt'),
  Buffer.from('café 😀 ü'),
  Buffer.from([0x61, 0xff]),
  Buffer.from([0x62, 0xfe, 0xc3]), // a lead byte without its continuation
  Buffer.from([0xc0, 0xaf]), // an overlong '/'
  Buffer.from([0xed, 0xa0, 0x80, 0x78]), // an encoded surrogate
  Buffer.from([0xf4, 0x90, 0x80, 0x80]), // past U+10FFFF
  Buffer.concat([Buffer.from('😀'), Buffer.from([0x80]), Buffer.from('é'), Buffer.from([0xe2, 0x82])]),
];

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'builder-names-'));
}

describe('name bytes and strings', () => {
  it('round-trips every sample, and leaves UTF-8 names as they decode', () => {
    for (const b of samples) {
      const s = nameString(b);
      expect(nameBytes(s).equals(b)).toBe(true);
      if (b.toString('utf8') === nameString(b)) expect(osPath(s)).toBe(s);
      else expect(Buffer.isBuffer(osPath(s))).toBe(true);
    }
    expect(nameString(Buffer.from([0x61, 0xff]))).toBe('a\udcff');
    // Distinct bytes stay distinct strings (UTF-8 decoding makes both "a\ufffd").
    expect(nameString(Buffer.from([0x61, 0xfe]))).not.toBe(nameString(Buffer.from([0x61, 0xff])));
  });

  it('the addon reads and names paths as names.ts does', () => {
    const dir = tempDir();
    for (const b of samples) fs.writeFileSync(Buffer.concat([Buffer.from(`${dir}/`), b]), b);
    const native = scanDir(dir).names.sort();
    expect(native).toEqual(readdirNames(dir).sort());
    expect(native).toEqual(samples.map(nameString).sort());
    // And takes them back as the same bytes: each path exists for it.
    for (const name of native) expect(listXattrs(path.join(dir, name))).toEqual([]);
    fs.rmSync(dir, { recursive: true });
  });

  it('a layer tar keeps names, link targets and hard links that are not UTF-8', async () => {
    const src = tempDir();
    const odd = Buffer.from([0x61, 0xff]);
    const p = (...parts: (string | Buffer)[]) => Buffer.concat([Buffer.from(`${src}/`), ...parts.map((x) => Buffer.from(x))]);
    fs.mkdirSync(p(odd));
    fs.writeFileSync(p(odd, '/', Buffer.from([0xfe])), 'content\n');
    fs.linkSync(p(odd, '/', Buffer.from([0xfe])), p('hard', Buffer.from([0xfd])));
    fs.symlinkSync(Buffer.concat([odd, Buffer.from('/'), Buffer.from([0xfe])]), p('link'));
    const out = new PassThrough();
    const chunks: Buffer[] = [];
    out.on('data', (c: Buffer) => chunks.push(c));
    await writeLayerTar(src, out);
    out.end();
    const dest = tempDir();
    const input = new PassThrough();
    input.end(Buffer.concat(chunks));
    await applyLayerTar(input, dest);
    const q = (...parts: (string | Buffer)[]) => Buffer.concat([Buffer.from(`${dest}/`), ...parts.map((x) => Buffer.from(x))]);
    expect(fs.readFileSync(q(odd, '/', Buffer.from([0xfe])), 'utf8')).toBe('content\n');
    expect(fs.statSync(q('hard', Buffer.from([0xfd]))).ino).toBe(fs.statSync(q(odd, '/', Buffer.from([0xfe]))).ino);
    expect(fs.readlinkSync(q('link'), { encoding: 'buffer' }).equals(Buffer.concat([odd, Buffer.from('/'), Buffer.from([0xfe])]))).toBe(true);
    fs.rmSync(src, { recursive: true });
    fs.rmSync(dest, { recursive: true });
  });
});
