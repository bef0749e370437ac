// "did you mean X?" for a mistyped name, as BuildKit's util/suggest: the option nearest by Levenshtein
// distance, if it is closer than 3 edits; case-insensitive searches answer in the case of the input.

export function levenshtein(a: string, b: string): number {
  const ca = [...a];
  const cb = [...b];
  let prev = Array.from({ length: cb.length + 1 }, (_, j) => j);
  for (let i = 1; i <= ca.length; i++) {
    const cur = [i];
    for (let j = 1; j <= cb.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca[i - 1] === cb[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[cb.length];
}

/**
 * Beyond these, no suggestion: a name among thousands is noise, and a scan of them all for every undefined
 * variable of a hostile Dockerfile is quadratic. Long names are not compared either (the cost is the square
 * of the length).
 */
export const MAX_SUGGEST_OPTIONS = 1000;
const MAX_SUGGEST_LENGTH = 128;

/** The nearest option, or undefined when none is near or `value` is itself an option. */
export function suggest(value: string, options: string[], caseSensitive: boolean): string | undefined {
  const val = caseSensitive ? value : value.toLowerCase();
  if (options.length > MAX_SUGGEST_OPTIONS || val.length > MAX_SUGGEST_LENGTH) return undefined;
  let match: string | undefined;
  let matchRaw = '';
  let min = 3;
  // The nearest (closer than 3 edits), ties to the first in sorted order.
  for (const raw of options) {
    const opt = caseSensitive ? raw : raw.toLowerCase();
    if (opt === val) return undefined;
    // The distance is at least the difference in length: skip what cannot win.
    const atLeast = Math.abs(opt.length - val.length);
    if (atLeast > min || (atLeast === min && match === undefined)) continue;
    const d = levenshtein(val, opt);
    if (d < min || (d === min && match !== undefined && raw < matchRaw)) {
      min = d;
      match = caseSensitive ? opt : matchCase(opt, value);
      matchRaw = raw;
    }
  }
  return match;
}

function matchCase(val: string, orig: string): string {
  if (orig === orig.toLowerCase()) return val.toLowerCase();
  if (orig === orig.toUpperCase()) return val.toUpperCase();
  return val;
}

/** `message (did you mean X?)` when a suggestion exists. */
export function withSuggestion(message: string, value: string, options: string[], caseSensitive: boolean): string {
  const match = suggest(value, options, caseSensitive);
  return match === undefined ? message : `${message} (did you mean ${match}?)`;
}
