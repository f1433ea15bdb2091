// run.c — `simularity run`: stream a continuation of a prompt to stdout.
//
// The prompt goes through a session (src/infer/session.h): with
// --prompt-cache FILE its KV state is loaded when the file matches and saved
// after the prompt, so a second run with the same prompt decodes only its last
// token. Context shifting is on by default, so generation may run past the
// context size. --heal rolls back the prompt's last token(s) and constrains
// the continuation to start with their text; --grammar-file / --json-schema
// constrain the whole output; --parallel N writes N continuations that share
// the prompt's cells, one batched decode per step.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/file.h"
#include "cli/cli.h"
#include "infer/grammar.h"
#include "infer/heal.h"
#include "infer/jsonschema.h"
#include "infer/sample.h"
#include "infer/session.h"

#define MAX_PARALLEL 16

// What constrains one sequence's tokens: healing first, then the grammar.
typedef struct constraint {
    const heal_index *hix;
    heal_state heal;
    gram_state *gram; // NULL without a grammar
    const gram_vocab *gv;
} constraint;

static sim_status constrain(void *ctx, smp_cand *cand, int n, sim_err *err) {
    constraint *c = ctx;
    if (c->hix) heal_filter(c->hix, &c->heal, cand, n);
    return c->gram ? gram_filter(c->gram, c->gv, cand, (size_t)n, err) : SIM_OK;
}

typedef struct run_state {
    const model *m;
    constraint cons[MAX_PARALLEL];
    int n_seq;
    int n_probs;
    smp_ctx **smps;
    bool stream;
} run_state;

static sim_status on_token(void *ud, int seq, int32_t tok, sim_err *err) {
    run_state *rs = ud;
    constraint *c = &rs->cons[seq];
    if (c->hix) heal_accept(c->hix, &c->heal, tok);
    if (rs->n_probs > 0) {
        smp_cand top[64];
        float p;
        int n = smp_last_probs(rs->smps[seq], top, MIN(rs->n_probs, 64), &p);
        size_t len;
        const char *t = tok_token_text(rs->m->vocab, tok, true, &len);
        fprintf(stderr, "[%d] %d '%.*s' p=%.4f |", seq, tok, (int)len, t, p);
        for (int i = 0; i < n; i++) {
            t = tok_token_text(rs->m->vocab, top[i].id, true, &len);
            fprintf(stderr, " '%.*s' %.4f", (int)len, t, top[i].p);
        }
        fputc('\n', stderr);
    }
    if (c->gram && !tok_is_eog(rs->m->vocab, tok)) return gram_accept_token(c->gram, c->gv, tok, err);
    return SIM_OK;
}

static bool on_text(void *ud, int seq, const char *text, size_t len) {
    run_state *rs = ud;
    (void)seq;
    if (rs->stream) {
        fwrite(text, 1, len, stdout);
        fflush(stdout);
    }
    return true;
}

// "15043+1.5", "15043-inf": a token id, a sign and a number.
static bool parse_bias(const char *s, smp_bias *b) {
    char *end;
    long id = strtol(s, &end, 10);
    if (end == s || (*end != '+' && *end != '-') || id < 0 || id > 0x7FFFFFFF) return false;
    char sign = *end++;
    float v;
    if (strcmp(end, "inf") == 0) v = INFINITY;
    else {
        char *e2;
        v = strtof(end, &e2);
        if (e2 == end || *e2) return false;
    }
    b->token = (int32_t)id;
    b->bias = sign == '-' ? -v : v;
    return true;
}

static const char *stop_message(sess_stop r) {
    switch (r) {
    case SESS_STOP_LIMIT: return "the token limit was reached";
    case SESS_STOP_EOG: return "the model ended the text";
    case SESS_STOP_STRING: return "a stop string was generated";
    case SESS_STOP_ABORTED: return "stopped";
    case SESS_STOP_FULL: return "the context is full (raise -c, or drop --no-context-shift)";
    }
    return "?";
}

// Reads a grammar file or converts a JSON Schema file; NULL (message printed) on error.
static gram_grammar *load_grammar(const char *grammar_file, const char *schema_file) {
    const char *path = grammar_file ? grammar_file : schema_file;
    char *text, *gbnf = NULL;
    size_t len;
    sim_err err;
    if (file_read_all(path, (size_t)1 << 24, &text, &len, &err) != SIM_OK) {
        cli_fail("%s", err.msg);
        return NULL;
    }
    gram_grammar *g = NULL;
    if (schema_file && jsch_to_gbnf(text, len, &gbnf, &err) != SIM_OK) {
        cli_fail("%s: %s", path, err.msg);
    } else if (gram_parse(&g, gbnf ? gbnf : text, gbnf ? strlen(gbnf) : len, &err) != SIM_OK) {
        cli_fail("%s: %s", path, err.msg);
        g = NULL;
    }
    mem_free(gbnf);
    mem_free(text);
    return g;
}

int cmd_run(int argc, char **argv) {
    const char *model_path = NULL, *text = NULL, *file = NULL, *kv_type = "f16", *seed_str = NULL;
    const char *prompt_cache = NULL, *heal_name = "off", *grammar_file = NULL, *schema_file = NULL;
    const char *samplers = NULL, *scaling_name = NULL;
    int n_predict = -1, n_threads = 0, n_ctx = 0, n_batch = 512, n_keep = -1, sinks = 0, parallel = 1, n_probs = 0;
    bool no_shift = false, ignore_eos = false;
    cli_list stops = {0}, biases = {0}, breakers = {0};
    model_params mp = {.yarn_ext_factor = -1};
    float rope_scale = 0;
    smp_params sp = smp_default_params();
    cli_opt opts[] = {
        {"-m|--model", OPT_STR, &model_path, "model file (GGUF)"},
        {"-p|--prompt", OPT_STR, &text, "prompt text"},
        {"-f|--file", OPT_STR, &file, "read the prompt from a file"},
        {"-n|--n-predict", OPT_INT, &n_predict, "tokens to generate (-1: until the end of text)"},
        {"-t|--threads", OPT_INT, &n_threads, "threads (0: all CPUs)"},
        {"-c|--ctx-size", OPT_INT, &n_ctx, "context size (0: the model's, at most 4096)"},
        {"-b|--batch-size", OPT_INT, &n_batch, "prompt tokens per batch [512]"},
        {"--kv-type", OPT_STR, &kv_type, "KV cache type: f16 or f32 [f16]"},
        {"--stop", OPT_LIST, &stops, "stop at this text (repeatable); it is not printed"},
        {"--ignore-eos", OPT_FLAG, &ignore_eos, "never end the text (ban end-of-generation tokens)"},
        {"--prompt-cache", OPT_STR, &prompt_cache, "load the prompt's KV state from FILE if it matches; save it after the prompt"},
        {"--no-context-shift", OPT_FLAG, &no_shift, "end generation when the context is full instead of shifting"},
        {"--keep", OPT_INT, &n_keep, "tokens a context shift keeps at the start (-1: BOS)"},
        {"--sinks", OPT_INT, &sinks, "keep this many first tokens as attention sinks (StreamingLLM)"},
        {"--heal", OPT_STR, &heal_name, "token healing: off, last, dynamic [off]"},
        {"--grammar-file", OPT_STR, &grammar_file, "constrain the output with a GBNF grammar"},
        {"--json-schema", OPT_STR, &schema_file, "constrain the output to JSON matching this schema file"},
        {"--parallel", OPT_INT, &parallel, "write N continuations sharing the prompt [1]"},
        {"--seed", OPT_STR, &seed_str, "random seed [random]"},
        {"--temp", OPT_FLOAT, &sp.temp, "temperature (0: greedy) [0.8]"},
        {"--dynatemp-range", OPT_FLOAT, &sp.dynatemp_range, "dynamic temperature range [0: off]"},
        {"--dynatemp-exp", OPT_FLOAT, &sp.dynatemp_exponent, "dynamic temperature exponent [1]"},
        {"--top-k", OPT_INT, &sp.top_k, "keep the k most likely tokens (0: off) [40]"},
        {"--top-p", OPT_FLOAT, &sp.top_p, "nucleus: smallest set with this probability (1: off) [0.95]"},
        {"--min-p", OPT_FLOAT, &sp.min_p, "drop tokens below this fraction of the best one [0.05]"},
        {"--typical", OPT_FLOAT, &sp.typical_p, "locally typical sampling (1: off)"},
        {"--top-n-sigma", OPT_FLOAT, &sp.top_n_sigma, "keep logits within n standard deviations of the max (<= 0: off)"},
        {"--xtc-probability", OPT_FLOAT, &sp.xtc_probability, "XTC: chance to exclude the top choices [0: off]"},
        {"--xtc-threshold", OPT_FLOAT, &sp.xtc_threshold, "XTC: probability threshold [0.1]"},
        {"--min-keep", OPT_INT, &sp.min_keep, "truncation samplers keep at least this many"},
        {"--repeat-penalty", OPT_FLOAT, &sp.repeat_penalty, "penalty for recent tokens (1: off)"},
        {"--repeat-last-n", OPT_INT, &sp.repeat_last_n, "window of the penalties (-1: the context)"},
        {"--frequency-penalty", OPT_FLOAT, &sp.frequency_penalty, "subtract count × this from a token's logit"},
        {"--presence-penalty", OPT_FLOAT, &sp.presence_penalty, "subtract this from seen tokens' logits"},
        {"--dry-multiplier", OPT_FLOAT, &sp.dry_multiplier, "DRY repetition penalty multiplier [0: off]"},
        {"--dry-base", OPT_FLOAT, &sp.dry_base, "DRY base [1.75]"},
        {"--dry-allowed-length", OPT_INT, &sp.dry_allowed_length, "DRY: repeats this long are free [2]"},
        {"--dry-penalty-last-n", OPT_INT, &sp.dry_penalty_last_n, "DRY window (-1: the context)"},
        {"--dry-sequence-breaker", OPT_LIST, &breakers, "DRY sequence breaker (repeatable; replaces the defaults)"},
        {"--mirostat", OPT_INT, &sp.mirostat, "mirostat version: 0 off, 1, 2"},
        {"--mirostat-lr", OPT_FLOAT, &sp.mirostat_eta, "mirostat learning rate eta [0.1]"},
        {"--mirostat-ent", OPT_FLOAT, &sp.mirostat_tau, "mirostat target entropy tau [5]"},
        {"--logit-bias", OPT_LIST, &biases, "TOKEN+BIAS or TOKEN-BIAS (-inf bans), repeatable"},
        {"--samplers", OPT_STR, &samplers, "sampler order, e.g. penalties;dry;top_k;typ_p;top_p;min_p;xtc;temperature"},
        {"--n-probs", OPT_INT, &n_probs, "print each token's probability and the top N to stderr"},
        {"--rope-scaling", OPT_STR, &scaling_name, "none, linear, ntk, dynamic, yarn [from the model]"},
        {"--rope-freq-base", OPT_FLOAT, &mp.rope_freq_base, "RoPE base frequency [from the model]"},
        {"--rope-freq-scale", OPT_FLOAT, &mp.rope_freq_scale, "RoPE frequency scale (1/factor)"},
        {"--rope-scale", OPT_FLOAT, &rope_scale, "RoPE context scaling factor (sets the frequency scale to 1/N)"},
        {"--yarn-orig-ctx", OPT_INT, &mp.yarn_orig_ctx, "YaRN: the model's original context [from the model]"},
        {"--yarn-ext-factor", OPT_FLOAT, &mp.yarn_ext_factor, "YaRN: extrapolation mix (0: off) [1]"},
        {"--yarn-attn-factor", OPT_FLOAT, &mp.yarn_attn_factor, "YaRN: attention magnitude factor [1]"},
        {"--yarn-beta-fast", OPT_FLOAT, &mp.yarn_beta_fast, "YaRN: low correction dimension [32]"},
        {"--yarn-beta-slow", OPT_FLOAT, &mp.yarn_beta_slow, "YaRN: high correction dimension [1]"},
    };
    int n_pos, rc;
    if ((rc = cli_parse("run -m MODEL (-p TEXT | -f FILE) [options]", argc, argv, opts, ARRAY_LEN(opts), NULL, 0, &n_pos)))
        return rc;
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (uint64_t)clock();
    if (seed_str) {
        char *end;
        seed = strtoull(seed_str, &end, 0);
        if (*end || *seed_str == '-' || !*seed_str) return cli_fail("run: --seed '%s' is not a non-negative integer", seed_str);
    }
    sp.seed = seed;
    tt_type kvt;
    if (!cli_kv_type(kv_type, &kvt)) return cli_fail("run: --kv-type must be f16 or f32");
    heal_mode heal;
    if (!heal_parse_mode(heal_name, &heal)) return cli_fail("run: --heal must be off, last or dynamic");
    if (n_threads < 0 || n_ctx < 0 || n_batch < 1) return cli_fail("run: threads, context and batch sizes must be positive");
    if (parallel < 1 || parallel > MAX_PARALLEL) return cli_fail("run: --parallel must be between 1 and %d", MAX_PARALLEL);
    if (sinks < 0 || n_probs < 0) return cli_fail("run: --sinks and --n-probs must not be negative");
    if (grammar_file && schema_file) return cli_fail("run: give --grammar-file or --json-schema, not both");
    if (scaling_name) {
        if (!model_rope_scaling_from_name(scaling_name, &mp.rope_scaling))
            return cli_fail("run: --rope-scaling must be none, linear, ntk, dynamic or yarn");
        mp.has_rope_scaling = true;
    }
    if (rope_scale > 0) mp.rope_freq_scale = 1.0f / rope_scale;
    sim_err err;
    if (samplers && smp_parse_order(&sp, samplers, &err) != SIM_OK) return cli_fail("run: --samplers: %s", err.msg);
    smp_bias bias[CLI_LIST_MAX + 8];
    int n_bias = 0;
    for (int i = 0; i < biases.n; i++)
        if (!parse_bias(biases.items[i], &bias[n_bias++]))
            return cli_fail("run: --logit-bias '%s' is not TOKEN+BIAS or TOKEN-BIAS", biases.items[i]);
    if (breakers.n) {
        sp.dry_breakers = breakers.items;
        sp.n_dry_breakers = breakers.n;
    }

    cli_input in;
    if (!cli_input_open(&in, model_path, text, file, &mp, true)) return 1;
    model *m = in.m;
    int rcode = 1, n_prompt = in.n;
    fwd_ctx *c = NULL;
    sess *ss[MAX_PARALLEL] = {0};
    smp_ctx *smps[MAX_PARALLEL] = {0};
    sess_result res[MAX_PARALLEL] = {0};
    heal_index *hix = NULL;
    gram_grammar *gram = NULL;
    gram_vocab *gv = NULL;
    run_state rs = {.m = m, .n_seq = parallel, .n_probs = n_probs, .smps = smps, .stream = parallel == 1};
    if (n_prompt == 0) {
        cli_fail("run: the prompt is empty and the model adds no BOS token");
        goto done;
    }
    if (ignore_eos) {
        const int32_t *eog;
        int n_eog = tok_eog_ids(m->vocab, &eog);
        for (int i = 0; i < n_eog && n_bias < (int)ARRAY_LEN(bias); i++) bias[n_bias++] = (smp_bias){.token = eog[i], .bias = -INFINITY};
    }
    sp.logit_bias = bias;
    sp.n_logit_bias = n_bias;
    sp.vocab = m->vocab;
    if (heal != HEAL_OFF) {
        if (heal_index_new(&hix, m->vocab, &err) != SIM_OK) {
            cli_fail("%s", err.msg);
            goto done;
        }
        heal_state hs;
        n_prompt = heal_rollback(hix, in.toks, in.n, heal, &hs);
        for (int i = 0; i < parallel; i++) rs.cons[i].heal = hs;
    }
    if (grammar_file || schema_file) {
        if (!(gram = load_grammar(grammar_file, schema_file))) goto done;
        if (gram_vocab_new(&gv, m->vocab, &err) != SIM_OK) {
            cli_fail("%s", err.msg);
            goto done;
        }
    }

    fwd_params fp = fwd_default_params();
    fp.n_ctx = n_ctx;
    fp.n_batch = n_batch;
    fp.n_outputs = parallel;
    fp.n_threads = n_threads;
    fp.kv_type = kvt;
    if (fwd_new(&c, m, &fp, &err) != SIM_OK) {
        cli_fail("%s", err.msg);
        goto done;
    }
    sess_params sps = sess_default_params();
    sps.context_shift = !no_shift;
    sps.n_keep = sinks > 0 ? sinks : n_keep;
    if (sess_new(&ss[0], c, &sps, &err) != SIM_OK) {
        cli_fail("%s", err.msg);
        goto done;
    }
    if (prompt_cache && access(prompt_cache, F_OK) == 0 && sess_load(ss[0], prompt_cache, &err) != SIM_OK)
        fprintf(stderr, "simularity: prompt cache not used: %s\n", err.msg);
    uint64_t t0 = time_ns();
    sess_stats stats;
    if (sess_set_prompt(ss[0], in.toks, n_prompt, &stats, &err) != SIM_OK) {
        cli_fail("run: %s", err.msg);
        goto done;
    }
    uint64_t t1 = time_ns();
    if (prompt_cache && stats.n_decoded > 1 && sess_save(ss[0], prompt_cache, &err) != SIM_OK)
        fprintf(stderr, "simularity: prompt cache not saved: %s\n", err.msg);
    for (int i = 0; i < parallel; i++) {
        if (i > 0 && sess_fork(ss[0], i, &ss[i], &err) != SIM_OK) {
            cli_fail("%s", err.msg);
            goto done;
        }
        smp_params spi = sp;
        spi.seed = seed + (uint64_t)i;
        if (smp_new(&smps[i], m->hp.n_vocab, &spi, &err) != SIM_OK) {
            cli_fail("run: %s", err.msg);
            goto done;
        }
        for (int k = 0; k < n_prompt; k++) smp_accept(smps[i], in.toks[k]);
        constraint *cs = &rs.cons[i];
        if (hix && heal_active(&cs->heal)) cs->hix = hix;
        if (gram) {
            cs->gv = gv;
            if (gram_state_new(&cs->gram, gram, &err) != SIM_OK) {
                cli_fail("%s", err.msg);
                goto done;
            }
        }
        if (cs->hix || cs->gram) smp_set_constraint(smps[i], constrain, cs);
    }
    const char **stop_list = stops.items;
    sess_gen_params gp = {.n_predict = n_predict, .stop = stop_list, .n_stop = stops.n, .on_text = on_text,
                          .on_token = on_token, .ud = &rs,
                          .skip_bytes = hix ? (size_t)rs.cons[0].heal.removed_len : 0};
    if (sess_generate_many(ss, smps, parallel, &gp, res, &err) != SIM_OK) {
        fflush(stdout);
        cli_fail("run: %s", err.msg);
        goto done;
    }
    uint64_t t2 = time_ns();
    int n_gen = 0, n_shifts = 0;
    for (int i = 0; i < parallel; i++) {
        if (parallel > 1) printf("%s--- continuation %d ---\n%s\n", i ? "\n" : "", i + 1, res[i].text);
        n_gen += res[i].n_tokens;
        n_shifts += res[i].stats.n_shifts;
    }
    fflush(stdout);
    double pp_s = (double)(t1 - t0) / 1e9, tg_s = (double)(t2 - t1) / 1e9;
    fprintf(stderr, "\n\nsimularity: %s\n", stop_message(res[0].reason));
    fprintf(stderr, "prompt:     %d tokens (%d cached, %d decoded) in %.3f s (%.2f tokens/s)\n", n_prompt, stats.n_reused,
            stats.n_decoded, pp_s, stats.n_decoded / (pp_s > 0 ? pp_s : 1e-9));
    fprintf(stderr, "generation: %d tokens in %.3f s (%.2f tokens/s)%s%d context shifts\n", n_gen, tg_s,
            n_gen / (tg_s > 0 ? tg_s : 1e-9), ", ", n_shifts + stats.n_shifts);
    fprintf(stderr, "seed %llu, %d threads, %s kernels, context %d\n", (unsigned long long)seed, fwd_n_threads(c),
            fwd_kernels(c)->name, fwd_n_ctx(c));
    rcode = 0;
done:
    for (int i = 0; i < MAX_PARALLEL; i++) {
        sess_result_free(&res[i]);
        smp_free(smps[i]);
        gram_state_free(rs.cons[i].gram);
    }
    for (int i = MAX_PARALLEL - 1; i >= 0; i--) sess_free(ss[i]);
    gram_vocab_free(gv);
    gram_free(gram);
    heal_index_free(hix);
    fwd_free(c);
    cli_input_close(&in);
    return rcode;
}
