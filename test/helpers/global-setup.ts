// One registry for the whole run: Debian's docker-registry on a free 127.0.0.1 port, holding the
// busybox test image (amd64 + arm64 index) that testdata/make-busybox.sh makes from Debian packages.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
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
  // What the tests make under os.tmpdir() (thousands of directories: state roots, contexts, outputs, GBs
  // in all) goes into one directory for the run, removed at its end. The test processes inherit TMPDIR.
  const runTmp = fs.mkdtempSync(path.join(os.tmpdir(), 'builder-tests-'));
  process.env.TMPDIR = runTmp;
  // Said once up front: the suites that need the corpus show as skipped, which is easy to miss.
  if (conformanceMissing) process.stderr.write(`conformance suites${conformanceMissing}\n`);
  // RUN steps for other platforms need QEMU registered with the fix-binary flag (tests run as root).
  await installEmulators();
  const registry = await startRegistry();
  await pushBusybox(registry.host);
  project.provide('registry', registry.host);
  return async () => {
    await registry.stop();
    removeRunTmp(runTmp);
  };
}

/**
 * Removes the run's temp directory. Mounts left under it (a test SIGKILLs a `builder serve` in the middle
 * of a build, which has no chance to unmount) are detached first; if one stays, so does the directory.
 */
function removeRunTmp(dir: string): void {
  const mountsUnder = () => fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4]).filter((m) => m?.startsWith(`${dir}/`));
  for (const m of mountsUnder().sort((a, b) => b.length - a.length)) {
    try { execFileSync('umount', ['-l', m], { stdio: 'ignore' }); } catch { /* said below */ }
  }
  const left = mountsUnder();
  if (left.length) {
    process.stderr.write(`left ${dir}: still mounted under it: ${left.slice(0, 3).join(', ')}\n`);
    return;
  }
  fs.rmSync(dir, { recursive: true, force: true });
}
