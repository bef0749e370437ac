// File ownership as BuildKit makes it, through real builds with the CLI on the busybox fixture: `--chown`
// names resolve in the image's /etc/passwd and /etc/group as BuildKit's readUser does (a user's primary
// group; names the image lacks resolve to 0, with a warning here where BuildKit is silent), and an ADDed
// archive's hard link entry gives its own mode and owner to the inode it shares (moby's archive).
import { describe, it, expect, inject, beforeAll } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs/promises';
import path from 'node:path';
import { runCli, makeContext, tempDir, lastLine, type CliResult } from '../helpers/cli.js';
import { rawTar } from '../helpers/rawtar.js';

const exec = promisify(execFile);
const registry = inject('registry');
const base = `${registry}/busybox:1.35`;

// svc's primary group (1600) differs from its uid and has no name in /etc/group.
const dockerfile = `ARG BASE=${base}
FROM \${BASE}
RUN echo 'svc:x:1500:1600:svc:/:/bin/sh' >> /etc/passwd && echo 'svcgrp:x:1700:' >> /etc/group
COPY --chown=ghost f /ghost
COPY --chown=svc:ghostgrp f /ghost-group
COPY --chown=svc f /by-name
COPY --chown=svc:svcgrp f /by-name-group
COPY --chown=svc:42 f /by-name-gid
COPY --chown=1500 f /numeric
COPY --chown=1500: f /numeric-empty-group
COPY --chown=root f /root-by-id
ADD --chown=svc a.tar /tarred/
ADD hl.tar /hl/
`;

describe('COPY/ADD --chown and archive ownership, as BuildKit', () => {
  let root: string;
  let ctx: string;
  let dest: string;
  let first: CliResult;

  const owner = async (p: string) => {
    const st = await fs.lstat(path.join(dest, p));
    return [st.uid, st.gid];
  };

  beforeAll(async () => {
    root = await tempDir('builder-root-chown-');
    ctx = await makeContext({ Dockerfile: dockerfile, f: 'f\n', 't/one.txt': 'one\n' });
    await exec('tar', ['--owner=5', '--group=6', '-cf', path.join(ctx, 'a.tar'), '-C', path.join(ctx, 't'), 'one.txt']);
    await fs.writeFile(path.join(ctx, 'hl.tar'), rawTar([
      { name: 'bin/', type: 'dir' },
      { name: 'bin/tool', type: 'file', content: '#!/bin/sh\n', mode: 0o4755 },
      { name: 'bin/tool-copy', type: 'link', linkname: 'bin/tool', mode: 0o644, uid: 1000, gid: 50 },
    ]));
    dest = await tempDir('builder-chown-out-');
    first = await runCli(['build', '--root', root, '--progress', 'plain', '-o', dest, ctx]);
    expect(first.code, first.stderr).toBe(0);
  });

  it('a named user without a group gets the primary group from /etc/passwd', async () => {
    expect(await owner('by-name')).toEqual([1500, 1600]);
    expect(await owner('by-name-group')).toEqual([1500, 1700]);
    expect(await owner('by-name-gid')).toEqual([1500, 42]);
    expect(await owner('tarred/one.txt')).toEqual([1500, 1600]);
  });

  it('a numeric user without a group gets the gid of the same number; an empty group is 0; root is 0', async () => {
    expect(await owner('numeric')).toEqual([1500, 1500]);
    expect(await owner('numeric-empty-group')).toEqual([1500, 0]);
    expect(await owner('root-by-id')).toEqual([0, 0]);
  });

  it('a user or group the image lacks resolves as BuildKit resolves it, and the build warns', async () => {
    expect(await owner('ghost')).toEqual([0, 0]);
    // An unknown group leaves the gid the user part gave.
    expect(await owner('ghost-group')).toEqual([1500, 1600]);
    // In the step's output, and in the summary with the instruction's line.
    expect(first.stderr).toMatch(/#\d+ WARN: no user "ghost" in \/etc\/passwd: owner set to 0:0\n/);
    expect(first.stderr).toContain(' 2 warnings found:\n'
      + ' - no user "ghost" in /etc/passwd: owner set to 0:0 (line 4)\n'
      + ' - no group "ghostgrp" in /etc/group: owner set to 1500:1600 (line 5)\n');
  });

  it('a hard link entry of an ADDed archive gives its own mode and owner to the shared inode', async () => {
    for (const p of ['hl/bin/tool', 'hl/bin/tool-copy']) {
      const st = await fs.lstat(path.join(dest, p));
      expect([p, st.mode & 0o7777, st.uid, st.gid]).toEqual([p, 0o644, 1000, 50]);
    }
  });

  // The step right after the RUN: its layers below stay the same, so it is redone from its previous result.
  it('warns again when the step runs again (a refreshed COPY from the context), once', async () => {
    await fs.writeFile(path.join(ctx, 'f'), 'changed\n');
    const again = await runCli(['build', '--root', root, '--progress', 'plain', ctx]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr.match(/WARN: no user "ghost"/g)).toHaveLength(1);
    expect(again.stderr).toContain(' - no user "ghost" in /etc/passwd: owner set to 0:0 (line 4)\n');
  });
});

describe('ONBUILD triggers in progress', () => {
  it('names a trigger\'s step with ONBUILD after its number', async () => {
    const root = await tempDir('builder-root-onbuild-');
    const ctx = await makeContext({
      Dockerfile: `ARG BASE=${base}\nFROM \${BASE} AS base\nONBUILD RUN echo triggered > /t\nFROM base\nRUN cat /t\n`,
    });
    const res = await runCli(['build', '--root', root, '--progress', 'plain', ctx]);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stderr).toMatch(/#\d+ \[stage-1 1\/2\] ONBUILD RUN echo triggered > \/t\n/);
    expect(res.stderr).toMatch(/#\d+ \[stage-1 2\/2\] RUN cat \/t\n/);
    // A failing trigger is reported at the FROM that ran it (BuildKit gives triggers the stage's location).
    const failed = await runCli(['build', '--root', root, '--progress', 'plain', await makeContext({
      Dockerfile: `ARG BASE=${base}\nFROM \${BASE} AS base\nONBUILD RUN exit 3\nFROM base\n`,
    })]);
    expect(failed.code).toBe(1);
    expect(lastLine(failed.stderr)).toBe('ERROR: Dockerfile:4: ONBUILD RUN failed: process "/bin/sh -c exit 3" did not complete successfully: exit code: 3');
  });
});
