// cli.c — option parsing and the helpers every command uses.
#include "cli/cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"

int cli_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("simularity: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

// Whether arg names this option; sets *value when given as --name=value.
static bool matches(const cli_opt *o, const char *arg, const char **value) {
    *value = NULL;
    const char *eq = strchr(arg, '=');
    size_t alen = eq ? (size_t)(eq - arg) : strlen(arg);
    for (const char *n = o->names; *n;) {
        const char *bar = strchr(n, '|');
        size_t nlen = bar ? (size_t)(bar - n) : strlen(n);
        if (nlen == alen && strncmp(n, arg, nlen) == 0) {
            if (eq) *value = eq + 1;
            return true;
        }
        n += nlen + (bar ? 1 : 0);
    }
    return false;
}

static void usage(const char *synopsis, const cli_opt *opts, int n_opts) {
    fprintf(stderr, "usage: simularity %s\n", synopsis);
    for (int i = 0; i < n_opts; i++) fprintf(stderr, "  %-22s %s\n", opts[i].names, opts[i].help);
}

static bool parse_number(cli_kind kind, const char *s, void *dst) {
    char *end;
    errno = 0;
    if (!*s) return false;
    switch (kind) {
    case OPT_INT: {
        long v = strtol(s, &end, 10);
        if (*end || errno || v < -2147483647L || v > 2147483647L) return false;
        *(int *)dst = (int)v;
        return true;
    }
    case OPT_U64: {
        if (*s == '-') return false;
        unsigned long long v = strtoull(s, &end, 0);
        if (*end || errno) return false;
        *(uint64_t *)dst = v;
        return true;
    }
    case OPT_FLOAT: {
        float v = strtof(s, &end);
        if (*end || errno) return false;
        *(float *)dst = v;
        return true;
    }
    default: return false;
    }
}

int cli_parse(const char *synopsis, int argc, char **argv, const cli_opt *opts, int n_opts,
              const char **pos, int max_pos, int *n_pos) {
    *n_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            usage(synopsis, opts, n_opts);
            return 2;
        }
        if (arg[0] != '-' || strcmp(arg, "-") == 0) {
            if (*n_pos == max_pos) return cli_fail("%s: unexpected argument '%s'", argv[0], arg);
            pos[(*n_pos)++] = arg;
            continue;
        }
        const cli_opt *o = NULL;
        const char *value = NULL;
        for (int j = 0; j < n_opts && !o; j++)
            if (matches(&opts[j], arg, &value)) o = &opts[j];
        if (!o) return cli_fail("%s: unknown option '%s' (see --help)", argv[0], arg);
        if (o->kind == OPT_FLAG) {
            if (value) return cli_fail("%s: option '%s' takes no value", argv[0], arg);
            *(bool *)o->dst = true;
            continue;
        }
        if (!value) {
            if (i + 1 >= argc) return cli_fail("%s: option '%s' needs a value", argv[0], arg);
            value = argv[++i];
        }
        if (o->kind == OPT_STR) *(const char **)o->dst = value;
        else if (o->kind == OPT_LIST) {
            cli_list *l = o->dst;
            if (l->n == CLI_LIST_MAX) return cli_fail("%s: option '%s' given more than %d times", argv[0], arg, CLI_LIST_MAX);
            l->items[l->n++] = value;
        }
        else if (!parse_number(o->kind, value, o->dst))
            return cli_fail("%s: option '%s': '%s' is not a valid %s", argv[0], arg, value,
                            o->kind == OPT_FLOAT ? "number" : "integer");
    }
    return 0;
}

static char *read_prompt(const char *text, const char *file, size_t *len) {
    if ((text != NULL) == (file != NULL)) {
        cli_fail("give the prompt with exactly one of -p TEXT or -f FILE");
        return NULL;
    }
    if (text) {
        *len = strlen(text);
        char *s = mem_strdup(text);
        if (!s) cli_fail("out of memory");
        return s;
    }
    char *buf;
    sim_err err;
    if (file_read_all(file, (size_t)1 << 28, &buf, len, &err) != SIM_OK) {
        cli_fail("%s", err.msg);
        return NULL;
    }
    return buf;
}

model *cli_load_model(const char *path, const model_params *mp) {
    if (!path) {
        cli_fail("no model given (-m FILE)");
        return NULL;
    }
    model *m;
    sim_err err;
    if (model_load(&m, path, mp, &err) != SIM_OK) {
        cli_fail("%s", err.msg);
        return NULL;
    }
    return m;
}

bool cli_input_open(cli_input *in, const char *model_path, const char *text, const char *file,
                    const model_params *mp, bool add_special) {
    memset(in, 0, sizeof *in);
    if (!(in->prompt = read_prompt(text, file, &in->len))) return false;
    if (!(in->m = cli_load_model(model_path, mp))) {
        cli_input_close(in);
        return false;
    }
    sim_err err;
    int n = tok_encode_alloc(in->m->vocab, in->prompt, in->len, add_special, true, &in->toks, &err);
    if (n < 0) {
        cli_fail("cannot tokenize the prompt: %s", err.msg);
        cli_input_close(in);
        return false;
    }
    in->n = n;
    return true;
}

void cli_input_close(cli_input *in) {
    mem_free(in->toks);
    mem_free(in->prompt);
    model_free(in->m);
    memset(in, 0, sizeof *in);
}

bool cli_kv_type(const char *name, tt_type *out) {
    if (strcmp(name, "f16") == 0) *out = TT_F16;
    else if (strcmp(name, "f32") == 0) *out = TT_F32;
    else return false;
    return true;
}

const char *cli_basename(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

bool cli_eval(fwd_ctx *c, const int32_t *tokens, int n, int pos0, bool all_logits,
              void (*on_logits)(void *arg, fwd_ctx *c, int first, int count), void *arg) {
    int nb = fwd_n_batch(c);
    int32_t *pos = mem_alloc((size_t)nb * sizeof *pos);
    kv_seq_mask *seqs = mem_alloc((size_t)nb * sizeof *seqs);
    bool *want = mem_alloc((size_t)nb * sizeof *want);
    bool ok = pos && seqs && want;
    if (!ok) cli_fail("out of memory");
    for (int i0 = 0; ok && i0 < n; i0 += nb) {
        int k = MIN(nb, n - i0);
        for (int i = 0; i < k; i++) {
            pos[i] = pos0 + i0 + i;
            seqs[i] = 1;
            want[i] = all_logits || i0 + i == n - 1;
        }
        fwd_batch b = {.n = k, .tokens = tokens + i0, .pos = pos, .seqs = seqs, .logits = want};
        sim_err err;
        if (fwd_decode(c, &b, &err) != SIM_OK) {
            cli_fail("%s", err.msg);
            ok = false;
        } else if (on_logits && all_logits) {
            on_logits(arg, c, i0, k);
        }
    }
    mem_free(pos);
    mem_free(seqs);
    mem_free(want);
    return ok;
}
