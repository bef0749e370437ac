// Build checks: every rule documented in the conformance data (docs/rules/*.md, read in place) is
// implemented under its BuildKit name, and its example Dockerfile gives the message BuildKit's linter
// formats (frontend/dockerfile/linter/ruleset.go); the check directive and comments configure them.
import { describe, it, expect } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { dockerfileToLLB, type ImageMetaResolver } from '../../frontend/index.js';
import { RULES } from '../../frontend/dockerfile/linter.js';
import { DockerfileError } from '../../frontend/dockerfile/errors.js';
import { conformanceRoot, conformanceMissing } from '../helpers/conformance.js';
import type { Platform } from '../../solver/llb/ops.js';

// On a clone without the corpus the rule suite is reported as not run (see test/helpers/conformance.ts).
const rulesDir = path.join(conformanceRoot ?? '', 'docs/rules');
const amd64: Platform = { os: 'linux', architecture: 'amd64' };
const resolver: ImageMetaResolver = {
  async resolveImageConfig(ref, platform) {
    return {
      ref: `docker.io/library/${ref}@sha256:${'a'.repeat(64)}`,
      config: { architecture: platform.architecture, os: platform.os, config: { Env: ['PATH=/bin'] }, rootfs: { type: 'layers', diff_ids: [] }, history: [] },
    };
  },
};

async function check(dockerfile: string, extra: { contextExcludes?: string[]; buildArgs?: Record<string, string> } = {}) {
  const { warnings } = await dockerfileToLLB({ dockerfile, targetPlatform: amd64, buildPlatform: amd64, resolver, allStages: true, ...extra });
  return warnings.map((w) => ({ rule: w.rule, message: w.message, line: w.location?.startLine }));
}

/** The first "❌ Bad" example of a rule's page. */
function badExample(file: string): string {
  const text = fs.readFileSync(path.join(rulesDir, file), 'utf8');
  const m = /❌ Bad[\s\S]*?```dockerfile\n([\s\S]*?)```/.exec(text);
  return m ? m[1] : '';
}

// Per rule: the Dockerfile (the docs' bad example when it is a complete Dockerfile), the message and line.
const cases: Record<string, { dockerfile?: string; excludes?: string[]; message: string; line: number; experimental?: boolean }> = {
  ConsistentInstructionCasing: { message: "Command 'EntRYpOiNT' should match the case of the command majority (uppercase)", line: 3,
    dockerfile: 'FROM alpine\nRUN echo hello > /greeting.txt\nEntRYpOiNT ["cat", "/greeting.txt"]\n' },
  CopyIgnoredFile: { excludes: ['tmp'], message: 'Attempting to Copy file "tmp/helloworld.txt" that is excluded by .dockerignore', line: 2 },
  DuplicateStageName: { message: 'Duplicate stage name "builder", stage names should be unique', line: 4 },
  ExposeInvalidFormat: { message: "EXPOSE instruction should not define an IP address or host-port mapping, found '127.0.0.1:80:80'", line: 2 },
  ExposeProtoCasing: { message: "Defined protocol '80/TcP' in EXPOSE instruction should be lowercase", line: 2 },
  FromAsCasing: { message: "'as' and 'FROM' keywords' casing do not match", line: 1 },
  FromPlatformFlagConstDisallowed: { message: 'FROM --platform flag should not use constant value "linux/amd64"', line: 1 },
  InvalidDefaultArgInFrom: { message: 'Default value for ARG busybox:${TAG} results in empty or invalid base image name', line: 2 },
  InvalidDefinitionDescription: { message: 'Comment for FROM should follow the format: `# base <description>`', line: 2, experimental: true },
  JSONArgsRecommended: { message: 'JSON arguments recommended for ENTRYPOINT to prevent unintended behavior related to OS signals', line: 2 },
  LegacyKeyValueFormat: { dockerfile: 'FROM alpine\nENV foo bar\n', message: '"ENV key=value" should be used instead of legacy "ENV key value" format', line: 2 },
  MaintainerDeprecated: { dockerfile: 'FROM alpine\nMAINTAINER moby@example.com\n', message: 'Maintainer instruction is deprecated in favor of using label', line: 2 },
  MultipleInstructionsDisallowed: { message: 'Multiple ENTRYPOINT instructions should not be used in the same stage because only the last one will be used', line: 2 },
  NoEmptyContinuation: { message: 'Empty continuation line', line: 4 },
  RedundantTargetPlatform: { message: 'Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior', line: 1 },
  ReservedStageName: { message: 'Stage name should not use the same name as reserved stage "scratch"', line: 1 },
  SecretsUsedInArgOrEnv: { dockerfile: 'FROM scratch\nARG AWS_ACCESS_KEY_ID\nARG AWS_SECRET_ACCESS_KEY\n', message: 'Do not use ARG or ENV instructions for sensitive data (ARG "AWS_SECRET_ACCESS_KEY")', line: 3 },
  StageNameCasing: { message: "Stage name 'BuilderBase' should be lowercase", line: 1 },
  UndefinedArgInFrom: { message: "FROM argument 'VARIANT' is not declared", line: 1 },
  UndefinedVar: { message: "Usage of undefined variable '$foo'", line: 2 },
  WorkdirRelativePath: { message: 'Relative workdir "usr/share/nginx/html" can have unexpected results if the base image changes', line: 2 },
};

describe.skipIf(!conformanceRoot)(`build checks (docs/rules)${conformanceMissing}`, () => {
  const docs = (conformanceRoot ? fs.readdirSync(rulesDir) : []).filter((f) => f.endsWith('.md') && f !== '_index.md').sort();
  let passed = 0;

  it('implements every documented rule under its name, with its description', () => {
    for (const f of docs) {
      const text = fs.readFileSync(path.join(rulesDir, f), 'utf8');
      const name = /^title: (\w+)/m.exec(text)![1];
      expect(Object.keys(RULES), f).toContain(name);
      expect(Object.keys(cases), f).toContain(name);
      const description = /^description: >-\n((?:  .*\n)+)/m.exec(text)?.[1].split('\n').map((l) => l.trim()).join(' ').trim();
      if (description) expect(RULES[name as keyof typeof RULES].description, f).toBe(description);
    }
    expect(docs.length).toBeGreaterThanOrEqual(21);
  });

  for (const f of docs) {
    const name = /^title: (\w+)/m.exec(fs.readFileSync(path.join(rulesDir, f), 'utf8'))![1];
    it(`${name}: the example gives BuildKit's message`, async () => {
      const c = cases[name];
      let dockerfile = c.dockerfile ?? badExample(f);
      if (c.experimental) dockerfile = `# check=experimental=${name}\n${dockerfile}`;
      const warnings = await check(dockerfile, { contextExcludes: c.excludes });
      expect(warnings).toContainEqual({ rule: name, message: c.message, line: c.line + (c.experimental ? 1 : 0) });
      passed++;
    });
  }

  it('every documented rule passed', () => expect(passed).toBe(docs.length));
});

describe('check configuration', () => {
  const bad = 'FROM alpine as base\nCMD echo hi\n';

  it('warns but builds by default', async () => {
    expect((await check(bad)).map((w) => w.rule)).toEqual(['FromAsCasing', 'JSONArgsRecommended']);
  });

  it('skips rules by name or all', async () => {
    expect((await check(`# check=skip=FromAsCasing\n${bad}`)).map((w) => w.rule)).toEqual(['JSONArgsRecommended']);
    expect(await check(`# check=skip=all\n${bad}`)).toEqual([]);
  });

  it('fails the build with error=true, naming the rules', async () => {
    const err = await check(`# check=error=true\n${bad}`).then(() => undefined, (e) => e);
    expect(err).toBeInstanceOf(DockerfileError);
    expect(err.message).toBe('lint violation found for rules: FromAsCasing, JSONArgsRecommended');
    expect(await check(`# check=skip=all;error=true\n${bad}`)).toEqual([]);
  });

  it('rejects a bad check directive', async () => {
    const err = await check(`# check=bogus=1\n${bad}`).then(() => undefined, (e) => e);
    expect(err.message).toBe('invalid check option "bogus"');
  });

  it('a comment above an instruction configures the checks for it', async () => {
    expect((await check('FROM alpine AS base\n# check=skip=JSONArgsRecommended\nCMD echo hi\n'))).toEqual([]);
  });

  it('UndefinedVar suggests a defined name and leaves declared build args alone', async () => {
    expect(await check('FROM alpine\nENV PATH=/bin\nARG VERSION\nCOPY $PAHT/$VERSION /x\n')).toEqual([
      { rule: 'UndefinedVar', message: "Usage of undefined variable '$PAHT' (did you mean $PATH?)", line: 4 },
    ]);
  });

  it('ENV words see the environment from before the instruction', async () => {
    expect(await check('FROM alpine\nENV abc=hello\nENV abc=bye def=$abc\n')).toEqual([]);
  });
});
