// Paths of the test fixtures that testdata/make-busybox.sh makes from Debian packages, and a way to make
// them on demand (the script skips its work when the layout is already complete).
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';

const run = promisify(execFile);

export const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const makeBusyboxScript = path.join(projectRoot, 'testdata/make-busybox.sh');
/** OCI layout holding `busybox:1.35`: an index of linux/amd64 and linux/arm64/v8. */
export const busyboxLayout = path.join(projectRoot, 'testdata/images/busybox');
export const busyboxTag = '1.35';
/** The fixture's image config Env, as the script writes it. */
export const busyboxPath = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export async function ensureBusybox(): Promise<string> {
  if (!fs.existsSync(path.join(busyboxLayout, 'index.json'))) {
    await run('bash', [makeBusyboxScript], { maxBuffer: 16 << 20 });
  }
  return busyboxLayout;
}

/** OCI layout holding `22-bookworm`: Node.js on Debian bookworm with runc and zstd (linux/amd64), which
 * scripts/make-node-image.sh makes from the npm and Debian package registries; it stands in for the base
 * images of deploy/Dockerfile. */
export const nodeLayout = path.join(projectRoot, 'testdata/images/node');
export const nodeTag = '22-bookworm';

/** Makes the Node base image when missing or outdated (the script returns at once when it is current). */
export async function ensureNodeImage(): Promise<string> {
  await run('bash', [path.join(projectRoot, 'scripts/make-node-image.sh')], { maxBuffer: 16 << 20 });
  return nodeLayout;
}
