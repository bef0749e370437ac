// File names between bytes and JavaScript strings, as src/util/names.ts converts them: valid UTF-8 is an
// ordinary string; each byte of a name that is not is a lone surrogate U+DC80..U+DCFF (Python's
// surrogateescape), so names that are not UTF-8 survive the trip both ways. N-API's utf8 calls would turn
// those bytes into U+FFFD.
#ifndef NAMES_H
#define NAMES_H
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <node_api.h>

// Length of the valid UTF-8 sequence at s[i] (n bytes in all), or 0; no overlong forms, no surrogates.
static inline size_t names_sequence(const unsigned char *s, size_t i, size_t n) {
  unsigned char c = s[i];
  if (c < 0x80) return 1;
#define NAMES_CONT(k) (i + (k) < n && (s[i + (k)] & 0xc0) == 0x80)
  if (c >= 0xc2 && c <= 0xdf) return NAMES_CONT(1) ? 2 : 0;
  if (c >= 0xe0 && c <= 0xef) {
    if (!NAMES_CONT(1) || !NAMES_CONT(2)) return 0;
    if ((c == 0xe0 && s[i + 1] < 0xa0) || (c == 0xed && s[i + 1] >= 0xa0)) return 0;
    return 3;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    if (!NAMES_CONT(1) || !NAMES_CONT(2) || !NAMES_CONT(3)) return 0;
    if ((c == 0xf0 && s[i + 1] < 0x90) || (c == 0xf4 && s[i + 1] >= 0x90)) return 0;
    return 4;
  }
#undef NAMES_CONT
  return 0;
}

// The string for a name of `n` bytes.
static inline napi_status names_string(napi_env env, const char *name, size_t n, napi_value *result) {
  const unsigned char *s = (const unsigned char *)name;
  size_t i = 0, len;
  while (i < n && (len = names_sequence(s, i, n))) i += len;
  if (i == n) return napi_create_string_utf8(env, name, n, result);
  // At most one UTF-16 unit per byte.
  char16_t *u = malloc((n ? n : 1) * sizeof *u);
  if (!u) return napi_generic_failure;
  size_t o = 0;
  for (i = 0; i < n;) {
    len = names_sequence(s, i, n);
    if (!len) { u[o++] = (char16_t)(0xdc00 + s[i++]); continue; }
    uint32_t c = len == 1 ? s[i] : len == 2 ? (s[i] & 0x1f) : len == 3 ? (s[i] & 0x0f) : (s[i] & 0x07);
    for (size_t k = 1; k < len; k++) c = (c << 6) | (s[i + k] & 0x3f);
    i += len;
    if (c >= 0x10000) { c -= 0x10000; u[o++] = (char16_t)(0xd800 + (c >> 10)); u[o++] = (char16_t)(0xdc00 + (c & 0x3ff)); }
    else u[o++] = (char16_t)c;
  }
  napi_status st = napi_create_string_utf16(env, u, o, result);
  free(u);
  return st;
}

// A string's name bytes, NUL-terminated, in `buf` (`cap` bytes); -1 when it is not a string or does not
// fit. Its length in *len when len is not NULL.
static inline int names_bytes(napi_env env, napi_value v, char *buf, size_t cap, size_t *len) {
  size_t n;
  if (napi_get_value_string_utf16(env, v, NULL, 0, &n) != napi_ok) return -1;
  char16_t stack[1024];
  char16_t *u = n < 1024 ? stack : malloc((n + 1) * sizeof *u);
  if (!u) return -1;
  napi_get_value_string_utf16(env, v, u, n + 1, &n);
  size_t o = 0;
  int ok = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t c = u[i];
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < n && u[i + 1] >= 0xdc00 && u[i + 1] <= 0xdfff) {
      c = 0x10000 + ((c - 0xd800) << 10) + (u[++i] - 0xdc00);
    } else if (c >= 0xdc80 && c <= 0xdcff) {
      if (o + 1 >= cap) goto done;
      buf[o++] = (char)(c - 0xdc00);
      continue;
    } else if (c >= 0xd800 && c <= 0xdfff) {
      c = 0xfffd; // a lone surrogate that stands for no byte: as UTF-8 encoding writes it
    }
    size_t need = c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
    if (o + need >= cap) goto done;
    if (c < 0x80) buf[o++] = (char)c;
    else if (c < 0x800) { buf[o++] = (char)(0xc0 | (c >> 6)); buf[o++] = (char)(0x80 | (c & 0x3f)); }
    else if (c < 0x10000) {
      buf[o++] = (char)(0xe0 | (c >> 12)); buf[o++] = (char)(0x80 | ((c >> 6) & 0x3f)); buf[o++] = (char)(0x80 | (c & 0x3f));
    } else {
      buf[o++] = (char)(0xf0 | (c >> 18)); buf[o++] = (char)(0x80 | ((c >> 12) & 0x3f));
      buf[o++] = (char)(0x80 | ((c >> 6) & 0x3f)); buf[o++] = (char)(0x80 | (c & 0x3f));
    }
  }
  ok = 1;
done:
  if (u != stack) free(u);
  if (!ok) return -1;
  buf[o] = 0;
  if (len) *len = o;
  return 0;
}

// names_bytes into a new allocation (free it); NULL when it is not a string or is longer than `max` bytes.
static inline char *names_dup(napi_env env, napi_value v, size_t max) {
  size_t n;
  if (napi_get_value_string_utf16(env, v, NULL, 0, &n) != napi_ok) return NULL;
  size_t cap = n * 3 + 1;
  if (cap > max + 1) cap = max + 1;
  char *s = malloc(cap);
  if (s && names_bytes(env, v, s, cap, NULL) != 0) { free(s); return NULL; }
  return s;
}

#endif
