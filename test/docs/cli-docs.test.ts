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

// `docker buildx build`'s flags, from buildx's docs/reference/buildx_build.md (docker/buildx 461836b, 2026-08).
const BUILDX_BUILD_FLAGS = [
  '--add-host', '--allow', '--annotation', '--attest', '--build-arg', '--build-context', '--builder', '--cache-from',
  '--cache-to', '--call', '--cgroup-parent', '--check', '--debug', '--file', '--iidfile', '--label', '--load',
  '--metadata-file', '--network', '--no-cache', '--no-cache-filter', '--output', '--platform', '--policy', '--progress',
  '--provenance', '--pull', '--push', '--quiet', '--resource', '--sbom', '--secret', '--shm-size', '--ssh', '--tag',
  '--target', '--ulimit',
];

describe('docs/cli.md buildx compatibility', () => {
  it('marks every buildx build flag supported, no-op or not yet; nothing builder offers is "not yet"', async () => {
    const doc = await fs.readFile(path.join(projectRoot, 'docs/cli.md'), 'utf8');
    const section = docSection(doc, 'buildx build flags');
    expect(section, 'docs/cli.md has no "## buildx build flags" section').not.toBe('');
    const rows = new Map<string, string>();
    for (const line of section.split('\n').filter((l) => l.startsWith('| `'))) {
      const [flagCell, status] = line.split('|').slice(1).map((c) => c.trim());
      for (const m of flagCell.matchAll(/(--[a-z][a-z-]*)/g)) rows.set(m[1], status);
    }
    expect([...rows.keys()].sort()).toEqual([...BUILDX_BUILD_FLAGS].sort());
    for (const [flag, status] of rows) expect(status, flag).toMatch(/^(supported|no-op|not yet)\b/);
    const offered = helpFlags((await runCli(['build', '--help'])).stdout);
    for (const [flag, status] of rows) {
      if (status.startsWith('not yet')) expect(offered, `${flag} is marked "not yet" but builder build offers it`).not.toContain(flag);
    }
    // What builder offers of buildx's flags is marked supported or no-op.
    for (const flag of offered.filter((f) => BUILDX_BUILD_FLAGS.includes(f))) expect(rows.get(flag), flag).toMatch(/^(supported|no-op)/);
  });
});
