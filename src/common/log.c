#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *log_program = "asya";
static enum log_level log_min = LOG_LVL_INFO;
static bool log_json;
static char log_actor[256];

static const char *const level_names[] = {"DEBUG", "INFO", "WARNING", "ERROR"};

void log_setup(const char *program, enum log_level level, bool json)
{
    log_program = program ? program : "asya";
    log_min = level;
    log_json = json;
}

void log_set_actor(const char *actor)
{
    snprintf(log_actor, sizeof log_actor, "%s", actor ? actor : "");
}

int log_level_parse(const char *text, enum log_level *out)
{
    static const struct {
        const char *name;
        enum log_level level;
    } names[] = {{"DEBUG", LOG_LVL_DEBUG}, {"INFO", LOG_LVL_INFO},
                 {"WARNING", LOG_LVL_WARNING}, {"WARN", LOG_LVL_WARNING},
                 {"ERROR", LOG_LVL_ERROR}, {"CRITICAL", LOG_LVL_ERROR}};
    if (!text)
        return -EINVAL;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcasecmp(text, names[i].name) == 0) {
            *out = names[i].level;
            return 0;
        }
    }
    return -EINVAL;
}

bool log_enabled(enum log_level level)
{
    return level >= log_min;
}

/* Appends s to buf as a JSON string body (without quotes). */
static size_t json_escape(char *buf, size_t cap, size_t pos, const char *s)
{
    for (; *s && pos + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[pos++] = '\\';
            buf[pos++] = (char)c;
        } else if (c < 0x20) {
            pos += (size_t)snprintf(buf + pos, cap - pos, "\\u%04x", c);
        } else {
            buf[pos++] = (char)c;
        }
    }
    return pos;
}

void log_write(enum log_level level, const char *msg_id, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    int saved_errno = errno;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[64];
    size_t tl = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + tl, sizeof ts - tl, ".%03ldZ", (long)(tv.tv_usec / 1000));

    char line[4096];
    size_t pos = 0;
    if (log_json) {
        pos += (size_t)snprintf(line, sizeof line,
                                "{\"time\":\"%s\",\"level\":\"%s\",\"program\":\"%s\",\"pid\":%ld",
                                ts, level_names[level], log_program, (long)getpid());
        if (log_actor[0]) {
            pos += (size_t)snprintf(line + pos, sizeof line - pos, ",\"actor\":\"");
            pos = json_escape(line, sizeof line, pos, log_actor);
            line[pos++] = '"';
        }
        if (msg_id) {
            pos += (size_t)snprintf(line + pos, sizeof line - pos, ",\"msg_id\":\"");
            pos = json_escape(line, sizeof line, pos, msg_id);
            line[pos++] = '"';
        }
        pos += (size_t)snprintf(line + pos, sizeof line - pos, ",\"msg\":\"");
        pos = json_escape(line, sizeof line, pos, msg);
        pos += (size_t)snprintf(line + pos, sizeof line - pos, "\"}\n");
    } else {
        pos = (size_t)snprintf(line, sizeof line, "%s %-7s %s[%ld]%s%s%s%s: %s\n", ts,
                               level_names[level], log_program, (long)getpid(),
                               log_actor[0] ? " actor=" : "", log_actor,
                               msg_id ? " id=" : "", msg_id ? msg_id : "", msg);
    }
    if (pos >= sizeof line) {
        pos = sizeof line - 1;
        line[pos - 1] = '\n';
    }
    /* One write(2) per line so lines from several processes never interleave. */
    ssize_t n = write(STDERR_FILENO, line, pos);
    (void)n;
    errno = saved_errno;
}
