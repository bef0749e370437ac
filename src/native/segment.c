// Layer segments off the main thread (see src/archive/segmented.ts): filling a segment buffer with the
// data of the files it holds, the sha256 of segments and of the whole tar (the diff id, an ordered hash
// over the segments), and writing the blob (its digest another ordered hash), as async work on libuv's
// threadpool. The main thread only walks the tree and writes tar headers.
// Hashing is sha256.c's (OpenSSL's when the process has it).
#define _GNU_SOURCE // statx
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <node_api.h>
#include "jobs.h"
#include "names.h"
#include "segment.h"
#include "sha256.h"

typedef struct ordered_hash ordered_hash;
// What ordered_put returns, and jobs report as -1, once the hash cannot be finished.
#define ORDERED_FAILED UINT64_MAX
static uint64_t ordered_put(ordered_hash *h, uint64_t ticket, const uint8_t *data, size_t len);
static int get_ticket(napi_env env, napi_value hv, napi_value tv, ordered_hash **h, uint64_t *ticket);

// ------------------------------------------------------------------ fillSegment

enum { FILL_CHECK_END = 1 };

typedef struct {
  char *path;
  uint64_t buf_offset, file_offset, length;
  uint32_t flags;
} fill_item;

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref buffer_ref;
  uint8_t *buf;
  size_t buf_len;
  fill_item *items;
  size_t count;
  int hash;
  int fingerprint;
  // results
  unsigned char sha256[32];
  sha256_ctx fp;          // the fingerprint being taken, while fp_on
  int fp_on;              // 0: not asked for, or not possible here
  uint64_t fp_pos;        // how far into the buffer the fingerprint has taken the bytes between spans
  unsigned char fp_digest[32];
  int err;              // errno of a failed call, or 0
  const char *syscall;  // that call, or a TarFormatError kind: "shrank" / "grew"
  size_t failed;        // index of the item it failed on
  // The directory of the last file opened: a segment's files mostly share one, and opening by name in it
  // spares the kernel the walk down the whole path each time.
  int dir_fd;
  char dir[PATH_MAX];
  // The ordered hash (the diff id) this segment is a piece of, its ticket, and how far the hash had got.
  ordered_hash *diff;
  napi_ref diff_ref;
  uint64_t ticket, hashed;
} fill_job;

// Opens `path` read-only (not following a final symlink), relative to the cached directory when it is in it.
static int open_in_dir(fill_job *job, const char *path) {
  const char *slash = strrchr(path, '/');
  if (!slash || slash == path || (size_t)(slash - path) >= sizeof job->dir) return open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  size_t len = (size_t)(slash - path);
  if (job->dir_fd < 0 || strncmp(job->dir, path, len) != 0 || job->dir[len] != '\0') {
    if (job->dir_fd >= 0) close(job->dir_fd);
    memcpy(job->dir, path, len);
    job->dir[len] = '\0';
    job->dir_fd = open(job->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (job->dir_fd < 0) return -1;
  }
  return openat(job->dir_fd, slash + 1, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
}

// The fingerprint of a segment stands for its bytes without reading the files: the bytes between the
// file spans (tar headers, padding) and, for each span, the identity of the inode it reads (device, inode
// number and birth time: one incarnation of one inode), its size and mtime, and the span's place in it.
// A snapshot's files are never written after it is committed, so an equal fingerprint means equal bytes.
// Without a birth time (a filesystem that keeps none) there is no fingerprint.
// Returns the file's size, or -1 without a fingerprint.
static int64_t fingerprint_span(fill_job *job, fill_item *it, int fd) {
  if (!job->fp_on) return -1;
  struct statx stx;
  if (statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS | STATX_BTIME, &stx) != 0 || !(stx.stx_mask & STATX_BTIME)) {
    sha256_abandon(&job->fp);
    job->fp_on = 0;
    return -1;
  }
  uint64_t id[11] = {
    stx.stx_dev_major, stx.stx_dev_minor, stx.stx_ino, (uint64_t)stx.stx_btime.tv_sec, stx.stx_btime.tv_nsec,
    (uint64_t)stx.stx_mtime.tv_sec, stx.stx_mtime.tv_nsec, stx.stx_size, it->file_offset, it->length, it->flags,
  };
  if (sha256_update(&job->fp, job->buf + job->fp_pos, it->buf_offset - job->fp_pos) != 0 ||
      sha256_update(&job->fp, id, sizeof id) != 0) {
    sha256_abandon(&job->fp);
    job->fp_on = 0;
    return -1;
  }
  job->fp_pos = it->buf_offset + it->length;
  return (int64_t)stx.stx_size;
}

static int fill_one(fill_job *job, fill_item *it) {
  int fd = open_in_dir(job, it->path);
  if (fd < 0) { job->err = errno; job->syscall = "open"; return -1; }
  int64_t size = fingerprint_span(job, it, fd);
  uint64_t got = 0;
  while (got < it->length) {
    ssize_t n = pread(fd, job->buf + it->buf_offset + got, (size_t)(it->length - got), (off_t)(it->file_offset + got));
    if (n < 0) {
      if (errno == EINTR) continue;
      job->err = errno; job->syscall = "read"; close(fd); return -1;
    }
    if (n == 0) { job->syscall = "shrank"; close(fd); return -1; }
    got += (uint64_t)n;
  }
  // The size the fingerprint read tells whether the file grew; else one more byte is asked for.
  if ((it->flags & FILL_CHECK_END) && size >= 0) {
    if ((uint64_t)size > it->file_offset + it->length) { job->syscall = "grew"; close(fd); return -1; }
  } else if (it->flags & FILL_CHECK_END) {
    unsigned char extra;
    ssize_t n;
    do n = pread(fd, &extra, 1, (off_t)(it->file_offset + it->length)); while (n < 0 && errno == EINTR);
    if (n > 0) { job->syscall = "grew"; close(fd); return -1; }
  }
  close(fd);
  return 0;
}

static void fill_execute(napi_env env, void *data) {
  (void)env;
  fill_job *job = data;
  job->dir_fd = -1;
  job->fp_on = job->fingerprint && sha256_begin(&job->fp) == 0;
  for (size_t i = 0; i < job->count; i++) {
    if (fill_one(job, &job->items[i]) != 0) {
      job->failed = i;
      if (job->dir_fd >= 0) close(job->dir_fd);
      return;
    }
  }
  if (job->dir_fd >= 0) close(job->dir_fd);
  if (job->fp_on) {
    // Ended here (the context released) whether or not it succeeds: without it, no fingerprint.
    job->fp_on = sha256_update(&job->fp, job->buf + job->fp_pos, job->buf_len - job->fp_pos) == 0;
    if (!job->fp_on) sha256_abandon(&job->fp);
    else job->fp_on = sha256_end(&job->fp, job->fp_digest) == 0;
  }
  if (job->hash && sha256_digest(job->buf, job->buf_len, job->sha256) != 0) { job->err = EIO; job->syscall = "sha256"; return; }
  if (job->diff) job->hashed = ordered_put(job->diff, job->ticket, job->buf, job->buf_len);
}

static void fill_complete(napi_env env, napi_status status, void *data) {
  fill_job *job = data;
  napi_value result;
  if (status != napi_ok) {
    napi_reject_deferred(env, job->deferred, errno_error(env, "segment fill", 0, "cancelled", NULL));
  } else if (job->syscall) {
    // Rejected with what JS needs to raise its own errors: the call, errno and the item's index.
    napi_value v;
    result = errno_error(env, job->syscall, job->err, "size changed", NULL);
    napi_create_string_utf8(env, job->syscall, NAPI_AUTO_LENGTH, &v);
    napi_set_named_property(env, result, "syscall", v);
    napi_create_int64(env, (int64_t)job->failed, &v);
    napi_set_named_property(env, result, "item", v);
    napi_reject_deferred(env, job->deferred, result);
  } else {
    napi_create_object(env, &result);
    if (job->hash) {
      void *out; napi_value buf;
      napi_create_buffer_copy(env, 32, job->sha256, &out, &buf);
      napi_set_named_property(env, result, "sha256", buf);
    }
    if (job->fp_on) {
      void *out; napi_value buf;
      napi_create_buffer_copy(env, 32, job->fp_digest, &out, &buf);
      napi_set_named_property(env, result, "fingerprint", buf);
    }
    if (job->diff) {
      napi_value hashed;
      napi_create_double(env, job->hashed == ORDERED_FAILED ? -1 : (double)job->hashed, &hashed);
      napi_set_named_property(env, result, "hashed", hashed);
    }
    napi_resolve_deferred(env, job->deferred, result);
  }
  napi_delete_reference(env, job->buffer_ref);
  if (job->diff_ref) napi_delete_reference(env, job->diff_ref);
  napi_delete_async_work(env, job->work);
  sha256_abandon(&job->fp); // a fill that failed leaves it open
  for (size_t i = 0; i < job->count; i++) free(job->items[i].path);
  free(job->items);
  free(job);
}

// fillSegment(buffer, paths: string[], spans: Float64Array (bufOffset, fileOffset, length, flags) per path,
//             hash: boolean, fingerprint: boolean, diff?: ordered hash, ticket?: number)
//   -> Promise<{ sha256?: Buffer, fingerprint?: Buffer, hashed?: number }>
// Reads each span of each file into the buffer (spans in buffer order), checks that a whole file ends
// where it should, then (if asked) hashes the whole buffer, takes the fingerprint, and hands the buffer to
// the ordered hash `diff` as piece `ticket`. The buffer must not be touched until the promise settles,
// nor, with `diff`, until the hash has passed it.
static napi_value fillSegment(napi_env env, napi_callback_info info) {
  size_t argc = 7; napi_value argv[7];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  fill_job *job = calloc(1, sizeof *job);
  if (!job) { napi_throw_error(env, NULL, "out of memory"); return NULL; }
  void *buf; size_t buf_len;
  uint32_t count;
  void *spans; size_t span_count; napi_typedarray_type type;
  bool hash, fingerprint;
  if (napi_get_buffer_info(env, argv[0], &buf, &buf_len) != napi_ok || napi_get_array_length(env, argv[1], &count) != napi_ok ||
      napi_get_typedarray_info(env, argv[2], &type, &span_count, &spans, NULL, NULL) != napi_ok || type != napi_float64_array ||
      span_count < (size_t)count * 4 || napi_get_value_bool(env, argv[3], &hash) != napi_ok ||
      napi_get_value_bool(env, argv[4], &fingerprint) != napi_ok || get_ticket(env, argv[5], argv[6], &job->diff, &job->ticket) != 0) {
    free(job);
    napi_throw_type_error(env, NULL, "fillSegment(buffer, paths, spans, hash, fingerprint, diff?, ticket?)");
    return NULL;
  }
  job->buf = buf; job->buf_len = buf_len; job->count = count; job->hash = hash; job->fingerprint = fingerprint;
  job->items = calloc(count ? count : 1, sizeof *job->items);
  const double *s = spans;
  uint64_t prev_end = 0;
  for (uint32_t i = 0; i < count; i++) {
    napi_value p;
    napi_get_element(env, argv[1], i, &p);
    fill_item *it = &job->items[i];
    // The path's bytes (names.h); a path that is not a string opens nothing.
    it->path = names_dup(env, p, PATH_MAX);
    if (!it->path) it->path = calloc(1, 1);
    it->buf_offset = (uint64_t)s[i * 4]; it->file_offset = (uint64_t)s[i * 4 + 1];
    it->length = (uint64_t)s[i * 4 + 2]; it->flags = (uint32_t)s[i * 4 + 3];
    if (it->buf_offset + it->length > buf_len || it->buf_offset < prev_end) {
      for (uint32_t j = 0; j <= i; j++) free(job->items[j].path);
      free(job->items); free(job);
      napi_throw_range_error(env, NULL, "fillSegment: a span outside the buffer, or before the one it follows");
      return NULL;
    }
    prev_end = it->buf_offset + it->length;
  }
  napi_create_reference(env, argv[0], 1, &job->buffer_ref);
  if (job->diff) napi_create_reference(env, argv[5], 1, &job->diff_ref);
  return queue_job(env, "fillSegment", fill_execute, fill_complete, job, &job->deferred, &job->work);
}

// ------------------------------------------------------------------ ordered sha256

// A sha256 over pieces that jobs on several threads hand in out of order: each piece has a ticket (its
// place), and whichever thread hands in the piece the hash waits for hashes it and every later piece
// already waiting, with no round trip through the main thread. Jobs report how far the hash has got when
// they end; a piece's memory must stay valid until the hash has passed it. Pieces waiting for their turn
// sit in a ring indexed by ticket, which grows when more are waiting than it holds.
typedef struct { const uint8_t *data; size_t len; uint64_t ticket; int ready; } ordered_piece;

struct ordered_hash {
  pthread_mutex_t mu;
  sha256_ctx ctx;
  uint64_t next;  // the ticket to hash next
  int hashing;    // a thread is hashing, outside the lock
  int failed;
  ordered_piece *ring;
  size_t cap;
};

// Makes room in the ring for `ticket` (under the lock). -1 when memory runs out.
static int ordered_room(ordered_hash *h, uint64_t ticket) {
  if (ticket - h->next < h->cap) return 0;
  size_t cap = h->cap;
  while (ticket - h->next >= cap) cap *= 2;
  ordered_piece *ring = calloc(cap, sizeof *ring);
  if (!ring) return -1;
  for (size_t i = 0; i < h->cap; i++) if (h->ring[i].ready) ring[h->ring[i].ticket % cap] = h->ring[i];
  free(h->ring);
  h->ring = ring;
  h->cap = cap;
  return 0;
}

// Hands in piece `ticket` and hashes what is now in order. Returns how many pieces are hashed.
static uint64_t ordered_put(ordered_hash *h, uint64_t ticket, const uint8_t *data, size_t len) {
  pthread_mutex_lock(&h->mu);
  if (ordered_room(h, ticket) != 0) {
    h->failed = 1; // the piece cannot wait its turn: the digest will refuse
  } else {
    h->ring[ticket % h->cap] = (ordered_piece){ data, len, ticket, 1 };
  }
  while (!h->hashing && !h->failed) {
    ordered_piece *p = &h->ring[h->next % h->cap];
    if (!p->ready || p->ticket != h->next) break;
    const uint8_t *d = p->data;
    size_t n = p->len;
    p->ready = 0;
    h->hashing = 1;
    pthread_mutex_unlock(&h->mu);
    int ok = sha256_update(&h->ctx, d, n) == 0;
    pthread_mutex_lock(&h->mu);
    if (!ok) h->failed = 1;
    h->hashing = 0;
    h->next++;
  }
  uint64_t hashed = h->failed ? ORDERED_FAILED : h->next;
  pthread_mutex_unlock(&h->mu);
  return hashed;
}

static uint64_t ordered_progress(ordered_hash *h) {
  pthread_mutex_lock(&h->mu);
  uint64_t hashed = h->next;
  pthread_mutex_unlock(&h->mu);
  return hashed;
}

static void ordered_finalize(napi_env env, void *data, void *hint) {
  (void)env; (void)hint;
  ordered_hash *h = data;
  sha256_abandon(&h->ctx);
  pthread_mutex_destroy(&h->mu);
  free(h->ring);
  free(h);
}

// orderedHashCreate() -> handle
static napi_value orderedHashCreate(napi_env env, napi_callback_info info) {
  (void)info;
  ordered_hash *h = calloc(1, sizeof *h);
  if (!h || !(h->ring = calloc(h->cap = 64, sizeof *h->ring)) || sha256_begin(&h->ctx) != 0) {
    if (h) { free(h->ring); free(h); }
    napi_throw_error(env, NULL, "sha256: cannot initialise");
    return NULL;
  }
  pthread_mutex_init(&h->mu, NULL);
  napi_value handle;
  napi_create_external(env, h, ordered_finalize, NULL, &handle);
  return handle;
}

// orderedHashDigest(handle, pieces) -> Buffer (32 bytes), once all `pieces` are hashed; the handle is spent.
static napi_value orderedHashDigest(napi_env env, napi_callback_info info) {
  size_t argc = 2; napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  ordered_hash *h; int64_t pieces;
  if (napi_get_value_external(env, argv[0], (void **)&h) != napi_ok || napi_get_value_int64(env, argv[1], &pieces) != napi_ok) {
    napi_throw_type_error(env, NULL, "orderedHashDigest(handle, pieces)");
    return NULL;
  }
  if (ordered_progress(h) != (uint64_t)pieces || h->failed) {
    napi_throw_error(env, NULL, "sha256: not every piece was hashed");
    return NULL;
  }
  uint8_t md[32];
  h->next = UINT64_MAX; // spent
  if (sha256_end(&h->ctx, md) != 0) { napi_throw_error(env, NULL, "sha256: final failed"); return NULL; }
  void *out; napi_value buf;
  napi_create_buffer_copy(env, 32, md, &out, &buf);
  return buf;
}

// Reads an optional (handle, ticket) pair of arguments.
static int get_ticket(napi_env env, napi_value hv, napi_value tv, ordered_hash **h, uint64_t *ticket) {
  napi_valuetype t;
  *h = NULL;
  if (napi_typeof(env, hv, &t) != napi_ok || t == napi_undefined || t == napi_null) return 0;
  int64_t v;
  if (napi_get_value_external(env, hv, (void **)h) != napi_ok || napi_get_value_int64(env, tv, &v) != napi_ok || v < 0) return -1;
  *ticket = (uint64_t)v;
  return 0;
}

// ------------------------------------------------------------------ writeAt

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref buffer_ref, hash_ref;
  int fd;
  const uint8_t *data;
  size_t len;
  uint64_t offset;
  ordered_hash *hash;
  uint64_t ticket, hashed;
  int err;
} write_job;

static void write_execute(napi_env env, void *data) {
  (void)env;
  write_job *job = data;
  for (size_t done = 0; done < job->len;) {
    ssize_t n = pwrite(job->fd, job->data + done, job->len - done, (off_t)(job->offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      job->err = errno;
      return; // not handed in: the hash stops here, and the blob is abandoned
    }
    done += (size_t)n;
  }
  if (job->hash) job->hashed = ordered_put(job->hash, job->ticket, job->data, job->len);
}

static void write_complete(napi_env env, napi_status status, void *data) {
  write_job *job = data;
  napi_value result;
  if (status != napi_ok || job->err) {
    napi_reject_deferred(env, job->deferred, errno_error(env, "write", status != napi_ok ? 0 : job->err, "cancelled", NULL));
  } else {
    napi_create_double(env, job->hashed == ORDERED_FAILED ? -1 : (double)job->hashed, &result);
    napi_resolve_deferred(env, job->deferred, result);
  }
  napi_delete_reference(env, job->buffer_ref);
  if (job->hash_ref) napi_delete_reference(env, job->hash_ref);
  napi_delete_async_work(env, job->work);
  free(job);
}

// writeAt(fd, buffer, offset, hash?, ticket?) -> Promise<number>: writes the whole buffer at `offset`, then
// hands it to the ordered hash as piece `ticket`; resolves with how many pieces the hash has passed.
static napi_value writeAt(napi_env env, napi_callback_info info) {
  size_t argc = 5; napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  write_job *job = calloc(1, sizeof *job);
  if (!job) { napi_throw_error(env, NULL, "out of memory"); return NULL; }
  void *data; size_t len; int32_t fd; int64_t offset;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_buffer_info(env, argv[1], &data, &len) != napi_ok ||
      napi_get_value_int64(env, argv[2], &offset) != napi_ok || offset < 0 ||
      get_ticket(env, argv[3], argv[4], &job->hash, &job->ticket) != 0) {
    free(job);
    napi_throw_type_error(env, NULL, "writeAt(fd, buffer, offset, hash?, ticket?)");
    return NULL;
  }
  job->fd = fd; job->data = data; job->len = len; job->offset = (uint64_t)offset;
  napi_create_reference(env, argv[1], 1, &job->buffer_ref);
  if (job->hash) napi_create_reference(env, argv[3], 1, &job->hash_ref);
  return queue_job(env, "writeAt", write_execute, write_complete, job, &job->deferred, &job->work);
}

// sha256Backend() -> "openssl" | "portable": which SHA-256 the addon hashes with (sha256.c).
static napi_value sha256Backend(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value v;
  napi_create_string_utf8(env, sha256_backend(), NAPI_AUTO_LENGTH, &v);
  return v;
}

void segment_init(napi_env env, napi_value exports) {
  sha256_setup();
  napi_property_descriptor props[] = {
    {"sha256Backend", NULL, sha256Backend, NULL, NULL, NULL, napi_default, NULL},
    {"fillSegment", NULL, fillSegment, NULL, NULL, NULL, napi_default, NULL},
    {"orderedHashCreate", NULL, orderedHashCreate, NULL, NULL, NULL, napi_default, NULL},
    {"orderedHashDigest", NULL, orderedHashDigest, NULL, NULL, NULL, napi_default, NULL},
    {"writeAt", NULL, writeAt, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
