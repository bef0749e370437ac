// BuildKit's frontend subrequests (`--call outline`, `--call targets`): what a Dockerfile takes and offers,
// in the JSON shapes of frontend/subrequests/{outline,targets} (field order and omitted empties as Go's
// encoding/json writes them). Descriptions are doc comments: a comment line right above FROM or ARG that
// starts with the stage or argument name (`# base The image everything builds on`).
import { parseInstructions, type InstructionLocation, type Stage } from './instructions.js';

/** pb.Location as JSON: 1-based lines; characters are always 0 here, so omitted. */
export interface SourceLocation {
  ranges: { start: { line: number }; end: { line: number } }[];
}

export interface OutlineArg {
  name: string;
  description?: string;
  value?: string;
  location?: SourceLocation;
}

export interface OutlineSecret {
  name: string;
  required?: boolean;
  location?: SourceLocation;
}

export type OutlineSSH = OutlineSecret;

export interface Outline {
  /** The target stage's name; absent for an unnamed one. */
  name?: string;
  description?: string;
  args?: OutlineArg[];
  secrets?: OutlineSecret[];
  ssh?: OutlineSSH[];
  /** The Dockerfile, base64. */
  sources?: string[];
}

export interface Target {
  name?: string;
  /** The stage built without `--target` (the last). */
  default?: boolean;
  description?: string;
  /** FROM's base as written. */
  base?: string;
  /** FROM's `--platform` as written. */
  platform?: string;
  location?: SourceLocation;
}

export interface TargetList {
  targets: Target[];
  sources: string[];
}

/** BuildKit's getDocComment: the text after `NAME ` in the first comment line that starts with it. */
export function docComment(comments: string[], name: string): string {
  if (!name) return '';
  for (const line of comments) if (line.startsWith(`${name} `)) return line.slice(name.length + 1);
  return '';
}

export function sourceLocation(loc: InstructionLocation): SourceLocation {
  return { ranges: [{ start: { line: loc.startLine }, end: { line: loc.endLine } }] };
}

/** Every stage of the Dockerfile, in order (BuildKit's ListTargets): parsing only, nothing is resolved. */
export function listTargets(dockerfile: string, filename = 'Dockerfile'): TargetList {
  const { stages } = parseInstructions(dockerfile, filename);
  const targets = stages.map((st, i) => {
    const from = st.from;
    return omitEmpty<Target>({
      name: from.name, default: i === stages.length - 1, description: docComment(from.comments, from.name),
      base: from.baseName, platform: from.platform, location: sourceLocation(from.location),
    });
  });
  return { targets, sources: [Buffer.from(dockerfile).toString('base64')] };
}

// ------------------------------------------------------------------ outline capture (during the conversion)

export interface ArgInfo {
  name: string;
  value?: string;
  description: string;
  location: InstructionLocation;
  /** Other meta args its default referred to: used when it is. */
  deps: Set<string>;
}

interface MountInfo {
  required: boolean;
  location: InstructionLocation;
}

/** What one stage declares and uses, as BuildKit's outlineCapture; stages start from the meta args. */
export class OutlineCapture {
  constructor(
    readonly args = new Map<string, ArgInfo>(),
    readonly used = new Set<string>(),
    readonly secrets = new Map<string, MountInfo>(),
    readonly ssh = new Map<string, MountInfo>(),
  ) {}

  /** A stage's capture: the meta args known, nothing used yet. */
  forStage(used: Iterable<string>): OutlineCapture {
    return new OutlineCapture(new Map(this.args), new Set(used));
  }

  /** The first use of a secret or agent id is the one reported. */
  secret(id: string, required: boolean, location: InstructionLocation): void {
    if (!this.secrets.has(id)) this.secrets.set(id, { required, location });
  }

  sshAgent(id: string, required: boolean, location: InstructionLocation): void {
    if (!this.ssh.has(id)) this.ssh.set(id, { required, location });
  }

  /** Used args bring the meta args their defaults referred to. */
  private markAllUsed(keys: Iterable<string>, visited: Set<string>): void {
    for (const k of [...keys]) {
      if (visited.has(k)) continue;
      visited.add(k);
      const a = this.args.get(k);
      if (a) this.markAllUsed(a.deps, visited);
      this.used.add(k);
    }
  }

  usedArgs(): ArgInfo[] {
    this.markAllUsed(this.used, new Set());
    return [...this.used].flatMap((k) => this.args.get(k) ?? []);
  }
}

/** A stage as the outline walks it: its own capture, then its base's, then those of the stages it copies from. */
export interface OutlineStage {
  /** `AS` name, lower-cased; '' if none. */
  name: string;
  stage?: Stage;
  outline?: OutlineCapture;
  base?: OutlineStage;
  deps: Set<OutlineStage>;
}

export function buildOutline(target: OutlineStage, dockerfile: string): Outline {
  const walk = <T>(pick: (s: OutlineStage) => [string, T][]) => {
    const out: [string, T][] = [];
    const visited = new Set<string>();
    const seen = new Set<OutlineStage>();
    const visit = (s: OutlineStage) => {
      if (seen.has(s)) return;
      seen.add(s);
      if (s.outline) for (const [k, v] of pick(s)) if (!visited.has(k)) { visited.add(k); out.push([k, v]); }
      if (s.base) visit(s.base);
      for (const d of s.deps) visit(d);
    };
    visit(target);
    return out;
  };
  const byLine = <T extends { location?: SourceLocation }>(xs: T[]) =>
    xs.sort((a, b) => (a.location?.ranges[0].start.line ?? 0) - (b.location?.ranges[0].start.line ?? 0));
  const args = byLine(walk((s) => s.outline!.usedArgs().map((a) => [a.name, a] as [string, ArgInfo]))
    .map(([, a]) => omitEmpty<OutlineArg>({ name: a.name, description: a.description, value: a.value, location: sourceLocation(a.location) })));
  const mounts = (pick: (s: OutlineStage) => Map<string, MountInfo>) => byLine(walk((s) => [...pick(s)])
    .map(([name, m]) => omitEmpty<OutlineSecret>({ name, required: m.required, location: sourceLocation(m.location) })));
  return omitEmpty<Outline>({
    name: target.name, description: docComment(target.stage?.from.comments ?? [], target.name), args,
    secrets: mounts((s) => s.outline!.secrets), ssh: mounts((s) => s.outline!.ssh),
    sources: [Buffer.from(dockerfile).toString('base64')],
  });
}

/** Go's `omitempty`: no empty strings, false, or empty lists. */
function omitEmpty<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined && v !== '' && v !== false && !(Array.isArray(v) && v.length === 0))) as T;
}
