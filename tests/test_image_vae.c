// test_image_vae.c — AutoencoderKL (src/image/vae.h) on micro-sd15: decode
// and encode match the golden arrays of an independent PyTorch
// implementation (max |Δ| ≤ 1e-3 × max |reference|) with 2 threads, 1
// thread (bit-identical) and the scalar reference operators.
#include <stdio.h>
#include <string.h>

#include "base/file.h"
#include "image/vae.h"
#include "test.h"

static void test_micro_sd15(void) {
    char dir[1024], path[1200];
    if (!test_shared_path(dir, sizeof dir, "diffusion/micro-sd15")) return;
    dif_pipeline p;
    sim_err err = {0};
    if (dif_open(&p, dir, &err) != SIM_OK) {
        CHECK_MSG(0, "%s", err.msg);
        return;
    }
    dif_path(&p, "vae/diffusion_pytorch_model.safetensors", path, sizeof path, &err);
    st_file *f = NULL;
    vae *v = NULL;
    CHECK_MSG(st_open(&f, path, &err) == SIM_OK, "%s", err.msg);
    if (f) CHECK_MSG(vae_load(&v, &p.vae, f, &err) == SIM_OK, "%s", err.msg);
    // Wrong widths are refused naming the tensor.
    dif_vae_config bad = p.vae;
    bad.block_out[1] = 48;
    vae *vb = NULL;
    if (f) {
        CHECK_EQ_INT(vae_load(&vb, &bad, f, &err), SIM_ERR_FORMAT); // the decoder is bound first
        CHECK_MSG(strstr(err.msg, "'decoder.conv_in.weight' has shape [64, 4, 3, 3], expected [48, 4, 3, 3]") != NULL, "%s", err.msg);
        // A decoder-only VAE refuses to encode until its encoder is added.
        CHECK_EQ_INT(vae_load_decoder(&vb, &p.vae, f, &err), SIM_OK);
        vae_work *wb = NULL;
        float img[3 * 16 * 16] = {0}, mom[8 * 8 * 8];
        op_ctx c0 = {.k = kern_get(KERN_REF), .ref = true};
        if (vb && vae_work_new(&wb, vb, 8, 8, &err) == SIM_OK) {
            CHECK(!vae_has_encoder(vb));
            CHECK_EQ_INT(vae_encode(vb, wb, &c0, img, 16, 16, mom, &err), SIM_ERR_ARG);
            CHECK(strstr(err.msg, "without its encoder") != NULL);
            CHECK_EQ_INT(vae_load_encoder(vb, f, &err), SIM_OK);
            CHECK(vae_has_encoder(vb));
            CHECK_MSG(vae_encode(vb, wb, &c0, img, 16, 16, mom, &err) == SIM_OK, "%s", err.msg);
        }
        vae_work_free(wb);
        vae_free(vb);
    }
    st_close(f);
    if (!v) return;
    CHECK_EQ_INT(vae_factor(v), 2);
    vae_work *w = NULL;
    CHECK_MSG(vae_work_new(&w, v, 8, 8, &err) == SIM_OK, "%s", err.msg);
    pool *pl;
    CHECK(pool_new(&pl, 2, &err) == SIM_OK);
    static float z[4 * 64], img[3 * 256], ref[3 * 256], out[3 * 256], out1[3 * 256], mom[8 * 64], mref[8 * 64];
    if (w && test_golden_f32("diffusion/micro-sd15/vae.decode.in.f32", z, 4 * 64) && test_golden_f32("diffusion/micro-sd15/vae.decode.out.f32", ref, 3 * 256)) {
        op_ctx c = {.pool = pl, .k = kern_get(KERN_BEST)};
        CHECK_EQ_INT(vae_decode(v, w, &c, z, 8, 8, out, &err), SIM_OK);
        test_compare_rel("decode (2 threads)", out, ref, 3 * 256, 1e-3);
        c.pool = NULL;
        CHECK_EQ_INT(vae_decode(v, w, &c, z, 8, 8, out1, &err), SIM_OK);
        CHECK(memcmp(out, out1, sizeof out) == 0);
        c.ref = true;
        CHECK_EQ_INT(vae_decode(v, w, &c, z, 8, 8, out1, &err), SIM_OK);
        test_compare_rel("decode (reference ops)", out1, ref, 3 * 256, 1e-3);
        CHECK_EQ_INT(vae_decode(v, w, &c, z, 9, 8, out1, &err), SIM_ERR_RANGE);
    }
    if (w && test_golden_f32("diffusion/micro-sd15/vae.encode.in.f32", img, 3 * 256) &&
        test_golden_f32("diffusion/micro-sd15/vae.encode.out_moments.f32", mref, 8 * 64)) {
        op_ctx c = {.pool = pl, .k = kern_get(KERN_BEST)};
        CHECK_EQ_INT(vae_encode(v, w, &c, img, 16, 16, mom, &err), SIM_OK);
        test_compare_rel("encode (2 threads)", mom, mref, 8 * 64, 1e-3);
        c.ref = true;
        CHECK_EQ_INT(vae_encode(v, w, &c, img, 16, 16, mom, &err), SIM_OK);
        test_compare_rel("encode (reference ops)", mom, mref, 8 * 64, 1e-3);
        CHECK_EQ_INT(vae_encode(v, w, &c, img, 15, 16, mom, &err), SIM_ERR_ARG);
        CHECK_EQ_INT(vae_encode(v, w, &c, img, 18, 16, mom, &err), SIM_ERR_RANGE);
    }
    pool_free(pl);
    vae_work_free(w);
    vae_free(v);
}

// Loading with each allocation failing in turn: SIM_ERR_NOMEM, nothing leaked (ASan).
static void test_alloc_failures(void) {
    char dir[1024], path[1200];
    if (!test_shared_path(dir, sizeof dir, "diffusion/micro-sd15")) return;
    dif_pipeline p;
    sim_err err = {0};
    if (dif_open(&p, dir, &err) != SIM_OK) return;
    dif_path(&p, "vae/diffusion_pytorch_model.safetensors", path, sizeof path, &err);
    st_file *f = NULL;
    if (st_open(&f, path, &err) != SIM_OK) return;
    bool done = false;
    for (long k = 0; k < 100 && !done; k++) {
        vae *v = NULL;
        vae_work *w = NULL;
        mem_fail_after(k);
        sim_status st = vae_load(&v, &p.vae, f, &err);
        if (st == SIM_OK) st = vae_work_new(&w, v, 8, 8, &err);
        bool failed = mem_fail_triggered();
        mem_fail_after(-1);
        vae_work_free(w);
        vae_free(v);
        if (!failed) {
            CHECK_EQ_INT(st, SIM_OK);
            done = true;
        } else {
            CHECK_MSG(st == SIM_ERR_NOMEM, "allocation %ld: %d %s", k, st, err.msg);
        }
    }
    CHECK(done);
    st_close(f);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    TEST_RUN(test_micro_sd15);
    TEST_RUN(test_alloc_failures);
    return test_finish();
}
