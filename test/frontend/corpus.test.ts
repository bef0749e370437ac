// A corpus of real-world-style Dockerfiles (testdata/dockerfiles: apt, npm, go, python, java, rust, php,
// ruby, .NET, multi-stage, heredocs, ONBUILD, escape directive, ...) parses and converts to LLB with a
// fixed image resolver (no network), and its LLB is stable: the op digests are snapshots, so a change
// to how any instruction converts (or is checked) shows up here (update with `npx vitest run -u` when intended).
import { describe, it, expect } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { dockerfileToLLB, type ImageMetaResolver } from '../../frontend/index.js';
import type { Platform } from '../../solver/llb/ops.js';

const dir = path.resolve(__dirname, '../../testdata/dockerfiles');
const files = fs.readdirSync(dir).filter((f) => f.endsWith('.Dockerfile')).sort();
const amd64: Platform = { os: 'linux', architecture: 'amd64' };

/** Every image resolves to a config derived from its name alone: the same input always gives the same LLB. */
const resolver: ImageMetaResolver = {
  async resolveImageConfig(ref, platform) {
    const name = ref.includes('/') ? ref : `docker.io/library/${ref}`;
    const pin = createHash('sha256').update(`${name}|${platform.architecture}`).digest('hex');
    return {
      ref: `${name.includes(':') ? name : `${name}:latest`}@sha256:${pin}`,
      config: {
        architecture: platform.architecture, os: platform.os,
        config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['sh'] },
        rootfs: { type: 'layers', diff_ids: [`sha256:${pin}`] },
        history: [{ created_by: `base ${name}` }],
      },
    };
  },
};

describe('Dockerfile corpus', () => {
  it('has a varied set', () => expect(files.length).toBeGreaterThanOrEqual(20));

  for (const file of files) {
    it(`${file} converts to stable LLB`, async () => {
      const { definition, image, warnings } = await dockerfileToLLB({
        dockerfile: fs.readFileSync(path.join(dir, file), 'utf8'), filename: file,
        targetPlatform: amd64, buildPlatform: amd64, resolver, allStages: true,
      });
      // Each op by its description (or kind), in a stable order, with its digest.
      const ops = Object.entries(definition.ops).map(([digest, op]) => `${definition.metadata[digest as keyof typeof definition.metadata]?.description ?? op.kind} ${digest}`).sort();
      const checks = warnings.map((w) => `${w.location?.startLine}: ${w.rule}: ${w.message}`);
      expect({ root: definition.root, ops, history: image.history?.map((h) => h.created_by), checks }).toMatchSnapshot();
    });
  }
});
