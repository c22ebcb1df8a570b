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
static void check_answer(int status, enum reap_kill kill, bool taken, const char *code,
                         const char *type, const char *text_in_message)
{
    size_t len = 0;
    char *text = reap_error_answer(42, "/x.so:f", status, kill, taken, &len);
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
    check_answer(SIGNALED(SIGSEGV), REAP_KILL_NONE, true, "processing_error", "SIGSEGV",
                 "worker process 42 was killed by signal SIGSEGV (Segmentation fault) while "
                 "handling the request");
    check_answer(SIGNALED(SIGKILL), REAP_KILL_NONE, true, "oom_error", "MemoryError",
                 "killed by SIGKILL while handling the request (likely out of memory");
    check_answer(EXITED(3), REAP_KILL_NONE, true, "processing_error", "WorkerExit",
                 "exited with status 3 while handling the request");
    check_answer(EXITED(3), REAP_KILL_NONE, false, "processing_error", "WorkerExit",
                 "exited with status 3 before it read the request");
    /* A protocol breach wins over how it then died. */
    check_answer(SIGNALED(SIGKILL), REAP_KILL_PROTOCOL, true, "processing_error",
                 "WorkerProtocolError", "invalid or oversized answer");
    check_answer(EXITED(0), REAP_KILL_PROTOCOL, true, "processing_error", "WorkerProtocolError",
                 "invalid or oversized answer");
    /* The supervisor's own SIGKILL is never reported as out of memory. */
    check_answer(SIGNALED(SIGKILL), REAP_KILL_CLIENT_LEFT, true, "processing_error", "WorkerKilled",
                 "was killed by asya-runtime while handling the request");
    check_answer(SIGNALED(SIGKILL), REAP_KILL_SHUTDOWN, true, "processing_error", "WorkerKilled",
                 "killed by asya-runtime");
    check_answer(SIGNALED(SIGKILL), REAP_KILL_START, true, "processing_error", "WorkerKilled",
                 "killed by asya-runtime");
    /* A kill that came too late: what it died of. */
    check_answer(SIGNALED(SIGABRT), REAP_KILL_CLIENT_LEFT, true, "processing_error", "SIGABRT",
                 "SIGABRT");
}

static void test_cause(void **state)
{
    (void)state;
    /* A SIGKILL the supervisor did not send: the OOM killer. */
    assert_int_equal(reap_cause(SIGNALED(SIGKILL), REAP_KILL_NONE), REAP_CAUSE_OOM_KILL);
    /* The supervisor's own kills. */
    assert_int_equal(reap_cause(SIGNALED(SIGKILL), REAP_KILL_CLIENT_LEFT), REAP_CAUSE_TIMEOUT_KILL);
    assert_int_equal(reap_cause(SIGNALED(SIGKILL), REAP_KILL_PROTOCOL), REAP_CAUSE_PROTOCOL_KILL);
    assert_int_equal(reap_cause(SIGNALED(SIGKILL), REAP_KILL_START), REAP_CAUSE_EXIT);
    assert_int_equal(reap_cause(SIGNALED(SIGKILL), REAP_KILL_SHUTDOWN), REAP_CAUSE_NONE);
    /* Other signals are crashes, whoever meant to kill it. */
    assert_int_equal(reap_cause(SIGNALED(SIGSEGV), REAP_KILL_NONE), REAP_CAUSE_CRASH);
    assert_int_equal(reap_cause(SIGNALED(SIGTERM), REAP_KILL_NONE), REAP_CAUSE_CRASH);
    assert_int_equal(reap_cause(SIGNALED(SIGSEGV), REAP_KILL_CLIENT_LEFT), REAP_CAUSE_CRASH);
    assert_int_equal(reap_cause(SIGNALED(SIGSEGV) | 0x80, REAP_KILL_NONE), REAP_CAUSE_CRASH);
    /* Exits, whatever the status, and also when a kill was on its way. */
    assert_int_equal(reap_cause(EXITED(0), REAP_KILL_NONE), REAP_CAUSE_EXIT);
    assert_int_equal(reap_cause(EXITED(3), REAP_KILL_NONE), REAP_CAUSE_EXIT);
    assert_int_equal(reap_cause(EXITED(1), REAP_KILL_START), REAP_CAUSE_EXIT);
    assert_int_equal(reap_cause(EXITED(0), REAP_KILL_PROTOCOL), REAP_CAUSE_EXIT);
    assert_int_equal(reap_cause(EXITED(0), REAP_KILL_SHUTDOWN), REAP_CAUSE_NONE);
}

static void test_cause_names(void **state)
{
    (void)state;
    /* The names the sidecar exports as runtime_worker_restarts_total{cause}. */
    assert_string_equal(reap_cause_name(REAP_CAUSE_CRASH), "crash");
    assert_string_equal(reap_cause_name(REAP_CAUSE_OOM_KILL), "oom_kill");
    assert_string_equal(reap_cause_name(REAP_CAUSE_TIMEOUT_KILL), "timeout_kill");
    assert_string_equal(reap_cause_name(REAP_CAUSE_PROTOCOL_KILL), "protocol_kill");
    assert_string_equal(reap_cause_name(REAP_CAUSE_EXIT), "exit");
    assert_null(reap_cause_name(REAP_CAUSE_NONE));
    assert_null(reap_cause_name((enum reap_cause)99));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_error_answer),
        cmocka_unit_test(test_cause),
        cmocka_unit_test(test_cause_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
