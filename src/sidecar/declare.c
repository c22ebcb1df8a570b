/*
 * declare.c - destination queues: declared durable and bound on the declare
 * channel once per connection, remembered in a bounded cache.  On the
 * message path declares are asynchronous (broker_destination sends them, the
 * replies arrive through broker_poll); at connect time the own queue is
 * declared synchronously.  A refusal closes only the declare channel, which
 * is reopened at once; refused names are remembered for BROKER_REFUSED_S.
 */
#include "broker_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void broker_forget_all(struct broker *b)
{
    for (size_t i = 0; i < b->ndeclared; i++)
        free(b->declared[i]);
    free(b->declared);
    b->declared = NULL;
    b->ndeclared = 0;
    for (size_t i = 0; i < b->npending; i++)
        free(b->pending[i].queue);
    free(b->pending);
    b->pending = NULL;
    b->npending = b->pending_cap = 0;
    b->declare_reopening = false;
    for (size_t i = 0; i < BROKER_REFUSED_MAX; i++) {
        free(b->refused[i].queue);
        free(b->refused[i].why);
        b->refused[i].queue = b->refused[i].why = NULL;
    }
}

static long long now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec;
}

static amqp_table_t queue_args(const struct broker *b, amqp_table_entry_t *entry)
{
    amqp_table_t t = {0, NULL};
    if (b->opt.quorum) {
        entry->key = amqp_cstring_bytes("x-queue-type");
        entry->value.kind = AMQP_FIELD_KIND_UTF8;
        entry->value.value.bytes = amqp_cstring_bytes("quorum");
        t.num_entries = 1;
        t.entries = entry;
    }
    return t;
}

/* After the broker closed the declare channel (a refused declare or bind):
 * acknowledge and reopen it, keeping the reason in why.  Returns 0, or -1
 * when the connection is lost. */
static int reopen_declare_channel(struct broker *b, amqp_rpc_reply_t r, const char *what,
                                  const char *queue, char *why, size_t whylen, unsigned *code)
{
    amqp_channel_close_t *m = r.reply.decoded;
    *code = m->reply_code;
    snprintf(why, whylen, "%s %s refused by the broker: %u %.*s", what, queue, m->reply_code,
             (int)m->reply_text.len, (const char *)m->reply_text.bytes);
    amqp_channel_close_ok_t ok = {0};
    if (amqp_send_method(b->conn, CH_DECLARE, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok) != 0) {
        b->broken = true;
        snprintf(why, whylen, "declare %s: cannot acknowledge channel close", queue);
        return -1;
    }
    amqp_channel_open(b->conn, CH_DECLARE);
    return broker_reply_check(b, amqp_get_rpc_reply(b->conn), "reopen declare channel", why,
                              whylen);
}

static bool channel_closed(amqp_rpc_reply_t r)
{
    return r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
           r.reply.id == AMQP_CHANNEL_CLOSE_METHOD;
}

/*
 * Declare queue durable and bind it (routing key = its name) on the declare
 * channel.  A queue that already exists with other arguments (e.g. another
 * type: 406 PRECONDITION_FAILED) is fine: we only bind.  Any other refusal
 * (403 ACCESS_REFUSED...) closes only the declare channel, which is reopened.
 * Returns 0, 1 when the broker refused (why says how), or -1 when the
 * connection is lost.
 */
static int declare_and_bind(struct broker *b, const char *queue, char *err, size_t errlen)
{
    amqp_table_entry_t entry;
    unsigned code;
    amqp_queue_declare(b->conn, CH_DECLARE, amqp_cstring_bytes(queue), 0, 1, 0, 0,
                       queue_args(b, &entry));
    amqp_rpc_reply_t r = amqp_get_rpc_reply(b->conn);
    if (channel_closed(r)) {
        if (reopen_declare_channel(b, r, "queue.declare", queue, err, errlen, &code))
            return -1;
        if (code != AMQP_PRECONDITION_FAILED)
            return 1;
    } else if (broker_reply_check(b, r, "queue.declare", err, errlen)) {
        return -1;
    }
    amqp_queue_bind(b->conn, CH_DECLARE, amqp_cstring_bytes(queue),
                    amqp_cstring_bytes(b->opt.exchange), amqp_cstring_bytes(queue),
                    amqp_empty_table);
    r = amqp_get_rpc_reply(b->conn);
    if (channel_closed(r))
        return reopen_declare_channel(b, r, "queue.bind", queue, err, errlen, &code) ? -1 : 1;
    return broker_reply_check(b, r, "queue.bind", err, errlen);
}

/* ---- asynchronous declares (the message path) ---------------------------------------- */

static int send_on_declare(struct broker *b, amqp_method_number_t id, void *decoded, char *err,
                           size_t errlen)
{
    int rc = amqp_send_method(b->conn, CH_DECLARE, id, decoded);
    if (rc != AMQP_STATUS_OK)
        return broker_lost(b, err, errlen, "declare channel: %s", amqp_error_string2(rc));
    return 0;
}

static int send_declare(struct broker *b, const struct pending_declare *p, char *err, size_t errlen)
{
    amqp_table_entry_t entry;
    if (p->stage != PENDING_BIND) {
        amqp_queue_declare_t d = {.queue = amqp_cstring_bytes(p->queue),
                                  .durable = 1,
                                  .arguments = queue_args(b, &entry)};
        if (send_on_declare(b, AMQP_QUEUE_DECLARE_METHOD, &d, err, errlen))
            return -1;
    }
    amqp_queue_bind_t bind = {.queue = amqp_cstring_bytes(p->queue),
                              .exchange = amqp_cstring_bytes(b->opt.exchange),
                              .routing_key = amqp_cstring_bytes(p->queue),
                              .arguments = amqp_empty_table};
    return send_on_declare(b, AMQP_QUEUE_BIND_METHOD, &bind, err, errlen);
}

static void remember_refused(struct broker *b, const char *queue, const char *why)
{
    struct refused_queue *r = &b->refused[b->nrefused_next];
    b->nrefused_next = (b->nrefused_next + 1) % BROKER_REFUSED_MAX;
    free(r->queue);
    free(r->why);
    r->queue = strdup(queue);
    r->why = strdup(why);
    r->at = now_s();
}

static const char *refused_why(const struct broker *b, const char *queue)
{
    long long now = now_s();
    for (size_t i = 0; i < BROKER_REFUSED_MAX; i++) {
        const struct refused_queue *r = &b->refused[i];
        if (r->queue && r->why && now - r->at < BROKER_REFUSED_S && strcmp(r->queue, queue) == 0)
            return r->why;
    }
    return NULL;
}

static void remember_declared(struct broker *b, const char *queue);

static void pending_pop(struct broker *b)
{
    free(b->pending[0].queue);
    memmove(b->pending, b->pending + 1, (b->npending - 1) * sizeof *b->pending);
    b->npending--;
}

static bool is_declared(const struct broker *b, const char *queue);

int broker_destination(struct broker *b, const char *queue, char *why, size_t whylen)
{
    if (!broker_connected(b))
        return broker_lost(b, why, whylen, "%s", "not connected");
    if (is_declared(b, queue))
        return BROKER_DEST_READY;
    const char *refused = refused_why(b, queue);
    if (refused) {
        snprintf(why, whylen, "%s", refused);
        return BROKER_DEST_REFUSED;
    }
    for (size_t i = 0; i < b->npending; i++)
        if (strcmp(b->pending[i].queue, queue) == 0)
            return BROKER_DEST_PENDING;
    if (b->npending == b->pending_cap) {
        size_t cap = b->pending_cap ? b->pending_cap * 2 : 16;
        struct pending_declare *p = realloc(b->pending, cap * sizeof *p);
        if (!p)
            return broker_lost(b, why, whylen, "%s", "out of memory");
        b->pending = p;
        b->pending_cap = cap;
    }
    struct pending_declare *p = &b->pending[b->npending];
    p->queue = strdup(queue);
    p->stage = PENDING_SENT;
    if (!p->queue)
        return broker_lost(b, why, whylen, "%s", "out of memory");
    b->npending++;
    if (!b->declare_reopening && send_declare(b, p, why, whylen))
        return -1;
    return BROKER_DEST_PENDING;
}

int broker_declare_frame(struct broker *b, const amqp_frame_t *frame, char *err, size_t errlen)
{
    switch (frame->payload.method.id) {
    case AMQP_QUEUE_DECLARE_OK_METHOD:
        if (b->npending && b->pending[0].stage == PENDING_SENT)
            b->pending[0].stage = PENDING_DECLARED;
        return 0;
    case AMQP_QUEUE_BIND_OK_METHOD:
        if (b->npending) {
            remember_declared(b, b->pending[0].queue);
            pending_pop(b);
            b->ev.declared(b->ctx);
        }
        return 0;
    case AMQP_CHANNEL_CLOSE_METHOD: {
        /* The head's declare or bind was refused.  The broker drops what we
         * sent after it: acknowledge, reopen, then send the rest again. */
        amqp_channel_close_t *m = frame->payload.method.decoded;
        amqp_channel_close_ok_t ok = {0};
        if (send_on_declare(b, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok, err, errlen))
            return -1;
        amqp_channel_open_t open = {0};
        if (send_on_declare(b, AMQP_CHANNEL_OPEN_METHOD, &open, err, errlen))
            return -1;
        b->declare_reopening = true;
        if (!b->npending)
            return 0;
        struct pending_declare *head = &b->pending[0];
        if (head->stage == PENDING_SENT && m->reply_code == AMQP_PRECONDITION_FAILED) {
            head->stage = PENDING_BIND; /* exists with other arguments: only bind it */
            return 0;
        }
        char why[256];
        snprintf(why, sizeof why, "%s %s refused by the broker: %u %.*s",
                 head->stage == PENDING_SENT ? "queue.declare" : "queue.bind", head->queue,
                 m->reply_code, (int)m->reply_text.len, (const char *)m->reply_text.bytes);
        remember_refused(b, head->queue, why);
        pending_pop(b);
        b->ev.declared(b->ctx);
        return 0;
    }
    case AMQP_CHANNEL_OPEN_OK_METHOD:
        b->declare_reopening = false;
        for (size_t i = 0; i < b->npending; i++) {
            if (b->pending[i].stage == PENDING_DECLARED)
                b->pending[i].stage = PENDING_SENT;
            if (send_declare(b, &b->pending[i], err, errlen))
                return -1;
        }
        return 0;
    default:
        return 0; /* close-ok of our own closes, and the like */
    }
}

/* ---- the cache ---------------------------------------------------------------------- */

static bool is_declared(const struct broker *b, const char *queue)
{
    for (size_t i = 0; i < b->ndeclared; i++)
        if (strcmp(b->declared[i], queue) == 0)
            return true;
    return false;
}

int broker_ensure_queue(struct broker *b, const char *queue, char *err, size_t errlen)
{
    if (is_declared(b, queue))
        return 0;
    int rc = declare_and_bind(b, queue, err, errlen);
    if (rc)
        return rc;
    remember_declared(b, queue);
    return 0;
}

static void remember_declared(struct broker *b, const char *queue)
{
    /* Destination names come from envelopes: keep at most BROKER_DECLARED_MAX,
     * forgetting the oldest (declaring again is only a round trip). */
    if (is_declared(b, queue))
        return;
    if (b->ndeclared >= BROKER_DECLARED_MAX) {
        free(b->declared[0]);
        memmove(b->declared, b->declared + 1, (b->ndeclared - 1) * sizeof *b->declared);
        b->ndeclared--;
    }
    char **d = realloc(b->declared, (b->ndeclared + 1) * sizeof *d);
    char *copy = strdup(queue);
    if (!d || !copy) {
        free(copy);
        if (d)
            b->declared = d;
        return; /* only the cache is lost: the next publish declares again */
    }
    b->declared = d;
    b->declared[b->ndeclared++] = copy;
}

void broker_forget_queue(struct broker *b, const char *queue)
{
    for (size_t i = 0; i < b->ndeclared; i++) {
        if (strcmp(b->declared[i], queue) == 0) {
            free(b->declared[i]);
            b->declared[i] = b->declared[--b->ndeclared];
            return;
        }
    }
}
