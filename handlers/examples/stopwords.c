/*
 * stopwords.c - example stateful handler: asya_init loads a word list once
 * per worker process, the handler uses it for every message, asya_fini frees
 * it.  This is the shape of any handler that loads a model, a dictionary or
 * a connection pool once.
 *
 *   {"text": "The cat and the hat"}  ->  {"text": "cat hat", "removed": 3}
 *
 * The list comes from $STOPWORDS_FILE, or else from stopwords.txt in the
 * directory of this library (make copies handlers/examples/stopwords.txt
 * there, and `make install` installs both).  One word per line, '#' comments.
 *
 * Errors:
 *   - the list cannot be read: asya_init fails, so the runtime refuses to start
 *     with that one line (asya-invoke prints it and exits 2);
 *   - payload without "text": processing_error (ValueError);
 *   - out of memory: oom_error.
 *
 * Try it:
 *   echo '{"text": "The cat and the hat"}' | build/bin/asya-invoke --payload \
 *       --handler build/lib/asya/examples/stopwords.so:remove_stopwords
 */
#include <asya/asya.h>
#include <asya/asya_json.h>

#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

ASYA_MODULE_MAGIC(.name = "stopwords", .version = "1.0");

ASYA_EXPORT int remove_stopwords(struct asya_call *call);

/* ---- state: loaded by asya_init, freed by asya_fini ----------------------- */

/* Per worker process: workers are separate processes, so no locks are needed. */
static char **words; /* sorted, lower-case, owned */
static size_t nwords;

static int cmp_word(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_words(void)
{
    for (size_t i = 0; i < nwords; i++)
        free(words[i]);
    free(words);
    words = NULL;
    nwords = 0;
}

/* The default list: stopwords.txt next to this library, found with dladdr. */
static int default_path(char *buf, size_t len)
{
    Dl_info info;
    if (!dladdr((void *)default_path, &info) || !info.dli_fname)
        return -1;
    const char *slash = strrchr(info.dli_fname, '/');
    int dirlen = slash ? (int)(slash - info.dli_fname) : 1;
    const char *dir = slash ? info.dli_fname : ".";
    int n = snprintf(buf, len, "%.*s/stopwords.txt", dirlen, dir);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

ASYA_EXPORT int asya_init(char *err, size_t errlen)
{
    char path[PATH_MAX];
    const char *env = getenv("STOPWORDS_FILE");
    if (env && *env)
        snprintf(path, sizeof path, "%s", env);
    else if (default_path(path, sizeof path) != 0) {
        snprintf(err, errlen, "cannot locate stopwords.txt; set STOPWORDS_FILE");
        return -1;
    }
    FILE *f = fopen(path, "r");
    if (!f) {
        /* This one line is what the operator sees when the runtime refuses to start. */
        snprintf(err, errlen, "cannot read the stopword list %s: %s", path, strerror(errno));
        return -1;
    }
    size_t cap = 0;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        char *w = line + strspn(line, " \t");
        w[strcspn(w, " \t\r\n#")] = '\0';
        if (!*w)
            continue; /* blank line or comment */
        for (char *c = w; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        if (nwords == cap) {
            cap = cap ? 2 * cap : 64;
            char **grown = realloc(words, cap * sizeof *words);
            if (!grown)
                goto oom;
            words = grown;
        }
        if (!(words[nwords] = strdup(w)))
            goto oom;
        nwords++;
    }
    fclose(f);
    qsort(words, nwords, sizeof *words, cmp_word);
    return 0;
oom:
    fclose(f);
    free_words();
    snprintf(err, errlen, "out of memory loading %s", path);
    return -1;
}

ASYA_EXPORT void asya_fini(void)
{
    free_words(); /* valgrind stays quiet on a clean worker exit */
}

/* ---- the handler ---------------------------------------------------------- */

static int is_stopword(const char *w, size_t len)
{
    char key[64];
    if (len >= sizeof key)
        return 0; /* no stopword is that long */
    for (size_t i = 0; i < len; i++)
        key[i] = (char)tolower((unsigned char)w[i]);
    key[len] = '\0';
    const char *k = key;
    return bsearch(&k, words, nwords, sizeof *words, cmp_word) != NULL;
}

ASYA_EXPORT int remove_stopwords(struct asya_call *call)
{
    json_t *payload = asya_input_json(call);
    if (!payload)
        return asya_oom(call, "cannot parse the payload: out of memory");
    const char *text = json_string_value(json_object_get(payload, "text"));
    if (!json_is_object(payload) || !text) {
        json_decref(payload);
        return asya_fail(call, "ValueError", "payload must be an object with a string \"text\"");
    }

    size_t len = strlen(text);
    char *out = malloc(len + 1); /* the result is never longer than the input */
    if (!out) {
        json_decref(payload);
        return asya_oom(call, "cannot allocate %zu bytes for the result", len + 1);
    }
    size_t o = 0;
    json_int_t removed = 0;
    for (const char *p = text; *p;) {
        while (*p && isspace((unsigned char)*p))
            p++;
        const char *start = p;
        while (*p && !isspace((unsigned char)*p))
            p++;
        size_t wl = (size_t)(p - start);
        if (!wl)
            break;
        if (is_stopword(start, wl)) {
            removed++;
            continue;
        }
        if (o)
            out[o++] = ' ';
        memcpy(out + o, start, wl);
        o += wl;
    }
    out[o] = '\0';

    int bad = json_object_set_new(payload, "text", json_string(out)) != 0 ||
              json_object_set_new(payload, "removed", json_integer(removed)) != 0;
    free(out);
    if (bad) {
        json_decref(payload);
        return asya_oom(call, "out of memory building the result");
    }
    return asya_emit_json_new(call, payload);
}
