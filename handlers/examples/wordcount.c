/*
 * wordcount.c - example payload handler: counts the words of payload.text.
 *
 *   {"text": "the quick brown fox"}  ->  {"text": "the quick brown fox", "words": 4}
 *
 * With "per_word": true it also returns how often each word occurs:
 *   {"text": "a b a", "per_word": true} -> {..., "words": 3, "counts": {"a": 2, "b": 1}}
 *
 * Shows the three ways a handler ends:
 *   - success:   emit the result (asya_emit_json_new) and return its status;
 *   - failure:   return asya_fail(call, "<Type>", "<message>") -> processing_error;
 *   - no memory: return asya_oom(call, "<message>")           -> oom_error.
 *
 * Try it:
 *   echo '{"text": "to be or not to be"}' | \
 *       build/bin/asya-invoke --payload --handler build/lib/asya/examples/wordcount.so:wordcount
 */
#include <asya/asya.h>
#include <asya/asya_json.h>

#include <ctype.h>
#include <string.h>

/* One stamp per library; the runtime checks it before calling anything. */
ASYA_MODULE_MAGIC(.name = "wordcount", .version = "1.0");

/* Exported handlers need a prototype (-Wmissing-prototypes); a header works too. */
ASYA_EXPORT int wordcount(struct asya_call *call);

/* Adds one to counts[word] (word is len bytes, not NUL-terminated).
 * Returns 0, or -1 when memory ran out. */
static int count_word(json_t *counts, const char *word, size_t len)
{
    char key[256];
    if (len >= sizeof key)
        len = sizeof key - 1; /* very long "words" are counted by their prefix */
    memcpy(key, word, len);
    key[len] = '\0';
    json_int_t n = json_integer_value(json_object_get(counts, key)); /* 0 when absent */
    return json_object_set_new(counts, key, json_integer(n + 1));
}

ASYA_EXPORT int wordcount(struct asya_call *call)
{
    json_t *payload = asya_input_json(call); /* new reference: decref on every path */
    if (!payload)
        return asya_oom(call, "cannot parse the payload: out of memory");

    /* Validate the input and say precisely what is wrong: the message ends up in
     * the error-end queue, where someone will read it. */
    const char *text = json_string_value(json_object_get(payload, "text")); /* borrowed */
    if (!json_is_object(payload) || !text) {
        json_decref(payload);
        return asya_fail(call, "ValueError", "payload must be an object with a string \"text\"");
    }
    int per_word = json_is_true(json_object_get(payload, "per_word"));

    json_t *counts = per_word ? json_object() : NULL;
    if (per_word && !counts) {
        json_decref(payload);
        return asya_oom(call, "cannot allocate the word table");
    }

    /* A word is a run of non-space bytes (UTF-8 letters included). */
    json_int_t words = 0;
    const char *p = text;
    while (*p) {
        while (*p && isspace((unsigned char)*p))
            p++;
        if (!*p)
            break;
        const char *start = p;
        while (*p && !isspace((unsigned char)*p))
            p++;
        words++;
        if (counts && count_word(counts, start, (size_t)(p - start)) != 0) {
            json_decref(counts);
            json_decref(payload);
            return asya_oom(call, "out of memory counting word %lld", (long long)words);
        }
    }

    /* _set_new steals the value; a failure here can only be out of memory. */
    if (json_object_set_new(payload, "words", json_integer(words)) != 0 ||
        (counts && json_object_set_new(payload, "counts", counts) != 0)) {
        json_decref(payload);
        return asya_oom(call, "out of memory building the result");
    }
    /* Serialises, hands the text to the runtime (which copies it), frees
     * payload and returns ASYA_OK, ASYA_OOM or ASYA_ERROR. */
    return asya_emit_json_new(call, payload);
}
