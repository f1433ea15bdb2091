// fuzz_card.c — libFuzzer target for character cards: the input is a card
// file (JSON or PNG).
//   - card_parse must accept it or fail with a message — never crash, hang
//     or leak;
//   - an accepted card keeps its promises: a non-empty name, every string
//     non-NULL valid UTF-8, counts within the limits, embedded asset paths
//     free of "..";
//   - card_expand works on every accepted text.
// Build and run: make fuzz && build/fuzz/fuzz_card tests/fuzz/corpus-card
// (seeds: a V2 JSON card and a tiny PNG with a ccv3 chunk).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/utf8.h"
#include "story/card.h"

static void check_str(const char *s) {
    if (!s || !utf8_valid(s, strlen(s)) || strlen(s) > CARD_MAX_STRING) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    card *c = NULL;
    sim_err err = {0};
    if (card_parse(&c, data, size, "fuzz", &err) != SIM_OK) {
        if (c || !err.msg[0] || strncmp(err.msg, "fuzz", 4) != 0) abort(); // every refusal says why
        return 0;
    }
    if (!c->name[0] || !json_is_object(c->extensions)) abort();
    const char *strs[] = {c->spec_version, c->name, c->nickname, c->description, c->personality, c->scenario,
                          c->first_mes, c->mes_example, c->creator_notes, c->system_prompt,
                          c->post_history_instructions, c->creator, c->character_version, c->book_name};
    for (size_t i = 0; i < sizeof strs / sizeof *strs; i++) check_str(strs[i]);
    if (c->n_alternate_greetings > CARD_MAX_GREETINGS || c->n_group_only_greetings > CARD_MAX_GREETINGS ||
        c->n_entries > CARD_MAX_ENTRIES || c->n_assets > CARD_MAX_LIST)
        abort();
    for (int i = 0; i < c->n_alternate_greetings; i++) check_str(c->alternate_greetings[i]);
    for (int i = 0; i < c->n_tags; i++) check_str(c->tags[i]);
    for (int i = 0; i < c->n_entries; i++) {
        for (int k = 0; k < c->entries[i].n_keys; k++) check_str(c->entries[i].keys[k]);
        check_str(c->entries[i].content);
    }
    for (int i = 0; i < c->n_assets; i++) {
        card_asset *a = &c->assets[i];
        check_str(a->uri);
        check_str(a->path);
        if ((a->kind == CARD_URI_EMBEDDED || a->kind == CARD_URI_PATH) &&
            (!a->path[0] || a->path[0] == '/' || a->path[0] == '\\' || strncmp(a->path, "../", 3) == 0 ||
             strstr(a->path, "/../") || strcmp(a->path, "..") == 0))
            abort();
    }
    char *s = card_expand(c->first_mes, c->name, "{{user}}");
    if (s) check_str(s);
    mem_free(s);
    card_free(c);
    return 0;
}
