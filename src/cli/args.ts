// Reading yargs values shared by the command modules.

/** A repeatable flag or variadic positional as a list: absent is empty, one value is a list of one. */
export function list(v: unknown): string[] {
  if (v === undefined) return [];
  return (Array.isArray(v) ? v : [v]).map(String);
}

/** A flag of one value given more than once keeps the last, as cobra's (pflag's) do: yargs would pass the
 * command a list of them all. The flag's `coerce`. */
export function last(v: unknown): unknown {
  return Array.isArray(v) ? v[v.length - 1] : v;
}
