// The package's install script: compiles the native addon (node-gyp, into src/native/build) only where no
// prebuilt binary loads — a platform other than linux-x64/arm64 with glibc (scripts/prebuild.sh), or
// `npm install --build-from-source`. Loading is the test: it is what the CLI does at run time
// (src/native/fsx.ts, which also finds the prebuild by its tags as node-gyp-build does).
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const libc = process.platform !== 'linux' ? '' : process.report.getReport().header.glibcVersionRuntime ? 'glibc' : 'musl';
const prebuild = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`, `node.napi${libc ? `.${libc}` : ''}.node`);

const fromSource = process.env.npm_config_build_from_source === 'true';
if (!fromSource) {
  try {
    createRequire(import.meta.url)(prebuild);
    process.exit(0);
  } catch {
    // none fits: compile
  }
}
const r = spawnSync('node-gyp', ['rebuild', '--directory', path.join(root, 'src/native')], { stdio: 'inherit' });
if (r.error || r.status !== 0) {
  const why = r.error ? `node-gyp: ${r.error.message}` : 'node-gyp failed (above)';
  const target = `${process.platform}-${process.arch}${libc ? ` (${libc})` : ''}`;
  console.error(`native addon: ${fromSource ? 'building from source' : `no prebuild loads on ${target}`}, and compiling it failed: ${why}; it needs a C compiler, make and python3`);
  process.exit(1);
}
