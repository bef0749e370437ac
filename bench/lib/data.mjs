// Deterministic inputs for the scenarios, generated once into a cache directory (never committed):
// the same bytes on every machine and run, so every builder gets the same work.
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

const EPOCH = 1700000000;

/** A deterministic byte stream (AES-CTR of zeros under a key derived from `seed`). */
export function stream(seed) {
  const key = crypto.createHash('sha256').update(seed).digest().subarray(0, 16);
  const cipher = crypto.createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  return (n) => cipher.update(Buffer.alloc(n));
}

/** `n` bytes of hex text: about as compressible as source code and assets (gzip roughly 2:1). */
function hexText(next, n) {
  const hex = next(Math.ceil(n / 2)).toString('hex');
  const buf = Buffer.from(hex.slice(0, n), 'latin1');
  for (let i = 79; i < buf.length; i += 80) buf[i] = 10; // lines
  return buf;
}

/** Runs `make(tmpDir)` unless `dir` already holds a complete copy (marked by a stamp file). */
function once(dir, version, make) {
  const stamp = path.join(dir, '.bench-stamp');
  if (fs.existsSync(stamp) && fs.readFileSync(stamp, 'utf8') === version) return dir;
  fs.rmSync(dir, { recursive: true, force: true });
  const tmp = `${dir}.partial`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  make(tmp);
  fs.writeFileSync(path.join(tmp, '.bench-stamp'), version);
  fs.renameSync(tmp, dir);
  return dir;
}

const BASE_ARG = 'ARG BASE\n';

// ---------------------------------------------------------------- B1: two CPU-bound stages, gathered
export function b1Context(cache) {
  return once(path.join(cache, 'b1'), 'v1', (dir) => {
    // busybox awk: ~2.5 s per stage on one core of a 2020s x86 machine.
    const loop = (mul) => `awk 'BEGIN{s=0; for(i=0;i<6000000;i++){s=(s*${mul}+i)%1000003}; print s}'`;
    fs.writeFileSync(path.join(dir, 'Dockerfile'), `${BASE_ARG}FROM \${BASE} AS a
RUN ${loop(31)} > /a.txt

FROM \${BASE} AS b
RUN ${loop(37)} > /b.txt

FROM \${BASE}
COPY --from=a /a.txt /out/a.txt
COPY --from=b /b.txt /out/b.txt
CMD ["cat", "/out/a.txt", "/out/b.txt"]
`);
  });
}

// B1's yardstick: one of its two stages alone (and the gathering stage), for "cold within 15% of one stage".
export function b1SoloContext(cache) {
  return once(path.join(cache, 'b1-solo'), 'v1', (dir) => {
    const loop = (mul) => `awk 'BEGIN{s=0; for(i=0;i<6000000;i++){s=(s*${mul}+i)%1000003}; print s}'`;
    fs.writeFileSync(path.join(dir, 'Dockerfile'), `${BASE_ARG}FROM \${BASE} AS a
RUN ${loop(31)} > /a.txt

FROM \${BASE}
COPY --from=a /a.txt /out/a.txt
CMD ["cat", "/out/a.txt"]
`);
  });
}

// ---------------------------------------------------------------- B3: 20,000 files, 320 MB context
export const B3_FILES = 20000;
export const B3_EDIT = 'src/d137/f0042.txt';

export function b3Context(cache) {
  return once(path.join(cache, 'b3'), 'v1', (dir) => {
    fs.writeFileSync(path.join(dir, 'Dockerfile'), `${BASE_ARG}FROM \${BASE}
COPY . /app
RUN find /app -type f | wc -l > /files.txt && du -sk /app > /size.txt
`);
    fs.writeFileSync(path.join(dir, '.dockerignore'), '.bench-stamp\n');
    const next = stream('b3');
    // 200 dirs of 100 files; sizes vary around 16 KiB in +d/-d pairs so the total is exactly 20,000 * 16 KiB.
    for (let i = 0; i < B3_FILES; i++) {
      const sub = path.join(dir, 'src', `d${String(Math.floor(i / 100)).padStart(3, '0')}`);
      if (i % 100 === 0) fs.mkdirSync(sub, { recursive: true });
      const d = (Math.floor(i / 2) * 7919) % 8192;
      const size = 16384 + (i % 2 ? -d : d);
      fs.writeFileSync(path.join(sub, `f${String(i % 100).padStart(4, '0')}.txt`), hexText(next, size));
    }
  });
}

/** Changes one file of B3's context (or restores it). */
export function b3Edit(dir, on) {
  const file = path.join(dir, B3_EDIT);
  const orig = `${dir}.orig-${path.basename(file)}`; // outside the context
  if (on) {
    if (!fs.existsSync(orig)) fs.copyFileSync(file, orig);
    fs.appendFileSync(file, `edited ${Date.now()}\n`);
  } else if (fs.existsSync(orig)) {
    fs.copyFileSync(orig, file);
    fs.rmSync(orig);
  }
}

// ---------------------------------------------------------------- B9: 100,000 small files
export const B9_FILES = 100000;
export const B9_DIRS = 5000;
export const B9_EDIT = 'src/d2500/f0010.txt';

export function b9Context(cache) {
  return once(path.join(cache, 'b9'), 'v1', (dir) => {
    fs.writeFileSync(path.join(dir, 'Dockerfile'), `${BASE_ARG}FROM \${BASE}
COPY . /app
RUN find /app -type f | wc -l > /files.txt
`);
    fs.writeFileSync(path.join(dir, '.dockerignore'), '.bench-stamp\n');
    const next = stream('b9');
    // 5,000 dirs of 20 files, 1 KiB each (100 MB): the cost is per file, not per byte.
    const per = B9_FILES / B9_DIRS;
    for (let i = 0; i < B9_FILES; i++) {
      const sub = path.join(dir, 'src', `d${String(Math.floor(i / per)).padStart(4, '0')}`);
      if (i % per === 0) fs.mkdirSync(sub, { recursive: true });
      fs.writeFileSync(path.join(sub, `f${String(i % per).padStart(4, '0')}.txt`), hexText(next, 1024));
    }
  });
}

/** Changes one file of B9's context (or restores it). */
export function b9Edit(dir, on) {
  const file = path.join(dir, B9_EDIT);
  const orig = `${dir}.orig-${path.basename(file)}`; // outside the context
  if (on) {
    if (!fs.existsSync(orig)) fs.copyFileSync(file, orig);
    fs.appendFileSync(file, `edited ${Date.now()}\n`);
  } else if (fs.existsSync(orig)) {
    fs.copyFileSync(orig, file);
    fs.rmSync(orig);
  }
}

// ---------------------------------------------------------------- B10: a graph of 100 stages
export const B10_STAGES = 100;

/**
 * 100 stages: a common one (a RUN over the base), 98 built from it at once (a COPY of their own context
 * file each: file ops, no container, so the solver's share shows), and the last gathering all 98 with
 * COPY --from, then one RUN.
 */
export function b10Dockerfile(stages = B10_STAGES) {
  const leaves = stages - 2;
  let text = `${BASE_ARG}FROM \${BASE} AS common\nRUN echo common > /common.txt\n`;
  for (let i = 1; i <= leaves; i++) text += `\nFROM common AS s${i}\nCOPY parts/p${i}.txt /part/\n`;
  text += '\nFROM common\n';
  for (let i = 1; i <= leaves; i++) text += `COPY --from=s${i} /part/p${i}.txt /out/\n`;
  text += 'RUN ls /out | wc -l > /parts.txt\n';
  return text;
}

export function b10Context(cache) {
  return once(path.join(cache, 'b10'), 'v1', (dir) => {
    fs.writeFileSync(path.join(dir, 'Dockerfile'), b10Dockerfile());
    fs.writeFileSync(path.join(dir, '.dockerignore'), '.bench-stamp\n');
    fs.mkdirSync(path.join(dir, 'parts'));
    for (let i = 1; i <= B10_STAGES - 2; i++) fs.writeFileSync(path.join(dir, 'parts', `p${i}.txt`), `part ${i}\n`);
  });
}

// ---------------------------------------------------------------- B11: many small projects built at once
export const B11_BUILDS = 20;

/**
 * B11's projects: `n` directories under the cache, each a different small project (FROM busybox, a COPY of
 * its own file, a RUN over it with a short awk loop), so no two builds share a step past the base image.
 * Returns the cache directory; the projects are its p01, p02, ... subdirectories.
 */
export function b11Projects(cache, n = B11_BUILDS) {
  return once(path.join(cache, 'b11'), 'v1', (dir) => {
    for (let i = 1; i <= n; i++) {
      const p = path.join(dir, `p${String(i).padStart(2, '0')}`);
      fs.mkdirSync(p);
      fs.writeFileSync(path.join(p, 'Dockerfile'), `${BASE_ARG}FROM \${BASE}
COPY app.txt /app/
RUN wc -c /app/app.txt > /app/size && awk 'BEGIN{s=0; for(i=0;i<300000;i++){s=(s*${30 + i}+i)%1000003}; print s}' > /app/sum
`);
      fs.writeFileSync(path.join(p, 'app.txt'), `project ${i}\n${'x'.repeat(1000 * i)}\n`);
    }
  });
}

/** One stage of `n` instructions: RUNs and COPYs alternating with ENV and WORKDIR (for the solver figures). */
export function longStageDockerfile(n = 1000) {
  let text = `${BASE_ARG}FROM \${BASE}\n`;
  for (let i = 1; i < n; i++) {
    switch (i % 4) {
      case 0: text += `RUN echo ${i} >> /log.txt\n`; break;
      case 1: text += `ENV V${i}=${i}\n`; break;
      case 2: text += `COPY parts/p${(i % 98) + 1}.txt /parts/${i}.txt\n`; break;
      default: text += `WORKDIR /w/${i % 10}\n`;
    }
  }
  return text;
}

// ---------------------------------------------------------------- B5: two platforms, RUN under emulation
export function b5Context(cache) {
  return once(path.join(cache, 'b5'), 'v1', (dir) => {
    fs.writeFileSync(path.join(dir, 'Dockerfile'), `${BASE_ARG}FROM \${BASE}
RUN uname -m > /arch && awk 'BEGIN{s=0; for(i=0;i<1000000;i++){s=(s*31+i)%1000003}; print s}' > /sum
CMD ["cat", "/arch", "/sum"]
`);
  });
}

// ---------------------------------------------------------------- B6: multi-stage build of a small Node-style program
// The base image is busybox only and there is no network, so the "toolchain" is busybox: a bundler and a
// minifier written in awk, tests in sh, gzip for the release artifact. The shape is a real Node project's
// Dockerfile: deps from a lockfile-pinned tarball (the vendored npm cache) in their own cached stage, a
// build stage, a test stage, and a slim runtime stage gathering artifacts from all three.
export const B6_EDIT = 'src/mod_042.js';

export function b6Context(cache) {
  return once(path.join(cache, 'b6'), 'v2', (dir) => {
    const next = stream('b6');
    const w = (rel, text) => {
      fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
      fs.writeFileSync(path.join(dir, rel), text);
    };
    w('Dockerfile', `${BASE_ARG}FROM \${BASE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
COPY vendor/npm-cache.tar.gz /tmp/
RUN mkdir node_modules && tar -xzf /tmp/npm-cache.tar.gz -C node_modules && rm /tmp/npm-cache.tar.gz \\
 && find node_modules -name '*.js' | wc -l > .deps-count

FROM deps AS build
COPY tools/ tools/
COPY src/ src/
RUN mkdir -p dist && awk -f tools/bundle.awk src/index.js > dist/app.js \\
 && awk -f tools/minify.awk dist/app.js > dist/app.min.js \\
 && gzip -9 -k dist/app.min.js && sha256sum dist/* > dist/SHA256SUMS

FROM build AS test
COPY test/ test/
RUN sh tools/test.sh > /app/test-report.txt

FROM \${BASE}
WORKDIR /srv
COPY --from=deps /app/node_modules/ ./node_modules/
COPY --from=build /app/dist/ ./
COPY --from=test /app/test-report.txt ./
USER app
CMD ["cat", "/srv/app.min.js"]
`);
    w('.dockerignore', '.bench-stamp\n');
    w('package.json', JSON.stringify({ name: 'bench-app', version: '1.0.0', main: 'dist/app.js' }, null, 2) + '\n');
    // Dependencies: 250 packages of 8 modules each, as a tarball (what `npm ci` would unpack from its cache).
    const deps = path.join(dir, '.deps');
    const lock = {};
    for (let p = 0; p < 250; p++) {
      const name = `pkg-${String(p).padStart(3, '0')}`;
      lock[name] = `1.${p % 10}.${p % 7}`;
      w(`.deps/${name}/package.json`, JSON.stringify({ name, version: lock[name] }) + '\n');
      for (let m = 0; m < 8; m++) {
        const body = hexText(next, 2000).toString('latin1').split('\n').map((l, i) => `  const v${i} = '${l}';`).join('\n');
        w(`.deps/${name}/lib/m${m}.js`, `'use strict';\n// ${name} module ${m}\nmodule.exports = function m${m}() {\n${body}\n  return ${m};\n};\n`);
      }
    }
    w('package-lock.json', JSON.stringify({ name: 'bench-app', lockfileVersion: 3, packages: lock }, null, 2) + '\n');
    fs.mkdirSync(path.join(dir, 'vendor'));
    execFileSync('tar', ['--sort=name', `--mtime=@${EPOCH}`, '--owner=0', '--group=0', '--numeric-owner', '-C', deps, '-I', 'gzip -n', '-cf', path.join(dir, 'vendor/npm-cache.tar.gz'), '.']);
    fs.rmSync(deps, { recursive: true });
    // Source: 120 modules, each requiring the next two, 300 lines of code and comments each.
    const N = 120;
    for (let i = 0; i < N; i++) {
      const name = i === 0 ? 'index' : `mod_${String(i).padStart(3, '0')}`;
      const reqs = [2 * i + 1, 2 * i + 2].filter((j) => j < N).map((j) => `const m${j} = require('./mod_${String(j).padStart(3, '0')}');`);
      const lines = [];
      for (let k = 0; k < 300; k++) {
        if (k % 10 === 0) lines.push(`  // step ${k}: ${hexText(next, 40).toString('latin1').trim()}`);
        else lines.push(`  total = (total * 31 + ${k} + ${i}) % 1000003; // keep ${k}`);
      }
      w(`src/${name}.js`, `'use strict';\n${reqs.join('\n')}\n/* module ${i} */\nfunction f${i}(total) {\n${lines.join('\n')}\n  return total;\n}\nmodule.exports = f${i};\n`);
    }
    w('tools/bundle.awk', `# Bundles a CommonJS module graph into one file: each module once, dependencies first.
function emit(file,    line, dep, lines, n, i) {
  if (file in seen) return
  seen[file] = 1
  n = 0
  while ((getline line < file) > 0) lines[++n] = line
  close(file)
  for (i = 1; i <= n; i++) {
    if (match(lines[i], /require\\('\\.\\/[a-z0-9_]+'\\)/)) {
      dep = substr(lines[i], RSTART + 11, RLENGTH - 13)
      emit(dir "/" dep ".js")
    }
  }
  print "// ---- " file
  print "__modules['" file "'] = function (module, require) {"
  for (i = 1; i <= n; i++) print lines[i]
  print "};"
}
BEGIN { dir = ARGV[1]; sub(/\\/[^\\/]*$/, "", dir); print "var __modules = {};" }
{ }
END { emit(ARGV[1]) }
`);
    w('tools/minify.awk', `# Strips comments and indentation, joins statements, and counts identifiers (a stand-in for mangling).
{
  line = $0
  sub(/[ \\t]*\\/\\/.*$/, "", line)
  gsub(/\\/\\*[^*]*\\*\\//, "", line)
  gsub(/^[ \\t]+/, "", line)
  if (line == "") next
  n = split(line, w, /[^A-Za-z0-9_]+/)
  for (i = 1; i <= n; i++) if (w[i] != "") ids[w[i]]++
  printf "%s", line
}
END { printf "\\n"; for (id in ids) k++; print "// identifiers: " k > "/dev/stderr" }
`);
    w('tools/test.sh', `#!/bin/sh
# Runs every test/*.test: each line is "PATTERN|COUNT", the least number of bundle lines matching PATTERN.
set -e
pass=0; fail=0
for t in test/*.test; do
  while IFS='|' read -r pattern want; do
    got=$(grep -c -- "$pattern" dist/app.js || true)
    if [ "$got" -ge "$want" ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL $t: $pattern: $got < $want"; fi
  done < "$t"
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
`);
    for (let t = 0; t < 20; t++) {
      const lines = [];
      for (let k = 0; k < 8; k++) lines.push(`keep ${((t * 8 + k) * 10) % 300 + 3}$|${N}`); // never a step comment line
      lines.push(`^function f${t}(|1`);
      w(`test/t${String(t).padStart(2, '0')}.test`, lines.join('\n') + '\n');
    }
  });
}

/** Changes one source module of B6 (or restores it). */
export function b6Edit(dir, on) {
  const file = path.join(dir, B6_EDIT);
  const orig = `${dir}.orig-${path.basename(file)}`; // outside the context
  if (on) {
    if (!fs.existsSync(orig)) fs.copyFileSync(file, orig);
    fs.appendFileSync(file, `// edited ${Date.now()}\n`);
  } else if (fs.existsSync(orig)) {
    fs.copyFileSync(orig, file);
    fs.rmSync(orig);
  }
}

// ---------------------------------------------------------------- B8: a comment-only edit (early cutoff)
// A compile-style build: the "compiler" (busybox awk) reads the sources through a bind mount and drops
// comments, so a comment-only edit re-runs it and it makes the same artifact byte for byte. Two heavy steps
// (an "optimiser" and a "test" run, ~2.5 s of awk each) follow in the build stage on top of it, and the
// runtime stage gathers the result and runs a heavy step of its own. Builders that reuse a step after an
// input step made the same layer again skip everything after the compile; BuildKit cuts off only at
// COPY --from (it checksums what a copy selects, not a RUN's rootfs), so it re-runs the build stage's steps.
export const B8_EDIT = 'src/unit_07.c';

export function b8Context(cache) {
  return once(path.join(cache, 'b8'), 'v1', (dir) => {
    const next = stream('b8');
    const loop = (mul, file) => `awk -v m=${mul} 'BEGIN{s=0; while ((getline l < "${file}") > 0) s=(s*m+length(l))%1000003; for(i=0;i<6000000;i++){s=(s*m+i)%1000003}; print s}'`;
    fs.writeFileSync(path.join(dir, 'Dockerfile'), `${BASE_ARG}FROM \${BASE} AS build
WORKDIR /out
RUN --mount=type=bind,source=src,target=/src awk '!/^[ \\t]*\\/\\// { print FILENAME ": " $0 }' /src/*.c > /out/app
RUN ${loop(31, '/out/app')} > /out/app.opt
RUN ${loop(37, '/out/app.opt')} > /out/test-report

FROM \${BASE}
COPY --from=build /out/ /srv/
RUN ${loop(41, '/srv/app')} > /srv/index
CMD ["cat", "/srv/index"]
`);
    fs.writeFileSync(path.join(dir, '.dockerignore'), '.bench-stamp\n');
    fs.mkdirSync(path.join(dir, 'src'));
    for (let i = 0; i < 20; i++) {
      const lines = [];
      for (let l = 0; l < 200; l++) lines.push(l % 10 === 0 ? `// ${next(12).toString('hex')}` : `int f${i}_${l}(int x) { return x * ${next(2).readUInt16LE(0)}; }`);
      fs.writeFileSync(path.join(dir, 'src', `unit_${String(i).padStart(2, '0')}.c`), `${lines.join('\n')}\n`);
    }
  });
}

/** Adds a comment line to one B8 source file (or restores it): the compiled artifact stays the same. */
export function b8Edit(dir, on) {
  const file = path.join(dir, B8_EDIT);
  const orig = `${dir}.orig-${path.basename(file)}`; // outside the context
  if (on) {
    if (!fs.existsSync(orig)) fs.copyFileSync(file, orig);
    fs.appendFileSync(file, `// edited ${Date.now()}\n`);
  } else if (fs.existsSync(orig)) {
    fs.copyFileSync(orig, file);
    fs.rmSync(orig);
  }
}

// ---------------------------------------------------------------- B7: a 500 MB, 10-layer image (OCI layout)
export const B7_TAG = '1';

export function b7Layout(cache) {
  return once(path.join(cache, 'b7-layout'), 'v1', (dir) => {
    const next = stream('b7');
    const blobs = path.join(dir, 'blobs/sha256');
    fs.mkdirSync(blobs, { recursive: true });
    const put = (file) => {
      const hex = crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
      fs.renameSync(file, path.join(blobs, hex));
      return { digest: `sha256:${hex}`, size: fs.statSync(path.join(blobs, hex)).size };
    };
    const layers = [];
    const diffIDs = [];
    for (let l = 0; l < 10; l++) {
      // 50 MB per layer: 5 files of 10 MB, hex text (compresses about 2:1, like typical image content).
      const root = path.join(dir, `tmp-rootfs-${l}`);
      fs.mkdirSync(path.join(root, `data/layer${l}`), { recursive: true });
      for (let f = 0; f < 5; f++) fs.writeFileSync(path.join(root, `data/layer${l}/blob${f}.txt`), hexText(next, 10_000_000));
      const tar = path.join(dir, `tmp-layer-${l}.tar`);
      execFileSync('tar', ['--sort=name', `--mtime=@${EPOCH}`, '--owner=0', '--group=0', '--numeric-owner', '-C', root, '-cf', tar, 'data']);
      diffIDs.push(`sha256:${crypto.createHash('sha256').update(fs.readFileSync(tar)).digest('hex')}`);
      execFileSync('gzip', ['-n', '-6', tar]);
      layers.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...put(`${tar}.gz`) });
      fs.rmSync(root, { recursive: true });
    }
    const created = new Date(EPOCH * 1000).toISOString();
    const cfgFile = path.join(dir, 'tmp-config');
    fs.writeFileSync(cfgFile, JSON.stringify({
      architecture: 'amd64', os: 'linux', created,
      config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'] },
      rootfs: { type: 'layers', diff_ids: diffIDs },
      history: diffIDs.map((_, i) => ({ created, created_by: `bench: data layer ${i}` })),
    }));
    const config = { mediaType: 'application/vnd.oci.image.config.v1+json', ...put(cfgFile) };
    const manFile = path.join(dir, 'tmp-manifest');
    fs.writeFileSync(manFile, JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config, layers }));
    const manifest = put(manFile);
    fs.writeFileSync(path.join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
    fs.writeFileSync(path.join(dir, 'index.json'), JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest, annotations: { 'org.opencontainers.image.ref.name': B7_TAG } }],
    }));
  });
}

/** A context whose build only pulls an image: `FROM ${IMAGE}` (how this engine fetches an image). */
export function pullContext(cache) {
  return once(path.join(cache, 'pull'), 'v1', (dir) => {
    fs.writeFileSync(path.join(dir, 'Dockerfile'), 'ARG IMAGE\nFROM ${IMAGE}\n');
    fs.writeFileSync(path.join(dir, '.dockerignore'), '*\n');
  });
}
