// Output types and options, read back with independent tools (umoci, skopeo, GNU tar, docker load),
// reproducible images with SOURCE_DATE_EPOCH, and the local image store (-t without --output).
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { lastLine, makeContext, runCli, tempDir } from '../helpers/cli.js';

const exec = promisify(execFile);
const registry = inject('registry');
const base = `${registry}/busybox:1.35`;

const dockerfile = `ARG BASE
FROM \${BASE}
COPY hello.txt /hello.txt
RUN echo built > /built.txt && mkdir -p /d && touch /d/f
`;

async function meta(file: string): Promise<Record<string, any>> {
  return JSON.parse(await fs.readFile(file, 'utf8'));
}

/** The image manifest a layout directory's blob names: itself, or an index's first platform image (an
 * index carrying the default provenance has an attestation manifest beside it). */
async function imageManifest(layout: string, digest: string): Promise<any> {
  const doc = JSON.parse(await fs.readFile(path.join(layout, 'blobs/sha256', digest.slice(7)), 'utf8'));
  if (!doc.manifests) return doc;
  const image = doc.manifests.find((m: any) => m.annotations?.['vnd.docker.reference.type'] !== 'attestation-manifest');
  return imageManifest(layout, image.digest);
}

describe('outputs', () => {
  let ctx: string;
  let root: string;
  beforeAll(async () => {
    ctx = await makeContext({ Dockerfile: dockerfile, 'hello.txt': 'hello\n' });
    root = await tempDir('builder-root-');
  });
  const build = (args: string[], env?: Record<string, string>) =>
    runCli(['build', '--root', root, '--progress', 'plain', '--build-arg', `BASE=${base}`, ...args, ctx], { env });
  const buildPlain = build;

  it('leaves an OCI tarball that already holds the image as it is, and rewrites one that changed', async () => {
    const out = await tempDir('builder-out-');
    const dest = `${out}/img.tar`;
    // Provenance says when the build ran (as buildx's default does): a rebuild with it is another image.
    const build = (args: string[]) => buildPlain(['--provenance=false', ...args]);
    const first = await build(['--output', `type=oci,dest=${dest}`]);
    expect(first.code, first.stderr).toBe(0);
    const before = await fs.stat(dest);
    const again = await build(['--output', `type=oci,dest=${dest}`]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toContain('already holds this image');
    const after = await fs.stat(dest);
    expect([after.ino, after.mtimeMs]).toEqual([before.ino, before.mtimeMs]);
    // Other names: another archive (index.json names them).
    const named = await build(['--output', `type=oci,dest=${dest},name=example.com/other:1`]);
    expect(named.stderr).not.toContain('already holds this image');
    expect((await exec('tar', ['-xOf', dest, 'index.json'])).stdout).toContain('example.com/other:1');
    // A destination changed by someone else is written again, whole.
    await fs.appendFile(dest, 'junk');
    const fixed = await build(['--output', `type=oci,dest=${dest},name=example.com/other:1`]);
    expect(fixed.stderr).not.toContain('already holds this image');
    await exec('skopeo', ['inspect', '--raw', `oci-archive:${dest}`]);
    expect((await fs.stat(dest)).size % 512).toBe(0);
  });

  it('rewrites only the provenance and index of an OCI tarball a rebuild changed only there, as a full write would', async () => {
    // 3 MB of layer that does not compress: an archive big enough to be kept rather than written again.
    const big = await makeContext({ Dockerfile: 'ARG BASE\nFROM ${BASE}\nCOPY big.bin /big.bin\n' });
    await fs.writeFile(path.join(big, 'big.bin'), randomBytes(3 << 20));
    const out = await tempDir('builder-out-');
    const dest = `${out}/img.tar`;
    const run = (args: string[]) => runCli(['build', '--root', root, '--progress', 'plain', '--build-arg', `BASE=${base}`, ...args, big]);
    const first = await run(['--output', `type=oci,dest=${dest}`]);
    expect(first.code, first.stderr).toBe(0);
    const before = await fs.stat(dest);
    // The default provenance's times differ: another index, the same layers. A second output in the same
    // build is the same archive written whole.
    const again = await run(['--output', `type=oci,dest=${dest}`, '--output', `type=oci,dest=${out}/fresh.tar`, '--metadata-file', `${out}/meta.json`]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(new RegExp(`${dest}: kept the first 4\\.\\d+MB, wrote \\d+(\\.\\d+)?kB`));
    const collapsing = [0xef53, 0x58465342].includes(Number((await fs.statfs(dest)).type));
    if (collapsing) {
      expect(again.stderr).toContain('in place');
      expect((await fs.stat(dest)).ino).toBe(before.ino);
    }
    expect(Buffer.compare(await fs.readFile(dest), await fs.readFile(`${out}/fresh.tar`))).toBe(0);
    const raw = JSON.parse((await exec('skopeo', ['inspect', '--raw', `oci-archive:${dest}`])).stdout);
    expect(raw.manifests.some((m: any) => m.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest')).toBe(true);
    // Every blob read and checked against its digest.
    await exec('skopeo', ['copy', '--all', `oci-archive:${dest}`, `dir:${out}/copied`]);
    // umoci (Debian's 0.4 reads a manifest, not an index): the layout with its tag on the platform image.
    const layout = `${out}/layout`;
    await fs.mkdir(layout);
    await exec('tar', ['-xf', dest, '-C', layout]);
    const image = raw.manifests.find((m: any) => m.annotations?.['vnd.docker.reference.type'] !== 'attestation-manifest');
    await fs.writeFile(path.join(layout, 'index.json'), JSON.stringify({
      schemaVersion: 2, manifests: [{ mediaType: image.mediaType, digest: image.digest, size: image.size, annotations: { 'org.opencontainers.image.ref.name': 'x' } }],
    }));
    await exec('umoci', ['unpack', '--image', `${layout}:x`, `${out}/bundle`]);
    expect((await fs.stat(`${out}/bundle/rootfs/big.bin`)).size).toBe(3 << 20);
  });

  it('gives the same digest in two fresh state directories with SOURCE_DATE_EPOCH and rewrite-timestamp', async () => {
    const out = await tempDir('builder-out-');
    const digests: string[] = [];
    for (const i of [1, 2]) {
      const fresh = await tempDir('builder-root-');
      // A second checkout of the same files, as on another machine: other mtimes, other inodes.
      const checkout = await makeContext({ Dockerfile: dockerfile, 'hello.txt': 'hello\n' });
      const r = await runCli(['build', '--root', fresh, '--progress', 'plain', '--build-arg', `BASE=${base}`,
        '--output', `type=oci,dest=${out}/img${i}.tar,rewrite-timestamp=true`, '--metadata-file', `${out}/meta${i}.json`, checkout],
      { env: { SOURCE_DATE_EPOCH: '1700000000' } });
      expect(r.code, r.stderr).toBe(0);
      digests.push((await meta(`${out}/meta${i}.json`))['containerimage.digest']);
      // The RUN and the checkout happen a second later the second time: only the clamping makes the layers equal.
      await new Promise((res) => setTimeout(res, 1100));
    }
    // The whole index: with SOURCE_DATE_EPOCH the default provenance's times are the epoch, its statement equal.
    expect(digests[1]).toBe(digests[0]);
    const config = JSON.parse((await exec('skopeo', ['inspect', '--config', `oci-archive:${out}/img1.tar`])).stdout);
    expect(config.created).toBe('2023-11-14T22:13:20Z');
    for (const h of config.history) expect(Date.parse(h.created)).toBeLessThanOrEqual(1700000000 * 1000);
    // The layer tar: sorted entries, numeric owners without names, mtimes clamped.
    const dir = await tempDir('builder-layer-');
    await exec('tar', ['-xf', `${out}/img1.tar`, '-C', dir]);
    const manifest = await imageManifest(dir, digests[0]);
    const top = manifest.layers[manifest.layers.length - 1].digest.slice(7);
    const listing = (await exec('tar', ['--numeric-owner', '--full-time', '-tvzf', path.join(dir, 'blobs/sha256', top)])).stdout.trim().split('\n');
    const names = listing.map((l) => l.split(/\s+/).slice(5).join(' '));
    expect(names).toEqual([...names].sort());
    for (const l of listing) expect(l.split(/\s+/)[3] <= '2023-11-14').toBe(true);
    const verbose = (await exec('tar', ['-tvzf', path.join(dir, 'blobs/sha256', top)])).stdout;
    expect(verbose).toMatch(/ 0\/0 /);
  });

  it('writes an OCI layout directory with tar=false that umoci unpacks; uncompressed and zstd layers', async () => {
    const out = await tempDir('builder-out-');
    // Debian's umoci unpacks a manifest, not an index: this image goes without the default provenance.
    const r = await build(['--provenance=false', '-t', 'example.com/dir/app:1', '--output', `type=oci,dest=${out}/layout,tar=false,compression=uncompressed`]);
    expect(r.code, r.stderr).toBe(0);
    const index = JSON.parse(await fs.readFile(`${out}/layout/index.json`, 'utf8'));
    const manifest = await imageManifest(`${out}/layout`, index.manifests[0].digest);
    expect(manifest.layers.at(-1).mediaType).toBe('application/vnd.oci.image.layer.v1.tar');
    await exec('umoci', ['unpack', '--image', `${out}/layout:1`, `${out}/bundle`]);
    expect(await fs.readFile(`${out}/bundle/rootfs/built.txt`, 'utf8')).toBe('built\n');

    const z = await build(['--output', `type=oci,dest=${out}/z.tar,compression=zstd,compression-level=5`]);
    expect(z.code, z.stderr).toBe(0);
    const zdir = await tempDir('builder-z-');
    await exec('tar', ['-xf', `${out}/z.tar`, '-C', zdir]);
    const zm = await imageManifest(zdir, JSON.parse(await fs.readFile(`${zdir}/index.json`, 'utf8')).manifests[0].digest);
    expect(zm.layers.at(-1).mediaType).toBe('application/vnd.oci.image.layer.v1.tar+zstd');
    // The pulled base layer keeps its gzip blob unless force-compression is set.
    expect(zm.layers[0].mediaType).toBe('application/vnd.oci.image.layer.v1.tar+gzip');
    const list = (await exec('sh', ['-c', `zstd -dc ${zdir}/blobs/sha256/${zm.layers.at(-1).digest.slice(7)} | tar -t`])).stdout;
    expect(list.split('\n')).toContain('built.txt');
  });

  it('writes a filesystem tarball with type=tar', async () => {
    const out = await tempDir('builder-out-');
    const r = await build(['--output', `type=tar,dest=${out}/fs.tar`]);
    expect(r.code, r.stderr).toBe(0);
    const list = (await exec('tar', ['-tf', `${out}/fs.tar`])).stdout.split('\n');
    expect(list).toContain('built.txt');
    expect(list).toContain('bin/');
  });

  it('loads type=docker into a running docker daemon (where there is one)', async () => {
    const hasDaemon = await exec('docker', ['info']).then(() => true, () => false);
    const r = await build(['-t', 'builder-test/loaded:1', '--load']);
    if (!hasDaemon) {
      expect(r.code).toBe(1);
      expect(lastLine(r.stderr)).toMatch(/^ERROR: loading into docker failed/);
      return;
    }
    expect(r.code, r.stderr).toBe(0);
    const ran = await exec('docker', ['run', '--rm', 'builder-test/loaded:1', 'cat', '/built.txt']);
    expect(ran.stdout).toBe('built\n');
    await exec('docker', ['rmi', 'builder-test/loaded:1']).catch(() => undefined);
  });

  it('rejects an unknown output type or option, listing the valid ones', async () => {
    const t = await build(['--output', 'type=bogus,dest=x']);
    expect(t.code).toBe(1);
    expect(lastLine(t.stderr)).toBe('ERROR: invalid output "type=bogus,dest=x": unknown type "bogus" (valid: oci, docker, local, image, registry, tar, cacheonly)');
    const o = await build(['--output', 'type=oci,dest=x.tar,colour=blue']);
    expect(o.code).toBe(1);
    expect(lastLine(o.stderr)).toMatch(/^ERROR: invalid output "type=oci,dest=x.tar,colour=blue": unknown option "colour" for type=oci \(valid: name, compression, .*dest, tar\)$/);
    const l = await build(['--output', 'type=oci,dest=x.tar,compression-level=12']);
    expect(l.code).toBe(1);
    expect(lastLine(l.stderr)).toBe('ERROR: invalid output "type=oci,dest=x.tar,compression-level=12": compression-level=12 is out of range for compression=gzip (0-9)');
    const c = await build(['--output', 'type=oci,dest=x.tar,compression=lz4']);
    expect(lastLine(c.stderr)).toBe('ERROR: invalid output "type=oci,dest=x.tar,compression=lz4": unknown compression "lz4" (valid: gzip, zstd, uncompressed)');
  });
});

describe('local image store', () => {
  it('keeps -t images without --output, lists them, uses them in FROM without a registry, removes them', async () => {
    const root = await tempDir('builder-root-');
    const ctx = await makeContext({ Dockerfile: `FROM ${base}\nRUN echo base > /base.txt\n` });
    const r = await runCli(['build', '--root', root, '--progress', 'plain', '-t', 'local-only/base:1', ctx]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toContain('No output specified');
    const images = await runCli(['images', '--root', root]);
    expect(images.code, images.stderr).toBe(0);
    expect(images.stdout).toMatch(/local-only\/base\s+1\s+[0-9a-f]{12}\s/); // Docker's IMAGE ID column

    const child = await makeContext({ Dockerfile: 'FROM local-only/base:1\nRUN cat /base.txt > /child.txt\nCOPY --from=local-only/base:1 /base.txt /copied.txt\n' });
    const out = await tempDir('builder-out-');
    const c = await runCli(['build', '--root', root, '--progress', 'plain', '--output', `type=local,dest=${out}`, child]);
    expect(c.code, c.stderr).toBe(0);
    expect(await fs.readFile(path.join(out, 'child.txt'), 'utf8')).toBe('base\n');
    expect(await fs.readFile(path.join(out, 'copied.txt'), 'utf8')).toBe('base\n');
    // type=image without push keeps the image under its name= too.
    const named = await runCli(['build', '--root', root, '--progress', 'plain', '--output', 'type=image,name=local-only/child:2,push=false', child]);
    expect(named.code, named.stderr).toBe(0);
    expect((await runCli(['images', '--root', root])).stdout).toMatch(/local-only\/child\s+2\s/);

    const rmi = await runCli(['rmi', '--root', root, 'local-only/base:1']);
    expect(rmi.code, rmi.stderr).toBe(0);
    expect((await runCli(['images', '--root', root])).stdout).not.toContain('local-only/base');
    const again = await runCli(['rmi', '--root', root, 'local-only/base:1']);
    expect(again.code).toBe(1);
    expect(lastLine(again.stderr)).toBe('ERROR: no such image: local-only/base:1');
  });
});
