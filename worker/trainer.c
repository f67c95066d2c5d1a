/* trainer.c - see trainer.h. */
#include "worker/trainer.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/rng.h"
#include "worker/data.h"
#include "worker/model.h"

/* A set of samples in contiguous buffers: images or ratings. */
typedef struct set {
    uint32_t n;
    float *x;     /* n * feat (images) */
    uint8_t *y;
    uint32_t *u, *i; /* ratings */
    float *r;
} set_t;

struct mlt_trainer {
    bool mf;
    uint32_t feat;        /* features per sample (images) */
    uint32_t max_batch;
    set_t train;          /* the whole training set (after hold-out) */
    set_t val[2];         /* [0] validation, [1] test: this worker's share */
    set_t all[2];         /* the whole validation and test sets */
    mlt_sampler_t *sampler;
    uint32_t *idx;        /* batch indices */
    set_t batch;          /* gathered batch */
    mlt_model_t *model;
    uint32_t n_tables;
    float **params, **grads;
    uint64_t seed;
};

static void set_free(set_t *s)
{
    mlt_free(s->x);
    mlt_free(s->y);
    mlt_free(s->u);
    mlt_free(s->i);
    mlt_free(s->r);
    memset(s, 0, sizeof *s);
}

/* Allocates a set for n samples; 0 or -ENOMEM. */
static int set_alloc(set_t *s, uint32_t n, uint32_t feat, bool mf)
{
    memset(s, 0, sizeof *s);
    s->n = n;
    size_t m = n ? n : 1;
    if (mf) {
        s->u = mlt_try_malloc(m * sizeof *s->u);
        s->i = mlt_try_malloc(m * sizeof *s->i);
        s->r = mlt_try_malloc(m * sizeof *s->r);
        if (!s->u || !s->i || !s->r)
            goto oom;
    } else {
        s->x = mlt_try_aligned(m * feat * sizeof *s->x);
        s->y = mlt_try_malloc(m);
        if (!s->x || !s->y)
            goto oom;
    }
    return 0;
oom:
    set_free(s);
    return -ENOMEM;
}

/* Copies sample j of src into slot k of dst. */
static void set_copy(set_t *dst, uint32_t k, const set_t *src, uint32_t j, uint32_t feat, bool mf)
{
    if (mf) {
        dst->u[k] = src->u[j];
        dst->i[k] = src->i[j];
        dst->r[k] = src->r[j];
    } else {
        memcpy(dst->x + (size_t)k * feat, src->x + (size_t)j * feat, feat * sizeof(float));
        dst->y[k] = src->y[j];
    }
}

/* dst = the samples of src with index % n == w. */
static int set_share(set_t *dst, const set_t *src, uint32_t w, uint32_t n, uint32_t feat, bool mf)
{
    uint32_t cnt = src->n / n + (w < src->n % n);
    if (set_alloc(dst, cnt, feat, mf))
        return -ENOMEM;
    for (uint32_t j = w, k = 0; j < src->n; j += n, k++)
        set_copy(dst, k, src, j, feat, mf);
    return 0;
}

static int from_dataset(set_t *s, const mlt_dataset_t *d)
{
    uint32_t feat = d->rows * d->cols;
    if (set_alloc(s, d->n, feat, false))
        return -ENOMEM;
    memcpy(s->x, d->x, (size_t)d->n * feat * sizeof(float));
    memcpy(s->y, d->y, d->n);
    return 0;
}

static int from_ratings(set_t *s, const mlt_ratings_t *r)
{
    if (r->n > UINT32_MAX || set_alloc(s, (uint32_t)r->n, 0, true))
        return -ENOMEM;
    for (uint64_t k = 0; k < r->n; k++) {
        s->u[k] = r->v[k].user;
        s->i[k] = r->v[k].item;
        s->r[k] = r->v[k].r;
    }
    return 0;
}

/* Images: train (minus validation), validation, test. */
static int load_idx(mlt_trainer_t *t, const mlt_job_t *job, mlt_model_desc_t *d, char *err,
                    size_t errlen)
{
    mlt_dataset_t train = {0}, test = {0}, tr = {0}, val = {0};
    int rc = mlt_idx_load(job->data.train_images, job->data.train_labels, &train, err, errlen);
    if (rc)
        return rc;
    if ((rc = mlt_idx_load(job->data.test_images, job->data.test_labels, &test, err, errlen)))
        goto out;
    if (test.rows != train.rows || test.cols != train.cols) {
        snprintf(err, errlen, "%s: %ux%u images, but the training images are %ux%u",
                 job->data.test_images, test.rows, test.cols, train.rows, train.cols);
        rc = -EINVAL;
        goto out;
    }
    uint32_t hold = (uint32_t)job->data.validation;
    if (hold >= train.n) {
        snprintf(err, errlen, "data.validation = %u leaves no training samples of %u", hold,
                 train.n);
        rc = -EINVAL;
        goto out;
    }
    if ((rc = mlt_dataset_split(&train, hold, &tr, &val, (uint64_t)job->seed, err, errlen)))
        goto out;
    if (job->data.subset > 0 && (uint64_t)job->data.subset < tr.n)
        tr.n = (uint32_t)job->data.subset; /* the first N; the buffers stay as they are */
    t->feat = train.rows * train.cols;
    if ((rc = from_dataset(&t->train, &tr)) || (rc = from_dataset(&t->all[0], &val)) ||
        (rc = from_dataset(&t->all[1], &test)))
        goto out;
    d->in_c = 1;
    d->in_h = train.rows;
    d->in_w = train.cols;
    uint32_t nc = train.n_classes > test.n_classes ? train.n_classes : test.n_classes;
    d->n_classes = nc < 2 ? 2 : nc;
out:
    mlt_dataset_free(&train);
    mlt_dataset_free(&test);
    mlt_dataset_free(&tr);
    mlt_dataset_free(&val);
    return rc;
}

/* Ratings: train / validation / test by test_fraction, twice. */
static int load_ratings(mlt_trainer_t *t, const mlt_job_t *job, mlt_model_desc_t *d, char *err,
                        size_t errlen)
{
    mlt_ratings_t all = {0}, rest = {0}, test = {0}, tr = {0}, val = {0};
    int rc;
    if (job->data.format == MLT_DATA_SYNTHETIC) {
        rc = mlt_ratings_synth((uint32_t)job->data.synthetic.users,
                               (uint32_t)job->data.synthetic.items,
                               (uint32_t)job->data.synthetic.rank,
                               (uint64_t)job->data.synthetic.ratings,
                               (float)job->data.synthetic.noise, (uint64_t)job->seed, &all);
        if (rc)
            snprintf(err, errlen, "synthetic ratings: %s", strerror(-rc));
    } else {
        rc = mlt_ratings_load(job->data.ratings, &all, err, errlen);
    }
    if (rc)
        return rc;
    uint64_t seed = (uint64_t)job->seed;
    if ((rc = mlt_ratings_split(&all, job->data.test_fraction, mlt_rng_mix(seed, 1), &rest,
                                &test)) ||
        (rc = mlt_ratings_split(&rest, job->data.test_fraction, mlt_rng_mix(seed, 2), &tr,
                                &val))) {
        snprintf(err, errlen, "splitting the ratings: %s", strerror(-rc));
        goto out;
    }
    if (job->data.subset > 0 && (uint64_t)job->data.subset < tr.n)
        tr.n = (uint64_t)job->data.subset;
    if ((rc = from_ratings(&t->train, &tr)) || (rc = from_ratings(&t->all[0], &val)) ||
        (rc = from_ratings(&t->all[1], &test)))
        goto out;
    d->n_users = all.n_users;
    d->n_items = all.n_items;
    d->rank = (uint32_t)job->model.rank;
    d->l2 = (float)job->model.l2;
out:
    mlt_ratings_free(&all);
    mlt_ratings_free(&rest);
    mlt_ratings_free(&test);
    mlt_ratings_free(&tr);
    mlt_ratings_free(&val);
    return rc;
}

mlt_trainer_t *mlt_trainer_new(const mlt_job_t *job, uint32_t worker, uint32_t n_workers,
                               char *err, size_t errlen)
{
    mlt_trainer_t *t = mlt_calloc(1, sizeof *t);
    t->mf = job->model.type == MLT_MODEL_MF;
    t->seed = (uint64_t)job->seed;
    mlt_model_desc_t d;
    memset(&d, 0, sizeof d);
    d.type = job->model.type;
    d.hidden = job->model.layers;
    d.n_hidden = job->model.n_layers;
    d.cnn = job->model.cnn;
    d.n_cnn = job->model.n_cnn;
    /* the largest batch the tuner may choose */
    const mlt_tunable_t *bt = mlt_job_tunable(job, "batch_size");
    double maxb = bt ? bt->max : 128;
    t->max_batch = (uint32_t)(maxb > 512 ? maxb : 512);
    d.max_batch = t->max_batch;
    int rc = t->mf ? load_ratings(t, job, &d, err, errlen) : load_idx(t, job, &d, err, errlen);
    if (rc)
        goto fail;
    if (t->train.n < n_workers) {
        snprintf(err, errlen, "%u training samples for %u workers", t->train.n, n_workers);
        goto fail;
    }
    for (int k = 0; k < 2; k++)
        if (set_share(&t->val[k], &t->all[k], worker, n_workers, t->feat, t->mf))
            goto fail_oom;
    if (!(t->model = mlt_model_new(&d, err, errlen)))
        goto fail;
    t->n_tables = mlt_model_n_params(t->model);
    t->params = mlt_calloc(t->n_tables, sizeof *t->params);
    t->grads = mlt_calloc(t->n_tables, sizeof *t->grads);
    for (uint32_t i = 0; i < t->n_tables; i++) {
        size_t n = mlt_model_param_size(t->model, i) * sizeof(float);
        if (!(t->params[i] = mlt_try_aligned(n)) || !(t->grads[i] = mlt_try_aligned(n)))
            goto fail_oom;
        memset(t->params[i], 0, n);
        memset(t->grads[i], 0, n);
    }
    t->sampler = mlt_sampler_new(t->train.n, worker, n_workers, t->seed);
    t->idx = mlt_calloc(t->max_batch, sizeof *t->idx);
    if (!t->sampler || set_alloc(&t->batch, t->max_batch, t->feat, t->mf))
        goto fail_oom;
    return t;
fail_oom:
    snprintf(err, errlen, "out of memory loading the job's data and model");
fail:
    mlt_trainer_destroy(&t);
    return NULL;
}

void mlt_trainer_destroy(mlt_trainer_t **tp)
{
    if (!tp || !*tp)
        return;
    mlt_trainer_t *t = *tp;
    for (uint32_t i = 0; i < t->n_tables; i++) {
        mlt_free(t->params[i]);
        mlt_free(t->grads[i]);
    }
    mlt_free(t->params);
    mlt_free(t->grads);
    mlt_model_destroy(&t->model);
    mlt_sampler_destroy(&t->sampler);
    mlt_free(t->idx);
    set_free(&t->train);
    set_free(&t->batch);
    for (int k = 0; k < 2; k++) {
        set_free(&t->val[k]);
        set_free(&t->all[k]);
    }
    mlt_free(t);
    *tp = NULL;
}

uint32_t mlt_trainer_n_tables(const mlt_trainer_t *t)
{
    return t->n_tables;
}

const char *mlt_trainer_table_name(const mlt_trainer_t *t, uint32_t i)
{
    return mlt_model_param_name(t->model, i);
}

uint64_t mlt_trainer_table_size(const mlt_trainer_t *t, uint32_t i)
{
    return mlt_model_param_size(t->model, i);
}

float *const *mlt_trainer_params(mlt_trainer_t *t)
{
    return t->params;
}

float *const *mlt_trainer_grads(mlt_trainer_t *t)
{
    return t->grads;
}

uint32_t mlt_trainer_part_size(const mlt_trainer_t *t)
{
    return mlt_sampler_size(t->sampler);
}

double mlt_trainer_epoch(const mlt_trainer_t *t)
{
    return (double)mlt_sampler_epoch(t->sampler) + mlt_sampler_progress(t->sampler);
}

void mlt_trainer_seek(mlt_trainer_t *t, double epochs)
{
    uint64_t e = (uint64_t)floor(epochs);
    uint32_t size = mlt_sampler_size(t->sampler);
    uint32_t pos = (uint32_t)((epochs - (double)e) * size + 0.5);
    if (pos >= size) {
        e++;
        pos = 0;
    }
    mlt_sampler_seek(t->sampler, e, pos);
}

void mlt_trainer_init_params(mlt_trainer_t *t)
{
    mlt_model_init(t->model, t->params, t->seed);
}

int mlt_trainer_step(mlt_trainer_t *t, uint32_t batch, float *loss, uint32_t *correct)
{
    if (batch > t->max_batch)
        batch = t->max_batch;
    uint32_t n = mlt_sampler_next_batch(t->sampler, batch, t->idx);
    if (n == 0)
        n = mlt_sampler_next_batch(t->sampler, batch, t->idx);
    for (uint32_t k = 0; k < n; k++)
        set_copy(&t->batch, k, &t->train, t->idx[k], t->feat, t->mf);
    *correct = 0;
    if (t->mf)
        return mlt_model_step_mf(t->model, t->params, t->grads, t->batch.u, t->batch.i,
                                 t->batch.r, n, loss);
    return mlt_model_step(t->model, t->params, t->grads, t->batch.x, t->batch.y, n, loss, correct);
}

static int eval_set(mlt_trainer_t *t, const set_t *s, mlt_eval_t *out)
{
    memset(out, 0, sizeof *out);
    out->count = s->n;
    if (s->n == 0)
        return 0;
    if (t->mf) {
        double mse = 0;
        int rc = mlt_model_eval_mf(t->model, t->params, s->u, s->i, s->r, s->n, &mse);
        out->sq_error = mse * s->n;
        out->loss = out->sq_error;
        return rc;
    }
    double loss = 0;
    uint32_t correct = 0;
    int rc = mlt_model_eval(t->model, t->params, s->x, s->y, s->n, &loss, &correct);
    out->loss = loss * s->n;
    out->correct = correct;
    return rc;
}

int mlt_trainer_eval(mlt_trainer_t *t, int which, mlt_eval_t *out)
{
    return eval_set(t, &t->val[which ? 1 : 0], out);
}

int mlt_trainer_eval_all(mlt_trainer_t *t, int which, mlt_eval_t *out)
{
    return eval_set(t, &t->all[which ? 1 : 0], out);
}
