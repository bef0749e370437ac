// Calls made as raw system calls because glibc 2.33 gave their wrappers new symbol versions (before, they
// were inline wrappers around __fxstatat / __xmknod): a binary compiled against a current glibc, as the
// prebuilds are (scripts/prebuild.sh), then still loads on glibc 2.28, what official Node 20+ builds
// require (Debian 11, Ubuntu 20.04, RHEL 8). On x86-64 and arm64 glibc's struct stat is the kernel's.
#ifndef COMPAT_H
#define COMPAT_H
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static inline int fsx_fstatat(int dirfd, const char *path, struct stat *st, int flags) {
  return (int)syscall(SYS_newfstatat, dirfd, path, st, flags);
}

static inline int fsx_lstat(const char *path, struct stat *st) {
  return fsx_fstatat(AT_FDCWD, path, st, AT_SYMLINK_NOFOLLOW);
}

static inline int fsx_mknod(const char *path, mode_t mode, dev_t dev) {
  // The kernel takes the device number as 32 bits (its encoding is glibc's low half).
  if (dev != (unsigned int)dev) { errno = EOVERFLOW; return -1; }
  return (int)syscall(SYS_mknodat, AT_FDCWD, path, mode, (unsigned int)dev);
}

#endif
