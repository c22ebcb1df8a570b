/*
 * gwreport.c - POSTs to the gateway on curl's multi_socket API and libev.
 *
 * curl tells us which sockets to watch (sock_cb) and when to call it back
 * for its timeouts (timer_cb); both end in curl_multi_socket_action, after
 * which finished transfers are collected (collect_done).  Progress reports
 * are queued per job (struct gwjob): a job with a report in flight holds the
 * rest back, so one job's reports reach the gateway in order; jobs with a
 * report ready to go wait in one FIFO for a free in-flight place.
 */
#include "gwreport.h"

#include "jobreport.h"
#include "log.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JOB_BUCKETS     1024 /* jobs are at most max_in_flight + max_queued */
#define DOWN_HOLD_FIRST 1.0  /* after a failed connection, drop progress this long */
#define DOWN_HOLD_MAX   30.0
#define FREE_EASY_MAX   64 /* easy handles kept for reuse */

struct gwjob;

/* One socket curl asked us to watch. */
struct gwsock {
    ev_io io; /* first member: io_cb casts back */
    struct gwreport *g;
    curl_socket_t fd;
    struct gwsock *prev, *next;
};

struct gwreq {
    CURL *easy;        /* while in flight */
    struct gwjob *job; /* progress: its job; NULL for a final status */
    unsigned token;    /* final status */
    char *url;         /* owned */
    char *body;        /* owned */
    size_t len;
    double queued_at;
    struct gwreq *next; /* the job's queue */
    char errbuf[CURL_ERROR_SIZE];
};

struct gwjob {
    char *id; /* owned */
    uint32_t hash;
    struct gwreq *head, *tail; /* waiting, in order */
    struct gwreq *inflight;    /* its report in flight, or NULL */
    bool ready;                /* in the ready FIFO */
    struct gwjob *hnext;       /* hash chain */
    struct gwjob *rnext;       /* ready FIFO */
};

struct gwreport {
    struct ev_loop *loop;
    CURLM *multi;
    ev_timer timer; /* curl's timeout */
    struct curl_slist *headers;
    char *base;
    struct gwreport_options opt;
    unsigned in_flight, queued; /* progress reports */
    struct gwjob *buckets[JOB_BUCKETS];
    struct gwjob *ready_head, *ready_tail;
    double down_until, down_hold; /* progress dropped until down_until */
    struct gwreq **finals;        /* by token */
    CURL *free_easy[FREE_EASY_MAX];
    unsigned nfree;
    struct gwsock *socks; /* every watched socket */
};

/* ---- jobs --------------------------------------------------------------------------- */

static uint32_t hash_id(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static struct gwjob *job_find(struct gwreport *g, const char *id, uint32_t h)
{
    for (struct gwjob *j = g->buckets[h % JOB_BUCKETS]; j; j = j->hnext)
        if (j->hash == h && strcmp(j->id, id) == 0)
            return j;
    return NULL;
}

static struct gwjob *job_new(struct gwreport *g, const char *id, uint32_t h)
{
    struct gwjob *j = calloc(1, sizeof *j);
    if (!j || !(j->id = strdup(id))) {
        free(j);
        return NULL;
    }
    j->hash = h;
    j->hnext = g->buckets[h % JOB_BUCKETS];
    g->buckets[h % JOB_BUCKETS] = j;
    return j;
}

/* Forget j (nothing of it waits or is in flight, and it is not ready). */
static void job_free(struct gwreport *g, struct gwjob *j)
{
    struct gwjob **pp = &g->buckets[j->hash % JOB_BUCKETS];
    while (*pp != j)
        pp = &(*pp)->hnext;
    *pp = j->hnext;
    free(j->id);
    free(j);
}

static void ready_push(struct gwreport *g, struct gwjob *j)
{
    j->ready = true;
    j->rnext = NULL;
    if (g->ready_tail)
        g->ready_tail->rnext = j;
    else
        g->ready_head = j;
    g->ready_tail = j;
}

static struct gwjob *ready_pop(struct gwreport *g)
{
    struct gwjob *j = g->ready_head;
    if (j) {
        g->ready_head = j->rnext;
        if (!g->ready_head)
            g->ready_tail = NULL;
        j->ready = false;
        j->rnext = NULL;
    }
    return j;
}

/* ---- requests ---------------------------------------------------------------------- */

static void req_free(struct gwreq *r)
{
    if (!r)
        return;
    free(r->url);
    free(r->body);
    free(r);
}

/* A request for <base>/jobs/<job_id>/<what>, taking ownership of body
 * (freed on failure too). */
static struct gwreq *req_new(struct gwreport *g, const char *job_id, const char *what, char *body,
                             size_t len)
{
    struct gwreq *r = calloc(1, sizeof *r);
    size_t cap = strlen(g->base) + 3 * strlen(job_id) + strlen(what) + 16;
    char *esc = malloc(3 * strlen(job_id) + 1);
    if (r)
        r->url = malloc(cap);
    if (!r || !r->url || !esc || jobreport_escape(job_id, esc, 3 * strlen(job_id) + 1)) {
        free(esc);
        if (r)
            free(r->url);
        free(r);
        free(body);
        return NULL;
    }
    snprintf(r->url, cap, "%s/jobs/%s/%s", g->base, esc, what);
    free(esc);
    r->body = body;
    r->len = len;
    r->queued_at = ev_now(g->loop);
    return r;
}

static size_t discard_cb(char *data, size_t size, size_t n, void *ctx)
{
    (void)data;
    (void)ctx;
    return size * n; /* the answer's body is not needed, only its status */
}

static CURL *easy_get(struct gwreport *g)
{
    if (g->nfree == 0)
        return curl_easy_init();
    CURL *e = g->free_easy[--g->nfree];
    curl_easy_reset(e);
    return e;
}

static void easy_put(struct gwreport *g, CURL *e)
{
    if (g->nfree < FREE_EASY_MAX)
        g->free_easy[g->nfree++] = e;
    else
        curl_easy_cleanup(e);
}

/* Hand r to curl.  Returns 0, or -1 (r untouched, not in flight). */
static int req_start(struct gwreport *g, struct gwreq *r, double timeout_s)
{
    CURL *e = easy_get(g);
    if (!e)
        return -1;
    long ms = (long)(timeout_s * 1000.0);
    int bad = 0;
    bad |= curl_easy_setopt(e, CURLOPT_URL, r->url) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->len) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, g->headers) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, ms) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, ms) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_PRIVATE, r) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard_cb) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_USERAGENT, "asya-sidecar/" ASYA_BUILD_VERSION) != CURLE_OK;
    r->errbuf[0] = '\0';
    if (bad || curl_multi_add_handle(g->multi, e) != CURLM_OK) {
        easy_put(g, e);
        return -1;
    }
    r->easy = e;
    return 0;
}

/* ---- progress -------------------------------------------------------------------------- */

static bool gateway_down(const struct gwreport *g)
{
    return ev_now(g->loop) < g->down_until;
}

/* After j's report finished or was dropped: its next one becomes ready, or j
 * is forgotten. */
static void job_next(struct gwreport *g, struct gwjob *j)
{
    if (j->head) {
        if (!j->ready)
            ready_push(g, j);
    } else if (!j->ready) {
        job_free(g, j);
    }
}

/* Start ready reports while in-flight places are free. */
static void pump(struct gwreport *g)
{
    while (g->in_flight < g->opt.max_in_flight && g->ready_head) {
        struct gwjob *j = ready_pop(g);
        struct gwreq *r = j->head;
        j->head = r->next;
        if (!j->head)
            j->tail = NULL;
        r->next = NULL;
        g->queued--;
        /* Stale (it waited as long as a request may take) or the gateway is
         * down: progress is best effort, drop it. */
        if (gateway_down(g) || ev_now(g->loop) - r->queued_at > g->opt.timeout_s ||
            req_start(g, r, g->opt.timeout_s)) {
            g->opt.stats->progress_dropped++;
            req_free(r);
            job_next(g, j);
            continue;
        }
        j->inflight = r;
        g->in_flight++;
    }
}

bool gwreport_progress_drop(struct gwreport *g)
{
    if (gateway_down(g) ||
        (g->in_flight >= g->opt.max_in_flight && g->queued >= g->opt.max_queued)) {
        g->opt.stats->progress_dropped++;
        return true;
    }
    return false;
}

void gwreport_progress(struct gwreport *g, const char *job_id, char *body, size_t len)
{
    if (gateway_down(g)) {
        g->opt.stats->progress_dropped++;
        free(body);
        return;
    }
    uint32_t h = hash_id(job_id);
    struct gwjob *j = job_find(g, job_id, h);
    bool now = (!j || (!j->inflight && !j->head)) && g->in_flight < g->opt.max_in_flight;
    if (!now && g->queued >= g->opt.max_queued) {
        g->opt.stats->progress_dropped++;
        free(body);
        return;
    }
    bool created = !j;
    if (!j && !(j = job_new(g, job_id, h))) {
        g->opt.stats->progress_dropped++;
        free(body);
        return;
    }
    struct gwreq *r = req_new(g, job_id, "progress", body, len);
    if (!r) {
        g->opt.stats->progress_dropped++;
        if (created)
            job_free(g, j);
        return;
    }
    r->job = j;
    if (now) {
        if (req_start(g, r, g->opt.timeout_s)) {
            g->opt.stats->progress_dropped++;
            req_free(r);
            if (created)
                job_free(g, j);
            return;
        }
        j->inflight = r;
        g->in_flight++;
        return;
    }
    if (j->tail)
        j->tail->next = r;
    else
        j->head = r;
    j->tail = r;
    g->queued++;
    if (!j->inflight && !j->ready)
        ready_push(g, j);
}

static void progress_done(struct gwreport *g, struct gwreq *r, CURLcode res, long status)
{
    struct gwjob *j = r->job;
    j->inflight = NULL;
    g->in_flight--;
    if (res == CURLE_OK && status / 100 == 2) {
        g->opt.stats->progress_sent++;
        if (g->down_hold > DOWN_HOLD_FIRST || g->down_until > 0)
            log_info("the gateway answers progress reports again");
        g->down_hold = DOWN_HOLD_FIRST;
        g->down_until = 0;
    } else if (res != CURLE_OK) {
        /* Not reachable (refused, timed out, ...): stop trying for a while,
         * longer while it stays so, instead of queueing behind it. */
        g->opt.stats->progress_failed++;
        if (!gateway_down(g)) {
            log_warn("progress report to %s failed (%s): dropping progress reports for %.0f s",
                     r->url, r->errbuf[0] ? r->errbuf : curl_easy_strerror(res), g->down_hold);
            g->down_until = ev_now(g->loop) + g->down_hold;
            g->down_hold = g->down_hold * 2 > DOWN_HOLD_MAX ? DOWN_HOLD_MAX : g->down_hold * 2;
        }
    } else {
        g->opt.stats->progress_failed++;
        log_debug("progress report to %s answered HTTP %ld", r->url, status);
    }
    req_free(r);
    job_next(g, j);
}

/* ---- final statuses --------------------------------------------------------------------- */

int gwreport_final(struct gwreport *g, const char *job_id, char *body, size_t len, unsigned token)
{
    if (token >= g->opt.max_finals || g->finals[token]) {
        free(body);
        return -EBUSY;
    }
    struct gwreq *r = req_new(g, job_id, "final", body, len);
    if (!r)
        return -ENOMEM;
    r->token = token;
    if (req_start(g, r, g->opt.final_timeout_s)) {
        req_free(r);
        return -ENOMEM;
    }
    g->finals[token] = r;
    return 0;
}

void gwreport_final_cancel(struct gwreport *g, unsigned token)
{
    struct gwreq *r = token < g->opt.max_finals ? g->finals[token] : NULL;
    if (!r)
        return;
    g->finals[token] = NULL;
    curl_multi_remove_handle(g->multi, r->easy);
    easy_put(g, r->easy);
    req_free(r);
}

static void final_done(struct gwreport *g, struct gwreq *r, CURLcode res, long status)
{
    enum gwreport_result result;
    char why[CURL_ERROR_SIZE + 32];
    why[0] = '\0';
    if (res != CURLE_OK) {
        result = GWREPORT_UNAVAILABLE;
        snprintf(why, sizeof why, "%s", r->errbuf[0] ? r->errbuf : curl_easy_strerror(res));
    } else if (status / 100 == 2) {
        result = GWREPORT_OK;
    } else {
        snprintf(why, sizeof why, "HTTP %ld", status);
        if (status == 404)
            result = GWREPORT_UNKNOWN_JOB;
        else if (status / 100 == 4 && status != 408 && status != 429)
            result = GWREPORT_REJECTED;
        else
            result = GWREPORT_UNAVAILABLE;
    }
    g->finals[r->token] = NULL;
    unsigned token = r->token;
    req_free(r);
    g->opt.final_done(g->opt.ctx, token, result, status, why);
}

/* ---- curl on libev --------------------------------------------------------------------- */

/* Hand every finished transfer to its owner, then start what is ready. */
static void collect_done(struct gwreport *g)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(g->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *e = msg->easy_handle;
        CURLcode res = msg->data.result;
        struct gwreq *r = NULL;
        long status = 0;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&r);
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
        curl_multi_remove_handle(g->multi, e);
        easy_put(g, e);
        r->easy = NULL;
        if (r->job)
            progress_done(g, r, res, status);
        else
            final_done(g, r, res, status);
    }
    pump(g);
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct gwsock *s = (struct gwsock *)w;
    struct gwreport *g = s->g; /* s may be freed by the call below */
    int running;
    int action =
        ((revents & EV_READ) ? CURL_CSELECT_IN : 0) | ((revents & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    (void)loop;
    curl_multi_socket_action(g->multi, s->fd, action, &running);
    collect_done(g);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct gwreport *g = w->data;
    int running;
    (void)loop;
    (void)revents;
    curl_multi_socket_action(g->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    collect_done(g);
}

static void sock_forget(struct gwreport *g, struct gwsock *s)
{
    ev_io_stop(g->loop, &s->io);
    if (s->prev)
        s->prev->next = s->next;
    else
        g->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    free(s);
}

/* curl: watch fd for what (CURL_POLL_*), or stop watching it. */
static int sock_cb(CURL *e, curl_socket_t fd, int what, void *userp, void *sockp)
{
    struct gwreport *g = userp;
    struct gwsock *s = sockp;
    (void)e;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            curl_multi_assign(g->multi, fd, NULL);
            sock_forget(g, s);
        }
        return 0;
    }
    int events = ((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return -1;
        s->g = g;
        s->fd = fd;
        s->next = g->socks;
        if (g->socks)
            g->socks->prev = s;
        g->socks = s;
        ev_io_init(&s->io, io_cb, fd, events);
        curl_multi_assign(g->multi, fd, s);
    } else {
        ev_io_stop(g->loop, &s->io);
        ev_io_set(&s->io, fd, events);
    }
    ev_io_start(g->loop, &s->io);
    return 0;
}

/* curl: call me back in ms milliseconds (-1: never).  Never calls curl itself:
 * the ev_timer does, from the loop. */
static int curl_timer_cb(CURLM *multi, long ms, void *userp)
{
    struct gwreport *g = userp;
    (void)multi;
    ev_timer_stop(g->loop, &g->timer);
    if (ms >= 0) {
        ev_timer_set(&g->timer, (double)ms / 1000.0, 0.); /* not ms / 1000: sub-second matters */
        ev_timer_start(g->loop, &g->timer);
    }
    return 0;
}

/* ---- lifecycle ------------------------------------------------------------------------ */

struct gwreport *gwreport_new(struct ev_loop *loop, const struct gwreport_options *opt, char *err,
                              size_t errlen)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, errlen, "cannot initialise libcurl");
        return NULL;
    }
    struct gwreport *g = calloc(1, sizeof *g);
    if (!g) {
        curl_global_cleanup();
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    g->loop = loop;
    g->opt = *opt;
    g->down_hold = DOWN_HOLD_FIRST;
    ev_timer_init(&g->timer, timer_cb, 0., 0.);
    g->timer.data = g;
    g->base = strdup(opt->url);
    /* An array of pointers, one per token. */
    // NOLINTNEXTLINE(bugprone-sizeof-expression)
    g->finals = calloc(opt->max_finals ? opt->max_finals : 1, sizeof *g->finals);
    g->multi = curl_multi_init();
    /* "Expect:" off: curl would wait up to a second for 100-continue on larger bodies. */
    g->headers = curl_slist_append(NULL, "Content-Type: application/json");
    struct curl_slist *h = g->headers ? curl_slist_append(g->headers, "Expect:") : NULL;
    if (!g->base || !g->finals || !g->multi || !h) {
        snprintf(err, errlen, "out of memory");
        gwreport_free(g);
        return NULL;
    }
    g->headers = h;
    size_t n = strlen(g->base);
    while (n > 0 && g->base[n - 1] == '/')
        g->base[--n] = '\0';
    curl_multi_setopt(g->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(g->multi, CURLMOPT_SOCKETDATA, g);
    curl_multi_setopt(g->multi, CURLMOPT_TIMERFUNCTION, curl_timer_cb);
    curl_multi_setopt(g->multi, CURLMOPT_TIMERDATA, g);
    /* Keep a connection per request in flight open for the next ones. */
    curl_multi_setopt(g->multi, CURLMOPT_MAXCONNECTS, (long)(opt->max_in_flight + 8));
    return g;
}

void gwreport_free(struct gwreport *g)
{
    if (!g)
        return;
    for (unsigned t = 0; g->finals && t < g->opt.max_finals; t++)
        gwreport_final_cancel(g, t);
    for (unsigned b = 0; b < JOB_BUCKETS; b++) {
        struct gwjob *j = g->buckets[b];
        while (j) {
            struct gwjob *next = j->hnext;
            for (struct gwreq *r = j->head; r;) {
                struct gwreq *rn = r->next;
                req_free(r);
                r = rn;
            }
            if (j->inflight) {
                curl_multi_remove_handle(g->multi, j->inflight->easy);
                curl_easy_cleanup(j->inflight->easy);
                req_free(j->inflight);
            }
            free(j->id);
            free(j);
            j = next;
        }
    }
    if (g->multi)
        curl_multi_cleanup(g->multi);
    while (g->socks)
        sock_forget(g, g->socks);
    for (unsigned i = 0; i < g->nfree; i++)
        curl_easy_cleanup(g->free_easy[i]);
    ev_timer_stop(g->loop, &g->timer);
    curl_slist_free_all(g->headers);
    free(g->finals);
    free(g->base);
    free(g);
    curl_global_cleanup();
}
