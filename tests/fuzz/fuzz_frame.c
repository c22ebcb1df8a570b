/*
 * libFuzzer target for the incremental frame decoder (src/common/frame.c).
 *
 * Input: byte 0 picks the reader's max_len, byte 1 seeds the chunk sizes, the
 * rest is the byte stream.  The stream is fed in those chunks and every frame
 * the reader produces is compared with a straightforward whole-buffer decode.
 */
#include "frame.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const size_t max_lens[] = {0, 1, 2, 16, 255, 4096, 65536, FRAME_DEFAULT_MAX};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t max_len = max_lens[data[0] % (sizeof max_lens / sizeof max_lens[0])];
    unsigned seed = data[1];
    const uint8_t *s = data + 2;
    size_t n = size - 2;

    struct frame_reader r;
    frame_reader_init(&r, max_len);
    size_t off = 0;     /* bytes of s fed so far */
    size_t ref_off = 0; /* reference decoder position */
    while (off < n) {
        /* Chunk sizes from 1 to 16, varying with the seed. */
        seed = seed * 1103515245u + 12345u;
        size_t chunk = 1 + (seed >> 16) % 16;
        if (chunk > n - off)
            chunk = n - off;
        size_t used = (size_t)-1;
        int st = frame_reader_feed(&r, s + off, chunk, &used);
        if (used > chunk)
            abort();
        off += used;
        if (st == FRAME_COMPLETE) {
            size_t len = (size_t)-1;
            char *body = frame_reader_take(&r, &len);
            /* Reference: header at ref_off, body right after it. */
            if (!body || ref_off + FRAME_HEADER_LEN + len != off)
                abort();
            uint32_t want = frame_get_header(s + ref_off);
            if (want != len || len > max_len || body[len] != '\0' ||
                memcmp(body, s + ref_off + FRAME_HEADER_LEN, len) != 0)
                abort();
            free(body);
            if (frame_reader_partial(&r))
                abort();
            ref_off = off;
        } else if (st == FRAME_TOO_LARGE) {
            if (r.body || r.announced <= max_len || off != ref_off + FRAME_HEADER_LEN ||
                r.announced != frame_get_header(s + ref_off))
                abort();
            /* A refused reader stays refused and consumes nothing. */
            size_t again = 99;
            if (off < n &&
                (frame_reader_feed(&r, s + off, n - off, &again) != FRAME_TOO_LARGE || again != 0))
                abort();
            break;
        } else if (st == FRAME_NOMEM) {
            break;
        } else if (st != FRAME_INCOMPLETE || used != chunk) {
            abort(); /* an incomplete frame must swallow the whole chunk */
        }
    }
    frame_reader_reset(&r);

    /* frame_encode round trip on the stream itself. */
    size_t enc_len = 0;
    unsigned char *enc = frame_encode(s, n, &enc_len);
    if (!enc || enc_len != n + FRAME_HEADER_LEN || frame_get_header(enc) != n ||
        (n && memcmp(enc + FRAME_HEADER_LEN, s, n) != 0))
        abort();
    free(enc);
    return 0;
}
