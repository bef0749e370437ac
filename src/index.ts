// Public API for embedding the builder as a build backend.
export { build, BuildError, defaultRoot, type BuildOptions, type BuildResult } from './client/build.js';
export { parseOutput, type OutputSpec } from './client/outputs.js';
export { resolveAttest, attestSpecs, type AttestOptions, type AttestRequest, type ProvenanceRequest, type SbomRequest } from './attest/options.js';
export { PROVENANCE_V02, PROVENANCE_V1 } from './attest/provenance.js';
export { SPDX_PREDICATE } from './attest/sbom.js';
export { INTOTO_MEDIA_TYPE, isAttestationManifest, type Statement } from './attest/manifest.js';
export { checkReport, warningSummary, sourceExcerpt, type BuildWarning, type StepWarning } from './client/checks.js';
export type { LintWarning } from '../frontend/dockerfile/linter.js';
export { parsePlatform, formatPlatform, hostPlatform } from './client/platform.js';
export { PlainProgress, quietProgress, type ProgressMode } from './progress/printer.js';
export { completeWriter, type ProgressWriter, type Vertex, type VertexStatus, type ProgressWarning, type DoneOptions } from './progress/writer.js';
export { RawJsonProgress, type SolveStatus } from './progress/rawjson.js';
export { TtyProgress } from './progress/tty.js';
export { UserError, BuilderError } from './util/errors.js';
export type { Definition } from '../solver/llb/definition.js';
export { installEmulators, type InstalledEmulator } from './executor/emulation.js';
export { solve, type SolveOptions } from './client/solve.js';
export { progressStream, EventProgress, replay, teeProgress, type ProgressEvent } from './progress/events.js';
export { serve, type ServeOptions, type Server } from './server/server.js';
export { remoteBuild, type RemoteBuildRequest } from './server/client.js';
export { DefinitionBuilder, serializeDefinition, parseDefinition } from '../solver/llb/definition.js';
export type * from '../solver/llb/ops.js';
export { RegistryClient, type RegistryClientOptions } from './registry/client.js';
export { builderConfigPath, loadBuilderConfig, type BuilderConfig, type RegistryHostConfig } from './registry/config.js';
export { pushImage, type PushOptions } from './registry/push.js';
export { parseReference, type Reference } from './registry/reference.js';
export { ImageStore, type StoredImage } from './image/store.js';
export {
  listImages, tagImage, removeImages, pruneImages, inspectImage, imageHistory, imageLayers,
  type ImageListOptions, type ImageRow, type RemoveResult, type HistoryRow, type LayerRow,
} from './image/images.js';
export { saveImages, loadImages, pullImage, pushStoredImage, type SaveOptions, type LoadedImage, type PullResult } from './image/transfer.js';
export {
  runContainer, listContainerRows, removeContainers, diffContainer, commitContainer,
  type RunOptions as ContainerRunOptions, type CommitOptions, type Change,
} from './container/run.js';
export { listContainers, inspectContainer, type ContainerRecord } from './container/containers.js';
export { prune, diskUsage, pruneCacheDir, verifyStateDir, type PruneOptions, type Usage, type VerifyReport } from './client/prune.js';
export { parseCacheTo, parseCacheFrom, type CacheToSpec, type CacheFromSpec } from './client/remotecache.js';
export { parseCall, formatOutline, formatTargets, goJSON, type CallName, type CallSpec } from './client/subrequests.js';
export type { Outline, OutlineArg, OutlineSecret, TargetList, Target } from '../frontend/dockerfile/subrequests.js';
export { bake, resolveBake, formatBake, targetBuildOptions, DEFAULT_FILES, type BakeOptions, type BakeResult, type BakeDefinition, type BakeTarget, type BakeGroup } from './client/bake.js';
