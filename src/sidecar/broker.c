#include "broker.h"

#include "broker_int.h"
#include "msgprops.h"

#include <amqp.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* Describe an RPC reply; returns 0 when it is normal.  Connection-level
 * failures mark the broker broken. */
int broker_reply_check(struct broker *b, amqp_rpc_reply_t r, const char *what, char *err,
                       size_t errlen)
{
    switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
        return 0;
    case AMQP_RESPONSE_NONE:
        snprintf(err, errlen, "%s: no reply", what);
        break;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        snprintf(err, errlen, "%s: %s", what, amqp_error_string2(r.library_error));
        break;
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
            amqp_connection_close_t *m = r.reply.decoded;
            snprintf(err, errlen, "%s: broker closed the connection: %u %.*s", what, m->reply_code,
                     (int)m->reply_text.len, (const char *)m->reply_text.bytes);
        } else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
            amqp_channel_close_t *m = r.reply.decoded;
            snprintf(err, errlen, "%s: broker closed the channel: %u %.*s", what, m->reply_code,
                     (int)m->reply_text.len, (const char *)m->reply_text.bytes);
        } else {
            snprintf(err, errlen, "%s: unexpected server reply 0x%08x", what, r.reply.id);
        }
        break;
    }
    b->broken = true;
    return -1;
}

int broker_lost(struct broker *b, char *err, size_t errlen, const char *fmt, const char *detail)
{
    snprintf(err, errlen, fmt, detail);
    b->broken = true;
    return -1;
}

struct broker *broker_new(const struct broker_options *opt, const struct broker_events *ev,
                          void *ctx)
{
    struct broker *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->opt = *opt;
    b->ev = *ev;
    b->ctx = ctx;
    return b;
}

void broker_disconnect(struct broker *b)
{
    if (b->conn) {
        if (b->connected && !b->broken) {
            /* A polite close, but never a long wait for it at exit. */
            struct timeval quick = {2, 0};
            amqp_set_rpc_timeout(b->conn, &quick);
            amqp_channel_close(b->conn, CH_MAIN, AMQP_REPLY_SUCCESS);
            amqp_connection_close(b->conn, AMQP_REPLY_SUCCESS);
        }
        amqp_destroy_connection(b->conn);
    }
    b->conn = NULL;
    b->connected = false;
    b->broken = false;
    b->consuming = false;
    b->blocked = false;
    b->next_seq = 0;
    broker_forget_all(b);
    free(b->url_copy);
    b->url_copy = NULL;
}

void broker_free(struct broker *b)
{
    if (!b)
        return;
    broker_disconnect(b);
    free(b->body);
    free(b);
}

bool broker_connected(const struct broker *b)
{
    return b->connected && !b->broken;
}

bool broker_blocked(const struct broker *b)
{
    return broker_connected(b) && b->blocked;
}

bool broker_has_room(const struct broker *b, size_t bytes)
{
    if (!broker_connected(b))
        return true; /* the publish fails and says why */
    int fd = amqp_get_sockfd(b->conn);
    int queued = 0;
    if (ioctl(fd, SIOCOUTQ, &queued) != 0 || queued <= 0)
        return true;
    int sndbuf = 0;
    socklen_t len = sizeof sndbuf;
    if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &len) != 0 || sndbuf <= 0)
        return true;
    /* Frame headers of a publish: a few hundred bytes, counted generously. */
    return (size_t)queued + bytes + 4096 <= (size_t)sndbuf / 2;
}

bool broker_consuming(const struct broker *b)
{
    return broker_connected(b) && b->consuming;
}

int broker_fd(const struct broker *b)
{
    return b->conn ? amqp_get_sockfd(b->conn) : -1;
}

bool broker_pending(const struct broker *b)
{
    return broker_connected(b) && (amqp_frames_enqueued(b->conn) || amqp_data_in_buffer(b->conn));
}

static int open_socket(struct broker *b, char *err, size_t errlen)
{
    amqp_socket_t *sock;
    if (b->ci.ssl) {
        sock = amqp_ssl_socket_new(b->conn);
        if (!sock) {
            snprintf(err, errlen, "cannot create TLS socket");
            return -1;
        }
        amqp_ssl_socket_set_verify_peer(sock, b->opt.tls_verify);
        amqp_ssl_socket_set_verify_hostname(sock, b->opt.tls_verify);
        const char *ca = b->opt.cacert;
        if (!ca && access("/etc/ssl/certs/ca-certificates.crt", R_OK) == 0)
            ca = "/etc/ssl/certs/ca-certificates.crt";
        if (ca && amqp_ssl_socket_set_cacert(sock, ca) != AMQP_STATUS_OK) {
            snprintf(err, errlen, "cannot load CA certificates from %s", ca);
            return -1;
        }
    } else {
        sock = amqp_tcp_socket_new(b->conn);
        if (!sock) {
            snprintf(err, errlen, "cannot create TCP socket");
            return -1;
        }
    }
    struct timeval tv = {10, 0};
    int rc = amqp_socket_open_noblock(sock, b->ci.host, b->ci.port, &tv);
    if (rc != AMQP_STATUS_OK) {
        snprintf(err, errlen, "connect %s:%d: %s", b->ci.host, b->ci.port, amqp_error_string2(rc));
        return -1;
    }
    return 0;
}

int broker_connect(struct broker *b, char *err, size_t errlen)
{
    broker_disconnect(b);
    b->url_copy = strdup(b->opt.url);
    if (!b->url_copy) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    amqp_default_connection_info(&b->ci);
    if (amqp_parse_url(b->url_copy, &b->ci) != AMQP_STATUS_OK) {
        snprintf(err, errlen, "ASYA_RABBITMQ_URL cannot be parsed");
        goto fail;
    }
    /* amqp://host/ names the default vhost "/" (as Go's amqp091 reads it);
     * rabbitmq-c would read it as the empty vhost. */
    if (!b->ci.vhost || !*b->ci.vhost)
        b->ci.vhost = "/";
    b->conn = amqp_new_connection();
    if (!b->conn) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    struct timeval rpc_timeout = {30, 0};
    amqp_set_rpc_timeout(b->conn, &rpc_timeout);
    if (open_socket(b, err, errlen))
        goto fail;
    /* Ask for connection.blocked, so a memory or disk alarm is announced
     * instead of silently stopping every publish (rabbitmq-c merges these
     * capabilities into its own). */
    amqp_table_entry_t caps[2] = {
        {.key = amqp_cstring_bytes("connection.blocked"),
         .value = {.kind = AMQP_FIELD_KIND_BOOLEAN, .value = {.boolean = 1}}},
        {.key = amqp_cstring_bytes("consumer_cancel_notify"),
         .value = {.kind = AMQP_FIELD_KIND_BOOLEAN, .value = {.boolean = 1}}},
    };
    amqp_table_entry_t prop = {.key = amqp_cstring_bytes("capabilities"),
                               .value = {.kind = AMQP_FIELD_KIND_TABLE,
                                         .value = {.table = {.num_entries = 2, .entries = caps}}}};
    amqp_table_t props = {.num_entries = 1, .entries = &prop};
    amqp_rpc_reply_t r =
        amqp_login_with_properties(b->conn, b->ci.vhost, 0, 131072, b->opt.heartbeat_s, &props,
                                   AMQP_SASL_METHOD_PLAIN, b->ci.user, b->ci.password);
    if (broker_reply_check(b, r, "login", err, errlen))
        goto fail;
    b->connected = true;
    amqp_channel_open(b->conn, CH_MAIN);
    if (broker_reply_check(b, amqp_get_rpc_reply(b->conn), "channel.open", err, errlen))
        goto fail;
    amqp_channel_open(b->conn, CH_DECLARE);
    if (broker_reply_check(b, amqp_get_rpc_reply(b->conn), "channel.open", err, errlen))
        goto fail;
    amqp_exchange_declare(b->conn, CH_DECLARE, amqp_cstring_bytes(b->opt.exchange),
                          amqp_cstring_bytes("topic"), 0, 1, 0, 0, amqp_empty_table);
    if (broker_reply_check(b, amqp_get_rpc_reply(b->conn), "exchange.declare", err, errlen))
        goto fail;
    if (broker_ensure_queue(b, b->opt.queue, err, errlen))
        goto fail; /* the own queue refused is fatal too */
    amqp_basic_qos(b->conn, CH_MAIN, 0, (uint16_t)b->opt.prefetch, 0);
    if (broker_reply_check(b, amqp_get_rpc_reply(b->conn), "basic.qos", err, errlen))
        goto fail;
    amqp_confirm_select(b->conn, CH_MAIN);
    if (broker_reply_check(b, amqp_get_rpc_reply(b->conn), "confirm.select", err, errlen))
        goto fail;
    b->next_seq = 0;
    return 0;
fail:
    b->broken = true;
    broker_disconnect(b);
    return -1;
}

/*
 * basic.consume, basic.cancel and basic.qos go out without waiting for their
 * -ok replies (broker_poll skips those): none of them may hold the loop, and
 * a refusal closes the channel, which broker_poll reports as a lost
 * connection.
 */
static int send_method(struct broker *b, amqp_method_number_t id, void *decoded, const char *what,
                       char *err, size_t errlen)
{
    int rc = amqp_send_method(b->conn, CH_MAIN, id, decoded);
    if (rc != AMQP_STATUS_OK)
        return broker_lost(b, err, errlen, what, amqp_error_string2(rc));
    return 0;
}

int broker_consume(struct broker *b, char *err, size_t errlen)
{
    if (!broker_connected(b)) {
        snprintf(err, errlen, "not connected");
        return -1;
    }
    if (b->consuming)
        return 0;
    snprintf(b->consumer_tag, sizeof b->consumer_tag, "asya-%ld-%u", (long)getpid(),
             ++b->consumer_seq);
    amqp_basic_consume_t req = {
        .queue = amqp_cstring_bytes(b->opt.queue),
        .consumer_tag = amqp_cstring_bytes(b->consumer_tag),
        .arguments = amqp_empty_table,
    };
    if (send_method(b, AMQP_BASIC_CONSUME_METHOD, &req, "basic.consume: %s", err, errlen))
        return -1;
    b->consuming = true;
    return 0;
}

int broker_cancel(struct broker *b, char *err, size_t errlen)
{
    if (!broker_connected(b) || !b->consuming)
        return broker_connected(b) ? 0 : -1;
    amqp_basic_cancel_t req = {.consumer_tag = amqp_cstring_bytes(b->consumer_tag)};
    b->consuming = false;
    return send_method(b, AMQP_BASIC_CANCEL_METHOD, &req, "basic.cancel: %s", err, errlen);
}

#define HELD_MAX 8 /* declare-channel frames that may arrive inside one delivery */

/* Declare-channel frames that came while a delivery's content was read;
 * handled after the delivery (their payloads stay valid until then). */
struct held_frames {
    amqp_frame_t f[HELD_MAX];
    size_t n;
};

/* The next frame on channel ch; one on the declare channel is held. */
static int next_frame_on(struct broker *b, amqp_channel_t ch, amqp_frame_t *f,
                         struct held_frames *held, char *err, size_t errlen)
{
    for (;;) {
        int rc = amqp_simple_wait_frame(b->conn, f);
        if (rc != AMQP_STATUS_OK)
            return broker_lost(b, err, errlen, "read message: %s", amqp_error_string2(rc));
        if (f->channel == ch)
            return 0;
        if (f->channel != CH_DECLARE || held->n == HELD_MAX)
            return broker_lost(b, err, errlen, "read message: %s",
                               "a frame of another channel inside a message");
        held->f[held->n++] = *f;
    }
}

/*
 * The content of a delivery (its header and body frames), read without
 * amqp_read_message, which takes a fresh 4 KiB pool page (calloc) and a
 * copy of the body for every message.  A body of one frame is used where it
 * lies in the connection's buffers, like the properties: both stay valid
 * until the next amqp_maybe_release_buffers (broker_poll's next turn).  A
 * longer body is put together in b->body.  Returns 0, or -1 (lost).
 */
static int read_content(struct broker *b, amqp_channel_t ch, amqp_message_t *msg,
                        struct held_frames *held, char *err, size_t errlen)
{
    amqp_frame_t f;
    if (next_frame_on(b, ch, &f, held, err, errlen))
        return -1;
    if (f.frame_type != AMQP_FRAME_HEADER)
        return broker_lost(b, err, errlen, "read message: %s", "no content header");
    memset(msg, 0, sizeof *msg);
    msg->properties = *(amqp_basic_properties_t *)f.payload.properties.decoded;
    size_t size = (size_t)f.payload.properties.body_size;
    msg->body.len = size;
    msg->body.bytes = (void *)"";
    for (size_t got = 0; got < size;) {
        if (next_frame_on(b, ch, &f, held, err, errlen))
            return -1;
        if (f.frame_type != AMQP_FRAME_BODY || f.payload.body_fragment.len > size - got)
            return broker_lost(b, err, errlen, "read message: %s", "bad body frame");
        const amqp_bytes_t *frag = &f.payload.body_fragment;
        if (got == 0 && frag->len == size) {
            msg->body.bytes = frag->bytes; /* the whole body in one frame */
            return 0;
        }
        if (got == 0 && b->body_cap < size) {
            char *nb = realloc(b->body, size);
            if (!nb)
                return broker_lost(b, err, errlen, "read message: %s", "out of memory");
            b->body = nb;
            b->body_cap = size;
        }
        memcpy(b->body + got, frag->bytes, frag->len);
        got += frag->len;
        msg->body.bytes = b->body;
    }
    return 0;
}

int broker_poll(struct broker *b, char *err, size_t errlen)
{
    if (!broker_connected(b))
        return broker_lost(b, err, errlen, "%s", "not connected");
    for (;;) {
        if (!amqp_frames_enqueued(b->conn))
            amqp_maybe_release_buffers(b->conn);
        amqp_frame_t frame;
        struct timeval zero = {0, 0};
        int rc = amqp_simple_wait_frame_noblock(b->conn, &frame, &zero);
        if (rc == AMQP_STATUS_TIMEOUT)
            return 0;
        if (rc != AMQP_STATUS_OK)
            return broker_lost(b, err, errlen, "connection lost: %s", amqp_error_string2(rc));
        if (frame.frame_type != AMQP_FRAME_METHOD)
            continue; /* stray content of a message we gave up on */
        if (frame.channel == CH_DECLARE) {
            if (broker_declare_frame(b, &frame, err, errlen))
                return -1;
            if (b->broken)
                return broker_lost(b, err, errlen, "%s", "connection lost during a callback");
            continue;
        }
        switch (frame.payload.method.id) {
        case AMQP_BASIC_DELIVER_METHOD: {
            amqp_basic_deliver_t *d = frame.payload.method.decoded;
            struct broker_delivery del = {.tag = d->delivery_tag,
                                          .redelivered = d->redelivered != 0};
            amqp_message_t msg;
            struct held_frames held = {.n = 0};
            if (read_content(b, frame.channel, &msg, &held, err, errlen))
                return -1;
            del.body = msg.body.bytes;
            del.len = msg.body.len;
            del.attempts = msgprops_attempts(&msg);
            del.counted = msgprops_counted(&msg);
            b->ev.delivery(b->ctx, &del); /* also after a cancel: the sidecar decides */
            for (size_t i = 0; i < held.n; i++) {
                if (b->broken)
                    break;
                if (broker_declare_frame(b, &held.f[i], err, errlen))
                    return -1;
            }
            if (b->broken)
                return broker_lost(b, err, errlen, "%s", "connection lost during a callback");
            break;
        }
        case AMQP_BASIC_ACK_METHOD: {
            amqp_basic_ack_t *a = frame.payload.method.decoded;
            b->ev.confirm(b->ctx, a->delivery_tag, a->multiple != 0, true);
            break;
        }
        case AMQP_BASIC_NACK_METHOD: {
            amqp_basic_nack_t *n = frame.payload.method.decoded;
            b->ev.confirm(b->ctx, n->delivery_tag, n->multiple != 0, false);
            break;
        }
        case AMQP_BASIC_RETURN_METHOD: {
            amqp_basic_return_t *ret = frame.payload.method.decoded;
            char key[256];
            snprintf(key, sizeof key, "%.*s", (int)ret->routing_key.len,
                     (const char *)ret->routing_key.bytes);
            amqp_message_t msg;
            amqp_rpc_reply_t r = amqp_read_message(b->conn, frame.channel, &msg, 0);
            if (broker_reply_check(b, r, "read returned message", err, errlen))
                return -1;
            uint64_t seq = msgprops_seq(&msg);
            amqp_destroy_message(&msg);
            broker_forget_queue(b, key);
            b->ev.returned(b->ctx, seq, key);
            break;
        }
        case AMQP_CHANNEL_CLOSE_METHOD: {
            amqp_channel_close_t *m = frame.payload.method.decoded;
            char text[256];
            snprintf(text, sizeof text, "channel %u closed by broker: %u %.*s", frame.channel,
                     m->reply_code, (int)m->reply_text.len, (const char *)m->reply_text.bytes);
            return broker_lost(b, err, errlen, "%s", text);
        }
        case AMQP_CONNECTION_CLOSE_METHOD: {
            amqp_connection_close_t *m = frame.payload.method.decoded;
            char text[256];
            snprintf(text, sizeof text, "connection closed by broker: %u %.*s", m->reply_code,
                     (int)m->reply_text.len, (const char *)m->reply_text.bytes);
            return broker_lost(b, err, errlen, "%s", text);
        }
        case AMQP_BASIC_CANCEL_METHOD:
            return broker_lost(b, err, errlen, "%s",
                               "the broker cancelled the consumer (queue deleted?)");
        case AMQP_CONNECTION_BLOCKED_METHOD: {
            amqp_connection_blocked_t *m = frame.payload.method.decoded;
            char why[256];
            snprintf(why, sizeof why, "%.*s", (int)m->reason.len, (const char *)m->reason.bytes);
            b->blocked = true;
            b->ev.blocked(b->ctx, why);
            break;
        }
        case AMQP_CONNECTION_UNBLOCKED_METHOD:
            b->blocked = false;
            b->ev.unblocked(b->ctx);
            break;
        default:
            break;
        }
        if (b->broken)
            return broker_lost(b, err, errlen, "%s", "connection lost during a callback");
    }
}

int broker_publish_queue(struct broker *b, const char *queue, const char *body, size_t len,
                         long attempts, uint64_t *seq, char *err, size_t errlen)
{
    if (!broker_connected(b))
        return broker_lost(b, err, errlen, "%s", "not connected");
    uint64_t s = b->next_seq + 1;
    char mid[24];
    snprintf(mid, sizeof mid, "%llu", (unsigned long long)s);
    amqp_basic_properties_t props;
    memset(&props, 0, sizeof props);
    props._flags =
        AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG;
    props.content_type = amqp_cstring_bytes("application/json");
    props.delivery_mode = 2; /* persistent */
    props.message_id = amqp_cstring_bytes(mid);
    amqp_table_entry_t hdr;
    if (attempts > 0) {
        hdr.key = amqp_cstring_bytes("x-asya-attempts");
        hdr.value.kind = AMQP_FIELD_KIND_I64;
        hdr.value.value.i64 = attempts;
        props._flags |= AMQP_BASIC_HEADERS_FLAG;
        props.headers.num_entries = 1;
        props.headers.entries = &hdr;
    }
    amqp_bytes_t payload = {len, (void *)body};
    int rc = amqp_basic_publish(b->conn, CH_MAIN, amqp_cstring_bytes(b->opt.exchange),
                                amqp_cstring_bytes(queue), 1, 0, &props, payload);
    if (rc != AMQP_STATUS_OK)
        return broker_lost(b, err, errlen, "publish failed: %s", amqp_error_string2(rc));
    b->next_seq = s;
    *seq = s;
    return 0;
}

int broker_set_prefetch(struct broker *b, unsigned prefetch, char *err, size_t errlen)
{
    b->opt.prefetch = prefetch;
    if (!broker_connected(b))
        return 0;
    amqp_basic_qos_t qos = {.prefetch_count = (uint16_t)prefetch};
    if (send_method(b, AMQP_BASIC_QOS_METHOD, &qos, "basic.qos: %s", err, errlen))
        return -1;
    if (!b->consuming)
        return 0;
    /* RabbitMQ applies a per-consumer prefetch to consumers started after
     * it (global qos is not available on quorum queues), so start a new
     * consumer and cancel the old one; deliveries already sent to the old
     * one stay valid and arrive as usual. */
    char old[sizeof b->consumer_tag];
    memcpy(old, b->consumer_tag, sizeof old);
    b->consuming = false;
    if (broker_consume(b, err, errlen))
        return -1;
    amqp_basic_cancel_t req = {.consumer_tag = amqp_cstring_bytes(old)};
    return send_method(b, AMQP_BASIC_CANCEL_METHOD, &req, "basic.cancel: %s", err, errlen);
}

int broker_ack(struct broker *b, uint64_t tag, bool multiple)
{
    if (!broker_connected(b))
        return -1;
    if (amqp_basic_ack(b->conn, CH_MAIN, tag, multiple) != AMQP_STATUS_OK) {
        b->broken = true;
        return -1;
    }
    return 0;
}

int broker_reject(struct broker *b, uint64_t tag, bool requeue)
{
    if (!broker_connected(b))
        return -1;
    if (amqp_basic_reject(b->conn, CH_MAIN, tag, requeue) != AMQP_STATUS_OK) {
        b->broken = true;
        return -1;
    }
    return 0;
}
