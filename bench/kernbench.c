// kernbench.c — micro-benchmark of the kernel levels (ref, avx2, avx512).
//
// Build and run from the repository root, after `make` has built the library:
//
//   cc -std=c11 -O2 -D_GNU_SOURCE -Iinclude -Isrc -pthread bench/kernbench.c build/release/libsimularity.a -lm -o build/kernbench
//   ./build/kernbench                     # all types, all levels
//   ./build/kernbench --types q4_0,q4_K --levels avx512 --mb 256
//   ./build/kernbench --check             # gemm == vec_dot bit for bit, large shapes
//   ./build/kernbench --levels avx512 --kb 16 --no-mem   # compute ceiling: weights in L1
//
// What it measures (2048-wide rows, like the 1.1B Llama's dim):
//   mem     read bandwidth of a streaming sum over 1 GB, 1 and 2 threads:
//           plain (hardware prefetch only) and with software prefetch 4 KB
//           ahead. On this kind of VM the two-thread figure swings between
//           ~30 and ~55 GB/s from one second to the next (host load and vCPU
//           placement); one thread stays near 27-30 GB/s.
//   vec_dot one pass over a weight matrix of --mb MB (default 256, far larger
//           than the 32 MB L3) doing one dot product per row, rows split
//           between threads: GB/s of weights streamed. For the avx512 level,
//           "%mem" is that over the better of the two streaming sums, both
//           measured right before and after the kernel (best of each), so
//           drifting machine load affects both sides alike. With --kb N
//           the matrix is N KB (per thread), small enough to stay in L1 or
//           L2: the kernel's compute ceiling instead of a memory figure.
//   gemm    --rows (256) weight rows x --cols (512) activation rows, cut into
//           64 x 64 chunks claimed by the threads as matmul.c does: GOP/s =
//           2 * rows * cols * n / time.
// Figures move from run to run on a shared machine; compare ratios within a run.
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "tensor/kern.h"
#include "tensor/types.h"

#define N_ELEM 2048
#define MAX_THREADS 2

static const tt_type all_types[] = {TT_F32,  TT_F16,  TT_BF16, TT_Q4_0, TT_Q4_1, TT_Q5_0, TT_Q5_1,
                                    TT_Q8_0, TT_Q2_K, TT_Q3_K, TT_Q4_K, TT_Q5_K, TT_Q6_K};

// --- options -------------------------------------------------------------------------------

typedef struct opts {
    bool types[TT_COUNT];
    bool levels[3];
    int mb;         // vec_dot matrix size
    int kb;         // if > 0: matrix size in KB per thread (cache-resident)
    int rows, cols; // gemm shape
    int threads;    // max threads
    bool check;
    bool no_mem;
} opts;

static void usage(void) {
    fprintf(stderr, "usage: kernbench [--types t1,t2..] [--levels ref,avx2,avx512] [--mb MB] [--rows R] "
                    "[--cols C] [--threads 1|2] [--kb KB] [--check] [--no-mem]\n");
    exit(2);
}

static void parse(int argc, char **argv, opts *o) {
    memset(o, 0, sizeof *o);
    o->mb = 256;
    o->rows = 256;
    o->cols = 512;
    o->threads = 2;
    bool any_type = false, any_level = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--check")) o->check = true;
        else if (!strcmp(a, "--no-mem")) o->no_mem = true;
        else if (i + 1 < argc && !strcmp(a, "--mb")) o->mb = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(a, "--kb")) o->kb = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(a, "--rows")) o->rows = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(a, "--cols")) o->cols = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(a, "--threads")) o->threads = atoi(argv[++i]);
        else if (i + 1 < argc && (!strcmp(a, "--types") || !strcmp(a, "--levels"))) {
            bool lv = !strcmp(a, "--levels");
            char *list = strdup(argv[++i]);
            for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
                if (lv) {
                    int l = !strcmp(tok, "ref") ? 0 : !strcmp(tok, "avx2") ? 1 : !strcmp(tok, "avx512") ? 2 : -1;
                    if (l < 0) usage();
                    o->levels[l] = any_level = true;
                } else {
                    tt_type t;
                    if (!tt_from_name(tok, &t)) usage();
                    o->types[t] = any_type = true;
                }
            }
            free(list);
        } else usage();
    }
    if (!any_type)
        for (size_t i = 0; i < ARRAY_LEN(all_types); i++) o->types[all_types[i]] = true;
    if (!any_level) o->levels[0] = o->levels[1] = o->levels[2] = true;
    if (o->threads < 1 || o->threads > MAX_THREADS || o->mb < 1 || o->rows < 1 || o->cols < 1) usage();
}

// --- data ---------------------------------------------------------------------------------------

static uint64_t rng = 0x243F6A8885A308D3ull;
static uint64_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static float frnd(void) { return (float)((rnd() >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f; }

static void *xalloc(size_t n) {
    void *p = mem_alloc_aligned(64, n);
    if (!p) {
        fprintf(stderr, "kernbench: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

// Random bytes everywhere (no two pages alike: repeated data could be
// merged or cached and read faster than memory), with every scale field set
// to a normal half so no arithmetic meets denormals, NaN or infinity. For
// float types, random normal values.
static void put_half(uint8_t *p, uint16_t h) { memcpy(p, &h, 2); }
static void fill_matrix(tt_type t, uint8_t *w, int64_t rows) {
    const tt_traits *tr = tt_get(t);
    size_t bytes = tt_row_size(t, N_ELEM) * (size_t)rows;
    for (size_t i = 0; i + 8 <= bytes; i += 8) {
        uint64_t r = rnd();
        memcpy(w + i, &r, 8);
    }
    if (t == TT_F32) {
        for (size_t i = 0; i + 4 <= bytes; i += 4) {
            uint32_t v;
            memcpy(&v, w + i, 4);
            v = 0x3F800000u | (v & 0x807FFFFFu); // ±[1, 2)
            memcpy(w + i, &v, 4);
        }
        return;
    }
    if (t == TT_F16 || t == TT_BF16) {
        for (size_t i = 0; i + 2 <= bytes; i += 2) {
            uint16_t v;
            memcpy(&v, w + i, 2);
            v = t == TT_F16 ? (uint16_t)(0x3C00 | (v & 0x83FF)) : (uint16_t)(0x3F80 | (v & 0x807F));
            memcpy(w + i, &v, 2);
        }
        return;
    }
    // Byte offsets of the half scales in each block.
    int off[2] = {0, -1};
    switch (t) {
    case TT_Q4_1: case TT_Q5_1: case TT_Q4_K: case TT_Q5_K: off[1] = 2; break;
    case TT_Q2_K: off[0] = 80; off[1] = 82; break;
    case TT_Q3_K: off[0] = 108; break;
    case TT_Q6_K: off[0] = 208; break;
    default: break;
    }
    for (size_t b = 0; b < bytes; b += tr->bytes) {
        put_half(w + b + off[0], (uint16_t)(0x2C00 | (rnd() & 0x3FF)));
        if (off[1] >= 0) put_half(w + b + off[1], (uint16_t)(0x2800 | (rnd() & 0x3FF)));
    }
}

static void *make_acts(const kern_ops *k, tt_type t, int cols) {
    tt_act act = tt_get(t)->act;
    size_t ab = tt_act_row_size(act, N_ELEM);
    uint8_t *a = xalloc(ab * (size_t)cols);
    float *x = xalloc(N_ELEM * sizeof(float));
    for (int c = 0; c < cols; c++) {
        for (int i = 0; i < N_ELEM; i++) x[i] = frnd();
        k->quantize_act[act](x, a + (size_t)c * ab, N_ELEM);
    }
    mem_free_aligned(x);
    return a;
}

// --- threads ------------------------------------------------------------------------------------

typedef struct job job;
typedef void (*job_fn)(job *j, int ith, int nth);
struct job {
    job_fn fn;
    int nth;
    pthread_barrier_t bar;
    uint64_t t0, t1;
    // payload
    const kern_ops *k;
    tt_type t;
    const uint8_t *w;
    const uint8_t *a;
    size_t wrow, arow;
    int64_t rows;
    int cols;
    int passes;
    float *out;
    atomic_int next;
    const uint8_t *buf;
    size_t buf_bytes;
    uint64_t sink[MAX_THREADS];
};

typedef struct {
    job *j;
    int ith;
} arg_t;

static void *thread_main(void *p) {
    arg_t *a = p;
    job *j = a->j;
    pthread_barrier_wait(&j->bar);
    if (a->ith == 0) j->t0 = time_ns();
    pthread_barrier_wait(&j->bar);
    j->fn(j, a->ith, j->nth);
    pthread_barrier_wait(&j->bar);
    if (a->ith == 0) j->t1 = time_ns();
    return NULL;
}

// Runs j->fn on nth threads; returns the seconds between the start and end barriers.
static double run_once(job *j, int nth) {
    pthread_t tid[MAX_THREADS];
    arg_t args[MAX_THREADS];
    j->nth = nth;
    atomic_store(&j->next, 0);
    pthread_barrier_init(&j->bar, NULL, (unsigned)nth);
    for (int i = 0; i < nth; i++) {
        args[i] = (arg_t){j, i};
        if (i > 0) pthread_create(&tid[i], NULL, thread_main, &args[i]);
    }
    thread_main(&args[0]);
    for (int i = 1; i < nth; i++) pthread_join(tid[i], NULL);
    pthread_barrier_destroy(&j->bar);
    return (double)(j->t1 - j->t0) * 1e-9;
}

// Seconds per pass: passes calibrated so one run takes >= MIN_RUN_S, best of
// REPEATS runs (the machine is shared; the best run is the least disturbed).
#define MIN_RUN_S 0.3
#define REPEATS 3
static double run(job *j, int nth, int max_passes) {
    j->passes = 1;
    double s = run_once(j, nth); // also the warm-up
    int passes = s > 0 ? (int)(MIN_RUN_S / s) + 1 : 1;
    if (passes > max_passes) passes = max_passes;
    j->passes = passes;
    double best = 1e30;
    for (int i = 0; i < REPEATS; i++) {
        double t = run_once(j, nth) / passes;
        if (t < best) best = t;
    }
    return best;
}

// --- memory bandwidth ---------------------------------------------------------------------------

// Eight independent 64-bit sums per 64-byte line: enough loads in flight that
// memory, not the core, is the limit (with AVX2 when available: same bytes,
// fewer instructions).
__attribute__((target("avx2"))) static uint64_t stream_sum_avx2(const uint8_t *p, size_t n) {
    typedef long long v4 __attribute__((vector_size(32)));
    v4 s0 = {0}, s1 = {0};
    for (size_t i = 0; i + 64 <= n; i += 64) {
        v4 a, b;
        memcpy(&a, p + i, 32);
        memcpy(&b, p + i + 32, 32);
        s0 += a;
        s1 += b;
    }
    v4 s = s0 + s1;
    return (uint64_t)(s[0] + s[1] + s[2] + s[3]);
}

// The same with software prefetch pf bytes ahead (more lines in flight than
// the hardware prefetcher alone): a second opinion on the ceiling, since
// neither is reliably the higher one on a shared VM.
__attribute__((target("avx2"))) static uint64_t stream_sum_pf_avx2(const uint8_t *p, size_t n, size_t pf) {
    typedef long long v4 __attribute__((vector_size(32)));
    v4 s0 = {0}, s1 = {0};
    for (size_t i = 0; i + 64 <= n; i += 64) {
        __builtin_prefetch(p + i + pf);
        v4 a, b;
        memcpy(&a, p + i, 32);
        memcpy(&b, p + i + 32, 32);
        s0 += a;
        s1 += b;
    }
    v4 s = s0 + s1;
    return (uint64_t)(s[0] + s[1] + s[2] + s[3]);
}

static void job_stream(job *j, int ith, int nth) {
    size_t part = j->buf_bytes / (size_t)nth / 64 * 64;
    uint64_t s = 0;
    for (int p = 0; p < j->passes; p++) {
        s += j->cols ? stream_sum_pf_avx2(j->buf + (size_t)ith * part, part, (size_t)j->cols)
                     : stream_sum_avx2(j->buf + (size_t)ith * part, part);
        __asm__ volatile("" ::: "memory"); // the sum is pure: keep every pass
    }
    j->sink[ith] = s;
}

// pf: software prefetch distance in bytes (0: none).
static double mem_bandwidth(int nth, size_t bytes, int passes, int pf) {
    static uint8_t *buf;
    if (!buf) {
        buf = xalloc(bytes);
        for (size_t i = 0; i + 8 <= bytes; i += 8) {
            uint64_t r = rnd();
            memcpy(buf + i, &r, 8);
        }
    }
    job j = {.fn = job_stream, .buf = buf, .buf_bytes = bytes, .cols = pf};
    double s = run(&j, nth, passes);
    return (double)bytes / s * 1e-9;
}

// --- vec_dot --------------------------------------------------------------------------------------

static void job_vec_dot(job *j, int ith, int nth) {
    tt_vec_dot_fn dot = j->k->vec_dot[j->t];
    int64_t r0 = j->rows * ith / nth, r1 = j->rows * (ith + 1) / nth;
    float acc = 0;
    for (int p = 0; p < j->passes; p++)
        for (int64_t r = r0; r < r1; r++) {
            float s;
            dot(N_ELEM, &s, j->w + (size_t)r * j->wrow, j->a);
            acc += s;
        }
    j->sink[ith] = (uint64_t)acc;
}

static double bench_vec_dot(const kern_ops *k, tt_type t, const uint8_t *w, int64_t rows, int nth, int passes) {
    job j = {.fn = job_vec_dot, .k = k, .t = t, .w = w, .wrow = tt_row_size(t, N_ELEM), .rows = rows};
    j.a = make_acts(k, t, 1);
    double s = run(&j, nth, passes);
    mem_free_aligned((void *)j.a);
    return (double)j.wrow * (double)rows / s * 1e-9;
}

// --- gemm -----------------------------------------------------------------------------------------

#define CHUNK_ROWS 64
#define CHUNK_COLS 64

static void job_gemm(job *j, int ith, int nth) {
    kern_gemm_fn gemm = j->k->gemm[j->t];
    int n_rb = (int)((j->rows + CHUNK_ROWS - 1) / CHUNK_ROWS), n_cb = (j->cols + CHUNK_COLS - 1) / CHUNK_COLS;
    for (int p = 0; p < j->passes; p++) {
        // Chunks of all passes are numbered in one sequence; a fast thread
        // may start the next pass early, which only smooths the tail.
        for (int ch; (ch = atomic_fetch_add(&j->next, 1)) < (p + 1) * n_rb * n_cb;) {
            int c = ch % (n_rb * n_cb);
            int r0 = (c / n_cb) * CHUNK_ROWS, c0 = (c % n_cb) * CHUNK_COLS;
            int nr = (int)MIN(CHUNK_ROWS, j->rows - r0), nc = MIN(CHUNK_COLS, j->cols - c0);
            gemm(N_ELEM, nr, nc, j->w + (size_t)r0 * j->wrow, j->wrow, j->a + (size_t)c0 * j->arow, j->arow,
                 j->out + (size_t)c0 * (size_t)j->rows + r0, (size_t)j->rows);
        }
    }
}

static double bench_gemm(const kern_ops *k, tt_type t, const uint8_t *w, int rows, int cols, int nth, int passes) {
    job j = {.fn = job_gemm, .k = k, .t = t, .w = w, .wrow = tt_row_size(t, N_ELEM), .rows = rows, .cols = cols,
             .passes = 1};
    j.arow = tt_act_row_size(tt_get(t)->act, N_ELEM);
    j.a = make_acts(k, t, cols);
    j.out = xalloc((size_t)rows * (size_t)cols * sizeof(float));
    double s = run(&j, nth, passes);
    mem_free_aligned((void *)j.a);
    mem_free_aligned(j.out);
    return 2.0 * rows * cols * N_ELEM / s * 1e-9;
}

// --- check: gemm equals vec_dot bit for bit -----------------------------------------------------

// Shapes that cross slab boundaries, leave partial panels and column groups,
// use odd strides and both sides of the small-nc fallback.
static int check_type(const kern_ops *k, tt_type t) {
    static const int shapes[][3] = {{77, 45, 4096}, {33, 7, 2048}, {16, 3, 8192}, {5, 2, 1024}, {64, 64, 2304}, {17, 9, 256}};
    const tt_traits *tr = tt_get(t);
    int bad = 0;
    for (size_t s = 0; s < ARRAY_LEN(shapes); s++) {
        int nr = shapes[s][0], nc = shapes[s][1];
        int64_t n = shapes[s][2];
        if (n % tr->blck) continue;
        size_t wrow = tt_row_size(t, n) + 32, arow = tt_act_row_size(tr->act, n) + 12;
        uint8_t *w = xalloc(wrow * (size_t)nr), *a = xalloc(arow * (size_t)nc);
        float *x = xalloc((size_t)n * sizeof(float));
        for (int r = 0; r < nr; r++) {
            for (int64_t i = 0; i < n; i++) x[i] = frnd() * (float)(1 + (rnd() & 7));
            tr->from_float(x, w + (size_t)r * wrow, n);
        }
        for (int c = 0; c < nc; c++) {
            for (int64_t i = 0; i < n; i++) x[i] = frnd();
            k->quantize_act[tr->act](x, a + (size_t)c * arow, n);
        }
        size_t ldo = (size_t)nr + 5;
        float *out = xalloc(ldo * (size_t)nc * sizeof(float));
        k->gemm[t](n, nr, nc, w, wrow, a, arow, out, ldo);
        for (int c = 0; c < nc; c++)
            for (int r = 0; r < nr; r++) {
                float v;
                k->vec_dot[t](n, &v, w + (size_t)r * wrow, a + (size_t)c * arow);
                if (memcmp(&v, &out[(size_t)c * ldo + r], 4) != 0) {
                    if (bad < 5)
                        fprintf(stderr, "  %s %s %dx%d n=%lld (%d,%d): gemm %.9g vec_dot %.9g\n", k->name, tr->name, nr,
                                nc, (long long)n, r, c, out[(size_t)c * ldo + r], v);
                    bad++;
                }
            }
        mem_free_aligned(w);
        mem_free_aligned(a);
        mem_free_aligned(x);
        mem_free_aligned(out);
    }
    return bad;
}

// --- main -------------------------------------------------------------------------------------------

int main(int argc, char **argv) {
    opts o;
    parse(argc, argv, &o);
    const kern_ops *lv[3];
    for (int l = 0; l < 3; l++) lv[l] = o.levels[l] ? kern_get_exact((kern_level)l) : NULL;

    if (o.check) {
        int bad = 0;
        for (int l = 1; l < 3; l++) {
            if (!lv[l]) continue;
            for (size_t i = 0; i < ARRAY_LEN(all_types); i++)
                if (o.types[all_types[i]]) {
                    int b = check_type(lv[l], all_types[i]);
                    printf("check %-6s %-5s gemm vs vec_dot: %s (%d differ)\n", lv[l]->name, tt_name(all_types[i]),
                           b ? "DIFFER" : "bit-identical", b);
                    bad += b;
                }
        }
        return bad ? 1 : 0;
    }

    const size_t mem_bytes = (size_t)1 << 30;
    if (!o.no_mem)
        for (int t = 1; t <= o.threads; t++)
            printf("mem   streaming read, %d thread%s: %6.1f GB/s plain, %6.1f GB/s with prefetch\n", t, t > 1 ? "s" : "",
                   mem_bandwidth(t, mem_bytes, 4, 0), mem_bandwidth(t, mem_bytes, 4, 4096));
    if (o.kb > 0)
        printf("\nvec_dot: %d KB of weights per thread, reread (cache-resident), rows of %d; GB/s\n", o.kb, N_ELEM);
    else
        printf("\nvec_dot: %d MB of weights per pass, rows of %d; GB/s (%%mem = / streaming read)\n", o.mb, N_ELEM);
    printf("%-6s", "type");
    for (int l = 0; l < 3; l++)
        for (int t = 1; t <= o.threads; t++)
            if (lv[l]) printf("  %6s %dt", lv[l]->name, t);
    bool show_mem = lv[2] && !o.no_mem && o.kb == 0;
    if (show_mem) printf("   512/mem 1t  2t   (mem 1t  2t)");
    printf("\n");
    for (size_t i = 0; i < ARRAY_LEN(all_types); i++) {
        tt_type t = all_types[i];
        if (!o.types[t]) continue;
        size_t rb = tt_row_size(t, N_ELEM);
        int64_t rows = o.kb > 0 ? MAX(1, (int64_t)o.kb * 1024 / (int64_t)rb) * o.threads
                                : (int64_t)o.mb * 1000000 / (int64_t)rb;
        int max_passes = o.kb > 0 ? 100000000 : 1000;
        uint8_t *w = xalloc(rb * (size_t)rows);
        fill_matrix(t, w, rows);
        printf("%-6s", tt_name(t));
        double g512[MAX_THREADS + 1] = {0}, mem[MAX_THREADS + 1] = {0};
        for (int l = 0; l < 3; l++) {
            if (!lv[l]) continue;
            for (int th = 1; th <= o.threads; th++) {
                double g = 0;
                // In L1 mode every thread rereads its own rows; one thread reads the first half.
                int64_t r = o.kb > 0 ? rows / o.threads * th : rows;
                if (l == 0) // the scalar reference is slow: one pass over a quarter of the rows
                    g = bench_vec_dot(lv[l], t, w, MAX(1, r / 4), th, o.kb > 0 ? max_passes : 1);
                else
                    for (int rep = 0; rep < (show_mem && l == 2 ? 2 : 1); rep++) {
                        if (show_mem && l == 2)
                            mem[th] = MAX(mem[th], MAX(mem_bandwidth(th, mem_bytes, 2, 0), mem_bandwidth(th, mem_bytes, 2, 4096)));
                        g = MAX(g, bench_vec_dot(lv[l], t, w, r, th, max_passes));
                    }
                if (l == 2) g512[th] = MAX(g512[th], g);
                printf("  %11.1f", g);
                fflush(stdout);
            }
        }
        if (show_mem) {
            for (int th = 1; th <= o.threads; th++) printf("  %4.0f%%", 100.0 * g512[th] / mem[th]);
            printf("   (");
            for (int th = 1; th <= o.threads; th++) printf("%s%.1f", th > 1 ? " " : "", mem[th]);
            printf(")");
        }
        printf("\n");
        mem_free_aligned(w);
    }
    if (o.kb > 0) return 0;

    printf("\ngemm: %d rows x %d columns x n=%d in 64x64 chunks; GOP/s\n", o.rows, o.cols, N_ELEM);
    printf("%-6s", "type");
    for (int l = 0; l < 3; l++)
        for (int t = 1; t <= o.threads; t++)
            if (lv[l]) printf("  %6s %dt", lv[l]->name, t);
    printf("\n");
    for (size_t i = 0; i < ARRAY_LEN(all_types); i++) {
        tt_type t = all_types[i];
        if (!o.types[t]) continue;
        size_t rb = tt_row_size(t, N_ELEM);
        uint8_t *w = xalloc(rb * (size_t)o.rows);
        fill_matrix(t, w, o.rows);
        printf("%-6s", tt_name(t));
        for (int l = 0; l < 3; l++) {
            if (!lv[l]) continue;
            for (int th = 1; th <= o.threads; th++) {
                // The reference gemm is a loop of scalar dot products: a smaller block.
                double g = l == 0 ? bench_gemm(lv[l], t, w, MIN(o.rows, 64), MIN(o.cols, 64), th, 1)
                                  : bench_gemm(lv[l], t, w, o.rows, o.cols, th, 1000);
                printf("  %9.1f", g);
                fflush(stdout);
            }
        }
        printf("\n");
        mem_free_aligned(w);
    }
    return 0;
}
