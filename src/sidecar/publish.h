/*
 * publish.h - the output side of a message: publishing what it produced
 * (checked, declared, then sent with confirms), requeueing it as a copy,
 * settling it (ack, or reject) once every publish is confirmed, batching the
 * acks, and what the end of the SIGTERM grace period does to it.
 *
 * Owns no state of its own: it works on struct sidecar (sidecar_int.h),
 * mainly its confirm tracker and message pool.
 */
#ifndef ASYA_PUBLISH_H
#define ASYA_PUBLISH_H

#include "sidecar_int.h"

/*
 * Publish plan for message m (any runtime slot already released; plan is
 * freed) and wait for its confirms.  A plan the broker cannot take (a name it
 * refuses, a refused declare, a result over ASYA_MAX_MESSAGE_BYTES) sends the
 * message to error-end as routing_error instead; an error plan that cannot go
 * out either requeues the message.
 */
void publish_plan(struct sidecar *sc, struct message *m, struct route_plan *plan);

/* error-end for a failure the sidecar detected on a valid envelope. */
void publish_error(struct sidecar *sc, struct message *m, const char *code, const char *type,
                   const char *text);

/* error-end for a body that is no valid envelope; it is parsed for its ids
 * only when at most parse_max bytes (0: never). */
void publish_malformed(struct sidecar *sc, struct message *m, size_t parse_max, const char *code,
                       const char *type, const char *text);

/* Republish m to its own queue with attempts in x-asya-attempts; the
 * original is acked once the copy is confirmed. */
void publish_requeue(struct sidecar *sc, struct message *m, long attempts, enum requeue_reason why);

/* Settle m now (nothing of it is unconfirmed). */
void publish_settle(struct sidecar *sc, struct message *m);

/* Broker events: publisher confirms and returned (unroutable) publishes. */
void publish_on_confirm(void *ctx, uint64_t seq, bool multiple, bool ack);
void publish_on_returned(void *ctx, uint64_t seq, const char *routing_key);

/* Broker events: connection.blocked parks every output (MSG_PARKED) until
 * connection.unblocked sends them in order; so does a send queue that backs
 * up (broker_has_room), until it drains. */
void publish_on_blocked(void *ctx, const char *reason);
void publish_on_unblocked(void *ctx);
/* Broker event: a destination declare finished; parked messages go on. */
void publish_on_declared(void *ctx);
/* The unpark timer: parked because the socket backed up; resume once it drained. */
void publish_unpark_cb(struct ev_loop *loop, ev_timer *w, int revents);

/* Send the batched acks (end of a loop iteration). */
void publish_flush_acks(struct sidecar *sc);

/* Grace period over: reject what has not produced anything yet, keep
 * waiting for the confirms of what has.  Returns true when nothing is left. */
bool publish_grace_over(struct sidecar *sc);

#endif /* ASYA_PUBLISH_H */
