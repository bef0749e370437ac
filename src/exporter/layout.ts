// OCI image layout tarballs (oci-layout, index.json, blobs/sha256/...), the container for both the OCI and
// the docker exporter. Blobs stream from the content store; a file destination is written to a temp file
// and renamed, so a reader never sees half an archive.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { BlobNotFoundError, type ContentStore } from '../content/store.js';
import { Annotation, MediaType, isIndexType, isManifestType, type Descriptor, type Index, type Manifest } from '../image/types.js';
import type { Reference } from '../registry/reference.js';

export interface ArchiveFile {
  name: string;
  data: Buffer;
}

/** Fixed metadata for every entry: equal images give equal archives. */
const MTIME = new Date(0);

/** `blobs/sha256/<hex>`, the path of a blob inside a layout. */
export const blobName = (d: Descriptor): string => `blobs/${d.digest.replace(':', '/')}`;

/** The descriptors and everything they reference (manifests, configs, layers, nested indexes), each once. */
export async function reachableBlobs(store: ContentStore, roots: Descriptor[]): Promise<Descriptor[]> {
  const seen = new Map<string, Descriptor>();
  const visit = async (d: Descriptor): Promise<void> => {
    if (seen.has(d.digest)) return;
    seen.set(d.digest, d);
    if (isManifestType(d.mediaType)) {
      const m = JSON.parse((await store.readBuffer(d.digest)).toString('utf8')) as Manifest;
      for (const child of [m.config, ...m.layers]) await visit(child);
    } else if (isIndexType(d.mediaType)) {
      const idx = JSON.parse((await store.readBuffer(d.digest)).toString('utf8')) as Index;
      for (const child of idx.manifests) await visit(child);
    }
  };
  for (const d of roots) await visit(d);
  return [...seen.values()];
}

/**
 * index.json entries for `desc` under each name, annotated as containerd's archive exporter (which
 * BuildKit uses) does: the OCI ref name is the tag only, the containerd annotation the full name.
 */
export function layoutIndex(desc: Descriptor, names: Reference[]): Index {
  const plain: Descriptor = { mediaType: desc.mediaType, digest: desc.digest, size: desc.size };
  const manifests = names.length === 0
    ? [plain]
    : names.map((ref) => ({
        ...plain,
        annotations: { [Annotation.containerdImageName]: ref.toString(), [Annotation.refName]: ref.tag ?? ref.digest! },
      }));
  return { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests };
}

export async function writeLayoutTar(
  store: ContentStore,
  contents: { blobs: Descriptor[]; index: Index; extraFiles?: ArchiveFile[] },
  dest: string,
): Promise<void> {
  const pack = tar.pack();
  const tmp = dest === '-' ? null : path.join(path.dirname(dest), `.${path.basename(dest)}.${randomBytes(6).toString('hex')}.tmp`);
  const sink = tmp ? pipeline(pack, fs.createWriteStream(tmp, { mode: 0o644 })) : pipeline(pack, process.stdout, { end: false });
  try {
    await Promise.all([sink, fillArchive(pack, store, contents)]);
    if (tmp) await fsp.rename(tmp, dest);
  } catch (err) {
    pack.destroy();
    await sink.catch(() => undefined);
    if (tmp) await fsp.rm(tmp, { force: true });
    throw err;
  }
}

/**
 * Writes a layout directory: blobs first (each copied to a temp name and renamed), then oci-layout and
 * index.json, replaced atomically, so the index never names a missing blob. Blobs already there stay.
 */
export async function writeLayoutDir(store: ContentStore, contents: { blobs: Descriptor[]; index: Index }, dest: string): Promise<void> {
  const blobDir = path.join(dest, 'blobs', 'sha256');
  await fsp.mkdir(blobDir, { recursive: true });
  for (const blob of contents.blobs) {
    const target = path.join(dest, blobName(blob));
    if (await fsp.stat(target).then((s) => s.size === blob.size, () => false)) continue;
    if (!(await store.has(blob.digest))) throw new BlobNotFoundError(blob.digest);
    const tmp = `${target}.${randomBytes(6).toString('hex')}.tmp`;
    await fsp.copyFile(store.blobPath(blob.digest), tmp);
    await fsp.chmod(tmp, 0o644);
    await fsp.rename(tmp, target);
  }
  const put = async (name: string, data: string) => {
    const tmp = path.join(dest, `.${name}.${randomBytes(6).toString('hex')}.tmp`);
    await fsp.writeFile(tmp, data, { mode: 0o644 });
    await fsp.rename(tmp, path.join(dest, name));
  };
  await put('oci-layout', JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await put('index.json', JSON.stringify(contents.index));
}

async function fillArchive(
  pack: tar.Pack,
  store: ContentStore,
  contents: { blobs: Descriptor[]; index: Index; extraFiles?: ArchiveFile[] },
): Promise<void> {
  const file = (name: string, data: Buffer): Promise<void> =>
    new Promise((resolve, reject) => pack.entry({ name, mode: 0o444, mtime: MTIME }, data, (err) => (err ? reject(err) : resolve())));
  const dir = (name: string): Promise<void> =>
    new Promise((resolve, reject) => pack.entry({ name, type: 'directory', mode: 0o755, mtime: MTIME }, (err) => (err ? reject(err) : resolve())));

  await file('oci-layout', Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' })));
  await dir('blobs/');
  await dir('blobs/sha256/');
  for (const blob of contents.blobs) {
    const stat = await store.stat(blob.digest);
    if (!stat) throw new BlobNotFoundError(blob.digest);
    const done = new Promise<void>((resolve, reject) => {
      const entry = pack.entry({ name: blobName(blob), size: stat.size, mode: 0o444, mtime: MTIME }, (err) => (err ? reject(err) : resolve()));
      copyInto(store.createReadStream(blob.digest), entry).catch(reject);
    });
    await done;
  }
  await file('index.json', Buffer.from(JSON.stringify(contents.index)));
  for (const f of contents.extraFiles ?? []) await file(f.name, f.data);
  pack.finalize();
}

/** Copies a file stream into a tar entry, respecting its backpressure. */
async function copyInto(src: fs.ReadStream, entry: NodeJS.WritableStream): Promise<void> {
  for await (const chunk of src) {
    if (!entry.write(chunk as Buffer)) await once(entry as unknown as NodeJS.EventEmitter, 'drain');
  }
  entry.end();
}
