// director.c — the turn grammars (see director.h).
#include "story/director.h"

#include <stdio.h>
#include <string.h>

#include "infer/grammar.h"

static void lit(sbuf *b, const char *s) { gram_sb_literal(b, s, strlen(s)); }

// --- integer ranges --------------------------------------------------------------------

typedef struct alts {
    sbuf *b;
    bool first;
} alts;

static void alt(alts *a, const char *pattern) {
    sb_str(a->b, a->first ? pattern : " | ");
    if (!a->first) sb_str(a->b, pattern);
    a->first = false;
}

// Appends the digit class a..z (a literal when a == z) to p.
static void digit_class(char *p, size_t cap, char a, char z) {
    size_t n = strlen(p);
    if (a == z) snprintf(p + n, cap - n, " \"%c\"", a);
    else snprintf(p + n, cap - n, " [%c-%c]", a, z);
}

static void any_digits(char *p, size_t cap, size_t k) {
    for (size_t i = 0; i < k; i++) digit_class(p, cap, '0', '9');
}

// Every digit string from lo to hi (equal lengths), each alternative prefixed by pre.
static void split(alts *a, const char *pre, const char *lo, const char *hi) {
    size_t n = strlen(lo);
    char p[512];
    if (n == 0) {
        alt(a, pre);
        return;
    }
    bool lo_zeros = strspn(lo + 1, "0") == n - 1, hi_nines = strspn(hi + 1, "9") == n - 1;
    snprintf(p, sizeof p, "%s", pre);
    if (lo[0] == hi[0]) {
        digit_class(p, sizeof p, lo[0], lo[0]);
        split(a, p, lo + 1, hi + 1);
        return;
    }
    if (lo_zeros && hi_nines) {
        digit_class(p, sizeof p, lo[0], hi[0]);
        any_digits(p, sizeof p, n - 1);
        alt(a, p);
        return;
    }
    char nines[24], zeros[24];
    memset(nines, '9', n - 1), nines[n - 1] = 0;
    memset(zeros, '0', n - 1), zeros[n - 1] = 0;
    digit_class(p, sizeof p, lo[0], lo[0]);
    split(a, p, lo + 1, nines);
    if (lo[0] + 1 <= hi[0] - 1) {
        snprintf(p, sizeof p, "%s", pre);
        digit_class(p, sizeof p, (char)(lo[0] + 1), (char)(hi[0] - 1));
        any_digits(p, sizeof p, n - 1);
        alt(a, p);
    }
    snprintf(p, sizeof p, "%s", pre);
    digit_class(p, sizeof p, hi[0], hi[0]);
    split(a, p, zeros, hi + 1);
}

// Non-negative lo..hi, split by digit count.
static void nonneg(alts *a, const char *sign, long long lo, long long hi) {
    long long pow = 1;
    for (int d = 1; d <= 10 && (d == 1 || pow <= hi); d++, pow *= 10) { // |values| <= 10^9: at most 10 digits
        long long dlo = d == 1 ? 0 : pow, dhi = pow * 10 - 1;
        if (hi < dlo || lo > dhi) continue;
        char l[24], h[24];
        snprintf(l, sizeof l, "%lld", lo > dlo ? lo : dlo);
        snprintf(h, sizeof h, "%lld", hi < dhi ? hi : dhi);
        split(a, sign, l, h);
    }
}

void dir_int_range(sbuf *b, long long lo, long long hi) {
    alts a = {b, true};
    sb_str(b, "(");
    if (lo < 0) nonneg(&a, " \"-\"", hi < 0 ? -hi : 1, -lo);
    if (hi >= 0) nonneg(&a, "", lo > 0 ? lo : 0, hi);
    sb_str(b, ")");
}

// --- speakers ---------------------------------------------------------------------------

int dir_speakers(const stage *st, const scn_scenario *s, int *out) {
    const scn_episode *e = &s->episodes[st->episode];
    int n = 0;
    out[n++] = SCN_SPEAKER_NARRATOR;
    for (int i = 0; i < e->n_allowed_speakers; i++)
        if (stage_find(st, e->allowed_speakers[i]) >= 0) out[n++] = e->allowed_speakers[i];
    return n;
}

static void speaker_alts(sbuf *b, const stage *st, const scn_scenario *s) {
    int sp[DIR_MAX_SPEAKERS];
    int n = dir_speakers(st, s, sp);
    lit(b, "<");
    sb_str(b, " (");
    for (int i = 0; i < n; i++) {
        if (i) sb_str(b, " | ");
        lit(b, sp[i] == SCN_SPEAKER_NARRATOR ? "narrator" : s->characters[sp[i]].id);
    }
    sb_str(b, ") ");
    lit(b, ">");
}

// --- commands -------------------------------------------------------------------------------

// "(" lit(ids[0]) | ... ")" over the ids of arr (entries start with const char *id).
static void id_alts(sbuf *b, const void *arr, size_t stride, const int *idx, int n) {
    sb_str(b, "(");
    for (int i = 0; i < n; i++) {
        if (i) sb_str(b, " | ");
        lit(b, *(const char *const *)((const char *)arr + (size_t)idx[i] * stride));
    }
    sb_str(b, ")");
}

static void all_idx(int *idx, int n) {
    for (int i = 0; i < n; i++) idx[i] = i;
}

// Appends one alternative per kind of command valid now; returns how many.
static int command_alts(sbuf *b, const stage *st, const scn_scenario *s) {
    int cap = s->n_scenes > s->n_characters ? s->n_scenes : s->n_characters;
    for (int i = 0; i < s->n_characters; i++) {
        const scn_character *c = &s->characters[i];
        cap = c->n_outfits > cap ? c->n_outfits : cap;
        cap = c->n_expressions > cap ? c->n_expressions : cap;
        cap = c->n_bodies > cap ? c->n_bodies : cap;
    }
    int *idx = mem_alloc((size_t)(cap + 1) * sizeof *idx), *idx2 = mem_alloc((size_t)(cap + 1) * sizeof *idx2);
    if (!idx || !idx2) {
        b->oom = true;
        mem_free(idx);
        mem_free(idx2);
        return 0;
    }
    int n_alts = 0;
#define NEXT_ALT() sb_str(b, n_alts++ ? "\n    | " : "")
    int n = stage_settable_scenes(st, s, idx);
    if (n > 0) {
        NEXT_ALT();
        lit(b, "{\"setScene\":{\"scene\":\"");
        id_alts(b, s->scenes, sizeof *s->scenes, idx, n);
        lit(b, "\"}}");
    }
    n = stage_addable_characters(st, s, idx);
    for (int i = 0; i < n; i++) {
        const scn_character *c = &s->characters[idx[i]];
        char head[128];
        snprintf(head, sizeof head, "{\"addCharacter\":{\"character\":\"%s\"", c->id);
        NEXT_ALT();
        lit(b, head);
        if (c->n_bodies > 1) {
            lit(b, ",\"body\":\"");
            all_idx(idx2, c->n_bodies);
            id_alts(b, c->bodies, sizeof *c->bodies, idx2, c->n_bodies);
            lit(b, "\"");
        }
        lit(b, ",\"outfit\":\"");
        all_idx(idx2, c->n_outfits);
        id_alts(b, c->outfits, sizeof *c->outfits, idx2, c->n_outfits);
        lit(b, "\",\"expression\":\"");
        all_idx(idx2, c->n_expressions);
        id_alts(b, c->expressions, sizeof *c->expressions, idx2, c->n_expressions);
        lit(b, "\"}}");
    }
    if (st->n_on_stage > 0) {
        for (int i = 0; i < st->n_on_stage; i++) idx2[i] = st->on_stage[i].character;
        NEXT_ALT();
        lit(b, "{\"removeCharacter\":{\"character\":\"");
        id_alts(b, s->characters, sizeof *s->characters, idx2, st->n_on_stage);
        lit(b, "\"}}");
    }
    for (int k = 0; k < st->n_on_stage; k++) {
        const scn_character *c = &s->characters[st->on_stage[k].character];
        for (int outfit = 0; outfit < 2; outfit++) {
            n = outfit ? stage_switchable_outfits(st, s, st->on_stage[k].character, idx)
                       : stage_switchable_expressions(st, s, st->on_stage[k].character, idx);
            if (n == 0) continue;
            char head[128];
            snprintf(head, sizeof head, "{\"%s\":{\"character\":\"%s\",\"%s\":\"", outfit ? "setOutfit" : "setExpression",
                     c->id, outfit ? "outfit" : "expression");
            NEXT_ALT();
            lit(b, head);
            if (outfit) id_alts(b, c->outfits, sizeof *c->outfits, idx, n);
            else id_alts(b, c->expressions, sizeof *c->expressions, idx, n);
            lit(b, "\"}}");
        }
    }
    if (st->minutes < STAGE_MAX_MINUTES) {
        int room = STAGE_MAX_MINUTES - st->minutes;
        NEXT_ALT();
        lit(b, "{\"advanceClock\":{\"minutes\":");
        dir_int_range(b, 1, room < STAGE_MAX_STEP ? room : STAGE_MAX_STEP);
        lit(b, "}}");
    }
    for (int i = 0; i < s->n_variables; i++) {
        const scn_variable *x = &s->variables[i];
        int cur = st->vars[i];
        if (x->min == x->max) continue; // nothing else to set it to
        char head[160];
        snprintf(head, sizeof head, "{\"setVariable\":{\"variable\":\"%s\",\"value\":", x->id);
        NEXT_ALT();
        lit(b, head);
        switch (x->type) {
        case SCN_VAR_INT:
            sb_str(b, "(");
            if (cur > x->min) dir_int_range(b, x->min, cur - 1);
            if (cur > x->min && cur < x->max) sb_str(b, " | ");
            if (cur < x->max) dir_int_range(b, cur + 1, x->max);
            sb_str(b, ")");
            break;
        case SCN_VAR_BOOL: lit(b, cur ? "false" : "true"); break;
        case SCN_VAR_ENUM: {
            sb_str(b, "(");
            bool first = true;
            for (int v = 0; v < x->n_values; v++) {
                if (v == cur) continue;
                char q[80];
                snprintf(q, sizeof q, "\"%s\"", x->values[v]);
                sb_str(b, first ? "" : " | ");
                lit(b, q);
                first = false;
            }
            sb_str(b, ")");
            break;
        }
        }
        lit(b, "}}");
    }
#undef NEXT_ALT
    mem_free(idx);
    mem_free(idx2);
    return n_alts;
}

bool dir_any_command(const stage *st, const scn_scenario *s) {
    sbuf b = {0};
    int n = command_alts(&b, st, s);
    sb_free(&b);
    return n > 0;
}

// --- the grammars ---------------------------------------------------------------------------

char *dir_open_grammar(const stage *st, const scn_scenario *s) {
    sbuf b = {0};
    sb_str(&b, "root ::= ");
    if (dir_any_command(st, s)) {
        lit(&b, DIR_SYSTEM);
        sb_str(&b, " | ");
    }
    speaker_alts(&b, st, s);
    sb_str(&b, "\n");
    return sb_take(&b);
}

char *dir_command_grammar(const stage *st, const scn_scenario *s, bool last) {
    sbuf b = {0};
    sb_str(&b, "root ::= cmd ");
    sb_str(&b, last ? "\"]\\n\"" : "(\",\" | \"]\\n\")");
    sb_str(&b, "\ncmd ::= ");
    if (command_alts(&b, st, s) == 0) {
        sb_free(&b);
        return NULL;
    }
    sb_str(&b, "\n");
    return sb_take(&b);
}

char *dir_speaker_grammar(const stage *st, const scn_scenario *s) {
    sbuf b = {0};
    sb_str(&b, "root ::= ");
    speaker_alts(&b, st, s);
    sb_str(&b, "\n");
    return sb_take(&b);
}

char *dir_text_grammar(void) {
    return mem_strdup("root ::= [^\\x00-\\x1F\\x7F-\\x9F ] [^\\x00-\\x1F\\x7F-\\x9F]* \"\\n\"\n");
}
