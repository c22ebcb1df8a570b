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
            if (whole > (UINT64_C(1) << 62))
                return -ERANGE;
            whole = whole * 10 + (uint64_t)(*p - '0');
            p++;
            digits++;
        }
        double frac = 0, scale = 1;
        if (*p == '.') {
            p++;
            while (*p >= '0' && *p <= '9') {
                scale /= 10;
                frac += (*p - '0') * scale;
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
        int64_t part = (int64_t)whole * unit + (int64_t)(frac * (double)unit);
        if (part < 0 || total > INT64_MAX - part)
            return -ERANGE;
        total += part;
    }
    *ns = total;
    return 0;
}

void duration_format(int64_t ns, char *buf, size_t buflen)
{
    if (ns <= 0) {
        snprintf(buf, buflen, "0s");
    } else if (ns < DURATION_NS_PER_S) {
        if (ns % DURATION_NS_PER_MS == 0)
            snprintf(buf, buflen, "%lldms", (long long)(ns / DURATION_NS_PER_MS));
        else if (ns % 1000 == 0)
            snprintf(buf, buflen, "%lldus", (long long)(ns / 1000));
        else
            snprintf(buf, buflen, "%lldns", (long long)ns);
    } else {
        long long h = (long long)(ns / (3600 * DURATION_NS_PER_S));
        long long m = (long long)(ns / (60 * DURATION_NS_PER_S)) % 60;
        double s = (double)(ns % (60 * DURATION_NS_PER_S)) / (double)DURATION_NS_PER_S;
        if (h)
            snprintf(buf, buflen, "%lldh%lldm%gs", h, m, s);
        else if (m)
            snprintf(buf, buflen, "%lldm%gs", m, s);
        else
            snprintf(buf, buflen, "%gs", s);
    }
}
