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

/* "converging", "unstable", "diverged". */
const char *mlt_verdict_name(mlt_verdict_t v);

#endif
