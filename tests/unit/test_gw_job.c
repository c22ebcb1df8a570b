/* Unit tests for src/gateway/job.c: progress arithmetic, job_apply rules, JSON, times, ids. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "job.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define T0 INT64_C(1796205600123) /* 2026-12-02T10:00:00.123Z */
#define ID "0b8e4c2a-1f3d-4e5a-9b6c-7d8e9f0a1b2c"

/* Fails unless got == want exactly (no tolerance: the arithmetic is exact). */
#define assert_pct(got, want)                                                                      \
    do {                                                                                           \
        double g_ = (got), w_ = (want);                                                            \
        if (!(g_ == w_))                                                                           \
            fail_msg("%s = %.17g; want %.17g", #got, g_, w_);                                      \
    } while (0)

/* Fails unless the JSON value v equals the JSON text want (v is consumed). */
static void assert_json(json_t *v, const char *want)
{
    json_error_t err;
    json_t *w = json_loads(want, 0, &err);
    if (!w)
        fail_msg("bad expected JSON: %s", err.text);
    if (!v || !json_equal(v, w)) {
        char *got = v ? json_dumps(v, JSON_COMPACT) : NULL;
        char msg[4096];
        snprintf(msg, sizeof msg, "got  %s\nwant %s", got ? got : "NULL", want);
        free(got);
        json_decref(v);
        json_decref(w);
        fail_msg("%s", msg);
    }
    json_decref(v);
    json_decref(w);
}

/* A Pending job on route [a, b], created at T0, with a payload. */
static void make_job(struct job *j)
{
    memset(j, 0, sizeof *j);
    memcpy(j->id, ID, JOB_ID_LEN + 1);
    j->status = JOB_PENDING;
    j->nsteps = 2;
    j->steps = calloc(2, sizeof *j->steps);
    assert_non_null(j->steps);
    j->steps[0] = strdup("a");
    j->steps[1] = strdup("b");
    assert_non_null(j->steps[0]);
    assert_non_null(j->steps[1]);
    j->payload = json_pack("{s:i}", "value", 3);
    assert_non_null(j->payload);
    j->total_steps = 2;
    j->created_ms = T0;
    j->updated_ms = T0;
}

static struct job_change progress_change(int idx, enum step_status st, const char *step)
{
    struct job_change c;
    memset(&c, 0, sizeof c);
    c.kind = CHANGE_PROGRESS;
    c.step = step;
    c.step_index = idx;
    c.step_status = st;
    c.percent = progress_percent(idx, 2, st);
    return c;
}

/* ---- names -------------------------------------------------------------- */

static void test_status_names(void **state)
{
    (void)state;
    const char *names[] = {"Pending", "Running", "Succeeded", "Failed", "Unknown"};
    for (int i = 0; i <= JOB_UNKNOWN; i++) {
        assert_string_equal(job_status_name((enum job_status)i), names[i]);
        enum job_status s = JOB_UNKNOWN;
        assert_int_equal(job_status_parse(names[i], &s), 0);
        assert_int_equal(s, i);
    }
    enum job_status s = JOB_RUNNING;
    assert_int_equal(job_status_parse("pending", &s), -EINVAL);
    assert_int_equal(job_status_parse("Pending ", &s), -EINVAL);
    assert_int_equal(job_status_parse("", &s), -EINVAL);
    assert_int_equal(job_status_parse(NULL, &s), -EINVAL);
    assert_int_equal(s, JOB_RUNNING);
    assert_false(job_status_terminal(JOB_PENDING));
    assert_false(job_status_terminal(JOB_RUNNING));
    assert_true(job_status_terminal(JOB_SUCCEEDED));
    assert_true(job_status_terminal(JOB_FAILED));
    assert_false(job_status_terminal(JOB_UNKNOWN));
}

static void test_step_status_names(void **state)
{
    (void)state;
    assert_null(step_status_name(STEP_NONE));
    assert_string_equal(step_status_name(STEP_RECEIVED), "received");
    assert_string_equal(step_status_name(STEP_PROCESSING), "processing");
    assert_string_equal(step_status_name(STEP_COMPLETED), "completed");
    enum step_status s = STEP_NONE;
    assert_int_equal(step_status_parse("received", &s), 0);
    assert_int_equal(s, STEP_RECEIVED);
    assert_int_equal(step_status_parse("processing", &s), 0);
    assert_int_equal(s, STEP_PROCESSING);
    assert_int_equal(step_status_parse("completed", &s), 0);
    assert_int_equal(s, STEP_COMPLETED);
    s = STEP_PROCESSING;
    assert_int_equal(step_status_parse("Completed", &s), -EINVAL);
    assert_int_equal(step_status_parse("picked_up", &s), -EINVAL);
    assert_int_equal(step_status_parse("", &s), -EINVAL);
    assert_int_equal(step_status_parse(NULL, &s), -EINVAL);
    assert_int_equal(s, STEP_PROCESSING);
}

/* ---- progress arithmetic ------------------------------------------------ */

static void test_progress_seed_sequence(void **state)
{
    (void)state;
    /* The seed's two-step pipeline: 5, 25, 50, 55, 75, 100. */
    assert_pct(progress_percent(0, 2, STEP_RECEIVED), 5.0);
    assert_pct(progress_percent(0, 2, STEP_PROCESSING), 25.0);
    assert_pct(progress_percent(0, 2, STEP_COMPLETED), 50.0);
    assert_pct(progress_percent(1, 2, STEP_RECEIVED), 55.0);
    assert_pct(progress_percent(1, 2, STEP_PROCESSING), 75.0);
    assert_pct(progress_percent(1, 2, STEP_COMPLETED), 100.0);
}

static void test_progress_after(void **state)
{
    (void)state;
    /* The checkpoint before each of the seed's two-step route's six. */
    assert_pct(progress_after(0, 2, STEP_RECEIVED), 0.0);
    assert_pct(progress_after(0, 2, STEP_PROCESSING), 5.0);
    assert_pct(progress_after(0, 2, STEP_COMPLETED), 25.0);
    assert_pct(progress_after(1, 2, STEP_RECEIVED), 50.0);
    assert_pct(progress_after(1, 2, STEP_PROCESSING), 55.0);
    assert_pct(progress_after(1, 2, STEP_COMPLETED), 75.0);
    assert_pct(progress_after(0, 2, STEP_NONE), 0.0);
}

static void test_progress_within_a_step(void **state)
{
    (void)state;
    /* A handler's own progress lies between its step's processing and completed. */
    assert_pct(progress_percent_within(0, 2, 0.0), 25.0);
    assert_pct(progress_percent_within(0, 2, 0.5), 37.25);
    assert_pct(progress_percent_within(0, 2, 1.0), 49.5);
    assert_pct(progress_percent_within(1, 2, 1.0), 99.5);
    assert_pct(progress_percent_within(0, 1, 2.0), 99.0); /* clamped to 1 */
    assert_pct(progress_percent_within(0, 1, -1.0), 50.0);
    assert_pct(progress_percent_within(0, 0, 0.5), 0.0);
}

static void test_progress_other_routes(void **state)
{
    (void)state;
    assert_pct(progress_percent(0, 1, STEP_RECEIVED), 10.0);
    assert_pct(progress_percent(0, 1, STEP_PROCESSING), 50.0);
    assert_pct(progress_percent(0, 1, STEP_COMPLETED), 100.0);
    /* Not rounded: exact division. */
    assert_pct(progress_percent(0, 3, STEP_RECEIVED), 10.0 / 3.0);
    assert_pct(progress_percent(1, 3, STEP_PROCESSING), 150.0 / 3.0);
    assert_pct(progress_percent(2, 3, STEP_RECEIVED), 210.0 / 3.0);
    assert_pct(progress_percent(3, 4, STEP_PROCESSING), 87.5);
    assert_pct(progress_percent(1, 2, STEP_NONE), 50.0);
}

static void test_progress_clamped(void **state)
{
    (void)state;
    assert_pct(progress_percent(2, 2, STEP_RECEIVED), 100.0); /* 105 */
    assert_pct(progress_percent(5, 2, STEP_COMPLETED), 100.0);
    assert_pct(progress_percent(-1, 2, STEP_RECEIVED), 0.0); /* -45 */
    assert_pct(progress_percent(-1, 2, STEP_COMPLETED), 0.0);
    assert_pct(progress_percent(1000000, 3, STEP_COMPLETED), 100.0);
    assert_pct(progress_percent(0, 0, STEP_COMPLETED), 0.0);
    assert_pct(progress_percent(3, 0, STEP_RECEIVED), 0.0);
    assert_pct(progress_percent(0, -2, STEP_COMPLETED), 0.0);
}

/* ---- job_apply ---------------------------------------------------------- */

static void test_apply_running(void **state)
{
    (void)state;
    struct job j;
    make_job(&j);
    j.progress_percent = 5.0; /* a sidecar was faster than the confirm */
    struct job_change c = {.kind = CHANGE_RUNNING};
    struct job_update u;
    assert_int_equal(job_apply(&j, &c, T0 + 10, &u), 0);
    assert_int_equal(j.status, JOB_RUNNING);
    assert_pct(j.progress_percent, 5.0);
    assert_true(j.updated_ms == T0 + 10);
    assert_true(j.created_ms == T0);
    assert_null(j.current_step);
    assert_int_equal(j.steps_completed, 0);

    assert_true(u.id == 0);
    assert_string_equal(u.job_id, ID);
    assert_int_equal(u.status, JOB_RUNNING);
    assert_string_equal(u.message, "Sending message to first actor");
    assert_false(u.has_progress);
    assert_null(u.step);
    assert_int_equal(u.step_status, STEP_NONE);
    assert_null(u.result);
    assert_null(u.error);
    assert_true(u.ts_ms == T0 + 10);
    job_update_clear(&u);

    c.message = "custom";
    assert_int_equal(job_apply(&j, &c, T0 + 20, &u), 0);
    assert_string_equal(u.message, "custom");
    job_update_clear(&u);
    job_clear(&j);
}

static void test_apply_progress_sets_running(void **state)
{
    (void)state;
    struct job j;
    make_job(&j);
    struct job_change c = progress_change(0, STEP_RECEIVED, "a");
    struct job_update u;
    assert_int_equal(job_apply(&j, &c, T0 + 5, &u), 0);
    assert_int_equal(j.status, JOB_RUNNING);
    assert_pct(j.progress_percent, 5.0);
    assert_string_equal(j.current_step, "a");
    assert_int_equal(j.steps_completed, 0);
    assert_true(j.updated_ms == T0 + 5);

    assert_int_equal(u.status, JOB_RUNNING);
    assert_string_equal(u.message, "Step a: received");
    assert_true(u.has_progress);
    assert_pct(u.progress_percent, 5.0);
    assert_string_equal(u.step, "a");
    assert_int_equal(u.step_status, STEP_RECEIVED);
    assert_true(u.ts_ms == T0 + 5);
    job_update_clear(&u);

    c = progress_change(0, STEP_PROCESSING, "a");
    c.message = "working hard";
    assert_int_equal(job_apply(&j, &c, T0 + 6, &u), 0);
    assert_string_equal(u.message, "working hard");
    assert_pct(j.progress_percent, 25.0);
    job_update_clear(&u);
    job_clear(&j);
}

static void test_apply_progress_monotonic(void **state)
{
    (void)state;
    struct job j;
    make_job(&j);
    struct job_update u;
    struct job_change c = progress_change(0, STEP_COMPLETED, "a");
    assert_int_equal(job_apply(&j, &c, T0 + 1, &u), 0);
    assert_pct(j.progress_percent, 50.0);
    job_update_clear(&u);

    /* A late "processing" of step a: the percent stays, the step is reported. */
    c = progress_change(0, STEP_PROCESSING, "a");
    assert_int_equal(job_apply(&j, &c, T0 + 2, &u), 0);
    assert_pct(j.progress_percent, 50.0);
    assert_true(u.has_progress);
    assert_pct(u.progress_percent, 50.0);
    assert_int_equal(u.step_status, STEP_PROCESSING);
    job_update_clear(&u);

    c = progress_change(1, STEP_RECEIVED, "b");
    assert_int_equal(job_apply(&j, &c, T0 + 3, &u), 0);
    assert_pct(j.progress_percent, 55.0);
    assert_string_equal(j.current_step, "b");
    job_update_clear(&u);

    /* Out-of-range and NaN percents are clamped, never lowering the job. */
    c = progress_change(1, STEP_PROCESSING, "b");
    c.percent = -20.0;
    assert_int_equal(job_apply(&j, &c, T0 + 4, &u), 0);
    assert_pct(j.progress_percent, 55.0);
    job_update_clear(&u);
    c.percent = NAN;
    assert_int_equal(job_apply(&j, &c, T0 + 5, &u), 0);
    assert_pct(j.progress_percent, 55.0);
    job_update_clear(&u);
    c.percent = 250.0;
    assert_int_equal(job_apply(&j, &c, T0 + 6, &u), 0);
    assert_pct(j.progress_percent, 100.0);
    assert_pct(u.progress_percent, 100.0);
    assert_int_equal(j.status, JOB_RUNNING); /* 100 % is not Succeeded */
    job_update_clear(&u);
    job_clear(&j);
}

static void test_apply_steps_completed(void **state)
{
    (void)state;
    struct job j;
    make_job(&j);
    struct job_update u;
    struct job_change c = progress_change(0, STEP_PROCESSING, "a");
    assert_int_equal(job_apply(&j, &c, T0, &u), 0);
    assert_int_equal(j.steps_completed, 0);
    job_update_clear(&u);

    c = progress_change(0, STEP_COMPLETED, "a");
    assert_int_equal(job_apply(&j, &c, T0, &u), 0);
    assert_int_equal(j.steps_completed, 1);
    job_update_clear(&u);

    c = progress_change(1, STEP_RECEIVED, "b");
    assert_int_equal(job_apply(&j, &c, T0, &u), 0);
    assert_int_equal(j.steps_completed, 1);
    job_update_clear(&u);

    c = progress_change(1, STEP_COMPLETED, "b");
    assert_int_equal(job_apply(&j, &c, T0, &u), 0);
    assert_int_equal(j.steps_completed, 2);
    assert_string_equal(u.message, "Step b: completed");
    job_update_clear(&u);

    /* A duplicate, late "completed" of step a does not lower it. */
    c = progress_change(0, STEP_COMPLETED, "a");
    assert_int_equal(job_apply(&j, &c, T0, &u), 0);
    assert_int_equal(j.steps_completed, 2);
    assert_string_equal(j.current_step, "a"); /* the last report names the step */
    job_update_clear(&u);
    job_clear(&j);

    /* A final that overtook the progress reports (a fast pipeline): Succeeded
     * means every step ran. */
    make_job(&j);
    c = progress_change(0, STEP_RECEIVED, "a");
    assert_int_equal(job_apply(&j, &c, T0, &u), 0);
    job_update_clear(&u);
    struct job_change ok = {.kind = CHANGE_SUCCEEDED};
    assert_int_equal(job_apply(&j, &ok, T0, &u), 0);
    assert_int_equal(j.steps_completed, 2);
    job_update_clear(&u);
    job_clear(&j);
}

static void test_apply_progress_without_step_name(void **state)
{
    (void)state;
    struct job j;
    make_job(&j);
    j.current_step = strdup("a");
    assert_non_null(j.current_step);
    struct job_update u;
    struct job_change c = progress_change(1, STEP_PROCESSING, NULL);
    assert_int_equal(job_apply(&j, &c, T0, &u), 0);
    assert_string_equal(u.message, "Step b: processing"); /* the route's step name */
    assert_null(u.step);
    assert_string_equal(j.current_step, "a"); /* kept */
    job_update_clear(&u);

    c = progress_change(7, STEP_RECEIVED, NULL);
    assert_int_equal(job_apply(&j, &c, T0, &u), 0);
    assert_string_equal(u.message, "Step 7: received");
    job_update_clear(&u);
    job_clear(&j);
}

static void test_apply_succeeded(void **state)
{
    (void)state;
    struct job j;
    make_job(&j);
    j.status = JOB_RUNNING;
    j.progress_percent = 55.0;
    json_t *result = json_pack("{s:i}", "value", 7);
    struct job_change c = {.kind = CHANGE_SUCCEEDED, .result = result};
    struct job_update u;
    assert_int_equal(job_apply(&j, &c, T0 + 100, &u), 0);
    assert_int_equal(j.status, JOB_SUCCEEDED);
    assert_pct(j.progress_percent, 100.0);
    assert_non_null(j.result);
    assert_true(j.result != result); /* copied */
    assert_true(json_equal(j.result, result));
    assert_null(j.error);
    assert_true(j.updated_ms == T0 + 100);

    assert_int_equal(u.status, JOB_SUCCEEDED);
    assert_string_equal(u.message, "Job completed successfully");
    assert_true(u.has_progress);
    assert_pct(u.progress_percent, 100.0);
    assert_true(json_equal(u.result, result));
    assert_true(u.result != result);
    assert_null(u.error);
    json_decref(result);
    job_update_clear(&u);
    job_clear(&j);
}

static void test_apply_failed(void **state)
{
    (void)state;
    struct job j;
    make_job(&j);
    j.progress_percent = 25.0;
    struct job_change c = {.kind = CHANGE_FAILED, .error = "boom"};
    struct job_update u;
    assert_int_equal(job_apply(&j, &c, T0 + 100, &u), 0);
    assert_int_equal(j.status, JOB_FAILED);
    assert_string_equal(j.error, "boom");
    assert_null(j.result);
    assert_pct(j.progress_percent, 25.0);
    assert_int_equal(u.status, JOB_FAILED);
    assert_string_equal(u.message, "Job failed: boom");
    assert_string_equal(u.error, "boom");
    assert_false(u.has_progress);
    job_update_clear(&u);
    job_clear(&j);

    make_job(&j);
    c.error = NULL;
    assert_int_equal(job_apply(&j, &c, T0, &u), 0);
    assert_string_equal(j.error, "unknown error");
    assert_string_equal(u.message, "Job failed: unknown error");
    job_update_clear(&u);
    job_clear(&j);

    make_job(&j);
    c.error = "job timed out";
    c.message = "deadline passed";
    assert_int_equal(job_apply(&j, &c, T0, &u), 0);
    assert_string_equal(j.error, "job timed out");
    assert_string_equal(u.message, "deadline passed");
    job_update_clear(&u);
    job_clear(&j);
}

static void test_apply_terminal_is_noop(void **state)
{
    (void)state;
    struct job j;
    make_job(&j);
    struct job_change fin = {.kind = CHANGE_FAILED, .error = "first"};
    struct job_update u;
    assert_int_equal(job_apply(&j, &fin, T0 + 1, &u), 0);
    job_update_clear(&u);

    struct job_update sentinel;
    memset(&sentinel, 0xA5, sizeof sentinel);
    struct job_change changes[4];
    memset(changes, 0, sizeof changes);
    changes[0].kind = CHANGE_RUNNING;
    changes[1] = progress_change(1, STEP_COMPLETED, "b");
    changes[2].kind = CHANGE_SUCCEEDED;
    changes[3].kind = CHANGE_FAILED;
    changes[3].error = "second";
    for (size_t i = 0; i < 4; i++) {
        memcpy(&u, &sentinel, sizeof u);
        assert_int_equal(job_apply(&j, &changes[i], T0 + 50, &u), 1);
        assert_memory_equal(&u, &sentinel, sizeof u);
        assert_int_equal(j.status, JOB_FAILED);
        assert_string_equal(j.error, "first");
        assert_null(j.result);
        assert_null(j.current_step);
        assert_pct(j.progress_percent, 0.0);
        assert_int_equal(j.steps_completed, 0);
        assert_true(j.updated_ms == T0 + 1);
    }
    job_clear(&j);

    make_job(&j);
    struct job_change ok = {.kind = CHANGE_SUCCEEDED};
    assert_int_equal(job_apply(&j, &ok, T0, &u), 0);
    assert_null(j.result); /* no result given */
    assert_null(u.result);
    job_update_clear(&u);
    assert_int_equal(job_apply(&j, &fin, T0, &u), 1);
    assert_int_equal(j.status, JOB_SUCCEEDED);
    assert_null(j.error);
    job_clear(&j);
}

static void test_apply_bad_kind(void **state)
{
    (void)state;
    struct job j;
    make_job(&j);
    struct job_change c;
    memset(&c, 0, sizeof c);
    c.kind = (enum job_change_kind)42;
    struct job_update u;
    assert_int_equal(job_apply(&j, &c, T0, &u), -EINVAL);
    assert_int_equal(j.status, JOB_PENDING);
    job_clear(&j);
}

/* ---- copies ------------------------------------------------------------- */

static void test_copy(void **state)
{
    (void)state;
    struct job j;
    make_job(&j);
    j.result = json_string("r");
    j.error = strdup("e");
    j.current_step = strdup("b");
    struct job d;
    assert_int_equal(job_copy(&d, &j), 0);
    assert_string_equal(d.id, ID);
    assert_int_equal(d.nsteps, 2);
    assert_true(d.steps != j.steps);
    assert_true(d.steps[0] != j.steps[0]);
    assert_string_equal(d.steps[0], "a");
    assert_string_equal(d.steps[1], "b");
    assert_true(d.payload != j.payload);
    assert_true(json_equal(d.payload, j.payload));
    assert_true(json_equal(d.result, j.result));
    assert_true(d.error != j.error);
    assert_string_equal(d.error, "e");
    assert_string_equal(d.current_step, "b");
    assert_true(d.created_ms == T0);
    job_clear(&j);
    assert_null(j.steps);
    assert_int_equal(j.nsteps, 0);
    assert_string_equal(d.steps[1], "b"); /* independent of the original */
    job_clear(&d);
    job_clear(NULL);

    struct job_update u = {.id = 9, .message = strdup("m"), .error = strdup("x")};
    memcpy(u.job_id, ID, sizeof u.job_id);
    struct job_update v;
    assert_int_equal(job_update_copy(&v, &u), 0);
    assert_true(v.id == 9);
    assert_string_equal(v.job_id, ID);
    assert_true(v.message != u.message);
    assert_string_equal(v.message, "m");
    assert_string_equal(v.error, "x");
    assert_null(v.result);
    assert_null(v.step);
    job_update_clear(&u);
    job_update_clear(&v);
    job_update_clear(NULL);
}

/* ---- JSON --------------------------------------------------------------- */

static void test_job_json_minimal(void **state)
{
    (void)state;
    struct job j;
    make_job(&j);
    json_t *v = job_to_json(&j);
    assert_non_null(v);
    /* Exact text pins the key order of GATEWAY.md too. */
    char *text = json_dumps(v, JSON_COMPACT);
    assert_string_equal(
        text, "{\"id\":\"" ID "\",\"status\":\"Pending\",\"route\":{\"steps\":[\"a\",\"b\"],"
              "\"current\":0,\"metadata\":{\"job_id\":\"" ID "\"}},\"payload\":{\"value\":3},"
              "\"deadline\":null,\"progress_percent\":0.0,\"steps_completed\":0,"
              "\"total_steps\":2,\"created_at\":\"2026-12-02T10:00:00.123Z\","
              "\"updated_at\":\"2026-12-02T10:00:00.123Z\"}");
    free(text);
    assert_null(json_object_get(v, "result"));
    assert_null(json_object_get(v, "error"));
    assert_null(json_object_get(v, "timeout_seconds"));
    assert_null(json_object_get(v, "current_step"));
    assert_true(json_is_real(json_object_get(v, "progress_percent")));
    json_decref(v);

    /* No payload: null; no steps: an empty array. */
    job_clear(&j);
    memcpy(j.id, ID, sizeof j.id);
    assert_json(job_to_json(&j),
                "{\"id\":\"" ID "\",\"status\":\"Pending\",\"route\":{\"steps\":[],\"current\":0,"
                "\"metadata\":{\"job_id\":\"" ID "\"}},\"payload\":null,\"deadline\":null,"
                "\"progress_percent\":0.0,\"steps_completed\":0,\"total_steps\":0,"
                "\"created_at\":\"1970-01-01T00:00:00.000Z\","
                "\"updated_at\":\"1970-01-01T00:00:00.000Z\"}");
}

static void test_job_json_full(void **state)
{
    (void)state;
    struct job j;
    make_job(&j);
    j.status = JOB_SUCCEEDED;
    j.route_current = 1;
    j.result = json_pack("{s:i}", "value", 7);
    j.timeout_sec = 30;
    j.deadline_ms = T0 + 30000;
    j.progress_percent = 100.0;
    j.current_step = strdup("b");
    j.steps_completed = 2;
    j.updated_ms = T0 + 1500;
    assert_json(job_to_json(&j),
                "{\"id\":\"" ID "\",\"status\":\"Succeeded\","
                "\"route\":{\"steps\":[\"a\",\"b\"],\"current\":1,"
                "\"metadata\":{\"job_id\":\"" ID "\"}},"
                "\"payload\":{\"value\":3},\"result\":{\"value\":7},\"timeout_seconds\":30,"
                "\"deadline\":\"2026-12-02T10:00:30.123Z\",\"progress_percent\":100.0,"
                "\"current_step\":\"b\",\"steps_completed\":2,\"total_steps\":2,"
                "\"created_at\":\"2026-12-02T10:00:00.123Z\","
                "\"updated_at\":\"2026-12-02T10:00:01.623Z\"}");

    j.status = JOB_FAILED;
    json_decref(j.result);
    j.result = NULL;
    j.error = strdup("job timed out");
    j.progress_percent = 100.0 / 3.0;
    j.timeout_sec = 0;
    json_t *v = job_to_json(&j);
    assert_string_equal(json_string_value(json_object_get(v, "error")), "job timed out");
    assert_string_equal(json_string_value(json_object_get(v, "status")), "Failed");
    assert_null(json_object_get(v, "result"));
    assert_null(json_object_get(v, "timeout_seconds"));
    assert_pct(json_real_value(json_object_get(v, "progress_percent")), 100.0 / 3.0);
    json_decref(v);
    job_clear(&j);
}

static void test_update_json(void **state)
{
    (void)state;
    struct job_update u;
    memset(&u, 0, sizeof u);
    memcpy(u.job_id, ID, sizeof u.job_id);
    u.id = 12;
    u.status = JOB_RUNNING;
    u.ts_ms = T0;
    assert_json(job_update_to_json(&u), "{\"job_id\":\"" ID "\",\"status\":\"Running\","
                                        "\"timestamp\":\"2026-12-02T10:00:00.123Z\"}");

    u.message = strdup("Step a: processing");
    u.has_progress = true;
    u.progress_percent = 25.0;
    u.step = strdup("a");
    u.step_status = STEP_PROCESSING;
    json_t *v = job_update_to_json(&u);
    char *text = json_dumps(v, JSON_COMPACT);
    assert_string_equal(text, "{\"job_id\":\"" ID "\",\"status\":\"Running\","
                              "\"message\":\"Step a: processing\",\"progress_percent\":25.0,"
                              "\"step\":\"a\",\"step_status\":\"processing\","
                              "\"timestamp\":\"2026-12-02T10:00:00.123Z\"}");
    free(text);
    json_decref(v);
    job_update_clear(&u);

    memcpy(u.job_id, ID, sizeof u.job_id);
    u.status = JOB_SUCCEEDED;
    u.message = strdup("Job completed successfully");
    u.result = json_pack("[i,s]", 1, "x");
    u.has_progress = true;
    u.progress_percent = 100.0;
    u.ts_ms = 0;
    assert_json(job_update_to_json(&u),
                "{\"job_id\":\"" ID "\",\"status\":\"Succeeded\","
                "\"message\":\"Job completed successfully\",\"result\":[1,\"x\"],"
                "\"progress_percent\":100.0,\"timestamp\":\"1970-01-01T00:00:00.000Z\"}");
    job_update_clear(&u);

    memcpy(u.job_id, ID, sizeof u.job_id);
    u.status = JOB_FAILED;
    u.error = strdup("boom");
    u.message = strdup("Job failed: boom");
    u.ts_ms = T0;
    assert_json(job_update_to_json(&u),
                "{\"job_id\":\"" ID "\",\"status\":\"Failed\",\"message\":\"Job failed: boom\","
                "\"error\":\"boom\",\"timestamp\":\"2026-12-02T10:00:00.123Z\"}");
    job_update_clear(&u);
}

/* An applied change's update serialises as the SSE event expects. */
static void test_apply_then_json(void **state)
{
    (void)state;
    struct job j;
    make_job(&j);
    struct job_change c = progress_change(1, STEP_RECEIVED, "b");
    struct job_update u;
    assert_int_equal(job_apply(&j, &c, T0 + 877, &u), 0);
    assert_json(job_update_to_json(&u),
                "{\"job_id\":\"" ID "\",\"status\":\"Running\",\"message\":\"Step b: received\","
                "\"progress_percent\":55.0,\"step\":\"b\",\"step_status\":\"received\","
                "\"timestamp\":\"2026-12-02T10:00:01.000Z\"}");
    job_update_clear(&u);
    json_t *v = job_to_json(&j);
    assert_string_equal(json_string_value(json_object_get(v, "status")), "Running");
    assert_string_equal(json_string_value(json_object_get(v, "current_step")), "b");
    assert_string_equal(json_string_value(json_object_get(v, "updated_at")),
                        "2026-12-02T10:00:01.000Z");
    json_decref(v);
    job_clear(&j);
}

/* ---- time --------------------------------------------------------------- */

static void expect_time(int64_t ms, const char *want)
{
    char buf[32];
    memset(buf, 'x', sizeof buf);
    job_format_time(ms, buf, sizeof buf);
    if (strcmp(buf, want) != 0)
        fail_msg("job_format_time(%lld) = \"%s\"; want \"%s\"", (long long)ms, buf, want);
}

static void test_format_time(void **state)
{
    (void)state;
    expect_time(0, "1970-01-01T00:00:00.000Z");
    expect_time(T0, "2026-12-02T10:00:00.123Z");
    expect_time(T0 - 123, "2026-12-02T10:00:00.000Z");
    expect_time(T0 + 876, "2026-12-02T10:00:00.999Z");
    expect_time(INT64_C(951868799) * 1000 + 7, "2000-02-29T23:59:59.007Z");
    expect_time(-1, "1969-12-31T23:59:59.999Z");
    expect_time(-1000, "1969-12-31T23:59:59.000Z");

    char small[8];
    job_format_time(T0, small, sizeof small);
    assert_string_equal(small, "2026-12"); /* truncated, still terminated */
}

static void test_now_ms(void **state)
{
    (void)state;
    int64_t before = (int64_t)time(NULL) * 1000;
    int64_t now = job_now_ms();
    int64_t after = ((int64_t)time(NULL) + 1) * 1000;
    assert_true(now >= before && now <= after);
}

/* ---- ids ---------------------------------------------------------------- */

static void test_id_valid(void **state)
{
    (void)state;
    assert_true(job_id_valid(ID));
    assert_true(job_id_valid("00000000-0000-0000-0000-000000000000"));
    assert_true(job_id_valid("ffffffff-ffff-4fff-bfff-ffffffffffff"));
    assert_false(job_id_valid(NULL));
    assert_false(job_id_valid(""));
    assert_false(job_id_valid("0B8E4C2A-1F3D-4E5A-9B6C-7D8E9F0A1B2C")); /* uppercase */
    assert_false(job_id_valid("0b8e4c2a-1f3d-4e5a-9b6c-7d8e9f0a1b2C"));
    assert_false(job_id_valid("0b8e4c2a-1f3d-4e5a-9b6c-7d8e9f0a1b2"));   /* 35 */
    assert_false(job_id_valid("0b8e4c2a-1f3d-4e5a-9b6c-7d8e9f0a1b2cd")); /* 37 */
    assert_false(job_id_valid("0b8e4c2a1f3d4e5a9b6c7d8e9f0a1b2c"));      /* no dashes */
    assert_false(job_id_valid("0b8e4c2a-1f3d-4e5a-9b6c-7d8e9f0a1b2g"));  /* not hex */
    assert_false(job_id_valid("0b8e4c2a-1f3d-4e5a-9b6c-7d8e9f0a1b-c"));  /* dash misplaced */
    assert_false(job_id_valid("0b8e4c2a_1f3d-4e5a-9b6c-7d8e9f0a1b2c"));
    assert_false(job_id_valid("{0b8e4c2-1f3d-4e5a-9b6c-7d8e9f0a1b2c"));
    assert_false(job_id_valid("../../etc/passwd"));
    assert_false(job_id_valid(" 0b8e4c2a-1f3d-4e5a-9b6c-7d8e9f0a1b2c"));

    size_t n = 1 << 20; /* huge: a valid prefix followed by a megabyte */
    char *huge = malloc(n + 1);
    assert_non_null(huge);
    memset(huge, 'a', n);
    memcpy(huge, ID, JOB_ID_LEN);
    huge[n] = '\0';
    assert_false(job_id_valid(huge));
    free(huge);
}

static int cmp_ids(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

static void test_id_new(void **state)
{
    (void)state;
    enum { N = 10000 };
    char(*ids)[JOB_ID_LEN + 1] = calloc(N, sizeof *ids);
    assert_non_null(ids);
    for (int i = 0; i < N; i++) {
        memset(ids[i], 'X', sizeof ids[i]);
        assert_int_equal(job_id_new(ids[i]), 0);
        if (!job_id_valid(ids[i]))
            fail_msg("job_id_new gave \"%.37s\"", ids[i]);
        assert_int_equal(ids[i][14], '4');           /* version */
        assert_non_null(strchr("89ab", ids[i][19])); /* variant */
        assert_int_equal(strlen(ids[i]), JOB_ID_LEN);
    }
    qsort(ids, N, sizeof *ids, cmp_ids);
    for (int i = 1; i < N; i++)
        if (strcmp(ids[i - 1], ids[i]) == 0)
            fail_msg("duplicate id %s", ids[i]);
    /* Every variant nibble shows up: the other bits are random. */
    bool seen[4] = {false, false, false, false};
    for (int i = 0; i < N; i++)
        seen[strchr("89ab", ids[i][19]) - "89ab"] = true;
    assert_true(seen[0] && seen[1] && seen[2] && seen[3]);
    free(ids);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_names),
        cmocka_unit_test(test_step_status_names),
        cmocka_unit_test(test_progress_seed_sequence),
        cmocka_unit_test(test_progress_after),
        cmocka_unit_test(test_progress_within_a_step),
        cmocka_unit_test(test_progress_other_routes),
        cmocka_unit_test(test_progress_clamped),
        cmocka_unit_test(test_apply_running),
        cmocka_unit_test(test_apply_progress_sets_running),
        cmocka_unit_test(test_apply_progress_monotonic),
        cmocka_unit_test(test_apply_steps_completed),
        cmocka_unit_test(test_apply_progress_without_step_name),
        cmocka_unit_test(test_apply_succeeded),
        cmocka_unit_test(test_apply_failed),
        cmocka_unit_test(test_apply_terminal_is_noop),
        cmocka_unit_test(test_apply_bad_kind),
        cmocka_unit_test(test_copy),
        cmocka_unit_test(test_job_json_minimal),
        cmocka_unit_test(test_job_json_full),
        cmocka_unit_test(test_update_json),
        cmocka_unit_test(test_apply_then_json),
        cmocka_unit_test(test_format_time),
        cmocka_unit_test(test_now_ms),
        cmocka_unit_test(test_id_valid),
        cmocka_unit_test(test_id_new),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
