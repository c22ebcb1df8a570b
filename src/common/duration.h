/* duration.h - Go-style durations ("300ms", "3s", "5m", "1h30m", "1.5s"). */
#ifndef ASYA_DURATION_H
#define ASYA_DURATION_H

#include <stddef.h>
#include <stdint.h>

#define DURATION_NS_PER_MS INT64_C(1000000)
#define DURATION_NS_PER_S  INT64_C(1000000000)

/* Parse text as Go's time.ParseDuration does, without a sign: one or more
 * <number><unit> pairs, units ns, us (or µs), ms, s, m, h; "0" alone is zero.
 * Returns 0 and sets *ns, or -EINVAL (bad syntax, unknown unit, negative) or
 * -ERANGE (overflows int64 nanoseconds). */
int duration_parse(const char *text, int64_t *ns) __attribute__((warn_unused_result));

/* Format ns as Go would print it (e.g. "1m30s", "300ms") into buf. */
void duration_format(int64_t ns, char *buf, size_t buflen);

#endif /* ASYA_DURATION_H */
