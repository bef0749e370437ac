// A hard-link clone of a snapshot tree on libuv's threadpool (the refresh of a COPY, src/worker/worker.ts):
// the main thread meanwhile compares the build context with the previous snapshot. Creating inodes is what
// a copy spends its time on; links are cheap, but twenty thousand of them still take a quarter second.
#define _GNU_SOURCE // O_PATH
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <node_api.h>

#include "clone.h"
#include "compat.h"
#include "jobs.h"
#include "names.h"

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  char *from, *to;
  int refused;          // an overlay whiteout or opaque directory: not a tree this clone takes on
  int err;
  const char *syscall;
  char failed[PATH_MAX];
} clone_job;

static int fail(clone_job *job, const char *syscall, const char *path) {
  job->err = errno;
  job->syscall = syscall;
  snprintf(job->failed, sizeof job->failed, "%s", path);
  return -1;
}

// Owner, mode and extended attributes of a directory (overlay's own trusted.overlay.* left out).
static int copy_dir_meta(clone_job *job, const char *src, const char *dst, const struct stat *st) {
  if (lchown(dst, st->st_uid, st->st_gid) != 0) return fail(job, "lchown", dst);
  if (chmod(dst, st->st_mode & 07777) != 0) return fail(job, "chmod", dst);
  char list[4096];
  ssize_t len = llistxattr(src, list, sizeof list);
  if (len == 0 || (len < 0 && errno == ENOTSUP)) return 0;
  if (len < 0) return fail(job, "llistxattr", src); // ERANGE too: more names than any snapshot has
  enum { VALUE_MAX = 65536 }; // the largest value Linux stores
  char *value = malloc(VALUE_MAX);
  if (!value) { errno = ENOMEM; return fail(job, "malloc", src); }
  int rc = 0;
  for (char *name = list; rc == 0 && name < list + len; name += strlen(name) + 1) {
    if (strcmp(name, "trusted.overlay.opaque") == 0) { job->refused = 1; rc = -1; break; }
    if (strncmp(name, "trusted.overlay.", 16) == 0) continue;
    ssize_t vlen = lgetxattr(src, name, value, VALUE_MAX);
    if (vlen < 0) {
      if (errno != ENODATA) rc = fail(job, "lgetxattr", src);
      continue;
    }
    if (lsetxattr(dst, name, value, (size_t)vlen, 0) != 0) rc = fail(job, "lsetxattr", dst);
  }
  free(value);
  return rc;
}

// Children of `src` into the existing directory `dst`; directory times are set after their children.
static int clone_dir(clone_job *job, const char *src, const char *dst) {
  DIR *d = opendir(src);
  if (!d) return fail(job, "opendir", src);
  // Entries by name in open directories: the kernel does not walk the whole path for each.
  int src_fd = dirfd(d), dst_fd = open(dst, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dst_fd < 0) { closedir(d); return fail(job, "open", dst); }
  // On the heap: a frame per directory level must stay small on a threadpool thread's stack.
  char *s = malloc(2 * PATH_MAX), *t = s ? s + PATH_MAX : NULL;
  if (!s) { close(dst_fd); closedir(d); errno = ENOMEM; return fail(job, "malloc", src); }
  int rc = 0;
  struct dirent *e;
  while (rc == 0) {
    errno = 0;
    if (!(e = readdir(d))) {
      if (errno) rc = fail(job, "readdir", src);
      break;
    }
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    if (snprintf(s, PATH_MAX, "%s/%s", src, e->d_name) >= PATH_MAX || snprintf(t, PATH_MAX, "%s/%s", dst, e->d_name) >= PATH_MAX) {
      errno = ENAMETOOLONG;
      rc = fail(job, "clone", s);
      break;
    }
    unsigned char type = e->d_type;
    struct stat st;
    if (type == DT_UNKNOWN || type == DT_DIR || type == DT_CHR) {
      if (fsx_fstatat(src_fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) { rc = fail(job, "lstat", s); break; }
      type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISCHR(st.st_mode) ? DT_CHR : DT_REG;
    }
    if (type == DT_DIR) {
      if (mkdirat(dst_fd, e->d_name, 0700) != 0) { rc = fail(job, "mkdir", t); break; }
      if (copy_dir_meta(job, s, t, &st) != 0 || clone_dir(job, s, t) != 0) { rc = -1; break; }
      struct timespec times[2] = { st.st_atim, st.st_mtim };
      if (utimensat(dst_fd, e->d_name, times, AT_SYMLINK_NOFOLLOW) != 0) { rc = fail(job, "utimensat", t); break; }
      continue;
    }
    if (type == DT_CHR && st.st_rdev == 0) { job->refused = 1; rc = -1; break; } // a whiteout
    if (linkat(src_fd, e->d_name, dst_fd, e->d_name, 0) != 0) { rc = fail(job, "link", t); break; }
  }
  free(s);
  close(dst_fd);
  closedir(d);
  return rc;
}

static void clone_execute(napi_env env, void *data) {
  (void)env;
  clone_job *job = data;
  struct stat st;
  if (fsx_lstat(job->from, &st) != 0) { fail(job, "lstat", job->from); return; }
  if (copy_dir_meta(job, job->from, job->to, &st) != 0 || clone_dir(job, job->from, job->to) != 0) return;
  struct timespec times[2] = { st.st_atim, st.st_mtim };
  if (utimensat(AT_FDCWD, job->to, times, AT_SYMLINK_NOFOLLOW) != 0) fail(job, "utimensat", job->to);
}

static void clone_complete(napi_env env, napi_status status, void *data) {
  clone_job *job = data;
  napi_value result;
  if (status == napi_ok && job->refused) {
    napi_get_boolean(env, false, &result);
    napi_resolve_deferred(env, job->deferred, result);
  } else if (status == napi_ok && !job->syscall) {
    napi_get_boolean(env, true, &result);
    napi_resolve_deferred(env, job->deferred, result);
  } else {
    napi_reject_deferred(env, job->deferred, errno_error(env, job->syscall ? job->syscall : "clone", job->err, "cancelled", job->failed));
  }
  napi_delete_async_work(env, job->work);
  free(job->from);
  free(job->to);
  free(job);
}

static char *dup_string(napi_env env, napi_value v) {
  return names_dup(env, v, PATH_MAX - 1);
}

// cloneTree(from, to) -> Promise<boolean>. `to` is an existing empty directory. Directories are made with
// the owner, mode, extended attributes and times of `from`'s, everything else is hard-linked. False when
// the tree holds an overlay whiteout or opaque directory (left part-made: the caller removes `to`).
static napi_value cloneTree(napi_env env, napi_callback_info info) {
  size_t argc = 2; napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  clone_job *job = calloc(1, sizeof *job);
  if (!job || !(job->from = dup_string(env, argv[0])) || !(job->to = dup_string(env, argv[1]))) {
    if (job) { free(job->from); free(job); }
    napi_throw_type_error(env, NULL, "cloneTree(from, to)");
    return NULL;
  }
  return queue_job(env, "cloneTree", clone_execute, clone_complete, job, &job->deferred, &job->work);
}

void clone_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"cloneTree", NULL, cloneTree, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
