// Run by test/native/prebuilds.test.ts under each Node build (official ones, an arm64 one under QEMU):
// loads the addon file given as argv[2] twice — once as is (OpenSSL's SHA-256 where the process has it)
// and once, from a copy, with BUILDER_FSX_SHA256=portable — then hashes and scans, and prints JSON with
// what the addon said beside what node:crypto and node:fs say, for the test to compare.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';

const require = createRequire(import.meta.url);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fsx-probe-'));

// Data the test makes alike: byte i of a buffer of n is (i * 131 + n) & 255.
function data(n) {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 131 + n) & 255;
  return b;
}
// Every length around the 64-byte block and the 56-byte padding boundary, then larger ones.
const SIZES = [...Array.from({ length: 200 }, (_, i) => i), 1000, 4095, 4096, 65537, 200003];
const sha = (b) => crypto.createHash('sha256').update(b).digest('hex');

async function exercise(addon) {
  const hashes = [];
  for (const n of SIZES) {
    const buf = data(n);
    // A segment with no file spans: sha256 of the whole buffer.
    const { sha256 } = await addon.fillSegment(buf, [], new Float64Array(0), true, false);
    hashes.push({ n, addon: sha256.toString('hex'), crypto: sha(buf) });
  }
  // An ordered hash over pieces handed in out of order.
  const whole = data(300000);
  const cuts = [0, 1, 63, 64, 4000, 100000, 100001, 299999, 300000];
  const h = addon.orderedHashCreate();
  const jobs = [];
  for (let t = cuts.length - 2; t >= 0; t--) {
    jobs.push(addon.fillSegment(whole.subarray(cuts[t], cuts[t + 1]), [], new Float64Array(0), false, false, h, t));
  }
  await Promise.all(jobs);
  const ordered = { addon: addon.orderedHashDigest(h, cuts.length - 1).toString('hex'), crypto: sha(whole) };
  // A segment read from a file.
  const file = path.join(tmp, 'file');
  const content = data(70000);
  fs.writeFileSync(file, content);
  const seg = Buffer.alloc(content.length + 100);
  const r = await addon.fillSegment(seg, [file], Float64Array.from([50, 0, content.length, 1]), true, true);
  const fileSegment = { addon: r.sha256.toString('hex'), crypto: sha(seg), read: seg.subarray(50, 50 + content.length).equals(content) };
  return { backend: addon.sha256Backend(), hashes, ordered, fileSegment };
}

function scan(addon) {
  const dir = path.join(tmp, 'scan');
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'a'), 'hello');
  fs.mkdirSync(path.join(dir, 'sub'), { mode: 0o750 });
  fs.symlinkSync('a', path.join(dir, 'link'));
  fs.linkSync(path.join(dir, 'a'), path.join(dir, 'hard'));
  fs.utimesSync(path.join(dir, 'a'), 1234567890.5, 1234567890.25);
  const { names, stats } = addon.scanDir(dir, true);
  const FIELDS = 16;
  return names.map((name, i) => {
    const o = i * FIELDS;
    const st = fs.lstatSync(path.join(dir, name), { bigint: true });
    return {
      name,
      addon: { mode: stats[o], uid: stats[o + 1], gid: stats[o + 2], size: stats[o + 3], mtime: stats[o + 4], nlink: stats[o + 5], ino: stats[o + 7], mtimeNsec: stats[o + 12] },
      fs: { mode: Number(st.mode), uid: Number(st.uid), gid: Number(st.gid), size: Number(st.size), mtime: Number(st.mtimeNs / 1000000000n), nlink: Number(st.nlink), ino: Number(st.ino), mtimeNsec: Number(st.mtimeNs % 1000000000n) },
    };
  });
}

// Directories scanned on the threadpool, with an index of the files looked up there (scan.c).
async function scanDirs(addon) {
  const dir = path.join(tmp, 'dirs');
  fs.mkdirSync(path.join(dir, 'd'), { recursive: true });
  for (const n of ['b', 'é', 'a', 'c']) fs.writeFileSync(path.join(dir, 'd', n), n);
  fs.writeFileSync(path.join(dir, 'top'), 'top');
  fs.utimesSync(path.join(dir, 'd', 'a'), 1234567890.123457, 1234567890.654321);
  const row = (rel, grown = 0) => {
    const st = fs.lstatSync(path.join(dir, rel));
    return JSON.stringify([rel, st.size + grown, st.mtimeMs, st.ctimeMs, st.ino, sha(rel)]);
  };
  const index = path.join(tmp, 'index');
  fs.writeFileSync(index, ['{"v":2}', row('d/a'), row('d/b', 1), row('d/é').replace('é', '\\u00e9'), row('top'), '["d/c",1,', ''].join('\n'));
  // Scans queued right after the index: they wait for it to load.
  const { index: ix, loaded } = addon.loadScanIndex(index);
  const scanned = addon.scanDirs(dir, ['', 'd'], false, ix);
  const kind = await loaded;
  const r = await scanned;
  addon.releaseScanIndex(ix);
  fs.writeFileSync(index, '{"d/a":{}}');
  const other = addon.loadScanIndex(index);
  const missing = addon.loadScanIndex(path.join(tmp, 'none'));
  const unread = await addon.scanDirs(dir, ['d'], false, other.index);
  return {
    kind, counts: [...r.counts], names: r.names, known: [...r.known], digests: r.digests,
    expected: ['top', 'd/a', 'd/b', 'd/é'].map(sha).join(''),
    missing: await missing.loaded, other: await other.loaded, unread: 'known' in unread,
  };
}

const file = process.argv[2];
const addon = require(file);
const result = { arch: process.arch, node: process.versions.node, sourceDigest: addon.sourceDigest ?? null, scan: scan(addon), scanDirs: await scanDirs(addon) };
result.default = await exercise(addon);
const copy = path.join(tmp, 'portable.node');
fs.copyFileSync(file, copy);
process.env.BUILDER_FSX_SHA256 = 'portable';
result.portable = await exercise(require(copy));
fs.rmSync(tmp, { recursive: true, force: true });
process.stdout.write(JSON.stringify(result));
