/* jobfile_value.c - reading a value (see jobfile.h): a libconfig setting or
 * mlt_job_set text becomes a jval_t of its key's type, a list element by
 * element. The first of a value's three steps (jobfile.c): the type is checked
 * here, the key's bounds in jobfile_check.c, and jobfile.c stores it. */
#include "common/jobfile.h"

#include "common/jobfile_int.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <libconfig.h>

#include "common/alloc.h"

/* ---- reading a value: libconfig setting or text -> jval_t ---- */

static int enum_parse(const char *const *names, const char *s)
{
    for (int i = 0; names[i]; i++)
        if (strcmp(names[i], s) == 0)
            return i;
    return -1;
}

void mlt_jobk_val_free(jval_t *v)
{
    mlt_free(v->list);
    v->list = NULL;
    v->n = 0;
}

/* Digits with an optional decimal count suffix K, M, G or T ("1M" is
 * 1000000), an optional leading '-'. 0, or -EINVAL with why. */
static int parse_count(const jkey_t *k, const char *subj, const char *s, long long *out, char *why,
                       size_t whylen)
{
    const char *p = s;
    bool neg = *p == '-';
    p += neg;
    long long v = 0, mult = 1;
    bool overflow = false;
    const char *digits = p;
    for (; isdigit((unsigned char)*p); p++) {
        if (v > (LLONG_MAX - (*p - '0')) / 10)
            overflow = true;
        else
            v = v * 10 + (*p - '0');
    }
    bool any = p != digits;
    switch (*p) {
    case 'k':
    case 'K':
        mult = 1000LL;
        p++;
        break;
    case 'm':
    case 'M':
        mult = 1000000LL;
        p++;
        break;
    case 'g':
    case 'G':
        mult = 1000000000LL;
        p++;
        break;
    case 't':
    case 'T':
        mult = 1000000000000LL;
        p++;
        break;
    default: break;
    }
    if (!any || *p != '\0' || (mult > 1 && k->type != JK_INT64)) {
        fmt(why, whylen, "%s must be %s (got \"%.64s\")", subj,
            k->type == JK_INT64 ? "an integer or a count such as \"1M\"" : "an integer", s);
        return -EINVAL;
    }
    if (overflow || v > LLONG_MAX / mult) {
        fmt(why, whylen, "%s must be between %lld and %lld (got %.64s)", subj, k->min_i, k->max_i,
            s);
        return -EINVAL;
    }
    *out = neg ? -v * mult : v * mult;
    return 0;
}

static int parse_number(const char *subj, const char *s, double *out, char *why, size_t whylen)
{
    char *end;
    double d = strtod(s, &end);
    if (*s == '\0' || isspace((unsigned char)*s) || *end != '\0') {
        fmt(why, whylen, "%s must be a number (got \"%.64s\")", subj, s);
        return -EINVAL;
    }
    *out = d;
    return 0;
}

/* Splits "a, b,c" (optionally inside one pair of [ ] or ( )) into trimmed
 * entries; *np entries, each owned, in a new array (caller frees both). An
 * empty text is the empty list. */
static char **split_list(const char *s, uint32_t *np)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t len = strlen(s);
    while (len > 0 && isspace((unsigned char)s[len - 1]))
        len--;
    if (len >= 2 && ((s[0] == '[' && s[len - 1] == ']') || (s[0] == '(' && s[len - 1] == ')'))) {
        s++;
        len -= 2;
    }
    bool blank = true;
    for (size_t i = 0; i < len; i++)
        blank &= isspace((unsigned char)s[i]) != 0;
    *np = 0;
    if (blank)
        return NULL;
    uint32_t n = 1;
    for (size_t i = 0; i < len; i++)
        n += s[i] == ',';
    char **l = mlt_calloc(n, sizeof *l);
    const char *p = s, *stop = s + len;
    for (uint32_t i = 0; i < n; i++) {
        const char *end = memchr(p, ',', (size_t)(stop - p));
        if (!end)
            end = stop;
        const char *b = p, *e = end;
        while (b < e && isspace((unsigned char)*b))
            b++;
        while (e > b && isspace((unsigned char)e[-1]))
            e--;
        if (e - b >= 2 && *b == '"' && e[-1] == '"') {
            b++;
            e--;
        }
        l[i] = mlt_malloc((size_t)(e - b) + 1);
        memcpy(l[i], b, (size_t)(e - b));
        l[i][e - b] = '\0';
        p = end < stop ? end + 1 : end;
    }
    *np = n;
    return l;
}

static void strs_free(char **l, uint32_t n)
{
    for (uint32_t i = 0; l && i < n; i++)
        mlt_free(l[i]);
    mlt_free(l);
}

/* Element i of a list value, as text, into v->list. 0, or -EINVAL with why. */
static int list_elem_from_text(const jkey_t *k, const char *subj, uint32_t i, const char *s,
                               jval_t *v, char *why, size_t whylen)
{
    char esubj[160];
    fmt(esubj, sizeof esubj, "%s[%u]", subj, i);
    switch (k->type) {
    case JK_INTLIST: {
        long long x;
        int rc = parse_count(k, esubj, s, &x, why, whylen);
        if (rc)
            return rc;
        ((uint32_t *)v->list)[i] = (uint32_t)(x < 0 ? 0 : x > UINT32_MAX ? UINT32_MAX : x);
        if (x < k->min_i || x > k->max_i) {
            fmt(why, whylen, "%s must be between %lld and %lld (got %lld)", esubj, k->min_i,
                k->max_i, x);
            return -EINVAL;
        }
        return 0;
    }
    case JK_NUMLIST: return parse_number(esubj, s, &((double *)v->list)[i], why, whylen);
    case JK_CNN:
        return mlt_jobk_cnn_parse(subj, i, s, &((mlt_cnn_layer_t *)v->list)[i], why, whylen);
    default: return -EINVAL;
    }
}

static size_t elem_size(const jkey_t *k)
{
    switch (k->type) {
    case JK_INTLIST: return sizeof(uint32_t);
    case JK_NUMLIST: return sizeof(double);
    case JK_CNN: return sizeof(mlt_cnn_layer_t);
    default: return 0;
    }
}

/* mlt_job_set text -> value of k's type. 0, or -EINVAL with why. */
int mlt_jobk_value_from_text(const jkey_t *k, const char *subj, const char *s, jval_t *v, char *why,
                             size_t whylen)
{
    if (mlt_jobk_check_printable(subj, s, why, whylen))
        return -EINVAL;
    switch (k->type) {
    case JK_INT:
    case JK_INT64: return parse_count(k, subj, s, &v->i, why, whylen);
    case JK_DOUBLE: return parse_number(subj, s, &v->d, why, whylen);
    case JK_STRING: v->s = s; return 0;
    case JK_BOOL: {
        static const char *const yes[] = {"true", "yes", "on", "1"};
        static const char *const no[] = {"false", "no", "off", "0"};
        for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
            if (strcmp(s, yes[i]) == 0 || strcmp(s, no[i]) == 0) {
                v->b = strcmp(s, yes[i]) == 0;
                return 0;
            }
        }
        fmt(why, whylen, "%s must be true or false (got \"%.64s\")", subj, s);
        return -EINVAL;
    }
    case JK_ENUM: {
        int e = enum_parse(k->names, s);
        if (e < 0) {
            char names[256];
            mlt_jobk_fmt_names(names, sizeof names, k->names);
            fmt(why, whylen, "%s must be %s (got \"%.64s\")", subj, names, s);
            return -EINVAL;
        }
        v->i = e;
        return 0;
    }
    case JK_INTLIST:
    case JK_NUMLIST:
    case JK_CNN: {
        uint32_t n;
        char **parts = split_list(s, &n);
        int rc = 0;
        if (n > k->max_n) {
            fmt(why, whylen, "%s must have at most %u entries (got %u)", subj, k->max_n, n);
            rc = -EINVAL;
        }
        v->n = n;
        v->list = n && !rc ? mlt_calloc(n, elem_size(k)) : NULL;
        for (uint32_t i = 0; !rc && i < n; i++)
            rc = list_elem_from_text(k, subj, i, parts[i], v, why, whylen);
        strs_free(parts, n);
        if (rc)
            mlt_jobk_val_free(v);
        return rc;
    }
    case JK_GROUP:
    case JK_TUNABLES: break;
    }
    fmt(why, whylen, "%s is a group; set one of its keys", subj);
    return -EINVAL;
}

/* A libconfig setting -> value of k's type. 0, or -EINVAL with why; *linep
 * becomes the line of the element at fault, if it is one. */
int mlt_jobk_value_from_setting(const jkey_t *k, const char *subj, const config_setting_t *s,
                                jval_t *v, char *why, size_t whylen, unsigned *linep)
{
    int t = config_setting_type(s);
    bool is_int = t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64;
    char nbuf[256];
    if (t == CONFIG_TYPE_STRING &&
        mlt_jobk_check_printable(subj, config_setting_get_string(s), why, whylen))
        return -EINVAL;
    switch (k->type) {
    case JK_INT:
        if (!is_int)
            break;
        v->i = config_setting_get_int64(s);
        return 0;
    case JK_INT64:
        if (is_int) {
            v->i = config_setting_get_int64(s);
            return 0;
        }
        if (t != CONFIG_TYPE_STRING)
            break;
        return parse_count(k, subj, config_setting_get_string(s), &v->i, why, whylen);
    case JK_DOUBLE:
        if (is_int)
            v->d = (double)config_setting_get_int64(s);
        else if (t == CONFIG_TYPE_FLOAT)
            v->d = config_setting_get_float(s);
        else
            break;
        return 0;
    case JK_STRING:
        if (t != CONFIG_TYPE_STRING)
            break;
        v->s = config_setting_get_string(s);
        return 0;
    case JK_BOOL:
        if (t != CONFIG_TYPE_BOOL)
            break;
        v->b = config_setting_get_bool(s) != 0;
        return 0;
    case JK_ENUM:
        if (t != CONFIG_TYPE_STRING)
            break;
        return mlt_jobk_value_from_text(k, subj, config_setting_get_string(s), v, why, whylen);
    case JK_INTLIST:
    case JK_NUMLIST:
    case JK_CNN: {
        if (t != CONFIG_TYPE_LIST && t != CONFIG_TYPE_ARRAY)
            break;
        int n = config_setting_length(s);
        for (int i = 0; i < n; i++) {
            const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
            int et = config_setting_type(e);
            bool ok = k->type == JK_INTLIST   ? et == CONFIG_TYPE_INT || et == CONFIG_TYPE_INT64
                      : k->type == JK_NUMLIST ? config_setting_is_number(e)
                                              : et == CONFIG_TYPE_STRING;
            if (!ok) {
                *linep = config_setting_source_line(e);
                fmt(why, whylen, "%s must be %s", subj, mlt_jobk_type_noun(k, nbuf, sizeof nbuf));
                return -EINVAL;
            }
        }
        if ((unsigned)n > k->max_n) {
            fmt(why, whylen, "%s must have at most %u entries (got %d)", subj, k->max_n, n);
            return -EINVAL;
        }
        v->n = (uint32_t)n;
        v->list = n ? mlt_calloc((size_t)n, elem_size(k)) : NULL;
        for (int i = 0; i < n; i++) {
            const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
            int rc = 0;
            char esubj[160];
            fmt(esubj, sizeof esubj, "%s[%d]", subj, i);
            if (k->type == JK_INTLIST) {
                long long x = config_setting_get_int64(e);
                ((uint32_t *)v->list)[i] = (uint32_t)x;
                if (x < k->min_i || x > k->max_i) {
                    fmt(why, whylen, "%s must be between %lld and %lld (got %lld)", esubj, k->min_i,
                        k->max_i, x);
                    rc = -EINVAL;
                }
            } else if (k->type == JK_NUMLIST) {
                ((double *)v->list)[i] = config_setting_type(e) == CONFIG_TYPE_FLOAT
                                             ? config_setting_get_float(e)
                                             : (double)config_setting_get_int64(e);
            } else if (!(rc = mlt_jobk_check_printable(subj, config_setting_get_string(e), why,
                                                       whylen))) {
                rc = mlt_jobk_cnn_parse(subj, (uint32_t)i, config_setting_get_string(e),
                                        &((mlt_cnn_layer_t *)v->list)[i], why, whylen);
            }
            if (rc) {
                *linep = config_setting_source_line(e);
                mlt_jobk_val_free(v);
                return rc;
            }
        }
        return 0;
    }
    case JK_GROUP:
    case JK_TUNABLES: break;
    }
    fmt(why, whylen, "%s must be %s", subj, mlt_jobk_type_noun(k, nbuf, sizeof nbuf));
    return -EINVAL;
}
