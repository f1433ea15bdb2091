// bench.c — `simularity bench`: prompt-processing and generation speed, and
// how close generation comes to the machine's memory bandwidth, all
// measured in the same run.
//
// Generation reads every weight once per token, so its ceiling is
// bandwidth ÷ bytes read per token (all tensor data except the token
// embedding when it is a separate table: only one row of it is read).
#include <math.h>
#include <string.h>

#include "cli/cli.h"
#include "infer/sample.h"
#include "model/forward.h"

typedef struct bw_state {
    const float *buf;
    size_t n;       // floats
    const kern_ops *k;
    float sink[64];
} bw_state;

static void bw_region(void *arg, int ith, int nth) {
    bw_state *s = arg;
    size_t per = s->n / (size_t)nth, i0 = per * (size_t)ith;
    const float *x = s->buf + i0;
    // Reading the same stream as both operands: one memory read per element.
    s->sink[ith] = s->k->dot_f32(x, x, (int64_t)per);
}

// Read bandwidth in GB/s: the best of three passes over 512 MiB (the buffer
// is allocated and filled by the caller).
static double measure_bandwidth(pool *p, bw_state *s) {
    double best = 0;
    for (int r = 0; r < 3; r++) {
        uint64_t t0 = time_ns();
        pool_run(p, bw_region, s);
        double gbs = (double)(s->n * sizeof(float)) / (double)(time_ns() - t0);
        if (gbs > best) best = gbs;
    }
    return best;
}

typedef struct bw_record {
    double sum, min, max;
    int n;
} bw_record;

static void record_bw(double gbs, bw_record *r) {
    r->sum += gbs;
    r->min = MIN(r->min, gbs);
    r->max = MAX(r->max, gbs);
    r->n++;
}

// Whether a run did not complete (its rate was never written).
static bool r_failed(const double *pp, const double *tg, int reps, int n_pp, int n_tg) {
    for (int r = 0; r < reps; r++)
        if ((n_pp > 0 && pp[r] < 0) || (n_tg > 0 && tg[r] < 0)) return true;
    return false;
}

static void add_profile(fwd_profile *sum, const fwd_profile *p) {
    for (int i = 0; i < FWD_STEP_COUNT; i++) sum->ns[i] += p->ns[i];
    sum->n_calls += p->n_calls;
    sum->n_tokens += p->n_tokens;
}

static void print_profile(const fwd_profile *p, const char *what) {
    static const char *names[FWD_STEP_COUNT] = {"norms/quantize", "q,k,v", "rope/cache", "attention", "wo",
                                                "gate,up", "down", "output", "total"};
    if (!p || !p->n_tokens) return;
    double total = (double)p->ns[FWD_STEP_TOTAL];
    fprintf(stderr, "%s: %.3f ms per token\n", what, total / 1e6 / (double)p->n_tokens);
    for (int i = 0; i < FWD_STEP_TOTAL; i++)
        fprintf(stderr, "  %-15s %6.1f%%  %8.3f ms/token\n", names[i], 100.0 * (double)p->ns[i] / total,
                (double)p->ns[i] / 1e6 / (double)p->n_tokens);
}

static void mean_sd(const double *x, int n, double *mean, double *sd) {
    double s = 0, ss = 0;
    for (int i = 0; i < n; i++) s += x[i];
    *mean = s / n;
    for (int i = 0; i < n; i++) ss += (x[i] - *mean) * (x[i] - *mean);
    *sd = n > 1 ? sqrt(ss / (n - 1)) : 0;
}

int cmd_bench(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "image") == 0) return bench_image(argc - 1, argv + 1); // bench_image.c
    const char *model_path = NULL;
    int n_pp = 512, n_tg = 128, n_threads = 2, reps = 3;
    bool json = false, profile = false, runtime = false;
    cli_opt opts[] = {
        {"-m|--model", OPT_STR, &model_path, "model file (GGUF)"},
        {"-p|--n-prompt", OPT_INT, &n_pp, "prompt tokens per run [512]"},
        {"-n|--n-gen", OPT_INT, &n_tg, "generated tokens per run [128]"},
        {"-t|--threads", OPT_INT, &n_threads, "threads [2]"},
        {"-r|--repetitions", OPT_INT, &reps, "runs to average [3]"},
        {"--json", OPT_FLAG, &json, "print one JSON object"},
        {"--profile", OPT_FLAG, &profile, "also print where the time goes (to stderr)"},
        {"--runtime", OPT_FLAG, &runtime, "measure the runtime instead: prefix reuse, state files, shifts, grammars (-p: prompt length, default 2000)"},
    };
    int n_pos, rc;
    if ((rc = cli_parse("bench -m MODEL [-p 512] [-n 128] [-t 2] [-r 3] [--json]", argc, argv, opts, ARRAY_LEN(opts), NULL, 0, &n_pos)))
        return rc;
    if (n_pp < 0 || n_tg < 0 || n_pp + n_tg < 1 || n_threads < 1 || reps < 1 || reps > 100)
        return cli_fail("bench: need -p >= 0, -n >= 0 (not both 0), -t >= 1, 1 <= -r <= 100");
    model *m = cli_load_model(model_path, NULL);
    if (!m) return 1;
    if (runtime) {
        rc = bench_runtime(m, n_threads, n_pp == 512 ? 2000 : MAX(n_pp, 100));
        model_free(m);
        return rc;
    }
    fwd_params fp = fwd_default_params();
    fp.n_ctx = n_pp + n_tg;
    fp.n_batch = MAX(n_pp, 1);
    fp.n_outputs = 1;
    fp.n_threads = n_threads;
    fp.profile = profile;
    fwd_ctx *c;
    sim_err err;
    if (fwd_new(&c, m, &fp, &err) != SIM_OK) {
        model_free(m);
        return cli_fail("%s", err.msg);
    }
    int n_tok = MAX(n_pp, n_tg);
    int32_t *toks = mem_alloc((size_t)n_tok * sizeof *toks);
    double *pp = mem_alloc((size_t)reps * sizeof *pp), *tg = mem_alloc((size_t)reps * sizeof *tg);
    int rcode = 1;
    if (!toks || !pp || !tg) {
        cli_fail("out of memory");
        goto done;
    }
    smp_rng rng;
    smp_rng_seed(&rng, 1234);
    for (int i = 0; i < n_tok; i++) toks[i] = (int32_t)(smp_rng_next(&rng) % (uint64_t)m->hp.n_vocab);
    for (int r = 0; r < reps; r++) pp[r] = tg[r] = -1; // not run yet

    // The machine's read bandwidth moves with the host's load, so it is
    // measured right before and after every generation run, and the mean of
    // those measurements is the limit generation is compared with.
    pool *bp;
    if (pool_new(&bp, n_threads, &err) != SIM_OK) {
        cli_fail("%s", err.msg);
        goto done;
    }
    bw_state bws = {.n = (size_t)128 << 20, .k = fwd_kernels(c)};
    float *bwbuf = mem_alloc_aligned(64, bws.n * sizeof(float));
    if (!bwbuf) {
        pool_free(bp);
        cli_fail("out of memory");
        goto done;
    }
    for (size_t i = 0; i < bws.n; i++) bwbuf[i] = (float)(i & 7);
    bws.buf = bwbuf;
    bw_record bwr = {.min = 1e30};
    // A warm-up pass brings the mapped weights into memory.
    fwd_profile prof[2] = {0};
    for (int r = -1; r < reps; r++) {
        if (n_pp > 0) {
            kv_clear(fwd_kv(c));
            fwd_reset_profile(c);
            uint64_t t0 = time_ns();
            if (!cli_eval(c, toks, n_pp, 0, false, NULL, NULL)) goto done_bw;
            if (r >= 0) pp[r] = n_pp / ((double)(time_ns() - t0) / 1e9);
            if (r >= 0) add_profile(&prof[0], fwd_get_profile(c));
        }
        if (r < 0) { // warm-up of generation
            kv_clear(fwd_kv(c));
            for (int i = 0; i < MIN(n_tg, 4); i++) cli_eval(c, toks + i, 1, i, false, NULL, NULL);
            continue;
        }
        record_bw(measure_bandwidth(bp, &bws), &bwr);
        if (n_tg == 0) continue;
        kv_clear(fwd_kv(c));
        fwd_reset_profile(c);
        uint64_t t0 = time_ns();
        for (int i = 0; i < n_tg; i++)
            if (!cli_eval(c, toks + i, 1, i, false, NULL, NULL)) goto done_bw;
        tg[r] = n_tg / ((double)(time_ns() - t0) / 1e9);
        add_profile(&prof[1], fwd_get_profile(c));
        record_bw(measure_bandwidth(bp, &bws), &bwr);
    }
done_bw:
    mem_free_aligned(bwbuf);
    pool_free(bp);
    if (r_failed(pp, tg, reps, n_pp, n_tg)) goto done;
    double bw = bwr.n ? bwr.sum / bwr.n : 0, bw_min = bwr.min, bw_max = bwr.max;
    int bw_n = bwr.n;
    if (profile) {
        print_profile(n_pp > 0 ? &prof[0] : NULL, "prompt processing");
        print_profile(n_tg > 0 ? &prof[1] : NULL, "generation");
    }
    double pp_m = 0, pp_sd = 0, tg_m = 0, tg_sd = 0;
    if (n_pp > 0) mean_sd(pp, reps, &pp_m, &pp_sd);
    if (n_tg > 0) mean_sd(tg, reps, &tg_m, &tg_sd);
    size_t read_bytes = m->weight_bytes;
    if (!m->tied_output) read_bytes -= (size_t)m->tok_embd.ne1 * m->tok_embd.row_bytes - m->tok_embd.row_bytes;
    double frac = bw > 0 ? tg_m * (double)read_bytes / (bw * 1e9) : 0;
    double frac_model = bw > 0 ? tg_m * (double)m->weight_bytes / (bw * 1e9) : 0;
    const char *type = tt_name(model_main_type(m));
    if (json) {
        printf("{\"model\":\"%s\",\"type\":\"%s\",\"params\":%llu,\"model_bytes\":%zu,\"read_bytes_per_token\":%zu,"
               "\"threads\":%d,\"kernels\":\"%s\",\"n_prompt\":%d,\"n_gen\":%d,\"repetitions\":%d,"
               "\"pp_tps\":%.3f,\"pp_tps_sd\":%.3f,\"tg_tps\":%.3f,\"tg_tps_sd\":%.3f,\"bandwidth_gbs\":%.3f,"
               "\"bandwidth_min_gbs\":%.3f,\"bandwidth_max_gbs\":%.3f,"
               "\"tg_bandwidth_fraction\":%.4f,\"tg_model_bytes_fraction\":%.4f}\n",
               cli_basename(model_path), type, (unsigned long long)m->n_params, m->weight_bytes, read_bytes, n_threads,
               fwd_kernels(c)->name, n_pp, n_tg, reps, pp_m, pp_sd, tg_m, tg_sd, bw, bw_min, bw_max, frac, frac_model);
    } else {
        printf("model:       %s (%s, %.2f B params, %.1f MiB)\n", cli_basename(model_path), type, (double)m->n_params / 1e9,
               (double)m->weight_bytes / (1 << 20));
        printf("threads:     %d (%s kernels), %d runs\n", n_threads, fwd_kernels(c)->name, reps);
        if (n_pp > 0) printf("pp%-4d       %8.2f ± %.2f tokens/s\n", n_pp, pp_m, pp_sd);
        if (n_tg > 0) printf("tg%-4d       %8.2f ± %.2f tokens/s\n", n_tg, tg_m, tg_sd);
        printf("bandwidth:   %.2f GB/s (read, %d threads; mean of %d measurements around the runs, %.1f..%.1f)\n", bw,
               n_threads, bw_n, bw_min, bw_max);
        if (n_tg > 0)
            printf("generation:  %.1f%% of the bandwidth limit (%.1f MiB read per token); %.1f%% by model bytes\n",
                   100 * frac, (double)read_bytes / (1 << 20), 100 * frac_model);
    }
    rcode = 0;
done:
    mem_free(toks);
    mem_free(pp);
    mem_free(tg);
    fwd_free(c);
    model_free(m);
    return rcode;
}
