#include "jobreport.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *usable_id(const json_t *v)
{
    size_t n = json_string_length(v);
    return json_is_string(v) && n > 0 && n <= JOBREPORT_ID_MAX ? json_string_value(v) : NULL;
}

const char *jobreport_job_id(const json_t *root)
{
    const char *id = usable_id(json_object_get(root, "job_id"));
    if (id)
        return id;
    const json_t *meta = json_object_get(json_object_get(root, "route"), "metadata");
    return usable_id(json_object_get(meta, "job_id"));
}

const char *jobreport_error_job_id(const json_t *root, char *buf, size_t len)
{
    const char *id = jobreport_job_id(root);
    if (!id) {
        /* A body that did not parse as an envelope travels as a string; it
         * may still be JSON holding the job id (a truncated one is not). */
        const json_t *raw = json_object_get(json_object_get(root, "payload"), "original_message");
        if (json_is_string(raw)) {
            json_t *orig = json_loadb(json_string_value(raw), json_string_length(raw), 0, NULL);
            id = jobreport_job_id(orig);
            if (id)
                snprintf(buf, len, "%s", id);
            json_decref(orig);
            return id ? buf : NULL;
        }
        return NULL;
    }
    snprintf(buf, len, "%s", id);
    return buf;
}

/* Serialise and release v (NULL: out of memory). */
static char *dump_new(json_t *v, size_t *len)
{
    if (!v)
        return NULL;
    char *text = envelope_dump(v, len);
    json_decref(v);
    return text;
}

static json_t *progress_json(const struct envelope *env, enum jobreport_status status,
                             const char *actor)
{
    static const char *const names[] = {"received", "processing", "completed"};
    const char *step = envelope_actor(env, env->current);
    return json_pack("{s:s?, s:I, s:I, s:s, s:s}", "step", step, "step_index",
                     (json_int_t)env->current, "total_steps", (json_int_t)env->actor_count,
                     "status", names[status], "actor_name", actor);
}

char *jobreport_progress_body(const struct envelope *env, enum jobreport_status status,
                              const char *actor, long duration_ms, size_t *len)
{
    json_t *body = progress_json(env, status, actor);
    if (body && duration_ms >= 0 &&
        json_object_set_new(body, "duration_ms", json_integer((json_int_t)duration_ms))) {
        json_decref(body);
        return NULL;
    }
    return dump_new(body, len);
}

char *jobreport_handler_progress_body(const struct envelope *env, const char *actor,
                                      double fraction, const char *message, size_t *len)
{
    json_t *body = progress_json(env, JOBREPORT_PROCESSING, actor);
    if (body &&
        (json_object_set_new(body, "progress", json_real(fraction)) ||
         (message && *message && json_object_set_new(body, "message", json_string(message))))) {
        json_decref(body);
        return NULL;
    }
    return dump_new(body, len);
}

char *jobreport_final_succeeded(const char *job_id, const json_t *payload, size_t *len)
{
    json_t *result = payload ? json_incref((json_t *)payload) : json_null();
    return dump_new(
        json_pack("{s:s, s:s, s:o}", "job_id", job_id, "status", "succeeded", "result", result),
        len);
}

char *jobreport_final_failed(const char *job_id, const json_t *root, size_t *len)
{
    const json_t *payload = json_object_get(root, "payload");
    const char *code = json_string_value(json_object_get(payload, "error"));
    if (!code)
        code = json_string_value(json_object_get(root, "error"));
    if (!code || !*code)
        code = "unknown_error";
    const char *msg =
        json_string_value(json_object_get(json_object_get(payload, "details"), "message"));
    json_t *error = msg && *msg ? json_sprintf("%s: %s", code, msg) : json_string(code);
    if (!error)
        return NULL;
    return dump_new(
        json_pack("{s:s, s:s, s:o}", "job_id", job_id, "status", "failed", "error", error), len);
}

int jobreport_escape(const char *s, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                     c == '-' || c == '.' || c == '_' || c == '~';
        if (o + (plain ? 1 : 3) >= outlen)
            return -1;
        if (plain) {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    if (o >= outlen)
        return -1;
    out[o] = '\0';
    return 0;
}
