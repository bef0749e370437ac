#!/usr/bin/env node
// What `builder` runs (scripts/build-cli.mjs writes it as dist/src/cli/main.js): the CLI bundled into one
// file (builder.cjs beside it), compiled with V8's code cache. Compiling the bundle and the functions a
// build calls costs ~40 ms of CPU at every start; the cache holds them compiled. It is written beside the
// bundle after a successful build when missing or rejected, and named for the bundle file (inode, size,
// mtime) and the V8 version: V8 itself checks only the source's length, so a rebuilt bundle must never
// meet an older cache. Where that directory is not writable, the CLI runs as well, only without the cache.
import fs from 'node:fs';
import path from 'node:path';
import vm from 'node:vm';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const dir = path.dirname(fileURLToPath(import.meta.url));
const file = path.join(dir, 'builder.cjs');
const st = fs.statSync(file);
const cacheName = `builder.cjs.${st.ino}-${st.size}-${Math.trunc(st.mtimeMs)}.v8-${process.versions.v8}.cache`;
const cacheFile = path.join(dir, cacheName);

let cachedData: Buffer | undefined;
try {
  cachedData = fs.readFileSync(cacheFile);
} catch {
  // none yet
}
const source = fs.readFileSync(file, 'utf8');
const script = new vm.Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, { filename: file, cachedData });

// Builds are what the cache is for: a cache made after one holds what a build compiles.
if ((!cachedData || script.cachedDataRejected) && process.argv.includes('build')) {
  process.once('exit', (code) => {
    if (code !== 0) return;
    const tmp = `${cacheFile}.${process.pid}.tmp`;
    try {
      fs.writeFileSync(tmp, script.createCachedData());
      fs.renameSync(tmp, cacheFile);
      // Caches of earlier bundles or Node versions.
      for (const f of fs.readdirSync(dir)) if (/^builder\.cjs\..*\.cache$/.test(f) && f !== cacheName) fs.rmSync(path.join(dir, f), { force: true });
    } catch {
      try { fs.rmSync(tmp, { force: true }); } catch { /* nothing to clean */ }
    }
  });
}

const module = { exports: {} };
(script.runInThisContext() as (...args: unknown[]) => void).call(module.exports, module.exports, createRequire(file), module, file, dir);
