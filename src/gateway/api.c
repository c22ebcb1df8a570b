/*
 * api.c - the gateway's HTTP API (GATEWAY.md "HTTP API"): routing by path
 * and method, the job endpoints, /tools/call, /health, /readyz, /metrics.
 * Errors are plain text; job ids that are not canonical UUIDs are unknown
 * without asking the store (so a 10 KB "id" costs nothing).
 */
#include "gateway_int.h"
#include "jobpath.h"

#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *api_store_reason(enum store_rc rc, const char *errmsg)
{
    if (errmsg && *errmsg)
        return errmsg;
    switch (rc) {
    case STORE_OK:
        return "ok";
    case STORE_NOT_FOUND:
        return "job not found";
    case STORE_TERMINAL:
        return "job already finished";
    case STORE_UNAVAILABLE:
        return "database unavailable";
    case STORE_ERROR:
    default:
        return "database error";
    }
}

static bool is_method(const struct gwreq *req, const char *m)
{
    return strcmp(gwreq_method(req), m) == 0;
}

static void method_not_allowed(struct gwreq *req, const char *allow)
{
    gwreq_add_header(req, "Allow", allow);
    gwreq_reply_text(req, 405, "method not allowed\n");
}

static void store_failed(struct gwreq *req, enum store_rc rc, const char *errmsg)
{
    if (rc == STORE_NOT_FOUND)
        gwreq_reply_text(req, 404, "Job not found\n");
    else
        gwreq_reply_text(req, 503, "%s\n", api_store_reason(rc, errmsg));
}

/* Parse a JSON object body; on failure answers 400 and returns NULL. */
static json_t *json_body(struct gwreq *req)
{
    /* A body declared as something else (a form, text) is refused, as /mcp
     * does; without a Content-Type the body is taken for JSON. */
    const char *ctype = gwreq_header(req, "Content-Type");
    if (ctype && strncasecmp(ctype, "application/json", 16) != 0) {
        gwreq_reply_text(req, 400, "expected Content-Type: application/json\n");
        return NULL;
    }
    size_t len;
    const char *body = gwreq_body(req, &len);
    json_error_t e;
    json_t *j = json_loadb(body, len, 0, &e);
    if (!j) {
        gwreq_reply_text(req, 400, "invalid JSON: %s (line %d, column %d)\n", e.text, e.line,
                         e.column);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        gwreq_reply_text(req, 400, "invalid JSON: expected an object\n");
        return NULL;
    }
    return j;
}

/* ---- GET /jobs/{id}, /active ------------------------------------------------ */

static void on_get_job(void *arg, enum store_rc rc, const struct job *job, const char *errmsg)
{
    struct gwreq *req = arg;
    if (!gwreq_release(req))
        return;
    if (rc != STORE_OK) {
        store_failed(req, rc, errmsg);
        return;
    }
    gwreq_reply_json(req, 200, job_to_json(job));
}

static void on_get_active(void *arg, enum store_rc rc, const struct job *job, const char *errmsg)
{
    struct gwreq *req = arg;
    if (!gwreq_release(req))
        return;
    if (rc != STORE_OK) {
        store_failed(req, rc, errmsg);
        return;
    }
    bool active = !job_status_terminal(job->status) &&
                  (job->deadline_ms == 0 || job_now_ms() < job->deadline_ms);
    gwreq_reply_json(req, active ? 200 : 410, json_pack("{s:b}", "active", active));
}

/* ---- POST /jobs/{id}/progress, /heartbeat, /final ---------------------------- */

struct report {
    struct gateway *g;
    struct gwreq *req;
    enum job_change_kind kind;
    bool legacy; /* heartbeat: answer {"status":"ok"} only */
    /* heartbeat: resolved once the job's route is known */
    char *actor;
    char *status_text;
    char *message;
    /* a report held until the ones before it landed (hold_report) */
    ev_timer hold;
    json_t *body; /* what change's strings and result point into */
    char *error;  /* change.error's copy (a failed final's may be on the caller's stack) */
    struct job_change change;
    double after; /* progress: the percent the job must have reached first */
    char id[JOB_ID_LEN + 1];
    double hold_until;
    double hold_delay; /* the next wait; doubles */
    bool listed;       /* on g->held, until freed */
    TAILQ_ENTRY(report) link;
};

static void hold_cb(struct ev_loop *loop, ev_timer *t, int revents);
static void wake_held(struct gateway *g, const char *id);

static void free_report(struct report *rp)
{
    if (rp->listed)
        TAILQ_REMOVE(&rp->g->held, rp, link);
    ev_timer_stop(rp->g->loop, &rp->hold);
    json_decref(rp->body);
    free(rp->error);
    free(rp->actor);
    free(rp->status_text);
    free(rp->message);
    free(rp);
}

static void on_applied(void *arg, enum store_rc rc, const struct job *job, const char *errmsg)
{
    struct report *rp = arg;
    struct gwreq *req = rp->req;
    if (rc == STORE_OK && job_status_terminal(job->status) &&
        (rp->kind == CHANGE_SUCCEEDED || rp->kind == CHANGE_FAILED))
        gw_metrics_job_final(&rp->g->metrics, job->status == JOB_SUCCEEDED, false,
                             (double)(job_now_ms() - job->created_ms) / 1000.0);
    if (rc == STORE_OK || rc == STORE_TERMINAL) {
        if (rp->kind == CHANGE_PROGRESS)
            rp->g->metrics.progress_reports++;
        else if (!rp->legacy)
            rp->g->metrics.final_reports++;
    }
    bool alive = gwreq_release(req);
    if (alive) {
        if (rc != STORE_OK && rc != STORE_TERMINAL)
            store_failed(req, rc, errmsg);
        else if (rp->kind == CHANGE_PROGRESS && !rp->legacy)
            gwreq_reply_json(
                req, 200,
                json_pack("{s:s, s:f}", "status", "ok", "progress_percent", job->progress_percent));
        else
            gwreq_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
    }
    struct gateway *g = rp->g;
    char id[JOB_ID_LEN + 1];
    snprintf(id, sizeof id, "%s", rc == STORE_OK && job ? job->id : rp->id);
    free_report(rp); /* off g->held first: it is no longer on its way */
    if (*id)
        wake_held(g, id);
}

static struct report *new_report(struct gateway *g, struct gwreq *req, enum job_change_kind kind)
{
    struct report *rp = calloc(1, sizeof *rp);
    if (!rp) {
        gwreq_reply_text(req, 500, "out of memory\n");
        return NULL;
    }
    ev_timer_init(&rp->hold, hold_cb, 0., 0.);
    rp->hold.data = rp;
    rp->g = g;
    rp->req = req;
    rp->kind = kind;
    gwreq_hold(req);
    return rp;
}

static const char *opt_string(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static bool opt_int(const json_t *o, const char *key, int *out)
{
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = 0;
        return true;
    }
    if (json_is_integer(v)) {
        json_int_t n = json_integer_value(v);
        if (n < -1000000 || n > 1000000)
            return false;
        *out = (int)n;
        return true;
    }
    return false;
}

/*
 * Reports of one job travel apart: each sidecar sends its own one after
 * another, while the message moves on at once, so a fast pipeline's next
 * step (or its end actor's final) can reach the gateway before the previous
 * step's last reports.  Progress never goes down and nothing changes a
 * finished job, so those would be lost to the stream.  So a report waits,
 * up to HOLD_MAX_S, while the job has not reached the checkpoint before it
 * (progress: progress_after(); a succeeded final: no progress report of the
 * job still on its way here, and every step completed once sidecars report
 * at all; a failed final: no progress report of the job on its way here,
 * since its later steps never run).  It looks again when another report of
 * the job was applied here, else after HOLD_FIRST_S, doubling (a handful of
 * reads at most, also when a report was dropped and never comes); a report
 * that waited its time is applied.
 */
#define HOLD_FIRST_S 0.01
#define HOLD_MAX_S   0.5

static void on_held_job(void *arg, enum store_rc rc, const struct job *job, const char *errmsg);

static void hold_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct report *rp = t->data;
    (void)loop;
    (void)revents;
    rp->g->store->ops->get(rp->g->store, rp->id, on_held_job, rp);
}

/* A progress report of job id arrived here and is not applied yet. */
static bool progress_pending(const struct gateway *g, const char *id)
{
    const struct report *p;
    for (p = TAILQ_FIRST(&g->held); p; p = TAILQ_NEXT(p, link))
        if (p->change.kind == CHANGE_PROGRESS && strcmp(p->id, id) == 0)
            return true;
    return false;
}

/* A report of job id was applied: the ones waiting for it look again now. */
static void wake_held(struct gateway *g, const char *id)
{
    struct report *p;
    for (p = TAILQ_FIRST(&g->held); p; p = TAILQ_NEXT(p, link)) {
        if (ev_is_active(&p->hold) && strcmp(p->id, id) == 0) {
            ev_timer_stop(g->loop, &p->hold);
            ev_timer_set(&p->hold, 0., 0.);
            ev_timer_start(g->loop, &p->hold);
        }
    }
}

static bool report_early(const struct report *rp, const struct job *job)
{
    if (job_status_terminal(job->status))
        return false;
    if (rp->change.kind == CHANGE_FAILED)
        return progress_pending(rp->g, rp->id);
    if (rp->change.kind == CHANGE_SUCCEEDED)
        return progress_pending(rp->g, rp->id) ||
               (job->current_step && job->steps_completed < job->total_steps);
    return job->progress_percent + 0.01 < rp->after; /* the store keeps 2 decimals */
}

static void on_held_job(void *arg, enum store_rc rc, const struct job *job, const char *errmsg)
{
    struct report *rp = arg;
    (void)errmsg;
    double now = ev_now(rp->g->loop);
    if (rc == STORE_OK && report_early(rp, job) && now < rp->hold_until) {
        double wait = rp->hold_delay;
        if (now + wait > rp->hold_until)
            wait = rp->hold_until - now;
        rp->hold_delay *= 2;
        ev_timer_set(&rp->hold, wait, 0.);
        ev_timer_start(rp->g->loop, &rp->hold);
        return;
    }
    /* What apply says (unknown job, store down) is the answer. */
    rp->g->store->ops->apply(rp->g->store, rp->id, &rp->change, on_applied, rp);
}

/* Apply c (its strings in body) for rp, after the reports before it. */
static void hold_report(struct gateway *g, struct report *rp, const char *id, json_t *body,
                        const struct job_change *c)
{
    if (strlen(id) > JOB_ID_LEN) { /* not a job id: apply says 404 */
        g->store->ops->apply(g->store, id, c, on_applied, rp);
        return;
    }
    if (c->error && !(rp->error = strdup(c->error))) {
        g->store->ops->apply(g->store, id, c, on_applied, rp); /* no memory to wait with */
        return;
    }
    rp->body = json_incref(body);
    rp->change = *c;
    rp->change.error = rp->error;
    snprintf(rp->id, sizeof rp->id, "%s", id);
    rp->hold_until = ev_now(g->loop) + HOLD_MAX_S;
    rp->hold_delay = HOLD_FIRST_S;
    TAILQ_INSERT_TAIL(&g->held, rp, link);
    rp->listed = true;
    /* Nothing to wait for without a read: a first checkpoint, or a failed final
     * with no progress report of its job on its way. */
    bool now = (c->kind == CHANGE_PROGRESS && rp->after <= 0) ||
               (c->kind == CHANGE_FAILED && !progress_pending(g, id));
    if (now)
        g->store->ops->apply(g->store, id, c, on_applied, rp);
    else
        g->store->ops->get(g->store, id, on_held_job, rp);
}

static void post_progress(struct gateway *g, struct gwreq *req, const char *id)
{
    json_t *body = json_body(req);
    if (!body)
        return;
    const char *status = opt_string(body, "status");
    const json_t *fraction = json_object_get(body, "progress"); /* a handler's own */
    enum step_status st;
    int step_index, total;
    if (!status || step_status_parse(status, &st) != 0) {
        gwreq_reply_text(req, 400, "status must be one of received, processing, completed\n");
    } else if (!opt_int(body, "step_index", &step_index) || !opt_int(body, "total_steps", &total)) {
        gwreq_reply_text(req, 400, "step_index and total_steps must be integers\n");
    } else if (fraction && (!json_is_number(fraction) || json_number_value(fraction) < 0.0 ||
                            json_number_value(fraction) > 1.0 || st != STEP_PROCESSING)) {
        gwreq_reply_text(req, 400,
                         "progress must be a number from 0 to 1, with status processing\n");
    } else {
        struct report *rp = new_report(g, req, CHANGE_PROGRESS);
        if (rp) {
            struct job_change c = {
                .kind = CHANGE_PROGRESS,
                .message = opt_string(body, "message"),
                .percent = fraction ? progress_percent_within(step_index, total,
                                                              json_number_value(fraction))
                                    : progress_percent(step_index, total, st),
                .step = opt_string(body, "step"),
                .step_index = step_index,
                .step_status = st};
            rp->after = progress_after(step_index, total, st);
            hold_report(g, rp, id, body, &c);
        }
    }
    json_decref(body);
}

static void post_final(struct gateway *g, struct gwreq *req, const char *id)
{
    json_t *body = json_body(req);
    if (!body)
        return;
    const char *status = opt_string(body, "status");
    struct job_change c = {0};
    char errbuf[4096];
    if (status && strcmp(status, "succeeded") == 0) {
        c.kind = CHANGE_SUCCEEDED;
        c.result = json_object_get(body, "result");
    } else if (status && strcmp(status, "failed") == 0) {
        c.kind = CHANGE_FAILED;
        const json_t *e = json_object_get(body, "error");
        if (json_is_string(e)) {
            c.error = json_string_value(e);
        } else if (e && !json_is_null(e)) {
            char *t = json_dumps(e, JSON_COMPACT | JSON_ENCODE_ANY);
            snprintf(errbuf, sizeof errbuf, "%s", t ? t : "unknown error");
            free(t);
            c.error = errbuf;
        } else {
            c.error = "unknown error";
        }
    } else {
        gwreq_reply_text(req, 400, "status must be \"succeeded\" or \"failed\"\n");
        json_decref(body);
        return;
    }
    struct report *rp = new_report(g, req, c.kind);
    if (rp)
        hold_report(g, rp, id, body, &c);
    json_decref(body);
}

/* Legacy heartbeat: the step index is the first route step naming the actor. */
static void on_heartbeat_job(void *arg, enum store_rc rc, const struct job *job, const char *errmsg)
{
    struct report *rp = arg;
    if (rc != STORE_OK) {
        if (gwreq_release(rp->req))
            store_failed(rp->req, rc, errmsg);
        free_report(rp);
        return;
    }
    struct job_change c = {0};
    const char *st = rp->status_text;
    char errbuf[1100];
    if (strcmp(st, "error") == 0) {
        rp->kind = c.kind = CHANGE_FAILED;
        snprintf(errbuf, sizeof errbuf, "%s",
                 rp->message ? rp->message : "actor reported an error");
        c.error = errbuf;
    } else {
        rp->kind = c.kind = CHANGE_PROGRESS;
        enum step_status ss = strcmp(st, "picked_up") == 0    ? STEP_RECEIVED
                              : strcmp(st, "processing") == 0 ? STEP_PROCESSING
                                                              : STEP_COMPLETED;
        int index = 0;
        for (size_t i = 0; i < job->nsteps; i++) {
            if (rp->actor && *rp->actor && strstr(job->steps[i], rp->actor)) {
                index = (int)i;
                break;
            }
        }
        c.step_index = index;
        c.step = job->nsteps > (size_t)index ? job->steps[index] : rp->actor;
        c.step_status = ss;
        c.percent = progress_percent(index, job->total_steps, ss);
        c.message = rp->message;
    }
    rp->g->store->ops->apply(rp->g->store, job->id, &c, on_applied, rp);
}

static void post_heartbeat(struct gateway *g, struct gwreq *req, const char *id)
{
    json_t *body = json_body(req);
    if (!body)
        return;
    const char *status = opt_string(body, "status");
    static const char *const ok[] = {"picked_up", "processing", "completed", "error"};
    bool known = false;
    for (size_t i = 0; status && i < sizeof ok / sizeof ok[0]; i++)
        known = known || strcmp(status, ok[i]) == 0;
    if (!known) {
        gwreq_reply_text(req, 400,
                         "status must be one of picked_up, processing, completed, error\n");
        json_decref(body);
        return;
    }
    struct report *rp = new_report(g, req, CHANGE_PROGRESS);
    if (rp) {
        rp->legacy = true;
        const char *actor = opt_string(body, "actor_name");
        const char *msg = opt_string(body, "message");
        rp->actor = actor ? strdup(actor) : NULL;
        rp->status_text = strdup(status);
        rp->message = msg ? strdup(msg) : NULL;
        if (!rp->status_text) {
            if (gwreq_release(req))
                gwreq_reply_text(req, 500, "out of memory\n");
            free_report(rp);
        } else {
            g->store->ops->get(g->store, id, on_heartbeat_job, rp);
        }
    }
    json_decref(body);
}

/* ---- /jobs/... ---------------------------------------------------------------- */

static void jobs_route(struct gateway *g, struct gwreq *req, const char *rest)
{
    char id[JOB_ID_LEN + 1];
    enum job_action action = JOB_ACTION_GET;
    enum jobpath_result pr = jobpath_parse(rest, id, &action);
    if (pr == JOBPATH_EMPTY_ID) {
        gwreq_reply_text(req, 400, "job id is required\n");
        return;
    }
    if (pr == JOBPATH_UNKNOWN_ACTION) {
        gwreq_reply_text(req, 404, "not found\n");
        return;
    }
    bool get = is_method(req, "GET") || is_method(req, "HEAD");
    if (job_action_is_post(action) && !is_method(req, "POST")) {
        method_not_allowed(req, "POST");
        return;
    }
    if (!job_action_is_post(action) && !get) {
        method_not_allowed(req, "GET, HEAD");
        return;
    }
    if (pr == JOBPATH_BAD_ID) {
        gwreq_reply_text(req, 404, "Job not found\n");
        return;
    }
    switch (action) {
    case JOB_ACTION_GET:
        gwreq_hold(req);
        g->store->ops->get(g->store, id, on_get_job, req);
        break;
    case JOB_ACTION_ACTIVE:
        gwreq_hold(req);
        g->store->ops->get(g->store, id, on_get_active, req);
        break;
    case JOB_ACTION_STREAM:
        sse_subscribe(g->sse, req, id);
        break;
    case JOB_ACTION_PROGRESS:
        post_progress(g, req, id);
        break;
    case JOB_ACTION_HEARTBEAT:
        post_heartbeat(g, req, id);
        break;
    case JOB_ACTION_FINAL:
        post_final(g, req, id);
        break;
    }
}

/* ---- POST /tools/call ----------------------------------------------------------- */

static void on_rest_tool_done(void *arg, json_t *result)
{
    struct gwreq *req = arg;
    if (gwreq_release(req))
        gwreq_reply_json(req, 200, result);
    else
        json_decref(result);
}

static void tools_call(struct gateway *g, struct gwreq *req)
{
    if (!is_method(req, "POST")) {
        method_not_allowed(req, "POST");
        return;
    }
    json_t *body = json_body(req);
    if (!body)
        return;
    const char *name = opt_string(body, "name");
    const json_t *args = json_object_get(body, "arguments");
    if (!name || !*name) {
        gwreq_reply_text(req, 400, "tool name is required\n");
    } else if (args && !json_is_object(args) && !json_is_null(args)) {
        gwreq_reply_text(req, 400, "arguments must be an object\n");
    } else {
        const struct tool *t = routes_find(g->routes, name);
        if (!t) {
            gw_metrics_toolcall(&g->metrics, (size_t)-1, TC_UNKNOWN_TOOL);
            gwreq_reply_text(req, 404, "Tool \"%s\" not found\n", name);
        } else {
            gwreq_hold(req);
            toolcall_start(g, t, json_is_object(args) ? args : NULL, on_rest_tool_done, req);
        }
    }
    json_decref(body);
}

/* ---- health, readiness, metrics ------------------------------------------------- */

static void readyz(struct gateway *g, struct gwreq *req)
{
    const char *reason = NULL;
    if (!g->store->ops->ready(g->store, &reason) || !amqppub_ready(g->pub, &reason))
        gwreq_reply_text(req, 503, "not ready: %s\n", reason ? reason : "unknown");
    else if (g->drain_done)
        gwreq_reply_text(req, 503, "not ready: shutting down\n");
    else
        gwreq_reply_text(req, 200, "ready\n");
}

static void metrics(struct gateway *g, struct gwreq *req)
{
    struct textbuf b = TEXTBUF_INIT;
    unsigned long long errors[2];
    gwhttp_errors(g->http, errors);
    gw_metrics_render(&g->metrics, g->routes, sse_subscribers(g->sse), gwhttp_connections(g->http),
                      errors, &b);
    g->store->ops->metrics(g->store, &b);
    amqppub_metrics(g->pub, &b);
    size_t len;
    char *text = textbuf_take(&b, &len);
    if (!text) {
        gwreq_reply_text(req, 500, "out of memory\n");
        return;
    }
    gwreq_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
}

void api_handle(void *ctx, struct gwreq *req)
{
    struct gateway *g = ctx;
    const char *path = gwreq_path(req);
    bool get = is_method(req, "GET") || is_method(req, "HEAD");
    if (strncmp(path, "/jobs/", 6) == 0) {
        jobs_route(g, req, path + 6);
    } else if (strcmp(path, "/jobs") == 0) {
        gwreq_reply_text(req, 400, "job id is required\n");
    } else if (strcmp(path, "/tools/call") == 0) {
        tools_call(g, req);
    } else if (strcmp(path, "/mcp") == 0) {
        mcp_handle(g, req);
    } else if (strcmp(path, "/health") == 0 || strcmp(path, "/healthz") == 0) {
        if (get)
            gwreq_reply_text(req, 200, "OK");
        else
            method_not_allowed(req, "GET, HEAD");
    } else if (strcmp(path, "/readyz") == 0) {
        if (get)
            readyz(g, req);
        else
            method_not_allowed(req, "GET, HEAD");
    } else if (strcmp(path, "/metrics") == 0) {
        if (get)
            metrics(g, req);
        else
            method_not_allowed(req, "GET, HEAD");
    } else {
        gwreq_reply_text(req, 404, "not found\n");
    }
}
