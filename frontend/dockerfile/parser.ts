// Dockerfile text -> AST: one node per instruction with its flags, arguments split the way BuildKit's
// parser splits them for that instruction, heredoc bodies, and its line range. Follows BuildKit's parser
// line for line in what it accepts (parser directives, escape token, continuation lines, comments inside
// continuations, empty continuation lines, heredocs), pinned by BuildKit's parser test files.
//
// The `dockerfile-ast` package is not used for this: it joins continuation lines differently from
// BuildKit (a line ending in an escaped escape token `\\` still continues; ` \` lines lose their blank),
// and those differences change what a build runs.
import { DockerfileError, ShellExpansionError, withLocation } from './errors.js';
import { ShellLex, EnvList } from './shell.js';
import { goQuote, goQuoteList } from './gofmt.js';
import { MAX_DOCKERFILE_BYTES, MAX_INSTRUCTION_CHARS, MAX_LINE_BYTES, formatSize } from './limits.js';

export interface Heredoc {
  /** The terminator word, also the file name for COPY. */
  name: string;
  fileDescriptor: number;
  /** Expand variables in the content (the terminator was not quoted). */
  expand: boolean;
  /** `<<-`: leading tabs are removed from the content. */
  chomp: boolean;
  content: string;
}

export interface Node {
  /** The instruction keyword as written. */
  keyword: string;
  /** `--name=value` flags before the arguments. */
  flags: string[];
  /** Arguments as BuildKit's line parser for this instruction produces them. */
  args: string[];
  /** ONBUILD's trigger instruction. */
  child?: Node;
  /** Arguments were a JSON array (exec form). */
  json: boolean;
  /** The whole logical line, continuations joined. */
  original: string;
  heredocs: Heredoc[];
  startLine: number;
  endLine: number;
  /** Comment lines right above the instruction. */
  comments: string[];
}

export interface ParseWarning {
  message: string;
  line: number;
}

export interface ParseResult {
  nodes: Node[];
  escapeToken: string;
  warnings: ParseWarning[];
  /** Parser directives by lower-cased name (`syntax`, `escape`, `check`). */
  directives: Record<string, string>;
}

const WHITESPACE = /[\t\v\f\r ]+/;
const HEREDOC = /^(\d*)<<(-?)[\t\n\f\r ]*([^<]*)$/;
const DIRECTIVE = /^([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*$/;
const KNOWN_DIRECTIVES = new Set(['syntax', 'escape', 'check']);

/** Thrown by line parsers; the caller adds the location. */
class LineError extends Error {}

const isUnicodeSpace = (ch: string) => /^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]$/.test(ch);
const trimLeft = (s: string) => s.replace(/^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/, '');
const trimNewline = (s: string) => s.replace(/[\r\n]+$/, '');
const isComment = (line: string) => trimLeft(line).startsWith('#');

/** Splits at the first run of whitespace, like Go's regexp Split with n=2. */
function splitFirst(s: string): string[] {
  const m = WHITESPACE.exec(s);
  return m ? [s.slice(0, m.index), s.slice(m.index + m[0].length)] : [s];
}

/** Parser directives (`# escape=`` ` ...) and the escape token they set. */
class Directives {
  escapeToken = '\\';
  private continuation = Directives.continuationRegex('\\');
  private done = false;
  private readonly seen = new Set<string>();
  readonly values: Record<string, string> = {};

  private static continuationRegex(token: string): RegExp {
    const e = `\\${token}`;
    // The escape token last on a line continues it, unless the token itself is escaped.
    return new RegExp(`([^${e}])${e}[ \\t]*$|^${e}[ \\t]*$`);
  }

  /** Looks at a line while directives are still allowed; returns whether it was one. */
  check(line: string): boolean {
    if (this.done) return false;
    if (!line.startsWith('#')) {
      this.done = true;
      return false;
    }
    const m = DIRECTIVE.exec(trimLeft(line.slice(1)));
    const key = m?.[1].toLowerCase();
    if (!m || !key || !KNOWN_DIRECTIVES.has(key)) {
      this.done = true;
      return false;
    }
    if (this.seen.has(key)) throw new LineError(`only one ${key} parser directive can be used`);
    this.seen.add(key);
    this.values[key] = m[2];
    if (key === 'escape') {
      if (m[2] !== '`' && m[2] !== '\\') throw new LineError(`invalid escape token '${m[2]}' does not match \` or \\`);
      this.escapeToken = m[2];
      this.continuation = Directives.continuationRegex(m[2]);
    }
    return true;
  }

  /** Removes a trailing continuation token; `continues` says whether the next line belongs to this one. */
  trimContinuation(line: string): { line: string; continues: boolean } {
    if (!this.continuation.test(line)) return { line, continues: false };
    return { line: line.replace(this.continuation, '$1'), continues: true };
  }
}

/** Lines with their line endings. */
function splitLines(text: string): string[] {
  return text.match(/[^\n]*\n|[^\n]+$/g) ?? [];
}

export function parseDockerfile(text: string, file = 'Dockerfile'): ParseResult {
  const d = new Directives();
  const lines = splitLines(text.replace(/^\uFEFF/, ''));
  checkSizes(lines, file);
  const nodes: Node[] = [];
  const warnings: ParseWarning[] = [];
  let comments: string[] = [];
  let currentLine = 0;
  let i = 0;
  const fail = (e: unknown, start: number, end = start): never => {
    if (e instanceof LineError) throw new DockerfileError(e.message, { file, startLine: start, endLine: end }, undefined, 'DOCKERFILE_SYNTAX');
    throw withLocation(e, { file, startLine: start, endLine: end });
  };
  // Strips the line ending (and leading blanks on first lines), notes directives, blanks out comments.
  const processLine = (raw: string, stripLeft: boolean): { line: string; directive: boolean } => {
    let token = trimNewline(raw);
    if (stripLeft) token = trimLeft(token);
    let directive = false;
    try {
      directive = d.check(token);
    } catch (e) {
      fail(e, currentLine + 1);
    }
    return { line: isComment(token) ? '' : token, directive };
  };

  while (i < lines.length) {
    const raw = lines[i++];
    if (isComment(raw)) {
      // As BuildKit: the text after the first character, trimmed.
      const comment = raw.slice(1).trim();
      comments = comment === '' ? [] : [...comments, comment];
    }
    const first = processLine(raw, true);
    if (first.directive) comments.pop();
    currentLine++;
    const startLine = currentLine;
    let { line, continues } = d.trimContinuation(first.line);
    if (!continues && line.length === 0) continue;

    let buf = line;
    let emptyContinuation = false;
    while (continues && i < lines.length) {
      const next = lines[i++];
      const processed = processLine(next, false);
      currentLine++;
      if (isComment(next)) continue;
      if (trimLeft(trimNewline(processed.line)).length === 0) {
        emptyContinuation = true;
        continue;
      }
      ({ line, continues } = d.trimContinuation(processed.line));
      buf += line;
    }
    if (buf.length > MAX_INSTRUCTION_CHARS) {
      fail(new LineError(`instruction is longer than the limit of ${formatSize(MAX_INSTRUCTION_CHARS)} (continuation lines joined)`), startLine, currentLine);
    }
    if (emptyContinuation) warnings.push({ message: `Empty continuation line found in: ${buf}`, line: currentLine });

    let node: Node;
    try {
      node = nodeFromLine(buf, d, comments);
    } catch (e) {
      return fail(e, startLine, currentLine);
    }
    if (canContainHeredoc(node) && buf.includes('<<')) {
      let docs: Heredoc[];
      try {
        docs = heredocsFromLine(buf);
      } catch (e) {
        return fail(e, startLine, currentLine);
      }
      for (const doc of docs) {
        let terminated = false;
        let content = '';
        while (i < lines.length) {
          const bodyLine = lines[i++];
          currentLine++;
          let candidate = trimNewline(bodyLine);
          if (doc.chomp) candidate = candidate.replace(/^\t+/, '');
          if (candidate === doc.name) {
            terminated = true;
            break;
          }
          content += bodyLine;
        }
        if (!terminated) fail(new LineError('unterminated heredoc'), startLine, currentLine);
        node.heredocs.push({ ...doc, content });
      }
    }
    node.startLine = startLine;
    node.endLine = currentLine;
    nodes.push(node);
    comments = [];
  }
  if (nodes.length === 0) fail(new LineError('file with no instructions'), Math.max(currentLine, 1));
  return { nodes, escapeToken: d.escapeToken, warnings, directives: d.values };
}

/** The file and line size limits (limits.ts), checked before any parsing: the error names the line. */
function checkSizes(lines: string[], file: string): void {
  let total = 0;
  for (let n = 0; n < lines.length; n++) {
    const raw = lines[n];
    const bytes = Buffer.byteLength(raw);
    const fail = (message: string): never => {
      throw new DockerfileError(message, { file, startLine: n + 1, endLine: n + 1 }, undefined, 'DOCKERFILE_LIMIT');
    };
    if (bytes - (raw.endsWith('\n') ? 1 : 0) > MAX_LINE_BYTES) {
      // BuildKit's message for its scanner's limit, word for word.
      fail(`dockerfile line greater than max allowed size of ${MAX_LINE_BYTES}`);
    }
    total += bytes;
    if (total > MAX_DOCKERFILE_BYTES) fail(`Dockerfile is larger than the limit of ${formatSize(MAX_DOCKERFILE_BYTES)}`);
  }
}

function canContainHeredoc(node: Node): boolean {
  const n = node.keyword.toLowerCase() === 'onbuild' && node.child ? node.child : node;
  return ['add', 'copy', 'run'].includes(n.keyword.toLowerCase()) && !n.json;
}

function nodeFromLine(line: string, d: Directives, comments: string[]): Node {
  const [keyword, rest] = splitFirst(line.trim());
  let flags: string[] = [];
  let args = '';
  if (rest !== undefined) ({ flags, rest: args } = extractFlags(rest, d));
  args = args.trim();
  const parsed = (LINE_PARSERS[keyword.toLowerCase()] ?? (() => ({ args: [] })))(args, d);
  return {
    keyword,
    flags,
    args: parsed.args,
    child: parsed.child,
    json: parsed.json ?? false,
    original: line,
    heredocs: [],
    startLine: 0,
    endLine: 0,
    comments,
  };
}

/** Leading `--flag` words; a `--` word ends them. Quotes and escapes in flags are resolved. */
function extractFlags(line: string, d: Directives): { flags: string[]; rest: string } {
  const flags: string[] = [];
  let phase: 'spaces' | 'word' | 'quote' = 'spaces';
  let word = '';
  let quote = '';
  let blankOK = false;
  for (let pos = 0; pos <= line.length; pos++) {
    const end = pos === line.length;
    let ch = end ? '' : line[pos];
    if (phase === 'spaces') {
      if (end) break;
      if (isUnicodeSpace(ch)) continue;
      if (ch !== '-' || line[pos + 1] !== '-') return { flags, rest: line.slice(pos) };
      phase = 'word';
    }
    if (end) {
      if (word !== '--' && (blankOK || word.length > 0)) flags.push(word);
      break;
    }
    if (phase === 'word') {
      if (isUnicodeSpace(ch)) {
        if (word === '--') return { flags, rest: line.slice(pos) };
        if (blankOK || word.length > 0) flags.push(word);
        phase = 'spaces';
        word = '';
        blankOK = false;
        continue;
      }
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOK = true;
        phase = 'quote';
        continue;
      }
      if (ch === d.escapeToken) {
        if (pos + 1 === line.length) continue;
        ch = line[++pos];
      }
      word += ch;
      continue;
    }
    if (ch === quote) {
      phase = 'word';
      continue;
    }
    if (ch === d.escapeToken) {
      if (pos + 1 === line.length) {
        phase = 'word';
        continue;
      }
      ch = line[++pos];
    }
    word += ch;
  }
  return { flags, rest: '' };
}

interface Parsed {
  args: string[];
  json?: boolean;
  child?: Node;
}

type LineParser = (rest: string, d: Directives) => Parsed;

/** Words separated by blanks; quotes and escapes are kept (expansion removes them later). */
function parseWords(rest: string, d: Directives): string[] {
  const chars = [...rest];
  const words: string[] = [];
  let phase: 'spaces' | 'word' | 'quote' = 'spaces';
  let quote = '';
  let blankOK = false;
  let word = '';
  for (let pos = 0; pos <= chars.length; pos++) {
    const end = pos === chars.length;
    let ch = end ? '' : chars[pos];
    if (phase === 'spaces') {
      if (end) break;
      if (isUnicodeSpace(ch)) continue;
      phase = 'word';
    }
    if (end) {
      if (blankOK || word.length > 0) words.push(word);
      break;
    }
    if (phase === 'word') {
      if (isUnicodeSpace(ch)) {
        phase = 'spaces';
        if (blankOK || word.length > 0) words.push(word);
        word = '';
        blankOK = false;
        continue;
      }
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOK = true;
        phase = 'quote';
      }
      if (ch === d.escapeToken) {
        if (pos + 1 === chars.length) continue;
        word += ch;
        ch = chars[++pos];
      }
      word += ch;
      continue;
    }
    if (ch === quote) phase = 'word';
    if (ch === d.escapeToken && quote !== "'") {
      if (pos + 1 === chars.length) {
        phase = 'word';
        continue;
      }
      word += ch;
      ch = chars[++pos];
    }
    word += ch;
  }
  return words;
}

/** ENV and LABEL: `key value` (legacy, one pair) or `k=v k2=v2`; args are triples key, value, separator. */
function parseNameVal(rest: string, d: Directives, key: string): Parsed {
  const words = parseWords(rest, d);
  if (words.length === 0) return { args: [] };
  if (!words[0].includes('=')) {
    const parts = splitFirst(rest);
    if (parts.length < 2) throw new LineError(`${key} must have two arguments`);
    return { args: [parts[0], parts[1], ''] };
  }
  const args: string[] = [];
  for (const word of words) {
    const eq = word.indexOf('=');
    if (eq < 0) throw new LineError(`Syntax error - can't find = in ${goQuote(word)}. Must be of the form: name=value`);
    args.push(word.slice(0, eq), word.slice(eq + 1), '=');
  }
  return { args };
}

const parseWhitespaceDelimited: LineParser = (rest) => ({ args: rest === '' ? [] : rest.split(WHITESPACE) });
const parseString: LineParser = (rest) => ({ args: rest === '' ? [] : [rest] });

class NotStringArrayError extends LineError {
  constructor() {
    super('when using JSON array syntax, arrays must be comprised of strings only');
  }
}

/** A JSON array of strings, or undefined when `rest` is not JSON at all. */
function parseJSON(rest: string): Parsed | undefined {
  const text = trimLeft(rest);
  if (!text.startsWith('[')) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!Array.isArray(value)) return undefined;
  if (!value.every((v) => typeof v === 'string')) throw new NotStringArrayError();
  return { args: value as string[], json: true };
}

const parseMaybeJSON: LineParser = (rest) => (rest === '' ? { args: [] } : parseJSON(rest) ?? { args: [rest] });
const parseMaybeJSONToList: LineParser = (rest, d) => parseJSON(rest) ?? parseWhitespaceDelimited(rest, d);

const LINE_PARSERS: Record<string, LineParser> = {
  add: parseMaybeJSONToList,
  arg: (rest, d) => ({ args: parseWords(rest, d) }),
  cmd: parseMaybeJSON,
  copy: parseMaybeJSONToList,
  entrypoint: parseMaybeJSON,
  env: (rest, d) => parseNameVal(rest, d, 'ENV'),
  expose: parseWhitespaceDelimited,
  from: parseWhitespaceDelimited,
  healthcheck: (rest, d) => {
    // HEALTHCHECK TYPE [command]: the type, then the command as CMD would parse it.
    const m = /^(\S+)\s*/.exec(rest);
    if (!m) return { args: [] };
    const cmd = parseMaybeJSON(rest.slice(m[0].length), d);
    return { args: [m[1], ...cmd.args], json: cmd.json };
  },
  label: (rest, d) => parseNameVal(rest, d, 'LABEL'),
  maintainer: parseString,
  onbuild: (rest, d) => (rest === '' ? { args: [] } : { args: [], child: nodeFromLine(rest, d, []) }),
  run: parseMaybeJSON,
  shell: parseMaybeJSON,
  stopsignal: parseString,
  user: parseString,
  volume: parseMaybeJSONToList,
  workdir: parseString,
};

/** Heredocs (`<<EOF`, `<<-"EOF"`, `3<<EOF`) named in an instruction line. */
function heredocsFromLine(line: string): Heredoc[] {
  const lex = new ShellLex('\\', { rawQuotes: true, rawEscapes: true, skipUnsetEnv: true });
  let words: string[];
  try {
    words = lex.processWords(line, EnvList.empty());
  } catch {
    words = [];
  }
  return words.map(parseHeredoc).filter((h): h is Heredoc => h !== undefined);
}

/** The heredoc a word starts, if it is one. */
export function parseHeredoc(word: string): Heredoc | undefined {
  const m = HEREDOC.exec(word);
  if (!m || m[3] === '') return undefined;
  const rest = m[3];
  const env = EnvList.empty();
  let words: string[];
  let raw: string[];
  try {
    words = new ShellLex('\\', { skipUnsetEnv: true }).processWords(rest, env);
    if (words.length !== 1) return undefined;
    raw = new ShellLex('\\', { skipUnsetEnv: true, rawQuotes: true }).processWords(rest, env);
  } catch (e) {
    // A terminator that does not lex (`<<"EOT`): the caller adds the line.
    if (e instanceof ShellExpansionError) throw new DockerfileError(e.message, undefined, undefined, 'DOCKERFILE_SYNTAX');
    throw e;
  }
  if (raw.length !== words.length) throw new DockerfileError(`internal lexing of heredoc produced inconsistent results: ${rest}`, undefined, undefined, 'DOCKERFILE_SYNTAX');
  // Any quoting of the terminator turns expansion of the content off.
  const quotes = (s: string) => (s.match(/['"]/g) ?? []).length;
  return {
    name: words[0],
    fileDescriptor: m[1] === '' ? 0 : Number(m[1]),
    expand: quotes(words[0]) === quotes(raw[0]),
    chomp: m[2] === '-',
    content: '',
  };
}

/** BuildKit's `Node.Dump()` of one instruction: `run ["--flag"] "arg"`, used to compare with its test files. */
export function dumpNode(node: Node): string {
  let out = node.keyword.toLowerCase();
  if (node.flags.length > 0) out += ` ${goQuoteList(node.flags)}`;
  if (node.child) out += ` (${dumpNode(node.child)})`;
  for (const arg of node.args) out += ` ${goQuote(arg)}`;
  return out;
}
