#include "envelope.h"

#include <asya/asya_json.h>

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
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

/* A member that may be absent or null, else must have type t. */
static bool absent_or(const struct jscan_member *m, enum jscan_type t)
{
    return !m || m->type == JSCAN_NULL || m->type == t;
}

bool envelope_members_valid(const struct jscan_member *m, size_t n)
{
    const struct jscan_member *route = jscan_find(m, n, "route");
    return jscan_find(m, n, "payload") && route && route->type == JSCAN_OBJECT &&
           absent_or(jscan_find(m, n, "id"), JSCAN_STRING) &&
           absent_or(jscan_find(m, n, "parent_id"), JSCAN_STRING) &&
           absent_or(jscan_find(m, n, "headers"), JSCAN_OBJECT);
}

/*
 * The canonical scan: 0 with env filled, or 1 when the text is not in
 * canonical form or anything about it is not plainly valid; then the
 * jansson path decides (and words the error).
 */
static int scan_envelope(const char *data, size_t len, int flags, struct envelope *env)
{
    struct envelope_scan s;
    int n = jscan_object(data, len, true, s.top, JSCAN_MAX_KEYS);
    if (n < 0)
        return 1;
    s.top_count = (size_t)n;
    if (!envelope_members_valid(s.top, s.top_count))
        return 1;
    const struct jscan_member *route = jscan_find(s.top, s.top_count, "route");
    const struct jscan_member *id = jscan_find(s.top, s.top_count, "id");
    s.route_index = (size_t)(route - s.top);
    n = jscan_object(route->value, route->value_len, false, s.route, ENVELOPE_ROUTE_MEMBERS);
    if (n < 0)
        return 1;
    s.route_count = (size_t)n;
    const char *key = "actors";
    const struct jscan_member *actors = jscan_find(s.route, s.route_count, key);
    if (!actors) {
        key = "steps";
        actors = jscan_find(s.route, s.route_count, key);
    }
    const struct jscan_member *cur = jscan_find(s.route, s.route_count, "current");
    if (!actors || actors->type != JSCAN_ARRAY || !cur || cur->type != JSCAN_INTEGER)
        return 1;
    s.actors_index = (size_t)(actors - s.route);
    s.current_index = (size_t)(cur - s.route);

    /* Every name takes at least 3 bytes and a comma of the array's text. */
    size_t max_names = actors->value_len / 3 + 1;
    size_t strings = actors->value_len + (id && id->type == JSCAN_STRING ? id->value_len : 0) + 1;
    struct envelope_scan *sc = malloc(sizeof s + strings + max_names * sizeof(char *) + 8);
    if (!sc)
        return 1;
    memcpy(sc, &s, sizeof s);
    char *out = sc->strings;
    char *end = sc->strings + strings;
    uintptr_t at = (uintptr_t)end;
    sc->names = (const char **)(at + (sizeof(char *) - at % sizeof(char *)) % sizeof(char *));

    size_t count = 0;
    const char *a = actors->value;
    size_t al = actors->value_len;
    for (size_t i = 1; al > 2 && i < al;) {
        enum jscan_type t;
        size_t l = jscan_value(a + i, al - i, &t);
        long dl =
            t == JSCAN_STRING && l > 2 ? jscan_decode(a + i, l, out, (size_t)(end - out)) : -1;
        if (dl < 0 || count == max_names)
            goto fallback;
        sc->names[count++] = out;
        out += dl + 1;
        i += l + 1; /* the comma, or the closing bracket */
    }
    if (count == 0 && !(flags & ENVELOPE_ALLOW_FINISHED))
        goto fallback;
    int64_t c = jscan_integer(cur->value, cur->value_len);
    size_t limit = (flags & ENVELOPE_ALLOW_FINISHED) ? count : (count ? count - 1 : 0);
    if (c < 0 || (uint64_t)c > limit)
        goto fallback;
    env->id = NULL;
    if (id && id->type == JSCAN_STRING) {
        if (jscan_decode(id->value, id->value_len, out, (size_t)(end - out)) < 0)
            goto fallback;
        env->id = out;
    }
    env->actors_key = key;
    env->actor_count = count;
    env->current = (size_t)c;
    env->scan = sc;
    env->text = data;
    env->text_len = len;
    return 0;
fallback:
    free(sc);
    env->id = NULL;
    return 1;
}

int envelope_parse(const char *data, size_t len, int flags, struct envelope *env, char *err,
                   size_t errlen)
{
    memset(env, 0, sizeof *env);
    if ((flags & ENVELOPE_SCAN) && scan_envelope(data, len, flags, env) == 0)
        return 0;
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

bool envelope_valid(const struct envelope *env)
{
    return env->root || env->scan;
}

json_t *envelope_json(const struct envelope *cenv)
{
    struct envelope *env = (struct envelope *)cenv; /* only the cache changes */
    if (env->root || !env->scan)
        return env->root;
    json_t *root = json_loadb(env->text, env->text_len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (!root)
        return NULL; /* the scan accepted it: only memory can be short */
    env->root = root;
    env->route = json_object_get(root, "route");
    env->actors = json_object_get(env->route, env->actors_key);
    return root;
}

void envelope_free(struct envelope *env)
{
    if (!env)
        return;
    json_decref(env->root);
    free(env->scan);
    memset(env, 0, sizeof *env);
}

const char *envelope_actor(const struct envelope *env, size_t i)
{
    if (i >= env->actor_count)
        return NULL;
    if (env->scan)
        return env->scan->names[i];
    if (!env->actors)
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
