// The Dockerfile frontend: Dockerfile text -> LLB definition + OCI image config.
export { dockerfileToLLB, type ConvertOptions, type ConvertResult, type ImageMetaResolver } from './dockerfile/dockerfile2llb.js';
export type { ImageConfigFile, ImageConfig, HistoryEntry, HealthConfig } from './dockerfile/image.js';
export { DockerfileError, ShellExpansionError } from './dockerfile/errors.js';
export { parseDockerfile, dumpNode, type Node, type Heredoc, type ParseResult } from './dockerfile/parser.js';
export { parseInstructions, type Instruction, type Stage, type ParsedDockerfile } from './dockerfile/instructions.js';
export { ShellLex, EnvList, type EnvGetter } from './dockerfile/shell.js';
export { MAX_DOCKERFILE_BYTES } from './dockerfile/limits.js';
export { RULES as CHECK_RULES, parseCheckOptions, type LintWarning, type LintRule } from './dockerfile/linter.js';
