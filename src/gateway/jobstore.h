/*
 * jobstore.h - where jobs and their history live, behind one asynchronous
 * interface with two implementations: memory (ASYA_DATABASE_URL empty) and
 * PostgreSQL (libpq's asynchronous API on the gateway's libev loop).
 *
 * Every operation takes a callback and an opaque arg and calls it exactly
 * once, either before the operation returns (memory store, or an immediate
 * STORE_UNAVAILABLE) or later from the loop.  Inputs are copied; what a
 * callback receives is borrowed for the duration of the call.
 *
 * Every write that adds a history entry also tells the notify callback given
 * at creation, once the write committed, with the job id and the entry's id.
 * The PostgreSQL store delivers these through LISTEN/NOTIFY, so writes by
 * another gateway replica on the same database arrive too.
 */
#ifndef ASYA_GW_JOBSTORE_H
#define ASYA_GW_JOBSTORE_H

#include "job.h"
#include "textbuf.h"

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum store_rc {
    STORE_OK = 0,
    STORE_NOT_FOUND,   /* no job with that id */
    STORE_TERMINAL,    /* apply: the job is already Succeeded or Failed; nothing changed */
    STORE_UNAVAILABLE, /* the database is unreachable; nothing was written */
    STORE_ERROR,       /* anything else (the message says what) */
};

/* job: the stored job after the operation (OK, TERMINAL); NULL otherwise.
 * errmsg: a one-line reason when rc is UNAVAILABLE or ERROR, else NULL. */
typedef void (*store_job_cb)(void *arg, enum store_rc rc, const struct job *job,
                             const char *errmsg);
/* ups: the job's history entries with id > after_id, oldest first (OK). */
typedef void (*store_updates_cb)(void *arg, enum store_rc rc, const struct job_update *ups,
                                 size_t n, const char *errmsg);
/* A history entry was committed (by this or another replica).  job_id "" (update_id 0): the
 * PostgreSQL store (re)started listening, some may have been missed: anything may have changed. */
typedef void (*store_notify_cb)(void *ctx, const char *job_id, int64_t update_id);

struct jobstore;

struct jobstore_ops {
    /* Insert j and its first history entry ("Job created", Pending, 0 %).
     * With j->status Running, in the same write, also the entry a
     * CHANGE_RUNNING makes ("Sending message to first actor"): a tool call
     * stores its job as sent before publishing, saving a round trip, which
     * no client can tell (nobody knows the id before the call answers); a
     * failed publish then fails the job.  Any other status is stored as
     * Pending.  STORE_ERROR on a duplicate id. */
    void (*create)(struct jobstore *s, const struct job *j, store_job_cb cb, void *arg);
    /* Apply c to the job as job_apply() does, atomically, recording the entry. */
    void (*apply)(struct jobstore *s, const char *id, const struct job_change *c, store_job_cb cb,
                  void *arg);
    void (*get)(struct jobstore *s, const char *id, store_job_cb cb, void *arg);
    /* History entries with id > after_id; NOT_FOUND for an unknown job. */
    void (*updates)(struct jobstore *s, const char *id, int64_t after_id, store_updates_cb cb,
                    void *arg);
    /* Fail every non-terminal job whose deadline <= now_ms with error
     * "job timed out" (one entry each, notified).  cb gets the count in n
     * (ups NULL).  Safe with several replicas: each job fails once. */
    void (*expire)(struct jobstore *s, int64_t now_ms, store_updates_cb cb, void *arg);
    /* Delete history entries of terminal jobs whose updated_at is older than
     * older_than_ms (jobs stay).  cb gets the count in n. */
    void (*purge)(struct jobstore *s, int64_t older_than_ms, store_updates_cb cb, void *arg);
    /* True when operations can succeed now; else *reason (borrowed) says why. */
    bool (*ready)(struct jobstore *s, const char **reason);
    /* Latency and error counters for /metrics, appended as Prometheus text. */
    void (*metrics)(struct jobstore *s, struct textbuf *out);
    /* Cancel what is pending (callbacks are not called) and free. */
    void (*free)(struct jobstore *s);
};

struct jobstore {
    const struct jobstore_ops *ops;
    store_notify_cb notify;
    void *notify_ctx;
};

/*
 * The in-memory store: everything is lost on exit.  Returns NULL when out of
 * memory; free with ops->free.
 *
 * Memory bound: it keeps every job and its whole history until purge.  Unlike
 * PostgreSQL, purge here drops a terminal job whose updated_at is older than
 * older_than_ms together with its history (the count in n is the number of
 * history entries dropped), so a long-running gateway without a database
 * holds only live jobs and the last purge window of finished ones; a purged
 * job is then NOT_FOUND.
 *
 * Every callback runs before the operation returns; a write's notify calls
 * (one per history entry it added) follow after its callback returned.
 * Callbacks may call the store again but must not free it.
 */
struct jobstore *jobstore_mem_new(store_notify_cb notify, void *ctx);

/*
 * The PostgreSQL store.  url: libpq's URI or key=value form.  Connects in
 * the background (ready() is false until the schema under db/ is applied),
 * reconnects with backoff, and never blocks the loop.  Returns NULL with a
 * reason in err only for a URL it cannot parse.
 */
struct jobstore *jobstore_pg_new(struct ev_loop *loop, const char *url, const char *migrations_dir,
                                 int pool_size, store_notify_cb notify, void *ctx, char *err,
                                 size_t errlen);

/* The password of a database URL replaced by "***" (for logs), into buf. */
void jobstore_mask_url(const char *url, char *buf, size_t buflen);

#endif /* ASYA_GW_JOBSTORE_H */
