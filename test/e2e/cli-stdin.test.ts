// `builder build -` and `-f -`: a Dockerfile or a context tar (plain or compressed, told apart by content) on
// standard input, as buildx reads them; and nothing is ever built from a place the user did not name.
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs/promises';
import path from 'node:path';
import zlib from 'node:zlib';
import { cliPath, lastLine, makeContext, runCli, tempDir } from '../helpers/cli.js';

const exec = promisify(execFile);
const registry = inject('registry');
const base = `${registry}/busybox:1.35`;

/** A tar of a directory's files, made by GNU tar; compressed with the named tool when asked. */
async function tarOf(dir: string, compress?: 'gzip' | 'zstd' | 'xz' | 'bzip2'): Promise<Buffer> {
  const out = await tempDir('builder-tar-');
  const file = path.join(out, 'ctx.tar');
  await exec('tar', ['-c', '-f', file, '-C', dir, '.']);
  if (!compress) return fs.readFile(file);
  if (compress === 'gzip') return zlib.gzipSync(await fs.readFile(file));
  await exec(compress, ['-q', '-k', file]);
  return fs.readFile(`${file}.${{ zstd: 'zst', xz: 'xz', bzip2: 'bz2' }[compress]}`);
}

describe('build from stdin', () => {
  let root: string;
  // The working directory holds a Dockerfile and files of its own: a build that silently used it would show.
  let cwd: string;
  beforeAll(async () => {
    root = await tempDir('builder-root-');
    cwd = await makeContext({ Dockerfile: `FROM ${base}\nRUN echo from-cwd > /which\n`, 'hello.txt': 'cwd\n' });
  });
  const build = async (args: string[], stdin?: string | Buffer) => {
    const dest = await tempDir('builder-out-');
    const r = await runCli(['build', '--root', root, '--progress', 'plain', '-o', `type=local,dest=${dest}`, ...args], { cwd, stdin });
    return { ...r, dest };
  };

  it('`-` with a Dockerfile builds it with an empty context (not the working directory)', async () => {
    const r = await build(['-'], `FROM ${base}\nRUN echo from-stdin > /which\n`);
    expect(r.code, r.stderr).toBe(0);
    expect(await fs.readFile(path.join(r.dest, 'which'), 'utf8')).toBe('from-stdin\n');
    expect(r.stderr).toContain('load build definition from Dockerfile');
    // The context is empty: the working directory's files are not in it.
    const copy = await build(['-'], `FROM ${base}\nCOPY hello.txt /\n`);
    expect(copy.code).toBe(1);
    expect(lastLine(copy.stderr)).toMatch(/^ERROR: Dockerfile:2: COPY failed: .*hello\.txt.*not found/);
  });

  it('`-o - -`: the Dockerfile from stdin, the filesystem tar to stdout (the first `-` is the flag\'s value)', async () => {
    const r = await runCli(['build', '--root', root, '--progress', 'none', '-o', '-', '-'],
      { cwd, stdin: 'FROM scratch\nCOPY <<EOF /which\nfrom-stdin\nEOF\n' });
    expect(r.code, r.stderr).toBe(0);
    // All ASCII: the tar's bytes survive the helper's text decoding.
    const out = await tempDir('builder-out-');
    await fs.writeFile(path.join(out, 'fs.tar'), Buffer.from(r.stdout, 'latin1'));
    await exec('tar', ['-x', '-f', path.join(out, 'fs.tar'), '-C', out]);
    expect(await fs.readFile(path.join(out, 'which'), 'utf8')).toBe('from-stdin\n');
  });

  for (const compress of [undefined, 'gzip', 'zstd', 'xz', 'bzip2'] as const) {
    it(`\`-\` with a ${compress ?? 'plain'} tar uses it as the context, with its Dockerfile inside`, async () => {
      const ctx = await makeContext({ Dockerfile: `FROM ${base}\nCOPY hello.txt /copied.txt\n`, 'hello.txt': `in the ${compress ?? 'plain'} tar\n` });
      const r = await build(['-'], await tarOf(ctx, compress));
      expect(r.code, r.stderr).toBe(0);
      expect(await fs.readFile(path.join(r.dest, 'copied.txt'), 'utf8')).toBe(`in the ${compress ?? 'plain'} tar\n`);
    });
  }

  it('`-f` with a tar on stdin names a Dockerfile inside the archive', async () => {
    const ctx = await makeContext({
      'docker/build.Dockerfile': `FROM ${base}\nCOPY hello.txt /named.txt\n`, Dockerfile: 'FROM scratch\nCOPY nothing /\n', 'hello.txt': 'named\n',
    });
    const r = await build(['-f', 'docker/build.Dockerfile', '-'], await tarOf(ctx, 'gzip'));
    expect(r.code, r.stderr).toBe(0);
    expect(await fs.readFile(path.join(r.dest, 'named.txt'), 'utf8')).toBe('named\n');
  });

  it('a tar without the Dockerfile names it inside the archive, as BuildKit (not a temporary directory)', async () => {
    const ctx = await makeContext({ 'hello.txt': 'hi\n' });
    const none = await build(['-'], await tarOf(ctx, 'gzip'));
    expect(none.code).toBe(1);
    expect(lastLine(none.stderr)).toBe('ERROR: failed to read dockerfile: open Dockerfile: no such file or directory');
    const named = await build(['-f', 'docker/app.Dockerfile', '-'], await tarOf(ctx));
    expect(named.code).toBe(1);
    expect(lastLine(named.stderr)).toBe('ERROR: failed to read dockerfile: open docker/app.Dockerfile: no such file or directory');
  });

  it('`-f -` reads the Dockerfile from stdin and takes the context from the directory', async () => {
    // The directory's Dockerfile.dockerignore belongs to its own Dockerfile, not to the one on stdin.
    const ctx = await makeContext({
      Dockerfile: 'FROM scratch\nCOPY nothing /\n', 'Dockerfile.dockerignore': 'hello.txt\n',
      'hello.txt': 'from the dir\n', '.dockerignore': 'secret.txt\n', 'secret.txt': 's\n',
    });
    const r = await build(['-f', '-', ctx], `FROM ${base}\nCOPY hello.txt /copied.txt\nCOPY . /all/\n`);
    expect(r.code, r.stderr).toBe(0);
    expect(await fs.readFile(path.join(r.dest, 'copied.txt'), 'utf8')).toBe('from the dir\n');
    // The context's .dockerignore still applies.
    expect(await fs.readdir(path.join(r.dest, 'all'))).not.toContain('secret.txt');
    // An error names the Dockerfile as BuildKit does for stdin: "Dockerfile".
    const bad = await build(['-f', '-', ctx], `FROM ${base}\nCOPY missing.txt /\n`);
    expect(bad.code).toBe(1);
    expect(lastLine(bad.stderr)).toMatch(/^ERROR: Dockerfile:2: COPY failed: .*missing\.txt.*not found/);
  });

  it('refuses what buildx refuses, in one line', async () => {
    const both = await build(['-f', '-', '-'], 'FROM scratch\n');
    expect(both.code).toBe(1);
    expect(both.stderr).toBe("ERROR: invalid argument: can't use stdin for both build context and dockerfile\n");
    const ambiguous = await build(['-f', 'Dockerfile', '-'], 'FROM scratch\n');
    expect(ambiguous.code).toBe(1);
    expect(ambiguous.stderr).toBe('ERROR: ambiguous Dockerfile source: both stdin and flag correspond to Dockerfiles\n');
    const empty = await build(['-'], '');
    expect(empty.code).toBe(1);
    expect(empty.stderr).toBe('ERROR: unable to prepare context: standard input is empty (expected a Dockerfile or a context tar)\n');
    const corrupt = await build(['-'], Buffer.concat([Buffer.from([0x1f, 0x8b, 0x08]), Buffer.alloc(100, 7)]));
    expect(corrupt.code).toBe(1);
    expect(lastLine(corrupt.stderr)).toMatch(/^ERROR: unable to prepare context: not a readable tar stream: /);
  });

  // As a Dockerfile read from a file (16 MiB + 1 byte, enough for the frontend to name the line past its
  // limit): an endless stream on stdin is not read into memory until the process dies.
  for (const args of [['-'], ['-f', '-', '.']]) {
    it(`\`${args.join(' ')}\` reads no more of a Dockerfile on stdin than the frontend's limit`, async () => {
      const child = spawn(process.execPath, [cliPath, 'build', '--root', root, '--progress', 'plain', ...args], { cwd, stdio: ['pipe', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d) => (stderr += d));
      const closed = new Promise<number | null>((r) => child.on('close', r));
      // Up to 128 MiB of Dockerfile lines unless the command stops reading first (the pipe then breaks).
      const line = Buffer.from('RUN true\n'.repeat(1 << 16));
      let written = 0;
      child.stdin.on('error', () => undefined);
      const feeding = (async () => {
        child.stdin.write('FROM scratch\n');
        while (written < 128 << 20 && !child.stdin.destroyed) {
          written += line.length;
          if (!child.stdin.write(line)) await new Promise((r) => { child.stdin.once('drain', r); child.stdin.once('close', r); });
        }
        child.stdin.end();
      })();
      const code = await closed;
      await feeding;
      expect(code).toBe(1);
      expect(lastLine(stderr)).toMatch(/^ERROR: Dockerfile:\d+: Dockerfile is larger than the limit of 16 MiB$/);
      expect(written).toBeLessThan(64 << 20);
    });
  }

  it('a context path that does not exist, or an empty one, is an error, never the working directory', async () => {
    const missing = await build(['no-such-dir']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe('ERROR: unable to prepare context: path "no-such-dir" not found\n');
    const empty = await build(['']);
    expect(empty.code).toBe(1);
    expect(empty.stderr).toBe('ERROR: please specify build context (e.g. "." for the current directory)\n');
    // A git address is a remote context (fetched; here nothing listens there): one line, never a local path.
    const url = await build(['git://127.0.0.1:1/none.git']);
    expect(url.code).toBe(1);
    expect(lastLine(url.stderr)).toMatch(/^ERROR: failed to fetch git:\/\/127\.0\.0\.1:1\/none\.git: .*unable to connect/);
  });
});
