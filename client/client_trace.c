/* client_trace.c - libmltuner's timing of its data path (#15; see
 * client_int.h): with tracing on, every request asks its shard for the
 * shard's stamps (Header.trace) and each reply's are kept beside the
 * client's own. bench/ps takes the records (mlt_client__trace_take);
 * MLT_TRACE=FILE in the environment has them summed up into FILE when the
 * client is destroyed. The library prints nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/timeutil.h"
#include "client/client_int.h"

void mlt_client__trace(mlt_client_t *c, bool on)
{
    c->trace = on;
    if (!on) {
        mlt_free(c->trace_rec);
        c->trace_rec = NULL;
        c->n_trace = c->cap_trace = 0;
    }
}

size_t mlt_client__trace_take(mlt_client_t *c, mlt_trace_rec_t *out, size_t max)
{
    size_t n = c->n_trace < max ? c->n_trace : max;
    if (n)
        memcpy(out, c->trace_rec, n * sizeof *out);
    c->n_trace = 0;
    return n;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* The median of v[0..n) in us (v sorted here). */
static double median_us(uint64_t *v, size_t n)
{
    if (!n)
        return 0.0;
    qsort(v, n, sizeof *v, cmp_u64);
    return (double)v[n / 2] / 1e3;
}

void mlt_client__trace_summary(mlt_client_t *c)
{
    FILE *f = fopen(c->trace_path, "a");
    if (!f)
        return;
    static const struct {
        int type;
        const char *name;
    } kinds[] = {{MLT__MSG_TYPE__MSG_PULL, "pull"},
                 {MLT__MSG_TYPE__MSG_PUSH, "push"},
                 {MLT__MSG_TYPE__MSG_CLOCK, "clock"}};
    double secs = mlt_time_mono() - c->trace_t0;
    fprintf(f,
            "mltuner trace (worker %u, %.1f s): mean us per call: mlt_pull %.1f (%llu), mlt_push "
            "%.1f (%llu), mlt_clock %.1f (%llu); %.1f%% of the time in them\n",
            c->worker, secs, c->api_n[0] ? (double)c->api_ns[0] / (double)c->api_n[0] / 1e3 : 0,
            (unsigned long long)c->api_n[0],
            c->api_n[1] ? (double)c->api_ns[1] / (double)c->api_n[1] / 1e3 : 0,
            (unsigned long long)c->api_n[1],
            c->api_n[2] ? (double)c->api_ns[2] / (double)c->api_n[2] / 1e3 : 0,
            (unsigned long long)c->api_n[2],
            secs > 0 ? (double)(c->api_ns[0] + c->api_ns[1] + c->api_ns[2]) / 1e7 / secs : 0);
    uint64_t *v[4];
    for (int j = 0; j < 4; j++)
        v[j] = mlt_calloc(c->n_trace ? c->n_trace : 1, sizeof *v[j]);
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        size_t n = 0;
        for (size_t i = 0; i < c->n_trace; i++) {
            const mlt_trace_rec_t *r = &c->trace_rec[i];
            const uint64_t *t = r->shard;
            if (r->type != kinds[k].type || !t[MLT_TR_BEGIN] || t[MLT_TR_BEGIN] < r->sent ||
                t[MLT_TR_SENT] < t[MLT_TR_BEGIN] || r->got < t[MLT_TR_SENT])
                continue;
            v[0][n] = t[MLT_TR_BEGIN] - r->sent;
            v[1][n] = t[MLT_TR_SENT] - t[MLT_TR_BEGIN];
            v[2][n] = r->got - t[MLT_TR_SENT];
            v[3][n] = r->done - r->sent;
            n++;
        }
        if (n)
            fprintf(f,
                    "mltuner trace: %zu %s requests, median us: to the shard %.1f, at the shard "
                    "%.1f (parked included), back %.1f, whole %.1f\n",
                    n, kinds[k].name, median_us(v[0], n), median_us(v[1], n), median_us(v[2], n),
                    median_us(v[3], n));
    }
    for (int j = 0; j < 4; j++)
        mlt_free(v[j]);
    fclose(f);
}

void mlt_client__trace_keep(mlt_client_t *c, const pending_t *p, const mlt_header_t *h,
                            uint64_t got)
{
    if (h->n_trace_ns != MLT_TRACE_STAMPS || c->n_trace >= TRACE_KEEP)
        return;
    if (c->n_trace == c->cap_trace) {
        c->cap_trace = c->cap_trace ? c->cap_trace * 2 : 1024;
        c->trace_rec = mlt_realloc(c->trace_rec, c->cap_trace * sizeof *c->trace_rec);
    }
    mlt_trace_rec_t *r = &c->trace_rec[c->n_trace++];
    r->type = p->type;
    r->kind = (int)p->kind;
    r->sent = p->sent_ns;
    r->got = got;
    r->done = mlt_time_mono_ns();
    memcpy(r->shard, h->trace_ns, sizeof r->shard);
}
