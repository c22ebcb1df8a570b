#include "confirm.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define CONFIRM_FIRST_CAP 256

void confirm_init(struct confirm_tracker *t)
{
    memset(t, 0, sizeof *t);
}

void confirm_free(struct confirm_tracker *t)
{
    free(t->ring);
    free(t->done);
    confirm_init(t);
}

void confirm_reset(struct confirm_tracker *t)
{
    t->head = t->count = t->unsettled = 0;
    t->base = 0;
}

static struct confirm_entry *entry_at(const struct confirm_tracker *t, size_t i)
{
    return &t->ring[(t->head + i) & (t->cap - 1)];
}

/* Drop settled entries at the front, so the ring only holds what may still
 * be confirmed. */
static void trim_front(struct confirm_tracker *t)
{
    while (t->count > 0 && entry_at(t, 0)->done) {
        t->head = (t->head + 1) & (t->cap - 1);
        t->count--;
        t->base++;
    }
}

/* Double the ring, unwrapping it so entry 0 is at index 0.  Never touches
 * the done list: a caller may track publishes while it walks that list. */
static int grow(struct confirm_tracker *t)
{
    size_t cap = t->cap ? t->cap * 2 : CONFIRM_FIRST_CAP;
    struct confirm_entry *ring = malloc(cap * sizeof *ring);
    if (!ring)
        return -ENOMEM;
    for (size_t i = 0; i < t->count; i++)
        ring[i] = *entry_at(t, i);
    free(t->ring);
    t->ring = ring;
    t->cap = cap;
    t->head = 0;
    return 0;
}

int confirm_track(struct confirm_tracker *t, uint64_t seq, unsigned msg)
{
    if (t->count == 0) {
        t->base = seq;
    } else if (seq != t->base + t->count) {
        return -EINVAL;
    }
    if (t->count == t->cap) {
        trim_front(t);
        if (t->count == 0)
            t->base = seq;
        if (t->count == t->cap && grow(t) != 0)
            return -ENOMEM;
    }
    struct confirm_entry *e = entry_at(t, t->count);
    e->msg = msg;
    e->done = false;
    t->count++;
    t->unsettled++;
    return 0;
}

long confirm_settle(struct confirm_tracker *t, uint64_t seq, bool multiple, bool ack,
                    const struct confirm_done **out)
{
    size_t n = 0;
    *out = t->done;
    if (t->count == 0 || seq < t->base)
        return 0;
    if (t->done_cap < t->count) {
        struct confirm_done *done = realloc(t->done, t->cap * sizeof *done);
        if (!done)
            return -ENOMEM;
        t->done = done;
        t->done_cap = t->cap;
        *out = done;
    }
    size_t last = (size_t)(seq - t->base);
    if (last >= t->count) {
        if (!multiple)
            return 0; /* not a number we gave out */
        last = t->count - 1;
    }
    for (size_t i = multiple ? 0 : last; i <= last; i++) {
        struct confirm_entry *e = entry_at(t, i);
        if (e->done)
            continue;
        e->done = true;
        t->unsettled--;
        t->done[n].msg = e->msg;
        t->done[n].ack = ack;
        n++;
    }
    trim_front(t);
    if (t->count == 0)
        t->head = 0;
    return (long)n;
}

long confirm_lookup(const struct confirm_tracker *t, uint64_t seq)
{
    if (t->count == 0 || seq < t->base || seq - t->base >= t->count)
        return -1;
    const struct confirm_entry *e = entry_at(t, (size_t)(seq - t->base));
    return e->done ? -1 : (long)e->msg;
}

size_t confirm_pending(const struct confirm_tracker *t)
{
    return t->unsettled;
}
