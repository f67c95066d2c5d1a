/* model_gpu.c - see model_gpu.h. The layer plan comes from the CPU model
 * (mlt_model_layer), so both backends agree on shapes, tensor order and which
 * layers need an input gradient; the passes mirror worker/model_impl.h op for
 * op, with a convolution as one cuDNN call over the whole batch (no chunks)
 * and a conv's fused pool as mlt_gpu_maxpool with the bias.
 *
 * Device buffers (one allocation each, sized for max_batch at creation):
 * every layer's output activation, two gradient buffers that take turns as
 * d(output) and d(input), the pre-pool output of a pooled convolution (and
 * its gradient), the pooling argmax indices, a vector of ones for the bias
 * gradients, and the NHWC copy of a multi-channel input. Convolution plans
 * are made per batch size by mlt_gpu_model_prepare and kept. */
#include "worker/model_gpu.h"

#include "common/alloc.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Batch sizes a convolution keeps plans for: the tuner's batch sizes, the
 * evaluation batch and the short last batches of evaluation and of an epoch. */
#define MAX_PLANS 24

typedef struct plan_slot {
    uint32_t batch;
    mlt_gpu_conv_t *conv;
} plan_slot_t;

typedef struct glayer {
    mlt_model_layer_t L;
    size_t in_size, out_size; /* elements per sample */
    size_t act_off;           /* its output in act (elements) */
    size_t idx_off;           /* its argmax indices in idx (elements) */
    plan_slot_t plans[MAX_PLANS];
    uint32_t n_plans;
} glayer_t;

struct mlt_gpu_model {
    mlt_gpu_t *g;
    mlt_model_t *plan; /* the CPU twin, built for a batch of 1: shapes only */
    uint32_t max_batch, n_classes;
    bool mf, tf32, to_nhwc;
    glayer_t *layers;
    uint32_t n_layers;
    uint32_t n_params;
    float **params, **grads; /* device tensors */
    float *act, *grad[2], *z, *ones, *in_nhwc;
    uint32_t *idx;
    double *d_loss, *d_eval_loss; /* device scalars */
    uint64_t plan_gen;            /* bumped when a plan is freed: see mlt_gpu_model_plan_gen */
    mlt_grad_ready_fn on_grad;    /* see mlt_gpu_model_on_grad */
    void *on_grad_ctx;
    uint32_t *d_correct, *d_eval_correct;
};

#define TRY(call)                                                                                  \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != 0)                                                                              \
            return rc_;                                                                            \
    } while (0)

static void seterr(char *err, size_t errlen, const char *what, mlt_gpu_t *g)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s: %s", what, g ? mlt_gpu_error(g) : "");
}

/* Device memory of n elements of `elem` bytes, or NULL (error in the context). */
static void *dalloc(mlt_gpu_t *g, size_t n, size_t elem)
{
    return mlt_gpu_malloc(g, (n ? n : 1) * elem);
}

/* Plans the buffers from the layer list; allocates them. 0 or -ENOMEM. */
static int alloc_buffers(mlt_gpu_model_t *m)
{
    const size_t B = m->max_batch;
    size_t act = 0, idx = 0, g = 0, z = 0, rows = B;
    for (uint32_t l = 0; l < m->n_layers; l++) {
        glayer_t *gl = &m->layers[l];
        const mlt_model_layer_t *L = &gl->L;
        gl->in_size = (size_t)L->h * L->w * L->c;
        gl->out_size = (size_t)L->oh * L->ow * L->oc;
        gl->act_off = act;
        act += (B * gl->out_size + 63) / 64 * 64; /* each output 256-byte aligned */
        if (L->kind == MLT_LAYER_POOL || (L->kind == MLT_LAYER_CONV && L->pool > 0)) {
            gl->idx_off = idx;
            idx += (B * gl->out_size + 63) / 64 * 64;
        }
        if (B * gl->out_size > g)
            g = B * gl->out_size;
        if (L->kind == MLT_LAYER_CONV) {
            const size_t full = B * L->h * L->w * L->oc; /* before pooling */
            if (L->pool > 0 && full > z)
                z = full;
            if (B * L->h * L->w > rows)
                rows = B * L->h * L->w;
        }
    }
    m->act = dalloc(m->g, act, sizeof(float));
    m->grad[0] = dalloc(m->g, g, sizeof(float));
    m->grad[1] = dalloc(m->g, g, sizeof(float));
    m->z = z ? dalloc(m->g, z, sizeof(float)) : NULL;
    m->idx = idx ? dalloc(m->g, idx, sizeof(uint32_t)) : NULL;
    m->ones = dalloc(m->g, rows, sizeof(float));
    if (m->to_nhwc)
        m->in_nhwc = dalloc(m->g, B * m->layers[0].in_size, sizeof(float));
    if (!m->act || !m->grad[0] || !m->grad[1] || (z && !m->z) || (idx && !m->idx) || !m->ones ||
        (m->to_nhwc && !m->in_nhwc))
        return -ENOMEM;
    return mlt_gpu_fill(m->g, m->ones, rows, 1.0f);
}

mlt_gpu_model_t *mlt_gpu_model_new(mlt_gpu_t *g, const mlt_model_desc_t *d, bool tf32, char *err,
                                   size_t errlen)
{
    if (g == NULL || d == NULL) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "no GPU context or model description");
        errno = EINVAL;
        return NULL;
    }
    mlt_model_desc_t one = *d;
    one.max_batch = 1; /* the twin computes nothing: its buffers stay small */
    mlt_model_t *plan = mlt_model_new(&one, err, errlen);
    if (plan == NULL)
        return NULL;
    if (d->type != MLT_MODEL_MF && (d->max_batch == 0 || d->max_batch > 65536)) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "max_batch %u not in 1..65536", d->max_batch);
        mlt_model_destroy(&plan);
        errno = EINVAL;
        return NULL;
    }
    mlt_gpu_model_t *m = mlt_calloc(1, sizeof *m);
    m->g = g;
    m->plan = plan;
    m->max_batch = d->max_batch ? d->max_batch : 1;
    m->n_classes = d->n_classes;
    m->mf = d->type == MLT_MODEL_MF;
    m->tf32 = tf32;
    m->to_nhwc = mlt_model_input_nhwc(plan);
    m->n_layers = mlt_model_n_layers(plan);
    m->n_params = mlt_model_n_params(plan);
    m->layers = mlt_calloc(m->n_layers ? m->n_layers : 1, sizeof *m->layers);
    for (uint32_t l = 0; l < m->n_layers; l++)
        mlt_model_layer(plan, l, &m->layers[l].L);
    m->params = mlt_calloc(m->n_params, sizeof *m->params);
    m->grads = mlt_calloc(m->n_params, sizeof *m->grads);
    for (uint32_t i = 0; i < m->n_params; i++) {
        size_t n = mlt_model_param_size(plan, i);
        if (!(m->params[i] = dalloc(g, n, sizeof(float))) ||
            !(m->grads[i] = dalloc(g, n, sizeof(float))) ||
            mlt_gpu_zero(g, m->params[i], n * sizeof(float)) ||
            mlt_gpu_zero(g, m->grads[i], n * sizeof(float))) {
            seterr(err, errlen, "device memory for the model's tensors", g);
            goto fail;
        }
    }
    m->d_loss = dalloc(g, 2, sizeof(double));
    m->d_correct = dalloc(g, 2, sizeof(uint32_t));
    if (!m->d_loss || !m->d_correct) {
        seterr(err, errlen, "device memory", g);
        goto fail;
    }
    m->d_eval_loss = m->d_loss + 1;
    m->d_eval_correct = m->d_correct + 1;
    if (mlt_gpu_zero(g, m->d_correct, 2 * sizeof(uint32_t)) ||
        (!m->mf && alloc_buffers(m))) {
        char what[96];
        snprintf(what, sizeof what, "device work buffers for a batch of %u", m->max_batch);
        seterr(err, errlen, what, g);
        goto fail;
    }
    if (mlt_gpu_sync(g)) {
        seterr(err, errlen, "setting up the model", g);
        goto fail;
    }
    return m;
fail:
    errno = strstr(mlt_gpu_error(g), "cudaErrorMemoryAllocation") ? ENOMEM : EIO;
    mlt_gpu_model_destroy(&m);
    return NULL;
}

void mlt_gpu_model_destroy(mlt_gpu_model_t **mp)
{
    if (mp == NULL || *mp == NULL)
        return;
    mlt_gpu_model_t *m = *mp;
    mlt_gpu_t *g = m->g;
    mlt_gpu_sync(g); /* nothing still running reads what is freed */
    for (uint32_t l = 0; l < m->n_layers; l++)
        for (uint32_t k = 0; k < m->layers[l].n_plans; k++)
            mlt_gpu_conv_destroy(g, &m->layers[l].plans[k].conv);
    for (uint32_t i = 0; i < m->n_params; i++) {
        if (m->params)
            mlt_gpu_free(g, m->params[i]);
        if (m->grads)
            mlt_gpu_free(g, m->grads[i]);
    }
    mlt_gpu_free(g, m->act);
    mlt_gpu_free(g, m->grad[0]);
    mlt_gpu_free(g, m->grad[1]);
    mlt_gpu_free(g, m->z);
    mlt_gpu_free(g, m->idx);
    mlt_gpu_free(g, m->ones);
    mlt_gpu_free(g, m->in_nhwc);
    mlt_gpu_free(g, m->d_loss);
    mlt_gpu_free(g, m->d_correct);
    mlt_free(m->params);
    mlt_free(m->grads);
    mlt_free(m->layers);
    mlt_model_destroy(&m->plan);
    mlt_free(m);
    *mp = NULL;
}

const mlt_model_t *mlt_gpu_model_plan(const mlt_gpu_model_t *m)
{
    return m->plan;
}

mlt_gpu_t *mlt_gpu_model_gpu(const mlt_gpu_model_t *m)
{
    return m->g;
}

float *const *mlt_gpu_model_params(mlt_gpu_model_t *m)
{
    return m->params;
}

float *const *mlt_gpu_model_grads(mlt_gpu_model_t *m)
{
    return m->grads;
}

const double *mlt_gpu_model_d_loss(const mlt_gpu_model_t *m)
{
    return m->d_loss;
}

const uint32_t *mlt_gpu_model_d_correct(const mlt_gpu_model_t *m)
{
    return m->d_correct;
}

int mlt_gpu_model_init(mlt_gpu_model_t *m, uint64_t seed)
{
    float **host = mlt_calloc(m->n_params, sizeof *host);
    int rc = 0;
    for (uint32_t i = 0; i < m->n_params; i++)
        if (!(host[i] = mlt_try_malloc(mlt_model_param_size(m->plan, i) * sizeof(float) + 1)))
            rc = -ENOMEM;
    if (!rc) {
        mlt_model_init(m->plan, host, seed);
        for (uint32_t i = 0; i < m->n_params && !rc; i++)
            rc = mlt_gpu_upload(m->g, m->params[i], host[i],
                                mlt_model_param_size(m->plan, i) * sizeof(float));
        if (!rc)
            rc = mlt_gpu_sync(m->g); /* the pageable sources are freed next */
    }
    for (uint32_t i = 0; i < m->n_params; i++)
        mlt_free(host[i]);
    mlt_free(host);
    return rc;
}

/* Layer l's convolution plan for `batch`, or NULL when not prepared. */
static const mlt_gpu_conv_t *conv_plan(const glayer_t *gl, uint32_t batch)
{
    for (uint32_t k = 0; k < gl->n_plans; k++)
        if (gl->plans[k].batch == batch)
            return gl->plans[k].conv;
    return NULL;
}

int mlt_gpu_model_prepare(mlt_gpu_model_t *m, uint32_t batch)
{
    if (m->mf)
        return batch == 0 ? -EINVAL : 0;
    if (batch == 0 || batch > m->max_batch)
        return -EINVAL;
    bool was = mlt_gpu_tf32(m->g);
    int rc = 0;
    mlt_gpu_set_tf32(m->g, m->tf32);
    for (uint32_t l = 0; l < m->n_layers && !rc; l++) {
        glayer_t *gl = &m->layers[l];
        const mlt_model_layer_t *L = &gl->L;
        if (L->kind != MLT_LAYER_CONV || conv_plan(gl, batch) != NULL)
            continue;
        if (gl->n_plans == MAX_PLANS) { /* many odd sizes: the oldest goes */
            mlt_gpu_sync(m->g);
            mlt_gpu_conv_destroy(m->g, &gl->plans[0].conv);
            memmove(&gl->plans[0], &gl->plans[1], (MAX_PLANS - 1) * sizeof gl->plans[0]);
            gl->n_plans--;
            m->plan_gen++; /* graphs captured with that plan now point at freed memory */
        }
        char err[256];
        mlt_gpu_conv_t *p =
            mlt_gpu_conv_new(m->g, batch, L->h, L->w, L->c, L->k, L->oc, L->need_dx, err, sizeof err);
        if (p == NULL) {
            rc = -EIO;
            break;
        }
        gl->plans[gl->n_plans++] = (plan_slot_t){.batch = batch, .conv = p};
    }
    mlt_gpu_set_tf32(m->g, was);
    return rc;
}

void mlt_gpu_model_on_grad(mlt_gpu_model_t *m, mlt_grad_ready_fn fn, void *ctx)
{
    m->on_grad = fn;
    m->on_grad_ctx = ctx;
}

uint64_t mlt_gpu_model_plan_gen(const mlt_gpu_model_t *m)
{
    return m->plan_gen;
}

static float *act(const mlt_gpu_model_t *m, const glayer_t *gl)
{
    return m->act + gl->act_off;
}

/* The forward pass over `batch` samples of x (device, NCHW); *logits gets
 * the last layer's output. */
static int forward(mlt_gpu_model_t *m, const float *x, uint32_t batch, const float **logits)
{
    mlt_gpu_t *g = m->g;
    float *const *P = m->params;
    const float *in = x;
    if (m->to_nhwc) {
        const mlt_model_layer_t *L0 = &m->layers[0].L;
        TRY(mlt_gpu_nchw_to_nhwc(g, x, batch, L0->c, L0->h, L0->w, m->in_nhwc));
        in = m->in_nhwc;
    }
    for (uint32_t l = 0; l < m->n_layers; l++) {
        glayer_t *gl = &m->layers[l];
        const mlt_model_layer_t *L = &gl->L;
        float *out = act(m, gl);
        switch (L->kind) {
        case MLT_LAYER_FC:
            TRY(mlt_gpu_gemm(g, false, true, batch, L->oc, gl->in_size, 1.0f, in, gl->in_size,
                             P[L->w_idx], gl->in_size, 0.0f, out, L->oc));
            if (L->relu)
                TRY(mlt_gpu_bias_relu(g, out, P[L->b_idx], batch, L->oc));
            else
                TRY(mlt_gpu_bias_add(g, out, P[L->b_idx], batch, L->oc));
            break;
        case MLT_LAYER_CONV: {
            const mlt_gpu_conv_t *p = conv_plan(gl, batch);
            if (p == NULL)
                return -EINVAL; /* not prepared for this batch */
            if (L->pool > 0) {
                TRY(mlt_gpu_conv_forward(g, p, in, P[L->w_idx], m->z));
                TRY(mlt_gpu_maxpool(g, m->z, P[L->b_idx], batch, L->h, L->w, L->oc, L->pool, out,
                                    m->idx + gl->idx_off));
            } else {
                TRY(mlt_gpu_conv_forward(g, p, in, P[L->w_idx], out));
                TRY(mlt_gpu_bias_relu(g, out, P[L->b_idx], (size_t)batch * L->h * L->w, L->oc));
            }
            break;
        }
        case MLT_LAYER_POOL:
            TRY(mlt_gpu_maxpool(g, in, NULL, batch, L->h, L->w, L->c, L->pool, out,
                                m->idx + gl->idx_off));
            break;
        default: return -EINVAL;
        }
        in = out;
    }
    *logits = in;
    return 0;
}

/* The backward pass after forward() on the same batch; the loss gradient at
 * the logits is in grad[0]. */
static int backward(mlt_gpu_model_t *m, const float *x, uint32_t batch)
{
    mlt_gpu_t *g = m->g;
    float *const *P = m->params, *const *G = m->grads;
    float *g_out = m->grad[0], *g_in = m->grad[1];
    for (uint32_t l = m->n_layers; l-- > 0;) {
        glayer_t *gl = &m->layers[l];
        const mlt_model_layer_t *L = &gl->L;
        const float *in = l > 0 ? act(m, &m->layers[l - 1]) : (m->to_nhwc ? m->in_nhwc : x);
        const float *out = act(m, gl);
        switch (L->kind) {
        case MLT_LAYER_FC:
            if (L->relu)
                TRY(mlt_gpu_relu_backward(g, g_out, out, (size_t)batch * gl->out_size));
            TRY(mlt_gpu_gemm(g, true, false, L->oc, gl->in_size, batch, 1.0f, g_out, L->oc, in,
                             gl->in_size, 0.0f, G[L->w_idx], gl->in_size));
            TRY(mlt_gpu_bias_grad(g, G[L->b_idx], g_out, batch, L->oc, false, m->ones));
            if (L->need_dx)
                TRY(mlt_gpu_gemm(g, false, false, batch, gl->in_size, L->oc, 1.0f, g_out, L->oc,
                                 P[L->w_idx], gl->in_size, 0.0f, g_in, gl->in_size));
            break;
        case MLT_LAYER_CONV: {
            const mlt_gpu_conv_t *p = conv_plan(gl, batch);
            if (p == NULL)
                return -EINVAL;
            float *dz;
            if (L->pool > 0) { /* the ReLU is undone with the pool: out is relu(z + b) pooled */
                dz = m->z;
                TRY(mlt_gpu_maxpool_backward(g, g_out, out, m->idx + gl->idx_off, batch, L->h,
                                             L->w, L->oc, L->pool, dz));
            } else {
                TRY(mlt_gpu_relu_backward(g, g_out, out, (size_t)batch * gl->out_size));
                dz = g_out;
            }
            TRY(mlt_gpu_bias_grad(g, G[L->b_idx], dz, (size_t)batch * L->h * L->w, L->oc, false,
                                  m->ones));
            TRY(mlt_gpu_conv_backward_filter(g, p, in, dz, G[L->w_idx], false));
            if (L->need_dx)
                TRY(mlt_gpu_conv_backward_data(g, p, dz, P[L->w_idx], g_in));
            break;
        }
        case MLT_LAYER_POOL:
            if (L->need_dx)
                TRY(mlt_gpu_maxpool_backward(g, g_out, NULL, m->idx + gl->idx_off, batch, L->h,
                                             L->w, L->c, L->pool, g_in));
            break;
        default: return -EINVAL;
        }
        if (L->w_idx >= 0 && m->on_grad) { /* this layer's gradient ops are issued */
            m->on_grad(m->on_grad_ctx, (uint32_t)L->w_idx);
            m->on_grad(m->on_grad_ctx, (uint32_t)L->b_idx);
        }
        float *t = g_out;
        g_out = g_in;
        g_in = t;
    }
    return 0;
}

int mlt_gpu_model_step(mlt_gpu_model_t *m, const float *x, const uint8_t *y, uint32_t batch)
{
    if (m->mf || batch == 0 || batch > m->max_batch)
        return -EINVAL;
    const float *logits;
    TRY(forward(m, x, batch, &logits));
    TRY(mlt_gpu_softmax_xent(m->g, logits, y, batch, m->n_classes, m->grad[0], m->d_loss,
                             m->d_correct, false));
    return backward(m, x, batch);
}

int mlt_gpu_model_step_mf(mlt_gpu_model_t *m, const uint32_t *users, const uint32_t *items,
                          const float *r, uint32_t batch)
{
    if (!m->mf || batch == 0)
        return -EINVAL;
    const mlt_model_desc_t *d = mlt_model_desc(m->plan);
    TRY(mlt_gpu_zero(m->g, m->grads[0], (size_t)d->n_users * d->rank * sizeof(float)));
    TRY(mlt_gpu_zero(m->g, m->grads[1], (size_t)d->n_items * d->rank * sizeof(float)));
    TRY(mlt_gpu_mf_grad(m->g, m->params[0], m->params[1], d->rank, d->n_users, d->n_items,
                        users, items, r, batch, d->l2, 1.0f / (float)batch, m->grads[0],
                        m->grads[1], m->d_loss));
    if (m->on_grad) {
        m->on_grad(m->on_grad_ctx, 0);
        m->on_grad(m->on_grad_ctx, 1);
    }
    return 0;
}

int mlt_gpu_model_eval(mlt_gpu_model_t *m, const float *x, const uint8_t *y, uint32_t n,
                       double *loss, uint32_t *correct)
{
    if (m->mf || n == 0)
        return -EINVAL;
    const size_t in = m->n_layers ? (size_t)mlt_model_desc(m->plan)->in_c *
                                        mlt_model_desc(m->plan)->in_h *
                                        mlt_model_desc(m->plan)->in_w
                                  : 0;
    for (uint32_t b0 = 0; b0 < n; b0 += m->max_batch) {
        uint32_t nb = n - b0 < m->max_batch ? n - b0 : m->max_batch;
        const float *logits;
        TRY(mlt_gpu_model_prepare(m, nb));
        TRY(forward(m, x + (size_t)b0 * in, nb, &logits));
        TRY(mlt_gpu_softmax_xent(m->g, logits, y + b0, nb, m->n_classes, NULL, m->d_eval_loss,
                                 m->d_eval_correct, b0 > 0));
    }
    double sum = 0;
    uint32_t right = 0;
    TRY(mlt_gpu_download(m->g, &sum, m->d_eval_loss, sizeof sum));
    TRY(mlt_gpu_download(m->g, &right, m->d_eval_correct, sizeof right));
    TRY(mlt_gpu_sync(m->g));
    *loss = sum / n;
    if (correct != NULL)
        *correct = right;
    return 0;
}

int mlt_gpu_model_eval_mf(mlt_gpu_model_t *m, const uint32_t *users, const uint32_t *items,
                          const float *r, uint32_t n, double *mse)
{
    if (!m->mf || n == 0)
        return -EINVAL;
    const mlt_model_desc_t *d = mlt_model_desc(m->plan);
    double sse = 0;
    TRY(mlt_gpu_mf_sse(m->g, m->params[0], m->params[1], d->rank, d->n_users, d->n_items, users,
                       items, r, n, m->d_eval_loss, false));
    TRY(mlt_gpu_download(m->g, &sse, m->d_eval_loss, sizeof sse));
    TRY(mlt_gpu_sync(m->g));
    *mse = sse / n;
    return 0;
}
