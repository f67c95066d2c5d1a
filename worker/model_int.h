/* model_int.h - PRIVATE to worker/model.c and worker/model_split.c: the
 * model's types and what the batch-parallel steps (model_split.c) use of
 * model.c. Not installed, not for other modules. */
#ifndef MLT_WORKER_MODEL_INT_H
#define MLT_WORKER_MODEL_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "worker/model.h"

/* the same values as model.h's MLT_LAYER_* */
enum { L_FC = MLT_LAYER_FC, L_CONV = MLT_LAYER_CONV, L_POOL = MLT_LAYER_POOL };

typedef struct layer {
    int kind;            /* L_FC, L_CONV or L_POOL */
    uint32_t h, w, c;    /* input image (fc: 1 x 1 x in features) */
    uint32_t oh, ow, oc; /* output image (conv with pool: after pooling) */
    uint32_t k;          /* conv: kernel size */
    uint32_t p;          /* pool: window; conv: fused pool window, 0 = none */
    bool relu;           /* ReLU on the output */
    bool need_dx;        /* backward computes d(input): some earlier layer has parameters */
    bool thin;           /* conv: direct (mlt_cpu_conv_thin), no im2col; see THIN_MAX_TAPS */
    int w_idx, b_idx;    /* parameter tensors (-1: none) */
    size_t in_size;      /* elements per sample in: h*w*c */
    size_t out_size;     /* elements per sample out: oh*ow*oc */
    size_t act_per;      /* its output activation at ws_t.act + cap * act_per (elements) */
    size_t idx_per;      /* its argmax indices at ws_t.idx + cap * idx_per */
    uint32_t chunk;      /* conv: images per im2col chunk */
} layer_t;

typedef struct param {
    char name[24];   /* "fc1.w" */
    uint64_t size;   /* elements */
    uint64_t fan_in; /* for init; 0 = MF factor (normal) */
} param_t;

typedef struct ws {
    uint32_t cap;  /* samples the buffers hold */
    bool notify;   /* the backward pass calls mlt_model.on_grad (not a slice's) */
    void *block;   /* the one allocation holding the rest */
    void *act;     /* layer outputs, see layer_t.act_per */
    void *in_nhwc; /* the input in NHWC (cnn with in_c > 1), else NULL */
    void *g[2];    /* gradient buffers, each max over layers of cap*out_size */
    void *z;       /* conv pre-pool chunk output / its gradient */
    void *col;     /* im2col chunk / its gradient */
    void *wt;      /* thin conv: its weights transposed, then its transposed gradient */
    uint32_t *idx; /* argmax indices of all pooling layers */
} ws_t;

typedef struct split split_t; /* batch-parallel steps: model_split.c */

struct mlt_model {
    mlt_model_desc_t d; /* the description (hidden/cnn point to NULL: not kept) */
    layer_t *layers;    /* n_layers, input to logits */
    uint32_t n_layers;
    param_t *params; /* n_params */
    uint32_t n_params;
    bool to_nhwc;  /* the input is converted NCHW -> NHWC first */
    /* buffer sizes: the first four per sample (times ws_t.cap) */
    size_t n_act;  /* elements of ws_t.act */
    size_t n_idx;  /* elements of ws_t.idx */
    size_t n_in;   /* elements of ws_t.in_nhwc (0: none) */
    size_t n_g;    /* elements of each ws_t.g[i] */
    size_t n_z;    /* elements of ws_t.z */
    size_t n_col;  /* elements of ws_t.col */
    size_t n_wt;   /* elements of ws_t.wt */
    ws_t ws32;     /* float buffers */
    mlt_grad_ready_fn on_grad; /* see mlt_model_on_grad */
    void *on_grad_ctx;
    ws_t ws64;     /* double buffers, allocated on the first *_f64 step */
    split_t *split; /* NULL: one thread */
};

/* model.c */

/* Allocates one precision's buffers (elem bytes per element) for cap
 * samples. 0 or -ENOMEM. */
int mlt_model_ws_alloc(const mlt_model_t *m, ws_t *ws, size_t elem, uint32_t cap);
/* One float classification step on ws (batch <= ws->cap), its gradient
 * divided by `of` (see model_impl.h's step); input already validated. */
void mlt_model_step_ws(mlt_model_t *m, const ws_t *ws, float *const *P, float *const *G,
                       const float *x, const uint8_t *y, uint32_t batch, uint32_t of, double *loss,
                       uint32_t *correct);
/* Forward passes over n samples in pieces of at most ws->cap: the summed
 * loss; *correct gets the samples classified right. */
double mlt_model_eval_ws(const mlt_model_t *m, const ws_t *ws, float *const *params,
                         const float *x, const uint8_t *y, uint32_t n, uint32_t *correct);

/* model_split.c */

void mlt_model_split_free(split_t **spp);
/* The step on m's threads, if it has them and batch >= their number: true,
 * with *loss (mean) and *correct (may be NULL) set and on_grad called for
 * every tensor. false: nothing done. */
bool mlt_model_split_step(mlt_model_t *m, float *const *params, float *const *grads,
                          const float *x, const uint8_t *y, uint32_t batch, double *loss,
                          uint32_t *correct);
/* The evaluation on m's threads, if it has them and n >= their number: true,
 * with *total the summed loss and *right the samples classified right. */
bool mlt_model_split_eval(mlt_model_t *m, float *const *params, const float *x, const uint8_t *y,
                          uint32_t n, double *total, uint32_t *right);

#endif
