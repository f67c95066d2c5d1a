/* shardask.h - asking shards for their STATUS with a hard time bound, for
 * mltunerctl status/branches/metrics and the HTTP metrics endpoint: every
 * shard is asked at once over a fresh DEALER socket and the answers are
 * awaited together until one deadline, so a shard that is dead, stopped
 * (SIGSTOP) or unreachable costs one bounded wait in all, never a wait per
 * shard and never a retry. Used from one thread per call (the sockets are
 * made and closed in the call, in the caller's context). */
#ifndef MLT_SHARDASK_H
#define MLT_SHARDASK_H

#include <stdbool.h>
#include <stddef.h>

#include "client/mltuner.h"

#define MLT_SHARD_STATUS_TIMEOUT_S 2.0 /* a status round over every shard */
#define MLT_SHARDASK_WHY_LEN       512

/* Called on each socket before it connects (may be NULL): where a caller puts
 * its transport's options, e.g. CurveZMQ client keys. */
typedef void (*mlt_shardask_setup_fn)(void *sock, const void *arg);

/* Asks shards eps[0..n) for STATUS and waits at most timeout_s for all of
 * them. up[i]: shard i answered; then st[i] holds its status (free with
 * mlt_server_status_free), else why[i] says why not ("no answer within 2 s",
 * its error). ctx: the caller's ZeroMQ context; setup(sock, setup_arg) runs
 * on each socket first (NULL: none). Returns how many answered. */
int mlt_shardask_status(void *ctx, const char *const *eps, int n, double timeout_s,
                        mlt_shardask_setup_fn setup, const void *setup_arg, mlt_server_status_t *st,
                        bool *up, char (*why)[MLT_SHARDASK_WHY_LEN]);

#endif
