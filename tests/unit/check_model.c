/* check_model.c - Check suite for worker/model.
 *
 * The heart is the gradient check: for every model type the double-precision
 * analytic gradient of EVERY parameter tensor, from mlt_model_step_f64 (the
 * training code instantiated for double), is compared with central finite
 * differences of the loss (h = 1e-6) element by element:
 *     max |a - n| / max(max |a| + |n|, 1e-8)  <= 1e-6   per tensor.
 * Then: the float step agrees with the double step, a few SGD steps on a tiny
 * separable problem reduce the loss, init is deterministic for a seed, eval
 * matches the step's loss. Init, descriptions and the documented errors are
 * check_model_desc.c's. */
#include "worker/model.h"
#include "tests/unit/check_model.h"

#include "common/alloc.h"

#include <check.h>
#include <stdbool.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FD_H     1e-6
#define FD_RTOL  1e-6
#define F32_RTOL 1e-4

static uint64_t rng_state = 1;

static void reseed(uint64_t s)
{
    rng_state = s * 0x9E3779B97F4A7C15ull + 7;
}

static double urand(double lo, double hi)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return lo + (hi - lo) * (double)(rng_state >> 11) * 0x1.0p-53;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    ck_assert_ptr_nonnull(p);
    return p;
}

/* ---- the test models ---- */


static const uint32_t mlp_hidden[] = {7, 5};
/* conv3x3x4 - pool2 - fc8 on 1x8x8 (the suite the brief asks for) */
static const mlt_cnn_layer_t cnn_small[] = {
    {.op = MLT_CNN_CONV, .k = 3, .n = 4},
    {.op = MLT_CNN_POOL, .k = 2},
    {.op = MLT_CNN_FC, .n = 8},
};
/* on 2x7x6: NCHW->NHWC input, a direct first conv wide enough (16 channels)
 * for its vector paths, floor pooling (7x6 -> 3x3), a conv without a pool
 * whose input gradient is needed, an fc after it */
static const mlt_cnn_layer_t cnn_two[] = {
    {.op = MLT_CNN_CONV, .k = 3, .n = 16},
    {.op = MLT_CNN_POOL, .k = 2},
    {.op = MLT_CNN_CONV, .k = 3, .n = 2},
    {.op = MLT_CNN_FC, .n = 4},
};
/* on 2x8x8: a pool first (no gradient needed below the first conv), a conv
 * with k = 5 > its 4x4 input's half and 50 taps (so im2col + GEMM, not the
 * direct path of the other two models' first convs), a fused pool, then a
 * standalone pool, straight into the output fc */
static const mlt_cnn_layer_t cnn_pools[] = {
    {.op = MLT_CNN_POOL, .k = 2},
    {.op = MLT_CNN_CONV, .k = 5, .n = 3},
    {.op = MLT_CNN_POOL, .k = 2},
    {.op = MLT_CNN_POOL, .k = 2},
};

mlt_model_desc_t test_desc(int which, uint32_t max_batch)
{
    mlt_model_desc_t d;
    memset(&d, 0, sizeof d);
    d.max_batch = max_batch;
    d.in_c = 1;
    d.in_h = 8;
    d.in_w = 8;
    d.n_classes = 3;
    switch (which) {
    case M_SOFTMAX:
        d.type = MLT_MODEL_SOFTMAX;
        d.in_h = 4;
        d.in_w = 5;
        break;
    case M_MLP:
        d.type = MLT_MODEL_MLP;
        d.in_h = 3;
        d.in_w = 4;
        d.hidden = mlp_hidden;
        d.n_hidden = 2;
        break;
    case M_CNN:
        d.type = MLT_MODEL_CNN;
        d.cnn = cnn_small;
        d.n_cnn = 3;
        break;
    case M_CNN2:
        d.type = MLT_MODEL_CNN;
        d.in_c = 2;
        d.in_h = 7;
        d.in_w = 6;
        d.cnn = cnn_two;
        d.n_cnn = 4;
        break;
    case M_CNN3:
        d.type = MLT_MODEL_CNN;
        d.in_c = 2;
        d.cnn = cnn_pools;
        d.n_cnn = 4;
        break;
    case M_MF:
        d.type = MLT_MODEL_MF;
        d.n_users = 6;
        d.n_items = 5;
        d.rank = 3;
        d.l2 = 0.1f;
        break;
    default: ck_abort_msg("model %d", which);
    }
    return d;
}

static const char *const model_names[N_MODELS] = {"softmax", "mlp", "cnn", "cnn2", "cnn3", "mf"};

mlt_model_t *new_model(const mlt_model_desc_t *d)
{
    char err[256];
    mlt_model_t *m = mlt_model_new(d, err, sizeof err);
    ck_assert_msg(m != NULL, "mlt_model_new: %s", err);
    return m;
}


tensors_t tensors_new(const mlt_model_t *m)
{
    tensors_t t = {.n = mlt_model_n_params(m)};
    t.f = xcalloc(t.n, sizeof *t.f);
    t.d = xcalloc(t.n, sizeof *t.d);
    t.gf = xcalloc(t.n, sizeof *t.gf);
    t.gd = xcalloc(t.n, sizeof *t.gd);
    for (uint32_t i = 0; i < t.n; i++) {
        uint64_t sz = mlt_model_param_size(m, i);
        ck_assert_uint_gt(sz, 0);
        t.f[i] = xcalloc(sz, sizeof(float));
        t.d[i] = xcalloc(sz, sizeof(double));
        t.gf[i] = xcalloc(sz, sizeof(float));
        t.gd[i] = xcalloc(sz, sizeof(double));
    }
    return t;
}

void tensors_free(tensors_t *t)
{
    for (uint32_t i = 0; i < t->n; i++) {
        free(t->f[i]);
        free(t->d[i]);
        free(t->gf[i]);
        free(t->gd[i]);
    }
    free(t->f);
    free(t->d);
    free(t->gf);
    free(t->gd);
}

/* init in float, copied to double */
void tensors_init(const mlt_model_t *m, tensors_t *t, uint64_t seed)
{
    mlt_model_init(m, t->f, seed);
    for (uint32_t i = 0; i < t->n; i++)
        for (uint64_t j = 0; j < mlt_model_param_size(m, i); j++)
            t->d[i][j] = t->f[i][j];
}


batch_t batch_new(const mlt_model_desc_t *d, uint32_t n, uint64_t seed)
{
    batch_t b = {.n = n};
    reseed(seed);
    if (d->type == MLT_MODEL_MF) {
        b.users = xcalloc(n, sizeof *b.users);
        b.items = xcalloc(n, sizeof *b.items);
        b.rf = xcalloc(n, sizeof *b.rf);
        b.rd = xcalloc(n, sizeof *b.rd);
        for (uint32_t i = 0; i < n; i++) {
            b.users[i] = (uint32_t)urand(0, d->n_users);
            b.items[i] = (uint32_t)urand(0, d->n_items);
            b.rf[i] = (float)urand(-1, 1);
            b.rd[i] = b.rf[i];
        }
        return b;
    }
    size_t in = (size_t)d->in_c * d->in_h * d->in_w;
    b.xf = xcalloc(in * n, sizeof *b.xf);
    b.xd = xcalloc(in * n, sizeof *b.xd);
    b.y = xcalloc(n, 1);
    for (size_t i = 0; i < in * n; i++) {
        b.xf[i] = (float)urand(-1, 1);
        b.xd[i] = b.xf[i];
    }
    for (uint32_t i = 0; i < n; i++)
        b.y[i] = (uint8_t)(i % d->n_classes);
    return b;
}

void batch_free(batch_t *b)
{
    free(b->xf);
    free(b->xd);
    free(b->y);
    free(b->users);
    free(b->items);
    free(b->rf);
    free(b->rd);
}

/* The objective whose gradient the double step returns. For MF that is the
 * MSE (what the step reports) plus the L2 term, added here. */
static double objective_f64(mlt_model_t *m, const mlt_model_desc_t *d, tensors_t *t,
                            const batch_t *b, double **scratch)
{
    double loss = 0;
    if (d->type == MLT_MODEL_MF) {
        ck_assert_int_eq(
            mlt_model_step_mf_f64(m, t->d, scratch, b->users, b->items, b->rd, b->n, &loss), 0);
        double reg = 0;
        for (uint32_t i = 0; i < b->n; i++)
            for (uint32_t j = 0; j < d->rank; j++) {
                double u = t->d[0][b->users[i] * d->rank + j],
                       v = t->d[1][b->items[i] * d->rank + j];
                reg += u * u + v * v;
            }
        return loss + d->l2 * reg / b->n;
    }
    ck_assert_int_eq(mlt_model_step_f64(m, t->d, scratch, b->xd, b->y, b->n, &loss, NULL), 0);
    return loss;
}

/* Compares the analytic gradient of every tensor with central differences;
 * chunk > 0 caps the convolution chunk first. */
static void gradcheck(int which, uint32_t chunk)
{
    const mlt_model_desc_t d = test_desc(which, 5);
    mlt_model_t *m = new_model(&d);
    if (chunk > 0)
        mlt_model_limit_chunk(m, chunk);
    tensors_t t = tensors_new(m);
    tensors_init(m, &t, 42 + (uint64_t)which);
    batch_t b = batch_new(&d, 5, 7 + (uint64_t)which);
    double **scratch = xcalloc(t.n, sizeof *scratch);
    for (uint32_t i = 0; i < t.n; i++)
        scratch[i] = xcalloc(mlt_model_param_size(m, i), sizeof(double));

    (void)objective_f64(m, &d, &t, &b, t.gd); /* the analytic gradient */
    for (uint32_t i = 0; i < t.n; i++) {
        const uint64_t sz = mlt_model_param_size(m, i);
        double max_diff = 0, max_mag = 0, max_grad = 0;
        for (uint64_t j = 0; j < sz; j++) {
            const double keep = t.d[i][j];
            t.d[i][j] = keep + FD_H;
            double lp = objective_f64(m, &d, &t, &b, scratch);
            t.d[i][j] = keep - FD_H;
            double lm = objective_f64(m, &d, &t, &b, scratch);
            t.d[i][j] = keep;
            const double num = (lp - lm) / (2 * FD_H), ana = t.gd[i][j];
            max_diff = fmax(max_diff, fabs(ana - num));
            max_mag = fmax(max_mag, fabs(ana) + fabs(num));
            max_grad = fmax(max_grad, fabs(ana));
        }
        const double rel = max_diff / fmax(max_mag, 1e-8);
        ck_assert_msg(
            rel <= FD_RTOL, "%s (chunk %u) %s: relative error %.3g (max |a-n| %.3g, max |a| %.3g)",
            model_names[which], chunk, mlt_model_param_name(m, i), rel, max_diff, max_grad);
        /* a check of an all-zero gradient would prove little */
        ck_assert_msg(max_grad > 1e-6, "%s %s: gradient is zero", model_names[which],
                      mlt_model_param_name(m, i));
    }
    for (uint32_t i = 0; i < t.n; i++)
        free(scratch[i]);
    free(scratch);
    batch_free(&b);
    tensors_free(&t);
    mlt_model_destroy(&m);
}

START_TEST(test_gradcheck)
{
    gradcheck(_i, 0);
}
END_TEST

START_TEST(test_gradcheck_chunked)
{
    /* batch 5 in convolution chunks of 2, 2, 1 */
    static const int cnns[] = {M_CNN, M_CNN2, M_CNN3};
    gradcheck(cnns[_i], 2);
}
END_TEST

/* ---- the forward pass against an independent reference ----
 * Written from model.h alone, in NCHW: conv weights [o][ky][kx][i], an fc
 * after a conv/pool reads the (h, w, c) flattening, an fc on the input reads
 * it as given. The mean cross-entropy must match the model's. */

typedef struct ref_op {
    int op;     /* MLT_CNN_* */
    uint32_t k; /* conv kernel, pool window */
    uint32_t n; /* conv channels, fc units */
    bool relu;
} ref_op_t;

static double ref_loss(const mlt_model_desc_t *d, double *const *P, const double *x,
                       const uint8_t *y, uint32_t n)
{
    ref_op_t ops[16];
    size_t n_ops = 0;
    if (d->type == MLT_MODEL_MLP)
        for (uint32_t i = 0; i < d->n_hidden; i++)
            ops[n_ops++] = (ref_op_t){MLT_CNN_FC, 0, d->hidden[i], true};
    if (d->type == MLT_MODEL_CNN)
        for (uint32_t i = 0; i < d->n_cnn; i++)
            ops[n_ops++] =
                (ref_op_t){d->cnn[i].op, d->cnn[i].k, d->cnn[i].n, d->cnn[i].op != MLT_CNN_POOL};
    ops[n_ops++] = (ref_op_t){MLT_CNN_FC, 0, d->n_classes, false};

    size_t c = d->in_c, h = d->in_h, w = d->in_w;
    bool spatial = false; /* a conv/pool has run: an fc flattens (h, w, c) */
    double *a = xcalloc(n * c * h * w, sizeof *a);
    memcpy(a, x, n * c * h * w * sizeof *a);
    int pi = 0;
    for (size_t o = 0; o < n_ops; o++) {
        const ref_op_t *op = &ops[o];
        double *out;
        if (op->op == MLT_CNN_CONV) {
            const double *W = P[pi++], *B = P[pi++];
            const long pad = (long)(op->k - 1) / 2;
            out = xcalloc(n * op->n * h * w, sizeof *out);
            for (size_t b = 0; b < n; b++)
                for (size_t oc = 0; oc < op->n; oc++)
                    for (size_t yy = 0; yy < h; yy++)
                        for (size_t xx = 0; xx < w; xx++) {
                            double s = B[oc];
                            for (size_t ky = 0; ky < op->k; ky++)
                                for (size_t kx = 0; kx < op->k; kx++)
                                    for (size_t ic = 0; ic < c; ic++) {
                                        long iy = (long)(yy + ky) - pad, ix = (long)(xx + kx) - pad;
                                        if (iy < 0 || ix < 0 || iy >= (long)h || ix >= (long)w)
                                            continue;
                                        s += W[((oc * op->k + ky) * op->k + kx) * c + ic] *
                                             a[((b * c + ic) * h + (size_t)iy) * w + (size_t)ix];
                                    }
                            out[((b * op->n + oc) * h + yy) * w + xx] = fmax(s, 0);
                        }
            c = op->n;
            spatial = true;
        } else if (op->op == MLT_CNN_POOL) {
            const size_t oh = h / op->k, ow = w / op->k;
            out = xcalloc(n * c * oh * ow, sizeof *out);
            for (size_t b = 0; b < n; b++)
                for (size_t ch = 0; ch < c; ch++)
                    for (size_t oy = 0; oy < oh; oy++)
                        for (size_t ox = 0; ox < ow; ox++) {
                            double mx = -INFINITY;
                            for (size_t dy = 0; dy < op->k; dy++)
                                for (size_t dx = 0; dx < op->k; dx++)
                                    mx = fmax(mx, a[((b * c + ch) * h + oy * op->k + dy) * w +
                                                    ox * op->k + dx]);
                            out[((b * c + ch) * oh + oy) * ow + ox] = mx;
                        }
            h = oh;
            w = ow;
            spatial = true;
        } else {
            const size_t in = c * h * w;
            if (spatial) { /* to (h, w, c) order */
                double *v = xcalloc(n * in, sizeof *v);
                for (size_t b = 0; b < n; b++)
                    for (size_t ch = 0; ch < c; ch++)
                        for (size_t i = 0; i < h * w; i++)
                            v[b * in + i * c + ch] = a[(b * c + ch) * h * w + i];
                free(a);
                a = v;
                spatial = false;
            }
            const double *W = P[pi++], *B = P[pi++];
            out = xcalloc(n * op->n, sizeof *out);
            for (size_t b = 0; b < n; b++)
                for (size_t j = 0; j < op->n; j++) {
                    double s = B[j];
                    for (size_t i = 0; i < in; i++)
                        s += W[j * in + i] * a[b * in + i];
                    out[b * op->n + j] = op->relu ? fmax(s, 0) : s;
                }
            c = op->n;
            h = w = 1;
        }
        free(a);
        a = out;
    }
    double total = 0;
    for (size_t b = 0; b < n; b++) {
        const double *z = a + b * c;
        double m = z[0], s = 0;
        for (size_t j = 1; j < c; j++)
            m = fmax(m, z[j]);
        for (size_t j = 0; j < c; j++)
            s += exp(z[j] - m);
        total += log(s) + m - z[y[b]];
    }
    free(a);
    return total / n;
}

START_TEST(test_forward_matches_reference)
{
    const int which = _i; /* the classification models */
    const mlt_model_desc_t d = test_desc(which, 6);
    mlt_model_t *m = new_model(&d);
    tensors_t t = tensors_new(m);
    tensors_init(m, &t, 31 + (uint64_t)which);
    batch_t b = batch_new(&d, 6, 17 + (uint64_t)which);
    double loss;
    ck_assert_int_eq(mlt_model_step_f64(m, t.d, t.gd, b.xd, b.y, 6, &loss, NULL), 0);
    double want = ref_loss(&d, t.d, b.xd, b.y, 6);
    ck_assert_msg(fabs(loss - want) <= 1e-12 * fmax(1, want), "%s: loss %.17g, reference %.17g",
                  model_names[which], loss, want);
    batch_free(&b);
    tensors_free(&t);
    mlt_model_destroy(&m);
}
END_TEST

START_TEST(test_float_matches_double)
{
    const int which = _i;
    const mlt_model_desc_t d = test_desc(which, 9);
    mlt_model_t *m = new_model(&d);
    if (d.type == MLT_MODEL_CNN)
        mlt_model_limit_chunk(m, 4); /* chunks of 4, 4, 1 */
    tensors_t t = tensors_new(m);
    tensors_init(m, &t, 100 + (uint64_t)which);
    batch_t b = batch_new(&d, 9, 200 + (uint64_t)which);
    float lf = 0;
    double ld = 0;
    uint32_t cf = 0, cd = 0;
    if (d.type == MLT_MODEL_MF) {
        ck_assert_int_eq(mlt_model_step_mf(m, t.f, t.gf, b.users, b.items, b.rf, b.n, &lf), 0);
        ck_assert_int_eq(mlt_model_step_mf_f64(m, t.d, t.gd, b.users, b.items, b.rd, b.n, &ld), 0);
    } else {
        ck_assert_int_eq(mlt_model_step(m, t.f, t.gf, b.xf, b.y, b.n, &lf, &cf), 0);
        ck_assert_int_eq(mlt_model_step_f64(m, t.d, t.gd, b.xd, b.y, b.n, &ld, &cd), 0);
        ck_assert_uint_eq(cf, cd);
    }
    ck_assert_msg(fabs(lf - ld) <= F32_RTOL * fmax(1, fabs(ld)), "loss %.9g vs %.9g", (double)lf,
                  ld);
    for (uint32_t i = 0; i < t.n; i++) {
        double max_diff = 0, max_mag = 0;
        for (uint64_t j = 0; j < mlt_model_param_size(m, i); j++) {
            max_diff = fmax(max_diff, fabs((double)t.gf[i][j] - t.gd[i][j]));
            max_mag = fmax(max_mag, fabs((double)t.gf[i][j]) + fabs(t.gd[i][j]));
        }
        ck_assert_msg(max_diff / fmax(max_mag, 1e-8) <= F32_RTOL, "%s %s: float vs double %.3g",
                      model_names[which], mlt_model_param_name(m, i),
                      max_diff / fmax(max_mag, 1e-8));
    }
    batch_free(&b);
    tensors_free(&t);
    mlt_model_destroy(&m);
}
END_TEST

/* ---- training reduces the loss ---- */

START_TEST(test_sgd_reduces_loss)
{
    const int which = _i;
    const mlt_model_desc_t d = test_desc(which, 12);
    mlt_model_t *m = new_model(&d);
    tensors_t t = tensors_new(m);
    tensors_init(m, &t, 5);
    batch_t b = batch_new(&d, 12, 300 + (uint64_t)which);
    if (d.type == MLT_MODEL_MF) {
        /* ratings from a rank-1 model: learnable */
        for (uint32_t i = 0; i < b.n; i++)
            b.rf[i] = 0.5f * (float)(b.users[i] % 3) * (float)(1 + b.items[i] % 2) - 0.5f;
    } else {
        /* separable: class c lights up its own third of the input */
        size_t in = (size_t)d.in_c * d.in_h * d.in_w;
        for (uint32_t s = 0; s < b.n; s++)
            for (size_t j = 0; j < in; j++)
                b.xf[s * in + j] = (j * 3 / in == b.y[s] ? 1.0f : 0.0f) + 0.1f * b.xf[s * in + j];
    }
    const float lr = d.type == MLT_MODEL_MF ? 0.5f : 0.2f;
    float first = 0, loss = 0;
    uint32_t correct = 0;
    for (int step = 0; step < 200; step++) {
        if (d.type == MLT_MODEL_MF)
            ck_assert_int_eq(mlt_model_step_mf(m, t.f, t.gf, b.users, b.items, b.rf, b.n, &loss),
                             0);
        else
            ck_assert_int_eq(mlt_model_step(m, t.f, t.gf, b.xf, b.y, b.n, &loss, &correct), 0);
        if (step == 0)
            first = loss;
        for (uint32_t i = 0; i < t.n; i++)
            for (uint64_t j = 0; j < mlt_model_param_size(m, i); j++)
                t.f[i][j] -= lr * t.gf[i][j];
    }
    ck_assert_msg(isfinite(loss) && loss < 0.5f * first, "%s: loss %g -> %g", model_names[which],
                  (double)first, (double)loss);
    if (d.type != MLT_MODEL_MF)
        ck_assert_msg(correct == b.n, "%s: %u of %u right after training", model_names[which],
                      correct, b.n);
    batch_free(&b);
    tensors_free(&t);
    mlt_model_destroy(&m);
}
END_TEST

/* ---- eval ---- */

START_TEST(test_eval_matches_step)
{
    /* eval in batches of 3 over 8 samples == one step over all 8 */
    const int which = _i;
    mlt_model_desc_t d = test_desc(which, 3);
    mlt_model_t *m3 = new_model(&d);
    d.max_batch = 8;
    mlt_model_t *m8 = new_model(&d);
    tensors_t t = tensors_new(m8);
    tensors_init(m8, &t, 9);
    batch_t b = batch_new(&d, 8, 4);
    double el, mse;
    uint32_t ec = 0, sc = 0;
    float sl;
    if (d.type == MLT_MODEL_MF) {
        ck_assert_int_eq(mlt_model_eval_mf(m3, t.f, b.users, b.items, b.rf, 8, &mse), 0);
        ck_assert_int_eq(mlt_model_step_mf(m8, t.f, t.gf, b.users, b.items, b.rf, 8, &sl), 0);
        ck_assert_msg(fabs(mse - sl) <= 1e-5 * fmax(1, mse), "mse %g vs %g", mse, (double)sl);
    } else {
        ck_assert_int_eq(mlt_model_eval(m3, t.f, b.xf, b.y, 8, &el, &ec), 0);
        ck_assert_int_eq(mlt_model_step(m8, t.f, t.gf, b.xf, b.y, 8, &sl, &sc), 0);
        ck_assert_msg(fabs(el - sl) <= 1e-5 * fmax(1, el), "eval %g vs step %g", el, (double)sl);
        ck_assert_uint_eq(ec, sc);
    }
    batch_free(&b);
    tensors_free(&t);
    mlt_model_destroy(&m3);
    mlt_model_destroy(&m8);
}
END_TEST

START_TEST(test_step_is_repeatable)
{
    /* a step depends only on its inputs: no state leaks from a previous,
     * larger batch through the work buffers */
    const int which = _i;
    const mlt_model_desc_t d = test_desc(which, 8);
    mlt_model_t *m = new_model(&d);
    tensors_t t = tensors_new(m), u = tensors_new(m);
    tensors_init(m, &t, 11);
    batch_t b = batch_new(&d, 8, 5);
    float l1, l2;
    ck_assert_int_eq(mlt_model_step(m, t.f, t.gf, b.xf, b.y, 3, &l1, NULL), 0);
    ck_assert_int_eq(mlt_model_step(m, t.f, u.gf, b.xf, b.y, 8, &l2, NULL), 0);
    ck_assert_int_eq(mlt_model_step(m, t.f, u.gf, b.xf, b.y, 3, &l2, NULL), 0);
    ck_assert_float_eq(l1, l2);
    for (uint32_t i = 0; i < t.n; i++)
        ck_assert(memcmp(t.gf[i], u.gf[i], mlt_model_param_size(m, i) * sizeof(float)) == 0);
    batch_free(&b);
    tensors_free(&t);
    tensors_free(&u);
    mlt_model_destroy(&m);
}
END_TEST

START_TEST(test_threads_match_one)
{
    /* a step on 2 or 3 threads (batch slices, mlt_model_set_threads) gives
     * one thread's loss, count and gradients, up to the order of float sums;
     * so does an evaluation; uneven slices, a batch smaller than the threads
     * (one thread then) and chunked convolutions included */
    const int which = _i;
    const mlt_model_desc_t d = test_desc(which, 9);
    mlt_model_t *one = new_model(&d), *many = new_model(&d);
    mlt_model_limit_chunk(one, 2);
    mlt_model_limit_chunk(many, 2);
    tensors_t t = tensors_new(one), u = tensors_new(one);
    tensors_init(one, &t, 21);
    batch_t b = batch_new(&d, 9, 8);
    for (uint32_t threads = 2; threads <= 3; threads++) {
        ck_assert_int_eq(mlt_model_set_threads(many, threads), 0);
        ck_assert_uint_eq(mlt_model_threads(many), threads);
        const uint32_t batches[] = {9, 7, 2};
        for (size_t k = 0; k < sizeof batches / sizeof batches[0]; k++) {
            const uint32_t n = batches[k];
            float l1, l2;
            uint32_t c1 = 0, c2 = 0;
            ck_assert_int_eq(mlt_model_step(one, t.f, t.gf, b.xf, b.y, n, &l1, &c1), 0);
            for (uint32_t i = 0; i < u.n; i++) /* slice 0 must overwrite, not add */
                for (uint64_t j = 0; j < mlt_model_param_size(one, i); j++)
                    u.gf[i][j] = 1e3f;
            ck_assert_int_eq(mlt_model_step(many, t.f, u.gf, b.xf, b.y, n, &l2, &c2), 0);
            ck_assert_msg(fabsf(l1 - l2) <= 1e-6f * fmaxf(1, l1), "%u threads, batch %u: loss %g vs %g",
                          threads, n, (double)l2, (double)l1);
            ck_assert_uint_eq(c1, c2);
            for (uint32_t i = 0; i < t.n; i++)
                for (uint64_t j = 0; j < mlt_model_param_size(one, i); j++)
                    ck_assert_msg(fabsf(t.gf[i][j] - u.gf[i][j]) <= 1e-5f * fmaxf(0.1f, fabsf(t.gf[i][j])),
                                  "%u threads, batch %u, tensor %u [%llu]: %g vs %g", threads, n, i,
                                  (unsigned long long)j, (double)u.gf[i][j], (double)t.gf[i][j]);
        }
        double e1, e2;
        uint32_t c1 = 0, c2 = 0;
        ck_assert_int_eq(mlt_model_eval(one, t.f, b.xf, b.y, 9, &e1, &c1), 0);
        ck_assert_int_eq(mlt_model_eval(many, t.f, b.xf, b.y, 9, &e2, &c2), 0);
        ck_assert_msg(fabs(e1 - e2) <= 1e-6 * fmax(1, e1), "eval %g vs %g", e2, e1);
        ck_assert_uint_eq(c1, c2);
    }
    ck_assert_int_eq(mlt_model_set_threads(many, 1), 0);
    ck_assert_uint_eq(mlt_model_threads(many), 1);
    batch_free(&b);
    tensors_free(&t);
    tensors_free(&u);
    mlt_model_destroy(&one);
    mlt_model_destroy(&many);
}
END_TEST

/* What the gradient hook saw: the order of its calls and, at each, a copy
 * of that tensor's gradient as it was then. */
typedef struct hook_log {
    const mlt_model_t *m;
    float *const *g;
    uint32_t n, order[64];
    float *seen[64];
} hook_log_t;

static void hook_copy(void *ctx, uint32_t i)
{
    hook_log_t *h = ctx;
    ck_assert_uint_lt(h->n, 64);
    size_t bytes = mlt_model_param_size(h->m, i) * sizeof(float);
    h->seen[h->n] = xcalloc(1, bytes);
    memcpy(h->seen[h->n], h->g[i], bytes);
    h->order[h->n++] = i;
}

START_TEST(test_grad_hook)
{
    /* the hook fires once per tensor, the last layer's first (the backward
     * order: its tensors have the higher indices), and what it sees is the
     * step's final gradient: a worker may send it at once */
    const int which = _i % N_MODELS;
    const mlt_model_desc_t d = test_desc(which, 8);
    mlt_model_t *m = new_model(&d);
    ck_assert_int_eq(mlt_model_set_threads(m, _i < N_MODELS ? 1 : 2), 0); /* batch slices */
    tensors_t t = tensors_new(m);
    tensors_init(m, &t, 3);
    batch_t b = batch_new(&d, 8, 9);
    hook_log_t h = {.m = m, .g = t.gf};
    mlt_model_on_grad(m, hook_copy, &h);
    float loss;
    if (d.type == MLT_MODEL_MF)
        ck_assert_int_eq(mlt_model_step_mf(m, t.f, t.gf, b.users, b.items, b.rf, 8, &loss), 0);
    else
        ck_assert_int_eq(mlt_model_step(m, t.f, t.gf, b.xf, b.y, 8, &loss, NULL), 0);
    ck_assert_uint_eq(h.n, t.n);
    for (uint32_t k = 0; k < h.n; k++) {
        uint32_t i = h.order[k];
        if (d.type != MLT_MODEL_MF && k + 2 < h.n) /* layer by layer, from the output */
            ck_assert_msg(h.order[k + 2] < i, "call %u: tensor %u after %u", k + 2,
                          h.order[k + 2], i);
        for (uint32_t j = 0; j < k; j++)
            ck_assert_uint_ne(h.order[j], i);
        ck_assert_msg(memcmp(h.seen[k], t.gf[i], mlt_model_param_size(m, i) * sizeof(float)) == 0,
                      "tensor %u changed after the hook saw it", i);
        free(h.seen[k]);
    }
    /* no hook: no calls */
    mlt_model_on_grad(m, NULL, NULL);
    h.n = 0;
    if (d.type != MLT_MODEL_MF) {
        ck_assert_int_eq(mlt_model_step(m, t.f, t.gf, b.xf, b.y, 8, &loss, NULL), 0);
        ck_assert_uint_eq(h.n, 0);
    }
    batch_free(&b);
    tensors_free(&t);
    mlt_model_destroy(&m);
}
END_TEST

static Suite *model_suite(void)
{
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("gradcheck");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_gradcheck, 0, N_MODELS);
    tcase_add_loop_test(tc, test_gradcheck_chunked, 0, 3);
    tcase_add_loop_test(tc, test_forward_matches_reference, 0, M_MF);
    tcase_add_loop_test(tc, test_float_matches_double, 0, N_MODELS);
    suite_add_tcase(s, tc);

    tc = tcase_create("train");
    tcase_add_loop_test(tc, test_sgd_reduces_loss, 0, N_MODELS);
    tcase_add_loop_test(tc, test_eval_matches_step, 0, N_MODELS);
    tcase_add_loop_test(tc, test_step_is_repeatable, 0, M_MF);
    tcase_add_loop_test(tc, test_grad_hook, 0, 2 * N_MODELS); /* 1 thread, then 2 */
    tcase_add_loop_test(tc, test_threads_match_one, 0, M_MF);
    suite_add_tcase(s, tc);

    cm_desc_tcases(s);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(model_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
