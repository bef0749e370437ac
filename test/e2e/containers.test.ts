// Containers from stored images (issue 23): run with real runc containers, ps, diff (A, C and D lines as
// docker diff prints them), commit with -m and -c, the committed image run and read back with skopeo and
// umoci, rm; prune keeps a container's layers.
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs/promises';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { cliPath, lastLine, makeContext, runCli, tempDir } from '../helpers/cli.js';

const exec = promisify(execFile);
const registry = inject('registry');
const base = `${registry}/busybox:1.35`;

const dockerfile = `ARG BASE
FROM \${BASE}
COPY hello.txt /hello.txt
RUN mkdir -p /srv/old && echo old > /srv/old/f && adduser -D -u 1234 app 2>/dev/null || echo 'app:x:1234:1234::/home/app:/bin/sh' >> /etc/passwd
ENV FOO=bar
CMD ["cat", "/hello.txt"]
`;

async function cli(args: string[], opts: { stdin?: string } = {}): Promise<string> {
  const r = await runCli(args, opts);
  expect(r.code, `${args.join(' ')}\n${r.stderr}`).toBe(0);
  return r.stdout;
}

describe('container workflow', () => {
  let root: string;
  beforeAll(async () => {
    root = await tempDir('builder-root-');
    const ctx = await makeContext({ Dockerfile: dockerfile, 'hello.txt': 'hello\n' });
    await cli(['build', '--root', root, '-q', '--build-arg', `BASE=${base}`, '-t', 'app:1', ctx]);
  });

  it('run runs the image\'s command, or the one given with its flags; the exit code is the process\'s', async () => {
    expect(await cli(['run', '--root', root, '--rm', 'app:1'])).toBe('hello\n');
    const r = await runCli(['run', '--root', root, '--rm', '-e', 'X=1', '-w', '/srv', '-u', '1234', 'app:1', 'sh', '-c', 'echo $FOO $X $(pwd) $(id -u); exit 3']);
    expect(r.stdout).toBe('bar 1 /srv 1234\n');
    expect(r.code).toBe(3);
    expect(await cli(['run', '--root', root, '-i', '--rm', 'app:1', 'cat'], { stdin: 'from stdin\n' })).toBe('from stdin\n');
    const dir = await makeContext({ 'f.txt': 'mounted\n' });
    expect(await cli(['run', '--root', root, '--rm', '--mount', `type=bind,source=${dir},target=/m,readonly`, 'app:1', 'cat', '/m/f.txt'])).toBe('mounted\n');
    // --rm left nothing behind.
    expect(await cli(['ps', '--root', root, '-a', '-q'])).toBe('');
  });

  it('--privileged runs with RUN --security=insecure\'s sandbox (here: it may mount), and inspect says so', async () => {
    const mount = ['sh', '-c', 'mkdir -p /mnt/t && mount -t tmpfs none /mnt/t && echo mounted'];
    const plain = await runCli(['run', '--root', root, '--rm', 'app:1', ...mount]);
    expect(plain.code).not.toBe(0);
    expect(await cli(['run', '--root', root, '--name', 'priv', '--privileged', 'app:1', ...mount])).toBe('mounted\n');
    const [c] = JSON.parse(await cli(['inspect', '--root', root, 'priv'])) as { HostConfig: { Privileged: boolean } }[];
    expect(c.HostConfig.Privileged).toBe(true);
    await cli(['rm', '--root', root, 'priv']);
  });

  it('ps, diff, commit -m -c, and the committed image runs, with its history showing the message', async () => {
    expect(await cli(['run', '--root', root, '--name', 'c1', 'app:1', 'sh', '-c',
      'echo hi; mkdir -p /data && echo data > /data/f; echo extra >> /etc/passwd; rm /hello.txt; rm -r /srv/old'])).toBe('hi\n');
    const ps = (await cli(['ps', '--root', root, '-a'])).trimEnd().split('\n');
    expect(ps[0]).toMatch(/^CONTAINER ID\s+IMAGE\s+COMMAND\s+CREATED\s+STATUS\s+PORTS\s+NAMES$/);
    expect(ps[1]).toMatch(/^[0-9a-f]{12}\s+app:1\s+"sh -c echo hi; mkdi…"\s+.* ago\s+Exited \(0\) .* ago\s+c1$/);
    expect(await cli(['ps', '--root', root])).toMatch(/^CONTAINER ID.*\n$/); // not running: only with -a
    expect(await cli(['diff', '--root', root, 'c1'])).toBe([
      'A /data', 'A /data/f', 'C /etc', 'C /etc/passwd', 'D /hello.txt', 'C /srv', 'D /srv/old', '',
    ].join('\n'));
    const id = (await cli(['commit', '--root', root, '-a', 'Tester <t@example.com>', '-m', 'added data',
      '-c', 'CMD ["cat", "/data/f"]', '-c', 'ENV MODE=committed', '-c', 'EXPOSE 8080', '-c', 'WORKDIR /data', '-c', 'LABEL stage=two',
      'c1', 'app:committed'])).trim();
    expect(id).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(await cli(['run', '--root', root, '--rm', 'app:committed'])).toBe('data\n');
    expect(await cli(['run', '--root', root, '--rm', 'app:committed', 'sh', '-c', 'pwd; echo $MODE; test -e /hello.txt || echo gone'])).toBe('/data\ncommitted\ngone\n');
    const history = (await cli(['history', '--root', root, '--format', '{{.ID}}|{{.CreatedBy}}|{{.Comment}}', 'app:committed'])).split('\n');
    // The container's command, cut at Docker's 45 columns.
    expect(history[0]).toBe(`${id.slice(7, 19)}|sh -c echo hi; mkdir -p /data && echo data >…|added data`);
    const [img] = JSON.parse(await cli(['inspect', '--root', root, 'app:committed']));
    expect(img.Id).toBe(id);
    expect(img.Author).toBe('Tester <t@example.com>');
    expect(img.Config.Cmd).toEqual(['cat', '/data/f']);
    expect(img.Config.Env).toContain('MODE=committed');
    expect(img.Config.ExposedPorts).toEqual({ '8080/tcp': {} });
    expect(img.Config.WorkingDir).toBe('/data');
    expect(img.Config.Labels).toEqual({ stage: 'two' });
    const [base1] = JSON.parse(await cli(['inspect', '--root', root, 'app:1']));
    expect(img.RootFS.Layers.slice(0, -1)).toEqual(base1.RootFS.Layers);

    // Read back by skopeo and umoci: the new layer's whiteouts remove what the container removed.
    const out = await tempDir('builder-commit-');
    await cli(['save', '--root', root, '-o', `${out}/c.tar`, 'app:committed']);
    const cfg = JSON.parse((await exec('skopeo', ['inspect', '--config', `docker-archive:${out}/c.tar`])).stdout);
    expect(cfg.history.at(-1)).toMatchObject({ comment: 'added data', author: 'Tester <t@example.com>' });
    expect(cfg.config.Cmd).toEqual(['cat', '/data/f']);
    await exec('skopeo', ['copy', '-q', '--format', 'oci', `docker-archive:${out}/c.tar`, `oci:${out}/layout:c`]);
    await exec('umoci', ['unpack', '--image', `${out}/layout:c`, `${out}/bundle`]);
    const rootfs = path.join(out, 'bundle', 'rootfs');
    expect(await fs.readFile(path.join(rootfs, 'data/f'), 'utf8')).toBe('data\n');
    expect(await fs.access(path.join(rootfs, 'hello.txt')).then(() => true, () => false)).toBe(false);
    expect(await fs.access(path.join(rootfs, 'srv/old')).then(() => true, () => false)).toBe(false);
    expect(await fs.readFile(path.join(rootfs, 'etc/passwd'), 'utf8')).toMatch(/extra\n$/);
  });

  it('a container keeps its image and layers: rmi needs -f, prune -a leaves them; rm removes the container', async () => {
    await cli(['run', '--root', root, '--name', 'keep', 'app:1', 'touch', '/kept']);
    await cli(['tag', '--root', root, 'app:1', 'app:only']);
    await cli(['rmi', '--root', root, 'app:1']);
    const refused = await runCli(['rmi', '--root', root, 'app:only']);
    expect(refused.code).toBe(1);
    expect(lastLine(refused.stderr)).toMatch(/^ERROR: conflict: unable to remove repository reference "app:only" \(must force\) - container [0-9a-f]{12} is using its referenced image [0-9a-f]{12}$/);
    await cli(['prune', '--root', root, '-a']);
    expect(await cli(['diff', '--root', root, 'keep'])).toBe('A /kept\n');
    expect((await cli(['commit', '--root', root, 'keep'])).trim()).toMatch(/^sha256:/);
    expect(await cli(['images', '--root', root, '-f', 'dangling=true', '--format', '{{.Repository}}:{{.Tag}}'])).toBe('<none>:<none>\n');
    const missing = await runCli(['rm', '--root', root, 'keep', 'nope']);
    expect(missing.stdout).toBe('keep\n');
    expect(lastLine(missing.stderr)).toBe('ERROR: No such container: nope');
    expect(await cli(['ps', '--root', root, '-a', '--format', '{{.Names}}'])).not.toMatch(/keep/);
  });

  it('ps shows a running container; rm refuses it, rm -f stops and removes it', async () => {
    const run = spawn(process.execPath, [cliPath, 'run', '--root', root, '--name', 'long', 'app:committed', 'sleep', '1000'], { stdio: 'ignore' });
    let ended = false;
    const exited = new Promise<number | null>((resolve) => run.on('close', (code) => { ended = true; resolve(code); }));
    let listed = '';
    while (!/long/.test(listed) && !ended) listed = await cli(['ps', '--root', root, '--format', '{{.Names}} {{.State}} {{.Status}}']);
    expect(listed).toMatch(/^long running Up /m);
    const refused = await runCli(['rm', '--root', root, 'long']);
    expect(lastLine(refused.stderr)).toBe('ERROR: cannot remove container "/long": container is running: stop the container before removing or force remove');
    expect(await cli(['rm', '--root', root, '-f', 'long'])).toBe('long\n');
    expect(await exited).toBe(143); // docker run's code for a SIGTERM-stopped container
    expect(await cli(['ps', '--root', root, '-a', '--format', '{{.Names}}'])).not.toMatch(/long/);
  });

  it('-it gives the process a terminal (here a pseudo-terminal from script(1))', async () => {
    const cmd = [process.execPath, cliPath, 'run', '--root', root, '-it', '--rm', 'app:committed', 'sh']
      .map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
    const child = spawn('script', ['-qec', cmd, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let typed = false;
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      // The shell's prompt: it reads the terminal now.
      if (!typed && out.includes('/data #')) {
        typed = true;
        child.stdin.write('echo term=$TERM; tty\nexit 5\n');
      }
    });
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(out).toMatch(/term=xterm\r\n\/dev\/pts\/\d+\r\n/);
    expect(code).toBe(5);
    const notty = await runCli(['run', '--root', root, '-t', '--rm', 'app:committed', 'true']);
    expect(lastLine(notty.stderr)).toBe('ERROR: the input device is not a TTY');
  });

  it('rejects what docker rejects, in one line', async () => {
    const bad = await runCli(['commit', '--root', root, '-c', 'RUN echo no', 'c1']);
    expect(bad.code).toBe(1);
    expect(lastLine(bad.stderr)).toBe('ERROR: RUN is not a valid change command');
    const dup = await runCli(['run', '--root', root, '--name', 'c1', 'app:committed', 'true']);
    expect(lastLine(dup.stderr)).toMatch(/^ERROR: Conflict. The container name "\/c1" is already in use/);
    expect(lastLine((await runCli(['diff', '--root', root, 'nope'])).stderr)).toBe('ERROR: No such container: nope');
  });
});
