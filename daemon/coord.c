/* coord.c - see coord.h.
 *
 * The coordinator thread runs one job at a time as a plain sequence of steps
 * (run_job); every wait inside it goes through pump(), which serves whatever
 * arrives on the control socket meanwhile (status requests, submissions that
 * must be refused, worker reports) and notices shutdown.
 *
 * Job phases:
 *
 *   idle --SUBMIT accepted--> waiting-workers --all W joined--> loading
 *   loading --every worker loaded data and model (TASK_JOB done)--> training
 *   training --RUN of one test interval done on all workers--> testing
 *   testing --test branch evaluated and freed--> training | done
 *   any --JOB_STOP--> stopped;  any --worker error, divergence--> failed
 *   done | stopped | failed --workers told TASK_STOP--> idle
 *
 * Branch 1 is the init branch (worker 0 writes the seeded weights); the tuner
 * (tuner.c) numbers every branch after it: eval, trials, training, tests. */
#include "daemon/coord.h"

#include <errno.h>
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
#include "common/log.h"
#include "common/timeutil.h"
#include "daemon/metrics.h"
#include "daemon/tuner.h"
#include "proto/wire.h"
#include "worker/mltuner.h"

#define BRANCH_INIT 1u
#define LOSS_RING 4096 /* clocks of per-clock loss being summed over workers */

typedef struct wslot {
    bool joined;
    uint8_t id[MLT_MAX_CLIENT_ID_BYTES]; /* routing id */
    size_t id_len;
    double last_seen;
    bool busy;                /* a task is out */
    uint64_t task_id;
    Mlt__TaskKind task_kind;
    uint64_t part_size;       /* training samples in its partition (TASK_JOB) */
    double epoch;             /* epochs of its partition done */
    /* TASK_TEST results */
    double val_loss, test_loss, val_sq, test_sq;
    uint64_t val_correct, val_count, test_correct, test_count;
    char error[MLT_MAX_ERROR_LEN + 1];
} wslot_t;

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

static const char *const phase_names[] = {"idle",    "waiting-workers", "loading", "training",
                                          "testing", "done",            "stopped", "failed"};

struct mlt_coord {
    pthread_t thread;
    bool started;
    void *ctx;
    void *ctl;       /* ROUTER: mltunerctl and workers */
    void *stop_rx;   /* PAIR, coordinator side */
    void *stop_tx;   /* PAIR, main-thread side */
    char endpoint[256];
    char **shards;
    int n_shards;
    char *state_dir;
    double worker_timeout_s;
    /* the job */
    bool have_job;        /* a job was submitted and is not over */
    bool stop_requested;
    bool shutdown;        /* the daemon is stopping */
    mlt_job_t job;
    char *job_text;
    char *job_path;
    char **overrides;
    size_t n_overrides;
    char out_dir[1024];
    phase_t phase;
    char message[MLT_MAX_ERROR_LEN + 1];
    wslot_t workers[MLT_MAX_WORKERS];
    uint32_t n_workers;
    uint64_t next_task;
    mlt_client_t *client; /* to the shards */
    FILE *progress;       /* progress.jsonl */
    double t0;            /* job start (monotonic) */
    /* progress */
    int64_t clock;        /* clocks the training branch has finished */
    double epoch;
    double last_loss;
    double val_acc, test_acc, val_rmse, test_rmse;
    uint32_t batch;
    mlt_tunables_def_t tunables;
    double loss_sum[LOSS_RING];
    uint32_t loss_n[LOSS_RING];
    int64_t loss_clock[LOSS_RING];
    uint32_t loss_branch[LOSS_RING];
    /* the run in progress: per-clock mean losses go here */
    uint32_t cap_branch;
    int64_t cap_start, cap_n;
    double *cap_loss;
    /* tuner progress, for status */
    uint32_t train_branch;
    uint32_t trials;
    double tuning_s, training_s;
    const char *tphase;
};

/* ---- output ------------------------------------------------------------------ */

static double job_time(const mlt_coord_t *c)
{
    return mlt_time_mono() - c->t0;
}

static void emit(mlt_coord_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void emit(mlt_coord_t *c, const char *fmt, ...)
{
    if (!c->progress)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(c->progress, "{\"t\":%.3f,", job_time(c));
    vfprintf(c->progress, fmt, ap);
    fputs("}\n", c->progress);
    fflush(c->progress);
    va_end(ap);
}

/* JSON number, with null for NaN/Inf (JSON has neither). */
static const char *jnum(char *buf, size_t n, double v)
{
    if (isfinite(v))
        snprintf(buf, n, "%.6g", v);
    else
        snprintf(buf, n, "null");
    return buf;
}

static int mkdir_p(const char *path)
{
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
                return -errno;
            *p = '/';
        }
    }
    if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

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
    mlt_wire_init(&r, MLT__MSG_TYPE__MSG_ERROR);
    r.has_request_id = 1;
    r.request_id = rid;
    r.has_error_code = 1;
    r.error_code = -code;
    r.error = text;
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
    js.phase = (char *)(c->phase == PH_TRAINING && c->tphase ? c->tphase : phase_names[c->phase]);
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
        js.elapsed = c->t0 > 0 ? job_time(c) : 0;
        js.has_batch_size = 1;
        js.batch_size = c->batch;
        tu.has_lr = !isnan(c->tunables.lr);
        tu.lr = c->tunables.lr;
        tu.has_momentum = !isnan(c->tunables.momentum);
        tu.momentum = c->tunables.momentum;
        tu.has_staleness = c->tunables.staleness >= 0;
        tu.staleness = (uint32_t)(c->tunables.staleness >= 0 ? c->tunables.staleness : 0);
        js.tunables = &tu;
        js.out_dir = c->out_dir;
        js.has_trials = js.has_tuning_seconds = js.has_training_seconds = 1;
        js.trials = c->trials;
        js.tuning_seconds = c->tuning_s;
        js.training_seconds = c->training_s;
        js.has_max_epochs = js.has_target = 1;
        js.max_epochs = c->job.stop.max_epochs;
        js.target = c->job.model.type == MLT_MODEL_MF ? c->job.stop.target_rmse
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

static void send_task(mlt_coord_t *c, uint32_t w, Mlt__Task *t)
{
    wslot_t *ws = &c->workers[w];
    t->has_task_id = 1;
    t->task_id = ++c->next_task;
    ws->busy = t->kind != MLT__TASK_KIND__TASK_STOP;
    ws->task_id = t->task_id;
    ws->task_kind = t->kind;
    ws->error[0] = '\0';
    mlt_header_t h;
    mlt_wire_init(&h, MLT__MSG_TYPE__MSG_TASK);
    h.task = t;
    send_to(c, ws->id, ws->id_len, &h);
}

static void stop_worker(mlt_coord_t *c, const void *id, size_t id_len, const char *reason)
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

/* Per-clock training loss: the mean over workers once all have reported it. */
static void add_loss(mlt_coord_t *c, uint32_t branch, int64_t clock, double loss)
{
    size_t slot = (size_t)(clock + (int64_t)branch * 7919) % LOSS_RING;
    if (c->loss_clock[slot] != clock || c->loss_branch[slot] != branch) {
        c->loss_clock[slot] = clock;
        c->loss_branch[slot] = branch;
        c->loss_sum[slot] = 0;
        c->loss_n[slot] = 0;
    }
    c->loss_sum[slot] += loss;
    if (++c->loss_n[slot] == c->n_workers) {
        double mean = c->loss_sum[slot] / c->n_workers;
        char b[32];
        double ep = 0;
        for (uint32_t w = 0; w < c->n_workers; w++)
            ep += c->workers[w].epoch;
        (void)ep;
        c->last_loss = mean;
        if (branch == c->cap_branch && clock > c->cap_start && clock <= c->cap_start + c->cap_n)
            c->cap_loss[clock - 1 - c->cap_start] = mean;
        emit(c, "\"event\":\"clock\",\"branch\":%u,\"clock\":%lld,\"loss\":%s,\"epoch\":%.4f",
             branch, (long long)clock, jnum(b, sizeof b, mean), c->epoch);
    }
}

static void on_report(mlt_coord_t *c, const void *id, size_t id_len, const mlt_header_t *h)
{
    const Mlt__Report *r = h->report;
    if (!r || !h->has_worker || h->worker >= c->n_workers || !c->workers[h->worker].joined) {
        mlt_log_ratelimited(MLT_LOG_WARN, "stray-report", 5.0,
                            "report from a worker that is not in the job ignored");
        return;
    }
    wslot_t *ws = &c->workers[h->worker];
    if (ws->id_len != id_len || memcmp(ws->id, id, id_len) != 0)
        return; /* an old connection of a worker that rejoined */
    ws->last_seen = mlt_time_mono();
    if (r->has_epoch)
        ws->epoch = r->epoch;
    if (r->kind == MLT__TASK_KIND__TASK_RUN && !r->done && r->has_clock && r->has_loss)
        add_loss(c, r->branch, r->clock, r->loss);
    if (!r->done || !r->has_task_id || r->task_id != ws->task_id)
        return;
    ws->busy = false;
    if (r->error)
        snprintf(ws->error, sizeof ws->error, "%s", r->error);
    if (r->kind == MLT__TASK_KIND__TASK_JOB)
        ws->part_size = r->count;
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

/* ---- submit ------------------------------------------------------------------- */

static void clear_job(mlt_coord_t *c)
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
                    phase_names[c->phase]);
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
    clear_job(c);
    c->job = job;
    c->job_text = mlt_strdup(h->job_text);
    c->job_path = mlt_strdup(path);
    c->n_overrides = h->n_overrides;
    c->overrides = mlt_calloc(h->n_overrides ? h->n_overrides : 1, sizeof *c->overrides);
    for (size_t i = 0; i < h->n_overrides; i++)
        c->overrides[i] = mlt_strdup(h->overrides[i]);
    const char *dir = h->out_dir && *h->out_dir ? h->out_dir : job.output_dir;
    if (dir[0] == '/')
        snprintf(c->out_dir, sizeof c->out_dir, "%s", dir);
    else
        snprintf(c->out_dir, sizeof c->out_dir, "%s/%s", c->state_dir, dir);
    c->have_job = true;
    c->phase = PH_WAITING; /* not idle from the moment the submit is accepted */
    c->stop_requested = false;
    c->message[0] = '\0';
    log_info("job '%s' submitted (%u workers, output in %s)", job.name, job.workers, c->out_dir);
    reply_ok(c, id, id_len, rid);
}

static void on_join(mlt_coord_t *c, const void *id, size_t id_len, const mlt_header_t *h)
{
    if (!h->has_worker) {
        reply_error(c, id, id_len, h->request_id, -EINVAL, "JOIN without worker");
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
        stop_worker(c, id, id_len, why);
        return;
    }
    wslot_t *ws = &c->workers[w];
    if (ws->joined && (ws->id_len != id_len || memcmp(ws->id, id, id_len) != 0))
        log_warn("worker %u joined again from a new connection; the old one is dropped", w);
    else if (!ws->joined)
        log_info("worker %u joined", w);
    ws->joined = true;
    ws->id_len = id_len;
    memcpy(ws->id, id, id_len);
    ws->last_seen = mlt_time_mono();
}

/* ---- the pump -------------------------------------------------------------------- */

/* ---- branches and metrics ------------------------------------------------------ */

#define SHARD_STATUS_TIMEOUT_S 5.0     /* a status request for branches or metrics */
#define MLT_COORD_CLIENT_TIMEOUT_S 120 /* the job's client: forks, frees, long pulls */

/* Every shard's status (st[i] valid where up[i]), through the job's client or,
 * with no job, a short-lived one. Returns how many answered. */
static int shard_status(mlt_coord_t *c, mlt_server_status_t *st, bool *up)
{
    mlt_client_t *cl = c->client, *tmp = NULL;
    char err[256];
    if (!cl) {
        tmp = cl = mlt_client_new((const char *const *)c->shards, (uint32_t)c->n_shards, 0, err,
                                  sizeof err);
        if (!cl)
            log_warn("status of the shards: %s", err);
    }
    int n_up = 0;
    for (int i = 0; i < c->n_shards; i++) {
        memset(&st[i], 0, sizeof st[i]);
        up[i] = false;
        if (!cl)
            continue;
        mlt_client_set_timeout(cl, SHARD_STATUS_TIMEOUT_S);
        up[i] = mlt_client_status(cl, (uint32_t)i, &st[i]) == 0;
        n_up += up[i];
        if (!up[i])
            log_warn("status of shard %d: %s", i, mlt_client_error(cl));
    }
    if (tmp)
        mlt_client_destroy(&tmp);
    else if (cl)
        mlt_client_set_timeout(cl, MLT_COORD_CLIENT_TIMEOUT_S);
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
    if (shard_status(c, st, up) < c->n_shards) {
        reply_error(c, id, id_len, rid, -EHOSTUNREACH,
                    "not every shard answered its status request (see the daemon's log)");
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
        bi[i].kind = (Mlt__BranchKind)b[i].kind;
        bi[i].min_clock = b[i].min_clock;
        bi[i].owned_bytes = b[i].owned_bytes;
        bi[i].shared_bytes = b[i].shared_bytes;
        bi[i].diverged = b[i].diverged;
        tu[i].has_lr = tu[i].has_momentum = tu[i].has_weight_decay = tu[i].has_staleness = 1;
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
    j->phase = c->phase == PH_TRAINING && c->tphase ? c->tphase : phase_names[c->phase];
    j->epoch = c->epoch;
    j->clock = c->clock;
    j->loss = c->last_loss;
    j->elapsed = c->t0 > 0 ? job_time(c) : 0;
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
    shard_status(c, st, up); /* a shard that does not answer is mltuner_shard_up 0 */
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

/* Serves the control socket for up to timeout_s seconds (or until one message
 * was handled if `once`). Returns -ECANCELED when the daemon is stopping. */
static int pump(mlt_coord_t *c, double timeout_s)
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
    if (!(items[0].revents & ZMQ_POLLIN))
        return 0;
    for (int n = 0; n < 64; n++) {
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
        while (zmq_msg_more(&hm) || (extra && 0)) { /* drain unexpected payload frames */
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
            case MLT__MSG_TYPE__MSG_REPORT: on_report(c, id, id_len, h); break;
            case MLT__MSG_TYPE__MSG_HEARTBEAT: reply_ok(c, id, id_len, h->request_id); break;
            default:
                reply_error(c, id, id_len, h->request_id, -EBADMSG,
                            "%s is not a control request", mlt_wire_type_name(h->type));
            }
        }
        mlt_wire_free(&h);
        zmq_msg_close(&hm);
        zmq_msg_close(&idm);
    }
    return 0;
}

/* ---- the job ------------------------------------------------------------------- */

static int fail_job(mlt_coord_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail_job(mlt_coord_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->message, sizeof c->message, fmt, ap);
    va_end(ap);
    c->phase = PH_FAILED;
    log_error("job '%s' failed: %s", c->job.name, c->message);
    return -1;
}

/* Waits until no worker of the job is busy. Returns 0, 1 when a stop was
 * requested meanwhile (the wait still ends only when workers are idle), or -1
 * on shutdown or a worker error (the job has failed). */
static int wait_workers(mlt_coord_t *c, const char *what)
{
    double next_note = mlt_time_mono() + 30;
    for (;;) {
        uint32_t busy = 0, first = 0;
        for (uint32_t w = 0; w < c->n_workers; w++)
            if (c->workers[w].busy && !busy++)
                first = w;
        for (uint32_t w = 0; w < c->n_workers; w++)
            if (c->workers[w].error[0])
                return fail_job(c, "worker %u: %s", w, c->workers[w].error);
        if (!busy)
            return c->stop_requested ? 1 : 0;
        if (pump(c, 0.5) == -ECANCELED)
            return -1;
        double now = mlt_time_mono();
        if (now > next_note) {
            log_info("waiting for %u workers to finish %s (worker %u among them)", busy, what,
                     first);
            next_note = now + 30;
        }
        if (now - c->workers[first].last_seen > c->worker_timeout_s * 20)
            return fail_job(c, "worker %u sent nothing for %.0f s during %s", first,
                            now - c->workers[first].last_seen, what);
    }
}

static void task_all(mlt_coord_t *c, Mlt__Task *t)
{
    for (uint32_t w = 0; w < c->n_workers; w++)
        send_task(c, w, t);
}

static int branch_op(mlt_coord_t *c, int rc, const char *what)
{
    if (rc < 0)
        return fail_job(c, "%s: %s", what, mlt_client_error(c->client));
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
    t.beta1 = (float)j->update.beta1;
    t.beta2 = (float)j->update.beta2;
    t.eps = (float)j->update.eps;
    return t;
}

static int ex_fork(void *ctx, uint32_t child, uint32_t parent, int kind, const mlt_setting_t *s)
{
    mlt_coord_t *c = ctx;
    mlt_tunables_def_t t = setting_tunables(c, s);
    return branch_op(c, mlt_branch_fork(c->client, child, parent, kind, &t), "fork") ? -1 : 0;
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
    for (int64_t i = 0; i < clocks; i++)
        loss[i] = NAN;
    c->cap_branch = branch;
    c->cap_start = clock_start;
    c->cap_n = clocks;
    c->cap_loss = loss;
    Mlt__Task t;
    mlt__task__init(&t);
    t.kind = MLT__TASK_KIND__TASK_RUN;
    t.has_branch = t.has_clock_start = t.has_clocks = t.has_batch_size = t.has_data_epoch = 1;
    t.branch = branch;
    t.clock_start = clock_start;
    t.clocks = clocks;
    t.batch_size = setting_batch(c, s);
    t.data_epoch = data_epoch;
    double t0 = mlt_time_mono();
    task_all(c, &t);
    int rc = wait_workers(c, "a run");
    *seconds = mlt_time_mono() - t0;
    c->cap_loss = NULL;
    c->cap_n = 0;
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
    task_all(c, &t);
    int rc = wait_workers(c, "a test");
    c->phase = PH_TRAINING;
    if (rc < 0)
        return rc;
    double vl = 0, tl = 0, vs = 0, ts = 0;
    uint64_t vc = 0, vn = 0, tc = 0, tn = 0;
    for (uint32_t w = 0; w < c->n_workers; w++) {
        const wslot_t *ws = &c->workers[w];
        vl += ws->val_loss;
        tl += ws->test_loss;
        vs += ws->val_sq;
        ts += ws->test_sq;
        vc += ws->val_correct;
        vn += ws->val_count;
        tc += ws->test_correct;
        tn += ws->test_count;
    }
    char b1[32], b2[32], b3[32], b4[32];
    const char *vloss = jnum(b3, 32, vn ? vl / (double)vn : NAN);
    const char *tloss = jnum(b4, 32, tn ? tl / (double)tn : NAN);
    if (c->job.model.type == MLT_MODEL_MF) {
        *val = c->val_rmse = vn ? sqrt(vs / (double)vn) : NAN;
        *test = c->test_rmse = tn ? sqrt(ts / (double)tn) : NAN;
        emit(c,
             "\"event\":\"test\",\"branch\":%u,\"clock\":%lld,\"epoch\":%.4f,"
             "\"val_rmse\":%s,\"test_rmse\":%s,\"val_loss\":%s,\"test_loss\":%s",
             c->train_branch, (long long)c->clock, c->epoch, jnum(b1, 32, *val),
             jnum(b2, 32, *test), vloss, tloss);
    } else {
        *val = c->val_acc = vn ? (double)vc / (double)vn : NAN;
        *test = c->test_acc = tn ? (double)tc / (double)tn : NAN;
        emit(c,
             "\"event\":\"test\",\"branch\":%u,\"clock\":%lld,\"epoch\":%.4f,"
             "\"accuracy\":%s,\"test_accuracy\":%s,\"val_loss\":%s,\"test_loss\":%s",
             c->train_branch, (long long)c->clock, c->epoch, jnum(b1, 32, *val),
             jnum(b2, 32, *test), vloss, tloss);
    }
    return rc;
}

static uint64_t part_size(const mlt_coord_t *c)
{
    uint64_t part = 0;
    for (uint32_t w = 0; w < c->n_workers; w++)
        if (c->workers[w].part_size > part)
            part = c->workers[w].part_size;
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
    return job_time(ctx);
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

static int run_job(mlt_coord_t *c)
{
    mlt_job_t *j = &c->job;
    c->n_workers = (uint32_t)j->workers;
    c->phase = PH_WAITING;
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
    c->tunables.beta1 = (float)j->update.beta1;
    c->tunables.beta2 = (float)j->update.beta2;
    c->tunables.eps = (float)j->update.eps;
    for (size_t i = 0; i < LOSS_RING; i++)
        c->loss_clock[i] = -1;
    for (uint32_t w = (uint32_t)j->workers; w < MLT_MAX_WORKERS; w++)
        if (c->workers[w].joined) {
            stop_worker(c, c->workers[w].id, c->workers[w].id_len, "not in this job");
            c->workers[w].joined = false;
        }

    int rc = mkdir_p(c->out_dir);
    if (rc < 0)
        return fail_job(c, "cannot create output directory %s: %s", c->out_dir, strerror(-rc));
    char path[1100];
    snprintf(path, sizeof path, "%s/progress.jsonl", c->out_dir);
    c->progress = fopen(path, "w");
    if (!c->progress)
        return fail_job(c, "cannot write %s: %s", path, strerror(errno));
    snprintf(path, sizeof path, "%s/job.conf", c->out_dir);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(c->job.text, f);
        fclose(f);
    }
    c->t0 = mlt_time_mono();
    emit(c, "\"event\":\"submitted\",\"job\":\"%s\",\"workers\":%u", j->name, j->workers);

    /* every worker joins */
    double next_note = 0;
    for (;;) {
        uint32_t joined = 0;
        for (uint32_t w = 0; w < c->n_workers; w++)
            joined += c->workers[w].joined;
        if (joined == c->n_workers)
            break;
        if (c->stop_requested) {
            c->phase = PH_STOPPED;
            snprintf(c->message, sizeof c->message, "stopped while waiting for workers");
            return 0;
        }
        if (mlt_time_mono() > next_note) {
            log_info("job '%s': %u of %u workers joined; waiting", j->name, joined, c->n_workers);
            next_note = mlt_time_mono() + 30;
        }
        if (pump(c, 0.5) == -ECANCELED)
            return -1;
    }

    /* load: data and model on every worker; they register the tables */
    c->phase = PH_LOADING;
    Mlt__Task t;
    mlt__task__init(&t);
    t.kind = MLT__TASK_KIND__TASK_JOB;
    t.job_text = c->job.text; /* overrides applied */
    t.n_servers = (size_t)c->n_shards;
    t.servers = c->shards;
    t.has_n_workers = 1;
    t.n_workers = c->n_workers;
    task_all(c, &t);
    if ((rc = wait_workers(c, "loading")) != 0)
        return rc < 0 ? -1 : (c->phase = PH_STOPPED, 0);
    if (part_size(c) == 0)
        return fail_job(c, "the workers have no training samples");

    char err[512];
    c->client = mlt_client_new((const char *const *)c->shards, (uint32_t)c->n_shards, 0, err,
                               sizeof err);
    if (!c->client)
        return fail_job(c, "cannot reach the shards: %s", err);

    /* init branch: worker 0 writes the seeded weights; the training branch forks from it */
    if (branch_op(c, mlt_branch_create(c->client, BRANCH_INIT, MLT_BRANCH_INIT, &c->tunables),
                  "create of the init branch"))
        return -1;
    mlt__task__init(&t);
    t.kind = MLT__TASK_KIND__TASK_INIT;
    t.has_branch = 1;
    t.branch = BRANCH_INIT;
    send_task(c, 0, &t);
    if ((rc = wait_workers(c, "initialisation")) != 0)
        return rc < 0 ? -1 : (c->phase = PH_STOPPED, 0);
    /* the tuning logic takes it from here */
    char dpath[1100];
    snprintf(dpath, sizeof dpath, "%s/decisions.jsonl", c->out_dir);
    FILE *dlog = fopen(dpath, "w");
    if (!dlog)
        return fail_job(c, "cannot write %s: %s", dpath, strerror(errno));
    c->phase = PH_TRAINING;
    mlt_exec_t ex = {c, ex_fork, ex_free, ex_run, ex_test, ex_epoch_clocks, ex_now, ex_progress};
    mlt_tuner_result_t res;
    rc = mlt_tuner_run(j, &ex, BRANCH_INIT, dlog, &res);
    fclose(dlog);
    c->trials = res.trials;
    c->tuning_s = res.trial_seconds;
    c->training_s = res.train_seconds;
    if (isfinite(res.test)) { /* the result's branch, not the last one tested */
        if (j->model.type == MLT_MODEL_MF) {
            c->val_rmse = res.val;
            c->test_rmse = res.test;
        } else {
            c->val_acc = res.val;
            c->test_acc = res.test;
        }
        c->epoch = res.epoch;
    }
    if (rc < 0) {
        if (c->phase != PH_FAILED)
            fail_job(c, "%s", res.reason[0] ? res.reason : "tuning failed");
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
    char b1[32], b2[32];
    if (c->progress) {
        char b3[32], b4[32];
        emit(c, "\"event\":\"end\",\"phase\":\"%s\",\"reason\":\"%s\",\"epoch\":%.4f,"
                "\"accuracy\":%s,\"test_accuracy\":%s,\"val_rmse\":%s,\"test_rmse\":%s,"
                "\"trials\":%u,\"tuning_seconds\":%.3f,\"training_seconds\":%.3f",
             phase_names[c->phase], c->message, c->epoch, jnum(b1, 32, c->val_acc),
             jnum(b2, 32, c->test_acc), jnum(b3, 32, c->val_rmse), jnum(b4, 32, c->test_rmse),
             c->trials, c->tuning_s, c->training_s);
        fclose(c->progress);
        c->progress = NULL;
    }
    for (uint32_t w = 0; w < MLT_MAX_WORKERS; w++) {
        wslot_t *ws = &c->workers[w];
        if (ws->joined)
            stop_worker(c, ws->id, ws->id_len, c->message[0] ? c->message : "job over");
        memset(ws, 0, sizeof *ws);
    }
    if (c->client) {
        if (!c->shutdown)
            mlt_client_job_end(c->client); /* frees every branch on the shards */
        mlt_client_destroy(&c->client);
    }
    log_info("job '%s' %s: %s", c->job.name, phase_names[c->phase], c->message);
    c->have_job = false;
}

static void *coord_main(void *arg)
{
    mlt_coord_t *c = arg;
    while (!c->shutdown) {
        if (!c->have_job) {
            if (pump(c, 1.0) == -ECANCELED)
                break;
            continue;
        }
        run_job(c);
        end_job(c);
    }
    return NULL;
}

/* ---- lifecycle ------------------------------------------------------------------ */

mlt_coord_t *mlt_coord_new(const mlt_dconf_t *conf, const char *const *shards, int n_shards,
                           char *err, size_t errlen)
{
    mlt_coord_t *c = mlt_calloc(1, sizeof *c);
    c->ctx = zmq_ctx_new();
    c->ctl = zmq_socket(c->ctx, ZMQ_ROUTER);
    int zero = 0;
    int64_t maxmsg = MLT_MAX_HEADER_BYTES;
    zmq_setsockopt(c->ctl, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(c->ctl, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    if (zmq_bind(c->ctl, conf->control_bind) < 0) {
        snprintf(err, errlen, "cannot bind control endpoint %s: %s", conf->control_bind,
                 zmq_strerror(zmq_errno()));
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
    c->worker_timeout_s = conf->worker_timeout_s;
    c->phase = PH_IDLE;
    return c;
}

const char *mlt_coord_endpoint(const mlt_coord_t *c)
{
    return c->endpoint;
}

int mlt_coord_start(mlt_coord_t *c)
{
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
    clear_job(c);
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
