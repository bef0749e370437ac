// The open-files limit for RUN steps: Docker's 1048576, unless this process may not go that high (raising
// a hard limit takes CAP_SYS_RESOURCE, which a builder running in a container often lacks) — then the
// hard limit we have, which the runtime can always set.
import fs from 'node:fs/promises';

export const DEFAULT_NOFILE = 1048576;

export async function nofileLimit(): Promise<number> {
  const hard = await hardLimit('Max open files');
  return hard === undefined ? DEFAULT_NOFILE : Math.min(hard, DEFAULT_NOFILE);
}

/** A hard limit from /proc/self/limits; undefined when unlimited or unreadable. */
async function hardLimit(name: string): Promise<number | undefined> {
  let text: string;
  try {
    text = await fs.readFile('/proc/self/limits', 'utf8');
  } catch {
    return undefined;
  }
  const line = text.split('\n').find((l) => l.startsWith(name));
  const fields = line?.slice(name.length).trim().split(/\s+/);
  const hard = fields ? Number(fields[1]) : NaN;
  return Number.isInteger(hard) ? hard : undefined;
}
