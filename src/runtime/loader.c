#include "loader.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

typedef const struct asya_magic *(*magic_fn)(void);
typedef int (*init_fn)(char *err, size_t errlen);
typedef void (*fini_fn)(void);

/* dlsym returns an object pointer; copying it into a function pointer with
 * memcpy is the portable spelling (a cast trips -Wpedantic). */
static void *sym(void *dl, const char *name)
{
    dlerror();
    return dlsym(dl, name);
}

int loader_open(struct loader *ld, const char *spec, const char *lib_path, const char *func,
                char *err, size_t errlen)
{
    memset(ld, 0, sizeof *ld);
    const char *base = strrchr(lib_path, '/');
    base = base ? base + 1 : lib_path;
    snprintf(ld->label, sizeof ld->label, "%s:%s", base, func);

    void *dl = dlopen(lib_path, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        const char *why = dlerror();
        snprintf(err, errlen, "ASYA_HANDLER=%s: cannot load library: %s", spec,
                 why ? why : "unknown dlopen error");
        return -EINVAL;
    }

    /* 1. The ABI stamp, before anything else in the library is called. */
    void *p = sym(dl, "asya_module_magic");
    if (!p) {
        snprintf(err, errlen,
                 "ASYA_HANDLER=%s: %s has no Asya ABI stamp (asya_module_magic not found); "
                 "add ASYA_MODULE_MAGIC(...) to one source file and rebuild",
                 spec, lib_path);
        goto fail;
    }
    magic_fn get_magic;
    memcpy(&get_magic, &p, sizeof get_magic);
    const struct asya_magic *magic = get_magic();
    if (!magic) {
        snprintf(err, errlen,
                 "ASYA_HANDLER=%s: ABI stamp check failed: asya_module_magic() "
                 "returned NULL",
                 spec);
        goto fail;
    }
    if (magic->abi_major != ASYA_ABI_MAJOR) {
        snprintf(err, errlen,
                 "ASYA_HANDLER=%s: ABI stamp check failed: library built for handler ABI %u, "
                 "this runtime speaks ABI %d; rebuild it against this runtime's <asya/asya.h>",
                 spec, (unsigned)magic->abi_major, ASYA_ABI_MAJOR);
        goto fail;
    }
    if (magic->size < sizeof(struct asya_magic)) {
        snprintf(err, errlen,
                 "ASYA_HANDLER=%s: ABI stamp check failed: stamp size %u is smaller than %zu", spec,
                 (unsigned)magic->size, sizeof(struct asya_magic));
        goto fail;
    }
    ld->module_name = magic->name;
    ld->module_version = magic->version;

    /* 2. The handler itself. */
    p = sym(dl, func);
    if (!p) {
        snprintf(err, errlen,
                 "ASYA_HANDLER=%s: function '%s' not found in %s (is it exported with "
                 "ASYA_EXPORT?)",
                 spec, func, lib_path);
        goto fail;
    }
    memcpy(&ld->fn, &p, sizeof ld->fn);

    /* 3. The optional hooks; init runs last, only once everything checked out. */
    p = sym(dl, "asya_fini");
    if (p)
        memcpy(&ld->fini, &p, sizeof ld->fini);
    p = sym(dl, "asya_init");
    if (p) {
        init_fn init;
        memcpy(&init, &p, sizeof init);
        char why[512];
        why[0] = '\0';
        int rc = init(why, sizeof why);
        if (rc != 0) {
            why[sizeof why - 1] = '\0';
            if (why[0])
                snprintf(err, errlen, "ASYA_HANDLER=%s: asya_init failed: %s", spec, why);
            else
                snprintf(err, errlen, "ASYA_HANDLER=%s: asya_init failed (returned %d)", spec, rc);
            goto fail;
        }
    }
    ld->dl = dl;
    return 0;
fail:
    dlclose(dl);
    ld->fn = NULL;
    ld->fini = NULL;
    ld->module_name = ld->module_version = NULL;
    return -EINVAL;
}

void loader_close(struct loader *ld)
{
    if (!ld || !ld->dl)
        return;
    if (ld->fini)
        ld->fini();
    dlclose(ld->dl);
    ld->dl = NULL;
    ld->fn = NULL;
    ld->fini = NULL;
}
