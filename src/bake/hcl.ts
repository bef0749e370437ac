// HCL for bake files, through HashiCorp's own HCL parser (hcl2json, compiled to WebAssembly: @cdktf/hcl2json).
// The parser turns a file into JSON in which every expression is left as its source text (`"${N + 1}"`,
// `"foo:${TAG}"`), and gives the syntax tree of any expression; this module evaluates those trees (variables,
// functions, templates, for expressions) as buildx's HCL evaluation would. Nothing here parses HCL text.
import { createRequire } from 'node:module';
import { UserError } from '../util/errors.js';
import { STDLIB } from './functions.js';

/** A node of the parser's expression tree (hclsyntax's node types, as hcl2json's getExpressionAst reports them). */
export interface Ast {
  type: string;
  meta?: Record<string, unknown> & { value?: string; traversal?: { type: string; segment: string }[] };
  children?: Ast[];
  range?: { start: { byte: number }; end: { byte: number } };
}

interface Hcl2Json {
  parse(filename: string, contents: string): Promise<Record<string, unknown>>;
  getExpressionAst(filename: string, expression: string): Promise<Ast | null>;
}

let lib: Hcl2Json | undefined;
/** Loaded at first use: starting the WebAssembly module takes a moment, and only bake needs it. */
function hcl(): Hcl2Json {
  // A plain require of the installed package (also from the bundled CLI, where it stays external): the
  // package reads its .wasm file next to its own module.
  lib ??= createRequire(import.meta.url)('@cdktf/hcl2json') as Hcl2Json;
  return lib;
}

export class BakeError extends UserError {
  constructor(message: string) {
    super('BAKE_FAILED', message);
  }
}

/** An HCL file as JSON: blocks as `{type: {label: [body, ...]}}`, expressions as `${...}` strings. */
export async function parseHcl(filename: string, text: string): Promise<Record<string, unknown>> {
  try {
    return await hcl().parse(filename, text);
  } catch (e) {
    throw new BakeError(`${filename}: ${(e as Error).message.trim()}`);
  }
}

export type Value = string | number | boolean | null | Value[] | { [k: string]: Value };
export type Fn = (...args: Value[]) => Value;

/** What names an expression can see: values, and functions (the stdlib, then the file's own). */
export interface Scope {
  lookup(name: string): Value | undefined;
  fn(name: string): Fn | undefined;
}

export function childScope(parent: Scope, vars: Record<string, Value>): Scope {
  return {
    lookup: (n) => (Object.prototype.hasOwnProperty.call(vars, n) ? vars[n] : parent.lookup(n)),
    fn: (n) => parent.fn(n),
  };
}

/**
 * Parsed expressions of every string a file holds that is not a plain literal, ready for synchronous
 * evaluation: the parser is asynchronous (WebAssembly), so a file's strings are parsed once up front.
 */
export class Expressions {
  private readonly parsed = new Map<string, { ast: Ast; src: string; wrapped: boolean }>();

  constructor(private readonly filename: string) {}

  static needsEval(s: string): boolean {
    return s.includes('${') || s.includes('%{');
  }

  /** Parses every string under `v` that holds an expression or a template. */
  async prepare(v: unknown): Promise<void> {
    const strings = new Set<string>();
    const walk = (x: unknown): void => {
      if (typeof x === 'string') {
        if (Expressions.needsEval(x) && !this.parsed.has(x)) strings.add(x);
      } else if (Array.isArray(x)) x.forEach(walk);
      else if (x && typeof x === 'object') for (const [k, y] of Object.entries(x)) { walk(k); walk(y); }
    };
    walk(v);
    await Promise.all([...strings].map((s) => this.parse(s)));
  }

  private async parse(s: string): Promise<void> {
    const lib = hcl();
    // A whole `${expr}`: the expression itself, so that it keeps its type (a list, a number).
    if (s.startsWith('${') && s.endsWith('}')) {
      const inner = s.slice(2, -1);
      const ast = await lib.getExpressionAst(this.filename, inner).catch(() => null);
      // The parser's top node reports its source text (its range is only its first token's).
      if (ast && ast.type !== 'template' && String(ast.meta?.value ?? '').trim() === inner.trim()) {
        this.parsed.set(s, { ast, src: inner, wrapped: true });
        return;
      }
    }
    // Otherwise a template. A heredoc needs no escaping of quotes or newlines (hcl2json gave the literal
    // parts unescaped); its value ends with the newline before the closing marker, dropped in eval.
    let marker = 'EOT';
    while (s.includes(marker)) marker += '_';
    const src = `<<${marker}\n${s}\n${marker}\n`;
    const ast = await lib.getExpressionAst(this.filename, src).catch((e: Error) => {
      throw new BakeError(`${this.filename}: invalid expression ${JSON.stringify(s)}: ${e.message}`);
    });
    if (!ast) throw new BakeError(`${this.filename}: invalid expression ${JSON.stringify(s)}`);
    this.parsed.set(s, { ast, src, wrapped: false });
  }

  /** Evaluates a JSON value from the file: strings with expressions are evaluated, the rest kept. */
  value(v: unknown, scope: Scope): Value {
    if (typeof v === 'string') return this.string(v, scope);
    if (Array.isArray(v)) return v.map((x) => this.value(x, scope));
    if (v && typeof v === 'object') {
      const out: Record<string, Value> = {};
      for (const [k, x] of Object.entries(v)) out[String(this.string(k, scope))] = this.value(x, scope);
      return out;
    }
    return v as Value;
  }

  string(s: string, scope: Scope): Value {
    if (!Expressions.needsEval(s)) return s;
    const p = this.parsed.get(s);
    if (!p) throw new Error(`bake: expression not prepared: ${s}`);
    try {
      const v = new Evaluator(p.src, scope, this.filename).eval(p.ast);
      // The heredoc's closing newline (the string itself did not end there).
      return !p.wrapped && typeof v === 'string' && v.endsWith('\n') ? v.slice(0, -1) : v;
    } catch (e) {
      if (e instanceof BakeError) throw e;
      throw new BakeError(`${this.filename}: ${JSON.stringify(s)}: ${(e as Error).message}`);
    }
  }
}

/** HCL's string escapes in a quoted template's literal part (`\"`, `\n`, `\uXXXX`; `$${` and `%%{`). */
function unescape(s: string, quoted: boolean): string {
  let out = s.replace(/\$\$\{/g, '${').replace(/%%\{/g, '%{');
  if (!quoted) return out;
  out = out.replace(/\\(u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)/g, (_m, c: string) => {
    if (c[0] === 'u' || c[0] === 'U') return String.fromCodePoint(parseInt(c.slice(1), 16));
    return ({ n: '\n', r: '\r', t: '\t', '"': '"', '\\': '\\' } as Record<string, string>)[c] ?? c;
  });
  return out;
}

export function typeName(v: Value): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'tuple';
  return typeof v === 'object' ? 'object' : typeof v === 'boolean' ? 'bool' : typeof v;
}

export function asString(v: Value): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return String(v);
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  throw new Error(`cannot use a ${typeName(v)} value as a string`);
}

export function asNumber(v: Value): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'string' && v.trim() !== '' && !Number.isNaN(Number(v))) return Number(v);
  throw new Error(`a number is required, not ${JSON.stringify(v)}`);
}

export function asBool(v: Value): boolean {
  if (typeof v === 'boolean') return v;
  if (v === 'true') return true;
  if (v === 'false') return false;
  throw new Error(`a bool is required, not ${JSON.stringify(v)}`);
}

export function equal(a: Value, b: Value): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

class Evaluator {
  constructor(private readonly src: string, private readonly scope: Scope, private readonly filename: string) {}

  private text(n: Ast): string {
    if (!n.range) return '';
    return Buffer.from(this.src).subarray(n.range.start.byte, n.range.end.byte).toString();
  }

  eval(n: Ast, scope: Scope = this.scope): Value {
    const kids = n.children ?? [];
    const meta = n.meta ?? {};
    switch (n.type) {
      case 'literalValue': {
        const t = meta.type as string;
        const v = String(meta.value ?? '');
        if (t === 'number') return Number(v);
        if (t === 'bool') return v === 'true';
        if (t === 'string') return unescape(v, !this.src.startsWith('<<'));
        return null;
      }
      case 'template': {
        let out = '';
        for (const k of kids) {
          const v = this.eval(k, scope);
          if (v === null) throw new Error('cannot include a null value in a string template');
          out += asString(v);
        }
        return out;
      }
      case 'templateWrap':
        return this.eval(kids[0], scope);
      case 'templateJoin': {
        // A `%{ for }` directive: its for expression's values, joined.
        const v = this.eval(kids[0], scope);
        return (Array.isArray(v) ? v : [v]).map((x) => (x === null ? '' : asString(x))).join('');
      }
      case 'tuple':
        return kids.map((k) => this.eval(k, scope));
      case 'object': {
        const out: Record<string, Value> = {};
        for (let i = 0; i + 1 < kids.length; i += 2) out[this.key(kids[i], scope)] = this.eval(kids[i + 1], scope);
        return out;
      }
      case 'scopeTraversal': {
        const [root, ...rest] = meta.traversal ?? [];
        const v = scope.lookup(root.segment);
        if (v === undefined) throw new Error(`unknown variable "${root.segment}"`);
        return this.traverse(v, rest, String(meta.value));
      }
      case 'relativeTraversal':
        return this.traverse(this.eval(kids[0], scope), meta.traversal ?? [], String(meta.value));
      case 'index': {
        const coll = this.eval(kids[0], scope);
        return this.index(coll, this.eval(kids[1], scope), String(meta.value));
      }
      case 'splat': {
        const src = this.eval(kids[0], scope);
        const list = src === null ? [] : Array.isArray(src) ? src : [src];
        const each = kids[1];
        return list.map((item) => (each && each.type === 'relativeTraversal' ? this.traverse(item, each.meta?.traversal ?? [], String(each.meta?.value)) : item));
      }
      case 'function':
        return this.call(n, scope);
      case 'conditional':
        return asBool(this.eval(kids[0], scope)) ? this.eval(kids[1], scope) : this.eval(kids[2], scope);
      case 'unaryOp': {
        const v = this.eval(kids[0], scope);
        return meta.operator === 'logicalNot' ? !asBool(v) : -asNumber(v);
      }
      case 'binaryOp':
        return this.binary(String(meta.operator), kids, scope);
      case 'for':
        return this.forExpr(n, scope);
      case '':
        // Parentheses, and the key wrappers of objects.
        if (kids.length === 1) return this.eval(kids[0], scope);
        break;
    }
    throw new Error(`unsupported expression ${JSON.stringify(meta.value ?? this.text(n))}${n.type ? ` (${n.type})` : ''}`);
  }

  /** An object key: a bare name is itself; a quoted or parenthesized key is evaluated. */
  private key(n: Ast, scope: Scope): string {
    if (n.type === '' && (n.children ?? []).length === 0) return this.text(n);
    if (n.type === '' && n.children?.length === 1 && n.children[0].type === 'scopeTraversal' && !this.text(n).startsWith('(')) {
      return this.text(n);
    }
    return asString(this.eval(n, scope));
  }

  private traverse(v: Value, steps: { type: string; segment: string }[], what: string): Value {
    let cur = v;
    for (const s of steps) {
      const key: Value = s.type === 'indexTraversal' ? (s.segment.startsWith('"') ? JSON.parse(s.segment) as string : Number(s.segment)) : s.segment;
      cur = this.index(cur, key, what);
    }
    return cur;
  }

  private index(coll: Value, key: Value, what: string): Value {
    if (Array.isArray(coll)) {
      const i = asNumber(key);
      if (!Number.isInteger(i) || i < 0 || i >= coll.length) throw new Error(`${what}: index ${i} out of range`);
      return coll[i];
    }
    if (coll && typeof coll === 'object') {
      const k = asString(key);
      if (!Object.prototype.hasOwnProperty.call(coll, k)) throw new Error(`${what}: no attribute or key "${k}"`);
      return coll[k];
    }
    throw new Error(`${what}: cannot index a ${typeName(coll)} value`);
  }

  private call(n: Ast, scope: Scope): Value {
    const name = String(n.meta?.name);
    const f = scope.fn(name);
    if (!f) throw new Error(`there is no function named "${name}"`);
    const args = (n.children ?? []).map((k) => this.eval(k, scope));
    if (n.meta?.expandedFinalArgument && args.length > 0) {
      const last = args.pop()!;
      if (!Array.isArray(last)) throw new Error(`${name}: the final argument must be a list to expand it`);
      args.push(...last);
    }
    try {
      return f(...args);
    } catch (e) {
      throw new Error(`${name}(): ${(e as Error).message}`);
    }
  }

  private binary(op: string, kids: Ast[], scope: Scope): Value {
    if (op === 'logicalAnd') return asBool(this.eval(kids[0], scope)) && asBool(this.eval(kids[1], scope));
    if (op === 'logicalOr') return asBool(this.eval(kids[0], scope)) || asBool(this.eval(kids[1], scope));
    const a = this.eval(kids[0], scope);
    const b = this.eval(kids[1], scope);
    switch (op) {
      case 'equal': return equal(a, b);
      case 'notEqual': return !equal(a, b);
      case 'add': return asNumber(a) + asNumber(b);
      case 'subtract': return asNumber(a) - asNumber(b);
      case 'multiply': return asNumber(a) * asNumber(b);
      case 'divide': return asNumber(a) / asNumber(b);
      case 'modulo': return asNumber(a) % asNumber(b);
      case 'lessThan': return asNumber(a) < asNumber(b);
      case 'lessThanOrEqual': return asNumber(a) <= asNumber(b);
      case 'greaterThan': return asNumber(a) > asNumber(b);
      case 'greaterThanOrEqual': return asNumber(a) >= asNumber(b);
    }
    throw new Error(`unsupported operator ${op}`);
  }

  private forExpr(n: Ast, scope: Scope): Value {
    const meta = n.meta ?? {};
    const kids = [...(n.children ?? [])];
    const coll = this.eval(kids.shift()!, scope);
    const keyExpr = meta.keyExpression ? kids.shift() : undefined;
    const valExpr = kids.shift()!;
    const cond = meta.conditionalExpression ? kids.shift() : undefined;
    const keyVar = String(meta.keyVar ?? '');
    const valVar = String(meta.valVar ?? '');
    const entries: [Value, Value][] = Array.isArray(coll) ? coll.map((v, i) => [i, v])
      : coll && typeof coll === 'object' ? Object.keys(coll).sort().map((k) => [k, (coll as Record<string, Value>)[k]])
      : (() => { throw new Error(`cannot iterate over a ${typeName(coll)} value`); })();
    const isObject = String(meta.value ?? '').trimStart().startsWith('{');
    const list: Value[] = [];
    const obj: Record<string, Value> = {};
    const grouped: Record<string, Value[]> = {};
    for (const [k, v] of entries) {
      const s = childScope(scope, { ...(keyVar ? { [keyVar]: k } : {}), [valVar]: v });
      if (cond && !asBool(this.eval(cond, s))) continue;
      const value = this.eval(valExpr, s);
      if (!isObject) { list.push(value); continue; }
      const key = asString(this.eval(keyExpr!, s));
      if (meta.groupedValue) (grouped[key] ??= []).push(value);
      else {
        if (Object.prototype.hasOwnProperty.call(obj, key)) throw new Error(`duplicate object key "${key}" in for expression`);
        obj[key] = value;
      }
    }
    return !isObject ? list : meta.groupedValue ? grouped : obj;
  }
}

export const stdlibScope: Scope = {
  lookup: () => undefined,
  fn: (n) => STDLIB[n],
};
