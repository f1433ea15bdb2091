// test_card.c — character cards: CRC-32 and base64 against known vectors,
// V1/V2/V3 JSON with every field, PNG fixtures built with test.h (IHDR 1x1, IDAT
// with a stored zlib block, IEND, tEXt/iTXt card chunks), precise errors on
// hostile input, macro expansion, and every allocation failing in turn.
#include "test.h"

#include "base/file.h"
#include "story/card.h"

// --- fixture builders (test.h's PNG fixtures, independent of the code under test) ----

// A text chunk "keyword\0base64(json)" (tEXt), or the iTXt layout when itxt.
static void card_chunk(test_buf *b, const char *type, const char *kw, const char *json) {
    static char tmp[1 << 15];
    size_t k = strlen(kw) + 1;
    memcpy(tmp, kw, k);
    if (strcmp(type, "iTXt") == 0) {
        memcpy(tmp + k, "\0\0en\0\0", 6); // not compressed, method 0, language "en", no translated keyword
        k += 6;
    }
    k += test_b64enc(json, tmp + k);
    test_png_chunk(b, type, tmp, k);
}

static card *parse_ok(const void *d, size_t n) {
    card *c = NULL;
    sim_err err = {0};
    sim_status st = card_parse(&c, d, n, "t.card", &err);
    CHECK_MSG(st == SIM_OK, "%s", err.msg);
    return c;
}
static card *parse_str(const char *json) { return parse_ok(json, strlen(json)); }

// Parses and expects failure with code and a message containing want.
#define EXPECT_ERR(d, n, code, want)                                                        \
    do {                                                                                   \
        card *c_ = (card *)1;                                                              \
        sim_err e_ = {0};                                                                  \
        sim_status st_ = card_parse(&c_, d, n, "t.card", &e_);                             \
        CHECK_MSG(st_ == (code), "status %d, message: %s", st_, e_.msg);                   \
        CHECK(c_ == NULL);                                                                 \
        CHECK_MSG(strstr(e_.msg, want) && strncmp(e_.msg, "t.card", 6) == 0,               \
                  "message \"%s\" lacks \"%s\"", e_.msg, want);                            \
    } while (0)
#define EXPECT_ERR_STR(json, code, want) EXPECT_ERR(json, strlen(json), code, want)

// --- CRC-32 and base64 ------------------------------------------------------------------

static void test_crc32(void) {
    CHECK_EQ_INT(card_crc32(0, "123456789", 9), 0xCBF43926u); // the CRC-32/ISO-HDLC check value
    CHECK_EQ_INT(card_crc32(0, "", 0), 0);
    uint8_t ih[17] = {'I', 'H', 'D', 'R'};
    memcpy(ih + 4, test_png_ihdr_1x1, 13);
    CHECK_EQ_INT(card_crc32(0, ih, 17), 0x1F15C489u); // as in every 1x1 RGBA PNG
    CHECK_EQ_INT(card_crc32(0, "IEND", 4), 0xAE426082u);
    CHECK_EQ_INT(card_crc32(card_crc32(0, "12345", 5), "6789", 4), 0xCBF43926u); // continues
}

static void test_base64(void) {
    static const struct {
        const char *in, *out;
    } ok[] = {{"", ""},           {"Zg==", "f"},         {"Zm8=", "fo"},           {"Zm9v", "foo"},
              {"Zm9vYg==", "foob"}, {"Zm9vYmE=", "fooba"}, {"Zm9vYmFy", "foobar"},   {"Zg", "f"},
              {"Zm8", "fo"},       {" Zm9v\r\nYm E=\n", "fooba"}, {"Zm9vYmFy\n", "foobar"}};
    for (size_t i = 0; i < ARRAY_LEN(ok); i++) {
        uint8_t *o = NULL;
        size_t n = 99;
        sim_err err;
        sim_status st = card_base64_decode(ok[i].in, strlen(ok[i].in), &o, &n, &err);
        CHECK_MSG(st == SIM_OK, "\"%s\": %s", ok[i].in, err.msg);
        if (st == SIM_OK) {
            CHECK_EQ_INT(n, strlen(ok[i].out));
            CHECK_STR((char *)o, ok[i].out);
        }
        mem_free(o);
    }
    const char *bad[] = {"Z", "Zm9vY", "Zg=", "Zg===", "Zm9v*", "Zm9v=Zm9v", "Zg=a", "Zm-_", "=", "\x80\x81"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        uint8_t *o = (uint8_t *)1;
        size_t n;
        sim_err err;
        CHECK_MSG(card_base64_decode(bad[i], strlen(bad[i]), &o, &n, &err) == SIM_ERR_FORMAT, "\"%s\"", bad[i]);
        CHECK(o == NULL);
        CHECK(strstr(err.msg, "invalid base64") != NULL);
    }
}

// --- JSON cards ---------------------------------------------------------------------------

static void test_v1(void) {
    card *c = parse_str("{\"name\":\"Alice\",\"description\":\"desc\",\"personality\":\"kind\",\"scenario\":\"a park\","
                        "\"first_mes\":\"Hi {{user}}\",\"mes_example\":\"<START>\",\"tags\":7,\"create_date\":\"x\"}");
    if (!c) return;
    CHECK_EQ_INT(c->spec, CARD_SPEC_V1);
    CHECK_STR(c->spec_version, "");
    CHECK_STR(c->name, "Alice");
    CHECK_STR(c->description, "desc");
    CHECK_STR(c->personality, "kind");
    CHECK_STR(c->scenario, "a park");
    CHECK_STR(c->first_mes, "Hi {{user}}");
    CHECK_STR(c->mes_example, "<START>");
    CHECK_STR(c->creator, "");
    CHECK_STR(c->nickname, "");
    CHECK_EQ_INT(c->n_tags, 0); // V1 has no tags: ignored like any unknown field
    CHECK(json_is_object(c->extensions) && json_object_size(c->extensions) == 0);
    card_free(c);
}

static const char *v2_json =
    "{\"spec\":\"chara_card_v2\",\"spec_version\":\"2.0\",\"name\":\"flat copy\",\"data\":{"
    "\"name\":\"Seraphina\",\"description\":\"A guardian \\u00e9lf\",\"personality\":\"caring\","
    "\"scenario\":\"forest\",\"first_mes\":\"*{{char}} smiles at {{user}}*\",\"mes_example\":\"<START>\\n{{char}}: hi\","
    "\"creator_notes\":\"notes\",\"system_prompt\":\"sys\",\"post_history_instructions\":\"phi\","
    "\"alternate_greetings\":[\"g1\",\"g2 \\ud83d\\ude00\"],\"tags\":[\"fantasy\",\"elf\"],\"creator\":\"me\","
    "\"character_version\":\"1.2\",\"extensions\":{\"talkativeness\":\"0.5\",\"depth_prompt\":{\"depth\":4}},"
    "\"character_book\":{\"name\":\"Lore\",\"extensions\":{},\"entries\":["
    "{\"keys\":[\"forest\",\"woods\"],\"content\":\"The forest is old.\",\"extensions\":{},\"enabled\":true,"
    "\"insertion_order\":10,\"case_sensitive\":true,\"name\":\"Forest\",\"priority\":5,\"id\":1,\"comment\":\"c\","
    "\"selective\":true,\"secondary_keys\":[\"dark\"],\"constant\":false,\"position\":\"after_char\"},"
    "{\"keys\":[],\"content\":\"Always.\",\"extensions\":{},\"enabled\":false,\"insertion_order\":20.0,"
    "\"constant\":true,\"position\":\"before_char\"},"
    "{\"keys\":[\"x\"],\"content\":\"d\",\"extensions\":{}}]},"
    "\"unknown_field\":[1,2,3]}}";

static void test_v2(void) {
    card *c = parse_str(v2_json);
    if (!c) return;
    CHECK_EQ_INT(c->spec, CARD_SPEC_V2);
    CHECK_STR(c->spec_version, "2.0");
    CHECK_STR(c->name, "Seraphina"); // data wins over the flat V1 copy
    CHECK_STR(c->description, "A guardian \xc3\xa9lf");
    CHECK_STR(c->personality, "caring");
    CHECK_STR(c->scenario, "forest");
    CHECK_STR(c->first_mes, "*{{char}} smiles at {{user}}*");
    CHECK_STR(c->mes_example, "<START>\n{{char}}: hi");
    CHECK_STR(c->creator_notes, "notes");
    CHECK_STR(c->system_prompt, "sys");
    CHECK_STR(c->post_history_instructions, "phi");
    CHECK_STR(c->creator, "me");
    CHECK_STR(c->character_version, "1.2");
    CHECK_EQ_INT(c->n_alternate_greetings, 2);
    if (c->n_alternate_greetings == 2) {
        CHECK_STR(c->alternate_greetings[0], "g1");
        CHECK_STR(c->alternate_greetings[1], "g2 \xf0\x9f\x98\x80");
    }
    CHECK_EQ_INT(c->n_tags, 2);
    if (c->n_tags == 2) CHECK_STR(c->tags[1], "elf");
    CHECK_STR(json_string_value(json_object_get(c->extensions, "talkativeness")), "0.5");
    CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(c->extensions, "depth_prompt"), "depth")), 4);
    CHECK_STR(c->book_name, "Lore");
    CHECK_EQ_INT(c->n_entries, 3);
    if (c->n_entries == 3) {
        card_entry *e = &c->entries[0];
        CHECK_EQ_INT(e->n_keys, 2);
        if (e->n_keys == 2) CHECK_STR(e->keys[1], "woods");
        CHECK_EQ_INT(e->n_secondary_keys, 1);
        if (e->n_secondary_keys == 1) CHECK_STR(e->secondary_keys[0], "dark");
        CHECK_STR(e->content, "The forest is old.");
        CHECK_STR(e->name, "Forest");
        CHECK_STR(e->comment, "c");
        CHECK(e->enabled && e->case_sensitive && e->selective && !e->constant && !e->use_regex);
        CHECK_EQ_INT(e->insertion_order, 10);
        CHECK_EQ_INT(e->priority, 5);
        CHECK_EQ_INT(e->position, CARD_POS_AFTER_CHAR);
        e = &c->entries[1];
        CHECK_EQ_INT(e->n_keys, 0);
        CHECK(!e->enabled && e->constant);
        CHECK_EQ_INT(e->insertion_order, 20);
        CHECK_EQ_INT(e->position, CARD_POS_BEFORE_CHAR);
        e = &c->entries[2]; // defaults
        CHECK(e->enabled && !e->constant && !e->selective && !e->case_sensitive);
        CHECK_EQ_INT(e->insertion_order, 100);
        CHECK_STR(e->name, "");
    }
    CHECK_EQ_INT(c->n_assets, 0);
    CHECK(c->creator_notes_multilingual == NULL);
    card_free(c);
}

static const char *v3_json =
    "{\"spec\":\"chara_card_v3\",\"spec_version\":\"3.0\",\"data\":{"
    "\"name\":\"Kai\",\"nickname\":\"K\",\"description\":\"d\",\"personality\":\"p\",\"scenario\":\"s\","
    "\"first_mes\":\"f\",\"mes_example\":\"m\",\"creator_notes\":\"cn\",\"system_prompt\":\"\",\"post_history_instructions\":null,"
    "\"alternate_greetings\":[],\"group_only_greetings\":[\"hello all\"],\"tags\":[\"t\"],\"creator\":\"c\","
    "\"character_version\":\"3\",\"extensions\":{},\"source\":[\"https://example.com/kai\"],"
    "\"creator_notes_multilingual\":{\"en\":\"hi\",\"ja\":\"\\u3053\\u3093\"},"
    "\"creation_date\":1700000000,\"modification_date\":1700000500,"
    "\"character_book\":{\"entries\":[{\"keys\":[\"k.*\"],\"content\":\"c\",\"extensions\":{},\"enabled\":true,"
    "\"insertion_order\":0,\"use_regex\":true}]},"
    "\"assets\":[{\"type\":\"icon\",\"uri\":\"ccdefault:\",\"name\":\"main\",\"ext\":\"png\"},"
    "{\"type\":\"emotion\",\"uri\":\"embeded://assets/emotion/happy.png\",\"name\":\"happy\",\"ext\":\"PNG\"},"
    "{\"type\":\"background\",\"uri\":\"embedded://bg/forest.webp\",\"name\":\"forest\",\"ext\":\"webp\"},"
    "{\"type\":\"icon\",\"uri\":\"https://example.com/a.png\",\"name\":\"alt\",\"ext\":\"png\"},"
    "{\"type\":\"icon\",\"uri\":\"data:image/png;base64,AAAA\",\"name\":\"d\",\"ext\":\"png\"},"
    "{\"type\":\"x-sound\",\"uri\":\"sounds/a.ogg\",\"name\":\"a\",\"ext\":\"ogg\"},"
    "{\"type\":\"x-other\",\"uri\":\"ipfs://abc\",\"name\":\"o\"}]}}";

static void check_v3(card *c) {
    CHECK_EQ_INT(c->spec, CARD_SPEC_V3);
    CHECK_STR(c->spec_version, "3.0");
    CHECK_STR(c->name, "Kai");
    CHECK_STR(c->nickname, "K");
    CHECK_STR(c->post_history_instructions, "");
    CHECK_EQ_INT(c->n_alternate_greetings, 0);
    CHECK_EQ_INT(c->n_group_only_greetings, 1);
    if (c->n_group_only_greetings == 1) CHECK_STR(c->group_only_greetings[0], "hello all");
    CHECK_EQ_INT(c->n_source, 1);
    if (c->n_source == 1) CHECK_STR(c->source[0], "https://example.com/kai");
    CHECK_STR(json_string_value(json_object_get(c->creator_notes_multilingual, "ja")), "\xe3\x81\x93\xe3\x82\x93");
    CHECK_EQ_INT(c->creation_date, 1700000000);
    CHECK_EQ_INT(c->modification_date, 1700000500);
    CHECK_EQ_INT(c->n_entries, 1);
    if (c->n_entries == 1) CHECK(c->entries[0].use_regex && c->entries[0].insertion_order == 0);
    CHECK_EQ_INT(c->n_assets, 7);
    if (c->n_assets != 7) return;
    static const struct {
        card_uri_kind kind;
        const char *path, *ext;
    } want[] = {{CARD_URI_DEFAULT, "", "png"},  {CARD_URI_EMBEDDED, "assets/emotion/happy.png", "png"},
                {CARD_URI_EMBEDDED, "bg/forest.webp", "webp"}, {CARD_URI_REMOTE, "", "png"},
                {CARD_URI_DATA, "", "png"},      {CARD_URI_PATH, "sounds/a.ogg", "ogg"},
                {CARD_URI_OTHER, "", ""}};
    for (int i = 0; i < 7; i++) {
        CHECK_EQ_INT(c->assets[i].kind, want[i].kind);
        CHECK_STR(c->assets[i].path, want[i].path);
        CHECK_STR(c->assets[i].ext, want[i].ext);
    }
    CHECK_STR(c->assets[1].type, "emotion");
    CHECK_STR(c->assets[1].name, "happy");
    CHECK_STR(c->assets[1].uri, "embeded://assets/emotion/happy.png");
}

static void test_v3(void) {
    card *c = parse_str(v3_json);
    if (!c) return;
    check_v3(c);
    card_free(c);
    // a UTF-8 BOM before the JSON is skipped
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "\xEF\xBB\xBF%s", v3_json);
    c = parse_str(tmp);
    if (c) check_v3(c);
    card_free(c);
}

// --- PNG cards ----------------------------------------------------------------------------

static test_buf pb;

static void test_png(void) {
    // chara only (V2)
    test_png_begin(&pb);
    card_chunk(&pb, "tEXt", "chara", v2_json);
    test_png_end(&pb);
    card *c = parse_ok(pb.d, pb.n);
    if (c) {
        CHECK_STR(c->name, "Seraphina");
        CHECK_EQ_INT(c->spec, CARD_SPEC_V2);
        CHECK_EQ_INT(c->n_entries, 3);
    }
    card_free(c);
    // ccv3 only, after IDAT and an unrelated tEXt
    test_png_begin(&pb);
    test_png_chunk(&pb, "IDAT", test_png_idat_1x1, sizeof test_png_idat_1x1);
    test_png_chunk(&pb, "tEXt", "Comment\0hello", 13);
    card_chunk(&pb, "tEXt", "ccv3", v3_json);
    test_png_chunk(&pb, "IEND", NULL, 0);
    c = parse_ok(pb.d, pb.n);
    if (c) check_v3(c);
    card_free(c);
    // both: ccv3 wins whatever the order
    test_png_begin(&pb);
    card_chunk(&pb, "tEXt", "chara", v2_json);
    card_chunk(&pb, "tEXt", "ccv3", v3_json);
    test_png_end(&pb);
    c = parse_ok(pb.d, pb.n);
    if (c) CHECK_STR(c->name, "Kai");
    card_free(c);
    // uncompressed iTXt
    test_png_begin(&pb);
    card_chunk(&pb, "iTXt", "chara", v2_json);
    test_png_end(&pb);
    c = parse_ok(pb.d, pb.n);
    if (c) CHECK_STR(c->name, "Seraphina");
    card_free(c);
    // trailing bytes after IEND are ignored
    test_png_begin(&pb);
    card_chunk(&pb, "tEXt", "chara", "{\"name\":\"V1 in PNG\"}");
    test_png_end(&pb);
    test_put(&pb, "junk", 4);
    c = parse_ok(pb.d, pb.n);
    if (c) {
        CHECK_STR(c->name, "V1 in PNG");
        CHECK_EQ_INT(c->spec, CARD_SPEC_V1);
    }
    card_free(c);
}

// The fuzz seed PNG was written by Python (zlib.crc32, zlib.compress,
// base64): an independent check of our CRC and base64.
static void test_png_python(void) {
    char *d = NULL;
    size_t n = 0;
    sim_err err;
    if (file_read_all("tests/fuzz/corpus-card/v3.png", 1 << 20, &d, &n, &err) != SIM_OK) {
        test_skip("tests/fuzz/corpus-card/v3.png not found (run from the checkout)");
        return;
    }
    card *c = parse_ok(d, n);
    if (c) {
        CHECK_EQ_INT(c->spec, CARD_SPEC_V3);
        CHECK_STR(c->nickname, "Sera");
        CHECK_EQ_INT(c->n_assets, 2);
        if (c->n_assets == 2) CHECK_STR(c->assets[1].path, "assets/happy.png");
    }
    card_free(c);
    mem_free(d);
}

static void test_png_errors(void) {
    test_buf *b = &pb;
    test_png_begin(b);
    card_chunk(b, "tEXt", "chara", v2_json);
    test_png_end(b);
    size_t good = b->n;
    // corrupted CRC: flip a byte inside the tEXt data (offset 8 + 25 header + 8 into tEXt)
    b->d[8 + 25 + 8 + 10] ^= 1;
    EXPECT_ERR(b->d, good, SIM_ERR_FORMAT, "PNG chunk tEXt at offset 33: CRC mismatch");
    b->d[8 + 25 + 8 + 10] ^= 1;
    // truncated in the middle of the tEXt chunk
    EXPECT_ERR(b->d, 33 + 100, SIM_ERR_FORMAT, "PNG chunk tEXt at offset 33: length");
    EXPECT_ERR(b->d, 33 + 5, SIM_ERR_FORMAT, "truncated: chunk header at offset 33");
    // no IEND
    EXPECT_ERR(b->d, good - 12, SIM_ERR_FORMAT, "no IEND");
    // a length field past the end of the file (and over 2^31-1)
    uint8_t save[4];
    memcpy(save, b->d + 33, 4);
    memcpy(b->d + 33, "\x00\x10\x00\x00", 4);
    EXPECT_ERR(b->d, good, SIM_ERR_FORMAT, "length 1048576 runs past the end");
    memcpy(b->d + 33, "\xff\xff\xff\xf0", 4);
    EXPECT_ERR(b->d, good, SIM_ERR_FORMAT, "over 2^31-1");
    memcpy(b->d + 33, save, 4);
    // IHDR not first
    test_png_begin(b);
    b->n = 8;
    test_png_chunk(b, "tEXt", "Comment\0x", 9);
    test_png_end(b);
    EXPECT_ERR(b->d, b->n, SIM_ERR_FORMAT, "does not start with a 13-byte IHDR");
    // no card
    test_png_begin(b);
    test_png_end(b);
    EXPECT_ERR(b->d, b->n, SIM_ERR_FORMAT, "PNG has no character card");
    // bad base64
    test_png_begin(b);
    test_png_chunk(b, "tEXt", "chara\0eyJu!!", 12);
    test_png_end(b);
    EXPECT_ERR(b->d, b->n, SIM_ERR_FORMAT, "tEXt chunk chara: invalid base64: byte 0x21 at offset 4");
    // base64 of something that is not JSON
    test_png_begin(b);
    card_chunk(b, "tEXt", "ccv3", "not json");
    test_png_end(b);
    EXPECT_ERR(b->d, b->n, SIM_ERR_FORMAT, "(tEXt chunk ccv3): invalid JSON at line 1");
    // a card error names the chunk and the field
    test_png_begin(b);
    card_chunk(b, "tEXt", "ccv3", "{\"spec\":\"chara_card_v3\",\"data\":{\"name\":\"x\",\"tags\":[1]}}");
    test_png_end(b);
    EXPECT_ERR(b->d, b->n, SIM_ERR_FORMAT, "t.card (tEXt chunk ccv3): data.tags[0] must be a string");
    // compressed text
    test_png_begin(b);
    test_png_chunk(b, "zTXt", "chara\0\0x\x9c", 9);
    test_png_end(b);
    EXPECT_ERR(b->d, b->n, SIM_ERR_UNSUPPORTED, "compressed (zTXt)");
    test_png_begin(b);
    test_png_chunk(b, "iTXt", "ccv3\0\1\0\0\0x", 10);
    test_png_end(b);
    EXPECT_ERR(b->d, b->n, SIM_ERR_UNSUPPORTED, "compressed (iTXt)");
    // a bad chunk type
    test_png_begin(b);
    test_png_chunk(b, "tE1t", "a", 1);
    test_png_end(b);
    EXPECT_ERR(b->d, b->n, SIM_ERR_FORMAT, "invalid type");
}

static void test_json_errors(void) {
    EXPECT_ERR_STR("{\"name\":\"a\xff\"}", SIM_ERR_FORMAT, "invalid JSON at line 1"); // Jansson checks UTF-8 first
    EXPECT_ERR_STR("[1]", SIM_ERR_FORMAT, "not a JSON object");
    EXPECT_ERR_STR("{\"description\":\"x\"}", SIM_ERR_FORMAT, "name is missing");
    EXPECT_ERR_STR("{\"spec\":\"chara_card_v2\",\"data\":{\"name\":\"\"}}", SIM_ERR_FORMAT, "data.name is missing or empty");
    EXPECT_ERR_STR("{\"spec\":\"chara_card_v2\",\"data\":{\"name\":5}}", SIM_ERR_FORMAT, "t.card: data.name must be a string");
    EXPECT_ERR_STR("{\"spec\":\"chara_card_v2\",\"data\":[]}", SIM_ERR_FORMAT, "data must be an object");
    EXPECT_ERR_STR("{\"spec\":\"chara_card_v9\",\"data\":{}}", SIM_ERR_UNSUPPORTED, "unknown spec \"chara_card_v9\"");
    EXPECT_ERR_STR("{\"spec\":2,\"data\":{}}", SIM_ERR_FORMAT, "spec must be a string");
    EXPECT_ERR_STR("{\"spec\":\"chara_card_v2\",\"data\":{\"name\":\"a\",\"alternate_greetings\":[\"a\",\"b\",\"c\",false]}}",
                   SIM_ERR_FORMAT, "data.alternate_greetings[3] must be a string");
    EXPECT_ERR_STR("{\"spec\":\"chara_card_v2\",\"data\":{\"name\":\"a\",\"alternate_greetings\":\"hi\"}}",
                   SIM_ERR_FORMAT, "data.alternate_greetings must be an array");
    EXPECT_ERR_STR("{\"spec\":\"chara_card_v2\",\"data\":{\"name\":\"a\",\"extensions\":[]}}", SIM_ERR_FORMAT,
                   "data.extensions must be an object");
    EXPECT_ERR_STR("{\"spec\":\"chara_card_v2\",\"data\":{\"name\":\"a\",\"character_book\":{\"entries\":[{\"keys\":[\"k\"],"
                   "\"content\":\"c\"},{\"keys\":[\"k\",3]}]}}}",
                   SIM_ERR_FORMAT, "data.character_book.entries[1].keys[1] must be a string");
    EXPECT_ERR_STR("{\"spec\":\"chara_card_v2\",\"data\":{\"name\":\"a\",\"character_book\":{\"entries\":[{\"enabled\":1}]}}}",
                   SIM_ERR_FORMAT, "data.character_book.entries[0].enabled must be true or false");
    EXPECT_ERR_STR("{\"spec\":\"chara_card_v2\",\"data\":{\"name\":\"a\",\"character_book\":{\"entries\":[{\"insertion_order\":1.5}]}}}",
                   SIM_ERR_FORMAT, "data.character_book.entries[0].insertion_order must be an integer");
    EXPECT_ERR_STR("{\"spec\":\"chara_card_v2\",\"data\":{\"name\":\"a\",\"character_book\":{\"entries\":[{\"position\":\"top\"}]}}}",
                   SIM_ERR_FORMAT, "entries[0].position must be");
    EXPECT_ERR_STR("{\"spec\":\"chara_card_v3\",\"data\":{\"name\":\"a\",\"creator_notes_multilingual\":{\"en\":1}}}",
                   SIM_ERR_FORMAT, "data.creator_notes_multilingual.en must be a string");
    EXPECT_ERR_STR("{\"spec\":\"chara_card_v3\",\"data\":{\"name\":\"a\",\"assets\":[{\"type\":\"icon\"}]}}",
                   SIM_ERR_FORMAT, "data.assets[0].uri is missing");
    EXPECT_ERR_STR("{\"spec\":\"chara_card_v3\",\"data\":{\"name\":\"a\",\"assets\":[{\"type\":\"i\",\"uri\":\"ccdefault:\",\"ext\":\"p/g\"}]}}",
                   SIM_ERR_FORMAT, "data.assets[0].ext must be letters and digits");
    // path traversal and absolute paths in asset URIs
    static const char *bad_uris[] = {"embeded://../../etc/passwd", "embedded://a/../../b", "embeded://a\\\\..\\\\b",
                                     "embeded:///etc/passwd",       "../x.png",             "/abs/x.png",
                                     "C:\\\\x.png",                 "embeded://a/%2e%2e/b", "embeded://"};
    static const char *why[] = {"path traversal", "path traversal", "path traversal", "absolute path", "path traversal",
                                "absolute path",  "absolute path",  "path traversal", "empty path"};
    for (size_t i = 0; i < ARRAY_LEN(bad_uris); i++) {
        char json[512], want[128];
        snprintf(json, sizeof json,
                 "{\"spec\":\"chara_card_v3\",\"data\":{\"name\":\"a\",\"assets\":[{\"type\":\"icon\",\"uri\":\"ccdefault:\"},"
                 "{\"type\":\"icon\",\"uri\":\"%s\"}]}}", bad_uris[i]);
        snprintf(want, sizeof want, "t.card: data.assets[1].uri: %s", why[i]);
        EXPECT_ERR_STR(json, SIM_ERR_FORMAT, want);
    }
    // "a..b" is a plain name, not traversal
    card *c = parse_str("{\"spec\":\"chara_card_v3\",\"data\":{\"name\":\"a\",\"assets\":[{\"type\":\"i\",\"uri\":\"embeded://a..b/c..\"}]}}");
    if (c) CHECK_STR(c->assets[0].path, "a..b/c..");
    card_free(c);
}

static void test_limits(void) {
    // 1001 greetings
    size_t cap = 16 << 10;
    char *j = malloc(cap);
    size_t n = (size_t)snprintf(j, cap, "{\"spec\":\"chara_card_v2\",\"data\":{\"name\":\"a\",\"alternate_greetings\":[");
    for (int i = 0; i < CARD_MAX_GREETINGS + 1; i++) n += (size_t)snprintf(j + n, cap - n, "%s\"g\"", i ? "," : "");
    snprintf(j + n, cap - n, "]}}");
    EXPECT_ERR_STR(j, SIM_ERR_RANGE, "data.alternate_greetings has 1001 items (at most 1000)");
    // exactly 1000 are fine
    char *last = strstr(j, "\"g\"]");
    memcpy(last - 1, "]}}", 4);
    card *c = parse_str(j);
    if (c) CHECK_EQ_INT(c->n_alternate_greetings, CARD_MAX_GREETINGS);
    card_free(c);
    free(j);
    // a string over 1 MiB
    cap = CARD_MAX_STRING + 100;
    j = malloc(cap);
    n = (size_t)snprintf(j, cap, "{\"name\":\"a\",\"description\":\"");
    memset(j + n, 'x', CARD_MAX_STRING + 1);
    n += CARD_MAX_STRING + 1;
    memcpy(j + n, "\"}", 3);
    EXPECT_ERR_STR(j, SIM_ERR_RANGE, "description is 1048577 bytes (at most 1048576)");
    free(j);
    // the whole card over 16 MiB
    EXPECT_ERR("{}", (size_t)CARD_MAX_BYTES + 1, SIM_ERR_RANGE, "at most 16777216");
    EXPECT_ERR("", 0, SIM_ERR_FORMAT, "empty");
}

// --- macros ---------------------------------------------------------------------------------

static void test_expand(void) {
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"*{{char}} waves at {{user}}*", "*Seraphina waves at Player*"},
        {"{{CHAR}} {{User}} <BOT> <user> <Bot>", "Seraphina Player Seraphina Player Seraphina"},
        {"{{char}}{{char}}", "SeraphinaSeraphina"},
        {"no macros {{ char }} {{chars}} <b>", "no macros {{ char }} {{chars}} <b>"},
        {"{{char", "{{char"},
        {"", ""},
        {"\xc3\xa9{{user}}\xc3\xa9", "\xc3\xa9Player\xc3\xa9"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char *s = card_expand(cases[i].in, "Seraphina", "Player");
        CHECK_STR(s, cases[i].out);
        mem_free(s);
    }
    char *s = card_expand("{{user}} and {{char}}", NULL, "{{char}}"); // replacements are not expanded again
    CHECK_STR(s, "{{char}} and ");
    mem_free(s);
    mem_fail_after(0);
    s = card_expand("{{char}}", "a", "b");
    CHECK(s == NULL && mem_fail_triggered());
    mem_fail_after(-1);
}

// --- allocation failures ----------------------------------------------------------------------

static void alloc_loop(const void *d, size_t len) {
    int n;
    for (n = 0; n < 10000; n++) {
        card *c = (card *)1;
        sim_err err;
        mem_fail_after(n);
        sim_status st = card_parse(&c, d, len, "t.card", &err);
        bool failed = mem_fail_triggered();
        mem_fail_after(-1);
        if (st == SIM_OK) {
            CHECK(!failed);
            card_free(c);
            break;
        }
        CHECK_MSG(st == SIM_ERR_NOMEM && failed, "allocation %d: %d %s", n, st, err.msg);
        CHECK(c == NULL);
    }
    CHECK(n > 20 && n < 10000);
}

static void test_alloc_failures(void) {
    alloc_loop(v2_json, strlen(v2_json));
    alloc_loop(v3_json, strlen(v3_json));
    test_png_begin(&pb);
    card_chunk(&pb, "tEXt", "ccv3", v3_json);
    test_png_end(&pb);
    alloc_loop(pb.d, pb.n);
}

int main(int argc, char **argv) {
    test_init(argc, argv);
    TEST_RUN(test_crc32);
    TEST_RUN(test_base64);
    TEST_RUN(test_v1);
    TEST_RUN(test_v2);
    TEST_RUN(test_v3);
    TEST_RUN(test_png);
    TEST_RUN(test_png_python);
    TEST_RUN(test_png_errors);
    TEST_RUN(test_json_errors);
    TEST_RUN(test_limits);
    TEST_RUN(test_expand);
    TEST_RUN(test_alloc_failures);
    return test_finish();
}
