/*
 * libFuzzer target for the runtime-answer parser (src/common/protocol.c).
 *
 * Every accepted answer must have the shape its kind promises; every refused
 * one a printable reason.  The input, as a C string, is also used as an error
 * message, which must always produce an answer that parses back.
 */
#include "protocol.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct runtime_response r;
    char err[256];
    int rc = protocol_parse_response((const char *)data, size, &r, err, sizeof err);
    if (rc == 0) {
        switch (r.kind) {
        case RESPONSE_RESULTS: {
            if (!json_is_array(r.results) || r.results != r.root ||
                json_array_size(r.results) == 0 || r.error)
                abort();
            size_t i;
            json_t *item;
            json_array_foreach(r.results, i, item)
            {
                if (!json_is_object(item) || !json_object_get(item, "payload"))
                    abort();
            }
            break;
        }
        case RESPONSE_EMPTY:
            if (r.results || r.error || r.details)
                abort();
            break;
        case RESPONSE_ERROR:
            if (!r.error || r.results || (r.details && !json_is_object(r.details)))
                abort();
            break;
        default:
            abort();
        }
        protocol_response_free(&r);
        if (r.root)
            abort();
    } else {
        if (rc != -EINVAL && rc != -ENOMEM)
            abort();
        if (r.root || !err[0])
            abort();
        for (const char *p = err; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                abort();
    }

    /* Arbitrary bytes as message, type and traceback of an error answer. */
    char *msg = malloc(size + 1);
    if (!msg)
        return 0;
    memcpy(msg, data, size);
    msg[size] = '\0';
    size_t len = 0;
    char *text = protocol_error_text(PROTO_PROCESSING_ERROR, msg, msg, msg, &len);
    if (!text)
        abort();
    if (protocol_parse_response(text, len, &r, err, sizeof err) != 0 || r.kind != RESPONSE_ERROR ||
        strcmp(r.error, PROTO_PROCESSING_ERROR) != 0 || !r.details)
        abort();
    protocol_response_free(&r);
    free(text);
    free(msg);
    return 0;
}
