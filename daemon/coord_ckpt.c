/* coord_ckpt.c - see coord_ckpt.h. */
#include "daemon/coord_ckpt.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/ckfile.h"
#include "common/curve.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "daemon/auth.h"
#include "daemon/shardask.h"
#include "proto/limits.h"
#include "client/mltuner.h"

#define RESUME_MAGIC   "MLTRESUM"
#define COORD_MAGIC    "MLTCOORD"
#define MANIFEST_MAGIC "MLTMANIF"
#define CKPT_VERSION   1u
#define MAX_STATE_BYTES                                                                            \
    (64u << 20)           /* a tuner state: a few KiB, and 8 bytes per clock of                    \
                           * a test interval in progress */
#define MAX_CANDIDATES 64 /* checkpoint directories looked at on resume */

/* ---- paths --------------------------------------------------------------------- */

static void top_dir(const mlt_coord_t *c, char *out, size_t cap)
{
    snprintf(out, cap, "%s/checkpoints", c->state_dir);
}

static void job_dir(const mlt_coord_t *c, char *out, size_t cap)
{
    snprintf(out, cap, "%s/checkpoints/%s", c->state_dir, c->job.name);
}

static void seq_dir(const mlt_coord_t *c, uint64_t seq, char *out, size_t cap)
{
    snprintf(out, cap, "%s/checkpoints/%s/%" PRIu64, c->state_dir, c->job.name, seq);
}

/* The numbered checkpoint directories of the job, newest first (at most
 * MAX_CANDIDATES); returns how many. */
static int list_seqs(const mlt_coord_t *c, uint64_t *seqs)
{
    char dir[1200];
    job_dir(c, dir, sizeof dir);
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        uint64_t s = strtoull(e->d_name, &end, 10);
        if (*end || s == 0)
            continue;
        if (n < MAX_CANDIDATES) {
            seqs[n++] = s;
        } else { /* keep the newest */
            int lo = 0;
            for (int i = 1; i < n; i++)
                if (seqs[i] < seqs[lo])
                    lo = i;
            if (s > seqs[lo])
                seqs[lo] = s;
        }
    }
    closedir(d);
    for (int i = 1; i < n; i++) /* newest first */
        for (int j = i; j > 0 && seqs[j] > seqs[j - 1]; j--) {
            uint64_t t = seqs[j];
            seqs[j] = seqs[j - 1];
            seqs[j - 1] = t;
        }
    return n;
}

/* ---- the resume record ------------------------------------------------------------ */

int mlt_coord__resume_record(mlt_coord_t *c)
{
    char dir[1100], err[600];
    top_dir(c, dir, sizeof dir);
    int rc = mlt_ckfile_mkdirs(dir);
    mlt_ckw_t *w = rc ? NULL : mlt_ckw_open(dir, "job.resume", err, sizeof err);
    if (!w) {
        log_warn("job '%s': no resume record (it will not survive a daemon crash): %s", c->job.name,
                 rc ? strerror(-rc) : err);
        return rc ? rc : -EIO;
    }
    mlt_ckw_put(w, RESUME_MAGIC, 8);
    mlt_ckw_u32(w, CKPT_VERSION);
    mlt_ckw_str(w, c->job_path);
    mlt_ckw_str(w, c->job_text);
    mlt_ckw_u32(w, (uint32_t)c->n_overrides);
    for (size_t i = 0; i < c->n_overrides; i++)
        mlt_ckw_str(w, c->overrides[i]);
    mlt_ckw_str(w, c->out_dir);
    mlt_ckw_str(w, c->out_rel);
    if ((rc = mlt_ckw_close(&w, NULL, NULL, err, sizeof err)) < 0)
        log_warn("job '%s': no resume record: %s", c->job.name, err);
    return rc;
}

void mlt_coord__resume_forget(mlt_coord_t *c)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/checkpoints/job.resume", c->state_dir);
    if (unlink(path) == 0) {
        top_dir(c, path, sizeof path);
        mlt_ckfile_sync_dir(path);
    }
}

/* Parses job text and overrides as a submit does (coord_ctl.c). */
static int parse_resumed(mlt_coord_t *c, char *err, size_t errlen)
{
    int rc = mlt_job_parse_string(c->job_text, c->job_path, &c->job, err, errlen);
    if (rc)
        return rc;
    for (size_t i = 0; i < c->n_overrides; i++) {
        char key[256];
        const char *eq = strchr(c->overrides[i], '=');
        if (!eq || (size_t)(eq - c->overrides[i]) >= sizeof key) {
            snprintf(err, errlen, "override '%s' is not KEY=VALUE", c->overrides[i]);
            rc = -EINVAL;
            break;
        }
        memcpy(key, c->overrides[i], (size_t)(eq - c->overrides[i]));
        key[eq - c->overrides[i]] = '\0';
        if ((rc = mlt_job_set(&c->job, key, eq + 1, err, errlen)))
            break;
    }
    if (!rc && c->n_overrides)
        rc = mlt_job_validate(&c->job, err, errlen);
    if (rc)
        mlt_job_free(&c->job);
    return rc;
}

void mlt_coord__resume_find(mlt_coord_t *c)
{
    char path[1200], err[1600];
    snprintf(path, sizeof path, "%s/checkpoints/job.resume", c->state_dir);
    if (access(path, F_OK) != 0)
        return;
    mlt_ckr_t *r = mlt_ckr_open(path, 0, 0, err, sizeof err);
    if (!r) {
        log_warn("no job to resume: %s", err);
        return;
    }
    char magic[8], *path_s = NULL, *text = NULL, *out = NULL, *rel = NULL;
    uint32_t version = 0, n_ov = 0;
    char **ov = NULL;
    int rc = mlt_ckr_get(r, magic, 8) || memcmp(magic, RESUME_MAGIC, 8) != 0 ||
             mlt_ckr_u32(r, &version) || version != CKPT_VERSION ||
             mlt_ckr_str(r, MLT_MAX_PATH_LEN, &path_s) || mlt_ckr_str(r, MLT_MAX_JOB_TEXT, &text) ||
             mlt_ckr_u32(r, &n_ov) || n_ov > MLT_MAX_OVERRIDES;
    if (!rc) {
        ov = mlt_calloc(n_ov ? n_ov : 1, sizeof *ov);
        for (uint32_t i = 0; i < n_ov && !rc; i++)
            rc = mlt_ckr_str(r, MLT_MAX_OVERRIDE_LEN, &ov[i]);
        rc = rc || mlt_ckr_str(r, sizeof c->out_dir - 1, &out) ||
             mlt_ckr_str(r, sizeof c->out_rel - 1, &rel) || mlt_ckr_left(r) != 0;
    }
    mlt_ckr_close(&r);
    if (rc) {
        log_warn("no job to resume: %s is not a resume record of this version", path);
        goto out;
    }
    c->job_text = text;
    c->job_path = path_s;
    c->overrides = ov;
    c->n_overrides = n_ov;
    text = path_s = NULL;
    ov = NULL;
    if (parse_resumed(c, err, sizeof err)) {
        log_warn("no job to resume: the job in %s does not parse: %s", path, err);
        mlt_free(c->job_path);
        for (size_t i = 0; i < c->n_overrides; i++)
            mlt_free(c->overrides[i]);
        mlt_free(c->overrides);
        mlt_free(c->job_text);
        c->job_text = NULL; /* clear_job must not free a job that did not parse */
        c->job_path = NULL;
        c->overrides = NULL;
        c->n_overrides = 0;
        goto out;
    }
    /* the output directory as the submit checked it (safepath: relative to
     * state_dir, no ".."); checked again, since the record is a file */
    char why[256], chk[sizeof c->out_rel];
    if (mlt_safepath_rel("output_dir", rel, c->state_dir, chk, sizeof chk, why, sizeof why) < 0) {
        log_warn("no job to resume: %s: %s", path, why);
        mlt_job_free(&c->job);
        goto out_free;
    }
    snprintf(c->out_rel, sizeof c->out_rel, "%s", chk);
    snprintf(c->out_dir, sizeof c->out_dir, "%s", out);
    c->have_job = true;
    c->resuming = true;
    c->phase = PH_WAITING;
    c->stop_requested = false;
    c->message[0] = '\0';
    log_info("job '%s' found in %s: it resumes from its newest complete checkpoint once its %d "
             "workers join (output in %s)",
             c->job.name, path, c->job.workers, c->out_dir);
    goto out;
out_free:
    text = (char *)c->job_text; /* nothing of it stays */
    mlt_free(c->job_path);
    for (size_t i = 0; i < c->n_overrides; i++)
        mlt_free(c->overrides[i]);
    mlt_free(c->overrides);
    c->job_text = c->job_path = NULL;
    c->overrides = NULL;
    c->n_overrides = 0;
out:
    mlt_free(text);
    mlt_free(path_s);
    mlt_free(out);
    mlt_free(rel);
    if (ov)
        for (uint32_t i = 0; i < n_ov; i++)
            mlt_free(ov[i]);
    mlt_free(ov);
}

void mlt_coord__ckpt_clear(mlt_coord_t *c)
{
    uint64_t seqs[MAX_CANDIDATES];
    int n = list_seqs(c, seqs);
    char dir[1200];
    for (int i = 0; i < n; i++) {
        seq_dir(c, seqs[i], dir, sizeof dir);
        mlt_ckfile_rmdir(dir);
    }
    c->ckpt_seq = 0;
    c->ckpt_last = 0;
}

/* ---- writing -------------------------------------------------------------------- */

/* The head of a checkpoint record of this job (coord.ckpt, MANIFEST): its
 * magic, the format version, the job's name and the checkpoint's number. */
static void put_head(mlt_ckw_t *w, const char *magic, const mlt_coord_t *c, uint64_t seq)
{
    mlt_ckw_put(w, magic, 8);
    mlt_ckw_u32(w, CKPT_VERSION);
    mlt_ckw_str(w, c->job.name);
    mlt_ckw_u64(w, seq);
}

static void put_tunables(mlt_ckw_t *w, const mlt_tunables_def_t *t)
{
    mlt_ckw_f64(w, t->lr);
    mlt_ckw_f64(w, t->momentum);
    mlt_ckw_f64(w, t->weight_decay);
    mlt_ckw_f64(w, t->beta1);
    mlt_ckw_f64(w, t->beta2);
    mlt_ckw_f64(w, t->eps);
    mlt_ckw_i64(w, t->staleness);
    mlt_ckw_i64(w, t->warmup);
}

static int get_tunables(mlt_ckr_t *r, mlt_tunables_def_t *t)
{
    double v[6];
    int64_t st, wu;
    for (int i = 0; i < 6; i++)
        if (mlt_ckr_f64(r, &v[i]))
            return -EPROTO;
    if (mlt_ckr_i64(r, &st) || mlt_ckr_i64(r, &wu) || st < -1 || st > MLT_MAX_STALENESS ||
        wu < -1 || wu > MLT_MAX_WARMUP)
        return -EPROTO;
    t->lr = (float)v[0];
    t->momentum = (float)v[1];
    t->weight_decay = (float)v[2];
    t->beta1 = (float)v[3];
    t->beta2 = (float)v[4];
    t->eps = (float)v[5];
    t->staleness = (int32_t)st;
    t->warmup = (int32_t)wu;
    return 0;
}

/* Byte position of an output after flushing it (0 without one). */
static uint64_t flushed_pos(mlt_outfile_t *f)
{
    int64_t pos = f ? mlt_outfile_tell(f) : 0;
    return pos > 0 ? (uint64_t)pos : 0;
}

int mlt_coord__ckpt_maybe(void *ctx, const void *state, size_t len)
{
    mlt_coord_t *c = ctx;
    double every = c->job.checkpoint_interval_s;
    double now = mlt_coord__job_time(c);
    if (!(every > 0) || now < c->ckpt_last + every || !c->client || len > MAX_STATE_BYTES)
        return 0;
    if ((c->progress && mlt_outfile_error(c->progress)) || (c->dlog && mlt_outfile_error(c->dlog)))
        return 0; /* an output that failed: the job fails at its next check */
    double t_start = mlt_time_mono();
    uint64_t seq = c->ckpt_seq + 1;
    uint64_t *sizes = mlt_calloc((size_t)c->n_shards, sizeof *sizes);
    uint32_t *crcs = mlt_calloc((size_t)c->n_shards, sizeof *crcs);
    char dir[1200], err[1600];
    int rc = 0;
    for (int i = 0; i < c->n_shards && !rc; i++)
        if ((rc = mlt_client_ckpt_save(c->client, (uint32_t)i, c->job.name, seq, c->ckpt_seq,
                                       &sizes[i], &crcs[i])) < 0)
            snprintf(err, sizeof err, "shard %d: %s", i, mlt_client_error(c->client));
    seq_dir(c, seq, dir, sizeof dir);
    if (!rc && (rc = mlt_ckfile_mkdirs(dir)) < 0)
        snprintf(err, sizeof err, "cannot create %s: %s", dir, strerror(-rc));
    uint64_t csize = 0;
    uint32_t ccrc = 0;
    if (!rc) {
        mlt_ckw_t *w = mlt_ckw_open(dir, "coord.ckpt", err, sizeof err);
        rc = w ? 0 : -EIO;
        if (w) {
            put_head(w, COORD_MAGIC, c, seq);
            mlt_ckw_f64(w, now);
            mlt_ckw_i64(w, c->clock);
            mlt_ckw_f64(w, c->epoch);
            mlt_ckw_f64(w, c->last_loss);
            mlt_ckw_f64(w, c->val_acc);
            mlt_ckw_f64(w, c->test_acc);
            mlt_ckw_f64(w, c->val_rmse);
            mlt_ckw_f64(w, c->test_rmse);
            mlt_ckw_u32(w, c->batch);
            mlt_ckw_u32(w, c->train_branch);
            mlt_ckw_u32(w, c->trials);
            mlt_ckw_f64(w, c->tuning_s);
            mlt_ckw_f64(w, c->training_s);
            put_tunables(w, &c->tunables);
            mlt_ckw_u64(w, flushed_pos(c->dlog));
            mlt_ckw_u64(w, flushed_pos(c->progress));
            mlt_ckw_u32(w, (uint32_t)len);
            mlt_ckw_put(w, state, len);
            rc = mlt_ckw_close(&w, &csize, &ccrc, err, sizeof err);
        }
    }
    if (!rc) {
        mlt_ckw_t *w = mlt_ckw_open(dir, "MANIFEST", err, sizeof err);
        rc = w ? 0 : -EIO;
        if (w) {
            put_head(w, MANIFEST_MAGIC, c, seq);
            mlt_ckw_u64(w, csize);
            mlt_ckw_u32(w, ccrc);
            mlt_ckw_u32(w, (uint32_t)c->n_shards);
            for (int i = 0; i < c->n_shards; i++) {
                mlt_ckw_u64(w, sizes[i]);
                mlt_ckw_u32(w, crcs[i]);
            }
            rc = mlt_ckw_close(&w, NULL, NULL, err, sizeof err);
        }
    }
    mlt_free(sizes);
    mlt_free(crcs);
    c->ckpt_last = now;
    if (rc) {
        log_warn("job '%s': checkpoint %" PRIu64
                 " not written (the job goes on; checkpoint %" PRIu64 " stays the newest): %s",
                 c->job.name, seq, c->ckpt_seq, err);
        return 0;
    }
    /* at most two: this one and the one before */
    uint64_t seqs[MAX_CANDIDATES];
    int n = list_seqs(c, seqs);
    for (int i = 0; i < n; i++)
        if (seqs[i] + 1 < seq) {
            char old[1200];
            seq_dir(c, seqs[i], old, sizeof old);
            mlt_ckfile_rmdir(old);
        }
    c->ckpt_seq = seq;
    c->shard_resumes = 0; /* a resume after a lost shard got this far */
    log_info("job '%s': checkpoint %" PRIu64 " written at clock %lld, epoch %.4f (%.3f s)",
             c->job.name, seq, (long long)c->clock, c->epoch, mlt_time_mono() - t_start);
    return 0;
}

/* 0 when r's head (put_head) is magic's, of this format version, job and
 * checkpoint; else nonzero. */
static int get_head(mlt_ckr_t *r, const char *magic, const mlt_coord_t *c, uint64_t seq)
{
    char m[8], *name = NULL;
    uint32_t version;
    uint64_t s;
    int rc = mlt_ckr_get(r, m, 8) || memcmp(m, magic, 8) != 0 || mlt_ckr_u32(r, &version) ||
             version != CKPT_VERSION || mlt_ckr_str(r, MLT_MAX_NAME_LEN, &name) ||
             strcmp(name, c->job.name) != 0 || mlt_ckr_u64(r, &s) || s != seq;
    mlt_free(name);
    return rc;
}

/* ---- loading -------------------------------------------------------------------- */

typedef struct manifest {
    uint64_t csize;
    uint32_t ccrc;
    uint64_t *sizes;
    uint32_t *crcs;
} manifest_t;

static int read_manifest(mlt_coord_t *c, uint64_t seq, manifest_t *m, char *err, size_t errlen)
{
    char dir[1200], path[1300];
    seq_dir(c, seq, dir, sizeof dir);
    snprintf(path, sizeof path, "%s/MANIFEST", dir);
    mlt_ckr_t *r = mlt_ckr_open(path, 0, 0, err, errlen);
    if (!r)
        return -EPROTO;
    uint32_t n;
    int rc = get_head(r, MANIFEST_MAGIC, c, seq) || mlt_ckr_u64(r, &m->csize) ||
             mlt_ckr_u32(r, &m->ccrc) || mlt_ckr_u32(r, &n);
    if (!rc && n != (uint32_t)c->n_shards) {
        snprintf(err, errlen, "%s: it has %u shards, this daemon %d", path, n, c->n_shards);
        rc = -EINVAL;
    } else if (rc) {
        snprintf(err, errlen, "%s: not a manifest of this job and number", path);
        rc = -EPROTO;
    }
    if (!rc) {
        m->sizes = mlt_calloc(n, sizeof *m->sizes);
        m->crcs = mlt_calloc(n, sizeof *m->crcs);
        for (uint32_t i = 0; i < n && !rc; i++)
            rc = mlt_ckr_u64(r, &m->sizes[i]) || mlt_ckr_u32(r, &m->crcs[i]);
        if (rc || mlt_ckr_left(r)) {
            snprintf(err, errlen, "%s: its shard list is bad", path);
            rc = -EPROTO;
        }
    }
    mlt_ckr_close(&r);
    return rc;
}

/* The coordinator's file of checkpoint seq into c's numbers; the tuner's
 * state into *state. */
static int read_coord(mlt_coord_t *c, uint64_t seq, const manifest_t *m, void **state, size_t *len,
                      double *jt, uint64_t *dpos, uint64_t *ppos, char *err, size_t errlen)
{
    char dir[1200], path[1300];
    seq_dir(c, seq, dir, sizeof dir);
    snprintf(path, sizeof path, "%s/coord.ckpt", dir);
    mlt_ckr_t *r = mlt_ckr_open(path, m->csize, m->ccrc, err, errlen);
    if (!r)
        return -EPROTO;
    uint32_t n = 0;
    mlt_coord_t k = *c; /* the numbers land here first: all or nothing */
    int rc = get_head(r, COORD_MAGIC, c, seq) || mlt_ckr_f64(r, jt) || mlt_ckr_i64(r, &k.clock) ||
             mlt_ckr_f64(r, &k.epoch) || mlt_ckr_f64(r, &k.last_loss) ||
             mlt_ckr_f64(r, &k.val_acc) || mlt_ckr_f64(r, &k.test_acc) ||
             mlt_ckr_f64(r, &k.val_rmse) || mlt_ckr_f64(r, &k.test_rmse) ||
             mlt_ckr_u32(r, &k.batch) || mlt_ckr_u32(r, &k.train_branch) ||
             mlt_ckr_u32(r, &k.trials) || mlt_ckr_f64(r, &k.tuning_s) ||
             mlt_ckr_f64(r, &k.training_s) || get_tunables(r, &k.tunables) ||
             mlt_ckr_u64(r, dpos) || mlt_ckr_u64(r, ppos) || mlt_ckr_u32(r, &n) ||
             n > MAX_STATE_BYTES || n != mlt_ckr_left(r) || !(*jt >= 0 && *jt < 1e9) ||
             k.clock < 0 || k.batch > MLT_MAX_BATCH;
    if (rc) {
        mlt_ckr_close(&r);
        snprintf(err, errlen, "%s: not this job's coordinator state, or out of range", path);
        return -EPROTO;
    }
    *state = mlt_malloc(n ? n : 1);
    *len = n;
    mlt_ckr_get(r, *state, n);
    mlt_ckr_close(&r);
    c->clock = k.clock;
    c->epoch = k.epoch;
    c->last_loss = k.last_loss;
    c->val_acc = k.val_acc;
    c->test_acc = k.test_acc;
    c->val_rmse = k.val_rmse;
    c->test_rmse = k.test_rmse;
    c->batch = k.batch;
    c->train_branch = k.train_branch;
    c->trials = k.trials;
    c->tuning_s = k.tuning_s;
    c->training_s = k.training_s;
    c->tunables = k.tunables;
    return 0;
}

int mlt_coord__ckpt_load(mlt_coord_t *c, void **state, size_t *len, uint64_t *dpos, uint64_t *ppos)
{
    uint64_t seqs[MAX_CANDIDATES];
    int n = list_seqs(c, seqs);
    char err[1600];
    int last_rc = -ENOENT;
    for (int i = 0; i < n; i++) {
        manifest_t m = {0};
        double jt = 0;
        int rc = read_manifest(c, seqs[i], &m, err, sizeof err);
        if (!rc)
            rc = read_coord(c, seqs[i], &m, state, len, &jt, dpos, ppos, err, sizeof err);
        for (int s = 0; s < c->n_shards && !rc; s++)
            if ((rc = mlt_client_ckpt_load(c->client, (uint32_t)s, c->job.name, seqs[i], m.sizes[s],
                                           m.crcs[s])) < 0) {
                snprintf(err, sizeof err, "%s", mlt_client_error(c->client));
                snprintf(c->message, sizeof c->message,
                         "cannot resume from checkpoint %" PRIu64 ": %.400s", seqs[i], err);
                last_rc = rc;
                mlt_free(*state);
                *state = NULL;
            }
        mlt_free(m.sizes);
        mlt_free(m.crcs);
        if (rc) {
            log_warn("job '%s': checkpoint %" PRIu64 " skipped: %s", c->job.name, seqs[i], err);
            continue;
        }
        /* newer, incomplete ones go: the next checkpoint takes their number */
        for (int j = 0; j < i; j++) {
            char dir[1200];
            seq_dir(c, seqs[j], dir, sizeof dir);
            mlt_ckfile_rmdir(dir);
        }
        c->ckpt_seq = seqs[i];
        c->t0 = mlt_time_mono() - jt;
        c->ckpt_last = jt;
        log_info("job '%s': resuming from checkpoint %" PRIu64 " (job time %.3f s, clock %lld, "
                 "epoch %.4f, training branch %u)",
                 c->job.name, seqs[i], jt, (long long)c->clock, c->epoch, c->train_branch);
        return 0;
    }
    if (last_rc == -ENOENT)
        log_info("job '%s': no complete checkpoint (%d looked at): the job starts again",
                 c->job.name, n);
    return last_rc;
}

/* ---- a lost shard ---------------------------------------------------------------- */

int mlt_coord__shard_loss(mlt_coord_t *c)
{
    if (!c->resumable || !c->client || c->n_shards < 2 || c->shutdown)
        return 0;
    if (c->shard_lost > 0) { /* the same loss, as the tuner's calls unwind */
        c->message[0] = '\0';
        return 1;
    }
    /* a worker's ECONNRESET may come before the coordinator's own news */
    int s = mlt_client_lost_shard(c->client, MLT_SHARD_NEWS_S);
    if (s < 1) /* shard 0 is this daemon */
        return 0;
    char what[sizeof c->message];
    memcpy(what, c->message, sizeof what);
    if (c->ckpt_seq == 0) {
        snprintf(c->message, sizeof c->message,
                 "shard %d (%s) was lost (its connection closed: its daemon died or restarted) "
                 "before the job's first checkpoint, so there is nothing to resume from; what "
                 "failed: %.300s",
                 s, c->shards[s], what);
        return 0;
    }
    if (c->shard_resumes >= MLT_SHARD_RESUMES_MAX) {
        snprintf(c->message, sizeof c->message,
                 "shard %d (%s) was lost again: %u resumes from checkpoint %" PRIu64
                 " in a row and no new checkpoint between them; what failed: %.300s",
                 s, c->shards[s], c->shard_resumes, c->ckpt_seq, what);
        return 0;
    }
    c->shard_lost = s;
    c->message[0] = '\0';
    log_warn("job '%s': shard %d (%s) lost: its connection closed (its daemon died or "
             "restarted); the job waits up to %g s (worker_wait_s) for it to answer again, then "
             "resumes from its newest complete checkpoint (%" PRIu64 "); what failed: %s",
             c->job.name, s, c->shards[s], c->job.worker_wait_s, c->ckpt_seq, what);
    return 1;
}

/* shardask's socket setup: a CURVE client with the daemon's keys */
static void curve_setup(void *sock, const void *keys)
{
    mlt_curve_client_socket(sock, keys);
}

#define SHARD_ASK_S 0.5 /* one status request to the lost shard */

int mlt_coord__shard_wait(mlt_coord_t *c, int s)
{
    const bool curve = c->keys && c->keys->on;
    const char *const ep[1] = {c->shards[s]};
    const double t0 = mlt_time_mono();
    double next_note = t0 + NOTE_EVERY_S;
    for (;;) {
        if (c->stop_requested) {
            c->phase = PH_STOPPED;
            snprintf(c->message, sizeof c->message, "stopped while waiting for shard %d (%s)", s,
                     c->shards[s]);
            return 1;
        }
        mlt_server_status_t st;
        bool up = false;
        char why[1][MLT_SHARDASK_WHY_LEN];
        mlt_shardask_status(c->ctx, ep, 1, SHARD_ASK_S, curve ? curve_setup : NULL,
                            curve ? &c->keys->client : NULL, &st, &up, why);
        if (up) {
            bool same = st.rank == (uint32_t)s && st.n_servers == (uint32_t)c->n_shards;
            mlt_server_status_free(&st);
            if (same) {
                log_info("job '%s': shard %d (%s) answers again after %.1f s; the job resumes "
                         "from its newest complete checkpoint",
                         c->job.name, s, c->shards[s], mlt_time_mono() - t0);
                return 0;
            }
            snprintf(why[0], sizeof why[0], "it says it is shard %u of %u", st.rank, st.n_servers);
        }
        double now = mlt_time_mono();
        if (now - t0 > c->job.worker_wait_s)
            return mlt_coord__fail_job(
                c,
                "shard %d (%s) was lost (its connection closed: its daemon died or "
                "restarted) and did not answer again within worker_wait_s = %g s "
                "(last: %.200s)",
                s, c->shards[s], c->job.worker_wait_s, why[0]);
        if (now >= next_note) {
            log_info("job '%s': waiting up to %.0f s more (worker_wait_s) for shard %d (%s) to "
                     "answer again (%.200s)",
                     c->job.name, c->job.worker_wait_s - (now - t0), s, c->shards[s], why[0]);
            next_note = now + NOTE_EVERY_S;
        }
        if (mlt_coord__pump(c, 0.25) == -ECANCELED)
            return -1;
    }
}
