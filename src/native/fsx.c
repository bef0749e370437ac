// Filesystem calls Node does not expose: extended attributes (xattrs on symlinks included,
// security.capability and overlay's trusted.* among them), mknod for overlay whiteouts, and an in-kernel
// copy between open files (copy_file_range, sendfile as fallback) for writing archives of stored blobs, and
// an atomic swap of two paths (renameat2 RENAME_EXCHANGE).
// (segment.c adds the async segment reading and hashing of layer archives, clone.c the async clone of a
// snapshot tree, mount.c mount and umount on the threadpool, scan.c directory scans.)
// Synchronous on purpose: each call is one short syscall on a local filesystem (copies go in chunks).
#define _GNU_SOURCE // copy_file_range, renameat2
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <sys/sendfile.h>
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>
#include <node_api.h>

#include "clone.h"
#include "compat.h"
#include "mount.h"
#include "names.h"
#include "scan.h"
#include "segment.h"

#define PATH_MAX_LEN 4096

static napi_value throw_errno(napi_env env, const char *syscall, const char *path, int err) {
  char msg[PATH_MAX_LEN + 128];
  snprintf(msg, sizeof msg, "%s: %s '%s'", syscall, strerror(err), path);
  napi_value message, error, code;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, NULL, message, &error);
  const char *name = err == ENOENT ? "ENOENT" : err == ENODATA ? "ENODATA" : err == ENOTSUP ? "ENOTSUP"
                   : err == EPERM ? "EPERM" : err == EEXIST ? "EEXIST" : err == EACCES ? "EACCES"
                   : err == EINVAL ? "EINVAL" : err == ENOSYS ? "ENOSYS" : err == EXDEV ? "EXDEV" : "EIO";
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code);
  napi_set_named_property(env, error, "code", code);
  napi_value errnoValue;
  napi_create_int32(env, err, &errnoValue);
  napi_set_named_property(env, error, "errno", errnoValue);
  napi_throw(env, error);
  return NULL;
}

// A path or attribute name as its bytes (src/native/names.h).
static int get_string(napi_env env, napi_value v, char *buf, size_t len) {
  if (names_bytes(env, v, buf, len, NULL) != 0) {
    napi_throw_type_error(env, NULL, "expected a string (a path of at most 4095 bytes, an attribute name of at most 255)");
    return -1;
  }
  return 0;
}

// llistxattr(path) -> string[]
static napi_value list(napi_env env, napi_callback_info info) {
  size_t argc = 1; napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char path[PATH_MAX_LEN];
  if (get_string(env, argv[0], path, sizeof path)) return NULL;
  ssize_t size = llistxattr(path, NULL, 0);
  if (size < 0) {
    if (errno == ENOTSUP) { napi_value arr; napi_create_array(env, &arr); return arr; }
    return throw_errno(env, "llistxattr", path, errno);
  }
  char *buf = malloc(size + 1);
  size = size ? llistxattr(path, buf, size) : 0;
  if (size < 0) { int e = errno; free(buf); return throw_errno(env, "llistxattr", path, e); }
  napi_value arr; napi_create_array(env, &arr);
  uint32_t idx = 0;
  for (ssize_t off = 0; off < size;) {
    size_t l = strlen(buf + off);
    napi_value s; napi_create_string_utf8(env, buf + off, l, &s);
    napi_set_element(env, arr, idx++, s);
    off += l + 1;
  }
  free(buf);
  return arr;
}

// lgetxattr(path, name) -> Buffer | null (null when absent)
static napi_value get(napi_env env, napi_callback_info info) {
  size_t argc = 2; napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char path[PATH_MAX_LEN], name[256];
  if (get_string(env, argv[0], path, sizeof path) || get_string(env, argv[1], name, sizeof name)) return NULL;
  ssize_t size = lgetxattr(path, name, NULL, 0);
  if (size < 0) {
    if (errno == ENODATA || errno == ENOTSUP) { napi_value n; napi_get_null(env, &n); return n; }
    return throw_errno(env, "lgetxattr", path, errno);
  }
  void *data; napi_value result;
  napi_create_buffer(env, size, &data, &result);
  if (size && lgetxattr(path, name, data, size) < 0) return throw_errno(env, "lgetxattr", path, errno);
  return result;
}

// lsetxattr(path, name, Buffer)
static napi_value set(napi_env env, napi_callback_info info) {
  size_t argc = 3; napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char path[PATH_MAX_LEN], name[256];
  if (get_string(env, argv[0], path, sizeof path) || get_string(env, argv[1], name, sizeof name)) return NULL;
  void *data; size_t len;
  if (napi_get_buffer_info(env, argv[2], &data, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "expected a Buffer");
    return NULL;
  }
  if (lsetxattr(path, name, data, len, 0) < 0) return throw_errno(env, "lsetxattr", path, errno);
  return NULL;
}

// lremovexattr(path, name)
static napi_value removeAttr(napi_env env, napi_callback_info info) {
  size_t argc = 2; napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char path[PATH_MAX_LEN], name[256];
  if (get_string(env, argv[0], path, sizeof path) || get_string(env, argv[1], name, sizeof name)) return NULL;
  if (lremovexattr(path, name) < 0 && errno != ENODATA) return throw_errno(env, "lremovexattr", path, errno);
  return NULL;
}

// mknod(path, mode, major, minor): mode includes the file type bits (S_IFCHR, S_IFBLK, S_IFIFO).
static napi_value mknodFn(napi_env env, napi_callback_info info) {
  size_t argc = 4; napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char path[PATH_MAX_LEN];
  if (get_string(env, argv[0], path, sizeof path)) return NULL;
  uint32_t mode, major, minor;
  napi_get_value_uint32(env, argv[1], &mode);
  napi_get_value_uint32(env, argv[2], &major);
  napi_get_value_uint32(env, argv[3], &minor);
  if (fsx_mknod(path, mode, makedev(major, minor)) < 0) return throw_errno(env, "mknod", path, errno);
  return NULL;
}

// copyRange(inFd, outFd, length) -> bytes copied from inFd's position to outFd's (both advance); fewer than
// `length` only at the end of the input.
static napi_value copyRange(napi_env env, napi_callback_info info) {
  size_t argc = 3; napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t in, out; int64_t len;
  napi_get_value_int32(env, argv[0], &in);
  napi_get_value_int32(env, argv[1], &out);
  napi_get_value_int64(env, argv[2], &len);
  int64_t done = 0;
  int use_sendfile = 0;
  while (done < len) {
    size_t want = (size_t)(len - done);
    ssize_t n = use_sendfile ? sendfile(out, in, NULL, want) : copy_file_range(in, NULL, out, NULL, want, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (!use_sendfile && (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP)) { use_sendfile = 1; continue; }
      return throw_errno(env, use_sendfile ? "sendfile" : "copy_file_range", "", errno);
    }
    if (n == 0) break;
    done += n;
  }
  napi_value result;
  napi_create_int64(env, done, &result);
  return result;
}

// scanDir(dir, xattrs = true) -> { names: string[], stats: Float64Array } with SCAN_FIELDS numbers per
// entry (scan.h): what a layer walk needs from lstat and (unless `xattrs` is false) the entry's extended
// attributes, in one call per directory instead of several per entry (and no Stats objects to collect).
static napi_value scanDir(napi_env env, napi_callback_info info) {
  size_t argc = 2; napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char dir[PATH_MAX_LEN];
  if (get_string(env, argv[0], dir, sizeof dir)) return NULL;
  bool xattrs = true;
  napi_valuetype t;
  if (argc > 1 && napi_typeof(env, argv[1], &t) == napi_ok && t == napi_boolean) napi_get_value_bool(env, argv[1], &xattrs);
  scan_dir d = {0};
  int err = 0;
  const char *syscall = NULL;
  char failed[PATH_MAX_LEN];
  if (scan_dir_read(dir, xattrs, &d, &err, &syscall, failed) != 0) {
    scan_dir_free(&d);
    return throw_errno(env, syscall, failed, err);
  }
  napi_value names;
  napi_create_array_with_length(env, d.n, &names);
  for (size_t i = 0; i < d.n; i++) {
    const char *name = d.names + d.name_off[i];
    napi_value s;
    if (names_string(env, name, strlen(name), &s) != napi_ok) {
      scan_dir_free(&d);
      napi_throw_error(env, NULL, "scanDir: out of memory");
      return NULL;
    }
    napi_set_element(env, names, (uint32_t)i, s);
  }
  napi_value ab, arr, result;
  void *data;
  napi_create_arraybuffer(env, d.n * SCAN_FIELDS * sizeof(double), &data, &ab);
  if (d.n) memcpy(data, d.stats, d.n * SCAN_FIELDS * sizeof(double));
  napi_create_typedarray(env, napi_float64_array, d.n * SCAN_FIELDS, ab, 0, &arr);
  scan_dir_free(&d);
  napi_create_object(env, &result);
  napi_set_named_property(env, result, "names", names);
  napi_set_named_property(env, result, "stats", arr);
  return result;
}

// exchange(a, b): swaps two paths atomically (renameat2 RENAME_EXCHANGE). Throws with code ENOENT when
// either is missing, EINVAL/ENOSYS/ENOTSUP where the filesystem or kernel cannot.
static napi_value exchange(napi_env env, napi_callback_info info) {
  size_t argc = 2; napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char a[PATH_MAX_LEN], b[PATH_MAX_LEN];
  if (get_string(env, argv[0], a, sizeof a) || get_string(env, argv[1], b, sizeof b)) return NULL;
  if (renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) != 0) return throw_errno(env, "renameat2", b, errno);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"list", NULL, list, NULL, NULL, NULL, napi_default, NULL},
    {"get", NULL, get, NULL, NULL, NULL, napi_default, NULL},
    {"set", NULL, set, NULL, NULL, NULL, napi_default, NULL},
    {"remove", NULL, removeAttr, NULL, NULL, NULL, napi_default, NULL},
    {"mknod", NULL, mknodFn, NULL, NULL, NULL, napi_default, NULL},
    {"copyRange", NULL, copyRange, NULL, NULL, NULL, napi_default, NULL},
    {"exchange", NULL, exchange, NULL, NULL, NULL, napi_default, NULL},
    {"scanDir", NULL, scanDir, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
#ifdef FSX_SOURCE_DIGEST
  // The digest of the sources a prebuild was compiled from (scripts/prebuild.sh), which tests compare with
  // the sources beside it: a prebuild older than its sources fails them.
  napi_value digest;
  napi_create_string_utf8(env, FSX_SOURCE_DIGEST, NAPI_AUTO_LENGTH, &digest);
  napi_set_named_property(env, exports, "sourceDigest", digest);
#endif
  segment_init(env, exports);
  clone_init(env, exports);
  mount_init(env, exports);
  scan_init(env, exports);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
