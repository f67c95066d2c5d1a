/* coord_int.h - the coordinator's insides, shared by coord.c (the job: its
 * steps, the tuner's executor, its output files; the thread and lifecycle)
 * and coord_ctl.c (the control endpoint: requests from mltunerctl, workers'
 * joins and reports, the tasks sent to them). Private to daemon/coord*.c;
 * everything here belongs to the coordinator thread (see coord.h). */
#ifndef MLT_COORD_INT_H
#define MLT_COORD_INT_H

#include "daemon/coord.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/jobfile.h"
#include "common/json.h"
#include "common/outfile.h"
#include "common/safepath.h"
#include "proto/wire.h"
#include "client/kind_wire.h"
#include "client/mltuner.h"
#include "tuner/warm.h"

typedef struct wslot {
    bool joined;
    uint8_t id[MLT_MAX_CLIENT_ID_BYTES]; /* routing id */
    size_t id_len;
    double last_seen;
    bool busy; /* a task is out */
    uint64_t task_id;
    Mlt__TaskKind task_kind;
    uint64_t part_size;   /* training samples in its partition (TASK_JOB) */
    uint64_t train_total; /* training samples in the whole set (TASK_JOB) */
    double epoch;         /* epochs of its partition done */
    /* TASK_TEST results */
    double val_loss, test_loss, val_sq, test_sq;
    uint64_t val_correct, val_count, test_correct, test_count;
    char error[MLT_MAX_ERROR_LEN + 1];
    /* failure handling (coord_ctl.c, "workers") */
    bool loaded;      /* this connection loaded the job (TASK_JOB done): it takes tasks */
    bool in_step;     /* the current step's task went to it: the step waits for it */
    bool task_ok;     /* it finished the current step's task without error */
    bool shard_out;   /* the shards were told it is gone (MSG_WORKER_GONE) */
    int64_t run_from; /* TASK_RUN: the clock its task started at */
    /* what it runs and can do (JOIN, #13) */
    char program[MLT_MAX_PROGRAM_LEN + 1];
    char backends[16];
    uint32_t threads;
    /* the connection this rank's last JOIN replaced: told EADDRINUSE, not to
     * join again (two workers with one rank must not take turns) */
    uint8_t old_id[MLT_MAX_CLIENT_ID_BYTES];
    size_t old_id_len;
} wslot_t;

/* The run in progress (ex_run, coord.c): its task and the training loss of
 * each of its clocks, summed over the workers that reported it (add_loss,
 * coord_ctl.c). ex_run owns it and its arrays, and hands the means back to
 * the tuner as the result of the run; c->run points to it while the run is
 * out, NULL otherwise. */
typedef struct mlt_coord_run {
    Mlt__Task *task; /* the RUN task (a resend moves its clock_start, see coord_steps.c) */
    uint32_t branch;
    int64_t start, n; /* its clocks: start + 1 .. start + n */
    int64_t hi;       /* the highest clock reported */
    double *sum;      /* [n] reported losses summed */
    uint32_t *count;  /* [n] how many workers reported it */
    double *loss;     /* [n] the mean once every worker of the run reported it, else NaN */
} mlt_coord_run_t;

/* The job's phase; the transitions are drawn at the top of coord.c. */
typedef enum {
    PH_IDLE,
    PH_WAITING,
    PH_LOADING,
    PH_TRAINING,
    PH_TESTING,
    PH_DONE,
    PH_STOPPED,
    PH_FAILED,
} phase_t;

/* the names status, metrics and progress.jsonl use, by phase_t (coord.c) */
extern const char *const mlt_coord__phase_names[];

struct mlt_coord {
    pthread_t thread;
    bool started;
    void *ctx;
    void *ctl;     /* ROUTER: mltunerctl and workers */
    void *stop_rx; /* PAIR, coordinator side */
    void *stop_tx; /* PAIR, main-thread side */
    char endpoint[256];
    char **shards;
    int n_shards;
    double shard_down_at; /* when a status round last found a shard not answering (0: never) */
    char *state_dir;
    double worker_timeout_s;
    /* the job */
    bool have_job; /* a job was submitted and is not over */
    bool stop_requested;
    bool shutdown; /* the daemon is stopping */
    mlt_job_t job;
    char *job_text;
    char *job_path;
    char **overrides;
    size_t n_overrides;
    char out_dir[1024];                 /* the job's output directory, for status and logs */
    char out_rel[MLT_SAFEPATH_MAX + 1]; /* the same, relative to state_dir (safepath) */
    int out_fd;                         /* the output directory (O_DIRECTORY), or -1 */
    phase_t phase;
    char message[MLT_MAX_ERROR_LEN + 1];
    char mem_err[MLT_MAX_ERROR_LEN + 1]; /* the last fork the shards refused for memory */
    wslot_t workers[MLT_MAX_WORKERS];
    uint32_t n_workers;
    uint64_t next_task;
    uint32_t n_lost;                      /* workers dropped during this job */
    char lost_msg[MLT_MAX_ERROR_LEN + 1]; /* the first: "worker N lost: why" */
    uint32_t shares;         /* data shares of the last step (coord_steps.c); 0: none yet */
    double stop_at;          /* a stop was requested: steps stop waiting for workers then */
    mlt_coord_run_t *run;    /* the run in progress, which a worker back joins (NULL: none) */
    mlt_client_t *client;    /* to the shards */
    mlt_outfile_t *progress; /* progress.jsonl */
    mlt_outfile_t *dlog;     /* decisions.jsonl */
    double t0;               /* job start (monotonic) */
    /* progress */
    int64_t clock; /* clocks the training branch has finished */
    double epoch;
    double last_loss;
    double val_acc, test_acc, val_rmse, test_rmse;
    uint32_t batch;
    mlt_tunables_def_t tunables;
    /* tuner progress, for status */
    uint32_t train_branch;
    uint32_t trials;
    double tuning_s, training_s;
    const char *tphase;
    /* who may talk (coord_sec.c) */
    const mlt_dkeys_t *keys; /* borrowed; keys->on: the control socket is a CURVE server */
    struct mlt_zap *zap;     /* the ZAP handler of ctx (keys, and the local socket) */
    char local[256];         /* the local control socket (ipc://), "" if none */
    /* checkpoints (coord_ckpt.c) */
    bool resuming;      /* the job came from a resume record, not a submit */
    uint64_t ckpt_seq;  /* the last complete checkpoint (0: none) */
    double ckpt_last;   /* job time of the last checkpoint */
    void *resume_state; /* the loaded checkpoint's tuner state (until the tuner takes it) */
    size_t resume_len;
    /* a lost shard (coord_ckpt.c, "a lost shard") */
    bool resumable;         /* loading or tuning: a lost shard's failure is mended by a resume */
    int shard_lost;         /* the shard (rank >= 1) whose loss failed the job's last step (-1) */
    int shard_back;         /* the job resumes because this shard came back (-1: not so) */
    uint32_t shard_resumes; /* such resumes since the last checkpoint written */
};

/* ---- coord_out.c: output ------------------------------------------------------ */

/* Seconds since the job started (monotonic). */
double mlt_coord__job_time(const mlt_coord_t *c);
/* A line of progress.jsonl: mlt_coord__line begins j as {"t":<job time>,
 * "event":event; the caller adds its fields (common/json.h); mlt_coord__emit
 * writes it (nothing without the file) and frees j. */
void mlt_coord__line(const mlt_coord_t *c, mlt_json_t *j, const char *event);
void mlt_coord__emit(mlt_coord_t *c, mlt_json_t *j);

/* ---- coord_sec.c: who may talk ---------------------------------------------------- */

/* Makes c->ctl a CURVE server when keys are on and binds it to control_bind,
 * after binding the local control socket (c->local). 0 or -errno with err. */
int mlt_coord__bind_control(mlt_coord_t *c, const mlt_dconf_t *conf, char *err, size_t errlen);
/* Stops the ZAP handler (before the context ends). */
void mlt_coord__unbind_control(mlt_coord_t *c);
/* 1 when the sender of msg (a frame read from c->ctl) may change the job
 * (SUBMIT, JOB_STOP): an authorised CurveZMQ key, or the local socket. */
int mlt_coord__may_change(const mlt_coord_t *c, void *msg);
/* Fails the job: phase failed, the message (printf-style) logged. Returns -1. */
int mlt_coord__fail_job(mlt_coord_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define NOTE_EVERY_S 10.0 /* how often a wait says in the log what it waits for */

/* ---- coord_out.c: output files and the warm start ---------------------------------- */

/* Fails the job (returns -1) when a write to one of its output files failed;
 * 0 when they are whole so far. */
int mlt_coord__check_outputs(mlt_coord_t *c);
/* Makes the job's output directory under state_dir and opens progress.jsonl,
 * decisions.jsonl (keeping their first ppos, dpos bytes; UINT64_MAX: all)
 * and job.conf, none through a link. 0, or -1 (the job has failed). */
int mlt_coord__open_outputs(mlt_coord_t *c, uint64_t ppos, uint64_t dpos);
/* Reads the job's warm start (tuner.warm_start) into w, saying in dlog what
 * was used or why not. */
void mlt_coord__warm_load(mlt_coord_t *c, FILE *dlog, mlt_warm_t *w);
/* Writes w to the output directory and state_dir/warm-start/<name>.conf.
 * 0, or -1 when a write failed (the job has failed). */
int mlt_coord__warm_save(mlt_coord_t *c, const mlt_warm_t *w);

/* ---- coord_steps.c: waiting for the workers --------------------------------------- */

/* Waits until no worker of the current step is busy (a dropped one is not
 * waited for). 0, 1 on a stop request (after STOP_GRACE_S at most), -1 on
 * shutdown or failure (the job has failed). */
int mlt_coord__wait_workers(mlt_coord_t *c, const char *what);
/* Waits until some worker takes tasks, at most worker_wait_s (then the job
 * fails). 0, 1 on a stop request, -1 on shutdown or failure. */
int mlt_coord__wait_active(mlt_coord_t *c, const char *what);
/* Hands t to every worker that takes tasks and waits until one finished it
 * (again, through resend when every worker of it was lost). 0, 1 on a stop
 * request, -1 on failure. resend may be NULL. */
int mlt_coord__step(mlt_coord_t *c, Mlt__Task *t, const char *what,
                    void (*resend)(mlt_coord_t *c, Mlt__Task *t));
/* A run handed out again: from its first clock no worker reported. */
void mlt_coord__run_resend(mlt_coord_t *c, Mlt__Task *t);
/* The run's clocks a lost worker left incomplete: the mean of what came. */
void mlt_coord__run_fill(mlt_coord_run_t *run);

/* ---- coord_ctl.c: the control endpoint ------------------------------------------ */

/* Sends task t to worker w (giving it the next task id) and marks the worker
 * busy unless it is TASK_STOP. */
void mlt_coord__send_task(mlt_coord_t *c, uint32_t w, Mlt__Task *t);
/* Tells the worker at routing id `id` to stop (TASK_STOP with reason). */
void mlt_coord__stop_worker(mlt_coord_t *c, const void *id, size_t id_len, const char *reason);
/* Whether worker w can take part in the job (the workers of a job run one
 * program); false with why (#13). */
bool mlt_coord__worker_fits(const mlt_coord_t *c, uint32_t w, char *why, size_t len);
/* Frees the submitted job (its parsed form, text, path and overrides). */
void mlt_coord__clear_job(mlt_coord_t *c);
/* Serves the control socket for up to timeout_s seconds, then drops the
 * workers silent for worker_timeout_s. Returns -ECANCELED when the daemon is
 * stopping. */
int mlt_coord__pump(mlt_coord_t *c, double timeout_s);

/* ---- coord_ctl.c: worker failure -------------------------------------------------- *
 * A worker is dropped when its connection is replaced (a new JOIN for its rank:
 * a restarted worker, or a stray one) or it is silent for worker_timeout_s. The
 * task it owed is not waited for: the step goes on with the others, or, when
 * no worker finished it, is handed out again (coord.c). The shards are told
 * (MSG_WORKER_GONE), so the SSP minimum no longer waits for it. A worker that
 * (re)joins loads the job (TASK_JOB) while the others work, then (after
 * MSG_WORKER_BACK) joins the run in progress at its highest reported clock
 * (coord.c, join_run) or takes the next step's task. */

/* Drops worker w (printf-style reason). */
void mlt_coord__drop_worker(mlt_coord_t *c, uint32_t w, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Sends TASK_JOB to joined workers that have not loaded the job. */
void mlt_coord__admit(mlt_coord_t *c);
/* Tells the shards which workers are gone or back, as the slots say. */
void mlt_coord__sync_shards(mlt_coord_t *c);
/* Workers that take tasks now (loaded). */
uint32_t mlt_coord__n_loaded(const mlt_coord_t *c);

/* coord_steps.c: the data shares. While a worker is lost, the workers that
 * take tasks share the data out among them: the count of shares of the next
 * step (n_loaded), or n_workers when every worker takes tasks (or none). */
uint32_t mlt_coord__share_count(const mlt_coord_t *c);

#endif
