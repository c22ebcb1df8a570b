/*
 * libFuzzer target for the envelope parser/validator (src/common/envelope.c).
 *
 * The input is parsed with and without ENVELOPE_ALLOW_FINISHED; accepted
 * envelopes are checked for consistency and round-tripped through
 * envelope_dump; rejected ones must carry a printable one-line reason.  When
 * the input contains a 0xFF separator byte, the two halves are parsed as two
 * envelopes and compared with envelope_route_prefix_equal.
 */
#include "envelope.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_err(const char *err)
{
    if (!err[0])
        abort();
    for (const char *p = err; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            abort();
    /* The reason must be usable as a JSON string (it goes into error-end). */
    json_t *s = json_string(err);
    if (!s)
        abort();
    json_decref(s);
}

static void check_env(const struct envelope *env, int flags)
{
    if (!json_is_object(env->root) || !json_is_object(env->route) || !json_is_array(env->actors))
        abort();
    if (env->actor_count != json_array_size(env->actors))
        abort();
    if (flags & ENVELOPE_ALLOW_FINISHED) {
        if (env->current > env->actor_count)
            abort();
    } else if (env->current >= env->actor_count) {
        abort();
    }
    for (size_t i = 0; i < env->actor_count; i++) {
        const char *a = envelope_actor(env, i);
        if (!a || !a[0])
            abort();
    }
    if (envelope_actor(env, env->actor_count))
        abort();
    if (strcmp(env->actors_key, "actors") != 0 && strcmp(env->actors_key, "steps") != 0)
        abort();
    if (!envelope_route_prefix_equal(env, env))
        abort();

    /* Dump and parse again: same envelope. */
    size_t len = 0;
    char *text = envelope_dump(env->root, &len);
    if (!text)
        abort();
    struct envelope again;
    char err[256];
    if (envelope_parse(text, len, flags, &again, err, sizeof err) != 0)
        abort();
    if (again.actor_count != env->actor_count || again.current != env->current ||
        !json_equal(again.root, env->root) || strcmp(again.actors_key, env->actors_key) != 0 ||
        (env->id == NULL) != (again.id == NULL) || (env->id && strcmp(env->id, again.id) != 0))
        abort();
    envelope_free(&again);
    free(text);
}

/* Parses with both flags; returns 1 and fills env (ALLOW_FINISHED) when valid. */
static int parse_both(const char *data, size_t size, struct envelope *env)
{
    char err[256];
    struct envelope strict;
    int rc0 = envelope_parse(data, size, 0, &strict, err, sizeof err);
    if (rc0 == 0)
        check_env(&strict, 0);
    else
        check_err(err);

    int rc1 = envelope_parse(data, size, ENVELOPE_ALLOW_FINISHED, env, err, sizeof err);
    if (rc1 == 0)
        check_env(env, ENVELOPE_ALLOW_FINISHED);
    else
        check_err(err);

    /* Strict acceptance implies lenient acceptance of the same route. */
    if (rc0 == 0) {
        if (rc1 != 0 || env->current != strict.current ||
            !envelope_route_prefix_equal(&strict, env) ||
            !envelope_route_prefix_equal(env, &strict))
            abort();
        envelope_free(&strict);
    }
    return rc1 == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    const uint8_t *sep = memchr(data, 0xff, size);
    if (!sep) {
        struct envelope env;
        if (parse_both(text, size, &env))
            envelope_free(&env);
        return 0;
    }
    size_t first = (size_t)(sep - data);
    struct envelope a, b;
    int ok_a = parse_both(text, first, &a);
    int ok_b = parse_both(text + first + 1, size - first - 1, &b);
    if (ok_a && ok_b) {
        bool ab = envelope_route_prefix_equal(&a, &b);
        /* Compare with a direct check of actors[0..current]. */
        size_t n = a.current + 1 < a.actor_count ? a.current + 1 : a.actor_count;
        bool want = b.actor_count >= n;
        for (size_t i = 0; want && i < n; i++)
            want = strcmp(envelope_actor(&a, i), envelope_actor(&b, i)) == 0;
        if (ab != want)
            abort();
        (void)envelope_route_prefix_equal(&b, &a);
    }
    if (ok_a)
        envelope_free(&a);
    if (ok_b)
        envelope_free(&b);
    return 0;
}
