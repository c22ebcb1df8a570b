/*
 * splice.h - routing a runtime answer without a JSON tree: when the consumed
 * envelope was scanned in canonical form (envelope.h, ENVELOPE_SCAN) and the
 * answer is canonical too, each outgoing envelope is written by splicing
 * byte spans of the two (the envelope's members with the result's laid over
 * them, route.current advanced, fan-out ids set), which is byte for byte
 * what routing_plan_response followed by envelope_dump writes.
 *
 * Only the plain case is handled here: results that are objects with a
 * payload, routes the runtime kept (actors unchanged).  Everything else, an
 * error answer, an unexpected route.current, a changed route, any value that
 * is not canonical, is left to routing_plan_response, which also words the
 * errors.
 */
#ifndef ASYA_SPLICE_H
#define ASYA_SPLICE_H

#include "envelope.h"
#include "routing.h"

#include <stddef.h>

/*
 * Plan for the runtime's answer (len bytes) to env.  Returns 1 with plan
 * filled (release with route_plan_free), 0 when the general path must
 * decide (plan untouched), or -ENOMEM.
 */
int splice_plan_response(const struct routing_names *names, const struct envelope *env,
                         const char *answer, size_t len, struct route_plan *plan)
    __attribute__((warn_unused_result));

#endif /* ASYA_SPLICE_H */
