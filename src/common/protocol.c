#include "protocol.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at p, or 0 if the bytes there are not one. */
static size_t utf8_seq_len(const unsigned char *p)
{
    unsigned char c = p[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
    else
        return 0;
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
    return n;
}

/* json_string(s), except that bytes which are not valid UTF-8 become '?', so a
 * handler's message with bad bytes still yields an answer.  NULL on OOM. */
static json_t *string_lossy(const char *s)
{
    json_t *v = json_string(s);
    if (v || !s)
        return v;
    char *copy = strdup(s);
    if (!copy)
        return NULL;
    for (unsigned char *p = (unsigned char *)copy; *p;) {
        size_t n = utf8_seq_len(p);
        if (n == 0)
            *p++ = '?';
        else
            p += n;
    }
    v = json_string(copy);
    free(copy);
    return v;
}

json_t *protocol_error_json(const char *code, const char *message, const char *type,
                            const char *traceback)
{
    json_t *details = json_object();
    json_t *err = json_object();
    json_t *arr = json_array();
    if (!details || !err || !arr)
        goto fail;
    if (json_object_set_new(details, "message", string_lossy(message ? message : "")) ||
        json_object_set_new(details, "type", string_lossy(type ? type : "")))
        goto fail;
    if (traceback && json_object_set_new(details, "traceback", string_lossy(traceback)))
        goto fail;
    if (json_object_set_new(err, "error", json_string(code)))
        goto fail;
    if (json_object_set_new(err, "details", details)) {
        details = NULL;
        goto fail;
    }
    details = NULL;
    if (json_array_append_new(arr, err)) {
        err = NULL;
        goto fail;
    }
    return arr;
fail:
    json_decref(details);
    json_decref(err);
    json_decref(arr);
    return NULL;
}

char *protocol_error_text(const char *code, const char *message, const char *type,
                          const char *traceback, size_t *len)
{
    json_t *v = protocol_error_json(code, message, type, traceback);
    if (!v)
        return NULL;
    char *s = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    if (s && len)
        *len = strlen(s);
    return s;
}

/* Fills out for an object carrying "error"; returns 0 or -EINVAL. */
static int take_error(json_t *obj, struct runtime_response *out, char *err, size_t errlen)
{
    json_t *code = json_object_get(obj, "error");
    if (!json_is_string(code)) {
        snprintf(err, errlen, "runtime error code must be a string");
        return -EINVAL;
    }
    json_t *details = json_object_get(obj, "details");
    out->kind = RESPONSE_ERROR;
    out->error = json_string_value(code);
    out->details = json_is_object(details) ? details : NULL;
    return 0;
}

int protocol_parse_response(const char *data, size_t len, struct runtime_response *out, char *err,
                            size_t errlen)
{
    memset(out, 0, sizeof *out);
    json_error_t jerr;
    /* JSON_ALLOW_NUL: jansson itself writes a NUL inside a string as "\u0000". */
    json_t *root = json_loadb(data, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!root) {
        /* jansson quotes the input near the error: keep the message printable ASCII. */
        for (char *q = jerr.text; *q; q++)
            if ((unsigned char)*q < 0x20 || (unsigned char)*q >= 0x7f)
                *q = '?';
        snprintf(err, errlen, "runtime answered invalid JSON at line %d column %d: %s", jerr.line,
                 jerr.column, jerr.text);
        return -EINVAL;
    }
    out->root = root;
    int rc = 0;
    if (json_is_null(root) || (json_is_array(root) && json_array_size(root) == 0)) {
        out->kind = RESPONSE_EMPTY;
    } else if (json_is_object(root)) {
        if (json_object_get(root, "error")) {
            rc = take_error(root, out, err, errlen);
        } else if (!json_object_get(root, "payload")) {
            snprintf(err, errlen, "runtime result has no payload");
            rc = -EINVAL;
        } else {
            /* A bare result object: wrap it so callers see one shape. */
            json_t *arr = json_array();
            if (!arr || json_array_append(arr, root)) {
                json_decref(arr);
                snprintf(err, errlen, "out of memory");
                rc = -ENOMEM;
            } else {
                json_decref(root);
                out->root = arr;
                out->results = arr;
                out->kind = RESPONSE_RESULTS;
            }
        }
    } else if (json_is_array(root)) {
        json_t *first = json_array_get(root, 0);
        if (json_is_object(first) && json_object_get(first, "error") &&
            !json_object_get(first, "payload")) {
            rc = take_error(first, out, err, errlen);
        } else {
            size_t i;
            json_t *item;
            json_array_foreach(root, i, item)
            {
                if (!json_is_object(item)) {
                    snprintf(err, errlen, "runtime result %zu is not an object", i);
                    rc = -EINVAL;
                    break;
                }
                if (!json_object_get(item, "payload")) {
                    snprintf(err, errlen, "runtime result %zu has no payload", i);
                    rc = -EINVAL;
                    break;
                }
            }
            out->kind = RESPONSE_RESULTS;
            out->results = root;
        }
    } else {
        snprintf(err, errlen, "runtime answer must be an array, object or null");
        rc = -EINVAL;
    }
    if (rc)
        protocol_response_free(out);
    return rc;
}

int protocol_is_control(const char *data, size_t len)
{
    if (len > 256 || !memmem(data, len, PROTO_CONTROL_KEY, sizeof PROTO_CONTROL_KEY - 1))
        return 0;
    json_t *root = json_loadb(data, len, 0, NULL);
    int is = json_is_object(root) && json_is_string(json_object_get(root, PROTO_CONTROL_KEY)) &&
             !json_object_get(root, "payload");
    json_decref(root);
    return is;
}

/* ---- handler progress ------------------------------------------------------- */

/* The length of at most max bytes of s that ends on a UTF-8 character boundary. */
static size_t utf8_cut(const char *s, size_t max)
{
    size_t n = strnlen(s, max + 1);
    if (n <= max)
        return n;
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return n;
}

char *protocol_progress_text(double fraction, const char *message, size_t *len)
{
    json_t *o = json_pack("{s:f}", PROTO_PROGRESS_KEY, fraction);
    if (o && message) {
        json_t *m = json_stringn(message, utf8_cut(message, PROTO_PROGRESS_MESSAGE_MAX));
        if (!m) /* not UTF-8: say so rather than drop the report */
            m = json_string("(progress message is not valid UTF-8)");
        if (!m || json_object_set_new(o, "message", m)) {
            json_decref(o);
            return NULL;
        }
    }
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    if (s)
        *len = strlen(s);
    return s;
}

int protocol_is_progress(const char *data, size_t len)
{
    static const char head[] = "{\"" PROTO_PROGRESS_KEY "\":";
    return len >= sizeof head - 1 && memcmp(data, head, sizeof head - 1) == 0;
}

int protocol_parse_progress(const char *data, size_t len, double *fraction, char *message,
                            size_t msglen)
{
    json_t *root = json_loadb(data, len, 0, NULL);
    json_t *f = json_object_get(root, PROTO_PROGRESS_KEY);
    json_t *m = json_object_get(root, "message");
    int rc = -EINVAL;
    if (json_is_number(f) && (!m || json_is_string(m))) {
        double v = json_number_value(f);
        if (v >= 0.0 && v <= 1.0) {
            *fraction = v;
            const char *text = m ? json_string_value(m) : "";
            size_t n = utf8_cut(text, msglen ? msglen - 1 : 0);
            if (msglen) {
                memcpy(message, text, n);
                message[n] = '\0';
            }
            rc = 0;
        }
    }
    json_decref(root);
    return rc;
}

void protocol_response_free(struct runtime_response *out)
{
    if (!out)
        return;
    json_decref(out->root);
    memset(out, 0, sizeof *out);
}
