// End to end, per instruction: one real build uses nearly every instruction and flag, then the exported
// OCI image is read back with umoci (filesystem) and from the raw config blob (skopeo's --config drops
// Docker's fields such as Healthcheck and Shell). Expected config fields and history strings are those
// BuildKit writes: checked against docker 20.10's BuildKit for what it shares with today's, and against
// BuildKit's source (dockerfile2llb) where the format changed since (HEALTHCHECK, COPY flags, EXPOSE).
import { describe, it, expect, inject, beforeAll, afterAll } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import fs from 'node:fs/promises';
import path from 'node:path';
import { runCli, makeContext, tempDir, lastLine } from '../helpers/cli.js';
import { readImageManifest, umociUnpack } from '../helpers/layout.js';

const exec = promisify(execFile);
const registry = inject('registry');
const base = `${registry}/busybox:1.35`;

const REMOTE = 'remote file\n';
const REMOTE_SUM = `sha256:${createHash('sha256').update(REMOTE).digest('hex')}`;
const LAST_MODIFIED = 'Wed, 21 Oct 2015 07:28:00 GMT';

/** A local HTTP server for ADD <url>: /remote.txt with a Last-Modified date, 404 otherwise. */
async function startServer(): Promise<{ url: string; close: () => Promise<void> }> {
  const server = http.createServer((req, res) => {
    if (req.url === '/remote.txt') {
      res.writeHead(200, { 'Last-Modified': LAST_MODIFIED, 'Content-Type': 'text/plain' });
      res.end(REMOTE);
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

/** The image config blob as written, from an OCI layout tar. */
async function rawConfig(tarFile: string): Promise<any> {
  const dir = await tempDir('builder-layout-');
  await exec('tar', ['-xf', tarFile, '-C', dir]);
  const blob = (d: string) => fs.readFile(path.join(dir, 'blobs/sha256', d.replace('sha256:', '')), 'utf8');
  const manifest = await readImageManifest(dir);
  return JSON.parse(await blob(manifest.config.digest));
}

async function unpack(tarFile: string, tag: string): Promise<string> {
  const dir = await tempDir('builder-unpack-');
  await fs.mkdir(path.join(dir, 'layout'));
  await exec('tar', ['-xf', tarFile, '-C', path.join(dir, 'layout')]);
  await umociUnpack(path.join(dir, 'layout'), tag, path.join(dir, 'bundle'));
  return path.join(dir, 'bundle', 'rootfs');
}

const dockerfile = (url: string) => `# syntax=docker/dockerfile:1
ARG BASE
FROM \${BASE} AS base
ONBUILD RUN echo onbuild > /onbuild.txt
ONBUILD ENV FROM_ONBUILD=1

FROM base
ARG TARGETARCH
ARG VERSION=1.0
LABEL org.example.version=$VERSION "other label"=yes
MAINTAINER someone@example.com
ENV A=1 B="two words"
ENV C 3
EXPOSE 80 443/tcp 53/udp 8000-8002
WORKDIR /app
WORKDIR sub
USER 1000:1000
USER root
ADD plain.tar /plain/
ADD gz.tgz bz.tar.bz2 xz.txz /multi/
ADD notar.gz /files/
ADD --unpack=false plain.tar /nounpack/
ADD --checksum=${REMOTE_SUM} ${url}/remote.txt /remote/
ADD --link --exclude=*.txt t/ /addlink/
COPY --chown=1:1 --chmod=0640 f.txt /owned.txt
COPY --chmod=u+x,g-r,o= f.txt /sym.txt
COPY --parents src/./a/b/c.txt src/d/e.txt /parents/
COPY --exclude=*.log --exclude=**/*.tmp src/ /ex/
COPY --link f.txt /linked/
COPY <<EOT /heredoc.txt
version $VERSION
EOT
RUN <<EOF
echo "$TARGETARCH $VERSION" > /args.txt
env | grep -i _proxy | sort > /proxy.txt
EOF
SHELL ["/bin/sh", "-ec"]
RUN echo shell > /shell.txt
RUN <<EOT
#!/bin/sh
echo "shebang $0" > /shebang.txt
EOT
HEALTHCHECK --interval=30s --timeout=5s --start-period=1m30s --retries=3 CMD wget -q -O- http://localhost/ || exit 1
STOPSIGNAL SIGUSR1
VOLUME /data
VOLUME ["/var/log", "/cache"]
ENTRYPOINT ["/bin/echo"]
CMD ["hello"]
`;

describe('every instruction, end to end', () => {
  let server: Awaited<ReturnType<typeof startServer>>;
  let root: string;
  let result: Awaited<ReturnType<typeof runCli>>;
  let rootfs: string;
  let config: any;

  beforeAll(async () => {
    server = await startServer();
    root = await tempDir('builder-root-instr-');
    const out = await tempDir('builder-out-instr-');
    const ctx = await makeContext({
      Dockerfile: dockerfile(server.url),
      'f.txt': 'file\n',
      't/one.txt': 'one\n', 't/sub/two.txt': 'two\n', 't/g.txt': 'g\n', 't/b.txt': 'b\n', 't/x.txt': 'x\n',
      'src/a/b/c.txt': 'c\n', 'src/d/e.txt': 'e\n', 'src/top.log': 'log\n', 'src/a/skip.log': 'nested log\n', 'src/a/x.tmp': 'tmp\n',
    });
    await fs.chmod(path.join(ctx, 'f.txt'), 0o644);
    const t = path.join(ctx, 't');
    await exec('tar', ['-cf', path.join(ctx, 'plain.tar'), '-C', t, 'one.txt', 'sub']);
    await exec('tar', ['-czf', path.join(ctx, 'gz.tgz'), '-C', t, 'g.txt']);
    await exec('tar', ['-cjf', path.join(ctx, 'bz.tar.bz2'), '-C', t, 'b.txt']);
    await exec('tar', ['-cJf', path.join(ctx, 'xz.txz'), '-C', t, 'x.txt']);
    await exec('sh', ['-c', `printf 'not a tar\\n' | gzip > ${path.join(ctx, 'notar.gz')}`]);
    result = await runCli(['build', '--root', root, '--progress', 'plain', '--build-arg', `BASE=${base}`,
      '--build-arg', 'HTTP_PROXY=http://proxy.invalid:3128', '--build-arg', 'no_proxy=localhost',
      '-t', 'example.com/instr:1', '--output', `type=oci,dest=${out}/image.tar`, ctx]);
    if (result.code === 0) {
      rootfs = await unpack(`${out}/image.tar`, '1');
      config = await rawConfig(`${out}/image.tar`);
    }
  });
  afterAll(async () => server?.close());

  it('builds, showing the syntax directive it accepts', () => {
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toContain('[internal] syntax docker/dockerfile:1: using the built-in Dockerfile frontend');
  });

  it('writes the config fields as BuildKit does', () => {
    const c = config.config;
    expect(c.Env).toEqual(['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'FROM_ONBUILD=1', 'A=1', 'B=two words', 'C=3']);
    expect(Object.keys(c.ExposedPorts).sort()).toEqual(['443/tcp', '53/udp', '80/tcp', '8000/tcp', '8001/tcp', '8002/tcp']);
    expect(c.Healthcheck).toEqual({
      Test: ['CMD-SHELL', 'wget -q -O- http://localhost/ || exit 1'], Interval: 30e9, Timeout: 5e9, StartPeriod: 90e9, Retries: 3,
    });
    expect(c.Labels).toEqual({ 'org.example.version': '1.0', 'other label': 'yes' });
    expect(c.StopSignal).toBe('SIGUSR1');
    expect(c.User).toBe('root');
    expect(c.WorkingDir).toBe('/app/sub');
    expect(c.Volumes).toEqual({ '/data': {}, '/var/log': {}, '/cache': {} });
    expect(c.Shell).toEqual(['/bin/sh', '-ec']);
    expect(c.Entrypoint).toEqual(['/bin/echo']);
    expect(c.Cmd).toEqual(['hello']);
    expect(c.ArgsEscaped).toBe(true);
    expect(c.OnBuild ?? null).toBeNull();
    expect(config.author).toBe('someone@example.com');
  });

  it('writes history created_by strings as BuildKit does', () => {
    const own = config.history.slice(2).map((h: any) => h.created_by);
    const url = server.url;
    expect(own).toEqual([
      'RUN /bin/sh -c echo onbuild > /onbuild.txt # buildkit',
      'ENV FROM_ONBUILD=1',
      'ARG TARGETARCH=amd64',
      'ARG VERSION=1.0',
      'LABEL org.example.version=1.0 other label=yes',
      'MAINTAINER someone@example.com',
      'ENV A=1 B=two words',
      'ENV C=3',
      'EXPOSE [443/tcp 53/udp 80/tcp 8000/tcp 8001/tcp 8002/tcp]',
      'WORKDIR /app',
      'WORKDIR /app/sub',
      'USER 1000:1000',
      'USER root',
      'ADD plain.tar /plain/ # buildkit',
      'ADD gz.tgz bz.tar.bz2 xz.txz /multi/ # buildkit',
      'ADD notar.gz /files/ # buildkit',
      'ADD plain.tar /nounpack/ # buildkit',
      `ADD ${url}/remote.txt /remote/ # buildkit`,
      'ADD t/ /addlink/ # buildkit',
      'COPY --chown=1:1 --chmod=0640 f.txt /owned.txt # buildkit',
      'COPY --chmod=u+x,g-r,o= f.txt /sym.txt # buildkit',
      'COPY --parents src/./a/b/c.txt src/d/e.txt /parents/ # buildkit',
      'COPY src/ /ex/ # buildkit',
      'COPY f.txt /linked/ # buildkit',
      'COPY <<EOT /heredoc.txt # buildkit',
      'RUN |2 TARGETARCH=amd64 VERSION=1.0 /bin/sh -c echo "$TARGETARCH $VERSION" > /args.txt\nenv | grep -i _proxy | sort > /proxy.txt\n # buildkit',
      'SHELL [/bin/sh -ec]',
      'RUN |2 TARGETARCH=amd64 VERSION=1.0 /bin/sh -ec echo shell > /shell.txt # buildkit',
      'RUN |2 TARGETARCH=amd64 VERSION=1.0 /bin/sh -ec /dev/pipes/EOT # buildkit',
      'HEALTHCHECK {Test:[CMD-SHELL wget -q -O- http://localhost/ || exit 1] Interval:30s Timeout:5s StartPeriod:1m30s StartInterval:0s Retries:3}',
      'STOPSIGNAL SIGUSR1',
      'VOLUME [/data]',
      'VOLUME [/var/log /cache]',
      'ENTRYPOINT ["/bin/echo"]',
      'CMD ["hello"]',
    ]);
    expect(config.history.every((h: any, i: number) => i < 2 || h.comment === 'buildkit.dockerfile.v0')).toBe(true);
  });

  const read = (p: string) => fs.readFile(path.join(rootfs, p), 'utf8');
  const exists = (p: string) => fs.lstat(path.join(rootfs, p)).then(() => true, () => false);

  it('ADD extracts local archives detected by content (plain, gzip, bzip2, xz), not other files', async () => {
    expect(await read('plain/one.txt')).toBe('one\n');
    expect(await read('plain/sub/two.txt')).toBe('two\n');
    expect(await read('multi/g.txt')).toBe('g\n');
    expect(await read('multi/b.txt')).toBe('b\n');
    expect(await read('multi/x.txt')).toBe('x\n');
    expect(await exists('files/notar.gz')).toBe(true);
    expect(await exists('nounpack/plain.tar')).toBe(true);
    expect(await exists('nounpack/one.txt')).toBe(false);
    // --link and --exclude: a layer of its own, top-level *.txt left out.
    expect(await read('addlink/sub/two.txt')).toBe('two\n');
    expect(await exists('addlink/one.txt')).toBe(false);
  });

  it('ADD <url> downloads the file, checks --checksum, mode 0600 and Last-Modified as mtime', async () => {
    expect(await read('remote/remote.txt')).toBe(REMOTE);
    const st = await fs.stat(path.join(rootfs, 'remote/remote.txt'));
    expect(st.mode & 0o7777).toBe(0o600);
    expect(st.mtimeMs).toBe(Date.parse(LAST_MODIFIED));
  });

  it('COPY --chown, --chmod (octal and symbolic), --parents, --exclude, --link and heredocs', async () => {
    const owned = await fs.stat(path.join(rootfs, 'owned.txt'));
    expect([owned.uid, owned.gid, owned.mode & 0o7777]).toEqual([1, 1, 0o640]);
    expect((await fs.stat(path.join(rootfs, 'sym.txt'))).mode & 0o7777).toBe(0o700);
    expect(await read('parents/a/b/c.txt')).toBe('c\n');
    expect(await read('parents/src/d/e.txt')).toBe('e\n');
    expect(await exists('ex/top.log')).toBe(false);
    expect(await exists('ex/a/x.tmp')).toBe(false);
    expect(await read('ex/a/skip.log')).toBe('nested log\n');
    expect(await read('ex/a/b/c.txt')).toBe('c\n');
    expect(await read('linked/f.txt')).toBe('file\n');
    expect(await read('heredoc.txt')).toBe('version 1.0\n');
  });

  it('RUN heredocs, automatic platform ARGs, proxy args in the environment, ONBUILD, SHELL', async () => {
    expect(await read('args.txt')).toBe('amd64 1.0\n');
    expect((await read('proxy.txt')).split('\n').filter(Boolean))
      .toEqual(['HTTP_PROXY=http://proxy.invalid:3128', 'NO_PROXY=localhost', 'http_proxy=http://proxy.invalid:3128', 'no_proxy=localhost']);
    expect(await read('onbuild.txt')).toBe('onbuild\n');
    expect(await read('shell.txt')).toBe('shell\n');
    // A heredoc with #! runs as a script mounted at /dev/pipes/, which stays out of the image.
    expect(await read('shebang.txt')).toBe('shebang /dev/pipes/EOT\n');
    expect(await exists('dev/pipes')).toBe(false);
    // The proxy never reaches the image.
    expect(config.config.Env.some((e: string) => /proxy/i.test(e))).toBe(false);
  });
});

describe('.dockerignore', () => {
  let root: string;
  beforeAll(async () => {
    root = await tempDir('builder-root-ignore-');
  });

  const files = {
    'keep.txt': 'k\n', 'notes.md': 'md\n', 'docs/deep/x.md': 'md\n', 'build/out.bin': 'bin\n', 'build/keep.me': 'me\n',
    'cache/a/b.tmp': 'tmp\n', 'cache/a/c.txt': 'c\n', '  spaced.txt': 's\n',
  };
  async function listing(ctx: string, extra: string[] = []): Promise<string[]> {
    const dest = await tempDir('builder-ignore-out-');
    const res = await runCli(['build', '--root', root, '-o', dest, ...extra, ctx]);
    expect(res.code, res.stderr).toBe(0);
    const out = (await exec('find', ['.', '-type', 'f'], { cwd: dest })).stdout;
    return out.split('\n').filter(Boolean).map((l) => l.slice(2)).sort();
  }

  it('follows Docker\'s patterns: **, ! exceptions, comments only at line start, leading /', async () => {
    const ctx = await makeContext({
      ...files,
      Dockerfile: 'FROM scratch\nCOPY . /\n',
      '.dockerignore': '\uFEFF# a comment\n**/*.md\n/build\n!build/keep.me\ncache/**/*.tmp\n  #notacomment\nDockerfile\n',
    });
    expect(await listing(ctx)).toEqual(['  spaced.txt', '.dockerignore', 'build/keep.me', 'cache/a/c.txt', 'keep.txt']);
  });

  it('re-includes an exception inside an excluded directory at any depth (**)', async () => {
    // As today's BuildKit (fsutil's filter walks into an excluded directory when an exception with a
    // wildcard may match below it); docker 20.10's older BuildKit drops a/b/node_modules/keep.js.
    const ctx = await makeContext({
      'a/b/node_modules/other.js': 'o\n', 'a/b/node_modules/keep.js': 'k\n', 'node_modules/root.js': 'r\n', 'node_modules/keep.js': 'k\n',
      'a/src.js': 's\n', Dockerfile: 'FROM scratch\nCOPY . /\n', '.dockerignore': '**/node_modules\n!**/node_modules/keep.js\nDockerfile\n',
    });
    expect(await listing(ctx)).toEqual(['.dockerignore', 'a/b/node_modules/keep.js', 'a/src.js', 'node_modules/keep.js']);
  });

  it('prefers <Dockerfile>.dockerignore beside a named Dockerfile', async () => {
    const ctx = await makeContext({
      ...files,
      'df/app.Dockerfile': 'FROM scratch\nCOPY . /\n',
      'df/app.Dockerfile.dockerignore': 'build\ncache\ndf\n',
      '.dockerignore': '*.txt\n',
    });
    expect(await listing(ctx, ['-f', path.join(ctx, 'df/app.Dockerfile')]))
      .toEqual(['  spaced.txt', '.dockerignore', 'docs/deep/x.md', 'keep.txt', 'notes.md']);
  });
});

describe('errors that help', () => {
  let root: string;
  let server: Awaited<ReturnType<typeof startServer>>;
  beforeAll(async () => {
    root = await tempDir('builder-root-errs-');
    server = await startServer();
  });
  afterAll(async () => server?.close());

  const cases = (url: string): { name: string; dockerfile: string; line: number; message: string | RegExp }[] => [
    { name: 'a mistyped instruction', dockerfile: 'FROM scratch\nRUNN echo\n', line: 2, message: 'unknown instruction: RUNN (did you mean RUN?)' },
    { name: 'an unknown flag', dockerfile: 'FROM scratch\nCOPY --chmode=644 a /\n', line: 2, message: 'unknown flag: --chmode (did you mean chmod?)' },
    { name: 'SHELL not in JSON form', dockerfile: 'FROM scratch\nSHELL /bin/bash -c\n', line: 2, message: 'SHELL requires the arguments to be in JSON form' },
    { name: 'a --from cycle', dockerfile: 'FROM scratch AS a\nCOPY --from=b /x /x\nFROM scratch AS b\nCOPY --from=a /x /x\n', line: 1, message: 'circular dependency detected on stage: a' },
    { name: 'an unset ${V:?msg}', dockerfile: 'FROM scratch\nENV X=1\nCOPY ${SRC:?required} /\n', line: 3, message: 'failed to process "${SRC:?required}": SRC: required' },
    { name: 'a git repository that is not there', dockerfile: `FROM scratch\nADD ${url}/repo.git /src\n`, line: 2, message: /ADD failed: failed to fetch http:\/\/127\.0\.0\.1:\d+\/repo\.git: .+/ },
    { name: 'a git checksum that is no commit id', dockerfile: `FROM scratch\nADD --checksum=sha256:${'0'.repeat(64)} ${url}/repo.git /src\n`, line: 2, message: /invalid checksum sha256:0+: expected a git commit id/ },
    { name: 'a checksum on a local source', dockerfile: 'FROM scratch\nADD --checksum=sha256:0000 a /\n', line: 2, message: 'checksum requires HTTP(S) or Git sources' },
    { name: 'a bad symbolic chmod', dockerfile: 'FROM scratch\nCOPY --chmod=u+q a /\n', line: 2, message: /invalid chmod parameter: 'u\+q'/ },
    { name: 'a checksum mismatch', dockerfile: `FROM scratch\nADD --checksum=sha256:${'0'.repeat(64)} ${url}/remote.txt /\n`, line: 2,
      message: `ADD failed: digest mismatch for ${url}/remote.txt: ${REMOTE_SUM} (expected: sha256:${'0'.repeat(64)})` },
    { name: 'a URL that is not there', dockerfile: `FROM scratch\nADD ${url}/missing.txt /\n`, line: 2, message: 'ADD failed: invalid response status 404' },
  ];

  it('reports each on one line naming the Dockerfile line, exit code 1', async () => {
    for (const c of cases(server.url)) {
      const ctx = await makeContext({ Dockerfile: c.dockerfile, a: 'a\n' });
      const res = await runCli(['build', '--root', root, '--progress', 'plain', ctx]);
      expect(res.code, `${c.name}: ${res.stderr}`).toBe(1);
      const line = lastLine(res.stderr);
      const prefix = `ERROR: Dockerfile:${c.line}: `;
      expect(line.startsWith(prefix), `${c.name}: ${line}`).toBe(true);
      if (typeof c.message === 'string') expect(line.slice(prefix.length), c.name).toBe(c.message);
      else expect(line, c.name).toMatch(c.message);
      expect(res.stderr, c.name).not.toMatch(/\n\s+at .*:\d+:\d+\)?\n/);
    }
  });
});

describe('build checks on the command line', () => {
  let root: string;
  beforeAll(async () => {
    root = await tempDir('builder-root-check-');
  });
  const dockerfile = () => `FROM ${base} as base\nMAINTAINER me\n\nFROM base\nENV foo bar\nCMD echo hi\n`;

  it('--check reports every warning with its rule, URL, description and lines; exit code 1', async () => {
    const ctx = await makeContext({ Dockerfile: dockerfile() });
    const res = await runCli(['build', '--root', root, '--check', ctx]);
    expect(res.code, res.stderr).toBe(1);
    const out = res.stdout.split('\n');
    expect(out[0]).toBe('Check complete, 4 warnings have been found!');
    expect(out.filter((l) => l.startsWith('WARNING: '))).toEqual([
      'WARNING: FromAsCasing - https://docs.docker.com/go/dockerfile/rule/from-as-casing/',
      'WARNING: MaintainerDeprecated - https://docs.docker.com/go/dockerfile/rule/maintainer-deprecated/',
      'WARNING: LegacyKeyValueFormat - https://docs.docker.com/go/dockerfile/rule/legacy-key-value-format/',
      'WARNING: JSONArgsRecommended - https://docs.docker.com/go/dockerfile/rule/json-args-recommended/',
    ]);
    expect(res.stdout).toContain('JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals\nDockerfile:6\n--------------------\n   4 |     FROM base\n   5 |     ENV foo bar\n   6 | >>> CMD echo hi\n');
  });

  it('a clean Dockerfile passes --check', async () => {
    const res = await runCli(['build', '--root', root, '--check', await makeContext({ Dockerfile: `FROM ${base}\nCMD ["true"]\n` })]);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toBe('Check complete, no warnings found.\n');
  });

  it('a normal build prints the warnings and succeeds; check=error=true fails it', async () => {
    const ok = await runCli(['build', '--root', root, await makeContext({ Dockerfile: dockerfile() })]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stderr).toContain(' 4 warnings found:\n - FromAsCasing: \'as\' and \'FROM\' keywords\' casing do not match (line 1)\n');
    const failed = await runCli(['build', '--root', root, await makeContext({ Dockerfile: `# check=error=true\n${dockerfile()}` })]);
    expect(failed.code).toBe(1);
    expect(lastLine(failed.stderr)).toBe('ERROR: lint violation found for rules: FromAsCasing, MaintainerDeprecated, LegacyKeyValueFormat, JSONArgsRecommended');
  });

  it('an error shows the Dockerfile lines at fault above the one-line message', async () => {
    const res = await runCli(['build', '--root', root, await makeContext({ Dockerfile: 'FROM scratch\nENV A=1\nRUNN x\nENV B=2\n' })]);
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('Dockerfile:3\n--------------------\n   1 |     FROM scratch\n   2 |     ENV A=1\n   3 | >>> RUNN x\n   4 |     ENV B=2\n');
    expect(lastLine(res.stderr)).toBe('ERROR: Dockerfile:3: unknown instruction: RUNN (did you mean RUN?)');
  });
});

describe('ownership of context files and archives', () => {
  it('context files are root\'s; ADD keeps an archive\'s owners unless --chown', async () => {
    const root = await tempDir('builder-root-own-');
    const ctx = await makeContext({ Dockerfile: 'FROM scratch\nCOPY f.txt /f.txt\nADD a.tar /x/\nADD --chown=1:2 a.tar /y/\n', 'f.txt': 'f\n', 't/one.txt': 'one\n' });
    await exec('tar', ['--owner=5', '--group=6', '-cf', path.join(ctx, 'a.tar'), '-C', path.join(ctx, 't'), 'one.txt']);
    await fs.chown(path.join(ctx, 'f.txt'), 1234, 1234);
    const dest = await tempDir('builder-own-out-');
    const res = await runCli(['build', '--root', root, '-o', dest, ctx]);
    expect(res.code, res.stderr).toBe(0);
    const owner = async (p: string) => { const st = await fs.lstat(path.join(dest, p)); return [st.uid, st.gid]; };
    expect(await owner('f.txt')).toEqual([0, 0]);
    expect(await owner('x/one.txt')).toEqual([5, 6]);
    expect(await owner('y/one.txt')).toEqual([1, 2]);
  });
});
