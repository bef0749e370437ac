// `build --call` on the real CLI (buildx's call functions): `outline` and `targets` print BuildKit's tables
// (or, with format=json, the result object) on stdout and build nothing; `check` is `--check`; a bad value
// is one line.
import { describe, it, expect, inject, beforeAll } from 'vitest';
import fs from 'node:fs/promises';
import { runCli, makeContext, tempDir, lastLine } from '../helpers/cli.js';

const registry = inject('registry');
const base = `${registry}/busybox:1.35`;

const dockerfile = `# syntax=docker/dockerfile:1
# BASE_IMAGE the image to start from
ARG BASE_IMAGE=${base}
ARG UNUSED=1

# base Shared setup, with <tools>
FROM \${BASE_IMAGE} AS base
# PORT where the server listens
ARG PORT=8080
ARG MODE
RUN --mount=type=secret,id=npmrc,required true

# release The shipped image
FROM base AS release
RUN --mount=type=ssh --mount=type=secret,id=token true

FROM release
`;

describe('build --call', () => {
  let root: string;
  let ctx: string;
  beforeAll(async () => {
    root = await tempDir('builder-root-');
    ctx = await makeContext({ Dockerfile: dockerfile });
  });

  it('targets: every stage with its description, the default marked; nothing built', async () => {
    const res = await runCli(['build', '--root', root, '--call', 'targets', ctx]);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toBe(
      'TARGET    DESCRIPTION\n' +
      'base      Shared setup, with <tools>\n' +
      'release   The shipped image\n' +
      '(default) \n',
    );
    expect(res.stderr).not.toContain('RUN');
  });

  it('outline: the target, its build args with values and descriptions, its secrets and SSH agents', async () => {
    const res = await runCli(['build', '--root', root, '--call', 'outline', '--target', 'release', '--build-arg', 'PORT=9000', ctx]);
    expect(res.code, res.stderr).toBe(0);
    const pad = (s: string, n: number) => s.padEnd(n);
    const w = `BASE_IMAGE`.length + 3;
    const v = base.length + 3;
    expect(res.stdout).toBe(
      'TARGET:      release\n' +
      'DESCRIPTION: The shipped image\n' +
      '\n' +
      pad('BUILD ARG', w) + pad('VALUE', v) + 'DESCRIPTION\n' +
      pad('BASE_IMAGE', w) + pad(base, v) + 'the image to start from\n' +
      pad('PORT', w) + pad('9000', v) + 'where the server listens\n' +
      pad('MODE', w) + pad('', v) + '\n' +
      '\n' +
      'SECRET   REQUIRED\n' +
      'npmrc    true\n' +
      'token    \n' +
      '\n' +
      'SSH       REQUIRED\n' +
      'default   \n' +
      '\n',
    );
  });

  it('format=json prints the result object as buildx does (Go escapes, indented)', async () => {
    const res = await runCli(['build', '--root', root, '--call', 'targets,format=json', ctx]);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toContain('"description": "Shared setup, with \\u003ctools\\u003e"');
    const parsed = JSON.parse(res.stdout) as { targets: { name?: string; default?: boolean; base: string }[]; sources: string[] };
    expect(parsed.targets.map((t) => [t.name, t.default, t.base])).toEqual([
      ['base', undefined, '${BASE_IMAGE}'], ['release', undefined, 'base'], [undefined, true, 'release'],
    ]);
    expect(Buffer.from(parsed.sources[0], 'base64').toString()).toBe(dockerfile);
    const outline = await runCli(['build', '--root', root, '--call', 'outline,format=json', ctx]);
    expect(outline.code, outline.stderr).toBe(0);
    const o = JSON.parse(outline.stdout) as { name?: string; args: { name: string; value?: string; location: unknown }[] };
    expect(o.name).toBeUndefined();
    expect(o.args[0]).toEqual({ name: 'BASE_IMAGE', description: 'the image to start from', value: base, location: { ranges: [{ start: { line: 3 }, end: { line: 3 } }] } });
  });

  it('check is --check; ignorestatus=true exits 0 with warnings; build builds', async () => {
    const warned = await makeContext({ Dockerfile: `FROM ${base} as a\nFROM a\n` });
    const check = await runCli(['build', '--root', root, '--call', 'check', warned]);
    const legacy = await runCli(['build', '--root', root, '--check', warned]);
    expect(check.code).toBe(1);
    expect(check.stdout).toBe(legacy.stdout);
    expect(check.stdout).toContain('WARNING: FromAsCasing');
    const ignored = await runCli(['build', '--root', root, '--call', 'check,ignorestatus=true', warned]);
    expect(ignored.code).toBe(0);
    expect(ignored.stdout).toBe(check.stdout);
    const dest = await tempDir('builder-call-out-');
    const built = await runCli(['build', '--root', root, '--call', 'build', '--output', `type=local,dest=${dest}`,
      await makeContext({ Dockerfile: `FROM ${base}\nRUN echo hi > /hi\n` })]);
    expect(built.code, built.stderr).toBe(0);
    expect(await fs.readFile(`${dest}/hi`, 'utf8')).toBe('hi\n');
  });

  it('an unknown method or field is a one-line error', async () => {
    for (const [arg, msg] of [
      ['nope', 'invalid --call "nope": unknown method "nope" (use build, check, outline, targets)'],
      ['outline,format=yaml', 'invalid --call "outline,format=yaml": unknown format "yaml" (use json)'],
      ['targets,colour=red', 'invalid --call "targets,colour=red": unknown field "colour"'],
    ]) {
      const res = await runCli(['build', '--root', root, '--call', arg, ctx]);
      expect(res.code).toBe(1);
      expect(res.stdout).toBe('');
      expect(lastLine(res.stderr)).toBe(`ERROR: ${msg}`);
    }
  });
});
