/* gpu_step.h - shared by bench/gpu_step's files: gpu_step.c (the failure
 * helpers, the data, the models, part 1 standalone, main) and
 * gpu_step_daemon.c (part 2, through a local mltunerd). Private to the
 * benchmark; see gpu_step.c's head for what it measures. */
#ifndef MLT_BENCH_GPU_STEP_H
#define MLT_BENCH_GPU_STEP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/gpu.h"
#include "client/mltuner.h"
#include "worker/model_gpu.h"

#define N_MODELS  2
#define N_BATCHES 3
#define MAX_BATCH 512
#define ROUNDS    3 /* rows report the median round */

/* step counts; a dry run may lower them at compile time */
#ifndef MIN_STEPS
#define MIN_STEPS       200 /* per timed round, standalone */
#define WARMUP_STEPS    30
#define PS_MIN_STEPS    20 /* per timed round, through the daemon */
#define PS_WARMUP_STEPS 5
#endif

#define BW_SECONDS     0.5 /* per bandwidth round */
#define BENCH_LR       0.01f
#define BENCH_MOMENTUM 0.9f
#define BENCH_SEED     1u
#define BENCH_BRANCH   1u
#define IMG_SIDE       28u
#define IMG_FEAT       (IMG_SIDE * IMG_SIDE)
#define N_CLASSES      10u
#define RANDOM_SAMPLES 60000u
#define DEB_FMNIST     "/usr/share/datasets/fashion-mnist"
#define CHECK_TOL      1e-4 /* graph vs eager step: relative */

extern const char *const model_names[N_MODELS]; /* "mlp", "cnn" */
extern const uint32_t batches[N_BATCHES];       /* 32, 128, 512 */

typedef struct train_set {
    uint32_t n;
    float *d_x;       /* device: n x 784 */
    uint8_t *d_y;     /* device: n labels */
    uint32_t *d_perm; /* device: a random permutation of 0..n-1 */
    char what[768];   /* where the data came from, for the header */
} train_set_t;

/* A model with its batch buffers and optimizer state. */
typedef struct bench_model {
    mlt_gpu_model_t *m;
    uint32_t np;
    uint64_t *sizes;
    uint64_t floats; /* parameters in all */
    float **d_state; /* SGD momentum, one per tensor */
    float *d_bx;     /* the gathered batch */
    uint8_t *d_by;
    uint32_t *d_idx, *d_idx_next; /* the batch's indices and the next ones */
} bench_model_t;

typedef struct ps_result {
    double step_ms, pull_ms, gpu_ms, push_ms; /* median round; per step */
    double loss_first, loss_last;             /* mean batch loss */
    long steps;
    bool ok;
} ps_result_t;

typedef struct ps_model {
    double bw; /* pull + push bytes per second */
    double mb; /* model MB (1e6 bytes) */
    int bw_iters;
    ps_result_t r[N_BATCHES];
    bool ok;
} ps_model_t;

/* failures (gpu_step.c): print, stop the daemon if one runs, exit 1 */
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void gcheck(mlt_gpu_t *g, int rc, const char *what);     /* a GPU call that must succeed */
void *hmalloc(mlt_gpu_t *g, size_t n, const char *what); /* pinned, or die */
double median(double *v, int n);                         /* sorts v */

/* the models (gpu_step.c): `which` indexes model_names */
void bench_model_new(mlt_gpu_t *g, int which, bench_model_t *b);
void bench_model_destroy(mlt_gpu_t *g, bench_model_t *b);

/* part 2 (gpu_step_daemon.c): model `which` through the daemon c serves, at
 * every batch size; dies on a client or GPU error, pm.ok false when a batch
 * size failed (the reason on stderr) */
ps_model_t run_daemon(mlt_client_t *c, mlt_gpu_t *g, const train_set_t *t, int which,
                      double seconds);

#endif
