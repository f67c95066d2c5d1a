/* jobfile_write.c - a job as text (see jobfile.h): mlt_job_format writes every
 * key of the table with its value, mlt_job_write_keys the table itself. */
#include "common/jobfile.h"

#include "common/jobfile_int.h"

#include <assert.h>
#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/cfgtext.h"

/* the shortest decimal that reads back as d, written so that libconfig reads a
 * float: "0.01", "60.0", "1e-08" */
static void fmt_double(char *buf, size_t len, double d)
{
    double a = d < 0 ? -d : d;
    if (a == 0.0 || (a >= 1e-4 && a < 1e15)) {
        for (int prec = 0; prec <= 17; prec++) {
            fmt(buf, len, "%.*f", prec, d);
            if (strtod(buf, NULL) == d)
                break;
        }
    } else {
        for (int prec = 1; prec <= 17; prec++) {
            fmt(buf, len, "%.*g", prec, d);
            if (strtod(buf, NULL) == d)
                break;
        }
    }
    if (!strpbrk(buf, ".eEni") && strlen(buf) + 3 <= len)
        strcat(buf, ".0");
}

static const char *type_word(const jkey_t *k)
{
    switch (k->type) {
    case JK_GROUP: return "group";
    case JK_TUNABLES: return "group";
    case JK_INT: return "int";
    case JK_INT64: return "int64";
    case JK_DOUBLE: return "number";
    case JK_STRING: return "string";
    case JK_BOOL: return "bool";
    case JK_ENUM: return "enum";
    case JK_INTLIST: return "[int]";
    case JK_NUMLIST: return "[number]";
    case JK_CNN: return "[string]";
    }
    return "?";
}

/* ---- writing ---- */

static void write_value(FILE *f, const jkey_t *k, const jval_t *v)
{
    char buf[64];
    switch (k->type) {
    case JK_INT: fprintf(f, "%lld", v->i); break;
    case JK_INT64:
        fprintf(f, "%lld%s", v->i, v->i > INT32_MAX || v->i < INT32_MIN ? "L" : "");
        break;
    case JK_DOUBLE:
        fmt_double(buf, sizeof buf, v->d);
        fputs(buf, f);
        break;
    case JK_STRING: mlt_cfgtext_write_string(f, v->s ? v->s : ""); break;
    case JK_BOOL: fputs(v->b ? "true" : "false", f); break;
    case JK_ENUM: {
        const char *nm = mlt_jobk_enum_name(k->names, v->i);
        mlt_cfgtext_write_string(f, nm ? nm : "?");
        break;
    }
    case JK_INTLIST:
    case JK_NUMLIST:
    case JK_CNN: {
        bool ints = true; /* a numlist of whole numbers is written as integers */
        for (uint32_t i = 0; k->type == JK_NUMLIST && i < v->n; i++)
            ints &= is_integral(((const double *)v->list)[i]) &&
                    ((const double *)v->list)[i] >= INT32_MIN &&
                    ((const double *)v->list)[i] <= INT32_MAX;
        fputc('[', f);
        for (uint32_t i = 0; i < v->n; i++) {
            fputs(i ? ", " : "", f);
            if (k->type == JK_INTLIST) {
                fprintf(f, "%u", ((const uint32_t *)v->list)[i]);
            } else if (k->type == JK_NUMLIST) {
                double d = ((const double *)v->list)[i];
                if (ints)
                    fprintf(f, "%lld", (long long)d);
                else {
                    fmt_double(buf, sizeof buf, d);
                    fputs(buf, f);
                }
            } else {
                mlt_jobk_cnn_spec(&((const mlt_cnn_layer_t *)v->list)[i], buf, sizeof buf);
                mlt_cfgtext_write_string(f, buf);
            }
        }
        fputc(']', f);
        break;
    }
    case JK_GROUP:
    case JK_TUNABLES: break;
    }
}

static void write_tunables(FILE *f, const mlt_job_t *job, int depth)
{
    for (uint32_t i = 0; i < job->n_tunables; i++) {
        const mlt_tunable_t *t = &job->tunables[i];
        bool discrete = t->kind == MLT_TUNABLE_DISCRETE;
        fprintf(f, "%*s%s = {", depth * 2, "", t->name);
        for (size_t j = 0; j < mlt_jobk_n_keys; j++) {
            const jkey_t *k = &mlt_jobk_keys[j];
            if (!k->in_tunable)
                continue;
            bool for_cont = k->off == TOFF(min) || k->off == TOFF(max) || k->off == TOFF(kind);
            if ((discrete && for_cont) || (!discrete && k->type == JK_NUMLIST))
                continue;
            jval_t v = mlt_jobk_load_value(t, k);
            fprintf(f, " %s = ", leaf_of(k));
            if (discrete && k->off == TOFF(def) && is_integral(t->def) && t->def >= INT32_MIN &&
                t->def <= INT32_MAX)
                fprintf(f, "%lld", (long long)t->def); /* as the values are written */
            else
                write_value(f, k, &v);
            fputc(';', f);
        }
        fputs(" };\n", f);
    }
}

char *mlt_job_format(const mlt_job_t *job)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) {
        fprintf(stderr, "out of memory formatting a job at %s:%d\n", __FILE__, __LINE__);
        abort();
    }
    fprintf(f, "# job \"%s\", every key (written by common/jobfile.c)\n",
            job->name ? job->name : "");
    const char *open[8];
    int depth = 0;
    for (size_t i = 0; i < mlt_jobk_n_keys; i++) {
        const jkey_t *k = &mlt_jobk_keys[i];
        if (k->in_tunable)
            continue;
        /* close the groups this key is not in */
        while (depth > 0 && !(strncmp(k->path, open[depth - 1], strlen(open[depth - 1])) == 0 &&
                              k->path[strlen(open[depth - 1])] == '.')) {
            depth--;
            fprintf(f, "%*s};\n", depth * 2, "");
        }
        if (k->type == JK_GROUP) {
            fprintf(f, "%*s%s = {\n", depth * 2, "", leaf_of(k));
            assert(depth < 8);
            open[depth++] = k->path;
            continue;
        }
        if (k->type == JK_TUNABLES) {
            fprintf(f, "%*s%s = {\n", depth * 2, "", leaf_of(k));
            write_tunables(f, job, depth + 1);
            fprintf(f, "%*s};\n", depth * 2, "");
            continue;
        }
        if (k->off == OFF(output_dir) && !job->output_dir_given)
            continue; /* follows name */
        jval_t v = mlt_jobk_load_value(job, k);
        fprintf(f, "%*s%s = ", depth * 2, "", leaf_of(k));
        write_value(f, k, &v);
        fputs(";\n", f);
    }
    while (depth > 0) {
        depth--;
        fprintf(f, "%*s};\n", depth * 2, "");
    }
    if (fclose(f) != 0 || !buf) {
        fprintf(stderr, "out of memory formatting a job at %s:%d\n", __FILE__, __LINE__);
        abort();
    }
    /* hand the caller memory from the one door */
    char *out = mlt_strdup(buf);
    free(buf);
    return out;
}

void mlt_job_write_keys(FILE *f)
{
    for (size_t i = 0; i < mlt_jobk_n_keys; i++) {
        const jkey_t *k = &mlt_jobk_keys[i];
        char def[160], bounds[96] = "";
        jval_t v = {.i = k->def_i, .d = k->def_d, .b = k->def_i != 0, .s = k->def_s};
        if (k->required)
            fmt(def, sizeof def, "(required)");
        else if (k->doc_def)
            fmt(def, sizeof def, "%s", k->doc_def);
        else if (k->type == JK_GROUP || k->type == JK_TUNABLES)
            fmt(def, sizeof def, "{ }");
        else {
            FILE *m = fmemopen(def, sizeof def, "w");
            if (m) {
                write_value(m, k, &v);
                fclose(m);
            }
            def[sizeof def - 1] = '\0';
        }
        switch (k->type) {
        case JK_INT:
        case JK_INT64: fmt(bounds, sizeof bounds, " [%lld..%lld]", k->min_i, k->max_i); break;
        case JK_DOUBLE:
            if (k->min_d != -DBL_MAX)
                fmt(bounds, sizeof bounds, " [%g..%g%s", k->min_d, k->max_d,
                    k->max_open ? ")" : "]");
            break;
        case JK_INTLIST:
            fmt(bounds, sizeof bounds, " [entries %lld..%lld, at most %u]", k->min_i, k->max_i,
                k->max_n);
            break;
        case JK_NUMLIST:
        case JK_CNN:
        case JK_TUNABLES: fmt(bounds, sizeof bounds, " [at most %u]", k->max_n); break;
        case JK_ENUM: {
            size_t u = 0;
            for (size_t j = 0; k->names[j] && u + 1 < sizeof bounds; j++) {
                fmt(bounds + u, sizeof bounds - u, "%s%s", j ? "|" : " [", k->names[j]);
                u += strlen(bounds + u);
            }
            if (u + 2 < sizeof bounds)
                strcat(bounds, "]");
            break;
        }
        case JK_STRING:
        case JK_BOOL:
        case JK_GROUP: break;
        }
        fprintf(f, "%-28s %-8s %-24s %s%s\n", k->path, type_word(k), def, k->desc, bounds);
    }
}
