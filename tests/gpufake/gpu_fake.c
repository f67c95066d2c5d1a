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
 * One context per thread, as the real one. */
#include "kernels/gpu.h"

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

#define FAKE_NAME "fake GPU (CPU, tests/gpufake)"

/* im2col scratch per chunk of images: worker/model.c's COL_CHUNK_BYTES, so
 * that a weight gradient is summed over the chunks in the CPU model's order */
#define COL_CHUNK_BYTES (1536u << 10)

typedef enum {
    OP_COPY,
    OP_ZERO,
    OP_FILL,
    OP_MARK,
    OP_GEMM,
    OP_BIAS_ADD,
    OP_BIAS_RELU,
    OP_RELU_BACKWARD,
    OP_BIAS_GRAD,
    OP_XENT,
    OP_CONV_FWD,
    OP_CONV_DATA,
    OP_CONV_FILTER,
    OP_MAXPOOL,
    OP_MAXPOOL_BACKWARD,
    OP_NCHW_TO_NHWC,
    OP_GATHER,
    OP_MF,
    OP_OPTIM
} op_kind_t;

/* An op and its arguments, by value (a graph keeps those of its capture). */
typedef struct op {
    op_kind_t kind;
    union {
        struct {
            void *dst;
            const void *src;
            size_t n; /* bytes; zero and fill: bytes, floats */
            float v;
        } copy; /* also zero, fill */
        uint32_t mark;
        struct {
            bool ta, tb;
            size_t m, n, k, lda, ldb, ldc;
            float alpha, beta;
            const float *a, *b;
            float *c;
        } gemm;
        struct {
            float *y;          /* relu_backward: dy */
            const float *b;    /* the bias; relu_backward: y */
            size_t rows, cols; /* relu_backward: n x 1 */
        } elem;
        struct {
            float *db;
            const float *dy, *ones;
            size_t rows, cols;
            bool acc;
        } bias_grad;
        struct {
            const float *z;
            const uint8_t *y;
            size_t rows, classes;
            float *dz;
            double *loss;
            uint32_t *right;
            bool acc;
        } xent;
        struct {
            const mlt_gpu_conv_t *p;
            const float *x, *wt, *dy; /* the two inputs of the direction */
            float *out;
            bool acc;
        } conv;
        struct {
            const float *x, *y, *bias; /* backward: dy, the pooled y or NULL */
            const uint32_t *idx;       /* backward */
            size_t n, h, w, c, p;
            float *out;     /* forward: y; backward: dx; nchw_to_nhwc: y (n c h w) */
            uint32_t *oidx; /* forward */
        } pool;
        struct {
            const void *src;
            const uint32_t *idx;
            void *dst;
            size_t row, n; /* bytes per row, rows */
        } gather;
        struct {
            const float *U, *V, *r;
            const uint32_t *users, *items;
            size_t rank, n_users, n_items, n;
            float l2, scale;
            float *dU, *dV; /* NULL: mf_sse */
            double *sse;
            bool acc;
        } mf;
        struct {
            mlt_rule_t rule;
            mlt_hyper_t h;
            float *w, *state;
            const float *grad;
            size_t n;
            uint64_t step;
        } optim;
    };
} op_t;

typedef struct oplist {
    op_t *v;
    size_t n, cap;
} oplist_t;

typedef struct region {
    char *p;     /* an allocation of ours */
    size_t n;    /* its bytes */
    bool pinned; /* mlt_gpu_host_malloc, else mlt_gpu_malloc */
} region_t;

struct mlt_gpu {
    oplist_t queue;                /* issued, not yet run */
    oplist_t capture;              /* recorded since mlt_gpu_capture_begin */
    bool capturing, invalid;       /* capturing; something failed the capture */
    region_t *mem;                 /* the live allocations */
    size_t n_mem, cap_mem;         /* their number, the room for them */
    bool tf32;                     /* kept, not used: the arithmetic is FP32 */
    bool mark_made[MLT_GPU_MARKS]; /* recorded once outside a capture (CUDA's rule) */
    void *scratch;                 /* host room for the ops that need some */
    size_t scratch_n;              /* its bytes */
    char async[256];               /* an error found while an op ran: sticks */
    char err[512];                 /* the last error ("" when none) */
};

struct mlt_gpu_graph {
    oplist_t ops;
};

struct mlt_gpu_conv {
    size_t n, h, w, c, k, oc;
    bool need_dx;
};

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
static void async_fail(mlt_gpu_t *g, const char *what)
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

static void *scratch(mlt_gpu_t *g, size_t bytes)
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
static const region_t *region_of(const mlt_gpu_t *g, const void *p)
{
    for (size_t i = 0; i < g->n_mem; i++)
        if ((const char *)p >= g->mem[i].p && (const char *)p < g->mem[i].p + g->mem[i].n)
            return &g->mem[i];
    return NULL;
}

/* ---- the ops, run on the host through cpu.h ---- */

/* mlt_cpu_softmax_xent, whose label precondition gpu.h turns into a NaN row:
 * such a row runs with label 0 (its right answer taken back), then is
 * poisoned. The CPU's mean times rows is the SUM gpu.h returns. */
static void run_xent(mlt_gpu_t *g, const op_t *o)
{
    const size_t rows = o->xent.rows, classes = o->xent.classes;
    uint8_t *lab = scratch(g, rows + 1);
    uint32_t right = 0, bad_right = 0, one;
    memcpy(lab, o->xent.y, rows);
    for (size_t r = 0; r < rows; r++)
        if (lab[r] >= classes) { /* before the call: dz may be z */
            lab[r] = 0;
            mlt_cpu_softmax_xent(o->xent.z + r * classes, lab + r, 1, classes, NULL, &one);
            bad_right += one;
        }
    double sum = mlt_cpu_softmax_xent(o->xent.z, lab, rows, classes, o->xent.dz, &right) * rows;
    for (size_t r = 0; r < rows; r++)
        if (o->xent.y[r] >= classes) {
            sum = NAN;
            for (size_t j = 0; o->xent.dz != NULL && j < classes; j++)
                o->xent.dz[r * classes + j] = NAN;
        }
    right -= bad_right;
    *o->xent.loss = o->xent.acc ? *o->xent.loss + sum : sum;
    *o->xent.right = o->xent.acc ? *o->xent.right + right : right;
}

/* Images per im2col chunk. */
static size_t conv_chunk(const mlt_gpu_conv_t *p)
{
    size_t per = p->h * p->w * p->k * p->k * p->c, chunk = COL_CHUNK_BYTES / sizeof(float) / per;
    return chunk < 1 ? 1 : chunk > p->n ? p->n : chunk;
}

/* As cpu.h's conv-as-GEMM, per chunk of images: y = col W^T, dx =
 * col2im(dy W), dw = dy^T col (+ dw), with W the oc x (k*k*c) KRSC weights. */
static void run_conv(mlt_gpu_t *g, const op_t *o)
{
    const mlt_gpu_conv_t *p = o->conv.p;
    const size_t hw = p->h * p->w, kkc = p->k * p->k * p->c, chunk = conv_chunk(p);
    float *col = scratch(g, chunk * hw * kkc * sizeof *col);
    for (size_t b0 = 0; b0 < p->n; b0 += chunk) {
        const size_t nb = p->n - b0 < chunk ? p->n - b0 : chunk, rows = nb * hw;
        const size_t xo = b0 * hw * p->c, yo = b0 * hw * p->oc; /* the chunk's offsets */
        if (o->kind == OP_CONV_DATA) {
            mlt_cpu_gemm(false, false, rows, kkc, p->oc, 1.0f, o->conv.dy + yo, p->oc, o->conv.wt,
                         kkc, 0.0f, col, kkc);
            mlt_cpu_col2im(col, nb, p->h, p->w, p->c, p->k, o->conv.out + xo);
            continue;
        }
        mlt_cpu_im2col(o->conv.x + xo, nb, p->h, p->w, p->c, p->k, col);
        if (o->kind == OP_CONV_FWD)
            mlt_cpu_gemm(false, true, rows, p->oc, kkc, 1.0f, col, kkc, o->conv.wt, kkc, 0.0f,
                         o->conv.out + yo, p->oc);
        else
            mlt_cpu_gemm(true, false, p->oc, kkc, rows, 1.0f, o->conv.dy + yo, p->oc, col, kkc,
                         o->conv.acc || b0 > 0 ? 1.0f : 0.0f, o->conv.out, kkc);
    }
}

/* With the pooled y: the ReLU undone on a copy of dy (dy is left as it is),
 * then the pool backward. */
static void run_maxpool_backward(mlt_gpu_t *g, const op_t *o)
{
    const float *dy = o->pool.x;
    if (o->pool.y != NULL) {
        const size_t ny = o->pool.n * (o->pool.h / o->pool.p) * (o->pool.w / o->pool.p) * o->pool.c;
        float *d = scratch(g, (ny ? ny : 1) * sizeof *d);
        memcpy(d, dy, ny * sizeof *d);
        mlt_cpu_relu_backward(d, o->pool.y, ny);
        dy = d;
    }
    mlt_cpu_maxpool_backward(dy, o->pool.idx, o->pool.n, o->pool.h, o->pool.w, o->pool.c, o->pool.p,
                             o->pool.out);
}

/* An index past the source's allocation is an error (the kernel would read
 * out of bounds). */
static void run_gather(mlt_gpu_t *g, const op_t *o)
{
    const region_t *r = region_of(g, o->gather.src);
    const size_t row = o->gather.row;
    const size_t have = r ? (size_t)(r->p + r->n - (const char *)o->gather.src) / row : 0;
    for (size_t k = 0; k < o->gather.n; k++) {
        if (o->gather.idx[k] >= have) {
            async_fail(g, "gather kernel: an index past the source's rows");
            return;
        }
        memcpy((char *)o->gather.dst + k * row,
               (const char *)o->gather.src + o->gather.idx[k] * row, row);
    }
}

/* One rating at a time (the same arithmetic as one call over the batch): an
 * index out of range skips its rating and makes the sum NaN. */
static void run_mf(const op_t *o)
{
    double sum = 0;
    for (size_t i = 0; i < o->mf.n; i++) {
        const uint32_t *u = o->mf.users + i, *v = o->mf.items + i;
        if (*u >= o->mf.n_users || *v >= o->mf.n_items)
            sum += NAN;
        else if (o->mf.dU != NULL)
            sum += mlt_cpu_mf_grad(o->mf.U, o->mf.V, o->mf.rank, u, v, o->mf.r + i, 1, o->mf.l2,
                                   o->mf.scale, o->mf.dU, o->mf.dV);
        else
            sum += mlt_cpu_mf_sse(o->mf.U, o->mf.V, o->mf.rank, u, v, o->mf.r + i, 1);
    }
    *o->mf.sse = o->mf.acc ? *o->mf.sse + sum : sum;
}

static void run(mlt_gpu_t *g, const op_t *o)
{
    switch (o->kind) {
    case OP_COPY: memcpy(o->copy.dst, o->copy.src, o->copy.n); break;
    case OP_ZERO: memset(o->copy.dst, 0, o->copy.n); break;
    case OP_FILL:
        for (size_t i = 0; i < o->copy.n; i++)
            ((float *)o->copy.dst)[i] = o->copy.v;
        break;
    case OP_MARK: break; /* reaching it is the point: mlt_gpu_wait_mark */
    case OP_GEMM:
        mlt_cpu_gemm(o->gemm.ta, o->gemm.tb, o->gemm.m, o->gemm.n, o->gemm.k, o->gemm.alpha,
                     o->gemm.a, o->gemm.lda, o->gemm.b, o->gemm.ldb, o->gemm.beta, o->gemm.c,
                     o->gemm.ldc);
        break;
    case OP_BIAS_ADD: mlt_cpu_bias_add(o->elem.y, o->elem.b, o->elem.rows, o->elem.cols); break;
    case OP_BIAS_RELU: mlt_cpu_bias_relu(o->elem.y, o->elem.b, o->elem.rows, o->elem.cols); break;
    case OP_RELU_BACKWARD: mlt_cpu_relu_backward(o->elem.y, o->elem.b, o->elem.rows); break;
    case OP_BIAS_GRAD:
        for (size_t r = 0; r < o->bias_grad.rows; r++)
            if (o->bias_grad.ones[r] != 1.0f) /* the CUDA backend's GEMV would be wrong */
                async_fail(g, "mlt_gpu_bias_grad: `ones` is not all 1");
        mlt_cpu_bias_grad(o->bias_grad.db, o->bias_grad.dy, o->bias_grad.rows, o->bias_grad.cols,
                          o->bias_grad.acc);
        break;
    case OP_XENT: run_xent(g, o); break;
    case OP_CONV_FWD:
    case OP_CONV_DATA:
    case OP_CONV_FILTER: run_conv(g, o); break;
    case OP_MAXPOOL:
        if (o->pool.bias != NULL)
            mlt_cpu_bias_relu_maxpool(o->pool.x, o->pool.bias, o->pool.n, o->pool.h, o->pool.w,
                                      o->pool.c, o->pool.p, o->pool.out, o->pool.oidx);
        else
            mlt_cpu_maxpool(o->pool.x, o->pool.n, o->pool.h, o->pool.w, o->pool.c, o->pool.p,
                            o->pool.out, o->pool.oidx);
        break;
    case OP_MAXPOOL_BACKWARD: run_maxpool_backward(g, o); break;
    case OP_NCHW_TO_NHWC:
        mlt_cpu_nchw_to_nhwc(o->pool.x, o->pool.n, o->pool.c, o->pool.h, o->pool.w, o->pool.out);
        break;
    case OP_GATHER: run_gather(g, o); break;
    case OP_MF: run_mf(o); break;
    case OP_OPTIM:
        mlt_optim_apply(o->optim.rule, &o->optim.h, o->optim.w, o->optim.state, o->optim.grad,
                        o->optim.n, o->optim.step);
        break;
    }
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
        run(g, &g->queue.v[i]);
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
    const region_t *r = region_of(g, p);
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
    if (region_of(g, host) != NULL)
        return fail(g, -EIO, "%s: cudaErrorInvalidValue: host side not %zu bytes of host memory",
                    what, n);
    if (g->capturing)
        return invalidate(g, "cudaMemcpyAsync (pageable host memory)");
    run_queued(g, g->queue.n);
    run(g, &op);
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
