/* check_gpu.c - Check suite for the CUDA backend (kernels/gpu.h) and the
 * models on it (worker/model_gpu.h), against their CPU references
 * (kernels/cpu.h, kernels/optim.h, worker/model.h).
 *
 * Every op of gpu.h runs on seeded random inputs of several sizes (a tiny
 * one, odd ones that are no multiple of 32, a moderately large one) next to
 * its CPU twin on the same inputs, and the two must agree as gpu.h promises;
 * each check states its tolerance where it is made:
 *   bit for bit   bias_add, bias_relu, relu_backward, maxpool (values and
 *                 argmax, ties and NaN), maxpool_backward, nchw_to_nhwc, the
 *                 gathers;
 *   a few ulps    optim_apply, every rule, several steps with their state;
 *   rounding      gemm, the convolutions, bias_grad, softmax_xent, mf_grad,
 *                 mf_sse: sums in another order (sum_tol, or 1e-4 relative).
 * A NaN never passes for a number (close_enough), and NaN inputs must come out
 * NaN where the CPU's do. A CUDA graph of copies and ops replays on the memory
 * of the moment. The GPU models give the CPU models' loss, right answers and
 * every gradient, eagerly and replayed from a graph (check_gpu_model.c; pooling,
 * gathers, the rules and graphs are in check_gpu_ops.c; the helpers the files
 * share are in check_gpu_util.c).
 *
 * Without a usable GPU (the build machines: no driver) the program prints why
 * and exits 77, which meson counts as skipped. CUDA does not survive fork(),
 * so the tests run in this process (CK_NOFORK) on the one context main()
 * makes, TF32 off; a checked fixture frees whatever a test allocated, also
 * when a failed assertion cut it short. */
#include "check_gpu_util.h"

#include "kernels/cpu.h"
#include "kernels/optim.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- context, memory, limits ---- */

START_TEST(test_context_memory_and_copies)
{
    ck_assert(mlt_gpu_built());
    ck_assert_str_ne(mlt_gpu_device_name(gpu), "");
    ck_assert_int_gt(mlt_gpu_device_cc(gpu), 0);
    mlt_gpu_set_tf32(gpu, true);
    ck_assert(mlt_gpu_tf32(gpu));
    mlt_gpu_set_tf32(gpu, false);
    ck_assert(!mlt_gpu_tf32(gpu));

    /* 0 bytes is a valid allocation; freeing NULL does nothing */
    dnew(0);
    mlt_gpu_free(gpu, NULL);
    mlt_gpu_host_free(gpu, NULL);

    /* host -> device -> device -> pinned host, an odd number of floats */
    const size_t n = 1000003;
    reseed(1);
    float *h = frand(n, -1, 1), *pin = pinned_new(n * sizeof *pin);
    float *d_a = dputf(h, n), *d_b = dnew(n * sizeof *d_b);
    GPU_OK(mlt_gpu_copy(gpu, d_b, d_a, n * sizeof *d_b));
    dget(pin, d_b, n * sizeof *pin);
    ck_assert(memcmp(pin, h, n * sizeof *pin) == 0);

    /* fill sets floats; zero sets bytes (7: a float and 3/4 of the next) */
    GPU_OK(mlt_gpu_fill(gpu, d_b, n, -2.5f));
    GPU_OK(mlt_gpu_zero(gpu, d_a, 7));
    float *filled = dgetf(d_b, n), *zeroed = dgetf(d_a, n);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(filled[i] == -2.5f, "fill[%zu] = %g", i, (double)filled[i]);
    memset(h, 0, 7);
    ck_assert(memcmp(zeroed, h, n * sizeof *h) == 0);

    /* zero-length copies are no-ops */
    GPU_OK(mlt_gpu_upload(gpu, d_a, h, 0));
    GPU_OK(mlt_gpu_download(gpu, h, d_a, 0));
    GPU_OK(mlt_gpu_copy(gpu, d_a, d_b, 0));
    GPU_OK(mlt_gpu_sync(gpu));
}
END_TEST

START_TEST(test_library_limits_return_einval)
{
    /* sizes past the int dimensions of cuBLAS/cuDNN, and the documented
     * -EINVALs: checked before any pointer is used */
    const size_t big = (size_t)INT_MAX + 1;
    ck_assert_int_eq(mlt_gpu_gemm(gpu, false, false, big, 1, 1, 1, NULL, 1, NULL, 1, 0, NULL, 1),
                     -EINVAL);
    ck_assert_str_ne(mlt_gpu_error(gpu), "");
    ck_assert_int_eq(mlt_gpu_gemm(gpu, false, false, 1, 1, 1, 1, NULL, big, NULL, 1, 0, NULL, 1),
                     -EINVAL);
    ck_assert_int_eq(mlt_gpu_bias_grad(gpu, NULL, NULL, big, 1, false, NULL), -EINVAL);
    ck_assert_int_eq(mlt_gpu_softmax_xent(gpu, NULL, NULL, 1, 1025, NULL, NULL, NULL, false),
                     -EINVAL);
    char err[256] = "";
    ck_assert_ptr_null(mlt_gpu_conv_new(gpu, 1, 65536, 32768, 1, 3, 1, true, err, sizeof err));
    ck_assert_str_ne(err, "");

    /* an invalid optimizer rule: -EINVAL, nothing changed */
    const float w0[3] = {1, 2, 3}, g0[3] = {1, 1, 1};
    float *d_w = dputf(w0, 3), *d_g = dputf(g0, 3), *d_s = dputf(g0, 3);
    const mlt_hyper_t h = mlt_hyper_default();
    ck_assert_int_eq(mlt_gpu_optim_apply(gpu, MLT_RULE_COUNT_, &h, d_w, d_s, d_g, 3, 1), -EINVAL);
    ck_assert_int_eq(mlt_gpu_optim_apply(gpu, (mlt_rule_t)-1, &h, d_w, d_s, d_g, 3, 1), -EINVAL);
    /* the schedule-free rules keep host scalars: refused, nothing changed */
    ck_assert_int_eq(mlt_gpu_optim_apply(gpu, MLT_RULE_SF_SGD, &h, d_w, d_s, d_g, 3, 1), -EINVAL);
    ck_assert_int_eq(mlt_gpu_optim_apply(gpu, MLT_RULE_SF_ADAMW, &h, d_w, d_s, d_g, 3, 1), -EINVAL);
    expect_bits(dgetf(d_w, 3), w0, 3, "w after an invalid rule");
}
END_TEST

/* ---- dense layers ---- */

START_TEST(test_gemm_matches_cpu)
{
    /* m, n, k: scalars, odd sizes, k 1, a moderately large product */
    static const size_t shapes[][3] = {
        {1, 1, 1}, {7, 5, 3}, {33, 17, 65}, {16, 37, 1}, {100, 129, 257}};
    /* alpha, beta: plain, both scaled, beta 0 over a C full of NaN (ignored) */
    static const float scal[][2] = {{1.0f, 0.0f}, {0.5f, -1.5f}, {-2.0f, 1.0f}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int t = 0; t < 4; t++)
            for (size_t ci = 0; ci < sizeof scal / sizeof scal[0]; ci++) {
                const size_t m = shapes[si][0], n = shapes[si][1], k = shapes[si][2];
                const bool ta = t & 1, tb = t & 2;
                const float alpha = scal[ci][0], beta = scal[ci][1];
                /* padded leading dimensions: strides honoured, padding of C untouched */
                const size_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2, ldc = n + 1;
                const size_t na = (ta ? k : m) * lda, nb = (tb ? n : k) * ldb, nc = m * ldc;
                reseed(100 + si * 16 + (size_t)t * 4 + ci);
                float *a = frand(na, -1, 1), *b = frand(nb, -1, 1);
                float *c = beta == 0.0f ? ffill(nc, NAN) : frand(nc, -1, 1);
                float *d_a = dputf(a, na), *d_b = dputf(b, nb), *d_c = dputf(c, nc);
                mlt_cpu_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
                GPU_OK(
                    mlt_gpu_gemm(gpu, ta, tb, m, n, k, alpha, d_a, lda, d_b, ldb, beta, d_c, ldc));
                char what[96];
                snprintf(what, sizeof what, "gemm %zux%zux%zu%s%s alpha %g beta %g", m, n, k,
                         ta ? " A^T" : "", tb ? " B^T" : "", (double)alpha, (double)beta);
                /* k products |alpha a b| <= 2, plus |beta c| <= 1.5 */
                expect_close(dgetf(d_c, nc), c, nc, sum_tol(k + 1, 2.0), what);
                release_all();
            }
}
END_TEST

START_TEST(test_bias_relu_bit_identical)
{
    /* rows x cols: a scalar, odd widths, a moderately large matrix */
    static const size_t shapes[][2] = {{1, 1}, {5, 7}, {3, 33}, {129, 100}, {1000, 37}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int relu = 0; relu < 2; relu++) {
            const size_t rows = shapes[si][0], cols = shapes[si][1], n = rows * cols;
            reseed(200 + si);
            float *y = frand(n, -1, 1), *bias = frand(cols, -1, 1);
            /* the ReLU's kink (y + b exactly 0), a -0, NaN in y and in the bias */
            y[0] = -bias[0];
            y[n - 1] = -0.0f;
            if (n > 2)
                y[n / 2] = NAN;
            if (cols > 2)
                bias[cols - 1] = NAN;
            float *d_y = dputf(y, n), *d_b = dputf(bias, cols);
            /* bit for bit: the same single addition and comparison per element */
            if (relu) {
                mlt_cpu_bias_relu(y, bias, rows, cols);
                GPU_OK(mlt_gpu_bias_relu(gpu, d_y, d_b, rows, cols));
            } else {
                mlt_cpu_bias_add(y, bias, rows, cols);
                GPU_OK(mlt_gpu_bias_add(gpu, d_y, d_b, rows, cols));
            }
            expect_bits(dgetf(d_y, n), y, n, relu ? "bias_relu" : "bias_add");
            release_all();
        }
}
END_TEST

START_TEST(test_relu_backward_bit_identical)
{
    static const size_t sizes[] = {1, 7, 33, 1000, 100003};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        const size_t n = sizes[si];
        reseed(300 + si);
        float *dy = frand(n, -1, 1), *y = frand(n, -1, 1);
        for (size_t i = 0; i < n; i += 5)
            y[i] = 0.0f; /* ReLU's zeros: no gradient */
        y[n - 1] = -0.0f;
        if (n > 2) {
            y[1] = NAN;      /* a NaN output passes its gradient on */
            dy[n - 2] = NAN; /* a NaN gradient stays where it passes */
        }
        float *d_dy = dputf(dy, n), *d_y = dputf(y, n);
        mlt_cpu_relu_backward(dy, y, n);
        GPU_OK(mlt_gpu_relu_backward(gpu, d_dy, d_y, n));
        /* bit for bit: a comparison and a select */
        expect_bits(dgetf(d_dy, n), dy, n, "relu_backward");
        release_all();
    }
}
END_TEST

START_TEST(test_bias_grad_matches_cpu)
{
    /* rows x cols: a scalar, odd sizes, many rows (a convolution's n*h*w) */
    static const size_t shapes[][2] = {{1, 1}, {7, 5}, {37, 33}, {1000, 65}, {12544, 8}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const size_t rows = shapes[si][0], cols = shapes[si][1], n = rows * cols;
        reseed(400 + si);
        float *dy = frand(n, -1, 1), *db = ffill(cols, NAN);
        float *d_dy = dputf(dy, n), *d_db = dputf(db, cols), *d_ones = dnew(rows * sizeof(float));
        GPU_OK(mlt_gpu_fill(gpu, d_ones, rows, 1.0f));
        /* column sums of rows terms |dy| <= 1; overwriting ignores the NaN db held */
        const double tol = sum_tol(rows, 1.0);
        mlt_cpu_bias_grad(db, dy, rows, cols, false);
        GPU_OK(mlt_gpu_bias_grad(gpu, d_db, d_dy, rows, cols, false, d_ones));
        expect_close(dgetf(d_db, cols), db, cols, tol, "bias_grad");
        /* accumulate: += the sums, onto a db that already agreed within tol */
        mlt_cpu_bias_grad(db, dy, rows, cols, true);
        GPU_OK(mlt_gpu_bias_grad(gpu, d_db, d_dy, rows, cols, true, d_ones));
        expect_close(dgetf(d_db, cols), db, cols, 2 * tol, "bias_grad accumulate");
        release_all();
    }
}
END_TEST

/* ---- softmax cross-entropy ---- */

START_TEST(test_softmax_xent_matches_cpu)
{
    /* rows x classes: one row of two, odd sizes, the largest class count */
    static const size_t shapes[][2] = {{1, 2},    {7, 3},      {37, 10},
                                       {333, 37}, {1000, 256}, {64, 1024}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const size_t rows = shapes[si][0], classes = shapes[si][1], n = rows * classes;
        reseed(500 + si);
        float *z = frand(n, -4, 4), *dz = hnew(n * sizeof *dz);
        uint8_t *y = hnew(rows);
        for (size_t r = 0; r < rows; r++)
            y[r] = (uint8_t)urand(0, (double)classes);
        /* exact ties: row 0 all equal with label 0 (right: the first maximum
         * counts), row 1 all equal with label 1 (never right) */
        for (size_t j = 0; j < classes; j++)
            z[j] = 0.5f;
        y[0] = 0;
        if (rows > 1) {
            for (size_t j = 0; j < classes; j++)
                z[classes + j] = 0.5f;
            y[1] = 1;
        }
        uint32_t want_right = 0;
        const double want = mlt_cpu_softmax_xent(z, y, rows, classes, dz, &want_right) * rows;

        /* outputs start as garbage: they are overwritten */
        const double nan_sum = NAN;
        const uint32_t junk = 0xDEADBEEFu;
        float *d_z = dputf(z, n), *d_dz = dputf(ffill(n, NAN), n);
        uint8_t *d_y = dput(y, rows);
        double *d_loss = dput(&nan_sum, sizeof nan_sum);
        uint32_t *d_right = dput(&junk, sizeof junk);
        double got;
        uint32_t got_right;
        /* the loss SUM: per-row losses of a few units whose expf/logf differ
         * in the last bits, summed in double: 1e-4 relative */
        const double loss_tol = 1e-4 * fmax(1.0, fabs(want));
        /* dz: probabilities from expf within a few ulps, divided by rows:
         * 1e-4 of its largest magnitude (about 1/rows) */
        const double dz_tol = 1e-4 * max_abs(dz, n);

        GPU_OK(mlt_gpu_softmax_xent(gpu, d_z, d_y, rows, classes, d_dz, d_loss, d_right, false));
        dget(&got, d_loss, sizeof got);
        dget(&got_right, d_right, sizeof got_right);
        ck_assert_msg(close_enough(got, want, loss_tol), "%zux%zu: loss sum GPU %.17g, CPU %.17g",
                      rows, classes, got, want);
        /* the right answers exactly: the same comparisons on the same floats */
        ck_assert_uint_eq(got_right, want_right);
        expect_close(dgetf(d_dz, n), dz, n, dz_tol, "softmax_xent dz");

        /* in place (dz = z), and without dz */
        float *d_zz = dputf(z, n);
        GPU_OK(mlt_gpu_softmax_xent(gpu, d_zz, d_y, rows, classes, d_zz, d_loss, d_right, false));
        expect_close(dgetf(d_zz, n), dz, n, dz_tol, "softmax_xent dz in place");
        GPU_OK(mlt_gpu_softmax_xent(gpu, d_z, d_y, rows, classes, NULL, d_loss, d_right, false));
        dget(&got, d_loss, sizeof got);
        dget(&got_right, d_right, sizeof got_right);
        ck_assert_msg(close_enough(got, want, loss_tol), "no dz: loss %.17g, CPU %.17g", got, want);
        ck_assert_uint_eq(got_right, want_right);

        /* accumulate: a second batch adds to both */
        GPU_OK(mlt_gpu_softmax_xent(gpu, d_z, d_y, rows, classes, NULL, d_loss, d_right, true));
        dget(&got, d_loss, sizeof got);
        dget(&got_right, d_right, sizeof got_right);
        ck_assert_msg(close_enough(got, 2 * want, 2 * loss_tol),
                      "accumulated loss %.17g, CPU %.17g", got, 2 * want);
        ck_assert_uint_eq(got_right, 2 * want_right);
        release_all();
    }
}
END_TEST

START_TEST(test_softmax_xent_bad_label_gives_nan)
{
    /* a label >= classes (a precondition violation): the loss is NaN, that
     * row's dz NaN, the other rows as the CPU's, nothing past dz written */
    static const size_t classes_list[] = {5, 10};
    static const uint8_t bad_label[] = {5, 255};
    for (size_t ci = 0; ci < 2; ci++) {
        const size_t rows = 3, classes = classes_list[ci], n = rows * classes, guard = 16;
        reseed(600 + ci);
        float *z = frand(n, -4, 4), *dz = hnew(n * sizeof *dz);
        const uint8_t y[3] = {1, bad_label[ci], 3}, y_ok[3] = {1, 0, 3};
        /* rows 0 and 2 do not depend on row 1's label */
        mlt_cpu_softmax_xent(z, y_ok, rows, classes, dz, NULL);
        uint32_t right0 = 0, right2 = 0;
        mlt_cpu_softmax_xent(z, y, 1, classes, NULL, &right0);
        mlt_cpu_softmax_xent(z + 2 * classes, y + 2, 1, classes, NULL, &right2);

        float *d_z = dputf(z, n), *d_dz = dputf(ffill(n + guard, 12345.0f), n + guard);
        uint8_t *d_y = dput(y, rows);
        double *d_loss = dnew(sizeof(double)), got;
        uint32_t *d_right = dnew(sizeof(uint32_t)), got_right;
        GPU_OK(mlt_gpu_softmax_xent(gpu, d_z, d_y, rows, classes, d_dz, d_loss, d_right, false));
        dget(&got, d_loss, sizeof got);
        dget(&got_right, d_right, sizeof got_right);
        ck_assert_msg(isnan(got), "label %u of %zu classes: loss %g", bad_label[ci], classes, got);
        ck_assert_uint_eq(got_right, right0 + right2);
        const float *g = dgetf(d_dz, n + guard);
        /* as in test_softmax_xent_matches_cpu: 1e-4 of the largest |dz| */
        const double tol = 1e-4 * max_abs(dz, n);
        expect_close(g, dz, classes, tol, "dz row 0");
        expect_close(g + 2 * classes, dz + 2 * classes, classes, tol, "dz row 2");
        for (size_t j = 0; j < classes; j++)
            ck_assert_msg(isnan(g[classes + j]), "dz row 1 [%zu] = %g", j, (double)g[classes + j]);
        for (size_t j = 0; j < guard; j++)
            ck_assert_msg(g[n + j] == 12345.0f, "written past dz: [%zu] = %g", n + j,
                          (double)g[n + j]);
        release_all();
    }
}
END_TEST

/* ---- convolution ---- */

typedef struct conv_geom {
    size_t n, h, w, c, k, oc; /* images, height, width, channels, kernel, output channels */
} conv_geom_t;

static const conv_geom_t conv_geoms[] = {
    {1, 1, 1, 1, 1, 1},    /* tiny: one pixel, k 1 */
    {2, 5, 3, 1, 3, 4},    /* one input channel, odd sizes */
    {3, 7, 6, 3, 5, 8},    /* three channels, k 5 */
    {2, 4, 4, 3, 5, 3},    /* k 5 on 4x4: most taps in the padding */
    {2, 9, 11, 17, 3, 5},  /* channel counts no multiple of 4 */
    {1, 6, 5, 8, 1, 16},   /* k 1 */
    {16, 28, 28, 1, 5, 8}, /* moderately large: an MNIST first layer */
    {8, 14, 14, 8, 3, 16}, /* and a second one */
};
#define N_CONV_GEOMS ((int)(sizeof conv_geoms / sizeof conv_geoms[0]))

/* The CPU reference by im2col + GEMM (cpu.h): y = col W^T, dx = col2im(dy W),
 * dw = dy^T col. */
static void conv_ref(const conv_geom_t *G, const float *x, const float *wt, const float *dy,
                     float *y, float *dx, float *dw)
{
    const size_t rows = G->n * G->h * G->w, kkc = G->k * G->k * G->c;
    float *col = hnew(rows * kkc * sizeof *col), *dcol = hnew(rows * kkc * sizeof *dcol);
    mlt_cpu_im2col(x, G->n, G->h, G->w, G->c, G->k, col);
    mlt_cpu_gemm(false, true, rows, G->oc, kkc, 1.0f, col, kkc, wt, kkc, 0.0f, y, G->oc);
    mlt_cpu_gemm(false, false, rows, kkc, G->oc, 1.0f, dy, G->oc, wt, kkc, 0.0f, dcol, kkc);
    mlt_cpu_col2im(dcol, G->n, G->h, G->w, G->c, G->k, dx);
    mlt_cpu_gemm(true, false, G->oc, kkc, rows, 1.0f, dy, G->oc, col, kkc, 0.0f, dw, kkc);
}

static mlt_gpu_conv_t *conv_plan(const conv_geom_t *G, bool need_dx)
{
    char err[256];
    mlt_gpu_conv_t *p =
        mlt_gpu_conv_new(gpu, G->n, G->h, G->w, G->c, G->k, G->oc, need_dx, err, sizeof err);
    ck_assert_msg(p != NULL, "mlt_gpu_conv_new: %s", err);
    track(R_CONV, p);
    ck_assert_str_ne(mlt_gpu_conv_describe(p), "");
    return p;
}

START_TEST(test_conv_matches_im2col)
{
    const conv_geom_t *G = &conv_geoms[_i];
    const size_t rows = G->n * G->h * G->w, kkc = G->k * G->k * G->c;
    const size_t nx = rows * G->c, ny = rows * G->oc, nw = G->oc * kkc;
    reseed(700 + (uint64_t)_i);
    float *x = frand(nx, -1, 1), *wt = frand(nw, -1, 1), *dy = frand(ny, -1, 1);
    float *y = hnew(ny * sizeof *y), *dx = hnew(nx * sizeof *dx), *dw = hnew(nw * sizeof *dw);
    conv_ref(G, x, wt, dy, y, dx, dw);

    mlt_gpu_conv_t *p = conv_plan(G, true);
    float *d_x = dputf(x, nx), *d_w = dputf(wt, nw), *d_dy = dputf(dy, ny);
    /* the outputs start as NaN: overwritten, never read */
    float *d_y = dputf(ffill(ny, NAN), ny), *d_dx = dputf(ffill(nx, NAN), nx);
    float *d_dw = dputf(ffill(nw, NAN), nw);
    GPU_OK(mlt_gpu_conv_forward(gpu, p, d_x, d_w, d_y));
    GPU_OK(mlt_gpu_conv_backward_data(gpu, p, d_dy, d_w, d_dx));
    GPU_OK(mlt_gpu_conv_backward_filter(gpu, p, d_x, d_dy, d_dw, false));
    /* each output a sum of k*k*c (forward), k*k*oc (input gradient) or
     * n*h*w (weight gradient) products of magnitude <= 1 */
    expect_close(dgetf(d_y, ny), y, ny, sum_tol(kkc, 1.0), "conv forward");
    expect_close(dgetf(d_dx, nx), dx, nx, sum_tol(G->k * G->k * G->oc, 1.0), "conv backward_data");
    expect_close(dgetf(d_dw, nw), dw, nw, sum_tol(rows, 1.0), "conv backward_filter");

    /* accumulate: dw += the gradient (twice the first, within twice the tolerance) */
    GPU_OK(mlt_gpu_conv_backward_filter(gpu, p, d_x, d_dy, d_dw, true));
    for (size_t i = 0; i < nw; i++)
        dw[i] *= 2;
    expect_close(dgetf(d_dw, nw), dw, nw, 2 * sum_tol(rows, 1.0),
                 "conv backward_filter accumulate");
}
END_TEST

START_TEST(test_conv_plan_without_dx)
{
    /* need_dx false: backward_data is -EINVAL and writes nothing; the other
     * two directions work as with it */
    const conv_geom_t G = {2, 5, 3, 3, 3, 4};
    const size_t rows = G.n * G.h * G.w, kkc = G.k * G.k * G.c;
    const size_t nx = rows * G.c, ny = rows * G.oc, nw = G.oc * kkc;
    reseed(750);
    float *x = frand(nx, -1, 1), *wt = frand(nw, -1, 1), *dy = frand(ny, -1, 1);
    float *y = hnew(ny * sizeof *y), *dx = hnew(nx * sizeof *dx), *dw = hnew(nw * sizeof *dw);
    conv_ref(&G, x, wt, dy, y, dx, dw);

    mlt_gpu_conv_t *p = conv_plan(&G, false);
    float *d_x = dputf(x, nx), *d_w = dputf(wt, nw), *d_dy = dputf(dy, ny);
    float *d_y = dnew(ny * sizeof *d_y), *d_dx = dputf(ffill(nx, NAN), nx);
    float *d_dw = dnew(nw * sizeof *d_dw);
    ck_assert_int_eq(mlt_gpu_conv_backward_data(gpu, p, d_dy, d_w, d_dx), -EINVAL);
    ck_assert_str_ne(mlt_gpu_error(gpu), "");
    const float *after = dgetf(d_dx, nx);
    for (size_t i = 0; i < nx; i++)
        ck_assert_msg(isnan(after[i]), "dx[%zu] written by a refused backward_data", i);
    GPU_OK(mlt_gpu_conv_forward(gpu, p, d_x, d_w, d_y));
    GPU_OK(mlt_gpu_conv_backward_filter(gpu, p, d_x, d_dy, d_dw, false));
    /* tolerances as in test_conv_matches_im2col */
    expect_close(dgetf(d_y, ny), y, ny, sum_tol(kkc, 1.0), "conv forward (no dx)");
    expect_close(dgetf(d_dw, nw), dw, nw, sum_tol(rows, 1.0), "conv backward_filter (no dx)");
}
END_TEST

/* ---- matrix factorisation ---- */

typedef struct mf_geom {
    size_t rank, n_users, n_items, batch;
} mf_geom_t;

static const mf_geom_t mf_geoms[] = {
    {1, 3, 2, 5},           /* tiny, many collisions */
    {7, 50, 40, 333},       /* rank under a warp */
    {33, 100, 80, 1000},    /* over a warp, no multiple of 32 */
    {64, 2000, 1700, 4096}, /* moderately large */
};
#define N_MF_GEOMS ((int)(sizeof mf_geoms / sizeof mf_geoms[0]))

static void ratings_upload(ratings_t *b, size_t n)
{
    b->d_users = dput(b->users, n * sizeof *b->users);
    b->d_items = dput(b->items, n * sizeof *b->items);
    b->d_r = dputf(b->r, n);
}

/* n random ratings of G's tables (repeated users and items: collisions). */
static ratings_t ratings_new(const mf_geom_t *G, size_t n)
{
    ratings_t b = {.users = hnew(n * sizeof *b.users), .items = hnew(n * sizeof *b.items)};
    for (size_t i = 0; i < n; i++) {
        b.users[i] = (uint32_t)urand(0, (double)G->n_users);
        b.items[i] = (uint32_t)urand(0, (double)G->n_items);
    }
    b.r = frand(n, -1, 1);
    ratings_upload(&b, n);
    return b;
}

START_TEST(test_mf_grad_matches_cpu)
{
    const mf_geom_t *G = &mf_geoms[_i];
    const size_t nu = G->n_users * G->rank, nv = G->n_items * G->rank;
    const float l2 = 0.05f, scale = 0.5f;
    reseed(1000 + (uint64_t)_i);
    float *U = frand(nu, -0.5, 0.5), *V = frand(nv, -0.5, 0.5);
    ratings_t b = ratings_new(G, G->batch);
    /* the tables start non-zero: the op accumulates into them */
    float *dU = frand(nu, -0.1, 0.1), *dV = frand(nv, -0.1, 0.1);
    float *d_U = dputf(U, nu), *d_V = dputf(V, nv), *d_dU = dputf(dU, nu), *d_dV = dputf(dV, nv);
    const double nan_sum = NAN;
    double *d_sse = dput(&nan_sum, sizeof nan_sum), got;

    const double want =
        mlt_cpu_mf_grad(U, V, G->rank, b.users, b.items, b.r, G->batch, l2, scale, dU, dV);
    GPU_OK(mlt_gpu_mf_grad(gpu, d_U, d_V, G->rank, G->n_users, G->n_items, b.d_users, b.d_items,
                           b.d_r, G->batch, l2, scale, d_dU, d_dV, d_sse));
    dget(&got, d_sse, sizeof got);
    /* the sse (overwritten): positive e^2 whose dot products are summed in
     * another order (warp shuffles): 1e-4 relative */
    ck_assert_msg(close_enough(got, want, 1e-4 * want), "mf_grad sse GPU %.17g, CPU %.17g", got,
                  want);
    /* each row: its start plus a rating's terms per occurrence, added in the
     * order the atomics land: 1e-4 of the table's largest magnitude */
    expect_close(dgetf(d_dU, nu), dU, nu, 1e-4 * max_abs(dU, nu), "mf_grad dU");
    expect_close(dgetf(d_dV, nv), dV, nv, 1e-4 * max_abs(dV, nv), "mf_grad dV");

    /* mf_sse: overwritten (the NaN is not read), or added to */
    const double want_sse = mlt_cpu_mf_sse(U, V, G->rank, b.users, b.items, b.r, G->batch);
    GPU_OK(mlt_gpu_upload(gpu, d_sse, &nan_sum, sizeof nan_sum));
    GPU_OK(mlt_gpu_mf_sse(gpu, d_U, d_V, G->rank, G->n_users, G->n_items, b.d_users, b.d_items,
                          b.d_r, G->batch, d_sse, false));
    dget(&got, d_sse, sizeof got);
    ck_assert_msg(close_enough(got, want_sse, 1e-4 * want_sse), "mf_sse GPU %.17g, CPU %.17g", got,
                  want_sse);
    GPU_OK(mlt_gpu_mf_sse(gpu, d_U, d_V, G->rank, G->n_users, G->n_items, b.d_users, b.d_items,
                          b.d_r, G->batch, d_sse, true));
    dget(&got, d_sse, sizeof got);
    ck_assert_msg(close_enough(got, 2 * want_sse, 2e-4 * want_sse),
                  "mf_sse accumulated GPU %.17g, CPU %.17g", got, 2 * want_sse);
}
END_TEST

START_TEST(test_mf_index_out_of_range_gives_nan)
{
    /* an index out of range (a precondition violation): that rating is
     * skipped, the sse is NaN; the tables are the CPU's without it */
    const mf_geom_t G = {5, 6, 4, 9};
    const size_t nu = G.n_users * G.rank, nv = G.n_items * G.rank, bad = 3;
    const float l2 = 0.05f, scale = 0.25f;
    for (int which = 0; which < 2; which++) {
        reseed(1100 + (uint64_t)which);
        float *U = frand(nu, -0.5, 0.5), *V = frand(nv, -0.5, 0.5);
        ratings_t b = ratings_new(&G, G.batch);
        ratings_t ok = {.users = hnew(G.batch * sizeof(uint32_t)),
                        .items = hnew(G.batch * sizeof(uint32_t)),
                        .r = hnew(G.batch * sizeof(float))};
        for (size_t i = 0, j = 0; i < G.batch; i++)
            if (i != bad) {
                ok.users[j] = b.users[i];
                ok.items[j] = b.items[i];
                ok.r[j++] = b.r[i];
            }
        float *dU = ffill(nu, 0.0f), *dV = ffill(nv, 0.0f);
        mlt_cpu_mf_grad(U, V, G.rank, ok.users, ok.items, ok.r, G.batch - 1, l2, scale, dU, dV);
        if (which == 0)
            b.users[bad] = (uint32_t)G.n_users;
        else
            b.items[bad] = (uint32_t)G.n_items + 7;
        ratings_upload(&b, G.batch);
        float *d_U = dputf(U, nu), *d_V = dputf(V, nv);
        float *d_dU = dputf(ffill(nu, 0.0f), nu), *d_dV = dputf(ffill(nv, 0.0f), nv);
        double *d_sse = dnew(sizeof(double)), got;
        GPU_OK(mlt_gpu_mf_grad(gpu, d_U, d_V, G.rank, G.n_users, G.n_items, b.d_users, b.d_items,
                               b.d_r, G.batch, l2, scale, d_dU, d_dV, d_sse));
        dget(&got, d_sse, sizeof got);
        ck_assert_msg(isnan(got), "%s out of range: sse %g", which ? "item" : "user", got);
        /* as in test_mf_grad_matches_cpu: 1e-4 of the table's largest magnitude */
        expect_close(dgetf(d_dU, nu), dU, nu, 1e-4 * max_abs(dU, nu), "dU without the bad rating");
        expect_close(dgetf(d_dV, nv), dV, nv, 1e-4 * max_abs(dV, nv), "dV without the bad rating");
        GPU_OK(mlt_gpu_mf_sse(gpu, d_U, d_V, G.rank, G.n_users, G.n_items, b.d_users, b.d_items,
                              b.d_r, G.batch, d_sse, false));
        dget(&got, d_sse, sizeof got);
        ck_assert_msg(isnan(got), "%s out of range: mf_sse %g", which ? "item" : "user", got);
        release_all();
    }
}
END_TEST

/* ---- NaN ---- */

START_TEST(test_nan_propagates_like_cpu)
{
    reseed(1300);
    {
        /* gemm: a NaN in A poisons its row of C; a NaN in C (beta != 0) its
         * element. Tolerance as test_gemm_matches_cpu. */
        const size_t m = 5, n = 6, k = 7;
        float *a = frand(m * k, -1, 1), *b = frand(k * n, -1, 1), *c = frand(m * n, -1, 1);
        a[2 * k + 3] = NAN;
        c[1 * n + 4] = NAN;
        float *d_a = dputf(a, m * k), *d_b = dputf(b, k * n), *d_c = dputf(c, m * n);
        mlt_cpu_gemm(false, false, m, n, k, 1.0f, a, k, b, n, 0.5f, c, n);
        GPU_OK(mlt_gpu_gemm(gpu, false, false, m, n, k, 1.0f, d_a, k, d_b, n, 0.5f, d_c, n));
        ck_assert(isnan(c[2 * n]) && isnan(c[1 * n + 4]) && !isnan(c[0]));
        expect_close(dgetf(d_c, m * n), c, m * n, sum_tol(k + 1, 1.0), "gemm with NaN");
    }
    {
        /* bias_grad: a NaN in dy poisons its column's sum (tolerance as
         * test_bias_grad_matches_cpu) */
        const size_t rows = 9, cols = 4;
        float *dy = frand(rows * cols, -1, 1), *db = hnew(cols * sizeof *db);
        dy[5 * cols + 2] = NAN;
        float *d_dy = dputf(dy, rows * cols), *d_db = dnew(cols * sizeof *d_db);
        float *d_ones = dnew(rows * sizeof *d_ones);
        GPU_OK(mlt_gpu_fill(gpu, d_ones, rows, 1.0f));
        mlt_cpu_bias_grad(db, dy, rows, cols, false);
        GPU_OK(mlt_gpu_bias_grad(gpu, d_db, d_dy, rows, cols, false, d_ones));
        ck_assert(isnan(db[2]) && !isnan(db[1]));
        expect_close(dgetf(d_db, cols), db, cols, sum_tol(rows, 1.0), "bias_grad with NaN");
    }
    {
        /* softmax: a NaN logit makes the loss and its row's dz NaN, and that
         * row never right (tolerances as test_softmax_xent_matches_cpu) */
        const size_t rows = 4, classes = 5, n = rows * classes;
        float *z = frand(n, -4, 4), *dz = hnew(n * sizeof *dz);
        const uint8_t y[4] = {0, 1, 2, 3};
        z[2 * classes + 2] = NAN;
        uint32_t want_right, got_right;
        const double want = mlt_cpu_softmax_xent(z, y, rows, classes, dz, &want_right);
        float *d_z = dputf(z, n), *d_dz = dnew(n * sizeof *d_dz);
        uint8_t *d_y = dput(y, rows);
        double *d_loss = dnew(sizeof(double)), got;
        uint32_t *d_right = dnew(sizeof(uint32_t));
        GPU_OK(mlt_gpu_softmax_xent(gpu, d_z, d_y, rows, classes, d_dz, d_loss, d_right, false));
        dget(&got, d_loss, sizeof got);
        dget(&got_right, d_right, sizeof got_right);
        ck_assert(isnan(want) && isnan(dz[2 * classes]));
        ck_assert_msg(isnan(got), "NaN logit: loss %g", got);
        ck_assert_uint_eq(got_right, want_right);
        expect_close(dgetf(d_dz, n), dz, n, 1e-4 * max_abs(dz, n), "softmax dz with NaN");
    }
    {
        /* a convolution: every output the CPU makes NaN is NaN on the GPU.
         * Only this direction: an FFT or Winograd algorithm may spread a NaN
         * over its whole tile, which hides nothing. */
        const conv_geom_t G = {2, 6, 7, 3, 3, 4};
        const size_t rows = G.n * G.h * G.w, kkc = G.k * G.k * G.c;
        const size_t nx = rows * G.c, ny = rows * G.oc, nw = G.oc * kkc;
        float *x = frand(nx, -1, 1), *wt = frand(nw, -1, 1), *dy = frand(ny, -1, 1);
        x[(1 * G.h * G.w + 3 * G.w + 4) * G.c + 1] = NAN;
        float *y = hnew(ny * sizeof *y), *dx = hnew(nx * sizeof *dx), *dw = hnew(nw * sizeof *dw);
        conv_ref(&G, x, wt, dy, y, dx, dw);
        mlt_gpu_conv_t *p = conv_plan(&G, false);
        float *d_x = dputf(x, nx), *d_w = dputf(wt, nw), *d_y = dnew(ny * sizeof *d_y);
        GPU_OK(mlt_gpu_conv_forward(gpu, p, d_x, d_w, d_y));
        const float *got = dgetf(d_y, ny);
        size_t n_nan = 0;
        for (size_t i = 0; i < ny; i++)
            if (isnan(y[i])) {
                n_nan++;
                ck_assert_msg(isnan(got[i]), "conv with NaN input: y[%zu] = %g on the GPU", i,
                              (double)got[i]);
            }
        ck_assert_uint_eq(n_nan, G.k * G.k * G.oc); /* the 3x3 neighbourhood, all channels */
    }
    {
        /* mf_grad: a NaN rating makes the sse and its user's and item's
         * gradient rows NaN (tolerance as test_mf_grad_matches_cpu) */
        const mf_geom_t G = {4, 5, 3, 6};
        const size_t nu = G.n_users * G.rank, nv = G.n_items * G.rank;
        float *U = frand(nu, -0.5, 0.5), *V = frand(nv, -0.5, 0.5);
        ratings_t b = ratings_new(&G, G.batch);
        b.r[2] = NAN;
        ratings_upload(&b, G.batch);
        float *dU = ffill(nu, 0.0f), *dV = ffill(nv, 0.0f);
        float *d_U = dputf(U, nu), *d_V = dputf(V, nv), *d_dU = dputf(dU, nu),
              *d_dV = dputf(dV, nv);
        const double want =
            mlt_cpu_mf_grad(U, V, G.rank, b.users, b.items, b.r, G.batch, 0.1f, 1.0f, dU, dV);
        double *d_sse = dnew(sizeof(double)), got;
        GPU_OK(mlt_gpu_mf_grad(gpu, d_U, d_V, G.rank, G.n_users, G.n_items, b.d_users, b.d_items,
                               b.d_r, G.batch, 0.1f, 1.0f, d_dU, d_dV, d_sse));
        dget(&got, d_sse, sizeof got);
        ck_assert(isnan(want) && isnan(dU[b.users[2] * G.rank]));
        ck_assert_msg(isnan(got), "NaN rating: sse %g", got);
        expect_close(dgetf(d_dU, nu), dU, nu, 1e-4 * max_abs(dU, nu), "mf dU with NaN");
        expect_close(dgetf(d_dV, nv), dV, nv, 1e-4 * max_abs(dV, nv), "mf dV with NaN");
    }
    /* optimizer: a NaN gradient element makes its weight NaN, every rule
     * (tolerance as test_optim_matches_cpu) */
    for (int rule = 0; rule < MLT_RULE_COUNT_; rule++) {
        if (mlt_rule_schedule_free((mlt_rule_t)rule))
            continue; /* refused on the device */
        const size_t n = 9, ns = mlt_optim_state_floats((mlt_rule_t)rule, false) * n;
        mlt_hyper_t h = mlt_hyper_default();
        h.momentum = 0.9f;
        float *w = frand(n, -1, 1), *state = ffill(ns, 0.0f), *g = frand(n, -0.1, 0.1);
        g[4] = NAN;
        float *d_w = dputf(w, n), *d_s = dputf(state, ns), *d_g = dputf(g, n);
        mlt_optim_apply((mlt_rule_t)rule, &h, w, state, g, n, 1);
        GPU_OK(mlt_gpu_optim_apply(gpu, (mlt_rule_t)rule, &h, d_w, d_s, d_g, n, 1));
        ck_assert(isnan(w[4]) && !isnan(w[3]));
        expect_ulps(dgetf(d_w, n), w, n, mlt_rule_name((mlt_rule_t)rule));
    }
    /* bias_add, bias_relu, relu_backward, pooling: see their bit-identical
     * tests, whose inputs hold NaNs */
}
END_TEST

static Suite *gpu_suite(void)
{
    Suite *s = suite_create("gpu");
    TCase *tc = add_tcase(s, "context");
    tcase_add_test(tc, test_context_memory_and_copies);
    tcase_add_test(tc, test_library_limits_return_einval);

    tc = add_tcase(s, "dense");
    tcase_add_test(tc, test_gemm_matches_cpu);
    tcase_add_test(tc, test_bias_relu_bit_identical);
    tcase_add_test(tc, test_relu_backward_bit_identical);
    tcase_add_test(tc, test_bias_grad_matches_cpu);

    tc = add_tcase(s, "loss");
    tcase_add_test(tc, test_softmax_xent_matches_cpu);
    tcase_add_test(tc, test_softmax_xent_bad_label_gives_nan);

    tc = add_tcase(s, "conv");
    tcase_add_loop_test(tc, test_conv_matches_im2col, 0, N_CONV_GEOMS);
    tcase_add_test(tc, test_conv_plan_without_dx);

    tc = add_tcase(s, "mf");
    tcase_add_loop_test(tc, test_mf_grad_matches_cpu, 0, N_MF_GEOMS);
    tcase_add_test(tc, test_mf_index_out_of_range_gives_nan);

    gpu_ops_tcases(s);

    tc = add_tcase(s, "nan");
    tcase_add_test(tc, test_nan_propagates_like_cpu);

    gpu_model_tcases(s);
    return s;
}

int main(void)
{
    char why[256];
    if (mlt_gpu_probe(why, sizeof why) == 0) {
        printf("SKIP: no GPU: %s\n", why);
        return 77;
    }
    char err[256];
    gpu = mlt_gpu_new(0, err, sizeof err);
    if (gpu == NULL) {
        fprintf(stderr, "check_gpu: a GPU is there but no context: %s\n", err);
        return EXIT_FAILURE;
    }
    /* full FP32 convolutions for the comparisons (GEMMs never use TF32) */
    mlt_gpu_set_tf32(gpu, false);
    printf("check_gpu: %s, compute capability %d.%d\n", mlt_gpu_device_name(gpu),
           mlt_gpu_device_cc(gpu) / 10, mlt_gpu_device_cc(gpu) % 10);

    SRunner *sr = srunner_create(gpu_suite());
    /* the CUDA runtime, initialised here, does not survive fork() */
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_ENV);
    const int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    mlt_gpu_destroy(&gpu);
    return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
