/* gpu_fake_int.h - the fake GPU's insides, shared by gpu_fake.c (contexts,
 * memory, the stream, graphs, the API's checks) and gpu_fake_ops.c (the ops,
 * run on the host through kernels/cpu.h). */
#ifndef MLT_GPU_FAKE_INT_H
#define MLT_GPU_FAKE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/gpu.h"

#define FAKE_NAME "fake GPU (CPU, tests/gpufake)"

/* im2col scratch per chunk of images: worker/model.c's COL_CHUNK_BYTES, so
 * that a weight gradient is summed over the chunks in the CPU model's order */
#define COL_CHUNK_BYTES (1536u << 10)

typedef enum {
    OP_COPY,
    OP_ZERO,
    OP_FILL,
    OP_MARK,
    OP_GEMM,
    OP_BIAS_ADD,
    OP_BIAS_RELU,
    OP_RELU_BACKWARD,
    OP_BIAS_GRAD,
    OP_XENT,
    OP_CONV_FWD,
    OP_CONV_DATA,
    OP_CONV_FILTER,
    OP_MAXPOOL,
    OP_MAXPOOL_BACKWARD,
    OP_NCHW_TO_NHWC,
    OP_GATHER,
    OP_MF,
    OP_OPTIM
} op_kind_t;

/* An op and its arguments, by value (a graph keeps those of its capture). */
typedef struct op {
    op_kind_t kind;
    union {
        struct {
            void *dst;
            const void *src;
            size_t n; /* bytes; zero and fill: bytes, floats */
            float v;
        } copy; /* also zero, fill */
        uint32_t mark;
        struct {
            bool ta, tb;
            size_t m, n, k, lda, ldb, ldc;
            float alpha, beta;
            const float *a, *b;
            float *c;
        } gemm;
        struct {
            float *y;          /* relu_backward: dy */
            const float *b;    /* the bias; relu_backward: y */
            size_t rows, cols; /* relu_backward: n x 1 */
        } elem;
        struct {
            float *db;
            const float *dy, *ones;
            size_t rows, cols;
            bool acc;
        } bias_grad;
        struct {
            const float *z;
            const uint8_t *y;
            size_t rows, classes;
            float *dz;
            double *loss;
            uint32_t *right;
            bool acc;
        } xent;
        struct {
            const mlt_gpu_conv_t *p;
            const float *x, *wt, *dy; /* the two inputs of the direction */
            float *out;
            bool acc;
        } conv;
        struct {
            const float *x, *y, *bias; /* backward: dy, the pooled y or NULL */
            const uint32_t *idx;       /* backward */
            size_t n, h, w, c, p;
            float *out;     /* forward: y; backward: dx; nchw_to_nhwc: y (n c h w) */
            uint32_t *oidx; /* forward */
        } pool;
        struct {
            const void *src;
            const uint32_t *idx;
            void *dst;
            size_t row, n; /* bytes per row, rows */
        } gather;
        struct {
            const float *U, *V, *r;
            const uint32_t *users, *items;
            size_t rank, n_users, n_items, n;
            float l2, scale;
            float *dU, *dV; /* NULL: mf_sse */
            double *sse;
            bool acc;
        } mf;
        struct {
            mlt_rule_t rule;
            mlt_hyper_t h;
            float *w, *state;
            const float *grad;
            size_t n;
            uint64_t step;
        } optim;
    };
} op_t;

typedef struct oplist {
    op_t *v;
    size_t n, cap;
} oplist_t;

typedef struct region {
    char *p;     /* an allocation of ours */
    size_t n;    /* its bytes */
    bool pinned; /* mlt_gpu_host_malloc, else mlt_gpu_malloc */
} region_t;

struct mlt_gpu {
    oplist_t queue;                /* issued, not yet run */
    oplist_t capture;              /* recorded since mlt_gpu_capture_begin */
    bool capturing, invalid;       /* capturing; something failed the capture */
    region_t *mem;                 /* the live allocations */
    size_t n_mem, cap_mem;         /* their number, the room for them */
    bool tf32;                     /* kept, not used: the arithmetic is FP32 */
    bool mark_made[MLT_GPU_MARKS]; /* recorded once outside a capture (CUDA's rule) */
    void *scratch;                 /* host room for the ops that need some */
    size_t scratch_n;              /* its bytes */
    char async[256];               /* an error found while an op ran: sticks */
    char err[512];                 /* the last error ("" when none) */
};

struct mlt_gpu_graph {
    oplist_t ops;
};

struct mlt_gpu_conv {
    size_t n, h, w, c, k, oc;
    bool need_dx;
};

/* An op's misuse found while it runs: a sticky asynchronous -EIO. */
void fake_async_fail(mlt_gpu_t *g, const char *what);
/* The context's scratch buffer of at least bytes (NULL: out of memory). */
void *fake_scratch(mlt_gpu_t *g, size_t bytes);
/* The allocation holding p, or NULL. */
const region_t *fake_region_of(const mlt_gpu_t *g, const void *p);

/* gpu_fake_ops.c: runs op o now (the stream's or a graph's turn came). */
void fake_run(mlt_gpu_t *g, const op_t *o);

#endif
