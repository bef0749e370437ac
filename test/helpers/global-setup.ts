// One registry for the whole run: Debian's docker-registry on a free 127.0.0.1 port, holding the
// busybox test image (amd64 + arm64 index) that testdata/make-busybox.sh makes from Debian packages.
import type { TestProject } from 'vitest/node';
import { startRegistry, pushBusybox } from './registry.js';
import { installEmulators } from '../../src/executor/emulation.js';
import { conformanceMissing } from './conformance.js';

declare module 'vitest' {
  export interface ProvidedContext {
    registry: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  // Said once up front: the suites that need the corpus show as skipped, which is easy to miss.
  if (conformanceMissing) process.stderr.write(`conformance suites${conformanceMissing}\n`);
  // RUN steps for other platforms need QEMU registered with the fix-binary flag (tests run as root).
  await installEmulators();
  const registry = await startRegistry();
  await pushBusybox(registry.host);
  project.provide('registry', registry.host);
  return () => registry.stop();
}
