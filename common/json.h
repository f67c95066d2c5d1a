/* json.h - the one JSON writer: every JSON line the programs write (the
 * decision log, progress.jsonl, mltunerctl's --json output) is built with
 * it, and the strings they did not make themselves (paths, messages, names)
 * are escaped by it.
 *
 * A line is an object built member by member:
 *
 *     mlt_json_t j;
 *     mlt_json_begin(&j);                       {
 *     mlt_json_str(&j, "event", "fork");        "event":"fork"
 *     mlt_json_num(&j, "loss", loss);           ,"loss":2.30259   (null if NaN/Inf)
 *     mlt_json_arr(&j, "points");               ,"points":[
 *     mlt_json_num(&j, NULL, y);                1.5            (NULL key: in an array)
 *     mlt_json_end(&j);                         ]
 *     mlt_json_write(&j, f);                    }\n  written, flushed, j freed
 *
 * Numbers: JSON has no NaN or Inf, so a number that is not finite is written
 * as null. The text grows on the heap (common/alloc.h: an OOM aborts, as for
 * any control structure). Not thread-safe per object; objects are
 * independent. */
#ifndef MLT_JSON_H
#define MLT_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define MLT_JSON_MAX_DEPTH 8 /* objects and arrays open at once */

typedef struct mlt_json {
    char *b;                        /* the text, NUL-terminated */
    size_t len, cap;                /* its length, the room for it */
    unsigned depth;                 /* containers open (the outer object is 1) */
    bool first[MLT_JSON_MAX_DEPTH]; /* no member yet in the container at that depth */
    char close[MLT_JSON_MAX_DEPTH]; /* '}' or ']' */
} mlt_json_t;

/* Starts j as an object: "{". */
void mlt_json_begin(mlt_json_t *j);
/* Frees j's text (j may be begun again). */
void mlt_json_free(mlt_json_t *j);

/* Members. key is the member's name inside an object, NULL inside an array. */
/* v as %.6g, or null when not finite. */
void mlt_json_num(mlt_json_t *j, const char *key, double v);
/* v with `decimals` digits after the point (%.*f), or null when not finite. */
void mlt_json_fixed(mlt_json_t *j, const char *key, double v, int decimals);
/* v with `digits` significant digits (%.*g), or null when not finite. */
void mlt_json_sig(mlt_json_t *j, const char *key, double v, int digits);
void mlt_json_int(mlt_json_t *j, const char *key, long long v);
void mlt_json_uint(mlt_json_t *j, const char *key, unsigned long long v);
/* s escaped as a JSON string; NULL is null. */
void mlt_json_str(mlt_json_t *j, const char *key, const char *s);
/* A string made by printf, escaped. */
void mlt_json_strf(mlt_json_t *j, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void mlt_json_bool(mlt_json_t *j, const char *key, bool v);
void mlt_json_null(mlt_json_t *j, const char *key);
/* Opens an object or an array as the next member; mlt_json_end closes it. */
void mlt_json_obj(mlt_json_t *j, const char *key);
void mlt_json_arr(mlt_json_t *j, const char *key);
void mlt_json_end(mlt_json_t *j);

/* Closes every open container and returns the text (j keeps it). */
const char *mlt_json_text(mlt_json_t *j);
/* Closes every open container, writes the text and a newline to f (NULL:
 * nothing), flushes it and frees j. Returns 0, or -EIO when the write
 * failed. */
int mlt_json_write(mlt_json_t *j, FILE *f);

/* s as the inside of a JSON string (quotes, backslashes and control bytes
 * escaped) in b[0..cap), cut short to fit, never inside an escape; NULL is
 * "". Returns b. For a JSON string in a fixed buffer (an error message). */
const char *mlt_json_escape(char *b, size_t cap, const char *s);

#endif
