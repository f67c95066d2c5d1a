/* summary.h - the progress summary of a trial (DESIGN §6 step 3): its
 * per-clock training losses, with the loss at the fork point prepended,
 * block-averaged down to about MLT_SUMMARY_POINTS points; the penalised slope
 * (y_last - y_first + max_rise) / elapsed_seconds, where max_rise is the
 * largest rise between consecutive points (negative slope = good); and a
 * verdict: diverged (a non-finite value, or a loss above 10x the starting
 * loss), unstable (max_rise > 0.1 x |range|), else converging. Pure functions;
 * thread-safe. */
#ifndef MLT_SUMMARY_H
#define MLT_SUMMARY_H

#include <stddef.h>

#define MLT_SUMMARY_POINTS 10
#define MLT_SUMMARY_DIVERGE_FACTOR 10.0 /* a loss above this x the start: diverged */

typedef enum {
    MLT_VERDICT_CONVERGING = 0,
    MLT_VERDICT_UNSTABLE = 1,
    MLT_VERDICT_DIVERGED = 2,
} mlt_verdict_t;

typedef struct mlt_summary {
    mlt_verdict_t verdict;
    double slope;      /* penalised slope, loss per second; +INFINITY when diverged */
    double first, last;/* first and last block means */
    double max_rise;   /* largest rise between consecutive block means */
    double range;      /* max - min of the block means */
    size_t points;     /* block means computed */
    double y[MLT_SUMMARY_POINTS + 1]; /* the block means */
} mlt_summary_t;

/* Summarises losses[0..n) observed over elapsed_s seconds after a fork whose
 * loss was fork_loss; start_loss is the job's starting loss (the divergence
 * reference: a loss above 10x it is divergence). */
void mlt_summarize(const double *losses, size_t n, double fork_loss, double start_loss,
                   double elapsed_s, mlt_summary_t *out);

/* The score of a trial: its loss at the end of the time it has run, as the
 * mean of its last losses (the last third, at least MLT_SCORE_MIN_TAIL and at
 * most all), with the standard error of that mean (NaN with fewer than two).
 * Lower is better. Trials of one search rung run the same wall time, so their
 * scores compare the loss each setting reaches in that time. Returns the
 * mean; +INFINITY when a loss in the window is not finite, or n is 0. */
#define MLT_SCORE_MIN_TAIL 3
double mlt_score(const double *losses, size_t n, double *se);

/* The t statistic of the least-squares slope of losses[0..n) against their
 * index: below -2 or so the loss is still falling beyond its noise; near 0 it
 * has stalled. NaN with fewer than 3 finite losses; -INFINITY for a clean
 * (noise-free) decrease. */
double mlt_trend_t(const double *losses, size_t n);

/* "converging", "unstable", "diverged". */
const char *mlt_verdict_name(mlt_verdict_t v);

#endif
