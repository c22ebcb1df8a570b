/*
 * broker.h - the sidecar's AMQP 0-9-1 connection on rabbitmq-c: one channel
 * in confirm mode for consuming and publishing, a second one for declaring
 * destination queues (a failed declare closes only that channel).
 *
 * The connection's socket is non-blocking; the caller watches broker_fd() for
 * readability and calls broker_poll(), which never waits for new data.
 */
#ifndef ASYA_BROKER_H
#define ASYA_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct broker;

struct broker_options {
    const char *url;      /* amqp:// or amqps:// (borrowed) */
    const char *exchange; /* durable topic exchange */
    const char *queue;    /* queue consumed; declared durable and bound */
    unsigned prefetch;
    bool quorum; /* declare queues with x-queue-type=quorum */
    const char *cacert;
    bool tls_verify;
    int heartbeat_s; /* 0 disables heartbeats */
};

/* One consumed message (valid until the next broker_poll). */
struct broker_delivery {
    uint64_t tag;
    bool redelivered;
    const char *body; /* borrowed */
    size_t len;
    long attempts; /* earlier failed attempts: x-asya-attempts header, or
                      quorum x-delivery-count */
    bool counted;  /* the broker counts redeliveries (x-delivery-count present) */
};

/* Callbacks from broker_poll; ctx is broker_options' owner context. */
struct broker_events {
    void (*delivery)(void *ctx, const struct broker_delivery *d);
    /* The broker confirmed (ack=true) or refused (ack=false) publishes up to
     * and including seq (multiple) or exactly seq. */
    void (*confirm)(void *ctx, uint64_t seq, bool multiple, bool ack);
    /* A mandatory publish could not be routed; seq identifies it. */
    void (*returned)(void *ctx, uint64_t seq, const char *routing_key);
    /* connection.blocked (a memory or disk alarm: the broker reads nothing
     * more from this connection, so nothing may be published or waited
     * for) and connection.unblocked. */
    void (*blocked)(void *ctx, const char *reason);
    void (*unblocked)(void *ctx);
    /* A destination declare finished (declared or refused): ask again. */
    void (*declared)(void *ctx);
};

/* Allocate (no I/O).  Returns NULL on allocation failure.  Free with
 * broker_free. */
struct broker *broker_new(const struct broker_options *opt, const struct broker_events *ev,
                          void *ctx);

/* Close the connection if open and free.  NULL is fine. */
void broker_free(struct broker *b);

/* Connect, log in, open channels, declare the exchange and own queue, bind
 * it, select confirms and set prefetch.  Does not start consuming.  Returns
 * 0, or -1 with a reason in err (never containing the password). */
int broker_connect(struct broker *b, char *err, size_t errlen);

/* Drop the connection (no I/O if already broken).  Publish sequence numbers
 * restart at 1 on the next connect; unacked deliveries return to the queue. */
void broker_disconnect(struct broker *b);

bool broker_connected(const struct broker *b);

/* The socket to watch for readability, or -1. */
int broker_fd(const struct broker *b);

/* True between connection.blocked and connection.unblocked. */
bool broker_blocked(const struct broker *b);

/*
 * Can bytes more be written without waiting for the broker to read?
 * rabbitmq-c's writes block, and a broker under a memory or disk alarm stops
 * reading a publishing connection before its connection.blocked is read:
 * whatever does not fit in the socket's send buffer would then hold the
 * loop.  True while nothing of ours waits in the send queue (the broker keeps
 * up), or while what waits plus bytes fits in half the send buffer (the
 * other half is the kernel's own overhead).  A single write larger than
 * that goes once the queue is empty.
 */
bool broker_has_room(const struct broker *b, size_t bytes);

/* Start / stop consuming the own queue, without waiting for the broker's
 * reply (a refusal shows up in broker_poll).  Returns 0 or -1 (connection
 * lost). */
int broker_consume(struct broker *b, char *err, size_t errlen);
int broker_cancel(struct broker *b, char *err, size_t errlen);
bool broker_consuming(const struct broker *b);

/* Process everything readable now, calling the events.  Returns 0, or -1
 * when the connection is lost (err says why). */
int broker_poll(struct broker *b, char *err, size_t errlen);

/* Also true when frames are already buffered inside rabbitmq-c, so the
 * caller should poll again without waiting for the socket. */
bool broker_pending(const struct broker *b);

/* broker_destination's answers. */
#define BROKER_DEST_READY   0 /* declared and bound: publish */
#define BROKER_DEST_PENDING 1 /* a declare is in flight: wait for the declared event */
#define BROKER_DEST_REFUSED 2 /* the broker refused it (why says how) */

/*
 * Is queue ready to publish to?  When it is neither declared on this
 * connection nor recently refused, sends queue.declare and queue.bind
 * without waiting and answers BROKER_DEST_PENDING; the declared event comes
 * once the broker answered.  A queue that exists with other arguments (406
 * PRECONDITION_FAILED) is only bound.  Returns a BROKER_DEST_ value, or -1
 * when the connection is lost (why says why).
 */
int broker_destination(struct broker *b, const char *queue, char *why, size_t whylen)
    __attribute__((warn_unused_result));

/*
 * Publish body persistently to queue (ready by broker_destination)
 * with mandatory set.  attempts > 0 adds the x-asya-attempts header.  *seq gets
 * the confirm sequence number.  Returns 0 or -1 (connection lost).
 */
int broker_publish_queue(struct broker *b, const char *queue, const char *body, size_t len,
                         long attempts, uint64_t *seq, char *err, size_t errlen);

/* Change the prefetch on the open channel (and for later reconnects), by
 * replacing the consumer; nothing waits for the broker's replies.  Returns 0
 * or -1 (connection lost). */
int broker_set_prefetch(struct broker *b, unsigned prefetch, char *err, size_t errlen);

/* Settle a delivery.  Returns 0 or -1 (connection lost). */
int broker_ack(struct broker *b, uint64_t tag, bool multiple);
int broker_reject(struct broker *b, uint64_t tag, bool requeue);

/* Forget that queue was declared (after a return), so the next publish
 * declares it again. */
void broker_forget_queue(struct broker *b, const char *queue);

#endif /* ASYA_BROKER_H */
