/* server.h - the daemon's request loop: one ROUTER socket for workers and
 * peers, the parameter store and the parked-pull queue, all owned by the
 * thread that calls mlt_server_run(). Every request gets exactly one reply
 * (OK, PULL_REPLY, STATUS_REPLY or ERROR); a bad request fails alone and the
 * loop goes on serving everyone else. See proto/PROTOCOL.md. */
#ifndef MLT_SERVER_H
#define MLT_SERVER_H

#include <stddef.h>

#include "daemon/auth.h"
#include "daemon/config.h"

typedef struct mlt_server mlt_server_t;

/* Creates the store and binds conf->bind; with keys->on (keys borrowed, may be
 * NULL) as a CurveZMQ server that accepts only keys->allow. Whether the bind
 * may be insecure is main's check (mlt_auth_check_binds). NULL on failure
 * with the reason in err (a bad endpoint, a port in use). */
mlt_server_t *mlt_server_new(const mlt_dconf_t *conf, const mlt_dkeys_t *keys, char *err,
                             size_t errlen);

/* The endpoint actually bound (with the port the kernel chose for port 0). */
const char *mlt_server_endpoint(const mlt_server_t *s);

/* Serves until stop_fd becomes readable (a signalfd or a pipe). 0 on a clean
 * stop, -errno if the socket fails. */
int mlt_server_run(mlt_server_t *s, int stop_fd);

/* Closes the socket, frees the store. Accepts NULL, clears *sp. */
void mlt_server_destroy(mlt_server_t **sp);

#endif
