// buildx's everyday flags at the command line: -q, -o type=cacheonly, the attestation flags, --platform checked
// when parsed, unknown flags and commands with a suggestion, build's argument count; and what --push leaves in
// the local image store.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs/promises';
import { lastLine, makeContext, runCli, tempDir } from '../helpers/cli.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { createHash } from 'node:crypto';

const exec = promisify(execFile);
const registry = inject('registry');
const base = `${registry}/busybox:1.35`;

async function meta(file: string): Promise<Record<string, any>> {
  return JSON.parse(await fs.readFile(file, 'utf8'));
}

describe('-q/--quiet', () => {
  let ctx: string;
  let root: string;
  beforeAll(async () => {
    ctx = await makeContext({ Dockerfile: `FROM ${base}\nCOPY hello.txt /\n# a build check warning: quiet hides it\nfrom ${base}\n`, 'hello.txt': 'hi\n' });
    root = await tempDir('builder-root-');
  });

  it('prints only the image id (the config digest) on stdout, nothing on stderr', async () => {
    const out = await tempDir('builder-out-');
    const r = await runCli(['build', '--root', root, '-q', '-t', 'quiet/app:1', '--metadata-file', `${out}/m.json`, ctx]);
    expect(r.code, r.stderr).toBe(0);
    const m = await meta(`${out}/m.json`);
    expect(r.stdout).toBe(`${m['containerimage.config.digest']}\n`);
    expect(r.stderr).toBe('');
    // --progress quiet is -q, as in buildx; --progress none prints nothing at all.
    const p = await runCli(['build', '--root', root, '--progress', 'quiet', '-o', `type=oci,dest=${out}/img.tar`, ctx]);
    expect(p.code, p.stderr).toBe(0);
    expect(p.stdout).toBe(`${m['containerimage.config.digest']}\n`);
    const none = await runCli(['build', '--root', root, '--progress', 'none', '-t', 'quiet/app:1', ctx]);
    expect(none.code, none.stderr).toBe(0);
    expect(none.stdout + none.stderr).toBe('');
    // Without an image (type=local, cacheonly): buildx prints its empty image id, a line of its own.
    for (const o of [`type=local,dest=${out}/fs`, 'type=cacheonly']) {
      const noImage = await runCli(['build', '--root', root, '-q', '-o', o, ctx]);
      expect(noImage.code, noImage.stderr).toBe(0);
      expect(noImage.stdout + noImage.stderr).toBe('\n');
    }
    // Unless the output went to stdout: its bytes stay as they are.
    for (const o of ['type=tar,dest=-', 'type=oci,dest=-']) {
      const tar = await runCli(['build', '--root', root, '-q', '-o', o, ctx]);
      expect(tar.code, tar.stderr).toBe(0);
      expect(tar.stdout.endsWith('\0'.repeat(1024)), o).toBe(true);
    }
    const both = await runCli(['build', '--root', root, '-q', '--progress', 'plain', ctx]);
    expect(both.code).toBe(1);
    expect(both.stderr).toBe('ERROR: progress=plain and quiet cannot be used together\n');
  });

  it('prints the index digest of a multi-platform image and the manifest digest of a pushed one', async () => {
    const out = await tempDir('builder-out-');
    const copyOnly = await makeContext({ Dockerfile: `FROM ${base}\nCOPY hello.txt /\n`, 'hello.txt': 'hi\n' });
    const multi = await runCli(['build', '--root', root, '-q', '--platform', 'linux/amd64,linux/arm64',
      '-o', `type=oci,dest=${out}/multi.tar`, '--metadata-file', `${out}/multi.json`, copyOnly]);
    expect(multi.code, multi.stderr).toBe(0);
    const mm = await meta(`${out}/multi.json`);
    expect(mm['containerimage.descriptor'].mediaType).toMatch(/index|list/);
    expect(multi.stdout).toBe(`${mm['containerimage.digest']}\n`);

    const pushed = await runCli(['build', '--root', root, '-q', '-t', `${registry}/quiet/pushed:1`, '--push', copyOnly]);
    expect(pushed.code, pushed.stderr).toBe(0);
    const digest = (await exec('skopeo', ['inspect', '--tls-verify=false', '--format', '{{.Digest}}', `docker://${registry}/quiet/pushed:1`])).stdout.trim();
    expect(pushed.stdout).toBe(`${digest}\n`);
  });
});

describe('-o type=cacheonly', () => {
  it('builds into the cache, exports nothing, and does not warn about a missing output', async () => {
    const root = await tempDir('builder-root-');
    const ctx = await makeContext({ Dockerfile: `FROM ${base}\nRUN echo cached > /f\n` });
    const r = await runCli(['build', '--root', root, '--progress', 'plain', '-t', 'not/kept:1', '-o', 'type=cacheonly', ctx]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toContain('WARNING');
    expect(r.stderr).toMatch(/RUN echo cached/);
    expect((await runCli(['images', '--root', root])).stdout).not.toContain('not/kept');
    // The step's result is in the cache: the next build reuses it.
    const out = await tempDir('builder-out-');
    const again = await runCli(['build', '--root', root, '--progress', 'plain', '-o', `type=local,dest=${out}`, ctx]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/#\d+ CACHED/);
    expect(await fs.readFile(`${out}/f`, 'utf8')).toBe('cached\n');
    const bad = await runCli(['build', '--root', root, '-o', 'type=cacheonly,dest=x', ctx]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toBe('ERROR: invalid output "type=cacheonly,dest=x": type=cacheonly takes no options\n');
  });
});

describe('attestation flags', () => {
  let ctx: string;
  let root: string;
  beforeAll(async () => {
    ctx = await makeContext({ Dockerfile: 'FROM scratch\nCOPY f /\n', f: 'x\n' });
    root = await tempDir('builder-root-');
  });

  it('accepts them turned off (false, 0, disabled=true) and builds as without them', async () => {
    for (const args of [['--provenance=false', '--sbom=false'], ['--provenance', '0', '--sbom', 'False'], ['--attest', 'type=provenance,disabled=true']]) {
      const out = await tempDir('builder-out-');
      const r = await runCli(['build', '--root', root, '--progress', 'plain', ...args, '-o', `type=local,dest=${out}`, ctx]);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
      expect(await fs.readFile(`${out}/f`, 'utf8')).toBe('x\n');
    }
  });

  it('refuses a malformed attestation in one line, never "Unknown argument"', async () => {
    const cases: [string[], string][] = [
      [['--provenance=mode=full'], 'ERROR: invalid --provenance "mode=full": mode must be min or max, not "full"'],
      [['--provenance=version=v3'], 'ERROR: invalid --provenance "version=v3": version must be v0.2 or v1, not "v3"'],
      [['--attest', 'type=vex'], 'ERROR: invalid --attest "type=vex": unknown attestation type "vex" (valid: provenance, sbom)'],
      [['--attest', 'type=provenance,colour=blue'], 'ERROR: invalid --attest "type=provenance,colour=blue": unknown option "colour" for type=provenance (valid: disabled, mode, version, builder-id, inline-only, filename, reproducible)'],
      [['--attest', 'mode=max'], 'ERROR: invalid --attest "mode=max": attestation type not specified'],
    ];
    for (const [args, line] of cases) {
      const r = await runCli(['build', '--root', root, '--progress', 'quiet', ...args, ctx]);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stderr).toBe(`${line}\n`);
    }
  });

  it('writes those asked for beside a local output, as BuildKit\'s local exporter; not the default provenance', async () => {
    const out = await tempDir('builder-out-');
    const r = await runCli(['build', '--root', root, '--progress', 'plain', '--provenance=mode=max', '--sbom=true', '-o', `type=local,dest=${out}`, ctx]);
    expect(r.code, r.stderr).toBe(0);
    expect(await fs.readFile(`${out}/f`, 'utf8')).toBe('x\n');
    expect((await fs.readdir(out)).sort()).toEqual(['f', 'provenance.json', 'sbom.spdx.json']);
    const prov = JSON.parse(await fs.readFile(`${out}/provenance.json`, 'utf8'));
    expect(prov.predicateType).toBe('https://slsa.dev/provenance/v0.2');
    expect(prov.subject).toEqual([{ name: 'f', digest: { sha256: createHash('sha256').update('x\n').digest('hex') } }]);
    expect(JSON.parse(await fs.readFile(`${out}/sbom.spdx.json`, 'utf8')).predicate.spdxVersion).toBe('SPDX-2.3');
    const plain = await tempDir('builder-out-');
    const d = await runCli(['build', '--root', root, '--progress', 'plain', '-o', `type=local,dest=${plain}`, ctx]);
    expect(d.code, d.stderr).toBe(0);
    expect(await fs.readdir(plain)).toEqual(['f']);
  });
});

describe('usage errors', () => {
  it('--platform is checked when parsed: one line naming the value', async () => {
    const missing = '/nonexistent-context'; // never reached: the flag is refused first
    for (const [value, why] of [['linux/amd65', 'unknown architecture "amd65"'], ['lunix/amd64', 'unknown operating system "lunix"'],
      ['foo', 'unknown operating system or architecture'], ['linux/amd64/v2/x', 'expected os/arch[/variant]'], ['linux/*', '"*" is not a valid component']]) {
      const r = await runCli(['build', '--platform', value, missing]);
      expect(r.code, value).toBe(1);
      expect(r.stderr).toBe(`ERROR: invalid platform "${value}": ${why}\n`);
    }
    const list = await runCli(['build', '--platform', 'linux/amd64,linux/arm64,linux/ppc64x', missing]);
    expect(list.stderr).toBe('ERROR: invalid platform "linux/ppc64x": unknown architecture "ppc64x"\n');
    // Good values (a bare architecture, repeated flags) get past the flag to the context check.
    const good = await runCli(['build', '--platform', 'arm64', '--platform', 'linux/arm/v7,local', missing]);
    expect(good.stderr).toBe(`ERROR: unable to prepare context: path "${missing}" not found\n`);
  });

  it('an unknown flag or command is named, with the nearest one when close', async () => {
    const cases: [string[], string][] = [
      [['build', '--nocache', '.'], 'ERROR: unknown flag: --nocache (did you mean --no-cache?)'],
      [['build', '--platfrom', 'linux/amd64', '.'], 'ERROR: unknown flag: --platfrom (did you mean --platform?)'],
      [['build', '--squash', '.'], 'ERROR: unknown flag: --squash'],
      [['build', '-Z', '.'], 'ERROR: unknown flag: -Z'],
      [['prune', '--keep-storge', '1GB'], 'ERROR: unknown flag: --keep-storge (did you mean --keep-storage?)'],
      [['biuld', '.'], 'ERROR: unknown command "biuld" for "builder" (did you mean build?)'],
      // "image" and "images" are both one edit away: ties go to the first in sorted order, as BuildKit's suggest.
      [['imags'], 'ERROR: unknown command "imags" for "builder" (did you mean image?)'],
      [['frobnicate'], 'ERROR: unknown command "frobnicate" for "builder"'],
      [['imagetools', 'inpsect', 'x'], 'ERROR: unknown command "inpsect" for "builder imagetools" (did you mean inspect?)'],
      [['imagetools', 'inspect'], 'ERROR: "builder imagetools inspect" requires at least 1 argument.'],
      [['rmi'], 'ERROR: "builder rmi" requires at least 1 argument.'],
      // The unknown flag took the argument as its value: the flag is what cobra names, not the count.
      [['imagetools', 'inspect', '--raww', 'x'], 'ERROR: unknown flag: --raww (did you mean --raw?)'],
      [['rmi', '--forse', 'x'], 'ERROR: unknown flag: --forse (did you mean --force?)'],
    ];
    for (const [args, line] of cases) {
      const r = await runCli(args);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stderr, args.join(' ')).toBe(`${line}\n`);
    }
  });

  it('build without a context, or with two, says it needs exactly one and shows the usage line', async () => {
    const usage = `ERROR: "builder build" requires exactly 1 argument.\nSee 'builder build --help'.\n\nUsage:  builder build [OPTIONS] PATH | URL | -\n\nStart a build\n`;
    for (const args of [['build'], ['build', '-t', 'x'], ['build', 'a', 'b'], ['build', '-', '.']]) {
      const r = await runCli(args);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stderr, args.join(' ')).toBe(usage);
    }
    const help = await runCli(['build', '--help']);
    expect(help.stdout.split('\n')[0]).toBe('builder build [OPTIONS] PATH | URL | -');
  });
});

describe('a flag of one value given twice', () => {
  it('keeps the last value, as buildx (CI scripts append their overrides), instead of failing', async () => {
    const ctx = await makeContext({
      Dockerfile: 'FROM scratch AS a\nCOPY a.txt /\nFROM scratch AS b\nCOPY b.txt /\n',
      'other.Dockerfile': 'FROM scratch AS a\nCOPY b.txt /\nFROM scratch AS b\nCOPY a.txt /\n',
      'a.txt': 'a\n', 'b.txt': 'b\n',
    });
    const first = await tempDir('builder-root-');
    const root = await tempDir('builder-root-');
    const dest = await tempDir('builder-out-');
    const r = await runCli(['build', '--root', first, '--root', root, '-f', `${ctx}/other.Dockerfile`, '-f', `${ctx}/Dockerfile`,
      '--target', 'b', '--target', 'a', '--progress', 'plain', '--progress', 'none', '--max-parallelism', '1', '--max-parallelism', '2',
      '--network', 'host', '--network', 'default', '--shm-size', '1m', '--shm-size', '64m', '--provenance', 'true', '--provenance', 'false',
      '-o', `type=local,dest=${dest}/fs`, ctx]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    expect(await fs.readdir(`${dest}/fs`)).toEqual(['a.txt']);
    expect(await fs.readdir(dest)).toEqual(['fs']);
    expect(await fs.readdir(first)).toEqual([]);
  });

  it('in the other commands too', async () => {
    const root = await tempDir('builder-root-');
    const out = await tempDir('builder-out-');
    const ctx = await makeContext({ Dockerfile: 'FROM scratch\nLABEL a=b\n' });
    expect((await runCli(['build', '--root', root, '-q', '-t', 'twice:1', ctx])).code).toBe(0);
    const images = await runCli(['images', '--root', root, '--format', '{{.ID}}', '--format', '{{.Repository}}']);
    expect(images.stderr).toBe('');
    expect(images.stdout).toBe('twice\n');
    const save = await runCli(['save', '--root', root, '-o', `${out}/first.tar`, '-o', `${out}/saved.tar`, 'twice:1']);
    expect(save.code, save.stderr).toBe(0);
    expect(await fs.readdir(out)).toEqual(['saved.tar']);
    const prune = await runCli(['prune', '--root', root, '--keep-storage', '1GB', '--keep-storage', '2GB', '-f']);
    expect(prune.code, prune.stderr).toBe(0);
    const inspect = await runCli(['imagetools', 'inspect', '--format', '{{.Name}}', '--format', '{{json .Manifest}}', `${registry}/busybox:1.35`]);
    expect(inspect.code, inspect.stderr).toBe(0);
    expect(JSON.parse(inspect.stdout)).toMatchObject({ mediaType: 'application/vnd.oci.image.index.v1+json' });
  });
});

describe('--push and the local image store', () => {
  let auth: TestRegistry;
  let ctx: string;
  beforeAll(async () => {
    auth = await startRegistry({ htpasswd: { username: 'alice', password: 's3cret' } });
    ctx = await makeContext({ Dockerfile: `FROM ${base}\nCOPY f /\n`, f: 'x\n' });
  });
  afterAll(async () => auth?.stop());

  it('a push that fails records no name; a push that succeeds records the -t names', async () => {
    const root = await tempDir('builder-root-');
    const dockerConfig = await tempDir('builder-dockercfg-'); // no credentials for the auth registry
    const failed = await runCli(['build', '--root', root, '--progress', 'plain', '-t', `${auth.host}/app:1`, '-t', 'also/local:1', '--push', ctx],
      { env: { DOCKER_CONFIG: dockerConfig } });
    expect(failed.code).toBe(1);
    expect(lastLine(failed.stderr)).toMatch(/^ERROR: .*(401|unauthorized|authentication required)/i);
    const none = await runCli(['images', '--root', root]);
    expect(none.stdout).not.toContain('app');
    expect(none.stdout).not.toContain('also/local');
    // A FROM of the name finds no local image (and the registry refuses): it was not silently kept.
    const child = await makeContext({ Dockerfile: `FROM ${auth.host}/app:1\n` });
    const from = await runCli(['build', '--root', root, '--progress', 'plain', child], { env: { DOCKER_CONFIG: dockerConfig } });
    expect(from.code).toBe(1);

    const ok = await runCli(['build', '--root', root, '--progress', 'plain', '-t', `${registry}/kept/app:1`, '--push', ctx]);
    expect(ok.code, ok.stderr).toBe(0);
    const images = await runCli(['images', '--root', root]);
    expect(images.stdout).toMatch(new RegExp(`${registry.replace(/\./g, '\\.')}/kept/app\\s+1\\s+[0-9a-f]{12}\\s`));
  });

  it('an output that fails after the image output records no name either', async () => {
    const root = await tempDir('builder-root-');
    const blocker = await tempDir('builder-out-');
    await fs.writeFile(`${blocker}/file`, 'not a directory\n');
    const r = await runCli(['build', '--root', root, '--progress', 'plain', '-o', 'type=image,name=multi/out:1',
      '-o', `type=tar,dest=${blocker}/file/sub/fs.tar`, ctx]);
    expect(r.code).toBe(1);
    expect(lastLine(r.stderr)).toMatch(new RegExp(`^ERROR: failed to write output ${blocker}/file/sub/fs\\.tar: ENOTDIR: not a directory`));
    expect((await runCli(['images', '--root', root])).stdout).not.toContain('multi/out');
  });
});
