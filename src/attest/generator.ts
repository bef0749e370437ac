// `--sbom generator=IMAGE`: BuildKit's SBOM scanner protocol (docs/attestations/sbom-protocol.md). The
// scanner image runs as one more step of the build, for each target platform, with the result mounted
// read-only at BUILDKIT_SCAN_SOURCE, the other scanned stages (and the context) under
// BUILDKIT_SCAN_SOURCE_EXTRAS, and writes in-toto statements into BUILDKIT_SCAN_DESTINATION; its args are
// the image's Entrypoint and Cmd, as BuildKit runs it. The destination is a directory of the scanner's own
// filesystem (made by a file step first), so the step's result holds what it wrote.
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Definition } from '../../solver/llb/definition.js';
import { opDigest } from '../../solver/llb/digest.js';
import type { Digest, ExecOp, FileOp, Op, Platform, SourceOp } from '../../solver/llb/ops.js';
import type { Worker, WorkerRef } from '../worker/worker.js';
import type { Predicate } from './manifest.js';
import { UserError } from '../util/errors.js';
import { resolveInRoot } from '../archive/rootpath.js';

export const SCAN_SOURCE = '/run/src/core/sbom';
export const SCAN_EXTRAS = '/run/src/extras/';
export const SCAN_DESTINATION = '/run/out/';
/** A statement file bigger than this is not read. */
const MAX_STATEMENT = 64 << 20;

export class ScannerError extends UserError {
  constructor(message: string) { super('SBOM_SCANNER', message); }
}

export interface ScannerImage {
  /** The reference pinned by digest, as the LLB names images. */
  ref: string;
  platform: Platform;
  config: { Entrypoint?: string[] | null; Cmd?: string[] | null; Env?: string[] | null; WorkingDir?: string; User?: string };
}

/**
 * Adds the scanner's steps for one target to the definition: the scanner image, a file step making the
 * destination, the exec that scans `target` (and `extras`, name -> op). Returns the exec's digest.
 */
export function addScannerSteps(
  definition: Definition, scanner: ScannerImage, name: string, target: Digest, extras: { name: string; digest: Digest }[],
  platformLabel: string, attrs: Record<string, string> = {},
): Digest {
  const add = (op: Op, description?: string): Digest => {
    const d = opDigest(op);
    definition.ops[d] = op;
    definition.metadata[d] = { ...(definition.metadata[d] ?? {}), ...(description ? { description } : {}) };
    return d;
  };
  const source: SourceOp = { kind: 'source', source: { type: 'image', ref: scanner.ref, platform: scanner.platform } };
  const src = add(source, `[internal] load scanner ${name}`);
  const mkdir: FileOp = { kind: 'file', inputs: [{ digest: src }], base: 0, actions: [{ action: 'mkdir', path: SCAN_DESTINATION.replace(/\/$/, ''), mode: 0o755, makeParents: true }] };
  const prepared = add(mkdir, `[internal] preparing ${SCAN_DESTINATION} for ${name}`);
  const args = [...(scanner.config.Entrypoint ?? []), ...(scanner.config.Cmd ?? [])];
  if (!scanner.config.Cmd?.length) throw new ScannerError(`scanner ${name} does not have cmd`);
  const env = [
    ...(scanner.config.Env ?? []),
    `BUILDKIT_SCAN_SOURCE=${SCAN_SOURCE}`,
    `BUILDKIT_SCAN_SOURCE_EXTRAS=${SCAN_EXTRAS}`,
    `BUILDKIT_SCAN_DESTINATION=${SCAN_DESTINATION}`,
    // The attestation's other options, as BuildKit passes them to the scanner.
    ...Object.entries(attrs).map(([k, v]) => `BUILDKIT_SCAN_${k}=${v}`),
  ];
  const exec: ExecOp = {
    kind: 'exec',
    inputs: [{ digest: prepared }, { digest: target }, ...extras.map((e) => ({ digest: e.digest }))],
    meta: { args, env, cwd: scanner.config.WorkingDir || '/', user: scanner.config.User || '', network: 'sandbox' },
    mounts: [
      { input: 0, dest: '/' },
      { input: 1, dest: SCAN_SOURCE, readonly: true },
      ...extras.map((e, i) => ({ input: i + 2, dest: path.posix.join(SCAN_EXTRAS, e.name), readonly: true })),
    ],
    platform: scanner.platform,
  };
  return add(exec, `[${platformLabel}] generating sbom using ${name}`);
}

/** The statements the scanner wrote (each file of the destination, in name order). */
export async function readScannerOutput(worker: Worker, ref: WorkerRef, name: string): Promise<Predicate[]> {
  const layers = (await worker.materialize(ref)).layers;
  const mounted = await worker.snapshots.mount(layers);
  try {
    let dir: string;
    try {
      dir = await resolveInRoot(mounted.target, SCAN_DESTINATION);
    } catch {
      return [];
    }
    const out: Predicate[] = [];
    for (const entry of (await fs.readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (!entry.isFile()) continue;
      const file = path.join(dir, entry.name);
      if ((await fs.stat(file)).size > MAX_STATEMENT) throw new ScannerError(`scanner ${name} wrote ${entry.name}: larger than ${MAX_STATEMENT} bytes`);
      let st: { predicateType?: unknown; predicate?: unknown };
      try {
        st = JSON.parse(await fs.readFile(file, 'utf8')) as typeof st;
      } catch (e) {
        throw new ScannerError(`scanner ${name} wrote ${entry.name}: not an in-toto statement: ${(e as Error).message}`);
      }
      if (typeof st.predicateType !== 'string' || st.predicate === undefined) {
        throw new ScannerError(`scanner ${name} wrote ${entry.name}: not an in-toto statement (no predicateType or predicate)`);
      }
      out.push({ predicateType: st.predicateType, predicate: st.predicate, path: entry.name });
    }
    return out;
  } finally {
    await mounted.unmount();
  }
}
