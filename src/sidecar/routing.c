#include "routing.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const outcome_error_codes[] = {"", "", "", "msg_parsing_error", ""};

static struct route_publish *plan_grow(struct route_plan *plan, const char *actor)
{
    struct route_publish *items = realloc(plan->items, (plan->count + 1) * sizeof *items);
    if (!items)
        return NULL;
    plan->items = items;
    char *name = strdup(actor);
    if (!name)
        return NULL;
    struct route_publish *p = &items[plan->count];
    memset(p, 0, sizeof *p);
    p->actor = name;
    return p;
}

static int plan_add(struct route_plan *plan, const char *actor, json_t *body,
                    enum publish_kind kind)
{
    struct route_publish *p = body ? plan_grow(plan, actor) : NULL;
    if (!p) {
        json_decref(body);
        return -ENOMEM;
    }
    p->body = body;
    p->kind = kind;
    plan->count++;
    return 0;
}

int route_plan_add_text(struct route_plan *plan, const char *actor, char *text, size_t len,
                        enum publish_kind kind)
{
    struct route_publish *p = text ? plan_grow(plan, actor) : NULL;
    if (!p) {
        free(text);
        return -ENOMEM;
    }
    p->text = text;
    p->text_len = len;
    p->kind = kind;
    plan->count++;
    return 0;
}

void route_plan_free(struct route_plan *plan)
{
    if (!plan)
        return;
    for (size_t i = 0; i < plan->count; i++) {
        free(plan->items[i].actor);
        json_decref(plan->items[i].body);
        free(plan->items[i].text);
    }
    free(plan->items);
    memset(plan, 0, sizeof *plan);
}

void route_plan_init(struct route_plan *plan, enum route_outcome outcome, const char *code)
{
    memset(plan, 0, sizeof *plan);
    plan->outcome = outcome;
    snprintf(plan->error_code, sizeof plan->error_code, "%s",
             code ? code : outcome_error_codes[outcome]);
}

json_t *routing_error_envelope(const struct routing_names *names, const struct envelope *env,
                               const char *code, json_t *details)
{
    /* Start from a shallow copy so unknown fields, id, parent_id, route and
     * headers travel with the error unchanged. */
    json_t *out = json_copy(env->root);
    json_t *payload = json_object();
    json_t *det = details ? json_copy(details) : json_object();
    if (!out || !payload || !det)
        goto fail;
    if (!json_object_get(det, "message"))
        json_object_set_new(det, "message", json_string(""));
    if (!json_object_get(det, "type"))
        json_object_set_new(det, "type", json_string(""));
    if (json_object_set_new(det, "actor", json_string(names->actor)))
        goto fail;
    if (json_object_set_new(payload, "error", json_string(code)))
        goto fail;
    if (json_object_set_new(payload, "details", det)) {
        det = NULL;
        goto fail;
    }
    det = NULL;
    if (json_object_set(payload, "original_payload", json_object_get(env->root, "payload")))
        goto fail;
    if (json_object_set_new(out, "error", json_string(code)))
        goto fail;
    if (json_object_set_new(out, "payload", payload)) {
        payload = NULL;
        goto fail;
    }
    return out;
fail:
    json_decref(out);
    json_decref(payload);
    json_decref(det);
    return NULL;
}

static json_t *details_new(const char *type, const char *message)
{
    return json_pack("{s:s, s:s}", "message", message ? message : "", "type", type ? type : "");
}

int routing_plan_error(const struct routing_names *names, const struct envelope *env,
                       const char *code, const char *type, const char *message,
                       struct route_plan *plan)
{
    route_plan_init(plan, OUTCOME_SIDECAR_ERROR, code);
    json_t *details = details_new(type, message);
    if (!details)
        return -ENOMEM;
    json_t *body = routing_error_envelope(names, env, code, details);
    json_decref(details);
    return plan_add(plan, names->error_end, body, PUBLISH_ERROR_END);
}

/* Length of the valid UTF-8 sequence at p (n bytes left), or 0 if invalid. */
static size_t utf8_seq_len(const unsigned char *p, size_t n)
{
    size_t len;
    unsigned int cp;
    if (p[0] < 0x80)
        return 1;
    if ((p[0] & 0xE0) == 0xC0) {
        len = 2;
        cp = p[0] & 0x1F;
    } else if ((p[0] & 0xF0) == 0xE0) {
        len = 3;
        cp = p[0] & 0x0F;
    } else if ((p[0] & 0xF8) == 0xF0) {
        len = 4;
        cp = p[0] & 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    /* Overlong forms, surrogates and values past U+10FFFF are invalid. */
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
        return 0;
    return len;
}

json_t *routing_lossy_string(const char *data, size_t len)
{
    char *buf = malloc(len * 3 + 1);
    if (!buf)
        return NULL;
    const unsigned char *p = (const unsigned char *)data;
    size_t out = 0;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_seq_len(p + i, len - i);
        if (n == 0) {
            /* Three bytes into the middle of the buffer, not a string copy. */
            // NOLINTNEXTLINE(bugprone-not-null-terminated-result)
            memcpy(buf + out, "\xEF\xBF\xBD", 3); /* U+FFFD */
            out += 3;
            i++;
        } else {
            memcpy(buf + out, p + i, n);
            out += n;
            i += n;
        }
    }
    json_t *s = json_stringn(buf, out);
    free(buf);
    return s;
}

int routing_queue_name(const char *prefix, const char *actor, char *queue, size_t queuelen,
                       char *why, size_t whylen)
{
    int n = snprintf(queue, queuelen, "%s%s", prefix, actor);
    if (n < 0 || (size_t)n > ROUTING_QUEUE_MAX || (size_t)n >= queuelen) {
        snprintf(why, whylen,
                 "destination queue name of %d bytes (%.40s...) is longer than "
                 "AMQP's %d",
                 n, queue, ROUTING_QUEUE_MAX);
        return -EINVAL;
    }
    if (strncmp(queue, "amq.", 4) == 0) {
        snprintf(why, whylen, "destination queue %s uses the broker's reserved amq. prefix", queue);
        return -EINVAL;
    }
    return 0;
}

int routing_plan_malformed(const struct routing_names *names, const char *body, size_t len,
                           size_t parse_max, const char *code, const char *type, const char *reason,
                           struct route_plan *plan)
{
    if (!code)
        code = "msg_parsing_error";
    route_plan_init(plan, OUTCOME_PARSE_ERROR, code);
    json_t *out = json_object();
    json_t *payload = json_object();
    json_t *details = details_new(type ? type : "ValueError", reason);
    bool truncated = len > ROUTING_ORIGINAL_MAX;
    json_t *raw = routing_lossy_string(body, truncated ? ROUTING_ORIGINAL_MAX : len);
    if (!out || !payload || !details || !raw)
        goto fail;
    if (truncated &&
        (json_object_set_new(payload, "original_message_bytes", json_integer((json_int_t)len)) ||
         json_object_set_new(payload, "original_message_truncated", json_true())))
        goto fail;
    /* Keep what can be kept from a JSON object body, so the error can still
     * be traced to its request. */
    json_t *root = len <= parse_max ? json_loadb(body, len, JSON_DECODE_ANY, NULL) : NULL;
    if (json_is_object(root)) {
        static const char *const keep[] = {"id", "parent_id", "route", "headers"};
        for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
            json_t *v = json_object_get(root, keep[i]);
            if (v && json_object_set(out, keep[i], v))
                goto fail_root;
        }
    }
    json_decref(root);
    root = NULL;
    if (json_object_set_new(details, "actor", json_string(names->actor)) ||
        json_object_set_new(payload, "error", json_string(code)) ||
        json_object_set_new(payload, "details", details)) {
        details = NULL;
        goto fail;
    }
    details = NULL;
    if (json_object_set_new(payload, "original_message", raw)) {
        raw = NULL;
        goto fail;
    }
    raw = NULL;
    if (json_object_set_new(out, "error", json_string(code)) ||
        json_object_set_new(out, "payload", payload)) {
        payload = NULL;
        goto fail;
    }
    return plan_add(plan, names->error_end, out, PUBLISH_ERROR_END);
fail_root:
    json_decref(root);
fail:
    json_decref(out);
    json_decref(payload);
    json_decref(details);
    json_decref(raw);
    return -ENOMEM;
}

/*
 * Build the envelope for result i: the original's fields, overlaid with the
 * result's (payload, route and, in envelope mode, anything else), current
 * advanced, fan-out ids set.  Returns a new reference, or NULL with err set.
 */
static json_t *result_envelope(const struct envelope *env, json_t *result, size_t i, size_t n,
                               char *err, size_t errlen)
{
    json_t *out = json_copy(env->root);
    if (!out) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (json_object_update(out, result)) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    /* An envelope-mode handler may hand back the progress request it was
     * sent (reports_runtime_body); it goes no further than this actor. */
    if (!json_object_get(env->root, PROTO_PROGRESS_KEY))
        json_object_del(out, PROTO_PROGRESS_KEY);
    json_t *route = json_object_get(result, "route");
    if (!route)
        route = env->route;
    if (!json_is_object(route)) {
        snprintf(err, errlen, "runtime result %zu has a route that is not an object", i);
        goto fail;
    }
    route = json_copy(route); /* shallow: we change current only */
    if (!route || json_object_set_new(out, "route", route)) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    json_t *cur = json_object_get(route, "current");
    if (!json_is_integer(cur)) {
        snprintf(err, errlen, "runtime result %zu has no integer route.current", i);
        goto fail;
    }
    json_int_t c = json_integer_value(cur);
    /* Seed-era runtimes return current unchanged; newer ones advance it. */
    if (c == (json_int_t)env->current) {
        c++;
    } else if (c != (json_int_t)env->current + 1) {
        snprintf(err, errlen, "runtime result %zu has route.current %lld, expected %zu or %zu", i,
                 (long long)c, env->current, env->current + 1);
        goto fail;
    }
    json_object_set_new(route, "current", json_integer(c));

    if (n > 1 && i > 0 && env->id) {
        json_t *rid = json_object_get(result, "id");
        /* Only derive ids the handler did not choose itself. */
        if (!rid || (json_is_string(rid) && strcmp(json_string_value(rid), env->id) == 0)) {
            char *child = NULL;
            if (asprintf(&child, "%s-%zu", env->id, i) < 0) {
                snprintf(err, errlen, "out of memory");
                goto fail;
            }
            json_object_set_new(out, "id", json_string(child));
            free(child);
            json_object_set_new(out, "parent_id", json_string(env->id));
        }
    }
    return out;
fail:
    json_decref(out);
    return NULL;
}

int routing_plan_response(const struct routing_names *names, const struct envelope *env,
                          const struct runtime_response *resp, struct route_plan *plan)
{
    char err[256];
    switch (resp->kind) {
    case RESPONSE_EMPTY:
        route_plan_init(plan, OUTCOME_EMPTY_RESPONSE, NULL);
        return plan_add(plan, names->happy_end, json_incref(env->root), PUBLISH_HAPPY_END);
    case RESPONSE_ERROR: {
        route_plan_init(plan, OUTCOME_RUNTIME_ERROR, resp->error);
        json_t *body = routing_error_envelope(names, env, resp->error, resp->details);
        return plan_add(plan, names->error_end, body, PUBLISH_ERROR_END);
    }
    case RESPONSE_RESULTS:
        break;
    }
    route_plan_init(plan, OUTCOME_SUCCESS, NULL);
    size_t n = json_array_size(resp->results);
    for (size_t i = 0; i < n; i++) {
        json_t *out = result_envelope(env, json_array_get(resp->results, i), i, n, err, sizeof err);
        struct envelope check;
        if (out && envelope_from_json(out, ENVELOPE_ALLOW_FINISHED, &check, err, sizeof err)) {
            json_decref(out);
            out = NULL;
        }
        if (!out) {
            route_plan_free(plan);
            return routing_plan_error(names, env, "processing_error", "InvalidRuntimeResponse", err,
                                      plan);
        }
        const char *next = envelope_actor(&check, check.current);
        enum publish_kind kind = next ? PUBLISH_ROUTING : PUBLISH_HAPPY_END;
        int rc = plan_add(plan, next ? next : names->happy_end, out, kind);
        envelope_free(&check);
        if (rc) {
            route_plan_free(plan);
            return rc;
        }
    }
    return 0;
}
