/*
 * reports.c - progress and final statuses for the gateway: builds the bodies
 * (jobreport.h) at the right moments of a message's way and, for an end
 * actor, holds the message until the gateway took its final status.
 */
#include "reports.h"

#include "gwreport.h"
#include "log.h"
#include "protocol.h"
#include "publish.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROGRESS_IN_FLIGHT 64
#define PROGRESS_QUEUED    1024
#define PROGRESS_TIMEOUT_S 5.0
#define FINAL_TIMEOUT_S    10.0 /* a final status may carry a large result */
#define RETRY_FIRST_S      0.5  /* delay before a message whose final failed goes back */
#define RETRY_MAX_S        30.0
#define BACKOFF_MAX        1024 /* messages whose failures are remembered */

/* Which final status this end actor reports. */
enum end_kind {
    END_HAPPY,       /* its name is ASYA_STEP_HAPPY_END: succeeded */
    END_ERROR,       /* its name is ASYA_STEP_ERROR_END: failed */
    END_BY_ENVELOPE, /* neither: failed when the envelope has a top-level "error" */
};

/* A message of the pool while its final status is with the gateway. */
struct final_slot {
    ev_timer retry; /* first member: retry_cb casts back; armed: waiting to requeue */
    struct sidecar *sc;
    unsigned index;
    bool in_flight;
    char job[JOBREPORT_ID_MAX + 1];
    char key[JOBREPORT_ID_MAX + 1]; /* the envelope id, else the job id: its backoff */
};

/* Failed finals per message key, so the delay grows across requeues. */
struct backoff {
    char *key; /* owned */
    unsigned failures;
    double last;
};

struct reports {
    struct gwreport *gw;
    enum end_kind end;
    struct final_slot *slots; /* one per pool message */
    unsigned n;
    struct backoff backoff[BACKOFF_MAX];
    unsigned nbackoff;
};

/* ---- backoff per message ------------------------------------------------------------ */

static struct backoff *backoff_find(struct reports *r, const char *key)
{
    for (unsigned i = 0; i < r->nbackoff; i++)
        if (strcmp(r->backoff[i].key, key) == 0)
            return &r->backoff[i];
    return NULL;
}

/* One more failure for key: the delay before its message goes back. */
static double backoff_next(struct reports *r, const char *key, double now)
{
    struct backoff *b = backoff_find(r, key);
    if (!b) {
        if (r->nbackoff == BACKOFF_MAX) {
            /* Full: forget the one that failed longest ago. */
            unsigned old = 0;
            for (unsigned i = 1; i < r->nbackoff; i++)
                if (r->backoff[i].last < r->backoff[old].last)
                    old = i;
            free(r->backoff[old].key);
            r->backoff[old] = r->backoff[--r->nbackoff];
        }
        char *k = strdup(key);
        if (!k)
            return RETRY_FIRST_S;
        b = &r->backoff[r->nbackoff++];
        b->key = k;
        b->failures = 0;
    }
    b->failures++;
    b->last = now;
    double d = RETRY_FIRST_S;
    for (unsigned i = 1; i < b->failures && d < RETRY_MAX_S; i++)
        d *= 2;
    return d > RETRY_MAX_S ? RETRY_MAX_S : d;
}

static void backoff_forget(struct reports *r, const char *key)
{
    struct backoff *b = backoff_find(r, key);
    if (b) {
        free(b->key);
        *b = r->backoff[--r->nbackoff];
    }
}

/* ---- final statuses ---------------------------------------------------------------- */

static void settle(struct sidecar *sc, struct message *m)
{
    m->state = MSG_CONFIRMING;
    publish_settle(sc, m);
}

/* The gateway did not take m's final status: m goes back to its queue after
 * its delay (at once when shutting down). */
static void retry_later(struct sidecar *sc, struct message *m, const char *why)
{
    struct reports *r = sc->reports;
    struct final_slot *s = &r->slots[m->index];
    sc->stats.gw.final_retried++;
    double d = sc->shutting_down ? 0 : backoff_next(r, s->key, ev_now(sc->loop));
    log_warn_id(message_id(m),
                "the gateway did not take the final status of job %s (%s): back to "
                "the queue in %.1f s",
                s->job, why, d);
    ev_timer_set(&s->retry, d, 0.);
    ev_timer_start(sc->loop, &s->retry);
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct final_slot *s = (struct final_slot *)w;
    struct sidecar *sc = s->sc;
    (void)loop;
    (void)revents;
    struct message *m = &sc->pool.msgs[s->index];
    /* A copy without an attempt counted: the gateway's outage is not the message's fault. */
    publish_requeue(sc, m, m->attempts, REQUEUE_GATEWAY);
}

static void final_done(void *ctx, unsigned token, enum gwreport_result result, long status,
                       const char *why)
{
    struct sidecar *sc = ctx;
    struct reports *r = sc->reports;
    struct final_slot *s = &r->slots[token];
    struct message *m = &sc->pool.msgs[token];
    s->in_flight = false;
    switch (result) {
    case GWREPORT_OK:
        sc->stats.gw.final_sent++;
        backoff_forget(r, s->key);
        log_debug_id(message_id(m), "the gateway took the final status of job %s (HTTP %ld)",
                     s->job, status);
        settle(sc, m);
        return;
    case GWREPORT_UNKNOWN_JOB:
        sc->stats.gw.final_unknown++;
        backoff_forget(r, s->key);
        log_warn_id(message_id(m),
                    "the gateway does not know job %s (HTTP 404): final status "
                    "dropped",
                    s->job);
        settle(sc, m);
        return;
    case GWREPORT_REJECTED:
        sc->stats.gw.final_rejected++;
        backoff_forget(r, s->key);
        log_error_id(message_id(m), "the gateway refused the final status of job %s (%s): dropped",
                     s->job, why);
        settle(sc, m);
        return;
    default:
        retry_later(sc, m, why);
        return;
    }
}

/* Send body (ownership taken; NULL: out of memory) as m's final status. */
static void final_start(struct sidecar *sc, struct message *m, const char *job, char *body,
                        size_t len)
{
    struct reports *r = sc->reports;
    struct final_slot *s = &r->slots[m->index];
    m->state = MSG_REPORTING;
    snprintf(s->job, sizeof s->job, "%s", job);
    snprintf(s->key, sizeof s->key, "%s", message_id(m) ? message_id(m) : job);
    if (!body) {
        retry_later(sc, m, "out of memory");
        return;
    }
    int rc = gwreport_final(r->gw, job, body, len, m->index);
    if (rc) {
        retry_later(sc, m, strerror(-rc));
        return;
    }
    s->in_flight = true;
    log_debug_id(message_id(m), "final status of job %s sent to the gateway", job);
}

static bool reports_failed_end(const struct reports *r, const json_t *root)
{
    if (r->end != END_BY_ENVELOPE)
        return r->end == END_ERROR;
    return json_is_string(json_object_get(root, "error"));
}

bool reports_final(struct sidecar *sc, struct message *m)
{
    struct reports *r = sc->reports;
    const json_t *root = r ? envelope_json(&m->env) : NULL;
    if (!root)
        return false;
    char idbuf[JOBREPORT_ID_MAX + 1];
    bool failed = reports_failed_end(r, root);
    const char *job =
        failed ? jobreport_error_job_id(root, idbuf, sizeof idbuf) : jobreport_job_id(root);
    if (!job) {
        log_debug_id(message_id(m), "no job id: no final status to report");
        return false;
    }
    size_t len = 0;
    char *body = failed ? jobreport_final_failed(job, root, &len)
                        : jobreport_final_succeeded(job, json_object_get(root, "payload"), &len);
    final_start(sc, m, job, body, len);
    return true;
}

bool reports_final_raw(struct sidecar *sc, struct message *m)
{
    struct reports *r = sc->reports;
    if (!r || r->end == END_HAPPY)
        return false;
    json_t *root = json_loadb(m->body, m->len, 0, NULL);
    char idbuf[JOBREPORT_ID_MAX + 1];
    const char *job = json_is_object(root) && reports_failed_end(r, root)
                          ? jobreport_error_job_id(root, idbuf, sizeof idbuf)
                          : NULL;
    if (!job) {
        json_decref(root);
        return false;
    }
    size_t len = 0;
    char *body = jobreport_final_failed(job, root, &len);
    json_decref(root);
    final_start(sc, m, job, body, len);
    return true;
}

void reports_abort_all(struct sidecar *sc)
{
    struct reports *r = sc->reports;
    if (!r)
        return;
    for (unsigned i = 0; i < r->n; i++) {
        struct final_slot *s = &r->slots[i];
        if (s->in_flight)
            gwreport_final_cancel(r->gw, i);
        s->in_flight = false;
        ev_timer_stop(sc->loop, &s->retry);
    }
}

void reports_shutdown(struct sidecar *sc)
{
    struct reports *r = sc->reports;
    if (!r)
        return;
    for (unsigned i = 0; i < r->n; i++) {
        struct final_slot *s = &r->slots[i];
        if (ev_is_active(&s->retry)) {
            ev_timer_stop(sc->loop, &s->retry);
            ev_timer_set(&s->retry, 0., 0.);
            ev_timer_start(sc->loop, &s->retry);
        }
    }
}

/* ---- progress ------------------------------------------------------------------------- */

/* The job id m's progress goes to, or NULL: no gateway, an end actor, no
 * valid envelope or no job id. */
static const char *progress_job(const struct sidecar *sc, const struct message *m)
{
    if (!sc->reports || sc->cfg->is_end_actor || !envelope_valid(&m->env))
        return NULL;
    return jobreport_job_id(envelope_json(&m->env));
}

/* Send body (NULL: it could not be built, counted as dropped) for job. */
static void send_progress(struct sidecar *sc, const char *job, char *body, size_t len)
{
    if (!body) {
        sc->stats.gw.progress_dropped++;
        return;
    }
    gwreport_progress(sc->reports->gw, job, body, len);
}

void reports_progress(struct sidecar *sc, const struct message *m, enum jobreport_status status,
                      double duration_s)
{
    const char *job = progress_job(sc, m);
    if (!job || gwreport_progress_drop(sc->reports->gw))
        return;
    size_t len = 0;
    long ms = duration_s < 0 ? -1 : (long)(duration_s * 1000.0 + 0.5);
    char *body = jobreport_progress_body(&m->env, status, sc->cfg->actor_name, ms, &len);
    send_progress(sc, job, body, len);
}

bool reports_runtime_body(struct sidecar *sc, struct message *m, const char **body, size_t *len)
{
    static const char ask[] = "\"" PROTO_PROGRESS_KEY "\":true,";
    *body = m->body;
    *len = m->len;
    /* An envelope that carries the key already is sent as it is. */
    if (!progress_job(sc, m) || json_object_get(envelope_json(&m->env), PROTO_PROGRESS_KEY))
        return false;
    const char *brace = memchr(m->body, '{', m->len);
    size_t head = brace ? (size_t)(brace - m->body) + 1 : 0;
    size_t need = m->len + sizeof ask - 1 + 1;
    if (!brace || json_object_size(envelope_json(&m->env)) == 0)
        return false;
    if (m->rt_cap < need) {
        char *nb = realloc(m->rt_body, need);
        if (!nb)
            return false; /* no handler progress for this one; the call goes ahead */
        m->rt_body = nb;
        m->rt_cap = need;
    }
    memcpy(m->rt_body, m->body, head);
    memcpy(m->rt_body + head, ask, sizeof ask - 1);
    memcpy(m->rt_body + head + sizeof ask - 1, m->body + head, m->len - head);
    *len = m->len + sizeof ask - 1;
    m->rt_body[*len] = '\0';
    *body = m->rt_body;
    return true;
}

void reports_handler_progress(struct sidecar *sc, const struct message *m, double fraction,
                              const char *message)
{
    const char *job = progress_job(sc, m);
    if (!job || gwreport_progress_drop(sc->reports->gw))
        return;
    size_t len = 0;
    char *body =
        jobreport_handler_progress_body(&m->env, sc->cfg->actor_name, fraction, message, &len);
    send_progress(sc, job, body, len);
}

/* ---- lifecycle ---------------------------------------------------------------------- */

int reports_init(struct sidecar *sc, char *err, size_t errlen)
{
    const struct sidecar_config *cfg = sc->cfg;
    if (!cfg->gateway_url)
        return 0;
    struct reports *r = calloc(1, sizeof *r);
    if (!r || !(r->slots = calloc(sc->pool.n, sizeof *r->slots))) {
        free(r);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    r->n = sc->pool.n;
    for (unsigned i = 0; i < r->n; i++) {
        ev_timer_init(&r->slots[i].retry, retry_cb, 0., 0.);
        r->slots[i].sc = sc;
        r->slots[i].index = i;
    }
    /* The actor's name says which end it is; a differently named end actor
     * goes by each envelope. */
    if (strcmp(cfg->actor_name, cfg->error_end) == 0)
        r->end = END_ERROR;
    else if (strcmp(cfg->actor_name, cfg->happy_end) == 0)
        r->end = END_HAPPY;
    else
        r->end = END_BY_ENVELOPE;
    const struct gwreport_options opt = {
        .url = cfg->gateway_url,
        .max_in_flight = PROGRESS_IN_FLIGHT,
        .max_queued = PROGRESS_QUEUED,
        .timeout_s = PROGRESS_TIMEOUT_S,
        .final_timeout_s = FINAL_TIMEOUT_S,
        .max_finals = r->n,
        .final_done = final_done,
        .ctx = sc,
        .stats = &sc->stats.gw,
    };
    sc->reports = r;
    r->gw = gwreport_new(sc->loop, &opt, err, errlen);
    if (!r->gw) {
        reports_free(sc);
        return -1;
    }
    sc->stats.gateway = true;
    return 0;
}

void reports_free(struct sidecar *sc)
{
    struct reports *r = sc->reports;
    if (!r)
        return;
    gwreport_free(r->gw);
    for (unsigned i = 0; i < r->n; i++)
        ev_timer_stop(sc->loop, &r->slots[i].retry);
    for (unsigned i = 0; i < r->nbackoff; i++)
        free(r->backoff[i].key);
    free(r->slots);
    free(r);
    sc->reports = NULL;
}
