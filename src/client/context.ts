// A build context given as a tar stream (an embedder's, or a `builder serve` request body), unpacked into a
// private temporary directory. GNU tar refuses `..` members and strips leading slashes, so nothing lands
// outside it.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';

export class ContextTarError extends Error {
  readonly code = 'BAD_CONTEXT';
}

export async function unpackContext(input: NodeJS.ReadableStream): Promise<{ dir: string; remove(): Promise<void> }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'builder-ctx-'));
  const remove = () => fs.rm(dir, { recursive: true, force: true });
  try {
    await new Promise<void>((resolve, reject) => {
      const tar = spawn('tar', ['-x', '-f', '-', '-C', dir, '--no-same-owner', '--no-overwrite-dir'], { stdio: ['pipe', 'ignore', 'pipe'] });
      let stderr = '';
      tar.stderr.on('data', (d) => (stderr += d));
      tar.on('error', reject);
      tar.on('close', (code) => (code === 0 ? resolve() : reject(new ContextTarError(stderr.trim().split('\n').slice(0, 2).join('; ') || `tar exited with ${code}`))));
      input.pipe(tar.stdin);
      tar.stdin.on('error', () => undefined);
    });
  } catch (e) {
    await remove();
    throw e;
  }
  return { dir, remove };
}
