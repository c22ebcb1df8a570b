/* log.h - one-line logs to stderr, text or JSON, filtered by level. */
#ifndef ASYA_LOG_H
#define ASYA_LOG_H

#include <stdbool.h>

enum log_level {
    LOG_LVL_DEBUG = 0,
    LOG_LVL_INFO = 1,
    LOG_LVL_WARNING = 2,
    LOG_LVL_ERROR = 3,
};

/* Set the program name (borrowed, must outlive logging), level and format.
 * json selects one JSON object per line instead of text. */
void log_setup(const char *program, enum log_level level, bool json);

/* Set the actor name printed on every line (copied); NULL clears it. */
void log_set_actor(const char *actor);

/* Parse DEBUG, INFO, WARNING (or WARN), ERROR (or CRITICAL), any case.
 * Returns 0, or -EINVAL leaving *out untouched. */
int log_level_parse(const char *text, enum log_level *out);

/* True when lines of this level are printed; check before costly formatting. */
bool log_enabled(enum log_level level);

/* Print one line.  msg_id, when not NULL, is the envelope id the line is about. */
void log_write(enum log_level level, const char *msg_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_enabled(LOG_LVL_DEBUG))                                                            \
            log_write(LOG_LVL_DEBUG, NULL, __VA_ARGS__);                                           \
    } while (0)
#define log_info(...)  log_write(LOG_LVL_INFO, NULL, __VA_ARGS__)
#define log_warn(...)  log_write(LOG_LVL_WARNING, NULL, __VA_ARGS__)
#define log_error(...) log_write(LOG_LVL_ERROR, NULL, __VA_ARGS__)

/* Variants for lines about one message (id may be NULL). */
#define log_debug_id(id, ...)                                                                      \
    do {                                                                                           \
        if (log_enabled(LOG_LVL_DEBUG))                                                            \
            log_write(LOG_LVL_DEBUG, (id), __VA_ARGS__);                                           \
    } while (0)
#define log_info_id(id, ...)  log_write(LOG_LVL_INFO, (id), __VA_ARGS__)
#define log_warn_id(id, ...)  log_write(LOG_LVL_WARNING, (id), __VA_ARGS__)
#define log_error_id(id, ...) log_write(LOG_LVL_ERROR, (id), __VA_ARGS__)

#endif /* ASYA_LOG_H */
