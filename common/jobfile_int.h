/* jobfile_int.h - what jobfile.c, jobfile_value.c, jobfile_check.c and
 * jobfile_write.c share: the key table, its row and value types, the parse
 * context, and the helpers that more than one of them uses. Private to
 * common/jobfile*.c. */
#ifndef MLT_JOBFILE_INT_H
#define MLT_JOBFILE_INT_H

#include "common/jobfile.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <libconfig.h>

typedef enum {
    JK_GROUP,    /* a group of keys; no field */
    JK_TUNABLES, /* the tunables group: any name, each a group of tunables.* rows */
    JK_INT,      /* int field; a libconfig integer (a float is refused) */
    JK_INT64,    /* int64_t field; an integer (L suffix past 32 bits) or "1M"-style string */
    JK_DOUBLE,   /* double field; a float or an integer; finite */
    JK_STRING,   /* char * field, owned; never NULL after defaults (but name) */
    JK_BOOL,     /* bool field */
    JK_ENUM,     /* int-sized enum field; a string, one of names[] (index = value) */
    JK_INTLIST,  /* uint32_t * at off, uint32_t count at off_n; list of integers */
    JK_NUMLIST,  /* double * at off, uint32_t count at off_n; ascending, no repeats */
    JK_CNN,      /* mlt_cnn_layer_t * at off, uint32_t count at off_n; list of strings */
} jk_type_t;

typedef struct {
    const char *path; /* "model.rank"; "tunables.*.min" for a tunable's member */
    jk_type_t type;
    bool required;            /* no default: the file must give it */
    bool in_tunable;          /* off/off_n are offsets in mlt_tunable_t */
    long long def_i;          /* default of JK_INT, JK_INT64, JK_BOOL (0/1), JK_ENUM */
    double def_d;             /* default of JK_DOUBLE */
    const char *def_s;        /* default of JK_STRING */
    const char *doc_def;      /* default as the key list shows it, when not the plain value */
    long long min_i, max_i;   /* JK_INT, JK_INT64, JK_INTLIST entries: inclusive bounds */
    double min_d, max_d;      /* JK_DOUBLE: bounds */
    bool max_open;            /* JK_DOUBLE: max itself is refused */
    uint32_t max_n;           /* lists: at most this many entries */
    uint32_t min_n;           /* lists: at least this many entries */
    const char *const *names; /* JK_ENUM: the names, NULL-terminated */
    /* JK_STRING: 0, or -EINVAL with "SUBJ must ..." in why */
    int (*check)(const char *subj, const char *s, char *why, size_t whylen);
    size_t off, off_n; /* field offsets (in mlt_job_t, or mlt_tunable_t) */
    const char *desc;  /* one line */
} jkey_t;

/* One value on its way from a file or --set text into the job. */
typedef struct {
    long long i;   /* JK_INT, JK_INT64, JK_ENUM */
    double d;      /* JK_DOUBLE */
    bool b;        /* JK_BOOL */
    const char *s; /* JK_STRING (borrowed) */
    void *list;    /* lists (owned until stored) */
    uint32_t n;    /* entries in list */
} jval_t;

#define OFF(f)  offsetof(mlt_job_t, f)
#define TOFF(f) offsetof(mlt_tunable_t, f)

/* ---- parse context: the file's name and the line of every key it gave ---- */

typedef struct {
    char *path; /* "tunables.lr.min" */
    unsigned line;
} kline_t;

typedef struct {
    const char *file; /* name for messages; NULL: no file (messages have no prefix) */
    kline_t *lines;   /* every key seen, in file order */
    size_t n, cap;
} pctx_t;

/* The keys, in the order mlt_job_format writes them: a group's members follow
 * its row (jobfile.c). */
extern const jkey_t mlt_jobk_keys[];
extern const size_t mlt_jobk_n_keys;

extern const char *const mlt_jobk_model_names[];
extern const char *const mlt_jobk_format_names[];

/* ---- small helpers ---- */

static inline void fmt(char *buf, size_t len, const char *f, ...)
    __attribute__((format(printf, 3, 4)));

/* snprintf into an optional message buffer (NULL or 0 length: dropped) */
static inline void fmt(char *buf, size_t len, const char *f, ...)
{
    if (!buf || len == 0)
        return;
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, len, f, ap);
    va_end(ap);
}

static inline const char *leaf_of(const jkey_t *k)
{
    const char *l = strrchr(k->path, '.');
    return l ? l + 1 : k->path;
}

static inline bool is_integral(double v)
{
    return v >= -9.0e15 && v <= 9.0e15 && v == (double)(long long)v;
}

/* jobfile.c */
void mlt_jobk_fmt_names(char *buf, size_t len, const char *const *names);
const char *mlt_jobk_enum_name(const char *const *names, long long v);
jval_t mlt_jobk_load_value(const void *base, const jkey_t *k);
unsigned mlt_jobk_ctx_line(const pctx_t *p, const char *path);
const char *mlt_jobk_type_noun(const jkey_t *k, char *buf, size_t len);

/* jobfile_value.c */
void mlt_jobk_val_free(jval_t *v);
int mlt_jobk_value_from_text(const jkey_t *k, const char *subj, const char *s, jval_t *v, char *why,
                             size_t whylen);
int mlt_jobk_value_from_setting(const jkey_t *k, const char *subj, const config_setting_t *s,
                                jval_t *v, char *why, size_t whylen, unsigned *linep);

/* jobfile_check.c */
int mlt_jobk_cnn_parse(const char *subj, uint32_t i, const char *s, mlt_cnn_layer_t *out, char *why,
                       size_t whylen);
void mlt_jobk_cnn_spec(const mlt_cnn_layer_t *l, char *buf, size_t len);
int mlt_jobk_check_name(const char *subj, const char *s, char *why, size_t whylen);
int mlt_jobk_check_printable(const char *subj, const char *s, char *why, size_t whylen);
int mlt_jobk_check_path(const char *subj, const char *s, char *why, size_t whylen);
int mlt_jobk_check_path_opt(const char *subj, const char *s, char *why, size_t whylen);
int mlt_jobk_check_value(const jkey_t *k, const char *subj, const jval_t *v, char *why,
                         size_t whylen, int *idxp);
int mlt_jobk_validate(const mlt_job_t *job, const pctx_t *p, char *err, size_t errlen);

#endif
