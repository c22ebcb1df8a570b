/*
 * asya_json.h - jansson convenience helpers for C handler authors.
 *
 * Link the handler with -ljansson (pkg-config --libs asya-handler does).
 *
 *     ASYA_EXPORT int doubler(struct asya_call *call)
 *     {
 *         json_t *in = asya_input_json(call);             // new reference
 *         if (!in || !json_is_object(in))
 *             return json_decref(in), asya_fail(call, "TypeError", "payload must be an object");
 *         json_t *v = json_object_get(in, "value");      // borrowed
 *         json_object_set_new(in, "value", json_integer(2 * json_integer_value(v)));
 *         return asya_emit_json_new(call, in);            // steals `in`
 *     }
 */
#ifndef ASYA_ASYA_JSON_H
#define ASYA_ASYA_JSON_H

#include <asya/asya.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Parse call->input (payload or envelope, by mode).  Returns a new reference
 * (free with json_decref), or NULL if it cannot be parsed, which the host
 * never sends.  JSON null payloads come back as json_null(). */
static inline json_t *asya_input_json(struct asya_call *call)
{
    return json_loadb(call->input, call->input_len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
}

/* Fewest significant digits (1..17) that print every real number inside v so
 * that it reads back to the same double; 0 when v holds no reals. */
static inline int asya_json_real_digits(const json_t *v)
{
    int most = 0;
    if (json_is_real(v)) {
        double d = json_real_value(v);
        char buf[40];
        for (int p = 1; p < 17; p++) {
            snprintf(buf, sizeof buf, "%.*g", p, d);
            if (strtod(buf, NULL) == d)
                return p;
        }
        return 17;
    }
    if (json_is_object(v)) {
        const char *key;
        json_t *item;
        json_object_foreach((json_t *)v, key, item)
        {
            int p = asya_json_real_digits(item);
            if (p > most)
                most = p;
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item)
        {
            int p = asya_json_real_digits(item);
            if (p > most)
                most = p;
        }
    }
    return most;
}

/* Serialise v compactly, printing reals the way Python and Go do (the
 * shortest text that reads back exactly: 0.1, not 0.10000000000000001).
 * Returns a malloc'd string (free with free()) or NULL. */
static inline char *asya_json_dumps(const json_t *v)
{
    int digits = asya_json_real_digits(v);
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY |
                             (digits > 0 ? JSON_REAL_PRECISION(digits) : 0));
}

/* Emit one result; value is borrowed.  Returns 0, -1 when the host rejects
 * the value (see asya_call.emit), or -2 on allocation failure. */
static inline int asya_emit_json(struct asya_call *call, const json_t *value)
{
    char *text = asya_json_dumps(value);
    if (!text)
        return -2;
    int rc = call->emit(call, text, strlen(text));
    free(text);
    return rc;
}

/* Emit one result and release it: takes ownership of value.  NULL counts as
 * a failed allocation, so `asya_emit_json_new(call, json_object())` is safe.
 * Returns ASYA_OK on success, ASYA_OOM when memory ran out and ASYA_ERROR when
 * the host rejected the result, so a handler can end with
 * `return asya_emit_json_new(call, out);`. */
static inline int asya_emit_json_new(struct asya_call *call, json_t *value)
{
    if (!value)
        return asya_oom(call, "out of memory building the result");
    int rc = asya_emit_json(call, value);
    json_decref(value);
    if (rc == -2)
        return asya_oom(call, "out of memory serialising the result");
    if (rc != 0)
        return asya_fail(call, "ResultError", "the runtime rejected the result (too large?)");
    return ASYA_OK;
}

#ifdef __cplusplus
}
#endif

#endif /* ASYA_ASYA_JSON_H */
