// Commands around images rather than builds: the local image store (`images`, `rmi`), registry
// credentials (`login`, `logout`) and `imagetools` (inspect a remote image, join images into an index).
import type { CommandModule, Argv } from 'yargs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { StateLock } from '../client/lock.js';
import { ContentStore } from '../content/store.js';
import { ImageStore } from '../image/store.js';
import { RegistryClient } from '../registry/client.js';
import { parseReference } from '../registry/reference.js';
import { eraseCredentials, storeCredentials } from '../registry/credentials.js';
import { imagetoolsCreate, imagetoolsInspect } from '../registry/imagetools.js';
import { UserError } from '../util/errors.js';

function stores(root: string): { content: ContentStore; images: ImageStore } {
  const content = new ContentStore(path.join(root, 'content'));
  return { content, images: new ImageStore(root, content) };
}

function list(v: unknown): string[] {
  if (v === undefined) return [];
  return (Array.isArray(v) ? v : [v]).map(String);
}

async function readStdin(): Promise<string> {
  let data = '';
  for await (const chunk of process.stdin) data += chunk;
  return data.replace(/\r?\n$/, '');
}

const commands: CommandModule<object, Record<string, unknown>>[] = [
  {
    command: 'images',
    describe: 'List images in the local image store',
    handler: async (argv) => {
      const { images } = stores(argv.root as string);
      const rows = [['REPOSITORY', 'TAG', 'DIGEST', 'CREATED']];
      for (const img of await images.list()) {
        const ref = parseReference(img.name);
        rows.push([ref.familiarName, ref.tag ?? '<none>', img.target.digest, img.created]);
      }
      const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
      for (const r of rows) process.stdout.write(r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('   ') + '\n');
    },
  },
  {
    command: 'rmi <image..>',
    describe: 'Remove images from the local image store',
    handler: async (argv) => {
      const { images } = stores(argv.root as string);
      // The store is read-modify-write: not while a build records an image.
      await fs.mkdir(argv.root as string, { recursive: true });
      const lock = await StateLock.acquire(argv.root as string);
      try {
        for (const name of list(argv.image)) {
          const removed = parseReference((await images.remove(name)).name);
          process.stdout.write(`Untagged: ${removed.familiarName}:${removed.tag}\n`);
        }
      } finally {
        await lock.release();
      }
    },
  },
  {
    command: 'login <server>',
    describe: 'Log in to a registry (saves credentials in the docker config)',
    builder: (y: Argv) => y
      .option('username', { alias: 'u', type: 'string', demandOption: true })
      .option('password', { alias: 'p', type: 'string' })
      .option('password-stdin', { type: 'boolean' }),
    handler: async (argv) => {
      const password = argv['password-stdin'] ? await readStdin() : (argv.password as string | undefined);
      if (!password) throw new UserError('USAGE', 'login: a password is required (--password or --password-stdin)');
      const host = loginHost(argv.server as string);
      const creds = { username: argv.username as string, password };
      // Verify before saving, as docker login does: a wrong password must not be stored.
      const client = new RegistryClient({ credentials: () => creds, retries: 1 });
      await client.ping(host);
      await storeCredentials(host, creds);
      process.stdout.write('Login Succeeded\n');
    },
  },
  {
    command: 'logout <server>',
    describe: 'Log out from a registry',
    handler: async (argv) => {
      const host = loginHost(argv.server as string);
      const found = await eraseCredentials(host);
      process.stdout.write(found ? `Removing login credentials for ${host}\n` : `Not logged in to ${host}\n`);
    },
  },
  {
    command: 'imagetools <command>',
    describe: 'Commands to work on images in registry',
    builder: (y: Argv) => y
      .command({
        command: 'inspect <name>',
        describe: 'Show details of an image in the registry',
        builder: (yy: Argv) => yy
          .option('raw', { type: 'boolean', describe: 'Show original, unformatted JSON manifest' })
          .option('format', { type: 'string', describe: 'Format the output using the given Go template (e.g. "{{json .Provenance}}", "{{json .SBOM}}")' }),
        handler: async (argv: Record<string, unknown>) => {
          const client = new RegistryClient({ insecureRegistries: list(argv['insecure-registry']) });
          if (argv.raw && argv.format !== undefined) throw new UserError('USAGE', 'format and raw cannot be used together');
          process.stdout.write(await imagetoolsInspect(client, parseReference(argv.name as string), { raw: Boolean(argv.raw), format: argv.format as string | undefined }));
        },
      })
      .command({
        command: 'create [source..]',
        describe: 'Create a new image based on source images',
        builder: (yy: Argv) => yy
          .option('tag', { alias: 't', type: 'string', describe: 'Set reference for new image' })
          .option('dry-run', { type: 'boolean', describe: 'Show final image instead of pushing' }),
        handler: async (argv: Record<string, unknown>) => {
          const tags = list(argv.tag);
          if (!argv['dry-run'] && tags.length === 0) throw new UserError('USAGE', 'imagetools create: at least one --tag is required');
          const client = new RegistryClient({});
          const { content } = stores(argv.root as string);
          const out = await imagetoolsCreate(client, content, list(argv.source).map(parseReference), tags.map(parseReference), { dryRun: Boolean(argv['dry-run']) });
          process.stdout.write(out);
        },
      })
      .demandCommand(1),
    handler: () => undefined,
  },
];

/** `docker login` takes a host or a URL. */
function loginHost(server: string): string {
  return server.replace(/^https?:\/\//, '').replace(/\/.*$/, '');
}

export const imageCommands = commands;
