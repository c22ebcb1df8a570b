/* Unit tests for src/common/jscan.c: the canonical-JSON scanner.  The one
 * property that matters: whenever jscan says a text is canonical, jansson
 * reads it and asya_json_dumps gives back the same bytes.  Hand-picked cases
 * first, then a differential test against jansson on generated and mutated
 * documents (fixed seed, so a failure reproduces). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "jscan.h"
#include "textbuf.h"

#include <asya/asya_json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JFLAGS     (JSON_DECODE_ANY | JSON_ALLOW_NUL)
#define OBJ_MAX    48 /* member slots handed to jscan_object */
#define SHOW_BYTES 300

/* ---- helpers ------------------------------------------------------------- */

/* A printable copy of n bytes for failure messages (two rotating buffers). */
static const char *show(const char *s, size_t n)
{
    static char out[2][SHOW_BYTES * 4 + 8];
    static int which;
    which ^= 1;
    char *o = out[which];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (k + 8 >= sizeof out[0]) {
            memcpy(o + k, "...", 4);
            return o;
        }
        unsigned char c = (unsigned char)s[i];
        if (c == '\\') {
            o[k++] = '\\';
            o[k++] = '\\';
        } else if (c >= 0x20 && c < 0x7f) {
            o[k++] = (char)c;
        } else {
            k += (size_t)snprintf(o + k, 8, "\\x%02X", c);
        }
    }
    o[k] = '\0';
    return o;
}

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

/* jscan_decode of the canonical string text s (l bytes) against jansson's
 * value v of the same text; a buffer one byte short must be refused. */
static void check_decode(const char *s, size_t l, const json_t *v)
{
    size_t want = json_string_length(v);
    char *buf = malloc(want + 1);
    assert_non_null(buf);
    long got = jscan_decode(s, l, buf, want + 1);
    if (got != (long)want || memcmp(buf, json_string_value(v), want) != 0 || buf[want] != '\0')
        fail_msg("jscan_decode(%s) = %ld \"%s\", jansson has %zu bytes \"%s\"", show(s, l), got,
                 show(buf, got > 0 ? (size_t)got : 0), want, show(json_string_value(v), want));
    if (jscan_decode(s, l, buf, want) != -1)
        fail_msg("jscan_decode(%s) fits in %zu bytes", show(s, l), want);
    free(buf);
}

/* Checks whatever jscan_value says about the start of s (n bytes) against
 * jansson; returns the length jscan accepted (0: none). */
static size_t check_value(const char *s, size_t n)
{
    enum jscan_type t = (enum jscan_type)99;
    size_t l = jscan_value(s, n, &t);
    if (!l) {
        if (t != JSCAN_NONE)
            fail_msg("jscan_value(%s) = 0 with type %d", show(s, n), (int)t);
        return 0;
    }
    if (l > n)
        fail_msg("jscan_value(%s) = %zu > %zu", show(s, n), l, n);
    json_error_t err;
    json_t *v = json_loadb(s, l, JFLAGS, &err);
    if (!v)
        fail_msg("jscan_value accepts %zu bytes %s, jansson rejects them: %s", l, show(s, l),
                 err.text);
    char *d = asya_json_dumps(v);
    assert_non_null(d);
    if (strlen(d) != l || memcmp(d, s, l) != 0)
        fail_msg("jscan_value accepts %s, jansson dumps it as %s", show(s, l), show(d, strlen(d)));
    if (type_of(v) != t)
        fail_msg("jscan_value(%s): type %d, jansson's %d", show(s, l), (int)t, (int)json_typeof(v));
    if (t == JSCAN_INTEGER && jscan_integer(s, l) != json_integer_value(v))
        fail_msg("jscan_integer(%s) = %lld, jansson %lld", show(s, l),
                 (long long)jscan_integer(s, l), (long long)json_integer_value(v));
    if (t == JSCAN_STRING)
        check_decode(s, l, v);
    free(d);
    json_decref(v);
    return l;
}

/* Checks jscan_object(s, n, loose) against jansson: the object rebuilt from
 * the members is what asya_json_dumps makes of the whole text, and each
 * member's key and value agree with jansson's.  Returns the member count. */
static int check_object(const char *s, size_t n, bool loose)
{
    struct jscan_member m[OBJ_MAX];
    int c = jscan_object(s, n, loose, m, OBJ_MAX);
    if (c < 0) {
        if (c != -1)
            fail_msg("jscan_object(%s) = %d", show(s, n), c);
        return c;
    }
    json_error_t err;
    json_t *v = json_loadb(s, n, JFLAGS, &err);
    if (!v)
        fail_msg("jscan_object(%s, loose=%d) = %d, jansson rejects it: %s", show(s, n), loose, c,
                 err.text);
    if (!json_is_object(v) || json_object_size(v) != (size_t)c)
        fail_msg("jscan_object(%s) = %d members, jansson has %zu", show(s, n), c,
                 json_object_size(v));
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
    assert_false(textbuf_failed(&b));
    char *d = asya_json_dumps(v);
    assert_non_null(d);
    if (strlen(d) != b.len || memcmp(d, b.data, b.len) != 0)
        fail_msg("jscan_object(%s, loose=%d) rebuilds %s, jansson dumps %s", show(s, n), loose,
                 show(b.data, b.len), show(d, strlen(d)));
    free(d);
    textbuf_free(&b);

    int i = 0;
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val)
    {
        char kbuf[1024];
        long kl = jscan_decode(m[i].key, m[i].key_len, kbuf, sizeof kbuf);
        if (kl < 0 || strcmp(kbuf, key) != 0)
            fail_msg("member %d of %s: key decodes to %s, jansson's is %s", i, show(s, n),
                     kl < 0 ? "(too long)" : show(kbuf, (size_t)kl), show(key, strlen(key)));
        /* Only keys spelt without escapes: jscan_key_is compares the raw text
         * (see test_key_is_with_escapes). */
        if (m[i].key_len == (size_t)kl + 2) {
            if (!jscan_key_is(&m[i], key) || jscan_find(m, (size_t)c, key) != &m[i])
                fail_msg("jscan_key_is/jscan_find miss key %s of %s", show(key, strlen(key)),
                         show(s, n));
        }
        enum jscan_type t;
        if (jscan_value(m[i].value, m[i].value_len, &t) != m[i].value_len || t != m[i].type ||
            t != type_of(val))
            fail_msg("member %d of %s: value %s type %d, jansson's %d", i, show(s, n),
                     show(m[i].value, m[i].value_len), (int)m[i].type, (int)json_typeof(val));
        i++;
    }
    json_decref(v);

    /* Consistency: a strict object within the key limit is a canonical value. */
    if (!loose && c <= JSCAN_MAX_KEYS) {
        enum jscan_type t;
        if (jscan_value(s, n, &t) != n || t != JSCAN_OBJECT)
            fail_msg("jscan_object(%s) = %d but jscan_value does not take it", show(s, n), c);
    }
    return c;
}

/* Everything the scanner says about s, checked against jansson. */
static void check_all(const char *s, size_t n)
{
    check_value(s, n);
    check_object(s, n, false);
    check_object(s, n, true);
}

/* ---- hand-picked cases --------------------------------------------------- */

struct pos {
    const char *s;
    size_t n;
    enum jscan_type t;
};
#define P(lit, type)                                                                               \
    {                                                                                              \
        lit, sizeof lit - 1, type                                                                  \
    }

static const struct pos positives[] = {
    P("{}", JSCAN_OBJECT),
    P("[]", JSCAN_ARRAY),
    P("\"\"", JSCAN_STRING),
    P("0", JSCAN_INTEGER),
    P("1", JSCAN_INTEGER),
    P("-1", JSCAN_INTEGER),
    P("10", JSCAN_INTEGER),
    P("123456789012345678", JSCAN_INTEGER),
    P("-123456789012345678", JSCAN_INTEGER),
    P("999999999999999999", JSCAN_INTEGER),
    P("-999999999999999999", JSCAN_INTEGER),
    P("true", JSCAN_TRUE),
    P("false", JSCAN_FALSE),
    P("null", JSCAN_NULL),
    P("{\"a\":1}", JSCAN_OBJECT),
    P("{\"b\":1,\"a\":2}", JSCAN_OBJECT), /* insertion order, not sorted */
    P("{\"\":0}", JSCAN_OBJECT),
    P("{\"a\":1,\"b\":[true,false,null],\"c\":{\"d\":\"e\"}}", JSCAN_OBJECT),
    P("[1,\"two\",[3],{\"four\":4}]", JSCAN_ARRAY),
    P("[[],{},[[]],{\"\":{}},[{}]]", JSCAN_ARRAY),
    P("{\"id\":\"m\",\"route\":{\"actors\":[\"a\",\"b\"],\"current\":0},\"payload\":{\"x\":[1,2]}}",
      JSCAN_OBJECT),
    P("\"\\\"\\\\\\b\\f\\n\\r\\t\"", JSCAN_STRING),              /* every allowed escape */
    P("\"a/b\"", JSCAN_STRING),                                  /* a slash is not escaped */
    P("\"\x7f\"", JSCAN_STRING),                                 /* DEL is printed as it is */
    P("\"\xC2\x80\xC3\xA9\xDF\xBF\"", JSCAN_STRING),             /* U+0080 U+00E9 U+07FF */
    P("\"\xE0\xA0\x80\xE2\x82\xAC\xED\x9F\xBF\"", JSCAN_STRING), /* U+0800 U+20AC U+D7FF */
    P("\"\xEE\x80\x80\xEF\xBF\xBD\xEF\xBF\xBF\"", JSCAN_STRING), /* U+E000 U+FFFD U+FFFF */
    P("\"\xF0\x90\x80\x80\xF0\x9F\x98\x80\xF4\x8F\xBF\xBF\"", JSCAN_STRING), /* U+10000..10FFFF */
    P("{\"a\\nb\":1,\"a\\\\nb\":2,\"a\\\"\":3}", JSCAN_OBJECT),              /* different keys */
    P("{\"\xC3\xA9\":\"\xF0\x9F\x98\x80\"}", JSCAN_OBJECT),
};

static void test_positives(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof positives / sizeof positives[0]; i++) {
        const struct pos *p = &positives[i];
        enum jscan_type t;
        size_t l = jscan_value(p->s, p->n, &t);
        if (l != p->n || t != p->t)
            fail_msg("jscan_value(%s) = %zu type %d, want %zu type %d", show(p->s, p->n), l, (int)t,
                     p->n, (int)p->t);
        /* ... and jansson round-trips it to the same bytes. */
        json_error_t err;
        json_t *v = json_loadb(p->s, p->n, JFLAGS, &err);
        if (!v)
            fail_msg("jansson rejects %s: %s", show(p->s, p->n), err.text);
        char *d = asya_json_dumps(v);
        assert_non_null(d);
        if (strlen(d) != p->n || memcmp(d, p->s, p->n) != 0)
            fail_msg("%s: jansson dumps %s", show(p->s, p->n), show(d, strlen(d)));
        free(d);
        json_decref(v);
        check_all(p->s, p->n);
    }
}

/* Builds n nested arrays (the innermost empty) or an object of n keys. */
static char *nested(int n, char *buf)
{
    for (int i = 0; i < n; i++)
        buf[i] = '[';
    for (int i = 0; i < n; i++)
        buf[n + i] = ']';
    buf[2 * n] = '\0';
    return buf;
}

static char *keys(int n, char *buf)
{
    size_t k = 0;
    buf[k++] = '{';
    for (int i = 0; i < n; i++)
        k += (size_t)sprintf(buf + k, "%s\"k%d\":%d", i ? "," : "", i, i);
    buf[k++] = '}';
    buf[k] = '\0';
    return buf;
}

static void expect_full(const char *s, enum jscan_type want)
{
    enum jscan_type t;
    size_t n = strlen(s);
    if (jscan_value(s, n, &t) != n || t != want)
        fail_msg("jscan_value(%s) does not take it", show(s, n));
    check_all(s, n);
}

static void test_limits(void **state)
{
    (void)state;
    char buf[2048];
    expect_full(nested(JSCAN_MAX_DEPTH, buf), JSCAN_ARRAY);
    enum jscan_type t;
    assert_int_equal(jscan_value(nested(JSCAN_MAX_DEPTH + 1, buf), strlen(buf), &t), 0);
    check_all(buf, strlen(buf));
    expect_full(keys(JSCAN_MAX_KEYS, buf), JSCAN_OBJECT);
    assert_int_equal(jscan_value(keys(JSCAN_MAX_KEYS + 1, buf), strlen(buf), &t), 0);
    assert_int_equal(t, JSCAN_NONE);
    /* jscan_object's own limit is its caller's max, not JSCAN_MAX_KEYS. */
    struct jscan_member m[OBJ_MAX];
    assert_int_equal(jscan_object(buf, strlen(buf), false, m, OBJ_MAX), JSCAN_MAX_KEYS + 1);
    assert_int_equal(jscan_object(buf, strlen(buf), false, m, JSCAN_MAX_KEYS), -1);
    check_all(buf, strlen(buf));
    /* ... but a 33-key object nested in a value is not canonical. */
    char wrap[2100];
    snprintf(wrap, sizeof wrap, "{\"a\":%s}", buf);
    assert_int_equal(jscan_object(wrap, strlen(wrap), false, m, OBJ_MAX), -1);
    snprintf(wrap, sizeof wrap, "[%s]", buf);
    assert_int_equal(jscan_value(wrap, strlen(wrap), &t), 0);
    /* Depth counts every value: 63 arrays around a scalar is the deepest. */
    snprintf(wrap, sizeof wrap, "%.*s1%.*s", JSCAN_MAX_DEPTH - 1, nested(JSCAN_MAX_DEPTH, buf),
             JSCAN_MAX_DEPTH - 1, buf + JSCAN_MAX_DEPTH);
    expect_full(wrap, JSCAN_ARRAY);
    snprintf(wrap, sizeof wrap, "%.*s1%.*s", JSCAN_MAX_DEPTH, nested(JSCAN_MAX_DEPTH, buf),
             JSCAN_MAX_DEPTH, buf + JSCAN_MAX_DEPTH);
    assert_int_equal(jscan_value(wrap, strlen(wrap), &t), 0);
    /* An object member is one level down: 63 more arrays fit in it, not 64. */
    snprintf(wrap, sizeof wrap, "{\"a\":%s}", nested(JSCAN_MAX_DEPTH - 1, buf));
    assert_int_equal(check_object(wrap, strlen(wrap), false), 1);
    snprintf(wrap, sizeof wrap, "{\"a\":%s}", nested(JSCAN_MAX_DEPTH, buf));
    assert_int_equal(check_object(wrap, strlen(wrap), false), -1);
    assert_int_equal(check_object(wrap, strlen(wrap), true), -1);
}

struct neg {
    const char *s;
    size_t n;
    size_t want; /* what jscan_value gives: 0, or the canonical prefix */
};
#define N(lit, w)                                                                                  \
    {                                                                                              \
        lit, sizeof lit - 1, w                                                                     \
    }

static const struct neg negatives[] = {
    /* whitespace */
    N(" 1", 0),
    N("[1, 2]", 0),
    N("[ ]", 0),
    N("{ }", 0),
    N("\n{}", 0),
    N("{\"a\": 1}", 0),
    N("{\"a\" :1}", 0),
    N("[1 ,2]", 0),
    N("[1] ", 3),
    N("{}\n", 2),
    /* reals */
    N("1.0", 0),
    N("1e5", 0),
    N("1E5", 0),
    N("1e+5", 0),
    N("-1.5", 0),
    N("0.5", 0),
    N("0e1", 0),
    N("1.", 0),
    N("[1.0]", 0),
    N("{\"a\":1e5}", 0),
    N("1e400", 0),
    /* escapes jansson prints differently, and bad ones */
    N("\"\\u0041\"", 0),
    N("\"\\u00e9\"", 0),
    N("\"\\u0000\"", 0),
    N("\"\\ud83d\\ude00\"", 0),
    N("\"\\/\"", 0),
    N("\"\\x\"", 0),
    N("\"\\'\"", 0),
    N("\"\\\"", 0),
    N("\"\\", 0),
    N("\"a\\\0\"", 0),
    /* integers */
    N("-0", 0),
    N("[-0]", 0),
    N("01", 0),
    N("00", 0),
    N("-01", 0),
    N("[01]", 0),
    N("+1", 0),
    N("-", 0),
    N("--1", 0),
    N("1234567890123456789", 0),
    N("-1234567890123456789", 0),
    N("9223372036854775807", 0),
    N("9223372036854775808", 0),
    N("-9223372036854775808", 0),
    N("99999999999999999999999", 0),
    N("[1234567890123456789]", 0),
    N("0x10", 1),
    /* invalid UTF-8 */
    N("\"\xC0\x80\"", 0),
    N("\"\xC1\xBF\"", 0),
    N("\"\xE0\x80\x80\"", 0),
    N("\"\xE0\x9F\xBF\"", 0),
    N("\"\xED\xA0\x80\"", 0),
    N("\"\xED\xBF\xBF\"", 0),
    N("\"\xF0\x80\x80\x80\"", 0),
    N("\"\xF0\x8F\xBF\xBF\"", 0),
    N("\"\xF4\x90\x80\x80\"", 0),
    N("\"\xF5\x80\x80\x80\"", 0),
    N("\"\xF8\x88\x80\x80\x80\"", 0),
    N("\"\xFE\"", 0),
    N("\"\xFF\"", 0),
    N("\"\x80\"", 0),
    N("\"\xBF\"", 0),
    N("\"\xC2\"", 0),
    N("\"\xE2\x82\"", 0),
    N("\"\xF0\x9F\x98\"", 0),
    N("\"\xC2", 0),
    N("\"\xE2\x82", 0),
    N("\"\xF0\x9F\x98", 0),
    N("\"\xE2\x41\x82\"", 0),
    N("\"\xC2\x22", 0),
    N("\"\xF0\x9F\x98\x22", 0),
    N("{\"\xC0\x80\":1}", 0),
    /* raw control characters */
    N("\"\x01\"", 0),
    N("\"\t\"", 0),
    N("\"\n\"", 0),
    N("\"\x1f\"", 0),
    N("\"a\0b\"", 0),
    N("{\"\t\":1}", 0),
    /* duplicate keys */
    N("{\"a\":1,\"a\":2}", 0),
    N("{\"a\":1,\"b\":2,\"a\":1}", 0),
    N("[{\"x\":1,\"x\":1}]", 0),
    N("{\"k\":{\"\\n\":1,\"\\n\":2}}", 0),
    /* trailing garbage */
    N("1x", 1),
    N("truex", 4),
    N("nullnull", 4),
    N("{}x", 2),
    N("[1]]", 3),
    N("\"a\"\"b\"", 3),
    N("{\"a\":1}}", 7),
    N("[truex]", 0),
    N("[1x]", 0),
    /* truncated */
    N("", 0),
    N("[", 0),
    N("{", 0),
    N("[1", 0),
    N("[1,", 0),
    N("{\"a\"", 0),
    N("{\"a\":", 0),
    N("{\"a\":1", 0),
    N("{\"a\":1,", 0),
    N("\"abc", 0),
    N("tru", 0),
    N("fals", 0),
    N("nul", 0),
    N("{\"a\":[1,{\"b\":[]}]", 0),
    /* syntax */
    N("[1,]", 0),
    N("[,1]", 0),
    N("{\"a\":1,}", 0),
    N("{,}", 0),
    N("{\"a\"1}", 0),
    N("{\"a\"::1}", 0),
    N("{1:2}", 0),
    N("{a:1}", 0),
    N("{'a':1}", 0),
    N("'a'", 0),
    N("True", 0),
    N("NULL", 0),
    N("NaN", 0),
    N("Infinity", 0),
    N("}", 0),
    N("]", 0),
    N(",", 0),
    N(":", 0),
    N("[}", 0),
    N("{]", 0),
};

static void test_negatives(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof negatives / sizeof negatives[0]; i++) {
        const struct neg *c = &negatives[i];
        enum jscan_type t;
        size_t l = jscan_value(c->s, c->n, &t);
        if (l != c->want)
            fail_msg("jscan_value(%s) = %zu, want %zu", show(c->s, c->n), l, c->want);
        if (!l && t != JSCAN_NONE)
            fail_msg("jscan_value(%s) = 0 with type %d", show(c->s, c->n), (int)t);
        check_all(c->s, c->n);
    }
    char buf[2048];
    check_all(nested(JSCAN_MAX_DEPTH + 1, buf), strlen(buf));
}

/* jscan_object: whitespace only around the object's own tokens when loose. */
static void test_object(void **state)
{
    (void)state;
    struct jscan_member m[OBJ_MAX];
    const char *s = "{\"a\":1,\"b\":\"x\",\"c\":[true]}";
    assert_int_equal(jscan_object(s, strlen(s), false, m, OBJ_MAX), 3);
    assert_int_equal(m[1].type, JSCAN_STRING);
    assert_int_equal(m[1].key_len, 3);
    assert_memory_equal(m[1].key, "\"b\"", 3);
    assert_int_equal(m[1].value_len, 3);
    assert_memory_equal(m[1].value, "\"x\"", 3);
    assert_ptr_equal(jscan_find(m, 3, "c"), &m[2]);
    assert_null(jscan_find(m, 3, "d"));
    assert_null(jscan_find(m, 3, ""));
    assert_true(jscan_key_is(&m[0], "a"));
    assert_false(jscan_key_is(&m[0], "ab"));
    assert_false(jscan_key_is(&m[0], ""));
    assert_int_equal(check_object(s, strlen(s), true), 3);

    const char *loose = " \n{ \"a\" : 1 ,\t\"b\":[true]\r}\r\n";
    assert_int_equal(jscan_object(loose, strlen(loose), false, m, OBJ_MAX), -1);
    assert_int_equal(check_object(loose, strlen(loose), true), 2);
    assert_int_equal(jscan_object(loose, strlen(loose), true, m, OBJ_MAX), 2);
    assert_int_equal(m[1].value_len, 6);
    assert_memory_equal(m[1].value, "[true]", 6);
    assert_int_equal(check_object("{ }", 3, true), 0);
    assert_int_equal(check_object("  {}  ", 6, true), 0);
    assert_int_equal(check_object("{}", 2, false), 0);
    assert_int_equal(check_object(" {}", 3, false), -1);

    static const char *const bad[] = {
        "{\"a\": [1, 2]}",    /* whitespace inside a value */
        "{\"a\":{\"b\" :1}}", /* ... even an object's */
        "{\"a\":1}x",
        "{\"a\":1}\v",
        "\f{}",
        "[1]",
        "{\"a\":1.5}",
        "{\"a\":-0}",
        "{\"a\":1,\"a\":1}",
        "{\"a\" : 1 , \"a\" : 2}",
        "{\"a\":1,}",
        "{,}",
        "{\"a\":1",
        "",
        "{\"\\u0061\":1}",
        "{\"a\":\"\\/\"}",
        "\"a\"",
        "{ \"a\" 1 }",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t n = strlen(bad[i]);
        if (jscan_object(bad[i], n, true, m, OBJ_MAX) != -1 ||
            jscan_object(bad[i], n, false, m, OBJ_MAX) != -1)
            fail_msg("jscan_object(%s) takes it", show(bad[i], n));
    }
    /* More members than max. */
    assert_int_equal(jscan_object(s, strlen(s), false, m, 2), -1);
    assert_int_equal(jscan_object(s, strlen(s), false, m, 3), 3);
    assert_int_equal(jscan_object("{}", 2, false, m, 0), 0);
}

static void test_integer_and_decode(void **state)
{
    (void)state;
    assert_int_equal(jscan_integer("0", 1), 0);
    assert_int_equal(jscan_integer("-1", 2), -1);
    assert_int_equal(jscan_integer("42", 2), 42);
    assert_int_equal(jscan_integer("123456789012345678", 18), 123456789012345678LL);
    assert_int_equal(jscan_integer("-999999999999999999", 19), -999999999999999999LL);

    char out[64];
    const char *s = "\"a\\\"b\\\\c\\b\\f\\n\\r\\t/\xC3\xA9\"";
    long l = jscan_decode(s, strlen(s), out, sizeof out);
    assert_int_equal(l, 13);
    assert_memory_equal(out, "a\"b\\c\b\f\n\r\t/\xC3\xA9", 14);
    assert_int_equal(jscan_decode(s, strlen(s), out, 14), 13);
    assert_int_equal(jscan_decode(s, strlen(s), out, 13), -1);
    assert_int_equal(jscan_decode("\"\"", 2, out, 1), 0);
    assert_string_equal(out, "");
    assert_int_equal(jscan_decode("\"\"", 2, out, 0), -1);
    assert_int_equal(jscan_decode("\"ab\"", 4, out, 2), -1);
}

/*
 * jscan_key_is(m, name) compares name with the key's text as spelt, escapes
 * and all, not with the key jansson reads: a key with an escape never
 * matches its own name, and a name holding a backslash can match a key that
 * is something else.  (Every caller today passes a plain name, so nothing
 * goes wrong there yet.)
 */
static void test_key_is_with_escapes(void **state)
{
    (void)state;
    struct jscan_member m[4];
    const char *s = "{\"a\\nb\":1,\"q\\\"\":2}";
    assert_int_equal(check_object(s, strlen(s), false), 2);
    assert_int_equal(jscan_object(s, strlen(s), false, m, 4), 2);
    /* The first key is "a", newline, "b"; the second is q and a quote. */
    assert_false(jscan_key_is(&m[0], "a\\nb")); /* a, backslash, n, b: another key */
    assert_false(jscan_key_is(&m[1], "q\\\""));
    assert_true(jscan_key_is(&m[0], "a\nb"));
    assert_true(jscan_key_is(&m[1], "q\""));
    assert_ptr_equal(jscan_find(m, 2, "q\""), &m[1]);
}

/* ---- differential test against jansson ------------------------------------ */

struct gen {
    uint64_t s;
    bool canon;  /* only what the scanner must take: no whitespace, ... */
    unsigned ws; /* percent chance of whitespace between tokens */
};

static uint64_t rnd64(struct gen *g)
{
    uint64_t z = (g->s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static unsigned rnd(struct gen *g, unsigned n)
{
    return (unsigned)(rnd64(g) % n);
}

static bool chance(struct gen *g, unsigned pct)
{
    return rnd(g, 100) < pct;
}

static void put(struct textbuf *b, const char *s)
{
    textbuf_puts(b, s);
}

static void put_byte(struct textbuf *b, unsigned c)
{
    char ch = (char)c;
    textbuf_append(b, &ch, 1);
}

static void put_utf8(struct textbuf *b, uint32_t cp)
{
    if (cp < 0x80) {
        put_byte(b, cp);
    } else if (cp < 0x800) {
        put_byte(b, 0xC0 | (cp >> 6));
        put_byte(b, 0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        put_byte(b, 0xE0 | (cp >> 12));
        put_byte(b, 0x80 | ((cp >> 6) & 0x3F));
        put_byte(b, 0x80 | (cp & 0x3F));
    } else {
        put_byte(b, 0xF0 | (cp >> 18));
        put_byte(b, 0x80 | ((cp >> 12) & 0x3F));
        put_byte(b, 0x80 | ((cp >> 6) & 0x3F));
        put_byte(b, 0x80 | (cp & 0x3F));
    }
}

/* A random non-ASCII code point (no surrogates), edges often. */
static uint32_t rnd_wide(struct gen *g)
{
    static const uint32_t edges[] = {0x80,   0x7FF,  0x800,   0xD7FF,  0xE000,  0xFFFD,
                                     0xFFFE, 0xFFFF, 0x10000, 0x1F600, 0x10FFFF};
    if (chance(g, 20))
        return edges[rnd(g, sizeof edges / sizeof edges[0])];
    switch (rnd(g, 3)) {
    case 0:
        return 0x80 + rnd(g, 0x800 - 0x80);
    case 1: {
        uint32_t c = 0x800 + rnd(g, 0x10000 - 0x800);
        return c >= 0xD800 && c <= 0xDFFF ? c + 0x800 : c;
    }
    default:
        return 0x10000 + rnd(g, 0x110000 - 0x10000);
    }
}

static const char *const bad_utf8[] = {
    "\xC0\x80",
    "\xC1\xBF",
    "\xE0\x80\x80",
    "\xE0\x9F\xBF",
    "\xED\xA0\x80",
    "\xED\xBF\xBF",
    "\xF0\x80\x80\x80",
    "\xF0\x8F\xBF\xBF",
    "\xF4\x90\x80\x80",
    "\xF5\x80\x80\x80",
    "\xF8\x88\x80\x80\x80",
    "\xFF",
    "\xFE",
    "\x80",
    "\xBF",
    "\xC2",
    "\xE1\x80",
    "\xF1\x80\x80",
    "\xC2\x41",
    "\xE1\x41\x80",
    "\xF1\x80\x41\x80",
};

static const char *const bad_escapes[] = {
    "\\/",     "\\u0041",        "\\u00e9", "\\u00E9", "\\u0000", "\\u001f", "\\u007f",
    "\\u2028", "\\uD83D\\uDE00", "\\ud83d", "\\uDE00", "\\uFFFF", "\\u12",   "\\uZZZZ",
    "\\x41",   "\\U0041",        "\\'",     "\\a",     "\\0",     "\\",      "\\\xC3\xA9",
};

static void gen_string(struct gen *g, struct textbuf *b)
{
    put(b, "\"");
    unsigned pieces = chance(g, 10) ? 0 : rnd(g, chance(g, 10) ? 40 : 8);
    for (unsigned i = 0; i < pieces; i++) {
        unsigned r = rnd(g, 100);
        if (!g->canon && r < 12) {
            switch (rnd(g, 4)) {
            case 0:
                put(b, bad_escapes[rnd(g, sizeof bad_escapes / sizeof bad_escapes[0])]);
                break;
            case 1:
                put(b, bad_utf8[rnd(g, sizeof bad_utf8 / sizeof bad_utf8[0])]);
                break;
            case 2:
                put_byte(b, rnd(g, 0x20)); /* raw control character */
                break;
            default:
                put_byte(b, rnd(g, 256));
                break;
            }
        } else if (r < 55) {
            unsigned c;
            do
                c = 0x20 + rnd(g, 0x5F);
            while (c == '"' || c == '\\');
            put_byte(b, c);
        } else if (r < 72) {
            static const char *const esc[] = {"\\\"", "\\\\", "\\b", "\\f", "\\n", "\\r", "\\t"};
            put(b, esc[rnd(g, 7)]);
        } else if (r < 95) {
            put_utf8(b, rnd_wide(g));
        } else {
            put_byte(b, 0x7f);
        }
    }
    if (g->canon || !chance(g, 3))
        put(b, "\"");
}

static void gen_digits(struct gen *g, struct textbuf *b, unsigned n)
{
    put_byte(b, '1' + rnd(g, 9));
    for (unsigned i = 1; i < n; i++)
        put_byte(b, '0' + rnd(g, 10));
}

static void gen_number(struct gen *g, struct textbuf *b)
{
    if (g->canon || chance(g, 70)) {
        if (chance(g, 10)) {
            put(b, "0");
            return;
        }
        if (chance(g, 30))
            put(b, "-");
        gen_digits(g, b, 1 + rnd(g, chance(g, 20) ? 18 : 6));
        return;
    }
    static const char *const odd[] = {
        "-0",
        "00",
        "007",
        "-007",
        "+1",
        "-",
        "1.",
        ".5",
        "1.5",
        "-0.0",
        "0.0",
        "1e5",
        "1E5",
        "1e+5",
        "1e-5",
        "1.0e0",
        "1e",
        "1e400",
        "-1e400",
        "0x10",
        "NaN",
        "Infinity",
        "-Infinity",
        "1_000",
        "1234567890123456789",
        "-1234567890123456789",
        "9223372036854775807",
        "-9223372036854775808",
        "9223372036854775808",
        "18446744073709551616",
        "99999999999999999999999999",
        "0000000000000000001",
    };
    if (chance(g, 50)) {
        put(b, odd[rnd(g, sizeof odd / sizeof odd[0])]);
    } else {
        if (chance(g, 30))
            put(b, "-");
        gen_digits(g, b, 17 + rnd(g, 5)); /* around the 18-digit edge */
        if (chance(g, 30)) {
            put(b, ".");
            gen_digits(g, b, 1 + rnd(g, 3));
        }
    }
}

static void gen_ws(struct gen *g, struct textbuf *b)
{
    if (g->canon || !chance(g, g->ws))
        return;
    static const char ws[] = " \t\n\r";
    for (unsigned k = 1 + rnd(g, 3); k; k--)
        put_byte(b, (unsigned)ws[rnd(g, 4)]);
    if (chance(g, 3))
        put_byte(b, chance(g, 50) ? '\v' : '\f'); /* not JSON whitespace */
}

static void gen_value(struct gen *g, struct textbuf *b, int depth);

static void gen_key(struct gen *g, struct textbuf *b, unsigned index)
{
    static const char *const pool[] = {"\"a\"",       "\"b\"",    "\"\"",     "\"id\"",
                                       "\"payload\"", "\"a\\n\"", "\"\\\"\"", "\"\xC3\xA9\""};
    if (g->canon) {
        /* Unique by construction: random text, then the index. */
        gen_string(g, b);
        b->len--; /* drop the closing quote */
        textbuf_printf(b, "#%u\"", index);
        return;
    }
    if (chance(g, 60))
        put(b, pool[rnd(g, sizeof pool / sizeof pool[0])]);
    else
        gen_string(g, b);
}

static void gen_container(struct gen *g, struct textbuf *b, int depth, bool object)
{
    put(b, object ? "{" : "[");
    gen_ws(g, b);
    unsigned count = rnd(g, 6);
    if (chance(g, 3))
        count = JSCAN_MAX_KEYS - 2 + rnd(g, 4);
    if (g->canon && object && count > JSCAN_MAX_KEYS)
        count = JSCAN_MAX_KEYS;
    for (unsigned i = 0; i < count; i++) {
        if (i) {
            gen_ws(g, b);
            put(b, !g->canon && chance(g, 1) ? ";" : ",");
            gen_ws(g, b);
        }
        if (object) {
            gen_key(g, b, i);
            gen_ws(g, b);
            put(b, ":");
            gen_ws(g, b);
        }
        gen_value(g, b, depth + 1);
    }
    if (!g->canon && count && chance(g, 2))
        put(b, ","); /* trailing comma */
    gen_ws(g, b);
    put(b, object ? "}" : "]");
}

static void gen_deep(struct gen *g, struct textbuf *b, int depth)
{
    /* A chain of containers across the depth limit. */
    int n = JSCAN_MAX_DEPTH - 3 - depth + (int)rnd(g, 8);
    if (g->canon && depth + n > JSCAN_MAX_DEPTH - 1)
        n = JSCAN_MAX_DEPTH - 1 - depth;
    char closers[JSCAN_MAX_DEPTH + 16];
    int k = 0;
    for (int i = 0; i < n && k < (int)sizeof closers; i++, k++) {
        if (chance(g, 50)) {
            put(b, "[");
            closers[k] = ']';
        } else {
            textbuf_printf(b, "{\"d%d\":", i);
            closers[k] = '}';
        }
    }
    gen_value(g, b, JSCAN_MAX_DEPTH + 100); /* a scalar */
    while (k--)
        put_byte(b, (unsigned char)closers[k]);
}

/* A value at depth (1: the top); past the limit only scalars. */
static void gen_value(struct gen *g, struct textbuf *b, int depth)
{
    unsigned r = rnd(g, 100);
    bool room =
        depth < (g->canon ? JSCAN_MAX_DEPTH : JSCAN_MAX_DEPTH + 4) && depth < 6 + (int)rnd(g, 3);
    if (depth <= JSCAN_MAX_DEPTH && r < 1 && depth < 4) {
        gen_deep(g, b, depth);
    } else if (room && r < 18) {
        gen_container(g, b, depth, true);
    } else if (room && r < 34) {
        gen_container(g, b, depth, false);
    } else if (r < 60) {
        gen_string(g, b);
    } else if (r < 85) {
        gen_number(g, b);
    } else if (!g->canon && r < 88) {
        static const char *const odd[] = {"tru", "nul", "fals", "True", "NULL", "nil", "truee"};
        put(b, odd[rnd(g, sizeof odd / sizeof odd[0])]);
    } else {
        static const char *const lit[] = {"true", "false", "null"};
        put(b, lit[rnd(g, 3)]);
    }
}

/* An object with whitespace around its own tokens and canonical members. */
static void gen_loose_object(struct gen *g, struct textbuf *b)
{
    struct gen top = *g;
    top.canon = false;
    top.ws = 60;
    gen_ws(&top, b);
    put(b, "{");
    gen_ws(&top, b);
    unsigned count = rnd(g, 6);
    for (unsigned i = 0; i < count; i++) {
        if (i) {
            gen_ws(&top, b);
            put(b, ",");
            gen_ws(&top, b);
        }
        gen_key(g, b, i);
        gen_ws(&top, b);
        put(b, ":");
        gen_ws(&top, b);
        gen_value(g, b, 2);
    }
    gen_ws(&top, b);
    put(b, "}");
    gen_ws(&top, b);
    g->s = rnd64(&top); /* keep the streams apart */
}

static void mutate(struct gen *g, struct textbuf *b)
{
    static const char interesting[] = "{}[]\",:\\ \t\n0123456789-.eEtfnu/\x7f";
    static const unsigned char high[] = {0x00, 0x80, 0xBF, 0xC0, 0xC2, 0xDF, 0xE0,
                                         0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xFF};
    for (unsigned k = 1 + rnd(g, 3); k && b->len; k--) {
        size_t at = rnd(g, (unsigned)b->len);
        unsigned c = chance(g, 70) ? (unsigned char)interesting[rnd(g, sizeof interesting - 1)]
                                   : high[rnd(g, sizeof high)];
        switch (rnd(g, 5)) {
        case 0: /* replace */
            b->data[at] = (char)c;
            break;
        case 1: /* insert */
            put_byte(b, 0);
            memmove(b->data + at + 1, b->data + at, b->len - at - 1);
            b->data[at] = (char)c;
            break;
        case 2: /* delete */
            memmove(b->data + at, b->data + at + 1, b->len - at - 1);
            b->len--;
            break;
        case 3: /* truncate */
            b->len = at;
            break;
        default: { /* duplicate a slice */
            size_t l = 1 + rnd(g, 8);
            if (at + l > b->len)
                l = b->len - at;
            char tmp[8];
            memcpy(tmp, b->data + at, l);
            size_t to = rnd(g, (unsigned)b->len + 1);
            size_t old = b->len;
            textbuf_append(b, tmp, l);
            memmove(b->data + to + l, b->data + to, old - to);
            memcpy(b->data + to, tmp, l);
            break;
        }
        }
    }
}

struct tally {
    unsigned cases, values, whole, objects, loose;
};

static void run_case(const char *s, size_t n, struct tally *t)
{
    t->cases++;
    size_t l = check_value(s, n);
    if (l)
        t->values++;
    if (l && l == n)
        t->whole++;
    if (check_object(s, n, false) >= 0)
        t->objects++;
    if (check_object(s, n, true) >= 0)
        t->loose++;
}

#define ROUNDS 6000

static void test_differential(void **state)
{
    (void)state;
    struct gen g = {.s = 0x6a7363616e2d3031ULL, .canon = false, .ws = 0};
    struct tally canon = {0}, wild = {0}, loose = {0}, mutated = {0};
    for (int round = 0; round < ROUNDS; round++) {
        struct textbuf b = TEXTBUF_INIT;

        /* A canonical document: jansson agrees (checks the generator) and
         * the scanner takes it whole. */
        g.canon = true;
        gen_value(&g, &b, 1);
        assert_false(textbuf_failed(&b));
        json_error_t err;
        json_t *v = json_loadb(b.data, b.len, JFLAGS, &err);
        if (!v)
            fail_msg("generator: jansson rejects %s: %s", show(b.data, b.len), err.text);
        char *d = asya_json_dumps(v);
        if (!d || strlen(d) != b.len || memcmp(d, b.data, b.len) != 0)
            fail_msg("generator: %s dumps as %s", show(b.data, b.len), d ? show(d, strlen(d)) : "");
        free(d);
        json_decref(v);
        run_case(b.data, b.len, &canon);
        if (check_value(b.data, b.len) != b.len)
            fail_msg("jscan_value does not take canonical %s", show(b.data, b.len));
        /* Every prefix of it too (truncated text). */
        if (round % 10 == 0)
            for (size_t p = 0; p < b.len; p++)
                check_all(b.data, p);

        /* The same, mutated. */
        mutate(&g, &b);
        run_case(b.data, b.len, &mutated);
        textbuf_free(&b);

        /* A document with whitespace and non-canonical forms. */
        g.canon = false;
        g.ws = chance(&g, 50) ? 0 : 1 + rnd(&g, 30);
        gen_value(&g, &b, 1);
        run_case(b.data, b.len, &wild);
        if (chance(&g, 30)) {
            mutate(&g, &b);
            run_case(b.data, b.len, &wild);
        }
        textbuf_free(&b);

        /* A loose top-level object: whitespace only around its own tokens. */
        g.canon = !chance(&g, 20);
        gen_loose_object(&g, &b);
        run_case(b.data, b.len, &loose);
        textbuf_free(&b);
    }
    print_message("canonical: %u cases, %u whole, %u objects (loose %u)\n", canon.cases,
                  canon.whole, canon.objects, canon.loose);
    print_message("mutated:   %u cases, %u with a canonical prefix, %u whole, %u objects "
                  "(loose %u)\n",
                  mutated.cases, mutated.values, mutated.whole, mutated.objects, mutated.loose);
    print_message("wild:      %u cases, %u with a canonical prefix, %u whole, %u objects "
                  "(loose %u)\n",
                  wild.cases, wild.values, wild.whole, wild.objects, wild.loose);
    print_message("loose:     %u cases, %u objects strict, %u loose\n", loose.cases, loose.objects,
                  loose.loose);
    /* The test is worth something only if every branch says yes often. */
    assert_true(canon.whole == canon.cases);
    assert_true(mutated.whole > mutated.cases / 10);
    assert_true(wild.whole > wild.cases / 20);
    assert_true(loose.loose > loose.cases / 4);
    assert_true(loose.objects < loose.loose);
}

/* jscan_encode against json_dumps of a json_stringn of the same bytes. */
static void test_encode(void **state)
{
    (void)state;
    struct gen g = {.s = 0x656e636f6465ULL};
    unsigned rescanned = 0;
    for (int round = 0; round < 4000; round++) {
        struct textbuf in = TEXTBUF_INIT;
        unsigned n = rnd(&g, round % 50 == 0 ? 200 : 24);
        for (unsigned i = 0; i < n; i++) {
            unsigned r = rnd(&g, 100);
            if (r < 25)
                put_byte(&in, rnd(&g, 0x20)); /* NUL and every control character */
            else if (r < 40)
                put_byte(&in, (unsigned)"\"\\/\x7f"[rnd(&g, 4)]);
            else if (r < 75)
                put_byte(&in, 0x20 + rnd(&g, 0x60));
            else
                put_utf8(&in, rnd_wide(&g));
        }
        const char *s = in.data ? in.data : "";
        json_t *js = json_stringn(s, in.len);
        assert_non_null(js);
        char *want = json_dumps(js, JSON_ENCODE_ANY);
        char *want2 = asya_json_dumps(js);
        assert_non_null(want);
        assert_non_null(want2);
        assert_string_equal(want, want2);
        struct textbuf out = TEXTBUF_INIT;
        jscan_encode(&out, s, in.len);
        assert_false(textbuf_failed(&out));
        if (out.len != strlen(want) || memcmp(out.data, want, out.len) != 0)
            fail_msg("jscan_encode(%s) = %s, jansson %s", show(s, in.len), show(out.data, out.len),
                     show(want, strlen(want)));
        /* The scanner takes what it wrote unless that holds a \u escape, and
         * reads back the same bytes. */
        if (!strstr(want, "\\u")) {
            rescanned++;
            if (check_value(out.data, out.len) != out.len)
                fail_msg("jscan_value does not take jscan_encode's %s", show(out.data, out.len));
            char *back = malloc(in.len + 1);
            assert_non_null(back);
            assert_int_equal(jscan_decode(out.data, out.len, back, in.len + 1), in.len);
            assert_memory_equal(back, s, in.len);
            free(back);
        }
        free(want);
        free(want2);
        json_decref(js);
        textbuf_free(&out);
        textbuf_free(&in);
    }
    print_message("encode: 4000 strings, %u read back by the scanner\n", rescanned);
    /* Edges by hand. */
    struct textbuf out = TEXTBUF_INIT;
    jscan_encode(&out, "", 0);
    assert_int_equal(out.len, 2);
    assert_memory_equal(out.data, "\"\"", 2);
    textbuf_free(&out);
    jscan_encode(&out, "\0\x1f\x7f/\"\\", 6);
    assert_string_equal(out.data, "\"\\u0000\\u001F\x7f/\\\"\\\\\"");
    textbuf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_positives),          cmocka_unit_test(test_limits),
        cmocka_unit_test(test_negatives),          cmocka_unit_test(test_object),
        cmocka_unit_test(test_integer_and_decode), cmocka_unit_test(test_key_is_with_escapes),
        cmocka_unit_test(test_differential),       cmocka_unit_test(test_encode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
