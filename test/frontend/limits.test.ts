// The frontend's bounds (frontend/dockerfile/limits.ts): each hostile input fails with one error naming
// its line, quickly and in little memory, and input just inside a bound still converts.
import { describe, it, expect } from 'vitest';
import { dockerfileToLLB, ShellLex, EnvList, type ImageMetaResolver } from '../../frontend/index.js';
import { DockerfileError } from '../../frontend/dockerfile/errors.js';
import { MAX_DOCKERFILE_BYTES, MAX_LINE_BYTES, MAX_NESTING } from '../../frontend/dockerfile/limits.js';
import type { Platform } from '../../solver/llb/ops.js';

const amd64: Platform = { os: 'linux', architecture: 'amd64' };
const resolver: ImageMetaResolver = {
  async resolveImageConfig() {
    throw new Error('no image is resolved in these tests');
  },
};

const convert = (dockerfile: string) => dockerfileToLLB({ dockerfile, targetPlatform: amd64, buildPlatform: amd64, resolver });

async function failure(dockerfile: string): Promise<DockerfileError> {
  const err = await convert(dockerfile).then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(DockerfileError);
  const e = err as DockerfileError;
  // One line: the CLI prints `Dockerfile:N: <message>`.
  expect(e.message).not.toContain('\n');
  expect(e.message.length).toBeLessThan(400);
  return e;
}

/** `ARG A=xx` and `n` lines doubling it. */
const doubling = (n: number) => ['FROM scratch', 'ARG A=xx', ...Array.from({ length: n }, () => 'ARG A=$A$A'), 'ENV B=$A', ''].join('\n');

describe('Dockerfile and line size', () => {
  it('a line over 65535 bytes fails with BuildKit\'s message, naming the line', async () => {
    const e = await failure(`FROM scratch\nLABEL a=b\nLABEL x=${'a'.repeat(MAX_LINE_BYTES)}\n`);
    expect(e.message).toBe(`dockerfile line greater than max allowed size of ${MAX_LINE_BYTES}`);
    expect(e.location?.startLine).toBe(3);
  });

  it('counts bytes, not characters, and accepts a line of exactly the limit', async () => {
    const label = 'LABEL x=';
    await expect(convert(`FROM scratch\n${label}${'a'.repeat(MAX_LINE_BYTES - label.length)}\n`)).resolves.toBeDefined();
    // 2 bytes each in UTF-8: fewer characters than the limit, more bytes.
    const e = await failure(`FROM scratch\n${label}${'é'.repeat(MAX_LINE_BYTES / 2)}\n`);
    expect(e.location?.startLine).toBe(2);
  });

  it('a Dockerfile over 16 MiB fails at the line that crosses the limit', async () => {
    const line = `LABEL x=${'a'.repeat(60000)}\n`;
    const count = Math.ceil(MAX_DOCKERFILE_BYTES / line.length) + 1;
    const e = await failure(`FROM scratch\n${line.repeat(count)}`);
    expect(e.message).toBe('Dockerfile is larger than the limit of 16 MiB');
    expect(e.location?.startLine).toBe(1 + Math.ceil((MAX_DOCKERFILE_BYTES - 'FROM scratch\n'.length + 1) / line.length));
  });

  it('an instruction joined from continuation lines over 1 MiB fails, naming its first line', async () => {
    const part = `${'a'.repeat(60000)} \\\n`;
    const e = await failure(`FROM scratch\nRUN echo \\\n${part.repeat(20)}end\n`);
    expect(e.message).toBe('instruction is longer than the limit of 1 MiB (continuation lines joined)');
    expect(e.location?.startLine).toBe(2);
  });
});

describe('expansion', () => {
  it('32 doublings of an ARG fail at the doubling that passes 1 MiB', async () => {
    const e = await failure(doubling(32));
    // xx doubled 20 times is 2 MiB: line 2 + 20.
    expect(e.location?.startLine).toBe(22);
    expect(e.message).toMatch(/^failed to process "\$A\$A": variable expansion makes the word more than 1 MiB longer than written$/);
  });

  it('19 doublings (1 MiB) still convert', async () => {
    const { image } = await convert(doubling(19));
    expect(image.config.Env?.find((e) => e.startsWith('B='))?.length).toBe(2 + (1 << 20));
  });

  it('many words each under the bound fail once expansion adds 64 MiB in all', async () => {
    const lines = ['FROM scratch', 'ARG A=xx', ...Array.from({ length: 18 }, () => 'ARG A=$A$A')];
    // A is 512 KiB; 128 labels of it are 64 MiB.
    for (let i = 0; i < 140; i++) lines.push(`LABEL l${i}=$A`);
    const e = await failure(lines.join('\n'));
    expect(e.message).toMatch(/variable expansion adds more than the limit of 64 MiB to this Dockerfile's words in all$/);
    expect(e.location?.startLine).toBeGreaterThan(140);
    expect(e.location?.startLine).toBeLessThanOrEqual(160);
  });

  it('a replacement that multiplies a value fails at the bound', async () => {
    const lines = ['FROM scratch', 'ARG A=xx', ...Array.from({ length: 12 }, () => 'ARG A=$A$A'), `ENV B=\${A//x/${'y'.repeat(1000)}}`];
    const e = await failure(lines.join('\n'));
    expect(e.message).toMatch(/more than 1 MiB longer than written$/);
    expect(e.location?.startLine).toBe(15);
  });

  it('100,000 nested ${A:-...} fail with the nesting bound, not a stack overflow', async () => {
    const n = 100_000;
    const word = '${A:-'.repeat(n) + 'x' + '}'.repeat(n);
    // Physical lines under 64 KiB, joined by continuations.
    const chunks = word.match(/.{1,60000}/g)!;
    const e = await failure(`FROM scratch\nENV X=${chunks.join('\\\n')}\n`);
    expect(e.message).toMatch(new RegExp(`more than ${MAX_NESTING} nested \\$\\{\\.\\.\\.\\} expansions$`));
    expect(e.location?.startLine).toBe(2);
  });

  it(`${MAX_NESTING} nested expansions are fine`, () => {
    const word = '${A:-'.repeat(MAX_NESTING) + 'x' + '}'.repeat(MAX_NESTING);
    expect(new ShellLex().processWord(word, EnvList.empty())).toBe('x');
    expect(() => new ShellLex().processWord('${A:-' + word + '}', EnvList.empty())).toThrow(/nested/);
  });

  it('a 16 MiB build argument fails where it is expanded, and in the environment of many RUNs', async () => {
    // Issue 17 F13: a 16 MB ARG value took 2 GB.
    const buildArgs = { A: 'a'.repeat(16 << 20) };
    const fail = async (dockerfile: string) => {
      const err = await dockerfileToLLB({ dockerfile, targetPlatform: amd64, buildPlatform: amd64, resolver, buildArgs }).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(DockerfileError);
      expect((err as Error).message).not.toContain('\n');
      return err as DockerfileError;
    };
    const expanded = await fail('FROM scratch\nARG A\nENV B=$A\n');
    expect(expanded.message).toMatch(/more than 1 MiB longer than written$/);
    expect(expanded.location?.startLine).toBe(3);
    const runs = Array.from({ length: 20 }, (_, i) => `RUN ["/bin/true", "${i}"]`);
    const graph = await fail(['FROM scratch', 'ARG A', ...runs, ''].join('\n'));
    expect(graph.message).toMatch(/^the build graph is larger than the limit of 64 MiB/);
  });

  it('the graph of many steps carrying a large environment is bounded', async () => {
    const lines = ['FROM scratch', 'ARG A=xx', ...Array.from({ length: 18 }, () => 'ARG A=$A$A'), 'ENV B=$A'];
    for (let i = 0; i < 300; i++) lines.push(`WORKDIR /w${i}`, `RUN ["/bin/true", "${i}"]`);
    const e = await failure(lines.join('\n'));
    expect(e.message).toMatch(/^the build graph is larger than the limit of 64 MiB/);
    expect(e.location?.startLine).toBeGreaterThan(21);
  });
});

describe('shell patterns', () => {
  const lex = new ShellLex();
  const env = (v: string) => EnvList.empty().set('A', v);

  it('a pattern with several stars against a long value takes linear time', () => {
    // A backtracking regex took seconds for 3,000 characters here.
    const a = 'a'.repeat(200_000);
    expect(lex.processWord('${A#*a*a*z}', env(a))).toBe(a);
    expect(lex.processWord('${A%%*a*a*z}', env(a))).toBe(a);
    expect(lex.processWord('${A/*a*a*z/q}', env(a))).toBe(a);
    expect(lex.processWord('${A##*a}', env(a + 'b'))).toBe('b');
  });

  it('a long pattern against a long value fails as too costly instead of running for hours', () => {
    const a = 'a'.repeat(500_000);
    expect(() => lex.processWord(`\${A#*${'?'.repeat(2000)}b}`, env(a))).toThrow(/too costly to match/);
  });

  it('match as the regular expressions BuildKit builds from them do', () => {
    // Reference: the pattern as a regular expression (`*` -> `.*` or `.*?`, `?` -> `.`).
    const toRegex = (p: string, greedy: boolean, anchored: boolean) =>
      new RegExp((anchored ? '^' : '') + [...p].map((c) => (c === '*' ? (greedy ? '.*' : '.*?') : c === '?' ? '.' : c)).join(''), 'u');
    const reverse = (s: string) => [...s].reverse().join('');
    const alphabet = ['a', 'b', '\n', 'é'];
    const patAlphabet = [...alphabet, '*', '?'];
    let seed = 7;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const pick = (chars: string[], max: number) => Array.from({ length: rand(max + 1) }, () => chars[rand(chars.length)]).join('');
    for (let i = 0; i < 3000; i++) {
      const v = pick(alphabet, 8);
      const p = pick(patAlphabet, 4);
      const e = env(v);
      for (const [op, greedy] of [['#', false], ['##', true]] as const) {
        const m = toRegex(p, greedy, true).exec(v);
        expect(lex.processWord(`\${A${op}${p}}`, e), `${JSON.stringify(v)} ${op} ${JSON.stringify(p)}`).toBe(m ? v.slice(m[0].length) : v);
      }
      for (const [op, greedy] of [['%', false], ['%%', true]] as const) {
        const m = toRegex(reverse(p), greedy, true).exec(reverse(v));
        expect(lex.processWord(`\${A${op}${p}}`, e), `${JSON.stringify(v)} ${op} ${JSON.stringify(p)}`).toBe(m ? reverse(reverse(v).slice(m[0].length)) : v);
      }
      // `${A//X}` would be a different expansion.
      if (p === '') continue;
      const re = toRegex(p, true, false);
      expect(lex.processWord(`\${A/${p}/X}`, e), `${JSON.stringify(v)} / ${JSON.stringify(p)}`).toBe(v.replace(re, () => 'X'));
      expect(lex.processWord(`\${A//${p}/X}`, e), `${JSON.stringify(v)} // ${JSON.stringify(p)}`).toBe(v.replace(new RegExp(re.source, 'gu'), () => 'X'));
    }
  });
});

describe('many variables', () => {
  it('50,000 ARGs, and 50,000 ENVs using undefined variables, convert without quadratic work', { timeout: 60_000 }, async () => {
    // Each once took minutes: a copied environment per ARG, a scanned image Env per ENV, a suggestion
    // among all names per undefined variable.
    const args = ['FROM scratch', ...Array.from({ length: 50_000 }, (_, i) => `ARG A${i}=${i}`), 'ENV X=$A49999'];
    const a = await convert(args.join('\n'));
    expect(a.image.config.Env).toContain('X=49999');
    const envs = ['FROM scratch', ...Array.from({ length: 50_000 }, (_, i) => `ENV E${i}=$E${i}x`)];
    const e = await convert(envs.join('\n'));
    expect(e.image.config.Env).toContain('E49999=');
    expect(e.warnings.filter((w) => w.rule === 'UndefinedVar')).toHaveLength(50_000);
  });

  it('an environment stays immutable to its users: earlier versions and branches keep their view', () => {
    const v0 = EnvList.empty().set('A', '1');
    const v1 = v0.set('B', '2');
    const v2 = v1.set('A', '3');
    const branch = v1.set('C', '4');
    expect(v2.toArray()).toEqual(['B=2', 'A=3']);
    expect(v0.toArray()).toEqual(['A=1']);
    expect(v1.toArray()).toEqual(['A=1', 'B=2']);
    expect(branch.toArray()).toEqual(['A=1', 'B=2', 'C=4']);
    expect(v2.set('D', '5').toArray()).toEqual(['B=2', 'A=3', 'D=5']);
    expect(v2.get('A')).toBe('3');
    expect(v0.get('B')).toBeUndefined();
    expect(branch.keys()).toEqual(['A', 'B', 'C']);
  });

  it('a stage keeps its environment when stages built on it add to theirs', async () => {
    // `one` is dispatched first (the last stage copies from it), then the last stage starts from `base`.
    const { image, definition } = await convert('FROM scratch AS base\nENV A=1\nFROM base AS one\nENV B=2\nRUN ["/x"]\nFROM base\nENV C=$A$B\nCOPY --from=one /x /x\n');
    expect(image.config.Env?.filter((e) => !e.startsWith('PATH='))).toEqual(['A=1', 'C=1']);
    const run = Object.values(definition.ops).find((op) => op.kind === 'exec');
    expect(run?.kind === 'exec' && run.meta.env.filter((e) => !e.startsWith('PATH='))).toEqual(['A=1', 'B=2']);
  });
});

describe('many stages', () => {
  it('20,000 stages each built on the one before convert without recursion as deep as the chain', { timeout: 60_000 }, async () => {
    const lines = ['FROM scratch AS s0'];
    for (let i = 1; i < 20_000; i++) lines.push(`FROM s${i - 1} AS s${i}`, ...(i % 1000 === 0 ? [`COPY --from=s${i - 500} /a /a${i}`] : []));
    lines.push('ENV LAST=1');
    const { image, definition } = await convert(lines.join('\n'));
    expect(image.config.Env).toContain('LAST=1');
    // Scratch and 19 COPYs from earlier stages, one on the other.
    expect(Object.keys(definition.ops)).toHaveLength(20);
  });

  it('a cycle among many stages is still found', async () => {
    const lines = ['FROM scratch AS s0', 'COPY --from=s2999 /a /a'];
    for (let i = 1; i < 3000; i++) lines.push(`FROM s${i - 1} AS s${i}`);
    const e = await failure(lines.join('\n'));
    expect(e.message).toMatch(/^circular dependency detected on stage: s0$|^cannot copy from stage "s2999", it needs to be defined before current stage "s0"$/);
  });
});

describe('stage images handed on', () => {
  it('the target keeps its image when stages built on it are converted too (--check)', async () => {
    const r = await dockerfileToLLB({
      dockerfile: 'FROM scratch AS base\nENV A=1\nFROM base AS child\nENV B=2\nFROM child\nENV C=3\n',
      target: 'base', allStages: true, targetPlatform: amd64, buildPlatform: amd64, resolver,
    });
    expect(r.image.config.Env?.filter((e) => !e.startsWith('PATH='))).toEqual(['A=1']);
    expect(r.image.history?.map((h) => h.created_by)).toEqual(['ENV A=1']);
  });

  it('a chain hands its image on: history and environment accumulate stage by stage', async () => {
    const { image } = await convert('FROM scratch AS a\nENV A=1\nFROM a AS b\nENV B=2\nFROM b\nENV C=$A$B\n');
    expect(image.config.Env?.filter((e) => !e.startsWith('PATH='))).toEqual(['A=1', 'B=2', 'C=12']);
    expect(image.history?.map((h) => h.created_by)).toEqual(['ENV A=1', 'ENV B=2', 'ENV C=12']);
  });
});
