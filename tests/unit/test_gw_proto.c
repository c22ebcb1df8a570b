/* Unit tests for the gateway's pure protocol parts: SSE framing (sse.c's
 * framing functions), JSON-RPC classification (jsonrpc.c), /jobs paths (jobpath.c). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "jobpath.h"
#include "jobstore.h"
#include "jsonrpc.h"
#include "sse.h"

#include <stdlib.h>
#include <string.h>

#define ID "0b8e4c2a-1f3d-4e5a-9b6c-7d8e9f0a1b2c"

static void assert_frame(int64_t id, const char *event, const char *data, const char *want)
{
    struct textbuf b = TEXTBUF_INIT;
    sse_frame(&b, id, event, data);
    assert_false(textbuf_failed(&b));
    assert_string_equal(b.data, want);
    textbuf_free(&b);
}

static void test_sse_frame(void **state)
{
    (void)state;
    assert_frame(0, "status", "Pending", "event: status\ndata: Pending\n\n");
    assert_frame(42, "update", "{\"a\":1}", "id: 42\nevent: update\ndata: {\"a\":1}\n\n");
    assert_frame(0, NULL, "x", "data: x\n\n");
    /* A newline inside the data cannot end the event early. */
    assert_frame(7, "update", "one\ntwo\r\nthree",
                 "id: 7\nevent: update\ndata: one\ndata: two\ndata: three\n\n");
    assert_frame(0, NULL, "", "data: \n\n");
    assert_frame(0, NULL, "end\n", "data: end\ndata: \n\n");
}

static void test_sse_comment(void **state)
{
    (void)state;
    struct textbuf b = TEXTBUF_INIT;
    sse_comment(&b, "keepalive");
    assert_string_equal(b.data, ": keepalive\n\n");
    textbuf_free(&b);
}

static void test_sse_last_id(void **state)
{
    (void)state;
    assert_int_equal(sse_parse_last_id(NULL), 0);
    assert_int_equal(sse_parse_last_id(""), 0);
    assert_int_equal(sse_parse_last_id("17"), 17);
    assert_int_equal(sse_parse_last_id("17 "), 17);
    assert_int_equal(sse_parse_last_id("-3"), 0);
    assert_int_equal(sse_parse_last_id("12abc"), 0);
    assert_int_equal(sse_parse_last_id("99999999999999999999999"), 0);
    assert_int_equal(sse_parse_last_id("9007199254740993"), INT64_C(9007199254740993));
}

static void parse(const char *body, struct rpc_message *m)
{
    rpc_message_parse(body, strlen(body), m);
}

static void test_rpc_request(void **state)
{
    (void)state;
    struct rpc_message m;
    parse("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{}}", &m);
    assert_int_equal(m.kind, RPC_REQUEST);
    assert_string_equal(m.method, "tools/list");
    assert_int_equal(json_integer_value(m.id), 1);
    assert_non_null(m.params);
    rpc_message_clear(&m);

    parse("{\"jsonrpc\":\"2.0\",\"id\":\"abc\",\"method\":\"ping\"}", &m);
    assert_int_equal(m.kind, RPC_REQUEST);
    assert_string_equal(json_string_value(m.id), "abc");
    assert_null(m.params);
    rpc_message_clear(&m);
}

static void test_rpc_notification_and_response(void **state)
{
    (void)state;
    struct rpc_message m;
    parse("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}", &m);
    assert_int_equal(m.kind, RPC_NOTIFICATION);
    rpc_message_clear(&m);
    parse("{\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{}}", &m);
    assert_int_equal(m.kind, RPC_RESPONSE);
    rpc_message_clear(&m);
    parse("{\"jsonrpc\":\"2.0\",\"id\":5,\"error\":{\"code\":1,\"message\":\"x\"}}", &m);
    assert_int_equal(m.kind, RPC_RESPONSE);
    rpc_message_clear(&m);
}

static void assert_bad(const char *body, int code, const char *text_prefix, bool has_id)
{
    struct rpc_message m;
    parse(body, &m);
    assert_int_equal(m.kind, RPC_BAD);
    assert_int_equal(m.error_code, code);
    if (strncmp(m.error_text, text_prefix, strlen(text_prefix)) != 0)
        fail_msg("error text \"%s\" does not start with \"%s\"", m.error_text, text_prefix);
    assert_int_equal(m.id != NULL, has_id);
    rpc_message_clear(&m);
}

static void test_rpc_bad(void **state)
{
    (void)state;
    assert_bad("{not json", RPC_PARSE_ERROR, "Parse error:", false);
    assert_bad("", RPC_PARSE_ERROR, "Parse error:", false);
    assert_bad("[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]", RPC_INVALID_REQUEST,
               "Invalid Request: batch", false);
    assert_bad("42", RPC_INVALID_REQUEST, "Invalid Request: expected a JSON object", false);
    assert_bad("{\"id\":1,\"method\":\"ping\"}", RPC_INVALID_REQUEST, "Invalid Request: jsonrpc",
               true);
    assert_bad("{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"ping\"}", RPC_INVALID_REQUEST,
               "Invalid Request: jsonrpc", true);
    assert_bad("{\"jsonrpc\":\"2.0\",\"id\":1}", RPC_INVALID_REQUEST,
               "Invalid Request: method is required", true);
    assert_bad("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":7}", RPC_INVALID_REQUEST,
               "Invalid Request: method must be a string", true);
    assert_bad("{\"jsonrpc\":\"2.0\",\"id\":{\"x\":1},\"method\":\"ping\"}", RPC_INVALID_REQUEST,
               "Invalid Request: id", false);
    assert_bad("{\"jsonrpc\":\"2.0\",\"id\":1.5,\"method\":\"ping\"}", RPC_INVALID_REQUEST,
               "Invalid Request: id", false);
    assert_bad("{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\",\"params\":[1]}",
               RPC_INVALID_PARAMS, "Invalid params", true);
}

static void test_rpc_build(void **state)
{
    (void)state;
    json_t *id = json_integer(3);
    json_t *r = rpc_result(id, json_object());
    char *t = json_dumps(r, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(t, "{\"id\":3,\"jsonrpc\":\"2.0\",\"result\":{}}");
    free(t);
    json_decref(r);
    r = rpc_error(NULL, RPC_METHOD_NOT_FOUND, "Method not found: x");
    t = json_dumps(r, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(t, "{\"error\":{\"code\":-32601,\"message\":\"Method not found: "
                           "x\"},\"id\":null,\"jsonrpc\":\"2.0\"}");
    free(t);
    json_decref(r);
    json_decref(id);
}

static void test_rpc_version(void **state)
{
    (void)state;
    assert_string_equal(rpc_negotiate_version("2025-06-18"), "2025-06-18");
    assert_string_equal(rpc_negotiate_version("2025-03-26"), "2025-03-26");
    assert_string_equal(rpc_negotiate_version("2024-11-05"), "2024-11-05");
    assert_string_equal(rpc_negotiate_version("2023-01-01"), "2025-06-18");
    assert_string_equal(rpc_negotiate_version(NULL), "2025-06-18");
}

static void assert_path(const char *rest, enum jobpath_result want, enum job_action want_action)
{
    char id[JOB_ID_LEN + 1] = "";
    enum job_action a = (enum job_action)99;
    enum jobpath_result r = jobpath_parse(rest, id, &a);
    if (r != want)
        fail_msg("jobpath_parse(\"%.60s\") = %d; want %d", rest, (int)r, (int)want);
    if (want == JOBPATH_OK || want == JOBPATH_BAD_ID)
        assert_int_equal(a, want_action);
    if (want == JOBPATH_OK)
        assert_memory_equal(id, rest, JOB_ID_LEN);
}

static void test_jobpath(void **state)
{
    (void)state;
    assert_path(ID, JOBPATH_OK, JOB_ACTION_GET);
    assert_path(ID "/stream", JOBPATH_OK, JOB_ACTION_STREAM);
    assert_path(ID "/active", JOBPATH_OK, JOB_ACTION_ACTIVE);
    assert_path(ID "/progress", JOBPATH_OK, JOB_ACTION_PROGRESS);
    assert_path(ID "/heartbeat", JOBPATH_OK, JOB_ACTION_HEARTBEAT);
    assert_path(ID "/final", JOBPATH_OK, JOB_ACTION_FINAL);
    assert_path("", JOBPATH_EMPTY_ID, JOB_ACTION_GET);
    assert_path("/stream", JOBPATH_EMPTY_ID, JOB_ACTION_GET);
    assert_path(ID "/", JOBPATH_UNKNOWN_ACTION, JOB_ACTION_GET);
    assert_path(ID "/delete", JOBPATH_UNKNOWN_ACTION, JOB_ACTION_GET);
    assert_path(ID "/stream/x", JOBPATH_UNKNOWN_ACTION, JOB_ACTION_GET);
    assert_path("not-a-job", JOBPATH_BAD_ID, JOB_ACTION_GET);
    assert_path("0B8E4C2A-1F3D-4E5A-9B6C-7D8E9F0A1B2C", JOBPATH_BAD_ID, JOB_ACTION_GET);
    assert_path("not-a-job/final", JOBPATH_BAD_ID, JOB_ACTION_FINAL);
    char *huge = malloc(10001);
    assert_non_null(huge);
    memset(huge, 'a', 10000);
    huge[10000] = '\0';
    assert_path(huge, JOBPATH_BAD_ID, JOB_ACTION_GET);
    free(huge);
    assert_true(job_action_is_post(JOB_ACTION_FINAL));
    assert_true(job_action_is_post(JOB_ACTION_PROGRESS));
    assert_true(job_action_is_post(JOB_ACTION_HEARTBEAT));
    assert_false(job_action_is_post(JOB_ACTION_GET));
    assert_false(job_action_is_post(JOB_ACTION_STREAM));
    assert_false(job_action_is_post(JOB_ACTION_ACTIVE));
}

static void assert_masked(const char *url, const char *want)
{
    char buf[256];
    jobstore_mask_url(url, buf, sizeof buf);
    assert_string_equal(buf, want);
}

static void test_mask_database_url(void **state)
{
    (void)state;
    assert_masked("postgres://asya:secret@127.0.0.1:5432/asya?sslmode=disable",
                  "postgres://asya:***@127.0.0.1:5432/asya?sslmode=disable");
    assert_masked("postgresql://asya@db/asya", "postgresql://asya@db/asya");
    assert_masked("host=db user=asya password=secret dbname=asya",
                  "host=db user=asya password=*** dbname=asya");
    assert_masked("host=db password='se cret' dbname=asya", "host=db password=*** dbname=asya");
    assert_masked("", "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sse_frame),
        cmocka_unit_test(test_sse_comment),
        cmocka_unit_test(test_sse_last_id),
        cmocka_unit_test(test_rpc_request),
        cmocka_unit_test(test_rpc_notification_and_response),
        cmocka_unit_test(test_rpc_bad),
        cmocka_unit_test(test_rpc_build),
        cmocka_unit_test(test_rpc_version),
        cmocka_unit_test(test_jobpath),
        cmocka_unit_test(test_mask_database_url),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
