// A Definition is a whole build graph: ops by digest, per-op metadata, and the op whose result is wanted.
import { canonicalJSON, opDigest, sha256 } from './digest.js';
import { opInputs, type Digest, type Op, type OpMetadata } from './ops.js';

export interface Definition {
  ops: Record<Digest, Op>;
  metadata: Record<Digest, OpMetadata>;
  /** The op whose output is the build result. */
  root: Digest;
}

/** Collects ops into a definition; adding the same op twice keeps one copy (dedup by digest). */
export class DefinitionBuilder {
  private readonly ops = new Map<Digest, Op>();
  private readonly metadata = new Map<Digest, OpMetadata>();
  /** Bytes of the distinct ops' canonical JSON: what the graph weighs, for a caller's bound on it. */
  size = 0;

  add(op: Op, meta?: OpMetadata): Digest {
    for (const input of opInputs(op)) {
      if (!this.ops.has(input.digest)) throw new Error(`LLB: input ${input.digest} added before its op`);
    }
    const json = canonicalJSON(op);
    const digest = sha256(json);
    if (!this.ops.has(digest)) {
      this.ops.set(digest, op);
      this.size += json.length;
    }
    if (meta && !this.metadata.has(digest)) this.metadata.set(digest, meta);
    return digest;
  }

  get(digest: Digest): Op | undefined {
    return this.ops.get(digest);
  }

  /** The definition of everything `root` needs, and nothing else. */
  build(root: Digest): Definition {
    const ops: Record<Digest, Op> = {};
    const metadata: Record<Digest, OpMetadata> = {};
    // A stack, not recursion: a chain of thousands of steps is as deep as it is long.
    const todo: Digest[] = [root];
    for (let d = todo.pop(); d !== undefined; d = todo.pop()) {
      if (ops[d]) continue;
      const op = this.ops.get(d);
      if (!op) throw new Error(`LLB: unknown op ${d}`);
      ops[d] = op;
      const m = this.metadata.get(d);
      if (m) metadata[d] = m;
      for (const input of opInputs(op)) todo.push(input.digest);
    }
    return { ops, metadata, root };
  }
}

/** One definition holding several (ops are shared by digest); `root` is the first one's. */
export function mergeDefinitions(defs: Definition[]): Definition {
  const ops: Record<Digest, Op> = {};
  const metadata: Record<Digest, OpMetadata> = {};
  for (const d of defs) {
    Object.assign(ops, d.ops);
    for (const [k, m] of Object.entries(d.metadata) as [Digest, OpMetadata][]) metadata[k] ??= m;
  }
  return { ops, metadata, root: defs[0].root };
}

export function serializeDefinition(def: Definition): string {
  return canonicalJSON(def);
}

/** Parses and checks a serialized definition: every digest matches its op and every input exists. */
export function parseDefinition(json: string): Definition {
  const def = JSON.parse(json) as Definition;
  for (const [digest, op] of Object.entries(def.ops) as [Digest, Op][]) {
    if (opDigest(op) !== digest) throw new Error(`LLB: op ${digest} does not match its content`);
    for (const input of opInputs(op)) {
      if (!def.ops[input.digest]) throw new Error(`LLB: op ${digest} refers to missing input ${input.digest}`);
    }
  }
  if (!def.ops[def.root]) throw new Error(`LLB: root ${def.root} is not in the definition`);
  return def;
}
