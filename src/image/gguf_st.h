// gguf_st.h — a GGUF file's tensors as an st_file, for image models stored
// the stable-diffusion.cpp way (a U-Net or a whole checkpoint under the
// single-file names, in F32/F16/BF16 or any quantized type the tensor
// module dequantizes: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K ... Q6_K).
//
// GGUF lists dimensions fastest first (ne[0] is a row); the st_file gives
// them outermost first as PyTorch does, so a conv weight with ne = (kw, kh,
// cin, cout) becomes shape (cout, cin, kh, kw). F32, F16 and BF16 tensors
// keep their type; quantized ones are dequantized to F16 (float32 through
// the type's to_float, then rounded to nearest even). The metadata is not
// used. The file is parsed and validated by gguf.h (magic, version, counts,
// names, shapes, types, offsets), then closed: the st_file owns a copy of
// every tensor's bytes.
//
//     st_file *f;
//     if (gguf_st_open(&f, "sd15-unet-q8_0.gguf", &err) != SIM_OK) ...
//     st_read_f32(f, "model.diffusion_model.out.2.weight", NULL, 0, w, &err);
//     st_close(f);
//
// Errors: sim_status + sim_err naming the file (and the tensor): a file
// gguf.h refuses, a type without a dequantizer, no memory.
#ifndef SIM_GGUF_ST_H
#define SIM_GGUF_ST_H

#include "image/safetensors.h"

// Whether the file starts with the GGUF magic.
bool gguf_st_is_gguf(const char *path);
sim_status gguf_st_open(st_file **out, const char *path, sim_err *err);
// The same over bytes in memory (name for messages).
sim_status gguf_st_open_memory(st_file **out, const uint8_t *data, size_t size, const char *name, sim_err *err);

#endif
