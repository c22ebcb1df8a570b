/* Unit tests for src/common/duration.c: Go-style duration parsing and printing. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "duration.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define NS   INT64_C(1)
#define US   INT64_C(1000)
#define MS   INT64_C(1000000)
#define SEC  INT64_C(1000000000)
#define MIN  (60 * SEC)
#define HOUR (3600 * MIN / 60)

/* Parses text, expecting success and exactly want nanoseconds. */
static void expect_ok(const char *text, int64_t want)
{
    int64_t got = -12345;
    int rc = duration_parse(text, &got);
    if (rc != 0 || got != want)
        fail_msg("duration_parse(\"%s\") = %d, %lld ns; want 0, %lld ns", text, rc, (long long)got,
                 (long long)want);
}

/* Parses text, expecting the error want_rc and *ns untouched. */
static void expect_err(const char *text, int want_rc)
{
    int64_t got = -12345;
    int rc = duration_parse(text, &got);
    if (rc != want_rc || got != -12345)
        fail_msg("duration_parse(\"%s\") = %d (ns %lld); want %d, ns untouched", text, rc,
                 (long long)got, want_rc);
}

static void test_reference_examples(void **state)
{
    (void)state;
    expect_ok("300ms", 300 * MS);
    expect_ok("3s", 3 * SEC);
    expect_ok("5m", 5 * MIN);
    expect_ok("1h30m", HOUR + 30 * MIN);
    expect_ok("1.5s", SEC + 500 * MS);
    expect_ok("2h45m30.5s", 2 * HOUR + 45 * MIN + 30 * SEC + 500 * MS);
    expect_ok("0", 0);
}

static void test_units(void **state)
{
    (void)state;
    expect_ok("7ns", 7 * NS);
    expect_ok("100us", 100 * US);
    expect_ok("100\xc2\xb5s", 100 * US); /* U+00B5 micro sign, as Go prints it */
    expect_ok("100\xce\xbcs", 100 * US); /* U+03BC greek small mu */
    expect_ok("1ms", MS);
    expect_ok("1s", SEC);
    expect_ok("1m", MIN);
    expect_ok("1h", HOUR);
    expect_ok("1h1m1s1ms1us1ns", HOUR + MIN + SEC + MS + US + NS);
    /* Go allows units in any order and repeated. */
    expect_ok("1s1h", HOUR + SEC);
    expect_ok("1h1h", 2 * HOUR);
    expect_ok("10m0s", 10 * MIN);
}

static void test_zero_forms(void **state)
{
    (void)state;
    expect_ok("0s", 0);
    expect_ok("0ms", 0);
    expect_ok("0.0s", 0);
    expect_ok("000s", 0);
    expect_ok("0h0m0s", 0);
}

static void test_fractions(void **state)
{
    (void)state;
    expect_ok("1.s", SEC);      /* Go accepts a trailing dot */
    expect_ok(".5s", 500 * MS); /* and a missing integer part */
    expect_ok("0.1s", 100 * MS);
    expect_ok("0.3s", 300 * MS);
    expect_ok("1.1ms", MS + 100 * US);
    expect_ok("1.5h", HOUR + 30 * MIN);
    expect_ok("0.5m", 30 * SEC);
    expect_ok("1.000000001s", SEC + 1);
    expect_ok("1.0000000001s", SEC); /* below 1ns: truncated, as Go does */
    expect_ok("1.9ns", 1);
    expect_ok("0.000000000000000000000000000001s", 0);
    expect_ok("2562047h47m16.854775807s", INT64_MAX);
    expect_ok("16.854775807s", 16 * SEC + 854775807);
}

/* Every "0.DDDs" and "0.DDDDDDDDDs" must be exact, not off by one from float rounding. */
static void test_fractions_exact(void **state)
{
    (void)state;
    char buf[64];
    for (int i = 0; i < 1000; i++) {
        snprintf(buf, sizeof buf, "0.%03ds", i);
        expect_ok(buf, i * MS);
        snprintf(buf, sizeof buf, "%d.%03dms", i, i);
        expect_ok(buf, i * MS + i * US);
    }
    static const int64_t nines[] = {999999999, 123456789, 987654321, 100000001,
                                    854775807, 555555555, 999999998, 1};
    for (size_t i = 0; i < sizeof nines / sizeof nines[0]; i++) {
        snprintf(buf, sizeof buf, "7.%09llds", (long long)nines[i]);
        expect_ok(buf, 7 * SEC + nines[i]);
    }
}

static void test_syntax_errors(void **state)
{
    (void)state;
    expect_err(NULL, -EINVAL);
    expect_err("", -EINVAL);
    expect_err("5", -EINVAL);   /* missing unit */
    expect_err("1.5", -EINVAL); /* missing unit */
    expect_err("s", -EINVAL);   /* missing number */
    expect_err("ms", -EINVAL);
    expect_err(".", -EINVAL);
    expect_err(".s", -EINVAL);
    expect_err("-1s", -EINVAL); /* no sign: negative timeouts make no sense */
    expect_err("+1s", -EINVAL);
    expect_err("1x", -EINVAL);
    expect_err("1d", -EINVAL);
    expect_err("1S", -EINVAL); /* units are case-sensitive in Go */
    expect_err("1H", -EINVAL);
    expect_err("1 s", -EINVAL);
    expect_err(" 1s", -EINVAL);
    expect_err("1s ", -EINVAL);
    expect_err("1s5", -EINVAL);
    expect_err("1sm", -EINVAL);
    expect_err("1.5.5s", -EINVAL);
    expect_err("1h-5m", -EINVAL);
    expect_err("1e3s", -EINVAL);
    expect_err("0x10s", -EINVAL);
    expect_err("\xc2s", -EINVAL); /* half a micro sign */
    expect_err("1\xc2", -EINVAL); /* truncated multibyte unit */
    expect_err("00", -EINVAL);    /* only exactly "0" may omit the unit */
}

static void test_overflow(void **state)
{
    (void)state;
    expect_ok("9223372036854775807ns", INT64_MAX);
    expect_err("9223372036854775808ns", -ERANGE);
    expect_err("99999999999999999999999999ns", -ERANGE);
    /* Would wrap a 64-bit accumulator to exactly 4 if only checked against 2^62. */
    expect_err("18446744073709551620ns", -ERANGE);
    expect_err("36893488147419103236ns", -ERANGE);
    expect_ok("2562047h", 2562047 * HOUR);
    expect_err("2562048h", -ERANGE);
    /* The whole part fits, the fraction pushes it over INT64_MAX. */
    expect_err("2562047.9h", -ERANGE);
    expect_err("2562047h47m16.854775808s", -ERANGE);
    expect_err("9223372036854775807ns1ns", -ERANGE);
    expect_err("5124095576030431h", -ERANGE);
    expect_err("153722867280912931m", -ERANGE);
}

static void expect_fmt(int64_t ns, const char *want)
{
    char buf[64];
    memset(buf, 'Z', sizeof buf);
    duration_format(ns, buf, sizeof buf);
    if (strcmp(buf, want) != 0)
        fail_msg("duration_format(%lld) = \"%s\", want \"%s\"", (long long)ns, buf, want);
}

static void test_format(void **state)
{
    (void)state;
    /* Expected strings are what Go's time.Duration.String prints. */
    expect_fmt(0, "0s");
    expect_fmt(1, "1ns");
    expect_fmt(999, "999ns");
    expect_fmt(1500, "1.5\xc2\xb5s");
    expect_fmt(100 * US, "100\xc2\xb5s");
    expect_fmt(1500 * US, "1.5ms");
    expect_fmt(300 * MS, "300ms");
    expect_fmt(SEC, "1s");
    expect_fmt(SEC + 500 * MS, "1.5s");
    expect_fmt(1234567890, "1.23456789s");
    expect_fmt(SEC + 1, "1.000000001s");
    expect_fmt(90 * SEC, "1m30s");
    expect_fmt(5 * MIN, "5m0s");
    expect_fmt(HOUR, "1h0m0s");
    expect_fmt(HOUR + 30 * MIN, "1h30m0s");
    expect_fmt(2 * HOUR + 45 * MIN + 30 * SEC + 500 * MS, "2h45m30.5s");
    expect_fmt(INT64_MAX, "2562047h47m16.854775807s");
    expect_fmt(-SEC, "-1s");
    expect_fmt(-1500 * US, "-1.5ms");
    expect_fmt(INT64_MIN, "-2562047h47m16.854775808s");
}

static void test_format_roundtrip(void **state)
{
    (void)state;
    static const int64_t values[] = {1,        999,  1000,     1001,      MS,      MS + 1,
                                     SEC - 1,  SEC,  SEC + 1,  59 * SEC,  MIN - 1, MIN,
                                     HOUR - 1, HOUR, HOUR + 1, INT64_MAX, 5 * MIN, 123456789012345};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        char buf[64];
        duration_format(values[i], buf, sizeof buf);
        expect_ok(buf, values[i]);
    }
}

static void test_format_small_buffer(void **state)
{
    (void)state;
    char buf[4];
    memset(buf, 'Z', sizeof buf);
    duration_format(2 * HOUR + 45 * MIN, buf, sizeof buf);
    assert_string_equal(buf, "2h4");
    char one[1] = {'Z'};
    duration_format(SEC, one, sizeof one);
    assert_int_equal(one[0], '\0');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_examples), cmocka_unit_test(test_units),
        cmocka_unit_test(test_zero_forms),         cmocka_unit_test(test_fractions),
        cmocka_unit_test(test_fractions_exact),    cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_overflow),           cmocka_unit_test(test_format),
        cmocka_unit_test(test_format_roundtrip),   cmocka_unit_test(test_format_small_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
