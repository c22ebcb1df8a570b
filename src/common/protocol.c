#include "protocol.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

json_t *protocol_error_json(const char *code, const char *message, const char *type,
                            const char *traceback)
{
    json_t *details = json_object();
    json_t *err = json_object();
    json_t *arr = json_array();
    if (!details || !err || !arr)
        goto fail;
    if (json_object_set_new(details, "message", json_string(message ? message : "")) ||
        json_object_set_new(details, "type", json_string(type ? type : "")))
        goto fail;
    if (traceback && json_object_set_new(details, "traceback", json_string(traceback)))
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
    json_t *root = json_loadb(data, len, JSON_DECODE_ANY, &jerr);
    if (!root) {
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

void protocol_response_free(struct runtime_response *out)
{
    if (!out)
        return;
    json_decref(out->root);
    memset(out, 0, sizeof *out);
}
