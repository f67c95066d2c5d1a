/* coord_ckpt.h - the coordinator's side of checkpoints (#12, DESIGN §7).
 *
 * Layout, under each daemon's state_dir:
 *   checkpoints/job.resume                the job to resume (rank 0): its text,
 *                                         path, overrides and output directory
 *   checkpoints/<job>/<seq>/shard-<r>.ckpt  shard r's branches (every rank)
 *   checkpoints/<job>/<seq>/coord.ckpt      the coordinator's state (rank 0)
 *   checkpoints/<job>/<seq>/MANIFEST        written last: seq, every shard
 *                                           file's size and CRC, coord.ckpt's
 * A checkpoint is complete when its MANIFEST verifies; the newest complete
 * one that every shard loads wins; at most two are kept.
 *
 * When: at the tuner's consistent points (exec.checkpoint: right after the
 * first search commits and before each test interval of training: no task
 * out, every push applied) once checkpoint_interval_s of job time has passed
 * since the last. Not during a search: a daemon killed mid-search resumes
 * from the last training checkpoint, or starts the job again without one.
 *
 * Everything here runs on the coordinator thread. */
#ifndef MLT_COORD_CKPT_H
#define MLT_COORD_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/coord_int.h"

/* Writes the resume record of the submitted job. 0 or -errno (logged). */
int mlt_coord__resume_record(mlt_coord_t *c);
/* Removes the resume record (the job is over: done, stopped or failed). */
void mlt_coord__resume_forget(mlt_coord_t *c);
/* At start: reads the resume record, if any, into the coordinator's job as a
 * submit would (c->resuming set). Logs what it found. */
void mlt_coord__resume_find(mlt_coord_t *c);
/* Removes every checkpoint of the job (a fresh start of it). */
void mlt_coord__ckpt_clear(mlt_coord_t *c);

/* exec.checkpoint (tuner.h): writes a checkpoint when one is due. Always 0: a
 * failed checkpoint is logged and the job goes on. */
int mlt_coord__ckpt_maybe(void *ctx, const void *state, size_t len);

/* The newest complete checkpoint the coordinator has, loaded into every
 * shard: its tuner state into *state (caller frees with mlt_free), the
 * coordinator's numbers restored, the output positions into dpos and ppos.
 * Returns 0, -ENOENT when there is no complete checkpoint (the job starts
 * again), or another -errno when none loads on every shard (c->message says
 * which shard and file). */
int mlt_coord__ckpt_load(mlt_coord_t *c, void **state, size_t *len, uint64_t *dpos, uint64_t *ppos);

/* ---- a lost shard -------------------------------------------------------------- *
 * A shard of rank >= 1 that dies mid-job (kill -9, a crash; systemd or a
 * person restarts it on the same state_dir and port) breaks the connections
 * of the coordinator's and the workers' clients to it: the step in progress
 * fails (a worker's ECONNRESET, or the coordinator's own request). Every
 * failure goes through fail_job, which asks mlt_coord__shard_loss first:
 * while the job is loading or tuning and has a checkpoint, a failure that
 * comes with a shard's connection closed is that shard's loss, not the
 * job's end. The job then lets go (coord.c, shard_resume: outputs closed, the
 * client dropped, no task out), waits for the shard to answer again
 * (mlt_coord__shard_wait, at most the job's worker_wait_s) and resumes from
 * its newest complete checkpoint as a restarted daemon does: CKPT_LOAD to
 * every shard, outputs cut back to the checkpoint's positions, a "resume"
 * event, the workers sent the job again (their clients are broken: TASK_JOB
 * makes new ones), the tuner resumed in-process. The job fails, naming the
 * shard, when it has no checkpoint yet, when the shard does not come back in
 * time, or after MLT_SHARD_RESUMES_MAX resumes with no new checkpoint
 * between them (a shard that dies on every resume). */
#define MLT_SHARD_RESUMES_MAX 3
#define MLT_SHARD_NEWS_S      0.5 /* a failure waits this long for a shard's disconnect news */

/* From fail_job, c->message holding the failure: 1 when it is taken for the
 * loss of shard c->shard_lost (logged; the message cleared; the phase left
 * as it is), 0 when the job fails (when a shard was lost, c->message then
 * says so, naming it). */
int mlt_coord__shard_loss(mlt_coord_t *c);
/* Waits, serving the control socket, until shard s answers a status request
 * again, at most the job's worker_wait_s. 0 when it does; 1 on a stop
 * request (the job stopped); -1 when it did not come back (the job failed,
 * naming it and the wait) or the daemon is shutting down. */
int mlt_coord__shard_wait(mlt_coord_t *c, int s);

#endif
