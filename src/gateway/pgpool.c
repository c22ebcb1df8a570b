/*
 * pgpool.c - PostgreSQL connections on the libev loop (see pgpool.h).
 *
 * Each connection is a small state machine: DOWN (backoff timer running),
 * CONNECTING (PQconnectPoll driven by an ev_io on PQsocket, with a timeout),
 * OPEN (an ev_io always reading, writing too while PQflush has bytes left).
 * An OPEN pool connection first applies the migrations if nobody has yet;
 * after that it takes statements from the pool's FIFO queue, several at a
 * time in libpq's pipeline mode (each followed by a sync, so each is its own
 * transaction and a failure touches no other).  The LISTEN connection takes
 * no statements; it only turns notifications into the notify callback.
 *
 * Re-entrancy: callbacks may queue statements or free the pool.  Every
 * entry from the loop holds p->depth, pgpool_free inside a callback only
 * marks the pool, and every loop that calls out re-checks the pool and the
 * connection's generation afterwards.
 */
#include "pgpool.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BACKOFF_MIN     0.5
#define BACKOFF_MAX     5.0
#define CONNECT_TIMEOUT 10.0
/* TCP keepalives and tcp_user_timeout find a dead peer (a partition, no
 * RST) in about 30 s, busy or idle, unless the URL says otherwise. */
#define KEEPALIVES_IDLE     "10"
#define KEEPALIVES_INTERVAL "5"
#define KEEPALIVES_COUNT    "3"
#define TCP_USER_TIMEOUT    "30000"
/* After a failed migration, wait this long before the next attempt. */
#define MIGRATE_RETRY 5.0
/* Statements in flight per connection in pipeline mode. */
#ifndef PIPELINE_DEPTH
#define PIPELINE_DEPTH 32
#endif
#define MAX_STATEMENTS 64 /* bits of conn.prepared */
#define REASON_LEN     400

struct op {
    struct op *next;
    const char *sql; /* borrowed: a migration or a literal (stmt < 0) */
    int stmt;        /* index into the pool's statements, or -1 */
    unsigned key;    /* 0, or the key that picks its connection (pgpool_query_keyed) */
    bool prepare;    /* PQsendPrepare of stmt (cb NULL) */
    bool simple;     /* PQsendQuery: no parameters, may hold several statements */
    bool internal;   /* the pool's own (migration, LISTEN, PREPARE) */
    double timeout;  /* seconds, once at the head of its connection; 0 = none */
    int nparams;
    char **params; /* one allocation: the pointers, then the strings */
    pgpool_cb cb;
    void *arg;
};

enum conn_state { C_DOWN, C_CONNECTING, C_OPEN };

struct conn {
    ev_io io;       /* first member: the callback casts back */
    ev_timer timer; /* DOWN: backoff; CONNECTING: timeout; OPEN: oldest statement */
    struct pgpool *pool;
    PGconn *pg;
    enum conn_state state;
    bool listener;
    bool setup;                /* OPEN, but migrating or sending LISTEN: not for statements */
    bool pipeline;             /* in libpq pipeline mode */
    bool tried;                /* connected or tried at least once (for the reconnect count) */
    uint64_t prepared;         /* bit i: statement i is prepared on this session */
    char prep_err[REASON_LEN]; /* why the latest PQsendPrepare failed */
    unsigned gen;              /* bumped when the connection is dropped */
    double backoff;
    int fd;
    int events;
    struct op *head; /* sent, oldest first */
    struct op *tail;
    size_t nflight;
    size_t nlong;  /* of them, statements without a timeout (nothing queues behind) */
    size_t syncs;  /* PGRES_PIPELINE_SYNC results still to read */
    PGresult *res; /* what head has produced so far */
};

enum mig_step { M_LOCK, M_TABLE, M_LIST, M_BEGIN, M_APPLY, M_RECORD, M_COMMIT, M_UNLOCK };

struct migration {
    char *version;
    char *sql;
    bool applied;
};

struct pgpool {
    struct ev_loop *loop;
    char *conninfo;
    const struct pgpool_statement *stmts; /* borrowed from the config */
    int nstmts;
    struct conn *conns; /* nconns pool connections, then the listener if any */
    struct conn *listener;
    struct op *qhead;
    struct op *qtail;
    size_t queued;
    size_t queue_max;
    char *listen_sql;
    pgpool_notify_cb notify;
    void *notify_ctx;
    struct migration *migs;
    size_t nmigs;
    struct conn *migrating;
    size_t mindex;
    uint64_t reconnects;
    ev_timer migrate_timer;
    int nconns;
    enum mig_step mstep;
    int depth;
    int rr; /* round-robin start for dispatch */
    bool migrated;
    bool migrate_wait;
    bool listening;
    bool freeing;
    char lock_key[24];
    char last_err[REASON_LEN]; /* libpq's latest connection failure */
    char mig_err[REASON_LEN];  /* the latest migration failure */
    char reason[REASON_LEN + 64];
};

static void conn_start(struct conn *c);
static void conn_lost(struct conn *c, const char *why);
static void conn_ready(struct conn *c);
static void dispatch(struct pgpool *p);
static void mig_start(struct conn *c);
static void conn_work(struct conn *c);

/* ---- small helpers ------------------------------------------------------ */

/* The first line of src, without trailing blanks, into dst. */
static void first_line(char *dst, size_t len, const char *src)
{
    if (!src || !*src)
        src = "unknown error";
    size_t n = strcspn(src, "\r\n");
    while (n > 0 && isspace((unsigned char)src[n - 1]))
        n--;
    if (n >= len)
        n = len - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static void enter(struct pgpool *p)
{
    p->depth++;
}

static void destroy(struct pgpool *p);

static void leave(struct pgpool *p)
{
    if (--p->depth == 0 && p->freeing)
        destroy(p);
}

/* The callback has run: may this loop go on with connection c? */
static bool still(const struct conn *c, unsigned gen)
{
    return !c->pool->freeing && c->gen == gen && c->state == C_OPEN;
}

static void ignore_notice(void *arg, const char *message)
{
    /* Notices ("relation already exists, skipping") are not errors, and
     * libpq's default prints them on stderr. */
    (void)arg;
    (void)message;
}

/* ---- operations --------------------------------------------------------- */

static struct op *op_new(const char *sql, bool simple, int nparams, const char *const *params,
                         pgpool_cb cb, void *arg)
{
    struct op *op = calloc(1, sizeof *op);
    if (!op)
        return NULL;
    op->sql = sql;
    op->stmt = -1;
    op->simple = simple;
    op->nparams = nparams;
    op->cb = cb;
    op->arg = arg;
    if (nparams > 0) {
        size_t total = (size_t)nparams * sizeof(char *);
        for (int i = 0; i < nparams; i++)
            total += params[i] ? strlen(params[i]) + 1 : 0;
        op->params = malloc(total);
        if (!op->params) {
            free(op);
            return NULL;
        }
        char *s = (char *)(op->params + nparams);
        for (int i = 0; i < nparams; i++) {
            if (!params[i]) {
                op->params[i] = NULL;
                continue;
            }
            size_t n = strlen(params[i]) + 1;
            memcpy(s, params[i], n);
            op->params[i] = s;
            s += n;
        }
    }
    return op;
}

static void op_free(struct op *op)
{
    if (!op)
        return;
    free(op->params);
    free(op);
}

/* ---- connection plumbing ------------------------------------------------ */

/*
 * Watch fd for events.  While connecting, libpq may close its socket and
 * open another (the next host or address) that gets the same number: the
 * watcher is set again every time then, or epoll would keep waiting on the
 * closed one.
 */
static void conn_watch(struct conn *c, int fd, int events)
{
    if (fd == c->fd && events == c->events && c->state != C_CONNECTING)
        return;
    ev_io_stop(c->pool->loop, &c->io);
    c->fd = fd;
    c->events = events;
    if (fd >= 0 && events) {
        ev_io_set(&c->io, fd, events);
        ev_io_start(c->pool->loop, &c->io);
    }
}

static void timer_again(struct conn *c, double after)
{
    ev_timer_stop(c->pool->loop, &c->timer);
    ev_timer_set(&c->timer, after, 0.);
    ev_timer_start(c->pool->loop, &c->timer);
}

static bool conn_usable(const struct conn *c)
{
    return c->state == C_OPEN && !c->listener && !c->setup && c->pool->migrated;
}

static bool any_usable(const struct pgpool *p)
{
    for (int i = 0; i < p->nconns; i++)
        if (conn_usable(&p->conns[i]))
            return true;
    return false;
}

/* Send what libpq holds; read interest always, write interest while bytes remain. */
static void conn_flush(struct conn *c)
{
    int r = PQflush(c->pg);
    if (r < 0) {
        conn_lost(c, PQerrorMessage(c->pg));
        return;
    }
    conn_watch(c, PQsocket(c->pg), EV_READ | (r > 0 ? EV_WRITE : 0));
}

static void conn_push(struct conn *c, struct op *op)
{
    op->next = NULL;
    if (c->tail)
        c->tail->next = op;
    else
        c->head = op;
    c->tail = op;
    if (c->nflight++ == 0 && op->timeout > 0)
        timer_again(c, op->timeout);
    if (!op->internal && op->timeout <= 0)
        c->nlong++;
}

/* One PQsend* (and the sync that makes it a transaction of its own); 0 on failure. */
static int send_one(struct conn *c, const struct op *op)
{
    const struct pgpool *p = c->pool;
    char name[24];
    int ok;

    if (op->stmt >= 0)
        snprintf(name, sizeof name, "asya_%d", op->stmt);
    if (op->prepare)
        ok = PQsendPrepare(c->pg, name, p->stmts[op->stmt].sql, 0, NULL);
    else if (op->stmt >= 0)
        ok = PQsendQueryPrepared(c->pg, name, op->nparams, (const char *const *)op->params, NULL,
                                 NULL, 0);
    else if (op->simple)
        ok = PQsendQuery(c->pg, op->sql);
    else
        ok = PQsendQueryParams(c->pg, op->sql, op->nparams, NULL, (const char *const *)op->params,
                               NULL, NULL, 0);
    if (ok && c->pipeline) {
        ok = PQpipelineSync(c->pg);
        if (ok)
            c->syncs++;
    }
    return ok;
}

/*
 * Hand op to libpq on c, preparing its statement first on a session that
 * has not seen it (pipeline mode: the Prepare goes ahead in the same
 * flight, so the server skips parsing and, after a few runs, planning).  On
 * failure the connection is dropped, which fails op with the rest.
 */
static void conn_send(struct conn *c, struct op *op)
{
    if (op->stmt >= 0 && !(c->prepared & (UINT64_C(1) << op->stmt))) {
        struct op *prep = op_new(NULL, false, 0, NULL, NULL, NULL);
        if (!prep) {
            conn_push(c, op);
            conn_lost(c, "out of memory");
            return;
        }
        prep->stmt = op->stmt;
        prep->prepare = true;
        prep->internal = true;
        prep->timeout = op->timeout;
        c->prepared |= UINT64_C(1) << op->stmt;
        conn_push(c, prep);
        if (!send_one(c, prep)) {
            conn_push(c, op);
            conn_lost(c, PQerrorMessage(c->pg));
            return;
        }
    }
    conn_push(c, op);
    if (!send_one(c, op)) {
        conn_lost(c, PQerrorMessage(c->pg));
        return;
    }
    conn_flush(c);
}

/* Call op's callback for a failure that is not the server's answer. */
static void op_fail(struct op *op, enum pgpool_rc rc, const char *why)
{
    if (op->cb)
        op->cb(op->arg, rc, NULL, why);
    op_free(op);
}

static bool sqlstate_unavailable(const char *st)
{
    /* 08: connection exception; 57P: shutdown, crash, cannot connect now;
     * 53300: too many connections. */
    return st &&
           (strncmp(st, "08", 2) == 0 || strncmp(st, "57P", 3) == 0 || strcmp(st, "53300") == 0);
}

/* The head statement has all its results (c->res, maybe NULL). */
static void op_complete(struct conn *c)
{
    struct op *op = c->head;
    PGresult *res = c->res;
    c->res = NULL;
    c->head = op->next;
    if (!c->head)
        c->tail = NULL;
    c->nflight--;
    ev_timer_stop(c->pool->loop, &c->timer);
    if (c->head && c->head->timeout > 0)
        timer_again(c, c->head->timeout);
    if (!op->internal && op->timeout <= 0)
        c->nlong--;

    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    bool good = st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK || st == PGRES_EMPTY_QUERY;
    char why[REASON_LEN];
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (!good)
        first_line(why, sizeof why, msg ? msg : PQerrorMessage(c->pg));
    if (op->prepare) {
        /* Prepare again next time; meanwhile the statement behind it fails
         * with "does not exist", so it reports this reason instead. */
        if (!good) {
            c->prepared &= ~(UINT64_C(1) << op->stmt);
            snprintf(c->prep_err, sizeof c->prep_err, "%s", why);
        }
    } else if (good) {
        op->cb(op->arg, PGPOOL_OK, res, NULL);
    } else {
        if (op->stmt >= 0 && state && strcmp(state, "26000") == 0 && c->prep_err[0])
            snprintf(why, sizeof why, "%s", c->prep_err);
        if (PQstatus(c->pg) == CONNECTION_BAD || sqlstate_unavailable(state)) {
            char full[REASON_LEN + 32];
            snprintf(full, sizeof full, "database unavailable: %s", why);
            op->cb(op->arg, PGPOOL_UNAVAILABLE, NULL, full);
        } else {
            op->cb(op->arg, PGPOOL_ERROR, NULL, why);
        }
    }
    PQclear(res);
    op_free(op);
}

/* Keep the result that tells most: the first error, else the last one. */
static void keep_result(struct conn *c, PGresult *r)
{
    if (c->res && PQresultStatus(c->res) == PGRES_FATAL_ERROR) {
        PQclear(r);
        return;
    }
    PQclear(c->res);
    c->res = r;
}

static void drain_notifies(struct conn *c, unsigned gen)
{
    struct pgpool *p = c->pool;
    PGnotify *n;
    while (still(c, gen) && (n = PQnotifies(c->pg)) != NULL) {
        if (p->notify)
            p->notify(p->notify_ctx, n->extra);
        PQfreemem(n);
    }
}

static void conn_read(struct conn *c)
{
    unsigned gen = c->gen;
    if (!PQconsumeInput(c->pg)) {
        conn_lost(c, PQerrorMessage(c->pg));
        return;
    }
    drain_notifies(c, gen);
    while (still(c, gen) && (c->head || c->syncs) && !PQisBusy(c->pg)) {
        PGresult *r = PQgetResult(c->pg);
        if (r && PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            c->syncs--;
        } else if (r) {
            keep_result(c, r);
        } else if (c->head) {
            op_complete(c);
        } else {
            break; /* only syncs are due and libpq has none yet */
        }
    }
    if (!still(c, gen))
        return;
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        conn_lost(c, PQerrorMessage(c->pg));
        return;
    }
    if (c->pipeline || !c->head)
        dispatch(c->pool);
}

static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct conn *c = (struct conn *)w;
    struct pgpool *p = c->pool;
    (void)loop;

    enter(p);
    if (c->state == C_CONNECTING) {
        PostgresPollingStatusType st = PQconnectPoll(c->pg);
        switch (st) {
        case PGRES_POLLING_READING:
            conn_watch(c, PQsocket(c->pg), EV_READ);
            break;
        case PGRES_POLLING_WRITING:
            conn_watch(c, PQsocket(c->pg), EV_WRITE);
            break;
        case PGRES_POLLING_OK:
            conn_ready(c);
            break;
        default:
            conn_lost(c, PQerrorMessage(c->pg));
            break;
        }
    } else if (c->state == C_OPEN) {
        unsigned gen = c->gen;
        if (revents & EV_WRITE)
            conn_flush(c);
        if ((revents & EV_READ) && still(c, gen))
            conn_read(c);
    }
    leave(p);
}

static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct conn *c = (struct conn *)((char *)w - offsetof(struct conn, timer));
    struct pgpool *p = c->pool;
    (void)loop;
    (void)revents;

    enter(p);
    if (c->state == C_DOWN)
        conn_start(c);
    else if (c->state == C_CONNECTING)
        conn_lost(c, "timeout while connecting");
    else
        conn_lost(c, "no answer from the server in time");
    leave(p);
}

/* Fail every queued statement (no connection is left to run them). */
static void fail_queue(struct pgpool *p, const char *why)
{
    while (p->qhead && !p->freeing) {
        struct op *op = p->qhead;
        p->qhead = op->next;
        if (!p->qhead)
            p->qtail = NULL;
        p->queued--;
        op_fail(op, PGPOOL_UNAVAILABLE, why);
    }
}

static void conn_start(struct conn *c)
{
    struct pgpool *p = c->pool;
    /* Earlier keywords are defaults that the URL's own settings override. */
    const char *const kw[] = {
        "fallback_application_name", "client_encoding",  "keepalives_idle", "keepalives_interval",
        "keepalives_count",          "tcp_user_timeout", "dbname",          NULL};
    const char *const val[] = {
        "asya-gateway",   "UTF8",           KEEPALIVES_IDLE, KEEPALIVES_INTERVAL,
        KEEPALIVES_COUNT, TCP_USER_TIMEOUT, p->conninfo,     NULL};

    if (c->tried)
        p->reconnects++;
    c->tried = true;
    c->pg = PQconnectStartParams(kw, val, 1);
    if (!c->pg) {
        conn_lost(c, "out of memory");
        return;
    }
    PQsetNoticeProcessor(c->pg, ignore_notice, NULL);
    if (PQstatus(c->pg) == CONNECTION_BAD || PQsocket(c->pg) < 0) {
        conn_lost(c, PQerrorMessage(c->pg));
        return;
    }
    c->state = C_CONNECTING;
    /* Before the first PQconnectPoll, libpq says: behave as if it asked to write. */
    conn_watch(c, PQsocket(c->pg), EV_WRITE);
    timer_again(c, CONNECT_TIMEOUT);
}

/*
 * Drop the connection: fail what it had in flight, retry after the backoff,
 * and fail the queue when no connection is left.  why NULL keeps the last
 * connection error (a migration failure has its own reason).
 */
static void conn_lost(struct conn *c, const char *why)
{
    struct pgpool *p = c->pool;
    bool was_open = c->state == C_OPEN;
    char reason[REASON_LEN + 32];

    if (why)
        first_line(p->last_err, sizeof p->last_err, why);
    snprintf(reason, sizeof reason, "database unavailable: %s",
             why ? p->last_err : "connection closed");
    conn_watch(c, -1, 0);
    ev_timer_stop(p->loop, &c->timer);
    if (c->pg)
        PQfinish(c->pg);
    c->pg = NULL;
    c->state = C_DOWN;
    c->gen++;
    c->setup = false;
    c->pipeline = false;
    c->prepared = 0;
    c->nlong = 0;
    c->syncs = 0;
    PQclear(c->res);
    c->res = NULL;
    if (c->listener)
        p->listening = false;
    if (p->migrating == c)
        p->migrating = NULL;
    /* A connection that was up starts over quickly; one that keeps failing backs off. */
    if (was_open)
        c->backoff = BACKOFF_MIN;
    timer_again(c, c->backoff);
    c->backoff = c->backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : c->backoff * 2;

    while (c->head && !p->freeing) {
        struct op *op = c->head;
        c->head = op->next;
        if (!c->head)
            c->tail = NULL;
        c->nflight--;
        op_fail(op, PGPOOL_UNAVAILABLE, reason);
    }
    if (!p->freeing && !any_usable(p))
        fail_queue(p, reason);
}

static void listen_done(void *arg, enum pgpool_rc rc, const PGresult *res, const char *err)
{
    struct conn *c = arg;
    struct pgpool *p = c->pool;
    (void)res;

    if (rc == PGPOOL_CANCELLED || rc == PGPOOL_UNAVAILABLE)
        return; /* the connection is going or gone; it will retry */
    if (rc != PGPOOL_OK) {
        conn_lost(c, err);
        return;
    }
    c->setup = false;
    p->listening = true;
    /* Anything may have been written while nobody listened. */
    if (p->notify)
        p->notify(p->notify_ctx, NULL);
}

/* Internal statement on one connection, bypassing the queue. */
static void conn_internal(struct conn *c, const char *sql, bool simple, int nparams,
                          const char *const *params, pgpool_cb cb)
{
    struct op *op = op_new(sql, simple, nparams, params, cb, c);
    if (!op) {
        conn_lost(c, "out of memory");
        return;
    }
    op->internal = true;
    conn_send(c, op);
}

/* PQconnectPoll said OK. */
static void conn_ready(struct conn *c)
{
    struct pgpool *p = c->pool;

    ev_timer_stop(p->loop, &c->timer);
    if (PQsetnonblocking(c->pg, 1) != 0) {
        conn_lost(c, PQerrorMessage(c->pg));
        return;
    }
    c->state = C_OPEN;
    c->backoff = BACKOFF_MIN;
    conn_watch(c, PQsocket(c->pg), EV_READ);
    if (c->listener) {
        c->setup = true;
        conn_internal(c, p->listen_sql, true, 0, NULL, listen_done);
        return;
    }
    if (!p->migrated) {
        if (!p->migrating && !p->migrate_wait)
            mig_start(c);
        return; /* open but waiting for the schema */
    }
    conn_work(c);
}

/* An OPEN pool connection past the schema: ready for statements. */
static void conn_work(struct conn *c)
{
    /* Pipeline mode sends the next statements without waiting for each
     * answer; it has to be entered while the connection is idle. */
    if (!c->pipeline && !c->head) {
        if (PQenterPipelineMode(c->pg) != 1) {
            conn_lost(c, PQerrorMessage(c->pg));
            return;
        }
        c->pipeline = true;
    }
    dispatch(c->pool);
}

/* Give queued statements to the least loaded usable connections. */
static void dispatch(struct pgpool *p)
{
    while (p->qhead && !p->freeing) {
        struct conn *best = NULL;
        /* A keyed statement goes where the key's earlier ones went, so they run
         * in the order they came; only a full or lost connection moves it. */
        if (p->qhead->key) {
            struct conn *c = &p->conns[p->qhead->key % (unsigned)p->nconns];
            if (conn_usable(c) && c->pipeline && c->nflight < PIPELINE_DEPTH && !c->nlong)
                best = c;
        }
        bool keyed = best != NULL;
        for (int k = 0; k < p->nconns && !keyed; k++) {
            struct conn *c = &p->conns[(p->rr + k) % p->nconns];
            /* Nothing waits behind a long statement (a purge) on its connection. */
            if (!conn_usable(c) || !c->pipeline || c->nflight >= PIPELINE_DEPTH || c->nlong)
                continue;
            if (!best || c->nflight < best->nflight)
                best = c;
        }
        if (!best)
            return;
        p->rr = (p->rr + 1) % p->nconns;
        struct op *op = p->qhead;
        p->qhead = op->next;
        if (!p->qhead)
            p->qtail = NULL;
        p->queued--;
        conn_send(best, op);
    }
}

/* ---- migrations --------------------------------------------------------- */

static void mig_done(void *arg, enum pgpool_rc rc, const PGresult *res, const char *err);

static void mig_send(struct conn *c)
{
    struct pgpool *p = c->pool;
    const char *const key[] = {p->lock_key};

    switch (p->mstep) {
    case M_LOCK:
        /* Waits (on the server, not here) while another replica migrates. */
        conn_internal(c, "SELECT pg_advisory_lock($1::int8)", false, 1, key, mig_done);
        break;
    case M_TABLE:
        conn_internal(c,
                      "CREATE TABLE IF NOT EXISTS schema_migrations ("
                      "version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
                      false, 0, NULL, mig_done);
        break;
    case M_LIST:
        conn_internal(c, "SELECT version FROM schema_migrations", false, 0, NULL, mig_done);
        break;
    case M_BEGIN:
        conn_internal(c, "BEGIN", false, 0, NULL, mig_done);
        break;
    case M_APPLY:
        /* The simple protocol: a file holds several statements. */
        conn_internal(c, p->migs[p->mindex].sql, true, 0, NULL, mig_done);
        break;
    case M_RECORD: {
        const char *const ver[] = {p->migs[p->mindex].version};
        conn_internal(c, "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, now())",
                      false, 1, ver, mig_done);
        break;
    }
    case M_COMMIT:
        conn_internal(c, "COMMIT", false, 0, NULL, mig_done);
        break;
    case M_UNLOCK:
        conn_internal(c, "SELECT pg_advisory_unlock($1::int8)", false, 1, key, mig_done);
        break;
    }
}

static void mig_start(struct conn *c)
{
    struct pgpool *p = c->pool;
    p->migrating = c;
    c->setup = true;
    p->mstep = M_LOCK;
    mig_send(c);
}

/* The next migration not yet applied, or the unlock when none is left. */
static void mig_pending(struct pgpool *p)
{
    while (p->mindex < p->nmigs && p->migs[p->mindex].applied)
        p->mindex++;
    p->mstep = p->mindex < p->nmigs ? M_BEGIN : M_UNLOCK;
}

static void mig_finished(struct pgpool *p)
{
    p->migrated = true;
    p->migrating = NULL;
    p->mig_err[0] = '\0';
    for (int i = 0; i < p->nconns && !p->freeing; i++) {
        struct conn *c = &p->conns[i];
        c->setup = false;
        if (c->state == C_OPEN)
            conn_work(c);
    }
}

static void mig_done(void *arg, enum pgpool_rc rc, const PGresult *res, const char *err)
{
    struct conn *c = arg;
    struct pgpool *p = c->pool;

    if (rc == PGPOOL_CANCELLED || rc == PGPOOL_UNAVAILABLE)
        return; /* the connection is gone; the next one to open starts over */
    if (rc != PGPOOL_OK) {
        if (p->mstep >= M_BEGIN && p->mstep <= M_COMMIT)
            snprintf(p->mig_err, sizeof p->mig_err, "migration %s failed: %s",
                     p->migs[p->mindex].version, err);
        else
            snprintf(p->mig_err, sizeof p->mig_err, "schema migrations failed: %s", err);
        /* Closing the session rolls back and releases the lock; the timer
         * keeps a broken migration from being retried in a tight loop. */
        p->migrate_wait = true;
        ev_timer_stop(p->loop, &p->migrate_timer);
        ev_timer_set(&p->migrate_timer, MIGRATE_RETRY, 0.);
        ev_timer_start(p->loop, &p->migrate_timer);
        conn_lost(c, NULL);
        return;
    }
    switch (p->mstep) {
    case M_LOCK:
        p->mstep = M_TABLE;
        break;
    case M_TABLE:
        p->mstep = M_LIST;
        break;
    case M_LIST:
        for (int r = 0; r < PQntuples(res); r++)
            for (size_t i = 0; i < p->nmigs; i++)
                if (strcmp(PQgetvalue(res, r, 0), p->migs[i].version) == 0)
                    p->migs[i].applied = true;
        p->mindex = 0;
        mig_pending(p);
        break;
    case M_BEGIN:
        p->mstep = M_APPLY;
        break;
    case M_APPLY:
        p->mstep = M_RECORD;
        break;
    case M_RECORD:
        p->mstep = M_COMMIT;
        break;
    case M_COMMIT:
        p->migs[p->mindex].applied = true;
        mig_pending(p);
        break;
    case M_UNLOCK:
        mig_finished(p);
        return;
    }
    mig_send(c);
}

static void migrate_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct pgpool *p = (struct pgpool *)((char *)w - offsetof(struct pgpool, migrate_timer));
    (void)loop;
    (void)revents;

    enter(p);
    p->migrate_wait = false;
    for (int i = 0; i < p->nconns && !p->migrated && !p->migrating; i++)
        if (p->conns[i].state == C_OPEN)
            mig_start(&p->conns[i]);
    leave(p);
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "NNN_name.sql": digits, an underscore, anything, ".sql". */
static bool migration_name(const char *name)
{
    size_t n = strlen(name), d = strspn(name, "0123456789");
    return d > 0 && name[d] == '_' && n > d + 5 && strcmp(name + n - 4, ".sql") == 0;
}

static char *read_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        set_err(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0)
            break;
        if (cap - len - 1 == 0) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    bool bad = ferror(f) != 0;
    fclose(f);
    if (!buf || bad) {
        set_err(err, errlen, "cannot read %s: %s", path, buf ? "read error" : "out of memory");
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    return buf;
}

static int load_migrations(struct pgpool *p, const char *dir, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    if (!d) {
        set_err(err, errlen, "cannot read migrations directory %s: %s", dir, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    const struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (!migration_name(e->d_name))
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            char **nn = realloc(names, ncap * sizeof *nn);
            if (!nn) {
                rc = -1;
                break;
            }
            names = nn;
            cap = ncap;
        }
        names[n] = strdup(e->d_name);
        if (!names[n])
            rc = -1;
        else
            n++;
    }
    closedir(d);
    if (rc == 0 && n == 0) {
        set_err(err, errlen, "no NNN_name.sql migrations in %s", dir);
        rc = -1;
    } else if (rc != 0) {
        set_err(err, errlen, "out of memory");
    }
    if (rc == 0) {
        qsort(names, n, sizeof *names, name_cmp);
        p->migs = calloc(n, sizeof *p->migs);
        if (!p->migs) {
            set_err(err, errlen, "out of memory");
            rc = -1;
        }
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        size_t plen = strlen(dir) + strlen(names[i]) + 2;
        char *path = malloc(plen);
        if (!path) {
            set_err(err, errlen, "out of memory");
            rc = -1;
            break;
        }
        snprintf(path, plen, "%s/%s", dir, names[i]);
        p->migs[i].sql = read_file(path, err, errlen);
        free(path);
        if (!p->migs[i].sql) {
            rc = -1;
            break;
        }
        p->migs[i].version = names[i];
        names[i][strlen(names[i]) - 4] = '\0';
        names[i] = NULL; /* now owned by migs[i] */
        p->nmigs = i + 1;
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

/* ---- the pool ----------------------------------------------------------- */

static bool identifier(const char *s)
{
    if (!s || !*s || isdigit((unsigned char)*s))
        return false;
    for (; *s; s++)
        if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || *s == '_'))
            return false;
    return true;
}

static void conn_init(struct pgpool *p, struct conn *c, bool listener)
{
    c->pool = p;
    c->listener = listener;
    c->state = C_DOWN;
    c->fd = -1;
    c->backoff = BACKOFF_MIN;
    ev_io_init(&c->io, conn_io_cb, -1, 0);
    ev_timer_init(&c->timer, conn_timer_cb, 0., 0.);
}

struct pgpool *pgpool_new(struct ev_loop *loop, const struct pgpool_config *cfg, char *err,
                          size_t errlen)
{
    char *perr = NULL;
    if (!cfg->conninfo) {
        set_err(err, errlen, "no database URL");
        return NULL;
    }
    PQconninfoOption *opts = PQconninfoParse(cfg->conninfo, &perr);
    if (!opts) {
        char why[REASON_LEN];
        first_line(why, sizeof why, perr ? perr : "out of memory");
        set_err(err, errlen, "bad database URL: %s", why);
        PQfreemem(perr);
        return NULL;
    }
    PQconninfoFree(opts);
    if (cfg->nstatements < 0 || cfg->nstatements > MAX_STATEMENTS) {
        set_err(err, errlen, "at most %d statements", MAX_STATEMENTS);
        return NULL;
    }
    if (cfg->listen && !identifier(cfg->listen)) {
        set_err(err, errlen, "bad channel name %s", cfg->listen);
        return NULL;
    }

    struct pgpool *p = calloc(1, sizeof *p);
    if (!p)
        goto nomem;
    p->loop = loop;
    p->stmts = cfg->statements;
    p->nstmts = cfg->nstatements;
    p->nconns = cfg->pool_size > 0 ? cfg->pool_size : 1;
    p->queue_max = cfg->queue_max ? cfg->queue_max : 1;
    p->notify = cfg->notify;
    p->notify_ctx = cfg->notify_ctx;
    snprintf(p->lock_key, sizeof p->lock_key, "%lld", (long long)cfg->lock_key);
    ev_timer_init(&p->migrate_timer, migrate_timer_cb, 0., 0.);
    p->conninfo = strdup(cfg->conninfo);
    p->conns = calloc((size_t)p->nconns + 1, sizeof *p->conns);
    if (!p->conninfo || !p->conns)
        goto nomem;
    if (cfg->listen) {
        size_t n = strlen(cfg->listen) + sizeof "LISTEN ";
        p->listen_sql = malloc(n);
        if (!p->listen_sql)
            goto nomem;
        snprintf(p->listen_sql, n, "LISTEN %s", cfg->listen);
    }
    if (cfg->migrations_dir) {
        if (load_migrations(p, cfg->migrations_dir, err, errlen) != 0)
            goto fail;
    } else {
        p->migrated = true;
    }

    int total = p->nconns + (cfg->listen ? 1 : 0);
    for (int i = 0; i < total; i++) {
        struct conn *c = &p->conns[i];
        conn_init(p, c, i == p->nconns);
        /* Connect from the loop, not here: the caller gets the pool at once. */
        timer_again(c, 0.);
    }
    if (cfg->listen)
        p->listener = &p->conns[p->nconns];
    return p;

nomem:
    set_err(err, errlen, "out of memory");
fail:
    if (p)
        destroy(p); /* nothing was queued yet: no callbacks */
    return NULL;
}

static void cancel_list(struct op *op)
{
    while (op) {
        struct op *next = op->next;
        op_fail(op, PGPOOL_CANCELLED, NULL);
        op = next;
    }
}

static void destroy(struct pgpool *p)
{
    p->depth = 1; /* a CANCELLED callback that calls back in must not recurse here */
    ev_timer_stop(p->loop, &p->migrate_timer);
    int total = p->nconns + (p->listener ? 1 : 0);
    for (int i = 0; p->conns && i < total; i++) {
        struct conn *c = &p->conns[i];
        if (!c->pool)
            continue;
        ev_io_stop(p->loop, &c->io);
        ev_timer_stop(p->loop, &c->timer);
        struct op *ops = c->head;
        c->head = c->tail = NULL;
        cancel_list(ops);
        PQclear(c->res);
        if (c->pg)
            PQfinish(c->pg);
    }
    struct op *q = p->qhead;
    p->qhead = p->qtail = NULL;
    cancel_list(q);
    for (size_t i = 0; i < p->nmigs; i++) {
        free(p->migs[i].version);
        free(p->migs[i].sql);
    }
    free(p->migs);
    free(p->conns);
    free(p->listen_sql);
    free(p->conninfo);
    free(p);
}

void pgpool_free(struct pgpool *p)
{
    if (!p || p->freeing)
        return;
    p->freeing = true;
    if (p->depth == 0)
        destroy(p);
}

void pgpool_query(struct pgpool *p, int stmt, int nparams, const char *const *params, pgpool_cb cb,
                  void *arg)
{
    pgpool_query_keyed(p, 0, stmt, nparams, params, cb, arg);
}

void pgpool_query_keyed(struct pgpool *p, unsigned key, int stmt, int nparams,
                        const char *const *params, pgpool_cb cb, void *arg)
{
    const char *why;

    if (p->freeing) {
        cb(arg, PGPOOL_CANCELLED, NULL, NULL);
        return;
    }
    enter(p);
    if (!pgpool_ready(p, &why)) {
        cb(arg, PGPOOL_UNAVAILABLE, NULL, why);
    } else if (p->queued >= p->queue_max) {
        cb(arg, PGPOOL_UNAVAILABLE, NULL, "database busy");
    } else {
        struct op *op = NULL;
        if (stmt < 0 || stmt >= p->nstmts) {
            cb(arg, PGPOOL_ERROR, NULL, "no such statement");
        } else if (!(op = op_new(NULL, false, nparams, params, cb, arg))) {
            cb(arg, PGPOOL_ERROR, NULL, "out of memory");
        } else {
            op->stmt = stmt;
            op->key = key;
            op->timeout = p->stmts[stmt].timeout;
            if (p->qtail)
                p->qtail->next = op;
            else
                p->qhead = op;
            p->qtail = op;
            p->queued++;
            dispatch(p);
        }
    }
    leave(p);
}

bool pgpool_ready(struct pgpool *p, const char **reason)
{
    if (p->migrated && any_usable(p))
        return true;
    if (!p->migrated && p->mig_err[0])
        snprintf(p->reason, sizeof p->reason, "database unavailable: %s", p->mig_err);
    else if (!p->migrated && p->migrating)
        snprintf(p->reason, sizeof p->reason, "database unavailable: applying schema migrations");
    else if (p->last_err[0])
        snprintf(p->reason, sizeof p->reason, "database unavailable: %s", p->last_err);
    else
        snprintf(p->reason, sizeof p->reason, "database unavailable: connecting");
    if (reason)
        *reason = p->reason;
    return false;
}

void pgpool_stats(const struct pgpool *p, struct pgpool_stats *out)
{
    memset(out, 0, sizeof *out);
    out->reconnects = p->reconnects;
    out->listening = p->listening;
    out->queued = p->queued;
    for (int i = 0; i < p->nconns; i++) {
        out->up += conn_usable(&p->conns[i]);
        out->in_flight += p->conns[i].nflight;
    }
}
