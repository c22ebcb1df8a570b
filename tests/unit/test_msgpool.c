/*
 * Unit tests for src/sidecar/msgpool.c: the message pool, the waiting FIFO
 * and ack batching (one multiple=true ack below the lowest tag in use, single
 * acks above it).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "msgpool.h"

#include <stdlib.h>
#include <string.h>

static uint64_t singles[16];
static size_t nsingles;

static int record_single(void *ctx, uint64_t tag)
{
    (void)ctx;
    singles[nsingles++] = tag;
    return 0;
}

static struct message *take(struct msgpool *p, const char *body, uint64_t tag)
{
    bool nomem;
    struct message *m = msgpool_take(p, body, strlen(body), &nomem);
    assert_non_null(m);
    assert_false(nomem);
    m->tag = tag;
    return m;
}

static void test_take_release_and_exhaustion(void **state)
{
    (void)state;
    struct msgpool p;
    assert_int_equal(msgpool_init(&p, 2), 0);
    struct message *a = take(&p, "hello", 1);
    assert_string_equal(a->body, "hello");
    assert_int_equal(a->len, 5);
    assert_int_equal(a->state, MSG_RUNTIME);
    struct message *b = take(&p, "", 2); /* an empty body comes as NULL from rabbitmq-c */
    assert_int_equal(b->len, 0);
    bool nomem;
    assert_null(msgpool_take(&p, "x", 1, &nomem));
    assert_false(nomem); /* empty pool, not out of memory */
    assert_int_equal(p.active, 2);
    assert_int_equal(p.bytes, 5); /* body bytes held, for ASYA_MAX_INFLIGHT_BYTES */
    msgpool_release(&p, a);
    assert_int_equal(p.active, 1);
    assert_int_equal(p.bytes, 0);
    assert_int_equal(a->state, MSG_FREE);
    struct message *c = take(&p, "again", 3);
    assert_ptr_equal(c, a); /* the buffer is reused */
    assert_int_equal(p.bytes, 5);
    msgpool_release_all(&p);
    assert_int_equal(p.active, 0);
    assert_int_equal(p.bytes, 0);
    msgpool_free(&p);
    msgpool_free(&p); /* twice is fine */
}

static void test_waiting_fifo(void **state)
{
    (void)state;
    struct msgpool p;
    assert_int_equal(msgpool_init(&p, 3), 0);
    struct message *a = take(&p, "a", 1), *b = take(&p, "b", 2), *c = take(&p, "c", 3);
    msgpool_wait_push(&p, a);
    msgpool_wait_push(&p, b);
    assert_int_equal(b->state, MSG_WAITING);
    assert_ptr_equal(msgpool_wait_pop(&p), a);
    msgpool_wait_push(&p, c);
    assert_ptr_equal(msgpool_wait_pop(&p), b);
    assert_ptr_equal(msgpool_wait_pop(&p), c);
    assert_null(msgpool_wait_pop(&p));
    msgpool_free(&p);
}

static void test_push_front_and_parking(void **state)
{
    (void)state;
    struct msgpool p;
    assert_int_equal(msgpool_init(&p, 4), 0);
    struct message *a = take(&p, "a", 1), *b = take(&p, "b", 2), *c = take(&p, "c", 3);
    msgpool_wait_push(&p, a);
    msgpool_wait_push(&p, b);
    struct message *first = msgpool_wait_pop(&p);
    msgpool_wait_push_front(&p, first); /* could not start: its turn stays first */
    assert_ptr_equal(msgpool_wait_pop(&p), a);
    assert_ptr_equal(msgpool_wait_pop(&p), b);
    msgpool_wait_push_front(&p, c); /* into an empty FIFO */
    assert_ptr_equal(p.waiting.tail, c);
    assert_ptr_equal(msgpool_wait_pop(&p), c);
    assert_null(p.waiting.tail);

    msgpool_park(&p, b);
    msgpool_park(&p, a);
    assert_int_equal(a->state, MSG_PARKED);
    assert_ptr_equal(msgpool_unpark(&p), b);
    assert_ptr_equal(msgpool_unpark(&p), a);
    assert_null(msgpool_unpark(&p));
    /* A parked plan is freed with the message. */
    msgpool_park(&p, c);
    c->parked_plan.items = calloc(1, sizeof *c->parked_plan.items);
    c->parked_plan.count = 1;
    c->parked_plan.items[0].actor = strdup("x");
    msgpool_release_all(&p);
    assert_null(p.parked.head);
    assert_int_equal(c->parked_plan.count, 0);
    msgpool_free(&p);
}

static void test_ack_batching(void **state)
{
    (void)state;
    struct msgpool p;
    assert_int_equal(msgpool_init(&p, 8), 0);
    struct message *m[6];
    for (int i = 0; i < 6; i++)
        m[i] = take(&p, "x", (uint64_t)i + 1);
    /* Tags 1, 2, 5 settle; 3 is still in use: one multiple ack up to 2, 5 single. */
    int order[] = {0, 1, 4};
    for (int k = 0; k < 3; k++) {
        msgpool_ack(&p, m[order[k]]);
        msgpool_release(&p, m[order[k]]);
    }
    uint64_t upto;
    nsingles = 0;
    assert_int_equal(msgpool_flush_acks(&p, &upto, record_single, NULL), 0);
    assert_int_equal(upto, 2);
    assert_int_equal(nsingles, 1);
    assert_int_equal(singles[0], 5);
    /* Nothing batched: nothing sent. */
    nsingles = 0;
    assert_int_equal(msgpool_flush_acks(&p, &upto, record_single, NULL), 0);
    assert_int_equal(upto, 0);
    assert_int_equal(nsingles, 0);
    /* Everything else settles: one multiple ack covers it all. */
    for (int i = 2; i < 6; i++) {
        if (i == 4)
            continue;
        msgpool_ack(&p, m[i]);
        msgpool_release(&p, m[i]);
    }
    assert_int_equal(msgpool_flush_acks(&p, &upto, record_single, NULL), 0);
    assert_int_equal(upto, 6);
    assert_int_equal(nsingles, 0);
    msgpool_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_take_release_and_exhaustion),
        cmocka_unit_test(test_waiting_fifo),
        cmocka_unit_test(test_push_front_and_parking),
        cmocka_unit_test(test_ack_batching),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
