// A build on a builder instance: each platform goes to a node that lists it (any node, under QEMU, only when
// none does), the platforms one node builds go in one request (the context is sent to each node once), and
// a node that does not answer or dies mid-build has its platforms rerun on the next candidate. Among nodes
// for the same platform the choice is sticky per context (rendezvous hashing of the context's path and the
// node's name), so a context keeps finding its cache, and adding or losing a node moves only its share.
//
// Spread over several nodes, a pushed image is pushed by each node by digest (push-by-digest: no tag
// moves), and the client joins the platform manifests into one index and pushes it under each name.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import type { BuildResult } from '../client/build.js';
import { formatPlatform, parsePlatforms } from '../client/platform.js';
import { parseOutput } from '../client/outputs.js';
import type { ProgressWriter, Vertex, VertexStatus } from '../progress/writer.js';
import { RegistryClient } from '../registry/client.js';
import { parseReference, type Reference } from '../registry/reference.js';
import { MediaType, type Descriptor, type Index } from '../image/types.js';
import type { Digest } from '../../solver/llb/ops.js';
import { sha256 } from '../../solver/llb/digest.js';
import { UserError } from '../util/errors.js';
import { fetchOutput, remoteBuild, RemoteError, type RemoteBuildRequest } from './client.js';
import { getInstance, nodeTLS, type BuilderChoice, type Instance } from './instances.js';
import { probeNode, type NodeStatus } from './nodes.js';
import { assembleLayout } from './assemble.js';

export type InstanceBuildRequest = Omit<RemoteBuildRequest, 'addr' | 'tls'>;

export interface InstanceBuildOptions {
  /** Lines for the user: a node skipped or given up on, with the reason. */
  note?: (line: string) => void;
}

/** Which nodes ran which platforms (for tests and `--metadata-file`-like reports). */
export interface InstanceBuildResult extends BuildResult {
  nodes?: { node: string; platforms: string[] }[];
}

/** Errors that mean the node, not the build, failed: its work goes to another node. */
function nodeFailed(e: unknown): boolean {
  return e instanceof RemoteError && (e.code === 'REMOTE_UNREACHABLE' || e.code === 'REMOTE_FAILED');
}

/** Candidates for a platform, best first: nodes listing it, sticky per context; else nodes that emulate it
 * (QEMU registered); else every node (its build says what is missing). */
function candidates(up: NodeStatus[], platform: string | undefined, context: string): { nodes: NodeStatus[]; emulated: boolean } {
  const score = (s: NodeStatus) => createHash('sha256').update(`${context}\0${s.node.name}`).digest('hex');
  const ranked = [...up].sort((a, b) => (score(a) < score(b) ? 1 : score(a) > score(b) ? -1 : 0));
  if (platform === undefined) return { nodes: ranked, emulated: false };
  const native = ranked.filter((s) => s.platforms.includes(platform));
  if (native.length) return { nodes: native, emulated: false };
  const emulating = ranked.filter((s) => s.emulated.includes(platform));
  return { nodes: emulating.length ? emulating : ranked, emulated: true };
}

/** Prefixes every step with `[node platform]` and keeps the nodes' step ids apart. */
function prefixed(w: ProgressWriter, label: string, key: string): ProgressWriter {
  const id = (x: string) => `${key}:${x}`;
  return {
    start: (v: Vertex) => w.start({ ...v, id: id(v.id), name: `[${label}] ${v.name}`, ...(v.inputs ? { inputs: v.inputs.map(id) } : {}) }),
    done: (x, o) => w.done(id(x), o),
    log: (x, stream, chunk, ts) => w.log?.(id(x), stream, chunk, ts),
    error: (x, m, c) => w.error?.(id(x), m, c),
    canceled: (x, c) => w.canceled?.(id(x), c),
    status: (s: VertexStatus) => w.status?.({ ...s, vertex: id(s.vertex), id: id(s.id) }),
    warning: (wa) => w.warning?.({ ...wa, ...(wa.vertex ? { vertex: id(wa.vertex) } : {}) }),
  };
}

export async function instanceBuild(inst: Instance, req: InstanceBuildRequest, opts: InstanceBuildOptions = {}): Promise<InstanceBuildResult> {
  const note = opts.note ?? (() => undefined);
  const token = process.env.BUILDER_TOKEN;
  if (inst.nodes.length === 0) throw new UserError('NO_NODES', `builder ${inst.name} has no nodes`);
  const statuses = await Promise.all(inst.nodes.map((n) => probeNode(n, { token })));
  const down = new Set<string>();
  for (const s of statuses.filter((x) => x.status !== 'running')) down.add(s.node.name);
  if (down.size < statuses.length) {
    for (const s of statuses.filter((x) => x.status !== 'running')) note(`builder ${inst.name}: skipping node ${s.node.name}: ${s.error}`);
  }
  const up = () => statuses.filter((s) => !down.has(s.node.name));
  if (up().length === 0) {
    const s = statuses[0];
    throw new RemoteError('REMOTE_UNREACHABLE', statuses.length === 1
      ? `builder ${inst.name}: node ${s.node.name} (${s.node.endpoint}) does not answer: ${s.error}`
      : `builder ${inst.name}: no node answers (${statuses.map((x) => `${x.node.name}: ${x.error}`).join('; ')})`);
  }
  const context = path.resolve(req.context);
  const platforms = req.platform ? parsePlatforms(req.platform).map(formatPlatform) : [];
  const many = inst.nodes.length > 1;

  // One request to one node, rerun on the next candidate when the node fails.
  const assign = (platform: string | undefined): NodeStatus => {
    const c = candidates(up(), platform, context);
    if (c.nodes.length === 0) throw new UserError('NO_NODE', `builder ${inst.name}: no node left to build ${platform ?? 'for'}: ${[...down].join(', ')} failed`);
    return c.nodes[0];
  };
  let attempt = 0;
  type Run = { node: NodeStatus; platforms: string[]; result: BuildResult; part?: string };
  // How a node's part is exported: undefined, as asked (on the node); else as the plan says.
  const runGroup = async (node: NodeStatus, group: string[], plan: Plan | undefined): Promise<Run[]> => {
    const label = `${node.node.name}${group.length ? ` ${group.join(',')}` : ''}`;
    const progress = many ? prefixed(req.progress, label, `${node.node.name}.${attempt++}`) : req.progress;
    const tls = nodeTLS(node.node);
    const fetching = plan?.kind === 'local' || plan?.kind === 'fetch' || plan?.kind === 'oci';
    try {
      const result = await remoteBuild({
        ...req, addr: node.node.endpoint, tls, token, progress,
        platform: group.length ? group.join(',') : undefined,
        outputs: plan?.kind === 'push' || plan?.kind === 'oci' ? plan.outputs : req.outputs,
        ...(fetching ? { fetchOutput: true } : {}),
      });
      if (fetching) {
        // One platform of several: its own subdirectory, as a local multi-platform export writes it.
        const dest = plan.kind === 'oci' ? path.join(plan.parts, `${node.node.name}-${attempt}`)
          : plan.kind === 'local' && group.length === 1 ? path.join(plan.dest, group[0].replace(/\//g, '_')) : plan.dest;
        const step = `fetch-${node.node.name}-${attempt}`;
        progress.start({ id: step, name: plan.kind === 'oci' ? 'fetching its part of the OCI layout' : `fetching the result into ${dest}` });
        await fetchOutput(node.node.endpoint, tls, result.fetch!, dest, { token });
        progress.done(step);
        if (plan.kind === 'oci') return [{ node, platforms: group, result, part: dest }];
      }
      return [{ node, platforms: group, result }];
    } catch (e) {
      if (!nodeFailed(e) || req.signal?.aborted) throw e;
      down.add(node.node.name);
      const others = up();
      if (others.length === 0) throw new RemoteError('REMOTE_FAILED', `builder ${inst.name}: node ${node.node.name} failed and no other node is left: ${(e as Error).message}`);
      note(`builder ${inst.name}: node ${node.node.name} failed (${(e as Error).message}); rerunning ${group.length ? group.join(', ') : 'the build'} on another node`);
      return runAll(group);
    }
  };
  let spread: Spread | undefined;
  const whole = wholePlan(req);
  const runAll = async (group: string[]): Promise<Run[]> => {
    if (group.length === 0) return runGroup(assign(undefined), [], whole);
    const byNode = new Map<string, { node: NodeStatus; platforms: string[] }>();
    for (const p of group) {
      const n = assign(p);
      const g = byNode.get(n.node.name) ?? { node: n, platforms: [] };
      g.platforms.push(p);
      byNode.set(n.node.name, g);
    }
    // One node for every platform: it exports as asked (a file or directory fetched here). Else each
    // node's part goes as the spread plan says.
    if (byNode.size === 1 && group.length === platforms.length) return runGroup([...byNode.values()][0].node, group, whole);
    spread ??= spreadPlan(req);
    return (await Promise.all([...byNode.values()].map((g) => runGroup(g.node, g.platforms, spread)))).flat();
  };

  for (const p of platforms) {
    const c = candidates(up(), p, context);
    if (c.emulated && many) note(`builder ${inst.name}: no node lists ${p}; building it on ${c.nodes[0].node.name} under emulation`);
  }
  let runs: Run[];
  try {
    runs = await runAll(platforms);
  } catch (e) {
    if (spread?.kind === 'oci') await fs.rm(spread.parts, { recursive: true, force: true });
    throw e;
  }
  const nodes = runs.map((r) => ({ node: r.node.node.name, platforms: r.platforms }));
  if (!spread) {
    const result = runs[0].result;
    // The node wrote to a temp place of its own: the output is where the client fetched it.
    const exports = whole ? result.exports.map((e) => (e.dest ? { ...e, dest: whole.dest } : e)) : result.exports;
    return { ...result, exports, nodes };
  }
  if (spread.kind === 'push') return { ...(await join(inst, req, runs, spread.names)), nodes };
  if (spread.kind === 'oci') {
    const plan = spread;
    const step = `assemble-${plan.dest}`;
    req.progress.start({ id: step, name: `exporting to oci image format: joining ${runs.length} nodes' parts into ${plan.dest}` });
    try {
      const root = await assembleLayout(runs.map((r) => ({ dir: r.part!, platforms: r.platforms })), platforms, plan.dest, { names: plan.names, tar: plan.tar });
      req.progress.done(step);
      return { manifestDigest: root.digest as Digest, exports: [{ type: 'oci', dest: plan.dest, manifestDigest: root.digest as Digest, descriptor: root, names: plan.names }], warnings: runs.flatMap((r) => r.result.warnings), nodes };
    } finally {
      await fs.rm(plan.parts, { recursive: true, force: true });
    }
  }
  const exports = spread.kind === 'local' ? [{ type: 'local', dest: spread.dest }] : [];
  return { exports, warnings: runs.flatMap((r) => r.result.warnings), nodes };
}

/** How the part of a build that one node does of several is exported: pushed by digest (the client pushes
 * the index), written to a directory the client fetches, or as asked (none, cacheonly). */
type Spread = { kind: 'push'; names: string[]; outputs: string[] } | { kind: 'local'; dest: string } | { kind: 'same' }
  | { kind: 'oci'; dest: string; tar: boolean; names: string[]; outputs: string[]; parts: string };
/** Or, for a build one node does whole: its one file or directory output, fetched by the client. */
type Plan = Spread | { kind: 'fetch'; dest: string };

function spreadPlan(req: InstanceBuildRequest): Spread {
  const specs = (req.outputs ?? []).map(parseOutput);
  if (specs.every((s) => s.type === 'cacheonly')) return { kind: 'same' };
  if (specs.length === 1 && specs[0].type === 'local' && specs[0].dest && specs[0].dest !== '-') return { kind: 'local', dest: path.resolve(specs[0].dest) };
  if (specs.length === 1 && specs[0].type === 'oci' && specs[0].dest && specs[0].dest !== '-') {
    // Each node writes its part as a layout directory; the client joins them (assemble.ts).
    const o = specs[0];
    const names = (o.names ?? req.tags ?? []).map((n: string) => parseReference(n).toString());
    const attrs = Object.entries(o.attrs).filter(([k]) => k !== 'tar').map(([k, v]) => `,${k}=${v}`).join('');
    return {
      kind: 'oci', dest: path.resolve(o.dest!), tar: (o.attrs.tar ?? 'true').toLowerCase() !== 'false', names,
      outputs: [`type=oci,dest=part,tar=false${attrs}`], parts: path.join(os.tmpdir(), `builder-parts-${process.pid}-${Date.now()}`),
    };
  }
  const names = pushNames(req);
  return { kind: 'push', names, outputs: [`type=image,${names.map((n) => `name=${n}`).join(',')},push=true,push-by-digest=true${names.extra}`] };
}

/** A build's one output written to a path (local, tar, oci, docker with dest): the client's path, fetched
 * from the node. Several outputs, or none of those, are exported on the node as asked. */
function wholePlan(req: InstanceBuildRequest): { kind: 'fetch'; dest: string } | undefined {
  const specs = (req.outputs ?? []).map(parseOutput);
  const o = specs[0];
  if (specs.length !== 1 || !o.dest || o.dest === '-' || !['local', 'tar', 'oci', 'docker'].includes(o.type)) return undefined;
  return { kind: 'fetch', dest: path.resolve(o.dest) };
}

/** The names a build's outputs push to when they are one pushed image output (else undefined, or an error
 * when there are outputs the client cannot assemble from several nodes). */
function pushNames(req: InstanceBuildRequest): string[] & { extra: string } {
  const specs = (req.outputs ?? []).map(parseOutput);
  const image = specs.length === 1 && (specs[0].type === 'registry' || (specs[0].type === 'image' && specs[0].attrs.push !== undefined && specs[0].attrs.push.toLowerCase() !== 'false'));
  if (!image) {
    throw new UserError('UNSUPPORTED_OUTPUT', 'a build spread over several nodes can only push (--push or type=image,push=true), or write one type=local or type=oci output, yet; other outputs need all its platforms on one node');
  }
  const names = (specs[0].names ?? req.tags ?? []).map((n: string) => parseReference(n).toString());
  if (names.length === 0) throw new UserError('UNSUPPORTED_OUTPUT', `type=${specs[0].type} with push needs a name (name=REF or -t REF)`);
  const extra = Object.entries(specs[0].attrs).filter(([k]) => !['name', 'push', 'push-by-digest', 'store'].includes(k)).map(([k, v]) => `,${k}=${v}`).join('');
  return Object.assign(names, { extra });
}

async function join(inst: Instance, req: InstanceBuildRequest, runs: { node: NodeStatus; platforms: string[]; result: BuildResult }[], names: string[]): Promise<BuildResult> {
  const warnings = runs.flatMap((r) => r.result.warnings);
  const refs = names.map(parseReference);
  // As the image exporter: `registry.insecure=true` on the output makes its registries insecure.
  const attrs = parseOutput((req.outputs ?? [])[0] ?? 'type=registry').attrs;
  const insecure = ['registry.insecure', 'insecure'].some((k) => attrs[k] !== undefined && attrs[k].toLowerCase() !== 'false');
  const client = new RegistryClient(insecure ? { insecureRegistries: refs.map((r) => r.domain) } : {});
  const entries: Descriptor[] = [];
  for (const r of runs) {
    const root = r.result.exports[0]?.descriptor;
    if (!root) throw new RemoteError('REMOTE_FAILED', `builder ${inst.name}: node ${r.node.node.name} pushed no image`);
    const got = await client.getManifest(refs[0], root.digest);
    if (got.mediaType === MediaType.ociIndex || got.mediaType === MediaType.dockerManifestList) {
      entries.push(...(got.json as Index).manifests);
    } else {
      entries.push({ mediaType: got.mediaType, digest: got.digest, size: got.bytes.length, platform: platformOf(r.platforms[0]) });
    }
  }
  // Platforms in the order they were asked for.
  const order = parsePlatforms(req.platform ?? '').map(formatPlatform);
  // Attestation manifests (unknown/unknown) after the images, as BuildKit's index lists them.
  const rank = (d: Descriptor) => {
    const i = order.indexOf(d.platform ? formatPlatform(d.platform as never) : '');
    return i < 0 ? order.length : i;
  };
  entries.sort((a, b) => rank(a) - rank(b));
  const oci = entries.some((e) => e.mediaType === MediaType.ociManifest);
  const mediaType = oci ? MediaType.ociIndex : MediaType.dockerManifestList;
  const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType, manifests: entries } satisfies Index));
  const digest = sha256(bytes) as Digest;
  req.progress.start({ id: `index-${digest}`, name: `pushing index ${digest} for ${names.join(', ')}` });
  for (const ref of refs) await putManifest(client, ref, mediaType, bytes, digest);
  req.progress.done(`index-${digest}`);
  const descriptor: Descriptor = { mediaType, digest, size: bytes.length };
  return { manifestDigest: digest, exports: [{ type: 'image', manifestDigest: digest, descriptor, names: [...names], pushed: true }], warnings };
}

function platformOf(p: string): Descriptor['platform'] {
  const [os, architecture, variant] = p.split('/');
  return { os, architecture, ...(variant ? { variant } : {}) };
}

async function putManifest(client: RegistryClient, ref: Reference, mediaType: string, bytes: Buffer, digest: string): Promise<void> {
  const tag = ref.tag ?? ref.digest ?? digest;
  const res = await client.send(ref, 'PUT', `${client.repositoryURL(ref)}manifests/${tag}`, {
    access: 'push', headers: { 'content-type': mediaType }, body: bytes, what: `manifests/${tag}`,
  });
  await res.discard();
}

/** A build on a `builder serve` address or on a builder instance (`chooseBuilder`'s answer). */
export async function buildOn(choice: BuilderChoice, req: InstanceBuildRequest, opts: InstanceBuildOptions = {}): Promise<InstanceBuildResult> {
  if (choice.kind === 'address') {
    // As with an instance: one output to a path is this machine's path, fetched from the server's temp.
    const token = process.env.BUILDER_TOKEN;
    const fetch = wholePlan(req);
    const result = await remoteBuild({ ...req, addr: choice.addr, token, ...(fetch ? { fetchOutput: true } : {}) });
    if (!fetch) return result;
    const step = `fetch-${result.fetch}`;
    req.progress.start({ id: step, name: `fetching the result into ${fetch.dest}` });
    await fetchOutput(choice.addr, undefined, result.fetch!, fetch.dest, { token });
    req.progress.done(step);
    const { fetch: _id, ...rest } = result;
    return { ...rest, exports: result.exports.map((e) => (e.dest ? { ...e, dest: fetch.dest } : e)) };
  }
  if (choice.kind === 'instance') return instanceBuild(getInstance(choice.name), req, opts);
  throw new Error('buildOn: a local build goes through build()');
}
