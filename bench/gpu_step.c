/* gpu_step.c - ms per training step of the CUDA backend, standalone and
 * through a local mltunerd, against PyTorch on the same GPU.
 *
 *   gpu_step [--torch torch.json] [--data DIR] [--seconds S] [--no-daemon]
 *
 * Without a usable GPU it prints "no GPU: <why>" and exits 77 (skipped).
 *
 * 1. Standalone, for the mlp (784-256-256-10) and the cnn of DESIGN.md §10 at
 *    batch 32, 128 and 512: the training set lives on the device, and a step
 *    is the WHOLE step of a worker that keeps data and optimizer there:
 *      gather the batch (mlt_gpu_gather4 images, mlt_gpu_gather1 labels) by
 *      the device index array; forward, loss, backward (mlt_gpu_model_step);
 *      SGD with momentum 0.9, lr 0.01 on every tensor (mlt_gpu_optim_apply);
 *      advance the indices: idx = perm[idx] through a seeded random
 *      permutation of the training set (one more gather and a copy), so that
 *      each replay trains on a new batch of distinct samples with no host
 *      work in between (the first indices are uploaded from the host).
 *    "graph": that step captured once as a CUDA graph and replayed; "eager":
 *    the same calls issued one by one. Each is warmed up, then timed over N
 *    steps with one sync at the end (N >= 200 and long enough for >= S
 *    seconds, default 1), median of 3 rounds, the two modes interleaved.
 *    Before timing, one eager step and one replay from the same state must
 *    agree (loss and parameters), so the graph is known to do the step.
 *    Convolutions may use TF32 tensor cores (PyTorch's default), GEMMs are
 *    full FP32 (PyTorch's default too).
 * 2. Through a local daemon: one real mltunerd on loopback
 *    (tests/integration/harness.h), this process its only worker, staleness
 *    0, the model's tables registered with SGD (momentum 0.9, lr 0.01, the
 *    daemon applies it). A step: mlt_pull into pinned host buffers; one
 *    captured graph (upload parameters and batch indices, gather, forward,
 *    backward, download gradients and loss); sync; mlt_push every table;
 *    mlt_clock. Also the daemon's bandwidth on the same tables (pull + push
 *    bytes per second of pure pull/push/clock rounds) and the ratio
 *      step_ms / max(compute_ms, 2 * model_bytes / bandwidth)
 *    where compute_ms is the standalone graph step; the target is <= 1.1.
 * 3. PyTorch (bench/torch_gpu_peer.py writes the JSON given by --torch):
 *    its eager and CUDA-graph ms per step next to ours.
 * Part 2 is in gpu_step_daemon.c, the JSON reader in torch_json.c; what the
 * files share is in gpu_step.h.
 *
 * Data: Fashion-MNIST's training set from --data DIR, else $MLT_FMNIST_DIR,
 * else /usr/share/datasets/fashion-mnist; if none has it, seeded random data
 * of the same shape (the header line says which). The harness starts
 * $MLT_BUILD_ROOT/daemon/mltunerd.
 *
 * The last line is the summary a script reads:
 *   mlp128_vs_torch_graph=X cnn128_vs_torch_graph=Y
 * (torch graph ms / our graph ms at batch 128: above 1, ours is faster; nan
 * when a number is missing). Exit 0, 77 without a GPU, 1 when a part failed
 * (the tables show what ran). */
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/gpu_step.h"
#include "bench/torch_json.h"
#include "common/rng.h"
#include "common/timeutil.h"
#include "kernels/gpu.h"
#include "tests/integration/harness.h"
#include "worker/data.h"
#include "client/mltuner.h"
#include "worker/model.h"
#include "worker/model_gpu.h"

const char *const model_names[N_MODELS] = {"mlp", "cnn"};
const uint32_t batches[N_BATCHES] = {32, 128, 512};

static const uint32_t mlp_hidden[] = {256, 256};
static const mlt_cnn_layer_t cnn_layers[] = {
    {MLT_CNN_CONV, 5, 32}, {MLT_CNN_POOL, 2, 0}, {MLT_CNN_CONV, 5, 64},
    {MLT_CNN_POOL, 2, 0},  {MLT_CNN_FC, 0, 256},
};

/* ---- failures ------------------------------------------------------------- */

static mlt_test_cluster_t cluster;
static bool cluster_up;

void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fflush(stdout);
    fprintf(stderr, "bench/gpu_step: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    if (cluster_up)
        mlt_test_stop(&cluster);
    exit(1);
}

/* A GPU call that must succeed. */
void gcheck(mlt_gpu_t *g, int rc, const char *what)
{
    if (rc != 0)
        die("%s: %s (%s)", what, mlt_gpu_error(g), strerror(-rc));
}

static void *dmalloc(mlt_gpu_t *g, size_t n, const char *what)
{
    void *p = mlt_gpu_malloc(g, n);
    if (p == NULL)
        die("device memory for %s (%zu bytes): %s", what, n, mlt_gpu_error(g));
    return p;
}

void *hmalloc(mlt_gpu_t *g, size_t n, const char *what)
{
    void *p = mlt_gpu_host_malloc(g, n);
    if (p == NULL)
        die("pinned host memory for %s (%zu bytes): %s", what, n, mlt_gpu_error(g));
    return p;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

/* ---- data ------------------------------------------------------------------ */

static bool try_load(const char *dir, mlt_dataset_t *ds, char *why, size_t whylen)
{
    char img[512], lab[512];
    snprintf(img, sizeof img, "%s/train-images-idx3-ubyte.gz", dir);
    snprintf(lab, sizeof lab, "%s/train-labels-idx1-ubyte.gz", dir);
    if (access(img, R_OK) != 0 || access(lab, R_OK) != 0) {
        snprintf(why, whylen, "%s: no train-{images,labels} files", dir);
        return false;
    }
    int rc = mlt_idx_load(img, lab, ds, why, whylen);
    if (rc == 0 && (ds->rows != IMG_SIDE || ds->cols != IMG_SIDE || ds->n_classes > N_CLASSES)) {
        snprintf(why, whylen, "%s: %ux%u images, %u classes: not Fashion-MNIST", dir, ds->rows,
                 ds->cols, ds->n_classes);
        mlt_dataset_free(ds);
        return false;
    }
    return rc == 0;
}

static void train_set_load(mlt_gpu_t *g, const char *data_dir, train_set_t *t)
{
    mlt_dataset_t ds = {0};
    char why[512] = "";
    const char *dirs[3] = {data_dir, getenv("MLT_FMNIST_DIR"), DEB_FMNIST};
    bool ok = false;
    for (int i = 0; i < 3 && !ok; i++) {
        if (dirs[i] == NULL || !*dirs[i])
            continue;
        ok = try_load(dirs[i], &ds, why, sizeof why);
        if (ok)
            snprintf(t->what, sizeof t->what, "Fashion-MNIST training set (%u samples) from %s",
                     ds.n, dirs[i]);
        else if (data_dir && dirs[i] == data_dir)
            fprintf(stderr, "bench/gpu_step: --data %s: %s\n", data_dir, why);
    }
    float *x;
    uint8_t *y;
    if (ok) {
        t->n = ds.n;
        x = ds.x;
        y = ds.y;
    } else {
        t->n = RANDOM_SAMPLES;
        snprintf(t->what, sizeof t->what,
                 "SEEDED RANDOM data, %u samples of 1x28x28 in [0,1), 10 classes "
                 "(no Fashion-MNIST: %s)",
                 t->n, why);
        x = malloc((size_t)t->n * IMG_FEAT * sizeof *x);
        y = malloc(t->n);
        if (!x || !y)
            die("out of memory for random data");
        uint64_t s = mlt_rng_mix(BENCH_SEED, 77);
        for (size_t i = 0; i < (size_t)t->n * IMG_FEAT; i++)
            x[i] = (float)mlt_rng_uniform(&s);
        for (uint32_t i = 0; i < t->n; i++)
            y[i] = (uint8_t)mlt_rng_below(&s, N_CLASSES);
    }
    uint32_t *perm = malloc((size_t)t->n * sizeof *perm);
    if (!perm)
        die("out of memory");
    for (uint32_t i = 0; i < t->n; i++)
        perm[i] = i;
    uint64_t s = mlt_rng_mix(BENCH_SEED, 78);
    for (uint32_t i = t->n - 1; i > 0; i--) { /* Fisher-Yates */
        uint32_t j = mlt_rng_below(&s, i + 1);
        uint32_t tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
    t->d_x = dmalloc(g, (size_t)t->n * IMG_FEAT * sizeof(float), "the training images");
    t->d_y = dmalloc(g, t->n, "the training labels");
    t->d_perm = dmalloc(g, (size_t)t->n * sizeof(uint32_t), "the permutation");
    gcheck(g, mlt_gpu_upload(g, t->d_x, x, (size_t)t->n * IMG_FEAT * sizeof(float)), "upload x");
    gcheck(g, mlt_gpu_upload(g, t->d_y, y, t->n), "upload y");
    gcheck(g, mlt_gpu_upload(g, t->d_perm, perm, (size_t)t->n * sizeof(uint32_t)), "upload perm");
    gcheck(g, mlt_gpu_sync(g), "uploading the training set"); /* pageable sources freed next */
    free(perm);
    if (ok) {
        mlt_dataset_free(&ds);
    } else {
        free(x);
        free(y);
    }
}

/* ---- the models ------------------------------------------------------------ */

static mlt_model_desc_t model_desc(int which)
{
    mlt_model_desc_t d = {0};
    d.type = which == 0 ? MLT_MODEL_MLP : MLT_MODEL_CNN;
    d.in_c = 1;
    d.in_h = IMG_SIDE;
    d.in_w = IMG_SIDE;
    d.n_classes = N_CLASSES;
    d.hidden = mlp_hidden;
    d.n_hidden = which == 0 ? 2 : 0;
    d.cnn = cnn_layers;
    d.n_cnn = which == 1 ? (uint32_t)(sizeof cnn_layers / sizeof cnn_layers[0]) : 0;
    d.max_batch = MAX_BATCH;
    return d;
}

void bench_model_new(mlt_gpu_t *g, int which, bench_model_t *b)
{
    char err[512];
    mlt_model_desc_t d = model_desc(which);
    memset(b, 0, sizeof *b);
    b->m = mlt_gpu_model_new(g, &d, true, err, sizeof err);
    if (b->m == NULL)
        die("mlt_gpu_model_new(%s): %s", model_names[which], err);
    gcheck(g, mlt_gpu_model_init(b->m, BENCH_SEED), "mlt_gpu_model_init");
    const mlt_model_t *plan = mlt_gpu_model_plan(b->m);
    b->np = mlt_model_n_params(plan);
    b->sizes = calloc(b->np, sizeof *b->sizes);
    b->d_state = calloc(b->np, sizeof *b->d_state);
    if (!b->sizes || !b->d_state)
        die("out of memory");
    for (uint32_t i = 0; i < b->np; i++) {
        b->sizes[i] = mlt_model_param_size(plan, i);
        b->floats += b->sizes[i];
        b->d_state[i] = dmalloc(g, b->sizes[i] * sizeof(float), "optimizer state");
        gcheck(g, mlt_gpu_zero(g, b->d_state[i], b->sizes[i] * sizeof(float)), "zero state");
    }
    b->d_bx = dmalloc(g, (size_t)MAX_BATCH * IMG_FEAT * sizeof(float), "the batch");
    b->d_by = dmalloc(g, MAX_BATCH, "the batch labels");
    b->d_idx = dmalloc(g, MAX_BATCH * sizeof(uint32_t), "the batch indices");
    b->d_idx_next = dmalloc(g, MAX_BATCH * sizeof(uint32_t), "the next batch indices");
    gcheck(g, mlt_gpu_sync(g), "setting up the model");
}

void bench_model_destroy(mlt_gpu_t *g, bench_model_t *b)
{
    mlt_gpu_sync(g);
    for (uint32_t i = 0; i < b->np; i++)
        mlt_gpu_free(g, b->d_state[i]);
    mlt_gpu_free(g, b->d_bx);
    mlt_gpu_free(g, b->d_by);
    mlt_gpu_free(g, b->d_idx);
    mlt_gpu_free(g, b->d_idx_next);
    free(b->d_state);
    free(b->sizes);
    mlt_gpu_model_destroy(&b->m);
}

/* Uploads `batch` distinct first indices (synchronous). */
static void upload_first_indices(mlt_gpu_t *g, const train_set_t *t, bench_model_t *b,
                                 uint32_t batch, uint64_t seed)
{
    uint32_t idx[MAX_BATCH];
    uint64_t s = seed;
    uint32_t start = mlt_rng_below(&s, t->n - batch);
    for (uint32_t k = 0; k < batch; k++)
        idx[k] = start + k; /* consecutive, so distinct; the permutation scatters them */
    gcheck(g, mlt_gpu_upload(g, b->d_idx, idx, batch * sizeof(uint32_t)), "upload indices");
    gcheck(g, mlt_gpu_sync(g), "upload indices");
}

/* Issues one whole standalone step of `batch` samples (captured or not). */
static int issue_step(mlt_gpu_t *g, const train_set_t *t, bench_model_t *b, uint32_t batch)
{
    mlt_hyper_t h = mlt_hyper_default();
    h.lr = BENCH_LR;
    h.momentum = BENCH_MOMENTUM;
    float *const *P = mlt_gpu_model_params(b->m);
    float *const *G = mlt_gpu_model_grads(b->m);
    int rc;
    if ((rc = mlt_gpu_gather4(g, t->d_x, IMG_FEAT, b->d_idx, batch, b->d_bx)) ||
        (rc = mlt_gpu_gather1(g, t->d_y, 1, b->d_idx, batch, b->d_by)) ||
        (rc = mlt_gpu_model_step(b->m, b->d_bx, b->d_by, batch)))
        return rc;
    for (uint32_t i = 0; i < b->np; i++)
        if ((rc = mlt_gpu_optim_apply(g, MLT_RULE_SGD, &h, P[i], b->d_state[i], G[i], b->sizes[i],
                                      1)))
            return rc;
    if ((rc = mlt_gpu_gather4(g, t->d_perm, 1, b->d_idx, batch, b->d_idx_next)) ||
        (rc = mlt_gpu_copy(g, b->d_idx, b->d_idx_next, batch * sizeof(uint32_t))))
        return rc;
    return 0;
}

/* The step captured; NULL (with why) when the capture fails. */
static mlt_gpu_graph_t *capture_step(mlt_gpu_t *g, const train_set_t *t, bench_model_t *b,
                                     uint32_t batch, char *why, size_t whylen)
{
    mlt_gpu_graph_t *gr = NULL;
    int rc = mlt_gpu_capture_begin(g);
    if (rc == 0) {
        int rc2 = issue_step(g, t, b, batch);
        rc = mlt_gpu_capture_end(g, &gr);
        if (rc2 && !rc) {
            mlt_gpu_graph_destroy(&gr);
            rc = rc2;
        }
    }
    if (rc != 0 || gr == NULL) {
        snprintf(why, whylen, "%s", mlt_gpu_error(g));
        return NULL;
    }
    return gr;
}

/* The device's mean batch loss of the last step (synchronous). */
static double last_loss(mlt_gpu_t *g, bench_model_t *b, uint32_t batch)
{
    double sum = NAN;
    gcheck(g, mlt_gpu_download(g, &sum, mlt_gpu_model_d_loss(b->m), sizeof sum), "loss");
    gcheck(g, mlt_gpu_sync(g), "loss");
    return sum / batch;
}

/* Seconds for n steps issued back to back, one sync at the end. */
static double time_steps(mlt_gpu_t *g, const train_set_t *t, bench_model_t *b, uint32_t batch,
                         const mlt_gpu_graph_t *gr, long n)
{
    gcheck(g, mlt_gpu_sync(g), "sync before timing");
    double t0 = mlt_time_mono();
    for (long k = 0; k < n; k++) {
        int rc = gr ? mlt_gpu_graph_launch(g, gr) : issue_step(g, t, b, batch);
        if (rc)
            gcheck(g, rc, gr ? "graph launch" : "eager step");
    }
    gcheck(g, mlt_gpu_sync(g), "sync after timing");
    return mlt_time_mono() - t0;
}

/* Steps for one round: >= MIN_STEPS and >= `seconds` by a calibration run. */
static long steps_for(mlt_gpu_t *g, const train_set_t *t, bench_model_t *b, uint32_t batch,
                      const mlt_gpu_graph_t *gr, double seconds)
{
    double s = time_steps(g, t, b, batch, gr, WARMUP_STEPS);
    double per = s / WARMUP_STEPS;
    long n = per > 0 ? (long)ceil(seconds / per) : MIN_STEPS;
    if (n < MIN_STEPS)
        n = MIN_STEPS;
    if (n > 2000000)
        n = 2000000;
    return n;
}

/* Copies of every parameter and state tensor (device), for the graph check. */
typedef struct snapshot {
    float **w, **s;
    uint32_t *idx;
} snapshot_t;

static void snap(mlt_gpu_t *g, bench_model_t *b, snapshot_t *sn, bool save)
{
    float *const *P = mlt_gpu_model_params(b->m);
    if (save && sn->w == NULL) {
        sn->w = calloc(b->np, sizeof *sn->w);
        sn->s = calloc(b->np, sizeof *sn->s);
        if (!sn->w || !sn->s)
            die("out of memory");
        for (uint32_t i = 0; i < b->np; i++) {
            sn->w[i] = dmalloc(g, b->sizes[i] * sizeof(float), "snapshot");
            sn->s[i] = dmalloc(g, b->sizes[i] * sizeof(float), "snapshot");
        }
        sn->idx = dmalloc(g, MAX_BATCH * sizeof(uint32_t), "snapshot");
    }
    for (uint32_t i = 0; i < b->np; i++) {
        size_t n = b->sizes[i] * sizeof(float);
        gcheck(g, save ? mlt_gpu_copy(g, sn->w[i], P[i], n) : mlt_gpu_copy(g, P[i], sn->w[i], n),
               "snapshot copy");
        gcheck(g,
               save ? mlt_gpu_copy(g, sn->s[i], b->d_state[i], n)
                    : mlt_gpu_copy(g, b->d_state[i], sn->s[i], n),
               "snapshot copy");
    }
    size_t ni = MAX_BATCH * sizeof(uint32_t);
    gcheck(g,
           save ? mlt_gpu_copy(g, sn->idx, b->d_idx, ni) : mlt_gpu_copy(g, b->d_idx, sn->idx, ni),
           "snapshot copy");
    gcheck(g, mlt_gpu_sync(g), "snapshot");
}

static void snap_free(mlt_gpu_t *g, bench_model_t *b, snapshot_t *sn)
{
    for (uint32_t i = 0; sn->w && i < b->np; i++) {
        mlt_gpu_free(g, sn->w[i]);
        mlt_gpu_free(g, sn->s[i]);
    }
    mlt_gpu_free(g, sn->idx);
    free(sn->w);
    free(sn->s);
    memset(sn, 0, sizeof *sn);
}

/* All parameters, downloaded into one host array of b->floats. */
static void download_params(mlt_gpu_t *g, bench_model_t *b, float *out)
{
    float *const *P = mlt_gpu_model_params(b->m);
    size_t off = 0;
    for (uint32_t i = 0; i < b->np; i++) {
        gcheck(g, mlt_gpu_download(g, out + off, P[i], b->sizes[i] * sizeof(float)), "download");
        off += b->sizes[i];
    }
    gcheck(g, mlt_gpu_sync(g), "download");
}

/* One eager step and one replay from the same state: the same loss and
 * parameters up to rounding (some cuDNN backward algorithms sum in a varying
 * order). Leaves the state after the replay. Returns true when they agree;
 * *detail gets the numbers. */
static bool graph_check(mlt_gpu_t *g, const train_set_t *t, bench_model_t *b, uint32_t batch,
                        const mlt_gpu_graph_t *gr, char *detail, size_t len)
{
    snapshot_t sn = {0};
    float *w_eager = malloc(b->floats * sizeof(float)),
          *w_graph = malloc(b->floats * sizeof(float));
    float *w0 = malloc(b->floats * sizeof(float));
    if (!w_eager || !w_graph || !w0)
        die("out of memory");
    download_params(g, b, w0);
    snap(g, b, &sn, true);
    gcheck(g, issue_step(g, t, b, batch), "eager step");
    double l_eager = last_loss(g, b, batch);
    download_params(g, b, w_eager);
    snap(g, b, &sn, false);
    gcheck(g, mlt_gpu_graph_launch(g, gr), "graph launch");
    double l_graph = last_loss(g, b, batch);
    download_params(g, b, w_graph);
    snap_free(g, b, &sn);
    /* the difference of the two updates, relative to the update's size */
    double max_dw = 0, max_upd = 0;
    for (uint64_t i = 0; i < b->floats; i++) {
        double d = fabs((double)w_eager[i] - w_graph[i]);
        double u = fabs((double)w_eager[i] - w0[i]);
        if (!(d <= max_dw)) /* NaN counts */
            max_dw = d;
        if (u > max_upd)
            max_upd = u;
    }
    free(w_eager);
    free(w_graph);
    free(w0);
    double dl = fabs(l_eager - l_graph) / (fabs(l_eager) + 1e-12);
    bool ok =
        isfinite(l_eager) && dl <= CHECK_TOL && max_upd > 0 && max_dw <= CHECK_TOL * max_upd + 1e-7;
    snprintf(detail, len, "loss eager %.6f graph %.6f; max |w_eager - w_graph| %.2e (update %.2e)",
             l_eager, l_graph, max_dw, max_upd);
    return ok;
}

/* ---- 1. standalone -------------------------------------------------------- */

typedef struct step_result {
    double graph_ms, eager_ms; /* NaN: not measured */
    double loss0, loss1;       /* mean batch loss: first step, after the timing */
    long graph_steps, eager_steps;
    bool check_ok;
    char check[192];
    char conv[256]; /* the chosen convolution algorithms (cnn), or "" */
} step_result_t;

static step_result_t run_standalone(mlt_gpu_t *g, const train_set_t *t, int which, uint32_t batch,
                                    double seconds, bool *failed)
{
    step_result_t r = {NAN, NAN, NAN, NAN, 0, 0, false, "", ""};
    bench_model_t b;
    bench_model_new(g, which, &b);
    gcheck(g, mlt_gpu_model_prepare(b.m, batch), "mlt_gpu_model_prepare");
    upload_first_indices(g, t, &b, batch, mlt_rng_mix(BENCH_SEED, batch));

    gcheck(g, issue_step(g, t, &b, batch), "first eager step");
    r.loss0 = last_loss(g, &b, batch);

    char why[512];
    mlt_gpu_graph_t *gr = capture_step(g, t, &b, batch, why, sizeof why);
    if (gr == NULL) {
        fprintf(stderr, "bench/gpu_step: %s batch %u: capture failed: %s\n", model_names[which],
                batch, why);
        snprintf(r.check, sizeof r.check, "capture failed: %.160s", why);
        *failed = true;
    } else {
        r.check_ok = graph_check(g, t, &b, batch, gr, r.check, sizeof r.check);
        if (!r.check_ok) {
            fprintf(stderr, "bench/gpu_step: %s batch %u: graph and eager steps differ: %s\n",
                    model_names[which], batch, r.check);
            *failed = true;
        }
    }

    long n_graph = gr ? steps_for(g, t, &b, batch, gr, seconds) : 0;
    long n_eager = steps_for(g, t, &b, batch, NULL, seconds);
    double tg[ROUNDS], te[ROUNDS];
    for (int k = 0; k < ROUNDS; k++) { /* interleaved: load elsewhere hits both */
        tg[k] = gr ? time_steps(g, t, &b, batch, gr, n_graph) * 1e3 / n_graph : NAN;
        te[k] = time_steps(g, t, &b, batch, NULL, n_eager) * 1e3 / n_eager;
    }
    r.graph_ms = gr ? median(tg, ROUNDS) : NAN;
    r.eager_ms = median(te, ROUNDS);
    r.graph_steps = n_graph;
    r.eager_steps = n_eager;
    r.loss1 = last_loss(g, &b, batch);
    mlt_gpu_graph_destroy(&gr);
    bench_model_destroy(g, &b);
    return r;
}

/* A ratio for the summary line: "1.23", or "nan" (never "-nan" or "inf"). */
static const char *ratio_str(double v, char *buf, size_t len)
{
    if (isfinite(v))
        snprintf(buf, len, "%.2f", v);
    else
        snprintf(buf, len, "nan");
    return buf;
}

/* ---- main ------------------------------------------------------------------- */

static void usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [--torch torch.json] [--data DIR] [--seconds S] [--no-daemon]\n",
            argv0);
    exit(2);
}

int main(int argc, char **argv)
{
    const char *torch_path = NULL, *data_dir = NULL;
    double seconds = 1.0;
    bool daemon = true;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--torch") == 0 && i + 1 < argc)
            torch_path = argv[++i];
        else if (strcmp(argv[i], "--data") == 0 && i + 1 < argc)
            data_dir = argv[++i];
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--no-daemon") == 0)
            daemon = false;
        else
            usage(argv[0]);
    }
    if (!(seconds > 0) || seconds > 60)
        usage(argv[0]);
    setvbuf(stdout, NULL, _IOLBF, 0);

    char why[512];
    int n_dev = mlt_gpu_probe(why, sizeof why);
    if (n_dev <= 0) {
        printf("no GPU: %s\n", why);
        return 77;
    }

    /* the peer's numbers, if any */
    static torch_json_leaf_t leaves[TORCH_JSON_MAX_LEAVES];
    int n_leaves = 0;
    char torch_why[512] = "no --torch file given";
    if (torch_path) {
        n_leaves = torch_json_load(torch_path, leaves, torch_why, sizeof torch_why);
        if (n_leaves < 0) {
            fprintf(stderr, "bench/gpu_step: %s (torch columns stay nan)\n", torch_why);
            n_leaves = 0;
        }
    }

    char err[512];
    mlt_gpu_t *g = mlt_gpu_new(0, err, sizeof err);
    if (g == NULL)
        die("mlt_gpu_new(0): %s", err);
    mlt_gpu_set_tf32(g, true);
    train_set_t t = {0};
    double t_load = mlt_time_mono();
    train_set_load(g, data_dir, &t);
    t_load = mlt_time_mono() - t_load;

    printf("# gpu_step: %s (compute %d.%d), %d device(s)\n", mlt_gpu_device_name(g),
           mlt_gpu_device_cc(g) / 10, mlt_gpu_device_cc(g) % 10, n_dev);
    printf("# data: %s; on the device in %.1f s\n", t.what, t_load);
    if (n_leaves > 0) {
        const torch_json_leaf_t *tv = torch_json_get(leaves, n_leaves, "torch");
        const torch_json_leaf_t *td = torch_json_get(leaves, n_leaves, "device");
        const torch_json_leaf_t *tdata = torch_json_get(leaves, n_leaves, "data");
        printf("# torch: %s on %s, data %s (%s)\n", tv ? tv->str : "?", td ? td->str : "?",
               tdata ? tdata->str : "?", torch_path);
    } else {
        printf("# torch: none (%s)\n", torch_why);
    }

    bool failed = false;
    step_result_t res[N_MODELS][N_BATCHES];
    for (int mi = 0; mi < N_MODELS; mi++)
        for (int bi = 0; bi < N_BATCHES; bi++) {
            res[mi][bi] = run_standalone(g, &t, mi, batches[bi], seconds, &failed);
            fprintf(stderr, "# done: %s batch %u: graph %.4f ms, eager %.4f ms\n", model_names[mi],
                    batches[bi], res[mi][bi].graph_ms, res[mi][bi].eager_ms);
        }

    printf("\n# ms per training step, data on the device: gather batch by device indices, "
           "forward, backward,\n"
           "# SGD momentum 0.9 lr 0.01 on every tensor (ours: mlt_gpu_optim_apply). TF32 "
           "convolutions (PyTorch's default), FP32 GEMMs.\n"
           "# graph = the whole step as one CUDA graph, replayed; eager = issued op by op. "
           "Median of %d rounds,\n"
           "# each >= %d steps and >= %g s, one sync per round. vs_torch = torch ms / our ms "
           "(> 1: ours faster).\n",
           ROUNDS, MIN_STEPS, seconds);
    printf("%-5s %5s %11s %11s %7s %11s %11s %10s %10s\n", "model", "batch", "ours_graph",
           "ours_eager", "gain", "torch_graph", "torch_eager", "vs_t_graph", "vs_t_eager");
    double summary[N_MODELS] = {NAN, NAN};
    for (int mi = 0; mi < N_MODELS; mi++)
        for (int bi = 0; bi < N_BATCHES; bi++) {
            step_result_t *r = &res[mi][bi];
            char key[64];
            snprintf(key, sizeof key, "%s.%u.graph", model_names[mi], batches[bi]);
            double tg = torch_json_num(leaves, n_leaves, key);
            snprintf(key, sizeof key, "%s.%u.eager", model_names[mi], batches[bi]);
            double te = torch_json_num(leaves, n_leaves, key);
            printf("%-5s %5u %11.4f %11.4f %6.2fx %11.4f %11.4f %10.2f %10.2f\n", model_names[mi],
                   batches[bi], r->graph_ms, r->eager_ms, r->eager_ms / r->graph_ms, tg, te,
                   tg / r->graph_ms, te / r->eager_ms);
            if (batches[bi] == 128)
                summary[mi] = tg / r->graph_ms;
        }
    printf("\n# detail: steps per round; mean batch loss at the first step and after all "
           "timed steps; graph check (one eager step vs one replay from the same state)\n");
    for (int mi = 0; mi < N_MODELS; mi++)
        for (int bi = 0; bi < N_BATCHES; bi++) {
            step_result_t *r = &res[mi][bi];
            printf("%-5s %5u graph %7ld eager %7ld  loss %.4f -> %.4f  check %s: %s\n",
                   model_names[mi], batches[bi], r->graph_steps, r->eager_steps, r->loss0, r->loss1,
                   r->check_ok ? "ok" : "FAILED", r->check);
        }

    if (daemon) {
        static const char *const extra[] = {"memory_limit=2G", NULL};
        if (mlt_test_start(&cluster, 1, extra) != 0) {
            fprintf(stderr, "bench/gpu_step: could not start mltunerd (MLT_BUILD_ROOT=%s)\n",
                    getenv("MLT_BUILD_ROOT") ? getenv("MLT_BUILD_ROOT") : "(unset)");
            printf("\n# through a local daemon: NOT RUN (mltunerd did not start)\n");
            failed = true;
        } else {
            cluster_up = true;
            mlt_client_t *c = mlt_client_new(cluster.eps, 1, 0, err, sizeof err);
            if (c == NULL)
                die("mlt_client_new: %s", err);
            mlt_client_set_timeout(c, 30);
            ps_model_t pm[N_MODELS];
            for (int mi = 0; mi < N_MODELS; mi++) {
                pm[mi] = run_daemon(c, g, &t, mi, seconds);
                failed |= !pm[mi].ok;
            }
            mlt_client_destroy(&c);
            cluster_up = false;
            int bad = mlt_test_stop(&cluster);
            if (bad) {
                fprintf(stderr, "bench/gpu_step: mltunerd did not stop cleanly; logs in %s\n",
                        cluster.dir);
                failed = true;
            }
            printf("\n# through a local mltunerd (loopback, 1 worker, staleness 0, the daemon "
                   "applies SGD momentum 0.9): per step\n"
                   "# pull -> upload params + indices, gather, step, download grads (one graph, "
                   "pinned host buffers) -> push -> clock.\n"
                   "# pull = mlt_pull; gpu = that graph, launch to sync; push = mlt_push of every "
                   "table and mlt_clock.\n"
                   "# bound = max(compute, xfer): compute = our standalone graph step, xfer = 2 x "
                   "model bytes / daemon bandwidth;\n"
                   "# ratio = step / bound (target <= 1.1). At staleness 0 nothing overlaps: "
                   "ratio_sum = step / (compute + xfer)\n"
                   "# is the cost beyond doing both in turn. Median of %d rounds, each >= %d steps "
                   "and >= %g s.\n",
                   ROUNDS, PS_MIN_STEPS, seconds);
            for (int mi = 0; mi < N_MODELS; mi++)
                printf("# %s: %.3f MB of parameters; daemon pull+push %.0f MB/s (%d pure "
                       "pull/push/clock rounds)\n",
                       model_names[mi], pm[mi].mb, pm[mi].bw / 1e6, pm[mi].bw_iters);
            printf("%-5s %5s %9s %8s %8s %8s %10s %8s %7s %9s %16s\n", "model", "batch", "step_ms",
                   "pull", "gpu", "push", "compute", "xfer", "ratio", "ratio_sum", "loss");
            double worst = 0;
            for (int mi = 0; mi < N_MODELS; mi++)
                for (int bi = 0; bi < N_BATCHES; bi++) {
                    ps_result_t *r = &pm[mi].r[bi];
                    double compute = res[mi][bi].graph_ms;
                    double xfer = 2.0 * pm[mi].mb * 1e6 / pm[mi].bw * 1e3;
                    double bound = compute > xfer ? compute : xfer;
                    double ratio = r->step_ms / bound;
                    if (!(ratio <= worst))
                        worst = ratio;
                    printf("%-5s %5u %9.3f %8.3f %8.3f %8.3f %10.4f %8.3f %7.2f %9.2f "
                           "%7.3f->%-7.3f\n",
                           model_names[mi], batches[bi], r->step_ms, r->pull_ms, r->gpu_ms,
                           r->push_ms, compute, xfer, ratio, r->step_ms / (compute + xfer),
                           r->loss_first, r->loss_last);
                }
            printf("# daemon: worst ratio %.2f (target <= 1.1)\n", worst);
        }
    }

    mlt_gpu_free(g, t.d_x);
    mlt_gpu_free(g, t.d_y);
    mlt_gpu_free(g, t.d_perm);
    mlt_gpu_destroy(&g);
    if (failed)
        printf("\n# FAILED: see the messages above and on stderr\n");
    char s0[32], s1[32];
    printf("mlp128_vs_torch_graph=%s cnn128_vs_torch_graph=%s\n",
           ratio_str(summary[0], s0, sizeof s0), ratio_str(summary[1], s1, sizeof s1));
    return failed ? 1 : 0;
}
