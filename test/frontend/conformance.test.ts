// BuildKit's own conformance vectors, read in place: parser test files (expected parse, and inputs that
// must be rejected) and the shell lexer's word expansion and word splitting tables.
import { describe, it, expect } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { parseDockerfile, dumpNode } from '../../frontend/dockerfile/parser.js';
import { ShellLex, EnvList } from '../../frontend/dockerfile/shell.js';
import { DockerfileError } from '../../frontend/dockerfile/errors.js';

const root = path.resolve(__dirname, '../../../shared/conformance/buildkit');
const casesIn = (dir: string) => fs.readdirSync(path.join(root, dir)).sort();

describe('parser conformance (BuildKit testfiles)', () => {
  for (const name of casesIn('parser/testfiles')) {
    it(name, () => {
      const dir = path.join(root, 'parser/testfiles', name);
      const text = fs.readFileSync(path.join(dir, 'Dockerfile'), 'utf8');
      const expected = fs.readFileSync(path.join(dir, 'result'), 'utf8');
      const { nodes } = parseDockerfile(text);
      const dump = nodes.map((n) => `(${dumpNode(n)})\n`).join('');
      expect(dump).toBe(expected);
    });
  }
});

describe('parser rejects (BuildKit testfiles-negative)', () => {
  for (const name of casesIn('parser/testfiles-negative')) {
    it(name, () => {
      const text = fs.readFileSync(path.join(root, 'parser/testfiles-negative', name, 'Dockerfile'), 'utf8');
      expect(() => parseDockerfile(text)).toThrow(DockerfileError);
    });
  }
});

describe('shell lexer: envVarTest', () => {
  const env = EnvList.fromArray(['PWD=/home', 'SHELL=bash', 'KOREAN=한국어', 'NULL=']);
  const lex = new ShellLex('\\');
  const lines = fs.readFileSync(path.join(root, 'shell/envVarTest'), 'utf8').split('\n');
  const vectors = lines
    .map((line, i) => ({ line, n: i + 1 }))
    .filter(({ line }) => !line.startsWith('#') && line.trim() !== '')
    .map(({ line, n }) => {
      const [platform, source, expected] = line.trim().split('|').map((s) => s.trim());
      return { platform, source, expected, n };
    })
    .filter((v) => v.platform === 'A' || v.platform === 'U');

  it('has vectors', () => expect(vectors.length).toBeGreaterThan(200));
  for (const v of vectors) {
    it(`line ${v.n}: ${v.source}`, () => {
      if (v.expected === 'error') expect(() => lex.processWord(v.source, env)).toThrow();
      else expect(lex.processWord(v.source, env)).toBe(v.expected);
    });
  }
});

describe('shell lexer: wordsTest', () => {
  const lines = fs.readFileSync(path.join(root, 'shell/wordsTest'), 'utf8').split('\n');
  let envs: string[] = [];
  const vectors: { source: string; expected: string[]; env: EnvList; n: number }[] = [];
  lines.forEach((line, i) => {
    if (line.startsWith('#') || line === '') return;
    if (line.startsWith('ENV ')) {
      envs = [...envs, line.slice(3).replace(/^ +/, '')];
      return;
    }
    const parts = line.split('|');
    expect(parts).toHaveLength(2);
    vectors.push({ source: parts[0].trim(), expected: parts[1].replace(/^ +/, '').split(','), env: EnvList.fromArray(envs), n: i + 1 });
  });

  it('has vectors', () => expect(vectors.length).toBeGreaterThan(20));
  for (const v of vectors) {
    it(`line ${v.n}: ${v.source}`, () => {
      let words: string[];
      try {
        words = new ShellLex('\\').processWords(v.source, v.env);
      } catch {
        words = ['error'];
      }
      expect(words).toEqual(v.expected);
    });
  }
});
