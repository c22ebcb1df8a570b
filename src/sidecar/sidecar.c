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
#define PREFETCH_ADAPT_S    0.25 /* how often the automatic prefetch is reconsidered */
#define EWMA_WEIGHT         0.1
#define RUNTIME_STATS_S     5.0 /* how often asya-runtime's worker stats are fetched */

/*
 * Two kinds of state, so a slow broker confirm never holds up the handler:
 * - a message is one consumed delivery, from consume to ack (at most prefetch
 *   of them, pooled);
 * - a slot is one runtime call in progress (at most ASYA_CONCURRENCY).  A
 *   message holds a slot only while the runtime works on it; once its results
 *   are published it waits for the broker's confirms without a slot.
 */
enum msg_state {
    MSG_FREE = 0,
    MSG_WAITING,    /* consumed, waiting for a free slot */
    MSG_RUNTIME,    /* a slot is running it */
    MSG_CONFIRMING, /* published; waiting for confirms, then ack */
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
    struct envelope env; /* parsed body; empty when it did not parse */
    size_t unconfirmed;  /* publishes not yet confirmed */
    bool nacked;         /* the broker refused one of them */
    bool returned;       /* one of them was unroutable */
    bool error_routed;   /* already sent a routing_error to error-end */
    ev_tstamp started, published_at;
};

struct slot {
    ev_io io;         /* first member: callbacks cast back; watches the runtime socket */
    ev_timer timeout; /* ASYA_RUNTIME_TIMEOUT */
    unsigned index;
    struct message *msg; /* the message being run, NULL when free */
    int fd;              /* runtime connection, kept open between messages; -1 when none */
    bool fd_reused;      /* the request went on a connection that served an earlier one */
    bool retried;        /* already resent once on a fresh connection */
    unsigned char hdr[FRAME_HEADER_LEN];
    size_t sent; /* bytes of header + body written */
    struct frame_reader in;
    size_t answer_bytes; /* bytes of the answer received so far */
    ev_tstamp request_at;
};

struct confirm_entry {
    unsigned msg;
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
    unsigned nfree_slots;

    struct message *msgs; /* pool of prefetch_max messages */
    unsigned nmsgs;
    struct message *free_msgs;
    struct message *wait_head, *wait_tail; /* FIFO of MSG_WAITING */

    /* Publisher confirms: entry i is for sequence number confirm_base + i. */
    struct confirm_entry *confirms;
    size_t nconfirms, confirm_head, confirms_cap;
    uint64_t confirm_base;

    /* Acks are batched: settled tags wait here until the end of the loop
     * iteration, then go out as one multiple=true ack where that is safe. */
    uint64_t *acks;
    size_t nacks;

    ev_io broker_io;
    ev_prepare prepare; /* flushes acks, polls frames rabbitmq-c buffered during RPCs */
    ev_timer heartbeat;
    ev_timer reconnect;
    ev_timer lost; /* deferred handling of a lost broker connection */
    ev_timer runtime_retry;
    ev_timer runtime_probe;
    ev_timer grace;
    ev_timer prefetch_adapt;
    ev_signal sigterm, sigint;

    /* Automatic prefetch: the handler's moving average time decides how many
     * messages are worth holding. */
    double ewma_exec;
    unsigned prefetch; /* current */

    long reconnect_attempt;
    double runtime_backoff;
    bool runtime_down;
    bool shutting_down;
    bool broker_failed;
    char broker_error[256];
    int exit_code;
    struct metrics stats;
    struct httpd *httpd;

    /* Periodic control "stats" request to the runtime (asya-runtime only). */
    struct {
        ev_io io;
        ev_timer every;
        ev_timer timeout;
        int fd;
        bool unsupported;
        struct frame_reader in;
    } rstats;
};

static void slot_io_cb(struct ev_loop *loop, ev_io *w, int revents);
static void slot_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void message_begin(struct sidecar *sc, struct message *m);
static void update_ready(struct sidecar *sc);
static void maybe_finish_shutdown(struct sidecar *sc);

static const char *msg_id(const struct message *m)
{
    return m->env.id;
}

/* The id of a body that is not (yet) a parsed envelope, for log lines about
 * it; NULL when there is none.  Only used off the hot path. */
static const char *peek_id(const struct message *m, char *buf, size_t len)
{
    json_t *root = json_loadb(m->body, m->len, 0, NULL);
    const char *id = json_string_value(json_object_get(root, "id"));
    if (id)
        snprintf(buf, len, "%s", id);
    json_decref(root);
    return id ? buf : NULL;
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

/* ---- messages ----------------------------------------------------------------- */

static void message_free(struct sidecar *sc, struct message *m)
{
    envelope_free(&m->env);
    if (m->cap > (64u << 10)) { /* keep small buffers for reuse, not large ones */
        free(m->body);
        m->body = NULL;
        m->cap = 0;
    }
    m->state = MSG_FREE;
    m->unconfirmed = 0;
    m->nacked = m->returned = m->error_routed = false;
    m->next = sc->free_msgs;
    sc->free_msgs = m;
    sc->stats.active--;
}

static void wait_push(struct sidecar *sc, struct message *m)
{
    m->state = MSG_WAITING;
    m->next = NULL;
    if (sc->wait_tail)
        sc->wait_tail->next = m;
    else
        sc->wait_head = m;
    sc->wait_tail = m;
}

static struct message *wait_pop(struct sidecar *sc)
{
    struct message *m = sc->wait_head;
    if (m) {
        sc->wait_head = m->next;
        if (!sc->wait_head)
            sc->wait_tail = NULL;
        m->next = NULL;
    }
    return m;
}

/* Settle with an ack, batched until the end of this loop iteration. */
static void message_ack(struct sidecar *sc, struct message *m)
{
    sc->acks[sc->nacks++] = m->tag;
    ev_tstamp now = ev_time();
    if (m->published_at > 0)
        histogram_observe(&sc->stats.confirm, now - m->published_at);
    histogram_observe(&sc->stats.processing, now - m->started);
    log_debug_id(msg_id(m), "done after %.2f ms", (now - m->started) * 1000.0);
}

static void message_reject(struct sidecar *sc, struct message *m)
{
    if (broker_reject(sc->broker, m->tag, true))
        broker_fail(sc, "reject failed");
}

/* Lowest delivery tag still unsettled, or UINT64_MAX. */
static uint64_t lowest_unsettled(const struct sidecar *sc)
{
    uint64_t low = UINT64_MAX;
    for (unsigned i = 0; i < sc->nmsgs; i++)
        if (sc->msgs[i].state != MSG_FREE && sc->msgs[i].tag < low)
            low = sc->msgs[i].tag;
    return low;
}

/* Send the batched acks: one multiple=true ack covers every settled tag below
 * the lowest unsettled one; tags above it (settled out of order) go singly. */
static void flush_acks(struct sidecar *sc)
{
    if (sc->nacks == 0 || !broker_connected(sc->broker)) {
        sc->nacks = 0;
        return;
    }
    uint64_t low = lowest_unsettled(sc);
    uint64_t upto = 0;
    int rc = 0;
    for (size_t i = 0; i < sc->nacks; i++) {
        if (sc->acks[i] < low) {
            if (sc->acks[i] > upto)
                upto = sc->acks[i];
        } else {
            rc |= broker_ack(sc->broker, sc->acks[i], false);
        }
    }
    if (upto)
        rc |= broker_ack(sc->broker, upto, true);
    sc->nacks = 0;
    if (rc)
        broker_fail(sc, "ack failed");
}

/* ---- slots ------------------------------------------------------------------ */

static void slot_close_runtime(struct sidecar *sc, struct slot *s)
{
    ev_io_stop(sc->loop, &s->io);
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    frame_reader_reset(&s->in);
}

/* Free the slot (its runtime connection stays open for the next message)
 * and give it to the next waiting message. */
static void slot_release(struct sidecar *sc, struct slot *s)
{
    ev_timer_stop(sc->loop, &s->timeout);
    if (s->fd >= 0)
        ev_io_stop(sc->loop, &s->io);
    frame_reader_reset(&s->in);
    s->msg = NULL;
    sc->free_slots[sc->nfree_slots++] = s->index;
    if (!sc->runtime_down && !sc->shutting_down && sc->wait_head)
        message_begin(sc, wait_pop(sc));
}

/* ---- publishing ----------------------------------------------------------------- */

/* Record a publish of message m under confirm sequence seq. */
static int confirm_track(struct sidecar *sc, uint64_t seq, struct message *m)
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
    sc->confirms[sc->nconfirms].msg = m->index;
    sc->confirms[sc->nconfirms].done = false;
    sc->nconfirms++;
    m->unconfirmed++;
    return 0;
}

/* Publish every item of plan for message m.  Returns 0, or -1 when the
 * broker connection failed (already reported). */
static int publish_plan(struct sidecar *sc, struct message *m, const struct route_plan *plan)
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
        char queue[512];
        snprintf(queue, sizeof queue, "%s%s", sc->cfg->queue_prefix, p->actor);
        uint64_t seq;
        ev_tstamp t0 = ev_time();
        int rc = broker_publish_queue(sc->broker, queue, text, len, 0, &seq, err, sizeof err);
        free(text);
        if (rc) {
            broker_fail(sc, err);
            return -1;
        }
        if (confirm_track(sc, seq, m)) {
            broker_fail(sc, "out of memory tracking confirms");
            return -1;
        }
        metrics_sent(&sc->stats, queue, (enum sent_type)p->kind, len);
        histogram_observe(&sc->stats.queue_send, ev_time() - t0);
        log_debug_id(msg_id(m), "published to %s (seq %llu)", p->actor, (unsigned long long)seq);
    }
    return 0;
}

/* Settle the consumed message once nothing it produced is unconfirmed. */
static void message_settle(struct sidecar *sc, struct message *m)
{
    if (m->nacked) {
        sc->stats.requeued[REQUEUE_BROKER_NACK]++;
        log_warn_id(msg_id(m), "the broker refused a publish; requeueing the message");
        message_reject(sc, m);
    } else if (m->returned && !m->error_routed && m->env.root) {
        /* A destination vanished between declare and publish: report it. */
        m->returned = false;
        m->error_routed = true;
        sc->stats.failed[FAILED_ROUTING]++;
        struct route_plan plan;
        if (routing_plan_error(&sc->names, &m->env, "routing_error", "UnroutableMessage",
                               "a result could not be routed to its destination queue",
                               &plan) != 0) {
            broker_fail(sc, "out of memory building an error envelope");
            return;
        }
        publish_plan(sc, m, &plan);
        route_plan_free(&plan);
        return; /* settled again when this publish is confirmed */
    } else if (m->returned) {
        log_error_id(msg_id(m), "error-end is unroutable; requeueing the message");
        message_reject(sc, m);
    } else {
        message_ack(sc, m);
    }
    message_free(sc, m);
    maybe_finish_shutdown(sc);
}

/* Publish a plan for message m (any slot already released) and wait for its
 * confirms. */
static void message_publish(struct sidecar *sc, struct message *m, struct route_plan *plan)
{
    m->state = MSG_CONFIRMING;
    m->published_at = ev_time();
    int rc = publish_plan(sc, m, plan);
    route_plan_free(plan);
    if (rc == 0 && m->unconfirmed == 0)
        message_settle(sc, m);
}

static void message_route_error(struct sidecar *sc, struct message *m, const char *code,
                                const char *type, const char *text)
{
    struct route_plan plan;
    log_warn_id(msg_id(m), "%s: %s", code, text);
    if (routing_plan_error(&sc->names, &m->env, code, type, text, &plan)) {
        broker_fail(sc, "out of memory building an error envelope");
        return;
    }
    message_publish(sc, m, &plan);
}

/*
 * Hand the message back to its queue as a fresh copy carrying attempts in
 * x-asya-attempts, and ack the original once the copy is confirmed.  Unlike
 * basic.reject this neither sets the redelivered flag nor bumps a quorum
 * queue's delivery count, so only real failures count as attempts; another
 * replica of the actor may take the copy.
 */
static void message_requeue(struct sidecar *sc, struct message *m, long attempts,
                            enum requeue_reason why)
{
    char err[256];
    uint64_t seq;
    sc->stats.requeued[why]++;
    m->state = MSG_CONFIRMING;
    m->published_at = ev_time();
    if (broker_publish_queue(sc->broker, sc->cfg->queue_name, m->body, m->len, attempts, &seq, err,
                             sizeof err)) {
        broker_fail(sc, err);
        return;
    }
    if (confirm_track(sc, seq, m))
        broker_fail(sc, "out of memory tracking confirms");
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
    /* Messages waiting for a slot go back too. */
    struct message *m;
    while ((m = wait_pop(sc)))
        message_requeue(sc, m, m->attempts, REQUEUE_RUNTIME_UNAVAILABLE);
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
 * Returns 0, or a negative errno when the runtime is unreachable. */
static int slot_connect_and_send(struct sidecar *sc, struct slot *s)
{
    struct message *m = s->msg;
    if (s->fd >= 0 && !runtime_conn_alive(s->fd))
        slot_close_runtime(sc, s);
    s->fd_reused = s->fd >= 0;
    if (s->fd < 0) {
        int fd = usock_connect(sc->cfg->socket_path, 1);
        if (fd < 0)
            return fd;
        s->fd = fd;
    }
    frame_reader_init(&s->in, (size_t)sc->cfg->max_message_bytes);
    frame_put_header(s->hdr, (uint32_t)m->len);
    s->sent = 0;
    s->answer_bytes = 0;
    ev_io_set(&s->io, s->fd, EV_WRITE);
    ev_io_start(sc->loop, &s->io);
    return 0;
}

/* Requeue a message the runtime could not take (no socket, refused). */
static void slot_requeue_runtime_down(struct sidecar *sc, struct slot *s, int err)
{
    struct message *m = s->msg;
    log_info_id(msg_id(m), "runtime unreachable (%s): message requeued", strerror(-err));
    slot_close_runtime(sc, s);
    runtime_went_down(sc, strerror(-err));
    slot_release(sc, s);
    message_requeue(sc, m, m->attempts, REQUEUE_RUNTIME_UNAVAILABLE);
}

/*
 * The runtime connection broke after the request went out (the runtime
 * process died).  Republish the message to the own queue with one more
 * attempt counted, or give up as a poison message after
 * ASYA_MAX_DELIVERY_ATTEMPTS.
 */
static void slot_runtime_broken(struct sidecar *sc, struct slot *s, const char *why)
{
    struct message *m = s->msg;
    slot_close_runtime(sc, s);
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
    slot_release(sc, s);
    long attempts = m->attempts + 1;
    if (attempts >= sc->cfg->max_delivery_attempts) {
        char text[256];
        snprintf(text, sizeof text,
                 "the runtime connection broke during %ld attempts (last: %s); giving up", attempts,
                 why);
        sc->stats.failed[FAILED_POISON]++;
        message_route_error(sc, m, "poison_message", "PoisonMessage", text);
        return;
    }
    log_warn_id(msg_id(m),
                "runtime connection broke mid-request (%s): retrying (attempt %ld of %ld)", why,
                attempts + 1, sc->cfg->max_delivery_attempts);
    message_requeue(sc, m, attempts, REQUEUE_RUNTIME_BROKEN);
}

static void slot_handle_answer(struct sidecar *sc, struct slot *s, char *answer, size_t len)
{
    struct message *m = s->msg;
    char err[256];
    double exec = ev_time() - s->request_at;
    histogram_observe(&sc->stats.runtime_exec, exec);
    sc->ewma_exec = sc->ewma_exec > 0 ? sc->ewma_exec + EWMA_WEIGHT * (exec - sc->ewma_exec) : exec;
    /* Free the slot first: the next message's request goes out while this
     * answer is parsed and routed.  A whole frame arrived, so the connection
     * is in step even when the answer turns out to be nonsense. */
    slot_release(sc, s);
    struct runtime_response resp;
    int rc = protocol_parse_response(answer, len, &resp, err, sizeof err);
    free(answer);

    if (sc->cfg->is_end_actor) {
        if (rc == 0 && resp.kind == RESPONSE_ERROR)
            log_warn_id(msg_id(m), "end actor handler answered %s", resp.error);
        protocol_response_free(&resp);
        sc->stats.processed[PROCESSED_END_CONSUMED]++;
        m->state = MSG_CONFIRMING;
        message_settle(sc, m);
        return;
    }
    if (rc) {
        sc->stats.failed[FAILED_RUNTIME_RESPONSE]++;
        message_route_error(sc, m, PROTO_PROCESSING_ERROR, "InvalidRuntimeResponse", err);
        return;
    }
    struct route_plan plan;
    if (routing_plan_response(&sc->names, &m->env, &resp, &plan)) {
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
        log_info_id(msg_id(m), "runtime answered %s", resp.error);
        break;
    default:
        sc->stats.failed[FAILED_RUNTIME_RESPONSE]++;
        break;
    }
    protocol_response_free(&resp);
    message_publish(sc, m, &plan);
}

static void slot_write(struct sidecar *sc, struct slot *s)
{
    struct message *m = s->msg;
    while (s->sent < FRAME_HEADER_LEN + m->len) {
        struct iovec iov[2];
        int n = 0;
        if (s->sent < FRAME_HEADER_LEN) {
            iov[n].iov_base = s->hdr + s->sent;
            iov[n++].iov_len = FRAME_HEADER_LEN - s->sent;
            iov[n].iov_base = m->body;
            iov[n++].iov_len = m->len;
        } else {
            iov[n].iov_base = m->body + (s->sent - FRAME_HEADER_LEN);
            iov[n++].iov_len = m->len - (s->sent - FRAME_HEADER_LEN);
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
            slot_runtime_broken(sc, s,
                                s->answer_bytes ? "closed mid-answer" : "closed before answering");
            return;
        }
        s->answer_bytes += (size_t)n;
        size_t used;
        int st = frame_reader_feed(&s->in, buf, (size_t)n, &used);
        if (st == FRAME_INCOMPLETE)
            continue;
        if (st == FRAME_TOO_LARGE || st == FRAME_NOMEM) {
            char text[160];
            snprintf(text, sizeof text,
                     "runtime answer of %u bytes exceeds ASYA_MAX_MESSAGE_BYTES (%ld)",
                     s->in.announced, sc->cfg->max_message_bytes);
            struct message *m = s->msg;
            sc->stats.failed[FAILED_RUNTIME_RESPONSE]++;
            slot_close_runtime(sc, s);
            slot_release(sc, s);
            message_route_error(sc, m, PROTO_PROCESSING_ERROR, "ResponseTooLarge", text);
            return;
        }
        size_t alen;
        char *answer = frame_reader_take(&s->in, &alen);
        if (used < (size_t)n)
            slot_close_runtime(sc, s); /* bytes after the answer: out of step, do not reuse */
        slot_handle_answer(sc, s, answer, alen);
        return;
    }
}

static void slot_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct slot *s = (struct slot *)w;
    struct sidecar *sc = ev_userdata(loop);
    if (!s->msg) {
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
    struct message *m = s->msg;
    (void)revents;
    if (!m)
        return;
    char d[32], text[160];
    duration_format(sc->cfg->runtime_timeout_ns, d, sizeof d);
    snprintf(text, sizeof text, "the runtime did not answer within %s (ASYA_RUNTIME_TIMEOUT)", d);
    sc->stats.failed[FAILED_TIMEOUT]++;
    metrics_runtime_error(&sc->stats, PROTO_TIMEOUT_ERROR);
    /* Dropping the connection makes asya-runtime kill and replace the worker. */
    slot_close_runtime(sc, s);
    slot_release(sc, s);
    if (sc->cfg->is_end_actor) {
        log_warn_id(msg_id(m), "%s", text);
        m->state = MSG_CONFIRMING;
        message_settle(sc, m);
        return;
    }
    message_route_error(sc, m, PROTO_TIMEOUT_ERROR, "TimeoutError", text);
}

/* Hand message m to a free slot (one must exist). */
static void message_run(struct sidecar *sc, struct message *m)
{
    struct slot *s = &sc->slots[sc->free_slots[--sc->nfree_slots]];
    s->msg = m;
    s->retried = false;
    m->state = MSG_RUNTIME;
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

/* Decide what to do with a message that has just been consumed or has just
 * got its turn. */
static void message_begin(struct sidecar *sc, struct message *m)
{
    char err[256];
    if (m->state == MSG_WAITING)
        goto run; /* checks already done when it was consumed */
    m->started = ev_time();
    m->published_at = 0;
    sc->stats.received++;
    histogram_observe(&sc->stats.size_in, (double)m->len);

    /* A redelivery means an earlier attempt died with its sidecar or its
     * broker connection.  Count it durably before running anything, so a
     * message that keeps killing the sidecar cannot loop forever. */
    if (m->redelivered && !m->counted && !sc->cfg->is_end_actor) {
        long attempts = m->attempts + 1;
        if (attempts < sc->cfg->max_delivery_attempts) {
            char idbuf[128];
            log_info_id(peek_id(m, idbuf, sizeof idbuf),
                        "redelivered message: requeued as attempt %ld of %ld", attempts + 1,
                        sc->cfg->max_delivery_attempts);
            message_requeue(sc, m, attempts, REQUEUE_REDELIVERED);
            return;
        }
        snprintf(err, sizeof err, "delivered %ld times without completing; giving up", attempts);
        sc->stats.failed[FAILED_POISON]++;
        char idbuf[128];
        log_warn_id(peek_id(m, idbuf, sizeof idbuf), "poison_message: %s", err);
        struct route_plan plan;
        if (envelope_parse(m->body, m->len, 0, &m->env, err + 0, 0) == 0
                ? routing_plan_error(&sc->names, &m->env, "poison_message", "PoisonMessage", err,
                                     &plan)
                : routing_plan_malformed(&sc->names, m->body, m->len, "poison_message",
                                         "PoisonMessage", err, &plan)) {
            broker_fail(sc, "out of memory");
            return;
        }
        message_publish(sc, m, &plan);
        return;
    }

    if (m->len > (size_t)sc->cfg->max_message_bytes) {
        snprintf(err, sizeof err, "message of %zu bytes exceeds ASYA_MAX_MESSAGE_BYTES (%ld)",
                 m->len, sc->cfg->max_message_bytes);
        sc->stats.failed[FAILED_TOO_LARGE]++;
        log_warn("%s", err);
        if (sc->cfg->is_end_actor) {
            message_settle(sc, m);
            return;
        }
        struct route_plan plan;
        /* Keep only the start of the body: the whole of it is what was refused. */
        if (routing_plan_malformed(&sc->names, m->body, m->len < 1024 ? m->len : 1024,
                                   "msg_parsing_error", "MessageTooLarge", err, &plan)) {
            broker_fail(sc, "out of memory");
            return;
        }
        message_publish(sc, m, &plan);
        return;
    }

    int flags = sc->cfg->is_end_actor ? ENVELOPE_ALLOW_FINISHED : 0;
    if (envelope_parse(m->body, m->len, flags, &m->env, err, sizeof err)) {
        sc->stats
            .failed[strncmp(err, "invalid JSON", 12) == 0 ? FAILED_PARSE : FAILED_VALIDATION]++;
        char idbuf[128];
        log_warn_id(peek_id(m, idbuf, sizeof idbuf), "invalid envelope: %s", err);
        if (sc->cfg->is_end_actor) {
            message_settle(sc, m);
            return;
        }
        struct route_plan plan;
        if (routing_plan_malformed(&sc->names, m->body, m->len, NULL, NULL, err, &plan)) {
            broker_fail(sc, "out of memory");
            return;
        }
        message_publish(sc, m, &plan);
        return;
    }

    if (m->attempts >= sc->cfg->max_delivery_attempts && !sc->cfg->is_end_actor) {
        snprintf(err, sizeof err, "delivered %ld times without completing; giving up", m->attempts);
        sc->stats.failed[FAILED_POISON]++;
        message_route_error(sc, m, "poison_message", "PoisonMessage", err);
        return;
    }

    if (!sc->cfg->is_end_actor) {
        const char *me = envelope_actor(&m->env, m->env.current);
        if (me && strcmp(me, sc->cfg->actor_name) != 0)
            log_warn_id(msg_id(m),
                        "route.actors[%zu] is %s, not this actor (%s); processing anyway",
                        m->env.current, me, sc->cfg->actor_name);
    }
    if (sc->nfree_slots == 0) {
        wait_push(sc, m);
        return;
    }
run:
    message_run(sc, m);
}

/* ---- broker events ------------------------------------------------------------ */

static void on_delivery(void *ctx, const struct broker_delivery *d)
{
    struct sidecar *sc = ctx;
    struct message *m = sc->free_msgs;
    if (!m) {
        /* More deliveries than the pool holds: never expected. */
        log_warn("more deliveries than ASYA_RABBITMQ_PREFETCH allows; requeueing one");
        broker_reject(sc->broker, d->tag, true);
        return;
    }
    if (m->cap < d->len + 1) {
        char *nb = realloc(m->body, d->len + 1);
        if (!nb) {
            broker_reject(sc->broker, d->tag, true);
            return;
        }
        m->body = nb;
        m->cap = d->len + 1;
    }
    sc->free_msgs = m->next;
    m->next = NULL;
    if (d->len) /* an empty body comes as a NULL pointer */
        memcpy(m->body, d->body, d->len);
    m->body[d->len] = '\0';
    m->len = d->len;
    m->tag = d->tag;
    m->attempts = d->attempts;
    m->redelivered = d->redelivered;
    m->counted = d->counted;
    m->started = ev_time();
    m->published_at = 0;
    m->state = MSG_RUNTIME; /* not yet waiting; message_begin decides */
    sc->stats.active++;
    if (sc->shutting_down || sc->runtime_down) {
        /* Arrived after the consumer was cancelled: not ours to run now. */
        message_requeue(sc, m, m->attempts,
                        sc->shutting_down ? REQUEUE_SHUTDOWN : REQUEUE_RUNTIME_UNAVAILABLE);
        return;
    }
    message_begin(sc, m);
}

static void settle_seq(struct sidecar *sc, size_t i, bool ack)
{
    struct confirm_entry *e = &sc->confirms[i];
    if (e->done)
        return;
    e->done = true;
    struct message *m = &sc->msgs[e->msg];
    if (!ack)
        m->nacked = true;
    if (m->unconfirmed > 0 && --m->unconfirmed == 0 && m->state == MSG_CONFIRMING)
        message_settle(sc, m);
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
    sc->msgs[sc->confirms[seq - sc->confirm_base].msg].returned = true;
}

/* ---- broker connection ----------------------------------------------------------- */

static void broker_poll_now(struct sidecar *sc)
{
    char err[256];
    if (!sc->broker_failed && broker_connected(sc->broker) &&
        broker_poll(sc->broker, err, sizeof err))
        broker_fail(sc, err);
}

static void broker_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)w;
    (void)revents;
    broker_poll_now(ev_userdata(loop));
}

/* End of every loop iteration: send batched acks, then read frames that
 * rabbitmq-c buffered during a synchronous call (no socket event will come
 * for those). */
static void prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    struct sidecar *sc = ev_userdata(loop);
    (void)w;
    (void)revents;
    if (!sc->broker_failed) {
        flush_acks(sc);
        if (broker_pending(sc->broker)) {
            broker_poll_now(sc);
            flush_acks(sc);
        }
    }
    if (sc->shutting_down && sc->stats.active == 0 && sc->nacks == 0)
        ev_break(loop, EVBREAK_ALL);
}

static void heartbeat_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)w;
    (void)revents;
    broker_poll_now(ev_userdata(loop));
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
    log_info("connected to the broker; queue %s, prefetch %u%s, concurrency %ld",
             sc->cfg->queue_name, sc->prefetch, sc->cfg->prefetch_auto ? " (automatic)" : "",
             sc->cfg->concurrency);
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

/* Drop every message and runtime call in progress (the broker redelivers
 * what was not acked). */
static void drop_all(struct sidecar *sc)
{
    for (unsigned i = 0; i < sc->nslots; i++) {
        struct slot *s = &sc->slots[i];
        if (!s->msg)
            continue;
        slot_close_runtime(sc, s); /* the runtime replaces the busy worker */
        ev_timer_stop(sc->loop, &s->timeout);
        s->msg = NULL;
        sc->free_slots[sc->nfree_slots++] = s->index;
    }
    sc->wait_head = sc->wait_tail = NULL;
    for (unsigned i = 0; i < sc->nmsgs; i++)
        if (sc->msgs[i].state != MSG_FREE)
            message_free(sc, &sc->msgs[i]);
    sc->stats.active = 0;
    sc->nconfirms = sc->confirm_head = 0;
    sc->nacks = 0;
}

/* Tear down after a lost connection, then reconnect with backoff. */
static void lost_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct sidecar *sc = ev_userdata(loop);
    (void)w;
    (void)revents;
    log_error("broker connection lost: %s; unacked messages will be redelivered", sc->broker_error);
    ev_io_stop(loop, &sc->broker_io);
    drop_all(sc);
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
    if (sc->shutting_down && sc->stats.active == 0)
        log_info("drained; exiting");
    /* prepare_cb breaks the loop once the last acks are out. */
}

static void grace_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct sidecar *sc = ev_userdata(loop);
    (void)w;
    (void)revents;
    log_warn("shutdown grace period over with %lld message(s) in flight; requeueing them",
             (long long)sc->stats.active);
    flush_acks(sc);
    for (unsigned i = 0; i < sc->nmsgs; i++) {
        struct message *m = &sc->msgs[i];
        if (m->state == MSG_FREE)
            continue;
        message_reject(sc, m);
        sc->stats.requeued[REQUEUE_SHUTDOWN]++;
    }
    drop_all(sc);
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
    /* Messages that have not started go straight back to the queue. */
    struct message *m;
    while ((m = wait_pop(sc)))
        message_requeue(sc, m, m->attempts, REQUEUE_SHUTDOWN);
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

/* ---- automatic prefetch --------------------------------------------------------------- */

/*
 * With ASYA_RABBITMQ_PREFETCH unset the sidecar picks between two windows by
 * the handler's moving average time.  Fast handlers (under 20 ms) get a deep
 * window, so slots stay busy while earlier results wait for the broker's
 * confirms (a few ms each).  Slow handlers (over 50 ms) get little more than
 * their slots, so messages are neither hoarded away from other replicas nor
 * left waiting past the broker's consumer timeout.  It starts narrow.
 */
#define FAST_HANDLER_S 0.020
#define SLOW_HANDLER_S 0.050

static unsigned prefetch_narrow(const struct sidecar *sc)
{
    return (unsigned)(sc->cfg->concurrency * 2 + 2);
}

static void prefetch_adapt_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct sidecar *sc = ev_userdata(loop);
    (void)w;
    (void)revents;
    if (!broker_connected(sc->broker) || sc->ewma_exec <= 0)
        return;
    unsigned n = sc->prefetch;
    if (sc->ewma_exec < FAST_HANDLER_S)
        n = (unsigned)sc->cfg->prefetch_max;
    else if (sc->ewma_exec > SLOW_HANDLER_S)
        n = prefetch_narrow(sc);
    if (n == sc->prefetch)
        return;
    char err[256];
    log_info("prefetch %u -> %u (handler %.2f ms on average)", sc->prefetch, n,
             sc->ewma_exec * 1e3);
    sc->prefetch = n;
    if (broker_set_prefetch(sc->broker, n, err, sizeof err))
        broker_fail(sc, err);
}

/* ---- runtime worker stats ----------------------------------------------------------- */

static void rstats_close(struct sidecar *sc)
{
    ev_io_stop(sc->loop, &sc->rstats.io);
    ev_timer_stop(sc->loop, &sc->rstats.timeout);
    if (sc->rstats.fd >= 0)
        close(sc->rstats.fd);
    sc->rstats.fd = -1;
    frame_reader_reset(&sc->rstats.in);
}

static void rstats_apply(struct sidecar *sc, const char *text, size_t len)
{
    json_t *o = json_loadb(text, len, 0, NULL);
    json_t *r = json_object_get(o, "worker_restarts");
    if (!json_is_object(o) || !json_is_object(r)) {
        /* The reference runtime answers an error array: stop asking. */
        sc->rstats.unsupported = true;
        log_info("the runtime does not report worker stats; metrics without them");
        json_decref(o);
        return;
    }
    static const char *const causes[4] = {"crash", "oom_kill", "timeout_kill", "exit"};
    for (int i = 0; i < 4; i++)
        sc->stats.runtime_restarts[i] = (uint64_t)json_integer_value(json_object_get(r, causes[i]));
    sc->stats.runtime_workers = json_integer_value(json_object_get(o, "workers"));
    sc->stats.runtime_busy = json_integer_value(json_object_get(o, "busy"));
    sc->stats.have_runtime_stats = true;
    json_decref(o);
}

static void rstats_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct sidecar *sc = ev_userdata(loop);
    (void)w;
    (void)revents;
    char buf[4096];
    ssize_t n = read(sc->rstats.fd, buf, sizeof buf);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        rstats_close(sc);
        return;
    }
    size_t used;
    int st = frame_reader_feed(&sc->rstats.in, buf, (size_t)n, &used);
    if (st == FRAME_INCOMPLETE)
        return;
    if (st == FRAME_COMPLETE) {
        size_t len;
        char *text = frame_reader_take(&sc->rstats.in, &len);
        rstats_apply(sc, text, len);
        free(text);
    }
    rstats_close(sc);
}

static void rstats_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)w;
    (void)revents;
    rstats_close(ev_userdata(loop));
}

static void rstats_every_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct sidecar *sc = ev_userdata(loop);
    (void)w;
    (void)revents;
    if (sc->rstats.unsupported || sc->rstats.fd >= 0 || sc->runtime_down)
        return;
    int fd = usock_connect(sc->cfg->socket_path, 1);
    if (fd < 0)
        return;
    static const char req[] = PROTO_CONTROL_STATS;
    unsigned char frame[FRAME_HEADER_LEN + sizeof req];
    frame_put_header(frame, (uint32_t)(sizeof req - 1));
    memcpy(frame + FRAME_HEADER_LEN, req, sizeof req - 1);
    /* A fresh unix socket takes a few bytes without blocking. */
    if (send(fd, frame, FRAME_HEADER_LEN + sizeof req - 1, MSG_NOSIGNAL | MSG_DONTWAIT) !=
        (ssize_t)(FRAME_HEADER_LEN + sizeof req - 1)) {
        close(fd);
        return;
    }
    sc->rstats.fd = fd;
    frame_reader_init(&sc->rstats.in, 1 << 16);
    ev_io_set(&sc->rstats.io, fd, EV_READ);
    ev_io_start(loop, &sc->rstats.io);
    ev_timer_set(&sc->rstats.timeout, 2., 0.);
    ev_timer_start(loop, &sc->rstats.timeout);
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
    sc->rstats.fd = -1;
    metrics_init(&sc->stats, cfg->metrics_namespace, cfg->queue_name);
    sc->names.actor = cfg->actor_name;
    sc->names.happy_end = cfg->happy_end;
    sc->names.error_end = cfg->error_end;
    sc->nslots = (unsigned)cfg->concurrency;
    /* Twice the largest prefetch: when the prefetch changes, the consumer
     * is replaced and the old one's deliveries are still in flight. */
    sc->nmsgs = (unsigned)cfg->prefetch_max * 2;
    sc->prefetch = (unsigned)cfg->prefetch;
    sc->slots = calloc(sc->nslots, sizeof *sc->slots);
    sc->free_slots = calloc(sc->nslots, sizeof *sc->free_slots);
    sc->msgs = calloc(sc->nmsgs, sizeof *sc->msgs);
    sc->acks = calloc(sc->nmsgs, sizeof *sc->acks);
    for (unsigned i = 0; sc->slots && i < sc->nslots; i++)
        sc->slots[i].fd = -1;
    if (!sc->slots || !sc->free_slots || !sc->msgs || !sc->acks) {
        snprintf(err, errlen, "out of memory");
        sidecar_free(sc);
        return NULL;
    }
    for (unsigned i = 0; i < sc->nslots; i++) {
        struct slot *s = &sc->slots[i];
        s->index = i;
        s->fd = -1;
        ev_io_init(&s->io, slot_io_cb, -1, EV_READ);
        ev_timer_init(&s->timeout, slot_timeout_cb, 1., 0.);
        frame_reader_init(&s->in, (size_t)cfg->max_message_bytes);
        sc->free_slots[sc->nfree_slots++] = sc->nslots - 1 - i;
    }
    for (unsigned i = sc->nmsgs; i-- > 0;) {
        sc->msgs[i].index = i;
        sc->msgs[i].next = sc->free_msgs;
        sc->free_msgs = &sc->msgs[i];
    }
    struct broker_options opt = {
        .url = cfg->amqp_url,
        .exchange = cfg->exchange,
        .queue = cfg->queue_name,
        .prefetch = (unsigned)cfg->prefetch,
        .quorum = cfg->quorum,
        .cacert = cfg->cacert,
        .tls_verify = cfg->tls_verify,
        .heartbeat_s = HEARTBEAT_S,
    };
    struct broker_events ev = {
        .delivery = on_delivery, .confirm = on_confirm, .returned = on_returned};
    sc->broker = broker_new(&opt, &ev, sc);
    if (!sc->broker) {
        snprintf(err, errlen, "out of memory");
        sidecar_free(sc);
        return NULL;
    }
    ev_io_init(&sc->broker_io, broker_io_cb, -1, EV_READ);
    ev_prepare_init(&sc->prepare, prepare_cb);
    ev_timer_init(&sc->heartbeat, heartbeat_cb, HEARTBEAT_S / 3.0, HEARTBEAT_S / 3.0);
    ev_timer_init(&sc->reconnect, reconnect_cb, 0., 0.);
    ev_timer_init(&sc->lost, lost_cb, 0., 0.);
    ev_timer_init(&sc->runtime_retry, runtime_retry_cb, RUNTIME_RETRY_FIRST, 0.);
    ev_timer_init(&sc->runtime_probe, runtime_probe_cb, RUNTIME_PROBE_S, RUNTIME_PROBE_S);
    ev_timer_init(&sc->grace, grace_cb, 1., 0.);
    /* The first look comes early: a fast handler should not start narrow for long. */
    ev_timer_init(&sc->prefetch_adapt, prefetch_adapt_cb, 0.05, PREFETCH_ADAPT_S);
    ev_io_init(&sc->rstats.io, rstats_io_cb, -1, EV_READ);
    ev_timer_init(&sc->rstats.every, rstats_every_cb, 0.5, RUNTIME_STATS_S);
    ev_timer_init(&sc->rstats.timeout, rstats_timeout_cb, 2., 0.);
    ev_signal_init(&sc->sigterm, signal_cb, SIGTERM);
    ev_signal_init(&sc->sigint, signal_cb, SIGINT);
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
    ev_prepare_start(sc->loop, &sc->prepare);
    ev_timer_start(sc->loop, &sc->heartbeat);
    ev_timer_start(sc->loop, &sc->runtime_probe);
    if (sc->cfg->prefetch_auto)
        ev_timer_start(sc->loop, &sc->prefetch_adapt);
    if (sc->cfg->metrics_enabled)
        ev_timer_start(sc->loop, &sc->rstats.every);
    ev_signal_start(sc->loop, &sc->sigterm);
    ev_signal_start(sc->loop, &sc->sigint);
    schedule_reconnect(sc);
    ev_run(sc->loop, 0);
    flush_acks(sc);
    broker_disconnect(sc->broker);
    return sc->exit_code;
}

void sidecar_free(struct sidecar *sc)
{
    if (!sc)
        return;
    for (unsigned i = 0; sc->slots && i < sc->nslots; i++) {
        if (sc->slots[i].fd >= 0)
            close(sc->slots[i].fd);
        frame_reader_reset(&sc->slots[i].in);
    }
    for (unsigned i = 0; sc->msgs && i < sc->nmsgs; i++) {
        envelope_free(&sc->msgs[i].env);
        free(sc->msgs[i].body);
    }
    if (sc->rstats.fd >= 0)
        close(sc->rstats.fd);
    frame_reader_reset(&sc->rstats.in);
    free(sc->msgs);
    free(sc->acks);
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
