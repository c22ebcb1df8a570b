/*
 * sidecar_int.h - the sidecar's state, shared by sidecar.c (the loop: broker
 * connection, runtime availability, readiness, shutdown) and flow.c (each
 * message's way from delivery to ack).  Not for other modules.
 *
 * Two kinds of state, so a slow broker confirm never holds up the handler:
 * - a message is one consumed delivery, from consume to ack (msgpool);
 * - a slot is one runtime call in progress (rtclient).  A message holds a
 *   slot only while the runtime works on it; once its results are published
 *   it waits for the broker's confirms (confirm tracker) without a slot.
 */
#ifndef ASYA_SIDECAR_INT_H
#define ASYA_SIDECAR_INT_H

#include "broker.h"
#include "confirm.h"
#include "config.h"
#include "httpd.h"
#include "memreject.h"
#include "metrics.h"
#include "msgpool.h"
#include "routing.h"
#include "rtclient.h"
#include "rtstats.h"

#include <ev.h>
#include <stdbool.h>

struct reports;

struct sidecar {
    struct ev_loop *loop;
    const struct sidecar_config *cfg;
    struct broker *broker;
    struct routing_names names;
    struct rtclient *rt;
    struct rtstats *rtstats;
    struct msgpool pool;
    struct confirm_tracker confirms;

    ev_io broker_io;
    ev_prepare prepare; /* flushes acks, polls frames rabbitmq-c buffered during RPCs */
    ev_timer heartbeat;
    ev_timer reconnect;
    ev_timer lost; /* deferred handling of a lost broker connection */
    ev_timer runtime_retry;
    ev_timer runtime_probe;
    ev_timer backlog_retry; /* the runtime's accept backlog was full: try again soon */
    ev_timer unpark;        /* outputs parked on a backed-up socket: look again */
    ev_timer grace;
    ev_timer prefetch_adapt;
    ev_signal sigterm, sigint;

    double ewma_exec;       /* the handler's moving average time (automatic prefetch) */
    unsigned prefetch;      /* current */
    unsigned prefetch_want; /* the automatic (or configured) choice, before the bytes cap */
    double ewma_len;        /* moving average body size (prefetch within ASYA_MAX_INFLIGHT_BYTES) */
    bool bytes_capped;      /* a delivery was sent back for its bytes: prefetch held low */
    bool bytes_paused;      /* ... and consumption paused until half the bytes are free */
    struct memreject memrej;

    long reconnect_attempt;
    double runtime_backoff;
    bool runtime_down;
    bool backlog_full; /* connect said EAGAIN: waiting for backlog_retry */
    bool resuming;     /* publishing a parked message: it may go before the others */
    bool shutting_down;
    bool grace_over; /* grace period expired: only confirms of copies are awaited */
    bool broker_failed;
    char broker_error[256];
    char blocked_reason[64]; /* connection.blocked's reason, "" when not blocked */
    int exit_code;
    struct metrics stats;
    struct httpd *httpd;
    struct reports *reports; /* ASYA_GATEWAY_URL set: reports.h */
};

/* ---- sidecar.c ---- */

/* Note a failed broker operation; the connection is torn down from a
 * zero-delay timer so no caller's state is freed under its feet. */
void sidecar_broker_fail(struct sidecar *sc, const char *why);
/* The runtime could not be reached: pause consuming until it answers. */
void sidecar_runtime_down(struct sidecar *sc, const char *why);
void sidecar_update_ready(struct sidecar *sc);
/* Reconsider the prefetch now (the automatic choice or the configured one,
 * then what fits in ASYA_MAX_INFLIGHT_BYTES) and send basic.qos if it changed. */
void sidecar_prefetch_adapt(struct sidecar *sc);
/* A message was settled: exit when shutting down and nothing is left. */
void sidecar_check_drained(struct sidecar *sc);

/* A message was released: resume a consumer paused for ASYA_MAX_INFLIGHT_BYTES
 * once half the budget is free. */
void sidecar_bytes_freed(struct sidecar *sc);

#endif /* ASYA_SIDECAR_INT_H */
