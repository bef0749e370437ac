// SHA-256 without OpenSSL's headers, which only some Node distributions ship (official builds and
// NodeSource's have include/node/openssl; node-api-headers, what the prebuilds are compiled with, has
// only Node-API).
//
// OpenSSL is preferred when the process has it: diff ids hash every byte of every layer (hundreds of MB),
// and OpenSSL's SHA-256 uses the CPU's SHA extensions (SHA-NI on x86-64, the ARMv8 crypto extensions):
// ~1.5 GB/s against ~0.2 GB/s for the portable C below, measured on one x86-64 core with SHA-NI. Every Node build has it in the global symbol scope: official
// builds (and NodeSource's) export OpenSSL's symbols from the node binary itself for addons; Debian's
// nodejs links libcrypto.so dynamically, which is then loaded with the process. The EVP functions below are
// declared here, weak: the dynamic linker binds them at load from that global scope (the scope
// dlsym(RTLD_DEFAULT) searches), and leaves them NULL where they are missing — without libdl, and without
// the GLIBC_2.34 symbol version dlsym carries when built against a current glibc. Their signatures are
// the same in OpenSSL 1.1 and 3.x (and BoringSSL).
//
// Where they are missing (a Node built against a library without them, or hiding them), or
// BUILDER_FSX_SHA256=portable is set, a portable SHA-256 written from FIPS 180-4 hashes instead.
#include <stdlib.h>
#include <string.h>

#include "sha256.h"

typedef struct evp_md_ctx_st EVP_MD_CTX;
typedef struct evp_md_st EVP_MD;
typedef struct engine_st ENGINE;
extern EVP_MD_CTX *EVP_MD_CTX_new(void) __attribute__((weak));
extern void EVP_MD_CTX_free(EVP_MD_CTX *ctx) __attribute__((weak));
extern const EVP_MD *EVP_sha256(void) __attribute__((weak));
extern int EVP_DigestInit_ex(EVP_MD_CTX *ctx, const EVP_MD *type, ENGINE *impl) __attribute__((weak));
extern int EVP_DigestUpdate(EVP_MD_CTX *ctx, const void *d, size_t cnt) __attribute__((weak));
extern int EVP_DigestFinal_ex(EVP_MD_CTX *ctx, unsigned char *md, unsigned int *s) __attribute__((weak));

static int use_openssl;

// ------------------------------------------------------------------ portable (FIPS 180-4, section 6.2)

static const uint32_t K[64] = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
#define CH(x, y, z) (((x) & (y)) ^ (~(x) & (z)))
#define MAJ(x, y, z) (((x) & (y)) ^ ((x) & (z)) ^ ((y) & (z)))
#define BSIG0(x) (ROTR(x, 2) ^ ROTR(x, 13) ^ ROTR(x, 22))
#define BSIG1(x) (ROTR(x, 6) ^ ROTR(x, 11) ^ ROTR(x, 25))
#define SSIG0(x) (ROTR(x, 7) ^ ROTR(x, 18) ^ ((x) >> 3))
#define SSIG1(x) (ROTR(x, 17) ^ ROTR(x, 19) ^ ((x) >> 10))

static void compress(uint32_t h[8], const uint8_t *p) {
  uint32_t w[64];
  for (int t = 0; t < 16; t++) w[t] = (uint32_t)p[4 * t] << 24 | (uint32_t)p[4 * t + 1] << 16 | (uint32_t)p[4 * t + 2] << 8 | p[4 * t + 3];
  for (int t = 16; t < 64; t++) w[t] = SSIG1(w[t - 2]) + w[t - 7] + SSIG0(w[t - 15]) + w[t - 16];
  uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
  for (int t = 0; t < 64; t++) {
    uint32_t t1 = hh + BSIG1(e) + CH(e, f, g) + K[t] + w[t];
    uint32_t t2 = BSIG0(a) + MAJ(a, b, c);
    hh = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
  }
  h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
}

static void portable_begin(sha256_ctx *c) {
  static const uint32_t H0[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
  memcpy(c->h, H0, sizeof H0);
  c->bytes = 0;
  c->fill = 0;
}

static void portable_update(sha256_ctx *c, const uint8_t *p, size_t len) {
  c->bytes += len;
  if (c->fill) {
    size_t n = 64 - c->fill < len ? 64 - c->fill : len;
    memcpy(c->block + c->fill, p, n);
    c->fill += n; p += n; len -= n;
    if (c->fill < 64) return;
    compress(c->h, c->block);
    c->fill = 0;
  }
  for (; len >= 64; p += 64, len -= 64) compress(c->h, p);
  memcpy(c->block, p, len);
  c->fill = len;
}

static void portable_end(sha256_ctx *c, uint8_t digest[32]) {
  // Padding (5.1.1): a 1 bit, zeros up to 56 bytes into a block, then the length in bits, big-endian.
  uint64_t bits = c->bytes * 8;
  c->block[c->fill++] = 0x80;
  if (c->fill > 56) {
    memset(c->block + c->fill, 0, 64 - c->fill);
    compress(c->h, c->block);
    c->fill = 0;
  }
  memset(c->block + c->fill, 0, 56 - c->fill);
  for (int i = 0; i < 8; i++) c->block[56 + i] = (uint8_t)(bits >> (56 - 8 * i));
  compress(c->h, c->block);
  for (int i = 0; i < 8; i++) {
    digest[4 * i] = (uint8_t)(c->h[i] >> 24); digest[4 * i + 1] = (uint8_t)(c->h[i] >> 16);
    digest[4 * i + 2] = (uint8_t)(c->h[i] >> 8); digest[4 * i + 3] = (uint8_t)c->h[i];
  }
}

// ------------------------------------------------------------------ either

int sha256_begin(sha256_ctx *c) {
  c->evp = NULL;
  if (!use_openssl) { portable_begin(c); return 0; }
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) { if (ctx) EVP_MD_CTX_free(ctx); return -1; }
  c->evp = ctx;
  return 0;
}

int sha256_update(sha256_ctx *c, const void *data, size_t len) {
  if (c->evp) return EVP_DigestUpdate(c->evp, data, len) ? 0 : -1;
  portable_update(c, data, len);
  return 0;
}

int sha256_end(sha256_ctx *c, uint8_t digest[32]) {
  if (!c->evp) { portable_end(c, digest); return 0; }
  unsigned int len = 0;
  int ok = EVP_DigestFinal_ex(c->evp, digest, &len) && len == 32;
  EVP_MD_CTX_free(c->evp);
  c->evp = NULL;
  return ok ? 0 : -1;
}

void sha256_abandon(sha256_ctx *c) {
  if (c->evp) EVP_MD_CTX_free(c->evp);
  c->evp = NULL;
}

int sha256_digest(const void *data, size_t len, uint8_t digest[32]) {
  sha256_ctx c;
  if (sha256_begin(&c) != 0) return -1;
  if (sha256_update(&c, data, len) != 0) { sha256_abandon(&c); return -1; }
  return sha256_end(&c, digest);
}

const char *sha256_backend(void) {
  return use_openssl ? "openssl" : "portable";
}

void sha256_setup(void) {
  const char *force = getenv("BUILDER_FSX_SHA256");
  use_openssl = EVP_MD_CTX_new && EVP_MD_CTX_free && EVP_sha256 && EVP_DigestInit_ex && EVP_DigestUpdate && EVP_DigestFinal_ex &&
                !(force && strcmp(force, "portable") == 0);
  if (!use_openssl) return;
  // A library that has these names but not OpenSSL's behaviour is not trusted with layer digests.
  static const uint8_t abc[32] = {
    0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
    0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad,
  };
  uint8_t d[32];
  if (sha256_digest("abc", 3, d) != 0 || memcmp(d, abc, 32) != 0) use_openssl = 0;
}
