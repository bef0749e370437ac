// Embedding builder as a build backend: build a Dockerfile, watch its progress as typed events, get the
// image digest. Run from the project root after `npm ci`:
//
//   node examples/embed/build.mjs CONTEXT OUT.tar [BASE_IMAGE] [STATE_DIR]
import { build, progressStream } from 'llb-builder';

const [context, out, base, root] = process.argv.slice(2);
if (!context || !out) {
  console.error('usage: node examples/embed/build.mjs CONTEXT OUT.tar [BASE_IMAGE] [STATE_DIR]');
  process.exit(2);
}

const stream = progressStream((progress) => build({
  context,
  buildArgs: base ? { BASE: base } : {},
  tags: ['example/embedded:latest'],
  outputs: [`type=oci,dest=${out}`],
  ...(root ? { root } : {}),
  progress,
}));

for await (const event of stream) {
  // Steps start and finish; RUN output arrives as `log` events.
  if (event.type === 'start') console.log(`step: ${event.name}`);
  else if (event.type === 'log') process.stdout.write(`  | ${event.data}`);
  else if (event.type === 'error') console.log(`failed: ${event.message}`);
}
const result = await stream.result;
console.log(`manifest ${result.manifestDigest}`);
console.log(`config ${result.configDigest}`);
