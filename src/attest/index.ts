// Attestations of a build: the predicates each platform's image gets (provenance, SBOM), made once per
// platform however many outputs attach them.
import fs from 'node:fs';
import path from 'node:path';
import { execFile } from 'node:child_process';
import type { Digest, Platform } from '../../solver/llb/ops.js';
import type { Worker, WorkerRef } from '../worker/worker.js';
import type { AttestRequest, SbomRequest } from './options.js';
import { provenancePredicate, type BuildFacts, type VcsInfo } from './provenance.js';
import { scanTree, type ScanResult } from './scan.js';
import { SPDX_PREDICATE, spdxDocument } from './sbom.js';
import type { Predicate } from './manifest.js';
import { readScannerOutput } from './generator.js';

export { resolveAttest, attestSpecs, attestationsFor, hasAttestations, type AttestOptions, type AttestRequest } from './options.js';
export type { Predicate, Statement } from './manifest.js';

/** One platform's result as the attestations see it. */
export interface AttestTarget {
  ref: WorkerRef;
  root: Digest;
  platform: Platform;
  /** Other stages' results, for `scan-stage`. */
  stages: { name: string; ref: WorkerRef; scan: boolean }[];
  /** With `generator=IMAGE`: the scanner step's result (its destination directory holds the statements). */
  scanner?: WorkerRef;
  scannerRoot?: Digest;
}

let version: string | undefined;
/** This package's version (the builder's, in provenance and SBOM creators). */
export function builderVersion(): string {
  if (version) return version;
  for (const rel of ['../../../package.json', '../../package.json']) {
    try {
      version = (JSON.parse(fs.readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: string; version?: string }).version;
      if (version) return version;
    } catch { /* next */ }
  }
  return (version = 'unknown');
}

/** buildx's Git info for a local context: HEAD's commit and the origin remote (credentials stripped). */
export async function gitInfo(dir: string): Promise<VcsInfo | undefined> {
  if (/^(0|false)$/i.test(process.env.BUILDX_GIT_INFO ?? '')) return undefined;
  // Outside any work tree git has nothing to say: no process started for it (a rebuild's cost otherwise).
  if (!process.env.GIT_DIR && !hasGitAbove(dir)) return undefined;
  const git = (args: string[]) => new Promise<string | undefined>((resolve) => {
    execFile('git', ['-C', dir, ...args], { timeout: 10_000 }, (err, stdout) => resolve(err ? undefined : stdout.trim()));
  });
  const revision = await git(['rev-parse', 'HEAD']);
  if (!revision || !/^[0-9a-f]{40}$/.test(revision)) return undefined;
  const remote = await git(['config', '--get', 'remote.origin.url']);
  const source = remote ? remote.replace(/^(https?:\/\/)[^@/]*@/, '$1') : undefined;
  return { revision, ...(source ? { source } : {}) };
}

/** Whether `dir` or a directory above it has a `.git` (a directory, or a worktree's file): where git looks. */
function hasGitAbove(dir: string): boolean {
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    if (fs.existsSync(path.join(d, '.git'))) return true;
    if (path.dirname(d) === d) return false;
  }
}

export class Attestor {
  private readonly provenance = new Map<string, Promise<Predicate>>();
  private readonly sboms = new Map<number, Promise<Predicate[]>>();

  constructor(
    private readonly worker: Worker,
    private readonly request: AttestRequest,
    private readonly facts: Omit<BuildFacts, 'finishedOn'>,
    private readonly targets: AttestTarget[],
    private readonly contextDir: string,
  ) {}

  /** The predicates for target `i` that `req` (the request as an output takes it) asks for. */
  async predicates(i: number, req: AttestRequest): Promise<Predicate[]> {
    const out: Predicate[] = [];
    if (req.sbom) out.push(...await this.sbom(i, req.sbom));
    if (req.provenance) {
      const p = req.provenance;
      const key = `${i} ${JSON.stringify(p)}`;
      let made = this.provenance.get(key);
      if (!made) {
        const t = this.targets[i];
        made = Promise.resolve({ ...provenancePredicate({ ...this.facts, finishedOn: new Date() }, t.root, t.platform, p, t.scannerRoot ? [t.scannerRoot] : []), path: p.filename ?? 'provenance.json' });
        this.provenance.set(key, made);
      }
      out.push(await made);
    }
    return out;
  }

  private sbom(i: number, req: SbomRequest): Promise<Predicate[]> {
    let made = this.sboms.get(i);
    if (!made) {
      made = this.makeSbom(i, req);
      this.sboms.set(i, made);
    }
    return made;
  }

  private async makeSbom(i: number, req: SbomRequest): Promise<Predicate[]> {
    const t = this.targets[i];
    const epoch = this.facts.sourceDateEpoch;
    if (req.generator) return t.scanner ? readScannerOutput(this.worker, t.scanner, req.generator) : [];
    const doc = (scan: ScanResult, name: string) => ({
      predicateType: SPDX_PREDICATE,
      path: `${name}.spdx.json`,
      predicate: spdxDocument(scan, {
        name, created: epoch !== undefined ? new Date(epoch * 1000) : new Date(), tool: `llb-builder-${builderVersion()}`, deterministic: epoch !== undefined,
      }),
    });
    const out: Predicate[] = [doc(await this.scanRef(t.ref), 'sbom')];
    for (const s of t.stages) if (req.scanStage || s.scan) out.push(doc(await this.scanRef(s.ref), `sbom-${s.name}`));
    if (req.scanContext) out.push(doc(await scanTree(this.contextDir, { os: false }), 'sbom-context'));
    return out;
  }

  private async scanRef(ref: WorkerRef): Promise<ScanResult> {
    const layers = (await this.worker.materialize(ref)).layers;
    if (layers.length === 0) return { packages: [] };
    const mounted = await this.worker.snapshots.mount(layers);
    try {
      return await scanTree(mounted.target);
    } finally {
      await mounted.unmount();
    }
  }
}

