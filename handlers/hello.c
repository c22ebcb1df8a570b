/*
 * hello.c - a small example handler to copy when you write your own.
 *
 * What it does: reads the payload (a JSON object), adds
 *     "greeting": "Hello, <name>!"
 * and emits the result.  {"name": "Ada"} becomes
 *     {"name": "Ada", "greeting": "Hello, Ada!"}
 *
 * Build it (outside this repository, after `make install`):
 *     cc -shared -fPIC -fvisibility=hidden $(pkg-config --cflags --libs asya-handler) \
 *        -o hello.so hello.c
 * In this repository `make` builds it as build/lib/asya/hello.so.
 *
 * Run it:
 *     ASYA_HANDLER=$PWD/build/lib/asya/hello.so:hello \
 *     ASYA_SOCKET_PATH=/tmp/sockets/app.sock  build/bin/asya-runtime
 *
 * How the runtime treats your code:
 *   - It runs in a worker process, one request at a time.  Several workers
 *     (ASYA_RUNTIME_WORKERS) mean several processes, so globals are per
 *     worker and you need no locks.
 *   - If your code crashes, the request is answered with processing_error
 *     (type "SIGSEGV", ...) and the worker is replaced.  Still: report errors
 *     with asya_fail() rather than crashing, so the message reaches the
 *     error-end queue.
 *   - Everything the runtime hands you (call->input, call->envelope) is
 *     borrowed and valid only until your function returns.
 */
#include <asya/asya.h>      /* the ABI: struct asya_call, ASYA_OK..., asya_fail() */
#include <asya/asya_json.h> /* jansson helpers: asya_input_json(), asya_emit_json_new() */

/*
 * 1. The ABI stamp: exactly one per library.  The runtime refuses to load a
 *    library without it, or one built against another ABI version.  name and
 *    version are optional and show up in the runtime's logs.
 */
ASYA_MODULE_MAGIC(.name = "hello", .version = "1.0");

/*
 * 2. Optional once-per-worker hooks.  asya_init runs after the library is
 *    loaded and before the first request: load a model, open a file, read
 *    configuration.  Return non-zero with a one-line reason in err to stop
 *    the worker (at start-up the whole runtime exits with that line).
 *    asya_fini runs when the worker stops cleanly (SIGTERM on the runtime).
 *    This example keeps a greeting word read from the environment.
 */
static const char *greeting_word = "Hello";

ASYA_EXPORT int asya_init(char *err, size_t errlen)
{
    const char *word = getenv("HELLO_GREETING"); /* optional, e.g. "Bonjour" */
    if (word && !*word) {
        snprintf(err, errlen, "HELLO_GREETING is set but empty");
        return -1;
    }
    if (word)
        greeting_word = word;
    return 0;
}

ASYA_EXPORT void asya_fini(void)
{
    /* Nothing to release here; free models, close files... */
}

/*
 * 3. The handler.  ASYA_EXPORT makes it visible to dlsym (everything else
 *    stays hidden with -fvisibility=hidden).  The prototype line keeps
 *    -Wmissing-prototypes quiet; a header of your own works as well.
 *
 *    Point the runtime at it with ASYA_HANDLER=<path>/hello.so:hello.
 */
ASYA_EXPORT int hello(struct asya_call *call);

ASYA_EXPORT int hello(struct asya_call *call)
{
    /* In the default payload mode, call->input is the payload as JSON text.
     * asya_input_json() parses it: a new reference we must json_decref(). */
    json_t *payload = asya_input_json(call);
    if (!payload)
        /* Parsing only fails when memory runs out (the runtime already
         * validated the JSON).  asya_oom() answers oom_error. */
        return asya_oom(call, "cannot parse the payload: out of memory");

    if (!json_is_object(payload)) {
        json_decref(payload);
        /* asya_fail() records the error type and message and returns
         * ASYA_ERROR: the answer is processing_error with this type/message,
         * and the sidecar sends the envelope to error-end. */
        return asya_fail(call, "ValueError", "payload must be a JSON object");
    }

    /* json_object_get returns a borrowed reference: no decref. */
    const char *name = json_string_value(json_object_get(payload, "name"));
    if (!name)
        name = "world";

    char text[256];
    snprintf(text, sizeof text, "%s, %s!", greeting_word, name);
    /* _set_new steals the new string; it fails only when memory runs out. */
    if (json_object_set_new(payload, "greeting", json_string(text)) != 0) {
        json_decref(payload);
        return asya_oom(call, "cannot add the greeting: out of memory");
    }

    /*
     * Emit the result.  asya_emit_json_new() serialises it, hands it to the
     * runtime (which copies it), releases `payload` and returns the status to
     * return: ASYA_OK, or ASYA_OOM / ASYA_ERROR if that failed.
     *
     * Emitting zero times means "no result" (the sidecar sends the envelope to
     * happy-end); emitting several times fans out into several messages.
     */
    return asya_emit_json_new(call, payload);
}
