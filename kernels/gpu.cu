/* gpu.cu - the CUDA context of kernels/gpu.h: probing, the context (stream,
 * cuBLAS, cuDNN), memory, copies, graph capture, the cuBLAS GEMMs and the
 * cuDNN convolution plans. The element-wise, pooling, loss, MF and optimizer
 * kernels are in gpu_ops.cu.
 *
 * Every CUDA, cuBLAS and cuDNN status is checked; a failure is recorded in
 * the context's error string with the call's name and the status's name and
 * returned as -EIO (-ENOMEM for an allocation). Nothing here prints. */
#include "kernels/gpu_int.h"

#include <limits.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>

/* The compute capability this build has code for: SASS for sm_80 (runs on
 * every 8.x) and sm_90, PTX for compute_90 (JIT-compiled on newer devices). */
#define MIN_CC 80

/* Scratch workspace offered to cudnnFind*AlgorithmEx (the first size that can
 * be allocated): algorithms needing more are not considered. */
static const size_t find_ws_sizes[] = {(size_t)256 << 20, (size_t)64 << 20, (size_t)16 << 20, 0};

/* ---- errors ---- */

static void set_err(mlt_gpu_t *g, const char *fmt, va_list ap)
{
    if (g != NULL)
        vsnprintf(g->err, sizeof g->err, fmt, ap);
}

int mlt_gpu_fail_(mlt_gpu_t *g, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_err(g, fmt, ap);
    va_end(ap);
    return rc;
}

int mlt_gpu_fail_cuda_(mlt_gpu_t *g, cudaError_t e, const char *what)
{
    /* a non-sticky error stays the runtime's "last error" until read: read it,
     * or the next launch check (mlt_gpu_launched_) reports it again */
    (void)cudaGetLastError();
    mlt_gpu_fail_(g, 0, "%s: %s: %s", what, cudaGetErrorName(e), cudaGetErrorString(e));
    return e == cudaErrorMemoryAllocation ? -ENOMEM : -EIO;
}

int mlt_gpu_fail_blas_(mlt_gpu_t *g, cublasStatus_t s, const char *what)
{
    mlt_gpu_fail_(g, 0, "%s: %s", what, cublasGetStatusName(s));
    return s == CUBLAS_STATUS_ALLOC_FAILED ? -ENOMEM : -EIO;
}

int mlt_gpu_fail_dnn_(mlt_gpu_t *g, cudnnStatus_t s, const char *what)
{
    mlt_gpu_fail_(g, 0, "%s: %s", what, cudnnGetErrorString(s));
    return s == CUDNN_STATUS_ALLOC_FAILED ? -ENOMEM : -EIO;
}

int mlt_gpu_launched_(mlt_gpu_t *g, const char *what)
{
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        return mlt_gpu_fail_cuda_(g, e, what);
    return 0;
}

static void set_why(char *why, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void set_why(char *why, size_t len, const char *fmt, ...)
{
    if (why == NULL || len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, len, fmt, ap);
    va_end(ap);
}

/* ---- devices ---- */

bool mlt_gpu_built(void)
{
    return true;
}

/* The CUDA ordinal of the k-th usable device, or -1; *n_all gets the count
 * of all devices (-1 when cudaGetDeviceCount failed, with *e set). */
static int usable_device(int k, int *n_usable, int *n_all, cudaError_t *e)
{
    int n = 0, found = -1, usable = 0;
    *e = cudaGetDeviceCount(&n);
    if (*e != cudaSuccess) {
        cudaGetLastError(); /* not sticky: clear it */
        *n_all = -1;
        *n_usable = 0;
        return -1;
    }
    *n_all = n;
    for (int d = 0; d < n; d++) {
        int major = 0, minor = 0;
        if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, d) != cudaSuccess ||
            cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, d) != cudaSuccess) {
            cudaGetLastError();
            continue;
        }
        if (major * 10 + minor < MIN_CC)
            continue;
        if (usable == k)
            found = d;
        usable++;
    }
    *n_usable = usable;
    return found;
}

int mlt_gpu_probe(char *why, size_t whylen)
{
    int n_usable, n_all;
    cudaError_t e;
    usable_device(0, &n_usable, &n_all, &e);
    set_why(why, whylen, "%s", "");
    if (n_all < 0) {
        const char *what = e == cudaErrorInsufficientDriver ? "no usable CUDA driver"
                           : e == cudaErrorNoDevice         ? "no CUDA device"
                                                            : "CUDA is not usable here";
        set_why(why, whylen, "%s (cudaGetDeviceCount: %s: %s)", what, cudaGetErrorName(e),
                cudaGetErrorString(e));
        return 0;
    }
    if (n_all == 0)
        set_why(why, whylen, "no CUDA device (cudaGetDeviceCount found 0)");
    else if (n_usable == 0)
        set_why(why, whylen,
                "%d CUDA device(s), none of compute capability %d.%d or newer (this build has "
                "code for sm_80 and sm_90)",
                n_all, MIN_CC / 10, MIN_CC % 10);
    return n_usable;
}

mlt_gpu_t *mlt_gpu_new(int device, char *err, size_t errlen)
{
    int n_usable, n_all;
    cudaError_t e;
    int ord = usable_device(device, &n_usable, &n_all, &e);
    if (ord < 0) {
        char why[256];
        mlt_gpu_probe(why, sizeof why);
        set_why(err, errlen, "no usable CUDA device %d (%d usable)%s%s", device, n_usable,
                why[0] ? ": " : "", why);
        return NULL;
    }
    mlt_gpu_t *g = (mlt_gpu_t *)calloc(1, sizeof *g);
    if (g == NULL) {
        set_why(err, errlen, "out of memory");
        return NULL;
    }
    g->device = ord;
    g->tf32 = true;
    cudaDeviceProp prop;
    cublasStatus_t bs;
    cudnnStatus_t ds;
    if ((e = cudaSetDevice(ord)) != cudaSuccess) {
        mlt_gpu_fail_cuda_(g, e, "cudaSetDevice");
        goto fail;
    }
    if ((e = cudaGetDeviceProperties(&prop, ord)) != cudaSuccess) {
        mlt_gpu_fail_cuda_(g, e, "cudaGetDeviceProperties");
        goto fail;
    }
    snprintf(g->name, sizeof g->name, "%s", prop.name);
    g->cc = prop.major * 10 + prop.minor;
    if ((e = cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking)) != cudaSuccess) {
        mlt_gpu_fail_cuda_(g, e, "cudaStreamCreateWithFlags");
        goto fail;
    }
    if ((bs = cublasCreate(&g->blas)) != CUBLAS_STATUS_SUCCESS) {
        g->blas = NULL;
        mlt_gpu_fail_blas_(g, bs, "cublasCreate");
        goto fail;
    }
    if ((bs = cublasSetStream(g->blas, g->stream)) != CUBLAS_STATUS_SUCCESS) {
        mlt_gpu_fail_blas_(g, bs, "cublasSetStream");
        goto fail;
    }
    if ((bs = cublasSetPointerMode(g->blas, CUBLAS_POINTER_MODE_HOST)) != CUBLAS_STATUS_SUCCESS) {
        mlt_gpu_fail_blas_(g, bs, "cublasSetPointerMode");
        goto fail;
    }
    /* full FP32 GEMMs (no TF32), as PyTorch's default for matmul */
    if ((bs = cublasSetMathMode(g->blas, CUBLAS_DEFAULT_MATH)) != CUBLAS_STATUS_SUCCESS) {
        mlt_gpu_fail_blas_(g, bs, "cublasSetMathMode");
        goto fail;
    }
    if ((e = cudaMalloc(&g->blas_ws, MLT_GPU_BLAS_WS)) != cudaSuccess) {
        g->blas_ws = NULL;
        mlt_gpu_fail_cuda_(g, e, "cudaMalloc (cuBLAS workspace)");
        goto fail;
    }
    if ((bs = cublasSetWorkspace(g->blas, g->blas_ws, MLT_GPU_BLAS_WS)) != CUBLAS_STATUS_SUCCESS) {
        mlt_gpu_fail_blas_(g, bs, "cublasSetWorkspace");
        goto fail;
    }
    if ((ds = cudnnCreate(&g->dnn)) != CUDNN_STATUS_SUCCESS) {
        g->dnn = NULL;
        mlt_gpu_fail_dnn_(g, ds, "cudnnCreate");
        goto fail;
    }
    if ((ds = cudnnSetStream(g->dnn, g->stream)) != CUDNN_STATUS_SUCCESS) {
        mlt_gpu_fail_dnn_(g, ds, "cudnnSetStream");
        goto fail;
    }
    g->err[0] = '\0';
    return g;
fail:
    set_why(err, errlen, "CUDA device %d (%s): %s", ord, g->name[0] ? g->name : "?", g->err);
    mlt_gpu_destroy(&g);
    return NULL;
}

void mlt_gpu_destroy(mlt_gpu_t **gp)
{
    if (gp == NULL || *gp == NULL)
        return;
    mlt_gpu_t *g = *gp;
    if (g->stream != NULL)
        cudaStreamSynchronize(g->stream);
    if (g->dnn != NULL)
        cudnnDestroy(g->dnn);
    if (g->blas != NULL)
        cublasDestroy(g->blas);
    if (g->blas_ws != NULL)
        cudaFree(g->blas_ws);
    for (int k = 0; k < MLT_GPU_MARKS; k++)
        if (g->marks[k] != NULL)
            cudaEventDestroy(g->marks[k]);
    if (g->stream != NULL)
        cudaStreamDestroy(g->stream);
    cudaGetLastError();
    free(g);
    *gp = NULL;
}

const char *mlt_gpu_device_name(const mlt_gpu_t *g)
{
    return g->name;
}

int mlt_gpu_device_cc(const mlt_gpu_t *g)
{
    return g->cc;
}

const char *mlt_gpu_error(const mlt_gpu_t *g)
{
    return g->err;
}

void mlt_gpu_set_tf32(mlt_gpu_t *g, bool allow)
{
    g->tf32 = allow;
}

bool mlt_gpu_tf32(const mlt_gpu_t *g)
{
    return g->tf32;
}

/* ---- memory and copies ---- */

void *mlt_gpu_malloc(mlt_gpu_t *g, size_t n)
{
    void *p = NULL;
    cudaSetDevice(g->device); /* the calling thread's current device may be another */
    cudaError_t e = cudaMalloc(&p, n ? n : 1);
    if (e != cudaSuccess) {
        cudaGetLastError();
        mlt_gpu_fail_(g, 0, "cudaMalloc of %zu bytes: %s: %s", n, cudaGetErrorName(e),
                      cudaGetErrorString(e));
        return NULL;
    }
    return p;
}

void mlt_gpu_free(mlt_gpu_t *g, void *d)
{
    (void)g;
    if (d != NULL)
        cudaFree(d);
}

void *mlt_gpu_host_malloc(mlt_gpu_t *g, size_t n)
{
    void *p = NULL;
    cudaSetDevice(g->device);
    cudaError_t e = cudaHostAlloc(&p, n ? n : 1, cudaHostAllocDefault);
    if (e != cudaSuccess) {
        cudaGetLastError();
        mlt_gpu_fail_(g, 0, "cudaHostAlloc of %zu bytes: %s: %s", n, cudaGetErrorName(e),
                      cudaGetErrorString(e));
        return NULL;
    }
    return p;
}

void mlt_gpu_host_free(mlt_gpu_t *g, void *h)
{
    (void)g;
    if (h != NULL)
        cudaFreeHost(h);
}

int mlt_gpu_upload(mlt_gpu_t *g, void *d_dst, const void *src, size_t n)
{
    if (n == 0)
        return 0;
    GPU_CUDA(g, "cudaMemcpyAsync (host to device)",
             cudaMemcpyAsync(d_dst, src, n, cudaMemcpyHostToDevice, g->stream));
    return 0;
}

int mlt_gpu_download(mlt_gpu_t *g, void *dst, const void *d_src, size_t n)
{
    if (n == 0)
        return 0;
    GPU_CUDA(g, "cudaMemcpyAsync (device to host)",
             cudaMemcpyAsync(dst, d_src, n, cudaMemcpyDeviceToHost, g->stream));
    return 0;
}

int mlt_gpu_copy(mlt_gpu_t *g, void *d_dst, const void *d_src, size_t n)
{
    if (n == 0)
        return 0;
    GPU_CUDA(g, "cudaMemcpyAsync (device to device)",
             cudaMemcpyAsync(d_dst, d_src, n, cudaMemcpyDeviceToDevice, g->stream));
    return 0;
}

int mlt_gpu_zero(mlt_gpu_t *g, void *d, size_t n)
{
    if (n == 0)
        return 0;
    GPU_CUDA(g, "cudaMemsetAsync", cudaMemsetAsync(d, 0, n, g->stream));
    return 0;
}

int mlt_gpu_sync(mlt_gpu_t *g)
{
    GPU_CUDA(g, "cudaStreamSynchronize", cudaStreamSynchronize(g->stream));
    return 0;
}

/* ---- marks ---- */

int mlt_gpu_mark(mlt_gpu_t *g, uint32_t k)
{
    if (k >= MLT_GPU_MARKS)
        return mlt_gpu_fail_(g, -EINVAL, "mlt_gpu_mark: mark %u of %d", k, MLT_GPU_MARKS);
    if (g->marks[k] == NULL) {
        if (g->capturing) /* creating an event is not a stream operation, but keep it simple */
            return mlt_gpu_fail_(g, -EINVAL, "mlt_gpu_mark: mark %u first recorded in a capture", k);
        GPU_CUDA(g, "cudaEventCreateWithFlags",
                 cudaEventCreateWithFlags(&g->marks[k], cudaEventDisableTiming));
    }
    /* External: inside a capture this becomes an event-record node, so every
     * launch of the graph records the event (a plain record would only order
     * the captured work) */
    GPU_CUDA(g, "cudaEventRecordWithFlags",
             cudaEventRecordWithFlags(g->marks[k], g->stream,
                                      g->capturing ? cudaEventRecordExternal : cudaEventRecordDefault));
    return 0;
}

int mlt_gpu_wait_mark(mlt_gpu_t *g, uint32_t k)
{
    if (k >= MLT_GPU_MARKS || g->marks[k] == NULL)
        return mlt_gpu_fail_(g, -EINVAL, "mlt_gpu_wait_mark: mark %u was never recorded", k);
    if (g->capturing)
        return mlt_gpu_fail_(g, -EINVAL, "mlt_gpu_wait_mark: not while capturing");
    GPU_CUDA(g, "cudaEventSynchronize", cudaEventSynchronize(g->marks[k]));
    return 0;
}

/* ---- graphs ---- */

struct mlt_gpu_graph {
    cudaGraphExec_t exec; /* the instantiated graph */
};

int mlt_gpu_capture_begin(mlt_gpu_t *g)
{
    if (g->capturing)
        return mlt_gpu_fail_(g, -EINVAL, "mlt_gpu_capture_begin: already capturing");
    /* thread-local: a call of this thread that cannot be captured fails the
     * capture instead of running at capture time */
    GPU_CUDA(g, "cudaStreamBeginCapture",
             cudaStreamBeginCapture(g->stream, cudaStreamCaptureModeThreadLocal));
    g->capturing = true;
    return 0;
}

bool mlt_gpu_capturing(const mlt_gpu_t *g)
{
    return g->capturing;
}

int mlt_gpu_capture_end(mlt_gpu_t *g, mlt_gpu_graph_t **out)
{
    *out = NULL;
    if (!g->capturing)
        return mlt_gpu_fail_(g, -EINVAL, "mlt_gpu_capture_end: not capturing");
    g->capturing = false;
    cudaGraph_t graph = NULL;
    cudaError_t e = cudaStreamEndCapture(g->stream, &graph);
    if (e != cudaSuccess) {
        if (graph != NULL)
            cudaGraphDestroy(graph);
        cudaGetLastError();
        return mlt_gpu_fail_cuda_(g, e, "cudaStreamEndCapture");
    }
    cudaGraphExec_t exec = NULL;
    e = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return mlt_gpu_fail_cuda_(g, e, "cudaGraphInstantiate");
    }
    mlt_gpu_graph_t *gr = (mlt_gpu_graph_t *)calloc(1, sizeof *gr);
    if (gr == NULL) {
        cudaGraphExecDestroy(exec);
        return mlt_gpu_fail_(g, -ENOMEM, "out of memory for a graph");
    }
    gr->exec = exec;
    *out = gr;
    return 0;
}

int mlt_gpu_graph_launch(mlt_gpu_t *g, const mlt_gpu_graph_t *gr)
{
    GPU_CUDA(g, "cudaGraphLaunch", cudaGraphLaunch(gr->exec, g->stream));
    return 0;
}

void mlt_gpu_graph_destroy(mlt_gpu_graph_t **grp)
{
    if (grp == NULL || *grp == NULL)
        return;
    cudaGraphExecDestroy((*grp)->exec);
    free(*grp);
    *grp = NULL;
}

/* ---- dense layers (cuBLAS) ---- */

static bool fits_int(size_t v)
{
    return v <= (size_t)INT_MAX;
}

int mlt_gpu_gemm(mlt_gpu_t *g, bool trans_a, bool trans_b, size_t m, size_t n, size_t k,
                 float alpha, const float *a, size_t lda, const float *b, size_t ldb, float beta,
                 float *c, size_t ldc)
{
    if (!fits_int(m) || !fits_int(n) || !fits_int(k) || !fits_int(lda) || !fits_int(ldb) ||
        !fits_int(ldc))
        return mlt_gpu_fail_(g, -EINVAL, "mlt_gpu_gemm: a dimension exceeds INT_MAX");
    if (m == 0 || n == 0)
        return 0;
    /* Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T, and a
     * row-major matrix read column-major is its transpose: so swap the
     * operands, keep each one's op. */
    GPU_BLAS(g, "cublasSgemm",
             cublasSgemm(g->blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                         trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, (int)n, (int)m, (int)k, &alpha, b,
                         (int)ldb, a, (int)lda, &beta, c, (int)ldc));
    return 0;
}

int mlt_gpu_bias_grad(mlt_gpu_t *g, float *db, const float *dy, size_t rows, size_t cols,
                      bool accumulate, const float *ones)
{
    if (!fits_int(rows) || !fits_int(cols))
        return mlt_gpu_fail_(g, -EINVAL, "mlt_gpu_bias_grad: a dimension exceeds INT_MAX");
    if (cols == 0)
        return 0;
    if (rows == 0)
        return accumulate ? 0 : mlt_gpu_zero(g, db, cols * sizeof *db);
    /* dy read column-major is cols x rows (ld cols): db = dy_cm * ones */
    const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    GPU_BLAS(g, "cublasSgemv",
             cublasSgemv(g->blas, CUBLAS_OP_N, (int)cols, (int)rows, &one, dy, (int)cols, ones, 1,
                         &beta, db, 1));
    return 0;
}

/* ---- convolution plans (cuDNN) ---- */

struct mlt_gpu_conv {
    int n, h, w, c, k, oc;                     /* the shape */
    bool need_dx;                              /* backward-data planned */
    cudnnTensorDescriptor_t x_desc, y_desc;    /* NHWC input and output */
    cudnnFilterDescriptor_t w_desc;            /* KRSC (CUDNN_TENSOR_NHWC) */
    cudnnConvolutionDescriptor_t cd[3];        /* per direction: forward, bwd-data, bwd-filter */
    cudnnConvolutionFwdAlgo_t fwd;             /* chosen algorithms */
    cudnnConvolutionBwdDataAlgo_t bwd_data;
    cudnnConvolutionBwdFilterAlgo_t bwd_filter;
    void *ws;                                  /* workspace of the chosen algorithms */
    size_t ws_size;
    char what[192];                            /* mlt_gpu_conv_describe */
};

enum { CD_FWD = 0, CD_BWD_DATA = 1, CD_BWD_FILTER = 2 };

static const char *math_name(cudnnMathType_t m)
{
    switch (m) {
    case CUDNN_DEFAULT_MATH: return "default";
    case CUDNN_TENSOR_OP_MATH: return "tensor-op";
    case CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION: return "tensor-op-conv";
    case CUDNN_FMA_MATH: return "fma";
    default: return "?";
    }
}

/* An algorithm result is acceptable: it ran, it does not convert to FP16
 * (ALLOW_CONVERSION: a smaller exponent range, neither TF32 nor what PyTorch
 * does), and without TF32 allowed it is not a tensor-op one. */
static bool acceptable(cudnnStatus_t st, cudnnMathType_t m, bool tf32)
{
    if (st != CUDNN_STATUS_SUCCESS || m == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION)
        return false;
    return tf32 || m != CUDNN_TENSOR_OP_MATH;
}

void mlt_gpu_conv_destroy(mlt_gpu_t *g, mlt_gpu_conv_t **pp)
{
    if (pp == NULL || *pp == NULL)
        return;
    mlt_gpu_conv_t *p = *pp;
    if (p->ws != NULL)
        mlt_gpu_free(g, p->ws);
    for (int i = 0; i < 3; i++)
        if (p->cd[i] != NULL)
            cudnnDestroyConvolutionDescriptor(p->cd[i]);
    if (p->w_desc != NULL)
        cudnnDestroyFilterDescriptor(p->w_desc);
    if (p->y_desc != NULL)
        cudnnDestroyTensorDescriptor(p->y_desc);
    if (p->x_desc != NULL)
        cudnnDestroyTensorDescriptor(p->x_desc);
    free(p);
    *pp = NULL;
}

/* Descriptors of p (shape already set). 0 or -EIO. */
static int conv_descriptors(mlt_gpu_t *g, mlt_gpu_conv_t *p)
{
    GPU_DNN(g, "cudnnCreateTensorDescriptor", cudnnCreateTensorDescriptor(&p->x_desc));
    GPU_DNN(g, "cudnnCreateTensorDescriptor", cudnnCreateTensorDescriptor(&p->y_desc));
    GPU_DNN(g, "cudnnCreateFilterDescriptor", cudnnCreateFilterDescriptor(&p->w_desc));
    GPU_DNN(g, "cudnnSetTensor4dDescriptor (input)",
            cudnnSetTensor4dDescriptor(p->x_desc, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, p->n, p->c,
                                       p->h, p->w));
    GPU_DNN(g, "cudnnSetTensor4dDescriptor (output)",
            cudnnSetTensor4dDescriptor(p->y_desc, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, p->n, p->oc,
                                       p->h, p->w));
    GPU_DNN(g, "cudnnSetFilter4dDescriptor",
            cudnnSetFilter4dDescriptor(p->w_desc, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NHWC, p->oc, p->c,
                                       p->k, p->k));
    const int pad = (p->k - 1) / 2;
    for (int i = 0; i < 3; i++) {
        GPU_DNN(g, "cudnnCreateConvolutionDescriptor", cudnnCreateConvolutionDescriptor(&p->cd[i]));
        GPU_DNN(g, "cudnnSetConvolution2dDescriptor",
                cudnnSetConvolution2dDescriptor(p->cd[i], pad, pad, 1, 1, 1, 1,
                                                CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
        GPU_DNN(g, "cudnnSetConvolutionMathType",
                cudnnSetConvolutionMathType(p->cd[i],
                                            g->tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH));
    }
    int on, oc, oh, ow;
    GPU_DNN(g, "cudnnGetConvolution2dForwardOutputDim",
            cudnnGetConvolution2dForwardOutputDim(p->cd[CD_FWD], p->x_desc, p->w_desc, &on, &oc,
                                                  &oh, &ow));
    if (on != p->n || oc != p->oc || oh != p->h || ow != p->w)
        return mlt_gpu_fail_(g, -EIO,
                             "cuDNN gives a %dx%dx%dx%d output for a 'same' convolution of "
                             "%dx%dx%dx%d into %d channels",
                             on, oc, oh, ow, p->n, p->c, p->h, p->w, p->oc);
    return 0;
}

/* Measures every algorithm of each direction on the scratch buffers and
 * keeps the fastest acceptable one; sets the direction's math type to it. */
static int conv_choose(mlt_gpu_t *g, mlt_gpu_conv_t *p, float *x, float *wt, float *y, void *ws,
                       size_t ws_size, char *math_used, size_t math_len)
{
    int got = 0;
    char m_f[16] = "-", m_d[16] = "-", m_w[16] = "-";
    {
        cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
        GPU_DNN(g, "cudnnFindConvolutionForwardAlgorithmEx",
                cudnnFindConvolutionForwardAlgorithmEx(g->dnn, p->x_desc, x, p->w_desc, wt,
                                                       p->cd[CD_FWD], p->y_desc, y,
                                                       CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got,
                                                       perf, ws, ws_size));
        int i = 0;
        while (i < got && !acceptable(perf[i].status, perf[i].mathType, g->tf32))
            i++;
        if (i == got)
            return mlt_gpu_fail_(g, -EIO,
                                 "cudnnFindConvolutionForwardAlgorithmEx: no usable algorithm "
                                 "(of %d) for this NHWC float convolution",
                                 got);
        p->fwd = perf[i].algo;
        snprintf(m_f, sizeof m_f, "%s", math_name(perf[i].mathType));
        if (g->tf32)
            GPU_DNN(g, "cudnnSetConvolutionMathType",
                    cudnnSetConvolutionMathType(p->cd[CD_FWD], perf[i].mathType));
    }
    if (p->need_dx) {
        cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
        GPU_DNN(g, "cudnnFindConvolutionBackwardDataAlgorithmEx",
                cudnnFindConvolutionBackwardDataAlgorithmEx(
                    g->dnn, p->w_desc, wt, p->y_desc, y, p->cd[CD_BWD_DATA], p->x_desc, x,
                    CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &got, perf, ws, ws_size));
        int i = 0;
        while (i < got && !acceptable(perf[i].status, perf[i].mathType, g->tf32))
            i++;
        if (i == got)
            return mlt_gpu_fail_(g, -EIO,
                                 "cudnnFindConvolutionBackwardDataAlgorithmEx: no usable "
                                 "algorithm (of %d) for this NHWC float convolution",
                                 got);
        p->bwd_data = perf[i].algo;
        snprintf(m_d, sizeof m_d, "%s", math_name(perf[i].mathType));
        if (g->tf32)
            GPU_DNN(g, "cudnnSetConvolutionMathType",
                    cudnnSetConvolutionMathType(p->cd[CD_BWD_DATA], perf[i].mathType));
    }
    {
        cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
        GPU_DNN(g, "cudnnFindConvolutionBackwardFilterAlgorithmEx",
                cudnnFindConvolutionBackwardFilterAlgorithmEx(
                    g->dnn, p->x_desc, x, p->y_desc, y, p->cd[CD_BWD_FILTER], p->w_desc, wt,
                    CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &got, perf, ws, ws_size));
        int i = 0;
        while (i < got && !acceptable(perf[i].status, perf[i].mathType, g->tf32))
            i++;
        if (i == got)
            return mlt_gpu_fail_(g, -EIO,
                                 "cudnnFindConvolutionBackwardFilterAlgorithmEx: no usable "
                                 "algorithm (of %d) for this NHWC float convolution",
                                 got);
        p->bwd_filter = perf[i].algo;
        snprintf(m_w, sizeof m_w, "%s", math_name(perf[i].mathType));
        if (g->tf32)
            GPU_DNN(g, "cudnnSetConvolutionMathType",
                    cudnnSetConvolutionMathType(p->cd[CD_BWD_FILTER], perf[i].mathType));
    }
    snprintf(math_used, math_len, "%s/%s/%s", m_f, m_d, m_w);
    return 0;
}

/* The workspace the chosen algorithms need (the largest). */
static int conv_workspace(mlt_gpu_t *g, mlt_gpu_conv_t *p, size_t *need)
{
    size_t a = 0, b = 0, c = 0;
    GPU_DNN(g, "cudnnGetConvolutionForwardWorkspaceSize",
            cudnnGetConvolutionForwardWorkspaceSize(g->dnn, p->x_desc, p->w_desc, p->cd[CD_FWD],
                                                    p->y_desc, p->fwd, &a));
    if (p->need_dx)
        GPU_DNN(g, "cudnnGetConvolutionBackwardDataWorkspaceSize",
                cudnnGetConvolutionBackwardDataWorkspaceSize(g->dnn, p->w_desc, p->y_desc,
                                                             p->cd[CD_BWD_DATA], p->x_desc,
                                                             p->bwd_data, &b));
    GPU_DNN(g, "cudnnGetConvolutionBackwardFilterWorkspaceSize",
            cudnnGetConvolutionBackwardFilterWorkspaceSize(g->dnn, p->x_desc, p->y_desc,
                                                           p->cd[CD_BWD_FILTER], p->w_desc,
                                                           p->bwd_filter, &c));
    *need = a > b ? a : b;
    if (c > *need)
        *need = c;
    return 0;
}

mlt_gpu_conv_t *mlt_gpu_conv_new(mlt_gpu_t *g, size_t n, size_t h, size_t w, size_t c, size_t k,
                                 size_t oc, bool need_dx, char *err, size_t errlen)
{
    if (g->capturing) {
        set_why(err, errlen, "mlt_gpu_conv_new: not while a graph is being captured");
        return NULL;
    }
    if (!fits_int(n) || !fits_int(h) || !fits_int(w) || !fits_int(c) || !fits_int(oc) ||
        !fits_int(k) || k % 2 == 0 || n == 0 || h == 0 || w == 0 || c == 0 || oc == 0 ||
        n * h * w * (c > oc ? c : oc) > (size_t)INT_MAX) {
        mlt_gpu_fail_(g, -EINVAL, "convolution %zux%zu of %zux%zux%zux%zu into %zu: bad or too large",
                      k, k, n, h, w, c, oc);
        set_why(err, errlen, "%s", g->err);
        return NULL;
    }
    mlt_gpu_conv_t *p = (mlt_gpu_conv_t *)calloc(1, sizeof *p);
    if (p == NULL) {
        set_why(err, errlen, "out of memory");
        return NULL;
    }
    p->n = (int)n;
    p->h = (int)h;
    p->w = (int)w;
    p->c = (int)c;
    p->k = (int)k;
    p->oc = (int)oc;
    p->need_dx = need_dx;
    float *x = NULL, *wt = NULL, *y = NULL;
    void *ws = NULL;
    size_t ws_size = 0, need = 0;
    char math[64] = "";
    int rc = conv_descriptors(g, p);
    if (rc < 0)
        goto fail;
    /* scratch to measure on: zeros (the timings do not depend on the values) */
    x = (float *)mlt_gpu_malloc(g, n * h * w * c * sizeof(float));
    y = (float *)mlt_gpu_malloc(g, n * h * w * oc * sizeof(float));
    wt = (float *)mlt_gpu_malloc(g, oc * k * k * c * sizeof(float));
    if (x == NULL || y == NULL || wt == NULL) {
        rc = -ENOMEM;
        goto fail;
    }
    if ((rc = mlt_gpu_zero(g, x, n * h * w * c * sizeof(float))) < 0 ||
        (rc = mlt_gpu_zero(g, y, n * h * w * oc * sizeof(float))) < 0 ||
        (rc = mlt_gpu_zero(g, wt, oc * k * k * c * sizeof(float))) < 0 || (rc = mlt_gpu_sync(g)) < 0)
        goto fail;
    for (size_t i = 0; i < sizeof find_ws_sizes / sizeof find_ws_sizes[0]; i++) {
        ws_size = find_ws_sizes[i];
        if (ws_size == 0 || (ws = mlt_gpu_malloc(g, ws_size)) != NULL)
            break;
    }
    if (ws == NULL)
        ws_size = 0;
    if ((rc = conv_choose(g, p, x, wt, y, ws, ws_size, math, sizeof math)) < 0 ||
        (rc = conv_workspace(g, p, &need)) < 0)
        goto fail;
    mlt_gpu_free(g, ws);
    ws = NULL;
    mlt_gpu_free(g, x);
    mlt_gpu_free(g, y);
    mlt_gpu_free(g, wt);
    x = y = wt = NULL;
    p->ws_size = need;
    if (need > 0 && (p->ws = mlt_gpu_malloc(g, need)) == NULL) {
        rc = -ENOMEM;
        goto fail;
    }
    snprintf(p->what, sizeof p->what,
             "fwd algo %d, bwd-data algo %d, bwd-filter algo %d (math %s), workspace %.1f MiB",
             (int)p->fwd, need_dx ? (int)p->bwd_data : -1, (int)p->bwd_filter, math,
             (double)need / (1 << 20));
    return p;
fail:
    set_why(err, errlen, "convolution %zux%zu, %zu images %zux%zux%zu into %zu channels: %s", k, k,
            n, h, w, c, oc, g->err);
    mlt_gpu_free(g, ws);
    mlt_gpu_free(g, x);
    mlt_gpu_free(g, y);
    mlt_gpu_free(g, wt);
    mlt_gpu_conv_destroy(g, &p);
    (void)rc;
    return NULL;
}

const char *mlt_gpu_conv_describe(const mlt_gpu_conv_t *p)
{
    return p->what;
}

int mlt_gpu_conv_forward(mlt_gpu_t *g, const mlt_gpu_conv_t *p, const float *x, const float *wt,
                         float *y)
{
    const float one = 1.0f, zero = 0.0f;
    GPU_DNN(g, "cudnnConvolutionForward",
            cudnnConvolutionForward(g->dnn, &one, p->x_desc, x, p->w_desc, wt, p->cd[CD_FWD],
                                    p->fwd, p->ws, p->ws_size, &zero, p->y_desc, y));
    return 0;
}

int mlt_gpu_conv_backward_data(mlt_gpu_t *g, const mlt_gpu_conv_t *p, const float *dy,
                               const float *wt, float *dx)
{
    if (!p->need_dx)
        return mlt_gpu_fail_(g, -EINVAL,
                             "mlt_gpu_conv_backward_data: the plan was made without need_dx");
    const float one = 1.0f, zero = 0.0f;
    GPU_DNN(g, "cudnnConvolutionBackwardData",
            cudnnConvolutionBackwardData(g->dnn, &one, p->w_desc, wt, p->y_desc, dy,
                                         p->cd[CD_BWD_DATA], p->bwd_data, p->ws, p->ws_size, &zero,
                                         p->x_desc, dx));
    return 0;
}

int mlt_gpu_conv_backward_filter(mlt_gpu_t *g, const mlt_gpu_conv_t *p, const float *x,
                                 const float *dy, float *dw, bool accumulate)
{
    const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    GPU_DNN(g, "cudnnConvolutionBackwardFilter",
            cudnnConvolutionBackwardFilter(g->dnn, &one, p->x_desc, x, p->y_desc, dy,
                                           p->cd[CD_BWD_FILTER], p->bwd_filter, p->ws, p->ws_size,
                                           &beta, p->w_desc, dw));
    return 0;
}
