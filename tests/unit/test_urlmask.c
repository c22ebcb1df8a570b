/*
 * Unit tests for src/common/urlmask.c: the password of a broker or database
 * URL never survives urlmask_password, whatever the URL looks like.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "urlmask.h"

#include <string.h>

#define SECRET "s3cr3t-Pw"

static void mask_is(const char *url, const char *want)
{
    char buf[512];
    urlmask_password(url, buf, sizeof buf);
    if (strcmp(buf, want) != 0)
        fail_msg("urlmask_password(%s) = %s, want %s", url, buf, want);
}

static void test_mask_url(void **state)
{
    (void)state;
    mask_is("amqp://user:pass@host:5672/vh", "amqp://user:***@host:5672/vh");
    mask_is("amqp://guest:guest@localhost:5672/", "amqp://guest:***@localhost:5672/");
    mask_is("amqps://u:" SECRET "@broker.example.com:5671/%2f",
            "amqps://u:***@broker.example.com:5671/%2f");
    /* No password, no userinfo: unchanged. */
    mask_is("amqp://host:5672/vh", "amqp://host:5672/vh");
    mask_is("amqp://user@host:5672/vh", "amqp://user@host:5672/vh");
    mask_is("amqp://localhost", "amqp://localhost");
    mask_is("amqp://", "amqp://");
    mask_is("", "");
    /* A password holding '@' (not escaped) is masked to the last '@'. */
    mask_is("amqp://user:p@ss@host:5672/vh", "amqp://user:***@host:5672/vh");
    mask_is("amqp://user:a@b@c@host/", "amqp://user:***@host/");
    /* Escaped characters and empty parts. */
    mask_is("amqp://user:p%40ss@host/", "amqp://user:***@host/");
    mask_is("amqp://:pw@host/", "amqp://:***@host/");
    /* With userinfo, an '@' in the vhost or query stays visible. */
    mask_is("amqp://u:pw@host/vh?x=a@b", "amqp://u:***@host/vh?x=a@b");
    /* An unescaped '/', '?' or '#' in the password cuts the authority short:
     * still masked, up to the last '@'. */
    mask_is("amqp://user:pa/ss@host:5672/vh", "amqp://user:***@host:5672/vh");
    mask_is("amqp://user:pa?ss@host/", "amqp://user:***@host/");
    mask_is("amqp://user:pa#ss@host/", "amqp://user:***@host/");
    mask_is("amqp:/user:pw@rabbit/", "amqp:***@rabbit/");
    /* The price: with no userinfo, a ':' and an '@' in the vhost over-mask. */
    mask_is("amqp://host:5672/v@h", "amqp://host:***@h");
    mask_is("amqp://host/v@h", "amqp://host/v@h");
    /* Without a scheme, still masked. */
    mask_is("user:pw@host", "user:***@host");
}

static void test_mask_url_small_buffer(void **state)
{
    (void)state;
    char buf[16];
    memset(buf, 'X', sizeof buf);
    urlmask_password("amqp://user:" SECRET "@host:5672/vh", buf, sizeof buf);
    assert_int_equal(strlen(buf), sizeof buf - 1);
    assert_string_equal(buf, "amqp://user:***");
    assert_null(strstr(buf, "s3c"));
    char one[1] = {'X'};
    urlmask_password("amqp://user:" SECRET "@host/", one, sizeof one);
    assert_int_equal(one[0], '\0');
}

static void test_mask_postgres_url(void **state)
{
    (void)state;
    mask_is("postgres://asya:" SECRET "@db:5432/asya?sslmode=disable",
            "postgres://asya:***@db:5432/asya?sslmode=disable");
    mask_is("postgresql://asya@db/asya", "postgresql://asya@db/asya");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mask_url),
        cmocka_unit_test(test_mask_url_small_buffer),
        cmocka_unit_test(test_mask_postgres_url),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
