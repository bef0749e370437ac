// Directory scans (scan.c): one directory read and lstat'ed (fsx.c's synchronous scanDir), and batches of
// directories on the threadpool with a context's metadata index looked up there (scanDirs).
#ifndef SCAN_H
#define SCAN_H
#include <stddef.h>
#include <node_api.h>

// Numbers a scan gives per entry, at these offsets (src/native/fsx.ts `Scan` names them alike).
enum { SCAN_MODE, SCAN_UID, SCAN_GID, SCAN_SIZE, SCAN_MTIME, SCAN_NLINK, SCAN_DEV, SCAN_INO, SCAN_RDEV_MAJOR,
       SCAN_RDEV_MINOR, SCAN_XATTRS, SCAN_OPAQUE, SCAN_MTIME_NSEC, SCAN_CTIME, SCAN_CTIME_NSEC, SCAN_BLOCKS,
       SCAN_FIELDS };
// SCAN_XATTRS: 1 when the entry has extended attributes other than overlay's (trusted.overlay.*), 2 when
// it has too many names to tell here (the caller reads them, and the opaque mark, itself).
// SCAN_OPAQUE: 1 for a directory overlay marks opaque (trusted.overlay.opaque = "y").

// One directory's entries in readdir order: names NUL-terminated one after another in `names` (entry i
// at name_off[i]), SCAN_FIELDS numbers each in `stats`.
typedef struct {
  char *names;
  size_t names_len, names_cap;
  size_t *name_off;
  double *stats;
  size_t n, cap, off_cap;
} scan_dir;

// Reads `dir` into `out` (appending to it: start from a zeroed one, scan_dir_free after). 0, or -1 with
// the errno in *err, the failed call in *syscall and the path it failed on in `failed` (PATH_MAX bytes).
int scan_dir_read(const char *dir, int xattrs, scan_dir *out, int *err, const char **syscall, char *failed);
void scan_dir_free(scan_dir *d);

void scan_init(napi_env env, napi_value exports);
#endif
