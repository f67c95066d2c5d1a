/* jobfile_check.c - the job's own checks (see jobfile.h): the string checks of
 * the key table, cnn layer specs (a list the key-table engine reads through
 * mlt_jobk_cnn), and the checks between keys (mlt_jobk_validate), whose
 * messages point at the file when the parse context has one. A key's own
 * bounds are the engine's (mlt_kt_check). */
#include "common/jobfile.h"

#include "common/jobfile_int.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/errtext.h"

/* Tunables the system itself reads, with the values that make sense for
 * them; any other name is the workers' business. */
static const struct {
    const char *name;
    double lo, hi;     /* allowed values */
    bool lo_open;      /* lo itself is refused */
    bool hi_open;      /* hi itself is refused */
    bool integer;      /* whole numbers only */
    const char *range; /* how the message says it */
    const char *what;
} known[] = {
    {"lr", 0.0, DBL_MAX, true, false, false, "> 0", "a learning rate"},
    {"momentum", 0.0, 1.0, false, true, false, ">= 0 and < 1", "a momentum"},
    {"batch_size", 1.0, 65536.0, false, false, true, "an integer in 1..65536",
     "a batch size per worker"},
    {"staleness", 0.0, 1000.0, false, false, true, "an integer in 0..1000",
     "a staleness bound in clocks"},
    {"weight_decay", 0.0, DBL_MAX, false, false, false, ">= 0", "a weight decay"},
    {"warmup", 0.0, 10000000.0, false, false, true, "an integer in 0..10000000",
     "a warm-up length in updates"}, /* MLT_MAX_WARMUP of proto/limits.h */
    {"beta1", 0.0, 1.0, false, true, false, ">= 0 and < 1",
     "adam's first-moment decay or sf-adamw's interpolation (update.beta1 as a tunable)"},
};

/* ---- string checks ---- */

int mlt_jobk_check_name(const char *subj, const char *s, char *why, size_t whylen)
{
    size_t n = strlen(s);
    bool ok = n >= 1 && n <= MLT_JOB_MAX_NAME && s[0] != '.';
    for (size_t i = 0; ok && i < n; i++)
        ok = isalnum((unsigned char)s[i]) || s[i] == '.' || s[i] == '_' || s[i] == '-';
    if (!ok) {
        return mlt_errf(-EINVAL, why, whylen,
                        "%s must be 1..%u characters of A-Z a-z 0-9 . _ -, not starting with '.' "
                        "(got \"%.*s\")",
                        subj, MLT_JOB_MAX_NAME, 160, s);
    }
    return 0;
}

int mlt_jobk_check_path_opt(const char *subj, const char *s, char *why, size_t whylen)
{
    if (strlen(s) > MLT_JOB_MAX_PATH) {
        return mlt_errf(-EINVAL, why, whylen, "%s must be at most %u bytes (got %zu)", subj,
                        MLT_JOB_MAX_PATH, strlen(s));
    }
    return 0;
}

int mlt_jobk_check_path(const char *subj, const char *s, char *why, size_t whylen)
{
    if (s[0] == '\0') {
        return mlt_errf(-EINVAL, why, whylen, "%s must not be empty", subj);
    }
    return mlt_jobk_check_path_opt(subj, s, why, whylen);
}

/* ---- cnn layer specs ---- */

/* Digits only, the whole number at *pp (at most 9 digits). false when none. */
static bool scan_uint(const char **pp, uint32_t *out)
{
    const char *p = *pp;
    uint32_t v = 0;
    int n = 0;
    while (isdigit((unsigned char)*p) && n < 10) {
        v = v * 10 + (uint32_t)(*p - '0');
        p++;
        n++;
    }
    if (n == 0 || n > 9)
        return false;
    *pp = p;
    *out = v;
    return true;
}

/* "conv5x5x32", "pool2" or "fc256" -> *out. 0, or -EINVAL with
 * "SUBJ[I] = 'spec' ..." in why. */
static int cnn_parse(const char *subj, uint32_t i, const char *s, void *out, char *why,
                     size_t whylen)
{
    const char *p = s;
    uint32_t a = 0, b = 0, c = 0;
    bool ok;
    mlt_cnn_layer_t l = {0};
    if (strncmp(p, "conv", 4) == 0) {
        p += 4;
        ok = scan_uint(&p, &a) && *p++ == 'x' && scan_uint(&p, &b) && *p++ == 'x' &&
             scan_uint(&p, &c) && *p == '\0';
        l = (mlt_cnn_layer_t){MLT_CNN_CONV, a, c};
    } else if (strncmp(p, "pool", 4) == 0) {
        p += 4;
        ok = scan_uint(&p, &a) && *p == '\0';
        l = (mlt_cnn_layer_t){MLT_CNN_POOL, a, 0};
    } else if (strncmp(p, "fc", 2) == 0) {
        p += 2;
        ok = scan_uint(&p, &a) && *p == '\0';
        l = (mlt_cnn_layer_t){MLT_CNN_FC, 0, a};
    } else {
        ok = false;
    }
    const char *bad = NULL;
    if (!ok)
        bad = "is not convKxKxC, poolP or fcN";
    else if (l.op == MLT_CNN_CONV && a != b)
        bad = "has a kernel that is not square (KxK)";
    else if (l.op == MLT_CNN_CONV && (a < 1 || a > 11 || a % 2 == 0))
        bad = "has a kernel size that is not odd in 1..11";
    else if (l.op == MLT_CNN_CONV && (c < 1 || c > 1024))
        bad = "has channels outside 1..1024";
    else if (l.op == MLT_CNN_POOL && (a < 2 || a > 8))
        bad = "has a pool size outside 2..8";
    else if (l.op == MLT_CNN_FC && (a < 1 || a > 65536))
        bad = "has units outside 1..65536";
    if (bad) {
        return mlt_errf(-EINVAL, why, whylen, "%s[%u] = '%.64s' %s", subj, i, s, bad);
    }
    *(mlt_cnn_layer_t *)out = l;
    return 0;
}

static void cnn_format(const void *e, char *buf, size_t len)
{
    const mlt_cnn_layer_t *l = e;
    switch (l->op) {
    case MLT_CNN_CONV: snprintf(buf, len, "conv%ux%ux%u", l->k, l->k, l->n); break;
    case MLT_CNN_POOL: snprintf(buf, len, "pool%u", l->k); break;
    case MLT_CNN_FC: snprintf(buf, len, "fc%u", l->n); break;
    default: snprintf(buf, len, "?"); break;
    }
}

/* The whole stack: each layer as a spec that reads back (a job built by
 * hand), and conv and pool layers before the first fc. */
static int cnn_check(const char *subj, const void *list, uint32_t n, char *why, size_t whylen,
                     int *idxp)
{
    const mlt_cnn_layer_t *l = list;
    for (uint32_t i = 0; i < n; i++) {
        char spec[48];
        cnn_format(&l[i], spec, sizeof spec);
        mlt_cnn_layer_t again;
        int rc = cnn_parse(subj, i, spec, &again, why, whylen);
        if (!rc && i > 0 && l[i].op != MLT_CNN_FC && l[i - 1].op == MLT_CNN_FC)
            rc = mlt_errf(-EINVAL, why, whylen,
                          "%s[%u] = '%s' follows an fc layer; conv and pool layers must come "
                          "before the first fc",
                          subj, i, spec);
        if (rc) {
            *idxp = (int)i;
            return rc;
        }
    }
    return 0;
}

const mlt_kt_spec_t mlt_jobk_cnn = {
    .size = sizeof(mlt_cnn_layer_t),
    .noun = "a list of strings such as \"conv5x5x32\", \"pool2\", \"fc256\"",
    .parse = cnn_parse,
    .format = cnn_format,
    .check = cnn_check,
};

/* Writes "FILE:LINE: what" (line of the first of the paths the file gave;
 * "FILE: what" when none; "what" without a file) and returns -EINVAL. The
 * list of paths ends with NULL. */
static int report(const mlt_kt_ctx_t *p, char *err, size_t errlen, const char *what,
                  const char *path, ...)
{
    unsigned line = 0;
    va_list ap;
    va_start(ap, path);
    for (const char *q = path; q && line == 0; q = va_arg(ap, const char *))
        line = mlt_kt_ctx_line(p, q);
    va_end(ap);
    if (!p || !p->file)
        return mlt_errf(-EINVAL, err, errlen, "%s", what);
    if (line)
        return mlt_errf(-EINVAL, err, errlen, "%s:%u: %s", p->file, line, what);
    return mlt_errf(-EINVAL, err, errlen, "%s: %s", p->file, what);
}

/* ---- checks between keys ---- */

static const char *model_name(const mlt_job_t *job)
{
    const char *s = mlt_kt_enum_name(mlt_jobk_model_names, job->model.type);
    return s ? s : "?";
}

/* A tunable's own consistency, then the values a known name allows. */
static int validate_tunable(const mlt_tunable_t *t, const mlt_kt_ctx_t *p, char *err, size_t errlen)
{
    char why[512], pdef[96], pmin[96], pmax[96], pval[96];
    snprintf(pdef, sizeof pdef, "tunables.%s.default", t->name);
    snprintf(pmin, sizeof pmin, "tunables.%s.min", t->name);
    snprintf(pmax, sizeof pmax, "tunables.%s.max", t->name);
    snprintf(pval, sizeof pval, "tunables.%s.values", t->name);
    if (t->kind == MLT_TUNABLE_DISCRETE) {
        bool found = false;
        for (uint32_t i = 0; i < t->n_values; i++)
            found |= t->values[i] == t->def;
        if (!found) {
            snprintf(why, sizeof why, "%s must be one of %s (got %g)", pdef, pval, t->def);
            return report(p, err, errlen, why, pdef, NULL);
        }
    } else {
        if (!(t->min < t->max)) {
            snprintf(why, sizeof why, "%s (%g) must be less than %s (%g)", pmin, t->min, pmax,
                     t->max);
            return report(p, err, errlen, why, pmin, pmax, NULL);
        }
        if (t->kind == MLT_TUNABLE_LOG && !(t->min > 0)) {
            snprintf(why, sizeof why, "%s must be > 0 for scale \"log\" (got %g)", pmin, t->min);
            return report(p, err, errlen, why, pmin, NULL);
        }
        if (!(t->def >= t->min && t->def <= t->max)) {
            snprintf(why, sizeof why, "%s must be between min (%g) and max (%g) (got %g)", pdef,
                     t->min, t->max, t->def);
            return report(p, err, errlen, why, pdef, NULL);
        }
    }
    for (size_t j = 0; j < sizeof known / sizeof known[0]; j++) {
        if (strcmp(known[j].name, t->name) != 0)
            continue;
        /* continuous: the ends of the range; discrete: each value */
        uint32_t n = t->kind == MLT_TUNABLE_DISCRETE ? t->n_values : 2;
        for (uint32_t i = 0; i < n; i++) {
            double x = t->kind == MLT_TUNABLE_DISCRETE ? t->values[i] : i ? t->max : t->min;
            bool ok = (known[j].lo_open ? x > known[j].lo : x >= known[j].lo) &&
                      (known[j].hi_open ? x < known[j].hi : x <= known[j].hi) &&
                      (!known[j].integer || mlt_kt_is_integral(x));
            if (ok)
                continue;
            char subj[128];
            if (t->kind == MLT_TUNABLE_DISCRETE)
                snprintf(subj, sizeof subj, "%s[%u]", pval, i);
            else
                snprintf(subj, sizeof subj, "%s", i ? pmax : pmin);
            snprintf(why, sizeof why, "%s must be %s, as %s (got %g)", subj, known[j].range,
                     known[j].what, x);
            return report(p, err, errlen, why, t->kind == MLT_TUNABLE_DISCRETE ? pval : subj, NULL);
        }
    }
    return 0;
}

/* Everything between keys, and every key's bounds again (a job changed with
 * mlt_job_set, or built by hand). Messages point at the file when p has one. */
int mlt_jobk_validate(const mlt_job_t *job, const mlt_kt_ctx_t *p, char *err, size_t errlen)
{
    char why[512];
    int idx = -1;
    for (size_t i = 0; i < mlt_jobk_table.n_keys; i++) {
        const mlt_kt_key_t *k = &mlt_jobk_keys[i];
        if (k->in_elem || !mlt_kt_has_field(k))
            continue;
        mlt_kt_val_t v = mlt_kt_load(job, k);
        if (mlt_kt_check(k, k->path, &v, why, sizeof why, &idx))
            return report(p, err, errlen, why, k->path, NULL);
    }
    if (job->n_tunables > MLT_JOB_MAX_TUNABLES || (job->n_tunables && !job->tunables)) {
        snprintf(why, sizeof why, "tunables must have at most %u entries (got %u)",
                 MLT_JOB_MAX_TUNABLES, job->n_tunables);
        return report(p, err, errlen, why, "tunables", NULL);
    }
    for (uint32_t t = 0; t < job->n_tunables; t++) {
        const mlt_tunable_t *tu = &job->tunables[t];
        for (size_t i = 0; i < mlt_jobk_table.n_keys; i++) {
            const mlt_kt_key_t *k = &mlt_jobk_keys[i];
            if (!k->in_elem)
                continue;
            if (tu->kind == MLT_TUNABLE_DISCRETE ? k->off == TOFF(min) || k->off == TOFF(max)
                                                 : k->type == MLT_KT_NUMLIST)
                continue;
            char subj[128];
            snprintf(subj, sizeof subj, "tunables.%s.%s", tu->name, mlt_kt_leaf(k));
            mlt_kt_val_t v = mlt_kt_load(tu, k);
            if (k->type == MLT_KT_ENUM && tu->kind == MLT_TUNABLE_DISCRETE)
                continue;
            if (mlt_kt_check(k, subj, &v, why, sizeof why, &idx))
                return report(p, err, errlen, why, subj, NULL);
        }
        for (uint32_t u = 0; u < t; u++) {
            if (strcmp(job->tunables[u].name, tu->name) == 0) {
                snprintf(why, sizeof why, "tunables.%s is given twice", tu->name);
                return report(p, err, errlen, why, "tunables", NULL);
            }
        }
        int rc = validate_tunable(tu, p, err, errlen);
        if (rc)
            return rc;
    }

    const char *mt = model_name(job);
    const char *df = mlt_kt_enum_name(mlt_jobk_format_names, job->data.format);
    switch (job->model.type) {
    case MLT_MODEL_MLP:
        if (job->model.n_layers == 0) {
            snprintf(why, sizeof why,
                     "model.type \"mlp\" needs model.layers, its hidden layer sizes such as "
                     "[256, 256] (for none use model.type \"softmax\")");
            return report(p, err, errlen, why, "model.layers", "model.type", NULL);
        }
        break;
    case MLT_MODEL_CNN:
        if (job->model.n_cnn == 0) {
            snprintf(why, sizeof why,
                     "model.type \"cnn\" needs model.cnn, its layers such as [\"conv5x5x32\", "
                     "\"pool2\", \"fc256\"]");
            return report(p, err, errlen, why, "model.cnn", "model.type", NULL);
        }
        break;
    default: break;
    }
    if (job->model.type == MLT_MODEL_MF && job->data.format == MLT_DATA_IDX) {
        snprintf(why, sizeof why,
                 "model.type \"mf\" needs data.format \"ratings\" or \"synthetic\" (got \"%s\")",
                 df);
        return report(p, err, errlen, why, "data.format", "model.type", NULL);
    }
    if (job->model.type != MLT_MODEL_MF && job->model.type != MLT_MODEL_EXTERNAL &&
        job->data.format != MLT_DATA_IDX) {
        snprintf(why, sizeof why, "model.type \"%s\" needs data.format \"idx\" (got \"%s\")", mt,
                 df);
        return report(p, err, errlen, why, "data.format", "model.type", NULL);
    }
    if (job->data.format == MLT_DATA_RATINGS && job->data.ratings[0] == '\0') {
        snprintf(why, sizeof why, "data.format \"ratings\" needs data.ratings, the ratings file");
        return report(p, err, errlen, why, "data.ratings", "data.format", NULL);
    }
    if (job->data.format == MLT_DATA_SYNTHETIC) {
        long long cells = (long long)job->data.synthetic.users * job->data.synthetic.items;
        if (job->data.synthetic.ratings > cells) {
            snprintf(why, sizeof why,
                     "data.synthetic.ratings (%lld) must be at most users x items (%lld)",
                     (long long)job->data.synthetic.ratings, cells);
            return report(p, err, errlen, why, "data.synthetic.ratings", "data.synthetic", NULL);
        }
    }
    /* update.average: the rules that can keep one (kernels/optim.h's
     * mlt_optim_state_floats; common/ does not reach up to kernels/) */
    const char *rule = mlt_job_enum_name("update.rule", job->update.rule);
    if (job->update.average && rule && strcmp(rule, "sgd") != 0 && strcmp(rule, "nesterov") != 0 &&
        strcmp(rule, "sf-sgd") != 0 && strcmp(rule, "sf-adamw") != 0) {
        snprintf(why, sizeof why,
                 "update.average keeps a weight average for update.rule \"sgd\" or \"nesterov\" "
                 "(the sf- rules always do); \"%s\" cannot keep one",
                 rule);
        return report(p, err, errlen, why, "update.average", "update.rule", NULL);
    }
    if (job->model.type == MLT_MODEL_MF && job->model.metric == MLT_METRIC_ACCURACY) {
        snprintf(why, sizeof why, "model.type \"mf\" is measured by rmse, not accuracy");
        return report(p, err, errlen, why, "model.metric", "model.type", NULL);
    }
    if (mlt_job_rmse(job) && job->stop.target_accuracy > 0) {
        snprintf(why, sizeof why,
                 "stop.target_accuracy is for classifiers; model.type \"%s\" (metric rmse) stops "
                 "at stop.target_rmse",
                 mt);
        return report(p, err, errlen, why, "stop.target_accuracy", NULL);
    }
    if (!mlt_job_rmse(job) && job->stop.target_rmse > 0) {
        snprintf(why, sizeof why,
                 "stop.target_rmse is for model.type \"mf\" or model.metric \"rmse\"; \"%s\" "
                 "stops at stop.target_accuracy",
                 mt);
        return report(p, err, errlen, why, "stop.target_rmse", NULL);
    }
    return 0;
}

/* ---- the API ---- */

int mlt_job_validate(const mlt_job_t *job, char *err, size_t errlen)
{
    return mlt_jobk_validate(job, NULL, err, errlen);
}
