#!/usr/bin/env node
// `builder` command line: a thin layer over the public API, with buildx's flag names.
import fs from 'node:fs';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { build, BuildError, defaultRoot } from '../client/build.js';
import { warningSummary } from '../client/checks.js';
import { PlainProgress, quietProgress, type ProgressMode } from '../progress/printer.js';
import { TtyProgress } from '../progress/tty.js';
import { UserError } from '../util/errors.js';
// Commands other than a local build load their modules when run: CLI start is part of every build's time.
import { writeBuildFiles } from '../client/metadata.js';
import { imageCommands } from './images.js';

function parseKeyValues(list: string[] | undefined, flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of list ?? []) {
    const eq = item.indexOf('=');
    if (eq <= 0) {
      // buildx: `--build-arg NAME` takes the value from the environment when set.
      if (flag === 'build-arg' && eq < 0 && process.env[item] !== undefined) { out[item] = process.env[item]!; continue; }
      if (flag === 'build-arg' && eq < 0) continue;
      throw new UserError('INVALID_FLAG', `invalid --${flag} "${item}": expected KEY=VALUE`);
    }
    out[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return out;
}

/** Repeatable flags: yargs gives a string for one use and an array for several. Declaring them `array`
 * would make `--output x CONTEXT` swallow the context, unlike buildx. */
function list(v: unknown): string[] | undefined {
  if (v === undefined) return undefined;
  return (Array.isArray(v) ? v : [v]).map(String);
}

async function runBuild(argv: Record<string, unknown>): Promise<void> {
  let mode = (argv.progress as ProgressMode) ?? 'auto';
  // As buildx: `auto` is the live view on a terminal, plain lines otherwise.
  if (mode === 'auto') mode = process.stderr.isTTY ? 'tty' : 'plain';
  const progress = mode === 'quiet' ? quietProgress() : mode === 'tty' ? new TtyProgress(process.stderr) : new PlainProgress(process.stderr, mode);
  const controller = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => {
    process.stderr.write(`\nreceived ${sig}, canceling build\n`);
    controller.abort();
    process.exitCode = sig === 'SIGINT' ? 130 : 143;
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const builderAddr = (argv.builder as string | undefined) ?? process.env.BUILDER_HOST;
  // What a local and a remote build take alike.
  const common = {
    context: argv.context as string,
    file: argv.file as string | undefined,
    tags: list(argv.tag),
    buildArgs: parseKeyValues(list(argv['build-arg']), 'build-arg'),
    labels: parseKeyValues(list(argv.label), 'label'),
    target: argv.target as string | undefined,
    platform: argv.platform as string | undefined,
    outputs: list(argv.output),
    noCache: argv['no-cache'] as boolean | undefined,
    allow: list(argv.allow),
    secrets: list(argv.secret),
    progress,
    signal: controller.signal,
  };
  const unsupportedRemote = ['load', 'annotation', 'cache-to', 'cache-from'].find((f) => argv[f] !== undefined && argv[f] !== false);
  if (builderAddr && unsupportedRemote) {
    throw new UserError('USAGE', `--${unsupportedRemote} is not supported with --builder yet`);
  }
  const result = builderAddr ? await (await import('../server/client.js')).remoteBuild({
    ...common,
    // The server pushes: --push travels as the output it stands for.
    outputs: argv.push ? [...(common.outputs ?? []), 'type=image,push=true'] : common.outputs,
    addr: builderAddr,
    token: process.env.BUILDER_TOKEN,
  }) : await build({
    ...common,
    root: argv.root as string,
    ociRuntime: argv['oci-runtime'] as string | undefined,
    insecureRegistries: list(argv['insecure-registry']),
    ssh: list(argv.ssh),
    noCacheFilter: list(argv['no-cache-filter'])?.flatMap((v) => v.split(',')).filter(Boolean),
    pull: argv.pull as boolean | undefined,
    push: argv.push as boolean | undefined,
    load: argv.load as boolean | undefined,
    annotations: parseKeyValues(list(argv.annotation), 'annotation'),
    maxParallelism: argv['max-parallelism'] as number | undefined,
    check: argv.check as boolean | undefined,
    cacheTo: list(argv['cache-to']),
    cacheFrom: list(argv['cache-from']),
  });
  if (result.checkReport) {
    process.stdout.write(result.checkReport.join('\n') + '\n');
    // As buildx: a check that found something fails, so CI can gate on it.
    if (result.warnings.length > 0) process.exitCode = 1;
    return;
  }
  const summary = warningSummary(result.warnings);
  if (summary.length > 0) process.stderr.write(summary.join('\n') + '\n');
  await writeBuildFiles(result, { iidfile: argv.iidfile as string | undefined, metadataFile: argv['metadata-file'] as string | undefined });
  if (result.exports.length === 0) {
    process.stderr.write('WARNING: No output specified; the build result is only kept in the build cache. Use -t NAME to keep the image, --push, or --output type=oci,dest=FILE, type=docker,dest=FILE or type=local,dest=DIR.\n');
  }
  if (mode === 'quiet' && result.configDigest) process.stdout.write(result.configDigest + '\n');
  else if (result.configDigest) process.stderr.write(`image config ${result.configDigest}, manifest ${result.manifestDigest}\n`);
}

// A reader that went away (a closed pipe) must not kill the build halfway: cancellation and cleanup
// still have to run, so write errors on our own output are ignored.
for (const stream of [process.stdout, process.stderr]) stream.on('error', () => undefined);
async function runDu(argv: Record<string, unknown>): Promise<void> {
  const { diskUsage, verifyStateDir } = await import('../client/prune.js');
  const { formatSize } = await import('../cache/gc.js');
  if (argv.verify) {
    const r = await verifyStateDir({ root: argv.root as string });
    for (const line of r.repaired) process.stdout.write(`repaired: ${line}\n`);
    process.stdout.write(`Verified:\t${r.blobs} blobs, ${r.snapshots} snapshots, ${r.records} records, ${r.layers} layers, ${r.images} images; ${r.repaired.length} repaired\n`);
  }
  const usage = await diskUsage({ root: argv.root as string });
  const rows = [['TYPE', 'COUNT', 'SIZE', 'RECLAIMABLE'], ...usage.kinds.map((k) => [k.kind, String(k.count), formatSize(k.size), formatSize(k.reclaimable)])];
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  for (const r of rows) process.stdout.write(r.map((c, i) => c.padEnd(widths[i] + 3)).join('').trimEnd() + '\n');
  process.stdout.write(`Reclaimable:\t${formatSize(usage.reclaimable)}\nTotal:\t\t${formatSize(usage.total)}\n`);
}

async function runPrune(argv: Record<string, unknown>): Promise<void> {
  const { prune } = await import('../client/prune.js');
  const { formatSize, parseSize, parseDuration } = await import('../cache/gc.js');
  let olderThanMs: number | undefined;
  for (const f of list(argv.filter) ?? []) {
    const m = /^until=(.+)$/.exec(f);
    if (!m) throw new UserError('INVALID_FLAG', `invalid --filter "${f}": only until=DURATION is supported`);
    try { olderThanMs = parseDuration(m[1]); } catch (e) { throw new UserError('INVALID_FLAG', `invalid --filter "${f}": ${(e as Error).message}`); }
  }
  let keepStorage: number | undefined;
  if (argv['keep-storage'] !== undefined) {
    try { keepStorage = parseSize(String(argv['keep-storage'])); } catch (e) { throw new UserError('INVALID_FLAG', `invalid --keep-storage: ${(e as Error).message}`); }
  }
  if (argv['cache-dir'] !== undefined) {
    const { pruneCacheDir } = await import('../client/prune.js');
    const c = await pruneCacheDir(String(argv['cache-dir']), { keepStorage, olderThanMs });
    process.stdout.write(`Records:\t${c.records} kept, ${c.removed} removed\nTotal:\t${formatSize(c.freed)}\n`);
    return;
  }
  const r = await prune({ root: argv.root as string, all: argv.all as boolean | undefined, keepStorage, olderThanMs });
  process.stdout.write(`Total:\t${formatSize(r.freed)}\n`);
}

/** The package's version. yargs would look for package.json above its own file, which the bundled CLI
 * (scripts/build-cli.mjs) is not beside; this file is dist/src/cli/main.js either way. */
function packageVersion(): string {
  try {
    return (JSON.parse(fs.readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

async function main(): Promise<void> {
  await yargs(hideBin(process.argv))
    .scriptName('builder')
    .version(packageVersion())
    // `--no-cache` is a flag of its own (as in buildx), not the negation of a `--cache`.
    .parserConfiguration({ 'boolean-negation': false })
    .usage('$0 <command> [options]')
    .option('root', { type: 'string', default: defaultRoot(), describe: 'State directory (env BUILDER_ROOT)', global: true })
    .command(
      'build <context>',
      'Start a build',
      (y) => y
        .positional('context', { type: 'string', describe: 'Build context directory' })
        .option('file', { alias: 'f', type: 'string', describe: 'Name of the Dockerfile (default: "PATH/Dockerfile")' })
        .option('tag', { alias: 't', type: 'string', describe: 'Name and optionally a tag ("name:tag")' })
        .option('build-arg', { type: 'string', describe: 'Set build-time variables' })
        .option('label', { type: 'string', describe: 'Set metadata for an image' })
        .option('target', { type: 'string', describe: 'Set the target build stage to build' })
        .option('platform', { type: 'string', describe: 'Set target platform for build' })
        .option('output', { alias: 'o', type: 'string', describe: 'Output destination (format: "type=local,dest=path")' })
        .option('progress', { type: 'string', choices: ['auto', 'plain', 'tty', 'quiet', 'rawjson'], default: 'auto', describe: 'Set type of progress output' })
        .option('no-cache', { type: 'boolean', describe: 'Do not use cache when building the image' })
        .option('no-cache-filter', { type: 'string', describe: 'Do not cache specified stages' })
        .option('cache-to', { type: 'string', describe: 'Cache export destinations (e.g., "type=local,dest=path/to/dir[,mode=max]", "type=registry,ref=REF", "type=inline")' })
        .option('cache-from', { type: 'string', describe: 'External cache sources (e.g., "type=local,src=path/to/dir", "type=registry,ref=REF", or just REF)' })
        .option('pull', { type: 'boolean', describe: 'Always attempt to pull all referenced images' })
        .option('max-parallelism', { type: 'number', describe: 'Most ops run at once (default: one per core, at least 2)' })
        .option('oci-runtime', { type: 'string', describe: 'OCI runtime for RUN: runc (default), crun, or a path' })
        .option('check', { type: 'boolean', describe: 'Run the build checks (lint rules) on every stage instead of building' })
        .option('insecure-registry', { type: 'string', describe: 'Registry host reached over plain HTTP' })
        .option('secret', { type: 'string', describe: 'Secret to expose to the build (format: "id=mysecret[,src=/local/secret]" or "id=mysecret,env=VAR")' })
        .option('ssh', { type: 'string', describe: 'SSH agent socket to expose to the build (format: "default|<id>[=<socket>]")' })
        .option('builder', { type: 'string', describe: 'Build on a "builder serve" server: unix:///path or tcp://host:port (env BUILDER_HOST; token in BUILDER_TOKEN)' })
        .option('allow', { type: 'string', describe: 'Allow extra privileged entitlement (e.g., "network.host", "security.insecure")' })
        .option('push', { type: 'boolean', describe: 'Shorthand for "--output=type=registry"' })
        .option('load', { type: 'boolean', describe: 'Shorthand for "--output=type=docker"' })
        .option('annotation', { type: 'string', describe: 'Add annotation to the image' })
        .option('iidfile', { type: 'string', describe: 'Write the image ID to a file' })
        .option('metadata-file', { type: 'string', describe: 'Write build result metadata to a file' }),
      (argv) => runBuild(argv as Record<string, unknown>),
    )
    .command(imageCommands)
    .command(
      'serve',
      'Run the build engine as a server that "builder build --builder ADDR" uses',
      (y) => y
        .option('addr', { type: 'string', default: 'unix:///run/builder/builder.sock', describe: 'Listen address: unix:///path or tcp://127.0.0.1:PORT' })
        .option('token', { type: 'string', describe: 'Token clients must send (required for tcp://; env BUILDER_TOKEN)' }),
      async (argv) => {
        const { serve } = await import('../server/server.js');
        const server = await serve({
          addr: argv.addr as string, token: (argv.token as string | undefined) ?? process.env.BUILDER_TOKEN, root: argv.root as string,
          log: (line) => process.stderr.write(`${line}\n`),
        });
        const shown = server.address.kind === 'unix' ? `unix://${server.address.path}` : `tcp://${server.address.host}:${server.address.port}`;
        process.stderr.write(`builder serving on ${shown}\n`);
        await new Promise<void>((resolve) => {
          const stop = () => { void server.close().then(resolve); };
          process.once('SIGINT', stop);
          process.once('SIGTERM', stop);
        });
      },
    )
    .command(
      'install-emulators',
      'Register the installed QEMU emulators in binfmt_misc (fix-binary), to RUN for other platforms (root)',
      (y) => y,
      async () => {
        const { installEmulators } = await import('../executor/emulation.js');
        for (const r of await installEmulators()) {
          process.stdout.write(`${r.name}: ${r.status}${r.message ? ` (${r.message})` : ''}\n`);
        }
      },
    )
    .command('du', 'Disk usage of the state directory', (y) => y
      .option('verify', { type: 'boolean', describe: 'Check every blob and record first, removing what is damaged' }),
    (argv) => runDu(argv as Record<string, unknown>))
    .command(
      'prune',
      'Remove build cache',
      (y) => y
        .option('all', { alias: 'a', type: 'boolean', describe: 'Include base image layers, not only build cache' })
        .option('keep-storage', { type: 'string', describe: 'Amount of disk space to keep for cache (e.g. 5GB)' })
        .option('filter', { type: 'string', describe: 'Provide filter values (until=24h)' })
        .option('cache-dir', { type: 'string', describe: 'Prune this cache directory (a --cache-to type=local destination) instead of the state directory' })
        .option('force', { alias: 'f', type: 'boolean', describe: 'Do not prompt for confirmation (never prompts)' }),
      (argv) => runPrune(argv as Record<string, unknown>),
    )
    .demandCommand(1, 'Specify a command, e.g. builder build .')
    .strict()
    .fail((msg, err) => {
      if (err) throw err;
      throw new UserError('USAGE', msg);
    })
    .help()
    .parseAsync();
}

main().catch((e: unknown) => {
  if (e instanceof BuildError && e.details.length) process.stderr.write(e.details.join('\n') + '\n');
  if (e instanceof BuildError && e.outputTail.length) {
    process.stderr.write('------\n' + e.outputTail.map((l) => ` > ${l}`).join('\n') + '\n------\n');
  }
  if (e instanceof UserError) {
    process.stderr.write(`ERROR: ${e.message}\n`);
    process.exit(1);
  }
  if ((e as { code?: string })?.code === 'CANCELED' || (e as Error)?.name === 'AbortError') {
    process.stderr.write('ERROR: build canceled\n');
    process.exit(process.exitCode || 130);
  }
  process.stderr.write(`internal error: ${(e as Error)?.stack ?? String(e)}\n`);
  process.exit(2);
});
