/* check_tuner.c - Check suite for daemon/tuner: the REAL mlt_tuner_run driven
 * by a scripted executor (no sockets, no workers).
 *
 * The executor keeps a virtual clock and, per branch, a synthetic model: a
 * training progress q (loss = L_MIN + (L_0 - L_MIN) e^-q, accuracy rising with
 * q), its clock, data cursor and the epochs trained along its lineage. A fork
 * copies the parent's state and records the setting; a run advances q by a
 * rate that peaks at lr = LR_OPT and falls off with the distance in log(lr),
 * helped by momentum, with per-clock noise keyed by the data position (so
 * trials that see the same data see the same noise); lr >= LR_BOOM explodes
 * to +Inf, lr >= LR_NAN gives NaN; script.late_lr makes a branch turn NaN
 * late, once it has run script.late_age clocks, at lr >= late_lr (or, with
 * script.late_regress, unlearn: its accuracy falls). Each clock costs virtual seconds that grow
 * with the batch size; an epoch is 100 x 128 / batch_size clocks.
 *
 * The executor asserts the branch contract on every call: nothing runs,
 * forks from or is freed after being freed (or before being forked), no id
 * is reused, a run continues its branch's clock and data cursor with the
 * setting of its fork, tests run on test branches only. At the end only the
 * training branch (and the caller's init branch) may be live.
 *
 * The decision log goes to a tmpfile; every line is checked to be one JSON
 * object starting with "t", "event", "branch", and the tests read the
 * decisions back from it. CHECK_TUNER_DUMP=1 in the environment prints each
 * run's log to stderr.
 *
 * TCases: "search" (picks the best, trial-time doubling, diverging and NaN
 * trials), "retune" (plateau, convergence, data cursor), "stop" (target
 * accuracy, max_epochs, fixed logic), "replay" (determinism), "baselines"
 * (train-to-completion and hyperband, tuner_base.c). */
#include "daemon/tuner.h"

#include <check.h>
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
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
    "  slope_agree = 0.1;\n"
    "  top_k = 5;\n"
    "  retune_time_factor = 10.0;\n"
    "};\n"
    "test_interval = 1.0;\n"
    "stop = { target_accuracy = 0.885; target_rmse = 0.0; max_epochs = 10.0; max_time_s = 0.0;\n"
    "         plateau_tests = 0; };\n"
    "checkpoint_interval_s = 0.0;\n";

/* The small, fast job every test starts from: lr and momentum tuned (batch
 * size and staleness fixed at their defaults), 10-clock first trials, top 3,
 * a test every epoch, 6 epochs, no target, no time-triggered re-tune; then
 * the (key, value) pairs given, NULL-terminated. */
static void job_make(mlt_job_t *job, ...)
{
    char err[512] = "";
    int rc = mlt_job_parse_string(JOB_TEXT, "check_tuner", job, err, sizeof err);
    ck_assert_msg(rc == 0, "job: %s", err);
    static const char *const base[] = {
        "tunables.batch_size.tune", "false", "tunables.staleness.tune", "false",
        "tuner.min_trial_clocks", "10", "tuner.top_k", "3",
        "tuner.retune_time_factor", "0", "tuner.max_overhead", "0.5",
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

#define MAXB    4096u /* branch ids the executor can hold */
#define INIT    7u    /* the caller's init branch (ids above it are the tuner's) */
#define K_INIT  0     /* branch kinds, as tuner.c forks them */
#define K_TRAIN 1
#define K_EVAL  2
#define K_TEST  3
#define K_SNAP  4     /* frozen: forked from, never run or tested */

#define LR_OPT  0.03   /* the best learning rate */
#define LR_W    1.0    /* fall-off width in log(lr) */
#define LR_BOOM 0.3    /* at and above: the loss explodes to +Inf */
#define LR_NAN  1.0    /* at and above: the loss turns NaN */
#define RATE    0.01   /* progress per clock at the optimum (momentum 1, batch 128) */
#define L_0     2.3    /* loss of the initial weights */
#define L_MIN   0.3    /* loss after infinite training */
#define WARM_RISE 0.004 /* script.warm: the loss's rise a clock */

enum { BAD_NONE = 0, BAD_INF = 1, BAD_NAN = 2 };

typedef struct br {
    bool exists;           /* forked (or the init branch) */
    bool live;             /* not freed */
    int kind;              /* K_* */
    uint32_t parent;       /* forked from */
    mlt_setting_t s;       /* the fork's setting */
    double q;              /* training progress (NaN once broken) */
    int64_t age;           /* clocks trained along the lineage (init: 0) */
    int64_t clocks;        /* clocks run on this branch */
    double data_pos;       /* data cursor in epochs */
    double fork_pos;       /* the data cursor at the fork */
    double first_epoch;    /* data_epoch of its first run (NaN: never ran) */
    double lineage;        /* epochs trained along the lineage */
    double loss;           /* the latest loss */
    int bad;               /* BAD_*: how its losses went non-finite */
} br_t;

typedef struct script {
    const mlt_job_t *job;
    uint64_t seed;         /* of the loss noise */
    double now;            /* the virtual clock, seconds */
    br_t b[MAXB];
    /* the synthetic function */
    double noise;          /* sd of the per-clock loss noise */
    double noise_late;     /* > 0: the sd from data position noise_from (epochs) on */
    double noise_from;
    double opt_late;       /* > 0: the best lr from data position noise_from on */
    bool flat;             /* the setting does not matter (and nothing diverges) */
    int64_t warm;          /* > 0: the loss rises for the first warm clocks of the lineage */
    double acc_const;      /* > 0: every test gives this accuracy */
    double late_lr;        /* > 0: at lr >= late_lr, a branch that has run late_age */
    int64_t late_age;      /* clocks turns NaN (a divergence no shorter trial sees) */
    bool late_regress;     /* instead of NaN, it unlearns: q falls by 2 RATE a clock */
    /* non-NULL: the metrics of test branch b (after acc_const) */
    void (*metric)(const struct script *x, const br_t *b, double *val, double *test);
    /* what happened */
    int forks[5];          /* by kind */
    int frees, runs, tests, progress;
    int calls, last_run_call, last_test_call;
} script_t;

static double sget(const script_t *x, const mlt_setting_t *s, const char *name, double fb)
{
    return mlt_setting_get(x->job, s, name, fb);
}

static double sx_epoch_clocks(void *ctx, const mlt_setting_t *s)
{
    const script_t *x = ctx;
    return 100.0 * 128.0 / sget(x, s, "batch_size", 128);
}

static double clock_cost(const script_t *x, const mlt_setting_t *s)
{
    return 0.004 + 0.0001 * sget(x, s, "batch_size", 128);
}

static double rate_of(const script_t *x, const mlt_setting_t *s, double pos)
{
    double lr = sget(x, s, "lr", 0.01);
    if (!(lr > 0))
        return 0; /* an eval branch */
    double bs = sget(x, s, "batch_size", 128);
    if (x->flat)
        return RATE;
    double opt = x->opt_late > 0 && pos >= x->noise_from ? x->opt_late : LR_OPT;
    double d = log(lr / opt), m = sget(x, s, "momentum", 0);
    return RATE * exp(-d * d / (2 * LR_W * LR_W)) * (1 + m) / 2 * sqrt(bs / 128);
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

static int sx_fork(void *ctx, uint32_t child, uint32_t parent, int kind, const mlt_setting_t *s)
{
    script_t *x = ctx;
    x->calls++;
    br_t *p = br_live(x, parent, "fork from");
    ck_assert_msg(kind == K_TRAIN || kind == K_EVAL || kind == K_TEST || kind == K_SNAP,
                  "fork kind %d", kind);
    ck_assert_msg(p->kind != K_TEST && p->kind != K_EVAL, "fork of %u from %s branch %u", child,
                  p->kind == K_TEST ? "test" : "eval", parent);
    ck_assert_msg(child > INIT && child < MAXB, "fork of child id %u", child);
    ck_assert_msg(!x->b[child].exists, "fork reuses branch id %u", child);
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
        b->q += rate_of(x, &b->s, pos);
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
    if (b->kind == K_TRAIN)
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
    ck_assert_msg(b->kind == K_TRAIN || b->kind == K_EVAL, "run of branch %u of kind %d", id,
                  b->kind);
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
    double epc = sx_epoch_clocks(x, s);
    for (int64_t i = 0; i < clocks; i++)
        loss[i] = step(x, b, epc);
    *seconds = (double)clocks * clock_cost(x, s);
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
    ck_assert_msg(b->kind == K_TEST, "test of branch %u of kind %d", id, b->kind);
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

static script_t *script_new(const mlt_job_t *job)
{
    script_t *x = mlt_calloc(1, sizeof *x);
    x->job = job;
    x->seed = 12345;
    x->noise = 0.002;
    br_t *init = &x->b[INIT];
    init->exists = init->live = true;
    init->kind = K_INIT;
    init->first_epoch = NAN;
    init->loss = loss_of(0);
    return x;
}

static mlt_exec_t script_exec(script_t *x)
{
    mlt_exec_t ex = {x, sx_fork, sx_free, sx_run, sx_test, sx_epoch_clocks, sx_now, NULL};
    return ex;
}

/* only the training branch (and the caller's init branch) is live */
static void assert_only_training_live(const script_t *x, const mlt_tuner_result_t *res)
{
    ck_assert_msg(res->branch > INIT && res->branch < MAXB && x->b[res->branch].live,
                  "the result's branch %u is not live", res->branch);
    ck_assert_int_eq(x->b[res->branch].kind, K_TRAIN);
    ck_assert_msg(memcmp(&x->b[res->branch].s, &res->setting, sizeof res->setting) == 0,
                  "the result's setting is not its branch's");
    for (uint32_t i = 0; i < MAXB; i++)
        if (x->b[i].live)
            ck_assert_msg(i == INIT || i == res->branch,
                          "branch %u (kind %d) is still live at the end: leaked", i, x->b[i].kind);
}

/* ====================================================== the decision log */

#define MAXK 24

typedef struct span {
    const char *p;
    size_t n;
} span_t;

typedef struct line {
    char *text;
    int nk;
    char key[MAXK][40];
    span_t val[MAXK];
    char event[40];
    double t;
    uint32_t branch;
} line_t;

typedef struct dlog {
    line_t *l;
    size_t n;
    char *raw; /* the whole log */
} dlog_t;

static const char *j_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
        p++;
    return p;
}

/* a JSON string at p (at its quote) into out; returns the end or NULL */
static const char *j_string(const char *p, char *out, size_t cap)
{
    size_t n = 0;
    if (*p++ != '"')
        return NULL;
    for (;;) {
        char c = *p++;
        if (c == '"')
            break;
        if ((unsigned char)c < 0x20)
            return NULL;
        if (c == '\\') {
            c = *p++;
            if (c == 'u') {
                for (int i = 0; i < 4; i++)
                    if (!isxdigit((unsigned char)*p++))
                        return NULL;
                c = '?';
            } else if (!strchr("\"\\/bfnrt", c) || c == 0) {
                return NULL;
            }
        }
        if (out && n + 1 < cap)
            out[n++] = c;
    }
    if (out)
        out[n] = 0;
    return p;
}

static const char *j_number(const char *p)
{
    if (*p == '-')
        p++;
    if (*p == '0')
        p++;
    else if (*p >= '1' && *p <= '9')
        while (isdigit((unsigned char)*p))
            p++;
    else
        return NULL;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return NULL;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!isdigit((unsigned char)*p))
            return NULL;
        while (isdigit((unsigned char)*p))
            p++;
    }
    return p;
}

static const char *j_value(const char *p, int depth);

/* an object at p; its top-level members into key/val (may be NULL) */
static const char *j_object(const char *p, int depth, int *nk, char (*key)[40], span_t *val)
{
    if (*p++ != '{' || depth > 16)
        return NULL;
    int n = 0;
    p = j_ws(p);
    if (*p == '}')
        return p + 1;
    for (;;) {
        char k[40];
        p = j_string(j_ws(p), k, sizeof k);
        if (!p)
            return NULL;
        p = j_ws(p);
        if (*p++ != ':')
            return NULL;
        p = j_ws(p);
        const char *v = p;
        p = j_value(p, depth + 1);
        if (!p)
            return NULL;
        if (key && n < MAXK) {
            for (int i = 0; i < n; i++)
                if (strcmp(key[i], k) == 0)
                    return NULL; /* a repeated key */
            memcpy(key[n], k, sizeof k);
            val[n].p = v;
            val[n].n = (size_t)(p - v);
            n++;
        }
        p = j_ws(p);
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p++ != '}')
            return NULL;
        break;
    }
    if (nk)
        *nk = n;
    return p;
}

static const char *j_value(const char *p, int depth)
{
    p = j_ws(p);
    if (*p == '{')
        return j_object(p, depth, NULL, NULL, NULL);
    if (*p == '[') {
        p = j_ws(p + 1);
        if (*p == ']')
            return p + 1;
        for (;;) {
            p = j_value(p, depth + 1);
            if (!p)
                return NULL;
            p = j_ws(p);
            if (*p == ',') {
                p++;
                continue;
            }
            return *p == ']' ? p + 1 : NULL;
        }
    }
    if (*p == '"')
        return j_string(p, NULL, 0);
    if (strncmp(p, "true", 4) == 0)
        return p + 4;
    if (strncmp(p, "false", 5) == 0)
        return p + 5;
    if (strncmp(p, "null", 4) == 0)
        return p + 4;
    return j_number(p);
}

static const span_t *l_get(const line_t *l, const char *key)
{
    for (int i = 0; i < l->nk; i++)
        if (strcmp(l->key[i], key) == 0)
            return &l->val[i];
    return NULL;
}

static bool span_null(const span_t *v)
{
    return v->n == 4 && strncmp(v->p, "null", 4) == 0;
}

/* a number member (null: NAN); fails the test if missing or not a number */
static double l_num(const line_t *l, const char *key)
{
    const span_t *v = l_get(l, key);
    ck_assert_msg(v != NULL, "log line has no \"%s\": %s", key, l->text);
    if (span_null(v))
        return NAN;
    ck_assert_msg(j_number(v->p) == v->p + v->n, "\"%s\" is not a number: %s", key, l->text);
    return strtod(v->p, NULL);
}

/* a string member into out ("" when missing) */
static const char *l_str(const line_t *l, const char *key, char *out, size_t cap)
{
    const span_t *v = l_get(l, key);
    out[0] = 0;
    if (v && *v->p == '"')
        j_string(v->p, out, cap);
    return out;
}

static bool l_is(const line_t *l, const char *event)
{
    return strcmp(l->event, event) == 0;
}

/* member name of the object member key (e.g. "tunables"."lr") */
static double l_sub(const line_t *l, const char *key, const char *name)
{
    const span_t *v = l_get(l, key);
    ck_assert_msg(v != NULL, "log line has no \"%s\": %s", key, l->text);
    int nk = 0;
    char k[MAXK][40];
    span_t sv[MAXK];
    ck_assert(j_object(v->p, 0, &nk, k, sv) != NULL);
    for (int i = 0; i < nk; i++)
        if (strcmp(k[i], name) == 0)
            return strtod(sv[i].p, NULL);
    ck_abort_msg("\"%s\" has no \"%s\": %s", key, name, l->text);
    return NAN;
}

static bool l_reason_has(const line_t *l, const char *needle)
{
    char r[256];
    return strstr(l_str(l, "reason", r, sizeof r), needle) != NULL;
}

/* Reads the log back and checks every line's shape. */
static void dlog_load(FILE *f, const mlt_job_t *job, dlog_t *d)
{
    memset(d, 0, sizeof *d);
    ck_assert(fflush(f) == 0);
    long size = ftell(f);
    ck_assert(size >= 0);
    rewind(f);
    d->raw = mlt_malloc((size_t)size + 1);
    ck_assert_uint_eq(fread(d->raw, 1, (size_t)size, f), (size_t)size);
    d->raw[size] = 0;
    size_t cap = 0;
    for (char *p = d->raw; *p;) {
        char *nl = strchr(p, '\n');
        ck_assert_msg(nl != NULL, "the log's last line has no newline");
        size_t len = (size_t)(nl - p);
        if (d->n == cap) {
            cap = cap ? 2 * cap : 256;
            d->l = mlt_realloc(d->l, cap * sizeof *d->l);
        }
        line_t *l = &d->l[d->n++];
        memset(l, 0, sizeof *l);
        l->text = mlt_malloc(len + 1);
        memcpy(l->text, p, len);
        l->text[len] = 0;
        p = nl + 1;
        /* one JSON object */
        const char *end = j_object(l->text, 0, &l->nk, l->key, l->val);
        ck_assert_msg(end != NULL && *j_ws(end) == 0, "log line %zu is not one JSON object: %s",
                      d->n, l->text);
        ck_assert_msg(l->nk >= 3 && strcmp(l->key[0], "t") == 0 &&
                          strcmp(l->key[1], "event") == 0 && strcmp(l->key[2], "branch") == 0,
                      "log line does not start with t, event, branch: %s", l->text);
        l->t = l_num(l, "t");
        ck_assert_msg(isfinite(l->t) && l->t >= 0, "bad t: %s", l->text);
        if (d->n > 1)
            ck_assert_msg(l->t >= d->l[d->n - 2].t, "t goes back: %s", l->text);
        ck_assert_msg(*l->val[1].p == '"', "event is not a string: %s", l->text);
        l_str(l, "event", l->event, sizeof l->event);
        double br = l_num(l, "branch");
        ck_assert_msg(br >= 0 && br == floor(br) && br < MAXB, "bad branch: %s", l->text);
        l->branch = (uint32_t)br;
        if (l_is(l, "summary")) {
            char v[32];
            l_str(l, "verdict", v, sizeof v);
            ck_assert_msg(strcmp(v, "converging") == 0 || strcmp(v, "unstable") == 0 ||
                              strcmp(v, "diverged") == 0,
                          "bad verdict: %s", l->text);
            double s = l_num(l, "slope");
            ck_assert_msg(isnan(s) == (strcmp(v, "diverged") == 0),
                          "a summary's slope is null iff it diverged: %s", l->text);
        }
        if (l_is(l, "commit") || l_is(l, "propose"))
            for (uint32_t i = 0; i < job->n_tunables; i++)
                ck_assert(isfinite(l_sub(l, "tunables", job->tunables[i].name)));
        if (l_is(l, "test"))
            (void)l_num(l, "accuracy");
    }
    ck_assert_msg(d->n > 0, "the decision log is empty");
}

static void dlog_free(dlog_t *d)
{
    for (size_t i = 0; i < d->n; i++)
        mlt_free(d->l[i].text);
    mlt_free(d->l);
    mlt_free(d->raw);
    memset(d, 0, sizeof *d);
}

/* index of the first line at or after `from` with event ev (and branch br
 * unless br is UINT32_MAX), or d->n */
static size_t dlog_find(const dlog_t *d, size_t from, const char *ev, uint32_t br)
{
    for (size_t i = from; i < d->n; i++)
        if (l_is(&d->l[i], ev) && (br == UINT32_MAX || d->l[i].branch == br))
            return i;
    return d->n;
}

static size_t dlog_count(const dlog_t *d, size_t from, size_t to, const char *ev)
{
    size_t n = 0;
    for (size_t i = from; i < to && i < d->n; i++)
        n += l_is(&d->l[i], ev);
    return n;
}

/* a fork line of a trial */
static bool is_trial_fork(const line_t *l)
{
    char k[16];
    return l_is(l, "fork") && strcmp(l_str(l, "kind", k, sizeof k), "trial") == 0;
}

/* Each search (the first one, and each re-tune up to its commit) says once
 * why it stopped: exactly one search_stop line. */
static void assert_one_stop_per_search(const dlog_t *d)
{
    size_t from = dlog_find(d, 0, "propose", UINT32_MAX);
    while (from < d->n) {
        size_t c = dlog_find(d, from, "commit", UINT32_MAX);
        size_t n = dlog_count(d, from, c, "search_stop");
        if (n != 1) {
            char why[1024] = "";
            for (size_t i = from; i < c; i++)
                if (l_is(&d->l[i], "search_stop")) {
                    char r[256];
                    strncat(why, l_str(&d->l[i], "reason", r, sizeof r),
                            sizeof why - strlen(why) - 4);
                    strcat(why, "; ");
                }
            ck_abort_msg("the search that commits at log line %zu logged %zu search_stop lines "
                         "(%s)",
                         c + 1, n, why);
        }
        size_t r = dlog_find(d, c, "retune", UINT32_MAX);
        from = r < d->n ? dlog_find(d, r, "propose", UINT32_MAX) : d->n;
    }
}

/* ====================================================== running a job */

typedef struct run {
    script_t *x;
    dlog_t log;
    mlt_tuner_result_t res;
    int rc;
} run_t;

static void run_job(const mlt_job_t *job, script_t *x, run_t *r)
{
    memset(r, 0, sizeof *r);
    r->x = x;
    FILE *f = tmpfile();
    ck_assert(f != NULL);
    mlt_exec_t ex = script_exec(x);
    r->rc = mlt_tuner_run(job, &ex, INIT, f, &r->res);
    dlog_load(f, job, &r->log);
    fclose(f);
    if (getenv("CHECK_TUNER_DUMP")) /* for debugging a test: its decision log */
        fputs(r->log.raw, stderr);
}

static void run_free(run_t *r)
{
    dlog_free(&r->log);
    mlt_free(r->x);
    r->x = NULL;
}

static double lr_of(const mlt_job_t *job, const mlt_setting_t *s)
{
    return mlt_setting_get(job, s, "lr", NAN);
}

/* ================================================================= search */

START_TEST(test_picks_best)
{
    /* for a few seeds: one search, then training; the committed lr is
     * within a factor of 3 of the optimum, it had the best converging slope
     * the searcher heard of, and every other trial of the search was freed
     * before the commit */
    static const char *const seeds[] = {"1", "2", "3"};
    for (size_t si = 0; si < 3; si++) {
        mlt_job_t job;
        job_make(&job, "seed", seeds[si], "tuner.retune_tests", "0", "stop.max_epochs", "2",
                 NULL);
        run_t r;
        run_job(&job, script_new(&job), &r);
        const dlog_t *d = &r.log;
        ck_assert_msg(r.rc == 0, "seed %s: %s", seeds[si], r.res.reason);
        ck_assert_uint_eq(r.res.searches, 1);
        size_t ci = dlog_find(d, 0, "commit", UINT32_MAX);
        ck_assert_uint_lt(ci, d->n);
        ck_assert_uint_eq(dlog_count(d, 0, d->n, "commit"), 1);
        const line_t *c = &d->l[ci];
        double lr = l_sub(c, "tunables", "lr");
        fprintf(stderr, "picks_best seed %s: committed lr %g momentum %g after %u trials\n",
                seeds[si], lr, l_sub(c, "tunables", "momentum"), r.res.trials);
        ck_assert_msg(lr >= LR_OPT / 3 && lr <= LR_OPT * 3,
                      "seed %s: committed lr %g, the optimum is %g", seeds[si], lr, LR_OPT);
        ck_assert_double_eq_tol(lr, lr_of(&job, &r.res.setting), 1e-5 * lr);
        char v[32];
        ck_assert_str_eq(l_str(c, "verdict", v, sizeof v), "converging");
        /* the best converging slope the searcher was told */
        double best = INFINITY;
        size_t observed = 0;
        for (size_t i = 0; i < ci; i++)
            if (l_is(&d->l[i], "observe")) {
                observed++;
                if (strcmp(l_str(&d->l[i], "verdict", v, sizeof v), "converging") == 0 &&
                    l_num(&d->l[i], "slope") < best)
                    best = l_num(&d->l[i], "slope");
            }
        ck_assert_uint_eq(observed, r.res.trials);
        ck_assert_double_eq_tol(l_num(c, "slope"), best, 1e-9 + 1e-5 * fabs(best));
        /* every other trial was freed before the commit, once */
        size_t trials = 0;
        for (size_t i = 0; i < ci; i++) {
            if (!is_trial_fork(&d->l[i]))
                continue;
            trials++;
            uint32_t id = d->l[i].branch;
            ck_assert_uint_eq((uint32_t)l_num(&d->l[i], "parent"), INIT);
            size_t fi = dlog_find(d, i, "free", id);
            if (id == c->branch) {
                ck_assert_msg(fi > ci, "the winner %u was freed before its commit", id);
                continue;
            }
            ck_assert_msg(fi < ci, "trial %u was not freed before the commit", id);
            ck_assert_msg(dlog_find(d, fi + 1, "free", id) == d->n, "trial %u freed twice", id);
            ck_assert(!r.x->b[id].live);
        }
        ck_assert_uint_eq(trials, r.res.trials);
        ck_assert_uint_eq(r.x->forks[K_TRAIN], r.res.trials);
        ck_assert_int_eq(r.x->forks[K_EVAL], 1);
        ck_assert_uint_eq(r.res.branch, c->branch);
        assert_one_stop_per_search(d);
        assert_only_training_live(r.x, &r.res);
        run_free(&r);
        mlt_job_free(&job);
    }
}
END_TEST

/* the trial_time lines of the first search: doubled ones and the kept one */
typedef struct tt {
    double doubled[16];
    size_t n_doubled;
    double kept;
    size_t kept_at;
} tt_t;

static void trial_times(const dlog_t *d, tt_t *tt)
{
    memset(tt, 0, sizeof *tt);
    tt->kept_at = d->n;
    for (size_t i = 0; i < d->n; i++) {
        const line_t *l = &d->l[i];
        if (!l_is(l, "trial_time"))
            continue;
        if (l_reason_has(l, "doubled")) {
            ck_assert_msg(tt->kept_at == d->n, "trial time doubled after it was kept: %s",
                          l->text);
            ck_assert(tt->n_doubled < 16);
            tt->doubled[tt->n_doubled++] = l_num(l, "seconds");
        } else {
            ck_assert_msg(l_reason_has(l, "kept from now on"), "%s", l->text);
            ck_assert_msg(tt->kept_at == d->n, "trial time kept twice: %s", l->text);
            tt->kept = l_num(l, "seconds");
            tt->kept_at = i;
        }
    }
}

/* the last summary line of branch br before line `before` (d->n: none) */
static size_t last_summary(const dlog_t *d, uint32_t br, size_t before)
{
    size_t at = d->n;
    for (size_t i = 0; i < before; i++)
        if (l_is(&d->l[i], "summary") && d->l[i].branch == br)
            at = i;
    return at;
}

START_TEST(test_trial_time_doubles)
{
    /* the loss rises for the first 25 clocks of training from the initial
     * weights, then falls: the first trials (the time min_trial_clocks, 10,
     * take at the default batch size) and those at twice that time are all
     * unstable, so the trial time doubles (in seconds: 2x, 4x), the trials resume in
     * turn, and from then on every trial runs the kept time, whatever its
     * batch size (the script's clock costs 0.004 + 0.0001 x batch seconds) */
    mlt_job_t job;
    job_make(&job, "tunables.lr.max", "0.2", "tuner.retune_tests", "0", "stop.max_epochs", "2",
             "tunables.batch_size.tune", "true", NULL);
    script_t *x = script_new(&job);
    x->warm = 25;
    run_t r;
    run_job(&job, x, &r);
    const dlog_t *d = &r.log;
    ck_assert_msg(r.rc == 0, "%s", r.res.reason);
    tt_t tt;
    trial_times(d, &tt);
    ck_assert_msg(tt.n_doubled >= 2, "the trial time doubled %zu times", tt.n_doubled);
    /* the first trial time: min_trial_clocks at the default setting */
    mlt_setting_t def;
    mlt_setting_defaults(&job, &def);
    double t0 = job.tuner.min_trial_clocks * clock_cost(x, &def);
    ck_assert_double_eq_tol(tt.doubled[0], 2 * t0, 1e-3 * t0);
    for (size_t i = 1; i < tt.n_doubled; i++)
        ck_assert_double_eq_tol(tt.doubled[i], 2 * tt.doubled[i - 1], 1e-3 * tt.doubled[i]);
    ck_assert_uint_lt(tt.kept_at, d->n);
    ck_assert_double_eq(tt.kept, tt.doubled[tt.n_doubled - 1]);
    /* every doubling resumes the trials (none diverges here); every trial
     * ends the search having run the kept time, to within a clock */
    size_t first_commit = dlog_find(d, 0, "commit", UINT32_MAX);
    ck_assert_uint_lt(first_commit, d->n);
    size_t resumes = 0, started = 0;
    uint32_t batches_seen = 0;
    for (size_t i = 0; i < first_commit; i++) {
        const line_t *l = &d->l[i];
        if (l_is(l, "trial_resume") && i < tt.kept_at)
            resumes++;
        if (l_is(l, "trial_start")) {
            started++;
            size_t ls = last_summary(d, l->branch, first_commit);
            ck_assert_uint_lt(ls, d->n);
            double secs = l_num(&d->l[ls], "seconds");
            ck_assert_msg(secs >= 0.97 * tt.kept - 1e-9 && secs <= tt.kept + 0.06,
                          "trial %u ran %g s; the trial time is %g s: %s", l->branch, secs,
                          tt.kept, d->l[ls].text);
            size_t pi = dlog_find(d, 0, "propose", l->branch);
            double b = l_sub(&d->l[pi], "tunables", "batch_size");
            for (int k = 0; k < 5; k++)
                if (b == 32 << k)
                    batches_seen |= 1u << k;
        }
        /* before the trial time is kept, no summary converges */
        if (l_is(l, "summary") && i < tt.kept_at && l_num(l, "seconds") < 0.97 * tt.kept) {
            char v[32];
            ck_assert_msg(strcmp(l_str(l, "verdict", v, sizeof v), "converging") != 0,
                          "a trial converged, yet the trial time doubled: %s", l->text);
        }
    }
    ck_assert_uint_ge(resumes, tt.n_doubled);
    ck_assert_uint_ge(started, 2);
    ck_assert_msg(__builtin_popcount(batches_seen) >= 2,
                  "precondition: trials of at least two batch sizes (seen mask %#x)", batches_seen);
    /* the committed trial converges */
    char v[32];
    ck_assert_str_eq(l_str(&d->l[first_commit], "verdict", v, sizeof v), "converging");
    assert_only_training_live(r.x, &r.res);
    run_free(&r);
    mlt_job_free(&job);
}
END_TEST

START_TEST(test_diverging_trials)
{
    /* lr in [0.01, 3]: settings at lr >= 0.3 explode to +Inf, at lr >= 0.6
     * turn NaN. Those trials are diverged, freed, the searcher hears +inf
     * (null in the log), and the job commits a converging one and trains. */
    mlt_job_t job;
    job_make(&job, "tunables.lr.min", "0.01", "tunables.lr.max", "10", "tunables.lr.default",
             "0.03", "tuner.searcher", "random", "tuner.retune_tests", "0", "stop.max_epochs",
             "2", "seed", "1", NULL);
    run_t r;
    run_job(&job, script_new(&job), &r);
    const dlog_t *d = &r.log;
    ck_assert_msg(r.rc == 0, "%s", r.res.reason);
    size_t ci = dlog_find(d, 0, "commit", UINT32_MAX);
    ck_assert_uint_lt(ci, d->n);
    int n_inf = 0, n_nan = 0;
    for (uint32_t id = INIT + 1; id < MAXB; id++) {
        const br_t *b = &r.x->b[id];
        if (!b->exists || b->kind != K_TRAIN || b->bad == BAD_NONE)
            continue;
        n_inf += b->bad == BAD_INF;
        n_nan += b->bad == BAD_NAN;
        ck_assert(lr_of(&job, &b->s) >= LR_BOOM);
        ck_assert_msg(!b->live, "diverged trial %u is live", id);
        /* its summaries: diverged, slope null */
        size_t si = dlog_find(d, 0, "summary", id);
        ck_assert_uint_lt(si, d->n);
        char v[32];
        for (; si < d->n; si = dlog_find(d, si + 1, "summary", id)) {
            ck_assert_str_eq(l_str(&d->l[si], "verdict", v, sizeof v), "diverged");
            ck_assert(isnan(l_num(&d->l[si], "slope")));
        }
        /* freed as diverged, at once: before the next proposal */
        size_t fi = dlog_find(d, 0, "free", id);
        ck_assert_uint_lt(fi, ci);
        ck_assert_uint_lt(fi, dlog_find(d, dlog_find(d, 0, "fork", id), "propose", UINT32_MAX));
        ck_assert_msg(l_reason_has(&d->l[fi], "diverged"), "%s", d->l[fi].text);
        /* the searcher was told: the worst */
        size_t oi = dlog_find(d, 0, "observe", id);
        ck_assert_uint_lt(oi, ci);
        ck_assert(isnan(l_num(&d->l[oi], "slope")));
        ck_assert_str_eq(l_str(&d->l[oi], "verdict", v, sizeof v), "diverged");
    }
    fprintf(stderr, "diverging_trials: %d +Inf and %d NaN trials of %u\n", n_inf, n_nan,
            r.res.trials);
    ck_assert_msg(n_inf >= 1, "precondition: no trial exploded to +Inf");
    ck_assert_msg(n_nan >= 1, "precondition: no trial went NaN");
    /* a converging setting below the divergence edge was committed */
    char v[32];
    ck_assert_str_eq(l_str(&d->l[ci], "verdict", v, sizeof v), "converging");
    ck_assert(l_sub(&d->l[ci], "tunables", "lr") < LR_BOOM);
    /* and trained: tests after the commit with finite accuracy, rising */
    size_t tests = 0;
    double prev = -1;
    for (size_t i = dlog_find(d, ci, "test", UINT32_MAX); i < d->n;
         i = dlog_find(d, i + 1, "test", UINT32_MAX)) {
        double a = l_num(&d->l[i], "accuracy");
        ck_assert(isfinite(a) && a > prev);
        prev = a;
        tests++;
    }
    ck_assert_uint_ge(tests, 1);
    ck_assert_msg(strstr(r.res.reason, "max_epochs") != NULL, "%s", r.res.reason);
    assert_only_training_live(r.x, &r.res);
    run_free(&r);
    mlt_job_free(&job);
}
END_TEST

START_TEST(test_diverged_first_trial)
{
    /* lr in [0.2, 3]: most settings diverge, and so does the first proposal.
     * A diverged trial has nothing to resume, and divergence shows at any
     * trial time, so it must not make the trial time grow: the trial time
     * doubles only while some surviving trial has not converged yet, and the
     * next trial runs the same trial time. */
    mlt_job_t job;
    job_make(&job, "tunables.lr.min", "0.2", "tunables.lr.max", "3", "tunables.lr.default", "0.25",
             "tuner.retune_tests", "0", "stop.max_epochs", "3", "seed", "2", NULL);
    run_t r;
    run_job(&job, script_new(&job), &r);
    const dlog_t *d = &r.log;
    size_t s0 = dlog_find(d, 0, "summary", UINT32_MAX);
    ck_assert_uint_lt(s0, d->n);
    char v[32];
    ck_assert_msg(strcmp(l_str(&d->l[s0], "verdict", v, sizeof v), "diverged") == 0,
                  "precondition: the first trial diverges: %s", d->l[s0].text);
    ck_assert_msg(r.rc == 0, "%s", r.res.reason);
    /* at each doubling, some trial of the search is alive to be resumed */
    bool alive[MAXB] = {false};
    size_t n_alive = 0, ci = dlog_find(d, 0, "commit", UINT32_MAX);
    for (size_t i = 0; i < ci; i++) {
        const line_t *l = &d->l[i];
        if (is_trial_fork(l)) {
            alive[l->branch] = true;
            n_alive++;
        } else if (l_is(l, "free") && alive[l->branch]) {
            alive[l->branch] = false;
            n_alive--;
        } else if (l_is(l, "trial_time") && l_reason_has(l, "doubled")) {
            ck_assert_msg(n_alive > 0,
                          "the trial time doubled to %g clocks with no surviving trial to "
                          "resume (only diverged trials so far): %s",
                          l_num(l, "clocks"), l->text);
        }
    }
    /* the second trial starts at the first trial time */
    size_t t0 = dlog_find(d, 0, "trial_start", UINT32_MAX);
    size_t t1 = dlog_find(d, t0 + 1, "trial_start", UINT32_MAX);
    ck_assert_uint_lt(t1, d->n);
    ck_assert_msg(l_num(&d->l[t1], "seconds") == l_num(&d->l[t0], "seconds"),
                  "after a diverged first trial the next runs %g s, not the first's %g s",
                  l_num(&d->l[t1], "seconds"), l_num(&d->l[t0], "seconds"));
    assert_only_training_live(r.x, &r.res);
    run_free(&r);
    mlt_job_free(&job);
}
END_TEST

/* ================================================================= retune */

/* the setting of a propose or commit line, per job tunable */
static void line_setting(const mlt_job_t *job, const line_t *l, double *v)
{
    for (uint32_t i = 0; i < job->n_tunables; i++)
        v[i] = l_sub(l, "tunables", job->tunables[i].name);
}

START_TEST(test_retune_on_plateau)
{
    /* the validation accuracy is flat: the first test is a gain, the next
     * retune_tests are not, and then the tuner re-tunes with the marginal
     * searcher from the training branch: the incumbent as a trial, then
     * settings that change one tuned tunable each, then a commit */
    mlt_job_t job;
    job_make(&job, "stop.max_epochs", "8", NULL);
    script_t *x = script_new(&job);
    x->acc_const = 0.5;
    run_t r;
    run_job(&job, x, &r);
    const dlog_t *d = &r.log;
    ck_assert_msg(r.rc == 0, "%s", r.res.reason);
    size_t c0 = dlog_find(d, 0, "commit", UINT32_MAX);
    size_t ri = dlog_find(d, c0, "retune", UINT32_MAX);
    ck_assert_msg(ri < d->n, "no retune on a validation plateau");
    ck_assert_msg(l_reason_has(&d->l[ri], "validation metric has not improved"), "%s",
                  d->l[ri].text);
    ck_assert_uint_eq(dlog_count(d, c0, ri, "retune_skipped"), 0);
    ck_assert_uint_eq(dlog_count(d, c0, ri, "test"), 1 + (size_t)job.tuner.retune_tests);
    uint32_t parent = d->l[ri].branch;
    ck_assert_uint_eq(parent, d->l[c0].branch);
    /* the re-tune's search */
    size_t c1 = dlog_find(d, ri, "commit", UINT32_MAX);
    ck_assert_msg(c1 < d->n, "no commit after the retune");
    ck_assert_msg(l_reason_has(&d->l[c1], "re-tune"), "%s", d->l[c1].text);
    double inc[MLT_JOB_MAX_TUNABLES], s[MLT_JOB_MAX_TUNABLES];
    line_setting(&job, &d->l[c0], inc);
    size_t proposals = 0, incumbents = 0;
    for (size_t i = ri; i < c1; i++) {
        const line_t *l = &d->l[i];
        if (is_trial_fork(l))
            ck_assert_uint_eq((uint32_t)l_num(l, "parent"), parent);
        if (!l_is(l, "propose"))
            continue;
        line_setting(&job, l, s);
        int changed = 0;
        for (uint32_t k = 0; k < job.n_tunables; k++) {
            if (fabs(s[k] - inc[k]) > 1e-9 * fabs(inc[k]) + 1e-12) {
                changed++;
                ck_assert_msg(job.tunables[k].tune, "a fixed tunable changed: %s", l->text);
            }
        }
        if (l_reason_has(l, "the current setting")) {
            incumbents++;
            ck_assert_int_eq(changed, 0);
            ck_assert_uint_eq(proposals, 0);
        } else {
            proposals++;
            ck_assert_msg(changed == 1, "a marginal proposal changes %d tunables: %s", changed,
                          l->text);
        }
    }
    ck_assert_uint_eq(incumbents, 1);
    ck_assert_uint_ge(proposals, 1);
    /* the winner replaced the old training branch */
    ck_assert_uint_ne(d->l[c1].branch, parent);
    ck_assert_msg(dlog_find(d, ri, "free", parent) < c1, "the old training branch lives on");
    ck_assert(!r.x->b[parent].live);
    ck_assert_uint_ge(r.res.searches, 2);
    assert_one_stop_per_search(d);
    assert_only_training_live(r.x, &r.res);
    run_free(&r);
    mlt_job_free(&job);
}
END_TEST

/* the first search's commit c0, the first re-tune after it ri, and its commit c1 */
static void first_retune(const dlog_t *d, size_t *c0, size_t *ri, size_t *c1)
{
    *c0 = dlog_find(d, 0, "commit", UINT32_MAX);
    *ri = dlog_find(d, *c0, "retune", UINT32_MAX);
    ck_assert_msg(*ri < d->n, "no retune");
    *c1 = dlog_find(d, *ri, "commit", UINT32_MAX);
    ck_assert_msg(*c1 < d->n, "no commit after the retune");
}

START_TEST(test_retune_paired_lower_loss)
{
    /* late in training the best learning rate falls to an eighth (as in real
     * training, where a lower rate reaches a lower loss) and the loss gets
     * noisier than any trial's progress: the re-tune's trials are unstable,
     * and their slopes say nothing. But they run the current setting's data
     * (the noise is keyed by the data position), so the block means pair up
     * with the current setting's trial, and a lower rate shows a lower loss
     * beyond doubt: the re-tune commits it. */
    mlt_job_t job;
    job_make(&job, "stop.max_epochs", "8", NULL);
    script_t *x = script_new(&job);
    x->acc_const = 0.5;
    x->noise_late = 0.5;
    x->noise_from = 1.2;
    x->opt_late = LR_OPT / 8;
    run_t r;
    run_job(&job, x, &r);
    const dlog_t *d = &r.log;
    ck_assert_msg(r.rc == 0, "%s", r.res.reason);
    size_t c0, ri, c1;
    first_retune(d, &c0, &ri, &c1);
    char v[32];
    size_t unstable = 0, summaries = 0;
    for (size_t i = ri; i < c1; i++)
        if (l_is(&d->l[i], "summary")) {
            summaries++;
            unstable += strcmp(l_str(&d->l[i], "verdict", v, sizeof v), "unstable") == 0;
        }
    ck_assert_msg(unstable == summaries && summaries >= 2,
                  "precondition: the re-tune's trials are all unstable (%zu of %zu)", unstable,
                  summaries);
    ck_assert_msg(l_reason_has(&d->l[c1], "lower loss than the current setting"), "%s",
                  d->l[c1].text);
    double lr0 = l_sub(&d->l[c0], "tunables", "lr"), lr1 = l_sub(&d->l[c1], "tunables", "lr");
    ck_assert_msg(lr1 < lr0, "the re-tune committed lr %g, from %g", lr1, lr0);
    assert_only_training_live(r.x, &r.res);
    run_free(&r);
    mlt_job_free(&job);
}
END_TEST

START_TEST(test_retune_settles_trial_time_again)
{
    /* after the first search the loss gets far noisier (as late in training,
     * where it falls slowly): a re-tune cannot trust the first search's trial
     * time, so it settles it again (doubling until a trial converges or one
     * epoch); when no trial converges even at one epoch, the current setting
     * goes on rather than the least bad trial */
    mlt_job_t job;
    job_make(&job, "stop.max_epochs", "8", NULL);
    script_t *x = script_new(&job);
    x->acc_const = 0.5;
    x->noise_late = 5.0; /* far above any progress a trial can show */
    x->noise_from = 1.2; /* after the first search, which ends by epoch 1 */
    run_t r;
    run_job(&job, x, &r);
    const dlog_t *d = &r.log;
    ck_assert_msg(r.rc == 0, "%s", r.res.reason);
    size_t c0, ri, c1;
    first_retune(d, &c0, &ri, &c1);
    /* the re-tune settles its trial time itself (here at one epoch, the cap:
     * nothing converges), where it used to reuse the first search's */
    size_t settled = 0;
    for (size_t i = ri; i < c1; i++)
        settled += l_is(&d->l[i], "trial_time");
    ck_assert_msg(settled >= 1, "the re-tune did not settle its trial time");
    ck_assert_msg(l_reason_has(&d->l[c1], "the current setting goes on"), "%s", d->l[c1].text);
    double before[MLT_JOB_MAX_TUNABLES], after[MLT_JOB_MAX_TUNABLES];
    line_setting(&job, &d->l[c0], before);
    line_setting(&job, &d->l[c1], after);
    for (uint32_t k = 0; k < job.n_tunables; k++)
        ck_assert_double_eq_tol(after[k], before[k], 1e-9 * fabs(before[k]) + 1e-12);
    assert_only_training_live(r.x, &r.res);
    run_free(&r);
    mlt_job_free(&job);
}
END_TEST

START_TEST(test_converges)
{
    /* the setting does not matter and the accuracy is flat: every re-tune
     * keeps the incumbent, and after converge_tests of them the tuner is
     * converged and re-tunes no more, though the plateau goes on */
    mlt_job_t job;
    job_make(&job, "tuner.retune_tests", "2", "tuner.converge_tests", "2", "stop.max_epochs",
             "16", NULL);
    script_t *x = script_new(&job);
    x->flat = true;
    x->noise = 0;
    x->acc_const = 0.5;
    run_t r;
    run_job(&job, x, &r);
    const dlog_t *d = &r.log;
    ck_assert_msg(r.rc == 0, "%s", r.res.reason);
    size_t conv = dlog_find(d, 0, "converged", UINT32_MAX);
    ck_assert_msg(conv < d->n, "never converged");
    ck_assert_uint_eq(dlog_count(d, 0, d->n, "converged"), 1);
    ck_assert_uint_eq(dlog_count(d, 0, conv, "retune"), (size_t)job.tuner.converge_tests);
    ck_assert_uint_eq(dlog_count(d, conv, d->n, "retune"), 0);
    ck_assert_uint_eq(dlog_count(d, conv, d->n, "retune_skipped"), 0);
    ck_assert_uint_eq(dlog_count(d, conv, d->n, "propose"), 0);
    /* the plateau went on long enough after it that a re-tune was due */
    ck_assert_uint_gt(dlog_count(d, conv, d->n, "test"), (size_t)job.tuner.retune_tests + 1);
    /* every commit has the first one's setting */
    size_t c0 = dlog_find(d, 0, "commit", UINT32_MAX);
    double first[MLT_JOB_MAX_TUNABLES], s[MLT_JOB_MAX_TUNABLES];
    line_setting(&job, &d->l[c0], first);
    size_t commits = 0;
    for (size_t i = c0; i < d->n; i = dlog_find(d, i + 1, "commit", UINT32_MAX)) {
        commits++;
        line_setting(&job, &d->l[i], s);
        ck_assert_msg(memcmp(first, s, job.n_tunables * sizeof(double)) == 0,
                      "a re-tune changed the setting: %s", d->l[i].text);
        ck_assert_uint_lt(i, conv);
    }
    ck_assert_uint_eq(commits, 1 + (size_t)job.tuner.converge_tests);
    ck_assert(l_reason_has(&d->l[conv], "2 re-tunes"));
    ck_assert_uint_eq(r.res.searches, commits);
    assert_one_stop_per_search(d);
    ck_assert_msg(strstr(r.res.reason, "max_epochs") != NULL, "%s", r.res.reason);
    assert_only_training_live(r.x, &r.res);
    run_free(&r);
    mlt_job_free(&job);
}
END_TEST

START_TEST(test_same_data_cursor)
{
    /* every trial of one search starts from the same data cursor (its
     * parent's), for the first search and for each re-tune */
    mlt_job_t job;
    job_make(&job, "stop.max_epochs", "12", NULL);
    script_t *x = script_new(&job);
    x->acc_const = 0.5;
    run_t r;
    run_job(&job, x, &r);
    ck_assert_msg(r.rc == 0, "%s", r.res.reason);
    ck_assert_uint_ge(r.res.searches, 2);
    uint32_t parents[64];
    double cursor[64];
    size_t n_par = 0, trials = 0;
    for (uint32_t id = INIT + 1; id < MAXB; id++) {
        const br_t *b = &r.x->b[id];
        if (!b->exists || b->kind != K_TRAIN)
            continue;
        ck_assert_msg(!isnan(b->first_epoch), "trial %u never ran", id);
        /* the executor already checks run by run that data_epoch continues the
         * branch's cursor; here: the first run of each trial starts at the
         * parent's cursor, the same for every trial of the parent */
        ck_assert_double_eq_tol(b->first_epoch, b->fork_pos, 1e-9);
        size_t k = 0;
        while (k < n_par && parents[k] != b->parent)
            k++;
        if (k == n_par) {
            ck_assert(n_par < 64);
            parents[n_par] = b->parent;
            cursor[n_par++] = b->first_epoch;
        }
        ck_assert_msg(b->first_epoch == cursor[k],
                      "trial %u of parent %u starts at data epoch %.12g, another at %.12g", id,
                      b->parent, b->first_epoch, cursor[k]);
        trials++;
    }
    ck_assert_uint_eq(trials, r.res.trials);
    ck_assert_uint_eq(n_par, r.res.searches);
    ck_assert_double_eq(cursor[0], 0.0);
    for (size_t k = 1; k < n_par; k++)
        ck_assert_msg(cursor[k] > cursor[k - 1], "re-tune %zu starts at %.12g", k, cursor[k]);
    assert_only_training_live(r.x, &r.res);
    run_free(&r);
    mlt_job_free(&job);
}
END_TEST

/* The committed setting trains fine for a while, then diverges (a NaN loss
 * at lr >= 0.02 once the branch has run 250 clocks, 2.5 epochs: no trial
 * runs that long). The tuner rolls back to its snapshot at
 * the last good test, caps lr at half the diverged rate, re-tunes from the
 * snapshot and trains to max_epochs. */
START_TEST(test_diverged_training_rolls_back)
{
    mlt_job_t job;
    job_make(&job, NULL);
    script_t *x = script_new(&job);
    x->late_lr = 0.02;
    x->late_age = 250;
    run_t r;
    run_job(&job, x, &r);
    const dlog_t *d = &r.log;
    ck_assert_msg(r.rc == 0, "%s", r.res.reason);
    ck_assert_msg(strstr(r.res.reason, "max_epochs") != NULL, "%s", r.res.reason);
    size_t c0 = dlog_find(d, 0, "commit", UINT32_MAX);
    ck_assert_uint_lt(c0, d->n);
    double bad_lr = l_sub(&d->l[c0], "tunables", "lr");
    ck_assert_msg(bad_lr >= x->late_lr, "the first search committed lr %g: nothing to recover "
                  "from (the test needs a setting that diverges late)", bad_lr);
    size_t dv = dlog_find(d, c0, "diverged", UINT32_MAX);
    ck_assert_msg(dv < d->n, "no diverged line");
    ck_assert_uint_eq(dlog_count(d, 0, d->n, "diverged"), 1);
    uint32_t train = d->l[c0].branch, snap = (uint32_t)l_num(&d->l[dv], "snapshot");
    ck_assert_uint_eq(d->l[dv].branch, train);
    ck_assert(!r.x->b[train].live);
    /* the snapshot: a fork of the training branch before the NaN, at the last test */
    ck_assert_int_eq(r.x->b[snap].kind, K_SNAP);
    ck_assert_uint_eq(r.x->b[snap].parent, train);
    ck_assert(isfinite(r.x->b[snap].q));
    double snap_epoch = l_num(&d->l[dv], "epoch");
    ck_assert_msg(snap_epoch >= 1 && snap_epoch < 2.5 + 1e-9, "snapshot at epoch %g", snap_epoch);
    /* the range cut, the re-tune from the snapshot, and a commit below the cut */
    size_t rg = dlog_find(d, dv, "range", UINT32_MAX);
    ck_assert_uint_lt(rg, d->n);
    /* the log prints 6 significant digits */
    ck_assert_double_eq_tol(l_num(&d->l[rg], "max"), bad_lr / 2, 1e-5 * bad_lr);
    size_t rt = dlog_find(d, dv, "retune", snap);
    ck_assert_uint_lt(rt, d->n);
    size_t c1 = dlog_find(d, rt, "commit", UINT32_MAX);
    ck_assert_uint_lt(c1, d->n);
    for (size_t i = rt; i < c1; i++)
        if (is_trial_fork(&d->l[i]))
            ck_assert_uint_eq((uint32_t)l_num(&d->l[i], "parent"), snap);
    double lr1 = l_sub(&d->l[c1], "tunables", "lr");
    ck_assert_msg(lr1 <= bad_lr / 2 * (1 + 1e-5), "re-committed lr %g above the cut %g", lr1,
                  bad_lr / 2);
    ck_assert_msg(lr_of(&job, &r.res.setting) < x->late_lr, "final lr %g",
                  lr_of(&job, &r.res.setting));
    /* no test after the divergence reports NaN, and the job trained its epochs */
    ck_assert(isfinite(r.res.test) && r.res.test > 0.5);
    ck_assert(r.res.epoch >= 6 - 1e-9);
    ck_assert_uint_eq(dlog_count(d, dv + 1, d->n, "diverged"), 0);
    assert_only_training_live(r.x, &r.res);
    run_free(&r);
    mlt_job_free(&job);
}
END_TEST

/* The committed setting starts to unlearn after 250 clocks (finite losses,
 * falling accuracy): the test that sees validation accuracy 0.05 below the
 * best rolls back to the snapshot and re-tunes below the failed rate. */
START_TEST(test_regressed_training_rolls_back)
{
    mlt_job_t job;
    job_make(&job, NULL);
    script_t *x = script_new(&job);
    x->late_lr = 0.02;
    x->late_age = 250;
    x->late_regress = true;
    run_t r;
    run_job(&job, x, &r);
    const dlog_t *d = &r.log;
    ck_assert_msg(r.rc == 0, "%s", r.res.reason);
    size_t c0 = dlog_find(d, 0, "commit", UINT32_MAX);
    double bad_lr = l_sub(&d->l[c0], "tunables", "lr");
    ck_assert_msg(bad_lr >= x->late_lr, "committed lr %g", bad_lr);
    ck_assert_uint_eq(dlog_count(d, 0, d->n, "diverged"), 0);
    size_t rg = dlog_find(d, c0, "regressed", UINT32_MAX);
    ck_assert_msg(rg < d->n, "no regressed line");
    ck_assert_uint_eq(dlog_count(d, 0, d->n, "regressed"), 1);
    /* the test before it was within the margin; this one is below */
    size_t tst = rg;
    while (tst > 0 && !l_is(&d->l[tst], "test"))
        tst--;
    double best = 0;
    for (size_t i = 0; i < tst; i++)
        if (l_is(&d->l[i], "test") && l_num(&d->l[i], "accuracy") > best)
            best = l_num(&d->l[i], "accuracy");
    ck_assert_msg(l_num(&d->l[tst], "accuracy") < best - 0.05, "%s", d->l[tst].text);
    uint32_t snap = (uint32_t)l_num(&d->l[rg], "snapshot");
    ck_assert_int_eq(r.x->b[snap].kind, K_SNAP);
    size_t c1 = dlog_find(d, rg, "commit", UINT32_MAX);
    ck_assert_uint_lt(c1, d->n);
    ck_assert(l_sub(&d->l[c1], "tunables", "lr") <= bad_lr / 2 * (1 + 1e-5)); /* 6 digits */
    ck_assert(isfinite(r.res.test) && r.res.test >= best - 0.05);
    ck_assert(r.res.epoch >= 6 - 1e-9);
    assert_only_training_live(r.x, &r.res);
    run_free(&r);
    mlt_job_free(&job);
}
END_TEST

/* Every rate diverges late: the tuner recovers 3 times, then fails the job
 * with a reason; a fixed job that diverges fails at once. */
START_TEST(test_diverged_training_gives_up)
{
    mlt_job_t job;
    job_make(&job, "stop.max_epochs", "20", NULL);
    script_t *x = script_new(&job);
    x->late_lr = 1e-9;
    x->late_age = 250;
    run_t r;
    run_job(&job, x, &r);
    ck_assert_int_eq(r.rc, -1);
    ck_assert_msg(strstr(r.res.reason, "diverged") && strstr(r.res.reason, "after 3 recoveries"),
                  "%s", r.res.reason);
    ck_assert_uint_eq(dlog_count(&r.log, 0, r.log.n, "diverged"), 4);
    run_free(&r);
    mlt_job_free(&job);

    job_make(&job, "tuner.logic", "fixed", "tunables.lr.default", "0.03", NULL);
    x = script_new(&job);
    x->late_lr = 0.02;
    x->late_age = 250;
    run_job(&job, x, &r);
    ck_assert_int_eq(r.rc, -1);
    ck_assert_msg(strstr(r.res.reason, "nothing is tuned"), "%s", r.res.reason);
    run_free(&r);
    mlt_job_free(&job);
}
END_TEST

/* =================================================================== stop */

START_TEST(test_target_accuracy)
{
    mlt_job_t job;
    job_make(&job, "stop.target_accuracy", "0.8", "stop.max_epochs", "40", NULL);
    run_t r;
    run_job(&job, script_new(&job), &r);
    const dlog_t *d = &r.log;
    ck_assert_msg(r.rc == 0, "%s", r.res.reason);
    ck_assert_msg(strstr(r.res.reason, "reached the target") != NULL, "%s", r.res.reason);
    ck_assert(r.res.test >= 0.8);
    ck_assert(r.res.epoch < 40);
    size_t last = d->n, tests = 0;
    for (size_t i = dlog_find(d, 0, "test", UINT32_MAX); i < d->n;
         i = dlog_find(d, i + 1, "test", UINT32_MAX)) {
        if (last < d->n)
            ck_assert_msg(l_num(&d->l[last], "test_accuracy") < 0.8,
                          "the job went on after reaching the target: %s", d->l[last].text);
        last = i;
        tests++;
    }
    ck_assert_uint_lt(last, d->n);
    ck_assert_uint_ge(tests, 2);
    ck_assert(l_num(&d->l[last], "test_accuracy") >= 0.8);
    ck_assert_double_eq_tol(l_num(&d->l[last], "test_accuracy"), r.res.test, 1e-5);
    /* nothing ran after the last test */
    ck_assert_int_gt(r.x->last_test_call, r.x->last_run_call);
    ck_assert_uint_eq(dlog_count(d, last, d->n, "fork"), 0);
    assert_only_training_live(r.x, &r.res);
    run_free(&r);
    mlt_job_free(&job);
}
END_TEST

START_TEST(test_max_epochs)
{
    /* 2.5 epochs with a test every 0.7: the last interval is cut short so
     * that the training lineage has trained exactly 2.5 epochs */
    mlt_job_t job;
    job_make(&job, "stop.max_epochs", "2.5", "test_interval", "0.7", "tuner.retune_time_factor",
             "10", NULL);
    run_t r;
    run_job(&job, script_new(&job), &r);
    const dlog_t *d = &r.log;
    ck_assert_msg(r.rc == 0, "%s", r.res.reason);
    ck_assert_msg(strstr(r.res.reason, "max_epochs 2.5 reached") != NULL, "%s", r.res.reason);
    ck_assert_double_eq_tol(r.res.epoch, 2.5, 1e-9);
    ck_assert_double_eq_tol(r.x->b[r.res.branch].lineage, 2.5, 1e-9);
    size_t last = d->n;
    for (size_t i = dlog_find(d, 0, "test", UINT32_MAX); i < d->n;
         i = dlog_find(d, i + 1, "test", UINT32_MAX)) {
        ck_assert(l_num(&d->l[i], "epoch") <= 2.5 + 1e-4);
        last = i;
    }
    ck_assert_uint_lt(last, d->n);
    ck_assert_double_eq_tol(l_num(&d->l[last], "epoch"), 2.5, 1e-4);
    /* no branch of the training lineage trained past it */
    for (uint32_t id = INIT + 1; id < MAXB; id++)
        if (r.x->b[id].exists)
            ck_assert_msg(r.x->b[id].lineage <= 2.5 + 1e-9, "branch %u trained %.6f epochs", id,
                          r.x->b[id].lineage);
    assert_only_training_live(r.x, &r.res);
    run_free(&r);
    mlt_job_free(&job);
}
END_TEST

START_TEST(test_fixed_logic)
{
    /* tuner.logic = fixed: no search, one commit with the defaults, training
     * to max_epochs */
    mlt_job_t job;
    job_make(&job, "tuner.logic", "fixed", "tunables.batch_size.tune", "true",
             "stop.max_epochs", "3", NULL);
    run_t r;
    run_job(&job, script_new(&job), &r);
    const dlog_t *d = &r.log;
    ck_assert_msg(r.rc == 0, "%s", r.res.reason);
    ck_assert_uint_eq(dlog_count(d, 0, d->n, "commit"), 1);
    static const char *const none[] = {"propose", "summary", "trial_start", "trial_resume",
                                       "observe", "retune", "trial_time", "start", "search_stop",
                                       "converged"};
    for (size_t i = 0; i < sizeof none / sizeof none[0]; i++)
        ck_assert_msg(dlog_count(d, 0, d->n, none[i]) == 0, "fixed logic logged \"%s\"",
                      none[i]);
    const line_t *c = &d->l[dlog_find(d, 0, "commit", UINT32_MAX)];
    ck_assert(l_reason_has(c, "fixed"));
    ck_assert_double_eq_tol(l_sub(c, "tunables", "lr"), 0.01, 1e-12);
    ck_assert_double_eq_tol(l_sub(c, "tunables", "momentum"), 0.9, 1e-12);
    ck_assert_double_eq_tol(l_sub(c, "tunables", "batch_size"), 128, 1e-12);
    ck_assert_double_eq_tol(l_sub(c, "tunables", "staleness"), 0, 1e-12);
    mlt_setting_t def;
    mlt_setting_defaults(&job, &def);
    ck_assert(memcmp(&def, &r.res.setting, sizeof def) == 0);
    ck_assert_uint_eq(r.res.searches, 0);
    ck_assert_uint_eq(r.res.trials, 0);
    ck_assert_int_eq(r.x->forks[K_TRAIN], 1);
    ck_assert_int_eq(r.x->forks[K_EVAL], 0);
    ck_assert_int_eq(r.x->forks[K_TEST], r.x->tests);
    ck_assert_int_eq(r.x->tests, 3);
    ck_assert_double_eq_tol(r.res.epoch, 3.0, 1e-9);
    ck_assert(r.res.trial_seconds == 0);
    ck_assert(strstr(r.res.reason, "max_epochs") != NULL);
    assert_only_training_live(r.x, &r.res);
    run_free(&r);
    mlt_job_free(&job);
}
END_TEST

/* ================================================================= replay */

static void run_replay(const mlt_job_t *job, run_t *r, bool with_progress)
{
    script_t *x = script_new(job);
    memset(r, 0, sizeof *r);
    r->x = x;
    FILE *f = tmpfile();
    ck_assert(f != NULL);
    mlt_exec_t ex = script_exec(x);
    if (with_progress)
        ex.progress = sx_progress;
    r->rc = mlt_tuner_run(job, &ex, INIT, f, &r->res);
    dlog_load(f, job, &r->log);
    fclose(f);
}

START_TEST(test_deterministic)
{
    /* every tunable tuned, re-tunes on: the same seed and a deterministic
     * executor give the same decision log, byte for byte (the virtual clock
     * makes even "t" and the slopes deterministic), and the same result */
    mlt_job_t job;
    job_make(&job, "tunables.batch_size.tune", "true", "tunables.staleness.tune", "true",
             "tuner.retune_time_factor", "5", "stop.max_epochs", "8", NULL);
    run_t a, b;
    run_replay(&job, &a, false);
    run_replay(&job, &b, true);
    ck_assert_msg(a.rc == 0, "%s", a.res.reason);
    ck_assert_int_eq(a.rc, b.rc);
    ck_assert_uint_gt(a.log.n, 10);
    ck_assert_uint_eq(a.log.n, b.log.n);
    for (size_t i = 0; i < a.log.n; i++)
        ck_assert_msg(strcmp(a.log.l[i].text, b.log.l[i].text) == 0,
                      "line %zu differs:\n%s\n%s", i + 1, a.log.l[i].text, b.log.l[i].text);
    ck_assert_str_eq(a.log.raw, b.log.raw);
    ck_assert_uint_eq(a.res.branch, b.res.branch);
    ck_assert(memcmp(&a.res.setting, &b.res.setting, sizeof a.res.setting) == 0);
    ck_assert_uint_eq(a.res.trials, b.res.trials);
    ck_assert_uint_eq(a.res.searches, b.res.searches);
    ck_assert(a.res.epoch == b.res.epoch && a.res.test == b.res.test);
    ck_assert_str_eq(a.res.reason, b.res.reason);
    ck_assert_int_gt(b.x->progress, 0);
    /* another job seed gives other proposals: the comparison can fail */
    mlt_job_t job2;
    job_make(&job2, "tunables.batch_size.tune", "true", "tunables.staleness.tune", "true",
             "tuner.retune_time_factor", "5", "stop.max_epochs", "8", "seed", "99", NULL);
    run_t c;
    run_replay(&job2, &c, false);
    ck_assert_msg(strcmp(a.log.raw, c.log.raw) != 0, "the seed does not change the decisions");
    run_free(&a);
    run_free(&b);
    run_free(&c);
    mlt_job_free(&job);
    mlt_job_free(&job2);
}
END_TEST

/* ============================================================== baselines */

#define BMAXT 64 /* tests of one baseline setting, at most */

/* One setting a baseline tried, read back from the decision log (line
 * indexes are d->n when there is none). */
typedef struct bset {
    uint32_t id;
    size_t propose, fork, observe, commit, free_at;
    size_t n_free, n_observe;
    size_t nt;
    double epoch[BMAXT], val[BMAXT], test[BMAXT], loss[BMAXT];
    size_t tline[BMAXT];
    double lr;
    int s; /* hyperband: its bracket's s (-1: none) */
} bset_t;

typedef struct bsets {
    bset_t *v;
    size_t n;
} bsets_t;

static bset_t *bset_of(const bsets_t *bs, uint32_t id)
{
    for (size_t i = 0; i < bs->n; i++)
        if (bs->v[i].id == id)
            return &bs->v[i];
    return NULL;
}

/* The settings of a baseline's log; every fork, test, observe, commit and
 * free line is about a proposed setting's branch. */
static void bsets_load(const dlog_t *d, bsets_t *bs)
{
    bs->v = mlt_calloc(d->n + 1, sizeof *bs->v);
    bs->n = 0;
    int s = -1;
    for (size_t i = 0; i < d->n; i++) {
        const line_t *l = &d->l[i];
        if (l_is(l, "bracket")) {
            ck_assert_uint_eq(l->branch, INIT);
            s = (int)l_num(l, "s");
            continue;
        }
        bset_t *e = bset_of(bs, l->branch);
        if (l_is(l, "propose")) {
            ck_assert_msg(e == NULL, "branch %u proposed twice: %s", l->branch, l->text);
            e = &bs->v[bs->n++];
            e->id = l->branch;
            e->propose = i;
            e->fork = e->observe = e->commit = e->free_at = d->n;
            e->lr = l_sub(l, "tunables", "lr");
            e->s = s;
            continue;
        }
        ck_assert_msg(e != NULL, "a line about branch %u, never proposed: %s", l->branch, l->text);
        ck_assert_msg(e->n_free == 0, "a line about branch %u after its free: %s", l->branch,
                      l->text);
        if (l_is(l, "fork")) {
            ck_assert_msg(e->fork == d->n, "branch %u forked twice: %s", l->branch, l->text);
            e->fork = i;
        } else if (l_is(l, "test")) {
            ck_assert_msg(e->fork < i, "a test of branch %u before its fork: %s", e->id, l->text);
            ck_assert_uint_lt(e->nt, BMAXT);
            e->epoch[e->nt] = l_num(l, "epoch");
            e->val[e->nt] = l_num(l, "accuracy");
            e->test[e->nt] = l_num(l, "test_accuracy");
            e->loss[e->nt] = l_num(l, "loss");
            e->tline[e->nt++] = i;
        } else if (l_is(l, "observe")) {
            e->observe = i;
            e->n_observe++;
        } else if (l_is(l, "commit")) {
            e->commit = i;
        } else if (l_is(l, "free")) {
            e->free_at = i;
            e->n_free++;
        } else {
            ck_abort_msg("an unexpected baseline log line: %s", l->text);
        }
    }
}

static void bsets_free(bsets_t *bs)
{
    mlt_free(bs->v);
    memset(bs, 0, sizeof *bs);
}

/* the best validation accuracy of a setting's tests (NAN: none finite) */
static double bset_best(const bset_t *e)
{
    double b = NAN;
    for (size_t k = 0; k < e->nt; k++)
        if (isfinite(e->val[k]) && (isnan(b) || e->val[k] > b))
            b = e->val[k];
    return b;
}

static double bset_last(const bset_t *e, const double *v)
{
    return e->nt ? v[e->nt - 1] : NAN;
}

/* true when a (%.6g in the log) and b agree */
static bool num_eq(double a, double b)
{
    if (isnan(a) || isnan(b))
        return isnan(a) && isnan(b);
    return fabs(a - b) <= 1e-5 * fmax(fabs(a), fabs(b)) + 1e-9;
}

/* What both baselines owe: every setting forked once from init as a train
 * branch right after its proposal, trained in test_interval steps from epoch
 * 0 (resumed, never re-forked), tested on test branches; every branch but the
 * result's freed exactly once; the result is the live branch and the last
 * commit. */
static void assert_baseline_common(const mlt_job_t *job, const run_t *r, const bsets_t *bs)
{
    const dlog_t *d = &r->log;
    const script_t *x = r->x;
    ck_assert_uint_ge(bs->n, 1);
    size_t tests = 0;
    for (size_t i = 0; i < bs->n; i++) {
        const bset_t *e = &bs->v[i];
        ck_assert_msg(e->fork == e->propose + 1,
                      "branch %u: the proposal is not followed by "
                      "its fork",
                      e->id);
        const line_t *f = &d->l[e->fork];
        char k[16];
        ck_assert_uint_eq((uint32_t)l_num(f, "parent"), INIT);
        ck_assert_str_eq(l_str(f, "kind", k, sizeof k), "train");
        const br_t *b = &x->b[e->id];
        ck_assert(b->exists);
        ck_assert_int_eq(b->kind, K_TRAIN);
        ck_assert_uint_eq(b->parent, INIT);
        ck_assert_msg(fabs(lr_of(job, &b->s) - e->lr) <= 1e-5 * e->lr,
                      "branch %u runs lr %g, its proposal says %g", e->id, lr_of(job, &b->s),
                      e->lr);
        ck_assert_msg(e->nt >= 1, "setting %u was never tested", e->id);
        for (size_t t = 0; t < e->nt; t++) {
            double prev = t ? e->epoch[t - 1] : 0;
            ck_assert_msg(e->epoch[t] > prev && e->epoch[t] <= prev + job->test_interval + 1e-4,
                          "branch %u: a test at epoch %g after %g (test_interval %g)", e->id,
                          e->epoch[t], prev, job->test_interval);
        }
        /* the executor's clocks and the log's epochs agree: each step continued
         * the branch (the executor checked the clock and data cursor) */
        double epc = sx_epoch_clocks(r->x, &b->s);
        ck_assert_msg(fabs((double)b->clocks / epc - bset_last(e, e->epoch)) < 1e-3,
                      "branch %u ran %lld clocks; its last test says epoch %g", e->id,
                      (long long)b->clocks, bset_last(e, e->epoch));
        ck_assert_double_eq_tol(b->lineage, (double)b->clocks / epc, 1e-6);
        ck_assert_double_eq_tol(b->first_epoch, 0.0, 1e-12);
        tests += e->nt;
        if (e->id == r->res.branch) {
            ck_assert_msg(e->n_free == 0, "the result's branch %u was freed", e->id);
            ck_assert(b->live);
        } else {
            ck_assert_msg(e->n_free == 1, "branch %u freed %zu times", e->id, e->n_free);
            ck_assert(!b->live);
        }
    }
    ck_assert_uint_eq(bs->n, r->res.trials);
    ck_assert_int_eq(x->forks[K_TRAIN], (int)bs->n);
    ck_assert_int_eq(x->forks[K_EVAL], 0);
    ck_assert_int_eq(x->forks[K_TEST], x->tests);
    ck_assert_int_eq(x->tests, (int)tests);
    ck_assert_int_eq(x->frees, x->tests + (int)bs->n - 1);
    /* the result: the live branch, the last commit, its last test */
    const bset_t *res = bset_of(bs, r->res.branch);
    ck_assert_msg(res != NULL, "the result's branch %u is no setting's", r->res.branch);
    size_t last_commit = d->n;
    for (size_t i = 0; i < d->n; i++)
        if (l_is(&d->l[i], "commit"))
            last_commit = i;
    ck_assert_uint_lt(last_commit, d->n);
    ck_assert_uint_eq(d->l[last_commit].branch, r->res.branch);
    ck_assert_msg(num_eq(r->res.val, bset_last(res, res->val)), "res.val %g, last test %g",
                  r->res.val, bset_last(res, res->val));
    ck_assert_msg(num_eq(r->res.test, bset_last(res, res->test)), "res.test %g, last test %g",
                  r->res.test, bset_last(res, res->test));
    ck_assert_double_eq_tol(r->res.epoch, bset_last(res, res->epoch), 1e-4);
    ck_assert_uint_eq(r->res.searches, 1);
    assert_only_training_live(r->x, &r->res);
}

/* Train-to-completion's stopping rule for one setting: it stops after a test
 * at max_epochs, a diverged one, one at or above the target, or plateau tests
 * in a row that do not beat its best; and at no test before. */
static void assert_ttc_stop(const mlt_job_t *job, const bset_t *e, int plateau)
{
    /* the log has 6 digits: a gain there may be a tie, a tie a tiny gain;
     * lo counts the tests that surely were no gain, hi those that may not be */
    double best = NAN;
    int lo = 0, hi = 0;
    for (size_t t = 0; t < e->nt; t++) {
        double v = e->val[t];
        bool sure_gain = isfinite(v) && (isnan(best) || (v > best && !num_eq(v, best)));
        bool maybe_gain = isfinite(v) && (isnan(best) || v > best || num_eq(v, best));
        lo = maybe_gain ? 0 : lo + 1;
        hi = sure_gain ? 0 : hi + 1;
        if (isfinite(v) && (isnan(best) || v > best))
            best = v;
        bool at_max = e->epoch[t] >= job->stop.max_epochs - 1e-4;
        bool diverged = !isfinite(v) || !isfinite(e->loss[t]);
        bool target = job->stop.target_accuracy > 0 && e->test[t] >= job->stop.target_accuracy;
        if (t + 1 < e->nt)
            ck_assert_msg(!(at_max || diverged || target || lo >= plateau),
                          "setting %u went on training after the test at epoch %g "
                          "(val %g, %d tests without a gain, plateau %d)",
                          e->id, e->epoch[t], v, lo, plateau);
        else
            ck_assert_msg(at_max || diverged || target || hi >= plateau,
                          "setting %u stopped at epoch %g (val %g, %d tests without a "
                          "gain, plateau %d, max_epochs %g)",
                          e->id, e->epoch[t], v, hi, plateau, job->stop.max_epochs);
    }
}

/* Train-to-completion's bookkeeping: after each setting's tests, one observe
 * (the searcher minimises: minus its best validation accuracy), then it is
 * committed iff it beats every earlier setting's best (the first setting is
 * always committed), the previous best freed; else it is freed. Returns the
 * setting that should be the result. */
static const bset_t *assert_ttc_settings(const mlt_job_t *job, const dlog_t *d, const bsets_t *bs)
{
    int plateau = job->stop.plateau_tests > 2 ? job->stop.plateau_tests : 2;
    const bset_t *best = NULL;
    double best_v = NAN;
    for (size_t i = 0; i < bs->n; i++) {
        const bset_t *e = &bs->v[i];
        assert_ttc_stop(job, e, plateau);
        ck_assert_msg(e->n_observe == 1, "setting %u observed %zu times", e->id, e->n_observe);
        ck_assert_uint_gt(e->observe, e->tline[e->nt - 1]);
        if (i + 1 < bs->n)
            ck_assert_uint_lt(e->observe, bs->v[i + 1].propose);
        double bv = bset_best(e);
        double ov = l_num(&d->l[e->observe], "value");
        ck_assert_msg(isnan(bv) ? isnan(ov) : num_eq(ov, -bv),
                      "setting %u: the searcher heard %g, its best accuracy is %g", e->id, ov, bv);
        bool wins = best == NULL || (isfinite(bv) && (isnan(best_v) || bv > best_v));
        /* equal in the log's 6 digits: either way is right */
        if (best && isfinite(bv) && num_eq(bv, best_v))
            wins = e->commit < d->n;
        if (wins) {
            ck_assert_msg(e->commit < d->n,
                          "setting %u (best %g) beats the best so far %g, "
                          "but is not committed",
                          e->id, bv, best_v);
            ck_assert_uint_gt(e->commit, e->observe);
            if (i + 1 < bs->n)
                ck_assert_uint_lt(e->commit, bs->v[i + 1].propose);
            if (best) {
                ck_assert_msg(best->free_at > e->observe && best->free_at < e->commit,
                              "the old best %u was not freed when %u replaced it", best->id, e->id);
                ck_assert(l_reason_has(&d->l[best->free_at], "did better"));
            }
            best = e;
            best_v = bv;
        } else {
            ck_assert_msg(e->commit == d->n, "setting %u (best %g) was committed over %g", e->id,
                          bv, best_v);
            ck_assert_msg(e->free_at > e->observe && e->n_free == 1,
                          "setting %u, not the best, was not freed after its observe", e->id);
            if (i + 1 < bs->n)
                ck_assert_uint_lt(e->free_at, bs->v[i + 1].propose);
            ck_assert(l_reason_has(&d->l[e->free_at], "not better"));
        }
    }
    return best;
}

START_TEST(test_ttc_settings)
{
    /* train-to-completion, for a few seeds: up to its setting budget, each
     * setting forked from init and trained to max_epochs with a test every
     * epoch (the synthetic accuracy only rises, so no plateau); the best is
     * kept, near the optimum */
    static const char *const seeds[] = {"1", "2", "3"};
    for (size_t si = 0; si < 3; si++) {
        mlt_job_t job;
        job_make(&job, "tuner.logic", "train-to-completion", "seed", seeds[si], "stop.max_epochs",
                 "3", NULL);
        run_t r;
        run_job(&job, script_new(&job), &r);
        const dlog_t *d = &r.log;
        ck_assert_msg(r.rc == 0, "seed %s: %s", seeds[si], r.res.reason);
        bsets_t bs;
        bsets_load(d, &bs);
        ck_assert_uint_eq(dlog_count(d, 0, d->n, "bracket"), 0);
        ck_assert_uint_ge(bs.n, 4);
        char why[96];
        snprintf(why, sizeof why, "train-to-completion tried %zu settings", bs.n);
        ck_assert_msg(strstr(r.res.reason, why) != NULL, "seed %s: %s", seeds[si], r.res.reason);
        assert_baseline_common(&job, &r, &bs);
        const bset_t *best = assert_ttc_settings(&job, d, &bs);
        ck_assert_uint_eq(best->id, r.res.branch);
        ck_assert_msg(num_eq(r.res.best_val, bset_best(best)), "res.best_val %g, best %g",
                      r.res.best_val, bset_best(best));
        /* every setting that did not diverge trained to max_epochs */
        for (size_t i = 0; i < bs.n; i++)
            if (isfinite(bset_last(&bs.v[i], bs.v[i].val)))
                ck_assert_double_eq_tol(bset_last(&bs.v[i], bs.v[i].epoch), 3.0, 1e-4);
        double lr = lr_of(&job, &r.res.setting);
        fprintf(stderr, "ttc seed %s: kept lr %g momentum %g of %zu settings, val %g\n", seeds[si],
                lr, mlt_setting_get(&job, &r.res.setting, "momentum", NAN), bs.n, r.res.val);
        ck_assert_msg(lr >= LR_OPT / 3 && lr <= LR_OPT * 3,
                      "seed %s: kept lr %g, the optimum is %g", seeds[si], lr, LR_OPT);
        bsets_free(&bs);
        run_free(&r);
        mlt_job_free(&job);
    }
}
END_TEST

/* validation accuracy rising to a peak at epoch 2, then 0.05 below it, flat;
 * slightly better the faster the setting learns */
static void metric_peak(const script_t *x, const br_t *b, double *val, double *test)
{
    if (isnan(b->q)) {
        *val = *test = NAN;
        return;
    }
    double e = b->lineage;
    *val = (e <= 2 + 1e-9 ? 0.4 + 0.1 * e : 0.55) + rate_of(x, &b->s, b->data_pos);
    *test = *val - 0.002;
}

START_TEST(test_ttc_plateau)
{
    /* the validation accuracy peaks at epoch 2: with stop.plateau_tests P
     * (at least 2), every setting stops P tests after the peak, long before
     * max_epochs; a diverged one after its first test */
    static const struct {
        const char *plateau;
        size_t tests;
    } cases[] = {{"0", 4}, {"1", 4}, {"2", 4}, {"3", 5}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        mlt_job_t job;
        job_make(&job, "tuner.logic", "train-to-completion", "stop.plateau_tests",
                 cases[ci].plateau, "stop.max_epochs", "12", NULL);
        script_t *x = script_new(&job);
        x->metric = metric_peak;
        run_t r;
        run_job(&job, x, &r);
        const dlog_t *d = &r.log;
        ck_assert_msg(r.rc == 0, "%s", r.res.reason);
        bsets_t bs;
        bsets_load(d, &bs);
        assert_baseline_common(&job, &r, &bs);
        const bset_t *best = assert_ttc_settings(&job, d, &bs);
        ck_assert_uint_eq(best->id, r.res.branch);
        size_t plateaued = 0;
        for (size_t i = 0; i < bs.n; i++) {
            const bset_t *e = &bs.v[i];
            if (!isfinite(e->val[0])) {
                ck_assert_uint_eq(e->nt, 1);
                continue;
            }
            plateaued++;
            ck_assert_msg(e->nt == cases[ci].tests,
                          "plateau_tests %s: setting %u had %zu tests, not %zu", cases[ci].plateau,
                          e->id, e->nt, cases[ci].tests);
            ck_assert_double_eq_tol(e->epoch[e->nt - 1], (double)cases[ci].tests, 1e-4);
        }
        ck_assert_uint_ge(plateaued, 2);
        /* the kept branch stopped where it plateaued; its best was at epoch 2 */
        ck_assert(num_eq(r.res.best_val, best->val[1]));
        ck_assert(r.res.val < r.res.best_val);
        bsets_free(&bs);
        run_free(&r);
        mlt_job_free(&job);
    }
}
END_TEST

/* The last test line, checked to be the first to reach the target; returns
 * its index. Nothing trains or is proposed after it. */
static size_t assert_stopped_at_target(const mlt_job_t *job, const run_t *r)
{
    const dlog_t *d = &r->log;
    double target = job->stop.target_accuracy;
    ck_assert_msg(r->rc == 0, "%s", r->res.reason);
    ck_assert_msg(strstr(r->res.reason, "reached the target") != NULL, "%s", r->res.reason);
    size_t last = d->n;
    for (size_t i = dlog_find(d, 0, "test", UINT32_MAX); i < d->n;
         i = dlog_find(d, i + 1, "test", UINT32_MAX)) {
        if (last < d->n)
            ck_assert_msg(!(l_num(&d->l[last], "test_accuracy") >= target),
                          "the job went on after reaching the target: %s", d->l[last].text);
        last = i;
    }
    ck_assert_uint_lt(last, d->n);
    ck_assert_msg(l_num(&d->l[last], "test_accuracy") >= target, "the last test: %s",
                  d->l[last].text);
    ck_assert_int_gt(r->x->last_test_call, r->x->last_run_call);
    for (size_t i = last + 1; i < d->n; i++)
        ck_assert_msg(l_is(&d->l[i], "observe") || l_is(&d->l[i], "commit") ||
                          l_is(&d->l[i], "free"),
                      "after reaching the target: %s", d->l[i].text);
    /* the branch that reached it is the result, live, with its metrics */
    ck_assert_msg(r->res.branch == d->l[last].branch,
                  "branch %u reached the target (%s), yet the result is branch %u (test %g)",
                  d->l[last].branch, d->l[last].text, r->res.branch, r->res.test);
    ck_assert_msg(r->res.test >= target, "res.test %g is below the target %g (%s)", r->res.test,
                  target, r->res.reason);
    ck_assert(num_eq(r->res.test, l_num(&d->l[last], "test_accuracy")));
    assert_only_training_live(r->x, &r->res);
    return last;
}

START_TEST(test_ttc_target)
{
    /* a reachable target: train-to-completion stops at the first test that
     * reaches it, keeping that branch, before its setting budget is spent */
    mlt_job_t job;
    job_make(&job, "tuner.logic", "train-to-completion", "stop.target_accuracy", "0.6",
             "stop.max_epochs", "6", NULL);
    run_t r;
    run_job(&job, script_new(&job), &r);
    const dlog_t *d = &r.log;
    size_t last = assert_stopped_at_target(&job, &r);
    bsets_t bs;
    bsets_load(d, &bs);
    assert_baseline_common(&job, &r, &bs);
    (void)assert_ttc_settings(&job, d, &bs);
    const bset_t *hit = bset_of(&bs, d->l[last].branch);
    ck_assert(hit == &bs.v[bs.n - 1]);
    ck_assert(hit->epoch[hit->nt - 1] < 6 - 1e-4);
    /* a later run of the same job without the target tries more settings */
    mlt_job_t job2;
    job_make(&job2, "tuner.logic", "train-to-completion", "stop.max_epochs", "6", NULL);
    run_t r2;
    run_job(&job2, script_new(&job2), &r2);
    ck_assert_msg(r2.rc == 0, "%s", r2.res.reason);
    ck_assert_uint_lt(r.res.trials, r2.res.trials);
    fprintf(stderr, "ttc target: stopped after %u settings at epoch %g (no target: %u)\n",
            r.res.trials, r.res.epoch, r2.res.trials);
    run_free(&r2);
    mlt_job_free(&job2);
    bsets_free(&bs);
    run_free(&r);
    mlt_job_free(&job);
}
END_TEST

/* 3^k */
static long pow3(int k)
{
    long p = 1;
    while (k-- > 0)
        p *= 3;
    return p;
}

START_TEST(test_hyperband_brackets)
{
    /* hyperband with R = max_epochs (3, then 9) and eta 3, a test every
     * epoch: brackets s = s_max..0 of ceil((s_max+1)/(s+1) 3^s) random
     * settings starting at R 3^-s epochs; after each rung the worse 2/3 are
     * freed and the rest resumed to 3x the epochs; the last rung keeps one;
     * the best bracket winner is the result */
    static const int Rs[] = {3, 9};
    for (size_t ri = 0; ri < 2; ri++) {
        int R = Rs[ri];
        char rs[16];
        snprintf(rs, sizeof rs, "%d", R);
        mlt_job_t job;
        job_make(&job, "tuner.logic", "hyperband", "stop.max_epochs", rs,
                 "tunables.batch_size.default", "512", NULL);
        run_t r;
        run_job(&job, script_new(&job), &r);
        const dlog_t *d = &r.log;
        ck_assert_msg(r.rc == 0, "R %d: %s", R, r.res.reason);
        bsets_t bs;
        bsets_load(d, &bs);
        assert_baseline_common(&job, &r, &bs);
        int s_max = 0;
        while (pow3(s_max + 1) <= R)
            s_max++;
        /* the brackets */
        size_t br[16], nb = 0;
        for (size_t i = dlog_find(d, 0, "bracket", UINT32_MAX); i < d->n;
             i = dlog_find(d, i + 1, "bracket", UINT32_MAX)) {
            ck_assert_uint_lt(nb, 16);
            br[nb++] = i;
        }
        ck_assert_uint_eq(nb, (size_t)s_max + 1);
        char why[96];
        snprintf(why, sizeof why, "hyperband finished its %d brackets", s_max + 1);
        ck_assert_msg(strstr(r.res.reason, why) != NULL, "R %d: %s", R, r.res.reason);
        size_t halving_frees = 0, expect_halving = 0;
        const bset_t *winners[16];
        for (size_t bi = 0; bi < nb; bi++) {
            const line_t *bl = &d->l[br[bi]];
            int s = s_max - (int)bi;
            ck_assert_msg((int)l_num(bl, "s") == s, "R %d: bracket %zu: %s", R, bi, bl->text);
            long n = ((s_max + 1) * pow3(s) + s) / (s + 1); /* the ceiling */
            ck_assert_msg((long)l_num(bl, "settings") == n, "R %d: %s (expected %ld settings)", R,
                          bl->text, n);
            ck_assert_double_eq_tol(l_num(bl, "epochs"), (double)R / (double)pow3(s), 1e-3);
            size_t end = bi + 1 < nb ? br[bi + 1] : d->n;
            ck_assert_uint_eq(dlog_count(d, br[bi], end, "propose"), (size_t)n);
            /* its settings (in proposal order) */
            const bset_t *m[256];
            size_t nm = 0;
            for (size_t i = 0; i < bs.n; i++)
                if (bs.v[i].s == s) {
                    ck_assert(bs.v[i].propose > br[bi] && bs.v[i].propose < end);
                    ck_assert_uint_lt(nm, 256);
                    m[nm++] = &bs.v[i];
                }
            ck_assert_uint_eq(nm, (size_t)n);
            /* rung i: n_i = floor(n / 3^i) settings trained to r_i = R 3^(i-s)
             * epochs; all but n_(i+1) of them (all but one at the last rung)
             * freed by successive halving, each no better than a survivor */
            winners[bi] = NULL;
            for (int i = 0; i <= s; i++) {
                double r_i = (double)R * (double)pow3(i) / (double)pow3(s);
                long n_i = n / pow3(i), n_next = i < s ? n / pow3(i + 1) : 1;
                if (n_next < 1)
                    n_next = 1;
                long trained = 0, freed = 0;
                double worst_kept = INFINITY, best_freed = -INFINITY;
                for (size_t k = 0; k < nm; k++) {
                    const bset_t *e = m[k];
                    size_t t = 0;
                    while (t < e->nt && e->epoch[t] < r_i - 1e-4)
                        t++;
                    if (t == e->nt)
                        continue; /* freed at an earlier rung */
                    ck_assert_double_eq_tol(e->epoch[t], r_i, 1e-4);
                    trained++;
                    double v = isfinite(e->val[t]) ? e->val[t] : -INFINITY;
                    bool halved = t + 1 == e->nt && e->n_free == 1 &&
                                  l_reason_has(&d->l[e->free_at], "successive halving");
                    if (halved) {
                        freed++;
                        best_freed = fmax(best_freed, v);
                        /* freed once the rung's tests are all done */
                        for (size_t k2 = 0; k2 < nm; k2++) {
                            const bset_t *o = m[k2];
                            for (size_t t2 = 0; t2 < o->nt; t2++)
                                if (fabs(o->epoch[t2] - r_i) < 1e-4)
                                    ck_assert_msg(o->tline[t2] < e->free_at,
                                                  "R %d: branch %u freed before branch %u's "
                                                  "test at rung %d",
                                                  R, e->id, o->id, i);
                        }
                    } else {
                        worst_kept = fmin(worst_kept, v);
                        if (i == s) {
                            ck_assert_msg(winners[bi] == NULL,
                                          "R %d: bracket s=%d has two "
                                          "winners",
                                          R, s);
                            winners[bi] = e;
                        }
                    }
                }
                ck_assert_msg(trained == n_i,
                              "R %d: bracket s=%d rung %d trained %ld settings "
                              "to %g epochs, expected %ld",
                              R, s, i, trained, r_i, n_i);
                ck_assert_msg(freed == n_i - n_next,
                              "R %d: bracket s=%d rung %d freed %ld of "
                              "%ld by successive halving, expected %ld",
                              R, s, i, freed, n_i, n_i - n_next);
                ck_assert_msg(best_freed <= worst_kept,
                              "R %d: bracket s=%d rung %d freed a "
                              "setting (%g) better than a survivor (%g)",
                              R, s, i, best_freed, worst_kept);
                halving_frees += (size_t)freed;
            }
            expect_halving += (size_t)n - 1;
            ck_assert_msg(winners[bi] != NULL, "R %d: bracket s=%d has no winner", R, s);
            ck_assert_double_eq_tol(bset_last(winners[bi], winners[bi]->epoch), (double)R, 1e-4);
            /* the winner was resumed, not restarted: one fork, and one test per
             * epoch from the first to R (the executor checked every run
             * continues its branch's clock and data cursor) */
            ck_assert_uint_eq(winners[bi]->nt, (size_t)R);
            /* the winner is committed or freed after the bracket's last test */
            size_t last_test = 0;
            for (size_t k = 0; k < nm; k++)
                last_test =
                    m[k]->tline[m[k]->nt - 1] > last_test ? m[k]->tline[m[k]->nt - 1] : last_test;
            if (winners[bi]->n_free)
                ck_assert(winners[bi]->free_at > last_test);
            if (winners[bi]->id != r.res.branch && winners[bi]->commit == d->n)
                ck_assert(l_reason_has(&d->l[winners[bi]->free_at], "not better"));
        }
        ck_assert_uint_eq(dlog_count(d, 0, d->n, "free"), bs.n - 1);
        ck_assert_uint_eq(halving_frees, expect_halving);
        size_t counted = 0;
        for (size_t i = 0; i < d->n; i++)
            counted += l_is(&d->l[i], "free") && l_reason_has(&d->l[i], "successive halving");
        ck_assert_uint_eq(counted, expect_halving);
        /* the result: the bracket winner with the best final accuracy */
        const bset_t *kept = bset_of(&bs, r.res.branch);
        bool is_winner = false;
        for (size_t bi = 0; bi < nb; bi++) {
            is_winner |= winners[bi] == kept;
            double v = bset_last(winners[bi], winners[bi]->val);
            ck_assert_msg(
                !(v > bset_last(kept, kept->val)) || num_eq(v, bset_last(kept, kept->val)),
                "R %d: bracket s=%d's winner %u (val %g) beats the result %u (val %g)", R,
                s_max - (int)bi, winners[bi]->id, v, kept->id, bset_last(kept, kept->val));
        }
        ck_assert_msg(is_winner, "R %d: the result %u won no bracket", R, kept->id);
        fprintf(stderr, "hyperband R %d: %zu settings, kept lr %g val %g\n", R, bs.n,
                lr_of(&job, &r.res.setting), r.res.val);
        bsets_free(&bs);
        run_free(&r);
        mlt_job_free(&job);
    }
}
END_TEST

START_TEST(test_hyperband_deterministic)
{
    /* the same seed, the same decision log, byte for byte; another seed,
     * other settings */
    mlt_job_t job, job2;
    job_make(&job, "tuner.logic", "hyperband", "stop.max_epochs", "3", NULL);
    job_make(&job2, "tuner.logic", "hyperband", "stop.max_epochs", "3", "seed", "99", NULL);
    run_t a, b, c;
    run_replay(&job, &a, false);
    run_replay(&job, &b, true);
    run_replay(&job2, &c, false);
    ck_assert_msg(a.rc == 0, "%s", a.res.reason);
    ck_assert_int_eq(a.rc, b.rc);
    ck_assert_uint_gt(dlog_count(&a.log, 0, a.log.n, "bracket"), 0);
    ck_assert_uint_eq(a.log.n, b.log.n);
    for (size_t i = 0; i < a.log.n; i++)
        ck_assert_msg(strcmp(a.log.l[i].text, b.log.l[i].text) == 0, "line %zu differs:\n%s\n%s",
                      i + 1, a.log.l[i].text, b.log.l[i].text);
    ck_assert_str_eq(a.log.raw, b.log.raw);
    ck_assert_uint_eq(a.res.branch, b.res.branch);
    ck_assert(memcmp(&a.res.setting, &b.res.setting, sizeof a.res.setting) == 0);
    ck_assert_str_eq(a.res.reason, b.res.reason);
    ck_assert_int_gt(b.x->progress, 0);
    ck_assert_msg(strcmp(a.log.raw, c.log.raw) != 0, "the seed does not change the settings");
    assert_only_training_live(a.x, &a.res);
    assert_only_training_live(c.x, &c.res);
    run_free(&a);
    run_free(&b);
    run_free(&c);
    mlt_job_free(&job);
    mlt_job_free(&job2);
}
END_TEST

START_TEST(test_hyperband_target)
{
    /* a reachable target: hyperband stops at the first test that reaches it,
     * before its brackets are done, and keeps that branch */
    mlt_job_t job;
    job_make(&job, "tuner.logic", "hyperband", "stop.max_epochs", "9", "stop.target_accuracy",
             "0.6", "tunables.batch_size.default", "512", NULL);
    run_t r;
    run_job(&job, script_new(&job), &r);
    (void)assert_stopped_at_target(&job, &r);
    bsets_t bs;
    bsets_load(&r.log, &bs);
    assert_baseline_common(&job, &r, &bs);
    ck_assert_uint_lt(r.res.trials, 9 + 5 + 3);
    fprintf(stderr, "hyperband target: stopped after %u settings, %zu brackets\n", r.res.trials,
            dlog_count(&r.log, 0, r.log.n, "bracket"));
    bsets_free(&bs);
    run_free(&r);
    mlt_job_free(&job);
}
END_TEST

/* the first setting (branch INIT + 1) has the best validation accuracy but a
 * test accuracy below 0.75; every other one reaches 0.75 on test */
static void metric_split(const script_t *x, const br_t *b, double *val, double *test)
{
    (void)x;
    if (b->parent == INIT + 1) {
        *val = 0.8;
        *test = 0.7;
    } else {
        *val = 0.6;
        *test = 0.76;
    }
}

/* The branch whose test reaches the target ends the job, so it is the result
 * (live, its metrics reported), even when an earlier setting had a better
 * validation accuracy: the reason and res.test must agree. */
static void keeps_target_branch(const char *logic)
{
    mlt_job_t job;
    job_make(&job, "tuner.logic", logic, "stop.max_epochs", "3", "stop.target_accuracy", "0.75",
             NULL);
    script_t *x = script_new(&job);
    x->metric = metric_split;
    run_t r;
    run_job(&job, x, &r);
    ck_assert_msg(r.rc == 0, "%s: %s", logic, r.res.reason);
    size_t last = r.log.n;
    for (size_t i = 0; i < r.log.n; i++)
        if (l_is(&r.log.l[i], "test"))
            last = i;
    ck_assert_uint_lt(last, r.log.n);
    ck_assert_msg(r.res.branch == r.log.l[last].branch && r.res.test >= 0.75,
                  "%s: branch %u reached the target (\"%s\"), but it was freed and the result "
                  "is branch %u with test accuracy %g",
                  logic, r.log.l[last].branch, r.res.reason, r.res.branch, r.res.test);
    (void)assert_stopped_at_target(&job, &r);
    run_free(&r);
    mlt_job_free(&job);
}

START_TEST(test_ttc_keeps_target_branch)
{
    keeps_target_branch("train-to-completion");
}
END_TEST

START_TEST(test_hyperband_keeps_target_branch)
{
    keeps_target_branch("hyperband");
}
END_TEST

static Suite *tuner_suite(void)
{
    Suite *s = suite_create("tuner");
    TCase *tc = tcase_create("search");
    tcase_add_test(tc, test_picks_best);
    tcase_add_test(tc, test_trial_time_doubles);
    tcase_add_test(tc, test_diverging_trials);
    tcase_add_test(tc, test_diverged_first_trial);
    suite_add_tcase(s, tc);
    tc = tcase_create("retune");
    tcase_add_test(tc, test_retune_on_plateau);
    tcase_add_test(tc, test_retune_settles_trial_time_again);
    tcase_add_test(tc, test_retune_paired_lower_loss);
    tcase_add_test(tc, test_converges);
    tcase_add_test(tc, test_same_data_cursor);
    tcase_add_test(tc, test_diverged_training_rolls_back);
    tcase_add_test(tc, test_diverged_training_gives_up);
    tcase_add_test(tc, test_regressed_training_rolls_back);
    suite_add_tcase(s, tc);
    tc = tcase_create("stop");
    tcase_add_test(tc, test_target_accuracy);
    tcase_add_test(tc, test_max_epochs);
    tcase_add_test(tc, test_fixed_logic);
    suite_add_tcase(s, tc);
    tc = tcase_create("replay");
    tcase_add_test(tc, test_deterministic);
    suite_add_tcase(s, tc);
    tc = tcase_create("baselines");
    tcase_add_test(tc, test_ttc_settings);
    tcase_add_test(tc, test_ttc_plateau);
    tcase_add_test(tc, test_ttc_target);
    tcase_add_test(tc, test_hyperband_brackets);
    tcase_add_test(tc, test_hyperband_deterministic);
    tcase_add_test(tc, test_hyperband_target);
    tcase_add_test(tc, test_ttc_keeps_target_branch);
    tcase_add_test(tc, test_hyperband_keeps_target_branch);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(tuner_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
