/*
 * asya.h - the Asya handler ABI.
 *
 * A handler is a plain exported C function in a shared library that the
 * asya-runtime loads with dlopen().  The library carries exactly one ABI stamp
 * (ASYA_MODULE_MAGIC) so the runtime can refuse a library built against
 * another ABI before calling anything in it.
 *
 *     #include <asya/asya.h>
 *
 *     ASYA_MODULE_MAGIC(.name = "hello", .version = "1.0");
 *
 *     ASYA_EXPORT int hello(struct asya_call *call)
 *     {
 *         // call->input holds the payload as UTF-8 JSON text
 *         return call->emit(call, call->input, call->input_len) == 0 ? ASYA_OK : ASYA_OOM;
 *     }
 *
 * Point the runtime at it with ASYA_HANDLER=/path/libhello.so:hello.
 *
 * This header has no dependencies beyond the C library, so handlers in other
 * languages (C++, Rust, Zig...) can mirror it.  <asya/asya_json.h> adds
 * jansson helpers for C authors.
 */
#ifndef ASYA_ASYA_H
#define ASYA_ASYA_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on any incompatible change of this header; appending fields to the
 * end of a struct that carries its own size is compatible. */
#define ASYA_ABI_MAJOR 1

/* Version of the Asya C implementation that shipped this header. */
#define ASYA_VERSION "0.1.0"

/* Marks a symbol the runtime must find with dlsym().  Build handlers with
 * -fvisibility=hidden so only the stamp, hooks and handlers are exported. */
#define ASYA_EXPORT __attribute__((visibility("default")))

/*
 * The ABI stamp.  The runtime calls asya_module_magic() right after dlopen()
 * and refuses the library unless size >= the size it knows and abi_major
 * equals its own ASYA_ABI_MAJOR.
 */
struct asya_magic {
    uint32_t size;       /* sizeof(struct asya_magic) at build time */
    uint32_t abi_major;  /* ASYA_ABI_MAJOR the library was built against */
    const char *name;    /* optional, shown in logs */
    const char *version; /* optional, shown in logs */
};

/* Defined by ASYA_MODULE_MAGIC; returns a pointer to a static stamp. */
ASYA_EXPORT const struct asya_magic *asya_module_magic(void);

/*
 * Stamp the library.  Put exactly one in one .c file of each library:
 *     ASYA_MODULE_MAGIC(.name = "echo", .version = "1.2");
 * or, with no optional fields, ASYA_MODULE_MAGIC(.name = 0);
 */
#define ASYA_MODULE_MAGIC(...)                                                                     \
    ASYA_EXPORT const struct asya_magic *asya_module_magic(void)                                   \
    {                                                                                              \
        static const struct asya_magic asya_magic_ = {                                             \
            .size = sizeof(struct asya_magic), .abi_major = ASYA_ABI_MAJOR, __VA_ARGS__};          \
        return &asya_magic_;                                                                       \
    }                                                                                              \
    extern int asya_magic_defined_ /* swallows the caller's ';' */

/* What a handler returns. */
enum asya_status {
    ASYA_OK = 0,       /* success: the emitted results (possibly none) are the answer */
    ASYA_ERROR = 1,    /* failure: answered as "processing_error" with set_error's type/message */
    ASYA_OOM = 2,      /* out of host memory: answered as "oom_error" */
    ASYA_CUDA_OOM = 3, /* out of GPU memory: answered as "cuda_oom_error" */
};

/* What the handler receives in call->input (chosen by ASYA_HANDLER_MODE). */
enum asya_mode {
    ASYA_MODE_PAYLOAD = 0,  /* input is the envelope's payload; results are payloads */
    ASYA_MODE_ENVELOPE = 1, /* input is the whole envelope; results are whole envelopes */
};

/*
 * One invocation.  The host owns every field and the struct itself; it is
 * valid only until the handler returns.  Fields are read-only for handlers.
 */
struct asya_call {
    uint32_t size; /* sizeof(struct asya_call) as the host built it */
    uint32_t mode; /* enum asya_mode */

    /* Input as NUL-terminated UTF-8 JSON text (borrowed): the payload in
     * payload mode, the whole envelope in envelope mode. */
    const char *input;
    size_t input_len;

    /* The whole envelope as received, in both modes (borrowed), so payload
     * handlers can read headers or the route without switching modes. */
    const char *envelope;
    size_t envelope_len;

    /*
     * Emit one result: a payload (payload mode) or an envelope object
     * (envelope mode), as UTF-8 JSON text of len bytes (need not be
     * NUL-terminated; the host copies it).  Call it zero times for "no
     * result", several times to fan out.  Returns 0, or -1 when the text is
     * not valid JSON, not an object in envelope mode, or too large; the
     * handler should then return ASYA_ERROR (or ASYA_OOM on allocation
     * failure of its own).
     */
    int (*emit)(struct asya_call *call, const char *json, size_t len);

    /*
     * Describe the failure a handler is about to report with ASYA_ERROR,
     * ASYA_OOM or ASYA_CUDA_OOM.  type is a short class name such as
     * "ValueError" (NULL means a default for the status); message is free
     * text (NULL means none).  The host copies both; the last call wins.
     */
    void (*set_error)(struct asya_call *call, const char *type, const char *message);

    void *host; /* private to the host */

    /*
     * Appended later (still ABI 1): check call->size, or use asya_progress()
     * below, which does.  Report how far this call has come: fraction in
     * [0, 1], message free text (NULL means none; the host copies at most
     * 1 KiB of it).  The sidecar shows it to the gateway as progress between
     * "processing" and "completed" of this step.  Best effort: returns 0 when
     * relayed, 1 when nobody listens (no gateway, a sidecar that did not ask
     * for it, asya-invoke) or when it came within 100 ms of the last one
     * relayed (dropped: a handler may call it in a tight loop), -1 for a
     * fraction outside [0, 1] or NaN.  Never blocks for long; never fails
     * the call.
     */
    int (*progress)(struct asya_call *call, double fraction, const char *message);
};

/* The signature of every handler named by ASYA_HANDLER=<lib.so>:<function>.
 * Returns an enum asya_status value. */
typedef int (*asya_handler_fn)(struct asya_call *call);

/*
 * Optional hooks, looked up by these names.  asya_init runs once per worker
 * process after the stamp check and before the first call (load a model, open
 * a file); it returns 0, or non-zero after writing a one-line reason into
 * err (errlen bytes), which stops the worker and, at start-up, the runtime.
 * asya_fini runs once when the worker exits cleanly.
 */
ASYA_EXPORT int asya_init(char *err, size_t errlen);
ASYA_EXPORT void asya_fini(void);

/* Helpers: record the failure and return the status to hand back, so a
 * handler can write `return asya_fail(call, "ValueError", "bad %s", x);`. */
static inline int asya_vfail_status(struct asya_call *call, int status, const char *type,
                                    const char *fmt, va_list ap)
{
    char msg[1024];
    msg[0] = '\0';
    if (fmt)
        vsnprintf(msg, sizeof msg, fmt, ap);
    call->set_error(call, type, msg);
    return status;
}

/* Report a handler failure ("processing_error"); returns ASYA_ERROR. */
__attribute__((format(printf, 3, 4))) static inline int
asya_fail(struct asya_call *call, const char *type, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int st = asya_vfail_status(call, ASYA_ERROR, type, fmt, ap);
    va_end(ap);
    return st;
}

/* Report running out of memory ("oom_error"); returns ASYA_OOM. */
__attribute__((format(printf, 2, 3))) static inline int asya_oom(struct asya_call *call,
                                                                 const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int st = asya_vfail_status(call, ASYA_OOM, "MemoryError", fmt, ap);
    va_end(ap);
    return st;
}

/* Report running out of GPU memory ("cuda_oom_error"); returns ASYA_CUDA_OOM. */
__attribute__((format(printf, 2, 3))) static inline int asya_cuda_oom(struct asya_call *call,
                                                                      const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int st = asya_vfail_status(call, ASYA_CUDA_OOM, "OutOfMemoryError", fmt, ap);
    va_end(ap);
    return st;
}

/*
 * Report progress (see asya_call.progress) with a printf-style message (fmt
 * NULL: none).  Returns as call->progress, and 1 under a host older than the
 * progress field, so a handler built against this header runs everywhere.
 */
__attribute__((format(printf, 3, 4))) static inline int
asya_progress(struct asya_call *call, double fraction, const char *fmt, ...)
{
    if (call->size < offsetof(struct asya_call, progress) + sizeof call->progress ||
        !call->progress)
        return 1;
    char msg[1024];
    msg[0] = '\0';
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
    }
    return call->progress(call, fraction, fmt ? msg : NULL);
}

#ifdef __cplusplus
}
#endif

#endif /* ASYA_ASYA_H */
