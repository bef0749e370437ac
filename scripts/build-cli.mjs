// Bundles the CLI so `builder` starts by compiling one file instead of resolving and loading a few hundred
// modules: the CLI's start is part of every build's wall time. Run after tsc (npm run build).
//   dist/src/cli/builder.cjs  the CLI (src/cli/main.ts) and its dependencies, as one CommonJS script
//   dist/src/cli/main.js      the bin: src/cli/launcher.ts, which runs builder.cjs with V8's code cache
// replacing tsc's dist/src/cli/main.js; the library (dist/src/index.js and the rest of dist/) stays as tsc
// wrote it.
import { build } from 'esbuild';
import fs from 'node:fs';
import { builtinModules } from 'node:module';
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
  // The native addon is found at run time (src/native/fsx.ts), relative to the module's URL. The YAML
  // library only `bake` needs (compose files) is required from node_modules when bake runs, not compiled
  // into every start (it would add a fifth to the bundle).
  external: ['*.node', 'yaml'],
  define: { 'import.meta.url': '__builderModuleURL' },
  // The launcher runs the bundle as a classic script (vm.Script), where `import()` has no module loader
  // behind it: esbuild turns each into a require() (bundled modules were already inlined).
  supported: { 'dynamic-import': false },
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
let bundle = cli.outputFiles[0].text.replace(/^#!.*\n/, '');
// esbuild's __toESM wraps a required module in a new object with a getter per export, at every import
// site: 90 imports of Node's own modules cost ~5 ms at each start. Those are complete when require()
// returns, so one wrapper per module serves every site (importers only read it). Dependencies' CommonJS
// modules keep esbuild's helper: in a require cycle their exports may still grow.
const builtin = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));
bundle = bundle.replace(/__toESM\(require\("([^"]+)"\)(?:, 1)?\)/g, (call, name) => (builtin.has(name) ? `__toESMBuiltin(require("${name}"))` : call));
// A function declaration, hoisted: the bundle's top level calls it before reaching it.
bundle += `
function __toESMBuiltin(mod) {
  const seen = (__toESMBuiltin.seen ??= new Map());
  let wrapped = seen.get(mod);
  // Node's modules have no __esModule: "default" is module.exports, whatever the importer's mode.
  if (!wrapped) seen.set(mod, (wrapped = __toESM(mod, 1)));
  return wrapped;
}
`;
// Node's modules that a build needs only to run a container or pack a layer are loaded at their first
// use, not at every start (a few ms of compiling Node's own code each).
const LAZY = new Set(['node:child_process', 'node:zlib']);
bundle = bundle.replace(/= require\("([^"]+)"\);/g, (call, name) => (LAZY.has(name) ? `= __lazyBuiltin("${name}");` : call));
// yargs looks for a package.json (its version and config) from the directory above "node_modules" in its
// own path, and without one there (a checkout) from the working directory up: a listing of every
// directory on the way (~10 ms, 40 ms from /tmp). Ours is the one to find, three levels above the bundle.
const yargsMain = 'mainFilename = __dirname.substring(0, __dirname.lastIndexOf("node_modules"));';
if (!bundle.includes(yargsMain)) throw new Error('build-cli: yargs\'s mainFilename line not found (yargs changed?)');
bundle = bundle.replace(yargsMain, 'mainFilename = __dirname;');
// After starting a command's handler yargs renders the whole help text (~9 ms, on the way of every
// command), kept for a showHelp() from inside the handler. Ours never shows yargs's help from a handler:
// usage errors come from the fail callback in src/cli/main.ts, which prints its own message.
const yargsHelpCache = 'yargs.getInternalMethods().getUsageInstance().cacheHelpMessage();';
if (bundle.split(yargsHelpCache).length !== 2) throw new Error('build-cli: yargs\'s cacheHelpMessage call not found once (yargs changed?)');
bundle = bundle.replace(yargsHelpCache, '/* help rendered only when asked */');
// node:assert (~4 ms to load) is required only by yargs, for two invariant checks it runs while parsing.
bundle = bundle.replace(/= require\("(?:node:)?assert"\);/g, '= __yargsAssert;');
// Before the code that uses them (a var is undefined until its line has run).
const urlLine = bundle.indexOf('\n', bundle.indexOf('var __builderModuleURL')) + 1;
bundle = bundle.slice(0, urlLine) + `function __lazyBuiltin(name) {
  let mod;
  return new Proxy({}, { get: (_, key) => (mod ??= require(name))[key] });
}
var __yargsAssert = {
  notStrictEqual(actual, expected, message) {
    if (Object.is(actual, expected)) throw new Error(message ?? \`Expected "actual" to be strictly unequal to: \${String(expected)}\`);
  },
  strictEqual(actual, expected, message) {
    if (!Object.is(actual, expected)) throw new Error(message ?? \`Expected values to be strictly equal: \${String(actual)} !== \${String(expected)}\`);
  },
};
` + bundle.slice(urlLine);
// Nothing in the bundle may depend on an import() it cannot make: fail the build rather than ship a CLI
// whose HTTPS (or any lazily loaded command) dies with "A dynamic import callback was not specified".
const dynamicImport = /(?<![\w$.])import\s*\(/g;
const found = [...bundle.matchAll(dynamicImport)].map((m) => {
  const line = bundle.slice(0, m.index).split('\n').length;
  return `  builder.cjs:${line}: ${bundle.slice(bundle.lastIndexOf('\n', m.index) + 1, bundle.indexOf('\n', m.index)).trim().slice(0, 120)}`;
});
if (found.length) {
  console.error(`build-cli: the bundle still holds dynamic import() calls, which the bin cannot run:\n${found.join('\n')}`);
  process.exit(1);
}
// The launcher reads the bundle as Latin-1 (decoding 1.3 MB of UTF-8 took 8 ms of every start here; a
// Latin-1 read takes under one, and V8 keeps a one-byte string), so the bundle must be ASCII: the few other
// characters (in dependencies' comments and regular expressions) become \u escapes, which mean the same there.
bundle = bundle.replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
fs.writeFileSync(path.join(out, 'builder.cjs'), bundle);
// Code caches written here by earlier versions of the launcher (they now live in the user's cache directory).
for (const f of fs.readdirSync(out)) if (/^builder\.cjs\..*\.cache$/.test(f)) fs.rmSync(path.join(out, f), { force: true });
fs.rmSync(path.join(out, 'main.js.map'), { force: true });
fs.writeFileSync(path.join(out, 'main.js'), launcher.outputFiles[0].text, { mode: 0o755 });
fs.chmodSync(path.join(out, 'main.js'), 0o755);
