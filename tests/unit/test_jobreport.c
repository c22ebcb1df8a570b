/*
 * Unit tests for src/sidecar/jobreport.c (job ids, progress and final-status
 * bodies for the gateway): pure.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "jobreport.h"

#include <stdlib.h>
#include <string.h>

static json_t *parse(const char *text)
{
    json_t *v = json_loads(text, 0, NULL);
    assert_non_null(v);
    return v;
}

static void test_job_id_top_level_then_route_metadata(void **state)
{
    (void)state;
    json_t *a = parse("{\"job_id\":\"top\",\"route\":{\"metadata\":{\"job_id\":\"meta\"}}}");
    json_t *b =
        parse("{\"route\":{\"actors\":[\"x\"],\"current\":0,\"metadata\":{\"job_id\":\"m\"}}}");
    json_t *c = parse("{\"job_id\":7,\"route\":{\"metadata\":{\"job_id\":\"\"}}}");
    assert_string_equal(jobreport_job_id(a), "top");
    assert_string_equal(jobreport_job_id(b), "m");
    assert_null(jobreport_job_id(c)); /* not a string, empty */
    assert_null(jobreport_job_id(NULL));
    char longid[JOBREPORT_ID_MAX + 2];
    memset(longid, 'x', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    json_t *d = json_pack("{s:s}", "job_id", longid);
    assert_null(jobreport_job_id(d));
    json_decref(a);
    json_decref(b);
    json_decref(c);
    json_decref(d);
}

static void test_error_job_id_from_original_message(void **state)
{
    (void)state;
    char buf[JOBREPORT_ID_MAX + 1];
    json_t *e =
        parse("{\"error\":\"msg_parsing_error\",\"payload\":{\"error\":\"msg_parsing_error\","
              "\"original_message\":\"{\\\"job_id\\\":\\\"j9\\\",\\\"payload\\\":1}\"}}");
    assert_string_equal(jobreport_error_job_id(e, buf, sizeof buf), "j9");
    json_t *t = parse("{\"payload\":{\"original_message\":\"{\\\"job_id\\\":\\\"j9\"}}");
    assert_null(jobreport_error_job_id(t, buf, sizeof buf)); /* truncated: not JSON */
    json_t *top = parse("{\"job_id\":\"j1\",\"payload\":{}}");
    assert_string_equal(jobreport_error_job_id(top, buf, sizeof buf), "j1");
    json_decref(e);
    json_decref(t);
    json_decref(top);
}

static void test_progress_body(void **state)
{
    (void)state;
    struct envelope env;
    const char *text = "{\"route\":{\"steps\":[\"a\",\"b\"],\"current\":1},\"payload\":{}}";
    assert_int_equal(envelope_parse(text, strlen(text), 0, &env, NULL, 0), 0);
    size_t len;
    char *body = jobreport_progress_body(&env, JOBREPORT_COMPLETED, "b", 12, &len);
    assert_non_null(body);
    assert_int_equal(strlen(body), len);
    assert_string_equal(body, "{\"step\":\"b\",\"step_index\":1,\"total_steps\":2,\"status\":"
                              "\"completed\",\"actor_name\":\"b\",\"duration_ms\":12}");
    free(body);
    body = jobreport_progress_body(&env, JOBREPORT_RECEIVED, "b", -1, &len);
    assert_string_equal(body, "{\"step\":\"b\",\"step_index\":1,\"total_steps\":2,\"status\":"
                              "\"received\",\"actor_name\":\"b\"}");
    free(body);
    envelope_free(&env);
}

static void test_handler_progress_body(void **state)
{
    (void)state;
    struct envelope env;
    const char *text = "{\"route\":{\"actors\":[\"a\",\"b\"],\"current\":0},\"payload\":{}}";
    assert_int_equal(envelope_parse(text, strlen(text), 0, &env, NULL, 0), 0);
    size_t len;
    char *body = jobreport_handler_progress_body(&env, "a", 0.25, "page 1 of 4", &len);
    assert_non_null(body);
    assert_int_equal(strlen(body), len);
    assert_string_equal(body, "{\"step\":\"a\",\"step_index\":0,\"total_steps\":2,\"status\":"
                              "\"processing\",\"actor_name\":\"a\",\"progress\":0.25,"
                              "\"message\":\"page 1 of 4\"}");
    free(body);
    /* An empty message is left out. */
    body = jobreport_handler_progress_body(&env, "a", 1.0, "", &len);
    assert_string_equal(body, "{\"step\":\"a\",\"step_index\":0,\"total_steps\":2,\"status\":"
                              "\"processing\",\"actor_name\":\"a\",\"progress\":1.0}");
    free(body);
    envelope_free(&env);
}

static void test_final_bodies(void **state)
{
    (void)state;
    size_t len;
    json_t *payload = parse("{\"value\":0.1,\"n\":[1,2]}");
    char *ok = jobreport_final_succeeded("j1", payload, &len);
    assert_string_equal(ok, "{\"job_id\":\"j1\",\"status\":\"succeeded\",\"result\":{\"value\":0.1,"
                            "\"n\":[1,2]}}");
    free(ok);
    ok = jobreport_final_succeeded("j1", NULL, &len);
    assert_string_equal(ok, "{\"job_id\":\"j1\",\"status\":\"succeeded\",\"result\":null}");
    free(ok);
    json_t *err =
        parse("{\"error\":\"processing_error\",\"payload\":{\"error\":\"processing_error\","
              "\"details\":{\"message\":\"Intentional test failure\",\"type\":\"V\"}}}");
    char *failed = jobreport_final_failed("j2", err, &len);
    assert_string_equal(failed, "{\"job_id\":\"j2\",\"status\":\"failed\",\"error\":"
                                "\"processing_error: Intentional test failure\"}");
    free(failed);
    json_t *bare = parse("{\"error\":\"timeout_error\",\"payload\":{}}");
    failed = jobreport_final_failed("j3", bare, &len);
    assert_string_equal(failed, "{\"job_id\":\"j3\",\"status\":\"failed\",\"error\":"
                                "\"timeout_error\"}");
    free(failed);
    json_t *none = parse("{\"payload\":1}");
    failed = jobreport_final_failed("j4", none, &len);
    assert_string_equal(failed,
                        "{\"job_id\":\"j4\",\"status\":\"failed\",\"error\":\"unknown_error\"}");
    free(failed);
    json_decref(payload);
    json_decref(err);
    json_decref(bare);
    json_decref(none);
}

static void test_escape(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(jobreport_escape("ab-1._~", out, sizeof out), 0);
    assert_string_equal(out, "ab-1._~");
    assert_int_equal(jobreport_escape("a/b c?é", out, sizeof out), 0);
    assert_string_equal(out, "a%2Fb%20c%3F%C3%A9");
    assert_int_equal(jobreport_escape("/", out, 3), -1); /* "%2F" needs 4 bytes */
    assert_int_equal(jobreport_escape("/", out, 4), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_job_id_top_level_then_route_metadata),
        cmocka_unit_test(test_error_job_id_from_original_message),
        cmocka_unit_test(test_progress_body),
        cmocka_unit_test(test_handler_progress_body),
        cmocka_unit_test(test_final_bodies),
        cmocka_unit_test(test_escape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
