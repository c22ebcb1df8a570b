/*
 * textbuf.h - a growing text buffer for building replies (metrics, SSE
 * frames, HTTP bodies).  After an allocation failure every later append is
 * a no-op and textbuf_failed() is true, so builders check once at the end.
 */
#ifndef ASYA_TEXTBUF_H
#define ASYA_TEXTBUF_H

#include <stdbool.h>
#include <stddef.h>

struct textbuf {
    char *data; /* NUL-terminated when len > 0; free with textbuf_free or take it */
    size_t len;
    size_t cap;
    bool failed;
};

#define TEXTBUF_INIT                                                                               \
    {                                                                                              \
        NULL, 0, 0, false                                                                          \
    }

void textbuf_append(struct textbuf *b, const char *s, size_t n);
void textbuf_puts(struct textbuf *b, const char *s);
void textbuf_printf(struct textbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool textbuf_failed(const struct textbuf *b);
/* Give the bytes to the caller (free with free(); "" when empty, NULL on
 * failure) and reset b. */
char *textbuf_take(struct textbuf *b, size_t *len);
void textbuf_free(struct textbuf *b);

#endif /* ASYA_TEXTBUF_H */
