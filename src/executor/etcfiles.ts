// The /etc/hosts and /etc/resolv.conf a RUN step sees: generated per run and bind-mounted read-only, so
// nothing the build writes to them (and nothing of the host's files) ends up in a layer.
import fs from 'node:fs/promises';
import { DEFAULT_HOSTNAME } from './spec.js';

/** `/etc/hosts` content like BuildKit's, with `host:ip` extra entries (`--add-host`) appended. */
export function hostsFile(extraHosts: string[] = []): string {
  let text = `127.0.0.1\tlocalhost ${DEFAULT_HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n`;
  for (const entry of extraHosts) {
    // The host name has no colon; the IP (v6) may have several.
    const sep = entry.indexOf(':');
    text += `${entry.slice(sep + 1)}\t${entry.slice(0, sep)}\n`;
  }
  return text;
}

/** The host's resolv.conf (a symlink such as systemd-resolved's is followed); empty when there is none. */
export async function resolvConf(hostFile = '/etc/resolv.conf'): Promise<string> {
  try {
    return await fs.readFile(hostFile, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw e;
  }
}
