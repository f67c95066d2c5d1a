/* httpmetrics.h - the daemon's Prometheus endpoint (config key
 * metrics_listen): GET /metrics over HTTP, served by libmicrohttpd on its own
 * thread. On rank 0 the text is the coordinator's (the job and every shard,
 * asked over the control endpoint, as `mltunerctl metrics` does); on the
 * other ranks it is this shard's own series (asked over its endpoint with a
 * STATUS request). The thread talks to the daemon only through ZeroMQ, like
 * any client, so it shares nothing with the serving threads. */
#ifndef MLT_HTTPMETRICS_H
#define MLT_HTTPMETRICS_H

#include <stddef.h>
#include <stdint.h>

#include "common/curve.h"

typedef struct mlt_http mlt_http_t;

/* Starts serving on listen ("HOST:PORT", see mlt_dconf_parse_listen).
 * control: rank 0's control endpoint (NULL on other ranks); shard: this
 * daemon's own endpoint, connectable (not a wildcard); rank: its rank; keys:
 * the daemon's CurveZMQ keys to ask both with (copied; NULL: plain).
 * Returns the server, or NULL with the reason in err. */
mlt_http_t *mlt_http_start(const char *listen, const char *control, const char *shard,
                           uint32_t rank, const mlt_curve_client_t *keys, char *err,
                           size_t errlen);

/* Stops the server and frees it. Accepts NULL; sets *hp = NULL. */
void mlt_http_stop(mlt_http_t **hp);

#endif
