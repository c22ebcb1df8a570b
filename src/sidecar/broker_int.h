/*
 * broker_int.h - the broker connection's state, shared by broker.c (the
 * connection, consuming, publishing, acks) and declare.c (destination
 * queues on the declare channel).  Not for other modules.
 */
#ifndef ASYA_BROKER_INT_H
#define ASYA_BROKER_INT_H

#include "broker.h"

#include <amqp.h>

#define CH_MAIN    1 /* consume + publish, confirm mode */
#define CH_DECLARE 2 /* declares; a failure closes only this channel */

#define BROKER_DECLARED_MAX 1024 /* destination queues remembered as declared */
#define BROKER_REFUSED_MAX  64   /* refused destinations remembered (for a while) */
#define BROKER_REFUSED_S    10   /* ...this many seconds, then asked again */

/* A destination declare in flight on the declare channel (replies come in order). */
enum pending_stage {
    PENDING_SENT,     /* queue.declare and queue.bind sent */
    PENDING_DECLARED, /* declare-ok came; waiting for bind-ok */
    PENDING_BIND,     /* the queue exists with other arguments: only bind (after a reopen) */
};

struct pending_declare {
    char *queue; /* owned */
    enum pending_stage stage;
};

struct refused_queue {
    char *queue, *why; /* owned */
    long long at;      /* CLOCK_MONOTONIC seconds */
};

struct broker {
    struct broker_options opt; /* strings borrowed */
    struct broker_events ev;
    void *ctx;
    char *url_copy; /* amqp_parse_url points into it */
    struct amqp_connection_info ci;
    amqp_connection_state_t conn;
    bool connected;
    bool broken; /* set on any I/O failure; the caller disconnects */
    bool consuming;
    bool blocked; /* connection.blocked: the broker reads nothing from us */
    uint64_t next_seq;
    char consumer_tag[64];
    unsigned consumer_seq; /* consumer tags are ours: asya-<pid>-<seq> */
    char **declared;       /* queues declared on this connection */
    size_t ndeclared;
    struct pending_declare *pending; /* FIFO of declares in flight */
    size_t npending, pending_cap;
    bool declare_reopening; /* channel.open sent on the declare channel, open-ok not yet in */
    struct refused_queue refused[BROKER_REFUSED_MAX];
    size_t nrefused_next; /* ring index */
    char *body;           /* where a body of several frames is put together */
    size_t body_cap;
};

/* Describe an RPC reply; returns 0 when it is normal.  Connection-level
 * failures mark the broker broken. */
int broker_reply_check(struct broker *b, amqp_rpc_reply_t r, const char *what, char *err,
                       size_t errlen);

/* Mark the connection lost with a reason (fmt has one %s for detail); -1. */
int broker_lost(struct broker *b, char *err, size_t errlen, const char *fmt, const char *detail);

/* Declare and bind queue unless cached: 0, 1 refused (err says why), -1 lost. */
int broker_ensure_queue(struct broker *b, const char *queue, char *err, size_t errlen);

/* Forget every cached, pending and refused declare (the connection is gone). */
void broker_forget_all(struct broker *b);

/* broker_poll's part for a method on the declare channel.  Returns 0, or -1
 * when the connection is lost (err says why). */
int broker_declare_frame(struct broker *b, const amqp_frame_t *frame, char *err, size_t errlen);

#endif /* ASYA_BROKER_INT_H */
