/*
 * msgpool.h - the sidecar's consumed messages: a fixed pool (no allocation
 * per message beyond growing a body buffer), the FIFO of messages waiting for
 * a runtime slot, and ack batching.
 *
 * Owns every struct message and its body buffer, the waiting FIFO and the
 * batch of delivery tags settled in this loop iteration.  Does no I/O: the
 * caller sends the acks that msgpool_flush_acks() computes.
 */
#ifndef ASYA_MSGPOOL_H
#define ASYA_MSGPOOL_H

#include "envelope.h"
#include "routing.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum msg_state {
    MSG_FREE = 0,
    MSG_WAITING,    /* consumed, waiting for a free runtime slot */
    MSG_RUNTIME,    /* a slot is running it (or it is being admitted) */
    MSG_CONFIRMING, /* published; waiting for confirms, then ack */
    MSG_PARKED,     /* its outputs wait for the broker to unblock publishing */
    MSG_REPORTING,  /* end actor: its final status is with the gateway (reports.h) */
};

struct message {
    enum msg_state state;
    unsigned index;
    struct message *next; /* waiting FIFO / free list */
    uint64_t tag;         /* delivery tag */
    long attempts;        /* earlier failed attempts (x-asya-attempts / x-delivery-count) */
    bool redelivered;     /* the broker's redelivered flag */
    bool counted;         /* the broker counts redeliveries itself (quorum queues) */
    char *body;           /* copy of the body; buffer kept for the next message */
    size_t len, cap;
    char *rt_body; /* the body as sent to the runtime when it differs (reports.h); kept */
    size_t rt_cap;
    struct envelope env;           /* parsed body; empty when it did not parse */
    size_t unconfirmed;            /* publishes not yet confirmed (or parked, not yet sent) */
    bool nacked;                   /* the broker refused one of them */
    bool returned;                 /* one of them was unroutable */
    bool error_routed;             /* already sent a routing_error to error-end */
    struct route_plan parked_plan; /* MSG_PARKED: what to publish (count 0: a requeue copy) */
    long parked_attempts;          /* MSG_PARKED requeue: attempts and reason */
    int parked_why;
    double started, published_at;
};

/* A FIFO of messages linked through their next field. */
struct msgfifo {
    struct message *head, *tail;
};

struct msgpool {
    struct message *msgs; /* n messages */
    unsigned n;
    unsigned active; /* not free */
    size_t bytes;    /* body bytes of the active messages (ASYA_MAX_INFLIGHT_BYTES) */
    struct message *free_list;
    struct msgfifo waiting; /* MSG_WAITING, in arrival order */
    struct msgfifo parked;  /* MSG_PARKED, in arrival order */
    uint64_t *acks;         /* tags settled this iteration (at most n) */
    size_t nacks;
};

/* The envelope id of m for log lines (borrowed), NULL until it parsed. */
static inline const char *message_id(const struct message *m)
{
    return m->env.id;
}

/* Allocate n messages.  Returns 0 or -ENOMEM (pool left empty). */
int msgpool_init(struct msgpool *p, unsigned n) __attribute__((warn_unused_result));

/* Free every message and buffer.  Fine on a zeroed pool. */
void msgpool_free(struct msgpool *p);

/*
 * Take a free message and copy body into it.  Returns NULL when the pool is
 * empty or the buffer cannot grow (*nomem tells which).  The message is
 * MSG_RUNTIME with the delivery fields zeroed; the caller fills them.
 */
struct message *msgpool_take(struct msgpool *p, const char *body, size_t len, bool *nomem);

/* Give message m back (its envelope and any parked plan freed, a large
 * buffer released).  m must not be in the waiting or parked FIFO. */
void msgpool_release(struct msgpool *p, struct message *m);

/* Release every message in use (a lost connection: the broker redelivers). */
void msgpool_release_all(struct msgpool *p);

void msgpool_wait_push(struct msgpool *p, struct message *m);
/* Put m back at the head of the waiting FIFO (its turn came, but it could
 * not start). */
void msgpool_wait_push_front(struct msgpool *p, struct message *m);
/* The first waiting message, or NULL. */
struct message *msgpool_wait_pop(struct msgpool *p);

/* Park m (MSG_PARKED, at the end of the parked FIFO) / take the first parked. */
void msgpool_park(struct msgpool *p, struct message *m);
void msgpool_park_front(struct msgpool *p, struct message *m);
struct message *msgpool_unpark(struct msgpool *p);

/* Settle m with an ack, sent by the next msgpool_flush_acks. */
void msgpool_ack(struct msgpool *p, const struct message *m);

/*
 * Compute the batched acks: *upto is the highest settled tag below the lowest
 * tag still in use (one multiple=true ack covers it, 0 when none); tags above
 * it were settled out of order and are passed to single(ctx, tag) one by one.
 * Returns the OR of single's results; the batch is empty afterwards.
 */
int msgpool_flush_acks(struct msgpool *p, uint64_t *upto, int (*single)(void *ctx, uint64_t tag),
                       void *ctx);

#endif /* ASYA_MSGPOOL_H */
