// Command-line mistakes reported as buildx (cobra) reports them: an unknown flag or command named with the
// nearest valid one, a wrong number of arguments with the usage line, malformed attestation flags.
// yargs's own messages ("Unknown arguments: nocache, foo") name neither the flag nor a fix.
import { UserError } from '../util/errors.js';
import { levenshtein, suggest } from '../util/suggest.js';
import { canonicalizeAttest, InvalidAttestError, resolveAttest } from '../attest/options.js';

/** A usage mistake: the one-line error, then (printed after it) the command's usage. */
export class UsageError extends UserError {
  constructor(message: string, readonly usage?: string) {
    super('USAGE', message);
  }
}

export const BUILD_USAGE = 'builder build [OPTIONS] PATH | URL | -';

/**
 * Rewrites a yargs validation message into buildx's form when it is about an unknown command or flag, or too
 * few arguments. `known` are the option keys (with aliases) of the command being run, `commands` the
 * top-level commands with their subcommands (`imagetools`: inspect, create).
 */
export function usageMessage(msg: string, raw: string[], known: string[], commands: Record<string, string[]>): string {
  const [first, second] = positionals(raw);
  const unknown = /^Unknown arguments?: (.+)$/.exec(msg)?.[1].split(', ') ?? [];
  // yargs names a command it does not know among the unknown arguments; `commands` only feeds the suggestion.
  if (first !== undefined && unknown.includes(first) && !Object.hasOwn(commands, first)) return unknownCommand(first, 'builder', Object.keys(commands));
  const subcommands = (first !== undefined && Object.hasOwn(commands, first) ? commands[first] : undefined) ?? [];
  if (subcommands.length && second !== undefined && !subcommands.includes(second)) return unknownCommand(second, `builder ${first}`, subcommands);
  const few = /^Not enough non-option arguments: got \d+, need at least (\d+)$/.exec(msg);
  // An unknown flag that took the missing argument as its value: cobra parses flags first and names it.
  if (few) for (const t of raw) {
    if (t === '--') break;
    const name = /^--([^=]+)/.exec(t)?.[1];
    if (name !== undefined && !known.includes(name)) unknown.push(name);
  }
  if (few && first !== undefined && !unknown.length) {
    const name = subcommands.length && second !== undefined ? `builder ${first} ${second}` : `builder ${first}`;
    return `"${name}" requires at least ${few[1]} argument${few[1] === '1' ? '' : 's'}.`;
  }
  for (const name of unknown) {
    const flag = flagToken(name, raw);
    if (!flag) continue;
    const match = flag.startsWith('--') ? nearestFlag(name, known) : undefined;
    return `unknown flag: ${flag}${match ? ` (did you mean --${match}?)` : ''}`;
  }
  return msg;
}

/** The long flag nearest to a mistyped one, allowing an edit per three letters (`--foo` is not `--root`). */
function nearestFlag(name: string, known: string[]): string | undefined {
  let best: string | undefined;
  let min = Math.max(1, Math.floor(name.length / 3)) + 1;
  for (const k of known.filter((k) => k.length > 1 && !/[A-Z]/.test(k)).sort()) {
    const d = levenshtein(name, k);
    if (d < min) { min = d; best = k; }
  }
  return best;
}

function unknownCommand(name: string, parent: string, valid: string[]): string {
  const match = suggest(name, valid, true);
  return `unknown command "${name}" for "${parent}"${match ? ` (did you mean ${match}?)` : ''}`;
}

/** How the unknown name was written on the command line: `--name`, or `-n` inside a short-flag group. */
function flagToken(name: string, raw: string[]): string | undefined {
  for (const t of raw) {
    if (t === '--') break;
    if (t === `--${name}` || t.startsWith(`--${name}=`)) return `--${name}`;
  }
  if (name.length === 1 && raw.some((t) => /^-[^-]/.test(t) && t.split('=')[0].includes(name))) return `-${name}`;
  return undefined;
}

/**
 * The leading arguments that are not flags (the command, a subcommand), skipping the value of the global
 * `--root`; a flag before the command stops it (left to the flag checks).
 */
function positionals(raw: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length && out.length < 2; i++) {
    const t = raw[i];
    if (t === '--root') { i++; continue; }
    if (t.startsWith('-')) {
      if (out.length === 0) break;
      continue;
    }
    out.push(t);
  }
  return out;
}

/**
 * How many `-` (stdin) arguments stand as positionals. yargs drops a lone `-` from positionals, but keeps it
 * as a flag's value (`-f -`, `-o -`): a `-` is a value when the flag just before it took `-` as its value.
 */
export function stdinPositionals(raw: string[], argv: Record<string, unknown>): number {
  let n = 0;
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] === '--') break;
    if (raw[i] !== '-') continue;
    const prev = raw[i - 1];
    if (prev && /^--?[^-]/.test(prev) && !prev.includes('=')) {
      const key = prev.startsWith('--') ? prev.slice(2) : prev.slice(-1);
      const v = argv[key];
      if (v === '-' || (Array.isArray(v) && v.includes('-'))) continue;
    }
    n++;
  }
  return n;
}

/**
 * `--provenance`, `--sbom`, `--attest` checked before anything runs: a mistake is one line naming the flag
 * as given (`invalid --attest "mode=max": attestation type not specified`).
 */
export function checkAttestations(flags: { provenance?: string; sbom?: string; attest?: string[] }): void {
  const specs: { flag: string; value: string; spec: string }[] = [];
  for (const type of ['provenance', 'sbom'] as const) {
    const value = flags[type];
    if (value === undefined || value === '') continue;
    specs.push({ flag: `--${type}`, value, spec: canonicalizeAttest(type, value) });
  }
  for (const value of flags.attest ?? []) specs.push({ flag: '--attest', value, spec: value });
  for (const { flag, value, spec } of specs) {
    try {
      resolveAttest({ attest: [spec] }, { noDefault: true });
    } catch (e) {
      if (!(e instanceof InvalidAttestError)) throw e;
      throw new UsageError(`invalid ${flag} "${value}": ${e.detail}`);
    }
  }
}
