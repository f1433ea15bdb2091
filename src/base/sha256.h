// sha256.h — SHA-256 (FIPS 180-4), for the checksums of scenario assets.
//
//     sha256_ctx c;
//     sha256_init(&c);
//     sha256_update(&c, data, n);        // any number of times
//     uint8_t digest[SHA256_SIZE];
//     sha256_final(&c, digest);
//     char hex[SHA256_HEX_SIZE];          // 64 lowercase hex digits + NUL
//     sha256_hex(digest, hex);
//
// A plain portable implementation: assets are hashed once when a scenario is
// checked or loaded, so speed is secondary to being obviously right. No
// allocation, no global state; the context lives wherever the caller puts it.
#ifndef SIM_SHA256_H
#define SIM_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_SIZE 32
#define SHA256_HEX_SIZE 65

typedef struct sha256_ctx {
    uint32_t h[8];     // the running hash state
    uint64_t n_bytes;  // message length so far
    uint8_t buf[64];   // a partial block
    size_t n_buf;      // bytes in buf (0..63)
} sha256_ctx;

void sha256_init(sha256_ctx *c);
void sha256_update(sha256_ctx *c, const void *data, size_t n);
void sha256_final(sha256_ctx *c, uint8_t out[SHA256_SIZE]);

// One call for a whole buffer.
void sha256(const void *data, size_t n, uint8_t out[SHA256_SIZE]);

// Lowercase hex of a digest, NUL-terminated.
void sha256_hex(const uint8_t digest[SHA256_SIZE], char out[SHA256_HEX_SIZE]);

#endif
