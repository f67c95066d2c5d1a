/* gpu_ops.cu - the CUDA kernels of kernels/gpu.h: bias and ReLU, softmax
 * cross-entropy, max pooling and its backward, the layout change, batch
 * gathers, the MF gradient and error, the optimizer rules, fill.
 *
 * Each kernel states the same arithmetic as its CPU twin in
 * kernels/cpu_impl.h or kernels/optim.c, in the same order, and the build
 * passes -fmad=false: so the element-wise kernels, the pooling and the
 * optimizer give the CPU's floats bit for bit (up to sqrtf/division, which are
 * IEEE-rounded on both), and the tests can demand it where stated. The loss
 * uses expf/logf (CUDA's are within 2 ulp), the MF gradient atomics.
 *
 * Launches: element-wise kernels are grid-stride loops of THREADS threads per
 * block over at most MAX_BLOCKS blocks; every launch is checked. */
#include "kernels/gpu_int.h"

#include <math.h>
#include <stdint.h>

#define THREADS    256
#define MAX_BLOCKS 65536u

static unsigned blocks_for(size_t n)
{
    size_t b = (n + THREADS - 1) / THREADS;
    return b > MAX_BLOCKS ? MAX_BLOCKS : (unsigned)(b ? b : 1);
}

#define GRID_STRIDE(i, n)                                                                          \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                      \
         i += (size_t)gridDim.x * blockDim.x)

/* The ReLU that keeps NaN (cpu_impl.h relu1). */
__device__ static inline float relu1(float v)
{
    return v < 0.0f ? 0.0f : v;
}

/* ---- fill, bias, ReLU ---- */

__global__ static void k_fill(float *d, size_t n, float v)
{
    GRID_STRIDE(i, n) d[i] = v;
}

int mlt_gpu_fill(mlt_gpu_t *g, float *d, size_t n, float v)
{
    if (n == 0)
        return 0;
    k_fill<<<blocks_for(n), THREADS, 0, g->stream>>>(d, n, v);
    return mlt_gpu_launched_(g, "fill kernel");
}

template <bool RELU>
__global__ static void k_bias(float *y, const float *bias, size_t rows, size_t cols)
{
    GRID_STRIDE(i, rows * cols)
    {
        float v = y[i] + bias[i % cols];
        y[i] = RELU ? relu1(v) : v;
    }
}

int mlt_gpu_bias_add(mlt_gpu_t *g, float *y, const float *bias, size_t rows, size_t cols)
{
    if (rows * cols == 0)
        return 0;
    k_bias<false><<<blocks_for(rows * cols), THREADS, 0, g->stream>>>(y, bias, rows, cols);
    return mlt_gpu_launched_(g, "bias_add kernel");
}

int mlt_gpu_bias_relu(mlt_gpu_t *g, float *y, const float *bias, size_t rows, size_t cols)
{
    if (rows * cols == 0)
        return 0;
    k_bias<true><<<blocks_for(rows * cols), THREADS, 0, g->stream>>>(y, bias, rows, cols);
    return mlt_gpu_launched_(g, "bias_relu kernel");
}

/* zero where y <= 0 (cpu_impl.h relu_bwd1: a NaN y passes the gradient) */
__global__ static void k_relu_backward(float *dy, const float *y, size_t n)
{
    GRID_STRIDE(i, n)
    {
        if (y[i] <= 0.0f)
            dy[i] = 0.0f;
    }
}

int mlt_gpu_relu_backward(mlt_gpu_t *g, float *dy, const float *y, size_t n)
{
    if (n == 0)
        return 0;
    k_relu_backward<<<blocks_for(n), THREADS, 0, g->stream>>>(dy, y, n);
    return mlt_gpu_launched_(g, "relu_backward kernel");
}

/* ---- softmax cross-entropy ---- */

#define XENT_THREADS 512

/* One block; each thread takes rows r = tid, tid + blockDim, ... and does
 * for each what mlt_cpu_softmax_xent does for a row; the block then sums
 * the row losses (double) and the right answers. */
__global__ static void __launch_bounds__(XENT_THREADS)
    k_softmax_xent(const float *z, const uint8_t *y, size_t rows, size_t classes, float *dz,
                   double *loss_out, uint32_t *correct_out, bool accumulate)
{
    __shared__ double s_loss[XENT_THREADS];
    __shared__ uint32_t s_right[XENT_THREADS];
    const float inv_rows = rows ? 1.0f / (float)rows : 0.0f;
    double total = 0;
    uint32_t right = 0;
    for (size_t r = threadIdx.x; r < rows; r += blockDim.x) {
        const float *zr = z + r * classes;
        const unsigned lab = y[r];
        if (lab >= classes) { /* precondition violated: poison the row, stay inside it */
            total += (double)NAN;
            if (dz != NULL)
                for (size_t j = 0; j < classes; j++)
                    dz[r * classes + j] = NAN;
            continue;
        }
        size_t arg = 0;
        float m = zr[0];
        for (size_t j = 1; j < classes; j++)
            if (!(zr[j] <= m) && m == m) {
                m = zr[j];
                arg = j;
            }
        float s = 0.0f;
        for (size_t j = 0; j < classes; j++)
            s += expf(zr[j] - m);
        float lse = logf(s);
        float loss = lse - (zr[lab] - m);
        total += (double)loss;
        if (arg == lab && m == m && loss == loss)
            right++;
        if (dz != NULL) {
            float *d = dz + r * classes;
            float inv_s = 1.0f / s;
            for (size_t j = 0; j < classes; j++)
                d[j] = expf(zr[j] - m) * inv_s * inv_rows;
            d[lab] -= inv_rows;
        }
    }
    s_loss[threadIdx.x] = total;
    s_right[threadIdx.x] = right;
    __syncthreads();
    for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) {
            s_loss[threadIdx.x] += s_loss[threadIdx.x + half];
            s_right[threadIdx.x] += s_right[threadIdx.x + half];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        if (accumulate) {
            *loss_out += s_loss[0];
            *correct_out += s_right[0];
        } else {
            *loss_out = s_loss[0];
            *correct_out = s_right[0];
        }
    }
}

int mlt_gpu_softmax_xent(mlt_gpu_t *g, const float *z, const uint8_t *y, size_t rows,
                         size_t classes, float *dz, double *d_loss, uint32_t *d_correct,
                         bool accumulate)
{
    if (classes == 0 || classes > 1024)
        return mlt_gpu_fail_(g, -EINVAL, "mlt_gpu_softmax_xent: %zu classes (1..1024)", classes);
    /* rows 0 still runs: it writes the zero sums */
    k_softmax_xent<<<1, XENT_THREADS, 0, g->stream>>>(z, y, rows, classes, dz, d_loss, d_correct,
                                                      accumulate);
    return mlt_gpu_launched_(g, "softmax_xent kernel");
}

/* ---- pooling ---- */

/* One thread per output element: the window scanned in the CPU's order, the
 * first maximum kept (cpu_impl.h pool_take: a NaN, once seen, stays). */
__global__ static void k_maxpool(const float *x, const float *bias, size_t n, size_t h, size_t w,
                                 size_t c, size_t p, float *y, uint32_t *idx)
{
    const size_t oh = h / p, ow = w / p, total = n * oh * ow * c;
    GRID_STRIDE(i, total)
    {
        const size_t ch = i % c, pix = i / c, ox = pix % ow, oy = (pix / ow) % oh,
                     b = pix / (ow * oh);
        const float *img = x + b * h * w * c;
        float best = 0.0f;
        uint32_t arg = 0;
        for (size_t dy = 0; dy < p; dy++)
            for (size_t dx = 0; dx < p; dx++) {
                const size_t at = ((oy * p + dy) * w + ox * p + dx) * c;
                float v = img[at + ch];
                if (bias != NULL)
                    v = relu1(v + bias[ch]);
                if (dy == 0 && dx == 0) {
                    best = v;
                    arg = (uint32_t)(at + ch);
                } else if (!(v <= best) && best == best) {
                    best = v;
                    arg = (uint32_t)(at + ch);
                }
            }
        y[i] = best;
        idx[i] = arg;
    }
}

int mlt_gpu_maxpool(mlt_gpu_t *g, const float *x, const float *bias, size_t n, size_t h, size_t w,
                    size_t c, size_t p, float *y, uint32_t *idx)
{
    if (p == 0 || h * w * c > UINT32_MAX)
        return mlt_gpu_fail_(g, -EINVAL, "mlt_gpu_maxpool: pool 0 or an image over 2^32 elements");
    const size_t total = n * (h / p) * (w / p) * c;
    if (total == 0)
        return 0;
    k_maxpool<<<blocks_for(total), THREADS, 0, g->stream>>>(x, bias, n, h, w, c, p, y, idx);
    return mlt_gpu_launched_(g, "maxpool kernel");
}

/* One thread per input element: the gradient of its window's output when it
 * is that window's argmax (and, with y, the pooled ReLU output is > 0 or
 * NaN), else 0. Pixels past the floor get 0. */
__global__ static void k_maxpool_backward(const float *dy, const float *y, const uint32_t *idx,
                                          size_t n, size_t h, size_t w, size_t c, size_t p,
                                          float *dx)
{
    const size_t oh = h / p, ow = w / p, total = n * h * w * c;
    GRID_STRIDE(i, total)
    {
        const size_t ch = i % c, pix = i / c, xx = pix % w, yy = (pix / w) % h, b = pix / (w * h);
        const size_t oy = yy / p, ox = xx / p;
        float v = 0.0f;
        if (oy < oh && ox < ow) {
            const size_t j = ((b * oh + oy) * ow + ox) * c + ch;
            if (idx[j] == (uint32_t)((yy * w + xx) * c + ch))
                v = (y != NULL && y[j] <= 0.0f) ? 0.0f : dy[j];
        }
        dx[i] = v;
    }
}

int mlt_gpu_maxpool_backward(mlt_gpu_t *g, const float *dy, const float *y, const uint32_t *idx,
                             size_t n, size_t h, size_t w, size_t c, size_t p, float *dx)
{
    if (p == 0)
        return mlt_gpu_fail_(g, -EINVAL, "mlt_gpu_maxpool_backward: pool 0");
    const size_t total = n * h * w * c;
    if (total == 0)
        return 0;
    k_maxpool_backward<<<blocks_for(total), THREADS, 0, g->stream>>>(dy, y, idx, n, h, w, c, p,
                                                                      dx);
    return mlt_gpu_launched_(g, "maxpool_backward kernel");
}

/* ---- layout, gathers ---- */

__global__ static void k_nchw_to_nhwc(const float *x, size_t n, size_t c, size_t hw, float *y)
{
    GRID_STRIDE(i, n * c * hw)
    {
        const size_t ch = i % c, pix = (i / c) % hw, b = i / (c * hw);
        y[i] = x[(b * c + ch) * hw + pix];
    }
}

int mlt_gpu_nchw_to_nhwc(mlt_gpu_t *g, const float *x, size_t n, size_t c, size_t h, size_t w,
                         float *y)
{
    const size_t total = n * c * h * w;
    if (total == 0)
        return 0;
    k_nchw_to_nhwc<<<blocks_for(total), THREADS, 0, g->stream>>>(x, n, c, h * w, y);
    return mlt_gpu_launched_(g, "nchw_to_nhwc kernel");
}

template <typename T>
__global__ static void k_gather(const T *src, size_t width, const uint32_t *idx, size_t n, T *dst)
{
    GRID_STRIDE(i, n * width)
    {
        const size_t k = i / width, j = i % width;
        dst[i] = src[(size_t)idx[k] * width + j];
    }
}

int mlt_gpu_gather4(mlt_gpu_t *g, const void *src, size_t width, const uint32_t *idx, size_t n,
                    void *dst)
{
    if (n * width == 0)
        return 0;
    k_gather<uint32_t><<<blocks_for(n * width), THREADS, 0, g->stream>>>(
        (const uint32_t *)src, width, idx, n, (uint32_t *)dst);
    return mlt_gpu_launched_(g, "gather kernel");
}

int mlt_gpu_gather1(mlt_gpu_t *g, const uint8_t *src, size_t width, const uint32_t *idx, size_t n,
                    uint8_t *dst)
{
    if (n * width == 0)
        return 0;
    k_gather<uint8_t><<<blocks_for(n * width), THREADS, 0, g->stream>>>(src, width, idx, n, dst);
    return mlt_gpu_launched_(g, "gather kernel");
}

/* ---- matrix factorisation ---- */

#define MF_WARPS 8 /* ratings per block: one warp each */

__device__ static inline float warp_sum(float v)
{
    for (int o = 16; o > 0; o /= 2)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* One warp per rating: the lanes share the dot product, then each adds its
 * elements of the two gradient rows (mlt_cpu_mf_grad's arithmetic). The
 * block's squared errors are summed in shared memory and added to *sse once. */
template <bool GRAD>
__global__ static void __launch_bounds__(MF_WARPS * 32)
    k_mf(const float *U, const float *V, size_t rank, size_t n_users, size_t n_items,
         const uint32_t *users, const uint32_t *items, const float *r, size_t batch, float l2,
         float scale, float *dU, float *dV, double *sse)
{
    __shared__ double s_e2[MF_WARPS];
    const unsigned warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    double e2 = 0;
    for (size_t i = (size_t)blockIdx.x * MF_WARPS + warp; i < batch;
         i += (size_t)gridDim.x * MF_WARPS) {
        const uint32_t ui = users[i], vi = items[i];
        if (ui >= n_users || vi >= n_items) {
            e2 += (double)NAN; /* precondition violated: poison the sum, touch nothing */
            continue;
        }
        const float *u = U + (size_t)ui * rank, *v = V + (size_t)vi * rank;
        float part = 0.0f;
        for (size_t j = lane; j < rank; j += 32)
            part += u[j] * v[j];
        const float e = warp_sum(part) - r[i];
        e2 += (double)e * (double)e;
        if (GRAD) {
            const float ge = scale * 2.0f * e, gl = scale * 2.0f * l2;
            float *du = dU + (size_t)ui * rank, *dv = dV + (size_t)vi * rank;
            for (size_t j = lane; j < rank; j += 32) {
                const float uj = u[j], vj = v[j];
                atomicAdd(&du[j], ge * vj + gl * uj);
                atomicAdd(&dv[j], ge * uj + gl * vj);
            }
        }
    }
    if (lane == 0)
        s_e2[warp] = e2;
    __syncthreads();
    if (threadIdx.x == 0) {
        double t = 0;
        for (int k = 0; k < MF_WARPS; k++)
            t += s_e2[k];
        atomicAdd(sse, t);
    }
}

static unsigned mf_blocks(size_t batch)
{
    size_t b = (batch + MF_WARPS - 1) / MF_WARPS;
    return b > 4096 ? 4096u : (unsigned)(b ? b : 1);
}

int mlt_gpu_mf_grad(mlt_gpu_t *g, const float *U, const float *V, size_t rank, size_t n_users,
                    size_t n_items, const uint32_t *users, const uint32_t *items, const float *r,
                    size_t batch, float l2, float scale, float *dU, float *dV, double *d_sse)
{
    GPU_CUDA(g, "cudaMemsetAsync", cudaMemsetAsync(d_sse, 0, sizeof *d_sse, g->stream));
    if (batch == 0)
        return 0;
    k_mf<true><<<mf_blocks(batch), MF_WARPS * 32, 0, g->stream>>>(
        U, V, rank, n_users, n_items, users, items, r, batch, l2, scale, dU, dV, d_sse);
    return mlt_gpu_launched_(g, "mf_grad kernel");
}

int mlt_gpu_mf_sse(mlt_gpu_t *g, const float *U, const float *V, size_t rank, size_t n_users,
                   size_t n_items, const uint32_t *users, const uint32_t *items, const float *r,
                   size_t n, double *d_sse, bool accumulate)
{
    if (!accumulate)
        GPU_CUDA(g, "cudaMemsetAsync", cudaMemsetAsync(d_sse, 0, sizeof *d_sse, g->stream));
    if (n == 0)
        return 0;
    k_mf<false><<<mf_blocks(n), MF_WARPS * 32, 0, g->stream>>>(
        U, V, rank, n_users, n_items, users, items, r, n, 0.0f, 0.0f, NULL, NULL, d_sse);
    return mlt_gpu_launched_(g, "mf_sse kernel");
}

/* ---- optimizer (kernels/optim.c, element by element) ---- */

struct coef {
    float lr, m, wd, b1, c1, b2, c2, eps, adam_step, adam_isb2;
};

__global__ static void k_sgd0(coef k, float *w, const float *g, size_t n)
{
    GRID_STRIDE(i, n) w[i] -= k.lr * (g[i] + k.wd * w[i]);
}

__global__ static void k_sgd(coef k, float *w, float *h, const float *g, size_t n)
{
    GRID_STRIDE(i, n)
    {
        float gp = g[i] + k.wd * w[i];
        float hi = k.m * h[i] + gp;
        h[i] = hi;
        w[i] -= k.lr * hi;
    }
}

__global__ static void k_nesterov(coef k, float *w, float *h, const float *g, size_t n)
{
    GRID_STRIDE(i, n)
    {
        float gp = g[i] + k.wd * w[i];
        float hi = k.m * h[i] + gp;
        h[i] = hi;
        w[i] -= k.lr * (gp + k.m * hi);
    }
}

__global__ static void k_adam(coef k, float *w, float *a, float *v, const float *g, size_t n)
{
    GRID_STRIDE(i, n)
    {
        float gp = g[i] + k.wd * w[i];
        float ai = k.b1 * a[i] + k.c1 * gp;
        float vi = k.b2 * v[i] + k.c2 * (gp * gp);
        a[i] = ai;
        v[i] = vi;
        w[i] -= k.adam_step * ai / (sqrtf(vi) * k.adam_isb2 + k.eps);
    }
}

__global__ static void k_rmsprop(coef k, float *w, float *v, const float *g, size_t n)
{
    GRID_STRIDE(i, n)
    {
        float gp = g[i] + k.wd * w[i];
        float vi = k.b2 * v[i] + k.c2 * (gp * gp);
        v[i] = vi;
        w[i] -= k.lr * gp / (sqrtf(vi) + k.eps);
    }
}

__global__ static void k_adagrad(coef k, float *w, float *v, const float *g, size_t n)
{
    GRID_STRIDE(i, n)
    {
        float gp = g[i] + k.wd * w[i];
        float vi = v[i] + gp * gp;
        v[i] = vi;
        w[i] -= k.lr * gp / (sqrtf(vi) + k.eps);
    }
}

__global__ static void k_adadelta(coef k, float *w, float *v, float *u, const float *g, size_t n)
{
    GRID_STRIDE(i, n)
    {
        float gp = g[i] + k.wd * w[i];
        float vi = k.b2 * v[i] + k.c2 * (gp * gp);
        float d = sqrtf(u[i] + k.eps) / sqrtf(vi + k.eps) * gp;
        v[i] = vi;
        u[i] = k.b2 * u[i] + k.c2 * (d * d);
        w[i] -= k.lr * d;
    }
}

int mlt_gpu_optim_apply(mlt_gpu_t *g, mlt_rule_t rule, const mlt_hyper_t *h, float *w,
                        float *state, const float *grad, size_t n, uint64_t step)
{
    if ((unsigned)rule >= (unsigned)MLT_RULE_COUNT_)
        return mlt_gpu_fail_(g, -EINVAL, "mlt_gpu_optim_apply: invalid rule %d", (int)rule);
    if (mlt_rule_schedule_free(rule))
        return mlt_gpu_fail_(g, -EINVAL,
                             "mlt_gpu_optim_apply: %s keeps per-array scalars (mlt_optim_update); "
                             "the device has the step rules only",
                             mlt_rule_name(rule));
    if (n == 0)
        return 0;
    coef k;
    k.lr = h->lr;
    k.m = h->momentum;
    k.wd = h->weight_decay;
    k.b1 = h->beta1;
    k.c1 = 1.0f - h->beta1;
    k.b2 = h->beta2;
    k.c2 = 1.0f - h->beta2;
    k.eps = h->eps;
    k.adam_step = k.adam_isb2 = 0.0f;
    const unsigned nb = blocks_for(n);
    switch (rule) {
    case MLT_RULE_SGD:
        if (k.m == 0.0f)
            k_sgd0<<<nb, THREADS, 0, g->stream>>>(k, w, grad, n);
        else
            k_sgd<<<nb, THREADS, 0, g->stream>>>(k, w, state, grad, n);
        break;
    case MLT_RULE_NESTEROV: k_nesterov<<<nb, THREADS, 0, g->stream>>>(k, w, state, grad, n); break;
    case MLT_RULE_ADAM: {
        /* the bias corrections as optim.c's adam_coefs, in double on the host */
        const double t = (double)(step == 0 ? 1 : step);
        const double bc1 = 1.0 - pow((double)h->beta1, t), bc2 = 1.0 - pow((double)h->beta2, t);
        k.adam_step = (float)((double)h->lr / bc1);
        k.adam_isb2 = (float)(1.0 / sqrt(bc2));
        k_adam<<<nb, THREADS, 0, g->stream>>>(k, w, state, state + n, grad, n);
        break;
    }
    case MLT_RULE_RMSPROP: k_rmsprop<<<nb, THREADS, 0, g->stream>>>(k, w, state, grad, n); break;
    case MLT_RULE_ADAGRAD: k_adagrad<<<nb, THREADS, 0, g->stream>>>(k, w, state, grad, n); break;
    case MLT_RULE_ADADELTA:
        k_adadelta<<<nb, THREADS, 0, g->stream>>>(k, w, state, state + n, grad, n);
        break;
    default: break;
    }
    return mlt_gpu_launched_(g, "optimizer kernel");
}
