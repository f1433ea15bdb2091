// stage.c — the stage state and its commands (see stage.h).
#include "story/stage.h"

#include <stdio.h>
#include <string.h>

// --- id lookup ------------------------------------------------------------------------
// Scenes, characters, bodies, variants and episodes all start with
// `const char *id`, so one lookup serves them all.

static const char *id_at(const void *arr, size_t stride, int i) {
    return *(const char *const *)((const char *)arr + (size_t)i * stride);
}

static int find_id(const void *arr, size_t stride, int n, const char *id) {
    for (int i = 0; i < n; i++)
        if (strcmp(id_at(arr, stride, i), id) == 0) return i;
    return -1;
}

// "a, b, c, d, e, …" — the first few ids, for refusals.
static void list_ids(char *buf, size_t cap, const void *arr, size_t stride, int n) {
    enum { SHOWN = 6 };
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < n && i < SHOWN && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%s", i ? ", " : "", id_at(arr, stride, i));
    if (n > SHOWN && len < cap) snprintf(buf + len, cap - len, ", … (%d in all)", n);
}

// Resolves `id` in a list or refuses naming it and the valid ones.
static sim_status resolve(const char *cmd, const char *what, const char *owner, const void *arr, size_t stride,
                          int n, const char *id, int *out, sim_err *err) {
    int i = find_id(arr, stride, n, id);
    if (i >= 0) {
        *out = i;
        return SIM_OK;
    }
    char valid[200];
    list_ids(valid, sizeof valid, arr, stride, n);
    if (owner)
        return err_set(err, SIM_ERR_FORMAT, "%s: '%s' has no %s '%.64s' (valid: %s)", cmd, owner, what, id, valid);
    return err_set(err, SIM_ERR_FORMAT, "%s: no %s has the id '%.64s' (valid: %s)", cmd, what, id, valid);
}

// --- argument objects -------------------------------------------------------------------

// Refuses a field of args not among the allowed names (NULL-terminated).
static sim_status only_fields(const char *cmd, const json_t *args, const char *const *allowed, sim_err *err) {
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)args, k, v) {
        bool ok = false;
        for (int i = 0; allowed[i]; i++) ok = ok || strcmp(k, allowed[i]) == 0;
        if (!ok) {
            char list[200] = "";
            size_t len = 0;
            for (int i = 0; allowed[i] && len < sizeof list; i++)
                len += (size_t)snprintf(list + len, sizeof list - len, "%s\"%s\"", i ? ", " : "", allowed[i]);
            return err_set(err, SIM_ERR_FORMAT, "%s: unknown field \"%.64s\" (allowed: %s)", cmd, k, list);
        }
    }
    return SIM_OK;
}

// A string field: *out = NULL when absent and optional.
static sim_status str_field(const char *cmd, const json_t *args, const char *key, bool required, const char **out,
                            sim_err *err) {
    json_t *v = json_object_get(args, key);
    *out = NULL;
    if (!v) {
        if (required) return err_set(err, SIM_ERR_FORMAT, "%s: missing \"%s\" (a string id)", cmd, key);
        return SIM_OK;
    }
    if (!json_is_string(v)) return err_set(err, SIM_ERR_FORMAT, "%s: \"%s\" must be a string id", cmd, key);
    *out = json_string_value(v);
    return SIM_OK;
}

// --- start -----------------------------------------------------------------------------

sim_status stage_start(stage *st, const scn_scenario *s, int episode, sim_err *err) {
    if (episode < 0 || episode >= s->n_episodes)
        return err_set(err, SIM_ERR_ARG, "episode %d is out of range (the scenario has %d)", episode, s->n_episodes);
    const scn_episode *e = &s->episodes[episode];
    if (e->n_on_stage > STAGE_MAX_ON_STAGE)
        return err_set(err, SIM_ERR_FORMAT, "episode '%s' starts with %d characters on stage (at most %d)", e->id,
                       e->n_on_stage, STAGE_MAX_ON_STAGE);
    memset(st, 0, sizeof *st);
    st->episode = episode;
    st->scene = e->start_scene_index;
    st->n_on_stage = e->n_on_stage;
    for (int i = 0; i < e->n_on_stage; i++)
        st->on_stage[i] = (stage_char){e->on_stage[i].index, e->on_stage[i].body_index, e->on_stage[i].outfit_index,
                                       e->on_stage[i].expression_index};
    st->minutes = 0;
    for (int i = 0; i < s->n_variables; i++) st->vars[i] = s->variables[i].def;
    return SIM_OK;
}

int stage_find(const stage *st, int character) {
    for (int i = 0; i < st->n_on_stage; i++)
        if (st->on_stage[i].character == character) return i;
    return -1;
}

// --- check -----------------------------------------------------------------------------

static const char *const CMD_NAMES[] = {"setScene",  "addCharacter", "removeCharacter", "setExpression",
                                        "setOutfit", "advanceClock", "setVariable"};

// Resolves "character" and requires it on stage (want_on = true) or off it.
static sim_status character_arg(const char *name, const stage *st, const scn_scenario *s, const json_t *args,
                                bool want_on, int *ch, sim_err *err) {
    const char *id;
    sim_status rc = str_field(name, args, "character", true, &id, err);
    if (rc == SIM_OK)
        rc = resolve(name, "character", NULL, s->characters, sizeof *s->characters, s->n_characters, id, ch, err);
    if (rc != SIM_OK) return rc;
    bool on = stage_find(st, *ch) >= 0;
    if (want_on && !on) return err_set(err, SIM_ERR_FORMAT, "%s: '%s' is not on stage", name, id);
    if (!want_on && on) return err_set(err, SIM_ERR_FORMAT, "%s: '%s' is already on stage", name, id);
    return SIM_OK;
}

// A variable's value from JSON (its type's form) as the int the stage holds.
static sim_status var_from_json(const char *where, const scn_variable *x, const json_t *j, int *out, sim_err *err) {
    switch (x->type) {
    case SCN_VAR_INT:
        if (!json_is_integer(j))
            return err_set(err, SIM_ERR_FORMAT, "%s: '%s' takes an integer %d..%d", where, x->id, x->min, x->max);
        if (json_integer_value(j) < x->min || json_integer_value(j) > x->max)
            return err_set(err, SIM_ERR_FORMAT, "%s: %lld is outside '%s''s range %d..%d", where,
                           (long long)json_integer_value(j), x->id, x->min, x->max);
        *out = (int)json_integer_value(j);
        return SIM_OK;
    case SCN_VAR_BOOL:
        if (!json_is_boolean(j)) return err_set(err, SIM_ERR_FORMAT, "%s: '%s' takes true or false", where, x->id);
        *out = json_is_true(j);
        return SIM_OK;
    case SCN_VAR_ENUM:
        if (!json_is_string(j))
            return err_set(err, SIM_ERR_FORMAT, "%s: '%s' takes one of its value ids (a string)", where, x->id);
        for (int i = 0; i < x->n_values; i++)
            if (strcmp(x->values[i], json_string_value(j)) == 0) {
                *out = i;
                return SIM_OK;
            }
        char valid[200];
        list_ids(valid, sizeof valid, x->values, sizeof *x->values, x->n_values);
        return err_set(err, SIM_ERR_FORMAT, "%s: '%.64s' is not a value of '%s' (valid: %s)", where,
                       json_string_value(j), x->id, valid);
    }
    return err_set(err, SIM_ERR_FORMAT, "%s: bad variable type", where);
}

json_t *stage_var_json(const stage *st, const scn_scenario *s, int i) {
    const scn_variable *x = &s->variables[i];
    switch (x->type) {
    case SCN_VAR_INT: return json_integer(st->vars[i]);
    case SCN_VAR_BOOL: return json_boolean(st->vars[i]);
    case SCN_VAR_ENUM: return json_string(x->values[st->vars[i]]);
    }
    return NULL;
}

bool stage_holds(const stage *st, const scn_scenario *s, const scn_cond *c) {
    switch (c->kind) {
    case SCN_COND_ALL:
        for (int i = 0; i < c->n_sub; i++)
            if (!stage_holds(st, s, &c->sub[i])) return false;
        return true;
    case SCN_COND_ANY:
        for (int i = 0; i < c->n_sub; i++)
            if (stage_holds(st, s, &c->sub[i])) return true;
        return false;
    case SCN_COND_NOT: return !stage_holds(st, s, &c->sub[0]);
    case SCN_COND_VARIABLE: {
        int x = st->vars[c->index];
        return c->op == SCN_OP_EQ ? x == c->value : c->op == SCN_OP_GE ? x >= c->value : x <= c->value;
    }
    case SCN_COND_SCENE: return st->scene == c->index;
    case SCN_COND_ON_STAGE: return stage_find(st, c->index) >= 0;
    case SCN_COND_CLOCK: return st->minutes >= c->value;
    }
    return false;
}

sim_status stage_check(const stage *st, const scn_scenario *s, const json_t *cmd, stage_cmd *out, sim_err *err) {
    if (!json_is_object(cmd) || json_object_size(cmd) != 1)
        return err_set(err, SIM_ERR_FORMAT,
                       "a stage command is a JSON object with exactly one key, the command name (got %s)",
                       json_is_object(cmd) ? "an object with another number of keys" : "no object");
    const char *name = NULL;
    json_t *args = NULL;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)cmd, k, v) {
        name = k;
        args = v;
    }
    int kind = -1;
    for (int i = 0; i < (int)ARRAY_LEN(CMD_NAMES); i++)
        if (strcmp(name, CMD_NAMES[i]) == 0) kind = i;
    if (kind < 0)
        return err_set(err, SIM_ERR_FORMAT,
                       "unknown stage command '%.64s' (known: setScene, addCharacter, removeCharacter, "
                       "setExpression, setOutfit, advanceClock, setVariable)",
                       name);
    if (!json_is_object(args))
        return err_set(err, SIM_ERR_FORMAT, "%s: the arguments must be a JSON object", name);

    stage_cmd c = {.kind = (stage_cmd_kind)kind, -1, -1, -1, -1, -1, -1, -1, -1};
    sim_status rc;
    const char *id;
    switch (c.kind) {
    case STAGE_CMD_SET_SCENE: {
        static const char *const f[] = {"scene", NULL};
        if ((rc = only_fields(name, args, f, err)) != SIM_OK) return rc;
        if ((rc = str_field(name, args, "scene", true, &id, err)) != SIM_OK) return rc;
        if ((rc = resolve(name, "scene", NULL, s->scenes, sizeof *s->scenes, s->n_scenes, id, &c.scene, err)))
            return rc;
        if (c.scene == st->scene)
            return err_set(err, SIM_ERR_FORMAT, "%s: '%s' is already the current scene", name, id);
        break;
    }
    case STAGE_CMD_ADD_CHARACTER: {
        static const char *const f[] = {"character", "body", "outfit", "expression", NULL};
        if ((rc = only_fields(name, args, f, err)) != SIM_OK) return rc;
        const char *body, *outfit, *expr;
        if ((rc = str_field(name, args, "body", false, &body, err)) ||
            (rc = str_field(name, args, "outfit", false, &outfit, err)) ||
            (rc = str_field(name, args, "expression", false, &expr, err)))
            return rc;
        if ((rc = character_arg(name, st, s, args, false, &c.character, err))) return rc;
        const scn_character *ch = &s->characters[c.character];
        c.body = c.outfit = c.expression = 0;
        if (body && (rc = resolve(name, "body", ch->id, ch->bodies, sizeof *ch->bodies, ch->n_bodies, body, &c.body,
                                  err)))
            return rc;
        if (outfit && (rc = resolve(name, "outfit", ch->id, ch->outfits, sizeof *ch->outfits, ch->n_outfits, outfit,
                                    &c.outfit, err)))
            return rc;
        if (expr && (rc = resolve(name, "expression", ch->id, ch->expressions, sizeof *ch->expressions,
                                  ch->n_expressions, expr, &c.expression, err)))
            return rc;
        if (st->n_on_stage >= STAGE_MAX_ON_STAGE)
            return err_set(err, SIM_ERR_FORMAT, "%s: the stage is full (%d characters)", name, STAGE_MAX_ON_STAGE);
        break;
    }
    case STAGE_CMD_REMOVE_CHARACTER: {
        static const char *const f[] = {"character", NULL};
        if ((rc = only_fields(name, args, f, err)) != SIM_OK) return rc;
        if ((rc = character_arg(name, st, s, args, true, &c.character, err))) return rc;
        break;
    }
    case STAGE_CMD_SET_EXPRESSION:
    case STAGE_CMD_SET_OUTFIT: {
        bool is_outfit = c.kind == STAGE_CMD_SET_OUTFIT;
        const char *field = is_outfit ? "outfit" : "expression";
        const char *const f[] = {"character", field, NULL};
        if ((rc = only_fields(name, args, f, err)) != SIM_OK) return rc;
        if ((rc = str_field(name, args, field, true, &id, err)) != SIM_OK) return rc;
        if ((rc = character_arg(name, st, s, args, true, &c.character, err))) return rc;
        const scn_character *ch = &s->characters[c.character];
        const stage_char *sc = &st->on_stage[stage_find(st, c.character)];
        int *dst = is_outfit ? &c.outfit : &c.expression;
        if (is_outfit) rc = resolve(name, "outfit", ch->id, ch->outfits, sizeof *ch->outfits, ch->n_outfits, id, dst, err);
        else rc = resolve(name, "expression", ch->id, ch->expressions, sizeof *ch->expressions, ch->n_expressions, id,
                          dst, err);
        if (rc) return rc;
        if (*dst == (is_outfit ? sc->outfit : sc->expression))
            return err_set(err, SIM_ERR_FORMAT, "%s: '%s' already has %s '%s'", name, ch->id, field, id);
        break;
    }
    case STAGE_CMD_ADVANCE_CLOCK: {
        static const char *const f[] = {"minutes", NULL};
        if ((rc = only_fields(name, args, f, err)) != SIM_OK) return rc;
        json_t *m = json_object_get(args, "minutes");
        if (!m) return err_set(err, SIM_ERR_FORMAT, "%s: missing \"minutes\" (an integer 1..%d)", name, STAGE_MAX_STEP);
        if (!json_is_integer(m))
            return err_set(err, SIM_ERR_FORMAT, "%s: \"minutes\" must be an integer 1..%d", name, STAGE_MAX_STEP);
        json_int_t n = json_integer_value(m);
        if (n < 1 || n > STAGE_MAX_STEP)
            return err_set(err, SIM_ERR_FORMAT, "%s: \"minutes\" must be 1..%d (got %lld)", name, STAGE_MAX_STEP,
                           (long long)n);
        if (st->minutes > STAGE_MAX_MINUTES - n)
            return err_set(err, SIM_ERR_FORMAT, "%s: the clock cannot pass %d minutes", name, STAGE_MAX_MINUTES);
        c.minutes = (int)n;
        break;
    }
    case STAGE_CMD_SET_VARIABLE: {
        static const char *const f[] = {"variable", "value", NULL};
        if ((rc = only_fields(name, args, f, err)) != SIM_OK) return rc;
        if ((rc = str_field(name, args, "variable", true, &id, err)) ||
            (rc = resolve(name, "variable", NULL, s->variables, sizeof *s->variables, s->n_variables, id, &c.variable,
                          err)))
            return rc;
        json_t *val = json_object_get(args, "value");
        if (!val) return err_set(err, SIM_ERR_FORMAT, "%s: missing \"value\"", name);
        if ((rc = var_from_json(name, &s->variables[c.variable], val, &c.value, err))) return rc;
        if (c.value == st->vars[c.variable])
            return err_set(err, SIM_ERR_FORMAT, "%s: '%s' already has that value", name, id);
        break;
    }
    }
    *out = c;
    return SIM_OK;
}

// --- apply -----------------------------------------------------------------------------

void stage_apply(stage *st, const stage_cmd *c) {
    int at = c->character >= 0 ? stage_find(st, c->character) : -1;
    switch (c->kind) {
    case STAGE_CMD_SET_SCENE:
        ASSERT(c->scene >= 0 && c->scene != st->scene);
        st->scene = c->scene;
        break;
    case STAGE_CMD_ADD_CHARACTER:
        ASSERT(at < 0 && st->n_on_stage < STAGE_MAX_ON_STAGE);
        st->on_stage[st->n_on_stage++] = (stage_char){c->character, c->body, c->outfit, c->expression};
        break;
    case STAGE_CMD_REMOVE_CHARACTER:
        ASSERT(at >= 0);
        memmove(&st->on_stage[at], &st->on_stage[at + 1], (size_t)(st->n_on_stage - at - 1) * sizeof *st->on_stage);
        st->n_on_stage--;
        break;
    case STAGE_CMD_SET_EXPRESSION:
        ASSERT(at >= 0 && c->expression >= 0);
        st->on_stage[at].expression = c->expression;
        break;
    case STAGE_CMD_SET_OUTFIT:
        ASSERT(at >= 0 && c->outfit >= 0);
        st->on_stage[at].outfit = c->outfit;
        break;
    case STAGE_CMD_ADVANCE_CLOCK:
        ASSERT(c->minutes >= 1 && c->minutes <= STAGE_MAX_STEP && st->minutes <= STAGE_MAX_MINUTES - c->minutes);
        st->minutes += c->minutes;
        break;
    case STAGE_CMD_SET_VARIABLE:
        ASSERT(c->variable >= 0 && c->value != st->vars[c->variable]);
        st->vars[c->variable] = c->value;
        break;
    }
}

// --- JSON ------------------------------------------------------------------------------

void stage_clock_format(int minutes, char buf[STAGE_CLOCK_SIZE]) {
    if (minutes < 0) minutes = 0;
    snprintf(buf, STAGE_CLOCK_SIZE, "%02d:%02d", minutes / 60, minutes % 60);
}

json_t *stage_to_json(const stage *st, const scn_scenario *s) {
    char clock[STAGE_CLOCK_SIZE];
    stage_clock_format(st->minutes, clock);
    json_t *chars = json_array();
    json_t *j = json_pack("{s:s, s:s, s:i, s:s, s:o}", "episode", s->episodes[st->episode].id, "scene",
                          s->scenes[st->scene].id, "minutes", st->minutes, "clock", clock, "characters", chars);
    if (!j) return NULL; // json_pack released chars (or it was NULL)
    for (int i = 0; i < st->n_on_stage; i++) {
        const stage_char *c = &st->on_stage[i];
        const scn_character *ch = &s->characters[c->character];
        json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "character", ch->id, "body", ch->bodies[c->body].id, "outfit",
                              ch->outfits[c->outfit].id, "expression", ch->expressions[c->expression].id);
        if (!o || json_array_append_new(chars, o) != 0) {
            json_decref(j);
            return NULL;
        }
    }
    json_t *vars = json_object();
    if (!vars || json_object_set_new(j, "variables", vars) != 0) {
        json_decref(j);
        return NULL;
    }
    for (int i = 0; i < s->n_variables; i++)
        if (json_object_set_new(vars, s->variables[i].id, stage_var_json(st, s, i)) != 0) {
            json_decref(j);
            return NULL;
        }
    return j;
}

sim_status stage_from_json(stage *st, const scn_scenario *s, const json_t *j, sim_err *err) {
    static const char *const NAME = "stage";
    if (!json_is_object(j)) return err_set(err, SIM_ERR_FORMAT, "stage: the state must be a JSON object");
    static const char *const f[] = {"episode", "scene", "minutes", "clock", "characters", "variables", NULL};
    sim_status rc;
    if ((rc = only_fields(NAME, j, f, err))) return rc;
    stage t;
    memset(&t, 0, sizeof t);
    const char *id;
    if ((rc = str_field(NAME, j, "episode", true, &id, err)) ||
        (rc = resolve(NAME, "episode", NULL, s->episodes, sizeof *s->episodes, s->n_episodes, id, &t.episode, err)))
        return rc;
    if ((rc = str_field(NAME, j, "scene", true, &id, err)) ||
        (rc = resolve(NAME, "scene", NULL, s->scenes, sizeof *s->scenes, s->n_scenes, id, &t.scene, err)))
        return rc;
    json_t *m = json_object_get(j, "minutes");
    if (!json_is_integer(m) || json_integer_value(m) < 0 || json_integer_value(m) > STAGE_MAX_MINUTES)
        return err_set(err, SIM_ERR_FORMAT, "stage: \"minutes\" must be an integer 0..%d", STAGE_MAX_MINUTES);
    t.minutes = (int)json_integer_value(m);
    json_t *clock = json_object_get(j, "clock");
    if (clock) {
        char want[STAGE_CLOCK_SIZE];
        stage_clock_format(t.minutes, want);
        if (!json_is_string(clock) || strcmp(json_string_value(clock), want) != 0)
            return err_set(err, SIM_ERR_FORMAT, "stage: \"clock\" must be \"%s\" (from \"minutes\": %d)", want,
                           t.minutes);
    }
    json_t *chars = json_object_get(j, "characters");
    if (!json_is_array(chars)) return err_set(err, SIM_ERR_FORMAT, "stage: \"characters\" must be an array");
    if (json_array_size(chars) > STAGE_MAX_ON_STAGE)
        return err_set(err, SIM_ERR_FORMAT, "stage: %zu characters on stage (at most %d)", json_array_size(chars),
                       STAGE_MAX_ON_STAGE);
    static const char *const cf[] = {"character", "body", "outfit", "expression", NULL};
    for (size_t i = 0; i < json_array_size(chars); i++) {
        json_t *o = json_array_get(chars, i);
        char where[64];
        snprintf(where, sizeof where, "stage: characters[%zu]", i);
        if (!json_is_object(o)) return err_set(err, SIM_ERR_FORMAT, "%s: must be an object", where);
        if ((rc = only_fields(where, o, cf, err))) return rc;
        const char *cid, *body, *outfit, *expr;
        if ((rc = str_field(where, o, "character", true, &cid, err)) ||
            (rc = str_field(where, o, "body", true, &body, err)) ||
            (rc = str_field(where, o, "outfit", true, &outfit, err)) ||
            (rc = str_field(where, o, "expression", true, &expr, err)))
            return rc;
        stage_char c;
        if ((rc = resolve(where, "character", NULL, s->characters, sizeof *s->characters, s->n_characters, cid,
                          &c.character, err)))
            return rc;
        if (stage_find(&t, c.character) >= 0)
            return err_set(err, SIM_ERR_FORMAT, "%s: '%s' is on stage twice", where, cid);
        const scn_character *ch = &s->characters[c.character];
        if ((rc = resolve(where, "body", ch->id, ch->bodies, sizeof *ch->bodies, ch->n_bodies, body, &c.body, err)) ||
            (rc = resolve(where, "outfit", ch->id, ch->outfits, sizeof *ch->outfits, ch->n_outfits, outfit, &c.outfit,
                          err)) ||
            (rc = resolve(where, "expression", ch->id, ch->expressions, sizeof *ch->expressions, ch->n_expressions,
                          expr, &c.expression, err)))
            return rc;
        t.on_stage[t.n_on_stage++] = c;
    }
    for (int i = 0; i < s->n_variables; i++) t.vars[i] = s->variables[i].def;
    json_t *vars = json_object_get(j, "variables");
    if (vars && !json_is_object(vars)) return err_set(err, SIM_ERR_FORMAT, "stage: \"variables\" must be an object");
    const char *vk;
    json_t *vv;
    json_object_foreach(vars, vk, vv) {
        int vi;
        if ((rc = resolve(NAME, "variable", NULL, s->variables, sizeof *s->variables, s->n_variables, vk, &vi, err)) ||
            (rc = var_from_json(NAME, &s->variables[vi], vv, &t.vars[vi], err)))
            return rc;
    }
    *st = t;
    return SIM_OK;
}

// --- what can be done now --------------------------------------------------------------------

int stage_settable_scenes(const stage *st, const scn_scenario *s, int *out) {
    int n = 0;
    for (int i = 0; i < s->n_scenes; i++)
        if (i != st->scene) out[n++] = i;
    return n;
}

int stage_addable_characters(const stage *st, const scn_scenario *s, int *out) {
    int n = 0;
    if (st->n_on_stage >= STAGE_MAX_ON_STAGE) return 0;
    for (int i = 0; i < s->n_characters; i++)
        if (stage_find(st, i) < 0) out[n++] = i;
    return n;
}

static int switchable(const stage *st, int character, int n_variants, bool outfits, int *out) {
    int at = stage_find(st, character), n = 0;
    if (at < 0) return 0;
    int cur = outfits ? st->on_stage[at].outfit : st->on_stage[at].expression;
    for (int i = 0; i < n_variants; i++)
        if (i != cur) out[n++] = i;
    return n;
}

int stage_switchable_outfits(const stage *st, const scn_scenario *s, int character, int *out) {
    ASSERT(character >= 0 && character < s->n_characters);
    return switchable(st, character, s->characters[character].n_outfits, true, out);
}

int stage_switchable_expressions(const stage *st, const scn_scenario *s, int character, int *out) {
    ASSERT(character >= 0 && character < s->n_characters);
    return switchable(st, character, s->characters[character].n_expressions, false, out);
}
