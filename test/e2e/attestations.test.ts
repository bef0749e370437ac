// Attestations as buildx attaches them: an SBOM whose Debian packages are what dpkg-query reads from the
// image's own database, an npm project's lockfile packages, provenance naming each base image by digest
// and never a secret (with the steps in max mode), the index layout BuildKit writes (attestation manifests
// per platform, statements whose subjects are the image manifests), carried intact by a push, skopeo copy,
// imagetools create, and read back by imagetools inspect --format.
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs/promises';
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { makeContext, runCli, tempDir } from '../helpers/cli.js';
import { build, quietProgress } from '../../src/index.js';

const exec = promisify(execFile);
const registry = inject('registry');
const base = `${registry}/busybox:1.35`;
const SECRET = 'TopSecretValue-7f3a9c';

interface Desc { mediaType: string; digest: string; size: number; annotations?: Record<string, string>; platform?: { os: string; architecture: string } }

/** An OCI layout directory's blobs, read as JSON. */
const blob = async (layout: string, digest: string) => JSON.parse(await fs.readFile(path.join(layout, 'blobs', digest.replace(':', '/')), 'utf8'));

/** The image index of a layout (index.json names it) and, per image manifest, its statements. */
async function readAttested(layout: string): Promise<{ index: { mediaType: string; manifests: Desc[] }; images: Desc[]; statements: Map<string, any[]> }> {
  const top = JSON.parse(await fs.readFile(path.join(layout, 'index.json'), 'utf8')).manifests[0];
  const index = await blob(layout, top.digest);
  const images = index.manifests.filter((m: Desc) => m.annotations?.['vnd.docker.reference.type'] !== 'attestation-manifest');
  const statements = new Map<string, any[]>();
  for (const m of index.manifests as Desc[]) {
    if (m.annotations?.['vnd.docker.reference.type'] !== 'attestation-manifest') continue;
    expect(m.platform).toEqual({ architecture: 'unknown', os: 'unknown' });
    const manifest = await blob(layout, m.digest);
    const list = [];
    for (const l of manifest.layers) {
      expect(l.mediaType).toBe('application/vnd.in-toto+json');
      const st = await blob(layout, l.digest);
      expect(l.annotations['in-toto.io/predicate-type']).toBe(st.predicateType);
      list.push(st);
    }
    statements.set(m.annotations['vnd.docker.reference.digest'], list);
  }
  return { index, images, statements };
}

async function ociBuild(ctx: string, args: string[], extraOutputs: string[] = []): Promise<{ layout: string; root: string; code: number; stderr: string }> {
  const root = await tempDir('builder-root-');
  const out = await tempDir('builder-out-');
  const layout = path.join(out, 'layout');
  const r = await runCli(['build', '--root', root, '--progress', 'plain', '--build-arg', `BASE=${base}`,
    '--output', `type=oci,dest=${layout},tar=false`, ...extraOutputs.flatMap((o) => ['--output', o]), ...args, ctx]);
  return { layout, root, code: r.code, stderr: r.stderr };
}

describe('SBOM', () => {
  let statusFile: string;
  beforeAll(async () => {
    // A real dpkg database: the first 40 entries of this machine's own.
    const paragraphs = (await fs.readFile('/var/lib/dpkg/status', 'utf8')).split(/\n\n+/).filter((p) => p.trim());
    statusFile = paragraphs.slice(0, 40).join('\n\n') + '\n';
  });

  it('lists the Debian packages dpkg-query -W reads from the image, with the same versions', async () => {
    const ctx = await makeContext({
      Dockerfile: 'ARG BASE\nFROM ${BASE}\nCOPY status /var/lib/dpkg/status\nCOPY os-release /etc/os-release\n',
      status: statusFile,
      'os-release': 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n',
    });
    const fsOut = await tempDir('builder-fs-');
    const b = await ociBuild(ctx, ['--sbom=true'], [`type=local,dest=${fsOut}`]);
    expect(b.code, b.stderr).toBe(0);
    const { images, statements } = await readAttested(b.layout);
    expect(images).toHaveLength(1);
    const sts = statements.get(images[0].digest)!;
    const sbom = sts.find((s) => s.predicateType === 'https://spdx.dev/Document');
    expect(sbom.predicate.spdxVersion).toBe('SPDX-2.3');
    const debs = sbom.predicate.packages.filter((p: any) => p.externalRefs?.[0]?.referenceLocator.startsWith('pkg:deb/debian/'));
    const ours = debs.map((p: any) => `${p.name}\t${p.versionInfo}`).sort();
    // dpkg-query on the image's own database, extracted by the local output of the same build.
    const { stdout } = await exec('dpkg-query', ['-W', '-f', '${Package}\\t${Version}\\n', `--admindir=${path.join(fsOut, 'var/lib/dpkg')}`]);
    const theirs = stdout.split('\n').filter(Boolean).sort();
    expect(theirs.length).toBeGreaterThan(10);
    expect(ours).toEqual(theirs);
    expect(debs[0].externalRefs[0].referenceLocator).toMatch(/^pkg:deb\/debian\/[^@]+@[^?]+\?arch=\w+.*&distro=debian-12$/);
    // Provenance is there too: buildx's default, min mode.
    expect(sts.map((s) => s.predicateType).sort()).toEqual(['https://slsa.dev/provenance/v0.2', 'https://spdx.dev/Document']);
    for (const s of sts) expect(s.subject.map((x: any) => x.digest.sha256)).toEqual([images[0].digest.slice(7)]);
  });

  it('lists an npm project\'s lockfile packages and its node_modules', async () => {
    const lock = {
      name: 'app', version: '1.0.0', lockfileVersion: 3, requires: true,
      packages: {
        '': { name: 'app', version: '1.0.0', dependencies: { 'left-pad': '^1.3.0', '@types/node': '^20.0.0' } },
        'node_modules/left-pad': { version: '1.3.0', resolved: 'https://registry.npmjs.org/left-pad/-/left-pad-1.3.0.tgz', license: 'WTFPL' },
        'node_modules/@types/node': { version: '20.11.5', license: 'MIT' },
        'node_modules/undici-types': { version: '5.26.5', license: 'MIT' },
      },
    };
    const ctx = await makeContext({
      Dockerfile: 'ARG BASE\nFROM ${BASE}\nWORKDIR /app\nCOPY package.json package-lock.json ./\nCOPY extra/ /app/node_modules/is-odd/\n',
      'package.json': JSON.stringify({ name: 'app', version: '1.0.0' }),
      'package-lock.json': JSON.stringify(lock),
      'extra/package.json': JSON.stringify({ name: 'is-odd', version: '3.0.1', license: 'MIT' }),
    });
    const b = await ociBuild(ctx, ['--sbom=true', '--provenance=false']);
    expect(b.code, b.stderr).toBe(0);
    const { images, statements } = await readAttested(b.layout);
    const sts = statements.get(images[0].digest)!;
    expect(sts.map((s) => s.predicateType)).toEqual(['https://spdx.dev/Document']);
    const npm = sts[0].predicate.packages.filter((p: any) => p.externalRefs?.[0]?.referenceLocator.startsWith('pkg:npm/'));
    expect(npm.map((p: any) => `${p.name}@${p.versionInfo}`).sort()).toEqual(['@types/node@20.11.5', 'is-odd@3.0.1', 'left-pad@1.3.0', 'undici-types@5.26.5']);
    expect(npm.find((p: any) => p.name === '@types/node').externalRefs[0].referenceLocator).toBe('pkg:npm/%40types/node@20.11.5');
  });
});

describe('SBOM of a stage that asks for it', () => {
  it('scans a stage whose ARG BUILDKIT_SBOM_SCAN_STAGE is true, and only that one', async () => {
    const ctx = await makeContext({
      Dockerfile: [
        'ARG BASE',
        'FROM ${BASE} AS deps', 'ARG BUILDKIT_SBOM_SCAN_STAGE=true', 'COPY lock.json /deps/package-lock.json',
        'FROM ${BASE} AS other', 'RUN touch /other',
        'FROM ${BASE}', 'COPY --from=deps /deps/package-lock.json /x.json', 'COPY --from=other /other /other', '',
      ].join('\n'),
      'lock.json': JSON.stringify({ lockfileVersion: 3, packages: { '': {}, 'node_modules/ms': { version: '2.1.3' } } }),
    });
    const b = await ociBuild(ctx, ['--sbom=true', '--provenance=false']);
    expect(b.code, b.stderr).toBe(0);
    const { images, statements } = await readAttested(b.layout);
    const docs = statements.get(images[0].digest)!.map((st) => st.predicate);
    expect(docs.map((d) => d.name)).toEqual(['sbom', 'sbom-deps']);
    expect(docs[1].packages.filter((x: any) => x.externalRefs).map((x: any) => x.name)).toEqual(['ms']);
  });
});

describe('SBOM after a cache import', () => {
  it('scans the image (and, with scan-stage, the other stage) when every step came from --cache-from', async () => {
    const paragraphs = (await fs.readFile('/var/lib/dpkg/status', 'utf8')).split(/\n\n+/).filter((p) => p.trim());
    const ctx = await makeContext({
      Dockerfile: 'ARG BASE\nFROM ${BASE} AS tools\nCOPY lock.json /tools/package-lock.json\nFROM ${BASE}\nCOPY status /var/lib/dpkg/status\nCOPY --from=tools /tools /tools\n',
      status: paragraphs.slice(0, 5).join('\n\n') + '\n',
      'lock.json': JSON.stringify({ lockfileVersion: 3, packages: { '': {}, 'node_modules/left-pad': { version: '1.3.0' } } }),
    });
    const cache = await tempDir('builder-cache-');
    const first = await ociBuild(ctx, ['--cache-to', `type=local,dest=${cache},mode=max`]);
    expect(first.code, first.stderr).toBe(0);
    const b = await ociBuild(ctx, ['--cache-from', `type=local,src=${cache}`, '--attest', 'type=sbom,scan-stage=true', '--provenance=false']);
    expect(b.code, b.stderr).toBe(0);
    expect(b.stderr).not.toMatch(/#\d+ \[.*\] COPY status.*\n#\d+ DONE/);
    const { images, statements } = await readAttested(b.layout);
    const docs = statements.get(images[0].digest)!.map((st) => st.predicate);
    expect(docs.map((d) => d.name)).toEqual(['sbom', 'sbom-tools']);
    const names = (d: any, type: string) => d.packages.filter((p: any) => p.externalRefs?.[0]?.referenceLocator.startsWith(`pkg:${type}/`)).map((p: any) => p.name);
    expect(names(docs[0], 'deb')).toHaveLength(5);
    // The final image holds the lockfile too (copied from the stage), the stage holds no dpkg database.
    expect(names(docs[0], 'npm')).toEqual(['left-pad']);
    expect(names(docs[1], 'deb')).toEqual([]);
    expect(names(docs[1], 'npm')).toEqual(['left-pad']);
  });
});

describe('SBOM generator image', () => {
  it('runs the scanner under BuildKit\'s protocol and attaches what it wrote; the scanner is a provenance material', async () => {
    // A scanner image of our own: it lists the scanned filesystem and the extras into an SPDX statement.
    const script = [
      'set -e',
      'files=$(ls "$BUILDKIT_SCAN_SOURCE" | tr "\\n" " ")',
      'extras=$(ls "$BUILDKIT_SCAN_SOURCE_EXTRAS" | tr "\\n" " ")',
      'printf \'{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"https://spdx.dev/Document","subject":[],"predicate":{"spdxVersion":"SPDX-2.3","name":"scanned","files":"%s","extras":"%s","mode":"%s"}}\' "$files" "$extras" "$BUILDKIT_SCAN_mode" > "$BUILDKIT_SCAN_DESTINATION/sbom.spdx.json"',
      '',
    ].join('\n');
    const scannerCtx = await makeContext({ Dockerfile: 'ARG BASE\nFROM ${BASE}\nCOPY scan.sh /scan.sh\nENTRYPOINT ["/bin/sh"]\nCMD ["/scan.sh"]\n', 'scan.sh': script });
    const scanner = `${registry}/scanners/listing:1`;
    const root = await tempDir('builder-root-');
    const s = await runCli(['build', '--root', root, '--progress', 'plain', '--build-arg', `BASE=${base}`, '--provenance=false', '-t', scanner, '--push', scannerCtx]);
    expect(s.code, s.stderr).toBe(0);

    const ctx = await makeContext({ Dockerfile: 'ARG BASE\nFROM ${BASE} AS tools\nRUN touch /tool\nFROM ${BASE}\nCOPY --from=tools /tool /marker\n' });
    const b = await ociBuild(ctx, ['--attest', `type=sbom,generator=${scanner},scan-stage=true,mode=fast`]);
    expect(b.code, b.stderr).toBe(0);
    expect(b.stderr).toContain(`generating sbom using ${scanner}`);
    const { images, statements } = await readAttested(b.layout);
    const sts = statements.get(images[0].digest)!;
    const sbom = sts.find((st) => st.predicateType === 'https://spdx.dev/Document');
    expect(sbom.subject).toEqual([{ name: '_', digest: { sha256: images[0].digest.slice(7) } }]);
    expect(sbom.predicate.files.split(' ')).toContain('marker');
    expect(sbom.predicate.extras.trim()).toBe('sbom-tools');
    // The attestation's other options reach the scanner as BUILDKIT_SCAN_<key>.
    expect(sbom.predicate.mode).toBe('fast');
    const prov = sts.find((st) => st.predicateType === 'https://slsa.dev/provenance/v0.2');
    expect(prov.predicate.materials.map((m: any) => m.uri.replace(/\?.*$/, ''))).toContain(`pkg:docker/${encodeURIComponent(registry)}/scanners/listing@1`);
  });
});

describe('provenance', () => {
  let ctx: string;
  beforeAll(async () => {
    ctx = await makeContext({
      Dockerfile: [
        'ARG BASE', 'ARG OTHER',
        'FROM ${OTHER} AS tools', 'RUN echo tool > /tool',
        'FROM ${BASE}', 'ARG GREETING', 'COPY --from=tools /tool /tool',
        // The value is checked by its hash: the Dockerfile (and so the steps and history) never holds it.
        `RUN --mount=type=secret,id=token,required=true test "$(md5sum < /run/secrets/token | cut -c1-32)" = ${createHash('md5').update(SECRET).digest('hex')} && echo $GREETING > /greeting`, '',
      ].join('\n'),
    });
    // A second base image, pushed under another name, as a multi-stage build's other FROM.
    await exec('skopeo', ['copy', '-q', '--all', '--src-tls-verify=false', '--dest-tls-verify=false', `docker://${base}`, `docker://${registry}/other/busybox:2`]);
  });

  async function provenanceOf(args: string[]) {
    const secretFile = path.join(await tempDir('builder-secret-'), 'token');
    await fs.writeFile(secretFile, SECRET);
    const b = await ociBuild(ctx, ['--build-arg', `OTHER=${registry}/other/busybox:2`, '--build-arg', 'GREETING=hello',
      '--secret', `id=token,src=${secretFile}`, ...args]);
    expect(b.code, b.stderr).toBe(0);
    const { images, statements } = await readAttested(b.layout);
    const st = statements.get(images[0].digest)!.find((s) => s.predicateType.startsWith('https://slsa.dev/provenance/'));
    return { st, images, layout: b.layout };
  }

  /** The digest a tag resolves to: that of the manifest (or index) bytes the registry serves. */
  async function registryDigest(ref: string): Promise<string> {
    const raw = (await exec('skopeo', ['inspect', '--tls-verify=false', '--raw', `docker://${ref}`], { encoding: 'buffer' })).stdout;
    return `sha256:${createHash('sha256').update(raw).digest('hex')}`;
  }

  it('min mode (the default): each base image by digest, the secret by id only, no build args, no steps', async () => {
    const { st, images, layout } = await provenanceOf([]);
    expect(st.predicateType).toBe('https://slsa.dev/provenance/v0.2');
    expect(st.subject).toEqual([{ name: '_', digest: { sha256: images[0].digest.slice(7) } }]);
    const p = st.predicate;
    expect(p.buildType).toBe('https://mobyproject.org/buildkit@v1');
    const mats = Object.fromEntries(p.materials.map((m: any) => [m.uri.replace(/\?.*$/, ''), `sha256:${m.digest.sha256}`]));
    const host = encodeURIComponent(registry);
    expect(mats).toEqual({
      [`pkg:docker/${host}/busybox@1.35`]: await registryDigest(base),
      [`pkg:docker/${host}/other/busybox@2`]: await registryDigest(`${registry}/other/busybox:2`),
    });
    expect(p.invocation.parameters.frontend).toBe('dockerfile.v0');
    expect(p.invocation.parameters.secrets).toEqual([{ id: 'token', optional: false }]);
    expect(p.invocation.parameters.args['build-arg:GREETING']).toBeUndefined();
    expect(p.buildConfig).toBeUndefined();
    expect(Date.parse(p.metadata.buildFinishedOn)).toBeGreaterThanOrEqual(Date.parse(p.metadata.buildStartedOn));
    // No statement, nor any blob of the layout, holds the secret's value.
    for (const f of await fs.readdir(path.join(layout, 'blobs', 'sha256'))) {
      const data = await fs.readFile(path.join(layout, 'blobs', 'sha256', f));
      expect(data.includes(SECRET), f).toBe(false);
    }
  });

  it('max mode holds the build args and the LLB steps (never the secret); version=v1 is SLSA v1; SOURCE_DATE_EPOCH sets the times', async () => {
    const { st, layout } = await provenanceOf(['--provenance', 'mode=max', '--build-arg', 'SOURCE_DATE_EPOCH=1700000000']);
    const p = st.predicate;
    expect(p.invocation.parameters.args['build-arg:GREETING']).toBe('hello');
    const steps = p.buildConfig.llbDefinition;
    expect(steps.length).toBeGreaterThan(3);
    expect(steps.map((s: any) => s.id)).toEqual(steps.map((_: any, i: number) => `step${i}`));
    expect(JSON.stringify(steps)).toContain('echo tool > /tool');
    expect(JSON.stringify(steps)).toContain('"secret":{"id":"token"');
    expect(p.metadata.buildStartedOn).toBe('2023-11-14T22:13:20Z');
    expect(p.metadata.buildFinishedOn).toBe('2023-11-14T22:13:20Z');
    expect(p.metadata.completeness.parameters).toBe(true);
    for (const f of await fs.readdir(path.join(layout, 'blobs', 'sha256'))) {
      expect((await fs.readFile(path.join(layout, 'blobs', 'sha256', f))).includes(SECRET), f).toBe(false);
    }
    const v1 = (await provenanceOf(['--attest', 'type=provenance,mode=max,version=v1'])).st;
    expect(v1.predicateType).toBe('https://slsa.dev/provenance/v1');
    expect(v1.predicate.buildDefinition.resolvedDependencies).toHaveLength(2);
    expect(v1.predicate.buildDefinition.externalParameters.request.secrets).toEqual([{ id: 'token', optional: false }]);
    expect(v1.predicate.buildDefinition.internalParameters.buildConfig.llbDefinition.length).toBeGreaterThan(3);
  });
});

describe('attestation storage', () => {
  let ctx: string;
  beforeAll(async () => {
    ctx = await makeContext({ Dockerfile: 'ARG BASE\nFROM ${BASE}\nRUN echo built > /built\n' });
  });

  it('a push carries them: skopeo copies the index intact, imagetools create keeps them, inspect --format prints them', async () => {
    const root = await tempDir('builder-root-');
    const ref = `${registry}/attested/app:1`;
    const r = await runCli(['build', '--root', root, '--progress', 'plain', '--build-arg', `BASE=${base}`, '--platform', 'linux/amd64,linux/arm64',
      '--sbom=true', '-t', ref, '--push', ctx]);
    expect(r.code, r.stderr).toBe(0);
    const raw = (await exec('skopeo', ['inspect', '--tls-verify=false', '--raw', `docker://${ref}`])).stdout;
    const index = JSON.parse(raw);
    expect(index.mediaType).toBe('application/vnd.oci.image.index.v1+json');
    const images = index.manifests.filter((m: Desc) => m.platform?.os === 'linux');
    const atts = index.manifests.filter((m: Desc) => m.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest');
    expect(images.map((m: Desc) => m.platform!.architecture)).toEqual(['amd64', 'arm64']);
    expect(atts.map((m: Desc) => m.annotations!['vnd.docker.reference.digest'])).toEqual(images.map((m: Desc) => m.digest));

    // skopeo copies the whole index, attestations included, to another repository and to an OCI layout.
    await exec('skopeo', ['copy', '-q', '--all', '--src-tls-verify=false', '--dest-tls-verify=false', `docker://${ref}`, `docker://${registry}/copied/app:1`]);
    expect((await exec('skopeo', ['inspect', '--tls-verify=false', '--raw', `docker://${registry}/copied/app:1`])).stdout).toBe(raw);
    const dir = await tempDir('builder-copy-');
    await exec('skopeo', ['copy', '-q', '--all', '--src-tls-verify=false', `docker://${ref}`, `oci:${dir}/layout:x`]);
    const copied = await readAttested(`${dir}/layout`);
    expect(copied.statements.size).toBe(2);
    for (const img of copied.images) {
      const sts = copied.statements.get(img.digest)!;
      expect(sts.map((s) => s.predicateType).sort()).toEqual(['https://slsa.dev/provenance/v0.2', 'https://spdx.dev/Document']);
      for (const s of sts) {
        expect(s.subject).toEqual([{ name: `pkg:docker/${encodeURIComponent(registry)}/attested/app@1?platform=${encodeURIComponent(`linux/${img.platform!.architecture}`)}`, digest: { sha256: img.digest.slice(7) } }]);
      }
    }

    // imagetools create joins indexes with their attestation manifests.
    const c = await runCli(['imagetools', 'create', '-t', `${registry}/joined/app:1`, ref]);
    expect(c.code, c.stderr).toBe(0);
    const joined = JSON.parse((await exec('skopeo', ['inspect', '--tls-verify=false', '--raw', `docker://${registry}/joined/app:1`])).stdout);
    expect(joined.manifests.map((m: Desc) => m.digest)).toEqual(index.manifests.map((m: Desc) => m.digest));

    // inspect --format, as buildx prints it: per platform for a multi-platform index.
    const prov = await runCli(['imagetools', 'inspect', ref, '--format', '{{json .Provenance}}']);
    expect(prov.code, prov.stderr).toBe(0);
    const pj = JSON.parse(prov.stdout);
    expect(Object.keys(pj).sort()).toEqual(['linux/amd64', 'linux/arm64']);
    expect(pj['linux/amd64'].SLSA.buildType).toBe('https://mobyproject.org/buildkit@v1');
    const sbom = await runCli(['imagetools', 'inspect', ref, '--format', '{{json .SBOM}}']);
    expect(sbom.code, sbom.stderr).toBe(0);
    expect(JSON.parse(sbom.stdout)['linux/arm64'].SPDX.spdxVersion).toBe('SPDX-2.3');
    const plain = await runCli(['imagetools', 'inspect', ref]);
    expect(plain.stdout).toContain(`  Platform:    unknown/unknown\n  Annotations:\n    vnd.docker.reference.digest: ${images[0].digest}\n    vnd.docker.reference.type:   attestation-manifest\n`);
  });

  it('a single platform with provenance is an index of the image and its attestation manifest; --provenance=false is the plain manifest; type=docker leaves them out', async () => {
    const b = await ociBuild(ctx, []);
    expect(b.code, b.stderr).toBe(0);
    const { index, images, statements } = await readAttested(b.layout);
    expect(index.mediaType).toBe('application/vnd.oci.image.index.v1+json');
    expect(index.manifests).toHaveLength(2);
    expect(images[0].mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
    expect(statements.get(images[0].digest)!.map((s) => s.predicateType)).toEqual(['https://slsa.dev/provenance/v0.2']);

    const off = await ociBuild(ctx, ['--provenance=false']);
    expect(off.code, off.stderr).toBe(0);
    const top = JSON.parse(await fs.readFile(path.join(off.layout, 'index.json'), 'utf8')).manifests[0];
    expect(top.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');

    const out = await tempDir('builder-docker-');
    const root = await tempDir('builder-root-');
    const d = await runCli(['build', '--root', root, '--progress', 'plain', '--build-arg', `BASE=${base}`, '--sbom=true',
      '--output', `type=docker,dest=${out}/img.tar`, ctx]);
    expect(d.code, d.stderr).toBe(0);
    await exec('tar', ['-xf', `${out}/img.tar`, '-C', out]);
    const dockerTop = JSON.parse(await fs.readFile(path.join(out, 'index.json'), 'utf8')).manifests[0];
    expect(dockerTop.mediaType).toBe('application/vnd.docker.distribution.manifest.v2+json');
  });

  it('BUILDX_NO_DEFAULT_ATTESTATIONS turns the default provenance off', async () => {
    const root = await tempDir('builder-root-');
    const out = await tempDir('builder-out-');
    const r = await runCli(['build', '--root', root, '--progress', 'plain', '--build-arg', `BASE=${base}`,
      '--output', `type=oci,dest=${out}/l,tar=false`, ctx], { env: { BUILDX_NO_DEFAULT_ATTESTATIONS: '1' } });
    expect(r.code, r.stderr).toBe(0);
    const top = JSON.parse(await fs.readFile(path.join(out, 'l', 'index.json'), 'utf8')).manifests[0];
    expect(top.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
  });
});

describe('library', () => {
  it('build() takes provenance, sbom and attest as buildx\'s flags', async () => {
    const ctx = await makeContext({ Dockerfile: 'ARG BASE\nFROM ${BASE}\nRUN echo x > /x\n' });
    const out = await tempDir('builder-out-');
    const r = await build({
      context: ctx, root: await tempDir('builder-root-'), progress: quietProgress(), buildArgs: { BASE: base },
      outputs: [`type=oci,dest=${out}/l,tar=false`], provenance: 'mode=max,version=v1', sbom: true,
    });
    const { images, statements } = await readAttested(`${out}/l`);
    expect(r.manifestDigest).toBe(JSON.parse(await fs.readFile(`${out}/l/index.json`, 'utf8')).manifests[0].digest);
    expect(statements.get(images[0].digest)!.map((s) => s.predicateType)).toEqual(['https://spdx.dev/Document', 'https://slsa.dev/provenance/v1']);
    const off = await build({
      context: ctx, root: await tempDir('builder-root-'), progress: quietProgress(), buildArgs: { BASE: base },
      outputs: [`type=oci,dest=${out}/m,tar=false`], attest: ['type=provenance,disabled=true'],
    });
    expect(JSON.parse(await fs.readFile(`${out}/m/index.json`, 'utf8')).manifests[0].mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
    expect(off.configDigest).toBeDefined();
  });
});

describe('provenance of a Git checkout with an ADD <url>; an SBOM of the context', () => {
  it('names the commit (origin without credentials) and the download by digest; scan-context lists the context\'s lockfile', async () => {
    const body = 'downloaded content\n';
    const server = http.createServer((_req, res) => res.end(body));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/file.txt`;
      const ctx = await makeContext({
        Dockerfile: `ARG BASE\nFROM \${BASE}\nADD ${url} /file.txt\n`,
        'package-lock.json': JSON.stringify({ lockfileVersion: 3, packages: { '': {}, 'node_modules/ms': { version: '2.1.3' } } }),
      });
      const git = (args: string[]) => exec('git', ['-C', ctx, '-c', 'user.name=t', '-c', 'user.email=t@example.com', ...args]);
      await git(['init', '-q']);
      await git(['add', '.']);
      await git(['commit', '-q', '-m', 'x']);
      await git(['remote', 'add', 'origin', 'https://user:hunter2@example.com/org/app.git']);
      const commit = (await git(['rev-parse', 'HEAD'])).stdout.trim();
      const b = await ociBuild(ctx, ['--attest', 'type=sbom,scan-context=true']);
      expect(b.code, b.stderr).toBe(0);
      const { images, statements } = await readAttested(b.layout);
      const sts = statements.get(images[0].digest)!;
      const p = sts.find((st) => st.predicateType === 'https://slsa.dev/provenance/v0.2').predicate;
      expect(p.materials).toContainEqual({ uri: `https://example.com/org/app.git#${commit}`, digest: { sha1: commit } });
      expect(p.materials).toContainEqual({ uri: url, digest: { sha256: createHash('sha256').update(body).digest('hex') } });
      expect(p.invocation.configSource).toEqual({ entryPoint: 'Dockerfile', uri: `https://example.com/org/app.git#${commit}`, digest: { sha1: commit } });
      expect(JSON.stringify(sts)).not.toContain('hunter2');
      const docs = sts.filter((st) => st.predicateType === 'https://spdx.dev/Document').map((st) => st.predicate);
      expect(docs.map((d) => d.name)).toEqual(['sbom', 'sbom-context']);
      expect(docs[1].packages.filter((x: any) => x.externalRefs).map((x: any) => `${x.name}@${x.versionInfo}`)).toEqual(['ms@2.1.3']);
    } finally {
      server.close();
    }
  });
});
