// Container commands on stored images (`run`, `ps`, `rm`, `diff`, `commit`), as Docker's CLI names and
// prints them; the work is in src/container/.
import type { CommandModule, Argv } from 'yargs';
import { UserError } from '../util/errors.js';
import { last, list } from './args.js';

function runFlags(y: Argv): Argv {
  return y
    .option('name', { type: 'string', coerce: last, describe: 'Assign a name to the container' })
    .option('rm', { type: 'boolean', describe: 'Automatically remove the container when it exits' })
    .option('interactive', { alias: 'i', type: 'boolean', describe: 'Keep STDIN open (piped to the process)' })
    .option('tty', { alias: 't', type: 'boolean', describe: 'Allocate a pseudo-TTY (this terminal is relayed to it)' })
    .option('env', { alias: 'e', type: 'string', describe: 'Set environment variables (KEY=VALUE, or KEY from this environment)' })
    .option('workdir', { alias: 'w', type: 'string', coerce: last, describe: 'Working directory inside the container' })
    .option('user', { alias: 'u', type: 'string', coerce: last, describe: 'Username or UID (format: <name|uid>[:<group|gid>])' })
    .option('entrypoint', { type: 'string', coerce: last, describe: 'Overwrite the default ENTRYPOINT of the image' })
    .option('platform', { type: 'string', coerce: last, describe: 'Platform of a multi-platform image (default: this machine\'s)' })
    .option('mount', { type: 'string', describe: 'Attach a filesystem mount (type=bind,source=S,target=T[,readonly] or type=tmpfs,target=T)' })
    .option('network', { type: 'string', coerce: last, choices: ['default', 'host', 'none'], describe: 'Network of the container (default: as RUN)' })
    .option('privileged', { type: 'boolean', describe: 'Give extended privileges to this container (as RUN --security=insecure)' })
    .option('oci-runtime', { type: 'string', coerce: last, describe: 'OCI runtime: runc (default), crun, or a path' });
}

/** `run`'s own arguments parsed anew, stopping at the image: the rest is the command, whatever it holds. */
async function parseRunArgs(outer: Record<string, unknown>): Promise<Record<string, unknown>> {
  const { default: yargs } = await import('yargs');
  const { hideBin } = await import('yargs/helpers');
  const raw = hideBin(process.argv);
  const sub = raw.slice(raw.indexOf('run') + 1);
  const argv = await runFlags(yargs(sub).parserConfiguration({ 'halt-at-non-option': true, 'boolean-negation': false }))
    .option('root', { type: 'string', coerce: last })
    .strict()
    .help(false)
    .version(false)
    .fail((msg, err) => { throw err ?? new UserError('USAGE', msg); })
    .parseAsync() as Record<string, unknown>;
  const rest = (argv._ as unknown[]).map(String);
  if (rest.length === 0) throw new UserError('USAGE', '"builder run" requires at least 1 argument.');
  return { ...argv, root: outer.root, image: rest[0], command: rest.slice(1) };
}

const commands: CommandModule<object, Record<string, unknown>>[] = [
  {
    command: 'run <image> [command..]',
    describe: 'Create and run a new container from a stored image (the same executor as RUN)',
    // Parsed again in the handler: as docker run, what follows the image is the command, flags included.
    builder: (y: Argv) => runFlags(y.strict(false)),
    handler: async (outer) => {
      const { runContainer } = await import('../container/run.js');
      const argv = await parseRunArgs(outer);
      const { parsePlatform } = await import('../client/platform.js');
      if (argv.tty && !process.stdin.isTTY) throw new UserError('USAGE', 'the input device is not a TTY');
      const ac = new AbortController();
      let signalled: NodeJS.Signals | undefined;
      const stop = (sig: NodeJS.Signals) => { signalled = sig; ac.abort(); };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      try {
        const network = argv.network as string | undefined;
        const r = await runContainer({
          root: argv.root as string, image: argv.image as string, cmd: list(argv.command), name: argv.name as string | undefined,
          rm: Boolean(argv.rm), env: list(argv.env), workdir: argv.workdir as string | undefined, user: argv.user as string | undefined,
          entrypoint: argv.entrypoint as string | undefined, platform: argv.platform ? parsePlatform(argv.platform as string) : undefined,
          privileged: Boolean(argv.privileged), mounts: list(argv.mount), network: network === 'default' || network === undefined ? undefined : (network as 'host' | 'none'),
          stdin: argv.interactive && !argv.tty ? process.stdin : undefined, tty: Boolean(argv.tty), signal: ac.signal, runtime: argv['oci-runtime'] as string | undefined,
        });
        process.exitCode = r.exitCode;
      } catch (e) {
        // Stopped by a signal (Ctrl-C, `builder rm -f`): the container was killed, as docker run's 130/143.
        if (!signalled) throw e;
        process.exitCode = signalled === 'SIGINT' ? 130 : 143;
      } finally {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        if (argv.interactive && !argv.tty) process.stdin.destroy();
      }
    },
  },
  {
    command: 'ps',
    describe: 'List containers',
    builder: (y: Argv) => y
      .option('all', { alias: 'a', type: 'boolean', describe: 'Show all containers (default shows just running)' })
      .option('quiet', { alias: 'q', type: 'boolean', describe: 'Only display container IDs' })
      .option('no-trunc', { type: 'boolean', describe: "Don't truncate output" })
      .option('format', { type: 'string', coerce: last, describe: 'Format output using a custom template: "table", "table TEMPLATE", "json", or a Go template' }),
    handler: async (argv) => {
      const { listContainerRows } = await import('../container/run.js');
      const { formatRows } = await import('../image/format.js');
      const rows = await listContainerRows(argv.root as string, { all: Boolean(argv.all) });
      const noTrunc = Boolean(argv['no-trunc']);
      if (argv.quiet) {
        process.stdout.write(rows.map((r) => (noTrunc ? r.fullID : r.ID) + '\n').join(''));
        return;
      }
      const shown = rows.map(({ fullID, fullCommand, ...r }) => ({
        ...r,
        ID: noTrunc ? fullID : r.ID,
        // Docker quotes the command, cut at 20 characters with an ellipsis.
        Command: JSON.stringify(noTrunc || [...fullCommand].length <= 20 ? fullCommand : [...fullCommand].slice(0, 19).join('') + '…'),
      }));
      process.stdout.write(formatRows(shown, argv.format as string | undefined, '{{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}',
        { ID: 'CONTAINER ID', Image: 'IMAGE', Command: 'COMMAND', RunningFor: 'CREATED', CreatedAt: 'CREATED AT', Status: 'STATUS', Ports: 'PORTS', Names: 'NAMES', State: 'STATE' }));
    },
  },
  {
    command: 'rm <container..>',
    describe: 'Remove one or more containers and their writable layers',
    builder: (y: Argv) => y
      .option('force', { alias: 'f', type: 'boolean', describe: 'Force the removal of a running container' }),
    handler: async (argv) => {
      const { removeContainers } = await import('../container/run.js');
      try {
        for (const r of await removeContainers(argv.root as string, list(argv.container), { force: Boolean(argv.force) })) process.stdout.write(`${r}\n`);
      } catch (e) {
        for (const r of (e as { removed?: string[] }).removed ?? []) process.stdout.write(`${r}\n`);
        throw e;
      }
    },
  },
  {
    command: 'diff <container>',
    describe: "Inspect changes to files or directories on a container's filesystem",
    handler: async (argv) => {
      const { diffContainer } = await import('../container/run.js');
      for (const c of await diffContainer(argv.root as string, argv.container as string)) process.stdout.write(`${c.kind} ${c.path}\n`);
    },
  },
  {
    command: 'commit <container> [repository]',
    describe: "Create a new image from a container's changes",
    builder: (y: Argv) => y
      .option('author', { alias: 'a', type: 'string', coerce: last, describe: 'Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")' })
      .option('message', { alias: 'm', type: 'string', coerce: last, describe: 'Commit message' })
      .option('change', { alias: 'c', type: 'string', describe: 'Apply Dockerfile instruction to the created image (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR)' })
      .option('pause', { alias: 'p', type: 'boolean', default: true, describe: 'Accepted; only stopped containers are committed' })
      .option('oci-runtime', { type: 'string', coerce: last, describe: 'OCI runtime: runc (default), crun, or a path' }),
    handler: async (argv) => {
      const { commitContainer } = await import('../container/run.js');
      const id = await commitContainer(argv.root as string, argv.container as string, {
        author: argv.author as string | undefined, message: argv.message as string | undefined, changes: list(argv.change),
        name: argv.repository as string | undefined, runtime: argv['oci-runtime'] as string | undefined,
      });
      process.stdout.write(`${id}\n`);
    },
  },
];

export const containerCommands = commands;
