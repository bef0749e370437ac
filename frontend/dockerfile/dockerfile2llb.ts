// Typed instructions -> LLB and the image config, one dispatch function per instruction, as BuildKit's
// dockerfile2llb: only the stages the target reaches are resolved and converted; each stage's state is an
// op digest plus the environment, working directory and user that RUN steps see.
import path from 'node:path';
import type { ChownOpt, CopyAction, Digest, ExecMeta, ExecMount, ExecOp, FileAction, FileOp, NetworkMode, Op, OpMetadata, Platform, Ulimit } from '../../solver/llb/ops.js';
import { opInputs } from '../../solver/llb/ops.js';
import { DefinitionBuilder, type Definition } from '../../solver/llb/definition.js';
import { BuilderError } from '../../src/util/errors.js';
import { isGitAddress, parseGitAddress } from '../../src/util/gitaddress.js';
import { DockerfileError, withLocation } from './errors.js';
import { MAX_DEFINITION_BYTES, formatSize } from './limits.js';
import { EnvList, ExpansionBudget, ShellLex, type EnvGetter } from './shell.js';
import { parseInstruction, parseInstructions, type FromInstruction, type ParsedDockerfile, type ArgDef, type ArgInstruction, type Instruction, type InstructionLocation, type Stage, type CopyInstruction, type AddInstruction, type RunInstruction } from './instructions.js';
import { parseDockerfile, parseHeredoc } from './parser.js';
import { cloneImage, emptyImage, DEFAULT_PATH, type ImageConfigFile, type StageImage } from './image.js';
import { formatPlatform, parsePlatform } from './platform.js';
import { formatGoDuration, goList, goQuoteList } from './gofmt.js';
import { mountFrom, parseMount, type MountSpec } from './runmount.js';
import { parseSymbolicMode } from '../../solver/llb/chmod.js';
import { MAX_SUGGEST_OPTIONS, suggest, withSuggestion } from '../../src/util/suggest.js';
import { Linter, emptyCheckConfig, looksLikeSecret, parseCheckOptions, type LintWarning } from './linter.js';
import { PatternMatcher } from '../../src/util/patterns.js';
import { buildOutline, docComment, OutlineCapture, type Outline } from './subrequests.js';

export interface ImageMetaResolver {
  /** ref as written in FROM (after ARG expansion); returns the normalized ref pinned by digest and its config. */
  resolveImageConfig(ref: string, platform: Platform): Promise<{ ref: string; config: ImageConfigFile }>;
}

/**
 * What a named build context (`--build-context NAME=...`) stands for: an image (`docker-image://`, or an
 * OCI layout the client made resolvable), or a directory the client supplies as a local source (a local
 * directory, a git checkout, a downloaded file). `FROM NAME`, `COPY --from=NAME` and `RUN --mount=from=NAME`
 * use it, with BuildKit's precedence: a stage of that name is replaced whole; a name that is not a stage
 * (a base image, a --from image) is replaced before it would be resolved as an image.
 */
export type NamedContext = { type: 'image'; ref: string } | { type: 'local'; name: string; excludes?: string[] }
  /** Another build's result (a bake target's, `target:NAME`): its graph, joined to this one, and its image config. */
  | { type: 'definition'; name: string; definition: Definition; config: ImageConfigFile };

export interface ConvertOptions {
  /** Dockerfile content. */
  dockerfile: string;
  /** For messages and op locations; default 'Dockerfile'. */
  filename?: string;
  /** Stage name; default the last stage. */
  target?: string;
  buildArgs?: Record<string, string>;
  targetPlatform: Platform;
  buildPlatform: Platform;
  resolver: ImageMetaResolver;
  /** .dockerignore patterns, given to the context LocalSource. */
  contextExcludes?: string[];
  labels?: Record<string, string>;
  /** Sets metadata.ignoreCache on RUN/COPY/ADD/WORKDIR ops. */
  noCache?: boolean;
  /** Convert every stage, not only those the target reaches (`--check` lints them all). */
  allStages?: boolean;
  /** Part of a multi-platform build: step names start with the stage's platform, as in BuildKit. */
  platformPrefix?: boolean;
  // What every RUN gets (BuildKit's frontend attributes force-network-mode, add-hosts, shm-size, ulimit,
  // cgroup-parent): part of each exec op, hence of its cache key.
  /** Network of `RUN` and `RUN --network=default`; default `sandbox`. */
  network?: NetworkMode;
  /** `/etc/hosts` entries `host:ip`. */
  extraHosts?: string[];
  /** Size of /dev/shm in bytes (a tmpfs mount of that size, as BuildKit). */
  shmSize?: number;
  ulimits?: Ulimit[];
  cgroupParent?: string;
  /** Also describe the target (`--call outline`): build args, secrets, SSH agents it uses. */
  outline?: boolean;
  /** Named contexts by name in familiar form (`familiarContextName`), optionally `NAME::os/arch` for one
   * platform only. */
  namedContexts?: Record<string, NamedContext>;
}

/**
 * The key a named context is found by, as BuildKit's NamedContext: the familiar form of the name (an image
 * name without `docker.io/library/` and without `:latest`), lower-cased.
 */
export function familiarContextName(name: string): string {
  let n = name.toLowerCase();
  n = n.replace(/^(?:index\.)?docker\.io\/(?:library\/(?=[^/]+$|[^/]+[:@]))?/, '');
  const slash = n.lastIndexOf('/');
  if (n.endsWith(':latest') && n.lastIndexOf(':') > slash) n = n.slice(0, -':latest'.length);
  return n;
}

export interface ConvertResult {
  /** Root: the target stage's final state. */
  definition: Definition;
  /** OCI image config of the target: config fields and history (no rootfs). */
  image: StageImage;
  /** Build check warnings (BuildKit's lint rules), in the order found. */
  warnings: LintWarning[];
  /** The `# syntax=` directive, when given: accepted, but this built-in frontend converts (no remote frontends). */
  syntax?: string;
  /** With `outline`: what the target takes. */
  outline?: Outline;
  /**
   * The other stages the target's build runs, with their final states (what an SBOM scan of stages reads);
   * `scan` when the stage's `ARG BUILDKIT_SBOM_SCAN_STAGE` is true (BuildKit's per-stage opt-in).
   */
  stages: { name: string; digest: Digest; scan: boolean }[];
}

const SCRATCH = 'scratch';
const HISTORY_COMMENT = 'buildkit.dockerfile.v0';
const COMMON_IMAGES = ['alpine', 'busybox', 'centos', 'debian', 'golang', 'ubuntu', 'fedora'];
const PROXY_ARGS = ['http_proxy', 'https_proxy', 'ftp_proxy', 'no_proxy', 'all_proxy'];
const DEFAULT_SHELL = ['/bin/sh', '-c'];

/** What a RUN step sees and the filesystem it runs on. */
interface LLBState {
  digest: Digest;
  env: EnvList;
  dir: string;
  user: string;
}

/** A stage (or an image named only by COPY --from) on its way to LLB. */
interface DispatchState {
  stage?: Stage;
  baseName: string;
  /** `AS` name, lower-cased; '' if none. */
  name: string;
  /** Name in progress output: the `AS` name or `stage-N`; '' when the Dockerfile has a single stage. */
  stageName: string;
  location: InstructionLocation;
  platform?: Platform;
  base?: DispatchState;
  deps: Set<DispatchState>;
  /** COPY --from sources of this stage's instructions. */
  sources: Map<Instruction, DispatchState>;
  /** RUN --mount from= sources, by the name as written. */
  mountSources: Map<string, DispatchState>;
  instructions: Instruction[];
  /** An image named by COPY --from only. */
  unregistered: boolean;
  resolved?: { ref: string; config: StageImage; scratch: boolean; digest?: Digest };
  /** The stage's own name is a named context: it replaces the whole stage (none of its instructions run). */
  replacedBy?: NamedContext;
  dispatched: boolean;
  state?: LLBState;
  image?: StageImage;
  buildArgs: ArgDef[];
  cmdTotal: number;
  cmdIndex: number;
  onBuildDone: boolean;
  /** The instructions that came from the base's ONBUILD triggers. */
  onBuild?: Set<Instruction>;
  /** The instruction being dispatched is one of them (its step is named `[... 1/2] ONBUILD RUN ...`). */
  cmdIsOnBuild?: boolean;
  /** A CMD was set in this stage (a later ENTRYPOINT then keeps it). */
  cmdSet?: boolean;
  /** Where CMD, ENTRYPOINT and HEALTHCHECK were last set in this stage (MultipleInstructionsDisallowed). */
  usedOnce?: Map<string, Instruction>;
  /** A WORKDIR was set in this stage (WorkdirRelativePath looks at the first only). */
  workdirSet?: boolean;
  /** Args, secrets and SSH agents the stage declares and uses (`--call outline`). */
  outline?: OutlineCapture;
  /** Positions of the variables in the stage image's `Env`, by name (built on the first ENV). */
  envIndex?: Map<string, number>;
}

class Converter {
  private readonly file: string;
  private readonly builder = new DefinitionBuilder();
  private readonly states: DispatchState[] = [];
  private readonly byName = new Map<string, DispatchState>();
  private lex!: ShellLex;
  /** What all of this conversion's expansions may add (limits.ts). */
  private readonly budget = new ExpansionBudget();
  private globalArgs = EnvList.empty();
  private contextDigest?: Digest;
  private linter = new Linter();
  /** The instruction being dispatched: variables its words use but nobody set are UndefinedVar. */
  private lintTarget?: { d: DispatchState; inst: Instruction };
  private declaredMetaArgs = new Set<string>();
  private syntax?: string;
  private scratchDigest?: Digest;
  /** The meta args, for the outline: what each stage starts from. */
  private metaOutline = new OutlineCapture();
  /**
   * Stages still to start from each stage. A stage's image config is needed only by those and (the
   * target's) by the result: the last one takes it instead of a copy, and an image nobody needs is let go.
   * A copy per stage of a chain of stages, each config longer than the last, was quadratic in memory.
   */
  private readonly imageUsers = new Map<DispatchState, number>();
  private target?: DispatchState;

  constructor(private readonly opts: ConvertOptions) {
    this.file = opts.filename ?? 'Dockerfile';
  }

  async convert(): Promise<ConvertResult> {
    if (this.opts.dockerfile.length === 0) throw new DockerfileError('the Dockerfile cannot be empty');
    const parsed = parseInstructions(this.opts.dockerfile, this.file);
    if (parsed.stages.length === 0) throw new DockerfileError('dockerfile contains no stages to build');
    this.lex = new ShellLex(parsed.escapeToken, { budget: this.budget });
    if (parsed.directives.check !== undefined) this.linter = new Linter(parsed.directives.check ? parseCheckOptions(parsed.directives.check) : emptyCheckConfig());
    const targetName = this.opts.target || parsed.stages[parsed.stages.length - 1].from.name;
    this.globalArgs = this.metaArgs(parsed.metaArgs, targetName);
    for (const cmd of parsed.metaArgs) for (const a of cmd.args) this.declaredMetaArgs.add(a.key);
    this.lintParsed(parsed);
    this.syntax = parsed.directives.syntax;

    parsed.stages.forEach((stage, i) => this.addStage(stage, i));
    const target = this.resolveTarget();
    for (const d of [...this.states]) this.findSources(d, d.instructions);
    if (this.states.length === 1) this.states[0].stageName = '';
    checkCycles(this.states);

    const reachable = await this.resolveReachable(target);
    if (this.opts.allStages) {
      for (const d of this.states) if (!reachable.has(d)) for (const r of await this.resolveReachable(d)) reachable.add(r);
    }
    for (const d of this.states) if (reachable.has(d) && d.base) this.imageUsers.set(d.base, (this.imageUsers.get(d.base) ?? 0) + 1);
    this.target = target;
    for (const d of this.states) {
      if (reachable.has(d) && !d.dispatched) this.dispatchStage(d);
    }
    const lintError = this.linter.error();
    if (lintError) throw lintError;
    const stages = this.states.flatMap((d, i) => (d !== target && d.stage && d.dispatched && d.state ? [{
      name: d.name || `stage-${i}`, digest: d.state.digest,
      scan: /^(1|t|true)$/i.test([...d.buildArgs].reverse().find((a) => a.key === 'BUILDKIT_SBOM_SCAN_STAGE')?.value ?? ''),
    }] : []));
    return { definition: this.builder.build(target.state!.digest), image: this.finalImage(target), warnings: this.linter.warnings, stages,
      ...(this.syntax ? { syntax: this.syntax } : {}),
      ...(this.opts.outline ? { outline: buildOutline(target, this.opts.dockerfile) } : {}) };
  }

  // ------------------------------------------------------------------ checks on the whole file

  private lintParsed(parsed: ParsedDockerfile): void {
    const lint = this.linter;
    for (const w of parsed.warnings) lint.run('NoEmptyContinuation', { file: this.file, startLine: w.line, endLine: w.line }, undefined);
    const all = parsed.stages.flatMap((st) => [st.from, ...st.instructions]);
    // Instruction casing: the majority of self-consistent keywords decides.
    const consistent = all.filter((i) => i.keyword === i.keyword.toLowerCase() || i.keyword === i.keyword.toUpperCase());
    const lower = consistent.filter((i) => i.keyword === i.keyword.toLowerCase()).length;
    const majorityLower = lower > consistent.length - lower;
    const names = new Set<string>();
    for (const st of parsed.stages) {
      const from = st.from;
      if (from.rawName && from.rawName !== from.rawName.toLowerCase()) lint.run('StageNameCasing', from.location, from.comments, from.rawName);
      if (from.asKeyword) {
        const kw = from.keyword;
        const mismatch = kw === kw.toLowerCase() ? from.asKeyword !== from.asKeyword.toLowerCase()
          : kw === kw.toUpperCase() ? from.asKeyword !== from.asKeyword.toUpperCase() : false;
        if (mismatch) lint.run('FromAsCasing', from.location, from.comments, kw, from.asKeyword);
      }
      if (from.name) {
        this.lintDescription('FROM', [from.name], from);
        if (from.name === 'scratch' || from.name === 'context') lint.run('ReservedStageName', from.location, from.comments, from.name);
        if (names.has(from.name)) lint.run('DuplicateStageName', from.location, from.comments, from.name);
        names.add(from.name);
      }
      for (const inst of st.instructions) {
        if (inst.kind === 'maintainer') lint.run('MaintainerDeprecated', inst.location, inst.comments);
        if (inst.kind === 'arg') this.lintDescription('ARG', inst.args.map((a) => a.key), inst);
      }
    }
    for (const inst of parsed.metaArgs) this.lintDescription('ARG', inst.args.map((a) => a.key), inst);
    for (const inst of all) {
      const k = inst.keyword;
      const casing = majorityLower && k.toLowerCase() !== k ? 'lowercase' : !majorityLower && k.toUpperCase() !== k ? 'uppercase' : '';
      if (casing) lint.run('ConsistentInstructionCasing', inst.location, inst.comments, k, casing);
    }
    // Base names with only the ARG defaults (no --build-arg) must still be image references.
    let defaults: EnvList;
    try {
      defaults = new Converter({ ...this.opts, buildArgs: {} }).withLex(this.lex).metaArgs(parsed.metaArgs, '');
    } catch {
      return;
    }
    for (const st of parsed.stages) {
      let name: string;
      try {
        name = this.lex.processWord(st.from.baseName, defaults);
      } catch {
        continue;
      }
      if (!isImageReference(name)) lint.run('InvalidDefaultArgInFrom', st.from.location, st.from.comments, st.from.baseName);
    }
  }

  private withLex(lex: ShellLex): this {
    this.lex = lex;
    return this;
  }

  /** InvalidDefinitionDescription (experimental): a comment right above names what it describes. */
  private lintDescription(instruction: string, keys: string[], inst: { location: InstructionLocation; comments: string[] }): void {
    if (inst.comments.length === 0 || keys.length === 0) return;
    const first = inst.comments[inst.comments.length - 1].split(' ')[0];
    if (keys.includes(first)) return;
    this.linter.run('InvalidDefinitionDescription', inst.location, inst.comments, instruction, keys.length > 1 ? '<arg_key>' : keys[0]);
  }

  // ------------------------------------------------------------------ stages

  /** BUILDPLATFORM, TARGETARCH, ... then the ARGs before the first FROM, with --build-arg values. */
  private metaArgs(argCmds: ArgInstruction[], target: string): EnvList {
    const bp = this.opts.buildPlatform;
    const tp = this.opts.targetPlatform;
    const buildArgs = this.opts.buildArgs ?? {};
    const defaults: [string, string][] = [
      ['BUILDPLATFORM', formatPlatform(bp)], ['BUILDOS', bp.os], ['BUILDOSVERSION', ''], ['BUILDARCH', bp.architecture],
      ['BUILDVARIANT', bp.variant ?? ''], ['TARGETPLATFORM', formatPlatform(tp)], ['TARGETOS', tp.os],
      ['TARGETOSVERSION', ''], ['TARGETARCH', tp.architecture], ['TARGETVARIANT', tp.variant ?? ''],
      ['TARGETSTAGE', target || 'default'],
    ];
    let env = EnvList.empty();
    for (const [k, v] of defaults) env = env.set(k, buildArgs[k] ?? v);
    for (const cmd of argCmds) {
      for (const arg of cmd.args) {
        let value = buildArgs[arg.key];
        let deps = new Set<string>();
        if (value === undefined && arg.value !== undefined) {
          value = this.expand(arg.value, env, cmd.location);
          deps = this.lex.processWordWithMatches(arg.value, env).matched;
          // `ARG A=$A-x` keeps what the earlier A referred to.
          if (deps.delete(arg.key)) for (const k of this.metaOutline.args.get(arg.key)?.deps ?? []) deps.add(k);
        }
        if (value !== undefined) env = env.set(arg.key, value);
        this.metaOutline.args.set(arg.key, { name: arg.key, value, description: docComment(cmd.comments, arg.key), location: cmd.location, deps });
      }
    }
    return env;
  }

  private addStage(stage: Stage, index: number): void {
    const from = stage.from;
    const baseName = this.expand(from.baseName, this.globalArgs, from.location);
    const used = new Set(this.lintFromArgs(from.baseName, from)?.matched);
    if (baseName === '') throw new DockerfileError(`base name (${from.baseName}) should not be blank`, from.location);
    let platform: Platform | undefined;
    if (from.platform) {
      const spec = this.expand(from.platform, this.globalArgs, from.location);
      const m = this.lintFromArgs(from.platform, from);
      for (const k of m?.matched ?? []) used.add(k);
      if (m && m.matched.size === 1 && m.unmatched.size === 0 && m.matched.has('TARGETPLATFORM') && m.result === this.globalArgs.get('TARGETPLATFORM')) {
        this.linter.run('RedundantTargetPlatform', from.location, from.comments, from.platform);
      }
      if (m && m.matched.size === 0 && m.unmatched.size === 0) {
        const p = parsePlatform(m.result);
        if (p && !from.name.includes(p.os) && !from.name.includes(p.architecture)) {
          this.linter.run('FromPlatformFlagConstDisallowed', from.location, from.comments, m.result);
        }
      }
      if (spec === '') throw new DockerfileError(`empty platform value from expression ${from.platform}`, from.location);
      platform = parsePlatform(spec);
      if (!platform) throw new DockerfileError(`failed to parse platform ${from.platform}: "${spec}": unknown operating system or architecture`, from.location);
    }
    // A stage by name, or by the index of an earlier stage (as COPY --from takes it; BuildKit itself
    // would look for an image named like the number).
    // A named context of the stage's own name replaces the stage, before anything else is looked up.
    const replacedBy = from.name ? this.namedContext(from.name, platform ?? this.opts.targetPlatform) : undefined;
    if (replacedBy) {
      const d = this.newState({
        stage, baseName, name: from.name, stageName: from.name, location: from.location, platform, instructions: [],
        unregistered: false, cmdTotal: 0, replacedBy, onBuildDone: true, outline: this.metaOutline.forStage(used),
      });
      this.byName.set(from.name, d);
      return;
    }
    const base = this.byName.get(baseName.toLowerCase()) ?? (/^\d+$/.test(baseName) && Number(baseName) < index ? this.states[Number(baseName)] : undefined);
    const counted = stage.instructions.filter((i) => ['add', 'copy', 'run', 'workdir'].includes(i.kind)).length;
    const d = this.newState({
      stage, baseName, name: from.name, stageName: from.name || `stage-${index}`, location: from.location,
      platform, base, instructions: stage.instructions, unregistered: false,
      cmdTotal: counted + (baseName !== SCRATCH && !base ? 1 : 0), outline: this.metaOutline.forStage(used),
    });
    if (from.name) this.byName.set(from.name, d);
  }

  /** UndefinedArgInFrom: FROM words may use only declared global ARGs (and the automatic ones). */
  private lintFromArgs(word: string, from: FromInstruction) {
    let m;
    try {
      m = this.lex.processWordWithMatches(word, this.globalArgs);
    } catch {
      return undefined;
    }
    const keys = [...new Set([...this.declaredMetaArgs, ...this.globalArgs.keys()])];
    for (const arg of m.unmatched) {
      if (keys.includes(arg)) continue;
      this.linter.run('UndefinedArgInFrom', from.location, from.comments, arg, suggest(arg, keys, true));
    }
    return m;
  }

  private newState(init: Pick<DispatchState, 'baseName' | 'name' | 'stageName' | 'location' | 'instructions' | 'unregistered' | 'cmdTotal'> & Partial<DispatchState>): DispatchState {
    const d: DispatchState = {
      deps: new Set(), sources: new Map(), mountSources: new Map(), dispatched: false, buildArgs: [], cmdIndex: 0, onBuildDone: false, ...init,
    };
    this.states.push(d);
    return d;
  }

  private resolveTarget(): DispatchState {
    if (!this.opts.target) return this.states[this.states.length - 1];
    const target = this.byName.get(this.opts.target.toLowerCase());
    if (!target) {
      const names = this.states.map((d) => d.name).filter(Boolean);
      throw new DockerfileError(withSuggestion(`target stage "${this.opts.target}" could not be found`, this.opts.target, names, true), undefined, undefined, 'TARGET_NOT_FOUND');
    }
    return target;
  }

  /** Links COPY --from to the stage (by name or index) or image it names. */
  private findSources(d: DispatchState, instructions: Instruction[]): boolean {
    let added = false;
    for (const inst of instructions) {
      if (inst.kind === 'run') {
        for (const raw of inst.mounts) {
          const from = mountFrom(raw);
          if (!from || d.mountSources.has(from)) continue;
          const src = this.sourceState(from, inst.location);
          d.mountSources.set(from, src);
          d.deps.add(src);
          added = true;
        }
      }
      if (inst.kind !== 'copy' || !inst.from) continue;
      const src = this.sourceState(inst.from, inst.location);
      d.sources.set(inst, src);
      d.deps.add(src);
      added = true;
    }
    return added;
  }

  /** The stage (by name or index) or image (a new unregistered state) that `--from` names. */
  private sourceState(from: string, location: InstructionLocation): DispatchState {
    if (this.expand(from, EnvList.empty(), location) !== from) {
      throw new DockerfileError('variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround', location);
    }
    if (/^-?\d+$/.test(from)) {
      const src = this.states[Number(from)];
      if (!src || Number(from) < 0) throw new DockerfileError(`invalid stage index ${from}`, location);
      return src;
    }
    return this.byName.get(from.toLowerCase()) ?? this.newState({
      baseName: from, name: '', stageName: '', location, instructions: [], unregistered: true, cmdTotal: 0,
    });
  }

  /** Resolves base images of reachable stages (only those), then ONBUILD triggers, which may add stages. */
  private async resolveReachable(target: DispatchState): Promise<Set<DispatchState>> {
    for (;;) {
      const reachable = reachableFrom(target);
      await Promise.all([...reachable].filter((d) => !d.base && !d.resolved).map((d) => this.resolveBase(d)));
      let added = false;
      for (const d of reachable) if (this.initOnBuild(d)) added = true;
      if (!added) return reachable;
    }
  }

  /** The named context `name` stands for on `platform`, if any (`scratch` and `context` never are). */
  private namedContext(name: string, platform: Platform): NamedContext | undefined {
    const all = this.opts.namedContexts;
    if (!all || /^(scratch|context)$/i.test(name)) return undefined;
    const key = familiarContextName(name);
    return all[`${key}::${formatPlatform(platform)}`] ?? all[key];
  }

  /** A stage replaced by a named context, or an image named by --from only: ready as it is, nothing to dispatch. */
  private settle(d: DispatchState): void {
    if (!d.unregistered && !d.replacedBy) return;
    const resolved = d.resolved!;
    d.state = { digest: resolved.digest ?? (resolved.scratch ? this.scratch() : this.imageSource(d)), env: EnvList.empty(), dir: '/', user: '' };
    if (d.replacedBy) d.image = cloneImage(resolved.config);
    d.dispatched = true;
  }

  private async resolveBase(d: DispatchState): Promise<void> {
    const platform = d.platform ?? this.opts.targetPlatform;
    const named = d.replacedBy ?? (d.baseName === SCRATCH ? undefined : this.namedContext(d.baseName, platform));
    if (named?.type === 'local') {
      const excludes = named.excludes ?? [];
      const digest = this.addToDefinition(
        { kind: 'source', source: { type: 'local', name: named.name, ...(excludes.length > 0 ? { excludePatterns: excludes } : {}) } },
        { description: `[context ${d.replacedBy ? d.name : familiarContextName(d.baseName)}] load from client` },
      );
      // A directory has no image config: the stage starts from an empty one, as in BuildKit.
      d.resolved = { ref: named.name, config: emptyImage(platform), scratch: false, digest };
      d.platform = platform;
      return this.settle(d);
    }
    if (named?.type === 'definition') {
      // Its ops keep their digests, so steps it shares with this build (or that another build of the same
      // run solves) are the same ops.
      d.resolved = { ref: named.name, config: cloneImage(named.config), scratch: false, digest: this.addDefinition(named.definition) };
      d.platform = platform;
      return this.settle(d);
    }
    const imageRef = named ? named.ref : d.baseName;
    if (imageRef === SCRATCH) {
      d.resolved = { ref: SCRATCH, config: emptyImage(this.opts.targetPlatform), scratch: true };
      d.platform = d.replacedBy || named ? platform : this.opts.targetPlatform;
      return this.settle(d);
    }
    let result: { ref: string; config: ImageConfigFile };
    try {
      result = await this.opts.resolver.resolveImageConfig(imageRef, platform);
    } catch (e) {
      if (e instanceof BuilderError) {
        // A mistyped stage or common image name gets a hint (BuildKit's commonImageNames).
        const options = [...this.states.map((s) => s.name).filter(Boolean), ...COMMON_IMAGES.flatMap((n) => [n, `${n}:latest`])];
        throw new DockerfileError(withSuggestion(`${imageRef}: ${e.message}`, imageRef, options, true), d.location, { cause: e }, e.code);
      }
      throw e;
    }
    const config = cloneImage(result.config);
    delete config.created;
    // An image without layers (every history entry empty) is scratch.
    const scratch = !!config.rootfs && config.rootfs.diff_ids.length === 0 && (config.history ?? []).every((h) => h.empty_layer);
    d.resolved = { ref: result.ref, config, scratch };
    d.platform = platform;
    this.settle(d);
  }

  /** Prepends the base's ONBUILD triggers to a stage; true when they add COPY --from dependencies. */
  private initOnBuild(d: DispatchState): boolean {
    if (d.onBuildDone || d.unregistered) return false;
    d.onBuildDone = true;
    const triggers = d.base
      ? d.base.instructions.flatMap((i) => (i.kind === 'onbuild' ? [i.expression] : []))
      : d.resolved?.config.config.OnBuild ?? [];
    // Triggers run once, in the stage that builds on the image; they are not passed on.
    if (d.resolved) delete d.resolved.config.config.OnBuild;
    if (triggers.length === 0) return false;
    const commands = triggers.map((trigger) => {
      try {
        const { nodes } = parseDockerfile(trigger, this.file);
        if (nodes.length !== 1) throw new DockerfileError('onbuild trigger should be a single expression', d.location);
        const inst = parseInstruction(nodes[0], d.location);
        if (inst.kind === 'from') throw new DockerfileError(`FROM isn't allowed as an ONBUILD trigger`, d.location);
        return inst;
      } catch (e) {
        throw e instanceof DockerfileError ? new DockerfileError(e.message, d.location, { cause: e }) : e;
      }
    });
    d.instructions = [...commands, ...d.instructions];
    d.onBuild = new Set(commands);
    d.cmdTotal += commands.length;
    return this.findSources(d, commands);
  }

  // ------------------------------------------------------------------ dispatch

  private dispatchStage(d: DispatchState): void {
    d.dispatched = true;
    let image: StageImage;
    let state: LLBState;
    if (d.base) {
      const base = d.base;
      const users = (this.imageUsers.get(base) ?? 1) - 1;
      this.imageUsers.set(base, users);
      state = { ...base.state! };
      if (users === 0 && base !== this.target) {
        image = base.image!;
        base.image = undefined;
        base.state!.env = EnvList.empty();
      } else {
        image = cloneImage(base.image!);
      }
      delete image.config.OnBuild;
      d.platform = base.platform;
      d.buildArgs = [...base.buildArgs];
    } else {
      const resolved = d.resolved!;
      image = cloneImage(resolved.config);
      state = { digest: resolved.digest ?? (resolved.scratch ? this.scratch() : this.imageSource(d)), env: EnvList.empty(), dir: '/', user: '' };
    }
    image.config.Env ??= [];
    if (!image.config.Env.some((e) => e.startsWith('PATH='))) image.config.Env.push(`PATH=${DEFAULT_PATH}`);
    for (const e of image.config.Env) {
      const eq = e.indexOf('=');
      state.env = eq < 0 ? state.env.set(e, '') : state.env.set(e.slice(0, eq), e.slice(eq + 1));
    }
    if (image.config.WorkingDir) state.dir = normalizeWorkdir(image.config.WorkingDir, image.config.WorkingDir);
    if (image.config.User) state.user = image.config.User;
    d.image = image;
    d.state = state;
    d.usedOnce = new Map();
    for (const inst of d.instructions) {
      this.lintTarget = { d, inst };
      d.cmdIsOnBuild = d.onBuild?.has(inst) ?? false;
      try {
        this.dispatch(d, inst);
      } catch (e) {
        throw withLocation(e, inst.location);
      } finally {
        this.lintTarget = undefined;
      }
    }
    d.envIndex = undefined;
    if (!this.imageUsers.get(d) && d !== this.target) {
      d.image = undefined;
      // Its environment too (COPY --from and mounts need only the digest): earlier versions go with it.
      d.state!.env = EnvList.empty();
    }
  }

  private dispatch(d: DispatchState, inst: Instruction): void {
    const image = d.image!;
    const x = (word: string) => this.expand(word, d.state!.env, inst.location);
    switch (inst.kind) {
      case 'env': {
        // Every word sees the environment from before the instruction: `ENV A=1 B=$A` takes the old A.
        const before = d.state!.env;
        const pairs = inst.pairs.map((p) => {
          if (p.noDelim) this.linter.run('LegacyKeyValueFormat', inst.location, inst.comments, inst.keyword);
          const key = this.expand(p.key, before, inst.location);
          const value = this.expand(p.value, before, inst.location);
          if (looksLikeSecret(key)) this.linter.run('SecretsUsedInArgOrEnv', inst.location, inst.comments, 'ENV', key);
          return [key, value] as const;
        });
        const parts: string[] = [];
        for (const [key, value] of pairs) {
          d.state!.env = d.state!.env.set(key, value);
          addEnv(d, key, value);
          parts.push(`${key}=${value}`);
        }
        return this.history(d, `ENV ${parts.join(' ')}`, false);
      }
      case 'label': {
        image.config.Labels ??= {};
        const parts: string[] = [];
        for (const p of inst.pairs) {
          if (p.noDelim) this.linter.run('LegacyKeyValueFormat', inst.location, inst.comments, inst.keyword);
          const key = x(p.key);
          const value = x(p.value);
          image.config.Labels[key] = value;
          parts.push(`${key}=${value}`);
        }
        return this.history(d, `LABEL ${parts.join(' ')}`, false);
      }
      case 'arg':
        return this.dispatchArg(d, inst);
      case 'run':
        return this.dispatchRun(d, inst);
      case 'copy':
      case 'add':
        return this.dispatchCopy(d, inst);
      case 'workdir': {
        const wd = x(inst.path);
        if (!d.workdirSet && !wd.startsWith('/')) this.linter.run('WorkdirRelativePath', inst.location, inst.comments, wd);
        d.workdirSet = true;
        return this.dispatchWorkdir(d, wd, inst);
      }
      case 'user': {
        const user = x(inst.user);
        d.state!.user = user;
        image.config.User = user;
        return this.history(d, `USER ${user}`, false);
      }
      case 'volume': {
        const volumes = inst.volumes.map(x);
        if (volumes.includes('')) throw new DockerfileError('VOLUME specified can not be an empty string');
        image.config.Volumes ??= {};
        for (const v of volumes) image.config.Volumes[v] = {};
        return this.history(d, `VOLUME ${goList(volumes)}`, false);
      }
      case 'expose': {
        for (const p of inst.ports) x(p); // for UndefinedVar
        const raw = inst.ports.flatMap((p) => this.lex.processWords(p, d.state!.env));
        for (const r of raw) {
          const parts = r.split(':');
          const proto = parts[parts.length - 1].split('/')[1] ?? '';
          if (proto !== proto.toLowerCase()) this.linter.run('ExposeProtoCasing', inst.location, inst.comments, r);
          if (parts.length > 1) this.linter.run('ExposeInvalidFormat', inst.location, inst.comments, r);
        }
        const ports = raw.flatMap(parsePort);
        image.config.ExposedPorts ??= {};
        for (const p of ports) image.config.ExposedPorts[p] = {};
        return this.history(d, `EXPOSE ${goList(ports)}`, false);
      }
      case 'cmd':
      case 'entrypoint': {
        this.lintUsedOnce(d, inst);
        if (inst.prependShell && !image.config.Shell?.length) this.linter.run('JSONArgsRecommended', inst.location, inst.comments, inst.keyword);
        const args = inst.prependShell ? withShell(image, inst.cmdLine) : inst.cmdLine;
        if (inst.kind === 'cmd') {
          image.config.Cmd = args;
          image.config.ArgsEscaped = true;
          d.cmdSet = true;
        } else {
          image.config.Entrypoint = args;
          // ENTRYPOINT resets a CMD inherited from the base, not one set in this stage.
          if (!d.cmdSet) delete image.config.Cmd;
        }
        return this.history(d, `${inst.kind.toUpperCase()} ${goQuoteList(args)}`, false);
      }
      case 'shell':
        image.config.Shell = inst.shell;
        return this.history(d, `SHELL ${goList(inst.shell)}`, false);
      case 'stopsignal': {
        const signal = x(inst.signal);
        if (!isSignal(signal)) throw new DockerfileError(`Invalid signal: ${signal}`);
        image.config.StopSignal = signal;
        return this.history(d, `STOPSIGNAL ${signal}`, false);
      }
      case 'maintainer':
        image.author = inst.maintainer;
        return this.history(d, `MAINTAINER ${inst.maintainer}`, false);
      case 'healthcheck': {
        this.lintUsedOnce(d, inst);
        const h = inst.health;
        // Zero durations and retries are left out, as Go's omitempty does.
        const fields = { Interval: h.interval, Timeout: h.timeout, StartPeriod: h.startPeriod, StartInterval: h.startInterval, Retries: h.retries };
        image.config.Healthcheck = { Test: h.test, ...Object.fromEntries(Object.entries(fields).filter(([, v]) => v)) };
        const dur = (n?: number) => formatGoDuration(n ?? 0);
        return this.history(d, `HEALTHCHECK {Test:${goList(h.test)} Interval:${dur(h.interval)} Timeout:${dur(h.timeout)} StartPeriod:${dur(h.startPeriod)} StartInterval:${dur(h.startInterval)} Retries:${h.retries ?? 0}}`, false);
      }
      case 'onbuild':
        image.config.OnBuild = [...(image.config.OnBuild ?? []), inst.expression];
        return;
    }
  }

  /** MultipleInstructionsDisallowed: reported where the earlier, ignored, one is. */
  private lintUsedOnce(d: DispatchState, inst: Instruction): void {
    const prev = d.usedOnce?.get(inst.kind);
    if (prev) this.linter.run('MultipleInstructionsDisallowed', prev.location, prev.comments, inst.keyword);
    d.usedOnce?.set(inst.kind, inst);
  }

  /** ARG: the --build-arg value, else the default, else the global value; visible to later RUNs as env. */
  private dispatchArg(d: DispatchState, inst: ArgInstruction): void {
    const buildArgs = this.opts.buildArgs ?? {};
    const parts: string[] = [];
    for (const arg of inst.args) {
      if (looksLikeSecret(arg.key)) this.linter.run('SecretsUsedInArgOrEnv', inst.location, inst.comments, 'ARG', arg.key);
      let value: string | undefined;
      // A bare ARG of a global one (or an automatic one) takes its value and, in the outline, its description.
      let inherited = false;
      if (arg.key in buildArgs) value = buildArgs[arg.key];
      else if (arg.value !== undefined) value = this.expand(arg.value, d.state!.env, inst.location);
      else inherited = (value = this.globalArgs.get(arg.key)) !== undefined;
      if (value !== undefined) d.state!.env = d.state!.env.set(arg.key, value);
      if (!inherited) d.outline?.args.set(arg.key, { name: arg.key, value, description: docComment(inst.comments, arg.key), location: inst.location, deps: new Set() });
      d.outline?.used.add(arg.key);
      d.buildArgs.push({ key: arg.key, value });
      parts.push(value === undefined ? arg.key : `${arg.key}=${value}`);
    }
    this.history(d, `ARG ${parts.join(' ')}`, false);
  }

  private dispatchRun(d: DispatchState, inst: RunInstruction): void {
    const state = d.state!;
    const security = runSecurity(inst.security);
    const network = runNetwork(inst.network, this.opts.network ?? 'sandbox');
    const { inputs, mounts, secretEnv, env } = this.runMounts(d, inst);
    let args = inst.cmdLine;
    let name = inst.code;
    let script: Digest | undefined;
    if (inst.files.length > 0) {
      if (args.length !== 1 || !inst.prependShell) throw new DockerfileError(`parsing produced an invalid run command: ${goList(args)}`);
      if (parseHeredoc(args[0])) {
        const doc = inst.files[0];
        const data = doc.chomp ? doc.content.replace(/^\t+/gm, '') : doc.content;
        if (data.startsWith('#!')) {
          // A script with its own interpreter: a file mounted read-only at /dev/pipes/ and run from there.
          const file: FileOp = { kind: 'file', inputs: [], base: -1, actions: [{ action: 'mkfile', path: `/${doc.name}`, data: Buffer.from(data).toString('base64'), mode: 0o755 }] };
          script = this.addToDefinition(file, { description: '[internal] preparing inline document', stage: this.stageLabel(d) });
          args = [path.posix.join('/dev/pipes/', doc.name)];
        } else {
          // A lone heredoc is run by the shell as the command itself.
          args = [data];
        }
        const lines = doc.content.trim().split(/\r?\n/);
        name += ` (${lines[0]}${lines.length > 1 ? '...' : ''})`;
      } else {
        args = [args[0] + inst.files.map((f) => `\n${f.content}${f.name}`).join('')];
      }
    }
    if (inst.prependShell) args = withShell(d.image!, args);
    if (script) {
      mounts.push({ input: inputs.push({ digest: script }) - 1, dest: '/dev/pipes/', selector: '/', readonly: true });
    }
    const { extraHosts, shmSize, ulimits, cgroupParent } = this.opts;
    // --shm-size is a tmpfs mount over the default /dev/shm, as BuildKit adds it.
    if (shmSize) mounts.push({ input: -1, dest: '/dev/shm', type: 'tmpfs', tmpfs: { size: shmSize } });
    const op: ExecOp = {
      kind: 'exec',
      inputs,
      meta: {
        args, env, cwd: state.dir, user: state.user, network, ...this.proxyEnv(),
        ...(secretEnv.length ? { secretEnv } : {}), ...(security ? { security } : {}),
        ...(extraHosts?.length ? { extraHosts } : {}), ...(ulimits?.length ? { ulimit: ulimits } : {}),
        ...(cgroupParent ? { cgroupParent } : {}),
      },
      mounts,
      platform: d.platform!,
    };
    const rawLex = new ShellLex(this.lex.escapeToken, { rawQuotes: true, skipUnsetEnv: true, budget: this.budget });
    const description = this.prefix(d, uppercaseCmd(processCmdEnv(rawLex, name, state.env)));
    state.digest = this.add(op, d, inst.location, description, true);
    this.history(d, `RUN ${runCommandString(args, d.buildArgs, state.env)} # buildkit`, true);
  }

  /** The exec op's inputs and mounts for `RUN --mount` flags (BuildKit's dispatchRunMounts). */
  private runMounts(d: DispatchState, inst: RunInstruction) {
    const state = d.state!;
    const inputs: { digest: Digest }[] = [{ digest: state.digest }];
    const mounts: ExecMount[] = [{ input: 0, dest: '/' }];
    const secretEnv: NonNullable<ExecMeta['secretEnv']> = [];
    let env = state.env.toArray();
    let sshCount = 0;
    const inputOf = (digest: Digest) => {
      const i = inputs.findIndex((x) => x.digest === digest);
      return i >= 0 ? i : inputs.push({ digest }) - 1;
    };
    for (const raw of inst.mounts) {
      let spec: MountSpec;
      try {
        spec = parseMount(raw, (w) => this.expand(w, state.env, inst.location));
      } catch (e) {
        throw withLocation(e, inst.location);
      }
      const fail = (msg: string) => new DockerfileError(msg, inst.location);
      const targetOf = (t: string) => {
        const abs = t.startsWith('/') ? path.posix.normalize(t) : path.posix.join('/', state.dir, t);
        if (abs === '/') throw fail(`invalid mount target "${t}"`);
        return abs.length > 1 ? abs.replace(/\/+$/, '') : abs;
      };
      const ids = (m: MountSpec, mode: number) => ({ mode: m.mode ?? mode, uid: m.uid ?? 0, gid: m.gid ?? 0 });
      switch (spec.type) {
        case 'secret': {
          const id = spec.id || spec.source || path.posix.basename(spec.target);
          d.outline?.secret(id, spec.required, inst.location);
          if (spec.env !== undefined) secretEnv.push({ name: spec.env, id, optional: !spec.required });
          if (spec.target || spec.env === undefined) {
            const target = targetOf(spec.target || `/run/secrets/${path.posix.basename(id)}`);
            mounts.push({ input: -1, dest: target, type: 'secret', readonly: true, secret: { id, optional: !spec.required, ...ids(spec, 0o400) } });
          }
          break;
        }
        case 'ssh': {
          const id = spec.id || 'default';
          d.outline?.sshAgent(id, spec.required, inst.location);
          let target = spec.target;
          if (!target) {
            target = `/run/buildkit/ssh_agent.${sshCount}`;
            if (sshCount === 0) env = [...env.filter((e) => !e.startsWith('SSH_AUTH_SOCK=')), `SSH_AUTH_SOCK=${target}`];
          }
          sshCount++;
          mounts.push({ input: -1, dest: targetOf(target), type: 'ssh', readonly: true, ssh: { id, optional: !spec.required, ...ids(spec, 0o600) } });
          break;
        }
        case 'tmpfs':
          if (!spec.target) throw fail('mount target is required');
          mounts.push({ input: -1, dest: targetOf(spec.target), type: 'tmpfs', tmpfs: spec.size !== undefined ? { size: spec.size } : {} });
          break;
        case 'bind':
        case 'cache': {
          if (!spec.target) throw fail('mount target is required');
          const target = targetOf(spec.target);
          const from = spec.from ? d.mountSources.get(spec.from) : undefined;
          if (from && !from.dispatched) {
            throw fail(`cannot mount from stage "${spec.from}", it needs to be defined before current stage "${d.stageName || d.name}"`);
          }
          const selector = path.posix.join('/', spec.source);
          if (spec.type === 'bind') {
            const digest = from ? from.state!.digest : this.context();
            mounts.push({ input: inputOf(digest), dest: target, selector, readonly: spec.readonly });
          } else {
            const cache = { id: spec.id || spec.target, sharing: spec.sharing!, ...(spec.mode !== undefined ? { mode: spec.mode } : {}),
              ...(spec.uid !== undefined ? { uid: spec.uid } : {}), ...(spec.gid !== undefined ? { gid: spec.gid } : {}) };
            mounts.push({ input: from ? inputOf(from.state!.digest) : -1, dest: target, ...(from ? { selector } : {}), readonly: spec.readonly, type: 'cache', cache });
          }
          break;
        }
      }
    }
    return { inputs, mounts, secretEnv, env };
  }

  /** CopyIgnoredFile: a context source the .dockerignore excludes (only without `!` exceptions, as BuildKit). */
  private lintIgnored(src: string, inst: CopyInstruction | AddInstruction): void {
    const patterns = this.opts.contextExcludes ?? [];
    if (patterns.length === 0) return;
    const matcher = new PatternMatcher(patterns);
    if (matcher.hasExclusions) return;
    let clean = path.posix.normalize(src.replace(/\/+$/, '') || '/');
    if (clean.length > 1) clean = clean.replace(/^\/+/, '');
    if (clean === '.' || clean === '/') {
      if (!patterns.some((p) => ['*', '**', '**/*'].includes(p))) return;
    }
    let ignored = false;
    try {
      ignored = matcher.matches(clean);
    } catch {
      return;
    }
    if (ignored) this.linter.run('CopyIgnoredFile', inst.location, inst.comments, inst.kind === 'add' ? 'Add' : 'Copy', clean);
  }

  /** The predefined proxy args (HTTP_PROXY, ...; any case) given as --build-arg, for RUN's environment only. */
  private proxyEnv(): { proxyEnv?: string[] } {
    const buildArgs = this.opts.buildArgs ?? {};
    const values = new Map<string, string>();
    for (const k of Object.keys(buildArgs).sort()) {
      const name = PROXY_ARGS.find((p) => p === k.toLowerCase());
      if (name) values.set(name, buildArgs[k]);
    }
    const env = PROXY_ARGS.flatMap((p) => (values.get(p) ? [`${p.toUpperCase()}=${values.get(p)}`, `${p}=${values.get(p)}`] : []));
    return env.length > 0 ? { proxyEnv: env } : {};
  }

  private dispatchCopy(d: DispatchState, inst: CopyInstruction | AddInstruction): void {
    const state = d.state!;
    const isAdd = inst.kind === 'add';
    const x = (word: string) => this.expand(word, state.env, inst.location);
    const sources = inst.sources.map(x);
    const destPath = x(inst.dest);
    const chown = x(inst.chown);
    const chmod = x(inst.chmod);
    const parents = inst.kind === 'copy' && inst.parents;
    const dest = pathRelativeToWorkingDir(state.dir, destPath);
    const chmodOpt = parseChmod(chmod);
    const from = inst.kind === 'copy' ? d.sources.get(inst) : undefined;
    if (from && !from.dispatched) {
      throw new DockerfileError(`cannot copy from stage "${(inst as CopyInstruction).from}", it needs to be defined before current stage "${d.stageName || d.name}"`);
    }
    const checksum = isAdd ? x(inst.checksum) : '';
    if (checksum) {
      if (sources.length !== 1) throw new DockerfileError('checksum can\'t be specified for multiple sources');
      if (!isHTTPSource(sources[0]) && !isGitSource(sources[0])) throw new DockerfileError('checksum requires HTTP(S) or Git sources');
      // For git, a commit id or a prefix of one.
      if (isGitSource(sources[0])) {
        if (!/^[0-9a-f]{1,64}$/.test(checksum)) throw new DockerfileError(`invalid checksum ${checksum}: expected a git commit id (or a prefix of one)`);
      } else if (!/^sha256:[a-f0-9]{64}$/.test(checksum)) {
        throw new DockerfileError(/^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/.test(checksum)
          ? `unsupported checksum ${checksum}: expected sha256:<64 hex digits>` : 'invalid checksum digest format');
      }
    }

    // Without --chown, files keep their owners: root for the context (the local source makes them so).
    const owner: ChownOpt | undefined = chown ? parseChown(chown) : undefined;
    const link = inst.link && !chmod;
    // A linked copy runs on scratch, where no /etc/passwd names anyone: BuildKit cannot build it either
    // (`invalid user index: -1` from its solver; since moby/buildkit#7134 an error of the Dockerfile).
    if (link && owner && (typeof owner.user === 'string' || typeof owner.group === 'string')) {
      throw new DockerfileError(`${isAdd ? 'ADD' : 'COPY'} --link --chown=${chown}: user and group names cannot be resolved in a linked copy, which does not see the image's /etc/passwd; use numeric ids`);
    }
    // inputs[0] is the stage itself unless --link copies onto scratch.
    const inputs: Digest[] = link ? [] : [state.digest];
    const inputIndex = (digest: Digest) => {
      const i = inputs.indexOf(digest);
      return i >= 0 ? i : inputs.push(digest) - 1;
    };
    const several = sources.length + inst.inlineSources.length > 1;
    const excludes = inst.excludes.map(x);
    const base = (sourceInput: number, src: string): CopyAction => ({
      action: 'copy', sourceInput, src, dest,
      ...chmodOpt,
      followSymlinks: false, dirCopyContents: false,
      ...(several ? { destIsDir: true } : {}),
      createDestPath: true, allowWildcard: false, allowEmptyWildcard: false,
      ...(excludes.length > 0 ? { excludePatterns: excludes } : {}),
    });

    const actions: FileAction[] = [];
    const parts = [isAdd ? 'ADD' : 'COPY'];
    if (parents) parts.push('--parents');
    if (chown) parts.push(`--chown=${chown}`);
    if (chmod) parts.push(`--chmod=${chmod}`);
    const name = uppercaseCmd(processCmdEnv(this.lex, inst.code, state.env));
    const description = this.prefix(d, name);
    for (let src of sources) {
      parts.push(src);
      if (isGitSource(src)) {
        if (!isAdd) throw new DockerfileError('source can\'t be a git ref for COPY');
        // The repository checked out at the commit its ref names, copied as a directory's contents.
        let g;
        try {
          g = parseGitAddress(src);
        } catch (e) {
          throw new DockerfileError((e as Error).message);
        }
        const git: Op = { kind: 'source', source: {
          type: 'git', remote: g.remote, ...(g.ref ? { ref: g.ref } : {}), ...(g.subdir ? { subdir: g.subdir } : {}),
          ...(inst.kind === 'add' && inst.keepGitDir ? { keepGitDir: true } : {}),
          ...(checksum || g.checksum ? { checksum: checksum || g.checksum } : {}),
        } };
        const digest = this.add(git, d, inst.location, description, true);
        actions.push({
          ...base(inputIndex(digest), '/'),
          ...(owner ? { owner } : {}),
          followSymlinks: true, dirCopyContents: true, allowWildcard: true,
        });
        continue;
      }
      if (isHTTPSource(src)) {
        if (!isAdd) throw new DockerfileError('source can\'t be a URL for COPY');
        // Remote files are not unpacked unless --unpack says so; the file's name is the URL path's last part.
        let filename = '__unnamed__';
        try {
          const b = path.posix.basename(new URL(src).pathname);
          if (b !== '' && b !== '.' && b !== '/') filename = decodeURIComponent(b);
        } catch { /* keep the default name */ }
        const http: Op = { kind: 'source', source: { type: 'http', url: src, filename, ...(checksum ? { checksum } : {}) } };
        // Cacheable: under --no-cache the URL is downloaded anew, not answered by a conditional request.
        const digest = this.add(http, d, inst.location, description, true);
        actions.push({
          ...base(inputIndex(digest), `/${filename}`),
          ...(owner ? { owner } : {}),
          ...(inst.kind === 'add' && inst.unpack ? { attemptUnpack: true } : {}),
        });
        continue;
      }
      if (!from) this.lintIgnored(src, inst);
      const sourceDigest = from ? from.state!.digest : this.context();
      let include: string[] | undefined;
      let required: string[] | undefined;
      if (parents) {
        // `--parents` keeps the path below an optional `/./` pivot: copy the pivot with the path as a pattern.
        const pivot = src.indexOf('/./');
        const pattern = pivot < 0 ? src : src.slice(pivot + 3);
        src = pivot < 0 ? '/' : src.slice(0, pivot);
        const clean = path.posix.join('/', pattern);
        include = [clean.slice(1)];
        if (!hasWildcards(src) && !hasWildcards(pattern)) required = [path.posix.join('/', src, pattern)];
      }
      actions.push({
        ...base(inputIndex(sourceDigest), path.posix.join('/', src)),
        ...(owner ? { owner } : {}),
        followSymlinks: true, dirCopyContents: true, allowWildcard: true,
        ...(include ? { includePatterns: include } : {}),
        ...(required ? { requiredPaths: required } : {}),
        ...(isAdd && inst.unpack !== false ? { attemptUnpack: true } : {}),
      });
    }
    for (const inline of inst.inlineSources) {
      parts.push(`<<${inline.path}`);
      const rawLex = new ShellLex('\\', { skipProcessQuotes: true, budget: this.budget });
      const data = inline.expand ? this.expandWith(rawLex, inline.data, state.env, inst.location) : inline.data;
      const file: FileOp = {
        kind: 'file', inputs: [], base: -1,
        actions: [{ action: 'mkfile', path: path.posix.join('/', inline.path), data: Buffer.from(data).toString('base64'), mode: 0o644 }],
      };
      const digest = this.addToDefinition(file, { description: '[internal] preparing inline document', stage: this.stageLabel(d) });
      actions.push({ ...base(inputIndex(digest), path.posix.join('/', inline.path)), ...(owner ? { owner } : {}) });
    }
    parts.push(destPath);

    const op: FileOp = { kind: 'file', inputs: inputs.map((digest) => ({ digest })), base: link ? -1 : 0, actions };
    let digest = this.add(op, d, inst.location, description, true);
    if (link) {
      // COPY --link: the copied files are a layer of their own, stacked on the stage.
      const linkName = description.slice(0, description.length - name.length) + `LINK ${name}`;
      digest = this.add({ kind: 'merge', inputs: [{ digest: state.digest }, { digest }] }, d, inst.location, linkName, true);
    }
    state.digest = digest;
    this.history(d, `${parts.join(' ')} # buildkit`, true);
  }

  private dispatchWorkdir(d: DispatchState, wdArg: string, inst: Instruction): void {
    const image = d.image!;
    const state = d.state!;
    const wd = normalizeWorkdir(image.config.WorkingDir ?? '', wdArg);
    image.config.WorkingDir = wd;
    state.dir = wd;
    let withLayer = false;
    if (wd !== '/') {
      const op: FileOp = {
        kind: 'file', inputs: [{ digest: state.digest }], base: 0,
        actions: [{ action: 'mkdir', path: wd, mode: 0o755, makeParents: true, ...(image.config.User ? { owner: parseChown(image.config.User) } : {}) }],
      };
      const description = this.prefix(d, uppercaseCmd(processCmdEnv(this.lex, inst.code, state.env)));
      state.digest = this.add(op, d, inst.location, description, true);
      withLayer = true;
    }
    this.history(d, `WORKDIR ${wd}`, withLayer);
  }

  // ------------------------------------------------------------------ helpers

  private finalImage(target: DispatchState): StageImage {
    const image = cloneImage(target.image!);
    if (this.opts.labels && Object.keys(this.opts.labels).length > 0) {
      image.config.Labels = { ...(image.config.Labels ?? {}), ...this.opts.labels };
    }
    const tp = this.opts.targetPlatform;
    const sameOsArch = image.os === tp.os && image.architecture === tp.architecture;
    image.os = tp.os;
    image.architecture = tp.architecture;
    if (tp.variant || !sameOsArch) {
      if (tp.variant) image.variant = tp.variant;
      else delete image.variant;
    }
    delete image.rootfs;
    return image;
  }

  private history(d: DispatchState, createdBy: string, withLayer: boolean): void {
    const image = d.image!;
    // In place (each stage has its own copy): a new array per instruction is quadratic in their number.
    (image.history ??= []).push({ created_by: createdBy, comment: HISTORY_COMMENT, ...(withLayer ? {} : { empty_layer: true }) });
  }

  /** `[stage-1 2/5] ` before a step's name, as BuildKit numbers the steps of each stage. */
  private prefix(d: DispatchState, name: string): string {
    const platform = this.opts.platformPrefix && d.platform ? `${formatPlatform(d.platform)} ` : '';
    if (d.cmdTotal === 0) return platform ? `[${platform.trim()}] ${name}` : name;
    d.cmdIndex++;
    const width = Math.floor(1 + Math.log10(d.cmdTotal));
    const onBuild = d.cmdIsOnBuild ? 'ONBUILD ' : '';
    return `[${platform}${d.stageName ? `${d.stageName} ` : ''}${String(d.cmdIndex).padStart(width)}/${d.cmdTotal}] ${onBuild}${name}`;
  }

  private stageLabel(d: DispatchState): string | undefined {
    return d.name || d.stageName || undefined;
  }

  /** Adds an op, within the bound on the whole graph's size (limits.ts). */
  /** Adds another definition's ops (inputs before the ops that use them); returns its root. */
  private addDefinition(def: Definition): Digest {
    const done = new Set<Digest>();
    const stack: Digest[] = [def.root];
    while (stack.length > 0) {
      const digest = stack[stack.length - 1];
      if (done.has(digest)) { stack.pop(); continue; }
      const op = def.ops[digest];
      const pending = opInputs(op).filter((i) => !done.has(i.digest));
      if (pending.length > 0) { for (const i of pending) stack.push(i.digest); continue; }
      stack.pop();
      done.add(digest);
      this.addToDefinition(op, def.metadata[digest]);
    }
    return def.root;
  }

  private addToDefinition(op: Op, meta?: OpMetadata): Digest {
    const digest = this.builder.add(op, meta);
    if (this.builder.size > MAX_DEFINITION_BYTES) {
      throw new DockerfileError(`the build graph is larger than the limit of ${formatSize(MAX_DEFINITION_BYTES)} (large values in many steps' environment or arguments?)`, undefined, undefined, 'DOCKERFILE_LIMIT');
    }
    return digest;
  }

  private add(op: Op, d: DispatchState, location: InstructionLocation, description: string, cacheable: boolean): Digest {
    const meta: OpMetadata = { description, location: { ...location }, stage: this.stageLabel(d) };
    if (cacheable && this.opts.noCache) meta.ignoreCache = true;
    return this.addToDefinition(op, meta);
  }

  private imageSource(d: DispatchState): Digest {
    const ref = d.resolved!.ref;
    const op: Op = { kind: 'source', source: { type: 'image', ref, platform: d.platform! } };
    return this.add(op, d, d.location, this.prefix(d, `FROM ${ref}`), false);
  }

  private scratch(): Digest {
    this.scratchDigest ??= this.addToDefinition({ kind: 'source', source: { type: 'scratch' } }, { description: 'FROM scratch' });
    return this.scratchDigest;
  }

  private context(): Digest {
    const excludes = this.opts.contextExcludes ?? [];
    this.contextDigest ??= this.addToDefinition(
      { kind: 'source', source: { type: 'local', name: 'context', ...(excludes.length > 0 ? { excludePatterns: excludes } : {}) } },
      { description: '[internal] load build context' },
    );
    return this.contextDigest;
  }

  private expand(word: string, env: EnvGetter, location: InstructionLocation): string {
    return this.expandWith(this.lex, word, env, location);
  }

  private expandWith(lex: ShellLex, word: string, env: EnvGetter, location: InstructionLocation): string {
    let m;
    try {
      m = lex.processWordWithMatches(word, env);
    } catch (e) {
      throw withLocation(e, location);
    }
    const target = this.lintTarget;
    if (target && m.unmatched.size > 0) {
      const buildArgs = new Set(target.d.buildArgs.map((a) => a.key));
      const env = target.d.state?.env;
      // Listing thousands of names for every undefined variable would be quadratic; suggest skips them anyway.
      const options = env && env.size <= MAX_SUGGEST_OPTIONS ? env.keys() : [];
      for (const name of m.unmatched) {
        if (buildArgs.has(name)) continue;
        this.linter.run('UndefinedVar', target.inst.location, target.inst.comments, name, suggest(name, options, true));
      }
    }
    return m.result;
  }
}

export function dockerfileToLLB(opts: ConvertOptions): Promise<ConvertResult> {
  return new Converter(opts).convert();
}

function reachableFrom(target: DispatchState): Set<DispatchState> {
  const out = new Set<DispatchState>();
  // Depth first, base then dependencies, on an explicit stack (pushed in reverse to keep that order).
  const stack = [target];
  for (let d = stack.pop(); d !== undefined; d = stack.pop()) {
    if (out.has(d)) continue;
    out.add(d);
    const next = [...(d.base ? [d.base] : []), ...d.deps];
    for (let i = next.length - 1; i >= 0; i--) stack.push(next[i]);
  }
  return out;
}

function checkCycles(states: DispatchState[]): void {
  const done = new Set<DispatchState>();
  const onPath = new Set<DispatchState>();
  const cycle = (d: DispatchState) => new DockerfileError(`circular dependency detected on stage: ${d.stageName || d.name}`, d.location);
  // Depth first on an explicit stack: a chain of thousands of stages is as deep as it is long.
  for (const root of states) {
    if (done.has(root)) continue;
    onPath.add(root);
    const stack = [{ d: root, deps: root.deps.values() }];
    while (stack.length > 0) {
      const top = stack[stack.length - 1];
      const next = top.deps.next();
      if (next.done) {
        stack.pop();
        onPath.delete(top.d);
        done.add(top.d);
        continue;
      }
      const dep = next.value;
      if (onPath.has(dep)) throw cycle(dep);
      if (done.has(dep)) continue;
      onPath.add(dep);
      stack.push({ d: dep, deps: dep.deps.values() });
    }
  }
}

/** Sets a variable in the stage's image config, in place, through an index by name (a scan per ENV was quadratic). */
function addEnv(d: DispatchState, key: string, value: string): void {
  const env = (d.image!.config.Env ??= []);
  if (!d.envIndex) {
    d.envIndex = new Map();
    env.forEach((e, i) => d.envIndex!.set(e.includes('=') ? e.slice(0, e.indexOf('=')) : e, i));
  }
  const i = d.envIndex.get(key);
  if (i !== undefined) env[i] = `${key}=${value}`;
  else d.envIndex.set(key, env.push(`${key}=${value}`) - 1);
}

function withShell(image: StageImage, args: string[]): string[] {
  const shell = image.config.Shell?.length ? image.config.Shell : DEFAULT_SHELL;
  return [...shell, args.join(' ')];
}

/** Joins a relative path to the parent; absolute paths are kept as written (BuildKit's NormalizePath). */
function normalizePath(parent: string, p: string, keepSlash: boolean): string {
  const abs = (s: string) => s.startsWith('/');
  let dir = parent || '/';
  if (!abs(dir)) dir = path.posix.join('/', dir);
  let out = p === '' ? dir : p;
  if (!abs(out)) out = path.posix.join(dir, out);
  if (keepSlash) {
    if (p.endsWith('/') && !out.endsWith('/')) out += '/';
    else if (p.endsWith('/.')) out = `${out === '/' ? '' : out}/.`;
  }
  return out;
}

function normalizeWorkdir(current: string, wd: string): string {
  return normalizePath(current, wd, false);
}

function pathRelativeToWorkingDir(dir: string, p: string): string {
  if (p.startsWith('/')) return normalizePath('/', p, true);
  // "" and "." mean the working directory itself, as a directory.
  return normalizePath(dir, p === '.' || p === '' ? './' : p, true);
}

/**
 * `user[:group]` as BuildKit's llb.WithUser reads it: split at the first `:`; a part that is `root` or a
 * 32-bit integer is an id (kept as its uint32, as the LLB field is), an empty part is id 0, anything else
 * a name the worker looks up. So `--chown=1000:` means 1000:0, and `--chown=:staff` user 0.
 */
function parseChown(spec: string): ChownOpt {
  const colon = spec.indexOf(':');
  const part = (s: string): string | number => {
    if (s === 'root' || s === '') return 0;
    if (!/^[+-]?[0-9]+$/.test(s)) return s;
    const n = Number(s);
    return n >= -(2 ** 31) && n < 2 ** 31 ? n >>> 0 : s;
  };
  return colon < 0 ? { user: part(spec) } : { user: part(spec.slice(0, colon)), group: part(spec.slice(colon + 1)) };
}

/** `--chmod`: octal bits, or a symbolic mode the worker applies to each entry's own mode. */
function parseChmod(chmod: string): { mode: number } | { modeStr: string } | Record<string, never> {
  if (chmod === '') return {};
  if (/^[0-7]+$/.test(chmod) && parseInt(chmod, 8) <= 0o7777) return { mode: parseInt(chmod, 8) };
  try {
    parseSymbolicMode(chmod);
  } catch (e) {
    throw new DockerfileError((e as Error).message);
  }
  return { modeStr: chmod };
}

function hasWildcards(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '\\') i++;
    else if (s[i] === '*' || s[i] === '?' || s[i] === '[') return true;
  }
  return false;
}

/** A git remote as BuildKit's ParseGitRef recognizes it (`github.com/...` without a scheme stays local). */
function isGitSource(src: string): boolean {
  return isGitAddress(src);
}

function isHTTPSource(src: string): boolean {
  return /^https?:\/\//.test(src) && !isGitSource(src);
}

function runNetwork(flag: string, buildDefault: NetworkMode): NetworkMode {
  // BuildKit's default is its sandbox network (here it shares the host's, see the executor) unless the build
  // sets another (`--network`); an explicit `host` needs the network.host entitlement.
  if (flag === '' || flag === 'default') return buildDefault;
  if (flag === 'sandbox') return 'sandbox';
  if (flag === 'host') return 'host';
  if (flag === 'none') return 'none';
  throw new DockerfileError(`unsupported network mode "${flag}"`);
}

function runSecurity(flag: string): 'insecure' | undefined {
  if (flag === '' || flag === 'sandbox') return undefined;
  if (flag === 'insecure') return 'insecure';
  throw new DockerfileError(`unsupported security mode "${flag}"`);
}

function uppercaseCmd(s: string): string {
  const sp = s.indexOf(' ');
  return sp < 0 ? s.toUpperCase() : s.slice(0, sp).toUpperCase() + s.slice(sp);
}

function processCmdEnv(lex: ShellLex, cmd: string, env: EnvGetter): string {
  try {
    return lex.processWord(cmd, env);
  } catch {
    return cmd;
  }
}

/** RUN's history text: build args in use are shown before the command as `|N K=V ...`. */
function runCommandString(args: string[], buildArgs: ArgDef[], env: EnvGetter): string {
  const entries = new Map<string, string>();
  for (const arg of buildArgs) entries.set(arg.key, `${arg.key}=${env.get(arg.key) ?? arg.value ?? ''}`);
  const prefix = entries.size > 0 ? [`|${entries.size}`, ...entries.values()] : [];
  return [...prefix, ...args].join(' ');
}

/** `[ip:][host:]port[-end][/proto]` -> `port/proto` entries. */
function parsePort(raw: string): string[] {
  const parts = raw.split(':');
  const container = parts[parts.length - 1];
  const [port, proto = 'tcp'] = container.split('/', 2);
  if (port === '') throw new DockerfileError(`invalid port: "${raw}": no port specified: ${container}<empty>`);
  const p = proto.toLowerCase() || 'tcp';
  if (!['tcp', 'udp', 'sctp'].includes(p)) throw new DockerfileError(`invalid port: "${raw}": invalid proto: ${proto}`);
  const [start, end = start] = port.split('-', 2);
  const num = (s: string) => {
    if (!/^\d+$/.test(s) || Number(s) > 65535) throw new DockerfileError(`invalid containerPort: ${port}`);
    return Number(s);
  };
  const a = num(start);
  const b = num(end);
  if (b < a) throw new DockerfileError(`invalid containerPort: ${port}`);
  return Array.from({ length: b - a + 1 }, (_, i) => `${a + i}/${p}`);
}

const SIGNALS = new Set([
  'ABRT', 'ALRM', 'BUS', 'CHLD', 'CLD', 'CONT', 'FPE', 'HUP', 'ILL', 'INT', 'IO', 'IOT', 'KILL', 'PIPE', 'POLL', 'PROF', 'PWR',
  'QUIT', 'SEGV', 'STKFLT', 'STOP', 'SYS', 'TERM', 'TRAP', 'TSTP', 'TTIN', 'TTOU', 'URG', 'USR1', 'USR2', 'VTALRM', 'WINCH', 'XCPU', 'XFSZ',
]);

/** A signal name (`SIGTERM`, `TERM`, `RTMIN+3`) or number, as Docker's ParseSignal accepts. */
function isSignal(s: string): boolean {
  if (/^\d+$/.test(s)) return Number(s) > 0 && Number(s) <= 64;
  const name = s.toUpperCase().replace(/^SIG/, '');
  return SIGNALS.has(name) || /^RTMIN(\+\d+)?$|^RTMAX(-\d+)?$/.test(name);
}

/** Whether a FROM name is an image reference Docker accepts (distribution's reference grammar, roughly). */
function isImageReference(name: string): boolean {
  if (name === '' || name === SCRATCH) return name === SCRATCH;
  const component = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
  const domain = '(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?/|localhost(?::[0-9]+)?/|\\[[0-9a-fA-F:]+\\](?::[0-9]+)?/)';
  const re = new RegExp(`^(?:${domain})?${component}(?:/${component})*(?::[\\w][\\w.-]{0,127})?(?:@[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,})?$`);
  return re.test(name);
}
