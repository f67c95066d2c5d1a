/* store.h - one shard's parameter store: the job's tables cut into chunks, and
 * the live branches, each a table of references to chunks.
 *
 * Invariants:
 *  - A chunk holds its parameters and the optimizer state after them, and the
 *    update rule's scalars (mlt_optim_scalars_t) in its header, so a fork
 *    forks all three. A chunk referenced by more than one holder (branches or
 *    in-flight pull replies) is never written: the writer copies it first
 *    (copy-on-write at chunk granularity).
 *  - fork(parent) copies the parent's reference table and takes a reference
 *    on each chunk: O(chunks), no parameter bytes copied.
 *  - Under a rule that keeps a weight average (sf-sgd, sf-adamw; sgd and
 *    nesterov with update.average) the parameters are the point y where
 *    gradients are taken and one state array is the average x. A pull of a
 *    TEST or EVAL branch reads x, of any other kind y: mlt_store_chunk_get()
 *    makes that choice, for every reply path.
 *  - memory_potential = the sum over live branches of their full size, i.e.
 *    what they would use if every chunk were written. A create or fork that
 *    would raise it above memory_limit is refused (-ENOMEM), so copy-on-write
 *    stays within the bound and nothing aborts.
 *
 * Threading: owned by the daemon's main thread. The one exception is
 * mlt_chunk_release(), which ZeroMQ's I/O thread calls when it is done with a
 * pull reply frame; chunk lifetimes and the allocated-bytes counter are atomic
 * for that reason.
 *
 * Branch lifecycle:
 *
 *     (none) --mlt_store_create()/mlt_store_fork()--> LIVE
 *     LIVE --mlt_store_apply() sees a non-finite value--> LIVE + diverged
 *     LIVE / diverged --mlt_store_free() or mlt_store_end_job()--> (none)
 */
#ifndef MLT_STORE_H
#define MLT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client/mltuner.h" /* mlt_branch_kind_t: a SNAPSHOT is frozen (no pushes, writes) */
#include "kernels/optim.h"
#include "proto/limits.h"

typedef struct mlt_store mlt_store_t;
typedef struct mlt_branch mlt_branch_t;
typedef struct mlt_chunk mlt_chunk_t;

typedef struct mlt_tunables {
    mlt_hyper_t h;      /* update-rule hyperparameters */
    uint32_t staleness; /* SSP bound s: a pull at clock c needs min_clock >= c - s */
} mlt_tunables_t;

typedef struct mlt_table_spec {
    const char *name;
    uint64_t size; /* floats */
} mlt_table_spec_t;

typedef struct mlt_branch_info {
    uint32_t id;
    int64_t parent; /* -1 for a root branch */
    mlt_branch_kind_t kind;
    mlt_tunables_t tunables;
    int64_t min_clock;
    uint64_t owned_bytes;  /* chunks only this branch references */
    uint64_t shared_bytes; /* chunks other branches reference too */
    bool diverged;
} mlt_branch_info_t;

/* New empty store (no job). chunk_floats: floats per chunk; memory_limit: bound
 * on memory_potential in bytes. Returns NULL (errno EINVAL) on bad arguments. */
mlt_store_t *mlt_store_new(uint32_t chunk_floats, uint64_t memory_limit);
/* Frees every branch; chunks still held by in-flight messages are freed when
 * those are released. Accepts NULL, clears *sp. */
void mlt_store_destroy(mlt_store_t **sp);

/* A job as the store takes it (borrowed for the call). */
typedef struct mlt_store_job {
    const char *name;
    uint32_t n_workers;
    mlt_rule_t rule;
    bool average; /* update.average: sgd/nesterov also keep the average x */
    const mlt_table_spec_t *tables;
    uint32_t n_tables;
    uint32_t rank;      /* this shard */
    uint32_t n_servers; /* shards of the job */
} mlt_store_job_t;

/* Sets the job: tables, workers, rule, and which shard this is. The same job
 * again is accepted (0); a different one while a job is set is -EBUSY;
 * -EINVAL for an unknown rule, average with a rule that cannot keep one, or a
 * rank outside n_servers. */
int mlt_store_set_job_spec(mlt_store_t *st, const mlt_store_job_t *job, char *err, size_t errlen);
/* mlt_store_set_job_spec without update.average. */
int mlt_store_set_job(mlt_store_t *st, const char *name, uint32_t n_workers, mlt_rule_t rule,
                      const mlt_table_spec_t *tables, uint32_t n_tables, uint32_t rank,
                      uint32_t n_servers, char *err, size_t errlen);
/* Frees every branch and forgets the job. */
void mlt_store_end_job(mlt_store_t *st);
/* Name of the current job, or NULL. */
const char *mlt_store_job(const mlt_store_t *st);
uint32_t mlt_store_n_workers(const mlt_store_t *st);
uint32_t mlt_store_n_tables(const mlt_store_t *st);

/* Checks that chunks [first, first+count) of `table` exist and are on this
 * shard. 0, -ENOENT (no job / unknown table) or -ERANGE, with a message. */
int mlt_store_check_range(const mlt_store_t *st, uint32_t table, uint32_t first, uint32_t count,
                          char *err, size_t errlen);
/* Floats in chunk k of table (the last chunk of a table may be short). */
uint32_t mlt_store_chunk_len(const mlt_store_t *st, uint32_t table, uint32_t k);
/* This shard's chunks of `table`: [*first, *first + *count) (count 0: none). */
void mlt_store_own_range(const mlt_store_t *st, uint32_t table, uint32_t *first, uint32_t *count);

/* Creates root branch `id` with zeroed chunks. -EEXIST, -ENOENT (no job),
 * -ENOMEM (limit or allocation), -ENOSPC (branch count limit). */
int mlt_store_create(mlt_store_t *st, uint32_t id, mlt_branch_kind_t kind, const mlt_tunables_t *t,
                     char *err, size_t errlen);
/* Forks `child` from `parent` by reference. Clocks start at 0. Same errors as
 * create, and -ENOENT for an unknown parent. */
int mlt_store_fork(mlt_store_t *st, uint32_t child, uint32_t parent, mlt_branch_kind_t kind,
                   const mlt_tunables_t *t, char *err, size_t errlen);
/* Frees a branch (drops its references). -ENOENT if unknown. */
int mlt_store_free(mlt_store_t *st, uint32_t id);

/* The live branch with this id, or NULL. */
mlt_branch_t *mlt_store_branch(mlt_store_t *st, uint32_t id);
uint32_t mlt_store_branch_id(const mlt_branch_t *b);
const mlt_tunables_t *mlt_store_branch_tunables(const mlt_branch_t *b);
void mlt_store_branch_set_tunables(mlt_branch_t *b, const mlt_tunables_t *t);
bool mlt_store_branch_diverged(const mlt_branch_t *b);
void mlt_store_branch_set_diverged(mlt_branch_t *b);
int64_t mlt_store_branch_min_clock(const mlt_branch_t *b);
/* Records that `worker` has finished `clock` clocks on b. Returns 0 (and the
 * new min clock in *min_clock), -ERANGE for a worker outside the job, or
 * -EINVAL if the clock goes backwards. */
int mlt_store_branch_clock(mlt_branch_t *b, uint32_t worker, int64_t clock, int64_t *min_clock);
/* The slowest worker's index (for wait messages). */
uint32_t mlt_store_branch_slowest(const mlt_branch_t *b);

/* Workers the coordinator dropped (MSG_WORKER_GONE): a dropped worker is out
 * of every branch's min_clock, so the others' pulls do not wait for it, and
 * its pulls, pushes and clocks are refused until MSG_WORKER_BACK. A worker
 * that is back re-enters a branch's min_clock at its first pull or clock
 * there (mlt_store_branch_enter, mlt_store_branch_clock), at that clock: a
 * worker that rejoins at clock C never holds the others back below C nor
 * waits for its own old clock. -ERANGE: no job or a worker outside it. */
int mlt_store_set_worker_gone(mlt_store_t *st, uint32_t worker, bool gone);
bool mlt_store_worker_gone(const mlt_store_t *st, uint32_t worker);
/* A pull of `worker` at `clock` on b: a worker out of b re-enters it there. */
void mlt_store_branch_enter(mlt_branch_t *b, uint32_t worker, int64_t clock);
/* The kind the branch was created or forked as. */
mlt_branch_kind_t mlt_store_branch_kind(const mlt_branch_t *b);

void mlt_store_branch_info(const mlt_store_t *st, const mlt_branch_t *b, mlt_branch_info_t *out);

/* Iteration over live branches: i from 0 while the result is non-NULL. */
mlt_branch_t *mlt_store_branch_at(mlt_store_t *st, uint32_t i);

/* Applies gradient g (len floats, the whole chunk) to chunk k of table on b
 * with the job's rule and b's tunables (mlt_optim_update), copying the chunk
 * first if it is shared. 0 or -ENOMEM (the chunk is left unchanged). */
int mlt_store_apply(mlt_store_t *st, mlt_branch_t *b, uint32_t table, uint32_t k, const float *g);
/* Overwrites the parameters of chunk k. Under a rule that keeps an average
 * the sequences restart at the written values (y = z = x, v = 0) and the
 * rule's scalars at 0 (mlt_optim_restart); otherwise the optimizer state is
 * kept. 0 or -ENOMEM. */
int mlt_store_write(mlt_store_t *st, mlt_branch_t *b, uint32_t table, uint32_t k,
                    const float *v);
/* Takes a reference on chunk k of table on b for an outgoing pull reply and
 * sets *data to the floats (mlt_store_chunk_len of them) the pull returns:
 * the average x for a TEST or EVAL branch under a rule that keeps one, else
 * the parameters. They stay valid while the reference is held; the holder
 * calls mlt_chunk_release(). */
mlt_chunk_t *mlt_store_chunk_get(mlt_store_t *st, mlt_branch_t *b, uint32_t table, uint32_t k,
                                 const float **data);
/* Drops a reference; signature of zmq_free_fn (data unused, hint = chunk).
 * Thread-safe. */
void mlt_chunk_release(void *data, void *hint);

uint64_t mlt_store_allocated(const mlt_store_t *st); /* bytes of chunks alive now */
uint64_t mlt_store_potential(const mlt_store_t *st); /* bytes if all were private */
uint64_t mlt_store_limit(const mlt_store_t *st);
/* Bytes one fully private branch of the job takes on this shard (0: no job). */
uint64_t mlt_store_branch_bytes(const mlt_store_t *st);
uint32_t mlt_store_chunk_floats(const mlt_store_t *st);
uint32_t mlt_store_n_branches(const mlt_store_t *st);
/* ---- checkpoints (store_ckpt.c) ---- */
typedef struct mlt_ckw mlt_ckw_t;
typedef struct mlt_ckr mlt_ckr_t;
/* Writes the job's spec and every live branch with its chunks (a shared chunk
 * once) to w. 0, or -ENOENT with no job. */
int mlt_store_save(const mlt_store_t *st, mlt_ckw_t *w, uint32_t rank, uint32_t n_servers);
/* Replaces the store's job and branches by those of a verified checkpoint
 * (mlt_ckr_open). Everything is bounded before use; on failure the store is
 * left with no job. 0, -EPROTO (bad or cut), -EINVAL (another shard's or
 * another chunk size's), -ENOMEM, with a message. */
int mlt_store_load(mlt_store_t *st, mlt_ckr_t *r, uint32_t rank, uint32_t n_servers, char *err,
                   size_t errlen);

/* Bytes of one chunk holding `floats` parameters under the job's rule. */
uint64_t mlt_store_chunk_bytes(const mlt_store_t *st, uint32_t floats);

#endif
