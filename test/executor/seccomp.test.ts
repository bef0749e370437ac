import { describe, expect, it } from 'vitest';
import { defaultSeccompProfile } from '../../src/executor/seccomp.js';
import { DEFAULT_CAPABILITIES } from '../../src/executor/spec.js';

const allowedNames = (p: ReturnType<typeof defaultSeccompProfile>) =>
  p.syscalls.filter((r) => r.action === 'SCMP_ACT_ALLOW' && !r.args).flatMap((r) => r.names);
const deniedNames = (p: ReturnType<typeof defaultSeccompProfile>) =>
  p.syscalls.filter((r) => r.action === 'SCMP_ACT_ERRNO').flatMap((r) => r.names);

describe('default seccomp profile', () => {
  it('with the default capabilities denies namespace, mount and keyring syscalls', () => {
    const p = defaultSeccompProfile(DEFAULT_CAPABILITIES, 'x64');
    expect(p.architectures).toEqual(['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32']);
    const allowed = allowedNames(p);
    expect(allowed).toEqual(expect.arrayContaining(['read', 'execve', 'chroot', 'arch_prctl', 'ptrace', 'vmsplice', 'io_pgetevents', 'futex_waitv']));
    // Reaching into another process's descriptors is ptrace's business, as in moby's profile.
    expect(allowed).not.toContain('pidfd_getfd');
    expect(deniedNames(p)).toContain('pidfd_getfd');
    expect(allowedNames(defaultSeccompProfile([...DEFAULT_CAPABILITIES, 'CAP_SYS_PTRACE'], 'x64'))).toContain('pidfd_getfd');
    for (const n of ['mount', 'unshare', 'setns', 'keyctl', 'bpf', 'reboot', 'init_module']) expect(allowed).not.toContain(n);
    expect(deniedNames(p)).toEqual(expect.arrayContaining(['mount', 'unshare', 'setns', 'reboot', 'init_module', 'clone3']));
    // clone only without namespace flags.
    const clone = p.syscalls.find((r) => r.names.includes('clone'))!;
    expect(clone.args).toEqual([{ index: 0, value: 0x7e020000, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }]);
    // A syscall newer than the list fails with ENOSYS so libc can fall back.
    expect(p.defaultErrnoRet).toBe(38);
  });

  it('allows what a capability guards when the container has it', () => {
    const p = defaultSeccompProfile([...DEFAULT_CAPABILITIES, 'CAP_SYS_ADMIN'], 'arm64');
    expect(p.architectures).toEqual(['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM']);
    const allowed = allowedNames(p);
    expect(allowed).toEqual(expect.arrayContaining(['mount', 'unshare', 'clone', 'clone3', 'breakpoint']));
    expect(allowed).not.toContain('arch_prctl');
    expect(p.syscalls.some((r) => r.args && r.names.includes('clone'))).toBe(false);
  });
});
