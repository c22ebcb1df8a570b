/*
 * jspan.h - finding a top-level member's value in JSON text, as a span of
 * that text.  The worker answers with the payload and route exactly as it
 * received them (numbers keep their spelling; jansson would print 0.1 as
 * 0.10000000000000001), so it slices them out of the request rather than
 * re-serialising them.
 *
 * The text must already have been validated by a JSON parser.  The scanner
 * gives up on anything surprising (escaped keys, a non-object); the caller
 * then falls back to re-serialising the parsed value.
 */
#ifndef ASYA_JSPAN_H
#define ASYA_JSPAN_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Find the value of the top-level member key in the JSON object text s (n
 * bytes); with duplicate keys, the last one (as jansson keeps).  Returns true
 * with *vs pointing into s and *vl its length, or false when the member is
 * absent or the scanner is unsure.
 */
bool jspan_member(const char *s, size_t n, const char *key, const char **vs, size_t *vl);

#endif /* ASYA_JSPAN_H */
