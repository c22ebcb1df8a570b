#include "envcfg.h"

#include "duration.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *envcfg_str(const char *name, const char *alt, const char *def, const char **used)
{
    const char *v = getenv(name);
    if (v && *v) {
        if (used)
            *used = name;
        return v;
    }
    if (alt) {
        v = getenv(alt);
        if (v && *v) {
            if (used)
                *used = alt;
            return v;
        }
    }
    if (used)
        *used = name;
    return def;
}

int envcfg_parse_bool(const char *text, bool *out)
{
    static const char *const yes[] = {"true", "1", "yes", "on", "t", "y"};
    static const char *const no[] = {"false", "0", "no", "off", "f", "n"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -EINVAL;
}

int envcfg_bool(const char *name, const char *alt, bool def, bool *out, char *err, size_t errlen)
{
    const char *used;
    const char *v = envcfg_str(name, alt, NULL, &used);
    if (!v) {
        *out = def;
        return 0;
    }
    if (envcfg_parse_bool(v, out) != 0) {
        snprintf(err, errlen, "%s=%s: expected true or false", used, v);
        return -EINVAL;
    }
    return 0;
}

int envcfg_long(const char *name, long def, long min, long max, long *out, char *err, size_t errlen)
{
    const char *v = envcfg_str(name, NULL, NULL, NULL);
    if (!v) {
        *out = def;
        return 0;
    }
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if ((errno && errno != ERANGE) || end == v || *end != '\0') {
        snprintf(err, errlen, "%s=%s: expected an integer", name, v);
        return -EINVAL;
    }
    if (errno == ERANGE || n < min || n > max) { /* beyond long: out of range too */
        snprintf(err, errlen, "%s=%s: must be between %ld and %ld", name, v, min, max);
        return -EINVAL;
    }
    *out = n;
    return 0;
}

int envcfg_duration(const char *name, const char *def, int64_t min_ns, int64_t *out_ns, char *err,
                    size_t errlen)
{
    const char *v = envcfg_str(name, NULL, def, NULL);
    int64_t ns;
    if (!v || duration_parse(v, &ns) != 0) {
        snprintf(err, errlen, "%s=%s: expected a duration such as 300ms, 3s, 5m or 1h30m", name,
                 v ? v : "");
        return -EINVAL;
    }
    if (ns < min_ns) {
        char buf[32];
        duration_format(min_ns, buf, sizeof buf);
        snprintf(err, errlen, "%s=%s: must be at least %s", name, v, buf);
        return -EINVAL;
    }
    *out_ns = ns;
    return 0;
}

int envcfg_parse_mode(const char *text, int *out)
{
    if (!text || !*text) {
        *out = -1;
        return 0;
    }
    const char *p = text;
    if (p[0] == '0' && (p[1] == 'o' || p[1] == 'O'))
        p += 2;
    if (!*p || strlen(p) > 4)
        return -EINVAL;
    int mode = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '7')
            return -EINVAL;
        mode = mode * 8 + (*p - '0');
    }
    *out = mode;
    return 0;
}

int envcfg_mode(const char *name, const char *def, int *out, char *err, size_t errlen)
{
    const char *v = getenv(name);
    if (!v)
        v = def;
    if (envcfg_parse_mode(v, out) != 0) {
        snprintf(err, errlen, "%s=%s: expected an octal mode such as 0660 or 0o660", name, v);
        return -EINVAL;
    }
    return 0;
}
