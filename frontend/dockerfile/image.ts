// The OCI image config the frontend produces for the target stage (config fields and history; the
// exporter adds rootfs and timestamps). Field names are those of the JSON document.
import type { Platform } from '../../solver/llb/ops.js';

// The image-spec types are shared with the exporters: the config is the frontend's second output,
// beside the LLB. Type-only, so the frontend does not load any worker code.
import type { ImageConfig, ImageConfigFile } from '../../src/image/types.js';
export type { ImageConfig, ImageConfigFile, HistoryEntry, HealthConfig } from '../../src/image/types.js';

/** An image config as the frontend builds it: `config` always present. */
export type StageImage = ImageConfigFile & { config: ImageConfig };

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** The config of `FROM scratch`: no layers, working directory `/`, the default PATH. */
export function emptyImage(platform: Platform): StageImage {
  return {
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    config: { WorkingDir: '/', Env: [`PATH=${DEFAULT_PATH}`] },
    rootfs: { type: 'layers', diff_ids: [] },
  };
}

export function cloneImage(image: ImageConfigFile): StageImage {
  const copy = structuredClone(image);
  return { ...copy, config: copy.config ?? {} };
}
