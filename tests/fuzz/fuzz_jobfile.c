/* fuzz_jobfile.c - libFuzzer target for mlt_job_parse_string (job files).
 *
 * The input, copied into a NUL-terminated buffer (a NUL inside ends the text
 * early, as it would for any C string), is parsed as job text. Checks the
 * contract of common/jobfile.h. A refusal: -EINVAL or -EMSGSIZE, *out zeroed,
 * a one-line message starting with the name given for errors, and never
 * libconfig's "include file" errors (check_text must stop @include before
 * libconfig sees it). An acceptance: out->text is the input; every key
 * within its bounds (mlt_job_validate agrees); names, lists and tunables as
 * jobfile.h describes them; and the round trip: mlt_job_format's text must
 * parse again, to a job that formats to the same text. The same verdict with
 * an 8-byte message buffer and with none. mlt_job_free always, and it must
 * leave the job zeroed. tests/fuzz/replay.c runs the corpus through this
 * function in every ordinary `meson test`. */
#include "common/jobfile.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "common/alloc.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NAME       "fuzz.conf"
#define NAME_AGAIN "formatted.conf"

static int all_zero(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return 0;
    return 1;
}

/* 1 when err is libconfig's own complaint about an @include, as parse()
 * passes it on: "NAME:LINE: cannot open include file" and the like. */
static int include_error(const char *err, const char *name)
{
    size_t n = strlen(name);
    if (strncmp(err, name, n) != 0 || err[n] != ':')
        return 0;
    const char *p = err + n + 1;
    while (isdigit((unsigned char)*p))
        p++;
    return strcmp(p, ": cannot open include file") == 0 ||
           strcmp(p, ": include file nesting too deep") == 0;
}

static void check_rejected(int rc, const mlt_job_t *job, const char *err, size_t errlen,
                           const char *name)
{
    fuzz_assert(rc == -EINVAL || rc == -EMSGSIZE);
    fuzz_assert(all_zero(job, sizeof *job));
    fuzz_check_message(err, errlen, name);
    if (include_error(err, name)) {
        fprintf(stderr, "libconfig saw an @include: %s\n", err);
        abort();
    }
}

static void check_tunable(const mlt_tunable_t *t)
{
    fuzz_assert(t->name != NULL);
    size_t n = strlen(t->name);
    fuzz_assert(n >= 1 && n <= MLT_JOB_MAX_TUNABLE_NAME);
    for (size_t i = 0; i < n; i++)
        fuzz_assert(isalnum((unsigned char)t->name[i]) || t->name[i] == '_' || t->name[i] == '-');
    fuzz_assert(isfinite(t->def) && isfinite(t->min) && isfinite(t->max));
    if (t->kind == MLT_TUNABLE_DISCRETE) {
        fuzz_assert(t->values != NULL && t->n_values >= 1 && t->n_values <= MLT_JOB_MAX_VALUES);
        int found = 0;
        for (uint32_t i = 0; i < t->n_values; i++) {
            fuzz_assert(isfinite(t->values[i]));
            fuzz_assert(i == 0 || t->values[i - 1] < t->values[i]);
            found |= t->values[i] == t->def;
        }
        fuzz_assert(found);
        fuzz_assert(t->min == t->values[0] && t->max == t->values[t->n_values - 1]);
    } else {
        fuzz_assert(t->kind == MLT_TUNABLE_LOG || t->kind == MLT_TUNABLE_LINEAR);
        fuzz_assert(t->values == NULL && t->n_values == 0);
        fuzz_assert(t->min < t->max && t->def >= t->min && t->def <= t->max);
        fuzz_assert(t->kind != MLT_TUNABLE_LOG || t->min > 0);
    }
}

/* What jobfile.h promises of a parsed job. */
static void check_accepted(const mlt_job_t *job)
{
    char err[512];
    fuzz_assert(mlt_job_validate(job, err, sizeof err) == 0);
    fuzz_assert(job->text != NULL && strlen(job->text) <= MLT_JOB_MAX_TEXT);
    fuzz_assert(job->name != NULL);
    size_t n = strlen(job->name);
    fuzz_assert(n >= 1 && n <= MLT_JOB_MAX_NAME);
    for (size_t i = 0; i < n; i++)
        fuzz_assert(isalnum((unsigned char)job->name[i]) || strchr("._-", job->name[i]));
    fuzz_assert(job->workers >= 1 && job->workers <= 1024);
    fuzz_assert(job->seed >= 0);
    fuzz_assert(mlt_job_enum_name("backend", (int)job->backend) != NULL);
    fuzz_assert(mlt_job_enum_name("model.type", (int)job->model.type) != NULL);
    fuzz_assert(mlt_job_enum_name("data.format", (int)job->data.format) != NULL);
    fuzz_assert(mlt_job_enum_name("update.rule", job->update.rule) != NULL);
    fuzz_assert(mlt_job_enum_name("tuner.searcher", (int)job->tuner.searcher) != NULL);
    fuzz_assert(mlt_job_enum_name("tuner.logic", (int)job->tuner.logic) != NULL);
    fuzz_assert(job->output_dir != NULL && strlen(job->output_dir) <= MLT_JOB_MAX_PATH);
    if (!job->output_dir_given)
        fuzz_assert(strncmp(job->output_dir, "out/", 4) == 0 &&
              strcmp(job->output_dir + 4, job->name) == 0);
    else
        fuzz_assert(job->output_dir[0] != '\0');
    const char *paths[] = {job->data.train_images, job->data.train_labels, job->data.test_images,
                           job->data.test_labels, job->data.ratings};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        fuzz_assert(paths[i] != NULL && strlen(paths[i]) <= MLT_JOB_MAX_PATH);
    fuzz_assert(job->model.n_layers <= MLT_JOB_MAX_LAYERS);
    fuzz_assert((job->model.layers == NULL) == (job->model.n_layers == 0));
    for (uint32_t i = 0; i < job->model.n_layers; i++)
        fuzz_assert(job->model.layers[i] >= 1 && job->model.layers[i] <= 65536);
    fuzz_assert(job->model.n_cnn <= MLT_JOB_MAX_CNN);
    fuzz_assert((job->model.cnn == NULL) == (job->model.n_cnn == 0));
    for (uint32_t i = 0; i < job->model.n_cnn; i++) {
        const mlt_cnn_layer_t *l = &job->model.cnn[i];
        switch (l->op) {
        case MLT_CNN_CONV: fuzz_assert(l->k % 2 == 1 && l->k <= 11 && l->n >= 1 && l->n <= 1024); break;
        case MLT_CNN_POOL: fuzz_assert(l->k >= 2 && l->k <= 8 && l->n == 0); break;
        case MLT_CNN_FC: fuzz_assert(l->k == 0 && l->n >= 1 && l->n <= 65536); break;
        default: fuzz_assert(!"unknown cnn op");
        }
        fuzz_assert(i == 0 || l->op == MLT_CNN_FC || job->model.cnn[i - 1].op != MLT_CNN_FC);
    }
    if (job->model.type == MLT_MODEL_MLP)
        fuzz_assert(job->model.n_layers > 0);
    if (job->model.type == MLT_MODEL_CNN)
        fuzz_assert(job->model.n_cnn > 0);
    fuzz_assert((job->model.type == MLT_MODEL_MF) == (job->data.format != MLT_DATA_IDX));
    fuzz_assert(job->n_tunables <= MLT_JOB_MAX_TUNABLES);
    fuzz_assert((job->tunables == NULL) == (job->n_tunables == 0));
    for (uint32_t i = 0; i < job->n_tunables; i++) {
        check_tunable(&job->tunables[i]);
        fuzz_assert(mlt_job_tunable(job, job->tunables[i].name) == &job->tunables[i]);
    }
}

/* Parses text as the target does, with the verdict checked for every size of
 * message buffer; on success *job is the caller's. */
static int parse(const char *text, const char *name, mlt_job_t *job, char *err, size_t errlen)
{
    memset(err, 0, errlen);
    memset(job, 0xa5, sizeof *job); /* "uninitialised or freed" */
    int rc = mlt_job_parse_string(text, name, job, err, errlen);

    char tiny[8];
    memset(tiny, 'x', sizeof tiny);
    mlt_job_t j2;
    int rc2 = mlt_job_parse_string(text, name, &j2, tiny, sizeof tiny);
    fuzz_assert(rc2 == rc);
    fuzz_assert(rc2 == 0 || memchr(tiny, '\0', sizeof tiny) != NULL);
    mlt_job_free(&j2);
    rc2 = mlt_job_parse_string(text, name, &j2, NULL, 0);
    fuzz_assert(rc2 == rc);
    mlt_job_free(&j2);
    fuzz_assert(all_zero(&j2, sizeof j2));

    if (rc != 0)
        check_rejected(rc, job, err, errlen, name);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    fuzz_assert(text != NULL);
    memcpy(text, data, size);
    text[size] = '\0';

    char err[512];
    mlt_job_t job;
    int accepted = parse(text, NAME, &job, err, sizeof err) == 0;
    fuzz_verdict(accepted);
    if (!accepted) {
        free(text);
        return 0;
    }
    check_accepted(&job);
    fuzz_assert(strcmp(job.text, text) == 0);

    /* the round trip: format, parse, format again */
    char *formatted = mlt_job_format(&job);
    fuzz_assert(formatted != NULL);
    mlt_job_t again;
    int rc = parse(formatted, NAME_AGAIN, &again, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "formatted job refused: %d %s\n--- formatted text:\n%s---\n", rc, err,
                formatted);
    fuzz_assert(rc == 0);
    check_accepted(&again);
    char *formatted2 = mlt_job_format(&again);
    if (strcmp(formatted, formatted2) != 0)
        fprintf(stderr, "round trip changed the job\n--- first:\n%s--- again:\n%s---\n", formatted,
                formatted2);
    fuzz_assert(strcmp(formatted, formatted2) == 0);

    mlt_free(formatted2);
    mlt_free(formatted);
    mlt_job_free(&again);
    fuzz_assert(all_zero(&again, sizeof again));
    mlt_job_free(&job);
    fuzz_assert(all_zero(&job, sizeof job));
    free(text);
    return 0;
}
