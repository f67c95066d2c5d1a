/* gpu.h - the CUDA compute layer: a context (device, stream, cuBLAS and cuDNN
 * handles), device and pinned host memory, copies, CUDA-graph capture, and
 * the ops of the models (worker/model_gpu.c) with the contracts of their CPU
 * twins in kernels/cpu.h. No CUDA type appears here: C code includes this
 * header whether or not CUDA was built (without it, kernels/gpu_stub.c
 * implements it: mlt_gpu_probe finds 0 devices, "built without CUDA").
 *
 * Conventions, beyond those of cpu.h (row-major matrices, NHWC images, KRSC
 * filters, 'same' stride-1 convolutions with k odd, p x p pooling with stride
 * p and floor, NaN propagates):
 *  - Pointers named d_* or documented "device" are device memory; every op
 *    takes device pointers only and is ASYNCHRONOUS on the context's one
 *    stream (so ops run in the order issued). Results are visible to the host
 *    after a download and mlt_gpu_sync.
 *  - Fallible functions return 0 or -errno: -EIO for a failed CUDA, cuBLAS or
 *    cuDNN call, with mlt_gpu_error() naming the call and the status
 *    ("cublasSgemm_v2: CUBLAS_STATUS_EXECUTION_FAILED"); -ENOMEM for device
 *    or pinned memory; -EINVAL for sizes the op cannot take (int overflow in
 *    a library call); -ENOSYS when built without CUDA. An error may be
 *    reported by a later call (kernels run asynchronously).
 *  - Sizes are preconditions like cpu.h's, except that the library limits
 *    (int dimensions) are checked.
 *  - The module never prints. One context per thread: it is not
 *    thread-safe (its stream, handles and error string are shared by its
 *    calls).
 *
 * Results against the CPU reference (tests/unit/check_gpu.c states each
 * tolerance): bias, ReLU, pooling (values and argmax, ties and NaN included),
 * layout changes and the gathers are bit-identical (the .cu files are built
 * with -fmad=false, so no a*b+c is contracted); the optimizer steps agree to
 * a few ulps; GEMMs, convolutions, bias gradients, the loss and the MF
 * gradient (atomics) differ by rounding in another summation order. */
#ifndef MLT_GPU_H
#define MLT_GPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/optim.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mlt_gpu mlt_gpu_t;             /* a context on one device */
typedef struct mlt_gpu_conv mlt_gpu_conv_t;   /* one convolution shape, its algorithms */
typedef struct mlt_gpu_graph mlt_gpu_graph_t; /* a captured, instantiated CUDA graph */

/* ---- devices and contexts ---- */

/* true when this build has the CUDA backend (kernels/gpu.cu), false for the
 * stub. */
bool mlt_gpu_built(void);

/* The number of usable CUDA devices (>= 0). With 0, why (may be NULL) gets
 * the reason, e.g. "no CUDA driver (cudaGetDeviceCount: cudaErrorInsufficientDriver:
 * CUDA driver version is insufficient for CUDA runtime version)", "no CUDA
 * device", or "mltuner was built without CUDA". Never fails otherwise; cheap
 * enough to call once per job. */
int mlt_gpu_probe(char *why, size_t whylen);

/* A context on device `device` (0-based, < mlt_gpu_probe()): a non-blocking
 * stream, cuBLAS and cuDNN handles bound to it, a cuBLAS workspace (so that
 * GEMMs can be captured in graphs). Convolution plans made afterwards may use
 * TF32 tensor cores (as PyTorch's cuDNN convolutions do by default; GEMMs
 * never do), see mlt_gpu_set_tf32. Returns the context (caller owns:
 * mlt_gpu_destroy) or NULL with the reason in err. */
mlt_gpu_t *mlt_gpu_new(int device, char *err, size_t errlen);

/* Waits for the stream, frees everything (NULL allowed), sets *gp = NULL. */
void mlt_gpu_destroy(mlt_gpu_t **gp);

/* The device's name ("NVIDIA H100 80GB HBM3") and compute capability x 10. */
const char *mlt_gpu_device_name(const mlt_gpu_t *g);
int mlt_gpu_device_cc(const mlt_gpu_t *g);

/* The last error of a call on g ("" when none). */
const char *mlt_gpu_error(const mlt_gpu_t *g);

/* Whether convolution plans created from now on may use TF32 tensor cores
 * (true by default, like PyTorch's torch.backends.cudnn.allow_tf32). false
 * restricts them to FP32 FMA kernels, which match the CPU to FP32 rounding;
 * the tests use that. */
void mlt_gpu_set_tf32(mlt_gpu_t *g, bool allow);
bool mlt_gpu_tf32(const mlt_gpu_t *g);

/* ---- memory and copies ---- */

/* Device memory of n bytes (n 0 gives a valid 1-byte allocation), or NULL
 * with the error set. mlt_gpu_free(g, NULL) is a no-op. Neither may be
 * called while a graph is being captured. */
void *mlt_gpu_malloc(mlt_gpu_t *g, size_t n);
void mlt_gpu_free(mlt_gpu_t *g, void *d);

/* Page-locked host memory of n bytes (copies from and to it are DMA and can
 * be captured in graphs), or NULL with the error set. */
void *mlt_gpu_host_malloc(mlt_gpu_t *g, size_t n);
void mlt_gpu_host_free(mlt_gpu_t *g, void *h);

/* Asynchronous copies on the stream: host to device, device to host, device
 * to device. The host side should be pinned memory (pageable memory works
 * but is staged and cannot be captured). */
int mlt_gpu_upload(mlt_gpu_t *g, void *d_dst, const void *src, size_t n);
int mlt_gpu_download(mlt_gpu_t *g, void *dst, const void *d_src, size_t n);
int mlt_gpu_copy(mlt_gpu_t *g, void *d_dst, const void *d_src, size_t n);

/* Sets n bytes to 0; sets n floats to v. */
int mlt_gpu_zero(mlt_gpu_t *g, void *d, size_t n);
int mlt_gpu_fill(mlt_gpu_t *g, float *d, size_t n, float v);

/* Waits until everything issued on the stream has run; 0, or the first
 * asynchronous error (-EIO) with its message. */
int mlt_gpu_sync(mlt_gpu_t *g);

/* ---- CUDA graphs ---- */

/* Starts capturing the stream: the ops issued until mlt_gpu_capture_end are
 * recorded, not run. No allocation, plan creation or synchronisation may
 * happen in between (they fail the capture). */
int mlt_gpu_capture_begin(mlt_gpu_t *g);

/* Ends the capture and instantiates the graph: *out (caller owns:
 * mlt_gpu_graph_destroy) on success. On failure (an op that cannot be
 * captured) the stream is usable again, *out is NULL and the error says why. */
int mlt_gpu_capture_end(mlt_gpu_t *g, mlt_gpu_graph_t **out);

/* true between mlt_gpu_capture_begin and mlt_gpu_capture_end. */
bool mlt_gpu_capturing(const mlt_gpu_t *g);

/* Runs the graph on the stream: the captured ops, on the same pointers, with
 * the memory contents of the moment they run. */
int mlt_gpu_graph_launch(mlt_gpu_t *g, const mlt_gpu_graph_t *gr);
void mlt_gpu_graph_destroy(mlt_gpu_graph_t **grp);

/* ---- marks: the host waits for a point in the stream ---- */

/* Marks are numbered 0..MLT_GPU_MARKS-1 (CUDA events the context owns). */
#define MLT_GPU_MARKS 64

/* Records mark k at this point of the stream (also inside a capture: the
 * graph then records it each time it runs, at that point). 0, -EINVAL for k
 * out of range, or -EIO. */
int mlt_gpu_mark(mlt_gpu_t *g, uint32_t k);

/* Blocks until everything issued before mark k's last recording has run, so
 * that a download issued before it has landed. 0, or -EIO with the first
 * asynchronous error. Not while capturing. */
int mlt_gpu_wait_mark(mlt_gpu_t *g, uint32_t k);

/* ---- dense layers ---- */

/* mlt_cpu_gemm on the device (cuBLAS, full FP32): C = alpha op(A) op(B) +
 * beta C, row-major; beta 0 ignores C (NaN included). */
int mlt_gpu_gemm(mlt_gpu_t *g, bool trans_a, bool trans_b, size_t m, size_t n, size_t k,
                 float alpha, const float *a, size_t lda, const float *b, size_t ldb, float beta,
                 float *c, size_t ldc);

/* mlt_cpu_bias_add, mlt_cpu_bias_relu, mlt_cpu_relu_backward. */
int mlt_gpu_bias_add(mlt_gpu_t *g, float *y, const float *bias, size_t rows, size_t cols);
int mlt_gpu_bias_relu(mlt_gpu_t *g, float *y, const float *bias, size_t rows, size_t cols);
int mlt_gpu_relu_backward(mlt_gpu_t *g, float *dy, const float *y, size_t n);

/* mlt_cpu_bias_grad (column sums of dy, rows x cols), as a GEMV with `ones`,
 * a device array of at least `rows` floats equal to 1 (mlt_gpu_fill) that the
 * caller keeps, so that nothing is allocated here (graph capture). */
int mlt_gpu_bias_grad(mlt_gpu_t *g, float *db, const float *dy, size_t rows, size_t cols,
                      bool accumulate, const float *ones);

/* mlt_cpu_softmax_xent on the device: logits z (rows x classes, classes <=
 * 1024), labels y (device bytes). dz (may be NULL, may be z) gets
 * (softmax(z) - onehot(y)) / rows. The loss comes back as a SUM over the rows
 * (not the mean) in *d_loss (device double) and the count of rows whose first
 * maximal logit is at the label in *d_correct (device uint32); both are
 * overwritten, or added to when accumulate is true (evaluation over several
 * batches). A label >= classes is a precondition violation: its row's loss is
 * NaN and its dz row NaN (no memory outside the row is touched). */
int mlt_gpu_softmax_xent(mlt_gpu_t *g, const float *z, const uint8_t *y, size_t rows,
                         size_t classes, float *dz, double *d_loss, uint32_t *d_correct,
                         bool accumulate);

/* ---- convolution, pooling, layout ---- */

/* A plan for the 'same' k x k stride-1 convolution of n NHWC images h x w x c
 * into oc channels with KRSC weights (cuDNN, CUDNN_TENSOR_NHWC): descriptors,
 * the fastest algorithm of each direction measured once here
 * (cudnnFind*AlgorithmEx on scratch buffers), and its workspace. need_dx
 * false skips the backward-data direction. TF32 per mlt_gpu_tf32(g) at
 * creation. Returns the plan (caller owns: mlt_gpu_conv_destroy, before g) or
 * NULL with the reason in err. Not while capturing. */
mlt_gpu_conv_t *mlt_gpu_conv_new(mlt_gpu_t *g, size_t n, size_t h, size_t w, size_t c, size_t k,
                                 size_t oc, bool need_dx, char *err, size_t errlen);
void mlt_gpu_conv_destroy(mlt_gpu_t *g, mlt_gpu_conv_t **pp);

/* The chosen algorithms, for logs and benchmarks: "fwd algo 1, bwd-data algo
 * 1, bwd-filter algo 0 (math default/default/fma), workspace 12.0 MiB". (A
 * convolution's bias gradient is mlt_gpu_bias_grad over n*h*w rows.) */
const char *mlt_gpu_conv_describe(const mlt_gpu_conv_t *p);

/* y (n x h x w x oc) = conv(x, wt), overwritten, no bias. */
int mlt_gpu_conv_forward(mlt_gpu_t *g, const mlt_gpu_conv_t *p, const float *x, const float *wt,
                         float *y);
/* dx (n x h x w x c) = the input gradient for output gradient dy,
 * overwritten. -EINVAL for a plan made with need_dx false. */
int mlt_gpu_conv_backward_data(mlt_gpu_t *g, const mlt_gpu_conv_t *p, const float *dy,
                               const float *wt, float *dx);
/* dw (oc x k x k x c) = the weight gradient, or dw += it when accumulate. */
int mlt_gpu_conv_backward_filter(mlt_gpu_t *g, const mlt_gpu_conv_t *p, const float *x,
                                 const float *dy, float *dw, bool accumulate);

/* mlt_cpu_maxpool and mlt_cpu_bias_relu_maxpool (bias NULL: plain max
 * pooling): the same values and the same idx (first maximum in window order,
 * a NaN is the maximum), bit for bit. */
int mlt_gpu_maxpool(mlt_gpu_t *g, const float *x, const float *bias, size_t n, size_t h, size_t w,
                    size_t c, size_t p, float *y, uint32_t *idx);

/* mlt_cpu_maxpool_backward: dx (n x h x w x c) overwritten, zero except at
 * each window's maximum. With y not NULL, the ReLU before the pool is undone
 * too: a window whose pooled output y <= 0 passes no gradient (as
 * mlt_cpu_relu_backward on dy with y, then the pool backward). */
int mlt_gpu_maxpool_backward(mlt_gpu_t *g, const float *dy, const float *y, const uint32_t *idx,
                             size_t n, size_t h, size_t w, size_t c, size_t p, float *dx);

/* mlt_cpu_nchw_to_nhwc; y must not overlap x. */
int mlt_gpu_nchw_to_nhwc(mlt_gpu_t *g, const float *x, size_t n, size_t c, size_t h, size_t w,
                         float *y);

/* ---- data on the device ---- */

/* Batch gathers: row k of dst = row idx[k] of src (idx: device, n entries),
 * rows of `width` elements of 4 bytes (floats, uint32) or of 1 byte. */
int mlt_gpu_gather4(mlt_gpu_t *g, const void *src, size_t width, const uint32_t *idx, size_t n,
                    void *dst);
int mlt_gpu_gather1(mlt_gpu_t *g, const uint8_t *src, size_t width, const uint32_t *idx, size_t n,
                    uint8_t *dst);

/* ---- matrix factorisation ---- */

/* mlt_cpu_mf_grad on the device: ACCUMULATES into dU and dV (atomics: the
 * order of the additions to a row varies from run to run) and writes the sum
 * of e^2 to *d_sse (device double, overwritten). An index out of range is a
 * precondition violation: that rating is skipped and *d_sse becomes NaN. */
int mlt_gpu_mf_grad(mlt_gpu_t *g, const float *U, const float *V, size_t rank, size_t n_users,
                    size_t n_items, const uint32_t *users, const uint32_t *items, const float *r,
                    size_t batch, float l2, float scale, float *dU, float *dV, double *d_sse);

/* mlt_cpu_mf_sse: *d_sse (device double) = the sum of (u.v - r)^2, or += it
 * when accumulate. Indices as above. */
int mlt_gpu_mf_sse(mlt_gpu_t *g, const float *U, const float *V, size_t rank, size_t n_users,
                   size_t n_items, const uint32_t *users, const uint32_t *items, const float *r,
                   size_t n, double *d_sse, bool accumulate);

/* ---- optimizer ---- */

/* mlt_optim_apply on the device, same rules, formulas and state layout
 * (mlt_optim_state_floats(rule, false) arrays of n floats in `state`). The
 * hyperparameters and step are passed by value: a captured graph keeps the
 * ones of its capture. -EINVAL for an invalid rule and for the schedule-free
 * rules, whose per-array scalars (mlt_optim_update) live on the host. */
int mlt_gpu_optim_apply(mlt_gpu_t *g, mlt_rule_t rule, const mlt_hyper_t *h, float *w,
                        float *state, const float *grad, size_t n, uint64_t step);

#ifdef __cplusplus
}
#endif

#endif
