/*
 * Unit tests for src/sidecar/routing.c: the sidecar's routing decisions, from
 * a consumed envelope and the runtime's answer to the list of publishes.
 * Inputs are built from JSON text with envelope_parse and
 * protocol_parse_response, as the sidecar does; outputs are compared as
 * parsed JSON values (json_equal) against expected literals.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "envelope.h"
#include "protocol.h"
#include "routing.h"
#include "splice.h"

#include <asya/asya_json.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ERRLEN 256

static const struct routing_names NAMES = {
    .actor = "doubler", .happy_end = "happy-end", .error_end = "error-end"};

/* ---- helpers -------------------------------------------------------------- */

static void env_load(const char *text, struct envelope *env)
{
    char err[ERRLEN];
    if (envelope_parse(text, strlen(text), 0, env, err, sizeof err) != 0)
        fail_msg("test envelope does not parse: %s\n%s", err, text);
}

static void resp_load(const char *text, struct runtime_response *resp)
{
    char err[ERRLEN];
    if (protocol_parse_response(text, strlen(text), resp, err, sizeof err) != 0)
        fail_msg("test response does not parse: %s\n%s", err, text);
}

static json_t *json_load_text(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!v)
        fail_msg("expected JSON literal does not parse: %s\n%s", jerr.text, text);
    return v;
}

/* Fail unless got equals the JSON literal want. */
static void assert_json(const json_t *got, const char *want_text)
{
    assert_non_null(got);
    json_t *want = json_load_text(want_text);
    if (!json_equal(got, want)) {
        char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        char *w = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        fprintf(stderr, "got:  %s\nwant: %s\n", g, w);
        free(g);
        free(w);
        json_decref(want);
        fail_msg("JSON mismatch");
    }
    json_decref(want);
}

static void assert_item(const struct route_plan *plan, size_t i, const char *actor,
                        enum publish_kind kind, const char *body)
{
    assert_true(i < plan->count);
    assert_string_equal(plan->items[i].actor, actor);
    assert_int_equal(plan->items[i].kind, kind);
    assert_json(plan->items[i].body, body);
}

/* ---- the splice path (splice.h) against the tree path ----------------------- */

static int spliced_cases; /* cases the splice path took, so a test can insist on it */

/* text as the sidecar would write it (canonical, when it holds no reals). */
static char *canonical(const char *text)
{
    json_t *v = json_load_text(text);
    char *s = asya_json_dumps(v);
    json_decref(v);
    assert_non_null(s);
    return s;
}

/* The scanned envelope must say what the parsed one says. */
static void assert_same_envelope(const struct envelope *scanned, const struct envelope *tree)
{
    assert_int_equal(scanned->actor_count, tree->actor_count);
    assert_int_equal(scanned->current, tree->current);
    assert_string_equal(scanned->actors_key, tree->actors_key);
    if (tree->id)
        assert_string_equal(scanned->id, tree->id);
    else
        assert_null(scanned->id);
    for (size_t i = 0; i < tree->actor_count; i++)
        assert_string_equal(envelope_actor(scanned, i), envelope_actor(tree, i));
}

/*
 * Plan the canonical forms of env_text and resp_text both ways; whenever
 * the splice path takes the case, its plan must equal the tree path's byte
 * for byte.  Returns whether the splice path took it.
 */
static bool check_splice(const char *env_text, const char *resp_text)
{
    char err[ERRLEN];
    char *et = canonical(env_text), *rt = canonical(resp_text);
    struct envelope tree, scanned;
    int trc = envelope_parse(et, strlen(et), 0, &tree, err, sizeof err);
    int src = envelope_parse(et, strlen(et), ENVELOPE_SCAN, &scanned, err, sizeof err);
    assert_int_equal(src, trc);
    bool took = false;
    if (trc == 0) {
        if (scanned.scan)
            assert_same_envelope(&scanned, &tree);
        struct route_plan fast, slow;
        int rc = splice_plan_response(&NAMES, &scanned, rt, strlen(rt), &fast);
        assert_true(rc == 0 || rc == 1);
        if (rc == 1) {
            took = true;
            spliced_cases++;
            struct runtime_response resp;
            resp_load(rt, &resp);
            assert_int_equal(routing_plan_response(&NAMES, &tree, &resp, &slow), 0);
            assert_int_equal(fast.outcome, slow.outcome);
            assert_int_equal(fast.count, slow.count);
            for (size_t i = 0; i < slow.count; i++) {
                size_t dl = 0;
                char *d = envelope_dump(slow.items[i].body, &dl);
                assert_non_null(fast.items[i].text);
                if (dl != fast.items[i].text_len || memcmp(d, fast.items[i].text, dl) != 0)
                    fail_msg("splice differs for %s / %s\ntree:   %s\nsplice: %.*s", et, rt, d,
                             (int)fast.items[i].text_len, fast.items[i].text);
                assert_string_equal(fast.items[i].actor, slow.items[i].actor);
                assert_int_equal(fast.items[i].kind, slow.items[i].kind);
                free(d);
            }
            route_plan_free(&fast);
            route_plan_free(&slow);
            protocol_response_free(&resp);
        }
        /* Materialising the scanned envelope gives the parsed tree. */
        assert_true(json_equal(envelope_json(&scanned), tree.root));
    }
    envelope_free(&tree);
    envelope_free(&scanned);
    free(et);
    free(rt);
    return took;
}

/*
 * Run routing_plan_response on the texts; the plan is returned in plan and
 * the original envelope is checked to be unchanged afterwards.  The splice
 * path is checked against it on the same case (check_splice).
 */
static void plan_for(const char *env_text, const char *resp_text, struct route_plan *plan)
{
    struct envelope env;
    struct runtime_response resp;
    check_splice(env_text, resp_text);
    env_load(env_text, &env);
    resp_load(resp_text, &resp);
    assert_int_equal(routing_plan_response(&NAMES, &env, &resp, plan), 0);
    /* Planning must not modify the consumed envelope (shallow copies!). */
    assert_json(env.root, env_text);
    protocol_response_free(&resp);
    envelope_free(&env);
}

/*
 * Assert that plan is a single processing_error InvalidRuntimeResponse
 * publish to error-end for env_text, whose details.message mentions
 * `about`.  want_body is the expected body without details.message.
 */
static void assert_invalid_response(struct route_plan *plan, const char *about,
                                    const char *want_body)
{
    assert_int_equal(plan->count, 1);
    assert_int_equal(plan->outcome, OUTCOME_SIDECAR_ERROR);
    assert_string_equal(plan->error_code, "processing_error");
    assert_string_equal(plan->items[0].actor, "error-end");
    assert_int_equal(plan->items[0].kind, PUBLISH_ERROR_END);
    json_t *body = json_deep_copy(plan->items[0].body);
    json_t *details = json_object_get(json_object_get(body, "payload"), "details");
    assert_true(json_is_object(details));
    const char *msg = json_string_value(json_object_get(details, "message"));
    assert_non_null(msg);
    if (!strstr(msg, about))
        fail_msg("details.message \"%s\" does not mention \"%s\"", msg, about);
    json_object_del(details, "message");
    assert_json(body, want_body);
    json_decref(body);
}

/* ---- results -------------------------------------------------------------- */

#define ENV_ABC(cur)                                                                               \
    "{\"id\":\"m1\",\"route\":{\"actors\":[\"a\",\"b\",\"c\"],\"current\":" #cur "},"              \
    "\"payload\":{\"x\":1},\"headers\":{\"trace_id\":\"t-1\"}}"

static void test_single_result_advances(void **state)
{
    (void)state;
    struct route_plan plan;
    plan_for(ENV_ABC(0),
             "[{\"payload\":{\"x\":2},\"route\":{\"actors\":[\"a\",\"b\",\"c\"],\"current\":0}}]",
             &plan);
    assert_int_equal(plan.count, 1);
    assert_int_equal(plan.outcome, OUTCOME_SUCCESS);
    assert_string_equal(plan.error_code, "");
    assert_item(&plan, 0, "b", PUBLISH_ROUTING,
                "{\"id\":\"m1\",\"route\":{\"actors\":[\"a\",\"b\",\"c\"],\"current\":1},"
                "\"payload\":{\"x\":2},\"headers\":{\"trace_id\":\"t-1\"}}");
    route_plan_free(&plan);

    /* The middle actor routes to the last one. */
    plan_for(ENV_ABC(1),
             "[{\"payload\":[1,2],\"route\":{\"actors\":[\"a\",\"b\",\"c\"],\"current\":1}}]",
             &plan);
    assert_int_equal(plan.count, 1);
    assert_item(&plan, 0, "c", PUBLISH_ROUTING,
                "{\"id\":\"m1\",\"route\":{\"actors\":[\"a\",\"b\",\"c\"],\"current\":2},"
                "\"payload\":[1,2],\"headers\":{\"trace_id\":\"t-1\"}}");
    route_plan_free(&plan);
}

static void test_last_actor_goes_to_happy_end(void **state)
{
    (void)state;
    struct route_plan plan;
    plan_for(ENV_ABC(2),
             "[{\"payload\":\"done\",\"route\":{\"actors\":[\"a\",\"b\",\"c\"],\"current\":2}}]",
             &plan);
    assert_int_equal(plan.count, 1);
    assert_int_equal(plan.outcome, OUTCOME_SUCCESS);
    assert_item(&plan, 0, "happy-end", PUBLISH_HAPPY_END,
                "{\"id\":\"m1\",\"route\":{\"actors\":[\"a\",\"b\",\"c\"],\"current\":3},"
                "\"payload\":\"done\",\"headers\":{\"trace_id\":\"t-1\"}}");
    route_plan_free(&plan);

    /* A one-actor route. */
    plan_for("{\"route\":{\"actors\":[\"solo\"],\"current\":0},\"payload\":null}",
             "[{\"payload\":null,\"route\":{\"actors\":[\"solo\"],\"current\":0}}]", &plan);
    assert_int_equal(plan.count, 1);
    assert_item(&plan, 0, "happy-end", PUBLISH_HAPPY_END,
                "{\"route\":{\"actors\":[\"solo\"],\"current\":1},\"payload\":null}");
    route_plan_free(&plan);
}

static void test_runtime_advanced_current_is_kept(void **state)
{
    (void)state;
    struct route_plan plan;
    /* Newer runtimes return current + 1 themselves: not advanced twice. */
    plan_for(ENV_ABC(0),
             "[{\"payload\":{\"x\":2},\"route\":{\"actors\":[\"a\",\"b\",\"c\"],\"current\":1}}]",
             &plan);
    assert_int_equal(plan.count, 1);
    assert_int_equal(plan.outcome, OUTCOME_SUCCESS);
    assert_item(&plan, 0, "b", PUBLISH_ROUTING,
                "{\"id\":\"m1\",\"route\":{\"actors\":[\"a\",\"b\",\"c\"],\"current\":1},"
                "\"payload\":{\"x\":2},\"headers\":{\"trace_id\":\"t-1\"}}");
    route_plan_free(&plan);

    plan_for(ENV_ABC(2),
             "[{\"payload\":0,\"route\":{\"actors\":[\"a\",\"b\",\"c\"],\"current\":3}}]", &plan);
    assert_int_equal(plan.count, 1);
    assert_item(&plan, 0, "happy-end", PUBLISH_HAPPY_END,
                "{\"id\":\"m1\",\"route\":{\"actors\":[\"a\",\"b\",\"c\"],\"current\":3},"
                "\"payload\":0,\"headers\":{\"trace_id\":\"t-1\"}}");
    route_plan_free(&plan);
}

/* The error-end body every invalid answer to ENV_ABC(c) produces (minus the message). */
#define INVALID_ABC(cur)                                                                           \
    "{\"id\":\"m1\",\"route\":{\"actors\":[\"a\",\"b\",\"c\"],\"current\":" #cur "},"              \
    "\"headers\":{\"trace_id\":\"t-1\"},\"error\":\"processing_error\","                           \
    "\"payload\":{\"error\":\"processing_error\",\"details\":{\"type\":"                           \
    "\"InvalidRuntimeResponse\",\"actor\":\"doubler\"},\"original_payload\":{\"x\":1}}}"

static void test_bad_current_is_invalid_response(void **state)
{
    (void)state;
    static const struct {
        const char *env;
        const char *resp;
        const char *want;
    } cases[] = {
        /* off by two */
        {ENV_ABC(0), "[{\"payload\":1,\"route\":{\"actors\":[\"a\",\"b\",\"c\"],\"current\":2}}]",
         INVALID_ABC(0)},
        /* went backwards */
        {ENV_ABC(1), "[{\"payload\":1,\"route\":{\"actors\":[\"a\",\"b\",\"c\"],\"current\":0}}]",
         INVALID_ABC(1)},
        {ENV_ABC(0), "[{\"payload\":1,\"route\":{\"actors\":[\"a\",\"b\",\"c\"],\"current\":-1}}]",
         INVALID_ABC(0)},
        /* way past the end */
        {ENV_ABC(2),
         "[{\"payload\":1,\"route\":{\"actors\":[\"a\",\"b\",\"c\"],\"current\":99999999999}}]",
         INVALID_ABC(2)},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct route_plan plan;
        plan_for(cases[i].env, cases[i].resp, &plan);
        assert_invalid_response(&plan, "current", cases[i].want);
        route_plan_free(&plan);
    }
}

static void test_missing_or_non_integer_current(void **state)
{
    (void)state;
    static const char *const resps[] = {
        "[{\"payload\":1,\"route\":{\"actors\":[\"a\",\"b\",\"c\"]}}]",
        "[{\"payload\":1,\"route\":{\"actors\":[\"a\",\"b\",\"c\"],\"current\":\"0\"}}]",
        "[{\"payload\":1,\"route\":{\"actors\":[\"a\",\"b\",\"c\"],\"current\":0.0}}]",
        "[{\"payload\":1,\"route\":{\"actors\":[\"a\",\"b\",\"c\"],\"current\":1.5}}]",
        "[{\"payload\":1,\"route\":{\"actors\":[\"a\",\"b\",\"c\"],\"current\":null}}]",
        "[{\"payload\":1,\"route\":{\"actors\":[\"a\",\"b\",\"c\"],\"current\":true}}]",
    };
    for (size_t i = 0; i < sizeof resps / sizeof resps[0]; i++) {
        struct route_plan plan;
        plan_for(ENV_ABC(0), resps[i], &plan);
        assert_invalid_response(&plan, "current", INVALID_ABC(0));
        route_plan_free(&plan);
    }
}

static void test_result_route_not_an_object(void **state)
{
    (void)state;
    static const char *const resps[] = {
        "[{\"payload\":1,\"route\":\"b\"}]",
        "[{\"payload\":1,\"route\":[\"a\",\"b\",\"c\"]}]",
        "[{\"payload\":1,\"route\":null}]",
        "[{\"payload\":1,\"route\":1}]",
    };
    for (size_t i = 0; i < sizeof resps / sizeof resps[0]; i++) {
        struct route_plan plan;
        plan_for(ENV_ABC(0), resps[i], &plan);
        assert_invalid_response(&plan, "route", INVALID_ABC(0));
        route_plan_free(&plan);
    }
}

static void test_result_route_invalid_actors(void **state)
{
    (void)state;
    /* Routes that would publish to an unnamed queue are refused as a whole. */
    static const char *const resps[] = {
        "[{\"payload\":1,\"route\":{\"actors\":[\"a\",\"\",\"c\"],\"current\":0}}]",
        "[{\"payload\":1,\"route\":{\"actors\":[\"a\",7,\"c\"],\"current\":0}}]",
        "[{\"payload\":1,\"route\":{\"actors\":\"a,b,c\",\"current\":0}}]",
        "[{\"payload\":1,\"route\":{\"current\":0}}]",
        "[{\"payload\":1,\"route\":{\"actors\":[\"a\",\"b\\u0000x\",\"c\"],\"current\":0}}]",
        /* current + 1 past a shortened route */
        "[{\"payload\":1,\"route\":{\"actors\":[],\"current\":1}}]",
    };
    for (size_t i = 0; i < sizeof resps / sizeof resps[0]; i++) {
        struct route_plan plan;
        plan_for(ENV_ABC(0), resps[i], &plan);
        assert_invalid_response(&plan, "route", INVALID_ABC(0));
        route_plan_free(&plan);
    }
}

static void test_result_without_route_uses_original(void **state)
{
    (void)state;
    struct route_plan plan;
    plan_for(ENV_ABC(0), "[{\"payload\":{\"y\":true}}]", &plan);
    assert_int_equal(plan.count, 1);
    assert_int_equal(plan.outcome, OUTCOME_SUCCESS);
    assert_item(&plan, 0, "b", PUBLISH_ROUTING,
                "{\"id\":\"m1\",\"route\":{\"actors\":[\"a\",\"b\",\"c\"],\"current\":1},"
                "\"payload\":{\"y\":true},\"headers\":{\"trace_id\":\"t-1\"}}");
    route_plan_free(&plan);

    /* A bare result object (lenient parse) is one result. */
    plan_for(ENV_ABC(2), "{\"payload\":{\"y\":false}}", &plan);
    assert_int_equal(plan.count, 1);
    assert_item(&plan, 0, "happy-end", PUBLISH_HAPPY_END,
                "{\"id\":\"m1\",\"route\":{\"actors\":[\"a\",\"b\",\"c\"],\"current\":3},"
                "\"payload\":{\"y\":false},\"headers\":{\"trace_id\":\"t-1\"}}");
    route_plan_free(&plan);
}

static void test_fanout_ids(void **state)
{
    (void)state;
    struct route_plan plan;
    plan_for(ENV_ABC(0),
             "[{\"payload\":{\"index\":0},"
             "\"route\":{\"actors\":[\"a\",\"b\",\"c\"],\"current\":0}},"
             "{\"payload\":{\"index\":1},\"route\":{\"actors\":[\"a\",\"b\",\"c\"],\"current\":0}},"
             "{\"payload\":{\"index\":2},"
             "\"route\":{\"actors\":[\"a\",\"b\",\"c\"],\"current\":0}}]",
             &plan);
    assert_int_equal(plan.count, 3);
    assert_int_equal(plan.outcome, OUTCOME_SUCCESS);
    assert_string_equal(plan.error_code, "");
    assert_item(&plan, 0, "b", PUBLISH_ROUTING,
                "{\"id\":\"m1\",\"route\":{\"actors\":[\"a\",\"b\",\"c\"],\"current\":1},"
                "\"payload\":{\"index\":0},\"headers\":{\"trace_id\":\"t-1\"}}");
    assert_item(&plan, 1, "b", PUBLISH_ROUTING,
                "{\"id\":\"m1-1\",\"parent_id\":\"m1\","
                "\"route\":{\"actors\":[\"a\",\"b\",\"c\"],\"current\":1},"
                "\"payload\":{\"index\":1},\"headers\":{\"trace_id\":\"t-1\"}}");
    assert_item(&plan, 2, "b", PUBLISH_ROUTING,
                "{\"id\":\"m1-2\",\"parent_id\":\"m1\","
                "\"route\":{\"actors\":[\"a\",\"b\",\"c\"],\"current\":1},"
                "\"payload\":{\"index\":2},\"headers\":{\"trace_id\":\"t-1\"}}");
    route_plan_free(&plan);

    /* Fan-out at the last actor: every child to happy-end, the original's
     * parent_id replaced on the children only. */
    plan_for("{\"id\":\"c7\",\"parent_id\":\"root\",\"route\":{\"actors\":[\"a\"],\"current\":0},"
             "\"payload\":0}",
             "[{\"payload\":10},{\"payload\":11}]", &plan);
    assert_int_equal(plan.count, 2);
    assert_item(&plan, 0, "happy-end", PUBLISH_HAPPY_END,
                "{\"id\":\"c7\",\"parent_id\":\"root\","
                "\"route\":{\"actors\":[\"a\"],\"current\":1},\"payload\":10}");
    assert_item(&plan, 1, "happy-end", PUBLISH_HAPPY_END,
                "{\"id\":\"c7-1\",\"parent_id\":\"c7\","
                "\"route\":{\"actors\":[\"a\"],\"current\":1},\"payload\":11}");
    route_plan_free(&plan);
}

static void test_fanout_many_ids(void **state)
{
    (void)state;
    /* Ids use the decimal index, also past 9. */
    char resp[4096] = "[";
    for (int i = 0; i < 12; i++)
        snprintf(resp + strlen(resp), sizeof resp - strlen(resp), "%s{\"payload\":%d}",
                 i ? "," : "", i);
    strcat(resp, "]");
    struct route_plan plan;
    plan_for(ENV_ABC(1), resp, &plan);
    assert_int_equal(plan.count, 12);
    for (size_t i = 0; i < 12; i++) {
        char want[512];
        if (i == 0)
            snprintf(want, sizeof want,
                     "{\"id\":\"m1\",\"route\":{\"actors\":[\"a\",\"b\",\"c\"],"
                     "\"current\":2},\"payload\":0,"
                     "\"headers\":{\"trace_id\":\"t-1\"}}");
        else
            snprintf(want, sizeof want,
                     "{\"id\":\"m1-%zu\",\"parent_id\":\"m1\",\"route\":{\"actors\":"
                     "[\"a\",\"b\",\"c\"],\"current\":2},\"payload\":%zu,"
                     "\"headers\":{\"trace_id\":\"t-1\"}}",
                     i, i);
        assert_item(&plan, i, "c", PUBLISH_ROUTING, want);
    }
    route_plan_free(&plan);
}

static void test_fanout_without_id_invents_none(void **state)
{
    (void)state;
    struct route_plan plan;
    plan_for("{\"route\":{\"actors\":[\"a\",\"b\"],\"current\":0},\"payload\":{}}",
             "[{\"payload\":1},{\"payload\":2},{\"payload\":3}]", &plan);
    assert_int_equal(plan.count, 3);
    for (size_t i = 0; i < 3; i++) {
        char want[256];
        snprintf(want, sizeof want,
                 "{\"route\":{\"actors\":[\"a\",\"b\"],\"current\":1},\"payload\":%zu}", i + 1);
        assert_item(&plan, i, "b", PUBLISH_ROUTING, want);
    }
    route_plan_free(&plan);

    /* A null id is no id either. */
    plan_for("{\"id\":null,\"route\":{\"actors\":[\"a\",\"b\"],\"current\":0},\"payload\":{}}",
             "[{\"payload\":1},{\"payload\":2}]", &plan);
    assert_int_equal(plan.count, 2);
    assert_item(&plan, 0, "b", PUBLISH_ROUTING,
                "{\"id\":null,\"route\":{\"actors\":[\"a\",\"b\"],\"current\":1},\"payload\":1}");
    assert_item(&plan, 1, "b", PUBLISH_ROUTING,
                "{\"id\":null,\"route\":{\"actors\":[\"a\",\"b\"],\"current\":1},\"payload\":2}");
    route_plan_free(&plan);
}

static void test_envelope_mode_ids_kept(void **state)
{
    (void)state;
    struct route_plan plan;
    /* Envelope-mode results carry whole envelopes: an id of their own is
     * kept; one that merely repeats the original's gets the fan-out id. */
    plan_for(ENV_ABC(0),
             "[{\"id\":\"m1\",\"payload\":\"p0\",\"route\":{\"actors\":[\"a\",\"b\",\"c\"],"
             "\"current\":0}},"
             "{\"id\":\"mine\",\"payload\":\"p1\",\"route\":{\"actors\":[\"a\",\"b\",\"c\"],"
             "\"current\":0}},"
             "{\"id\":\"m1\",\"payload\":\"p2\",\"route\":{\"actors\":[\"a\",\"b\",\"c\"],"
             "\"current\":0}}]",
             &plan);
    assert_int_equal(plan.count, 3);
    assert_item(&plan, 0, "b", PUBLISH_ROUTING,
                "{\"id\":\"m1\",\"route\":{\"actors\":[\"a\",\"b\",\"c\"],\"current\":1},"
                "\"payload\":\"p0\",\"headers\":{\"trace_id\":\"t-1\"}}");
    assert_item(&plan, 1, "b", PUBLISH_ROUTING,
                "{\"id\":\"mine\",\"route\":{\"actors\":[\"a\",\"b\",\"c\"],\"current\":1},"
                "\"payload\":\"p1\",\"headers\":{\"trace_id\":\"t-1\"}}");
    assert_item(&plan, 2, "b", PUBLISH_ROUTING,
                "{\"id\":\"m1-2\",\"parent_id\":\"m1\","
                "\"route\":{\"actors\":[\"a\",\"b\",\"c\"],\"current\":1},"
                "\"payload\":\"p2\",\"headers\":{\"trace_id\":\"t-1\"}}");
    route_plan_free(&plan);

    /* A single envelope-mode result with its own id keeps it too. */
    plan_for(ENV_ABC(0), "[{\"id\":\"renamed\",\"payload\":1}]", &plan);
    assert_int_equal(plan.count, 1);
    assert_item(&plan, 0, "b", PUBLISH_ROUTING,
                "{\"id\":\"renamed\",\"route\":{\"actors\":[\"a\",\"b\",\"c\"],\"current\":1},"
                "\"payload\":1,\"headers\":{\"trace_id\":\"t-1\"}}");
    route_plan_free(&plan);
}

static void test_headers_and_unknown_fields_kept(void **state)
{
    (void)state;
    struct route_plan plan;
    const char *env = "{\"id\":\"m2\",\"parent_id\":\"p\",\"route\":{\"actors\":[\"a\",\"b\"],"
                      "\"current\":0,\"extra\":\"r\"},\"payload\":1,"
                      "\"headers\":{\"trace_id\":\"t\",\"priority\":5,\"tags\":[\"x\",null]},"
                      "\"created_at\":\"2024-01-01T00:00:00Z\",\"meta\":{\"k\":[1,{\"z\":null}]}}";
    plan_for(env, "[{\"payload\":2,\"route\":{\"actors\":[\"a\",\"b\"],\"current\":0}}]", &plan);
    assert_int_equal(plan.count, 1);
    assert_item(&plan, 0, "b", PUBLISH_ROUTING,
                "{\"id\":\"m2\",\"parent_id\":\"p\",\"route\":{\"actors\":[\"a\",\"b\"],"
                "\"current\":1},\"payload\":2,"
                "\"headers\":{\"trace_id\":\"t\",\"priority\":5,\"tags\":[\"x\",null]},"
                "\"created_at\":\"2024-01-01T00:00:00Z\",\"meta\":{\"k\":[1,{\"z\":null}]}}");
    route_plan_free(&plan);

    /* Without a route in the result, the original route's extra keys stay. */
    plan_for(env, "[{\"payload\":3}]", &plan);
    assert_int_equal(plan.count, 1);
    assert_item(&plan, 0, "b", PUBLISH_ROUTING,
                "{\"id\":\"m2\",\"parent_id\":\"p\",\"route\":{\"actors\":[\"a\",\"b\"],"
                "\"current\":1,\"extra\":\"r\"},\"payload\":3,"
                "\"headers\":{\"trace_id\":\"t\",\"priority\":5,\"tags\":[\"x\",null]},"
                "\"created_at\":\"2024-01-01T00:00:00Z\",\"meta\":{\"k\":[1,{\"z\":null}]}}");
    route_plan_free(&plan);

    /* Envelope mode: the result's own headers and new fields win. */
    plan_for(env, "[{\"payload\":4,\"headers\":{\"trace_id\":\"t2\"},\"score\":0.5}]", &plan);
    assert_int_equal(plan.count, 1);
    assert_item(&plan, 0, "b", PUBLISH_ROUTING,
                "{\"id\":\"m2\",\"parent_id\":\"p\",\"route\":{\"actors\":[\"a\",\"b\"],"
                "\"current\":1,\"extra\":\"r\"},\"payload\":4,"
                "\"headers\":{\"trace_id\":\"t2\"},\"score\":0.5,"
                "\"created_at\":\"2024-01-01T00:00:00Z\",\"meta\":{\"k\":[1,{\"z\":null}]}}");
    route_plan_free(&plan);
}

static void test_steps_alias_kept(void **state)
{
    (void)state;
    struct route_plan plan;
    const char *env = "{\"id\":\"s\",\"route\":{\"steps\":[\"a\",\"b\"],\"current\":0},"
                      "\"payload\":1}";
    plan_for(env, "[{\"payload\":2,\"route\":{\"steps\":[\"a\",\"b\"],\"current\":0}}]", &plan);
    assert_int_equal(plan.count, 1);
    assert_item(&plan, 0, "b", PUBLISH_ROUTING,
                "{\"id\":\"s\",\"route\":{\"steps\":[\"a\",\"b\"],\"current\":1},\"payload\":2}");
    assert_null(json_object_get(json_object_get(plan.items[0].body, "route"), "actors"));
    route_plan_free(&plan);

    plan_for(env, "[{\"payload\":2}]", &plan);
    assert_int_equal(plan.count, 1);
    assert_item(&plan, 0, "b", PUBLISH_ROUTING,
                "{\"id\":\"s\",\"route\":{\"steps\":[\"a\",\"b\"],\"current\":1},\"payload\":2}");
    route_plan_free(&plan);

    /* Last step: happy-end, still with steps. */
    plan_for("{\"route\":{\"steps\":[\"a\",\"b\"],\"current\":1},\"payload\":1}",
             "[{\"payload\":9,\"route\":{\"steps\":[\"a\",\"b\"],\"current\":1}}]", &plan);
    assert_int_equal(plan.count, 1);
    assert_item(&plan, 0, "happy-end", PUBLISH_HAPPY_END,
                "{\"route\":{\"steps\":[\"a\",\"b\"],\"current\":2},\"payload\":9}");
    route_plan_free(&plan);
}

static void test_bad_result_in_fanout_fails_whole_plan(void **state)
{
    (void)state;
    struct route_plan plan;
    /* Nothing is half-published: one bad child sends the message to error-end. */
    plan_for(ENV_ABC(0),
             "[{\"payload\":1},{\"payload\":2,\"route\":{\"actors\":[\"a\",\"b\",\"c\"],"
             "\"current\":2}},{\"payload\":3}]",
             &plan);
    assert_invalid_response(&plan, "result 1", INVALID_ABC(0));
    route_plan_free(&plan);
}

/* ---- empty answers -------------------------------------------------------- */

static void test_empty_response_sends_original(void **state)
{
    (void)state;
    static const char *const envs[] = {
        ENV_ABC(0),
        ENV_ABC(2),
        ("{\"route\":{\"steps\":[\"a\"],\"current\":0},\"payload\":[1,{\"n\":null}],"
         "\"unknown\":true}"),
    };
    static const char *const resps[] = {"[]", "null", " [ ] ", "\n null\n"};
    for (size_t e = 0; e < sizeof envs / sizeof envs[0]; e++) {
        for (size_t r = 0; r < sizeof resps / sizeof resps[0]; r++) {
            struct route_plan plan;
            plan_for(envs[e], resps[r], &plan);
            assert_int_equal(plan.count, 1);
            assert_int_equal(plan.outcome, OUTCOME_EMPTY_RESPONSE);
            assert_string_equal(plan.error_code, "");
            /* Unchanged: current is not advanced either. */
            assert_item(&plan, 0, "happy-end", PUBLISH_HAPPY_END, envs[e]);
            route_plan_free(&plan);
        }
    }
}

/* ---- runtime errors ------------------------------------------------------- */

#define ENV_FULL                                                                                   \
    "{\"id\":\"e1\",\"parent_id\":\"e0\",\"route\":{\"actors\":[\"doubler\",\"next\"],"            \
    "\"current\":0},\"headers\":{\"trace_id\":\"abc\",\"n\":[1,2]},"                               \
    "\"payload\":{\"value\":21,\"nested\":{\"a\":[null,true]}},\"extra\":\"kept\"}"

static void test_runtime_error_envelope(void **state)
{
    (void)state;
    struct route_plan plan;
    plan_for(ENV_FULL,
             "[{\"error\":\"processing_error\",\"details\":{\"message\":\"Intentional test "
             "failure\",\"type\":\"ValueError\",\"traceback\":\"Traceback (most recent call "
             "last):\\n  File x\"}}]",
             &plan);
    assert_int_equal(plan.count, 1);
    assert_int_equal(plan.outcome, OUTCOME_RUNTIME_ERROR);
    assert_string_equal(plan.error_code, "processing_error");
    assert_item(&plan, 0, "error-end", PUBLISH_ERROR_END,
                "{\"id\":\"e1\",\"parent_id\":\"e0\",\"route\":{\"actors\":[\"doubler\","
                "\"next\"],\"current\":0},\"headers\":{\"trace_id\":\"abc\",\"n\":[1,2]},"
                "\"extra\":\"kept\",\"error\":\"processing_error\","
                "\"payload\":{\"error\":\"processing_error\","
                "\"details\":{\"message\":\"Intentional test failure\",\"type\":\"ValueError\","
                "\"traceback\":\"Traceback (most recent call last):\\n  File x\","
                "\"actor\":\"doubler\"},"
                "\"original_payload\":{\"value\":21,\"nested\":{\"a\":[null,true]}}}}");
    route_plan_free(&plan);
}

static void test_runtime_error_codes_and_partial_details(void **state)
{
    (void)state;
    struct route_plan plan;
    /* No details at all: message and type become "", no traceback invented. */
    plan_for(ENV_ABC(1), "[{\"error\":\"oom_error\"}]", &plan);
    assert_int_equal(plan.count, 1);
    assert_int_equal(plan.outcome, OUTCOME_RUNTIME_ERROR);
    assert_string_equal(plan.error_code, "oom_error");
    assert_item(&plan, 0, "error-end", PUBLISH_ERROR_END,
                "{\"id\":\"m1\",\"route\":{\"actors\":[\"a\",\"b\",\"c\"],\"current\":1},"
                "\"headers\":{\"trace_id\":\"t-1\"},\"error\":\"oom_error\","
                "\"payload\":{\"error\":\"oom_error\",\"details\":{\"message\":\"\","
                "\"type\":\"\",\"actor\":\"doubler\"},\"original_payload\":{\"x\":1}}}");
    route_plan_free(&plan);

    /* A bare error object; details without type; an "actor" of the runtime's
     * own is replaced by this actor's name. */
    plan_for(ENV_ABC(0),
             "{\"error\":\"cuda_oom_error\",\"details\":{\"message\":\"CUDA out of memory\","
             "\"actor\":\"someone-else\"}}",
             &plan);
    assert_int_equal(plan.count, 1);
    assert_int_equal(plan.outcome, OUTCOME_RUNTIME_ERROR);
    assert_string_equal(plan.error_code, "cuda_oom_error");
    assert_item(&plan, 0, "error-end", PUBLISH_ERROR_END,
                "{\"id\":\"m1\",\"route\":{\"actors\":[\"a\",\"b\",\"c\"],\"current\":0},"
                "\"headers\":{\"trace_id\":\"t-1\"},\"error\":\"cuda_oom_error\","
                "\"payload\":{\"error\":\"cuda_oom_error\",\"details\":{\"message\":"
                "\"CUDA out of memory\",\"type\":\"\",\"actor\":\"doubler\"},"
                "\"original_payload\":{\"x\":1}}}");
    route_plan_free(&plan);

    /* details that is not an object counts as missing. */
    plan_for("{\"route\":{\"actors\":[\"a\"],\"current\":0},\"payload\":null}",
             "[{\"error\":\"processing_error\",\"details\":\"boom\"}]", &plan);
    assert_int_equal(plan.count, 1);
    assert_item(&plan, 0, "error-end", PUBLISH_ERROR_END,
                "{\"route\":{\"actors\":[\"a\"],\"current\":0},\"error\":\"processing_error\","
                "\"payload\":{\"error\":\"processing_error\",\"details\":{\"message\":\"\","
                "\"type\":\"\",\"actor\":\"doubler\"},\"original_payload\":null}}");
    route_plan_free(&plan);
}

static void test_error_envelope_leaves_inputs_alone(void **state)
{
    (void)state;
    struct envelope env;
    env_load(ENV_FULL, &env);
    json_t *details = json_load_text("{\"message\":\"m\",\"type\":\"T\"}");
    json_t *out = routing_error_envelope(&NAMES, &env, "processing_error", details);
    assert_json(out, "{\"id\":\"e1\",\"parent_id\":\"e0\",\"route\":{\"actors\":[\"doubler\","
                     "\"next\"],\"current\":0},\"headers\":{\"trace_id\":\"abc\",\"n\":[1,2]},"
                     "\"extra\":\"kept\",\"error\":\"processing_error\","
                     "\"payload\":{\"error\":\"processing_error\",\"details\":{\"message\":\"m\","
                     "\"type\":\"T\",\"actor\":\"doubler\"},"
                     "\"original_payload\":{\"value\":21,\"nested\":{\"a\":[null,true]}}}}");
    /* Neither the caller's details nor the envelope gained anything. */
    assert_json(details, "{\"message\":\"m\",\"type\":\"T\"}");
    assert_json(env.root, ENV_FULL);
    json_decref(out);

    out = routing_error_envelope(&NAMES, &env, "timeout_error", NULL);
    assert_json(out, "{\"id\":\"e1\",\"parent_id\":\"e0\",\"route\":{\"actors\":[\"doubler\","
                     "\"next\"],\"current\":0},\"headers\":{\"trace_id\":\"abc\",\"n\":[1,2]},"
                     "\"extra\":\"kept\",\"error\":\"timeout_error\","
                     "\"payload\":{\"error\":\"timeout_error\",\"details\":{\"message\":\"\","
                     "\"type\":\"\",\"actor\":\"doubler\"},"
                     "\"original_payload\":{\"value\":21,\"nested\":{\"a\":[null,true]}}}}");
    json_decref(out);
    json_decref(details);
    envelope_free(&env);
}

static void test_plan_error_timeout(void **state)
{
    (void)state;
    struct envelope env;
    env_load(ENV_FULL, &env);
    struct route_plan plan;
    assert_int_equal(routing_plan_error(&NAMES, &env, PROTO_TIMEOUT_ERROR, "TimeoutError",
                                        "runtime did not answer within 3s", &plan),
                     0);
    assert_int_equal(plan.count, 1);
    assert_int_equal(plan.outcome, OUTCOME_SIDECAR_ERROR);
    assert_string_equal(plan.error_code, "timeout_error");
    assert_item(&plan, 0, "error-end", PUBLISH_ERROR_END,
                "{\"id\":\"e1\",\"parent_id\":\"e0\",\"route\":{\"actors\":[\"doubler\","
                "\"next\"],\"current\":0},\"headers\":{\"trace_id\":\"abc\",\"n\":[1,2]},"
                "\"extra\":\"kept\",\"error\":\"timeout_error\","
                "\"payload\":{\"error\":\"timeout_error\",\"details\":{\"message\":"
                "\"runtime did not answer within 3s\",\"type\":\"TimeoutError\","
                "\"actor\":\"doubler\"},"
                "\"original_payload\":{\"value\":21,\"nested\":{\"a\":[null,true]}}}}");
    route_plan_free(&plan);
    assert_json(env.root, ENV_FULL);

    /* NULL type and message are empty strings; custom end-queue names. */
    const struct routing_names names = {.actor = "x", .happy_end = "done-q", .error_end = "dead-q"};
    assert_int_equal(routing_plan_error(&names, &env, "connection_error", NULL, NULL, &plan), 0);
    assert_int_equal(plan.count, 1);
    assert_string_equal(plan.error_code, "connection_error");
    assert_item(&plan, 0, "dead-q", PUBLISH_ERROR_END,
                "{\"id\":\"e1\",\"parent_id\":\"e0\",\"route\":{\"actors\":[\"doubler\","
                "\"next\"],\"current\":0},\"headers\":{\"trace_id\":\"abc\",\"n\":[1,2]},"
                "\"extra\":\"kept\",\"error\":\"connection_error\","
                "\"payload\":{\"error\":\"connection_error\",\"details\":{\"message\":\"\","
                "\"type\":\"\",\"actor\":\"x\"},"
                "\"original_payload\":{\"value\":21,\"nested\":{\"a\":[null,true]}}}}");
    route_plan_free(&plan);
    envelope_free(&env);
}

static void test_custom_end_names(void **state)
{
    (void)state;
    const struct routing_names names = {.actor = "x", .happy_end = "done-q", .error_end = "dead-q"};
    struct envelope env;
    struct runtime_response resp;
    struct route_plan plan;
    env_load(ENV_ABC(2), &env);

    resp_load("[{\"payload\":1}]", &resp);
    assert_int_equal(routing_plan_response(&names, &env, &resp, &plan), 0);
    assert_int_equal(plan.count, 1);
    assert_string_equal(plan.items[0].actor, "done-q");
    assert_int_equal(plan.items[0].kind, PUBLISH_HAPPY_END);
    route_plan_free(&plan);
    protocol_response_free(&resp);

    resp_load("[]", &resp);
    assert_int_equal(routing_plan_response(&names, &env, &resp, &plan), 0);
    assert_string_equal(plan.items[0].actor, "done-q");
    route_plan_free(&plan);
    protocol_response_free(&resp);

    resp_load("[{\"error\":\"oom_error\"}]", &resp);
    assert_int_equal(routing_plan_response(&names, &env, &resp, &plan), 0);
    assert_string_equal(plan.items[0].actor, "dead-q");
    assert_int_equal(plan.items[0].kind, PUBLISH_ERROR_END);
    route_plan_free(&plan);
    protocol_response_free(&resp);

    resp_load("[{\"payload\":1,\"route\":7}]", &resp);
    assert_int_equal(routing_plan_response(&names, &env, &resp, &plan), 0);
    assert_string_equal(plan.items[0].actor, "dead-q");
    route_plan_free(&plan);
    protocol_response_free(&resp);
    envelope_free(&env);
}

/* ---- malformed bodies ----------------------------------------------------- */

static void malformed(const char *body, size_t len, const char *code, const char *type,
                      const char *reason, const char *want)
{
    struct route_plan plan;
    assert_int_equal(routing_plan_malformed(&NAMES, body, len, SIZE_MAX, code, type, reason, &plan),
                     0);
    assert_int_equal(plan.count, 1);
    assert_int_equal(plan.outcome, OUTCOME_PARSE_ERROR);
    assert_string_equal(plan.error_code, code ? code : "msg_parsing_error");
    assert_item(&plan, 0, "error-end", PUBLISH_ERROR_END, want);
    route_plan_free(&plan);
}

/* A long malformed body keeps a prefix and says how long it was; its id is
 * kept only when the body is within parse_max. */
static void test_malformed_long_body_is_truncated(void **state)
{
    (void)state;
    size_t len = ROUTING_ORIGINAL_MAX * 3 + 7;
    char *body = malloc(len);
    assert_non_null(body);
    memset(body, 'x', len);
    memcpy(body, "{\"id\":\"m1\",\"junk\":\"", 19);
    struct route_plan plan;
    assert_int_equal(routing_plan_malformed(&NAMES, body, len, SIZE_MAX, NULL, NULL, "r", &plan),
                     0);
    json_t *p = json_object_get(plan.items[0].body, "payload");
    const char *orig = json_string_value(json_object_get(p, "original_message"));
    assert_non_null(orig);
    assert_int_equal(strlen(orig), ROUTING_ORIGINAL_MAX);
    assert_memory_equal(orig, body, ROUTING_ORIGINAL_MAX);
    assert_int_equal(json_integer_value(json_object_get(p, "original_message_bytes")), len);
    assert_true(json_is_true(json_object_get(p, "original_message_truncated")));
    route_plan_free(&plan);
    /* A short one is whole, without the two fields. */
    assert_int_equal(routing_plan_malformed(&NAMES, body, 100, SIZE_MAX, NULL, NULL, "r", &plan),
                     0);
    p = json_object_get(plan.items[0].body, "payload");
    assert_int_equal(strlen(json_string_value(json_object_get(p, "original_message"))), 100);
    assert_null(json_object_get(p, "original_message_bytes"));
    assert_null(json_object_get(p, "original_message_truncated"));
    route_plan_free(&plan);
    free(body);
}

static void test_malformed_parse_max(void **state)
{
    (void)state;
    const char *body = "{\"id\":\"m2\",\"route\":5}";
    struct route_plan plan;
    assert_int_equal(
        routing_plan_malformed(&NAMES, body, strlen(body), SIZE_MAX, NULL, NULL, "r", &plan), 0);
    assert_string_equal(json_string_value(json_object_get(plan.items[0].body, "id")), "m2");
    route_plan_free(&plan);
    assert_int_equal(routing_plan_malformed(&NAMES, body, strlen(body), 4, NULL, NULL, "r", &plan),
                     0);
    assert_null(json_object_get(plan.items[0].body, "id")); /* not parsed */
    route_plan_free(&plan);
}

static void test_queue_name_rules(void **state)
{
    (void)state;
    char q[ROUTING_QUEUE_MAX + 1], why[256];
    assert_int_equal(routing_queue_name("asya-", "doubler", q, sizeof q, why, sizeof why), 0);
    assert_string_equal(q, "asya-doubler");
    assert_int_equal(routing_queue_name("", "amq.gen-x", q, sizeof q, why, sizeof why), -EINVAL);
    assert_non_null(strstr(why, "amq."));
    /* The prefix counts: "amq." may come from it too. */
    assert_int_equal(routing_queue_name("amq.", "x", q, sizeof q, why, sizeof why), -EINVAL);
    char actor[300];
    memset(actor, 'a', sizeof actor - 1);
    actor[sizeof actor - 1] = '\0';
    assert_int_equal(routing_queue_name("", actor, q, sizeof q, why, sizeof why), -EINVAL);
    assert_non_null(strstr(why, "longer than AMQP's 255"));
    actor[255] = '\0'; /* exactly 255 is fine */
    assert_int_equal(routing_queue_name("", actor, q, sizeof q, why, sizeof why), 0);
    assert_int_equal(routing_queue_name("p", actor, q, sizeof q, why, sizeof why), -EINVAL);
}

static void test_malformed_not_json(void **state)
{
    (void)state;
    const char *body = "not json {";
    malformed(body, strlen(body), NULL, NULL, "invalid JSON at line 1",
              "{\"error\":\"msg_parsing_error\",\"payload\":{\"error\":\"msg_parsing_error\","
              "\"details\":{\"message\":\"invalid JSON at line 1\",\"type\":\"ValueError\","
              "\"actor\":\"doubler\"},\"original_message\":\"not json {\"}}");
    /* Empty body. */
    malformed("", 0, NULL, NULL, "empty",
              "{\"error\":\"msg_parsing_error\",\"payload\":{\"error\":\"msg_parsing_error\","
              "\"details\":{\"message\":\"empty\",\"type\":\"ValueError\","
              "\"actor\":\"doubler\"},\"original_message\":\"\"}}");
    /* JSON, but not an object: kept verbatim as a string, nothing taken from it. */
    body = "[{\"id\":\"x\"}, 2]";
    malformed(body, strlen(body), NULL, NULL, "envelope must be a JSON object, got array",
              "{\"error\":\"msg_parsing_error\",\"payload\":{\"error\":\"msg_parsing_error\","
              "\"details\":{\"message\":\"envelope must be a JSON object, got array\","
              "\"type\":\"ValueError\",\"actor\":\"doubler\"},"
              "\"original_message\":\"[{\\\"id\\\":\\\"x\\\"}, 2]\"}}");
    /* A NULL reason is an empty message. */
    malformed("x", 1, NULL, NULL, NULL,
              "{\"error\":\"msg_parsing_error\",\"payload\":{\"error\":\"msg_parsing_error\","
              "\"details\":{\"message\":\"\",\"type\":\"ValueError\","
              "\"actor\":\"doubler\"},\"original_message\":\"x\"}}");
}

static void test_malformed_object_keeps_ids(void **state)
{
    (void)state;
    /* Lacks payload; its id, parent_id, route and headers are kept, other
     * fields only inside original_message. */
    const char *body = "{\"id\":\"m9\",\"parent_id\":\"m8\",\"route\":{\"actors\":[\"a\"],"
                       "\"current\":5},\"headers\":{\"h\":1},\"other\":{\"deep\":true}}";
    json_t *raw = json_string(body);
    char *raw_text = json_dumps(raw, JSON_ENCODE_ANY);
    json_decref(raw);
    char want[2048];
    snprintf(want, sizeof want,
             "{\"id\":\"m9\",\"parent_id\":\"m8\",\"route\":{\"actors\":[\"a\"],\"current\":5},"
             "\"headers\":{\"h\":1},\"error\":\"msg_parsing_error\","
             "\"payload\":{\"error\":\"msg_parsing_error\",\"details\":{\"message\":"
             "\"envelope has no payload field\",\"type\":\"ValueError\",\"actor\":\"doubler\"},"
             "\"original_message\":%s}}",
             raw_text);
    free(raw_text);
    malformed(body, strlen(body), NULL, NULL, "envelope has no payload field", want);

    /* Whatever types they have (it is going to error-end anyway). */
    body = "{\"id\":5,\"route\":\"r\",\"payload\":1}";
    malformed(body, strlen(body), "msg_parsing_error", "EnvelopeError", "route must be an object",
              "{\"id\":5,\"route\":\"r\",\"error\":\"msg_parsing_error\","
              "\"payload\":{\"error\":\"msg_parsing_error\",\"details\":{\"message\":"
              "\"route must be an object\",\"type\":\"EnvelopeError\",\"actor\":\"doubler\"},"
              "\"original_message\":"
              "\"{\\\"id\\\":5,\\\"route\\\":\\\"r\\\",\\\"payload\\\":1}\"}}");
}

static void test_malformed_custom_code(void **state)
{
    (void)state;
    const char *body = "{\"id\":\"big\",\"payl";
    malformed(body, strlen(body), "msg_parsing_error", "MessageTooLarge",
              "message of 99 bytes exceeds ASYA_MAX_MESSAGE_BYTES (50)",
              "{\"error\":\"msg_parsing_error\",\"payload\":{\"error\":\"msg_parsing_error\","
              "\"details\":{\"message\":\"message of 99 bytes exceeds ASYA_MAX_MESSAGE_BYTES "
              "(50)\",\"type\":\"MessageTooLarge\",\"actor\":\"doubler\"},"
              "\"original_message\":\"{\\\"id\\\":\\\"big\\\",\\\"payl\"}}");
    malformed("{}", 2, "poison_message", "PoisonMessage", "too many deliveries",
              "{\"error\":\"poison_message\",\"payload\":{\"error\":\"poison_message\","
              "\"details\":{\"message\":\"too many deliveries\",\"type\":\"PoisonMessage\","
              "\"actor\":\"doubler\"},\"original_message\":\"{}\"}}");
}

static void test_malformed_invalid_utf8(void **state)
{
    (void)state;
    const char body[] = "{\"id\":\"\xff\xfe\",\"x\":\"caf\xc3\xa9\xc3\"}";
    malformed(body, sizeof body - 1, NULL, NULL, "invalid UTF-8",
              "{\"error\":\"msg_parsing_error\",\"payload\":{\"error\":\"msg_parsing_error\","
              "\"details\":{\"message\":\"invalid UTF-8\",\"type\":\"ValueError\","
              "\"actor\":\"doubler\"},\"original_message\":"
              "\"{\\\"id\\\":\\\"\\ufffd\\ufffd\\\",\\\"x\\\":\\\"caf\\u00e9\\ufffd\\\"}\"}}");
}

static void test_malformed_nul_bytes(void **state)
{
    (void)state;
    const char body[] = "{\"payload\":\0\"x\"}\0";
    malformed(body, sizeof body - 1, NULL, NULL, "NUL byte",
              "{\"error\":\"msg_parsing_error\",\"payload\":{\"error\":\"msg_parsing_error\","
              "\"details\":{\"message\":\"NUL byte\",\"type\":\"ValueError\","
              "\"actor\":\"doubler\"},\"original_message\":"
              "\"{\\\"payload\\\":\\u0000\\\"x\\\"}\\u0000\"}}");

    /* The whole body is kept, not cut at the first NUL. */
    struct route_plan plan;
    assert_int_equal(routing_plan_malformed(&NAMES, "\0\0a", 3, SIZE_MAX, NULL, NULL, "r", &plan),
                     0);
    json_t *om =
        json_object_get(json_object_get(plan.items[0].body, "payload"), "original_message");
    assert_int_equal(json_string_length(om), 3);
    assert_memory_equal(json_string_value(om), "\0\0a", 3);
    route_plan_free(&plan);
}

/* ---- lossy strings -------------------------------------------------------- */

struct lossy_case {
    const char *in;
    size_t in_len;
    const char *out;
    size_t out_len;
};

#define LC(i, o)                                                                                   \
    {                                                                                              \
        i, sizeof i - 1, o, sizeof o - 1                                                           \
    }
#define FFFD "\xef\xbf\xbd"

static void test_lossy_string(void **state)
{
    (void)state;
    static const struct lossy_case cases[] = {
        LC("", ""),
        LC("plain ascii", "plain ascii"),
        LC("a\0b", "a\0b"),
        /* valid multi-byte forms are kept byte for byte */
        LC("\xc2\xa9 \xe5\xa4\x84\xe7\x90\x86 \xe2\x9c\x93",
           "\xc2\xa9 \xe5\xa4\x84\xe7\x90\x86 \xe2\x9c\x93"),
        LC("\xf0\x9f\x9a\x80\xf0\x9f\x8e\x89\xf0\x9f\x8c\x8d",
           "\xf0\x9f\x9a\x80\xf0\x9f\x8e\x89\xf0\x9f\x8c\x8d"),
        LC("\xc2\x80", "\xc2\x80"),                 /* U+0080, smallest 2-byte */
        LC("\xe0\xa0\x80", "\xe0\xa0\x80"),         /* U+0800, smallest 3-byte */
        LC("\xf0\x90\x80\x80", "\xf0\x90\x80\x80"), /* U+10000, smallest 4-byte */
        LC("\xed\x9f\xbf", "\xed\x9f\xbf"),         /* U+D7FF, just below surrogates */
        LC("\xee\x80\x80", "\xee\x80\x80"),         /* U+E000, just above */
        LC("\xef\xbf\xbf", "\xef\xbf\xbf"),         /* U+FFFF */
        LC("\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf"), /* U+10FFFF, the last code point */
        /* overlong encodings: every byte replaced */
        LC("\xc0\xaf", FFFD FFFD),
        LC("\xc1\xbf", FFFD FFFD),
        LC("\xe0\x80\xaf", FFFD FFFD FFFD),
        LC("\xe0\x9f\xbf", FFFD FFFD FFFD),
        LC("\xf0\x80\x80\xaf", FFFD FFFD FFFD FFFD),
        LC("\xf0\x8f\xbf\xbf", FFFD FFFD FFFD FFFD),
        LC("\xc0\x80", FFFD FFFD), /* "modified UTF-8" NUL */
        /* UTF-16 surrogates encoded in UTF-8 (CESU) */
        LC("\xed\xa0\x80", FFFD FFFD FFFD),
        LC("\xed\xbf\xbf", FFFD FFFD FFFD),
        LC("\xed\xa0\xbd\xed\xba\x80", FFFD FFFD FFFD FFFD FFFD FFFD),
        /* past U+10FFFF and never-valid lead bytes */
        LC("\xf4\x90\x80\x80", FFFD FFFD FFFD FFFD),
        LC("\xf5\x80\x80\x80", FFFD FFFD FFFD FFFD),
        LC("\xf8\x88\x80\x80\x80", FFFD FFFD FFFD FFFD FFFD),
        LC("\xfe\xff", FFFD FFFD),
        /* stray continuation bytes */
        LC("\x80", FFFD),
        LC("a\xbf"
           "b",
           "a" FFFD "b"),
        /* truncated sequences, at the end and followed by more text */
        LC("\xc3", FFFD),
        LC("\xe2\x82", FFFD FFFD),
        LC("\xf0\x9f\x9a", FFFD FFFD FFFD),
        LC("\xe2\x82"
           "A",
           FFFD FFFD "A"),
        LC("\xf0\x9f\x9a\xe2\x82\xac", FFFD FFFD FFFD "\xe2\x82\xac"),
        LC("x\xc3(y", "x" FFFD "(y"),
        /* mixed */
        LC("ok \xff\xf0\x9f\x9a\x80 \xed\xa0\x80!",
           "ok " FFFD "\xf0\x9f\x9a\x80 " FFFD FFFD FFFD "!"),
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *s = routing_lossy_string(cases[i].in, cases[i].in_len);
        assert_non_null(s);
        assert_true(json_is_string(s));
        if (json_string_length(s) != cases[i].out_len ||
            memcmp(json_string_value(s), cases[i].out, cases[i].out_len) != 0)
            fail_msg("lossy case %zu: got %zu bytes, want %zu", i, json_string_length(s),
                     cases[i].out_len);
        /* The result always serialises (jansson refuses invalid UTF-8). */
        char *dump = json_dumps(s, JSON_ENCODE_ANY);
        assert_non_null(dump);
        free(dump);
        json_decref(s);
    }
}

static void test_lossy_string_all_bytes(void **state)
{
    (void)state;
    /* Every single byte value: ASCII kept, everything else replaced. */
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        json_t *s = routing_lossy_string(&c, 1);
        assert_non_null(s);
        if (b < 0x80) {
            assert_int_equal(json_string_length(s), 1);
            assert_int_equal((unsigned char)json_string_value(s)[0], b);
        } else {
            assert_int_equal(json_string_length(s), 3);
            assert_memory_equal(json_string_value(s), FFFD, 3);
        }
        json_decref(s);
    }
}

/* ---- plan plumbing -------------------------------------------------------- */

static void test_plan_free(void **state)
{
    (void)state;
    route_plan_free(NULL);

    struct route_plan plan;
    plan_for(ENV_ABC(0), "[{\"payload\":1},{\"payload\":2}]", &plan);
    assert_int_equal(plan.count, 2);
    route_plan_free(&plan);
    assert_null(plan.items);
    assert_int_equal(plan.count, 0);
    /* Freeing a cleared plan again is harmless. */
    route_plan_free(&plan);

    /* Publish kinds and outcomes are the values metrics rely on. */
    assert_int_equal(PUBLISH_ROUTING, 0);
    assert_int_equal(PUBLISH_HAPPY_END, 1);
    assert_int_equal(PUBLISH_ERROR_END, 2);
    assert_int_equal(OUTCOME_SUCCESS, 0);
    assert_int_equal(OUTCOME_EMPTY_RESPONSE, 1);
    assert_int_equal(OUTCOME_RUNTIME_ERROR, 2);
    assert_int_equal(OUTCOME_PARSE_ERROR, 3);
    assert_int_equal(OUTCOME_SIDECAR_ERROR, 4);
}

static void test_plan_bodies_are_independent(void **state)
{
    (void)state;
    /* Each fan-out body can be changed (or freed) without touching the
     * others: their routes must not be shared objects. */
    struct route_plan plan;
    plan_for(ENV_ABC(0), "[{\"payload\":1},{\"payload\":2}]", &plan);
    assert_int_equal(plan.count, 2);
    json_t *r0 = json_object_get(plan.items[0].body, "route");
    json_t *r1 = json_object_get(plan.items[1].body, "route");
    assert_ptr_not_equal(r0, r1);
    json_object_set_new(r0, "current", json_integer(42));
    assert_int_equal(json_integer_value(json_object_get(r1, "current")), 1);
    route_plan_free(&plan);
}

/* Plain canonical cases take the splice path (the tree path stays the judge). */
static void test_splice_takes_plain_cases(void **state)
{
    (void)state;
    static const char *const envs[] = {
        "{\"id\":\"m1\",\"route\":{\"actors\":[\"a\",\"b\"],\"current\":0},\"payload\":{\"v\":1}}",
        "{\"route\":{\"actors\":[\"a\"],\"current\":0},\"payload\":[1,\"x\",null],"
        "\"headers\":{\"h\":\"\\n\"},\"job_id\":\"j\"}",
        "{\"id\":\"f\\\"q\",\"route\":{\"current\":1,\"steps\":[\"a\",\"b\",\"c\"]},\"payload\":"
        "\"\u00e9\"}",
    };
    static const char *const answers[] = {
        "[]",
        "null",
        "[{\"payload\":{\"v\":2},\"route\":ROUTE}]",
        "[{\"payload\":1,\"route\":ROUTE,\"asya_progress\":true}]",
        ("[{\"payload\":1,\"route\":ROUTE},{\"payload\":2,\"route\":ROUTE},"
         "{\"payload\":3,\"route\":ROUTE,\"id\":\"mine\"}]"),
    };
    for (size_t e = 0; e < sizeof envs / sizeof envs[0]; e++) {
        json_t *v = json_load_text(envs[e]);
        char *route = asya_json_dumps(json_object_get(v, "route"));
        json_decref(v);
        for (size_t a = 0; a < sizeof answers / sizeof answers[0]; a++) {
            char answer[1024] = "";
            const char *p = answers[a];
            for (const char *q; (q = strstr(p, "ROUTE")); p = q + 5) {
                strncat(answer, p, (size_t)(q - p));
                strcat(answer, route);
            }
            strcat(answer, p);
            if (!check_splice(envs[e], answer))
                fail_msg("the splice path did not take %s / %s", envs[e], answer);
        }
        free(route);
    }
}

/* Cases the splice path must leave to the tree path. */
static void test_splice_leaves_the_rest(void **state)
{
    (void)state;
    const char *env =
        "{\"id\":\"m\",\"route\":{\"actors\":[\"a\",\"b\"],\"current\":0},\"payload\":1}";
    static const char *const answers[] = {
        "[{\"error\":\"processing_error\",\"details\":{\"message\":\"x\"}}]",
        "[{\"payload\":1,\"route\":{\"actors\":[\"a\",\"c\"],\"current\":1}}]",
        "[{\"payload\":1,\"route\":{\"actors\":[\"a\",\"b\"],\"current\":5}}]",
        "[{\"payload\":1.5}]",
        "[{\"route\":{\"actors\":[\"a\",\"b\"],\"current\":0}}]",
        "[{\"payload\":1,\"id\":7}]",
        "[1]",
        "{\"payload\":1}",
    };
    for (size_t a = 0; a < sizeof answers / sizeof answers[0]; a++) {
        struct envelope scanned;
        char err[ERRLEN];
        assert_int_equal(envelope_parse(env, strlen(env), ENVELOPE_SCAN, &scanned, err, sizeof err),
                         0);
        assert_non_null(scanned.scan);
        struct route_plan plan;
        assert_int_equal(
            splice_plan_response(&NAMES, &scanned, answers[a], strlen(answers[a]), &plan), 0);
        envelope_free(&scanned);
        check_splice(env, answers[a]); /* and nothing breaks either way */
    }
    /* Envelopes the scan leaves to jansson. */
    static const char *const envs[] = {
        "{\"route\":{\"actors\":[\"a\"],\"current\":0},\"payload\":0.5}",
        "{\"route\":{\"actors\":[\"a\"],\"current\":0},\"payload\":{\"k\": 1}}",
        "{\"route\":{\"actors\":[\"a\"],\"current\":0},\"payload\":\"\\u0041\"}",
        "{\"route\":{\"actors\":[\"a\"],\"current\":0},\"payload\":1,\"payload\":2}",
    };
    for (size_t e = 0; e < sizeof envs / sizeof envs[0]; e++) {
        struct envelope scanned;
        char err[ERRLEN];
        assert_int_equal(
            envelope_parse(envs[e], strlen(envs[e]), ENVELOPE_SCAN, &scanned, err, sizeof err), 0);
        assert_null(scanned.scan);
        assert_non_null(scanned.root);
        envelope_free(&scanned);
    }
}

static const char *pick(unsigned *seed, const char *const *list, size_t n)
{
    return list[(size_t)rand_r(seed) % n];
}

#define PICK(seed, list) pick(seed, list, sizeof list / sizeof list[0])

/* Random envelopes and answers: wherever the splice path goes, it agrees. */
static void test_splice_random_against_tree(void **state)
{
    (void)state;
    static const char *const ids[] = {"", "\"id\":\"m-1\",", "\"id\":null,",
                                      "\"id\":\"a\\\"b\\\\c\\n\\u0001\u00e9\",", "\"id\":\"x\","};
    static const char *const extras[] = {"",
                                         "\"parent_id\":\"p\",",
                                         "\"headers\":{\"t\":[1,2]},",
                                         "\"headers\":null,",
                                         "\"job_id\":\"j-1\",\"z\":{\"a\":true,\"b\":false},",
                                         "\"asya_progress\":true,"};
    static const char *const routes[] = {
        "{\"actors\":[\"a\",\"b\",\"c\"],\"current\":CUR}",
        "{\"current\":CUR,\"actors\":[\"a\",\"b\",\"c\"],\"metadata\":{\"job_id\":\"j\"}}",
        "{\"steps\":[\"a\",\"b\",\"c\"],\"current\":CUR}"};
    static const char *const payloads[] = {"1",    "{\"v\":-12}",       "[]",
                                           "{}",   "\"s\\t\u4e2d\"",    "[{\"a\":[null]}]",
                                           "0.25", "123456789012345678"};
    static const char *const members[] = {"",
                                          ",\"id\":\"x\"",
                                          ",\"id\":\"other\"",
                                          ",\"id\":null",
                                          ",\"headers\":{\"n\":1}",
                                          ",\"asya_progress\":true",
                                          ",\"new\":[1]",
                                          ",\"parent_id\":\"q\""};
    unsigned seed = 16;
    int took = 0, runs = 3000;
    for (int run = 0; run < runs; run++) {
        int cur = rand_r(&seed) % 3;
        char route[256], env[1024];
        const char *r = PICK(&seed, routes);
        const char *at = strstr(r, "CUR");
        snprintf(route, sizeof route, "%.*s%d%s", (int)(at - r), r, cur, at + 3);
        snprintf(env, sizeof env, "{%s%s\"route\":%s,\"payload\":%s%s}", PICK(&seed, ids),
                 PICK(&seed, extras), route, PICK(&seed, payloads),
                 rand_r(&seed) % 2 ? "" : ",\"tail\":\"t\"");
        int n = rand_r(&seed) % 4;
        char answer[4096] = "[";
        for (int i = 0; i < n; i++) {
            char rroute[256];
            int rc = rand_r(&seed) % 3 == 0 ? cur + 1 : cur; /* advanced, or not */
            snprintf(rroute, sizeof rroute, "%.*s%d%s", (int)(at - r), r, rc, at + 3);
            char item[512];
            bool with_route = rand_r(&seed) % 5 != 0;
            snprintf(item, sizeof item, "%s{\"payload\":%s%s%s%s}", i ? "," : "",
                     PICK(&seed, payloads), with_route ? ",\"route\":" : "",
                     with_route ? rroute : "", PICK(&seed, members));
            strcat(answer, item);
        }
        strcat(answer, "]");
        if (check_splice(env, rand_r(&seed) % 20 == 0 ? "null" : answer))
            took++;
    }
    /* Most cases are plain enough for the splice path. */
    if (took < runs / 3)
        fail_msg("the splice path took only %d of %d random cases", took, runs);
    printf("splice path took %d of %d random cases\n", took, runs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_result_advances),
        cmocka_unit_test(test_last_actor_goes_to_happy_end),
        cmocka_unit_test(test_runtime_advanced_current_is_kept),
        cmocka_unit_test(test_bad_current_is_invalid_response),
        cmocka_unit_test(test_missing_or_non_integer_current),
        cmocka_unit_test(test_result_route_not_an_object),
        cmocka_unit_test(test_result_route_invalid_actors),
        cmocka_unit_test(test_result_without_route_uses_original),
        cmocka_unit_test(test_fanout_ids),
        cmocka_unit_test(test_fanout_many_ids),
        cmocka_unit_test(test_fanout_without_id_invents_none),
        cmocka_unit_test(test_envelope_mode_ids_kept),
        cmocka_unit_test(test_headers_and_unknown_fields_kept),
        cmocka_unit_test(test_steps_alias_kept),
        cmocka_unit_test(test_bad_result_in_fanout_fails_whole_plan),
        cmocka_unit_test(test_empty_response_sends_original),
        cmocka_unit_test(test_runtime_error_envelope),
        cmocka_unit_test(test_runtime_error_codes_and_partial_details),
        cmocka_unit_test(test_error_envelope_leaves_inputs_alone),
        cmocka_unit_test(test_plan_error_timeout),
        cmocka_unit_test(test_custom_end_names),
        cmocka_unit_test(test_malformed_long_body_is_truncated),
        cmocka_unit_test(test_malformed_parse_max),
        cmocka_unit_test(test_queue_name_rules),
        cmocka_unit_test(test_malformed_not_json),
        cmocka_unit_test(test_malformed_object_keeps_ids),
        cmocka_unit_test(test_malformed_custom_code),
        cmocka_unit_test(test_malformed_invalid_utf8),
        cmocka_unit_test(test_malformed_nul_bytes),
        cmocka_unit_test(test_lossy_string),
        cmocka_unit_test(test_lossy_string_all_bytes),
        cmocka_unit_test(test_plan_free),
        cmocka_unit_test(test_plan_bodies_are_independent),
        cmocka_unit_test(test_splice_takes_plain_cases),
        cmocka_unit_test(test_splice_leaves_the_rest),
        cmocka_unit_test(test_splice_random_against_tree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
