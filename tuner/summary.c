/* summary.c - see summary.h. */
#include "tuner/summary.h"

#include <math.h>
#include <string.h>

const char *mlt_verdict_name(mlt_verdict_t v)
{
    static const char *const names[] = {"converging", "unstable", "diverged"};
    return (unsigned)v < 3 ? names[v] : "?";
}

void mlt_summarize(const double *losses, size_t n, double fork_loss, double start_loss,
                   double elapsed_s, mlt_summary_t *out)
{
    memset(out, 0, sizeof *out);
    out->verdict = MLT_VERDICT_DIVERGED;
    out->slope = INFINITY;
    /* the series is the fork loss followed by the trial's losses */
    size_t total = n + 1;
    double limit = MLT_SUMMARY_DIVERGE_FACTOR * fabs(start_loss);
    if (!isfinite(fork_loss))
        return;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(losses[i]) || (isfinite(limit) && limit > 0 && losses[i] > limit))
            return;
    if (n == 0 || !(elapsed_s > 0))
        return;
    /* block averages: the fork loss is its own first point, then n losses in
     * up to MLT_SUMMARY_POINTS blocks of near-equal size */
    size_t blocks = n < MLT_SUMMARY_POINTS ? n : MLT_SUMMARY_POINTS;
    out->y[0] = fork_loss;
    for (size_t b = 0; b < blocks; b++) {
        size_t lo = b * n / blocks, hi = (b + 1) * n / blocks;
        double s = 0;
        for (size_t i = lo; i < hi; i++)
            s += losses[i];
        out->y[b + 1] = s / (double)(hi - lo);
    }
    out->points = blocks + 1;
    (void)total;
    double mn = out->y[0], mx = out->y[0];
    for (size_t i = 1; i < out->points; i++) {
        double rise = out->y[i] - out->y[i - 1];
        if (rise > out->max_rise)
            out->max_rise = rise;
        if (out->y[i] < mn)
            mn = out->y[i];
        if (out->y[i] > mx)
            mx = out->y[i];
    }
    out->first = out->y[0];
    out->last = out->y[out->points - 1];
    out->range = mx - mn;
    out->slope = (out->last - out->first + out->max_rise) / elapsed_s;
    out->verdict = out->max_rise > 0.1 * fabs(out->range) ? MLT_VERDICT_UNSTABLE
                                                          : MLT_VERDICT_CONVERGING;
}

double mlt_score(const double *losses, size_t n, double *se)
{
    *se = NAN;
    if (n == 0)
        return INFINITY;
    size_t k = n / 3 < MLT_SCORE_MIN_TAIL ? MLT_SCORE_MIN_TAIL : n / 3;
    if (k > n)
        k = n;
    double sum = 0;
    for (size_t i = n - k; i < n; i++) {
        if (!isfinite(losses[i]))
            return INFINITY;
        sum += losses[i];
    }
    double mean = sum / (double)k;
    if (k >= 2) {
        double ss = 0;
        for (size_t i = n - k; i < n; i++)
            ss += (losses[i] - mean) * (losses[i] - mean);
        *se = sqrt(ss / (double)(k - 1) / (double)k);
    }
    return mean;
}

double mlt_trend_t(const double *losses, size_t n)
{
    double sx = 0, sy = 0;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(losses[i])) {
            sx += (double)i;
            sy += losses[i];
            m++;
        }
    if (m < 3)
        return NAN;
    double mx = sx / (double)m, my = sy / (double)m, sxx = 0, sxy = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(losses[i])) {
            sxx += ((double)i - mx) * ((double)i - mx);
            sxy += ((double)i - mx) * (losses[i] - my);
        }
    double b = sxy / sxx, rss = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(losses[i])) {
            double r = losses[i] - my - b * ((double)i - mx);
            rss += r * r;
        }
    double se = sqrt(rss / (double)(m - 2) / sxx);
    if (!(se > 0))
        return b < 0 ? -INFINITY : b > 0 ? INFINITY : 0;
    return b / se;
}
