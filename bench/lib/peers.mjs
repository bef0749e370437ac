// `--install-peers`: installs the peers and what the scenarios need from Debian, starts dockerd when it
// is not running, and registers QEMU user emulation for B5. Needs root on a Debian machine.
import { execFile, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);
const PACKAGES = ['docker.io', 'buildah', 'docker-registry', 'skopeo', 'qemu-user-static', 'binfmt-support'];

function installed(pkg) {
  try {
    return execFileSync('dpkg-query', ['-W', '-f=${Status}', pkg], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().includes('install ok installed');
  } catch {
    return false;
  }
}

async function dockerUp() {
  try {
    await run('/usr/bin/docker', ['version', '--format', '{{.Server.Version}}']);
    return true;
  } catch {
    return false;
  }
}

export async function installPeers(say) {
  if (process.getuid?.() !== 0) throw new Error('--install-peers needs root');
  const missing = PACKAGES.filter((p) => !installed(p));
  if (missing.length) {
    say(`installing Debian packages: ${missing.join(' ')}`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    await run('apt-get', ['update', '-qq'], { env });
    await run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], { env, maxBuffer: 64 << 20 });
  }
  if (!(await dockerUp())) {
    // Without iptables or the bridge module (containers, minimal VMs) dockerd must not set up its bridge
    // network; builds then use --network host, which every builder here does anyway.
    let flags = [];
    try {
      execFileSync('iptables', ['-L', '-n'], { stdio: 'ignore' });
      if (!fs.existsSync('/proc/sys/net/bridge')) execFileSync('modprobe', ['br_netfilter'], { stdio: 'ignore' });
    } catch {
      flags = ['--iptables=false', '--bridge=none'];
    }
    const log = fs.openSync('/var/log/dockerd-bench.log', 'a');
    say(`starting dockerd ${flags.join(' ')} (log: /var/log/dockerd-bench.log)`);
    const child = spawn('dockerd', flags, { detached: true, stdio: ['ignore', log, log] });
    child.unref();
    for (let i = 0; i < 100 && !(await dockerUp()); i++) await new Promise((r) => setTimeout(r, 300));
    if (!(await dockerUp())) throw new Error('dockerd did not come up; see /var/log/dockerd-bench.log');
  }
}

/** QEMU user emulation for arm64 binaries, with the fix-binary flag so it works inside containers. */
export async function ensureBinfmt() {
  const entry = '/proc/sys/fs/binfmt_misc/qemu-aarch64';
  if (fs.existsSync(entry) && fs.readFileSync(entry, 'utf8').startsWith('enabled')) return;
  if (!fs.existsSync('/proc/sys/fs/binfmt_misc/register')) {
    await run('mount', ['-t', 'binfmt_misc', 'binfmt_misc', '/proc/sys/fs/binfmt_misc']);
  }
  await run('update-binfmts', ['--enable', 'qemu-aarch64']).catch(() => {});
  if (!fs.existsSync(entry)) throw new Error('qemu-aarch64 is not registered with binfmt_misc (install qemu-user-static and binfmt-support)');
}
