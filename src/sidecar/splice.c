/*
 * splice.c - outgoing envelopes written from byte spans (splice.h).  Every
 * step mirrors one of routing.c's result_envelope on jansson objects: the
 * members keep the consumed envelope's order, a result's member replaces
 * the one of the same key in place or is appended, and so on.
 */
#include "splice.h"

#include "protocol.h"
#include "textbuf.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OUT_MEMBERS (2 * JSCAN_MAX_KEYS + 2) /* the envelope's, the result's, id, parent_id */
#define ID_MAX      256                      /* a handler-chosen id compared on the stack */

static bool same_key(const struct jscan_member *m, const char *key, size_t len)
{
    return m->key_len == len && memcmp(m->key, key, len) == 0;
}

/* json_object_set: in place when the key is there, else appended. */
static void set_member(struct jscan_member *out, size_t *n, const char *key, size_t key_len,
                       const char *value, size_t value_len, enum jscan_type type)
{
    size_t i = 0;
    while (i < *n && !same_key(&out[i], key, key_len))
        i++;
    if (i == *n) {
        out[i].key = key;
        out[i].key_len = key_len;
        (*n)++;
    }
    out[i].value = value;
    out[i].value_len = value_len;
    out[i].type = type;
}

static void remove_member(struct jscan_member *out, size_t *n, const char *name)
{
    for (size_t i = 0; i < *n; i++) {
        if (jscan_key_is(&out[i], name)) {
            memmove(&out[i], &out[i + 1], (*n - i - 1) * sizeof *out);
            (*n)--;
            return;
        }
    }
}

/*
 * Write {"k":v,...} from members; the one at index route (if any) is
 * written as the object {route members} with member cur's value replaced
 * by cur_text.  Returns the malloc'd text, NULL on OOM.
 */
static char *write_members(const struct jscan_member *m, size_t n, size_t route,
                           const struct jscan_member *rm, size_t rn, size_t cur,
                           const char *cur_text, size_t *len)
{
    size_t need = 2;
    for (size_t i = 0; i < n; i++)
        need += m[i].key_len + 2 + (i == route ? 0 : m[i].value_len);
    if (route < n) {
        need += 2;
        for (size_t i = 0; i < rn; i++)
            need += rm[i].key_len + 2 + (i == cur ? strlen(cur_text) : rm[i].value_len);
    }
    struct textbuf b = {malloc(need + 1), 0, need + 1, false};
    if (!b.data)
        return NULL;
    textbuf_append(&b, "{", 1);
    for (size_t i = 0; i < n; i++) {
        if (i)
            textbuf_append(&b, ",", 1);
        textbuf_append(&b, m[i].key, m[i].key_len);
        textbuf_append(&b, ":", 1);
        if (i != route) {
            textbuf_append(&b, m[i].value, m[i].value_len);
            continue;
        }
        textbuf_append(&b, "{", 1);
        for (size_t k = 0; k < rn; k++) {
            if (k)
                textbuf_append(&b, ",", 1);
            textbuf_append(&b, rm[k].key, rm[k].key_len);
            textbuf_append(&b, ":", 1);
            if (k == cur)
                textbuf_puts(&b, cur_text);
            else
                textbuf_append(&b, rm[k].value, rm[k].value_len);
        }
        textbuf_append(&b, "}", 1);
    }
    textbuf_append(&b, "}", 1);
    return textbuf_take(&b, len);
}

/* c >= 0 in decimal, NUL-terminated (snprintf costs more than the rest of a splice). */
static void write_integer(char *out, int64_t c)
{
    char rev[24];
    size_t n = 0;
    do {
        rev[n++] = (char)('0' + c % 10);
        c /= 10;
    } while (c > 0);
    while (n)
        *out++ = rev[--n];
    *out = '\0';
}

/* Fan-out result i >= 1: the id "<id>-<i>" and parent_id "<id>", unless the
 * handler chose an id of its own.  Returns 0 (ids may stay empty), 1 when
 * the general path must decide, or -ENOMEM. */
static int fanout_ids(const struct envelope *env, const struct jscan_member *r, size_t rn, size_t i,
                      struct textbuf *ids, size_t *id_len)
{
    const struct jscan_member *rid = jscan_find(r, rn, "id");
    if (rid) {
        char mine[ID_MAX];
        if (rid->type != JSCAN_STRING)
            return rid->type == JSCAN_NULL ? 0 : 1;
        if (jscan_decode(rid->value, rid->value_len, mine, sizeof mine) < 0)
            return 1;
        if (strcmp(mine, env->id) != 0)
            return 0;
    }
    size_t l = strlen(env->id);
    jscan_encode(ids, env->id, l);
    if (!textbuf_failed(ids))
        ids->len--; /* reopen the string for the suffix */
    textbuf_printf(ids, "-%zu\"", i);
    *id_len = ids->len;
    jscan_encode(ids, env->id, l);
    return textbuf_failed(ids) ? -ENOMEM : 0;
}

/* Result i, the canonical object at the start of res (avail bytes; *used
 * gets its length).  Returns 1 with a plan item added, 0 for the general
 * path, or -ENOMEM. */
static int one_result(const struct routing_names *names, const struct envelope *env,
                      const char *res, size_t avail, size_t *used, size_t i,
                      struct route_plan *plan)
{
    const struct envelope_scan *es = env->scan;
    struct jscan_member r[JSCAN_MAX_KEYS];
    int rc = jscan_object_at(res, avail, r, JSCAN_MAX_KEYS, used);
    if (rc < 0)
        return 0;
    size_t rn = (size_t)rc;
    if (!jscan_find(r, rn, "payload"))
        return 0;

    struct jscan_member out[OUT_MEMBERS];
    size_t on = es->top_count;
    memcpy(out, es->top, on * sizeof *out);
    for (size_t k = 0; k < rn; k++)
        set_member(out, &on, r[k].key, r[k].key_len, r[k].value, r[k].value_len, r[k].type);
    if (!jscan_find(es->top, es->top_count, PROTO_PROGRESS_KEY))
        remove_member(out, &on, PROTO_PROGRESS_KEY);

    /* The route: the runtime's, which must keep the actors as they were. */
    const struct jscan_member *eroute = &es->top[es->route_index];
    const struct jscan_member *route = jscan_find(r, rn, "route");
    if (!route)
        route = eroute;
    if (route->type != JSCAN_OBJECT)
        return 0;
    struct jscan_member rm[ENVELOPE_ROUTE_MEMBERS];
    size_t rmn = es->route_count, cur = es->current_index;
    if (route->value_len == eroute->value_len &&
        memcmp(route->value, eroute->value, route->value_len) == 0) {
        memcpy(rm, es->route, rmn * sizeof *rm);
    } else {
        rc = jscan_object(route->value, route->value_len, false, rm, ENVELOPE_ROUTE_MEMBERS);
        if (rc < 0)
            return 0;
        rmn = (size_t)rc;
        const struct jscan_member *a = jscan_find(rm, rmn, "actors");
        if (!a)
            a = jscan_find(rm, rmn, "steps");
        const struct jscan_member *ea = &es->route[es->actors_index];
        const struct jscan_member *c = jscan_find(rm, rmn, "current");
        if (!a || a->value_len != ea->value_len || memcmp(a->value, ea->value, a->value_len) != 0 ||
            !c || c->type != JSCAN_INTEGER)
            return 0;
        cur = (size_t)(c - rm);
    }
    if (rm[cur].type != JSCAN_INTEGER)
        return 0;
    int64_t c = jscan_integer(rm[cur].value, rm[cur].value_len);
    /* Seed-era runtimes return current unchanged; newer ones advance it. */
    if (c == (int64_t)env->current)
        c++;
    else if (c != (int64_t)env->current + 1)
        return 0;
    char cur_text[24];
    write_integer(cur_text, c);

    struct textbuf ids = TEXTBUF_INIT;
    size_t id_len = 0;
    if (i > 0 && env->id) { /* fan-out: there is more than one result */
        rc = fanout_ids(env, r, rn, i, &ids, &id_len);
        if (rc) {
            textbuf_free(&ids);
            return rc < 0 ? rc : 0;
        }
        if (ids.len) {
            set_member(out, &on, "\"id\"", 4, ids.data, id_len, JSCAN_STRING);
            set_member(out, &on, "\"parent_id\"", 11, ids.data + id_len, ids.len - id_len,
                       JSCAN_STRING);
        }
    }

    /* What envelope_from_json would check of the result. */
    size_t route_at = 0;
    while (!jscan_key_is(&out[route_at], "route"))
        route_at++;
    if (!envelope_members_valid(out, on)) {
        textbuf_free(&ids);
        return 0;
    }
    size_t len = 0;
    char *text = write_members(out, on, route_at, rm, rmn, cur, cur_text, &len);
    textbuf_free(&ids);
    if (!text)
        return -ENOMEM;
    const char *next = envelope_actor(env, (size_t)c);
    rc = route_plan_add_text(plan, next ? next : names->happy_end, text, len,
                             next ? PUBLISH_ROUTING : PUBLISH_HAPPY_END);
    return rc ? rc : 1;
}

int splice_plan_response(const struct routing_names *names, const struct envelope *env,
                         const char *answer, size_t len, struct route_plan *plan)
{
    if (!env->scan)
        return 0;
    if ((len == 4 && memcmp(answer, "null", 4) == 0) ||
        (len == 2 && memcmp(answer, "[]", 2) == 0)) {
        const struct envelope_scan *es = env->scan;
        size_t tl = 0;
        char *text = write_members(es->top, es->top_count, SIZE_MAX, NULL, 0, 0, NULL, &tl);
        route_plan_init(plan, OUTCOME_EMPTY_RESPONSE, NULL);
        int rc = route_plan_add_text(plan, names->happy_end, text, tl, PUBLISH_HAPPY_END);
        if (rc)
            route_plan_free(plan);
        return rc ? rc : 1;
    }
    if (len < 3 || answer[0] != '[')
        return 0;
    route_plan_init(plan, OUTCOME_SUCCESS, NULL);
    int rc;
    /* One pass: [result,result,...] */
    for (size_t at = 1, i = 0;; i++) {
        size_t used = 0;
        rc = one_result(names, env, answer + at, len - at, &used, i, plan);
        if (rc != 1)
            break;
        at += used;
        if (at + 1 == len && answer[at] == ']')
            break;
        if (at >= len || answer[at] != ',') {
            rc = 0;
            break;
        }
        at++;
    }
    if (rc != 1)
        route_plan_free(plan);
    return rc;
}
