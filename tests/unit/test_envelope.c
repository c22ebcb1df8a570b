/* Unit tests for src/common/envelope.c: parsing and validating envelopes. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "envelope.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ERRLEN 256

/* Parses a NUL-terminated text, expecting success; env must be freed. */
static void parse_ok(const char *text, int flags, struct envelope *env)
{
    char err[ERRLEN] = "";
    int rc = envelope_parse(text, strlen(text), flags, env, err, sizeof err);
    if (rc != 0)
        fail_msg("envelope_parse(%.200s) = %d: %s", text, rc, err);
    assert_non_null(env->root);
}

/* Parses len bytes expecting -EINVAL and exactly the message want. */
static void parse_err_n(const char *text, size_t len, int flags, const char *want)
{
    char err[ERRLEN];
    memset(err, 'Z', sizeof err);
    struct envelope env;
    memset(&env, 0xAB, sizeof env);
    int rc = envelope_parse(text, len, flags, &env, err, sizeof err);
    if (rc != -EINVAL)
        fail_msg("envelope_parse(%.200s) = %d, want -EINVAL", text, rc);
    if (strcmp(err, want) != 0)
        fail_msg("envelope_parse(%.200s): error \"%s\", want \"%s\"", text, err, want);
    /* Left empty: envelope_free must be harmless and nothing leaks. */
    assert_null(env.root);
    assert_null(env.actors);
    assert_null(env.id);
    assert_int_equal(env.actor_count, 0);
    envelope_free(&env);
}

static void parse_err(const char *text, const char *want)
{
    parse_err_n(text, strlen(text), 0, want);
}

/* Expects -EINVAL with an error that starts with prefix (jansson's wording varies). */
static void parse_err_prefix(const char *text, size_t len, const char *prefix)
{
    char err[ERRLEN] = "";
    struct envelope env;
    int rc = envelope_parse(text, len, 0, &env, err, sizeof err);
    if (rc != -EINVAL || strncmp(err, prefix, strlen(prefix)) != 0)
        fail_msg("envelope_parse(%.100s) = %d \"%s\"; want -EINVAL \"%s...\"", text, rc, err,
                 prefix);
    assert_null(env.root);
}

/* ---- valid envelopes ----------------------------------------------------- */

static void test_minimal(void **state)
{
    (void)state;
    struct envelope env;
    parse_ok("{\"payload\":{\"x\":1},\"route\":{\"actors\":[\"a\",\"b\"],\"current\":1}}", 0, &env);
    assert_string_equal(env.actors_key, "actors");
    assert_int_equal(env.actor_count, 2);
    assert_int_equal(env.current, 1);
    assert_null(env.id);
    assert_string_equal(envelope_actor(&env, 0), "a");
    assert_string_equal(envelope_actor(&env, 1), "b");
    assert_null(envelope_actor(&env, 2));
    assert_ptr_equal(env.route, json_object_get(env.root, "route"));
    assert_ptr_equal(env.actors, json_object_get(env.route, "actors"));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(env.root, "payload"), "x")),
                     1);
    envelope_free(&env);
    assert_null(env.root);
    envelope_free(&env); /* twice is fine */
    envelope_free(NULL);
}

static void test_full_fields(void **state)
{
    (void)state;
    struct envelope env;
    parse_ok("{\"id\":\"m-1\",\"parent_id\":\"m-0\",\"headers\":{\"trace_id\":\"t\",\"prio\":3},"
             "\"route\":{\"actors\":[\"prep\",\"infer\",\"post\"],\"current\":0},"
             "\"payload\":[1,2,3],\"x-extra\":{\"keep\":true},\"zzz\":null}",
             0, &env);
    assert_string_equal(env.id, "m-1");
    assert_int_equal(env.actor_count, 3);
    assert_int_equal(env.current, 0);
    assert_string_equal(json_string_value(json_object_get(env.root, "parent_id")), "m-0");
    assert_true(json_is_object(json_object_get(env.root, "headers")));
    /* Unknown fields are kept, in order, through a dump. */
    char *out = envelope_dump(env.root, NULL);
    assert_string_equal(out,
                        "{\"id\":\"m-1\",\"parent_id\":\"m-0\",\"headers\":{\"trace_id\":\"t\","
                        "\"prio\":3},\"route\":{\"actors\":[\"prep\",\"infer\",\"post\"],"
                        "\"current\":0},\"payload\":[1,2,3],\"x-extra\":{\"keep\":true},"
                        "\"zzz\":null}");
    free(out);
    envelope_free(&env);
}

static void test_steps_alias(void **state)
{
    (void)state;
    struct envelope env;
    const char *in = "{\"route\":{\"steps\":[\"a\",\"b\"],\"current\":0},\"payload\":1}";
    parse_ok(in, 0, &env);
    assert_string_equal(env.actors_key, "steps");
    assert_int_equal(env.actor_count, 2);
    assert_string_equal(envelope_actor(&env, 1), "b");
    size_t len = 0;
    char *out = envelope_dump(env.root, &len);
    assert_string_equal(out, in); /* output keeps the key the input used */
    assert_int_equal(len, strlen(in));
    free(out);
    envelope_free(&env);

    /* Both present: actors wins. */
    parse_ok("{\"route\":{\"steps\":[\"s\"],\"actors\":[\"a\",\"b\"],\"current\":1},\"payload\":1}",
             0, &env);
    assert_string_equal(env.actors_key, "actors");
    assert_string_equal(envelope_actor(&env, 1), "b");
    envelope_free(&env);
}

static void test_payload_any_json(void **state)
{
    (void)state;
    static const char *const payloads[] = {"null",
                                           "0",
                                           "-1.5e3",
                                           "\"s\"",
                                           "true",
                                           "false",
                                           "[]",
                                           "{}",
                                           "[null,{\"a\":[]}]",
                                           "\"\\u00e9\\ud83d\\ude80\""};
    for (size_t i = 0; i < sizeof payloads / sizeof payloads[0]; i++) {
        char buf[256];
        snprintf(buf, sizeof buf, "{\"payload\":%s,\"route\":{\"actors\":[\"a\"],\"current\":0}}",
                 payloads[i]);
        struct envelope env;
        parse_ok(buf, 0, &env);
        envelope_free(&env);
    }
}

/* payload null is a value, not a missing field. */
static void test_payload_null_valid(void **state)
{
    (void)state;
    struct envelope env;
    parse_ok("{\"payload\":null,\"route\":{\"actors\":[\"a\"],\"current\":0}}", 0, &env);
    assert_true(json_is_null(json_object_get(env.root, "payload")));
    envelope_free(&env);
}

/* A payload string with an escaped NUL is valid JSON (Go and Python accept it). */
static void test_payload_with_nul_char(void **state)
{
    (void)state;
    struct envelope env;
    parse_ok("{\"payload\":{\"s\":\"a\\u0000b\"},\"route\":{\"actors\":[\"a\"],\"current\":0}}", 0,
             &env);
    json_t *s = json_object_get(json_object_get(env.root, "payload"), "s");
    assert_int_equal(json_string_length(s), 3);
    char *out = envelope_dump(env.root, NULL);
    assert_string_equal(out, "{\"payload\":{\"s\":\"a\\u0000b\"},\"route\":{\"actors\":[\"a\"],"
                             "\"current\":0}}");
    free(out);
    envelope_free(&env);
}

static void test_id_null_and_optional_nulls(void **state)
{
    (void)state;
    struct envelope env;
    parse_ok("{\"id\":null,\"parent_id\":null,\"headers\":null,\"payload\":1,"
             "\"route\":{\"actors\":[\"a\"],\"current\":0}}",
             0, &env);
    assert_null(env.id);
    envelope_free(&env);
    parse_ok("{\"id\":\"\",\"payload\":1,\"route\":{\"actors\":[\"a\"],\"current\":0}}", 0, &env);
    assert_string_equal(env.id, "");
    envelope_free(&env);
}

static void test_unicode_fields(void **state)
{
    (void)state;
    struct envelope env;
    parse_ok("{\"id\":\"\xe5\xa4\x84\xe7\x90\x86\",\"payload\":{\"m\":\"\xf0\x9f\x9a\x80\"},"
             "\"route\":{\"actors\":[\"\xc3\xa9t\xc3\xa9\"],\"current\":0}}",
             0, &env);
    assert_string_equal(env.id, "\xe5\xa4\x84\xe7\x90\x86");
    assert_string_equal(envelope_actor(&env, 0), "\xc3\xa9t\xc3\xa9");
    envelope_free(&env);
}

static void test_whitespace_and_order(void **state)
{
    (void)state;
    struct envelope env;
    parse_ok(" \n\t{ \"route\" : { \"current\" : 0 , \"actors\" : [ \"a\" ] } ,\r\n"
             " \"payload\" : { } }\n ",
             0, &env);
    assert_int_equal(env.actor_count, 1);
    envelope_free(&env);
}

/* jansson keeps the last of duplicate keys, like Go's and Python's decoders. */
static void test_duplicate_keys(void **state)
{
    (void)state;
    struct envelope env;
    parse_ok("{\"payload\":1,\"payload\":2,\"route\":{\"actors\":[\"a\"],\"current\":0,"
             "\"current\":1,\"actors\":[\"x\",\"y\"]},\"id\":\"first\",\"id\":\"second\"}",
             0, &env);
    assert_int_equal(json_integer_value(json_object_get(env.root, "payload")), 2);
    assert_int_equal(env.current, 1);
    assert_int_equal(env.actor_count, 2);
    assert_string_equal(envelope_actor(&env, 0), "x");
    assert_string_equal(env.id, "second");
    envelope_free(&env);
    /* A valid first route does not hide an invalid last one. */
    parse_err("{\"payload\":1,\"route\":{\"actors\":[\"a\"],\"current\":0},\"route\":5}",
              "route must be an object, got integer");
}

static void test_many_actors(void **state)
{
    (void)state;
    size_t n = 10000;
    size_t cap = n * 16 + 128;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t pos = (size_t)snprintf(buf, cap, "{\"payload\":{},\"route\":{\"actors\":[");
    for (size_t i = 0; i < n; i++)
        pos += (size_t)snprintf(buf + pos, cap - pos, "%s\"actor-%zu\"", i ? "," : "", i);
    snprintf(buf + pos, cap - pos, "],\"current\":9999}}");
    struct envelope env;
    parse_ok(buf, 0, &env);
    assert_int_equal(env.actor_count, 10000);
    assert_int_equal(env.current, 9999);
    assert_string_equal(envelope_actor(&env, 9999), "actor-9999");
    assert_true(envelope_route_prefix_equal(&env, &env));
    envelope_free(&env);

    /* current = 10000 is past the end unless the route may be finished. */
    char *cur = strstr(buf, "9999}}");
    memcpy(cur, "10000}}", 8);
    parse_err_n(buf, strlen(buf), 0, "route.current 10000 is out of range for 10000 actors");
    parse_ok(buf, ENVELOPE_ALLOW_FINISHED, &env);
    assert_int_equal(env.current, 10000);
    envelope_free(&env);
    free(buf);
}

/* Builds {"payload":[[[...]]],"route":...} with depth nested arrays. */
static char *nested_envelope(size_t depth)
{
    size_t cap = depth * 2 + 128;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t pos = (size_t)snprintf(buf, cap, "{\"payload\":");
    memset(buf + pos, '[', depth);
    pos += depth;
    memset(buf + pos, ']', depth);
    pos += depth;
    snprintf(buf + pos, cap - pos, ",\"route\":{\"actors\":[\"a\"],\"current\":0}}");
    return buf;
}

static void test_deep_nesting(void **state)
{
    (void)state;
    /* Within jansson's parser depth limit: accepted and dumped back. */
    char *ok = nested_envelope(1000);
    struct envelope env;
    parse_ok(ok, 0, &env);
    char *out = envelope_dump(env.root, NULL);
    assert_string_equal(out, ok);
    free(out);
    envelope_free(&env);
    free(ok);

    /* 10 000 levels: refused as invalid JSON, no stack overflow. */
    char *deep = nested_envelope(10000);
    parse_err_prefix(deep, strlen(deep), "invalid JSON at line 1 column ");
    char err[ERRLEN];
    assert_int_equal(envelope_parse(deep, strlen(deep), 0, &env, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "maximum parsing depth reached"));
    free(deep);
}

static void test_allow_finished(void **state)
{
    (void)state;
    const char *fin = "{\"payload\":1,\"route\":{\"actors\":[\"a\",\"b\"],\"current\":2}}";
    parse_err_n(fin, strlen(fin), 0, "route.current 2 is out of range for 2 actors");
    struct envelope env;
    parse_ok(fin, ENVELOPE_ALLOW_FINISHED, &env);
    assert_int_equal(env.current, 2);
    assert_null(envelope_actor(&env, env.current));
    envelope_free(&env);

    const char *past = "{\"payload\":1,\"route\":{\"actors\":[\"a\",\"b\"],\"current\":3}}";
    parse_err_n(past, strlen(past), ENVELOPE_ALLOW_FINISHED,
                "route.current 3 is out of range for 2 actors");

    /* An empty route is finished from the start. */
    const char *empty = "{\"payload\":1,\"route\":{\"actors\":[],\"current\":0}}";
    parse_ok(empty, ENVELOPE_ALLOW_FINISHED, &env);
    assert_int_equal(env.actor_count, 0);
    assert_null(envelope_actor(&env, 0));
    envelope_free(&env);
    const char *empty1 = "{\"payload\":1,\"route\":{\"actors\":[],\"current\":1}}";
    parse_err_n(empty1, strlen(empty1), ENVELOPE_ALLOW_FINISHED,
                "route.current 1 is out of range for 0 actors");
}

/* ---- malformed envelopes ------------------------------------------------- */

static void test_not_json(void **state)
{
    (void)state;
    parse_err_n("not json", 8, 0, "invalid JSON at line 1 column 3: invalid token near 'not'");
    parse_err_n("", 0, 0, "invalid JSON at line 1 column 0: unexpected token near end of file");
    parse_err_prefix("{\"payload\":1", 12, "invalid JSON at line 1 column ");
    parse_err_prefix("{\"payload\":1,}", 14, "invalid JSON at line 1 column ");
    parse_err_prefix("{'payload':1}", 13, "invalid JSON at line 1 column ");
    parse_err_prefix("{payload:1}", 11, "invalid JSON at line 1 column ");
    parse_err_prefix("\xef\xbb\xbf{}", 5, "invalid JSON at line 1 column "); /* BOM */
    /* Trailing garbage after a valid envelope. */
    const char *tail = "{\"payload\":1,\"route\":{\"actors\":[\"a\"],\"current\":0}} x";
    parse_err_n(tail, strlen(tail), 0,
                "invalid JSON at line 1 column 52: end of file expected near 'x'");
    /* Two envelopes back to back. */
    const char *two = "{\"payload\":1,\"route\":{\"actors\":[\"a\"],\"current\":0}}{}";
    parse_err_prefix(two, strlen(two), "invalid JSON at line 1 column ");
    /* A NUL byte inside the buffer (len counts it). */
    const char nul[] = "{\"payload\":1,\"route\":{\"actors\":[\"a\"],\"current\":0}}";
    parse_err_prefix(nul, sizeof nul, "invalid JSON at line 1 column ");
    /* len shorter than the text: only len bytes are read. */
    parse_err_prefix(nul, 10, "invalid JSON at line 1 column ");
    /* Numbers jansson cannot hold. */
    parse_err_prefix("{\"payload\":1e400,\"route\":{\"actors\":[\"a\"],\"current\":0}}", 53,
                     "invalid JSON at line 1 column ");
    const char *bigcur = "{\"payload\":1,\"route\":{\"actors\":[\"a\"],\"current\":"
                         "99999999999999999999}}";
    parse_err_n(bigcur, strlen(bigcur), 0,
                "invalid JSON at line 1 column 67: too big integer near '99999999999999999999'");
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "{\"payload\":\"\xff\",\"route\":{\"actors\":[\"a\"],\"current\":0}}",
        "{\"payload\":\"\xc3\",\"route\":{\"actors\":[\"a\"],\"current\":0}}",     /* truncated */
        "{\"payload\":\"\xc0\xaf\",\"route\":{\"actors\":[\"a\"],\"current\":0}}", /* overlong */
        "{\"payload\":\"\xed\xa0\x80\",\"route\":{\"actors\":[\"a\"],\"current\":0}}", /* surrogate
                                                                                        */
        "{\"payload\":1,\"route\":{\"actors\":[\"\xfe\"],\"current\":0}}",
        "{\"payload\":\"\\ud800\",\"route\":{\"actors\":[\"a\"],\"current\":0}}", /* lone escape */
        "{\"pay\x80load\":1,\"route\":{\"actors\":[\"a\"],\"current\":0}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[ERRLEN] = "";
        struct envelope env;
        assert_int_equal(envelope_parse(bad[i], strlen(bad[i]), 0, &env, err, sizeof err), -EINVAL);
        assert_int_equal(strncmp(err, "invalid JSON at line 1 column ", 30), 0);
        /* The message itself must be clean ASCII so it can go into a JSON error. */
        for (const char *p = err; *p; p++)
            assert_true(*p >= 0x20 && *p < 0x7f);
        assert_null(env.root);
    }
    parse_err_n(bad[0], strlen(bad[0]), 0,
                "invalid JSON at line 1 column 12: unable to decode byte 0xff near '\"'");
}

static void test_not_object(void **state)
{
    (void)state;
    parse_err("42", "envelope must be a JSON object, got integer");
    parse_err("4.5", "envelope must be a JSON object, got real number");
    parse_err("\"str\"", "envelope must be a JSON object, got string");
    parse_err("true", "envelope must be a JSON object, got boolean");
    parse_err("false", "envelope must be a JSON object, got boolean");
    parse_err("null", "envelope must be a JSON object, got null");
    parse_err("[]", "envelope must be a JSON object, got array");
    parse_err("[{\"payload\":1,\"route\":{\"actors\":[\"a\"],\"current\":0}}]",
              "envelope must be a JSON object, got array");
}

static void test_missing_fields(void **state)
{
    (void)state;
    parse_err("{}", "envelope has no payload field");
    parse_err("{\"route\":{\"actors\":[\"a\"],\"current\":0}}", "envelope has no payload field");
    parse_err("{\"Payload\":1,\"route\":{\"actors\":[\"a\"],\"current\":0}}",
              "envelope has no payload field");
    parse_err("{\"payload\":1}", "envelope has no route field");
    parse_err("{\"payload\":1,\"Route\":{}}", "envelope has no route field");
    parse_err("{\"payload\":1,\"route\":{\"current\":0}}", "route has no actors (or steps) field");
    parse_err("{\"payload\":1,\"route\":{}}", "route has no actors (or steps) field");
    parse_err("{\"payload\":1,\"route\":{\"actors\":[\"a\"]}}", "route has no current field");
    parse_err("{\"payload\":1,\"route\":{\"steps\":[\"a\"]}}", "route has no current field");
}

static void test_route_wrong_types(void **state)
{
    (void)state;
    parse_err("{\"payload\":1,\"route\":null}", "route must be an object, got null");
    parse_err("{\"payload\":1,\"route\":\"a\"}", "route must be an object, got string");
    parse_err("{\"payload\":1,\"route\":[\"a\"]}", "route must be an object, got array");
    parse_err("{\"payload\":1,\"route\":7}", "route must be an object, got integer");
    parse_err("{\"payload\":1,\"route\":{\"actors\":\"a\",\"current\":0}}",
              "route.actors must be an array, got string");
    parse_err("{\"payload\":1,\"route\":{\"actors\":{\"0\":\"a\"},\"current\":0}}",
              "route.actors must be an array, got object");
    parse_err("{\"payload\":1,\"route\":{\"actors\":null,\"current\":0}}",
              "route.actors must be an array, got null");
    /* The message names the key the input used. */
    parse_err("{\"payload\":1,\"route\":{\"steps\":\"a\",\"current\":0}}",
              "route.steps must be an array, got string");
}

static void test_bad_actor_names(void **state)
{
    (void)state;
    parse_err("{\"payload\":1,\"route\":{\"actors\":[\"a\",5],\"current\":0}}",
              "route.actors[1] must be a non-empty string, got integer");
    parse_err("{\"payload\":1,\"route\":{\"actors\":[null],\"current\":0}}",
              "route.actors[0] must be a non-empty string, got null");
    parse_err("{\"payload\":1,\"route\":{\"actors\":[[\"a\"]],\"current\":0}}",
              "route.actors[0] must be a non-empty string, got array");
    parse_err("{\"payload\":1,\"route\":{\"actors\":[{}],\"current\":0}}",
              "route.actors[0] must be a non-empty string, got object");
    parse_err("{\"payload\":1,\"route\":{\"actors\":[\"a\",\"b\",\"\"],\"current\":0}}",
              "route.actors[2] must be a non-empty string, got an empty string");
    parse_err("{\"payload\":1,\"route\":{\"steps\":[true],\"current\":0}}",
              "route.steps[0] must be a non-empty string, got boolean");
    /* An escaped NUL would silently truncate the queue name. */
    parse_err("{\"payload\":1,\"route\":{\"actors\":[\"a\\u0000b\"],\"current\":0}}",
              "route.actors[0] must not contain a NUL character");
}

static void test_empty_actors(void **state)
{
    (void)state;
    parse_err("{\"payload\":1,\"route\":{\"actors\":[],\"current\":0}}", "route.actors is empty");
    parse_err("{\"payload\":1,\"route\":{\"steps\":[],\"current\":0}}", "route.steps is empty");
}

static void test_bad_current(void **state)
{
    (void)state;
    parse_err("{\"payload\":1,\"route\":{\"actors\":[\"a\",\"b\"],\"current\":1.0}}",
              "route.current must be an integer, got real number");
    parse_err("{\"payload\":1,\"route\":{\"actors\":[\"a\",\"b\"],\"current\":0.5}}",
              "route.current must be an integer, got real number");
    parse_err("{\"payload\":1,\"route\":{\"actors\":[\"a\",\"b\"],\"current\":1e0}}",
              "route.current must be an integer, got real number");
    parse_err("{\"payload\":1,\"route\":{\"actors\":[\"a\",\"b\"],\"current\":\"0\"}}",
              "route.current must be an integer, got string");
    parse_err("{\"payload\":1,\"route\":{\"actors\":[\"a\",\"b\"],\"current\":null}}",
              "route.current must be an integer, got null");
    parse_err("{\"payload\":1,\"route\":{\"actors\":[\"a\",\"b\"],\"current\":true}}",
              "route.current must be an integer, got boolean");
    parse_err("{\"payload\":1,\"route\":{\"actors\":[\"a\",\"b\"],\"current\":[0]}}",
              "route.current must be an integer, got array");
    parse_err("{\"payload\":1,\"route\":{\"actors\":[\"a\",\"b\"],\"current\":-1}}",
              "route.current -1 is out of range for 2 actors");
    parse_err("{\"payload\":1,\"route\":{\"actors\":[\"a\",\"b\"],\"current\":"
              "-9223372036854775808}}",
              "route.current -9223372036854775808 is out of range for 2 actors");
    parse_err("{\"payload\":1,\"route\":{\"actors\":[\"a\",\"b\"],\"current\":2}}",
              "route.current 2 is out of range for 2 actors");
    parse_err("{\"payload\":1,\"route\":{\"actors\":[\"a\",\"b\"],\"current\":"
              "9223372036854775807}}",
              "route.current 9223372036854775807 is out of range for 2 actors");
}

static void test_optional_wrong_types(void **state)
{
    (void)state;
    parse_err("{\"id\":5,\"payload\":1,\"route\":{\"actors\":[\"a\"],\"current\":0}}",
              "id must be a string, got integer");
    parse_err("{\"id\":{},\"payload\":1,\"route\":{\"actors\":[\"a\"],\"current\":0}}",
              "id must be a string, got object");
    parse_err("{\"id\":[\"x\"],\"payload\":1,\"route\":{\"actors\":[\"a\"],\"current\":0}}",
              "id must be a string, got array");
    parse_err("{\"id\":\"a\\u0000b\",\"payload\":1,\"route\":{\"actors\":[\"a\"],\"current\":0}}",
              "id must not contain a NUL character");
    parse_err("{\"parent_id\":false,\"payload\":1,\"route\":{\"actors\":[\"a\"],\"current\":0}}",
              "parent_id must be a string, got boolean");
    parse_err("{\"headers\":[],\"payload\":1,\"route\":{\"actors\":[\"a\"],\"current\":0}}",
              "headers must be an object, got array");
    parse_err("{\"headers\":\"h\",\"payload\":1,\"route\":{\"actors\":[\"a\"],\"current\":0}}",
              "headers must be an object, got string");
}

static void test_error_buffer_edge_cases(void **state)
{
    (void)state;
    struct envelope env;
    /* No error buffer at all. */
    assert_int_equal(envelope_parse("[]", 2, 0, &env, NULL, 0), -EINVAL);
    assert_int_equal(envelope_parse("nope", 4, 0, &env, NULL, 0), -EINVAL);
    /* A short buffer gets a truncated, terminated message. */
    char small[8];
    memset(small, 'Z', sizeof small);
    assert_int_equal(envelope_parse("{}", 2, 0, &env, small, sizeof small), -EINVAL);
    assert_string_equal(small, "envelop");
    memset(small, 'Z', sizeof small);
    assert_int_equal(
        envelope_parse("{\"payload\":1,\"route\":{\"actors\":[\"a\",1],\"current\":0}}", 52, 0,
                       &env, small, sizeof small),
        -EINVAL);
    assert_string_equal(small, "route.a");
}

static void test_from_json(void **state)
{
    (void)state;
    char err[ERRLEN];
    struct envelope env;
    assert_int_equal(envelope_from_json(NULL, 0, &env, err, sizeof err), -EINVAL);
    assert_string_equal(err, "envelope must be a JSON object, got nothing");

    json_t *root = json_pack("{s:i, s:{s:[s], s:i}, s:s}", "payload", 1, "route", "actors", "a",
                             "current", 0, "id", "abc");
    assert_non_null(root);
    assert_int_equal(envelope_from_json(root, 0, &env, err, sizeof err), 0);
    assert_int_equal(root->refcount, 2); /* env holds its own reference */
    assert_string_equal(env.id, "abc");
    envelope_free(&env);
    assert_int_equal(root->refcount, 1);

    json_object_del(root, "payload");
    assert_int_equal(envelope_from_json(root, 0, &env, err, sizeof err), -EINVAL);
    assert_string_equal(err, "envelope has no payload field");
    assert_int_equal(root->refcount, 1);
    json_decref(root);
}

/* ---- route prefix -------------------------------------------------------- */

static void prefix_case(const char *a_route, const char *b_route, int flags, bool want)
{
    char a_text[256], b_text[256];
    snprintf(a_text, sizeof a_text, "{\"payload\":1,\"route\":%s}", a_route);
    snprintf(b_text, sizeof b_text, "{\"payload\":1,\"route\":%s}", b_route);
    struct envelope a, b;
    parse_ok(a_text, flags, &a);
    parse_ok(b_text, ENVELOPE_ALLOW_FINISHED, &b);
    if (envelope_route_prefix_equal(&a, &b) != want)
        fail_msg("prefix_equal(%s, %s) != %d", a_route, b_route, want);
    envelope_free(&a);
    envelope_free(&b);
}

static void test_route_prefix_equal(void **state)
{
    (void)state;
    const char *abc1 = "{\"actors\":[\"a\",\"b\",\"c\"],\"current\":1}";
    prefix_case(abc1, abc1, 0, true);
    prefix_case(abc1, "{\"actors\":[\"a\",\"b\",\"x\",\"y\"],\"current\":1}", 0, true);
    prefix_case(abc1, "{\"actors\":[\"a\",\"b\"],\"current\":1}", 0, true);
    prefix_case(abc1, "{\"steps\":[\"a\",\"b\"],\"current\":0}", 0, true); /* key/current free */
    prefix_case(abc1, "{\"actors\":[\"a\",\"x\",\"c\"],\"current\":1}", 0, false);
    prefix_case(abc1, "{\"actors\":[\"x\",\"b\",\"c\"],\"current\":1}", 0, false);
    prefix_case(abc1, "{\"actors\":[\"a\"],\"current\":0}", 0, false); /* too short */
    prefix_case(abc1, "{\"actors\":[],\"current\":0}", 0, false);
    prefix_case(abc1, "{\"actors\":[\"a\",\"bb\",\"c\"],\"current\":1}", 0, false);
    prefix_case(abc1, "{\"actors\":[\"a\",\"B\",\"c\"],\"current\":1}", 0, false);
    /* current 0: only actors[0] is fixed. */
    prefix_case("{\"actors\":[\"a\",\"b\"],\"current\":0}", "{\"actors\":[\"a\"],\"current\":0}", 0,
                true);
    /* A finished route: every actor is fixed. */
    prefix_case("{\"actors\":[\"a\",\"b\"],\"current\":2}",
                "{\"actors\":[\"a\",\"b\"],\"current\":2}", ENVELOPE_ALLOW_FINISHED, true);
    prefix_case("{\"actors\":[\"a\",\"b\"],\"current\":2}",
                "{\"actors\":[\"a\",\"c\"],\"current\":2}", ENVELOPE_ALLOW_FINISHED, false);
    prefix_case("{\"actors\":[],\"current\":0}", "{\"actors\":[],\"current\":0}",
                ENVELOPE_ALLOW_FINISHED, true);
    prefix_case("{\"actors\":[],\"current\":0}", "{\"actors\":[\"z\"],\"current\":0}",
                ENVELOPE_ALLOW_FINISHED, true);

    /* An empty (zeroed) envelope has no prefix to protect. */
    struct envelope empty, b;
    memset(&empty, 0, sizeof empty);
    parse_ok("{\"payload\":1,\"route\":{\"actors\":[\"a\"],\"current\":0}}", 0, &b);
    assert_true(envelope_route_prefix_equal(&empty, &b));
    assert_false(envelope_route_prefix_equal(&b, &empty));
    envelope_free(&b);
}

static void test_actor_on_empty(void **state)
{
    (void)state;
    struct envelope env;
    memset(&env, 0, sizeof env);
    assert_null(envelope_actor(&env, 0));
}

static void test_dump(void **state)
{
    (void)state;
    json_t *v = json_string("\xc3\xa9\n\"");
    size_t len = 0;
    char *s = envelope_dump(v, &len);
    assert_string_equal(s, "\"\xc3\xa9\\n\\\"\""); /* scalars too (JSON_ENCODE_ANY) */
    assert_int_equal(len, strlen(s));
    free(s);
    json_decref(v);
    v = json_pack("{s:n,s:[i,f]}", "b", "a", 1, 2.5);
    s = envelope_dump(v, NULL);
    assert_string_equal(s, "{\"b\":null,\"a\":[1,2.5]}"); /* insertion order, compact */
    free(s);
    json_decref(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minimal),
        cmocka_unit_test(test_full_fields),
        cmocka_unit_test(test_steps_alias),
        cmocka_unit_test(test_payload_any_json),
        cmocka_unit_test(test_payload_null_valid),
        cmocka_unit_test(test_payload_with_nul_char),
        cmocka_unit_test(test_id_null_and_optional_nulls),
        cmocka_unit_test(test_unicode_fields),
        cmocka_unit_test(test_whitespace_and_order),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_many_actors),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_allow_finished),
        cmocka_unit_test(test_not_json),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_not_object),
        cmocka_unit_test(test_missing_fields),
        cmocka_unit_test(test_route_wrong_types),
        cmocka_unit_test(test_bad_actor_names),
        cmocka_unit_test(test_empty_actors),
        cmocka_unit_test(test_bad_current),
        cmocka_unit_test(test_optional_wrong_types),
        cmocka_unit_test(test_error_buffer_edge_cases),
        cmocka_unit_test(test_from_json),
        cmocka_unit_test(test_route_prefix_equal),
        cmocka_unit_test(test_actor_on_empty),
        cmocka_unit_test(test_dump),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
