/*
 * Unit tests for src/sidecar/confirm.c: publisher-confirm bookkeeping.  The
 * case that matters most: the caller tracks new publishes (a returned
 * message's routing_error) while it walks what one multiple=true ack settled,
 * with the ring full and wrapped, so it must grow under the walk.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "confirm.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

static void track_range(struct confirm_tracker *t, uint64_t first, uint64_t last, unsigned msg0)
{
    for (uint64_t s = first; s <= last; s++)
        assert_int_equal(confirm_track(t, s, msg0 + (unsigned)(s - first)), 0);
}

static void test_single_and_multiple(void **state)
{
    (void)state;
    struct confirm_tracker t;
    confirm_init(&t);
    track_range(&t, 1, 5, 10); /* seq 1..5 -> msg 10..14 */
    assert_int_equal(confirm_pending(&t), 5);

    const struct confirm_done *d;
    assert_int_equal(confirm_settle(&t, 3, false, true, &d), 1);
    assert_int_equal(d[0].msg, 12);
    assert_true(d[0].ack);
    assert_int_equal(confirm_lookup(&t, 3), -1);
    assert_int_equal(confirm_lookup(&t, 4), 13);

    /* multiple up to 4: 1, 2 and 4, each once, in order; 3 is not repeated. */
    assert_int_equal(confirm_settle(&t, 4, true, false, &d), 3);
    assert_int_equal(d[0].msg, 10);
    assert_int_equal(d[1].msg, 11);
    assert_int_equal(d[2].msg, 13);
    assert_false(d[2].ack);
    assert_int_equal(confirm_pending(&t), 1);

    /* Settled or unknown numbers change nothing. */
    assert_int_equal(confirm_settle(&t, 2, false, true, &d), 0);
    assert_int_equal(confirm_settle(&t, 99, false, true, &d), 0);
    assert_int_equal(confirm_pending(&t), 1);
    /* A multiple ack past the end settles what there is. */
    assert_int_equal(confirm_settle(&t, 99, true, true, &d), 1);
    assert_int_equal(d[0].msg, 14);
    assert_int_equal(confirm_pending(&t), 0);
    confirm_free(&t);
}

static void test_out_of_order_track_refused(void **state)
{
    (void)state;
    struct confirm_tracker t;
    confirm_init(&t);
    assert_int_equal(confirm_track(&t, 7, 1), 0);
    assert_int_equal(confirm_track(&t, 9, 2), -EINVAL);
    assert_int_equal(confirm_track(&t, 8, 2), 0);
    assert_int_equal(confirm_pending(&t), 2);
    assert_int_equal(confirm_lookup(&t, 9), -1);
    assert_int_equal(confirm_lookup(&t, 8), 2);
    /* Empty again: any number may start a new run (a new connection). */
    const struct confirm_done *d;
    assert_int_equal(confirm_settle(&t, 8, true, true, &d), 2);
    assert_int_equal(confirm_track(&t, 1, 3), 0);
    assert_int_equal(confirm_lookup(&t, 1), 3);
    confirm_reset(&t);
    assert_int_equal(confirm_pending(&t), 0);
    assert_int_equal(confirm_track(&t, 500, 4), 0);
    confirm_free(&t);
}

/*
 * The ring is full and wrapped when a multiple=true ack arrives; while the
 * caller walks the settled list it tracks a new publish for every fifth
 * entry (as for a returned message's routing_error), which grows the ring.
 * Every settled entry must come out exactly once with its own message, and
 * the new publishes must settle later, all of them, none twice.
 */
static void test_tracking_while_walking_a_full_wrapped_ring(void **state)
{
    (void)state;
    struct confirm_tracker t;
    confirm_init(&t);
    const struct confirm_done *d;

    /* Fill the first ring (256), settle the first 100, refill: wrapped and full. */
    uint64_t next = 1000;
    for (unsigned i = 0; i < 256; i++)
        assert_int_equal(confirm_track(&t, next++, i), 0);
    assert_int_equal(t.cap, 256);
    assert_int_equal(confirm_settle(&t, 1099, true, true, &d), 100);
    for (unsigned i = 256; i < 356; i++)
        assert_int_equal(confirm_track(&t, next++, i), 0);
    assert_int_equal(t.cap, 256);
    assert_int_equal(t.count, 256);
    assert_true(t.head != 0); /* wrapped */

    bool seen[512] = {false};
    long n = confirm_settle(&t, next - 1, true, true, &d);
    assert_int_equal(n, 256);
    unsigned extra = 0;
    for (long i = 0; i < n; i++) {
        unsigned msg = d[i].msg;
        assert_true(msg >= 100 && msg < 356);
        assert_int_equal(msg, 100 + (unsigned)i); /* in sequence order */
        assert_false(seen[msg]);
        seen[msg] = true;
        if (i % 5 == 0) {
            for (int k = 0; k < 60; k++) /* enough to grow the ring under the walk */
                assert_int_equal(confirm_track(&t, next++, 400 + (extra % 100)), 0);
            extra++;
        }
    }
    for (unsigned m = 100; m < 356; m++)
        assert_true(seen[m]);
    assert_true(t.cap > 256);
    assert_int_equal(confirm_pending(&t), extra * 60);

    /* The publishes tracked during the walk settle normally. */
    n = confirm_settle(&t, next - 1, true, true, &d);
    assert_int_equal(n, extra * 60);
    for (long i = 0; i < n; i++)
        assert_int_equal(d[i].msg, 400 + (unsigned)(i / 60) % 100);
    assert_int_equal(confirm_pending(&t), 0);
    confirm_free(&t);
}

/* A nack inside the window marks only its own entry. */
static void test_nack_single_inside_window(void **state)
{
    (void)state;
    struct confirm_tracker t;
    confirm_init(&t);
    track_range(&t, 1, 3, 0);
    const struct confirm_done *d;
    assert_int_equal(confirm_settle(&t, 2, false, false, &d), 1);
    assert_int_equal(d[0].msg, 1);
    assert_false(d[0].ack);
    assert_int_equal(confirm_settle(&t, 3, true, true, &d), 2);
    assert_int_equal(d[0].msg, 0);
    assert_true(d[0].ack);
    assert_int_equal(d[1].msg, 2);
    confirm_free(&t);
    confirm_free(&t); /* twice is fine */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_and_multiple),
        cmocka_unit_test(test_out_of_order_track_refused),
        cmocka_unit_test(test_tracking_while_walking_a_full_wrapped_ring),
        cmocka_unit_test(test_nack_single_inside_window),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
