/* log.c - see log.h. */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <pthread.h>

#include "common/timeutil.h"

int mlt_log_level_cur = MLT_LOG_INFO;
static const char *log_prog = "mltuner";

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void mlt_log_init(const char *prog, mlt_log_level_t level)
{
    if (prog)
        log_prog = prog;
    mlt_log_level_cur = (int)level;
}

int mlt_log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (s && strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

void mlt_log_escape(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    if (!cap)
        return;
    for (; *s && n + 5 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '\n' || ch == '\r' || ch == '\t') {
            out[n++] = '\\';
            out[n++] = ch == '\n' ? 'n' : ch == '\r' ? 'r' : 't';
        } else if (ch < 0x20 || ch == 0x7f) {
            n += (size_t)snprintf(out + n, cap - n, "\\x%02x", ch);
        } else {
            out[n++] = (char)ch;
        }
    }
    out[n] = '\0';
}

/* One line, whatever the message holds: a newline or an escape sequence in a
 * logged string (a job path, a peer's message) is written escaped, so that it
 * can neither forge a line nor drive the terminal. */
static void log_vwrite(mlt_log_level_t level, const char *fmt, va_list ap)
{
    char msg[1024], esc[4 * sizeof msg];
    vsnprintf(msg, sizeof msg, fmt, ap);
    mlt_log_escape(esc, sizeof esc, msg);
    fprintf(stderr, "%.3f %s[%d] %s: %s\n", mlt_time_wall(), log_prog, (int)level,
            level_names[level], esc);
}

void mlt_log_write(mlt_log_level_t level, const char *file, int line, const char *fmt, ...)
{
    (void)file;
    (void)line;
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(level, fmt, ap);
    va_end(ap);
}

#define RL_SLOTS 64
static struct {
    const char *key;
    double last;
    unsigned suppressed;
} rl_slots[RL_SLOTS];
static pthread_mutex_t rl_lock = PTHREAD_MUTEX_INITIALIZER;

void mlt_log_ratelimited(mlt_log_level_t level, const char *key, double interval_s,
                         const char *fmt, ...)
{
    if ((int)level > mlt_log_level_cur)
        return;
    double now = mlt_time_mono();
    unsigned suppressed = 0;
    pthread_mutex_lock(&rl_lock);
    int slot = -1;
    for (int i = 0; i < RL_SLOTS; i++) {
        if (rl_slots[i].key == key || (rl_slots[i].key && strcmp(rl_slots[i].key, key) == 0)) {
            slot = i;
            break;
        }
        if (!rl_slots[i].key && slot < 0)
            slot = i;
    }
    if (slot >= 0 && rl_slots[slot].key && now - rl_slots[slot].last < interval_s) {
        rl_slots[slot].suppressed++;
        pthread_mutex_unlock(&rl_lock);
        return;
    }
    if (slot >= 0) {
        suppressed = rl_slots[slot].suppressed;
        rl_slots[slot].key = key;
        rl_slots[slot].last = now;
        rl_slots[slot].suppressed = 0;
    }
    pthread_mutex_unlock(&rl_lock);
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(level, fmt, ap);
    va_end(ap);
    if (suppressed)
        fprintf(stderr, "%.3f %s[%d] %s: (%u similar lines suppressed)\n", mlt_time_wall(),
                log_prog, (int)level, level_names[level], suppressed);
}
