// png.c — PNG encode and decode (see png.h for the format and the checks).
#include "image/png.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "base/file.h"

static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};

// --- zlib through mem_* ---------------------------------------------------------------

static voidpf png_zalloc(voidpf opaque, uInt items, uInt size) {
    (void)opaque;
    return mem_calloc(items, size);
}
static void png_zfree(voidpf opaque, voidpf p) {
    (void)opaque;
    mem_free(p);
}

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static void wr32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

static int paeth(int a, int b, int c) {
    int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    if (pa <= pb && pa <= pc) return a;
    return pb <= pc ? b : c;
}

// --- encoding ------------------------------------------------------------------------

// Applies filter `f` to row into out[0..len); prev may be NULL (a zero row).
static void filter_row(int f, const uint8_t *row, const uint8_t *prev, size_t len, int bpp, uint8_t *out) {
    for (size_t i = 0; i < len; i++) {
        int a = i >= (size_t)bpp ? row[i - bpp] : 0, b = prev ? prev[i] : 0;
        int c = prev && i >= (size_t)bpp ? prev[i - bpp] : 0, x = row[i], v;
        switch (f) {
        case 0: v = x; break;
        case 1: v = x - a; break;
        case 2: v = x - b; break;
        case 3: v = x - ((a + b) >> 1); break;
        default: v = x - paeth(a, b, c); break;
        }
        out[i] = (uint8_t)v;
    }
}

int png_pick_filter(const uint8_t *row, const uint8_t *prev, size_t len, int bpp) {
    uint64_t sum[5] = {0};
    for (size_t i = 0; i < len; i++) {
        int a = i >= (size_t)bpp ? row[i - bpp] : 0, b = prev ? prev[i] : 0;
        int c = prev && i >= (size_t)bpp ? prev[i - bpp] : 0, x = row[i];
        uint8_t v[5] = {(uint8_t)x, (uint8_t)(x - a), (uint8_t)(x - b), (uint8_t)(x - ((a + b) >> 1)),
                        (uint8_t)(x - paeth(a, b, c))};
        for (int f = 0; f < 5; f++) sum[f] += v[f] < 128 ? v[f] : 256 - v[f];
    }
    int best = 0; // ties go to the lower type
    for (int f = 1; f < 5; f++)
        if (sum[f] < sum[best]) best = f;
    return best;
}

typedef struct obuf {
    uint8_t *d;
    size_t n, cap;
    bool oom;
} obuf;

static void ob_put(obuf *b, const void *p, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->n + n) cap *= 2;
        uint8_t *d = mem_realloc(b->d, cap);
        if (!d) {
            b->oom = true;
            return;
        }
        b->d = d, b->cap = cap;
    }
    memcpy(b->d + b->n, p, n);
    b->n += n;
}

static void ob_chunk(obuf *b, const char *type, const uint8_t *data, size_t n) {
    uint8_t hdr[8];
    wr32(hdr, (uint32_t)n);
    memcpy(hdr + 4, type, 4);
    ob_put(b, hdr, 8);
    if (n) ob_put(b, data, n);
    uLong crc = crc32(0, (const Bytef *)type, 4);
    if (n) crc = crc32(crc, data, (uInt)n);
    uint8_t c[4];
    wr32(c, (uint32_t)crc);
    ob_put(b, c, 4);
}

static sim_status check_key(const char *key, sim_err *err) {
    size_t n = strlen(key);
    if (n < 1 || n > 79) return err_set(err, SIM_ERR_ARG, "png: tEXt keyword '%s' must be 1 to 79 bytes", key);
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)key[i];
        if (c < 32 || (c > 126 && c < 161))
            return err_set(err, SIM_ERR_ARG, "png: tEXt keyword '%s' has a non-printable byte", key);
    }
    if (key[0] == ' ' || key[n - 1] == ' ' || strstr(key, "  "))
        return err_set(err, SIM_ERR_ARG, "png: tEXt keyword '%s' has leading, trailing or double spaces", key);
    return SIM_OK;
}

sim_status png_encode(const uint8_t *pix, int w, int h, int channels, const png_text *texts, int n_texts,
                      uint8_t **out, size_t *out_len, sim_err *err) {
    *out = NULL, *out_len = 0;
    if (channels != 3 && channels != 4) return err_set(err, SIM_ERR_ARG, "png: %d channels (3 or 4 expected)", channels);
    if (w < 1 || h < 1 || w > PNG_MAX_SIDE || h > PNG_MAX_SIDE || (uint64_t)w * h > PNG_MAX_PIXELS)
        return err_set(err, SIM_ERR_ARG, "png: image size %dx%d out of range (1..%d per side, %llu pixels)", w, h,
                       PNG_MAX_SIDE, (unsigned long long)PNG_MAX_PIXELS);
    for (int i = 0; i < n_texts; i++) {
        sim_status st = check_key(texts[i].key, err);
        if (st != SIM_OK) return st;
    }
    size_t stride = (size_t)w * channels, raw_len = (size_t)h * (stride + 1);
    uint8_t *raw = mem_alloc(raw_len);
    if (!raw) return err_set(err, SIM_ERR_NOMEM, "png: out of memory for %zu bytes of scanlines", raw_len);
    for (int y = 0; y < h; y++) {
        const uint8_t *row = pix + (size_t)y * stride, *prev = y ? row - stride : NULL;
        int f = png_pick_filter(row, prev, stride, channels);
        uint8_t *o = raw + (size_t)y * (stride + 1);
        o[0] = (uint8_t)f;
        filter_row(f, row, prev, stride, channels, o + 1);
    }
    // deflate with our allocator
    z_stream zs = {.zalloc = png_zalloc, .zfree = png_zfree};
    if (deflateInit(&zs, 6) != Z_OK) {
        mem_free(raw);
        return err_set(err, SIM_ERR_NOMEM, "png: cannot start the zlib compressor");
    }
    uLong bound = deflateBound(&zs, (uLong)raw_len);
    uint8_t *z = mem_alloc(bound);
    if (!z) {
        deflateEnd(&zs);
        mem_free(raw);
        return err_set(err, SIM_ERR_NOMEM, "png: out of memory for %lu compressed bytes", (unsigned long)bound);
    }
    zs.next_in = raw, zs.avail_in = (uInt)raw_len, zs.next_out = z, zs.avail_out = (uInt)bound;
    int zr = deflate(&zs, Z_FINISH);
    size_t z_len = zs.total_out;
    deflateEnd(&zs);
    mem_free(raw);
    if (zr != Z_STREAM_END) {
        mem_free(z);
        return err_set(err, SIM_ERR_NOMEM, "png: zlib compression failed (%d)", zr);
    }
    obuf b = {0};
    ob_put(&b, png_sig, 8);
    uint8_t ihdr[13];
    wr32(ihdr, (uint32_t)w), wr32(ihdr + 4, (uint32_t)h);
    ihdr[8] = 8, ihdr[9] = channels == 4 ? 6 : 2, ihdr[10] = ihdr[11] = ihdr[12] = 0;
    ob_chunk(&b, "IHDR", ihdr, 13);
    for (int i = 0; i < n_texts; i++) {
        // tEXt is Latin-1: a text with bytes past ASCII (UTF-8) goes in an
        // uncompressed iTXt (flag 0, method 0, no language, no translation)
        size_t kn = strlen(texts[i].key), tn = strlen(texts[i].text);
        bool utf8 = false;
        for (size_t j = 0; j < tn && !utf8; j++) utf8 = (uint8_t)texts[i].text[j] >= 0x80;
        size_t hn = kn + 1 + (utf8 ? 4 : 0);
        uint8_t *t = mem_calloc(hn + tn + 1, 1);
        if (!t) {
            b.oom = true;
            break;
        }
        memcpy(t, texts[i].key, kn);
        memcpy(t + hn, texts[i].text, tn);
        ob_chunk(&b, utf8 ? "iTXt" : "tEXt", t, hn + tn);
        mem_free(t);
    }
    // IDAT in chunks of at most 1 MiB
    for (size_t off = 0; off < z_len; off += (size_t)1 << 20) ob_chunk(&b, "IDAT", z + off, MIN((size_t)1 << 20, z_len - off));
    ob_chunk(&b, "IEND", NULL, 0);
    mem_free(z);
    if (b.oom) {
        mem_free(b.d);
        return err_set(err, SIM_ERR_NOMEM, "png: out of memory for the file");
    }
    *out = b.d, *out_len = b.n;
    return SIM_OK;
}

sim_status png_write_file(const char *path, const uint8_t *pix, int w, int h, int channels, const png_text *texts,
                          int n_texts, sim_err *err) {
    uint8_t *d;
    size_t n;
    sim_status st = png_encode(pix, w, h, channels, texts, n_texts, &d, &n, err);
    if (st != SIM_OK) return err_prefix(err, "%s", path), st;
    st = file_write_all(path, d, n, err);
    mem_free(d);
    return st;
}

// --- decoding ------------------------------------------------------------------------

typedef struct dec {
    int w, h, depth, ctype, interlace;
    int channels, bpp;        // samples per pixel; bytes per pixel for filtering (≥ 1)
    uint8_t pal[256][4];
    int n_pal;
    bool has_trns;
    uint16_t trns[3];         // gray or RGB key (raw sample values)
    uint8_t *raw;             // (raw_cap) inflated scanlines, raw_len once complete
    size_t raw_len, raw_cap;
} dec;

static size_t row_bytes(const dec *d, int w) { return ((size_t)w * d->channels * d->depth + 7) / 8; }

// Adam7: pass p starts at (x0, y0) and steps (dx, dy).
static const int a7_x0[7] = {0, 4, 0, 2, 0, 1, 0}, a7_y0[7] = {0, 0, 4, 0, 2, 0, 1};
static const int a7_dx[7] = {8, 8, 4, 4, 2, 2, 1}, a7_dy[7] = {8, 8, 8, 4, 4, 2, 2};

static int pass_w(const dec *d, int p) { return d->w > a7_x0[p] ? (d->w - a7_x0[p] + a7_dx[p] - 1) / a7_dx[p] : 0; }
static int pass_h(const dec *d, int p) { return d->h > a7_y0[p] ? (d->h - a7_y0[p] + a7_dy[p] - 1) / a7_dy[p] : 0; }

// Undoes the filters of `h` rows of `len` bytes each (each preceded by its
// filter byte) in place. Returns the first bad row or -1.
static int unfilter(uint8_t *p, int h, size_t len, int bpp, int *bad_type) {
    uint8_t *prev = NULL;
    for (int y = 0; y < h; y++) {
        uint8_t f = p[0], *r = p + 1;
        switch (f) {
        case 0: break;
        case 1:
            for (size_t i = (size_t)bpp; i < len; i++) r[i] += r[i - bpp];
            break;
        case 2:
            if (prev)
                for (size_t i = 0; i < len; i++) r[i] += prev[i];
            break;
        case 3:
            for (size_t i = 0; i < len; i++) {
                int a = i >= (size_t)bpp ? r[i - bpp] : 0, b = prev ? prev[i] : 0;
                r[i] += (uint8_t)((a + b) >> 1);
            }
            break;
        case 4:
            for (size_t i = 0; i < len; i++) {
                int a = i >= (size_t)bpp ? r[i - bpp] : 0, b = prev ? prev[i] : 0;
                int c = prev && i >= (size_t)bpp ? prev[i - bpp] : 0;
                r[i] += (uint8_t)paeth(a, b, c);
            }
            break;
        default: *bad_type = f; return y;
        }
        prev = r;
        p += len + 1;
    }
    return -1;
}

static unsigned sample(const uint8_t *r, size_t idx, int depth) {
    switch (depth) {
    case 16: return (unsigned)r[2 * idx] << 8 | r[2 * idx + 1];
    case 8: return r[idx];
    default: {
        size_t bit = idx * depth;
        return (r[bit / 8] >> (8 - depth - bit % 8)) & ((1u << depth) - 1);
    }
    }
}

static uint8_t to8(unsigned v, int depth) {
    if (depth == 16) return (uint8_t)((v + 128) / 257);
    if (depth == 8) return (uint8_t)v;
    return (uint8_t)(v * 255 / ((1u << depth) - 1));
}

// Converts one unfiltered row of `w` pixels to RGBA8 at out[0], out[step], ...
// Returns false on a palette index past the palette.
static bool convert_row(const dec *d, const uint8_t *r, int w, uint8_t *out, size_t step) {
    for (int x = 0; x < w; x++, out += step) {
        size_t s = (size_t)x * d->channels;
        unsigned v0 = sample(r, s, d->depth);
        switch (d->ctype) {
        case 0:
            out[0] = out[1] = out[2] = to8(v0, d->depth);
            out[3] = d->has_trns && v0 == d->trns[0] ? 0 : 255;
            break;
        case 2: {
            unsigned g = sample(r, s + 1, d->depth), b = sample(r, s + 2, d->depth);
            out[0] = to8(v0, d->depth), out[1] = to8(g, d->depth), out[2] = to8(b, d->depth);
            out[3] = d->has_trns && v0 == d->trns[0] && g == d->trns[1] && b == d->trns[2] ? 0 : 255;
            break;
        }
        case 3:
            if ((int)v0 >= d->n_pal) return false;
            memcpy(out, d->pal[v0], 4);
            break;
        case 4:
            out[0] = out[1] = out[2] = to8(v0, d->depth);
            out[3] = to8(sample(r, s + 1, d->depth), d->depth);
            break;
        default:
            for (int c = 0; c < 4; c++) out[c] = to8(sample(r, s + c, d->depth), d->depth);
            break;
        }
    }
    return true;
}

static sim_status parse_ihdr(dec *d, const uint8_t *p, uint32_t n, sim_err *err) {
    if (n != 13) return err_set(err, SIM_ERR_FORMAT, "png: IHDR is %u bytes (13 expected)", n);
    uint32_t w = rd32(p), h = rd32(p + 4);
    d->depth = p[8], d->ctype = p[9], d->interlace = p[12];
    if (w == 0 || h == 0) return err_set(err, SIM_ERR_FORMAT, "png: image size %ux%u is empty", w, h);
    if (w > PNG_MAX_SIDE || h > PNG_MAX_SIDE || (uint64_t)w * h > PNG_MAX_PIXELS)
        return err_set(err, SIM_ERR_RANGE, "png: image size %ux%u is too large (at most %d per side and %llu pixels)", w,
                       h, PNG_MAX_SIDE, (unsigned long long)PNG_MAX_PIXELS);
    d->w = (int)w, d->h = (int)h;
    static const int nch[7] = {1, 0, 3, 1, 2, 0, 4};
    if (d->ctype > 6 || nch[d->ctype] == 0) return err_set(err, SIM_ERR_FORMAT, "png: bad colour type %d", d->ctype);
    d->channels = nch[d->ctype];
    bool ok = false;
    switch (d->ctype) {
    case 0: ok = d->depth == 1 || d->depth == 2 || d->depth == 4 || d->depth == 8 || d->depth == 16; break;
    case 3: ok = d->depth == 1 || d->depth == 2 || d->depth == 4 || d->depth == 8; break;
    default: ok = d->depth == 8 || d->depth == 16; break;
    }
    if (!ok) return err_set(err, SIM_ERR_FORMAT, "png: bit depth %d is not allowed for colour type %d", d->depth, d->ctype);
    if (p[10] != 0) return err_set(err, SIM_ERR_FORMAT, "png: unknown compression method %d", p[10]);
    if (p[11] != 0) return err_set(err, SIM_ERR_FORMAT, "png: unknown filter method %d", p[11]);
    if (d->interlace > 1) return err_set(err, SIM_ERR_FORMAT, "png: unknown interlace method %d", d->interlace);
    d->bpp = MAX(1, d->channels * d->depth / 8);
    // The inflated size IHDR implies (≤ 64 Mpixels × 8 bytes + rows: fits size_t).
    if (d->interlace == 0) d->raw_len = (size_t)d->h * (row_bytes(d, d->w) + 1);
    else {
        d->raw_len = 0;
        for (int pi = 0; pi < 7; pi++) {
            int pw = pass_w(d, pi), ph = pass_h(d, pi);
            if (pw && ph) d->raw_len += (size_t)ph * (row_bytes(d, pw) + 1);
        }
    }
    return SIM_OK;
}

// Inflates a compressed text (zTXt, iTXt) of at most PNG_MAX_TEXT_BYTES.
static sim_status inflate_text(const uint8_t *p, size_t n, char **out, size_t *out_len, sim_err *err) {
    *out = NULL;
    size_t cap = 256, len = 0;
    char *buf = mem_alloc(cap + 1);
    if (!buf) return err_set(err, SIM_ERR_NOMEM, "png: out of memory");
    z_stream zs = {.zalloc = png_zalloc, .zfree = png_zfree, .next_in = (Bytef *)p, .avail_in = (uInt)n};
    if (inflateInit(&zs) != Z_OK) {
        mem_free(buf);
        return err_set(err, SIM_ERR_NOMEM, "png: cannot start the zlib decompressor");
    }
    sim_status st = SIM_OK;
    for (;;) {
        if (len == cap) {
            if (cap >= PNG_MAX_TEXT_BYTES) {
                st = err_set(err, SIM_ERR_RANGE, "png: a compressed text inflates to more than %d bytes", PNG_MAX_TEXT_BYTES);
                break;
            }
            cap = MIN(2 * cap, (size_t)PNG_MAX_TEXT_BYTES);
            char *nb = mem_realloc(buf, cap + 1);
            if (!nb) {
                st = err_set(err, SIM_ERR_NOMEM, "png: out of memory");
                break;
            }
            buf = nb;
        }
        zs.next_out = (Bytef *)buf + len, zs.avail_out = (uInt)(cap - len);
        int zr = inflate(&zs, Z_NO_FLUSH);
        len = cap - zs.avail_out;
        if (zr == Z_STREAM_END) break;
        if (zr == Z_MEM_ERROR) {
            st = err_set(err, SIM_ERR_NOMEM, "png: out of memory in zlib");
            break;
        }
        if (zr != Z_OK && !(zr == Z_BUF_ERROR && zs.avail_out == 0)) {
            st = err_set(err, SIM_ERR_FORMAT, "png: corrupt compressed text (zlib: %s)", zs.msg ? zs.msg : "truncated");
            break;
        }
    }
    inflateEnd(&zs);
    if (st != SIM_OK) {
        mem_free(buf);
        return st;
    }
    buf[len] = 0;
    *out = buf, *out_len = len;
    return SIM_OK;
}

// A tEXt, zTXt or iTXt chunk (type 't', 'z' or 'i') into img->texts.
static sim_status add_text(png_image *img, char type, const uint8_t *p, uint32_t n, sim_err *err) {
    const char *name = type == 't' ? "tEXt" : type == 'z' ? "zTXt" : "iTXt";
    const uint8_t *nul = memchr(p, 0, n);
    size_t kn = nul ? (size_t)(nul - p) : 0;
    if (!nul || kn < 1 || kn > 79) return err_set(err, SIM_ERR_FORMAT, "png: %s chunk without a 1..79-byte keyword", name);
    const uint8_t *q = p + kn + 1, *end = p + n;
    bool compressed = type == 'z';
    if (type == 'z') {
        if (q == end || *q != 0) return err_set(err, SIM_ERR_FORMAT, "png: zTXt with an unknown compression method");
        q++;
    } else if (type == 'i') {
        if (end - q < 2 || q[0] > 1 || q[1] != 0) return err_set(err, SIM_ERR_FORMAT, "png: iTXt with a bad compression flag or method");
        compressed = q[0] == 1;
        q += 2;
        for (int f = 0; f < 2; f++) { // language tag, translated keyword
            const uint8_t *z = memchr(q, 0, (size_t)(end - q));
            if (!z) return err_set(err, SIM_ERR_FORMAT, "png: truncated iTXt chunk");
            q = z + 1;
        }
    }
    if (img->n_texts >= PNG_MAX_TEXTS) return SIM_OK;
    if (!img->texts && !(img->texts = mem_calloc(PNG_MAX_TEXTS, sizeof *img->texts)))
        return err_set(err, SIM_ERR_NOMEM, "png: out of memory");
    char *t = NULL, *k = mem_strndup((const char *)p, kn);
    size_t tn;
    sim_status st = SIM_OK;
    if (!k) st = err_set(err, SIM_ERR_NOMEM, "png: out of memory");
    else if (compressed) st = inflate_text(q, (size_t)(end - q), &t, &tn, err);
    else if (!(t = mem_strndup((const char *)q, (size_t)(end - q)))) st = err_set(err, SIM_ERR_NOMEM, "png: out of memory");
    if (st != SIM_OK) {
        mem_free(k), mem_free(t);
        return st;
    }
    img->texts[img->n_texts++] = (png_text){k, t};
    return SIM_OK;
}

static sim_status decode(png_image *img, dec *d, const uint8_t *data, size_t len, z_stream *zs, bool *zinit,
                         sim_err *err) {
    if (len < 8 || memcmp(data, png_sig, 8) != 0) return err_set(err, SIM_ERR_FORMAT, "png: not a PNG file (bad signature)");
    size_t pos = 8;
    bool have_ihdr = false, have_plte = false, idat_started = false, idat_ended = false, z_done = false;
    int n_chunk = 0;
    for (;; n_chunk++) {
        if (len - pos < 12)
            return err_set(err, SIM_ERR_FORMAT, "png: truncated at byte %zu (%s)", pos,
                           !have_ihdr ? "no IHDR" : !idat_started ? "no image data" : "no IEND chunk");
        uint32_t n = rd32(data + pos);
        const uint8_t *type = data + pos + 4, *p = data + pos + 8;
        char tname[5] = {0};
        for (int i = 0; i < 4; i++) tname[i] = (type[i] >= 32 && type[i] < 127) ? (char)type[i] : '?';
        for (int i = 0; i < 4; i++)
            if (!((type[i] | 32) >= 'a' && (type[i] | 32) <= 'z'))
                return err_set(err, SIM_ERR_FORMAT, "png: chunk %d at byte %zu has an invalid type '%s'", n_chunk, pos, tname);
        if (n > 0x7fffffffu || n > len - pos - 12)
            return err_set(err, SIM_ERR_FORMAT, "png: chunk '%s' at byte %zu claims %u bytes, only %zu left", tname, pos, n,
                           len - pos - 12);
        uint32_t crc = (uint32_t)crc32(crc32(0, type, 4), p, n);
        if (crc != rd32(p + n))
            return err_set(err, SIM_ERR_FORMAT, "png: chunk '%s' at byte %zu has a bad CRC (%08x, computed %08x)", tname, pos,
                           rd32(p + n), crc);
        pos += 12 + (size_t)n;
#define IS(s) (memcmp(type, s, 4) == 0)
        if (n_chunk == 0 && !IS("IHDR")) return err_set(err, SIM_ERR_FORMAT, "png: first chunk is '%s', not IHDR", tname);
        if (IS("IHDR")) {
            if (have_ihdr) return err_set(err, SIM_ERR_FORMAT, "png: a second IHDR chunk");
            sim_status st = parse_ihdr(d, p, n, err);
            if (st != SIM_OK) return st;
            have_ihdr = true;
        } else if (IS("PLTE")) {
            if (have_plte || idat_started) return err_set(err, SIM_ERR_FORMAT, "png: PLTE after the image data or twice");
            if (n % 3 || n == 0 || n > 768) return err_set(err, SIM_ERR_FORMAT, "png: PLTE of %u bytes (3 per entry, 1..256 entries)", n);
            d->n_pal = (int)(n / 3);
            for (int i = 0; i < d->n_pal; i++) d->pal[i][0] = p[3 * i], d->pal[i][1] = p[3 * i + 1], d->pal[i][2] = p[3 * i + 2], d->pal[i][3] = 255;
            have_plte = true;
        } else if (IS("tRNS")) {
            if (idat_started) return err_set(err, SIM_ERR_FORMAT, "png: tRNS after the image data");
            if (d->ctype == 3) {
                if (!have_plte) return err_set(err, SIM_ERR_FORMAT, "png: tRNS before PLTE");
                if ((int)n > d->n_pal) return err_set(err, SIM_ERR_FORMAT, "png: tRNS has %u entries for a palette of %d", n, d->n_pal);
                for (uint32_t i = 0; i < n; i++) d->pal[i][3] = p[i];
            } else if (d->ctype == 0 || d->ctype == 2) {
                uint32_t want = d->ctype == 0 ? 2 : 6;
                if (n != want) return err_set(err, SIM_ERR_FORMAT, "png: tRNS of %u bytes (%u expected)", n, want);
                for (uint32_t i = 0; i < n / 2; i++) d->trns[i] = (uint16_t)(p[2 * i] << 8 | p[2 * i + 1]);
                d->has_trns = true;
            } else return err_set(err, SIM_ERR_FORMAT, "png: tRNS in an image with an alpha channel");
        } else if (IS("tEXt") || IS("zTXt") || IS("iTXt")) {
            sim_status st = add_text(img, (char)type[0], p, n, err);
            if (st != SIM_OK) return st;
        } else if (IS("IDAT")) {
            if (idat_ended) return err_set(err, SIM_ERR_FORMAT, "png: IDAT chunks are not consecutive");
            if (d->ctype == 3 && !have_plte) return err_set(err, SIM_ERR_FORMAT, "png: palette image without a PLTE chunk");
            if (!idat_started) {
                idat_started = true;
                // The scanline buffer grows with what inflates (up to raw_len), so a
                // tiny file claiming a huge image costs no more than its data.
                d->raw_cap = MIN(d->raw_len, (size_t)1 << 16);
                d->raw = mem_alloc(d->raw_cap);
                if (!d->raw) return err_set(err, SIM_ERR_NOMEM, "png: out of memory for scanlines");
                *zs = (z_stream){.zalloc = png_zalloc, .zfree = png_zfree};
                if (inflateInit(zs) != Z_OK) return err_set(err, SIM_ERR_NOMEM, "png: cannot start the zlib decompressor");
                *zinit = true;
                zs->next_out = d->raw, zs->avail_out = (uInt)d->raw_cap;
            }
            if (n && z_done) return err_set(err, SIM_ERR_FORMAT, "png: data after the end of the zlib stream");
            if (n && !z_done) {
                zs->next_in = (Bytef *)p, zs->avail_in = n;
                while (zs->avail_in) {
                    if (zs->avail_out == 0 && d->raw_cap < d->raw_len) {
                        size_t cap = d->raw_cap > d->raw_len / 2 ? d->raw_len : 2 * d->raw_cap;
                        uint8_t *r = mem_realloc(d->raw, cap);
                        if (!r) return err_set(err, SIM_ERR_NOMEM, "png: out of memory for %zu bytes of scanlines", cap);
                        d->raw = r, zs->next_out = r + d->raw_cap, zs->avail_out = (uInt)(cap - d->raw_cap), d->raw_cap = cap;
                    }
                    int zr = inflate(zs, Z_NO_FLUSH);
                    if (zr == Z_STREAM_END) {
                        z_done = true;
                        if (zs->avail_in) return err_set(err, SIM_ERR_FORMAT, "png: data after the end of the zlib stream");
                        break;
                    }
                    if (zr == Z_BUF_ERROR && zs->avail_out == 0 && d->raw_cap < d->raw_len) continue; // grow
                    if (zr == Z_BUF_ERROR && zs->avail_out == 0)
                        return err_set(err, SIM_ERR_FORMAT, "png: image data inflates to more than the %zu bytes IHDR implies",
                                       d->raw_len);
                    if (zr == Z_MEM_ERROR) return err_set(err, SIM_ERR_NOMEM, "png: out of memory in zlib");
                    if (zr != Z_OK)
                        return err_set(err, SIM_ERR_FORMAT, "png: corrupt image data (zlib: %s)", zs->msg ? zs->msg : "error");
                }
            }
        } else if (IS("IEND")) {
            break;
        } else if (!(type[0] & 32)) {
            return err_set(err, SIM_ERR_UNSUPPORTED, "png: unknown critical chunk '%s'", tname);
        }
#undef IS
        if (idat_started && memcmp(type, "IDAT", 4) != 0) idat_ended = true;
    }
    if (!have_ihdr) return err_set(err, SIM_ERR_FORMAT, "png: no IHDR chunk");
    if (!idat_started) return err_set(err, SIM_ERR_FORMAT, "png: no image data (IDAT)");
    if (!z_done)
        return err_set(err, SIM_ERR_FORMAT, "png: image data truncated (%lu of %zu bytes inflated, zlib stream not finished)",
                       (unsigned long)zs->total_out, d->raw_len);
    if (zs->total_out != d->raw_len)
        return err_set(err, SIM_ERR_FORMAT, "png: image data inflates to %lu bytes, IHDR implies %zu", (unsigned long)zs->total_out,
                       d->raw_len);

    size_t n_px;
    if (!size_mul((size_t)d->w * d->h, 4, &n_px)) return err_set(err, SIM_ERR_RANGE, "png: image too large");
    img->rgba = mem_alloc(n_px);
    if (!img->rgba) return err_set(err, SIM_ERR_NOMEM, "png: out of memory for %dx%d pixels", d->w, d->h);
    int bad_type = 0;
    if (d->interlace == 0) {
        size_t rb = row_bytes(d, d->w);
        int bad = unfilter(d->raw, d->h, rb, d->bpp, &bad_type);
        if (bad >= 0) return err_set(err, SIM_ERR_FORMAT, "png: row %d has an invalid filter type %d", bad, bad_type);
        for (int y = 0; y < d->h; y++)
            if (!convert_row(d, d->raw + (size_t)y * (rb + 1) + 1, d->w, img->rgba + (size_t)y * d->w * 4, 4))
                return err_set(err, SIM_ERR_FORMAT, "png: row %d has a palette index past the %d entries", y, d->n_pal);
    } else {
        uint8_t *p = d->raw;
        for (int pi = 0; pi < 7; pi++) {
            int pw = pass_w(d, pi), ph = pass_h(d, pi);
            if (!pw || !ph) continue;
            size_t rb = row_bytes(d, pw);
            int bad = unfilter(p, ph, rb, d->bpp, &bad_type);
            if (bad >= 0)
                return err_set(err, SIM_ERR_FORMAT, "png: Adam7 pass %d row %d has an invalid filter type %d", pi + 1, bad, bad_type);
            for (int y = 0; y < ph; y++) {
                int oy = a7_y0[pi] + y * a7_dy[pi];
                uint8_t *o = img->rgba + ((size_t)oy * d->w + a7_x0[pi]) * 4;
                if (!convert_row(d, p + (size_t)y * (rb + 1) + 1, pw, o, (size_t)a7_dx[pi] * 4))
                    return err_set(err, SIM_ERR_FORMAT, "png: Adam7 pass %d has a palette index past the %d entries", pi + 1, d->n_pal);
            }
            p += (size_t)ph * (rb + 1);
        }
    }
    img->w = d->w, img->h = d->h, img->bit_depth = d->depth, img->color_type = d->ctype, img->interlace = d->interlace;
    return SIM_OK;
}

sim_status png_decode(png_image *img, const uint8_t *data, size_t len, sim_err *err) {
    *img = (png_image){0};
    dec *d = mem_calloc(1, sizeof *d);
    if (!d) return err_set(err, SIM_ERR_NOMEM, "png: out of memory");
    z_stream zs;
    bool zinit = false;
    sim_status st = decode(img, d, data, len, &zs, &zinit, err);
    if (zinit) inflateEnd(&zs);
    mem_free(d->raw);
    mem_free(d);
    if (st != SIM_OK) png_image_free(img);
    return st;
}

void png_image_free(png_image *img) {
    mem_free(img->rgba);
    for (int i = 0; i < img->n_texts; i++) mem_free((void *)img->texts[i].key), mem_free((void *)img->texts[i].text);
    mem_free(img->texts);
    *img = (png_image){0};
}

const char *png_text_find(const png_image *img, const char *key) {
    for (int i = 0; i < img->n_texts; i++)
        if (strcmp(img->texts[i].key, key) == 0) return img->texts[i].text;
    return NULL;
}

sim_status png_read_file(png_image *img, const char *path, sim_err *err) {
    *img = (png_image){0};
    file_map m;
    sim_status st = file_map_open(&m, path, err);
    if (st != SIM_OK) return st;
    st = png_decode(img, m.data, m.size, err);
    file_map_close(&m);
    if (st != SIM_OK) err_prefix(err, "%s", path);
    return st;
}
