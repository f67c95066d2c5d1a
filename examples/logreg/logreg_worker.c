/* logreg_worker.c - a worker of a tuned job with a model of its own, built on
 * libmltuner's worker session and nothing else of mltuner (#13): multinomial
 * logistic regression on generated data.
 *
 *   logreg-worker --coordinator ENDPOINT --rank N
 *
 * The job file says model.type = "external" (examples/logreg/logreg.conf).
 * Every worker generates the same data (from DATA_SEED, so that the job's
 * seed varies the initial weights and the data order, not the problem): CLASSES Gaussian
 * clusters in FEATURES dimensions (the clusters' centres drawn at random, the
 * samples around them with unit noise, then feature j scaled by 10^(-1..1)),
 * TRAIN + VAL + TEST samples. Each
 * trains on its share of the training set (samples i % share_count == share),
 * in an order reshuffled every epoch, and evaluates its share of the
 * validation and test sets. The parameters are two tables, "w" (CLASSES x
 * FEATURES) and "b" (CLASSES); the shards apply the update rule and every
 * tunable but the batch size, which the worker applies. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mltuner.h>

enum { FEATURES = 32, CLASSES = 8, TRAIN = 40000, VAL = 4000, TEST = 8000 };
#define SPREAD 0.52 /* the centres' standard deviation per dimension: sets how separable */
#define DATA_SEED 2026 /* one problem for every job seed (the seed varies the rest) */

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

/* ---- data ------------------------------------------------------------------------ */

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double uniform(uint64_t *s)
{
    return ((double)(splitmix(s) >> 11) + 0.5) / 9007199254740992.0;
}

static double gauss(uint64_t *s)
{
    return sqrt(-2 * log(uniform(s))) * cos(6.283185307179586 * uniform(s));
}

typedef struct data {
    float x[TRAIN + VAL + TEST][FEATURES];
    uint8_t y[TRAIN + VAL + TEST];
} data_t;

static void make_data(data_t *d, uint64_t seed)
{
    uint64_t s = seed * 0x2545f4914f6cdd1dull + 17;
    double centre[CLASSES][FEATURES];
    for (int k = 0; k < CLASSES; k++)
        for (int j = 0; j < FEATURES; j++)
            centre[k][j] = SPREAD * gauss(&s);
    /* feature j scaled by 10^(-1..1): an ill-conditioned problem, on which
     * too high a learning rate diverges and too low a one crawls */
    double scale[FEATURES];
    for (int j = 0; j < FEATURES; j++)
        scale[j] = pow(10.0, 2.0 * j / (FEATURES - 1) - 1.0);
    for (int i = 0; i < TRAIN + VAL + TEST; i++) {
        int k = (int)(splitmix(&s) % CLASSES);
        d->y[i] = (uint8_t)k;
        for (int j = 0; j < FEATURES; j++)
            d->x[i][j] = (float)(scale[j] * (centre[k][j] + gauss(&s)));
    }
}

/* ---- the model ------------------------------------------------------------------- */

typedef struct model {
    float w[CLASSES * FEATURES], b[CLASSES];    /* parameters (pulled) */
    float gw[CLASSES * FEATURES], gb[CLASSES];  /* gradients (pushed) */
} model_t;

/* Softmax probabilities of sample x into p; returns -log p[y]. */
static double forward(const model_t *m, const float *x, int y, double *p)
{
    double top = -INFINITY;
    for (int k = 0; k < CLASSES; k++) {
        double z = m->b[k];
        for (int j = 0; j < FEATURES; j++)
            z += (double)m->w[k * FEATURES + j] * x[j];
        p[k] = z;
        top = z > top ? z : top;
    }
    double sum = 0;
    for (int k = 0; k < CLASSES; k++)
        sum += p[k] = exp(p[k] - top);
    for (int k = 0; k < CLASSES; k++)
        p[k] /= sum;
    return -log(p[y] > 1e-300 ? p[y] : 1e-300);
}

static int argmax(const double *p)
{
    int best = 0;
    for (int k = 1; k < CLASSES; k++)
        best = p[k] > p[best] ? k : best;
    return best;
}

/* The mean loss of a batch (samples idx) and its gradients in m->gw, m->gb. */
static double step(model_t *m, const data_t *d, const uint32_t *idx, uint32_t n, uint64_t *right)
{
    memset(m->gw, 0, sizeof m->gw);
    memset(m->gb, 0, sizeof m->gb);
    double loss = 0, p[CLASSES];
    *right = 0;
    for (uint32_t i = 0; i < n; i++) {
        const float *x = d->x[idx[i]];
        int y = d->y[idx[i]];
        loss += forward(m, x, y, p);
        *right += argmax(p) == y;
        for (int k = 0; k < CLASSES; k++) {
            double g = (p[k] - (k == y)) / n;
            m->gb[k] += (float)g;
            for (int j = 0; j < FEATURES; j++)
                m->gw[k * FEATURES + j] += (float)(g * x[j]);
        }
    }
    return loss / n;
}

/* Sums over samples [first, first + count) in share `share` of `of`. */
static mlt_eval_sums_t evaluate(const model_t *m, const data_t *d, int first, int count,
                                uint32_t share, uint32_t of)
{
    mlt_eval_sums_t e = {0};
    double p[CLASSES];
    for (int i = (int)share; i < count; i += (int)of) {
        e.loss += forward(m, d->x[first + i], d->y[first + i], p);
        e.correct += argmax(p) == d->y[first + i];
        e.count++;
    }
    return e;
}

/* ---- the worker ------------------------------------------------------------------ */

typedef struct worker {
    mlt_session_t *s;
    data_t *data;
    uint64_t seed; /* the job's: initial weights and data order */
    model_t m;
    /* the training share and the cursor through it */
    uint32_t share, of;
    uint32_t *order, n; /* this share's samples, in this epoch's order */
    uint64_t done;      /* samples taken since the share was set */
} worker_t;

static void shuffle(worker_t *w)
{
    uint64_t s = w->seed ^ (0x51ed270b27a8fe4full * (w->done / w->n + 1)) ^ w->share;
    for (uint32_t i = w->n - 1; i > 0; i--) {
        uint32_t j = (uint32_t)(splitmix(&s) % (i + 1));
        uint32_t t = w->order[i];
        w->order[i] = w->order[j];
        w->order[j] = t;
    }
}

static void set_share(worker_t *w, uint32_t share, uint32_t of)
{
    if (w->order && share == w->share && of == w->of)
        return;
    free(w->order);
    w->share = share;
    w->of = of;
    w->n = (TRAIN - share + of - 1) / of;
    w->order = malloc(w->n * sizeof *w->order);
    for (uint32_t i = 0; i < w->n; i++)
        w->order[i] = share + i * of;
    w->done = 0;
    shuffle(w);
}

static double epochs(const worker_t *w)
{
    return (double)w->done / w->n;
}

static void next_batch(worker_t *w, uint32_t *idx, uint32_t batch)
{
    for (uint32_t i = 0; i < batch; i++) {
        if (w->done % w->n == 0 && w->done)
            shuffle(w);
        idx[i] = w->order[w->done++ % w->n];
    }
}

static int do_job(worker_t *w, const mlt_task_t *t)
{
    if (strcmp(t->model, "external") != 0) {
        char why[160];
        snprintf(why, sizeof why,
                 "logreg-worker trains its own model: the job needs model.type \"external\", "
                 "not \"%s\"", t->model);
        return mlt_session_fail(w->s, why);
    }
    w->seed = t->seed;
    if (!w->data) {
        w->data = malloc(sizeof *w->data);
        make_data(w->data, DATA_SEED);
    }
    free(w->order);
    w->order = NULL;
    set_share(w, t->share, t->share_count);
    mlt_table_def_t tables[] = {{"w", CLASSES * FEATURES}, {"b", CLASSES}};
    return mlt_session_load(w->s, tables, 2, w->n, TRAIN);
}

static int do_init(worker_t *w, const mlt_task_t *t)
{
    uint64_t s = w->seed + 1;
    for (int i = 0; i < CLASSES * FEATURES; i++)
        w->m.w[i] = (float)(0.01 * gauss(&s));
    memset(w->m.b, 0, sizeof w->m.b);
    mlt_client_t *c = mlt_session_client(w->s);
    if (mlt_write(c, t->branch, 0, w->m.w) < 0 || mlt_write(c, t->branch, 1, w->m.b) < 0)
        return mlt_session_fail(w->s, mlt_client_error(c));
    return mlt_session_done(w->s, -1);
}

/* TASK_RUN: pull, step, push, clock and report, clock after clock. A branch
 * that diverged (the shards refuse its NaN gradients: EDOM) is only clocked
 * on, with NaN losses, so the other workers are not held up. */
static int do_run(worker_t *w, const mlt_task_t *t)
{
    mlt_client_t *c = mlt_session_client(w->s);
    set_share(w, t->share, t->share_count);
    if (t->seek)
        w->done = (uint64_t)(t->data_epoch * w->n);
    uint32_t *idx = malloc(t->batch_size * sizeof *idx);
    float *params[] = {w->m.w, w->m.b};
    bool diverged = false;
    const char *failed = NULL;
    for (int64_t k = t->clock_start; k < t->clock_start + t->clocks && !failed; k++) {
        double loss = NAN;
        uint64_t right = 0;
        int rc = 0;
        if (stop_signal) {
            failed = "interrupted";
            break;
        }
        if (!diverged && (rc = mlt_pull(c, t->branch, k, params)) == -EDOM) {
            diverged = true;
            rc = 0;
        }
        if (!diverged && !rc) {
            next_batch(w, idx, t->batch_size);
            loss = step(&w->m, w->data, idx, t->batch_size, &right);
            diverged = !isfinite(loss);
            if (!diverged && (rc = mlt_push(c, t->branch, 0, w->m.gw)) == 0)
                rc = mlt_push(c, t->branch, 1, w->m.gb);
        }
        if (rc == -EDOM) { /* a push refused: the branch diverged */
            diverged = true;
            rc = 0;
        }
        if (!rc && (rc = mlt_clock(c, t->branch, k + 1)) == -EDOM) {
            diverged = true;
            rc = 0;
        }
        if (rc)
            failed = mlt_client_error(c);
        else if (mlt_session_report_clock(w->s, k + 1, diverged ? NAN : loss, diverged ? 0 : right,
                                          t->batch_size, epochs(w)) < 0)
            failed = mlt_session_error(w->s);
    }
    free(idx);
    if (failed) {
        mlt_session_fail(w->s, failed);
        return -1;
    }
    return mlt_session_done(w->s, epochs(w));
}

static int do_test(worker_t *w, const mlt_task_t *t)
{
    mlt_client_t *c = mlt_session_client(w->s);
    float *params[] = {w->m.w, w->m.b};
    if (mlt_pull(c, t->branch, 0, params) < 0)
        return mlt_session_fail(w->s, mlt_client_error(c));
    mlt_eval_sums_t v = evaluate(&w->m, w->data, TRAIN, VAL, t->share, t->share_count);
    mlt_eval_sums_t te = evaluate(&w->m, w->data, TRAIN + VAL, TEST, t->share, t->share_count);
    return mlt_session_report_test(w->s, &v, &te);
}

static void on_event(void *arg, const char *what)
{
    fprintf(stderr, "logreg-worker %u: %s\n", *(const unsigned *)arg, what);
}

int main(int argc, char **argv)
{
    const char *coordinator = NULL;
    long rank = -1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--coordinator") == 0)
            coordinator = argv[i + 1];
        else if (strcmp(argv[i], "--rank") == 0)
            rank = strtol(argv[i + 1], NULL, 10);
    }
    if (!coordinator || rank < 0 || rank > 1023) {
        fprintf(stderr, "usage: logreg-worker --coordinator ENDPOINT --rank N (0..1023)\n");
        return 2;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    unsigned me = (unsigned)rank;
    char err[512];
    mlt_session_opts_t o = {.coordinator = coordinator,
                            .rank = me,
                            .program = "logreg-worker",
                            .on_event = on_event,
                            .event_arg = &me};
    worker_t w = {0};
    if (!(w.s = mlt_session_join(&o, err, sizeof err))) {
        fprintf(stderr, "logreg-worker %u: %s\n", me, err);
        return 1;
    }
    int status = 1;
    while (!stop_signal) {
        mlt_task_t t;
        int n = mlt_session_next(w.s, 0.5, &t);
        if (n < 0) {
            fprintf(stderr, "logreg-worker %u: %s\n", me, mlt_session_error(w.s));
            break;
        }
        if (n == 0)
            continue;
        int rc = 0;
        switch (t.kind) {
        case MLT_TASK_JOB: rc = do_job(&w, &t); break;
        case MLT_TASK_INIT: rc = do_init(&w, &t); break;
        case MLT_TASK_RUN: rc = do_run(&w, &t); break;
        case MLT_TASK_TEST: rc = do_test(&w, &t); break;
        case MLT_TASK_STOP:
            fprintf(stderr, "logreg-worker %u: stop: %s\n", me, t.reason);
            status = 0;
            goto out;
        }
        if (rc < 0)
            fprintf(stderr, "logreg-worker %u: task failed: %s\n", me, mlt_session_error(w.s));
    }
    if (stop_signal)
        status = 0;
out:
    mlt_session_destroy(&w.s);
    free(w.order);
    free(w.data);
    return status;
}
