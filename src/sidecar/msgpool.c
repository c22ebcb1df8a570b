#include "msgpool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define KEEP_BUFFER_MAX (64u << 10) /* larger body buffers are freed, not kept */

int msgpool_init(struct msgpool *p, unsigned n)
{
    memset(p, 0, sizeof *p);
    p->msgs = calloc(n, sizeof *p->msgs);
    p->acks = calloc(n, sizeof *p->acks);
    if (!p->msgs || !p->acks) {
        msgpool_free(p);
        return -ENOMEM;
    }
    p->n = n;
    for (unsigned i = n; i-- > 0;) {
        p->msgs[i].index = i;
        p->msgs[i].next = p->free_list;
        p->free_list = &p->msgs[i];
    }
    return 0;
}

void msgpool_free(struct msgpool *p)
{
    for (unsigned i = 0; p->msgs && i < p->n; i++) {
        envelope_free(&p->msgs[i].env);
        route_plan_free(&p->msgs[i].parked_plan);
        free(p->msgs[i].body);
        free(p->msgs[i].rt_body);
    }
    free(p->msgs);
    free(p->acks);
    memset(p, 0, sizeof *p);
}

struct message *msgpool_take(struct msgpool *p, const char *body, size_t len, bool *nomem)
{
    struct message *m = p->free_list;
    *nomem = false;
    if (!m)
        return NULL;
    if (m->cap < len + 1) {
        char *nb = realloc(m->body, len + 1);
        if (!nb) {
            *nomem = true;
            return NULL;
        }
        m->body = nb;
        m->cap = len + 1;
    }
    p->free_list = m->next;
    m->next = NULL;
    if (len) /* an empty body comes as a NULL pointer */
        memcpy(m->body, body, len);
    m->body[len] = '\0';
    m->len = len;
    m->tag = 0;
    m->attempts = 0;
    m->redelivered = m->counted = false;
    m->started = m->published_at = 0;
    m->state = MSG_RUNTIME;
    p->active++;
    p->bytes += len;
    return m;
}

void msgpool_release(struct msgpool *p, struct message *m)
{
    envelope_free(&m->env);
    route_plan_free(&m->parked_plan);
    if (m->cap > KEEP_BUFFER_MAX) {
        free(m->body);
        m->body = NULL;
        m->cap = 0;
    }
    if (m->rt_cap > KEEP_BUFFER_MAX) {
        free(m->rt_body);
        m->rt_body = NULL;
        m->rt_cap = 0;
    }
    m->state = MSG_FREE;
    m->unconfirmed = 0;
    m->nacked = m->returned = m->error_routed = false;
    m->next = p->free_list;
    p->free_list = m;
    p->active--;
    p->bytes -= m->len;
}

void msgpool_release_all(struct msgpool *p)
{
    p->waiting.head = p->waiting.tail = NULL;
    p->parked.head = p->parked.tail = NULL;
    for (unsigned i = 0; i < p->n; i++)
        if (p->msgs[i].state != MSG_FREE)
            msgpool_release(p, &p->msgs[i]);
    p->active = 0;
    p->bytes = 0;
    p->nacks = 0;
}

static void fifo_push(struct msgfifo *f, struct message *m)
{
    m->next = NULL;
    if (f->tail)
        f->tail->next = m;
    else
        f->head = m;
    f->tail = m;
}

static void fifo_push_front(struct msgfifo *f, struct message *m)
{
    m->next = f->head;
    f->head = m;
    if (!f->tail)
        f->tail = m;
}

static struct message *fifo_pop(struct msgfifo *f)
{
    struct message *m = f->head;
    if (m) {
        f->head = m->next;
        if (!f->head)
            f->tail = NULL;
        m->next = NULL;
    }
    return m;
}

void msgpool_wait_push(struct msgpool *p, struct message *m)
{
    m->state = MSG_WAITING;
    fifo_push(&p->waiting, m);
}

void msgpool_wait_push_front(struct msgpool *p, struct message *m)
{
    m->state = MSG_WAITING;
    fifo_push_front(&p->waiting, m);
}

struct message *msgpool_wait_pop(struct msgpool *p)
{
    return fifo_pop(&p->waiting);
}

void msgpool_park(struct msgpool *p, struct message *m)
{
    m->state = MSG_PARKED;
    fifo_push(&p->parked, m);
}

void msgpool_park_front(struct msgpool *p, struct message *m)
{
    m->state = MSG_PARKED;
    fifo_push_front(&p->parked, m);
}

struct message *msgpool_unpark(struct msgpool *p)
{
    return fifo_pop(&p->parked);
}

void msgpool_ack(struct msgpool *p, const struct message *m)
{
    p->acks[p->nacks++] = m->tag;
}

/* Lowest delivery tag still in use, or UINT64_MAX. */
static uint64_t lowest_in_use(const struct msgpool *p)
{
    uint64_t low = UINT64_MAX;
    for (unsigned i = 0; i < p->n; i++)
        if (p->msgs[i].state != MSG_FREE && p->msgs[i].tag < low)
            low = p->msgs[i].tag;
    return low;
}

int msgpool_flush_acks(struct msgpool *p, uint64_t *upto, int (*single)(void *ctx, uint64_t tag),
                       void *ctx)
{
    int rc = 0;
    *upto = 0;
    if (p->nacks == 0)
        return 0;
    uint64_t low = lowest_in_use(p);
    for (size_t i = 0; i < p->nacks; i++) {
        if (p->acks[i] < low) {
            if (p->acks[i] > *upto)
                *upto = p->acks[i];
        } else {
            rc |= single(ctx, p->acks[i]);
        }
    }
    p->nacks = 0;
    return rc;
}
