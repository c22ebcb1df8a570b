/*
 * pgpool.h - a small pool of PostgreSQL connections on a libev loop: libpq's
 * asynchronous API only (never a blocking call once started), a FIFO queue
 * of parameterised statements handed to idle connections, reconnects with
 * backoff, schema migrations applied on the first connection under an
 * advisory lock, and one extra connection that LISTENs on a channel.
 *
 * The job store (store_pg.c) is the only user; the pool knows nothing of
 * jobs.  It opens pool_size connections plus the LISTEN one.  Statements are
 * named prepared statements sent in pipeline mode, so a pooler in between
 * must support both (PgBouncer in session mode, or >= 1.21 with
 * max_prepared_statements in transaction mode).
 *
 * Not quite non-blocking, as libpq 15 allows: PQconnectStart resolves a host
 * name with a blocking getaddrinfo (use an address, hostaddr=, or a local
 * resolver cache where that matters), and pgpool_free's PQfinish writes a
 * Terminate message on each socket.
 */
#ifndef ASYA_GW_PGPOOL_H
#define ASYA_GW_PGPOOL_H

/* Debian and Ubuntu install libpq's headers under postgresql/. */
#include <postgresql/libpq-fe.h>

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum pgpool_rc {
    PGPOOL_OK = 0,
    PGPOOL_UNAVAILABLE, /* no connection, the connection died, or the queue is full */
    PGPOOL_ERROR,       /* the server refused the statement (err says why) */
    PGPOOL_CANCELLED,   /* pgpool_free ran first: release arg, touch nothing else */
};

/*
 * The end of one statement.  res (borrowed for the call) is its result when
 * rc is PGPOOL_OK, else NULL; err is a one-line reason when rc is
 * UNAVAILABLE or ERROR, else NULL.
 */
typedef void (*pgpool_cb)(void *arg, enum pgpool_rc rc, const PGresult *res, const char *err);

/*
 * A notification on the listened channel: payload is its text (borrowed).
 * payload NULL means the LISTEN connection (re)started listening, so
 * notifications may have been missed meanwhile.
 */
typedef void (*pgpool_notify_cb)(void *ctx, const char *payload);

struct pgpool_statement {
    const char *sql; /* borrowed (a literal) */
    /* Seconds the statement may wait for its answer once it is at the head of
     * its connection, before the connection is declared dead (a server alive
     * at the TCP level but stuck).  0: none, for long maintenance statements;
     * nothing is pipelined behind those. */
    double timeout;
};

struct pgpool_config {
    const char *conninfo;                      /* libpq URI or key=value string; copied */
    const struct pgpool_statement *statements; /* what pgpool_query runs, by index; borrowed */
    int nstatements;                           /* at most 64 */
    int pool_size;                             /* connections for statements, >= 1 */
    size_t queue_max;                          /* statements waiting for a connection */
    const char *listen;         /* channel to LISTEN on (an identifier); NULL = none */
    pgpool_notify_cb notify;    /* with listen */
    void *notify_ctx;           /* passed to notify */
    const char *migrations_dir; /* NNN_name.sql files; NULL = none */
    int64_t lock_key;           /* pg_advisory_lock key held while migrating */
};

struct pgpool;

/*
 * Read the migrations, then start connecting in the background.  Returns
 * NULL with a reason in err for a conninfo libpq cannot parse, an unreadable
 * migrations directory or file, or no memory.  Free with pgpool_free.
 */
__attribute__((warn_unused_result)) struct pgpool *
pgpool_new(struct ev_loop *loop, const struct pgpool_config *cfg, char *err, size_t errlen);

/*
 * Stop everything and free the pool.  Every statement not yet finished gets
 * its callback with PGPOOL_CANCELLED (which must not call the pool).  Safe
 * from inside any other pool callback: the memory goes when it returns.
 * NULL is fine.
 */
void pgpool_free(struct pgpool *p);

/*
 * Run statements[stmt] of the config (prepared once per connection, its
 * own transaction) with text parameters (params[i] NULL is SQL NULL; all
 * copied).  cb is called exactly once: before this returns with
 * PGPOOL_UNAVAILABLE when the pool is not ready or its queue is full, else
 * later from the loop.  A statement that was sent on a connection that then
 * died fails with PGPOOL_UNAVAILABLE (it may or may not have committed).
 */
void pgpool_query(struct pgpool *p, int stmt, int nparams, const char *const *params, pgpool_cb cb,
                  void *arg);

/*
 * pgpool_query with a key (non-zero): statements with the same key go to the
 * same connection while it is up and has room, so they are applied in the
 * order they were queued (a job's progress before its final).
 */
void pgpool_query_keyed(struct pgpool *p, unsigned key, int stmt, int nparams,
                        const char *const *params, pgpool_cb cb, void *arg);

/* True when statements can run now; else *reason (borrowed, valid until the
 * loop runs again) says why, as "database unavailable: ...". */
bool pgpool_ready(struct pgpool *p, const char **reason);

struct pgpool_stats {
    uint64_t reconnects; /* connection attempts after a failure or a loss */
    int up;              /* pool connections ready for statements */
    bool listening;      /* the LISTEN connection is listening */
    size_t queued;       /* statements waiting for a connection */
    size_t in_flight;    /* statements sent, not yet answered */
};

void pgpool_stats(const struct pgpool *p, struct pgpool_stats *out);

#endif /* ASYA_GW_PGPOOL_H */
