// mount(2) and umount2(2) on libuv's threadpool (src/snapshot/mount.ts): a build mounts and unmounts
// snapshots several times per step, and running mount(8)/umount(8) for each costs a fork of the Node
// process and an exec, some milliseconds of CPU apiece, which dominated builds of many small steps.
// A mount whose options name directories relative to `cwd` (overlay's lowerdir list must fit one page) is
// made by a child sharing the process's memory and files but not its working directory (clone without CLONE_FS,
// with CLONE_VFORK: the pool thread waits for it, as posix_spawn's vfork does), so no other thread sees
// the chdir. Not pthread_create: glibc 2.34 gave it a new symbol version, and the prebuilds load on 2.28.
#define _GNU_SOURCE // clone
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>
#include <node_api.h>

#include "jobs.h"
#include "mount.h"
#include "names.h"

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  char *source, *target, *fstype, *data, *cwd;
  unsigned long flags;
  int umount;           // umount2(target, flags) instead of mount
  int err;
  const char *syscall;
} mount_job;

static void do_mount(mount_job *job) {
  if (job->umount) {
    if (umount2(job->target, (int)job->flags) != 0) { job->err = errno; job->syscall = "umount2"; }
    return;
  }
  if (job->cwd && chdir(job->cwd) != 0) { job->err = errno; job->syscall = "chdir"; return; }
  if (mount(job->source, job->target, job->fstype, job->flags, job->data) != 0) { job->err = errno; job->syscall = "mount"; }
}

// The child's body: it shares the memory (the job) and runs while the pool thread waits.
static int mount_child(void *data) {
  do_mount(data);
  return 0;
}

#define CHILD_STACK (64 * 1024)

static void mount_execute(napi_env env, void *data) {
  (void)env;
  mount_job *job = data;
  if (!job->cwd) { do_mount(job); return; }
  char *stack = malloc(CHILD_STACK);
  if (!stack) { job->err = ENOMEM; job->syscall = "malloc"; return; }
  // Stacks grow down on x86-64 and arm64; the top, 16-byte aligned.
  // CLONE_FILES: the fd table shared, not copied; a copy would hold whatever other threads have open at
  // this moment, so an unmount elsewhere meanwhile would find its mount busy.
  pid_t pid = clone(mount_child, stack + CHILD_STACK, CLONE_VM | CLONE_FILES | CLONE_VFORK, job);
  if (pid < 0) {
    job->err = errno; job->syscall = "clone";
  } else {
    int status;
    while (waitpid(pid, &status, __WALL) < 0 && errno == EINTR) {}
  }
  free(stack);
}

static void mount_complete(napi_env env, napi_status status, void *data) {
  mount_job *job = data;
  if (status == napi_ok && !job->syscall) {
    napi_value undef;
    napi_get_undefined(env, &undef);
    napi_resolve_deferred(env, job->deferred, undef);
  } else {
    napi_reject_deferred(env, job->deferred, errno_error(env, job->syscall ? job->syscall : "mount", job->err, "cancelled", job->target));
  }
  napi_delete_async_work(env, job->work);
  free(job->source); free(job->target); free(job->fstype); free(job->data); free(job->cwd);
  free(job);
}

// A string argument, or NULL for null/undefined; *bad set when it is neither.
static char *opt_string(napi_env env, napi_value v, size_t max, int *bad) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t == napi_null || t == napi_undefined) return NULL;
  char *s = names_dup(env, v, max);
  if (!s) *bad = 1;
  return s;
}

// mount(source|null, target, fstype|null, flags, data|null, cwd|null) -> Promise<void>; rejects with an
// Error carrying `errno`. `data` (the options) is at most one page, as the kernel takes it.
static napi_value mountFn(napi_env env, napi_callback_info info) {
  size_t argc = 6; napi_value argv[6];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  mount_job *job = calloc(1, sizeof *job);
  int bad = argc < 6 || !job;
  int64_t flags = 0;
  if (!bad) {
    job->source = opt_string(env, argv[0], PATH_MAX - 1, &bad);
    job->target = opt_string(env, argv[1], PATH_MAX - 1, &bad);
    job->fstype = opt_string(env, argv[2], 255, &bad);
    if (napi_get_value_int64(env, argv[3], &flags) != napi_ok || flags < 0) bad = 1;
    job->data = opt_string(env, argv[4], 4095, &bad);
    job->cwd = opt_string(env, argv[5], PATH_MAX - 1, &bad);
    if (!job->target) bad = 1;
  }
  if (bad) {
    if (job) { free(job->source); free(job->target); free(job->fstype); free(job->data); free(job->cwd); free(job); }
    napi_throw_type_error(env, NULL, "mount(source, target, fstype, flags, data, cwd)");
    return NULL;
  }
  job->flags = (unsigned long)flags;
  return queue_job(env, "mount", mount_execute, mount_complete, job, &job->deferred, &job->work);
}

// umount(target, flags) -> Promise<void> (umount2; flags: MNT_DETACH = 2 for a lazy unmount).
static napi_value umountFn(napi_env env, napi_callback_info info) {
  size_t argc = 2; napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  mount_job *job = calloc(1, sizeof *job);
  int bad = argc < 2 || !job;
  int32_t flags = 0;
  if (!bad) {
    job->target = opt_string(env, argv[0], PATH_MAX - 1, &bad);
    if (napi_get_value_int32(env, argv[1], &flags) != napi_ok || flags < 0) bad = 1;
    if (!job->target) bad = 1;
  }
  if (bad) {
    if (job) { free(job->target); free(job); }
    napi_throw_type_error(env, NULL, "umount(target, flags)");
    return NULL;
  }
  job->umount = 1;
  job->flags = (unsigned long)flags;
  return queue_job(env, "umount", mount_execute, mount_complete, job, &job->deferred, &job->work);
}

void mount_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"mount", NULL, mountFn, NULL, NULL, NULL, napi_default, NULL},
    {"umount", NULL, umountFn, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
