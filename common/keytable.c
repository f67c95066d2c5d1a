/* keytable.c - the key-table engine (see keytable.h): rows and fields, a
 * key's own checks, and reading a libconfig text against a table.
 *
 * A value takes the same three steps whatever its source: read (a libconfig
 * setting or text becomes an mlt_kt_val_t of the row's type, in
 * keytable_value.c), check (the row's own bounds, mlt_kt_check, shared by
 * every source and by the domains' validate) and store. Checks between keys
 * are the domains'. */
#include "common/keytable.h"

#include <assert.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <string.h>

#include "common/alloc.h"
#include "common/cfgtext.h"
#include "common/errtext.h"

/* ---- rows and fields ---- */

const mlt_kt_key_t *mlt_kt_find(const mlt_kt_table_t *t, const char *path)
{
    for (size_t i = 0; path && i < t->n_keys; i++)
        if (!t->keys[i].in_elem && strcmp(t->keys[i].path, path) == 0)
            return &t->keys[i];
    return NULL;
}

const mlt_kt_key_t *mlt_kt_find_member(const mlt_kt_table_t *t, const char *member)
{
    for (size_t i = 0; member && i < t->n_keys; i++)
        if (t->keys[i].in_elem && strcmp(mlt_kt_leaf(&t->keys[i]), member) == 0)
            return &t->keys[i];
    return NULL;
}

const char *mlt_kt_leaf(const mlt_kt_key_t *k)
{
    const char *l = strrchr(k->path, '.');
    return l ? l + 1 : k->path;
}

bool mlt_kt_has_field(const mlt_kt_key_t *k)
{
    return k->type != MLT_KT_GROUP && k->type != MLT_KT_NAMED;
}

static void *field(void *base, const mlt_kt_key_t *k)
{
    return (char *)base + k->off;
}

static const void *cfield(const void *base, const mlt_kt_key_t *k)
{
    return (const char *)base + k->off;
}

static bool is_list(const mlt_kt_key_t *k)
{
    return k->type == MLT_KT_INTLIST || k->type == MLT_KT_NUMLIST || k->type == MLT_KT_SPECLIST;
}

static size_t elem_size(const mlt_kt_key_t *k)
{
    switch (k->type) {
    case MLT_KT_INTLIST: return sizeof(uint32_t);
    case MLT_KT_NUMLIST: return sizeof(double);
    case MLT_KT_SPECLIST: return k->spec->size;
    default: return 0;
    }
}

static void strs_free(char **l)
{
    for (size_t i = 0; l && l[i]; i++)
        mlt_free(l[i]);
    mlt_free(l);
}

void mlt_kt_defaults(const mlt_kt_table_t *t, void *base, bool elem)
{
    for (size_t i = 0; i < t->n_keys; i++) {
        const mlt_kt_key_t *k = &t->keys[i];
        if (k->in_elem != elem || !mlt_kt_has_field(k))
            continue;
        mlt_kt_val_t v = {.i = k->def_i, .d = k->def_d, .b = k->def_i != 0, .s = k->def_s};
        if (k->type == MLT_KT_PARSED) {
            int rc = k->parse(k->path, k->def_s, &v.i, NULL, 0);
            assert(rc == 0 && "a default that does not parse");
            (void)rc;
        }
        int idx = -1;
        assert((k->required || is_list(k) || k->type == MLT_KT_STRLIST ||
                mlt_kt_check(k, k->path, &v, NULL, 0, &idx) == 0) &&
               "a default outside its own bounds");
        (void)idx;
        mlt_kt_store(base, k, &v);
    }
}

void mlt_kt_store(void *base, const mlt_kt_key_t *k, mlt_kt_val_t *v)
{
    void *f = field(base, k);
    switch (k->type) {
    case MLT_KT_INT:
    case MLT_KT_ENUM:
    case MLT_KT_PARSED: *(int *)f = (int)v->i; break;
    case MLT_KT_INT64: *(int64_t *)f = v->i; break;
    case MLT_KT_SIZE: *(size_t *)f = (size_t)v->i; break;
    case MLT_KT_DOUBLE: *(double *)f = v->d; break;
    case MLT_KT_BOOL: *(bool *)f = v->b; break;
    case MLT_KT_STRING: {
        char **p = f;
        char *s = v->s ? mlt_strdup(v->s) : NULL;
        mlt_free(*p);
        *p = s;
        break;
    }
    case MLT_KT_STRLIST: {
        char ***p = f;
        strs_free(*p);
        *p = v->n ? v->list : NULL;
        if (!v->n)
            mlt_free(v->list);
        v->list = NULL;
        v->n = 0;
        break;
    }
    case MLT_KT_INTLIST:
    case MLT_KT_NUMLIST:
    case MLT_KT_SPECLIST: {
        void **p = f;
        mlt_free(*p);
        *p = v->list;
        *(uint32_t *)((char *)base + k->off_n) = v->n;
        v->list = NULL;
        v->n = 0;
        break;
    }
    case MLT_KT_GROUP:
    case MLT_KT_NAMED: break;
    }
}

mlt_kt_val_t mlt_kt_load(const void *base, const mlt_kt_key_t *k)
{
    mlt_kt_val_t v = {0};
    const void *f = cfield(base, k);
    switch (k->type) {
    case MLT_KT_INT:
    case MLT_KT_ENUM:
    case MLT_KT_PARSED: v.i = *(const int *)f; break;
    case MLT_KT_INT64: v.i = *(const int64_t *)f; break;
    case MLT_KT_SIZE: {
        size_t z = *(const size_t *)f;
        v.i = z > (size_t)LLONG_MAX ? LLONG_MAX : (long long)z;
        break;
    }
    case MLT_KT_DOUBLE: v.d = *(const double *)f; break;
    case MLT_KT_BOOL: v.b = *(const bool *)f; break;
    case MLT_KT_STRING: v.s = *(char *const *)f; break;
    case MLT_KT_STRLIST: {
        char **l = *(char **const *)f;
        v.list = l;
        while (l && l[v.n])
            v.n++;
        break;
    }
    case MLT_KT_INTLIST:
    case MLT_KT_NUMLIST:
    case MLT_KT_SPECLIST:
        v.list = *(void *const *)f;
        v.n = *(const uint32_t *)((const char *)base + k->off_n);
        break;
    case MLT_KT_GROUP:
    case MLT_KT_NAMED: break;
    }
    return v;
}

void mlt_kt_val_free(const mlt_kt_key_t *k, mlt_kt_val_t *v)
{
    if (k->type == MLT_KT_STRLIST)
        for (uint32_t i = 0; v->list && i < v->n; i++)
            mlt_free(((char **)v->list)[i]);
    mlt_free(v->list);
    v->list = NULL;
    v->n = 0;
}

void mlt_kt_free_fields(const mlt_kt_table_t *t, void *base, bool elem)
{
    for (size_t i = 0; i < t->n_keys; i++) {
        const mlt_kt_key_t *k = &t->keys[i];
        if (k->in_elem != elem)
            continue;
        if (k->type == MLT_KT_STRLIST) {
            strs_free(*(char ***)field(base, k));
            *(char ***)field(base, k) = NULL;
        } else if (k->type == MLT_KT_STRING || is_list(k)) {
            mlt_free(*(void **)field(base, k));
            *(void **)field(base, k) = NULL;
            if (is_list(k))
                *(uint32_t *)((char *)base + k->off_n) = 0;
        }
    }
}

void mlt_kt_copy(const mlt_kt_table_t *t, void *dst, const void *src, size_t size)
{
    memcpy(dst, src, size);
    for (size_t i = 0; i < t->n_keys; i++) {
        const mlt_kt_key_t *k = &t->keys[i];
        if (k->in_elem)
            continue;
        mlt_kt_val_t v = mlt_kt_load(src, k);
        if (k->type == MLT_KT_STRING) {
            *(char **)field(dst, k) = v.s ? mlt_strdup(v.s) : NULL;
        } else if (k->type == MLT_KT_STRLIST) {
            char **d = NULL;
            if (v.n) {
                d = mlt_calloc(v.n + 1, sizeof *d);
                for (uint32_t j = 0; j < v.n; j++)
                    d[j] = mlt_strdup(((char **)v.list)[j]);
            }
            *(char ***)field(dst, k) = d;
        } else if (is_list(k)) {
            void *d = NULL;
            if (v.n) {
                d = mlt_malloc(v.n * elem_size(k));
                memcpy(d, v.list, v.n * elem_size(k));
            }
            *(void **)field(dst, k) = d;
        }
    }
}

/* ---- checks ---- */

bool mlt_kt_is_integral(double v)
{
    return v >= -9.0e15 && v <= 9.0e15 && v == (double)(long long)v;
}

void mlt_kt_fmt_names(char *buf, size_t len, const char *const *names)
{
    size_t used = 0;
    snprintf(buf, len, "one of");
    used = strlen(buf);
    for (size_t i = 0; names[i] && used + 1 < len; i++) {
        snprintf(buf + used, len - used, "%s \"%s\"", i ? "," : "", names[i]);
        used += strlen(buf + used);
    }
}

const char *mlt_kt_enum_name(const char *const *names, long long v)
{
    for (long long i = 0; names && names[i]; i++)
        if (i == v)
            return names[i];
    return NULL;
}

const char *mlt_kt_type_noun(const mlt_kt_key_t *k, char *buf, size_t len)
{
    switch (k->type) {
    case MLT_KT_GROUP: return "a group { ... }";
    case MLT_KT_NAMED: return "a group of named groups";
    case MLT_KT_INT: return "an integer";
    case MLT_KT_INT64: return "an integer or a count such as \"1M\"";
    case MLT_KT_SIZE: return "an integer or a size string such as \"8G\"";
    case MLT_KT_DOUBLE: return "a number";
    case MLT_KT_STRING:
    case MLT_KT_PARSED: return "a string";
    case MLT_KT_BOOL: return "true or false";
    case MLT_KT_ENUM: mlt_kt_fmt_names(buf, len, k->names); return buf;
    case MLT_KT_STRLIST: return "a list of strings";
    case MLT_KT_INTLIST: return "a list of integers";
    case MLT_KT_NUMLIST: return "a list of numbers";
    case MLT_KT_SPECLIST: return k->spec->noun;
    }
    return "?";
}

int mlt_kt_check_printable(const char *subj, const char *s, char *why, size_t whylen)
{
    for (const unsigned char *p = (const unsigned char *)s; p && *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return mlt_errf(-EINVAL, why, whylen, "%s has a control character (0x%02x) at byte %zu",
                            subj, *p, (size_t)(p - (const unsigned char *)s));
    return 0;
}

static int check_int(const mlt_kt_key_t *k, const char *subj, long long x, char *why, size_t whylen)
{
    if (x < k->min_i || x > k->max_i)
        return mlt_errf(-EINVAL, why, whylen, "%s must be between %lld and %lld (got %lld)", subj,
                        k->min_i, k->max_i, x);
    if (k->multiple && x % k->multiple != 0)
        return mlt_errf(-EINVAL, why, whylen, "%s must be a multiple of %lld (got %lld)", subj,
                        k->multiple, x);
    return 0;
}

static int check_double(const mlt_kt_key_t *k, const char *subj, double d, char *why, size_t whylen)
{
    if (d >= k->min_d && d <= k->max_d && !(k->max_open && d >= k->max_d))
        return 0; /* NaN fails */
    if (k->min_d == -DBL_MAX)
        return mlt_errf(-EINVAL, why, whylen, "%s must be a finite number (got %g)", subj, d);
    if (k->max_open)
        return mlt_errf(-EINVAL, why, whylen, "%s must be at least %g and less than %g (got %g)",
                        subj, k->min_d, k->max_d, d);
    return mlt_errf(-EINVAL, why, whylen, "%s must be between %g and %g (got %g)", subj, k->min_d,
                    k->max_d, d);
}

/* the entries of a list value; *idxp as for mlt_kt_check */
static int check_entries(const mlt_kt_key_t *k, const char *subj, const mlt_kt_val_t *v, char *why,
                         size_t whylen, int *idxp)
{
    for (uint32_t i = 0; i < v->n; i++) {
        int rc = 0;
        if (k->type == MLT_KT_STRLIST) {
            if (((char *const *)v->list)[i][0] == '\0')
                return mlt_errf(-EINVAL, why, whylen,
                                "%s must not have an empty entry (entry %u is empty)", subj, i);
        } else if (k->type == MLT_KT_INTLIST) {
            uint32_t x = ((const uint32_t *)v->list)[i];
            if ((long long)x < k->min_i || (long long)x > k->max_i)
                rc = mlt_errf(-EINVAL, why, whylen, "%s[%u] must be between %lld and %lld (got %u)",
                              subj, i, k->min_i, k->max_i, x);
        } else if (k->type == MLT_KT_NUMLIST) {
            const double *d = v->list;
            if (!(d[i] >= -DBL_MAX && d[i] <= DBL_MAX))
                rc = mlt_errf(-EINVAL, why, whylen, "%s[%u] must be a finite number (got %g)", subj,
                              i, d[i]);
            else if (i > 0 && !(d[i] > d[i - 1]))
                rc = mlt_errf(-EINVAL, why, whylen,
                              "%s must be ascending without repeats ([%u] = %g follows [%u] = %g)",
                              subj, i, d[i], i - 1, d[i - 1]);
        }
        if (rc) {
            *idxp = (int)i;
            return rc;
        }
    }
    if (k->type == MLT_KT_SPECLIST && v->n && k->spec->check)
        return k->spec->check(subj, v->list, v->n, why, whylen, idxp);
    return 0;
}

int mlt_kt_check(const mlt_kt_key_t *k, const char *subj, const mlt_kt_val_t *v, char *why,
                 size_t whylen, int *idxp)
{
    char names[256];
    switch (k->type) {
    case MLT_KT_INT:
    case MLT_KT_INT64:
    case MLT_KT_SIZE:
    case MLT_KT_PARSED: return check_int(k, subj, v->i, why, whylen);
    case MLT_KT_DOUBLE: return check_double(k, subj, v->d, why, whylen);
    case MLT_KT_STRING:
        if (!v->s)
            return mlt_errf(-EINVAL, why, whylen, "%s is required", subj);
        return k->check ? k->check(subj, v->s, why, whylen) : 0;
    case MLT_KT_ENUM:
        if (mlt_kt_enum_name(k->names, v->i))
            return 0;
        mlt_kt_fmt_names(names, sizeof names, k->names);
        return mlt_errf(-EINVAL, why, whylen, "%s must be %s (got %lld)", subj, names, v->i);
    case MLT_KT_STRLIST:
    case MLT_KT_INTLIST:
    case MLT_KT_NUMLIST:
    case MLT_KT_SPECLIST:
        if (v->n > k->max_n || v->n < k->min_n) {
            if (v->n == 0)
                return mlt_errf(-EINVAL, why, whylen, "%s must not be empty", subj);
            return mlt_errf(-EINVAL, why, whylen, "%s must have at most %u entries (got %u)", subj,
                            k->max_n, v->n);
        }
        return check_entries(k, subj, v, why, whylen, idxp);
    case MLT_KT_BOOL:
    case MLT_KT_GROUP:
    case MLT_KT_NAMED: return 0;
    }
    return -EINVAL;
}

/* ---- the parse context ---- */

void mlt_kt_ctx_add(mlt_kt_ctx_t *p, const char *path, unsigned line)
{
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 64;
        p->lines = mlt_realloc(p->lines, p->cap * sizeof *p->lines);
    }
    p->lines[p->n++] = (mlt_kt_line_t){mlt_strdup(path), line};
}

unsigned mlt_kt_ctx_line(const mlt_kt_ctx_t *p, const char *path)
{
    for (size_t i = 0; p && path && i < p->n; i++)
        if (strcmp(p->lines[i].path, path) == 0)
            return p->lines[i].line;
    return 0;
}

void mlt_kt_ctx_free(mlt_kt_ctx_t *p)
{
    for (size_t i = 0; i < p->n; i++)
        mlt_free(p->lines[i].path);
    mlt_free(p->lines);
    p->lines = NULL;
    p->n = p->cap = 0;
}

/* ---- reading a file's settings ---- */

int mlt_kt_read_key(mlt_kt_ctx_t *p, void *base, const mlt_kt_key_t *k, const char *path,
                    const config_setting_t *s, char *err, size_t errlen)
{
    char why[512];
    unsigned line = config_setting_source_line(s);
    unsigned eline = 0;
    int idx = -1;
    mlt_kt_val_t v = {0};
    int rc = mlt_kt_from_setting(p->table, k, path, s, &v, why, sizeof why, &eline);
    if (!rc) {
        rc = mlt_kt_check(k, path, &v, why, sizeof why, &idx);
        if (rc && idx >= 0) {
            const config_setting_t *e = config_setting_get_elem(s, (unsigned)idx);
            eline = e ? config_setting_source_line(e) : 0;
        }
    }
    if (rc) {
        mlt_kt_val_free(k, &v);
        return mlt_errf(rc, err, errlen, "%s:%u: %s", p->file, eline ? eline : line, why);
    }
    mlt_kt_store(base, k, &v);
    return 0;
}

/* every setting of group g (whose path is prefix, "" for the root) */
static int read_group(mlt_kt_ctx_t *p, void *base, const config_setting_t *g, const char *prefix,
                      char *err, size_t errlen)
{
    int n = config_setting_length(g);
    for (int i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        const char *name = config_setting_name(s);
        unsigned line = config_setting_source_line(s);
        char path[160];
        snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", name ? name : "?");
        const mlt_kt_key_t *k = mlt_kt_find(p->table, path);
        if (!k)
            return mlt_errf(-EINVAL, err, errlen, "%s:%u: unknown key '%s'", p->file, line, path);
        int rc;
        if (!mlt_kt_has_field(k)) {
            if (!config_setting_is_group(s)) {
                char nbuf[64];
                const char *noun = k->type == MLT_KT_NAMED && p->table->named_noun
                                       ? p->table->named_noun
                                       : mlt_kt_type_noun(k, nbuf, sizeof nbuf);
                return mlt_errf(-EINVAL, err, errlen, "%s:%u: %s must be %s", p->file, line, path,
                                noun);
            }
            mlt_kt_ctx_add(p, path, line);
            rc = k->type == MLT_KT_GROUP ? read_group(p, base, s, path, err, errlen)
                                         : p->table->read_named(p, base, k, s, err, errlen);
        } else {
            rc = mlt_kt_read_key(p, base, k, path, s, err, errlen);
            mlt_kt_ctx_add(p, path, line);
        }
        if (rc)
            return rc;
    }
    return 0;
}

int mlt_kt_read_text(mlt_kt_ctx_t *p, void *base, const char *text, bool allow_include,
                     const char *hint, char *err, size_t errlen)
{
    /* A text that may not include is checked before libconfig sees it, which
     * would open the included file; one that may is parsed first, so that a
     * syntax error is named before a wrapped integer. */
    int rc = allow_include ? 0 : mlt_cfgtext_check(text, p->file, false, hint, err, errlen);
    if (rc)
        return rc;
    config_t cfg;
    config_init(&cfg);
    if (!config_read_string(&cfg, text)) {
        const char *why = config_error_text(&cfg);
        rc = mlt_errf(-EINVAL, err, errlen, "%s:%d: %s", p->file, config_error_line(&cfg),
                      why ? why : "parse error");
        goto done;
    }
    if (allow_include) {
        rc = mlt_cfgtext_check(text, p->file, true, hint, err, errlen);
        if (rc)
            goto done;
    }
    rc = read_group(p, base, config_root_setting(&cfg), "", err, errlen);
    for (size_t i = 0; !rc && i < p->table->n_keys; i++) {
        const mlt_kt_key_t *k = &p->table->keys[i];
        if (k->required && !k->in_elem && !mlt_kt_ctx_line(p, k->path)) {
            char nbuf[256];
            rc =
                mlt_errf(-EINVAL, err, errlen, "%s: %s is required (%s)", p->file, k->path,
                         k->type == MLT_KT_ENUM ? mlt_kt_type_noun(k, nbuf, sizeof nbuf) : k->desc);
        }
    }
done:
    config_destroy(&cfg);
    return rc;
}
