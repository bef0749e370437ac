// Public API for embedding the builder as a build backend.
export { build, BuildError, defaultRoot, type BuildOptions, type BuildResult } from './client/build.js';
export { parseOutput, type OutputSpec } from './client/outputs.js';
export { checkReport, warningSummary, sourceExcerpt } from './client/checks.js';
export type { LintWarning } from '../frontend/dockerfile/linter.js';
export { parsePlatform, formatPlatform, hostPlatform } from './client/platform.js';
export { PlainProgress, quietProgress, type ProgressWriter, type ProgressMode } from './progress/printer.js';
export { UserError, BuilderError } from './util/errors.js';
export type { Definition } from '../solver/llb/definition.js';
export { installEmulators, type InstalledEmulator } from './executor/emulation.js';
