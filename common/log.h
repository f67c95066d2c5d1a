/* log.h - leveled logging to stderr for the programs (mltunerd, mltuner-worker,
 * mltunerctl). Libraries (proto/, kernels/, libmltuner) never log: they return
 * codes and offer a last-error string.
 *
 * The macros test the level before evaluating their arguments, so a debug line
 * on a hot path costs one compare when debug is off. Thread-safe: each line is
 * written with one fprintf call. A line is always one line: control bytes in
 * the message are escaped (mlt_log_escape). */
#ifndef MLT_LOG_H
#define MLT_LOG_H

#include <stdbool.h>
#include <stddef.h>

typedef enum {
    MLT_LOG_ERROR = 0,
    MLT_LOG_WARN = 1,
    MLT_LOG_INFO = 2,
    MLT_LOG_DEBUG = 3,
} mlt_log_level_t;

extern int mlt_log_level_cur; /* lines above this level are dropped */

/* Sets the program name printed on every line (borrowed, must outlive logging). */
void mlt_log_init(const char *prog, mlt_log_level_t level);
/* Parses "error|warn|info|debug"; returns the level or -1. */
int mlt_log_level_parse(const char *s);
void mlt_log_write(mlt_log_level_t level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Like mlt_log_write, but at most one line per `key` every `interval_s` seconds
 * (for lines a remote peer can trigger). */
void mlt_log_ratelimited(mlt_log_level_t level, const char *key, double interval_s,
                         const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* s with control bytes escaped (\\n \\r \\t, the others \\xNN) in out[0..cap),
 * cut short to fit, never mid-escape. Every log line passes its message
 * through it, so a logged string cannot break a line. */
void mlt_log_escape(char *out, size_t cap, const char *s);

#define mlt_log(lvl, ...)                                                   \
    do {                                                                    \
        if ((int)(lvl) <= mlt_log_level_cur)                                \
            mlt_log_write((lvl), __FILE__, __LINE__, __VA_ARGS__);          \
    } while (0)
#define log_error(...) mlt_log(MLT_LOG_ERROR, __VA_ARGS__)
#define log_warn(...) mlt_log(MLT_LOG_WARN, __VA_ARGS__)
#define log_info(...) mlt_log(MLT_LOG_INFO, __VA_ARGS__)
#define log_debug(...) mlt_log(MLT_LOG_DEBUG, __VA_ARGS__)

#endif
