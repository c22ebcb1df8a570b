/*
 * crew.c - the end actors' handlers: happy_end and error_end (build/lib/asya/crew.so).
 *
 * They run in envelope mode (ASYA_HANDLER_MODE=envelope) behind a sidecar with
 * ASYA_IS_END_ACTOR=true and ASYA_GATEWAY_URL set; the sidecar sends the job's
 * final status to the gateway after the handler answered (see the README,
 * "End actors").  The handlers only check the envelope and hand it back: they
 * persist nothing (the gateway's store is the job's record), so a message that
 * comes again is harmless.
 *
 *   happy_end  a finished route: an object with a payload and a route, and a job
 *              id (top-level job_id, else route.metadata.job_id)
 *   error_end  an error-end envelope: payload.error (the code) and
 *              payload.details (an object), and a job id as above, else in the
 *              JSON text of payload.original_message
 *
 * A check that fails answers ValueError (processing_error); the sidecar logs it
 * and still reports what it can, so a job never waits for its deadline because
 * of a strict check here.
 */
#include <asya/asya.h>
#include <asya/asya_json.h>

#include <stdbool.h>

ASYA_MODULE_MAGIC(.name = "crew", .version = ASYA_VERSION);

/* The job id of env (borrowed), or NULL. */
static const char *job_id_of(const json_t *env)
{
    const json_t *id = json_object_get(env, "job_id");
    if (!json_is_string(id))
        id = json_object_get(json_object_get(json_object_get(env, "route"), "metadata"), "job_id");
    return json_is_string(id) && json_string_length(id) > 0 ? json_string_value(id) : NULL;
}

/* Parse the input as an envelope object with a payload and a route.  Returns
 * ASYA_OK with a new reference in *out, or the status to return. */
static int input_envelope(struct asya_call *call, json_t **out)
{
    *out = NULL;
    if (call->mode != ASYA_MODE_ENVELOPE)
        return asya_fail(call, "ConfigError", "crew handlers need ASYA_HANDLER_MODE=envelope");
    json_t *env = asya_input_json(call);
    if (!env)
        return asya_oom(call, "out of memory parsing the envelope");
    if (!json_is_object(env) || !json_object_get(env, "payload") ||
        !json_is_object(json_object_get(env, "route"))) {
        json_decref(env);
        return asya_fail(call, "ValueError", "not an envelope: payload and route are required");
    }
    *out = env;
    return ASYA_OK;
}

/* Hand the envelope back unchanged (the exact bytes received). */
static int pass(struct asya_call *call, json_t *env)
{
    json_decref(env);
    if (call->emit(call, call->input, call->input_len) != 0)
        return asya_fail(call, "ResultError", "the runtime rejected the envelope");
    return ASYA_OK;
}

ASYA_EXPORT int happy_end(struct asya_call *call);
ASYA_EXPORT int happy_end(struct asya_call *call)
{
    json_t *env;
    int st = input_envelope(call, &env);
    if (st != ASYA_OK)
        return st;
    if (!job_id_of(env)) {
        json_decref(env);
        return asya_fail(call, "ValueError", "no job id (job_id or route.metadata.job_id)");
    }
    return pass(call, env);
}

ASYA_EXPORT int error_end(struct asya_call *call);
ASYA_EXPORT int error_end(struct asya_call *call)
{
    json_t *env;
    int st = input_envelope(call, &env);
    if (st != ASYA_OK)
        return st;
    const json_t *payload = json_object_get(env, "payload");
    if (!json_is_string(json_object_get(payload, "error")) ||
        !json_is_object(json_object_get(payload, "details"))) {
        json_decref(env);
        return asya_fail(
            call, "ValueError",
            "not an error-end envelope: payload.error and payload.details are required");
    }
    const char *job = job_id_of(env);
    json_t *orig = NULL;
    if (!job) {
        /* A message that did not parse travels as text; it may name its job. */
        const json_t *raw = json_object_get(payload, "original_message");
        if (json_is_string(raw))
            orig = json_loadb(json_string_value(raw), json_string_length(raw), 0, NULL);
        job = job_id_of(orig);
    }
    bool found = job != NULL;
    json_decref(orig);
    if (!found) {
        json_decref(env);
        return asya_fail(call, "ValueError",
                         "no job id (job_id, route.metadata.job_id or "
                         "payload.original_message)");
    }
    return pass(call, env);
}
