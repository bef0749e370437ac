// The package's version, for --version, `builder serve`'s /v1/version and `builder ls`.
import fs from 'node:fs';

/** yargs would look for package.json above its own file, which the bundled CLI (scripts/build-cli.mjs) is
 * not beside; this file is dist/src/cli/version.js or inside dist/src/cli/builder.cjs either way. */
export function packageVersion(): string {
  try {
    return (JSON.parse(fs.readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}
