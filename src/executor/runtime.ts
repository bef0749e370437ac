// The OCI runtime's command line (runc, crun, or a runc-compatible binary): finding the binary, and its
// management commands (list, kill, delete) against our own state root, never the system-wide one.
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { RuntimeError, RuntimeNotFoundError } from './errors.js';

// Runtimes install to sbin, which a non-login PATH may lack.
const EXTRA_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

/** Absolute path of the runtime's executable. */
export async function findRuntime(runtime: string): Promise<string> {
  const candidates = runtime.includes('/')
    ? [path.resolve(runtime)]
    : [...(process.env.PATH ?? '').split(':').filter(Boolean), ...EXTRA_DIRS].map((d) => path.join(d, runtime));
  for (const c of candidates) {
    try {
      await fs.access(c, fs.constants.X_OK);
      if ((await fs.stat(c)).isFile()) return c;
    } catch {
      // not this one
    }
  }
  throw new RuntimeNotFoundError(runtime);
}

/**
 * crun refuses to run on a hybrid (v1 + v2) cgroup host whose v2 hierarchy has controllers; runc copes.
 * For crun there, each command runs in a private mount namespace without the v2 mount, where crun sees a
 * v1-only host and manages the container's cgroups (devices included) as runc does. Empty otherwise.
 */
export async function hybridCgroupsWrapper(bin: string): Promise<string[]> {
  if (path.basename(bin) !== 'crun') return [];
  const unified = await fs.access('/sys/fs/cgroup/cgroup.controllers').then(() => true, () => false);
  if (unified) return [];
  const controllers = await fs.readFile('/sys/fs/cgroup/unified/cgroup.controllers', 'utf8').catch(() => '');
  if (controllers.trim() === '') return [];
  return ['unshare', '--mount', '--', 'sh', '-c', 'umount -l /sys/fs/cgroup/unified && exec "$0" "$@"'];
}

export interface RuntimeResult {
  code: number;
  stdout: string;
  stderr: string;
}

export class RuntimeCli {
  /** `wrapper`: a command that execs the runtime, given as its arguments (see hybridCgroupsWrapper). */
  constructor(readonly bin: string, readonly stateRoot: string, private readonly wrapper: string[] = []) {}

  /** File and arguments to spawn for a runtime command. */
  command(args: string[]): [string, string[]] {
    const argv = [...this.wrapper, this.bin, '--root', this.stateRoot, ...args];
    return [argv[0], argv.slice(1)];
  }

  /** Runs a command to completion; never rejects on a non-zero exit. */
  exec(args: string[]): Promise<RuntimeResult> {
    return new Promise((resolve, reject) => {
      execFile(...this.command(args), (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') return reject(err);
        resolve({ code: err ? (err.code as number) : 0, stdout, stderr });
      });
    });
  }

  /** IDs of the containers in our state root. */
  async list(): Promise<string[]> {
    const r = await this.exec(['list', '-q']);
    if (r.code !== 0) throw new RuntimeError(`${path.basename(this.bin)} list: ${r.stderr.trim()}`);
    return r.stdout.split('\n').map((l) => l.trim()).filter(Boolean);
  }

  /** Sends SIGKILL to the container's init; false when the container is not (or no longer, or not yet) there. */
  async kill(id: string): Promise<boolean> {
    return (await this.exec(['kill', id, 'KILL'])).code === 0;
  }

  /** Kills and removes a container; one that does not exist is not an error. */
  async delete(id: string): Promise<void> {
    const r = await this.exec(['delete', '--force', id]);
    if (r.code !== 0 && !isNotExist(r.stderr)) {
      throw new RuntimeError(`${path.basename(this.bin)} delete ${id}: ${r.stderr.trim()}`);
    }
  }
}

// Runtimes report errors only as text; these are runc's and crun's wordings.
function isNotExist(stderr: string): boolean {
  const s = stderr.toLowerCase();
  return s.includes('does not exist') || s.includes('not found') || s.includes('no such file');
}
