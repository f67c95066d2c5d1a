/* cpu.h - the CPU compute kernels: dense layers, convolution by im2col,
 * max pooling, softmax cross-entropy and matrix-factorisation gradients, on
 * caller-owned arrays. This is the reference the CUDA backend is tested against.
 *
 * Conventions, for every function below:
 *  - Matrices are row-major. Images are NHWC: x[((b*h + y)*w + x)*c + ch], so
 *    one pixel's channels are contiguous (the layout that makes a convolution
 *    over a whole chunk of images one GEMM, see mlt_cpu_im2col).
 *  - Convolutions are stride 1 with 'same' zero padding, k odd (pad (k-1)/2 on
 *    every side, as cuDNN's symmetric padding). Their weights are
 *    [c_out][k][k][c_in] (cuDNN's KRSC / NHWC filter format), i.e. the
 *    c_out x (k*k*c_in) matrix that multiplies an im2col row.
 *  - Pooling is p x p with stride p; an input whose size is not a multiple of p
 *    loses its last rows/columns (floor, as PyTorch).
 *  - NaN propagates: a NaN input gives NaN outputs where the mathematics says so
 *    (ReLU, max pooling and the loss never turn a NaN into a finite number).
 *  - No function allocates, prints, or keeps state; all are thread-safe on
 *    disjoint outputs. Sizes are preconditions (asserted), not input to check:
 *    callers (worker/model.c) validate what comes from outside.
 *
 * Every function exists twice: for float (training) and, with the suffix _f64,
 * for double (the gradient checks in tests/). Both are compiled from one text,
 * kernels/cpu_impl.h, so the checked code is the training code. Threading: only
 * mlt_cpu_gemm is parallel (OpenBLAS's threads; this module never sets their
 * number); the rest is single-threaded. */
#ifndef MLT_CPU_H
#define MLT_CPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* C = alpha * op(A) * op(B) + beta * C with op(X) = X or X^T (row-major,
 * OpenBLAS cblas_sgemm). op(A) is m x k, op(B) is k x n, C is m x n; lda, ldb,
 * ldc are the row strides of A, B, C as stored. beta = 0 ignores C's contents
 * (NaN included, as BLAS does). */
void mlt_cpu_gemm(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, float alpha,
                  const float *a, size_t lda, const float *b, size_t ldb, float beta, float *c,
                  size_t ldc);

/* y[r][j] += bias[j] for a rows x cols matrix. */
void mlt_cpu_bias_add(float *y, const float *bias, size_t rows, size_t cols);

/* y[r][j] = relu(y[r][j] + bias[j]): the fused bias + ReLU of a hidden layer. */
void mlt_cpu_bias_relu(float *y, const float *bias, size_t rows, size_t cols);

/* Bias gradient: the column sums of dy (rows x cols). db = sums, or
 * db += sums when accumulate is true (a convolution summed over chunks). */
void mlt_cpu_bias_grad(float *db, const float *dy, size_t rows, size_t cols, bool accumulate);

/* x = max(x, 0) in place (NaN stays NaN). */
void mlt_cpu_relu(float *x, size_t n);

/* ReLU backward in place: dy[i] = 0 where y[i] <= 0, unchanged elsewhere. y is
 * the ReLU's output (or its input: the mask is the same). */
void mlt_cpu_relu_backward(float *dy, const float *y, size_t n);

/* Softmax cross-entropy over a batch: logits z (rows x classes), labels
 * y[r] < classes. Returns the mean loss over the rows, computed stably (the row
 * maximum is subtracted before exp, so large logits give no Inf/NaN). When dz
 * is not NULL it gets (softmax(z) - onehot(y)) / rows; dz may be z itself (in
 * place). When correct is not NULL it gets the number of rows whose first
 * maximal logit is at the label (a row with a NaN logit is never correct). */
double mlt_cpu_softmax_xent(const float *z, const uint8_t *y, size_t rows, size_t classes,
                            float *dz, uint32_t *correct);

/* im2col for a k x k 'same' convolution over n NHWC images h x w x c: col is
 * (n*h*w) x (k*k*c), row (b, y, x) holding the patch centred on pixel (y, x)
 * ordered (ky, kx, ch), zeros where the patch leaves the image. Then the
 * convolution is col * W^T with W as [c_out][k*k*c]. */
void mlt_cpu_im2col(const float *x, size_t n, size_t h, size_t w, size_t c, size_t k, float *col);

/* The adjoint of mlt_cpu_im2col: x (n x h x w x c, overwritten) = the sum, over
 * every col entry, of that entry into the pixel it was copied from. So
 * <im2col(x), col> == <x, col2im(col)>; it turns a column gradient into the
 * image gradient. */
void mlt_cpu_col2im(const float *col, size_t n, size_t h, size_t w, size_t c, size_t k, float *x);

/* Direct 'same' convolution for thin patches (k*k*c small, e.g. a first
 * layer on 1-channel images, where im2col + GEMM is dominated by the copying):
 * z (n*h*w x co, overwritten, no bias) = the same as im2col(x) * W^T, but
 * with the weights transposed: wt is (k*k*c) x co, i.e. wt = W^T
 * (mlt_cpu_transpose). */
void mlt_cpu_conv_thin(const float *x, size_t n, size_t h, size_t w, size_t c, size_t k,
                       const float *wt, size_t co, float *z);

/* Its weight gradient, transposed: dwt ((k*k*c) x co) = im2col(x)^T * dz
 * (dz: n*h*w x co), or dwt += that when accumulate is true. */
void mlt_cpu_conv_thin_dw(const float *x, const float *dz, size_t n, size_t h, size_t w, size_t c,
                          size_t k, size_t co, float *dwt, bool accumulate);

/* t (cols x rows) = a^T for a rows x cols matrix a; t must not overlap a. */
void mlt_cpu_transpose(const float *a, size_t rows, size_t cols, float *t);

/* Max pooling p x p, stride p, of n NHWC images h x w x c into y
 * (n x h/p x w/p x c). idx[j] gets the offset of y[j]'s maximum inside its
 * image (b*h*w*c + idx[j] is the element of x): the first maximum in window
 * order (row by row) on ties; a NaN in the window is the maximum. */
void mlt_cpu_maxpool(const float *x, size_t n, size_t h, size_t w, size_t c, size_t p, float *y,
                     uint32_t *idx);

/* The fused convolution epilogue: y = maxpool(relu(z + bias[ch])), exactly as
 * mlt_cpu_bias_relu followed by mlt_cpu_maxpool (same values, same idx), in one
 * pass that never writes the full-size activation. */
void mlt_cpu_bias_relu_maxpool(const float *z, const float *bias, size_t n, size_t h, size_t w,
                               size_t c, size_t p, float *y, uint32_t *idx);

/* Max pooling backward: dx (n x h x w x c, overwritten) is zero except at each
 * window's maximum, which gets dy of that window. idx is from the forward. */
void mlt_cpu_maxpool_backward(const float *dy, const uint32_t *idx, size_t n, size_t h, size_t w,
                              size_t c, size_t p, float *dx);

/* Input layout change: x is n images c x h x w (NCHW, as data files and
 * PyTorch hold them), y gets them h x w x c (NHWC). y must not overlap x. */
void mlt_cpu_nchw_to_nhwc(const float *x, size_t n, size_t c, size_t h, size_t w, float *y);

/* MF prediction: the dot product u . v of two rank-long factor rows. */
float mlt_cpu_mf_predict(const float *u, const float *v, size_t rank);

/* MF gradient of a batch of ratings (users[i], items[i], r[i]) for the
 * objective  sum_i [ (u.v - r)^2 + l2 (|u|^2 + |v|^2) ]  times `scale`, with u
 * the row users[i] of U (n_users x rank) and v the row items[i] of V:
 * ACCUMULATES scale * (2 e v + 2 l2 u) into row users[i] of dU and
 * scale * (2 e u + 2 l2 v) into row items[i] of dV, where e = u.v - r (the
 * caller zeroes dU, dV). Returns the sum of e^2 over the batch (the data term
 * only, unscaled). Indices are preconditions. dU, dV must not overlap U, V. */
double mlt_cpu_mf_grad(const float *U, const float *V, size_t rank, const uint32_t *users,
                       const uint32_t *items, const float *r, size_t batch, float l2, float scale,
                       float *dU, float *dV);

/* Sum of squared prediction errors (u.v - r)^2 over n ratings (evaluation). */
double mlt_cpu_mf_sse(const float *U, const float *V, size_t rank, const uint32_t *users,
                      const uint32_t *items, const float *r, size_t n);

/* The BLAS core OpenBLAS selected at load time ("SkylakeX", "Haswell", ...).
 * OpenBLAS 0.3.21 does not recognise some newer CPUs and falls back to a
 * generic SSE3 core ("Prescott"), about 10x slower; see
 * mlt_cpu_blas_better_core. */
const char *mlt_cpu_blas_core(void);

/* When OpenBLAS runs a core that is clearly worse than this CPU supports (a
 * pre-AVX2 core on an AVX-512 or AVX2 machine), the value to put in the
 * environment variable OPENBLAS_CORETYPE before the process starts (OpenBLAS
 * reads it when it is loaded: a program has to re-exec itself), e.g.
 * "SkylakeX"; NULL when the selection is fine. */
const char *mlt_cpu_blas_better_core(void);

/* ---- The same kernels in double, for the gradient checks (tests only). ---- */

void mlt_cpu_gemm_f64(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, double alpha,
                      const double *a, size_t lda, const double *b, size_t ldb, double beta,
                      double *c, size_t ldc);
void mlt_cpu_bias_add_f64(double *y, const double *bias, size_t rows, size_t cols);
void mlt_cpu_bias_relu_f64(double *y, const double *bias, size_t rows, size_t cols);
void mlt_cpu_bias_grad_f64(double *db, const double *dy, size_t rows, size_t cols, bool accumulate);
void mlt_cpu_relu_f64(double *x, size_t n);
void mlt_cpu_relu_backward_f64(double *dy, const double *y, size_t n);
double mlt_cpu_softmax_xent_f64(const double *z, const uint8_t *y, size_t rows, size_t classes,
                                double *dz, uint32_t *correct);
void mlt_cpu_im2col_f64(const double *x, size_t n, size_t h, size_t w, size_t c, size_t k,
                        double *col);
void mlt_cpu_col2im_f64(const double *col, size_t n, size_t h, size_t w, size_t c, size_t k,
                        double *x);
void mlt_cpu_conv_thin_f64(const double *x, size_t n, size_t h, size_t w, size_t c, size_t k,
                           const double *wt, size_t co, double *z);
void mlt_cpu_conv_thin_dw_f64(const double *x, const double *dz, size_t n, size_t h, size_t w,
                              size_t c, size_t k, size_t co, double *dwt, bool accumulate);
void mlt_cpu_transpose_f64(const double *a, size_t rows, size_t cols, double *t);
void mlt_cpu_maxpool_f64(const double *x, size_t n, size_t h, size_t w, size_t c, size_t p,
                         double *y, uint32_t *idx);
void mlt_cpu_bias_relu_maxpool_f64(const double *z, const double *bias, size_t n, size_t h,
                                   size_t w, size_t c, size_t p, double *y, uint32_t *idx);
void mlt_cpu_maxpool_backward_f64(const double *dy, const uint32_t *idx, size_t n, size_t h,
                                  size_t w, size_t c, size_t p, double *dx);
void mlt_cpu_nchw_to_nhwc_f64(const double *x, size_t n, size_t c, size_t h, size_t w, double *y);
double mlt_cpu_mf_predict_f64(const double *u, const double *v, size_t rank);
double mlt_cpu_mf_grad_f64(const double *U, const double *V, size_t rank, const uint32_t *users,
                           const uint32_t *items, const double *r, size_t batch, double l2,
                           double scale, double *dU, double *dV);
double mlt_cpu_mf_sse_f64(const double *U, const double *V, size_t rank, const uint32_t *users,
                          const uint32_t *items, const double *r, size_t n);

#endif
