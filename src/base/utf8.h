// utf8.h — UTF-8 decoding, encoding and validation.
//
// Strict decoding per RFC 3629: no overlong forms, no surrogates, nothing
// above U+10FFFF. Used by the tokenizers (byte-level BPE, SentencePiece) and
// by streaming detokenization, which must never emit half a character.
#ifndef SIM_UTF8_H
#define SIM_UTF8_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

// Length of the sequence that starts with byte b (1..4), or 0 if b cannot start one.
int utf8_seq_len(uint8_t b);

// Decodes one code point from s[0..n). Returns the number of bytes used (1..4),
// or 0 if the bytes there are not a valid (complete) sequence; *cp is then
// left unspecified.
int utf8_decode(const char *s, size_t n, uint32_t *cp);

// Encodes cp into out (at least 4 bytes). Returns the number of bytes written,
// or 0 for an invalid code point.
int utf8_encode(uint32_t cp, char *out);

bool utf8_valid(const char *s, size_t n);

// Copies s[0..n) to out replacing each byte that does not belong to a valid
// sequence with U+FFFD (as a JSON string needs); out has room for 3n bytes.
// Returns the bytes written.
size_t utf8_sanitize(const char *s, size_t n, char *out);

// The length of the longest prefix of s[0..n) that does not end inside an
// incomplete (but so far valid) multi-byte sequence. Invalid bytes count as
// complete (they will never become valid), so streaming output never stalls.
size_t utf8_complete_prefix(const char *s, size_t n);

#endif
