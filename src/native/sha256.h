// SHA-256 for the addon's hashing (segment.c): OpenSSL's when the Node process exports it, else a portable
// implementation (sha256.c says why and how).
#ifndef SHA256_H
#define SHA256_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
  void *evp;  // OpenSSL's EVP_MD_CTX while OpenSSL hashes this one
  uint32_t h[8];
  uint64_t bytes;
  uint8_t block[64];
  size_t fill;
} sha256_ctx;

// Picks the implementation, once, at module load (before any hashing).
void sha256_setup(void);
// "openssl" or "portable".
const char *sha256_backend(void);
// Each returns 0, or -1 when OpenSSL fails (out of memory); end and abandon release the context.
int sha256_begin(sha256_ctx *c);
int sha256_update(sha256_ctx *c, const void *data, size_t len);
int sha256_end(sha256_ctx *c, uint8_t digest[32]);
void sha256_abandon(sha256_ctx *c);
int sha256_digest(const void *data, size_t len, uint8_t digest[32]);

#endif
