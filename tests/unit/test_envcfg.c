/* Unit tests for src/common/envcfg.c: configuration from the environment. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "envcfg.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ERRLEN 256
#define SEC    INT64_C(1000000000)

static const char *const vars[] = {"ASYA_T_A", "ASYA_T_B", "ASYA_T_N", "ASYA_T_D", "ASYA_T_M"};

/* Every test starts and ends with none of its variables set. */
static int clear_env(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]);
    return 0;
}

static void set(const char *name, const char *value)
{
    assert_int_equal(setenv(name, value, 1), 0);
}

/* ---- strings and aliases ----------------------------------------------- */

static void test_str(void **state)
{
    (void)state;
    const char *used = NULL;
    assert_string_equal(envcfg_str("ASYA_T_A", "ASYA_T_B", "def", &used), "def");
    assert_string_equal(used, "ASYA_T_A"); /* default: reported under the main name */
    assert_null(envcfg_str("ASYA_T_A", NULL, NULL, &used));
    assert_null(envcfg_str("ASYA_T_A", NULL, NULL, NULL));

    set("ASYA_T_B", "from-b");
    assert_string_equal(envcfg_str("ASYA_T_A", "ASYA_T_B", "def", &used), "from-b");
    assert_string_equal(used, "ASYA_T_B");
    assert_string_equal(envcfg_str("ASYA_T_A", NULL, "def", &used), "def");

    /* The main name wins over the alias. */
    set("ASYA_T_A", "from-a");
    assert_string_equal(envcfg_str("ASYA_T_A", "ASYA_T_B", "def", &used), "from-a");
    assert_string_equal(used, "ASYA_T_A");

    /* Empty counts as unset, for both names. */
    set("ASYA_T_A", "");
    assert_string_equal(envcfg_str("ASYA_T_A", "ASYA_T_B", "def", &used), "from-b");
    assert_string_equal(used, "ASYA_T_B");
    set("ASYA_T_B", "");
    assert_string_equal(envcfg_str("ASYA_T_A", "ASYA_T_B", "def", &used), "def");
    assert_string_equal(used, "ASYA_T_A");

    /* Values are returned verbatim. */
    set("ASYA_T_A", " spaced value ");
    assert_string_equal(envcfg_str("ASYA_T_A", NULL, NULL, NULL), " spaced value ");
}

/* ---- booleans ------------------------------------------------------------ */

static void test_parse_bool(void **state)
{
    (void)state;
    static const char *const yes[] = {"true", "TRUE", "True", "1", "yes", "YES",
                                      "on",   "On",   "t",    "T", "y",   "Y"};
    static const char *const no[] = {"false", "FALSE", "False", "0", "no", "NO",
                                     "off",   "OFF",   "f",     "F", "n",  "N"};
    static const char *const bad[] = {"",    "2",    "-1",     "truee", " true", "true ",
                                      "yep", "nope", "enable", "10",    "00",    "of"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        bool b = false;
        assert_int_equal(envcfg_parse_bool(yes[i], &b), 0);
        assert_true(b);
    }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        bool b = true;
        assert_int_equal(envcfg_parse_bool(no[i], &b), 0);
        assert_false(b);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bool b = true;
        if (envcfg_parse_bool(bad[i], &b) != -EINVAL)
            fail_msg("envcfg_parse_bool(\"%s\") accepted", bad[i]);
        assert_true(b); /* untouched */
    }
}

static void test_bool(void **state)
{
    (void)state;
    char err[ERRLEN] = "";
    bool b = false;
    assert_int_equal(envcfg_bool("ASYA_T_A", "ASYA_T_B", true, &b, err, sizeof err), 0);
    assert_true(b);
    assert_int_equal(envcfg_bool("ASYA_T_A", "ASYA_T_B", false, &b, err, sizeof err), 0);
    assert_false(b);

    set("ASYA_T_A", "");
    assert_int_equal(envcfg_bool("ASYA_T_A", NULL, true, &b, err, sizeof err), 0);
    assert_true(b);

    set("ASYA_T_B", "yes"); /* the alias, as ASYA_IS_TERMINAL for ASYA_IS_END_ACTOR */
    assert_int_equal(envcfg_bool("ASYA_T_A", "ASYA_T_B", false, &b, err, sizeof err), 0);
    assert_true(b);

    set("ASYA_T_A", "off");
    assert_int_equal(envcfg_bool("ASYA_T_A", "ASYA_T_B", true, &b, err, sizeof err), 0);
    assert_false(b);

    set("ASYA_T_A", "maybe");
    assert_int_equal(envcfg_bool("ASYA_T_A", "ASYA_T_B", true, &b, err, sizeof err), -EINVAL);
    assert_string_equal(err, "ASYA_T_A=maybe: expected true or false");

    /* The message names the variable that was actually read. */
    unsetenv("ASYA_T_A");
    set("ASYA_T_B", "2");
    assert_int_equal(envcfg_bool("ASYA_T_A", "ASYA_T_B", true, &b, err, sizeof err), -EINVAL);
    assert_string_equal(err, "ASYA_T_B=2: expected true or false");
}

/* ---- integers ------------------------------------------------------------ */

static void expect_long_err(const char *value, long min, long max, const char *want)
{
    char err[ERRLEN] = "";
    long n = 777;
    set("ASYA_T_N", value);
    assert_int_equal(envcfg_long("ASYA_T_N", 5, min, max, &n, err, sizeof err), -EINVAL);
    if (strcmp(err, want) != 0)
        fail_msg("ASYA_T_N=\"%s\": \"%s\", want \"%s\"", value, err, want);
    assert_int_equal(n, 777);
}

static void expect_long(const char *value, long min, long max, long want)
{
    char err[ERRLEN] = "";
    long n = 777;
    set("ASYA_T_N", value);
    if (envcfg_long("ASYA_T_N", 5, min, max, &n, err, sizeof err) != 0 || n != want)
        fail_msg("ASYA_T_N=\"%s\": %ld (%s), want %ld", value, n, err, want);
}

static void test_long(void **state)
{
    (void)state;
    char err[ERRLEN] = "";
    long n = 0;
    assert_int_equal(envcfg_long("ASYA_T_N", 5, 1, 100, &n, err, sizeof err), 0);
    assert_int_equal(n, 5); /* unset: default, even without range checking */
    set("ASYA_T_N", "");
    n = 0;
    assert_int_equal(envcfg_long("ASYA_T_N", 5, 1, 100, &n, err, sizeof err), 0);
    assert_int_equal(n, 5);

    expect_long("1", 1, 100, 1);
    expect_long("100", 1, 100, 100);
    expect_long("42", 1, 100, 42);
    expect_long("007", 1, 100, 7); /* decimal, not octal */
    expect_long("-3", -5, 5, -3);
    expect_long("9223372036854775807", 0, 9223372036854775807L, 9223372036854775807L);

    expect_long_err("0", 1, 100, "ASYA_T_N=0: must be between 1 and 100");
    expect_long_err("101", 1, 100, "ASYA_T_N=101: must be between 1 and 100");
    expect_long_err("-1", 0, 10, "ASYA_T_N=-1: must be between 0 and 10");
    expect_long_err("abc", 1, 100, "ASYA_T_N=abc: expected an integer");
    expect_long_err("12abc", 1, 100, "ASYA_T_N=12abc: expected an integer");
    expect_long_err("1.5", 1, 100, "ASYA_T_N=1.5: expected an integer");
    expect_long_err("1e3", 1, 10000, "ASYA_T_N=1e3: expected an integer");
    expect_long_err("0x10", 1, 100, "ASYA_T_N=0x10: expected an integer");
    expect_long_err("5 ", 1, 100, "ASYA_T_N=5 : expected an integer");
    expect_long_err("-", 1, 100, "ASYA_T_N=-: expected an integer");
    /* Out of long's range is out of the variable's range, not "not an integer". */
    expect_long_err("99999999999999999999", 1, 100,
                    "ASYA_T_N=99999999999999999999: must be between 1 and 100");
    expect_long_err("-99999999999999999999", 1, 100,
                    "ASYA_T_N=-99999999999999999999: must be between 1 and 100");
}

/* ---- durations ----------------------------------------------------------- */

static void test_duration(void **state)
{
    (void)state;
    char err[ERRLEN] = "";
    int64_t ns = 0;
    assert_int_equal(envcfg_duration("ASYA_T_D", "5m", 0, &ns, err, sizeof err), 0);
    assert_int_equal(ns, 300 * SEC);

    set("ASYA_T_D", "");
    assert_int_equal(envcfg_duration("ASYA_T_D", "3s", 0, &ns, err, sizeof err), 0);
    assert_int_equal(ns, 3 * SEC);

    set("ASYA_T_D", "1h30m");
    assert_int_equal(envcfg_duration("ASYA_T_D", "5m", SEC, &ns, err, sizeof err), 0);
    assert_int_equal(ns, 5400 * SEC);

    set("ASYA_T_D", "300ms");
    assert_int_equal(envcfg_duration("ASYA_T_D", "5m", 300000000, &ns, err, sizeof err), 0);
    assert_int_equal(ns, 300000000);

    ns = 12345;
    set("ASYA_T_D", "5");
    assert_int_equal(envcfg_duration("ASYA_T_D", "5m", 0, &ns, err, sizeof err), -EINVAL);
    assert_string_equal(err, "ASYA_T_D=5: expected a duration such as 300ms, 3s, 5m or 1h30m");
    assert_int_equal(ns, 12345);

    set("ASYA_T_D", "soon");
    assert_int_equal(envcfg_duration("ASYA_T_D", "5m", 0, &ns, err, sizeof err), -EINVAL);
    assert_string_equal(err, "ASYA_T_D=soon: expected a duration such as 300ms, 3s, 5m or 1h30m");

    set("ASYA_T_D", "-1s");
    assert_int_equal(envcfg_duration("ASYA_T_D", "5m", 0, &ns, err, sizeof err), -EINVAL);
    assert_string_equal(err, "ASYA_T_D=-1s: expected a duration such as 300ms, 3s, 5m or 1h30m");

    set("ASYA_T_D", "99999999999h");
    assert_int_equal(envcfg_duration("ASYA_T_D", "5m", 0, &ns, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "ASYA_T_D=99999999999h: "));

    set("ASYA_T_D", "10ms");
    assert_int_equal(envcfg_duration("ASYA_T_D", "5m", SEC, &ns, err, sizeof err), -EINVAL);
    assert_string_equal(err, "ASYA_T_D=10ms: must be at least 1s");
    set("ASYA_T_D", "0");
    assert_int_equal(envcfg_duration("ASYA_T_D", "5m", 1500000, &ns, err, sizeof err), -EINVAL);
    assert_string_equal(err, "ASYA_T_D=0: must be at least 1.5ms");

    /* Required (no default) and unset: an error that names the variable. */
    unsetenv("ASYA_T_D");
    assert_int_equal(envcfg_duration("ASYA_T_D", NULL, 0, &ns, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "ASYA_T_D"));
}

/* ---- file modes ---------------------------------------------------------- */

static void test_parse_mode(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int mode;
    } ok[] = {
        {"0660", 0660}, {"660", 0660},     {"0o660", 0660}, {"0O660", 0660}, {"0600", 0600},
        {"0", 0},       {"7", 07},         {"777", 0777},   {"0777", 0777},  {"1777", 01777},
        {"0o0", 0},     {"0o7777", 07777}, {"", -1},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        int m = 12345;
        if (envcfg_parse_mode(ok[i].text, &m) != 0 || m != ok[i].mode)
            fail_msg("envcfg_parse_mode(\"%s\") -> %o, want %o", ok[i].text, m, ok[i].mode);
    }
    int m = 12345;
    assert_int_equal(envcfg_parse_mode(NULL, &m), 0);
    assert_int_equal(m, -1);

    static const char *const bad[] = {"89",   "8",     "0o",    "o660",  "0x1b6", "-660",
                                      "+660", " 0660", "0660 ", "rw-rw", "07777", "00660",
                                      "0o8",  "0o-1",  "6 6 0", "0o0o6", "66a",   "\xc2\xb5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        m = 12345;
        if (envcfg_parse_mode(bad[i], &m) != -EINVAL)
            fail_msg("envcfg_parse_mode(\"%s\") accepted (%o)", bad[i], m);
    }
}

static void test_mode(void **state)
{
    (void)state;
    char err[ERRLEN] = "";
    int m = 0;
    assert_int_equal(envcfg_mode("ASYA_T_M", "0660", &m, err, sizeof err), 0);
    assert_int_equal(m, 0660);
    assert_int_equal(envcfg_mode("ASYA_T_M", NULL, &m, err, sizeof err), 0);
    assert_int_equal(m, -1);

    set("ASYA_T_M", "0o600"); /* the reference's Python spelling */
    assert_int_equal(envcfg_mode("ASYA_T_M", "0660", &m, err, sizeof err), 0);
    assert_int_equal(m, 0600);
    set("ASYA_T_M", "640");
    assert_int_equal(envcfg_mode("ASYA_T_M", "0660", &m, err, sizeof err), 0);
    assert_int_equal(m, 0640);

    /* Set but empty: leave the mode as created, not the default. */
    set("ASYA_T_M", "");
    m = 0;
    assert_int_equal(envcfg_mode("ASYA_T_M", "0660", &m, err, sizeof err), 0);
    assert_int_equal(m, -1);

    set("ASYA_T_M", "89");
    assert_int_equal(envcfg_mode("ASYA_T_M", "0660", &m, err, sizeof err), -EINVAL);
    assert_string_equal(err, "ASYA_T_M=89: expected an octal mode such as 0660 or 0o660");
    set("ASYA_T_M", "rw-rw----");
    assert_int_equal(envcfg_mode("ASYA_T_M", "0660", &m, err, sizeof err), -EINVAL);
    assert_string_equal(err, "ASYA_T_M=rw-rw----: expected an octal mode such as 0660 or 0o660");

    /* A bad default is reported too. */
    unsetenv("ASYA_T_M");
    assert_int_equal(envcfg_mode("ASYA_T_M", "9", &m, err, sizeof err), -EINVAL);
    assert_string_equal(err, "ASYA_T_M=9: expected an octal mode such as 0660 or 0o660");
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, clear_env, clear_env)
    const struct CMUnitTest tests[] = {
        T(test_str),      T(test_parse_bool), T(test_bool), T(test_long),
        T(test_duration), T(test_parse_mode), T(test_mode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
