/*
 * gwreport.h - the sidecar's HTTP client for the gateway: POSTs on libcurl's
 * multi interface, driven by the sidecar's own libev loop (one ev_io per
 * socket curl uses, one ev_timer for its timeouts), so no request ever
 * blocks or slows the message path.
 *
 * Two kinds of request:
 * - progress reports, best effort: per job they leave in order (a job's next
 *   report starts only after its previous one finished), different jobs in
 *   parallel, at most max_in_flight at once and max_queued waiting; beyond
 *   that, when a report waited longer than the timeout, or for a while after
 *   the gateway could not be reached, reports are dropped and counted, never
 *   retried;
 * - final statuses: started at once (the caller bounds them: one per held
 *   message), their outcome handed to a callback.
 *
 * Owns the curl handles, the sockets' watchers, the timer and every queued
 * request.  Counts into a struct gateway_counters the caller owns.
 */
#ifndef ASYA_GWREPORT_H
#define ASYA_GWREPORT_H

#include "metrics.h"

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>

struct gwreport;

/* How a final status went. */
enum gwreport_result {
    GWREPORT_OK,          /* 2xx: the gateway took it */
    GWREPORT_UNKNOWN_JOB, /* 404: the gateway does not know the job */
    GWREPORT_REJECTED,    /* another 4xx (not 408 or 429): sending it again cannot help */
    GWREPORT_UNAVAILABLE, /* refused, timed out, 5xx, 408, 429, 3xx: try again later */
};

/* A final status with this token finished; why describes a failure
 * ("HTTP 503", curl's error text) or is "" (borrowed, only during the call).
 * Called from the loop, never from inside gwreport_final. */
typedef void (*gwreport_final_fn)(void *ctx, unsigned token, enum gwreport_result result,
                                  long http_status, const char *why);

struct gwreport_options {
    const char *url;        /* the gateway's base URL (copied; a trailing '/' is dropped) */
    unsigned max_in_flight; /* progress reports in flight */
    unsigned max_queued;    /* progress reports waiting */
    double timeout_s;       /* per progress report, connecting included */
    double final_timeout_s; /* per final status */
    unsigned max_finals;    /* tokens are 0 .. max_finals - 1 */
    gwreport_final_fn final_done;
    void *ctx;                      /* for final_done */
    struct gateway_counters *stats; /* borrowed; must outlive the client */
};

/* Returns NULL with a reason in err.  Free with gwreport_free. */
struct gwreport *gwreport_new(struct ev_loop *loop, const struct gwreport_options *opt, char *err,
                              size_t errlen);

/* Abandon every request (no callbacks) and free.  NULL is fine. */
void gwreport_free(struct gwreport *g);

/*
 * Report progress: POST body to <url>/jobs/<job_id>/progress.  Takes
 * ownership of body (malloc'd, len bytes); job_id is copied.  Never fails:
 * what cannot be sent is dropped and counted.
 */
void gwreport_progress(struct gwreport *g, const char *job_id, char *body, size_t len);

/* True when a progress report made now would be dropped whatever its job (the
 * gateway is down, or every place in flight and in the queue is taken), so
 * the caller can skip building it.  Counts the drop. */
bool gwreport_progress_drop(struct gwreport *g);

/*
 * POST body (ownership taken) to <url>/jobs/<job_id>/final; final_done(token)
 * is called when it finished.  Returns 0, or -ENOMEM / -EBUSY (a final with
 * this token is already in flight) with body freed and no callback to come.
 */
int gwreport_final(struct gwreport *g, const char *job_id, char *body, size_t len, unsigned token)
    __attribute__((warn_unused_result));

/* Abandon the final status with this token, if in flight (no callback). */
void gwreport_final_cancel(struct gwreport *g, unsigned token);

#endif /* ASYA_GWREPORT_H */
