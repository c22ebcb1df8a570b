#include "memreject.h"

uint64_t memreject_hash(const void *body, size_t len)
{
    const unsigned char *p = body;
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static int find(const struct memreject *r, uint64_t h)
{
    for (unsigned i = 0; r->used && i < MEMREJECT_SLOTS; i++)
        if (r->count[i] && r->hash[i] == h)
            return (int)i;
    return -1;
}

void memreject_add(struct memreject *r, uint64_t h)
{
    int i = find(r, h);
    if (i >= 0) {
        r->count[i]++;
        return;
    }
    /* A free slot if there is one (the ring turns with every new entry, so
     * the slot at next may still be live); else the one at next, the oldest. */
    unsigned s = r->next;
    for (unsigned k = 0; r->used < MEMREJECT_SLOTS && k < MEMREJECT_SLOTS; k++) {
        unsigned c = (r->next + k) % MEMREJECT_SLOTS;
        if (!r->count[c]) {
            s = c;
            break;
        }
    }
    r->next = (s + 1) % MEMREJECT_SLOTS;
    if (!r->count[s])
        r->used++;
    r->hash[s] = h;
    r->count[s] = 1;
}

unsigned memreject_take(struct memreject *r, uint64_t h)
{
    int i = find(r, h);
    if (i < 0)
        return 0;
    unsigned n = r->count[i];
    r->count[i] = 0;
    r->used--;
    return n;
}
