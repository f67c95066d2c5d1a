/* check_kernels.c - Check suite for kernels/cpu.
 *
 * Every kernel is compared, on deterministic random inputs of several sizes
 * (odd ones included, and ones that exercise both the vectorised body and the
 * scalar tail of the loops: 1, 7, 16, 37), against a naive reference written
 * here in double straight from the definitions in cpu.h. Then the properties
 * the model relies on: im2col/col2im are adjoint, im2col + GEMM is the direct
 * convolution in the documented layouts, pooling picks the first of tied
 * maxima and the fused epilogue is exactly bias + ReLU + pool, the loss stays
 * finite for huge logits, and NaN inputs come out as NaN. */
#include "kernels/cpu.h"

#include <check.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Float kernels against the double reference: relative to the size of the
 * terms involved. Double kernels: tight. */
#define TOL_F32 2e-5
#define TOL_F64 1e-12

static uint64_t rng_state = 1;

static void reseed(uint64_t s)
{
    rng_state = s * 0x9E3779B97F4A7C15ull + 1;
}

/* Uniform double in [lo, hi). */
static double urand(double lo, double hi)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return lo + (hi - lo) * (double)(rng_state >> 11) * 0x1.0p-53;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(p);
    return p;
}

static float *frand(size_t n, double lo, double hi)
{
    float *x = xmalloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)urand(lo, hi);
    return x;
}

static double *to_d(const float *x, size_t n)
{
    double *d = xmalloc(n * sizeof *d);
    for (size_t i = 0; i < n; i++)
        d[i] = x[i];
    return d;
}

/* max |got - want| <= tol * max(1, scale) */
static void expect_close_f(const float *got, const double *want, size_t n, double tol, double scale,
                           const char *what)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(fabs((double)got[i] - want[i]) <= tol * fmax(1.0, scale),
                      "%s[%zu]: got %.9g want %.9g", what, i, (double)got[i], want[i]);
}

static void expect_close_d(const double *got, const double *want, size_t n, double tol,
                           double scale, const char *what)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(fabs(got[i] - want[i]) <= tol * fmax(1.0, scale),
                      "%s[%zu]: got %.17g want %.17g", what, i, got[i], want[i]);
}

/* ---- gemm ---- */

static void ref_gemm(bool ta, bool tb, size_t m, size_t n, size_t k, double alpha, const double *a,
                     size_t lda, const double *b, size_t ldb, double beta, double *c, size_t ldc)
{
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double s = 0;
            for (size_t p = 0; p < k; p++)
                s +=
                    (ta ? a[p * lda + i] : a[i * lda + p]) * (tb ? b[j * ldb + p] : b[p * ldb + j]);
            c[i * ldc + j] = alpha * s + (beta != 0 ? beta * c[i * ldc + j] : 0);
        }
}

START_TEST(test_gemm_all_transposes)
{
    static const size_t shapes[][3] = {
        {1, 1, 1}, {7, 5, 3}, {33, 17, 65}, {16, 37, 1}, {2, 64, 129}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int t = 0; t < 4; t++) {
            const size_t m = shapes[si][0], n = shapes[si][1], k = shapes[si][2];
            const bool ta = t & 1, tb = t & 2;
            /* padded leading dimensions: the strides are honoured */
            const size_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2, ldc = n + 1;
            const size_t na = (ta ? k : m) * lda, nb = (tb ? n : k) * ldb, nc = m * ldc;
            reseed(si * 4 + t);
            float *a = frand(na, -1, 1), *b = frand(nb, -1, 1), *c = frand(nc, -1, 1);
            double *ad = to_d(a, na), *bd = to_d(b, nb), *cd = to_d(c, nc), *want = to_d(c, nc);
            ref_gemm(ta, tb, m, n, k, 0.5, ad, lda, bd, ldb, -1.5, want, ldc);
            mlt_cpu_gemm(ta, tb, m, n, k, 0.5f, a, lda, b, ldb, -1.5f, c, ldc);
            mlt_cpu_gemm_f64(ta, tb, m, n, k, 0.5, ad, lda, bd, ldb, -1.5, cd, ldc);
            for (size_t i = 0; i < m; i++) {
                expect_close_f(c + i * ldc, want + i * ldc, n, TOL_F32, (double)k, "gemm");
                expect_close_d(cd + i * ldc, want + i * ldc, n, TOL_F64, (double)k, "dgemm");
            }
            free(a), free(b), free(c), free(ad), free(bd), free(cd), free(want);
        }
}
END_TEST

START_TEST(test_gemm_beta_zero_ignores_c)
{
    /* beta = 0: C's old contents, NaN included, do not leak into the result */
    float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {1, 0, 0, 1, 1, 1}, c[4] = {NAN, NAN, INFINITY, NAN};
    mlt_cpu_gemm(false, false, 2, 2, 3, 1, a, 3, b, 2, 0, c, 2);
    const float want[4] = {4, 5, 10, 11};
    for (int i = 0; i < 4; i++)
        ck_assert_float_eq(c[i], want[i]);
}
END_TEST

/* ---- bias, relu ---- */

static const size_t widths[] = {1, 7, 16, 37};
#define N_WIDTHS (sizeof widths / sizeof widths[0])

START_TEST(test_bias_add_relu_grad)
{
    for (size_t wi = 0; wi < N_WIDTHS; wi++) {
        const size_t rows = 5, cols = widths[wi], n = rows * cols;
        reseed(100 + wi);
        float *y = frand(n, -1, 1), *b = frand(cols, -1, 1);
        float *y2 = xmalloc(n * sizeof *y2), *db = frand(cols, -1, 1);
        memcpy(y2, y, n * sizeof *y);
        double *want = xmalloc(n * sizeof *want), *wdb = xmalloc(cols * sizeof *wdb);

        for (size_t i = 0; i < n; i++)
            want[i] = (double)y[i] + b[i % cols];
        mlt_cpu_bias_add(y, b, rows, cols);
        expect_close_f(y, want, n, 1e-7, 1, "bias_add");

        for (size_t i = 0; i < n; i++)
            want[i] = fmax((double)y2[i] + b[i % cols], 0.0);
        mlt_cpu_bias_relu(y2, b, rows, cols);
        expect_close_f(y2, want, n, 1e-7, 1, "bias_relu");

        /* y now holds rows x cols values of both signs: column sums */
        for (size_t j = 0; j < cols; j++) {
            wdb[j] = 0;
            for (size_t r = 0; r < rows; r++)
                wdb[j] += y[r * cols + j];
        }
        mlt_cpu_bias_grad(db, y, rows, cols, false);
        expect_close_f(db, wdb, cols, 1e-6, rows, "bias_grad");
        for (size_t j = 0; j < cols; j++)
            wdb[j] *= 2;
        mlt_cpu_bias_grad(db, y, rows, cols, true);
        expect_close_f(db, wdb, cols, 1e-6, rows, "bias_grad accumulate");
        free(y), free(b), free(y2), free(db), free(want), free(wdb);
    }
}
END_TEST

START_TEST(test_relu_forward_backward)
{
    for (size_t wi = 0; wi < N_WIDTHS; wi++) {
        const size_t n = widths[wi] * 3;
        reseed(200 + wi);
        float *x = frand(n, -1, 1), *dy = frand(n, -1, 1);
        x[0] = 0.0f; /* the kink: relu(0) = 0, and no gradient through it */
        double *want = xmalloc(n * sizeof *want), *wdy = xmalloc(n * sizeof *wdy);
        for (size_t i = 0; i < n; i++) {
            want[i] = fmax(x[i], 0.0);
            wdy[i] = x[i] > 0 ? dy[i] : 0.0;
        }
        mlt_cpu_relu(x, n);
        expect_close_f(x, want, n, 0, 1, "relu");
        mlt_cpu_relu_backward(dy, x, n);
        expect_close_f(dy, wdy, n, 0, 1, "relu_backward");
        free(x), free(dy), free(want), free(wdy);
    }
}
END_TEST

/* ---- softmax cross-entropy ---- */

/* Reference: mean loss, gradient, correct; in long double from the definition. */
static double ref_xent(const double *z, const uint8_t *y, size_t rows, size_t classes, double *dz,
                       uint32_t *correct)
{
    long double total = 0;
    *correct = 0;
    for (size_t r = 0; r < rows; r++) {
        const double *zr = z + r * classes;
        size_t arg = 0;
        for (size_t j = 1; j < classes; j++)
            if (zr[j] > zr[arg])
                arg = j;
        long double m = zr[arg], s = 0;
        for (size_t j = 0; j < classes; j++)
            s += expl((long double)zr[j] - m);
        total += logl(s) - ((long double)zr[y[r]] - m);
        for (size_t j = 0; j < classes; j++)
            dz[r * classes + j] =
                (double)((expl((long double)zr[j] - m) / s - (j == y[r])) / (long double)rows);
        *correct += arg == y[r];
    }
    return (double)(total / (long double)rows);
}

START_TEST(test_softmax_xent_reference)
{
    static const size_t classes_list[] = {2, 3, 10, 17};
    for (size_t ci = 0; ci < 4; ci++)
        for (size_t rows = 1; rows <= 9; rows += 4) {
            const size_t classes = classes_list[ci], n = rows * classes;
            reseed(300 + ci * 10 + rows);
            float *z = frand(n, -4, 4), *dz = xmalloc(n * sizeof *dz);
            uint8_t *y = xmalloc(16); /* rows <= 9 (a fixed size: GCC 12 misjudges xmalloc(rows)) */
            for (size_t r = 0; r < rows; r++)
                y[r] = (uint8_t)(urand(0, (double)classes));
            double *zd = to_d(z, n), *want = xmalloc(n * sizeof *want), *dzd = xmalloc(n * 8);
            uint32_t wc, c32 = 99, c64 = 99;
            double wl = ref_xent(zd, y, rows, classes, want, &wc);
            double l32 = mlt_cpu_softmax_xent(z, y, rows, classes, dz, &c32);
            double l64 = mlt_cpu_softmax_xent_f64(zd, y, rows, classes, dzd, &c64);
            ck_assert_msg(fabs(l32 - wl) <= 1e-5 * fmax(1, wl), "loss %g want %g", l32, wl);
            ck_assert_msg(fabs(l64 - wl) <= 1e-13 * fmax(1, wl), "loss64 %.17g want %.17g", l64,
                          wl);
            ck_assert_uint_eq(c32, wc);
            ck_assert_uint_eq(c64, wc);
            expect_close_f(dz, want, n, 1e-6, 1, "dz");
            expect_close_d(dzd, want, n, 1e-14, 1, "dz64");
            /* in place, and without outputs */
            mlt_cpu_softmax_xent(z, y, rows, classes, z, NULL);
            expect_close_f(z, want, n, 1e-6, 1, "dz in place");
            ck_assert_double_eq(mlt_cpu_softmax_xent_f64(zd, y, rows, classes, NULL, NULL), l64);
            free(z), free(dz), free(y), free(zd), free(want), free(dzd);
        }
}
END_TEST

START_TEST(test_softmax_xent_large_logits)
{
    /* logits of 1e4, 1e30, -1e30: naive exp overflows; the loss must not */
    const float big[] = {1e4f, 1e30f, 3e37f};
    for (int bi = 0; bi < 3; bi++) {
        const float B = big[bi];
        float z[3 * 4] = {B, 0, -B, 1,   /* label 0: at the max, loss ~ 0 */
                          B, B, -B, 0,   /* label 1: tied max, loss log 2 */
                          0, 0, 1,  -B}; /* label 3: far below, loss ~ B */
        const uint8_t y[3] = {0, 1, 3};
        float dz[12];
        uint32_t correct;
        double l = mlt_cpu_softmax_xent(z, y, 3, 4, dz, &correct);
        ck_assert_msg(isfinite(l), "loss not finite for logits %g", (double)B);
        double want = (0 + log(2.0) + ((double)B + 1 + log1p(2 * exp(-1.0)))) / 3;
        ck_assert_msg(fabs(l - want) <= 1e-6 * want, "loss %g want %g", l, want);
        for (int i = 0; i < 12; i++)
            ck_assert_msg(isfinite(dz[i]), "dz[%d] = %g for logits %g", i, (double)dz[i],
                          (double)B);
        ck_assert_float_eq_tol(dz[0], 0.0f, 1e-7f);     /* p = 1 at the label */
        ck_assert_float_eq_tol(dz[4], 0.5f / 3, 1e-7f); /* tie: p = 1/2 each */
        ck_assert_float_eq_tol(dz[5], -0.5f / 3, 1e-7f);
        ck_assert_float_eq_tol(dz[11], -1.0f / 3, 1e-7f); /* p = 0 at the label */
        ck_assert_uint_eq(correct, 1);                    /* the tie goes to index 0 */
    }
}
END_TEST

START_TEST(test_softmax_xent_nan)
{
    const float vals[] = {NAN, -NAN};
    for (int pos = 0; pos < 3; pos++) {
        float z[6] = {1, 2, 3, 3, 2, 1}, dz[6];
        z[pos] = vals[pos % 2];
        const uint8_t y[2] = {2, 0};
        uint32_t correct = 99;
        double l = mlt_cpu_softmax_xent(z, y, 2, 3, dz, &correct);
        ck_assert_msg(isnan(l), "NaN logit at %d gave loss %g", pos, l);
        ck_assert_uint_eq(correct, 1); /* row 1 is right, row 0 is never */
        for (int j = 0; j < 3; j++)
            ck_assert_msg(isnan(dz[j]), "NaN logit at %d: dz[%d] = %g", pos, j, (double)dz[j]);
        double zd[6] = {1, 2, 3, 3, 2, 1};
        zd[pos] = NAN;
        ck_assert(isnan(mlt_cpu_softmax_xent_f64(zd, y, 2, 3, NULL, NULL)));
    }
}
END_TEST

/* ---- im2col, col2im, convolution ---- */

/* the geometries: h, w, c, k (kernel larger than the image included) */
static const size_t geoms[][4] = {{5, 3, 3, 3},  {1, 1, 2, 3}, {3, 2, 1, 5},
                                  {4, 6, 16, 5}, {7, 7, 5, 1}, {6, 5, 17, 3}};
#define N_GEOMS (sizeof geoms / sizeof geoms[0])

/* the im2col entry of image b, pixel (y, x), patch (ky, kx), channel ch */
static double ref_col(const double *x, size_t h, size_t w, size_t c, size_t k, size_t b, size_t yy,
                      size_t xx, size_t ky, size_t kx, size_t ch)
{
    const long pad = (long)(k - 1) / 2;
    long iy = (long)yy + (long)ky - pad, ix = (long)xx + (long)kx - pad;
    if (iy < 0 || ix < 0 || iy >= (long)h || ix >= (long)w)
        return 0;
    return x[((b * h + (size_t)iy) * w + (size_t)ix) * c + ch];
}

START_TEST(test_im2col_reference)
{
    for (size_t gi = 0; gi < N_GEOMS; gi++) {
        const size_t h = geoms[gi][0], w = geoms[gi][1], c = geoms[gi][2], k = geoms[gi][3];
        const size_t n = 2, nx = n * h * w * c, ncol = n * h * w * k * k * c;
        reseed(400 + gi);
        float *x = frand(nx, -1, 1), *col = frand(ncol, 5, 6); /* garbage to overwrite */
        double *xd = to_d(x, nx), *cold = xmalloc(ncol * 8), *want = xmalloc(ncol * 8);
        size_t i = 0;
        for (size_t b = 0; b < n; b++)
            for (size_t yy = 0; yy < h; yy++)
                for (size_t xx = 0; xx < w; xx++)
                    for (size_t ky = 0; ky < k; ky++)
                        for (size_t kx = 0; kx < k; kx++)
                            for (size_t ch = 0; ch < c; ch++)
                                want[i++] = ref_col(xd, h, w, c, k, b, yy, xx, ky, kx, ch);
        mlt_cpu_im2col(x, n, h, w, c, k, col);
        mlt_cpu_im2col_f64(xd, n, h, w, c, k, cold);
        expect_close_f(col, want, ncol, 0, 1, "im2col");
        expect_close_d(cold, want, ncol, 0, 1, "im2col64");
        free(x), free(col), free(xd), free(cold), free(want);
    }
}
END_TEST

START_TEST(test_col2im_adjoint)
{
    for (size_t gi = 0; gi < N_GEOMS; gi++) {
        const size_t h = geoms[gi][0], w = geoms[gi][1], c = geoms[gi][2], k = geoms[gi][3];
        const size_t n = 3, nx = n * h * w * c, ncol = n * h * w * k * k * c;
        reseed(500 + gi);
        float *x = frand(nx, -1, 1), *yc = frand(ncol, -1, 1);
        float *col = xmalloc(ncol * sizeof *col), *xt = frand(nx, 7, 8);
        double *xd = to_d(x, nx), *ycd = to_d(yc, ncol);
        double *cold = xmalloc(ncol * 8), *xtd = xmalloc(nx * 8);
        mlt_cpu_im2col_f64(xd, n, h, w, c, k, cold);
        mlt_cpu_col2im_f64(ycd, n, h, w, c, k, xtd);
        mlt_cpu_im2col(x, n, h, w, c, k, col);
        mlt_cpu_col2im(yc, n, h, w, c, k, xt);
        /* <im2col(x), y> == <x, col2im(y)> */
        double lhs = 0, rhs = 0, lhs32 = 0, rhs32 = 0, mag = 0;
        for (size_t i = 0; i < ncol; i++) {
            lhs += cold[i] * ycd[i];
            lhs32 += (double)col[i] * yc[i];
            mag += fabs(cold[i] * ycd[i]);
        }
        for (size_t i = 0; i < nx; i++) {
            rhs += xd[i] * xtd[i];
            rhs32 += (double)x[i] * xt[i];
        }
        ck_assert_msg(fabs(lhs - rhs) <= 1e-13 * fmax(1, mag), "adjoint: %.17g vs %.17g (geom %zu)",
                      lhs, rhs, gi);
        ck_assert_msg(fabs(lhs32 - rhs32) <= 1e-5 * fmax(1, mag), "adjoint f32: %.9g vs %.9g",
                      lhs32, rhs32);
        /* and col2im itself against its definition */
        double *want = calloc(nx, sizeof *want);
        size_t i = 0;
        const long pad = (long)(k - 1) / 2;
        for (size_t b = 0; b < n; b++)
            for (size_t yy = 0; yy < h; yy++)
                for (size_t xx = 0; xx < w; xx++)
                    for (size_t ky = 0; ky < k; ky++)
                        for (size_t kx = 0; kx < k; kx++)
                            for (size_t ch = 0; ch < c; ch++, i++) {
                                long iy = (long)yy + (long)ky - pad, ix = (long)xx + (long)kx - pad;
                                if (iy >= 0 && ix >= 0 && iy < (long)h && ix < (long)w)
                                    want[((b * h + (size_t)iy) * w + (size_t)ix) * c + ch] +=
                                        ycd[i];
                            }
        expect_close_d(xtd, want, nx, 1e-14, (double)(k * k), "col2im64");
        expect_close_f(xt, want, nx, 1e-6, (double)(k * k), "col2im");
        free(x), free(yc), free(col), free(xt), free(xd), free(ycd), free(cold), free(xtd),
            free(want);
    }
}
END_TEST

START_TEST(test_conv_by_im2col_is_direct_conv)
{
    /* im2col + gemm(col, W^T) with W as [c_out][ky][kx][c_in] is the 'same'
     * cross-correlation out[b][y][x][o] = sum W[o][ky][kx][i] x[b][y+ky-p][x+kx-p][i] */
    const size_t n = 2, h = 5, w = 4, c = 3, k = 3, co = 4, kkc = k * k * c;
    reseed(600);
    float *x = frand(n * h * w * c, -1, 1), *W = frand(co * kkc, -1, 1);
    float *col = xmalloc(n * h * w * kkc * sizeof *col), *out = xmalloc(n * h * w * co * 4);
    double *xd = to_d(x, n * h * w * c), *want = xmalloc(n * h * w * co * 8);
    mlt_cpu_im2col(x, n, h, w, c, k, col);
    mlt_cpu_gemm(false, true, n * h * w, co, kkc, 1, col, kkc, W, kkc, 0, out, co);
    for (size_t b = 0; b < n; b++)
        for (size_t yy = 0; yy < h; yy++)
            for (size_t xx = 0; xx < w; xx++)
                for (size_t o = 0; o < co; o++) {
                    double s = 0;
                    for (size_t ky = 0; ky < k; ky++)
                        for (size_t kx = 0; kx < k; kx++)
                            for (size_t i = 0; i < c; i++)
                                s += W[((o * k + ky) * k + kx) * c + i] *
                                     ref_col(xd, h, w, c, k, b, yy, xx, ky, kx, i);
                    want[((b * h + yy) * w + xx) * co + o] = s;
                }
    expect_close_f(out, want, n * h * w * co, 1e-5, 1, "conv");
    free(x), free(W), free(col), free(out), free(xd), free(want);
}
END_TEST

START_TEST(test_conv_thin)
{
    /* the direct convolution and its weight gradient against the definitions;
     * widths that take the 4-pixel interior path and the edge path, channel
     * counts with and without a vector tail */
    static const size_t tg[][5] = {{5, 3, 1, 3, 5},   {8, 9, 2, 3, 17}, {28, 28, 1, 5, 32},
                                   {6, 11, 3, 5, 16}, {1, 1, 1, 1, 1},  {7, 4, 1, 5, 33},
                                   {3, 13, 1, 5, 40}};
    for (size_t gi = 0; gi < sizeof tg / sizeof tg[0]; gi++) {
        const size_t h = tg[gi][0], w = tg[gi][1], c = tg[gi][2], k = tg[gi][3], co = tg[gi][4];
        const size_t n = 2, kkc = k * k * c, nx = n * h * w * c, nz = n * h * w * co;
        reseed(650 + gi);
        float *x = frand(nx, -1, 1), *W = frand(co * kkc, -1, 1), *dz = frand(nz, -1, 1);
        float *wt = xmalloc(kkc * co * 4), *z = frand(nz, 5, 6), *dwt = frand(kkc * co, -1, 1);
        float *dW = xmalloc(kkc * co * 4);
        double *xd = to_d(x, nx), *want = xmalloc(nz * 8), *wdw = calloc(kkc * co, 8);
        mlt_cpu_transpose(W, co, kkc, wt);
        for (size_t o = 0; o < co; o++)
            for (size_t j = 0; j < kkc; j++)
                ck_assert_float_eq(wt[j * co + o], W[o * kkc + j]);
        mlt_cpu_conv_thin(x, n, h, w, c, k, wt, co, z);
        for (size_t b = 0; b < n; b++)
            for (size_t yy = 0; yy < h; yy++)
                for (size_t xx = 0; xx < w; xx++) {
                    const size_t p = (b * h + yy) * w + xx;
                    for (size_t o = 0; o < co; o++) {
                        double s = 0;
                        for (size_t ky = 0; ky < k; ky++)
                            for (size_t kx = 0; kx < k; kx++)
                                for (size_t i = 0; i < c; i++) {
                                    double v = ref_col(xd, h, w, c, k, b, yy, xx, ky, kx, i);
                                    s += W[o * kkc + (ky * k + kx) * c + i] * v;
                                    wdw[((ky * k + kx) * c + i) * co + o] += dz[p * co + o] * v;
                                }
                        want[p * co + o] = s;
                    }
                }
        expect_close_f(z, want, nz, 1e-5, (double)kkc, "conv_thin");
        mlt_cpu_conv_thin_dw(x, dz, n, h, w, c, k, co, dwt, false);
        expect_close_f(dwt, wdw, kkc * co, 1e-5, (double)(n * h * w), "conv_thin_dw");
        for (size_t i = 0; i < kkc * co; i++)
            wdw[i] *= 2;
        mlt_cpu_conv_thin_dw(x, dz, n, h, w, c, k, co, dwt, true);
        expect_close_f(dwt, wdw, kkc * co, 1e-5, (double)(n * h * w), "conv_thin_dw accumulate");
        /* the double variant, tight */
        double *wtd = to_d(wt, kkc * co), *zd = xmalloc(nz * 8), *dzd = to_d(dz, nz);
        double *dwd = xmalloc(kkc * co * 8);
        mlt_cpu_conv_thin_f64(xd, n, h, w, c, k, wtd, co, zd);
        expect_close_d(zd, want, nz, 1e-13, (double)kkc, "conv_thin64");
        mlt_cpu_conv_thin_dw_f64(xd, dzd, n, h, w, c, k, co, dwd, false);
        for (size_t i = 0; i < kkc * co; i++)
            wdw[i] /= 2;
        expect_close_d(dwd, wdw, kkc * co, 1e-13, (double)(n * h * w), "conv_thin_dw64");
        mlt_cpu_transpose_f64(dwd, kkc, co, wtd);
        for (size_t o = 0; o < co; o++)
            for (size_t j = 0; j < kkc; j++)
                ck_assert_double_eq(wtd[o * kkc + j], dwd[j * co + o]);
        free(x), free(W), free(dz), free(wt), free(z), free(dwt), free(dW), free(xd), free(want),
            free(wdw), free(wtd), free(zd), free(dzd), free(dwd);
    }
}
END_TEST

/* ---- pooling ---- */

/* Reference pooling of v = relu(x + bias) (or x): first maximum, NaN wins. */
static void ref_pool(const float *x, const float *bias, size_t n, size_t h, size_t w, size_t c,
                     size_t p, float *y, uint32_t *idx)
{
    const size_t oh = h / p, ow = w / p;
    for (size_t b = 0; b < n; b++)
        for (size_t oy = 0; oy < oh; oy++)
            for (size_t ox = 0; ox < ow; ox++)
                for (size_t ch = 0; ch < c; ch++) {
                    bool have = false;
                    float best = 0;
                    uint32_t at = 0;
                    for (size_t dy = 0; dy < p; dy++)
                        for (size_t dx = 0; dx < p; dx++) {
                            size_t off = ((oy * p + dy) * w + ox * p + dx) * c + ch;
                            float v = x[b * h * w * c + off];
                            if (bias != NULL) {
                                v = v + bias[ch];
                                v = isnan(v) ? v : fmaxf(v, 0.0f);
                            }
                            if (!have || (!isnan(best) && (isnan(v) || v > best))) {
                                best = v;
                                at = (uint32_t)off;
                                have = true;
                            }
                        }
                    size_t j = ((b * oh + oy) * ow + ox) * c + ch;
                    y[j] = best;
                    idx[j] = at;
                }
}

static const size_t pgeoms[][4] = {{4, 4, 1, 2},  {5, 7, 3, 2},  {6, 6, 16, 3},
                                   {3, 3, 37, 1}, {9, 8, 32, 2}, {2, 2, 7, 2}};
#define N_PGEOMS (sizeof pgeoms / sizeof pgeoms[0])

static void check_pool_case(const float *x, const float *bias, size_t n, size_t h, size_t w,
                            size_t c, size_t p, const char *what)
{
    const size_t ny = n * (h / p) * (w / p) * c;
    float *y = xmalloc(ny * 4), *wy = xmalloc(ny * 4);
    uint32_t *idx = xmalloc(ny * 4), *widx = xmalloc(ny * 4);
    ref_pool(x, bias, n, h, w, c, p, wy, widx);
    if (bias != NULL)
        mlt_cpu_bias_relu_maxpool(x, bias, n, h, w, c, p, y, idx);
    else
        mlt_cpu_maxpool(x, n, h, w, c, p, y, idx);
    for (size_t j = 0; j < ny; j++) {
        ck_assert_msg(idx[j] == widx[j], "%s: idx[%zu] = %u want %u", what, j, idx[j], widx[j]);
        ck_assert_msg(y[j] == wy[j] || (isnan(y[j]) && isnan(wy[j])), "%s: y[%zu] = %g want %g",
                      what, j, (double)y[j], (double)wy[j]);
    }
    free(y), free(wy), free(idx), free(widx);
}

START_TEST(test_maxpool_reference)
{
    for (size_t gi = 0; gi < N_PGEOMS; gi++) {
        const size_t h = pgeoms[gi][0], w = pgeoms[gi][1], c = pgeoms[gi][2], p = pgeoms[gi][3];
        const size_t n = 2, nx = n * h * w * c;
        reseed(700 + gi);
        float *x = frand(nx, -1, 1), *bias = frand(c, -0.5, 0.5);
        check_pool_case(x, NULL, n, h, w, c, p, "maxpool");
        check_pool_case(x, bias, n, h, w, c, p, "bias_relu_maxpool");
        /* the fused epilogue is exactly bias_relu then maxpool */
        const size_t ny = n * (h / p) * (w / p) * c;
        float *z = xmalloc(nx * 4), *y1 = xmalloc(ny * 4), *y2 = xmalloc(ny * 4);
        uint32_t *i1 = xmalloc(ny * 4), *i2 = xmalloc(ny * 4);
        memcpy(z, x, nx * 4);
        mlt_cpu_bias_relu(z, bias, n * h * w, c);
        mlt_cpu_maxpool(z, n, h, w, c, p, y1, i1);
        mlt_cpu_bias_relu_maxpool(x, bias, n, h, w, c, p, y2, i2);
        ck_assert(memcmp(y1, y2, ny * 4) == 0);
        ck_assert(memcmp(i1, i2, ny * 4) == 0);
        free(x), free(bias), free(z), free(y1), free(y2), free(i1), free(i2);
    }
}
END_TEST

START_TEST(test_maxpool_ties)
{
    /* integer-valued inputs: ties everywhere; the first maximum in window order wins */
    for (size_t gi = 0; gi < N_PGEOMS; gi++) {
        const size_t h = pgeoms[gi][0], w = pgeoms[gi][1], c = pgeoms[gi][2], p = pgeoms[gi][3];
        const size_t n = 2, nx = n * h * w * c;
        reseed(800 + gi);
        float *x = xmalloc(nx * 4), *bias = xmalloc(c * 4);
        for (size_t i = 0; i < nx; i++)
            x[i] = (float)(int)urand(-2, 2); /* -1, 0, 1 */
        for (size_t i = 0; i < c; i++)
            bias[i] = (float)(int)urand(-1, 1);
        check_pool_case(x, NULL, n, h, w, c, p, "ties");
        check_pool_case(x, bias, n, h, w, c, p, "ties after relu");
        /* all equal: every window picks its top-left element */
        for (size_t i = 0; i < nx; i++)
            x[i] = 0.25f;
        check_pool_case(x, NULL, n, h, w, c, p, "all equal");
        free(x), free(bias);
    }
    float x4[4] = {1, 3, 3, 2}, y;
    uint32_t idx;
    mlt_cpu_maxpool(x4, 1, 2, 2, 1, 2, &y, &idx);
    ck_assert_float_eq(y, 3);
    ck_assert_uint_eq(idx, 1);
}
END_TEST

START_TEST(test_maxpool_backward)
{
    for (size_t gi = 0; gi < N_PGEOMS; gi++) {
        const size_t h = pgeoms[gi][0], w = pgeoms[gi][1], c = pgeoms[gi][2], p = pgeoms[gi][3];
        const size_t n = 2, nx = n * h * w * c, ny = n * (h / p) * (w / p) * c;
        reseed(900 + gi);
        float *x = frand(nx, -1, 1), *y = xmalloc(ny * 4), *dy = frand(ny, -1, 1);
        float *dx = frand(nx, 5, 6); /* garbage: must be overwritten */
        uint32_t *idx = xmalloc(ny * 4);
        mlt_cpu_maxpool(x, n, h, w, c, p, y, idx);
        mlt_cpu_maxpool_backward(dy, idx, n, h, w, c, p, dx);
        double *want = calloc(nx, sizeof *want);
        const size_t per = ny / n;
        for (size_t j = 0; j < ny; j++)
            want[(j / per) * h * w * c + idx[j]] += dy[j];
        expect_close_f(dx, want, nx, 0, 1, "maxpool_backward");
        /* the same in double */
        double *xd = to_d(x, nx), *yd = xmalloc(ny * 8), *dyd = to_d(dy, ny),
               *dxd = xmalloc(nx * 8);
        uint32_t *idxd = xmalloc(ny * 4);
        mlt_cpu_maxpool_f64(xd, n, h, w, c, p, yd, idxd);
        ck_assert(memcmp(idx, idxd, ny * 4) == 0);
        mlt_cpu_maxpool_backward_f64(dyd, idxd, n, h, w, c, p, dxd);
        expect_close_d(dxd, want, nx, 0, 1, "maxpool_backward64");
        free(x), free(y), free(dy), free(dx), free(idx), free(want), free(xd), free(yd), free(dyd),
            free(dxd), free(idxd);
    }
}
END_TEST

/* ---- NaN ---- */

START_TEST(test_nan_propagates)
{
    float x[37];
    for (int i = 0; i < 37; i++)
        x[i] = (float)i - 18;
    x[3] = NAN;  /* in the vectorised body */
    x[36] = NAN; /* in the scalar tail */
    float b[37] = {0};
    float y[37];
    memcpy(y, x, sizeof y);
    mlt_cpu_relu(y, 37);
    ck_assert(isnan(y[3]) && isnan(y[36]));
    ck_assert_float_eq(y[0], 0);
    memcpy(y, x, sizeof y);
    mlt_cpu_bias_relu(y, b, 1, 37);
    ck_assert(isnan(y[3]) && isnan(y[36]));
    memcpy(y, x, sizeof y);
    mlt_cpu_bias_add(y, b, 1, 37);
    ck_assert(isnan(y[3]) && isnan(y[36]));
    /* a NaN gradient is not masked away where the activation is NaN */
    float dy[37];
    for (int i = 0; i < 37; i++)
        dy[i] = NAN;
    mlt_cpu_relu_backward(dy, x, 37);
    ck_assert(isnan(dy[3]) && isnan(dy[36]));
    /* a NaN bias poisons its column */
    float bn[2] = {NAN, 1}, m[4] = {1, 2, 3, 4};
    mlt_cpu_bias_relu(m, bn, 2, 2);
    ck_assert(isnan(m[0]) && isnan(m[2]) && m[1] == 3 && m[3] == 5);

    /* pooling: a NaN anywhere in a window is the window's value (and argmax) */
    for (int pos = 0; pos < 4; pos++)
        for (int ch = 0; ch < 2; ch++) {
            float img[2 * 2 * 2] = {1, 5, 2, 6, 3, 7, 4, 8}; /* 2x2 pixels, 2 channels */
            img[pos * 2 + ch] = NAN;
            float out[2];
            uint32_t idx[2];
            mlt_cpu_maxpool(img, 1, 2, 2, 2, 2, out, idx);
            ck_assert_msg(isnan(out[ch]), "NaN at pixel %d ch %d lost", pos, ch);
            ck_assert_uint_eq(idx[ch], (uint32_t)(pos * 2 + ch));
            ck_assert_float_eq(out[1 - ch], ch == 0 ? 8 : 4);
            float zero[2] = {0, 0};
            mlt_cpu_bias_relu_maxpool(img, zero, 1, 2, 2, 2, 2, out, idx);
            ck_assert(isnan(out[ch]));
        }
    /* gemm */
    float a[4] = {1, NAN, 3, 4}, bm[4] = {1, 0, 0, 1}, c[4];
    mlt_cpu_gemm(false, false, 2, 2, 2, 1, a, 2, bm, 2, 0, c, 2);
    ck_assert(isnan(c[1]) && !isnan(c[2]));
    /* col2im carries a NaN to its pixel */
    float col[9] = {0, 0, 0, 0, NAN, 0, 0, 0, 0}, img1[1];
    mlt_cpu_col2im(col, 1, 1, 1, 1, 3, img1);
    ck_assert(isnan(img1[0]));
    /* mf */
    float U[2] = {NAN, 1}, V[2] = {1, 1}, r = 1, dU[2] = {0}, dV[2] = {0};
    uint32_t zi = 0;
    ck_assert(isnan(mlt_cpu_mf_grad(U, V, 2, &zi, &zi, &r, 1, 0.1f, 1, dU, dV)));
    ck_assert(isnan(dV[0]));
}
END_TEST

/* ---- layout, mf ---- */

START_TEST(test_nchw_to_nhwc)
{
    const size_t n = 2, c = 3, h = 4, w = 5, nx = n * c * h * w;
    reseed(1000);
    float *x = frand(nx, -1, 1), *y = xmalloc(nx * 4);
    mlt_cpu_nchw_to_nhwc(x, n, c, h, w, y);
    for (size_t b = 0; b < n; b++)
        for (size_t ch = 0; ch < c; ch++)
            for (size_t yy = 0; yy < h; yy++)
                for (size_t xx = 0; xx < w; xx++)
                    ck_assert_float_eq(y[((b * h + yy) * w + xx) * c + ch],
                                       x[((b * c + ch) * h + yy) * w + xx]);
    free(x), free(y);
}
END_TEST

START_TEST(test_mf_grad_reference)
{
    static const size_t ranks[] = {1, 3, 20, 37};
    for (size_t ri = 0; ri < 4; ri++) {
        const size_t rank = ranks[ri], nu = 5, ni = 4, batch = 11;
        reseed(1100 + ri);
        float *U = frand(nu * rank, -1, 1), *V = frand(ni * rank, -1, 1), *r = frand(batch, 0, 5);
        float *dU = calloc(nu * rank, 4), *dV = calloc(ni * rank, 4);
        uint32_t users[11], items[11];
        for (size_t i = 0; i < batch; i++) { /* repeats on purpose */
            users[i] = (uint32_t)urand(0, (double)nu);
            items[i] = (uint32_t)urand(0, (double)ni);
        }
        const double l2 = 0.05, scale = 1.0 / batch;
        double *wU = calloc(nu * rank, 8), *wV = calloc(ni * rank, 8), sse = 0;
        for (size_t i = 0; i < batch; i++) {
            const float *u = U + users[i] * rank, *v = V + items[i] * rank;
            double e = -r[i];
            for (size_t j = 0; j < rank; j++)
                e += (double)u[j] * v[j];
            sse += e * e;
            ck_assert_msg(fabs(mlt_cpu_mf_predict(u, v, rank) - (e + r[i])) <= 1e-5, "predict");
            for (size_t j = 0; j < rank; j++) {
                wU[users[i] * rank + j] += scale * (2 * e * v[j] + 2 * l2 * u[j]);
                wV[items[i] * rank + j] += scale * (2 * e * u[j] + 2 * l2 * v[j]);
            }
        }
        double got =
            mlt_cpu_mf_grad(U, V, rank, users, items, r, batch, (float)l2, (float)scale, dU, dV);
        ck_assert_msg(fabs(got - sse) <= 1e-5 * fmax(1, sse), "sse %g want %g", got, sse);
        expect_close_f(dU, wU, nu * rank, 1e-5, (double)rank, "dU");
        expect_close_f(dV, wV, ni * rank, 1e-5, (double)rank, "dV");
        double s2 = mlt_cpu_mf_sse(U, V, rank, users, items, r, batch);
        ck_assert_msg(fabs(s2 - sse) <= 1e-5 * fmax(1, sse), "mf_sse %g want %g", s2, sse);
        free(U), free(V), free(r), free(dU), free(dV), free(wU), free(wV);
    }
}
END_TEST

START_TEST(test_blas_core)
{
    const char *core = mlt_cpu_blas_core();
    ck_assert_ptr_nonnull(core);
    ck_assert(strlen(core) > 0);
    const char *better = mlt_cpu_blas_better_core();
    if (better != NULL)
        ck_assert(strcmp(better, "SkylakeX") == 0 || strcmp(better, "Haswell") == 0);
}
END_TEST

static Suite *kernels_suite(void)
{
    Suite *s = suite_create("kernels");
    TCase *tc = tcase_create("gemm");
    tcase_add_test(tc, test_gemm_all_transposes);
    tcase_add_test(tc, test_gemm_beta_zero_ignores_c);
    tcase_add_test(tc, test_blas_core);
    suite_add_tcase(s, tc);

    tc = tcase_create("elementwise");
    tcase_add_test(tc, test_bias_add_relu_grad);
    tcase_add_test(tc, test_relu_forward_backward);
    tcase_add_test(tc, test_nchw_to_nhwc);
    suite_add_tcase(s, tc);

    tc = tcase_create("softmax");
    tcase_add_test(tc, test_softmax_xent_reference);
    tcase_add_test(tc, test_softmax_xent_large_logits);
    tcase_add_test(tc, test_softmax_xent_nan);
    suite_add_tcase(s, tc);

    tc = tcase_create("im2col");
    tcase_add_test(tc, test_im2col_reference);
    tcase_add_test(tc, test_col2im_adjoint);
    tcase_add_test(tc, test_conv_by_im2col_is_direct_conv);
    tcase_add_test(tc, test_conv_thin);
    suite_add_tcase(s, tc);

    tc = tcase_create("pool");
    tcase_add_test(tc, test_maxpool_reference);
    tcase_add_test(tc, test_maxpool_ties);
    tcase_add_test(tc, test_maxpool_backward);
    suite_add_tcase(s, tc);

    tc = tcase_create("nan");
    tcase_add_test(tc, test_nan_propagates);
    suite_add_tcase(s, tc);

    tc = tcase_create("mf");
    tcase_add_test(tc, test_mf_grad_reference);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(kernels_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
