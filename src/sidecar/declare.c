/*
 * declare.c - destination queues: declared durable and bound on the declare
 * channel once per connection, remembered in a bounded cache.  A refusal
 * closes only the declare channel, which is reopened at once.
 */
#include "broker_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void broker_forget_all(struct broker *b)
{
    for (size_t i = 0; i < b->ndeclared; i++)
        free(b->declared[i]);
    free(b->declared);
    b->declared = NULL;
    b->ndeclared = 0;
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
    /* Destination names come from envelopes: keep at most BROKER_DECLARED_MAX,
     * forgetting the oldest (declaring again is only a round trip). */
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
        return 0; /* only the cache is lost: the next publish declares again */
    }
    b->declared = d;
    b->declared[b->ndeclared++] = copy;
    return 0;
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

int broker_declare(struct broker *b, const char *queue, char *err, size_t errlen)
{
    if (!broker_connected(b))
        return broker_lost(b, err, errlen, "%s", "not connected");
    return broker_ensure_queue(b, queue, err, errlen);
}
