/* notify.c - see notify.h. With MLT_HAVE_SYSTEMD (meson defines it when it
 * finds libsystemd) the messages go out through sd_notify(); without it the
 * functions send nothing and return 0. */
#include "daemon/notify.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"

#ifdef MLT_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>

enum { NOTIFY_STATUS_MAX = 256 }; /* a status is one line for `systemctl status` */

/* Sends one notification; what names it in the warning. sd_notify() returns
 * > 0 when sent, 0 when there is no NOTIFY_SOCKET (not run by systemd), or
 * -errno. unset_environment is 0: later calls need NOTIFY_SOCKET too. */
static int send_state(const char *state, const char *what)
{
    int rc = sd_notify(0, state);
    if (rc < 0) {
        log_warn("cannot tell systemd %s (sd_notify): %s", what, strerror(-rc));
        return rc;
    }
    return 0;
}

int mlt_notify_ready(void)
{
    return send_state("READY=1", "the daemon is ready");
}

int mlt_notify_status(const char *fmt, ...)
{
    char state[sizeof "STATUS=" + NOTIFY_STATUS_MAX];
    size_t n = strlen("STATUS=");
    memcpy(state, "STATUS=", n);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(state + n, sizeof state - n, fmt, ap); /* a longer status is cut */
    va_end(ap);
    state[n + strcspn(state + n, "\n")] = '\0'; /* one line: a newline would start a new field */
    return send_state(state, "the daemon's status");
}

int mlt_notify_stopping(void)
{
    return send_state("STOPPING=1", "the daemon is stopping");
}

#else /* built without libsystemd: nothing to tell */

int mlt_notify_ready(void)
{
    return 0;
}

int mlt_notify_status(const char *fmt, ...)
{
    (void)fmt;
    return 0;
}

int mlt_notify_stopping(void)
{
    return 0;
}

#endif
