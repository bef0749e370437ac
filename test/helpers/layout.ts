// Reading OCI layouts with Debian's umoci (0.4), which unpacks a tag only when it names an image manifest.
// BuildKit-style images are an index when they carry attestations (the default provenance): the tag is
// pointed at the index's image for the wanted architecture first, in the test's own copy of the layout.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs/promises';
import path from 'node:path';

const exec = promisify(execFile);
const ARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };
export const hostArch = ARCH[process.arch] ?? process.arch;

const isAttestation = (m: any) => m.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest';

/** The image manifest descriptor an index (or a manifest) in a layout stands for, for `arch`. */
export async function imageDescriptor(layout: string, desc: any, arch = hostArch): Promise<any> {
  if (!/index|manifest\.list/.test(desc.mediaType)) return desc;
  const index = JSON.parse(await fs.readFile(path.join(layout, 'blobs', desc.digest.replace(':', '/')), 'utf8'));
  const images = index.manifests.filter((m: any) => !isAttestation(m));
  const pick = images.find((m: any) => m.platform?.architecture === arch) ?? images[0];
  return imageDescriptor(layout, pick, arch);
}

export async function umociUnpack(layout: string, tag: string, bundle: string, opts: { arch?: string } = {}): Promise<void> {
  const file = path.join(layout, 'index.json');
  const top = JSON.parse(await fs.readFile(file, 'utf8'));
  top.manifests = await Promise.all(top.manifests.map(async (m: any) => {
    if (m.annotations?.['org.opencontainers.image.ref.name'] !== tag) return m;
    const image = await imageDescriptor(layout, m, opts.arch);
    return { mediaType: image.mediaType, digest: image.digest, size: image.size, annotations: m.annotations };
  }));
  await fs.writeFile(file, JSON.stringify(top));
  await exec('umoci', ['unpack', '--image', `${layout}:${tag}`, bundle]);
}

/** The image manifest (JSON) a layout directory's index.json names first, through an index if it is one. */
export async function readImageManifest(layout: string, arch = hostArch): Promise<any> {
  const top = JSON.parse(await fs.readFile(path.join(layout, 'index.json'), 'utf8')).manifests[0];
  const desc = await imageDescriptor(layout, top, arch);
  return JSON.parse(await fs.readFile(path.join(layout, 'blobs', desc.digest.replace(':', '/')), 'utf8'));
}
