/* gpu_fake.c - kernels/gpu.h on the CPU, for tests: linked instead of the
 * CUDA backend, it lets the code above that API (worker/model_gpu.c, the CUDA
 * path of worker/trainer.c, tests/unit/check_gpu.c's logic) run and be
 * checked on machines without a GPU.
 *
 * It fakes a hardware API, it does not mock our programs: mltunerd and
 * mltuner-worker run for real on it (tests/gpufake/meson.build). Its
 * arithmetic is the CPU reference's (kernels/cpu.h, kernels/optim.h), so a
 * run on the fake GPU must give a CPU run's results; what it checks is the
 * orchestration, with CUDA's rules kept where breaking them hides bugs:
 *  - Device and pinned memory are host memory in a table of allocations:
 *    copies check their direction and extent, and fresh memory is all 0xFF
 *    bytes (NaN floats), so that reading what nobody wrote shows.
 *  - The stream is a queue: an op runs when the host waits for it
 *    (mlt_gpu_sync; mlt_gpu_wait_mark runs it up to that mark), not when it
 *    is issued, so a result read before its wait is stale. A copy from or to
 *    pageable memory runs at once, after what was queued, as CUDA's does.
 *  - Between mlt_gpu_capture_begin and _end the ops are recorded (kind and
 *    arguments by value) and run only when the graph is launched; an
 *    allocation, free, sync or pageable copy meanwhile fails the capture.
 *  - gpu.h's -EINVALs are checked as the CUDA backend checks them; a misuse
 *    found while an op runs (a gather index past its source, a bias-gradient
 *    `ones` that is not all 1) is an asynchronous -EIO that sticks.
 * One context per thread, as the real one. The ops themselves run in
 * gpu_fake_ops.c; the types both files share are in gpu_fake_int.h. */
#include "kernels/gpu.h"
#include "tests/gpufake/gpu_fake_int.h"

#include "common/alloc.h"
#include "kernels/cpu.h"
#include "kernels/optim.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(mlt_gpu_t *g, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(mlt_gpu_t *g, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->err, sizeof g->err, fmt, ap);
    va_end(ap);
    return rc;
}

/* A misuse found while an op ran: every later wait reports it. */
void fake_async_fail(mlt_gpu_t *g, const char *what)
{
    if (g->async[0] == '\0')
        snprintf(g->async, sizeof g->async, "%s (fake GPU)", what);
}

static int async_rc(mlt_gpu_t *g)
{
    return g->async[0] ? fail(g, -EIO, "%s", g->async) : 0;
}

/* A call CUDA cannot capture, made while capturing: the capture fails. */
static int invalidate(mlt_gpu_t *g, const char *what)
{
    g->invalid = true;
    return fail(g, -EIO, "%s: cudaErrorStreamCaptureUnsupported (while capturing)", what);
}

void *fake_scratch(mlt_gpu_t *g, size_t bytes)
{
    if (bytes > g->scratch_n) {
        g->scratch = mlt_realloc(g->scratch, bytes);
        g->scratch_n = bytes;
    }
    return g->scratch;
}

static void set_why(char *why, size_t len, const char *text)
{
    if (why != NULL && len > 0)
        snprintf(why, len, "%s", text);
}

/* The allocation holding p, or NULL. */
const region_t *fake_region_of(const mlt_gpu_t *g, const void *p)
{
    for (size_t i = 0; i < g->n_mem; i++)
        if ((const char *)p >= g->mem[i].p && (const char *)p < g->mem[i].p + g->mem[i].n)
            return &g->mem[i];
    return NULL;
}

/* ---- the stream ---- */

static void push(oplist_t *l, const op_t *op)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->v = mlt_realloc(l->v, l->cap * sizeof *l->v);
    }
    l->v[l->n++] = *op;
}

/* Runs the first n queued ops, in order. */
static void run_queued(mlt_gpu_t *g, size_t n)
{
    if (n == 0)
        return;
    for (size_t i = 0; i < n; i++)
        fake_run(g, &g->queue.v[i]);
    memmove(g->queue.v, g->queue.v + n, (g->queue.n - n) * sizeof *g->queue.v);
    g->queue.n -= n;
}

/* Issues an op: queued, or recorded while capturing. */
static int submit(mlt_gpu_t *g, const op_t *op)
{
    if (g->capturing && g->invalid)
        return fail(g, -EIO, "cudaErrorStreamCaptureInvalidated: the capture failed earlier");
    push(g->capturing ? &g->capture : &g->queue, op);
    return async_rc(g);
}

/* ---- memory ---- */

/* [p, p+n) lies in one allocation of that kind. */
static bool inside(const mlt_gpu_t *g, const void *p, size_t n, bool pinned)
{
    const region_t *r = fake_region_of(g, p);
    return r && r->pinned == pinned && n <= (size_t)(r->p + r->n - (const char *)p);
}

static void *alloc(mlt_gpu_t *g, size_t n, bool pinned)
{
    const char *what = pinned ? "cudaHostAlloc" : "cudaMalloc";
    if (g->capturing) {
        invalidate(g, what);
        return NULL;
    }
    n = n ? n : 1;
    void *p = mlt_try_aligned(n);
    if (p == NULL) {
        fail(g, -ENOMEM, "%s of %zu bytes: cudaErrorMemoryAllocation (fake GPU)", what, n);
        return NULL;
    }
    memset(p, 0xFF, n);
    if (g->n_mem == g->cap_mem) {
        g->cap_mem = g->cap_mem ? 2 * g->cap_mem : 64;
        g->mem = mlt_realloc(g->mem, g->cap_mem * sizeof *g->mem);
    }
    g->mem[g->n_mem++] = (region_t){.p = p, .n = n, .pinned = pinned};
    return p;
}

/* cudaFree and cudaFreeHost wait for the device first. Freeing what is not
 * ours is a bug of the caller's: abort, loudly. */
static void release(mlt_gpu_t *g, void *p, bool pinned)
{
    if (p == NULL)
        return;
    if (g->capturing)
        invalidate(g, pinned ? "cudaFreeHost" : "cudaFree");
    run_queued(g, g->queue.n);
    for (size_t i = 0; i < g->n_mem; i++)
        if (g->mem[i].p == p && g->mem[i].pinned == pinned) {
            mlt_free(p);
            g->mem[i] = g->mem[--g->n_mem];
            return;
        }
    fprintf(stderr, "gpu_fake: %s(%p): not a live %s allocation\n",
            pinned ? "mlt_gpu_host_free" : "mlt_gpu_free", p, pinned ? "pinned" : "device");
    abort();
}

/* ---- devices and contexts ---- */

bool mlt_gpu_built(void)
{
    return true;
}

int mlt_gpu_probe(char *why, size_t whylen)
{
    set_why(why, whylen, "");
    return 1;
}

mlt_gpu_t *mlt_gpu_new(int device, char *err, size_t errlen)
{
    if (device != 0) {
        set_why(err, errlen, "no usable CUDA device (the fake GPU is device 0)");
        errno = ENODEV;
        return NULL;
    }
    mlt_gpu_t *g = mlt_calloc(1, sizeof *g);
    g->tf32 = true;
    return g;
}

void mlt_gpu_destroy(mlt_gpu_t **gp)
{
    if (gp == NULL || *gp == NULL)
        return;
    mlt_gpu_t *g = *gp;
    run_queued(g, g->queue.n);
    mlt_free(g->queue.v);
    mlt_free(g->capture.v);
    mlt_free(g->mem); /* allocations the caller did not free stay: a leak checker sees them */
    mlt_free(g->scratch);
    mlt_free(g);
    *gp = NULL;
}

const char *mlt_gpu_device_name(const mlt_gpu_t *g)
{
    (void)g;
    return FAKE_NAME;
}

int mlt_gpu_device_cc(const mlt_gpu_t *g)
{
    (void)g;
    return 90;
}

const char *mlt_gpu_error(const mlt_gpu_t *g)
{
    return g->err;
}

void mlt_gpu_set_tf32(mlt_gpu_t *g, bool allow)
{
    g->tf32 = allow;
}

bool mlt_gpu_tf32(const mlt_gpu_t *g)
{
    return g->tf32;
}

/* ---- memory and copies ---- */

void *mlt_gpu_malloc(mlt_gpu_t *g, size_t n)
{
    return alloc(g, n, false);
}

void mlt_gpu_free(mlt_gpu_t *g, void *d)
{
    release(g, d, false);
}

void *mlt_gpu_host_malloc(mlt_gpu_t *g, size_t n)
{
    return alloc(g, n, true);
}

void mlt_gpu_host_free(mlt_gpu_t *g, void *h)
{
    release(g, h, true);
}

/* A copy of n bytes whose host side is `host` (NULL: device to device).
 * Pinned: queued like any op. Pageable: run now, after the queue; never
 * captured. */
static int copy(mlt_gpu_t *g, const char *what, void *dst, const void *src, size_t n,
                const void *host)
{
    if (n == 0)
        return 0;
    const bool dev_ok = host == src   ? inside(g, dst, n, false)
                        : host == dst ? inside(g, src, n, false)
                                      : inside(g, dst, n, false) && inside(g, src, n, false);
    if (!dev_ok)
        return fail(g, -EIO, "%s: cudaErrorInvalidValue: %zu bytes not in device memory", what, n);
    const op_t op = {.kind = OP_COPY, .copy = {dst, src, n, 0.0f}};
    if (host == NULL || inside(g, host, n, true))
        return submit(g, &op);
    if (fake_region_of(g, host) != NULL)
        return fail(g, -EIO, "%s: cudaErrorInvalidValue: host side not %zu bytes of host memory",
                    what, n);
    if (g->capturing)
        return invalidate(g, "cudaMemcpyAsync (pageable host memory)");
    run_queued(g, g->queue.n);
    fake_run(g, &op);
    return async_rc(g);
}

int mlt_gpu_upload(mlt_gpu_t *g, void *d_dst, const void *src, size_t n)
{
    return copy(g, "cudaMemcpyAsync (host to device)", d_dst, src, n, src);
}

int mlt_gpu_download(mlt_gpu_t *g, void *dst, const void *d_src, size_t n)
{
    return copy(g, "cudaMemcpyAsync (device to host)", dst, d_src, n, dst);
}

int mlt_gpu_copy(mlt_gpu_t *g, void *d_dst, const void *d_src, size_t n)
{
    return copy(g, "cudaMemcpyAsync (device to device)", d_dst, d_src, n, NULL);
}

int mlt_gpu_zero(mlt_gpu_t *g, void *d, size_t n)
{
    if (n == 0)
        return 0;
    if (!inside(g, d, n, false))
        return fail(g, -EIO, "cudaMemsetAsync: cudaErrorInvalidValue: %zu bytes not on the device",
                    n);
    return submit(g, &(op_t){.kind = OP_ZERO, .copy = {d, NULL, n, 0.0f}});
}

int mlt_gpu_fill(mlt_gpu_t *g, float *d, size_t n, float v)
{
    if (n == 0)
        return 0;
    if (!inside(g, d, n * sizeof *d, false))
        return fail(g, -EIO, "fill kernel: %zu floats not in device memory", n);
    return submit(g, &(op_t){.kind = OP_FILL, .copy = {d, NULL, n, v}});
}

int mlt_gpu_sync(mlt_gpu_t *g)
{
    if (g->capturing)
        return invalidate(g, "cudaStreamSynchronize");
    run_queued(g, g->queue.n);
    return async_rc(g);
}

/* ---- CUDA graphs ---- */

int mlt_gpu_capture_begin(mlt_gpu_t *g)
{
    if (g->capturing)
        return fail(g, -EINVAL, "mlt_gpu_capture_begin: already capturing");
    g->capturing = true;
    g->invalid = false;
    g->capture.n = 0;
    return 0;
}

int mlt_gpu_capture_end(mlt_gpu_t *g, mlt_gpu_graph_t **out)
{
    *out = NULL;
    if (!g->capturing)
        return fail(g, -EINVAL, "mlt_gpu_capture_end: not capturing");
    g->capturing = false;
    if (g->invalid) {
        char why[sizeof g->err];
        snprintf(why, sizeof why, "%s", g->err);
        return fail(g, -EIO, "cudaStreamEndCapture: cudaErrorStreamCaptureInvalidated (%s)", why);
    }
    mlt_gpu_graph_t *gr = mlt_calloc(1, sizeof *gr);
    for (size_t i = 0; i < g->capture.n; i++)
        push(&gr->ops, &g->capture.v[i]);
    *out = gr;
    return 0;
}

bool mlt_gpu_capturing(const mlt_gpu_t *g)
{
    return g->capturing;
}

int mlt_gpu_graph_launch(mlt_gpu_t *g, const mlt_gpu_graph_t *gr)
{
    int rc = 0;
    for (size_t i = 0; i < gr->ops.n && !rc; i++)
        rc = submit(g, &gr->ops.v[i]);
    return rc;
}

void mlt_gpu_graph_destroy(mlt_gpu_graph_t **grp)
{
    if (grp == NULL || *grp == NULL)
        return;
    mlt_free((*grp)->ops.v);
    mlt_free(*grp);
    *grp = NULL;
}

/* ---- marks ---- */

int mlt_gpu_mark(mlt_gpu_t *g, uint32_t k)
{
    if (k >= MLT_GPU_MARKS)
        return fail(g, -EINVAL, "mlt_gpu_mark: mark %u of %d", k, MLT_GPU_MARKS);
    if (!g->mark_made[k] && g->capturing)
        return fail(g, -EINVAL, "mlt_gpu_mark: mark %u first recorded in a capture", k);
    g->mark_made[k] = true;
    return submit(g, &(op_t){.kind = OP_MARK, .mark = k});
}

int mlt_gpu_wait_mark(mlt_gpu_t *g, uint32_t k)
{
    if (k >= MLT_GPU_MARKS || !g->mark_made[k])
        return fail(g, -EINVAL, "mlt_gpu_wait_mark: mark %u was never recorded", k);
    if (g->capturing)
        return fail(g, -EINVAL, "mlt_gpu_wait_mark: not while capturing");
    size_t upto = 0; /* just past the mark's last recording still queued */
    for (size_t i = 0; i < g->queue.n; i++)
        if (g->queue.v[i].kind == OP_MARK && g->queue.v[i].mark == k)
            upto = i + 1;
    run_queued(g, upto);
    return async_rc(g);
}

/* ---- dense layers ---- */

int mlt_gpu_gemm(mlt_gpu_t *g, bool trans_a, bool trans_b, size_t m, size_t n, size_t k,
                 float alpha, const float *a, size_t lda, const float *b, size_t ldb, float beta,
                 float *c, size_t ldc)
{
    if (m > INT_MAX || n > INT_MAX || k > INT_MAX || lda > INT_MAX || ldb > INT_MAX ||
        ldc > INT_MAX)
        return fail(g, -EINVAL, "mlt_gpu_gemm: a dimension exceeds INT_MAX");
    if (m == 0 || n == 0)
        return 0;
    return submit(
        g, &(op_t){.kind = OP_GEMM,
                   .gemm = {trans_a, trans_b, m, n, k, lda, ldb, ldc, alpha, beta, a, b, c}});
}

static int elem(mlt_gpu_t *g, op_kind_t kind, float *y, const float *b, size_t rows, size_t cols)
{
    if (rows * cols == 0)
        return 0;
    return submit(g, &(op_t){.kind = kind, .elem = {y, b, rows, cols}});
}

int mlt_gpu_bias_add(mlt_gpu_t *g, float *y, const float *bias, size_t rows, size_t cols)
{
    return elem(g, OP_BIAS_ADD, y, bias, rows, cols);
}

int mlt_gpu_bias_relu(mlt_gpu_t *g, float *y, const float *bias, size_t rows, size_t cols)
{
    return elem(g, OP_BIAS_RELU, y, bias, rows, cols);
}

int mlt_gpu_relu_backward(mlt_gpu_t *g, float *dy, const float *y, size_t n)
{
    return elem(g, OP_RELU_BACKWARD, dy, y, n, 1);
}

int mlt_gpu_bias_grad(mlt_gpu_t *g, float *db, const float *dy, size_t rows, size_t cols,
                      bool accumulate, const float *ones)
{
    if (rows > INT_MAX || cols > INT_MAX)
        return fail(g, -EINVAL, "mlt_gpu_bias_grad: a dimension exceeds INT_MAX");
    if (cols == 0)
        return 0;
    if (rows == 0)
        return accumulate ? 0 : mlt_gpu_zero(g, db, cols * sizeof *db);
    return submit(
        g, &(op_t){.kind = OP_BIAS_GRAD, .bias_grad = {db, dy, ones, rows, cols, accumulate}});
}

int mlt_gpu_softmax_xent(mlt_gpu_t *g, const float *z, const uint8_t *y, size_t rows,
                         size_t classes, float *dz, double *d_loss, uint32_t *d_correct,
                         bool accumulate)
{
    if (classes == 0 || classes > 1024)
        return fail(g, -EINVAL, "mlt_gpu_softmax_xent: %zu classes (1..1024)", classes);
    /* rows 0 runs too: it writes the zero sums */
    return submit(g, &(op_t){.kind = OP_XENT,
                             .xent = {z, y, rows, classes, dz, d_loss, d_correct, accumulate}});
}

/* ---- convolution, pooling, layout ---- */

mlt_gpu_conv_t *mlt_gpu_conv_new(mlt_gpu_t *g, size_t n, size_t h, size_t w, size_t c, size_t k,
                                 size_t oc, bool need_dx, char *err, size_t errlen)
{
    if (g->capturing) {
        set_why(err, errlen, "mlt_gpu_conv_new: not while a graph is being captured");
        return NULL;
    }
    if (n > INT_MAX || h > INT_MAX || w > INT_MAX || c > INT_MAX || oc > INT_MAX || k > INT_MAX ||
        k % 2 == 0 || n == 0 || h == 0 || w == 0 || c == 0 || oc == 0 ||
        n * h * w * (c > oc ? c : oc) > (size_t)INT_MAX) {
        fail(g, -EINVAL, "convolution %zux%zu of %zux%zux%zux%zu into %zu: bad or too large", k, k,
             n, h, w, c, oc);
        set_why(err, errlen, g->err);
        return NULL;
    }
    mlt_gpu_conv_t *p = mlt_malloc(sizeof *p);
    *p = (mlt_gpu_conv_t){n, h, w, c, k, oc, need_dx};
    return p;
}

void mlt_gpu_conv_destroy(mlt_gpu_t *g, mlt_gpu_conv_t **pp)
{
    if (pp == NULL || *pp == NULL)
        return;
    if (g->capturing) /* the CUDA backend frees the plan's workspace */
        invalidate(g, "cudaFree (a convolution's workspace)");
    run_queued(g, g->queue.n);
    mlt_free(*pp);
    *pp = NULL;
}

const char *mlt_gpu_conv_describe(const mlt_gpu_conv_t *p)
{
    (void)p;
    return "fake GPU: im2col + mlt_cpu_gemm per chunk of images";
}

int mlt_gpu_conv_forward(mlt_gpu_t *g, const mlt_gpu_conv_t *p, const float *x, const float *wt,
                         float *y)
{
    return submit(g, &(op_t){.kind = OP_CONV_FWD, .conv = {p, x, wt, NULL, y, false}});
}

int mlt_gpu_conv_backward_data(mlt_gpu_t *g, const mlt_gpu_conv_t *p, const float *dy,
                               const float *wt, float *dx)
{
    if (!p->need_dx)
        return fail(g, -EINVAL, "mlt_gpu_conv_backward_data: the plan was made without need_dx");
    return submit(g, &(op_t){.kind = OP_CONV_DATA, .conv = {p, NULL, wt, dy, dx, false}});
}

int mlt_gpu_conv_backward_filter(mlt_gpu_t *g, const mlt_gpu_conv_t *p, const float *x,
                                 const float *dy, float *dw, bool accumulate)
{
    return submit(g, &(op_t){.kind = OP_CONV_FILTER, .conv = {p, x, NULL, dy, dw, accumulate}});
}

int mlt_gpu_maxpool(mlt_gpu_t *g, const float *x, const float *bias, size_t n, size_t h, size_t w,
                    size_t c, size_t p, float *y, uint32_t *idx)
{
    if (p == 0 || h * w * c > UINT32_MAX)
        return fail(g, -EINVAL, "mlt_gpu_maxpool: pool 0 or an image over 2^32 elements");
    if (n * (h / p) * (w / p) * c == 0)
        return 0;
    return submit(g, &(op_t){.kind = OP_MAXPOOL,
                             .pool = {.x = x,
                                      .bias = bias,
                                      .n = n,
                                      .h = h,
                                      .w = w,
                                      .c = c,
                                      .p = p,
                                      .out = y,
                                      .oidx = idx}});
}

int mlt_gpu_maxpool_backward(mlt_gpu_t *g, const float *dy, const float *y, const uint32_t *idx,
                             size_t n, size_t h, size_t w, size_t c, size_t p, float *dx)
{
    if (p == 0)
        return fail(g, -EINVAL, "mlt_gpu_maxpool_backward: pool 0");
    if (n * h * w * c == 0)
        return 0;
    return submit(
        g,
        &(op_t){
            .kind = OP_MAXPOOL_BACKWARD,
            .pool = {
                .x = dy, .y = y, .idx = idx, .n = n, .h = h, .w = w, .c = c, .p = p, .out = dx}});
}

int mlt_gpu_nchw_to_nhwc(mlt_gpu_t *g, const float *x, size_t n, size_t c, size_t h, size_t w,
                         float *y)
{
    if (n * c * h * w == 0)
        return 0;
    return submit(g, &(op_t){.kind = OP_NCHW_TO_NHWC,
                             .pool = {.x = x, .n = n, .c = c, .h = h, .w = w, .out = y}});
}

/* ---- data on the device ---- */

static int gather(mlt_gpu_t *g, const void *src, size_t row, const uint32_t *idx, size_t n,
                  void *dst)
{
    if (n * row == 0)
        return 0;
    return submit(g, &(op_t){.kind = OP_GATHER, .gather = {src, idx, dst, row, n}});
}

int mlt_gpu_gather4(mlt_gpu_t *g, const void *src, size_t width, const uint32_t *idx, size_t n,
                    void *dst)
{
    return gather(g, src, 4 * width, idx, n, dst);
}

int mlt_gpu_gather1(mlt_gpu_t *g, const uint8_t *src, size_t width, const uint32_t *idx, size_t n,
                    uint8_t *dst)
{
    return gather(g, src, width, idx, n, dst);
}

/* ---- matrix factorisation ---- */

int mlt_gpu_mf_grad(mlt_gpu_t *g, const float *U, const float *V, size_t rank, size_t n_users,
                    size_t n_items, const uint32_t *users, const uint32_t *items, const float *r,
                    size_t batch, float l2, float scale, float *dU, float *dV, double *d_sse)
{
    return submit(g, &(op_t){.kind = OP_MF,
                             .mf = {U, V, r, users, items, rank, n_users, n_items, batch, l2, scale,
                                    dU, dV, d_sse, false}});
}

int mlt_gpu_mf_sse(mlt_gpu_t *g, const float *U, const float *V, size_t rank, size_t n_users,
                   size_t n_items, const uint32_t *users, const uint32_t *items, const float *r,
                   size_t n, double *d_sse, bool accumulate)
{
    return submit(g, &(op_t){.kind = OP_MF,
                             .mf = {U, V, r, users, items, rank, n_users, n_items, n, 0.0f, 0.0f,
                                    NULL, NULL, d_sse, accumulate}});
}

/* ---- optimizer ---- */

int mlt_gpu_optim_apply(mlt_gpu_t *g, mlt_rule_t rule, const mlt_hyper_t *h, float *w, float *state,
                        const float *grad, size_t n, uint64_t step)
{
    if ((unsigned)rule >= (unsigned)MLT_RULE_COUNT_)
        return fail(g, -EINVAL, "mlt_gpu_optim_apply: invalid rule %d", (int)rule);
    if (mlt_rule_schedule_free(rule))
        return fail(g, -EINVAL, "mlt_gpu_optim_apply: %s keeps per-array scalars",
                    mlt_rule_name(rule));
    if (n == 0)
        return 0;
    return submit(g, &(op_t){.kind = OP_OPTIM, .optim = {rule, *h, w, state, grad, n, step}});
}
