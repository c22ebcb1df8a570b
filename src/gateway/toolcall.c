/*
 * toolcall.c - one tool call, from arguments to an answer: check the
 * arguments, store the job (Pending, then Running "Sending message to first
 * actor", in one write), publish its envelope, and answer once the broker
 * confirmed it.  Storing "Running" before the publish saves a database round
 * trip per call and nobody can tell: only the answer tells the job's id.  A
 * publish that fails makes the job Failed.  The steps go on when the caller
 * has gone away, so no job is left half-created.
 */
#include "gateway_int.h"

#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct toolcall {
    struct gateway *g;
    const struct tool *tool;
    size_t tool_index;
    struct job job;
    toolcall_done done;
    void *arg;
    char *publish_error;
};

/* A CallToolResult with one text item (new reference). */
static json_t *toolcall_result(const char *text, bool is_error)
{
    json_t *res = json_pack("{s:[{s:s, s:s}]}", "content", "type", "text", "text", text);
    if (res && is_error)
        json_object_set_new(res, "isError", json_true());
    return res;
}

static void finish(struct toolcall *tc, json_t *result, enum toolcall_outcome outcome)
{
    gw_metrics_toolcall(&tc->g->metrics, tc->tool_index, outcome);
    tc->g->inflight--;
    if (!result)
        result = toolcall_result("out of memory", true);
    tc->done(tc->arg, result);
    job_clear(&tc->job);
    free(tc->publish_error);
    free(tc);
}

static json_t *success_result(const struct toolcall *tc)
{
    const char *id = tc->job.id;
    struct textbuf b = TEXTBUF_INIT;
    textbuf_printf(&b, "Job created successfully with ID: %s\n", id);
    textbuf_printf(&b, "Check status: GET /jobs/%s\n", id);
    if (tc->tool->progress)
        textbuf_printf(&b, "Stream progress: GET /jobs/%s/stream\n", id);
    if (tc->tool->nmeta > 0) {
        textbuf_puts(&b, "Metadata:\n");
        for (size_t i = 0; i < tc->tool->nmeta; i++)
            textbuf_printf(&b, "  %s: %s\n", tc->tool->meta_keys[i], tc->tool->meta_values[i]);
    }
    char *text = textbuf_take(&b, NULL);
    json_t *res = text ? toolcall_result(text, false) : NULL;
    free(text);
    return res;
}

static void on_failed_stored(void *arg, enum store_rc rc, const struct job *job, const char *errmsg)
{
    struct toolcall *tc = arg;
    (void)job;
    if (rc == STORE_OK)
        gw_metrics_job_final(&tc->g->metrics, false, false,
                             (double)(job_now_ms() - tc->job.created_ms) / 1000.0);
    else if (rc != STORE_TERMINAL)
        log_warn_id(tc->job.id, "could not mark the job Failed (its deadline will): %s",
                    api_store_reason(rc, errmsg));
    char text[1024];
    snprintf(text, sizeof text, "failed to send message: %s", tc->publish_error);
    finish(tc, toolcall_result(text, true), TC_PUBLISH_ERROR);
}

static void on_published(void *arg, bool ok, const char *error)
{
    struct toolcall *tc = arg;
    struct job_change c = {0};
    if (ok) {
        finish(tc, success_result(tc), TC_OK);
        return;
    }
    tc->publish_error = strdup(error ? error : "unknown error");
    log_warn_id(tc->job.id, "publish to %s failed: %s", tc->job.steps[0],
                tc->publish_error ? tc->publish_error : "?");
    char reason[1100];
    snprintf(reason, sizeof reason, "failed to send message: %s",
             tc->publish_error ? tc->publish_error : "?");
    c.kind = CHANGE_FAILED;
    c.error = reason;
    tc->g->store->ops->apply(tc->g->store, tc->job.id, &c, on_failed_stored, tc);
}

/* The envelope of GATEWAY.md: id and job_id both the job id. */
static char *envelope_text(const struct job *j)
{
    char deadline[40];
    json_t *steps = json_array();
    for (size_t i = 0; i < j->nsteps; i++)
        json_array_append_new(steps, json_string(j->steps[i]));
    json_t *env =
        json_pack("{s:s, s:s, s:{s:o, s:i, s:{s:s}}, s:O}", "id", j->id, "job_id", j->id, "route",
                  "steps", steps, "current", 0, "metadata", "job_id", j->id, "payload", j->payload);
    if (!env)
        return NULL;
    if (j->deadline_ms > 0) {
        job_format_time(j->deadline_ms, deadline, sizeof deadline);
        json_object_set_new(env, "deadline", json_string(deadline));
    }
    char *text = json_dumps(env, JSON_COMPACT);
    json_decref(env);
    return text;
}

static void on_created(void *arg, enum store_rc rc, const struct job *job, const char *errmsg)
{
    struct toolcall *tc = arg;
    (void)job;
    if (rc != STORE_OK) {
        char text[1024];
        snprintf(text, sizeof text, "failed to create job: %s", api_store_reason(rc, errmsg));
        finish(tc, toolcall_result(text, true), TC_STORE_ERROR);
        return;
    }
    char *body = envelope_text(&tc->job);
    if (!body) {
        on_published(tc, false, "out of memory");
        return;
    }
    const struct gw_config *cfg = tc->g->cfg;
    char key[512];
    snprintf(key, sizeof key, "%s%s", cfg->queue_prefix, tc->job.steps[0]);
    amqppub_publish(tc->g->pub, key, body, strlen(body), on_published, tc);
    free(body);
}

void toolcall_start(struct gateway *g, const struct tool *t, const json_t *args, toolcall_done done,
                    void *arg)
{
    size_t index = (size_t)(t - g->routes->tools);
    char err[512];
    json_t *payload = NULL;
    if (tool_check_args(t, args, &payload, err, sizeof err) != 0) {
        gw_metrics_toolcall(&g->metrics, index, TC_INVALID_ARGUMENTS);
        char text[600];
        snprintf(text, sizeof text, "invalid arguments: %s", err);
        done(arg, toolcall_result(text, true));
        return;
    }
    struct toolcall *tc = calloc(1, sizeof *tc);
    if (!tc) {
        json_decref(payload);
        done(arg, toolcall_result("out of memory", true));
        return;
    }
    tc->g = g;
    tc->tool = t;
    tc->tool_index = index;
    tc->done = done;
    tc->arg = arg;
    struct job *j = &tc->job;
    if (job_id_new(j->id) != 0) {
        json_decref(payload);
        free(tc);
        done(arg, toolcall_result("cannot make a job id", true));
        return;
    }
    j->status = JOB_RUNNING; /* stored as sent: see the top of this file */
    j->steps = calloc(t->nsteps, sizeof *j->steps);
    if (j->steps) {
        for (size_t i = 0; i < t->nsteps; i++)
            if ((j->steps[j->nsteps] = strdup(t->steps[i])) != NULL)
                j->nsteps++;
    }
    j->payload = payload;
    j->timeout_sec = t->timeout_sec;
    j->created_ms = j->updated_ms = job_now_ms();
    j->deadline_ms = t->timeout_sec > 0 ? j->created_ms + t->timeout_sec * 1000 : 0;
    j->total_steps = (int)t->nsteps;
    g->inflight++;
    if (j->nsteps != t->nsteps) {
        finish(tc, toolcall_result("out of memory", true), TC_STORE_ERROR);
        return;
    }
    g->store->ops->create(g->store, j, on_created, tc);
}
