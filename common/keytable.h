/* keytable.h - one engine for libconfig key tables: the daemon's
 * configuration (daemon/config.c) and job files (common/jobfile*.c).
 *
 * A table is an array of key rows: the key's path ("model.rank"), type,
 * default, bounds, enum names, check callback, the offset of its field in the
 * struct it fills, and a one-line description. The engine reads values (from a
 * libconfig setting or from "key=value" text), checks a key's own bounds,
 * stores, loads, copies and frees fields, reads a whole libconfig text against
 * the table with errors that name the file, line and key, and writes values,
 * the documented default config and the key list. What belongs to one domain
 * stays there as callbacks or small code: the job's tunables (a group of named
 * elements, read by the table's read_named), cnn layer specs (a list of
 * strings parsed by a spec), the daemon's log level (a string parsed into an
 * int), and the checks between keys.
 *
 * Every message names what is wrong with a subject the caller chooses (the
 * key's path, "model.layers[2]", "--set rank:"), then says why: "SUBJ must be
 * between 1 and 1024 (got 0)". Pure apart from the allocator; thread-safe on
 * distinct structs. */
#ifndef MLT_KEYTABLE_H
#define MLT_KEYTABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <libconfig.h>

typedef enum {
    MLT_KT_GROUP,    /* a group of keys ({ ... }); no field */
    MLT_KT_NAMED,    /* a group of named elements ("tunables"), read by the table's read_named */
    MLT_KT_INT,      /* int field; a libconfig integer (a float is refused) */
    MLT_KT_INT64,    /* int64_t field; an integer (L suffix past 32 bits) or "1M"-style count */
    MLT_KT_SIZE,     /* size_t field; an integer, or a size string "8G" (binary K/M/G/T) */
    MLT_KT_DOUBLE,   /* double field; a float or an integer */
    MLT_KT_STRING,   /* char * field, owned; never NULL after defaults (unless required) */
    MLT_KT_PARSED,   /* int field; a string that the row's parse turns into the int */
    MLT_KT_BOOL,     /* bool field */
    MLT_KT_ENUM,     /* int-sized enum field; a string, one of names[] (index = value) */
    MLT_KT_STRLIST,  /* char ** field, owned, NULL-terminated; NULL when empty */
    MLT_KT_INTLIST,  /* uint32_t * at off, uint32_t count at off_n; list of integers */
    MLT_KT_NUMLIST,  /* double * at off, uint32_t count at off_n; ascending, no repeats */
    MLT_KT_SPECLIST, /* spec->size-byte entries at off, count at off_n; list of strings */
} mlt_kt_type_t;

/* How a MLT_KT_SPECLIST entry is read from and written as a string. */
typedef struct mlt_kt_spec {
    size_t size;      /* bytes of one entry */
    const char *noun; /* the type, as "must be NOUN" says it */
    /* text of entry i -> *out. 0, or -EINVAL with "SUBJ[I] ..." in why */
    int (*parse)(const char *subj, uint32_t i, const char *s, void *out, char *why, size_t whylen);
    /* an entry as the text parse reads back */
    void (*format)(const void *e, char *buf, size_t len);
    /* the whole list (n >= 1). 0, or -EINVAL with why and *idxp = the entry at fault */
    int (*check)(const char *subj, const void *list, uint32_t n, char *why, size_t whylen,
                 int *idxp);
} mlt_kt_spec_t;

typedef struct mlt_kt_key {
    const char *path; /* "model.rank"; "tunables.*.min" for a member of a named element */
    mlt_kt_type_t type;
    bool required;            /* no default: the file must give it */
    bool in_elem;             /* off/off_n are offsets in the named element's struct */
    long long def_i;          /* default of INT, INT64, SIZE, BOOL (0/1), ENUM */
    double def_d;             /* default of DOUBLE */
    const char *def_s;        /* default of STRING, PARSED */
    const char *doc_def;      /* default as the key list shows it, when not the plain value */
    long long min_i, max_i;   /* INT, INT64, SIZE, PARSED, INTLIST entries: inclusive bounds */
    long long multiple;       /* INT, INT64, SIZE: the value must be a multiple (0: any) */
    double min_d, max_d;      /* DOUBLE: bounds (min_d = -DBL_MAX: any finite number) */
    bool max_open;            /* DOUBLE: max itself is refused */
    uint32_t max_n;           /* lists: at most this many entries */
    uint32_t min_n;           /* lists: at least this many entries */
    const char *const *names; /* ENUM: the names, NULL-terminated */
    /* STRING: 0, or -EINVAL with "SUBJ must ..." in why */
    int (*check)(const char *subj, const char *s, char *why, size_t whylen);
    /* PARSED: the text -> *out. 0, or -EINVAL with "SUBJ must ..." in why */
    int (*parse)(const char *subj, const char *s, long long *out, char *why, size_t whylen);
    const mlt_kt_spec_t *spec; /* SPECLIST */
    size_t off, off_n;         /* field offsets (in the table's struct, or the element's) */
    const char *desc;          /* one line */
} mlt_kt_key_t;

/* One value on its way from a file or text into a struct. */
typedef struct mlt_kt_val {
    long long i;   /* INT, INT64, SIZE, PARSED, ENUM */
    double d;      /* DOUBLE */
    bool b;        /* BOOL */
    const char *s; /* STRING, PARSED (borrowed) */
    void *list;    /* lists (owned until stored); STRLIST: char *[n] */
    uint32_t n;    /* entries in list */
} mlt_kt_val_t;

typedef struct mlt_kt_ctx mlt_kt_ctx_t;

typedef struct mlt_kt_table {
    const mlt_kt_key_t *keys; /* in the order files are written */
    size_t n_keys;
    bool printable;         /* refuse control characters in string values (job files) */
    bool quote_type_errors; /* a wrong type reads "key 'K' must be ..." (the daemon's file) */
    const char *named_noun; /* MLT_KT_NAMED: what its group is, as "must be NOUN" says it */
    /* MLT_KT_NAMED: reads group g, the setting of row k, into base. 0, or
     * -EINVAL with "FILE:LINE: what" in err */
    int (*read_named)(mlt_kt_ctx_t *p, void *base, const mlt_kt_key_t *k, const config_setting_t *g,
                      char *err, size_t errlen);
} mlt_kt_table_t;

/* The context of one read: the table, the file's name and the line of every
 * key the file gave. */
typedef struct mlt_kt_line {
    char *path; /* "tunables.lr.min" (owned) */
    unsigned line;
} mlt_kt_line_t;

struct mlt_kt_ctx {
    const mlt_kt_table_t *table;
    const char *file;     /* name for messages; NULL: no file (messages have no prefix) */
    mlt_kt_line_t *lines; /* every key seen, in file order */
    size_t n, cap;
};

/* ---- rows and fields (keytable.c) ---- */

/* The row of path (not an element's member), or NULL. */
const mlt_kt_key_t *mlt_kt_find(const mlt_kt_table_t *t, const char *path);
/* The row of a named element's member ("min"), or NULL. */
const mlt_kt_key_t *mlt_kt_find_member(const mlt_kt_table_t *t, const char *member);
/* The last component of the row's path ("rank" of "model.rank"). */
const char *mlt_kt_leaf(const mlt_kt_key_t *k);
/* true for a row that holds a value (not a group) */
bool mlt_kt_has_field(const mlt_kt_key_t *k);

/* The defaults of every row with in_elem == elem into base. */
void mlt_kt_defaults(const mlt_kt_table_t *t, void *base, bool elem);
/* Stores a checked value into base; takes v->list. */
void mlt_kt_store(void *base, const mlt_kt_key_t *k, mlt_kt_val_t *v);
/* The value stored in base, borrowed (strings and lists point into base). */
mlt_kt_val_t mlt_kt_load(const void *base, const mlt_kt_key_t *k);
/* Frees what a read value owns (its list). */
void mlt_kt_val_free(const mlt_kt_key_t *k, mlt_kt_val_t *v);
/* Frees the owned fields of rows with in_elem == elem and clears them. */
void mlt_kt_free_fields(const mlt_kt_table_t *t, void *base, bool elem);
/* Copies src to dst (size bytes), duplicating the owned fields of rows with
 * in_elem == false; dst needs mlt_kt_free_fields. */
void mlt_kt_copy(const mlt_kt_table_t *t, void *dst, const void *src, size_t size);

/* ---- checks (keytable.c) ---- */

/* The key's own bounds. 0, or -EINVAL with why; *idxp becomes the index of
 * the list entry at fault (else it is left alone). */
int mlt_kt_check(const mlt_kt_key_t *k, const char *subj, const mlt_kt_val_t *v, char *why,
                 size_t whylen, int *idxp);
/* Refuses control characters (a newline, a NUL from \x00) in s. */
int mlt_kt_check_printable(const char *subj, const char *s, char *why, size_t whylen);
/* "one of "a", "b", "c"" */
void mlt_kt_fmt_names(char *buf, size_t len, const char *const *names);
/* names[v], or NULL */
const char *mlt_kt_enum_name(const char *const *names, long long v);
/* What a value of k's type is ("an integer"); buf holds an enum's names. */
const char *mlt_kt_type_noun(const mlt_kt_key_t *k, char *buf, size_t len);
/* true for a whole number of at most 9e15 */
bool mlt_kt_is_integral(double v);

/* ---- reading values (keytable_value.c) ---- */

/* Text ("512M", "a, b", "true") -> value of k's type. 0, or -EINVAL with why. */
int mlt_kt_from_text(const mlt_kt_table_t *t, const mlt_kt_key_t *k, const char *subj,
                     const char *s, mlt_kt_val_t *v, char *why, size_t whylen);
/* A libconfig setting -> value of k's type. 0, or -EINVAL with why; *linep
 * becomes the line of the list entry at fault, if it is one. */
int mlt_kt_from_setting(const mlt_kt_table_t *t, const mlt_kt_key_t *k, const char *subj,
                        const config_setting_t *s, mlt_kt_val_t *v, char *why, size_t whylen,
                        unsigned *linep);
/* Sets one key of base from text: read, check, store. 0, or -EINVAL with
 * why; on failure base is unchanged. */
int mlt_kt_set_text(const mlt_kt_table_t *t, void *base, const mlt_kt_key_t *k, const char *subj,
                    const char *s, char *why, size_t whylen);

/* ---- reading a file (keytable.c) ---- */

void mlt_kt_ctx_add(mlt_kt_ctx_t *p, const char *path, unsigned line);
/* the line of path in the file, or 0 when the file did not give it */
unsigned mlt_kt_ctx_line(const mlt_kt_ctx_t *p, const char *path);
void mlt_kt_ctx_free(mlt_kt_ctx_t *p);

/* Reads setting s, the value of row k at path, into base: read, check,
 * store. 0, or -EINVAL with "FILE:LINE: why" in err. */
int mlt_kt_read_key(mlt_kt_ctx_t *p, void *base, const mlt_kt_key_t *k, const char *path,
                    const config_setting_t *s, char *err, size_t errlen);
/* Parses text with libconfig, checks it with mlt_cfgtext_check
 * (allow_include, hint: before parsing when include is refused, after when it
 * is allowed) and reads every setting into base over the values already
 * there; records each key's line in p (whose table and file are set). Then
 * checks that the required keys were given. 0, or -EINVAL with
 * "FILE:LINE: what". */
int mlt_kt_read_text(mlt_kt_ctx_t *p, void *base, const char *text, bool allow_include,
                     const char *hint, char *err, size_t errlen);

/* ---- writing (keytable_write.c) ---- */

/* the shortest decimal that reads back as d, as libconfig reads a float */
void mlt_kt_fmt_double(char *buf, size_t len, double d);
/* A value of k's type in libconfig syntax. */
void mlt_kt_write_value(FILE *f, const mlt_kt_key_t *k, const mlt_kt_val_t *v);
/* The key's bounds as the documentation shows them (" [1..1024]"), or "". */
void mlt_kt_bounds(const mlt_kt_key_t *k, char *buf, size_t len);
/* The documented default config: header, then per row a blank line, "# desc
 * [bounds]" and "path = default;". Flat tables only. */
void mlt_kt_write_conf(FILE *f, const mlt_kt_table_t *t, const char *header);
/* The key list: one line per row, path, type, default, description, bounds. */
void mlt_kt_write_keylist(FILE *f, const mlt_kt_table_t *t);

#endif
