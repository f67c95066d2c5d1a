/* trainer.h - one worker's view of a job: its data (training partition,
 * validation and test sets), the model, the parameter and gradient buffers,
 * and the step and evaluation that the standalone loop and the distributed
 * worker share. It never talks to the network and never prints. */
#ifndef MLT_TRAINER_H
#define MLT_TRAINER_H

#include <stddef.h>
#include <stdint.h>

#include "common/jobfile.h"

typedef struct mlt_trainer mlt_trainer_t;

typedef struct mlt_eval {
    double loss;      /* sum over samples (mean cross-entropy x n, or squared error) */
    uint64_t correct; /* classification: right answers */
    uint64_t count;   /* samples evaluated */
    double sq_error;  /* mf: sum of squared errors */
} mlt_eval_t;

/* Loads the job's data for worker `worker` of n_workers and builds the model.
 * The training set (after the validation hold-out) is partitioned by worker;
 * validation and test sets are shared out by i % n_workers == worker for
 * evaluation. NULL with "file: offset: what" style reasons in err. */
mlt_trainer_t *mlt_trainer_new(const mlt_job_t *job, uint32_t worker, uint32_t n_workers,
                               char *err, size_t errlen);
void mlt_trainer_destroy(mlt_trainer_t **tp);

uint32_t mlt_trainer_n_tables(const mlt_trainer_t *t);
const char *mlt_trainer_table_name(const mlt_trainer_t *t, uint32_t i);
uint64_t mlt_trainer_table_size(const mlt_trainer_t *t, uint32_t i);
/* The parameter and gradient buffers, one per table (owned by the trainer). */
float *const *mlt_trainer_params(mlt_trainer_t *t);
float *const *mlt_trainer_grads(mlt_trainer_t *t);
/* The tables the next mlt_trainer_step reads its parameters from and writes
 * its gradients into, instead of the trainer's own (#15: the client's copy of
 * the parameters and its push buffers, so that nothing is copied); NULL: its
 * own. The CPU backend only: false on the GPU one, whose transfers want its
 * pinned buffers. */
bool mlt_trainer_use_tables(mlt_trainer_t *t, const float *const *params, float *const *grads);
/* Training samples in this worker's partition. */
uint32_t mlt_trainer_part_size(const mlt_trainer_t *t);
/* Training samples in the whole training set (all partitions). */
uint32_t mlt_trainer_train_total(const mlt_trainer_t *t);
/* Makes this worker take share `share` of n_shares of the training set and of
 * the validation and test sets (mlt_trainer_new starts with share `worker`
 * of n_workers): the coordinator shares the data out again among the
 * workers left while one is lost. The data cursor keeps its epochs done
 * (fraction of the new partition). 0 when nothing changed, 1 when it did,
 * or -errno with the reason in err (the old share stays). */
int mlt_trainer_set_share(mlt_trainer_t *t, uint32_t share, uint32_t n_shares, char *err,
                          size_t errlen);
/* The share taken now, of how many. */
void mlt_trainer_share(const mlt_trainer_t *t, uint32_t *share, uint32_t *n_shares);
/* Epochs of the partition done (fractional). */
double mlt_trainer_epoch(const mlt_trainer_t *t);
/* Restores the data cursor to `epochs` epochs done (for a RUN that starts at a
 * given clock with a given batch). */
void mlt_trainer_seek(mlt_trainer_t *t, double epochs);

/* Writes seeded initial weights into the parameter buffers. */
void mlt_trainer_init_params(mlt_trainer_t *t);

/* One step on the next batch of the partition: gradients of the current
 * parameters into the gradient buffers. *loss = batch mean loss, *correct =
 * right answers (0 for mf). 0 or -errno. */
int mlt_trainer_step(mlt_trainer_t *t, uint32_t batch, float *loss, uint32_t *correct);

/* During mlt_trainer_step, fn(ctx, table) is called on the calling thread as
 * soon as that table's gradient is in mlt_trainer_grads(t)[table] (the last
 * layer's first, while the earlier layers' are still being computed), once
 * per table per step. So a worker can push each gradient as it is ready.
 * fn NULL: no calls. */
void mlt_trainer_on_grad(mlt_trainer_t *t, void (*fn)(void *ctx, uint32_t table), void *ctx);

/* Evaluates the current parameters on this worker's share of the validation
 * (which = 0) or test (which = 1) set. */
int mlt_trainer_eval(mlt_trainer_t *t, int which, mlt_eval_t *out);
/* Whole-set evaluation, for the standalone loop (share of 1 worker). */
int mlt_trainer_eval_all(mlt_trainer_t *t, int which, mlt_eval_t *out);

/* The compute backend, for a log line: "cpu", "cpu (backend auto: no CUDA
 * device)", "cuda: NVIDIA H100 80GB HBM3 (device 0, compute 9.0)". The job's
 * backend decides: cpu; cuda (mlt_trainer_new fails when there is no usable
 * GPU); auto (cuda when a GPU is found, else cpu). On cuda the data sets live
 * on the device, the parameter and gradient buffers are pinned host memory,
 * and a step runs as a CUDA graph captured once per batch size. */
const char *mlt_trainer_backend(const mlt_trainer_t *t);

/* CPU backend: runs each step and evaluation on n threads, each on a slice of
 * the batch (mlt_model_set_threads). No effect on cuda. 0 or -errno. */
int mlt_trainer_set_threads(mlt_trainer_t *t, uint32_t n);
/* The step threads: 1 unless mlt_trainer_set_threads gave the CPU more. */
uint32_t mlt_trainer_threads(const mlt_trainer_t *t);

#endif
