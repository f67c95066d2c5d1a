/* tuner_ckpt.c - the tuner's state in a checkpoint: what the train / test /
 * re-tune loop needs to go on (tuner_int.h's tuner_t, its result so far and
 * the searched space, which a rollback may have narrowed). Taken between
 * rounds of that loop, where no trial and no searcher is alive, so there is
 * no searcher state to keep. Values are bounded on load: a state that is not
 * this job's (another space) or is damaged is refused whole. */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/errtext.h"
#include "tuner/tuner_int.h"

#define STATE_MAGIC   0x4d4c5453u /* "MLTS" */
#define STATE_VERSION 2u

typedef struct obuf {
    unsigned char *p;
    size_t n, cap;
} obuf_t;

static void put(obuf_t *o, const void *v, size_t len)
{
    if (o->n + len > o->cap) {
        o->cap = (o->n + len) * 2;
        o->p = mlt_realloc(o->p, o->cap);
    }
    memcpy(o->p + o->n, v, len);
    o->n += len;
}
static void put_u32(obuf_t *o, uint32_t v)
{
    put(o, &v, sizeof v);
}
static void put_i64(obuf_t *o, int64_t v)
{
    put(o, &v, sizeof v);
}
static void put_f64(obuf_t *o, double v)
{
    put(o, &v, sizeof v);
}

typedef struct ibuf {
    const unsigned char *p;
    size_t n, pos;
    bool bad;
} ibuf_t;

static void get(ibuf_t *in, void *v, size_t len)
{
    if (in->bad || len > in->n - in->pos) {
        in->bad = true;
        memset(v, 0, len);
        return;
    }
    memcpy(v, in->p + in->pos, len);
    in->pos += len;
}
static uint32_t get_u32(ibuf_t *in)
{
    uint32_t v;
    get(in, &v, sizeof v);
    return v;
}
static int64_t get_i64(ibuf_t *in)
{
    int64_t v;
    get(in, &v, sizeof v);
    return v;
}
static double get_f64(ibuf_t *in)
{
    double v;
    get(in, &v, sizeof v);
    return v;
}

static void put_setting(obuf_t *o, const mlt_setting_t *s)
{
    for (uint32_t i = 0; i < MLT_JOB_MAX_TUNABLES; i++)
        put_f64(o, s->v[i]);
}
static void get_setting(ibuf_t *in, mlt_setting_t *s)
{
    for (uint32_t i = 0; i < MLT_JOB_MAX_TUNABLES; i++)
        s->v[i] = get_f64(in);
}

void *mlt_tuner__state_save(const tuner_t *t, size_t *len)
{
    const mlt_tuner_result_t *r = t->res;
    obuf_t o = {0};
    put_u32(&o, STATE_MAGIC);
    put_u32(&o, STATE_VERSION);
    put_u32(&o, t->sp.d);
    for (uint32_t k = 0; k < t->sp.d; k++) {
        put_u32(&o, t->sp.dim_of[k]);
        put_f64(&o, t->sp.dims[k].min);
        put_f64(&o, t->sp.dims[k].max);
        put_f64(&o, t->sp.dims[k].def);
    }
    put_u32(&o, t->next_id);
    put_f64(&o, t->start_loss);
    put_f64(&o, t->trial_time);
    put_u32(&o, t->n_rate);
    for (uint32_t i = 0; i < t->n_rate; i++) {
        put_f64(&o, t->rate[i].batch);
        put_f64(&o, t->rate[i].seconds);
        put_f64(&o, t->rate[i].clocks);
    }
    put_u32(&o, t->train);
    put_setting(&o, &t->train_s);
    put_i64(&o, t->train_clock);
    put_f64(&o, t->cursor);
    put_f64(&o, t->epoch);
    put_f64(&o, t->last_loss);
    put_u32(&o, t->good);
    put_f64(&o, t->good_cursor);
    put_f64(&o, t->good_epoch);
    put_f64(&o, t->good_loss);
    put_f64(&o, t->good_val);
    put_f64(&o, t->good_test);
    put_u32(&o, (uint32_t)t->rollbacks);
    put_u32(&o, (uint32_t)t->regressions);
    put_u32(&o, (uint32_t)t->no_gain);
    put_u32(&o, (uint32_t)t->retunes_without_gain);
    put_u32(&o, t->converged);
    /* a test interval in progress: its clocks, and the losses of those run */
    put_i64(&o, t->iv_loss ? t->iv_clocks : 0);
    put_i64(&o, t->iv_loss ? t->iv_done : 0);
    for (int64_t i = 0; t->iv_loss && i < t->iv_done; i++)
        put_f64(&o, t->iv_loss[i]);
    /* the result so far: the overhead accounts, the searches, the best */
    put_f64(&o, r->val);
    put_f64(&o, r->test);
    put_f64(&o, r->best_val);
    put_f64(&o, r->trial_seconds);
    put_f64(&o, r->train_seconds);
    put_u32(&o, r->trials);
    put_u32(&o, r->searches);
    put_u32(&o, r->learned.have);
    put_setting(&o, &r->learned.setting);
    put_f64(&o, r->learned.lr_star);
    *len = o.n;
    return o.p;
}

static bool counter_ok(uint32_t v)
{
    return v < 1000000u;
}

int mlt_tuner__state_load(tuner_t *t, const void *buf, size_t len, char *why, size_t whylen)
{
    ibuf_t in = {.p = buf, .n = len};
    mlt_tuner_result_t *r = t->res;
    if (get_u32(&in) != STATE_MAGIC || get_u32(&in) != STATE_VERSION)
        return mlt_errf(-EINVAL, why, whylen, "not a tuner state of this version");
    uint32_t d = get_u32(&in);
    if (d != t->sp.d)
        return mlt_errf(-EINVAL, why, whylen, "it tunes %u tunables, the job %u", d, t->sp.d);
    for (uint32_t k = 0; k < d; k++) {
        uint32_t of = get_u32(&in);
        double mn = get_f64(&in), mx = get_f64(&in), df = get_f64(&in);
        mlt_tunable_t *dm = &t->sp.dims[k];
        /* a rollback only narrows a range: anything else is not this job's */
        if (of != t->sp.dim_of[k] || !(mn >= dm->min && mx <= dm->max && mn <= mx) ||
            !(df >= mn && df <= mx))
            return mlt_errf(-EINVAL, why, whylen, "tunable %s's range [%g, %g] is not the job's",
                            dm->name ? dm->name : "?", mn, mx);
        dm->min = mn;
        dm->max = mx;
        dm->def = df;
    }
    t->next_id = get_u32(&in);
    t->start_loss = get_f64(&in);
    t->trial_time = get_f64(&in);
    t->n_rate = get_u32(&in);
    if (t->n_rate > sizeof t->rate / sizeof t->rate[0])
        return mlt_errf(-EINVAL, why, whylen, "%u speed records", t->n_rate);
    for (uint32_t i = 0; i < t->n_rate; i++) {
        t->rate[i].batch = get_f64(&in);
        t->rate[i].seconds = get_f64(&in);
        t->rate[i].clocks = get_f64(&in);
    }
    t->train = get_u32(&in);
    get_setting(&in, &t->train_s);
    t->train_clock = get_i64(&in);
    t->cursor = get_f64(&in);
    t->epoch = get_f64(&in);
    t->last_loss = get_f64(&in);
    t->good = get_u32(&in);
    t->good_cursor = get_f64(&in);
    t->good_epoch = get_f64(&in);
    t->good_loss = get_f64(&in);
    t->good_val = get_f64(&in);
    t->good_test = get_f64(&in);
    uint32_t rb = get_u32(&in), rg = get_u32(&in), ng = get_u32(&in), rw = get_u32(&in);
    uint32_t cv = get_u32(&in);
    int64_t ivc = get_i64(&in), ivd = get_i64(&in);
    if (in.bad || ivc < 0 || ivc > MLT_TUNER_MAX_IV_CLOCKS || ivd < 0 || ivd > ivc ||
        (size_t)ivd > (in.n - in.pos) / sizeof(double))
        return mlt_errf(-EINVAL, why, whylen,
                        "its test interval in progress (%lld of %lld "
                        "clocks) is out of range",
                        (long long)ivd, (long long)ivc);
    double *ivl = ivc ? mlt_calloc((size_t)ivc, sizeof *ivl) : NULL;
    for (int64_t i = 0; i < ivd; i++)
        ivl[i] = get_f64(&in);
    r->val = get_f64(&in);
    r->test = get_f64(&in);
    r->best_val = get_f64(&in);
    r->trial_seconds = get_f64(&in);
    r->train_seconds = get_f64(&in);
    r->trials = get_u32(&in);
    r->searches = get_u32(&in);
    uint32_t have = get_u32(&in);
    get_setting(&in, &r->learned.setting);
    r->learned.lr_star = get_f64(&in);
    if (in.bad || in.pos != in.n) {
        mlt_free(ivl);
        return mlt_errf(-EINVAL, why, whylen, "%zu bytes where %zu were read", len, in.pos);
    }
    if (t->train == 0 || t->train >= t->next_id || t->good >= t->next_id ||
        t->next_id > 0x7fffffffu || t->train_clock < 0 || !isfinite(t->cursor) ||
        !isfinite(t->epoch) || t->epoch < 0 || !counter_ok(rb) || !counter_ok(rg) ||
        !counter_ok(ng) || !counter_ok(rw) || cv > 1 || have > 1 || !counter_ok(r->trials) ||
        !counter_ok(r->searches) || !(r->trial_seconds >= 0) || !(r->train_seconds >= 0)) {
        mlt_free(ivl);
        return mlt_errf(-EINVAL, why, whylen,
                        "a value is out of range (branch %u of %u, clock "
                        "%lld, epoch %g)",
                        t->train, t->next_id, (long long)t->train_clock, t->epoch);
    }
    t->iv_loss = ivl;
    t->iv_clocks = ivc;
    t->iv_done = ivd;
    t->rollbacks = (int)rb;
    t->regressions = (int)rg;
    t->no_gain = (int)ng;
    t->retunes_without_gain = (int)rw;
    t->converged = cv;
    r->learned.have = have;
    return 0;
}
