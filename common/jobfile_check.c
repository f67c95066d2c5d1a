/* jobfile_check.c - the checks of a job (see jobfile.h): the string checks of
 * the key table, cnn layer specs, a key's own bounds (mlt_jobk_check_value,
 * shared by every source of a value), and the checks between keys
 * (mlt_jobk_validate), whose messages point at the file when the parse context
 * has one. */
#include "common/jobfile.h"

#include "common/jobfile_int.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <stdarg.h>
#include <string.h>

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
        fmt(why, whylen,
            "%s must be 1..%u characters of A-Z a-z 0-9 . _ -, not starting with '.' "
            "(got \"%.*s\")",
            subj, MLT_JOB_MAX_NAME, 160, s);
        return -EINVAL;
    }
    return 0;
}

int mlt_jobk_check_path_opt(const char *subj, const char *s, char *why, size_t whylen)
{
    if (strlen(s) > MLT_JOB_MAX_PATH) {
        fmt(why, whylen, "%s must be at most %u bytes (got %zu)", subj, MLT_JOB_MAX_PATH,
            strlen(s));
        return -EINVAL;
    }
    return 0;
}

int mlt_jobk_check_path(const char *subj, const char *s, char *why, size_t whylen)
{
    if (s[0] == '\0') {
        fmt(why, whylen, "%s must not be empty", subj);
        return -EINVAL;
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
int mlt_jobk_cnn_parse(const char *subj, uint32_t i, const char *s, mlt_cnn_layer_t *out, char *why,
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
        fmt(why, whylen, "%s[%u] = '%.64s' %s", subj, i, s, bad);
        return -EINVAL;
    }
    *out = l;
    return 0;
}

void mlt_jobk_cnn_spec(const mlt_cnn_layer_t *l, char *buf, size_t len)
{
    switch (l->op) {
    case MLT_CNN_CONV: fmt(buf, len, "conv%ux%ux%u", l->k, l->k, l->n); break;
    case MLT_CNN_POOL: fmt(buf, len, "pool%u", l->k); break;
    case MLT_CNN_FC: fmt(buf, len, "fc%u", l->n); break;
    default: fmt(buf, len, "?"); break;
    }
}

/* Strings of a job end up in messages, logs and the re-written job text:
 * control characters (a newline, a NUL from \x00) are refused where a string
 * value is read, so no message spans two lines and re-writing never grows. */
int mlt_jobk_check_printable(const char *subj, const char *s, char *why, size_t whylen)
{
    for (const unsigned char *p = (const unsigned char *)s; p && *p; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            fmt(why, whylen, "%s has a control character (0x%02x) at byte %zu", subj, *p,
                (size_t)(p - (const unsigned char *)s));
            return -EINVAL;
        }
    }
    return 0;
}

/* ---- a key's own bounds ---- */

/* The key's own bounds. 0, or -EINVAL with why; *idxp becomes the index of
 * the list entry at fault (else it is left alone). */
int mlt_jobk_check_value(const jkey_t *k, const char *subj, const jval_t *v, char *why,
                         size_t whylen, int *idxp)
{
    switch (k->type) {
    case JK_INT:
    case JK_INT64:
        if (v->i < k->min_i || v->i > k->max_i) {
            fmt(why, whylen, "%s must be between %lld and %lld (got %lld)", subj, k->min_i,
                k->max_i, v->i);
            return -EINVAL;
        }
        return 0;
    case JK_DOUBLE:
        if (!(v->d >= k->min_d && v->d <= k->max_d) || (k->max_open && v->d >= k->max_d)) {
            if (k->min_d == -DBL_MAX)
                fmt(why, whylen, "%s must be a finite number (got %g)", subj, v->d);
            else if (k->max_open)
                fmt(why, whylen, "%s must be at least %g and less than %g (got %g)", subj, k->min_d,
                    k->max_d, v->d);
            else
                fmt(why, whylen, "%s must be between %g and %g (got %g)", subj, k->min_d, k->max_d,
                    v->d);
            return -EINVAL;
        }
        return 0;
    case JK_STRING:
        if (!v->s) {
            fmt(why, whylen, "%s is required", subj);
            return -EINVAL;
        }
        return k->check ? k->check(subj, v->s, why, whylen) : 0;
    case JK_ENUM:
        if (!mlt_jobk_enum_name(k->names, v->i)) {
            char names[256];
            mlt_jobk_fmt_names(names, sizeof names, k->names);
            fmt(why, whylen, "%s must be %s (got %lld)", subj, names, v->i);
            return -EINVAL;
        }
        return 0;
    case JK_INTLIST:
    case JK_NUMLIST:
    case JK_CNN:
        if (v->n > k->max_n || v->n < k->min_n) {
            if (v->n == 0)
                fmt(why, whylen, "%s must not be empty", subj);
            else
                fmt(why, whylen, "%s must have at most %u entries (got %u)", subj, k->max_n, v->n);
            return -EINVAL;
        }
        for (uint32_t i = 0; i < v->n; i++) {
            if (k->type == JK_INTLIST) {
                uint32_t x = ((const uint32_t *)v->list)[i];
                if ((long long)x < k->min_i || (long long)x > k->max_i) {
                    fmt(why, whylen, "%s[%u] must be between %lld and %lld (got %u)", subj, i,
                        k->min_i, k->max_i, x);
                    *idxp = (int)i;
                    return -EINVAL;
                }
            } else if (k->type == JK_NUMLIST) {
                const double *d = v->list;
                if (!(d[i] >= -DBL_MAX && d[i] <= DBL_MAX)) {
                    fmt(why, whylen, "%s[%u] must be a finite number (got %g)", subj, i, d[i]);
                    *idxp = (int)i;
                    return -EINVAL;
                }
                if (i > 0 && !(d[i] > d[i - 1])) {
                    fmt(why, whylen,
                        "%s must be ascending without repeats ([%u] = %g follows [%u] = %g)", subj,
                        i, d[i], i - 1, d[i - 1]);
                    *idxp = (int)i;
                    return -EINVAL;
                }
            } else {
                const mlt_cnn_layer_t *l = v->list;
                char spec[48];
                mlt_jobk_cnn_spec(&l[i], spec, sizeof spec);
                mlt_cnn_layer_t again;
                if (mlt_jobk_cnn_parse(subj, i, spec, &again, why, whylen)) { /* from a struct */
                    *idxp = (int)i;
                    return -EINVAL;
                }
                if (i > 0 && l[i].op != MLT_CNN_FC && l[i - 1].op == MLT_CNN_FC) {
                    fmt(why, whylen,
                        "%s[%u] = '%s' follows an fc layer; conv and pool layers must come "
                        "before the first fc",
                        subj, i, spec);
                    *idxp = (int)i;
                    return -EINVAL;
                }
            }
        }
        return 0;
    case JK_BOOL:
    case JK_GROUP:
    case JK_TUNABLES: return 0;
    }
    return -EINVAL;
}

/* Writes "FILE:LINE: what" (line of the first of the paths the file gave;
 * "FILE: what" when none; "what" without a file) and returns -EINVAL. The
 * list of paths ends with NULL. */
static int report(const pctx_t *p, char *err, size_t errlen, const char *what, const char *path,
                  ...)
{
    unsigned line = 0;
    va_list ap;
    va_start(ap, path);
    for (const char *q = path; q && line == 0; q = va_arg(ap, const char *))
        line = mlt_jobk_ctx_line(p, q);
    va_end(ap);
    if (!p || !p->file)
        fmt(err, errlen, "%s", what);
    else if (line)
        fmt(err, errlen, "%s:%u: %s", p->file, line, what);
    else
        fmt(err, errlen, "%s: %s", p->file, what);
    return -EINVAL;
}

/* ---- checks between keys ---- */

static const char *model_name(const mlt_job_t *job)
{
    const char *s = mlt_jobk_enum_name(mlt_jobk_model_names, job->model.type);
    return s ? s : "?";
}

/* A tunable's own consistency, then the values a known name allows. */
static int validate_tunable(const mlt_tunable_t *t, const pctx_t *p, char *err, size_t errlen)
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
            fmt(why, sizeof why, "%s must be one of %s (got %g)", pdef, pval, t->def);
            return report(p, err, errlen, why, pdef, NULL);
        }
    } else {
        if (!(t->min < t->max)) {
            fmt(why, sizeof why, "%s (%g) must be less than %s (%g)", pmin, t->min, pmax, t->max);
            return report(p, err, errlen, why, pmin, pmax, NULL);
        }
        if (t->kind == MLT_TUNABLE_LOG && !(t->min > 0)) {
            fmt(why, sizeof why, "%s must be > 0 for scale \"log\" (got %g)", pmin, t->min);
            return report(p, err, errlen, why, pmin, NULL);
        }
        if (!(t->def >= t->min && t->def <= t->max)) {
            fmt(why, sizeof why, "%s must be between min (%g) and max (%g) (got %g)", pdef, t->min,
                t->max, t->def);
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
                      (!known[j].integer || is_integral(x));
            if (ok)
                continue;
            char subj[128];
            if (t->kind == MLT_TUNABLE_DISCRETE)
                fmt(subj, sizeof subj, "%s[%u]", pval, i);
            else
                fmt(subj, sizeof subj, "%s", i ? pmax : pmin);
            fmt(why, sizeof why, "%s must be %s, as %s (got %g)", subj, known[j].range,
                known[j].what, x);
            return report(p, err, errlen, why, t->kind == MLT_TUNABLE_DISCRETE ? pval : subj, NULL);
        }
    }
    return 0;
}

/* Everything between keys, and every key's bounds again (a job changed with
 * mlt_job_set, or built by hand). Messages point at the file when p has one. */
int mlt_jobk_validate(const mlt_job_t *job, const pctx_t *p, char *err, size_t errlen)
{
    char why[512];
    int idx = -1;
    for (size_t i = 0; i < mlt_jobk_n_keys; i++) {
        const jkey_t *k = &mlt_jobk_keys[i];
        if (k->in_tunable || k->type == JK_GROUP || k->type == JK_TUNABLES)
            continue;
        jval_t v = mlt_jobk_load_value(job, k);
        if (mlt_jobk_check_value(k, k->path, &v, why, sizeof why, &idx))
            return report(p, err, errlen, why, k->path, NULL);
    }
    if (job->n_tunables > MLT_JOB_MAX_TUNABLES || (job->n_tunables && !job->tunables)) {
        fmt(why, sizeof why, "tunables must have at most %u entries (got %u)", MLT_JOB_MAX_TUNABLES,
            job->n_tunables);
        return report(p, err, errlen, why, "tunables", NULL);
    }
    for (uint32_t t = 0; t < job->n_tunables; t++) {
        const mlt_tunable_t *tu = &job->tunables[t];
        for (size_t i = 0; i < mlt_jobk_n_keys; i++) {
            const jkey_t *k = &mlt_jobk_keys[i];
            if (!k->in_tunable)
                continue;
            if (tu->kind == MLT_TUNABLE_DISCRETE ? k->off == TOFF(min) || k->off == TOFF(max)
                                                 : k->type == JK_NUMLIST)
                continue;
            char subj[128];
            fmt(subj, sizeof subj, "tunables.%s.%s", tu->name, leaf_of(k));
            jval_t v = mlt_jobk_load_value(tu, k);
            if (k->type == JK_ENUM && tu->kind == MLT_TUNABLE_DISCRETE)
                continue;
            if (mlt_jobk_check_value(k, subj, &v, why, sizeof why, &idx))
                return report(p, err, errlen, why, subj, NULL);
        }
        for (uint32_t u = 0; u < t; u++) {
            if (strcmp(job->tunables[u].name, tu->name) == 0) {
                fmt(why, sizeof why, "tunables.%s is given twice", tu->name);
                return report(p, err, errlen, why, "tunables", NULL);
            }
        }
        int rc = validate_tunable(tu, p, err, errlen);
        if (rc)
            return rc;
    }

    const char *mt = model_name(job);
    const char *df = mlt_jobk_enum_name(mlt_jobk_format_names, job->data.format);
    switch (job->model.type) {
    case MLT_MODEL_MLP:
        if (job->model.n_layers == 0) {
            fmt(why, sizeof why,
                "model.type \"mlp\" needs model.layers, its hidden layer sizes such as "
                "[256, 256] (for none use model.type \"softmax\")");
            return report(p, err, errlen, why, "model.layers", "model.type", NULL);
        }
        break;
    case MLT_MODEL_CNN:
        if (job->model.n_cnn == 0) {
            fmt(why, sizeof why,
                "model.type \"cnn\" needs model.cnn, its layers such as [\"conv5x5x32\", "
                "\"pool2\", \"fc256\"]");
            return report(p, err, errlen, why, "model.cnn", "model.type", NULL);
        }
        break;
    default: break;
    }
    if (job->model.type == MLT_MODEL_MF && job->data.format == MLT_DATA_IDX) {
        fmt(why, sizeof why,
            "model.type \"mf\" needs data.format \"ratings\" or \"synthetic\" (got \"%s\")", df);
        return report(p, err, errlen, why, "data.format", "model.type", NULL);
    }
    if (job->model.type != MLT_MODEL_MF && job->model.type != MLT_MODEL_EXTERNAL &&
        job->data.format != MLT_DATA_IDX) {
        fmt(why, sizeof why, "model.type \"%s\" needs data.format \"idx\" (got \"%s\")", mt, df);
        return report(p, err, errlen, why, "data.format", "model.type", NULL);
    }
    if (job->data.format == MLT_DATA_RATINGS && job->data.ratings[0] == '\0') {
        fmt(why, sizeof why, "data.format \"ratings\" needs data.ratings, the ratings file");
        return report(p, err, errlen, why, "data.ratings", "data.format", NULL);
    }
    if (job->data.format == MLT_DATA_SYNTHETIC) {
        long long cells = (long long)job->data.synthetic.users * job->data.synthetic.items;
        if (job->data.synthetic.ratings > cells) {
            fmt(why, sizeof why,
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
        fmt(why, sizeof why,
            "update.average keeps a weight average for update.rule \"sgd\" or \"nesterov\" "
            "(the sf- rules always do); \"%s\" cannot keep one",
            rule);
        return report(p, err, errlen, why, "update.average", "update.rule", NULL);
    }
    if (job->model.type == MLT_MODEL_MF && job->model.metric == MLT_METRIC_ACCURACY) {
        fmt(why, sizeof why, "model.type \"mf\" is measured by rmse, not accuracy");
        return report(p, err, errlen, why, "model.metric", "model.type", NULL);
    }
    if (mlt_job_rmse(job) && job->stop.target_accuracy > 0) {
        fmt(why, sizeof why,
            "stop.target_accuracy is for classifiers; model.type \"%s\" (metric rmse) stops at "
            "stop.target_rmse", mt);
        return report(p, err, errlen, why, "stop.target_accuracy", NULL);
    }
    if (!mlt_job_rmse(job) && job->stop.target_rmse > 0) {
        fmt(why, sizeof why,
            "stop.target_rmse is for model.type \"mf\" or model.metric \"rmse\"; \"%s\" stops "
            "at stop.target_accuracy", mt);
        return report(p, err, errlen, why, "stop.target_rmse", NULL);
    }
    return 0;
}

/* ---- the API ---- */

int mlt_job_validate(const mlt_job_t *job, char *err, size_t errlen)
{
    return mlt_jobk_validate(job, NULL, err, errlen);
}
