/* zap.h - the daemon's ZAP handler (ZeroMQ RFC 27): decides, for one ZeroMQ
 * context, which peers may complete a handshake, and logs the ones refused.
 *
 * CURVE peers are accepted when their public key is in the allow-list (whose
 * owner adds the daemon's own key: the coordinator is a client of every
 * shard); the others get status 400 and no reply to anything they send. A
 * NULL-mechanism peer reaches the handler only through an endpoint bound with
 * ZMQ_ZAP_DOMAIN MLT_ZAP_DOMAIN_LOCAL (the coordinator's ipc:// control
 * socket, guarded by file permissions); it is accepted as user "local".
 * Through one bound with MLT_ZAP_DOMAIN_PLAIN it is accepted without a name.
 * An accepted peer's messages carry its name as their "User-Id" property.
 *
 * A refusal is logged (warn) with the peer's address, once per key and
 * address every MLT_ZAP_LOG_INTERVAL_S. A peer without CURVE never reaches
 * the handler (the mechanisms differ); those are logged from the watched
 * socket's handshake events, which name the local endpoint only.
 *
 * The handler is a thread owning its sockets; start it before the watched
 * sockets bind and stop it before the context is terminated. */
#ifndef MLT_DAEMON_ZAP_H
#define MLT_DAEMON_ZAP_H

#include <stddef.h>

#include "common/curve.h"

#define MLT_ZAP_DOMAIN_LOCAL "mltuner-local"
#define MLT_ZAP_USER_LOCAL   "local"
/* the domain of a daemon's plain TCP control endpoint (no keys): accepted,
 * without a name (libzmq cannot clear a socket's domain once set) */
#define MLT_ZAP_DOMAIN_PLAIN   "mltuner-plain"
#define MLT_ZAP_LOG_INTERVAL_S 60.0

typedef struct mlt_zap mlt_zap_t;

/* Binds inproc://zeromq.zap.01 in ctx and starts the handler. allow is
 * borrowed and must outlive the handler; NULL accepts no CURVE key. watch (may
 * be NULL; not yet bound) is a socket whose failed handshakes are logged:
 * peers without CURVE, or with the wrong server key. what names the sockets in
 * log lines ("shard", "control"). NULL with err on failure. */
mlt_zap_t *mlt_zap_start(void *ctx, const mlt_curve_allow_t *allow, void *watch, const char *what,
                         char *err, size_t errlen);

/* Stops the thread and closes its sockets. Accepts NULL, clears *zp. */
void mlt_zap_stop(mlt_zap_t **zp);

#endif
