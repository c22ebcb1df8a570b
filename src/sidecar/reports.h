/*
 * reports.h - what the sidecar reports to the gateway (ASYA_GATEWAY_URL,
 * GATEWAY.md) and when: progress for every message that carries a job id,
 * and, in end-actor mode, the job's final status, at least once.
 *
 * A final status holds its message (MSG_REPORTING) until the gateway
 * answered.  2xx, 404 and other 4xx settle it (ack); no answer, a 5xx, 408
 * or 429 hands it back to its queue after a delay that grows per message
 * (0.5 s doubling to 30 s), as a copy that counts no delivery attempt.
 *
 * Owns the HTTP client (gwreport.h), one retry timer per message of the pool
 * and the bounded per-message failure counts.  Every function does nothing
 * when ASYA_GATEWAY_URL is unset.
 */
#ifndef ASYA_REPORTS_H
#define ASYA_REPORTS_H

#include "jobreport.h"
#include "sidecar_int.h"

/* Set up sc->reports when ASYA_GATEWAY_URL is set (after the message pool).
 * Returns 0, or -1 with a reason in err. */
int reports_init(struct sidecar *sc, char *err, size_t errlen);

/* Abandon every report (no message is touched) and free.  Fine when unset. */
void reports_free(struct sidecar *sc);

/* Report progress of m (a valid envelope) if it carries a job id; not in
 * end-actor mode.  duration_s < 0 leaves duration_ms out. */
void reports_progress(struct sidecar *sc, const struct message *m, enum jobreport_status status,
                      double duration_s);

/*
 * What to send the runtime for m: m's body, or, when m's progress goes to a
 * gateway, a copy asking for handler progress frames (PROTO_PROGRESS_KEY
 * inserted first; m->rt_body, a kept buffer).  Returns true in that case.
 */
bool reports_runtime_body(struct sidecar *sc, struct message *m, const char **body, size_t *len);

/* A progress frame of m's handler: fraction (0..1) and message ("" for
 * none) reported as "processing" with "progress" (GATEWAY.md). */
void reports_handler_progress(struct sidecar *sc, const struct message *m, double fraction,
                              const char *message);

/*
 * End actor: the runtime is done with m (a valid envelope).  Returns true
 * when m's final status went to the gateway, which settles or requeues m
 * later; false when there is nothing to report (no gateway, no job id): the
 * caller settles m as before.
 */
bool reports_final(struct sidecar *sc, struct message *m);

/* End actor: as reports_final for a body that is not a valid envelope (its
 * job id from the raw JSON, or a parsed payload.original_message); always a
 * failed status. */
bool reports_final_raw(struct sidecar *sc, struct message *m);

/* The broker connection is gone or the grace period is over: abandon every
 * final status in flight or waiting for its requeue (the messages are
 * released or rejected by the caller, so the broker redelivers them). */
void reports_abort_all(struct sidecar *sc);

/* SIGTERM: messages waiting to be requeued after a failed final go back now. */
void reports_shutdown(struct sidecar *sc);

#endif /* ASYA_REPORTS_H */
