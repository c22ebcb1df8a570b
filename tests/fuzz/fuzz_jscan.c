/*
 * libFuzzer target for the canonical-JSON scanner (src/common/jscan.c).
 *
 * Whenever the scanner says yes, jansson must agree: the canonical prefix
 * jscan_value finds reads back (JSON_DECODE_ANY | JSON_ALLOW_NUL) and
 * asya_json_dumps prints exactly those bytes, with the same type, integer
 * value and decoded string; an object jscan_object splits (strict or loose)
 * rebuilt from its members is what asya_json_dumps makes of the whole text,
 * key by key.  When the input is valid UTF-8, jscan_encode must write it as
 * json_dumps writes a json_stringn of it.  Any disagreement aborts.
 */
#include "jscan.h"
#include "textbuf.h"

#include <asya/asya_json.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define JFLAGS  (JSON_DECODE_ANY | JSON_ALLOW_NUL)
#define MEMBERS 48

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static enum jscan_type type_of(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return JSCAN_OBJECT;
    case JSON_ARRAY:
        return JSCAN_ARRAY;
    case JSON_STRING:
        return JSCAN_STRING;
    case JSON_INTEGER:
        return JSCAN_INTEGER;
    case JSON_TRUE:
        return JSCAN_TRUE;
    case JSON_FALSE:
        return JSCAN_FALSE;
    case JSON_NULL:
        return JSCAN_NULL;
    default:
        return JSCAN_NONE;
    }
}

/* asya_json_dumps(v) is exactly s (n bytes). */
static void same_dump(const json_t *v, const char *s, size_t n)
{
    char *d = asya_json_dumps(v);
    if (!d || strlen(d) != n || memcmp(d, s, n) != 0)
        abort();
    free(d);
}

/* The canonical string s (n bytes) decodes to jansson's value of it, and
 * not into a buffer one byte short. */
static void check_decode(const char *s, size_t n, const char *want, size_t want_len)
{
    char *buf = malloc(want_len + 1);
    if (!buf)
        abort();
    if (jscan_decode(s, n, buf, want_len + 1) != (long)want_len ||
        memcmp(buf, want, want_len) != 0 || buf[want_len] != '\0')
        abort();
    if (jscan_decode(s, n, buf, want_len) != -1)
        abort();
    free(buf);
}

static void check_value(const char *s, size_t n)
{
    enum jscan_type t;
    size_t l = jscan_value(s, n, &t);
    if (!l) {
        if (t != JSCAN_NONE)
            abort();
        return;
    }
    if (l > n)
        abort();
    json_t *v = json_loadb(s, l, JFLAGS, NULL);
    if (!v)
        abort();
    same_dump(v, s, l);
    if (type_of(v) != t)
        abort();
    if (t == JSCAN_INTEGER && jscan_integer(s, l) != json_integer_value(v))
        abort();
    if (t == JSCAN_STRING)
        check_decode(s, l, json_string_value(v), json_string_length(v));
    json_decref(v);
}

static void check_object(const char *s, size_t n, bool loose)
{
    struct jscan_member m[MEMBERS];
    int c = jscan_object(s, n, loose, m, MEMBERS);
    if (c < 0) {
        if (c != -1)
            abort();
        return;
    }
    json_t *v = json_loadb(s, n, JFLAGS, NULL);
    if (!v || !json_is_object(v) || json_object_size(v) != (size_t)c)
        abort();
    struct textbuf b = TEXTBUF_INIT;
    textbuf_append(&b, "{", 1);
    for (int i = 0; i < c; i++) {
        if (i)
            textbuf_append(&b, ",", 1);
        textbuf_append(&b, m[i].key, m[i].key_len);
        textbuf_append(&b, ":", 1);
        textbuf_append(&b, m[i].value, m[i].value_len);
    }
    textbuf_append(&b, "}", 1);
    if (textbuf_failed(&b))
        abort();
    same_dump(v, b.data, b.len);
    textbuf_free(&b);

    int i = 0;
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val)
    {
        /* The key and value texts are jansson's, one by one. */
        json_t *k = json_string(key);
        if (!k)
            abort();
        same_dump(k, m[i].key, m[i].key_len);
        check_decode(m[i].key, m[i].key_len, key, strlen(key));
        json_decref(k);
        same_dump(val, m[i].value, m[i].value_len);
        enum jscan_type t;
        if (jscan_value(m[i].value, m[i].value_len, &t) != m[i].value_len || t != m[i].type ||
            t != type_of(val))
            abort();
        i++;
    }
    json_decref(v);
}

static void check_encode(const char *s, size_t n)
{
    json_t *js = json_stringn(s, n);
    if (!js)
        return; /* not valid UTF-8: outside jscan_encode's contract */
    char *want = json_dumps(js, JSON_ENCODE_ANY);
    if (!want)
        abort();
    struct textbuf out = TEXTBUF_INIT;
    jscan_encode(&out, s, n);
    if (textbuf_failed(&out) || out.len != strlen(want) || memcmp(out.data, want, out.len) != 0)
        abort();
    free(want);
    json_decref(js);
    textbuf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    check_value(s, size);
    check_object(s, size, false);
    check_object(s, size, true);
    check_encode(s, size);
    return 0;
}
