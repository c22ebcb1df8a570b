#include "sidecar.h"

#include "broker.h"
#include "duration.h"
#include "envelope.h"
#include "frame.h"
#include "httpd.h"
#include "log.h"
#include "protocol.h"
#include "routing.h"
#include "usock.h"

#include <errno.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define HEARTBEAT_S         30
#define RUNTIME_RETRY_FIRST 0.1 /* seconds before probing an unreachable runtime again */
#define RUNTIME_RETRY_MAX   5.0
#define RECONNECT_MAX_DELAY 30.0
#define RUNTIME_PROBE_S     2.0

enum slot_state {
    SLOT_FREE = 0,
    SLOT_RUNTIME,    /* request being written or answer awaited */
    SLOT_CONFIRMING, /* results published, waiting for broker confirms */
};

struct slot {
    ev_io io;         /* first member: callbacks cast back; watches the runtime socket */
    ev_timer timeout; /* ASYA_RUNTIME_TIMEOUT */
    struct sidecar *sc;
    unsigned index;
    enum slot_state state;
    int fd;           /* runtime connection, kept open between messages; -1 when none */
    bool fd_reused;   /* the request went on a connection that served an earlier one */
    bool retried;     /* already resent once on a fresh connection */
    uint64_t tag;     /* delivery tag of the consumed message */
    long attempts;    /* earlier failed attempts (x-asya-attempts / x-delivery-count) */
    char *body;       /* copy of the consumed body; buffer kept between messages */
    size_t len, cap;
    struct envelope env; /* parsed body; empty when it did not parse */
    unsigned char hdr[FRAME_HEADER_LEN];
    size_t sent;      /* bytes of header + body written */
    struct frame_reader in;
    size_t answer_bytes; /* bytes of the answer received so far */
    size_t unconfirmed;  /* publishes not yet confirmed */
    bool nacked;         /* the broker refused one of them */
    bool returned;       /* one of them was unroutable */
    bool error_routed;   /* already sent a routing_error to error-end */
    ev_tstamp started;      /* consumed */
    ev_tstamp request_at;   /* request sent to the runtime */
    ev_tstamp published_at; /* results published */
};

struct delivery_copy {
    uint64_t tag;
    long attempts;
    char *body;
    size_t len;
};

struct confirm_entry {
    unsigned slot;
    bool done;
};

struct sidecar {
    struct ev_loop *loop;
    const struct sidecar_config *cfg;
    struct broker *broker;
    struct routing_names names;
    struct slot *slots;
    unsigned nslots;
    unsigned *free_slots; /* stack of free slot indices */
    unsigned nfree;

    /* Deliveries waiting for a slot (only when prefetch > concurrency). */
    struct delivery_copy *waiting;
    size_t nwaiting, waiting_cap;

    /* Publisher confirms: entry i is for sequence number confirm_base + i. */
    struct confirm_entry *confirms;
    size_t nconfirms, confirm_head, confirms_cap;
    uint64_t confirm_base;

    ev_io broker_io;
    ev_prepare broker_prepare; /* polls frames rabbitmq-c buffered during RPCs */
    ev_timer heartbeat;
    ev_timer reconnect;
    ev_timer lost;        /* deferred handling of a lost broker connection */
    ev_timer runtime_retry;
    ev_timer grace;
    ev_signal sigterm, sigint;

    long reconnect_attempt;
    double runtime_backoff;
    bool runtime_down;
    bool shutting_down;
    bool broker_failed;
    char broker_error[256];
    int exit_code;
    struct metrics stats;
    struct httpd *httpd;
    ev_timer runtime_probe;
};

static void slot_io_cb(struct ev_loop *loop, ev_io *w, int revents);
static void slot_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void slot_begin(struct sidecar *sc, struct slot *s);
static void update_ready(struct sidecar *sc);
static void maybe_finish_shutdown(struct sidecar *sc);

static const char *slot_id(const struct slot *s)
{
    return s->env.id;
}

/* ---- broker failure -------------------------------------------------------- */

/* Note a failed broker operation; the connection is torn down from a
 * zero-delay timer so no caller's state is freed under its feet. */
static void broker_fail(struct sidecar *sc, const char *why)
{
    if (sc->broker_failed)
        return;
    sc->broker_failed = true;
    snprintf(sc->broker_error, sizeof sc->broker_error, "%s", why ? why : "connection lost");
    ev_timer_set(&sc->lost, 0., 0.);
    ev_timer_start(sc->loop, &sc->lost);
}

/* ---- slots ------------------------------------------------------------------ */

static void slot_close_runtime(struct slot *s)
{
    ev_io_stop(s->sc->loop, &s->io);
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    frame_reader_reset(&s->in);
}

/* Return the slot to the free list and start the next waiting delivery. */
static void slot_release(struct sidecar *sc, struct slot *s)
{
    ev_timer_stop(sc->loop, &s->timeout);
    envelope_free(&s->env);
    frame_reader_reset(&s->in);
    if (s->fd >= 0) {
        ev_io_stop(sc->loop, &s->io); /* keep the connection for the next message */
    }
    s->state = SLOT_FREE;
    s->unconfirmed = 0;
    s->nacked = s->returned = s->error_routed = false;
    sc->free_slots[sc->nfree++] = s->index;
    sc->stats.active--;

    if (sc->nwaiting > 0 && !sc->runtime_down && !sc->shutting_down) {
        struct delivery_copy d = sc->waiting[0];
        memmove(sc->waiting, sc->waiting + 1, (sc->nwaiting - 1) * sizeof *sc->waiting);
        sc->nwaiting--;
        struct slot *next = &sc->slots[sc->free_slots[--sc->nfree]];
        free(next->body);
        next->body = d.body;
        next->len = d.len;
        next->cap = d.len + 1;
        next->tag = d.tag;
        next->attempts = d.attempts;
        sc->stats.active++;
        slot_begin(sc, next);
    }
    maybe_finish_shutdown(sc);
}

/* Record a publish of slot s under confirm sequence seq. */
static int confirm_track(struct sidecar *sc, uint64_t seq, struct slot *s)
{
    if (sc->nconfirms == 0) {
        sc->confirm_base = seq;
        sc->confirm_head = 0;
    }
    if (seq != sc->confirm_base + sc->nconfirms)
        log_warn("publisher confirm sequence jumped to %llu", (unsigned long long)seq);
    if (sc->nconfirms == sc->confirms_cap) {
        /* Drop settled entries at the front before growing. */
        if (sc->confirm_head > 0) {
            memmove(sc->confirms, sc->confirms + sc->confirm_head,
                    (sc->nconfirms - sc->confirm_head) * sizeof *sc->confirms);
            sc->nconfirms -= sc->confirm_head;
            sc->confirm_base += sc->confirm_head;
            sc->confirm_head = 0;
        }
        if (sc->nconfirms == sc->confirms_cap) {
            size_t cap = sc->confirms_cap ? sc->confirms_cap * 2 : 256;
            struct confirm_entry *c = realloc(sc->confirms, cap * sizeof *c);
            if (!c)
                return -ENOMEM;
            sc->confirms = c;
            sc->confirms_cap = cap;
        }
    }
    sc->confirms[sc->nconfirms].slot = s->index;
    sc->confirms[sc->nconfirms].done = false;
    sc->nconfirms++;
    s->unconfirmed++;
    return 0;
}

/* Publish every item of plan for slot s.  Returns 0, or -1 when the broker
 * connection failed (already reported). */
static int publish_plan(struct sidecar *sc, struct slot *s, const struct route_plan *plan)
{
    char err[256];
    for (size_t i = 0; i < plan->count; i++) {
        const struct route_publish *p = &plan->items[i];
        size_t len;
        char *text = envelope_dump(p->body, &len);
        if (!text) {
            broker_fail(sc, "out of memory serialising a result");
            return -1;
        }
        uint64_t seq;
        ev_tstamp t0 = ev_time();
        int rc = broker_publish(sc->broker, p->actor, text, len, 0, &seq, err, sizeof err);
        free(text);
        if (rc) {
            broker_fail(sc, err);
            return -1;
        }
        if (confirm_track(sc, seq, s)) {
            broker_fail(sc, "out of memory tracking confirms");
            return -1;
        }
        char queue[512];
        snprintf(queue, sizeof queue, "%s%s", sc->cfg->queue_prefix, p->actor);
        metrics_sent(&sc->stats, queue, (enum sent_type)p->kind, len);
        histogram_observe(&sc->stats.queue_send, ev_time() - t0);
        log_debug_id(slot_id(s), "published to %s (seq %llu)", p->actor,
                     (unsigned long long)seq);
    }
    return 0;
}

/* Settle the consumed message once nothing it produced is unconfirmed. */
static void slot_settle(struct sidecar *sc, struct slot *s)
{
    if (s->nacked) {
        sc->stats.requeued[REQUEUE_BROKER_NACK]++;
        log_warn_id(slot_id(s), "the broker refused a publish; requeueing the message");
        if (broker_reject(sc->broker, s->tag, true))
            broker_fail(sc, "reject failed");
    } else if (s->returned && !s->error_routed && s->env.root) {
        /* A destination vanished between declare and publish: report it. */
        s->returned = false;
        s->error_routed = true;
        sc->stats.failed[FAILED_ROUTING]++;
        struct route_plan plan;
        if (routing_plan_error(&sc->names, &s->env, "routing_error", "UnroutableMessage",
                               "a result could not be routed to its destination queue",
                               &plan) != 0) {
            broker_fail(sc, "out of memory building an error envelope");
            return;
        }
        publish_plan(sc, s, &plan);
        route_plan_free(&plan);
        return; /* settled again when this publish is confirmed */
    } else if (s->returned) {
        log_error_id(slot_id(s), "error-end is unroutable; requeueing the message");
        if (broker_reject(sc->broker, s->tag, true))
            broker_fail(sc, "reject failed");
    } else {
        if (broker_ack(sc->broker, s->tag, false))
            broker_fail(sc, "ack failed");
        ev_tstamp now = ev_time();
        if (s->published_at > 0)
            histogram_observe(&sc->stats.confirm, now - s->published_at);
        histogram_observe(&sc->stats.processing, now - s->started);
        log_debug_id(slot_id(s), "acked after %.1f ms",
                     (ev_now(sc->loop) - s->started) * 1000.0);
    }
    slot_release(sc, s);
}

/* Route a plan for slot s and wait for its confirms. */
static void slot_publish(struct sidecar *sc, struct slot *s, struct route_plan *plan)
{
    ev_timer_stop(sc->loop, &s->timeout);
    s->state = SLOT_CONFIRMING;
    s->published_at = ev_time();
    int rc = publish_plan(sc, s, plan);
    route_plan_free(plan);
    if (rc == 0 && s->unconfirmed == 0)
        slot_settle(sc, s);
}

static void slot_route_error(struct sidecar *sc, struct slot *s, const char *code,
                             const char *type, const char *message)
{
    struct route_plan plan;
    log_warn_id(slot_id(s), "%s: %s", code, message);
    if (routing_plan_error(&sc->names, &s->env, code, type, message, &plan)) {
        broker_fail(sc, "out of memory building an error envelope");
        return;
    }
    slot_publish(sc, s, &plan);
}

/* ---- the runtime being unreachable ------------------------------------------ */

static void runtime_went_down(struct sidecar *sc, const char *why)
{
    char err[256];
    if (!sc->runtime_down) {
        sc->runtime_down = true;
        sc->stats.runtime_pauses++;
        log_warn("runtime unreachable at %s (%s): pausing consumption until it answers",
                 sc->cfg->socket_path, why);
        if (broker_consuming(sc->broker) && broker_cancel(sc->broker, err, sizeof err))
            broker_fail(sc, err);
        sc->runtime_backoff = RUNTIME_RETRY_FIRST;
        ev_timer_set(&sc->runtime_retry, sc->runtime_backoff, 0.);
        ev_timer_start(sc->loop, &sc->runtime_retry);
    }
    /* Deliveries that were waiting for a slot go back too. */
    for (size_t i = 0; i < sc->nwaiting; i++) {
        broker_reject(sc->broker, sc->waiting[i].tag, true);
        free(sc->waiting[i].body);
        sc->stats.requeued[REQUEUE_RUNTIME_UNAVAILABLE]++;
    }
    sc->nwaiting = 0;
    update_ready(sc);
}

static void runtime_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct sidecar *sc = ev_userdata(loop);
    (void)w;
    (void)revents;
    int fd = usock_connect(sc->cfg->socket_path, 1);
    if (fd < 0) {
        sc->runtime_backoff *= 2;
        if (sc->runtime_backoff > RUNTIME_RETRY_MAX)
            sc->runtime_backoff = RUNTIME_RETRY_MAX;
        log_debug("runtime still unreachable: %s", strerror(-fd));
        ev_timer_set(&sc->runtime_retry, sc->runtime_backoff, 0.);
        ev_timer_start(loop, &sc->runtime_retry);
        return;
    }
    close(fd);
    sc->runtime_down = false;
    log_info("runtime at %s answers again: resuming consumption", sc->cfg->socket_path);
    if (!sc->shutting_down && broker_connected(sc->broker)) {
        char err[256];
        if (broker_consume(sc->broker, err, sizeof err))
            broker_fail(sc, err);
    }
    update_ready(sc);
}

/* ---- talking to the runtime -------------------------------------------------- */

/* True when an idle kept-open connection is still usable (the reference
 * runtime closes after every answer). */
static bool runtime_conn_alive(int fd)
{
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

/* Open or reuse the runtime connection and start writing the request.
 * Returns 0, or -1 when the runtime is unreachable (slot untouched). */
static int slot_connect_and_send(struct sidecar *sc, struct slot *s)
{
    if (s->fd >= 0 && !runtime_conn_alive(s->fd))
        slot_close_runtime(s);
    s->fd_reused = s->fd >= 0;
    if (s->fd < 0) {
        int fd = usock_connect(sc->cfg->socket_path, 1);
        if (fd < 0)
            return fd;
        s->fd = fd;
    }
    frame_reader_init(&s->in, (size_t)sc->cfg->max_message_bytes);
    frame_put_header(s->hdr, (uint32_t)s->len);
    s->sent = 0;
    s->answer_bytes = 0;
    s->state = SLOT_RUNTIME;
    ev_io_set(&s->io, s->fd, EV_WRITE);
    ev_io_start(sc->loop, &s->io);
    return 0;
}

/* Requeue a message the runtime could not take (no socket, refused). */
static void slot_requeue_runtime_down(struct sidecar *sc, struct slot *s, int err)
{
    log_info_id(slot_id(s), "runtime unreachable (%s): message requeued", strerror(-err));
    sc->stats.requeued[REQUEUE_RUNTIME_UNAVAILABLE]++;
    if (broker_reject(sc->broker, s->tag, true))
        broker_fail(sc, "reject failed");
    slot_close_runtime(s);
    runtime_went_down(sc, strerror(-err));
    slot_release(sc, s);
}

/*
 * The runtime connection broke after the request went out (the runtime
 * process died).  Republish the message to the own queue with one more
 * attempt counted, or give up as a poison message after
 * ASYA_MAX_DELIVERY_ATTEMPTS.
 */
static void slot_runtime_broken(struct sidecar *sc, struct slot *s, const char *why)
{
    slot_close_runtime(s);
    if (s->answer_bytes == 0 && s->fd_reused && !s->retried) {
        /* A kept-open connection the runtime had closed: resend once. */
        s->retried = true;
        int rc = slot_connect_and_send(sc, s);
        if (rc == 0) {
            s->fd_reused = false;
            return;
        }
        slot_requeue_runtime_down(sc, s, rc);
        return;
    }
    long attempts = s->attempts + 1;
    if (attempts >= sc->cfg->max_delivery_attempts) {
        char msg[256];
        snprintf(msg, sizeof msg,
                 "the runtime connection broke during %ld attempts (last: %s); giving up",
                 attempts, why);
        sc->stats.failed[FAILED_POISON]++;
        slot_route_error(sc, s, "poison_message", "PoisonMessage", msg);
        return;
    }
    log_warn_id(slot_id(s), "runtime connection broke mid-request (%s): retrying (attempt %ld of %ld)",
                why, attempts + 1, sc->cfg->max_delivery_attempts);
    sc->stats.requeued[REQUEUE_RUNTIME_BROKEN]++;
    char err[256];
    uint64_t seq;
    ev_timer_stop(sc->loop, &s->timeout);
    s->state = SLOT_CONFIRMING;
    if (broker_publish_queue(sc->broker, sc->cfg->queue_name, s->body, s->len, attempts, &seq, err,
                             sizeof err)) {
        broker_fail(sc, err);
        return;
    }
    if (confirm_track(sc, seq, s))
        broker_fail(sc, "out of memory tracking confirms");
}

static void slot_handle_answer(struct sidecar *sc, struct slot *s, char *answer, size_t len)
{
    char err[256];
    histogram_observe(&sc->stats.runtime_exec, ev_time() - s->request_at);
    struct runtime_response resp;
    int rc = protocol_parse_response(answer, len, &resp, err, sizeof err);
    free(answer);
    ev_io_stop(sc->loop, &s->io); /* keep the connection for the next message */

    if (sc->cfg->is_end_actor) {
        if (rc == 0 && resp.kind == RESPONSE_ERROR)
            log_warn_id(slot_id(s), "end actor handler answered %s", resp.error);
        protocol_response_free(&resp);
        sc->stats.processed[PROCESSED_END_CONSUMED]++;
        s->state = SLOT_CONFIRMING;
        slot_settle(sc, s);
        return;
    }
    if (rc) {
        sc->stats.failed[FAILED_RUNTIME_RESPONSE]++;
        slot_close_runtime(s);
        slot_route_error(sc, s, PROTO_PROCESSING_ERROR, "InvalidRuntimeResponse", err);
        return;
    }
    struct route_plan plan;
    if (routing_plan_response(&sc->names, &s->env, &resp, &plan)) {
        protocol_response_free(&resp);
        broker_fail(sc, "out of memory routing a result");
        return;
    }
    switch (plan.outcome) {
    case OUTCOME_SUCCESS:
        sc->stats.processed[PROCESSED_SUCCESS]++;
        break;
    case OUTCOME_EMPTY_RESPONSE:
        sc->stats.processed[PROCESSED_EMPTY]++;
        break;
    case OUTCOME_RUNTIME_ERROR:
        sc->stats.failed[FAILED_RUNTIME]++;
        metrics_runtime_error(&sc->stats, resp.error);
        log_info_id(slot_id(s), "runtime answered %s", resp.error);
        break;
    default:
        sc->stats.failed[FAILED_RUNTIME_RESPONSE]++;
        break;
    }
    protocol_response_free(&resp);
    slot_publish(sc, s, &plan);
}

static void slot_write(struct sidecar *sc, struct slot *s)
{
    while (s->sent < FRAME_HEADER_LEN + s->len) {
        struct iovec iov[2];
        int n = 0;
        if (s->sent < FRAME_HEADER_LEN) {
            iov[n].iov_base = s->hdr + s->sent;
            iov[n++].iov_len = FRAME_HEADER_LEN - s->sent;
            iov[n].iov_base = s->body;
            iov[n++].iov_len = s->len;
        } else {
            iov[n].iov_base = s->body + (s->sent - FRAME_HEADER_LEN);
            iov[n++].iov_len = s->len - (s->sent - FRAME_HEADER_LEN);
        }
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(s->fd, &mh, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            slot_runtime_broken(sc, s, strerror(errno));
            return;
        }
        s->sent += (size_t)w;
    }
    ev_io_stop(sc->loop, &s->io);
    ev_io_set(&s->io, s->fd, EV_READ);
    ev_io_start(sc->loop, &s->io);
}

static void slot_read(struct sidecar *sc, struct slot *s)
{
    char buf[65536];
    for (;;) {
        ssize_t n = read(s->fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            slot_runtime_broken(sc, s, strerror(errno));
            return;
        }
        if (n == 0) {
            slot_runtime_broken(sc, s, s->answer_bytes ? "closed mid-answer" : "closed before answering");
            return;
        }
        s->answer_bytes += (size_t)n;
        size_t used;
        int st = frame_reader_feed(&s->in, buf, (size_t)n, &used);
        if (st == FRAME_INCOMPLETE)
            continue;
        if (st == FRAME_TOO_LARGE || st == FRAME_NOMEM) {
            char msg[160];
            snprintf(msg, sizeof msg, "runtime answer of %u bytes exceeds ASYA_MAX_MESSAGE_BYTES (%ld)",
                     s->in.announced, sc->cfg->max_message_bytes);
            sc->stats.failed[FAILED_RUNTIME_RESPONSE]++;
            slot_close_runtime(s);
            slot_route_error(sc, s, PROTO_PROCESSING_ERROR, "ResponseTooLarge", msg);
            return;
        }
        size_t alen;
        char *answer = frame_reader_take(&s->in, &alen);
        if (used < (size_t)n) {
            /* Bytes after the answer: the stream is out of step; do not reuse it. */
            slot_close_runtime(s);
        }
        slot_handle_answer(sc, s, answer, alen);
        return;
    }
}

static void slot_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct slot *s = (struct slot *)w;
    struct sidecar *sc = ev_userdata(loop);
    if (s->state != SLOT_RUNTIME) {
        ev_io_stop(loop, w);
        return;
    }
    if (revents & EV_WRITE)
        slot_write(sc, s);
    else if (revents & EV_READ)
        slot_read(sc, s);
}

static void slot_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct slot *s = (struct slot *)((char *)w - offsetof(struct slot, timeout));
    struct sidecar *sc = ev_userdata(loop);
    (void)revents;
    if (s->state != SLOT_RUNTIME)
        return;
    char d[32], msg[160];
    duration_format(sc->cfg->runtime_timeout_ns, d, sizeof d);
    snprintf(msg, sizeof msg, "the runtime did not answer within %s (ASYA_RUNTIME_TIMEOUT)", d);
    sc->stats.failed[FAILED_TIMEOUT]++;
    metrics_runtime_error(&sc->stats, PROTO_TIMEOUT_ERROR);
    /* Dropping the connection makes asya-runtime kill and replace the worker. */
    slot_close_runtime(s);
    if (sc->cfg->is_end_actor) {
        log_warn_id(slot_id(s), "%s", msg);
        s->state = SLOT_CONFIRMING;
        slot_settle(sc, s);
        return;
    }
    slot_route_error(sc, s, PROTO_TIMEOUT_ERROR, "TimeoutError", msg);
}

/* Decide what to do with the message now in slot s. */
static void slot_begin(struct sidecar *sc, struct slot *s)
{
    char err[256];
    s->started = ev_time();
    s->published_at = 0;
    s->retried = false;
    s->state = SLOT_CONFIRMING;
    sc->stats.received++;
    histogram_observe(&sc->stats.size_in, (double)s->len);

    if (s->len > (size_t)sc->cfg->max_message_bytes) {
        snprintf(err, sizeof err, "message of %zu bytes exceeds ASYA_MAX_MESSAGE_BYTES (%ld)",
                 s->len, sc->cfg->max_message_bytes);
        sc->stats.failed[FAILED_TOO_LARGE]++;
        log_warn("%s", err);
        struct route_plan plan;
        /* Keep only the start of the body: the whole of it is what was refused. */
        if (routing_plan_malformed(&sc->names, s->body, s->len < 1024 ? s->len : 1024,
                                   "msg_parsing_error", "MessageTooLarge", err, &plan)) {
            broker_fail(sc, "out of memory");
            return;
        }
        if (sc->cfg->is_end_actor) {
            route_plan_free(&plan);
            slot_settle(sc, s);
            return;
        }
        slot_publish(sc, s, &plan);
        return;
    }

    int flags = sc->cfg->is_end_actor ? ENVELOPE_ALLOW_FINISHED : 0;
    if (envelope_parse(s->body, s->len, flags, &s->env, err, sizeof err)) {
        sc->stats.failed[strncmp(err, "invalid JSON", 12) == 0 ? FAILED_PARSE
                                                                : FAILED_VALIDATION]++;
        log_warn("invalid envelope: %s", err);
        if (sc->cfg->is_end_actor) {
            slot_settle(sc, s);
            return;
        }
        struct route_plan plan;
        if (routing_plan_malformed(&sc->names, s->body, s->len, NULL, NULL, err, &plan)) {
            broker_fail(sc, "out of memory");
            return;
        }
        slot_publish(sc, s, &plan);
        return;
    }

    if (s->attempts >= sc->cfg->max_delivery_attempts && !sc->cfg->is_end_actor) {
        snprintf(err, sizeof err, "delivered %ld times without completing; giving up",
                 s->attempts);
        sc->stats.failed[FAILED_POISON]++;
        slot_route_error(sc, s, "poison_message", "PoisonMessage", err);
        return;
    }

    if (!sc->cfg->is_end_actor) {
        const char *me = envelope_actor(&s->env, s->env.current);
        if (me && strcmp(me, sc->cfg->actor_name) != 0)
            log_warn_id(slot_id(s), "route.actors[%zu] is %s, not this actor (%s); processing anyway",
                        s->env.current, me, sc->cfg->actor_name);
    }

    int rc = slot_connect_and_send(sc, s);
    if (rc) {
        slot_requeue_runtime_down(sc, s, rc);
        return;
    }
    s->request_at = ev_time();
    ev_timer_set(&s->timeout, (double)sc->cfg->runtime_timeout_ns / 1e9, 0.);
    ev_timer_start(sc->loop, &s->timeout);
    slot_write(sc, s);
}

/* ---- broker events ------------------------------------------------------------ */

static void on_delivery(void *ctx, const struct broker_delivery *d)
{
    struct sidecar *sc = ctx;
    if (sc->shutting_down || sc->runtime_down) {
        broker_reject(sc->broker, d->tag, true);
        return;
    }
    if (sc->nfree == 0) {
        if (sc->nwaiting == sc->waiting_cap) {
            size_t cap = sc->waiting_cap ? sc->waiting_cap * 2 : 16;
            struct delivery_copy *w = realloc(sc->waiting, cap * sizeof *w);
            if (!w) {
                broker_reject(sc->broker, d->tag, true);
                return;
            }
            sc->waiting = w;
            sc->waiting_cap = cap;
        }
        char *copy = malloc(d->len + 1);
        if (!copy) {
            broker_reject(sc->broker, d->tag, true);
            return;
        }
        memcpy(copy, d->body, d->len);
        copy[d->len] = '\0';
        sc->waiting[sc->nwaiting++] =
            (struct delivery_copy){.tag = d->tag, .attempts = d->attempts, .body = copy, .len = d->len};
        return;
    }
    struct slot *s = &sc->slots[sc->free_slots[--sc->nfree]];
    if (s->cap < d->len + 1) {
        char *nb = realloc(s->body, d->len + 1);
        if (!nb) {
            sc->free_slots[sc->nfree++] = s->index;
            broker_reject(sc->broker, d->tag, true);
            return;
        }
        s->body = nb;
        s->cap = d->len + 1;
    }
    memcpy(s->body, d->body, d->len);
    s->body[d->len] = '\0';
    s->len = d->len;
    s->tag = d->tag;
    s->attempts = d->attempts;
    sc->stats.active++;
    slot_begin(sc, s);
}

static void settle_seq(struct sidecar *sc, size_t i, bool ack)
{
    struct confirm_entry *e = &sc->confirms[i];
    if (e->done)
        return;
    e->done = true;
    struct slot *s = &sc->slots[e->slot];
    if (!ack)
        s->nacked = true;
    if (s->unconfirmed > 0 && --s->unconfirmed == 0 && s->state == SLOT_CONFIRMING)
        slot_settle(sc, s);
}

static void on_confirm(void *ctx, uint64_t seq, bool multiple, bool ack)
{
    struct sidecar *sc = ctx;
    if (sc->nconfirms == 0 || seq < sc->confirm_base)
        return;
    size_t last = (size_t)(seq - sc->confirm_base);
    if (last >= sc->nconfirms)
        last = sc->nconfirms - 1;
    if (multiple) {
        for (size_t i = sc->confirm_head; i <= last; i++)
            settle_seq(sc, i, ack);
    } else {
        settle_seq(sc, last, ack);
    }
    while (sc->confirm_head < sc->nconfirms && sc->confirms[sc->confirm_head].done)
        sc->confirm_head++;
    if (sc->confirm_head == sc->nconfirms) {
        sc->nconfirms = 0;
        sc->confirm_head = 0;
    }
}

static void on_returned(void *ctx, uint64_t seq, const char *routing_key)
{
    struct sidecar *sc = ctx;
    log_warn("publish to %s was unroutable (returned by the broker)", routing_key);
    if (sc->nconfirms == 0 || seq < sc->confirm_base || seq - sc->confirm_base >= sc->nconfirms)
        return;
    struct confirm_entry *e = &sc->confirms[seq - sc->confirm_base];
    sc->slots[e->slot].returned = true;
}

/* ---- broker connection ----------------------------------------------------------- */

static void broker_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct sidecar *sc = ev_userdata(loop);
    (void)w;
    (void)revents;
    char err[256];
    if (!sc->broker_failed && broker_connected(sc->broker) &&
        broker_poll(sc->broker, err, sizeof err))
        broker_fail(sc, err);
}

static void broker_prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    struct sidecar *sc = ev_userdata(loop);
    (void)w;
    (void)revents;
    char err[256];
    if (!sc->broker_failed && broker_pending(sc->broker) &&
        broker_poll(sc->broker, err, sizeof err))
        broker_fail(sc, err);
}

static void heartbeat_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    broker_io_cb(loop, NULL, revents);
    (void)w;
}

static void schedule_reconnect(struct sidecar *sc)
{
    double delay = (double)sc->cfg->retry_backoff_ns / 1e9;
    for (long i = 1; i < sc->reconnect_attempt && delay < RECONNECT_MAX_DELAY; i++)
        delay *= 2;
    if (delay > RECONNECT_MAX_DELAY)
        delay = RECONNECT_MAX_DELAY;
    if (sc->reconnect_attempt == 0)
        delay = 0;
    ev_timer_set(&sc->reconnect, delay, 0.);
    ev_timer_start(sc->loop, &sc->reconnect);
}

static void reconnect_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct sidecar *sc = ev_userdata(loop);
    (void)w;
    (void)revents;
    char err[256];
    if (broker_connect(sc->broker, err, sizeof err)) {
        sc->reconnect_attempt++;
        log_error("broker connection failed (attempt %ld of %ld): %s", sc->reconnect_attempt,
                  sc->cfg->retry_max_attempts, err);
        if (sc->reconnect_attempt >= sc->cfg->retry_max_attempts) {
            log_error("giving up on the broker after %ld attempts", sc->reconnect_attempt);
            sc->exit_code = 1;
            ev_break(loop, EVBREAK_ALL);
            return;
        }
        schedule_reconnect(sc);
        return;
    }
    if (sc->reconnect_attempt > 0)
        sc->stats.broker_reconnects++;
    sc->reconnect_attempt = 0;
    sc->broker_failed = false;
    log_info("connected to the broker; queue %s, prefetch %ld, concurrency %ld",
             sc->cfg->queue_name, sc->cfg->prefetch, sc->cfg->concurrency);
    ev_io_set(&sc->broker_io, broker_fd(sc->broker), EV_READ);
    ev_io_start(loop, &sc->broker_io);
    if (sc->shutting_down) {
        maybe_finish_shutdown(sc);
        return;
    }
    /* Probe the runtime before consuming, so nothing is taken that cannot run. */
    int fd = usock_connect(sc->cfg->socket_path, 1);
    if (fd < 0) {
        runtime_went_down(sc, strerror(-fd));
        return;
    }
    close(fd);
    if (!sc->runtime_down && broker_consume(sc->broker, err, sizeof err))
        broker_fail(sc, err);
    update_ready(sc);
}

/* Tear down after a lost connection: in-flight work is dropped (the broker
 * redelivers every unacked message), then reconnect with backoff. */
static void lost_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct sidecar *sc = ev_userdata(loop);
    (void)w;
    (void)revents;
    log_error("broker connection lost: %s; unacked messages will be redelivered",
              sc->broker_error);
    ev_io_stop(loop, &sc->broker_io);
    for (unsigned i = 0; i < sc->nslots; i++) {
        struct slot *s = &sc->slots[i];
        if (s->state == SLOT_FREE)
            continue;
        if (s->state == SLOT_RUNTIME)
            slot_close_runtime(s); /* the runtime replaces the busy worker */
        ev_timer_stop(loop, &s->timeout);
        envelope_free(&s->env);
        s->state = SLOT_FREE;
        s->unconfirmed = 0;
        s->nacked = s->returned = s->error_routed = false;
        sc->free_slots[sc->nfree++] = s->index;
    }
    sc->stats.active = 0;
    for (size_t i = 0; i < sc->nwaiting; i++)
        free(sc->waiting[i].body);
    sc->nwaiting = 0;
    sc->nconfirms = sc->confirm_head = 0;
    broker_disconnect(sc->broker);
    update_ready(sc);
    if (sc->shutting_down) {
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    sc->reconnect_attempt = 1;
    schedule_reconnect(sc);
}

/* ---- readiness and shutdown --------------------------------------------------------- */

static void update_ready(struct sidecar *sc)
{
    const char *why = NULL;
    if (sc->shutting_down)
        why = "shutting down";
    else if (!broker_connected(sc->broker))
        why = "not connected to the broker";
    else if (sc->runtime_down)
        why = "runtime unreachable";
    else if (!broker_consuming(sc->broker))
        why = "not consuming";
    sc->stats.ready = why == NULL;
    snprintf(sc->stats.not_ready, sizeof sc->stats.not_ready, "%s", why ? why : "");
}

static void maybe_finish_shutdown(struct sidecar *sc)
{
    if (!sc->shutting_down || sc->stats.active > 0)
        return;
    log_info("drained; exiting");
    ev_break(sc->loop, EVBREAK_ALL);
}

static void grace_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct sidecar *sc = ev_userdata(loop);
    (void)w;
    (void)revents;
    log_warn("shutdown grace period over with %lld message(s) in flight; requeueing them",
             (long long)sc->stats.active);
    for (unsigned i = 0; i < sc->nslots; i++) {
        struct slot *s = &sc->slots[i];
        if (s->state == SLOT_FREE)
            continue;
        slot_close_runtime(s);
        broker_reject(sc->broker, s->tag, true);
        sc->stats.requeued[REQUEUE_SHUTDOWN]++;
    }
    ev_break(loop, EVBREAK_ALL);
}

static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    struct sidecar *sc = ev_userdata(loop);
    (void)revents;
    if (sc->shutting_down) {
        log_warn("second signal: exiting now");
        grace_cb(loop, NULL, 0);
        return;
    }
    sc->shutting_down = true;
    log_info("received %s: draining %lld in-flight message(s)",
             w->signum == SIGTERM ? "SIGTERM" : "SIGINT", (long long)sc->stats.active);
    char err[256];
    if (broker_consuming(sc->broker) && broker_cancel(sc->broker, err, sizeof err))
        log_warn("cancel consumer: %s", err);
    for (size_t i = 0; i < sc->nwaiting; i++) {
        broker_reject(sc->broker, sc->waiting[i].tag, true);
        free(sc->waiting[i].body);
    }
    sc->nwaiting = 0;
    ev_timer_stop(loop, &sc->reconnect);
    ev_timer_stop(loop, &sc->runtime_retry);
    update_ready(sc);
    if (!broker_connected(sc->broker)) {
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    ev_timer_set(&sc->grace, (double)sc->cfg->shutdown_timeout_ns / 1e9, 0.);
    ev_timer_start(loop, &sc->grace);
    maybe_finish_shutdown(sc);
}

/* ---- health ------------------------------------------------------------------------ */

/* While idle, check the runtime now and then so readiness reflects a runtime
 * that died between messages. */
static void runtime_probe_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct sidecar *sc = ev_userdata(loop);
    (void)w;
    (void)revents;
    if (sc->runtime_down || sc->shutting_down || sc->stats.active > 0)
        return;
    int fd = usock_connect(sc->cfg->socket_path, 1);
    if (fd < 0) {
        if (broker_connected(sc->broker))
            runtime_went_down(sc, strerror(-fd));
        return;
    }
    close(fd);
}

static char *http_metrics(void *ctx, size_t *len)
{
    struct sidecar *sc = ctx;
    return metrics_render(&sc->stats, len);
}

static bool http_ready(void *ctx, const char **reason)
{
    struct sidecar *sc = ctx;
    update_ready(sc);
    *reason = sc->stats.not_ready;
    return sc->stats.ready;
}

/* ---- lifecycle -------------------------------------------------------------------- */

struct sidecar *sidecar_new(const struct sidecar_config *cfg, char *err, size_t errlen)
{
    struct sidecar *sc = calloc(1, sizeof *sc);
    if (!sc) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    sc->cfg = cfg;
    sc->loop = ev_default_loop(EVFLAG_AUTO);
    if (!sc->loop) {
        snprintf(err, errlen, "cannot create the event loop");
        free(sc);
        return NULL;
    }
    ev_set_userdata(sc->loop, sc);
    metrics_init(&sc->stats, cfg->metrics_namespace, cfg->queue_name);
    sc->names.actor = cfg->actor_name;
    sc->names.happy_end = cfg->happy_end;
    sc->names.error_end = cfg->error_end;
    sc->nslots = (unsigned)cfg->concurrency;
    sc->slots = calloc(sc->nslots, sizeof *sc->slots);
    sc->free_slots = calloc(sc->nslots, sizeof *sc->free_slots);
    if (!sc->slots || !sc->free_slots) {
        snprintf(err, errlen, "out of memory");
        sidecar_free(sc);
        return NULL;
    }
    for (unsigned i = 0; i < sc->nslots; i++) {
        struct slot *s = &sc->slots[i];
        s->sc = sc;
        s->index = i;
        s->fd = -1;
        ev_io_init(&s->io, slot_io_cb, -1, EV_READ);
        ev_timer_init(&s->timeout, slot_timeout_cb, 1., 0.);
        frame_reader_init(&s->in, (size_t)cfg->max_message_bytes);
        sc->free_slots[sc->nfree++] = sc->nslots - 1 - i;
    }
    struct broker_options opt = {
        .url = cfg->amqp_url,
        .exchange = cfg->exchange,
        .queue = cfg->queue_name,
        .prefix = cfg->queue_prefix,
        .prefetch = (unsigned)cfg->prefetch,
        .quorum = cfg->quorum,
        .cacert = cfg->cacert,
        .tls_verify = cfg->tls_verify,
        .heartbeat_s = HEARTBEAT_S,
    };
    struct broker_events ev = {.delivery = on_delivery, .confirm = on_confirm,
                               .returned = on_returned};
    sc->broker = broker_new(&opt, &ev, sc);
    if (!sc->broker) {
        snprintf(err, errlen, "out of memory");
        sidecar_free(sc);
        return NULL;
    }
    ev_io_init(&sc->broker_io, broker_io_cb, -1, EV_READ);
    ev_prepare_init(&sc->broker_prepare, broker_prepare_cb);
    ev_timer_init(&sc->heartbeat, heartbeat_cb, HEARTBEAT_S / 3.0, HEARTBEAT_S / 3.0);
    ev_timer_init(&sc->reconnect, reconnect_cb, 0., 0.);
    ev_timer_init(&sc->lost, lost_cb, 0., 0.);
    ev_timer_init(&sc->runtime_retry, runtime_retry_cb, RUNTIME_RETRY_FIRST, 0.);
    ev_timer_init(&sc->grace, grace_cb, 1., 0.);
    ev_signal_init(&sc->sigterm, signal_cb, SIGTERM);
    ev_signal_init(&sc->sigint, signal_cb, SIGINT);
    ev_timer_init(&sc->runtime_probe, runtime_probe_cb, RUNTIME_PROBE_S, RUNTIME_PROBE_S);
    update_ready(sc);
    if (cfg->metrics_enabled) {
        struct httpd_handlers h = {.metrics = http_metrics, .ready = http_ready};
        sc->httpd = httpd_start(sc->loop, cfg->metrics_addr, &h, sc, err, errlen);
        if (!sc->httpd) {
            sidecar_free(sc);
            return NULL;
        }
    }
    return sc;
}

int sidecar_run(struct sidecar *sc)
{
    ev_prepare_start(sc->loop, &sc->broker_prepare);
    ev_timer_start(sc->loop, &sc->heartbeat);
    ev_signal_start(sc->loop, &sc->sigterm);
    ev_signal_start(sc->loop, &sc->sigint);
    ev_timer_start(sc->loop, &sc->runtime_probe);
    schedule_reconnect(sc);
    ev_run(sc->loop, 0);
    broker_disconnect(sc->broker);
    return sc->exit_code;
}

void sidecar_free(struct sidecar *sc)
{
    if (!sc)
        return;
    if (sc->slots) {
        for (unsigned i = 0; i < sc->nslots; i++) {
            struct slot *s = &sc->slots[i];
            if (s->fd >= 0)
                close(s->fd);
            envelope_free(&s->env);
            frame_reader_reset(&s->in);
            free(s->body);
        }
    }
    for (size_t i = 0; i < sc->nwaiting; i++)
        free(sc->waiting[i].body);
    free(sc->waiting);
    free(sc->confirms);
    free(sc->slots);
    free(sc->free_slots);
    broker_free(sc->broker);
    httpd_stop(sc->httpd);
    metrics_free(&sc->stats);
    if (sc->loop)
        ev_loop_destroy(sc->loop);
    free(sc);
}

const struct metrics *sidecar_metrics(const struct sidecar *sc)
{
    return &sc->stats;
}
