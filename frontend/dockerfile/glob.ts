// Shell patterns of `${VAR#pat}`, `${VAR%pat}` and `${VAR/pat/repl}`: `*`, `?` and backslash escapes, no
// brackets. Matched by simulating the pattern's automaton over the value, never by a backtracking regex:
// `${A#*a*a*z}` against a long run of `a` took seconds per thousand characters that way. The work is
// counted and bounded, so a hostile pattern fails in one line instead of running for hours.
import { ShellExpansionError } from './errors.js';

/** Automaton steps one match may take (about a second): a long pattern against a long value. */
export const MAX_PATTERN_STEPS = 1 << 27;

type Token = { kind: 'lit'; ch: string } | { kind: 'any' } | { kind: 'star' };

// As a regular expression's `.` (which BuildKit's patterns become): `*` and `?` never match a line end.
const isLineTerminator = (ch: string) => ch === '\n' || ch === '\r' || ch === '\u2028' || ch === '\u2029';

export class ShellPattern {
  private readonly tokens: Token[];
  /** Per state: the states it stands for without reading (a `*` may match nothing). */
  private readonly closures: number[][];

  constructor(readonly pattern: string) {
    this.tokens = tokenize(pattern);
    const m = this.tokens.length;
    // Stars never follow each other (tokenize merges them): a closure is one or two states.
    this.closures = Array.from({ length: m + 1 }, (_, s) => (s < m && this.tokens[s].kind === 'star' ? [s, s + 1] : [s]));
  }

  /** The state after reading `ch` in state `s`, or -1. */
  private step(s: number, ch: string): number {
    const t = this.tokens[s];
    if (t.kind === 'star') return isLineTerminator(ch) ? -1 : s;
    if (t.kind === 'any') return isLineTerminator(ch) ? -1 : s + 1;
    return t.ch === ch ? s + 1 : -1;
  }

  private tooCostly(length: number): ShellExpansionError {
    return new ShellExpansionError(`pattern ${JSON.stringify(truncate(this.pattern))} is too costly to match against a value of ${length} characters`);
  }

  /** Length (code points) of the shortest or longest prefix of `chars` the pattern matches, or -1. */
  prefixLength(chars: string[], longest: boolean): number {
    const m = this.tokens.length;
    // Active states as a list, with a generation stamp per state so each is listed once.
    let cur = new Int32Array(m + 1);
    let next = new Int32Array(m + 1);
    const stamp = new Int32Array(m + 1).fill(-1);
    let n = 0;
    for (const c of this.closures[0]) {
      stamp[c] = 0;
      cur[n++] = c;
    }
    let found = -1;
    let steps = 0;
    for (let p = 0; ; p++) {
      if (stamp[m] === p) {
        found = p;
        if (!longest) return found;
      }
      if (p === chars.length || n === 0) return found;
      const ch = chars[p];
      let k = 0;
      for (let i = 0; i < n; i++) {
        const s = cur[i];
        if (s === m) continue;
        const to = this.step(s, ch);
        if (to < 0) continue;
        for (const c of this.closures[to]) {
          if (stamp[c] === p + 1) continue;
          stamp[c] = p + 1;
          next[k++] = c;
        }
      }
      steps += n + 1;
      if (steps > MAX_PATTERN_STEPS) throw this.tooCostly(chars.length);
      [cur, next] = [next, cur];
      n = k;
    }
  }

  /**
   * Replaces the leftmost match (longest at that start, as a greedy regex finds it), or every match left
   * to right when `all`; an empty match moves on by one character.
   */
  replace(value: string, replacement: string, all: boolean, checkLength: (n: number) => void): string {
    const chars = [...value];
    const budget = { steps: 0 };
    let out = '';
    let from = 0;
    while (from <= chars.length) {
      const match = this.leftmost(chars, from, budget);
      if (!match) break;
      const [s, e] = match;
      out += chars.slice(from, s).join('') + replacement;
      checkLength(out.length);
      if (e === s) {
        if (s < chars.length) out += chars[s];
        from = s + 1;
      } else {
        from = e;
      }
      if (!all) break;
    }
    return from <= chars.length ? out + chars.slice(from).join('') : out;
  }

  /**
   * The leftmost match at or after `from` and its longest end. One pass: a thread per start, and per
   * state only the earliest start that reached it (what follows depends only on the state).
   */
  private leftmost(chars: string[], from: number, budget: { steps: number }): [number, number] | undefined {
    const m = this.tokens.length;
    let cur = new Int32Array(m + 1);
    let next = new Int32Array(m + 1);
    // The earliest start per state, valid where the stamp says this position.
    let curStart = new Int32Array(m + 1);
    let nextStart = new Int32Array(m + 1);
    const stamp = new Int32Array(m + 1).fill(-1);
    let n = 0;
    const add = (list: Int32Array, starts: Int32Array, count: number, state: number, start: number, p: number): number => {
      for (const c of this.closures[state]) {
        if (stamp[c] === p) {
          if (start < starts[c]) starts[c] = start;
          continue;
        }
        stamp[c] = p;
        starts[c] = start;
        list[count++] = c;
      }
      return count;
    };
    n = add(cur, curStart, 0, 0, from, from);
    let best: [number, number] | undefined;
    for (let p = from; ; p++) {
      if (stamp[m] === p) {
        const st = curStart[m];
        if (!best || st < best[0] || (st === best[0] && p > best[1])) best = [st, p];
      }
      if (p === chars.length) break;
      const ch = chars[p];
      let k = 0;
      for (let i = 0; i < n; i++) {
        const s = cur[i];
        const st = curStart[s];
        // Once a match is known, only threads from its start can make it longer.
        if (s === m || (best && st > best[0])) continue;
        const to = this.step(s, ch);
        if (to >= 0) k = add(next, nextStart, k, to, st, p + 1);
      }
      budget.steps += n + 1;
      if (budget.steps > MAX_PATTERN_STEPS) throw this.tooCostly(chars.length);
      // A later start only matters while no match is known.
      if (!best) k = add(next, nextStart, k, 0, p + 1, p + 1);
      [cur, next] = [next, cur];
      [curStart, nextStart] = [nextStart, curStart];
      n = k;
      if (n === 0) break;
    }
    return best;
  }
}

function truncate(s: string): string {
  return s.length > 80 ? `${s.slice(0, 80)}...` : s;
}

/** BuildKit's reading of a pattern: `\}` and `\/` are the substitution's escapes, `\*` `\?` `\\` literal. */
function tokenize(pattern: string): Token[] {
  const chars = [...pattern];
  const out: Token[] = [];
  for (let i = 0; i < chars.length; i++) {
    let tok = chars[i];
    if (tok === '*') {
      // `**` matches what `*` does: one state instead of two keeps the automaton small.
      if (out[out.length - 1]?.kind !== 'star') out.push({ kind: 'star' });
      continue;
    }
    if (tok === '?') {
      out.push({ kind: 'any' });
      continue;
    }
    if (tok === '\\') {
      const next = chars[i + 1];
      if (next === '}' || next === '/') continue;
      tok = chars[++i] ?? '';
      if (tok !== '*' && tok !== '?' && tok !== '\\') {
        throw new ShellExpansionError(`invalid pattern (${pattern}) in substitution: invalid escape '\\${tok}'`);
      }
    }
    out.push({ kind: 'lit', ch: tok });
  }
  return out;
}
