/* notify.h - tells the service manager how mltunerd is doing, through the
 * systemd notification protocol (sd_notify(3)): READY=1 once it serves,
 * STATUS= lines a person reads in `systemctl status`, STOPPING=1 when it
 * shuts down. The unit (systemd/mltunerd.service) is Type=notify, so systemd
 * counts the daemon as started only after mlt_notify_ready().
 *
 * Built without libsystemd (meson -Dsystemd=disabled, or no libsystemd-dev)
 * every function is a no-op that returns 0; the unit is then generated with
 * Type=exec. Outside systemd (no NOTIFY_SOCKET in the environment) the
 * functions do nothing and return 0 as well.
 *
 * Thread-safe: each call sends one datagram on a socket of its own, so any
 * thread may call any function at any time. A failed send is logged as a
 * warning (the daemon keeps serving: systemd's view of it is not a reason to
 * stop) and returned. */
#ifndef MLT_NOTIFY_H
#define MLT_NOTIFY_H

/* READY=1: the daemon is bound and serving. 0, or -errno if the send failed. */
int mlt_notify_ready(void);

/* STATUS=<text>: one short human line, printf-formatted; longer than 255
 * bytes is cut. 0, or -errno if the send failed. */
int mlt_notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* STOPPING=1: shutdown has begun. 0, or -errno if the send failed. */
int mlt_notify_stopping(void);

#endif
