/* sse_frame.c - SSE framing (sse.h): pure, no I/O. */
#include "sse.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void sse_frame(struct textbuf *out, int64_t id, const char *event, const char *data)
{
    if (id > 0)
        textbuf_printf(out, "id: %lld\n", (long long)id);
    if (event)
        textbuf_printf(out, "event: %s\n", event);
    const char *p = data;
    for (;;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        if (n > 0 && p[n - 1] == '\r')
            n--;
        textbuf_puts(out, "data: ");
        textbuf_append(out, p, n);
        textbuf_puts(out, "\n");
        if (!nl)
            break;
        p = nl + 1;
    }
    textbuf_puts(out, "\n");
}

void sse_comment(struct textbuf *out, const char *text)
{
    textbuf_printf(out, ": %s\n\n", text);
}

int64_t sse_parse_last_id(const char *header)
{
    if (!header || !*header)
        return 0;
    char *end;
    errno = 0;
    long long v = strtoll(header, &end, 10);
    while (*end == ' ')
        end++;
    if (errno || *end || v < 0)
        return 0;
    return (int64_t)v;
}
