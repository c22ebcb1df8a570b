/*
 * admission.h - what to do with a message the sidecar has just consumed,
 * before the runtime sees it (pure: no I/O).
 *
 * Owns the order of the checks: a broker redelivery is counted as a failed
 * attempt first (so a message that keeps killing the sidecar cannot loop
 * forever), then the size limit, then parsing (done by the caller between
 * the two calls), then the attempt limit.
 */
#ifndef ASYA_ADMISSION_H
#define ASYA_ADMISSION_H

#include <stdbool.h>
#include <stddef.h>

enum admission {
    ADMIT_PARSE,      /* precheck passed: parse the body, then admission_after_parse */
    ADMIT_REQUEUE,    /* redelivered: requeue as a copy with attempts + 1 */
    ADMIT_POISON_RAW, /* redelivered too often: error-end as poison (body maybe unparsed) */
    ADMIT_TOO_LARGE,  /* over ASYA_MAX_MESSAGE_BYTES: error-end (end actors: drop) */
    ADMIT_MALFORMED,  /* not a valid envelope: error-end (end actors: drop) */
    ADMIT_POISON,     /* valid, but attempts used up: error-end as poison */
    ADMIT_RUN,        /* give it to the runtime */
};

struct admission_input {
    size_t len;        /* body bytes */
    long max_bytes;    /* ASYA_MAX_MESSAGE_BYTES */
    bool redelivered;  /* the broker's flag */
    bool counted;      /* the broker counts deliveries (quorum x-delivery-count) */
    long attempts;     /* earlier failed attempts */
    long max_attempts; /* ASYA_MAX_DELIVERY_ATTEMPTS */
    bool end_actor;    /* end actors never requeue nor poison */
};

/* Checks before parsing: ADMIT_PARSE, ADMIT_REQUEUE, ADMIT_POISON_RAW or
 * ADMIT_TOO_LARGE.  For ADMIT_REQUEUE and ADMIT_POISON_RAW *attempts is the
 * count to record (attempts + 1). */
enum admission admission_precheck(const struct admission_input *in, long *attempts);

/* After parsing (parsed: the body is a valid envelope): ADMIT_MALFORMED,
 * ADMIT_POISON or ADMIT_RUN. */
enum admission admission_after_parse(const struct admission_input *in, bool parsed);

#endif /* ASYA_ADMISSION_H */
