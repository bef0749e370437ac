// A registry connection cut in the middle of a layer's body (F5 of issue 17): the pull asks again from
// where it stopped (Range) with backoff, up to a bound, and then fails with one line saying what was cut.
// A TCP proxy in front of the test registry does the cutting; builds go through the CLI.
import { describe, it, expect, inject, afterEach } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { lastLine, makeContext, runCli, tempDir } from '../helpers/cli.js';
import { bodyCuttingProxy, type BodyCuttingProxy } from '../helpers/registry.js';

const registry = inject('registry');

describe('blob downloads cut part way', () => {
  let proxy: BodyCuttingProxy | undefined;
  afterEach(async () => { await proxy?.close(); proxy = undefined; });

  async function build(host: string) {
    const ctx = await makeContext({ Dockerfile: `FROM ${host}/busybox:1.35\n` });
    const root = await tempDir('builder-root-');
    const out = await tempDir('builder-out-');
    const r = await runCli(['build', '--root', root, '--progress', 'plain', '-o', `type=local,dest=${out}`, ctx]);
    return { ...r, out };
  }

  it('resumes with a Range request after each cut and verifies the whole layer', async () => {
    // The busybox layer is about 0.9 MB: two cuts at 300 kB leave it resumed twice.
    proxy = await bodyCuttingProxy(registry, 300_000, 2);
    const r = await build(proxy.host);
    expect(r.code, r.stderr).toBe(0);
    expect(proxy.cuts()).toBe(2);
    const resumed = proxy.blobRanges().filter((h): h is string => h !== undefined);
    expect(resumed.length).toBeGreaterThanOrEqual(2);
    for (const h of resumed) expect(h).toMatch(/^bytes=[1-9]\d*-$/);
    expect((await fs.stat(path.join(r.out, 'bin/busybox'))).isFile()).toBe(true);
  });

  it('starts over when the registry answers a Range request with the whole blob', async () => {
    proxy = await bodyCuttingProxy(registry, 300_000, 1, { stripRange: true });
    const r = await build(proxy.host);
    expect(r.code, r.stderr).toBe(0);
    expect(proxy.cuts()).toBe(1);
    expect(proxy.blobRanges().some((h) => h !== undefined)).toBe(true);
    expect((await fs.stat(path.join(r.out, 'bin/busybox'))).isFile()).toBe(true);
  });

  it('gives up after the bound with one line naming the blob, the host and how far it got', async () => {
    // Every blob response is cut at 100 kB: five attempts get about half the layer.
    proxy = await bodyCuttingProxy(registry, 100_000, Infinity);
    const r = await build(proxy.host);
    expect(r.code).toBe(1);
    expect(lastLine(r.stderr)).toMatch(new RegExp(
      `^ERROR: .*FROM failed: pulling blob sha256:[0-9a-f]{64} from ${proxy.host.replace(/\./g, '\\.')}: connection cut after [\\d.]+ kB of [\\d.]+ [kM]B \\(5 attempts\\)$`));
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});
