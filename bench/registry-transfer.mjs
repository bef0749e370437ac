#!/usr/bin/env node
// Push and pull throughput of our registry client over loopback, beside skopeo copying the same image in
// the same run: a 10-layer image of BENCH_MB (default 500) MB total, random (incompressible) layers.
// Run after `npx tsc -p .`: node bench/registry-transfer.mjs
import { spawn, execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ContentStore } from '../dist/src/content/store.js';
import { writeImage } from '../dist/src/exporter/image.js';
import { exportOCIDir } from '../dist/src/exporter/oci.js';
import { RegistryClient } from '../dist/src/registry/client.js';
import { pushImage } from '../dist/src/registry/push.js';
import { parseReference } from '../dist/src/registry/reference.js';

const exec = promisify(execFile);
const totalMB = Number(process.env.BENCH_MB ?? 500);
const LAYERS = 10;

async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

async function startRegistry(dir) {
  const host = `127.0.0.1:${await freePort()}`;
  await fs.writeFile(`${dir}/config.yml`, `version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: ${dir}/data\nhttp:\n  addr: ${host}\n`);
  const child = spawn('/usr/bin/docker-registry', ['serve', `${dir}/config.yml`], { stdio: 'ignore' });
  for (;;) {
    try { if ((await fetch(`http://${host}/v2/`)).ok) break; } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { host, stop: () => child.kill() };
}

const mbps = (bytes, ms) => (bytes / (1 << 20) / (ms / 1000)).toFixed(1);

const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'bench-registry-'));
const reg = await startRegistry(dir);
try {
  const store = new ContentStore(`${dir}/content`);
  const layers = [];
  const per = Math.floor((totalMB << 20) / LAYERS);
  for (let i = 0; i < LAYERS; i++) {
    const blob = await store.write(randomBytes(per));
    layers.push({ digest: blob.digest, size: blob.size, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffID: blob.digest });
  }
  const image = await writeImage(store, { config: { architecture: 'amd64', os: 'linux' }, layers });
  const bytes = layers.reduce((n, l) => n + l.size, 0);
  const client = new RegistryClient();

  let t = Date.now();
  await pushImage(client, store, image.manifest, [parseReference(`${reg.host}/bench/ours:1`)]);
  const pushMs = Date.now() - t;

  const pullStore = new ContentStore(`${dir}/pulled`);
  t = Date.now();
  const ref = parseReference(`${reg.host}/bench/ours:1`);
  const resolved = await client.resolve(ref, { os: 'linux', architecture: 'amd64' });
  await Promise.all(resolved.layers.map((l) => client.fetchBlob(resolved.ref, l, pullStore)));
  const pullMs = Date.now() - t;

  await exportOCIDir(store, [{ manifest: image.manifest }], { dest: `${dir}/layout`, names: [`${reg.host}/bench/x:1`] });
  t = Date.now();
  await exec('skopeo', ['copy', '-q', '--dest-tls-verify=false', `oci:${dir}/layout:1`, `docker://${reg.host}/bench/skopeo:1`]);
  const skopeoPushMs = Date.now() - t;
  t = Date.now();
  await exec('skopeo', ['copy', '-q', '--src-tls-verify=false', `docker://${reg.host}/bench/skopeo:1`, `oci:${dir}/skopeo-pulled:1`]);
  const skopeoPullMs = Date.now() - t;

  console.log(`image: ${LAYERS} layers, ${(bytes / (1 << 20)).toFixed(0)} MiB`);
  console.log(`builder push: ${pushMs} ms, ${mbps(bytes, pushMs)} MB/s   skopeo push: ${skopeoPushMs} ms, ${mbps(bytes, skopeoPushMs)} MB/s`);
  console.log(`builder pull: ${pullMs} ms, ${mbps(bytes, pullMs)} MB/s   skopeo pull: ${skopeoPullMs} ms, ${mbps(bytes, skopeoPullMs)} MB/s`);
} finally {
  reg.stop();
  await fs.rm(dir, { recursive: true, force: true });
}
