/* Unit tests for src/common/log.c: level parsing and the text / JSON line formats. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- capturing stderr ---------------------------------------------------- */

static int saved_stderr = -1;
static int cap_read = -1;

static void capture_start(void)
{
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    assert_int_equal(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
    /* Big enough for every line a test writes: the test never blocks. */
    fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
    saved_stderr = dup(STDERR_FILENO);
    assert_true(saved_stderr >= 0);
    assert_int_equal(dup2(p[1], STDERR_FILENO), STDERR_FILENO);
    close(p[1]);
    cap_read = p[0];
}

/* Restores stderr and returns everything written meanwhile (free it). */
static char *capture_end(size_t *len_out)
{
    assert_int_equal(dup2(saved_stderr, STDERR_FILENO), STDERR_FILENO);
    close(saved_stderr);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    assert_non_null(buf);
    for (;;) {
        if (len == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
            assert_non_null(buf);
        }
        ssize_t n = read(cap_read, buf + len, cap - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(cap_read);
    buf[len] = '\0';
    if (len_out)
        *len_out = len;
    return buf;
}

static int reset_log(void **state)
{
    (void)state;
    log_setup("asya-test", LOG_LVL_INFO, false);
    log_set_actor(NULL);
    return 0;
}

/* ---- levels -------------------------------------------------------------- */

static void test_level_parse(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        enum log_level level;
    } ok[] = {
        {"DEBUG", LOG_LVL_DEBUG},    {"debug", LOG_LVL_DEBUG},     {"Info", LOG_LVL_INFO},
        {"INFO", LOG_LVL_INFO},      {"WARNING", LOG_LVL_WARNING}, {"warn", LOG_LVL_WARNING},
        {"WARN", LOG_LVL_WARNING},   {"ERROR", LOG_LVL_ERROR},     {"error", LOG_LVL_ERROR},
        {"CRITICAL", LOG_LVL_ERROR}, {"critical", LOG_LVL_ERROR},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        enum log_level l = (enum log_level)99;
        assert_int_equal(log_level_parse(ok[i].text, &l), 0);
        assert_int_equal(l, ok[i].level);
    }
    static const char *const bad[] = {"",         "TRACE", "INFO ", " INFO", "INF",
                                      "WARNINGS", "1",     "fatal", "dbg"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        enum log_level l = (enum log_level)99;
        if (log_level_parse(bad[i], &l) != -EINVAL)
            fail_msg("log_level_parse(\"%s\") accepted", bad[i]);
        assert_int_equal(l, 99); /* untouched */
    }
    enum log_level l = (enum log_level)99;
    assert_int_equal(log_level_parse(NULL, &l), -EINVAL);
    assert_int_equal(l, 99);
}

static void test_enabled(void **state)
{
    (void)state;
    log_setup("t", LOG_LVL_WARNING, false);
    assert_false(log_enabled(LOG_LVL_DEBUG));
    assert_false(log_enabled(LOG_LVL_INFO));
    assert_true(log_enabled(LOG_LVL_WARNING));
    assert_true(log_enabled(LOG_LVL_ERROR));
    log_setup("t", LOG_LVL_DEBUG, false);
    assert_true(log_enabled(LOG_LVL_DEBUG));
    log_setup("t", LOG_LVL_ERROR, false);
    assert_false(log_enabled(LOG_LVL_WARNING));
    assert_true(log_enabled(LOG_LVL_ERROR));
}

static int side_effects;
static int bump(void)
{
    return ++side_effects;
}

static void test_filtering(void **state)
{
    (void)state;
    log_setup("asya-test", LOG_LVL_WARNING, false);
    capture_start();
    log_debug("debug %d", bump());
    log_info("info");
    log_info_id("m-1", "info with id");
    log_warn("warned");
    log_error_id("m-2", "failed");
    char *out = capture_end(NULL);
    assert_int_equal(side_effects, 0); /* log_debug does not format when disabled */
    assert_null(strstr(out, "info"));
    assert_null(strstr(out, "debug"));
    assert_non_null(strstr(out, "warned\n"));
    assert_non_null(strstr(out, "failed\n"));
    free(out);

    log_setup("asya-test", LOG_LVL_DEBUG, false);
    capture_start();
    log_debug_id("m-3", "debug %d", bump());
    out = capture_end(NULL);
    assert_int_equal(side_effects, 1);
    assert_non_null(strstr(out, " DEBUG "));
    assert_non_null(strstr(out, " id=m-3: debug 1\n"));
    free(out);
}

/* ---- text format ----------------------------------------------------------- */

/* Checks "YYYY-MM-DDTHH:MM:SS.mmmZ " at the start of line. */
static void assert_timestamp(const char *line)
{
    const char *pat = "dddd-dd-ddTdd:dd:dd.dddZ ";
    for (size_t i = 0; pat[i]; i++) {
        if (pat[i] == 'd' ? (line[i] < '0' || line[i] > '9') : line[i] != pat[i])
            fail_msg("bad timestamp at %zu in \"%.40s\"", i, line);
    }
}

static void test_text_format(void **state)
{
    (void)state;
    log_setup("asya-test", LOG_LVL_INFO, false);
    capture_start();
    errno = EPIPE;
    log_info("hello %s %d", "world", 42);
    assert_int_equal(errno, EPIPE); /* logging never clobbers errno */
    log_set_actor("echo");
    log_warn_id("m-1", "slow");
    log_set_actor(NULL);
    log_error("x");
    char *out = capture_end(NULL);

    char want[256];
    char *line1 = out;
    char *line2 = strchr(line1, '\n') + 1;
    char *line3 = strchr(line2, '\n') + 1;
    assert_string_equal(strchr(line3, '\n'), "\n"); /* exactly three lines */

    assert_timestamp(line1);
    snprintf(want, sizeof want, "INFO    asya-test[%ld]: hello world 42\n", (long)getpid());
    assert_memory_equal(line1 + 25, want, strlen(want));
    assert_timestamp(line2);
    snprintf(want, sizeof want, "WARNING asya-test[%ld] actor=echo id=m-1: slow\n", (long)getpid());
    assert_memory_equal(line2 + 25, want, strlen(want));
    snprintf(want, sizeof want, "ERROR   asya-test[%ld]: x\n", (long)getpid());
    assert_memory_equal(line3 + 25, want, strlen(want));
    free(out);
}

/* A message or id with newlines must not forge extra log lines. */
static void test_text_one_line(void **state)
{
    (void)state;
    log_setup("asya-test", LOG_LVL_INFO, false);
    capture_start();
    log_error_id("evil\nid", "line1\nFAKE 2020-01-01 ERROR\r\ttab\x01");
    char *out = capture_end(NULL);
    char *nl = strchr(out, '\n');
    assert_non_null(nl);
    assert_string_equal(nl, "\n");
    assert_non_null(strstr(out, " id=evil\\nid: line1\\nFAKE 2020-01-01 ERROR\\r\\ttab\\x01\n"));
    free(out);
}

static void test_text_long_line(void **state)
{
    (void)state;
    log_setup("asya-test", LOG_LVL_INFO, false);
    char *id = malloc(5000);
    memset(id, 'i', 4999);
    id[4999] = '\0';
    char *msg = malloc(3000);
    memset(msg, 'm', 2999);
    msg[2999] = '\0';
    capture_start();
    log_set_actor(msg); /* truncated to the actor buffer */
    log_info_id(id, "%s", msg);
    log_set_actor(NULL);
    log_info("after");
    size_t len;
    char *out = capture_end(&len);
    /* Two lines: the long one cut with its newline kept, then the next. */
    char *nl = strchr(out, '\n');
    assert_non_null(nl);
    assert_true((size_t)(nl - out) + 1 <= 4096);
    assert_non_null(strstr(nl + 1, "]: after\n"));
    assert_string_equal(strchr(nl + 1, '\n'), "\n");
    free(out);
    free(id);
    free(msg);
}

/* ---- JSON format ----------------------------------------------------------- */

/* Parses one JSON line (without its newline); returns the object. */
static json_t *parse_line(const char *line, size_t len)
{
    json_error_t e;
    json_t *v = json_loadb(line, len, 0, &e);
    if (!v)
        fail_msg("log line is not JSON (%s): %.300s", e.text, line);
    return v;
}

static void test_json_format(void **state)
{
    (void)state;
    log_setup("asya-runtime", LOG_LVL_DEBUG, true);
    const char *tricky =
        "quote \" backslash \\ nl \n tab \t ctl \x01\x1f unicode \xc3\xa9\xf0\x9f\x9a\x80 "
        "% percent";
    capture_start();
    log_info("plain");
    log_set_actor("act\"or");
    log_warn_id("id-\"1\"\n", "%s", tricky);
    char *out = capture_end(NULL);

    char *nl1 = strchr(out, '\n');
    assert_non_null(nl1);
    json_t *v = parse_line(out, (size_t)(nl1 - out));
    assert_string_equal(json_string_value(json_object_get(v, "level")), "INFO");
    assert_string_equal(json_string_value(json_object_get(v, "program")), "asya-runtime");
    assert_int_equal(json_integer_value(json_object_get(v, "pid")), getpid());
    assert_string_equal(json_string_value(json_object_get(v, "msg")), "plain");
    assert_null(json_object_get(v, "msg_id"));
    assert_null(json_object_get(v, "actor"));
    const char *t = json_string_value(json_object_get(v, "time"));
    assert_non_null(t);
    assert_int_equal(strlen(t), 24);
    assert_int_equal(t[23], 'Z');
    json_decref(v);

    char *nl2 = strchr(nl1 + 1, '\n');
    assert_non_null(nl2);
    assert_string_equal(nl2, "\n");
    v = parse_line(nl1 + 1, (size_t)(nl2 - nl1 - 1));
    assert_string_equal(json_string_value(json_object_get(v, "level")), "WARNING");
    assert_string_equal(json_string_value(json_object_get(v, "actor")), "act\"or");
    assert_string_equal(json_string_value(json_object_get(v, "msg_id")), "id-\"1\"\n");
    assert_string_equal(json_string_value(json_object_get(v, "msg")), tricky);
    /* Key order: time, level, program, pid, actor, msg_id, msg. */
    const char *keys[] = {"time", "level", "program", "pid", "actor", "msg_id", "msg"};
    size_t i = 0;
    const char *k;
    json_t *val;
    json_object_foreach(v, k, val)
    {
        assert_true(i < 7);
        assert_string_equal(k, keys[i]);
        i++;
    }
    assert_int_equal(i, 7);
    json_decref(v);
    free(out);
}

static void test_json_timestamp(void **state)
{
    (void)state;
    log_setup("p", LOG_LVL_INFO, true);
    capture_start();
    log_info("t");
    char *out = capture_end(NULL);
    json_t *v = parse_line(out, strlen(out) - 1);
    char ts[32];
    snprintf(ts, sizeof ts, "%s ", json_string_value(json_object_get(v, "time")));
    assert_timestamp(ts);
    json_decref(v);
    free(out);
}

/* Oversized ids and messages full of characters that expand when escaped:
 * the line is cut, but stays one valid JSON object within the buffer. */
static void test_json_long_fields(void **state)
{
    (void)state;
    static const size_t id_lens[] = {100, 2000, 3000, 4090, 5000, 20000};
    for (size_t k = 0; k < sizeof id_lens / sizeof id_lens[0]; k++) {
        size_t n = id_lens[k];
        char *id = malloc(n + 1);
        for (size_t i = 0; i < n; i++)
            id[i] = (i % 3 == 0) ? '\x01' : (i % 3 == 1) ? '"' : 'x';
        id[n] = '\0';
        char msg[2100];
        memset(msg, '\x02', sizeof msg - 1);
        msg[sizeof msg - 1] = '\0';

        log_setup("asya-test", LOG_LVL_INFO, true);
        log_set_actor("\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03"
                      "\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03");
        capture_start();
        log_error_id(id, "%s", msg);
        log_error_id(id, "short");
        size_t len;
        char *out = capture_end(&len);
        char *nl = strchr(out, '\n');
        assert_non_null(nl);
        assert_true((size_t)(nl - out) + 1 <= 4096);
        json_t *v = parse_line(out, (size_t)(nl - out));
        assert_non_null(json_object_get(v, "msg"));
        const char *got_id = json_string_value(json_object_get(v, "msg_id"));
        assert_non_null(got_id);
        assert_int_equal(strncmp(got_id, id, strlen(got_id)), 0); /* a prefix of the id */
        json_decref(v);
        char *nl2 = strchr(nl + 1, '\n');
        assert_non_null(nl2);
        assert_string_equal(nl2, "\n");
        v = parse_line(nl + 1, (size_t)(nl2 - nl - 1));
        json_decref(v);
        free(out);
        free(id);
    }
    log_set_actor(NULL);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, reset_log, reset_log)
    const struct CMUnitTest tests[] = {
        T(test_level_parse), T(test_enabled),        T(test_filtering),
        T(test_text_format), T(test_text_one_line),  T(test_text_long_line),
        T(test_json_format), T(test_json_timestamp), T(test_json_long_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
