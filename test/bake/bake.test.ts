// `builder bake`: bake files (HCL, JSON, compose) built as one solve, and `--print` as buildx prints it.
// Builds run the real CLI against the test registry's busybox; `--print` outputs are compared with the
// outputs buildx's documentation shows for the same files (docker/buildx docs/bake-reference.md and
// docs/reference/buildx_bake.md).
import { describe, it, expect, inject, beforeAll } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { runCli, makeContext, tempDir } from '../helpers/cli.js';

const registry = inject('registry');
const base = `${registry}/busybox:1.35`;
let root: string;

beforeAll(async () => {
  root = await tempDir('builder-bake-root-');
});

/** Vertex headers (`#N NAME`) of plain progress output. */
function vertexNames(stderr: string): string[] {
  return [...new Set([...stderr.matchAll(/^#(\d+) (\[.*)$/gm)].map((m) => `${m[1]} ${m[2]}`))].map((s) => s.slice(s.indexOf(' ') + 1));
}

const print = async (dir: string, args: string[], env: Record<string, string> = {}) => {
  const r = await runCli(['bake', '--print', ...args], { cwd: dir, env });
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return r.stdout;
};

describe('bake builds', () => {
  it('runs a stage two targets share once, in one solve, and gives each target its own output', async () => {
    const dir = await makeContext({
      'Dockerfile': [
        'ARG BASE',
        'FROM ${BASE} AS shared',
        // Different on every run: both outputs holding the same value shows it ran once for both.
        'RUN cat /proc/sys/kernel/random/uuid > /shared.txt',
        'FROM shared AS one',
        'RUN echo one > /one.txt',
        'FROM shared AS two',
        'RUN echo two > /two.txt',
        '',
      ].join('\n'),
      'docker-bake.hcl': `
variable "BASE" { default = "${base}" }
group "default" { targets = ["one", "two"] }
target "common" {
  args = { BASE = BASE }
}
target "one" {
  inherits = ["common"]
  target = "one"
  output = ["type=local,dest=out/one"]
}
target "two" {
  inherits = ["common"]
  target = "two"
  output = [{ type = "local", dest = "out/two" }]
}
`,
    });
    const r = await runCli(['bake', '--root', root, '--progress', 'plain'], { cwd: dir });
    expect(r.stderr).not.toMatch(/ERROR/);
    expect(r.code).toBe(0);
    const one = path.join(dir, 'out/one');
    const two = path.join(dir, 'out/two');
    expect(await fs.readFile(path.join(one, 'one.txt'), 'utf8')).toBe('one\n');
    expect(await fs.readFile(path.join(two, 'two.txt'), 'utf8')).toBe('two\n');
    await expect(fs.access(path.join(one, 'two.txt'))).rejects.toThrow();
    await expect(fs.access(path.join(two, 'one.txt'))).rejects.toThrow();
    const shared = await fs.readFile(path.join(one, 'shared.txt'), 'utf8');
    expect(shared).toMatch(/^[0-9a-f-]{36}\n$/);
    expect(await fs.readFile(path.join(two, 'shared.txt'), 'utf8')).toBe(shared);
    // The shared RUN appears once in the progress; each target's own RUN once.
    const names = vertexNames(r.stderr);
    expect(names.filter((n) => n.includes('RUN cat /proc/sys/kernel/random/uuid'))).toHaveLength(1);
    expect(names.filter((n) => n.includes('RUN echo one'))).toHaveLength(1);
    expect(names.filter((n) => n.includes('RUN echo two'))).toHaveLength(1);
    expect([...r.stderr.matchAll(/^#\d+ \[shared 2\/2\] RUN/gm)]).toHaveLength(1);
  });

  it('keeps the same step over two different contexts apart: each runs, each is shown', async () => {
    const dir = await makeContext({
      'Dockerfile': `FROM ${base}\nCOPY f /f\nRUN cat /f\n`,
      'a/f': 'from-a\n',
      'b/f': 'from-b\n',
      'docker-bake.hcl': `
group "default" { targets = ["a", "b"] }
target "a" {
  context = "a"
  dockerfile = "../Dockerfile"
  output = ["type=local,dest=out/a"]
}
target "b" {
  inherits = ["a"]
  context = "b"
  output = ["type=local,dest=out/b"]
}
`,
    });
    const r = await runCli(['bake', '--root', root, '--progress', 'plain'], { cwd: dir });
    expect(r.stderr).not.toMatch(/ERROR/);
    expect(r.code).toBe(0);
    expect(await fs.readFile(path.join(dir, 'out/a/f'), 'utf8')).toBe('from-a\n');
    expect(await fs.readFile(path.join(dir, 'out/b/f'), 'utf8')).toBe('from-b\n');
    const runs = [...r.stderr.matchAll(/^#(\d+) \[3\/3\] RUN cat \/f$/gm)].map((m) => m[1]);
    expect(new Set(runs).size).toBe(2);
    expect(r.stderr).toMatch(/^#\d+ [\d.]+ from-a$/m);
    expect(r.stderr).toMatch(/^#\d+ [\d.]+ from-b$/m);
  });

  it('builds a matrix, with a variable from the environment and --set', async () => {
    const dir = await makeContext({
      'Dockerfile': 'ARG BASE\nFROM ${BASE}\nARG GREETING\nARG WHO\nRUN echo "$GREETING $WHO" > /hello.txt\n',
      'docker-bake.hcl': `
variable "GREETING" { default = "hello" }
target "hello" {
  name = "hello-\${who}"
  matrix = { who = ["alice", "bob"] }
  args = { BASE = "${base}", GREETING = GREETING, WHO = upper(who) }
  output = ["type=local,dest=out/\${who}"]
}
`,
    });
    const r = await runCli(['bake', '--root', root, '--progress', 'plain', 'hello', '--set', 'hello-bob.args.WHO=robert'], { cwd: dir, env: { GREETING: 'hi' } });
    expect(r.stderr).not.toMatch(/ERROR/);
    expect(r.code).toBe(0);
    expect(await fs.readFile(path.join(dir, 'out/alice/hello.txt'), 'utf8')).toBe('hi ALICE\n');
    expect(await fs.readFile(path.join(dir, 'out/bob/hello.txt'), 'utf8')).toBe('hi robert\n');
  });

  it('builds the services of a compose file', async () => {
    const dir = await makeContext({
      'app/Dockerfile': 'ARG BASE\nFROM ${BASE}\nARG MSG\nRUN echo "$MSG" > /msg.txt\n',
      'compose.yaml': [
        'services:',
        '  app:',
        '    image: example/app:${TAG:-dev}',
        '    build:',
        '      context: ./app',
        '      args:',
        `        BASE: ${base}`,
        '        MSG: from compose',
        '      x-bake:',
        '        platforms: [linux/amd64]',
        '        no-cache: false',
        '  db:',
        '    image: postgres',
        '',
      ].join('\n'),
    });
    const printed = JSON.parse(await print(dir, []));
    expect(printed).toEqual({
      group: { default: { targets: ['app'] } },
      target: { app: { context: 'app', dockerfile: 'Dockerfile', args: { BASE: base, MSG: 'from compose' }, tags: ['example/app:dev'], platforms: ['linux/amd64'], 'no-cache': false } },
    });
    const r = await runCli(['bake', '--root', root, '--progress', 'plain', '--set', 'app.output=type=local,dest=out'], { cwd: dir });
    expect(r.stderr).not.toMatch(/ERROR/);
    expect(r.code).toBe(0);
    expect(await fs.readFile(path.join(dir, 'out/msg.txt'), 'utf8')).toBe('from compose\n');
  });

  it('uses another target as a named context (target:NAME), built once for both', async () => {
    const dir = await makeContext({
      'base.Dockerfile': `FROM ${base}\nRUN cat /proc/sys/kernel/random/uuid > /base.txt\n`,
      'app.Dockerfile': 'FROM base\nRUN echo app > /app.txt\n',
      'docker-bake.hcl': `
group "default" { targets = ["app"] }
target "base" {
  dockerfile = "base.Dockerfile"
}
target "app" {
  dockerfile = "app.Dockerfile"
  contexts = { base = "target:base" }
  output = ["type=local,dest=out"]
}
`,
    });
    const printed = JSON.parse(await print(dir, []));
    expect(printed.target.base.output).toEqual([{ type: 'cacheonly' }]);
    expect(printed.target.app.contexts).toEqual({ base: 'target:base' });
    const r = await runCli(['bake', '--root', root, '--progress', 'plain'], { cwd: dir });
    expect(r.stderr).not.toMatch(/ERROR/);
    expect(r.code).toBe(0);
    expect(await fs.readFile(path.join(dir, 'out/app.txt'), 'utf8')).toBe('app\n');
    expect(await fs.readFile(path.join(dir, 'out/base.txt'), 'utf8')).toMatch(/^[0-9a-f-]{36}\n$/);
    expect(vertexNames(r.stderr).filter((n) => n.includes('RUN cat /proc/sys/kernel/random/uuid'))).toHaveLength(1);
    const loop = await makeContext({ 'docker-bake.hcl': 'target "a" {\n  contexts = { x = "target:b" }\n}\ntarget "b" {\n  contexts = { y = "target:a" }\n}\n' });
    const failed = await runCli(['bake', '--print', 'a'], { cwd: loop });
    expect(failed.code).toBe(1);
    expect(failed.stderr.trim()).toMatch(/^ERROR: infinite loop from b to a$/);
  });

  it('--push pushes the target\'s tags; variables from the environment reach the pushed image', async () => {
    const dir = await makeContext({
      'Dockerfile': `FROM ${base}\nARG V\nLABEL v=$V\n`,
      'docker-bake.hcl': `
variable "REG" { default = "" }
variable "V" { default = "1" }
target "default" {
  tags = ["\${REG}/bake/pushed:\${V}"]
  args = { V = V }
}
`,
    });
    const r = await runCli(['bake', '--root', root, '--progress', 'plain', '--push', '--provenance=false', '--metadata-file', 'meta.json'], { cwd: dir, env: { REG: registry, V: '7' } });
    expect(r.stderr).not.toMatch(/ERROR/);
    expect(r.code).toBe(0);
    const meta = JSON.parse(await fs.readFile(path.join(dir, 'meta.json'), 'utf8'));
    expect(meta.default['image.name']).toBe(`${registry}/bake/pushed:7`);
    expect(meta.default['containerimage.digest']).toMatch(/^sha256:[0-9a-f]{64}$/);
    const inspect = await runCli(['imagetools', 'inspect', `${registry}/bake/pushed:7`, '--format', '{{json .Image}}']);
    expect(inspect.code).toBe(0);
    expect(JSON.parse(inspect.stdout).config.Labels).toMatchObject({ v: '7' });
  });

  it('fails with one line for a target that does not exist, a failing target (stopping the others) and a broken file', async () => {
    const dir = await makeContext({ 'docker-bake.hcl': 'target "a" {}\n' });
    const missing = await runCli(['bake', '--root', root, 'nope'], { cwd: dir });
    expect(missing.code).toBe(1);
    expect(missing.stderr.trim()).toBe('ERROR: failed to find target nope');
    const failing = await makeContext({
      'Dockerfile': `FROM ${base} AS one\nRUN sleep 5\nFROM ${base} AS two\nRUN exit 3\n`,
      'docker-bake.hcl': 'group "default" { targets = ["one", "two"] }\ntarget "one" { target = "one" }\ntarget "two" { target = "two" }\n',
    });
    const failed = await runCli(['bake', '--root', root, '--progress', 'plain'], { cwd: failing });
    expect(failed.code).toBe(1);
    expect(failed.stderr.trimEnd().split('\n').pop()).toBe('ERROR: target two: Dockerfile:4: RUN failed: process "/bin/sh -c exit 3" did not complete successfully: exit code: 3');
    // The other target stopped with it (one solve): its RUN, if it had started, was canceled, not waited for.
    const sleeper = /^#(\d+) \[one 2\/2\] RUN sleep 5$/m.exec(failed.stderr)?.[1];
    if (sleeper) expect(failed.stderr).not.toMatch(new RegExp(`^#${sleeper} DONE`, 'm'));
    await fs.writeFile(path.join(dir, 'docker-bake.hcl'), 'target "a" {\n');
    const broken = await runCli(['bake', '--root', root, '--print'], { cwd: dir });
    expect(broken.code).toBe(1);
    expect(broken.stderr.trim().split('\n')).toHaveLength(1);
    expect(broken.stderr).toMatch(/^ERROR: docker-bake\.hcl:/);
  });
});

describe('bake --print', () => {
  it('prints what buildx prints for its reference --print example (docs/reference/buildx_bake.md)', async () => {
    const dir = await makeContext({
      'docker-bake.hcl': 'target "db" {\n  context = "./"\n  tags = ["docker.io/tiborvass/db"]\n}\n',
    });
    expect(await print(dir, ['-f', 'docker-bake.hcl', 'db'])).toBe(`{
  "group": {
    "default": {
      "targets": [
        "db"
      ]
    }
  },
  "target": {
    "db": {
      "context": "./",
      "dockerfile": "Dockerfile",
      "tags": [
        "docker.io/tiborvass/db"
      ]
    }
  }
}
`);
  });

  it('resolves inherits as buildx documents (the last parent wins)', async () => {
    const dir = await makeContext({
      'docker-bake.hcl': `
target "app-dev" {
  args = {
    GO_VERSION = "1.20"
    BUILDX_EXPERIMENTAL = 1
  }
  tags = ["docker.io/username/myapp"]
  dockerfile = "app.Dockerfile"
  labels = {
    "org.opencontainers.image.source" = "https://github.com/username/myapp"
  }
}

target "_release" {
  args = {
    BUILDKIT_CONTEXT_KEEP_GIT_DIR = 1
    BUILDX_EXPERIMENTAL = 0
  }
}

target "app-release" {
  inherits = ["app-dev", "_release"]
  platforms = ["linux/amd64", "linux/arm64"]
}
`,
    });
    expect(await print(dir, ['app-release'])).toBe(`{
  "group": {
    "default": {
      "targets": [
        "app-release"
      ]
    }
  },
  "target": {
    "app-release": {
      "context": ".",
      "dockerfile": "app.Dockerfile",
      "args": {
        "BUILDKIT_CONTEXT_KEEP_GIT_DIR": "1",
        "BUILDX_EXPERIMENTAL": "0",
        "GO_VERSION": "1.20"
      },
      "labels": {
        "org.opencontainers.image.source": "https://github.com/username/myapp"
      },
      "tags": [
        "docker.io/username/myapp"
      ],
      "platforms": [
        "linux/amd64",
        "linux/arm64"
      ]
    }
  }
}
`);
  });

  it('expands a matrix into a group of targets as buildx documents', async () => {
    const dir = await makeContext({
      'docker-bake.hcl': 'target "app" {\n  name = "app-${tgt}"\n  matrix = {\n    tgt = ["foo", "bar"]\n  }\n  target = tgt\n}\n',
    });
    expect(await print(dir, ['app'])).toBe(`{
  "group": {
    "app": {
      "targets": [
        "app-foo",
        "app-bar"
      ]
    },
    "default": {
      "targets": [
        "app"
      ]
    }
  },
  "target": {
    "app-bar": {
      "context": ".",
      "dockerfile": "Dockerfile",
      "target": "bar"
    },
    "app-foo": {
      "context": ".",
      "dockerfile": "Dockerfile",
      "target": "foo"
    }
  }
}
`);
  });

  it('prints an empty default target without a group, as buildx documents', async () => {
    const r = await runCli(['bake', '--print', '-f', '-'], { cwd: await makeContext({}), stdin: 'target "default" {}' });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`{
  "target": {
    "default": {
      "context": ".",
      "dockerfile": "Dockerfile"
    }
  }
}
`);
  });

  it('merges a compose file and a bake file as buildx documents (tags replaced, labels merged)', async () => {
    const tags = await makeContext({
      'compose.yaml': 'services:\n  webapp:\n    build:\n      context: .\n      tags:\n        - bar\n',
      'docker-bake.hcl': 'target "webapp" {\n  tags = ["foo"]\n}\n',
    });
    expect(await print(tags, ['webapp'])).toBe(`{
  "group": {
    "default": {
      "targets": [
        "webapp"
      ]
    }
  },
  "target": {
    "webapp": {
      "context": ".",
      "dockerfile": "Dockerfile",
      "tags": [
        "foo"
      ]
    }
  }
}
`);
    const labels = await makeContext({
      'compose.yaml': 'services:\n  webapp:\n    build:\n      context: .\n      labels:\n        com.example.foo: "foo"\n        com.example.name: "Alice"\n',
      'docker-bake.hcl': 'target "webapp" {\n  labels = {\n    "com.example.bar" = "bar"\n    "com.example.name" = "Bob"\n  }\n}\n',
    });
    // buildx's page lists the labels unsorted; Go's encoder (and so buildx itself) sorts map keys.
    expect(JSON.parse(await print(labels, ['webapp']))).toEqual({
      group: { default: { targets: ['webapp'] } },
      target: { webapp: { context: '.', dockerfile: 'Dockerfile', labels: { 'com.example.foo': 'foo', 'com.example.bar': 'bar', 'com.example.name': 'Bob' } } },
    });
  });

  it('lists targets and groups as buildx does (--list targets)', async () => {
    const dir = await makeContext({
      'docker-bake.hcl': 'group "default" {\n  targets = ["app", "db"]\n}\ntarget "app" {\n  description = "The app"\n}\ntarget "db" {}\ntarget "_hidden" {}\n',
    });
    const r = await runCli(['bake', '--list', 'targets'], { cwd: dir });
    expect(r.code).toBe(0);
    // Go's tabwriter: the widest name ("default", 7) plus 1 is one tab stop.
    expect(r.stdout).toBe('TARGET\tDESCRIPTION\napp\tThe app\ndb\t\ndefault\tapp, db\n');
    const json = await runCli(['bake', '--list', 'type=targets,format=json'], { cwd: dir });
    expect(JSON.parse(json.stdout)).toEqual([{ name: 'app', description: 'The app' }, { name: 'db' }, { name: 'default', description: 'app, db', group: true }]);
  });

  it('takes variables from the environment, functions, --set (with patterns and +=) and JSON files', async () => {
    const dir = await makeContext({
      'docker-bake.json': JSON.stringify({
        variable: { TAG: { default: 'latest' }, N: { default: 1 }, PUSH: { default: false } },
        group: { default: { targets: ['web'] } },
        target: {
          web: {
            tags: ['docker.io/username/webapp:${TAG}'],
            args: { N1: '${N + 1}', PUSHING: '${PUSH ? "yes" : "no"}' },
            'cache-from': ['user/app:cache'],
          },
          api: { inherits: ['web'], tags: ['${join("-", ["api", lower(TAG)])}'] },
        },
      }),
    });
    expect(JSON.parse(await print(dir, [], { TAG: 'V2', N: '41', PUSH: 'true' })).target.web).toEqual({
      context: '.', dockerfile: 'Dockerfile', args: { N1: '42', PUSHING: 'yes' },
      tags: ['docker.io/username/webapp:V2'], 'cache-from': [{ type: 'registry', ref: 'user/app:cache' }],
    });
    expect(JSON.parse(await print(dir, ['--var', 'TAG=fromvar'], { TAG: 'fromenv' })).target.web.tags).toEqual(['docker.io/username/webapp:fromvar']);
    const set = JSON.parse(await print(dir, ['web', 'api', '--set', '*.platform=linux/arm64', '--set', 'api.tags+=extra', '--set', 'web.no-cache=true', '--set', 'web.output=type=local,dest=out']));
    expect(set.target.api.tags).toEqual(['api-latest', 'extra']);
    expect(set.target.api.platforms).toEqual(['linux/arm64']);
    expect(set.target.web.platforms).toEqual(['linux/arm64']);
    expect(set.target.web['no-cache']).toBe(true);
    expect(set.target.web.output).toEqual([{ type: 'local', dest: 'out' }]);
    expect(set.group.default.targets).toEqual(['api', 'web']);
  });
});
