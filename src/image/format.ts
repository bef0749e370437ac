// Docker CLI output conventions, shared by the image and container commands: sizes and ages as Docker
// prints them (go-units), its tables (text/tabwriter, minwidth 10, padding 3), and `--format` templates
// (the subset of Go's text/template that Docker's formats use).
import { UserError } from '../util/errors.js';

/** go-units HumanSizeWithPrecision(n, 3): decimal units, three significant digits (`4.26MB`, `0B`). */
export function humanSize(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB', 'EB', 'ZB', 'YB'];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return `${goG(v, 3)}${units[i]}`;
}

/** Go's `%.Ng`: N significant digits, trailing zeros dropped. */
function goG(v: number, digits: number): string {
  if (v === 0) return '0';
  const s = v.toPrecision(digits);
  if (s.includes('e')) return String(Number(s));
  return s.includes('.') ? s.replace(/\.?0+$/, '') : s;
}

/** go-units HumanDuration, as `docker images` and `docker ps` print ages (`2 hours`, `About a minute`). */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < 1) return 'Less than a second';
  if (seconds === 1) return '1 second';
  if (seconds < 60) return `${seconds} seconds`;
  const minutes = Math.floor(seconds / 60);
  if (minutes === 1) return 'About a minute';
  if (minutes < 60) return `${minutes} minutes`;
  const hours = Math.floor(ms / 3_600_000 + 0.5);
  if (hours === 1) return 'About an hour';
  if (hours < 48) return `${hours} hours`;
  if (hours < 24 * 7 * 2) return `${Math.floor(hours / 24)} days`;
  if (hours < 24 * 30 * 2) return `${Math.floor(hours / 24 / 7)} weeks`;
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24 / 30)} months`;
  return `${Math.floor(ms / 3_600_000 / 24 / 365)} years`;
}

/** `2 hours ago`, or `N/A` for an unknown time, as Docker's CreatedSince. */
export function since(created: string | undefined, now = Date.now()): string {
  const t = created ? Date.parse(created) : NaN;
  if (Number.isNaN(t) || t <= 0) return 'N/A';
  return `${humanDuration(Math.max(0, now - t))} ago`;
}

/** Go's time.Time String() as Docker prints CreatedAt: `2024-01-02 03:04:05 +0000 UTC`. */
export function goTime(created: string | undefined): string {
  const t = created ? new Date(created) : null;
  if (!t || Number.isNaN(t.getTime())) return '0001-01-01 00:00:00 +0000 UTC';
  return `${t.toISOString().slice(0, 19).replace('T', ' ')} +0000 UTC`;
}

/** An RFC 3339 time as Go marshals a time.Time (RFC3339Nano: trailing zeros of the fraction dropped). */
export function goRFC3339(t: string): string {
  const m = /^(.*T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$/.exec(t);
  if (!m) return t;
  const frac = (m[2] ?? '').replace(/0+$/, '');
  return `${m[1]}${frac === '.' ? '' : frac}${m[3]}`;
}

/** Go's text/tabwriter as Docker's tables use it (minwidth 10, padding 3): the last cell of a row is not padded. */
export function tabwrite(rows: string[][], minwidth = 10, padding = 3): string {
  const len = (s: string) => [...s].length;
  const widths: number[] = [];
  for (const r of rows) r.slice(0, -1).forEach((c, i) => { widths[i] = Math.max(widths[i] ?? minwidth, len(c) + padding); });
  return rows.map((r) => r.map((c, i) => (i < r.length - 1 ? c + ' '.repeat(widths[i] - len(c)) : c)).join('') + '\n').join('');
}

export class TemplateError extends UserError {
  constructor(message: string) { super('INVALID_FORMAT', `template parsing error: ${message}`); }
}

/**
 * Renders rows as Docker's `--format` does: `table` (the default columns), `table TEMPLATE` (a header row
 * from the template's field names), `json` (one JSON object per line), or a Go template per row.
 * `header` names each field's column (`ID` -> `IMAGE ID`).
 */
export function formatRows(rows: Record<string, unknown>[], format: string | undefined, defaultTable: string, header: Record<string, string>): string {
  const f = format ?? 'table';
  if (f === 'json') return rows.map((r) => JSON.stringify(sortKeys(r)) + '\n').join('');
  if (f === 'table' || f.startsWith('table ')) {
    const tpl = f === 'table' ? defaultTable : f.slice('table '.length);
    const compiled = compileTemplate(tpl.replace(/\\t/g, '\t'));
    const headRow = tpl.replace(/\{\{\s*\.(\w+)\s*\}\}/g, (_, k: string) => header[k] ?? k.toUpperCase()).replace(/\\t/g, '\t');
    const lines = [headRow, ...rows.map((r) => compiled(r))];
    return tabwrite(lines.map((l) => l.split('\t')));
  }
  const compiled = compileTemplate(f.replace(/\\t/g, '\t').replace(/\\n/g, '\n'));
  return rows.map((r) => compiled(r) + '\n').join('');
}

function sortKeys(r: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(r).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

type Node =
  | { t: 'text'; s: string }
  | { t: 'action'; p: string }
  | { t: 'range'; p: string; body: Node[]; else?: Node[] }
  | { t: 'if'; p: string; body: Node[]; else?: Node[] }
  | { t: 'with'; p: string; body: Node[]; else?: Node[] };

/** A Go text/template subset: fields (`.A.B`), `json`, `join`, `index`, `upper`, `lower`, `title`, `len`,
 * `println`, `range`, `if`, `with`, `else`, `end`, and `-` trimming. */
export function compileTemplate(src: string): (data: unknown) => string {
  const tokens: ({ text: string } | { action: string })[] = [];
  const re = /\{\{(-?)\s*([\s\S]*?)\s*(-?)\}\}/g;
  let last = 0;
  let trimNext = false;
  for (let m = re.exec(src); m; m = re.exec(src)) {
    let text = src.slice(last, m.index);
    if (trimNext) text = text.replace(/^\s+/, '');
    if (m[1]) text = text.replace(/\s+$/, '');
    if (text) tokens.push({ text });
    tokens.push({ action: m[2] });
    trimNext = Boolean(m[3]);
    last = re.lastIndex;
  }
  let tail = src.slice(last);
  if (trimNext) tail = tail.replace(/^\s+/, '');
  if (tail) tokens.push({ text: tail });
  let pos = 0;
  const parse = (inBlock: boolean): { nodes: Node[]; end: 'end' | 'else' | 'eof' } => {
    const nodes: Node[] = [];
    while (pos < tokens.length) {
      const tok = tokens[pos++];
      if ('text' in tok) { nodes.push({ t: 'text', s: tok.text }); continue; }
      const a = tok.action;
      if (a.startsWith('/*')) continue;
      if (a === 'end') { if (!inBlock) throw new TemplateError('unexpected {{end}}'); return { nodes, end: 'end' }; }
      if (a === 'else') { if (!inBlock) throw new TemplateError('unexpected {{else}}'); return { nodes, end: 'else' }; }
      const block = /^(range|if|with)\s+(.+)$/.exec(a);
      if (block) {
        const body = parse(true);
        let elseNodes: Node[] | undefined;
        if (body.end === 'else') {
          const e = parse(true);
          if (e.end !== 'end') throw new TemplateError('unexpected EOF');
          elseNodes = e.nodes;
        } else if (body.end !== 'end') throw new TemplateError('unexpected EOF');
        nodes.push({ t: block[1] as 'range', p: block[2], body: body.nodes, else: elseNodes });
        continue;
      }
      nodes.push({ t: 'action', p: a });
    }
    if (inBlock) throw new TemplateError('unexpected EOF');
    return { nodes, end: 'eof' };
  };
  const tree = parse(false).nodes;
  return (data: unknown) => render(tree, data, data);
}

function render(nodes: Node[], dot: unknown, root: unknown): string {
  let out = '';
  for (const n of nodes) {
    if (n.t === 'text') out += n.s;
    else if (n.t === 'action') out += goString(evalPipeline(n.p, dot, root));
    else {
      const v = evalPipeline(n.p, dot, root);
      if (n.t === 'range') {
        const items = Array.isArray(v) ? v : v && typeof v === 'object' ? Object.keys(v).sort().map((k) => (v as Record<string, unknown>)[k]) : [];
        if (items.length === 0) out += n.else ? render(n.else, dot, root) : '';
        for (const item of items) out += render(n.body, item, root);
      } else if (truthy(v)) out += render(n.body, n.t === 'with' ? v : dot, root);
      else if (n.else) out += render(n.else, dot, root);
    }
  }
  return out;
}

function truthy(v: unknown): boolean {
  if (Array.isArray(v)) return v.length > 0;
  if (v && typeof v === 'object') return Object.keys(v).length > 0;
  return Boolean(v);
}

/** Splits `json .A "x y"` into words, keeping quoted strings and parenthesized groups whole. */
function words(s: string): string[] {
  const out: string[] = [];
  const re = /"(?:[^"\\]|\\.)*"|`[^`]*`|\([^)]*\)|[^\s]+/g;
  for (let m = re.exec(s); m; m = re.exec(s)) out.push(m[0]);
  return out;
}

function evalPipeline(p: string, dot: unknown, root: unknown): unknown {
  const stages = p.split(/\s+\|\s+/);
  let piped: unknown[] | undefined;
  let value: unknown;
  for (const stage of stages) {
    const w = words(stage);
    const args = w.slice(1).map((x) => evalArg(x, dot, root));
    if (piped) args.push(piped[0]);
    value = w[0].startsWith('.') || w[0].startsWith('$') || w[0].startsWith('"') || w[0].startsWith('(') ? evalArg(w[0], dot, root) : call(w[0], args);
    piped = [value];
  }
  return value;
}

function evalArg(x: string, dot: unknown, root: unknown): unknown {
  if (x.startsWith('"')) return JSON.parse(x) as string;
  if (x.startsWith('`')) return x.slice(1, -1);
  if (x.startsWith('(')) return evalPipeline(x.slice(1, -1).trim(), dot, root);
  if (/^-?\d+$/.test(x)) return Number(x);
  if (x === 'true' || x === 'false') return x === 'true';
  let base: unknown = dot;
  let rest = x;
  if (x.startsWith('$')) { base = root; rest = x.slice(1); }
  if (rest === '.' || rest === '') return base;
  for (const key of rest.split('.').filter(Boolean)) {
    if (base === null || base === undefined || typeof base !== 'object') {
      throw new TemplateError(`executing "" at <${x}>: can't evaluate field ${key}`);
    }
    if (!(key in (base as object)) && !Array.isArray(base)) {
      throw new TemplateError(`executing "" at <${x}>: can't evaluate field ${key} in type ${typeName(base)}`);
    }
    base = (base as Record<string, unknown>)[key];
  }
  return base;
}

function typeName(v: unknown): string {
  return Array.isArray(v) ? 'slice' : v && typeof v === 'object' ? 'struct' : typeof v;
}

function call(fn: string, args: unknown[]): unknown {
  switch (fn) {
    case 'json': return JSON.stringify(args[0] === undefined ? null : args[0]);
    case 'join': return (Array.isArray(args[0]) ? args[0] : []).map(goString).join(String(args[1] ?? ''));
    case 'index': {
      let v = args[0];
      for (const k of args.slice(1)) v = v && typeof v === 'object' ? (v as Record<string, unknown>)[String(k)] : undefined;
      return v;
    }
    case 'upper': return goString(args[0]).toUpperCase();
    case 'lower': return goString(args[0]).toLowerCase();
    case 'title': return goString(args[0]).replace(/\b\w/g, (c) => c.toUpperCase());
    case 'len': return Array.isArray(args[0]) ? args[0].length : args[0] && typeof args[0] === 'object' ? Object.keys(args[0]).length : goString(args[0]).length;
    case 'println': return args.map(goString).join(' ') + '\n';
    case 'print': return args.map(goString).join('');
    case 'printf': return goString(args[0]).replace(/%[svd]/g, () => goString(args.splice(1, 1)[0]));
    case 'split': return goString(args[0]).split(goString(args[1]));
    case 'truncate': return goString(args[0]).slice(0, Number(args[1]));
    case 'pad': return ' '.repeat(Number(args[1])) + goString(args[0]) + ' '.repeat(Number(args[2]));
    default: throw new TemplateError(`function "${fn}" not defined`);
  }
}

/** How Go's fmt prints a value with %v: nil as <no value>/<nil>, slices `[a b]`, maps `map[k:v]`. */
export function goString(v: unknown): string {
  if (v === undefined) return '<no value>';
  if (v === null) return '<nil>';
  if (Array.isArray(v)) return `[${v.map(goString).join(' ')}]`;
  if (typeof v === 'object') {
    return `map[${Object.keys(v).sort().map((k) => `${k}:${goString((v as Record<string, unknown>)[k])}`).join(' ')}]`;
  }
  return String(v);
}
