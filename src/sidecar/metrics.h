/*
 * metrics.h - the sidecar's counters, gauges and histograms, and their
 * Prometheus text exposition (format 0.0.4) under the reference's names:
 * <namespace>_messages_received_total{queue,transport} and friends.
 * Pure data: the sidecar updates it from its loop, the HTTP endpoint renders.
 */
#ifndef ASYA_METRICS_H
#define ASYA_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define METRICS_MAX_BUCKETS 20
/* At most this many destination_queue label values; later ones count as "other". */
#define METRICS_MAX_QUEUES  256
#define METRICS_OTHER_QUEUE "other"
/* runtime_worker_restarts_total{cause}: the causes asya-runtime's stats report. */
#define METRICS_RESTART_CAUSES 5
extern const char *const metrics_restart_causes[METRICS_RESTART_CAUSES];

struct histogram {
    const double *bounds; /* upper bounds, ascending (static) */
    size_t nbounds;
    uint64_t counts[METRICS_MAX_BUCKETS + 1]; /* per bucket, not cumulative; last is +Inf */
    uint64_t count;
    double sum;
};

/* messages_processed_total{status} */
enum processed_status { PROCESSED_SUCCESS, PROCESSED_EMPTY, PROCESSED_END_CONSUMED, PROCESSED_N };

/* messages_failed_total{reason} */
enum failed_reason {
    FAILED_PARSE,            /* body is not JSON */
    FAILED_VALIDATION,       /* JSON but not a valid envelope */
    FAILED_RUNTIME,          /* the runtime answered an error */
    FAILED_TIMEOUT,          /* no answer within ASYA_RUNTIME_TIMEOUT */
    FAILED_ROUTING,          /* a result could not be routed (unroutable publish) */
    FAILED_TOO_LARGE,        /* body over ASYA_MAX_MESSAGE_BYTES */
    FAILED_POISON,           /* gave up after ASYA_MAX_DELIVERY_ATTEMPTS */
    FAILED_RUNTIME_RESPONSE, /* the runtime's answer was invalid or too large */
    FAILED_N
};

/* messages_sent_total{message_type} */
enum sent_type { SENT_ROUTING, SENT_HAPPY_END, SENT_ERROR_END, SENT_N };

/* messages_requeued_total{reason} (not in the reference) */
enum requeue_reason {
    REQUEUE_RUNTIME_UNAVAILABLE, /* no socket / refused: requeued, consumption paused */
    REQUEUE_RUNTIME_BROKEN,      /* connection broke mid-request: republished, attempt counted */
    REQUEUE_BROKER_NACK,         /* the broker refused a publish */
    REQUEUE_SHUTDOWN,            /* not started, or grace period over, at shutdown */
    REQUEUE_REDELIVERED,         /* a broker redelivery, counted as a failed attempt */
    REQUEUE_GATEWAY,             /* end actor: the gateway did not take the final status */
    REQUEUE_INFLIGHT_BYTES,      /* rejected: holding it would pass ASYA_MAX_INFLIGHT_BYTES */
    REQUEUE_N
};

/* Reports to the gateway (ASYA_GATEWAY_URL; gwreport.c, reports.c). */
struct gateway_counters {
    uint64_t progress_sent;    /* progress answered 2xx */
    uint64_t progress_failed;  /* progress answered otherwise, or not at all (refused, timeout) */
    uint64_t progress_dropped; /* progress never sent: too many waiting, stale, gateway down */
    uint64_t final_sent;       /* final status answered 2xx */
    uint64_t final_retried;    /* final status not taken: the message went back to its queue */
    uint64_t final_unknown;    /* final status answered 404: acked, dropped */
    uint64_t final_rejected;   /* final status answered another 4xx: acked, dropped */
};

struct sent_counter {
    char *queue; /* owned */
    uint64_t counts[SENT_N];
};

struct metrics {
    char ns[64];
    char queue[256];
    uint64_t received;
    uint64_t processed[PROCESSED_N];
    uint64_t failed[FAILED_N];
    uint64_t requeued[REQUEUE_N];
    struct sent_counter *sent; /* owned array, one per destination queue */
    size_t nsent;
    /* runtime_errors_total{error_type}: the protocol's codes, then "other" */
    uint64_t runtime_errors[7];
    /* Mirrored from asya-runtime's control "stats" answer (see protocol.h):
     * worker deaths by cause and worker counts; have_runtime_stats is false
     * with a runtime that does not answer it (the reference one). */
    bool have_runtime_stats;
    uint64_t runtime_restarts[METRICS_RESTART_CAUSES]; /* metrics_restart_causes order */
    int64_t runtime_workers, runtime_busy;
    uint64_t broker_reconnects;
    uint64_t runtime_pauses;
    uint64_t runtime_backlog_waits; /* connect said EAGAIN: the call waited */
    bool gateway;                   /* ASYA_GATEWAY_URL set: gw is exported */
    struct gateway_counters gw;
    int64_t active;
    int64_t inflight_bytes; /* body bytes held (ASYA_MAX_INFLIGHT_BYTES) */
    bool ready;
    char not_ready[128];
    struct histogram processing;   /* consume -> ack */
    struct histogram runtime_exec; /* request sent -> answer read */
    struct histogram queue_send;   /* one publish call */
    struct histogram confirm;      /* publish -> broker confirm of the whole plan */
    struct histogram size_in;      /* envelope_size_bytes{direction="received"} */
    struct histogram size_out;     /* envelope_size_bytes{direction="sent"} */
};

/* Initialise m for queue with metric namespace ns (both copied). */
void metrics_init(struct metrics *m, const char *ns, const char *queue);

/* Free what metrics_init and metrics_sent allocated. */
void metrics_free(struct metrics *m);

void histogram_observe(struct histogram *h, double value);

/* Count one message sent to queue (copied on first use). */
void metrics_sent(struct metrics *m, const char *queue, enum sent_type type, size_t bytes);

/* Count a runtime error answer by its protocol code. */
void metrics_runtime_error(struct metrics *m, const char *code);

/* Render the exposition text.  Returns a malloc'd NUL-terminated string
 * (free with free()) or NULL on allocation failure; *len gets its length. */
char *metrics_render(const struct metrics *m, size_t *len);

#endif /* ASYA_METRICS_H */
