// Fault injection on the state directory: between builds, a stored blob loses a byte or its tail, a
// snapshot's committed.json or other metadata is garbled, a cache record names another step's chain. The
// next build must either export an image that verifies (every blob hashes to its name, every layer
// decompresses to its diff id) with a clean build's file tree, or fail with one line and exit 1; no later
// build on the same state may end in an internal error.
import { describe, it, expect, inject, beforeAll } from 'vitest';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { readTar } from '../../src/archive/tar.js';
import type { ImageConfigFile, Manifest } from '../../src/image/types.js';
import { makeContext, runCli, tempDir, type CliResult } from '../helpers/cli.js';
import { readImageManifest } from '../helpers/layout.js';

const run = promisify(execFile);
const registry = inject('registry');
const base = `${registry}/busybox:1.35`;

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Text that compresses poorly, so that a byte in the middle of a layer blob is deflate data. */
const noise = (n: number) => Array.from({ length: n }, (_, i) => sha(Buffer.from(String(i)))).join('\n');

const files = {
  Dockerfile: `FROM ${base}\nCOPY app /app\nRUN echo built > /app/built.txt && head -c 100000 /app/main.txt > /app/copy.txt\n`,
  'app/main.txt': noise(4000),
  // Over 4 MiB: its data gets gzip members of their own, the same in every build (member reuse copies them).
  'app/big.txt': noise(150_000),
  'app/sub/data.txt': 'data\n',
};

interface Image {
  layers: { digest: string; diffID: string }[];
  /** path -> type, mode and content digest, after applying every layer (whiteouts included). */
  tree: Map<string, string>;
}

/**
 * Reads an OCI layout tarball and checks it: every blob hashes to its name and each layer gunzips (which
 * checks every member's CRC) to its diff id. Returns the layers and the final file tree.
 */
async function verifyImage(tarFile: string): Promise<Image> {
  const dir = await tempDir('builder-faults-out-');
  await run('tar', ['-xf', tarFile, '-C', dir]);
  const blobDir = path.join(dir, 'blobs', 'sha256');
  for (const name of await fs.readdir(blobDir)) {
    expect(sha(await fs.readFile(path.join(blobDir, name))), `blob ${name} hashes to its name`).toBe(name);
  }
  const blob = (d: string) => fs.readFile(path.join(blobDir, d.slice('sha256:'.length)));
  const manifest = await readImageManifest(dir) as Manifest;
  const config = JSON.parse((await blob(manifest.config.digest)).toString()) as ImageConfigFile;
  const diffIDs = config.rootfs!.diff_ids;
  expect(diffIDs.length).toBe(manifest.layers.length);
  const tree = new Map<string, string>();
  for (const [i, l] of manifest.layers.entries()) {
    const tar = gunzipSync(await blob(l.digest));
    expect(`sha256:${sha(tar)}`, `layer ${i} decompresses to its diff id`).toBe(diffIDs[i]);
    for await (const e of readTar(Readable.from([tar]))) {
      const name = e.header.name.replace(/\/$/, '');
      const chunks: Buffer[] = [];
      for await (const c of e.body) chunks.push(c);
      const baseName = path.posix.basename(name);
      if (baseName === '.wh..wh..opq') {
        const parent = path.posix.dirname(name);
        for (const k of [...tree.keys()]) if (k.startsWith(`${parent}/`)) tree.delete(k);
        continue;
      }
      if (baseName.startsWith('.wh.')) {
        const gone = path.posix.join(path.posix.dirname(name), baseName.slice(4));
        for (const k of [...tree.keys()]) if (k === gone || k.startsWith(`${gone}/`)) tree.delete(k);
        continue;
      }
      tree.set(name, `${e.header.type} ${(e.header.mode ?? 0).toString(8)} ${e.header.linkname ?? ''} ${sha(Buffer.concat(chunks))}`);
    }
  }
  await fs.rm(dir, { recursive: true, force: true });
  return { layers: manifest.layers.map((l, i) => ({ digest: l.digest, diffID: diffIDs[i] })), tree };
}

let ctx: string;
let clean: Image;

async function build(root: string, extra: string[] = []): Promise<{ r: CliResult; dest: string }> {
  const dest = path.join(await tempDir('builder-faults-dest-'), 'image.tar');
  const r = await runCli(['build', '--root', root, '--progress', 'plain', '--output', `type=oci,dest=${dest}`, ...extra, ctx]);
  return { r, dest };
}

/** Either a verified image with the clean build's files, or one line and exit 1. */
async function expectSoundOrOneLine(b: { r: CliResult; dest: string }): Promise<'image' | 'failed'> {
  expect(b.r.stderr).not.toContain('internal error');
  if (b.r.code === 0) {
    const image = await verifyImage(b.dest);
    expect([...image.tree.entries()].sort()).toEqual([...clean.tree.entries()].sort());
    return 'image';
  }
  expect(b.r.code, b.r.stderr).toBe(1);
  expect(b.r.stderr.trimEnd().split('\n').filter((l) => l.startsWith('ERROR')).length).toBe(1);
  expect(b.r.stderr).not.toMatch(/\n\s+at /);
  return 'failed';
}

/** A build on a state that may have been damaged: it must heal, and a build after it must too. */
async function expectHealed(root: string, extra: string[] = []): Promise<CliResult> {
  const first = await build(root, extra);
  expect(await expectSoundOrOneLine(first), first.r.stderr).toBe('image');
  const again = await build(root, extra);
  expect(await expectSoundOrOneLine(again), again.r.stderr).toBe('image');
  return first.r;
}

/** A fresh state directory holding one complete build; the image's layers. */
async function builtState(): Promise<{ root: string; image: Image }> {
  const root = await tempDir('builder-faults-root-');
  const b = await build(root);
  expect(b.r.code, b.r.stderr).toBe(0);
  return { root, image: await verifyImage(b.dest) };
}

const blobFile = (root: string, digest: string) => path.join(root, 'content', 'blobs', 'sha256', digest.slice('sha256:'.length));

/** Flips bits in a few bytes around the middle of the file (its size and name stay). */
async function flipByte(file: string): Promise<void> {
  const h = await fs.open(file, 'r+');
  try {
    const { size } = await h.stat();
    expect(size).toBeGreaterThan(10_000);
    const b = Buffer.alloc(16);
    const at = Math.floor(size / 2);
    await h.read(b, 0, b.length, at);
    for (let i = 0; i < b.length; i++) b[i] ^= 0x5a;
    await h.write(b, 0, b.length, at);
  } finally {
    await h.close();
  }
}

async function truncateHalf(file: string): Promise<void> {
  const { size } = await fs.stat(file);
  await fs.truncate(file, Math.floor(size / 2));
}

/** Records by their chain length (the RUN step's names the longest chain). */
async function records(root: string): Promise<{ file: string; rec: { key: string; layers: string[] } & Record<string, unknown> }[]> {
  const dir = path.join(root, 'cache', 'records');
  const out = [];
  for (const name of await fs.readdir(dir)) {
    const file = path.join(dir, name);
    out.push({ file, rec: JSON.parse(await fs.readFile(file, 'utf8')) });
  }
  // A step's result is recorded under its key and its content key (early cutoff): one record per chain here.
  const chains = new Set<string>();
  return out.sort((a, b) => a.rec.layers.length - b.rec.layers.length || (a.rec.key < b.rec.key ? -1 : 1))
    .filter((r) => !chains.has(JSON.stringify(r.rec.layers)) && !!chains.add(JSON.stringify(r.rec.layers)));
}

describe('state faults', () => {
  beforeAll(async () => {
    ctx = await makeContext(files);
    const { image } = await builtState();
    clean = image;
    expect([...clean.tree.keys()]).toContain('app/built.txt');
  });

  it('a flipped byte in a built layer blob never reaches the output', async () => {
    const { root, image } = await builtState();
    await flipByte(blobFile(root, image.layers.at(-2)!.digest));
    await expectHealed(root);
  });

  it('a flipped byte in a pulled base layer blob never reaches the output', async () => {
    const { root, image } = await builtState();
    await flipByte(blobFile(root, image.layers[0].digest));
    const r = await expectHealed(root);
    expect(r.stderr).toContain(image.layers[0].digest);
  });

  it('a flipped byte in a previous blob is not copied into a new one by member reuse (--no-cache)', async () => {
    const { root, image } = await builtState();
    await flipByte(blobFile(root, image.layers.at(-2)!.digest));
    await flipByte(blobFile(root, image.layers.at(-1)!.digest));
    await expectHealed(root, ['--no-cache']);
  });

  it('a flipped byte never reaches a cache export or a push', async () => {
    const { root, image } = await builtState();
    await flipByte(blobFile(root, image.layers.at(-2)!.digest));
    await flipByte(blobFile(root, image.layers.at(-1)!.digest));
    const cacheDir = await tempDir('builder-faults-cache-');
    const name = `${registry}/faults/pushed:1`;
    const r = await runCli(['build', '--root', root, '--progress', 'plain', '--cache-to', `type=local,dest=${cacheDir},mode=max`,
      '--output', `type=registry,name=${name}`, ctx]);
    expect(r.code, r.stderr).toBe(0);
    const blobs = path.join(cacheDir, 'blobs', 'sha256');
    for (const n of await fs.readdir(blobs)) expect(sha(await fs.readFile(path.join(blobs, n))), n).toBe(n);
    // The pushed image, read back from the registry: every layer hashes to its digest and gunzips.
    // An index (the default provenance beside the image): its image manifest is read through it.
    const accept = 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json';
    const get = async (ref: string) => (await fetch(`http://${registry}/v2/faults/pushed/manifests/${ref}`, { headers: { accept } })).json() as Promise<Manifest & { manifests?: { digest: string; platform?: { os: string } }[] }>;
    const top = await get('1');
    const manifest = top.manifests ? await get(top.manifests.find((m) => m.platform?.os !== 'unknown')!.digest) : top;
    expect(manifest.layers.length).toBe(image.layers.length);
    const blob = async (d: string) => Buffer.from(await (await fetch(`http://${registry}/v2/faults/pushed/blobs/${d}`)).arrayBuffer());
    const config = JSON.parse((await blob(manifest.config.digest)).toString()) as ImageConfigFile;
    for (const [i, l] of manifest.layers.entries()) {
      const body = await blob(l.digest);
      expect(`sha256:${sha(body)}`).toBe(l.digest);
      expect(`sha256:${sha(gunzipSync(body))}`, `layer ${i} decompresses to its diff id`).toBe(config.rootfs!.diff_ids[i]);
    }
    // And the state it healed builds sound images after.
    await expectHealed(root);
  });

  it('a truncated blob is made again, and is not reported as missing', async () => {
    const { root, image } = await builtState();
    await truncateHalf(blobFile(root, image.layers.at(-1)!.digest));
    const r = await expectHealed(root);
    expect(r.stderr).not.toContain('not found');
  });

  for (const [how, damage] of [['truncated', truncateHalf], ['flipped', flipByte]] as const) it(`a ${how} base layer blob is fetched again before a layer is extracted from it`, async () => {
    const { root, image } = await builtState();
    await damage(blobFile(root, image.layers[0].digest));
    // Extraction reads the blob only for a chain it has not extracted: forget the extracted layers.
    await fs.rm(path.join(root, 'layers'), { recursive: true });
    await fs.rm(path.join(root, 'cache', 'records'), { recursive: true });
    await expectHealed(root);
  });

  it('a garbled committed.json is quarantined and the step runs again', async () => {
    const { root } = await builtState();
    const recs = await records(root);
    const top = recs.at(-1)!.rec.layers.at(-1)!;
    const bottom = recs.at(-1)!.rec.layers[0];
    await fs.writeFile(path.join(root, 'snapshots', top, 'committed.json'), '{"created":"2026-');
    await fs.writeFile(path.join(root, 'snapshots', bottom, 'committed.json'), '\0\0\0\0');
    await expectHealed(root);
  });

  // Truncated JSON (records kept readable, so that they lead to the garbled snapshots), then JSON of the
  // wrong shape everywhere, records included.
  for (const [garbage, keepRecords] of [['{"garbled', true], ['null', false], ['[1]', false], ['{"layers":"1"}', false]] as const) {
    it(`metadata everywhere in the state replaced by ${garbage} (indexes, records, stores) is never an internal error`, async () => {
      const { root } = await builtState();
      // An image kept under a name in the local image store (images.json), which FROM consults first.
      const kept = await runCli(['build', '--root', root, '--progress', 'plain', '-t', 'faults/kept:1', ctx]);
      expect(kept.code, kept.stderr).toBe(0);
      const garbled: string[] = [];
      const skip = ['blobs', 'executor', 'mounts', 'cache-mounts', 'fs', 'work', 'keys', ...(keepRecords ? ['records'] : [])];
      const walk = async (dir: string): Promise<void> => {
        for (const e of await fs.readdir(dir, { withFileTypes: true })) {
          const p = path.join(dir, e.name);
          if (e.isDirectory()) {
            // Inside a snapshot only its marker: fs/ is the layer's files.
            if (!skip.includes(e.name)) await walk(p);
          } else if (e.isFile() && e.name !== 'lock') {
            await fs.writeFile(p, garbage);
            garbled.push(path.relative(root, p));
          }
        }
      };
      await walk(root);
      expect(garbled.some((p) => p.startsWith('layers/'))).toBe(true);
      expect(garbled.some((p) => p.startsWith('content/members/'))).toBe(true);
      expect(garbled.some((p) => p.endsWith('/committed.json'))).toBe(true);
      expect(garbled.some((p) => p.startsWith('cache/records/'))).toBe(!keepRecords);
      expect(garbled).toContain('images.json');
      await expectHealed(root);
    });
  }

  it('a cache record naming another step\'s snapshot chain is ignored', async () => {
    const { root } = await builtState();
    const recs = await records(root);
    const run = recs.at(-1)!;
    const copy = recs.at(-2)!;
    expect(copy.rec.layers.length).toBeLessThan(run.rec.layers.length);
    // Valid JSON under the RUN step's key, naming the COPY step's chain (and whatever else it records).
    await fs.writeFile(run.file, JSON.stringify({ ...copy.rec, key: run.rec.key }));
    await expectHealed(root);
  });

  it('a cache record claiming its step made nothing (an empty chain) is ignored', async () => {
    const { root } = await builtState();
    const run = (await records(root)).at(-1)!;
    await fs.writeFile(run.file, JSON.stringify({ ...run.rec, layers: [], uids: [] }));
    await expectHealed(root);
  });

  it('a cache record naming a chain with a foreign snapshot in it is ignored', async () => {
    const { root } = await builtState();
    const recs = await records(root);
    const run = recs.at(-1)!;
    const layers = [...run.rec.layers];
    // The COPY layer swapped for the base's bottom layer: every snapshot exists and is committed.
    layers[layers.length - 2] = layers[0];
    await fs.writeFile(run.file, JSON.stringify({ ...run.rec, layers }));
    await expectHealed(root);
  });

  // The state directory on a filesystem that fills up part way (a small tmpfs): the base pull, the context,
  // the COPY's snapshot or its layer blob runs out of room. One line; with room again the same state builds
  // sound images.
  for (const size of ['1m', '6m', '16m']) {
    it(`a state directory on a full filesystem (${size}) fails in one line, and builds sound images once there is room`, async () => {
      const mnt = await tempDir('builder-faults-full-');
      await run('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', mnt]);
      try {
        const root = path.join(mnt, 'state');
        const full = await build(root);
        if (await expectSoundOrOneLine(full) === 'failed') expect(full.r.stderr).toMatch(/no space left on device/i);
        await run('mount', ['-o', 'remount,size=512m', mnt]);
        await expectHealed(root);
      } finally {
        await run('umount', [mnt]).catch(() => run('umount', ['-l', mnt]));
      }
    });
  }

  it('du --verify finds and repairs every fault at once; the build after it is sound', async () => {
    const { root, image } = await builtState();
    const recs = await records(root);
    await flipByte(blobFile(root, image.layers.at(-2)!.digest));
    await truncateHalf(blobFile(root, image.layers[0].digest));
    const run = recs.at(-1)!;
    await fs.writeFile(path.join(root, 'snapshots', run.rec.layers.at(-1)!, 'committed.json'), '{"created":');
    const copy = recs.at(-2)!;
    await fs.writeFile(copy.file, JSON.stringify({ ...copy.rec, layers: [...copy.rec.layers].reverse() }));
    const layerRecords = await fs.readdir(path.join(root, 'layers'));
    await fs.writeFile(path.join(root, 'layers', layerRecords[0]), JSON.stringify({ snapshot: copy.rec.layers.at(-1) }));

    const v = await runCli(['du', '--verify', '--root', root]);
    expect(v.code, v.stderr).toBe(0);
    expect(v.stdout).toContain(`blob ${image.layers.at(-2)!.digest} did not hash to its name: removed`);
    expect(v.stdout).toContain(`blob ${image.layers[0].digest} did not hash to its name: removed`);
    expect(v.stdout).toMatch(/snapshot \d+: committed.json unreadable/);
    expect(v.stdout).toContain(`cache record ${copy.rec.key} does not match its snapshots: removed`);
    expect(v.stdout).toContain(`layer record ${layerRecords[0]} does not match its snapshots: removed`);
    // The run record names the set-aside snapshot: removed too.
    expect(v.stdout).toContain(`cache record ${run.rec.key} does not match its snapshots: removed`);
    const again = await runCli(['du', '--verify', '--root', root]);
    expect(again.stdout).not.toContain('repaired:');
    expect(again.stdout).toMatch(/; 0 repaired/);
    await expectHealed(root);
  });
});
