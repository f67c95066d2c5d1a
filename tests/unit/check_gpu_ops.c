/* check_gpu_ops.c - pooling, the layout change and the gathers (bit for bit
 * with the CPU's), the update rules against the CPU's, and CUDA graphs
 * (capture, replay, marks, capture errors). Part of check_gpu (see check_gpu.c). */
#include "check_gpu_util.h"

#include "kernels/cpu.h"
#include "kernels/optim.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* ---- pooling, layout ---- */

typedef struct pool_geom {
    size_t n, h, w, c, p; /* images, height, width, channels, window = stride */
} pool_geom_t;

static const pool_geom_t pool_geoms[] = {
    {1, 1, 1, 1, 1},    /* tiny; p 1 is the identity */
    {2, 5, 7, 3, 2},    /* floor: each image's last row and column dropped */
    {3, 8, 8, 16, 2},   /* */
    {2, 9, 9, 37, 3},   /* odd channel count, 3x3 windows */
    {1, 6, 5, 1, 4},    /* one window, most of the image lost to the floor */
    {16, 28, 28, 8, 2}, /* moderately large: an MNIST first layer's output */
};
#define N_POOL_GEOMS ((int)(sizeof pool_geoms / sizeof pool_geoms[0]))

/* Pooling input full of exact ties: integers -3..3, some of the zeros -0, a
 * NaN every 97 elements. */
static float *pool_input(size_t n)
{
    float *x = hnew(n * sizeof *x);
    for (size_t i = 0; i < n; i++) {
        x[i] = (float)floor(urand(-3, 4));
        if (x[i] == 0.0f && i % 2 == 1)
            x[i] = -0.0f;
        if (i % 97 == 5)
            x[i] = NAN;
    }
    return x;
}

/* A bias of halves (x + b ties too, and ReLU makes many exact 0), with a NaN
 * channel where there are more than two. */
static float *pool_bias(size_t c)
{
    float *b = hnew(c * sizeof *b);
    for (size_t i = 0; i < c; i++)
        b[i] = (float)floor(urand(-2, 3)) * 0.5f;
    if (c > 2)
        b[1] = NAN;
    return b;
}

START_TEST(test_maxpool_bit_identical)
{
    const pool_geom_t *G = &pool_geoms[_i];
    const size_t nx = G->n * G->h * G->w * G->c, ny = G->n * (G->h / G->p) * (G->w / G->p) * G->c;
    reseed(800 + (uint64_t)_i);
    float *x = pool_input(nx), *bias = pool_bias(G->c);
    float *d_x = dputf(x, nx), *d_b = dputf(bias, G->c);
    uint32_t *junk = hnew(ny * sizeof *junk);
    memset(junk, 0xFF, ny * sizeof *junk);
    for (int fused = 0; fused < 2; fused++) {
        float *y = hnew(ny * sizeof *y);
        uint32_t *idx = hnew(ny * sizeof *idx), *got_idx = hnew(ny * sizeof *got_idx);
        if (fused)
            mlt_cpu_bias_relu_maxpool(x, bias, G->n, G->h, G->w, G->c, G->p, y, idx);
        else
            mlt_cpu_maxpool(x, G->n, G->h, G->w, G->c, G->p, y, idx);
        float *d_y = dputf(ffill(ny, NAN), ny);
        uint32_t *d_idx = dput(junk, ny * sizeof *junk);
        GPU_OK(mlt_gpu_maxpool(gpu, d_x, fused ? d_b : NULL, G->n, G->h, G->w, G->c, G->p, d_y,
                               d_idx));
        /* bit for bit: the same comparisons in the same window order */
        expect_bits(dgetf(d_y, ny), y, ny, fused ? "bias_relu_maxpool y" : "maxpool y");
        dget(got_idx, d_idx, ny * sizeof *got_idx);
        for (size_t j = 0; j < ny; j++)
            ck_assert_msg(got_idx[j] == idx[j], "%s idx[%zu]: GPU %u, CPU %u",
                          fused ? "bias_relu_maxpool" : "maxpool", j, got_idx[j], idx[j]);
    }
}
END_TEST

START_TEST(test_maxpool_backward_bit_identical)
{
    const pool_geom_t *G = &pool_geoms[_i];
    const size_t nx = G->n * G->h * G->w * G->c, ny = G->n * (G->h / G->p) * (G->w / G->p) * G->c;
    reseed(900 + (uint64_t)_i);
    float *x = pool_input(nx), *bias = pool_bias(G->c), *dy = frand(ny, -1, 1);
    if (ny > 1)
        dy[ny - 1] = NAN; /* a NaN gradient is routed like any other */
    float *d_dy = dputf(dy, ny);
    for (int fused = 0; fused < 2; fused++) {
        float *y = hnew(ny * sizeof *y), *want = hnew(nx * sizeof *want);
        uint32_t *idx = hnew(ny * sizeof *idx);
        if (fused) {
            /* y given: the ReLU before the pool is undone too */
            mlt_cpu_bias_relu_maxpool(x, bias, G->n, G->h, G->w, G->c, G->p, y, idx);
            float *dy2 = fdup(dy, ny);
            mlt_cpu_relu_backward(dy2, y, ny);
            mlt_cpu_maxpool_backward(dy2, idx, G->n, G->h, G->w, G->c, G->p, want);
        } else {
            mlt_cpu_maxpool(x, G->n, G->h, G->w, G->c, G->p, y, idx);
            mlt_cpu_maxpool_backward(dy, idx, G->n, G->h, G->w, G->c, G->p, want);
        }
        float *d_y = dputf(y, ny), *d_dx = dputf(ffill(nx, NAN), nx);
        uint32_t *d_idx = dput(idx, ny * sizeof *idx);
        GPU_OK(mlt_gpu_maxpool_backward(gpu, d_dy, fused ? d_y : NULL, d_idx, G->n, G->h, G->w,
                                        G->c, G->p, d_dx));
        /* bit for bit: copies of dy and zeros, every element overwritten */
        expect_bits(dgetf(d_dx, nx), want, nx,
                    fused ? "maxpool_backward (relu undone)" : "maxpool_backward");
    }
}
END_TEST

START_TEST(test_nchw_to_nhwc_bit_identical)
{
    /* n, c, h, w */
    static const size_t shapes[][4] = {
        {1, 1, 1, 1}, {2, 3, 5, 7}, {3, 17, 4, 9}, {1, 1, 28, 28}, {64, 3, 32, 32}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const size_t n = shapes[si][0], c = shapes[si][1], h = shapes[si][2], w = shapes[si][3];
        const size_t total = n * c * h * w;
        reseed(950 + si);
        float *x = frand(total, -1, 1), *y = hnew(total * sizeof *y);
        x[total / 2] = NAN;
        mlt_cpu_nchw_to_nhwc(x, n, c, h, w, y);
        float *d_x = dputf(x, total), *d_y = dputf(ffill(total, NAN), total);
        GPU_OK(mlt_gpu_nchw_to_nhwc(gpu, d_x, n, c, h, w, d_y));
        /* bit for bit: a permutation */
        expect_bits(dgetf(d_y, total), y, total, "nchw_to_nhwc");
        release_all();
    }
}
END_TEST

/* ---- gathers ---- */

START_TEST(test_gathers_bit_identical)
{
    /* source rows, row width, rows gathered */
    static const size_t shapes[][3] = {{1, 1, 1}, {5, 7, 33}, {1000, 784, 500}, {37, 1, 4096}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const size_t rows = shapes[si][0], width = shapes[si][1], n = shapes[si][2];
        reseed(980 + si);
        /* random bit patterns (NaNs, signalling ones, denormals among them):
         * a gather copies words, bit for bit */
        uint32_t *src4 = hnew(rows * width * 4), *want4 = hnew(n * width * 4);
        uint32_t *idx = hnew(n * sizeof *idx);
        uint8_t *src1 = hnew(rows * width), *want1 = hnew(n * width);
        for (size_t i = 0; i < rows * width; i++) {
            src4[i] = (uint32_t)rnext();
            src1[i] = (uint8_t)rnext();
        }
        /* repeats, and the last and the first row */
        for (size_t k = 0; k < n; k++)
            idx[k] = (uint32_t)urand(0, (double)rows);
        idx[0] = (uint32_t)(rows - 1);
        idx[n - 1] = 0;
        for (size_t k = 0; k < n; k++) {
            memcpy(want4 + k * width, src4 + idx[k] * width, width * 4);
            memcpy(want1 + k * width, src1 + idx[k] * width, width);
        }
        uint32_t *d_idx = dput(idx, n * sizeof *idx);
        void *d_src4 = dput(src4, rows * width * 4), *d_dst4 = dnew(n * width * 4);
        uint8_t *d_src1 = dput(src1, rows * width), *d_dst1 = dnew(n * width);
        GPU_OK(mlt_gpu_gather4(gpu, d_src4, width, d_idx, n, d_dst4));
        GPU_OK(mlt_gpu_gather1(gpu, d_src1, width, d_idx, n, d_dst1));
        uint32_t *got4 = hnew(n * width * 4);
        uint8_t *got1 = hnew(n * width);
        dget(got4, d_dst4, n * width * 4);
        dget(got1, d_dst1, n * width);
        ck_assert_msg(memcmp(got4, want4, n * width * 4) == 0, "gather4 %zu of %zux%zu", n, rows,
                      width);
        ck_assert_msg(memcmp(got1, want1, n * width) == 0, "gather1 %zu of %zux%zu", n, rows,
                      width);
        release_all();
    }
}
END_TEST

/* ---- optimizer ---- */

START_TEST(test_optim_matches_cpu)
{
    const mlt_rule_t rule = (mlt_rule_t)_i;
    if (mlt_rule_schedule_free(rule))
        return; /* refused on the device (test_library_limits_return_einval) */
    static const size_t sizes[] = {1, 37, 100003};
    static const float momenta[] = {0.0f, 0.9f}; /* 0: SGD's path without a buffer */
    static const float decays[] = {0.0f, 1e-3f};
    for (size_t si = 0; si < 3; si++)
        for (size_t mi = 0; mi < 2; mi++)
            for (size_t wi = 0; wi < 2; wi++) {
                mlt_hyper_t h = mlt_hyper_default();
                h.momentum = momenta[mi];
                h.weight_decay = decays[wi];
                if (rule == MLT_RULE_RMSPROP)
                    h.beta2 = 0.99f;
                if (rule == MLT_RULE_ADADELTA) {
                    h.lr = 1.0f;
                    h.beta2 = 0.9f;
                    h.eps = 1e-6f;
                }
                const size_t n = sizes[si], ns = mlt_optim_state_floats(rule, false) * n;
                reseed(1200 + (uint64_t)_i * 16 + si * 4 + mi * 2 + wi);
                float *w = frand(n, -1, 1), *state = ffill(ns, 0.0f);
                float *d_w = dputf(w, n), *d_s = dputf(state, ns), *d_g = dnew(n * sizeof *d_g);
                char what[64];
                for (uint64_t step = 1; step <= 5; step++) {
                    float *g = frand(n, -0.1, 0.1);
                    GPU_OK(mlt_gpu_upload(gpu, d_g, g, n * sizeof *g));
                    GPU_OK(mlt_gpu_optim_apply(gpu, rule, &h, d_w, d_s, d_g, n, step));
                    mlt_optim_apply(rule, &h, w, state, g, n, step);
                    snprintf(what, sizeof what, "%s m %g wd %g n %zu step %u: w",
                             mlt_rule_name(rule), (double)h.momentum, (double)h.weight_decay, n,
                             (unsigned)step);
                    expect_ulps(dgetf(d_w, n), w, n, what);
                    snprintf(what, sizeof what, "%s m %g wd %g n %zu step %u: state",
                             mlt_rule_name(rule), (double)h.momentum, (double)h.weight_decay, n,
                             (unsigned)step);
                    expect_ulps(dgetf(d_s, ns), state, ns, what);
                }
                release_all();
            }
}
END_TEST

/* ---- CUDA graphs ---- */

/* x (pinned host, m x k) -> device; y = relu(x w + b); y -> pinned host. */
static void dense_ops(float *h_x, float *h_y, float *d_x, const float *d_w, const float *d_b,
                      float *d_y, size_t m, size_t k, size_t n)
{
    GPU_OK(mlt_gpu_upload(gpu, d_x, h_x, m * k * sizeof *h_x));
    GPU_OK(mlt_gpu_gemm(gpu, false, false, m, n, k, 1.0f, d_x, k, d_w, n, 0.0f, d_y, n));
    GPU_OK(mlt_gpu_bias_relu(gpu, d_y, d_b, m, n));
    GPU_OK(mlt_gpu_download(gpu, h_y, d_y, m * n * sizeof *h_y));
}

START_TEST(test_graph_replays_captured_ops)
{
    const size_t m = 37, k = 29, n = 19;
    reseed(1400);
    float *w = frand(k * n, -1, 1), *bias = frand(n, -1, 1);
    float *h_x = pinned_new(m * k * sizeof *h_x), *h_y = pinned_new(m * n * sizeof *h_y);
    float *d_x = dnew(m * k * sizeof *d_x), *d_y = dnew(m * n * sizeof *d_y);
    float *d_w = dputf(w, k * n), *d_b = dputf(bias, n);

    /* capturing records the ops without running them */
    for (size_t i = 0; i < m * k; i++)
        h_x[i] = (float)urand(-1, 1);
    for (size_t i = 0; i < m * n; i++)
        h_y[i] = NAN;
    GPU_OK(mlt_gpu_capture_begin(gpu));
    ck_assert(mlt_gpu_capturing(gpu));
    dense_ops(h_x, h_y, d_x, d_w, d_b, d_y, m, k, n);
    mlt_gpu_graph_t *gr = NULL;
    GPU_OK(mlt_gpu_capture_end(gpu, &gr));
    ck_assert_ptr_nonnull(gr);
    track(R_GRAPH, gr);
    ck_assert(!mlt_gpu_capturing(gpu));
    GPU_OK(mlt_gpu_sync(gpu));
    for (size_t i = 0; i < m * n; i++)
        ck_assert_msg(isnan(h_y[i]), "y[%zu] written by a capture", i);

    for (int launch = 0; launch < 2; launch++) {
        /* new input in the same pinned buffer: the graph reads it when it runs */
        for (size_t i = 0; i < m * k; i++)
            h_x[i] = (float)urand(-1, 1);
        float *want = ffill(m * n, 0.0f);
        mlt_cpu_gemm(false, false, m, n, k, 1.0f, h_x, k, w, n, 0.0f, want, n);
        mlt_cpu_bias_relu(want, bias, m, n);
        dense_ops(h_x, h_y, d_x, d_w, d_b, d_y, m, k, n);
        GPU_OK(mlt_gpu_sync(gpu));
        float *eager = fdup(h_y, m * n);
        for (size_t i = 0; i < m * n; i++)
            h_y[i] = NAN;
        GPU_OK(mlt_gpu_graph_launch(gpu, gr));
        GPU_OK(mlt_gpu_sync(gpu));
        /* the replay is the eager run's kernels on the same data, and both are
         * k products of magnitude <= 1 from the CPU's sums */
        expect_close(h_y, eager, m * n, sum_tol(k + 1, 1.0), "graph launch vs eager");
        expect_close(h_y, want, m * n, sum_tol(k + 1, 1.0), "graph launch vs CPU");
    }
}
END_TEST

START_TEST(test_marks)
{
    /* a mark tells the host that what was issued before it has run: a
     * download issued before mark k has landed once mlt_gpu_wait_mark(k)
     * returns, eagerly and when the mark was captured in a graph */
    const size_t n = 4099;
    float *h_a = pinned_new(n * sizeof *h_a), *h_b = pinned_new(n * sizeof *h_b);
    float *d = dnew(n * sizeof *d);
    ck_assert_int_eq(mlt_gpu_mark(gpu, MLT_GPU_MARKS), -EINVAL);
    ck_assert_int_eq(mlt_gpu_wait_mark(gpu, MLT_GPU_MARKS - 1), -EINVAL); /* never recorded */
    GPU_OK(mlt_gpu_fill(gpu, d, n, 3.0f));
    GPU_OK(mlt_gpu_download(gpu, h_a, d, n * sizeof *d));
    GPU_OK(mlt_gpu_mark(gpu, 0));
    GPU_OK(mlt_gpu_fill(gpu, d, n, 5.0f));
    GPU_OK(mlt_gpu_download(gpu, h_b, d, n * sizeof *d));
    GPU_OK(mlt_gpu_mark(gpu, 1));
    GPU_OK(mlt_gpu_wait_mark(gpu, 0));
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(h_a[i] == 3.0f, "a[%zu] = %g after its mark", i, (double)h_a[i]);
    GPU_OK(mlt_gpu_wait_mark(gpu, 1));
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(h_b[i] == 5.0f, "b[%zu] = %g after its mark", i, (double)h_b[i]);

    /* captured: each launch records the marks again */
    GPU_OK(mlt_gpu_capture_begin(gpu));
    ck_assert_int_eq(mlt_gpu_wait_mark(gpu, 0), -EINVAL); /* not while capturing */
    GPU_OK(mlt_gpu_download(gpu, h_a, d, n * sizeof *d));
    GPU_OK(mlt_gpu_mark(gpu, 0));
    GPU_OK(mlt_gpu_fill(gpu, d, n, 7.0f));
    GPU_OK(mlt_gpu_download(gpu, h_b, d, n * sizeof *d));
    GPU_OK(mlt_gpu_mark(gpu, 1));
    mlt_gpu_graph_t *gr = NULL;
    GPU_OK(mlt_gpu_capture_end(gpu, &gr));
    track(R_GRAPH, gr);
    GPU_OK(mlt_gpu_sync(gpu));
    for (int launch = 0; launch < 2; launch++) {
        float v = launch == 0 ? 5.0f : 7.0f; /* what d holds when the graph starts */
        for (size_t i = 0; i < n; i++)
            h_a[i] = h_b[i] = NAN;
        GPU_OK(mlt_gpu_graph_launch(gpu, gr));
        GPU_OK(mlt_gpu_wait_mark(gpu, 0));
        for (size_t i = 0; i < n; i++)
            ck_assert_msg(h_a[i] == v, "launch %d: a[%zu] = %g", launch, i, (double)h_a[i]);
        GPU_OK(mlt_gpu_wait_mark(gpu, 1));
        for (size_t i = 0; i < n; i++)
            ck_assert_msg(h_b[i] == 7.0f, "launch %d: b[%zu] = %g", launch, i, (double)h_b[i]);
    }
    GPU_OK(mlt_gpu_sync(gpu));
}
END_TEST

START_TEST(test_graph_capture_errors)
{
    static char not_null;
    mlt_gpu_graph_t *gr = (mlt_gpu_graph_t *)(void *)&not_null;
    float *d = dnew(64 * sizeof *d);

    /* end without a begin */
    ck_assert_int_eq(mlt_gpu_capture_end(gpu, &gr), -EINVAL);
    ck_assert_ptr_null(gr);

    /* begin twice: the second is refused, the first capture goes on */
    GPU_OK(mlt_gpu_capture_begin(gpu));
    ck_assert_int_eq(mlt_gpu_capture_begin(gpu), -EINVAL);
    ck_assert(mlt_gpu_capturing(gpu));
    GPU_OK(mlt_gpu_zero(gpu, d, 64 * sizeof *d));
    GPU_OK(mlt_gpu_capture_end(gpu, &gr));
    ck_assert_ptr_nonnull(gr);
    track(R_GRAPH, gr);

    /* no plan while capturing (refused before any CUDA call) */
    char err[256] = "";
    GPU_OK(mlt_gpu_capture_begin(gpu));
    ck_assert_ptr_null(mlt_gpu_conv_new(gpu, 1, 4, 4, 1, 3, 1, true, err, sizeof err));
    ck_assert_str_ne(err, "");
    GPU_OK(mlt_gpu_zero(gpu, d, 64 * sizeof *d));
    GPU_OK(mlt_gpu_capture_end(gpu, &gr));
    track(R_GRAPH, gr);

    /* an allocation while capturing fails, and fails the capture: no graph,
     * the reason in the error, and the stream works again */
    GPU_OK(mlt_gpu_capture_begin(gpu));
    ck_assert_ptr_null(mlt_gpu_malloc(gpu, 64));
    gr = (mlt_gpu_graph_t *)(void *)&not_null;
    ck_assert_int_lt(mlt_gpu_capture_end(gpu, &gr), 0);
    ck_assert_ptr_null(gr);
    ck_assert(!mlt_gpu_capturing(gpu));
    ck_assert_str_ne(mlt_gpu_error(gpu), "");
    const float one = 1.0f;
    float back = 0;
    GPU_OK(mlt_gpu_fill(gpu, d, 64, 0.0f));
    GPU_OK(mlt_gpu_upload(gpu, d + 3, &one, sizeof one));
    dget(&back, d + 3, sizeof back);
    ck_assert(back == 1.0f);
}
END_TEST

void gpu_ops_tcases(Suite *s)
{
    TCase *tc = add_tcase(s, "pool");
    tcase_add_loop_test(tc, test_maxpool_bit_identical, 0, N_POOL_GEOMS);
    tcase_add_loop_test(tc, test_maxpool_backward_bit_identical, 0, N_POOL_GEOMS);
    tcase_add_test(tc, test_nchw_to_nhwc_bit_identical);

    tc = add_tcase(s, "data");
    tcase_add_test(tc, test_gathers_bit_identical);

    tc = add_tcase(s, "optim");
    tcase_add_loop_test(tc, test_optim_matches_cpu, 0, MLT_RULE_COUNT_);

    tc = add_tcase(s, "graph");
    tcase_add_test(tc, test_graph_replays_captured_ops);
    tcase_add_test(tc, test_graph_capture_errors);
    tcase_add_test(tc, test_marks);
}
