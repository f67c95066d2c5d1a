/* model_gpu.h - the models of worker/model.h on a CUDA device (kernels/gpu.h):
 * the same layers, parameter tensors (names, sizes, order, layouts), initial
 * values and loss, computed with cuBLAS GEMMs, cuDNN convolutions and the
 * CUDA kernels of kernels/gpu_ops.cu.
 *
 * Unlike the CPU model, a GPU model owns its parameter and gradient tensors,
 * in device memory (mlt_gpu_model_params / _grads): the caller uploads the
 * parameters it pulled (or keeps them there and applies the optimizer on the
 * device), runs steps, and downloads the gradients. Data arrive as device
 * pointers too (the trainer keeps its data sets on the device).
 *
 * Steps are ASYNCHRONOUS on the context's stream and allocate nothing once
 * mlt_gpu_model_prepare(batch) has run for their batch size, so a whole step
 * (copies, gather, forward, backward, optimizer) can be captured as a CUDA
 * graph (mlt_gpu_capture_begin) and replayed. The loss of a step lands in
 * device memory (mlt_gpu_model_d_loss); read it after a sync.
 *
 * Results against the CPU model (tests/unit/check_gpu.c): the same
 * gradients up to float rounding in another summation order (convolutions
 * in full FP32: the model turns TF32 off unless mlt_gpu_model_new is told
 * otherwise).
 *
 * Not thread-safe: one model per context per thread. Never prints. */
#ifndef MLT_MODEL_GPU_H
#define MLT_MODEL_GPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/gpu.h"
#include "worker/model.h"

typedef struct mlt_gpu_model mlt_gpu_model_t;

/* Builds the model of d on the context g (which must outlive it): the layer
 * plan of mlt_model_new(d), device tensors (zeroed) and work buffers for
 * d->max_batch samples. tf32: convolutions may use TF32 tensor cores (faster,
 * ~1e-3 relative error; PyTorch's default); false keeps full FP32. NULL with
 * the reason in err: an invalid description (the CPU model's message), or
 * device memory. */
mlt_gpu_model_t *mlt_gpu_model_new(mlt_gpu_t *g, const mlt_model_desc_t *d, bool tf32, char *err,
                                   size_t errlen);
void mlt_gpu_model_destroy(mlt_gpu_model_t **mp);

/* The CPU twin that holds the plan: names, sizes, the description. */
const mlt_model_t *mlt_gpu_model_plan(const mlt_gpu_model_t *m);
mlt_gpu_t *mlt_gpu_model_gpu(const mlt_gpu_model_t *m);

/* Device parameter and gradient tensors, mlt_model_n_params(plan) of each,
 * in mlt_model_param_name order. Owned by the model. */
float *const *mlt_gpu_model_params(mlt_gpu_model_t *m);
float *const *mlt_gpu_model_grads(mlt_gpu_model_t *m);

/* Seeded initial values, as mlt_model_init (computed on the host, uploaded;
 * synchronous). 0 or -errno. */
int mlt_gpu_model_init(mlt_gpu_model_t *m, uint64_t seed);

/* Makes what a step or evaluation of `batch` samples needs (the cuDNN
 * convolution plans of that batch size); a no-op when done before. Must not
 * run while capturing. 0, -EINVAL (batch 0 or > max_batch) or -EIO/-ENOMEM
 * with mlt_gpu_error(). */
int mlt_gpu_model_prepare(mlt_gpu_model_t *m, uint32_t batch);

/* A count that changes whenever prepare frees a convolution plan (it keeps
 * plans for 24 batch sizes per layer, the oldest go): a CUDA graph captured
 * before the change may use that plan's freed workspace and must be
 * captured again. */
uint64_t mlt_gpu_model_plan_gen(const mlt_gpu_model_t *m);

/* Called while a step's ops are being ISSUED (not run: also while a graph
 * is captured), right after the ops that produce tensor i's gradient, last
 * layer first: the caller may issue its own ops there (a download of that
 * gradient, a mark). fn NULL: no calls. */
void mlt_gpu_model_on_grad(mlt_gpu_model_t *m, mlt_grad_ready_fn fn, void *ctx);

/* One training step of a classification model on `batch` samples: x (device,
 * batch x in_c x in_h x in_w, NCHW as the data files hold them) and y (device
 * labels). The gradient of the MEAN loss goes to mlt_gpu_model_grads
 * (overwritten); the SUM of the losses to *mlt_gpu_model_d_loss and the number
 * of right answers to *mlt_gpu_model_d_correct. Asynchronous. Labels are not
 * checked on the device: a label >= n_classes gives a NaN loss, never a write
 * outside the buffers. 0, or -EINVAL (MF model, batch not prepared), or the
 * error of an op. */
int mlt_gpu_model_step(mlt_gpu_model_t *m, const float *x, const uint8_t *y, uint32_t batch);

/* One MF step on `batch` ratings (device arrays): gradients of
 * (1/batch) sum [ (u.v - r)^2 + l2 (|u|^2 + |v|^2) ] into the gradient tables
 * (rows not in the batch zero), the sum of squared errors to *d_loss. */
int mlt_gpu_model_step_mf(mlt_gpu_model_t *m, const uint32_t *users, const uint32_t *items,
                          const float *r, uint32_t batch);

/* Device scalars the last step wrote: the loss sum (double) and, for
 * classification, the right answers (uint32). */
const double *mlt_gpu_model_d_loss(const mlt_gpu_model_t *m);
const uint32_t *mlt_gpu_model_d_correct(const mlt_gpu_model_t *m);

/* Evaluates the current device parameters on n samples (device data), in
 * batches of max_batch; synchronous. *loss = mean cross-entropy, *correct =
 * right answers. 0 or -errno. */
int mlt_gpu_model_eval(mlt_gpu_model_t *m, const float *x, const uint8_t *y, uint32_t n,
                       double *loss, uint32_t *correct);
/* MF: *mse = mean of (u.v - r)^2 over n ratings (device arrays). */
int mlt_gpu_model_eval_mf(mlt_gpu_model_t *m, const uint32_t *users, const uint32_t *items,
                          const float *r, uint32_t n, double *mse);

#endif
