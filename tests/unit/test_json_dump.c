/* Reals keep the shortest text that reads back exactly, as Python and Go
 * print them, when the sidecar re-serialises an envelope. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "envelope.h"

#include <stdlib.h>
#include <string.h>

static void check_dump(const char *in, const char *want)
{
    json_t *v = json_loads(in, JSON_DECODE_ANY, NULL);
    assert_non_null(v);
    size_t len = 0;
    char *out = envelope_dump(v, &len);
    assert_non_null(out);
    assert_string_equal(out, want);
    assert_int_equal(len, strlen(want));
    free(out);
    json_decref(v);
}

static void test_short_reals(void **state)
{
    (void)state;
    check_dump("{\"a\":0.1,\"b\":[1.5,2.0,-3.25]}", "{\"a\":0.1,\"b\":[1.5,2.0,-3.25]}");
    check_dump("[1e300, 5e-324]", "[1e300,5e-324]");
}

static void test_long_reals_round_trip(void **state)
{
    (void)state;
    check_dump("{\"x\":0.30000000000000004}", "{\"x\":0.30000000000000004}");
    check_dump("{\"pi\":3.141592653589793}", "{\"pi\":3.141592653589793}");
}

static void test_no_reals(void **state)
{
    (void)state;
    check_dump("{\"n\":12345678901234,\"s\":\"0.1\",\"z\":null}",
               "{\"n\":12345678901234,\"s\":\"0.1\",\"z\":null}");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_short_reals),
        cmocka_unit_test(test_long_reals_round_trip),
        cmocka_unit_test(test_no_reals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
