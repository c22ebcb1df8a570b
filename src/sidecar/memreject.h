/*
 * memreject.h - deliveries the sidecar handed back to the broker because
 * holding them would pass ASYA_MAX_INFLIGHT_BYTES (pure: no I/O).
 *
 * Such a message is rejected with requeue, which the broker then redelivers
 * flagged "redelivered" (and, on a quorum queue, with x-delivery-count one
 * higher), the same marks a crash leaves.  Admission counts those as failed
 * attempts, so this ring remembers the bodies it sent back, by a 64-bit hash,
 * and says how many of a redelivery's marks are its own.  Bounded: the
 * oldest entries make room (a forgotten one costs that message one attempt).
 */
#ifndef ASYA_MEMREJECT_H
#define ASYA_MEMREJECT_H

#include <stddef.h>
#include <stdint.h>

#define MEMREJECT_SLOTS 256

struct memreject {
    uint64_t hash[MEMREJECT_SLOTS];
    unsigned count[MEMREJECT_SLOTS]; /* 0: free */
    unsigned next;                   /* the slot the next new entry takes */
    unsigned used;                   /* slots with count > 0 */
};

/* FNV-1a over the body. */
uint64_t memreject_hash(const void *body, size_t len);

/* Remember one more rejection of the body with hash h. */
void memreject_add(struct memreject *r, uint64_t h);

/* A delivery of the body with hash h arrived: returns how many rejections
 * of it were remembered (0: none) and forgets them. */
unsigned memreject_take(struct memreject *r, uint64_t h);

#endif /* ASYA_MEMREJECT_H */
