/* coord.h - the coordinator: a thread of daemon rank 0 that owns the control
 * endpoint. It accepts a job (SUBMIT from mltunerctl), hands it to the workers
 * that JOIN, drives branches on the shards through libmltuner, tells workers
 * what to run (TASK), aggregates their REPORTs into progress and test results,
 * and stops the job at its stop condition. Its sockets belong to its thread;
 * the main thread only starts and stops it. */
#ifndef MLT_COORD_H
#define MLT_COORD_H

#include <stddef.h>

#include "daemon/auth.h"
#include "daemon/config.h"

typedef struct mlt_coord mlt_coord_t;

/* Binds conf->control_bind (a CurveZMQ server when keys->on) and the local
 * control socket in state_dir (coord_sec.c). shards: the shard endpoints
 * workers and the coordinator use (conf->servers, or this daemon's own
 * endpoint when there is no list). keys (borrowed, must outlive the
 * coordinator; may be NULL) are also what the coordinator connects to the
 * shards with. NULL with the reason in err on failure. */
mlt_coord_t *mlt_coord_new(const mlt_dconf_t *conf, const mlt_dkeys_t *keys,
                           const char *const *shards, int n_shards, char *err, size_t errlen);
const char *mlt_coord_endpoint(const mlt_coord_t *c);
/* Starts the thread. 0 or -errno. */
int mlt_coord_start(mlt_coord_t *c);
/* Stops the thread (a running job is abandoned; its workers are told to stop)
 * and frees everything. Accepts NULL, clears *cp. */
void mlt_coord_destroy(mlt_coord_t **cp);

#endif
