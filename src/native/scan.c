// Directory scans. scan_dir_read reads one directory and lstat's its entries (fsx.c's synchronous
// scanDir). scanDirs does it for a batch of directories on libuv's threadpool, entries sorted by name
// bytes, for the walk of a build context (src/worker/contenthash.ts): its lstat calls are most of a warm
// rebuild's time, and here several batches go at once while the main thread makes the tree from the ones
// done. With a context's metadata index loaded (loadScanIndex, parsed on the threadpool too), each file's
// indexed digest is looked up beside its lstat, so the index never becomes JavaScript objects.
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <node_api.h>

#include "compat.h"
#include "jobs.h"
#include "names.h"
#include "scan.h"
#include "sha256.h"

// ------------------------------------------------------------------ one directory

static int scan_fail(int *err, const char **syscall, char *failed, const char *call, const char *dir, const char *name) {
  *err = errno;
  *syscall = call;
  if (name) snprintf(failed, PATH_MAX, "%s/%s", dir, name);
  else snprintf(failed, PATH_MAX, "%s", dir);
  return -1;
}

static int grow(void **p, size_t *cap, size_t need, size_t size) {
  if (need <= *cap) return 0;
  size_t c = *cap ? *cap : 64;
  while (c < need) c *= 2;
  void *q = realloc(*p, c * size);
  if (!q) { errno = ENOMEM; return -1; }
  *p = q;
  *cap = c;
  return 0;
}

int scan_dir_read(const char *dir, int xattrs, scan_dir *out, int *err, const char **syscall, char *failed) {
  DIR *d = opendir(dir);
  if (!d) return scan_fail(err, syscall, failed, "scandir", dir, NULL);
  size_t dir_len = strlen(dir);
  char p[PATH_MAX], list[4096];
  struct dirent *e;
  int rc = 0;
  for (;;) {
    errno = 0;
    if (!(e = readdir(d))) {
      if (errno) rc = scan_fail(err, syscall, failed, "readdir", dir, NULL);
      break;
    }
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    size_t len = strlen(e->d_name);
    if (dir_len + 1 + len >= PATH_MAX) { errno = ENAMETOOLONG; rc = scan_fail(err, syscall, failed, "lstat", dir, e->d_name); break; }
    struct stat st;
    if (fsx_fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) { rc = scan_fail(err, syscall, failed, "lstat", dir, e->d_name); break; }
    if (grow((void **)&out->name_off, &out->off_cap, out->n + 1, sizeof *out->name_off) ||
        grow((void **)&out->stats, &out->cap, out->n + 1, SCAN_FIELDS * sizeof(double)) ||
        grow((void **)&out->names, &out->names_cap, out->names_len + len + 1, 1)) {
      rc = scan_fail(err, syscall, failed, "scandir", dir, NULL);
      break;
    }
    double *f = out->stats + out->n * SCAN_FIELDS;
    f[SCAN_MODE] = st.st_mode; f[SCAN_UID] = st.st_uid; f[SCAN_GID] = st.st_gid; f[SCAN_SIZE] = (double)st.st_size;
    f[SCAN_MTIME] = (double)st.st_mtim.tv_sec; f[SCAN_NLINK] = (double)st.st_nlink; f[SCAN_DEV] = (double)st.st_dev;
    f[SCAN_INO] = (double)st.st_ino; f[SCAN_RDEV_MAJOR] = major(st.st_rdev); f[SCAN_RDEV_MINOR] = minor(st.st_rdev);
    f[SCAN_XATTRS] = 0; f[SCAN_OPAQUE] = 0; f[SCAN_MTIME_NSEC] = (double)st.st_mtim.tv_nsec;
    f[SCAN_CTIME] = (double)st.st_ctim.tv_sec; f[SCAN_CTIME_NSEC] = (double)st.st_ctim.tv_nsec;
    f[SCAN_BLOCKS] = (double)st.st_blocks;
    if (xattrs) {
      memcpy(p, dir, dir_len);
      p[dir_len] = '/';
      memcpy(p + dir_len + 1, e->d_name, len + 1);
      ssize_t n = llistxattr(p, list, sizeof list);
      if (n < 0) {
        if (errno == ERANGE) f[SCAN_XATTRS] = 2; // more names than fit here: the caller reads them itself
        n = 0;                                   // ENOTSUP: a filesystem without them
      }
      for (ssize_t off = 0; off < n; off += strlen(list + off) + 1) {
        const char *name = list + off;
        if (strncmp(name, "trusted.overlay.", 16) != 0) f[SCAN_XATTRS] = 1;
        else if (strcmp(name, "trusted.overlay.opaque") == 0 && S_ISDIR(st.st_mode)) {
          char v[8];
          ssize_t vl = lgetxattr(p, name, v, sizeof v);
          if (vl == 1 && v[0] == 'y') f[SCAN_OPAQUE] = 1;
        }
      }
    }
    out->name_off[out->n++] = out->names_len;
    memcpy(out->names + out->names_len, e->d_name, len + 1);
    out->names_len += len + 1;
  }
  closedir(d);
  return rc;
}

void scan_dir_free(scan_dir *d) {
  free(d->names);
  free(d->name_off);
  free(d->stats);
  memset(d, 0, sizeof *d);
}

// ------------------------------------------------------------------ the metadata index

// A file's row of a context's index (src/worker/contenthash.ts writes them: a line per file,
// `[path, size, mtimeMs, ctimeMs, ino, hex digest]`). Loading only checks a row's form and notes where
// its path and the rest are in the file's text; the numbers are converted when a scan looks the file up,
// on the scan's thread, so that loading is short (it is what the first scans wait for).
typedef struct {
  uint32_t path_off;      // in the text, or in `paths` when escaped
  uint32_t path_len;
  uint32_t rest_off;      // in the text: `size,mtimeMs,ctimeMs,ino,"hex"]`
  uint32_t hash : 31, escaped : 1;
} ix_entry;

typedef struct {
  char *text;             // the file
  size_t text_len;
  ix_entry *e;
  size_t n, cap;
  char *paths;            // paths that had JSON escapes, as bytes
  size_t paths_len, paths_cap;
  uint32_t *slots;        // open addressing: entry index + 1, 0 for none
  size_t mask;
  // Freed (the data above) once released and no job uses it; the struct itself by the handle's finalizer.
  int refs, released;
  // Set once loaded (a scan waits for it before its first lookup): INDEX_V2 when it has rows to look up.
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int ready, status;
} scan_index;

// FNV-1a, continued from `h` (2166136261 to start); the table uses its low 31 bits.
static uint32_t hash_more(uint32_t h, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
  return h;
}

static uint32_t hash_bytes(const char *s, size_t n) {
  return hash_more(2166136261u, s, n) & 0x7fffffff;
}

static void index_data_free(scan_index *ix) {
  free(ix->text);
  free(ix->e);
  free(ix->paths);
  free(ix->slots);
  ix->text = NULL; ix->e = NULL; ix->paths = NULL; ix->slots = NULL;
  ix->text_len = ix->n = ix->cap = ix->paths_len = ix->paths_cap = 0;
  ix->mask = 0;
}

static const char *entry_path(const scan_index *ix, const ix_entry *e) {
  return (e->escaped ? ix->paths : ix->text) + e->path_off;
}

// The entry for `path`, whose hash_bytes is `h`.
static const ix_entry *index_find(const scan_index *ix, const char *path, size_t len, uint32_t h) {
  if (!ix->slots) return NULL;
  for (size_t i = h & ix->mask;; i = (i + 1) & ix->mask) {
    uint32_t s = ix->slots[i];
    if (!s) return NULL;
    const ix_entry *e = &ix->e[s - 1];
    if (e->hash == h && e->path_len == len && memcmp(entry_path(ix, e), path, len) == 0) return e;
  }
}

static int hex_value(char c) {
  return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

// Whether all `n` characters are lowercase hex digits (a digest).
static int all_hex(const char *s, size_t n) {
  int bad = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    bad |= (unsigned char)(c - '0') > 9 && (unsigned char)(c - 'a') > 5;
  }
  return !bad;
}

// The JSON string at *s (its opening quote); *s moves past the closing quote. Its bytes are the text's
// own when it has no escapes (*escaped 0); else they are appended to the index's `paths` as names.h makes
// bytes of a JavaScript string (a lone U+DC80..U+DCFF is the byte it stands for).
static int json_path(scan_index *ix, const char **s, const char *end, int *escaped) {
  const char *p = *s;
  if (p >= end || *p++ != '"') return -1;
  const char *q = p;
  while (q < end && *q != '"' && *q != '\\' && (unsigned char)*q >= 0x20) q++;
  if (q < end && *q == '"') { *escaped = 0; *s = q + 1; return 0; }
  *escaped = 1;
  for (;;) {
    if (grow((void **)&ix->paths, &ix->paths_cap, ix->paths_len + 4, 1)) return -1;
    if (p >= end) return -1;
    unsigned char c = (unsigned char)*p++;
    if (c == '"') break;
    if (c < 0x20) return -1;
    if (c != '\\') { ix->paths[ix->paths_len++] = (char)c; continue; }
    if (p >= end) return -1;
    char k = *p++;
    switch (k) {
      case '"': case '\\': case '/': ix->paths[ix->paths_len++] = k; continue;
      case 'b': ix->paths[ix->paths_len++] = '\b'; continue;
      case 'f': ix->paths[ix->paths_len++] = '\f'; continue;
      case 'n': ix->paths[ix->paths_len++] = '\n'; continue;
      case 'r': ix->paths[ix->paths_len++] = '\r'; continue;
      case 't': ix->paths[ix->paths_len++] = '\t'; continue;
      case 'u': break;
      default: return -1;
    }
    uint32_t u = 0;
    for (int i = 0; i < 4; i++) {
      int v = p < end ? hex_value(p[0] | 0x20) : -1;
      if (v < 0) return -1;
      u = u << 4 | (uint32_t)v;
      p++;
    }
    if (u >= 0xd800 && u <= 0xdbff && end - p >= 6 && p[0] == '\\' && p[1] == 'u') {
      uint32_t lo = 0;
      int ok = 1;
      for (int i = 0; i < 4 && ok; i++) {
        int v = hex_value(p[2 + i] | 0x20);
        if (v < 0) ok = 0; else lo = lo << 4 | (uint32_t)v;
      }
      if (ok && lo >= 0xdc00 && lo <= 0xdfff) {
        u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
        p += 6;
      }
    }
    char *o = ix->paths + ix->paths_len;
    if (u >= 0xdc80 && u <= 0xdcff) { o[0] = (char)(u - 0xdc00); ix->paths_len += 1; continue; }
    if (u >= 0xd800 && u <= 0xdfff) u = 0xfffd;
    if (u < 0x80) { o[0] = (char)u; ix->paths_len += 1; }
    else if (u < 0x800) { o[0] = (char)(0xc0 | (u >> 6)); o[1] = (char)(0x80 | (u & 0x3f)); ix->paths_len += 2; }
    else if (u < 0x10000) {
      o[0] = (char)(0xe0 | (u >> 12)); o[1] = (char)(0x80 | ((u >> 6) & 0x3f)); o[2] = (char)(0x80 | (u & 0x3f));
      ix->paths_len += 3;
    } else {
      o[0] = (char)(0xf0 | (u >> 18)); o[1] = (char)(0x80 | ((u >> 12) & 0x3f));
      o[2] = (char)(0x80 | ((u >> 6) & 0x3f)); o[3] = (char)(0x80 | (u & 0x3f));
      ix->paths_len += 4;
    }
  }
  *s = p;
  return 0;
}

// A JSON number at *s, then `sep`; *s moves past the separator. Its value in *out unless out is NULL:
// whole numbers of up to 15 digits directly, others by strtod (rounding as JavaScript's parse does).
static int json_number(const char **s, const char *end, char sep, double *out) {
  const char *p = *s, *start = p;
  int whole = 1;
  if (p < end && *p == '-') { p++; whole = 0; }
  if (p >= end || *p < '0' || *p > '9') return -1;
  while (p < end && *p >= '0' && *p <= '9') p++;
  if (p < end && *p == '.') {
    p++;
    whole = 0;
    if (p >= end || *p < '0' || *p > '9') return -1;
    while (p < end && *p >= '0' && *p <= '9') p++;
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    p++;
    whole = 0;
    if (p < end && (*p == '+' || *p == '-')) p++;
    if (p >= end || *p < '0' || *p > '9') return -1;
    while (p < end && *p >= '0' && *p <= '9') p++;
  }
  if (p >= end || *p != sep || p - start > 64) return -1;
  *s = p + 1;
  if (!out) return 0;
  if (whole && p - start <= 15) {
    uint64_t v = 0;
    for (const char *d = start; d < p; d++) v = v * 10 + (uint64_t)(*d - '0');
    *out = (double)v;
    return 0;
  }
  char num[72];
  memcpy(num, start, (size_t)(p - start));
  num[p - start] = 0;
  char *after;
  *out = strtod(num, &after);
  return after == num + (p - start) ? 0 : -1; // else a locale whose decimal point is not '.'
}

// The rest of a row after its path: `size,mtimeMs,ctimeMs,ino,"hex"]`, checked (out NULL) or read.
static int index_rest(const char *s, const char *end, double out[4], const char **hex) {
  const char *mtime_text = s;
  for (int i = 0; i < 4; i++) {
    const char *start = s;
    if (json_number(&s, end, ',', out && i != 2 ? &out[i] : NULL)) return -1;
    if (i == 1) mtime_text = start;
    if (i == 2 && out) {
      // ctimeMs: mostly mtimeMs again (a file written and not chmod'ed since), read once.
      size_t n = (size_t)(s - start);
      if ((size_t)(start - mtime_text) == n && memcmp(start, mtime_text, n) == 0) out[2] = out[1];
      else if (json_number(&start, end, ',', &out[2])) return -1;
    }
  }
  if (end - s < 67 || s[0] != '"' || s[65] != '"' || s[66] != ']') return -1;
  if (!all_hex(s + 1, 64)) return -1;
  *hex = s + 1;
  return 0;
}

// One line `["path",size,mtimeMs,ctimeMs,ino,"hex"]` as the index writes it; anything else is left out,
// and that file is read again (as the JavaScript reader leaves out a line it cannot parse).
static void index_line(scan_index *ix, const char *s, const char *end) {
  size_t mark = ix->paths_len;
  if (grow((void **)&ix->e, &ix->cap, ix->n + 1, sizeof *ix->e)) return;
  ix_entry *e = &ix->e[ix->n];
  if (end - s < 2 || *s++ != '[') return;
  const char *path = s + 1;
  int escaped;
  if (json_path(ix, &s, end, &escaped) || s >= end || *s++ != ',') goto bad;
  const char *hex;
  if (index_rest(s, end, NULL, &hex) || hex + 66 != end) goto bad;
  e->escaped = (uint32_t)escaped;
  e->path_off = (uint32_t)(escaped ? mark : (size_t)(path - ix->text));
  e->path_len = (uint32_t)(escaped ? ix->paths_len - mark : (size_t)(s - 2 - path));
  e->rest_off = (uint32_t)(s - ix->text);
  e->hash = hash_bytes(entry_path(ix, e), e->path_len);
  ix->n++;
  return;
bad:
  ix->paths_len = mark;
}

// The table over the entries; a path listed twice is the later line's, as in a JavaScript Map.
static int index_table(scan_index *ix) {
  size_t size = 16;
  while (size < ix->n * 2) size *= 2;
  ix->slots = calloc(size, sizeof *ix->slots);
  if (!ix->slots) return -1;
  ix->mask = size - 1;
  for (size_t k = 0; k < ix->n; k++) {
    const ix_entry *e = &ix->e[k];
    for (size_t i = e->hash & ix->mask;; i = (i + 1) & ix->mask) {
      uint32_t s = ix->slots[i];
      const ix_entry *o = s ? &ix->e[s - 1] : NULL;
      if (!o || (o->hash == e->hash && o->path_len == e->path_len && memcmp(entry_path(ix, o), entry_path(ix, e), e->path_len) == 0)) {
        ix->slots[i] = (uint32_t)(k + 1);
        break;
      }
    }
  }
  return 0;
}

enum { INDEX_V2, INDEX_NONE, INDEX_OTHER };

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref ref;           // the index's handle, alive while loading
  char *file;
  scan_index *ix;
} load_job;

static int read_all(int fd, scan_index *ix) {
  struct stat st;
  if (fsx_fstatat(fd, "", &st, AT_EMPTY_PATH) != 0 || st.st_size >= UINT32_MAX) return -1;
  size_t cap = (size_t)st.st_size + 1, len = 0;
  char *buf = malloc(cap);
  if (!buf) return -1;
  for (;;) {
    if (len == cap) {
      char *more = realloc(buf, cap * 2); // it grew meanwhile
      if (!more || cap * 2 >= UINT32_MAX) { free(more ? more : buf); return -1; }
      buf = more;
      cap *= 2;
    }
    ssize_t r = read(fd, buf + len, cap - len);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) { free(buf); return -1; }
    if (r == 0) break;
    len += (size_t)r;
  }
  ix->text = buf;
  ix->text_len = len;
  return 0;
}

static int load_index(scan_index *ix, const char *file) {
  int fd = open(file, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? INDEX_NONE : INDEX_OTHER;
  int rc = read_all(fd, ix);
  close(fd);
  if (rc) return INDEX_OTHER;
  if (ix->text_len == 0) return INDEX_NONE;
  const char *s = ix->text, *end = s + ix->text_len;
  const char *nl = memchr(s, '\n', ix->text_len);
  const char *first_end = nl ? nl : end;
  // Not this format (the earlier one-object index, or anything else): the JavaScript reader's.
  if (first_end - s != 7 || memcmp(s, "{\"v\":2}", 7) != 0) return INDEX_OTHER;
  for (s = first_end; s < end;) {
    s++;
    nl = memchr(s, '\n', (size_t)(end - s));
    const char *line_end = nl ? nl : end;
    if (line_end > s) index_line(ix, s, line_end);
    s = line_end;
  }
  return index_table(ix) ? INDEX_OTHER : INDEX_V2;
}

static void load_execute(napi_env env, void *data) {
  (void)env;
  load_job *job = data;
  scan_index *ix = job->ix;
  int status = load_index(ix, job->file);
  if (status != INDEX_V2) index_data_free(ix);
  pthread_mutex_lock(&ix->lock);
  ix->status = status;
  ix->ready = 1;
  pthread_cond_broadcast(&ix->cond);
  pthread_mutex_unlock(&ix->lock);
}

// Waits until the index is loaded; whether it has rows to look up.
static int index_wait(scan_index *ix) {
  pthread_mutex_lock(&ix->lock);
  while (!ix->ready) pthread_cond_wait(&ix->cond, &ix->lock);
  int v2 = ix->status == INDEX_V2;
  pthread_mutex_unlock(&ix->lock);
  return v2;
}

static void index_unref(scan_index *ix) {
  if (--ix->refs == 0 && ix->released) index_data_free(ix);
}

static void index_finalize(napi_env env, void *data, void *hint) {
  (void)env; (void)hint;
  scan_index *ix = data;
  index_data_free(ix);
  pthread_mutex_destroy(&ix->lock);
  pthread_cond_destroy(&ix->cond);
  free(ix);
}

static void load_complete(napi_env env, napi_status status, void *data) {
  load_job *job = data;
  // A job cancelled before it ran never signalled: nothing waits on it then (scans queue after it).
  if (status != napi_ok) {
    pthread_mutex_lock(&job->ix->lock);
    job->ix->status = INDEX_OTHER;
    job->ix->ready = 1;
    pthread_cond_broadcast(&job->ix->cond);
    pthread_mutex_unlock(&job->ix->lock);
  }
  int s = job->ix->status;
  napi_value result;
  napi_create_string_utf8(env, s == INDEX_V2 ? "lines" : s == INDEX_NONE ? "none" : "other", NAPI_AUTO_LENGTH, &result);
  napi_resolve_deferred(env, job->deferred, result);
  index_unref(job->ix);
  napi_delete_reference(env, job->ref);
  napi_delete_async_work(env, job->work);
  free(job->file);
  free(job);
}

// loadScanIndex(file) -> { index, loaded }: a handle to the index file of src/worker/contenthash.ts, for
// scanDirs, which it loads on the threadpool meanwhile (scans queued after it wait for it before looking
// anything up), and a promise of what it found: "lines" (rows to look up), "none" (no file, or an empty
// one) or "other" (not the line-per-file format: the caller reads it itself).
static napi_value loadScanIndex(napi_env env, napi_callback_info info) {
  size_t argc = 1; napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  load_job *job = calloc(1, sizeof *job);
  scan_index *ix = calloc(1, sizeof *ix);
  if (!job || !ix || argc < 1 || !(job->file = names_dup(env, argv[0], PATH_MAX - 1))) {
    free(ix);
    free(job);
    napi_throw_type_error(env, NULL, "loadScanIndex(file)");
    return NULL;
  }
  pthread_mutex_init(&ix->lock, NULL);
  pthread_cond_init(&ix->cond, NULL);
  job->ix = ix;
  ix->refs = 1;
  napi_value handle, result;
  napi_create_external(env, ix, index_finalize, NULL, &handle);
  napi_create_reference(env, handle, 1, &job->ref);
  napi_value loaded = queue_job(env, "loadScanIndex", load_execute, load_complete, job, &job->deferred, &job->work);
  napi_create_object(env, &result);
  napi_set_named_property(env, result, "index", handle);
  napi_set_named_property(env, result, "loaded", loaded);
  return result;
}

// releaseScanIndex(handle): frees the index now (once no job uses it) rather than when collected.
static napi_value releaseScanIndex(napi_env env, napi_callback_info info) {
  size_t argc = 1; napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  void *data;
  if (argc < 1 || napi_get_value_external(env, argv[0], &data) != napi_ok) {
    napi_throw_type_error(env, NULL, "releaseScanIndex(handle)");
    return NULL;
  }
  scan_index *ix = data;
  ix->released = 1;
  if (ix->refs == 0) index_data_free(ix);
  return NULL;
}

// ------------------------------------------------------------------ batches of directories

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  char *root;
  char **rels;
  char **headers;         // each directory's own record header, or NULL: no directory digests
  size_t count;
  int xattrs;
  scan_index *ix;         // NULL without an index
  napi_ref ix_ref;        // keeps the index's handle alive while the job runs
  int lookup;             // the index loaded with rows: files are looked up
  // results
  uint32_t *counts;       // entries per directory
  uint32_t *hashes;       // a directory's files' path hashes, NO_HASH for other entries
  size_t hashes_cap;
  char *names;            // every name followed by '/'
  size_t names_len, names_cap;
  double *stats;
  size_t n, stats_cap;
  uint8_t *known;         // per entry: 0, or 1 (its digest is in `digests`), 2 (the index has another one for it)
  size_t known_cap;
  char *digests;          // hex, one per entry with `known` set
  size_t digests_len, digests_cap;
  char *dir_digests;      // per directory, "sha256:<hex>" of its record, or as many '-' (with headers)
  char *record;           // a directory's record being made
  size_t record_len, record_cap;
  char head[64];          // the last file header made for a record, and what from
  size_t head_len;
  unsigned head_mode, head_uid, head_gid;
  int err;
  const char *syscall;
  char failed[PATH_MAX];
} batch_job;

typedef struct { const char *name; size_t i; } sort_item;

static int by_name(const void *a, const void *b) {
  return strcmp(((const sort_item *)a)->name, ((const sort_item *)b)->name);
}

#define NO_HASH UINT32_MAX

// Fetches into the cache what looking up a directory's files will read (the table's slots, then the
// entries and their lines): the lookups otherwise wait for each of these misses in turn.
static void index_prefetch(const scan_index *ix, const uint32_t *hashes, size_t n) {
  if (!ix->slots) return;
  for (size_t i = 0; i < n; i++) if (hashes[i] != NO_HASH) __builtin_prefetch(&ix->slots[hashes[i] & ix->mask]);
  for (size_t i = 0; i < n; i++) {
    uint32_t s = hashes[i] != NO_HASH ? ix->slots[hashes[i] & ix->mask] : 0;
    if (s) __builtin_prefetch(&ix->e[s - 1]);
  }
  for (size_t i = 0; i < n; i++) {
    uint32_t s = hashes[i] != NO_HASH ? ix->slots[hashes[i] & ix->mask] : 0;
    if (s) __builtin_prefetch(ix->text + ix->e[s - 1].rest_off);
  }
}

// JavaScript's milliseconds from seconds and nanoseconds (fs.Stats' mtimeMs, src/native/fsx.ts), each
// operation rounded on its own: no fused multiply-add, or the index's numbers would not compare equal.
static double js_ms(double sec, double nsec) {
  volatile double a = sec * 1e3;
  volatile double b = nsec / 1e6;
  return a + b;
}

static int record_put(batch_job *job, const char *s, size_t n) {
  if (grow((void **)&job->record, &job->record_cap, job->record_len + n, 1)) return -1;
  memcpy(job->record + job->record_len, s, n);
  job->record_len += n;
  return 0;
}

// A file's line of its directory's record, as src/worker/contenthash.ts makes it:
// `\n<name>\0file <mode & 07777 in octal> <uid>:<gid>\nsha256:<hex>`. The header part is made again only
// when the owner or mode differs from the last file's.
static int record_file(batch_job *job, const char *name, size_t len, const double *f, const char *hex) {
  unsigned mode = (unsigned)f[SCAN_MODE] & 07777, uid = (unsigned)f[SCAN_UID], gid = (unsigned)f[SCAN_GID];
  if (!job->head_len || mode != job->head_mode || uid != job->head_uid || gid != job->head_gid) {
    job->head_len = (size_t)snprintf(job->head, sizeof job->head, "file %o %u:%u\nsha256:", mode, uid, gid);
    job->head_mode = mode; job->head_uid = uid; job->head_gid = gid;
  }
  if (grow((void **)&job->record, &job->record_cap, job->record_len + len + job->head_len + 66, 1)) return -1;
  char *o = job->record + job->record_len;
  *o++ = '\n';
  memcpy(o, name, len);
  o += len;
  *o++ = 0;
  memcpy(o, job->head, job->head_len);
  o += job->head_len;
  memcpy(o, hex, 64);
  job->record_len = (size_t)(o + 64 - job->record);
  return 0;
}

static void batch_execute(napi_env env, void *data) {
  (void)env;
  batch_job *job = data;
  scan_dir d = {0};
  sort_item *order = NULL;
  size_t order_cap = 0;
  char host[PATH_MAX], key[PATH_MAX];
  size_t root_len = strlen(job->root);
  int waited = 0;
  for (size_t k = 0; k < job->count; k++) {
    const char *rel = job->rels[k];
    size_t rel_len = strlen(rel);
    if (rel_len && root_len + 1 + rel_len >= PATH_MAX) {
      errno = ENAMETOOLONG;
      scan_fail(&job->err, &job->syscall, job->failed, "scandir", job->root, rel);
      break;
    }
    if (rel_len) snprintf(host, sizeof host, "%s/%s", job->root, rel);
    else snprintf(host, sizeof host, "%s", job->root);
    d.n = 0;
    d.names_len = 0;
    if (scan_dir_read(host, job->xattrs, &d, &job->err, &job->syscall, job->failed)) break;
    // The index is being loaded meanwhile: waited for once there is something to look up in it.
    if (job->ix && !waited) {
      waited = 1;
      job->lookup = index_wait(job->ix);
    }
    if (grow((void **)&order, &order_cap, d.n, sizeof *order)) { scan_fail(&job->err, &job->syscall, job->failed, "scandir", host, NULL); break; }
    size_t names_need = job->names_len + d.names_len;
    if (grow((void **)&job->stats, &job->stats_cap, job->n + d.n, SCAN_FIELDS * sizeof(double)) ||
        grow((void **)&job->names, &job->names_cap, names_need, 1) ||
        (job->lookup && grow((void **)&job->known, &job->known_cap, job->n + d.n, 1))) {
      scan_fail(&job->err, &job->syscall, job->failed, "scandir", host, NULL);
      break;
    }
    for (size_t i = 0; i < d.n; i++) order[i] = (sort_item){ d.names + d.name_off[i], i };
    qsort(order, d.n, sizeof *order, by_name);
    if (job->lookup) {
      if (grow((void **)&job->hashes, &job->hashes_cap, d.n, sizeof *job->hashes)) { scan_fail(&job->err, &job->syscall, job->failed, "scandir", host, NULL); break; }
      uint32_t prefix = rel_len ? hash_more(hash_more(2166136261u, rel, rel_len), "/", 1) : 2166136261u;
      for (size_t i = 0; i < d.n; i++) {
        const double *f = d.stats + order[i].i * SCAN_FIELDS;
        size_t len = strlen(order[i].name);
        job->hashes[i] = S_ISREG((mode_t)f[SCAN_MODE]) && rel_len + 1 + len < sizeof key ? hash_more(prefix, order[i].name, len) & 0x7fffffff : NO_HASH;
      }
      index_prefetch(job->ix, job->hashes, d.n);
    }
    int failed = 0;
    // Its record too when every entry is a file the index vouches for (a leaf of the tree, mostly).
    int record = job->headers != NULL && job->lookup;
    job->record_len = 0;
    if (record && record_put(job, job->headers[k], strlen(job->headers[k]))) record = 0;
    for (size_t i = 0; i < d.n && !failed; i++) {
      const char *name = order[i].name;
      size_t len = strlen(name);
      memcpy(job->names + job->names_len, name, len);
      job->names[job->names_len + len] = '/';
      job->names_len += len + 1;
      const double *f = d.stats + order[i].i * SCAN_FIELDS;
      memcpy(job->stats + job->n * SCAN_FIELDS, f, SCAN_FIELDS * sizeof(double));
      if (job->lookup) {
        uint8_t known = 0;
        const ix_entry *e = NULL;
        if (job->hashes[i] != NO_HASH) {
          size_t kl = 0;
          if (rel_len) { memcpy(key, rel, rel_len); key[rel_len] = '/'; kl = rel_len + 1; }
          memcpy(key + kl, name, len);
          e = index_find(job->ix, key, kl + len, job->hashes[i]);
        }
        double row[4];
        const char *hex;
        if (e && index_rest(job->ix->text + e->rest_off, job->ix->text + job->ix->text_len, row, &hex) == 0) {
          int same = row[0] == f[SCAN_SIZE] && row[1] == js_ms(f[SCAN_MTIME], f[SCAN_MTIME_NSEC]) &&
                     row[2] == js_ms(f[SCAN_CTIME], f[SCAN_CTIME_NSEC]) && row[3] == f[SCAN_INO];
          known = same ? 1 : 2;
          if (grow((void **)&job->digests, &job->digests_cap, job->digests_len + 64, 1)) {
            scan_fail(&job->err, &job->syscall, job->failed, "scandir", host, NULL);
            failed = 1;
            break;
          }
          memcpy(job->digests + job->digests_len, hex, 64);
          job->digests_len += 64;
        }
        job->known[job->n] = known;
        if (record && (known != 1 || record_file(job, name, len, f, hex))) record = 0;
      }
      job->n++;
    }
    if (failed) break;
    job->counts[k] = (uint32_t)d.n;
    if (job->headers && job->lookup) {
      char *o = job->dir_digests + k * 71;
      uint8_t sum[32];
      if (record && sha256_digest(job->record, job->record_len, sum) == 0) {
        static const char digits[] = "0123456789abcdef";
        memcpy(o, "sha256:", 7);
        for (int b = 0; b < 32; b++) { o[7 + 2 * b] = digits[sum[b] >> 4]; o[8 + 2 * b] = digits[sum[b] & 15]; }
      } else {
        memset(o, '-', 71);
      }
    }
  }
  free(order);
  scan_dir_free(&d);
}

static napi_value typed_copy(napi_env env, napi_typedarray_type type, const void *src, size_t count, size_t size) {
  void *data;
  napi_value ab, arr;
  napi_create_arraybuffer(env, count * size, &data, &ab);
  if (count) memcpy(data, src, count * size);
  napi_create_typedarray(env, type, count, ab, 0, &arr);
  return arr;
}

static void batch_free(napi_env env, batch_job *job) {
  if (job->ix) {
    napi_delete_reference(env, job->ix_ref);
    index_unref(job->ix);
  }
  for (size_t k = 0; job->rels && k < job->count; k++) free(job->rels[k]);
  for (size_t k = 0; job->headers && k < job->count; k++) free(job->headers[k]);
  free(job->rels);
  free(job->headers);
  free(job->dir_digests);
  free(job->record);
  free(job->root);
  free(job->counts);
  free(job->hashes);
  free(job->names);
  free(job->stats);
  free(job->known);
  free(job->digests);
  free(job);
}

static void batch_complete(napi_env env, napi_status status, void *data) {
  batch_job *job = data;
  if (status != napi_ok || job->syscall) {
    napi_reject_deferred(env, job->deferred, errno_error(env, job->syscall ? job->syscall : "scandir", job->err, "cancelled", job->failed));
  } else {
    napi_value result, v;
    napi_create_object(env, &result);
    napi_set_named_property(env, result, "counts", typed_copy(env, napi_uint32_array, job->counts, job->count, sizeof(uint32_t)));
    if (names_string(env, job->names ? job->names : "", job->names_len, &v) != napi_ok) {
      napi_reject_deferred(env, job->deferred, errno_error(env, "scandir", ENOMEM, NULL, job->root));
      goto done;
    }
    napi_set_named_property(env, result, "names", v);
    napi_set_named_property(env, result, "stats", typed_copy(env, napi_float64_array, job->stats, job->n * SCAN_FIELDS, sizeof(double)));
    if (job->lookup) {
      napi_set_named_property(env, result, "known", typed_copy(env, napi_uint8_array, job->known, job->n, 1));
      napi_create_string_latin1(env, job->digests ? job->digests : "", job->digests_len, &v);
      napi_set_named_property(env, result, "digests", v);
    }
    if (job->headers && job->lookup) {
      napi_create_string_latin1(env, job->dir_digests, job->count * 71, &v);
      napi_set_named_property(env, result, "dirDigests", v);
    }
    napi_resolve_deferred(env, job->deferred, result);
  }
done:
  napi_delete_async_work(env, job->work);
  batch_free(env, job);
}

// An array of `count` strings as bytes; NULL (and *ok 0) when it is not one.
static char **string_array(napi_env env, napi_value arr, uint32_t count, int *ok) {
  uint32_t len = 0;
  bool is_array = false;
  napi_is_array(env, arr, &is_array);
  if (!is_array || napi_get_array_length(env, arr, &len) != napi_ok || len != count) { *ok = 0; return NULL; }
  char **out = calloc(count ? count : 1, sizeof *out);
  if (!out) { *ok = 0; return NULL; }
  for (uint32_t k = 0; k < count; k++) {
    napi_value v;
    if (napi_get_element(env, arr, k, &v) != napi_ok || !(out[k] = names_dup(env, v, PATH_MAX - 1))) { *ok = 0; break; }
  }
  return out;
}

// scanDirs(root, rels, xattrs, index | null, headers?) -> Promise<{ counts, names, stats, known?, digests?,
// dirDigests? }>: the directories root/rel (rel '' for root itself) read as scan_dir_read reads one, in one
// threadpool job. Entries come directory by directory, each directory's sorted by name bytes: counts[k]
// entries of rels[k]; `names` each name followed by '/'; `stats` SCAN_FIELDS numbers per entry. With an
// index, known[i] says whether it has a row for the file at rel/name, 1 when its size, mtimeMs, ctimeMs
// and ino are the scan's, 2 when not, and `digests` has the row's hex digest for each such entry, in
// order; with the directories' record headers too, `dirDigests` has 71 characters per directory: the
// digest of its record when all its entries are files known (1), else dashes. The first directory that
// fails rejects the whole batch.
static napi_value scanDirs(napi_env env, napi_callback_info info) {
  size_t argc = 5; napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  uint32_t count = 0;
  bool is_array = false;
  if (argc >= 2) napi_is_array(env, argv[1], &is_array);
  if (is_array) napi_get_array_length(env, argv[1], &count);
  batch_job *job = calloc(1, sizeof *job);
  if (!job) { napi_throw_error(env, NULL, "scanDirs: out of memory"); return NULL; }
  job->count = count;
  int ok = is_array && (job->root = names_dup(env, argv[0], PATH_MAX - 1)) && (job->counts = calloc(count ? count : 1, sizeof *job->counts));
  if (ok) job->rels = string_array(env, argv[1], count, &ok);
  bool xattrs = true;
  napi_valuetype t;
  if (ok && argc > 2 && napi_typeof(env, argv[2], &t) == napi_ok && t == napi_boolean) napi_get_value_bool(env, argv[2], &xattrs);
  if (ok && argc > 3 && napi_typeof(env, argv[3], &t) == napi_ok && t == napi_external) {
    void *ix;
    napi_get_value_external(env, argv[3], &ix);
    if (((scan_index *)ix)->released) ok = 0;
    else {
      job->ix = ix;
      job->ix->refs++;
      napi_create_reference(env, argv[3], 1, &job->ix_ref);
    }
  }
  if (ok && argc > 4 && napi_typeof(env, argv[4], &t) == napi_ok && t == napi_object) {
    job->headers = string_array(env, argv[4], count, &ok);
    if (ok && !(job->dir_digests = malloc(count ? count * 71 : 1))) ok = 0;
  }
  if (!ok) {
    batch_free(env, job);
    napi_throw_type_error(env, NULL, "scanDirs(root, rels, xattrs, index, headers)");
    return NULL;
  }
  job->xattrs = xattrs;
  return queue_job(env, "scanDirs", batch_execute, batch_complete, job, &job->deferred, &job->work);
}

void scan_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"scanDirs", NULL, scanDirs, NULL, NULL, NULL, napi_default, NULL},
    {"loadScanIndex", NULL, loadScanIndex, NULL, NULL, NULL, napi_default, NULL},
    {"releaseScanIndex", NULL, releaseScanIndex, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
