// Commands around images rather than builds: the local image store (`images`, `rmi`), registry
// credentials (`login`, `logout`) and `imagetools` (inspect a remote image, join images into an index).
import type { CommandModule, Argv } from 'yargs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { ContentStore } from '../content/store.js';
import { ImageStore } from '../image/store.js';
import { RegistryClient } from '../registry/client.js';
import { parseReference } from '../registry/reference.js';
import { eraseCredentials, storeCredentials } from '../registry/credentials.js';
import { imagetoolsCreate, imagetoolsInspect } from '../registry/imagetools.js';
import { UserError } from '../util/errors.js';
import { last, list } from './args.js';

function stores(root: string): { content: ContentStore; images: ImageStore } {
  const content = new ContentStore(path.join(root, 'content'));
  return { content, images: new ImageStore(root, content) };
}

async function readStdin(): Promise<string> {
  let data = '';
  for await (const chunk of process.stdin) data += chunk;
  return data.replace(/\r?\n$/, '');
}

const commands: CommandModule<object, Record<string, unknown>>[] = [
  {
    command: 'images [repository]',
    describe: 'List images in the local image store',
    builder: (y: Argv) => y
      .option('all', { alias: 'a', type: 'boolean', describe: 'Show all images (there are no intermediate images: the same as without)' })
      .option('quiet', { alias: 'q', type: 'boolean', describe: 'Only show image IDs' })
      .option('digests', { type: 'boolean', describe: 'Show digests' })
      .option('no-trunc', { type: 'boolean', describe: 'Do not truncate output' })
      .option('filter', { alias: 'f', type: 'string', describe: 'Filter output based on conditions provided (dangling=true|false, reference=PATTERN, before=IMAGE, since=IMAGE, label=KEY[=VALUE])' })
      .option('format', { type: 'string', coerce: last, describe: 'Format output using a custom template: "table", "table TEMPLATE", "json", or a Go template' }),
    handler: async (argv) => {
      const { listImages } = await import('../image/images.js');
      const { formatRows } = await import('../image/format.js');
      const filters = list(argv.filter);
      if (argv.repository) filters.push(`reference=${String(argv.repository)}`);
      const rows = await listImages(argv.root as string, { all: Boolean(argv.all), filters });
      const noTrunc = Boolean(argv['no-trunc']);
      if (argv.quiet) {
        const ids = [...new Set(rows.map((r) => (noTrunc ? r.fullID : r.ID)))];
        process.stdout.write(ids.map((i) => i + '\n').join(''));
        return;
      }
      const shown = rows.map((r) => (noTrunc ? { ...r, ID: r.fullID } : r));
      const format = argv.format as string | undefined;
      const cols = argv.digests ? '{{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}' : '{{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}';
      const header = { ID: 'IMAGE ID', CreatedSince: 'CREATED', CreatedAt: 'CREATED AT', Repository: 'REPOSITORY', Tag: 'TAG', Digest: 'DIGEST', Size: 'SIZE', Platforms: 'PLATFORMS' };
      const json = shown.map(({ fullID: _f, created: _c, sizeBytes: _s, platformRows: _p, ...rest }) => rest);
      if (format === undefined || format === 'table') {
        // An index's platforms under its row, as `docker images --tree` shows them.
        const { humanSize } = await import('../image/format.js');
        const table: Record<string, unknown>[] = [];
        for (const [i, r] of shown.entries()) {
          table.push(json[i]);
          for (const p of r.platformRows) {
            table.push({ ...json[i], Repository: `  └─ ${p.platform}`, Tag: '', Digest: '', ID: noTrunc ? p.id : p.id.slice(7, 19), CreatedSince: '', Size: humanSize(p.size) });
          }
        }
        process.stdout.write(formatRows(table, 'table', cols, header));
        return;
      }
      process.stdout.write(formatRows(json, format, cols, header));
    },
  },
  {
    command: 'tag <source> <target>',
    describe: 'Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE',
    handler: async (argv) => {
      const { tagImage } = await import('../image/images.js');
      await tagImage(argv.root as string, argv.source as string, argv.target as string);
    },
  },
  {
    command: 'rmi <image..>',
    describe: 'Remove one or more images (blobs no other image needs are freed)',
    builder: (y: Argv) => y
      .option('force', { alias: 'f', type: 'boolean', describe: 'Force removal of the image (every name of an image id; an image a container uses)' }),
    handler: async (argv) => {
      const { removeImages } = await import('../image/images.js');
      const { containerUsing } = await import('../container/containers.js');
      const root = argv.root as string;
      const print = (r: { untagged: string[]; deleted: string[] }) => {
        for (const u of r.untagged) process.stdout.write(`Untagged: ${u}\n`);
        for (const d of r.deleted) process.stdout.write(`Deleted: ${d}\n`);
      };
      try {
        print(await removeImages(root, list(argv.image), { force: Boolean(argv.force), inUse: (t, id) => containerUsing(root, t, id) }));
      } catch (e) {
        const partial = (e as { partial?: { untagged: string[]; deleted: string[] } }).partial;
        if (partial) print(partial);
        throw e;
      }
    },
  },
  {
    command: 'inspect <image..>',
    describe: 'Display detailed information on one or more images (or containers)',
    builder: (y: Argv) => y
      .option('format', { alias: 'f', type: 'string', coerce: last, describe: 'Format output using a custom template ("json" or a Go template)' })
      .option('platform', { type: 'string', coerce: last, describe: 'Only this platform of a multi-platform image' })
      .option('type', { type: 'string', coerce: last, choices: ['image', 'container'], describe: 'Only look for this kind of object' }),
    handler: async (argv) => {
      const { inspectImage } = await import('../image/images.js');
      const { inspectContainer } = await import('../container/containers.js');
      const { parsePlatform } = await import('../client/platform.js');
      const root = argv.root as string;
      const platform = argv.platform ? parsePlatform(argv.platform as string) : undefined;
      const out: Record<string, unknown>[] = [];
      const missing: string[] = [];
      for (const name of list(argv.image)) {
        const c = argv.type === 'image' ? undefined : await inspectContainer(root, name).catch(() => undefined);
        if (c) { out.push(c); continue; }
        if (argv.type === 'container') { missing.push(name); continue; }
        try {
          out.push(...(await inspectImage(root, name, { platform })));
        } catch (e) {
          if (!(e instanceof UserError) || e.code !== 'IMAGE_NOT_FOUND') throw e;
          missing.push(name);
        }
      }
      await printInspect(out, argv.format as string | undefined);
      if (missing.length) throw new UserError('NOT_FOUND', missing.map((m) => `No such object: ${m}`).join('\n'));
    },
  },
  {
    command: 'history <image>',
    describe: 'Show the history of an image',
    builder: (y: Argv) => y
      .option('no-trunc', { type: 'boolean', describe: "Don't truncate output" })
      .option('human', { alias: 'H', type: 'boolean', default: true, describe: 'Print sizes and dates in human readable format' })
      .option('quiet', { alias: 'q', type: 'boolean', describe: 'Only show image IDs' })
      .option('format', { type: 'string', coerce: last, describe: 'Format output using a custom template: "table", "table TEMPLATE", "json", or a Go template' })
      .option('platform', { type: 'string', coerce: last, describe: 'Show the history of this platform of a multi-platform image' }),
    handler: async (argv) => {
      const { imageHistory, shortID } = await import('../image/images.js');
      const { formatRows, humanSize, since } = await import('../image/format.js');
      const { parsePlatform } = await import('../client/platform.js');
      const rows = await imageHistory(argv.root as string, argv.image as string, { platform: argv.platform ? parsePlatform(argv.platform as string) : undefined });
      const noTrunc = Boolean(argv['no-trunc']);
      const human = argv.human !== false;
      const id = (i: string) => (i === '<missing>' || noTrunc ? i : shortID(i));
      if (argv.quiet) {
        process.stdout.write(rows.map((r) => id(r.id) + '\n').join(''));
        return;
      }
      const shown = rows.map((r) => {
        const by = r.createdBy.replace(/\t/g, ' ');
        return {
          ID: id(r.id),
          // Docker: RFC 3339 to the second without --human.
          CreatedSince: human ? since(r.created) : rfc3339Seconds(r.created),
          // Docker: CreatedAt is RFC 3339 either way.
          CreatedAt: rfc3339Seconds(r.created),
          CreatedBy: noTrunc || [...by].length <= 45 ? by : [...by].slice(0, 44).join('') + '…',
          Size: human ? humanSize(r.size) : String(r.size),
          Comment: r.comment,
        };
      });
      process.stdout.write(formatRows(shown, argv.format as string | undefined, '{{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}',
        { ID: 'IMAGE', CreatedSince: 'CREATED', CreatedAt: 'CREATED AT', CreatedBy: 'CREATED BY', Size: 'SIZE', Comment: 'COMMENT' }));
    },
  },
  {
    command: 'image <command>',
    describe: 'Manage images (prune, layers)',
    builder: (y: Argv) => y
      .command({
        command: 'prune',
        describe: 'Remove unused images: dangling ones, or with -a every image no container uses',
        builder: (yy: Argv) => yy
          .option('all', { alias: 'a', type: 'boolean', describe: 'Remove all unused images, not just dangling ones' })
          .option('filter', { type: 'string', describe: 'Provide filter values (until=DURATION|TIMESTAMP, label=KEY[=VALUE])' })
          .option('force', { alias: 'f', type: 'boolean', describe: 'Do not prompt for confirmation (never prompts)' }),
        handler: async (argv: Record<string, unknown>) => {
          const { pruneImages } = await import('../image/images.js');
          const { containerUsing } = await import('../container/containers.js');
          const { humanSize } = await import('../image/format.js');
          const root = argv.root as string;
          const r = await pruneImages(root, { all: Boolean(argv.all), filters: list(argv.filter), inUse: (t, id) => containerUsing(root, t, id) });
          if (r.untagged.length || r.deleted.length) {
            process.stdout.write('Deleted Images:\n');
            for (const u of r.untagged) process.stdout.write(`untagged: ${u}\n`);
            for (const d of r.deleted) process.stdout.write(`deleted: ${d}\n`);
            process.stdout.write('\n');
          }
          process.stdout.write(`Total reclaimed space: ${humanSize(r.freed)}\n`);
        },
      })
      .command({
        command: 'layers <image>',
        describe: 'Show every layer of an image: diff id, blob digest, sizes, and the stored images sharing it',
        builder: (yy: Argv) => yy
          .option('format', { type: 'string', coerce: last, describe: 'Format output using a custom template: "table", "json", or a Go template' })
          .option('no-trunc', { type: 'boolean', describe: "Don't truncate digests" }),
        handler: async (argv: Record<string, unknown>) => {
          const { imageLayers } = await import('../image/images.js');
          const { formatRows, humanSize } = await import('../image/format.js');
          const rows = await imageLayers(argv.root as string, argv.image as string);
          const format = argv.format as string | undefined;
          const trunc = (d: string) => (argv['no-trunc'] ? d : d.slice(0, 19));
          const shown = rows.map((r) => ({
            Platform: r.platform, DiffID: format ? r.diffID : trunc(r.diffID), Digest: format ? r.digest : trunc(r.digest), MediaType: r.mediaType,
            Size: format === 'json' ? r.size : humanSize(r.size),
            UncompressedSize: format === 'json' ? r.uncompressedSize : r.uncompressedSize === null ? 'N/A' : humanSize(r.uncompressedSize),
            SharedWith: format ? r.sharedWith : r.sharedWith.join(',') || '-',
          }));
          process.stdout.write(formatRows(shown, format, '{{.Platform}}\t{{.DiffID}}\t{{.Digest}}\t{{.Size}}\t{{.UncompressedSize}}\t{{.SharedWith}}',
            { Platform: 'PLATFORM', DiffID: 'DIFF ID', Digest: 'BLOB', Size: 'SIZE', UncompressedSize: 'UNCOMPRESSED', SharedWith: 'SHARED WITH', MediaType: 'MEDIA TYPE' }));
        },
      })
      .demandCommand(1),
    handler: () => undefined,
  },
  {
    command: 'save <image..>',
    describe: 'Save one or more images to a tar archive (docker load and skopeo read it)',
    builder: (y: Argv) => y
      .option('output', { alias: 'o', type: 'string', coerce: last, describe: 'Write to a file, instead of STDOUT' })
      .option('format', { type: 'string', coerce: last, choices: ['docker', 'oci'], default: 'docker', describe: 'Archive format: docker (OCI layout plus manifest.json) or oci (OCI layout)' })
      .option('platform', { type: 'string', coerce: last, describe: 'Save only this platform of a multi-platform image' }),
    handler: async (argv) => {
      const { saveImages } = await import('../image/transfer.js');
      const { parsePlatform } = await import('../client/platform.js');
      const output = (argv.output as string | undefined) ?? '-';
      if (output === '-' && process.stdout.isTTY) throw new UserError('USAGE', 'cowardly refusing to save to a terminal. Use the -o flag or redirect');
      await saveImages(argv.root as string, list(argv.image), {
        output, format: argv.format as 'docker' | 'oci', platform: argv.platform ? parsePlatform(argv.platform as string) : undefined,
      });
    },
  },
  {
    command: 'load',
    describe: 'Load images from a tar archive (docker-archive or OCI layout, plain or gzip) or STDIN',
    builder: (y: Argv) => y
      .option('input', { alias: 'i', type: 'string', coerce: last, describe: 'Read from tar archive file, instead of STDIN' })
      .option('quiet', { alias: 'q', type: 'boolean', describe: 'Suppress the load output' }),
    handler: async (argv) => {
      const { loadImages } = await import('../image/transfer.js');
      const input = argv.input as string | undefined;
      if (!input && process.stdin.isTTY) throw new UserError('USAGE', 'requested load from stdin, but stdin is empty');
      const loaded = await loadImages(argv.root as string, input ?? process.stdin);
      if (argv.quiet) return;
      for (const l of loaded) {
        for (const r of l.replaced) {
          const ref = parseReference(r.name);
          process.stdout.write(`The image ${ref.familiarName}:${ref.tag} already exists, renaming the old one with ID ${r.id} to empty string\n`);
        }
        if (l.names.length === 0) process.stdout.write(`Loaded image ID: ${l.id}\n`);
        for (const n of l.names) {
          const r = parseReference(n);
          process.stdout.write(`Loaded image: ${r.familiarName}${r.tag ? `:${r.tag}` : ''}\n`);
        }
      }
    },
  },
  {
    command: 'pull <name>',
    describe: 'Download an image from a registry into the local image store',
    builder: (y: Argv) => y
      .option('platform', { type: 'string', coerce: last, describe: 'Set platform if server is multi-platform capable (default: this machine\'s)' })
      .option('quiet', { alias: 'q', type: 'boolean', describe: 'Suppress verbose output' })
      .option('insecure-registry', { type: 'string', describe: 'Insecure registry: HTTPS without verification, then plain HTTP' }),
    handler: async (argv) => {
      const { pullImage } = await import('../image/transfer.js');
      const { parsePlatform, hostPlatform } = await import('../client/platform.js');
      const platform = argv.platform ? parsePlatform(argv.platform as string) : hostPlatform();
      const asked = parseReference(argv.name as string);
      if (!argv.quiet && !asked.tag && !asked.digest) process.stdout.write('Using default tag: latest\n');
      const r = await pullImage(argv.root as string, argv.name as string, platform, { insecureRegistries: list(argv['insecure-registry']) });
      const full = r.ref.toString();
      if (!argv.quiet) {
        process.stdout.write(`${r.ref.tag ?? r.ref.digest}: Pulling from ${r.ref.path}\n`);
        for (const l of r.layers) process.stdout.write(`${l.digest.slice(7, 19)}: ${l.fetched ? 'Pull complete' : 'Already exists'}\n`);
        process.stdout.write(`Digest: ${r.digest}\n`);
        const short = `${r.ref.familiarName}${r.ref.tag ? `:${r.ref.tag}` : ''}`;
        process.stdout.write(r.changed ? `Status: Downloaded newer image for ${short}\n` : `Status: Image is up to date for ${short}\n`);
      }
      process.stdout.write(`${full}\n`);
    },
  },
  {
    command: 'push <name>',
    describe: 'Upload an image from the local image store to a registry',
    builder: (y: Argv) => y
      .option('quiet', { alias: 'q', type: 'boolean', describe: 'Suppress verbose output' })
      .option('platform', { type: 'string', coerce: last, describe: 'Push a platform-specific manifest as a single-platform image (other platforms and attestations are left out)' })
      .option('insecure-registry', { type: 'string', describe: 'Insecure registry: HTTPS without verification, then plain HTTP' }),
    handler: async (argv) => {
      const { pushStoredImage } = await import('../image/transfer.js');
      const { parsePlatform } = await import('../client/platform.js');
      const quiet = Boolean(argv.quiet);
      const ref = parseReference(argv.name as string);
      if (!quiet) process.stdout.write(`The push refers to repository [${ref.name}]\n`);
      const r = await pushStoredImage(argv.root as string, argv.name as string, {
        insecureRegistries: list(argv['insecure-registry']),
        platform: argv.platform ? parsePlatform(argv.platform as string) : undefined,
        onBlob: quiet ? undefined : (d, how) => {
          if (/layer|rootfs/.test(d.mediaType)) process.stdout.write(`${d.digest.slice(7, 19)}: ${how === 'exists' ? 'Layer already exists' : how === 'mounted' ? 'Mounted from another repository' : 'Pushed'}\n`);
        },
      });
      process.stdout.write(quiet ? `${r.ref.toString()}\n` : `${r.ref.tag ?? 'latest'}: digest: ${r.digest} size: ${r.size}\n`);
    },
  },
  {
    command: 'login <server>',
    describe: 'Log in to a registry (saves credentials in the docker config)',
    builder: (y: Argv) => y
      .option('username', { alias: 'u', type: 'string', coerce: last, demandOption: true })
      .option('password', { alias: 'p', type: 'string', coerce: last })
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
          .option('format', { type: 'string', coerce: last, describe: 'Format the output using the given Go template (e.g. "{{json .Provenance}}", "{{json .SBOM}}")' }),
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
          // The blobs pass through the state directory's store, named by no record: registered as a build
          // is, so no prune or GC runs meanwhile (see src/cache/gc.ts).
          const { BuildSession } = await import('../client/lock.js');
          const root = path.resolve(argv.root as string);
          if (!argv['dry-run']) await mkdir(root, { recursive: true, mode: 0o700 });
          const session = argv['dry-run'] ? undefined : await BuildSession.start(root, async () => undefined);
          try {
            const out = await imagetoolsCreate(client, content, list(argv.source).map(parseReference), tags.map(parseReference), { dryRun: Boolean(argv['dry-run']) });
            process.stdout.write(out);
          } finally {
            await session?.end();
          }
        },
      })
      .demandCommand(1),
    handler: () => undefined,
  },
];

function rfc3339Seconds(t: string | undefined): string {
  const d = t ? new Date(t) : null;
  return d && !Number.isNaN(d.getTime()) ? d.toISOString().replace(/\.\d+Z$/, 'Z') : '';
}

/** `docker inspect` output: a JSON array (4-space indent), or the template once per object. */
async function printInspect(objects: Record<string, unknown>[], format: string | undefined): Promise<void> {
  if (!format || format === 'json') {
    process.stdout.write(JSON.stringify(objects, null, 4).replace(/[<>&]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`) + '\n');
    return;
  }
  const { compileTemplate } = await import('../image/format.js');
  const tpl = compileTemplate(format.replace(/\\n/g, '\n').replace(/\\t/g, '\t'));
  for (const o of objects) process.stdout.write(tpl(o) + '\n');
}

/** `docker login` takes a host or a URL. */
function loginHost(server: string): string {
  return server.replace(/^https?:\/\//, '').replace(/\/.*$/, '');
}

export const imageCommands = commands;

/** Subcommands of command groups, for the nearest-name suggestion of an unknown one. */
for (const c of commands) {
  if (c.command === 'image <command>') (c as { subcommands?: string[] }).subcommands = ['prune', 'layers'];
}
