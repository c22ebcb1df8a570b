/*
 * test_handlers.c - the seed-scenario handlers of the sidecar-vs-runtime suite.
 *
 * Built into build/lib/asya/test_handlers.so; each scenario runs one runtime with
 * ASYA_HANDLER=<that .so>:<function>.  Behaviours follow DESIGN.md's "Seed
 * scenarios" table (the reference's Python handlers.py, ported to C):
 *
 *   echo_handler            payload back; {"echoed": message} after 0.5 s if it has "message"
 *   error_handler           ValueError "Intentional test failure" unless should_fail is false
 *   oom_handler             out of memory
 *   cuda_oom_handler        CUDA out of memory
 *   timeout_handler         sleeps sleep_seconds / sleep (default 5 s), returns the payload
 *   fanout_handler          `count` (default 3) results
 *   empty_response_handler  no result
 *   large_payload_handler   adds `size_kb` (default 100) KiB of "X"
 *   unicode_handler         adds non-ASCII text
 *   null_values_handler     adds JSON nulls
 *   conditional_handler     behaviour picked by payload.action
 *   nested_data_handler     adds a 20-level nested structure
 *   pipeline_doubler        value * 2, operation "doubled"
 *   pipeline_incrementer    value + 5, operation "incremented"
 *   progress_handler        sleeps 0.3 s x `steps` (default 3), adds steps_completed
 *   self_progress_handler   (beyond the seed) `steps` (default 3) steps of `step_s` s
 *                           (default 0.15), calling asya_progress() after each one;
 *                           adds progress_codes: what each call returned
 *   echo_bytes_handler      (beyond the seed, for make bench) the payload's bytes back,
 *                           never parsed: what the framework costs without the handler's own
 *                           JSON work
 *
 * Handlers that extend the payload require it to be a JSON object and answer
 * TypeError otherwise.  Every allocation failure is reported with asya_oom()
 * (an "oom_error" answer) instead of crashing the worker.
 */
#include <asya/asya.h>
#include <asya/asya_json.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

ASYA_MODULE_MAGIC(.name = "test_handlers", .version = "1.0");

/* Depth of nested_data_handler's structure. */
#define NESTED_DEPTH 20

/* ---- helpers -------------------------------------------------------------- */

/* Sleep for `seconds` (fractions allowed), resuming after signal interruptions. */
static void sleep_seconds(double seconds)
{
    if (!(seconds > 0))
        return;
    struct timespec ts;
    ts.tv_sec = (time_t)seconds;
    ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Number stored under `key` of `obj` (borrowed), or `def` when absent, null or
 * not a number. */
static double number_or(const json_t *obj, const char *key, double def)
{
    const json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    return json_is_number(v) ? json_number_value(v) : def;
}

/* Parse the payload and require a JSON object.  On success returns 0 and stores a
 * new reference in *out (free with json_decref).  Otherwise returns the status the
 * handler must return (the failure is already recorded on call). */
static int input_object(struct asya_call *call, json_t **out)
{
    json_t *in = asya_input_json(call);
    *out = NULL;
    if (!in)
        return asya_oom(call, "out of memory parsing the payload");
    if (!json_is_object(in)) {
        json_decref(in);
        return asya_fail(call, "TypeError", "payload must be a JSON object");
    }
    *out = in;
    return ASYA_OK;
}

/* obj[key] = value, taking ownership of value.  Returns 0, or -1 when value is
 * NULL (a failed allocation upstream) or the set fails. */
static int set_new(json_t *obj, const char *key, json_t *value)
{
    if (!value)
        return -1;
    return json_object_set_new(obj, key, value) == 0 ? 0 : -1;
}

/* Finish a handler that built `out`: emit it (taking ownership) unless building
 * failed (`failed` non-zero), in which case report OOM. */
static int finish(struct asya_call *call, json_t *out, int failed)
{
    if (failed) {
        json_decref(out);
        return asya_oom(call, "out of memory building the result");
    }
    return asya_emit_json_new(call, out);
}

/* ---- seed-scenario handlers ------------------------------------------------ */

/* Returns the payload unchanged.  When the payload is an object with a
 * "message" field, waits 0.5 s and returns {"echoed": message} instead. */
ASYA_EXPORT int echo_handler(struct asya_call *call);
ASYA_EXPORT int echo_handler(struct asya_call *call)
{
    json_t *in = asya_input_json(call);
    if (!in)
        return asya_oom(call, "out of memory parsing the payload");

    json_t *message = json_is_object(in) ? json_object_get(in, "message") : NULL;
    if (!message) {
        json_decref(in);
        /* Hand back the exact bytes received. */
        if (call->emit(call, call->input, call->input_len) != 0)
            return asya_fail(call, "ResultError", "the runtime rejected the result");
        return ASYA_OK;
    }
    sleep_seconds(0.5);
    json_t *out = json_object();
    int failed = !out || set_new(out, "echoed", json_incref(message));
    json_decref(in);
    return finish(call, out, failed);
}

/* The payload's bytes back as they came, never parsed (the bench's size rows:
 * a handler that parses 1 MiB with jansson measures jansson, not the actor). */
ASYA_EXPORT int echo_bytes_handler(struct asya_call *call);
ASYA_EXPORT int echo_bytes_handler(struct asya_call *call)
{
    if (call->emit(call, call->input, call->input_len) != 0)
        return asya_fail(call, "ResultError", "the runtime rejected the result");
    return ASYA_OK;
}

/* Fails with ValueError "Intentional test failure", unless the payload has
 * "should_fail": false, in which case it returns the payload. */
ASYA_EXPORT int error_handler(struct asya_call *call);
ASYA_EXPORT int error_handler(struct asya_call *call)
{
    json_t *in = asya_input_json(call);
    if (!in)
        return asya_oom(call, "out of memory parsing the payload");
    const json_t *should_fail = json_is_object(in) ? json_object_get(in, "should_fail") : NULL;
    if (json_is_false(should_fail))
        return asya_emit_json_new(call, in);
    json_decref(in);
    return asya_fail(call, "ValueError", "Intentional test failure");
}

/* Always reports running out of host memory. */
ASYA_EXPORT int oom_handler(struct asya_call *call);
ASYA_EXPORT int oom_handler(struct asya_call *call)
{
    return asya_oom(call, "Simulated out of memory condition");
}

/* Always reports running out of GPU memory. */
ASYA_EXPORT int cuda_oom_handler(struct asya_call *call);
ASYA_EXPORT int cuda_oom_handler(struct asya_call *call)
{
    return asya_cuda_oom(call, "CUDA out of memory: Tried to allocate 4.0 GiB");
}

/* Sleeps payload.sleep_seconds (or payload.sleep, default 5) seconds, then
 * returns the payload.  Its sidecar runs with a 3 s timeout. */
ASYA_EXPORT int timeout_handler(struct asya_call *call);
ASYA_EXPORT int timeout_handler(struct asya_call *call)
{
    json_t *in = asya_input_json(call);
    if (!in)
        return asya_oom(call, "out of memory parsing the payload");
    double secs = number_or(in, "sleep_seconds", number_or(in, "sleep", 5.0));
    sleep_seconds(secs);
    return asya_emit_json_new(call, in);
}

/* Emits payload.count (default 3) results: the payload plus "index": i and
 * "message": "Fan-out message i", for i = 0..count-1. */
ASYA_EXPORT int fanout_handler(struct asya_call *call);
ASYA_EXPORT int fanout_handler(struct asya_call *call)
{
    json_t *in;
    int st = input_object(call, &in);
    if (st != ASYA_OK)
        return st;
    double count = number_or(in, "count", 3);
    if (count < 0 || count > 10000 || count != (double)(long)count) {
        json_decref(in);
        return asya_fail(call, "ValueError", "count must be an integer in 0..10000");
    }
    for (int i = 0; i < (int)count; i++) {
        json_t *out = json_deep_copy(in);
        int failed = !out || set_new(out, "index", json_integer(i)) ||
                     set_new(out, "message", json_sprintf("Fan-out message %d", i));
        st = finish(call, out, failed);
        if (st != ASYA_OK)
            break;
    }
    json_decref(in);
    return st;
}

/* Returns no result: the sidecar sends the original envelope to happy-end. */
ASYA_EXPORT int empty_response_handler(struct asya_call *call);
ASYA_EXPORT int empty_response_handler(struct asya_call *call)
{
    (void)call;
    return ASYA_OK;
}

/* Returns the payload plus "data_size_kb": size_kb (default 100), "data":
 * size_kb * 1024 'X' characters, and "handler": "large_payload". */
ASYA_EXPORT int large_payload_handler(struct asya_call *call);
ASYA_EXPORT int large_payload_handler(struct asya_call *call)
{
    json_t *in;
    int st = input_object(call, &in);
    if (st != ASYA_OK)
        return st;
    double kb = number_or(in, "size_kb", 100);
    if (kb < 0 || kb > 1024 * 1024 || kb != (double)(long)kb) {
        json_decref(in);
        return asya_fail(call, "ValueError", "size_kb must be an integer in 0..1048576");
    }
    size_t len = (size_t)kb * 1024;
    char *data = malloc(len + 1);
    if (!data) {
        json_decref(in);
        return asya_oom(call, "cannot allocate %zu bytes of payload data", len);
    }
    memset(data, 'X', len);
    data[len] = '\0';
    int failed = set_new(in, "data_size_kb", json_integer((json_int_t)kb)) ||
                 set_new(in, "data", json_stringn_nocheck(data, len)) ||
                 set_new(in, "handler", json_string("large_payload"));
    free(data);
    return finish(call, in, failed);
}

/* Returns the payload plus non-ASCII text: a Chinese status message, emoji, and
 * greetings in four scripts. */
ASYA_EXPORT int unicode_handler(struct asya_call *call);
ASYA_EXPORT int unicode_handler(struct asya_call *call)
{
    json_t *in;
    int st = input_object(call, &in);
    if (st != ASYA_OK)
        return st;
    json_t *langs = json_pack("{s:s, s:s, s:s, s:s}", "chinese", "你好世界", "japanese",
                              "こんにちは世界", "arabic", "مرحبا بالعالم", "russian", "Привет мир");
    int failed = set_new(in, "message", json_string("处理成功 ✓")) ||
                 set_new(in, "emoji", json_string("🚀🎉🌍")) || set_new(in, "languages", langs);
    return finish(call, in, failed);
}

/* Returns the payload plus "null_field": null, "list_with_nulls":
 * [1, null, 3, null, 5] and "nested": {"value_null": null, "value_int": 123}. */
ASYA_EXPORT int null_values_handler(struct asya_call *call);
ASYA_EXPORT int null_values_handler(struct asya_call *call)
{
    json_t *in;
    int st = input_object(call, &in);
    if (st != ASYA_OK)
        return st;
    int failed = set_new(in, "null_field", json_null()) ||
                 set_new(in, "list_with_nulls", json_pack("[i, n, i, n, i]", 1, 3, 5)) ||
                 set_new(in, "nested", json_pack("{s:n, s:i}", "value_null", "value_int", 123));
    return finish(call, in, failed);
}

/* Behaviour chosen by payload.action:
 *   "error"   ValueError "Conditional error: <error_msg, default "test">"
 *   "oom"     out of memory
 *   "slow"    sleeps payload.sleep (default 2) s, returns payload + status
 *             "slow_processing_complete"
 *   "fanout"  payload.count (default 2) results {"index": i, "action": "fanout"}
 *   "empty"   no result
 *   other     payload + "status": "success" + "action": <action, null if absent> */
ASYA_EXPORT int conditional_handler(struct asya_call *call);
ASYA_EXPORT int conditional_handler(struct asya_call *call)
{
    json_t *in;
    int st = input_object(call, &in);
    if (st != ASYA_OK)
        return st;
    const char *action = json_string_value(json_object_get(in, "action"));
    action = action ? action : "";

    if (strcmp(action, "error") == 0) {
        const char *msg = json_string_value(json_object_get(in, "error_msg"));
        st = asya_fail(call, "ValueError", "Conditional error: %s", msg ? msg : "test");
        json_decref(in);
        return st;
    }
    if (strcmp(action, "oom") == 0) {
        json_decref(in);
        return asya_oom(call, "Conditional out of memory");
    }
    if (strcmp(action, "slow") == 0) {
        sleep_seconds(number_or(in, "sleep", 2.0));
        return finish(call, in, set_new(in, "status", json_string("slow_processing_complete")));
    }
    if (strcmp(action, "fanout") == 0) {
        double count = number_or(in, "count", 2);
        json_decref(in);
        if (count < 0 || count > 10000 || count != (double)(long)count)
            return asya_fail(call, "ValueError", "count must be an integer in 0..10000");
        for (int i = 0; i < (int)count; i++) {
            st = asya_emit_json_new(call, json_pack("{s:i, s:s}", "index", i, "action", "fanout"));
            if (st != ASYA_OK)
                return st;
        }
        return ASYA_OK;
    }
    if (strcmp(action, "empty") == 0) {
        json_decref(in);
        return ASYA_OK;
    }
    /* Default: success.  json_object_get returns NULL when absent -> null. */
    json_t *act = json_object_get(in, "action");
    int failed = set_new(in, "status", json_string("success")) ||
                 set_new(in, "action", act ? json_incref(act) : json_null());
    return finish(call, in, failed);
}

/* Returns the payload plus "nested_depth": 20 and "structure": 20 nested levels
 * {"level": n, "data": "level-<n>", "next": ...}, n = 1..20, the last "next"
 * being null. */
ASYA_EXPORT int nested_data_handler(struct asya_call *call);
ASYA_EXPORT int nested_data_handler(struct asya_call *call)
{
    json_t *in;
    int st = input_object(call, &in);
    if (st != ASYA_OK)
        return st;
    /* Build from the innermost level outwards; `next` is owned here. */
    json_t *next = json_null();
    for (int level = NESTED_DEPTH; level >= 1 && next; level--) {
        json_t *node = json_object();
        if (!node) {
            json_decref(next);
            next = NULL;
            break;
        }
        /* json_object_set_new steals `next` even when it fails. */
        int failed = set_new(node, "next", next) || set_new(node, "level", json_integer(level)) ||
                     set_new(node, "data", json_sprintf("level-%d", level));
        if (failed) {
            json_decref(node);
            next = NULL;
            break;
        }
        next = node;
    }
    int failed =
        set_new(in, "nested_depth", json_integer(NESTED_DEPTH)) || set_new(in, "structure", next);
    return finish(call, in, failed);
}

/* ---- pipeline handlers (multi-actor tests) ---------------------------------- */

/* payload.value = op(payload.value), payload.operation = name.  Integers stay
 * integers; a missing value counts as 0. */
static int pipeline_step(struct asya_call *call, json_int_t mul, json_int_t add, const char *name)
{
    json_t *in;
    int st = input_object(call, &in);
    if (st != ASYA_OK)
        return st;
    json_t *v = json_object_get(in, "value");
    json_t *nv;
    if (!v || json_is_integer(v)) {
        nv = json_integer((v ? json_integer_value(v) : 0) * mul + add);
    } else if (json_is_real(v)) {
        nv = json_real(json_real_value(v) * (double)mul + (double)add);
    } else {
        json_decref(in);
        return asya_fail(call, "TypeError", "value must be a number");
    }
    int failed = set_new(in, "value", nv) || set_new(in, "operation", json_string(name));
    return finish(call, in, failed);
}

/* value * 2, operation "doubled". */
ASYA_EXPORT int pipeline_doubler(struct asya_call *call);
ASYA_EXPORT int pipeline_doubler(struct asya_call *call)
{
    return pipeline_step(call, 2, 0, "doubled");
}

/* value + 5, operation "incremented". */
ASYA_EXPORT int pipeline_incrementer(struct asya_call *call);
ASYA_EXPORT int pipeline_incrementer(struct asya_call *call)
{
    return pipeline_step(call, 1, 5, "incremented");
}

/* Sleeps 0.3 s per step (payload.steps, default 3), so a job stays in one actor
 * long enough for its progress to be watched; returns the payload +
 * steps_completed (= steps). */
ASYA_EXPORT int progress_handler(struct asya_call *call);
ASYA_EXPORT int progress_handler(struct asya_call *call)
{
    json_t *in;
    int st = input_object(call, &in);
    if (st != ASYA_OK)
        return st;
    double steps = number_or(in, "steps", 3.0);
    if (steps < 0 || steps > 1000) {
        json_decref(in);
        return asya_fail(call, "ValueError", "steps must be between 0 and 1000");
    }
    long n = (long)steps;
    for (long i = 0; i < n; i++)
        sleep_seconds(0.3);
    return finish(call, in, set_new(in, "steps_completed", json_integer(n)));
}

/* Beyond the seed: a handler that reports its own progress (asya_call.progress)
 * after each of `steps` steps of `step_s` seconds, with the message "step i
 * of n"; `burst` extra calls right after each step show the rate limit.
 * Returns the payload + progress_codes, what the calls returned (0 relayed,
 * 1 nobody listens or rate-limited). */
ASYA_EXPORT int self_progress_handler(struct asya_call *call);
ASYA_EXPORT int self_progress_handler(struct asya_call *call)
{
    json_t *in;
    int st = input_object(call, &in);
    if (st != ASYA_OK)
        return st;
    double steps = number_or(in, "steps", 3.0);
    double step_s = number_or(in, "step_s", 0.15);
    double burst = number_or(in, "burst", 0.0);
    if (steps < 0 || steps > 100 || step_s < 0 || step_s > 10 || burst < 0 || burst > 10000) {
        json_decref(in);
        return asya_fail(call, "ValueError", "steps 0..100, step_s 0..10, burst 0..10000");
    }
    json_t *codes = json_array();
    if (!codes) {
        json_decref(in);
        return asya_oom(call, "progress_codes");
    }
    long n = (long)steps;
    for (long i = 1; i <= n; i++) {
        sleep_seconds(step_s);
        int rc = asya_progress(call, (double)i / (double)n, "step %ld of %ld", i, n);
        json_array_append_new(codes, json_integer(rc));
        for (long b = 0; b < (long)burst; b++)
            json_array_append_new(codes,
                                  json_integer(asya_progress(call, (double)i / (double)n, NULL)));
    }
    return finish(call, in, set_new(in, "progress_codes", codes));
}
