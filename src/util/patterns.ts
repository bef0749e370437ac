// Path patterns as BuildKit evaluates them: Go's filepath.Match for COPY/rm wildcards, and the
// .dockerignore syntax (moby's patternmatcher: `**`, `!` exceptions, a match on a parent directory
// selects everything under it) for include/exclude patterns.
import { UserError } from '../util/errors.js';

export class BadPatternError extends UserError {
  constructor(pattern: string) { super('BAD_PATTERN', `syntax error in pattern: ${JSON.stringify(pattern)}`); }
}

/** Whether `name` matches a Go filepath.Match pattern (`*` and `?` never match `/`). */
export function goMatch(pattern: string, name: string): boolean {
  const re = globCache.get(pattern) ?? compileGlob(pattern);
  globCache.set(pattern, re);
  return re.test(name);
}

const globCache = new Map<string, RegExp>();

function compileGlob(pattern: string): RegExp {
  let re = '^';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '*') {
      re += '[^/]*';
    } else if (c === '?') {
      re += '[^/]';
    } else if (c === '\\') {
      if (++i >= pattern.length) throw new BadPatternError(pattern);
      re += escapeRe(pattern[i]);
    } else if (c === '[') {
      const end = parseClass(pattern, i + 1);
      re += end.re;
      i = end.next - 1;
    } else {
      re += escapeRe(c);
    }
  }
  return new RegExp(`${re}$`, 's');
}

/** A `[...]` class starting after its `[`: ranges, `^` negation, `\` escapes; never matches `/`. */
function parseClass(p: string, start: number): { re: string; next: number } {
  let i = start;
  let negate = false;
  if (p[i] === '^') { negate = true; i++; }
  const parts: string[] = [];
  let first = true;
  for (;;) {
    if (i >= p.length) throw new BadPatternError(p);
    if (p[i] === ']' && !first) { i++; break; }
    first = false;
    const lo = classChar(p, i);
    i = lo.next;
    if (p[i] === '-') {
      const hi = classChar(p, i + 1);
      if (hi.ch < lo.ch) throw new BadPatternError(p);
      parts.push(`${escapeClass(lo.ch)}-${escapeClass(hi.ch)}`);
      i = hi.next;
    } else {
      parts.push(escapeClass(lo.ch));
    }
  }
  const body = parts.join('');
  return { re: negate ? `[^/${body}]` : `(?!/)[${body}]`, next: i };
}

function classChar(p: string, i: number): { ch: string; next: number } {
  if (i >= p.length || p[i] === ']' || p[i] === '-') throw new BadPatternError(p);
  if (p[i] === '\\') {
    if (i + 1 >= p.length) throw new BadPatternError(p);
    return { ch: p[i + 1], next: i + 2 };
  }
  const cp = p.codePointAt(i)!;
  const ch = String.fromCodePoint(cp);
  return { ch, next: i + ch.length };
}

const escapeRe = (c: string) => c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
const escapeClass = (c: string) => c.replace(/[\]\\^-]/g, '\\$&');

/** True when a path component contains an unescaped wildcard character. */
export function hasWildcard(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '\\') i++;
    else if (s[i] === '*' || s[i] === '?' || s[i] === '[') return true;
  }
  return false;
}

interface Pattern {
  text: string;
  exclusion: boolean;
  re: RegExp;
  dirs: string[];
  /** The number of components of every path it matches itself (not through a parent), when fixed. */
  depth: number | undefined;
}

/**
 * .dockerignore-style patterns over slash-separated paths relative to a root. Later patterns win;
 * `!pattern` re-includes. A pattern matching a parent directory matches everything below it.
 */
export class PatternMatcher {
  private readonly patterns: Pattern[];
  readonly hasExclusions: boolean;

  constructor(patterns: string[]) {
    this.patterns = patterns.map((raw) => raw.trim()).filter((p) => p !== '' && p !== '!').map((raw) => {
      const exclusion = raw.startsWith('!');
      let text = cleanPattern(exclusion ? raw.slice(1).trim() : raw);
      if (text.length > 1 && text.startsWith('/')) text = text.slice(1);
      const dirs = text.split('/');
      // Only `**` and classes (`[^a]` takes a slash) match across a slash; `*` and `?` stop at one.
      const depth = text.includes('**') || text.includes('[') ? undefined : dirs.length;
      return { text, exclusion, re: compileDockerignore(text), dirs, depth };
    });
    this.hasExclusions = this.patterns.some((p) => p.exclusion);
  }

  /**
   * Whether some pattern may match a path of `depth` components itself. A walk that never enters a
   * directory `matches` selects, when there are no exclusions, need not ask about the entries of a
   * directory whose depth no pattern has: their parents matched nothing, and neither can they.
   */
  mayMatchAtDepth(depth: number): boolean {
    return this.patterns.some((p) => p.depth === undefined || p.depth === depth);
  }

  matches(file: string): boolean {
    let matched = false;
    for (const p of this.patterns) {
      if (p.exclusion !== matched) continue;
      let m = p.re.test(file);
      // Or a parent directory matches (moby's MatchesOrParentMatches: every prefix, as `**` spans any depth);
      // prefixes by index, with no arrays per file (a context walk calls this for every file).
      for (let slash = file.indexOf('/'); !m && slash !== -1; slash = file.indexOf('/', slash + 1)) m = p.re.test(file.slice(0, slash));
      if (m) matched = !p.exclusion;
    }
    return matched;
  }

  /**
   * Whether some pattern (of the given kind) could match a path strictly below directory `dir`, so a walk
   * must descend into it even though `dir` itself is not selected.
   */
  mayMatchBelow(dir: string, exclusions: boolean): boolean {
    const parts = dir.split('/');
    return this.patterns.some((p) => {
      if (p.exclusion !== exclusions) return false;
      if (p.text.includes('**')) return true;
      if (p.dirs.length <= parts.length) return false;
      return parts.every((part, i) => safeGoMatch(p.dirs[i], part));
    });
  }
}

function safeGoMatch(pattern: string, name: string): boolean {
  try { return goMatch(pattern, name); } catch { return false; }
}

/** Go's filepath.Clean on a slash path. */
export function cleanPattern(p: string): string {
  const abs = p.startsWith('/');
  const out: string[] = [];
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length > 0 && out[out.length - 1] !== '..') out.pop();
      else if (!abs) out.push('..');
      continue;
    }
    out.push(part);
  }
  const s = out.join('/');
  return abs ? `/${s}` : s || '.';
}

/** moby patternmatcher's translation of a pattern to a regular expression. */
function compileDockerignore(pattern: string): RegExp {
  let re = '^';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '*') {
      if (pattern[i + 1] === '*') {
        i++;
        if (pattern[i + 1] === '/') i++;
        // `**` at the end matches everything; elsewhere any number of whole directories.
        re += i + 1 >= pattern.length ? '.*' : '(.*/)?';
      } else {
        re += '[^/]*';
      }
    } else if (c === '?') {
      re += '[^/]';
    } else if (c === '\\') {
      re += i + 1 < pattern.length ? escapeRe(pattern[++i]) : '\\\\';
    } else if (c === '[' || c === ']') {
      re += c;
    } else {
      re += escapeRe(c);
    }
  }
  try {
    return new RegExp(`${re}$`, 's');
  } catch {
    throw new BadPatternError(pattern);
  }
}
