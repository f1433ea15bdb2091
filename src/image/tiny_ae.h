// tiny_ae.h — opening a tiny autoencoder (the TAESD family, see taesd.h)
// from any of its published layouts:
//
//   DIR/config.json + DIR/diffusion_pytorch_model.safetensors
//        diffusers AutoencoderTiny (madebyollin/taesd's diffusers folder):
//        "encoder.layers.N.*" is the original Sequential's "N.*";
//        "decoder.layers.N.*" is "(N+1).*" (diffusers applies the tanh
//        clamp, index 0 of the original, outside its Sequential)
//   DIR/<name>_decoder.{safetensors,pth} [+ DIR/<name>_encoder.{...}]
//        the original halves (taesd_decoder.pth, taef2_decoder.pth ...)
//   FILE.safetensors with encoder.layers.* / decoder.layers.* names
//        a diffusers AutoencoderTiny file on its own
//   FILE.{safetensors,pth}
//        an original decoder alone
//
// The diffusers config, when there, must describe the layout taesd.c
// implements (64-channel blocks, [1, 3, 3, 3] encoder and [3, 3, 3, 1]
// decoder blocks, ReLU, 2× upsampling); other values are refused naming
// the field. Names are mapped by views (no copies) that live only while
// taesd_load copies the weights.
//
//     taesd *t;
//     if (tae_open(&t, "models/taesd", &err) != SIM_OK) ...
//     taesd_free(t);
//
// Errors: sim_status + sim_err naming the file (and the field or tensor).
#ifndef SIM_TINY_AE_H
#define SIM_TINY_AE_H

#include "image/taesd.h"

sim_status tae_open(taesd **out, const char *path, sim_err *err);

// The halves of a diffusers AutoencoderTiny file as views under the
// Sequential names; *dec or *enc is NULL when the file lacks that half (not
// both). The views point into src and must be closed before it.
sim_status tae_diffusers_views(const st_file *src, st_file **dec, st_file **enc, sim_err *err);

#endif
