// Bundles the CLI into one file, dist/src/cli/main.js (replacing tsc's output there), so `builder` starts
// by loading one module instead of a few hundred: the CLI's start is part of every build's wall time.
// The library (dist/src/index.js and the rest of dist/) stays as tsc wrote it. Run after tsc.
import { build } from 'esbuild';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outfile = path.join(root, 'dist/src/cli/main.js');

await build({
  entryPoints: [path.join(root, 'src/cli/main.ts')],
  outfile,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // The native addon is found at run time (src/native/fsx.ts); dependencies written as CommonJS call
  // require(), which an ES module lacks.
  external: ['*.node'],
  banner: { js: "import { createRequire as __builderRequire } from 'node:module'; const require = __builderRequire(import.meta.url);" },
  sourcemap: 'linked',
  sourcesContent: false,
  legalComments: 'none',
  logLevel: 'warning',
});
fs.chmodSync(outfile, 0o755);
