/* check_model_desc.c - init (deterministic for a seed, within its bounds),
 * model descriptions (names, sizes, every refusal of a bad one) and the
 * documented run-time errors (bad arguments, out of memory). Part of
 * check_model (see check_model.c). */
#include "tests/unit/check_model.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"

/* ---- init ---- */

START_TEST(test_init_deterministic)
{
    const int which = _i;
    const mlt_model_desc_t d = test_desc(which, 4);
    mlt_model_t *m = new_model(&d);
    tensors_t a = tensors_new(m), b = tensors_new(m), c = tensors_new(m);
    mlt_model_init(m, a.f, 77);
    mlt_model_init(m, b.f, 77);
    mlt_model_init(m, c.f, 78);
    for (uint32_t i = 0; i < a.n; i++) {
        const uint64_t sz = mlt_model_param_size(m, i);
        ck_assert(memcmp(a.f[i], b.f[i], sz * sizeof(float)) == 0);
        if (sz > 1)
            ck_assert_msg(memcmp(a.f[i], c.f[i], sz * sizeof(float)) != 0,
                          "%s: seeds 77 and 78 give the same values", mlt_model_param_name(m, i));
        double sum2 = 0, maxabs = 0;
        for (uint64_t j = 0; j < sz; j++) {
            sum2 += (double)a.f[i][j] * a.f[i][j];
            maxabs = fmax(maxabs, fabs(a.f[i][j]));
        }
        if (d.type == MLT_MODEL_MF) {
            double sd = sqrt(sum2 / sz);
            ck_assert_msg(sd > 0.05 && sd < 0.15, "%s: sd %g", mlt_model_param_name(m, i), sd);
        } else {
            ck_assert(maxabs > 0);
        }
    }
    tensors_free(&a);
    tensors_free(&b);
    tensors_free(&c);
    mlt_model_destroy(&m);
}
END_TEST

START_TEST(test_init_bounds)
{
    /* PyTorch's default: weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)) */
    const mlt_model_desc_t d = test_desc(M_CNN, 4);
    mlt_model_t *m = new_model(&d);
    tensors_t t = tensors_new(m);
    mlt_model_init(m, t.f, 1);
    /* conv1: fan_in 9; fc1: 64; fc2: 8 */
    const double fan[] = {9, 9, 64, 64, 8, 8};
    ck_assert_uint_eq(t.n, 6);
    for (uint32_t i = 0; i < t.n; i++) {
        const double bound = 1 / sqrt(fan[i]);
        double maxabs = 0;
        for (uint64_t j = 0; j < mlt_model_param_size(m, i); j++)
            maxabs = fmax(maxabs, fabs(t.f[i][j]));
        ck_assert_msg(maxabs <= bound && maxabs > 0.5 * bound, "%s: max %g bound %g",
                      mlt_model_param_name(m, i), maxabs, bound);
    }
    tensors_free(&t);
    mlt_model_destroy(&m);
}
END_TEST

/* ---- shapes, names ---- */

START_TEST(test_names_and_sizes)
{
    static const mlt_cnn_layer_t fm_cnn[] = {
        {.op = MLT_CNN_CONV, .k = 5, .n = 32}, {.op = MLT_CNN_POOL, .k = 2},
        {.op = MLT_CNN_CONV, .k = 5, .n = 64}, {.op = MLT_CNN_POOL, .k = 2},
        {.op = MLT_CNN_FC, .n = 256},
    };
    mlt_model_desc_t d = {.type = MLT_MODEL_CNN,
                          .in_c = 1,
                          .in_h = 28,
                          .in_w = 28,
                          .n_classes = 10,
                          .cnn = fm_cnn,
                          .n_cnn = 5,
                          .max_batch = 2};
    mlt_model_t *m = new_model(&d);
    static const char *const names[] = {"conv1.w", "conv1.b", "conv2.w", "conv2.b",
                                        "fc1.w",   "fc1.b",   "fc2.w",   "fc2.b"};
    static const uint64_t sizes[] = {32 * 25,          32,  64 * 25 * 32, 64,
                                     256 * 7 * 7 * 64, 256, 10 * 256,     10};
    ck_assert_uint_eq(mlt_model_n_params(m), 8);
    ck_assert_int_eq(mlt_model_type(m), MLT_MODEL_CNN);
    for (uint32_t i = 0; i < 8; i++) {
        ck_assert_str_eq(mlt_model_param_name(m, i), names[i]);
        ck_assert_uint_eq(mlt_model_param_size(m, i), sizes[i]);
    }
    ck_assert_ptr_null(mlt_model_param_name(m, 8));
    ck_assert_uint_eq(mlt_model_param_size(m, 8), 0);
    mlt_model_destroy(&m);
    ck_assert_ptr_null(m);
    mlt_model_destroy(&m); /* NULL is fine */
    mlt_model_destroy(NULL);

    static const uint32_t hidden[] = {256, 256};
    d = (mlt_model_desc_t){.type = MLT_MODEL_MLP,
                           .in_c = 1,
                           .in_h = 28,
                           .in_w = 28,
                           .n_classes = 10,
                           .hidden = hidden,
                           .n_hidden = 2,
                           .max_batch = 2};
    m = new_model(&d);
    ck_assert_uint_eq(mlt_model_n_params(m), 6);
    ck_assert_str_eq(mlt_model_param_name(m, 0), "fc1.w");
    ck_assert_uint_eq(mlt_model_param_size(m, 0), 256 * 784);
    ck_assert_str_eq(mlt_model_param_name(m, 5), "fc3.b");
    ck_assert_uint_eq(mlt_model_param_size(m, 4), 10 * 256);
    mlt_model_destroy(&m);

    d = test_desc(M_SOFTMAX, 2);
    m = new_model(&d);
    ck_assert_uint_eq(mlt_model_n_params(m), 2);
    ck_assert_str_eq(mlt_model_param_name(m, 0), "fc1.w");
    ck_assert_uint_eq(mlt_model_param_size(m, 0), 3 * 20);
    mlt_model_destroy(&m);

    d = test_desc(M_MF, 0); /* max_batch is unused by mf */
    m = new_model(&d);
    ck_assert_uint_eq(mlt_model_n_params(m), 2);
    ck_assert_str_eq(mlt_model_param_name(m, 0), "mf.user");
    ck_assert_str_eq(mlt_model_param_name(m, 1), "mf.item");
    ck_assert_uint_eq(mlt_model_param_size(m, 0), 6 * 3);
    ck_assert_uint_eq(mlt_model_param_size(m, 1), 5 * 3);
    mlt_model_destroy(&m);
}
END_TEST

/* ---- invalid descriptions ---- */

static void expect_bad(const mlt_model_desc_t *d, const char *needle)
{
    char err[256] = "";
    errno = 0;
    mlt_model_t *m = mlt_model_new(d, err, sizeof err);
    ck_assert_msg(m == NULL, "accepted a bad description (%s)", needle);
    ck_assert_int_eq(errno, EINVAL);
    ck_assert_msg(strstr(err, needle) != NULL, "error '%s' does not mention '%s'", err, needle);
}

START_TEST(test_bad_descriptions)
{
    char err[64];
    errno = 0;
    ck_assert_ptr_null(mlt_model_new(NULL, err, sizeof err));
    ck_assert_int_eq(errno, EINVAL);

    mlt_model_desc_t d = test_desc(M_MLP, 4);
    d.type = 99;
    expect_bad(&d, "type");
    d = test_desc(M_MLP, 4);
    d.in_h = 0;
    expect_bad(&d, "input");
    d = test_desc(M_MLP, 4);
    d.n_classes = 1;
    expect_bad(&d, "n_classes");
    d = test_desc(M_MLP, 4);
    d.n_classes = 257;
    expect_bad(&d, "n_classes");
    d = test_desc(M_MLP, 0);
    expect_bad(&d, "max_batch");
    d = test_desc(M_MLP, 4);
    d.hidden = NULL;
    expect_bad(&d, "hidden");
    static const uint32_t zero_hidden[] = {7, 0};
    d.hidden = zero_hidden;
    expect_bad(&d, "mlp hidden layer 2");

    static const mlt_cnn_layer_t even[] = {{.op = MLT_CNN_CONV, .k = 4, .n = 2}};
    d = test_desc(M_CNN, 4);
    d.cnn = even;
    d.n_cnn = 1;
    expect_bad(&d, "odd");
    static const mlt_cnn_layer_t big_pool[] = {{.op = MLT_CNN_POOL, .k = 9}};
    d.cnn = big_pool;
    expect_bad(&d, "cnn layer 1: pool 9");
    static const mlt_cnn_layer_t pool_then_big[] = {{.op = MLT_CNN_CONV, .k = 3, .n = 2},
                                                    {.op = MLT_CNN_POOL, .k = 4},
                                                    {.op = MLT_CNN_POOL, .k = 3}};
    d.cnn = pool_then_big;
    d.n_cnn = 3;
    expect_bad(&d, "cnn layer 3: pool 3 does not fit its 2x2 input");
    static const mlt_cnn_layer_t conv_after_fc[] = {{.op = MLT_CNN_FC, .n = 5},
                                                    {.op = MLT_CNN_CONV, .k = 3, .n = 2}};
    d.cnn = conv_after_fc;
    d.n_cnn = 2;
    expect_bad(&d, "cnn layer 2: conv/pool after an fc");
    static const mlt_cnn_layer_t bad_op[] = {{.op = (mlt_cnn_op_t)7, .k = 3, .n = 2}};
    d.cnn = bad_op;
    d.n_cnn = 1;
    expect_bad(&d, "unknown op");
    static const mlt_cnn_layer_t no_channels[] = {{.op = MLT_CNN_CONV, .k = 3, .n = 0}};
    d.cnn = no_channels;
    expect_bad(&d, "channels");
    d.cnn = NULL;
    expect_bad(&d, "cnn");

    d = test_desc(M_MF, 1);
    d.rank = 0;
    expect_bad(&d, "rank");
    d = test_desc(M_MF, 1);
    d.l2 = -1;
    expect_bad(&d, "l2");
    d = test_desc(M_MF, 1);
    d.l2 = NAN;
    expect_bad(&d, "l2");
    d = test_desc(M_MF, 1);
    d.n_users = 1u << 30;
    expect_bad(&d, "too large");

    /* err may be NULL */
    d = test_desc(M_MF, 1);
    d.n_items = 0;
    errno = 0;
    ck_assert_ptr_null(mlt_model_new(&d, NULL, 0));
    ck_assert_int_eq(errno, EINVAL);
}
END_TEST

/* ---- run-time errors ---- */

START_TEST(test_step_errors)
{
    const mlt_model_desc_t d = test_desc(M_CNN, 4);
    mlt_model_t *m = new_model(&d);
    tensors_t t = tensors_new(m);
    tensors_init(m, &t, 3);
    batch_t b = batch_new(&d, 5, 1);
    float loss = -1;
    double dl = -1, mse;
    uint32_t correct = 99;
    ck_assert_int_eq(mlt_model_step(m, t.f, t.gf, b.xf, b.y, 0, &loss, &correct), -EINVAL);
    ck_assert_int_eq(mlt_model_step(m, t.f, t.gf, b.xf, b.y, 5, &loss, &correct), -EINVAL);
    b.y[2] = 3; /* n_classes is 3 */
    ck_assert_int_eq(mlt_model_step(m, t.f, t.gf, b.xf, b.y, 4, &loss, &correct), -EINVAL);
    ck_assert_int_eq(mlt_model_step_f64(m, t.d, t.gd, b.xd, b.y, 4, &dl, &correct), -EINVAL);
    ck_assert_int_eq(mlt_model_eval(m, t.f, b.xf, b.y, 5, &dl, &correct), -EINVAL);
    ck_assert(loss == -1 && dl == -1 && correct == 99); /* nothing written */
    b.y[2] = 2;
    ck_assert_int_eq(mlt_model_eval(m, t.f, b.xf, b.y, 0, &dl, &correct), -EINVAL);
    ck_assert_int_eq(mlt_model_step(m, t.f, t.gf, b.xf, b.y, 4, &loss, NULL), 0);
    uint32_t u = 0, it = 0;
    float r = 1;
    ck_assert_int_eq(mlt_model_step_mf(m, t.f, t.gf, &u, &it, &r, 1, &loss), -EINVAL);
    ck_assert_int_eq(mlt_model_eval_mf(m, t.f, &u, &it, &r, 1, &mse), -EINVAL);
    batch_free(&b);
    tensors_free(&t);
    mlt_model_destroy(&m);

    const mlt_model_desc_t dm = test_desc(M_MF, 0);
    m = new_model(&dm);
    t = tensors_new(m);
    tensors_init(m, &t, 3);
    b = batch_new(&dm, 20, 2); /* mf takes any batch size */
    ck_assert_int_eq(mlt_model_step_mf(m, t.f, t.gf, b.users, b.items, b.rf, 20, &loss), 0);
    ck_assert_int_eq(mlt_model_step_mf(m, t.f, t.gf, b.users, b.items, b.rf, 0, &loss), -EINVAL);
    b.users[3] = 6;
    ck_assert_int_eq(mlt_model_step_mf(m, t.f, t.gf, b.users, b.items, b.rf, 20, &loss), -EINVAL);
    ck_assert_int_eq(mlt_model_eval_mf(m, t.f, b.users, b.items, b.rf, 20, &mse), -EINVAL);
    b.users[3] = 0;
    b.items[4] = 5;
    ck_assert_int_eq(mlt_model_step_mf_f64(m, t.d, t.gd, b.users, b.items, b.rd, 20, &dl), -EINVAL);
    uint8_t y = 0;
    ck_assert_int_eq(mlt_model_step(m, t.f, t.gf, b.rf, &y, 1, &loss, NULL), -EINVAL);
    ck_assert_int_eq(mlt_model_eval(m, t.f, b.rf, &y, 1, &dl, NULL), -EINVAL);
    batch_free(&b);
    tensors_free(&t);
    mlt_model_destroy(&m);
}
END_TEST

START_TEST(test_oom)
{
    const mlt_model_desc_t d = test_desc(M_CNN, 4);
    for (long n = 0; n < 1; n++) { /* the float buffers (one block) */
        char err[128] = "";
        mlt_alloc_fail_after(n);
        errno = 0;
        mlt_model_t *m = mlt_model_new(&d, err, sizeof err);
        mlt_alloc_fail_after(-1);
        ck_assert_ptr_null(m);
        ck_assert_int_eq(errno, ENOMEM);
        ck_assert_msg(strstr(err, "memory") != NULL, "err '%s'", err);
    }
    /* the double buffers, on the first double step */
    mlt_model_t *m = new_model(&d);
    tensors_t t = tensors_new(m);
    tensors_init(m, &t, 3);
    batch_t b = batch_new(&d, 4, 1);
    double loss;
    mlt_alloc_fail_after(0);
    int rc = mlt_model_step_f64(m, t.d, t.gd, b.xd, b.y, 4, &loss, NULL);
    mlt_alloc_fail_after(-1);
    ck_assert_int_eq(rc, -ENOMEM);
    ck_assert_int_eq(mlt_model_step_f64(m, t.d, t.gd, b.xd, b.y, 4, &loss, NULL), 0);
    /* threads whose buffers do not fit: one thread, and it still steps */
    for (long n = 0; n < 2; n++) { /* a slice's buffers, then the slices' gradients */
        mlt_alloc_fail_after(n);
        rc = mlt_model_set_threads(m, 2);
        mlt_alloc_fail_after(-1);
        ck_assert_int_eq(rc, -ENOMEM);
        ck_assert_uint_eq(mlt_model_threads(m), 1);
    }
    float fl;
    ck_assert_int_eq(mlt_model_step(m, t.f, t.gf, b.xf, b.y, 4, &fl, NULL), 0);
    batch_free(&b);
    tensors_free(&t);
    mlt_model_destroy(&m);
}
END_TEST

void cm_desc_tcases(Suite *s)
{
    TCase *tc;
    tc = tcase_create("init");
    tcase_add_loop_test(tc, test_init_deterministic, 0, N_MODELS);
    tcase_add_test(tc, test_init_bounds);
    suite_add_tcase(s, tc);

    tc = tcase_create("desc");
    tcase_add_test(tc, test_names_and_sizes);
    tcase_add_test(tc, test_bad_descriptions);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_test(tc, test_step_errors);
    tcase_add_test(tc, test_oom);
    suite_add_tcase(s, tc);
}
