/*
 * libFuzzer target for the sidecar's two ways of routing an answer: the
 * tree path (envelope_parse, protocol_parse_response, routing_plan_response,
 * envelope_dump per item) and the splice path (envelope_parse with
 * ENVELOPE_SCAN, splice_plan_response).  The property is test_routing's
 * check_splice: both parses agree (return code, actors, current, id), the
 * scanned envelope materialises to the parsed tree, and whenever the splice
 * path takes an answer its plan is the tree path's byte for byte.  The
 * sidecar's own fallback, routing_plan_response on the scanned envelope
 * after envelope_json, must also plan what the parsed envelope plans.
 *
 * The input is an envelope, a 0xFF byte and an answer.  Without 0xFF the
 * whole input is the envelope and the answers are [], null and results
 * built from the scanned envelope's own spans (its route, advanced or not,
 * its payload, its id).  The splice path only engages on canonical text, so
 * each text that jansson reads is also tried re-dumped by asya_json_dumps.
 * Any disagreement aborts.
 */
#include "envelope.h"
#include "jscan.h"
#include "protocol.h"
#include "routing.h"
#include "splice.h"
#include "textbuf.h"

#include <asya/asya_json.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define JFLAGS (JSON_DECODE_ANY | JSON_ALLOW_NUL)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct routing_names NAMES = {
    .actor = "doubler", .happy_end = "happy-end", .error_end = "error-end"};

/* A heap copy of exactly len bytes, so ASan sees any read past the text. */
static char *copy_of(const char *s, size_t len)
{
    char *c = malloc(len ? len : 1);
    if (!c)
        abort();
    if (len)
        memcpy(c, s, len);
    return c;
}

/* The text as the sidecar or a runtime would write it, or NULL when jansson
 * does not read it (or it is already canonical: nothing new to try). */
static char *canonical(const char *s, size_t len, size_t *clen)
{
    json_t *v = json_loadb(s, len, JFLAGS, NULL);
    if (!v)
        return NULL;
    char *d = asya_json_dumps(v);
    json_decref(v);
    if (!d)
        abort();
    *clen = strlen(d);
    if (*clen == len && memcmp(d, s, len) == 0) {
        free(d);
        return NULL;
    }
    /* Exact-size copy (no NUL), like the other texts. */
    char *c = copy_of(d, *clen);
    free(d);
    return c;
}

/* The scanned envelope says what the parsed one says. */
static void same_envelope(const struct envelope *scanned, const struct envelope *tree)
{
    if (scanned->actor_count != tree->actor_count || scanned->current != tree->current ||
        strcmp(scanned->actors_key, tree->actors_key) != 0)
        abort();
    if ((tree->id == NULL) != (scanned->id == NULL) ||
        (tree->id && strcmp(scanned->id, tree->id) != 0))
        abort();
    for (size_t i = 0; i < tree->actor_count; i++) {
        const char *a = envelope_actor(scanned, i), *b = envelope_actor(tree, i);
        if (!a || !b || strcmp(a, b) != 0)
            abort();
    }
    if (envelope_actor(scanned, scanned->actor_count))
        abort();
}

/* Both parses of text under flags: same verdict, same envelope, and the
 * scanned one materialises to the parsed tree. */
static void parse_agree(const char *text, size_t len, int flags)
{
    char err[256];
    struct envelope tree, scanned;
    int trc = envelope_parse(text, len, flags, &tree, err, sizeof err);
    int src = envelope_parse(text, len, flags | ENVELOPE_SCAN, &scanned, err, sizeof err);
    if (trc != src)
        abort();
    if (trc == 0) {
        if (scanned.scan)
            same_envelope(&scanned, &tree);
        json_t *root = envelope_json(&scanned);
        if (!root || !json_equal(root, tree.root))
            abort();
        same_envelope(&scanned, &tree); /* still, once materialised */
    }
    envelope_free(&tree);
    envelope_free(&scanned);
}

/* Item i of a tree plan, serialised as the sidecar publishes it. */
static char *item_text(const struct route_publish *p, size_t *len)
{
    if (p->text) {
        *len = p->text_len;
        return copy_of(p->text, p->text_len);
    }
    if (!p->body)
        abort();
    char *d = envelope_dump(p->body, len);
    if (!d)
        abort();
    return d;
}

/* Two plans publish the same bytes to the same actors. */
static void same_plan(const struct route_plan *a, const struct route_plan *b)
{
    if (a->outcome != b->outcome || a->count != b->count ||
        strcmp(a->error_code, b->error_code) != 0)
        abort();
    for (size_t i = 0; i < a->count; i++) {
        size_t al = 0, bl = 0;
        char *at = item_text(&a->items[i], &al), *bt = item_text(&b->items[i], &bl);
        if (al != bl || memcmp(at, bt, al) != 0)
            abort();
        if (!a->items[i].actor || !b->items[i].actor ||
            strcmp(a->items[i].actor, b->items[i].actor) != 0 ||
            a->items[i].kind != b->items[i].kind)
            abort();
        free(at);
        free(bt);
    }
}

/* check_splice on one envelope text and one answer text. */
static void check(const char *et, size_t el, const char *rt, size_t rl)
{
    char err[256];
    struct envelope tree, scanned;
    int trc = envelope_parse(et, el, 0, &tree, err, sizeof err);
    int src = envelope_parse(et, el, ENVELOPE_SCAN, &scanned, err, sizeof err);
    if (trc != src)
        abort();
    if (trc != 0)
        return;
    if (scanned.scan)
        same_envelope(&scanned, &tree);

    struct route_plan fast, slow;
    int rc = splice_plan_response(&NAMES, &scanned, rt, rl, &fast);
    if (rc != 0 && rc != 1)
        abort();
    if (rc == 1) {
        if (!scanned.scan)
            abort();
        for (size_t i = 0; i < fast.count; i++)
            if (!fast.items[i].text || fast.items[i].body)
                abort();
    }

    struct runtime_response resp;
    int prc = protocol_parse_response(rt, rl, &resp, err, sizeof err);
    if (rc == 1 && prc != 0)
        abort(); /* the tree path would have sent an InvalidRuntimeResponse */
    if (prc == 0) {
        if (routing_plan_response(&NAMES, &tree, &resp, &slow) != 0)
            abort();
        if (rc == 1)
            same_plan(&fast, &slow);

        /* The sidecar's fallback plans on the scanned envelope, materialised. */
        struct route_plan side;
        if (!envelope_json(&scanned) || routing_plan_response(&NAMES, &scanned, &resp, &side) != 0)
            abort();
        same_plan(&side, &slow);
        route_plan_free(&side);
        route_plan_free(&slow);
        protocol_response_free(&resp);
    }
    if (rc == 1)
        route_plan_free(&fast);

    /* Materialising the scanned envelope gives the parsed tree. */
    json_t *root = envelope_json(&scanned);
    if (!root || !json_equal(root, tree.root))
        abort();
    envelope_free(&tree);
    envelope_free(&scanned);
}

/* check on the texts as given and on their canonical forms. */
static void check_forms(const char *et, size_t el, const char *rt, size_t rl)
{
    size_t cel = 0, crl = 0;
    char *ce = canonical(et, el, &cel);
    char *cr = canonical(rt, rl, &crl);
    check(et, el, rt, rl);
    if (ce)
        check(ce, cel, rt, rl);
    if (cr)
        check(et, el, cr, crl);
    if (ce && cr)
        check(ce, cel, cr, crl);
    free(ce);
    free(cr);
}

static void put(struct textbuf *b, const char *s)
{
    textbuf_puts(b, s);
}

static void put_span(struct textbuf *b, const struct jscan_member *m)
{
    textbuf_append(b, m->value, m->value_len);
}

/* check answer (NUL-terminated, built here) against envelope text et. */
static void check_built(const char *et, size_t el, struct textbuf *b)
{
    if (textbuf_failed(b))
        abort();
    size_t len = 0;
    char *s = textbuf_take(b, &len);
    char *c = copy_of(s, len);
    free(s);
    check(et, el, c, len);
    free(c); /* textbuf_take left b empty for the next answer */
}

/*
 * No answer in the input: [] and null, and when et scans, results made of
 * its own spans, which the splice path should take: the route kept or
 * advanced by the runtime, fan-out with and without ids of the handler's,
 * asya_progress, the envelope as payload.
 */
static void check_answers_for(const char *et, size_t el)
{
    check(et, el, "[]", 2);
    check(et, el, "null", 4);

    char err[256];
    struct envelope env;
    if (envelope_parse(et, el, ENVELOPE_SCAN, &env, err, sizeof err) != 0)
        return;
    if (!env.scan) {
        envelope_free(&env);
        return;
    }
    const struct envelope_scan *es = env.scan;
    const struct jscan_member *route = &es->top[es->route_index];
    const struct jscan_member *payload = jscan_find(es->top, es->top_count, "payload");
    const struct jscan_member *id = jscan_find(es->top, es->top_count, "id");
    if (!payload)
        abort(); /* the scan insists on one */

    /* The route with current advanced, as newer runtimes return it. */
    struct textbuf next = TEXTBUF_INIT;
    put(&next, "{");
    for (size_t k = 0; k < es->route_count; k++) {
        if (k)
            put(&next, ",");
        textbuf_append(&next, es->route[k].key, es->route[k].key_len);
        put(&next, ":");
        if (k == es->current_index)
            textbuf_printf(&next, "%zu", env.current + 1);
        else
            put_span(&next, &es->route[k]);
    }
    put(&next, "}");
    if (textbuf_failed(&next))
        abort();

    struct textbuf b = TEXTBUF_INIT;
    /* One result, route kept. */
    put(&b, "[{\"payload\":");
    put_span(&b, payload);
    put(&b, ",\"route\":");
    put_span(&b, route);
    put(&b, "}]");
    check_built(et, el, &b);

    /* One result, route advanced, asya_progress set, no route first. */
    put(&b, "[{\"route\":");
    textbuf_append(&b, next.data, next.len);
    put(&b, ",\"payload\":");
    textbuf_append(&b, et, el);
    put(&b, ",\"asya_progress\":true}]");
    check_built(et, el, &b);

    /* Fan-out: the route left out, kept and advanced; the handler's own id,
     * the envelope's id again, and null. */
    put(&b, "[{\"payload\":");
    put_span(&b, payload);
    put(&b, "},{\"payload\":1,\"route\":");
    put_span(&b, route);
    put(&b, ",\"id\":");
    if (id)
        put_span(&b, id);
    else
        put(&b, "null");
    put(&b, "},{\"payload\":[],\"route\":");
    textbuf_append(&b, next.data, next.len);
    put(&b, ",\"id\":\"mine\",\"headers\":{}},{\"payload\":{},\"id\":null,\"parent_id\":\"p\"}]");
    check_built(et, el, &b);

    textbuf_free(&next);
    envelope_free(&env);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *sep = memchr(data, 0xff, size);
    size_t el = sep ? (size_t)(sep - data) : size;
    char *et = copy_of((const char *)data, el);

    parse_agree(et, el, 0);
    parse_agree(et, el, ENVELOPE_ALLOW_FINISHED);

    if (sep) {
        size_t rl = size - el - 1;
        char *rt = copy_of((const char *)sep + 1, rl);
        check_forms(et, el, rt, rl);
        free(rt);
    } else {
        size_t cel = 0;
        char *ce = canonical(et, el, &cel);
        check_answers_for(et, el);
        if (ce) {
            parse_agree(ce, cel, 0);
            parse_agree(ce, cel, ENVELOPE_ALLOW_FINISHED);
            check_answers_for(ce, cel);
        }
        free(ce);
    }
    free(et);
    return 0;
}
