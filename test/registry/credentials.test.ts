// Credentials in the docker config: inline auths, a credsStore and per-registry credHelpers speaking the
// docker-credential-helpers protocol (a small shell helper written here, keeping secrets in a file).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { eraseCredentials, lookupCredentials, storeCredentials } from '../../src/registry/credentials.js';

const HELPER = `#!/bin/sh
# get/store/erase with secrets in $HELPER_DB/<server>.json, as docker-credential-* programs behave.
db="$HELPER_DB"; input=$(cat)
case "$1" in
  get) f="$db/$(printf %s "$input" | tr '/:' '__').json"; if [ -f "$f" ]; then cat "$f"; else echo "credentials not found in native keychain"; exit 1; fi ;;
  store) server=$(printf %s "$input" | sed 's/.*"ServerURL":"\\([^"]*\\)".*/\\1/'); printf %s "$input" > "$db/$(printf %s "$server" | tr '/:' '__').json" ;;
  erase) rm -f "$db/$(printf %s "$input" | tr '/:' '__').json" ;;
esac
`;

describe('docker config credentials', () => {
  let dir: string;
  let savedPath: string | undefined;
  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'creds-test-'));
    await fs.mkdir(path.join(dir, 'bin'));
    await fs.mkdir(path.join(dir, 'db'));
    await fs.writeFile(path.join(dir, 'bin', 'docker-credential-fake'), HELPER, { mode: 0o755 });
    savedPath = process.env.PATH;
    process.env.PATH = `${path.join(dir, 'bin')}:${process.env.PATH}`;
    process.env.HELPER_DB = path.join(dir, 'db');
  });
  afterAll(async () => {
    process.env.PATH = savedPath;
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('stores inline (base64) without a helper, reads it back, erases it', async () => {
    const file = path.join(dir, 'inline.json');
    await storeCredentials('reg.example:5000', { username: 'u', password: 'p:w' }, file);
    const cfg = JSON.parse(await fs.readFile(file, 'utf8'));
    expect(cfg.auths['reg.example:5000'].auth).toBe(Buffer.from('u:p:w').toString('base64'));
    expect((await fs.stat(file)).mode & 0o777).toBe(0o600);
    expect(lookupCredentials('reg.example:5000', file)).toEqual({ username: 'u', password: 'p:w' });
    expect(lookupCredentials('other.example', file)).toBeUndefined();
    expect(await eraseCredentials('reg.example:5000', file)).toBe(true);
    expect(lookupCredentials('reg.example:5000', file)).toBeUndefined();
  });

  it('uses credsStore, and credHelpers for their registry, keeping secrets out of the file', async () => {
    const file = path.join(dir, 'helper.json');
    await fs.writeFile(file, JSON.stringify({ credsStore: 'fake', credHelpers: { 'special.example': 'missing' }, auths: {} }));
    await storeCredentials('reg.example', { username: 'alice', password: 'secret' }, file);
    expect(await fs.readFile(file, 'utf8')).not.toContain('secret');
    expect(lookupCredentials('reg.example', file)).toEqual({ username: 'alice', password: 'secret' });
    // A registry the helper knows nothing of: anonymous, not an error.
    expect(lookupCredentials('nothing.example', file)).toBeUndefined();
    // credHelpers wins for its registry: a helper that does not exist is an error naming it.
    expect(() => lookupCredentials('special.example', file)).toThrow(/docker-credential-missing/);
    await eraseCredentials('reg.example', file);
    expect(lookupCredentials('reg.example', file)).toBeUndefined();
  });
});
