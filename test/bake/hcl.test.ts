// Bake files' HCL: expressions evaluated on HashiCorp's parser's syntax trees (src/bake/hcl.ts), variables,
// functions, matrix, and the resolution rules (inherits, --set), through the library's resolveBake().
import { describe, it, expect } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { resolveBake, formatBake } from '../../src/client/bake.js';
import { makeContext } from '../helpers/cli.js';

async function resolve(hcl: string, opts: { targets?: string[]; set?: string[]; env?: Record<string, string>; file?: string } = {}) {
  const dir = await makeContext({ [opts.file ?? 'docker-bake.hcl']: hcl });
  return resolveBake({ cwd: dir, targets: opts.targets, set: opts.set, env: opts.env ?? {} });
}

describe('bake HCL expressions', () => {
  it('evaluates templates, operators, conditionals, for expressions, splats, heredocs and escapes', async () => {
    const def = await resolve(`
variable "NAMES" { default = ["a", "b", ""] }
variable "N" { default = 2 }
variable "OBJS" { default = [{ name = "x" }, { name = "y" }] }
LOCAL = "top-\${N}"
target "t" {
  tags = [for n in NAMES : "img/\${n}:\${N * 3 - 1}" if n != ""]
  args = {
    UPPER = join(",", [for k, v in { b = 1, a = 2 } : "\${k}=\${v}"])
    OBJ = jsonencode({ for n in NAMES : n => length(n) if n != "" })
    SPLAT = join("+", OBJS[*].name)
    COND = N >= 2 && !false ? "big" : "small"
    ESC = "q\\"uote \\\\ $\${literal}"
    HERE = <<EOT
line \${N}
EOT
    TOP = LOCAL
    IDX = NAMES[1]
    MOD = N % 2 == 0 ? "even" : "odd"
    NEG = -N + 5
    DIR = "%{ if N > 1 }many%{ else }one%{ endif }: %{ for n in NAMES }<\${n}>%{ endfor }"
  }
}`, { targets: ['t'] });
    const t = def.target.t;
    expect(t.tags).toEqual(['img/a:5', 'img/b:5']);
    expect(t.args).toEqual({
      UPPER: 'a=2,b=1', OBJ: '{"a":1,"b":1}', SPLAT: 'x+y', COND: 'big', ESC: 'q"uote \\ ${literal}', HERE: 'line 2\n',
      TOP: 'top-2', IDX: 'b', MOD: 'even', NEG: '3', DIR: 'many: <a><b><>',
    });
  });

  it('calls user functions (with variadic parameters) and the standard library', async () => {
    const def = await resolve(`
function "tag" {
  params = [repo, tag]
  result = "\${repo}:\${tag}"
}
function "all" {
  params = [sep]
  variadic_params = rest
  result = join(sep, rest)
}
target "t" {
  tags = [tag("app", "v1"), all("-", "x", "y", "z")]
  args = {
    A = upper("abc")
    B = format("%s-%03d", "n", 7)
    C = replace("a.b.c", ".", "/")
    D = regex_replace("v1.2.3", "^v(\\\\d+)\\\\.(\\\\d+).*", "$\${2}-$1")
    E = join(",", distinct(concat(["a"], ["a", "b"])))
    F = trimprefix("refs/tags/v1", "refs/tags/")
    G = coalesce("", "fallback")
    H = lookup({ a = "1" }, "b", "none")
    I = substr("hello", 1, 3)
    J = join(",", formatlist("p-%s", ["x", "y"]))
    K = sha256("x")
    L = join(",", keys(merge({ a = 1 }, { b = 2 })))
    M = contains(["a", "b"], "b")
    O = length(split(",", "a,b,c"))
    P = join(",", range(3))
  }
}`, { targets: ['t'] });
    expect(def.target.t.tags).toEqual(['app:v1', 'x-y-z']);
    expect(def.target.t.args).toEqual({
      A: 'ABC', B: 'n-007', C: 'a/b/c', D: '2-1', E: 'a,b', F: 'v1', G: 'fallback', H: 'none', I: 'ell', J: 'p-x,p-y',
      K: '2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881', L: 'a,b', M: 'true', O: '3', P: '0,1,2',
    });
  });

  it('overrides variables from the environment, typed as their defaults; variables may use variables', async () => {
    const hcl = `
variable "TAG" { default = "latest" }
variable "REPO" { default = "app" }
variable "IMAGE" { default = "\${REPO}:\${TAG}" }
variable "N" { default = 1 }
variable "ON" { default = false }
target "t" {
  tags = [IMAGE]
  args = { N = N + 1, ON = ON ? "on" : "off" }
}`;
    const plain = await resolve(hcl, { targets: ['t'] });
    expect(plain.target.t.tags).toEqual(['app:latest']);
    expect(plain.target.t.args).toEqual({ N: '2', ON: 'off' });
    const env = await resolve(hcl, { targets: ['t'], env: { TAG: 'v2', N: '9', ON: 'true' } });
    expect(env.target.t.tags).toEqual(['app:v2']);
    expect(env.target.t.args).toEqual({ N: '10', ON: 'on' });
    await expect(resolve(hcl, { targets: ['t'], env: { N: 'many' } })).rejects.toThrow(/variable "N": "many" from the environment is not a number/);
    const validated = 'variable "V" {\n  default = "ok"\n  validation {\n    condition = V != ""\n    error_message = "V must not be empty"\n  }\n}\ntarget "t" { tags = [V] }\n';
    expect((await resolve(validated, { targets: ['t'] })).target.t.tags).toEqual(['ok']);
    await expect(resolve(validated, { targets: ['t'], env: { V: '' } })).rejects.toThrow('variable "V": V must not be empty');
    await expect(resolve('variable "A" { default = "${A}" }\ntarget "t" { tags = [A] }\n', { targets: ['t'] })).rejects.toThrow(/refers to itself/);
  });

  it('reads other targets\' attributes (target.NAME.ATTR)', async () => {
    const def = await resolve(`
target "base" {
  tags = ["base:1"]
  args = { V = "2" }
}
target "app" {
  tags = [for t in target.base.tags : "app-\${t}"]
  args = { FROM_BASE = target.base.args.V }
}`, { targets: ['app'] });
    expect(def.target.app.tags).toEqual(['app-base:1']);
    expect(def.target.app.args).toEqual({ FROM_BASE: '2' });
  });

  it('expands a matrix over several axes, with object values', async () => {
    const def = await resolve(`
target "app" {
  name = "app-\${os.name}-\${v}"
  matrix = {
    os = [{ name = "deb", base = "debian" }, { name = "alp", base = "alpine" }]
    v = ["1", "2"]
  }
  args = { BASE = os.base, V = v }
}`, { targets: ['app'] });
    expect(Object.keys(def.target)).toEqual(['app-alp-1', 'app-alp-2', 'app-deb-1', 'app-deb-2']);
    expect(def.target['app-alp-2'].args).toEqual({ BASE: 'alpine', V: '2' });
    expect(def.group.app.targets).toEqual(['app-deb-1', 'app-deb-2', 'app-alp-1', 'app-alp-2']);
  });

  it('resolves groups of groups, inherits chains and --set on parents, and refuses loops', async () => {
    const hcl = `
group "default" { targets = ["all"] }
group "all" { targets = ["b", "c"] }
target "a" {
  args = { X = "a", Y = "a" }
  tags = ["a"]
  secret = ["id=s,src=/a"]
}
target "b" {
  inherits = ["a"]
  args = { Y = "b" }
}
target "c" {
  inherits = ["b"]
  tags = ["c"]
  secret = ["id=s,src=/c", "id=t,env=T"]
}`;
    const def = await resolve(hcl, { set: ['a.args.Z=z', 'c.tags+=c2'] });
    expect(Object.keys(def.target)).toEqual(['b', 'c']);
    expect(def.group).toEqual({ all: { targets: ['b', 'c'] }, default: { targets: ['all'] } });
    expect(def.target.b).toEqual({ context: '.', dockerfile: 'Dockerfile', args: { X: 'a', Y: 'b', Z: 'z' }, tags: ['a'], secret: [{ id: 's', src: '/a' }] });
    expect(def.target.c.tags).toEqual(['c', 'c2']);
    expect(def.target.c.secret).toEqual([{ id: 's', src: '/c' }, { id: 't', env: 'T' }]);
    await expect(resolve('target "a" { inherits = ["b"] }\ntarget "b" { inherits = ["a"] }\n', { targets: ['a'] })).rejects.toThrow(/inherits loop/);
    await expect(resolve('target "a" {}\n', { targets: ['a'], set: ['a.bogus=1'] })).rejects.toThrow(/unknown key: bogus/);
  });

  it('merges files in order: a later file overrides an earlier one', async () => {
    const dir = await makeContext({
      'docker-bake.hcl': 'variable "T" { default = "one" }\ntarget "a" {\n  tags = ["x:${T}"]\n  args = { A = "1" }\n}\n',
      'docker-bake.override.hcl': 'variable "T" { default = "two" }\ntarget "a" {\n  args = { B = "2" }\n}\n',
    });
    const def = await resolveBake({ cwd: dir, targets: ['a'], env: {} });
    expect(def.target.a.tags).toEqual(['x:two']);
    expect(def.target.a.args).toEqual({ A: '1', B: '2' });
    await fs.writeFile(path.join(dir, 'other.hcl'), 'target "a" { tags = ["other"] }\n');
    const only = await resolveBake({ cwd: dir, files: ['other.hcl'], targets: ['a'], env: {} });
    expect(only.target.a.tags).toEqual(['other']);
    // Literal `$${` and `%%{` stay literal; --print escapes them again in args and labels, as buildx does.
    await fs.writeFile(path.join(dir, 'esc.hcl'), 'variable "A" { default = "a" }\ntarget "e" {\n  args = { X = "$${NOT} ${A}", Q = "q\\"x" }\n  tags = ["t$${x}"]\n}\n');
    const esc = await resolveBake({ cwd: dir, files: ['esc.hcl'], targets: ['e'], env: {} });
    expect(esc.target.e.args).toEqual({ X: '${NOT} a', Q: 'q"x' });
    expect(esc.target.e.tags).toEqual(['t${x}']);
    expect(JSON.parse(formatBake(esc)).target.e.args).toEqual({ X: '$${NOT} a', Q: 'q"x' });
    expect(formatBake(only).endsWith('}')).toBe(true);
  });
});
