/* model_speed.c - samples/s of mlt_model_step on the CPU, for the two
 * reference classifiers of DESIGN.md §10 on random 1x28x28 data:
 *   mlp  784-256-256-10
 *   cnn  conv5x5x32-pool2-conv5x5x64-pool2-fc256-fc10
 * A micro-benchmark, not a test: it prints one line per model and exits 0.
 *
 *   build/bench/model_speed [--batch N] [--seconds S] [--as-is] [mlp] [cnn]
 *
 * Threads: OpenBLAS's own setting (OPENBLAS_NUM_THREADS, default all cores);
 * the line says how many it used. OpenBLAS 0.3.21 picks its kernels when it
 * is loaded and does not recognise some newer CPUs (it then runs generic SSE3
 * code, ~10x slower). When mlt_cpu_blas_better_core() says so, this program
 * re-executes itself with OPENBLAS_CORETYPE set, as a worker should; --as-is
 * measures the library's own choice instead. Each timing is the median of 5
 * rounds of about S/5 seconds, after one warm-up round, with min and max;
 * "cpu" is the process's CPU time per step (all threads), which moves less
 * than wall time on a shared machine (with 2 threads it includes OpenBLAS's
 * spinning). */
#include "common/timeutil.h"
#include "kernels/cpu.h"
#include "worker/model.h"

#include <cblas.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ROUNDS 5

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* CPU time of the whole process (all threads), seconds. */
static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Median samples/s of mlt_model_step over ROUNDS rounds; -1 on error. */
static double measure(const char *label, const mlt_model_desc_t *d, uint32_t batch, double seconds)
{
    char err[256];
    mlt_model_t *m = mlt_model_new(d, err, sizeof err);
    if (m == NULL) {
        fprintf(stderr, "model_speed: %s: %s\n", label, err);
        return -1;
    }
    uint32_t np = mlt_model_n_params(m);
    float **params = calloc(np, sizeof *params), **grads = calloc(np, sizeof *grads);
    uint64_t n_weights = 0;
    for (uint32_t i = 0; i < np; i++) {
        uint64_t sz = mlt_model_param_size(m, i);
        params[i] = malloc(sz * sizeof(float));
        grads[i] = malloc(sz * sizeof(float));
        n_weights += sz;
    }
    mlt_model_init(m, params, 1);
    size_t in = (size_t)d->in_c * d->in_h * d->in_w;
    float *x = malloc(in * batch * sizeof *x);
    uint8_t *y = malloc(batch);
    uint64_t st = 12345;
    for (size_t i = 0; i < in * batch; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)(st >> 40) / (float)(1u << 24);
    }
    for (uint32_t i = 0; i < batch; i++)
        y[i] = (uint8_t)(i % d->n_classes);

    double rate[ROUNDS], cpu[ROUNDS], per_round = seconds / ROUNDS;
    float loss = 0;
    for (int r = -1; r < ROUNDS; r++) { /* round -1: warm-up */
        long steps = 0;
        double c0 = cpu_seconds(), t0 = mlt_time_mono(), t;
        do {
            if (mlt_model_step(m, params, grads, x, y, batch, &loss, NULL) != 0) {
                fprintf(stderr, "model_speed: %s: step failed\n", label);
                exit(1);
            }
            steps++;
        } while ((t = mlt_time_mono() - t0) < per_round);
        if (r >= 0) {
            rate[r] = (double)steps * batch / t;
            cpu[r] = (cpu_seconds() - c0) / (double)steps;
        }
    }
    qsort(rate, ROUNDS, sizeof rate[0], cmp_double);
    qsort(cpu, ROUNDS, sizeof cpu[0], cmp_double);
    printf("%-4s batch %3u  %10.0f samples/s  (%.3f ms/step, min %.0f max %.0f; "
           "cpu %.3f ms/step; %.2fM params, loss %.3f)\n",
           label, batch, rate[ROUNDS / 2], 1e3 * batch / rate[ROUNDS / 2], rate[0],
           rate[ROUNDS - 1], 1e3 * cpu[ROUNDS / 2], (double)n_weights / 1e6, (double)loss);
    fflush(stdout);

    for (uint32_t i = 0; i < np; i++) {
        free(params[i]);
        free(grads[i]);
    }
    free(params);
    free(grads);
    free(x);
    free(y);
    mlt_model_destroy(&m);
    return rate[ROUNDS / 2];
}

int main(int argc, char **argv)
{
    uint32_t batch = 128;
    double seconds = 5;
    bool as_is = false, run_mlp = false, run_cnn = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc)
            batch = (uint32_t)atoi(argv[++i]);
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--as-is") == 0)
            as_is = true;
        else if (strcmp(argv[i], "mlp") == 0)
            run_mlp = true;
        else if (strcmp(argv[i], "cnn") == 0)
            run_cnn = true;
        else {
            fprintf(stderr, "usage: %s [--batch N] [--seconds S] [--as-is] [mlp] [cnn]\n", argv[0]);
            return 2;
        }
    }
    if (!run_mlp && !run_cnn)
        run_mlp = run_cnn = true;
    if (batch == 0 || batch > 4096 || !(seconds > 0)) {
        fprintf(stderr, "model_speed: batch must be 1..4096 and seconds > 0\n");
        return 2;
    }

    const char *better = mlt_cpu_blas_better_core();
    if (better != NULL && !as_is && getenv("OPENBLAS_CORETYPE") == NULL) {
        printf("# OpenBLAS chose core %s on this CPU; re-executing with OPENBLAS_CORETYPE=%s\n",
               mlt_cpu_blas_core(), better);
        fflush(stdout);
        setenv("OPENBLAS_CORETYPE", better, 1);
        execv("/proc/self/exe", argv);
        perror("model_speed: execv /proc/self/exe");
    }
    printf("# OpenBLAS core %s, %d threads", mlt_cpu_blas_core(), openblas_get_num_threads());
    if (better != NULL)
        printf(" (NOT the best core for this CPU: OPENBLAS_CORETYPE=%s is)", better);
    printf("\n");

    static const uint32_t hidden[] = {256, 256};
    static const mlt_cnn_layer_t cnn[] = {
        {.op = MLT_CNN_CONV, .k = 5, .n = 32}, {.op = MLT_CNN_POOL, .k = 2},
        {.op = MLT_CNN_CONV, .k = 5, .n = 64}, {.op = MLT_CNN_POOL, .k = 2},
        {.op = MLT_CNN_FC, .n = 256},
    };
    const mlt_model_desc_t mlp_d = {
        .type = MLT_MODEL_MLP,
        .in_c = 1,
        .in_h = 28,
        .in_w = 28,
        .n_classes = 10,
        .hidden = hidden,
        .n_hidden = 2,
        .max_batch = batch,
    };
    const mlt_model_desc_t cnn_d = {
        .type = MLT_MODEL_CNN,
        .in_c = 1,
        .in_h = 28,
        .in_w = 28,
        .n_classes = 10,
        .cnn = cnn,
        .n_cnn = 5,
        .max_batch = batch,
    };
    int rc = 0;
    if (run_mlp && measure("mlp", &mlp_d, batch, seconds) < 0)
        rc = 1;
    if (run_cnn && measure("cnn", &cnn_d, batch, seconds) < 0)
        rc = 1;
    return rc;
}
