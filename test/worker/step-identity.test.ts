// A layer's build step identity (src/worker/worker.ts stepIdentity), the key of the exporter's hint of the
// step's previous blob: stable when lines move, distinct between instructions, stages and platforms.
import { describe, expect, it } from 'vitest';
import { stepIdentity } from '../../src/worker/worker.js';

const amd64 = { os: 'linux', architecture: 'amd64' };

describe('stepIdentity', () => {
  it('ignores the position of the step and its source lines', () => {
    const a = stepIdentity({ description: '[build 2/3] COPY . /app', stage: 'build', location: { file: 'Dockerfile', startLine: 3, endLine: 3 } }, amd64);
    const b = stepIdentity({ description: '[build 3/14] COPY . /app', stage: 'build', location: { file: 'Dockerfile', startLine: 9, endLine: 9 } }, amd64);
    expect(a).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(b).toBe(a);
  });

  it('tells instructions, stages and platforms apart', () => {
    const base = stepIdentity({ description: '[build 2/3] COPY . /app', stage: 'build' }, amd64);
    expect(stepIdentity({ description: '[build 2/3] COPY . /src', stage: 'build' }, amd64)).not.toBe(base);
    expect(stepIdentity({ description: '[test 2/3] COPY . /app', stage: 'test' }, amd64)).not.toBe(base);
    expect(stepIdentity({ description: '[build 2/3] COPY . /app', stage: 'build' }, { os: 'linux', architecture: 'arm64' })).not.toBe(base);
    expect(stepIdentity({ description: '[linux/arm64 build 2/3] COPY . /app', stage: 'build' })).not.toBe(
      stepIdentity({ description: '[linux/amd64 build 2/3] COPY . /app', stage: 'build' }));
  });

  it('is absent for ops the frontend did not describe', () => {
    expect(stepIdentity({})).toBeUndefined();
  });
});
