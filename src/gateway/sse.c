/*
 * sse.c - SSE streams of job updates.  A subscriber first gets the job's
 * status, then every stored update after its Last-Event-ID (so a late
 * subscriber misses nothing), then each new one as the store notifies it
 * (from this replica or, with PostgreSQL, another).  One store query per
 * subscriber at a time; notifications that arrive meanwhile coalesce into
 * one more query.  The stream ends after a Succeeded or Failed update.
 */
#include "sse.h"

#include "gateway_int.h"

#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#define HUB_BUCKETS 1024

/* glibc's sys/queue.h lacks the BSD _SAFE variant: the body may unlink var. */
#ifndef TAILQ_FOREACH_SAFE
#define TAILQ_FOREACH_SAFE(var, head, field, tvar)                                                 \
    for ((var) = TAILQ_FIRST(head); (var) && ((tvar) = TAILQ_NEXT(var, field), 1); (var) = (tvar))
#endif

/* ---- the hub ---------------------------------------------------------------- */

struct sub {
    TAILQ_ENTRY(sub) link; /* in its bucket */
    struct sse_hub *hub;
    struct gwreq *req; /* held while the sub lives */
    char job_id[JOB_ID_LEN + 1];
    int64_t last_id;
    bool querying; /* a store query is out */
    bool again;    /* notified while querying: query once more */
    bool closed;   /* the client went away, or the stream ended */
    bool linked;
};

TAILQ_HEAD(sublist, sub);

struct sse_hub {
    struct gateway *g;
    struct sublist buckets[HUB_BUCKETS];
    unsigned count;
    ev_timer keepalive;
};

static unsigned bucket_of(const char *id)
{
    unsigned h = 2166136261u;
    for (; *id; id++)
        h = (h ^ (unsigned char)*id) * 16777619u;
    return h % HUB_BUCKETS;
}

static void unlink_sub(struct sub *s)
{
    if (!s->linked)
        return;
    TAILQ_REMOVE(&s->hub->buckets[bucket_of(s->job_id)], s, link);
    s->linked = false;
    s->hub->count--;
}

static void free_sub(struct sub *s)
{
    unlink_sub(s);
    gwreq_release(s->req);
    free(s);
}

static void end_stream(struct sub *s)
{
    if (s->closed)
        return;
    s->closed = true;
    unlink_sub(s);
    gwreq_stream_end(s->req);
}

static void send_text(struct sub *s, struct textbuf *b)
{
    if (textbuf_failed(b)) {
        end_stream(s);
        return;
    }
    gwreq_stream_write(s->req, b->data, b->len);
    /* A reader this far behind is cut off; it can resume with Last-Event-ID. */
    if (gwreq_stream_backlog(s->req) > s->hub->g->cfg->sse_max_backlog) {
        s->hub->g->metrics.sse_slow_closed++;
        log_warn_id(s->job_id, "SSE reader too slow (over %zu bytes behind): stream closed",
                    s->hub->g->cfg->sse_max_backlog);
        end_stream(s);
    }
}

static void query(struct sub *s);

static void on_updates(void *arg, enum store_rc rc, const struct job_update *ups, size_t n,
                       const char *errmsg)
{
    struct sub *s = arg;
    s->querying = false;
    if (s->closed) {
        free_sub(s);
        return;
    }
    if (rc != STORE_OK) {
        /* The stream stays open: the next notification (or keepalive after a
         * database reconnect) queries again. */
        log_debug("SSE %s: updates query failed: %s", s->job_id, api_store_reason(rc, errmsg));
        if (rc == STORE_NOT_FOUND)
            end_stream(s);
        return;
    }
    struct textbuf b = TEXTBUF_INIT;
    bool terminal = false;
    for (size_t i = 0; i < n && !terminal; i++) {
        if (ups[i].id <= s->last_id)
            continue;
        json_t *j = job_update_to_json(&ups[i]);
        char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        if (!text) {
            b.failed = true;
            break;
        }
        sse_frame(&b, ups[i].id, "update", text);
        free(text);
        s->last_id = ups[i].id;
        s->hub->g->metrics.sse_events++;
        terminal = job_status_terminal(ups[i].status);
    }
    if (b.len > 0 || textbuf_failed(&b))
        send_text(s, &b);
    textbuf_free(&b);
    if (terminal) {
        end_stream(s);
        return;
    }
    if (s->again && !s->closed) {
        s->again = false;
        query(s);
    }
}

static void query(struct sub *s)
{
    if (s->closed)
        return;
    if (s->querying) {
        s->again = true;
        return;
    }
    s->querying = true;
    struct jobstore *st = s->hub->g->store;
    st->ops->updates(st, s->job_id, s->last_id, on_updates, s);
}

static void on_client_gone(void *arg, struct gwreq *req)
{
    struct sub *s = arg;
    (void)req;
    s->closed = true;
    unlink_sub(s);
    if (!s->querying)
        free_sub(s);
}

struct subscribe {
    struct sse_hub *hub;
    struct gwreq *req;
    char job_id[JOB_ID_LEN + 1];
    int64_t last_id;
};

static void on_job(void *arg, enum store_rc rc, const struct job *job, const char *errmsg)
{
    struct subscribe *sc = arg;
    struct sse_hub *hub = sc->hub;
    struct gwreq *req = sc->req;
    if (!gwreq_release(req)) {
        free(sc);
        return;
    }
    if (rc == STORE_NOT_FOUND) {
        gwreq_reply_text(req, 404, "Job not found\n");
        free(sc);
        return;
    }
    if (rc != STORE_OK) {
        gwreq_reply_text(req, 503, "%s\n", api_store_reason(rc, errmsg));
        free(sc);
        return;
    }
    struct sub *s = calloc(1, sizeof *s);
    if (!s) {
        gwreq_reply_text(req, 500, "out of memory\n");
        free(sc);
        return;
    }
    s->hub = hub;
    s->req = req;
    gwreq_hold(req);
    memcpy(s->job_id, sc->job_id, sizeof s->job_id);
    s->last_id = sc->last_id;
    free(sc);
    gwreq_stream_begin(req, "text/event-stream", on_client_gone, s);
    TAILQ_INSERT_TAIL(&hub->buckets[bucket_of(s->job_id)], s, link);
    s->linked = true;
    hub->count++;
    struct textbuf b = TEXTBUF_INIT;
    sse_frame(&b, 0, "status", job_status_name(job->status));
    send_text(s, &b);
    textbuf_free(&b);
    query(s);
}

void sse_subscribe(struct sse_hub *hub, struct gwreq *req, const char *job_id)
{
    struct subscribe *sc = calloc(1, sizeof *sc);
    if (!sc) {
        gwreq_reply_text(req, 500, "out of memory\n");
        return;
    }
    sc->hub = hub;
    sc->req = req;
    snprintf(sc->job_id, sizeof sc->job_id, "%s", job_id);
    sc->last_id = sse_parse_last_id(gwreq_header(req, "Last-Event-ID"));
    gwreq_hold(req);
    struct jobstore *st = hub->g->store;
    st->ops->get(st, job_id, on_job, sc);
}

void sse_notify(struct sse_hub *hub, const char *job_id, int64_t update_id)
{
    if (!job_id || !*job_id) {
        /* The store may have missed notifications (a reconnect): ask for all. */
        for (unsigned b = 0; b < HUB_BUCKETS; b++) {
            struct sub *s, *next;
            TAILQ_FOREACH_SAFE(s, &hub->buckets[b], link, next)
                query(s);
        }
        return;
    }
    struct sub *s, *next;
    TAILQ_FOREACH_SAFE(s, &hub->buckets[bucket_of(job_id)], link, next) {
        if (strcmp(s->job_id, job_id) == 0 && update_id > s->last_id)
            query(s);
    }
}

static void keepalive_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct sse_hub *hub = (struct sse_hub *)((char *)w - offsetof(struct sse_hub, keepalive));
    struct textbuf ka = TEXTBUF_INIT;
    sse_comment(&ka, "keepalive"); /* framed once, written to every stream */
    if (textbuf_failed(&ka))
        return;
    for (unsigned b = 0; b < HUB_BUCKETS; b++) {
        struct sub *s, *next;
        TAILQ_FOREACH_SAFE(s, &hub->buckets[b], link, next) {
            gwreq_stream_write(s->req, ka.data, ka.len);
        }
    }
    textbuf_free(&ka);
}

struct sse_hub *sse_hub_new(struct gateway *g)
{
    struct sse_hub *hub = calloc(1, sizeof *hub);
    if (!hub)
        return NULL;
    hub->g = g;
    for (unsigned b = 0; b < HUB_BUCKETS; b++)
        TAILQ_INIT(&hub->buckets[b]);
    ev_timer_init(&hub->keepalive, keepalive_cb, g->cfg->sse_keepalive_s, g->cfg->sse_keepalive_s);
    ev_timer_start(g->loop, &hub->keepalive);
    return hub;
}

void sse_close_all(struct sse_hub *hub)
{
    for (unsigned b = 0; b < HUB_BUCKETS; b++) {
        struct sub *s;
        while ((s = TAILQ_FIRST(&hub->buckets[b])) != NULL)
            end_stream(s);
    }
}

unsigned sse_subscribers(const struct sse_hub *hub)
{
    return hub->count;
}

void sse_hub_free(struct sse_hub *hub)
{
    if (!hub)
        return;
    ev_timer_stop(hub->g->loop, &hub->keepalive);
    /* Subscribers still linked are freed with their requests by gwhttp_stop. */
    for (unsigned b = 0; b < HUB_BUCKETS; b++) {
        struct sub *s;
        while ((s = TAILQ_FIRST(&hub->buckets[b])) != NULL) {
            unlink_sub(s);
            s->closed = true;
        }
    }
    free(hub);
}
