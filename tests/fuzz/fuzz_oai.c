// fuzz_oai.c — libFuzzer target for the server's request parsing: the input
// is a request body, parsed as both a completion and a chat request.
//   - oai_parse must accept it or fail with a message (and a param naming a
//     field when there is one) — never crash, hang or leak;
//   - an accepted request's sampler parameters must be ones smp_new takes
//     (the parser's ranges are the sampler's), and a grammar converted from
//     a JSON schema must compile (GBNF given as is is checked by the scheduler);
//   - the response shapes must build for an accepted request.
// Build and run: make fuzz && build/fuzz/fuzz_oai tests/fuzz/corpus-oai
// (seeds: OpenAI request bodies).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/grammar.h"
#include "server/oai.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    oai_limits lim = {.max_tokens = 4096, .n_vocab = 512};
    for (int k = 0; k < 2; k++) {
        oai_request rq;
        oai_error e;
        sim_status st = oai_parse(&rq, k ? OAI_CHAT : OAI_COMPLETION, (const char *)data, size, &lim, &e);
        if (st != SIM_OK) {
            if (!e.message[0]) abort(); // every refusal says why
            continue;
        }
        if (rq.kind == OAI_CHAT && !json_is_array(rq.messages)) abort();
        if (rq.kind == OAI_COMPLETION && !rq.prompt && !rq.prompt_toks) abort();
        if (rq.max_tokens > lim.max_tokens) abort();
        smp_ctx *smp = NULL;
        sim_err err;
        rq.sp.vocab = NULL;
        if (rq.sp.n_dry_breakers == 0 || rq.sp.dry_multiplier == 0) {
            rq.sp.n_dry_breakers = 0; // breakers need a vocabulary; their strings were checked by the parser
            if (smp_new(&smp, lim.n_vocab, &rq.sp, &err) != SIM_OK) {
                fprintf(stderr, "accepted sampler parameters that smp_new refuses: %s\n", err.msg);
                abort();
            }
            smp_free(smp);
        }
        if (rq.grammar && !json_object_get(rq.root, "grammar")) { // GBNF text is compiled later, by the scheduler
            gram_grammar *g = NULL;
            if (gram_parse(&g, rq.grammar, strlen(rq.grammar), &err) != SIM_OK && err.code != SIM_ERR_RANGE) {
                fprintf(stderr, "a converted schema does not compile: %s\n", err.msg);
                abort();
            }
            gram_free(g);
        }
        sched_usage u = {.n_prompt = 3, .n_generated = 2};
        json_t *j = oai_usage(&u);
        json_decref(j);
        oai_request_free(&rq);
    }
    return 0;
}
