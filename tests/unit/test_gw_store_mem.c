/* Unit tests for src/gateway/store_mem.c: the in-memory job store. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "jobstore.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T0   INT64_C(1000000000123) /* 2001: before any real "now" */
#define ID_A "0b8e4c2a-1f3d-4e5a-9b6c-7d8e9f0a1b2c"
#define ID_B "11111111-2222-4333-8444-555555555555"
#define ID_C "aaaaaaaa-bbbb-4ccc-9ddd-eeeeeeeeeeee"
#define ID_X "ffffffff-ffff-4fff-bfff-ffffffffffff" /* never created */

/* ---- an event log: callbacks and notifies in the order they happened ---- */

enum ev_kind { EV_JOB, EV_UPDATES, EV_NOTE };

struct event {
    int64_t update_id; /* EV_NOTE */
    size_t n;          /* EV_UPDATES */
    enum ev_kind kind;
    enum store_rc rc;
    bool had_job;
    bool had_errmsg;
    char job_id[JOB_ID_LEN + 1]; /* EV_JOB (when a job was given), EV_NOTE */
};

#define MAX_EVENTS 4096
#define MAX_UPS    64
static struct event events[MAX_EVENTS];
static size_t nevents;

/* What the last job callback saw (a deep copy) and the last updates seen. */
static struct job last_job;
static bool have_last_job;
static struct job_update *last_ups; /* MAX_UPS of them, allocated by setup */
static size_t nlast_ups;

static void reset_log(void)
{
    nevents = 0;
    if (have_last_job)
        job_clear(&last_job);
    have_last_job = false;
    for (size_t i = 0; i < nlast_ups; i++)
        job_update_clear(&last_ups[i]);
    nlast_ups = 0;
}

static struct event *push(enum ev_kind kind)
{
    assert_true(nevents < MAX_EVENTS);
    struct event *e = &events[nevents++];
    memset(e, 0, sizeof *e);
    e->kind = kind;
    return e;
}

static void on_notify(void *ctx, const char *job_id, int64_t update_id)
{
    int *calls = ctx;
    (*calls)++;
    struct event *e = push(EV_NOTE);
    assert_non_null(job_id);
    snprintf(e->job_id, sizeof e->job_id, "%s", job_id);
    e->update_id = update_id;
}

static void on_job(void *arg, enum store_rc rc, const struct job *job, const char *errmsg)
{
    int *calls = arg;
    if (calls)
        (*calls)++;
    struct event *e = push(EV_JOB);
    e->rc = rc;
    e->had_job = job != NULL;
    e->had_errmsg = errmsg != NULL;
    if (job) {
        snprintf(e->job_id, sizeof e->job_id, "%s", job->id);
        if (have_last_job)
            job_clear(&last_job);
        assert_int_equal(job_copy(&last_job, job), 0);
        have_last_job = true;
    }
}

static void on_updates(void *arg, enum store_rc rc, const struct job_update *ups, size_t n,
                       const char *errmsg)
{
    int *calls = arg;
    if (calls)
        (*calls)++;
    struct event *e = push(EV_UPDATES);
    e->rc = rc;
    e->n = n;
    e->had_errmsg = errmsg != NULL;
    for (size_t i = 0; i < nlast_ups; i++)
        job_update_clear(&last_ups[i]);
    nlast_ups = 0;
    if (ups) {
        assert_true(n <= MAX_UPS);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(job_update_copy(&last_ups[i], &ups[i]), 0);
        nlast_ups = n;
    }
}

/* ---- fixture ------------------------------------------------------------ */

struct fx {
    struct jobstore *s;
    int notes;
};

static int group_setup(void **state)
{
    (void)state;
    last_ups = calloc(MAX_UPS, sizeof *last_ups);
    return last_ups ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    reset_log();
    free(last_ups);
    last_ups = NULL;
    return 0;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    f->s = jobstore_mem_new(on_notify, &f->notes);
    if (!f->s) {
        free(f);
        return -1;
    }
    reset_log();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    f->s->ops->free(f->s);
    free(f);
    reset_log();
    return 0;
}

/* A Pending job on route [a, b], created at T0. */
static void make_job(struct job *j, const char *id, int64_t deadline_ms)
{
    memset(j, 0, sizeof *j);
    snprintf(j->id, sizeof j->id, "%s", id);
    j->status = JOB_PENDING;
    j->nsteps = 2;
    j->steps = calloc(2, sizeof *j->steps);
    assert_non_null(j->steps);
    j->steps[0] = strdup("a");
    j->steps[1] = strdup("b");
    j->payload = json_pack("{s:i}", "value", 3);
    assert_non_null(j->payload);
    j->total_steps = 2;
    j->timeout_sec = deadline_ms ? 30 : 0;
    j->deadline_ms = deadline_ms;
    j->created_ms = T0;
    j->updated_ms = T0;
}

/* Creates a job, expecting OK; returns nothing, the log shows what happened. */
static void create_ok(struct fx *f, const char *id, int64_t deadline_ms)
{
    struct job j;
    make_job(&j, id, deadline_ms);
    int calls = 0;
    f->s->ops->create(f->s, &j, on_job, &calls);
    job_clear(&j);
    assert_int_equal(calls, 1);
    assert_int_equal(events[nevents - 2].kind, EV_JOB);
    assert_int_equal(events[nevents - 2].rc, STORE_OK);
}

static enum store_rc apply(struct fx *f, const char *id, const struct job_change *c)
{
    int calls = 0;
    size_t before = nevents;
    f->s->ops->apply(f->s, id, c, on_job, &calls);
    assert_int_equal(calls, 1);
    assert_true(nevents > before);
    assert_int_equal(events[before].kind, EV_JOB); /* the callback comes first */
    return events[before].rc;
}

static enum store_rc get(struct fx *f, const char *id)
{
    int calls = 0;
    size_t before = nevents;
    f->s->ops->get(f->s, id, on_job, &calls);
    assert_int_equal(calls, 1);
    assert_int_equal(nevents, before + 1);
    return events[before].rc;
}

static enum store_rc updates(struct fx *f, const char *id, int64_t after)
{
    int calls = 0;
    size_t before = nevents;
    f->s->ops->updates(f->s, id, after, on_updates, &calls);
    assert_int_equal(calls, 1);
    assert_int_equal(nevents, before + 1);
    return events[before].rc;
}

static void expect_note(size_t at, const char *id, int64_t update_id)
{
    assert_true(at < nevents);
    assert_int_equal(events[at].kind, EV_NOTE);
    assert_string_equal(events[at].job_id, id);
    if (events[at].update_id != update_id)
        fail_msg("notify %zu: update id %lld; want %lld", at, (long long)events[at].update_id,
                 (long long)update_id);
}

/* ---- tests -------------------------------------------------------------- */

static void test_ready_and_metrics(void **state)
{
    struct fx *f = *state;
    const char *reason = "unset";
    assert_true(f->s->ops->ready(f->s, &reason));
    assert_null(reason);
    assert_true(f->s->ops->ready(f->s, NULL));

    struct textbuf tb = TEXTBUF_INIT;
    f->s->ops->metrics(f->s, &tb);
    assert_non_null(tb.data);
    assert_non_null(strstr(tb.data, "# TYPE asya_gateway_store_jobs gauge\n"));
    assert_non_null(strstr(tb.data, "\nasya_gateway_store_jobs 0\n"));
    textbuf_free(&tb);

    create_ok(f, ID_A, 0);
    create_ok(f, ID_B, 0);
    f->s->ops->metrics(f->s, &tb);
    assert_non_null(strstr(tb.data, "\nasya_gateway_store_jobs 2\n"));
    textbuf_free(&tb);
}

static void test_create_and_get(void **state)
{
    struct fx *f = *state;
    struct job j;
    make_job(&j, ID_A, T0 + 30000);
    j.status = JOB_SUCCEEDED; /* any status but Running is stored as Pending */
    int calls = 0;
    f->s->ops->create(f->s, &j, on_job, &calls);
    assert_int_equal(calls, 1);
    /* Callback first, then the notify of the "Job created" entry, id 1. */
    assert_int_equal(nevents, 2);
    assert_int_equal(events[0].kind, EV_JOB);
    assert_int_equal(events[0].rc, STORE_OK);
    assert_true(events[0].had_job);
    assert_false(events[0].had_errmsg);
    expect_note(1, ID_A, 1);
    assert_int_equal(f->notes, 1);
    assert_int_equal(last_job.status, JOB_PENDING);

    /* The store keeps a copy: changing the input changes nothing. */
    free(j.steps[0]);
    j.steps[0] = strdup("zzz");
    json_object_set_new(j.payload, "value", json_integer(99));
    job_clear(&j);

    reset_log();
    assert_int_equal(get(f, ID_A), STORE_OK);
    assert_string_equal(last_job.id, ID_A);
    assert_int_equal(last_job.status, JOB_PENDING);
    assert_int_equal(last_job.nsteps, 2);
    assert_string_equal(last_job.steps[0], "a");
    assert_string_equal(last_job.steps[1], "b");
    json_t *want = json_pack("{s:i}", "value", 3);
    assert_true(json_equal(last_job.payload, want));
    json_decref(want);
    assert_int_equal(last_job.total_steps, 2);
    assert_true(last_job.deadline_ms == T0 + 30000);
    assert_int_equal(last_job.timeout_sec, 30);
    assert_true(last_job.created_ms == T0);
    assert_true(last_job.updated_ms == T0);
    assert_int_equal(f->notes, 1); /* reads never notify */

    assert_int_equal(updates(f, ID_A, 0), STORE_OK);
    assert_int_equal(events[1].n, 1);
    assert_int_equal(nlast_ups, 1);
    assert_true(last_ups[0].id == 1);
    assert_string_equal(last_ups[0].job_id, ID_A);
    assert_int_equal(last_ups[0].status, JOB_PENDING);
    assert_string_equal(last_ups[0].message, "Job created");
    assert_true(last_ups[0].has_progress);
    assert_true(last_ups[0].progress_percent == 0.0);
    assert_true(last_ups[0].ts_ms == T0);
    assert_null(last_ups[0].step);
    assert_null(last_ups[0].result);
    assert_null(last_ups[0].error);
}

/* A tool call stores its job as sent: Pending and Running entries in one write. */
static void test_create_running(void **state)
{
    struct fx *f = *state;
    struct job j;
    make_job(&j, ID_A, T0 + 30000);
    j.status = JOB_RUNNING;
    int calls = 0;
    f->s->ops->create(f->s, &j, on_job, &calls);
    job_clear(&j);
    assert_int_equal(calls, 1);
    assert_int_equal(events[0].rc, STORE_OK);
    assert_int_equal(last_job.status, JOB_RUNNING);
    expect_note(1, ID_A, 2);
    reset_log();
    assert_int_equal(updates(f, ID_A, 0), STORE_OK);
    assert_int_equal(nlast_ups, 2);
    assert_int_equal(last_ups[0].id, 1);
    assert_int_equal(last_ups[0].status, JOB_PENDING);
    assert_string_equal(last_ups[0].message, "Job created");
    assert_int_equal(last_ups[1].id, 2);
    assert_int_equal(last_ups[1].status, JOB_RUNNING);
    assert_string_equal(last_ups[1].message, "Sending message to first actor");
    assert_false(last_ups[1].has_progress);
}

static void test_create_rejects(void **state)
{
    struct fx *f = *state;
    create_ok(f, ID_A, 0);
    reset_log();

    struct job j;
    make_job(&j, ID_A, 0);
    f->s->ops->create(f->s, &j, on_job, NULL);
    job_clear(&j);
    assert_int_equal(nevents, 1); /* no notify */
    assert_int_equal(events[0].rc, STORE_ERROR);
    assert_false(events[0].had_job);
    assert_true(events[0].had_errmsg);

    make_job(&j, "0B8E4C2A-1F3D-4E5A-9B6C-7D8E9F0A1B2C", 0);
    f->s->ops->create(f->s, &j, on_job, NULL);
    job_clear(&j);
    assert_int_equal(nevents, 2);
    assert_int_equal(events[1].rc, STORE_ERROR);
    assert_true(events[1].had_errmsg);
    assert_int_equal(f->notes, 1);

    /* The original is untouched: one history entry. */
    assert_int_equal(updates(f, ID_A, 0), STORE_OK);
    assert_int_equal(nlast_ups, 1);
}

static void test_not_found(void **state)
{
    struct fx *f = *state;
    create_ok(f, ID_A, 0);
    reset_log();
    struct job_change c = {.kind = CHANGE_RUNNING};
    assert_int_equal(get(f, ID_X), STORE_NOT_FOUND);
    assert_false(events[0].had_job);
    assert_false(events[0].had_errmsg);
    assert_int_equal(get(f, "not-an-id"), STORE_NOT_FOUND);
    assert_int_equal(get(f, ""), STORE_NOT_FOUND);
    assert_int_equal(updates(f, ID_X, 0), STORE_NOT_FOUND);
    assert_int_equal(events[nevents - 1].n, 0);
    assert_int_equal(nlast_ups, 0);
    assert_int_equal(apply(f, ID_X, &c), STORE_NOT_FOUND);
    assert_int_equal(nevents, 5); /* no notify */
    assert_false(events[4].had_job);
    assert_int_equal(f->notes, 1);
}

static void test_apply_lifecycle(void **state)
{
    struct fx *f = *state;
    create_ok(f, ID_A, 0); /* update 1 */
    reset_log();

    struct job_change c = {.kind = CHANGE_RUNNING};
    assert_int_equal(apply(f, ID_A, &c), STORE_OK);
    assert_int_equal(nevents, 2);
    expect_note(1, ID_A, 2);
    assert_int_equal(last_job.status, JOB_RUNNING);

    c = (struct job_change){.kind = CHANGE_PROGRESS,
                            .percent = progress_percent(0, 2, STEP_COMPLETED),
                            .step = "a",
                            .step_index = 0,
                            .step_status = STEP_COMPLETED};
    assert_int_equal(apply(f, ID_A, &c), STORE_OK);
    expect_note(3, ID_A, 3);
    assert_true(last_job.progress_percent == 50.0);
    assert_int_equal(last_job.steps_completed, 1);
    assert_string_equal(last_job.current_step, "a");

    /* A late, lower report: recorded, percent kept. */
    c.percent = progress_percent(0, 2, STEP_RECEIVED);
    c.step_status = STEP_RECEIVED;
    assert_int_equal(apply(f, ID_A, &c), STORE_OK);
    expect_note(5, ID_A, 4);
    assert_true(last_job.progress_percent == 50.0);

    json_t *result = json_pack("{s:i}", "value", 8);
    c = (struct job_change){.kind = CHANGE_SUCCEEDED, .result = result};
    assert_int_equal(apply(f, ID_A, &c), STORE_OK);
    expect_note(7, ID_A, 5);
    assert_int_equal(last_job.status, JOB_SUCCEEDED);
    assert_true(json_equal(last_job.result, result));
    assert_true(last_job.progress_percent == 100.0);
    json_decref(result);

    /* Terminal: every kind is refused with the stored job, nothing recorded. */
    struct job_change again[3] = {{.kind = CHANGE_FAILED, .error = "late"},
                                  {.kind = CHANGE_SUCCEEDED},
                                  {.kind = CHANGE_PROGRESS, .percent = 10.0}};
    for (size_t i = 0; i < 3; i++) {
        size_t before = nevents;
        assert_int_equal(apply(f, ID_A, &again[i]), STORE_TERMINAL);
        assert_int_equal(nevents, before + 1);
        assert_true(events[before].had_job);
        assert_false(events[before].had_errmsg);
        assert_int_equal(last_job.status, JOB_SUCCEEDED);
        assert_null(last_job.error);
    }
    assert_int_equal(f->notes, 5);

    reset_log();
    assert_int_equal(updates(f, ID_A, 0), STORE_OK);
    assert_int_equal(nlast_ups, 5);
    const char *msgs[] = {"Job created", "Sending message to first actor", "Step a: completed",
                          "Step a: received", "Job completed successfully"};
    const enum job_status sts[] = {JOB_PENDING, JOB_RUNNING, JOB_RUNNING, JOB_RUNNING,
                                   JOB_SUCCEEDED};
    for (size_t i = 0; i < 5; i++) {
        assert_true(last_ups[i].id == (int64_t)i + 1);
        assert_string_equal(last_ups[i].message, msgs[i]);
        assert_int_equal(last_ups[i].status, sts[i]);
        assert_string_equal(last_ups[i].job_id, ID_A);
    }
    assert_true(last_ups[3].progress_percent == 50.0);
    assert_int_equal(last_ups[3].step_status, STEP_RECEIVED);
    assert_non_null(last_ups[4].result);

    /* Only entries after the given id, oldest first. */
    assert_int_equal(updates(f, ID_A, 3), STORE_OK);
    assert_int_equal(nlast_ups, 2);
    assert_true(last_ups[0].id == 4);
    assert_true(last_ups[1].id == 5);
    assert_int_equal(updates(f, ID_A, 5), STORE_OK);
    assert_int_equal(events[nevents - 1].n, 0);
    assert_int_equal(nlast_ups, 0);
    assert_int_equal(updates(f, ID_A, 1000), STORE_OK);
    assert_int_equal(nlast_ups, 0);
    assert_int_equal(updates(f, ID_A, -5), STORE_OK);
    assert_int_equal(nlast_ups, 5);
}

static void test_apply_failed_and_bad_change(void **state)
{
    struct fx *f = *state;
    create_ok(f, ID_A, 0);
    reset_log();
    struct job_change c = {.kind = (enum job_change_kind)77};
    assert_int_equal(apply(f, ID_A, &c), STORE_ERROR);
    assert_int_equal(nevents, 1);
    assert_true(events[0].had_errmsg);
    assert_false(events[0].had_job);

    c = (struct job_change){.kind = CHANGE_FAILED, .error = "failed to send message: refused"};
    assert_int_equal(apply(f, ID_A, &c), STORE_OK);
    assert_int_equal(last_job.status, JOB_FAILED);
    assert_string_equal(last_job.error, "failed to send message: refused");
    expect_note(2, ID_A, 2);

    c = (struct job_change){.kind = CHANGE_SUCCEEDED};
    assert_int_equal(apply(f, ID_A, &c), STORE_TERMINAL);
    assert_int_equal(last_job.status, JOB_FAILED);
    assert_int_equal(f->notes, 2);
}

static void test_update_ids_are_global(void **state)
{
    struct fx *f = *state;
    create_ok(f, ID_A, 0); /* 1 */
    expect_note(1, ID_A, 1);
    create_ok(f, ID_B, 0); /* 2 */
    expect_note(3, ID_B, 2);
    struct job_change c = {.kind = CHANGE_RUNNING};
    assert_int_equal(apply(f, ID_A, &c), STORE_OK); /* 3 */
    expect_note(5, ID_A, 3);
    assert_int_equal(apply(f, ID_B, &c), STORE_OK); /* 4 */
    expect_note(7, ID_B, 4);
    assert_int_equal(apply(f, ID_A, &c), STORE_OK); /* 5 */
    expect_note(9, ID_A, 5);

    reset_log();
    assert_int_equal(updates(f, ID_A, 0), STORE_OK);
    assert_int_equal(nlast_ups, 3);
    assert_true(last_ups[0].id == 1);
    assert_true(last_ups[1].id == 3);
    assert_true(last_ups[2].id == 5);
    assert_int_equal(updates(f, ID_A, 2), STORE_OK); /* between entries */
    assert_int_equal(nlast_ups, 2);
    assert_true(last_ups[0].id == 3);
    assert_int_equal(updates(f, ID_B, 0), STORE_OK);
    assert_int_equal(nlast_ups, 2);
    assert_true(last_ups[0].id == 2);
    assert_true(last_ups[1].id == 4);
}

static void test_expire(void **state)
{
    struct fx *f = *state;
    create_ok(f, ID_A, T0 + 1000);                                 /* Pending, due */
    create_ok(f, ID_B, T0 + 2000);                                 /* Running, due exactly at now */
    create_ok(f, ID_C, T0 + 2001);                                 /* not yet */
    create_ok(f, "00000000-0000-4000-8000-000000000001", 0);       /* no deadline */
    create_ok(f, "00000000-0000-4000-8000-000000000002", T0 + 10); /* terminal */
    struct job_change c = {.kind = CHANGE_RUNNING};
    assert_int_equal(apply(f, ID_B, &c), STORE_OK); /* 6 */
    c = (struct job_change){.kind = CHANGE_SUCCEEDED};
    assert_int_equal(apply(f, "00000000-0000-4000-8000-000000000002", &c), STORE_OK); /* 7 */
    reset_log();
    int notes_before = f->notes;

    int calls = 0;
    f->s->ops->expire(f->s, T0 + 2000, on_updates, &calls);
    assert_int_equal(calls, 1);
    /* The callback with the count, then one notify per failed job. */
    assert_int_equal(nevents, 3);
    assert_int_equal(events[0].kind, EV_UPDATES);
    assert_int_equal(events[0].rc, STORE_OK);
    assert_int_equal(events[0].n, 2);
    assert_int_equal(nlast_ups, 0);
    assert_int_equal(events[1].kind, EV_NOTE);
    assert_int_equal(events[2].kind, EV_NOTE);
    assert_int_equal(f->notes, notes_before + 2);
    bool a = false, b = false;
    int64_t ids[2] = {events[1].update_id, events[2].update_id};
    for (size_t i = 1; i <= 2; i++) {
        a |= strcmp(events[i].job_id, ID_A) == 0;
        b |= strcmp(events[i].job_id, ID_B) == 0;
    }
    assert_true(a && b);
    assert_true((ids[0] == 8 && ids[1] == 9) || (ids[0] == 9 && ids[1] == 8));

    reset_log();
    assert_int_equal(get(f, ID_A), STORE_OK);
    assert_int_equal(last_job.status, JOB_FAILED);
    assert_string_equal(last_job.error, "job timed out");
    assert_true(last_job.updated_ms == T0 + 2000);
    assert_int_equal(updates(f, ID_A, 0), STORE_OK);
    assert_int_equal(nlast_ups, 2);
    assert_string_equal(last_ups[1].message, "Job failed: job timed out");
    assert_string_equal(last_ups[1].error, "job timed out");
    assert_int_equal(last_ups[1].status, JOB_FAILED);
    assert_true(last_ups[1].ts_ms == T0 + 2000);

    assert_int_equal(get(f, ID_B), STORE_OK);
    assert_int_equal(last_job.status, JOB_FAILED);
    assert_int_equal(get(f, ID_C), STORE_OK);
    assert_int_equal(last_job.status, JOB_PENDING);
    assert_int_equal(get(f, "00000000-0000-4000-8000-000000000001"), STORE_OK);
    assert_int_equal(last_job.status, JOB_PENDING);
    assert_int_equal(get(f, "00000000-0000-4000-8000-000000000002"), STORE_OK);
    assert_int_equal(last_job.status, JOB_SUCCEEDED);
    assert_null(last_job.error);

    /* Each job fails once. */
    reset_log();
    f->s->ops->expire(f->s, T0 + 2000, on_updates, NULL);
    assert_int_equal(nevents, 1);
    assert_int_equal(events[0].n, 0);
    assert_int_equal(events[0].rc, STORE_OK);

    /* Later, C is due as well (far future: the "no deadline" job never is). */
    reset_log();
    f->s->ops->expire(f->s, INT64_MAX, on_updates, NULL);
    assert_int_equal(nevents, 2);
    assert_int_equal(events[0].n, 1);
    expect_note(1, ID_C, 10);
}

static void test_purge(void **state)
{
    struct fx *f = *state;
    create_ok(f, ID_A, T0 + 10);                             /* 1; fails at T0+10: 2 entries */
    create_ok(f, ID_B, T0 + 20);                             /* 2; fails at T0+20 */
    create_ok(f, ID_C, 0);                                   /* 3; stays Pending */
    create_ok(f, "00000000-0000-4000-8000-000000000001", 0); /* 4; Succeeded now */
    struct job_change c = {.kind = CHANGE_RUNNING};
    assert_int_equal(apply(f, ID_A, &c), STORE_OK);     /* 5 */
    f->s->ops->expire(f->s, T0 + 10, on_updates, NULL); /* A: 6 */
    f->s->ops->expire(f->s, T0 + 20, on_updates, NULL); /* B: 7 */
    c = (struct job_change){.kind = CHANGE_SUCCEEDED};
    assert_int_equal(apply(f, "00000000-0000-4000-8000-000000000001", &c), STORE_OK);
    reset_log();
    int notes = f->notes;

    /* Strictly older: A's updated_at is T0+10, not older than T0+10. */
    int calls = 0;
    f->s->ops->purge(f->s, T0 + 10, on_updates, &calls);
    assert_int_equal(calls, 1);
    assert_int_equal(nevents, 1);
    assert_int_equal(events[0].rc, STORE_OK);
    assert_int_equal(events[0].n, 0);
    assert_int_equal(get(f, ID_A), STORE_OK);

    /* Now A (3 entries) goes, B (updated T0+20) stays. */
    reset_log();
    f->s->ops->purge(f->s, T0 + 11, on_updates, NULL);
    assert_int_equal(events[0].n, 3);
    assert_int_equal(get(f, ID_A), STORE_NOT_FOUND);
    assert_int_equal(updates(f, ID_A, 0), STORE_NOT_FOUND);
    assert_int_equal(get(f, ID_B), STORE_OK);

    /* Everything terminal goes, however old; the Pending job stays. */
    reset_log();
    f->s->ops->purge(f->s, INT64_MAX, on_updates, NULL);
    assert_int_equal(events[0].n, 4); /* B: 2, the succeeded job: 2 */
    assert_int_equal(get(f, ID_B), STORE_NOT_FOUND);
    assert_int_equal(get(f, "00000000-0000-4000-8000-000000000001"), STORE_NOT_FOUND);
    assert_int_equal(get(f, ID_C), STORE_OK);
    assert_int_equal(last_job.status, JOB_PENDING);
    assert_int_equal(updates(f, ID_C, 0), STORE_OK);
    assert_int_equal(nlast_ups, 1);
    assert_int_equal(f->notes, notes); /* purge never notifies */

    struct textbuf tb = TEXTBUF_INIT;
    f->s->ops->metrics(f->s, &tb);
    assert_non_null(strstr(tb.data, "\nasya_gateway_store_jobs 1\n"));
    textbuf_free(&tb);

    /* A purged id can be created again; ids keep increasing. */
    reset_log();
    create_ok(f, ID_A, 0);
    expect_note(1, ID_A, 9);
}

/* ---- callbacks that use the store --------------------------------------- */

struct reenter {
    struct jobstore *s;
    int depth;
    size_t n_seen;
    int64_t first_id;
    char first_msg[64];
};

/* Inside an updates callback, write many entries to the same job (the
 * history array grows), then read what was handed in. */
static void updates_then_write(void *arg, enum store_rc rc, const struct job_update *ups, size_t n,
                               const char *errmsg)
{
    struct reenter *r = arg;
    (void)errmsg;
    assert_int_equal(rc, STORE_OK);
    for (int i = 0; i < 40; i++) {
        struct job_change c = {.kind = CHANGE_RUNNING, .message = "again"};
        r->s->ops->apply(r->s, ID_A, &c, on_job, NULL);
    }
    r->n_seen = n;
    r->first_id = ups[0].id;
    snprintf(r->first_msg, sizeof r->first_msg, "%s", ups[0].message);
}

/* Inside a get callback on a terminal job, purge everything: the job being
 * shown is pinned and must survive the call. */
static void get_then_purge(void *arg, enum store_rc rc, const struct job *job, const char *errmsg)
{
    struct reenter *r = arg;
    (void)errmsg;
    assert_int_equal(rc, STORE_OK);
    r->s->ops->purge(r->s, INT64_MAX, on_updates, NULL);
    assert_string_equal(job->id, ID_A); /* still readable */
    assert_int_equal(job->status, JOB_FAILED);
    r->depth++;
}

static void test_reentrant_callbacks(void **state)
{
    struct fx *f = *state;
    create_ok(f, ID_A, 0);
    reset_log();
    struct reenter r = {.s = f->s};
    f->s->ops->updates(f->s, ID_A, 0, updates_then_write, &r);
    assert_int_equal(r.n_seen, 1);
    assert_true(r.first_id == 1);
    assert_string_equal(r.first_msg, "Job created");
    assert_int_equal(f->notes, 41);

    reset_log();
    assert_int_equal(updates(f, ID_A, 0), STORE_OK);
    assert_int_equal(nlast_ups, 41);
    for (size_t i = 0; i < 41; i++)
        assert_true(last_ups[i].id == (int64_t)i + 1);

    struct job_change c = {.kind = CHANGE_FAILED, .error = "x"};
    assert_int_equal(apply(f, ID_A, &c), STORE_OK);
    reset_log();
    f->s->ops->get(f->s, ID_A, get_then_purge, &r);
    assert_int_equal(r.depth, 1);
    assert_int_equal(events[0].n, 0); /* the pinned job was skipped */
    f->s->ops->purge(f->s, INT64_MAX, on_updates, NULL);
    assert_int_equal(events[1].n, 42);
    assert_int_equal(get(f, ID_A), STORE_NOT_FOUND);
}

static void test_many_jobs(void **state)
{
    struct fx *f = *state;
    enum { N = 3000 };
    char(*ids)[JOB_ID_LEN + 1] = calloc(N, sizeof *ids);
    assert_non_null(ids);
    for (int i = 0; i < N; i++) {
        assert_int_equal(job_id_new(ids[i]), 0);
        reset_log();
        create_ok(f, ids[i], 0);
        expect_note(1, ids[i], i + 1);
    }
    for (int i = 0; i < N; i++) {
        reset_log();
        assert_int_equal(get(f, ids[i]), STORE_OK);
        assert_string_equal(last_job.id, ids[i]);
        assert_int_equal(updates(f, ids[i], 0), STORE_OK);
        assert_int_equal(nlast_ups, 1);
        assert_true(last_ups[0].id == i + 1);
    }
    struct textbuf tb = TEXTBUF_INIT;
    f->s->ops->metrics(f->s, &tb);
    assert_non_null(strstr(tb.data, "\nasya_gateway_store_jobs 3000\n"));
    textbuf_free(&tb);
    free(ids);
}

static void test_without_notify(void **state)
{
    (void)state;
    struct jobstore *s = jobstore_mem_new(NULL, NULL);
    assert_non_null(s);
    reset_log();
    struct job j;
    make_job(&j, ID_A, T0);
    s->ops->create(s, &j, on_job, NULL);
    job_clear(&j);
    struct job_change c = {.kind = CHANGE_RUNNING};
    s->ops->apply(s, ID_A, &c, on_job, NULL);
    s->ops->expire(s, T0, on_updates, NULL);
    assert_int_equal(nevents, 3);
    assert_int_equal(events[0].rc, STORE_OK);
    assert_int_equal(events[1].rc, STORE_OK);
    assert_int_equal(events[2].n, 1);
    s->ops->free(s);

    /* Freeing a store that still holds jobs and history leaks nothing. */
    s = jobstore_mem_new(NULL, NULL);
    assert_non_null(s);
    s->ops->free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ready_and_metrics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_and_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_running, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_rejects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_found, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apply_lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apply_failed_and_bad_change, setup, teardown),
        cmocka_unit_test_setup_teardown(test_update_ids_are_global, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expire, setup, teardown),
        cmocka_unit_test_setup_teardown(test_purge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reentrant_callbacks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_jobs, setup, teardown),
        cmocka_unit_test(test_without_notify),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
