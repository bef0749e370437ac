// `--iidfile` and `--metadata-file`, written as buildx writes them so scripts reading them keep working.
import type { BuildResult } from './build.js';
import { writeFileAtomic } from '../util/fs.js';

/** buildx's metadata keys for the first image-producing export. */
export function buildMetadata(result: BuildResult): Record<string, unknown> {
  const image = result.exports.find((e) => e.manifestDigest);
  if (!image) return {};
  const out: Record<string, unknown> = {
    'containerimage.config.digest': image.configDigest,
    'containerimage.digest': image.manifestDigest,
    'containerimage.descriptor': image.descriptor,
  };
  if (image.names?.length) out['image.name'] = image.names.join(',');
  return out;
}

/**
 * The image ID (`--iidfile`, `--quiet`): the config digest (Docker's image ID), except for a pushed image, which
 * a registry knows by its manifest digest, and a multi-platform one, which has no single config (its index digest).
 */
export function imageID(result: BuildResult): string | undefined {
  const image = result.exports.find((e) => e.manifestDigest);
  if (!image) return undefined;
  return image.pushed || !image.configDigest ? image.manifestDigest : image.configDigest;
}

export async function writeBuildFiles(result: BuildResult, files: { iidfile?: string; metadataFile?: string }): Promise<void> {
  if (files.iidfile) {
    const id = imageID(result);
    if (id) await writeFileAtomic(files.iidfile, id);
  }
  if (files.metadataFile) await writeFileAtomic(files.metadataFile, JSON.stringify(buildMetadata(result), null, 2));
}
