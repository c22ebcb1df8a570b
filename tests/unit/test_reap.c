/* Unit tests for src/runtime/reap.c: what a worker's death means. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "reap.h"

#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#define EXITED(code)  ((code) << 8)
#define SIGNALED(sig) (sig)

static void test_backoff(void **state)
{
    (void)state;
    assert_true(reap_backoff(0) == 0);
    assert_true(reap_backoff(-3) == 0);
    assert_true(reap_backoff(1) == REAP_BACKOFF_MIN_S);
    assert_true(reap_backoff(2) == 2 * REAP_BACKOFF_MIN_S);
    assert_true(reap_backoff(3) == 4 * REAP_BACKOFF_MIN_S);
    /* Capped, however long it keeps failing. */
    assert_true(reap_backoff(7) == REAP_BACKOFF_MAX_S);
    assert_true(reap_backoff(1000000) == REAP_BACKOFF_MAX_S);
}

/* Checks the error answer for a worker that ended with status: its code, type,
 * and that its message contains text_in_message. */
static void check_answer(int status, bool bad_answer, bool taken, const char *code,
                         const char *type, const char *text_in_message)
{
    size_t len = 0;
    char *text = reap_error_answer(42, "/x.so:f", status, bad_answer, taken, &len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    json_t *a = json_loads(text, 0, NULL);
    assert_non_null(a);
    assert_true(json_is_array(a) && json_array_size(a) == 1);
    json_t *e = json_array_get(a, 0);
    assert_string_equal(json_string_value(json_object_get(e, "error")), code);
    json_t *d = json_object_get(e, "details");
    assert_string_equal(json_string_value(json_object_get(d, "type")), type);
    assert_non_null(strstr(json_string_value(json_object_get(d, "message")), text_in_message));
    assert_string_equal(json_string_value(json_object_get(d, "traceback")),
                        "worker process 42 running handler /x.so:f");
    json_decref(a);
    free(text);
}

static void test_error_answer(void **state)
{
    (void)state;
    check_answer(SIGNALED(SIGSEGV), false, true, "processing_error", "SIGSEGV",
                 "worker process 42 was killed by signal SIGSEGV (Segmentation fault) while "
                 "handling the request");
    check_answer(SIGNALED(SIGKILL), false, true, "oom_error", "MemoryError",
                 "killed by SIGKILL while handling the request (likely out of memory");
    check_answer(EXITED(3), false, true, "processing_error", "WorkerExit",
                 "exited with status 3 while handling the request");
    check_answer(EXITED(3), false, false, "processing_error", "WorkerExit",
                 "exited with status 3 before it read the request");
    /* A protocol breach wins over how it then died. */
    check_answer(SIGNALED(SIGKILL), true, true, "processing_error", "WorkerProtocolError",
                 "invalid or oversized answer");
}

static void test_taken(void **state)
{
    (void)state;
    /* Written whole and read whole: the handler may have run it. */
    assert_true(reap_taken(true, false, 0));
    /* Not all of it was sent. */
    assert_false(reap_taken(false, false, 0));
    /* The worker's socket went away with bytes unread. */
    assert_false(reap_taken(true, true, 0));
    /* Bytes still queued to a socket a child of the worker holds open. */
    assert_false(reap_taken(true, false, 768));
    assert_false(reap_taken(false, true, 768));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_error_answer),
        cmocka_unit_test(test_taken),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
