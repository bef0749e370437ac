// The local image store's lifecycle (issue 23) on real builds, read back with independent tools (skopeo,
// umoci): images/tag/rmi/prune, inspect and history field by field, save and load (ours and skopeo's
// archives), pull (FROM offline afterwards) and push.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs/promises';
import path from 'node:path';
import { lastLine, makeContext, runCli, tempDir } from '../helpers/cli.js';
import { pushBusybox, startRegistry, type TestRegistry } from '../helpers/registry.js';
import { busyboxLayout, busyboxTag, ensureBusybox } from '../helpers/fixtures.js';

const exec = promisify(execFile);
const registry = inject('registry');
const base = `${registry}/busybox:1.35`;

const dockerfile = `ARG BASE
FROM \${BASE}
COPY hello.txt /hello.txt
RUN echo built > /built.txt
ENV FOO=bar
LABEL org.example.k=v
CMD ["cat", "/hello.txt"]
`;

async function cli(args: string[], opts: { stdin?: string | Buffer } = {}): Promise<string> {
  const r = await runCli(args, opts);
  expect(r.code, `${args.join(' ')}\n${r.stderr}`).toBe(0);
  return r.stdout;
}

async function umociUnpack(layout: string, tag: string): Promise<string> {
  const dir = await tempDir('builder-unpack-');
  await exec('umoci', ['unpack', '--image', `${layout}:${tag}`, `${dir}/bundle`]);
  return path.join(dir, 'bundle', 'rootfs');
}

describe('image lifecycle', () => {
  let ctx: string;
  let root: string;
  const build = (tag: string, extra: string[] = []) =>
    cli(['build', '--root', root, '-q', '--build-arg', `BASE=${base}`, '-t', tag, ...extra, ctx]).then((s) => s.trim());

  beforeAll(async () => {
    ctx = await makeContext({ Dockerfile: dockerfile, 'hello.txt': 'hello\n' });
    root = await tempDir('builder-root-');
  });

  it('images lists Docker\'s columns; tag adds a name; --format, -q, --digests and filters', async () => {
    const id = await build('app:1');
    const out = await cli(['images', '--root', root]);
    const lines = out.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE$/);
    expect(lines[1]).toMatch(new RegExp(`^app\\s+1\\s+${id.slice(7, 19)}\\s+(Less than a second|\\d+ seconds?|About a minute|\\d+ minutes) ago\\s+\\d+(\\.\\d+)?[kM]?B$`));
    await cli(['tag', '--root', root, 'app:1', 'example.com/team/app:v1']);
    expect((await cli(['images', '--root', root, '-q'])).trim()).toBe(id.slice(7, 19));
    const json = (await cli(['images', '--root', root, '--format', 'json'])).trim().split('\n').map((l) => JSON.parse(l));
    expect(json.map((j) => `${j.Repository}:${j.Tag}`).sort()).toEqual(['app:1', 'example.com/team/app:v1']);
    expect(Object.keys(json[0])).toEqual([...Object.keys(json[0])].sort());
    expect(json[0].ID).toBe(id.slice(7, 19));
    const tpl = await cli(['images', '--root', root, '--format', '{{.Repository}}:{{.Tag}} {{.ID}}', '--filter', 'reference=*/team/*']);
    expect(tpl).toBe(`example.com/team/app:v1 ${id.slice(7, 19)}\n`);
    const digests = await cli(['images', '--root', root, '--digests']);
    expect(digests.split('\n')[0]).toMatch(/^REPOSITORY\s+TAG\s+DIGEST\s+IMAGE ID/);
    // Never pushed or pulled: no repository knows it by digest (as Docker).
    expect(digests.split('\n')[1]).toMatch(/^app\s+1\s+<none>\s+[0-9a-f]{12}/);
  });

  it('inspect prints Docker\'s fields, and they agree with skopeo reading the saved archive', async () => {
    const [img] = JSON.parse(await cli(['inspect', '--root', root, 'app:1']));
    expect(Object.keys(img).slice(0, 13)).toEqual(['Id', 'RepoTags', 'RepoDigests', 'Parent', 'Comment', 'Created', 'DockerVersion', 'Author', 'Config', 'Architecture', 'Os', 'Size', 'RootFS']);
    expect(img.RepoTags.sort()).toEqual(['app:1', 'example.com/team/app:v1']);
    expect(img.Comment).toBe('buildkit.dockerfile.v0');
    expect(img.Config.Cmd).toEqual(['cat', '/hello.txt']);
    expect(img.Config.Env).toContain('FOO=bar');
    expect(img.Config.Labels).toEqual({ 'org.example.k': 'v' });
    expect(img.Config.Entrypoint).toBeNull();
    expect(img.Config.Hostname).toBe('');
    expect(img.RootFS.Type).toBe('layers');
    expect(img.RepoDigests).toEqual([]);
    const out = await tempDir('builder-save-');
    await cli(['save', '--root', root, '-o', `${out}/app.tar`, 'app:1']);
    const sk = JSON.parse((await exec('skopeo', ['inspect', `docker-archive:${out}/app.tar:app:1`])).stdout);
    expect(sk.Layers).toEqual(img.RootFS.Layers);
    expect(sk.Architecture).toBe(img.Architecture);
    expect(sk.Created).toBe(img.Created);
    const cfg = JSON.parse((await exec('skopeo', ['inspect', '--config', `docker-archive:${out}/app.tar:app:1`])).stdout);
    const raw = JSON.parse((await exec('skopeo', ['inspect', '--raw', `docker-archive:${out}/app.tar:app:1`])).stdout);
    expect(img.Id).toBe(raw.config.digest);
    expect(cfg.config.Cmd).toEqual(img.Config.Cmd);
    expect(await cli(['inspect', '--root', root, '--format', '{{.Config.Cmd}} {{json .RepoTags}} {{.Os}}', 'app:1'])).toMatch(/^\[cat \/hello.txt\] \[.*"app:1".*\] linux\n$/);
    const missing = await runCli(['inspect', '--root', root, 'nope:1']);
    expect(missing.code).toBe(1);
    expect(lastLine(missing.stderr)).toBe('ERROR: No such object: nope:1');
  });

  it('history lists every instruction, metadata-only ones as 0B, as docker history prints it', async () => {
    const out = await cli(['history', '--root', root, 'app:1']);
    const lines = out.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^IMAGE\s+CREATED\s+CREATED BY\s+SIZE\s+COMMENT$/);
    expect(lines[1]).toMatch(/^[0-9a-f]{12}\s+.* ago\s+CMD \["cat" "\/hello.txt"\]\s+0B\s+buildkit.dockerfile.v0$/);
    expect(lines.slice(2).every((l) => l.startsWith('<missing>'))).toBe(true);
    const rows = (await cli(['history', '--root', root, '--no-trunc', '--format', '{{.CreatedBy}}|{{.Size}}|{{.Comment}}', 'app:1'])).trimEnd().split('\n');
    expect(rows.slice(0, 5)).toEqual([
      'CMD ["cat" "/hello.txt"]|0B|buildkit.dockerfile.v0',
      'LABEL org.example.k=v|0B|buildkit.dockerfile.v0',
      'ENV FOO=bar|0B|buildkit.dockerfile.v0',
      expect.stringMatching(/^RUN \/bin\/sh -c echo built > \/built.txt # buildkit\|\d+B\|buildkit.dockerfile.v0$/),
      expect.stringMatching(/^COPY hello.txt \/hello.txt # buildkit\|\d+B\|buildkit.dockerfile.v0$/),
    ]);
    // Docker's 45-column cut.
    expect(lines.some((l) => l.includes('…'))).toBe(true);
  });

  it('tag, save, load back into another store: the same image, read by umoci from an OCI save', async () => {
    const id = JSON.parse(await cli(['inspect', '--root', root, 'app:1']))[0].Id;
    await cli(['tag', '--root', root, 'app:1', 'app:export']);
    const multi = await build('app:multi', ['--platform', 'linux/amd64,linux/arm64']);
    const out = await tempDir('builder-save-');
    await cli(['save', '--root', root, '-o', `${out}/both.tar`, 'app:export', 'app:multi']);
    const other = await tempDir('builder-root-');
    expect(await cli(['load', '--root', other, '-i', `${out}/both.tar`])).toBe('Loaded image: app:export\nLoaded image: app:multi\n');
    expect(JSON.parse(await cli(['inspect', '--root', other, 'app:export']))[0].Id).toBe(id);
    const plats = JSON.parse(await cli(['inspect', '--root', other, 'app:multi']));
    expect(plats.map((p: { Architecture: string }) => p.Architecture)).toEqual(['amd64', 'arm64']);
    expect(plats[0].Id).toBe(multi);
    // A loaded name that named another image: Docker's message, and the old image keeps its other name.
    await cli(['tag', '--root', other, 'app:export', 'app:multi']);
    expect(await cli(['load', '--root', other, '-i', `${out}/both.tar`])).toBe(
      `Loaded image: app:export\nThe image app:multi already exists, renaming the old one with ID ${id} to empty string\nLoaded image: app:multi\n`);
    const table = await cli(['images', '--root', other]);
    expect(table).toMatch(/└─ linux\/amd64/);
    expect(table).toMatch(/└─ linux\/arm64/);
    // OCI format: umoci unpacks it (an image with OCI media types: umoci reads no other); gzip-compressed input loads too.
    await cli(['build', '--root', other, '-q', '--build-arg', `BASE=${base}`, '--output', 'type=image,name=app:export,oci-mediatypes=true', ctx]);
    await cli(['save', '--root', other, '--format', 'oci', '-o', `${out}/oci.tar`, 'app:export']);
    await fs.mkdir(`${out}/layout`);
    await exec('tar', ['xf', `${out}/oci.tar`, '-C', `${out}/layout`]);
    const rootfs = await umociUnpack(`${out}/layout`, 'export');
    expect(await fs.readFile(path.join(rootfs, 'built.txt'), 'utf8')).toBe('built\n');
    await exec('sh', ['-c', `gzip -c ${out}/oci.tar > ${out}/oci.tar.gz`]);
    const third = await tempDir('builder-root-');
    expect(await cli(['load', '--root', third], { stdin: await fs.readFile(`${out}/oci.tar.gz`) })).toBe('Loaded image: app:export\n');
  });

  it('loads skopeo-made archives (legacy docker-archive, multi-platform oci-archive) and builds FROM them', async () => {
    await ensureBusybox();
    const out = await tempDir('builder-skopeo-');
    await exec('skopeo', ['copy', '-q', `oci:${busyboxLayout}:${busyboxTag}`, `docker-archive:${out}/bb.tar:skopeo/busybox:legacy`]);
    await exec('skopeo', ['copy', '-q', '--all', `oci:${busyboxLayout}:${busyboxTag}`, `oci-archive:${out}/bb-oci.tar:skopeo/busybox:all`]);
    const other = await tempDir('builder-root-');
    expect(await cli(['load', '--root', other, '-i', `${out}/bb.tar`])).toBe('Loaded image: skopeo/busybox:legacy\n');
    expect(await cli(['load', '--root', other, '-i', `${out}/bb-oci.tar`])).toBe('Loaded image: skopeo/busybox:all\n');
    const [legacy] = JSON.parse(await cli(['inspect', '--root', other, 'skopeo/busybox:legacy']));
    const sk = JSON.parse((await exec('skopeo', ['inspect', `docker-archive:${out}/bb.tar`])).stdout);
    expect(legacy.RootFS.Layers).toEqual(sk.Layers);
    const c = await makeContext({ Dockerfile: 'FROM skopeo/busybox:legacy\nRUN echo ok > /ok\n' });
    await cli(['build', '--root', other, '-q', '-t', 'from-legacy', c]);
    const c2 = await makeContext({ Dockerfile: 'FROM skopeo/busybox:all\nRUN echo ok > /ok\n' });
    await cli(['build', '--root', other, '-q', '--platform', 'linux/arm64', '-t', 'from-all', c2]);
  });

  it('rmi frees what no other image needs; a rebuilt tag leaves a dangling image that image prune removes', async () => {
    const r = await tempDir('builder-root-');
    const c = await makeContext({ Dockerfile: dockerfile, 'hello.txt': 'one\n' });
    const first = (await cli(['build', '--root', r, '-q', '--build-arg', `BASE=${base}`, '-t', 'p:1', c])).trim();
    await fs.writeFile(path.join(c, 'hello.txt'), 'two\n');
    await cli(['build', '--root', r, '-q', '--build-arg', `BASE=${base}`, '-t', 'p:1', c]);
    expect((await cli(['images', '--root', r, '-f', 'dangling=true', '-q'])).trim()).toBe(first.slice(7, 19));
    expect(await cli(['images', '--root', r])).toMatch(/<none>\s+<none>/);
    const blobs = async () => (await fs.readdir(path.join(r, 'content/blobs/sha256'))).length;
    const before = await blobs();
    const pruned = await cli(['image', 'prune', '--root', r, '-f']);
    expect(pruned).toMatch(new RegExp(`^Deleted Images:\\ndeleted: ${first}\\n\\nTotal reclaimed space: \\d+(\\.\\d+)?[kM]?B\\n$`));
    expect(await blobs()).toBeLessThan(before);
    expect(await cli(['images', '--root', r, '-q', '-f', 'dangling=true'])).toBe('');
    // Several names: by id needs -f; by name only untags.
    await cli(['tag', '--root', r, 'p:1', 'p:2']);
    const id = (await cli(['images', '--root', r, '-q'])).trim();
    const refused = await runCli(['rmi', '--root', r, id]);
    expect(refused.code).toBe(1);
    expect(lastLine(refused.stderr)).toMatch(/must be forced\) - image is referenced in multiple repositories/);
    expect(await cli(['rmi', '--root', r, 'p:2'])).toBe('Untagged: p:2\n');
    expect(await cli(['rmi', '--root', r, '-f', id])).toMatch(/^Untagged: p:1\nDeleted: sha256:[0-9a-f]{64}\n$/);
    expect(await cli(['images', '--root', r, '-q'])).toBe('');
    // The build cache still works after the image's blobs went.
    await cli(['build', '--root', r, '-q', '--build-arg', `BASE=${base}`, '-t', 'p:1', c]);
    const out = await tempDir('builder-save-');
    await cli(['save', '--root', r, '-o', `${out}/p.tar`, 'p:1']);
    await exec('skopeo', ['inspect', `docker-archive:${out}/p.tar`]);
  });

  it('image layers shows each layer\'s blob, sizes and the images sharing it; du counts shared blobs once', async () => {
    const rows = JSON.parse(`[${(await cli(['image', 'layers', '--root', root, '--format', 'json', 'app:1'])).trim().split('\n').join(',')}]`);
    const [img] = JSON.parse(await cli(['inspect', '--root', root, 'app:1']));
    expect(rows.map((r: { DiffID: string }) => r.DiffID)).toEqual(img.RootFS.Layers);
    expect(rows[0].SharedWith).toEqual(['app:multi']); // the base layer; app:export is app:1 itself
    expect(rows.at(-1).SharedWith).toEqual(rows.at(-1).DiffID === rows[0].DiffID ? ['app:multi'] : expect.any(Array));
    expect(rows[0].UncompressedSize).toBeGreaterThan(rows[0].Size);
    const du = await cli(['du', '--root', root]);
    const line = du.split('\n').find((l) => l.startsWith('images'))!;
    const count = Number(line.split(/\s+/)[1]);
    expect(count).toBe(2); // app:1 (with its other names) and app:multi
    // The shared base layer is counted once: less than the two images' blobs added up.
    const bytes = (h: string) => { const m = /^([\d.]+)(B|kB|MB|GB)$/.exec(h)!; return Number(m[1]) * { B: 1, kB: 1e3, MB: 1e6, GB: 1e9 }[m[2]]!; };
    const blobBytes = async (image: string) => {
      const layers = (await cli(['image', 'layers', '--root', root, '--format', 'json', image])).trim().split('\n').map((l) => JSON.parse(l));
      return [...new Map(layers.map((l: { Digest: string; Size: number }) => [l.Digest, l.Size])).values()].reduce((a, b) => a + b, 0);
    };
    const each = [await blobBytes('app:1'), await blobBytes('app:multi')];
    const duImages = bytes(line.split(/\s+/)[2]);
    expect(duImages).toBeLessThan((each[0] + each[1]) * 0.8);
    expect(duImages).toBeGreaterThanOrEqual(Math.max(...each) * 0.99);
    // images shows sizes unpacked (as Docker): more than the compressed blobs.
    const shown = (await cli(['images', '--root', root, '--format', '{{.Size}}', 'app:1'])).trim();
    expect(bytes(shown)).toBeGreaterThan(each[0]);
  });
});

describe('pull and push', () => {
  let own: TestRegistry;
  beforeAll(async () => {
    own = await startRegistry();
    await pushBusybox(own.host);
  });
  afterAll(async () => {
    await own?.stop();
  });

  it('pull stores an image for one platform; FROM it works with the registry gone; push sends a stored image', async () => {
    const root = await tempDir('builder-root-');
    const ref = `${own.host}/busybox:1.35`;
    const out = await cli(['pull', '--root', root, '--platform', 'linux/arm64', ref]);
    expect(out).toMatch(/^1\.35: Pulling from busybox\n[0-9a-f]{12}: Pull complete\nDigest: sha256:[0-9a-f]{64}\nStatus: Downloaded newer image for /);
    expect(lastLine(out)).toBe(ref);
    expect(lastLine(await cli(['pull', '--root', root, '--platform', 'linux/arm64', ref]))).toBe(ref);
    // Pulled: the repository knows it by the digest pulled (Docker's RepoDigests, the DIGEST column).
    const pulledDigest = out.match(/\nDigest: (sha256:[0-9a-f]{64})\n/)![1];
    const [pulled] = JSON.parse(await cli(['inspect', '--root', root, ref]));
    expect(pulled.RepoDigests).toEqual([`${own.host}/busybox@${pulledDigest}`]);
    expect(await cli(['images', '--root', root, '--digests', '--format', '{{.Digest}}', ref])).toBe(`${pulledDigest}\n`);
    const ctx = await makeContext({ Dockerfile: `FROM ${ref}\nRUN echo pushed > /p.txt\n` });
    await cli(['build', '--root', root, '-q', '--platform', 'linux/arm64', '-t', `${registry}/lifecycle/pushed:1`, ctx]);
    await own.stop();
    // The registry is gone: FROM resolves from the store.
    await cli(['build', '--root', root, '-q', '--no-cache', '--platform', 'linux/arm64', '-t', 'offline:1', ctx]);
    const pushed = await cli(['push', '--root', root, `${registry}/lifecycle/pushed:1`]);
    expect(pushed.split('\n')[0]).toBe(`The push refers to repository [${registry}/lifecycle/pushed]`);
    expect(pushed).toMatch(/: Pushed\n/);
    const digest = lastLine(pushed).match(/^1: digest: (sha256:[0-9a-f]{64}) size: \d+$/)![1];
    const sk = JSON.parse((await exec('skopeo', ['inspect', '--tls-verify=false', `docker://${registry}/lifecycle/pushed:1`])).stdout);
    expect(sk.Digest).toBe(digest);
    expect(sk.Architecture).toBe('arm64');
    // Pushed: now it has a repository digest, not before.
    const [after] = JSON.parse(await cli(['inspect', '--root', root, `${registry}/lifecycle/pushed:1`]));
    expect(after.RepoDigests).toEqual([`${registry}/lifecycle/pushed@${digest}`]);
    // The pulled index has one platform here: pushed whole it cannot be; --platform pushes that one alone.
    const one = `${registry}/lifecycle/one:1`;
    await cli(['tag', '--root', root, ref, one]);
    const whole = await runCli(['push', '--root', root, one]);
    expect(whole.code).toBe(1);
    expect(whole.stderr.trim().split('\n')).toHaveLength(1);
    expect(whole.stderr).toMatch(/not in the local store .*--platform pushes one platform/);
    const onePushed = await cli(['push', '--root', root, '--platform', 'linux/arm64', one]);
    const oneDigest = lastLine(onePushed).match(/^1: digest: (sha256:[0-9a-f]{64}) size: \d+$/)![1];
    const oneRemote = JSON.parse((await exec('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${one}`])).stdout);
    expect(oneRemote.mediaType).toMatch(/manifest\.v1\+json|manifest\.v2\+json/);
    expect(JSON.parse((await exec('skopeo', ['inspect', '--tls-verify=false', `docker://${one}`])).stdout)).toMatchObject({ Digest: oneDigest, Architecture: 'arm64' });
    const [offline] = JSON.parse(await cli(['inspect', '--root', root, 'offline:1']));
    expect(offline.RepoDigests).toEqual([]);
    // build --push records the pushed repository as well.
    const bp = `${registry}/lifecycle/build-pushed:1`;
    await cli(['build', '--root', root, '-q', '--platform', 'linux/arm64', '--push', '-t', bp, ctx]);
    const [built] = JSON.parse(await cli(['inspect', '--root', root, bp]));
    const bpDigest = (await cli(['images', '--root', root, '--digests', '--format', '{{.Digest}}', bp])).trim();
    expect(bpDigest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(built.RepoDigests).toEqual([`${registry}/lifecycle/build-pushed@${bpDigest}`]);
    const remote = JSON.parse((await exec('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${bp}`])).stdout);
    expect(remote.mediaType).toMatch(/index|manifest/);
  });
});
