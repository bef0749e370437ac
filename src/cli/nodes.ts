// Commands around builder nodes: `serve` (run the engine as a server) and buildx's builder instances
// (`builder create|use|ls|inspect|rm`, as `docker builder ...`; `create`, `use` and `ls` also at the top,
// where `inspect` and `rm` are Docker's image and container commands). Modules load when a command runs: CLI start is part of every
// build's time.
import type { CommandModule, Argv } from 'yargs';
import { UserError } from '../util/errors.js';
import { last, list } from './args.js';

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] + 3))).join('').trimEnd() + '\n').join('');
}

const commands: CommandModule<object, Record<string, unknown>>[] = [
  {
    command: 'serve',
    describe: 'Run the build engine as a server that "builder build --builder ADDR" uses',
    builder: (y: Argv) => y
      .option('addr', { type: 'string', coerce: last, default: 'unix:///run/builder/builder.sock', describe: 'Listen address: unix:///path or tcp://HOST:PORT' })
      .option('tlscacert', { type: 'string', coerce: last, describe: 'CA certificate (PEM): only clients with a certificate it signed are served (mutual TLS)' })
      .option('tlscert', { type: 'string', coerce: last, describe: 'Server certificate (PEM) for mutual TLS' })
      .option('tlskey', { type: 'string', coerce: last, describe: 'Server key (PEM) for mutual TLS' })
      .option('token', { type: 'string', coerce: last, describe: 'Token clients must send (required for plain tcp://; env BUILDER_TOKEN)' })
      .option('allow-insecure-tcp', { type: 'boolean', describe: 'Allow plain (token-only) TCP on an address that is not loopback' })
      .option('max-concurrent-builds', { type: 'number', coerce: last, describe: 'Most builds run at once; the rest wait in a first-come, first-served queue (default: no limit)' })
      .option('platform', { type: 'string', describe: 'Platforms this node builds for, reported to clients (default: the host\'s)' })
      .option('cache-from', { type: 'string', describe: 'Cache every build imports (e.g. "type=registry,ref=REF" shared by the nodes)' })
      .option('cache-to', { type: 'string', describe: 'Cache every build exports (e.g. "type=registry,ref=REF,mode=max")' }),
    handler: async (argv) => {
      const { serve } = await import('../server/server.js');
      const { packageVersion } = await import('./version.js');
      const server = await serve({
        addr: argv.addr as string, token: (argv.token as string | undefined) ?? process.env.BUILDER_TOKEN, root: argv.root as string,
        tlsCACert: argv.tlscacert as string | undefined, tlsCert: argv.tlscert as string | undefined, tlsKey: argv.tlskey as string | undefined,
        allowInsecureTcp: argv['allow-insecure-tcp'] as boolean | undefined,
        maxConcurrentBuilds: argv['max-concurrent-builds'] as number | undefined,
        platforms: list(argv.platform).join(',') || undefined,
        cacheFrom: list(argv['cache-from']), cacheTo: list(argv['cache-to']),
        version: packageVersion(),
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
  },
  {
    command: 'create [endpoint]',
    describe: 'Create a builder instance of "builder serve" nodes, or add a node to one',
    builder: (y: Argv) => y
      .positional('endpoint', { type: 'string', describe: 'The node\'s address: tcp://HOST:PORT or unix:///path' })
      .option('name', { type: 'string', coerce: last, describe: 'Builder instance name' })
      .option('node', { type: 'string', coerce: last, describe: 'Create/modify node with given name' })
      .option('platform', { type: 'string', describe: 'Fixed platforms for current node' })
      .option('append', { type: 'boolean', describe: 'Append a node to builder instead of changing it' })
      .option('leave', { type: 'boolean', describe: 'Remove a node from builder instead of changing it' })
      .option('driver', { type: 'string', coerce: last, describe: 'Driver to use (available: "remote")' })
      .option('driver-opt', { type: 'string', describe: 'Options for the driver: cacert=FILE,cert=FILE,key=FILE,servername=NAME' })
      .option('use', { type: 'boolean', describe: 'Set the current builder instance' })
      .option('bootstrap', { type: 'boolean', describe: 'Check the node answers before saving' }),
    handler: async (argv) => {
      const inst = await import('../server/instances.js');
      const { parsePlatforms, formatPlatform } = await import('../client/platform.js');
      const driver = (argv.driver as string | undefined) ?? 'remote';
      if (driver !== 'remote') throw new UserError('USAGE', `driver "${driver}" is not supported: only "remote" (builder serve nodes)`);
      const endpoint = argv.endpoint as string | undefined;
      let name = argv.name as string | undefined;
      if (argv.append && !name) throw new UserError('USAGE', 'create --append needs --name of the builder to append to');
      if (argv.leave) {
        if (!name || !argv.node) throw new UserError('USAGE', 'create --leave needs --name and --node');
        const existing = inst.getInstance(name);
        if (!existing.nodes.some((n) => n.name === argv.node)) throw new UserError('NO_SUCH_NODE', `node ${argv.node as string} not found in builder ${name}`);
        existing.nodes = existing.nodes.filter((n) => n.name !== argv.node);
        inst.saveInstance(existing);
        process.stdout.write(`${name}\n`);
        return;
      }
      if (!endpoint) throw new UserError('USAGE', 'create: an endpoint (tcp://HOST:PORT or unix:///path) is required for driver remote');
      inst.checkEndpoint(endpoint);
      name ??= `builder-${Math.random().toString(36).slice(2, 10)}`;
      inst.checkName(name);
      const existing = inst.loadInstance(name);
      if (existing && !argv.append && !argv.node) {
        throw new UserError('INSTANCE_EXISTS', `existing instance for "${name}" but no append mode, specify the node name to make changes for existing instances`);
      }
      const nodes = existing?.nodes ?? [];
      let nodeName = argv.node as string | undefined;
      if (nodeName === undefined) {
        for (let i = 0; nodeName === undefined || nodes.some((n) => n.name === nodeName); i++) nodeName = `${name}${i}`;
      }
      inst.checkName(nodeName, 'node');
      if (argv.append && nodes.some((n) => n.name === nodeName)) throw new UserError('NODE_EXISTS', `node ${nodeName} already exists in builder ${name}`);
      const platforms = list(argv.platform).flatMap((p) => p.split(',')).filter(Boolean).map((p) => formatPlatform(parsePlatforms(p)[0]));
      const node = {
        name: nodeName, endpoint,
        ...(platforms.length ? { platforms } : {}),
        ...(list(argv['driver-opt']).length ? { driverOpts: inst.parseDriverOpts(list(argv['driver-opt'])) } : {}),
      };
      inst.nodeTLS(node); // the TLS files must be readable now, not at the first build
      if (argv.bootstrap) {
        const { probeNode } = await import('../server/nodes.js');
        const s = await probeNode(node, { token: process.env.BUILDER_TOKEN });
        if (s.status !== 'running') throw new UserError('NODE_UNREACHABLE', `node ${nodeName}: ${s.error}`);
      }
      const updated = { name, driver: 'remote' as const, nodes: [...nodes.filter((n) => n.name !== nodeName), node] };
      // A changed node keeps its place.
      const at = nodes.findIndex((n) => n.name === nodeName);
      if (at >= 0) updated.nodes = nodes.map((n, i) => (i === at ? node : n));
      inst.saveInstance(updated);
      if (argv.use) inst.setCurrent(name);
      process.stdout.write(`${name}\n`);
    },
  },
  {
    command: 'use <name>',
    describe: 'Set the current builder instance ("default": build locally)',
    handler: async (argv) => {
      const inst = await import('../server/instances.js');
      const name = argv.name as string;
      if (name !== inst.DEFAULT_INSTANCE) inst.getInstance(name);
      inst.setCurrent(name);
    },
  },
  {
    command: 'ls',
    describe: 'List builder instances, their nodes, status and platforms',
    handler: async () => {
      const inst = await import('../server/instances.js');
      const { probeNode } = await import('../server/nodes.js');
      const { packageVersion } = await import('./version.js');
      const { formatPlatform, hostPlatform } = await import('../client/platform.js');
      const current = process.env.BUILDER_BUILDER || inst.currentInstance() || inst.DEFAULT_INSTANCE;
      const rows = [['NAME/NODE', 'DRIVER/ENDPOINT', 'STATUS', 'BUILDER', 'PLATFORMS']];
      const errors: string[] = [];
      rows.push([`default${current === inst.DEFAULT_INSTANCE ? '*' : ''}`, 'local', '', '', '']);
      rows.push([' \\_ default', ' \\_ (local engine)', 'running', packageVersion(), formatPlatform(hostPlatform())]);
      for (const i of inst.listInstances()) {
        rows.push([`${i.name}${i.name === current ? '*' : ''}`, i.driver, '', '', '']);
        const statuses = await Promise.all(i.nodes.map((n) => probeNode(n, { token: process.env.BUILDER_TOKEN })));
        for (const s of statuses) {
          const given = s.node.platforms ?? [];
          rows.push([` \\_ ${s.node.name}`, ` \\_ ${s.node.endpoint}`, s.status, s.info?.version ?? '', [...s.platforms.map((p) => (given.includes(p) ? `${p}*` : p)), ...s.emulated.map((p) => `(${p})`)].join(', ')]);
          if (s.error) errors.push(`Cannot load builder ${i.name}/${s.node.name}: ${s.error}`);
        }
      }
      process.stdout.write(table(rows));
      if (errors.length) process.stdout.write('\n' + errors.join('\n') + '\n');
    },
  },
  {
    command: 'inspect [name]',
    describe: 'Inspect a builder instance: its nodes, their status and platforms',
    builder: (y: Argv) => y.option('bootstrap', { type: 'boolean', describe: 'Ensure builder has booted before inspecting (fails when a node does not answer)' }),
    handler: async (argv) => {
      const inst = await import('../server/instances.js');
      const { probeNode } = await import('../server/nodes.js');
      const name = (argv.name as string | undefined) ?? process.env.BUILDER_BUILDER ?? inst.currentInstance();
      if (!name || name === inst.DEFAULT_INSTANCE) {
        const { packageVersion } = await import('./version.js');
        const { formatPlatform, hostPlatform } = await import('../client/platform.js');
        process.stdout.write(`Name:   default\nDriver: local\n\nNodes:\nName:      default\nEndpoint:  (local engine)\nStatus:    running\nBuilder:   ${packageVersion()}\nPlatforms: ${formatPlatform(hostPlatform())}\n`);
        return;
      }
      const i = inst.getInstance(name);
      const statuses = await Promise.all(i.nodes.map((n) => probeNode(n, { token: process.env.BUILDER_TOKEN })));
      let out = `Name:   ${i.name}\nDriver: ${i.driver}\n\nNodes:\n`;
      for (const s of statuses) {
        const opts = Object.entries(s.node.driverOpts ?? {}).map(([k, v]) => `${k}="${v}"`).join(' ');
        const given = s.node.platforms ?? [];
        out += `Name:                  ${s.node.name}\nEndpoint:              ${s.node.endpoint}\n`;
        if (opts) out += `Driver Options:        ${opts}\n`;
        out += `Status:                ${s.status}\n`;
        if (s.error) out += `Error:                 ${s.error}\n`;
        if (s.info) out += `Builder version:       ${s.info.version}\nMax concurrent builds: ${s.info.maxConcurrentBuilds || 'no limit'}\nBuilds:                ${s.info.running} running, ${s.info.queued} queued\n`;
        out += `Platforms:             ${s.platforms.map((p) => (given.includes(p) ? `${p}*` : p)).join(', ')}\n`;
        if (s.emulated.length) out += `Emulated platforms:    ${s.emulated.join(', ')}\n`;
        out += '\n';
      }
      process.stdout.write(out.replace(/\n\n$/, '\n'));
      const down = statuses.filter((s) => s.status !== 'running');
      if (argv.bootstrap && down.length) throw new UserError('NODE_UNREACHABLE', `builder ${i.name}: node ${down[0].node.name} is ${down[0].status}: ${down[0].error}`);
    },
  },
  {
    command: 'rm <name>',
    describe: 'Remove a builder instance (the nodes keep running)',
    handler: async (argv) => {
      const inst = await import('../server/instances.js');
      inst.removeInstance(argv.name as string);
    },
  },
];

const TOP_LEVEL = new Set(['serve', 'create', 'use', 'ls']);
const instanceCommands = commands.filter((c) => String(c.command) !== 'serve');

export const nodeCommands: CommandModule<object, Record<string, unknown>>[] = [
  ...commands.filter((c) => TOP_LEVEL.has(String(c.command).split(' ')[0])),
  {
    command: 'builder <command>',
    describe: 'Manage builder instances (create, use, ls, inspect, rm), as "docker builder"',
    builder: (y: Argv) => {
      for (const c of instanceCommands) y.command(c);
      return y.demandCommand(1);
    },
    handler: () => undefined,
  },
];
(nodeCommands[nodeCommands.length - 1] as { subcommands?: string[] }).subcommands = instanceCommands.map((c) => String(c.command).split(' ')[0]);
