/*
 * amqppub.c - the gateway's AMQP publisher (see amqppub.h).
 *
 * How it stays off the loop's back:
 *
 * - Connecting.  The TCP connect (and for amqps:// the TLS handshake) is the
 *   one step that may wait: amqp_socket_open_noblock with CONNECT_TIMEOUT_S.
 *   Everything after it - connection.start/tune/open, channel.open and
 *   confirm.select - is driven by hand from the read watcher, frame by frame
 *   (amqp_login would wait for each reply), under one HANDSHAKE_S timer.
 *
 * - Reading.  The socket rabbitmq-c opens is non-blocking; an ev_io on it
 *   drains frames with amqp_simple_wait_frame_noblock and a zero timeout.
 *   Returned messages are read frame by frame too (amqp_read_message would
 *   wait for the body).  rabbitmq-c may read ahead while it sends (it queues
 *   the frames), so after every send the read watcher is fed an event when
 *   frames are queued or buffered.
 *
 * - Writing.  amqp_basic_publish has no timeout: when the kernel's send
 *   buffer is full it polls until the broker reads.  So a publish is only
 *   handed to it while the socket polls writable (POLLOUT: about a third of
 *   the send buffer free, far more than a gateway envelope); otherwise it
 *   waits in the outbox, in order, until an EV_WRITE watcher fires.  While the
 *   broker has blocked the connection (connection.blocked: a memory or disk
 *   alarm; it then reads nothing) nothing is sent at all.  What is left is a
 *   single message larger than the free space, which rabbitmq-c finishes
 *   writing as fast as a healthy broker reads.
 *
 * - Heartbeats.  30 s is asked for; an ev_timer sends one every half period
 *   and declares the connection lost after two periods without a byte from
 *   the broker (which sends its own every half period).
 *
 * Every publish carries its delivery tag in the header x-asya-publish-seq, so
 * a basic.return (which comes before the ack for the same message, but
 * possibly after acks of later ones) names the publish it is about.
 *
 * Callbacks run from loop callbacks, never from amqppub_publish - except for
 * the refusals made on the spot (not connected, a bad routing key, out of
 * memory).  A callback may publish again, but must not free the publisher.
 */
#include "amqppub.h"

#include "log.h"
#include "urlmask.h"

#include <amqp.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CHANNEL           1
#define CHANNEL_MAX       8      /* we use one; a little room costs nothing */
#define FRAME_MAX         131072 /* as the sidecar */
#define HEARTBEAT_S       30
#define CONNECT_TIMEOUT_S 2    /* TCP (+ TLS) connect: the one step that waits */
#define HANDSHAKE_S       10.0 /* start .. confirm.select-ok, and each channel reopen */
#define CONFIRM_S         10.0 /* publish -> broker's answer */
#define BACKOFF_FIRST_S   0.5
#define BACKOFF_MAX_S     5.0
#define SEQ_HEADER        "x-asya-publish-seq"
#define CA_BUNDLE         "/etc/ssl/certs/ca-certificates.crt"
#define KEY_MAX           255 /* an AMQP short string */
/* rabbitmq-c's frame type for "the broker answered with its own protocol
 * header" (a version mismatch); private in its amqp_private.h. */
#define PSEUDOFRAME_PROTOCOL_HEADER 'A'

/* Connection states, in the order a connection goes through them. */
enum state {
    ST_IDLE,    /* no connection; the reconnect timer runs */
    ST_START,   /* protocol header sent, waiting for connection.start */
    ST_TUNE,    /* start-ok sent, waiting for connection.tune */
    ST_OPEN,    /* tune-ok and connection.open sent, waiting for open-ok */
    ST_CHANNEL, /* channel.open sent (publishes are accepted from here on) */
    ST_SELECT,  /* confirm.select sent */
    ST_READY,   /* confirm mode: publishes go out */
};

enum outcome {
    OUT_OK,
    OUT_UNROUTABLE,
    OUT_NACKED,
    OUT_TIMEOUT,
    OUT_NOT_CONNECTED,
    OUT_LOST,
    OUT_CHANNEL, /* the broker closed the channel (e.g. 404: no such exchange) */
    OUT_ERROR,   /* refused here: routing key too long, out of memory */
    OUT_N
};

static const char *const outcome_names[OUT_N] = {
    "ok",   "unroutable", "nacked", "timeout", "not_connected", "connection_lost", "channel_error",
    "error"};

static const double latency_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                         0.25,  0.5,    1,     2.5,  5,     10};
#define NBUCKETS (sizeof latency_buckets / sizeof latency_buckets[0])

/* One publish not yet answered. */
struct pub {
    struct pub *prev, *next; /* the pending list, in publish order */
    amqppub_cb cb;
    void *arg;
    double t0;          /* monotonic seconds at amqppub_publish */
    uint64_t tag;       /* delivery tag once sent; 0 while in the outbox */
    char *data;         /* routing key, NUL, body: owned while unsent, then freed */
    size_t keylen, len; /* of the routing key and the body */
    char returned[64];  /* basic.return reply text, "" when not returned */
};

/* Delivery tag -> publish, for tags base .. base+count-1 (consecutive on one
 * channel in confirm mode); answered ones are NULL.  Indexed by tag modulo
 * cap, cap a power of two. */
struct tagring {
    struct pub **slot;
    size_t cap, count;
    uint64_t base;
};

struct amqppub {
    struct ev_loop *loop;
    char *url;      /* owned copy holding the password; ci points into it */
    char *exchange; /* owned */
    char masked[256];
    struct amqp_connection_info ci;

    amqp_connection_state_t conn; /* NULL in ST_IDLE */
    enum state state;
    bool ready_once; /* this connection reached ST_READY (a loss is logged) */
    bool ever_ready; /* some connection did (later ones count as reconnects) */
    bool broken;     /* lost; teardown() runs from the next loop callback */
    bool blocked;    /* connection.blocked: the broker reads nothing */
    bool drain;      /* broken by a failed send: frames may wait unread */
    bool draining;   /* teardown is reading them (publishing is refused) */
    bool close_seen; /* connection.close came: its reason is the real one */
    int heartbeat;   /* negotiated seconds, 0 = none */
    double last_rx;  /* monotonic seconds of the last readable event */
    double backoff;  /* the next reconnect delay */
    unsigned fails;  /* connection attempts failed in a row */
    uint64_t next_tag;
    char why[256];      /* reason for the coming teardown */
    char last_err[256]; /* why we are not connected (no secrets) */
    char reason[300];   /* amqppub_ready's answer */
    char blocked_why[128];

    /* a basic.return being read: its reply text, then header and body frames */
    enum { RET_NONE, RET_HEADER, RET_BODY } ret;
    uint64_t ret_left;
    char ret_text[64];

    struct pub *head, *tail;  /* pending, in publish order; sent ones first */
    struct pub *first_unsent; /* the outbox is first_unsent .. tail */
    size_t npending;
    struct tagring ring;

    ev_io rio, wio;
    ev_timer reconnect_w, handshake_w, heartbeat_w, confirm_w, lost_w;

    unsigned long long outcomes[OUT_N];
    unsigned long long buckets[NBUCKETS]; /* non-cumulative here */
    unsigned long long lat_count, reconnects;
    double lat_sum;
};

static void teardown(struct amqppub *p);
static void flush(struct amqppub *p);

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the tag ring ---------------------------------------------------------- */

static struct pub **ring_at(const struct tagring *r, uint64_t tag)
{
    return &r->slot[tag & (r->cap - 1)];
}

static void ring_trim(struct tagring *r)
{
    while (r->count > 0 && *ring_at(r, r->base) == NULL) {
        r->base++;
        r->count--;
    }
}

/* Room for one more tag.  0 or -ENOMEM. */
static int ring_reserve(struct tagring *r)
{
    ring_trim(r);
    if (r->count < r->cap)
        return 0;
    size_t cap = r->cap ? r->cap * 2 : 256;
    struct pub **slot = calloc(cap, sizeof(struct pub *));
    if (!slot)
        return -ENOMEM;
    for (uint64_t t = r->base; t < r->base + r->count; t++)
        slot[t & (cap - 1)] = *ring_at(r, t);
    free(r->slot);
    r->slot = slot;
    r->cap = cap;
    return 0;
}

/* Record tag (the next after the last one, or any when empty); room must
 * have been reserved. */
static void ring_put(struct tagring *r, uint64_t tag, struct pub *m)
{
    if (r->count == 0)
        r->base = tag;
    *ring_at(r, tag) = m;
    r->count++;
}

static struct pub *ring_get(const struct tagring *r, uint64_t tag)
{
    if (r->count == 0 || tag < r->base || tag - r->base >= r->count)
        return NULL;
    return *ring_at(r, tag);
}

/* Forget tag and return its publish (NULL when unknown or answered). */
static struct pub *ring_take(struct tagring *r, uint64_t tag)
{
    struct pub *m = ring_get(r, tag);
    if (m) {
        *ring_at(r, tag) = NULL;
        ring_trim(r);
    }
    return m;
}

/* ---- the pending list ------------------------------------------------------ */

static void list_append(struct amqppub *p, struct pub *m)
{
    m->next = NULL;
    m->prev = p->tail;
    if (p->tail)
        p->tail->next = m;
    else
        p->head = m;
    p->tail = m;
    if (!p->first_unsent)
        p->first_unsent = m;
    p->npending++;
}

/* Take m out of the list and the tag ring. */
static void detach(struct amqppub *p, struct pub *m)
{
    if (m->tag)
        ring_take(&p->ring, m->tag);
    if (p->first_unsent == m)
        p->first_unsent = m->next;
    if (m->prev)
        m->prev->next = m->next;
    else
        p->head = m->next;
    if (m->next)
        m->next->prev = m->prev;
    else
        p->tail = m->prev;
    m->prev = m->next = NULL;
    p->npending--;
}

static void pub_free(struct pub *m)
{
    free(m->data);
    free(m);
}

/* Count the outcome, free m, then tell its owner (error may point into m: it
 * is copied first). */
static void finish(struct amqppub *p, struct pub *m, enum outcome out, const char *error)
{
    p->outcomes[out]++;
    if (out == OUT_OK || out == OUT_UNROUTABLE || out == OUT_NACKED) {
        double dt = mono_now() - m->t0;
        if (dt < 0)
            dt = 0;
        p->lat_sum += dt;
        p->lat_count++;
        for (size_t i = 0; i < NBUCKETS; i++) {
            if (dt <= latency_buckets[i]) {
                p->buckets[i]++;
                break;
            }
        }
    }
    char text[320];
    if (error)
        snprintf(text, sizeof text, "%s", error);
    amqppub_cb cb = m->cb;
    void *arg = m->arg;
    pub_free(m);
    cb(arg, out == OUT_OK, error ? text : NULL);
}

/* Detach every pending publish (all, or only the sent ones) into a chain
 * first, then fail them: their callbacks may publish again, into the list
 * this leaves behind. */
static void fail_pending(struct amqppub *p, bool sent_only, enum outcome out, const char *error)
{
    struct pub *chain = NULL, **link = &chain;
    for (struct pub *m = p->head, *next; m; m = next) {
        next = m->next;
        if (sent_only && !m->tag)
            break; /* the rest are unsent: they stay for the next channel */
        detach(p, m);
        *link = m;
        link = &m->next;
    }
    for (struct pub *m = chain, *next; m; m = next) {
        next = m->next;
        finish(p, m, out, error);
    }
}

/* Run the confirm timer for the oldest pending publish (one timer for all:
 * they share one timeout, so the list is also in deadline order). */
static void arm_confirm(struct amqppub *p)
{
    if (!p->head || ev_is_active(&p->confirm_w))
        return;
    double left = p->head->t0 + CONFIRM_S - mono_now();
    ev_timer_set(&p->confirm_w, left > 0 ? left : 0., 0.);
    ev_timer_start(p->loop, &p->confirm_w);
}

/* ---- connection state ------------------------------------------------------ */

/* The connection failed: remember why; the caller's loop callback ends with
 * teardown(), and lost_w does it for a publish made outside our callbacks. */
static void mark_broken(struct amqppub *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void mark_broken(struct amqppub *p, const char *fmt, ...)
{
    if (p->broken)
        return; /* the first reason is the real one */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->why, sizeof p->why, fmt, ap);
    va_end(ap);
    p->broken = true;
    ev_timer_set(&p->lost_w, 0., 0.);
    ev_timer_start(p->loop, &p->lost_w);
}

/* Publishes are accepted (sent or queued): a connection is open. */
static bool link_up(const struct amqppub *p)
{
    return p->state >= ST_CHANNEL && !p->broken && !p->draining;
}

static bool writable(const struct amqppub *p)
{
    struct pollfd pfd = {.fd = amqp_get_sockfd(p->conn), .events = POLLOUT};
    return poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLOUT);
}

/* rabbitmq-c reads ahead while a send waits; what it queued wakes nobody. */
static void feed_if_buffered(struct amqppub *p)
{
    if (p->conn && !p->broken && ev_is_active(&p->rio) &&
        (amqp_frames_enqueued(p->conn) || amqp_data_in_buffer(p->conn)))
        ev_feed_event(p->loop, &p->rio, EV_READ);
}

static int send_method(struct amqppub *p, amqp_channel_t ch, amqp_method_number_t id, void *m,
                       const char *what)
{
    int rc = amqp_send_method(p->conn, ch, id, m);
    if (rc != AMQP_STATUS_OK) {
        mark_broken(p, "%s: %s", what, amqp_error_string2(rc));
        p->drain = true;
        return -1;
    }
    return 0;
}

static void schedule_reconnect(struct amqppub *p)
{
    ev_timer_set(&p->reconnect_w, p->backoff, 0.);
    ev_timer_start(p->loop, &p->reconnect_w);
    p->backoff = p->backoff * 2 > BACKOFF_MAX_S ? BACKOFF_MAX_S : p->backoff * 2;
}

static void open_channel(struct amqppub *p)
{
    amqp_channel_open_t req = {.out_of_band = amqp_empty_bytes};
    if (send_method(p, CHANNEL, AMQP_CHANNEL_OPEN_METHOD, &req, "channel.open") == 0)
        p->state = ST_CHANNEL;
    ev_timer_set(&p->handshake_w, HANDSHAKE_S, 0.);
    ev_timer_start(p->loop, &p->handshake_w);
}

static void connect_start(struct amqppub *p)
{
    p->conn = amqp_new_connection();
    if (!p->conn) {
        mark_broken(p, "out of memory");
        return;
    }
    amqp_socket_t *sock;
    if (p->ci.ssl) {
        sock = amqp_ssl_socket_new(p->conn);
        if (!sock) {
            mark_broken(p, "cannot create a TLS socket");
            return;
        }
        amqp_ssl_socket_set_verify_peer(sock, 1);
        amqp_ssl_socket_set_verify_hostname(sock, 1);
        if (access(CA_BUNDLE, R_OK) == 0 && amqp_ssl_socket_set_cacert(sock, CA_BUNDLE) != 0) {
            mark_broken(p, "cannot load CA certificates from %s", CA_BUNDLE);
            return;
        }
    } else {
        sock = amqp_tcp_socket_new(p->conn);
        if (!sock) {
            mark_broken(p, "cannot create a TCP socket");
            return;
        }
    }
    struct timeval tv = {CONNECT_TIMEOUT_S, 0};
    int rc = amqp_socket_open_noblock(sock, p->ci.host, p->ci.port, &tv);
    if (rc == AMQP_STATUS_OK)
        rc = amqp_send_header(p->conn);
    if (rc != AMQP_STATUS_OK) {
        mark_broken(p, "cannot connect to %s:%d: %s", p->ci.host, p->ci.port,
                    amqp_error_string2(rc));
        return;
    }
    int fd = amqp_get_sockfd(p->conn);
    ev_io_set(&p->rio, fd, EV_READ);
    ev_io_set(&p->wio, fd, EV_WRITE);
    ev_io_start(p->loop, &p->rio);
    p->state = ST_START;
    p->last_rx = mono_now();
    ev_timer_set(&p->handshake_w, HANDSHAKE_S, 0.);
    ev_timer_start(p->loop, &p->handshake_w);
}

static void pump(struct amqppub *p);

/* A send failed, but what the broker said before that may still be unread:
 * confirms (those publishes did succeed) and often a connection.close with
 * the real reason (a broker shutting down, say). */
static void drain_unread(struct amqppub *p)
{
    char first[sizeof p->why];
    memcpy(first, p->why, sizeof first);
    p->broken = false;
    p->draining = true;
    pump(p);
    p->draining = false;
    p->broken = true;
    if (!p->close_seen)
        memcpy(p->why, first, sizeof first);
}

/* The connection is gone (or never came up): close it, fail what is
 * pending, and try again after the backoff. */
static void teardown(struct amqppub *p)
{
    if (p->drain && p->conn && p->state >= ST_CHANNEL)
        drain_unread(p);
    bool was_ready = p->ready_once;
    ev_io_stop(p->loop, &p->rio);
    ev_io_stop(p->loop, &p->wio);
    ev_timer_stop(p->loop, &p->handshake_w);
    ev_timer_stop(p->loop, &p->heartbeat_w);
    ev_timer_stop(p->loop, &p->lost_w);
    if (p->conn)
        amqp_destroy_connection(p->conn);
    p->conn = NULL;
    p->state = ST_IDLE;
    p->broken = p->blocked = p->ready_once = p->drain = p->close_seen = false;
    p->ret = RET_NONE;
    p->ring.count = 0;
    snprintf(p->last_err, sizeof p->last_err, "%s", p->why);
    schedule_reconnect(p);
    if (was_ready) {
        log_warn("broker connection lost: %s (reconnecting)", p->why);
        p->fails = 0;
    } else if (p->fails++ == 0) {
        log_warn("cannot connect to the broker %s: %s (retrying every %.1f to %.0f s)", p->masked,
                 p->why, BACKOFF_FIRST_S, BACKOFF_MAX_S);
    } else {
        log_debug("broker connection attempt %u failed: %s", p->fails, p->why);
    }
    /* Last: the callbacks see the publisher disconnected, so what they
     * publish is refused at once. */
    if (p->head) {
        char err[300];
        snprintf(err, sizeof err, "connection lost: %s", p->why);
        fail_pending(p, false, OUT_LOST, err);
    }
}

static void became_ready(struct amqppub *p)
{
    ev_timer_stop(p->loop, &p->handshake_w);
    p->state = ST_READY;
    p->next_tag = 1;
    p->ring.count = 0;
    p->backoff = BACKOFF_FIRST_S;
    if (!p->ready_once) {
        if (p->ever_ready)
            p->reconnects++;
        p->ever_ready = p->ready_once = true;
        p->fails = 0;
        log_info("connected to the broker %s (exchange \"%s\", heartbeat %d s)", p->masked,
                 p->exchange, p->heartbeat);
    } else {
        log_info("publish channel reopened");
    }
    flush(p);
}

/* ---- sending --------------------------------------------------------------- */

static void send_one(struct amqppub *p, struct pub *m)
{
    if (ring_reserve(&p->ring) != 0) {
        detach(p, m);
        finish(p, m, OUT_ERROR, "out of memory");
        return;
    }
    uint64_t tag = p->next_tag;
    amqp_table_entry_t hdr = {
        .key = amqp_cstring_bytes(SEQ_HEADER),
        .value = {.kind = AMQP_FIELD_KIND_I64, .value = {.i64 = (int64_t)tag}}};
    amqp_basic_properties_t props;
    memset(&props, 0, sizeof props);
    props._flags =
        AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_HEADERS_FLAG;
    props.content_type = amqp_cstring_bytes("application/json");
    props.delivery_mode = 2; /* persistent */
    props.headers.num_entries = 1;
    props.headers.entries = &hdr;
    amqp_bytes_t key = {m->keylen, m->data};
    amqp_bytes_t body = {m->len, m->data + m->keylen + 1};
    int rc = amqp_basic_publish(p->conn, CHANNEL, amqp_cstring_bytes(p->exchange), key, 1, 0,
                                &props, body);
    if (rc != AMQP_STATUS_OK) {
        /* m stays pending: teardown fails it with the reason. */
        mark_broken(p, "publish failed: %s", amqp_error_string2(rc));
        p->drain = true;
        return;
    }
    p->next_tag++;
    m->tag = tag;
    ring_put(&p->ring, tag, m);
    p->first_unsent = m->next;
    free(m->data);
    m->data = NULL;
}

/* Send the outbox in order while the channel is ready and the socket takes
 * more without waiting. */
static void flush(struct amqppub *p)
{
    while (p->first_unsent && p->state == ST_READY && !p->blocked && !p->broken && !p->draining) {
        if (!writable(p)) {
            ev_io_start(p->loop, &p->wio);
            break;
        }
        send_one(p, p->first_unsent);
    }
    feed_if_buffered(p);
}

/* ---- frames from the broker ------------------------------------------------ */

static bool sasl_plain_offered(amqp_bytes_t mechs)
{
    const char *s = mechs.bytes;
    for (size_t i = 0; i + 5 <= mechs.len; i++)
        if (memcmp(s + i, "PLAIN", 5) == 0 && (i == 0 || s[i - 1] == ' ') &&
            (i + 5 == mechs.len || s[i + 5] == ' '))
            return true;
    return false;
}

static void on_start(struct amqppub *p, const amqp_connection_start_t *s)
{
    if (s->version_major != AMQP_PROTOCOL_VERSION_MAJOR ||
        s->version_minor != AMQP_PROTOCOL_VERSION_MINOR) {
        mark_broken(p, "the broker speaks AMQP %u.%u", s->version_major, s->version_minor);
        return;
    }
    if (!sasl_plain_offered(s->mechanisms)) {
        mark_broken(p, "the broker does not offer SASL PLAIN");
        return;
    }
    /* PLAIN: NUL user NUL password, wiped once sent. */
    size_t ulen = strlen(p->ci.user), plen = strlen(p->ci.password);
    char *resp = malloc(ulen + plen + 2);
    if (!resp) {
        mark_broken(p, "out of memory");
        return;
    }
    resp[0] = '\0';
    memcpy(resp + 1, p->ci.user, ulen);
    resp[ulen + 1] = '\0';
    memcpy(resp + ulen + 2, p->ci.password, plen);
    /* authentication_failure_close: a bad password is a connection.close
     * with a reason, not a dropped socket; connection.blocked: see flush(). */
    amqp_table_entry_t caps[] = {
        {.key = amqp_cstring_bytes("authentication_failure_close"),
         .value = {.kind = AMQP_FIELD_KIND_BOOLEAN, .value = {.boolean = 1}}},
        {.key = amqp_cstring_bytes("connection.blocked"),
         .value = {.kind = AMQP_FIELD_KIND_BOOLEAN, .value = {.boolean = 1}}},
        {.key = amqp_cstring_bytes("publisher_confirms"),
         .value = {.kind = AMQP_FIELD_KIND_BOOLEAN, .value = {.boolean = 1}}},
        {.key = amqp_cstring_bytes("basic.nack"),
         .value = {.kind = AMQP_FIELD_KIND_BOOLEAN, .value = {.boolean = 1}}},
    };
    amqp_table_entry_t props[] = {
        {.key = amqp_cstring_bytes("product"),
         .value = {.kind = AMQP_FIELD_KIND_UTF8,
                   .value = {.bytes = amqp_cstring_bytes("asya-gateway")}}},
        {.key = amqp_cstring_bytes("connection_name"),
         .value = {.kind = AMQP_FIELD_KIND_UTF8,
                   .value = {.bytes = amqp_cstring_bytes("asya-gateway publisher")}}},
        {.key = amqp_cstring_bytes("capabilities"),
         .value = {.kind = AMQP_FIELD_KIND_TABLE,
                   .value = {.table = {.num_entries = (int)(sizeof caps / sizeof caps[0]),
                                       .entries = caps}}}},
    };
    amqp_connection_start_ok_t ok = {
        .client_properties = {.num_entries = (int)(sizeof props / sizeof props[0]),
                              .entries = props},
        .mechanism = amqp_cstring_bytes("PLAIN"),
        .response = {ulen + plen + 2, resp},
        .locale = amqp_cstring_bytes("en_US"),
    };
    int rc = send_method(p, 0, AMQP_CONNECTION_START_OK_METHOD, &ok, "connection.start-ok");
    explicit_bzero(resp, ulen + plen + 2);
    free(resp);
    if (rc == 0)
        p->state = ST_TUNE;
}

static void on_tune(struct amqppub *p, const amqp_connection_tune_t *t)
{
    int chmax = t->channel_max && t->channel_max < CHANNEL_MAX ? t->channel_max : CHANNEL_MAX;
    int fmax = t->frame_max && t->frame_max < FRAME_MAX ? (int)t->frame_max : FRAME_MAX;
    int hb = t->heartbeat && t->heartbeat < HEARTBEAT_S ? t->heartbeat : HEARTBEAT_S;
    int rc = amqp_tune_connection(p->conn, chmax, fmax, hb);
    if (rc != AMQP_STATUS_OK) {
        mark_broken(p, "tune: %s", amqp_error_string2(rc));
        return;
    }
    p->heartbeat = hb;
    amqp_connection_tune_ok_t ok = {
        .channel_max = (uint16_t)chmax, .frame_max = (uint32_t)fmax, .heartbeat = (uint16_t)hb};
    if (send_method(p, 0, AMQP_CONNECTION_TUNE_OK_METHOD, &ok, "connection.tune-ok"))
        return;
    amqp_connection_open_t open = {.virtual_host = amqp_cstring_bytes(p->ci.vhost),
                                   .capabilities = amqp_empty_bytes};
    if (send_method(p, 0, AMQP_CONNECTION_OPEN_METHOD, &open, "connection.open"))
        return;
    p->state = ST_OPEN;
    ev_timer_set(&p->heartbeat_w, hb / 2.0, hb / 2.0);
    ev_timer_start(p->loop, &p->heartbeat_w);
}

static void on_channel_close(struct amqppub *p, const amqp_channel_close_t *m)
{
    char why[256];
    snprintf(why, sizeof why, "channel closed by the broker: %u %.*s", m->reply_code,
             (int)m->reply_text.len, (const char *)m->reply_text.bytes);
    amqp_channel_close_ok_t ok = {0};
    if (send_method(p, CHANNEL, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok, "channel.close-ok"))
        return;
    if (p->state != ST_READY) {
        /* Refused while opening it: no quick retry loop, reconnect with backoff. */
        mark_broken(p, "%s", why);
        return;
    }
    log_warn("broker closed the publish channel: %s (reopening it)", why);
    p->ret = RET_NONE;
    open_channel(p);
    /* What was sent on that channel will never be confirmed; the outbox
     * waits for the new one. */
    fail_pending(p, true, OUT_CHANNEL, why);
    p->ring.count = 0;
}

/* A confirm for tag (and with multiple every earlier one). */
static void on_confirm(struct amqppub *p, uint64_t tag, bool multiple, bool ack)
{
    if (p->ring.count == 0)
        return;
    uint64_t last = p->ring.base + p->ring.count - 1;
    if (tag > last)
        tag = last; /* never given out; a broker bug, but bound the walk */
    for (uint64_t t = multiple ? p->ring.base : tag; t <= tag; t++) {
        struct pub *m = ring_take(&p->ring, t);
        if (!m)
            continue;
        m->tag = 0; /* already out of the ring */
        detach(p, m);
        if (m->returned[0]) {
            char err[96];
            snprintf(err, sizeof err, "unroutable: %s", m->returned);
            finish(p, m, OUT_UNROUTABLE, err);
        } else if (ack) {
            finish(p, m, OUT_OK, NULL);
        } else {
            finish(p, m, OUT_NACKED, "nacked by the broker");
        }
    }
}

static uint64_t header_seq(const amqp_basic_properties_t *props)
{
    if (!(props->_flags & AMQP_BASIC_HEADERS_FLAG))
        return 0;
    for (int i = 0; i < props->headers.num_entries; i++) {
        const amqp_table_entry_t *e = &props->headers.entries[i];
        if (e->key.len != strlen(SEQ_HEADER) || memcmp(e->key.bytes, SEQ_HEADER, e->key.len) != 0)
            continue;
        switch (e->value.kind) {
        case AMQP_FIELD_KIND_I64:
            return (uint64_t)e->value.value.i64;
        case AMQP_FIELD_KIND_U64:
            return e->value.value.u64;
        case AMQP_FIELD_KIND_I32:
            return (uint64_t)e->value.value.i32;
        case AMQP_FIELD_KIND_U32:
            return e->value.value.u32;
        default:
            return 0;
        }
    }
    return 0;
}

/* The content of a returned message: the header names the publish; the
 * body is skipped. */
static void on_content(struct amqppub *p, const amqp_frame_t *f)
{
    if (f->frame_type == AMQP_FRAME_HEADER && p->ret == RET_HEADER) {
        struct pub *m = ring_get(&p->ring, header_seq(f->payload.properties.decoded));
        if (m)
            snprintf(m->returned, sizeof m->returned, "%s", p->ret_text);
        p->ret_left = f->payload.properties.body_size;
        p->ret = p->ret_left ? RET_BODY : RET_NONE;
    } else if (f->frame_type == AMQP_FRAME_BODY && p->ret == RET_BODY) {
        size_t n = f->payload.body_fragment.len;
        p->ret_left = n >= p->ret_left ? 0 : p->ret_left - n;
        if (p->ret_left == 0)
            p->ret = RET_NONE;
    }
}

static void on_method(struct amqppub *p, amqp_channel_t ch, const amqp_method_t *m)
{
    if (ch == 0) {
        switch (m->id) {
        case AMQP_CONNECTION_START_METHOD:
            if (p->state == ST_START)
                on_start(p, m->decoded);
            return;
        case AMQP_CONNECTION_TUNE_METHOD:
            if (p->state == ST_TUNE)
                on_tune(p, m->decoded);
            return;
        case AMQP_CONNECTION_OPEN_OK_METHOD:
            if (p->state == ST_OPEN)
                open_channel(p);
            return;
        case AMQP_CONNECTION_CLOSE_METHOD: {
            const amqp_connection_close_t *c = m->decoded;
            amqp_connection_close_ok_t ok = {0};
            amqp_send_method(p->conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
            mark_broken(p, "broker closed the connection: %u %.*s", c->reply_code,
                        (int)c->reply_text.len, (const char *)c->reply_text.bytes);
            p->close_seen = true;
            return;
        }
        case AMQP_CONNECTION_BLOCKED_METHOD: {
            const amqp_connection_blocked_t *b = m->decoded;
            snprintf(p->blocked_why, sizeof p->blocked_why, "%.*s", (int)b->reason.len,
                     (const char *)b->reason.bytes);
            p->blocked = true;
            log_warn("the broker blocked publishing: %s", p->blocked_why);
            return;
        }
        case AMQP_CONNECTION_UNBLOCKED_METHOD:
            p->blocked = false;
            log_info("the broker unblocked publishing");
            flush(p);
            return;
        default:
            return;
        }
    }
    if (ch != CHANNEL)
        return;
    switch (m->id) {
    case AMQP_CHANNEL_OPEN_OK_METHOD:
        if (p->state == ST_CHANNEL) {
            amqp_confirm_select_t req = {.nowait = 0};
            if (send_method(p, CHANNEL, AMQP_CONFIRM_SELECT_METHOD, &req, "confirm.select") == 0)
                p->state = ST_SELECT;
        }
        return;
    case AMQP_CONFIRM_SELECT_OK_METHOD:
        if (p->state == ST_SELECT)
            became_ready(p);
        return;
    case AMQP_BASIC_ACK_METHOD: {
        const amqp_basic_ack_t *a = m->decoded;
        on_confirm(p, a->delivery_tag, a->multiple, true);
        return;
    }
    case AMQP_BASIC_NACK_METHOD: {
        const amqp_basic_nack_t *n = m->decoded;
        on_confirm(p, n->delivery_tag, n->multiple, false);
        return;
    }
    case AMQP_BASIC_RETURN_METHOD: {
        const amqp_basic_return_t *r = m->decoded;
        snprintf(p->ret_text, sizeof p->ret_text, "%.*s", (int)r->reply_text.len,
                 (const char *)r->reply_text.bytes);
        p->ret = RET_HEADER;
        return;
    }
    case AMQP_CHANNEL_CLOSE_METHOD:
        on_channel_close(p, m->decoded);
        return;
    default:
        return;
    }
}

/* Handle every frame that has arrived, without waiting for more. */
static void pump(struct amqppub *p)
{
    while (!p->broken && p->conn) {
        if (!amqp_frames_enqueued(p->conn))
            amqp_maybe_release_buffers(p->conn);
        amqp_frame_t f;
        struct timeval zero = {0, 0};
        int rc = amqp_simple_wait_frame_noblock(p->conn, &f, &zero);
        if (rc == AMQP_STATUS_TIMEOUT)
            return;
        if (rc != AMQP_STATUS_OK) {
            mark_broken(p, "%s", amqp_error_string2(rc));
            return;
        }
        switch (f.frame_type) {
        case AMQP_FRAME_METHOD:
            on_method(p, f.channel, &f.payload.method);
            break;
        case AMQP_FRAME_HEADER:
        case AMQP_FRAME_BODY:
            if (f.channel == CHANNEL)
                on_content(p, &f);
            break;
        case PSEUDOFRAME_PROTOCOL_HEADER:
            mark_broken(p, "the broker refused AMQP 0-9-1");
            break;
        default:
            break; /* heartbeats (rabbitmq-c's read-ahead queues them too) */
        }
    }
}

/* ---- watchers -------------------------------------------------------------- */

static void read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct amqppub *p = w->data;
    (void)loop;
    (void)revents;
    p->last_rx = mono_now();
    pump(p);
    if (p->broken)
        teardown(p);
}

static void write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct amqppub *p = w->data;
    (void)revents;
    ev_io_stop(loop, w);
    flush(p);
    if (p->broken)
        teardown(p);
}

static void reconnect_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct amqppub *p = w->data;
    (void)loop;
    (void)revents;
    connect_start(p);
    if (p->broken)
        teardown(p);
}

static void handshake_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct amqppub *p = w->data;
    (void)loop;
    (void)revents;
    mark_broken(p, "%s",
                p->state == ST_CHANNEL || p->state == ST_SELECT
                    ? "no answer to channel.open / confirm.select within 10 s"
                    : "no AMQP handshake within 10 s");
    teardown(p);
}

static void heartbeat_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct amqppub *p = w->data;
    (void)loop;
    (void)revents;
    if (!p->conn || p->broken)
        return;
    if (mono_now() - p->last_rx > 2.0 * p->heartbeat) {
        mark_broken(p, "no heartbeat from the broker for %d s", 2 * p->heartbeat);
    } else if (writable(p)) {
        /* Skipped when the socket is full: the broker then reads nothing
         * anyway, and a heartbeat must not wait. */
        amqp_frame_t hb = {.frame_type = AMQP_FRAME_HEARTBEAT, .channel = 0};
        int rc = amqp_send_frame(p->conn, &hb);
        if (rc != AMQP_STATUS_OK) {
            mark_broken(p, "heartbeat: %s", amqp_error_string2(rc));
            p->drain = true;
        }
        feed_if_buffered(p);
    }
    if (p->broken)
        teardown(p);
}

/* Fail what waited CONFIRM_S, oldest first; re-arm for the next. */
static void confirm_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct amqppub *p = w->data;
    (void)loop;
    (void)revents;
    double now = mono_now();
    while (p->head && now - p->head->t0 >= CONFIRM_S - 0.001) {
        struct pub *m = p->head;
        detach(p, m);
        char err[200];
        if (p->blocked)
            snprintf(err, sizeof err, "no confirm within 10 s (the broker blocked publishing: %s)",
                     p->blocked_why);
        else
            snprintf(err, sizeof err, "no confirm within 10 s");
        finish(p, m, OUT_TIMEOUT, err);
    }
    arm_confirm(p);
    if (p->broken)
        teardown(p);
}

static void lost_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct amqppub *p = w->data;
    (void)loop;
    (void)revents;
    if (p->broken)
        teardown(p);
}

/* ---- public API ------------------------------------------------------------ */

struct amqppub *amqppub_new(struct ev_loop *loop, const char *url, const char *exchange, char *err,
                            size_t errlen)
{
    struct amqppub *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->loop = loop;
    urlmask_password(url, p->masked, sizeof p->masked);
    p->url = strdup(url);
    p->exchange = strdup(exchange);
    if (!p->url || !p->exchange) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    amqp_default_connection_info(&p->ci);
    if (amqp_parse_url(p->url, &p->ci) != AMQP_STATUS_OK) {
        snprintf(err, errlen, "%s: cannot parse as amqp://user:password@host:port/vhost",
                 p->masked);
        goto fail;
    }
    /* amqp://host/ names the default vhost "/" (as Go's amqp091 and the
     * sidecar read it); rabbitmq-c would read it as the empty vhost. */
    if (!p->ci.vhost || !*p->ci.vhost)
        p->ci.vhost = "/";
    if (strlen(exchange) > KEY_MAX) {
        snprintf(err, errlen, "exchange name longer than %d bytes", KEY_MAX);
        goto fail;
    }
    p->backoff = BACKOFF_FIRST_S;
    snprintf(p->last_err, sizeof p->last_err, "still connecting");
    ev_io_init(&p->rio, read_cb, -1, EV_READ);
    ev_io_init(&p->wio, write_cb, -1, EV_WRITE);
    ev_timer_init(&p->reconnect_w, reconnect_cb, 0., 0.);
    ev_timer_init(&p->handshake_w, handshake_cb, HANDSHAKE_S, 0.);
    ev_timer_init(&p->heartbeat_w, heartbeat_cb, HEARTBEAT_S / 2.0, HEARTBEAT_S / 2.0);
    ev_timer_init(&p->confirm_w, confirm_cb, CONFIRM_S, 0.);
    ev_timer_init(&p->lost_w, lost_cb, 0., 0.);
    p->rio.data = p->wio.data = p;
    p->reconnect_w.data = p->handshake_w.data = p->heartbeat_w.data = p;
    p->confirm_w.data = p->lost_w.data = p;
    /* The first attempt runs from the loop, so amqppub_new never waits. */
    ev_timer_start(loop, &p->reconnect_w);
    return p;
fail:
    if (p->url)
        explicit_bzero(p->url, strlen(p->url));
    free(p->url);
    free(p->exchange);
    free(p);
    return NULL;
}

/* Refuse on the spot (cb runs before amqppub_publish returns). */
static void refuse(struct amqppub *p, enum outcome out, amqppub_cb cb, void *arg, const char *error)
{
    p->outcomes[out]++;
    cb(arg, false, error);
}

void amqppub_publish(struct amqppub *p, const char *routing_key, const char *body, size_t len,
                     amqppub_cb cb, void *arg)
{
    if (!link_up(p)) {
        char err[300];
        snprintf(err, sizeof err, "not connected to the broker: %s",
                 p->broken || p->draining ? p->why : p->last_err);
        refuse(p, OUT_NOT_CONNECTED, cb, arg, err);
        return;
    }
    size_t keylen = strlen(routing_key);
    if (keylen > KEY_MAX) {
        refuse(p, OUT_ERROR, cb, arg, "routing key longer than 255 bytes");
        return;
    }
    struct pub *m = calloc(1, sizeof *m);
    char *data = m ? malloc(keylen + 1 + len + 1) : NULL;
    if (!data) {
        free(m);
        refuse(p, OUT_ERROR, cb, arg, "out of memory");
        return;
    }
    memcpy(data, routing_key, keylen + 1);
    if (len)
        memcpy(data + keylen + 1, body, len);
    m->data = data;
    m->keylen = keylen;
    m->len = len;
    m->cb = cb;
    m->arg = arg;
    m->t0 = mono_now();
    list_append(p, m);
    arm_confirm(p);
    flush(p);
}

bool amqppub_ready(struct amqppub *p, const char **reason)
{
    const char *why = NULL;
    if (p->broken)
        why = p->why;
    else if (p->state == ST_IDLE)
        why = p->last_err;
    else if (p->state < ST_CHANNEL || !p->ever_ready)
        why = "connecting";
    else if (p->state < ST_READY)
        why = "reopening the publish channel";
    else if (p->blocked)
        why = p->blocked_why;
    if (!why)
        return true;
    if (reason) {
        snprintf(p->reason, sizeof p->reason, "%s%s",
                 p->blocked && !p->broken ? "the broker blocked publishing: " : "", why);
        *reason = p->reason;
    }
    return false;
}

void amqppub_metrics(struct amqppub *p, struct textbuf *out)
{
    textbuf_puts(out, "# HELP asya_gateway_publish_total Publishes to the broker by outcome.\n"
                      "# TYPE asya_gateway_publish_total counter\n");
    for (int i = 0; i < OUT_N; i++)
        textbuf_printf(out, "asya_gateway_publish_total{outcome=\"%s\"} %llu\n", outcome_names[i],
                       p->outcomes[i]);
    textbuf_puts(out, "# HELP asya_gateway_publish_latency_seconds From publish to the broker's "
                      "answer (confirm, return or nack).\n"
                      "# TYPE asya_gateway_publish_latency_seconds histogram\n");
    unsigned long long cum = 0;
    for (size_t i = 0; i < NBUCKETS; i++) {
        cum += p->buckets[i];
        textbuf_printf(out, "asya_gateway_publish_latency_seconds_bucket{le=\"%g\"} %llu\n",
                       latency_buckets[i], cum);
    }
    textbuf_printf(out,
                   "asya_gateway_publish_latency_seconds_bucket{le=\"+Inf\"} %llu\n"
                   "asya_gateway_publish_latency_seconds_sum %.6f\n"
                   "asya_gateway_publish_latency_seconds_count %llu\n",
                   p->lat_count, p->lat_sum, p->lat_count);
    textbuf_printf(out,
                   "# HELP asya_gateway_publish_pending Publishes waiting for the broker's "
                   "answer.\n"
                   "# TYPE asya_gateway_publish_pending gauge\n"
                   "asya_gateway_publish_pending %zu\n",
                   p->npending);
    textbuf_printf(out,
                   "# HELP asya_gateway_broker_reconnects_total Broker connections established "
                   "after the first.\n"
                   "# TYPE asya_gateway_broker_reconnects_total counter\n"
                   "asya_gateway_broker_reconnects_total %llu\n",
                   p->reconnects);
    textbuf_printf(out,
                   "# HELP asya_gateway_broker_connected 1 while connected with the publish "
                   "channel in confirm mode.\n"
                   "# TYPE asya_gateway_broker_connected gauge\n"
                   "asya_gateway_broker_connected %d\n",
                   p->state == ST_READY && !p->broken ? 1 : 0);
}

void amqppub_free(struct amqppub *p)
{
    if (!p)
        return;
    ev_io_stop(p->loop, &p->rio);
    ev_io_stop(p->loop, &p->wio);
    ev_timer_stop(p->loop, &p->reconnect_w);
    ev_timer_stop(p->loop, &p->handshake_w);
    ev_timer_stop(p->loop, &p->heartbeat_w);
    ev_timer_stop(p->loop, &p->confirm_w);
    ev_timer_stop(p->loop, &p->lost_w);
    if (p->conn) {
        /* A polite close when it cannot wait; its close-ok is not awaited. */
        if (p->state >= ST_CHANNEL && !p->broken && writable(p)) {
            amqp_connection_close_t req = {.reply_code = AMQP_REPLY_SUCCESS,
                                           .reply_text = amqp_cstring_bytes("gateway stopping")};
            amqp_send_method(p->conn, 0, AMQP_CONNECTION_CLOSE_METHOD, &req);
        }
        amqp_destroy_connection(p->conn);
    }
    for (struct pub *m = p->head, *next; m; m = next) {
        next = m->next;
        pub_free(m);
    }
    free(p->ring.slot);
    explicit_bzero(p->url, strlen(p->url));
    free(p->url);
    free(p->exchange);
    free(p);
}
