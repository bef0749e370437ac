// AST nodes -> typed instructions, grouped into stages (a FROM and what follows it); ARGs before the
// first FROM are the global (meta) args. Flags are checked here as BuildKit's BFlags does; word expansion
// happens later, at dispatch, where the environment is known.
import { DockerfileError, withLocation } from './errors.js';
import { parseDockerfile, parseHeredoc, type Heredoc, type Node, type ParseWarning } from './parser.js';
import { parseGoDuration } from './gofmt.js';
import { withSuggestion } from '../../src/util/suggest.js';

export interface InstructionLocation {
  file: string;
  startLine: number;
  endLine: number;
}

interface Base {
  /** The keyword as written. */
  keyword: string;
  /** The instruction's source, continuations joined and trimmed (BuildKit's `String()`). */
  code: string;
  location: InstructionLocation;
  /** Comment lines right above the instruction (a `# check=...` there configures the checks for it). */
  comments: string[];
}

export interface KeyValue {
  key: string;
  value: string;
  /** Written in the legacy `KEY value` form. */
  noDelim: boolean;
}

export interface ArgDef {
  key: string;
  /** The default; undefined when the ARG only declares the name. */
  value?: string;
}

/** A heredoc source of COPY/ADD (`COPY <<EOF /dest`). */
export interface InlineSource {
  path: string;
  data: string;
  expand: boolean;
}

export interface FromInstruction extends Base {
  kind: 'from';
  baseName: string;
  /** `AS name`, lower-cased; '' when unnamed. */
  name: string;
  /** The name and the `AS` keyword as written, for the casing checks. */
  rawName: string;
  asKeyword: string;
  platform: string;
}

/** RUN, CMD and ENTRYPOINT: a command in shell form (prependShell) or exec form. */
interface CommandLine {
  cmdLine: string[];
  prependShell: boolean;
  files: Heredoc[];
}

export interface RunInstruction extends Base, CommandLine {
  kind: 'run';
  network: string;
  mounts: string[];
  security: string;
}

interface CopyLike extends Base {
  sources: string[];
  inlineSources: InlineSource[];
  dest: string;
  chown: string;
  chmod: string;
  link: boolean;
  excludes: string[];
}

export interface CopyInstruction extends CopyLike {
  kind: 'copy';
  from: string;
  parents: boolean;
}

export interface AddInstruction extends CopyLike {
  kind: 'add';
  checksum: string;
  keepGitDir?: boolean;
  unpack?: boolean;
}

export interface EnvInstruction extends Base { kind: 'env'; pairs: KeyValue[] }
export interface LabelInstruction extends Base { kind: 'label'; pairs: KeyValue[] }
export interface ArgInstruction extends Base { kind: 'arg'; args: ArgDef[] }
export interface WorkdirInstruction extends Base { kind: 'workdir'; path: string }
export interface UserInstruction extends Base { kind: 'user'; user: string }
export interface ExposeInstruction extends Base { kind: 'expose'; ports: string[] }
export interface VolumeInstruction extends Base { kind: 'volume'; volumes: string[] }
export interface CmdInstruction extends Base, CommandLine { kind: 'cmd' }
export interface EntrypointInstruction extends Base, CommandLine { kind: 'entrypoint' }
export interface ShellInstruction extends Base { kind: 'shell'; shell: string[] }
export interface StopSignalInstruction extends Base { kind: 'stopsignal'; signal: string }
export interface MaintainerInstruction extends Base { kind: 'maintainer'; maintainer: string }
export interface OnbuildInstruction extends Base { kind: 'onbuild'; expression: string }

/** Durations in nanoseconds, as the image config stores them. */
export interface HealthConfig {
  test: string[];
  interval?: number;
  timeout?: number;
  startPeriod?: number;
  startInterval?: number;
  retries?: number;
}
export interface HealthcheckInstruction extends Base { kind: 'healthcheck'; health: HealthConfig }

export type Instruction =
  | RunInstruction | CopyInstruction | AddInstruction | EnvInstruction | LabelInstruction | ArgInstruction
  | WorkdirInstruction | UserInstruction | ExposeInstruction | VolumeInstruction | CmdInstruction
  | EntrypointInstruction | ShellInstruction | StopSignalInstruction | MaintainerInstruction
  | OnbuildInstruction | HealthcheckInstruction;

export interface Stage {
  from: FromInstruction;
  instructions: Instruction[];
}

export interface ParsedDockerfile {
  stages: Stage[];
  metaArgs: ArgInstruction[];
  escapeToken: string;
  directives: Record<string, string>;
  /** The parser's warnings (empty continuation lines). */
  warnings: ParseWarning[];
}

/** Thrown while building one instruction; the caller adds its location. */
class InstructionError extends Error {}

type FlagKind = 'bool' | 'string' | 'strings';

/** The flags an instruction accepts, checked against those written (BuildKit's BFlags). */
class Flags {
  private readonly defs = new Map<string, FlagKind>();
  private readonly values = new Map<string, string | string[]>();

  constructor(private readonly args: string[]) {}

  define(name: string, kind: FlagKind): this {
    this.defs.set(name, kind);
    return this;
  }

  parse(): this {
    for (const a of this.args) {
      // `--` ends the flags (POSIX utility syntax).
      if (a === '--') break;
      if (!a.startsWith('--')) throw new InstructionError(`arg should start with -- : ${a}`);
      const eq = a.indexOf('=');
      const flagName = eq < 0 ? a : a.slice(0, eq);
      const value = eq < 0 ? undefined : a.slice(eq + 1);
      const name = flagName.slice(2);
      const kind = this.defs.get(name);
      if (!kind) throw new InstructionError(withSuggestion(`unknown flag: ${flagName}`, name, [...this.defs.keys()], true));
      if (this.values.has(name) && kind !== 'strings') throw new InstructionError(`duplicate flag specified: ${flagName}`);
      if (kind === 'bool') {
        if (value === '') throw new InstructionError(`missing a value on flag: ${flagName}`);
        const v = (value ?? 'true').toLowerCase();
        if (v !== 'true' && v !== 'false') throw new InstructionError(`expecting boolean value for flag ${flagName}, not: ${value}`);
        this.values.set(name, v);
      } else {
        if (value === undefined) throw new InstructionError(`missing a value on flag: ${flagName}`);
        if (kind === 'string') this.values.set(name, value);
        else this.values.set(name, [...((this.values.get(name) as string[] | undefined) ?? []), value]);
      }
    }
    return this;
  }

  string(name: string): string {
    return (this.values.get(name) as string | undefined) ?? '';
  }
  strings(name: string): string[] {
    return (this.values.get(name) as string[] | undefined) ?? [];
  }
  bool(name: string): boolean {
    return this.values.get(name) === 'true';
  }
  /** undefined when the flag was not given. */
  optionalBool(name: string): boolean | undefined {
    return this.values.has(name) ? this.bool(name) : undefined;
  }
}

const INSTRUCTIONS = ['ADD', 'ARG', 'CMD', 'COPY', 'ENTRYPOINT', 'ENV', 'EXPOSE', 'FROM', 'HEALTHCHECK', 'LABEL', 'MAINTAINER',
  'ONBUILD', 'RUN', 'SHELL', 'STOPSIGNAL', 'USER', 'VOLUME', 'WORKDIR'];

const STAGE_NAME = /^[a-z][a-z0-9-_.]*$/;

/** Parses Dockerfile text into stages; throws DockerfileError with the line of the first problem. */
export function parseInstructions(text: string, file = 'Dockerfile'): ParsedDockerfile {
  const { nodes, escapeToken, directives, warnings } = parseDockerfile(text, file);
  const stages: Stage[] = [];
  const metaArgs: ArgInstruction[] = [];
  for (const node of nodes) {
    const location = { file, startLine: node.startLine, endLine: node.endLine };
    let parsed: FromInstruction | Instruction;
    try {
      parsed = parseInstruction(node, location);
    } catch (e) {
      if (e instanceof InstructionError) throw new DockerfileError(e.message, location);
      throw e;
    }
    if (parsed.kind === 'from') {
      stages.push({ from: parsed, instructions: [] });
    } else if (stages.length === 0 && parsed.kind === 'arg') {
      metaArgs.push(parsed);
    } else if (stages.length === 0) {
      throw new DockerfileError('no build stage in current context', location);
    } else {
      stages[stages.length - 1].instructions.push(parsed);
    }
  }
  return { stages, metaArgs, escapeToken, directives, warnings };
}

/** One instruction from its AST node (exported for ONBUILD triggers, parsed when a stage uses them). */
export function parseInstruction(node: Node, location: InstructionLocation): FromInstruction | Instruction {
  try {
    return parseNode(node, location);
  } catch (e) {
    if (e instanceof InstructionError) throw new DockerfileError(e.message, location);
    throw withLocation(e, location);
  }
}

function parseNode(node: Node, location: InstructionLocation): FromInstruction | Instruction {
  const keyword = node.keyword;
  const base = { keyword, code: node.original.trim(), location, comments: node.comments };
  const args = node.child ? [node.child.keyword, ...node.child.args] : node.args;
  const flags = new Flags(node.flags);
  switch (keyword.toLowerCase()) {
    case 'from': {
      flags.define('platform', 'string').parse();
      let name = '';
      if (args.length === 3 && args[1].toLowerCase() === 'as') {
        name = args[2].toLowerCase();
        if (!STAGE_NAME.test(name)) {
          throw new InstructionError(`invalid name for build stage: "${args[2]}", name can't start with a number or contain symbols`);
        }
      } else if (args.length !== 1) {
        throw new InstructionError('FROM requires either one or three arguments');
      }
      return {
        kind: 'from', ...base, baseName: args[0], name, rawName: args.length === 3 ? args[2] : '', asKeyword: args.length === 3 ? args[1] : '',
        platform: flags.string('platform'),
      };
    }
    case 'run': {
      flags.define('mount', 'strings').define('network', 'string').define('security', 'string').parse();
      return {
        kind: 'run', ...base, ...commandLine(node, args, false),
        network: flags.string('network'), mounts: flags.strings('mount'), security: flags.string('security'),
      };
    }
    case 'cmd':
      flags.parse();
      return { kind: 'cmd', ...base, ...commandLine(node, args, false) };
    case 'entrypoint':
      flags.parse();
      return { kind: 'entrypoint', ...base, ...commandLine(node, args, true) };
    case 'copy': {
      if (args.length < 2) throw noDestination('COPY');
      flags.define('chown', 'string').define('from', 'string').define('chmod', 'string').define('link', 'bool')
        .define('exclude', 'strings').define('parents', 'bool').parse();
      return {
        kind: 'copy', ...base, ...sourcesAndDest(node, args, 'COPY'), from: flags.string('from'),
        chown: flags.string('chown'), chmod: flags.string('chmod'), link: flags.bool('link'),
        excludes: flags.strings('exclude'), parents: flags.bool('parents'),
      };
    }
    case 'add': {
      if (args.length < 2) throw noDestination('ADD');
      flags.define('chown', 'string').define('chmod', 'string').define('link', 'bool').define('keep-git-dir', 'bool')
        .define('checksum', 'string').define('unpack', 'bool').define('exclude', 'strings').parse();
      return {
        kind: 'add', ...base, ...sourcesAndDest(node, args, 'ADD'), chown: flags.string('chown'),
        chmod: flags.string('chmod'), link: flags.bool('link'), excludes: flags.strings('exclude'),
        checksum: flags.string('checksum'), keepGitDir: flags.optionalBool('keep-git-dir'), unpack: flags.optionalBool('unpack'),
      };
    }
    case 'env':
      flags.parse();
      return { kind: 'env', ...base, pairs: keyValues(args, 'ENV') };
    case 'label':
      flags.parse();
      return { kind: 'label', ...base, pairs: keyValues(args, 'LABEL') };
    case 'arg': {
      if (args.length < 1) throw atLeastOne('ARG');
      const defs = args.map((a): ArgDef => {
        const eq = a.indexOf('=');
        if (eq < 0) return { key: a };
        if (eq === 0) throw new InstructionError('ARG names can not be blank');
        return { key: a.slice(0, eq), value: a.slice(eq + 1) };
      });
      return { kind: 'arg', ...base, args: defs };
    }
    case 'workdir':
      if (args.length !== 1) throw exactlyOne('WORKDIR');
      flags.parse();
      return { kind: 'workdir', ...base, path: args[0] };
    case 'user':
      if (args.length !== 1) throw exactlyOne('USER');
      flags.parse();
      return { kind: 'user', ...base, user: args[0] };
    case 'expose':
      if (args.length === 0) throw atLeastOne('EXPOSE');
      flags.parse();
      return { kind: 'expose', ...base, ports: [...args].sort() };
    case 'volume': {
      if (args.length === 0) throw atLeastOne('VOLUME');
      flags.parse();
      const volumes = args.map((v) => v.trim());
      if (volumes.includes('')) throw new InstructionError('VOLUME specified can not be an empty string');
      return { kind: 'volume', ...base, volumes };
    }
    case 'shell': {
      flags.parse();
      if (args.length === 0) throw atLeastOne('SHELL');
      if (!node.json) throw new InstructionError(`SHELL requires the arguments to be in JSON form`);
      return { kind: 'shell', ...base, shell: args };
    }
    case 'stopsignal':
      if (args.length !== 1) throw exactlyOne('STOPSIGNAL');
      return { kind: 'stopsignal', ...base, signal: args[0] };
    case 'maintainer':
      if (args.length !== 1) throw exactlyOne('MAINTAINER');
      flags.parse();
      return { kind: 'maintainer', ...base, maintainer: args[0] };
    case 'onbuild': {
      if (args.length === 0) throw atLeastOne('ONBUILD');
      flags.parse();
      const trigger = args[0].trim().toUpperCase();
      if (trigger === 'ONBUILD') throw new InstructionError('Chaining ONBUILD via `ONBUILD ONBUILD` isn\'t allowed');
      if (trigger === 'MAINTAINER' || trigger === 'FROM') throw new InstructionError(`${trigger} isn't allowed as an ONBUILD trigger`);
      let expression = node.original.replace(/^\s*ONBUILD\s*/i, '');
      for (const doc of node.heredocs) expression += `\n${doc.content}${doc.name}`;
      return { kind: 'onbuild', ...base, expression };
    }
    case 'healthcheck':
      return { kind: 'healthcheck', ...base, health: healthConfig(node, args, flags) };
    default:
      throw new InstructionError(withSuggestion(`unknown instruction: ${keyword}`, keyword, INSTRUCTIONS, false));
  }
}

function commandLine(node: Node, args: string[], emptyAsNone: boolean): CommandLine {
  // Shell form is one string: the words joined back with single spaces.
  const cmdLine = args.length === 0 ? [] : node.json ? args : [args.join(' ')];
  return { cmdLine: emptyAsNone && cmdLine.length === 0 ? [] : cmdLine, prependShell: !node.json, files: node.heredocs };
}

function sourcesAndDest(node: Node, args: string[], command: string): { sources: string[]; inlineSources: InlineSource[]; dest: string } {
  const dest = args[args.length - 1];
  if (parseHeredoc(dest)) throw new InstructionError(`${command} cannot accept a heredoc as a destination`);
  const sources: string[] = [];
  const inlineSources: InlineSource[] = [];
  for (const src of args.slice(0, -1)) {
    const doc = parseHeredoc(src);
    if (!doc) {
      sources.push(src);
      continue;
    }
    const found = node.heredocs.find((h) => h.name === doc.name);
    let data = found?.content ?? '';
    if (doc.chomp) data = data.replace(/^\t+/gm, '');
    inlineSources.push({ path: doc.name, data, expand: doc.expand });
  }
  return { sources, inlineSources, dest };
}

function keyValues(args: string[], command: string): KeyValue[] {
  if (args.length === 0) throw atLeastOne(command);
  if (args.length % 3 !== 0) throw new InstructionError(`Bad input to ${command}, too many arguments`);
  const out: KeyValue[] = [];
  for (let i = 0; i < args.length; i += 3) {
    if (args[i] === '') throw new InstructionError(`${command} names can not be blank`);
    out.push({ key: args[i], value: args[i + 1], noDelim: args[i + 2] === '' });
  }
  return out;
}

function healthConfig(node: Node, args: string[], flags: Flags): HealthConfig {
  if (args.length === 0) throw atLeastOne('HEALTHCHECK');
  const type = args[0].toUpperCase();
  const rest = args.slice(1);
  if (type === 'NONE') {
    if (rest.length !== 0) throw new InstructionError('HEALTHCHECK NONE takes no arguments');
    return { test: ['NONE'] };
  }
  flags.define('interval', 'string').define('timeout', 'string').define('start-period', 'string')
    .define('start-interval', 'string').define('retries', 'string').parse();
  if (type !== 'CMD') throw new InstructionError(`Unknown type "${type}" in HEALTHCHECK (try CMD)`);
  const cmd = rest.length === 0 ? [] : node.json ? rest : [rest.join(' ')];
  if (cmd.length === 0) throw new InstructionError('Missing command after HEALTHCHECK CMD');
  const interval = (name: string): number => {
    const s = flags.string(name);
    if (s === '') return 0;
    const d = parseGoDuration(s);
    if (d === undefined) throw new InstructionError(`time: invalid duration "${s}"`);
    if (d !== 0 && d < 1e6) throw new InstructionError(`Interval "${name}" cannot be less than 1ms`);
    return d;
  };
  let retries = 0;
  const r = flags.string('retries');
  if (r !== '') {
    if (!/^[+-]?\d+$/.test(r)) throw new InstructionError(`strconv.ParseInt: parsing "${r}": invalid syntax`);
    retries = Number(r);
    if (retries < 0) throw new InstructionError(`--retries cannot be negative (${retries})`);
  }
  return {
    test: [node.json ? 'CMD' : 'CMD-SHELL', ...cmd],
    interval: interval('interval'), timeout: interval('timeout'), startPeriod: interval('start-period'),
    startInterval: interval('start-interval'), retries,
  };
}

const atLeastOne = (c: string) => new InstructionError(`${c} requires at least one argument`);
const exactlyOne = (c: string) => new InstructionError(`${c} requires exactly one argument`);
const noDestination = (c: string) =>
  new InstructionError(`${c} requires at least two arguments, but only one was provided. Destination could not be determined`);
