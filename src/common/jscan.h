/*
 * jscan.h - recognising JSON text that is already in the form the sidecar
 * writes (jansson's compact dump, asya_json_dumps), so it can be passed on
 * byte for byte instead of parsed into a tree and printed again.
 *
 * A value is "canonical" when json_loadb(text) followed by asya_json_dumps
 * gives back exactly the same bytes.  The scanner accepts only a safe subset
 * of that: no whitespace, strings of valid UTF-8 whose only escapes are
 * \" \\ \b \f \n \r \t, integers of at most 18 digits (no -0), objects
 * without duplicate keys of at most JSCAN_MAX_KEYS members, nesting of at
 * most JSCAN_MAX_DEPTH, and no real numbers at all (how jansson prints a real
 * depends on every other real in the document).  Anything else, valid JSON
 * or not, is "not canonical" and the caller takes the jansson path, which
 * also gives the error message for invalid text.  So the scanner never has
 * to reject JSON, only to be right when it says yes.
 * These functions never allocate except jscan_encode's buffer, and never log.
 */
#ifndef ASYA_JSCAN_H
#define ASYA_JSCAN_H

#include "textbuf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JSCAN_MAX_DEPTH 64 /* deeper values are left to jansson */
#define JSCAN_MAX_KEYS  32 /* objects with more members are left to jansson */

enum jscan_type {
    JSCAN_NONE = 0, /* not canonical */
    JSCAN_OBJECT,
    JSCAN_ARRAY,
    JSCAN_STRING,
    JSCAN_INTEGER,
    JSCAN_TRUE,
    JSCAN_FALSE,
    JSCAN_NULL,
};

/* Length of the canonical value at the start of s (n bytes), with its type
 * in *type; 0 (and JSCAN_NONE) when s does not start with one. */
size_t jscan_value(const char *s, size_t n, enum jscan_type *type);

/* One member of an object: the key's text with its quotes, and the value's. */
struct jscan_member {
    const char *key;
    size_t key_len;
    const char *value;
    size_t value_len;
    enum jscan_type type;
};

/*
 * Split the JSON object text s (n bytes) into its members, in order.  With
 * loose, whitespace is allowed around the object's own braces, colons and
 * commas (a caller that rebuilds the object from its members does not care),
 * never inside the values.  Returns the member count, or -1 when s is not
 * such an object: a value or key that is not canonical, more than max
 * members, or a duplicate key.
 */
int jscan_object(const char *s, size_t n, bool loose, struct jscan_member *out, size_t max);

/* The same for the canonical object at the start of s, followed by
 * anything: *len gets its length. */
int jscan_object_at(const char *s, size_t n, struct jscan_member *out, size_t max, size_t *len);

/* The member of m[0..count) whose key is name (a C string), or NULL. */
const struct jscan_member *jscan_find(const struct jscan_member *m, size_t count, const char *name);

/* True when member m's key, decoded, is name. */
bool jscan_key_is(const struct jscan_member *m, const char *name);

/*
 * Decode the canonical string text s (n bytes, with its quotes) into out
 * (cap bytes, NUL-terminated).  Returns the decoded length, or -1 when it
 * does not fit.  Canonical strings hold no NUL, so the result is a C string.
 */
long jscan_decode(const char *s, size_t n, char *out, size_t cap);

/* Value of the canonical integer text s (n bytes). */
int64_t jscan_integer(const char *s, size_t n);

/* Append s (len bytes of valid UTF-8) to b as a JSON string, quoted and
 * escaped exactly as jansson's dump writes it. */
void jscan_encode(struct textbuf *b, const char *s, size_t len);

#endif /* ASYA_JSCAN_H */
