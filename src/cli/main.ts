#!/usr/bin/env node
// `builder` command line: a thin layer over the public API, with buildx's flag names.
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { build, BuildError, defaultRoot } from '../client/build.js';
import { warningSummary } from '../client/checks.js';
import { formatOutline, formatTargets, goJSON, parseCall } from '../client/subrequests.js';
import type { ProgressMode } from '../progress/printer.js';
import { cliProgress, settleProgress } from './progress.js';
import { UserError } from '../util/errors.js';
import { parsePlatforms } from '../client/platform.js';
import { emptyContext, readDockerfileStream, readStdinSource } from '../client/context.js';
import { BUILD_USAGE, UsageError, checkAttestations, stdinPositionals, usageMessage } from './usage.js';
import { clientAttestSpecs } from '../attest/options.js';
// Commands other than a local build load their modules when run: CLI start is part of every build's time.
import { imageID, writeBuildFiles } from '../client/metadata.js';
import { imageCommands } from './images.js';
import { containerCommands } from './containers.js';
import { nodeCommands } from './nodes.js';
import { chooseBuilder } from '../server/instances.js';
import { packageVersion } from './version.js';
import { last } from './args.js';

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

/** The one context argument (`-` for stdin), checked first as cobra checks a command's arguments. */
function contextArg(argv: Record<string, unknown>): string {
  const contexts = (argv.context as string[] | undefined) ?? [];
  const total = contexts.length + stdinPositionals(hideBin(process.argv), argv);
  if (total !== 1) throw new UsageError('"builder build" requires exactly 1 argument.', `See 'builder build --help'.\n\nUsage:  ${BUILD_USAGE}\n\nStart a build`);
  return contexts[0] ?? '-';
}

/** What a build reads its Dockerfile and context from: the context argument and `-f`, either of which may be stdin. */
async function buildInput(context: string, argv: Record<string, unknown>, remote: boolean): Promise<{ context: string | NodeJS.ReadableStream; file?: string; dockerfile?: string }> {
  const file = argv.file as string | undefined;
  if (remote && (context === '-' || file === '-')) throw new UserError('USAGE', 'a Dockerfile or context on stdin is not supported with --builder yet');
  if (context !== '-') {
    if (file !== '-') return { context, file };
    return { context, dockerfile: await readDockerfileStream(process.stdin) };
  }
  // buildx's rules for `-`: a tar is the context (with its Dockerfile inside, or at -f within it); anything
  // else is the Dockerfile, with an empty context.
  if (file === '-') throw new UsageError("invalid argument: can't use stdin for both build context and dockerfile");
  const source = await readStdinSource(process.stdin);
  if (source.context) return { context: source.context, file };
  if (file !== undefined) throw new UsageError('ambiguous Dockerfile source: both stdin and flag correspond to Dockerfiles');
  return { context: emptyContext(), dockerfile: source.dockerfile };
}

/** An abort controller that SIGINT or SIGTERM aborts, with the note on the display and the exit code a shell
 * expects (130, 143). */
function cancelOnSignal(display: { note(text: string): void }): AbortController {
  const controller = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => {
    display.note(`received ${sig}, canceling build`);
    controller.abort();
    process.exitCode = sig === 'SIGINT' ? 130 : 143;
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return controller;
}

async function runBuild(argv: Record<string, unknown>): Promise<void> {
  const contextPath = contextArg(argv);
  const mode = (argv.progress as ProgressMode | 'none') ?? 'auto';
  // As buildx: `--progress quiet` is `-q` (the image id on stdout); `none` prints nothing at all.
  const quiet = argv.quiet === true || mode === 'quiet';
  if (argv.quiet === true && mode !== 'auto' && mode !== 'quiet') throw new UsageError(`progress=${mode} and quiet cannot be used together`);
  checkAttestations({ provenance: argv.provenance as string | undefined, sbom: argv.sbom as string | undefined, attest: list(argv.attest) });
  // An address, a builder instance (`builder create`/`use`), or the local engine.
  const choice = chooseBuilder(argv.builder as string | undefined);
  const builderAddr = choice.kind !== 'local';
  // `--check` is `--call=check`.
  const call = argv.check ? parseCall('check') : argv.call !== undefined ? parseCall(String(argv.call)) : undefined;
  // Before the progress display and the signal handlers: a Ctrl-C while waiting for stdin ends the command at once.
  const input = await buildInput(contextPath, argv, !!builderAddr);
  const silent = quiet || mode === 'none';
  const onError = argv['on-error'] as 'error' | 'shell' | undefined;
  if (onError === 'shell' && (builderAddr || !process.stdin.isTTY)) throw new UsageError(builderAddr ? '--on-error=shell works on local builds only' : '--on-error=shell needs a terminal (stdin is not one)');
  // The debug shell shares the terminal: with a line-by-line display, not a redrawn one.
  const display = cliProgress(silent ? 'quiet' : onError === 'shell' && mode === 'auto' ? 'plain' : mode as ProgressMode, process.stderr);
  const progress = display.writer;
  const controller = cancelOnSignal(display);
  // What a local and a remote build take alike.
  const common = {
    context: input.context as string,
    file: input.file,
    tags: list(argv.tag),
    buildArgs: parseKeyValues(list(argv['build-arg']), 'build-arg'),
    labels: parseKeyValues(list(argv.label), 'label'),
    target: argv.target as string | undefined,
    platform: list(argv.platform)?.join(','),
    outputs: list(argv.output),
    noCache: argv['no-cache'] as boolean | undefined,
    allow: list(argv.allow),
    secrets: list(argv.secret),
    network: argv.network as string | undefined,
    addHosts: list(argv['add-host']),
    shmSize: argv['shm-size'] as string | undefined,
    ulimits: list(argv.ulimit),
    cgroupParent: argv['cgroup-parent'] as string | undefined,
    call: call?.name,
    // The shorthands as --attest specs (buildx's CanonicalizeAttest), BUILDX_NO_DEFAULT_ATTESTATIONS read here,
    // where the user set it, also for a remote build.
    attest: clientAttestSpecs({ provenance: argv.provenance as string | undefined, sbom: argv.sbom as string | undefined, attest: list(argv.attest) }),
    progress,
    signal: controller.signal,
  };
  const unsupportedRemote = ['load', 'annotation', 'build-context'].find((f) => argv[f] !== undefined && argv[f] !== false);
  if (builderAddr && unsupportedRemote) {
    throw new UserError('USAGE', `--${unsupportedRemote} is not supported with --builder yet`);
  }
  const result = builderAddr ? await (await import('../server/fanout.js')).buildOn(choice, {
    ...common,
    // The server pushes: --push travels as the output it stands for.
    outputs: argv.push ? [...(common.outputs ?? []), 'type=image,push=true'] : common.outputs,
    cacheTo: list(argv['cache-to']),
    cacheFrom: list(argv['cache-from']),
  }, { note: (line) => display.note(line) }) : await build({
    ...common,
    context: input.context,
    dockerfile: input.dockerfile,
    root: argv.root as string,
    ociRuntime: argv['oci-runtime'] as string | undefined,
    onError,
    insecureRegistries: list(argv['insecure-registry']),
    ssh: list(argv.ssh),
    buildContexts: list(argv['build-context']),
    noCacheFilter: list(argv['no-cache-filter'])?.flatMap((v) => v.split(',')).filter(Boolean),
    pull: argv.pull as boolean | undefined,
    push: argv.push as boolean | undefined,
    load: argv.load as boolean | undefined,
    annotations: parseKeyValues(list(argv.annotation), 'annotation'),
    maxParallelism: argv['max-parallelism'] as number | undefined,
    cacheTo: list(argv['cache-to']),
    cacheFrom: list(argv['cache-from']),
  });
  display.stop();
  if (result.outline || result.targets) {
    const value = result.outline ?? result.targets!;
    process.stdout.write(call?.format === 'json' ? goJSON(value) + '\n'
      : result.outline ? formatOutline(result.outline) : formatTargets(result.targets!));
    return;
  }
  if (result.checkReport) {
    process.stdout.write(result.checkReport.join('\n') + '\n');
    // As buildx: a check that found something fails, so CI can gate on it.
    if (result.warnings.length > 0 && !call?.ignoreStatus) process.exitCode = 1;
    return;
  }
  await writeBuildFiles(result, { iidfile: argv.iidfile as string | undefined, metadataFile: argv['metadata-file'] as string | undefined });
  if (quiet) {
    // As buildx -q: the image id alone on stdout, no warnings (an empty line without an image). Not after
    // an output's bytes written to stdout (`-o -`): nothing is added to those.
    const toStdout = (list(argv.output) ?? []).some((o) => o === '-' || /(^|,)dest=-(,|$)/.test(o));
    if (!toStdout) process.stdout.write((imageID(result) ?? '') + '\n');
    return;
  }
  if (silent) return;
  const summary = warningSummary(result.warnings);
  if (summary.length > 0) display.note(summary.join('\n'));
  if (result.exports.length === 0) {
    display.note('WARNING: No output specified; the build result is only kept in the build cache. Use -t NAME to keep the image, --push, or --output type=oci,dest=FILE, type=docker,dest=FILE or type=local,dest=DIR (type=cacheonly: on purpose).');
  }
  if (result.configDigest) display.note(`image config ${result.configDigest}, manifest ${result.manifestDigest}`);
}

async function runBake(argv: Record<string, unknown>): Promise<void> {
  const { bake, resolveBake, formatBake } = await import('../client/bake.js');
  const common = {
    files: list(argv.file),
    targets: (argv.targets as string[] | undefined)?.map(String),
    set: list(argv.set),
    vars: Object.keys(parseKeyValues(list(argv.var), 'var')).length ? parseKeyValues(list(argv.var), 'var') : undefined,
    cwd: process.cwd(),
  };
  if (argv.list !== undefined) {
    // buildx's `--list=targets` (or `type=targets,format=json`).
    const spec = String(argv.list);
    const fields = Object.fromEntries(spec.split(',').map((f) => (f.includes('=') ? [f.slice(0, f.indexOf('=')), f.slice(f.indexOf('=') + 1)] : ['type', f])));
    if (fields.type !== 'targets') throw new UserError('INVALID_FLAG', `invalid --list "${spec}": only "targets" is supported (e.g. --list=targets, --list=type=targets,format=json)`);
    if (fields.format !== undefined && fields.format !== 'table' && fields.format !== 'json') throw new UserError('INVALID_FLAG', `invalid --list format "${fields.format}": use table or json`);
    const { listBake } = await import('../bake/config.js');
    process.stdout.write(await listBake(common, fields.format === 'json' ? 'json' : 'table'));
    return;
  }
  if (argv.print) {
    process.stdout.write(formatBake(await resolveBake(common)) + '\n');
    return;
  }
  const mode = (argv.progress as ProgressMode | 'none') ?? 'auto';
  const display = cliProgress(mode === 'none' ? 'quiet' : mode as ProgressMode, process.stderr);
  const controller = cancelOnSignal(display);
  const result = await bake({
    ...common,
    push: argv.push as boolean | undefined,
    load: argv.load as boolean | undefined,
    noCache: argv['no-cache'] as boolean | undefined,
    pull: argv.pull as boolean | undefined,
    provenance: argv.provenance as string | undefined,
    sbom: argv.sbom as string | undefined,
    root: argv.root as string,
    ociRuntime: argv['oci-runtime'] as string | undefined,
    insecureRegistries: list(argv['insecure-registry']),
    progress: display.writer,
    signal: controller.signal,
  });
  display.stop();
  if (argv['metadata-file'] !== undefined) {
    // As buildx bake: each target's build metadata under its name.
    const { buildMetadata } = await import('../client/metadata.js');
    const { writeFileAtomic } = await import('../util/fs.js');
    const all = Object.fromEntries(Object.entries(result.targets).map(([name, r]) => [name, buildMetadata(r)]));
    await writeFileAtomic(String(argv['metadata-file']), JSON.stringify(all, null, 2));
  }
  if (mode === 'quiet' || mode === 'none' || mode === 'rawjson') return;
  for (const [name, r] of Object.entries(result.targets)) {
    const summary = warningSummary(r.warnings);
    if (summary.length > 0) display.note(`${name}: ${summary.join('\n')}`);
    if (r.configDigest) display.note(`${name}: image config ${r.configDigest}, manifest ${r.manifestDigest}`);
  }
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

/** The flags (and aliases) of the command being parsed: yargs has them, its types do not say so. */
function knownFlags(cli: unknown): string[] {
  return Object.keys((cli as { getOptions(): { key: Record<string, unknown> } }).getOptions().key);
}

async function main(): Promise<void> {
  const cli = yargs(hideBin(process.argv));
  await cli
    .scriptName('builder')
    .version(packageVersion())
    // `--no-cache` is a flag of its own (as in buildx), not the negation of a `--cache`.
    .parserConfiguration({ 'boolean-negation': false })
    .usage('$0 <command> [options]')
    .option('root', { type: 'string', default: defaultRoot(), coerce: last, describe: 'State directory (env BUILDER_ROOT)', global: true })
    .command(
      // Counted by the handler: buildx's "requires exactly 1 argument", and a `-` yargs does not keep.
      'build [context..]',
      'Start a build',
      (y) => y
        .usage(BUILD_USAGE)
        .positional('context', { type: 'string', describe: 'Build context: a directory, a git address (URL#REF:SUBDIR) or an http(s) URL of a context tar or Dockerfile, or - for a Dockerfile or a context tar (plain, gzip, bzip2, xz, zstd) on stdin' })
        .option('file', { alias: 'f', type: 'string', coerce: last, describe: 'Name of the Dockerfile (default: "PATH/Dockerfile"; - reads it from stdin)' })
        .option('tag', { alias: 't', type: 'string', describe: 'Name and optionally a tag ("name:tag"); kept in the local image store once the build (and --push) succeeded' })
        .option('build-arg', { type: 'string', describe: 'Set build-time variables' })
        .option('label', { type: 'string', describe: 'Set metadata for an image' })
        .option('build-context', { type: 'string', describe: 'Additional build contexts (e.g., name=path, name=docker-image://REF, name=oci-layout://PATH, name=URL)' })
        .option('target', { type: 'string', coerce: last, describe: 'Set the target build stage to build' })
        .option('platform', { type: 'string', describe: 'Set target platform for build', coerce: (v: unknown) => { const s = list(v)!.join(','); parsePlatforms(s); return s; } })
        .option('output', { alias: 'o', type: 'string', describe: 'Output destination (format: "type=local,dest=path")' })
        .option('progress', { type: 'string', choices: ['auto', 'plain', 'tty', 'quiet', 'rawjson', 'none'], default: 'auto', coerce: last, describe: 'Set type of progress output' })
        .option('quiet', { alias: 'q', type: 'boolean', describe: 'Suppress the build output and print image ID on success' })
        .option('no-cache', { type: 'boolean', describe: 'Do not use cache when building the image' })
        .option('no-cache-filter', { type: 'string', describe: 'Do not cache specified stages' })
        .option('cache-to', { type: 'string', describe: 'Cache export destinations (e.g., "type=local,dest=path/to/dir[,mode=max]", "type=registry,ref=REF", "type=inline")' })
        .option('cache-from', { type: 'string', describe: 'External cache sources (e.g., "type=local,src=path/to/dir", "type=registry,ref=REF", or just REF)' })
        .option('pull', { type: 'boolean', describe: 'Always attempt to pull all referenced images' })
        .option('max-parallelism', { type: 'number', coerce: last, describe: 'Most ops run at once (default: one per core, at least 2)' })
        .option('oci-runtime', { type: 'string', coerce: last, describe: 'OCI runtime for RUN: runc (default), crun, or a path' })
        .option('on-error', { type: 'string', choices: ['error', 'shell'], coerce: last, describe: 'On a failed RUN: "error" (default), or "shell" (on a terminal): a shell in the failed step\'s container state' })
        .option('check', { type: 'boolean', describe: 'Shorthand for "--call=check"' })
        .option('call', { type: 'string', coerce: last, describe: 'Set method for evaluating build ("check", "outline", "targets"; add ",format=json" for JSON)' })
        .option('network', { type: 'string', coerce: last, describe: 'Set the networking mode for the RUN instructions during build ("default", "none", "host")' })
        .option('add-host', { type: 'string', describe: 'Add a custom host-to-IP mapping (format: "host:ip" or "host=ip")' })
        .option('shm-size', { type: 'string', coerce: last, describe: 'Shared memory size for build containers (e.g. "128m")' })
        .option('ulimit', { type: 'string', describe: 'Ulimit options (format: "type=soft[:hard]", e.g. "nofile=1024:2048")' })
        .option('cgroup-parent', { type: 'string', coerce: last, describe: 'Set the parent cgroup for the RUN instructions during build' })
        .option('insecure-registry', { type: 'string', describe: 'Insecure registry: HTTPS without verification, then plain HTTP' })
        .option('secret', { type: 'string', describe: 'Secret to expose to the build (format: "id=mysecret[,src=/local/secret]" or "id=mysecret,env=VAR")' })
        .option('ssh', { type: 'string', describe: 'SSH agent socket to expose to the build (format: "default|<id>[=<socket>]")' })
        .option('builder', { type: 'string', coerce: last, describe: 'Builder instance ("builder create") or "builder serve" address (unix:///path, tcp://host:port) to build on (env BUILDER_BUILDER, BUILDER_HOST; token in BUILDER_TOKEN)' })
        .option('allow', { type: 'string', describe: 'Allow extra privileged entitlement (e.g., "network.host", "security.insecure")' })
        .option('push', { type: 'boolean', describe: 'Shorthand for "--output=type=registry"; -t names are kept in the local image store only once pushed' })
        .option('load', { type: 'boolean', describe: 'Shorthand for "--output=type=docker"' })
        .option('annotation', { type: 'string', describe: 'Add annotation to the image' })
        .option('iidfile', { type: 'string', coerce: last, describe: 'Write the image ID to a file' })
        .option('metadata-file', { type: 'string', coerce: last, describe: 'Write build result metadata to a file' })
        .option('provenance', { type: 'string', coerce: last, describe: 'Shorthand for "--attest=type=provenance" ("true", "false", "mode=min|max[,version=v0.2|v1]")' })
        .option('sbom', { type: 'string', coerce: last, describe: 'Shorthand for "--attest=type=sbom" ("true", "false")' })
        .option('attest', { type: 'string', describe: 'Attestation parameters (format: "type=sbom", "type=provenance,mode=max", "type=provenance,disabled=true")' }),
      (argv) => runBuild(argv as Record<string, unknown>),
    )
    .command(
      'bake [targets..]',
      'Build from a file (docker-bake.hcl, docker-bake.json, compose.yaml): several targets as one build',
      (y) => y
        .usage('builder bake [OPTIONS] [TARGET...]')
        .positional('targets', { type: 'string', describe: 'Targets or groups to build (default: the "default" group or target)' })
        .option('file', { alias: 'f', type: 'string', describe: 'Build definition file (default: compose.yaml, docker-bake.json, docker-bake.hcl and their variants found here)' })
        .option('set', { type: 'string', describe: 'Override target value (e.g., "targetpattern.key=value", "targetpattern.key+=value")' })
        .option('metadata-file', { type: 'string', describe: 'Write build result metadata to a file (each target\'s under its name)' })
        .option('var', { type: 'string', describe: 'Set a variable value (e.g., "name=value"), over the environment' })
        .option('print', { type: 'boolean', describe: 'Print the options without building' })
        .option('list', { type: 'string', describe: 'List targets ("targets", or "type=targets,format=json") without building' })
        .option('push', { type: 'boolean', describe: 'Shorthand for "--set=*.output=type=registry"' })
        .option('load', { type: 'boolean', describe: 'Shorthand for "--set=*.output=type=docker"' })
        .option('no-cache', { type: 'boolean', describe: 'Do not use cache when building the image' })
        .option('pull', { type: 'boolean', describe: 'Always attempt to pull all referenced images' })
        .option('provenance', { type: 'string', describe: 'Shorthand for "--set=*.attest=type=provenance"' })
        .option('sbom', { type: 'string', describe: 'Shorthand for "--set=*.attest=type=sbom"' })
        .option('progress', { type: 'string', choices: ['auto', 'plain', 'tty', 'quiet', 'rawjson', 'none'], default: 'auto', describe: 'Set type of progress output' })
        .option('oci-runtime', { type: 'string', describe: 'OCI runtime for RUN: runc (default), crun, or a path' })
        .option('insecure-registry', { type: 'string', describe: 'Insecure registry: HTTPS without verification, then plain HTTP' }),
      (argv) => runBake(argv as Record<string, unknown>),
    )
    .command(imageCommands)
    .command(containerCommands)
    .command(nodeCommands)
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
        .option('keep-storage', { type: 'string', coerce: last, describe: 'Amount of disk space to keep for cache (e.g. 5GB)' })
        .option('filter', { type: 'string', describe: 'Provide filter values (until=24h)' })
        .option('cache-dir', { type: 'string', coerce: last, describe: 'Prune this cache directory (a --cache-to type=local destination) instead of the state directory' })
        .option('force', { alias: 'f', type: 'boolean', describe: 'Do not prompt for confirmation (never prompts)' }),
      (argv) => runPrune(argv as Record<string, unknown>),
    )
    .demandCommand(1, 'Specify a command, e.g. builder build .')
    .strict()
    .fail((msg, err) => {
      // A flag's coerce (--platform) that threw: yargs wraps the message in its own error.
      if (err) throw err.name === 'YError' ? new UsageError(err.message) : err;
      const commands: Record<string, string[]> = { build: [], bake: [], 'install-emulators': [], du: [], prune: [], imagetools: ['inspect', 'create'] };
      for (const c of [...imageCommands, ...containerCommands, ...nodeCommands]) commands[String(c.command).split(' ')[0]] ??= (c as { subcommands?: string[] }).subcommands ?? [];
      throw new UsageError(usageMessage(msg, hideBin(process.argv), knownFlags(cli), commands));
    })
    .help()
    .parseAsync();
}

main().catch((e: unknown) => {
  settleProgress(e);
  if (e instanceof BuildError && e.details.length) process.stderr.write(e.details.join('\n') + '\n');
  if (e instanceof BuildError && e.outputTail.length) {
    process.stderr.write('------\n' + e.outputTail.map((l) => ` > ${l}`).join('\n') + '\n------\n');
  }
  if (e instanceof UserError) {
    process.stderr.write(`ERROR: ${e.message}\n`);
    if (e instanceof UsageError && e.usage) process.stderr.write(`${e.usage}\n`);
    process.exit(1);
  }
  if ((e as { code?: string })?.code === 'CANCELED' || (e as Error)?.name === 'AbortError') {
    process.stderr.write('ERROR: build canceled\n');
    process.exit(process.exitCode || 130);
  }
  process.stderr.write(`internal error: ${(e as Error)?.stack ?? String(e)}\n`);
  process.exit(2);
});
