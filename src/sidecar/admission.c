#include "admission.h"

enum admission admission_precheck(const struct admission_input *in, long *attempts)
{
    *attempts = in->attempts;
    /* A redelivery means an earlier attempt died with its sidecar or its
     * broker connection: count it durably before running anything. */
    if (in->redelivered && !in->counted && !in->end_actor) {
        *attempts = in->attempts + 1;
        return *attempts < in->max_attempts ? ADMIT_REQUEUE : ADMIT_POISON_RAW;
    }
    if (in->len > (size_t)in->max_bytes)
        return ADMIT_TOO_LARGE;
    return ADMIT_PARSE;
}

enum admission admission_after_parse(const struct admission_input *in, bool parsed)
{
    if (!parsed)
        return ADMIT_MALFORMED;
    if (in->attempts >= in->max_attempts && !in->end_actor)
        return ADMIT_POISON;
    return ADMIT_RUN;
}
