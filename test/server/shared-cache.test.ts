// Node-level default cache: `builder serve --cache-to/--cache-from` with one registry ref shared by nodes.
import { describe, it, expect, inject } from 'vitest';
import path from 'node:path';
import { serve } from '../../src/server/server.js';
import { remoteBuild } from '../../src/server/client.js';
import { EventProgress, type ProgressEvent } from '../../src/progress/events.js';
import { makeContext, runCli, tempDir, lastLine } from '../helpers/cli.js';

const registry = inject('registry');
const base = `${registry}/busybox:1.35`;

describe('builder serve with a shared registry cache', () => {
  it('a node with an empty state dir reuses what another node exported', async () => {
    const mark = Math.random().toString(36).slice(2);
    const cache = `type=registry,ref=${registry}/cache/shared:${mark}`;
    const servers = await Promise.all([1, 2].map(async (n) => serve({
      addr: `unix://${path.join(await tempDir('builder-cache-sock-'), `n${n}.sock`)}`, root: await tempDir('builder-cache-root-'),
      cacheFrom: [cache], cacheTo: [`${cache},mode=max`],
    })));
    try {
      const ctx = await makeContext({ Dockerfile: `FROM ${base}\nRUN echo ${mark} > /m\n` });
      const runs: ProgressEvent[][] = [];
      for (const s of servers) {
        const events: ProgressEvent[] = [];
        await remoteBuild({ addr: `unix://${s.address.kind === 'unix' ? s.address.path : ''}`, context: ctx, progress: new EventProgress((e) => events.push(e)) });
        runs.push(events);
      }
      const runStep = (events: ProgressEvent[]) => {
        const start = events.find((e) => e.type === 'start' && e.name.includes(`RUN echo ${mark}`));
        return events.find((e) => e.type === 'done' && start && e.id === start.id) as { cached?: boolean } | undefined;
      };
      expect(runStep(runs[0])?.cached).toBeUndefined();
      expect(runStep(runs[1])?.cached).toBe(true);
    } finally {
      await Promise.all(servers.map((s) => s.close()));
    }
  });

  it('a client\'s own --cache-to/--cache-from (registry) travel with the request; type=local is refused', async () => {
    const mark = Math.random().toString(36).slice(2);
    const ref = `${registry}/cache/client:${mark}`;
    const socks = await Promise.all([1, 2].map(async (n) => path.join(await tempDir('builder-cache-sock-'), `c${n}.sock`)));
    const servers = await Promise.all(socks.map(async (sock) => serve({ addr: `unix://${sock}`, root: await tempDir('builder-cache-root-') })));
    try {
      const ctx = await makeContext({ Dockerfile: `FROM ${base}\nRUN echo ${mark} > /m\n` });
      const first = await runCli(['build', '--builder', `unix://${socks[0]}`, '--cache-to', `type=registry,ref=${ref},mode=max`, '--progress', 'plain', ctx]);
      expect(first.code, first.stderr).toBe(0);
      const second = await runCli(['build', '--builder', `unix://${socks[1]}`, '--cache-from', ref, '--progress', 'plain', ctx]);
      expect(second.code, second.stderr).toBe(0);
      expect(second.stderr).toMatch(new RegExp(`#\\d+ \\[2/2\\] RUN echo ${mark} > /m\\n#\\d+ CACHED`));
      const local = await runCli(['build', '--builder', `unix://${socks[1]}`, '--cache-to', 'type=local,dest=/tmp/x', ctx]);
      expect(local.code).toBe(1);
      expect(lastLine(local.stderr)).toBe('ERROR: --cache-to "type=local,dest=/tmp/x": type=local is not supported with --builder (the directory would be the builder\'s): use type=registry');
    } finally {
      await Promise.all(servers.map((s) => s.close()));
    }
  });

  it('a bad cache spec stops the server from starting', async () => {
    await expect(serve({ addr: `unix://${path.join(await tempDir('builder-cache-sock-'), 'x.sock')}`, root: await tempDir('builder-cache-root-'), cacheTo: ['type=bogus'] }))
      .rejects.toThrow(/bogus/);
  });
});
