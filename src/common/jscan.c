/*
 * jscan.c - the canonical-JSON scanner (jscan.h).  Recursive descent, one
 * pass, no allocation; every doubt answers "not canonical".
 */
#include "jscan.h"

#include <stdio.h>
#include <string.h>

static size_t scan(const char *s, size_t n, int depth, enum jscan_type *type);

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool is_cont(unsigned char c)
{
    return (c & 0xC0) == 0x80;
}

/* Length of the valid UTF-8 sequence at s (lead byte >= 0x80), 0 if none:
 * no overlong forms, no surrogates, nothing above U+10FFFF (as jansson). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c >= 0xC2 && c <= 0xDF)
        return n >= 2 && is_cont(s[1]) ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (n < 3 || !is_cont(s[1]) || !is_cont(s[2]))
            return 0;
        if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] > 0x9F))
            return 0;
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (n < 4 || !is_cont(s[1]) || !is_cont(s[2]) || !is_cont(s[3]))
            return 0;
        if ((c == 0xF0 && s[1] < 0x90) || (c == 0xF4 && s[1] > 0x8F))
            return 0;
        return 4;
    }
    return 0;
}

/* Bytes that stand for themselves inside a string (the common case, one
 * table load per byte): printable ASCII but the quote and the backslash. */
/* clang-format off */
static const unsigned char plain[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};
/* clang-format on */

/* s[0] is '"': the length of the canonical string, quotes included, or 0. */
static size_t scan_string(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 1;
    while (i < n) {
        while (i < n && plain[u[i]])
            i++;
        if (i >= n)
            return 0;
        unsigned char c = u[i];
        if (c == '"')
            return i + 1;
        if (c < 0x20)
            return 0;
        if (c == '\\') {
            if (i + 1 >= n || !strchr("\"\\bfnrt", s[i + 1]) || s[i + 1] == '\0')
                return 0; /* \/ and \u are printed differently by jansson */
            i += 2;
        } else if (c < 0x80) {
            i++;
        } else {
            size_t l = utf8_len(u + i, n - i);
            if (!l)
                return 0;
            i += l;
        }
    }
    return 0;
}

static size_t scan_integer(const char *s, size_t n)
{
    size_t i = s[0] == '-';
    size_t first = i;
    if (i >= n || s[i] < '0' || s[i] > '9')
        return 0;
    if (s[i] == '0') {
        i++;
        if (first) /* -0 reads back as 0 */
            return 0;
    } else {
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
    }
    if (i - first > 18)
        return 0; /* may not fit an int64: jansson decides */
    if (i < n && ((s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == 'e' || s[i] == 'E'))
        return 0; /* a leading zero, or a real */
    return i;
}

static size_t scan_literal(const char *s, size_t n, const char *word)
{
    size_t l = strlen(word);
    return n >= l && memcmp(s, word, l) == 0 ? l : 0;
}

static bool same_key(const char *a, size_t al, const char *b, size_t bl)
{
    return al == bl && memcmp(a, b, al) == 0;
}

static size_t scan_array(const char *s, size_t n, int depth)
{
    size_t i = 1;
    if (i < n && s[i] == ']')
        return 2;
    for (;;) {
        enum jscan_type t;
        size_t l = scan(s + i, n - i, depth + 1, &t);
        if (!l)
            return 0;
        i += l;
        if (i >= n)
            return 0;
        if (s[i] == ']')
            return i + 1;
        if (s[i] != ',')
            return 0;
        i++;
    }
}

static int split_object(const char *s, size_t n, bool loose, int depth, struct jscan_member *out,
                        size_t max, size_t *end);

static size_t scan_object(const char *s, size_t n, int depth)
{
    struct jscan_member members[JSCAN_MAX_KEYS];
    size_t end = 0;
    return split_object(s, n, false, depth, members, JSCAN_MAX_KEYS, &end) < 0 ? 0 : end;
}

static size_t scan(const char *s, size_t n, int depth, enum jscan_type *type)
{
    *type = JSCAN_NONE;
    if (n == 0 || depth > JSCAN_MAX_DEPTH)
        return 0;
    size_t l = 0;
    enum jscan_type t = JSCAN_NONE;
    switch (s[0]) {
    case '{':
        t = JSCAN_OBJECT;
        l = scan_object(s, n, depth);
        break;
    case '[':
        t = JSCAN_ARRAY;
        l = scan_array(s, n, depth);
        break;
    case '"':
        t = JSCAN_STRING;
        l = scan_string(s, n);
        break;
    case 't':
        t = JSCAN_TRUE;
        l = scan_literal(s, n, "true");
        break;
    case 'f':
        t = JSCAN_FALSE;
        l = scan_literal(s, n, "false");
        break;
    case 'n':
        t = JSCAN_NULL;
        l = scan_literal(s, n, "null");
        break;
    default:
        t = JSCAN_INTEGER;
        l = scan_integer(s, n);
        break;
    }
    if (l)
        *type = t;
    return l;
}

size_t jscan_value(const char *s, size_t n, enum jscan_type *type)
{
    return scan(s, n, 1, type);
}

static size_t skip_ws(const char *s, size_t i, size_t n, bool loose)
{
    while (loose && i < n && is_ws(s[i]))
        i++;
    return i;
}

/* Members of the object at s[0] (after whitespace, when loose); *end gets
 * the index after its closing brace. */
static int split_object(const char *s, size_t n, bool loose, int depth, struct jscan_member *out,
                        size_t max, size_t *end)
{
    size_t i = skip_ws(s, 0, n, loose);
    size_t count = 0;
    if (i >= n || s[i] != '{')
        return -1;
    i = skip_ws(s, i + 1, n, loose);
    if (i < n && s[i] == '}') {
        i++;
    } else {
        for (;;) {
            if (i >= n || s[i] != '"' || count == max)
                return -1;
            size_t kl = scan_string(s + i, n - i);
            if (!kl)
                return -1;
            for (size_t k = 0; k < count; k++)
                if (same_key(out[k].key, out[k].key_len, s + i, kl))
                    return -1;
            struct jscan_member *m = &out[count++];
            m->key = s + i;
            m->key_len = kl;
            i = skip_ws(s, i + kl, n, loose);
            if (i >= n || s[i] != ':')
                return -1;
            i = skip_ws(s, i + 1, n, loose);
            size_t vl = scan(s + i, n - i, depth + 1, &m->type);
            if (!vl)
                return -1;
            m->value = s + i;
            m->value_len = vl;
            i = skip_ws(s, i + vl, n, loose);
            if (i < n && s[i] == '}') {
                i++;
                break;
            }
            if (i >= n || s[i] != ',')
                return -1;
            i = skip_ws(s, i + 1, n, loose);
        }
    }
    *end = i;
    return (int)count;
}

int jscan_object(const char *s, size_t n, bool loose, struct jscan_member *out, size_t max)
{
    size_t end = 0;
    int count = split_object(s, n, loose, 1, out, max, &end);
    return count >= 0 && skip_ws(s, end, n, loose) == n ? count : -1;
}

int jscan_object_at(const char *s, size_t n, struct jscan_member *out, size_t max, size_t *len)
{
    return split_object(s, n, false, 1, out, max, len);
}

/* The character the canonical escape \e stands for. */
static char unescape(char e)
{
    static const char from[] = "\"\\bfnrt", to[] = "\"\\\b\f\n\r\t";
    return to[strchr(from, e) - from];
}

bool jscan_key_is(const struct jscan_member *m, const char *name)
{
    size_t l = strlen(name);
    const char *k = m->key + 1, *end = m->key + m->key_len - 1;
    if (!memchr(k, '\\', (size_t)(end - k))) /* no escapes: the text is the key */
        return (size_t)(end - k) == l && memcmp(k, name, l) == 0;
    /* Compared with the key as decoded. */
    while (k < end) {
        char c = *k++;
        if (c == '\\')
            c = unescape(*k++);
        if (*name++ != c)
            return false;
    }
    return *name == '\0';
}

const struct jscan_member *jscan_find(const struct jscan_member *m, size_t count, const char *name)
{
    for (size_t i = 0; i < count; i++)
        if (jscan_key_is(&m[i], name))
            return &m[i];
    return NULL;
}

long jscan_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 1; i + 1 < n; i++) {
        char c = s[i];
        if (c == '\\')
            c = unescape(s[++i]);
        if (o + 1 >= cap)
            return -1;
        out[o++] = c;
    }
    if (o >= cap)
        return -1;
    out[o] = '\0';
    return (long)o;
}

int64_t jscan_integer(const char *s, size_t n)
{
    bool neg = n && s[0] == '-';
    int64_t v = 0;
    for (size_t i = neg; i < n; i++)
        v = v * 10 + (s[i] - '0');
    return neg ? -v : v;
}

void jscan_encode(struct textbuf *b, const char *s, size_t len)
{
    textbuf_append(b, "\"", 1);
    size_t run = 0; /* bytes copied as they are, flushed before an escape */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char seq[8];
        switch (c) {
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\b':
            esc = "\\b";
            break;
        case '\f':
            esc = "\\f";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        default:
            if (c < 0x20) {
                snprintf(seq, sizeof seq, "\\u%04X", c);
                esc = seq;
            }
            break;
        }
        if (!esc)
            continue;
        textbuf_append(b, s + run, i - run);
        textbuf_append(b, esc, strlen(esc));
        run = i + 1;
    }
    textbuf_append(b, s + run, len - run);
    textbuf_append(b, "\"", 1);
}
