// ckpt.h — single-file Stable Diffusion checkpoints (the original
// CompVis/LDM layout, as .safetensors, or a U-Net in a GGUF file) opened as
// three st_file views with diffusers names, plus the configurations the
// tensor shapes imply. Files: .safetensors, PyTorch .ckpt zips (read by the
// safe unpickler of pth.h; "state_dict." leads every name) and GGUF.
//
// The LDM names, per component (a prefix before them is found and dropped):
//   U-Net  model.diffusion_model.*: time_embed.{0,2}, input_blocks.K.{0,1}
//          (K = 0 conv_in; per level i and layer j K = 1 + i·(L+1) + j: .0 a
//          resnet, .1 a transformer; K = (i+1)·(L+1): .0.op the downsampler),
//          middle_block.{0,1,2}, output_blocks.K (K = i·(L+1) + j, j ≤ L:
//          .0 resnet, .1 transformer, then the upsampler .1/.2.conv), out.{0,2};
//          resnets: in_layers.{0,2}, emb_layers.1, out_layers.{0,3}, skip_connection
//   VAE    first_stage_model.*: {encoder,decoder}.{conv_in,norm_out,conv_out},
//          encoder.down.i.{block.j, downsample.conv}, decoder.up.(n-1-i).{block.j,
//          upsample.conv} (levels counted from the top), mid.{block_1,attn_1,block_2};
//          nin_shortcut; attention norm, q, k, v, proj_out as 1×1 convs (viewed
//          as the linear layers diffusers has: same bytes, shape (C, C))
//   text   cond_stage_model.transformer.text_model.* (SD 1.x: the diffusers
//          names) or cond_stage_model.model.* (SD 2.x, OpenCLIP: token_embedding,
//          positional_embedding, transformer.resblocks.N.{ln_1, attn.in_proj_*,
//          attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}, ln_final; in_proj is
//          q, k, v stacked: viewed as three tensors; the last block is dropped,
//          as SD 2.x uses the penultimate layer)
// Views hold no copies: each diffusers tensor points at the bytes of its LDM
// tensor (or a third of it). Every expected tensor must be there with the
// element count the configuration implies, else the open fails naming both
// names and shapes.
//
// Configurations: widths, levels, layers per level, attention per block, mid
// block, context width, linear or conv projections, in/out channels, text
// width, layers, MLP width and vocabulary come from the shapes. What weights
// cannot tell follows the family: SD 1.x U-Nets have 8 heads, SD 2.x ones
// 64 channels per head; CLIP heads are 64 wide; quick-GELU for SD 1.x text,
// GELU for OpenCLIP; 32 groups; VAE scaling 0.18215. A `like` pipeline
// (e.g. from the model's diffusers folder) replaces inference entirely.
// Inpainting checkpoints (9 input channels) are read like the others.
// Refused with the tensor that shows it: SDXL, SD 3 / Flux, InstructPix2Pix
// (8 input channels) and other U-Nets the engine does not implement.
//
//     ckpt *c;
//     if (ckpt_open(&c, "v1-5-pruned-emaonly.safetensors", NULL, &err) != SIM_OK) ...
//     unet_load(&u, &c->cfg.unet, c->unet, &err);
//     ckpt_close(c);              // the loaded models keep their own copies
//
// Ownership: the ckpt owns the file and the views; the views point into
// the file and are valid until ckpt_close. Errors: sim_status + sim_err.
#ifndef SIM_CKPT_H
#define SIM_CKPT_H

#include "image/clip_tok.h"
#include "image/diffusers.h"
#include "image/safetensors.h"

typedef struct ckpt {
    st_file *src;               // the checkpoint
    st_file *unet, *vae, *text; // diffusers-named views (NULL: not in the file)
    dif_pipeline cfg;           // cfg.dir: the folder holding the file
} ckpt;

// Opens a .safetensors or .ckpt checkpoint or a .gguf (by the file's magic).
// At least the U-Net must be there; like may be NULL.
sim_status ckpt_open(ckpt **out, const char *path, const dif_pipeline *like, sim_err *err);
// The same over an opened file, which the ckpt takes (closed on error too).
sim_status ckpt_from_file(ckpt **out, st_file *src, const dif_pipeline *like, sim_err *err);
void ckpt_close(ckpt *c);

// The CLIP tokenizer for a checkpoint: from dir when not NULL (vocab.json +
// merges.txt, or bpe_simple_vocab_16e6.txt.gz), else beside the file
// (those files, or a tokenizer/ folder). SIM_ERR_IO listing where it looked.
sim_status ckpt_tokenizer(clip_tok **out, const char *ckpt_path, const char *dir, sim_err *err);

#endif
