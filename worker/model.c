/* model.c - models built from a description (see model.h): the layer list,
 * the parameter table, the work buffers, and the entry points. The passes
 * themselves are in model_impl.h, instantiated here for float and double.
 *
 * Every model but MF is a list of layers (fc, conv, pool) ending in the fc to
 * n_classes. A conv followed by a pool is one layer here: the pool is fused
 * into the convolution's epilogue (mlt_cpu_bias_relu_maxpool), so the
 * full-resolution activation never leaves the per-chunk scratch buffer.
 *
 * Buffers are allocated at creation for max_batch (float) or on the first
 * double step (tests only); the steps themselves never allocate. The types
 * are in model_int.h; steps on several threads, in model_split.c. */
#include "worker/model.h"
#include "worker/model_int.h"

#include "common/alloc.h"
#include "common/rng.h"
#include "kernels/cpu.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Bounds on a description: every matrix dimension handed to BLAS and every
 * per-sample size must fit its int; these keep all products far from it. */
#define MAX_DIM    65536u     /* any one width, height, channel or unit count */
#define MAX_TENSOR (1u << 30) /* elements of one parameter tensor */
#define MAX_SAMPLE (1u << 24) /* elements of one sample's activation */
#define MAX_LAYERS 64u        /* layers of a cnn or mlp */

/* Target bytes of a convolution's im2col chunk (float): small enough to stay
 * in a core's L2 while im2col writes it and the GEMMs read it, big enough for
 * efficient GEMMs. For the fmnist cnn's conv2 (627 KB of columns per image)
 * the GEMMs ran at ~115 GFLOP/s with 1-2 images per chunk against ~50 with
 * the whole batch of 128 at once (single thread, OpenBLAS SkylakeX core);
 * 1.5 MiB gives conv2 2 images (and the direct conv1, whose scratch is its
 * 100 KB per image output, 15). */
#define COL_CHUNK_BYTES (1536u << 10)

/* A convolution whose input gradient is not needed (the first layer with
 * parameters) and whose patch has at most this many taps (k*k*c_in: 25 for a
 * 5x5 conv on 1-channel images) runs as a direct convolution
 * (mlt_cpu_conv_thin) instead of im2col + GEMM: with so few taps the GEMMs are
 * inefficient and the copying dominates. Measured on the fmnist cnn's conv1,
 * single thread: forward 3.7 ms against 8.3 ms, weight gradient 5.8 against
 * 10.5 (batch 128, on a loaded machine). */
#define THIN_MAX_TAPS 32u


#define REAL    float
#define R(name) name##_f32
#define K(name) name
#include "worker/model_impl.h"
#undef REAL
#undef R
#undef K

#define REAL    double
#define R(name) name##_f64
#define K(name) name##_f64
#include "worker/model_impl.h"
#undef REAL
#undef R
#undef K

/* ---- building ---- */

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int add_param(mlt_model_t *m, const char *name, uint64_t size, uint64_t fan_in)
{
    param_t *p = &m->params[m->n_params];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->size = size;
    p->fan_in = fan_in;
    return (int)m->n_params++;
}

/* Appends a layer reading image h x w x c; fills the output dims and the
 * parameters. Returns 0 or -EINVAL with err set. */
static int add_layer(mlt_model_t *m, int kind, uint32_t h, uint32_t w, uint32_t c, uint32_t k,
                     uint32_t p, uint32_t units, bool relu, const char *where, uint32_t *n_conv,
                     uint32_t *n_fc, char *err, size_t errlen)
{
    layer_t *L = &m->layers[m->n_layers];
    *L = (layer_t){.kind = kind,
                   .h = h,
                   .w = w,
                   .c = c,
                   .k = k,
                   .p = p,
                   .relu = relu,
                   .w_idx = -1,
                   .b_idx = -1};
    L->in_size = (size_t)h * w * c;
    char name[24];
    switch (kind) {
    case L_FC:
        if (units == 0 || units > MAX_DIM) {
            seterr(err, errlen, "%s: fc units %u not in 1..%u", where, units, MAX_DIM);
            return -EINVAL;
        }
        if ((uint64_t)units * L->in_size > MAX_TENSOR) {
            seterr(err, errlen, "%s: fc of %zu x %u weights is too large", where, L->in_size,
                   units);
            return -EINVAL;
        }
        L->oh = L->ow = 1;
        L->oc = units;
        ++*n_fc;
        snprintf(name, sizeof name, "fc%u.w", *n_fc);
        L->w_idx = add_param(m, name, (uint64_t)units * L->in_size, L->in_size);
        snprintf(name, sizeof name, "fc%u.b", *n_fc);
        L->b_idx = add_param(m, name, units, L->in_size);
        break;
    case L_CONV:
        if (k == 0 || k % 2 == 0 || k > 31) {
            seterr(err, errlen, "%s: conv kernel size %u must be odd, 1..31", where, k);
            return -EINVAL;
        }
        if (units == 0 || units > MAX_DIM) {
            seterr(err, errlen, "%s: conv channels %u not in 1..%u", where, units, MAX_DIM);
            return -EINVAL;
        }
        L->oh = h;
        L->ow = w;
        L->oc = units;
        if (p > 0) { /* fused pool */
            L->oh = h / p;
            L->ow = w / p;
        }
        ++*n_conv;
        snprintf(name, sizeof name, "conv%u.w", *n_conv);
        L->w_idx = add_param(m, name, (uint64_t)units * k * k * c, (uint64_t)k * k * c);
        snprintf(name, sizeof name, "conv%u.b", *n_conv);
        L->b_idx = add_param(m, name, units, (uint64_t)k * k * c);
        if ((uint64_t)units * k * k * c > MAX_TENSOR || (uint64_t)h * w * k * k * c > MAX_SAMPLE) {
            seterr(err, errlen, "%s: conv %ux%ux%u on %ux%ux%u is too large", where, k, k, units, h,
                   w, c);
            return -EINVAL;
        }
        break;
    case L_POOL:
        L->oh = h / p;
        L->ow = w / p;
        L->oc = c;
        break;
    default: assert(0 && "layer kind");
    }
    if ((kind == L_POOL || p > 0) && (p == 0 || p > h || p > w)) {
        seterr(err, errlen, "%s: pool %u does not fit its %ux%u input", where, p, h, w);
        return -EINVAL;
    }
    L->out_size = (size_t)L->oh * L->ow * L->oc;
    if (L->out_size > MAX_SAMPLE) {
        seterr(err, errlen, "%s: output of %zu elements per sample is too large", where,
               L->out_size);
        return -EINVAL;
    }
    m->n_layers++;
    return 0;
}

/* Builds m->layers and m->params for a classification description. */
static int build_layers(mlt_model_t *m, const mlt_model_desc_t *d, char *err, size_t errlen)
{
    uint32_t n_conv = 0, n_fc = 0;
    uint32_t h = d->in_h, w = d->in_w, c = d->in_c;
    bool flat = d->type != MLT_MODEL_CNN; /* input seen as one vector */
    char where[48];
    int rc;
    if (flat) {
        c = (uint32_t)((uint64_t)h * w * c);
        h = w = 1;
    }
    if (d->type == MLT_MODEL_MLP) {
        for (uint32_t i = 0; i < d->n_hidden; i++) {
            snprintf(where, sizeof where, "mlp hidden layer %u", i + 1);
            rc = add_layer(m, L_FC, h, w, c, 0, 0, d->hidden[i], true, where, &n_conv, &n_fc, err,
                           errlen);
            if (rc < 0)
                return rc;
            c = d->hidden[i];
        }
    } else if (d->type == MLT_MODEL_CNN) {
        for (uint32_t i = 0; i < d->n_cnn; i++) {
            const mlt_cnn_layer_t *cl = &d->cnn[i];
            snprintf(where, sizeof where, "cnn layer %u", i + 1);
            if ((cl->op == MLT_CNN_CONV || cl->op == MLT_CNN_POOL) && flat) {
                seterr(err, errlen, "%s: conv/pool after an fc layer", where);
                return -EINVAL;
            }
            switch (cl->op) {
            case MLT_CNN_CONV: {
                uint32_t p = 0;
                if (i + 1 < d->n_cnn && d->cnn[i + 1].op == MLT_CNN_POOL) {
                    p = d->cnn[i + 1].k;
                    if (p == 0) {
                        seterr(err, errlen, "cnn layer %u: pool size 0", i + 2);
                        return -EINVAL;
                    }
                    snprintf(where, sizeof where, "cnn layers %u-%u", i + 1, i + 2);
                    i++;
                }
                rc = add_layer(m, L_CONV, h, w, c, cl->k, p, cl->n, true, where, &n_conv, &n_fc,
                               err, errlen);
                break;
            }
            case MLT_CNN_POOL:
                if (cl->k == 0) {
                    seterr(err, errlen, "%s: pool size 0", where);
                    return -EINVAL;
                }
                rc = add_layer(m, L_POOL, h, w, c, 0, cl->k, 0, false, where, &n_conv, &n_fc, err,
                               errlen);
                break;
            case MLT_CNN_FC:
                rc = add_layer(m, L_FC, 1, 1, (uint32_t)((uint64_t)h * w * c), 0, 0, cl->n, true,
                               where, &n_conv, &n_fc, err, errlen);
                flat = true;
                break;
            default: seterr(err, errlen, "%s: unknown op %d", where, (int)cl->op); return -EINVAL;
            }
            if (rc < 0)
                return rc;
            const layer_t *L = &m->layers[m->n_layers - 1];
            h = L->oh;
            w = L->ow;
            c = L->oc;
        }
        if (!flat) {
            c = (uint32_t)((uint64_t)h * w * c);
            h = w = 1;
        }
    }
    return add_layer(m, L_FC, h, w, c, 0, 0, d->n_classes, false, "output layer", &n_conv, &n_fc,
                     err, errlen);
}

/* Work buffer sizes and offsets, after build_layers. */
static void plan_buffers(mlt_model_t *m)
{
    const size_t B = m->d.max_batch;
    size_t act = 0, idx = 0, g = 0, z = 0, col = 0, wt = 0;
    bool params_before = false;
    for (uint32_t l = 0; l < m->n_layers; l++) {
        layer_t *L = &m->layers[l];
        L->need_dx = params_before;
        params_before = params_before || L->w_idx >= 0;
        L->act_per = act;
        act += (L->out_size + 15) / 16 * 16; /* each output 64-byte aligned */
        if (L->kind == L_POOL || (L->kind == L_CONV && L->p > 0)) {
            L->idx_per = idx;
            idx += L->out_size;
        }
        if (L->out_size > g)
            g = L->out_size;
        if (L->kind == L_CONV) {
            const size_t taps = (size_t)L->k * L->k * L->c, hw = (size_t)L->h * L->w;
            L->thin = !L->need_dx && taps <= THIN_MAX_TAPS;
            /* the chunk's biggest scratch: the columns, or a thin conv's output */
            size_t per_img = L->thin ? hw * L->oc : hw * taps;
            size_t chunk = COL_CHUNK_BYTES / sizeof(float) / per_img;
            chunk = chunk < 1 ? 1 : chunk > B ? B : chunk;
            L->chunk = (uint32_t)chunk;
            if (!L->thin && chunk * per_img > col)
                col = chunk * per_img;
            if (L->thin && taps * L->oc > wt)
                wt = taps * L->oc;
            size_t zs = chunk * hw * L->oc;
            if (L->p > 0 && zs > z)
                z = zs;
        }
    }
    m->to_nhwc = m->d.type == MLT_MODEL_CNN && m->d.in_c > 1 && m->layers[0].kind != L_FC;
    m->n_in = m->to_nhwc ? m->layers[0].in_size : 0;
    m->n_act = act;
    m->n_idx = idx;
    m->n_g = g;
    m->n_z = z;
    m->n_col = col;
    m->n_wt = wt;
}

int mlt_model_ws_alloc(const mlt_model_t *m, ws_t *ws, size_t elem, uint32_t cap)
{
    const size_t sizes[] = {cap * m->n_act, cap * m->n_in, cap * m->n_g, cap * m->n_g,
                            m->n_z, m->n_col, m->n_wt, cap * m->n_idx};
    const size_t elems[] = {elem, elem, elem, elem, elem, elem, elem, sizeof(uint32_t)};
    void **dst[] = {&ws->act, &ws->in_nhwc, &ws->g[0], &ws->g[1],
                    &ws->z, &ws->col, &ws->wt, (void **)&ws->idx};
    enum { N_BUF = sizeof sizes / sizeof sizes[0] };
    size_t total = 0, off[N_BUF];
    for (size_t i = 0; i < N_BUF; i++) {
        off[i] = total;
        total += (sizes[i] * elems[i] + 63) / 64 * 64;
    }
    ws->cap = cap;
    ws->notify = true;
    ws->block = mlt_try_aligned(total);
    if (ws->block == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < N_BUF; i++)
        *dst[i] = sizes[i] ? (char *)ws->block + off[i] : NULL;
    return 0;
}

static int check_desc(const mlt_model_desc_t *d, char *err, size_t errlen)
{
    if (d->type == MLT_MODEL_MF) {
        if (d->n_users == 0 || d->n_items == 0 || d->rank == 0 || d->rank > MAX_DIM) {
            seterr(err, errlen, "mf: n_users, n_items and rank must be >= 1 (rank <= %u)", MAX_DIM);
            return -EINVAL;
        }
        if ((uint64_t)d->n_users * d->rank > MAX_TENSOR ||
            (uint64_t)d->n_items * d->rank > MAX_TENSOR) {
            seterr(err, errlen, "mf: factor tables of %u and %u rows x %u are too large",
                   d->n_users, d->n_items, d->rank);
            return -EINVAL;
        }
        if (!(d->l2 >= 0) || isinf(d->l2)) {
            seterr(err, errlen, "mf: l2 must be finite and >= 0");
            return -EINVAL;
        }
        return 0;
    }
    if (d->type != MLT_MODEL_SOFTMAX && d->type != MLT_MODEL_MLP && d->type != MLT_MODEL_CNN) {
        seterr(err, errlen, "unknown model type %d", d->type);
        return -EINVAL;
    }
    if (d->in_c == 0 || d->in_h == 0 || d->in_w == 0 || d->in_c > MAX_DIM || d->in_h > MAX_DIM ||
        d->in_w > MAX_DIM || (uint64_t)d->in_c * d->in_h * d->in_w > MAX_SAMPLE) {
        seterr(err, errlen, "input %ux%ux%u: each of c, h, w must be >= 1, %u elements at most",
               d->in_c, d->in_h, d->in_w, MAX_SAMPLE);
        return -EINVAL;
    }
    if (d->n_classes < 2 || d->n_classes > 256) {
        seterr(err, errlen, "n_classes %u not in 2..256", d->n_classes);
        return -EINVAL;
    }
    if (d->max_batch == 0 || d->max_batch > MAX_DIM) {
        seterr(err, errlen, "max_batch %u not in 1..%u", d->max_batch, MAX_DIM);
        return -EINVAL;
    }
    if (d->type == MLT_MODEL_MLP &&
        (d->n_hidden > MAX_LAYERS || (d->n_hidden > 0 && d->hidden == NULL))) {
        seterr(err, errlen, "mlp: %u hidden layers (at most %u, and hidden must be given)",
               d->n_hidden, MAX_LAYERS);
        return -EINVAL;
    }
    if (d->type == MLT_MODEL_CNN && (d->n_cnn > MAX_LAYERS || (d->n_cnn > 0 && d->cnn == NULL))) {
        seterr(err, errlen, "cnn: %u layers (at most %u, and cnn must be given)", d->n_cnn,
               MAX_LAYERS);
        return -EINVAL;
    }
    return 0;
}

mlt_model_t *mlt_model_new(const mlt_model_desc_t *d, char *err, size_t errlen)
{
    seterr(err, errlen, "%s", "");
    if (d == NULL) {
        seterr(err, errlen, "no model description");
        errno = EINVAL;
        return NULL;
    }
    int rc = check_desc(d, err, errlen);
    if (rc < 0) {
        errno = -rc;
        return NULL;
    }
    mlt_model_t *m = mlt_calloc(1, sizeof *m);
    m->d = *d;
    m->d.hidden = NULL;
    m->d.cnn = NULL;
    if (d->type == MLT_MODEL_MF) {
        m->params = mlt_calloc(2, sizeof *m->params);
        add_param(m, "mf.user", (uint64_t)d->n_users * d->rank, 0);
        add_param(m, "mf.item", (uint64_t)d->n_items * d->rank, 0);
        return m;
    }
    /* at most one layer per description entry plus the output layer */
    uint32_t max_layers = (d->type == MLT_MODEL_MLP   ? d->n_hidden
                           : d->type == MLT_MODEL_CNN ? d->n_cnn
                                                      : 0) +
                          1;
    m->layers = mlt_calloc(max_layers, sizeof *m->layers);
    m->params = mlt_calloc(2 * (size_t)max_layers, sizeof *m->params);
    rc = build_layers(m, d, err, errlen);
    if (rc < 0)
        goto fail;
    plan_buffers(m);
    rc = mlt_model_ws_alloc(m, &m->ws32, sizeof(float), d->max_batch);
    if (rc < 0)
        goto fail_nomem;
    return m;

fail_nomem:
    seterr(err, errlen, "out of memory for the model's work buffers (max_batch %u)", d->max_batch);
fail:
    mlt_model_destroy(&m);
    errno = -rc;
    return NULL;
}

void mlt_model_destroy(mlt_model_t **mp)
{
    if (mp == NULL || *mp == NULL)
        return;
    mlt_model_t *m = *mp;
    mlt_free(m->ws64.block);
    mlt_free(m->ws32.block);
    mlt_model_split_free(&m->split);
    mlt_free(m->params);
    mlt_free(m->layers);
    mlt_free(m);
    *mp = NULL;
}

int mlt_model_type(const mlt_model_t *m)
{
    return m->d.type;
}

uint32_t mlt_model_n_params(const mlt_model_t *m)
{
    return m->n_params;
}

const char *mlt_model_param_name(const mlt_model_t *m, uint32_t i)
{
    return i < m->n_params ? m->params[i].name : NULL;
}

uint64_t mlt_model_param_size(const mlt_model_t *m, uint32_t i)
{
    return i < m->n_params ? m->params[i].size : 0;
}

void mlt_model_init(const mlt_model_t *m, float *const *params, uint64_t seed)
{
    for (uint32_t i = 0; i < m->n_params; i++) {
        const param_t *p = &m->params[i];
        uint64_t st = mlt_rng_mix(seed, i);
        float *t = params[i];
        if (p->fan_in == 0) {
            for (uint64_t j = 0; j < p->size; j++)
                t[j] = (float)(0.1 * mlt_rng_normal(&st));
        } else {
            const double bound = 1.0 / sqrt((double)p->fan_in);
            for (uint64_t j = 0; j < p->size; j++)
                t[j] = (float)((2.0 * mlt_rng_uniform(&st) - 1.0) * bound);
        }
    }
}

void mlt_model_on_grad(mlt_model_t *m, mlt_grad_ready_fn fn, void *ctx)
{
    m->on_grad = fn;
    m->on_grad_ctx = ctx;
}

uint32_t mlt_model_n_layers(const mlt_model_t *m)
{
    return m->n_layers;
}

bool mlt_model_layer(const mlt_model_t *m, uint32_t l, mlt_model_layer_t *out)
{
    if (l >= m->n_layers)
        return false;
    const layer_t *L = &m->layers[l];
    *out = (mlt_model_layer_t){.kind = L->kind,
                               .h = L->h,
                               .w = L->w,
                               .c = L->c,
                               .oh = L->oh,
                               .ow = L->ow,
                               .oc = L->oc,
                               .k = L->k,
                               .pool = L->p,
                               .relu = L->relu,
                               .need_dx = L->need_dx,
                               .w_idx = L->w_idx,
                               .b_idx = L->b_idx};
    return true;
}

bool mlt_model_input_nhwc(const mlt_model_t *m)
{
    return m->to_nhwc;
}

const mlt_model_desc_t *mlt_model_desc(const mlt_model_t *m)
{
    return &m->d;
}

void mlt_model_limit_chunk(mlt_model_t *m, uint32_t images)
{
    /* only ever smaller: the scratch buffers were sized for the planned chunk */
    for (uint32_t l = 0; l < m->n_layers; l++)
        if (m->layers[l].kind == L_CONV && images >= 1 && images < m->layers[l].chunk)
            m->layers[l].chunk = images;
}

/* ---- steps ---- */

static bool is_classifier(const mlt_model_t *m)
{
    return m->d.type != MLT_MODEL_MF;
}

static bool labels_ok(const mlt_model_t *m, const uint8_t *y, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (y[i] >= m->d.n_classes)
            return false;
    return true;
}

static bool ratings_ok(const mlt_model_t *m, const uint32_t *users, const uint32_t *items,
                       uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (users[i] >= m->d.n_users || items[i] >= m->d.n_items)
            return false;
    return true;
}

void mlt_model_step_ws(mlt_model_t *m, const ws_t *ws, float *const *P, float *const *G,
                       const float *x, const uint8_t *y, uint32_t batch, uint32_t of, double *loss,
                       uint32_t *correct)
{
    step_f32(m, ws, P, G, x, y, batch, of, loss, correct);
}

double mlt_model_eval_ws(const mlt_model_t *m, const ws_t *ws, float *const *params,
                         const float *x, const uint8_t *y, uint32_t n, uint32_t *correct)
{
    const size_t in = (size_t)m->d.in_c * m->d.in_h * m->d.in_w;
    double total = 0;
    uint32_t right = 0;
    for (uint32_t b0 = 0; b0 < n; b0 += ws->cap) {
        uint32_t nb = n - b0 < ws->cap ? n - b0 : ws->cap, c = 0;
        const float *logits = forward_f32((mlt_model_t *)m, ws, params, x + b0 * in, nb);
        total += nb * mlt_cpu_softmax_xent(logits, y + b0, nb, m->d.n_classes, NULL, &c);
        right += c;
    }
    *correct = right;
    return total;
}

int mlt_model_step(mlt_model_t *m, float *const *params, float *const *grads, const float *x,
                   const uint8_t *y, uint32_t batch, float *loss, uint32_t *correct)
{
    if (!is_classifier(m) || batch == 0 || batch > m->d.max_batch || !labels_ok(m, y, batch))
        return -EINVAL;
    double l;
    if (!mlt_model_split_step(m, params, grads, x, y, batch, &l, correct))
        step_f32(m, &m->ws32, params, grads, x, y, batch, batch, &l, correct);
    *loss = (float)l;
    return 0;
}

int mlt_model_step_f64(mlt_model_t *m, double *const *params, double *const *grads, const double *x,
                       const uint8_t *y, uint32_t batch, double *loss, uint32_t *correct)
{
    if (!is_classifier(m) || batch == 0 || batch > m->d.max_batch || !labels_ok(m, y, batch))
        return -EINVAL;
    if (m->ws64.block == NULL && mlt_model_ws_alloc(m, &m->ws64, sizeof(double), m->d.max_batch) < 0)
        return -ENOMEM;
    step_f64(m, &m->ws64, params, grads, x, y, batch, batch, loss, correct);
    return 0;
}

int mlt_model_step_mf(mlt_model_t *m, float *const *params, float *const *grads,
                      const uint32_t *users, const uint32_t *items, const float *r, uint32_t batch,
                      float *loss)
{
    if (is_classifier(m) || batch == 0 || !ratings_ok(m, users, items, batch))
        return -EINVAL;
    *loss = (float)step_mf_f32(m, params, grads, users, items, r, batch);
    if (m->on_grad) {
        m->on_grad(m->on_grad_ctx, 0);
        m->on_grad(m->on_grad_ctx, 1);
    }
    return 0;
}

int mlt_model_step_mf_f64(mlt_model_t *m, double *const *params, double *const *grads,
                          const uint32_t *users, const uint32_t *items, const double *r,
                          uint32_t batch, double *loss)
{
    if (is_classifier(m) || batch == 0 || !ratings_ok(m, users, items, batch))
        return -EINVAL;
    *loss = step_mf_f64(m, params, grads, users, items, r, batch);
    if (m->on_grad) {
        m->on_grad(m->on_grad_ctx, 0);
        m->on_grad(m->on_grad_ctx, 1);
    }
    return 0;
}

int mlt_model_eval(mlt_model_t *m, float *const *params, const float *x, const uint8_t *y,
                   uint32_t n, double *loss, uint32_t *correct)
{
    if (!is_classifier(m) || n == 0 || !labels_ok(m, y, n))
        return -EINVAL;
    double total;
    uint32_t right;
    if (!mlt_model_split_eval(m, params, x, y, n, &total, &right))
        total = mlt_model_eval_ws(m, &m->ws32, params, x, y, n, &right);
    *loss = total / n;
    if (correct != NULL)
        *correct = right;
    return 0;
}

int mlt_model_eval_mf(mlt_model_t *m, float *const *params, const uint32_t *users,
                      const uint32_t *items, const float *r, uint32_t n, double *mse)
{
    if (is_classifier(m) || n == 0 || !ratings_ok(m, users, items, n))
        return -EINVAL;
    *mse = mlt_cpu_mf_sse(params[0], params[1], m->d.rank, users, items, r, n) / n;
    return 0;
}
