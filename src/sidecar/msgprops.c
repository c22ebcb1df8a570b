#include "msgprops.h"

#include <stdlib.h>
#include <string.h>

/* Integer value of a field, or -1 when it is not an integer. */
static long field_int(const amqp_field_value_t *v)
{
    switch (v->kind) {
    case AMQP_FIELD_KIND_I8:
        return v->value.i8;
    case AMQP_FIELD_KIND_U8:
        return v->value.u8;
    case AMQP_FIELD_KIND_I16:
        return v->value.i16;
    case AMQP_FIELD_KIND_U16:
        return v->value.u16;
    case AMQP_FIELD_KIND_I32:
        return v->value.i32;
    case AMQP_FIELD_KIND_U32:
        return (long)v->value.u32;
    case AMQP_FIELD_KIND_I64:
        return (long)v->value.i64;
    case AMQP_FIELD_KIND_U64:
        return (long)v->value.u64;
    default:
        return -1;
    }
}

long msgprops_attempts(const amqp_message_t *msg)
{
    long attempts = 0;
    if (!(msg->properties._flags & AMQP_BASIC_HEADERS_FLAG))
        return 0;
    const amqp_table_t *t = &msg->properties.headers;
    for (int i = 0; i < t->num_entries; i++) {
        const amqp_bytes_t *k = &t->entries[i].key;
        bool ours = k->len == 15 && memcmp(k->bytes, "x-asya-attempts", 15) == 0;
        bool quorum = k->len == 16 && memcmp(k->bytes, "x-delivery-count", 16) == 0;
        if (ours || quorum) {
            long n = field_int(&t->entries[i].value);
            if (n > attempts)
                attempts = n;
        }
    }
    return attempts;
}

/* True when the broker counts deliveries itself (quorum x-delivery-count). */
bool msgprops_counted(const amqp_message_t *msg)
{
    if (!(msg->properties._flags & AMQP_BASIC_HEADERS_FLAG))
        return false;
    const amqp_table_t *t = &msg->properties.headers;
    for (int i = 0; i < t->num_entries; i++) {
        const amqp_bytes_t *k = &t->entries[i].key;
        if (k->len == 16 && memcmp(k->bytes, "x-delivery-count", 16) == 0)
            return true;
    }
    return false;
}

uint64_t msgprops_seq(const amqp_message_t *msg)
{
    if (!(msg->properties._flags & AMQP_BASIC_MESSAGE_ID_FLAG))
        return 0;
    char buf[32];
    size_t n = msg->properties.message_id.len;
    if (n == 0 || n >= sizeof buf)
        return 0;
    memcpy(buf, msg->properties.message_id.bytes, n);
    buf[n] = '\0';
    return strtoull(buf, NULL, 10);
}
