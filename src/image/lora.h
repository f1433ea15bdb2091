// lora.h — LoRA (low-rank adaptation) files merged into Stable Diffusion
// weights while they load, and the <lora:NAME:W> tags of web-UI prompts.
//
// A LoRA stores, for some linear or conv weights W (out, in[, kh, kw]) of
// the U-Net or the CLIP text encoder, a low-rank update; merging it with
// user weight w gives
//     W' = W + w · (alpha / rank) · up · down
// where down is (rank, in[, kh, kw]) and up (out, rank[, 1, 1]), so a 3×3
// conv has a 3×3 down and a 1×1 up; alpha defaults to rank. LoHa modules
// (LyCORIS) give instead ΔW = (w1a · w1b) ⊙ (w2a · w2b), rank = rows of w1b.
// Several LoRAs merge one after the other, each with its weight.
//
// Key names accepted (one .safetensors file may mix them):
//   kohya (sd-scripts, the web UIs):
//     lora_unet_<module path with '_' for '.'>.lora_down.weight / .lora_up.weight / .alpha
//     lora_te_<module path>...                         (the text encoder)
//     ....hada_w1_a / .hada_w1_b / .hada_w2_a / .hada_w2_b   (LoHa)
//   diffusers / PEFT:
//     unet.<module path>.lora_A.weight / .lora_B.weight [/ unet.<module path>.alpha]
//     text_encoder.<module path>.lora_A.weight ...
//   older diffusers:
//     unet.<path>.lora.down.weight / .lora.up.weight,
//     text_encoder.<path>.lora_linear_layer.down.weight / .up.weight,
//     <path>.processor.to_q_lora.down.weight (attention processors; to_out_lora
//     is to_out.0)
// Module paths are diffusers' ("down_blocks.0.attentions.0.proj_in"). A
// kohya path is ambiguous ('_' is also inside names: to_q, proj_in,
// transformer_blocks), so it is resolved against the real tensor names of
// the file it patches: each "a.b_c.weight" there is "a_b_c" in kohya form.
// Anything else (SDXL's lora_te1_/lora_te2_, LDM-style input_blocks names,
// Tucker or LoKr modules, unknown keys) is refused naming the key.
//
//     lora_set *s;
//     lora_set_new(&s, &err);
//     lora_add(s, "loras/style.safetensors", 0.7f, &err);   // parse and check each file
//     st_file *f;  st_open(&f, "unet/diffusion_pytorch_model.safetensors", &err);
//     lora_attach(s, LORA_UNET, f, &err);     // resolve against f, install the st patch hook
//     unet_load(&u, &cfg, f, &err);           // every st_read_f32 merges what targets it
//     lora_detach(s, LORA_UNET, f, &err);     // remove the hook; refuse modules never read
//     st_close(f);
//     lora_set_free(s);
//
// Prompt tags: lora_tags_parse cuts every <lora:NAME> or <lora:NAME:W>
// (W default 1) out of a prompt; lora_path gives DIR/NAME.safetensors.
//
// Ownership: the set owns its LoRA files (mapped until lora_set_free). A
// set may be attached to one file per part at a time, and takes no more
// files while attached. Errors: sim_status
// plus a message naming the LoRA file and key (and the target tensor); a
// failing call leaves the set as it was.
#ifndef SIM_LORA_H
#define SIM_LORA_H

#include "image/safetensors.h"

#define LORA_MAX 16       // LoRA files per set (and tags per prompt)
#define LORA_NAME_MAX 128 // bytes of a tag's NAME, NUL included

typedef enum lora_part {
    LORA_UNET = 0,
    LORA_TEXT, // the CLIP text encoder
    LORA_PART_COUNT
} lora_part;

typedef struct lora_set lora_set;

sim_status lora_set_new(lora_set **out, sim_err *err);
void lora_set_free(lora_set *s);

// Opens path and adds its modules with user weight w. Errors (nothing is
// added): the file does not open (SIM_ERR_IO / SIM_ERR_FORMAT), a key is not
// a known LoRA key, a module lacks a tensor or has inconsistent shapes
// (SIM_ERR_FORMAT), an unsupported variant or dtype (SIM_ERR_UNSUPPORTED),
// more than LORA_MAX files (SIM_ERR_ARG).
sim_status lora_add(lora_set *s, const char *path, float w, sim_err *err);
// The same for a file already open; the set takes f (also on error).
sim_status lora_add_file(lora_set *s, st_file *f, float w, sim_err *err);

// Whether any module of the set patches `part`.
bool lora_touches(const lora_set *s, lora_part part);

// Resolves the part's modules against target's tensors (each must name one
// weight whose shape fits the module) and sets target's patch hook so that
// st_read_f32 merges them. Errors name the LoRA key: SIM_ERR_FORMAT for a
// module that matches no weight (or two, for kohya names), or whose shapes
// do not fit it; SIM_ERR_NOMEM.
sim_status lora_attach(lora_set *s, lora_part part, st_file *target, sim_err *err);
// Clears the hook; SIM_ERR_FORMAT naming the first module whose weight was
// never read since lora_attach (the model does not use it).
sim_status lora_detach(lora_set *s, lora_part part, st_file *target, sim_err *err);

// --- prompt tags -------------------------------------------------------------------------

typedef struct lora_tag {
    char name[LORA_NAME_MAX]; // no '/', '\\' or ':', not starting with '.'
    float weight;             // finite, |w| ≤ 100
} lora_tag;

// Copies prompt without its <lora:NAME[:W]> tags into *clean (mem_free it)
// and the tags, in order, into tags[0..*n). SIM_ERR_ARG with the tag's byte
// offset for an unterminated tag, a bad name or weight, more than `max`
// tags; SIM_ERR_NOMEM. Other <...> text stays in the prompt.
sim_status lora_tags_parse(const char *prompt, char **clean, lora_tag *tags, int max, int *n, sim_err *err);
// dir/name.safetensors into buf; SIM_ERR_ARG when it does not fit.
sim_status lora_path(const char *dir, const char *name, char *buf, size_t cap, sim_err *err);

#endif
