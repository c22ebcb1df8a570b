/*
 * Unit tests for src/sidecar/admission.c (what to do with a consumed message
 * before the runtime sees it) and src/sidecar/prefetch.c (the automatic
 * prefetch): both pure.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "admission.h"
#include "prefetch.h"

static struct admission_input base(void)
{
    struct admission_input in = {.len = 100, .max_bytes = 1000, .attempts = 0, .max_attempts = 3};
    return in;
}

static void test_plain_message_is_parsed_then_run(void **state)
{
    (void)state;
    struct admission_input in = base();
    long attempts = -1;
    assert_int_equal(admission_precheck(&in, &attempts), ADMIT_PARSE);
    assert_int_equal(attempts, 0);
    assert_int_equal(admission_after_parse(&in, true), ADMIT_RUN);
    assert_int_equal(admission_after_parse(&in, false), ADMIT_MALFORMED);
}

static void test_redelivery_counts_an_attempt_first(void **state)
{
    (void)state;
    struct admission_input in = base();
    long attempts;
    in.redelivered = true;
    in.len = 5000; /* even a too-large one is counted first */
    assert_int_equal(admission_precheck(&in, &attempts), ADMIT_REQUEUE);
    assert_int_equal(attempts, 1);
    in.attempts = 2; /* the third failed attempt is the last */
    assert_int_equal(admission_precheck(&in, &attempts), ADMIT_POISON_RAW);
    assert_int_equal(attempts, 3);
    /* Quorum queues count deliveries themselves: not counted twice. */
    in.counted = true;
    in.attempts = 0;
    assert_int_equal(admission_precheck(&in, &attempts), ADMIT_TOO_LARGE);
    /* End actors never requeue. */
    in.counted = false;
    in.end_actor = true;
    in.len = 10;
    assert_int_equal(admission_precheck(&in, &attempts), ADMIT_PARSE);
}

static void test_size_limit_is_inclusive(void **state)
{
    (void)state;
    struct admission_input in = base();
    long attempts;
    in.len = 1000;
    assert_int_equal(admission_precheck(&in, &attempts), ADMIT_PARSE);
    in.len = 1001;
    assert_int_equal(admission_precheck(&in, &attempts), ADMIT_TOO_LARGE);
}

static void test_attempts_used_up_is_poison_after_parse(void **state)
{
    (void)state;
    struct admission_input in = base();
    in.attempts = 3;
    assert_int_equal(admission_after_parse(&in, true), ADMIT_POISON);
    assert_int_equal(admission_after_parse(&in, false), ADMIT_MALFORMED);
    in.end_actor = true;
    assert_int_equal(admission_after_parse(&in, true), ADMIT_RUN);
}

static void test_prefetch_choice(void **state)
{
    (void)state;
    assert_int_equal(prefetch_narrow(4), 10);
    assert_int_equal(prefetch_choose(0, 10, 4, 256), 10);      /* nothing measured yet */
    assert_int_equal(prefetch_choose(0.001, 10, 4, 256), 256); /* fast: deep window */
    assert_int_equal(prefetch_choose(0.2, 256, 4, 256), 10);   /* slow: narrow */
    assert_int_equal(prefetch_choose(0.03, 256, 4, 256), 256); /* in between: keep */
    assert_int_equal(prefetch_choose(0.03, 10, 4, 256), 10);
}

static void test_prefetch_fit_bytes(void **state)
{
    (void)state;
    long budget = 32L << 20;
    assert_int_equal(prefetch_fit_bytes(256, budget, 0), 256);              /* nothing seen yet */
    assert_int_equal(prefetch_fit_bytes(256, budget, 200), 256);            /* small: no cap */
    assert_int_equal(prefetch_fit_bytes(256, budget, 1 << 20), 32);         /* 1 MiB: 32 fit */
    assert_int_equal(prefetch_fit_bytes(256, budget, 16 << 20), 2);         /* 16 MiB: 2 */
    assert_int_equal(prefetch_fit_bytes(256, budget, 64.0 * (1 << 20)), 1); /* never 0 */
    assert_int_equal(prefetch_fit_bytes(4, budget, 1 << 20), 4);            /* below the cap */
}

static void test_prefetch_ewma(void **state)
{
    (void)state;
    assert_true(prefetch_ewma(0, 0.5) == 0.5); /* first sample as is */
    double e = prefetch_ewma(1.0, 2.0);
    assert_true(e > 1.09 && e < 1.11);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_message_is_parsed_then_run),
        cmocka_unit_test(test_redelivery_counts_an_attempt_first),
        cmocka_unit_test(test_size_limit_is_inclusive),
        cmocka_unit_test(test_attempts_used_up_is_poison_after_parse),
        cmocka_unit_test(test_prefetch_choice),
        cmocka_unit_test(test_prefetch_fit_bytes),
        cmocka_unit_test(test_prefetch_ewma),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
