/* coord_ctl.c - the coordinator's control endpoint: the replies to
 * mltunerctl's requests (SUBMIT, JOB_STATUS, STATUS, METRICS, JOB_STOP), the
 * workers' JOINs and REPORTs, the TASKs sent to them, and pump(), which
 * serves the control socket while the job (coord.c) waits; see coord.h.
 * Runs on the coordinator thread only. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "common/alloc.h"
#include "common/jobfile.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "daemon/coord_int.h"
#include "daemon/metrics.h"
#include "daemon/shardask.h"
#include "proto/wire.h"
#include "client/mltuner.h"

/* ---- replies on the control socket ------------------------------------------- */

static void send_to(mlt_coord_t *c, const void *id, size_t id_len, const mlt_header_t *h)
{
    zmq_send(c->ctl, id, id_len, ZMQ_SNDMORE);
    mlt_wire_send(c->ctl, h, 0);
}

static void reply_error(mlt_coord_t *c, const void *id, size_t id_len, uint64_t rid, int code,
                        const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void reply_error(mlt_coord_t *c, const void *id, size_t id_len, uint64_t rid, int code,
                        const char *fmt, ...)
{
    char text[MLT_MAX_ERROR_LEN + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    mlt_header_t r;
    mlt_wire_init_error(&r, rid, code, text);
    mlt_log_ratelimited(MLT_LOG_WARN, "ctl-error", 1.0, "control request refused: %s", text);
    send_to(c, id, id_len, &r);
}

static void reply_ok(mlt_coord_t *c, const void *id, size_t id_len, uint64_t rid)
{
    mlt_header_t r;
    mlt_wire_init(&r, MLT__MSG_TYPE__MSG_OK);
    r.has_request_id = 1;
    r.request_id = rid;
    send_to(c, id, id_len, &r);
}

static void reply_status(mlt_coord_t *c, const void *id, size_t id_len, uint64_t rid)
{
    mlt_header_t r;
    Mlt__JobState js;
    Mlt__Tunables tu;
    mlt_wire_init(&r, MLT__MSG_TYPE__MSG_JOB_STATUS_REPLY);
    r.has_request_id = 1;
    r.request_id = rid;
    mlt__job_state__init(&js);
    mlt__tunables__init(&tu);
    js.phase = (char *)(c->phase == PH_TRAINING && c->tphase ? c->tphase
                                                             : mlt_coord__phase_names[c->phase]);
    if (c->phase != PH_IDLE || c->job_text) {
        js.name = c->job.name;
        js.has_branch = js.has_epoch = js.has_clock = js.has_loss = 1;
        js.branch = c->train_branch;
        js.epoch = c->epoch;
        js.clock = c->clock;
        js.loss = c->last_loss;
        js.has_val_accuracy = js.has_test_accuracy = 1;
        js.val_accuracy = c->val_acc;
        js.test_accuracy = c->test_acc;
        js.has_val_rmse = js.has_test_rmse = 1;
        js.val_rmse = c->val_rmse;
        js.test_rmse = c->test_rmse;
        js.has_elapsed = 1;
        js.elapsed = c->t0 > 0 ? mlt_coord__job_time(c) : 0;
        js.has_batch_size = 1;
        js.batch_size = c->batch;
        tu.has_lr = !isnan(c->tunables.lr);
        tu.lr = c->tunables.lr;
        tu.has_momentum = !isnan(c->tunables.momentum);
        tu.momentum = c->tunables.momentum;
        tu.has_staleness = c->tunables.staleness >= 0;
        tu.staleness = (uint32_t)(c->tunables.staleness >= 0 ? c->tunables.staleness : 0);
        tu.has_warmup = c->tunables.warmup >= 0;
        tu.warmup = (uint32_t)(c->tunables.warmup >= 0 ? c->tunables.warmup : 0);
        js.tunables = &tu;
        js.out_dir = c->out_dir;
        js.has_trials = js.has_tuning_seconds = js.has_training_seconds = 1;
        js.trials = c->trials;
        js.tuning_seconds = c->tuning_s;
        js.training_seconds = c->training_s;
        js.has_max_epochs = js.has_target = 1;
        js.max_epochs = c->job.stop.max_epochs;
        js.target = mlt_job_rmse(&c->job) ? c->job.stop.target_rmse
                                                      : c->job.stop.target_accuracy;
        if (c->message[0])
            js.message = c->message;
    }
    uint32_t joined = 0;
    for (uint32_t w = 0; w < MLT_MAX_WORKERS; w++)
        joined += c->workers[w].joined;
    js.has_workers_joined = js.has_workers = 1;
    js.workers_joined = joined;
    js.workers = c->n_workers;
    r.job_state = &js;
    send_to(c, id, id_len, &r);
}

/* ---- tasks --------------------------------------------------------------------- */

void mlt_coord__send_task(mlt_coord_t *c, uint32_t w, Mlt__Task *t)
{
    wslot_t *ws = &c->workers[w];
    t->has_task_id = 1;
    t->task_id = ++c->next_task;
    ws->busy = t->kind != MLT__TASK_KIND__TASK_STOP;
    ws->in_step = ws->busy;
    ws->task_ok = false;
    ws->run_from = t->has_clock_start ? t->clock_start : 0;
    ws->task_id = t->task_id;
    ws->task_kind = t->kind;
    ws->error[0] = '\0';
    mlt_header_t h;
    mlt_wire_init(&h, MLT__MSG_TYPE__MSG_TASK);
    h.task = t;
    send_to(c, ws->id, ws->id_len, &h);
}

void mlt_coord__stop_worker(mlt_coord_t *c, const void *id, size_t id_len, const char *reason)
{
    Mlt__Task t;
    mlt__task__init(&t);
    t.kind = MLT__TASK_KIND__TASK_STOP;
    t.reason = (char *)reason;
    mlt_header_t h;
    mlt_wire_init(&h, MLT__MSG_TYPE__MSG_TASK);
    h.task = &t;
    send_to(c, id, id_len, &h);
}

/* Per-clock training loss of the run in progress (c->run): the mean over
 * workers once all have reported it. A report outside the run is late. */
static void add_loss(mlt_coord_t *c, uint32_t branch, int64_t clock, double loss)
{
    mlt_coord_run_t *run = c->run;
    if (!run || branch != run->branch || clock <= run->start || clock > run->start + run->n)
        return;
    int64_t i = clock - 1 - run->start;
    run->sum[i] += loss;
    if (clock > run->hi)
        run->hi = clock;
    uint32_t n = 0; /* the workers of this run that are still in it, from this clock */
    for (uint32_t w = 0; w < c->n_workers; w++)
        n += c->workers[w].in_step && c->workers[w].run_from < clock;
    if (++run->count[i] == n) {
        double mean = run->sum[i] / n;
        c->last_loss = mean;
        run->loss[i] = mean;
        mlt_json_t j;
        mlt_coord__line(c, &j, "clock");
        mlt_json_uint(&j, "branch", branch);
        mlt_json_int(&j, "clock", clock);
        mlt_json_num(&j, "loss", mean);
        mlt_json_fixed(&j, "epoch", c->epoch, 4);
        mlt_coord__emit(c, &j);
    }
}

static bool holds(const wslot_t *ws, const void *id, size_t id_len)
{
    return ws->joined && ws->id_len == id_len && memcmp(ws->id, id, id_len) == 0;
}

/* A JOIN for a rank whose connection was heard from this recently is
 * refused (EADDRINUSE): heartbeats come every 0.5 s, so a live worker holds
 * its rank, and a restarted one gets it back within this long (#13). */
#define JOIN_LIVE_S 1.5

/* The connection a later JOIN of rank w replaced (#13). */
static bool was_replaced(const wslot_t *ws, const void *id, size_t id_len)
{
    return ws->old_id_len == id_len && memcmp(ws->old_id, id, id_len) == 0;
}

/* A message from a connection that is not (or no longer) worker w's: it was
 * dropped (told ESTALE: join again, as the session does) or another
 * connection joined as w since (told EADDRINUSE: it is out, for good). */
static void tell_stale(mlt_coord_t *c, const void *id, size_t id_len, uint32_t w)
{
    if (was_replaced(&c->workers[w], id, id_len)) {
        mlt_log_ratelimited(MLT_LOG_WARN, "replaced-worker", 5.0,
                            "a message from a replaced connection of worker %u: told it is out", w);
        reply_error(c, id, id_len, 0, -EADDRINUSE,
                    "another connection joined as worker %u since this one did (two workers "
                    "started with rank %u?); this one is out of the job",
                    w, w);
        return;
    }
    mlt_log_ratelimited(MLT_LOG_INFO, "stale-worker", 5.0,
                        "a message from an old connection of worker %u: told to join again", w);
    reply_error(c, id, id_len, 0, -ESTALE,
                "this connection is no longer worker %u's (dropped or replaced); join again", w);
}

static void on_report(mlt_coord_t *c, const void *id, size_t id_len, const mlt_header_t *h)
{
    const Mlt__Report *r = h->report;
    if (r && h->has_worker && !c->have_job && h->worker < MLT_MAX_WORKERS &&
        !holds(&c->workers[h->worker], id, id_len)) {
        tell_stale(c, id, id_len, h->worker); /* dropped during a job that ended since */
        return;
    }
    if (!r || !h->has_worker || !c->have_job || h->worker >= c->n_workers) {
        mlt_log_ratelimited(MLT_LOG_WARN, "stray-report", 5.0,
                            "report from a worker that is not in the job ignored");
        return;
    }
    wslot_t *ws = &c->workers[h->worker];
    if (!holds(ws, id, id_len)) {
        tell_stale(c, id, id_len, h->worker);
        return;
    }
    ws->last_seen = mlt_time_mono();
    if (r->has_epoch)
        ws->epoch = r->epoch;
    if (r->kind == MLT__TASK_KIND__TASK_RUN && !r->done && r->has_clock && r->has_loss &&
        ws->in_step)
        add_loss(c, r->branch, r->clock, r->loss);
    if (!r->done || !r->has_task_id || r->task_id != ws->task_id)
        return;
    ws->busy = false;
    ws->task_ok = !r->error;
    if (r->error)
        snprintf(ws->error, sizeof ws->error, "%s", r->error);
    if (r->kind == MLT__TASK_KIND__TASK_JOB && !r->error) {
        ws->part_size = r->count;
        ws->train_total = r->has_train_total ? r->train_total : 0;
        ws->loaded = true;
        if (!ws->in_step)
            log_info("worker %u loaded the job; it takes work from the next clock boundary",
                     h->worker);
    }
    if (r->kind == MLT__TASK_KIND__TASK_TEST) {
        ws->val_loss = r->loss;
        ws->val_correct = r->correct;
        ws->val_count = r->count;
        ws->val_sq = r->sq_error;
        ws->test_loss = r->test_loss;
        ws->test_correct = r->test_correct;
        ws->test_count = r->test_count;
        ws->test_sq = r->test_sq_error;
    }
}

/* ---- worker failure ------------------------------------------------------------ */

void mlt_coord__drop_worker(mlt_coord_t *c, uint32_t w, const char *fmt, ...)
{
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    wslot_t *ws = &c->workers[w];
    bool in_job =
        c->have_job && w < c->n_workers && c->phase >= PH_LOADING && c->phase <= PH_TESTING;
    if (in_job) {
        log_warn("job '%s': worker %u lost: %s%s", c->job.name, w, why,
                 ws->busy ? "; its task is not waited for" : "");
        if (!c->n_lost++)
            snprintf(c->lost_msg, sizeof c->lost_msg, "worker %u lost: %s", w, why);
        mlt_json_t j;
        mlt_coord__line(c, &j, "worker_lost");
        mlt_json_uint(&j, "worker", w);
        mlt_coord__emit(c, &j);
    } else {
        log_warn("worker %u dropped: %s", w, why);
    }
    ws->busy = ws->in_step = ws->task_ok = ws->loaded = false;
    ws->error[0] = '\0';
    if (in_job)
        mlt_coord__sync_shards(c);
}

uint32_t mlt_coord__n_loaded(const mlt_coord_t *c)
{
    uint32_t n = 0;
    for (uint32_t w = 0; w < c->n_workers; w++)
        n += c->workers[w].joined && c->workers[w].loaded;
    return n;
}

void mlt_coord__sync_shards(mlt_coord_t *c)
{
    if (!c->client)
        return;
    for (uint32_t w = 0; w < c->n_workers; w++) {
        wslot_t *ws = &c->workers[w];
        bool out = !(ws->joined && ws->loaded);
        if (out == ws->shard_out)
            continue;
        if (mlt_client_worker_state(c->client, w, out) < 0) {
            log_warn("could not tell the shards that worker %u is %s: %s", w, out ? "gone" : "back",
                     mlt_client_error(c->client));
            continue;
        }
        ws->shard_out = out;
        log_info("job '%s': the shards were told worker %u is %s", c->job.name, w,
                 out ? "gone (the others no longer wait for it)" : "back");
    }
}

/* Whether worker w can take part in the job: the workers of a job run one
 * program (their tables must match). false with why. (A worker's backends
 * are only logged: a worker asked for cuda without a GPU fails its JOB task
 * itself, saying why it has none.) */
bool mlt_coord__worker_fits(const mlt_coord_t *c, uint32_t w, char *why, size_t len)
{
    const wslot_t *ws = &c->workers[w];
    for (uint32_t k = 0; k < c->n_workers; k++) {
        const wslot_t *o = &c->workers[k];
        if (k != w && o->joined && strcmp(o->program, ws->program) != 0) {
            snprintf(why, len,
                     "it runs %s, but worker %u runs %s: the workers of a job run one program",
                     ws->program, k, o->program);
            return false;
        }
    }
    return true;
}

void mlt_coord__admit(mlt_coord_t *c)
{
    if (!c->have_job || c->phase < PH_LOADING || c->phase > PH_TESTING)
        return;
    for (uint32_t w = 0; w < c->n_workers; w++) {
        wslot_t *ws = &c->workers[w];
        if (!ws->joined || ws->loaded || ws->busy || ws->error[0])
            continue; /* an error is the job's (coord.c fails it), not retried */
        char why[MLT_MAX_ERROR_LEN];
        if (!mlt_coord__worker_fits(c, w, why, sizeof why)) {
            if (mlt_coord__n_loaded(c) == 0) { /* at the start: the job fails with it */
                snprintf(ws->error, sizeof ws->error, "%s", why);
                continue;
            }
            log_warn("job '%s': worker %u turned away: %s", c->job.name, w, why);
            mlt_coord__stop_worker(c, ws->id, ws->id_len, why); /* a running job goes on */
            ws->joined = false;
            continue;
        }
        log_info("job '%s': worker %u (re)joined; it loads the job", c->job.name, w);
        Mlt__Task t;
        mlt__task__init(&t);
        t.kind = MLT__TASK_KIND__TASK_JOB;
        t.job_text = c->job.text;
        t.n_servers = (size_t)c->n_shards;
        t.servers = c->shards;
        t.has_n_workers = 1;
        t.n_workers = c->n_workers;
        mlt_coord__send_task(c, w, &t);
        ws->in_step = false; /* no step waits for it */
    }
}

/* Workers silent for worker_timeout_s are dropped (their connection is
 * taken for dead; a later message from it is told to join again). */
static void check_silence(mlt_coord_t *c)
{
    double now = mlt_time_mono();
    for (uint32_t w = 0; w < MLT_MAX_WORKERS; w++) {
        wslot_t *ws = &c->workers[w];
        if (!ws->joined || now - ws->last_seen <= c->worker_timeout_s)
            continue;
        double quiet = now - ws->last_seen;
        ws->joined = false;
        mlt_coord__drop_worker(c, w, "sent nothing for %.1f s (worker_timeout_s = %g)", quiet,
                               c->worker_timeout_s);
    }
}

/* ---- submit ------------------------------------------------------------------- */

void mlt_coord__clear_job(mlt_coord_t *c)
{
    if (c->job_text)
        mlt_job_free(&c->job);
    mlt_free(c->job_text);
    mlt_free(c->job_path);
    for (size_t i = 0; i < c->n_overrides; i++)
        mlt_free(c->overrides[i]);
    mlt_free(c->overrides);
    c->job_text = c->job_path = NULL;
    c->overrides = NULL;
    c->n_overrides = 0;
}

/* Parses text (+ overrides) into *job; 0 or -EINVAL with a message. */
static int parse_job(const char *text, const char *path, char *const *ov, size_t n_ov,
                     mlt_job_t *job, char *err, size_t errlen)
{
    int rc = mlt_job_parse_string(text, path, job, err, errlen);
    if (rc)
        return rc;
    for (size_t i = 0; i < n_ov; i++) {
        char key[256];
        const char *eq = strchr(ov[i], '=');
        if (!eq || (size_t)(eq - ov[i]) >= sizeof key) {
            snprintf(err, errlen, "override '%s' is not KEY=VALUE", ov[i]);
            mlt_job_free(job);
            return -EINVAL;
        }
        memcpy(key, ov[i], (size_t)(eq - ov[i]));
        key[eq - ov[i]] = '\0';
        if ((rc = mlt_job_set(job, key, eq + 1, err, errlen))) {
            mlt_job_free(job);
            return rc;
        }
    }
    if (n_ov && (rc = mlt_job_validate(job, err, errlen)))
        mlt_job_free(job);
    return rc;
}

static void on_submit(mlt_coord_t *c, const void *id, size_t id_len, const mlt_header_t *h)
{
    uint64_t rid = h->request_id;
    if (c->have_job) {
        reply_error(c, id, id_len, rid, -EBUSY, "job '%s' is %s; stop it first", c->job.name,
                    mlt_coord__phase_names[c->phase]);
        return;
    }
    if (!h->job_text) {
        reply_error(c, id, id_len, rid, -EINVAL, "SUBMIT without job_text");
        return;
    }
    const char *path = h->job_path ? h->job_path : "job";
    mlt_job_t job;
    char err[512];
    if (parse_job(h->job_text, path, h->overrides, h->n_overrides, &job, err, sizeof err)) {
        reply_error(c, id, id_len, rid, -EINVAL, "%s", err);
        return;
    }
    /* outputs only inside state_dir (common/safepath.h) */
    bool by_ctl = h->out_dir && *h->out_dir;
    char rel[MLT_SAFEPATH_MAX + 1], why[MLT_SAFEPATH_MAX + 400];
    if (mlt_safepath_rel(by_ctl ? "--out" : "output_dir", by_ctl ? h->out_dir : job.output_dir,
                         c->state_dir, rel, sizeof rel, why, sizeof why)) {
        reply_error(c, id, id_len, rid, -EINVAL, "%s", why);
        mlt_job_free(&job);
        return;
    }
    char *real = realpath(c->state_dir, NULL); /* for status: a path a client can open */
    char shown[sizeof c->out_dir + 1];
    int n =
        snprintf(shown, sizeof shown, "%s%s%s", real ? real : c->state_dir, *rel ? "/" : "", rel);
    free(real);
    if (n < 0 || (size_t)n >= sizeof c->out_dir) {
        reply_error(c, id, id_len, rid, -ENAMETOOLONG,
                    "the output directory %.200s... is longer "
                    "than %zu bytes",
                    shown, sizeof c->out_dir - 1);
        mlt_job_free(&job);
        return;
    }
    mlt_coord__clear_job(c);
    c->job = job;
    c->job_text = mlt_strdup(h->job_text);
    c->job_path = mlt_strdup(path);
    c->n_overrides = h->n_overrides;
    c->overrides = mlt_calloc(h->n_overrides ? h->n_overrides : 1, sizeof *c->overrides);
    for (size_t i = 0; i < h->n_overrides; i++)
        c->overrides[i] = mlt_strdup(h->overrides[i]);
    memcpy(c->out_rel, rel, sizeof c->out_rel);
    memcpy(c->out_dir, shown, sizeof c->out_dir);
    c->have_job = true;
    c->phase = PH_WAITING; /* not idle from the moment the submit is accepted */
    c->stop_requested = false;
    c->message[0] = '\0';
    c->mem_err[0] = '\0';
    log_info("job '%s' submitted (%u workers, output in %s)", job.name, job.workers, c->out_dir);
    reply_ok(c, id, id_len, rid);
}

static void on_join(mlt_coord_t *c, const void *id, size_t id_len, const mlt_header_t *h)
{
    if (!h->has_worker || h->worker >= MLT_MAX_WORKERS) {
        reply_error(c, id, id_len, h->request_id, -EINVAL, "JOIN without a worker rank below %u",
                    MLT_MAX_WORKERS);
        return;
    }
    if (id_len > MLT_MAX_CLIENT_ID_BYTES)
        return;
    uint32_t w = h->worker;
    if (c->have_job && w >= (uint32_t)c->job.workers) {
        char why[128];
        snprintf(why, sizeof why, "worker %u is not in job '%s' (it has %u workers)", w,
                 c->job.name, c->job.workers);
        log_warn("%s", why);
        mlt_coord__stop_worker(c, id, id_len, why);
        return;
    }
    wslot_t *ws = &c->workers[w];
    if (holds(ws, id, id_len)) { /* a worker's periodic JOIN: a heartbeat */
        ws->last_seen = mlt_time_mono();
        return;
    }
    if (was_replaced(ws, id, id_len) && ws->joined) {
        tell_stale(c, id, id_len, w); /* no taking turns with its replacement */
        return;
    }
    if (ws->joined) {
        const double quiet = mlt_time_mono() - ws->last_seen;
        if (quiet < JOIN_LIVE_S) {
            /* two workers with one rank, or a stray JOIN: the live one keeps it */
            mlt_log_ratelimited(MLT_LOG_WARN, "join-taken", 5.0,
                                "a JOIN as worker %u refused: a live connection holds it", w);
            reply_error(c, id, id_len, h->request_id, -EADDRINUSE,
                        "worker %u is taken by a live connection (heard from %.1f s ago): two "
                        "workers started with rank %u?",
                        w, quiet, w);
            return;
        }
        /* a restarted worker: the new connection wins, and the task the old
         * one owed is not waited for; the old one, should it be alive after
         * all, is told it is out (EADDRINUSE) */
        memcpy(ws->old_id, ws->id, ws->id_len);
        ws->old_id_len = ws->id_len;
        mlt_coord__drop_worker(c, w,
                               "a new connection joined as worker %u, the old one silent for "
                               "%.1f s (a restarted worker)",
                               w, quiet);
    }
    const Mlt__JoinInfo *j = h->join; /* bounded by mlt_wire_decode */
    snprintf(ws->program, sizeof ws->program, "%s", j && j->program ? j->program : "worker");
    snprintf(ws->backends, sizeof ws->backends, "%s", j && j->backends ? j->backends : "cpu");
    ws->threads = j && j->has_threads ? j->threads : 1;
    log_info("worker %u joined: %s, backends %s, %u thread%s", w, ws->program, ws->backends,
             ws->threads, ws->threads == 1 ? "" : "s");
    ws->joined = true;
    ws->loaded = ws->busy = ws->in_step = ws->task_ok = false;
    ws->error[0] = '\0';
    ws->id_len = id_len;
    memcpy(ws->id, id, id_len);
    ws->last_seen = mlt_time_mono();
}

/* A worker that leaves (mlt_session_leave) is dropped at once. */
static void on_leave(mlt_coord_t *c, const void *id, size_t id_len, const mlt_header_t *h)
{
    if (!h->has_worker || h->worker >= MLT_MAX_WORKERS)
        return;
    wslot_t *ws = &c->workers[h->worker];
    if (!holds(ws, id, id_len))
        return;
    ws->joined = false;
    mlt_coord__drop_worker(c, h->worker, "it left");
}

static void on_heartbeat(mlt_coord_t *c, const void *id, size_t id_len, const mlt_header_t *h)
{
    if (!h->has_worker) { /* anyone else's: a liveness probe */
        reply_ok(c, id, id_len, h->request_id);
        return;
    }
    if (h->worker >= MLT_MAX_WORKERS)
        return;
    wslot_t *ws = &c->workers[h->worker];
    if (holds(ws, id, id_len))
        ws->last_seen = mlt_time_mono();
    else if (was_replaced(ws, id, id_len) || (c->have_job && h->worker < c->n_workers))
        tell_stale(c, id, id_len, h->worker);
}

/* ---- branches and metrics ------------------------------------------------------ */

#define SHARD_DOWN_MEMO_S    10.0 /* how long a shard found down shortens later rounds */
#define SHARD_DOWN_TIMEOUT_S 0.25 /* a round's wait meanwhile */

/* shardask's socket setup: a CURVE client with the daemon's keys */
static void curve_setup(void *sock, const void *keys)
{
    mlt_curve_client_socket(sock, keys);
}

/* Every shard's status (st[i] valid where up[i]), asked of all shards at once
 * over sockets of its own (never the job's client, whose requests a status
 * must not wait behind), within MLT_SHARD_STATUS_TIMEOUT_S in all: a dead or
 * stopped shard is reported as not answering, naming it. Returns how many
 * answered; `first_down` (may be NULL) gets why the first one did not. */
static int shard_status(mlt_coord_t *c, mlt_server_status_t *st, bool *up, char *first_down,
                        size_t len)
{
    /* while a shard has been found down lately, a round waits less: a live
     * shard answers in milliseconds, and a burst of status requests queued
     * behind a dead one must not cost the full wait each */
    const double now = mlt_time_mono();
    const bool recent = c->shard_down_at > 0 && now - c->shard_down_at < SHARD_DOWN_MEMO_S;
    char(*why)[MLT_SHARDASK_WHY_LEN] = mlt_calloc((size_t)c->n_shards, sizeof *why);
    int n_up = mlt_shardask_status(c->ctx, (const char *const *)c->shards, c->n_shards,
                                   recent ? SHARD_DOWN_TIMEOUT_S : MLT_SHARD_STATUS_TIMEOUT_S,
                                   c->keys && c->keys->on ? curve_setup : NULL,
                                   c->keys && c->keys->on ? &c->keys->client : NULL, st, up, why);
    if (n_up < c->n_shards)
        c->shard_down_at = mlt_time_mono();
    if (first_down)
        first_down[0] = 0;
    for (int i = 0; i < c->n_shards; i++) {
        if (up[i])
            continue;
        mlt_log_ratelimited(MLT_LOG_WARN, "shard-status", 10.0, "status of shard %d: %s", i,
                            why[i]);
        if (first_down && !first_down[0])
            snprintf(first_down, len, "shard %d (%s)", i, why[i]);
    }
    mlt_free(why);
    return n_up;
}

static void shard_status_free(mlt_coord_t *c, mlt_server_status_t *st, bool *up)
{
    for (int i = 0; i < c->n_shards; i++)
        if (up[i])
            mlt_server_status_free(&st[i]);
    mlt_free(st);
    mlt_free(up);
}

/* STATUS on the control endpoint: every shard's branches merged, and the
 * shards' memory totals as the server info. */
static void reply_branches(mlt_coord_t *c, const void *id, size_t id_len, uint64_t rid)
{
    mlt_server_status_t *st = mlt_calloc((size_t)c->n_shards, sizeof *st);
    bool *up = mlt_calloc((size_t)c->n_shards, sizeof *up);
    char down[MLT_SHARDASK_WHY_LEN + 32];
    int n_up = shard_status(c, st, up, down, sizeof down);
    if (n_up < c->n_shards) {
        reply_error(c, id, id_len, rid, -EHOSTUNREACH, "%d of %d shards did not answer: %s",
                    c->n_shards - n_up, c->n_shards, down);
        shard_status_free(c, st, up);
        return;
    }
    mlt_branch_status_t *b = NULL;
    uint32_t n = 0;
    if (mlt_branches_merge(st, up, c->n_shards, &b, &n)) {
        reply_error(c, id, id_len, rid, -ENOMEM, "out of memory merging branch tables");
        shard_status_free(c, st, up);
        return;
    }
    if (n > MLT_MAX_BRANCHES)
        n = MLT_MAX_BRANCHES;
    mlt_header_t r;
    Mlt__ServerInfo si;
    mlt_wire_init(&r, MLT__MSG_TYPE__MSG_STATUS_REPLY);
    r.has_request_id = 1;
    r.request_id = rid;
    mlt__server_info__init(&si);
    si.rank = 0;
    si.n_servers = (uint32_t)c->n_shards;
    si.chunk_floats = st[0].chunk_floats;
    si.has_memory_limit = si.has_memory_potential = si.has_memory_allocated = 1;
    for (int i = 0; i < c->n_shards; i++) {
        si.memory_limit += st[i].memory_limit;
        si.memory_potential += st[i].memory_potential;
        si.memory_allocated += st[i].memory_allocated;
    }
    si.job = st[0].job[0] ? st[0].job : NULL;
    r.server = &si;
    Mlt__BranchInfo *bi = mlt_calloc(n ? n : 1, sizeof *bi);
    Mlt__BranchInfo **bp = mlt_calloc(n ? n : 1, sizeof *bp);
    Mlt__Tunables *tu = mlt_calloc(n ? n : 1, sizeof *tu);
    for (uint32_t i = 0; i < n; i++) {
        mlt__branch_info__init(&bi[i]);
        mlt__tunables__init(&tu[i]);
        bi[i].id = b[i].id;
        bi[i].has_parent = b[i].parent >= 0;
        bi[i].parent = b[i].parent >= 0 ? (uint32_t)b[i].parent : 0;
        bi[i].kind = mlt_kind_to_wire(b[i].kind);
        bi[i].min_clock = b[i].min_clock;
        bi[i].owned_bytes = b[i].owned_bytes;
        bi[i].shared_bytes = b[i].shared_bytes;
        bi[i].diverged = b[i].diverged;
        tu[i].has_lr = tu[i].has_momentum = tu[i].has_weight_decay = tu[i].has_staleness = 1;
        tu[i].has_warmup = b[i].tunables.warmup >= 0;
        tu[i].warmup = (uint32_t)(b[i].tunables.warmup > 0 ? b[i].tunables.warmup : 0);
        tu[i].lr = b[i].tunables.lr;
        tu[i].momentum = b[i].tunables.momentum;
        tu[i].weight_decay = b[i].tunables.weight_decay;
        tu[i].staleness = (uint32_t)(b[i].tunables.staleness > 0 ? b[i].tunables.staleness : 0);
        bi[i].tunables = &tu[i];
        bp[i] = &bi[i];
    }
    r.n_branches = n;
    r.branches = bp;
    send_to(c, id, id_len, &r);
    mlt_free(bi);
    mlt_free(bp);
    mlt_free(tu);
    mlt_free(b);
    shard_status_free(c, st, up);
}

/* The job's numbers as metrics.c takes them (name NULL: no job). */
static void job_numbers(const mlt_coord_t *c, mlt_metrics_job_t *j)
{
    memset(j, 0, sizeof *j);
    if (c->phase == PH_IDLE && !c->job_text)
        return;
    j->name = c->job.name;
    j->phase = c->phase == PH_TRAINING && c->tphase ? c->tphase : mlt_coord__phase_names[c->phase];
    j->epoch = c->epoch;
    j->clock = c->clock;
    j->loss = c->last_loss;
    j->elapsed = c->t0 > 0 ? mlt_coord__job_time(c) : 0;
    j->val_accuracy = c->val_acc;
    j->test_accuracy = c->test_acc;
    j->val_rmse = c->val_rmse;
    j->test_rmse = c->test_rmse;
    j->trials = c->trials;
    j->tuning_seconds = c->tuning_s;
    j->training_seconds = c->training_s;
    j->workers = c->n_workers;
    for (uint32_t w = 0; w < MLT_MAX_WORKERS; w++)
        j->workers_joined += c->workers[w].joined;
    j->batch_size = c->batch;
    j->lr = c->tunables.lr;
    j->momentum = c->tunables.momentum;
    j->staleness = c->tunables.staleness;
}

static void reply_metrics(mlt_coord_t *c, const void *id, size_t id_len, uint64_t rid)
{
    mlt_server_status_t *st = mlt_calloc((size_t)c->n_shards, sizeof *st);
    bool *up = mlt_calloc((size_t)c->n_shards, sizeof *up);
    shard_status(c, st, up, NULL, 0); /* a shard that does not answer is mltuner_shard_up 0 */
    mlt_metrics_job_t j;
    job_numbers(c, &j);
    char *text = mlt_malloc(MLT_MAX_METRICS_TEXT + 1);
    mlt_metrics_text(text, MLT_MAX_METRICS_TEXT + 1, &j, st, up, c->n_shards, 0);
    mlt_header_t r;
    mlt_wire_init(&r, MLT__MSG_TYPE__MSG_METRICS_REPLY);
    r.has_request_id = 1;
    r.request_id = rid;
    r.text = text;
    send_to(c, id, id_len, &r);
    mlt_free(text);
    shard_status_free(c, st, up);
}

/* ---- the pump -------------------------------------------------------------------- */

/* Serves the control socket for up to timeout_s seconds (at most 64 messages
 * once one arrives). Returns -ECANCELED when the daemon is stopping. */
int mlt_coord__pump(mlt_coord_t *c, double timeout_s)
{
    zmq_pollitem_t items[2] = {
        {.socket = c->ctl, .events = ZMQ_POLLIN},
        {.socket = c->stop_rx, .events = ZMQ_POLLIN},
    };
    if (zmq_poll(items, 2, (long)(timeout_s * 1000)) < 0)
        return zmq_errno() == EINTR ? 0 : -zmq_errno();
    if (items[1].revents & ZMQ_POLLIN) {
        c->shutdown = true;
        return -ECANCELED;
    }
    if (!(items[0].revents & ZMQ_POLLIN)) {
        check_silence(c);
        return 0;
    }
    for (int n = 0; n < 64; n++) {
        /* a stop is seen between requests too, not only after the batch */
        zmq_pollitem_t stop = {.socket = c->stop_rx, .events = ZMQ_POLLIN};
        if (n > 0 && zmq_poll(&stop, 1, 0) > 0) {
            c->shutdown = true;
            return -ECANCELED;
        }
        zmq_msg_t idm, hm;
        zmq_msg_init(&idm);
        zmq_msg_init(&hm);
        if (zmq_msg_recv(&idm, c->ctl, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&idm);
            zmq_msg_close(&hm);
            break;
        }
        int extra = 0;
        if (zmq_msg_more(&idm))
            zmq_msg_recv(&hm, c->ctl, 0);
        while (zmq_msg_more(&hm)) { /* drain unexpected payload frames, to the last */
            zmq_msg_t x;
            zmq_msg_init(&x);
            zmq_msg_recv(&x, c->ctl, 0);
            int more = zmq_msg_more(&x);
            zmq_msg_close(&x);
            extra++;
            if (!more)
                break;
        }
        const void *id = zmq_msg_data(&idm);
        size_t id_len = zmq_msg_size(&idm);
        mlt_header_t *h = NULL;
        char err[256];
        int rc = mlt_wire_decode(zmq_msg_data(&hm), zmq_msg_size(&hm), &h, err, sizeof err);
        if (rc) {
            reply_error(c, id, id_len, 0, rc, "%s", err);
        } else if (extra) {
            reply_error(c, id, id_len, h->request_id, -EINVAL,
                        "control messages carry no payload frames");
        } else if ((h->type == MLT__MSG_TYPE__MSG_SUBMIT ||
                    h->type == MLT__MSG_TYPE__MSG_JOB_STOP) &&
                   !mlt_coord__may_change(c, &hm)) {
            /* coord_sec.c: only an authorised key or the local socket changes the job */
            mlt_header_t r;
            mlt_wire_init_error(&r, h->request_id, -EACCES,
                                c->local[0] ? "submit and stop need an authorised CurveZMQ key "
                                              "or the local control socket (local_control)"
                                            : "submit and stop need an authorised CurveZMQ key");
            r.local_control = c->local[0] ? c->local : NULL;
            mlt_log_ratelimited(MLT_LOG_WARN, "ctl-eacces", 10.0,
                                "%s refused: the peer has no authorised key",
                                mlt_wire_type_name(h->type));
            send_to(c, id, id_len, &r);
        } else {
            switch (h->type) {
            case MLT__MSG_TYPE__MSG_SUBMIT: on_submit(c, id, id_len, h); break;
            case MLT__MSG_TYPE__MSG_JOB_STATUS: reply_status(c, id, id_len, h->request_id); break;
            case MLT__MSG_TYPE__MSG_STATUS: reply_branches(c, id, id_len, h->request_id); break;
            case MLT__MSG_TYPE__MSG_METRICS: reply_metrics(c, id, id_len, h->request_id); break;
            case MLT__MSG_TYPE__MSG_JOB_STOP:
                if (c->have_job) {
                    c->stop_requested = true;
                    log_info("stop of job '%s' requested", c->job.name);
                    reply_ok(c, id, id_len, h->request_id);
                } else {
                    reply_error(c, id, id_len, h->request_id, -ENOENT, "no job is running");
                }
                break;
            case MLT__MSG_TYPE__MSG_JOIN: on_join(c, id, id_len, h); break;
            case MLT__MSG_TYPE__MSG_LEAVE: on_leave(c, id, id_len, h); break;
            case MLT__MSG_TYPE__MSG_REPORT: on_report(c, id, id_len, h); break;
            case MLT__MSG_TYPE__MSG_HEARTBEAT: on_heartbeat(c, id, id_len, h); break;
            default:
                reply_error(c, id, id_len, h->request_id, -EBADMSG, "%s is not a control request",
                            mlt_wire_type_name(h->type));
            }
        }
        mlt_wire_free(&h);
        zmq_msg_close(&hm);
        zmq_msg_close(&idm);
    }
    check_silence(c);
    return 0;
}
