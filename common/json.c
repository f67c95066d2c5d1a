/* json.c - see json.h. */
#include "common/json.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

#include "common/alloc.h"

/* ch as it stands inside a JSON string, in e (room for 7); its length */
static size_t escape_ch(unsigned char ch, char *e)
{
    if (ch == '"' || ch == '\\') {
        e[0] = '\\';
        e[1] = (char)ch;
        return 2;
    }
    if (ch < 0x20 || ch == 0x7f)
        return (size_t)snprintf(e, 7, "\\u%04x", ch);
    e[0] = (char)ch;
    return 1;
}

const char *mlt_json_escape(char *b, size_t cap, const char *s)
{
    size_t n = 0;
    if (!cap)
        return b;
    for (; s && *s; s++) {
        char e[8];
        size_t k = escape_ch((unsigned char)*s, e);
        if (n + k >= cap)
            break;
        memcpy(b + n, e, k);
        n += k;
    }
    b[n] = '\0';
    return b;
}

static void put(mlt_json_t *j, const char *s, size_t n)
{
    if (j->len + n + 1 > j->cap) {
        size_t cap = j->cap ? j->cap : 256;
        while (j->len + n + 1 > cap)
            cap *= 2;
        j->b = mlt_realloc(j->b, cap);
        j->cap = cap;
    }
    memcpy(j->b + j->len, s, n);
    j->len += n;
    j->b[j->len] = '\0';
}

static void puts_(mlt_json_t *j, const char *s)
{
    put(j, s, strlen(s));
}

static void put_escaped(mlt_json_t *j, const char *s)
{
    put(j, "\"", 1);
    for (; *s; s++) {
        char e[8];
        put(j, e, escape_ch((unsigned char)*s, e));
    }
    put(j, "\"", 1);
}

/* the separator and the key before a member */
static void member(mlt_json_t *j, const char *key)
{
    assert(j->depth > 0);
    assert((key != NULL) == (j->close[j->depth - 1] == '}'));
    if (!j->first[j->depth - 1])
        put(j, ",", 1);
    j->first[j->depth - 1] = false;
    if (key) {
        put_escaped(j, key);
        put(j, ":", 1);
    }
}

static void open_(mlt_json_t *j, char open, char close)
{
    assert(j->depth < MLT_JSON_MAX_DEPTH);
    put(j, &open, 1);
    j->first[j->depth] = true;
    j->close[j->depth] = close;
    j->depth++;
}

void mlt_json_begin(mlt_json_t *j)
{
    memset(j, 0, sizeof *j);
    open_(j, '{', '}');
}

void mlt_json_free(mlt_json_t *j)
{
    mlt_free(j->b);
    memset(j, 0, sizeof *j);
}

/* v as %.*f (fixed) or %.*g, or null when not finite */
static void number(mlt_json_t *j, const char *key, double v, bool fixed, int prec)
{
    member(j, key);
    if (!isfinite(v)) {
        puts_(j, "null");
        return;
    }
    char b[400]; /* %f of the largest double: 309 digits and the decimals */
    if (prec < 0 || prec > 17)
        prec = 17;
    int n = fixed ? snprintf(b, sizeof b, "%.*f", prec, v) : snprintf(b, sizeof b, "%.*g", prec, v);
    put(j, b, n > 0 && (size_t)n < sizeof b ? (size_t)n : 0);
}

void mlt_json_num(mlt_json_t *j, const char *key, double v)
{
    number(j, key, v, false, 6);
}

void mlt_json_fixed(mlt_json_t *j, const char *key, double v, int decimals)
{
    number(j, key, v, true, decimals);
}

void mlt_json_sig(mlt_json_t *j, const char *key, double v, int digits)
{
    number(j, key, v, false, digits);
}

void mlt_json_int(mlt_json_t *j, const char *key, long long v)
{
    char b[32];
    member(j, key);
    put(j, b, (size_t)snprintf(b, sizeof b, "%lld", v));
}

void mlt_json_uint(mlt_json_t *j, const char *key, unsigned long long v)
{
    char b[32];
    member(j, key);
    put(j, b, (size_t)snprintf(b, sizeof b, "%llu", v));
}

void mlt_json_str(mlt_json_t *j, const char *key, const char *s)
{
    member(j, key);
    if (s)
        put_escaped(j, s);
    else
        puts_(j, "null");
}

void mlt_json_strf(mlt_json_t *j, const char *key, const char *fmt, ...)
{
    char b[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b, sizeof b, fmt, ap);
    va_end(ap);
    mlt_json_str(j, key, b);
}

void mlt_json_bool(mlt_json_t *j, const char *key, bool v)
{
    member(j, key);
    puts_(j, v ? "true" : "false");
}

void mlt_json_null(mlt_json_t *j, const char *key)
{
    member(j, key);
    puts_(j, "null");
}

void mlt_json_obj(mlt_json_t *j, const char *key)
{
    member(j, key);
    open_(j, '{', '}');
}

void mlt_json_arr(mlt_json_t *j, const char *key)
{
    member(j, key);
    open_(j, '[', ']');
}

void mlt_json_end(mlt_json_t *j)
{
    assert(j->depth > 0);
    j->depth--;
    put(j, &j->close[j->depth], 1);
}

const char *mlt_json_text(mlt_json_t *j)
{
    while (j->depth)
        mlt_json_end(j);
    return j->b ? j->b : "";
}

int mlt_json_write(mlt_json_t *j, FILE *f)
{
    int rc = 0;
    const char *s = mlt_json_text(j);
    if (f && (fputs(s, f) == EOF || fputc('\n', f) == EOF || fflush(f) == EOF))
        rc = -EIO;
    mlt_json_free(j);
    return rc;
}
