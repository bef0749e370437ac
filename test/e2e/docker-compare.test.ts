// Issue 23's acceptance against Docker itself: an image built here, tagged and saved, is loaded into a
// private dockerd (Debian's docker.io, started by test/helpers/dockerd.ts on its own socket and data root),
// run there, and `docker inspect`, `docker history` and `docker images` of it are compared field by field and
// row by row with ours.
//
// Fields of dockerd 20.10's inspect output left out here, following current Docker (moby):
// - Container, ContainerConfig: dropped from the API in 1.45 (they described the build container).
// - VirtualSize: dropped in API 1.44; it equalled Size (checked below).
// - GraphDriver: the daemon's storage driver and its directories, nothing of the image.
// - Metadata.LastTagTime: ours is when a name was last given (here by build -t); dockerd leaves it unset for
//   a loaded image (checked below).
// Ours has Descriptor (the manifest), which current Docker prints with its containerd image store.
import { execFile } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { makeContext, runCli, tempDir } from '../helpers/cli.js';
import { startDockerd, type TestDockerd } from '../helpers/dockerd.js';

const registry = inject('registry');
const base = `${registry}/busybox:1.35`;

// A symlink, a hard link, a deleted base file (whiteout), a file, a directory: every kind the size counts
// differently; metadata-only instructions for 0B rows.
const dockerfile = `ARG BASE
FROM \${BASE}
COPY hello.txt /hello.txt
RUN echo built > /built.txt && ln -s /bin/busybox /lnk && ln /built.txt /again.txt && rm /bin/ls && mkdir -p /d/e
ENV FOO=bar
LABEL org.example.k=v
WORKDIR /d
EXPOSE 8080/tcp
USER 0:0
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /hello.txt /built.txt; ls /lnk"]
`;

async function cli(args: string[]): Promise<string> {
  const r = await runCli(args);
  expect(r.code, `${args.join(' ')}\n${r.stderr}`).toBe(0);
  return r.stdout;
}

const LEFT_OUT = new Set(['Container', 'ContainerConfig', 'VirtualSize', 'GraphDriver', 'Metadata']);

describe('against docker (a private dockerd)', () => {
  let dockerd: TestDockerd;
  let root: string;
  let archive: string;
  let id: string;

  beforeAll(async () => {
    dockerd = await startDockerd({ reach: [registry] });
    root = await tempDir('builder-root-');
    const ctx = await makeContext({ Dockerfile: dockerfile, 'hello.txt': 'hello\n' });
    id = (await cli(['build', '--root', root, '-q', '--build-arg', `BASE=${base}`, '-t', 'app:1', ctx])).trim();
    // Tag, then save the new name: docker gets the image under it.
    await cli(['tag', '--root', root, 'app:1', 'example.com/team/app:v2']);
    archive = `${await tempDir('builder-save-')}/app.tar`;
    await cli(['save', '--root', root, '-o', archive, 'example.com/team/app:v2']);
    await dockerd.docker(['load', '-i', archive]);
    // Docker got the image under the saved name only: so do we keep it, for RepoTags to compare.
    expect(await cli(['rmi', '--root', root, 'app:1'])).toBe('Untagged: app:1\n');
  });

  afterAll(async () => {
    await dockerd?.stop();
  });

  it('tag, save, docker load, docker run --network none: the loaded image runs', async () => {
    const { stdout } = await dockerd.docker(['run', '--rm', '--network', 'none', 'example.com/team/app:v2']);
    expect(stdout).toBe('hello\nbuilt\n/lnk\n');
    const { stdout: ids } = await dockerd.docker(['images', '--no-trunc', '-q', 'example.com/team/app:v2']);
    expect(ids.trim()).toBe(id);
  });

  it('inspect: every field Docker prints equals ours, but those current Docker dropped', async () => {
    const [theirs] = JSON.parse((await dockerd.docker(['image', 'inspect', 'example.com/team/app:v2'])).stdout);
    const [ours] = JSON.parse(await cli(['inspect', '--root', root, 'example.com/team/app:v2']));
    for (const key of Object.keys(theirs)) {
      if (LEFT_OUT.has(key)) continue;
      expect(ours[key], key).toEqual(theirs[key]);
    }
    // Nothing of ours that Docker lacks, but the Descriptor.
    expect(Object.keys(ours).filter((k) => !(k in theirs))).toEqual(['Descriptor']);
    expect(ours.Descriptor.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(theirs.VirtualSize).toBe(theirs.Size);
    expect(theirs.Metadata).toEqual({ LastTagTime: '0001-01-01T00:00:00Z' });
    expect(Object.keys(ours.Metadata)).toEqual(['LastTagTime']);
    // What the comparison covered, spelled out.
    expect(ours.RepoDigests).toEqual([]);
    expect(ours.RepoTags).toEqual(['example.com/team/app:v2']);
    expect(ours.Size).toBeGreaterThan(1_500_000);
    expect(ours.Config.ExposedPorts).toEqual({ '8080/tcp': {} });
    expect(ours.RootFS.Layers).toHaveLength(4); // busybox, COPY, RUN, WORKDIR
  });

  it('history: every row as docker history --no-trunc prints it (CREATED BY, SIZE, COMMENT, CREATED AT, IMAGE)', async () => {
    const format = '{{.ID}}|{{.CreatedAt}}|{{.CreatedBy}}|{{.Size}}|{{.Comment}}';
    const theirs = (await dockerd.docker(['history', '--no-trunc', '--format', format, 'example.com/team/app:v2'])).stdout;
    const ours = await cli(['history', '--root', root, '--no-trunc', '--format', format, 'example.com/team/app:v2']);
    expect(ours.split('\n')).toEqual(theirs.split('\n'));
    // Sizes in bytes too (--human=false), and the default table's columns.
    const raw = '{{.CreatedBy}}|{{.Size}}';
    expect(await cli(['history', '--root', root, '--human=false', '--format', raw, 'example.com/team/app:v2']))
      .toBe((await dockerd.docker(['history', '--human=false', '--format', raw, 'example.com/team/app:v2'])).stdout);
    // The RUN layer, as Docker counts it: built.txt's 6 bytes and the symlink's 12 ("/bin/busybox"); nothing
    // for the hard link (the same inode), the whiteout of /bin/ls or the directories.
    expect(ours).toMatch(/\|RUN \/bin\/sh -c echo built .*\|18B\|buildkit.dockerfile.v0\n/);
  });

  it('images: IMAGE ID, SIZE, CREATED AT and DIGEST as docker images prints them', async () => {
    const format = '{{.Repository}}|{{.Tag}}|{{.ID}}|{{.Size}}|{{.CreatedAt}}|{{.Digest}}';
    const theirs = (await dockerd.docker(['images', '--format', format, 'example.com/team/app'])).stdout;
    const ours = await cli(['images', '--root', root, '--format', format, 'example.com/team/app']);
    expect(ours).toBe(theirs);
    expect(ours).toMatch(/\|<none>\n$/);
  });

  it('run, diff, commit: the same script in both gives the same A/C/D lines; the committed images agree', async () => {
    // The image's ENTRYPOINT is sh -c: the argument is the script.
    const script = 'echo hi; mkdir -p /data && echo data > /data/f; echo extra >> /etc/passwd; rm /hello.txt; rm -r /d/e; ln -s /data/f /data/l';
    expect(await cli(['run', '--root', root, '--name', 'c1', 'example.com/team/app:v2', script])).toBe('hi\n');
    expect((await dockerd.docker(['run', '--name', 'c1', '--network', 'none', 'example.com/team/app:v2', script])).stdout).toBe('hi\n');
    const ours = await cli(['diff', '--root', root, 'c1']);
    // The same lines; dockerd's order varies from run to run (it walks maps), ours is by path.
    const lines = (t: string) => t.trimEnd().split('\n');
    expect(lines(ours)).toEqual(lines((await dockerd.docker(['diff', 'c1'])).stdout).sort((a, b) => (a.slice(2) < b.slice(2) ? -1 : 1)));
    expect(ours).toMatch(/^A \/data\n[^]*^C \/etc\/passwd\n[^]*^D \/hello.txt\n/m);
    // Committed by each, with the same message and changes; ours also goes through save and docker load.
    const change = ['-m', 'added data', '-c', 'CMD ["cat /data/f"]', '-c', 'ENV MODE=committed'];
    await cli(['commit', '--root', root, '-a', 'Tester', ...change, 'c1', 'ours/committed:1']);
    await dockerd.docker(['commit', '-a', 'Tester', ...change.map((c) => (c === '-c' ? '--change' : c)), 'c1', 'theirs/committed:1']);
    const saved = `${await tempDir('builder-save-')}/c.tar`;
    await cli(['save', '--root', root, '-o', saved, 'ours/committed:1']);
    await dockerd.docker(['load', '-i', saved]);
    for (const image of ['ours/committed:1', 'theirs/committed:1']) {
      expect((await dockerd.docker(['run', '--rm', '--network', 'none', image])).stdout, image).toBe('data\n');
    }
    // Row by row: ours loaded into docker, ours here, and docker's own commit (its times aside).
    const format = '{{.CreatedBy}}|{{.Size}}|{{.Comment}}';
    const loaded = (await dockerd.docker(['history', '--no-trunc', '--format', format, 'ours/committed:1'])).stdout;
    expect(await cli(['history', '--root', root, '--no-trunc', '--format', format, 'ours/committed:1'])).toBe(loaded);
    expect((await dockerd.docker(['history', '--no-trunc', '--format', format, 'theirs/committed:1'])).stdout).toBe(loaded);
    const [mine] = JSON.parse(await cli(['inspect', '--root', root, 'ours/committed:1']));
    const [docker] = JSON.parse((await dockerd.docker(['image', 'inspect', 'theirs/committed:1'])).stdout);
    for (const key of ['Comment', 'Author', 'Architecture', 'Os', 'Size']) expect(mine[key], key).toEqual(docker[key]);
    // The committed layers hold the same files, made at other times (their mtimes, so their diff ids, differ).
    expect(mine.RootFS.Layers.slice(0, -1)).toEqual(docker.RootFS.Layers.slice(0, -1));
    expect(mine.RootFS.Layers).toHaveLength(docker.RootFS.Layers.length);
    expect(mine.Config.Cmd).toEqual(docker.Config.Cmd);
    expect(mine.Config.Env).toEqual(docker.Config.Env);
    await cli(['rm', '--root', root, 'c1']);
    await dockerd.docker(['rm', 'c1']);
  });

  it('docker save of the image, loaded here: the same image, inspected and listed alike', async () => {
    const saved = `${await tempDir('builder-docker-save-')}/d.tar`;
    await dockerd.docker(['save', '-o', saved, 'example.com/team/app:v2']);
    const other = await tempDir('builder-root-');
    expect(await cli(['load', '--root', other, '-i', saved])).toBe('Loaded image: example.com/team/app:v2\n');
    const [theirs] = JSON.parse((await dockerd.docker(['image', 'inspect', 'example.com/team/app:v2'])).stdout);
    const [ours] = JSON.parse(await cli(['inspect', '--root', other, 'example.com/team/app:v2']));
    for (const key of Object.keys(theirs)) {
      if (LEFT_OUT.has(key)) continue;
      expect(ours[key], key).toEqual(theirs[key]);
    }
    const format = '{{.ID}}|{{.CreatedAt}}|{{.CreatedBy}}|{{.Size}}|{{.Comment}}';
    expect(await cli(['history', '--root', other, '--no-trunc', '--format', format, 'example.com/team/app:v2']))
      .toBe((await dockerd.docker(['history', '--no-trunc', '--format', format, 'example.com/team/app:v2'])).stdout);
    expect(await cli(['run', '--root', other, '--rm', 'example.com/team/app:v2'])).toBe('hello\nbuilt\n/lnk\n');
  });

  it('pull of a multi-platform image: RepoDigests, Size, history as docker pull leaves them', async () => {
    // dockerd treats 127.0.0.0/8 registries as insecure (plain HTTP) by default, as ours does.
    await dockerd.docker(['pull', '-q', base]);
    const pulledRoot = await tempDir('builder-root-');
    await cli(['pull', '--root', pulledRoot, '--platform', 'linux/amd64', base]);
    const [theirs] = JSON.parse((await dockerd.docker(['image', 'inspect', base])).stdout);
    const [ours] = JSON.parse(await cli(['inspect', '--root', pulledRoot, base]));
    // The one difference: the id of an image pulled through an index. dockerd 20.10's layer store names it by
    // its config digest; ours (as current Docker's containerd image store) by the index digest it was pulled by.
    expect(ours.Id).toBe(theirs.RepoDigests[0].split('@')[1]);
    expect(ours.Descriptor.digest).not.toBe(ours.Id);
    for (const key of Object.keys(theirs)) {
      if (LEFT_OUT.has(key) || key === 'Id') continue;
      expect(ours[key], key).toEqual(theirs[key]);
    }
    expect(ours.RepoDigests).toEqual([`${base.replace(/:[^:/]+$/, '')}@${ours.Id}`]);
    const format = '{{.CreatedAt}}|{{.CreatedBy}}|{{.Size}}|{{.Comment}}';
    expect(await cli(['history', '--root', pulledRoot, '--no-trunc', '--format', format, base]))
      .toBe((await dockerd.docker(['history', '--no-trunc', '--format', format, base])).stdout);
    const images = '{{.Repository}}|{{.Tag}}|{{.Size}}|{{.Digest}}';
    expect(await cli(['images', '--root', pulledRoot, '--digests', '--format', images]))
      .toBe((await dockerd.docker(['images', '--digests', '--format', images, base.replace(/:[^:/]+$/, '')])).stdout);
  });

  it('a second private dockerd runs beside the first: both load and run the image; the host keeps its network links', async () => {
    // A dockerd with --bridge=none deletes docker0 where it runs: ours run in their own network namespaces.
    const links = () => new Promise<string>((resolve, reject) => execFile('ip', ['-o', 'link', 'show'], (e, out) => (e ? reject(e) : resolve(out.split('\n').map((l) => l.split(':')[1]?.trim()).filter(Boolean).sort().join(' ')))));
    const ip = (...args: string[]) => new Promise<boolean>((resolve) => execFile('ip', args, (e) => resolve(!e)));
    // Where no system daemon made one, a docker0 of our own (a bridge without addresses) stands in for it.
    const made = !(await ip('link', 'show', 'docker0')) && (await ip('link', 'add', 'docker0', 'type', 'bridge'));
    let other: TestDockerd | undefined;
    try {
      const before = await links();
      expect(before.split(' ')).toContain('docker0');
      other = await startDockerd();
      expect(await links()).toBe(before);
      await other.docker(['load', '-i', archive]);
      const [a, b] = await Promise.all([
        dockerd.docker(['run', '--rm', '--network', 'none', '--entrypoint', 'cat', 'example.com/team/app:v2', '/hello.txt']),
        other.docker(['run', '--rm', '--network', 'none', '--entrypoint', 'cat', 'example.com/team/app:v2', '/hello.txt']),
      ]);
      expect([a.stdout, b.stdout]).toEqual(['hello\n', 'hello\n']);
    } finally {
      await other?.stop();
      if (made) await ip('link', 'del', 'docker0');
    }
  });
});
