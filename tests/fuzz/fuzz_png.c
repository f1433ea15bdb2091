// fuzz_png.c — libFuzzer target for the PNG decoder (image/png.h): arbitrary
// bytes must decode or fail with a message and leave the image empty; a
// decoded image has its size in bounds, and a small one re-encodes (RGBA) and
// decodes to the same pixels. Each input is tried twice: as it is, and with
// every chunk's CRC recomputed, so that mutations get past the CRC check.
// Build and run: make fuzz && build/fuzz/fuzz_png DIR
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <zlib.h>

#include "image/png.h"

static int one(const uint8_t *data, size_t size) {
    png_image img, back;
    sim_err err;
    if (png_decode(&img, data, size, &err) != SIM_OK) {
        if (img.rgba || img.w || img.texts) __builtin_trap();
        return 0;
    }
    if (img.w < 1 || img.h < 1 || img.w > PNG_MAX_SIDE || img.h > PNG_MAX_SIDE) __builtin_trap();
    if ((uint64_t)img.w * img.h <= 4096) {
        uint8_t *file;
        size_t len;
        if (png_encode(img.rgba, img.w, img.h, 4, NULL, 0, &file, &len, &err) == SIM_OK) {
            if (png_decode(&back, file, len, &err) != SIM_OK) __builtin_trap();
            if (memcmp(back.rgba, img.rgba, (size_t)img.w * img.h * 4) != 0) __builtin_trap();
            png_image_free(&back);
            mem_free(file);
        }
    }
    png_image_free(&img);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    one(data, size);
    uint8_t *d = mem_alloc(size ? size : 1);
    if (!d) return 0;
    memcpy(d, data, size);
    for (size_t pos = 8; pos + 12 <= size;) {
        uint32_t n = (uint32_t)d[pos] << 24 | (uint32_t)d[pos + 1] << 16 | (uint32_t)d[pos + 2] << 8 | d[pos + 3];
        if (n > size - pos - 12) break;
        uint32_t crc = (uint32_t)crc32(0, d + pos + 4, n + 4);
        uint8_t *c = d + pos + 8 + n;
        c[0] = (uint8_t)(crc >> 24), c[1] = (uint8_t)(crc >> 16), c[2] = (uint8_t)(crc >> 8), c[3] = (uint8_t)crc;
        pos += 12 + (size_t)n;
    }
    one(d, size);
    mem_free(d);
    return 0;
}
