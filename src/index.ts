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
export { solve, type SolveOptions } from './client/solve.js';
export { progressStream, EventProgress, replay, teeProgress, type ProgressEvent } from './progress/events.js';
export { serve, type ServeOptions, type Server } from './server/server.js';
export { remoteBuild, type RemoteBuildRequest } from './server/client.js';
export { DefinitionBuilder, serializeDefinition, parseDefinition } from '../solver/llb/definition.js';
export type * from '../solver/llb/ops.js';
