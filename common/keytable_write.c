/* keytable_write.c - writing (see keytable.h): a value in libconfig syntax,
 * a key's bounds as the documentation shows them, the documented default
 * config (conf/mltunerd.conf) and the key list (mlt_job_write_keys). */
#include "common/keytable.h"

#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "common/cfgtext.h"

#define KIB 1024LL

void mlt_kt_fmt_double(char *buf, size_t len, double d)
{
    double a = d < 0 ? -d : d;
    if (a == 0.0 || (a >= 1e-4 && a < 1e15)) {
        for (int prec = 0; prec <= 17; prec++) {
            snprintf(buf, len, "%.*f", prec, d);
            if (strtod(buf, NULL) == d)
                break;
        }
    } else {
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(buf, len, "%.*g", prec, d);
            if (strtod(buf, NULL) == d)
                break;
        }
    }
    if (!strpbrk(buf, ".eEni") && strlen(buf) + 3 <= len)
        strcat(buf, ".0");
}

/* "8G" for 8 GiB: the largest binary suffix that divides v exactly, else the
 * plain number; quoted when it has a suffix (a libconfig string) */
static void fmt_size(char *buf, size_t len, long long v, bool quoted)
{
    static const char suffix[] = "TGMK";
    for (int i = 0; v > 0 && i < 4; i++) {
        long long mult = KIB << (10 * (3 - i));
        if (v % mult == 0) {
            const char *q = quoted ? "\"" : "";
            snprintf(buf, len, "%s%lld%c%s", q, v / mult, suffix[i], q);
            return;
        }
    }
    snprintf(buf, len, "%lld", v);
}

void mlt_kt_write_value(FILE *f, const mlt_kt_key_t *k, const mlt_kt_val_t *v)
{
    char buf[64];
    switch (k->type) {
    case MLT_KT_INT: fprintf(f, "%lld", v->i); break;
    case MLT_KT_INT64:
        fprintf(f, "%lld%s", v->i, v->i > INT32_MAX || v->i < INT32_MIN ? "L" : "");
        break;
    case MLT_KT_SIZE:
        fmt_size(buf, sizeof buf, v->i, true);
        fputs(buf, f);
        break;
    case MLT_KT_DOUBLE:
        mlt_kt_fmt_double(buf, sizeof buf, v->d);
        fputs(buf, f);
        break;
    case MLT_KT_STRING: mlt_cfgtext_write_string(f, v->s ? v->s : ""); break;
    case MLT_KT_PARSED:
        if (v->s)
            mlt_cfgtext_write_string(f, v->s);
        else
            fprintf(f, "%lld", v->i);
        break;
    case MLT_KT_BOOL: fputs(v->b ? "true" : "false", f); break;
    case MLT_KT_ENUM: {
        const char *nm = mlt_kt_enum_name(k->names, v->i);
        mlt_cfgtext_write_string(f, nm ? nm : "?");
        break;
    }
    case MLT_KT_STRLIST:
        fputc('(', f);
        for (uint32_t i = 0; i < v->n; i++) {
            fputs(i ? ", " : " ", f);
            mlt_cfgtext_write_string(f, ((char *const *)v->list)[i]);
        }
        fputs(" )", f);
        break;
    case MLT_KT_INTLIST:
    case MLT_KT_NUMLIST:
    case MLT_KT_SPECLIST: {
        bool ints = true; /* a numlist of whole numbers is written as integers */
        for (uint32_t i = 0; k->type == MLT_KT_NUMLIST && i < v->n; i++) {
            double d = ((const double *)v->list)[i];
            ints &= mlt_kt_is_integral(d) && d >= INT32_MIN && d <= INT32_MAX;
        }
        fputc('[', f);
        for (uint32_t i = 0; i < v->n; i++) {
            fputs(i ? ", " : "", f);
            if (k->type == MLT_KT_INTLIST) {
                fprintf(f, "%u", ((const uint32_t *)v->list)[i]);
            } else if (k->type == MLT_KT_NUMLIST) {
                double d = ((const double *)v->list)[i];
                if (ints) {
                    fprintf(f, "%lld", (long long)d);
                } else {
                    mlt_kt_fmt_double(buf, sizeof buf, d);
                    fputs(buf, f);
                }
            } else {
                k->spec->format((const char *)v->list + (size_t)i * k->spec->size, buf, sizeof buf);
                mlt_cfgtext_write_string(f, buf);
            }
        }
        fputc(']', f);
        break;
    }
    case MLT_KT_GROUP:
    case MLT_KT_NAMED: break;
    }
}

void mlt_kt_bounds(const mlt_kt_key_t *k, char *buf, size_t len)
{
    char a[32], b[32], m[48] = "";
    buf[0] = '\0';
    switch (k->type) {
    case MLT_KT_INT:
    case MLT_KT_INT64:
    case MLT_KT_SIZE:
        if (k->type == MLT_KT_SIZE) {
            fmt_size(a, sizeof a, k->min_i, false);
            fmt_size(b, sizeof b, k->max_i, false);
        } else {
            snprintf(a, sizeof a, "%lld", k->min_i);
            snprintf(b, sizeof b, "%lld", k->max_i);
        }
        if (k->multiple) {
            char c[32];
            fmt_size(c, sizeof c, k->multiple, false);
            snprintf(m, sizeof m, ", a multiple of %s", c);
        }
        snprintf(buf, len, " [%s..%s%s]", a, b, m);
        break;
    case MLT_KT_DOUBLE:
        if (k->min_d != -DBL_MAX)
            snprintf(buf, len, " [%g..%g%s", k->min_d, k->max_d, k->max_open ? ")" : "]");
        break;
    case MLT_KT_INTLIST:
        snprintf(buf, len, " [entries %lld..%lld, at most %u]", k->min_i, k->max_i, k->max_n);
        break;
    case MLT_KT_STRLIST:
    case MLT_KT_NUMLIST:
    case MLT_KT_SPECLIST:
    case MLT_KT_NAMED: snprintf(buf, len, " [at most %u]", k->max_n); break;
    case MLT_KT_ENUM: {
        size_t u = 0;
        for (size_t j = 0; k->names[j] && u + 1 < len; j++) {
            snprintf(buf + u, len - u, "%s%s", j ? "|" : " [", k->names[j]);
            u += strlen(buf + u);
        }
        if (u + 2 < len)
            strcat(buf, "]");
        break;
    }
    case MLT_KT_STRING:
    case MLT_KT_PARSED:
    case MLT_KT_BOOL:
    case MLT_KT_GROUP: break;
    }
}

static mlt_kt_val_t default_value(const mlt_kt_key_t *k)
{
    return (mlt_kt_val_t){.i = k->def_i, .d = k->def_d, .b = k->def_i != 0, .s = k->def_s};
}

void mlt_kt_write_conf(FILE *f, const mlt_kt_table_t *t, const char *header)
{
    fputs(header, f);
    for (size_t i = 0; i < t->n_keys; i++) {
        const mlt_kt_key_t *k = &t->keys[i];
        char bounds[128];
        mlt_kt_bounds(k, bounds, sizeof bounds);
        fprintf(f, "\n# %s%s\n%s = ", k->desc, bounds, k->path);
        mlt_kt_val_t v = default_value(k);
        mlt_kt_write_value(f, k, &v);
        fputs(";\n", f);
    }
}

static const char *type_word(const mlt_kt_key_t *k)
{
    switch (k->type) {
    case MLT_KT_GROUP:
    case MLT_KT_NAMED: return "group";
    case MLT_KT_INT: return "int";
    case MLT_KT_INT64: return "int64";
    case MLT_KT_SIZE: return "size";
    case MLT_KT_DOUBLE: return "number";
    case MLT_KT_STRING:
    case MLT_KT_PARSED: return "string";
    case MLT_KT_BOOL: return "bool";
    case MLT_KT_ENUM: return "enum";
    case MLT_KT_INTLIST: return "[int]";
    case MLT_KT_NUMLIST: return "[number]";
    case MLT_KT_STRLIST:
    case MLT_KT_SPECLIST: return "[string]";
    }
    return "?";
}

void mlt_kt_write_keylist(FILE *f, const mlt_kt_table_t *t)
{
    for (size_t i = 0; i < t->n_keys; i++) {
        const mlt_kt_key_t *k = &t->keys[i];
        char def[160], bounds[96];
        mlt_kt_val_t v = default_value(k);
        if (k->required)
            snprintf(def, sizeof def, "(required)");
        else if (k->doc_def)
            snprintf(def, sizeof def, "%s", k->doc_def);
        else if (!mlt_kt_has_field(k))
            snprintf(def, sizeof def, "{ }");
        else {
            FILE *m = fmemopen(def, sizeof def, "w");
            if (m) {
                mlt_kt_write_value(m, k, &v);
                fclose(m);
            }
            def[sizeof def - 1] = '\0';
        }
        mlt_kt_bounds(k, bounds, sizeof bounds);
        fprintf(f, "%-28s %-8s %-24s %s%s\n", k->path, type_word(k), def, k->desc, bounds);
    }
}
