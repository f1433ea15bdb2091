// test_loom.c — the LLooM tree on a generated model (always) and on
// stories260K (when ../shared is there). The reference is independent of
// the code under test: every node's children and score are re-derived from
// logits read back with a plain fwd_decode of the node's whole path in a
// fresh context, softmax in double.
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "infer/loom.h"
#include "model/quantize.h"
#include "test.h"

static char dir[256];
static model *m;       // synthetic vocab of 320, random weights
static model *story;   // stories260K or NULL

static model *load_synth(const char *name, uint64_t seed) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s.gguf", dir, name);
    qz_synth_params p = qz_synth_default();
    p.n_vocab = 320;
    p.n_embd = 64;
    p.n_layer = 2;
    p.n_head = 4;
    p.n_head_kv = 2;
    p.n_ff = 128;
    p.seed = seed;
    sim_err err;
    model *out = NULL;
    CHECK_MSG(qz_synth(path, &p, &err) == SIM_OK, "%s", err.msg);
    CHECK_MSG(model_load(&out, path, NULL, &err) == SIM_OK, "%s", err.msg);
    return out;
}

static fwd_ctx *ctx_for(model *md, int n_ctx, int n_batch, int n_outputs) {
    fwd_params p = fwd_default_params();
    p.n_ctx = n_ctx;
    p.n_batch = n_batch;
    p.n_outputs = n_outputs;
    p.n_threads = 2;
    fwd_ctx *c = NULL;
    sim_err err;
    CHECK_MSG(fwd_new(&c, md, &p, &err) == SIM_OK, "%s", err.msg);
    return c;
}

// A root session on seq 0 holding the tokenized prompt.
static sess *root_for(fwd_ctx *c, const char *prompt, int32_t *toks, int *n_toks) {
    sim_err err;
    const model *md = fwd_model(c);
    int n = tok_encode(md->vocab, prompt, strlen(prompt), true, false, toks, 64, &err);
    CHECK(n > 0 && n <= 64);
    *n_toks = n;
    sess_params sp = sess_default_params();
    sp.context_shift = false;
    sess *s = NULL;
    CHECK(sess_new(&s, c, &sp, &err) == SIM_OK);
    CHECK_MSG(sess_set_prompt(s, toks, n, NULL, &err) == SIM_OK, "%s", err.msg);
    return s;
}

// --- the reference --------------------------------------------------------------------

// Probabilities (double) after toks[0..n), by one plain decode in a fresh context.
static void ref_probs(model *md, const int32_t *toks, int n, double *p) {
    fwd_ctx *c = ctx_for(md, 128, 128, 1);
    int32_t pos[128];
    kv_seq_mask seq[128];
    for (int i = 0; i < n; i++) pos[i] = i, seq[i] = 1;
    fwd_batch b = {.n = n, .tokens = toks, .pos = pos, .seqs = seq, .logits = NULL};
    sim_err err;
    CHECK_MSG(fwd_decode(c, &b, &err) == SIM_OK, "%s", err.msg);
    const float *l = fwd_logits(c, 0);
    int nv = md->hp.n_vocab;
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < nv; i++) mx = fmax(mx, l[i]);
    for (int i = 0; i < nv; i++) sum += p[i] = exp(l[i] - mx);
    for (int i = 0; i < nv; i++) p[i] /= sum;
    fwd_free(c);
}

// The full token list of node id: prompt, then the path.
static int node_path(const loom_result *r, int id, const int32_t *prompt, int np, int32_t *out) {
    memcpy(out, prompt, (size_t)np * sizeof *out);
    int d = id < 0 ? 0 : r->nodes[id].depth;
    for (int i = id, k = d - 1; i >= 0; i = r->nodes[i].parent, k--) out[np + k] = r->nodes[i].token;
    return np + d;
}

// Checks every expanded node (and the root) against the rule: its children
// are the most likely token plus the others with p >= cutoff × multiplier^d,
// most likely first, at most split; every child's prob and score match.
// Returns the number of nodes checked.
static int verify_tree(model *md, const loom_result *r, const loom_params *lp, const int32_t *prompt, int np) {
    int nv = md->hp.n_vocab, checked = 0;
    double *p = malloc((size_t)nv * sizeof *p);
    int32_t toks[128];
    for (int id = -1; id < r->n_nodes; id++) {
        if (id >= 0 && r->nodes[id].leaf) continue;
        int n = node_path(r, id, prompt, np, toks);
        ref_probs(md, toks, n, p);
        int d = id < 0 ? 0 : r->nodes[id].depth;
        double cutoff = lp->cutoff * pow(lp->multiplier, d);
        // Expected: rank all tokens by probability (ties: lower id).
        int exp_ids[LOOM_MAX_CHILDREN], n_exp = 0;
        int limit = lp->split > 0 ? lp->split : LOOM_MAX_CHILDREN;
        bool used[1024] = {0};
        while (n_exp < limit) {
            int best = -1;
            for (int i = 0; i < nv; i++)
                if (!used[i] && (best < 0 || p[i] > p[best])) best = i;
            if (n_exp > 0 && p[best] < cutoff) break;
            used[best] = true;
            exp_ids[n_exp++] = best;
        }
        int got = 0;
        double parent_score = id < 0 ? 0 : r->nodes[id].score;
        for (int c = 0; c < r->n_nodes; c++) {
            if (r->nodes[c].parent != id) continue;
            const loom_node *nd = &r->nodes[c];
            if (got < n_exp) CHECK_MSG(nd->token == exp_ids[got], "node %d child %d: token %d, expected %d", id, got,
                                       nd->token, exp_ids[got]);
            CHECK_NEAR(nd->prob, p[nd->token], 1e-4);
            CHECK_NEAR(nd->score, parent_score + (lp->logprob ? log(p[nd->token]) : p[nd->token]), 1e-3);
            CHECK_EQ_INT(nd->depth, d + 1);
            got++;
        }
        CHECK_MSG(got == n_exp, "node %d: %d children, expected %d (cutoff %g)", id, got, n_exp, cutoff);
        checked++;
    }
    free(p);
    return checked;
}

// Suggestions sorted by score, texts distinct, scores = the leaf's.
static void verify_suggestions(const loom_result *r) {
    for (int i = 0; i < r->n_suggestions; i++) {
        const loom_suggestion *s = &r->suggestions[i];
        CHECK(s->len > 0 && strlen(s->text) <= s->len);
        if (i > 0) CHECK(r->suggestions[i - 1].score >= s->score);
        for (int j = 0; j < i; j++)
            CHECK(!(r->suggestions[j].len == s->len && memcmp(r->suggestions[j].text, s->text, s->len) == 0));
        CHECK(s->node >= 0 && s->node < r->n_nodes && r->nodes[s->node].leaf);
        CHECK_NEAR(s->score, r->nodes[s->node].score, 1e-6);
    }
}

static bool same_results(const loom_result *a, const loom_result *b, double tol) {
    if (a->n_suggestions != b->n_suggestions) return false;
    for (int i = 0; i < a->n_suggestions; i++) {
        const loom_suggestion *x = &a->suggestions[i], *y = &b->suggestions[i];
        if (x->len != y->len || memcmp(x->text, y->text, x->len) || fabs(x->score - y->score) > tol ||
            x->n_tokens != y->n_tokens || memcmp(x->tokens, y->tokens, (size_t)x->n_tokens * 4))
            return false;
    }
    return true;
}

// --- pure functions -------------------------------------------------------------------

static void test_children_rule(void) {
    // Probabilities .5 .3 .15 .05 (tokens 2, 0, 3, 1).
    float l[4] = {logf(0.3f), logf(0.05f), logf(0.5f), logf(0.15f)};
    loom_cand c[8];
    int n = loom_children(l, 4, 0.2f, 3, c, 8);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(c[0].token, 2);
    CHECK_EQ_INT(c[1].token, 0);
    CHECK_NEAR(c[0].prob, 0.5, 1e-6);
    CHECK_NEAR(c[1].prob, 0.3, 1e-6);
    // The most likely token continues even below the cutoff; the second needs it.
    n = loom_children(l, 4, 0.6f, 3, c, 8);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(c[0].token, 2);
    n = loom_children(l, 4, 0.299f, 3, c, 8);
    CHECK_EQ_INT(n, 2);
    n = loom_children(l, 4, 0.31f, 3, c, 8);
    CHECK_EQ_INT(n, 1);
    // Split limits, 0 = none.
    CHECK_EQ_INT(loom_children(l, 4, 0.0f, 1, c, 8), 1);
    CHECK_EQ_INT(loom_children(l, 4, 0.0f, 2, c, 8), 2);
    n = loom_children(l, 4, 0.0f, 0, c, 8);
    CHECK_EQ_INT(n, 4);
    CHECK(c[0].token == 2 && c[1].token == 0 && c[2].token == 3 && c[3].token == 1);
    CHECK_EQ_INT(loom_children(l, 4, 0.1f, 0, c, 8), 3);
    // Ties: the lower id first; -inf entries never appear.
    float t[5] = {1, 2, 2, -INFINITY, 2};
    n = loom_children(t, 5, 0.0f, 0, c, 8);
    CHECK_EQ_INT(n, 4);
    CHECK(c[0].token == 1 && c[1].token == 2 && c[2].token == 4 && c[3].token == 0);
    float allinf[2] = {-INFINITY, -INFINITY};
    CHECK_EQ_INT(loom_children(allinf, 2, 0.1f, 3, c, 8), 0);
}

static void test_stop_rule(void) {
    CHECK(!loom_stops("", 0, ",", 1));          // a suggestion starting with ',' goes on
    CHECK(!loom_stops(",", 1, " and", 4));
    CHECK(loom_stops(", and", 5, ",", 1));
    CHECK(loom_stops("", 0, "Hello.", 6));
    CHECK(loom_stops(" there", 6, " was.", 5));
    CHECK(!loom_stops("...", 3, "", 0));
    CHECK(!loom_stops(" ", 1, ". ", 2));
    CHECK(!loom_stops(" ,. ", 4, "\n,", 2));
    CHECK(loom_stops(" ,. ", 4, "x,", 2));
    CHECK(!loom_stops("abc", 3, "def", 3));
    CHECK_EQ_INT(loom_trim_prompt("a ", 2), 1);
    CHECK_EQ_INT(loom_trim_prompt("a  ", 3), 2);
    CHECK_EQ_INT(loom_trim_prompt("a", 1), 1);
    CHECK_EQ_INT(loom_trim_prompt("", 0), 0);
}

// --- trees on the generated model --------------------------------------------------------

static void test_top_continues(void) {
    // A near-uniform random model: nothing reaches 0.2, so the tree is one
    // greedy chain of `depth` tokens, its score the sum of the greedy probs.
    fwd_ctx *c = ctx_for(m, 256, 64, 16);
    int32_t pt[64];
    int np;
    sess *root = root_for(c, "a b c", pt, &np);
    loom_params lp = loom_default_params();
    lp.depth = 6;
    lp.autostop = false;
    loom_result r;
    sim_err err;
    CHECK_MSG(loom_expand(root, &lp, &r, &err) == SIM_OK, "%s", err.msg);
    CHECK_EQ_INT(r.n_nodes, 6);
    CHECK_EQ_INT(r.n_suggestions, r.suggestions && r.suggestions[0].len ? 1 : 0);
    CHECK_EQ_INT(verify_tree(m, &r, &lp, pt, np), 6);
    // The score by hand: greedy probabilities read back, summed.
    int32_t toks[128];
    double *p = malloc(320 * sizeof *p), sum = 0;
    int n = node_path(&r, 5, pt, np, toks);
    for (int k = np; k < n; k++) {
        ref_probs(m, toks, k, p);
        int best = 0;
        for (int i = 1; i < 320; i++)
            if (p[i] > p[best]) best = i;
        CHECK_EQ_INT(toks[k], best);
        sum += p[best];
    }
    CHECK_NEAR(r.nodes[5].score, sum, 1e-4);
    if (r.n_suggestions == 1) CHECK_NEAR(r.suggestions[0].score, sum, 1e-4);
    // The root session is left as it was.
    CHECK_EQ_INT(sess_n_tokens(root), np);
    CHECK(sess_logits(root) != NULL);
    CHECK_EQ_INT(fwd_kv(c)->n_used, np);
    free(p);
    loom_result_free(&r);
    sess_free(root);
    fwd_free(c);
}

static void test_cutoff_second(void) {
    fwd_ctx *c = ctx_for(m, 256, 64, 16);
    int32_t pt[64];
    int np;
    sess *root = root_for(c, "a b c", pt, &np);
    double p[320];
    ref_probs(m, pt, np, p);
    double s[320];
    memcpy(s, p, sizeof s);
    for (int i = 0; i < 320; i++) // sort descending
        for (int j = i + 1; j < 320; j++)
            if (s[j] > s[i]) {
                double t = s[i];
                s[i] = s[j];
                s[j] = t;
            }
    loom_params lp = loom_default_params();
    lp.depth = 3;
    lp.autostop = false;
    lp.multiplier = 1000; // no splits below the root
    loom_result r;
    sim_err err;
    lp.cutoff = (float)((s[1] + s[2]) / 2); // the second splits off, the third does not
    CHECK_MSG(loom_expand(root, &lp, &r, &err) == SIM_OK, "%s", err.msg);
    int roots = 0;
    for (int i = 0; i < r.n_nodes; i++) roots += r.nodes[i].parent < 0;
    CHECK_EQ_INT(roots, 2);
    CHECK_EQ_INT(r.n_nodes, 6);
    verify_tree(m, &r, &lp, pt, np);
    loom_result_free(&r);
    lp.cutoff = (float)(s[1] * 1.0001 + 1e-7); // just above the second
    CHECK_MSG(loom_expand(root, &lp, &r, &err) == SIM_OK, "%s", err.msg);
    CHECK_EQ_INT(r.n_nodes, 3);
    loom_result_free(&r);
    lp.cutoff = (float)((s[3] + s[4]) / 2);
    lp.split = 2; // four reach the cutoff, two are taken
    CHECK_MSG(loom_expand(root, &lp, &r, &err) == SIM_OK, "%s", err.msg);
    CHECK_EQ_INT(r.n_nodes, 6);
    verify_tree(m, &r, &lp, pt, np);
    loom_result_free(&r);
    sess_free(root);
    fwd_free(c);
}

static void test_split_multiplier(void) {
    fwd_ctx *c = ctx_for(m, 512, 64, 16);
    int32_t pt[64];
    int np;
    sess *root = root_for(c, "a b c", pt, &np);
    loom_params lp = loom_default_params();
    lp.autostop = false;
    lp.max = 1000;
    loom_result r;
    sim_err err;
    // cutoff 0: every node has exactly `split` children.
    lp.cutoff = 0;
    lp.split = 3;
    lp.depth = 3;
    CHECK_MSG(loom_expand(root, &lp, &r, &err) == SIM_OK, "%s", err.msg);
    CHECK_EQ_INT(r.n_nodes, 3 + 9 + 27);
    CHECK_EQ_INT(verify_tree(m, &r, &lp, pt, np), 1 + 3 + 9);
    verify_suggestions(&r);
    loom_result_free(&r);
    // A cutoff around the root's 3rd probability, growing or shrinking per depth.
    double p[320];
    ref_probs(m, pt, np, p);
    double top3[3] = {0};
    for (int i = 0; i < 320; i++) {
        double v = p[i];
        for (int k = 0; k < 3; k++)
            if (v > top3[k]) {
                double t = top3[k];
                top3[k] = v;
                v = t;
            }
    }
    float mults[3] = {1.02f, 0.97f, 1.0f};
    for (int k = 0; k < 3; k++) {
        lp.cutoff = (float)(top3[2] * 0.999);
        lp.multiplier = mults[k];
        lp.split = 0;
        lp.depth = 4;
        CHECK_MSG(loom_expand(root, &lp, &r, &err) == SIM_OK, "%s", err.msg);
        int checked = verify_tree(m, &r, &lp, pt, np);
        CHECK(checked >= 4);
        verify_suggestions(&r);
        loom_result_free(&r);
    }
    // Log-probability scores.
    lp.cutoff = 0;
    lp.split = 2;
    lp.depth = 3;
    lp.logprob = true;
    CHECK_MSG(loom_expand(root, &lp, &r, &err) == SIM_OK, "%s", err.msg);
    verify_tree(m, &r, &lp, pt, np);
    verify_suggestions(&r);
    for (int i = 0; i < r.n_suggestions; i++) CHECK(r.suggestions[i].score < 0);
    loom_result_free(&r);
    CHECK_EQ_INT(fwd_kv(c)->n_used, np);
    sess_free(root);
    fwd_free(c);
}

static void test_dedup_and_max(void) {
    // Depth 1, every token a child: byte tokens (<0x61>) and letter pieces
    // ("a") decode to the same text and must merge, keeping the better score.
    fwd_ctx *c = ctx_for(m, 512, 64, 16);
    int32_t pt[64];
    int np;
    sess *root = root_for(c, "a b c", pt, &np);
    loom_params lp = loom_default_params();
    lp.depth = 1;
    lp.cutoff = 0;
    lp.split = 0;
    lp.max = 1000;
    lp.autostop = false;
    loom_result r;
    sim_err err;
    CHECK_MSG(loom_expand(root, &lp, &r, &err) == SIM_OK, "%s", err.msg);
    CHECK_EQ_INT(r.n_nodes, LOOM_MAX_CHILDREN);
    verify_suggestions(&r);
    int nonempty = 0;
    for (int i = 0; i < r.n_nodes; i++) {
        size_t len;
        tok_token_text(m->vocab, r.nodes[i].token, false, &len);
        if (len == 0) continue;
        nonempty++;
        const char *t = tok_token_text(m->vocab, r.nodes[i].token, false, &len);
        // Its text is a suggestion whose score is the best of the equal texts.
        double best = -1;
        for (int j = 0; j < r.n_nodes; j++) {
            size_t l2;
            const char *t2 = tok_token_text(m->vocab, r.nodes[j].token, false, &l2);
            if (l2 == len && memcmp(t, t2, len) == 0) best = fmax(best, r.nodes[j].score);
        }
        int found = 0;
        for (int s = 0; s < r.n_suggestions; s++)
            if (r.suggestions[s].len == len && memcmp(r.suggestions[s].text, t, len) == 0) {
                found++;
                CHECK_NEAR(r.suggestions[s].score, best, 1e-7);
            }
        CHECK_EQ_INT(found, 1);
    }
    CHECK_MSG(r.n_suggestions < nonempty, "%d suggestions from %d leaves: nothing merged", r.n_suggestions, nonempty);
    // The max cap keeps the best ones.
    loom_result r5;
    lp.max = 5;
    CHECK_MSG(loom_expand(root, &lp, &r5, &err) == SIM_OK, "%s", err.msg);
    CHECK_EQ_INT(r5.n_suggestions, 5);
    for (int i = 0; i < 5; i++) {
        CHECK_STR(r5.suggestions[i].text, r.suggestions[i].text);
        CHECK_NEAR(r5.suggestions[i].score, r.suggestions[i].score, 0);
    }
    loom_result_free(&r5);
    loom_result_free(&r);
    sess_free(root);
    fwd_free(c);
}

static void test_determinism_and_naive(void) {
    // n_outputs 5 and a pool of 4 sequence ids force several batches per
    // depth and cold branches; every variant must give the same suggestions.
    fwd_ctx *c = ctx_for(m, 1024, 64, 64);
    fwd_ctx *small = ctx_for(m, 1024, 64, 5);
    int32_t pt[64];
    int np;
    sess *root = root_for(c, "a b c", pt, &np);
    sess *root2 = root_for(small, "a b c", pt, &np);
    loom_params lp = loom_default_params();
    lp.cutoff = 0;
    lp.split = 2;
    lp.depth = 5;
    lp.max = 100;
    lp.autostop = false;
    loom_result a, b, nv, sm, cold;
    sim_err err;
    CHECK_MSG(loom_expand(root, &lp, &a, &err) == SIM_OK, "%s", err.msg);
    CHECK_MSG(loom_expand(root, &lp, &b, &err) == SIM_OK, "%s", err.msg);
    CHECK_MSG(loom_expand_naive(root, &lp, &nv, &err) == SIM_OK, "%s", err.msg);
    CHECK_MSG(loom_expand(root2, &lp, &sm, &err) == SIM_OK, "%s", err.msg);
    loom_params lc = lp;
    lc.seqs = 0x1F; // the root's 0 and four more
    CHECK_MSG(loom_expand(root, &lc, &cold, &err) == SIM_OK, "%s", err.msg);
    CHECK_EQ_INT(a.n_nodes, 62);
    CHECK_EQ_INT(a.n_decodes, 4); // one per depth after the root's
    CHECK_EQ_INT(nv.n_decodes, 30);
    CHECK(sm.n_decodes > 4);
    CHECK(cold.n_decoded > a.n_decoded); // cold branches re-decode their paths
    CHECK(same_results(&a, &b, 0));
    CHECK_EQ_INT(a.n_nodes, b.n_nodes);
    for (int i = 0; i < a.n_nodes && i < b.n_nodes; i++) {
        const loom_node *x = &a.nodes[i], *y = &b.nodes[i];
        CHECK(x->id == y->id && x->parent == y->parent && x->depth == y->depth && x->token == y->token &&
              x->prob == y->prob && x->score == y->score && x->leaf == y->leaf);
    }
    CHECK(same_results(&a, &nv, 1e-5));
    CHECK(same_results(&a, &sm, 1e-5));
    CHECK(same_results(&a, &cold, 1e-5));
    CHECK_EQ_INT(a.n_suggestions, 32 < lp.max ? a.n_suggestions : lp.max);
    verify_tree(m, &cold, &lp, pt, np);
    CHECK_EQ_INT(fwd_kv(c)->n_used, np);
    loom_result_free(&a);
    loom_result_free(&b);
    loom_result_free(&nv);
    loom_result_free(&sm);
    loom_result_free(&cold);
    // A frontier cut to max_frontier keeps the best-scored branches.
    lp.max_frontier = 3;
    CHECK_MSG(loom_expand(root, &lp, &a, &err) == SIM_OK, "%s", err.msg);
    CHECK(a.truncated);
    CHECK(a.n_suggestions <= 6);
    loom_result_free(&a);
    lp.max_frontier = 4096;
    lp.max_nodes = 61; // one short of the tree
    CHECK(loom_expand(root, &lp, &a, &err) == SIM_ERR_RANGE);
    CHECK(a.n_nodes == 0 && !a.nodes);
    CHECK_EQ_INT(fwd_kv(c)->n_used, np);
    lp.max_nodes = 62;
    CHECK_MSG(loom_expand(root, &lp, &a, &err) == SIM_OK, "%s", err.msg);
    loom_result_free(&a);
    sess_free(root);
    sess_free(root2);
    fwd_free(c);
    fwd_free(small);
}

static void test_wide_frontier(void) {
    // Frontiers of 81 and 243 branches: more than the 63 sequences a context
    // lends, so branches go cold and find their paths again in held sequences.
    fwd_ctx *c = ctx_for(m, 4096, 512, 64);
    int32_t pt[64];
    int np;
    sess *root = root_for(c, "a b c", pt, &np);
    loom_params lp = loom_default_params();
    lp.cutoff = 0;
    lp.split = 3;
    lp.depth = 6;
    lp.max = 2000;
    lp.autostop = false;
    loom_result a, nv;
    sim_err err;
    CHECK_MSG(loom_expand(root, &lp, &a, &err) == SIM_OK, "%s", err.msg);
    CHECK_MSG(loom_expand_naive(root, &lp, &nv, &err) == SIM_OK, "%s", err.msg);
    CHECK_EQ_INT(a.n_nodes, 3 + 9 + 27 + 81 + 243 + 729);
    CHECK_EQ_INT(nv.n_decodes, 1 + 3 + 9 + 27 + 81 + 243 - 1);
    CHECK(a.n_decodes < 20);
    CHECK(same_results(&a, &nv, 1e-5));
    CHECK_EQ_INT(verify_tree(m, &a, &lp, pt, np), 1 + 3 + 9 + 27 + 81 + 243);
    verify_suggestions(&a);
    CHECK_EQ_INT(fwd_kv(c)->n_used, np);
    loom_result_free(&a);
    loom_result_free(&nv);
    sess_free(root);
    fwd_free(c);
}

typedef struct counter {
    int nodes, depths, stop_at;
    int last_id;
} counter;

static bool count_node(void *ud, const loom_node *nd) {
    counter *k = ud;
    CHECK_EQ_INT(nd->id, k->last_id + 1);
    k->last_id = nd->id;
    return ++k->nodes != k->stop_at;
}

static bool count_depth(void *ud, int depth, int n_open) {
    counter *k = ud;
    k->depths++;
    CHECK_EQ_INT(depth, k->depths);
    CHECK(n_open >= 0);
    return true;
}

static void test_errors_and_callbacks(void) {
    fwd_ctx *c = ctx_for(m, 64, 32, 16);
    int32_t pt[64];
    int np;
    sess *root = root_for(c, "a b c", pt, &np);
    loom_params lp = loom_default_params();
    loom_result r;
    sim_err err;
    lp.depth = 0;
    CHECK(loom_expand(root, &lp, &r, &err) == SIM_ERR_ARG);
    lp = loom_default_params();
    lp.cutoff = 1.5f;
    CHECK(loom_expand(root, &lp, &r, &err) == SIM_ERR_ARG);
    lp = loom_default_params();
    lp.depth = 40; // above the batch size: a cold branch could not be decoded
    CHECK(loom_expand(root, &lp, &r, &err) == SIM_ERR_RANGE);
    lp = loom_default_params();
    lp.seqs = 1; // only the root's id
    CHECK(loom_expand(root, &lp, &r, &err) == SIM_ERR_ARG);
    // A full context: an error, and every branch's cells released.
    lp = loom_default_params();
    lp.cutoff = 0;
    lp.split = 3;
    lp.depth = 6;
    lp.autostop = false;
    CHECK(loom_expand(root, &lp, &r, &err) == SIM_ERR_RANGE);
    CHECK(r.n_nodes == 0 && r.n_suggestions == 0 && !r.nodes);
    CHECK_EQ_INT(fwd_kv(c)->n_used, np);
    // Callbacks see every node in order; false aborts cleanly.
    counter k = {.last_id = -1};
    lp.depth = 3;
    lp.on_node = count_node;
    lp.on_depth = count_depth;
    lp.ud = &k;
    CHECK_MSG(loom_expand(root, &lp, &r, &err) == SIM_OK, "%s", err.msg);
    CHECK_EQ_INT(k.nodes, r.n_nodes);
    CHECK_EQ_INT(k.depths, 3);
    loom_result_free(&r);
    k = (counter){.last_id = -1, .stop_at = 7};
    CHECK(loom_expand(root, &lp, &r, &err) == SIM_ERR_ABORTED);
    CHECK_EQ_INT(fwd_kv(c)->n_used, np);
    // Allocation failures anywhere: an error, nothing leaked, the cache as it was.
    lp.on_node = NULL;
    lp.on_depth = NULL;
    int fails = 0;
    for (long n = 0; n < 5000; n++) {
        mem_fail_after(n);
        sim_status st = loom_expand(root, &lp, &r, &err);
        bool hit = mem_fail_triggered();
        mem_fail_after(-1);
        if (!hit) {
            CHECK(st == SIM_OK);
            loom_result_free(&r);
            break;
        }
        fails++;
        CHECK(st != SIM_OK);
        CHECK_EQ_INT(fwd_kv(c)->n_used, np);
    }
    CHECK(fails > 10);
    sess_free(root);
    fwd_free(c);
}

// --- stories260K: real text with stops ------------------------------------------------------

static void test_story_stops(void) {
    if (!story) {
        char buf[512];
        test_shared_path(buf, sizeof buf, "models/stories260K.gguf");
        return;
    }
    fwd_ctx *c = ctx_for(story, 512, 64, 64);
    int32_t pt[64];
    int np;
    sess *root = root_for(c, "Once upon a time", pt, &np);
    loom_params lp = loom_default_params();
    loom_result r, nv;
    sim_err err;
    CHECK_MSG(loom_expand(root, &lp, &r, &err) == SIM_OK, "%s", err.msg);
    CHECK_MSG(loom_expand_naive(root, &lp, &nv, &err) == SIM_OK, "%s", err.msg);
    CHECK(same_results(&r, &nv, 1e-5));
    verify_tree(story, &r, &lp, pt, np);
    verify_suggestions(&r);
    CHECK(r.n_suggestions >= 2);
    bool starts_with_comma = false;
    for (int i = 0; i < r.n_suggestions; i++) {
        const loom_suggestion *s = &r.suggestions[i];
        // Ends at the first '.' or ',' after text (in its last token), or at the depth.
        size_t last = 0, k = 0;
        for (int t = 0; t < s->n_tokens - 1; t++) {
            size_t l;
            tok_token_text(story->vocab, s->tokens[t], false, &l);
            last += l;
        }
        bool content = false;
        size_t stop_at = s->len;
        for (k = 0; k < s->len; k++) {
            char ch = s->text[k];
            if ((ch == '.' || ch == ',') && content) {
                stop_at = k;
                break;
            }
            if (ch != '.' && ch != ',' && ch != ' ' && ch != '\n') content = true;
        }
        if (stop_at < s->len) CHECK_MSG(stop_at >= last, "'%s' goes on past a stop", s->text);
        else CHECK_MSG(s->n_tokens == lp.depth, "'%s' ended early", s->text);
        if (s->text[0] == ',' && s->n_tokens > 1) starts_with_comma = true;
    }
    CHECK_MSG(starts_with_comma, "no suggestion goes on past its leading ','");
    CHECK_STR(r.suggestions[0].text, ", there was a little girl named Lily.");
    loom_result_free(&r);
    loom_result_free(&nv);
    // Without auto-stop every branch runs to the depth (or the end of text).
    lp.autostop = false;
    lp.depth = 8;
    CHECK_MSG(loom_expand(root, &lp, &r, &err) == SIM_OK, "%s", err.msg);
    for (int i = 0; i < r.n_suggestions; i++)
        CHECK(r.suggestions[i].n_tokens == 8 || tok_is_eog(story->vocab, r.nodes[r.suggestions[i].node].token));
    loom_result_free(&r);
    sess_free(root);
    fwd_free(c);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    snprintf(dir, sizeof dir, "/tmp/sim_test_loom_%d", (int)getpid());
    char cmd[300];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
    if (system(cmd) != 0) return 1;
    m = load_synth("synth", 5);
    char path[512];
    const char *sd = test_shared_dir();
    if (sd) {
        snprintf(path, sizeof path, "%s/models/stories260K.gguf", sd);
        sim_err err;
        if (access(path, R_OK) == 0 && model_load(&story, path, NULL, &err) != SIM_OK) story = NULL;
    }
    TEST_RUN(test_children_rule);
    TEST_RUN(test_stop_rule);
    if (m) {
        TEST_RUN(test_top_continues);
        TEST_RUN(test_cutoff_second);
        TEST_RUN(test_split_multiplier);
        TEST_RUN(test_dedup_and_max);
        TEST_RUN(test_determinism_and_naive);
        TEST_RUN(test_wide_frontier);
        TEST_RUN(test_errors_and_callbacks);
    }
    TEST_RUN(test_story_stops);
    model_free(m);
    model_free(story);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) return 1;
    return test_finish();
}
