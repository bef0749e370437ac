// SLSA provenance as BuildKit writes it (docs/attestations/slsa-definitions.md): v0.2 by default, v1 on
// request. What the build was asked (frontend arguments: build args only in max mode, secret and SSH ids,
// never their values), what it used (materials: base images, HTTP sources, the context's Git commit by
// digest), when (honoring SOURCE_DATE_EPOCH) and, in max mode, its LLB steps.
import { randomUUID } from 'node:crypto';
import type { Definition } from '../../solver/llb/definition.js';
import { opInputs, type Digest, type Op, type Platform } from '../../solver/llb/ops.js';
import { parseReference, Reference } from '../registry/reference.js';
import type { ProvenanceRequest } from './options.js';

export const PROVENANCE_V02 = 'https://slsa.dev/provenance/v0.2';
export const PROVENANCE_V1 = 'https://slsa.dev/provenance/v1';
export const BUILDKIT_BUILD_TYPE = 'https://mobyproject.org/buildkit@v1';
export const BUILDKIT_V1_BUILD_TYPE = 'https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md';

export interface Material {
  uri: string;
  digest: Record<string, string>;
}

/** The context's Git checkout: its remote and HEAD commit (buildx's vcs:source / vcs:revision). */
export interface VcsInfo {
  source?: string;
  revision: string;
  dirty?: boolean;
}

/** What the build knows for its provenance. */
export interface BuildFacts {
  definition: Definition;
  /** The Dockerfile's name (`Dockerfile`), the config source's entry point. */
  filename: string;
  buildArgs: Record<string, string>;
  labels?: Record<string, string>;
  target?: string;
  platforms: Platform[];
  noCache?: boolean;
  /** HTTP source op -> the digest of what it downloaded this build. */
  httpDigests: Map<Digest, string>;
  vcs?: VcsInfo;
  startedOn: Date;
  finishedOn: Date;
  sourceDateEpoch?: number;
  builderVersion: string;
}

/** `pkg:docker/busybox@latest?platform=linux%2Famd64`, as BuildKit's purl.RefToPURL. */
export function refToPurl(ref: string, platform?: Platform): string {
  const r = parseReference(ref);
  const segments = r.familiarName.split('/').map((s) => encodeURIComponent(s));
  const version = r.tag ?? r.digest ?? 'latest';
  const qs: string[] = [];
  if (r.tag && r.digest) qs.push(`digest=${encodeURIComponent(r.digest)}`);
  if (platform) qs.push(`platform=${encodeURIComponent([platform.os, platform.architecture, platform.variant].filter(Boolean).join('/'))}`);
  return `pkg:docker/${segments.join('/')}@${encodeURIComponent(version)}${qs.length ? `?${qs.join('&')}` : ''}`;
}

const digestMap = (d: string): Record<string, string> => {
  const i = d.indexOf(':');
  return { [d.slice(0, i)]: d.slice(i + 1) };
};

/** Each base image (by its resolved digest), HTTP source and the context's commit the build used, once. */
export function materials(facts: BuildFacts, ops: Digest[]): Material[] {
  const out = new Map<string, Material>();
  for (const digest of ops) {
    const op = facts.definition.ops[digest];
    if (op?.kind !== 'source') continue;
    const s = op.source;
    if (s.type === 'image') {
      const r = parseReference(s.ref);
      if (!r.digest) continue;
      const uri = refToPurl(new Reference(r.domain, r.path, r.tag).toString(), s.platform);
      out.set(`${uri} ${r.digest}`, { uri, digest: digestMap(r.digest) });
    } else if (s.type === 'http') {
      const d = s.checksum ?? facts.httpDigests.get(digest);
      out.set(s.url, { uri: s.url, digest: d ? digestMap(d) : {} });
    }
  }
  if (facts.vcs?.source) out.set('vcs', { uri: `${facts.vcs.source}#${facts.vcs.revision}`, digest: { sha1: facts.vcs.revision } });
  return [...out.values()];
}

/** The ops a root depends on, inputs first (the order BuildKit's llbDefinition lists them in). */
export function opsOf(definition: Definition, root: Digest): Digest[] {
  const seen = new Set<Digest>();
  const order: Digest[] = [];
  const stack: { d: Digest; expanded: boolean }[] = [{ d: root, expanded: false }];
  while (stack.length) {
    const top = stack.pop()!;
    if (top.expanded) { order.push(top.d); continue; }
    if (seen.has(top.d)) continue;
    seen.add(top.d);
    stack.push({ d: top.d, expanded: true });
    const op = definition.ops[top.d];
    if (!op) continue;
    for (const i of [...opInputs(op)].reverse()) if (!seen.has(i.digest)) stack.push({ d: i.digest, expanded: false });
  }
  return order;
}

/** Max mode: the steps as `step0..N` with their ops (secrets are ids only in the LLB) and inputs. */
function buildConfig(definition: Definition, ops: Digest[]): { llbDefinition: unknown[]; digestMapping: Record<string, string> } {
  const ids = new Map(ops.map((d, i) => [d, `step${i}`]));
  const digestMapping: Record<string, string> = {};
  const llbDefinition = ops.map((d) => {
    const op = definition.ops[d];
    digestMapping[d] = ids.get(d)!;
    const inputs = opInputs(op).map((i) => `${ids.get(i.digest) ?? i.digest}:${(i as { output?: number }).output ?? 0}`);
    return { id: ids.get(d), op: stripOp(op), ...(inputs.length ? { inputs } : {}) };
  });
  return { llbDefinition, digestMapping };
}

/** The op without the client-side values an LLB may carry for the run only (proxy values). */
function stripOp(op: Op): unknown {
  if (op.kind !== 'exec') return op;
  const { proxyEnv: _proxy, ...meta } = op.meta;
  return { ...op, meta };
}

/** The frontend's arguments: build args (max mode only, as BuildKit's min mode leaves them out), target, labels. */
function frontendArgs(facts: BuildFacts, mode: 'min' | 'max'): Record<string, string> {
  const args: Record<string, string> = {};
  if (mode === 'max') {
    // Proxy settings are the machine's, and often carry credentials: left out, as they are of the cache key.
    for (const [k, v] of Object.entries(facts.buildArgs)) if (!PROXY_ARGS.has(k.toLowerCase())) args[`build-arg:${k}`] = v;
    for (const [k, v] of Object.entries(facts.labels ?? {})) args[`label:${k}`] = v;
  }
  if (facts.target) args.target = facts.target;
  if (facts.filename !== 'Dockerfile') args.filename = facts.filename;
  if (facts.noCache) args['no-cache'] = '';
  return args;
}

const PROXY_ARGS = new Set(['http_proxy', 'https_proxy', 'ftp_proxy', 'no_proxy', 'all_proxy']);

function rfc3339(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/**
 * The provenance predicate (and its type) for one platform's result. `root` is the platform's root op:
 * materials and steps are those it depends on.
 */
export function provenancePredicate(
  facts: BuildFacts, root: Digest, platform: Platform, req: ProvenanceRequest, extraRoots: Digest[] = [],
): { predicateType: string; predicate: unknown } {
  const ops = opsOf(facts.definition, root);
  // The SBOM scanner's image is a material too (it ran in the build), though not a step of the image.
  const mats = materials(facts, [...ops, ...extraRoots.flatMap((r) => opsOf(facts.definition, r))]);
  const epoch = facts.sourceDateEpoch !== undefined ? new Date(facts.sourceDateEpoch * 1000) : undefined;
  // As BuildKit: with SOURCE_DATE_EPOCH the times say the epoch, so equal builds give equal statements.
  const started = rfc3339(epoch ?? facts.startedOn);
  const finished = rfc3339(epoch ?? facts.finishedOn);
  // The secrets and SSH agents the steps use, by id (their values are never in the LLB).
  const secrets = new Map<string, { id: string; optional: boolean }>();
  const ssh = new Map<string, { id: string; optional: boolean }>();
  for (const d of ops) {
    const op = facts.definition.ops[d];
    if (op?.kind !== 'exec') continue;
    for (const m of op.mounts) {
      if (m.secret) secrets.set(m.secret.id, { id: m.secret.id, optional: m.secret.optional });
      if (m.ssh) ssh.set(m.ssh.id, { id: m.ssh.id, optional: m.ssh.optional });
    }
    for (const e of op.meta.secretEnv ?? []) secrets.set(e.id, { id: e.id, optional: e.optional });
  }
  const parameters = {
    frontend: 'dockerfile.v0',
    args: frontendArgs(facts, req.mode),
    ...(secrets.size ? { secrets: [...secrets.values()] } : {}),
    ...(ssh.size ? { ssh: [...ssh.values()] } : {}),
    locals: [{ name: 'context' }, { name: 'dockerfile' }],
  };
  const platformString = [platform.os, platform.architecture, platform.variant].filter(Boolean).join('/');
  const configSource: Record<string, unknown> = { entryPoint: facts.filename };
  if (facts.vcs?.source) {
    configSource.uri = `${facts.vcs.source}#${facts.vcs.revision}`;
    configSource.digest = { sha1: facts.vcs.revision };
  }
  const buildkitMetadata: Record<string, unknown> = {};
  if (facts.vcs) buildkitMetadata.vcs = { ...(facts.vcs.source ? { source: facts.vcs.source } : {}), revision: facts.vcs.revision };
  const invocationID = epoch ? undefined : randomUUID().replace(/-/g, '');
  // As BuildKit: only what the request says (`reproducible=true`).
  const reproducible = req.reproducible === true;
  const completeness = { parameters: req.mode === 'max', environment: true, materials: false };
  const config = req.mode === 'max' ? buildConfig(facts.definition, ops) : undefined;
  const builderId = req.builderId ?? '';
  if (req.version === 'v1') {
    return {
      predicateType: PROVENANCE_V1,
      predicate: {
        buildDefinition: {
          buildType: BUILDKIT_V1_BUILD_TYPE,
          externalParameters: { configSource, request: parameters },
          internalParameters: { ...(config ? { buildConfig: config } : {}), builderPlatform: platformString, builderVersion: facts.builderVersion },
          resolvedDependencies: mats,
        },
        runDetails: {
          builder: { id: builderId, version: { 'llb-builder': facts.builderVersion } },
          metadata: {
            ...(invocationID ? { invocationID } : {}),
            startedOn: started, finishedOn: finished,
            buildkit_completeness: { request: completeness.parameters, resolvedDependencies: completeness.materials },
            buildkit_hermetic: false,
            buildkit_reproducible: reproducible,
            ...(Object.keys(buildkitMetadata).length ? { buildkit_metadata: buildkitMetadata } : {}),
          },
        },
      },
    };
  }
  return {
    predicateType: PROVENANCE_V02,
    predicate: {
      builder: { id: builderId },
      buildType: BUILDKIT_BUILD_TYPE,
      materials: mats,
      invocation: { configSource, parameters, environment: { platform: platformString } },
      ...(config ? { buildConfig: config } : {}),
      metadata: {
        ...(invocationID ? { buildInvocationID: invocationID } : {}),
        buildStartedOn: started,
        buildFinishedOn: finished,
        completeness,
        reproducible,
        'https://mobyproject.org/buildkit@v1#metadata': { ...buildkitMetadata, builder: { name: 'llb-builder', version: facts.builderVersion } },
      },
    },
  };
}
