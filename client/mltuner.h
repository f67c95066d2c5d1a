/* mltuner.h - libmltuner, the worker-side client of mltunerd.
 *
 * A client connects to every shard of a job (one DEALER socket each), registers
 * the job's tables, and then pulls parameters, pushes gradients and advances
 * its clock on branches. Branch control (create, fork, free, tunables) is here
 * too, for the coordinator and for tests.
 *
 * Conventions: functions return 0 or a negative errno; the reason, in words,
 * is in mlt_client_error(). The library never prints. A client is used by one
 * thread at a time (its sockets belong to that thread). */
#ifndef MLTUNER_H
#define MLTUNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mlt_client mlt_client_t;

typedef struct mlt_table_def {
    const char *name; /* unique within the job, at most 128 bytes */
    uint64_t size;    /* number of float32 values */
} mlt_table_def_t;

typedef struct mlt_job_def {
    const char *name;             /* job name */
    uint32_t n_workers;           /* workers whose clocks count for staleness */
    const char *rule;             /* "sgd", "nesterov", "adam", "rmsprop", "adagrad", "adadelta",
                                     "sf-sgd", "sf-adamw" */
    const mlt_table_def_t *tables;
    uint32_t n_tables;
    bool average; /* sgd/nesterov keep the weight average x (update.average); test and eval
                     branches of them, and of the sf- rules, pull x */
} mlt_job_def_t;

/* Branch kinds: the one definition in C. The shards (daemon/store.h) and
 * the tuner (tuner/) use it too; the wire's BranchKind (proto/mltuner.proto)
 * has the same values, checked at compile time where they are converted. */
typedef enum mlt_branch_kind {
    MLT_BRANCH_INIT = 0,
    MLT_BRANCH_TRAIN = 1,
    MLT_BRANCH_EVAL = 2, /* the test and eval branches of averaging rules read x */
    MLT_BRANCH_TEST = 3,
    MLT_BRANCH_SNAPSHOT = 4, /* frozen: pushes and writes get EROFS */
} mlt_branch_kind_t;

/* Tunables of a branch. A float field set to NAN, or staleness or warmup < 0,
 * is left as it is (a fork inherits it from the parent; a new root gets the
 * default). Start from mlt_tunables_unset(). */
typedef struct mlt_tunables_def {
    float lr, momentum, weight_decay, beta1, beta2, eps;
    int32_t staleness;
    int32_t warmup; /* updates over which lr ramps up linearly (0: none) */
} mlt_tunables_def_t;

mlt_tunables_def_t mlt_tunables_unset(void);

typedef struct mlt_branch_status {
    uint32_t id;
    int64_t parent; /* -1: root */
    int kind;       /* MLT_BRANCH_* */
    int64_t min_clock;
    uint64_t owned_bytes, shared_bytes;
    bool diverged;
    mlt_tunables_def_t tunables;
} mlt_branch_status_t;

typedef struct mlt_server_status {
    uint32_t rank, n_servers, chunk_floats;
    uint64_t memory_limit, memory_potential, memory_allocated;
    /* the shard's counters since it started */
    uint64_t requests, errors, pulls, pushes, bytes_in, bytes_out;
    uint32_t parked; /* pulls waiting now */
    char job[129]; /* empty: no job */
    uint32_t n_branches;
    mlt_branch_status_t *branches; /* free with mlt_server_status_free */
} mlt_server_status_t;

/* Connects to the n shards (endpoints in rank order) as worker `worker` and
 * says hello to each (checking version, rank and chunk size). Returns a new
 * client (caller owns) or NULL with errno set; `err` (if not NULL) gets the
 * reason. */
mlt_client_t *mlt_client_new(const char *const *endpoints, uint32_t n, uint32_t worker,
                             char *err, size_t errlen);
/* CurveZMQ keys, Z85 text (40 characters and a NUL each), for a daemon that
 * has curve_key set: the client's own pair, which the daemon's allow-list
 * must hold, and the daemon's public key. */
typedef struct mlt_client_keys {
    char public_key[41];
    char secret_key[41];
    char server_key[41];
} mlt_client_keys_t;
/* mlt_client_new, connecting as a CurveZMQ client with keys (copied; NULL:
 * plain TCP). A daemon that refuses the key never answers: the hello times
 * out and err says so. */
mlt_client_t *mlt_client_new_keys(const char *const *endpoints, uint32_t n, uint32_t worker,
                                  const mlt_client_keys_t *keys, char *err, size_t errlen);
void mlt_client_destroy(mlt_client_t **cp);
/* The last error in words ("" if none). Valid until the next call. */
const char *mlt_client_error(const mlt_client_t *c);
/* Seconds any one wait for a reply may take before -ETIMEDOUT (default 120). */
void mlt_client_set_timeout(mlt_client_t *c, double seconds);

/* Registers the job's tables on every shard (the same spec again is fine). */
int mlt_client_register(mlt_client_t *c, const mlt_job_def_t *job);
/* Table sizes after register. */
uint32_t mlt_client_n_tables(const mlt_client_t *c);
uint64_t mlt_client_table_size(const mlt_client_t *c, uint32_t table);

int mlt_branch_create(mlt_client_t *c, uint32_t id, int kind, const mlt_tunables_def_t *t);
int mlt_branch_fork(mlt_client_t *c, uint32_t child, uint32_t parent, int kind,
                    const mlt_tunables_def_t *t);
int mlt_branch_free(mlt_client_t *c, uint32_t id);
int mlt_branch_set_tunables(mlt_client_t *c, uint32_t id, const mlt_tunables_def_t *t);

/* Overwrites table `table` of branch with values (whole table). Synchronous. */
int mlt_write(mlt_client_t *c, uint32_t branch, uint32_t table, const float *values);

/* Fills dst[t] (table t, whole) with branch's parameters as of a state that
 * includes every worker's clocks <= clock - staleness - 1. Served from the
 * client's cache when the cached copy is fresh enough, else from the shards
 * (waiting there while the slowest worker is too far behind). */
int mlt_pull(mlt_client_t *c, uint32_t branch, int64_t clock, float *const *dst);
/* min_clock the data of the last mlt_pull of branch reflects (-1: none). */
int64_t mlt_pull_min_clock(const mlt_client_t *c, uint32_t branch);
/* On a branch with staleness s > 0, a pull whose successor would find the
 * cached copy too old also asks the shards for the next copy, which then
 * travels while the caller computes (it is answered once every worker has
 * reached clock + 1 - s). This counts the pulls a prefetched copy served. */
uint64_t mlt_pull_prefetched(const mlt_client_t *c);
/* keep = true promises that the caller does not write the tables it passes
 * to mlt_pull between pulls (a worker only reads its parameters): a pull the
 * cache serves with the very copy those tables already hold then copies
 * nothing. Off by default. mlt_pull_copies_skipped counts such pulls. */
void mlt_client_keep_dst(mlt_client_t *c, bool keep);
/* The caller changed its tables after all: the next pull copies. */
void mlt_client_forget_dst(mlt_client_t *c);
uint64_t mlt_pull_copies_skipped(const mlt_client_t *c);
/* mlt_pull without the copy (#15): tables[t] is pointed at the client's own
 * copy of table t, which the caller must not write; it stays valid until the
 * next mlt_pull, mlt_pull_view, mlt_write or mlt_client_register on this
 * client. Where a table is not one piece in the client's memory (it is cut
 * across shards, or into several messages on the sockets) it is copied into a
 * buffer of the client's, so the call always works. */
int mlt_pull_view(mlt_client_t *c, uint32_t branch, int64_t clock, const float **tables);
/* How the data travels after mlt_client_register: "shared memory with N of M
 * shards (...)" when shards on this host attached the client's segment (pulls
 * written into it, pushes read from it: only headers cross the sockets), else
 * "sockets only (...)" with the reason. MLT_SHM=0 in the environment keeps
 * every shard on the sockets. */
const char *mlt_client_transport(const mlt_client_t *c);

/* Sends the gradient of one table (whole table, mean over the batch). Does not
 * wait. On a branch with staleness 0 the buffer is sent zero-copy and must stay
 * unchanged until the next mlt_clock() or mlt_sync() returns; with staleness
 * > 0 it is copied and may be reused at once. Errors (a non-finite value) come
 * back from a later call. */
int mlt_push(mlt_client_t *c, uint32_t branch, uint32_t table, const float *grad);
/* Where to compute the gradient of `table` for branch's next push (#15): a
 * buffer in the memory the shard reads pushes from, whose mlt_push then
 * copies nothing. Valid until that push, or the next mlt_clock or mlt_sync;
 * its contents are undefined until written. NULL when the table's shard is
 * not on this host (or the transport cannot offer one): push from your own
 * buffer then. */
float *mlt_push_buffer(mlt_client_t *c, uint32_t branch, uint32_t table);
/* Tells every shard this worker finished `clock` clocks on branch. With
 * staleness 0 it then waits for every outstanding push and clock to be
 * acknowledged; with staleness > 0 it does not wait (a worker that may read
 * stale parameters need not wait for its own updates): errors of earlier
 * requests are returned by this or a later call, and it waits only when more
 * than a few thousand requests are unacknowledged. */
int mlt_clock(mlt_client_t *c, uint32_t branch, int64_t clock);
/* Waits for every outstanding request; returns the first error among them. */
int mlt_sync(mlt_client_t *c);

/* Status of shard `server`. */
int mlt_client_status(mlt_client_t *c, uint32_t server, mlt_server_status_t *out);
void mlt_server_status_free(mlt_server_status_t *s);
/* Drops the job on every shard (all branches freed). */
int mlt_client_job_end(mlt_client_t *c);
/* The coordinator's word to every shard that `worker` was dropped from the
 * job (gone: out of the SSP minimum, its data requests refused) or is back.
 * 0 or -errno. */
int mlt_client_worker_state(mlt_client_t *c, uint32_t worker, bool gone);

/* Checkpoints (#12), for the coordinator at a consistent point (no push or
 * pull in flight). Shard `server` writes its branches of `job` as checkpoint
 * seq in its own state_dir and removes its checkpoints numbered below keep;
 * *size and *crc: the file's, for the manifest. */
int mlt_client_ckpt_save(mlt_client_t *c, uint32_t server, const char *job, uint64_t seq,
                         uint64_t keep, uint64_t *size, uint32_t *crc);
/* Shard `server` replaces its store by its file of checkpoint seq, once the
 * file matches size and crc. The error names the shard and the file. */
int mlt_client_ckpt_load(mlt_client_t *c, uint32_t server, const char *job, uint64_t seq,
                         uint64_t size, uint32_t crc);
/* The first shard whose connection closed (its daemon died or restarted;
 * the client sends nothing more from then on), or -1 while none has. When
 * none has yet, waits up to wait_s for the news (0: only looks). (#12) */
int mlt_client_lost_shard(mlt_client_t *c, double wait_s);

/* ---- the worker session (#13) ----------------------------------------------------
 *
 * Any program can be a worker of a tuned job. It joins the job's coordinator
 * (mltunerd rank 0) with a session and then does what each task says:
 *
 *   JOB   build its model and data; mlt_session_load() registers the model's
 *         tables on the job's shards and tells the coordinator it is ready
 *   INIT  (worker 0) write the initial parameters of `branch` with mlt_write()
 *         on mlt_session_client(), then mlt_session_done()
 *   RUN   `clocks` clocks on `branch` from clock_start at batch_size: for each,
 *         mlt_pull, compute, mlt_push every table, mlt_clock, and
 *         mlt_session_report_clock() with the batch's loss; then
 *         mlt_session_done() (which first waits for every push to be applied)
 *   TEST  pull `branch` and evaluate on this worker's share of the validation
 *         and test sets: mlt_session_report_test()
 *   STOP  the job is over (reason): leave
 *
 * The update rule and every tunable but the batch size stay on the shards.
 * The session sends heartbeats from a thread of its own, so a task may take
 * as long as it needs. A worker dropped by the coordinator (silent past the
 * job's worker_timeout_s) joins again by itself: the next task is then a JOB
 * again. Everything else follows the library's conventions: 0 or -errno, the
 * reason in mlt_session_error(), nothing printed. One thread uses a session
 * (and its client) at a time. */

typedef struct mlt_session mlt_session_t;

typedef struct mlt_session_opts {
    const char *coordinator; /* the control endpoint of mltunerd rank 0 */
    uint32_t rank;           /* this worker's index in the job, 0-based */
    const char *program;     /* what this worker runs, 1..64 of A-Z a-z 0-9 . _ -
                                (NULL: "worker"); the workers of a job run one program */
    const char *backends;    /* what it computes on: "cpu", "cuda" or "cpu,cuda" (NULL: cpu) */
    uint32_t threads;        /* compute threads it uses (0: 1) */
    const mlt_client_keys_t *keys; /* CurveZMQ, for a daemon with curve_key set; NULL: none */
    /* Seconds the coordinator may be unreachable (its connection down, or no
     * answer to a join) before mlt_session_next returns -ETIMEDOUT; also the
     * job client's reply timeout. 0: the default, 60. < 0: wait for it
     * forever (mltuner-worker: a restarted daemon is joined again). */
    double timeout_s;
    /* Called (from the thread in mlt_session_next) with what the session did
     * on its own, in words: joined again after a drop or a reconnect, the
     * coordinator unreachable. NULL: nothing is said. */
    void (*on_event)(void *arg, const char *what);
    void *event_arg;
} mlt_session_opts_t;

typedef enum mlt_task_kind {
    MLT_TASK_JOB = 1,
    MLT_TASK_INIT = 2,
    MLT_TASK_RUN = 3,
    MLT_TASK_TEST = 4,
    MLT_TASK_STOP = 5,
} mlt_task_kind_t;

/* A task. Strings stay valid until the next mlt_session_next. */
typedef struct mlt_task {
    mlt_task_kind_t kind;
    uint64_t id;
    uint32_t branch;       /* INIT, RUN, TEST */
    int64_t clock_start;   /* RUN: the first clock is clock_start + 1 */
    int64_t clocks;        /* RUN: how many */
    uint32_t batch_size;   /* RUN: the batch size to train at (a tunable the worker applies) */
    bool seek;             /* RUN: first move the data cursor to data_epoch epochs of this */
    double data_epoch;     /*      worker's share (every trial starts from the same data) */
    uint32_t share;        /* JOB, RUN, TEST: the data share to use, share of share_count */
    uint32_t share_count;  /* (while a worker is lost the others share out its data) */
    /* JOB */
    const char *job_name;
    const char *job_text;  /* the whole job file, for keys of the worker's own */
    const char *model;     /* model.type: "mlp", "cnn", "softmax", "mf" or "external" */
    uint32_t n_workers;
    uint64_t seed;         /* the job's seed: initial weights, data order */
    const char *reason;    /* STOP: why */
} mlt_task_t;

/* One evaluation's sums over this worker's share of a data set. */
typedef struct mlt_eval_sums {
    double loss;       /* sum of per-sample losses */
    uint64_t correct;  /* classification: samples predicted right */
    uint64_t count;    /* samples evaluated */
    double sq_error;   /* regression (mf, metric rmse): sum of squared errors */
} mlt_eval_sums_t;

/* Connects to the coordinator and joins as opts->rank. Returns a session
 * (caller owns) or NULL with err set; the join is answered by the first task. */
mlt_session_t *mlt_session_join(const mlt_session_opts_t *opts, char *err, size_t errlen);
/* Waits up to wait_s seconds for the next task: 1 with *task set, 0 when none
 * came, or -errno: -EADDRINUSE another connection joined as this rank (two
 * workers with one rank), -ETIMEDOUT the coordinator unreachable past
 * timeout_s, -ENOTCONN after leave. A task left unfinished is failed first
 * ("abandoned"). */
int mlt_session_next(mlt_session_t *s, double wait_s, mlt_task_t *task);
/* The JOB task: connects to the job's shards and registers the tables (the
 * rule and other settings come from the job), then reports the job loaded.
 * part: training samples in this worker's share; train_total: in the whole
 * training set (the coordinator counts epochs with them). */
int mlt_session_load(mlt_session_t *s, const mlt_table_def_t *tables, uint32_t n_tables,
                     uint64_t part, uint64_t train_total);
/* The client for the job's data (pull, push, clock, write) after
 * mlt_session_load; NULL before. Owned by the session. */
mlt_client_t *mlt_session_client(mlt_session_t *s);
/* RUN: clock `clock` (clock_start < clock <= clock_start + clocks) is done:
 * the batch's mean loss (NAN: the branch diverged), samples right of count,
 * and epochs of its share this worker has done. */
int mlt_session_report_clock(mlt_session_t *s, int64_t clock, double loss, uint64_t correct,
                             uint64_t count, double epoch);
/* TEST: the validation and test sums; ends the task. */
int mlt_session_report_test(mlt_session_t *s, const mlt_eval_sums_t *validation,
                            const mlt_eval_sums_t *test);
/* INIT, RUN: the task is done (RUN: after waiting for every request sent to
 * be applied; a branch refusing NaN is not an error). epoch as above. */
int mlt_session_done(mlt_session_t *s, double epoch);
/* The current task failed: why, in words, goes to the coordinator's log and,
 * for a JOB, fails the job. */
int mlt_session_fail(mlt_session_t *s, const char *why);
/* The last error in words ("" if none). */
const char *mlt_session_error(const mlt_session_t *s);
/* Tells the coordinator this worker leaves (it is dropped at once, not after
 * worker_timeout_s) and stops the heartbeats. Later calls get -ENOTCONN. */
int mlt_session_leave(mlt_session_t *s);
/* Leaves (if not yet) and frees the session and its client. */
void mlt_session_destroy(mlt_session_t **sp);

#ifdef __cplusplus
}
#endif

#endif
