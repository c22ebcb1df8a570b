/*
 * protocol.h - the runtime's answers, built by asya-runtime and read by
 * asya-sidecar.  One response frame holds a JSON array:
 *   results: [{"payload": ..., "route": {...}}, ...]   ([] = no result)
 *   error:   [{"error": "<code>", "details": {"message", "type", "traceback"}}]
 */
#ifndef ASYA_PROTOCOL_H
#define ASYA_PROTOCOL_H

#include <jansson.h>
#include <stddef.h>

/* Error codes of the reference protocol. */
#define PROTO_PROCESSING_ERROR "processing_error"
#define PROTO_PARSING_ERROR    "msg_parsing_error"
#define PROTO_CONNECTION_ERROR "connection_error"
#define PROTO_OOM_ERROR        "oom_error"
#define PROTO_CUDA_OOM_ERROR   "cuda_oom_error"
#define PROTO_TIMEOUT_ERROR    "timeout_error"

/* Build an error answer as a JSON value (new reference, NULL on OOM).
 * message, type and traceback may be NULL (then "" for message and type,
 * and traceback is omitted). */
json_t *protocol_error_json(const char *code, const char *message, const char *type,
                            const char *traceback);

/* The same, serialised into a malloc'd string; *len gets its length. */
char *protocol_error_text(const char *code, const char *message, const char *type,
                          const char *traceback, size_t *len);

/*
 * Control requests: a frame holding {"asya_control": "stats"} instead of an
 * envelope.  asya-runtime answers it itself, without a worker, with a JSON
 * object (not an array) describing its workers:
 *   {"asya_runtime": "<version>", "workers": n, "idle": n, "busy": n,
 *    "queued": n, "worker_restarts": {"crash": n, "oom_kill": n,
 *    "timeout_kill": n, "exit": n}}
 * Runtimes that do not know it (the reference Python runtime) answer a
 * msg_parsing_error array, so a client can tell.
 */
#define PROTO_CONTROL_KEY   "asya_control"
#define PROTO_CONTROL_STATS "{\"asya_control\":\"stats\"}"

/* True when the frame is a control request (cheap: looks only at small frames). */
int protocol_is_control(const char *data, size_t len);

/*
 * Handler progress (asya_call.progress), an extension the reference runtime
 * and sidecar never see.  A sidecar that wants it puts "asya_progress": true
 * at the top level of the request envelope; asya-runtime then may send,
 * before the answer, any number of frames holding
 *   {"asya_progress": <fraction 0..1>, "message": "<text>"}   (message optional)
 * A sidecar that did not ask never gets one, and a runtime that does not know
 * the key ignores it (an envelope may carry extra fields), so either side can
 * be the reference's.
 */
#define PROTO_PROGRESS_KEY         "asya_progress"
#define PROTO_PROGRESS_MESSAGE_MAX 1024 /* bytes of message kept */

/* A progress frame's text (malloc'd, *len its length; NULL on OOM).  message
 * may be NULL; it is cut to PROTO_PROGRESS_MESSAGE_MAX bytes (at a UTF-8
 * boundary). */
char *protocol_progress_text(double fraction, const char *message, size_t *len);

/* True when an answer frame is a progress frame (looks at its first bytes). */
int protocol_is_progress(const char *data, size_t len);

/*
 * Parse a progress frame: 0 with *fraction in [0, 1] and message (msglen
 * bytes, NUL-terminated, "" when absent) set, or -EINVAL: not JSON, no number
 * under "asya_progress", one outside [0, 1], or a message that is not a string.
 */
int protocol_parse_progress(const char *data, size_t len, double *fraction, char *message,
                            size_t msglen) __attribute__((warn_unused_result));

enum response_kind {
    RESPONSE_RESULTS = 0, /* one or more results */
    RESPONSE_EMPTY = 1,   /* [] or null: no result */
    RESPONSE_ERROR = 2,   /* an error object */
};

struct runtime_response {
    enum response_kind kind;
    json_t *root;      /* owned */
    json_t *results;   /* borrowed: array of objects (RESPONSE_RESULTS) */
    const char *error; /* borrowed: error code (RESPONSE_ERROR) */
    json_t *details;   /* borrowed: details object (RESPONSE_ERROR), may be NULL */
};

/*
 * Parse a runtime's answer.  Accepts an array of result objects, [] or null,
 * an array whose single element carries "error", and, leniently, a bare
 * object of either kind.  Returns 0 and fills out (release with
 * protocol_response_free), or -EINVAL with a reason in err: not JSON, a
 * scalar, a result that is not an object or lacks "payload", a non-string
 * error code.
 */
int protocol_parse_response(const char *data, size_t len, struct runtime_response *out, char *err,
                            size_t errlen) __attribute__((warn_unused_result));

/* Release out->root and clear out.  NULL is fine. */
void protocol_response_free(struct runtime_response *out);

#endif /* ASYA_PROTOCOL_H */
