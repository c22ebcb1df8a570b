/*
 * routing.h - the sidecar's routing decisions as pure functions: from the
 * consumed envelope and the runtime's answer to the list of messages to
 * publish.  No I/O here, so every rule of DESIGN.md's routing table is unit
 * tested directly.
 */
#ifndef ASYA_ROUTING_H
#define ASYA_ROUTING_H

#include "envelope.h"
#include "protocol.h"

#include <jansson.h>
#include <stddef.h>

/* What a publish is, for metrics (the reference's message_type label). */
enum publish_kind {
    PUBLISH_ROUTING = 0,   /* to the next actor of the route */
    PUBLISH_HAPPY_END = 1, /* route finished, or no result */
    PUBLISH_ERROR_END = 2, /* any failure */
};

/* How the message ended, for metrics and logs. */
enum route_outcome {
    OUTCOME_SUCCESS = 0,        /* results routed */
    OUTCOME_EMPTY_RESPONSE = 1, /* [] or null: original to happy-end */
    OUTCOME_RUNTIME_ERROR = 2,  /* runtime answered an error */
    OUTCOME_PARSE_ERROR = 3,    /* consumed body was not a valid envelope */
    OUTCOME_SIDECAR_ERROR = 4,  /* timeout, bad answer, poison, too large... */
};

struct route_publish {
    char *actor;  /* owned: destination actor name (the queue without prefix) */
    json_t *body; /* owned: the envelope to publish, or NULL when text holds it */
    char *text;   /* owned: the envelope already serialised (splice.h), or NULL */
    size_t text_len;
    enum publish_kind kind;
};

struct route_plan {
    struct route_publish *items; /* owned array of count items */
    size_t count;
    enum route_outcome outcome;
    char error_code[64]; /* error code when the plan goes to error-end */
};

struct routing_names {
    const char *actor;     /* this actor, for error details */
    const char *happy_end; /* actor names of the end queues */
    const char *error_end;
};

/* Start an empty plan with its outcome (code: the error code, or NULL for
 * the outcome's own). */
void route_plan_init(struct route_plan *plan, enum route_outcome outcome, const char *code);

/* Add a serialised envelope for actor (text is taken, freed on failure).
 * Returns 0 or -ENOMEM. */
int route_plan_add_text(struct route_plan *plan, const char *actor, char *text, size_t len,
                        enum publish_kind kind) __attribute__((warn_unused_result));

/*
 * Plan for a runtime answer to env (borrowed, validated).  Results get
 * route.current advanced (unless the runtime already advanced it), go to
 * actors[current] or happy-end; fan-out result i >= 1 gets id "<id>-<i>" and
 * parent_id <id>; headers and unknown fields of env are kept.  [] / null send
 * env unchanged to happy-end; an error goes to error-end.  A result whose
 * route is invalid sends the message to error-end as processing_error.
 * Returns 0, or -ENOMEM.  Release the plan with route_plan_free.
 */
int routing_plan_response(const struct routing_names *names, const struct envelope *env,
                          const struct runtime_response *resp, struct route_plan *plan)
    __attribute__((warn_unused_result));

/*
 * Plan for a failure the sidecar itself detected on a valid envelope:
 * code is a protocol error code (e.g. "timeout_error"), type and message
 * describe it.  Returns 0 or -ENOMEM.
 */
int routing_plan_error(const struct routing_names *names, const struct envelope *env,
                       const char *code, const char *type, const char *message,
                       struct route_plan *plan) __attribute__((warn_unused_result));

/*
 * Plan for a consumed body that is not a valid envelope: error-end with
 * msg_parsing_error and payload.original_message holding the raw body as a
 * string (invalid UTF-8 replaced by U+FFFD), at most ROUTING_ORIGINAL_MAX
 * bytes of it.  reason is the parser's message.  When the body is a JSON
 * object of at most parse_max bytes, its id, route and headers are kept.
 * code may be NULL for "msg_parsing_error".  Returns 0 or -ENOMEM.
 */
int routing_plan_malformed(const struct routing_names *names, const char *body, size_t len,
                           size_t parse_max, const char *code, const char *type, const char *reason,
                           struct route_plan *plan) __attribute__((warn_unused_result));

/* AMQP 0-9-1 short strings: a queue name is at most 255 bytes. */
#define ROUTING_QUEUE_MAX 255

/*
 * The queue of actor: prefix + actor into queue (queuelen bytes, at least
 * ROUTING_QUEUE_MAX + 1).  Returns 0, or -EINVAL with the reason in why when
 * the broker would refuse the name: longer than ROUTING_QUEUE_MAX bytes, or
 * starting with the reserved "amq." prefix.
 */
int routing_queue_name(const char *prefix, const char *actor, char *queue, size_t queuelen,
                       char *why, size_t whylen) __attribute__((warn_unused_result));

/* A malformed body keeps at most this many bytes in payload.original_message;
 * a longer one also gets original_message_bytes and original_message_truncated. */
#define ROUTING_ORIGINAL_MAX 65536

/* Free the items and clear the plan.  NULL is fine. */
void route_plan_free(struct route_plan *plan);

/* Build the error-end envelope from env (borrowed); new reference or NULL. */
json_t *routing_error_envelope(const struct routing_names *names, const struct envelope *env,
                               const char *code, json_t *details);

/* Copy len bytes into a new JSON string, replacing invalid UTF-8 with U+FFFD. */
json_t *routing_lossy_string(const char *data, size_t len);

#endif /* ASYA_ROUTING_H */
