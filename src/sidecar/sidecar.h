/*
 * sidecar.h - the actor loop: consume the actor's queue, relay each envelope
 * to the runtime over the unix socket, route what comes back, ack only after
 * the broker confirmed every message produced.
 */
#ifndef ASYA_SIDECAR_H
#define ASYA_SIDECAR_H

#include "config.h"
#include "metrics.h"

#include <stdbool.h>
#include <stdint.h>

struct sidecar;

/* Create the sidecar on its own libev loop.  cfg is borrowed and must
 * outlive it.  Returns NULL with a reason in err. */
struct sidecar *sidecar_new(const struct sidecar_config *cfg, char *err, size_t errlen);

/* Run until SIGTERM/SIGINT (then drain and return 0) or until the broker
 * stays unreachable for ASYA_QUEUE_RETRY_MAX_ATTEMPTS attempts (returns 1). */
int sidecar_run(struct sidecar *sc);

/* Free everything.  NULL is fine. */
void sidecar_free(struct sidecar *sc);

/* Read-only view of the counters, gauges and histograms. */
const struct metrics *sidecar_metrics(const struct sidecar *sc);

#endif /* ASYA_SIDECAR_H */
