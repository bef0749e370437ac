// Fuzzing the parser, instruction parser, shell lexer and conversion with random and mutated
// Dockerfiles (a fixed seed, so a failure reproduces): whatever the input, the result is a parse or a
// DockerfileError that names a line, never another exception. Fast: a few thousand small inputs.
import { describe, it, expect } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { parseDockerfile } from '../../frontend/dockerfile/parser.js';
import { parseInstructions } from '../../frontend/dockerfile/instructions.js';
import { ShellLex, EnvList } from '../../frontend/dockerfile/shell.js';
import { DockerfileError, ShellExpansionError } from '../../frontend/dockerfile/errors.js';
import { dockerfileToLLB, type ImageMetaResolver } from '../../frontend/index.js';
import type { Platform } from '../../solver/llb/ops.js';

/** mulberry32: a small seeded PRNG. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const KEYWORDS = ['FROM', 'RUN', 'CMD', 'LABEL', 'MAINTAINER', 'EXPOSE', 'ENV', 'ADD', 'COPY', 'ENTRYPOINT', 'VOLUME', 'USER',
  'WORKDIR', 'ARG', 'ONBUILD', 'STOPSIGNAL', 'HEALTHCHECK', 'SHELL', 'from', 'Run', 'FORM', 'ONBUILD RUN', 'ONBUILD ONBUILD'];
const TOKENS = ['busybox', 'scratch', 'AS', 'as', 'x', '/a', 'a b', '$A', '${A}', '${A:-d}', '${A:?e}', '${A#p}', '${A/x/y}', '${', '}',
  '"', "'", '\\', '`', '[', ']', '["a", "b"]', '["a", 1]', '=', 'A=1', 'A=', '=1', '--from=0', '--from=x', '--chown=1:1', '--chmod=u+x',
  '--chmod=999', '--link', '--parents', '--exclude=*.md', '--checksum=sha256:00', '--platform=$BUILDPLATFORM', '--mount=type=cache',
  '--network=none', '--interval=1s', '--retries=-1', 'NONE', 'CMD', '<<EOF', '<<-EOT', '<<"Q"', 'EOF', '80/tcp', '1-2/udp', '65536',
  'http://127.0.0.1/x', 'git@h:r.git', '#', '# escape=`', '# syntax=x', '# check=error=true', '\t', ' ', '한국어', '\u0000', '\r'];

function randomDockerfile(r: () => number): string {
  const pick = <T>(a: T[]) => a[Math.floor(r() * a.length)];
  const lines: string[] = [];
  if (r() < 0.7) lines.push(`FROM ${pick(['busybox', 'scratch', '${B}', 'busybox AS b'])}`);
  const n = 1 + Math.floor(r() * 8);
  for (let i = 0; i < n; i++) {
    const words = [pick(KEYWORDS)];
    const m = Math.floor(r() * 5);
    for (let j = 0; j < m; j++) words.push(pick(TOKENS));
    let line = words.join(r() < 0.9 ? ' ' : '');
    if (r() < 0.15) line += ' \\';
    lines.push(line);
  }
  return lines.join(r() < 0.95 ? '\n' : '\r\n') + (r() < 0.8 ? '\n' : '');
}

function mutate(text: string, r: () => number): string {
  const chars = [...text];
  const edits = 1 + Math.floor(r() * 6);
  for (let i = 0; i < edits; i++) {
    const at = Math.floor(r() * (chars.length + 1));
    const op = Math.floor(r() * 5);
    if (op === 0) chars.splice(at, 1);
    else if (op === 1) chars.splice(at, 0, ...TOKENS[Math.floor(r() * TOKENS.length)]);
    else if (op === 2) chars.splice(at, 0, ['\n', '\\', '"', '$', '{', '}', '<', '['][Math.floor(r() * 8)]);
    else if (op === 3) chars.splice(at, Math.floor(r() * 20));
    else {
      // Duplicate a span somewhere else.
      const from = Math.floor(r() * chars.length);
      chars.splice(at, 0, ...chars.slice(from, from + Math.floor(r() * 40)));
    }
  }
  return chars.join('');
}

const amd64: Platform = { os: 'linux', architecture: 'amd64' };
const resolver: ImageMetaResolver = {
  async resolveImageConfig(ref, platform) {
    return {
      ref: `docker.io/library/${ref}@sha256:${'a'.repeat(64)}`,
      config: { architecture: platform.architecture, os: platform.os, config: { Env: ['PATH=/bin'] }, rootfs: { type: 'layers', diff_ids: [] }, history: [] },
    };
  },
};

/** Errors the conversion gives without a line, because they concern the file as a whole. */
const WHOLE_FILE = /^(the Dockerfile cannot be empty|dockerfile contains no stages to build)$/;

function checkError(e: unknown, input: string): void {
  if (!(e instanceof DockerfileError)) {
    throw new Error(`unexpected ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}\n--- input ---\n${JSON.stringify(input)}`, { cause: e });
  }
  if (!e.location && !WHOLE_FILE.test(e.message)) {
    throw new Error(`DockerfileError without a line: ${e.message}\n--- input ---\n${JSON.stringify(input)}`);
  }
  if (e.location) expect(e.location.startLine).toBeGreaterThan(0);
}

async function exercise(text: string): Promise<void> {
  try {
    parseDockerfile(text);
  } catch (e) {
    checkError(e, text);
  }
  try {
    parseInstructions(text);
  } catch (e) {
    checkError(e, text);
  }
  try {
    await dockerfileToLLB({ dockerfile: text, targetPlatform: amd64, buildPlatform: amd64, resolver, buildArgs: { B: 'busybox' } });
  } catch (e) {
    checkError(e, text);
  }
}

const corpusDir = path.resolve(__dirname, '../../testdata/dockerfiles');
const corpus = fs.readdirSync(corpusDir).sort().map((f) => fs.readFileSync(path.join(corpusDir, f), 'utf8'));

// FUZZ_SEED=n explores other inputs; the suite's own runs use the fixed seeds.
const offset = Number(process.env.FUZZ_SEED ?? 0);

describe('fuzz', () => {
  it('random Dockerfiles: a parse or a DockerfileError with a line', async () => {
    const r = rng(0x5eed + offset);
    for (let i = 0; i < 1500; i++) await exercise(randomDockerfile(r));
  });

  it('mutated corpus Dockerfiles: a parse or a DockerfileError with a line', async () => {
    const r = rng(0xc0ffee + offset);
    for (let i = 0; i < 1500; i++) await exercise(mutate(corpus[i % corpus.length], r));
  });

  it('shell lexer: a word or a ShellExpansionError', () => {
    const r = rng(42 + offset);
    const env = EnvList.fromArray(['A=a b', 'EMPTY=', 'P=/x/y/z']);
    for (let i = 0; i < 3000; i++) {
      let word = '';
      const n = 1 + Math.floor(r() * 6);
      for (let j = 0; j < n; j++) word += TOKENS[Math.floor(r() * TOKENS.length)];
      for (const escape of ['\\', '`']) {
        const lex = new ShellLex(escape);
        for (const fn of [() => lex.processWord(word, env), () => lex.processWords(word, env)]) {
          try {
            fn();
          } catch (e) {
            if (!(e instanceof ShellExpansionError)) throw new Error(`unexpected ${(e as Error)?.constructor?.name} for ${JSON.stringify(word)}: ${(e as Error).message}`);
          }
        }
      }
    }
  });
});
