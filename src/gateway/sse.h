/*
 * sse.h - Server-Sent Events framing (pure, for unit tests): one event is
 * "id: N\nevent: NAME\ndata: LINE\n...\n\n", with a data line per line of
 * the payload so a newline inside it cannot end the event early.
 */
#ifndef ASYA_GW_SSE_H
#define ASYA_GW_SSE_H

#include "textbuf.h"

#include <stdint.h>

/* Append one event.  id <= 0 omits the id line; event NULL omits the event line. */
void sse_frame(struct textbuf *out, int64_t id, const char *event, const char *data);
/* Append a comment line (": text\n\n"), which clients ignore: keepalives. */
void sse_comment(struct textbuf *out, const char *text);
/* Parse a Last-Event-ID header: a decimal id >= 0, else 0 (start from the beginning). */
int64_t sse_parse_last_id(const char *header);

#endif /* ASYA_GW_SSE_H */
