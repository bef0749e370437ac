// A minimal busybox root filesystem for executor tests: /bin/busybox with applet links, and a user `app`
// (1000:1000) who is also in group `staff` (50).
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

const APPLETS = ['sh', 'echo', 'id', 'cat', 'ls', 'env', 'pwd', 'sleep', 'touch', 'false', 'ip', 'hostname', 'stat'];

export async function makeRootfs(): Promise<{ dir: string; rootfs: string }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'executor-test-'));
  const rootfs = path.join(dir, 'rootfs');
  await fs.mkdir(path.join(rootfs, 'bin'), { recursive: true });
  await fs.copyFile('/bin/busybox', path.join(rootfs, 'bin/busybox'));
  await fs.chmod(path.join(rootfs, 'bin/busybox'), 0o755);
  for (const a of APPLETS) await fs.symlink('busybox', path.join(rootfs, 'bin', a));
  return { dir, rootfs };
}

export async function addUsers(rootfs: string): Promise<void> {
  await fs.mkdir(path.join(rootfs, 'etc'), { recursive: true });
  await fs.writeFile(path.join(rootfs, 'etc/passwd'),
    'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n');
  await fs.writeFile(path.join(rootfs, 'etc/group'), 'root:x:0:\nstaff:x:50:app\napp:x:1000:\n');
}
