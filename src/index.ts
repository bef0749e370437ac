// Public API for embedding the builder as a build backend.
export { build, BuildError, defaultRoot, type BuildOptions, type BuildResult } from './client/build.js';
export { parseOutput, type OutputSpec } from './client/outputs.js';
export { parsePlatform, formatPlatform, hostPlatform } from './client/platform.js';
export { PlainProgress, quietProgress, type ProgressWriter, type ProgressMode } from './progress/printer.js';
export { UserError, BuilderError } from './util/errors.js';
export type { Definition } from '../solver/llb/definition.js';
export { RegistryClient, type RegistryClientOptions } from './registry/client.js';
export { pushImage, type PushOptions } from './registry/push.js';
export { parseReference, type Reference } from './registry/reference.js';
export { ImageStore, type StoredImage } from './image/store.js';
