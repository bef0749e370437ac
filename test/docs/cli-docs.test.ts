// docs/cli.md documents exactly the flags each command's --help lists: none missing, none invented.
import { describe, it, expect } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { projectRoot, runCli } from '../helpers/cli.js';

const IGNORED = new Set(['--help', '--version']);

function helpFlags(help: string): string[] {
  const flags = [...help.matchAll(/^\s+(?:-\w, )?(--[a-z][a-z-]*)/gm)].map((m) => m[1]);
  return [...new Set(flags.filter((f) => !IGNORED.has(f)))].sort();
}

function docSection(doc: string, title: string): string {
  const start = doc.indexOf(`\n## ${title}\n`);
  if (start < 0) return '';
  const end = doc.indexOf('\n## ', start + 1);
  return doc.slice(start, end < 0 ? undefined : end);
}

function docFlags(section: string): string[] {
  const rows = section.split('\n').filter((l) => l.startsWith('| `'));
  return [...new Set(rows.flatMap((l) => [...l.slice(0, l.indexOf('|', 2)).matchAll(/(--[a-z][a-z-]*)/g)].map((m) => m[1])))].sort();
}

describe('docs/cli.md', () => {
  it('lists every command and, for each, exactly the flags its --help shows', async () => {
    const doc = await fs.readFile(path.join(projectRoot, 'docs/cli.md'), 'utf8');
    const top = await runCli(['--help']);
    const commands = [...top.stdout.matchAll(/^\s+builder ([a-z-]+)/gm)].map((m) => m[1]);
    expect(commands.length).toBeGreaterThan(0);
    const global = helpFlags(top.stdout);
    expect(docFlags(docSection(doc, 'Global options'))).toEqual(global);
    for (const cmd of commands) {
      const section = docSection(doc, `builder ${cmd}`);
      expect(section, `docs/cli.md has no "## builder ${cmd}" section`).not.toBe('');
      const help = await runCli([cmd, '--help']);
      const own = helpFlags(help.stdout).filter((f) => !global.includes(f));
      expect(docFlags(section), `flags of builder ${cmd}`).toEqual(own);
    }
  });
});
