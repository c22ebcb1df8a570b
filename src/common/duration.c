#include "duration.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *suffix;
    int64_t ns;
} duration_units[] = {
    /* Longer suffixes first so "ms" is not read as "m". */
    {"ns", 1},
    {"us", 1000},
    {"\xc2\xb5s", 1000}, /* U+00B5 micro sign */
    {"\xce\xbcs", 1000}, /* U+03BC greek mu */
    {"ms", DURATION_NS_PER_MS},
    {"s", DURATION_NS_PER_S},
    {"m", 60 * DURATION_NS_PER_S},
    {"h", 3600 * DURATION_NS_PER_S},
};

int duration_parse(const char *text, int64_t *ns)
{
    if (!text || !*text)
        return -EINVAL;
    if (strcmp(text, "0") == 0) {
        *ns = 0;
        return 0;
    }
    const char *p = text;
    int64_t total = 0;
    while (*p) {
        /* Number: digits, optional fraction. */
        uint64_t whole = 0;
        int digits = 0;
        while (*p >= '0' && *p <= '9') {
            if (whole > (uint64_t)INT64_MAX / 10) /* whole * 10 + 9 must fit */
                return -ERANGE;
            whole = whole * 10 + (uint64_t)(*p - '0');
            p++;
            digits++;
        }
        /* Fraction as an integer over a power of ten, as Go does, so that
         * "36.789012345s" is exact; digits past int64 precision are ignored. */
        uint64_t frac = 0;
        double scale = 1;
        if (*p == '.') {
            p++;
            while (*p >= '0' && *p <= '9') {
                if (frac <= (uint64_t)INT64_MAX / 10) {
                    frac = frac * 10 + (uint64_t)(*p - '0');
                    scale *= 10;
                }
                p++;
                digits++;
            }
        }
        if (digits == 0)
            return -EINVAL;
        size_t i, n = sizeof duration_units / sizeof duration_units[0];
        size_t len = 0;
        for (i = 0; i < n; i++) {
            len = strlen(duration_units[i].suffix);
            if (strncmp(p, duration_units[i].suffix, len) == 0)
                break;
        }
        if (i == n)
            return -EINVAL;
        p += len;
        int64_t unit = duration_units[i].ns;
        if (whole > (uint64_t)(INT64_MAX / unit))
            return -ERANGE;
        int64_t part = (int64_t)whole * unit;
        int64_t frac_ns = (int64_t)((double)frac * ((double)unit / scale));
        if (frac_ns > INT64_MAX - part) /* "2562047.9h": the fraction overflows */
            return -ERANGE;
        part += frac_ns;
        if (part < 0 || total > INT64_MAX - part)
            return -ERANGE;
        total += part;
    }
    *ns = total;
    return 0;
}

/* Prints v / 10^prec with the fraction's trailing zeros (and a bare dot) dropped. */
static void format_decimal(char *out, size_t outlen, uint64_t v, int prec)
{
    uint64_t pow = 1;
    for (int i = 0; i < prec; i++)
        pow *= 10;
    uint64_t frac = v % pow;
    int width = prec;
    while (frac && frac % 10 == 0) {
        frac /= 10;
        width--;
    }
    if (frac)
        snprintf(out, outlen, "%llu.%0*llu", (unsigned long long)(v / pow), width,
                 (unsigned long long)frac);
    else
        snprintf(out, outlen, "%llu", (unsigned long long)(v / pow));
}

void duration_format(int64_t ns, char *buf, size_t buflen)
{
    /* Same output as Go's time.Duration.String, integer arithmetic only. */
    const char *sign = ns < 0 ? "-" : "";
    uint64_t u = ns < 0 ? (uint64_t)0 - (uint64_t)ns : (uint64_t)ns;
    char num[32];
    if (u == 0) {
        snprintf(buf, buflen, "0s");
    } else if (u < 1000) {
        snprintf(buf, buflen, "%s%lluns", sign, (unsigned long long)u);
    } else if (u < 1000000) {
        format_decimal(num, sizeof num, u, 3);
        snprintf(buf, buflen, "%s%s\xc2\xb5s", sign, num); /* U+00B5, as Go prints */
    } else if (u < (uint64_t)DURATION_NS_PER_S) {
        format_decimal(num, sizeof num, u, 6);
        snprintf(buf, buflen, "%s%sms", sign, num);
    } else {
        uint64_t min = u / (60 * (uint64_t)DURATION_NS_PER_S);
        format_decimal(num, sizeof num, u % (60 * (uint64_t)DURATION_NS_PER_S), 9);
        if (min >= 60)
            snprintf(buf, buflen, "%s%lluh%llum%ss", sign, (unsigned long long)(min / 60),
                     (unsigned long long)(min % 60), num);
        else if (min)
            snprintf(buf, buflen, "%s%llum%ss", sign, (unsigned long long)min, num);
        else
            snprintf(buf, buflen, "%s%ss", sign, num);
    }
}
