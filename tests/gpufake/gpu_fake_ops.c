/* gpu_fake_ops.c - the fake GPU's ops, run on the host through
 * kernels/cpu.h and kernels/optim.h when the stream or a graph gets to them;
 * see gpu_fake.c. */
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

/* ---- the ops, run on the host through cpu.h ---- */

/* mlt_cpu_softmax_xent, whose label precondition gpu.h turns into a NaN row:
 * such a row runs with label 0 (its right answer taken back), then is
 * poisoned. The CPU's mean times rows is the SUM gpu.h returns. */
static void run_xent(mlt_gpu_t *g, const op_t *o)
{
    const size_t rows = o->xent.rows, classes = o->xent.classes;
    uint8_t *lab = fake_scratch(g, rows + 1);
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
    float *col = fake_scratch(g, chunk * hw * kkc * sizeof *col);
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
        float *d = fake_scratch(g, (ny ? ny : 1) * sizeof *d);
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
    const region_t *r = fake_region_of(g, o->gather.src);
    const size_t row = o->gather.row;
    const size_t have = r ? (size_t)(r->p + r->n - (const char *)o->gather.src) / row : 0;
    for (size_t k = 0; k < o->gather.n; k++) {
        if (o->gather.idx[k] >= have) {
            fake_async_fail(g, "gather kernel: an index past the source's rows");
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

void fake_run(mlt_gpu_t *g, const op_t *o)
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
                fake_async_fail(g, "mlt_gpu_bias_grad: `ones` is not all 1");
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
