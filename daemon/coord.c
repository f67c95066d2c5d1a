/* coord.c - see coord.h.
 *
 * The coordinator thread runs one job at a time as a plain sequence of steps
 * (run_job); every wait inside it goes through pump() (coord_ctl.c), which
 * serves whatever arrives on the control socket meanwhile (status requests,
 * submissions that must be refused, worker reports) and notices shutdown.
 * This file holds the job's steps (their waits for the workers are in
 * coord_steps.c), the executor that carries out the tuner's decisions, the
 * job's output files and the thread's lifecycle; the coordinator's state is
 * in coord_int.h.
 *
 * Job phases:
 *
 *   idle --SUBMIT accepted--> waiting-workers --all W joined--> loading
 *   loading --every worker loaded data and model (TASK_JOB done)--> training
 *   training --RUN of one test interval done on all workers--> testing
 *   testing --test branch evaluated and freed--> training | done
 *   any --JOB_STOP--> stopped (a step waits STOP_GRACE_S at most for its workers)
 *   any --worker error, divergence--> failed
 *   loading..testing --worker lost, on_worker_loss "fail"--> failed
 *   loading..testing --no worker left for worker_wait_s--> failed
 *   loading..testing --shard >= 1 lost, a checkpoint exists (fail_job: shard_loss)-->
 *       (waits for it: shard_resume) --back within worker_wait_s--> waiting-workers, resumed
 *       from the checkpoint (run_job again) | --not back--> failed
 *   done | stopped | failed --workers told TASK_STOP--> idle
 *
 * Each worker slot, beside (coord_ctl.c, "worker failure"):
 *
 *   free --JOIN (on_join)--> joined --TASK_JOB done (on_report)--> loaded
 *   joined | loaded --silent worker_timeout_s (check_silence)--> free   (dropped)
 *   joined | loaded --JOIN from a new connection (on_join)--> joined   (old one dropped)
 *   loaded: takes the next step's task (task_all, after WORKER_BACK to the shards)
 *
 * Branch 1 is the init branch (worker 0 writes the seeded weights); the tuner
 * (tuner.c) numbers every branch after it: eval, trials, training, tests. */
#include "daemon/coord.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "common/alloc.h"
#include "common/jobfile.h"
#include "common/json.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "daemon/coord_ckpt.h"
#include "daemon/coord_int.h"
#include "proto/wire.h"
#include "tuner/declog.h"
#include "tuner/tuner.h"
#include "tuner/warm.h"
#include "client/mltuner.h"

#define BRANCH_INIT 1u

const char *const mlt_coord__phase_names[] = {
    "idle", "waiting-workers", "loading", "training", "testing", "done", "stopped", "failed"};

/* ---- the job ------------------------------------------------------------------- */

int mlt_coord__fail_job(mlt_coord_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->message, sizeof c->message, fmt, ap);
    va_end(ap);
    if (mlt_coord__shard_loss(c))
        return -1; /* a lost shard: the job resumes once it is back (coord_main) */
    c->phase = PH_FAILED;
    log_error("job '%s' failed: %s", c->job.name, c->message);
    return -1;
}

static int branch_op(mlt_coord_t *c, int rc, const char *what)
{
    if (rc < 0)
        return mlt_coord__fail_job(c, "%s: %s", what, mlt_client_error(c->client));
    return 0;
}

/* ---- the executor: the tuner's decisions, carried out --------------------------- */

static uint32_t setting_batch(mlt_coord_t *c, const mlt_setting_t *s)
{
    double b = mlt_setting_get(&c->job, s, "batch_size", 128);
    return b >= 1 && b <= MLT_MAX_BATCH ? (uint32_t)b : 128;
}

/* The setting's server-side tunables (a tunable the job does not have keeps
 * the branch's value; the update rule's constants come from the job). */
static mlt_tunables_def_t setting_tunables(mlt_coord_t *c, const mlt_setting_t *s)
{
    mlt_tunables_def_t t = mlt_tunables_unset();
    const mlt_job_t *j = &c->job;
    t.lr = (float)mlt_setting_get(j, s, "lr", NAN);
    t.momentum = (float)mlt_setting_get(j, s, "momentum", NAN);
    t.weight_decay = (float)mlt_setting_get(j, s, "weight_decay", NAN);
    double st = mlt_setting_get(j, s, "staleness", -1);
    t.staleness = st >= 0 ? (int32_t)st : -1;
    double wu = mlt_setting_get(j, s, "warmup", -1);
    t.warmup = wu >= 0 ? (int32_t)wu : -1;
    t.beta1 = (float)mlt_setting_get(j, s, "beta1", j->update.beta1);
    t.beta2 = (float)j->update.beta2;
    t.eps = (float)j->update.eps;
    return t;
}

/* A fork the shards refuse for memory (memory_limit) is not the job's end:
 * the part made on shards that took it is freed and -ENOMEM goes back to the
 * tuner, which runs fewer trials at once or fails saying why (mem_err). */
static int ex_fork(void *ctx, uint32_t child, uint32_t parent, mlt_branch_kind_t kind,
                   const mlt_setting_t *s)
{
    mlt_coord_t *c = ctx;
    mlt_tunables_def_t t = setting_tunables(c, s);
    int rc = mlt_branch_fork(c->client, child, parent, kind, &t);
    if (rc == -ENOMEM) {
        snprintf(c->mem_err, sizeof c->mem_err, "fork of branch %u refused: %s", child,
                 mlt_client_error(c->client));
        log_warn("%s", c->mem_err);
        mlt_branch_free(c->client, child); /* where it was made; elsewhere ENOENT, ignored */
        return -ENOMEM;
    }
    return branch_op(c, rc, "fork") ? -1 : 0;
}

static int ex_tune(void *ctx, uint32_t branch, const mlt_setting_t *s)
{
    mlt_coord_t *c = ctx;
    mlt_tunables_def_t t = setting_tunables(c, s);
    return branch_op(c, mlt_branch_set_tunables(c->client, branch, &t), "set tunables") ? -1 : 0;
}

static int ex_free(void *ctx, uint32_t branch)
{
    mlt_coord_t *c = ctx;
    return branch_op(c, mlt_branch_free(c->client, branch), "free") ? -1 : 0;
}

static int ex_run(void *ctx, uint32_t branch, const mlt_setting_t *s, int64_t clock_start,
                  int64_t clocks, double data_epoch, double *loss, double *seconds)
{
    mlt_coord_t *c = ctx;
    Mlt__Task t;
    mlt__task__init(&t);
    t.kind = MLT__TASK_KIND__TASK_RUN;
    t.has_branch = t.has_clock_start = t.has_clocks = t.has_batch_size = t.has_data_epoch = 1;
    t.branch = branch;
    t.clock_start = clock_start;
    t.clocks = clocks;
    t.batch_size = setting_batch(c, s);
    t.data_epoch = data_epoch;
    size_t n = clocks > 0 ? (size_t)clocks : 0;
    mlt_coord_run_t run = {.task = &t,
                           .branch = branch,
                           .start = clock_start,
                           .n = clocks,
                           .hi = clock_start,
                           .sum = mlt_calloc(n + 1, sizeof *run.sum),
                           .count = mlt_calloc(n + 1, sizeof *run.count),
                           .loss = mlt_calloc(n + 1, sizeof *run.loss)};
    for (size_t i = 0; i < n; i++)
        run.loss[i] = NAN;
    double t0 = mlt_time_mono();
    c->run = &run;
    int rc = mlt_coord__step(c, &t, "a run", mlt_coord__run_resend);
    c->run = NULL;
    if (c->n_lost)
        mlt_coord__run_fill(&run);
    if (rc == 0 && mlt_coord__check_outputs(c))
        rc = -1;
    *seconds = mlt_time_mono() - t0;
    memcpy(loss, run.loss, n * sizeof *loss); /* the run's result, for the tuner */
    mlt_free(run.sum);
    mlt_free(run.count);
    mlt_free(run.loss);
    /* live split for status and metrics (the tuner's exact totals replace it
     * at the end): runs of the training branch train, the others are trials */
    if (branch == c->train_branch && c->tphase && strcmp(c->tphase, "training") == 0) {
        c->clock = clock_start + clocks;
        c->training_s += *seconds;
    } else {
        c->tuning_s += *seconds;
    }
    return rc;
}

static int ex_test(void *ctx, uint32_t branch, double *val, double *test)
{
    mlt_coord_t *c = ctx;
    c->phase = PH_TESTING;
    Mlt__Task t;
    mlt__task__init(&t);
    t.kind = MLT__TASK_KIND__TASK_TEST;
    t.has_branch = 1;
    t.branch = branch;
    int rc = mlt_coord__step(c, &t, "a test", NULL);
    c->phase = PH_TRAINING;
    if (rc)
        return rc;
    double vl = 0, tl = 0, vs = 0, ts = 0;
    uint64_t vc = 0, vn = 0, tc = 0, tn = 0;
    for (uint32_t w = 0; w < c->n_workers; w++) {
        const wslot_t *ws = &c->workers[w];
        if (!ws->in_step || !ws->task_ok)
            continue; /* a worker lost during the test: its share is left out */
        vl += ws->val_loss;
        tl += ws->test_loss;
        vs += ws->val_sq;
        ts += ws->test_sq;
        vc += ws->val_correct;
        vn += ws->val_count;
        tc += ws->test_correct;
        tn += ws->test_count;
    }
    bool mf = mlt_job_rmse(&c->job);
    if (mf) {
        *val = c->val_rmse = vn ? sqrt(vs / (double)vn) : NAN;
        *test = c->test_rmse = tn ? sqrt(ts / (double)tn) : NAN;
    } else {
        *val = c->val_acc = vn ? (double)vc / (double)vn : NAN;
        *test = c->test_acc = tn ? (double)tc / (double)tn : NAN;
    }
    mlt_json_t j;
    mlt_coord__line(c, &j, "test");
    mlt_json_uint(&j, "branch", c->train_branch);
    mlt_json_int(&j, "clock", c->clock);
    mlt_json_fixed(&j, "epoch", c->epoch, 4);
    mlt_json_num(&j, mf ? "val_rmse" : "accuracy", *val);
    mlt_json_num(&j, mf ? "test_rmse" : "test_accuracy", *test);
    mlt_json_num(&j, "val_loss", vn ? vl / (double)vn : NAN);
    mlt_json_num(&j, "test_loss", tn ? tl / (double)tn : NAN);
    mlt_json_uint(&j, "val_count", vn);
    mlt_json_uint(&j, "test_count", tn);
    mlt_coord__emit(c, &j);
    return mlt_coord__check_outputs(c) ? -1 : rc; /* rc: 1 when a stop was requested */
}

/* Training samples per worker in an epoch: the largest partition, or, while
 * the workers left share the data out (coord_steps.c), the whole set over
 * their count. An epoch stays one pass over the whole training set. */
static uint64_t part_size(const mlt_coord_t *c)
{
    uint64_t part = 0, total = 0;
    for (uint32_t w = 0; w < c->n_workers; w++) {
        if (c->workers[w].part_size > part)
            part = c->workers[w].part_size;
        if (c->workers[w].train_total > total)
            total = c->workers[w].train_total;
    }
    uint32_t n = mlt_coord__share_count(c);
    if (n < c->n_workers && total)
        part = (total + n - 1) / n;
    return part;
}

static double ex_epoch_clocks(void *ctx, const mlt_setting_t *s)
{
    mlt_coord_t *c = ctx;
    uint32_t b = setting_batch(c, s);
    return (double)((part_size(c) + b - 1) / b);
}

static double ex_now(void *ctx)
{
    return mlt_coord__job_time(ctx);
}

static void ex_progress(void *ctx, const char *phase, uint32_t branch, const mlt_setting_t *s,
                        double epoch, double val, double test, uint32_t trials)
{
    mlt_coord_t *c = ctx;
    c->tphase = phase;
    c->epoch = epoch;
    c->trials = trials;
    if (strcmp(phase, "training") == 0) {
        c->train_branch = branch;
        c->tunables = setting_tunables(c, s);
        c->batch = setting_batch(c, s);
    }
    (void)val;
    (void)test;
}

/* progress.jsonl's first line */
static void emit_submitted(mlt_coord_t *c)
{
    mlt_json_t j;
    mlt_coord__line(c, &j, "submitted");
    mlt_json_str(&j, "job", c->job.name);
    mlt_json_int(&j, "workers", c->job.workers);
    mlt_coord__emit(c, &j);
}

/* Loads the newest complete checkpoint into the shards and the coordinator
 * and opens the outputs cut back to its positions. 0 (c->resume_state holds
 * the tuner's state); 1 when there is none (the job starts again, its
 * outputs new); -1 when none loads (the job has failed). */
static int resume_job(mlt_coord_t *c)
{
    uint64_t dpos = 0, ppos = 0;
    const int back = c->shard_back; /* a lost shard came back (coord_main) */
    c->shard_back = -1;
    int rc = mlt_coord__ckpt_load(c, &c->resume_state, &c->resume_len, &dpos, &ppos);
    if (rc == -ENOENT && back > 0) { /* its other shards hold the job: no fresh start */
        snprintf(c->message, sizeof c->message,
                 "shard %d (%s) came back, but no complete checkpoint of the job is left to "
                 "resume from",
                 back, c->shards[back]);
        rc = -EIO;
    }
    if (rc == -ENOENT) {
        mlt_coord__ckpt_clear(c);
        c->t0 = mlt_time_mono();
        if (mlt_coord__open_outputs(c, 0, 0))
            return -1;
        emit_submitted(c);
        return mlt_coord__check_outputs(c) ? -1 : 1;
    }
    if (rc) { /* the end goes after what the outputs hold */
        char why[sizeof c->message];
        memcpy(why, c->message, sizeof why);
        if (mlt_coord__open_outputs(c, UINT64_MAX, UINT64_MAX) == 0)
            mlt_coord__fail_job(c, "%s", why);
        return -1;
    }
    if (mlt_coord__open_outputs(c, ppos, dpos))
        return -1;
    mlt_json_t j;
    mlt_coord__line(c, &j, "resume");
    mlt_json_uint(&j, "checkpoint", c->ckpt_seq);
    mlt_json_uint(&j, "branch", c->train_branch);
    mlt_json_int(&j, "clock", c->clock);
    mlt_json_fixed(&j, "epoch", c->epoch, 4);
    if (back > 0)
        mlt_json_int(&j, "shard", back);
    mlt_coord__emit(c, &j);
    if (back > 0) { /* before the tuner's own "resume" line: why it resumes */
        mlt_declog_begin(&j, mlt_coord__job_time(c), "shard_lost", c->train_branch);
        mlt_json_int(&j, "shard", back);
        mlt_json_uint(&j, "checkpoint", c->ckpt_seq);
        mlt_json_strf(&j, "reason",
                      "shard %d was lost and came back: the job goes on from checkpoint %llu", back,
                      (unsigned long long)c->ckpt_seq);
        mlt_declog_end(&j, mlt_outfile_stream(c->dlog));
    }
    return mlt_coord__check_outputs(c) ? -1 : 0;
}

static int run_job(mlt_coord_t *c)
{
    mlt_job_t *j = &c->job;
    c->n_workers = (uint32_t)j->workers;
    c->phase = PH_WAITING;
    c->n_lost = 0;
    c->lost_msg[0] = '\0';
    c->shares = 0;
    c->stop_at = 0;
    c->clock = 0;
    c->epoch = 0;
    c->last_loss = NAN;
    c->tuning_s = c->training_s = 0;
    c->trials = 0;
    c->train_branch = 0;
    c->tphase = NULL;
    c->val_acc = c->test_acc = c->val_rmse = c->test_rmse = NAN;
    c->batch = (uint32_t)mlt_job_default(j, "batch_size", 128);
    c->tunables = mlt_tunables_unset();
    c->tunables.lr = (float)mlt_job_default(j, "lr", 0.01);
    c->tunables.momentum = (float)mlt_job_default(j, "momentum", 0.0);
    c->tunables.weight_decay = (float)mlt_job_default(j, "weight_decay", 0.0);
    c->tunables.staleness = (int32_t)mlt_job_default(j, "staleness", 0);
    c->tunables.warmup = (int32_t)mlt_job_default(j, "warmup", 0);
    c->tunables.beta1 = (float)mlt_job_default(j, "beta1", j->update.beta1);
    c->tunables.beta2 = (float)j->update.beta2;
    c->tunables.eps = (float)j->update.eps;
    for (uint32_t w = (uint32_t)j->workers; w < MLT_MAX_WORKERS; w++)
        if (c->workers[w].joined) {
            mlt_coord__stop_worker(c, c->workers[w].id, c->workers[w].id_len, "not in this job");
            c->workers[w].joined = false;
        }

    int rc;
    /* a job from a resume record opens its outputs once its checkpoint is
     * loaded (they are cut back to the checkpoint's positions) */
    bool resume = c->resuming;
    c->resuming = false;
    c->t0 = mlt_time_mono();
    if (!resume) {
        mlt_coord__ckpt_clear(c);
        mlt_coord__resume_record(c);
        if (mlt_coord__open_outputs(c, 0, 0))
            return -1;
        emit_submitted(c);
        if (mlt_coord__check_outputs(c))
            return -1;
    }
    char err[512];
    if (!resume) {
        /* the shards start clean: a job that failed after a shard was lost
         * could not end there, and left its branches on the others */
        c->client =
            mlt_client_new_keys((const char *const *)c->shards, (uint32_t)c->n_shards, 0,
                                c->keys && c->keys->on ? &c->keys->ckeys : NULL, err, sizeof err);
        if (!c->client)
            return mlt_coord__fail_job(c, "cannot reach the shards: %s", err);
        if (mlt_client_job_end(c->client) < 0)
            return mlt_coord__fail_job(c, "cannot clear the shards: %s",
                                       mlt_client_error(c->client));
    }
    if (resume) {
        /* the shards get their branches back before the workers come: the
         * checkpoint holds the job's tables, which the workers' register
         * then matches */
        c->client =
            mlt_client_new_keys((const char *const *)c->shards, (uint32_t)c->n_shards, 0,
                                c->keys && c->keys->on ? &c->keys->ckeys : NULL, err, sizeof err);
        if (!c->client)
            return mlt_coord__fail_job(c, "cannot reach the shards: %s", err);
        if ((rc = resume_job(c)) < 0)
            return -1;
        resume = rc == 0;
    }

    /* every worker joins (at most worker_wait_s) */
    double next_note = 0, t_join = mlt_time_mono();
    for (;;) {
        uint32_t joined = 0, missing = 0; /* the first missing rank */
        for (uint32_t w = c->n_workers; w-- > 0;) {
            joined += c->workers[w].joined;
            if (!c->workers[w].joined)
                missing = w;
        }
        if (joined == c->n_workers)
            break;
        if (c->stop_requested) {
            c->phase = PH_STOPPED;
            snprintf(c->message, sizeof c->message, "stopped while waiting for workers");
            return 0;
        }
        double now = mlt_time_mono();
        if (now - t_join > j->worker_wait_s)
            return mlt_coord__fail_job(
                c,
                "%u of %u workers joined within worker_wait_s = %g s (worker %u "
                "did not)",
                joined, c->n_workers, j->worker_wait_s, missing);
        if (now > next_note) {
            log_info("job '%s': %u of %u workers joined (not worker %u); waiting up to %.0f s "
                     "more (worker_wait_s)",
                     j->name, joined, c->n_workers, missing, j->worker_wait_s - (now - t_join));
            next_note = now + NOTE_EVERY_S;
        }
        if (mlt_coord__pump(c, 0.5) == -ECANCELED)
            return -1;
    }

    /* load: data and model on every worker; they register the tables. A worker
     * lost meanwhile is replaced later (admit) or, with none left, waited for. */
    for (uint32_t w = 0; w < c->n_workers; w++) {
        char why[MLT_MAX_ERROR_LEN];
        if (!mlt_coord__worker_fits(c, w, why, sizeof why))
            return mlt_coord__fail_job(c, "worker %u: %s", w, why);
    }
    c->phase = PH_LOADING;
    c->resumable = true; /* from here to the tuner's end a lost shard is resumed from */
    Mlt__Task t;
    mlt__task__init(&t);
    t.kind = MLT__TASK_KIND__TASK_JOB;
    t.job_text = c->job.text; /* overrides applied */
    t.n_servers = (size_t)c->n_shards;
    t.servers = c->shards;
    t.has_n_workers = 1;
    t.n_workers = c->n_workers;
    for (uint32_t w = 0; w < c->n_workers; w++)
        mlt_coord__send_task(c, w, &t);
    if ((rc = mlt_coord__wait_workers(c, "loading")) != 0 ||
        (rc = mlt_coord__wait_active(c, "loading")) != 0)
        return rc < 0 ? -1 : (c->phase = PH_STOPPED, 0);
    if (part_size(c) == 0)
        return mlt_coord__fail_job(c, "the workers have no training samples");

    if (!c->client)
        c->client =
            mlt_client_new_keys((const char *const *)c->shards, (uint32_t)c->n_shards, 0,
                                c->keys && c->keys->on ? &c->keys->ckeys : NULL, err, sizeof err);
    if (!c->client)
        return mlt_coord__fail_job(c, "cannot reach the shards: %s", err);
    mlt_coord__sync_shards(c); /* a worker lost while loading is out of the SSP minimum */

    /* init branch: one worker writes the seeded weights (the same on any); the
     * training branch forks from it. A resumed job has its branches already. */
    if (!resume &&
        branch_op(c, mlt_branch_create(c->client, BRANCH_INIT, MLT_BRANCH_INIT, &c->tunables),
                  "create of the init branch"))
        return -1;
    while (!resume) {
        if ((rc = mlt_coord__wait_active(c, "initialisation")) != 0)
            return rc < 0 ? -1 : (c->phase = PH_STOPPED, 0);
        mlt_coord__sync_shards(c);
        uint32_t w = 0;
        while (!(c->workers[w].joined && c->workers[w].loaded))
            w++;
        for (uint32_t k = 0; k < c->n_workers; k++)
            c->workers[k].in_step = false;
        mlt__task__init(&t);
        t.kind = MLT__TASK_KIND__TASK_INIT;
        t.has_branch = 1;
        t.branch = BRANCH_INIT;
        mlt_coord__send_task(c, w, &t);
        if ((rc = mlt_coord__wait_workers(c, "initialisation")) != 0)
            return rc < 0 ? -1 : (c->phase = PH_STOPPED, 0);
        if (c->workers[w].task_ok)
            break;
    }
    /* the tuning logic takes it from here */
    FILE *dlog = mlt_outfile_stream(c->dlog);
    c->phase = PH_TRAINING;
    mlt_exec_t ex = {.ctx = c,
                     .fork = ex_fork,
                     .free = ex_free,
                     .tune = ex_tune,
                     .run = ex_run,
                     .test = ex_test,
                     .epoch_clocks = ex_epoch_clocks,
                     .now = ex_now,
                     .progress = ex_progress,
                     .checkpoint = mlt_coord__ckpt_maybe};
    mlt_tuner_result_t res;
    mlt_warm_t warm;
    if (resume) {
        rc = mlt_tuner_resume(j, &ex, BRANCH_INIT, c->resume_state, c->resume_len, dlog, &res);
    } else {
        mlt_coord__warm_load(c, dlog, &warm);
        rc = mlt_tuner_run(j, &ex, BRANCH_INIT, dlog, &warm, &res);
    }
    c->resumable = false;
    if (rc < 0 && c->shard_lost > 0)
        return -1; /* coord_main resumes the job once the shard is back */
    if (rc == 0 && mlt_coord__check_outputs(c))
        rc = -1;
    if (rc == 0) {
        int wrc = mlt_outfile_close(&c->dlog); /* flushed and fsync'd */
        if (wrc)
            rc = mlt_coord__fail_job(c, "cannot write %s/decisions.jsonl: %s", c->out_dir,
                                     strerror(-wrc));
    }
    if (rc == 0 && mlt_coord__warm_save(c, &res.learned))
        rc = -1;
    c->trials = res.trials;
    c->tuning_s = res.trial_seconds;
    c->training_s = res.train_seconds;
    if (isfinite(res.test)) { /* the result's branch, not the last one tested */
        if (mlt_job_rmse(j)) {
            c->val_rmse = res.val;
            c->test_rmse = res.test;
        } else {
            c->val_acc = res.val;
            c->test_acc = res.test;
        }
        c->epoch = res.epoch;
    }
    if (rc < 0 && c->shutdown && c->phase != PH_FAILED) {
        /* SIGTERM or SIGINT: the job did not fail, it was stopped */
        c->phase = PH_STOPPED;
        snprintf(c->message, sizeof c->message, "stopped: the daemon is shutting down");
        return 0;
    }
    if (rc < 0) {
        if (c->phase != PH_FAILED && c->mem_err[0])
            mlt_coord__fail_job(c, "%s%s%s", res.reason[0] ? res.reason : "",
                                res.reason[0] ? ": " : "", c->mem_err);
        else if (c->phase != PH_FAILED)
            mlt_coord__fail_job(c, "%s", res.reason[0] ? res.reason : "tuning failed");
        return -1;
    }
    if (!c->message[0])
        snprintf(c->message, sizeof c->message, "%s", res.reason);
    if (c->stop_requested && !c->message[0])
        snprintf(c->message, sizeof c->message, "stopped by request");
    c->phase = c->stop_requested ? PH_STOPPED : PH_DONE;
    return 0;
}

/* Closes the job's outputs, stops its workers and (when the shards still
 * serve, i.e. not at daemon shutdown) frees its branches there. */
static void end_job(mlt_coord_t *c)
{
    if (c->phase == PH_STOPPED && !c->message[0]) /* stopped while loading or initialising */
        snprintf(c->message, sizeof c->message, "stopped by request");
    if (c->progress) {
        /* a cut decision log fails the job before its end is written */
        mlt_coord__check_outputs(c);
        mlt_json_t j;
        mlt_coord__line(c, &j, "end");
        mlt_json_str(&j, "phase", mlt_coord__phase_names[c->phase]);
        mlt_json_str(&j, "reason", c->message);
        mlt_json_fixed(&j, "epoch", c->epoch, 4);
        mlt_json_num(&j, "accuracy", c->val_acc);
        mlt_json_num(&j, "test_accuracy", c->test_acc);
        mlt_json_num(&j, "val_rmse", c->val_rmse);
        mlt_json_num(&j, "test_rmse", c->test_rmse);
        mlt_json_uint(&j, "trials", c->trials);
        mlt_json_fixed(&j, "tuning_seconds", c->tuning_s, 3);
        mlt_json_fixed(&j, "training_seconds", c->training_s, 3);
        mlt_coord__emit(c, &j);
        int rc = mlt_outfile_close(&c->progress);
        if (rc && c->phase != PH_FAILED)
            mlt_coord__fail_job(c, "cannot write %s/progress.jsonl: %s", c->out_dir, strerror(-rc));
    }
    mlt_outfile_close(&c->dlog); /* a job that ended before the tuner closed it */
    if (c->out_fd >= 0)
        close(c->out_fd);
    c->out_fd = -1;
    for (uint32_t w = 0; w < MLT_MAX_WORKERS; w++) {
        wslot_t *ws = &c->workers[w];
        if (ws->joined)
            mlt_coord__stop_worker(c, ws->id, ws->id_len, c->message[0] ? c->message : "job over");
        memset(ws, 0, sizeof *ws);
    }
    if (c->client) {
        if (!c->shutdown)
            mlt_client_job_end(c->client); /* frees every branch on the shards */
        mlt_client_destroy(&c->client);
    }
    mlt_free(c->resume_state);
    c->resume_state = NULL;
    if (!c->shutdown) { /* over: not resumed (at shutdown it resumes at the next start) */
        mlt_coord__resume_forget(c);
        mlt_coord__ckpt_clear(c);
    }
    log_info("job '%s' %s: %s", c->job.name, mlt_coord__phase_names[c->phase], c->message);
    c->have_job = false;
}

/* A shard of rank >= 1 was lost mid-job (mlt_coord__shard_loss took the
 * failure for it; see coord_ckpt.h): the job lets go of the shards' client
 * and of every task out (each worker keeps its connection and slot: a late
 * report of its old task is ignored), waits for the shard to answer again
 * and, once it does, closes its outputs where they are and is set to resume
 * from its newest complete checkpoint, as after a daemon restart (run_job,
 * resume_job: the outputs cut back, the workers sent the job again). 0: run
 * it again; -1: it failed or stopped while waiting (its outputs still open
 * for the end). */
static int shard_resume(mlt_coord_t *c)
{
    int s = c->shard_lost;
    c->shard_lost = -1;
    c->shard_resumes++;
    mlt_client_destroy(&c->client); /* broken: it sends nothing more */
    mlt_free(c->resume_state);
    c->resume_state = NULL;
    c->run = NULL; /* (ex_run has returned: none is out) */
    for (uint32_t w = 0; w < MLT_MAX_WORKERS; w++) {
        wslot_t *ws = &c->workers[w];
        wslot_t keep = *ws;
        memset(ws, 0, sizeof *ws);
        ws->joined = keep.joined;
        memcpy(ws->id, keep.id, sizeof ws->id);
        ws->id_len = keep.id_len;
        ws->last_seen = keep.last_seen;
    }
    int rc = mlt_coord__shard_wait(c, s);
    if (rc == -1 && c->shutdown && c->phase != PH_FAILED) {
        c->phase = PH_STOPPED; /* resumed at the next start, as run_job says */
        snprintf(c->message, sizeof c->message, "stopped: the daemon is shutting down");
    }
    if (rc)
        return -1;
    int wrc = mlt_outfile_close(&c->progress);
    int drc = mlt_outfile_close(&c->dlog);
    if (c->out_fd >= 0)
        close(c->out_fd);
    c->out_fd = -1;
    if (wrc || drc) /* the end goes after what they hold */
        return mlt_coord__open_outputs(c, UINT64_MAX, UINT64_MAX) == 0
                   ? mlt_coord__fail_job(c, "cannot write %s/%s: %s", c->out_dir,
                                         wrc ? "progress.jsonl" : "decisions.jsonl",
                                         strerror(wrc ? -wrc : -drc))
                   : -1;
    c->resuming = true;
    c->shard_back = s;
    return 0;
}

static void *coord_main(void *arg)
{
    mlt_coord_t *c = arg;
    while (!c->shutdown) {
        if (!c->have_job) {
            if (mlt_coord__pump(c, 1.0) == -ECANCELED)
                break;
            continue;
        }
        c->shard_resumes = 0;
        run_job(c);
        c->resumable = false;
        while (c->shard_lost > 0 && shard_resume(c) == 0) {
            run_job(c);
            c->resumable = false;
        }
        end_job(c);
    }
    return NULL;
}

/* ---- lifecycle ------------------------------------------------------------------ */

mlt_coord_t *mlt_coord_new(const mlt_dconf_t *conf, const mlt_dkeys_t *keys,
                           const char *const *shards, int n_shards, char *err, size_t errlen)
{
    mlt_coord_t *c = mlt_calloc(1, sizeof *c);
    c->keys = keys;
    c->ctx = zmq_ctx_new();
    c->ctl = zmq_socket(c->ctx, ZMQ_ROUTER);
    int zero = 0;
    int64_t maxmsg = MLT_MAX_HEADER_BYTES;
    zmq_setsockopt(c->ctl, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(c->ctl, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    if (mlt_coord__bind_control(c, conf, err, errlen) < 0) {
        mlt_coord__unbind_control(c);
        zmq_close(c->ctl);
        zmq_ctx_term(c->ctx);
        mlt_free(c);
        return NULL;
    }
    size_t len = sizeof c->endpoint;
    zmq_getsockopt(c->ctl, ZMQ_LAST_ENDPOINT, c->endpoint, &len);
    char inproc[64];
    snprintf(inproc, sizeof inproc, "inproc://coord-stop-%p", (void *)c);
    c->stop_rx = zmq_socket(c->ctx, ZMQ_PAIR);
    c->stop_tx = zmq_socket(c->ctx, ZMQ_PAIR);
    zmq_bind(c->stop_rx, inproc);
    zmq_connect(c->stop_tx, inproc);
    c->n_shards = n_shards;
    c->shards = mlt_calloc((size_t)n_shards, sizeof *c->shards);
    for (int i = 0; i < n_shards; i++)
        c->shards[i] = mlt_strdup(shards[i]);
    c->state_dir = mlt_strdup(conf->state_dir);
    c->out_fd = -1;
    c->worker_timeout_s = conf->worker_timeout_s;
    if (conf->worker_timeout_s >= conf->pull_timeout_s)
        log_warn("worker_timeout_s (%g s) is not below pull_timeout_s (%g s): the pulls of the "
                 "others time out, and the job fails, before a dead worker is dropped",
                 conf->worker_timeout_s, conf->pull_timeout_s);
    if (conf->worker_timeout_s < 2.0) /* workers heartbeat every 0.5 s (mltuner-worker) */
        log_warn("worker_timeout_s = %g s is short: workers heartbeat every 0.5 s, and a busy "
                 "machine can make a healthy one look silent",
                 conf->worker_timeout_s);
    c->phase = PH_IDLE;
    c->shard_lost = c->shard_back = -1;
    /* task ids differ from a previous run's, whose workers may still report */
    c->next_task = (uint64_t)(mlt_time_wall() * 1000.0) << 16;
    return c;
}

const char *mlt_coord_endpoint(const mlt_coord_t *c)
{
    return c->endpoint;
}

int mlt_coord_start(mlt_coord_t *c)
{
    mlt_coord__resume_find(c); /* a job the daemon was running when it died */
    int rc = pthread_create(&c->thread, NULL, coord_main, c);
    if (rc)
        return -rc;
    c->started = true;
    return 0;
}

void mlt_coord_destroy(mlt_coord_t **cp)
{
    if (!cp || !*cp)
        return;
    mlt_coord_t *c = *cp;
    if (c->started) {
        zmq_send(c->stop_tx, "stop", 4, 0);
        pthread_join(c->thread, NULL);
    }
    c->shutdown = true;
    if (c->have_job) {
        snprintf(c->message, sizeof c->message, "the daemon is shutting down");
        c->phase = PH_STOPPED;
        end_job(c);
    }
    mlt_coord__clear_job(c);
    mlt_coord__unbind_control(c);
    zmq_close(c->ctl);
    zmq_close(c->stop_rx);
    zmq_close(c->stop_tx);
    zmq_ctx_term(c->ctx);
    for (int i = 0; i < c->n_shards; i++)
        mlt_free(c->shards[i]);
    mlt_free(c->shards);
    mlt_free(c->state_dir);
    mlt_free(c);
    *cp = NULL;
}
