// One OCI layout from the parts of a build spread over nodes: each node's part arrives as a layout
// directory (fetched from the node), the client gathers their blobs in a temp content store, joins the
// platform manifests under one index, and writes the layout (tar or directory) where the output asked, as
// the OCI exporter of a single multi-platform build would.
import fs from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Digest, Platform } from '../../solver/llb/ops.js';
import { ContentStore } from '../content/store.js';
import { exportLayoutDir, exportLayoutTar, writeImageIndex } from '../exporter/oci.js';
import { isIndexType, type Descriptor, type Index } from '../image/types.js';
import { UserError } from '../util/errors.js';

export interface LayoutPart {
  /** A fetched OCI layout directory. */
  dir: string;
  /** The platforms the node built: the one platform of a manifest that names none. */
  platforms: string[];
}

/** Joins the parts into one layout at `dest` (a tar, or a directory with `tar: false`); returns its root. */
export async function assembleLayout(parts: LayoutPart[], order: string[], dest: string, opts: { names: string[]; tar: boolean }): Promise<Descriptor> {
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'builder-assemble-'));
  try {
    const store = new ContentStore(path.join(tmp, 'content'));
    const images: { manifest: Descriptor; platform?: Platform }[] = [];
    for (const part of parts) {
      const blobsDir = path.join(part.dir, 'blobs', 'sha256');
      for (const hex of await fs.readdir(blobsDir)) {
        await store.write(createReadStream(path.join(blobsDir, hex)), { digest: `sha256:${hex}` as Digest });
      }
      const index = JSON.parse(await fs.readFile(path.join(part.dir, 'index.json'), 'utf8')) as Index;
      const root = index.manifests?.[0];
      if (!root) throw new UserError('OUTPUT_FAILED', `a node's OCI layout has no image: ${part.dir}`);
      if (isIndexType(root.mediaType)) {
        const nested = JSON.parse((await store.readBuffer(root.digest as Digest)).toString('utf8')) as Index;
        for (const m of nested.manifests) images.push({ manifest: m, platform: m.platform as Platform | undefined });
      } else {
        const [os_, architecture, variant] = part.platforms[0].split('/');
        images.push({ manifest: { mediaType: root.mediaType, digest: root.digest, size: root.size }, platform: { os: os_, architecture, ...(variant ? { variant } : {}) } });
      }
    }
    const key = (p?: Platform) => (p ? [p.os, p.architecture, p.variant].filter(Boolean).join('/') : '');
    // Attestation manifests (unknown/unknown) after the images, as BuildKit's index lists them.
    const rank = (p?: Platform) => (order.indexOf(key(p)) < 0 ? order.length : order.indexOf(key(p)));
    images.sort((a, b) => rank(a.platform) - rank(b.platform));
    const root = await writeImageIndex(store, images);
    await fs.mkdir(path.dirname(dest), { recursive: true });
    if (opts.tar) await exportLayoutTar(store, root, { dest, names: opts.names });
    else await exportLayoutDir(store, root, { dest, names: opts.names });
    return root;
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
}
