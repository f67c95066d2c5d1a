/* coord_steps.c - how the coordinator's job (coord.c) waits for its workers:
 * a step hands one task (a run of clocks, a test) to every worker that takes
 * tasks and waits until they are done, not waiting for a worker that is
 * dropped meanwhile (coord_ctl.c, "worker failure"), handing the task out
 * again when no worker finished it, letting a worker that is back join a run
 * in progress, sharing the data out among the workers left while one is
 * lost, and waiting for a replacement when none is left, at most
 * worker_wait_s. Every wait serves the control socket (pump) and says in the
 * log what it waits for. Runs on the coordinator thread only. */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>

#include "common/log.h"
#include "common/timeutil.h"
#include "daemon/coord_int.h"
#include "proto/wire.h"

#define STOP_GRACE_S 5.0 /* after a stop request, steps wait this long for workers */

/* After a stop request: true (and a log line) once the grace period is over. */
static bool stop_due(mlt_coord_t *c, const char *what)
{
    if (!c->stop_requested)
        return false;
    double now = mlt_time_mono();
    if (c->stop_at <= 0)
        c->stop_at = now + STOP_GRACE_S;
    if (now < c->stop_at)
        return false;
    log_info("job '%s': stop requested; not waiting any longer for %s", c->job.name, what);
    return true;
}

/* A worker's error fails the job; so does a lost worker under
 * on_worker_loss = "fail". -1 then, else 0. */
static int check_failed(mlt_coord_t *c)
{
    for (uint32_t w = 0; w < c->n_workers; w++)
        if (c->workers[w].error[0])
            return mlt_coord__fail_job(c, "worker %u: %s", w, c->workers[w].error);
    if (c->n_lost && c->job.on_worker_loss == MLT_ON_LOSS_FAIL)
        return mlt_coord__fail_job(c, "%s (on_worker_loss = \"fail\")", c->lost_msg);
    return 0;
}

/* ---- data shares ---------------------------------------------------------- *
 * Every worker loads the whole data set and samples its share of it (rank of
 * n_workers). While a worker is lost, each step's TASK_RUN and TASK_TEST name
 * the share each worker takes among the workers that take tasks (share i of
 * L, by rank), so the training set, and the validation and test sets, are
 * covered whole; once every worker takes tasks again the fields are left out
 * (own rank of n_workers). A worker back during a run joins it on its own
 * share (the survivors' shares overlap it until the next step). */

uint32_t mlt_coord__share_count(const mlt_coord_t *c)
{
    uint32_t n = mlt_coord__n_loaded(c);
    return n ? n : c->n_workers;
}

/* The share of worker w in task t, for the step about to be handed out. */
static void set_share(const mlt_coord_t *c, uint32_t w, Mlt__Task *t)
{
    uint32_t n = mlt_coord__share_count(c), i = 0;
    t->has_share = t->has_share_count = n < c->n_workers;
    for (uint32_t k = 0; k < w; k++)
        i += c->workers[k].joined && c->workers[k].loaded;
    t->share = t->has_share ? i : 0;
    t->share_count = t->has_share ? n : 0;
}

/* Says in the log when the data is shared out another way than before. */
static void note_shares(mlt_coord_t *c)
{
    uint32_t n = mlt_coord__share_count(c);
    if (n == c->shares)
        return;
    uint64_t total = 0;
    for (uint32_t w = 0; w < c->n_workers; w++)
        if (c->workers[w].train_total > total)
            total = c->workers[w].train_total;
    if (c->shares || n < c->n_workers)
        log_info("job '%s': the data is shared out %u way(s) from this step (%u of %u workers "
                 "take tasks): about %llu training samples each per epoch",
                 c->job.name, n, mlt_coord__n_loaded(c), c->n_workers,
                 (unsigned long long)(total + n - 1) / n);
    c->shares = n;
}

/* A worker back (loaded, idle, outside the step) during a run joins it at
 * the highest clock reported so far: it rejoins at a clock boundary, not only
 * at the next step. */
static void join_run(mlt_coord_t *c)
{
    if (!c->run)
        return;
    const Mlt__Task *rt = c->run->task;
    int64_t end = rt->clock_start + rt->clocks;
    int64_t from = c->run->hi > rt->clock_start ? c->run->hi : rt->clock_start;
    for (uint32_t w = 0; w < c->n_workers && from < end; w++) {
        wslot_t *ws = &c->workers[w];
        if (!ws->joined || !ws->loaded || ws->busy || ws->in_step)
            continue;
        mlt_coord__sync_shards(c); /* WORKER_BACK: it enters the SSP minimum at its first pull */
        Mlt__Task t = *rt;
        t.has_share = t.has_share_count = 0; /* its own share */
        t.clock_start = from;
        t.clocks = end - from;
        log_info("job '%s': worker %u joins the run on branch %u at clock %lld", c->job.name, w,
                 t.branch, (long long)from);
        mlt_coord__send_task(c, w, &t);
    }
}

/* Waits until no worker of the current step is busy (a worker dropped
 * meanwhile is not waited for; pump() drops the silent ones). Returns 0, 1
 * when a stop was requested meanwhile (waiting STOP_GRACE_S at most for the
 * step's end), or -1 on shutdown or failure (the job has failed). */
int mlt_coord__wait_workers(mlt_coord_t *c, const char *what)
{
    double next_note = mlt_time_mono() + NOTE_EVERY_S;
    for (;;) {
        if (check_failed(c))
            return -1;
        uint32_t busy = 0, first = 0;
        for (uint32_t w = 0; w < c->n_workers; w++)
            if (c->workers[w].busy && c->workers[w].in_step && !busy++)
                first = w;
        if (!busy)
            return c->stop_requested ? 1 : 0;
        if (stop_due(c, what))
            return 1;
        if (mlt_coord__pump(c, 0.5) == -ECANCELED)
            return -1;
        mlt_coord__admit(c);
        join_run(c);
        double now = mlt_time_mono();
        if (now > next_note) {
            log_info("job '%s': waiting for %u worker(s) to finish %s (worker %u among them, "
                     "heard from %.1f s ago; dropped after worker_timeout_s = %g s of silence)",
                     c->job.name, busy, what, first, now - c->workers[first].last_seen,
                     c->worker_timeout_s);
            next_note = now + NOTE_EVERY_S;
        }
    }
}

/* Waits until some worker takes tasks (with none left, for a replacement to
 * join and load the job), at most worker_wait_s. 0, 1 on a stop request, -1
 * on shutdown or failure. */
int mlt_coord__wait_active(mlt_coord_t *c, const char *what)
{
    double t0 = mlt_time_mono(), next_note = t0;
    for (;;) {
        if (check_failed(c))
            return -1;
        if (mlt_coord__n_loaded(c))
            return 0;
        if (c->stop_requested)
            return 1;
        double now = mlt_time_mono();
        if (now - t0 > c->job.worker_wait_s)
            return mlt_coord__fail_job(
                c,
                "no worker left for %s (%s), and no replacement joined within "
                "worker_wait_s = %g s",
                what, c->lost_msg[0] ? c->lost_msg : "none loaded the job", c->job.worker_wait_s);
        if (now >= next_note) {
            log_warn("job '%s': no worker left for %s (%s); waiting up to %.0f s more for a "
                     "replacement (worker_wait_s)",
                     c->job.name, what, c->lost_msg[0] ? c->lost_msg : "none loaded the job",
                     c->job.worker_wait_s - (now - t0));
            next_note = now + NOTE_EVERY_S;
        }
        if (mlt_coord__pump(c, 0.5) == -ECANCELED)
            return -1;
        mlt_coord__admit(c);
    }
}

/* Sends t to every worker that takes tasks (after telling the shards who is
 * back), waiting for one if none does. The number it went to, or 0 on a
 * stop request, -1 on failure. */
static int task_all(mlt_coord_t *c, Mlt__Task *t, const char *what)
{
    mlt_coord__admit(c);
    int rc = mlt_coord__wait_active(c, what);
    if (rc)
        return rc < 0 ? -1 : 0;
    mlt_coord__sync_shards(c);
    note_shares(c);
    int n = 0;
    for (uint32_t w = 0; w < c->n_workers; w++) {
        c->workers[w].in_step = c->workers[w].task_ok = false;
        if (c->workers[w].joined && c->workers[w].loaded) {
            if (t->kind == MLT__TASK_KIND__TASK_RUN || t->kind == MLT__TASK_KIND__TASK_TEST)
                set_share(c, w, t);
            mlt_coord__send_task(c, w, t);
            n++;
        }
    }
    return n;
}

/* Workers that finished the current step's task. */
static uint32_t n_ok(const mlt_coord_t *c)
{
    uint32_t n = 0;
    for (uint32_t w = 0; w < c->n_workers; w++)
        n += c->workers[w].in_step && c->workers[w].task_ok;
    return n;
}

/* A step's task to every worker, until one of them finishes it (when every
 * worker it went to is lost, it is handed out again). 0, 1 on a stop
 * request, -1 on failure. resend (may be NULL) adjusts the task before it is
 * handed out again. */
int mlt_coord__step(mlt_coord_t *c, Mlt__Task *t, const char *what,
                    void (*resend)(mlt_coord_t *c, Mlt__Task *t))
{
    for (int round = 0;; round++) {
        if (round) {
            if (resend)
                resend(c, t);
            log_warn("job '%s': every worker of %s was lost; handing it out again", c->job.name,
                     what);
        }
        int n = task_all(c, t, what);
        if (n <= 0)
            return n < 0 ? -1 : 1;
        int rc = mlt_coord__wait_workers(c, what);
        if (rc)
            return rc;
        if (n_ok(c))
            return 0;
    }
}

/* The clocks of the run that no worker reported: a run handed out again
 * starts at the first of them. */
void mlt_coord__run_resend(mlt_coord_t *c, Mlt__Task *t)
{
    const mlt_coord_run_t *run = c->run;
    int64_t end = t->clock_start + t->clocks, k = t->clock_start;
    while (k < end && run->count[k - run->start]) /* a clock some worker reported counts as run */
        k++;
    t->clocks = end - k; /* 0 when every clock was reported: the task only syncs */
    t->clock_start = k;
}

/* Clocks whose loss a lost worker never completed: the mean of what came,
 * for the tuner (progress.jsonl, whose clocks go up, has no line for them). */
void mlt_coord__run_fill(mlt_coord_run_t *run)
{
    for (int64_t i = 0; i < run->n; i++)
        if (isnan(run->loss[i]) && run->count[i])
            run->loss[i] = run->sum[i] / run->count[i];
}
