#include "jspan.h"

#include <stdint.h>
#include <string.h>

static size_t skip_ws(const char *s, size_t i, size_t n)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

/* s[i] is '"'.  Returns the index after the closing quote, or SIZE_MAX. */
static size_t skip_string(const char *s, size_t i, size_t n, bool *escaped)
{
    for (i++; i < n; i++) {
        if (s[i] == '\\') {
            *escaped = true;
            i++;
        } else if (s[i] == '"') {
            return i + 1;
        }
    }
    return SIZE_MAX;
}

static size_t skip_value(const char *s, size_t i, size_t n)
{
    bool esc = false;
    if (i >= n)
        return SIZE_MAX;
    if (s[i] == '"')
        return skip_string(s, i, n, &esc);
    if (s[i] == '{' || s[i] == '[') {
        size_t depth = 0;
        while (i < n) {
            char c = s[i];
            if (c == '"') {
                i = skip_string(s, i, n, &esc);
                if (i == SIZE_MAX)
                    return SIZE_MAX;
                continue;
            }
            if (c == '{' || c == '[') {
                depth++;
            } else if (c == '}' || c == ']') {
                if (--depth == 0)
                    return i + 1;
            }
            i++;
        }
        return SIZE_MAX;
    }
    size_t start = i;
    while (i < n && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ' && s[i] != '\t' &&
           s[i] != '\n' && s[i] != '\r')
        i++;
    return i > start ? i : SIZE_MAX;
}

bool jspan_member(const char *s, size_t n, const char *key, const char **vs, size_t *vl)
{
    size_t klen = strlen(key);
    bool found = false;
    size_t i = skip_ws(s, 0, n);
    if (i >= n || s[i] != '{')
        return false;
    i = skip_ws(s, i + 1, n);
    if (i < n && s[i] == '}')
        return false;
    for (;;) {
        if (i >= n || s[i] != '"')
            return false;
        bool esc = false;
        size_t kend = skip_string(s, i, n, &esc);
        if (kend == SIZE_MAX || esc)
            return false;
        bool match = kend - i - 2 == klen && memcmp(s + i + 1, key, klen) == 0;
        i = skip_ws(s, kend, n);
        if (i >= n || s[i] != ':')
            return false;
        i = skip_ws(s, i + 1, n);
        size_t vend = skip_value(s, i, n);
        if (vend == SIZE_MAX)
            return false;
        if (match) {
            *vs = s + i;
            *vl = vend - i;
            found = true;
        }
        i = skip_ws(s, vend, n);
        if (i < n && s[i] == ',') {
            i = skip_ws(s, i + 1, n);
            continue;
        }
        return i < n && s[i] == '}' && found;
    }
}
