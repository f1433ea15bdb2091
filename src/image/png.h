// png.h — PNG encode (8-bit RGB/RGBA with text chunks) and decode (every
// colour type and bit depth, interlaced or not) to RGBA8.
//
//     png_image img;
//     if (png_read_file(&img, "in.png", &err) != SIM_OK) ...   // img.rgba: (h, w, 4)
//     const char *params = png_text_find(&img, "parameters");  // NULL when absent
//     png_text t = {"parameters", "a lighthouse, seed 42"};
//     png_write_file("out.png", img.rgba, img.w, img.h, 4, &t, 1, &err);
//     png_image_free(&img);
//
// The format, in order: the 8-byte signature 89 50 4E 47 0D 0A 1A 0A, then
// chunks, each a big-endian u32 length, a 4-byte type, the data and a
// CRC-32 of type + data. IHDR comes first (13 bytes: width, height u32;
// bit depth; colour type 0 gray, 2 RGB, 3 palette, 4 gray+alpha, 6 RGBA;
// compression 0; filter 0; interlace 0 none / 1 Adam7). PLTE (1..256 RGB
// entries) precedes the image data for colour type 3; tRNS gives palette
// alphas or the one transparent gray / RGB value; tEXt is keyword (1..79
// bytes), NUL, Latin-1 text; zTXt is keyword, NUL, method 0, zlib text;
// iTXt is keyword, NUL, compression flag, method 0, language, NUL,
// translated keyword, NUL, UTF-8 text (zlib when the flag is 1). The IDAT chunks, consecutive, hold one zlib stream of
// scanlines, each a filter byte (0 none, 1 sub, 2 up, 3 average, 4 Paeth)
// and the row's bytes (Adam7: the seven passes' scanlines one after the
// other). IEND ends the file.
//
// Decoding treats the bytes as hostile: the signature, IHDR first, every
// chunk length against the bytes left, every CRC, unknown critical chunks,
// width and height (≤ PNG_MAX_SIDE each, ≤ PNG_MAX_PIXELS in all), the
// inflated size (exactly what IHDR implies: no more, no less), filter
// bytes, palette indices and a missing IEND are checked, each with a
// precise message. 16-bit samples are reduced to 8 bits by rounding
// (v + 128) / 257; 1/2/4-bit gray is scaled to 0..255.
//
// Ownership: png_decode fills a png_image that owns its pixels and texts
// (png_image_free). png_encode returns a mem_alloc'd buffer. Allocation goes
// through mem_* (zlib's too). Errors: sim_status + a message in sim_err.
#ifndef SIM_PNG_H
#define SIM_PNG_H

#include "base/base.h"

#define PNG_MAX_SIDE 16384
#define PNG_MAX_PIXELS ((uint64_t)64 << 20)
#define PNG_MAX_TEXTS 256 // text chunks kept by the decoder (later ones are ignored)
#define PNG_MAX_TEXT_BYTES (1 << 20) // one compressed text, inflated

typedef struct png_text {
    const char *key;  // 1..79 printable Latin-1 bytes, no NUL
    const char *text; // any bytes but NUL
} png_text;

typedef struct png_image {
    int w, h;
    uint8_t *rgba;      // (h, w, 4), straight (not premultiplied) alpha
    png_text *texts;    // (n_texts) the tEXt, zTXt and iTXt chunks in file order (texts
                        // inflated; iTXt language and translation dropped); owned here
    int n_texts;
    // What the file held (for reporting): bit depth, colour type, interlace.
    int bit_depth, color_type, interlace;
} png_image;

// Encodes pixels (h, w, channels) with channels 3 (RGB) or 4 (RGBA), 8 bits
// each, rows filtered with the smallest-sum-of-absolute-values heuristic,
// the given texts before the image data (tEXt, or iTXt for a text with
// bytes past ASCII: UTF-8). *out (mem_alloc'd, free with
// mem_free) and *out_len receive the file. On error nothing is returned.
sim_status png_encode(const uint8_t *pix, int w, int h, int channels, const png_text *texts, int n_texts,
                      uint8_t **out, size_t *out_len, sim_err *err);

// The filter type the encoder picks for one row (for tests): the one of 0..4
// whose output has the smallest sum of |byte as int8|. prev is NULL for the
// first row; bpp is the bytes per pixel.
int png_pick_filter(const uint8_t *row, const uint8_t *prev, size_t len, int bpp);

// Decodes a PNG file held in memory into *img (RGBA8). On error *img is
// left empty (all zero) and the message says what is wrong.
sim_status png_decode(png_image *img, const uint8_t *data, size_t len, sim_err *err);

void png_image_free(png_image *img);

// The text of the first text chunk with this keyword, or NULL.
const char *png_text_find(const png_image *img, const char *key);

// Files: the messages start with the path.
sim_status png_read_file(png_image *img, const char *path, sim_err *err);
sim_status png_write_file(const char *path, const uint8_t *pix, int w, int h, int channels, const png_text *texts,
                          int n_texts, sim_err *err);

#endif
