/*
 * confirm.h - publisher-confirm bookkeeping (pure: no I/O, no broker).
 *
 * Owns the map from a publish's confirm sequence number to the message that
 * produced it, for publishes the broker has not confirmed yet.  Sequence
 * numbers are consecutive from the first tracked one (as on one AMQP
 * channel in confirm mode); the table is a ring that grows by doubling.
 *
 * confirm_settle() only records what the broker said and returns the
 * entries that became settled: the caller acts on them after the call (and
 * may track new publishes while doing so), so settling can never corrupt the
 * walk over the table.
 */
#ifndef ASYA_CONFIRM_H
#define ASYA_CONFIRM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct confirm_entry {
    unsigned msg; /* the caller's message index */
    bool done;    /* settled (acked or nacked) */
};

/* One entry that became settled. */
struct confirm_done {
    unsigned msg;
    bool ack; /* false: the broker refused (nack) that publish */
};

struct confirm_tracker {
    struct confirm_entry *ring; /* cap entries, cap a power of two */
    size_t cap;
    size_t head;      /* ring index of sequence number base */
    size_t count;     /* entries from base on, settled or not */
    size_t unsettled; /* of those, not yet settled */
    uint64_t base;
    struct confirm_done *done; /* scratch for confirm_settle's result */
    size_t done_cap;
};

/* Zero the tracker (no allocation). */
void confirm_init(struct confirm_tracker *t);

/* Free the tables; the tracker is empty afterwards.  Fine on a zeroed one. */
void confirm_free(struct confirm_tracker *t);

/* Forget every entry (the connection that gave the numbers is gone). */
void confirm_reset(struct confirm_tracker *t);

/*
 * Record that publish seq came from message msg.  seq must follow the last
 * tracked one (or be anything when the tracker is empty).  Returns 0,
 * -ENOMEM, or -EINVAL when seq is out of order (nothing recorded).
 */
int confirm_track(struct confirm_tracker *t, uint64_t seq, unsigned msg)
    __attribute__((warn_unused_result));

/*
 * The broker confirmed (ack) or refused (!ack) seq, or with multiple every
 * tracked sequence number up to and including seq.  Returns how many entries
 * became settled and points *out at them (each settled entry once, in
 * sequence order), or -ENOMEM (nothing changed).  *out stays valid until the
 * next confirm_settle or confirm_free, whatever confirm_track does meanwhile.
 * Unknown and already settled numbers are ignored.
 */
long confirm_settle(struct confirm_tracker *t, uint64_t seq, bool multiple, bool ack,
                    const struct confirm_done **out);

/* The message that published seq and is not yet settled, or -1. */
long confirm_lookup(const struct confirm_tracker *t, uint64_t seq);

/* Unsettled entries. */
size_t confirm_pending(const struct confirm_tracker *t);

#endif /* ASYA_CONFIRM_H */
