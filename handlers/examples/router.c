/*
 * router.c - example envelope-mode handler: a router that extends the route.
 *
 * Run with ASYA_HANDLER_MODE=envelope (asya-invoke --mode envelope): the
 * handler receives the whole envelope and emits whole envelopes, so it can
 * change the route.  The runtime checks that route.actors[0..current] (the
 * actors already visited, and this one) are unchanged; appending is allowed.
 *
 * Rule: a payload whose "text" is longer than ROUTER_LONG_TEXT characters
 * (default 200) gets a "summarize" actor appended to its route; every message
 * is tagged with "routed_by" in its headers.  Everything else in the
 * envelope (id, other headers, unknown fields) is passed on unchanged.
 *
 *   {"id": "1", "route": {"actors": ["router"], "current": 0},
 *    "payload": {"text": "<300 characters>"}}
 *   -> [{"id": "1", "route": {"actors": ["router", "summarize"], "current": 0},
 *        "headers": {"routed_by": "router"}, "payload": {...}}]
 *
 * The sidecar then advances route.current and sends the message to
 * "summarize" (or to happy-end when nothing was appended).
 *
 * Try it:
 *   echo '{"text": "short"}' | build/bin/asya-invoke --payload --mode envelope \
 *       --handler build/lib/asya/examples/router.so:route_by_length
 */
#include <asya/asya.h>
#include <asya/asya_json.h>

#include <stdlib.h>

ASYA_MODULE_MAGIC(.name = "router", .version = "1.0");

ASYA_EXPORT int route_by_length(struct asya_call *call);

static size_t long_text = 200;

ASYA_EXPORT int asya_init(char *err, size_t errlen)
{
    const char *v = getenv("ROUTER_LONG_TEXT");
    if (!v || !*v)
        return 0;
    char *end;
    long n = strtol(v, &end, 10);
    if (*end || n < 0) {
        snprintf(err, errlen, "ROUTER_LONG_TEXT=%s: expected a number of characters", v);
        return -1;
    }
    long_text = (size_t)n;
    return 0;
}

/* Number of UTF-8 characters (not bytes) in s. */
static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

ASYA_EXPORT int route_by_length(struct asya_call *call)
{
    if (call->mode != ASYA_MODE_ENVELOPE)
        return asya_fail(call, "ConfigurationError",
                         "route_by_length is an envelope-mode handler: set "
                         "ASYA_HANDLER_MODE=envelope");

    json_t *env = asya_input_json(call); /* the whole envelope; the runtime validated it */
    if (!env)
        return asya_oom(call, "cannot parse the envelope: out of memory");
    json_t *route = json_object_get(env, "route");
    /* Older envelopes say "steps" instead of "actors"; keep whichever is used. */
    json_t *actors = json_object_get(route, "actors");
    if (!actors)
        actors = json_object_get(route, "steps");
    json_t *payload = json_object_get(env, "payload");
    const char *text = json_string_value(json_object_get(payload, "text"));
    if (!text) {
        json_decref(env);
        return asya_fail(call, "ValueError", "payload must be an object with a string \"text\"");
    }

    if (utf8_chars(text) > long_text && json_array_append_new(actors, json_string("summarize"))) {
        json_decref(env);
        return asya_oom(call, "out of memory extending the route");
    }

    json_t *headers = json_object_get(env, "headers");
    if (!json_is_object(headers)) {
        headers = json_object();
        if (json_object_set_new(env, "headers", headers) != 0) {
            json_decref(env);
            return asya_oom(call, "out of memory adding headers");
        }
    }
    if (json_object_set_new(headers, "routed_by", json_string("router")) != 0) {
        json_decref(env);
        return asya_oom(call, "out of memory tagging the envelope");
    }
    return asya_emit_json_new(call, env); /* one envelope out; steals env */
}
