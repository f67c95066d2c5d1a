/* setting.c - see setting.h. */
#include "tuner/setting.h"

#include <string.h>

void mlt_setting_defaults(const mlt_job_t *job, mlt_setting_t *s)
{
    memset(s, 0, sizeof *s);
    for (uint32_t i = 0; i < job->n_tunables; i++)
        s->v[i] = job->tunables[i].def;
}

static int tunable_index(const mlt_job_t *job, const char *name)
{
    for (uint32_t i = 0; i < job->n_tunables; i++)
        if (strcmp(job->tunables[i].name, name) == 0)
            return (int)i;
    return -1;
}

double mlt_setting_get(const mlt_job_t *job, const mlt_setting_t *s, const char *name,
                       double fallback)
{
    int i = tunable_index(job, name);
    return i < 0 ? fallback : s->v[i];
}

bool mlt_setting_set(const mlt_job_t *job, mlt_setting_t *s, const char *name, double v)
{
    int i = tunable_index(job, name);
    if (i < 0)
        return false;
    s->v[i] = v;
    return true;
}

void mlt_setting_json(const mlt_job_t *job, const mlt_setting_t *s, mlt_json_t *j, const char *key)
{
    mlt_json_obj(j, key);
    for (uint32_t i = 0; i < job->n_tunables; i++)
        mlt_json_num(j, job->tunables[i].name, s->v[i]);
    mlt_json_end(j);
}

void mlt_space_init(mlt_space_t *sp, const mlt_job_t *job, bool tuning)
{
    memset(sp, 0, sizeof *sp);
    for (uint32_t i = 0; i < job->n_tunables && tuning; i++)
        if (job->tunables[i].tune) {
            sp->dims[sp->d] = job->tunables[i];
            sp->dim_of[sp->d++] = i;
        }
}

void mlt_space_to_setting(const mlt_space_t *sp, const mlt_setting_t *base, const double *x,
                          mlt_setting_t *s)
{
    *s = *base;
    for (uint32_t k = 0; k < sp->d; k++)
        s->v[sp->dim_of[k]] = x[k];
}

void mlt_space_from_setting(const mlt_space_t *sp, const mlt_setting_t *s, double *x)
{
    for (uint32_t k = 0; k < sp->d; k++)
        x[k] = s->v[sp->dim_of[k]];
}

int mlt_space_dim(const mlt_space_t *sp, const char *name)
{
    for (uint32_t k = 0; k < sp->d; k++)
        if (strcmp(sp->dims[k].name, name) == 0)
            return (int)k;
    return -1;
}
