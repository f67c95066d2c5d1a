/* model_impl.h - PRIVATE to worker/model.c: the forward and backward passes,
 * written once over a scalar type and included twice (float for training,
 * double for the gradient checks), so the checked code is the training code.
 *
 * The includer defines:
 *   REAL      the scalar type
 *   R(name)   this instantiation's name for a file-local function (name_f32/_f64)
 *   K(name)   the kernel of this precision (mlt_cpu_x or mlt_cpu_x_f64)
 * and includes model_int.h (mlt_model, layer_t, ws_t) before including it.
 * No include guard: that is the point.
 *
 * Buffers (ws_t, sized for max_batch at creation): each layer's output
 * activation (kept for the backward pass), two gradient buffers that take
 * turns as d(output) and d(input) going backwards, and per-chunk scratch for
 * the convolutions: the im2col matrix (reused for its gradient) and the
 * pre-pooling output (reused for its gradient). A convolution runs over
 * chunks of L->chunk images so that scratch stays in cache; its weight and
 * bias gradients accumulate over the chunks. A thin convolution (L->thin)
 * skips im2col: it convolves directly with its weights transposed into
 * ws->wt, where its transposed weight gradient then accumulates. */

/* This precision's kernels, by short names. */
#define BIAS_ADD          K(mlt_cpu_bias_add)
#define BIAS_GRAD         K(mlt_cpu_bias_grad)
#define BIAS_RELU         K(mlt_cpu_bias_relu)
#define BIAS_RELU_MAXPOOL K(mlt_cpu_bias_relu_maxpool)
#define COL2IM            K(mlt_cpu_col2im)
#define CONV_THIN         K(mlt_cpu_conv_thin)
#define CONV_THIN_DW      K(mlt_cpu_conv_thin_dw)
#define GEMM              K(mlt_cpu_gemm)
#define IM2COL            K(mlt_cpu_im2col)
#define MAXPOOL           K(mlt_cpu_maxpool)
#define MAXPOOL_BACKWARD  K(mlt_cpu_maxpool_backward)
#define MF_GRAD           K(mlt_cpu_mf_grad)
#define NCHW_TO_NHWC      K(mlt_cpu_nchw_to_nhwc)
#define RELU_BACKWARD     K(mlt_cpu_relu_backward)
#define SOFTMAX_XENT      K(mlt_cpu_softmax_xent)
#define TRANSPOSE         K(mlt_cpu_transpose)

/* Layer L's output activation for sample 0 of a batch. */
static REAL *R(act)(const ws_t *ws, const layer_t *L)
{
    return (REAL *)ws->act + ws->cap * L->act_per;
}

/* Forward pass over batch samples; x is the input as given (NCHW). Returns
 * the logits (batch x n_classes), the last layer's activation. */
static const REAL *R(forward)(mlt_model_t *m, const ws_t *ws, REAL *const *P, const REAL *x,
                              uint32_t batch)
{
    const REAL *in = x;
    if (m->to_nhwc) {
        REAL *t = (REAL *)ws->in_nhwc;
        NCHW_TO_NHWC(x, batch, m->d.in_c, m->d.in_h, m->d.in_w, t);
        in = t;
    }
    for (uint32_t l = 0; l < m->n_layers; l++) {
        const layer_t *L = &m->layers[l];
        REAL *out = R(act)(ws, L);
        switch (L->kind) {
        case L_FC:
            GEMM(false, true, batch, L->out_size, L->in_size, 1, in, L->in_size, P[L->w_idx],
                 L->in_size, 0, out, L->out_size);
            if (L->relu)
                BIAS_RELU(out, P[L->b_idx], batch, L->out_size);
            else
                BIAS_ADD(out, P[L->b_idx], batch, L->out_size);
            break;
        case L_CONV: {
            const size_t kkc = (size_t)L->k * L->k * L->c, hw = (size_t)L->h * L->w;
            REAL *col = (REAL *)ws->col, *wt = (REAL *)ws->wt;
            if (L->thin)
                TRANSPOSE(P[L->w_idx], L->oc, kkc, wt);
            for (uint32_t b0 = 0; b0 < batch; b0 += L->chunk) {
                const uint32_t nb = batch - b0 < L->chunk ? batch - b0 : L->chunk;
                const size_t rows = nb * hw;
                const REAL *x0 = in + b0 * L->in_size;
                /* the pre-activation: into scratch when a pool follows */
                REAL *z = L->p > 0 ? (REAL *)ws->z : out + b0 * L->out_size;
                if (L->thin) {
                    CONV_THIN(x0, nb, L->h, L->w, L->c, L->k, wt, L->oc, z);
                } else {
                    IM2COL(x0, nb, L->h, L->w, L->c, L->k, col);
                    GEMM(false, true, rows, L->oc, kkc, 1, col, kkc, P[L->w_idx], kkc, 0, z, L->oc);
                }
                if (L->p > 0)
                    BIAS_RELU_MAXPOOL(z, P[L->b_idx], nb, L->h, L->w, L->oc, L->p,
                                      out + b0 * L->out_size,
                                      ws->idx + ws->cap * L->idx_per + b0 * L->out_size);
                else
                    BIAS_RELU(z, P[L->b_idx], rows, L->oc);
            }
            break;
        }
        case L_POOL: MAXPOOL(in, batch, L->h, L->w, L->c, L->p, out, ws->idx + ws->cap * L->idx_per); break;
        default: assert(0 && "layer kind");
        }
        in = out;
    }
    return in;
}

/* Backward pass after R(forward) on the same batch: dlogits (batch x
 * n_classes, in ws->g[0]) is the loss gradient at the logits; fills G. */
static void R(backward)(mlt_model_t *m, const ws_t *ws, REAL *const *P, REAL *const *G,
                        const REAL *x, uint32_t batch)
{
    REAL *g_out = (REAL *)ws->g[0], *g_in = (REAL *)ws->g[1];
    for (uint32_t l = m->n_layers; l-- > 0;) {
        const layer_t *L = &m->layers[l];
        const REAL *in =
            l > 0 ? R(act)(ws, &m->layers[l - 1]) : (m->to_nhwc ? (const REAL *)ws->in_nhwc : x);
        const REAL *out = R(act)(ws, L);
        if (L->relu)
            /* for a conv with a fused pool, out is the pooled relu(z + b): its
             * sign at each window's maximum is the sign at the pixel the
             * gradient goes to, and every other pixel gets none */
            RELU_BACKWARD(g_out, out, (size_t)batch * L->out_size);
        switch (L->kind) {
        case L_FC:
            GEMM(true, false, L->out_size, L->in_size, batch, 1, g_out, L->out_size, in, L->in_size,
                 0, G[L->w_idx], L->in_size);
            BIAS_GRAD(G[L->b_idx], g_out, batch, L->out_size, false);
            if (L->need_dx)
                GEMM(false, false, batch, L->in_size, L->out_size, 1, g_out, L->out_size,
                     P[L->w_idx], L->in_size, 0, g_in, L->in_size);
            break;
        case L_CONV: {
            const size_t kkc = (size_t)L->k * L->k * L->c, hw = (size_t)L->h * L->w;
            REAL *col = (REAL *)ws->col, *dwt = (REAL *)ws->wt;
            for (uint32_t b0 = 0; b0 < batch; b0 += L->chunk) {
                const uint32_t nb = batch - b0 < L->chunk ? batch - b0 : L->chunk;
                const size_t rows = nb * hw;
                const bool acc = b0 > 0;
                REAL *dz;
                if (L->p > 0) {
                    dz = (REAL *)ws->z;
                    MAXPOOL_BACKWARD(g_out + b0 * L->out_size,
                                     ws->idx + ws->cap * L->idx_per + b0 * L->out_size, nb, L->h, L->w, L->oc,
                                     L->p, dz);
                } else {
                    dz = g_out + b0 * L->out_size;
                }
                BIAS_GRAD(G[L->b_idx], dz, rows, L->oc, acc);
                if (L->thin) { /* no input gradient (see THIN_MAX_TAPS) */
                    CONV_THIN_DW(in + b0 * L->in_size, dz, nb, L->h, L->w, L->c, L->k, L->oc, dwt,
                                 acc);
                    continue;
                }
                IM2COL(in + b0 * L->in_size, nb, L->h, L->w, L->c, L->k, col);
                GEMM(true, false, L->oc, kkc, rows, 1, dz, L->oc, col, kkc, acc ? 1 : 0,
                     G[L->w_idx], kkc);
                if (L->need_dx) {
                    /* the column gradient overwrites the columns, now used */
                    GEMM(false, false, rows, kkc, L->oc, 1, dz, L->oc, P[L->w_idx], kkc, 0, col,
                         kkc);
                    COL2IM(col, nb, L->h, L->w, L->c, L->k, g_in + b0 * L->in_size);
                }
            }
            if (L->thin)
                TRANSPOSE(dwt, kkc, L->oc, G[L->w_idx]);
            break;
        }
        case L_POOL:
            if (L->need_dx)
                MAXPOOL_BACKWARD(g_out, ws->idx + ws->cap * L->idx_per, batch, L->h, L->w, L->c, L->p, g_in);
            break;
        default: assert(0 && "layer kind");
        }
        if (L->w_idx >= 0 && m->on_grad && ws->notify) { /* this layer's gradients are final */
            m->on_grad(m->on_grad_ctx, (uint32_t)L->w_idx);
            m->on_grad(m->on_grad_ctx, (uint32_t)L->b_idx);
        }
        REAL *t = g_out;
        g_out = g_in;
        g_in = t;
    }
}

/* One classification step (see mlt_model_step); input already validated.
 * G gets the gradient of the loss summed over these batch samples and
 * divided by `of` (>= batch: the whole batch, of which these are a slice). */
static void R(step)(mlt_model_t *m, const ws_t *ws, REAL *const *P, REAL *const *G, const REAL *x,
                    const uint8_t *y, uint32_t batch, uint32_t of, double *loss, uint32_t *correct)
{
    const REAL *logits = R(forward)(m, ws, P, x, batch);
    REAL *dz = (REAL *)ws->g[0];
    *loss = SOFTMAX_XENT(logits, y, batch, m->d.n_classes, dz, correct);
    if (of != batch) { /* the kernel divided by batch */
        const REAL f = (REAL)batch / (REAL)of;
        for (size_t i = 0; i < (size_t)batch * m->d.n_classes; i++)
            dz[i] *= f;
    }
    R(backward)(m, ws, P, G, x, batch);
}

/* One MF step (see mlt_model_step_mf); input already validated. */
static double R(step_mf)(const mlt_model_t *m, REAL *const *P, REAL *const *G,
                         const uint32_t *users, const uint32_t *items, const REAL *r,
                         uint32_t batch)
{
    const size_t rank = m->d.rank;
    memset(G[0], 0, (size_t)m->d.n_users * rank * sizeof(REAL));
    memset(G[1], 0, (size_t)m->d.n_items * rank * sizeof(REAL));
    double sse = MF_GRAD(P[0], P[1], rank, users, items, r, batch, (REAL)m->d.l2,
                         (REAL)1 / (REAL)batch, G[0], G[1]);
    return sse / batch;
}

#undef BIAS_ADD
#undef BIAS_GRAD
#undef BIAS_RELU
#undef BIAS_RELU_MAXPOOL
#undef COL2IM
#undef CONV_THIN
#undef CONV_THIN_DW
#undef GEMM
#undef IM2COL
#undef MAXPOOL
#undef MAXPOOL_BACKWARD
#undef MF_GRAD
#undef NCHW_TO_NHWC
#undef RELU_BACKWARD
#undef SOFTMAX_XENT
#undef TRANSPOSE
