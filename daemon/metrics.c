/* metrics.c - see metrics.h. */
#include "daemon/metrics.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"

const char *mlt_branch_kind_name(int kind)
{
    static const char *const names[] = {"init", "train", "eval", "test", "snapshot"};
    return kind >= 0 && (size_t)kind < sizeof names / sizeof names[0] ? names[kind] : "?";
}

/* ---- branches ------------------------------------------------------------------ */

static int cmp_id(const void *a, const void *b)
{
    uint32_t x = ((const mlt_branch_status_t *)a)->id, y = ((const mlt_branch_status_t *)b)->id;
    return x < y ? -1 : x > y;
}

int mlt_branches_merge(const mlt_server_status_t *st, const bool *up, int n,
                       mlt_branch_status_t **out, uint32_t *n_out)
{
    size_t total = 0;
    for (int i = 0; i < n; i++)
        if (up[i])
            total += st[i].n_branches;
    mlt_branch_status_t *all = mlt_calloc(total ? total : 1, sizeof *all);
    if (!all)
        return -ENOMEM;
    size_t m = 0;
    for (int i = 0; i < n; i++)
        for (uint32_t j = 0; up[i] && j < st[i].n_branches; j++)
            all[m++] = st[i].branches[j];
    qsort(all, m, sizeof *all, cmp_id);
    /* fold runs of the same id; the first shard's entry stays (a stable order
     * is not needed: every shard got the same fork, so the same kind/tunables) */
    size_t k = 0;
    for (size_t i = 0; i < m; i++) {
        if (k > 0 && all[k - 1].id == all[i].id) {
            mlt_branch_status_t *d = &all[k - 1];
            d->owned_bytes += all[i].owned_bytes;
            d->shared_bytes += all[i].shared_bytes;
            if (all[i].min_clock < d->min_clock)
                d->min_clock = all[i].min_clock;
            d->diverged = d->diverged || all[i].diverged;
            continue;
        }
        all[k++] = all[i];
    }
    *out = all;
    *n_out = (uint32_t)k;
    return 0;
}

/* ---- the exposition ------------------------------------------------------------ */

typedef struct sink {
    char *buf;
    size_t cap, len;
    bool full;
} sink_t;

static void put(sink_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(sink_t *s, const char *fmt, ...)
{
    static const char tail[] = "# truncated\n";
    if (s->full)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    if (s->len + len + sizeof tail > s->cap) {
        s->full = true;
        if (s->len + sizeof tail <= s->cap) {
            memcpy(s->buf + s->len, tail, sizeof tail);
            s->len += sizeof tail - 1;
        }
        return;
    }
    memcpy(s->buf + s->len, line, len + 1);
    s->len += len;
}

/* A sample value as Prometheus writes it: NaN, +Inf, -Inf or a number. */
static const char *num(char b[32], double v)
{
    if (isnan(v))
        return "NaN";
    if (isinf(v))
        return v > 0 ? "+Inf" : "-Inf";
    snprintf(b, 32, "%.9g", v);
    return b;
}

static void head(sink_t *s, const char *name, const char *type, const char *help)
{
    put(s, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One job gauge or counter: mltuner_job_<name>{job="..."} v */
static void job_metric(sink_t *s, const mlt_metrics_job_t *j, const char *name, const char *type,
                       const char *help, double v)
{
    char full[96], b[32];
    snprintf(full, sizeof full, "mltuner_job_%s", name);
    head(s, full, type, help);
    put(s, "%s{job=\"%s\"} %s\n", full, j->name, num(b, v));
}

static void job_metrics(sink_t *s, const mlt_metrics_job_t *j)
{
    /* job names are [A-Za-z0-9._-] (jobfile.c checks) and phases are fixed
     * words: no label value needs escaping */
    head(s, "mltuner_job_info", "gauge", "The job and its phase (value 1).");
    put(s, "mltuner_job_info{job=\"%s\",phase=\"%s\"} 1\n", j->name, j->phase);
    job_metric(s, j, "epoch", "gauge", "Epochs trained on the training lineage.", j->epoch);
    job_metric(s, j, "clock", "gauge", "Clocks the training branch has finished.",
               (double)j->clock);
    job_metric(s, j, "loss", "gauge", "Latest training loss (mean over workers).", j->loss);
    job_metric(s, j, "validation_accuracy", "gauge", "Latest validation accuracy.",
               j->val_accuracy);
    job_metric(s, j, "test_accuracy", "gauge", "Latest test accuracy.", j->test_accuracy);
    job_metric(s, j, "validation_rmse", "gauge", "Latest validation RMSE.", j->val_rmse);
    job_metric(s, j, "test_rmse", "gauge", "Latest test RMSE.", j->test_rmse);
    job_metric(s, j, "elapsed_seconds", "gauge", "Seconds since the job started.", j->elapsed);
    job_metric(s, j, "trials_total", "counter", "Trial branches run.", j->trials);
    job_metric(s, j, "tuning_seconds_total", "counter", "Seconds spent running trials.",
               j->tuning_seconds);
    job_metric(s, j, "training_seconds_total", "counter", "Seconds spent training.",
               j->training_seconds);
    job_metric(s, j, "workers", "gauge", "Workers the job needs.", j->workers);
    job_metric(s, j, "workers_joined", "gauge", "Workers that have joined.", j->workers_joined);
    char b[32];
    head(s, "mltuner_job_tunable", "gauge", "The training branch's current tunables.");
    put(s, "mltuner_job_tunable{job=\"%s\",name=\"lr\"} %s\n", j->name, num(b, j->lr));
    put(s, "mltuner_job_tunable{job=\"%s\",name=\"momentum\"} %s\n", j->name, num(b, j->momentum));
    put(s, "mltuner_job_tunable{job=\"%s\",name=\"batch_size\"} %s\n", j->name,
        num(b, j->batch_size ? (double)j->batch_size : NAN));
    put(s, "mltuner_job_tunable{job=\"%s\",name=\"staleness\"} %s\n", j->name,
        num(b, j->staleness >= 0 ? (double)j->staleness : NAN));
}

/* One per-shard family: every shard's sample of field(st[i]). */
#define SHARD_FAMILY(s, name, type, help, fmt_expr)                                \
    do {                                                                           \
        head(s, name, type, help);                                                 \
        for (int i_ = 0; i_ < n; i_++) {                                           \
            if (!up[i_])                                                           \
                continue;                                                          \
            const mlt_server_status_t *x = &st[i_];                                \
            put(s, "%s{shard=\"%u\"} %llu\n", name, first_shard + (uint32_t)i_,    \
                (unsigned long long)(fmt_expr));                                   \
        }                                                                          \
    } while (0)

size_t mlt_metrics_text(char *buf, size_t cap, const mlt_metrics_job_t *job,
                        const mlt_server_status_t *st, const bool *up, int n, uint32_t first_shard)
{
    sink_t s = {buf, cap, 0, cap == 0};
    if (cap > 0)
        buf[0] = 0;
    head(&s, "mltuner_up", "gauge", "1: this daemon answered.");
    put(&s, "mltuner_up 1\n");
    if (job && job->name)
        job_metrics(&s, job);
    head(&s, "mltuner_shard_up", "gauge", "1: the shard answered its status request.");
    for (int i = 0; i < n; i++)
        put(&s, "mltuner_shard_up{shard=\"%u\"} %d\n", first_shard + (uint32_t)i, up[i] ? 1 : 0);
    head(&s, "mltuner_shard_memory_bytes", "gauge",
         "Chunk memory: allocated now, potential (if every live chunk were private), limit.");
    for (int i = 0; i < n; i++) {
        if (!up[i])
            continue;
        uint32_t r = first_shard + (uint32_t)i;
        put(&s, "mltuner_shard_memory_bytes{shard=\"%u\",kind=\"allocated\"} %llu\n", r,
            (unsigned long long)st[i].memory_allocated);
        put(&s, "mltuner_shard_memory_bytes{shard=\"%u\",kind=\"potential\"} %llu\n", r,
            (unsigned long long)st[i].memory_potential);
        put(&s, "mltuner_shard_memory_bytes{shard=\"%u\",kind=\"limit\"} %llu\n", r,
            (unsigned long long)st[i].memory_limit);
    }
    SHARD_FAMILY(&s, "mltuner_shard_branches", "gauge", "Live branches.", x->n_branches);
    SHARD_FAMILY(&s, "mltuner_shard_parked_pulls", "gauge",
                 "Pulls waiting for the slowest worker's clock.", x->parked);
    SHARD_FAMILY(&s, "mltuner_shard_requests_total", "counter", "Messages served.", x->requests);
    SHARD_FAMILY(&s, "mltuner_shard_errors_total", "counter", "Requests refused with an error.",
                 x->errors);
    SHARD_FAMILY(&s, "mltuner_shard_pulls_total", "counter", "Pull replies sent.", x->pulls);
    SHARD_FAMILY(&s, "mltuner_shard_pushes_total", "counter", "Gradient pushes applied.",
                 x->pushes);
    SHARD_FAMILY(&s, "mltuner_shard_received_bytes_total", "counter",
                 "Payload bytes received (pushes, writes).", x->bytes_in);
    SHARD_FAMILY(&s, "mltuner_shard_sent_bytes_total", "counter",
                 "Payload bytes sent (pull replies).", x->bytes_out);
    return s.len;
}
