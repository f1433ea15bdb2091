// simularity.c — the public API (include/simularity.h) over the internal
// modules: each public object wraps its internal twin, adding what the
// embedding program should not have to manage (the grammar's vocabulary
// trie, the sampler's grammar state, the logits of the last token).
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "base/base.h"
#include "infer/grammar.h"
#include "infer/jsonschema.h"
#include "infer/sample.h"
#include "infer/session.h"
#include "model/forward.h"
#include "model/model.h"

struct sim_model {
    model *m;
    pthread_mutex_t lock; // guards the lazily built grammar trie
    gram_vocab *gv;
};

struct sim_context {
    sim_model *sm;
    fwd_ctx *c;
};

struct sim_grammar {
    gram_grammar *g;
};

struct sim_sampler {
    sim_model *sm;
    smp_ctx *smp;
    smp_params params;
    smp_bias *bias; // (n_bias) owned copy
    int n_bias;
    gram_state *gram; // NULL: no grammar
};

struct sim_session {
    sim_context *sc;
    sess *s;
};

// --- models -----------------------------------------------------------------------

sim_status sim_model_load(sim_model **out, const char *path, const sim_model_params *p, sim_error *err) {
    *out = NULL;
    model_params mp = {.yarn_ext_factor = -1};
    if (p) {
        mp.vocab_only = p->vocab_only;
        mp.rope_freq_base = p->rope_freq_base;
        mp.rope_freq_scale = p->rope_freq_scale;
        mp.yarn_orig_ctx = p->yarn_orig_ctx;
        if (p->rope_scaling) {
            if (!model_rope_scaling_from_name(p->rope_scaling, &mp.rope_scaling))
                return err_set(err, SIM_ERR_ARG, "unknown RoPE scaling '%s' (none, linear, ntk, dynamic, yarn)", p->rope_scaling);
            mp.has_rope_scaling = true;
        }
    }
    sim_model *sm = mem_calloc(1, sizeof *sm);
    if (!sm) return err_set(err, SIM_ERR_NOMEM, "%s: out of memory", path);
    sim_status st = model_load(&sm->m, path, &mp, err);
    if (st) {
        mem_free(sm);
        return st;
    }
    pthread_mutex_init(&sm->lock, NULL);
    *out = sm;
    return SIM_OK;
}

void sim_model_free(sim_model *sm) {
    if (!sm) return;
    gram_vocab_free(sm->gv);
    pthread_mutex_destroy(&sm->lock);
    model_free(sm->m);
    mem_free(sm);
}

const char *sim_model_arch(const sim_model *sm) { return sm->m->hp.arch_name; }
int sim_model_n_vocab(const sim_model *sm) { return tok_n_vocab(sm->m->vocab); }
int sim_model_n_ctx_train(const sim_model *sm) { return sm->m->hp.n_ctx_train; }
uint64_t sim_model_n_params(const sim_model *sm) { return sm->m->n_params; }

int sim_tokenize(const sim_model *sm, const char *text, size_t len, bool add_special, bool parse_special,
                 int32_t *out, int cap, sim_error *err) {
    return tok_encode(sm->m->vocab, text, len, add_special, parse_special, out, cap, err);
}

int sim_detokenize(const sim_model *sm, const int32_t *ids, int n, bool special, char *buf, int cap) {
    return tok_decode(sm->m->vocab, ids, n, special ? TOK_DECODE_SPECIAL : 0, buf, cap);
}

int32_t sim_token_bos(const sim_model *sm) { return tok_bos(sm->m->vocab); }
int32_t sim_token_eos(const sim_model *sm) { return tok_eos(sm->m->vocab); }
bool sim_token_is_eog(const sim_model *sm, int32_t id) { return tok_is_eog(sm->m->vocab, id); }

// The vocabulary trie grammars filter with, built once per model on first use.
static const gram_vocab *model_gram_vocab(sim_model *sm, sim_error *err) {
    pthread_mutex_lock(&sm->lock);
    if (!sm->gv && gram_vocab_new(&sm->gv, sm->m->vocab, err) != SIM_OK) sm->gv = NULL;
    const gram_vocab *gv = sm->gv;
    pthread_mutex_unlock(&sm->lock);
    return gv;
}

// --- contexts -----------------------------------------------------------------------

sim_status sim_context_new(sim_context **out, sim_model *sm, const sim_context_params *p, sim_error *err) {
    *out = NULL;
    if (!sm->m->layers) return err_set(err, SIM_ERR_ARG, "the model was loaded for its vocabulary only");
    fwd_params fp = fwd_default_params();
    if (p) {
        if (p->n_ctx < 0 || p->n_batch < 0 || p->n_parallel < 0 || p->n_threads < 0 || p->n_parallel > KV_MAX_SEQ)
            return err_set(err, SIM_ERR_ARG, "invalid context parameters (sizes must not be negative, at most %d parallel)", KV_MAX_SEQ);
        fp.n_ctx = p->n_ctx;
        if (p->n_batch) fp.n_batch = p->n_batch;
        fp.n_outputs = MAX(1, p->n_parallel);
        fp.n_threads = p->n_threads;
        fp.kv_type = p->kv_f32 ? TT_F32 : TT_F16;
    } else {
        fp.n_outputs = 1;
    }
    sim_context *sc = mem_calloc(1, sizeof *sc);
    if (!sc) return err_set(err, SIM_ERR_NOMEM, "out of memory");
    sc->sm = sm;
    sim_status st = fwd_new(&sc->c, sm->m, &fp, err);
    if (st) {
        mem_free(sc);
        return st;
    }
    *out = sc;
    return SIM_OK;
}

void sim_context_free(sim_context *sc) {
    if (!sc) return;
    fwd_free(sc->c);
    mem_free(sc);
}

int sim_context_n_ctx(const sim_context *sc) { return fwd_n_ctx(sc->c); }
int sim_context_n_used(const sim_context *sc) { return fwd_kv(sc->c)->n_used; }

// --- grammars -----------------------------------------------------------------------

sim_status sim_grammar_parse(sim_grammar **out, const char *gbnf, size_t len, sim_error *err) {
    *out = NULL;
    sim_grammar *g = mem_calloc(1, sizeof *g);
    if (!g) return err_set(err, SIM_ERR_NOMEM, "out of memory");
    sim_status st = gram_parse(&g->g, gbnf, len, err);
    if (st) {
        mem_free(g);
        return st;
    }
    *out = g;
    return SIM_OK;
}

sim_status sim_grammar_from_json_schema(sim_grammar **out, const char *schema, size_t len, sim_error *err) {
    *out = NULL;
    char *gbnf;
    sim_status st = jsch_to_gbnf(schema, len, &gbnf, err);
    if (st) return st;
    st = sim_grammar_parse(out, gbnf, strlen(gbnf), err);
    mem_free(gbnf);
    return st;
}

void sim_grammar_free(sim_grammar *g) {
    if (!g) return;
    gram_free(g->g);
    mem_free(g);
}

// --- samplers -----------------------------------------------------------------------

sim_sampler_params sim_sampler_default_params(void) {
    smp_params d = smp_default_params();
    return (sim_sampler_params){
        .order = NULL, .temp = d.temp, .dynatemp_range = d.dynatemp_range, .dynatemp_exponent = d.dynatemp_exponent,
        .top_k = d.top_k, .top_p = d.top_p, .min_p = d.min_p, .typical_p = d.typical_p, .top_n_sigma = d.top_n_sigma,
        .xtc_probability = d.xtc_probability, .xtc_threshold = d.xtc_threshold, .min_keep = d.min_keep,
        .repeat_penalty = d.repeat_penalty, .frequency_penalty = d.frequency_penalty,
        .presence_penalty = d.presence_penalty, .repeat_last_n = d.repeat_last_n, .dry_multiplier = d.dry_multiplier,
        .dry_base = d.dry_base, .dry_allowed_length = d.dry_allowed_length, .dry_penalty_last_n = d.dry_penalty_last_n,
        .mirostat = d.mirostat, .mirostat_tau = d.mirostat_tau, .mirostat_eta = d.mirostat_eta, .seed = d.seed};
}

static sim_status grammar_constraint(void *ctx, smp_cand *cand, int n, sim_err *err) {
    sim_sampler *s = ctx;
    return gram_filter(s->gram, s->sm->gv, cand, (size_t)n, err);
}

// (Re)creates the sampler's smp_ctx from its parameters (bias included).
static sim_status rebuild(sim_sampler *s, sim_error *err) {
    smp_ctx *smp;
    s->params.logit_bias = s->bias;
    s->params.n_logit_bias = s->n_bias;
    sim_status st = smp_new(&smp, s->sm->m->hp.n_vocab ? s->sm->m->hp.n_vocab : tok_n_vocab(s->sm->m->vocab), &s->params, err);
    if (st) return st;
    smp_free(s->smp);
    s->smp = smp;
    if (s->gram) smp_set_constraint(s->smp, grammar_constraint, s);
    return SIM_OK;
}

sim_status sim_sampler_new(sim_sampler **out, const sim_model *m, const sim_sampler_params *p, sim_error *err) {
    *out = NULL;
    sim_sampler_params d = sim_sampler_default_params();
    if (!p) p = &d;
    sim_sampler *s = mem_calloc(1, sizeof *s);
    if (!s) return err_set(err, SIM_ERR_NOMEM, "out of memory");
    s->sm = (sim_model *)m;
    smp_params sp = smp_default_params();
    sp.temp = p->temp;
    sp.dynatemp_range = p->dynatemp_range;
    sp.dynatemp_exponent = p->dynatemp_exponent;
    sp.top_k = p->top_k;
    sp.top_p = p->top_p;
    sp.min_p = p->min_p;
    sp.typical_p = p->typical_p;
    sp.top_n_sigma = p->top_n_sigma;
    sp.xtc_probability = p->xtc_probability;
    sp.xtc_threshold = p->xtc_threshold;
    sp.min_keep = p->min_keep;
    sp.repeat_penalty = p->repeat_penalty;
    sp.frequency_penalty = p->frequency_penalty;
    sp.presence_penalty = p->presence_penalty;
    sp.repeat_last_n = p->repeat_last_n;
    sp.dry_multiplier = p->dry_multiplier;
    sp.dry_base = p->dry_base;
    sp.dry_allowed_length = p->dry_allowed_length;
    sp.dry_penalty_last_n = p->dry_penalty_last_n;
    sp.mirostat = p->mirostat;
    sp.mirostat_tau = p->mirostat_tau;
    sp.mirostat_eta = p->mirostat_eta;
    sp.seed = p->seed;
    sp.vocab = m->m->vocab;
    sim_status st = p->order ? smp_parse_order(&sp, p->order, err) : SIM_OK;
    s->params = sp;
    if (st == SIM_OK) st = rebuild(s, err);
    if (st) {
        mem_free(s);
        return st;
    }
    *out = s;
    return SIM_OK;
}

void sim_sampler_free(sim_sampler *s) {
    if (!s) return;
    smp_free(s->smp);
    gram_state_free(s->gram);
    mem_free(s->bias);
    mem_free(s);
}

sim_status sim_sampler_set_grammar(sim_sampler *s, const sim_grammar *g, sim_error *err) {
    gram_state *st = NULL;
    if (g) {
        sim_err local;
        if (!model_gram_vocab(s->sm, &local)) {
            if (err) *err = local;
            return local.code;
        }
        sim_status r = gram_state_new(&st, g->g, err);
        if (r) return r;
    }
    gram_state_free(s->gram);
    s->gram = st;
    smp_set_constraint(s->smp, st ? grammar_constraint : NULL, st ? s : NULL);
    return SIM_OK;
}

sim_status sim_sampler_set_logit_bias(sim_sampler *s, const int32_t *tokens, const float *bias, int n, sim_error *err) {
    if (n < 0) return err_set(err, SIM_ERR_ARG, "negative bias count");
    smp_bias *b = mem_alloc((size_t)(n ? n : 1) * sizeof *b);
    if (!b) return err_set(err, SIM_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) b[i] = (smp_bias){.token = tokens[i], .bias = bias[i]};
    smp_bias *old = s->bias;
    int old_n = s->n_bias;
    s->bias = b;
    s->n_bias = n;
    sim_status st = rebuild(s, err); // validates the tokens
    if (st) {
        s->bias = old;
        s->n_bias = old_n;
        s->params.logit_bias = old;
        s->params.n_logit_bias = old_n;
        mem_free(b);
        return st;
    }
    mem_free(old);
    return SIM_OK;
}

// Advances the grammar over a chosen token (end-of-generation ends it).
static sim_status grammar_accept(sim_sampler *s, int32_t tok, sim_err *err) {
    if (!s->gram || tok_is_eog(s->sm->m->vocab, tok)) return SIM_OK;
    return gram_accept_token(s->gram, s->sm->gv, tok, err);
}

int32_t sim_sampler_sample(sim_sampler *s, const float *logits, sim_error *err) {
    int32_t tok = smp_sample(s->smp, logits);
    if (tok == SMP_FAILED) return err_set(err, smp_last_err(s->smp)->code, "%s", smp_last_err(s->smp)->msg);
    if (tok == SMP_NO_TOKEN) return err_set(err, SIM_ERR_RANGE, "no token is allowed (bias, grammar or non-finite logits)");
    smp_accept(s->smp, tok);
    sim_status st = grammar_accept(s, tok, err);
    return st ? st : tok;
}

void sim_sampler_accept(sim_sampler *s, int32_t token) { smp_accept(s->smp, token); }

// --- sessions -------------------------------------------------------------------------

sim_status sim_session_new(sim_session **out, sim_context *c, int seq, sim_error *err) {
    *out = NULL;
    sim_session *s = mem_calloc(1, sizeof *s);
    if (!s) return err_set(err, SIM_ERR_NOMEM, "out of memory");
    s->sc = c;
    sess_params sp = sess_default_params();
    sp.seq = seq;
    sim_status st = sess_new(&s->s, c->c, &sp, err);
    if (st) {
        mem_free(s);
        return st;
    }
    *out = s;
    return SIM_OK;
}

void sim_session_free(sim_session *s) {
    if (!s) return;
    sess_free(s->s);
    mem_free(s);
}

void sim_session_set_shift(sim_session *s, bool on, int n_keep) {
    sess_set_shift(s->s, on, n_keep);
}

sim_status sim_session_set_prompt(sim_session *s, const int32_t *toks, int n, sim_prompt_stats *stats, sim_error *err) {
    sess_stats st;
    sim_status r = sess_set_prompt(s->s, toks, n, &st, err);
    if (stats) *stats = (sim_prompt_stats){.n_reused = st.n_reused, .n_decoded = st.n_decoded, .n_shifts = st.n_shifts};
    return r;
}

sim_status sim_session_push(sim_session *s, int32_t token, sim_error *err) { return sess_push(s->s, token, NULL, err); }
const float *sim_session_logits(const sim_session *s) { return sess_logits(s->s); }
int sim_session_n_tokens(const sim_session *s) { return sess_n_tokens(s->s); }
const int32_t *sim_session_tokens(const sim_session *s) { return sess_tokens(s->s); }

sim_status sim_session_fork(const sim_session *s, int dst, sim_session **out, sim_error *err) {
    *out = NULL;
    sim_session *f = mem_calloc(1, sizeof *f);
    if (!f) return err_set(err, SIM_ERR_NOMEM, "out of memory");
    f->sc = s->sc;
    sim_status st = sess_fork(s->s, dst, &f->s, err);
    if (st) {
        mem_free(f);
        return st;
    }
    *out = f;
    return SIM_OK;
}

typedef struct gen_adapter {
    const sim_generate_params *p;
    sim_sampler *smp;
} gen_adapter;

static bool adapt_text(void *ud, int seq, const char *text, size_t len) {
    (void)seq;
    gen_adapter *a = ud;
    return a->p->on_text(a->p->ud, text, len);
}

static sim_status adapt_token(void *ud, int seq, int32_t tok, sim_err *err) {
    (void)seq;
    gen_adapter *a = ud;
    return grammar_accept(a->smp, tok, err);
}

sim_status sim_session_generate(sim_session *s, sim_sampler *smp, const sim_generate_params *p, sim_generation *out,
                                sim_error *err) {
    memset(out, 0, sizeof *out);
    gen_adapter a = {.p = p, .smp = smp};
    sess_gen_params gp = {.n_predict = p->n_predict == 0 ? -1 : p->n_predict, .stop = p->stop, .n_stop = p->n_stop,
                          .on_text = p->on_text ? adapt_text : NULL, .on_token = adapt_token, .ud = &a,
                          .abort = p->abort};
    sess_result r;
    sim_status st = sess_generate(s->s, smp->smp, &gp, &r, err);
    out->text = r.text;
    out->len = r.len;
    out->n_tokens = r.n_tokens;
    out->reason = (sim_stop_reason)r.reason;
    return st;
}

void sim_generation_free(sim_generation *g) {
    mem_free(g->text);
    memset(g, 0, sizeof *g);
}

sim_status sim_session_save(const sim_session *s, const char *path, sim_error *err) { return sess_save(s->s, path, err); }
sim_status sim_session_load(sim_session *s, const char *path, sim_error *err) { return sess_load(s->s, path, err); }
