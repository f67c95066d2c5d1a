/* gpu_stub.c - kernels/gpu.h in a build without CUDA (-Dcuda=disabled, or no
 * nvcc): mlt_gpu_probe finds no device ("mltuner was built without CUDA"),
 * mlt_gpu_new fails with that reason, and everything else, which cannot be
 * reached without a context, returns -ENOSYS or NULL. So the code above this
 * layer (worker/model_gpu.c, the trainer, the tests) compiles and links the
 * same in both builds. */
#include "kernels/gpu.h"

#include <errno.h>
#include <stdio.h>

#define NOT_BUILT "mltuner was built without CUDA (configure with -Dcuda=enabled where nvcc is)"

bool mlt_gpu_built(void)
{
    return false;
}

int mlt_gpu_probe(char *why, size_t whylen)
{
    if (why != NULL && whylen > 0)
        snprintf(why, whylen, "%s", NOT_BUILT);
    return 0;
}

mlt_gpu_t *mlt_gpu_new(int device, char *err, size_t errlen)
{
    (void)device;
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", NOT_BUILT);
    errno = ENOSYS;
    return NULL;
}

void mlt_gpu_destroy(mlt_gpu_t **gp)
{
    if (gp != NULL)
        *gp = NULL;
}

const char *mlt_gpu_device_name(const mlt_gpu_t *g)
{
    (void)g;
    return "";
}

int mlt_gpu_device_cc(const mlt_gpu_t *g)
{
    (void)g;
    return 0;
}

const char *mlt_gpu_error(const mlt_gpu_t *g)
{
    (void)g;
    return NOT_BUILT;
}

void mlt_gpu_set_tf32(mlt_gpu_t *g, bool allow)
{
    (void)g;
    (void)allow;
}

bool mlt_gpu_tf32(const mlt_gpu_t *g)
{
    (void)g;
    return false;
}

void *mlt_gpu_malloc(mlt_gpu_t *g, size_t n)
{
    (void)g;
    (void)n;
    return NULL;
}

void mlt_gpu_free(mlt_gpu_t *g, void *d)
{
    (void)g;
    (void)d;
}

void *mlt_gpu_host_malloc(mlt_gpu_t *g, size_t n)
{
    (void)g;
    (void)n;
    return NULL;
}

void mlt_gpu_host_free(mlt_gpu_t *g, void *h)
{
    (void)g;
    (void)h;
}

int mlt_gpu_upload(mlt_gpu_t *g, void *d_dst, const void *src, size_t n)
{
    (void)g, (void)d_dst, (void)src, (void)n;
    return -ENOSYS;
}

int mlt_gpu_download(mlt_gpu_t *g, void *dst, const void *d_src, size_t n)
{
    (void)g, (void)dst, (void)d_src, (void)n;
    return -ENOSYS;
}

int mlt_gpu_copy(mlt_gpu_t *g, void *d_dst, const void *d_src, size_t n)
{
    (void)g, (void)d_dst, (void)d_src, (void)n;
    return -ENOSYS;
}

int mlt_gpu_zero(mlt_gpu_t *g, void *d, size_t n)
{
    (void)g, (void)d, (void)n;
    return -ENOSYS;
}

int mlt_gpu_fill(mlt_gpu_t *g, float *d, size_t n, float v)
{
    (void)g, (void)d, (void)n, (void)v;
    return -ENOSYS;
}

int mlt_gpu_sync(mlt_gpu_t *g)
{
    (void)g;
    return -ENOSYS;
}

int mlt_gpu_mark(mlt_gpu_t *g, uint32_t k)
{
    (void)g;
    (void)k;
    return -ENOSYS;
}

int mlt_gpu_wait_mark(mlt_gpu_t *g, uint32_t k)
{
    (void)g;
    (void)k;
    return -ENOSYS;
}

int mlt_gpu_capture_begin(mlt_gpu_t *g)
{
    (void)g;
    return -ENOSYS;
}

int mlt_gpu_capture_end(mlt_gpu_t *g, mlt_gpu_graph_t **out)
{
    (void)g;
    *out = NULL;
    return -ENOSYS;
}

bool mlt_gpu_capturing(const mlt_gpu_t *g)
{
    (void)g;
    return false;
}

int mlt_gpu_graph_launch(mlt_gpu_t *g, const mlt_gpu_graph_t *gr)
{
    (void)g, (void)gr;
    return -ENOSYS;
}

void mlt_gpu_graph_destroy(mlt_gpu_graph_t **grp)
{
    if (grp != NULL)
        *grp = NULL;
}

int mlt_gpu_gemm(mlt_gpu_t *g, bool trans_a, bool trans_b, size_t m, size_t n, size_t k,
                 float alpha, const float *a, size_t lda, const float *b, size_t ldb, float beta,
                 float *c, size_t ldc)
{
    (void)g, (void)trans_a, (void)trans_b, (void)m, (void)n, (void)k, (void)alpha, (void)a;
    (void)lda, (void)b, (void)ldb, (void)beta, (void)c, (void)ldc;
    return -ENOSYS;
}

int mlt_gpu_bias_add(mlt_gpu_t *g, float *y, const float *bias, size_t rows, size_t cols)
{
    (void)g, (void)y, (void)bias, (void)rows, (void)cols;
    return -ENOSYS;
}

int mlt_gpu_bias_relu(mlt_gpu_t *g, float *y, const float *bias, size_t rows, size_t cols)
{
    (void)g, (void)y, (void)bias, (void)rows, (void)cols;
    return -ENOSYS;
}

int mlt_gpu_relu_backward(mlt_gpu_t *g, float *dy, const float *y, size_t n)
{
    (void)g, (void)dy, (void)y, (void)n;
    return -ENOSYS;
}

int mlt_gpu_bias_grad(mlt_gpu_t *g, float *db, const float *dy, size_t rows, size_t cols,
                      bool accumulate, const float *ones)
{
    (void)g, (void)db, (void)dy, (void)rows, (void)cols, (void)accumulate, (void)ones;
    return -ENOSYS;
}

int mlt_gpu_softmax_xent(mlt_gpu_t *g, const float *z, const uint8_t *y, size_t rows,
                         size_t classes, float *dz, double *d_loss, uint32_t *d_correct,
                         bool accumulate)
{
    (void)g, (void)z, (void)y, (void)rows, (void)classes, (void)dz, (void)d_loss;
    (void)d_correct, (void)accumulate;
    return -ENOSYS;
}

mlt_gpu_conv_t *mlt_gpu_conv_new(mlt_gpu_t *g, size_t n, size_t h, size_t w, size_t c, size_t k,
                                 size_t oc, bool need_dx, char *err, size_t errlen)
{
    (void)g, (void)n, (void)h, (void)w, (void)c, (void)k, (void)oc, (void)need_dx;
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", NOT_BUILT);
    return NULL;
}

void mlt_gpu_conv_destroy(mlt_gpu_t *g, mlt_gpu_conv_t **pp)
{
    (void)g;
    if (pp != NULL)
        *pp = NULL;
}

const char *mlt_gpu_conv_describe(const mlt_gpu_conv_t *p)
{
    (void)p;
    return NOT_BUILT;
}

int mlt_gpu_conv_forward(mlt_gpu_t *g, const mlt_gpu_conv_t *p, const float *x, const float *wt,
                         float *y)
{
    (void)g, (void)p, (void)x, (void)wt, (void)y;
    return -ENOSYS;
}

int mlt_gpu_conv_backward_data(mlt_gpu_t *g, const mlt_gpu_conv_t *p, const float *dy,
                               const float *wt, float *dx)
{
    (void)g, (void)p, (void)dy, (void)wt, (void)dx;
    return -ENOSYS;
}

int mlt_gpu_conv_backward_filter(mlt_gpu_t *g, const mlt_gpu_conv_t *p, const float *x,
                                 const float *dy, float *dw, bool accumulate)
{
    (void)g, (void)p, (void)x, (void)dy, (void)dw, (void)accumulate;
    return -ENOSYS;
}

int mlt_gpu_maxpool(mlt_gpu_t *g, const float *x, const float *bias, size_t n, size_t h, size_t w,
                    size_t c, size_t p, float *y, uint32_t *idx)
{
    (void)g, (void)x, (void)bias, (void)n, (void)h, (void)w, (void)c, (void)p, (void)y, (void)idx;
    return -ENOSYS;
}

int mlt_gpu_maxpool_backward(mlt_gpu_t *g, const float *dy, const float *y, const uint32_t *idx,
                             size_t n, size_t h, size_t w, size_t c, size_t p, float *dx)
{
    (void)g, (void)dy, (void)y, (void)idx, (void)n, (void)h, (void)w, (void)c, (void)p, (void)dx;
    return -ENOSYS;
}

int mlt_gpu_nchw_to_nhwc(mlt_gpu_t *g, const float *x, size_t n, size_t c, size_t h, size_t w,
                         float *y)
{
    (void)g, (void)x, (void)n, (void)c, (void)h, (void)w, (void)y;
    return -ENOSYS;
}

int mlt_gpu_gather4(mlt_gpu_t *g, const void *src, size_t width, const uint32_t *idx, size_t n,
                    void *dst)
{
    (void)g, (void)src, (void)width, (void)idx, (void)n, (void)dst;
    return -ENOSYS;
}

int mlt_gpu_gather1(mlt_gpu_t *g, const uint8_t *src, size_t width, const uint32_t *idx, size_t n,
                    uint8_t *dst)
{
    (void)g, (void)src, (void)width, (void)idx, (void)n, (void)dst;
    return -ENOSYS;
}

int mlt_gpu_mf_grad(mlt_gpu_t *g, const float *U, const float *V, size_t rank, size_t n_users,
                    size_t n_items, const uint32_t *users, const uint32_t *items, const float *r,
                    size_t batch, float l2, float scale, float *dU, float *dV, double *d_sse)
{
    (void)g, (void)U, (void)V, (void)rank, (void)n_users, (void)n_items, (void)users;
    (void)items, (void)r, (void)batch, (void)l2, (void)scale, (void)dU, (void)dV, (void)d_sse;
    return -ENOSYS;
}

int mlt_gpu_mf_sse(mlt_gpu_t *g, const float *U, const float *V, size_t rank, size_t n_users,
                   size_t n_items, const uint32_t *users, const uint32_t *items, const float *r,
                   size_t n, double *d_sse, bool accumulate)
{
    (void)g, (void)U, (void)V, (void)rank, (void)n_users, (void)n_items, (void)users;
    (void)items, (void)r, (void)n, (void)d_sse, (void)accumulate;
    return -ENOSYS;
}

int mlt_gpu_optim_apply(mlt_gpu_t *g, mlt_rule_t rule, const mlt_hyper_t *h, float *w,
                        float *state, const float *grad, size_t n, uint64_t step)
{
    (void)g, (void)rule, (void)h, (void)w, (void)state, (void)grad, (void)n, (void)step;
    return -ENOSYS;
}
