/* Unit tests for src/common/protocol.c: runtime error answers and response parsing. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "protocol.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ERRLEN 256

/* ---- error answers ------------------------------------------------------- */

static void expect_error_text(const char *code, const char *message, const char *type,
                              const char *traceback, const char *want)
{
    size_t len = 0;
    char *s = protocol_error_text(code, message, type, traceback, &len);
    assert_non_null(s);
    if (strcmp(s, want) != 0)
        fail_msg("protocol_error_text = %s\n want %s", s, want);
    assert_int_equal(len, strlen(want));
    free(s);

    json_t *v = protocol_error_json(code, message, type, traceback);
    assert_non_null(v);
    s = json_dumps(v, JSON_COMPACT);
    assert_string_equal(s, want);
    free(s);
    json_decref(v);
}

static void test_error_json_shape(void **state)
{
    (void)state;
    /* Exactly the reference runtime's shape and key order. */
    expect_error_text(PROTO_PROCESSING_ERROR, "Intentional test failure", "ValueError",
                      "Traceback (most recent call last):\n  ...",
                      "[{\"error\":\"processing_error\",\"details\":{\"message\":"
                      "\"Intentional test failure\",\"type\":\"ValueError\",\"traceback\":"
                      "\"Traceback (most recent call last):\\n  ...\"}}]");
    /* NULL message and type become "", a NULL traceback is omitted. */
    expect_error_text(PROTO_OOM_ERROR, NULL, NULL, NULL,
                      "[{\"error\":\"oom_error\",\"details\":{\"message\":\"\",\"type\":\"\"}}]");
    expect_error_text(PROTO_PARSING_ERROR, "bad \"json\"\t\x01", "json", "",
                      "[{\"error\":\"msg_parsing_error\",\"details\":{\"message\":"
                      "\"bad \\\"json\\\"\\t\\u0001\",\"type\":\"json\",\"traceback\":\"\"}}]");
    expect_error_text(PROTO_CUDA_OOM_ERROR, "CUDA out of memory: Tried to allocate 4.0 GiB",
                      "torch.cuda.OutOfMemoryError", NULL,
                      "[{\"error\":\"cuda_oom_error\",\"details\":{\"message\":\"CUDA out of "
                      "memory: Tried to allocate 4.0 GiB\",\"type\":"
                      "\"torch.cuda.OutOfMemoryError\"}}]");
    expect_error_text(PROTO_PROCESSING_ERROR, "\xe5\xa4\x84\xe7\x90\x86", "SIGSEGV", NULL,
                      "[{\"error\":\"processing_error\",\"details\":{\"message\":"
                      "\"\xe5\xa4\x84\xe7\x90\x86\",\"type\":\"SIGSEGV\"}}]");
}

static void test_error_codes(void **state)
{
    (void)state;
    assert_string_equal(PROTO_PROCESSING_ERROR, "processing_error");
    assert_string_equal(PROTO_PARSING_ERROR, "msg_parsing_error");
    assert_string_equal(PROTO_CONNECTION_ERROR, "connection_error");
    assert_string_equal(PROTO_OOM_ERROR, "oom_error");
    assert_string_equal(PROTO_CUDA_OOM_ERROR, "cuda_oom_error");
    assert_string_equal(PROTO_TIMEOUT_ERROR, "timeout_error");
}

/* A handler's message with invalid UTF-8 must still produce an answer. */
static void test_error_invalid_utf8(void **state)
{
    (void)state;
    size_t len;
    char *s = protocol_error_text(PROTO_PROCESSING_ERROR, "bad \xff byte", "Type\xc3", "tb\xe2\x82",
                                  &len);
    assert_non_null(s);
    assert_string_equal(s, "[{\"error\":\"processing_error\",\"details\":{\"message\":"
                           "\"bad ? byte\",\"type\":\"Type?\",\"traceback\":\"tb??\"}}]");
    free(s);
    /* Valid sequences next to invalid ones survive; surrogates, overlongs, bytes past
     * U+10FFFF and stray continuation bytes do not. */
    s = protocol_error_text(
        "e", "\xf0\x9f\x9a\x80\xff\xc3\xa9|\xed\xa0\x80|\xc0\xaf|\xf4\x90\x80\x80|\x80", NULL, NULL,
        &len);
    assert_non_null(s);
    assert_string_equal(s, "[{\"error\":\"e\",\"details\":{\"message\":"
                           "\"\xf0\x9f\x9a\x80?\xc3\xa9|???|??|????|?\",\"type\":\"\"}}]");
    free(s);
    /* Without a code there is no answer to build. */
    assert_null(protocol_error_json(NULL, "m", "t", NULL));
}

static void test_error_answer_parses_back(void **state)
{
    (void)state;
    size_t len;
    char *s = protocol_error_text(PROTO_TIMEOUT_ERROR, "too slow", "Timeout", "tb", &len);
    struct runtime_response r;
    char err[ERRLEN];
    assert_int_equal(protocol_parse_response(s, len, &r, err, sizeof err), 0);
    assert_int_equal(r.kind, RESPONSE_ERROR);
    assert_string_equal(r.error, "timeout_error");
    assert_string_equal(json_string_value(json_object_get(r.details, "message")), "too slow");
    assert_string_equal(json_string_value(json_object_get(r.details, "type")), "Timeout");
    assert_string_equal(json_string_value(json_object_get(r.details, "traceback")), "tb");
    protocol_response_free(&r);
    free(s);
}

/* ---- parsing answers ----------------------------------------------------- */

static void parse_ok(const char *text, struct runtime_response *r)
{
    char err[ERRLEN] = "";
    int rc = protocol_parse_response(text, strlen(text), r, err, sizeof err);
    if (rc != 0)
        fail_msg("protocol_parse_response(%.200s) = %d: %s", text, rc, err);
    assert_non_null(r->root);
}

static void parse_err_n(const char *text, size_t len, const char *want)
{
    char err[ERRLEN];
    memset(err, 'Z', sizeof err);
    struct runtime_response r;
    memset(&r, 0xAB, sizeof r);
    int rc = protocol_parse_response(text, len, &r, err, sizeof err);
    if (rc != -EINVAL)
        fail_msg("protocol_parse_response(%.200s) = %d, want -EINVAL", text, rc);
    if (strcmp(err, want) != 0)
        fail_msg("protocol_parse_response(%.200s): \"%s\", want \"%s\"", text, err, want);
    assert_null(r.root);
    assert_null(r.results);
    assert_null(r.error);
    assert_null(r.details);
    protocol_response_free(&r);
}

static void parse_err(const char *text, const char *want)
{
    parse_err_n(text, strlen(text), want);
}

static void test_results(void **state)
{
    (void)state;
    struct runtime_response r;
    parse_ok("[{\"payload\":{\"a\":1},\"route\":{\"actors\":[\"x\"],\"current\":0}}]", &r);
    assert_int_equal(r.kind, RESPONSE_RESULTS);
    assert_ptr_equal(r.results, r.root);
    assert_int_equal(json_array_size(r.results), 1);
    assert_null(r.error);
    assert_null(r.details);
    json_t *p = json_object_get(json_array_get(r.results, 0), "payload");
    assert_int_equal(json_integer_value(json_object_get(p, "a")), 1);
    protocol_response_free(&r);
    assert_null(r.root);
    protocol_response_free(&r);
    protocol_response_free(NULL);

    /* Fan-out; payload null is a value; envelope-mode extras are kept. */
    parse_ok("[{\"payload\":1},{\"payload\":null,\"id\":\"x\"},{\"payload\":[],\"headers\":{}}]",
             &r);
    assert_int_equal(r.kind, RESPONSE_RESULTS);
    assert_int_equal(json_array_size(r.results), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(r.results, 1), "id")),
                        "x");
    protocol_response_free(&r);

    /* An "error" key next to a payload is part of a result, not an error answer. */
    parse_ok("[{\"error\":\"x\",\"payload\":1}]", &r);
    assert_int_equal(r.kind, RESPONSE_RESULTS);
    protocol_response_free(&r);
}

static void test_empty(void **state)
{
    (void)state;
    struct runtime_response r;
    parse_ok("[]", &r);
    assert_int_equal(r.kind, RESPONSE_EMPTY);
    assert_null(r.results);
    assert_null(r.error);
    protocol_response_free(&r);
    parse_ok("null", &r);
    assert_int_equal(r.kind, RESPONSE_EMPTY);
    assert_null(r.results);
    protocol_response_free(&r);
    parse_ok(" [ ] \n", &r);
    assert_int_equal(r.kind, RESPONSE_EMPTY);
    protocol_response_free(&r);
}

static void test_error_array(void **state)
{
    (void)state;
    struct runtime_response r;
    parse_ok("[{\"error\":\"processing_error\",\"details\":{\"message\":\"m\",\"type\":\"T\","
             "\"traceback\":\"tb\"}}]",
             &r);
    assert_int_equal(r.kind, RESPONSE_ERROR);
    assert_string_equal(r.error, "processing_error");
    assert_non_null(r.details);
    assert_string_equal(json_string_value(json_object_get(r.details, "message")), "m");
    assert_null(r.results);
    protocol_response_free(&r);

    /* No details, or details of the wrong type: the code still counts. */
    parse_ok("[{\"error\":\"oom_error\"}]", &r);
    assert_int_equal(r.kind, RESPONSE_ERROR);
    assert_string_equal(r.error, "oom_error");
    assert_null(r.details);
    protocol_response_free(&r);
    parse_ok("[{\"error\":\"oom_error\",\"details\":\"text\"}]", &r);
    assert_int_equal(r.kind, RESPONSE_ERROR);
    assert_null(r.details);
    protocol_response_free(&r);

    /* Only the first element decides. */
    parse_ok("[{\"error\":\"e\"},{\"payload\":1}]", &r);
    assert_int_equal(r.kind, RESPONSE_ERROR);
    assert_string_equal(r.error, "e");
    protocol_response_free(&r);
}

static void test_bare_objects(void **state)
{
    (void)state;
    struct runtime_response r;
    parse_ok("{\"payload\":{\"v\":2},\"route\":{\"actors\":[\"a\"],\"current\":0}}", &r);
    assert_int_equal(r.kind, RESPONSE_RESULTS);
    assert_true(json_is_array(r.results));
    assert_ptr_equal(r.results, r.root);
    assert_int_equal(json_array_size(r.results), 1);
    json_t *item = json_array_get(r.results, 0);
    assert_int_equal(item->refcount, 1); /* owned by the wrapper only */
    assert_int_equal(json_integer_value(json_object_get(json_object_get(item, "payload"), "v")), 2);
    protocol_response_free(&r);

    parse_ok("{\"error\":\"cuda_oom_error\",\"details\":{\"message\":\"CUDA\"}}", &r);
    assert_int_equal(r.kind, RESPONSE_ERROR);
    assert_string_equal(r.error, "cuda_oom_error");
    assert_string_equal(json_string_value(json_object_get(r.details, "message")), "CUDA");
    assert_null(r.results);
    protocol_response_free(&r);
}

static void test_payload_with_nul_char(void **state)
{
    (void)state;
    /* jansson writes a NUL inside a string as \u0000; its own output must parse back. */
    struct runtime_response r;
    parse_ok("[{\"payload\":\"a\\u0000b\"}]", &r);
    assert_int_equal(r.kind, RESPONSE_RESULTS);
    assert_int_equal(json_string_length(json_object_get(json_array_get(r.results, 0), "payload")),
                     3);
    protocol_response_free(&r);
}

static void test_malformed(void **state)
{
    (void)state;
    parse_err("42", "runtime answer must be an array, object or null");
    parse_err("\"ok\"", "runtime answer must be an array, object or null");
    parse_err("true", "runtime answer must be an array, object or null");
    parse_err("1.5", "runtime answer must be an array, object or null");
    parse_err("[1]", "runtime result 0 is not an object");
    parse_err("[null]", "runtime result 0 is not an object");
    parse_err("[[]]", "runtime result 0 is not an object");
    parse_err("[\"payload\"]", "runtime result 0 is not an object");
    parse_err("[{\"payload\":1},2]", "runtime result 1 is not an object");
    parse_err("[{\"route\":{}}]", "runtime result 0 has no payload");
    parse_err("[{}]", "runtime result 0 has no payload");
    parse_err("[{\"payload\":1},{\"error\":\"x\"}]", "runtime result 1 has no payload");
    parse_err("{}", "runtime result has no payload");
    parse_err("{\"route\":{}}", "runtime result has no payload");
    parse_err("[{\"error\":5}]", "runtime error code must be a string");
    parse_err("[{\"error\":null}]", "runtime error code must be a string");
    parse_err("[{\"error\":{\"code\":\"x\"}}]", "runtime error code must be a string");
    parse_err("{\"error\":true}", "runtime error code must be a string");
}

static void test_invalid_json(void **state)
{
    (void)state;
    parse_err_n("", 0,
                "runtime answered invalid JSON at line 1 column 0: unexpected token near "
                "end of file");
    parse_err("[{\"payload\":1}", "runtime answered invalid JSON at line 1 column 14: "
                                  "']' expected near end of file");
    parse_err("garbage", "runtime answered invalid JSON at line 1 column 7: invalid token near "
                         "'garbage'");
    parse_err("[] []", "runtime answered invalid JSON at line 1 column 4: end of file expected "
                       "near '['");
    parse_err("[\"\xff\"]", "runtime answered invalid JSON at line 1 column 2: unable to decode "
                            "byte 0xff near '\"'");
    /* Half a frame's worth of a valid answer. */
    const char *full = "[{\"payload\":{\"k\":\"v\"}}]";
    char err[ERRLEN];
    struct runtime_response r;
    for (size_t n = 0; n < strlen(full); n++) {
        assert_int_equal(protocol_parse_response(full, n, &r, err, sizeof err), -EINVAL);
        assert_int_equal(strncmp(err, "runtime answered invalid JSON", 29), 0);
        for (const char *p = err; *p; p++)
            assert_true(*p >= 0x20 && *p < 0x7f);
        assert_null(r.root);
    }
    /* No error buffer. */
    assert_int_equal(protocol_parse_response("x", 1, &r, NULL, 0), -EINVAL);
    assert_int_equal(protocol_parse_response("5", 1, &r, NULL, 0), -EINVAL);
}

static void test_huge_array(void **state)
{
    (void)state;
    size_t n = 100000;
    const char *item = "{\"payload\":1},";
    size_t cap = n * strlen(item) + 16;
    char *buf = malloc(cap);
    assert_non_null(buf);
    buf[0] = '[';
    size_t pos = 1;
    for (size_t i = 0; i < n; i++) {
        memcpy(buf + pos, item, strlen(item));
        pos += strlen(item);
    }
    buf[pos - 1] = ']';
    struct runtime_response r;
    char err[ERRLEN];
    assert_int_equal(protocol_parse_response(buf, pos, &r, err, sizeof err), 0);
    assert_int_equal(r.kind, RESPONSE_RESULTS);
    assert_int_equal(json_array_size(r.results), n);
    protocol_response_free(&r);

    /* The last element is bad: found, with its index. */
    memcpy(buf + pos - 14, "{\"paylod\":1}]", 13);
    assert_int_equal(protocol_parse_response(buf, pos - 1, &r, err, sizeof err), -EINVAL);
    assert_string_equal(err, "runtime result 99999 has no payload");
    free(buf);
}

static void test_deep_answer(void **state)
{
    (void)state;
    size_t depth = 10000;
    char *buf = malloc(depth * 2 + 32);
    assert_non_null(buf);
    memcpy(buf, "[{\"payload\":", 12);
    memset(buf + 12, '[', depth);
    memset(buf + 12 + depth, ']', depth);
    memcpy(buf + 12 + 2 * depth, "}]", 2);
    struct runtime_response r;
    char err[ERRLEN];
    assert_int_equal(protocol_parse_response(buf, 14 + 2 * depth, &r, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "maximum parsing depth reached"));
    free(buf);
}

/* ---- handler progress frames ------------------------------------------------ */

static void test_progress_frames(void **state)
{
    (void)state;
    size_t len;
    char *t = protocol_progress_text(0.5, "half way", &len);
    assert_string_equal(t, "{\"asya_progress\":0.5,\"message\":\"half way\"}");
    assert_int_equal(len, strlen(t));
    assert_true(protocol_is_progress(t, len));
    double f = -1;
    char msg[64];
    assert_int_equal(protocol_parse_progress(t, len, &f, msg, sizeof msg), 0);
    assert_true(f == 0.5);
    assert_string_equal(msg, "half way");
    free(t);

    t = protocol_progress_text(1.0, NULL, &len);
    assert_string_equal(t, "{\"asya_progress\":1.0}");
    assert_int_equal(protocol_parse_progress(t, len, &f, msg, sizeof msg), 0);
    assert_string_equal(msg, "");
    free(t);

    /* Answers are never progress frames, whatever they hold. */
    const char *ans = "[{\"payload\":{\"asya_progress\":1},\"route\":{}}]";
    assert_false(protocol_is_progress(ans, strlen(ans)));
    assert_false(protocol_is_progress("{", 1));
}

static void test_progress_frames_bad(void **state)
{
    (void)state;
    double f;
    char msg[8];
    const char *bad[] = {
        "{\"asya_progress\":1.5}",     "{\"asya_progress\":-0.1}",
        "{\"asya_progress\":\"0.5\"}", "{\"asya_progress\":0.5,\"message\":3}",
        "{\"asya_progress\":0.5",      "{\"other\":0.5}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(protocol_parse_progress(bad[i], strlen(bad[i]), &f, msg, sizeof msg),
                         -EINVAL);
    /* A long message is cut at a character boundary: "aaaaaa" + a 2-byte char
     * into 8 bytes keeps 6 + the NUL, not half of the character. */
    const char *cut = "{\"asya_progress\":0,\"message\":\"aaaaaa\u00e9\"}";
    assert_int_equal(protocol_parse_progress(cut, strlen(cut), &f, msg, sizeof msg), 0);
    assert_string_equal(msg, "aaaaaa");
    /* A message that is not UTF-8 is replaced, not dropped with its report. */
    size_t len;
    char *t = protocol_progress_text(0.1, "\xff\xfe", &len);
    assert_non_null(strstr(t, "not valid UTF-8"));
    free(t);
    /* And a long one is cut to PROTO_PROGRESS_MESSAGE_MAX bytes. */
    char big[PROTO_PROGRESS_MESSAGE_MAX + 100];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    t = protocol_progress_text(0.1, big, &len);
    char out[PROTO_PROGRESS_MESSAGE_MAX + 200];
    assert_int_equal(protocol_parse_progress(t, len, &f, out, sizeof out), 0);
    assert_int_equal(strlen(out), PROTO_PROGRESS_MESSAGE_MAX);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_progress_frames),
        cmocka_unit_test(test_progress_frames_bad),
        cmocka_unit_test(test_error_json_shape),
        cmocka_unit_test(test_error_codes),
        cmocka_unit_test(test_error_invalid_utf8),
        cmocka_unit_test(test_error_answer_parses_back),
        cmocka_unit_test(test_results),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_error_array),
        cmocka_unit_test(test_bare_objects),
        cmocka_unit_test(test_payload_with_nul_char),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_invalid_json),
        cmocka_unit_test(test_huge_array),
        cmocka_unit_test(test_deep_answer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
