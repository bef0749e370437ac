// Hostile base images: each layer of testdata/malicious/layers.ts is pushed to the real registry as an
// image and built FROM. Nothing outside the image's filesystem may change (a canary directory on the host
// stays as it was), and each case either fails with a one-line error or keeps its writes inside the image.
import { describe, it, expect, inject, beforeAll, afterAll } from 'vitest';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import fs from 'node:fs/promises';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { runCli, makeContext, tempDir, lastLine } from '../helpers/cli.js';
import { gzipTar } from '../helpers/rawtar.js';
import { hostileLayers } from '../../testdata/malicious/layers.js';

const exec = promisify(execFile);
const registry = inject('registry');
const arch = process.arch === 'arm64' ? 'arm64' : 'amd64';

async function snapshotDir(dir: string): Promise<string> {
  const entries = await fs.readdir(dir, { recursive: true, withFileTypes: true });
  const lines: string[] = [];
  for (const e of entries) {
    const p = path.join(e.parentPath ?? (e as unknown as { path: string }).path, e.name);
    const st = await fs.lstat(p);
    lines.push(`${path.relative(dir, p)} ${st.mode} ${st.size} ${st.mtimeMs}` + (st.isFile() ? ` ${await fs.readFile(p, 'utf8')}` : ''));
  }
  return lines.sort().join('\n');
}

/** Pushes a one-layer image to the test registry with skopeo; returns its reference. */
async function pushLayerImage(name: string, layerGz: Buffer): Promise<string> {
  const dir = await tempDir('builder-evil-layout-');
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  const blob = async (b: Buffer) => {
    await fs.mkdir(path.join(dir, 'blobs/sha256'), { recursive: true });
    await fs.writeFile(path.join(dir, 'blobs/sha256', sha(b)), b);
    return { digest: `sha256:${sha(b)}`, size: b.length };
  };
  const layer = await blob(layerGz);
  const config = await blob(Buffer.from(JSON.stringify({
    architecture: arch, os: 'linux', config: {},
    rootfs: { type: 'layers', diff_ids: [`sha256:${sha(gunzipSync(layerGz))}`] },
  })));
  const manifest = await blob(Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...layer }],
  })));
  await fs.writeFile(path.join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  await fs.writeFile(path.join(dir, 'index.json'), JSON.stringify({
    schemaVersion: 2,
    manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest, annotations: { 'org.opencontainers.image.ref.name': 'latest' } }],
  }));
  const ref = `${registry}/evil/${name}:latest`;
  await exec('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', `oci:${dir}:latest`, `docker://${ref}`]);
  await fs.rm(dir, { recursive: true, force: true });
  return ref;
}

describe('hostile image layers', () => {
  let canary: string;
  let before: string;
  let root: string;

  beforeAll(async () => {
    canary = await tempDir('builder-canary-');
    await fs.writeFile(path.join(canary, 'canary.txt'), 'untouched\n');
    before = await snapshotDir(canary);
    root = await tempDir('builder-root-');
  });

  afterAll(async () => {
    await fs.rm(canary, { recursive: true, force: true });
  });

  // Cases are built once here (the canary path is only known at run time) and checked one by one.
  const cases = hostileLayers('/tmp/builder-canary-PLACEHOLDER');
  for (const [i, c] of cases.entries()) {
    it(`${c.name}: ${c.error ? 'rejected with a clear error' : 'confined to the image'}; the host is untouched`, async () => {
      const hostile = hostileLayers(canary)[i];
      const ref = await pushLayerImage(hostile.name, gzipTar(hostile.entries));
      const ctx = await makeContext({ Dockerfile: `FROM ${ref}\n` });
      const dest = await tempDir('builder-evil-out-');
      const res = await runCli(['build', '--root', root, '--progress', 'plain', '--output', `type=local,dest=${dest}`, ctx]);
      if (hostile.error) {
        expect(res.code, res.stderr).toBe(1);
        expect(lastLine(res.stderr)).toMatch(/^ERROR: Dockerfile:1: /);
        expect(lastLine(res.stderr)).toMatch(hostile.error);
        expect(res.stderr).not.toMatch(/\n\s+at .*\(.*:\d+:\d+\)/);
      } else {
        expect(res.code, res.stderr).toBe(0);
        for (const p of hostile.confined ?? []) {
          await expect(fs.lstat(path.join(dest, p)), p).resolves.toBeTruthy();
        }
        for (const p of hostile.absent ?? []) {
          await expect(fs.lstat(path.join(dest, p)), p).rejects.toMatchObject({ code: 'ENOENT' });
        }
      }
      expect(await snapshotDir(canary)).toBe(before);
      // No overlay attribute from a layer reached a snapshot: they would let a layer redirect lookups.
      const { stdout } = await exec('getfattr', ['-R', '-h', '-m', '^trusted\\.overlay\\.(redirect|metacopy)', path.join(root, 'snapshots')])
        .catch((e) => ({ stdout: String(e.stdout ?? '') }));
      expect(stdout).toBe('');
      await fs.rm(dest, { recursive: true, force: true });
      await fs.rm(ctx, { recursive: true, force: true });
    });
  }

  it('leaves the state directory usable: a normal build on the same --root works', async () => {
    const ctx = await makeContext({ Dockerfile: `FROM ${registry}/busybox:1.35\nRUN echo ok > /ok\n` });
    const dest = await tempDir('builder-evil-after-');
    const res = await runCli(['build', '--root', root, '--output', `type=local,dest=${dest}`, ctx]);
    expect(res.code, res.stderr).toBe(0);
    expect(await fs.readFile(path.join(dest, 'ok'), 'utf8')).toBe('ok\n');
    const mounts = await fs.readFile('/proc/mounts', 'utf8');
    expect(mounts).not.toContain(root);
  });
});
