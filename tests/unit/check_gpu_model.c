/* check_gpu_model.c - the GPU models (worker/model_gpu.h) against the CPU
 * models (worker/model.h): initial weights, a step's loss, right answers and
 * every gradient, evaluation, a step replayed from a CUDA graph, the gradient
 * hook, and the errors. Part of check_gpu (see check_gpu.c). */
#include "check_gpu_util.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the models ---- */

enum { GM_SOFTMAX, GM_MLP, GM_CNN, GM_CNN_RGB, GM_MF, N_GMODELS };

static const char *const gmodel_names[N_GMODELS] = {"softmax", "mlp", "cnn", "cnn rgb", "mf"};

static const uint32_t mlp_hidden[] = {64, 32};

/* on 1 x 28 x 28 */
static const mlt_cnn_layer_t cnn_gray[] = {
    {.op = MLT_CNN_CONV, .k = 5, .n = 8},  {.op = MLT_CNN_POOL, .k = 2},
    {.op = MLT_CNN_CONV, .k = 3, .n = 16}, {.op = MLT_CNN_POOL, .k = 2},
    {.op = MLT_CNN_FC, .n = 32},
};

/* on 3 x 30 x 26: the NCHW -> NHWC input, a standalone pool first (nothing
 * below it needs a gradient), a conv with a fused pool whose input gradient
 * is not needed, a 5x5 conv without a pool (its ReLU undone alone, its input
 * gradient needed), an fc */
static const mlt_cnn_layer_t cnn_rgb[] = {
    {.op = MLT_CNN_POOL, .k = 2}, {.op = MLT_CNN_CONV, .k = 3, .n = 8},
    {.op = MLT_CNN_POOL, .k = 2}, {.op = MLT_CNN_CONV, .k = 5, .n = 6},
    {.op = MLT_CNN_FC, .n = 16},
};

#define GM_MAX_BATCH 64
#define GM_BATCH     37  /* a step: odd, under max_batch */
#define GM_EVAL_N    100 /* an evaluation: batches of 64 and 36 */

static mlt_model_desc_t gmodel_desc(int which)
{
    mlt_model_desc_t d;
    memset(&d, 0, sizeof d);
    d.max_batch = GM_MAX_BATCH;
    d.in_c = 1;
    d.in_h = 28;
    d.in_w = 28;
    d.n_classes = 10;
    switch (which) {
    case GM_SOFTMAX: d.type = MLT_MODEL_SOFTMAX; break;
    case GM_MLP:
        d.type = MLT_MODEL_MLP;
        d.hidden = mlp_hidden;
        d.n_hidden = 2;
        break;
    case GM_CNN:
        d.type = MLT_MODEL_CNN;
        d.cnn = cnn_gray;
        d.n_cnn = sizeof cnn_gray / sizeof cnn_gray[0];
        break;
    case GM_CNN_RGB:
        d.type = MLT_MODEL_CNN;
        d.in_c = 3;
        d.in_h = 30;
        d.in_w = 26;
        d.n_classes = 7;
        d.cnn = cnn_rgb;
        d.n_cnn = sizeof cnn_rgb / sizeof cnn_rgb[0];
        break;
    case GM_MF:
        d.type = MLT_MODEL_MF;
        d.n_users = 50;
        d.n_items = 40;
        d.rank = 8;
        d.l2 = 0.05f;
        break;
    default: ck_abort_msg("model %d", which);
    }
    return d;
}

/* A CPU model and a GPU model of one description, with the same parameters. */
typedef struct twin {
    mlt_model_desc_t d;
    mlt_model_t *cpu;
    mlt_gpu_model_t *gm;
    uint32_t n;     /* parameter tensors */
    float **P, **G; /* host parameters (both models use them), the CPU's gradients */
} twin_t;

/* x rounded to multiples of 2^-bits. */
static void quantize(float *x, size_t n, int bits)
{
    const float s = ldexpf(1.0f, bits);
    for (size_t i = 0; i < n; i++)
        x[i] = nearbyintf(x[i] * s) / s;
}

/* So that both backends take the same branches (ReLU masks, pooling argmax),
 * the parameters are mlt_model_init's rounded to multiples of 2^-7 and the
 * pixels (mbatch_fill) multiples of 1/8 in [0, 1]. Then every sum of the
 * convolutions and of the mlp's first layer is exact in float in any order:
 * each partial sum is a multiple of 2^-17 under 2^24 of them (the largest,
 * the rgb cnn's second conv: 200 taps of |x| < 5.5 times |w| <= 9/128, < 78).
 * Only the later fc layers round, where a ReLU flip would need a
 * pre-activation within ~1e-7 of 0 among ~1000: odds of ~1e-4. */
static twin_t twin_new(int which, uint64_t seed)
{
    twin_t t = {.d = gmodel_desc(which)};
    char err[256];
    t.cpu = mlt_model_new(&t.d, err, sizeof err);
    ck_assert_msg(t.cpu != NULL, "mlt_model_new: %s", err);
    track(R_CPU_MODEL, t.cpu);
    t.gm = mlt_gpu_model_new(gpu, &t.d, false, err, sizeof err);
    ck_assert_msg(t.gm != NULL, "mlt_gpu_model_new: %s", err);
    track(R_GPU_MODEL, t.gm);
    ck_assert_ptr_eq(mlt_gpu_model_gpu(t.gm), gpu);

    /* the plan: the CPU model's tensors, names and sizes */
    const mlt_model_t *plan = mlt_gpu_model_plan(t.gm);
    t.n = mlt_model_n_params(t.cpu);
    ck_assert_uint_eq(mlt_model_n_params(plan), t.n);
    t.P = hnew(t.n * sizeof *t.P);
    t.G = hnew(t.n * sizeof *t.G);
    for (uint32_t i = 0; i < t.n; i++) {
        const uint64_t sz = mlt_model_param_size(t.cpu, i);
        ck_assert_str_eq(mlt_model_param_name(plan, i), mlt_model_param_name(t.cpu, i));
        ck_assert_uint_eq(mlt_model_param_size(plan, i), sz);
        t.P[i] = hnew(sz * sizeof(float));
        t.G[i] = hnew(sz * sizeof(float));
    }
    mlt_model_init(t.cpu, t.P, seed);
    for (uint32_t i = 0; i < t.n; i++) {
        const uint64_t sz = mlt_model_param_size(t.cpu, i);
        if (t.d.type != MLT_MODEL_MF)
            quantize(t.P[i], sz, 7);
        GPU_OK(mlt_gpu_upload(gpu, mlt_gpu_model_params(t.gm)[i], t.P[i], sz * sizeof(float)));
    }
    GPU_OK(mlt_gpu_sync(gpu));
    return t;
}

/* A batch on the host and (same contents) on the device. */
typedef struct mbatch {
    uint32_t n;
    float *x;   /* n NCHW images, pixels k/8 in [0, 1] */
    uint8_t *y; /* labels */
    ratings_t rt;
    float *d_x; /* on the device */
    uint8_t *d_y;
} mbatch_t;

/* New contents for b, uploaded into its device buffers. */
static void mbatch_fill(mbatch_t *b, const mlt_model_desc_t *d, uint64_t seed)
{
    reseed(seed);
    if (d->type == MLT_MODEL_MF) {
        for (uint32_t i = 0; i < b->n; i++) {
            b->rt.users[i] = (uint32_t)urand(0, d->n_users);
            b->rt.items[i] = (uint32_t)urand(0, d->n_items);
            b->rt.r[i] = (float)urand(-1, 1);
        }
        GPU_OK(mlt_gpu_upload(gpu, b->rt.d_users, b->rt.users, b->n * sizeof(uint32_t)));
        GPU_OK(mlt_gpu_upload(gpu, b->rt.d_items, b->rt.items, b->n * sizeof(uint32_t)));
        GPU_OK(mlt_gpu_upload(gpu, b->rt.d_r, b->rt.r, b->n * sizeof(float)));
        return;
    }
    const size_t nx = (size_t)b->n * d->in_c * d->in_h * d->in_w;
    for (size_t i = 0; i < nx; i++)
        b->x[i] = (float)floor(urand(0, 9)) / 8;
    for (uint32_t i = 0; i < b->n; i++)
        b->y[i] = (uint8_t)urand(0, d->n_classes);
    GPU_OK(mlt_gpu_upload(gpu, b->d_x, b->x, nx * sizeof(float)));
    GPU_OK(mlt_gpu_upload(gpu, b->d_y, b->y, b->n));
}

static mbatch_t mbatch_new(const mlt_model_desc_t *d, uint32_t n, uint64_t seed)
{
    mbatch_t b = {.n = n};
    if (d->type == MLT_MODEL_MF) {
        b.rt.users = hnew(n * sizeof(uint32_t));
        b.rt.items = hnew(n * sizeof(uint32_t));
        b.rt.r = hnew(n * sizeof(float));
        b.rt.d_users = dnew(n * sizeof(uint32_t));
        b.rt.d_items = dnew(n * sizeof(uint32_t));
        b.rt.d_r = dnew(n * sizeof(float));
    } else {
        const size_t nx = (size_t)n * d->in_c * d->in_h * d->in_w;
        b.x = hnew(nx * sizeof(float));
        b.y = hnew(n);
        b.d_x = dnew(nx * sizeof(float));
        b.d_y = dnew(n);
    }
    mbatch_fill(&b, d, seed);
    return b;
}

/* One GPU training step of t on b (asynchronous). */
static int gpu_step(twin_t *t, const mbatch_t *b)
{
    if (t->d.type == MLT_MODEL_MF)
        return mlt_gpu_model_step_mf(t->gm, b->rt.d_users, b->rt.d_items, b->rt.d_r, b->n);
    return mlt_gpu_model_step(t->gm, b->d_x, b->d_y, b->n);
}

/* The GPU model's gradients, downloaded. */
static float **gpu_grads(twin_t *t)
{
    float **g = hnew(t->n * sizeof *g);
    for (uint32_t i = 0; i < t->n; i++)
        g[i] = dgetf(mlt_gpu_model_grads(t->gm)[i], mlt_model_param_size(t->cpu, i));
    return g;
}

/* Gradients of the same batch through different summation orders: each
 * tensor within 1e-4 of its largest magnitude (float rounding of sums over
 * the batch and the pixels is ~1e-6 of that; a wrong or missing term is
 * ~1e-2). */
static void expect_grads(const twin_t *t, float *const *got, float *const *want, const char *what)
{
    for (uint32_t i = 0; i < t->n; i++) {
        const size_t sz = mlt_model_param_size(t->cpu, i);
        char label[96];
        snprintf(label, sizeof label, "%s: %s gradient", what, mlt_model_param_name(t->cpu, i));
        expect_close(got[i], want[i], sz, 1e-4 * max_abs(want[i], sz), label);
    }
}

/* The loss of a step or an evaluation: the same logits up to the fc layers'
 * rounding, through expf/logf: 1e-4 relative. */
static void expect_loss(double got, double want, const char *what)
{
    ck_assert_msg(close_enough(got, want, 1e-4 * fmax(1.0, fabs(want))), "%s: GPU %.9g, CPU %.9g",
                  what, got, want);
}

START_TEST(test_model_init_matches_cpu)
{
    /* mlt_gpu_model_init is mlt_model_init uploaded: bit for bit */
    const mlt_model_desc_t d = gmodel_desc(_i);
    char err[256];
    mlt_model_t *cpu = mlt_model_new(&d, err, sizeof err);
    ck_assert_msg(cpu != NULL, "mlt_model_new: %s", err);
    track(R_CPU_MODEL, cpu);
    mlt_gpu_model_t *gm = mlt_gpu_model_new(gpu, &d, false, err, sizeof err);
    ck_assert_msg(gm != NULL, "mlt_gpu_model_new: %s", err);
    track(R_GPU_MODEL, gm);
    const uint32_t n = mlt_model_n_params(cpu);
    float **P = hnew(n * sizeof *P);
    for (uint32_t i = 0; i < n; i++)
        P[i] = hnew(mlt_model_param_size(cpu, i) * sizeof(float));
    mlt_model_init(cpu, P, 77);
    GPU_OK(mlt_gpu_model_init(gm, 77));
    for (uint32_t i = 0; i < n; i++) {
        const size_t sz = mlt_model_param_size(cpu, i);
        expect_bits(dgetf(mlt_gpu_model_params(gm)[i], sz), P[i], sz, mlt_model_param_name(cpu, i));
    }
}
END_TEST

START_TEST(test_model_step_matches_cpu)
{
    const int which = _i;
    twin_t t = twin_new(which, 42);
    mbatch_t b = mbatch_new(&t.d, GM_BATCH, 7);
    float cpu_loss;
    uint32_t cpu_right = 0, gpu_right;
    double gpu_sum;
    GPU_OK(mlt_gpu_model_prepare(t.gm, GM_BATCH));
    if (t.d.type == MLT_MODEL_MF) {
        ck_assert_int_eq(
            mlt_model_step_mf(t.cpu, t.P, t.G, b.rt.users, b.rt.items, b.rt.r, GM_BATCH, &cpu_loss),
            0);
    } else {
        ck_assert_int_eq(mlt_model_step(t.cpu, t.P, t.G, b.x, b.y, GM_BATCH, &cpu_loss, &cpu_right),
                         0);
    }
    GPU_OK(gpu_step(&t, &b));
    /* the GPU's loss is a SUM over the batch, the CPU's a mean */
    dget(&gpu_sum, mlt_gpu_model_d_loss(t.gm), sizeof gpu_sum);
    expect_loss(gpu_sum / GM_BATCH, cpu_loss, gmodel_names[which]);
    if (t.d.type != MLT_MODEL_MF) {
        /* right answers exactly: the logits differ by rounding only, and a
         * near-tie within it among 37 rows of 10 has odds of ~1e-5 */
        dget(&gpu_right, mlt_gpu_model_d_correct(t.gm), sizeof gpu_right);
        ck_assert_uint_eq(gpu_right, cpu_right);
    }
    expect_grads(&t, gpu_grads(&t), t.G, gmodel_names[which]);
}
END_TEST

START_TEST(test_model_eval_matches_cpu)
{
    /* over GM_EVAL_N samples: a full batch and a short last one */
    const int which = _i;
    twin_t t = twin_new(which, 43);
    mbatch_t b = mbatch_new(&t.d, GM_EVAL_N, 8);
    if (t.d.type == MLT_MODEL_MF) {
        double cpu_mse, gpu_mse;
        ck_assert_int_eq(
            mlt_model_eval_mf(t.cpu, t.P, b.rt.users, b.rt.items, b.rt.r, GM_EVAL_N, &cpu_mse), 0);
        GPU_OK(
            mlt_gpu_model_eval_mf(t.gm, b.rt.d_users, b.rt.d_items, b.rt.d_r, GM_EVAL_N, &gpu_mse));
        expect_loss(gpu_mse, cpu_mse, "mf eval mse");
        return;
    }
    double cpu_loss, gpu_loss;
    uint32_t cpu_right, gpu_right;
    ck_assert_int_eq(mlt_model_eval(t.cpu, t.P, b.x, b.y, GM_EVAL_N, &cpu_loss, &cpu_right), 0);
    GPU_OK(mlt_gpu_model_eval(t.gm, b.d_x, b.d_y, GM_EVAL_N, &gpu_loss, &gpu_right));
    expect_loss(gpu_loss, cpu_loss, gmodel_names[which]);
    /* exactly, as in test_model_step_matches_cpu */
    ck_assert_uint_eq(gpu_right, cpu_right);
}
END_TEST

START_TEST(test_model_graph_step_matches_eager)
{
    /* a step captured once and replayed on new data in the same buffers
     * gives the gradients of an uncaptured step on that data */
    const int which = _i;
    twin_t t = twin_new(which, 44);
    mbatch_t b = mbatch_new(&t.d, GM_BATCH, 9);
    GPU_OK(mlt_gpu_model_prepare(t.gm, GM_BATCH));
    GPU_OK(mlt_gpu_capture_begin(gpu));
    GPU_OK(gpu_step(&t, &b));
    mlt_gpu_graph_t *gr = NULL;
    GPU_OK(mlt_gpu_capture_end(gpu, &gr));
    ck_assert_ptr_nonnull(gr);
    track(R_GRAPH, gr);
    for (int round = 0; round < 2; round++) {
        mbatch_fill(&b, &t.d, 100 + (uint64_t)round);
        GPU_OK(gpu_step(&t, &b));
        float **eager = gpu_grads(&t);
        double eager_sum, sum;
        uint32_t eager_right = 0, right = 0;
        dget(&eager_sum, mlt_gpu_model_d_loss(t.gm), sizeof eager_sum);
        if (t.d.type != MLT_MODEL_MF)
            dget(&eager_right, mlt_gpu_model_d_correct(t.gm), sizeof eager_right);
        /* what the replay must overwrite starts as NaN */
        for (uint32_t i = 0; i < t.n; i++)
            GPU_OK(mlt_gpu_fill(gpu, mlt_gpu_model_grads(t.gm)[i], mlt_model_param_size(t.cpu, i),
                                NAN));
        GPU_OK(mlt_gpu_graph_launch(gpu, gr));
        dget(&sum, mlt_gpu_model_d_loss(t.gm), sizeof sum);
        /* the same kernels, but cuDNN's weight-gradient algorithms and
         * mf_grad add with atomics, in an order that varies: the gradient
         * tolerance of expect_grads */
        expect_loss(sum, eager_sum, "replayed loss sum");
        if (t.d.type != MLT_MODEL_MF) {
            dget(&right, mlt_gpu_model_d_correct(t.gm), sizeof right);
            ck_assert_uint_eq(right, eager_right);
        }
        expect_grads(&t, gpu_grads(&t), eager, "replayed");
    }
}
END_TEST

/* The model's gradient hook: the order of its calls. */
typedef struct hook_seen {
    uint32_t n, order[64];
} hook_seen_t;

static void hook_note(void *ctx, uint32_t i)
{
    hook_seen_t *h = ctx;
    ck_assert_uint_lt(h->n, 64);
    h->order[h->n++] = i;
}

START_TEST(test_model_grad_hook)
{
    /* while a step is issued the hook hears of every tensor once, the last
     * layer's first (as the CPU model's hook does), so a caller can download
     * and mark each gradient there */
    const int which = _i;
    twin_t t = twin_new(which, 46);
    mbatch_t b = mbatch_new(&t.d, GM_BATCH, 12);
    hook_seen_t h = {0};
    GPU_OK(mlt_gpu_model_prepare(t.gm, GM_BATCH));
    mlt_gpu_model_on_grad(t.gm, hook_note, &h);
    GPU_OK(gpu_step(&t, &b));
    GPU_OK(mlt_gpu_sync(gpu));
    ck_assert_uint_eq(h.n, t.n);
    for (uint32_t k = 0; k < h.n; k++) {
        for (uint32_t j = 0; j < k; j++)
            ck_assert_uint_ne(h.order[j], h.order[k]);
        if (t.d.type != MLT_MODEL_MF && k + 2 < h.n)
            ck_assert_uint_lt(h.order[k + 2], h.order[k]);
    }
    mlt_gpu_model_on_grad(t.gm, NULL, NULL);
    h.n = 0;
    GPU_OK(gpu_step(&t, &b));
    GPU_OK(mlt_gpu_sync(gpu));
    ck_assert_uint_eq(h.n, 0);
}
END_TEST

START_TEST(test_model_errors)
{
    /* every documented -EINVAL of model_gpu.h, and the NaN of a bad label */
    twin_t t = twin_new(GM_CNN, 45);
    twin_t mf = twin_new(GM_MF, 45);
    mbatch_t b = mbatch_new(&t.d, 8, 10);
    double loss;
    uint32_t right;
    ck_assert_int_eq(mlt_gpu_model_prepare(t.gm, 0), -EINVAL);
    ck_assert_int_eq(mlt_gpu_model_prepare(t.gm, GM_MAX_BATCH + 1), -EINVAL);
    ck_assert_int_eq(mlt_gpu_model_prepare(mf.gm, 0), -EINVAL);
    /* a batch size not prepared (a cnn keeps convolution plans per size) */
    ck_assert_int_eq(mlt_gpu_model_step(t.gm, b.d_x, b.d_y, 5), -EINVAL);
    ck_assert_int_eq(mlt_gpu_model_step(t.gm, b.d_x, b.d_y, 0), -EINVAL);
    ck_assert_int_eq(mlt_gpu_model_step(t.gm, b.d_x, b.d_y, GM_MAX_BATCH + 1), -EINVAL);
    /* the wrong kind of model, an empty evaluation */
    ck_assert_int_eq(mlt_gpu_model_step_mf(t.gm, NULL, NULL, NULL, 4), -EINVAL);
    ck_assert_int_eq(mlt_gpu_model_step(mf.gm, b.d_x, b.d_y, 4), -EINVAL);
    ck_assert_int_eq(mlt_gpu_model_eval(mf.gm, b.d_x, b.d_y, 4, &loss, &right), -EINVAL);
    ck_assert_int_eq(mlt_gpu_model_eval(t.gm, b.d_x, b.d_y, 0, &loss, &right), -EINVAL);
    ck_assert_int_eq(mlt_gpu_model_eval_mf(t.gm, NULL, NULL, NULL, 4, &loss), -EINVAL);
    ck_assert_int_eq(mlt_gpu_model_eval_mf(mf.gm, NULL, NULL, NULL, 0, &loss), -EINVAL);
    GPU_OK(mlt_gpu_sync(gpu));

    /* an invalid description: NULL with the CPU model's message */
    mlt_model_desc_t bad = gmodel_desc(GM_CNN);
    bad.n_classes = 1;
    char err[256] = "";
    mlt_gpu_model_t *none = mlt_gpu_model_new(gpu, &bad, false, err, sizeof err);
    ck_assert_ptr_null(none);
    ck_assert_str_ne(err, "");

    /* a label >= n_classes: a NaN loss, and the step still succeeds */
    b.y[3] = (uint8_t)t.d.n_classes;
    GPU_OK(mlt_gpu_upload(gpu, b.d_y, b.y, b.n));
    GPU_OK(mlt_gpu_model_prepare(t.gm, b.n));
    GPU_OK(mlt_gpu_model_step(t.gm, b.d_x, b.d_y, b.n));
    dget(&loss, mlt_gpu_model_d_loss(t.gm), sizeof loss);
    ck_assert_msg(isnan(loss), "bad label: loss sum %g", loss);
}
END_TEST

/* ---- the suite ---- */

void gpu_model_tcases(Suite *s)
{
    TCase *tc = add_tcase(s, "model");
    tcase_add_loop_test(tc, test_model_init_matches_cpu, 0, N_GMODELS);
    tcase_add_loop_test(tc, test_model_step_matches_cpu, 0, N_GMODELS);
    tcase_add_loop_test(tc, test_model_eval_matches_cpu, 0, N_GMODELS);
    tcase_add_loop_test(tc, test_model_graph_step_matches_eager, 0, N_GMODELS);
    tcase_add_loop_test(tc, test_model_grad_hook, 0, N_GMODELS);
    tcase_add_test(tc, test_model_errors);
}
