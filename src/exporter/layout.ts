// OCI image layout tarballs (oci-layout, index.json, blobs/sha256/...), the container for both the OCI and
// the docker exporter. Blobs go from the content store into the archive file inside the kernel; a file
// destination is written to a temp file and renamed, so a reader never sees half an archive.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { once } from 'node:events';
import type { ContentStore } from '../content/store.js';
import type { Digest } from '../../solver/llb/ops.js';
import { UserError } from '../util/errors.js';
import { Annotation, MediaType, isIndexType, isManifestType, type Descriptor, type Index, type Manifest } from '../image/types.js';
import type { Reference } from '../registry/reference.js';
import { encodeHeader } from '../archive/tar.js';
import { copyFileAtomic, removeStaleTemps, tempBeside } from '../util/fs.js';
import { copyRange, exchange } from '../native/fsx.js';

export interface ArchiveFile {
  name: string;
  data: Buffer;
}

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
  if (dest === '-') {
    // Nothing damaged leaves the store: each blob hashes to its name (what this process wrote is known to).
    await verifyBlobs(store, contents.blobs);
    await writeArchiveToStream(store, contents, process.stdout);
    return;
  }
  // Into a file: checked while it is copied (from the page cache the check and the copy share), and the
  // archive only takes the destination's place once every blob passed.
  const checked = verifyBlobs(store, contents.blobs);
  let failed = false;
  checked.catch(() => { failed = true; });
  // A run killed while writing here left its temp file: gone now, as this run writes the same place.
  await removeStaleTemps(dest);
  const tmp = tempBeside(dest);
  const fd = fs.openSync(tmp, 'w', 0o644);
  try {
    const write = (buf: Buffer) => {
      for (let off = 0; off < buf.length;) off += fs.writeSync(fd, buf, off);
    };
    for (const part of archiveParts(contents)) {
      if (failed) break;
      if (Buffer.isBuffer(part)) {
        write(part);
        continue;
      }
      // Blob bodies are copied inside the kernel, in chunks so the event loop gets a turn between them.
      const input = fs.openSync(store.blobPath(part.digest), 'r');
      try {
        for (let left = part.size; left > 0;) {
          const n = copyRange(input, fd, Math.min(left, COPY_CHUNK));
          // Shorter than its descriptor says: it hashed to its name, so the descriptor lies.
          if (n === 0) throw new BlobSizeError(part);
          left -= n;
          await new Promise((r) => setImmediate(r));
        }
      } finally {
        fs.closeSync(input);
      }
    }
    fs.closeSync(fd);
    await checked;
    await replaceFile(tmp, dest);
  } catch (err) {
    try { fs.closeSync(fd); } catch { /* closed already */ }
    await fsp.rm(tmp, { force: true });
    // A damaged blob explains a short copy too: its error comes first.
    await checked;
    throw err;
  }
}

const COPY_CHUNK = 16 << 20;

/** A descriptor whose size is not its blob's. */
export class BlobSizeError extends UserError {
  constructor(d: Descriptor) { super('BLOB_SIZE', `content ${d.digest} is shorter than the ${d.size} bytes its descriptor says`); }
}

/**
 * Checks every blob against its digest, several at a time. Damaged ones are all removed (so that one more
 * attempt makes them all again), and the first is named in the error.
 */
export async function verifyBlobs(store: ContentStore, blobs: Descriptor[]): Promise<void> {
  const queue = [...blobs];
  const errors: unknown[] = [];
  const worker = async () => {
    for (let d = queue.shift(); d; d = queue.shift()) await store.ensureSound(d.digest as Digest).catch((e: unknown) => errors.push(e));
  };
  await Promise.all([worker(), worker(), worker()]);
  if (errors.length) throw errors[0];
}

/**
 * Moves `tmp` to `dest` atomically. An archive already at `dest` is swapped out and then removed: renaming
 * over it would make ext4 write the new file out at once (its replace-by-rename safeguard) and free the old
 * one's blocks inside the rename, a tenth of a second for a big image.
 */
async function replaceFile(tmp: string, dest: string): Promise<void> {
  const existing = await fsp.lstat(dest).catch(() => null);
  try {
    if (!existing?.isFile()) throw new Error('nothing to swap with');
    exchange(tmp, dest);
  } catch {
    // No archive there yet, something that is not a file (rename says what is wrong with it), or a
    // filesystem without the swap.
    await fsp.rename(tmp, dest);
    return;
  }
  await fsp.rm(tmp, { force: true });
}

/**
 * The archive in order: header blocks and small files as buffers, blob bodies as descriptors (to be
 * copied, then padded by the next buffer). Every entry has fixed metadata: equal images give equal archives.
 */
function* archiveParts(contents: { blobs: Descriptor[]; index: Index; extraFiles?: ArchiveFile[] }): Generator<Buffer | Descriptor> {
  const file = (name: string, data: Buffer) => Buffer.concat([entryHeader(name, 'file', data.length), data, pad(data.length)]);
  yield file('oci-layout', Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' })));
  yield entryHeader('blobs/', 'dir', 0);
  yield entryHeader('blobs/sha256/', 'dir', 0);
  let prevSize = 0;
  for (const blob of contents.blobs) {
    yield Buffer.concat([pad(prevSize), entryHeader(blobName(blob), 'file', blob.size)]);
    yield blob;
    prevSize = blob.size;
  }
  yield Buffer.concat([pad(prevSize), file('index.json', Buffer.from(JSON.stringify(contents.index)))]);
  for (const f of contents.extraFiles ?? []) yield file(f.name, f.data);
  yield Buffer.alloc(1024); // end of archive: two zero blocks
}

function entryHeader(name: string, type: 'file' | 'dir', size: number): Buffer {
  return encodeHeader({ name, type, size, mode: type === 'dir' ? 0o755 : 0o444, uid: 0, gid: 0, mtime: 0 });
}

const pad = (size: number) => Buffer.alloc((512 - (size % 512)) % 512);

/** The same archive onto a stream (standard output), respecting its backpressure. */
async function writeArchiveToStream(
  store: ContentStore, contents: { blobs: Descriptor[]; index: Index; extraFiles?: ArchiveFile[] }, out: NodeJS.WritableStream,
): Promise<void> {
  const write = async (buf: Buffer) => {
    if (!out.write(buf)) await once(out as unknown as NodeJS.EventEmitter, 'drain');
  };
  for (const part of archiveParts(contents)) {
    if (Buffer.isBuffer(part)) await write(part);
    else for await (const chunk of store.createReadStream(part.digest)) await write(chunk as Buffer);
  }
}

/**
 * Writes a layout directory: blobs first (each copied to a temp name and renamed), then oci-layout and
 * index.json, replaced atomically, so the index never names a missing blob. Blobs already there stay.
 */
export async function writeLayoutDir(store: ContentStore, contents: { blobs: Descriptor[]; index: Index }, dest: string): Promise<void> {
  const blobDir = path.join(dest, 'blobs', 'sha256');
  await fsp.mkdir(blobDir, { recursive: true });
  await Promise.all([removeStaleTemps(blobDir, { anyName: true }), removeStaleTemps(path.join(dest, 'index.json')), removeStaleTemps(path.join(dest, 'oci-layout'))]);
  for (const blob of contents.blobs) {
    const target = path.join(dest, blobName(blob));
    if (await fsp.stat(target).then((s) => s.size === blob.size, () => false)) continue;
    await store.ensureSound(blob.digest as Digest);
    await copyFileAtomic(store.blobPath(blob.digest), target);
  }
  const put = async (name: string, data: string) => {
    const tmp = tempBeside(path.join(dest, name));
    await fsp.writeFile(tmp, data, { mode: 0o644 });
    await fsp.rename(tmp, path.join(dest, name));
  };
  await put('oci-layout', JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await put('index.json', JSON.stringify(contents.index));
}
