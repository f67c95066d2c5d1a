/* warm.c - see warm.h. */
#include "tuner/warm.h"

#include <errno.h>
#include <fcntl.h>
#include <libconfig.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cfgtext.h"
#include "common/errtext.h"
#include "common/outfile.h"
#include "common/safepath.h"

/* appends printf text to key[*at..cap) */
static void kput(char *key, size_t cap, size_t *at, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void kput(char *key, size_t cap, size_t *at, const char *fmt, ...)
{
    if (*at >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(key + *at, cap - *at, fmt, ap);
    va_end(ap);
    if (n > 0)
        *at += (size_t)n;
}

/* The data set's part of a warm-start key. */
static void kput_data(char *key, size_t cap, size_t *at, const mlt_job_t *job)
{
    kput(key, cap, at, " %s", mlt_job_enum_name("data.format", (int)job->data.format));
    if (job->data.format == MLT_DATA_IDX)
        kput(key, cap, at, " %s subset %lld", job->data.train_images, (long long)job->data.subset);
    else if (job->data.format == MLT_DATA_RATINGS)
        kput(key, cap, at, " %s", job->data.ratings);
    else
        kput(key, cap, at, " %dx%d rank %d ratings %lld noise %g", job->data.synthetic.users,
             job->data.synthetic.items, job->data.synthetic.rank,
             (long long)job->data.synthetic.ratings, job->data.synthetic.noise);
}

void mlt_warm_key(const mlt_job_t *job, char *key, size_t cap)
{
    size_t at = 0;
    key[0] = '\0';
    kput(key, cap, &at, "%s", mlt_job_enum_name("model.type", (int)job->model.type));
    if (job->model.type == MLT_MODEL_MLP) {
        for (uint32_t i = 0; i < job->model.n_layers; i++)
            kput(key, cap, &at, "%c%u", i ? ',' : '[', job->model.layers[i]);
        kput(key, cap, &at, "]");
    } else if (job->model.type == MLT_MODEL_CNN) {
        static const char *const op[] = {"conv", "pool", "fc"};
        for (uint32_t i = 0; i < job->model.n_cnn; i++) {
            const mlt_cnn_layer_t *l = &job->model.cnn[i];
            kput(key, cap, &at, "%c%s%u/%u", i ? ',' : '[', op[l->op % 3], l->k, l->n);
        }
        kput(key, cap, &at, "]");
    } else if (job->model.type == MLT_MODEL_MF) {
        kput(key, cap, &at, " rank %d l2 %g", job->model.rank, job->model.l2);
    } else if (job->model.type == MLT_MODEL_EXTERNAL) {
        /* the model and data are the worker program's: only the job knows them */
        kput(key, cap, &at, " job %s", job->name);
    }
    if (job->model.type != MLT_MODEL_EXTERNAL) /* else the data is the worker's own */
        kput_data(key, cap, &at, job);
    kput(key, cap, &at, " %s", mlt_job_enum_name("update.rule", job->update.rule));
}

int mlt_warm_write(int dirfd, const char *name, const mlt_job_t *job, const mlt_warm_t *w,
                   char *err, size_t errlen)
{
    char tmp[NAME_MAX + 1], key[MLT_WARM_KEY_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", name) >= (int)sizeof tmp)
        return mlt_errf(-ENAMETOOLONG, err, errlen, "%s: name too long", name);
    if (unlinkat(dirfd, tmp, 0) < 0 && errno != ENOENT) /* a link planted there goes, unfollowed */
        return mlt_errf(-errno, err, errlen, "cannot write %s: %s", tmp, strerror(errno));
    int rc;
    mlt_outfile_t *o = mlt_outfile_open(dirfd, tmp, &rc);
    if (!o)
        return mlt_errf(rc, err, errlen, "cannot write %s: %s", tmp, mlt_safepath_strerror(rc));
    FILE *f = mlt_outfile_stream(o);
    mlt_warm_key(job, key, sizeof key);
    fputs("# warm-start.conf - the first search's winner of this job, for the next job of the\n"
          "# same model (tuner.warm_start); written by mltunerd\n",
          f);
    fputs("key = ", f);
    mlt_cfgtext_write_string(f, key);
    fputs(";\njob = ", f);
    mlt_cfgtext_write_string(f, job->name);
    fprintf(f, ";\nlr_star = %.9g;\ntunables = {\n", isfinite(w->lr_star) ? w->lr_star : 0.0);
    for (uint32_t i = 0; i < job->n_tunables; i++)
        fprintf(f, "  %s = %.9g;\n", job->tunables[i].name, w->setting.v[i]);
    fputs("};\n", f);
    rc = mlt_outfile_close(&o); /* flushed, fsync'd: every write checked */
    if (rc == 0 && renameat(dirfd, tmp, dirfd, name) != 0)
        rc = -errno;
    if (rc == 0 && fsync(dirfd) != 0 && errno != EINVAL)
        rc = -errno;
    if (rc) {
        unlinkat(dirfd, tmp, 0);
        return mlt_errf(rc, err, errlen, "cannot write %s: %s", name, strerror(-rc));
    }
    return 0;
}

/* a setting's value of tunable t from v: clamped into its range, or the
 * nearest of its values */
static double fit(const mlt_tunable_t *t, double v)
{
    if (t->kind != MLT_TUNABLE_DISCRETE)
        return v < t->min ? t->min : v > t->max ? t->max : v;
    double best = t->values[0];
    for (uint32_t i = 1; i < t->n_values; i++)
        if (fabs(t->values[i] - v) < fabs(best - v))
            best = t->values[i];
    return best;
}

static int number(const config_setting_t *s, double *out)
{
    if (config_setting_type(s) == CONFIG_TYPE_FLOAT)
        *out = config_setting_get_float(s);
    else if (config_setting_type(s) == CONFIG_TYPE_INT)
        *out = config_setting_get_int(s);
    else if (config_setting_type(s) == CONFIG_TYPE_INT64)
        *out = (double)config_setting_get_int64(s);
    else
        return -EINVAL;
    return isfinite(*out) ? 0 : -EINVAL;
}

int mlt_warm_read(const char *path, const mlt_job_t *job, mlt_warm_t *w, char *err,
                  size_t errlen)
{
    memset(w, 0, sizeof *w);
    w->lr_star = NAN;
    char file[4200];
    struct stat st;
    if (stat(path, &st) != 0)
        return mlt_errf(-ENOENT, err, errlen, "%s: no warm start there", path);
    if (S_ISDIR(st.st_mode))
        snprintf(file, sizeof file, "%s/%s", path, MLT_WARM_FILE);
    else
        snprintf(file, sizeof file, "%s", path);
    if (stat(file, &st) != 0)
        return mlt_errf(-ENOENT, err, errlen, "%s: no warm start there", file);
    if (!S_ISREG(st.st_mode) || st.st_size > 65536)
        return mlt_errf(-EINVAL, err, errlen, "%s: not a warm-start file", file);
    config_t cf;
    config_init(&cf);
    int rc = 0;
    if (config_read_file(&cf, file) != CONFIG_TRUE) {
        rc = mlt_errf(-EINVAL, err, errlen, "%s:%d: %s", file, config_error_line(&cf),
                      config_error_text(&cf));
        goto done;
    }
    const char *key = NULL;
    char want[MLT_WARM_KEY_MAX];
    mlt_warm_key(job, want, sizeof want);
    if (config_lookup_string(&cf, "key", &key) != CONFIG_TRUE) {
        rc = mlt_errf(-EINVAL, err, errlen, "%s: no key", file);
        goto done;
    }
    if (strcmp(key, want) != 0) {
        rc = mlt_errf(-ESTALE, err, errlen, "%s is of another model (%s; this job: %s)", file,
                      key, want);
        goto done;
    }
    mlt_setting_defaults(job, &w->setting);
    const config_setting_t *tun = config_lookup(&cf, "tunables");
    if (!tun || !config_setting_is_group(tun)) {
        rc = mlt_errf(-EINVAL, err, errlen, "%s: no tunables group", file);
        goto done;
    }
    for (uint32_t i = 0; i < job->n_tunables; i++) {
        const config_setting_t *s = config_setting_get_member(tun, job->tunables[i].name);
        double v;
        if (!s)
            continue;
        if (number(s, &v) != 0) {
            rc = mlt_errf(-EINVAL, err, errlen, "%s:%d: tunables.%s is not a finite number", file,
                          config_setting_source_line(s), job->tunables[i].name);
            goto done;
        }
        w->setting.v[i] = fit(&job->tunables[i], v);
    }
    const config_setting_t *ls = config_lookup(&cf, "lr_star");
    double lr;
    if (ls && number(ls, &lr) == 0 && lr > 0)
        w->lr_star = lr;
    w->have = true;
done:
    config_destroy(&cf);
    return rc;
}
