// Reading yargs values shared by the command modules.

/** A repeatable flag or variadic positional as a list: absent is empty, one value is a list of one. */
export function list(v: unknown): string[] {
  if (v === undefined) return [];
  return (Array.isArray(v) ? v : [v]).map(String);
}
