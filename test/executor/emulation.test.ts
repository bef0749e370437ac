import { describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ensureEmulator, needsEmulation, EmulatorMissingError } from '../../src/executor/emulation.js';

const amd64 = { os: 'linux', architecture: 'amd64' };
const arm64 = { os: 'linux', architecture: 'arm64', variant: 'v8' };

async function fakeBinfmt(entries: Record<string, string>): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'binfmt-'));
  await fs.writeFile(path.join(dir, 'register'), '');
  await fs.writeFile(path.join(dir, 'status'), 'enabled\n');
  for (const [name, text] of Object.entries(entries)) await fs.writeFile(path.join(dir, name), text);
  return dir;
}

describe('QEMU emulator detection', () => {
  it('knows what the host runs natively', () => {
    expect(needsEmulation(amd64, amd64)).toBe(false);
    expect(needsEmulation({ os: 'linux', architecture: '386' }, amd64)).toBe(false);
    expect(needsEmulation(arm64, amd64)).toBe(true);
    expect(needsEmulation(amd64, arm64)).toBe(true);
  });

  it('accepts an enabled entry with the fix-binary flag', async () => {
    const dir = await fakeBinfmt({ 'qemu-aarch64': 'enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\noffset 0\n' });
    await expect(ensureEmulator(arm64, amd64, dir)).resolves.toBeUndefined();
  });

  it('names the platform and the fix when no emulator is registered', async () => {
    const dir = await fakeBinfmt({});
    const err = await ensureEmulator(arm64, amd64, dir).catch((e) => e);
    expect(err).toBeInstanceOf(EmulatorMissingError);
    expect(err.message).toBe('cannot run linux/arm64/v8 binaries on this linux/amd64 host: no QEMU emulator for aarch64 is registered in binfmt_misc; ' +
      'install QEMU user emulation with "apt-get install qemu-user-static binfmt-support", then run "builder install-emulators" as root');
  });

  it('refuses a disabled entry or one without the fix-binary flag', async () => {
    const disabled = await fakeBinfmt({ 'qemu-arm': 'disabled\ninterpreter /usr/bin/qemu-arm-static\nflags: F\n' });
    await expect(ensureEmulator({ os: 'linux', architecture: 'arm', variant: 'v7' }, amd64, disabled)).rejects.toThrow(/qemu-arm is disabled/);
    const noFix = await fakeBinfmt({ 'qemu-riscv64': 'enabled\ninterpreter /usr/bin/qemu-riscv64-static\nflags: \n' });
    await expect(ensureEmulator({ os: 'linux', architecture: 'riscv64' }, amd64, noFix)).rejects.toThrow(/lacks the fix-binary \(F\) flag/);
  });
});
