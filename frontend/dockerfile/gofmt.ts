// The few Go formatting verbs BuildKit's messages and image history use, so ours read the same:
// `%q` of a string or []string, `%v` of []string, and time.Duration's String().

const PRINTABLE = /^[\p{L}\p{M}\p{N}\p{P}\p{S} ]$/u;
const SHORT_ESCAPES: Record<string, string> = { '\x07': '\\a', '\b': '\\b', '\f': '\\f', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\v': '\\v' };

/** Go's strconv.Quote. */
export function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    if (ch === '"' || ch === '\\') out += `\\${ch}`;
    // ASCII first: the Unicode property classes cost about a millisecond to compile on first use.
    else if (ch >= ' ' && ch <= '~') out += ch;
    else if (ch > '\x7f' && PRINTABLE.test(ch)) out += ch;
    else if (SHORT_ESCAPES[ch]) out += SHORT_ESCAPES[ch];
    else {
      const cp = ch.codePointAt(0)!;
      if (cp < 0x80) out += `\\x${cp.toString(16).padStart(2, '0')}`;
      else if (cp < 0x10000) out += `\\u${cp.toString(16).padStart(4, '0')}`;
      else out += `\\U${cp.toString(16).padStart(8, '0')}`;
    }
  }
  return `${out}"`;
}

/** Go's `%q` of a []string: `["a" "b"]`. */
export function goQuoteList(list: readonly string[]): string {
  return `[${list.map(goQuote).join(' ')}]`;
}

/** Go's `%v` of a []string: `[a b]`. */
export function goList(list: readonly string[]): string {
  return `[${list.join(' ')}]`;
}

const UNITS: [string, number][] = [['h', 3600e9], ['m', 60e9], ['s', 1e9], ['ms', 1e6], ['us', 1e3], ['µs', 1e3], ['μs', 1e3], ['ns', 1]];

/** Go's time.ParseDuration, in nanoseconds; undefined when invalid. */
export function parseGoDuration(s: string): number | undefined {
  let rest = s;
  let sign = 1;
  if (rest.startsWith('-') || rest.startsWith('+')) {
    sign = rest[0] === '-' ? -1 : 1;
    rest = rest.slice(1);
  }
  if (rest === '0') return 0;
  if (rest === '') return undefined;
  let total = 0;
  while (rest !== '') {
    const m = /^(\d*\.?\d*)(h|ms|m|s|us|µs|μs|ns)/.exec(rest);
    if (!m || m[1] === '' || m[1] === '.') return undefined;
    total += parseFloat(m[1]) * UNITS.find(([u]) => u === m[2])![1];
    rest = rest.slice(m[0].length);
  }
  return sign * Math.round(total);
}

/** Go's time.Duration.String(): `1h2m3.5s`, `300ms`, `0s`. */
export function formatGoDuration(ns: number): string {
  if (ns === 0) return '0s';
  const neg = ns < 0;
  let d = Math.abs(ns);
  let out: string;
  if (d < 1e9) {
    const [unit, size] = d < 1e3 ? ['ns', 1] : d < 1e6 ? ['µs', 1e3] : ['ms', 1e6];
    out = `${trimFraction(d / size)}${unit}`;
  } else {
    const h = Math.floor(d / 3600e9);
    d -= h * 3600e9;
    const m = Math.floor(d / 60e9);
    d -= m * 60e9;
    out = `${h ? `${h}h` : ''}${h || m ? `${m}m` : ''}${trimFraction(d / 1e9)}s`;
  }
  return neg ? `-${out}` : out;
}

function trimFraction(n: number): string {
  return String(Number(n.toFixed(9)));
}
