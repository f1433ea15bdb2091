// mksd.c — writes a random-weight Stable Diffusion model with the real
// tensor names and shapes (see src/image/sdwrite.h), for benchmarks and tests.
//
//   mksd --family sd15|sd21|small-sd|tiny-sd --out DIR [--dtype f16|f32|bf16]
//        [--seed N] [--tokenizer DIR]
//   mksd --taesd --out DIR [--latent-channels 4] [--dtype ...] [--seed N]
//
// A family writes a whole diffusers folder; --taesd writes
// DIR/taesd_{decoder,encoder}.safetensors. The tokenizer (vocab.json +
// merges.txt, the 49408-token CLIP vocabulary) is copied from --tokenizer,
// by default $SIM_SHARED/diffusion/micro-sd15/tokenizer (SIM_SHARED defaults
// to /work/shared). Prints the parameter count and the time taken.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/sdwrite.h"

static int usage(FILE *f) {
    fprintf(f, "usage: mksd --family sd15|sd21|small-sd|tiny-sd --out DIR [--dtype f16|f32|bf16] [--seed N] [--tokenizer DIR]\n"
               "       mksd --taesd --out DIR [--latent-channels N] [--dtype f16|f32|bf16] [--seed N]\n");
    return f == stdout ? 0 : 2;
}

int main(int argc, char **argv) {
    const char *out = NULL, *family = NULL, *dtype = "f16";
    char tok[1024];
    const char *shared = getenv("SIM_SHARED");
    snprintf(tok, sizeof tok, "%s/diffusion/micro-sd15/tokenizer", shared ? shared : "/work/shared");
    sdw_opts o = {.dtype = ST_F16, .seed = 0, .tokenizer = tok};
    bool taesd = false;
    int lat = 4;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) return usage(stdout);
        if (strcmp(a, "--taesd") == 0) {
            taesd = true;
            continue;
        }
        if (!v) {
            fprintf(stderr, "mksd: %s needs a value\n", a);
            return usage(stderr);
        }
        i++;
        if (strcmp(a, "--family") == 0) family = v;
        else if (strcmp(a, "--out") == 0) out = v;
        else if (strcmp(a, "--dtype") == 0) dtype = v;
        else if (strcmp(a, "--seed") == 0) o.seed = strtoull(v, NULL, 10);
        else if (strcmp(a, "--tokenizer") == 0) o.tokenizer = v;
        else if (strcmp(a, "--latent-channels") == 0) lat = atoi(v);
        else {
            fprintf(stderr, "mksd: unknown option '%s'\n", a);
            return usage(stderr);
        }
    }
    if (strcmp(dtype, "f16") == 0) o.dtype = ST_F16;
    else if (strcmp(dtype, "f32") == 0) o.dtype = ST_F32;
    else if (strcmp(dtype, "bf16") == 0) o.dtype = ST_BF16;
    else {
        fprintf(stderr, "mksd: --dtype '%s' (f16, f32, bf16)\n", dtype);
        return 2;
    }
    sdw_family fam = SDW_SD15;
    if (!out || taesd == (family != NULL) || (family && !sdw_family_parse(family, &fam))) {
        if (family && !sdw_family_parse(family, &fam)) fprintf(stderr, "mksd: unknown family '%s'\n", family);
        return usage(stderr);
    }
    sim_err err = {0};
    int64_t n = 0;
    uint64_t t0 = time_ns();
    sim_status st;
    if (taesd) {
        st = sdw_write_taesd(out, lat, &o, &n, &err);
    } else {
        dif_pipeline p;
        sdw_family_configs(fam, &p);
        st = sdw_write_pipeline(out, &p, &o, &n, &err);
    }
    if (st != SIM_OK) {
        fprintf(stderr, "mksd: %s\n", err.msg);
        return 1;
    }
    printf("%s: %s, %lld parameters (%s), %.1f s\n", out, taesd ? "taesd" : family, (long long)n, dtype, (double)(time_ns() - t0) / 1e9);
    return 0;
}
