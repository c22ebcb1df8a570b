/*
 * loader.h - opening a handler library: dlopen, ABI stamp check, handler
 * lookup and the optional asya_init/asya_fini hooks.
 *
 * Used by workers (and by tools that run one request in-process).  Handler
 * code runs only after the stamp check has passed.
 */
#ifndef ASYA_LOADER_H
#define ASYA_LOADER_H

#include <stddef.h>

#include <asya/asya.h>

struct loader {
    void *dl;                   /* dlopen handle; NULL when closed */
    asya_handler_fn fn;         /* the handler named by the spec */
    void (*fini)(void);         /* asya_fini, or NULL when not exported */
    const char *module_name;    /* from the stamp (borrowed from the library), may be NULL */
    const char *module_version; /* likewise */
    char label[512];            /* "<lib basename>:<function>", for messages */
};

/*
 * Open lib_path, check its ABI stamp, look up func and run asya_init when the
 * library exports it.  spec is the ASYA_HANDLER text used in messages.
 * Returns 0 and fills ld (release with loader_close), or -EINVAL with one
 * line in err that names the failed step: cannot load, no stamp, another ABI
 * version, stamp too small, missing function, init failure.  On failure the
 * library is closed again and asya_fini is not called.
 */
int loader_open(struct loader *ld, const char *spec, const char *lib_path, const char *func,
                char *err, size_t errlen) __attribute__((warn_unused_result));

/* Run asya_fini (when exported) and dlclose.  NULL or a closed ld is fine. */
void loader_close(struct loader *ld);

#endif /* ASYA_LOADER_H */
