// resblock.h — diffusers' ResnetBlock2D, shared by the U-Net (with a time
// embedding projection) and the VAE (without):
//
//     y = conv2(silu(gn2(conv1(silu(gn1(x))) [+ temb_proj(silu(temb))]))) + shortcut(x)
//
// where shortcut is a 1×1 conv when cin != cout, else x itself. Weights are
// taken in the order norm1, conv1, [time_emb_proj,] norm2, conv2,
// [conv_shortcut] (the arena keeps that order).
#ifndef SIM_RESBLOCK_H
#define SIM_RESBLOCK_H

#include "image/wts.h"
#include "tensor/ops.h"

typedef struct rb_block {
    int cin, cout, temb;              // temb: width of the time embedding, 0 when none
    float *n1_g, *n1_b, *c1_b;        // (cin) ×2, (cout)
    op_mat c1_w;                      // (cout, cin, 3, 3)
    op_mat t_w;                       // (cout, temb); data NULL when temb is 0
    float *t_b;                       // (cout); NULL when temb is 0
    float *n2_g, *n2_b, *c2_b;        // (cout) ×2, (cout)
    op_mat c2_w;                      // (cout, cout, 3, 3)
    op_mat sc_w;                      // (cout, cin, 1, 1) when cin != cout, else data NULL
    float *sc_b;                      // (cout) when cin != cout, else NULL
} rb_block;

// Binds the block's weights under `name` (e.g. "down_blocks.0.resnets.1").
void rb_take(wts_loader *L, rb_block *r, int cin, int cout, int temb, const char *name);

// y (cout, h·w) = the block on x (cin, h·w); t is work space of
// max(cin, cout)·h·w floats; y, x, t distinct. With a time embedding,
// temb_act is silu(temb) (r->temb floats) and tproj (r->cout floats) work
// space; both NULL without.
void rb_forward(op_ctx *c, const rb_block *r, int groups, float eps, float *y, const float *x, float *t,
                const float *temb_act, float *tproj, int h, int w);

#endif
