/* jobfile_write.c - a job as text (see jobfile.h): mlt_job_format writes every
 * key of the table with its value, groups nested, each tunable on a line;
 * the values themselves are written by the key-table engine. */
#include "common/jobfile.h"

#include "common/jobfile_int.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"

static void write_tunables(FILE *f, const mlt_job_t *job, int depth)
{
    for (uint32_t i = 0; i < job->n_tunables; i++) {
        const mlt_tunable_t *t = &job->tunables[i];
        bool discrete = t->kind == MLT_TUNABLE_DISCRETE;
        fprintf(f, "%*s%s = {", depth * 2, "", t->name);
        for (size_t j = 0; j < mlt_jobk_table.n_keys; j++) {
            const mlt_kt_key_t *k = &mlt_jobk_keys[j];
            if (!k->in_elem)
                continue;
            bool for_cont = k->off == TOFF(min) || k->off == TOFF(max) || k->off == TOFF(kind);
            if ((discrete && for_cont) || (!discrete && k->type == MLT_KT_NUMLIST))
                continue;
            mlt_kt_val_t v = mlt_kt_load(t, k);
            fprintf(f, " %s = ", mlt_kt_leaf(k));
            if (discrete && k->off == TOFF(def) && mlt_kt_is_integral(t->def) &&
                t->def >= INT32_MIN && t->def <= INT32_MAX)
                fprintf(f, "%lld", (long long)t->def); /* as the values are written */
            else
                mlt_kt_write_value(f, k, &v);
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
    for (size_t i = 0; i < mlt_jobk_table.n_keys; i++) {
        const mlt_kt_key_t *k = &mlt_jobk_keys[i];
        if (k->in_elem)
            continue;
        /* close the groups this key is not in */
        while (depth > 0 && !(strncmp(k->path, open[depth - 1], strlen(open[depth - 1])) == 0 &&
                              k->path[strlen(open[depth - 1])] == '.')) {
            depth--;
            fprintf(f, "%*s};\n", depth * 2, "");
        }
        if (k->type == MLT_KT_GROUP) {
            fprintf(f, "%*s%s = {\n", depth * 2, "", mlt_kt_leaf(k));
            assert(depth < 8);
            open[depth++] = k->path;
            continue;
        }
        if (k->type == MLT_KT_NAMED) {
            fprintf(f, "%*s%s = {\n", depth * 2, "", mlt_kt_leaf(k));
            write_tunables(f, job, depth + 1);
            fprintf(f, "%*s};\n", depth * 2, "");
            continue;
        }
        if (k->off == OFF(output_dir) && !job->output_dir_given)
            continue; /* follows name */
        mlt_kt_val_t v = mlt_kt_load(job, k);
        fprintf(f, "%*s%s = ", depth * 2, "", mlt_kt_leaf(k));
        mlt_kt_write_value(f, k, &v);
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
