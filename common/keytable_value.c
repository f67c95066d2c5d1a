/* keytable_value.c - reading a value (see keytable.h): a libconfig setting or
 * "key=value" text becomes an mlt_kt_val_t of its row's type, a list entry by
 * entry. The first of a value's three steps (keytable.c): the type is checked
 * here, the row's bounds by mlt_kt_check, then the value is stored. */
#include "common/keytable.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/errtext.h"

/* ---- scalars from text ---- */

static int enum_parse(const char *const *names, const char *s)
{
    for (int i = 0; names[i]; i++)
        if (strcmp(names[i], s) == 0)
            return i;
    return -1;
}

/* An integer of k's type: digits, then (INT64) a decimal count suffix K, M,
 * G or T ("1M" is 1000000) or (SIZE) a binary one ("64K" is 65536); a sign
 * for INT and INT64 only. 0, or -EINVAL with why. */
static int parse_int(const mlt_kt_key_t *k, const char *subj, const char *s, long long *out,
                     char *why, size_t whylen)
{
    const char *p = s;
    bool neg = *p == '-';
    if (k->type != MLT_KT_SIZE)
        p += *p == '-' || *p == '+';
    long long v = 0, mult = 1, unit = k->type == MLT_KT_SIZE ? 1024 : 1000;
    bool overflow = false;
    const char *digits = p;
    for (; isdigit((unsigned char)*p); p++) {
        if (v > (LLONG_MAX - (*p - '0')) / 10)
            overflow = true;
        else
            v = v * 10 + (*p - '0');
    }
    bool any = p != digits;
    const char *suffix = strchr("kKmMgGtT", *p);
    if (*p && suffix) {
        for (int e = 0; e <= (suffix - "kKmMgGtT") / 2; e++)
            mult *= unit;
        p++;
    }
    bool scaled = k->type == MLT_KT_INT64 || k->type == MLT_KT_SIZE;
    if (!any || *p != '\0' || (mult > 1 && !scaled)) {
        if (k->type == MLT_KT_SIZE)
            return mlt_errf(-EINVAL, why, whylen,
                            "%s must be a size such as \"8G\" or 1048576 (got \"%.64s\")", subj, s);
        return mlt_errf(
            -EINVAL, why, whylen, "%s must be %s (got \"%.64s\")", subj,
            k->type == MLT_KT_INT64 ? "an integer or a count such as \"1M\"" : "an integer", s);
    }
    if (overflow || v > LLONG_MAX / mult)
        return mlt_errf(-EINVAL, why, whylen, "%s must be between %lld and %lld (got %.64s)", subj,
                        k->min_i, k->max_i, s);
    *out = neg ? -v * mult : v * mult;
    return 0;
}

static int parse_number(const char *subj, const char *s, double *out, char *why, size_t whylen)
{
    char *end;
    double d = strtod(s, &end);
    if (*s == '\0' || isspace((unsigned char)*s) || *end != '\0')
        return mlt_errf(-EINVAL, why, whylen, "%s must be a number (got \"%.64s\")", subj, s);
    *out = d;
    return 0;
}

/* ---- lists from text ---- */

/* Splits "a, b,c" (optionally inside one pair of [ ] or ( )) into trimmed
 * entries, quotes around an entry dropped; *np entries, each owned, in a new
 * array (caller frees both). An empty text is the empty list. */
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
    char **l = mlt_calloc(n + 1, sizeof *l);
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

/* a new list of n entries of k's type (n + 1 for the NULL of a STRLIST) */
static void *list_new(const mlt_kt_key_t *k, uint32_t n)
{
    switch (k->type) {
    case MLT_KT_STRLIST: return mlt_calloc((size_t)n + 1, sizeof(char *));
    case MLT_KT_INTLIST: return mlt_calloc(n, sizeof(uint32_t));
    case MLT_KT_NUMLIST: return mlt_calloc(n, sizeof(double));
    default: return mlt_calloc(n, k->spec->size);
    }
}

/* Entry i of a list, as text, into v->list. 0, or -EINVAL with why. */
static int entry_from_text(const mlt_kt_key_t *k, const char *subj, uint32_t i, const char *s,
                           mlt_kt_val_t *v, char *why, size_t whylen)
{
    char esubj[160];
    snprintf(esubj, sizeof esubj, "%s[%u]", subj, i);
    switch (k->type) {
    case MLT_KT_STRLIST: ((char **)v->list)[i] = mlt_strdup(s); return 0;
    case MLT_KT_INTLIST: {
        long long x;
        int rc = parse_int(k, esubj, s, &x, why, whylen);
        if (rc)
            return rc;
        ((uint32_t *)v->list)[i] = (uint32_t)(x < 0 ? 0 : x > UINT32_MAX ? UINT32_MAX : x);
        if (x < k->min_i || x > k->max_i)
            return mlt_errf(-EINVAL, why, whylen, "%s must be between %lld and %lld (got %lld)",
                            esubj, k->min_i, k->max_i, x);
        return 0;
    }
    case MLT_KT_NUMLIST: return parse_number(esubj, s, &((double *)v->list)[i], why, whylen);
    case MLT_KT_SPECLIST:
        return k->spec->parse(subj, i, s, (char *)v->list + (size_t)i * k->spec->size, why, whylen);
    default: return -EINVAL;
    }
}

/* ---- values from text ---- */

int mlt_kt_from_text(const mlt_kt_table_t *t, const mlt_kt_key_t *k, const char *subj,
                     const char *s, mlt_kt_val_t *v, char *why, size_t whylen)
{
    if (t->printable && mlt_kt_check_printable(subj, s, why, whylen))
        return -EINVAL;
    switch (k->type) {
    case MLT_KT_INT:
    case MLT_KT_INT64:
    case MLT_KT_SIZE: return parse_int(k, subj, s, &v->i, why, whylen);
    case MLT_KT_DOUBLE: return parse_number(subj, s, &v->d, why, whylen);
    case MLT_KT_STRING: v->s = s; return 0;
    case MLT_KT_PARSED: v->s = s; return k->parse(subj, s, &v->i, why, whylen);
    case MLT_KT_BOOL: {
        static const char *const yes[] = {"true", "yes", "on", "1"};
        static const char *const no[] = {"false", "no", "off", "0"};
        for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
            if (strcmp(s, yes[i]) == 0 || strcmp(s, no[i]) == 0) {
                v->b = strcmp(s, yes[i]) == 0;
                return 0;
            }
        }
        return mlt_errf(-EINVAL, why, whylen, "%s must be true or false (got \"%.64s\")", subj, s);
    }
    case MLT_KT_ENUM: {
        int e = enum_parse(k->names, s);
        if (e < 0) {
            char names[256];
            mlt_kt_fmt_names(names, sizeof names, k->names);
            return mlt_errf(-EINVAL, why, whylen, "%s must be %s (got \"%.64s\")", subj, names, s);
        }
        v->i = e;
        return 0;
    }
    case MLT_KT_STRLIST:
    case MLT_KT_INTLIST:
    case MLT_KT_NUMLIST:
    case MLT_KT_SPECLIST: {
        uint32_t n;
        char **parts = split_list(s, &n);
        int rc = 0;
        if (n > k->max_n)
            rc = mlt_errf(-EINVAL, why, whylen, "%s must have at most %u entries (got %u)", subj,
                          k->max_n, n);
        v->n = n;
        v->list = n && !rc ? list_new(k, n) : NULL;
        for (uint32_t i = 0; !rc && i < n; i++)
            rc = entry_from_text(k, subj, i, parts[i], v, why, whylen);
        strs_free(parts, n);
        if (rc)
            mlt_kt_val_free(k, v);
        return rc;
    }
    case MLT_KT_GROUP:
    case MLT_KT_NAMED: break;
    }
    return mlt_errf(-EINVAL, why, whylen, "%s is a group; set one of its keys", subj);
}

int mlt_kt_set_text(const mlt_kt_table_t *t, void *base, const mlt_kt_key_t *k, const char *subj,
                    const char *s, char *why, size_t whylen)
{
    mlt_kt_val_t v = {0};
    int idx = -1;
    int rc = mlt_kt_from_text(t, k, subj, s, &v, why, whylen);
    if (!rc)
        rc = mlt_kt_check(k, subj, &v, why, whylen, &idx);
    if (rc) {
        mlt_kt_val_free(k, &v);
        return rc;
    }
    mlt_kt_store(base, k, &v);
    return 0;
}

/* ---- values from a libconfig setting ---- */

/* "SUBJ must be NOUN", or "key 'SUBJ' must be NOUN" where the table says */
static int wrong_type(const mlt_kt_table_t *t, const mlt_kt_key_t *k, const char *subj, char *why,
                      size_t whylen)
{
    char nbuf[256];
    return mlt_errf(-EINVAL, why, whylen,
                    t->quote_type_errors ? "key '%s' must be %s" : "%s must be %s", subj,
                    mlt_kt_type_noun(k, nbuf, sizeof nbuf));
}

static bool entry_type_ok(const mlt_kt_key_t *k, const config_setting_t *e)
{
    int et = config_setting_type(e);
    switch (k->type) {
    case MLT_KT_INTLIST: return et == CONFIG_TYPE_INT || et == CONFIG_TYPE_INT64;
    case MLT_KT_NUMLIST: return config_setting_is_number(e);
    default: return et == CONFIG_TYPE_STRING;
    }
}

/* a list setting (type already checked) -> v */
static int list_from_setting(const mlt_kt_table_t *t, const mlt_kt_key_t *k, const char *subj,
                             const config_setting_t *s, mlt_kt_val_t *v, char *why, size_t whylen,
                             unsigned *linep)
{
    int n = config_setting_length(s);
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        if (!entry_type_ok(k, e)) {
            *linep = config_setting_source_line(e);
            return wrong_type(t, k, subj, why, whylen);
        }
    }
    if ((unsigned)n > k->max_n)
        return mlt_errf(-EINVAL, why, whylen, "%s must have at most %u entries (got %d)", subj,
                        k->max_n, n);
    v->n = (uint32_t)n;
    v->list = n ? list_new(k, (uint32_t)n) : NULL;
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        int rc = 0;
        if (k->type == MLT_KT_INTLIST) {
            long long x = config_setting_get_int64(e);
            ((uint32_t *)v->list)[i] = (uint32_t)x;
            if (x < k->min_i || x > k->max_i)
                rc = mlt_errf(-EINVAL, why, whylen,
                              "%s[%d] must be between %lld and %lld (got %lld)", subj, i, k->min_i,
                              k->max_i, x);
        } else if (k->type == MLT_KT_NUMLIST) {
            ((double *)v->list)[i] = config_setting_type(e) == CONFIG_TYPE_FLOAT
                                         ? config_setting_get_float(e)
                                         : (double)config_setting_get_int64(e);
        } else {
            const char *str = config_setting_get_string(e);
            if (t->printable)
                rc = mlt_kt_check_printable(subj, str, why, whylen);
            if (!rc)
                rc = entry_from_text(k, subj, (uint32_t)i, str, v, why, whylen);
        }
        if (rc) {
            *linep = config_setting_source_line(e);
            mlt_kt_val_free(k, v);
            return rc;
        }
    }
    return 0;
}

int mlt_kt_from_setting(const mlt_kt_table_t *t, const mlt_kt_key_t *k, const char *subj,
                        const config_setting_t *s, mlt_kt_val_t *v, char *why, size_t whylen,
                        unsigned *linep)
{
    int ty = config_setting_type(s);
    bool is_int = ty == CONFIG_TYPE_INT || ty == CONFIG_TYPE_INT64;
    if (t->printable && ty == CONFIG_TYPE_STRING &&
        mlt_kt_check_printable(subj, config_setting_get_string(s), why, whylen))
        return -EINVAL;
    switch (k->type) {
    case MLT_KT_INT:
        if (!is_int)
            break;
        v->i = config_setting_get_int64(s);
        return 0;
    case MLT_KT_INT64:
    case MLT_KT_SIZE:
        if (is_int) {
            v->i = config_setting_get_int64(s);
            return 0;
        }
        if (ty != CONFIG_TYPE_STRING)
            break;
        return parse_int(k, subj, config_setting_get_string(s), &v->i, why, whylen);
    case MLT_KT_DOUBLE:
        if (is_int)
            v->d = (double)config_setting_get_int64(s);
        else if (ty == CONFIG_TYPE_FLOAT)
            v->d = config_setting_get_float(s);
        else
            break;
        return 0;
    case MLT_KT_STRING:
        if (ty != CONFIG_TYPE_STRING)
            break;
        v->s = config_setting_get_string(s);
        return 0;
    case MLT_KT_BOOL:
        if (ty != CONFIG_TYPE_BOOL)
            break;
        v->b = config_setting_get_bool(s) != 0;
        return 0;
    case MLT_KT_ENUM:
    case MLT_KT_PARSED:
        if (ty != CONFIG_TYPE_STRING)
            break;
        return mlt_kt_from_text(t, k, subj, config_setting_get_string(s), v, why, whylen);
    case MLT_KT_STRLIST:
    case MLT_KT_INTLIST:
    case MLT_KT_NUMLIST:
    case MLT_KT_SPECLIST:
        if (ty != CONFIG_TYPE_LIST && ty != CONFIG_TYPE_ARRAY)
            break;
        return list_from_setting(t, k, subj, s, v, why, whylen, linep);
    case MLT_KT_GROUP:
    case MLT_KT_NAMED: break;
    }
    return wrong_type(t, k, subj, why, whylen);
}
