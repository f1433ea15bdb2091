// tok.h — tokenizers built from GGUF metadata: SentencePiece-style BPE
// (`tokenizer.ggml.model = "llama"`) and byte-level BPE (`"gpt2"`).
//
// What a vocab is made of (GGUF keys, all under "tokenizer.ggml."):
//   model            string  "llama" (SentencePiece) or "gpt2" (byte-level BPE)   required
//   tokens           string[n_vocab]  the pieces                                  required
//   scores           f32[n_vocab]     merge priority (SentencePiece)              optional (0)
//   token_type       i32[n_vocab]     1 normal, 2 unknown, 3 control,             optional (1)
//                                     4 user-defined, 5 unused, 6 byte
//   merges           string[]         "left right", best first (BPE)             required for gpt2
//   pre              string           pre-tokenizer name (BPE), see below         optional
//   bos_token_id, eos_token_id, unknown_token_id, padding_token_id,
//   eot_token_id, eom_token_id, seperator_token_id       u32, < n_vocab          optional
//   add_bos_token, add_eos_token, add_space_prefix       bool                    optional
//
// SentencePiece (llama): spaces become U+2581 "▁", one "▁" is prepended when
// add_space_prefix (default true), the text is split into UTF-8 characters
// and the adjacent pair whose concatenation is a piece with the highest score
// is merged until no pair is a piece (ties: leftmost). Characters that are no
// piece become <0xXX> byte tokens (or unknown_token_id without them).
//
// Byte-level BPE (gpt2): the text is split into words by the pre-tokenizer
// regexes of `pre` (PCRE2, applied in sequence; each one splits every piece
// the previous ones left, keeping both matches and the text between them),
// each word's bytes are mapped to characters with GPT-2's bytes_to_unicode
// table, and the merges are applied by rank (lowest first, ties leftmost).
// Known pre names (and aliases): default (also used, with a warning, when the
// key is absent), gpt-2, llama-bpe, qwen2, deepseek-llm, deepseek-coder,
// deepseek-v3, falcon, starcoder, mpt, tekken — see tok.c for the full list.
// An unknown name is an error (SIM_ERR_UNSUPPORTED): a wrong split would
// silently degrade the model.
//
// Special tokens: control and unknown tokens in the text are matched as whole
// tokens only when parse_special is true; user-defined tokens are always
// matched (as llama.cpp and Hugging Face tokenizers do). Longer special
// tokens win over shorter ones. The text between them is tokenized normally.
// (SentencePiece: text after a special token gets the space prefix again.)
// Phi-3 vocabs (general.name contains "phi-3"/"phi3") strip whitespace after
// their special tokens, as llama.cpp does for them.
//
// Where we differ from llama.cpp on purpose: SentencePiece merges never form
// control, unknown, unused or byte pieces from plain text (as SentencePiece
// itself), and decoding never applies clean_up_tokenization_spaces (" ," →
// ","), so decode(encode(text)) == text exactly.
//
// Usage:
//     tok_vocab *v;
//     if (tok_load(&v, gguf, &err) != SIM_OK) { puts(err.msg); ... }
//     gguf_close(gguf);                       // the vocab copied what it needs
//     int32_t ids[256];
//     int n = tok_encode(v, text, strlen(text), true, false, ids, 256, &err);
//     if (n < 0) error; if (n > 256) retry with a bigger buffer (n is the count needed)
//
//     tok_stream st;                          // streaming detokenization
//     tok_stream_init(&st, v, 0);
//     char buf[TOK_STREAM_BUF];               // exact need: tok_max_token_bytes(v) + 4
//     for each generated id:
//         { int k = tok_stream_push(&st, id, buf, sizeof buf); fwrite(buf, 1, k, out); }
//     fwrite(buf, 1, tok_stream_flush(&st, buf, sizeof buf), out);
//     tok_free(v);
//
// Ownership: tok_load copies everything it needs out of the gguf_file (the
// file may be closed right after). The vocab is immutable after loading, so
// every function taking `const tok_vocab *` may be called from several
// threads at once (each call uses its own scratch memory). A tok_stream is
// per-sequence state owned by the caller; it holds no heap memory.
//
// Errors: tok_load returns a sim_status and names the key and the problem in
// err (no partial vocab is returned). tok_encode returns a negative
// sim_status (and a message in err when err is not NULL). Token ids passed to
// the accessors are checked: an out-of-range id gives an empty piece /
// TOK_TYPE_UNDEFINED / false.
#ifndef SIM_TOK_H
#define SIM_TOK_H

#include "base/base.h"
#include "model/gguf.h"

typedef struct tok_vocab tok_vocab;

typedef enum tok_kind {
    TOK_KIND_SPM = 1, // "llama": SentencePiece BPE with scores and byte fallback
    TOK_KIND_BPE = 2, // "gpt2": byte-level BPE with merges
} tok_kind;

// The GGUF token types (tokenizer.ggml.token_type values).
typedef enum tok_type {
    TOK_TYPE_UNDEFINED = 0,
    TOK_TYPE_NORMAL = 1,
    TOK_TYPE_UNKNOWN = 2,
    TOK_TYPE_CONTROL = 3,
    TOK_TYPE_USER_DEFINED = 4,
    TOK_TYPE_UNUSED = 5,
    TOK_TYPE_BYTE = 6,
} tok_type;

// Per-token attributes: the type as a bit, plus whitespace stripping around
// special tokens when they are matched in text (LSTRIP: spaces before the
// token are dropped, RSTRIP: spaces after it).
enum {
    TOK_ATTR_NORMAL = 1u << 0,
    TOK_ATTR_UNKNOWN = 1u << 1,
    TOK_ATTR_CONTROL = 1u << 2,
    TOK_ATTR_USER_DEFINED = 1u << 3,
    TOK_ATTR_UNUSED = 1u << 4,
    TOK_ATTR_BYTE = 1u << 5,
    TOK_ATTR_LSTRIP = 1u << 6,
    TOK_ATTR_RSTRIP = 1u << 7,
};

#define TOK_NULL (-1)          // "no such token" (absent BOS, failed lookup)
#define TOK_MAX_VOCAB (1 << 24) // largest vocabulary we accept
#define TOK_MAX_TEXT (1 << 28)  // longest text tok_encode accepts, bytes

// --- loading -------------------------------------------------------------------

// Builds a vocab from f's tokenizer metadata. On success *out owns a new vocab
// (free with tok_free). On error *out is NULL and err says which key is wrong.
// Errors: SIM_ERR_FORMAT (missing/mistyped/mismatched arrays, ids out of
// range, malformed merges), SIM_ERR_UNSUPPORTED (unknown tokenizer model or
// pre-tokenizer name), SIM_ERR_NOMEM.
sim_status tok_load(tok_vocab **out, const gguf_file *f, sim_err *err);
void tok_free(tok_vocab *v); // NULL is fine

// A non-fatal note from loading (e.g. "tokenizer.ggml.pre is absent: using
// 'default'"), or NULL. Owned by the vocab.
const char *tok_warning(const tok_vocab *v);

// --- encoding ------------------------------------------------------------------

// Tokenizes text[0..len) (need not be NUL-terminated; invalid UTF-8 is
// tokenized byte by byte). add_special: add BOS / EOS where the vocab's
// add_bos_token / add_eos_token flags say so. parse_special: match control
// tokens written in the text (e.g. "<|im_start|>") as themselves.
// Writes at most cap ids to out (out may be NULL when cap is 0) and returns
// the number of ids the text needs — possibly more than cap, in which case
// only the first cap were written. Returns a negative sim_status on error:
// SIM_ERR_ARG (NULL vocab, NULL text with len > 0, cap < 0),
// SIM_ERR_RANGE (len > TOK_MAX_TEXT), SIM_ERR_NOMEM, SIM_ERR_UNSUPPORTED
// (the regex engine failed, e.g. hit its resource limits).
int tok_encode(const tok_vocab *v, const char *text, size_t len, bool add_special,
               bool parse_special, int32_t *out, int cap, sim_err *err);
// The same into a new array (*out, mem_alloc'd; free with mem_free, set even
// for 0 ids): returns the count, or a negative sim_status with *out NULL.
int tok_encode_alloc(const tok_vocab *v, const char *text, size_t len, bool add_special, bool parse_special,
                     int32_t **out, sim_err *err);

// --- decoding ------------------------------------------------------------------

enum {
    // Render control and unknown tokens as their piece text ("<s>", "<|im_end|>")
    // instead of nothing.
    TOK_DECODE_SPECIAL = 1u << 0,
    // The ids start the text: drop the one space that SentencePiece vocabs
    // (add_space_prefix) put in front of the first piece. Like SentencePiece
    // and llama.cpp's llama_detokenize_spm, a leading BOS is skipped over: the
    // first token that is not BOS loses one leading space.
    TOK_DECODE_TEXT_START = 1u << 1,
};

// The bytes token id contributes to the text: "▁" → space and <0xXX> → that
// byte for SentencePiece, the byte-level mapping undone for BPE, user-defined
// tokens as written, control / unknown tokens empty unless special is true,
// unused (placeholder) tokens always empty; tokens of an unknown type number
// decode like normal ones. Not NUL-terminated (but a NUL follows).
// *len may be NULL. An out-of-range id gives "" with length 0.
const char *tok_token_text(const tok_vocab *v, int32_t id, bool special, size_t *len);

// Copies tok_token_text into buf: writes min(n, cap) bytes and returns n, the
// full length (a negative SIM_ERR_RANGE for an out-of-range id).
int tok_decode_token(const tok_vocab *v, int32_t id, bool special, char *buf, int cap);

// Decodes a whole sequence (flags: TOK_DECODE_*). Writes min(n, cap) bytes to
// buf and returns n, the full length; negative SIM_ERR_RANGE if an id is out
// of range, SIM_ERR_ARG for bad arguments. Adds no NUL.
int tok_decode(const tok_vocab *v, const int32_t *ids, int n_ids, unsigned flags, char *buf,
               int cap);

// Streaming detokenization: push ids one at a time, get back only bytes that
// end on a UTF-8 character boundary. An incomplete multi-byte sequence at the
// end (an emoji split across <0xXX> byte tokens, a CJK character split across
// byte-level BPE tokens) is held back until the rest arrives. Bytes that can
// never become valid UTF-8 are passed through, so the stream never stalls.
typedef struct tok_stream {
    const tok_vocab *v;
    unsigned flags;     // TOK_DECODE_*
    bool strip_pending; // TEXT_START: the next non-BOS token loses a leading space
    uint8_t n_held;     // bytes of an incomplete UTF-8 sequence held back (0..3)
    char held[4];
} tok_stream;

// Room for the pieces of the vocabs we know (the longest seen is 256 bytes);
// size a buffer as tok_max_token_bytes(v) + 4 to be exact for any vocab.
#define TOK_STREAM_BUF 512

void tok_stream_init(tok_stream *s, const tok_vocab *v, unsigned flags);
// Appends token id; writes the bytes ready to emit into buf and returns their
// count (may be 0). Returns SIM_ERR_ARG, changing nothing, when cap is too
// small (cap >= tok_max_token_bytes(v) + 4 always suffices), and
// SIM_ERR_RANGE for an out-of-range id.
int tok_stream_push(tok_stream *s, int32_t id, char *buf, int cap);
// Emits whatever is held back (an unfinished sequence at the end of the
// stream) and resets the stream to continue mid-text. Needs cap >= 4.
int tok_stream_flush(tok_stream *s, char *buf, int cap);

// --- accessors -----------------------------------------------------------------

tok_kind tok_get_kind(const tok_vocab *v);
const char *tok_pre_name(const tok_vocab *v); // "" for SentencePiece
int32_t tok_n_vocab(const tok_vocab *v);
int tok_max_token_bytes(const tok_vocab *v); // longest tok_token_text (special included)

int32_t tok_bos(const tok_vocab *v); // TOK_NULL when the vocab has none
int32_t tok_eos(const tok_vocab *v);
int32_t tok_eot(const tok_vocab *v);
int32_t tok_unk(const tok_vocab *v);
int32_t tok_pad(const tok_vocab *v);
bool tok_add_bos(const tok_vocab *v);
bool tok_add_eos(const tok_vocab *v);
bool tok_add_space_prefix(const tok_vocab *v);

// End of generation: EOS, EOT, EOM and tokens that end turns in common chat
// formats ("<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
// "<|endoftext|>", "<|eom_id|>", "<EOT>").
bool tok_is_eog(const tok_vocab *v, int32_t id);
int tok_eog_ids(const tok_vocab *v, const int32_t **ids); // the whole set, ascending

tok_type tok_token_type(const tok_vocab *v, int32_t id);
unsigned tok_token_attr(const tok_vocab *v, int32_t id); // TOK_ATTR_* bits; 0 out of range
float tok_score(const tok_vocab *v, int32_t id);
// The raw piece as stored in the vocab ("▁Hello", "Ġworld", "<0x0A>"),
// NUL-terminated; *len may be NULL. "" for an out-of-range id.
const char *tok_piece(const tok_vocab *v, int32_t id, size_t *len);
// The id whose raw piece is exactly piece[0..len), or TOK_NULL.
int32_t tok_find(const tok_vocab *v, const char *piece, size_t len);

#endif
