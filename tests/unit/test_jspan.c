/* Unit tests for src/runtime/jspan.c: a top-level member's value as a span
 * of the JSON text it came in. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "jspan.h"

#include <string.h>

/* The member's text, or "<none>". */
static const char *span(const char *json, const char *key)
{
    static char out[256];
    const char *vs = NULL;
    size_t vl = 0;
    if (!jspan_member(json, strlen(json), key, &vs, &vl))
        return "<none>";
    assert_true(vs >= json && vs + vl <= json + strlen(json));
    memcpy(out, vs, vl);
    out[vl] = '\0';
    return out;
}

static void test_values_keep_their_spelling(void **state)
{
    (void)state;
    const char *env = "{\"id\":\"m\",\"payload\":{\"x\":0.10,\"n\":[1, 2.50e3]},"
                      " \"route\" : {\"actors\":[\"a\"],\"current\":0} }";
    assert_string_equal(span(env, "payload"), "{\"x\":0.10,\"n\":[1, 2.50e3]}");
    assert_string_equal(span(env, "route"), "{\"actors\":[\"a\"],\"current\":0}");
    assert_string_equal(span(env, "id"), "\"m\"");
    assert_string_equal(span("{\"payload\": -1.5e-3}", "payload"), "-1.5e-3");
    assert_string_equal(span("{\"payload\":null,\"b\":true}", "payload"), "null");
    assert_string_equal(span("{\"a\":1,\"payload\":false}", "payload"), "false");
    assert_string_equal(span("\n{\t\"payload\"\r:\n7\n}\n", "payload"), "7");
}

static void test_strings_and_nesting(void **state)
{
    (void)state;
    /* Brackets, braces and quotes inside strings do not count. */
    assert_string_equal(span("{\"payload\":\"a}b]\\\"c{\",\"z\":1}", "payload"), "\"a}b]\\\"c{\"");
    assert_string_equal(span("{\"payload\":[{\"k\":\"]\"},[[]]],\"z\":1}", "payload"),
                        "[{\"k\":\"]\"},[[]]]");
    /* A member of the same name deeper down is not the top-level one. */
    assert_string_equal(span("{\"a\":{\"payload\":1},\"payload\":2}", "payload"), "2");
    assert_string_equal(span("{\"a\":{\"payload\":1}}", "payload"), "<none>");
}

static void test_last_duplicate_wins(void **state)
{
    (void)state;
    /* jansson keeps the last of duplicate keys; so does the scanner. */
    assert_string_equal(span("{\"payload\":1,\"payload\":[2]}", "payload"), "[2]");
}

static void test_gives_up_when_unsure(void **state)
{
    (void)state;
    assert_string_equal(span("{}", "payload"), "<none>");
    assert_string_equal(span("{\"pay\":1}", "payload"), "<none>");
    assert_string_equal(span("{\"payloads\":1}", "payload"), "<none>");
    assert_string_equal(span("[1,2]", "payload"), "<none>");
    assert_string_equal(span("", "payload"), "<none>");
    /* Escaped keys could spell the name in another way: give up. */
    assert_string_equal(span("{\"pay\\u006coad\":1}", "payload"), "<none>");
    assert_string_equal(span("{\"a\\\"\":1,\"payload\":2}", "payload"), "<none>");
    /* Truncated or malformed text (never valid JSON, but never read past). */
    assert_string_equal(span("{\"payload\":[1,2", "payload"), "<none>");
    assert_string_equal(span("{\"payload\":\"abc", "payload"), "<none>");
    assert_string_equal(span("{\"payload\" 1}", "payload"), "<none>");
    assert_string_equal(span("{\"payload\":}", "payload"), "<none>");
    assert_string_equal(span("{\"payload\":1", "payload"), "<none>");
    assert_string_equal(span("{\"payload\":1 2}", "payload"), "<none>");
}

/* The length bounds the scan: bytes after it are never looked at. */
static void test_respects_length(void **state)
{
    (void)state;
    const char *text = "{\"payload\":1}GARBAGE";
    const char *vs = NULL;
    size_t vl = 0;
    assert_true(jspan_member(text, 13, "payload", &vs, &vl));
    assert_int_equal(vl, 1);
    assert_int_equal(*vs, '1');
    assert_false(jspan_member(text, 12, "payload", &vs, &vl));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values_keep_their_spelling),
        cmocka_unit_test(test_strings_and_nesting),
        cmocka_unit_test(test_last_duplicate_wins),
        cmocka_unit_test(test_gives_up_when_unsure),
        cmocka_unit_test(test_respects_length),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
