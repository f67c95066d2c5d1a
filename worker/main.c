/* main.c - mltuner-worker.
 *
 *   mltuner-worker --coordinator ENDPOINT --rank N     one worker of a job
 *   mltuner-worker --standalone JOB.conf [--set k=v]  the same training, no daemon
 *
 * As a job's worker it joins the coordinator with libmltuner's worker session
 * and then does what each task says: load the job's data and model and
 * register the tables (JOB), write the seeded initial weights (INIT, worker 0),
 * run clocks on a branch (RUN: pull, step, push, clock, and a report per clock),
 * evaluate a branch (TEST), exit (STOP). */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "common/alloc.h"
#include "common/fpmode.h"
#include "common/jobfile.h"
#include "common/curve.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "kernels/cpu.h"
#include "kernels/gpu.h"
#include "kernels/optim.h"
#include "proto/limits.h"
#include "client/mltuner.h"
#include "worker/trainer.h"

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: mltuner-worker --coordinator ENDPOINT --rank N [--log-level L]\n"
               "       mltuner-worker --standalone JOB.conf [--set KEY=VALUE]... [--log-level L]\n"
               "  --coordinator EP  the control endpoint of mltunerd rank 0\n"
               "  --rank N          this worker's index in the job (0-based)\n"
               "  --standalone JOB  train JOB's model with its default tunables, no daemon;\n"
               "                    prints loss, accuracy and time per epoch\n"
               "  --set KEY=VALUE   override a job key (standalone), e.g. tunables.lr.default=0.03\n"
               "  --threads N       compute threads (default: all cores standalone, 1 as a job's\n"
               "                    worker, since a machine usually runs one worker per core or GPU)\n"
               "  --parallel HOW    how the CPU backend uses them: batch (each thread a slice of\n"
               "                    every batch, BLAS on one thread), blas (BLAS threads), or auto\n"
               "                    (default: batch for a cnn, blas otherwise)\n"
               "  --key FILE        this worker's CurveZMQ secret key (else $MLTUNER_KEY), for a\n"
               "                    daemon with curve_key set\n"
               "  --server-key FILE the daemon's public key (else $MLTUNER_SERVER_KEY, else\n"
               "                    /etc/mltuner/server.pub)\n");
}

/* CurveZMQ (--key, --server-key): NULL until load_keys finds a key. */
static mlt_client_keys_t opt_keys_buf, *opt_keys;

/* Loads the keys the worker connects with. 0, or -1 after printing why. */
static int load_keys(const char *key, const char *server_key)
{
    if (!key || !*key)
        key = getenv("MLTUNER_KEY");
    if (!server_key || !*server_key)
        server_key = getenv("MLTUNER_SERVER_KEY");
    if (!key || !*key)
        return 0;
    if (!server_key || !*server_key)
        server_key = "/etc/mltuner/server.pub";
    mlt_curve_pair_t me;
    char err[512];
    if (mlt_curve_load_secret(key, &me, err, sizeof err) < 0 ||
        mlt_curve_load_public(server_key, opt_keys_buf.server_key, err, sizeof err) < 0) {
        fprintf(stderr, "mltuner-worker: %s\n", err);
        return -1;
    }
    memcpy(opt_keys_buf.public_key, me.pub, sizeof me.pub);
    memcpy(opt_keys_buf.secret_key, me.sec, sizeof me.sec);
    opt_keys = &opt_keys_buf;
    return 0;
}

/* Compute threads (--threads, 0: the default) and how the CPU backend uses
 * them (--parallel). */
enum { PAR_AUTO, PAR_BATCH, PAR_BLAS };
static int opt_threads;
static int opt_parallel = PAR_AUTO;
static char threads_note[64] = "1 thread"; /* what set_threads did, for the header */

/* Gives trainer t (of `job`) its compute threads: standalone all cores by
 * default, a job's worker 1. Split over the batch (mlt_trainer_set_threads,
 * BLAS on one thread) for a model with convolutions, whose small per-chunk
 * GEMMs parallelise badly inside BLAS; to BLAS otherwise, whose threads do
 * better on an mlp's few large GEMMs. Measured with 2 threads (bench/worker):
 * fmnist-cnn 2360 samples/s split against 1822 in BLAS threads, fmnist-mlp
 * 78-95k split against 107-111k in BLAS threads. */
static void set_threads(mlt_trainer_t *t, const mlt_job_t *job, bool standalone)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    uint32_t n = opt_threads ? (uint32_t)opt_threads : standalone && cores > 1 ? (uint32_t)cores : 1;
    int how = opt_parallel != PAR_AUTO             ? opt_parallel
              : job->model.type == MLT_MODEL_CNN ? PAR_BATCH
                                                  : PAR_BLAS;
    if (how == PAR_BLAS) {
        /* standalone without --threads: OpenBLAS's own default (all cores,
         * or OPENBLAS_NUM_THREADS) */
        if (opt_threads || !standalone)
            openblas_set_num_threads((int)n);
        mlt_trainer_set_threads(t, 1);
        snprintf(threads_note, sizeof threads_note, "%d BLAS thread%s", openblas_get_num_threads(),
                 openblas_get_num_threads() == 1 ? "" : "s");
        return;
    }
    openblas_set_num_threads(1);
    int rc = mlt_trainer_set_threads(t, n);
    if (rc < 0)
        mlt_log(MLT_LOG_WARN, "could not start %u compute threads (%s): one thread", n,
                strerror(-rc));
    n = mlt_trainer_threads(t);
    snprintf(threads_note, sizeof threads_note, n == 1 ? "1 thread" : "%u threads (batch slices)", n);
}

/* ---- standalone ---------------------------------------------------------------- */

/* The standalone loop's optimizer: per table, the state arrays and scalars a
 * shard keeps per chunk, and the same rule applied to the whole table. The
 * trainer's parameters are the point gradients are taken at (y); under a rule
 * that keeps an average, evaluation reads x, as a test branch does. */
typedef struct local_opt {
    mlt_rule_t rule;
    bool average;            /* update.average */
    int x_array;             /* state array holding x; -1: none */
    uint32_t nt;             /* tables */
    float **state;           /* per table: the rule's state arrays */
    mlt_optim_scalars_t *sc; /* per table */
    float **saved;           /* per table, x_array >= 0: y while x is evaluated */
} local_opt_t;

/* State for the trainer's tables, the sequences started at its current
 * parameters (as a shard's write starts them). */
static void local_opt_init(local_opt_t *o, mlt_trainer_t *t, const mlt_job_t *job)
{
    o->rule = (mlt_rule_t)job->update.rule;
    o->average = job->update.average;
    o->x_array = mlt_optim_average_array(o->rule, o->average);
    o->nt = mlt_trainer_n_tables(t);
    o->state = mlt_calloc(o->nt, sizeof *o->state);
    o->sc = mlt_calloc(o->nt, sizeof *o->sc);
    o->saved = mlt_calloc(o->nt, sizeof *o->saved);
    float *const *p = mlt_trainer_params(t);
    for (uint32_t i = 0; i < o->nt; i++) {
        uint64_t n = mlt_trainer_table_size(t, i);
        o->state[i] = mlt_calloc(n * mlt_optim_state_floats(o->rule, o->average), sizeof(float));
        if (o->x_array >= 0)
            o->saved[i] = mlt_calloc(n, sizeof(float));
        mlt_optim_restart(o->rule, o->average, p[i], o->state[i], n, &o->sc[i]);
    }
}

static void local_opt_free(local_opt_t *o)
{
    for (uint32_t i = 0; i < o->nt; i++) {
        mlt_free(o->state[i]);
        mlt_free(o->saved[i]);
    }
    mlt_free(o->state);
    mlt_free(o->sc);
    mlt_free(o->saved);
}

/* One update of every table with the gradients of the last step. */
static void local_opt_step(local_opt_t *o, mlt_trainer_t *t, const mlt_hyper_t *h)
{
    float *const *p = mlt_trainer_params(t);
    float *const *g = mlt_trainer_grads(t);
    for (uint32_t i = 0; i < o->nt; i++)
        mlt_optim_update(o->rule, o->average, h, p[i], o->state[i], g[i],
                         mlt_trainer_table_size(t, i), &o->sc[i]);
}

/* Validation (v) and test (te) on what a test reads: x where the rule keeps
 * an average (y is put back after), else the parameters. */
static void local_opt_eval(local_opt_t *o, mlt_trainer_t *t, mlt_eval_t *v, mlt_eval_t *te)
{
    float *const *p = mlt_trainer_params(t);
    for (uint32_t i = 0; o->x_array >= 0 && i < o->nt; i++) {
        size_t bytes = mlt_trainer_table_size(t, i) * sizeof(float);
        memcpy(o->saved[i], p[i], bytes);
        memcpy(p[i], o->state[i] + (size_t)o->x_array * mlt_trainer_table_size(t, i), bytes);
    }
    mlt_trainer_eval_all(t, 0, v);
    mlt_trainer_eval_all(t, 1, te);
    for (uint32_t i = 0; o->x_array >= 0 && i < o->nt; i++)
        memcpy(p[i], o->saved[i], mlt_trainer_table_size(t, i) * sizeof(float));
}

static int run_standalone(const char *path, char **sets, int n_sets)
{
    mlt_job_t job;
    char err[512];
    if (mlt_job_load(path, &job, err, sizeof err) < 0) {
        fprintf(stderr, "mltuner-worker: %s\n", err);
        return 2;
    }
    for (int i = 0; i < n_sets; i++) {
        char *eq = strchr(sets[i], '=');
        if (!eq) {
            fprintf(stderr, "mltuner-worker: --set expects KEY=VALUE, got '%s'\n", sets[i]);
            mlt_job_free(&job);
            return 2;
        }
        *eq = '\0';
        if (mlt_job_set(&job, sets[i], eq + 1, err, sizeof err) < 0) {
            fprintf(stderr, "mltuner-worker: %s\n", err);
            mlt_job_free(&job);
            return 2;
        }
    }
    if (mlt_job_validate(&job, err, sizeof err) < 0) {
        fprintf(stderr, "mltuner-worker: %s: %s\n", path, err);
        mlt_job_free(&job);
        return 2;
    }
    double t0 = mlt_time_mono();
    mlt_trainer_t *t = mlt_trainer_new(&job, 0, 1, err, sizeof err);
    if (!t) {
        fprintf(stderr, "mltuner-worker: %s\n", err);
        mlt_job_free(&job);
        return 1;
    }
    double t_load = mlt_time_mono() - t0;
    set_threads(t, &job, true);
    mlt_trainer_init_params(t);
    mlt_rule_t rule = (mlt_rule_t)job.update.rule;
    local_opt_t opt;
    local_opt_init(&opt, t, &job);
    mlt_hyper_t h = mlt_hyper_default();
    h.lr = (float)mlt_job_default(&job, "lr", 0.01);
    h.momentum = (float)mlt_job_default(&job, "momentum", 0.0);
    h.weight_decay = (float)mlt_job_default(&job, "weight_decay", 0.0);
    h.beta1 = (float)mlt_job_default(&job, "beta1", job.update.beta1);
    h.beta2 = (float)job.update.beta2;
    h.eps = (float)job.update.eps;
    h.warmup = (uint32_t)mlt_job_default(&job, "warmup", 0);
    uint32_t batch = (uint32_t)mlt_job_default(&job, "batch_size", 128);
    bool mf = job.model.type == MLT_MODEL_MF;
    uint64_t steps_per_epoch = (mlt_trainer_part_size(t) + batch - 1) / batch;
    printf("# %s: %s model, %u training samples, batch %u, lr %g, momentum %g, warmup %u, "
           "rule %s%s (loaded in %.1f s), backend %s, %s\n",
           job.name, mlt_job_enum_name("model.type", job.model.type), mlt_trainer_part_size(t),
           batch, (double)h.lr, (double)h.momentum, h.warmup, mlt_rule_name(rule),
           opt.x_array >= 0 ? " (tests on the average)" : "", t_load, mlt_trainer_backend(t),
           threads_note);
    printf("%-6s %-10s %-10s %-10s %-10s %s\n", "epoch", "loss", mf ? "val_rmse" : "val_acc",
           mf ? "test_rmse" : "test_acc", "time_s", "samples/s");
    int status = 1;
    uint64_t step = 0;
    double train_time = 0;
    int max_epochs = (int)ceil(job.stop.max_epochs);
    for (int epoch = 1; epoch <= max_epochs && !stop_signal; epoch++) {
        double loss_sum = 0, e0 = mlt_time_mono();
        uint64_t samples = 0;
        for (uint64_t k = 0; k < steps_per_epoch && !stop_signal; k++) {
            float loss;
            uint32_t correct;
            if (mlt_trainer_step(t, batch, &loss, &correct) < 0)
                goto out;
            step++;
            local_opt_step(&opt, t, &h);
            loss_sum += loss;
            samples += batch;
        }
        double dt = mlt_time_mono() - e0;
        train_time += dt;
        mlt_eval_t v, te;
        local_opt_eval(&opt, t, &v, &te);
        double vm = mf ? sqrt(v.sq_error / (double)(v.count ? v.count : 1))
                       : (double)v.correct / (double)(v.count ? v.count : 1);
        double tm = mf ? sqrt(te.sq_error / (double)(te.count ? te.count : 1))
                       : (double)te.correct / (double)(te.count ? te.count : 1);
        double mean_loss = loss_sum / (double)steps_per_epoch;
        printf("%-6d %-10.4f %-10.4f %-10.4f %-10.1f %.0f\n", epoch, mean_loss, vm, tm,
               mlt_time_mono() - t0, (double)samples / dt);
        fflush(stdout);
        if (!isfinite(mean_loss)) {
            printf("# diverged: the training loss is not finite\n");
            goto out;
        }
        if ((!mf && job.stop.target_accuracy > 0 && tm >= job.stop.target_accuracy) ||
            (mf && job.stop.target_rmse > 0 && tm <= job.stop.target_rmse)) {
            printf("# target reached after %d epochs, %.1f s\n", epoch, mlt_time_mono() - t0);
            break;
        }
    }
    printf("# training time %.1f s (%.0f samples/s), total %.1f s\n", train_time,
           (double)step * batch / (train_time > 0 ? train_time : 1), mlt_time_mono() - t0);
    status = 0;
out:
    local_opt_free(&opt);
    mlt_trainer_destroy(&t);
    mlt_job_free(&job);
    return status;
}

/* ---- a job's worker ----------------------------------------------------------------
 *
 * The job protocol (join, tasks, reports, heartbeats) is libmltuner's worker
 * session (mlt_session_*); this part builds the job's model and data with the
 * trainer and does each task with it. */

typedef struct wk {
    mlt_session_t *s;
    uint32_t rank;
    mlt_job_t job;
    bool have_job;
    mlt_trainer_t *trainer;
    mlt_client_t *client; /* the session's for the task at hand (mlt_session_client) */
    const float **view;   /* per table: the client's copy a step reads (pull_for_step) */
    float **gbuf;         /* per table: where a step writes its gradient */
    bool zero_copy;       /* steps use the client's copies (not MLT_ZERO_COPY=0) */
} wk_t;

static void drop_job(wk_t *w)
{
    w->client = NULL;
    mlt_free(w->view);
    mlt_free(w->gbuf);
    w->view = NULL;
    w->gbuf = NULL;
    mlt_trainer_destroy(&w->trainer);
    if (w->have_job)
        mlt_job_free(&w->job);
    w->have_job = false;
}

/* The task failed: why goes to the coordinator (and the log). */
static void fail_task(wk_t *w, const mlt_task_t *t, const char *why)
{
    log_error("%s task failed: %s", t->kind == MLT_TASK_JOB ? "load" : "a", why);
    mlt_session_fail(w->s, why);
}

static void task_job(wk_t *w, const mlt_task_t *t)
{
    char err[512];
    drop_job(w);
    if (strcmp(t->model, "external") == 0) {
        fail_task(w, t,
                  "model.type \"external\" is a model of the worker program's own (a worker "
                  "built on libmltuner's session API); mltuner-worker builds mlp, cnn, softmax "
                  "and mf models");
        return;
    }
    if (mlt_job_parse_string(t->job_text, "job", &w->job, err, sizeof err) < 0) {
        fail_task(w, t, err);
        return;
    }
    w->have_job = true;
    double t0 = mlt_time_mono();
    w->trainer = mlt_trainer_new(&w->job, w->rank, t->n_workers, err, sizeof err);
    if (!w->trainer) {
        fail_task(w, t, err);
        return;
    }
    set_threads(w->trainer, &w->job, false);
    uint32_t nt = mlt_trainer_n_tables(w->trainer);
    mlt_table_def_t *defs = mlt_calloc(nt, sizeof *defs);
    for (uint32_t i = 0; i < nt; i++) {
        defs[i].name = mlt_trainer_table_name(w->trainer, i);
        defs[i].size = mlt_trainer_table_size(w->trainer, i);
    }
    int rc = mlt_session_load(w->s, defs, nt, mlt_trainer_part_size(w->trainer),
                              mlt_trainer_train_total(w->trainer));
    mlt_free(defs);
    if (rc < 0) { /* the session told the coordinator */
        log_error("load task failed: %s", mlt_session_error(w->s));
        return;
    }
    w->client = mlt_session_client(w->s);
    const char *zc = getenv("MLT_ZERO_COPY");
    w->zero_copy = !(zc && strcmp(zc, "0") == 0);
    w->view = mlt_calloc(nt, sizeof *w->view);
    w->gbuf = mlt_calloc(nt, sizeof *w->gbuf);
    /* the trainer only reads the parameters it pulls (the shards apply the
     * updates), except mlt_trainer_init_params (task_init forgets them) */
    mlt_client_keep_dst(w->client, true);
    log_info("job '%s' loaded in %.1f s: %u training samples in this partition, %u tables; "
             "backend %s; data by %s",
             w->job.name, mlt_time_mono() - t0, mlt_trainer_part_size(w->trainer), nt,
             mlt_trainer_backend(w->trainer), mlt_client_transport(w->client));
}

static void task_init(wk_t *w, const mlt_task_t *t)
{
    mlt_trainer_init_params(w->trainer);
    mlt_client_forget_dst(w->client); /* the tables changed: the next pull copies */
    float *const *p = mlt_trainer_params(w->trainer);
    for (uint32_t i = 0; i < mlt_trainer_n_tables(w->trainer); i++)
        if (mlt_write(w->client, t->branch, i, p[i]) < 0) {
            fail_task(w, t, mlt_client_error(w->client));
            return;
        }
    mlt_session_done(w->s, -1);
}

/* The data share a RUN or TEST names: the trainer's sampler and evaluation
 * shares follow it. 0 or -1 with the reason in err. */
static int take_share(wk_t *w, const mlt_task_t *t, char *err, size_t errlen)
{
    int rc = mlt_trainer_set_share(w->trainer, t->share, t->share_count, err, errlen);
    if (rc > 0)
        log_info("data share %u of %u: %u training samples", t->share, t->share_count,
                 mlt_trainer_part_size(w->trainer));
    return rc < 0 ? -1 : 0;
}

/* A RUN's pushes, made as each gradient is ready (mlt_trainer_on_grad), so
 * that they travel while the earlier layers' gradients are computed. */
typedef struct pusher {
    mlt_client_t *client;
    uint32_t branch;
    float *const *grads;
    int rc; /* the first failed push of this step */
} pusher_t;

static void push_ready(void *ctx, uint32_t table)
{
    pusher_t *ps = ctx;
    if (ps->rc == 0)
        ps->rc = mlt_push(ps->client, ps->branch, table, ps->grads[table]);
}

/* Points the next step at the client's copy of the parameters (pulled at
 * `clock`) and at its push buffers, where it can (#15: nothing copied; the
 * CPU backend, MLT_ZERO_COPY not 0); else pulls into the trainer's own
 * tables. 0 or the pull's -errno. */
static int pull_for_step(wk_t *w, const mlt_task_t *t, int64_t clock, pusher_t *ps)
{
    const uint32_t nt = mlt_trainer_n_tables(w->trainer);
    if (!w->zero_copy || !mlt_trainer_use_tables(w->trainer, NULL, NULL)) {
        ps->grads = mlt_trainer_grads(w->trainer);
        return mlt_pull(w->client, t->branch, clock, mlt_trainer_params(w->trainer));
    }
    int rc = mlt_pull_view(w->client, t->branch, clock, w->view);
    if (rc < 0)
        return rc;
    float *const *own = mlt_trainer_grads(w->trainer);
    for (uint32_t i = 0; i < nt; i++) {
        float *b = mlt_push_buffer(w->client, t->branch, i);
        w->gbuf[i] = b ? b : own[i];
    }
    mlt_trainer_use_tables(w->trainer, w->view, w->gbuf);
    ps->grads = w->gbuf;
    return 0;
}

/* The clocks of a RUN: NULL, or why it stopped. */
static const char *run_clocks(wk_t *w, const mlt_task_t *t, pusher_t *ps)
{
    if (t->seek) /* every trial of a search starts from the same data */
        mlt_trainer_seek(w->trainer, t->data_epoch);
    /* A branch whose gradients are no longer finite is diverged: the shard
     * refuses those pushes (EDOM, reported then or, with staleness > 0, one call
     * later). The worker then only keeps clocking, so that the other workers
     * are not held up, and reports NaN losses: the tuner frees the branch.
     * The gradients are pushed as the step computes them (push_ready); a step
     * whose loss turns out NaN has pushed NaN, which the shard refuses. */
    bool diverged = false;
    for (int64_t c = t->clock_start; c < t->clock_start + t->clocks; c++) {
        if (stop_signal)
            return "worker interrupted";
        float loss = NAN;
        uint32_t correct = 0;
        if (!diverged) {
            int rc = pull_for_step(w, t, c, ps);
            if (rc == -EDOM)
                diverged = true;
            else if (rc < 0)
                return mlt_client_error(w->client);
        }
        ps->rc = 0;
        if (!diverged) {
            if (mlt_trainer_step(w->trainer, t->batch_size, &loss, &correct) < 0)
                return "step failed";
            if (!isfinite(loss))
                diverged = true;
        }
        int rc = ps->rc;
        int rc2 = mlt_clock(w->client, t->branch, c + 1);
        if (rc == -EDOM || rc2 == -EDOM)
            diverged = true;
        else if (rc || rc2)
            return mlt_client_error(w->client);
        if (diverged) {
            loss = NAN;
            correct = 0;
        }
        if (mlt_session_report_clock(w->s, c + 1, loss, correct, t->batch_size,
                                     mlt_trainer_epoch(w->trainer)) < 0)
            return mlt_session_error(w->s);
    }
    return NULL;
}

static void task_run(wk_t *w, const mlt_task_t *t)
{
    char err[256];
    if (take_share(w, t, err, sizeof err)) {
        fail_task(w, t, err);
        return;
    }
    pusher_t ps = {.client = w->client, .branch = t->branch, .grads = mlt_trainer_grads(w->trainer)};
    mlt_trainer_on_grad(w->trainer, push_ready, &ps);
    const char *why = run_clocks(w, t, &ps);
    mlt_trainer_on_grad(w->trainer, NULL, NULL);
    mlt_trainer_use_tables(w->trainer, NULL, NULL); /* the client's copies go stale */
    if (why) {
        fail_task(w, t, why);
        return;
    }
    if (mlt_session_done(w->s, mlt_trainer_epoch(w->trainer)) < 0) /* waits for the pushes */
        log_error("a task failed: %s", mlt_session_error(w->s));
}

/* Sums of one evaluation, as the session reports them. */
static mlt_eval_sums_t sums(const mlt_eval_t *e)
{
    return (mlt_eval_sums_t){e->loss, e->correct, e->count, e->sq_error};
}

static void task_test(wk_t *w, const mlt_task_t *t)
{
    char err[256];
    if (take_share(w, t, err, sizeof err)) {
        fail_task(w, t, err);
        return;
    }
    if (mlt_pull(w->client, t->branch, 0, mlt_trainer_params(w->trainer)) < 0) {
        fail_task(w, t, mlt_client_error(w->client));
        return;
    }
    mlt_eval_t v, te;
    mlt_trainer_eval(w->trainer, 0, &v);
    mlt_trainer_eval(w->trainer, 1, &te);
    mlt_eval_sums_t vs = sums(&v), ts = sums(&te);
    mlt_session_report_test(w->s, &vs, &ts);
}

static void on_session_event(void *arg, const char *what)
{
    (void)arg;
    log_info("%s", what);
}

static int run_worker(const char *endpoint, uint32_t rank)
{
    wk_t w;
    memset(&w, 0, sizeof w);
    w.rank = rank;
    char why[160], err[512];
    mlt_session_opts_t o = {
        .coordinator = endpoint,
        .rank = rank,
        .program = "mltuner-worker",
        .backends = mlt_gpu_probe(why, sizeof why) > 0 ? "cpu,cuda" : "cpu",
        .threads = opt_threads ? (uint32_t)opt_threads : 1,
        .keys = opt_keys,
        .timeout_s = -1, /* a restarted daemon is joined again, however long it takes */
        .on_event = on_session_event,
    };
    sigset_t sigs, old; /* signals go to the main thread, not the session's */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, &old);
    w.s = mlt_session_join(&o, err, sizeof err);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!w.s) {
        log_error("%s", err);
        return 1;
    }
    log_info("worker %u joined %s; waiting for a job", rank, endpoint);
    int status = 1;
    while (!stop_signal) {
        mlt_task_t t;
        int n = mlt_session_next(w.s, 0.2, &t);
        if (n < 0) {
            log_error("%s", mlt_session_error(w.s));
            break;
        }
        if (n == 0)
            continue;
        w.client = mlt_session_client(w.s); /* NULL until a JOB loads (and after a drop) */
        if (t.kind != MLT_TASK_JOB && t.kind != MLT_TASK_STOP && (!w.trainer || !w.client)) {
            fail_task(&w, &t, "a task before the job was loaded");
            continue;
        }
        switch (t.kind) {
        case MLT_TASK_JOB: task_job(&w, &t); break;
        case MLT_TASK_INIT: task_init(&w, &t); break;
        case MLT_TASK_RUN: task_run(&w, &t); break;
        case MLT_TASK_TEST: task_test(&w, &t); break;
        case MLT_TASK_STOP:
            log_info("the coordinator says stop: %s", t.reason);
            status = 0;
            goto out;
        }
    }
    if (stop_signal) {
        log_info("signal %d: leaving", (int)stop_signal);
        status = 0;
    }
out:
    drop_job(&w);
    mlt_session_destroy(&w.s);
    return status;
}

/* OpenBLAS 0.3.21 does not know some newer CPUs and falls back to its generic
 * SSE3 kernels, ~10x slower; it reads OPENBLAS_CORETYPE only when loaded, so
 * the worker re-executes itself once with the better core named. A value the
 * user set is left alone. */
static void fix_blas_core(char **argv)
{
    const char *better = mlt_cpu_blas_better_core();
    if (!better || getenv("OPENBLAS_CORETYPE"))
        return;
    setenv("OPENBLAS_CORETYPE", better, 1);
    execv("/proc/self/exe", argv);
    /* exec failed: go on with the slow kernels */
    unsetenv("OPENBLAS_CORETYPE");
}

int main(int argc, char **argv)
{
    mlt_fpmode_flush_denormals(); /* before any thread: they inherit it */
    fix_blas_core(argv);
    const char *coordinator = NULL, *standalone = NULL;
    const char *key = NULL, *server_key = NULL;
    long rank = -1;
    char *sets[64];
    int n_sets = 0;
    int level = MLT_LOG_INFO;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--coordinator") == 0 && v)
            coordinator = argv[++i];
        else if (strcmp(a, "--key") == 0 && v)
            key = argv[++i];
        else if (strcmp(a, "--server-key") == 0 && v)
            server_key = argv[++i];
        else if (strcmp(a, "--rank") == 0 && v) {
            char *end;
            rank = strtol(argv[++i], &end, 10);
            if (*end || rank < 0 || rank >= (long)MLT_MAX_WORKERS) {
                fprintf(stderr, "mltuner-worker: --rank must be 0..%u, got '%s'\n",
                        MLT_MAX_WORKERS - 1, argv[i]);
                return 2;
            }
        } else if (strcmp(a, "--standalone") == 0 && v)
            standalone = argv[++i];
        else if (strcmp(a, "--threads") == 0 && v) {
            opt_threads = atoi(argv[++i]);
            if (opt_threads < 1 || opt_threads > 1024) {
                fprintf(stderr, "mltuner-worker: --threads must be 1..1024\n");
                return 2;
            }
        } else if (strcmp(a, "--parallel") == 0 && v) {
            const char *how = argv[++i];
            opt_parallel = strcmp(how, "auto") == 0    ? PAR_AUTO
                           : strcmp(how, "batch") == 0 ? PAR_BATCH
                           : strcmp(how, "blas") == 0  ? PAR_BLAS
                                                       : -1;
            if (opt_parallel < 0) {
                fprintf(stderr, "mltuner-worker: --parallel must be auto, batch or blas, got '%s'\n",
                        how);
                return 2;
            }
        } else if (strcmp(a, "--set") == 0 && v && n_sets < 64)
            sets[n_sets++] = argv[++i];
        else if (strcmp(a, "--log-level") == 0 && v) {
            level = mlt_log_level_parse(argv[++i]);
            if (level < 0) {
                fprintf(stderr, "mltuner-worker: --log-level: error|warn|info|debug\n");
                return 2;
            }
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "mltuner-worker: unexpected argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    /* a job's worker: one BLAS thread until its job says otherwise (threads
     * that outnumber the cores spin against each other and against the other
     * workers on the machine) */
    if (!standalone)
        openblas_set_num_threads(opt_threads ? opt_threads : 1);
    if (standalone) {
        mlt_log_init("mltuner-worker", (mlt_log_level_t)level);
        return run_standalone(standalone, sets, n_sets);
    }
    if (!coordinator || rank < 0) {
        usage(stderr);
        return 2;
    }
    if (load_keys(key, server_key) < 0)
        return 2;
    char prog[48];
    snprintf(prog, sizeof prog, "mltuner-worker.%ld", rank);
    mlt_log_init(prog, (mlt_log_level_t)level);
    return run_worker(coordinator, (uint32_t)rank);
}
