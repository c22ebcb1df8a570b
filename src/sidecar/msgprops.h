/*
 * msgprops.h - what the sidecar reads from a consumed or returned message's
 * AMQP properties: earlier failed attempts (x-asya-attempts, or a quorum
 * queue's x-delivery-count), and the confirm sequence number we put in
 * message_id.  Pure functions.
 */
#ifndef ASYA_MSGPROPS_H
#define ASYA_MSGPROPS_H

#include <amqp.h>
#include <stdbool.h>
#include <stdint.h>

/* Earlier failed attempts: x-asya-attempts, else x-delivery-count, else 0. */
long msgprops_attempts(const amqp_message_t *msg);

/* True when the broker counts deliveries itself (x-delivery-count present). */
bool msgprops_counted(const amqp_message_t *msg);

/* The publish sequence number in message_id, or 0. */
uint64_t msgprops_seq(const amqp_message_t *msg);

#endif /* ASYA_MSGPROPS_H */
