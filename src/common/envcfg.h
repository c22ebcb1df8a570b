/*
 * envcfg.h - reading configuration from the environment.
 *
 * Each getter reads one variable (or the first set of two spellings), applies
 * the default when it is unset or empty, and on a bad value returns -EINVAL
 * with a one-line message naming the variable in err.
 */
#ifndef ASYA_ENVCFG_H
#define ASYA_ENVCFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Value of the first of name, alt (may be NULL) that is set and non-empty,
 * else def.  Borrowed from environ or def.  *used (may be NULL) gets the name
 * that was used, or name when the default applied. */
const char *envcfg_str(const char *name, const char *alt, const char *def, const char **used);

/* Booleans: true/false, 1/0, yes/no, on/off (any case). */
int envcfg_bool(const char *name, const char *alt, bool def, bool *out, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Decimal integer in [min, max]. */
int envcfg_long(const char *name, long def, long min, long max, long *out, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Go-style duration (see duration.h) in nanoseconds, at least min_ns. */
int envcfg_duration(const char *name, const char *def, int64_t min_ns, int64_t *out_ns, char *err,
                    size_t errlen) __attribute__((warn_unused_result));

/* File mode in octal: "0660", "660" or Python's "0o660".  Empty (or unset
 * with def NULL) gives -1, meaning "leave the mode as created". */
int envcfg_mode(const char *name, const char *def, int *out, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Parse an octal mode string as envcfg_mode does; returns 0 or -EINVAL. */
int envcfg_parse_mode(const char *text, int *out) __attribute__((warn_unused_result));

/* Parse a boolean as envcfg_bool does; returns 0 or -EINVAL. */
int envcfg_parse_bool(const char *text, bool *out) __attribute__((warn_unused_result));

#endif /* ASYA_ENVCFG_H */
