// `--sbom generator=IMAGE`: BuildKit's scanner contract (an image run with the result mounted at
// BUILDKIT_SCAN_SOURCE, extras at BUILDKIT_SCAN_SOURCE_EXTRAS, writing in-toto statements to
// BUILDKIT_SCAN_DESTINATION). Not run yet: refused in one line rather than ignored.
import type { Worker } from '../worker/worker.js';
import type { AttestTarget } from './index.js';
import type { Predicate } from './manifest.js';
import { UserError } from '../util/errors.js';

export class UnsupportedGeneratorError extends UserError {
  constructor(image: string) {
    super('UNSUPPORTED_ATTESTATION', `--sbom generator=${image}: scanner images are not supported yet; leave out generator= to use the built-in scanner`);
  }
}

export async function runScanner(
  _worker: Worker, image: string, _target: AttestTarget, _extras: { contextDir?: string; stages: AttestTarget['stages'] },
): Promise<Predicate[]> {
  throw new UnsupportedGeneratorError(image);
}
