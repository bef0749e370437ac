// The builders under comparison, each as the commands a user would type. Every adapter gives:
//   probe()       -> { ok, version, reason }   whether it can run here
//   fresh()       -> empties its state (cold), untimed
//   build(o)      -> commands for one build of o.ctx (o.platforms, o.args, o.tag)
//   pull(ref)     -> commands fetching an image into its store
//   push(src,dst) -> { setup?, cmds } pushing an image it holds to another registry
//   daemonPid     -> the pid whose process tree does the work besides the commands (dockerd), if any
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { pidOf } from './proc.mjs';

const run = promisify(execFile);
const sh = async (cmd, args) => (await run(cmd, args, { maxBuffer: 64 << 20 })).stdout.trim();
const has = (file) => { try { fs.accessSync(file, fs.constants.X_OK); return true; } catch { return false; } };
const buildArgs = (args) => Object.entries(args ?? {}).flatMap(([k, v]) => ['--build-arg', `${k}=${v}`]);

/** Unmounts whatever is mounted under `dir` (deepest first), then removes it. */
export function removeTree(dir) {
  if (!fs.existsSync(dir)) return;
  const mounts = fs.readFileSync('/proc/self/mounts', 'utf8').split('\n')
    .map((l) => l.split(' ')[1]?.replace(/\\040/g, ' '))
    .filter((m) => m && (m === dir || m.startsWith(dir + '/')))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) {
    try { execFileSync('umount', ['-l', m], { stdio: 'ignore' }); } catch { /* already gone */ }
  }
  fs.rmSync(dir, { recursive: true, force: true });
}

// ---------------------------------------------------------------- builder (this engine, through its CLI)
export function builder({ work, cli, output }) {
  const dir = path.join(work, 'builder');
  let root;
  let n = 0;
  // The state directory is read when the command starts, not when it is made: a plan made before fresh()
  // must run in the fresh state.
  const cmd = (argv) => ({ get argv() { return [process.execPath, cli, '--root', root, ...argv]; } });
  return {
    name: 'builder',
    async probe() {
      if (!fs.existsSync(cli)) return { ok: false, reason: `${cli} missing (run npm run build)` };
      const repo = path.resolve(path.dirname(cli), '../../..');
      let version = 'unknown';
      try {
        version = await sh('git', ['-C', repo, 'rev-parse', '--short', 'HEAD']);
        if (await sh('git', ['-C', repo, 'status', '--porcelain', '--untracked-files=no'])) version += '+dirty';
      } catch { /* not a checkout */ }
      return { ok: true, version };
    },
    fresh() {
      if (root) removeTree(root);
      root = path.join(dir, `root-${++n}`);
      fs.mkdirSync(root, { recursive: true });
    },
    /** The current state directory (B11 runs `builder serve` on it). */
    stateDir: () => root,
    build({ ctx, platforms, args, tag, extra }) {
      const out = output === 'oci' ? ['--output', `type=oci,dest=${path.join(dir, 'image.tar')}`] : [];
      return [cmd(['build', '--progress', 'plain', ...(platforms ? ['--platform', platforms.join(',')] : []),
        ...buildArgs(args), '-t', tag, ...out, ...(extra ?? []), ctx])];
    },
    pull(ref, ctx) {
      return [cmd(['build', '--progress', 'plain', '--build-arg', `IMAGE=${ref}`, ctx])];
    },
    push(src, dest, ctx) {
      return { cmds: [cmd(['build', '--progress', 'plain', '--build-arg', `IMAGE=${src}`, '--output', `type=image,name=${dest},push=true`, ctx])] };
    },
    cleanup() {
      removeTree(dir);
    },
  };
}

// ---------------------------------------------------------------- BuildKit, embedded in dockerd, via the docker CLI
export function buildkit({ work }) {
  const DOCKER = '/usr/bin/docker';
  const env = { DOCKER_BUILDKIT: '1' };
  const images = new Set();
  const docker = (argv) => ({ argv: [DOCKER, ...argv], env });
  const self = {
    name: 'buildkit',
    daemonPid: undefined,
    async probe() {
      if (!has(DOCKER)) return { ok: false, reason: `${DOCKER} not installed (try --install-peers)` };
      try {
        const server = await sh(DOCKER, ['version', '--format', '{{.Server.Version}}']);
        self.daemonPid = pidOf('dockerd');
        if (!self.daemonPid) return { ok: false, reason: 'dockerd is not running here (cannot read its CPU)' };
        return { ok: true, version: `docker ${server}, BuildKit embedded in dockerd` };
      } catch (e) {
        return { ok: false, reason: `docker daemon not reachable: ${String(e.stderr || e.message).trim().split('\n')[0]}` };
      }
    },
    async fresh() {
      for (const ref of images) await run(DOCKER, ['image', 'rm', '-f', ref]).catch(() => {});
      images.clear();
      // All of BuildKit's cache, including base images it pulled for builds.
      await run(DOCKER, ['builder', 'prune', '-af'], { env: { ...process.env, ...env } });
    },
    build({ ctx, platforms, args, tag, extra }) {
      // docker 20.10's `docker build` takes one platform; two builds at once is how it builds two
      // (buildx would solve both in one request, in parallel too).
      return (platforms ?? [undefined]).map((p) => {
        const t = p ? `${tag}-${p.replace(/\//g, '-')}` : tag;
        images.add(t);
        return docker(['build', '--network', 'host', '--progress', 'plain', ...(p ? ['--platform', p] : []), ...buildArgs(args), '-t', t, ...(extra ?? []), ctx]);
      });
    },
    /** Pushes an image it built (the cache scenarios' inline cache). */
    pushCmd(ref) {
      images.add(ref);
      return docker(['push', ref]);
    },
    pull(ref) {
      images.add(ref);
      return [docker(['pull', ref])];
    },
    push(src, dest) {
      images.add(dest);
      return { setup: () => run(DOCKER, ['tag', src, dest]), cmds: [docker(['push', dest])] };
    },
    async cleanup() {
      await self.fresh().catch(() => {});
    },
  };
  return self;
}

// ---------------------------------------------------------------- Buildah, storage in a temp root
export function buildah({ work }) {
  const dir = path.join(work, 'buildah');
  let store;
  let n = 0;
  const jobs = String(os.cpus().length);
  const cmd = (argv) => ({ get argv() { return ['buildah', ...store, ...argv]; } });
  const drop = () => {
    if (!store) return;
    try { execFileSync('buildah', [...store, 'rm', '-a'], { stdio: 'ignore' }); } catch { /* nothing to remove */ }
    removeTree(path.dirname(store[1]));
  };
  return {
    name: 'buildah',
    async probe() {
      if (!has('/usr/bin/buildah')) return { ok: false, reason: 'buildah not installed (try --install-peers)' };
      return { ok: true, version: (await sh('buildah', ['--version'])).replace(/^buildah version /, '') };
    },
    fresh() {
      drop();
      const base = path.join(dir, `store-${++n}`);
      store = ['--root', path.join(base, 'root'), '--runroot', path.join(base, 'run'), '--storage-driver', 'overlay'];
      fs.mkdirSync(base, { recursive: true });
    },
    build({ ctx, platforms, args, tag }) {
      // --layers: cache each step like the others do; runc like the others (crun refuses hybrid cgroups here).
      return [cmd(['build', '--layers', '--jobs', jobs, '--isolation', 'oci', '--runtime', '/usr/sbin/runc', '--network', 'host',
        '--tls-verify=false', ...(platforms ? ['--platform', platforms.join(','), '--manifest', tag] : ['-t', tag]), ...buildArgs(args), ctx])];
    },
    pull(ref) {
      return [cmd(['pull', '--tls-verify=false', ref])];
    },
    push(src, dest) {
      return { cmds: [cmd(['push', '--tls-verify=false', src, `docker://${dest}`])] };
    },
    cleanup() {
      drop();
      removeTree(dir);
    },
  };
}

// ---------------------------------------------------------------- skopeo: the transfer baseline for B7
export function skopeo({ work, layout, tag }) {
  const dir = path.join(work, 'skopeo');
  let dest;
  let n = 0;
  return {
    name: 'skopeo',
    pullPushOnly: true,
    async probe() {
      if (!has('/usr/bin/skopeo')) return { ok: false, reason: 'skopeo not installed' };
      return { ok: true, version: (await sh('skopeo', ['--version'])).replace(/^skopeo version /, '') };
    },
    fresh() {
      if (dest) removeTree(dest);
      dest = path.join(dir, `layout-${++n}`);
      fs.mkdirSync(dir, { recursive: true });
    },
    pull(ref) {
      return [{ argv: ['skopeo', 'copy', '--quiet', '--src-tls-verify=false', `docker://${ref}`, `oci:${dest}:${tag}`] }];
    },
    push(_src, to) {
      return { cmds: [{ argv: ['skopeo', 'copy', '--quiet', '--dest-tls-verify=false', `oci:${layout()}:${tag}`, `docker://${to}`] }] };
    },
    cleanup() {
      removeTree(dir);
    },
  };
}
