// `.dockerignore`: which context files the build never sees. As buildx reads it: `<Dockerfile>.dockerignore`
// beside the Dockerfile wins over the context's `.dockerignore`; lines are parsed like moby's
// ignorefile.ReadAll (a UTF-8 BOM dropped, `#` comments only at the start of a line, patterns trimmed and
// cleaned, a leading `/` removed, `!` exceptions kept). Matching (`**`, exceptions, parent directories) is
// the local source's job in the worker.
import fs from 'node:fs/promises';
import path from 'node:path';
import { cleanPattern } from '../util/patterns.js';

/** The ignore file that applies to a build, or undefined when there is none. */
export async function findDockerignore(contextDir: string, dockerfilePath: string | undefined): Promise<string | undefined> {
  const beside = dockerfilePath === undefined ? [] : [`${dockerfilePath}.dockerignore`];
  for (const candidate of [...beside, path.join(contextDir, '.dockerignore')]) {
    const st = await fs.stat(candidate).catch(() => null);
    if (st?.isFile()) return candidate;
  }
  return undefined;
}

export function parseDockerignore(text: string): string[] {
  const out: string[] = [];
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  for (const line of lines) {
    if (line.startsWith('#')) continue;
    let pattern = line.trim();
    if (pattern === '') continue;
    const invert = pattern.startsWith('!');
    if (invert) pattern = pattern.slice(1).trim();
    if (pattern.length > 0) {
      pattern = cleanPattern(pattern);
      if (pattern.length > 1 && pattern.startsWith('/')) pattern = pattern.slice(1);
    }
    out.push(invert ? `!${pattern}` : pattern);
  }
  return out;
}

/** The patterns of the ignore file that applies, [] without one. */
/** `dockerfilePath` undefined: the Dockerfile is not a file (text, or stdin), so only the context's `.dockerignore` applies. */
export async function readDockerignore(contextDir: string, dockerfilePath: string | undefined): Promise<string[]> {
  const file = await findDockerignore(contextDir, dockerfilePath);
  return file ? parseDockerignore(await fs.readFile(file, 'utf8')) : [];
}

