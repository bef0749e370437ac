// Build checks: BuildKit's lint rules with their names, descriptions, URLs and messages, and the
// `# check=skip=...;error=true;experimental=...` configuration (the directive, or a comment right above an
// instruction). The frontend reports warnings while it converts; they never fail a build unless
// `error=true`, and `builder build --check` only reports them.
import { DockerfileError } from './errors.js';
import type { InstructionLocation } from './instructions.js';

export interface LintRule {
  name: string;
  description: string;
  url: string;
  experimental?: boolean;
}

const rule = (name: string, slug: string, description: string, experimental = false): LintRule =>
  ({ name, description, url: `https://docs.docker.com/go/dockerfile/rule/${slug}/`, ...(experimental ? { experimental } : {}) });

export const RULES = {
  StageNameCasing: rule('StageNameCasing', 'stage-name-casing', 'Stage names should be lowercase'),
  FromAsCasing: rule('FromAsCasing', 'from-as-casing', "The 'as' keyword should match the case of the 'from' keyword"),
  NoEmptyContinuation: rule('NoEmptyContinuation', 'no-empty-continuation', 'Empty continuation lines will become errors in a future release'),
  ConsistentInstructionCasing: rule('ConsistentInstructionCasing', 'consistent-instruction-casing', 'All commands within the Dockerfile should use the same casing (either upper or lower)'),
  DuplicateStageName: rule('DuplicateStageName', 'duplicate-stage-name', 'Stage names should be unique'),
  ReservedStageName: rule('ReservedStageName', 'reserved-stage-name', 'Reserved words should not be used as stage names'),
  JSONArgsRecommended: rule('JSONArgsRecommended', 'json-args-recommended', 'JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals'),
  MaintainerDeprecated: rule('MaintainerDeprecated', 'maintainer-deprecated', 'The MAINTAINER instruction is deprecated, use a label instead to define an image author'),
  UndefinedArgInFrom: rule('UndefinedArgInFrom', 'undefined-arg-in-from', 'FROM command must use declared ARGs'),
  WorkdirRelativePath: rule('WorkdirRelativePath', 'workdir-relative-path', 'Relative workdir without an absolute workdir declared within the build can have unexpected results if the base image changes'),
  UndefinedVar: rule('UndefinedVar', 'undefined-var', 'Variables should be defined before their use'),
  MultipleInstructionsDisallowed: rule('MultipleInstructionsDisallowed', 'multiple-instructions-disallowed', 'Multiple instructions of the same type should not be used in the same stage'),
  LegacyKeyValueFormat: rule('LegacyKeyValueFormat', 'legacy-key-value-format', 'Legacy key/value format with whitespace separator should not be used'),
  RedundantTargetPlatform: rule('RedundantTargetPlatform', 'redundant-target-platform', 'Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior'),
  SecretsUsedInArgOrEnv: rule('SecretsUsedInArgOrEnv', 'secrets-used-in-arg-or-env', 'Sensitive data should not be used in the ARG or ENV commands'),
  InvalidDefaultArgInFrom: rule('InvalidDefaultArgInFrom', 'invalid-default-arg-in-from', 'Default value for global ARG results in an empty or invalid base image name'),
  FromPlatformFlagConstDisallowed: rule('FromPlatformFlagConstDisallowed', 'from-platform-flag-const-disallowed', 'FROM --platform flag should not use a constant value'),
  CopyIgnoredFile: rule('CopyIgnoredFile', 'copy-ignored-file', 'Attempting to Copy file that is excluded by .dockerignore'),
  InvalidDefinitionDescription: rule('InvalidDefinitionDescription', 'invalid-definition-description',
    'Comment for build stage or argument should follow the format: `# <arg/stage name> <description>`. If this is not intended to be a description comment, add an empty line or comment between the instruction and the comment.', true),
  ExposeProtoCasing: rule('ExposeProtoCasing', 'expose-proto-casing', 'Protocol in EXPOSE instruction should be lowercase'),
  ExposeInvalidFormat: rule('ExposeInvalidFormat', 'expose-invalid-format', 'IP address and host-port mapping should not be used in EXPOSE instruction. This will become an error in a future release'),
} satisfies Record<string, LintRule>;

export type RuleName = keyof typeof RULES;

/** The messages, as BuildKit's linter formats them. */
export const MESSAGES = {
  StageNameCasing: (stage: string) => `Stage name '${stage}' should be lowercase`,
  FromAsCasing: (from: string, as: string) => `'${as}' and '${from}' keywords' casing do not match`,
  NoEmptyContinuation: () => 'Empty continuation line',
  ConsistentInstructionCasing: (cmd: string, casing: string) => `Command '${cmd}' should match the case of the command majority (${casing})`,
  DuplicateStageName: (stage: string) => `Duplicate stage name ${JSON.stringify(stage)}, stage names should be unique`,
  ReservedStageName: (stage: string) => `Stage name should not use the same name as reserved stage ${JSON.stringify(stage)}`,
  JSONArgsRecommended: (instruction: string) => `JSON arguments recommended for ${instruction} to prevent unintended behavior related to OS signals`,
  MaintainerDeprecated: () => 'Maintainer instruction is deprecated in favor of using label',
  UndefinedArgInFrom: (arg: string, suggestion?: string) => `FROM argument '${arg}' is not declared${suggestion ? ` (did you mean ${suggestion}?)` : ''}`,
  WorkdirRelativePath: (workdir: string) => `Relative workdir ${JSON.stringify(workdir)} can have unexpected results if the base image changes`,
  UndefinedVar: (arg: string, suggestion?: string) => `Usage of undefined variable '$${arg}'${suggestion ? ` (did you mean $${suggestion}?)` : ''}`,
  MultipleInstructionsDisallowed: (instruction: string) => `Multiple ${instruction} instructions should not be used in the same stage because only the last one will be used`,
  LegacyKeyValueFormat: (cmd: string) => `"${cmd} key=value" should be used instead of legacy "${cmd} key value" format`,
  RedundantTargetPlatform: (platformVar: string) => `Setting platform to predefined ${platformVar} in FROM is redundant as this is the default behavior`,
  SecretsUsedInArgOrEnv: (instruction: string, key: string) => `Do not use ARG or ENV instructions for sensitive data (${instruction} ${JSON.stringify(key)})`,
  InvalidDefaultArgInFrom: (baseName: string) => `Default value for ARG ${baseName} results in empty or invalid base image name`,
  FromPlatformFlagConstDisallowed: (platform: string) => `FROM --platform flag should not use constant value ${JSON.stringify(platform)}`,
  CopyIgnoredFile: (cmd: string, file: string) => `Attempting to ${cmd} file ${JSON.stringify(file)} that is excluded by .dockerignore`,
  InvalidDefinitionDescription: (instruction: string, name: string) => `Comment for ${instruction} should follow the format: \`# ${name} <description>\``,
  ExposeProtoCasing: (port: string) => `Defined protocol '${port}' in EXPOSE instruction should be lowercase`,
  ExposeInvalidFormat: (port: string) => `EXPOSE instruction should not define an IP address or host-port mapping, found '${port}'`,
} satisfies Record<RuleName, (...args: never[]) => string>;

export interface LintWarning {
  rule: RuleName;
  description: string;
  url: string;
  message: string;
  location?: InstructionLocation;
}

export interface CheckConfig {
  skip: Set<string>;
  skipAll: boolean;
  experimental: Set<string>;
  experimentalAll: boolean;
  error: boolean;
}

export const emptyCheckConfig = (): CheckConfig =>
  ({ skip: new Set(), skipAll: false, experimental: new Set(), experimentalAll: false, error: false });

/** `skip=A,B;error=true;experimental=all`, as BuildKit's ParseLintOptions. */
export function parseCheckOptions(value: string): CheckConfig {
  const config = emptyCheckConfig();
  const text = value.trim();
  if (text === '') return config;
  const parts = text.split(';');
  // Go's SplitN(…, 3): a third part keeps any further `;`.
  if (parts.length > 3) parts.splice(2, parts.length - 2, parts.slice(2).join(';'));
  for (const part of parts) {
    const eq = part.indexOf('=');
    if (eq < 0) throw new DockerfileError(`invalid check option ${JSON.stringify(part)}`);
    const key = part.slice(0, eq).trim();
    const v = part.slice(eq + 1).trim();
    const list = () => new Set(v.split(',').map((s) => s.trim()));
    if (key === 'skip') {
      if (v === 'all') config.skipAll = true;
      else config.skip = list();
    } else if (key === 'experimental') {
      if (v === 'all') config.experimentalAll = true;
      else config.experimental = list();
    } else if (key === 'error') {
      const b = parseGoBool(v);
      if (b === undefined) throw new DockerfileError(`failed to parse check option ${JSON.stringify(part)}: strconv.ParseBool: parsing ${JSON.stringify(v)}: invalid syntax`);
      config.error = b;
    } else {
      throw new DockerfileError(`invalid check option ${JSON.stringify(key)}`);
    }
  }
  return config;
}

function parseGoBool(s: string): boolean | undefined {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(s)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(s)) return false;
  return undefined;
}

function merge(a: CheckConfig, b: CheckConfig): CheckConfig {
  return {
    skip: new Set([...a.skip, ...b.skip]), skipAll: a.skipAll || b.skipAll,
    experimental: new Set([...a.experimental, ...b.experimental]), experimentalAll: a.experimentalAll || b.experimentalAll,
    error: a.error || b.error,
  };
}

const CHECK_COMMENT = /^#?\s*check\s*=\s*(.*)$/i;

/** Collects warnings under a configuration; comments right above an instruction may add to it. */
export class Linter {
  readonly warnings: LintWarning[] = [];
  private readonly seen = new Set<string>();

  constructor(readonly config: CheckConfig = emptyCheckConfig()) {}

  run<R extends RuleName>(name: R, location: InstructionLocation | undefined, comments: string[] | undefined, ...args: Parameters<(typeof MESSAGES)[R]>): void {
    const config = this.withComments(comments);
    const r: LintRule = RULES[name];
    if (r.experimental && !config.experimentalAll && !config.experimental.has(name)) return;
    if (!r.experimental && (config.skipAll || config.skip.has(name))) return;
    const message = (MESSAGES[name] as (...a: unknown[]) => string)(...args);
    // One warning per rule, message and place (stages dispatched twice, ONBUILD, ...).
    const key = `${name}|${message}|${location?.file}:${location?.startLine}`;
    if (this.seen.has(key)) return;
    this.seen.add(key);
    this.warnings.push({ rule: name, description: r.description, url: r.url, message, ...(location ? { location } : {}) });
  }

  private withComments(comments: string[] | undefined): CheckConfig {
    for (const c of comments ?? []) {
      const m = CHECK_COMMENT.exec(c.trim());
      if (!m) continue;
      try {
        return merge(this.config, parseCheckOptions(m[1].split(' ')[0]));
      } catch {
        return this.config;
      }
    }
    return this.config;
  }

  /** With `error=true`: the error that fails the build when there were warnings. */
  error(): DockerfileError | undefined {
    if (!this.config.error || this.warnings.length === 0) return undefined;
    const rules = [...new Set(this.warnings.map((w) => w.rule))];
    const err = new DockerfileError(`lint violation found for rules: ${rules.join(', ')}`, undefined, undefined, 'LINT_VIOLATION');
    return Object.assign(err, { warnings: [...this.warnings] });
  }
}

/** Key names that look like secrets (BuildKit's deny and allow word lists). */
export function looksLikeSecret(key: string): boolean {
  const deny = /(?:_|^)(?:apikey|auth|credential|credentials|key|password|pword|passwd|secret|token)(?:_|$)/i;
  const allow = /(?:_|^)(?:public|file|version)(?:_|$)/i;
  return deny.test(key) && !allow.test(key);
}
