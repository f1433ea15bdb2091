// resblock.c — the ResNet block of the U-Net and the VAE (see resblock.h).
#include "image/resblock.h"

void rb_take(wts_loader *L, rb_block *r, int cin, int cout, int temb, const char *name) {
    r->cin = cin, r->cout = cout, r->temb = temb;
    wts_take(L, &r->n1_g, WTS_SHAPE(cin), "%s.norm1.weight", name);
    wts_take(L, &r->n1_b, WTS_SHAPE(cin), "%s.norm1.bias", name);
    wts_take_mat(L, &r->c1_w, WTS_SHAPE(cout, cin, 3, 3), "%s.conv1.weight", name);
    wts_take(L, &r->c1_b, WTS_SHAPE(cout), "%s.conv1.bias", name);
    r->t_w = (op_mat){0};
    r->t_b = NULL;
    if (temb > 0) {
        wts_take_mat(L, &r->t_w, WTS_SHAPE(cout, temb), "%s.time_emb_proj.weight", name);
        wts_take(L, &r->t_b, WTS_SHAPE(cout), "%s.time_emb_proj.bias", name);
    }
    wts_take(L, &r->n2_g, WTS_SHAPE(cout), "%s.norm2.weight", name);
    wts_take(L, &r->n2_b, WTS_SHAPE(cout), "%s.norm2.bias", name);
    wts_take_mat(L, &r->c2_w, WTS_SHAPE(cout, cout, 3, 3), "%s.conv2.weight", name);
    wts_take(L, &r->c2_b, WTS_SHAPE(cout), "%s.conv2.bias", name);
    r->sc_w = (op_mat){0};
    r->sc_b = NULL;
    if (cin != cout) {
        wts_take_mat(L, &r->sc_w, WTS_SHAPE(cout, cin, 1, 1), "%s.conv_shortcut.weight", name);
        wts_take(L, &r->sc_b, WTS_SHAPE(cout), "%s.conv_shortcut.bias", name);
    }
}

void rb_forward(op_ctx *c, const rb_block *r, int groups, float eps, float *y, const float *x, float *t,
                const float *temb_act, float *tproj, int h, int w) {
    int hw = h * w;
    op_conv p1 = {r->cin, r->cout, 3, 3, 1, 1, 1, 1, 1, false}, p2 = {r->cout, r->cout, 3, 3, 1, 1, 1, 1, 1, false};
    op_group_norm(c, t, x, r->cin, hw, groups, eps, r->n1_g, r->n1_b, true);
    op_conv2d(c, y, t, &p1, h, w, r->c1_w, r->c1_b);
    if (r->t_w.data) {
        op_linear(c, tproj, temb_act, r->t_w, r->t_b, 1, r->temb, r->cout);
        for (int ch = 0; ch < r->cout; ch++)
            for (int i = 0; i < hw; i++) y[(size_t)ch * hw + i] += tproj[ch];
    }
    op_group_norm(c, t, y, r->cout, hw, groups, eps, r->n2_g, r->n2_b, true);
    op_conv2d(c, y, t, &p2, h, w, r->c2_w, r->c2_b);
    if (r->sc_w.data) {
        op_conv ps = {r->cin, r->cout, 1, 1, 1, 0, 0, 0, 0, false};
        op_conv2d(c, t, x, &ps, h, w, r->sc_w, r->sc_b);
        op_add(y, y, t, (size_t)r->cout * hw);
    } else {
        op_add(y, y, x, (size_t)r->cout * hw);
    }
}
