/* trainer.c - see trainer.h. */
#include "worker/trainer.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/rng.h"
#include "kernels/gpu.h"
#include "worker/data.h"
#include "worker/model.h"
#include "worker/model_gpu.h"

/* A set of samples in contiguous buffers: images or ratings. */
typedef struct set {
    uint32_t n;
    float *x;     /* n * feat (images) */
    uint8_t *y;
    uint32_t *u, *i; /* ratings */
    float *r;
} set_t;

typedef struct gpu gpu_t; /* the CUDA backend's state, below */

struct mlt_trainer {
    bool mf;
    uint32_t feat;        /* features per sample (images) */
    uint32_t max_batch;
    set_t train;          /* the whole training set (after hold-out) */
    set_t val[2];         /* [0] validation, [1] test: this worker's share */
    set_t all[2];         /* the whole validation and test sets */
    mlt_sampler_t *sampler;
    uint32_t share, n_shares; /* the sampler's and val[]'s share of the sets */
    uint32_t *idx;        /* batch indices */
    set_t batch;          /* gathered batch */
    mlt_model_t *model;   /* the CPU backend's model, NULL on the GPU */
    uint32_t n_tables;
    float **params, **grads; /* host copies (pinned on the GPU backend) */
    const float *const *use_params; /* the next step's tables (mlt_trainer_use_tables) */
    float *const *use_grads;
    uint64_t seed;
    char backend[320];    /* "cpu", "cuda: NVIDIA H100 ... (device 0)" */
    mlt_grad_ready_fn ready; /* mlt_trainer_on_grad */
    void *ready_ctx;
    gpu_t *gpu;           /* the CUDA backend, NULL on the CPU */
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

/* ---- the CUDA backend ----
 * The data sets live on the device; a step uploads the batch's indices and
 * the parameters (from pinned host buffers, where the client pulls them),
 * gathers the batch on the device, runs the model and downloads the
 * gradients (into pinned buffers, which the client pushes) and the loss.
 * That whole sequence is captured once per batch size as a CUDA graph and
 * replayed. */

/* Device copy of a set. */
typedef struct dset {
    uint32_t n;
    float *x;
    uint8_t *y;
    uint32_t *u, *i;
    float *r;
} dset_t;

enum { MAX_GRAPHS = 24 }; /* batch sizes with a captured step */

typedef struct graph_slot {
    uint32_t batch;
    mlt_gpu_graph_t *graph;
} graph_slot_t;

struct gpu {
    mlt_gpu_t *g;
    mlt_gpu_model_t *m;
    dset_t train, val[2], all[2];
    dset_t batch;         /* the gathered batch */
    uint32_t *d_idx;      /* the batch's indices on the device */
    double *h_loss;       /* pinned: the step's loss sum */
    uint32_t *h_correct;  /* pinned: its right answers */
    graph_slot_t graphs[MAX_GRAPHS];
    uint32_t n_graphs;
    bool no_graphs;       /* capture failed once: steps run uncaptured */
    uint32_t *order;      /* tables in the order their gradients are downloaded */
    uint32_t n_order;     /* how many of the step being issued so far */
    uint32_t n_marked;    /* order[k] for k < n_marked lands at mark k */
    int issue_rc;         /* the first failure of gpu_on_grad while issuing */
    uint64_t plan_gen;    /* mlt_gpu_model_plan_gen when the graphs were captured */
};

static void dset_free(mlt_gpu_t *g, dset_t *d)
{
    mlt_gpu_free(g, d->x);
    mlt_gpu_free(g, d->y);
    mlt_gpu_free(g, d->u);
    mlt_gpu_free(g, d->i);
    mlt_gpu_free(g, d->r);
    memset(d, 0, sizeof *d);
}

/* Device buffers for n samples; with src, its contents uploaded. 0 or -errno. */
static int dset_make(mlt_gpu_t *g, dset_t *d, const set_t *src, uint32_t n, uint32_t feat, bool mf)
{
    memset(d, 0, sizeof *d);
    d->n = n;
    size_t m = n ? n : 1;
    int rc = 0;
    if (mf) {
        d->u = mlt_gpu_malloc(g, m * sizeof *d->u);
        d->i = mlt_gpu_malloc(g, m * sizeof *d->i);
        d->r = mlt_gpu_malloc(g, m * sizeof *d->r);
        if (!d->u || !d->i || !d->r)
            return -ENOMEM;
        if (src && n)
            if ((rc = mlt_gpu_upload(g, d->u, src->u, n * sizeof *d->u)) ||
                (rc = mlt_gpu_upload(g, d->i, src->i, n * sizeof *d->i)) ||
                (rc = mlt_gpu_upload(g, d->r, src->r, n * sizeof *d->r)))
                return rc;
    } else {
        d->x = mlt_gpu_malloc(g, m * feat * sizeof *d->x);
        d->y = mlt_gpu_malloc(g, m);
        if (!d->x || !d->y)
            return -ENOMEM;
        if (src && n)
            if ((rc = mlt_gpu_upload(g, d->x, src->x, (size_t)n * feat * sizeof *d->x)) ||
                (rc = mlt_gpu_upload(g, d->y, src->y, n)))
                return rc;
    }
    return mlt_gpu_sync(g); /* the sources are pageable host memory */
}

static void gpu_destroy(gpu_t **pp)
{
    gpu_t *p = *pp;
    if (p == NULL)
        return;
    mlt_gpu_sync(p->g);
    for (uint32_t k = 0; k < p->n_graphs; k++)
        mlt_gpu_graph_destroy(&p->graphs[k].graph);
    mlt_gpu_model_destroy(&p->m);
    dset_free(p->g, &p->train);
    dset_free(p->g, &p->batch);
    for (int k = 0; k < 2; k++) {
        dset_free(p->g, &p->val[k]);
        dset_free(p->g, &p->all[k]);
    }
    mlt_gpu_free(p->g, p->d_idx);
    mlt_free(p->order);
    mlt_gpu_host_free(p->g, p->h_loss);
    mlt_gpu_host_free(p->g, p->h_correct);
    mlt_gpu_destroy(&p->g);
    mlt_free(p);
    *pp = NULL;
}

/* The model's hook while a step is issued: tensor i's gradient ops are
 * issued, so its download follows, then a mark the host waits on
 * (gpu_step) before it hands the gradient to the caller. */
static void gpu_on_grad(void *ctx, uint32_t i)
{
    mlt_trainer_t *t = ctx;
    gpu_t *p = t->gpu;
    const mlt_model_t *plan = mlt_gpu_model_plan(p->m);
    int rc = mlt_gpu_download(p->g, t->grads[i], mlt_gpu_model_grads(p->m)[i],
                              mlt_model_param_size(plan, i) * sizeof(float));
    if (!rc && p->n_marked == p->n_order && p->n_marked < MLT_GPU_MARKS) {
        rc = mlt_gpu_mark(p->g, p->n_marked);
        if (!rc)
            p->n_marked++;
    }
    if (p->n_order < t->n_tables)
        p->order[p->n_order++] = i;
    if (rc && !p->issue_rc)
        p->issue_rc = rc;
}

/* The CPU model's hook: the gradient is in t->grads[i] already. */
static void cpu_on_grad(void *ctx, uint32_t i)
{
    mlt_trainer_t *t = ctx;
    if (t->ready)
        t->ready(t->ready_ctx, i);
}

/* The GPU could not take the job (what: why): with backend cuda an error,
 * with auto the CPU takes it, saying why. */
static int gpu_give_up(mlt_trainer_t *t, const mlt_job_t *job, int dev, const char *what,
                       const char *why, char *err, size_t errlen)
{
    if (job->backend == MLT_BACKEND_CUDA) {
        snprintf(err, errlen, "%s on GPU %d: %s", what, dev, why);
        return -1;
    }
    snprintf(t->backend, sizeof t->backend, "cpu (backend auto: %s on GPU %d: %s)", what, dev,
             why);
    gpu_destroy(&t->gpu);
    return 0;
}

/* Chooses the backend of job->backend: t->gpu set up (context, model, data
 * on the device) for CUDA, left NULL for the CPU; t->backend says which and,
 * for auto without a GPU, why. 0, or -1 with err set (cuda asked for and not
 * available, or the device failed). */
static int gpu_setup(mlt_trainer_t *t, const mlt_job_t *job, const mlt_model_desc_t *d,
                     uint32_t worker, char *err, size_t errlen)
{
    char why[160];
    int n = job->backend == MLT_BACKEND_CPU ? 0 : mlt_gpu_probe(why, sizeof why);
    if (job->backend == MLT_BACKEND_CPU) {
        snprintf(t->backend, sizeof t->backend, "cpu");
        return 0;
    }
    if (n <= 0) {
        if (job->backend == MLT_BACKEND_CUDA) {
            snprintf(err, errlen, "backend = \"cuda\", but there is no GPU: %s", why);
            return -1;
        }
        snprintf(t->backend, sizeof t->backend, "cpu (backend auto: %s)", why);
        return 0;
    }
    int dev = (int)(worker % (uint32_t)n);
    gpu_t *p = mlt_calloc(1, sizeof *p);
    char e[256];
    if (!(p->g = mlt_gpu_new(dev, e, sizeof e))) {
        mlt_free(p);
        if (job->backend == MLT_BACKEND_CUDA) {
            snprintf(err, errlen, "backend = \"cuda\": GPU %d: %s", dev, e);
            return -1;
        }
        snprintf(t->backend, sizeof t->backend, "cpu (backend auto: GPU %d: %s)", dev, e);
        return 0;
    }
    t->gpu = p;
    /* TF32 convolutions, as PyTorch's default: the job trains, it is not a test */
    if (!(p->m = mlt_gpu_model_new(p->g, d, true, e, sizeof e)))
        return gpu_give_up(t, job, dev, "the model", e, err, errlen);
    mlt_gpu_model_on_grad(p->m, gpu_on_grad, t);
    p->order = mlt_calloc(mlt_model_n_params(mlt_gpu_model_plan(p->m)) + 1, sizeof *p->order);
    int rc = dset_make(p->g, &p->train, &t->train, t->train.n, t->feat, t->mf);
    for (int k = 0; k < 2 && !rc; k++)
        if (!(rc = dset_make(p->g, &p->val[k], &t->val[k], t->val[k].n, t->feat, t->mf)))
            rc = dset_make(p->g, &p->all[k], &t->all[k], t->all[k].n, t->feat, t->mf);
    if (!rc)
        rc = dset_make(p->g, &p->batch, NULL, t->max_batch, t->feat, t->mf);
    if (!rc && (!(p->d_idx = mlt_gpu_malloc(p->g, t->max_batch * sizeof *p->d_idx)) ||
                !(p->h_loss = mlt_gpu_host_malloc(p->g, sizeof *p->h_loss)) ||
                !(p->h_correct = mlt_gpu_host_malloc(p->g, sizeof *p->h_correct))))
        rc = -ENOMEM;
    if (rc)
        return gpu_give_up(t, job, dev, "the job's data", mlt_gpu_error(p->g), err, errlen);
    snprintf(t->backend, sizeof t->backend, "cuda: %s (device %d, compute %d.%d)",
             mlt_gpu_device_name(p->g), dev, mlt_gpu_device_cc(p->g) / 10,
             mlt_gpu_device_cc(p->g) % 10);
    return 0;
}

/* Issues one step on the stream: parameters and indices up, gather, model,
 * gradients and loss down. Capturable. */
static int gpu_issue_step(mlt_trainer_t *t, uint32_t n)
{
    gpu_t *p = t->gpu;
    float *const *dp = mlt_gpu_model_params(p->m);
    const mlt_model_t *plan = mlt_gpu_model_plan(p->m);
    int rc = 0;
    for (uint32_t i = 0; i < t->n_tables && !rc; i++)
        rc = mlt_gpu_upload(p->g, dp[i], t->params[i], mlt_model_param_size(plan, i) * sizeof(float));
    if (!rc)
        rc = mlt_gpu_upload(p->g, p->d_idx, t->idx, n * sizeof *t->idx);
    if (rc)
        return rc;
    p->n_order = p->n_marked = 0; /* the model's hook downloads each gradient: gpu_on_grad */
    p->issue_rc = 0;
    if (t->mf) {
        if ((rc = mlt_gpu_gather4(p->g, p->train.u, 1, p->d_idx, n, p->batch.u)) ||
            (rc = mlt_gpu_gather4(p->g, p->train.i, 1, p->d_idx, n, p->batch.i)) ||
            (rc = mlt_gpu_gather4(p->g, p->train.r, 1, p->d_idx, n, p->batch.r)) ||
            (rc = mlt_gpu_model_step_mf(p->m, p->batch.u, p->batch.i, p->batch.r, n)))
            return rc;
    } else {
        if ((rc = mlt_gpu_gather4(p->g, p->train.x, t->feat, p->d_idx, n, p->batch.x)) ||
            (rc = mlt_gpu_gather1(p->g, p->train.y, 1, p->d_idx, n, p->batch.y)) ||
            (rc = mlt_gpu_model_step(p->m, p->batch.x, p->batch.y, n)))
            return rc;
        rc = mlt_gpu_download(p->g, p->h_correct, mlt_gpu_model_d_correct(p->m),
                              sizeof *p->h_correct);
    }
    if (!rc)
        rc = p->issue_rc;
    if (!rc)
        rc = mlt_gpu_download(p->g, p->h_loss, mlt_gpu_model_d_loss(p->m), sizeof *p->h_loss);
    return rc;
}

/* The captured step for n samples, or NULL: the step then runs uncaptured.
 * The first step of a batch size runs uncaptured (cuBLAS and cuDNN do their
 * one-time set-up outside a capture), the second captures the graph that
 * every later one replays. Capture failing once turns graphs off. */
static mlt_gpu_graph_t *gpu_graph(mlt_trainer_t *t, uint32_t n)
{
    gpu_t *p = t->gpu;
    graph_slot_t *sl = NULL;
    for (uint32_t k = 0; k < p->n_graphs && !sl; k++)
        if (p->graphs[k].batch == n)
            sl = &p->graphs[k];
    if (sl && sl->graph)
        return sl->graph;
    if (p->no_graphs)
        return NULL;
    if (!sl) { /* the first step of this size */
        if (p->n_graphs < MAX_GRAPHS)
            p->graphs[p->n_graphs++] = (graph_slot_t){.batch = n, .graph = NULL};
        return NULL;
    }
    if (mlt_gpu_capture_begin(p->g) != 0) {
        p->no_graphs = true;
        return NULL;
    }
    int rc = gpu_issue_step(t, n);
    if (mlt_gpu_capture_end(p->g, &sl->graph) != 0 || rc != 0) {
        mlt_gpu_graph_destroy(&sl->graph);
        p->no_graphs = true;
        return NULL;
    }
    return sl->graph;
}

static int gpu_step(mlt_trainer_t *t, uint32_t n, float *loss, uint32_t *correct)
{
    gpu_t *p = t->gpu;
    int rc = mlt_gpu_model_prepare(p->m, n); /* plans first: not while capturing */
    if (rc)
        return rc;
    if (mlt_gpu_model_plan_gen(p->m) != p->plan_gen) { /* a plan a graph uses was freed */
        mlt_gpu_sync(p->g);
        for (uint32_t k = 0; k < p->n_graphs; k++)
            mlt_gpu_graph_destroy(&p->graphs[k].graph);
        p->n_graphs = 0;
        p->plan_gen = mlt_gpu_model_plan_gen(p->m);
    }
    mlt_gpu_graph_t *gr = gpu_graph(t, n);
    rc = gr ? mlt_gpu_graph_launch(p->g, gr) : gpu_issue_step(t, n);
    /* each gradient to the caller as it lands, the last layer's first, while
     * the device still computes the earlier ones */
    for (uint32_t k = 0; k < p->n_marked && !rc; k++)
        if (!(rc = mlt_gpu_wait_mark(p->g, k)) && t->ready)
            t->ready(t->ready_ctx, p->order[k]);
    if (!rc)
        rc = mlt_gpu_sync(p->g);
    if (rc)
        return rc;
    for (uint32_t k = p->n_marked; k < p->n_order && t->ready; k++)
        t->ready(t->ready_ctx, p->order[k]);
    *loss = (float)(*p->h_loss / n);
    *correct = t->mf ? 0 : *p->h_correct;
    return 0;
}

/* Evaluation on the device set d with the host parameters. */
static int gpu_eval(mlt_trainer_t *t, const dset_t *d, mlt_eval_t *out)
{
    gpu_t *p = t->gpu;
    float *const *dp = mlt_gpu_model_params(p->m);
    const mlt_model_t *plan = mlt_gpu_model_plan(p->m);
    int rc = 0;
    for (uint32_t i = 0; i < t->n_tables && !rc; i++)
        rc = mlt_gpu_upload(p->g, dp[i], t->params[i], mlt_model_param_size(plan, i) * sizeof(float));
    if (rc)
        return rc;
    if (t->mf) {
        double mse = 0;
        rc = mlt_gpu_model_eval_mf(p->m, d->u, d->i, d->r, d->n, &mse);
        out->sq_error = mse * d->n;
        out->loss = out->sq_error;
        return rc;
    }
    double loss = 0;
    uint32_t correct = 0;
    rc = mlt_gpu_model_eval(p->m, d->x, d->y, d->n, &loss, &correct);
    out->loss = loss * d->n;
    out->correct = correct;
    return rc;
}

/* The model's plan: the CPU model, or the GPU model's twin. */
static const mlt_model_t *plan_of(const mlt_trainer_t *t)
{
    return t->gpu ? mlt_gpu_model_plan(t->gpu->m) : t->model;
}

/* Host buffer of n bytes for a parameter or gradient table: pinned on the GPU. */
static void *host_alloc(mlt_trainer_t *t, size_t n)
{
    return t->gpu ? mlt_gpu_host_malloc(t->gpu->g, n) : mlt_try_aligned(n);
}

static void host_free(mlt_trainer_t *t, void *h)
{
    if (t->gpu)
        mlt_gpu_host_free(t->gpu->g, h);
    else
        mlt_free(h);
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
    if (gpu_setup(t, job, &d, worker, err, errlen))
        goto fail;
    if (!t->gpu && !(t->model = mlt_model_new(&d, err, errlen)))
        goto fail;
    if (t->model)
        mlt_model_on_grad(t->model, cpu_on_grad, t);
    t->n_tables = mlt_model_n_params(plan_of(t));
    t->params = mlt_calloc(t->n_tables, sizeof *t->params);
    t->grads = mlt_calloc(t->n_tables, sizeof *t->grads);
    for (uint32_t i = 0; i < t->n_tables; i++) {
        size_t n = mlt_model_param_size(plan_of(t), i) * sizeof(float);
        if (!(t->params[i] = host_alloc(t, n)) || !(t->grads[i] = host_alloc(t, n)))
            goto fail_oom;
        memset(t->params[i], 0, n);
        memset(t->grads[i], 0, n);
    }
    t->sampler = mlt_sampler_new(t->train.n, worker, n_workers, t->seed);
    t->share = worker;
    t->n_shares = n_workers;
    t->idx = host_alloc(t, t->max_batch * sizeof *t->idx); /* pinned: the step uploads it */
    if (!t->sampler || !t->idx || set_alloc(&t->batch, t->max_batch, t->feat, t->mf))
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
        if (t->params)
            host_free(t, t->params[i]);
        if (t->grads)
            host_free(t, t->grads[i]);
    }
    mlt_free(t->params);
    mlt_free(t->grads);
    if (t->idx)
        host_free(t, t->idx);
    mlt_model_destroy(&t->model);
    gpu_destroy(&t->gpu);
    mlt_sampler_destroy(&t->sampler);
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
    return mlt_model_param_name(plan_of(t), i);
}

uint64_t mlt_trainer_table_size(const mlt_trainer_t *t, uint32_t i)
{
    return mlt_model_param_size(plan_of(t), i);
}

float *const *mlt_trainer_params(mlt_trainer_t *t)
{
    return t->params;
}

bool mlt_trainer_use_tables(mlt_trainer_t *t, const float *const *params, float *const *grads)
{
    if (t->gpu)
        return false;
    t->use_params = params;
    t->use_grads = grads;
    return true;
}

float *const *mlt_trainer_grads(mlt_trainer_t *t)
{
    return t->grads;
}

uint32_t mlt_trainer_part_size(const mlt_trainer_t *t)
{
    return mlt_sampler_size(t->sampler);
}

uint32_t mlt_trainer_train_total(const mlt_trainer_t *t)
{
    return t->train.n;
}

void mlt_trainer_share(const mlt_trainer_t *t, uint32_t *share, uint32_t *n_shares)
{
    *share = t->share;
    *n_shares = t->n_shares;
}

int mlt_trainer_set_share(mlt_trainer_t *t, uint32_t share, uint32_t n_shares, char *err,
                          size_t errlen)
{
    if (share == t->share && n_shares == t->n_shares)
        return 0;
    if (n_shares == 0 || share >= n_shares || n_shares > t->train.n) {
        snprintf(err, errlen, "data share %u of %u: not a share of %u training samples", share,
                 n_shares, t->train.n);
        return -EINVAL;
    }
    /* everything new is made before anything old is freed */
    set_t val[2] = {{0}, {0}};
    dset_t dval[2] = {{0}, {0}};
    mlt_sampler_t *smp = mlt_sampler_new(t->train.n, share, n_shares, t->seed);
    int rc = smp ? 0 : -ENOMEM;
    for (int k = 0; k < 2 && !rc; k++)
        rc = set_share(&val[k], &t->all[k], share, n_shares, t->feat, t->mf);
    for (int k = 0; k < 2 && !rc && t->gpu; k++)
        rc = dset_make(t->gpu->g, &dval[k], &val[k], val[k].n, t->feat, t->mf);
    if (rc) {
        for (int k = 0; k < 2; k++) {
            set_free(&val[k]);
            if (t->gpu)
                dset_free(t->gpu->g, &dval[k]);
        }
        mlt_sampler_destroy(&smp);
        snprintf(err, errlen, "data share %u of %u: %s", share, n_shares,
                 rc == -ENOMEM ? "out of memory" : "cannot upload it to the GPU");
        return rc;
    }
    double epochs = mlt_trainer_epoch(t);
    mlt_sampler_destroy(&t->sampler);
    t->sampler = smp;
    for (int k = 0; k < 2; k++) {
        set_free(&t->val[k]);
        t->val[k] = val[k];
        if (t->gpu) {
            dset_free(t->gpu->g, &t->gpu->val[k]);
            t->gpu->val[k] = dval[k];
        }
    }
    t->share = share;
    t->n_shares = n_shares;
    mlt_trainer_seek(t, epochs);
    return 1;
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
    mlt_model_init(plan_of(t), t->params, t->seed);
}

int mlt_trainer_step(mlt_trainer_t *t, uint32_t batch, float *loss, uint32_t *correct)
{
    if (batch > t->max_batch)
        batch = t->max_batch;
    uint32_t n = mlt_sampler_next_batch(t->sampler, batch, t->idx);
    if (n == 0)
        n = mlt_sampler_next_batch(t->sampler, batch, t->idx);
    *correct = 0;
    if (t->gpu)
        return gpu_step(t, n, loss, correct); /* the batch is gathered on the device */
    for (uint32_t k = 0; k < n; k++)
        set_copy(&t->batch, k, &t->train, t->idx[k], t->feat, t->mf);
    /* the model only reads the parameters: the client's read-only copy will do */
    float *const *params = t->use_params ? (float *const *)t->use_params : t->params;
    float *const *grads = t->use_grads ? t->use_grads : t->grads;
    if (t->mf)
        return mlt_model_step_mf(t->model, params, grads, t->batch.u, t->batch.i, t->batch.r, n,
                                 loss);
    return mlt_model_step(t->model, params, grads, t->batch.x, t->batch.y, n, loss, correct);
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

/* Evaluates on the host set h, or on its device copy d on the GPU. */
static int eval_on(mlt_trainer_t *t, const set_t *h, const dset_t *d, mlt_eval_t *out)
{
    if (!t->gpu)
        return eval_set(t, h, out);
    memset(out, 0, sizeof *out);
    out->count = h->n;
    return h->n ? gpu_eval(t, d, out) : 0;
}

int mlt_trainer_eval(mlt_trainer_t *t, int which, mlt_eval_t *out)
{
    const int k = which ? 1 : 0;
    return eval_on(t, &t->val[k], t->gpu ? &t->gpu->val[k] : NULL, out);
}

int mlt_trainer_eval_all(mlt_trainer_t *t, int which, mlt_eval_t *out)
{
    const int k = which ? 1 : 0;
    return eval_on(t, &t->all[k], t->gpu ? &t->gpu->all[k] : NULL, out);
}

void mlt_trainer_on_grad(mlt_trainer_t *t, void (*fn)(void *ctx, uint32_t table), void *ctx)
{
    t->ready = fn;
    t->ready_ctx = ctx;
}

const char *mlt_trainer_backend(const mlt_trainer_t *t)
{
    return t->backend;
}

int mlt_trainer_set_threads(mlt_trainer_t *t, uint32_t n)
{
    return t->model ? mlt_model_set_threads(t->model, n) : 0;
}

uint32_t mlt_trainer_threads(const mlt_trainer_t *t)
{
    return t->model ? mlt_model_threads(t->model) : 1;
}
