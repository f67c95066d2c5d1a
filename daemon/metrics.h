/* metrics.h - what `mltunerctl branches`, `mltunerctl metrics` and the HTTP
 * metrics endpoint show: the shards' branch tables merged into one, and the
 * Prometheus text exposition format (version 0.0.4) of a job and its shards.
 * Pure functions over plain data, so they are tested without a daemon. */
#ifndef MLT_METRICS_H
#define MLT_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client/mltuner.h"

/* The job as the coordinator sees it (name NULL: no job). NaN: not known. */
typedef struct mlt_metrics_job {
    const char *name;
    const char *phase;
    double epoch, loss, elapsed;
    double val_accuracy, test_accuracy, val_rmse, test_rmse;
    int64_t clock;
    uint32_t trials, workers, workers_joined, batch_size;
    double tuning_seconds, training_seconds;
    double lr, momentum;
    int32_t staleness; /* -1: not known */
} mlt_metrics_job_t;

/* Merges the branch tables of n shards (st[i] valid where up[i]) into one:
 * per branch id, owned and shared bytes summed, min_clock the least, diverged
 * if any shard says so; kind, parent and tunables from the first shard that
 * has it. Sorted by id. *out (caller frees with mlt_free) gets *n_out
 * entries. Returns 0, or -ENOMEM. */
int mlt_branches_merge(const mlt_server_status_t *st, const bool *up, int n,
                       mlt_branch_status_t **out, uint32_t *n_out);

/* Writes the exposition of the job (may be NULL: a shard-only daemon) and the
 * n shards into buf (cap bytes, NUL-terminated). first_shard: the rank of
 * st[0] (a shard-only daemon reports its own rank). Past cap the text ends
 * with a "# truncated" comment line. Returns the text's length. */
size_t mlt_metrics_text(char *buf, size_t cap, const mlt_metrics_job_t *job,
                        const mlt_server_status_t *st, const bool *up, int n, uint32_t first_shard);

/* Name of a branch kind (MLT_BRANCH_*): "init", "train", "eval", "test",
 * "snapshot", or "?". */
const char *mlt_branch_kind_name(int kind);

#endif
