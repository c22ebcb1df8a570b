/*
 * jobreport.h - what the sidecar tells the gateway about a job (GATEWAY.md),
 * as pure functions on jansson: the job id an envelope carries, the body of
 * a progress report, and the body of an end actor's final status.  No I/O
 * here (gwreport.h sends them; reports.h decides when).
 */
#ifndef ASYA_JOBREPORT_H
#define ASYA_JOBREPORT_H

#include "envelope.h"

#include <jansson.h>
#include <stddef.h>

/* Longer job ids are ignored (they would only make long URLs and keys). */
#define JOBREPORT_ID_MAX 256

/* A progress report's status. */
enum jobreport_status {
    JOBREPORT_RECEIVED,   /* the sidecar took the message */
    JOBREPORT_PROCESSING, /* the request went to the runtime */
    JOBREPORT_COMPLETED,  /* the runtime answered successfully */
};

/*
 * The job id root (an envelope object, borrowed) carries: top-level
 * "job_id", else route.metadata.job_id; only non-empty strings of at most
 * JOBREPORT_ID_MAX bytes count.  Returns a borrowed string, or NULL.
 */
const char *jobreport_job_id(const json_t *root);

/*
 * The job id of an error-end envelope: as jobreport_job_id, else that of
 * payload.original_message (the raw body of a message that did not parse),
 * parsed as JSON.  The id is copied into buf (len bytes, at least
 * JOBREPORT_ID_MAX + 1).  Returns buf, or NULL when there is none.
 */
const char *jobreport_error_job_id(const json_t *root, char *buf, size_t len);

/*
 * The progress body for env (borrowed, valid):
 *   {"step": actors[current], "step_index": current, "total_steps": n,
 *    "status": ..., "actor_name": actor, "duration_ms": ...}
 * duration_ms is left out when negative.  Returns malloc'd compact JSON
 * (free with free()), *len its length, or NULL when out of memory.
 */
char *jobreport_progress_body(const struct envelope *env, enum jobreport_status status,
                              const char *actor, long duration_ms, size_t *len);

/* A handler's own progress (asya_call.progress) as a "processing" report
 * with "progress": fraction (0..1) and, when not empty, "message".  Same
 * return as jobreport_progress_body. */
char *jobreport_handler_progress_body(const struct envelope *env, const char *actor,
                                      double fraction, const char *message, size_t *len);

/* {"job_id", "status": "succeeded", "result": payload} (payload borrowed; NULL
 * gives null).  Same return as jobreport_progress_body. */
char *jobreport_final_succeeded(const char *job_id, const json_t *payload, size_t *len);

/*
 * {"job_id", "status": "failed", "error": "<code>: <details.message>"} from
 * the error-end envelope root (borrowed): code is payload.error (else the
 * top-level error, else "unknown_error"), the message payload.details.message
 * (without it, the error is the code alone).  Same return as above.
 */
char *jobreport_final_failed(const char *job_id, const json_t *root, size_t *len);

/* Percent-encode s (all but A-Z a-z 0-9 - . _ ~) into out (outlen bytes, at
 * least 3 * strlen(s) + 1).  Returns 0, or -1 when out is too small. */
int jobreport_escape(const char *s, char *out, size_t outlen);

#endif /* ASYA_JOBREPORT_H */
