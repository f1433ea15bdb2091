// clip_text.h — the CLIP text encoder (transformers CLIPTextModel) that
// turns Stable Diffusion prompts into the U-Net's cross-attention context.
//
// Pre-norm transformer: x = tok_emb[ids] + pos_emb; per layer
//   x += out_proj(attention(layer_norm1(x)))   (causal, n_heads)
//   x += fc2(act(fc1(layer_norm2(x))))          (quick-GELU in SD 1.x, GELU in SD 2.x)
// then final_layer_norm: last_hidden_state (n_pos, hidden), which SD uses.
//
//     clip_text *m;
//     if (clip_text_load(&m, &pipe.clip, st, &err) != SIM_OK) ...
//     op_ctx c = {.pool = p, .k = kern_get(KERN_BEST)};
//     float hidden[77 * 768];
//     clip_text_encode(m, &c, ids, 77, 0, hidden, &err);
//     clip_text_free(m);
//
// Tensor names: diffusers "text_model.*", single-file checkpoints
// "cond_stage_model.transformer.text_model.*" (found by trying both).
// Ownership: the model copies its weights into one arena (wts.h: matrices
// and the token embedding in the file's F16/BF16, else float32) and
// owns its activation buffers, sized once for n_pos tokens: encoding
// allocates nothing, and one model encodes one prompt at a time.
#ifndef SIM_CLIP_TEXT_H
#define SIM_CLIP_TEXT_H

#include "image/diffusers.h"
#include "image/safetensors.h"
#include "tensor/ops.h"

typedef struct clip_text clip_text;

// Loads and shape-checks the weights of a model described by cfg from f
// (which may be closed afterwards).
sim_status clip_text_load(clip_text **out, const dif_clip_config *cfg, const st_file *f, sim_err *err);
void clip_text_free(clip_text *m);

// hidden (n, cfg.hidden) = the encoder's output for ids[0..n), n <= n_pos.
// skip > 0 stops that many layers early (then the final layer norm), as
// the web UIs' "CLIP skip" does. c gives the pool and kernels; its scratch
// is replaced by the model's own.
sim_status clip_text_encode(clip_text *m, const op_ctx *c, const int32_t *ids, int n, int skip, float *hidden, sim_err *err);

#endif
