/* model_split.c - batch-parallel steps and evaluations of the CPU models
 * (mlt_model_set_threads, model.h).
 *
 * With n threads (mlt_model_set_threads) a step cuts its batch into n slices
 * of consecutive samples, one per thread; each runs the forward and backward
 * pass of its slice on its own buffers (slice 0 into the caller's gradients,
 * the others into their own), with the loss gradient divided by the whole
 * batch, so that the slices' gradients add up to the batch's. Then each
 * thread adds them up over its own range of the parameters. The result is
 * one thread's up to the order of float additions. An evaluation cuts its
 * samples the same way. Every BLAS call then runs on one thread.
 *
 * Threading: a step or evaluation runs on the caller and the pool's threads,
 * which touch only their own slice's buffers and gradient tensors until the
 * reduction, where each adds over a disjoint range of the parameters. */
#include "worker/model_int.h"

#include <errno.h>

#include "common/alloc.h"
#include "worker/pool.h"

struct split {
    mlt_pool_t *pool;
    uint32_t n;
    ws_t *ws;            /* n, cap = ceil(max_batch / n) */
    float **g;           /* slice i >= 1: its gradients at g[(i - 1) * n_params] */
    void *g_block;
    uint64_t total;      /* parameter elements */
    uint64_t *first;     /* n_params + 1: flat index of each tensor's first element */
    /* the step or evaluation in progress */
    const mlt_model_t *m;
    float *const *P;
    float *const *G;
    const float *x;
    const uint8_t *y;
    uint32_t batch;
    double *loss;        /* n: each slice's summed loss */
    uint32_t *correct;   /* n */
};

void mlt_model_split_free(split_t **spp)
{
    split_t *sp = *spp;
    if (sp == NULL)
        return;
    mlt_pool_destroy(&sp->pool);
    for (uint32_t i = 0; i < sp->n && sp->ws; i++)
        mlt_free(sp->ws[i].block);
    mlt_free(sp->ws);
    mlt_free(sp->g);
    mlt_free(sp->g_block);
    mlt_free(sp->first);
    mlt_free(sp->loss);
    mlt_free(sp->correct);
    mlt_free(sp);
    *spp = NULL;
}

int mlt_model_set_threads(mlt_model_t *m, uint32_t n)
{
    mlt_model_split_free(&m->split);
    if (n <= 1 || m->d.type == MLT_MODEL_MF)
        return 0;
    if (n > m->d.max_batch)
        n = m->d.max_batch;
    split_t *sp = mlt_calloc(1, sizeof *sp);
    m->split = sp;
    sp->n = n;
    sp->ws = mlt_calloc(n, sizeof *sp->ws);
    sp->loss = mlt_calloc(n, sizeof *sp->loss);
    sp->correct = mlt_calloc(n, sizeof *sp->correct);
    sp->first = mlt_calloc(m->n_params + 1, sizeof *sp->first);
    size_t per_slice = 0; /* bytes of one slice's gradients, each tensor 64-byte aligned */
    for (uint32_t p = 0; p < m->n_params; p++) {
        sp->first[p + 1] = sp->first[p] + m->params[p].size;
        per_slice += (m->params[p].size * sizeof(float) + 63) / 64 * 64;
    }
    sp->total = sp->first[m->n_params];
    const uint32_t cap = (m->d.max_batch + n - 1) / n;
    for (uint32_t i = 0; i < n; i++) {
        if (mlt_model_ws_alloc(m, &sp->ws[i], sizeof(float), cap) < 0)
            goto nomem;
        sp->ws[i].notify = false;
    }
    sp->g_block = mlt_try_aligned(per_slice * (n - 1));
    if (sp->g_block == NULL)
        goto nomem;
    sp->g = mlt_calloc((size_t)(n - 1) * m->n_params, sizeof *sp->g);
    char *at = sp->g_block;
    for (size_t k = 0; k < (size_t)(n - 1) * m->n_params; k++) {
        sp->g[k] = (float *)at;
        at += (m->params[k % m->n_params].size * sizeof(float) + 63) / 64 * 64;
    }
    sp->pool = mlt_pool_new(n);
    if (sp->pool == NULL) {
        int rc = -errno;
        mlt_model_split_free(&m->split);
        return rc;
    }
    return 0;
nomem:
    mlt_model_split_free(&m->split);
    return -ENOMEM;
}

uint32_t mlt_model_threads(const mlt_model_t *m)
{
    return m->split ? m->split->n : 1;
}

/* Slice i of n of `count` items: [*b0, *b0 + return). */
static uint32_t slice_of(uint32_t count, uint32_t i, uint32_t n, uint32_t *b0)
{
    *b0 = (uint32_t)((uint64_t)count * i / n);
    return (uint32_t)((uint64_t)count * (i + 1) / n) - *b0;
}

static void split_slice_step(void *ctx, uint32_t i, uint32_t n)
{
    split_t *sp = ctx;
    const mlt_model_t *m = sp->m;
    uint32_t b0, nb = slice_of(sp->batch, i, n, &b0);
    float *const *G = i == 0 ? sp->G : sp->g + (size_t)(i - 1) * m->n_params;
    const size_t in = (size_t)m->d.in_c * m->d.in_h * m->d.in_w;
    double mean;
    mlt_model_step_ws((mlt_model_t *)m, &sp->ws[i], sp->P, G, sp->x + b0 * in, sp->y + b0, nb,
                      sp->batch, &mean, &sp->correct[i]);
    sp->loss[i] = mean * nb;
}

/* Adds slices 1..n-1's gradients into slice 0's (the caller's) over thread
 * i's range of the flattened parameters. */
static void split_reduce(void *ctx, uint32_t i, uint32_t n)
{
    split_t *sp = ctx;
    const mlt_model_t *m = sp->m;
    const uint64_t lo = sp->total * i / n, hi = sp->total * (i + 1) / n;
    for (uint32_t p = 0; p < m->n_params; p++) {
        const uint64_t a = lo > sp->first[p] ? lo : sp->first[p];
        const uint64_t b = hi < sp->first[p + 1] ? hi : sp->first[p + 1];
        if (a >= b)
            continue;
        float *restrict dst = sp->G[p] + (a - sp->first[p]);
        const size_t len = b - a;
        for (uint32_t s = 1; s < sp->n; s++) {
            const float *restrict src = sp->g[(size_t)(s - 1) * m->n_params + p] + (a - sp->first[p]);
            for (size_t k = 0; k < len; k++)
                dst[k] += src[k];
        }
    }
}

/* Runs fn on every slice of `count` samples, then adds up the slices' losses
 * (sums) and counts. */
static void run_slices(split_t *sp, mlt_pool_fn fn, const mlt_model_t *m, float *const *params,
                       float *const *grads, const float *x, const uint8_t *y, uint32_t count,
                       double *total, uint32_t *right)
{
    sp->m = m;
    sp->P = params;
    sp->G = grads;
    sp->x = x;
    sp->y = y;
    sp->batch = count;
    mlt_pool_run(sp->pool, fn, sp);
    *total = 0;
    *right = 0;
    for (uint32_t i = 0; i < sp->n; i++) {
        *total += sp->loss[i];
        *right += sp->correct[i];
    }
}

bool mlt_model_split_step(mlt_model_t *m, float *const *params, float *const *grads,
                          const float *x, const uint8_t *y, uint32_t batch, double *loss,
                          uint32_t *correct)
{
    split_t *sp = m->split;
    if (sp == NULL || batch < sp->n)
        return false;
    double total;
    uint32_t right;
    run_slices(sp, split_slice_step, m, params, grads, x, y, batch, &total, &right);
    mlt_pool_run(sp->pool, split_reduce, sp);
    *loss = total / batch;
    if (correct != NULL)
        *correct = right;
    if (m->on_grad) /* as the backward pass would: the last layer's first */
        for (uint32_t p = m->n_params; p-- > 0;)
            m->on_grad(m->on_grad_ctx, p);
    return true;
}

static void split_slice_eval(void *ctx, uint32_t i, uint32_t n)
{
    split_t *sp = ctx;
    const size_t in = (size_t)sp->m->d.in_c * sp->m->d.in_h * sp->m->d.in_w;
    uint32_t b0, nb = slice_of(sp->batch, i, n, &b0); /* >= 1: count >= n */
    sp->loss[i] = mlt_model_eval_ws(sp->m, &sp->ws[i], sp->P, sp->x + b0 * in, sp->y + b0, nb,
                                    &sp->correct[i]);
}

bool mlt_model_split_eval(mlt_model_t *m, float *const *params, const float *x, const uint8_t *y,
                          uint32_t n, double *total, uint32_t *right)
{
    split_t *sp = m->split;
    if (sp == NULL || n < sp->n)
        return false;
    run_slices(sp, split_slice_eval, m, params, NULL, x, y, n, total, right);
    return true;
}
