/* ps.h - what bench/ps.c and bench/ps_clock.c (the breakdown of a clock,
 * #15) share. */
#ifndef MLT_BENCH_PS_H
#define MLT_BENCH_PS_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#include "client/mltuner.h"

#define MIB               (1024ull * 1024ull)
#define BENCH_FRAME       (64 * 1024) /* the daemon's default chunk_size */
#define BENCH_MIN_SECONDS 1.0         /* timed part of each throughput row */
#define BENCH_MIN_ITERS   5
#define BENCH_ROUNDS      5 /* interleaved rounds; rows report the median */
#define BENCH_WARMUP      2
#define BENCH_BRANCH      1
#define BENCH_LR          0.01f
#define BENCH_GRAD        0.001f
#define ITER_CAP          100000 /* iteration times kept per row */

/* ps.c */
/* Prints why on stderr, stops what runs (daemons, the peer), exits 1. */
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* 64-byte aligned, every float `value` (every page touched). */
void *alloc_filled(size_t bytes, float value);
/* dies naming `what` and the client's error when rc < 0 */
void check_client(mlt_client_t *c, int rc, const char *what);
int cmp_double(const void *a, const void *b);

/* ps_clock.c: where a clock's time goes */
/* The copy bound: median us of a memcpy of `bytes` (the pull) and one of
 * `bytes` (the push), between buffers of those sizes. */
double copy_bound_us(uint64_t bytes);

/* Columns of the breakdown: stretches between stamps, in us. */
enum {
    B_TO_SHARD,
    B_DECODE,
    B_READ,
    B_CHECK,
    B_PARKED,
    B_WORK,
    B_REPLY,
    B_TO_CLIENT,
    B_CLIENT,
    B_TOTAL,
    B_COLS
};
enum { K_PULL, K_PUSH, K_CLOCK, K_STEP, K_KINDS };

typedef struct breakdown {
    uint32_t staleness, n_tables;
    bool view; /* the zero-copy calls (mlt_pull_view, mlt_push_buffer) */
    int clocks, n[K_KINDS], parked, prefetched, cache_served;
    double med[K_KINDS][B_COLS];
    double pull_us, push_us, clock_us, iter_us; /* medians of the calls per clock */
} breakdown_t;

/* The layouts the breakdown runs: one table of 1 MiB, and fmnist-mlp's six
 * (784-256-256-10: 1.03 MiB, under its job's rule, sf-adamw), whose pushes
 * are a message per table. */
extern const mlt_table_def_t one_table[1];
#define MLP_TABLES 6
extern const mlt_table_def_t mlp_tables[MLP_TABLES];

/* Runs >= `seconds` of pull + push + clock of the tables at staleness s
 * (view: with the zero-copy calls, the gradient written into the push buffer
 * untimed), every request traced, and takes the medians. */
breakdown_t breakdown_run(mlt_client_t *c, const mlt_table_def_t *tables, uint32_t n_tables,
                          uint32_t s, double seconds, bool view);
void breakdown_print(const breakdown_t *b, double bound_us);

#endif
