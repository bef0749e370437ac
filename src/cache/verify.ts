// `builder du --verify`: walks the state directory and repairs what builds would otherwise meet one at a
// time: blobs that no longer hash to their names, member indexes and unpacked sizes without a sound blob (removed),
// snapshot markers that do not parse (set aside; the snapshot is swept), cache records and `layers/`
// records that do not match their snapshots (removed: the step runs or the layer is extracted again), an
// unreadable images.json (set aside) and stored images whose documents are gone. Call holding the state
// directory's exclusive lock.
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Digest } from '../../solver/llb/ops.js';
import { sha256 } from '../../solver/llb/digest.js';
import { ContentStore } from '../content/store.js';
import { Snapshotter } from '../snapshot/snapshotter.js';
import { ImageStore } from '../image/store.js';
import { CacheRecords } from './records.js';

export interface VerifyReport {
  blobs: number;
  snapshots: number;
  records: number;
  layers: number;
  images: number;
  /** One line per thing found wrong and what was done about it. */
  repaired: string[];
}

const HEX_RE = /^[0-9a-f]{64}$/;

export async function verifyState(root: string): Promise<VerifyReport> {
  const store = new ContentStore(path.join(root, 'content'));
  const snapshots = new Snapshotter(root);
  const records = new CacheRecords(root, snapshots);
  const report: VerifyReport = { blobs: 0, snapshots: 0, records: 0, layers: 0, images: 0, repaired: [] };
  const note = (line: string) => report.repaired.push(line);

  for (const name of await fs.readdir(path.join(root, 'content', 'blobs', 'sha256')).catch(() => [] as string[])) {
    if (!HEX_RE.test(name)) continue;
    report.blobs++;
    if ((await store.check(`sha256:${name}`)) === 'corrupt') note(`blob sha256:${name} did not hash to its name: removed`);
  }
  for (const name of await fs.readdir(path.join(root, 'content', 'members')).catch(() => [] as string[])) {
    const m = /^([0-9a-f]{64})\.json$/.exec(name);
    if (!m) continue;
    if (!(await store.readMemberIndex(`sha256:${m[1]}`))) {
      await fs.rm(path.join(root, 'content', 'members', name), { force: true });
      note(`member index ${name} unreadable or without its blob: removed`);
    }
  }
  // A layer's unpacked size (Docker's layer size) without its blob, or unreadable: measured again when needed.
  for (const name of await fs.readdir(path.join(root, 'content', 'unpacked')).catch(() => [] as string[])) {
    if (!HEX_RE.test(name)) continue;
    const d = `sha256:${name}` as Digest;
    if ((await store.readUnpackedSize(d)) === undefined || !(await store.has(d))) {
      await fs.rm(store.unpackedSizePath(d), { force: true });
      note(`unpacked size ${name} unreadable or without its blob: removed`);
    }
  }

  const infos = new Map<string, { diffID?: Digest } | null>();
  for (const id of await fs.readdir(path.join(root, 'snapshots')).catch(() => [] as string[])) {
    if (!/^[1-9][0-9]*$/.test(id)) continue;
    const marker = path.join(root, 'snapshots', id, 'committed.json');
    const hadMarker = await fs.access(marker).then(() => true, () => false);
    const info = await snapshots.info<{ diffID?: Digest }>(id);
    infos.set(id, info);
    if (info) report.snapshots++;
    else if (hadMarker) note(`snapshot ${id}: committed.json unreadable: set aside, the snapshot is removed`);
  }

  for (const rec of await records.listFiles()) {
    report.records++;
    if (!(await records.valid(rec.key))) {
      await records.remove(rec.key);
      note(`cache record ${rec.key} does not match its snapshots: removed`);
    }
  }

  const layersDir = path.join(root, 'layers');
  for (const name of await fs.readdir(layersDir).catch(() => [] as string[])) {
    if (!HEX_RE.test(name)) continue;
    report.layers++;
    if (!(await layerRecordSound(name, layersDir, infos))) {
      await fs.rm(path.join(layersDir, name), { force: true });
      note(`layer record ${name} does not match its snapshots: removed`);
    }
  }

  const images = new ImageStore(root, store);
  const hadImages = await fs.access(path.join(root, 'images.json')).then(() => true, () => false);
  const stored = await images.list();
  if (hadImages && !(await fs.access(path.join(root, 'images.json')).then(() => true, () => false))) {
    note('images.json unreadable: set aside as images.json.corrupt');
  }
  for (const image of stored) {
    report.images++;
    const ok = await store.readBuffer(image.target.digest as Digest).then(() => true, () => false);
    if (!ok) {
      await images.remove(image.name).catch(() => undefined);
      note(`image ${image.name}: ${image.target.digest} is gone or damaged: name removed`);
    }
  }

  // Sweeps what was set aside (snapshots whose markers did not parse).
  await snapshots.init();
  return report;
}

/** Whether a `layers/<chain id>` record names a committed snapshot whose chain of diff ids gives that chain id. */
async function layerRecordSound(name: string, dir: string, infos: Map<string, { diffID?: Digest } | null>): Promise<boolean> {
  let rec: { snapshot?: unknown; parent?: unknown };
  try {
    rec = JSON.parse(await fs.readFile(path.join(dir, name), 'utf8')) as typeof rec;
  } catch {
    return false;
  }
  const parent = rec?.parent ?? [];
  if (typeof rec?.snapshot !== 'string' || !Array.isArray(parent)) return false;
  let chain: string | undefined;
  for (const id of [...parent, rec.snapshot]) {
    const diffID = typeof id === 'string' ? infos.get(id)?.diffID : undefined;
    if (!diffID) return false;
    chain = chain ? sha256(`${chain} ${diffID}`) : diffID;
  }
  return chain === `sha256:${name}`;
}
