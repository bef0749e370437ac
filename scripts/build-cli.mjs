// Bundles the CLI so `builder` starts by compiling one file instead of resolving and loading a few hundred
// modules: the CLI's start is part of every build's wall time. Run after tsc (npm run build).
//   dist/src/cli/builder.cjs  the CLI (src/cli/main.ts) and its dependencies, as one CommonJS script
//   dist/src/cli/main.js      the bin: src/cli/launcher.ts, which runs builder.cjs with V8's code cache
// replacing tsc's dist/src/cli/main.js; the library (dist/src/index.js and the rest of dist/) stays as tsc
// wrote it.
import { build } from 'esbuild';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(root, 'dist/src/cli');
const common = { bundle: true, platform: 'node', target: 'node20', legalComments: 'none', logLevel: 'warning', write: false };

// CommonJS, because only a classic script can be compiled with a code cache (vm.Script) on Node 20.
const cli = await build({
  ...common,
  entryPoints: [path.join(root, 'src/cli/main.ts')],
  outfile: path.join(out, 'builder.cjs'),
  format: 'cjs',
  // The native addon is found at run time (src/native/fsx.ts), relative to the module's URL.
  external: ['*.node'],
  define: { 'import.meta.url': '__builderModuleURL' },
  // Strict, as the ES modules it is made from (the banner comes before esbuild's own "use strict").
  banner: { js: '"use strict";\nvar __builderModuleURL = require("node:url").pathToFileURL(__filename).href;' },
});
const launcher = await build({
  ...common,
  entryPoints: [path.join(root, 'src/cli/launcher.ts')],
  outfile: path.join(out, 'main.js'),
  format: 'esm',
});

// The launcher wraps the bundle in a function: a `#!` line would not parse there.
fs.writeFileSync(path.join(out, 'builder.cjs'), cli.outputFiles[0].text.replace(/^#!.*\n/, ''));
for (const f of fs.readdirSync(out)) if (/^builder\.cjs\..*\.cache$/.test(f)) fs.rmSync(path.join(out, f), { force: true });
fs.rmSync(path.join(out, 'main.js.map'), { force: true });
fs.writeFileSync(path.join(out, 'main.js'), launcher.outputFiles[0].text, { mode: 0o755 });
fs.chmodSync(path.join(out, 'main.js'), 0o755);
