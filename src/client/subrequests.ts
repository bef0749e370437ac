// `--call`: what a build is asked to do instead of building (buildx's call functions): `check` runs the
// build checks, `outline` describes the target's parameters, `targets` lists the stages. The text forms
// are BuildKit's printers (frontend/subrequests/{outline,targets}); `format=json` prints the result
// object as buildx does (Go's indented encoding/json).
import type { Outline, TargetList } from '../../frontend/dockerfile/subrequests.js';
import { UserError } from '../util/errors.js';

export type CallName = 'build' | 'check' | 'outline' | 'targets';

export interface CallSpec {
  name: CallName;
  format?: 'json';
  /** `ignorestatus=true`: a check that found something still exits 0. */
  ignoreStatus?: boolean;
}

export const CALL_NAMES: CallName[] = ['build', 'check', 'outline', 'targets'];

/** buildx's ParseCallFunc: `NAME[,format=json][,ignorestatus=BOOL]`; `lint` is `check`. */
export function parseCall(v: string): CallSpec {
  const bad = (why: string) => new UserError('INVALID_FLAG', `invalid --call "${v}": ${why}`);
  let name: string | undefined;
  const spec: Partial<CallSpec> = {};
  for (const field of v.split(',')) {
    const eq = field.indexOf('=');
    if (eq < 0) {
      if (name !== undefined) throw bad('more than one method');
      name = field;
      continue;
    }
    const [key, value] = [field.slice(0, eq), field.slice(eq + 1)];
    if (key === 'format') {
      if (value !== 'json' && value !== 'text' && value !== '') throw bad(`unknown format "${value}" (use json)`);
      if (value === 'json') spec.format = 'json';
    } else if (key === 'ignorestatus') {
      if (!['true', 'false', '1', '0'].includes(value)) throw bad(`invalid ignorestatus value "${value}"`);
      spec.ignoreStatus = value === 'true' || value === '1';
    } else {
      throw bad(`unknown field "${key}"`);
    }
  }
  if (name === 'lint') name = 'check';
  if (!name || !CALL_NAMES.includes(name as CallName)) throw bad(`unknown method "${name ?? ''}" (use ${CALL_NAMES.join(', ')})`);
  if (spec.format === 'json' && name !== 'outline' && name !== 'targets') throw bad('format=json is supported for outline and targets');
  return { ...spec, name: name as CallName };
}

/** `--call outline`: the target, then its build args, secrets and SSH agents, each a table. */
export function formatOutline(o: Outline): string {
  let out = '';
  if (o.name || o.description) {
    const rows = [['TARGET:', o.name || '(default)']];
    if (o.description) rows.push(['DESCRIPTION:', o.description]);
    out += tabwrite(rows, 1) + '\n';
  }
  if (o.args?.length) {
    out += tabwrite([['BUILD ARG', 'VALUE', 'DESCRIPTION'], ...o.args.map((a) => [a.name, a.value ?? '', a.description ?? ''])], 3) + '\n';
  }
  for (const [title, list] of [['SECRET', o.secrets], ['SSH', o.ssh]] as const) {
    if (list?.length) out += tabwrite([[title, 'REQUIRED'], ...list.map((s) => [s.name, s.required ? 'true' : ''])], 3) + '\n';
  }
  return out;
}

/** `--call targets`: every stage, the default one marked. */
export function formatTargets(l: TargetList): string {
  const rows = l.targets.map((t) => {
    const name = !t.name && t.default ? '(default)' : t.default ? `${t.name} (default)` : t.name ?? '';
    return [name, t.description ?? ''];
  });
  return tabwrite([['TARGET', 'DESCRIPTION'], ...rows], 1);
}

/** Go's json.MarshalIndent(v, "", "  "): the same layout, and <, >, & and U+2028/9 escaped as Go does. */
export function goJSON(v: unknown): string {
  return JSON.stringify(v, null, 2).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * Go's text/tabwriter with minwidth 0 and padding `padding`: every cell but a row's last is padded to its
 * column's widest cell plus the padding. Rows end with a newline.
 */
function tabwrite(rows: string[][], padding: number): string {
  const len = (s: string) => [...s].length;
  const widths: number[] = [];
  for (const r of rows) r.slice(0, -1).forEach((c, i) => { widths[i] = Math.max(widths[i] ?? 0, len(c) + padding); });
  return rows.map((r) => r.map((c, i) => (i < r.length - 1 ? c + ' '.repeat(widths[i] - len(c)) : c)).join('') + '\n').join('');
}
