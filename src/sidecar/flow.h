/*
 * flow.h - each consumed message's way in: delivery, admission
 * (admission.h), waiting for a runtime slot, the runtime call (rtclient.h)
 * and routing its answer (routing.h); what comes out goes to publish.h.
 *
 * Owns no state of its own: it works on struct sidecar (sidecar_int.h).
 * The loop (sidecar.c) passes the broker and runtime events below to
 * broker_new and rtclient_new.
 */
#ifndef ASYA_FLOW_H
#define ASYA_FLOW_H

#include "sidecar_int.h"

extern const struct rtclient_events flow_runtime_events;
extern const struct broker_events flow_broker_events;

/* Start waiting messages while runtime slots are free. */
void flow_run_waiting(struct sidecar *sc);
/* The backlog_retry timer: the runtime's accept backlog had no room. */
void flow_backlog_retry_cb(struct ev_loop *loop, ev_timer *w, int revents);
/* Hand every waiting message back to the queue (runtime down, shutdown). */
void flow_requeue_waiting(struct sidecar *sc, enum requeue_reason why);

#endif /* ASYA_FLOW_H */
