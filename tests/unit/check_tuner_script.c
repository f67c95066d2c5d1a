/* check_tuner_script.c - the job every test of the tuner suite starts from, the
 * scripted executor (its synthetic model and the branch contract it asserts:
 * see check_tuner.c's head) and running the real mlt_tuner_run on it. Part of
 * check_tuner. */
#include "check_tuner.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/rng.h"

/* ============================================================== the job */

/* conf/jobs/fmnist-mlp.conf without its comments */
static const char JOB_TEXT[] =
    "name = \"fmnist-mlp\";\n"
    "seed = 1;\n"
    "workers = 2;\n"
    "backend = \"auto\";\n"
    "output_dir = \"\";\n"
    "model = { type = \"mlp\"; layers = [256, 256]; cnn = []; rank = 20; l2 = 0.0; };\n"
    "data = {\n"
    "  format = \"idx\";\n"
    "  train_images = \"/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz\";\n"
    "  train_labels = \"/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz\";\n"
    "  test_images = \"/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz\";\n"
    "  test_labels = \"/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz\";\n"
    "  ratings = \"\";\n"
    "  synthetic = { users = 10000; items = 5000; rank = 20; ratings = 1000000; noise = 0.5; };\n"
    "  validation = 5000;\n"
    "  test_fraction = 0.1;\n"
    "  subset = 0;\n"
    "};\n"
    "update = { rule = \"sgd\"; beta1 = 0.9; beta2 = 0.999; eps = 1e-8; };\n"
    "tunables = {\n"
    "  lr = { default = 0.01; min = 1e-5; max = 1.0; scale = \"log\"; tune = true; };\n"
    "  momentum = { default = 0.9; min = 0.0; max = 0.99; scale = \"linear\"; tune = true; };\n"
    "  batch_size = { default = 128; values = [32, 64, 128, 256, 512]; tune = true; };\n"
    "  staleness = { default = 0; values = [0, 1, 2, 3]; tune = true; };\n"
    "};\n"
    "tuner = {\n"
    "  searcher = \"bayes\";\n"
    "  logic = \"mltuner\";\n"
    "  min_trial_clocks = 50;\n"
    "  max_overhead = 0.1;\n"
    "  retune_tests = 4;\n"
    "  converge_tests = 5;\n"
    "  range_clocks = 64;\n"
    "  first_trials = 4;\n"
    "  max_trials = 8;\n"
    "  gain_stop = 0.02;\n"
    "  plateau_t = 2.0;\n"
    "  decay = 0.5;\n"
    "};\n"
    "test_interval = 1.0;\n"
    "stop = { target_accuracy = 0.885; target_rmse = 0.0; max_epochs = 10.0; max_time_s = 0.0;\n"
    "         plateau_tests = 0; };\n"
    "checkpoint_interval_s = 0.0;\n";

/* The small, fast job every test starts from: lr and momentum tuned (batch
 * size and staleness fixed at their defaults), 10-clock first trials, a
 * test every epoch, 6 epochs, no target; then the (key, value) pairs given,
 * NULL-terminated. */
void ct_job_make(mlt_job_t *job, ...)
{
    char err[512] = "";
    int rc = mlt_job_parse_string(JOB_TEXT, "check_tuner", job, err, sizeof err);
    ck_assert_msg(rc == 0, "job: %s", err);
    static const char *const base[] = {
        "tunables.batch_size.tune", "false", "tunables.staleness.tune", "false",
        "tuner.min_trial_clocks", "10", "tuner.max_overhead", "0.5",
        "test_interval", "1", "stop.max_epochs", "6",
        "stop.target_accuracy", "0", NULL};
    for (size_t i = 0; base[i]; i += 2) {
        rc = mlt_job_set(job, base[i], base[i + 1], err, sizeof err);
        ck_assert_msg(rc == 0, "set %s=%s: %s", base[i], base[i + 1], err);
    }
    va_list ap;
    va_start(ap, job);
    for (const char *k; (k = va_arg(ap, const char *)) != NULL;) {
        const char *v = va_arg(ap, const char *);
        rc = mlt_job_set(job, k, v, err, sizeof err);
        ck_assert_msg(rc == 0, "set %s=%s: %s", k, v, err);
    }
    va_end(ap);
    rc = mlt_job_validate(job, err, sizeof err);
    ck_assert_msg(rc == 0, "validate: %s", err);
}

/* ================================================== the scripted executor */

static double sget(const script_t *x, const mlt_setting_t *s, const char *name, double fb)
{
    return mlt_setting_get(x->job, s, name, fb);
}

double ct_sx_epoch_clocks(void *ctx, const mlt_setting_t *s)
{
    const script_t *x = ctx;
    return 100.0 * 128.0 / sget(x, s, "batch_size", 128);
}

double ct_clock_cost(const script_t *x, const mlt_setting_t *s)
{
    return 0.004 + 0.0001 * sget(x, s, "batch_size", 128);
}

double ct_rate_of(const script_t *x, const mlt_setting_t *s, double pos)
{
    double lr = sget(x, s, "lr", 0.01);
    if (!(lr > 0))
        return 0; /* an eval branch */
    double bs = sget(x, s, "batch_size", 128);
    if (x->frozen)
        return 0;
    if (x->flat)
        return RATE;
    double opt = x->opt_late > 0 && pos >= x->noise_from ? x->opt_late : LR_OPT;
    double d = log(lr / opt), m = sget(x, s, "momentum", 0);
    return RATE * exp(-d * d / (2 * LR_W * LR_W)) * (1 + m) / 2 *
           pow(bs / 128, x->batch_power > 0 ? x->batch_power : 0.5);
}

static double loss_of(double q)
{
    return L_MIN + (L_0 - L_MIN) * exp(-q);
}

static double accuracy_of(double q)
{
    return 0.1 + 0.85 * (1 - exp(-q / 2));
}

/* noise keyed by the data position: the same data, the same noise */
static double noise_at(const script_t *x, double data_pos)
{
    double sd = x->noise_late > 0 && data_pos >= x->noise_from ? x->noise_late : x->noise;
    if (sd == 0)
        return 0;
    uint64_t st = mlt_rng_mix(x->seed, (uint64_t)llround(data_pos * 1e6));
    return sd * mlt_rng_normal(&st);
}

static br_t *br_live(script_t *x, uint32_t id, const char *what)
{
    ck_assert_msg(id < MAXB, "%s of branch %u: an id the tuner never forked", what, id);
    br_t *b = &x->b[id];
    ck_assert_msg(b->exists, "%s of branch %u, which was never forked", what, id);
    ck_assert_msg(b->live, "%s of branch %u, which was freed", what, id);
    return b;
}

static int sx_fork(void *ctx, uint32_t child, uint32_t parent, mlt_branch_kind_t kind,
                   const mlt_setting_t *s)
{
    script_t *x = ctx;
    x->calls++;
    br_t *p = br_live(x, parent, "fork from");
    ck_assert_msg(kind == MLT_BRANCH_TRAIN || kind == MLT_BRANCH_EVAL || kind == MLT_BRANCH_TEST ||
                      kind == MLT_BRANCH_SNAPSHOT,
                  "fork kind %d", kind);
    ck_assert_msg(p->kind != MLT_BRANCH_TEST && p->kind != MLT_BRANCH_EVAL,
                  "fork of %u from %s branch %u", child,
                  p->kind == MLT_BRANCH_TEST ? "test" : "eval", parent);
    ck_assert_msg(child > INIT && child < MAXB, "fork of child id %u", child);
    ck_assert_msg(!x->b[child].exists, "fork reuses branch id %u", child);
    int live = 0;
    for (uint32_t i = 0; i < MAXB; i++)
        live += x->b[i].live;
    if (x->max_live > 0 && live >= x->max_live) { /* as the shards refuse over memory_limit */
        x->refused++;
        return -ENOMEM;
    }
    br_t *c = &x->b[child];
    *c = *p; /* the parent's synthetic state */
    c->exists = c->live = true;
    c->kind = kind;
    c->parent = parent;
    c->s = *s;
    c->clocks = 0;
    c->fork_pos = p->data_pos;
    c->first_epoch = NAN;
    x->forks[kind]++;
    return 0;
}

static int sx_free(void *ctx, uint32_t id)
{
    script_t *x = ctx;
    x->calls++;
    br_t *b = br_live(x, id, "free");
    ck_assert_msg(id != INIT, "the tuner freed the caller's init branch");
    b->live = false;
    x->frees++;
    return 0;
}

/* one clock of branch b: its loss */
static double step(script_t *x, br_t *b, double epc)
{
    double lr = sget(x, &b->s, "lr", 0.01), pos = b->data_pos;
    double loss;
    if (!x->flat && lr >= LR_BOOM) {
        /* diverges: x8 a clock up to +Inf, or NaN after its first clock */
        double prev = b->clocks == 0 ? loss_of(b->q) : b->loss;
        b->q = NAN;
        if (lr >= LR_NAN) {
            loss = b->clocks == 0 && isfinite(prev) ? 3 * prev : NAN;
            if (isnan(loss))
                b->bad = BAD_NAN;
        } else {
            loss = 8 * prev;
            if (!(loss < 1e6)) {
                loss = INFINITY;
                b->bad = BAD_INF;
            }
        }
    } else if (isnan(b->q)) {
        loss = NAN; /* descends from a broken branch */
    } else if (x->late_lr > 0 && lr >= x->late_lr && b->clocks >= x->late_age) {
        if (x->late_regress) {
            b->q -= 2 * RATE;
            loss = loss_of(b->q) + noise_at(x, pos);
        } else {
            b->q = NAN;
            b->bad = BAD_NAN;
            loss = NAN;
        }
    } else if (x->warm > 0 && lr > 0 && b->age < x->warm) {
        /* early training is unstable: the loss rises, nothing is learnt */
        loss = loss_of(b->q) + WARM_RISE * (double)(b->age + 1) + noise_at(x, pos);
    } else {
        b->q += ct_rate_of(x, &b->s, pos);
        double bump = 0;
        if (x->warm > 0 && lr > 0) {
            /* then the rise falls back, to as far below, over warm / 2 clocks */
            double k = (double)(b->age - x->warm) / ((double)x->warm / 2);
            bump = WARM_RISE * (double)x->warm * (k < 1 ? 1 - 2 * k : -1);
        }
        loss = loss_of(b->q) + bump + noise_at(x, pos);
    }
    if (lr > 0)
        b->age++;
    b->clocks++;
    b->data_pos += 1.0 / epc;
    if (b->kind == MLT_BRANCH_TRAIN)
        b->lineage += 1.0 / epc;
    b->loss = loss;
    return loss;
}

static int sx_run(void *ctx, uint32_t id, const mlt_setting_t *s, int64_t clock_start,
                  int64_t clocks, double data_epoch, double *loss, double *seconds)
{
    script_t *x = ctx;
    x->calls++;
    x->runs++;
    x->last_run_call = x->calls;
    br_t *b = br_live(x, id, "run");
    ck_assert_msg(b->kind == MLT_BRANCH_TRAIN || b->kind == MLT_BRANCH_EVAL,
                  "run of branch %u of kind %d", id, b->kind);
    ck_assert_msg(memcmp(s, &b->s, sizeof *s) == 0,
                  "run of branch %u with a setting other than its fork's", id);
    ck_assert_msg(clocks > 0, "run of %lld clocks", (long long)clocks);
    ck_assert_msg(clock_start == b->clocks, "run of branch %u from clock %lld; it has run %lld",
                  id, (long long)clock_start, (long long)b->clocks);
    ck_assert_msg(fabs(data_epoch - b->data_pos) < 1e-9,
                  "run of branch %u at data epoch %.12g; its cursor is at %.12g", id, data_epoch,
                  b->data_pos);
    if (isnan(b->first_epoch))
        b->first_epoch = data_epoch;
    double epc = ct_sx_epoch_clocks(x, s);
    for (int64_t i = 0; i < clocks; i++)
        loss[i] = step(x, b, epc);
    *seconds = (double)clocks * ct_clock_cost(x, s);
    x->now += *seconds;
    return 0;
}

static int sx_test(void *ctx, uint32_t id, double *val, double *test)
{
    script_t *x = ctx;
    x->calls++;
    x->tests++;
    x->last_test_call = x->calls;
    br_t *b = br_live(x, id, "test");
    ck_assert_msg(b->kind == MLT_BRANCH_TEST, "test of branch %u of kind %d", id, b->kind);
    x->now += 0.1;
    if (x->acc_const > 0) {
        *val = *test = x->acc_const;
        return 0;
    }
    if (x->metric) {
        x->metric(x, b, val, test);
        return 0;
    }
    *val = accuracy_of(b->q);
    *test = *val - 0.002;
    return 0;
}

static double sx_now(void *ctx)
{
    return ((script_t *)ctx)->now;
}

static void sx_progress(void *ctx, const char *phase, uint32_t branch, const mlt_setting_t *s,
                        double epoch, double val, double test, uint32_t trials)
{
    script_t *x = ctx;
    (void)val;
    (void)test;
    (void)trials;
    ck_assert(phase != NULL && s != NULL);
    ck_assert(strcmp(phase, "training") == 0 || strcmp(phase, "searching") == 0);
    ck_assert_msg(branch < MAXB && x->b[branch].exists, "progress of unknown branch %u", branch);
    ck_assert(epoch >= 0);
    x->progress++;
}

script_t *ct_script_new(const mlt_job_t *job)
{
    script_t *x = mlt_calloc(1, sizeof *x);
    x->job = job;
    x->seed = 12345;
    x->noise = 0.002;
    br_t *init = &x->b[INIT];
    init->exists = init->live = true;
    init->kind = MLT_BRANCH_INIT;
    init->first_epoch = NAN;
    init->loss = loss_of(0);
    return x;
}

static int sx_tune(void *ctx, uint32_t id, const mlt_setting_t *s)
{
    script_t *x = ctx;
    x->calls++;
    x->tunes++;
    br_t *b = br_live(x, id, "tune");
    ck_assert_msg(b->kind == MLT_BRANCH_TRAIN, "tune of branch %u of kind %d", id, b->kind);
    b->s = *s;
    return 0;
}

static mlt_exec_t script_exec(script_t *x)
{
    mlt_exec_t ex = {.ctx = x,
                     .fork = sx_fork,
                     .free = sx_free,
                     .tune = sx_tune,
                     .run = sx_run,
                     .test = sx_test,
                     .epoch_clocks = ct_sx_epoch_clocks,
                     .now = sx_now};
    return ex;
}

/* only the training branch (and the caller's init branch) is live */
void ct_assert_only_training_live(const script_t *x, const mlt_tuner_result_t *res)
{
    ck_assert_msg(res->branch > INIT && res->branch < MAXB && x->b[res->branch].live,
                  "the result's branch %u is not live", res->branch);
    ck_assert_int_eq(x->b[res->branch].kind, MLT_BRANCH_TRAIN);
    ck_assert_msg(memcmp(&x->b[res->branch].s, &res->setting, sizeof res->setting) == 0,
                  "the result's setting is not its branch's");
    for (uint32_t i = 0; i < MAXB; i++)
        if (x->b[i].live)
            ck_assert_msg(i == INIT || i == res->branch,
                          "branch %u (kind %d) is still live at the end: leaked", i, x->b[i].kind);
}

/* ====================================================== running a job */

void ct_run_job(const mlt_job_t *job, script_t *x, run_t *r)
{
    ct_run_job_warm(job, x, NULL, r);
}

void ct_run_job_warm(const mlt_job_t *job, script_t *x, const mlt_warm_t *warm, run_t *r)
{
    memset(r, 0, sizeof *r);
    r->x = x;
    FILE *f = tmpfile();
    ck_assert(f != NULL);
    mlt_exec_t ex = script_exec(x);
    r->rc = mlt_tuner_run(job, &ex, INIT, f, warm, &r->res);
    ct_dlog_load(f, job, &r->log);
    fclose(f);
    if (getenv("CHECK_TUNER_DUMP")) /* for debugging a test: its decision log */
        fputs(r->log.raw, stderr);
}

void ct_run_free(run_t *r)
{
    ct_dlog_free(&r->log);
    mlt_free(r->x);
    r->x = NULL;
}

double ct_lr_of(const mlt_job_t *job, const mlt_setting_t *s)
{
    return mlt_setting_get(job, s, "lr", NAN);
}

void ct_run_replay(const mlt_job_t *job, run_t *r, bool with_progress)
{
    script_t *x = ct_script_new(job);
    memset(r, 0, sizeof *r);
    r->x = x;
    FILE *f = tmpfile();
    ck_assert(f != NULL);
    mlt_exec_t ex = script_exec(x);
    if (with_progress)
        ex.progress = sx_progress;
    r->rc = mlt_tuner_run(job, &ex, INIT, f, NULL, &r->res);
    ct_dlog_load(f, job, &r->log);
    fclose(f);
}
