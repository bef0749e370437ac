// BuildKit's own conformance vectors, read in place: parser test files (expected parse, and inputs that
// must be rejected) and the shell lexer's word expansion and word splitting tables. Every case is counted:
// the last test of each group checks that as many cases passed as the files hold, so a vector that is
// skipped (or a file that grows) fails the suite instead of going unnoticed.
import { describe, it, expect } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { parseDockerfile, dumpNode } from '../../frontend/dockerfile/parser.js';
import { ShellLex, EnvList } from '../../frontend/dockerfile/shell.js';
import { DockerfileError } from '../../frontend/dockerfile/errors.js';
import { conformanceRoot, conformanceMissing } from '../helpers/conformance.js';

// On a clone without the corpus every suite here is reported as not run (see test/helpers/conformance.ts).
const root = conformanceRoot ?? '';
const casesIn = (dir: string) => (conformanceRoot ? fs.readdirSync(path.join(root, dir)).sort() : []);
const readLines = (file: string) => (conformanceRoot ? fs.readFileSync(path.join(root, file), 'utf8').replace(/\n$/, '').split('\n') : []);
const corpusDescribe = (name: string, fn: () => void) => describe.skipIf(!conformanceRoot)(`${name}${conformanceMissing}`, fn);

corpusDescribe('parser conformance (BuildKit testfiles)', () => {
  const names = casesIn('parser/testfiles');
  let passed = 0;
  for (const name of names) {
    it(name, () => {
      const dir = path.join(root, 'parser/testfiles', name);
      const text = fs.readFileSync(path.join(dir, 'Dockerfile'), 'utf8');
      const expected = fs.readFileSync(path.join(dir, 'result'), 'utf8');
      const { nodes } = parseDockerfile(text);
      const dump = nodes.map((n) => `(${dumpNode(n)})\n`).join('');
      expect(dump).toBe(expected);
      passed++;
    });
  }
  it('every case passed', () => {
    // Every directory is a case with both files: none can be silently left out.
    const complete = names.filter((n) => ['Dockerfile', 'result'].every((f) => fs.existsSync(path.join(root, 'parser/testfiles', n, f))));
    expect(complete).toEqual(names);
    expect(names.length).toBeGreaterThanOrEqual(30);
    expect(passed).toBe(names.length);
  });
});

corpusDescribe('parser rejects (BuildKit testfiles-negative)', () => {
  const names = casesIn('parser/testfiles-negative');
  let passed = 0;
  for (const name of names) {
    it(name, () => {
      const text = fs.readFileSync(path.join(root, 'parser/testfiles-negative', name, 'Dockerfile'), 'utf8');
      let err: unknown;
      try {
        parseDockerfile(text);
      } catch (e) {
        err = e;
      }
      // Rejected by the parser, with a message and the line it points at.
      expect(err).toBeInstanceOf(DockerfileError);
      expect((err as DockerfileError).message).toMatch(/\S/);
      expect((err as DockerfileError).location?.startLine).toBeGreaterThan(0);
      passed++;
    });
  }
  it('every case was rejected', () => {
    expect(names.length).toBeGreaterThanOrEqual(4);
    expect(passed).toBe(names.length);
  });
});

corpusDescribe('shell lexer: envVarTest', () => {
  // BuildKit's lex_test.go: comments start in column 0, blank lines are skipped after trimming, every
  // other line is PLATFORM|SOURCE|EXPECTED with the parts trimmed.
  const env = EnvList.fromArray(['PWD=/home', 'SHELL=bash', 'KOREAN=한국어', 'NULL=']);
  const lex = new ShellLex('\\');
  const lines = readLines('shell/envVarTest');
  const caseLines = lines.map((line, i) => ({ line, n: i + 1 })).filter(({ line }) => !line.startsWith('#') && line.trim() !== '');
  const vectors = caseLines.map(({ line, n }) => {
    const parts = line.trim().split('|');
    const [platform, source, expected] = parts.map((s) => s.trim());
    return { platform, source, expected, n, parts: parts.length };
  });
  const run = vectors.filter((v) => v.platform === 'A' || v.platform === 'U');
  let passed = 0;

  it('every line is a well-formed case', () => {
    for (const v of vectors) {
      expect(v.parts, `line ${v.n}`).toBe(3);
      expect(['A', 'U', 'W'], `line ${v.n}`).toContain(v.platform);
    }
  });
  for (const v of run) {
    it(`line ${v.n}: ${v.source}`, () => {
      if (v.expected === 'error') expect(() => lex.processWord(v.source, env)).toThrow();
      else expect(lex.processWord(v.source, env)).toBe(v.expected);
      passed++;
    });
  }
  it('every A and U case passed', () => {
    // Counted independently of the filter above: all case lines but the Windows-only ones.
    const windows = caseLines.filter(({ line }) => /^\s*W\s*\|/.test(line)).length;
    expect(run.length).toBe(caseLines.length - windows);
    expect(run.length).toBeGreaterThanOrEqual(228);
    expect(passed).toBe(run.length);
  });
});

corpusDescribe('shell lexer: wordsTest', () => {
  // Trailing spaces are significant here: lines are not trimmed (BuildKit's TestShellParser4Words).
  const lines = readLines('shell/wordsTest');
  let envs: string[] = [];
  let envLines = 0;
  const vectors: { source: string; expected: string[]; env: EnvList; n: number }[] = [];
  lines.forEach((line, i) => {
    if (line.startsWith('#') || line === '') return;
    if (line.startsWith('ENV ')) {
      envs = [...envs, line.slice(3).replace(/^ +/, '')];
      envLines++;
      return;
    }
    const parts = line.split('|');
    if (parts.length !== 2) throw new Error(`wordsTest line ${i + 1}: expected INPUT | WORDS`);
    vectors.push({ source: parts[0].trim(), expected: parts[1].replace(/^ +/, '').split(','), env: EnvList.fromArray(envs), n: i + 1 });
  });
  let passed = 0;

  for (const v of vectors) {
    it(`line ${v.n}: ${v.source}`, () => {
      let words: string[];
      try {
        words = new ShellLex('\\').processWords(v.source, v.env);
      } catch {
        words = ['error'];
      }
      expect(words).toEqual(v.expected);
      passed++;
    });
  }
  it('every case passed', () => {
    const cases = lines.filter((l) => l !== '' && !l.startsWith('#')).length - envLines;
    expect(vectors.length).toBe(cases);
    expect(vectors.length).toBeGreaterThanOrEqual(24);
    expect(passed).toBe(vectors.length);
  });
});
