#!/usr/bin/env node
// What `builder` runs (scripts/build-cli.mjs writes it as dist/src/cli/main.js): the CLI bundled into one
// file (builder.cjs beside it), compiled with V8's code cache. Compiling the bundle and the functions a
// build calls costs ~40 ms of CPU at every start; the cache holds them compiled. It lives in the user's
// cache directory ($XDG_CACHE_HOME/builder/v8, else ~/.cache/builder/v8), never in the install directory,
// which may be read-only or shared. It is written after a successful build when missing or rejected, and
// named for the bundle (its path, inode, size, mtime) and the V8 version: V8 itself checks only the
// source's length, so a rebuilt bundle must never meet an older cache. Where no cache directory is
// writable, the CLI runs as well, only without the cache.
import fs from 'node:fs';
import path from 'node:path';
import vm from 'node:vm';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import os from 'node:os';
import { fileURLToPath } from 'node:url';

const dir = path.dirname(fileURLToPath(import.meta.url));
const file = path.join(dir, 'builder.cjs');
const st = fs.statSync(file);
const cacheDir = path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'builder', 'v8');
// Installs share the cache directory: the bundle's path keeps their caches apart.
const install = createHash('sha256').update(file).digest('hex').slice(0, 16);
const cacheName = `builder.cjs.${install}.${st.ino}-${st.size}-${Math.trunc(st.mtimeMs)}.v8-${process.versions.v8}.cache`;
const cacheFile = path.join(cacheDir, cacheName);

let cachedData: Buffer | undefined;
try {
  cachedData = fs.readFileSync(cacheFile);
} catch {
  // none yet
}
// ASCII (scripts/build-cli.mjs makes it so): read as Latin-1, which costs a fraction of decoding UTF-8.
const source = fs.readFileSync(file, 'latin1');
const script = new vm.Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, { filename: file, cachedData });

// Builds are what the cache is for: a cache made after one holds what a build compiles.
if ((!cachedData || script.cachedDataRejected) && process.argv.includes('build')) {
  process.once('exit', (code) => {
    if (code !== 0) return;
    const tmp = `${cacheFile}.${process.pid}.tmp`;
    try {
      fs.mkdirSync(cacheDir, { recursive: true, mode: 0o700 });
      fs.writeFileSync(tmp, script.createCachedData());
      fs.renameSync(tmp, cacheFile);
      // This install's caches of earlier bundles or Node versions.
      const mine = `builder.cjs.${install}.`;
      for (const f of fs.readdirSync(cacheDir)) if (f.startsWith(mine) && f.endsWith('.cache') && f !== cacheName) fs.rmSync(path.join(cacheDir, f), { force: true });
    } catch {
      try { fs.rmSync(tmp, { force: true }); } catch { /* nothing to clean */ }
    }
  });
}

const module = { exports: {} };
(script.runInThisContext() as (...args: unknown[]) => void).call(module.exports, module.exports, createRequire(file), module, file, dir);
