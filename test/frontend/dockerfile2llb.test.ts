// Dockerfile -> LLB + image config, with a fixed in-memory image resolver (the frontend's only input
// besides the text): op kinds and contents, stage reachability, history, and errors with line numbers.
import { describe, it, expect } from 'vitest';
import { dockerfileToLLB, type ConvertOptions, type ImageMetaResolver } from '../../frontend/index.js';
import { DockerfileError } from '../../frontend/dockerfile/errors.js';
import type { Definition } from '../../solver/llb/definition.js';
import type { CopyAction, Digest, ExecOp, FileOp, Op, Platform, SourceOp } from '../../solver/llb/ops.js';
import type { ImageConfigFile } from '../../frontend/dockerfile/image.js';

const amd64: Platform = { os: 'linux', architecture: 'amd64' };
const PIN = 'sha256:' + 'a'.repeat(64);

function fakeResolver(configs: Record<string, Partial<ImageConfigFile['config']>> = {}) {
  const calls: { ref: string; platform: Platform }[] = [];
  const resolver: ImageMetaResolver = {
    async resolveImageConfig(ref, platform) {
      calls.push({ ref, platform });
      const name = ref.includes(':') ? ref : `${ref}:latest`;
      return {
        ref: `docker.io/library/${name}@${PIN}`,
        config: {
          architecture: platform.architecture, os: platform.os,
          config: { Env: ['PATH=/usr/bin:/bin'], Cmd: ['sh'], ...(configs[ref] ?? {}) },
          rootfs: { type: 'layers', diff_ids: ['sha256:' + 'b'.repeat(64)] },
          history: [{ created_by: 'base layer' }],
        },
      };
    },
  };
  return { resolver, calls };
}

async function convert(dockerfile: string, extra: Partial<ConvertOptions> = {}) {
  const fake = fakeResolver();
  const result = await dockerfileToLLB({
    dockerfile, targetPlatform: amd64, buildPlatform: amd64, resolver: fake.resolver, ...extra,
  });
  return { ...result, calls: fake.calls };
}

/** The chain of ops from the root back through each op's first input. */
function chain(def: Definition): Op[] {
  const out: Op[] = [];
  let d: Digest | undefined = def.root;
  while (d) {
    const op: Op = def.ops[d];
    out.unshift(op);
    d = op.kind === 'source' ? undefined : op.kind === 'file' && op.base < 0 ? undefined : op.inputs[0]?.digest;
  }
  return out;
}

const descriptions = (def: Definition) => Object.values(def.metadata).map((m) => m.description);

async function rejects(dockerfile: string, extra: Partial<ConvertOptions> = {}): Promise<DockerfileError> {
  const err = await convert(dockerfile, extra).then(() => undefined, (e) => e);
  expect(err).toBeInstanceOf(DockerfileError);
  return err as DockerfileError;
}

describe('dockerfileToLLB: a single stage', () => {
  const dockerfile = [
    'FROM busybox',                       // 1
    'ENV APP=/app GREETING="hello world"', // 2
    'WORKDIR $APP',                       // 3
    'COPY a.txt b.txt ./',                // 4
    'RUN echo $GREETING > out.txt',       // 5
    'USER 1000:1000',                     // 6
    'RUN ["cat", "out.txt"]',             // 7
    'EXPOSE 8080 53/udp',                 // 8
    'VOLUME /data',                       // 9
    'LABEL version=1',                    // 10
    'CMD ["./start"]',                    // 11
  ].join('\n');

  it('builds source -> workdir mkdir -> copy -> exec -> exec', async () => {
    const { definition, calls } = await convert(dockerfile);
    expect(calls).toEqual([{ ref: 'busybox', platform: amd64 }]);
    const ops = chain(definition);
    expect(ops.map((o) => o.kind)).toEqual(['source', 'file', 'file', 'exec', 'exec']);
    expect((ops[0] as SourceOp).source).toEqual({ type: 'image', ref: `docker.io/library/busybox:latest@${PIN}`, platform: amd64 });

    const mkdir = (ops[1] as FileOp).actions[0];
    expect(mkdir).toEqual({ action: 'mkdir', path: '/app', mode: 0o755, makeParents: true });

    const copyOp = ops[2] as FileOp;
    expect(copyOp.base).toBe(0);
    expect(copyOp.inputs).toHaveLength(2);
    const context = definition.ops[copyOp.inputs[1].digest] as SourceOp;
    expect(context.source).toEqual({ type: 'local', name: 'context' });
    const copies = copyOp.actions as CopyAction[];
    expect(copies.map((c) => [c.src, c.dest, c.sourceInput])).toEqual([['/a.txt', '/app/', 1], ['/b.txt', '/app/', 1]]);
    expect(copies[0]).toMatchObject({
      followSymlinks: true, dirCopyContents: true, destIsDir: true, createDestPath: true, allowWildcard: true, allowEmptyWildcard: false,
    });
    // Without --chown the files keep their owners: the local source makes context files root's.
    expect(copies[0].owner).toBeUndefined();

    const run1 = ops[3] as ExecOp;
    expect(run1.meta).toEqual({
      args: ['/bin/sh', '-c', 'echo $GREETING > out.txt'],
      env: ['PATH=/usr/bin:/bin', 'APP=/app', 'GREETING=hello world'],
      cwd: '/app', user: '', network: 'sandbox',
    });
    expect(run1.mounts).toEqual([{ input: 0, dest: '/' }]);
    expect(run1.platform).toEqual(amd64);

    const run2 = ops[4] as ExecOp;
    expect(run2.meta.args).toEqual(['cat', 'out.txt']);
    expect(run2.meta.user).toBe('1000:1000');
  });

  it('names and locates each op like BuildKit', async () => {
    const { definition } = await convert(dockerfile);
    expect(descriptions(definition).sort()).toEqual([
      `[1/5] FROM docker.io/library/busybox:latest@${PIN}`,
      '[2/5] WORKDIR /app',
      '[3/5] COPY a.txt b.txt ./',
      '[4/5] RUN echo hello world > out.txt',
      '[5/5] RUN ["cat", "out.txt"]',
      '[internal] load build context',
    ].sort());
    const run = Object.entries(definition.metadata).find(([, m]) => m.description?.includes('RUN echo'))!;
    expect(run[1].location).toEqual({ file: 'Dockerfile', startLine: 5, endLine: 5 });
  });

  it('produces the image config and BuildKit history', async () => {
    const { image } = await convert(dockerfile);
    expect(image.os).toBe('linux');
    expect(image.architecture).toBe('amd64');
    expect(image.rootfs).toBeUndefined();
    expect(image.config).toMatchObject({
      Env: ['PATH=/usr/bin:/bin', 'APP=/app', 'GREETING=hello world'],
      WorkingDir: '/app', User: '1000:1000', Cmd: ['./start'],
      ExposedPorts: { '53/udp': {}, '8080/tcp': {} }, Volumes: { '/data': {} }, Labels: { version: '1' },
    });
    expect(image.history!.map((h) => [h.created_by, !!h.empty_layer])).toEqual([
      ['base layer', false],
      ['ENV APP=/app GREETING=hello world', true],
      ['WORKDIR /app', false],
      ['COPY a.txt b.txt ./ # buildkit', false],
      ['RUN /bin/sh -c echo $GREETING > out.txt # buildkit', false],
      ['USER 1000:1000', true],
      ['RUN cat out.txt # buildkit', false],
      ['EXPOSE [53/udp 8080/tcp]', true],
      ['VOLUME [/data]', true],
      ['LABEL version=1', true],
      ['CMD ["./start"]', true],
    ]);
    expect(image.history![1].comment).toBe('buildkit.dockerfile.v0');
  });
});

describe('dockerfileToLLB: stages', () => {
  const multi = [
    'ARG BASE=alpine:3',          // 1
    'FROM $BASE AS builder',      // 2
    'RUN make',                   // 3
    'FROM debian AS unused',      // 4
    'RUN exit 42',                // 5
    'FROM builder AS tester',     // 6
    'RUN make test',              // 7
    'FROM scratch',               // 8
    'COPY --from=builder /out /bin/app', // 9
    'COPY --from=0 --chown=app:staff --chmod=0750 /etc/x /etc/',  // 10
    'COPY --from=nginx:1 /etc/nginx /etc/nginx',  // 11
  ].join('\n');

  it('converts only what the target reaches and never resolves unreachable bases', async () => {
    const { definition, calls } = await convert(multi);
    expect(calls.map((c) => c.ref).sort()).toEqual(['alpine:3', 'nginx:1']);
    const all = JSON.stringify(definition.ops);
    expect(all).not.toContain('exit 42');
    expect(all).not.toContain('make test');
    expect(all).toContain('"make"');
  });

  it('copies from stages by name and index, and from images', async () => {
    const { definition, image } = await convert(multi);
    const ops = chain(definition);
    expect(ops.map((o) => o.kind)).toEqual(['source', 'file', 'file', 'file']);
    expect((ops[0] as SourceOp).source).toEqual({ type: 'scratch' });
    const [byName, byIndex, fromImage] = ops.slice(1) as FileOp[];
    const builderRun = definition.ops[byName.inputs[1].digest] as ExecOp;
    expect(builderRun.meta.args).toEqual(['/bin/sh', '-c', 'make']);
    expect(byName.actions[0]).toMatchObject({ src: '/out', dest: '/bin/app', sourceInput: 1 });
    // From a stage: no owner, the worker keeps the source's ids.
    expect((byName.actions[0] as CopyAction).owner).toBeUndefined();
    expect(byIndex.inputs[1]).toEqual(byName.inputs[1]);
    expect(byIndex.actions[0]).toMatchObject({ owner: { user: 'app', group: 'staff' }, mode: 0o750, dest: '/etc/' });
    const nginx = definition.ops[fromImage.inputs[1].digest] as SourceOp;
    expect(nginx.source).toMatchObject({ type: 'image', ref: `docker.io/library/nginx:1@${PIN}` });
    // scratch: empty config from the target platform.
    expect(image.config.Env).toEqual(['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin']);
    expect(image.history!.map((h) => h.created_by)).toEqual([
      'COPY /out /bin/app # buildkit', 'COPY --chown=app:staff --chmod=0750 /etc/x /etc/ # buildkit', 'COPY /etc/nginx /etc/nginx # buildkit',
    ]);
  });

  it('builds a --target stage that continues another stage', async () => {
    const { definition, image, calls } = await convert(multi, { target: 'tester', buildArgs: { BASE: 'busybox' } });
    expect(calls.map((c) => c.ref)).toEqual(['busybox']);
    const ops = chain(definition);
    expect(ops.map((o) => (o.kind === 'exec' ? o.meta.args[2] : o.kind))).toEqual(['source', 'make', 'make test']);
    expect(descriptions(definition)).toContain('[tester 1/1] RUN make test');
    expect(descriptions(definition)).toContain('[builder 2/2] RUN make');
    expect(image.history!.map((h) => h.created_by).slice(-2)).toEqual(['RUN /bin/sh -c make # buildkit', 'RUN /bin/sh -c make test # buildkit']);
  });

  it('puts ARG values in the RUN env and history, and inherits global ARGs', async () => {
    const { definition, image } = await convert([
      'ARG VERSION=1.0',
      'FROM busybox',
      'ARG VERSION',
      'ARG MODE=fast',
      'RUN echo $VERSION $MODE',
    ].join('\n'), { buildArgs: { MODE: 'slow' } });
    const run = chain(definition).pop() as ExecOp;
    expect(run.meta.env).toEqual(['PATH=/usr/bin:/bin', 'VERSION=1.0', 'MODE=slow']);
    expect(image.config.Env).toEqual(['PATH=/usr/bin:/bin']);
    expect(image.history!.map((h) => h.created_by).slice(1)).toEqual([
      'ARG VERSION=1.0', 'ARG MODE=slow', 'RUN |2 VERSION=1.0 MODE=slow /bin/sh -c echo $VERSION $MODE # buildkit',
    ]);
  });

  it('knows TARGETARCH and friends in FROM and stages', async () => {
    const { definition, calls } = await convert([
      'FROM --platform=$BUILDPLATFORM busybox',
      'ARG TARGETARCH',
      'RUN echo $TARGETARCH',
    ].join('\n'), { targetPlatform: { os: 'linux', architecture: 'arm64' } });
    expect(calls[0].platform).toEqual(amd64);
    const run = chain(definition).pop() as ExecOp;
    expect(run.meta.env).toContain('TARGETARCH=arm64');
    expect(run.platform).toEqual(amd64);
  });
});

describe('dockerfileToLLB: config instructions', () => {
  it('SHELL, ENTRYPOINT, shell-form CMD, HEALTHCHECK, STOPSIGNAL and options', async () => {
    const { image, definition } = await convert([
      'FROM busybox',
      'SHELL ["/bin/bash", "-eu", "-c"]',
      'RUN echo hi',
      'ENTRYPOINT ["/entry"]',
      'CMD run --fast',
      'HEALTHCHECK --interval=5s --retries=3 CMD curl -f http://localhost/',
      'STOPSIGNAL SIGINT',
      'WORKDIR rel',
      'USER app',
      'WORKDIR sub',
    ].join('\n'), { labels: { 'org.example': 'x' }, noCache: true });
    const ops = chain(definition);
    const run = ops.find((o) => o.kind === 'exec') as ExecOp;
    expect(run.meta.args).toEqual(['/bin/bash', '-eu', '-c', 'echo hi']);
    const mkdirs = ops.filter((o): o is FileOp => o.kind === 'file').map((o) => o.actions[0]);
    expect(mkdirs).toEqual([
      { action: 'mkdir', path: '/rel', mode: 0o755, makeParents: true },
      { action: 'mkdir', path: '/rel/sub', mode: 0o755, makeParents: true, owner: { user: 'app' } },
    ]);
    expect(image.config).toMatchObject({
      Shell: ['/bin/bash', '-eu', '-c'], Entrypoint: ['/entry'], Cmd: ['/bin/bash', '-eu', '-c', 'run --fast'],
      Healthcheck: { Test: ['CMD-SHELL', 'curl -f http://localhost/'], Interval: 5e9, Retries: 3 },
      StopSignal: 'SIGINT', WorkingDir: '/rel/sub', Labels: { 'org.example': 'x' },
    });
    expect(image.history!.map((h) => h.created_by)).toContain(
      'HEALTHCHECK {Test:[CMD-SHELL curl -f http://localhost/] Interval:5s Timeout:0s StartPeriod:0s StartInterval:0s Retries:3}');
    for (const [d, m] of Object.entries(definition.metadata)) {
      if (definition.ops[d as Digest].kind !== 'source') expect(m.ignoreCache).toBe(true);
    }
  });

  it('ENTRYPOINT drops an inherited CMD', async () => {
    const { image } = await convert('FROM busybox\nENTRYPOINT ["/e"]\n');
    expect(image.config.Cmd).toBeUndefined();
  });

  it('COPY heredocs become inline files; RUN heredocs run in the shell', async () => {
    const { definition } = await convert([
      'FROM busybox',
      'ENV WHO=world',
      'COPY <<EOF /greeting',
      'hello $WHO',
      'EOF',
      'RUN <<EOT',
      'echo one',
      'EOT',
    ].join('\n'));
    const ops = chain(definition);
    const copy = ops[1] as FileOp;
    const inline = definition.ops[copy.inputs[1].digest] as FileOp;
    expect(inline.actions[0]).toMatchObject({ action: 'mkfile', path: '/EOF', mode: 0o644 });
    expect(Buffer.from((inline.actions[0] as { data: string }).data, 'base64').toString()).toBe('hello world\n');
    expect(copy.actions[0]).toMatchObject({ src: '/EOF', dest: '/greeting' });
    expect((ops[2] as ExecOp).meta.args).toEqual(['/bin/sh', '-c', 'echo one\n']);
  });

  it('uses the context excludes', async () => {
    const { definition } = await convert('FROM busybox\nCOPY . /src\n', { contextExcludes: ['*.log', '!keep.log'] });
    const local = Object.values(definition.ops).find((o) => o.kind === 'source' && o.source.type === 'local') as SourceOp;
    expect(local.source).toEqual({ type: 'local', name: 'context', excludePatterns: ['*.log', '!keep.log'] });
  });
});

describe('dockerfileToLLB: errors name the line', () => {
  it('unknown instruction', async () => {
    const e = await rejects('FROM busybox\nFOO bar\n');
    expect(e.message).toBe('unknown instruction: FOO (did you mean FROM?)');
    expect(e.location).toEqual({ file: 'Dockerfile', startLine: 2, endLine: 2 });
  });

  it('unknown flag, with the file name given', async () => {
    const e = await rejects('FROM busybox\n\nCOPY --foo=1 a b\n', { filename: 'app.Dockerfile' });
    expect(e.message).toBe('unknown flag: --foo (did you mean from?)');
    expect(e.location).toMatchObject({ file: 'app.Dockerfile', startLine: 3 });
  });

  it('instructions before FROM', async () => {
    const e = await rejects('RUN echo\n');
    expect(e.message).toBe('no build stage in current context');
    expect(e.location?.startLine).toBe(1);
  });

  it('unknown target', async () => {
    const e = await rejects('FROM busybox AS a\n', { target: 'x' });
    expect(e.message).toBe('target stage "x" could not be found (did you mean a?)');
  });

  it('COPY --from a later stage', async () => {
    const e = await rejects('FROM busybox AS a\nCOPY --from=b /x /x\nFROM busybox AS b\n', { target: 'a' });
    expect(e.message).toMatch(/circular dependency|cannot copy from stage "b"/);
    expect(e.location?.startLine).toBeGreaterThan(0);
  });

  it('bad --chmod and failed expansion', async () => {
    expect((await rejects('FROM busybox\nCOPY --chmod=999 a /\n')).location?.startLine).toBe(2);
    const e = await rejects('FROM busybox\nWORKDIR ${X:?must be set}\n');
    expect(e.message).toContain('X: must be set');
    expect(e.location?.startLine).toBe(2);
  });

  it('continuation lines: the range of the instruction', async () => {
    const e = await rejects('FROM busybox\nRUN --bad \\\n  echo hi\n');
    expect(e.location).toEqual({ file: 'Dockerfile', startLine: 2, endLine: 3 });
  });

  it('resolver failures carry the FROM line', async () => {
    const { BuilderError } = await import('../../src/util/errors.js');
    const err = await dockerfileToLLB({
      dockerfile: '\nFROM nope:1\n', targetPlatform: amd64, buildPlatform: amd64,
      resolver: { resolveImageConfig: async () => { throw new BuilderError('NOT_FOUND', 'not found'); } },
    }).catch((e) => e);
    expect(err).toBeInstanceOf(DockerfileError);
    expect(err.message).toBe('nope:1: not found');
    expect(err.location.startLine).toBe(2);
  });
});

describe('dockerfileToLLB: --chown', () => {
  it('reads user[:group] as BuildKit\'s llb.WithUser: root and 32-bit integers are ids, empty parts 0', async () => {
    const specs = ['app', 'app:staff', '1000', '1000:', ':staff', 'root:root', '+7:007', 'a:b:c', '4294967296', '-1'];
    const { definition } = await convert(`FROM scratch\n${specs.map((c, i) => `COPY --chown=${c} f${i} /\n`).join('')}WORKDIR /w\nUSER app:1\nWORKDIR /x\n`);
    const owners = chain(definition).flatMap((o) => (o.kind === 'file' ? [(o.actions[0] as CopyAction).owner] : []));
    expect(owners).toEqual([
      { user: 'app' }, { user: 'app', group: 'staff' }, { user: 1000 }, { user: 1000, group: 0 }, { user: 0, group: 'staff' },
      { user: 0, group: 0 }, { user: 7, group: 7 }, { user: 'a', group: 'b:c' }, { user: '4294967296' }, { user: 4294967295 },
      undefined, { user: 'app', group: 1 },
    ]);
  });
});

describe('dockerfileToLLB: --link --chown', () => {
  it('refuses names in a linked copy (it runs on scratch, with no /etc/passwd), but takes ids and root', async () => {
    const err = await convert('FROM busybox\nRUN true\nCOPY --link --chown=app:1 f /\n').catch((e: unknown) => e);
    expect(err).toMatchObject({ message: expect.stringMatching(/^COPY --link --chown=app:1: user and group names cannot be resolved in a linked copy/) });
    expect((err as { location?: { startLine: number } }).location?.startLine).toBe(3);
    await expect(convert('FROM busybox\nADD --link --chown=1:staff f /\n')).rejects.toThrow(/^ADD --link --chown=1:staff: /);
    const ok = await convert('FROM busybox\nCOPY --link --chown=root:7 f /\n');
    const copy = Object.values(ok.definition.ops).flatMap((o) => (o.kind === 'file' ? o.actions : []))[0] as CopyAction;
    expect(copy.owner).toEqual({ user: 0, group: 7 });
    // With --chmod the copy is not linked (as BuildKit), so names resolve in the stage.
    await convert('FROM busybox\nCOPY --link --chmod=644 --chown=app f /\n');
  });
});

describe('dockerfileToLLB: ONBUILD step names', () => {
  it('names the steps of a base stage\'s triggers with ONBUILD, in every platform\'s build', async () => {
    const dockerfile = 'FROM busybox AS base\nONBUILD RUN echo hi\nONBUILD WORKDIR /w\nFROM base\nRUN echo mine\n';
    const { definition } = await convert(dockerfile);
    expect(descriptions(definition)).toEqual(expect.arrayContaining([
      '[stage-1 1/3] ONBUILD RUN echo hi', '[stage-1 2/3] ONBUILD WORKDIR /w', '[stage-1 3/3] RUN echo mine',
    ]));
    // The stage that declares the triggers does not run them.
    expect(descriptions(definition).filter((d) => d?.includes('echo hi'))).toHaveLength(1);
    const multi = await convert(dockerfile, { platformPrefix: true });
    expect(descriptions(multi.definition)).toContain('[linux/amd64 stage-1 1/3] ONBUILD RUN echo hi');
  });
});

describe('dockerfileToLLB: base image configs', () => {
  it('accepts a config without a config member and runs its ONBUILD triggers', async () => {
    const resolver: ImageMetaResolver = {
      resolveImageConfig: async (ref) => ref === 'minimal'
        ? { ref: `docker.io/library/minimal:latest@${PIN}`, config: { architecture: 'amd64', os: 'linux' } }
        : {
          ref: `docker.io/library/${ref}:latest@${PIN}`,
          config: { architecture: 'amd64', os: 'linux', config: { Cmd: null, OnBuild: ['RUN echo triggered', 'COPY --from=minimal /x /x'] } },
        },
    };
    const { definition, image } = await dockerfileToLLB({
      dockerfile: 'FROM minimal AS minimal\nFROM withtriggers\nRUN echo mine\n',
      targetPlatform: amd64, buildPlatform: amd64, resolver,
    });
    const ops = chain(definition);
    expect(ops.map((o) => (o.kind === 'exec' ? o.meta.args[2] : o.kind))).toEqual(['source', 'echo triggered', 'file', 'echo mine']);
    expect(image.config.OnBuild).toBeUndefined();
    // As BuildKit's prefixCommand: a trigger's step says ONBUILD after its number.
    expect(descriptions(definition)).toEqual(expect.arrayContaining([
      '[stage-1 2/4] ONBUILD RUN echo triggered', '[stage-1 3/4] ONBUILD COPY --from=minimal /x /x', '[stage-1 4/4] RUN echo mine',
    ]));
    const minimal = await dockerfileToLLB({ dockerfile: 'FROM minimal\n', targetPlatform: amd64, buildPlatform: amd64, resolver });
    expect(minimal.image.config.Env).toEqual(['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin']);
  });
});

describe('named contexts', () => {
  const sources = (def: Definition) => Object.values(def.ops).filter((o): o is SourceOp => o.kind === 'source').map((o) => o.source);

  it('a context of a stage name replaces the stage: its instructions and base are never converted', async () => {
    const { definition, calls } = await convert('FROM golang AS build\nRUN make\nFROM alpine\nCOPY --from=build /out /out\n', {
      namedContexts: { build: { type: 'local', name: 'named-context:build' } },
    });
    expect(calls.map((c) => c.ref)).toEqual(['alpine']);
    expect(Object.values(definition.ops).some((o) => o.kind === 'exec')).toBe(false);
    expect(sources(definition)).toContainEqual({ type: 'local', name: 'named-context:build' });
  });

  it('a context of a base image name replaces the image; the stage still runs on it', async () => {
    const { definition, calls } = await convert('FROM docker.io/library/alpine:latest\nRUN make\n', {
      namedContexts: { alpine: { type: 'image', ref: `busybox@${PIN}` } },
    });
    expect(calls.map((c) => c.ref)).toEqual([`busybox@${PIN}`]);
    expect(Object.values(definition.ops).some((o) => o.kind === 'exec')).toBe(true);
  });

  it('an earlier stage of the base name wins over a context of that name (BuildKit order)', async () => {
    const { calls } = await convert('FROM alpine AS base\nFROM base\nRUN make\n', {
      namedContexts: { alpine: { type: 'image', ref: 'debian' } },
    });
    expect(calls.map((c) => c.ref)).toEqual(['debian']);
  });

  it('COPY --from and RUN --mount=from find contexts; scratch and context are never replaced', async () => {
    const { definition, calls } = await convert('FROM scratch AS a\nCOPY --from=src /a /a\nFROM alpine\nCOPY --from=a /a /a\nRUN --mount=from=tools,target=/t true\n', {
      namedContexts: { src: { type: 'local', name: 'named-context:src' }, tools: { type: 'image', ref: 'busybox' }, scratch: { type: 'image', ref: 'debian' } },
    });
    expect(calls.map((c) => c.ref).sort()).toEqual(['alpine', 'busybox']);
    expect(sources(definition)).toContainEqual({ type: 'local', name: 'named-context:src' });
  });

  it('a platform-qualified context applies to that platform only', async () => {
    const { calls } = await convert('FROM alpine\n', {
      namedContexts: { 'alpine::linux/arm64': { type: 'image', ref: 'arm-only' }, alpine: { type: 'image', ref: 'any' } },
    });
    expect(calls.map((c) => c.ref)).toEqual(['any']);
  });
});

describe('ADD <git>', () => {
  it('is a git source op with ref, subdir, keep-git-dir and checksum, copied as a directory', async () => {
    const { definition } = await convert('FROM scratch\nADD --keep-git-dir=true --checksum=abc123 https://example.invalid/r.git#v1:docs /d\n');
    const git = Object.values(definition.ops).find((o): o is SourceOp => o.kind === 'source' && o.source.type === 'git');
    expect(git?.source).toEqual({ type: 'git', remote: 'https://example.invalid/r.git', ref: 'v1', subdir: 'docs', keepGitDir: true, checksum: 'abc123' });
    const copy = (Object.values(definition.ops).find((o) => o.kind === 'file') as FileOp).actions[0] as CopyAction;
    expect(copy).toMatchObject({ src: '/', dest: '/d', dirCopyContents: true });
  });

  it('COPY of a git address is refused', async () => {
    const err = await rejects('FROM scratch\nCOPY git@example.invalid:r.git /d\n');
    expect(err.message).toContain("source can't be a git ref for COPY");
  });
});
