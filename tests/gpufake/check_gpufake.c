/* check_gpufake.c - Check suite for the fake GPU itself (gpu_fake.c): the
 * CUDA rules it keeps so that the code tested on it cannot get away with
 * breaking them. The tests on top of it (gpu-fake, gpu-fake-worker) pass as
 * well on a laxer fake; these fail there:
 *   - an op runs when the host waits, not when it is issued; a mark's wait
 *     runs the stream up to that mark and no further;
 *   - fresh memory is NaN; copies check direction and extent;
 *   - what CUDA cannot capture fails the capture; a graph runs its ops only
 *     when launched;
 *   - a misuse found while an op runs is an -EIO that sticks. */
#include "kernels/gpu.h"

#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static mlt_gpu_t *g;
static float *d, *pin; /* N floats of device and of pinned memory */
#define N 64

static void setup(void)
{
    char err[256];
    ck_assert_int_eq(mlt_gpu_probe(err, sizeof err), 1);
    g = mlt_gpu_new(0, err, sizeof err);
    ck_assert_ptr_nonnull(g);
    ck_assert_str_eq(mlt_gpu_device_name(g), "fake GPU (CPU, tests/gpufake)");
    d = mlt_gpu_malloc(g, N * sizeof *d);
    pin = mlt_gpu_host_malloc(g, N * sizeof *pin);
    ck_assert(d != NULL && pin != NULL);
}

static void teardown(void)
{
    if (mlt_gpu_capturing(g)) {
        mlt_gpu_graph_t *gr;
        mlt_gpu_capture_end(g, &gr);
        mlt_gpu_graph_destroy(&gr);
    }
    mlt_gpu_free(g, d);
    mlt_gpu_host_free(g, pin);
    mlt_gpu_destroy(&g);
}

START_TEST(test_ops_run_when_waited_for)
{
    /* fresh memory reads as NaN */
    ck_assert_int_eq(mlt_gpu_download(g, pin, d, N * sizeof *d), 0);
    ck_assert_int_eq(mlt_gpu_sync(g), 0);
    for (int i = 0; i < N; i++)
        ck_assert(isnan(pin[i]));
    /* fill, download, mark 0, fill, download: issued, nothing ran */
    ck_assert_int_eq(mlt_gpu_fill(g, d, N, 1.0f), 0);
    ck_assert_int_eq(mlt_gpu_download(g, pin, d, N * sizeof *d), 0);
    ck_assert_int_eq(mlt_gpu_mark(g, 0), 0);
    ck_assert_int_eq(mlt_gpu_fill(g, d, N, 2.0f), 0);
    ck_assert_int_eq(mlt_gpu_download(g, pin + 1, d, sizeof *d), 0);
    ck_assert(isnan(pin[0]) && isnan(pin[1]));
    /* the mark's wait: up to the mark */
    ck_assert_int_eq(mlt_gpu_wait_mark(g, 0), 0);
    ck_assert(pin[0] == 1.0f && pin[1] == 1.0f);
    ck_assert_int_eq(mlt_gpu_sync(g), 0);
    ck_assert(pin[0] == 1.0f && pin[1] == 2.0f);
    /* a pageable copy runs at once, after what was queued */
    float h = 0;
    ck_assert_int_eq(mlt_gpu_fill(g, d, N, 3.0f), 0);
    ck_assert_int_eq(mlt_gpu_download(g, &h, d + 5, sizeof h), 0);
    ck_assert(h == 3.0f);
    /* marks: range, never recorded */
    ck_assert_int_eq(mlt_gpu_mark(g, MLT_GPU_MARKS), -EINVAL);
    ck_assert_int_eq(mlt_gpu_wait_mark(g, 1), -EINVAL);
}
END_TEST

START_TEST(test_copies_checked)
{
    float h[N + 1] = {0};
    /* past the end of device memory, into pinned memory, from device memory */
    ck_assert_int_eq(mlt_gpu_upload(g, d + 1, h, N * sizeof *d), -EIO);
    ck_assert_str_ne(mlt_gpu_error(g), "");
    ck_assert_int_eq(mlt_gpu_upload(g, pin, h, sizeof *h), -EIO);
    ck_assert_int_eq(mlt_gpu_download(g, h, pin, sizeof *h), -EIO);
    ck_assert_int_eq(mlt_gpu_upload(g, d, d + 1, sizeof *d), -EIO);
    ck_assert_int_eq(mlt_gpu_download(g, pin + 1, d, N * sizeof *d), -EIO);
    ck_assert_int_eq(mlt_gpu_copy(g, d, h, sizeof *d), -EIO);
    ck_assert_int_eq(mlt_gpu_zero(g, d, N * sizeof *d + 1), -EIO);
    ck_assert_int_eq(mlt_gpu_fill(g, pin, 1, 0.0f), -EIO);
    ck_assert_int_eq(mlt_gpu_sync(g), 0);
}
END_TEST

START_TEST(test_capture_rules)
{
    mlt_gpu_graph_t *gr = NULL;
    float h = 0;
    /* recorded, not run; run at each launch, on the memory of that moment */
    ck_assert_int_eq(mlt_gpu_fill(g, d, N, 0.0f), 0);
    ck_assert_int_eq(mlt_gpu_capture_begin(g), 0);
    ck_assert_int_eq(mlt_gpu_upload(g, d, pin, sizeof *d), 0);
    ck_assert_int_eq(mlt_gpu_download(g, pin + 1, d, sizeof *d), 0);
    ck_assert_int_eq(mlt_gpu_capture_end(g, &gr), 0);
    pin[0] = 7.0f;
    pin[1] = 0.0f;
    ck_assert_int_eq(mlt_gpu_sync(g), 0);
    ck_assert(pin[1] == 0.0f);
    ck_assert_int_eq(mlt_gpu_graph_launch(g, gr), 0);
    ck_assert_int_eq(mlt_gpu_sync(g), 0);
    ck_assert(pin[1] == 7.0f);
    mlt_gpu_graph_destroy(&gr);
    /* what cannot be captured fails the capture, and the stream goes on */
    for (int what = 0; what < 5; what++) {
        ck_assert_int_eq(mlt_gpu_capture_begin(g), 0);
        switch (what) {
        case 0: ck_assert_int_eq(mlt_gpu_upload(g, d, &h, sizeof h), -EIO); break;
        case 1: ck_assert_int_eq(mlt_gpu_sync(g), -EIO); break;
        case 2: ck_assert_ptr_null(mlt_gpu_host_malloc(g, 4)); break;
        case 3: mlt_gpu_free(g, mlt_gpu_malloc(g, 4)); break;
        case 4: ck_assert_int_eq(mlt_gpu_mark(g, 9), -EINVAL); break;
        }
        int rc = mlt_gpu_capture_end(g, &gr);
        ck_assert_msg(what == 4 ? rc == 0 : rc == -EIO, "case %d: capture_end %d", what, rc);
        mlt_gpu_graph_destroy(&gr);
    }
    ck_assert_int_eq(mlt_gpu_upload(g, d, &h, sizeof h), 0);
    ck_assert_int_eq(mlt_gpu_sync(g), 0);
}
END_TEST

START_TEST(test_async_errors_stick)
{
    /* 0: a gather index past the source rows; 1: a bias gradient's `ones` */
    uint32_t *d_idx = mlt_gpu_malloc(g, sizeof *d_idx);
    const uint32_t idx = _i == 0 ? N / 4 : 0;
    ck_assert_int_eq(mlt_gpu_upload(g, d_idx, &idx, sizeof idx), 0);
    ck_assert_int_eq(mlt_gpu_fill(g, d, N, 1.0f), 0);
    if (_i == 0) {
        ck_assert_int_eq(mlt_gpu_gather4(g, d, 4, d_idx, 1, d), 0); /* 16 rows of 4 */
    } else {
        const float two = 2.0f;
        ck_assert_int_eq(mlt_gpu_upload(g, d + 40, &two, sizeof two), 0);
        ck_assert_int_eq(mlt_gpu_bias_grad(g, d, d + 1, N / 2, 1, false, d + N / 2), 0);
    }
    ck_assert_int_eq(mlt_gpu_sync(g), -EIO);
    ck_assert_str_ne(mlt_gpu_error(g), "");
    ck_assert_int_eq(mlt_gpu_sync(g), -EIO);
    mlt_gpu_free(g, d_idx);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("gpufake");
    TCase *tc = tcase_create("rules");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_ops_run_when_waited_for);
    tcase_add_test(tc, test_copies_checked);
    tcase_add_test(tc, test_capture_rules);
    tcase_add_loop_test(tc, test_async_errors_stick, 0, 2);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_ENV);
    const int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
