/* model.h - the models a worker trains on the CPU: softmax regression, MLP,
 * CNN (classification of images with uint8 labels) and matrix factorisation
 * (ratings).
 *
 * A model holds its shape and preallocated work buffers (activations for
 * max_batch samples), never its parameters: every call takes the parameter
 * tensors (and gradient tensors) as arrays of float pointers, one per tensor,
 * in the order mlt_model_param_name lists them. So the same model computes on
 * whatever copy the parameter server hands out.
 *
 * Tensors and layouts:
 *   fcN.w     out x in (PyTorch's Linear layout), fcN.b: out
 *   convN.w   c_out x k x k x c_in (cuDNN's KRSC filter layout), convN.b: c_out
 *   mf.user   n_users x rank, mf.item: n_items x rank
 * Inputs x are n samples of in_c x in_h x in_w floats each (NCHW, as data files
 * hold images); the CNN computes in NHWC internally (kernels/cpu.h), so an fc
 * after a conv/pool sees its input flattened in (h, w, c) order (an fc straight
 * on the input, as in the mlp, sees the input as given).
 * Numbering: convolutions conv1, conv2, ...; fully connected layers fc1, fc2,
 * ... including the final one to n_classes; softmax regression is fc1 alone.
 *
 * Not thread-safe: one model per thread (the work buffers are shared by the
 * calls). The computation is parallel inside OpenBLAS's GEMMs only. */
#ifndef MLT_MODEL_H
#define MLT_MODEL_H

#include "common/jobfile.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The model types (MLT_MODEL_MLP, _CNN, _SOFTMAX, _MF) and the CNN layer
 * description (mlt_cnn_layer_t: op MLT_CNN_CONV with k odd and n output
 * channels, then ReLU; MLT_CNN_POOL with k the window and stride; MLT_CNN_FC
 * with n units, then ReLU) are the job file's, common/jobfile.h. */

typedef struct mlt_model_desc {
    int type;                   /* mlt_model_type_t: MLT_MODEL_SOFTMAX, _MLP, _CNN, _MF */
    uint32_t in_c, in_h, in_w;  /* classification input: channels, height, width */
    uint32_t n_classes;         /* classification: output classes (2..256) */
    const uint32_t *hidden;     /* mlp: hidden layer widths */
    uint32_t n_hidden;          /* mlp: number of hidden layers */
    const mlt_cnn_layer_t *cnn; /* cnn: the layers before the implied final fc;
                                   conv and pool must precede every fc */
    uint32_t n_cnn;             /* cnn: number of layers in cnn */
    uint32_t n_users, n_items;  /* mf: table sizes */
    uint32_t rank;              /* mf: factor length */
    float l2;                   /* mf: L2 coefficient (>= 0) */
    uint32_t max_batch;         /* largest batch a step takes; eval works in
                                   batches of this size (>= 1) */
} mlt_model_desc_t;

typedef struct mlt_model mlt_model_t;

/* Builds a model from d (which is copied; d's arrays may be freed after).
 * Returns the model (caller owns: mlt_model_destroy), or NULL with errno
 * EINVAL and a message in err (what is wrong and where, e.g. "cnn layer 2:
 * pool 3 larger than its 2x2 input") for an invalid description, or ENOMEM. */
mlt_model_t *mlt_model_new(const mlt_model_desc_t *d, char *err, size_t errlen);

/* Frees *mp (NULL allowed) and sets *mp = NULL. */
void mlt_model_destroy(mlt_model_t **mp);

/* The model's type (MLT_MODEL_*). */
int mlt_model_type(const mlt_model_t *m);

/* Number of parameter tensors. */
uint32_t mlt_model_n_params(const mlt_model_t *m);

/* Name of tensor i ("fc1.w", "conv2.b", "mf.user", ...), NULL when i is out of
 * range. The string lives as long as the model. */
const char *mlt_model_param_name(const mlt_model_t *m, uint32_t i);

/* Number of floats in tensor i (0 when i is out of range). */
uint64_t mlt_model_param_size(const mlt_model_t *m, uint32_t i);

/* Fills the tensors with initial values, deterministically for a seed (each
 * tensor i from its own stream mlt_rng_mix(seed, i), see common/rng.h):
 * PyTorch's defaults for weights and biases, both U(-1/sqrt(fan_in),
 * +1/sqrt(fan_in)) (kaiming_uniform with a = sqrt(5)), fan_in = in features
 * or k*k*c_in; MF factors N(0, 0.1^2). */
void mlt_model_init(const mlt_model_t *m, float *const *params, uint64_t seed);

/* Tells the caller, during a step, as soon as the gradient of tensor i is
 * final: fn(ctx, i) is called from inside mlt_model_step (and _step_mf, and
 * the _f64 steps) on the calling thread, once per tensor with parameters,
 * the last layer's first (the backward pass's order). A caller can send a
 * gradient while the earlier layers' are still being computed. fn NULL: no
 * calls. */
typedef void (*mlt_grad_ready_fn)(void *ctx, uint32_t tensor);
void mlt_model_on_grad(mlt_model_t *m, mlt_grad_ready_fn fn, void *ctx);

/* One training step of a classification model on batch samples (x: batch
 * samples, y: their labels): forward, loss, backward. grads[i] gets the
 * gradient of the mean loss over the batch with respect to params[i]
 * (overwritten). *loss gets the mean cross-entropy, *correct (may be NULL) the
 * number of samples classified right. Returns 0, or -EINVAL for an MF model,
 * batch 0 or > max_batch, or a label >= n_classes (nothing written). */
int mlt_model_step(mlt_model_t *m, float *const *params, float *const *grads, const float *x,
                   const uint8_t *y, uint32_t batch, float *loss, uint32_t *correct);

/* One training step of an MF model on batch ratings (users[i], items[i], r[i]):
 * the objective is  (1/batch) sum_i [ (u.v - r)^2 + l2 (|u|^2 + |v|^2) ];
 * grads[i] gets its gradient. The gradient tensors are dense tables, rows of
 * users and items absent from the batch are zero (written, so each step costs
 * O(table size) in memset on top of O(batch * rank) of arithmetic). *loss gets
 * the mean squared error (the data term, without the L2 term). Returns 0, or
 * -EINVAL for a non-MF model, batch 0, or an index out of range. */
int mlt_model_step_mf(mlt_model_t *m, float *const *params, float *const *grads,
                      const uint32_t *users, const uint32_t *items, const float *r, uint32_t batch,
                      float *loss);

/* Evaluates a classification model on n samples, in batches of max_batch:
 * *loss gets the mean cross-entropy, *correct the number classified right.
 * Returns 0, or -EINVAL (MF model, n 0, or a label out of range). */
int mlt_model_eval(mlt_model_t *m, float *const *params, const float *x, const uint8_t *y,
                   uint32_t n, double *loss, uint32_t *correct);

/* Evaluates an MF model: *mse gets the mean of (u.v - r)^2 over n ratings.
 * Returns 0, or -EINVAL (non-MF model, n 0, an index out of range). */
int mlt_model_eval_mf(mlt_model_t *m, float *const *params, const uint32_t *users,
                      const uint32_t *items, const float *r, uint32_t n, double *mse);

/* ---- The layer plan, for other backends (worker/model_gpu.c) ----
 * A classification model is n_layers layers from the input to the logits; a
 * conv followed by a pool in the description is ONE layer (kind conv with
 * pool > 0: the output is after bias, ReLU and pooling). MF models have no
 * layers. */
typedef struct mlt_model_layer {
    int kind;            /* MLT_LAYER_FC, _CONV or _POOL */
    uint32_t h, w, c;    /* input image, NHWC (fc: 1 x 1 x in features) */
    uint32_t oh, ow, oc; /* output image (conv with pool: after pooling) */
    uint32_t k;          /* conv: kernel size (odd, 'same' padding, stride 1) */
    uint32_t pool;       /* pool: window = stride; conv: fused pool window, 0 = none */
    bool relu;           /* ReLU on the output (every layer but pools and the last fc) */
    bool need_dx;        /* the backward pass computes d(input): an earlier layer has parameters */
    int w_idx, b_idx;    /* parameter tensors (-1: none) */
} mlt_model_layer_t;

enum { MLT_LAYER_FC = 1, MLT_LAYER_CONV = 2, MLT_LAYER_POOL = 3 };

/* Number of layers (0 for MF), and layer l's plan (false when l is out of
 * range). The input of a cnn is converted NCHW -> NHWC first when
 * mlt_model_input_nhwc() is true (in_c > 1); an mlp or softmax sees the
 * input as one vector of in_c*in_h*in_w. */
uint32_t mlt_model_n_layers(const mlt_model_t *m);
bool mlt_model_layer(const mlt_model_t *m, uint32_t l, mlt_model_layer_t *out);
bool mlt_model_input_nhwc(const mlt_model_t *m);
/* The description the model was built from (hidden and cnn are NULL). */
const mlt_model_desc_t *mlt_model_desc(const mlt_model_t *m);

/* ---- For tests only: the same steps in double precision. ----
 * The identical code (worker/model_impl.h) instantiated for double, for the
 * finite-difference gradient checks. The double work buffers are allocated on
 * the first call (-ENOMEM if that fails). */
int mlt_model_step_f64(mlt_model_t *m, double *const *params, double *const *grads, const double *x,
                       const uint8_t *y, uint32_t batch, double *loss, uint32_t *correct);
int mlt_model_step_mf_f64(mlt_model_t *m, double *const *params, double *const *grads,
                          const uint32_t *users, const uint32_t *items, const double *r,
                          uint32_t batch, double *loss);

/* Runs each classification step and evaluation on n threads (n - 1 of them
 * started here), each on a slice of the samples with its own buffers, then
 * adds the slices' gradients up (see model.c). n <= 1, and any n for an MF
 * model, is one thread. Call it between steps, not during one. Returns 0 or
 * -ENOMEM / -errno (then one thread). The result equals one thread's up to
 * the order of float additions, not bit for bit. */
int mlt_model_set_threads(mlt_model_t *m, uint32_t n);
uint32_t mlt_model_threads(const mlt_model_t *m);

/* Caps the images per convolution chunk at `images` (>= 1; it never grows), so
 * that the tests' small models also run the chunked paths (weight and bias
 * gradients summed over chunks, a short last chunk). */
void mlt_model_limit_chunk(mlt_model_t *m, uint32_t images);

#endif
