/*
 * sidecar.h - the actor loop: consume the actor's queue, relay each envelope
 * to the runtime over the unix socket, route what comes back, ack only after
 * the broker confirmed every message produced.
 */
#ifndef ASYA_SIDECAR_H
#define ASYA_SIDECAR_H

#include "config.h"

#include <stdbool.h>
#include <stdint.h>

struct sidecar;

/* Counters the metrics endpoint exposes (monotonic unless noted). */
struct sidecar_stats {
    uint64_t received;         /* deliveries consumed */
    uint64_t processed_ok;     /* results routed */
    uint64_t processed_empty;  /* [] / null answered */
    uint64_t end_consumed;     /* end-actor mode */
    uint64_t sent_routing, sent_happy_end, sent_error_end;
    uint64_t failed_parse, failed_runtime, failed_timeout, failed_routing, failed_too_large,
        failed_poison, failed_bad_response;
    uint64_t runtime_errors_processing, runtime_errors_oom, runtime_errors_cuda_oom,
        runtime_errors_other;
    uint64_t requeued_runtime_down; /* messages requeued because the runtime was unreachable */
    uint64_t retried_runtime_broken; /* republished after the runtime died mid-request */
    uint64_t broker_reconnects;
    uint64_t runtime_pauses; /* times consuming paused for an unreachable runtime */
    uint64_t nacked;         /* publishes the broker refused */
    unsigned active;         /* gauge: messages in flight */
    bool ready;              /* gauge: connected, consuming, runtime answering */
    char not_ready_reason[128];
};

/* Create the sidecar on its own libev loop.  cfg is borrowed and must
 * outlive it.  Returns NULL with a reason in err. */
struct sidecar *sidecar_new(const struct sidecar_config *cfg, char *err, size_t errlen);

/* Run until SIGTERM/SIGINT (then drain and return 0) or until the broker
 * stays unreachable for ASYA_QUEUE_RETRY_MAX_ATTEMPTS attempts (returns 1). */
int sidecar_run(struct sidecar *sc);

/* Free everything.  NULL is fine. */
void sidecar_free(struct sidecar *sc);

/* Read-only view of the counters (for the metrics endpoint). */
const struct sidecar_stats *sidecar_stats(const struct sidecar *sc);

#endif /* ASYA_SIDECAR_H */
