/* auth.h - who may talk to the daemon: its CurveZMQ keys (curve_key,
 * curve_authorized_keys), the check that nothing listens beyond loopback
 * without them, and the local control socket that stands in for a key on a
 * daemon without CURVE. Loaded once at start by main.c, then borrowed by the
 * shard server, the coordinator and the metrics server. Not thread-safe to
 * load; read-only afterwards. */
#ifndef MLT_DAEMON_AUTH_H
#define MLT_DAEMON_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "common/curve.h"
#include "daemon/config.h"
#include "client/mltuner.h"

typedef struct mlt_dkeys {
    bool on;                   /* curve_key is set: every accepting socket is a CURVE server */
    mlt_curve_client_t client; /* the daemon's pair; server = its own public key (the
                                  coordinator and the metrics server connect with it) */
    mlt_curve_allow_t *allow;  /* curve_authorized_keys plus the daemon's own key */
    mlt_client_keys_t ckeys;   /* client, in libmltuner's form (the coordinator's client) */
} mlt_dkeys_t;

/* Loads the keys conf names into *k (zeroed first). With no curve_key, k->on
 * is false and nothing is read. Returns 0, or -errno with a message naming the
 * key and the file. */
int mlt_dkeys_load(mlt_dkeys_t *k, const mlt_dconf_t *conf, char *err, size_t errlen);

/* Frees what mlt_dkeys_load allocated; safe on a zeroed struct. */
void mlt_dkeys_free(mlt_dkeys_t *k);

/* 1 when a ZeroMQ endpoint (bind side) is reachable from this host only:
 * tcp://127.x, tcp://localhost:, tcp://[::1]:, ipc://, inproc://. */
int mlt_auth_zmq_loopback(const char *endpoint);

/* Refuses what would listen beyond loopback without authentication: bind
 * and (on rank 0) control_bind without curve_key, and metrics_listen (plain
 * HTTP) on any non-loopback address, unless allow_insecure. Returns 0, or
 * -EACCES with a message naming the key and the endpoint. */
int mlt_auth_check_binds(const mlt_dconf_t *conf, const mlt_dkeys_t *k, char *err, size_t errlen);

/* The local control socket of a daemon whose state directory is state_dir:
 * "ipc://<state_dir>/control.sock" into buf. -ENAMETOOLONG when the path is
 * longer than a Unix socket allows. */
int mlt_auth_local_control(const char *state_dir, char *buf, size_t len);

#endif
