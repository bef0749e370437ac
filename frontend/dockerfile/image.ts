// The OCI image config the frontend produces for the target stage (config fields and history; the
// exporter adds rootfs and timestamps). Field names are those of the JSON document.
import type { Digest, Platform } from '../../solver/llb/ops.js';

/** Durations in nanoseconds. */
export interface HealthcheckConfig {
  Test?: string[];
  Interval?: number;
  Timeout?: number;
  StartPeriod?: number;
  StartInterval?: number;
  Retries?: number;
}

export interface ImageConfig {
  User?: string;
  Env?: string[];
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  WorkingDir?: string;
  Labels?: Record<string, string>;
  ExposedPorts?: Record<string, object>;
  Volumes?: Record<string, object>;
  StopSignal?: string;
  Shell?: string[];
  OnBuild?: string[] | null;
  Healthcheck?: HealthcheckConfig;
  /** Docker's marker that a shell-form CMD is already one string (BuildKit sets it). */
  ArgsEscaped?: boolean;
}

export interface HistoryEntry {
  created?: string;
  created_by?: string;
  author?: string;
  comment?: string;
  empty_layer?: boolean;
}

export interface ImageConfigFile {
  created?: string;
  author?: string;
  architecture: string;
  os: string;
  variant?: string;
  'os.version'?: string;
  'os.features'?: string[];
  /** May be missing in a base image's config; always present in what the frontend produces. */
  config?: ImageConfig;
  rootfs?: { type: 'layers'; diff_ids: Digest[] };
  history?: HistoryEntry[];
}

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
