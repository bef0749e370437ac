// The embedding example in examples/embed runs as documented and prints its steps, RUN output and digests.
import { describe, it, expect, inject } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import path from 'node:path';
import { projectRoot, tempDir } from '../helpers/cli.js';

const exec = promisify(execFile);
const registry = inject('registry');

describe('examples/embed', () => {
  it('builds examples/hello through the library API, printing progress events and the digest', async () => {
    const out = path.join(await tempDir('builder-embed-'), 'hello.tar');
    const root = await tempDir('builder-root-');
    const { stdout } = await exec(process.execPath, ['examples/embed/build.mjs', 'examples/hello', out, `${registry}/busybox:1.35`, root], { cwd: projectRoot });
    expect(stdout).toMatch(/^step: \[build 4\/4\] RUN chmod 0755 greet.sh/m);
    expect(stdout).toMatch(/^manifest sha256:[0-9a-f]{64}$/m);
    const manifest = /^manifest (sha256:[0-9a-f]{64})$/m.exec(stdout)![1];
    const raw = (await exec('skopeo', ['inspect', '--raw', `oci-archive:${out}`])).stdout;
    const { createHash } = await import('node:crypto');
    expect(`sha256:${createHash('sha256').update(raw).digest('hex')}`).toBe(manifest);
  });
});
