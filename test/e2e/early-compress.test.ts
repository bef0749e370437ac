// With an image output, the layers of the exported image are compressed as their steps finish (overlapping
// the steps after them); layers of other stages, and every layer when the output is a filesystem, are not.
import { describe, it, expect, inject } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { runCli, makeContext, tempDir } from '../helpers/cli.js';

const registry = inject('registry');
const base = `${registry}/busybox:1.35`;

const dockerfile = `ARG BASE
FROM \${BASE} AS side
RUN echo side > /side

FROM \${BASE}
COPY --from=side /side /side
RUN echo final > /final
`;

/** Snapshots whose layer blob this build made (pulled base layers carry their blob without `built`). */
async function builtLayers(root: string): Promise<number> {
  const dir = path.join(root, 'snapshots');
  let n = 0;
  for (const id of await fs.readdir(dir)) {
    const info = await fs.readFile(path.join(dir, id, 'committed.json'), 'utf8').then(JSON.parse, () => null);
    if (info?.built) n++;
  }
  return n;
}

describe('early layer compression', () => {
  it('compresses only the exported image chain, and nothing for a filesystem output', async () => {
    const ctx = await makeContext({ Dockerfile: dockerfile });
    const out = await tempDir('builder-early-out-');
    const local = await tempDir('builder-early-root-');
    const r1 = await runCli(['build', '--root', local, '--progress', 'plain', '--build-arg', `BASE=${base}`, '--output', `type=local,dest=${out}/fs`, ctx]);
    expect(r1.code, r1.stderr).toBe(0);
    expect(await builtLayers(local)).toBe(0);

    const image = await tempDir('builder-early-root-');
    const r2 = await runCli(['build', '--root', image, '--progress', 'plain', '--build-arg', `BASE=${base}`, '--output', `type=oci,dest=${out}/img.tar`, ctx]);
    expect(r2.code, r2.stderr).toBe(0);
    // The COPY --from and the final RUN: two layers of the image; the side stage's RUN layer is not one.
    expect(await builtLayers(image)).toBe(2);
  });
});
