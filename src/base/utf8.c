// utf8.c — strict UTF-8 codec.
#include "base/utf8.h"

#include <string.h>

int utf8_seq_len(uint8_t b) {
    if (b < 0x80) return 1;
    if (b >= 0xC2 && b <= 0xDF) return 2;
    if (b >= 0xE0 && b <= 0xEF) return 3;
    if (b >= 0xF0 && b <= 0xF4) return 4;
    return 0;
}

int utf8_decode(const char *s, size_t n, uint32_t *cp) {
    if (n == 0) return 0;
    const uint8_t *u = (const uint8_t *)s;
    int len = utf8_seq_len(u[0]);
    if (len == 0 || (size_t)len > n) return 0;
    if (len == 1) {
        *cp = u[0];
        return 1;
    }
    uint32_t c = u[0] & (0x7F >> len);
    for (int i = 1; i < len; i++) {
        if ((u[i] & 0xC0) != 0x80) return 0;
        c = (c << 6) | (u[i] & 0x3F);
    }
    // Reject overlong forms and values outside the Unicode scalar range.
    if ((len == 3 && c < 0x800) || (len == 4 && (c < 0x10000 || c > 0x10FFFF))) return 0;
    if (c >= 0xD800 && c <= 0xDFFF) return 0;
    *cp = c;
    return len;
}

int utf8_encode(uint32_t cp, char *out) {
    uint8_t *o = (uint8_t *)out;
    if (cp < 0x80) {
        o[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (uint8_t)(0xC0 | (cp >> 6));
        o[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xE0 | (cp >> 12));
        o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    if (cp <= 0x10FFFF) {
        o[0] = (uint8_t)(0xF0 | (cp >> 18));
        o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
        o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        o[3] = (uint8_t)(0x80 | (cp & 0x3F));
        return 4;
    }
    return 0;
}

bool utf8_valid(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        int k = utf8_decode(s + i, n - i, &cp);
        if (k == 0) return false;
        i += (size_t)k;
    }
    return true;
}

// Whether s[0..n) is a proper, so-far-valid prefix of some multi-byte sequence.
static bool incomplete_seq(const uint8_t *s, size_t n) {
    int len = utf8_seq_len(s[0]);
    if (len <= 1 || (size_t)len <= n) return false;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) return false;
    // The second byte narrows the range for E0, ED, F0 and F4 lead bytes.
    if (n >= 2) {
        uint8_t b0 = s[0], b1 = s[1];
        if (b0 == 0xE0 && b1 < 0xA0) return false;
        if (b0 == 0xED && b1 > 0x9F) return false;
        if (b0 == 0xF0 && b1 < 0x90) return false;
        if (b0 == 0xF4 && b1 > 0x8F) return false;
    }
    return true;
}

size_t utf8_complete_prefix(const char *s, size_t n) {
    const uint8_t *u = (const uint8_t *)s;
    // Only the last 3 bytes can hold the start of an unfinished sequence.
    size_t start = n > 3 ? n - 3 : 0;
    for (size_t i = start; i < n; i++) {
        if (utf8_seq_len(u[i]) > 1 && incomplete_seq(u + i, n - i)) return i;
    }
    return n;
}

size_t utf8_sanitize(const char *s, size_t n, char *out) {
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int len = utf8_decode(s + i, n - i, &cp);
        if (len > 0) {
            memcpy(out + k, s + i, (size_t)len);
            k += (size_t)len;
            i += (size_t)len;
        } else {
            memcpy(out + k, "\xEF\xBF\xBD", 3);
            k += 3;
            i++;
        }
    }
    return k;
}
