/*
 * Unit tests for src/sidecar/memreject.c: the bodies the sidecar sent back
 * for ASYA_MAX_INFLIGHT_BYTES, so their redelivery costs no attempt.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "memreject.h"

#include <string.h>

static void test_hash(void **state)
{
    (void)state;
    /* FNV-1a's published values. */
    assert_true(memreject_hash("", 0) == 0xcbf29ce484222325ULL);
    assert_true(memreject_hash("a", 1) == 0xaf63dc4c8601ec8cULL);
    assert_true(memreject_hash("ab", 2) != memreject_hash("ba", 2));
}

static void test_add_take(void **state)
{
    (void)state;
    struct memreject r;
    memset(&r, 0, sizeof r);
    assert_int_equal(memreject_take(&r, 7), 0);
    memreject_add(&r, 7);
    memreject_add(&r, 7); /* sent back twice before it could be held */
    memreject_add(&r, 9);
    assert_int_equal(r.used, 2);
    assert_int_equal(memreject_take(&r, 7), 2);
    assert_int_equal(memreject_take(&r, 7), 0); /* forgotten once taken */
    assert_int_equal(memreject_take(&r, 9), 1);
    assert_int_equal(r.used, 0);
}

static void test_bounded_oldest_make_room(void **state)
{
    (void)state;
    struct memreject r;
    memset(&r, 0, sizeof r);
    for (uint64_t h = 1; h <= MEMREJECT_SLOTS + 10; h++)
        memreject_add(&r, h);
    assert_int_equal(r.used, MEMREJECT_SLOTS);
    for (uint64_t h = 1; h <= 10; h++)
        assert_int_equal(memreject_take(&r, h), 0); /* the oldest ten made room */
    for (uint64_t h = 11; h <= MEMREJECT_SLOTS + 10; h++)
        assert_int_equal(memreject_take(&r, h), 1);
    assert_int_equal(r.used, 0);
    /* A freed slot is reused without miscounting. */
    memreject_add(&r, 5);
    assert_int_equal(r.used, 1);
    assert_int_equal(memreject_take(&r, 5), 1);
}

static void test_live_entries_outlive_turns_of_the_ring(void **state)
{
    (void)state;
    struct memreject r;
    memset(&r, 0, sizeof r);
    memreject_add(&r, 1000); /* one message sent back and not yet seen again */
    /* Many more come and go (sent back, redelivered, taken): the ring turns. */
    for (uint64_t h = 1; h <= 3 * MEMREJECT_SLOTS; h++) {
        memreject_add(&r, h);
        assert_int_equal(memreject_take(&r, h), 1);
    }
    assert_int_equal(memreject_take(&r, 1000), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash),
        cmocka_unit_test(test_add_take),
        cmocka_unit_test(test_bounded_oldest_make_room),
        cmocka_unit_test(test_live_entries_outlive_turns_of_the_ring),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
