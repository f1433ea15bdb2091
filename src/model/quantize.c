// quantize.c — recipes, parallel row conversion, random-weight models.
#include "model/quantize.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "model/gguf.h"
#include "tensor/pool.h"

// --- recipes ----------------------------------------------------------------------

typedef struct recipe {
    const char *name;
    uint32_t gguf;  // llama.cpp's file type number
    tt_type base;
    tt_type more;   // attn_v / ffn_down in the layers use_more_bits picks (base: no mix)
} recipe;

static const recipe recipes[QZ_FTYPE_COUNT] = {
    [QZ_F32] = {"f32", 0, TT_F32, TT_F32},
    [QZ_F16] = {"f16", 1, TT_F16, TT_F16},
    [QZ_BF16] = {"bf16", 32, TT_BF16, TT_BF16},
    [QZ_Q4_0] = {"q4_0", 2, TT_Q4_0, TT_Q4_0},
    [QZ_Q4_1] = {"q4_1", 3, TT_Q4_1, TT_Q4_1},
    [QZ_Q5_0] = {"q5_0", 8, TT_Q5_0, TT_Q5_0},
    [QZ_Q5_1] = {"q5_1", 9, TT_Q5_1, TT_Q5_1},
    [QZ_Q8_0] = {"q8_0", 7, TT_Q8_0, TT_Q8_0},
    [QZ_Q2_K] = {"q2_k", 10, TT_Q2_K, TT_Q3_K},
    [QZ_Q3_K_M] = {"q3_k_m", 12, TT_Q3_K, TT_Q4_K},
    [QZ_Q4_K_S] = {"q4_k_s", 14, TT_Q4_K, TT_Q5_K},
    [QZ_Q4_K_M] = {"q4_k_m", 15, TT_Q4_K, TT_Q6_K},
    [QZ_Q5_K_S] = {"q5_k_s", 16, TT_Q5_K, TT_Q6_K},
    [QZ_Q5_K_M] = {"q5_k_m", 17, TT_Q5_K, TT_Q6_K},
    [QZ_Q6_K] = {"q6_k", 18, TT_Q6_K, TT_Q6_K},
};

bool qz_ftype_from_name(const char *name, qz_ftype *out) {
    for (int i = 0; i < QZ_FTYPE_COUNT; i++) {
        if (strcasecmp(recipes[i].name, name) == 0) {
            *out = (qz_ftype)i;
            return true;
        }
    }
    return false;
}

const char *qz_ftype_name(qz_ftype ft) { return recipes[ft].name; }
uint32_t qz_ftype_gguf(qz_ftype ft) { return recipes[ft].gguf; }

const char *qz_ftype_list(void) {
    return "f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_k, q3_k_m, q4_k_s, q4_k_m, q5_k_s, q5_k_m, q6_k";
}

// llama.cpp's rule for which layers of a mix get more bits.
static bool use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

// A type that fits a row of ne0 elements: K-quants fall back to 32-blocks of
// similar size, 32-blocks to F16.
static tt_type fit(tt_type t, int64_t ne0) {
    if (ne0 % tt_get(t)->blck == 0) return t;
    switch (t) {
    case TT_Q2_K: case TT_Q3_K: t = TT_Q4_0; break;
    case TT_Q4_K: t = TT_Q5_0; break;
    case TT_Q5_K: t = TT_Q5_1; break;
    case TT_Q6_K: t = TT_Q8_0; break;
    default: break;
    }
    return ne0 % tt_get(t)->blck == 0 ? t : TT_F16;
}

tt_type qz_tensor_type(qz_ftype ft, const char *name, int n_dims, const int64_t *ne, int n_layer,
                       bool tied) {
    const recipe *r = &recipes[ft];
    int64_t rows = 1;
    for (int d = 1; d < n_dims; d++) rows *= ne[d];
    if (n_dims < 2 || rows == 1) return TT_F32;
    bool quantized = tt_get(r->base)->quantized;
    tt_type t = r->base;
    bool is_output = strcmp(name, "output.weight") == 0 || (tied && strcmp(name, "token_embd.weight") == 0);
    if (quantized && is_output && r->base != TT_Q8_0) {
        t = TT_Q6_K;
    } else if (r->more != r->base && (ends_with(name, ".attn_v.weight") || ends_with(name, ".ffn_down.weight"))) {
        int layer = 0;
        sscanf(name, "blk.%d.", &layer);
        if (use_more_bits(layer, n_layer)) t = r->more;
    }
    return fit(t, ne[0]);
}

// --- parallel conversion ------------------------------------------------------------

typedef struct conv_job {
    const char *name;
    tt_type src_type;    // when src is set
    const void *src;     // source rows, or NULL to generate
    float gen_std;       // generated rows: N(0, std²), or the constant gen_const when std == 0
    float gen_const;
    uint64_t gen_seed;
    tt_type dst_type;
    void *dst;           // owned by the caller
    int64_t ne0, rows;
} conv_job;

typedef struct conv_state {
    conv_job *jobs;
    int n_jobs;
    int64_t *chunk_start; // (n_jobs + 1) first chunk of each job
    pool_counter ctr;
    float *scratch;       // (n_threads, max_ne0)
    int64_t max_ne0;
} conv_state;

#define CONV_ROWS 16

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

// A row of Gaussian values, seeded by (tensor seed, row) so the result never
// depends on which thread made it.
static void gen_row(const conv_job *j, int64_t row, float *x) {
    if (j->gen_std == 0) {
        for (int64_t i = 0; i < j->ne0; i++) x[i] = j->gen_const;
        return;
    }
    uint64_t s = mix64(j->gen_seed ^ mix64((uint64_t)row + 1));
    for (int64_t i = 0; i < j->ne0; i += 2) {
        s = mix64(s + 0x9E3779B97F4A7C15ull);
        double u1 = ((s >> 11) + 1) * (1.0 / 9007199254740993.0);
        s = mix64(s + 0x9E3779B97F4A7C15ull);
        double u2 = (s >> 11) * (1.0 / 9007199254740992.0);
        double r = sqrt(-2.0 * log(u1));
        x[i] = (float)(r * cos(6.283185307179586 * u2)) * j->gen_std;
        if (i + 1 < j->ne0) x[i + 1] = (float)(r * sin(6.283185307179586 * u2)) * j->gen_std;
    }
}

static void conv_region(void *arg, int ith, int nth) {
    (void)nth;
    conv_state *st = arg;
    float *x = st->scratch + (size_t)ith * (size_t)st->max_ne0;
    int64_t total = st->chunk_start[st->n_jobs];
    for (int64_t ch; (ch = pool_claim(&st->ctr)) < total;) {
        int lo = 0, hi = st->n_jobs - 1;
        while (lo < hi) { // the job whose chunk range holds ch
            int mid = (lo + hi + 1) / 2;
            if (st->chunk_start[mid] <= ch) lo = mid;
            else hi = mid - 1;
        }
        const conv_job *j = &st->jobs[lo];
        int64_t r0 = (ch - st->chunk_start[lo]) * CONV_ROWS, r1 = MIN(j->rows, r0 + CONV_ROWS);
        size_t src_rb = j->src ? tt_row_size(j->src_type, j->ne0) : 0, dst_rb = tt_row_size(j->dst_type, j->ne0);
        const tt_traits *dst_tr = tt_get(j->dst_type);
        for (int64_t r = r0; r < r1; r++) {
            if (j->src) tt_get(j->src_type)->to_float((const char *)j->src + (size_t)r * src_rb, x, j->ne0);
            else gen_row(j, r, x);
            dst_tr->from_float(x, (char *)j->dst + (size_t)r * dst_rb, j->ne0);
        }
    }
}

// Runs every job on n_threads threads. Destination buffers must be allocated.
static sim_status convert(conv_job *jobs, int n_jobs, int n_threads, sim_err *err) {
    conv_state st = {.jobs = jobs, .n_jobs = n_jobs};
    st.chunk_start = mem_alloc(((size_t)n_jobs + 1) * sizeof *st.chunk_start);
    if (!st.chunk_start) return err_set(err, SIM_ERR_NOMEM, "out of memory");
    int64_t total = 0;
    for (int i = 0; i < n_jobs; i++) {
        st.chunk_start[i] = total;
        total += (jobs[i].rows + CONV_ROWS - 1) / CONV_ROWS;
        st.max_ne0 = MAX(st.max_ne0, jobs[i].ne0);
    }
    st.chunk_start[n_jobs] = total;
    pool *p = NULL;
    sim_status s = pool_new(&p, n_threads, err);
    if (s == SIM_OK) {
        st.scratch = mem_alloc((size_t)n_threads * (size_t)MAX(st.max_ne0, 1) * sizeof(float));
        if (!st.scratch) s = err_set(err, SIM_ERR_NOMEM, "out of memory");
        else pool_run(p, conv_region, &st);
    }
    pool_free(p);
    mem_free(st.scratch);
    mem_free(st.chunk_start);
    return s;
}

// --- quantizing a file -------------------------------------------------------------------

static bool skip_file_type(const char *key) {
    return strcmp(key, "general.file_type") == 0 || strcmp(key, "general.quantization_version") == 0;
}

sim_status qz_quantize_file(const char *in, const char *out, qz_ftype ft, int n_threads, sim_err *err) {
    gguf_file *f;
    sim_status st = gguf_open(&f, in, err);
    if (st) return st;
    gguf_writer *w = gguf_writer_new();
    conv_job *jobs = mem_calloc((size_t)(f->n_tensors ? f->n_tensors : 1), sizeof *jobs);
    int n_jobs = 0;
    if (!w || !jobs) {
        st = err_set(err, SIM_ERR_NOMEM, "out of memory");
        goto done;
    }
    char arch[32] = "llama", key[64];
    gguf_get_str(f, "general.architecture", arch, sizeof arch);
    snprintf(key, sizeof key, "%s.block_count", arch);
    uint32_t n_layer = 0;
    gguf_get_u32(f, key, &n_layer);
    bool tied = gguf_find_tensor(f, "output.weight") == NULL;
    if ((st = gguf_writer_copy_kv(w, f, skip_file_type)) || (st = gguf_writer_set_u32(w, "general.quantization_version", 2)) ||
        (st = gguf_writer_set_u32(w, "general.file_type", qz_ftype_gguf(ft)))) {
        st = err_set(err, st, "out of memory");
        goto done;
    }
    for (int64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        tt_type dt = qz_tensor_type(ft, t->name, t->n_dims, t->ne, (int)n_layer, tied);
        const void *data = t->data;
        if (dt != t->type) {
            conv_job *j = &jobs[n_jobs++];
            j->name = t->name;
            j->src_type = t->type;
            j->src = t->data;
            j->dst_type = dt;
            j->ne0 = t->ne[0];
            j->rows = t->ne[1] * t->ne[2] * t->ne[3];
            if (!(j->dst = mem_alloc(tt_row_size(dt, j->ne0) * (size_t)j->rows))) {
                st = err_set(err, SIM_ERR_NOMEM, "%s: out of memory for tensor '%s'", out, t->name);
                goto done;
            }
            data = j->dst;
        }
        if ((st = gguf_writer_add_tensor(w, t->name, dt, t->n_dims, t->ne, data, err))) goto done;
    }
    if ((st = convert(jobs, n_jobs, n_threads, err))) goto done;
    st = gguf_writer_write(w, out, err);
done:
    for (int i = 0; i < n_jobs; i++) mem_free(jobs[i].dst);
    mem_free(jobs);
    gguf_writer_free(w);
    gguf_close(f);
    return st;
}

// --- random-weight models -------------------------------------------------------------------

qz_synth_params qz_synth_default(void) {
    return (qz_synth_params){.arch = "llama", .n_vocab = 512, .n_embd = 64, .n_layer = 2, .n_head = 4,
                             .n_head_kv = 2, .n_ff = 192, .n_ctx_train = 2048, .rope_base = 10000.0f,
                             .tied = false, .ftype = QZ_F32, .seed = 1, .n_threads = 1};
}

// A SentencePiece vocabulary: <unk> <s> </s>, the 256 byte tokens, then
// pieces built from letters ("▁a", "b", "▁ab", ...) with falling scores.
static sim_status synth_vocab(gguf_writer *w, int n_vocab, sim_err *err) {
    if (n_vocab < 259 + 27) return err_set(err, SIM_ERR_ARG, "a synthetic vocabulary needs at least 286 tokens");
    char **pieces = mem_calloc((size_t)n_vocab, sizeof *pieces);
    float *scores = mem_alloc((size_t)n_vocab * sizeof(float));
    int32_t *types = mem_alloc((size_t)n_vocab * sizeof(int32_t));
    sim_status st = SIM_OK;
    if (!pieces || !scores || !types) {
        st = err_set(err, SIM_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < n_vocab && st == SIM_OK; i++) {
        char buf[64];
        if (i == 0) snprintf(buf, sizeof buf, "<unk>");
        else if (i == 1) snprintf(buf, sizeof buf, "<s>");
        else if (i == 2) snprintf(buf, sizeof buf, "</s>");
        else if (i < 259) snprintf(buf, sizeof buf, "<0x%02X>", i - 3);
        else {
            // Piece k: "▁" for k == 0, then letters spelling k in base 26, with a
            // leading "▁" on odd k (so words and word pieces both exist).
            int k = i - 259, len = 0;
            char word[32];
            for (int v = k / 2 + 1; v > 0; v = (v - 1) / 26) word[len++] = (char)('a' + (v - 1) % 26);
            word[len] = 0;
            snprintf(buf, sizeof buf, "%s%s", (k & 1) || k == 0 ? "\xE2\x96\x81" : "", k == 0 ? "" : word);
        }
        pieces[i] = mem_strdup(buf);
        if (!pieces[i]) st = err_set(err, SIM_ERR_NOMEM, "out of memory");
        scores[i] = i < 259 ? 0.0f : -(float)(i - 259);
        types[i] = i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1;
    }
    if (st == SIM_OK &&
        (gguf_writer_set_str(w, "tokenizer.ggml.model", "llama") ||
         gguf_writer_set_str_arr(w, "tokenizer.ggml.tokens", (const char *const *)pieces, (uint64_t)n_vocab) ||
         gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_F32, scores, (uint64_t)n_vocab) ||
         gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_I32, types, (uint64_t)n_vocab) ||
         gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1) || gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2) ||
         gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0) ||
         gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true)))
        st = err_set(err, SIM_ERR_NOMEM, "out of memory");
done:
    if (pieces)
        for (int i = 0; i < n_vocab; i++) mem_free(pieces[i]);
    mem_free(pieces);
    mem_free(scores);
    mem_free(types);
    return st;
}

static bool not_tokenizer(const char *key) { return strncmp(key, "tokenizer.", 10) != 0; }

sim_status qz_synth(const char *path, const qz_synth_params *p, sim_err *err) {
    if (strcmp(p->arch, "llama") != 0 && strcmp(p->arch, "qwen2") != 0)
        return err_set(err, SIM_ERR_ARG, "synth: unknown architecture '%s' (llama, qwen2)", p->arch);
    if (p->n_embd < 2 || p->n_layer < 1 || p->n_head < 1 || p->n_head_kv < 1 || p->n_ff < 1 || p->n_vocab < 1 ||
        p->n_embd % p->n_head || p->n_head % p->n_head_kv || (p->n_embd / p->n_head) % 2)
        return err_set(err, SIM_ERR_ARG, "synth: inconsistent shape (dim %d, heads %d/%d, ffn %d)", p->n_embd, p->n_head, p->n_head_kv, p->n_ff);
    gguf_writer *w = gguf_writer_new();
    gguf_file *vf = NULL;
    int max_tensors = 3 + 12 * p->n_layer;
    conv_job *jobs = mem_calloc((size_t)max_tensors, sizeof *jobs);
    int n_jobs = 0;
    sim_status st = SIM_OK;
    if (!w || !jobs) {
        st = err_set(err, SIM_ERR_NOMEM, "out of memory");
        goto done;
    }
    int n_vocab = p->n_vocab;
    if (p->vocab_from) {
        if ((st = gguf_open(&vf, p->vocab_from, err))) goto done;
        const gguf_value *toks;
        int64_t n = gguf_get_arr(vf, "tokenizer.ggml.tokens", GGUF_STRING, &toks);
        if (n < 1) {
            st = err_set(err, SIM_ERR_FORMAT, "%s: no tokenizer.ggml.tokens", p->vocab_from);
            goto done;
        }
        n_vocab = (int)n;
        if ((st = gguf_writer_copy_kv(w, vf, not_tokenizer))) {
            st = err_set(err, st, "out of memory");
            goto done;
        }
        for (int64_t i = 0; i < vf->n_kv; i++)
            if (!not_tokenizer(vf->kv[i].key) && gguf_writer_set_value(w, vf->kv[i].key, &vf->kv[i].v)) {
                st = err_set(err, SIM_ERR_NOMEM, "out of memory");
                goto done;
            }
    } else if ((st = synth_vocab(w, n_vocab, err))) {
        goto done;
    }
    char key[96], name[64];
    const char *a = p->arch;
#define SETU(k, v) (snprintf(key, sizeof key, "%s.%s", a, k), gguf_writer_set_u32(w, key, (uint32_t)(v)))
    int hd = p->n_embd / p->n_head;
    if (gguf_writer_set_str(w, "general.architecture", a) || gguf_writer_set_str(w, "general.name", "synthetic random weights") ||
        gguf_writer_set_u32(w, "general.file_type", qz_ftype_gguf(p->ftype)) ||
        gguf_writer_set_u32(w, "general.quantization_version", 2) || SETU("context_length", p->n_ctx_train) ||
        SETU("embedding_length", p->n_embd) || SETU("block_count", p->n_layer) || SETU("feed_forward_length", p->n_ff) ||
        SETU("attention.head_count", p->n_head) || SETU("attention.head_count_kv", p->n_head_kv) ||
        SETU("rope.dimension_count", hd) ||
        (snprintf(key, sizeof key, "%s.rope.freq_base", a), gguf_writer_set_f32(w, key, p->rope_base)) ||
        (snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", a), gguf_writer_set_f32(w, key, 1e-5f))) {
        st = err_set(err, SIM_ERR_NOMEM, "out of memory");
        goto done;
    }
#undef SETU
    // Tensors in the usual order; weights ~ N(0, 0.02²), norms 1, biases ~ N(0, 0.02²).
    int q_dim = p->n_embd, kv_dim = p->n_head_kv * hd;
    struct spec { const char *suffix; int64_t ne0, ne1; bool norm, bias; } layer_specs[] = {
        {"attn_norm.weight", p->n_embd, 1, true, false},  {"attn_q.weight", p->n_embd, q_dim, false, false},
        {"attn_k.weight", p->n_embd, kv_dim, false, false}, {"attn_v.weight", p->n_embd, kv_dim, false, false},
        {"attn_q.bias", q_dim, 1, false, true},            {"attn_k.bias", kv_dim, 1, false, true},
        {"attn_v.bias", kv_dim, 1, false, true},           {"attn_output.weight", q_dim, p->n_embd, false, false},
        {"ffn_norm.weight", p->n_embd, 1, true, false},    {"ffn_gate.weight", p->n_embd, p->n_ff, false, false},
        {"ffn_up.weight", p->n_embd, p->n_ff, false, false}, {"ffn_down.weight", p->n_ff, p->n_embd, false, false},
    };
    bool qwen = strcmp(a, "qwen2") == 0;
    for (int l = -1; l <= p->n_layer; l++) {
        int n_specs = l < 0 || l == p->n_layer ? 1 : (int)ARRAY_LEN(layer_specs);
        for (int s = 0; s < n_specs; s++) {
            struct spec sp;
            if (l < 0) sp = (struct spec){"token_embd.weight", p->n_embd, n_vocab, false, false};
            else if (l == p->n_layer) sp = (struct spec){"output_norm.weight", p->n_embd, 1, true, false};
            else sp = layer_specs[s];
            if (sp.bias && !qwen) continue;
            if (l >= 0 && l < p->n_layer) snprintf(name, sizeof name, "blk.%d.%s", l, sp.suffix);
            else snprintf(name, sizeof name, "%s", sp.suffix);
            int64_t ne[2] = {sp.ne0, sp.ne1};
            int nd = sp.ne1 > 1 ? 2 : 1;
            conv_job *j = &jobs[n_jobs];
            j->dst_type = qz_tensor_type(p->ftype, name, nd, ne, p->n_layer, p->tied);
            j->ne0 = sp.ne0;
            j->rows = sp.ne1;
            j->gen_std = sp.norm ? 0.0f : 0.02f;
            j->gen_const = 1.0f;
            j->gen_seed = mix64(p->seed * 1000003u + (uint64_t)n_jobs);
            if (!(j->dst = mem_alloc(tt_row_size(j->dst_type, j->ne0) * (size_t)j->rows))) {
                st = err_set(err, SIM_ERR_NOMEM, "out of memory for tensor '%s'", name);
                goto done;
            }
            n_jobs++;
            if ((st = gguf_writer_add_tensor(w, name, j->dst_type, nd, ne, j->dst, err))) goto done;
        }
        if (l == p->n_layer && !p->tied) {
            int64_t ne[2] = {p->n_embd, n_vocab};
            conv_job *j = &jobs[n_jobs];
            j->dst_type = qz_tensor_type(p->ftype, "output.weight", 2, ne, p->n_layer, false);
            j->ne0 = p->n_embd;
            j->rows = n_vocab;
            j->gen_std = 0.02f;
            j->gen_seed = mix64(p->seed * 1000003u + (uint64_t)n_jobs);
            if (!(j->dst = mem_alloc(tt_row_size(j->dst_type, j->ne0) * (size_t)j->rows))) {
                st = err_set(err, SIM_ERR_NOMEM, "out of memory for tensor 'output.weight'");
                goto done;
            }
            n_jobs++;
            if ((st = gguf_writer_add_tensor(w, "output.weight", j->dst_type, 2, ne, j->dst, err))) goto done;
        }
    }
    if ((st = convert(jobs, n_jobs, p->n_threads > 0 ? p->n_threads : pool_cpu_count(), err))) goto done;
    st = gguf_writer_write(w, path, err);
done:
    for (int i = 0; i < n_jobs; i++) mem_free(jobs[i].dst);
    mem_free(jobs);
    gguf_writer_free(w);
    gguf_close(vf);
    return st;
}
