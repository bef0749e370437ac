// Word expansion as BuildKit's shell lexer does it: quotes, escapes, `$VAR`, `${VAR}` and the `${VAR:-x}`,
// `:+`, `?`, `#`, `%`, `/` modifiers, and splitting into words after expansion. Not a shell: no command
// substitution, globbing or arithmetic. Behaviour is pinned by BuildKit's envVarTest and wordsTest vectors.
import { ShellExpansionError } from './errors.js';
import { ShellPattern } from './glob.js';
import { MAX_EXPANSION_TOTAL, MAX_NESTING, MAX_WORD_GROWTH, formatSize } from './limits.js';

/** Variables visible to the lexer. */
export interface EnvGetter {
  get(key: string): string | undefined;
  keys(): string[];
}

interface EnvEntry {
  value: string;
  /** When it was set: the order a RUN step's environment shows. */
  seq: number;
}

let envSeq = 0;

/**
 * An ordered environment where setting a key again moves it to the end, like BuildKit's llb.EnvList:
 * the order is what a RUN step's environment shows. Immutable to its users, but a version being extended
 * hands its map to the new version (setting is O(1), not a copy: thousands of ARGs were quadratic) and
 * keeps only the change to undo, rebuilding its own map should it be read again (rare: a stage's base).
 */
export class EnvList implements EnvGetter {
  private map: Map<string, EnvEntry> | undefined;
  /** Set while a newer version holds the map: that version and the entry this one had for its key. */
  private newer?: { list: EnvList; key: string; prev: EnvEntry | undefined };

  private constructor(map: Map<string, EnvEntry>) {
    this.map = map;
  }

  static empty(): EnvList {
    return new EnvList(new Map());
  }

  /** From `KEY=VALUE` strings (a value-less `KEY` means empty). */
  static fromArray(env: readonly string[]): EnvList {
    let list = EnvList.empty();
    for (const e of env) {
      const eq = e.indexOf('=');
      list = eq < 0 ? list.set(e, '') : list.set(e.slice(0, eq), e.slice(eq + 1));
    }
    return list;
  }

  private entries(): Map<string, EnvEntry> {
    if (this.map) return this.map;
    // Walk to the version holding the map (iteratively), copy it and undo the changes since, newest first.
    const chain: EnvList[] = [];
    let holder: EnvList = this;
    while (!holder.map) {
      chain.push(holder);
      holder = holder.newer!.list;
    }
    const map = new Map(holder.map);
    for (let i = chain.length - 1; i >= 0; i--) {
      const { key, prev } = chain[i].newer!;
      if (prev) map.set(key, prev);
      else map.delete(key);
    }
    this.map = new Map([...map].sort((a, b) => a[1].seq - b[1].seq));
    this.newer = undefined;
    return this.map;
  }

  set(key: string, value: string): EnvList {
    const map = this.entries();
    const prev = map.get(key);
    map.delete(key);
    map.set(key, { value, seq: ++envSeq });
    const next = new EnvList(map);
    this.map = undefined;
    this.newer = { list: next, key, prev };
    return next;
  }

  get(key: string): string | undefined {
    return this.entries().get(key)?.value;
  }

  keys(): string[] {
    return [...this.entries().keys()];
  }

  get size(): number {
    return this.entries().size;
  }

  toArray(): string[] {
    return [...this.entries()].map(([k, e]) => `${k}=${e.value}`);
  }
}

export interface ProcessWordResult {
  result: string;
  words: string[];
  /** Variables the word referenced that were set / not set. */
  matched: Set<string>;
  unmatched: Set<string>;
}

const EOF = '';
const SPACE = /^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]$/;
const LETTER = /^\p{L}$/u;
const DIGIT = /^\p{Nd}$/u;
// ASCII first: a Unicode property class costs up to ~10 ms to compile on first use, at every CLI start.
const isLetter = (ch: string) => (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch > '\x7f' && LETTER.test(ch));
const isDigit = (ch: string) => (ch >= '0' && ch <= '9') || (ch > '\x7f' && DIGIT.test(ch));

const SPACES = /[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/g;

const isSpace = (ch: string) => SPACE.test(ch);
const isSpecialParam = (ch: string) => '@*#?-$!0'.includes(ch) && ch !== EOF;

/** Characters by code point, with one-character lookahead. */
class Scanner {
  private readonly chars: string[];
  private pos = 0;
  constructor(text: string) {
    this.chars = [...text];
  }
  peek(): string {
    return this.pos < this.chars.length ? this.chars[this.pos] : EOF;
  }
  next(): string {
    return this.pos < this.chars.length ? this.chars[this.pos++] : EOF;
  }
}

/** Collects words: unquoted whitespace separates them, quoted or escaped characters never do. */
class Words {
  private buf = '';
  private readonly words: string[] = [];
  private inWord = false;

  addChar(ch: string): void {
    if (isSpace(ch)) {
      if (this.inWord && this.buf.length > 0) {
        this.words.push(this.buf);
        this.buf = '';
        this.inWord = false;
      }
    } else {
      this.addRaw(ch);
    }
  }
  addString(s: string): void {
    // By runs, not characters: an expanded value can be a megabyte.
    let last = 0;
    for (const m of s.matchAll(SPACES)) {
      if (m.index! > last) this.addRaw(s.slice(last, m.index));
      this.addChar(' ');
      last = m.index! + m[0].length;
    }
    if (last < s.length) this.addRaw(s.slice(last));
  }
  addRaw(s: string): void {
    this.buf += s;
    this.inWord = true;
  }
  get(): string[] {
    if (this.buf.length > 0) {
      this.words.push(this.buf);
      this.buf = '';
      this.inWord = false;
    }
    return this.words;
  }
}

export interface ShellLexOptions {
  /** Keep quote characters in the result. */
  rawQuotes?: boolean;
  /** Keep escape characters in the result. */
  rawEscapes?: boolean;
  /** Treat quotes as ordinary characters. */
  skipProcessQuotes?: boolean;
  /** Leave references to unset variables as written. */
  skipUnsetEnv?: boolean;
  /** Charged with what each expansion adds; one per conversion, shared by its lexers. */
  budget?: ExpansionBudget;
}

/** What expansion may add over a whole conversion (MAX_EXPANSION_TOTAL), in characters. */
/** A bound was crossed: reported as it is, never as the syntax error the unfinished word would be. */
class ExpansionLimitError extends ShellExpansionError {}

export class ExpansionBudget {
  private used = 0;
  constructor(readonly limit = MAX_EXPANSION_TOTAL) {}

  charge(n: number): void {
    this.used += n;
    if (this.used > this.limit) throw new ExpansionLimitError(`variable expansion adds more than the limit of ${formatSize(this.limit)} to this Dockerfile's words in all`);
  }
}

export class ShellLex {
  constructor(readonly escapeToken: string = '\\', readonly options: ShellLexOptions = {}) {}

  /** Expands `word` into one string (whitespace kept). */
  processWord(word: string, env: EnvGetter): string {
    return this.process(word, env).result;
  }

  /** Expands `word` and splits it into words. */
  processWords(word: string, env: EnvGetter): string[] {
    return this.process(word, env).words;
  }

  processWordWithMatches(word: string, env: EnvGetter): ProcessWordResult {
    return this.process(word, env);
  }

  private process(word: string, env: EnvGetter): ProcessWordResult {
    const run = new LexRun(this.escapeToken, this.options, env, word);
    try {
      const { result, words } = run.processStopOn(EOF, !!this.options.rawEscapes);
      if (result.length > word.length) this.options.budget?.charge(result.length - word.length);
      return { result, words, matched: run.matched, unmatched: run.unmatched };
    } catch (e) {
      if (e instanceof ShellExpansionError) throw new ShellExpansionError(`failed to process ${goQuote(word)}: ${e.message}`);
      throw e;
    }
  }
}

/** Minimal Go `%q` of a string, enough for messages; a long word is cut so the message stays a line. */
function goQuote(s: string): string {
  return s.length > 200 ? `${JSON.stringify(s.slice(0, 200))}...` : JSON.stringify(s);
}

/** The state of expanding one word. */
class LexRun {
  readonly matched = new Set<string>();
  readonly unmatched = new Set<string>();
  private readonly scanner: Scanner;
  private rawEscapes: boolean;
  /** `${` levels open: each is a level of recursion. */
  private depth = 0;
  /** The longest the word may become (MAX_WORD_GROWTH). */
  private readonly maxLength: number;

  constructor(
    private readonly escapeToken: string,
    private readonly opts: ShellLexOptions,
    private readonly env: EnvGetter,
    word: string,
  ) {
    this.scanner = new Scanner(word);
    this.rawEscapes = !!opts.rawEscapes;
    this.maxLength = word.length + MAX_WORD_GROWTH;
  }

  /** Fails once expansion made (part of) the word longer than the limit. */
  private checkLength(n: number): void {
    if (n > this.maxLength) throw new ExpansionLimitError(`variable expansion makes the word more than ${formatSize(MAX_WORD_GROWTH)} longer than written`);
  }

  processStopOn(stopChar: string, rawEscapes: boolean): { result: string; words: string[] } {
    const saved = this.rawEscapes;
    this.rawEscapes = rawEscapes;
    try {
      return this.stopOn(stopChar);
    } finally {
      this.rawEscapes = saved;
    }
  }

  private special(ch: string): (() => string) | undefined {
    if (ch === '$') return () => this.processDollar();
    if (ch === '<') return () => this.processPossibleHeredoc();
    if (!this.opts.skipProcessQuotes) {
      if (ch === "'") return () => this.processSingleQuote();
      if (ch === '"') return () => this.processDoubleQuote();
    }
    return undefined;
  }

  private stopOn(stopChar: string): { result: string; words: string[] } {
    const sc = this.scanner;
    const words = new Words();
    let result = '';
    while (sc.peek() !== EOF) {
      let ch = sc.peek();
      if (stopChar !== EOF && ch === stopChar) {
        sc.next();
        return { result, words: words.get() };
      }
      const fn = this.special(ch);
      if (fn) {
        const tmp = fn();
        result += tmp;
        this.checkLength(result.length);
        if (ch === '$') words.addString(tmp);
        else words.addRaw(tmp);
        continue;
      }
      ch = sc.next();
      if (ch === this.escapeToken) {
        if (this.rawEscapes) {
          words.addRaw(ch);
          result += ch;
        }
        // The escape token escapes the next character; at the end of the word it vanishes.
        ch = sc.next();
        if (ch === EOF) break;
        words.addRaw(ch);
      } else {
        words.addChar(ch);
      }
      result += ch;
    }
    if (stopChar !== EOF) throw new ShellExpansionError(`unexpected end of statement while looking for matching ${stopChar}`);
    return { result, words: words.get() };
  }

  private processSingleQuote(): string {
    // Everything up to the next ' is literal; a ' cannot be escaped inside.
    const sc = this.scanner;
    let result = '';
    const open = sc.next();
    if (this.opts.rawQuotes) result += open;
    for (;;) {
      const ch = sc.next();
      if (ch === EOF) throw new ShellExpansionError('unexpected end of statement while looking for matching single-quote');
      if (ch === "'") {
        if (this.opts.rawQuotes) result += ch;
        return result;
      }
      result += ch;
    }
  }

  private processDoubleQuote(): string {
    // Literal except `$` expansions; the escape token only escapes `"`, `$` and itself.
    const sc = this.scanner;
    let result = '';
    const open = sc.next();
    if (this.opts.rawQuotes) result += open;
    for (;;) {
      const peek = sc.peek();
      if (peek === EOF) throw new ShellExpansionError('unexpected end of statement while looking for matching double-quote');
      if (peek === '"') {
        const ch = sc.next();
        if (this.opts.rawQuotes) result += ch;
        return result;
      }
      if (peek === '$') {
        result += this.processDollar();
        this.checkLength(result.length);
        continue;
      }
      let ch = sc.next();
      if (ch === this.escapeToken) {
        if (this.rawEscapes) result += ch;
        const after = sc.peek();
        if (after === EOF) continue;
        if (after === '"' || after === '$' || after === this.escapeToken) ch = sc.next();
      }
      result += ch;
    }
  }

  private processDollar(): string {
    const sc = this.scanner;
    sc.next();
    if (sc.peek() !== '{') {
      const name = this.processName();
      if (name === '') return '$';
      const value = this.getEnv(name);
      if (value === undefined && this.opts.skipUnsetEnv) return `$${name}`;
      return value ?? '';
    }
    sc.next();
    if (this.depth >= MAX_NESTING) throw new ExpansionLimitError(`more than ${MAX_NESTING} nested \${...} expansions`);
    this.depth++;
    try {
      return this.processBraced();
    } finally {
      this.depth--;
    }
  }

  /** `${...}` after the `${`. */
  private processBraced(): string {
    const sc = this.scanner;
    const first = sc.peek();
    if (first === EOF) throw new ShellExpansionError("syntax error: missing '}'");
    if (first === '{' || first === '}' || first === ':') throw new ShellExpansionError('syntax error: bad substitution');
    const name = this.processName();
    let ch = sc.next();
    let chs = ch;
    switch (ch) {
      case '}': {
        const value = this.getEnv(name);
        if (value === undefined && this.opts.skipUnsetEnv) return `\${${name}}`;
        return value ?? '';
      }
      case ':':
      case '+':
      case '-':
      case '?':
      case '#':
      case '%': {
        const nullIsUnset = ch === ':';
        if (nullIsUnset) {
          ch = sc.next();
          chs += ch;
        }
        return this.modifier(name, ch, chs, nullIsUnset);
      }
      case '/':
        return this.substitute(name);
      case EOF:
        throw new ShellExpansionError("syntax error: missing '}'");
      default:
        throw new ShellExpansionError(`unsupported modifier (${chs}) in substitution`);
    }
  }

  private modifier(name: string, ch: string, chs: string, nullIsUnset: boolean): string {
    const raw = ch === '#' || ch === '%';
    if (nullIsUnset && raw) throw new ShellExpansionError(`unsupported modifier (${chs}) in substitution`);
    let word = this.stopOnOrMissing('}', raw, "syntax error: missing '}'");
    const value = this.getEnv(name);
    const set = value !== undefined;
    if (this.opts.skipUnsetEnv && !set) return `\${${name}${chs}${word}}`;
    const empty = !set || (nullIsUnset && value === '');
    switch (ch) {
      case '-':
        return empty ? word : value!;
      case '+':
        return empty ? '' : word;
      case '?':
        if (!set) throw new ShellExpansionError(`${name}: ${word || 'is not allowed to be unset'}`);
        if (nullIsUnset && value === '') throw new ShellExpansionError(`${name}: ${word || 'is not allowed to be empty'}`);
        return value!;
      case '%':
      case '#': {
        // One `%`/`#` removes the shortest match, two the longest.
        const greedy = word.startsWith(ch);
        if (greedy) word = word.slice(1);
        return ch === '%' ? trimSuffix(word, value ?? '', greedy) : trimPrefix(word, value ?? '', greedy);
      }
      default:
        throw new ShellExpansionError(`unsupported modifier (${chs}) in substitution`);
    }
  }

  private substitute(name: string): string {
    const sc = this.scanner;
    const replaceAll = sc.peek() === '/';
    if (replaceAll) sc.next();
    const pattern = this.stopOnOrMissing('/', true, "syntax error: missing '/' in ${}");
    const replacement = this.stopOnOrMissing('}', true, "syntax error: missing '}'");
    const value = this.getEnv(name);
    if (value === undefined && this.opts.skipUnsetEnv) return `\${${name}/${pattern}/${replacement}}`;
    return new ShellPattern(pattern).replace(value ?? '', replacement, replaceAll, (n) => this.checkLength(n));
  }

  private stopOnOrMissing(stop: string, rawEscapes: boolean, missing: string): string {
    try {
      return this.processStopOn(stop, rawEscapes).result;
    } catch (e) {
      if (this.scanner.peek() === EOF && !(e instanceof ExpansionLimitError)) throw new ShellExpansionError(missing);
      throw e;
    }
  }

  private processName(): string {
    // A name is letters, digits and `_`; a leading digit reads all digits (`$10`); a special parameter
    // (`$@`, `$#`, ...) is one character.
    const sc = this.scanner;
    let name = '';
    while (sc.peek() !== EOF) {
      const ch = sc.peek();
      if (name === '' && isDigit(ch)) {
        while (sc.peek() !== EOF && isDigit(sc.peek())) name += sc.next();
        return name;
      }
      if (name === '' && isSpecialParam(ch)) return sc.next();
      if (!isLetter(ch) && !isDigit(ch) && ch !== '_') break;
      name += sc.next();
    }
    return name;
  }

  private processPossibleHeredoc(): string {
    // `<<` and the blanks after it stay glued to the following word, so `<< EOF` is one word.
    const sc = this.scanner;
    sc.next();
    if (sc.peek() !== '<') return '<';
    sc.next();
    let space = '';
    while (sc.peek() === '\t' || sc.peek() === '\r' || sc.peek() === ' ') space += sc.next();
    return `<<${space}`;
  }

  private getEnv(name: string): string | undefined {
    const v = this.env.get(name);
    (v === undefined ? this.unmatched : this.matched).add(name);
    return v;
  }
}

/** Removes the shortest (or, `greedy`, the longest) prefix the pattern matches. */
function trimPrefix(pattern: string, value: string, greedy: boolean): string {
  const chars = [...value];
  const n = new ShellPattern(pattern).prefixLength(chars, greedy);
  return n <= 0 ? value : chars.slice(n).join('');
}

/** Reverses a pattern keeping escapes in front of what they escape: `a\*c` -> `c\*a`. */
function reversePattern(pattern: string): string {
  const chars = [...pattern];
  const out: string[] = new Array(chars.length);
  const last = chars.length - 1;
  for (let i = 0; i <= last; ) {
    if (chars[i] === '\\' && i !== last) {
      out[last - i - 1] = chars[i];
      out[last - i] = chars[i + 1];
      i += 2;
    } else {
      out[last - i] = chars[i];
      i++;
    }
  }
  return out.join('');
}

function trimSuffix(pattern: string, value: string, greedy: boolean): string {
  // Matching runs from the start, so match the reversed pattern against the reversed value.
  const reversed = [...value].reverse().join('');
  return [...trimPrefix(reversePattern(pattern), reversed, greedy)].reverse().join('');
}
