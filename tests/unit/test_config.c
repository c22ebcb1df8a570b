/*
 * Unit tests for src/sidecar/config.c: sidecar_config_load from the
 * environment (DESIGN.md's configuration table).
 * Every test starts and ends with no ASYA_* variable set.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "config.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

#define SECRET   "s3cr3t-Pw"
#define GOOD_URL "amqp://user:" SECRET "@rabbit:5672/vh"

/* ---- helpers -------------------------------------------------------------- */

static void clear_asya_env(void)
{
    /* Collect first: unsetenv changes environ under our feet. */
    char *names[512];
    size_t n = 0;
    for (char **e = environ; *e && n < sizeof names / sizeof names[0]; e++) {
        if (strncmp(*e, "ASYA_", 5) != 0)
            continue;
        const char *eq = strchr(*e, '=');
        size_t len = eq ? (size_t)(eq - *e) : strlen(*e);
        names[n] = strndup(*e, len);
        assert_non_null(names[n]);
        n++;
    }
    for (size_t i = 0; i < n; i++) {
        unsetenv(names[i]);
        free(names[i]);
    }
    for (char **e = environ; *e; e++)
        assert_true(strncmp(*e, "ASYA_", 5) != 0);
}

static int setup(void **state)
{
    (void)state;
    clear_asya_env();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    clear_asya_env();
    return 0;
}

static void set(const char *name, const char *value)
{
    assert_int_equal(setenv(name, value, 1), 0);
}

/* Load and expect success. */
static void load_ok(struct sidecar_config *cfg)
{
    char err[512] = "";
    int rc = sidecar_config_load(cfg, err, sizeof err);
    if (rc != 0)
        fail_msg("sidecar_config_load failed (%d): %s", rc, err);
}

/* Load and expect -EINVAL with a one-line error naming var, without the password. */
static void load_bad(const char *var)
{
    struct sidecar_config cfg;
    char err[512] = "";
    int rc = sidecar_config_load(&cfg, err, sizeof err);
    if (rc != -EINVAL)
        fail_msg("%s=%s: want -EINVAL, got %d", var, getenv(var) ? getenv(var) : "(unset)", rc);
    if (!strstr(err, var))
        fail_msg("error \"%s\" does not name %s", err, var);
    if (strstr(err, SECRET))
        fail_msg("error \"%s\" shows the password", err);
    assert_null(strchr(err, '\n'));
}

/* ---- defaults ------------------------------------------------------------- */

static void test_defaults(void **state)
{
    (void)state;
    set("ASYA_ACTOR_NAME", "doubler");
    struct sidecar_config cfg;
    load_ok(&cfg);
    assert_string_equal(cfg.actor_name, "doubler");
    assert_string_equal(cfg.queue_name, "doubler");
    assert_string_equal(cfg.queue_prefix, "");
    assert_string_equal(cfg.amqp_url, "amqp://guest:guest@localhost:5672/");
    assert_string_equal(cfg.exchange, "asya");
    /* Unset prefetch is the sidecar's choice (room for pipelined confirms),
     * never below concurrency. */
    assert_true(cfg.prefetch >= 1);
    assert_string_equal(cfg.socket_path, "/tmp/sockets/app.sock");
    assert_int_equal(cfg.runtime_timeout_ns, INT64_C(300) * 1000000000);
    assert_string_equal(cfg.happy_end, "happy-end");
    assert_string_equal(cfg.error_end, "error-end");
    assert_false(cfg.is_end_actor);
    assert_int_equal(cfg.concurrency, 1);
    assert_int_equal(cfg.retry_max_attempts, 10);
    assert_int_equal(cfg.retry_backoff_ns, INT64_C(1000000000));
    assert_true(cfg.shutdown_timeout_ns > 0);
    assert_int_equal(cfg.max_message_bytes, 64L * 1024 * 1024);
    assert_true(cfg.max_delivery_attempts >= 1);
    assert_false(cfg.quorum);
    assert_true(cfg.metrics_enabled);
    assert_string_equal(cfg.metrics_addr, ":8080");
    assert_non_null(cfg.metrics_namespace);
    assert_null(cfg.cacert);
    assert_true(cfg.tls_verify);
    assert_int_equal(cfg.log_level, LOG_LVL_INFO);
    assert_false(cfg.log_json);
}

static void test_empty_values_mean_default(void **state)
{
    (void)state;
    set("ASYA_ACTOR_NAME", "doubler");
    static const char *const vars[] = {
        "ASYA_RABBITMQ_URL",
        "ASYA_RABBITMQ_EXCHANGE",
        "ASYA_RABBITMQ_PREFETCH",
        "ASYA_SOCKET_PATH",
        "ASYA_RUNTIME_TIMEOUT",
        "ASYA_STEP_HAPPY_END",
        "ASYA_STEP_ERROR_END",
        "ASYA_IS_END_ACTOR",
        "ASYA_IS_TERMINAL",
        "ASYA_METRICS_ENABLED",
        "ASYA_METRICS_ADDR",
        "ASYA_CONCURRENCY",
        "ASYA_QUEUE_RETRY_MAX_ATTEMPTS",
        "ASYA_QUEUE_RETRY_BACKOFF",
        "ASYA_MAX_MESSAGE_BYTES",
        "ASYA_LOG_LEVEL",
        "ASYA_LOG_FORMAT",
        "ASYA_QUEUE_TYPE",
        "ASYA_QUEUE_PREFIX",
        "ASYA_QUEUE_NAME",
    };
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        set(vars[i], "");
    struct sidecar_config cfg;
    load_ok(&cfg);
    assert_string_equal(cfg.queue_name, "doubler");
    assert_string_equal(cfg.amqp_url, "amqp://guest:guest@localhost:5672/");
    assert_string_equal(cfg.exchange, "asya");
    assert_int_equal(cfg.runtime_timeout_ns, INT64_C(300) * 1000000000);
    assert_int_equal(cfg.concurrency, 1);
    assert_true(cfg.prefetch >= 1);
    assert_true(cfg.metrics_enabled);
    assert_false(cfg.is_end_actor);
    assert_int_equal(cfg.max_message_bytes, 64L * 1024 * 1024);
}

static void test_values_read(void **state)
{
    (void)state;
    set("ASYA_ACTOR_NAME", "doubler");
    set("ASYA_RABBITMQ_URL", "amqps://user:" SECRET "@broker.example.com:5671/prod");
    set("ASYA_RABBITMQ_EXCHANGE", "ex2");
    set("ASYA_SOCKET_PATH", "/run/asya/rt.sock");
    set("ASYA_RUNTIME_TIMEOUT", "1h30m");
    set("ASYA_STEP_HAPPY_END", "done");
    set("ASYA_STEP_ERROR_END", "dead");
    set("ASYA_IS_END_ACTOR", "TRUE");
    set("ASYA_METRICS_ENABLED", "false");
    set("ASYA_METRICS_ADDR", "127.0.0.1:9100");
    set("ASYA_CONCURRENCY", "4");
    set("ASYA_QUEUE_RETRY_MAX_ATTEMPTS", "3");
    set("ASYA_QUEUE_RETRY_BACKOFF", "250ms");
    set("ASYA_SHUTDOWN_TIMEOUT", "5s");
    set("ASYA_MAX_MESSAGE_BYTES", "1048576");
    set("ASYA_QUEUE_TYPE", "quorum");
    set("ASYA_LOG_LEVEL", "debug");
    set("ASYA_LOG_FORMAT", "json");
    set("ASYA_RABBITMQ_CACERT", "/etc/ca.pem");
    set("ASYA_RABBITMQ_TLS_VERIFY", "no");
    struct sidecar_config cfg;
    load_ok(&cfg);
    assert_string_equal(cfg.amqp_url, "amqps://user:" SECRET "@broker.example.com:5671/prod");
    assert_string_equal(cfg.exchange, "ex2");
    assert_string_equal(cfg.socket_path, "/run/asya/rt.sock");
    assert_int_equal(cfg.runtime_timeout_ns, INT64_C(5400) * 1000000000);
    assert_string_equal(cfg.happy_end, "done");
    assert_string_equal(cfg.error_end, "dead");
    assert_true(cfg.is_end_actor);
    assert_false(cfg.metrics_enabled);
    assert_string_equal(cfg.metrics_addr, "127.0.0.1:9100");
    assert_int_equal(cfg.concurrency, 4);
    assert_true(cfg.prefetch >= 4);
    assert_int_equal(cfg.retry_max_attempts, 3);
    assert_int_equal(cfg.retry_backoff_ns, INT64_C(250000000));
    assert_int_equal(cfg.shutdown_timeout_ns, INT64_C(5000000000));
    assert_int_equal(cfg.max_message_bytes, 1048576);
    assert_true(cfg.quorum);
    assert_int_equal(cfg.log_level, LOG_LVL_DEBUG);
    assert_true(cfg.log_json);
    assert_string_equal(cfg.cacert, "/etc/ca.pem");
    assert_false(cfg.tls_verify);

    set("ASYA_RUNTIME_TIMEOUT", "300ms");
    set("ASYA_LOG_LEVEL", "WARNING");
    set("ASYA_QUEUE_TYPE", "classic");
    set("ASYA_LOG_FORMAT", "text");
    load_ok(&cfg);
    assert_int_equal(cfg.runtime_timeout_ns, INT64_C(300000000));
    assert_int_equal(cfg.log_level, LOG_LVL_WARNING);
    assert_false(cfg.quorum);
    assert_false(cfg.log_json);
}

/* ---- names ---------------------------------------------------------------- */

static void test_queue_and_actor_names(void **state)
{
    (void)state;
    struct sidecar_config cfg;

    /* ASYA_QUEUE_NAME alone: the actor is the queue name. */
    set("ASYA_QUEUE_NAME", "test-echo-queue");
    load_ok(&cfg);
    assert_string_equal(cfg.queue_name, "test-echo-queue");
    assert_string_equal(cfg.actor_name, "test-echo-queue");

    /* ...with a prefix it starts with: the actor is the rest. */
    set("ASYA_QUEUE_PREFIX", "asya-");
    set("ASYA_QUEUE_NAME", "asya-doubler");
    load_ok(&cfg);
    assert_string_equal(cfg.queue_name, "asya-doubler");
    assert_string_equal(cfg.actor_name, "doubler");
    assert_string_equal(cfg.queue_prefix, "asya-");

    /* ...and a prefix it does not start with is not stripped nor added. */
    set("ASYA_QUEUE_NAME", "other");
    load_ok(&cfg);
    assert_string_equal(cfg.queue_name, "other");
    assert_string_equal(cfg.actor_name, "other");

    /* ASYA_ACTOR_NAME alone: queue = prefix + actor. */
    unsetenv("ASYA_QUEUE_NAME");
    set("ASYA_ACTOR_NAME", "doubler");
    load_ok(&cfg);
    assert_string_equal(cfg.queue_name, "asya-doubler");
    assert_string_equal(cfg.actor_name, "doubler");
    unsetenv("ASYA_QUEUE_PREFIX");
    load_ok(&cfg);
    assert_string_equal(cfg.queue_name, "doubler");
    assert_string_equal(cfg.actor_name, "doubler");

    /* Both: each is taken as given. */
    set("ASYA_QUEUE_NAME", "q-explicit");
    load_ok(&cfg);
    assert_string_equal(cfg.queue_name, "q-explicit");
    assert_string_equal(cfg.actor_name, "doubler");
}

static void test_missing_name(void **state)
{
    (void)state;
    load_bad("ASYA_ACTOR_NAME");
    set("ASYA_RABBITMQ_URL", GOOD_URL);
    load_bad("ASYA_ACTOR_NAME");
    set("ASYA_ACTOR_NAME", "");
    set("ASYA_QUEUE_NAME", "");
    load_bad("ASYA_ACTOR_NAME");
    /* Only a prefix is not a name. */
    set("ASYA_QUEUE_PREFIX", "asya-");
    load_bad("ASYA_ACTOR_NAME");
}

static void test_overlong_queue_name(void **state)
{
    (void)state;
    /* AMQP queue names are at most 255 bytes: a longer one must not be
     * silently truncated into the name of some other queue. */
    char name[300];
    memset(name, 'q', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    set("ASYA_QUEUE_NAME", name);
    load_bad("ASYA_QUEUE_NAME");
    unsetenv("ASYA_QUEUE_NAME");

    name[250] = '\0';
    set("ASYA_ACTOR_NAME", name);
    set("ASYA_QUEUE_PREFIX", "prefix-");
    load_bad("ASYA_QUEUE_PREFIX");

    /* 255 bytes exactly is fine. */
    name[248] = '\0';
    set("ASYA_ACTOR_NAME", name);
    struct sidecar_config cfg;
    load_ok(&cfg);
    assert_int_equal(strlen(cfg.queue_name), 255);
    assert_memory_equal(cfg.queue_name, "prefix-", 7);
}

/* ---- booleans and aliases ------------------------------------------------- */

static void test_is_terminal_alias(void **state)
{
    (void)state;
    set("ASYA_ACTOR_NAME", "end");
    struct sidecar_config cfg;
    set("ASYA_IS_TERMINAL", "true");
    load_ok(&cfg);
    assert_true(cfg.is_end_actor);
    set("ASYA_IS_TERMINAL", "0");
    load_ok(&cfg);
    assert_false(cfg.is_end_actor);
    /* The primary spelling wins over the alias. */
    set("ASYA_IS_END_ACTOR", "false");
    set("ASYA_IS_TERMINAL", "true");
    load_ok(&cfg);
    assert_false(cfg.is_end_actor);
    set("ASYA_IS_END_ACTOR", "yes");
    set("ASYA_IS_TERMINAL", "no");
    load_ok(&cfg);
    assert_true(cfg.is_end_actor);
    /* A bad alias value is named as the alias. */
    unsetenv("ASYA_IS_END_ACTOR");
    set("ASYA_IS_TERMINAL", "maybe");
    load_bad("ASYA_IS_TERMINAL");
}

static void test_bool_spellings(void **state)
{
    (void)state;
    set("ASYA_ACTOR_NAME", "a");
    static const struct {
        const char *text;
        bool value;
    } cases[] = {{"true", true},   {"True", true},   {"1", true},  {"yes", true}, {"on", true},
                 {"false", false}, {"FALSE", false}, {"0", false}, {"no", false}, {"off", false}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sidecar_config cfg;
        set("ASYA_METRICS_ENABLED", cases[i].text);
        load_ok(&cfg);
        if (cfg.metrics_enabled != cases[i].value)
            fail_msg("ASYA_METRICS_ENABLED=%s read as %d", cases[i].text, cfg.metrics_enabled);
    }
}

/* ---- prefetch ------------------------------------------------------------- */

static void test_prefetch_raised_to_concurrency(void **state)
{
    (void)state;
    set("ASYA_ACTOR_NAME", "a");
    struct sidecar_config cfg;
    set("ASYA_CONCURRENCY", "8");
    load_ok(&cfg);
    assert_int_equal(cfg.concurrency, 8);
    assert_true(cfg.prefetch >= 8);
    set("ASYA_CONCURRENCY", "300");
    load_ok(&cfg);
    assert_true(cfg.prefetch >= 300);
    /* An explicit prefetch below concurrency is raised to it. */
    set("ASYA_CONCURRENCY", "8");
    set("ASYA_RABBITMQ_PREFETCH", "1");
    load_ok(&cfg);
    assert_int_equal(cfg.prefetch, 8);
    set("ASYA_RABBITMQ_PREFETCH", "2");
    load_ok(&cfg);
    assert_int_equal(cfg.prefetch, 8);
    set("ASYA_RABBITMQ_PREFETCH", "20");
    load_ok(&cfg);
    assert_int_equal(cfg.prefetch, 20);
    assert_int_equal(cfg.concurrency, 8);
    unsetenv("ASYA_CONCURRENCY");
    set("ASYA_RABBITMQ_PREFETCH", "5");
    load_ok(&cfg);
    assert_int_equal(cfg.concurrency, 1);
    assert_int_equal(cfg.prefetch, 5);
}

/* ---- bad values ----------------------------------------------------------- */

static void test_bad_values(void **state)
{
    (void)state;
    static const struct {
        const char *var;
        const char *value;
    } cases[] = {
        {"ASYA_RUNTIME_TIMEOUT", "soon"},
        {"ASYA_RUNTIME_TIMEOUT", "5"},
        {"ASYA_RUNTIME_TIMEOUT", "5 m"},
        {"ASYA_RUNTIME_TIMEOUT", "-5s"},
        {"ASYA_RUNTIME_TIMEOUT", "5x"},
        {"ASYA_RUNTIME_TIMEOUT", "0"},
        {"ASYA_RUNTIME_TIMEOUT", "10us"},
        {"ASYA_RUNTIME_TIMEOUT", "999999999h"},
        {"ASYA_QUEUE_RETRY_BACKOFF", "1 second"},
        {"ASYA_QUEUE_RETRY_BACKOFF", "0s"},
        {"ASYA_SHUTDOWN_TIMEOUT", "forever"},
        {"ASYA_IS_END_ACTOR", "maybe"},
        {"ASYA_IS_END_ACTOR", "2"},
        {"ASYA_METRICS_ENABLED", "enabled"},
        {"ASYA_RABBITMQ_TLS_VERIFY", "sure"},
        {"ASYA_CONCURRENCY", "abc"},
        {"ASYA_CONCURRENCY", "4x"},
        {"ASYA_CONCURRENCY", "4 "},
        {"ASYA_CONCURRENCY", "1.5"},
        {"ASYA_CONCURRENCY", "0"},
        {"ASYA_CONCURRENCY", "-1"},
        {"ASYA_CONCURRENCY", "4097"},
        {"ASYA_CONCURRENCY", "99999999999999999999999"},
        {"ASYA_RABBITMQ_PREFETCH", "0"},
        {"ASYA_RABBITMQ_PREFETCH", "many"},
        {"ASYA_RABBITMQ_PREFETCH", "65536"},
        {"ASYA_QUEUE_RETRY_MAX_ATTEMPTS", "ten"},
        {"ASYA_QUEUE_RETRY_MAX_ATTEMPTS", "0"},
        {"ASYA_MAX_MESSAGE_BYTES", "64MiB"},
        {"ASYA_MAX_MESSAGE_BYTES", "10"},
        {"ASYA_MAX_MESSAGE_BYTES", "-1"},
        {"ASYA_MAX_DELIVERY_ATTEMPTS", "0"},
        {"ASYA_RABBITMQ_URL", "http://user:" SECRET "@rabbit:5672/"},
        {"ASYA_RABBITMQ_URL", "redis://:" SECRET "@rabbit/"},
        {"ASYA_RABBITMQ_URL", "user:" SECRET "@rabbit:5672/"},
        {"ASYA_RABBITMQ_URL", "amqp:/user:" SECRET "@rabbit/"},
        {"ASYA_RABBITMQ_URL", "amqpx://user:" SECRET "@rabbit/"},
        {"ASYA_RABBITMQ_URL", "http://user:p@ss" SECRET "@rabbit/"},
        {"ASYA_QUEUE_TYPE", "stream"},
        {"ASYA_QUEUE_TYPE", "Quorum "},
        {"ASYA_LOG_LEVEL", "LOUD"},
        {"ASYA_LOG_LEVEL", "5"},
        {"ASYA_LOG_FORMAT", "xml"},
        {"ASYA_LOG_FORMAT", "JSONL"},
        {"ASYA_GATEWAY_URL", "gateway:8080"},
        {"ASYA_GATEWAY_URL", "ftp://user:" SECRET "@gateway/"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        clear_asya_env();
        set("ASYA_ACTOR_NAME", "doubler");
        set("ASYA_RABBITMQ_URL", GOOD_URL);
        set(cases[i].var, cases[i].value);
        load_bad(cases[i].var);
    }
}

static void test_gateway_url(void **state)
{
    (void)state;
    struct sidecar_config cfg;
    set("ASYA_ACTOR_NAME", "doubler");
    load_ok(&cfg);
    assert_null(cfg.gateway_url); /* unset: no reports */
    set("ASYA_GATEWAY_URL", "");
    load_ok(&cfg);
    assert_null(cfg.gateway_url);
    set("ASYA_GATEWAY_URL", "http://asya-gateway:8080/");
    load_ok(&cfg);
    assert_string_equal(cfg.gateway_url, "http://asya-gateway:8080/");
    set("ASYA_GATEWAY_URL", "https://gw.example.com");
    load_ok(&cfg);
    assert_string_equal(cfg.gateway_url, "https://gw.example.com");
}

static void test_small_error_buffer(void **state)
{
    (void)state;
    set("ASYA_ACTOR_NAME", "doubler");
    set("ASYA_CONCURRENCY", "not-a-number-at-all-really");
    struct sidecar_config cfg;
    char err[8];
    memset(err, 'X', sizeof err);
    assert_int_equal(sidecar_config_load(&cfg, err, sizeof err), -EINVAL);
    assert_int_equal(strlen(err), sizeof err - 1);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_defaults),
        T(test_gateway_url),
        T(test_empty_values_mean_default),
        T(test_values_read),
        T(test_queue_and_actor_names),
        T(test_missing_name),
        T(test_overlong_queue_name),
        T(test_is_terminal_alias),
        T(test_bool_spellings),
        T(test_prefetch_raised_to_concurrency),
        T(test_bad_values),
        T(test_small_error_buffer),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
