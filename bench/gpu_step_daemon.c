/* gpu_step_daemon.c - part 2 of bench/gpu_step (see gpu_step.c's head): the
 * CUDA backend's step through a local mltunerd, this process its only worker,
 * and the daemon's pull + push bandwidth on the same tables. */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/gpu_step.h"
#include "common/timeutil.h"
#include "worker/data.h"

/* ---- 2. through a local daemon -------------------------------------------- */

static void ccheck(mlt_client_t *c, int rc, const char *what)
{
    if (rc < 0)
        die("%s failed: %s (%s)", what, mlt_client_error(c), strerror(-rc));
}

/* The pinned buffers and captured graph of the worker's step. */
typedef struct ps_worker {
    float **h_params, **h_grads; /* pinned, one per table */
    uint32_t *h_idx;             /* pinned */
    double *h_loss;              /* pinned */
    mlt_gpu_graph_t *graph;
    uint32_t batch;
} ps_worker_t;

/* The worker's device part, captured: upload parameters and indices, gather,
 * step, download gradients and the loss. */
static int ps_issue(mlt_gpu_t *g, const train_set_t *t, bench_model_t *b, ps_worker_t *w)
{
    float *const *P = mlt_gpu_model_params(b->m);
    float *const *G = mlt_gpu_model_grads(b->m);
    int rc = 0;
    for (uint32_t i = 0; i < b->np && !rc; i++)
        rc = mlt_gpu_upload(g, P[i], w->h_params[i], b->sizes[i] * sizeof(float));
    if (rc || (rc = mlt_gpu_upload(g, b->d_idx, w->h_idx, w->batch * sizeof(uint32_t))) ||
        (rc = mlt_gpu_gather4(g, t->d_x, IMG_FEAT, b->d_idx, w->batch, b->d_bx)) ||
        (rc = mlt_gpu_gather1(g, t->d_y, 1, b->d_idx, w->batch, b->d_by)) ||
        (rc = mlt_gpu_model_step(b->m, b->d_bx, b->d_by, w->batch)))
        return rc;
    for (uint32_t i = 0; i < b->np && !rc; i++)
        rc = mlt_gpu_download(g, w->h_grads[i], G[i], b->sizes[i] * sizeof(float));
    if (!rc)
        rc = mlt_gpu_download(g, w->h_loss, mlt_gpu_model_d_loss(b->m), sizeof *w->h_loss);
    return rc;
}

/* The next batch's indices from the host sampler (an epoch's short last batch
 * is topped up from the next epoch). */
static void next_indices(mlt_sampler_t *s, uint32_t *idx, uint32_t batch)
{
    uint32_t got = 0;
    while (got < batch)
        got += mlt_sampler_next_batch(s, batch - got, idx + got);
}

/* One step at clock *ck. Adds the phases' seconds to ph[3]. */
static void ps_step(mlt_client_t *c, mlt_gpu_t *g, bench_model_t *b, ps_worker_t *w,
                    mlt_sampler_t *s, int64_t *ck, double ph[3])
{
    double t0 = mlt_time_mono();
    ccheck(c, mlt_pull(c, BENCH_BRANCH, *ck, w->h_params), "mlt_pull");
    double t1 = mlt_time_mono();
    next_indices(s, w->h_idx, w->batch);
    gcheck(g, mlt_gpu_graph_launch(g, w->graph), "graph launch");
    gcheck(g, mlt_gpu_sync(g), "the worker's step");
    double t2 = mlt_time_mono();
    for (uint32_t i = 0; i < b->np; i++)
        ccheck(c, mlt_push(c, BENCH_BRANCH, i, w->h_grads[i]), "mlt_push");
    ccheck(c, mlt_clock(c, BENCH_BRANCH, *ck + 1), "mlt_clock");
    double t3 = mlt_time_mono();
    ph[0] += t1 - t0;
    ph[1] += t2 - t1;
    ph[2] += t3 - t2;
    (*ck)++;
}

ps_model_t run_daemon(mlt_client_t *c, mlt_gpu_t *g, const train_set_t *t, int which,
                      double seconds)
{
    ps_model_t pm;
    memset(&pm, 0, sizeof pm);
    bench_model_t b;
    bench_model_new(g, which, &b);
    const mlt_model_t *plan = mlt_gpu_model_plan(b.m);
    pm.mb = (double)b.floats * sizeof(float) / 1e6;

    /* the job: the model's tables, SGD with momentum applied by the daemon */
    mlt_table_def_t *tables = calloc(b.np, sizeof *tables);
    ps_worker_t w = {0};
    w.h_params = calloc(b.np, sizeof *w.h_params);
    w.h_grads = calloc(b.np, sizeof *w.h_grads);
    if (!tables || !w.h_params || !w.h_grads)
        die("out of memory");
    for (uint32_t i = 0; i < b.np; i++) {
        tables[i] = (mlt_table_def_t){mlt_model_param_name(plan, i), b.sizes[i]};
        w.h_params[i] = hmalloc(g, b.sizes[i] * sizeof(float), "parameters");
        w.h_grads[i] = hmalloc(g, b.sizes[i] * sizeof(float), "gradients");
        memset(w.h_grads[i], 0, b.sizes[i] * sizeof(float));
    }
    w.h_idx = hmalloc(g, MAX_BATCH * sizeof(uint32_t), "indices");
    w.h_loss = hmalloc(g, sizeof(double), "loss");
    char jobname[32];
    snprintf(jobname, sizeof jobname, "bench-gpu-%s", model_names[which]);
    mlt_job_def_t job = {.name = jobname, .n_workers = 1, .rule = "sgd", .tables = tables,
                         .n_tables = b.np};
    ccheck(c, mlt_client_register(c, &job), "mlt_client_register");
    mlt_tunables_def_t tu = mlt_tunables_unset();
    tu.lr = BENCH_LR;
    tu.momentum = BENCH_MOMENTUM;
    tu.staleness = 0;
    ccheck(c, mlt_branch_create(c, BENCH_BRANCH, MLT_BRANCH_TRAIN, &tu), "mlt_branch_create");
    /* the initial weights, as a worker writes them */
    float *const *P = mlt_gpu_model_params(b.m);
    for (uint32_t i = 0; i < b.np; i++)
        gcheck(g, mlt_gpu_download(g, w.h_params[i], P[i], b.sizes[i] * sizeof(float)), "init");
    gcheck(g, mlt_gpu_sync(g), "init");
    for (uint32_t i = 0; i < b.np; i++)
        ccheck(c, mlt_write(c, BENCH_BRANCH, i, w.h_params[i]), "mlt_write");

    /* the daemon's bandwidth on these tables: pull, push zeros, clock */
    int64_t ck = 0;
    double bw[ROUNDS];
    for (int k = 0; k < ROUNDS; k++) {
        int iters = 0;
        double t0 = mlt_time_mono(), el;
        do {
            ccheck(c, mlt_pull(c, BENCH_BRANCH, ck, w.h_params), "mlt_pull");
            for (uint32_t i = 0; i < b.np; i++)
                ccheck(c, mlt_push(c, BENCH_BRANCH, i, w.h_grads[i]), "mlt_push");
            ccheck(c, mlt_clock(c, BENCH_BRANCH, ck + 1), "mlt_clock");
            ck++;
            iters++;
            el = mlt_time_mono() - t0;
        } while (el < BW_SECONDS || iters < 5);
        bw[k] = 2.0 * (double)b.floats * sizeof(float) * iters / el;
        pm.bw_iters += iters;
    }
    pm.bw = median(bw, ROUNDS);

    mlt_sampler_t *s = mlt_sampler_new(t->n, 0, 1, BENCH_SEED);
    if (s == NULL)
        die("mlt_sampler_new: %s", strerror(errno));
    pm.ok = true;
    for (int bi = 0; bi < N_BATCHES; bi++) {
        ps_result_t *r = &pm.r[bi];
        w.batch = batches[bi];
        gcheck(g, mlt_gpu_model_prepare(b.m, w.batch), "mlt_gpu_model_prepare");
        char why[512];
        int rc = mlt_gpu_capture_begin(g);
        if (rc == 0) {
            int rc2 = ps_issue(g, t, &b, &w);
            rc = mlt_gpu_capture_end(g, &w.graph);
            if (rc2 && !rc) {
                mlt_gpu_graph_destroy(&w.graph);
                rc = rc2;
            }
        }
        if (rc || w.graph == NULL) {
            snprintf(why, sizeof why, "%s", mlt_gpu_error(g));
            fprintf(stderr, "bench/gpu_step: daemon %s batch %u: capture failed: %s\n",
                    model_names[which], w.batch, why);
            r->step_ms = r->pull_ms = r->gpu_ms = r->push_ms = NAN;
            pm.ok = false;
            continue;
        }
        double ph[3] = {0, 0, 0};
        for (int k = 0; k < PS_WARMUP_STEPS; k++)
            ps_step(c, g, &b, &w, s, &ck, ph);
        r->loss_first = *w.h_loss / w.batch;
        double st[ROUNDS], pl[ROUNDS], gp[ROUNDS], pu[ROUNDS];
        for (int k = 0; k < ROUNDS; k++) {
            ph[0] = ph[1] = ph[2] = 0;
            long n = 0;
            double t0 = mlt_time_mono(), el;
            do {
                ps_step(c, g, &b, &w, s, &ck, ph);
                n++;
                el = mlt_time_mono() - t0;
            } while (el < seconds || n < PS_MIN_STEPS);
            st[k] = el * 1e3 / n;
            pl[k] = ph[0] * 1e3 / n;
            gp[k] = ph[1] * 1e3 / n;
            pu[k] = ph[2] * 1e3 / n;
            r->steps += n;
        }
        r->loss_last = *w.h_loss / w.batch;
        r->step_ms = median(st, ROUNDS);
        r->pull_ms = median(pl, ROUNDS);
        r->gpu_ms = median(gp, ROUNDS);
        r->push_ms = median(pu, ROUNDS);
        r->ok = isfinite(r->loss_last);
        if (!r->ok) {
            fprintf(stderr, "bench/gpu_step: daemon %s batch %u: loss %g\n", model_names[which],
                    w.batch, r->loss_last);
            pm.ok = false;
        }
        mlt_gpu_graph_destroy(&w.graph);
    }
    mlt_sampler_destroy(&s);
    ccheck(c, mlt_client_job_end(c), "mlt_client_job_end");
    gcheck(g, mlt_gpu_sync(g), "sync");
    for (uint32_t i = 0; i < b.np; i++) {
        mlt_gpu_host_free(g, w.h_params[i]);
        mlt_gpu_host_free(g, w.h_grads[i]);
    }
    mlt_gpu_host_free(g, w.h_idx);
    mlt_gpu_host_free(g, w.h_loss);
    free(w.h_params);
    free(w.h_grads);
    free(tables);
    bench_model_destroy(g, &b);
    return pm;
}
