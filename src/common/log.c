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
    } names[] = {{"DEBUG", LOG_LVL_DEBUG},  {"INFO", LOG_LVL_INFO},   {"WARNING", LOG_LVL_WARNING},
                 {"WARN", LOG_LVL_WARNING}, {"ERROR", LOG_LVL_ERROR}, {"CRITICAL", LOG_LVL_ERROR}};
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

/* Appends formatted text at buf + pos, clamped so that pos stays below cap
 * (a NUL always fits); returns the new pos. */
__attribute__((format(printf, 4, 5))) static size_t append(char *buf, size_t cap, size_t pos,
                                                           const char *fmt, ...)
{
    if (pos + 1 >= cap)
        return pos;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + pos, cap - pos, fmt, ap);
    va_end(ap);
    if (n < 0)
        return pos;
    pos += (size_t)n;
    return pos < cap ? pos : cap - 1;
}

/* When a string was cut at pos, drops a multibyte UTF-8 sequence left incomplete. */
static size_t utf8_trim(const char *buf, size_t start, size_t pos)
{
    size_t p = pos;
    while (p > start && ((unsigned char)buf[p - 1] & 0xc0) == 0x80)
        p--;
    if (p > start && (unsigned char)buf[p - 1] >= 0xc0)
        p--;
    return p;
}

/* Appends s to buf as a JSON string body (without quotes), stopping before
 * pos reaches cap - 7; returns the new pos. */
static size_t json_escape(char *buf, size_t cap, size_t pos, const char *s)
{
    size_t start = pos;
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
    return *s ? utf8_trim(buf, start, pos) : pos;
}

/* Appends s for a text line: control characters become \n, \r, \t or \xHH so
 * that one call is always one line.  Stops before pos reaches cap - 5. */
static size_t text_escape(char *buf, size_t cap, size_t pos, const char *s)
{
    size_t start = pos;
    for (; *s && pos + 5 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '\n' || c == '\r' || c == '\t') {
            buf[pos++] = '\\';
            buf[pos++] = (char)(c == '\n' ? 'n' : c == '\r' ? 'r' : 't');
        } else if (c < 0x20 || c == 0x7f) {
            pos += (size_t)snprintf(buf + pos, cap - pos, "\\x%02x", c);
        } else {
            buf[pos++] = (char)c;
        }
    }
    return *s ? utf8_trim(buf, start, pos) : pos;
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

    /* Every field is cut to leave room for what follows it, so a long id or
     * message shortens the line but never overflows it or breaks its JSON. */
    char line[4096];
    const size_t cap = sizeof line;
    const size_t field_cap = cap - 128; /* room for the fixed text after a field */
    size_t pos = 0;
    if (log_json) {
        pos = append(line, cap, pos, "{\"time\":\"%s\",\"level\":\"%s\",\"program\":\"", ts,
                     level_names[level]);
        pos = json_escape(line, field_cap, pos, log_program);
        pos = append(line, cap, pos, "\",\"pid\":%ld", (long)getpid());
        if (log_actor[0]) {
            pos = append(line, cap, pos, ",\"actor\":\"");
            pos = json_escape(line, field_cap, pos, log_actor);
            pos = append(line, cap, pos, "\"");
        }
        if (msg_id) {
            pos = append(line, cap, pos, ",\"msg_id\":\"");
            pos = json_escape(line, field_cap, pos, msg_id);
            pos = append(line, cap, pos, "\"");
        }
        pos = append(line, cap, pos, ",\"msg\":\"");
        pos = json_escape(line, cap - 8, pos, msg);
        pos = append(line, cap, pos, "\"}\n");
    } else {
        pos = append(line, cap, pos, "%s %-7s ", ts, level_names[level]);
        pos = text_escape(line, field_cap, pos, log_program);
        pos = append(line, cap, pos, "[%ld]", (long)getpid());
        if (log_actor[0]) {
            pos = append(line, cap, pos, " actor=");
            pos = text_escape(line, field_cap, pos, log_actor);
        }
        if (msg_id) {
            pos = append(line, cap, pos, " id=");
            pos = text_escape(line, field_cap, pos, msg_id);
        }
        pos = append(line, cap, pos, ": ");
        pos = text_escape(line, cap - 8, pos, msg);
        pos = append(line, cap, pos, "\n");
    }
    /* One write(2) per line so lines from several processes never interleave. */
    ssize_t n = write(STDERR_FILENO, line, pos);
    (void)n;
    errno = saved_errno;
}
