#include "envelope.h"

#include <asya/asya_json.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errlen, const char *fmt,
                                                      ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static const char *json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_REAL:
        return "real number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    case JSON_NULL:
        return "null";
    }
    return "unknown";
}

int envelope_from_json(json_t *root, int flags, struct envelope *env, char *err, size_t errlen)
{
    memset(env, 0, sizeof *env);
    if (!json_is_object(root))
        return fail(err, errlen, "envelope must be a JSON object, got %s",
                    root ? json_type_name(root) : "nothing");
    if (!json_object_get(root, "payload"))
        return fail(err, errlen, "envelope has no %s field", "payload");

    json_t *route = json_object_get(root, "route");
    if (!route)
        return fail(err, errlen, "envelope has no %s field", "route");
    if (!json_is_object(route))
        return fail(err, errlen, "route must be an object, got %s", json_type_name(route));

    const char *key = "actors";
    json_t *actors = json_object_get(route, "actors");
    if (!actors) {
        key = "steps";
        actors = json_object_get(route, "steps");
    }
    if (!actors)
        return fail(err, errlen, "route has no %s (or steps) field", "actors");
    if (!json_is_array(actors))
        return fail(err, errlen, "route.%s must be an array, got %s", key, json_type_name(actors));
    size_t count = json_array_size(actors);
    for (size_t i = 0; i < count; i++) {
        json_t *a = json_array_get(actors, i);
        if (!json_is_string(a) || json_string_length(a) == 0)
            return fail(err, errlen, "route.%s[%zu] must be a non-empty string, got %s", key, i,
                        json_is_string(a) ? "an empty string" : json_type_name(a));
        /* An escaped NUL ("a\u0000b") would silently truncate the queue name. */
        if (strlen(json_string_value(a)) != json_string_length(a))
            return fail(err, errlen, "route.%s[%zu] must not contain a NUL character", key, i);
    }
    if (count == 0 && !(flags & ENVELOPE_ALLOW_FINISHED))
        return fail(err, errlen, "route.%s is empty", key);

    json_t *cur = json_object_get(route, "current");
    if (!cur)
        return fail(err, errlen, "route has no %s field", "current");
    if (!json_is_integer(cur))
        return fail(err, errlen, "route.current must be an integer, got %s", json_type_name(cur));
    json_int_t c = json_integer_value(cur);
    size_t limit = (flags & ENVELOPE_ALLOW_FINISHED) ? count : (count ? count - 1 : 0);
    if (c < 0 || (size_t)c > limit || (count == 0 && !(flags & ENVELOPE_ALLOW_FINISHED))) {
        snprintf(err, errlen, "route.current %lld is out of range for %zu actors", (long long)c,
                 count);
        return -EINVAL;
    }

    json_t *id = json_object_get(root, "id");
    if (id && !json_is_string(id) && !json_is_null(id))
        return fail(err, errlen, "id must be a string, got %s", json_type_name(id));
    if (json_is_string(id) && strlen(json_string_value(id)) != json_string_length(id))
        return fail(err, errlen, "id must not contain a NUL character");
    json_t *parent = json_object_get(root, "parent_id");
    if (parent && !json_is_string(parent) && !json_is_null(parent))
        return fail(err, errlen, "parent_id must be a string, got %s", json_type_name(parent));
    json_t *headers = json_object_get(root, "headers");
    if (headers && !json_is_object(headers) && !json_is_null(headers))
        return fail(err, errlen, "headers must be an object, got %s", json_type_name(headers));

    env->root = json_incref(root);
    env->route = route;
    env->actors = actors;
    env->actors_key = key;
    env->actor_count = count;
    env->current = (size_t)c;
    env->id = json_is_string(id) ? json_string_value(id) : NULL;
    return 0;
}

int envelope_parse(const char *data, size_t len, int flags, struct envelope *env, char *err,
                   size_t errlen)
{
    memset(env, 0, sizeof *env);
    json_error_t jerr;
    /* JSON_ALLOW_NUL: "\u0000" inside a payload string is valid JSON (Go and
     * Python accept it); names that become C strings are checked above. */
    json_t *root = json_loadb(data, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!root) {
        /* jansson quotes the input near the error: keep the message printable ASCII. */
        for (char *q = jerr.text; *q; q++)
            if ((unsigned char)*q < 0x20 || (unsigned char)*q >= 0x7f)
                *q = '?';
        snprintf(err, errlen, "invalid JSON at line %d column %d: %s", jerr.line, jerr.column,
                 jerr.text);
        return -EINVAL;
    }
    int rc = envelope_from_json(root, flags, env, err, errlen);
    json_decref(root);
    return rc;
}

void envelope_free(struct envelope *env)
{
    if (!env)
        return;
    json_decref(env->root);
    memset(env, 0, sizeof *env);
}

const char *envelope_actor(const struct envelope *env, size_t i)
{
    if (!env->actors || i >= env->actor_count)
        return NULL;
    return json_string_value(json_array_get(env->actors, i));
}

bool envelope_route_prefix_equal(const struct envelope *a, const struct envelope *b)
{
    size_t n = a->current + 1;
    if (n > a->actor_count)
        n = a->actor_count;
    if (b->actor_count < n)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(envelope_actor(a, i), envelope_actor(b, i)) != 0)
            return false;
    }
    return true;
}

char *envelope_dump(const json_t *value, size_t *len)
{
    char *s = asya_json_dumps(value); /* shortest round-trip reals */
    if (s && len)
        *len = strlen(s);
    return s;
}
