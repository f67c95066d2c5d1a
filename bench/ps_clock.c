/* ps_clock.c - bench/ps's breakdown of a clock (#15): pull + push + clock of
 * a 1 MiB model through mltunerd with every request traced (Header.trace:
 * the shard's CLOCK_MONOTONIC stamps; the client's own, client_int.h), the
 * medians of each stretch per request kind, and the copy bound they are set
 * against. See ps.c for the whole benchmark. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/ps.h"
#include "client/client_int.h" /* the trace records (bench only: the static library) */
#include "client/mltuner.h"
#include "common/timeutil.h"

/* The copy bound: median time of a memcpy of `bytes` (the pull) and one of
 * `bytes` (the push), between buffers of those sizes, touched before. */
double copy_bound_us(uint64_t bytes)
{
    enum { REPS = 101 };
    char *a = alloc_filled(bytes, 1.0f), *b = alloc_filled(bytes, 2.0f);
    char *x = alloc_filled(bytes, 3.0f), *y = alloc_filled(bytes, 4.0f);
    double us[REPS];
    for (int i = 0; i < REPS; i++) {
        double t0 = mlt_time_mono();
        memcpy(b, a, bytes); /* the pull's bytes */
        memcpy(y, x, bytes); /* the push's */
        __asm__ volatile("" : : "r"(b), "r"(y) : "memory");
        us[i] = (mlt_time_mono() - t0) * 1e6;
    }
    qsort(us, REPS, sizeof us[0], cmp_double);
    free(a), free(b), free(x), free(y);
    return us[REPS / 2];
}

static const char *const b_names[B_COLS] = {"to_shard", "decode", "read",      "check",  "parked",
                                            "work",     "reply",  "to_client", "client", "total"};
static const char *const k_names[K_KINDS] = {"pull", "push", "clock", "step"};

static double us_between(uint64_t from, uint64_t to)
{
    return from && to && to >= from ? (double)(to - from) / 1e3 : 0.0;
}

/* The stretches of one traced request into row v. */
static int split_record(const mlt_trace_rec_t *r, double *v)
{
    const uint64_t *t = r->shard;
    int k = r->type == MLT__MSG_TYPE__MSG_PULL || r->type == MLT__MSG_TYPE__MSG_PULL_ALL ? K_PULL
            : r->type == MLT__MSG_TYPE__MSG_PUSH                                          ? K_PUSH
            : r->type == MLT__MSG_TYPE__MSG_CLOCK                                         ? K_CLOCK
            : r->type == MLT__MSG_TYPE__MSG_STEP                                          ? K_STEP
                                                                                          : -1;
    if (k < 0 || !t[MLT_TR_BEGIN] || !t[MLT_TR_SENT])
        return -1;
    for (int i = 0; i < B_COLS; i++)
        v[i] = 0;
    v[B_TO_SHARD] = us_between(r->sent, t[MLT_TR_BEGIN]);
    v[B_DECODE] = us_between(t[MLT_TR_BEGIN], t[MLT_TR_DECODED]);
    if (k == K_PUSH) {
        v[B_READ] = us_between(t[MLT_TR_DECODED], t[MLT_TR_READ]);
        v[B_CHECK] = us_between(t[MLT_TR_READ], t[MLT_TR_CHECKED]);
        v[B_WORK] = us_between(t[MLT_TR_CHECKED], t[MLT_TR_DONE]);
    } else if (k == K_PULL && t[MLT_TR_READ]) { /* parked, then released */
        v[B_PARKED] = us_between(t[MLT_TR_DECODED], t[MLT_TR_CHECKED]);
        v[B_WORK] = us_between(t[MLT_TR_CHECKED], t[MLT_TR_DONE]);
    } else {
        v[B_WORK] = us_between(t[MLT_TR_DECODED], t[MLT_TR_DONE]);
    }
    v[B_REPLY] = us_between(t[MLT_TR_DONE], t[MLT_TR_SENT]);
    v[B_TO_CLIENT] = us_between(t[MLT_TR_SENT], r->got);
    v[B_CLIENT] = us_between(r->got, r->done);
    v[B_TOTAL] = us_between(r->sent, r->done);
    return k;
}

static double median_of(double *v, int n)
{
    if (n <= 0)
        return 0.0;
    qsort(v, (size_t)n, sizeof v[0], cmp_double);
    return v[n / 2];
}

/* Runs >= `seconds` of pull + push + clock of one 1 MiB table at staleness s,
 * traced, and takes the medians. */
const mlt_table_def_t one_table[1] = {{"w", MIB / sizeof(float)}};
const mlt_table_def_t mlp_tables[MLP_TABLES] = {
    {"w1", 784 * 256}, {"b1", 256}, {"w2", 256 * 256}, {"b2", 256}, {"w3", 256 * 10}, {"b3", 10}};

/* One pull (into dst, or its views) and the pushes of every table (from
 * grads, or written into the push buffers: the write not timed, *fill_s). */
static void pull_and_push(mlt_client_t *c, bool view, int64_t clock, float **dst,
                          const float **w, float **grads, const mlt_table_def_t *tables,
                          uint32_t n_tables, double *t_pulled, double *fill_s)
{
    if (view)
        check_client(c, mlt_pull_view(c, BENCH_BRANCH, clock, w), "mlt_pull_view");
    else
        check_client(c, mlt_pull(c, BENCH_BRANCH, clock, dst), "mlt_pull");
    *t_pulled = mlt_time_mono();
    *fill_s = 0;
    for (uint32_t t = 0; t < n_tables; t++) {
        const float *g = grads[t];
        float *buf = view ? mlt_push_buffer(c, BENCH_BRANCH, t) : NULL;
        if (buf) {
            double f0 = mlt_time_mono();
            memcpy(buf, grads[t], tables[t].size * sizeof(float));
            *fill_s += mlt_time_mono() - f0;
            g = buf;
        }
        check_client(c, mlt_push(c, BENCH_BRANCH, t, g), "mlt_push");
    }
}

breakdown_t breakdown_run(mlt_client_t *c, const mlt_table_def_t *tables, uint32_t n_tables,
                          uint32_t s, double seconds, bool view)
{
    enum { CAP = 200000 };
    /* fmnist-mlp's tables run its job's rule (conf/jobs/fmnist-mlp.conf):
     * schedule-free AdamW, 4 arrays per parameter on the shard */
    const bool sgd = n_tables == 1;
    mlt_job_def_t job = {.name = "bench-ps-clock",
                         .n_workers = 1,
                         .rule = sgd ? "sgd" : "sf-adamw",
                         .tables = (mlt_table_def_t *)tables,
                         .n_tables = n_tables};
    check_client(c, mlt_client_register(c, &job), "mlt_client_register");
    mlt_tunables_def_t tu = mlt_tunables_unset();
    tu.lr = BENCH_LR;
    tu.staleness = (int32_t)s;
    check_client(c, mlt_branch_create(c, BENCH_BRANCH, MLT_BRANCH_TRAIN, &tu), "mlt_branch_create");
    float *dst[MLP_TABLES], *grads[MLP_TABLES];
    for (uint32_t t = 0; t < n_tables; t++) {
        dst[t] = alloc_filled(tables[t].size * sizeof(float), 0.0f);
        grads[t] = alloc_filled(tables[t].size * sizeof(float), BENCH_GRAD);
    }
    const float *w[MLP_TABLES];
    for (uint32_t t = 0; t < n_tables; t++)
        w[t] = dst[t];
    static double calls[3][ITER_CAP], col[K_KINDS][B_COLS][CAP / 2];
    static mlt_trace_rec_t recs[CAP];
    breakdown_t b = {.staleness = s, .n_tables = n_tables, .view = view};
    uint64_t prefetched0 = mlt_pull_prefetched(c);
    int64_t clock = 0;
    double t1, fill;
    for (int i = 0; i < BENCH_WARMUP; i++, clock++) {
        pull_and_push(c, view, clock, dst, w, grads, tables, n_tables, &t1, &fill);
        check_client(c, mlt_clock(c, BENCH_BRANCH, clock + 1), "mlt_clock");
    }
    check_client(c, mlt_sync(c), "mlt_sync");
    mlt_client__trace(c, true);
    int nrec = 0;
    double start = mlt_time_mono();
    do {
        double t0 = mlt_time_mono();
        pull_and_push(c, view, clock, dst, w, grads, tables, n_tables, &t1, &fill);
        const float *params = w[0];
        if (mlt_pull_min_clock(c, BENCH_BRANCH) < clock)
            b.cache_served++;
        /* every push of clocks < min_clock is in it, and none after this worker's last */
        float lo = -BENCH_LR * BENCH_GRAD * (float)clock,
              hi = -BENCH_LR * BENCH_GRAD * (float)(clock > (int64_t)s ? clock - (int64_t)s : 0);
        float tol = fabsf(lo) * 1e-4f + 1e-12f;
        if (sgd && (params[0] < lo - tol || params[0] > hi + tol))
            die("pull at clock %lld (staleness %u) saw w[0] = %g outside [%g, %g]",
                (long long)clock, s, params[0], lo, hi);
        double t2 = mlt_time_mono();
        check_client(c, mlt_clock(c, BENCH_BRANCH, clock + 1), "mlt_clock");
        double t3 = mlt_time_mono();
        if (b.clocks < ITER_CAP) {
            calls[0][b.clocks] = (t1 - t0) * 1e6;
            calls[1][b.clocks] = (t2 - t1 - fill) * 1e6;
            calls[2][b.clocks] = (t3 - t2) * 1e6;
            b.clocks++;
        }
        clock++;
        if (nrec < CAP)
            nrec += (int)mlt_client__trace_take(c, recs + nrec, (size_t)(CAP - nrec));
    } while (mlt_time_mono() - start < seconds || b.clocks < BENCH_MIN_ITERS);
    check_client(c, mlt_sync(c), "mlt_sync");
    if (nrec < CAP)
        nrec += (int)mlt_client__trace_take(c, recs + nrec, (size_t)(CAP - nrec));
    mlt_client__trace(c, false);
    b.prefetched = (int)(mlt_pull_prefetched(c) - prefetched0);
    for (int i = 0; i < nrec; i++) {
        double v[B_COLS];
        int k = split_record(&recs[i], v);
        if (k < 0 || b.n[k] >= CAP / 2)
            continue;
        if (k == K_PULL && v[B_PARKED] > 0)
            b.parked++;
        for (int j = 0; j < B_COLS; j++)
            col[k][j][b.n[k]] = v[j];
        b.n[k]++;
    }
    for (int k = 0; k < K_KINDS; k++)
        for (int j = 0; j < B_COLS; j++)
            b.med[k][j] = median_of(col[k][j], b.n[k]);
    double iter[ITER_CAP];
    for (int i = 0; i < b.clocks; i++)
        iter[i] = calls[0][i] + calls[1][i] + calls[2][i];
    b.pull_us = median_of(calls[0], b.clocks);
    b.push_us = median_of(calls[1], b.clocks);
    b.clock_us = median_of(calls[2], b.clocks);
    b.iter_us = median_of(iter, b.clocks);
    check_client(c, mlt_client_job_end(c), "mlt_client_job_end");
    for (uint32_t t = 0; t < n_tables; t++) {
        free(dst[t]);
        free(grads[t]);
    }
    return b;
}

void breakdown_print(const breakdown_t *b, double bound_us)
{
    printf("\n# where a clock's time goes: %s, staleness %u, one worker, %d clocks traced; "
           "median us per request\n",
           b->n_tables == 1 ? (b->view ? "1 MiB in one table, sgd, zero-copy calls"
                                       : "1 MiB in one table, sgd")
                            : "fmnist-mlp's 6 tables (1.03 MiB), sf-adamw",
           b->staleness, b->clocks);
    printf("# to_shard/to_client: ZeroMQ both ways (2 I/O threads, tcp loopback, the wake-ups, "
           "queueing behind earlier requests); read: pread of the push from shared memory; "
           "check: NaN scan; parked: SSP wait until released; work: apply (push), copy into "
           "shared memory (pull), count (clock); client: handling the reply (a pull's copy "
           "out); step: a clock's pushes and the clock in one request (its work: all of it)\n");
    printf("%-6s %6s", "req", "n");
    for (int j = 0; j < B_COLS; j++)
        printf(" %9s", b_names[j]);
    printf("\n");
    for (int k = 0; k < K_KINDS; k++) {
        printf("%-6s %6d", k_names[k], b->n[k]);
        for (int j = 0; j < B_COLS; j++)
            printf(" %9.1f", b->med[k][j]);
        printf("\n");
    }
    printf("# per clock (median us): pull call %.1f, push call %.1f, clock call %.1f, "
           "pull+push+clock %.1f = %.2f x the copy bound %.1f; pulls parked %d, "
           "prefetched %d, served by the cache %d\n",
           b->pull_us, b->push_us, b->clock_us, b->iter_us, b->iter_us / bound_us, bound_us,
           b->parked, b->prefetched, b->cache_served);
}
